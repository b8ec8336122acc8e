//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/engine"
)

// stamped is something the bench received, with when.
type stamped[T any] struct {
	at time.Time
	v  T
}

// siteWatch is the bench's view of a site from the bus, each message stamped
// on arrival: the coordinator's records (events topic), the members' states
// as the coordinator publishes them, and Last Wills — a member's presence
// "gone", or a reference client's will on understudy-bench/will/… .
type siteWatch struct {
	records chan stamped[engine.Record]
	wills   chan stamped[string] // the member id, or the reference's will topic
	// onRecord, when set, sees every record as it arrives (on the
	// subscriber's goroutine: it must not block).
	onRecord func(stamped[engine.Record])

	mu      sync.Mutex
	states  map[string]string
	changed chan struct{} // closed and replaced when a state arrives
}

func newSiteWatch() *siteWatch {
	return &siteWatch{records: make(chan stamped[engine.Record], 4096), wills: make(chan stamped[string], 64),
		states: map[string]string{}, changed: make(chan struct{})}
}

// filters are the subscriptions onMessage expects, for site.
func (w *siteWatch) filters(site string) []string {
	t := bus.Topics{Site: site}
	return []string{t.Events(), t.AllStates(), t.AllPresence(), "understudy-bench/will/#"}
}

// onMessage runs on the subscriber's goroutine: it must not block.
func (w *siteWatch) onMessage(m bus.Message) {
	now := time.Now()
	switch {
	case strings.HasPrefix(m.Topic, "understudy-bench/will/"):
		w.will(stamped[string]{now, m.Topic})
	case strings.HasSuffix(m.Topic, "/events"):
		var r engine.Record
		if json.Unmarshal(m.Payload, &r) != nil {
			return
		}
		rec := stamped[engine.Record]{now, r}
		if w.onRecord != nil {
			w.onRecord(rec)
		}
		select {
		case w.records <- rec:
		default: // a full buffer drops: the waits then time out and say so
		}
	case strings.HasSuffix(m.Topic, "/presence"):
		var p bus.Presence
		// A Will is retained; mochi delivers it to live subscribers with the
		// retain flag still set. Wills from before a wait are drained.
		if json.Unmarshal(m.Payload, &p) != nil || p.State != "gone" {
			return
		}
		w.will(stamped[string]{now, p.Member})
	case strings.HasSuffix(m.Topic, "/state"):
		var st struct{ Member, State string }
		if json.Unmarshal(m.Payload, &st) != nil || st.Member == "" {
			return
		}
		w.mu.Lock()
		w.states[st.Member] = st.State
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	}
}

func (w *siteWatch) will(s stamped[string]) {
	select {
	case w.wills <- s:
	default:
	}
}

// waitState waits until the coordinator publishes member in state.
func (w *siteWatch) waitState(ctx context.Context, member, state string) error {
	for {
		w.mu.Lock()
		now, changed := w.states[member], w.changed
		w.mu.Unlock()
		if now == state {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%s not %s at the coordinator (it is %q): %w", member, state, now, ctx.Err())
		}
	}
}

// waitRecord returns the first record of type typ about member that arrives
// (records before it are passed over).
func (w *siteWatch) waitRecord(ctx context.Context, typ, member string) (stamped[engine.Record], error) {
	for {
		select {
		case r := <-w.records:
			if r.v.Type == typ && r.v.Member == member {
				return r, nil
			}
		case <-ctx.Done():
			return stamped[engine.Record]{}, fmt.Errorf("no %s of %s on the events topic: %w", typ, member, ctx.Err())
		}
	}
}

// waitWill returns when the Last Will of who (a member id, or a reference
// client's will topic) arrives.
func (w *siteWatch) waitWill(ctx context.Context, who string) (time.Time, error) {
	for {
		select {
		case s := <-w.wills:
			if s.v == who {
				return s.at, nil
			}
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no Last Will of %s: %w", who, ctx.Err())
		}
	}
}

// drain forgets the records and wills received so far.
func (w *siteWatch) drain() {
	for {
		select {
		case <-w.records:
		case <-w.wills:
		default:
			return
		}
	}
}
