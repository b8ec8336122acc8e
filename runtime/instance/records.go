package instance

import (
	"context"
	"slices"
	"sync"

	"understudy/runtime/engine"
)

// recordFeed keeps the instance's recent records and passes new ones to the
// dashboard's subscribers. The engine's loop adds; a subscriber that does not
// keep up is dropped (its channel closed) rather than slowing the loop.
type recordFeed struct {
	mu     sync.Mutex
	recent []engine.Record // a ring of the last keep records, oldest first
	keep   int
	subs   map[chan any]struct{}
	closed bool // the API is shutting down: streams end
}

const (
	feedKeep   = 200 // records the timeline starts with
	feedBuffer = 256 // records a subscriber may be behind
)

func newRecordFeed() *recordFeed {
	return &recordFeed{keep: feedKeep, subs: map[chan any]struct{}{}}
}

// add takes a record (on the engine's loop; never blocks).
func (f *recordFeed) add(r engine.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.recent) == f.keep {
		f.recent = slices.Delete(f.recent, 0, 1)
	}
	f.recent = append(f.recent, r)
	for ch := range f.subs {
		select {
		case ch <- r:
		default:
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// close ends every subscription, now and to come (the status API is shutting
// down, and an open stream would hold its shutdown up).
func (f *recordFeed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
}

// Subscribe implements dashboard.Source.
func (f *recordFeed) Subscribe() (recent []any, updates <-chan any, cancel func()) {
	ch := make(chan any, feedBuffer)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.recent {
		recent = append(recent, r)
	}
	if f.closed {
		close(ch)
		return recent, ch, func() {}
	}
	f.subs[ch] = struct{}{}
	return recent, ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[ch]; ok {
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// dashboardSource is the instance as the dashboard sees it.
type dashboardSource struct{ inst *Instance }

func (s dashboardSource) Status(ctx context.Context) (any, error) { return s.inst.status(ctx) }

func (s dashboardSource) Subscribe() ([]any, <-chan any, func()) { return s.inst.feed.Subscribe() }
