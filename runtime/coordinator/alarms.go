package coordinator

import (
	"encoding/json"
	"maps"
	"slices"
	"understudy/runtime/engine"

	"understudy/events"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// An alarm is a condition on the coordinator that needs a person: a switcher
// output another controller keeps changing back, a failback that keeps
// stalling, a material copy that found nothing to copy. It is raised once,
// stays until the condition ends, and is shown on every surface: the log,
// the record stream (journal, events topic, dashboard timeline), the policy
// (an event named after the alarm's kind), /status and `understudy status`,
// the dashboard's alarm list, the retained topic understudy/<site>/alarms and
// the metric understudy_alarms_active. Alarms are kept in the state store: a
// restarted coordinator still shows them. The policy raises its own with
// us.alarm; they have keys of their own ("policy:KIND[:MEMBER]").
//
// A raised alarm is the record and policy event events.Alarm (fields kind,
// key, severity, message and the alarm's own); its end is
// events.AlarmCleared.

// engine.Alarm severities.
const (
	SeverityWarning = "warning" // something is not as it should be; failover still works
	SeverityAlarm   = "alarm"   // understudy cannot do part of its job until someone acts
)

// engine.Alarm kinds the runtime raises.
const (
	AlarmRoutingFight    = "routing_fight"               // another controller keeps changing a switcher output back
	AlarmFailbackStalled = takeover.AlarmFailbackStalled // a failback keeps pausing while the member dips into suspect
	AlarmCopyFoundNone   = "copy_found_nothing"          // a material copy found no folder for the member on the source
	AlarmCopyIncomplete  = takeover.AlarmCopyIncomplete  // a failback's material copy cannot finish; the standby keeps recording
	// AlarmOutcomeUnknown: a control send (a cue GO, a relay pulse: not
	// known to be idempotent) was recorded, its answer was not, and the
	// coordinator changed or restarted in between: it may or may not have
	// reached the device, and it is not sent again by itself.
	AlarmOutcomeUnknown = "control_outcome_unknown"
	// AlarmCoverageConflict (rebuild.go): two standbys report covering one member.
	// AlarmEventQuarantined (inbox.go, memberdeliveries.go): an event whose
	// handlers took the process down twice was set aside (a member event:
	// with the later ones of its name for its member); confirm runs it once
	// more.
)

// RuntimeAlarms are the kinds of alarm the runtime raises, with their
// severity (metrics show each, at 0 while none is raised).
func RuntimeAlarms() map[string]string {
	return map[string]string{
		AlarmRoutingFight:     SeverityAlarm,
		AlarmFailbackStalled:  SeverityWarning,
		AlarmCopyFoundNone:    SeverityWarning,
		AlarmCopyIncomplete:   SeverityAlarm,
		AlarmEventQuarantined: SeverityAlarm,
		AlarmCoverageConflict: SeverityAlarm,
		AlarmOutcomeUnknown:   SeverityAlarm,
	}
}

const bucketAlarms = "alarms"

// alarms are the coordinator's raised alarms (owned by the loop).
type alarms struct {
	active map[string]*engine.Alarm
}

// restoreAlarms loads the alarms a previous run left raised.
func (c *Coordinator) restoreAlarms() error {
	all, err := store.Load[*engine.Alarm](c.store, bucketAlarms)
	if err != nil {
		return err
	}
	c.alarms.active = all
	for _, a := range slices.Sorted(maps.Keys(all)) {
		c.log.Warn("alarm still raised from before the restart", "kind", all[a].Kind, "member", all[a].Member, "message", all[a].Message)
	}
	return nil
}

// raiseAlarm raises (or raises again) the alarm a.Key. A new alarm is
// logged, recorded, published and handed to the policy (event alarm); one
// already raised only counts again and updates its text.
func (c *Coordinator) raiseAlarm(a engine.Alarm) {
	if c.alarms.active == nil {
		c.alarms.active = map[string]*engine.Alarm{}
	}
	if a.Severity == "" {
		a.Severity = SeverityAlarm
	}
	if cur, ok := c.alarms.active[a.Key]; ok {
		cur.Count++
		cur.Message, cur.Fields = a.Message, a.Fields
		c.saveAlarm(cur)
		c.publishAlarms()
		return
	}
	a.Since, a.Count = c.clock.Now(), 1
	c.alarms.active[a.Key] = &a
	c.saveAlarm(&a)
	c.log.Error("ALARM "+a.Kind+": "+a.Message, "member", a.Member, "key", a.Key)
	fields := map[string]any{"kind": a.Kind, "key": a.Key, "severity": a.Severity, "message": a.Message}
	for k, v := range a.Fields {
		if _, taken := fields[k]; !taken {
			fields[k] = v
		}
	}
	c.record(engine.Record{Type: events.Alarm, Member: a.Member, Fields: fields})
	c.publishAlarms()
	c.deliverOnce(c.memberEvent(events.Alarm, c.clock.Now(), a.Member, fields), nil)
}

// clearAlarm ends the alarm key, if raised, saying why.
func (c *Coordinator) clearAlarm(key, why string) {
	a, ok := c.alarms.active[key]
	if !ok {
		return
	}
	delete(c.alarms.active, key)
	if err := c.store.Delete(bucketAlarms, key); err != nil {
		c.log.Error("alarm not removed from the state file", "key", key, "error", err)
	}
	c.log.Info("alarm cleared: "+a.Kind, "member", a.Member, "key", key, "why", why)
	fields := map[string]any{"key": key, "kind": a.Kind, "why": why, "raised_s": c.clock.Now().Sub(a.Since).Seconds()}
	c.record(engine.Record{Type: events.AlarmCleared, Member: a.Member, Fields: fields})
	c.publishAlarms()
	c.deliverOnce(c.memberEvent(events.AlarmCleared, c.clock.Now(), a.Member, fields), nil)
}

// alarmRaised reports whether the alarm key is raised.
func (c *Coordinator) alarmRaised(key string) bool {
	_, ok := c.alarms.active[key]
	return ok
}

func (c *Coordinator) saveAlarm(a *engine.Alarm) {
	if err := c.store.Put(bucketAlarms, a.Key, a); err != nil {
		c.log.Error("alarm not written to the state file", "key", a.Key, "error", err)
	}
}

// alarmList returns the raised alarms, oldest first.
func (c *Coordinator) alarmList() []engine.Alarm {
	out := make([]engine.Alarm, 0, len(c.alarms.active))
	for _, a := range c.alarms.active {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b engine.Alarm) int {
		if cv := a.Since.Compare(b.Since); cv != 0 {
			return cv
		}
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	return out
}

// publishAlarms publishes the raised alarms on the retained alarms topic.
func (c *Coordinator) publishAlarms() {
	if c.opts.Publisher == nil {
		return
	}
	payload, _ := json.Marshal(map[string]any{"alarms": c.alarmList()})
	if err := c.opts.Publisher.Publish(c.topics.Alarms(), 1, true, payload); err != nil {
		c.log.Debug("alarms not published", "error", err)
	}
}

// policyAlarmKey is the key of an alarm the policy raised.
func policyAlarmKey(kind, member string) string {
	if member == "" {
		return "policy:" + kind
	}
	return "policy:" + kind + ":" + member
}
