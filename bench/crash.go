//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"time"

	"understudy/bench/proc"
	"understudy/bench/report"
	"understudy/events"
	"understudy/fixtures/testhost"
)

// trial is one kill -9 of main, as durations from just before kill(2).
type trial struct {
	lost       time.Duration // member_lost received on the events topic
	lostAt     time.Duration // the coordinator's own time stamp of it
	firstRoute time.Duration // the first of main's outputs routed to the backup
	lastRoute  time.Duration // both of them
}

// trialResults are the crash trials and the Last Will reference.
type trialResults struct {
	trials []trial
	// unkeyed are trials of the same site without a site key, run between
	// the others (the authentication cost's reference).
	unkeyed  []trial
	wills    []time.Duration
	failures []string // trials that went wrong (a wait timed out)
	stopped  string   // why fewer trials ran than planned, if so
	planned  int
	wall     time.Duration // how long the trials and the reference took
	noRef    string        // why the Last Will reference is missing, if it is
}

// crashTrials runs the trials once per run; the crash and failover figures
// both read them.
func (e *env) crashTrials() (*trialResults, error) {
	if !e.trialsRan {
		e.trialsRan = true
		e.trials, e.trialsErr = runCrashTrials(e)
	}
	return e.trials, e.trialsErr
}

// maxFailures ends the trials early: the site is not behaving.
const maxFailures = 3

func runCrashTrials(e *env) (*trialResults, error) {
	s, err := newRealSite(e, "bench", "100ms")
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.start(); err != nil {
		return nil, fmt.Errorf("the site did not come up: %w\ncoordinator's log ends:\n%s", err, logTail(s.coord))
	}
	// The same site without a key, running beside it: every other trial
	// is followed by one of its own.
	plain, err := newRealSiteKeyed(e, "bench", "100ms", false)
	if err != nil {
		return nil, err
	}
	defer plain.close()
	if err := plain.start(); err != nil {
		return nil, fmt.Errorf("the site without a key did not come up: %w\ncoordinator's log ends:\n%s", err, logTail(plain.coord))
	}
	res := &trialResults{planned: e.pick(10, 200)}
	budget := e.pickD(40*time.Second, 4*time.Minute)
	start := time.Now()
	e.logf("crash trials: %d kills of main (at most %v)", res.planned, budget)
	for i := 0; i < res.planned; i++ {
		if e.ctx.Err() != nil {
			res.stopped = fmt.Sprintf("stopped after %d trials: %v", i, context.Cause(e.ctx))
			break
		}
		if time.Since(start) > budget {
			res.stopped = fmt.Sprintf("stopped after %d trials: the time bound of %v", i, budget)
			break
		}
		t, err := crashTrial(e.ctx, s)
		if err != nil {
			res.failures = append(res.failures, fmt.Sprintf("trial %d: %v", i+1, err))
			if len(res.failures) >= maxFailures {
				return res, fmt.Errorf("%d trials went wrong, the last: %w\ncoordinator's log ends:\n%s", len(res.failures), err, logTail(s.coord))
			}
			if err := recoverSite(e.ctx, s); err != nil {
				return res, fmt.Errorf("after a failed trial (%v) the site did not recover: %w", res.failures[len(res.failures)-1], err)
			}
			continue
		}
		res.trials = append(res.trials, t)
		if i%2 == 1 {
			if t, err := crashTrial(e.ctx, plain); err == nil {
				res.unkeyed = append(res.unkeyed, t)
			} else {
				res.failures = append(res.failures, fmt.Sprintf("trial %d without a key: %v", i+1, err))
				if len(res.failures) >= maxFailures {
					return res, fmt.Errorf("%d trials went wrong, the last: %w\ncoordinator's log ends:\n%s", len(res.failures), err, logTail(plain.coord))
				}
				if err := recoverSite(e.ctx, plain); err != nil {
					return res, fmt.Errorf("after a failed trial (%v) the site without a key did not recover: %w", res.failures[len(res.failures)-1], err)
				}
			}
		}
	}
	if err := willTrials(e, s, res); err != nil {
		res.noRef = err.Error()
	}
	res.wall = time.Since(start)
	return res, nil
}

// crashTrial kills main, waits for the loss and the routes, restarts main
// and waits until it has failed back.
func crashTrial(parent context.Context, s *realSite) (trial, error) {
	var t trial
	s.drain()
	// A random phase against the heartbeats (100 ms).
	time.Sleep(time.Duration(rand.Int64N(int64(100 * time.Millisecond))))
	ctx, cancel := context.WithTimeout(parent, 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := s.member.KillNow(); err != nil {
		return t, err
	}
	lost, err := s.waitRecord(ctx, events.MemberLost, "main")
	if err != nil {
		return t, err
	}
	first, last, err := s.waitRoutes(ctx, map[int]int{1: 3, 2: 4})
	if err != nil {
		return t, err
	}
	t = trial{lost: lost.at.Sub(t0), lostAt: lost.v.At.Sub(t0), firstRoute: first.Sub(t0), lastRoute: last.Sub(t0)}
	s.member.Wait()

	// Back to normal: main restarted, failed back, alive.
	if err := s.startMember(); err != nil {
		return t, err
	}
	bctx, bcancel := context.WithTimeout(parent, 20*time.Second)
	defer bcancel()
	if _, _, err := s.waitRoutes(bctx, map[int]int{1: 1, 2: 2}); err != nil {
		return t, fmt.Errorf("failback: %w", err)
	}
	if _, err := s.waitRecord(bctx, events.FailbackDone, "main"); err != nil {
		return t, err
	}
	return t, s.steady(bctx)
}

// recoverSite restarts main after a failed trial and waits for normal.
func recoverSite(parent context.Context, s *realSite) error {
	if s.member != nil {
		s.member.Kill()
	}
	if err := s.startMember(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	return s.steady(ctx)
}

// willTrials is the reference: a plain MQTT client with a Last Will
// (mosquitto_sub) on the same broker, killed the same way.
func willTrials(e *env, s *realSite, res *trialResults) error {
	sub, err := testhost.LookPath("mosquitto_sub")
	if err != nil {
		return fmt.Errorf("mosquitto_sub (Debian package mosquitto-clients; make bench installs it): %w", err)
	}
	// mosquitto_sub's -d lines say when it has subscribed; stdbuf makes it
	// print them at once into a pipe.
	stdbuf, err := testhost.LookPath("stdbuf")
	if err != nil {
		return fmt.Errorf("stdbuf (Debian package coreutils): %w", err)
	}
	n := e.pick(10, 200)
	budget := e.pickD(15*time.Second, time.Minute)
	start := time.Now()
	for i := 0; i < n && time.Since(start) < budget; i++ {
		d, err := willTrial(e.ctx, s, stdbuf, sub, i)
		if err != nil {
			return err
		}
		res.wills = append(res.wills, d)
	}
	return nil
}

func willTrial(parent context.Context, s *realSite, stdbuf, sub string, i int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(parent, 5*time.Second)
	defer cancel()
	id := "bench-will-" + strconv.Itoa(i)
	topic := "understudy-bench/will/" + strconv.Itoa(i)
	p, err := proc.Start(exec.Command(stdbuf, "-oL", sub, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-u", benchUser, "-P", benchPassword, "-i", id, "-t", "understudy-bench/idle", "-d",
		"--will-topic", topic, "--will-payload", "gone", "--will-qos", "1"))
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	if err := p.WaitOutput(ctx, "received SUBACK"); err != nil {
		return 0, err
	}
	s.drain()
	time.Sleep(time.Duration(rand.Int64N(int64(20 * time.Millisecond))))
	t0 := time.Now()
	if err := p.KillNow(); err != nil {
		return 0, err
	}
	at, err := s.waitWill(ctx, topic)
	return at.Sub(t0), err
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func measureCrash(e *env, r *report.Result) {
	res, err := e.crashTrials()
	if err != nil {
		fail(r, err)
	}
	if res == nil || len(res.trials) == 0 {
		if err == nil {
			fail(r, errors.New("no trial ran"))
		}
		return
	}
	var lost, lostAt []float64
	for _, t := range res.trials {
		lost = append(lost, ms(t.lost))
		lostAt = append(lostAt, ms(t.lostAt))
	}
	r.Stats = report.Summarize(lost)
	if len(res.wills) > 0 {
		var wills []float64
		for _, d := range res.wills {
			wills = append(wills, ms(d))
		}
		ws := report.Summarize(wills)
		r.Reference = &report.Reference{What: "plain MQTT Last Will", Unit: "ms", Stats: ws, Value: ws.P99, Stat: "p99"}
	}
	if res.noRef != "" {
		r.Notes = append(r.Notes, "No Last Will reference: "+res.noRef)
	}
	if len(res.unkeyed) > 0 {
		var plain []float64
		for _, t := range res.unkeyed {
			plain = append(plain, ms(t.lost))
		}
		ps := report.Summarize(plain)
		// The medians: a p99 of 100 trials is their second largest.
		r.Checks = append(r.Checks, report.Check{
			What: fmt.Sprintf("authentication cost (the same site without a site key, %d trials between these)", len(plain)),
			Found: fmt.Sprintf("p50 %s against %s (%+.1f %%); p99 %s against %s", report.Format(r.Stats.P50, "ms"), report.Format(ps.P50, "ms"), 100*(r.Stats.P50/ps.P50-1),
				report.Format(r.Stats.P99, "ms"), report.Format(ps.P99, "ms")),
			Want: "p50 at most +5 %", Met: r.Stats.P50 <= 1.05*ps.P50})
	}
	at := report.Summarize(lostAt)
	r.Notes = append(r.Notes, fmt.Sprintf("Time of receipt by a subscriber (one broker hop after the coordinator); the coordinator's own time stamp of the loss (the record's `at`) is p50 %s, p99 %s after the kill.",
		report.Format(at.P50, "ms"), report.Format(at.P99, "ms")))
	r.Notes = append(r.Notes, res.notes()...)
}

func measureFailover(e *env, r *report.Result) {
	res, err := e.crashTrials()
	if err != nil {
		fail(r, err)
	}
	if res == nil || len(res.trials) == 0 {
		if err == nil {
			fail(r, errors.New("no trial ran"))
		}
		return
	}
	var last, first, lost, cost []float64
	for _, t := range res.trials {
		last = append(last, ms(t.lastRoute))
		first = append(first, ms(t.firstRoute))
		lost = append(lost, ms(t.lost))
		cost = append(cost, ms(t.lastRoute-t.lostAt))
	}
	r.Stats = report.Summarize(last)
	ls := report.Summarize(lost)
	r.Reference = &report.Reference{What: "crash detection, same trials", Unit: "ms", Stats: ls, Value: ls.P99, Stat: "p99"}
	fs := report.Summarize(first)
	cs := report.Summarize(cost)
	r.Notes = append(r.Notes, fmt.Sprintf("Until both outputs show the backup; the first output: p50 %s, p99 %s. From the coordinator's own time stamp of the loss to both routes applied (policy, driver, TCP, the device): p50 %s, p99 %s.",
		report.Format(fs.P50, "ms"), report.Format(fs.P99, "ms"), report.Format(cs.P50, "ms"), report.Format(cs.P99, "ms")))
	r.Notes = append(r.Notes, res.notes()...)
}

// notes says how many trials ran and what went wrong.
func (res *trialResults) notes() []string {
	out := []string{fmt.Sprintf("%d of %d planned trials; with the reference's they took %s (one run for crash detection and end-to-end failover).",
		len(res.trials), res.planned, report.Format(res.wall.Seconds(), "s"))}
	if res.stopped != "" {
		out = append(out, res.stopped+".")
	}
	if len(res.failures) > 0 {
		out = append(out, fmt.Sprintf("%d trials went wrong and are not counted: %v.", len(res.failures), res.failures))
	}
	return out
}
