package coordinator

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"understudy/guards"
	"understudy/runtime/engine"

	"understudy/drivers"
	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/store"
)

// The switcher must show what the coordinator decided, always. The
// coordinator keeps the desired routing: per switcher driver and output, the
// input it last routed there. It is written to the state file in the same
// transaction as the route action (before the route is sent), so it
// survives restarts. Whenever the device's routing is read back — after
// every (re)connection of the driver, and for every route_changed the device
// announces — it is compared with the desired routing, and each output that
// differs is recorded and handed to the policy as routing_differs:
//
//   - an output some member's duties name (duties.outputs or
//     duties.usage.*.outputs on that switcher) is re-asserted: the desired
//     route is sent again (cause "re-assert …"), at most once per
//     ReassertInterval per output;
//   - any other output is reported and the device's route becomes the
//     desired one: an operator's panel change there is respected, not
//     fought, and not reported again;
//   - an output changed away from its desired route FightChanges times
//     within FightWindow (panel changes, not reconnects) is given up: its
//     route as the device shows it becomes the desired one and the alarm
//     routing_fight is raised until the coordinator routes that output again;
//   - in manual mode (failover.mode: manual) differences are only reported.
//
// The policy can decide otherwise in its routing_differs handler: a
// router:route on that output (re-assert, or anything else) or router:keep
// (accept the device's route) replaces what the runtime would have done.
//
// At start-up, and for outputs that have no desired route yet (a fresh
// state file), the coordinator asserts the routing its site says rather than
// trusting whatever the device shows: each alive member's duty outputs on
// its own inputs, each covered member's on its standby's (a member with
// failover.take_outputs false stays on its own), as members are first seen
// alive and whenever the driver connects.

// The records (and policy events) of the desired routing are
// events.RoutingDiffers (its cause is a Cause*, its default a Differ*),
// events.RoutingAccepted and events.RouteWithheld.

// Causes of a routing difference.
const (
	CauseReconnect = "reconnect" // read back after the driver (re)connected: a restart, a change while away
	CausePanel     = "panel"     // announced by the device: its panel, another controller
)

// What the runtime does with a difference unless the policy decides.
const (
	DifferReassert = "reassert" // a duty output: the desired route is sent again
	DifferAccept   = "accept"   // not a duty output: the device's route becomes the desired one
	DifferReport   = "report"   // manual mode: reported only
	DifferStop     = "stop"     // fought too often: given up, routing_fight raised
)

// Limits of re-asserting.
const (
	// ReassertInterval: an output is re-asserted at most once per interval.
	ReassertInterval = time.Second
	// MaxRetryInterval bounds the wait before a route the switcher did not
	// take is sent again: ReassertInterval after the first failure, twice as
	// long after each further one, at most this.
	MaxRetryInterval = 30 * time.Second
	// FightChanges within FightWindow: an output the device changes away from
	// its desired route this often (panel changes) is given up.
	FightChanges = 3
	FightWindow  = time.Minute
)

// Causes of the routes the runtime sends by itself: a re-assert, a start-up
// route. RoutingUpkeep tells them from the policy's.
const (
	causeReassert = "re-assert"
	causeStartup  = "start-up: "
)

// RoutingUpkeep reports whether an action's cause says the runtime sent it
// to keep the desired routing (a re-assert, a start-up route), not the
// policy.
func RoutingUpkeep(cause string) bool {
	return strings.HasPrefix(cause, causeReassert) || strings.HasPrefix(cause, causeStartup)
}

const bucketRouting = "routing"

// desiredRoute is the input the coordinator wants on one output.
type desiredRoute struct {
	Driver string    `json:"driver"`
	Output int       `json:"output"`
	Input  int       `json:"input"`
	Since  time.Time `json:"since"`
	Cause  string    `json:"cause,omitempty"` // what set it
}

func routingKey(driver string, output int) string { return driver + "/" + strconv.Itoa(output) }

type outKey struct {
	driver string
	output int
}

// outState is what the loop keeps of one output of a switcher.
type outState struct {
	desired desiredRoute
	has     bool
	gen     uint64      // counts changes of the desired route (routes, accepts)
	changes []time.Time // panel changes away from the desired route within FightWindow

	lastAssert  time.Time
	failures    int         // routes on it that failed in a row (refused, unanswered)
	retry       clock.Timer // a re-assert waiting for ReassertInterval
	retryCause  string
	reported    int // the actual input last reported as a panel difference, at reportedGen
	reportedGen uint64
	withheld    int // manual mode: the start-up route last recorded as withheld
}

// routing is the coordinator's desired routing (owned by the loop).
type routing struct {
	outs map[outKey]*outState
}

func (r *routing) out(driver string, output int) *outState {
	if r.outs == nil {
		r.outs = map[outKey]*outState{}
	}
	k := outKey{driver, output}
	st, ok := r.outs[k]
	if !ok {
		st = &outState{}
		r.outs[k] = st
	}
	return st
}

// restoreRouting loads the desired routing a previous run left.
func (c *Coordinator) restoreRouting() error {
	all, err := store.Load[desiredRoute](c.store, bucketRouting)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(all)) {
		d := all[k]
		if _, ok := c.opts.Drivers[d.Driver]; !ok || d.Output < 1 {
			continue // a driver no longer in site.yaml
		}
		st := c.routing.out(d.Driver, d.Output)
		st.desired, st.has = d, true
	}
	return nil
}

// putDesired writes the desired route a route action sets, in the action's
// transaction.
func putDesired(tx *store.Tx, a *action) error {
	d := desiredRoute{Driver: a.Driver, Output: a.Output, Input: a.Input, Since: a.Created, Cause: a.Cause}
	return tx.Put(bucketRouting, routingKey(a.Driver, a.Output), d)
}

// routeSent takes a route action that was recorded and is being sent: its
// route is the desired one. A route the coordinator decides anew (the
// policy's, a start-up assertion; not a re-assert) ends a routing_fight
// alarm on that output.
func (c *Coordinator) routeSent(a *action) {
	st := c.routing.out(a.Driver, a.Output)
	changed := !st.has || st.desired.Input != a.Input
	st.desired = desiredRoute{Driver: a.Driver, Output: a.Output, Input: a.Input, Since: a.Created, Cause: a.Cause}
	st.has = true
	st.gen++
	if a.keeper {
		return
	}
	if changed {
		st.changes = nil
	}
	st.withheld = 0
	c.clearAlarm(fightKey(a.Driver, a.Output), fmt.Sprintf("the coordinator routed output %d again (input %d)", a.Output, a.Input))
}

func fightKey(driver string, output int) string {
	return AlarmRoutingFight + ":" + driver + ":" + strconv.Itoa(output)
}

// setDesired makes input the desired route of an output without sending
// anything (the device shows it already) and writes it.
func (c *Coordinator) setDesired(driver string, output, input int, cause string) {
	st := c.routing.out(driver, output)
	st.desired = desiredRoute{Driver: driver, Output: output, Input: input, Since: c.clock.Now(), Cause: cause}
	st.has = true
	st.gen++
	if err := c.store.Put(bucketRouting, routingKey(driver, output), st.desired); err != nil {
		c.log.Error("desired route not written to the state file", "driver", driver, "output", output, "error", err)
	}
}

// acceptRoute makes the input the device shows the desired route, and
// records it.
func (c *Coordinator) acceptRoute(driver string, output, input int, why string) {
	st := c.routing.out(driver, output)
	prev := st.desired.Input
	c.setDesired(driver, output, input, "accepted: "+why)
	c.log.Info("switcher route accepted as desired", "driver", driver, "output", output, "input", input, "previous", prev, "why", why)
	c.record(engine.Record{Type: events.RoutingAccepted, Fields: map[string]any{"driver": driver, "output": output, "input": input, "previous": prev, "why": why}})
}

// keepRoute accepts the input the device shows on output as the desired
// route (the policy's router:keep) and returns it.
func (c *Coordinator) keepRoute(driver string, output int, cause string) (int, error) {
	r, ok := c.router(driver)
	if !ok {
		return 0, fmt.Errorf("driver %q is not a switcher on this instance", driver)
	}
	actual := routeOn(r, output)
	if actual <= 0 {
		return 0, fmt.Errorf("the input on output %d of %s is not known (not connected yet?)", output, driver)
	}
	if st := c.routing.out(driver, output); st.has && st.desired.Input == actual {
		st.gen++ // decided: nothing to put back
		return actual, nil
	}
	c.acceptRoute(driver, output, actual, "kept by the policy ("+cause+")")
	return actual, nil
}

func (c *Coordinator) router(driver string) (drivers.Router, bool) {
	d, ok := c.opts.Drivers[driver]
	if !ok {
		return nil, false
	}
	r, ok := d.(drivers.Router)
	return r, ok
}

// routeOn is the input the device shows on output, 0 when unknown.
func routeOn(r drivers.Router, output int) int {
	if routing := r.Routing(); output >= 1 && output <= len(routing) {
		return routing[output-1]
	}
	return 0
}

// routeInFlight reports whether a route action on the output is queued or
// running: what the device announces meanwhile may be its echo.
func (c *Coordinator) routeInFlight(driver string, output int) bool {
	for _, a := range c.actions.local {
		if a.Driver == driver && a.Verb == "route" && a.Output == output {
			return true
		}
	}
	return false
}

// manualMode reports whether the coordinator only proposes (failover.mode
// manual, or switched to it).
func (c *Coordinator) manualMode() bool {
	return c.takeover != nil && c.takeover.Mode() == config.ModeManual
}

// dutyOf is the member whose duties name output on the switcher driver, or
// "".
func (c *Coordinator) dutyOf(driver string, output int) string {
	for _, m := range c.site.Members {
		if m.Duties.Switcher != driver {
			continue
		}
		if slices.Contains(m.Duties.Outputs, output) {
			return m.ID
		}
		for _, name := range slices.Sorted(maps.Keys(m.Duties.Usage)) {
			if slices.Contains(m.Duties.Usage[name].Outputs, output) {
				return m.ID
			}
		}
	}
	return ""
}

// routingConnected compares the routing a switcher driver read back on
// connecting with the desired routing, then asserts the site's routing on
// the outputs that have none yet (on the loop, after the policy saw
// driver_connected).
func (c *Coordinator) routingConnected(driver string) {
	r, ok := c.router(driver)
	if !ok {
		return
	}
	routing := r.Routing()
	for _, k := range slices.SortedFunc(maps.Keys(c.routing.outs), compareOutKeys) {
		if k.driver == driver && k.output <= len(routing) {
			c.routingDiffers(driver, k.output, routing[k.output-1], CauseReconnect)
		}
	}
	c.assertSite(driver, "")
}

// routingChanged takes a route the device announced (on the loop, after the
// policy saw route_changed).
func (c *Coordinator) routingChanged(driver string, output, input int) {
	if _, ok := c.router(driver); ok {
		c.routingDiffers(driver, output, input, CausePanel)
	}
}

// routeDone looks at an output again once a route on it is done: a change
// the device announced while the route was in flight was taken for its echo.
func (c *Coordinator) routeDone(a *action) {
	r, ok := c.router(a.Driver)
	if !ok || a.Verb != "route" {
		return
	}
	c.routing.out(a.Driver, a.Output).failures = 0
	c.routingDiffers(a.Driver, a.Output, routeOn(r, a.Output), CausePanel)
}

// routeFailed follows a route the switcher did not take (it refused it, or
// did not answer within the action's attempts) while that route is still
// the desired one: nothing else would look at the output again until the
// switcher announced a change or reconnected, so it would go on showing
// what the coordinator decided against. The route is sent again after
// ReassertInterval, then twice as long after each further failure, up to
// MaxRetryInterval, until the switcher takes it or the desired route
// changes. Manual mode and a given-up output (routing_fight) are left alone.
func (c *Coordinator) routeFailed(a *action, err error) {
	if guards.Off(guards.RouteRetry) {
		return
	}
	st := c.routing.out(a.Driver, a.Output)
	if !st.has || st.desired.Input != a.Input || c.manualMode() || c.alarmRaised(fightKey(a.Driver, a.Output)) {
		return
	}
	st.failures++
	wait := MaxRetryInterval
	if st.failures <= 16 {
		wait = min(ReassertInterval<<(st.failures-1), MaxRetryInterval)
	}
	cause := fmt.Sprintf("%s after a failed route (%v)", causeReassert, err)
	c.log.Warn("the switcher did not take a route; sending it again", "driver", a.Driver, "output", a.Output,
		"input", a.Input, "error", err, "failures", st.failures, "retry_in", wait)
	if st.retry != nil {
		st.retry.Stop()
	}
	st.retryCause = cause
	st.retry = c.clock.AfterFunc(wait, func() {
		c.Post(func() {
			st.retry = nil
			if !st.has || st.desired.Input != a.Input || c.routeInFlight(a.Driver, a.Output) {
				return // routed since, or on its way
			}
			if r, ok := c.router(a.Driver); ok && routeOn(r, a.Output) == a.Input {
				st.failures = 0 // it shows the route now (a reconnect put it back)
				return
			}
			st.lastAssert = time.Time{} // the wait was the backoff's
			c.reassert(a.Driver, a.Output, st.retryCause)
		})
	})
}

func compareOutKeys(a, b outKey) int {
	if a.driver != b.driver {
		if a.driver < b.driver {
			return -1
		}
		return 1
	}
	return a.output - b.output
}

// routingDiffers checks one output the device shows actual on against the
// desired routing and, if they differ, reports it and sets off what follows.
func (c *Coordinator) routingDiffers(driver string, output, actual int, cause string) {
	if actual <= 0 {
		return // an input the device does not report is left alone
	}
	st, ok := c.routing.outs[outKey{driver, output}]
	if !ok || !st.has || st.desired.Input == actual || c.routeInFlight(driver, output) {
		return
	}
	if c.alarmRaised(fightKey(driver, output)) {
		// Given up: whatever the other controller sets is kept.
		c.setDesired(driver, output, actual, "accepted: routing_fight raised")
		return
	}
	if cause == CausePanel && st.reported == actual && st.reportedGen == st.gen {
		return // reported already
	}
	now := c.clock.Now()
	duty := c.dutyOf(driver, output)
	def := DifferAccept
	switch {
	case duty == "":
	case c.manualMode():
		def = DifferReport
	default:
		def = DifferReassert
		if cause == CausePanel {
			st.changes = slices.DeleteFunc(st.changes, func(t time.Time) bool { return now.Sub(t) >= FightWindow })
			st.changes = append(st.changes, now)
			if len(st.changes) >= FightChanges {
				def = DifferStop
			}
		}
	}
	expected := st.desired.Input
	fields := map[string]any{"driver": driver, "output": output, "expected": expected, "actual": actual, "cause": cause, "default": def}
	if duty != "" {
		fields["duty"] = duty
	}
	c.log.Warn("the switcher does not show the route the coordinator decided", "driver", driver, "output", output,
		"expected", expected, "actual", actual, "cause", cause, "duty", duty, "default", def)
	c.record(engine.Record{Type: events.RoutingDiffers, Member: duty, Fields: fields})
	if cause == CausePanel {
		st.reported, st.reportedGen = actual, st.gen
	}
	if def == DifferStop {
		c.acceptRoute(driver, output, actual, fmt.Sprintf("changed away %d times within %v: no longer fought", len(st.changes), FightWindow))
		st.changes = nil
		c.raiseAlarm(engine.Alarm{
			Key: fightKey(driver, output), Kind: AlarmRoutingFight, Severity: SeverityAlarm, Member: duty,
			Message: fmt.Sprintf("%s output %d was changed away from input %d %d times within %v (another controller or the panel): understudy stopped putting it back and keeps input %d; when the other controller is dealt with, put it back with the command reassert (understudy reassert %s %d, or the dashboard)",
				driver, output, expected, FightChanges, FightWindow, actual, driver, output),
			Fields: map[string]any{"driver": driver, "output": output, "expected": expected, "actual": actual},
		})
	}
	ev := c.memberEvent(events.RoutingDiffers, now, duty, fields)
	gen := st.gen
	// The policy sees it once the current work is done (never from inside a
	// handler); then, unless its handlers routed or kept that output, the
	// runtime does what def says.
	c.Post(func() {
		c.dispatch(ev)
		c.settleDifference(driver, output, gen, def, cause)
	})
}

// settleDifference does what the runtime does with a difference the policy
// has seen and left alone.
func (c *Coordinator) settleDifference(driver string, output int, gen uint64, def, cause string) {
	st := c.routing.out(driver, output)
	if st.gen != gen {
		return // the policy routed or kept it
	}
	r, ok := c.router(driver)
	if !ok {
		return
	}
	actual := routeOn(r, output)
	if actual <= 0 || actual == st.desired.Input || c.routeInFlight(driver, output) {
		return
	}
	switch def {
	case DifferAccept:
		c.acceptRoute(driver, output, actual, "not a duty output: the change is respected")
	case DifferReassert:
		c.reassert(driver, output, fmt.Sprintf("%s after a %s: the switcher showed input %d", causeReassert, causeWords(cause), actual))
	}
}

func causeWords(cause string) string {
	if cause == CauseReconnect {
		return "reconnect"
	}
	return "panel change"
}

// reassert sends an output's desired route again, at most once per
// ReassertInterval; sooner, it waits.
func (c *Coordinator) reassert(driver string, output int, cause string) {
	st := c.routing.out(driver, output)
	if !st.has || c.manualMode() {
		return
	}
	now := c.clock.Now()
	if !st.lastAssert.IsZero() {
		if wait := st.lastAssert.Add(ReassertInterval).Sub(now); wait > 0 {
			st.retryCause = cause
			if st.retry == nil {
				st.retry = c.clock.AfterFunc(wait, func() {
					c.Post(func() {
						st.retry = nil
						c.reassertIfDiffers(driver, output, st.retryCause)
					})
				})
			}
			return
		}
	}
	st.lastAssert = now
	a := &action{Driver: driver, Verb: "route", Output: output, Input: st.desired.Input, Cause: cause, keeper: true}
	if _, err := c.actions.add(a); err != nil {
		c.log.Error("re-assert not sent", "driver", driver, "output", output, "error", err)
	}
}

// reassertIfDiffers re-asserts an output whose re-assert had to wait, if it
// still differs.
func (c *Coordinator) reassertIfDiffers(driver string, output int, cause string) {
	st := c.routing.out(driver, output)
	r, ok := c.router(driver)
	if !ok || !st.has || c.alarmRaised(fightKey(driver, output)) || c.routeInFlight(driver, output) {
		return
	}
	if actual := routeOn(r, output); actual > 0 && actual != st.desired.Input {
		c.reassert(driver, output, cause)
	}
}

// siteRoute is one route the site's duties call for.
type siteRoute struct {
	output, input int
	duty          string // the member whose output it is
	why           string
}

// siteRoutes are the routes that put member's duty outputs on its own
// inputs, or on its standby's while it is covered (unless take_outputs is
// off); none for a member neither alive nor covered.
func (c *Coordinator) siteRoutes(m *config.Member) []siteRoute {
	source, why := m, causeStartup+m.ID+"'s own inputs"
	covered := false
	if c.takeover != nil {
		// A member whose failback gave it its duties back (member_ready)
		// has its own outputs, though the standby may still be letting go.
		if cv, ok := c.takeover.Covered(m.ID); ok && m.Settings.TakeOutputs && !cv.DutiesBack() {
			s, ok := c.site.Member(cv.Standby)
			if !ok || s.Duties.Switcher != m.Duties.Switcher {
				return nil
			}
			source, why, covered = s, causeStartup+m.ID+" covered by "+s.ID, true
		}
	}
	if !covered {
		if st := c.stateOf(m.ID); st != "alive" && st != "suspect" {
			return nil
		}
	}
	var out []siteRoute
	add := func(outputs, inputs []int) {
		for i, o := range outputs {
			if i < len(inputs) {
				out = append(out, siteRoute{output: o, input: inputs[i], duty: m.ID, why: why})
			}
		}
	}
	if len(m.Duties.Usage) > 0 {
		for _, name := range slices.Sorted(maps.Keys(m.Duties.Usage)) {
			add(m.Duties.Usage[name].Outputs, source.Duties.Usage[name].Inputs)
		}
		return out
	}
	add(m.Duties.Outputs, source.Duties.Inputs)
	return out
}

// assertSite asserts the site's routing on driver's outputs that have no
// desired route yet: of every member, or of one. Outputs the device already
// shows right are only written down; in manual mode the others are recorded
// as withheld instead of sent.
func (c *Coordinator) assertSite(driver, member string) {
	r, ok := c.router(driver)
	if !ok || !r.Status().Connected || r.Routing() == nil {
		return // asserted when it connects
	}
	for i := range c.site.Members {
		m := &c.site.Members[i]
		if m.Duties.Switcher != driver || (member != "" && m.ID != member) {
			continue
		}
		for _, sr := range c.siteRoutes(m) {
			st := c.routing.out(driver, sr.output)
			if st.has || c.routeInFlight(driver, sr.output) {
				continue // what the coordinator decided before wins
			}
			actual := routeOn(r, sr.output)
			switch {
			case actual == sr.input:
				c.setDesired(driver, sr.output, sr.input, sr.why+" (shown already)")
			case c.manualMode():
				if st.withheld == sr.input {
					continue
				}
				st.withheld = sr.input
				c.log.Info("manual mode: start-up route not sent", "driver", driver, "output", sr.output, "input", sr.input, "actual", actual, "duty", sr.duty)
				c.record(engine.Record{Type: events.RouteWithheld, Member: sr.duty, Fields: map[string]any{
					"driver": driver, "output": sr.output, "input": sr.input, "actual": actual, "duty": sr.duty,
					"cause": sr.why, "why": "manual mode"}})
			default:
				if _, err := c.actions.add(&action{Driver: driver, Verb: "route", Output: sr.output, Input: sr.input, Cause: sr.why}); err != nil {
					c.log.Error("start-up route not sent", "driver", driver, "output", sr.output, "error", err)
				}
			}
		}
	}
}

// assertMember asserts the site's routing for a member seen alive.
func (c *Coordinator) assertMember(member string) {
	m, ok := c.site.Member(member)
	if !ok || m.Duties.Switcher == "" {
		return
	}
	c.assertSite(m.Duties.Switcher, member)
}

// assertAll asserts the site's routing on every switcher (after a switch to
// auto mode).
func (c *Coordinator) assertAll() {
	for _, name := range slices.Sorted(maps.Keys(c.opts.Drivers)) {
		c.assertSite(name, "")
	}
}

// stopRouting stops the re-asserts waiting for their interval.
func (c *Coordinator) stopRouting() {
	for _, st := range c.routing.outs {
		if st.retry != nil {
			st.retry.Stop()
			st.retry = nil
		}
	}
}

// desiredRouting returns a driver's desired routing, by output (for status).
func (c *Coordinator) desiredRouting(driver string) map[int]int {
	var out map[int]int
	for k, st := range c.routing.outs {
		if k.driver == driver && st.has {
			if out == nil {
				out = map[int]int{}
			}
			out[k.output] = st.desired.Input
		}
	}
	return out
}

// reassertCommand carries out the operator command reassert {driver,
// output?}: the coordinator routes the output (or every duty output of the
// driver) again as the site says — the duty's member on its own inputs, or on
// its standby's while covered — or, for an output no duty names, as it last
// decided. It is the operator's way out of a routing_fight: a route the
// coordinator decides anew ends it.
func (c *Coordinator) reassertCommand(fields map[string]any) error {
	driver, _ := fields["driver"].(string)
	if driver == "" {
		var switchers []string
		for _, name := range slices.Sorted(maps.Keys(c.opts.Drivers)) {
			if _, ok := c.router(name); ok {
				switchers = append(switchers, name)
			}
		}
		if len(switchers) != 1 {
			return fmt.Errorf("reassert: which switcher? (driver: %s)", strings.Join(switchers, ", "))
		}
		driver = switchers[0]
	}
	r, ok := c.router(driver)
	if !ok {
		return fmt.Errorf("reassert: %q is not a switcher driver of this site", driver)
	}
	if !r.Status().Connected {
		return fmt.Errorf("reassert: %s is not connected: %s", driver, r.Status().LastError)
	}
	var outputs []int
	if v, ok := fields["output"]; ok && v != nil {
		n, ok := wholeNumber(v)
		if !ok || n < 1 {
			return fmt.Errorf("reassert: output %v: a switcher output, from 1", v)
		}
		outputs = []int{n}
	}
	routes := map[int]siteRoute{}
	for i := range c.site.Members {
		m := &c.site.Members[i]
		if m.Duties.Switcher != driver {
			continue
		}
		for _, sr := range c.siteRoutes(m) {
			routes[sr.output] = sr
		}
	}
	if outputs == nil {
		outputs = slices.Sorted(maps.Keys(routes))
		if len(outputs) == 0 {
			return fmt.Errorf("reassert: no duty output of %s has a route the site calls for now (no member on it is alive or covered)", driver)
		}
	}
	for _, o := range outputs {
		input, why := 0, ""
		if sr, ok := routes[o]; ok {
			input, why = sr.input, strings.TrimPrefix(sr.why, causeStartup)
		} else if st := c.routing.out(driver, o); st.has {
			input, why = st.desired.Input, "as last decided"
		} else {
			return fmt.Errorf("reassert: output %d of %s: no duty names it and the coordinator never routed it", o, driver)
		}
		cause := fmt.Sprintf("operator's reassert: %s", why)
		if _, err := c.actions.add(&action{Driver: driver, Verb: "route", Output: o, Input: input, Cause: cause}); err != nil {
			return fmt.Errorf("reassert: output %d: %w", o, err)
		}
	}
	return nil
}

// wholeNumber reads a JSON or Lua number that is a whole number.
func wholeNumber(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	}
	return 0, false
}
