// Package faulthook is a test hook: it lets the fault suite (package
// faults) inject two faults into a running instance that cannot be made
// from outside the process — a step of the host's clock, and the state
// folder's fsync stalled.
//
// Why a hook: a step of the real clock would step every test host at once
// (they share the machine's kernel), and the faketime libraries that fake
// the clock of one process work by intercepting libc, which Go does not
// call for the time. A stalled disk needs a device mapper table per host.
// So the instance steps its own clock and stalls its own commits, when it
// is told to.
//
// An instance enables the hook only when the environment variable EnvVar
// names a path: it listens there on a Unix socket (mode 0600) for line
// commands and answers each with "ok" or "error: …", logging it at warn
// level:
//
//	clock-step <duration>    the clock's wall reading moves by duration (+ or -)
//	store-stall <duration>   every state store commit waits until duration from now (0 ends a stall)
//
// Without the variable (every normal run) nothing listens, FromEnv returns
// nil, and a nil *Hooks gives the plain clock, no commit hook and the
// logger's own handler: the hooks cost nothing.
//
// What a clock step changes, and what it cannot. On a host whose clock is
// stepped, time.Now's wall reading jumps and its monotonic reading does
// not: every duration the process measures in itself (timers, timeouts,
// heartbeat silences, the loop's stall detection) is unaffected, and what
// the step disturbs is wall time that crosses a boundary — times persisted
// in the state store and read back (named timers' deadlines, coverage,
// command records), times sent to another host, the journal's and the
// log's timestamps. The hook's clock (Clock) gives exactly that: its Now
// has the stepped wall reading and the unstepped monotonic one. It reaches
// only what reads the time through it: the instance's engine (the member
// table, the coordinator, its journal), its agent, its log's timestamps and
// its boot counter. Time read elsewhere with time.Now (drivers' status
// times, the material copy's settle, which compares with file times) and
// the kernel's own (file modification times, which a real step would move
// too) stay on the machine's clock. The step is kept beside the socket
// (path + ".clock"), as a host's clock outlives its processes: an instance
// started again on the same host reads it back.
package faulthook

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"understudy/runtime/clock"
)

// EnvVar names the Unix socket an instance listens on for fault commands.
// Unset, the hooks are off.
const EnvVar = "UNDERSTUDY_FAULT_HOOKS"

// The commands.
const (
	CmdClockStep  = "clock-step"
	CmdStoreStall = "store-stall"
)

// Reply is the answer to a command that was carried out.
const Reply = "ok"

// Hooks is an enabled fault hook. A nil *Hooks is the hooks off: every
// method works on it and does nothing.
type Hooks struct {
	path string
	log  *slog.Logger
	ln   net.Listener

	offset atomic.Int64 // the clock's step in force (nanoseconds)

	mu         sync.Mutex
	stallUntil time.Time     // commits wait until then (monotonic)
	changed    chan struct{} // closed and replaced when stallUntil changes
	closed     bool
	conns      map[net.Conn]bool // the connections being answered (closed by Close)
	wg         sync.WaitGroup
}

// FromEnv enables the hooks when EnvVar is set: it listens on the socket
// it names (made again if a stale one is there) and serves commands until
// Close. It returns nil, nil when EnvVar is unset.
func FromEnv(log *slog.Logger) (*Hooks, error) {
	path := os.Getenv(EnvVar)
	if path == "" {
		return nil, nil
	}
	return Listen(path, log)
}

// Listen enables the hooks on the Unix socket at path (see FromEnv).
func Listen(path string, log *slog.Logger) (*Hooks, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Hooks{path: path, changed: make(chan struct{}), conns: map[net.Conn]bool{}}
	if err := h.loadStep(); err != nil {
		return nil, err
	}
	// Its own lines show the stepped clock too (the fault suite finds the
	// steps in the log by them).
	h.log = slog.New(h.LogHandler(log.Handler()))
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("fault hooks (%s): stale socket: %w", EnvVar, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("fault hooks (%s): %w", EnvVar, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("fault hooks (%s): %w", EnvVar, err)
	}
	h.ln = ln
	h.log.Warn("fault hooks enabled: this instance takes clock steps and state store stalls from the fault suite (a test hook; never on a site)",
		"socket", path, "clock_step", time.Duration(h.offset.Load()))
	h.wg.Go(h.serve)
	return h, nil
}

// Close stops listening, ends the connections and a stall in force.
// Nil-safe.
func (h *Hooks) Close() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	h.closed = true
	h.stallUntil = time.Time{}
	close(h.changed)
	h.changed = make(chan struct{})
	for c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	err := h.ln.Close()
	h.wg.Wait()
	return err
}

// Step is the clock step in force (0 with the hooks off).
func (h *Hooks) Step() time.Duration {
	if h == nil {
		return 0
	}
	return time.Duration(h.offset.Load())
}

// Clock returns base with its wall reading moved by the step in force and
// its monotonic reading kept (see the package comment); base itself with
// the hooks off.
func (h *Hooks) Clock(base clock.Clock) clock.Clock {
	if h == nil {
		return base
	}
	return steppedClock{h: h, base: base}
}

type steppedClock struct {
	h    *Hooks
	base clock.Clock
}

func (c steppedClock) Now() time.Time { return StepWall(c.base.Now(), c.h.Step()) }

// AfterFunc is base's: timers run on the monotonic clock, which a step
// does not move.
func (c steppedClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return c.base.AfterFunc(d, f)
}

// StoreCommit returns the function the state store calls before each
// commit (store.Options.BeforeCommit): it waits while a stall is in force
// and never fails the write. Nil with the hooks off.
func (h *Hooks) StoreCommit() func() error {
	if h == nil {
		return nil
	}
	return func() error {
		h.waitStall()
		return nil
	}
}

// waitStall blocks until no stall is in force.
func (h *Hooks) waitStall() {
	for {
		h.mu.Lock()
		left, changed := time.Until(h.stallUntil), h.changed
		h.mu.Unlock()
		if left <= 0 {
			return
		}
		t := time.NewTimer(left)
		select {
		case <-t.C:
		case <-changed:
		}
		t.Stop()
	}
}

// Stall makes every commit wait until d from now (0 or less: no stall).
func (h *Hooks) Stall(d time.Duration) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.stallUntil = time.Time{}
	if d > 0 {
		h.stallUntil = time.Now().Add(d)
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

// StepClock moves the clock's wall reading by d (either way) and keeps the
// step beside the socket.
func (h *Hooks) StepClock(d time.Duration) error {
	if h == nil {
		return nil
	}
	off := time.Duration(h.offset.Add(int64(d)))
	if err := os.WriteFile(h.path+".clock", []byte(off.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("keep the clock step: %w", err)
	}
	return nil
}

// loadStep reads the step kept by an earlier instance on this host.
func (h *Hooks) loadStep() error {
	data, err := os.ReadFile(h.path + ".clock")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fault hooks: the clock step kept: %w", err)
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("fault hooks: the clock step kept in %s: %w", h.path+".clock", err)
	}
	h.offset.Store(int64(d))
	return nil
}

// LogHandler returns next with each record's time stepped as the clock
// is (next itself with the hooks off): a stepped host's log shows its
// stepped clock.
func (h *Hooks) LogHandler(next slog.Handler) slog.Handler {
	if h == nil {
		return next
	}
	return stepHandler{h: h, next: next}
}

type stepHandler struct {
	h    *Hooks
	next slog.Handler
}

func (s stepHandler) Enabled(ctx context.Context, l slog.Level) bool { return s.next.Enabled(ctx, l) }

func (s stepHandler) Handle(ctx context.Context, r slog.Record) error {
	if d := s.h.Step(); d != 0 && !r.Time.IsZero() {
		r.Time = StepWall(r.Time, d)
	}
	return s.next.Handle(ctx, r)
}

func (s stepHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return stepHandler{h: s.h, next: s.next.WithAttrs(as)}
}

func (s stepHandler) WithGroup(name string) slog.Handler {
	return stepHandler{h: s.h, next: s.next.WithGroup(name)}
}

// serve answers connections until the listener closes.
func (h *Hooks) serve() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			c.Close()
			return
		}
		h.conns[c] = true
		h.mu.Unlock()
		h.wg.Go(func() { h.conn(c) })
	}
}

// conn answers each command line of one connection.
func (h *Hooks) conn(c net.Conn) {
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
		c.Close()
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		reply := Reply
		if err := h.Do(line); err != nil {
			reply = "error: " + err.Error()
		}
		if _, err := fmt.Fprintln(c, reply); err != nil {
			return
		}
	}
}

// Do carries out one command line (see the package comment).
func (h *Hooks) Do(line string) error {
	f := strings.Fields(line)
	if len(f) != 2 {
		h.log.Warn("fault hook: command refused", "command", line)
		return fmt.Errorf("want %q or %q, not %q", CmdClockStep+" DURATION", CmdStoreStall+" DURATION", line)
	}
	d, err := time.ParseDuration(f[1])
	if err != nil {
		h.log.Warn("fault hook: command refused", "command", line, "error", err)
		return fmt.Errorf("%s: %w", f[0], err)
	}
	switch f[0] {
	case CmdClockStep:
		if err := h.StepClock(d); err != nil {
			h.log.Warn("fault hook: clock step failed", "step", d, "error", err)
			return err
		}
		h.log.Warn("fault hook: clock stepped", "step", d, "clock_step", h.Step())
	case CmdStoreStall:
		if d < 0 {
			return fmt.Errorf("%s: a negative duration (%s)", f[0], d)
		}
		h.Stall(d)
		h.log.Warn("fault hook: state store commits stall", "for", d)
	default:
		h.log.Warn("fault hook: unknown command", "command", line)
		return fmt.Errorf("unknown command %q (want %s or %s)", f[0], CmdClockStep, CmdStoreStall)
	}
	return nil
}
