package videohub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"understudy/drivers/videohub/wire"

	"understudy/drivers"
	"understudy/drivers/switcher"
	"understudy/drivers/videohub/videohubsim"
	"understudy/units"
)

// Kind registers the driver as `kind: videohub`, with its liveness check for
// probes and its simulator.
var Kind = drivers.Kind{
	Name:     "videohub",
	Summary:  "Blackmagic Videohub video router (Videohub Ethernet protocol, TCP 9990)",
	New:      New,
	Alive:    Alive,
	Simulate: videohubsim.Simulate,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Address is "host" or "host:port"; the port is 9990 unless given.
	Address string `yaml:"address"`
	// Timeout bounds each command: connecting, reading the status dump, a
	// route's ACK and its status update, a PING's ACK. Default 2s.
	Timeout units.Duration `yaml:"timeout"`
	// Ping is how long the connection may stay idle before a PING checks it.
	// Default 5s.
	Ping units.Duration `yaml:"ping"`
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin units.Duration `yaml:"backoff_min"`
	BackoffMax units.Duration `yaml:"backoff_max"`
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
	if err := switcher.Durations(
		switcher.Duration{Name: "timeout", V: &s.Timeout, Default: DefaultTimeout},
		switcher.Duration{Name: "ping", V: &s.Ping, Default: DefaultPing},
		switcher.Duration{Name: "backoff_min", V: &s.BackoffMin, Default: DefaultBackoffMin},
		switcher.Duration{Name: "backoff_max", V: &s.BackoffMax, Default: DefaultBackoffMax},
	); err != nil {
		return nil, err
	}
	if s.BackoffMax < s.BackoffMin {
		return nil, fmt.Errorf("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}
	return &Videohub{set: s, c: switcher.NewCore(switcher.Config{
		Name:          "videohub",
		Address:       addr,
		BackoffMin:    s.BackoffMin.D(),
		BackoffMax:    s.BackoffMax.D(),
		What:          routeWhat,
		ErrClosed:     ErrClosed,
		ErrOutOfRange: ErrOutOfRange,
	})}, nil
}

func routeWhat(output, input int) string {
	return fmt.Sprintf("route output %d ← input %d", output, input)
}

// normalizeAddress turns "host" or "host:port" into "host:port".
func normalizeAddress(a string) (string, error) {
	return switcher.NormalizeAddress(a, wire.DefaultPort)
}

// Videohub is a connection to one Videohub. It implements drivers.Router.
// Its methods are safe for use from any goroutine.
type Videohub struct {
	set Settings // validated, defaults filled in

	c     *switcher.Core   // state, route requests, reconnection
	locks []wire.LockState // guarded by c's lock
}

// Settings returns the settings in use, defaults filled in.
func (v *Videohub) Settings() Settings { return v.set }

// state is what the driver knows of the device, ports 0-based as indexes.
type state struct {
	switcher.State
	locks []wire.LockState
}

// Start begins connecting in the background and returns at once.
func (v *Videohub) Start(ctx context.Context, emit drivers.Emitter) {
	v.c.Start(ctx, emit, v.connect)
}

// Close ends the connection and waits for the driver's goroutines. A Route
// in flight returns an error wrapping ErrClosed.
func (v *Videohub) Close() error { return v.c.Close() }

// Status reports the connection as the driver sees it now.
func (v *Videohub) Status() drivers.Status { return v.c.Status() }

// Size returns the port counts read from the device (0, 0 before).
func (v *Videohub) Size() (inputs, outputs int) { return v.c.Size() }

// Routing returns the last known routing: element i is the input (from 1)
// shown on output i+1, 0 when unknown; nil before the first read.
func (v *Videohub) Routing() []int { return v.c.Routing() }

// InputLabels returns the input labels, index i for input i+1.
func (v *Videohub) InputLabels() []string { return v.c.InputLabels() }

// OutputLabels returns the output labels, index i for output i+1.
func (v *Videohub) OutputLabels() []string { return v.c.OutputLabels() }

// Route sets output to show input (both from 1) and returns once the
// device's status update shows the new route. It fails at once when the
// driver is not connected or a port is out of range; otherwise with the
// device's NAK, with ErrNotApplied when the update shows another input (for
// example, the output is locked by another client), with ErrTimeout when no
// ACK or NAK came within the timeout (the connection is then redialled), or
// with ctx's error.
func (v *Videohub) Route(ctx context.Context, output, input int) error {
	return v.c.Route(ctx, output, input)
}

// backoff returns the delay before reconnection attempt n (from 0).
func (v *Videohub) backoff(n int) time.Duration { return v.c.Backoff(n) }

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
	req      *switcher.Request
	acked    bool
	deadline time.Time // for the status update, once acked
}

type readResult struct {
	msg wire.Message
	err error
}

// connect runs one connection from dial to failure. It reports whether the
// connection became ready, and why it ended.
func (v *Videohub) connect(ctx context.Context, emit drivers.Emitter) (ready bool, err error) {
	timeout := v.set.Timeout.D()
	nc, err := switcher.Dial(ctx, v.set.Address, timeout)
	if err != nil {
		return false, err
	}
	conn := wire.NewConn(nc)
	reader := switcher.StartReader(func() (readResult, bool) {
		for {
			b, err := conn.ReadBlock()
			if errors.Is(err, wire.ErrMalformed) {
				continue // a block whose header cannot be read: one we do not know
			}
			var m wire.Message
			if err == nil {
				m, err = wire.Decode(b)
			}
			return readResult{m, err}, err != nil
		}
	})
	reads := reader.C

	sess := switcher.NewSession()
	var cur *inflight
	finish := func(err error) {
		cur.req.Reply(err)
		cur = nil
	}
	defer func() {
		v.c.Detach(sess)
		reader.Stop(conn.Close)
		if cur != nil {
			v.c.Lost(ctx, cur.req, err)
			cur = nil
		}
	}()

	lastIO := time.Now()
	send := func(m wire.Message) error {
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
		return send(wire.Ping{})
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
		var cmds chan *switcher.Request
		if ready && cur == nil {
			cmds = sess.Cmds()
		}

		select {
		case <-ctx.Done():
			return ready, ctx.Err()

		case r := <-reads:
			if r.err != nil {
				return ready, switcher.ReadError(r.err)
			}
			lastIO = time.Now()
			switch m := r.msg.(type) {
			case wire.Ack, wire.Nak:
				if len(pend) == 0 {
					continue // a reply to nothing we sent; ignore it
				}
				p := pend[0]
				pend = pend[1:]
				_, nak := m.(wire.Nak)
				switch p.kind {
				case pendPreludePing:
					if !ready {
						ready = true
						v.commit(pre, sess)
						v.c.EmitConnected(emit)
					}
				case pendRoute:
					if nak {
						finish(fmt.Errorf("videohub %s refused route output %d ← input %d (%w)",
							v.set.Address, cur.req.Output, cur.req.Input, ErrNAK))
					} else {
						cur.acked = true
						cur.deadline = time.Now().Add(timeout)
					}
				}
			default:
				if !ready {
					pre.apply(m)
					switch r.msg.(type) {
					case wire.OutputRouting, wire.EndPrelude:
						if err := sendPreludePing(); err != nil {
							return ready, err
						}
					}
					continue
				}
				changed := v.applyLocked(m)
				for _, c := range changed {
					switcher.EmitRouteChanged(emit, c.Output+1, c.Input+1)
				}
				if routes, ok := m.(wire.OutputRouting); ok && cur != nil && cur.acked {
					shown := -1
					for _, rt := range routes {
						if rt.Output == cur.req.Output-1 {
							shown = rt.Input + 1
						}
					}
					if shown == cur.req.Input {
						finish(nil)
					} else if shown > 0 {
						finish(v.notApplied(cur.req, shown, "the device's status update shows input "+strconv.Itoa(shown)))
					}
				}
			}

		case req := <-cmds:
			if !v.c.Accept(req) {
				continue
			}
			cur = &inflight{req: req}
			pend = append(pend, pending{pendRoute, time.Now().Add(timeout)})
			if err := send(wire.OutputRouting{{Output: req.Output - 1, Input: req.Input - 1}}); err != nil {
				return ready, err
			}

		case <-timer.C:
			now := time.Now()
			switch {
			case len(pend) > 0 && !now.Before(pend[0].deadline):
				if pend[0].kind == pendRoute {
					finish(v.c.Errorf(cur.req, "%w (ACK or NAK) within %s; reconnecting", ErrTimeout, timeout))
				}
				return ready, fmt.Errorf("%w within %s: the connection is dropped", ErrTimeout, timeout)
			case !ready && !now.Before(preludeDeadline):
				return ready, fmt.Errorf("%w: no complete status dump within %s", ErrTimeout, timeout)
			case cur != nil && cur.acked && !now.Before(cur.deadline):
				// ACKed, but no status update for the output came. A device
				// may not echo a route that was already set: trust the cache.
				v.c.Lock()
				shown := 0
				if o, routing := cur.req.Output-1, v.c.StateLocked().Routing; o < len(routing) {
					shown = routing[o]
				}
				v.c.Unlock()
				if shown == cur.req.Input {
					finish(nil)
				} else {
					finish(v.notApplied(cur.req, shown, fmt.Sprintf("no status update within %s", timeout)))
				}
			case ready && len(pend) == 0 && cur == nil && !now.Before(lastIO.Add(v.set.Ping.D())):
				pend = append(pend, pending{pendPing, now.Add(timeout)})
				if err := send(wire.Ping{}); err != nil {
					return ready, err
				}
			}
		}
	}
}

// notApplied explains why the device kept another input on the output.
func (v *Videohub) notApplied(r *switcher.Request, shown int, detail string) error {
	v.c.Lock()
	locked := r.Output-1 < len(v.locks) && v.locks[r.Output-1] == wire.Locked
	v.c.Unlock()
	why := detail
	if locked {
		why = fmt.Sprintf("output %d is locked by another client", r.Output)
		if shown > 0 {
			why += fmt.Sprintf(" (it shows input %d)", shown)
		}
	}
	return fmt.Errorf("videohub %s: route output %d ← input %d %w: %s", v.set.Address, r.Output, r.Input, ErrNotApplied, why)
}

// commit makes the status dump read on a new connection the driver's state
// and the connection the one Route uses.
func (v *Videohub) commit(pre state, s *switcher.Session) {
	if pre.Routing == nil {
		pre.Routing = make([]int, pre.Outputs)
	}
	v.c.Lock()
	v.locks = pre.locks
	v.c.Unlock()
	v.c.Commit(pre.State, s)
}

// applyLocked applies a status update to the driver's state and returns the
// routes that changed (0-based).
func (v *Videohub) applyLocked(m wire.Message) []wire.Route {
	v.c.Lock()
	defer v.c.Unlock()
	st := state{State: *v.c.StateLocked(), locks: v.locks}
	changed := st.apply(m)
	*v.c.StateLocked(), v.locks = st.State, st.locks
	return changed
}

// apply applies one status block to st and returns the routes that changed
// (0-based). Entries for ports beyond the device's counts are ignored.
func (st *state) apply(m wire.Message) []wire.Route {
	var changed []wire.Route
	switch m := m.(type) {
	case wire.Device:
		st.Inputs, st.Outputs = m.VideoInputs, m.VideoOutputs
		st.InLabels = resize(st.InLabels, st.Inputs, "")
		st.OutLabels = resize(st.OutLabels, st.Outputs, "")
		st.locks = resize(st.locks, st.Outputs, wire.Unlocked)
		if st.Routing != nil || st.Outputs > 0 {
			st.Routing = resize(st.Routing, st.Outputs, 0)
		}
	case wire.InputLabels:
		for _, l := range m {
			if l.Port < len(st.InLabels) {
				st.InLabels[l.Port] = l.Text
			}
		}
	case wire.OutputLabels:
		for _, l := range m {
			if l.Port < len(st.OutLabels) {
				st.OutLabels[l.Port] = l.Text
			}
		}
	case wire.OutputLocks:
		for _, l := range m {
			if l.Port < len(st.locks) {
				st.locks[l.Port] = l.State
			}
		}
	case wire.OutputRouting:
		if st.Routing == nil {
			st.Routing = make([]int, st.Outputs)
		}
		for _, r := range m {
			if r.Output >= len(st.Routing) || r.Input >= st.Inputs {
				continue
			}
			if st.Routing[r.Output] != r.Input+1 {
				st.Routing[r.Output] = r.Input + 1
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
