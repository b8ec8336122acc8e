package coordinator

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"understudy/events"
	"understudy/runtime/engine"
	"understudy/runtime/policy"
	"understudy/runtime/store"
)

const (
	bucketInbox      = "inbox"
	bucketQuarantine = "quarantine"
)

// maxDeliveries is how many deliveries of an inbox event may start without
// finishing (the process died in its handler: killed as hung by the
// watchdog, out of memory, a crash) before it is set aside at start instead
// of being handed to the policy again.
const maxDeliveries = 2

// AlarmEventQuarantined is the alarm of an event set aside (one per event).
const AlarmEventQuarantined = events.EventQuarantined

// quarantinePrefix starts the proposal id of a quarantined event: confirm
// runs it once more, reject drops it.
const quarantinePrefix = "quarantine-"

// inboxEvent is an event the policy must see exactly once although nothing
// would raise it again after a restart: takeover events, named timers,
// operator commands, action results. It is written to the store before it is
// dispatched, and leaves the store in the same transaction as the actions its
// handlers asked for. A coordinator killed in the middle of a handler runs it
// again after the restart; one killed after it sends what it asked for.
//
// Deliveries counts the deliveries begun, written before each: an event
// whose handler took the process down maxDeliveries times (a poison event)
// is quarantined at the next start, never handed to the policy again by
// itself, so a crash loop under Restart=always cannot follow.
type inboxEvent struct {
	Seq        uint64         `json:"seq"`
	Name       string         `json:"name"`
	At         time.Time      `json:"at"`
	Member     string         `json:"member,omitempty"`
	Fields     map[string]any `json:"fields,omitempty"`
	Deliveries int            `json:"deliveries,omitempty"`
}

// quarantined is an event set aside, with when and why: an inbox event, or
// a member event (Hold; memberdeliveries.go), whose later occurrences for the
// same member are held too while it is quarantined.
type quarantined struct {
	Event inboxEvent `json:"event"`
	Since time.Time  `json:"since"`
	Why   string     `json:"why"`
	// Hold: a member event; Held counts the later events of its name for
	// its member that were not handed to the policy, Last is the latest.
	Hold bool        `json:"hold,omitempty"`
	Held int         `json:"held,omitempty"`
	Last *inboxEvent `json:"last,omitempty"`
}

func inboxKey(seq uint64) string { return fmt.Sprintf("%016x", seq) }

// deliverOnce puts ev in the inbox (with extra in the same transaction) and
// dispatches it once the current work is done.
func (c *Coordinator) deliverOnce(ev policy.Event, extra func(*store.Tx) error) {
	ie := inboxEvent{Name: ev.Name, At: ev.At, Fields: ev.Fields}
	if ev.Member != nil {
		ie.Member = ev.Member.ID
	}
	err := c.store.Update(func(tx *store.Tx) error {
		seq, err := tx.Increment("meta", "inbox_seq")
		if err != nil {
			return err
		}
		ie.Seq = seq
		if err := tx.Put(bucketInbox, inboxKey(seq), ie); err != nil {
			return err
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	if err != nil {
		c.log.Error("event not recorded; handing it to the policy anyway", "event", ev.Name, "error", err)
		c.dispatchLater(ev)
		return
	}
	c.postCaused(func() { c.dispatchInbox(ie) })
}

// dispatchInbox hands an inbox event to the policy, counting the delivery
// in the store first.
func (c *Coordinator) dispatchInbox(ie inboxEvent) {
	ie.Deliveries++
	if err := c.store.Put(bucketInbox, inboxKey(ie.Seq), ie); err != nil {
		c.log.Error("delivery of an event not counted in the state file", "event", ie.Name, "error", err)
	}
	ev := c.memberEvent(ie.Name, ie.At, ie.Member, ie.Fields)
	c.dispatchWith(ev, func(tx *store.Tx) error { return tx.Delete(bucketInbox, inboxKey(ie.Seq)) })
}

// redeliverInbox dispatches again the events a previous coordinator had not
// finished handling, in their order, marked redelivered; an event whose
// deliveries took the process down maxDeliveries times is quarantined.
func (c *Coordinator) redeliverInbox() {
	all, err := store.Load[inboxEvent](c.store, bucketInbox)
	if err != nil {
		c.log.Error("inbox unreadable", "error", err)
		return
	}
	for _, key := range slices.Sorted(maps.Keys(all)) {
		ie := all[key]
		if ie.Deliveries >= maxDeliveries {
			c.quarantine(ie, fmt.Sprintf("its handlers did not finish %d times: the process died in them (hung and killed, out of memory, crashed)", ie.Deliveries))
			continue
		}
		if ie.Fields == nil {
			ie.Fields = map[string]any{}
		}
		ie.Fields["redelivered"] = true
		c.log.Info("handing the policy an event it had not finished with before the restart", "event", ie.Name, "member", ie.Member, "deliveries", ie.Deliveries)
		c.Post(func() { c.dispatchInbox(ie) })
	}
}

// quarantine sets an inbox event aside: it leaves the inbox, is kept in the
// quarantine, recorded (event_quarantined) and raised as an alarm that is
// also a proposal: confirm runs it once more, reject drops it.
func (c *Coordinator) quarantine(ie inboxEvent, why string) {
	q := quarantined{Event: ie, Since: c.clock.Now(), Why: why}
	key := inboxKey(ie.Seq)
	if err := c.store.Update(func(tx *store.Tx) error {
		if err := tx.Put(bucketQuarantine, key, q); err != nil {
			return err
		}
		return tx.Delete(bucketInbox, key)
	}); err != nil {
		c.log.Error("poison event not moved to the quarantine; it is not handed to the policy", "event", ie.Name, "error", err)
	}
	proposal := quarantineProposal(ie.Seq)
	fields := map[string]any{"event": ie.Name, "seq": ie.Seq, "deliveries": ie.Deliveries, "why": why, "proposal": proposal}
	c.log.Error("event quarantined: "+ie.Name+" is not handed to the policy again", "member", ie.Member, "deliveries", ie.Deliveries, "why", why, "proposal", proposal)
	c.record(engine.Record{Type: events.EventQuarantined, Member: ie.Member, Fields: fields})
	c.raiseAlarm(engine.Alarm{
		Key: quarantineAlarmKey(ie.Seq), Kind: AlarmEventQuarantined, Severity: SeverityAlarm, Member: ie.Member,
		Message: fmt.Sprintf("event %s%s was set aside: %s. Nothing the policy would have done for it was done; `understudy confirm %s` runs it once more, `understudy reject %s` drops it", ie.Name, memberText(ie.Member), why, proposal, proposal),
		Fields:  map[string]any{"event": ie.Name, "proposal": proposal},
	})
}

func memberText(m string) string {
	if m == "" {
		return ""
	}
	return " of " + m
}

func quarantineProposal(seq uint64) string { return quarantinePrefix + strconv.FormatUint(seq, 10) }
func quarantineAlarmKey(seq uint64) string {
	return AlarmEventQuarantined + ":" + strconv.FormatUint(seq, 10)
}
func isQuarantineProposal(id string) bool { return strings.HasPrefix(id, quarantinePrefix) }
func quarantineSeq(id string) (uint64, error) {
	seq, err := strconv.ParseUint(strings.TrimPrefix(id, quarantinePrefix), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("no quarantined event %q", id)
	}
	return seq, nil
}

// confirmQuarantined runs a quarantined event once more (an operator's
// confirm): it goes back to the inbox with its deliveries (a member event
// is counted from its deliveries when it is handed over: confirmHeld), so
// that if it takes the process down again it is quarantined again at the
// start.
func (c *Coordinator) confirmQuarantined(id, by string) error {
	q, err := c.takeQuarantined(id, func(tx *store.Tx, q quarantined) error {
		if q.Hold {
			return nil
		}
		return tx.Put(bucketInbox, inboxKey(q.Event.Seq), q.Event)
	})
	if err != nil {
		return err
	}
	if q.Hold {
		c.confirmHeld(q, by)
		return nil
	}
	c.log.Warn("quarantined event handed to the policy once more", "event", q.Event.Name, "member", q.Event.Member, "by", by)
	c.clearAlarm(quarantineAlarmKey(q.Event.Seq), "confirmed by "+by+": run once more")
	ie := q.Event
	if ie.Fields == nil {
		ie.Fields = map[string]any{}
	}
	ie.Fields["confirmed_by"] = by
	c.postCaused(func() { c.dispatchInbox(ie) })
	return nil
}

// rejectQuarantined drops a quarantined event (an operator's reject).
func (c *Coordinator) rejectQuarantined(id, by string) error {
	q, err := c.takeQuarantined(id, nil)
	if err != nil {
		return err
	}
	if q.Hold {
		c.rejectHeld(q, by)
		return nil
	}
	c.log.Warn("quarantined event dropped", "event", q.Event.Name, "member", q.Event.Member, "by", by)
	c.clearAlarm(quarantineAlarmKey(q.Event.Seq), "rejected by "+by+": dropped")
	return nil
}

// takeQuarantined removes the quarantined event id, with also (if any) in
// the same transaction.
func (c *Coordinator) takeQuarantined(id string, also func(*store.Tx, quarantined) error) (quarantined, error) {
	seq, err := quarantineSeq(id)
	if err != nil {
		return quarantined{}, err
	}
	var q quarantined
	err = c.store.Update(func(tx *store.Tx) error {
		found, err := tx.Get(bucketQuarantine, inboxKey(seq), &q)
		if err != nil {
			return err
		}
		if !found {
			return errNoQuarantined
		}
		if err := tx.Delete(bucketQuarantine, inboxKey(seq)); err != nil {
			return err
		}
		if also != nil {
			return also(tx, q)
		}
		return nil
	})
	if errors.Is(err, errNoQuarantined) {
		return q, fmt.Errorf("no quarantined event %q (quarantined: %s)", id, c.quarantinedIDs())
	}
	return q, err
}

var errNoQuarantined = errors.New("no such quarantined event")

func (c *Coordinator) quarantinedIDs() string {
	var ids []string
	for _, q := range c.quarantinedList() {
		ids = append(ids, q.Proposal)
	}
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// quarantinedList is the quarantine, oldest first, for the status.
func (c *Coordinator) quarantinedList() []engine.QuarantinedEvent {
	all, err := store.Load[quarantined](c.store, bucketQuarantine)
	if err != nil {
		c.log.Error("quarantine unreadable", "error", err)
		return nil
	}
	var out []engine.QuarantinedEvent
	for _, key := range slices.Sorted(maps.Keys(all)) {
		q := all[key]
		out = append(out, engine.QuarantinedEvent{Proposal: quarantineProposal(q.Event.Seq), Event: q.Event.Name, Member: q.Event.Member, Deliveries: q.Event.Deliveries, Since: q.Since, Why: q.Why, At: q.Event.At, Held: q.Held})
	}
	return out
}
