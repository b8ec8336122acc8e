// Package switcher holds the parts every switcher driver shares: the state
// read from the device, the queue of route requests, reconnect with backoff
// and jitter, and the events a driver emits.
package switcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"understudy/drivers"
	"understudy/units"
)

// State is what a driver knows of the device, ports 0-based as indexes.
type State struct {
	Inputs, Outputs int
	Routing         []int // input (from 1, 0 unknown or none) on each output; nil before the first read
	InLabels        []string
	OutLabels       []string
}

// Request is one Route call, handed to the connection goroutine.
type Request struct {
	Ctx           context.Context
	Output, Input int // 1-based
	reply         chan error
}

// Reply answers the Route call. It is called exactly once.
func (r *Request) Reply(err error) { r.reply <- err }

// Session is one ready connection: Route hands it requests.
type Session struct {
	cmds chan *Request // unbuffered: taken only when no command is in flight
	done chan struct{} // closed when the connection ends
}

// NewSession returns a session for a new connection.
func NewSession() *Session {
	return &Session{cmds: make(chan *Request), done: make(chan struct{})}
}

// Cmds is where the connection goroutine takes Route requests from.
func (s *Session) Cmds() chan *Request { return s.cmds }

// Config is what a Core needs to know of its driver.
type Config struct {
	Name       string // the driver's kind, which starts its errors
	Address    string // host:port
	BackoffMin time.Duration
	BackoffMax time.Duration
	// What describes a route request in errors ("route output 3 ← input 7").
	What func(output, input int) string
	// ErrClosed and ErrOutOfRange are the driver's error variables.
	ErrClosed     error
	ErrOutOfRange error
}

// Core is the state and connection scaffolding a switcher driver embeds.
// Its methods are safe for use from any goroutine.
type Core struct {
	cfg Config

	mu      sync.Mutex
	status  drivers.Status
	st      State    // last state read from the device
	sess    *Session // the ready connection, nil when there is none
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewCore returns a Core, not yet started.
func NewCore(cfg Config) *Core {
	return &Core{cfg: cfg, status: drivers.Status{Address: cfg.Address}}
}

// Lock and Unlock guard the state and whatever the driver keeps beside it.
func (c *Core) Lock()   { c.mu.Lock() }
func (c *Core) Unlock() { c.mu.Unlock() }

// StateLocked returns the driver's state for reading or changing in place;
// the caller holds the lock.
func (c *Core) StateLocked() *State { return &c.st }

// Start begins running connect in the background, redialling with backoff,
// and returns at once. connect runs one connection from dial to failure and
// reports whether it became ready, and why it ended.
func (c *Core) Start(ctx context.Context, emit drivers.Emitter, connect func(context.Context, drivers.Emitter) (bool, error)) {
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed {
		return
	}
	c.started = true
	c.status.Since = time.Now()
	ctx, c.cancel = context.WithCancel(ctx)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(ctx, emit, connect)
	}()
}

// Close ends the connection and waits for the driver's goroutines.
func (c *Core) Close() error {
	c.mu.Lock()
	c.closed = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.wg.Wait()
	return nil
}

// Status reports the connection as the driver sees it now.
func (c *Core) Status() drivers.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Size returns the port counts (0, 0 before the first read).
func (c *Core) Size() (inputs, outputs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Inputs, c.st.Outputs
}

// Routing returns a copy of the last known routing; nil before the first read.
func (c *Core) Routing() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Routing == nil {
		return nil
	}
	return append([]int(nil), c.st.Routing...)
}

// InputLabels returns a copy of the input labels.
func (c *Core) InputLabels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.st.InLabels...)
}

// OutputLabels returns a copy of the output labels.
func (c *Core) OutputLabels() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.st.OutLabels...)
}

// CheckRange fails with ErrOutOfRange when a port is beyond the device's size.
func (c *Core) CheckRange(output, input, inputs, outputs int) error {
	if output < 1 || output > outputs || input < 1 || input > inputs {
		return fmt.Errorf("%w (the device has %d outputs and %d inputs)", c.cfg.ErrOutOfRange, outputs, inputs)
	}
	return nil
}

// Route hands a route request to the ready connection and waits for its
// answer. It fails at once when the driver is closed or not connected, a
// port is out of range, or ctx has ended. The connection goroutine always
// replies, within its timeouts, or at once when the connection or the
// driver ends.
func (c *Core) Route(ctx context.Context, output, input int) error {
	what := fmt.Sprintf("%s %s: %s", c.cfg.Name, c.cfg.Address, c.cfg.What(output, input))
	c.mu.Lock()
	s, closed, lastErr := c.sess, c.closed, c.status.LastError
	ins, outs := c.st.Inputs, c.st.Outputs
	c.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%s: %w", what, c.cfg.ErrClosed)
	case s == nil && lastErr != "":
		return fmt.Errorf("%s: %w (last error: %s)", what, drivers.ErrNotConnected, lastErr)
	case s == nil:
		return fmt.Errorf("%s: %w", what, drivers.ErrNotConnected)
	}
	if err := c.CheckRange(output, input, ins, outs); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req := &Request{Ctx: ctx, Output: output, Input: input, reply: make(chan error, 1)}
	select {
	case s.cmds <- req:
	case <-s.done:
		return fmt.Errorf("%s: %w (connection lost)", what, drivers.ErrNotConnected)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// What describes req in errors.
func (c *Core) What(req *Request) string { return c.cfg.What(req.Output, req.Input) }

// Errorf returns "<name> <address>: <what>: " followed by format.
func (c *Core) Errorf(req *Request, format string, a ...any) error {
	return fmt.Errorf("%s %s: %s: "+format, append([]any{c.cfg.Name, c.cfg.Address, c.What(req)}, a...)...)
}

// Accept answers req at once, and reports false, when its context has
// ended or a port is out of range; otherwise the caller carries it out.
func (c *Core) Accept(req *Request) bool {
	if err := req.Ctx.Err(); err != nil {
		req.Reply(c.Errorf(req, "%w", err))
		return false
	}
	ins, outs := c.Size()
	if err := c.CheckRange(req.Output, req.Input, ins, outs); err != nil {
		req.Reply(c.Errorf(req, "%w", err))
		return false
	}
	return true
}

// Lost answers a request in flight when its connection ended with err:
// ErrClosed when ctx has ended, else the connection was lost.
func (c *Core) Lost(ctx context.Context, req *Request, err error) {
	if ctx.Err() != nil {
		req.Reply(c.Errorf(req, "%w", c.cfg.ErrClosed))
	} else {
		req.Reply(c.Errorf(req, "connection lost: %w", err))
	}
}

// Commit makes the state read on a new connection the driver's state and
// the connection the one Route uses.
func (c *Core) Commit(pre State, s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st = pre
	c.sess = s
	c.status.Connected = true
	c.status.Since = time.Now()
	c.status.LastError = ""
}

// Detach ends a session: Route no longer hands it requests.
func (c *Core) Detach(s *Session) {
	c.mu.Lock()
	if c.sess == s {
		c.sess = nil
	}
	c.mu.Unlock()
	close(s.done)
}

// EmitConnected reports the connection ready. Call it after Commit: the
// routing read on connecting is then the driver's.
func (c *Core) EmitConnected(emit drivers.Emitter) {
	emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": c.cfg.Address}})
}

// EmitRouteChanged reports that output (from 1) now shows input.
func EmitRouteChanged(emit drivers.Emitter, output, input int) {
	emit(drivers.Event{Name: drivers.EventRouteChanged, Fields: map[string]any{"output": output, "input": input}})
}

// run dials, runs a connection, and redials with backoff until ctx ends.
func (c *Core) run(ctx context.Context, emit drivers.Emitter, connect func(context.Context, drivers.Emitter) (bool, error)) {
	const (
		unreported = iota
		reportedUp
		reportedDown
	)
	reported := unreported
	attempt := 0
	for {
		wasReady, err := connect(ctx, emit)
		if wasReady {
			reported = reportedUp
			attempt = 0
		}
		if ctx.Err() != nil {
			c.setDown(c.cfg.ErrClosed.Error())
			return
		}
		c.setDown(err.Error())
		if reported != reportedDown {
			reported = reportedDown
			emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{
				"address": c.cfg.Address,
				"error":   err.Error(),
			}})
		}
		t := time.NewTimer(c.Backoff(attempt))
		attempt++
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// setDown records that there is no connection and why.
func (c *Core) setDown(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Connected {
		c.status.Connected = false
		c.status.Since = time.Now()
	}
	c.status.LastError = why
}

// Backoff returns the delay before reconnection attempt n (from 0): it
// doubles from BackoffMin up to BackoffMax, drawn at random from its upper
// half but never below BackoffMin.
func (c *Core) Backoff(n int) time.Duration {
	lo0, hi0 := c.cfg.BackoffMin, c.cfg.BackoffMax
	d := lo0
	for i := 0; i < n && d < hi0; i++ {
		d *= 2
	}
	d = min(d, hi0)
	lo := max(d/2, lo0)
	if d > lo {
		d = lo + rand.N(d-lo+1)
	}
	return d
}

// NormalizeAddress turns "host" or "host:port" into "host:port".
func NormalizeAddress(a string, defaultPort int) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", errors.New("address is required (host or host:port)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: a name, an IPv4 address or a bare or bracketed IPv6 one.
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), strconv.Itoa(defaultPort)
	}
	if host == "" || strings.ContainsAny(host, " /[]\t") {
		return "", fmt.Errorf("address %q: want host or host:port", a)
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return "", fmt.Errorf("address %q: want host or host:port", a)
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("address %q: port must be a number from 1 to 65535", a)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// Duration is one duration setting: negative is an error, 0 takes Default.
type Duration struct {
	Name    string
	V       *units.Duration
	Default time.Duration
}

// Durations checks the duration settings and fills in their defaults.
func Durations(ds ...Duration) error {
	for _, d := range ds {
		if *d.V < 0 {
			return fmt.Errorf("%s: %s is negative", d.Name, *d.V)
		}
		if *d.V == 0 {
			*d.V = units.Duration(d.Default)
		}
	}
	return nil
}

// Reader hands what a connection's reads return to C, from its own
// goroutine.
type Reader[T any] struct {
	C    <-chan T
	stop chan struct{}
	done chan struct{}
}

// StartReader calls next in a new goroutine, again and again, handing each
// result to C, until next reports it was the last (the read failed) or Stop
// is called.
func StartReader[T any](next func() (v T, last bool)) *Reader[T] {
	c := make(chan T)
	r := &Reader[T]{C: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			v, last := next()
			select {
			case c <- v:
			case <-r.stop:
				return
			}
			if last {
				return
			}
		}
	}()
	return r
}

// Stop ends the reader: closeConn, the connection's Close, ends a read in
// progress. Stop returns once the goroutine has.
func (r *Reader[T]) Stop(closeConn func() error) {
	close(r.stop)
	_ = closeConn()
	<-r.done
}

// Dial connects to address over TCP within timeout.
func Dial(ctx context.Context, address string, timeout time.Duration) (net.Conn, error) {
	dialer := net.Dialer{Timeout: timeout}
	return dialer.DialContext(ctx, "tcp", address)
}

// ReadError turns a failed read into the reason the connection ends.
func ReadError(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("connection closed by the device")
	}
	return fmt.Errorf("read: %w", err)
}
