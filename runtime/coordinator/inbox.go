package coordinator

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"understudy/runtime/policy"
	"understudy/runtime/store"
)

const bucketInbox = "inbox"

// inboxEvent is an event the policy must see exactly once although nothing
// would raise it again after a restart: takeover events, named timers,
// operator commands, action results. It is written to the store before it is
// dispatched, and leaves the store in the same transaction as the actions its
// handlers asked for. A coordinator killed in the middle of a handler runs it
// again after the restart; one killed after it sends what it asked for.
type inboxEvent struct {
	Seq    uint64         `json:"seq"`
	Name   string         `json:"name"`
	At     time.Time      `json:"at"`
	Member string         `json:"member,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
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

func (c *Coordinator) dispatchInbox(ie inboxEvent) {
	ev := c.memberEvent(ie.Name, ie.At, ie.Member, ie.Fields)
	c.dispatchWith(ev, func(tx *store.Tx) error { return tx.Delete(bucketInbox, inboxKey(ie.Seq)) })
}

// redeliverInbox dispatches again the events a previous coordinator had not
// finished handling, in their order, marked redelivered.
func (c *Coordinator) redeliverInbox() {
	all, err := store.Load[inboxEvent](c.store, bucketInbox)
	if err != nil {
		c.log.Error("inbox unreadable", "error", err)
		return
	}
	for _, key := range slices.Sorted(maps.Keys(all)) {
		ie := all[key]
		if ie.Fields == nil {
			ie.Fields = map[string]any{}
		}
		ie.Fields["redelivered"] = true
		c.log.Info("handing the policy an event it had not finished with before the restart", "event", ie.Name, "member", ie.Member)
		c.Post(func() { c.dispatchInbox(ie) })
	}
}
