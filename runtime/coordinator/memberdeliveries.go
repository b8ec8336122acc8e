package coordinator

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"understudy/discovery/members"
	"understudy/events"
	"understudy/runtime/engine"
	"understudy/runtime/policy"
	"understudy/runtime/store"
)

// A member's transitions (member_seen, member_lost, member_restored,
// member_broken, …) do not go through the inbox: after a restart the member
// table judges every member afresh and raises again what still holds. But a
// handler of one that takes the process down would then take it down at
// every start — the member is judged lost again after lost_after, the same
// handler runs, the process dies: a crash loop under Restart=always, and the
// site has no failover at all.
//
// So each delivery of a member event to a policy that handles it is counted
// in the store under its name and member before the handlers run, and the
// count leaves the store with the actions they asked for. A count found at
// start is a delivery that never finished. One that reached maxDeliveries
// quarantines the pair: the event is recorded and raised as an alarm that is
// also a proposal (quarantine-SEQ, as for an inbox event), and later events
// of that name for that member are held — recorded (event_held), counted and
// logged, not handed to the policy — until an operator confirms (the policy
// gets the event once more, with the member as it is then) or rejects (the
// quarantine is lifted). A count below the limit stays: the delivery is not
// made again by itself, the next event of that name for that member adds to
// it.

// bucketMemberDeliveries holds the member events being handed to the
// policy, by memberDeliveryKey.
const bucketMemberDeliveries = "member_deliveries"

// memberDelivery is a member event whose handlers run (or ran, in a process
// that died in them), with the deliveries begun that never finished.
type memberDelivery struct {
	Name       string         `json:"name"`
	Member     string         `json:"member"`
	At         time.Time      `json:"at"`
	Fields     map[string]any `json:"fields,omitempty"`
	Deliveries int            `json:"deliveries"`
}

// heldPair is a quarantined member event, by memberDeliveryKey: Seq is its
// quarantine (0: it could not be written, it is held for this run only);
// Logged is set once a held event was logged in this run.
type heldPair struct {
	Seq    uint64
	Logged bool
}

func memberDeliveryKey(name, member string) string { return name + "/" + member }

// dispatchMember hands the policy an event about member (a transition of
// the member table, broken disks): counted in the store first when the
// policy handles it, or held when its name is quarantined for member.
func (c *Coordinator) dispatchMember(ev policy.Event, member string) {
	c.deliverMember(ev, member, 0)
}

// deliverMember is dispatchMember, counting the delivery after at least
// before earlier ones (a confirmed quarantine's).
func (c *Coordinator) deliverMember(ev policy.Event, member string, before int) {
	key := memberDeliveryKey(ev.Name, member)
	if hp, ok := c.held[key]; ok {
		c.holdMemberEvent(key, hp, ev, member)
		return
	}
	if c.policy == nil || !c.policy.Handles(ev.Name) {
		c.dispatch(ev) // no handler to die in: nothing to count
		return
	}
	d := memberDelivery{Name: ev.Name, Member: member, At: ev.At, Fields: ev.Fields}
	err := c.store.Update(func(tx *store.Tx) error {
		var prev memberDelivery
		if _, err := tx.Get(bucketMemberDeliveries, key, &prev); err != nil {
			return err
		}
		d.Deliveries = max(prev.Deliveries, before) + 1
		return tx.Put(bucketMemberDeliveries, key, d)
	})
	if err != nil {
		c.log.Error("delivery of a member event not counted in the state file; handing it to the policy anyway", "event", ev.Name, "member", member, "error", err)
		c.dispatch(ev)
		return
	}
	c.dispatchWith(ev, func(tx *store.Tx) error { return tx.Delete(bucketMemberDeliveries, key) })
}

// restoreMemberDeliveries takes up, at start, the member events quarantined
// before, and the deliveries a previous coordinator began and never
// finished. It returns those that reached maxDeliveries, held from now on,
// for quarantineMembers.
func (c *Coordinator) restoreMemberDeliveries() ([]memberDelivery, error) {
	qs, err := store.Load[quarantined](c.store, bucketQuarantine)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	c.held = map[string]*heldPair{}
	for _, q := range qs {
		if q.Hold {
			c.held[memberDeliveryKey(q.Event.Name, q.Event.Member)] = &heldPair{Seq: q.Event.Seq}
		}
	}
	left, err := store.Load[memberDelivery](c.store, bucketMemberDeliveries)
	if err != nil {
		return nil, fmt.Errorf("member event deliveries: %w", err)
	}
	var poison []memberDelivery
	for _, key := range slices.Sorted(maps.Keys(left)) {
		d := left[key]
		switch {
		case c.held[key] != nil:
			// Quarantined already: the quarantine stands.
			if err := c.store.Delete(bucketMemberDeliveries, key); err != nil {
				c.log.Error("delivery count of a quarantined member event not removed from the state file", "event", d.Name, "member", d.Member, "error", err)
			}
		case d.Deliveries >= maxDeliveries:
			c.held[key] = &heldPair{} // until quarantineMembers
			poison = append(poison, d)
		default:
			c.log.Warn("the handlers of a member event did not finish before the restart; it is not handed to the policy again by itself, and if it is raised again and its handlers do not finish once more it is quarantined",
				"event", d.Name, "member", d.Member, "deliveries", d.Deliveries)
		}
	}
	return poison, nil
}

// quarantineMembers quarantines the member events restoreMemberDeliveries
// found poison.
func (c *Coordinator) quarantineMembers(poison []memberDelivery) {
	for _, d := range poison {
		c.quarantineMember(memberDeliveryKey(d.Name, d.Member), d, fmt.Sprintf("its handlers did not finish %d times: the process died in them (hung and killed, out of memory, crashed)", d.Deliveries))
	}
}

// quarantineMember sets a member event aside: its count of deliveries
// leaves the store for the quarantine, it is recorded (event_quarantined)
// and raised as an alarm that is also a proposal, and later events of its
// name for its member are held.
func (c *Coordinator) quarantineMember(key string, d memberDelivery, why string) {
	q := quarantined{Event: inboxEvent{Name: d.Name, At: d.At, Member: d.Member, Fields: d.Fields, Deliveries: d.Deliveries}, Since: c.clock.Now(), Why: why, Hold: true}
	err := c.store.Update(func(tx *store.Tx) error {
		seq, err := tx.Increment("meta", "inbox_seq")
		if err != nil {
			return err
		}
		q.Event.Seq = seq
		if err := tx.Put(bucketQuarantine, inboxKey(seq), q); err != nil {
			return err
		}
		return tx.Delete(bucketMemberDeliveries, key)
	})
	if err != nil {
		// The count stays in the store: the next start quarantines it.
		c.held[key] = &heldPair{}
		c.log.Error("poison member event not moved to the quarantine; it is held until the coordinator restarts", "event", d.Name, "member", d.Member, "error", err)
		return
	}
	c.held[key] = &heldPair{Seq: q.Event.Seq}
	proposal := quarantineProposal(q.Event.Seq)
	c.log.Error("event quarantined: "+d.Name+" of "+d.Member+" is not handed to the policy again", "member", d.Member, "deliveries", d.Deliveries, "why", why, "proposal", proposal)
	c.record(engine.Record{Type: events.EventQuarantined, Member: d.Member, Fields: map[string]any{"event": d.Name, "seq": q.Event.Seq, "deliveries": d.Deliveries, "why": why, "proposal": proposal}})
	c.raiseAlarm(c.heldAlarm(q))
}

// holdMemberEvent keeps from the policy an event whose name is quarantined
// for member: it is counted in the quarantine (the latest is kept, for a
// confirm), recorded (event_held), logged the first time in this run, and
// counted on the alarm.
func (c *Coordinator) holdMemberEvent(key string, hp *heldPair, ev policy.Event, member string) {
	fields := map[string]any{"event": ev.Name}
	var q quarantined
	if hp.Seq != 0 {
		fields["proposal"] = quarantineProposal(hp.Seq)
		err := c.store.Update(func(tx *store.Tx) error {
			found, err := tx.Get(bucketQuarantine, inboxKey(hp.Seq), &q)
			if err != nil || !found {
				return err
			}
			q.Held++
			q.Last = &inboxEvent{Seq: hp.Seq, Name: ev.Name, At: ev.At, Member: member, Fields: ev.Fields}
			return tx.Put(bucketQuarantine, inboxKey(hp.Seq), q)
		})
		if err != nil {
			c.log.Error("held member event not counted in the state file", "event", ev.Name, "member", member, "error", err)
		}
		fields["held"] = q.Held
	}
	if !hp.Logged {
		hp.Logged = true
		c.log.Warn("event held: "+ev.Name+" of "+member+" is quarantined and not handed to the policy (logged once; each is recorded as event_held)", "member", member, "proposal", fields["proposal"])
	}
	c.record(engine.Record{At: ev.At, Type: events.EventHeld, Member: member, Fields: fields})
	if q.Hold {
		c.raiseAlarm(c.heldAlarm(q))
	}
}

// heldAlarm is the alarm of a quarantined member event: what is not done,
// whether the member is covered, and what confirm and reject do.
func (c *Coordinator) heldAlarm(q quarantined) engine.Alarm {
	ie := q.Event
	proposal := quarantineProposal(ie.Seq)
	msg := fmt.Sprintf("event %s of %s was set aside: %s. Later %s events of %s are not handed to the policy either", ie.Name, ie.Member, q.Why, ie.Name, ie.Member)
	if q.Held > 0 {
		msg += fmt.Sprintf(" (%d held so far)", q.Held)
	}
	msg += ", so nothing the policy would have done for them is done"
	if coversMember(ie.Name) && c.takeover != nil {
		if cv, ok := c.takeover.Covered(ie.Member); ok {
			msg += fmt.Sprintf("; %s is covered by %s", ie.Member, cv.Standby)
		} else {
			msg += fmt.Sprintf("; %s is not covered by a standby (its takeover is the policy's to decide)", ie.Member)
		}
	}
	msg += fmt.Sprintf(". Other events, and other members' events, go to the policy as before. `understudy confirm %s` hands it to the policy once more, with %s as it is then (if it takes the process down again it is set aside again at the next start: fix the policy first); `understudy reject %s` lifts the quarantine without running it", proposal, ie.Member, proposal)
	return engine.Alarm{
		Key: quarantineAlarmKey(ie.Seq), Kind: AlarmEventQuarantined, Severity: SeverityAlarm, Member: ie.Member,
		Message: msg, Fields: map[string]any{"event": ie.Name, "proposal": proposal, "held": q.Held},
	}
}

// coversMember reports whether the policy may cover the member on an event
// of this name (take it over by a standby).
func coversMember(name string) bool {
	return name == members.EventLost || name == members.EventClosed || name == events.MemberBroken
}

// confirmHeld lifts the quarantine of a member event q (taken from the
// store) and hands the policy the event once more, the latest held if any,
// with the member as it is now and confirmed_by. Its delivery is counted
// after the quarantined ones: if it takes the process down again, it is
// quarantined again at the next start.
func (c *Coordinator) confirmHeld(q quarantined, by string) {
	ie := q.Event
	if q.Last != nil {
		ie = *q.Last
	}
	delete(c.held, memberDeliveryKey(ie.Name, ie.Member))
	c.log.Warn("quarantined member event handed to the policy once more", "event", ie.Name, "member", ie.Member, "held", q.Held, "by", by)
	c.clearAlarm(quarantineAlarmKey(q.Event.Seq), "confirmed by "+by+": run once more, and no longer held")
	fields := maps.Clone(ie.Fields)
	if fields == nil {
		fields = map[string]any{}
	}
	fields["confirmed_by"] = by
	ev := c.memberEvent(ie.Name, ie.At, ie.Member, fields)
	c.postCaused(func() { c.deliverMember(ev, ie.Member, q.Event.Deliveries) })
}

// rejectHeld lifts the quarantine of a member event q (taken from the
// store) without running it: later events of its name for its member go to
// the policy again.
func (c *Coordinator) rejectHeld(q quarantined, by string) {
	ie := q.Event
	delete(c.held, memberDeliveryKey(ie.Name, ie.Member))
	c.log.Warn("quarantine of a member event lifted without running it", "event", ie.Name, "member", ie.Member, "held", q.Held, "by", by)
	c.clearAlarm(quarantineAlarmKey(ie.Seq), "rejected by "+by+": not run; later "+ie.Name+" events of "+ie.Member+" go to the policy again")
}
