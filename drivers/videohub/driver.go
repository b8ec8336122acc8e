package videohub

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
	"understudy/runtime/config"
)

// Kind registers the driver as `kind: videohub`.
var Kind = drivers.Kind{
	Name:    "videohub",
	Summary: "Blackmagic Videohub video router (Videohub Ethernet protocol, TCP 9990)",
	New:     New,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Address is "host" or "host:port"; the port is 9990 unless given.
	Address string `yaml:"address"`
	// Timeout bounds each command: connecting, reading the status dump, a
	// route's ACK and its status update, a PING's ACK. Default 2s.
	Timeout config.Duration `yaml:"timeout"`
	// Ping is how long the connection may stay idle before a PING checks it.
	// Default 5s.
	Ping config.Duration `yaml:"ping"`
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin config.Duration `yaml:"backoff_min"`
	BackoffMax config.Duration `yaml:"backoff_max"`
}

// Default settings.
const (
	DefaultTimeout    = 2 * time.Second
	DefaultPing       = 5 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
)

// Errors a Route call can wrap; test for them with errors.Is.
var (
	// ErrNotConnected is drivers.ErrNotConnected: the runtime retries.
	ErrNotConnected = drivers.ErrNotConnected
	// ErrOutOfRange, ErrNAK and ErrNotApplied are refusals
	// (errors.Is(err, drivers.ErrRefused)): the runtime does not retry them.
	ErrOutOfRange = drivers.Refusal("port out of range")
	ErrNAK        = drivers.Refusal("NAK")
	ErrNotApplied = drivers.Refusal("not applied")
	ErrTimeout    = errors.New("no reply")
	ErrClosed     = errors.New("driver closed")
)

var _ drivers.Router = (*Videohub)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("videohub: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O.
func FromSettings(s Settings) (*Videohub, error) {
	addr, err := normalizeAddress(s.Address)
	if err != nil {
		return nil, err
	}
	s.Address = addr
	for _, d := range []struct {
		name string
		v    *config.Duration
		def  time.Duration
	}{
		{"timeout", &s.Timeout, DefaultTimeout},
		{"ping", &s.Ping, DefaultPing},
		{"backoff_min", &s.BackoffMin, DefaultBackoffMin},
		{"backoff_max", &s.BackoffMax, DefaultBackoffMax},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%s: %s is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = config.Duration(d.def)
		}
	}
	if s.BackoffMax < s.BackoffMin {
		return nil, fmt.Errorf("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}
	return &Videohub{set: s, status: drivers.Status{Address: addr}}, nil
}

// normalizeAddress turns "host" or "host:port" into "host:port".
func normalizeAddress(a string) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", errors.New("address is required (host or host:port)")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: a name, an IPv4 address or a bare or bracketed IPv6 one.
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), strconv.Itoa(DefaultPort)
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

// Videohub is a connection to one Videohub. It implements drivers.Router.
// Its methods are safe for use from any goroutine.
type Videohub struct {
	set Settings // validated, defaults filled in

	intended drivers.Intended // routes understudy set, compared after a reconnect

	mu      sync.Mutex
	status  drivers.Status
	st      state    // last state read from the device
	sess    *session // the ready connection, nil when there is none
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Settings returns the settings in use, defaults filled in.
func (v *Videohub) Settings() Settings { return v.set }

// state is what the driver knows of the device, ports 0-based as indexes.
type state struct {
	inputs, outputs int
	routing         []int // input+1 shown on each output, 0 when unknown; nil before the first read
	inLabels        []string
	outLabels       []string
	locks           []LockState
}

// session is one ready connection: Route hands it commands.
type session struct {
	cmds chan *request // unbuffered: taken only when no command is in flight
	done chan struct{} // closed when the connection ends
}

type request struct {
	ctx           context.Context
	output, input int // 1-based
	reply         chan error
}

// Start begins connecting in the background and returns at once.
func (v *Videohub) Start(ctx context.Context, emit drivers.Emitter) {
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.started || v.closed {
		return
	}
	v.started = true
	v.status.Since = time.Now()
	ctx, v.cancel = context.WithCancel(ctx)
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.run(ctx, emit)
	}()
}

// Close ends the connection and waits for the driver's goroutines. A Route
// in flight returns an error wrapping ErrClosed.
func (v *Videohub) Close() error {
	v.mu.Lock()
	v.closed = true
	cancel := v.cancel
	v.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	v.wg.Wait()
	return nil
}

// Status reports the connection as the driver sees it now.
func (v *Videohub) Status() drivers.Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.status
}

// Size returns the port counts read from the device (0, 0 before).
func (v *Videohub) Size() (inputs, outputs int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.st.inputs, v.st.outputs
}

// Routing returns the last known routing: element i is the input (from 1)
// shown on output i+1, 0 when unknown; nil before the first read.
func (v *Videohub) Routing() []int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st.routing == nil {
		return nil
	}
	return append([]int(nil), v.st.routing...)
}

// InputLabels returns the input labels, index i for input i+1.
func (v *Videohub) InputLabels() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.st.inLabels...)
}

// OutputLabels returns the output labels, index i for output i+1.
func (v *Videohub) OutputLabels() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.st.outLabels...)
}

// Route sets output to show input (both from 1) and returns once the
// device's status update shows the new route. It fails at once when the
// driver is not connected or a port is out of range; otherwise with the
// device's NAK, with ErrNotApplied when the update shows another input (for
// example, the output is locked by another client), with ErrTimeout when no
// ACK or NAK came within the timeout (the connection is then redialled), or
// with ctx's error.
func (v *Videohub) Route(ctx context.Context, output, input int) error {
	what := fmt.Sprintf("videohub %s: route output %d ← input %d", v.set.Address, output, input)
	v.mu.Lock()
	s, closed, lastErr := v.sess, v.closed, v.status.LastError
	ins, outs := v.st.inputs, v.st.outputs
	v.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%s: %w", what, ErrClosed)
	case s == nil && lastErr != "":
		return fmt.Errorf("%s: %w (last error: %s)", what, ErrNotConnected, lastErr)
	case s == nil:
		return fmt.Errorf("%s: %w", what, ErrNotConnected)
	}
	if err := checkRange(output, input, ins, outs); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req := &request{ctx: ctx, output: output, input: input, reply: make(chan error, 1)}
	select {
	case s.cmds <- req:
	case <-s.done:
		return fmt.Errorf("%s: %w (connection lost)", what, ErrNotConnected)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	// The connection goroutine always replies, within about twice the
	// timeout, or at once when the connection or the driver ends.
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

func checkRange(output, input, inputs, outputs int) error {
	if output < 1 || output > outputs || input < 1 || input > inputs {
		return fmt.Errorf("%w (the device has %d outputs and %d inputs)", ErrOutOfRange, outputs, inputs)
	}
	return nil
}

// run owns the connection: it dials, runs a session, and redials with
// backoff until ctx ends.
func (v *Videohub) run(ctx context.Context, emit drivers.Emitter) {
	const (
		unreported = iota
		reportedUp
		reportedDown
	)
	reported := unreported
	attempt := 0
	for {
		wasReady, err := v.connect(ctx, emit)
		if wasReady {
			reported = reportedUp
			attempt = 0
		}
		if ctx.Err() != nil {
			v.setDown(ErrClosed.Error())
			return
		}
		v.setDown(err.Error())
		if reported != reportedDown {
			reported = reportedDown
			emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{
				"address": v.set.Address,
				"error":   err.Error(),
			}})
		}
		t := time.NewTimer(v.backoff(attempt))
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
func (v *Videohub) setDown(why string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.status.Connected {
		v.status.Connected = false
		v.status.Since = time.Now()
	}
	v.status.LastError = why
}

// backoff returns the delay before reconnection attempt n (from 0): it
// doubles from BackoffMin up to BackoffMax, drawn at random from its upper
// half but never below BackoffMin.
func (v *Videohub) backoff(n int) time.Duration {
	d := v.set.BackoffMin.D()
	for i := 0; i < n && d < v.set.BackoffMax.D(); i++ {
		d *= 2
	}
	d = min(d, v.set.BackoffMax.D())
	lo := max(d/2, v.set.BackoffMin.D())
	if d > lo {
		d = lo + rand.N(d-lo+1)
	}
	return d
}

// What a reply (ACK or NAK) that is still to come answers.
type pendingKind int

const (
	pendPreludePing pendingKind = iota
	pendPing
	pendRoute
)

type pending struct {
	kind     pendingKind
	deadline time.Time
}

// inflight is the route command being carried out.
type inflight struct {
	req      *request
	acked    bool
	deadline time.Time // for the status update, once acked
}

type readResult struct {
	msg Message
	err error
}

// connect runs one connection from dial to failure. It reports whether the
// connection became ready, and why it ended.
func (v *Videohub) connect(ctx context.Context, emit drivers.Emitter) (ready bool, err error) {
	timeout := v.set.Timeout.D()
	dialer := net.Dialer{Timeout: timeout}
	nc, err := dialer.DialContext(ctx, "tcp", v.set.Address)
	if err != nil {
		return false, err
	}
	conn := NewConn(nc)
	reads := make(chan readResult)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			var m Message
			b, err := conn.ReadBlock()
			if errors.Is(err, ErrMalformed) {
				continue // a block whose header cannot be read: one we do not know
			}
			if err == nil {
				m, err = Decode(b)
			}
			select {
			case reads <- readResult{m, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	sess := &session{cmds: make(chan *request), done: make(chan struct{})}
	var cur *inflight
	finish := func(err error) {
		cur.req.reply <- err
		cur = nil
	}
	what := func(r *request) string {
		return fmt.Sprintf("route output %d ← input %d", r.output, r.input)
	}
	defer func() {
		v.mu.Lock()
		if v.sess == sess {
			v.sess = nil
		}
		v.mu.Unlock()
		close(sess.done)
		close(stop)
		_ = conn.Close()
		<-readerDone
		if cur != nil {
			if ctx.Err() != nil {
				finish(fmt.Errorf("videohub %s: %s: %w", v.set.Address, what(cur.req), ErrClosed))
			} else {
				finish(fmt.Errorf("videohub %s: %s: connection lost: %w", v.set.Address, what(cur.req), err))
			}
		}
	}()

	lastIO := time.Now()
	send := func(m Message) error {
		now := time.Now()
		_ = nc.SetWriteDeadline(now.Add(timeout))
		lastIO = now
		return conn.WriteMessage(m)
	}
	preludeDeadline := lastIO.Add(timeout)
	var (
		pend     []pending
		pre      state // the status dump, committed when ready
		pingSent bool
	)
	sendPreludePing := func() error {
		if pingSent {
			return nil
		}
		pingSent = true
		pend = append(pend, pending{pendPreludePing, time.Now().Add(timeout)})
		return send(Ping{})
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	for {
		var next time.Time
		earliest := func(t time.Time) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		if !ready {
			earliest(preludeDeadline)
		}
		if len(pend) > 0 {
			earliest(pend[0].deadline)
		}
		if cur != nil && cur.acked {
			earliest(cur.deadline)
		}
		if ready && len(pend) == 0 && cur == nil {
			earliest(lastIO.Add(v.set.Ping.D()))
		}
		timer.Reset(time.Until(next))
		var cmds chan *request
		if ready && cur == nil {
			cmds = sess.cmds
		}

		select {
		case <-ctx.Done():
			return ready, ctx.Err()

		case r := <-reads:
			if r.err != nil {
				if errors.Is(r.err, io.EOF) {
					return ready, errors.New("connection closed by the device")
				}
				return ready, fmt.Errorf("read: %w", r.err)
			}
			lastIO = time.Now()
			switch m := r.msg.(type) {
			case Ack, Nak:
				if len(pend) == 0 {
					continue // a reply to nothing we sent; ignore it
				}
				p := pend[0]
				pend = pend[1:]
				_, nak := m.(Nak)
				switch p.kind {
				case pendPreludePing:
					if !ready {
						ready = true
						v.commit(pre, sess)
						emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": v.set.Address}})
						for _, ev := range v.intended.Differences(v.Routing()) {
							emit(ev)
						}
					}
				case pendRoute:
					if nak {
						finish(fmt.Errorf("videohub %s refused route output %d ← input %d (%w)",
							v.set.Address, cur.req.output, cur.req.input, ErrNAK))
					} else {
						cur.acked = true
						cur.deadline = time.Now().Add(timeout)
					}
				}
			default:
				if !ready {
					pre.apply(m)
					switch r.msg.(type) {
					case OutputRouting, EndPrelude:
						if err := sendPreludePing(); err != nil {
							return ready, err
						}
					}
					continue
				}
				changed := v.applyLocked(m)
				for _, c := range changed {
					emit(drivers.Event{Name: drivers.EventRouteChanged, Fields: map[string]any{
						"output": c.Output + 1,
						"input":  c.Input + 1,
					}})
				}
				if routes, ok := m.(OutputRouting); ok && cur != nil && cur.acked {
					shown := -1
					for _, rt := range routes {
						if rt.Output == cur.req.output-1 {
							shown = rt.Input + 1
						}
					}
					if shown == cur.req.input {
						v.intended.Set(cur.req.output, cur.req.input)
						finish(nil)
					} else if shown > 0 {
						finish(v.notApplied(cur.req, shown, "the device's status update shows input "+strconv.Itoa(shown)))
					}
				}
			}

		case req := <-cmds:
			if err := req.ctx.Err(); err != nil {
				req.reply <- fmt.Errorf("videohub %s: %s: %w", v.set.Address, what(req), err)
				continue
			}
			ins, outs := v.Size()
			if err := checkRange(req.output, req.input, ins, outs); err != nil {
				req.reply <- fmt.Errorf("videohub %s: %s: %w", v.set.Address, what(req), err)
				continue
			}
			cur = &inflight{req: req}
			pend = append(pend, pending{pendRoute, time.Now().Add(timeout)})
			if err := send(OutputRouting{{Output: req.output - 1, Input: req.input - 1}}); err != nil {
				return ready, err
			}

		case <-timer.C:
			now := time.Now()
			switch {
			case len(pend) > 0 && !now.Before(pend[0].deadline):
				if pend[0].kind == pendRoute {
					finish(fmt.Errorf("videohub %s: %s: %w (ACK or NAK) within %s; reconnecting",
						v.set.Address, what(cur.req), ErrTimeout, timeout))
				}
				return ready, fmt.Errorf("%w within %s: the connection is dropped", ErrTimeout, timeout)
			case !ready && !now.Before(preludeDeadline):
				return ready, fmt.Errorf("%w: no complete status dump within %s", ErrTimeout, timeout)
			case cur != nil && cur.acked && !now.Before(cur.deadline):
				// ACKed, but no status update for the output came. A device
				// may not echo a route that was already set: trust the cache.
				v.mu.Lock()
				shown := 0
				if o := cur.req.output - 1; o < len(v.st.routing) {
					shown = v.st.routing[o]
				}
				v.mu.Unlock()
				if shown == cur.req.input {
					v.intended.Set(cur.req.output, cur.req.input)
					finish(nil)
				} else {
					finish(v.notApplied(cur.req, shown, fmt.Sprintf("no status update within %s", timeout)))
				}
			case ready && len(pend) == 0 && cur == nil && !now.Before(lastIO.Add(v.set.Ping.D())):
				pend = append(pend, pending{pendPing, now.Add(timeout)})
				if err := send(Ping{}); err != nil {
					return ready, err
				}
			}
		}
	}
}

// notApplied explains why the device kept another input on the output.
func (v *Videohub) notApplied(r *request, shown int, detail string) error {
	v.mu.Lock()
	locked := r.output-1 < len(v.st.locks) && v.st.locks[r.output-1] == Locked
	v.mu.Unlock()
	why := detail
	if locked {
		why = fmt.Sprintf("output %d is locked by another client", r.output)
		if shown > 0 {
			why += fmt.Sprintf(" (it shows input %d)", shown)
		}
	}
	return fmt.Errorf("videohub %s: route output %d ← input %d %w: %s", v.set.Address, r.output, r.input, ErrNotApplied, why)
}

// commit makes the status dump read on a new connection the driver's state
// and the connection the one Route uses.
func (v *Videohub) commit(pre state, s *session) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = pre
	if v.st.routing == nil {
		v.st.routing = make([]int, v.st.outputs)
	}
	v.sess = s
	v.status.Connected = true
	v.status.Since = time.Now()
	v.status.LastError = ""
}

// applyLocked applies a status update to the driver's state and returns the
// routes that changed (0-based).
func (v *Videohub) applyLocked(m Message) []Route {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.st.apply(m)
}

// apply applies one status block to st and returns the routes that changed
// (0-based). Entries for ports beyond the device's counts are ignored.
func (st *state) apply(m Message) []Route {
	var changed []Route
	switch m := m.(type) {
	case Device:
		st.inputs, st.outputs = m.VideoInputs, m.VideoOutputs
		st.inLabels = resize(st.inLabels, st.inputs, "")
		st.outLabels = resize(st.outLabels, st.outputs, "")
		st.locks = resize(st.locks, st.outputs, Unlocked)
		if st.routing != nil || st.outputs > 0 {
			st.routing = resize(st.routing, st.outputs, 0)
		}
	case InputLabels:
		for _, l := range m {
			if l.Port < len(st.inLabels) {
				st.inLabels[l.Port] = l.Text
			}
		}
	case OutputLabels:
		for _, l := range m {
			if l.Port < len(st.outLabels) {
				st.outLabels[l.Port] = l.Text
			}
		}
	case OutputLocks:
		for _, l := range m {
			if l.Port < len(st.locks) {
				st.locks[l.Port] = l.State
			}
		}
	case OutputRouting:
		if st.routing == nil {
			st.routing = make([]int, st.outputs)
		}
		for _, r := range m {
			if r.Output >= len(st.routing) || r.Input >= st.inputs {
				continue
			}
			if st.routing[r.Output] != r.Input+1 {
				st.routing[r.Output] = r.Input + 1
				changed = append(changed, r)
			}
		}
	}
	return changed
}

func resize[T any](s []T, n int, zero T) []T {
	if len(s) >= n {
		return s[:n:n]
	}
	out := make([]T, n)
	copy(out, s)
	for i := len(s); i < n; i++ {
		out[i] = zero
	}
	return out
}
