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
	"understudy/runtime/config"
	"understudy/runtime/policy"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// startTakeover opens the coordinator's epoch and its takeover bookkeeping.
func (e *Coordinator) startTakeover() error {
	epoch, err := e.store.Increment("meta", "epoch")
	if err != nil {
		return fmt.Errorf("coordinator epoch: %w", err)
	}
	e.actions.epoch = epoch
	e.actions.fresh = epoch == 1
	e.store.View(func(tx *store.Tx) error {
		e.actions.seq = tx.Counter("meta", "action_seq")
		return nil
	})
	if err := e.store.Update(func(tx *store.Tx) error {
		if found, err := tx.Get("meta", "state_id", &e.actions.stateID); found || err != nil {
			return err
		}
		e.actions.stateID = randomID()
		return tx.Put("meta", "state_id", e.actions.stateID)
	}); err != nil {
		return fmt.Errorf("coordinator state id: %w", err)
	}
	e.takeover, err = takeover.New(takeover.Options{
		Store: e.store, Clock: e.clock, Post: e.Post, Site: siteView{e}, Actions: e.actions,
		Emit: e.onTakeoverEvent, Logger: e.log.With("component", "takeover"),
		Limit: e.site.Failover.Limit, Mode: e.site.Failover.Mode, ConfirmAfter: e.site.Failover.ConfirmAfter.D(),
		CopySettle: e.site.CopySettle(),
	})
	if err != nil {
		return fmt.Errorf("takeover state: %w", err)
	}
	e.log.Info("coordinating", "epoch", epoch, "mode", e.takeover.Mode(), "limit", e.site.Failover.Limit)
	return nil
}

// resumeActions sends again what the store holds unanswered and hands the
// takeover bookkeeping the results it may not have taken before a restart.
func (e *Coordinator) resumeActions() error {
	finished, err := e.actions.resume()
	if err != nil {
		return fmt.Errorf("actions: %w", err)
	}
	for _, a := range finished {
		e.takeover.Result(a.ID, a.Error, a.Result)
	}
	return nil
}

func (e *Coordinator) onTakeoverEvent(ev takeover.Event) {
	if e.takeoverAlarm(ev) {
		return
	}
	e.log.Info(ev.Name, "member", ev.Member, "fields", ev.Fields)
	e.record(engine.Record{Type: ev.Name, Member: ev.Member, Fields: ev.Fields})
	pe := e.memberEvent(ev.Name, e.clock.Now(), ev.Member, ev.Fields)
	e.deliverOnce(pe, nil)
	if e.opts.Publisher != nil && ev.Member != "" && e.table.Known(ev.Member) {
		if m, ok := e.table.Get(ev.Member); ok {
			e.publishState(m)
		}
		if c, ok := e.takeover.Covered(ev.Member); ok {
			if m, ok := e.table.Get(c.Standby); ok {
				e.publishState(m)
			}
		} else if s, ok := ev.Fields["standby"].(string); ok && e.table.Known(s) {
			if m, ok := e.table.Get(s); ok {
				e.publishState(m)
			}
		}
	}
	e.clearTakeoverAlarms(ev)
	e.Post(e.publishTakeover)
	if ev.Name == "mode_changed" && ev.Fields["mode"] == config.ModeAuto {
		e.Post(e.assertAll) // start-up routes withheld in manual mode
	}
}

// takeoverAlarm turns the bookkeeping's alarm events into alarms. It reports
// whether ev was one (and nothing else).
func (e *Coordinator) takeoverAlarm(ev takeover.Event) bool {
	standby, _ := ev.Fields["standby"].(string)
	switch ev.Name {
	case "failback_stalled":
		e.raiseAlarm(engine.Alarm{Key: AlarmFailbackStalled + ":" + ev.Member, Kind: AlarmFailbackStalled, Severity: SeverityWarning, Member: ev.Member,
			Message: fmt.Sprintf("the failback of %s keeps pausing: it went suspect %v times (%.0fs in all); the failback waits for it to be alive", ev.Member, ev.Fields["pauses"], ev.Fields["suspect_s"]),
			Fields:  ev.Fields})
		return true
	case "copy_incomplete":
		e.raiseAlarm(engine.Alarm{Key: AlarmCopyIncomplete + ":" + ev.Member, Kind: AlarmCopyIncomplete, Severity: SeverityAlarm, Member: ev.Member,
			Message: fmt.Sprintf("the material %s recorded for %s is not all copied back (%v); the coverage stays open and the copy is tried again in %.0fs, or at once by a failback command", standby, ev.Member, ev.Fields["error"], ev.Fields["retry_in_s"]),
			Fields:  ev.Fields})
		return true
	}
	return false
}

// clearTakeoverAlarms ends the alarms of a failback that ended.
func (e *Coordinator) clearTakeoverAlarms(ev takeover.Event) {
	switch ev.Name {
	case "failback_done", "failback_failed", "takeover_failed", "takeover_started":
		e.clearAlarm(AlarmFailbackStalled+":"+ev.Member, ev.Name)
		e.clearAlarm(AlarmCopyIncomplete+":"+ev.Member, ev.Name)
	}
	if ev.Name == "takeover_started" {
		e.clearAlarm(AlarmCopyFoundNone+":"+ev.Member, "covered again")
	}
}

// publishTakeover publishes the takeover state (retained) when it changed.
func (e *Coordinator) publishTakeover() {
	if e.takeover == nil || e.opts.Publisher == nil {
		return
	}
	payload, err := json.Marshal(e.takeover.Snapshot())
	if err != nil || string(payload) == e.published {
		return
	}
	if err := e.opts.Publisher.Publish(e.topics.Takeover(), 1, true, payload); err == nil {
		e.published = string(payload)
	}
}

// Takeover returns the coordinator's takeover state (call it on the loop,
// e.g. through Do).
func (e *Coordinator) Takeover() *takeover.Manager { return e.takeover }

// Ack feeds an instance's answer to a command. Any goroutine.
func (e *Coordinator) Ack(a bus.Ack) { e.Post(func() { e.actions.ack(a) }) }

// Health feeds an instance's disk health report. Any goroutine.
func (e *Coordinator) Health(h bus.Health) {
	e.Post(func() {
		if !e.table.Known(h.Member) {
			return
		}
		if d, ok := e.drills[h.Member]; ok && d.Fault == DrillBroken {
			d.Broken = h.Broken // the drill's fault stands until it ends
			return
		}
		if e.broken[h.Member] == h.Broken {
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
		e.setBroken(h.Member, h.Broken, failed, reason)
	})
}

// setBroken marks a member broken (all material disks failed) or not, and
// tells the record stream, the bus and the policy (on the loop).
func (e *Coordinator) setBroken(member string, broken bool, failed []string, reason string) {
	e.broken[member] = broken
	lm, _ := e.table.Get(member)
	kind := "member_broken"
	if !broken {
		kind = members.EventRestored
	}
	fields := map[string]any{"state": e.stateOf(member), "reason": reason, "disks_failed": failed}
	e.log.Warn("member "+kind, "member", member, "disks", failed)
	e.record(engine.Record{Type: kind, Member: member, Fields: e.drillFields(member, fields)})
	if e.opts.Publisher != nil {
		e.publishState(lm)
	}
	if e.takeover != nil {
		e.takeover.MemberChanged(member)
	}
	m := e.policyMember(member)
	m.Reason = reason
	e.dispatch(policy.Event{Name: kind, At: e.clock.Now(), Member: &m, Fields: e.drillFields(member, map[string]any{"reason": reason, "disks_failed": failed})})
}

// Command takes an operator command (from the bus, the CLI or the web). The
// coordinator refuses what cannot be carried out (checkCommand), answers
// confirm, reject and mode itself; every command not refused then reaches
// the policy as the event command:VERB. Any goroutine.
func (e *Coordinator) Command(verb string, fields map[string]any, from string) {
	e.Post(func() { e.command(verb, fields, from) })
}

// CommandWait carries out an operator command as Command does and returns
// what followed from it (until the engine has nothing more queued for it):
// the command's record (with its error when it was refused) and the records
// of the policy's handling of it — actions, takeover events, policy errors —
// and of nothing else: not another command's, not what happens later (an
// action's result, a member's event). Any goroutine; not in a simulation
// (no loop runs).
func (e *Coordinator) CommandWait(ctx context.Context, verb string, fields map[string]any, from string) ([]engine.Record, error) {
	c := &capture{}
	stop := func() { e.captures = slices.DeleteFunc(e.captures, func(x *capture) bool { return x == c }) }
	if err := e.Do(ctx, func() {
		e.causes++
		c.cause = e.causes
		e.captures = append(e.captures, c)
		e.cause = c.cause
		defer func() { e.cause = 0 }()
		e.command(verb, fields, from)
	}); err != nil {
		e.Post(stop)
		return nil, err
	}
	// The policy's handler was queued by the command, and what it set off
	// (a takeover_started for the policy, say) is queued in turn: wait until
	// a round of the queue brings no new record.
	var out []engine.Record
	for seen := -1; seen != len(out); {
		seen = len(out)
		if err := e.Do(ctx, func() { out = slices.Clone(c.records) }); err != nil {
			e.Post(stop)
			return nil, err
		}
	}
	e.Post(stop)
	return out, nil
}

// capture collects the records that follow from one command (its cause)
// while it is in Engine.captures.
type capture struct {
	cause   uint64
	records []engine.Record
}

func (e *Coordinator) command(verb string, fields map[string]any, from string) {
	fields["by"] = from
	err := e.checkCommand(verb, fields)
	if err == nil && e.takeover != nil {
		switch verb {
		case "drill":
			var r DrillRequest
			if r, err = ParseDrill(fields); err == nil {
				err = e.startDrill(r, from)
			}
		case "drill_end":
			err = e.endDrill(fmt.Sprint(fields["member"]), "ended by "+from, from)
		case "confirm":
			err = e.takeover.Confirm(fmt.Sprint(fields["proposal"]), from)
		case "reject":
			err = e.takeover.Reject(fmt.Sprint(fields["proposal"]), from)
		case "mode":
			mode, _ := fields["mode"].(string)
			if mode == "" {
				err = errors.New("mode: which mode? (mode: auto or manual)")
			} else {
				err = e.takeover.SetMode(mode, from)
			}
		case "reassert":
			err = e.reassertCommand(fields)
		}
	}
	rec := engine.Record{Type: "command", Fields: map[string]any{"verb": verb, "args": fields}}
	if err != nil {
		rec.Fields["error"] = err.Error()
		e.log.Warn("command refused", "verb", verb, "error", err)
	}
	e.record(rec)
	if err == nil {
		e.deliverOnce(policy.Event{Name: "command:" + verb, At: e.clock.Now(), Fields: fields}, nil)
	}
	e.publishTakeover()
}

// runHook records and sends a named hook for a member's instance.
func (e *Coordinator) runHook(target, name string, args map[string]any, cause string) (string, error) {
	if !e.table.Known(target) {
		return "", fmt.Errorf("no member %q", target)
	}
	return e.actions.add(&action{Target: target, Verb: name, Args: args, Cause: cause})
}

// siteView is the site as the takeover bookkeeping sees it.
type siteView struct{ e *Coordinator }

var _ takeover.Site = siteView{}

func (v siteView) Member(id string) (takeover.Member, bool) {
	cm, ok := v.e.site.Member(id)
	if !ok || !v.e.table.Known(id) {
		return takeover.Member{}, false
	}
	return takeover.Member{
		ID: id, State: v.e.stateOf(id), Priority: cm.Priority, Standby: cm.Standby, Pool: cm.Pool,
		Capacity: cm.Capacity, Usage: cm.Usage, DiskLayout: cm.DiskLayout,
		Capabilities: cm.Capabilities, Requires: cm.Requires, Settings: cm.Settings,
	}, true
}

func (v siteView) Members() []takeover.Member {
	var out []takeover.Member
	for _, m := range v.e.table.All() {
		if tm, ok := v.Member(m.ID); ok {
			out = append(out, tm)
		}
	}
	return out
}

func (v siteView) Match(pool string) []string { return v.e.site.Pools[pool].Match }

func (v siteView) CopyActions(r takeover.CopyRequest) ([]takeover.Action, error) {
	return v.e.copyActions(r)
}

// Bundle is the duty bundle of a member: what a standby needs to become it,
// given to its hooks as template data.
func (v siteView) Bundle(member string) map[string]any {
	cm, ok := v.e.site.Member(member)
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
	if c, ok := v.e.newestConfig(cm); ok {
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
