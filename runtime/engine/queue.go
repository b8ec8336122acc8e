package engine

import "sync"

// The loop's inputs, in the order they arrive, of three kinds:
//
//   - work that is never dropped: the loop's own (timers, drivers' results,
//     API calls) and what decides members' states — presence messages (a
//     Last Will, a graceful close) and the bus connection;
//   - heartbeats, coalesced: while one of a member's heartbeats waits, a
//     newer one replaces it in its place (the table needs only the newest),
//     so they take at most one slot per member;
//   - bounded inputs, which may be dropped when the loop falls behind: what
//     other instances report (acks, health, configuration, copy progress,
//     descriptions). At most maxBounded of them wait; one more is dropped and
//     counted by kind (Engine.InputsDropped), and its sender sends it again
//     (retained topics are sent again on reconnect; commands are asked
//     again until answered).
//
// Producers (paho callbacks, driver goroutines, timers) never block.

// maxBounded is how many bounded inputs may wait for the loop.
const maxBounded = 4096

// maxMembersQueued bounds the heartbeats waiting (one per member): more
// members than that is a flood of made-up ids.
const maxMembersQueued = 8192

type item struct {
	f     func()
	beat  string // a heartbeat of this member; f reads the newest one
	bound bool   // a bounded input
	kind  string // what it is, for the drop counts
}

// queue is the loop's input queue. Its methods are safe from any goroutine.
type queue struct {
	mu      sync.Mutex
	items   []item
	spare   []item
	beats   map[string]int // member → index in items of its waiting heartbeat
	bounded int            // bounded inputs waiting
	dropped map[string]uint64
	merged  uint64 // heartbeats replaced by a newer one before the loop took them
	ready   chan struct{}
}

func newQueue() *queue {
	return &queue{ready: make(chan struct{}, 1), beats: map[string]int{}, dropped: map[string]uint64{}}
}

func (q *queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// push queues work that is never dropped.
func (q *queue) push(f func()) {
	q.mu.Lock()
	q.items = append(q.items, item{f: f})
	q.mu.Unlock()
	q.wake()
}

// pushBounded queues a bounded input of kind; it reports false when it was
// dropped because maxBounded wait already.
func (q *queue) pushBounded(kind string, f func()) bool {
	q.mu.Lock()
	if q.bounded >= maxBounded {
		q.dropped[kind]++
		q.mu.Unlock()
		return false
	}
	q.bounded++
	q.items = append(q.items, item{f: f, bound: true, kind: kind})
	q.mu.Unlock()
	q.wake()
	return true
}

// pushBeat queues member's heartbeat: f takes it in. A heartbeat of the
// same member still waiting is replaced in its place. It reports false when
// it was dropped (too many members waiting).
func (q *queue) pushBeat(member string, f func()) bool {
	q.mu.Lock()
	if i, ok := q.beats[member]; ok {
		q.items[i].f = f
		q.merged++
		q.mu.Unlock()
		return true
	}
	if len(q.beats) >= maxMembersQueued {
		q.dropped["heartbeat"]++
		q.mu.Unlock()
		return false
	}
	q.beats[member] = len(q.items)
	q.items = append(q.items, item{f: f, beat: member})
	q.mu.Unlock()
	q.wake()
	return true
}

// take returns the work queued so far, in order. The slice is valid until
// the next take.
func (q *queue) take() []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	clear(q.spare)
	q.items, q.spare = q.spare[:0], items
	clear(q.beats)
	q.bounded = 0
	return items
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// counts returns the inputs dropped so far, by kind, and the heartbeats
// merged.
func (q *queue) counts() (map[string]uint64, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]uint64, len(q.dropped))
	for k, n := range q.dropped {
		out[k] = n
	}
	return out, q.merged
}
