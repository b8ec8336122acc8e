package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"understudy/runtime/engine"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/policy"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// startTakeover opens the coordinator's epoch and its takeover bookkeeping.
func (c *Coordinator) startTakeover() error {
	epoch, err := c.store.Increment("meta", "epoch")
	if err != nil {
		return fmt.Errorf("coordinator epoch: %w", err)
	}
	c.actions.epoch = epoch
	c.actions.fresh = epoch == 1
	c.store.View(func(tx *store.Tx) error {
		c.actions.seq = tx.Counter("meta", "action_seq")
		return nil
	})
	if err := c.store.Update(func(tx *store.Tx) error {
		if found, err := tx.Get("meta", "state_id", &c.actions.stateID); found || err != nil {
			return err
		}
		c.actions.stateID = randomID()
		return tx.Put("meta", "state_id", c.actions.stateID)
	}); err != nil {
		return fmt.Errorf("coordinator state id: %w", err)
	}
	c.takeover, err = takeover.New(takeover.Options{
		Store: c.store, Clock: c.clock, Post: c.Post, Site: siteView{c}, Actions: c.actions,
		Emit: c.onTakeoverEvent, Logger: c.log.With("component", "takeover"),
		Limit: c.site.Failover.Limit, Mode: c.site.Failover.Mode, ConfirmAfter: c.site.Failover.ConfirmAfter.D(),
		CopySettle: c.site.CopySettle(),
	})
	if err != nil {
		return fmt.Errorf("takeover state: %w", err)
	}
	c.log.Info("coordinating", "epoch", epoch, "mode", c.takeover.Mode(), "limit", c.site.Failover.Limit)
	return nil
}

// resumeActions sends again what the store holds unanswered and hands the
// takeover bookkeeping the results it may not have taken before a restart.
func (c *Coordinator) resumeActions() error {
	finished, err := c.actions.resume()
	if err != nil {
		return fmt.Errorf("actions: %w", err)
	}
	for _, a := range finished {
		c.takeover.Result(a.ID, a.Error, a.Result)
	}
	return nil
}

func (c *Coordinator) onTakeoverEvent(ev takeover.Event) {
	if c.takeoverAlarm(ev) {
		return
	}
	if ev.Name == events.CoverageRebuilt {
		ev.Fields["state_recovered"] = c.store.Recovered() != nil
	}
	if ev.Name == events.FailbackDone || ev.Name == events.TakeoverFailed {
		for _, since := range c.claimedSince {
			delete(since, ev.Member) // the coverage ended: a next one has its own since
		}
	}
	c.log.Info(ev.Name, "member", ev.Member, "fields", ev.Fields)
	c.record(engine.Record{Type: ev.Name, Member: ev.Member, Fields: ev.Fields})
	pe := c.memberEvent(ev.Name, c.clock.Now(), ev.Member, ev.Fields)
	c.deliverOnce(pe, nil)
	if c.opts.Publisher != nil && ev.Member != "" && c.table.Known(ev.Member) {
		if m, ok := c.table.Get(ev.Member); ok {
			c.publishState(m)
		}
		if cv, ok := c.takeover.Covered(ev.Member); ok {
			if m, ok := c.table.Get(cv.Standby); ok {
				c.publishState(m)
			}
		} else if s, ok := ev.Fields["standby"].(string); ok && c.table.Known(s) {
			if m, ok := c.table.Get(s); ok {
				c.publishState(m)
			}
		}
	}
	c.clearTakeoverAlarms(ev)
	c.Post(c.publishTakeover)
	if ev.Name == events.ModeChanged && ev.Fields["mode"] == config.ModeAuto {
		c.Post(c.assertAll) // start-up routes withheld in manual mode
	}
}

// takeoverAlarm turns the bookkeeping's alarm events into alarms. It reports
// whether ev was one (and nothing else).
func (c *Coordinator) takeoverAlarm(ev takeover.Event) bool {
	standby, _ := ev.Fields["standby"].(string)
	switch ev.Name {
	case takeover.AlarmFailbackStalled:
		c.raiseAlarm(engine.Alarm{Key: AlarmFailbackStalled + ":" + ev.Member, Kind: AlarmFailbackStalled, Severity: SeverityWarning, Member: ev.Member,
			Message: fmt.Sprintf("the failback of %s keeps pausing: it went suspect %v times (%.0fs in all); the failback waits for it to be alive", ev.Member, ev.Fields["pauses"], ev.Fields["suspect_s"]),
			Fields:  ev.Fields})
		return true
	case takeover.AlarmCopyIncomplete:
		c.raiseAlarm(engine.Alarm{Key: AlarmCopyIncomplete + ":" + ev.Member, Kind: AlarmCopyIncomplete, Severity: SeverityAlarm, Member: ev.Member,
			Message: fmt.Sprintf("the material %s recorded for %s is not all copied back (%v); the coverage stays open and the copy is tried again in %.0fs, or at once by a failback command", standby, ev.Member, ev.Fields["error"], ev.Fields["retry_in_s"]),
			Fields:  ev.Fields})
		return true
	}
	return false
}

// clearTakeoverAlarms ends the alarms of a failback that ended.
func (c *Coordinator) clearTakeoverAlarms(ev takeover.Event) {
	switch ev.Name {
	case events.FailbackDone, events.FailbackFailed, events.TakeoverFailed, events.TakeoverStarted:
		c.clearAlarm(AlarmFailbackStalled+":"+ev.Member, ev.Name)
		c.clearAlarm(AlarmCopyIncomplete+":"+ev.Member, ev.Name)
	}
	if ev.Name == events.TakeoverStarted {
		c.clearAlarm(AlarmCopyFoundNone+":"+ev.Member, "covered again")
	}
}

// publishTakeover publishes the takeover state (retained) when it changed.
func (c *Coordinator) publishTakeover() {
	if c.takeover == nil || c.opts.Publisher == nil {
		return
	}
	payload, err := json.Marshal(c.takeover.Snapshot())
	if err != nil || string(payload) == c.published {
		return
	}
	if err := c.opts.Publisher.Publish(c.topics.Takeover(), 1, true, payload); err == nil {
		c.published = string(payload)
	}
}

// Takeover returns the coordinator's takeover state (call it on the loop,
// e.g. through Do).
func (c *Coordinator) Takeover() *takeover.Manager { return c.takeover }

// Ack feeds an instance's answer to a command. Any goroutine.
func (c *Coordinator) Ack(a bus.Ack) { c.loop.PostBounded("ack", func() { c.actions.ack(a) }) }

// Health feeds an instance's disk health report. Any goroutine.
func (c *Coordinator) Health(h bus.Health) {
	c.loop.PostBounded("health", func() {
		if !c.table.Known(h.Member) {
			return
		}
		if d, ok := c.drills[h.Member]; ok && d.Fault == DrillBroken {
			d.Broken = h.Broken // the drill's fault stands until it ends
			return
		}
		if c.broken[h.Member] == h.Broken {
			return
		}
		var failed []string
		for _, d := range h.Disks {
			if !d.OK {
				failed = append(failed, d.Path+": "+d.Error)
			}
		}
		reason := "all material disks failed"
		if !h.Broken {
			reason = "material disks work again"
		}
		c.setBroken(h.Member, h.Broken, failed, reason)
	})
}

// setBroken marks a member broken (all material disks failed) or not, and
// tells the record stream, the bus and the policy (on the loop).
func (c *Coordinator) setBroken(member string, broken bool, failed []string, reason string) {
	c.broken[member] = broken
	lm, _ := c.table.Get(member)
	kind := events.MemberBroken
	if !broken {
		kind = members.EventRestored
	}
	fields := map[string]any{"state": c.stateOf(member), "reason": reason, "disks_failed": failed}
	c.log.Warn("member "+kind, "member", member, "disks", failed)
	c.record(engine.Record{Type: kind, Member: member, Fields: c.drillFields(member, fields)})
	if c.opts.Publisher != nil {
		c.publishState(lm)
	}
	if c.takeover != nil {
		c.takeover.MemberChanged(member)
	}
	m := c.policyMember(member)
	m.Reason = reason
	c.dispatchMember(policy.Event{Name: kind, At: c.clock.Now(), Member: &m, Fields: c.drillFields(member, map[string]any{"reason": reason, "disks_failed": failed})}, member)
}

// Command takes an operator command (from the bus, the CLI or the web). The
// coordinator refuses what cannot be carried out (checkCommand), answers
// confirm, reject and mode itself; every command not refused then reaches
// the policy as the event command:VERB. Any goroutine.
func (c *Coordinator) Command(verb string, fields map[string]any, from string) {
	c.Post(func() { c.command(verb, fields, from) })
}

// CommandWait carries out an operator command as Command does and returns
// what followed from it (until the engine has nothing more queued for it):
// the command's record (with its error when it was refused) and the records
// of the policy's handling of it — actions, takeover events, policy errors —
// and of nothing else: not another command's, not what happens later (an
// action's result, a member's event). Any goroutine; not in a simulation
// (no loop runs).
func (c *Coordinator) CommandWait(ctx context.Context, verb string, fields map[string]any, from string) ([]engine.Record, error) {
	cv := &capture{}
	stop := func() { c.captures = slices.DeleteFunc(c.captures, func(x *capture) bool { return x == cv }) }
	if err := c.Do(ctx, func() {
		c.causes++
		cv.cause = c.causes
		c.captures = append(c.captures, cv)
		c.cause = cv.cause
		defer func() { c.cause = 0 }()
		c.command(verb, fields, from)
	}); err != nil {
		c.Post(stop)
		return nil, err
	}
	// The policy's handler was queued by the command, and what it set off
	// (a takeover_started for the policy, say) is queued in turn: wait until
	// a round of the queue brings no new record.
	var out []engine.Record
	for seen := -1; seen != len(out); {
		seen = len(out)
		if err := c.Do(ctx, func() { out = slices.Clone(cv.records) }); err != nil {
			c.Post(stop)
			return nil, err
		}
	}
	c.Post(stop)
	return out, nil
}

// capture collects the records that follow from one command (its cause)
// while it is in Engine.captures.
type capture struct {
	cause   uint64
	records []engine.Record
}

func (c *Coordinator) command(verb string, fields map[string]any, from string) {
	fields["by"] = from
	err := c.checkCommand(verb, fields)
	if err == nil && c.takeover != nil {
		switch verb {
		case "drill":
			var r DrillRequest
			if r, err = ParseDrill(fields); err == nil {
				err = c.startDrill(r, from)
			}
		case "drill_end":
			err = c.endDrill(fmt.Sprint(fields["member"]), "ended by "+from, from)
		case "confirm":
			if id := fmt.Sprint(fields["proposal"]); isQuarantineProposal(id) {
				err = c.confirmQuarantined(id, from)
			} else {
				err = c.takeover.Confirm(id, from)
			}
		case "reject":
			if id := fmt.Sprint(fields["proposal"]); isQuarantineProposal(id) {
				err = c.rejectQuarantined(id, from)
			} else {
				err = c.takeover.Reject(id, from)
			}
		case "mode":
			mode, _ := fields["mode"].(string)
			if mode == "" {
				err = errors.New("mode: which mode? (mode: auto or manual)")
			} else {
				err = c.takeover.SetMode(mode, from)
			}
		case "reassert":
			err = c.reassertCommand(fields)
		}
	}
	rec := engine.Record{Type: events.Command, Fields: map[string]any{"verb": verb, "args": fields}}
	switch {
	case err == nil:
	case errors.Is(err, bus.ErrUnknownCommand) && from == "mqtt" && c.opts.Drops != nil:
		// Anyone on the bus may send any verb: counted, and logged once per
		// verb (Drops), so a flood of made-up verbs does not fill the log.
		rec.Fields["error"] = err.Error()
		c.opts.Drops.Drop("command/"+verb, c.topics.Control(verb), -1, err)
	default:
		rec.Fields["error"] = err.Error()
		c.log.Warn("command refused", "verb", verb, "error", err)
	}
	c.record(rec)
	if err == nil {
		c.deliverOnce(policy.Event{Name: events.CommandEvent(verb), At: c.clock.Now(), Fields: fields}, nil)
	}
	c.publishTakeover()
}

// runHook records and sends a named hook for a member's instance.
func (c *Coordinator) runHook(target, name string, args map[string]any, cause string) (string, error) {
	if !c.table.Known(target) {
		return "", fmt.Errorf("no member %q", target)
	}
	return c.actions.add(&action{Target: target, Verb: name, Args: args, Cause: cause})
}

// siteView is the site as the takeover bookkeeping sees it.
type siteView struct{ c *Coordinator }

var _ takeover.Site = siteView{}

func (v siteView) Member(id string) (takeover.Member, bool) {
	cm, ok := v.c.site.Member(id)
	if !ok || !v.c.table.Known(id) {
		return takeover.Member{}, false
	}
	return takeover.Member{
		ID: id, State: v.c.stateOf(id), Priority: cm.Priority, Standby: cm.Standby, Pool: cm.Pool,
		Capacity: cm.Capacity, Usage: cm.Usage, DiskLayout: cm.DiskLayout,
		Capabilities: cm.Capabilities, Requires: cm.Requires, Settings: cm.Settings,
	}, true
}

func (v siteView) Members() []takeover.Member {
	var out []takeover.Member
	for _, m := range v.c.table.All() {
		if tm, ok := v.Member(m.ID); ok {
			out = append(out, tm)
		}
	}
	return out
}

func (v siteView) Match(pool string) []string { return v.c.site.Pools[pool].Match }

func (v siteView) CopyActions(r takeover.CopyRequest) ([]takeover.Action, error) {
	r.Since = v.c.copySince(r.Member, r.From, r.Since)
	return v.c.copyActions(r)
}

// Bundle is the duty bundle of a member: what a standby needs to become it,
// given to its hooks as template data.
func (v siteView) Bundle(member string) map[string]any {
	cm, ok := v.c.site.Member(member)
	if !ok {
		return map[string]any{}
	}
	b := dutiesOf(cm)
	if !cm.Settings.TakeClients {
		b["clients"] = []any{}
	}
	if !cm.Settings.TakeOutputs {
		b["outputs"] = []any{}
	}
	if c, ok := v.c.newestConfig(cm); ok {
		b["config"], b["config_version"] = c.Content, c.Version
	}
	return b
}

// dutiesOf is a member's duties as plain values (for Lua and for hooks).
func dutiesOf(cm *config.Member) map[string]any {
	ints := func(v []int) []any {
		out := make([]any, len(v))
		for i, n := range v {
			out[i] = n
		}
		return out
	}
	strs := func(v []string) []any {
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = s
		}
		return out
	}
	d := map[string]any{
		"outputs": ints(cm.Duties.Outputs), "inputs": ints(cm.Duties.Inputs),
		"clients": strs(cm.Duties.Clients), "material": strs(cm.Duties.Material),
	}
	if cm.Duties.Switcher != "" {
		d["switcher"] = cm.Duties.Switcher
	}
	usage := map[string]any{}
	for name, p := range cm.Duties.Usage {
		usage[name] = map[string]any{"outputs": ints(p.Outputs), "inputs": ints(p.Inputs)}
	}
	d["usage"] = usage
	streams := make([]any, len(cm.Duties.Streams))
	for i, s := range cm.Duties.Streams {
		streams[i] = map[string]any{"name": s.Name, "address": s.Address}
	}
	d["streams"] = streams
	if cm.Duties.Config != nil {
		d["config_file"] = cm.Duties.Config.File
	}
	return d
}

func settingsOf(s config.FailoverSettings) map[string]any {
	return map[string]any{
		"enabled": s.Enabled, "delay": s.Delay.Seconds(), "closed_is_lost": s.ClosedIsLost,
		"broken_is_lost": s.BrokenIsLost, "take_outputs": s.TakeOutputs, "take_clients": s.TakeClients,
		"control": s.Control, "auto_failback": s.AutoFailback, "failback_delay": s.FailbackDelay.Seconds(),
		"wait_ready": s.WaitReady, "copy_material": s.CopyMaterial, "grace": s.Grace.Seconds(),
	}
}

func randomID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
