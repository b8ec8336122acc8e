package sim

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/consensus"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
)

// On a site that elects its coordinator, every running candidate has a loop
// of its own (its member table, as its instance keeps one), and the leader's
// has the coordinator. The election is modelled, not run: a leader is valid
// while it runs, is not stalled or cut off from the other candidates, and a
// majority of the candidates can reach each other; when it stops being, its
// coordinator stops at once (its lease) and, NewLeaderActs later
// (consensus.Timing for the site's heartbeat: the followers notice, elect,
// and the new leader waits out the old lease), the first candidate in the
// order of preference that can act becomes the coordinator of the next
// term, on the same replicated state: pending actions are resumed, named
// timers fire at their times, and the policy starts afresh (its first
// events coordinator and coordinator_elected). The witness never leads.

// election is the harness's model of an elected site's candidates.
type election struct {
	timing  consensus.Timing
	engines map[string]*engine.Engine // each running candidate's loop
	leader  string                    // "" while none
	term    uint64
	pending clock.Timer // the next leader's start, while one is elected
	// stalled candidates are frozen (their process stopped, their network
	// cut); partitioned ones reach the bus but not the other candidates.
	stalled, partitioned map[string]bool
}

func (h *Harness) elected() bool { return h.elect != nil }

// newCandidate starts candidate id's loop, without a coordinator.
func (h *Harness) newCandidate(ctx context.Context, id string) error {
	var e *engine.Engine
	e, err := engine.New(engine.Options{
		Site: h.Site, Self: id, Clock: h.Clock, Logger: h.opts.Logger, Online: true,
		Observe: func(r engine.Record) {
			if e == h.Engine || r.Type == events.CoordinatorLost {
				h.records = append(h.records, r)
			}
		},
	})
	if err != nil {
		return err
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	h.elect.engines[id] = e
	return nil
}

// reachable reports whether candidate id takes part in the election now.
func (el *election) reachable(id string) bool {
	_, running := el.engines[id]
	return running && !el.stalled[id] && !el.partitioned[id]
}

// quorum reports whether a majority of the candidates reach each other.
func (h *Harness) quorum() bool {
	n := 0
	for _, id := range h.Site.Candidates {
		if h.elect.reachable(id) {
			n++
		}
	}
	return 2*n > len(h.Site.Candidates)
}

// reconcile follows a change of the candidates: a leader that may not lead
// any more stops at once; with no leader and a quorum, the next one is
// elected (NewLeaderActs later).
func (h *Harness) reconcile(ctx context.Context, why string) {
	el := h.elect
	if el.leader != "" && (!el.reachable(el.leader) || !h.quorum()) {
		h.stepDown(why)
	}
	if el.leader != "" || el.pending != nil || !h.quorum() {
		return
	}
	el.pending = h.Clock.AfterFunc(el.timing.NewLeaderActs(), func() {
		el.pending = nil
		if el.leader != "" || !h.quorum() {
			return
		}
		for _, id := range h.Site.Candidates {
			if m, _ := h.Site.Member(id); el.reachable(id) && !m.Witness {
				if err := h.lead(ctx, id); err != nil {
					h.records = append(h.records, engine.Record{At: h.Clock.Now(), Type: events.PolicyError, Member: id, Fields: map[string]any{"error": err.Error()}})
				}
				return
			}
		}
	})
}

// lead makes candidate id the coordinator of the next term.
func (h *Harness) lead(ctx context.Context, id string) error {
	el := h.elect
	el.term++
	drvs, err := h.drivers()
	if err != nil {
		return err
	}
	c, err := coordinator.New(coordinator.Options{Drivers: drvs, Registry: h.opts.Registry, Store: h.opts.Store, Publisher: agents{h}, MayAct: h.opts.MayAct, Term: el.term})
	if err != nil {
		return err
	}
	e := el.engines[id]
	el.leader = id
	h.Engine, h.Coordinator = e, c
	if err := e.SetCoordinator(c); err != nil {
		el.leader, h.Coordinator = "", nil
		return fmt.Errorf("the coordinator does not start on %s: %w", id, err)
	}
	for _, m := range slices.Sorted(maps.Keys(h.broken)) {
		if h.broken[m] {
			c.Health(bus.Health{Member: m, Broken: true}) // the members' last reports, kept for the next coordinator
		}
	}
	e.RunPending()
	return nil
}

// stepDown stops the leader's coordinator (its lease lapsed or it died).
func (h *Harness) stepDown(why string) {
	el := h.elect
	id := el.leader
	el.leader = ""
	if e, ok := el.engines[id]; ok {
		e.SetCoordinator(nil)
		e.Record(engine.Record{Type: events.CoordinatorLost, Member: id, Fields: map[string]any{"term": el.term, "reason": why}})
	} else {
		h.records = append(h.records, engine.Record{At: h.Clock.Now(), Type: events.CoordinatorLost, Member: id, Fields: map[string]any{"term": el.term, "reason": why}})
	}
	h.Coordinator = nil
}

// Leader is the candidate that coordinates now ("" while none does, or on
// a site with one named coordinator: Site.Coordinator).
func (h *Harness) Leader() string {
	if !h.elected() {
		return h.Site.Coordinator
	}
	return h.elect.leader
}

// Partition cuts candidate id off from the other candidates for d (0: until
// Heal): it still reaches the bus, the members and the devices. A leader cut
// off stops acting; the others elect another if they are a majority.
func (h *Harness) Partition(ctx context.Context, id string, d time.Duration) error {
	if !h.elected() || !slices.Contains(h.Site.Candidates, id) {
		return fmt.Errorf("%s is no candidate of an elected coordinator: only candidates can be cut off from each other", id)
	}
	h.elect.partitioned[id] = true
	h.reconcile(ctx, "cut off from the other candidates")
	if d > 0 {
		h.Clock.AfterFunc(d, func() {
			delete(h.elect.partitioned, id)
			h.reconcile(ctx, "")
		})
	}
	h.runAll()
	return nil
}
