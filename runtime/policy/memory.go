package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime/metrics"
	"sync"
	"time"
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// DefaultMemoryLimit is the memory bound of a policy when its options set
// none: what its Lua state may hold between calls, and how much one call may
// grow the heap.
const DefaultMemoryLimit = 64 << 20

// Watchdog timing: a call that runs longer than watchTick is looked at every
// watchTick (its deadline and the heap); between calls, the memory the Lua
// state holds is looked at no more often than heldEvery.
const (
	watchTick = time.Millisecond
	heldEvery = 100 * time.Millisecond
)

// ErrMemoryLimit is the cause of a policy stopped over its memory bound.
var ErrMemoryLimit = errors.New("over its memory limit")

// errDeadline is the cause of a call stopped at its deadline.
var errDeadline = errors.New("deadline reached")

// MemoryError is a policy stopped over its memory bound. The runtime discards
// its Lua state and loads it again from the policy file.
type MemoryError struct {
	Where  string // file:line of the handler, or "between calls"
	Limit  int64
	Size   int64 // what was measured
	InCall bool  // the heap grew during one call (else: what the state holds)
}

func (e *MemoryError) Error() string {
	if e.InCall {
		return fmt.Sprintf("policy stopped: %s grew the heap by more than %s in one call (memory limit %s)", e.Where, mib(e.Size), mib(e.Limit))
	}
	return fmt.Sprintf("policy stopped: its Lua state holds more than %s (%s counted), over its memory limit", mib(e.Limit), mib(e.Size))
}

func (e *MemoryError) Unwrap() error { return ErrMemoryLimit }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// stopCause says why a call's context is done.
func stopCause(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return ctx.Err()
}

// heapBytes is the heap the process holds now, garbage not yet swept
// included (runtime/metrics; it does not stop the world).
func heapBytes(s []metrics.Sample) int64 {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

func heapSample() []metrics.Sample {
	return []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
}

// watchdog stops a call into Lua at its deadline, or when the heap grows by
// more than the limit during it, by cancelling the call's context: the VM
// looks at it before every instruction, the pattern matcher every few
// steps. One per policy: its timer and context are reused from call to call
// (a new context only after one was cancelled), so a call costs a Reset and
// a Stop, and the watchdog wakes only for calls longer than watchTick.
type watchdog struct {
	limit int64

	mu       sync.Mutex // guards what follows, shared with the timer's goroutine
	timer    *time.Timer
	ctx      context.Context
	cancel   context.CancelCauseFunc
	running  bool
	deadline time.Time
	due      time.Time // when the next tick should come
	sample   []metrics.Sample
	based    bool  // base was read during the current call
	base     int64 // the lowest heap seen during the call (a collection lowers it)
	grew     int64 // the growth that stopped the last call
}

func newWatchdog(limit int64) *watchdog {
	w := &watchdog{limit: limit, sample: heapSample()}
	w.mu.Lock()
	w.timer = time.AfterFunc(time.Hour, w.tick)
	w.timer.Stop()
	w.mu.Unlock()
	return w
}

// begin starts watching a call that may run until now+timeout and returns
// its context.
func (w *watchdog) begin(now time.Time, timeout time.Duration) context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == nil || w.ctx.Err() != nil {
		w.ctx, w.cancel = context.WithCancelCause(context.Background())
	}
	w.running, w.based, w.grew = true, false, 0
	w.deadline = now.Add(timeout)
	w.due = now.Add(min(watchTick, timeout))
	w.timer.Reset(min(watchTick, timeout))
	return w.ctx
}

// end stops watching the call; it returns the heap growth that stopped it,
// if the memory bound did.
func (w *watchdog) end() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
	w.timer.Stop()
	return w.grew
}

func (w *watchdog) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = false
	w.timer.Stop()
	if w.cancel != nil {
		w.cancel(nil)
	}
}

// stallGap is how much later than due a tick may come before the time in
// between is taken for the process not running (stopped, a VM paused, the
// machine starved): it does not count against the call, which did not run
// either.
const stallGap = 100 * time.Millisecond

func (w *watchdog) tick() { w.tickAt(time.Now()) }

func (w *watchdog) tickAt(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running {
		return
	}
	if late := now.Sub(w.due); late > stallGap {
		w.deadline = w.deadline.Add(late)
	}
	left := w.deadline.Sub(now)
	if left <= 0 {
		w.cancel(errDeadline)
		return
	}
	h := heapBytes(w.sample)
	if !w.based || h < w.base {
		w.based, w.base = true, h
	} else if grew := h - w.base; grew > w.limit {
		w.grew = grew
		w.cancel(ErrMemoryLimit)
		return
	}
	w.due = now.Add(min(watchTick, left))
	w.timer.Reset(min(watchTick, left))
}

// checkHeld looks, at most every heldEvery, at whether the heap grew by more
// than the limit since it was last found in order; if so it measures what
// the Lua state holds, and marks the policy broken when that is over the
// limit. Called between calls, on the owning goroutine.
func (p *Policy) checkHeld(now time.Time) {
	if now.Sub(p.heldAt) < heldEvery {
		return
	}
	p.heldAt = now
	if p.heapSample == nil {
		p.heapSample = heapSample()
	}
	h := heapBytes(p.heapSample)
	if p.heapFloor == 0 || h < p.heapFloor {
		p.heapFloor = h
		return
	}
	if h-p.heapFloor <= p.opts.MemoryLimit {
		return
	}
	size, over := p.heldSize(p.opts.MemoryLimit)
	if over {
		p.broken = &MemoryError{Where: "between calls", Limit: p.opts.MemoryLimit, Size: size}
		return
	}
	p.heapFloor = h // the growth is not the policy's
}

// heldSize estimates the memory the policy's Lua state holds, walking it
// from its roots (globals, registry, handlers, timers, required modules)
// with each table, function and long string counted once; it stops once
// the count passes limit.
func (p *Policy) heldSize(limit int64) (int64, bool) {
	w := sizeWalk{seen: map[unsafe.Pointer]bool{}, limit: limit}
	w.value(p.L.G.Global)
	w.value(p.L.G.Registry)
	w.value(p.module)
	for _, hs := range p.handlers {
		for _, h := range hs {
			w.value(h.fn)
		}
	}
	for _, t := range p.timers {
		if t.fn != nil {
			w.value(t.fn)
		}
	}
	for _, v := range p.loaded {
		w.value(v)
	}
	return w.size, w.size > limit
}

// Rough sizes of gopher-lua's objects, in bytes.
const (
	sizeValue    = 16 // an interface value
	sizeTable    = 120
	sizeEntry    = 48 // a key and a value, with the map's overhead
	sizeFunction = 80
	sizeShared   = 64 // strings longer than this are counted once
)

type sizeWalk struct {
	seen  map[unsafe.Pointer]bool
	size  int64
	limit int64
	stack []lua.LValue
}

func (w *sizeWalk) once(ptr unsafe.Pointer) bool {
	if w.seen[ptr] {
		return false
	}
	w.seen[ptr] = true
	return true
}

func (w *sizeWalk) value(root lua.LValue) {
	w.stack = append(w.stack[:0], root)
	for len(w.stack) > 0 && w.size <= w.limit {
		v := w.stack[len(w.stack)-1]
		w.stack = w.stack[:len(w.stack)-1]
		switch x := v.(type) {
		case lua.LString:
			if len(x) > sizeShared {
				if !w.once(unsafe.Pointer(unsafe.StringData(string(x)))) {
					continue
				}
			}
			w.size += sizeValue + int64(len(x))
		case *lua.LTable:
			if !w.once(unsafe.Pointer(x)) {
				continue
			}
			w.size += sizeTable
			if x.Metatable != nil {
				w.stack = append(w.stack, x.Metatable)
			}
			x.ForEach(func(k, e lua.LValue) {
				if w.size <= w.limit {
					w.size += sizeEntry
					w.stack = append(w.stack, k, e)
				}
			})
		case *lua.LFunction:
			if !w.once(unsafe.Pointer(x)) {
				continue
			}
			w.size += sizeFunction
			if x.Env != nil {
				w.stack = append(w.stack, x.Env)
			}
			for _, uv := range x.Upvalues {
				if uv != nil {
					w.size += sizeValue
					w.stack = append(w.stack, uv.Value())
				}
			}
			if x.Proto != nil && w.once(unsafe.Pointer(x.Proto)) {
				w.size += int64(len(x.Proto.Code))*4 + int64(len(x.Proto.Constants))*sizeValue
			}
		case *lua.LUserData:
			if !w.once(unsafe.Pointer(x)) {
				continue
			}
			w.size += sizeTable
			if x.Metatable != nil {
				w.stack = append(w.stack, x.Metatable)
			}
			if x.Env != nil {
				w.stack = append(w.stack, x.Env)
			}
		default:
			w.size += sizeValue
		}
	}
}
