package instance

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"understudy/runtime/store"
)

// An instance does its job only while it is on the bus. What keeps it off
// — a broker it is still looking for, one it cannot connect to, a
// connection lost a while ago — is said in words on GET /healthz (503),
// in systemd's status line, and in the log from the first second and every
// 30 seconds after.
const (
	// disconnectGrace is how long a lost bus connection may take to come
	// back before the instance counts as not working: a broker restart or a
	// reconnect takes a few seconds.
	disconnectGrace = 5 * time.Second
	// waitLogEvery is how often a wait is logged again.
	waitLogEvery = 30 * time.Second
)

type busPhase int

const (
	phaseStarting     busPhase = iota // the engine starts; no broker is looked for yet
	phaseFinding                      // looking for the site's broker by mDNS
	phaseConnecting                   // the broker's URL is known; not connected yet
	phaseConnected                    // on the bus
	phaseDisconnected                 // was on the bus; the connection was lost
)

// busHealth is what the instance knows of its way to the bus. Safe for
// concurrent use.
type busHealth struct {
	mu       sync.Mutex
	phase    busPhase
	what     string    // finding: what it looks for, in words
	expected bool      // finding: a wait that is part of starting (the broker's host looks for another broker first)
	url      string    // connecting, connected, disconnected: the broker
	since    time.Time // when the phase began
	lastErr  string    // why the last attempt to connect failed, or why the connection was lost
}

func (h *busHealth) set(phase busPhase, now time.Time, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.phase != phase {
		h.since, h.lastErr = now, ""
	}
	h.phase = phase
	if f != nil {
		f()
	}
}

// finding: the instance looks for the broker (what says how, in words).
func (h *busHealth) finding(what string, expected bool, now time.Time) {
	h.set(phaseFinding, now, func() { h.what, h.expected = what, expected })
}

// connecting: the broker's URL is known; the first connection is on its way.
func (h *busHealth) connecting(url string, now time.Time) {
	h.set(phaseConnecting, now, func() { h.url = url })
}

func (h *busHealth) connected(now time.Time) { h.set(phaseConnected, now, nil) }

func (h *busHealth) disconnected(err error, now time.Time) {
	h.set(phaseDisconnected, now, func() {
		if err != nil {
			h.lastErr = err.Error()
		}
	})
}

// connectFailed notes why an attempt to connect failed.
func (h *busHealth) connectFailed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastErr = err.Error()
}

// problem says, in words, what keeps the instance from doing its job now
// ("" when nothing does); key names the kind of problem (it changes when
// the problem does, not as its duration grows), and expected says the wait
// is part of starting.
func (h *busHealth) problem(now time.Time) (msg, key string, expected bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := now.Sub(h.since)
	switch h.phase {
	case phaseStarting:
		return "starting: the policy and the status API come up first", "starting", true
	case phaseFinding:
		msg = "waiting for the site's broker: " + h.what
		if d >= time.Second {
			msg += "; not found for " + roundDuration(d)
		} else {
			msg += "; not found yet"
		}
		return msg, "finding " + h.what, h.expected
	case phaseConnecting:
		msg = fmt.Sprintf("waiting for the broker: connecting to %s", h.url)
		if d >= time.Second {
			msg += " for " + roundDuration(d)
		}
		if h.lastErr != "" {
			msg += ": " + h.lastErr
		}
		return msg, "connecting " + h.url, d < time.Second
	case phaseDisconnected:
		if d < disconnectGrace {
			return "", "", false
		}
		msg = fmt.Sprintf("not connected to the broker since %s (%s)", h.since.UTC().Format(time.RFC3339), roundDuration(d))
		if h.lastErr != "" {
			msg += ": " + h.lastErr
		}
		return msg + "; reconnecting to " + h.url, "disconnected " + h.url, false
	}
	return "", "", false
}

// waited is how long the present phase has lasted at now.
func (h *busHealth) waited(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return now.Sub(h.since)
}

func roundDuration(d time.Duration) string { return d.Round(time.Second).String() }

// retryJournal writes the journal's records that wait for a full disk,
// and says when they are written (and how many were dropped since the
// start because too many waited).
func (inst *Instance) retryJournal() {
	if inst.journal == nil {
		return
	}
	before, lost := inst.journal.Waiting()
	if before == 0 {
		return
	}
	if err := inst.journal.Retry(); err != nil {
		return // still full: said when it began
	}
	if n, _ := inst.journal.Waiting(); n == 0 {
		inst.log.Warn("event journal written again: the records that waited are in it", "records", before, "dropped_while_waiting", lost)
	}
}

// storeStuckAfter is how long a write to the state store may take before
// the instance says it is stuck on it: a commit syncs to the disk, which
// takes milliseconds, a second on a busy disk.
const storeStuckAfter = 2 * time.Second

// healthProblem is what keeps the instance from doing its job, or from
// keeping what it must across a restart ("" when nothing does), for
// /healthz and /status: a write to the state store that does not finish,
// writes that fail, then the bus.
func (inst *Instance) healthProblem() string {
	now := time.Now()
	if msg := storeProblem(inst.store, now); msg != "" {
		return msg
	}
	if msg := stateProblem(inst.store.Failing(), now); msg != "" {
		return msg
	}
	msg, _, _ := inst.busHealth.problem(now)
	if msg == "" && inst.election != nil {
		msg = inst.election.problem(now)
	}
	return msg
}

// stateProblem says, in words, that the state file does not take writes
// ("" when it does).
func stateProblem(f *store.WriteFailure, now time.Time) string {
	if f == nil {
		return ""
	}
	return fmt.Sprintf("state not written: writes to the state file fail since %s (%s): %v; free space in the state folder — the instance goes on and writes what waits as soon as it can, but a restart before then loses it",
		f.Since.UTC().Format(time.RFC3339), roundDuration(now.Sub(f.Since)), f.Err)
}

// writing is what storeProblem asks of the state store.
type writing interface {
	Path() string
	Writing() (time.Time, bool)
}

// storeProblem says, in words, that a write to the state store has not
// finished for storeStuckAfter or more ("" otherwise): the instance
// persists what it decides before it acts, so whoever waits for that write
// (the coordinator's loop, the agent's next command) waits with it.
func storeProblem(st writing, now time.Time) string {
	since, ok := st.Writing()
	if !ok || now.Sub(since) < storeStuckAfter {
		return ""
	}
	return fmt.Sprintf("a write to the state store %s has not finished for %s: its disk does not complete writes (fsync stalled? the state folder's disk failing or overloaded); what waits for it — the event loop on the coordinator, commands on a member — waits too",
		st.Path(), roundDuration(now.Sub(since)))
}

// watchHealth says what keeps the instance from its job: in the log when
// it has waited a second (a write to the state store that does not finish,
// the bus; a state file that does not take writes: at once, at ERROR),
// again every 30 seconds and when the reason changes; in
// systemd's status line (STATUS=) as well. When the wait ends, the status
// line says the bus is connected. It returns when ctx ends.
func (inst *Instance) watchHealth(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastKey string
	var lastLog time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		inst.retryJournal()
		level := slog.LevelWarn
		msg, key, expected := inst.busHealth.problem(now)
		waited := inst.busHealth.waited(now)
		if sp := storeProblem(inst.store, now); sp != "" {
			msg, key, expected, waited = sp, "state store", false, time.Second
		}
		if state := stateProblem(inst.store.Failing(), now); state != "" {
			msg, key, expected, waited, level = state, "state", false, time.Second, slog.LevelError
		}
		if msg == "" && inst.election != nil {
			if ep := inst.election.problem(now); ep != "" {
				msg, key, expected, waited = ep, "election", false, time.Second
			}
		}
		switch {
		case msg == "" && lastKey != "":
			if lastKey == "state" {
				inst.log.Warn("the state file takes writes again")
			}
			lastKey = ""
			inst.mu.Lock()
			url := inst.busURL
			inst.mu.Unlock()
			inst.notify("STATUS=running; bus connected to " + url)
		case msg == "":
		case waited < time.Second:
			// Not a second yet: nothing to say (the first tick may come a
			// moment before the wait is a second old).
		case key != lastKey || now.Sub(lastLog) >= waitLogEvery:
			if expected {
				level = slog.LevelInfo
			}
			inst.log.Log(ctx, level, msg)
			inst.notify("STATUS=" + msg)
			lastKey, lastLog = key, now
		}
	}
}
