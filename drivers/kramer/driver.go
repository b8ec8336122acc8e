package kramer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"understudy/drivers/kramer/wire"

	"understudy/drivers"
	"understudy/drivers/kramer/kramersim"
	"understudy/drivers/switcher"
	"understudy/units"
)

// Kind registers the driver as `kind: kramer`, with its liveness check for
// probes and its simulator.
var Kind = drivers.Kind{
	Name:     "kramer",
	Summary:  "Kramer matrix switcher (Protocol 3000, TCP 5000)",
	New:      New,
	Alive:    Alive,
	Simulate: kramersim.Simulate,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Address is "host" or "host:port"; the port is 5000 unless given.
	Address string `yaml:"address"`
	// Layer is the Protocol 3000 layer routed and read: 1 video (default),
	// 2 audio, 3 data; other numbers as the device's manual lists them.
	Layer int `yaml:"layer"`
	// Machine is the device's machine number (default 1). Replies carrying
	// another number are not the device's; commands are addressed to it
	// ("#05@…") when it is not 1.
	Machine int `yaml:"machine"`
	// Inputs and Outputs are the port counts to use when the device cannot
	// report them (it answers INFO-IO? with an error). Both or neither.
	Inputs  int `yaml:"inputs"`
	Outputs int `yaml:"outputs"`
	// Labels reads the port labels with LABEL? on connect (off by default:
	// few models have the command).
	Labels bool `yaml:"labels"`
	// Timeout bounds each command: connecting, and every reply. Default 2s.
	Timeout units.Duration `yaml:"timeout"`
	// Poll is how often the routing is read back to catch changes the
	// device did not announce; 0s turns polling off. Default 10s.
	Poll *units.Duration `yaml:"poll"`
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin units.Duration `yaml:"backoff_min"`
	BackoffMax units.Duration `yaml:"backoff_max"`
}

// Default settings.
const (
	DefaultLayer      = 1
	DefaultMachine    = 1
	DefaultTimeout    = 2 * time.Second
	DefaultPoll       = 10 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	// MaxMachineSetting is the largest machine number the settings accept
	// (two digits, as the device shows them).
	MaxMachineSetting = 99
)

// Errors a Route call can wrap; test for them with errors.Is. An error
// code from the device is a *DeviceError.
var (
	// ErrNotConnected is drivers.ErrNotConnected: the runtime retries.
	ErrNotConnected = drivers.ErrNotConnected
	// ErrOutOfRange is a refusal (errors.Is(err, drivers.ErrRefused)): a
	// port outside the device's size, found before sending anything.
	ErrOutOfRange = drivers.Refusal("port out of range")
	ErrTimeout    = errors.New("no reply")
	ErrClosed     = errors.New("driver closed")
)

var _ drivers.Router = (*Matrix)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("kramer: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O.
func FromSettings(s Settings) (*Matrix, error) {
	addr, err := normalizeAddress(s.Address)
	if err != nil {
		return nil, err
	}
	s.Address = addr
	switch {
	case s.Layer == 0:
		s.Layer = DefaultLayer
	case s.Layer < 0 || s.Layer > wire.MaxLayer:
		return nil, fmt.Errorf("layer %d: want a number from 1 to %d (1 video, 2 audio, 3 data)", s.Layer, wire.MaxLayer)
	}
	switch {
	case s.Machine == 0:
		s.Machine = DefaultMachine
	case s.Machine < 0 || s.Machine > MaxMachineSetting:
		return nil, fmt.Errorf("machine %d: want a number from 1 to %d", s.Machine, MaxMachineSetting)
	}
	for _, p := range []struct {
		name string
		n    int
	}{{"inputs", s.Inputs}, {"outputs", s.Outputs}} {
		if p.n < 0 || p.n > wire.MaxPorts {
			return nil, fmt.Errorf("%s %d: want a number from 1 to %d", p.name, p.n, wire.MaxPorts)
		}
	}
	if (s.Inputs == 0) != (s.Outputs == 0) {
		return nil, errors.New("inputs and outputs: give both, or neither (the device reports its size)")
	}
	if s.Poll == nil {
		p := units.Duration(DefaultPoll)
		s.Poll = &p
	} else {
		p := *s.Poll // the caller's value is not shared
		s.Poll = &p
	}
	if err := switcher.Durations(
		switcher.Duration{Name: "timeout", V: &s.Timeout, Default: DefaultTimeout},
		switcher.Duration{Name: "poll", V: s.Poll},
		switcher.Duration{Name: "backoff_min", V: &s.BackoffMin, Default: DefaultBackoffMin},
		switcher.Duration{Name: "backoff_max", V: &s.BackoffMax, Default: DefaultBackoffMax},
	); err != nil {
		return nil, err
	}
	if s.BackoffMax < s.BackoffMin {
		return nil, fmt.Errorf("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}
	return &Matrix{set: s, c: switcher.NewCore(switcher.Config{
		Name:          "kramer",
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

// Matrix is a connection to one Kramer matrix switcher, routing one layer.
// It implements drivers.Router. Its methods are safe for use from any
// goroutine.
type Matrix struct {
	set Settings // validated, defaults filled in

	c *switcher.Core // state, route requests, reconnection
}

// Settings returns the settings in use, defaults filled in.
func (m *Matrix) Settings() Settings {
	s := m.set
	p := *s.Poll
	s.Poll = &p
	return s
}

// state is what the driver knows of the device: Routing holds the input
// shown on each output (index output-1), 0 unknown or none.
type state = switcher.State

// Start begins connecting in the background and returns at once.
func (m *Matrix) Start(ctx context.Context, emit drivers.Emitter) {
	m.c.Start(ctx, emit, m.connect)
}

// Close ends the connection and waits for the driver's goroutines. A Route
// in flight returns an error wrapping ErrClosed.
func (m *Matrix) Close() error { return m.c.Close() }

// Status reports the connection as the driver sees it now.
func (m *Matrix) Status() drivers.Status { return m.c.Status() }

// Size returns the port counts read from the device, or taken from the
// settings when the device cannot report them (0, 0 before connecting).
func (m *Matrix) Size() (inputs, outputs int) { return m.c.Size() }

// Routing returns the last known routing of the layer: element i is the
// input shown on output i+1, 0 when unknown or disconnected; nil before the
// first read.
func (m *Matrix) Routing() []int { return m.c.Routing() }

// InputLabels returns the input labels, index i for input i+1; nil unless
// the labels setting is on and the device answered LABEL?.
func (m *Matrix) InputLabels() []string { return m.c.InputLabels() }

// OutputLabels returns the output labels, index i for output i+1; nil
// unless the labels setting is on and the device answered LABEL?.
func (m *Matrix) OutputLabels() []string { return m.c.OutputLabels() }

// Route sets output to show input (both from 1) on the configured layer and
// returns once the device confirmed it. It fails at once when the driver is
// not connected or a port is out of range; otherwise with the device's
// error code (a *DeviceError), with ErrTimeout when no reply came within
// the timeout (the connection is then redialled), or with ctx's error.
func (m *Matrix) Route(ctx context.Context, output, input int) error {
	return m.c.Route(ctx, output, input)
}

// backoff returns the delay before reconnection attempt n (from 0).
func (m *Matrix) backoff(n int) time.Duration { return m.c.Backoff(n) }

// readResult is one line from the device, decoded.
type readResult struct {
	frame wire.Frame
	reply wire.Reply
	err   error
}

// link is one connection from dial to failure, owned by the connection
// goroutine.
type link struct {
	m       *Matrix
	ctx     context.Context
	emit    drivers.Emitter
	nc      net.Conn
	conn    *wire.Conn
	reads   <-chan readResult
	timeout time.Duration
	sess    *switcher.Session
	ready   bool
	pre     state // what was read before the connection was ready
}

// connect runs one connection from dial to failure. It reports whether the
// connection became ready, and why it ended.
func (m *Matrix) connect(ctx context.Context, emit drivers.Emitter) (ready bool, err error) {
	timeout := m.set.Timeout.D()
	nc, err := switcher.Dial(ctx, m.set.Address, timeout)
	if err != nil {
		return false, err
	}
	l := &link{
		m: m, ctx: ctx, emit: emit, nc: nc, conn: wire.NewConn(nc),
		timeout: timeout, sess: switcher.NewSession(),
	}
	reader := switcher.StartReader(l.read)
	l.reads = reader.C
	defer func() {
		m.c.Detach(l.sess)
		reader.Stop(l.conn.Close)
	}()
	if err := l.prelude(); err != nil {
		return false, err
	}
	l.ready = true
	m.c.Commit(l.pre, l.sess)
	m.c.EmitConnected(emit)
	return true, l.serve()
}

// read reads and decodes the device's next line, and reports whether the
// read failed. Lines that are not device messages (an echo, a banner,
// noise) and messages addressed from other machines that do not decode are
// skipped.
func (l *link) read() (readResult, bool) {
	for {
		f, err := l.conn.ReadFrame()
		var r wire.Reply
		switch {
		case errors.Is(err, wire.ErrMalformed):
			continue
		case err == nil && !f.Reply:
			continue
		case err == nil:
			r, err = wire.DecodeReply(f)
			if err != nil && !l.ours(f) {
				continue
			}
		}
		return readResult{frame: f, reply: r, err: err}, err != nil
	}
}

// ours reports whether a device message comes from the configured
// machine: it carries that number, or none (older firmware).
func (l *link) ours(f wire.Frame) bool { return !f.Addressed || f.Machine == l.m.set.Machine }

// address returns the machine number commands are addressed to: none for
// machine 1, the factory setting, whose manuals show unaddressed commands.
func (l *link) address() int {
	if l.m.set.Machine == DefaultMachine {
		return 0
	}
	return l.m.set.Machine
}

// exchange sends cmd and waits for the reply answer accepts, handling every
// other message from the device on the way. A general error ("ERR 002")
// or an error naming the command is an answer too. It fails when no answer
// comes within the timeout, the connection fails or ctx ends.
func (l *link) exchange(cmd wire.Command, answer func(wire.Frame, wire.Reply) bool) (wire.Frame, wire.Reply, error) {
	name, _, _ := strings.Cut(cmd.CommandBody(), " ")
	name = strings.TrimSuffix(name, "?")
	_ = l.nc.SetWriteDeadline(time.Now().Add(l.timeout))
	if err := l.conn.WriteCommand(l.address(), cmd); err != nil {
		return wire.Frame{}, nil, err
	}
	t := time.NewTimer(l.timeout)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return wire.Frame{}, nil, l.ctx.Err()
		case r := <-l.reads:
			if r.err != nil {
				return wire.Frame{}, nil, switcher.ReadError(r.err)
			}
			if e, ok := r.reply.(wire.Err); ok && l.ours(r.frame) && (e.Command == "" || strings.TrimSuffix(e.Command, "?") == name) {
				return r.frame, e, nil
			}
			if answer(r.frame, r.reply) {
				return r.frame, r.reply, nil
			}
			if l.ours(r.frame) {
				l.unsolicited(r.reply)
			}
		case <-t.C:
			return wire.Frame{}, nil, fmt.Errorf("%w to %q within %s", ErrTimeout, "#"+cmd.CommandBody(), l.timeout)
		}
	}
}

// deviceError turns an Err reply to cmd into a *DeviceError.
func deviceError(cmd wire.Command, e wire.Err) *wire.DeviceError {
	return &wire.DeviceError{Command: cmd.CommandBody(), Code: e.Code}
}

// prelude checks the device answers as the configured machine and reads
// its size, labels and routing, into l.pre.
func (l *link) prelude() error {
	set := l.m.set
	// The handshake's answer tells which machine answered: any machine's
	// OK is taken, then checked.
	from, r, err := l.exchange(wire.Handshake{}, func(f wire.Frame, r wire.Reply) bool {
		_, ok := r.(wire.OK)
		return ok
	})
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if e, ok := r.(wire.Err); ok {
		return fmt.Errorf("handshake: the device answered %s", deviceError(wire.Handshake{}, e))
	}
	if !l.ours(from) {
		return fmt.Errorf("the device answered as machine %d, not %d: set machine: %d", from.Machine, set.Machine, from.Machine)
	}

	_, r, err = l.exchange(wire.InfoIOQuery{}, func(f wire.Frame, r wire.Reply) bool {
		_, ok := r.(wire.IOCount)
		return ok && l.ours(f)
	})
	if err != nil {
		return fmt.Errorf("INFO-IO?: %w", err)
	}
	switch r := r.(type) {
	case wire.IOCount:
		if r.Inputs < 1 || r.Outputs < 1 {
			return fmt.Errorf("INFO-IO?: the device reports %d inputs and %d outputs", r.Inputs, r.Outputs)
		}
		l.pre.Inputs, l.pre.Outputs = r.Inputs, r.Outputs
	case wire.Err:
		if set.Inputs == 0 {
			return fmt.Errorf("the device cannot report its size (INFO-IO? answered %s): set inputs and outputs in the settings",
				deviceError(wire.InfoIOQuery{}, r))
		}
		l.pre.Inputs, l.pre.Outputs = set.Inputs, set.Outputs
	}
	l.pre.Routing = make([]int, l.pre.Outputs)

	if set.Labels {
		if err := l.readLabels(); err != nil {
			return err
		}
	}
	for out := 1; out <= l.pre.Outputs; out++ {
		in, err := l.readRoute(out)
		if err != nil {
			return err
		}
		if in <= l.pre.Inputs {
			l.pre.Routing[out-1] = in
		}
	}
	return nil
}

// readLabels reads every input and output label. The first error code
// means the device has no labels: they stay unknown (nil).
func (l *link) readLabels() error {
	in := make([]string, l.pre.Inputs)
	out := make([]string, l.pre.Outputs)
	for _, stage := range []struct {
		n      int
		labels []string
	}{{wire.StageInput, in}, {wire.StageOutput, out}} {
		for port := 1; port <= len(stage.labels); port++ {
			q := wire.LabelQuery{Stage: stage.n, Port: port}
			_, r, err := l.exchange(q, func(f wire.Frame, r wire.Reply) bool {
				lb, ok := r.(wire.Label)
				return ok && l.ours(f) && lb.Stage == q.Stage && lb.Port == q.Port
			})
			if err != nil {
				return fmt.Errorf("%s: %w", "#"+q.CommandBody(), err)
			}
			lb, ok := r.(wire.Label)
			if !ok {
				return nil // an error code: no labels on this device
			}
			stage.labels[port-1] = lb.Text
		}
	}
	l.pre.InLabels, l.pre.OutLabels = in, out
	return nil
}

// readRoute asks which input output shows on the layer. An error code is
// returned as a *DeviceError.
func (l *link) readRoute(out int) (int, error) {
	q := wire.RouteQuery{Layer: l.m.set.Layer, Output: out}
	_, r, err := l.exchange(q, func(f wire.Frame, r wire.Reply) bool {
		rs, ok := r.(wire.RouteStatus)
		return ok && l.ours(f) && rs.Layer == q.Layer && rs.Output == out
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", "#"+q.CommandBody(), err)
	}
	switch r := r.(type) {
	case wire.Err:
		return 0, fmt.Errorf("%s: the device answered %w", "#"+q.CommandBody(), deviceError(q, r))
	case wire.RouteStatus:
		return r.Input, nil
	}
	return 0, nil
}

// serve runs the ready connection: routes asked for, routing polls and
// messages from the device, until the connection fails or ctx ends.
func (l *link) serve() error {
	poll := l.m.set.Poll.D()
	var (
		pollTimer *time.Timer
		pollC     <-chan time.Time // nil, never ready, when polling is off
	)
	if poll > 0 {
		pollTimer = time.NewTimer(poll)
		defer pollTimer.Stop()
		pollC = pollTimer.C
	}
	for {
		select {
		case <-l.ctx.Done():
			return l.ctx.Err()
		case r := <-l.reads:
			if err := l.handleRead(r); err != nil {
				return err
			}
		case req := <-l.sess.Cmds():
			if err := l.route(req); err != nil {
				return err
			}
		case <-pollC:
			if err := l.poll(); err != nil {
				return err
			}
			pollTimer.Reset(poll)
		}
	}
}

// handleRead handles a message that answers nothing.
func (l *link) handleRead(r readResult) error {
	if r.err != nil {
		return switcher.ReadError(r.err)
	}
	if l.ours(r.frame) {
		l.unsolicited(r.reply)
	}
	return nil
}

// unsolicited applies a message that answers no command: a route change
// the device announces (ROUTE on the layer, or a legacy VID/AUD/AV). Once
// ready, each change is reported as route_changed.
func (l *link) unsolicited(r wire.Reply) {
	var links []wire.Link
	switch r := r.(type) {
	case wire.RouteStatus:
		if r.Layer != l.m.set.Layer {
			return
		}
		links = []wire.Link{{Input: r.Input, Output: r.Output}}
	case wire.Switched:
		if !legacyKindRoutes(r.Kind, l.m.set.Layer) {
			return
		}
		links = r.Links
	default:
		return
	}
	for _, lk := range links {
		if lk.Output == wire.All {
			n := l.outputs()
			for out := 1; out <= n; out++ {
				l.apply(out, lk.Input)
			}
			continue
		}
		l.apply(lk.Output, lk.Input)
	}
}

// legacyKindRoutes reports whether a legacy switching message of kind
// (VID, AUD, AV) changes the layer.
func legacyKindRoutes(kind string, layer int) bool {
	switch layer {
	case 1:
		return kind == "VID" || kind == "AV"
	case 2:
		return kind == "AUD" || kind == "AV"
	}
	return false
}

func (l *link) outputs() int {
	if !l.ready {
		return l.pre.Outputs
	}
	_, outs := l.m.Size()
	return outs
}

// apply records that output shows input (0: disconnected), in the state
// being read or, once ready, in the driver's state, reporting a change.
// Ports beyond the device's size are ignored.
func (l *link) apply(output, input int) {
	if !l.ready {
		if output >= 1 && output <= len(l.pre.Routing) && input <= l.pre.Inputs {
			l.pre.Routing[output-1] = input
		}
		return
	}
	c := l.m.c
	c.Lock()
	st := c.StateLocked()
	changed := false
	if output >= 1 && output <= len(st.Routing) && input <= st.Inputs && st.Routing[output-1] != input {
		st.Routing[output-1] = input
		changed = true
	}
	c.Unlock()
	if changed {
		switcher.EmitRouteChanged(l.emit, output, input)
	}
}

// route carries out one Route request. It returns an error only when the
// connection must end (no reply, a failed read or write).
func (l *link) route(req *switcher.Request) error {
	m := l.m
	if !m.c.Accept(req) {
		return nil
	}
	cmd := wire.RouteSet{Layer: m.set.Layer, Output: req.Output, Input: req.Input}
	_, r, err := l.exchange(cmd, func(f wire.Frame, r wire.Reply) bool {
		rs, ok := r.(wire.RouteStatus)
		return ok && l.ours(f) && rs.Layer == cmd.Layer && rs.Output == cmd.Output && rs.Input == cmd.Input
	})
	switch {
	case err != nil && l.ctx.Err() == nil && errors.Is(err, ErrTimeout):
		req.Reply(m.c.Errorf(req, "%w; reconnecting", err))
		return err
	case err != nil:
		m.c.Lost(l.ctx, req, err)
		return err
	}
	switch r := r.(type) {
	case wire.Err:
		req.Reply(fmt.Errorf("kramer %s refused %s: %w", m.set.Address, m.c.What(req), deviceError(cmd, r)))
	default:
		l.apply(req.Output, req.Input)
		req.Reply(nil)
	}
	return nil
}

// poll reads the routing back, output by output, reporting changes the
// device did not announce. Routes asked for meanwhile go first. An error
// code for one output skips it until the next poll.
func (l *link) poll() error {
	_, outs := l.m.Size()
	for out := 1; out <= outs; out++ {
		select {
		case req := <-l.sess.Cmds():
			if err := l.route(req); err != nil {
				return err
			}
		default:
		}
		in, err := l.readRoute(out)
		var de *wire.DeviceError
		switch {
		case errors.As(err, &de):
			continue
		case err != nil:
			return err
		}
		l.apply(out, in)
	}
	return nil
}
