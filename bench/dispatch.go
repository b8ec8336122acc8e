//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"understudy/bench/report"
	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
)

// dispatchSite is the site of the dispatch figures: two members that stay
// unknown for an hour and heartbeat rarely, so nothing but the benchmark's
// events goes through the loop.
const dispatchSite = `site: bench
coordinator: backup
mdns: false
heartbeat: {interval: 10s, lost_after: 1h, startup_grace: 1h}
policy: {file: policy.lua, handler_timeout: 1s, watch: false}
members:
  - id: main
    roles: [manager]
  - id: backup
    roles: [manager]
    standby: true
`

// ratePolicy is BenchmarkLuaDispatch's handler.
const ratePolicy = `local us = require "understudy"
local n = 0
us.on("tick", function(ev) n = n + ev.value end)
`

// latencyPolicy's handler tells the logger that it ran.
const latencyPolicy = `local us = require "understudy"
us.on("tick", function(ev) us.log.info("ran") end)
`

// dispatchBatch is how many events one sample of the rate times.
const dispatchBatch = 10000

// loadDispatchSite writes the dispatch site with policy to a new folder and
// loads it.
func loadDispatchSite(e *env, policy string) (*config.Site, error) {
	dir, err := e.dir("dispatch")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(policy), 0o644); err != nil {
		return nil, fmt.Errorf("write policy: %w", err)
	}
	path := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(path, []byte(dispatchSite), 0o644); err != nil {
		return nil, fmt.Errorf("write site: %w", err)
	}
	site, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load the dispatch site: %w", err)
	}
	return site, nil
}

// goEvent is the reference's event: what Emit carries.
type goEvent struct {
	name   string
	at     time.Time
	fields map[string]any
}

func measureDispatchRate(e *env, r *report.Result) {
	site, err := loadDispatchSite(e, ratePolicy)
	if err != nil {
		fail(r, err)
		return
	}
	h, err := sim.New(site, sim.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fail(r, fmt.Errorf("simulation harness: %w", err))
		return
	}
	if err := h.Start(e.ctx); err != nil {
		fail(r, fmt.Errorf("start the engine: %w", err))
		return
	}
	defer h.Stop()

	budget := e.pickD(500*time.Millisecond, 3*time.Second)
	fields := map[string]any{"value": 1}
	lua := func() {
		for range dispatchBatch {
			h.Coordinator.Emit("tick", fields)
			h.Engine.RunPending()
		}
	}
	sum := 0
	ch := make(chan goEvent, 1)
	handler := func(ev goEvent) { sum += ev.fields["value"].(int) }
	floor := func() {
		for range dispatchBatch {
			ch <- goEvent{name: "tick", at: time.Now(), fields: fields}
			handler(<-ch)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rates, err := rateSamples(e.ctx, lua, budget)
	runtime.ReadMemStats(&after)
	if err != nil {
		fail(r, err)
		return
	}
	events := float64(len(rates)+1) * dispatchBatch
	refRates, err := rateSamples(e.ctx, floor, budget)
	if err != nil {
		fail(r, err)
		return
	}
	r.Stats = report.Summarize(rates)
	ref := report.Summarize(refRates)
	r.Reference = &report.Reference{What: "Go channel into a Go func", Unit: "events/s", Stats: ref, Value: ref.P50, Stat: "p50"}
	r.Notes = append(r.Notes,
		fmt.Sprintf("Each sample is the rate of one batch of %s events, batches for %s after one warm-up batch.", report.Format(dispatchBatch, ""), report.Format(budget.Seconds(), "s")),
		fmt.Sprintf("Per event through Lua: %s, %.0f allocations, %.0f bytes.",
			report.Format(1000/r.Stats.P50, "ms"), float64(after.Mallocs-before.Mallocs)/events, float64(after.TotalAlloc-before.TotalAlloc)/events),
		fmt.Sprintf("The Go floor is about %s per event (checksum %d).", report.Format(1000/ref.P50, "ms"), sum%7))
}

// rateSamples runs batch once to warm up, then again until budget has
// passed (at most 1,000 times), and returns the rate of each run in events/s.
func rateSamples(ctx context.Context, batch func(), budget time.Duration) ([]float64, error) {
	batch()
	var rates []float64
	start := time.Now()
	for len(rates) < 1000 && time.Since(start) < budget {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dispatch rate: %w", err)
		}
		t0 := time.Now()
		batch()
		rates = append(rates, dispatchBatch/time.Since(t0).Seconds())
	}
	return rates, nil
}

// stampHandler is a slog handler that notes when the policy's handler logged
// "ran": the n-th such line is the n-th event's.
type stampHandler struct {
	base  time.Time
	ran   []time.Duration // since base, by event
	count atomic.Int64
	done  chan struct{}
}

func (s *stampHandler) Enabled(context.Context, slog.Level) bool { return true }

func (s *stampHandler) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message == "ran" {
		s.stamp()
	}
	return nil
}

// stamp notes that the next event's handler ran now.
func (s *stampHandler) stamp() {
	at := time.Since(s.base)
	i := s.count.Add(1) - 1
	if i < int64(len(s.ran)) {
		s.ran[i] = at
		if i == int64(len(s.ran))-1 {
			close(s.done)
		}
	}
}

func (s *stampHandler) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *stampHandler) WithGroup(string) slog.Handler      { return s }

func measureDispatchLatency(e *env, r *report.Result) {
	const period = time.Millisecond // 1,000 events/s
	length := e.pickD(2*time.Second, 10*time.Second)
	n := int(length / period)

	site, err := loadDispatchSite(e, latencyPolicy)
	if err != nil {
		fail(r, err)
		return
	}
	stamps := &stampHandler{base: time.Now(), ran: make([]time.Duration, n), done: make(chan struct{})}
	coord, err := coordinator.New(coordinator.Options{})
	if err != nil {
		fail(r, fmt.Errorf("coordinator: %w", err))
		return
	}
	eng, err := engine.New(engine.Options{Site: site, Self: site.Coordinator, Coordinator: coord, Online: true, Logger: slog.New(stamps)})
	if err != nil {
		fail(r, fmt.Errorf("engine: %w", err))
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	started := make(chan error, 1)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		if err := eng.Start(ctx); err != nil {
			started <- err
			return
		}
		started <- nil
		eng.Loop(ctx) // stops the engine when ctx ends
	}()
	defer func() { cancel(); <-loopDone }()
	if err := <-started; err != nil {
		fail(r, fmt.Errorf("start the engine: %w", err))
		return
	}
	fields := map[string]any{"value": 1}
	enq, err := pace(e.ctx, stamps.base, n, period, func() { coord.Emit("tick", fields) })
	if err != nil {
		fail(r, err)
		return
	}
	if err := waitDone(e.ctx, stamps.done, 5*time.Second, "the Lua handler"); err != nil {
		fail(r, err)
		return
	}
	lat := latencies(enq, stamps.ran)

	// Reference: the same pacing into a goroutine through a channel.
	ref := &stampHandler{base: time.Now(), ran: make([]time.Duration, n), done: make(chan struct{})}
	ch := make(chan goEvent, 1024)
	consumer := make(chan struct{})
	go func() {
		defer close(consumer)
		for ev := range ch {
			_ = ev.fields["value"].(int)
			ref.stamp()
		}
	}()
	refEnq, err := pace(e.ctx, ref.base, n, period, func() { ch <- goEvent{name: "tick", at: time.Now(), fields: fields} })
	close(ch)
	<-consumer
	if err != nil {
		fail(r, err)
		return
	}
	if err := waitDone(e.ctx, ref.done, 5*time.Second, "the Go func"); err != nil {
		fail(r, err)
		return
	}
	refLat := latencies(refEnq, ref.ran)

	r.Stats = report.Summarize(lat)
	rs := report.Summarize(refLat)
	r.Reference = &report.Reference{What: "Go channel into a goroutine", Unit: "ms", Stats: rs, Value: rs.P99, Stat: "p99"}
	over := 0
	for _, v := range lat {
		if v > 1 {
			over++
		}
	}
	rate := float64(n-1) / (enq[n-1] - enq[0]).Seconds()
	r.Notes = append(r.Notes, fmt.Sprintf("%d events paced at 1,000/s (%s; %s achieved); %d took over 1 ms.", n, report.Format(length.Seconds(), "s"), report.Format(rate, "events/s"), over))
	if e.quick {
		r.Notes = append(r.Notes, "Quick run: 2 s instead of 10 s.")
	}
}

// pace calls emit n times, the i-th at base + i×period (at once when
// behind), and returns when each call began, as durations since base.
func pace(ctx context.Context, base time.Time, n int, period time.Duration, emit func()) ([]time.Duration, error) {
	enq := make([]time.Duration, n)
	start := time.Since(base)
	for i := range n {
		if i%100 == 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("pacing events: %w", ctx.Err())
		}
		if d := start + time.Duration(i)*period - time.Since(base); d > 0 {
			time.Sleep(d)
		}
		enq[i] = time.Since(base)
		emit()
	}
	return enq, nil
}

// waitDone waits for done, at most limit.
func waitDone(ctx context.Context, done <-chan struct{}, limit time.Duration, what string) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s did not see every event within %v", what, limit)
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	}
}

// latencies are ran−enq in milliseconds.
func latencies(enq, ran []time.Duration) []float64 {
	out := make([]float64, len(enq))
	for i := range enq {
		out[i] = float64(ran[i]-enq[i]) / float64(time.Millisecond)
	}
	return out
}
