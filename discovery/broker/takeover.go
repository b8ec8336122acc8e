package broker

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverRepair keeps a client that reconnected under its client ID in
// the broker's tables. mochi-mqtt 2.7.9 decides whether an ended connection
// was taken over (by a new one under the same ID) before it removes that
// ID's subscriptions and its entry in the client table; a new connection
// that takes the session over between that decision and the removal, as a
// client reconnecting at once on a busy machine may, loses both: connected,
// and deaf. (understudy's own instances use a client ID per connection;
// show-control clients usually keep one.)
//
// After every connection that ends, the hook looks again a few times at the
// connection that holds its ID then, if any, and puts back what it lacks:
// its entry in the client table and its subscriptions.
type takeoverRepair struct {
	mqtt.HookBase
	server   *mqtt.Server
	repaired atomic.Int64
	done     chan struct{} // closed when the broker stops
	stopOnce sync.Once

	mu   sync.Mutex
	live map[string]*mqtt.Client // the latest session established under each ID
}

// repairAfter are the looks after a connection ended: the old one's
// clean-up runs right after it, later on a busy machine.
func repairAfter() [4]time.Duration {
	return [...]time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second, 5 * time.Second}
}

func newTakeoverRepair(server *mqtt.Server) *takeoverRepair {
	return &takeoverRepair{server: server, live: map[string]*mqtt.Client{}, done: make(chan struct{})}
}

// Stop ends the looks still to come (the broker stops).
func (h *takeoverRepair) Stop() error {
	h.stopOnce.Do(func() { close(h.done) })
	return nil
}

func (*takeoverRepair) ID() string { return "takeover-repair" }

func (*takeoverRepair) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}

func (h *takeoverRepair) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	h.live[cl.ID] = cl
	h.mu.Unlock()
}

func (h *takeoverRepair) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	if h.live[cl.ID] == cl {
		delete(h.live, cl.ID)
	}
	h.mu.Unlock()
	id := cl.ID
	go func() {
		for _, d := range repairAfter() {
			select {
			case <-h.done:
				return
			case <-time.After(d):
			}
			h.repair(id)
		}
	}()
}

// repair puts the live connection under id back into the client table and
// the topic index, where the clean-up of an older one took it out.
func (h *takeoverRepair) repair(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cl := h.live[id]
	if cl == nil || cl.Closed() {
		return
	}
	fixed := false
	if got, ok := h.server.Clients.Get(id); !ok || got != cl {
		h.server.Clients.Add(cl)
		fixed = true
	}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		if h.server.Topics.Subscribe(id, sub) {
			fixed = true
		}
	}
	if fixed {
		n := h.repaired.Add(1)
		h.Log.Warn("a client that reconnected under its client ID had been dropped from the broker's tables by the clean-up of its old connection: put back", "client", id, "remote", cl.Net.Remote, "repaired_total", n)
	}
}
