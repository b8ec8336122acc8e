package kramer

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

// Kind registers the driver as `kind: kramer`.
var Kind = drivers.Kind{
	Name:    "kramer",
	Summary: "Kramer matrix switcher (Protocol 3000, TCP 5000)",
	New:     New,
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
	Timeout config.Duration `yaml:"timeout"`
	// Poll is how often the routing is read back to catch changes the
	// device did not announce; 0s turns polling off. Default 10s.
	Poll *config.Duration `yaml:"poll"`
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin config.Duration `yaml:"backoff_min"`
	BackoffMax config.Duration `yaml:"backoff_max"`
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
	case s.Layer < 0 || s.Layer > MaxLayer:
		return nil, fmt.Errorf("layer %d: want a number from 1 to %d (1 video, 2 audio, 3 data)", s.Layer, MaxLayer)
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
		if p.n < 0 || p.n > MaxPorts {
			return nil, fmt.Errorf("%s %d: want a number from 1 to %d", p.name, p.n, MaxPorts)
		}
	}
	if (s.Inputs == 0) != (s.Outputs == 0) {
		return nil, errors.New("inputs and outputs: give both, or neither (the device reports its size)")
	}
	if s.Poll == nil {
		p := config.Duration(DefaultPoll)
		s.Poll = &p
	} else {
		p := *s.Poll // the caller's value is not shared
		s.Poll = &p
	}
	for _, d := range []struct {
		name string
		v    *config.Duration
		def  time.Duration
	}{
		{"timeout", &s.Timeout, DefaultTimeout},
		{"poll", s.Poll, 0},
		{"backoff_min", &s.BackoffMin, DefaultBackoffMin},
		{"backoff_max", &s.BackoffMax, DefaultBackoffMax},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%s: %s is negative", d.name, *d.v)
		}
		if *d.v == 0 && d.def > 0 {
			*d.v = config.Duration(d.def)
		}
	}
	if s.BackoffMax < s.BackoffMin {
		return nil, fmt.Errorf("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}
	return &Matrix{set: s, status: drivers.Status{Address: addr}}, nil
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

// Matrix is a connection to one Kramer matrix switcher, routing one layer.
// It implements drivers.Router. Its methods are safe for use from any
// goroutine.
type Matrix struct {
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
func (m *Matrix) Settings() Settings {
	s := m.set
	p := *s.Poll
	s.Poll = &p
	return s
}

// state is what the driver knows of the device.
type state struct {
	inputs, outputs int
	routing         []int // input shown on each output (index output-1), 0 unknown or none; nil before the first read
	inLabels        []string
	outLabels       []string
}

// session is one ready connection: Route hands it commands.
type session struct {
	cmds chan *request // unbuffered: taken only between commands
	done chan struct{} // closed when the connection ends
}

type request struct {
	ctx           context.Context
	output, input int
	reply         chan error // buffered (1)
}

// Start begins connecting in the background and returns at once.
func (m *Matrix) Start(ctx context.Context, emit drivers.Emitter) {
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.closed {
		return
	}
	m.started = true
	m.status.Since = time.Now()
	ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.run(ctx, emit)
	}()
}

// Close ends the connection and waits for the driver's goroutines. A Route
// in flight returns an error wrapping ErrClosed.
func (m *Matrix) Close() error {
	m.mu.Lock()
	m.closed = true
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	m.wg.Wait()
	return nil
}

// Status reports the connection as the driver sees it now.
func (m *Matrix) Status() drivers.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// Size returns the port counts read from the device, or taken from the
// settings when the device cannot report them (0, 0 before connecting).
func (m *Matrix) Size() (inputs, outputs int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.inputs, m.st.outputs
}

// Routing returns the last known routing of the layer: element i is the
// input shown on output i+1, 0 when unknown or disconnected; nil before the
// first read.
func (m *Matrix) Routing() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.routing == nil {
		return nil
	}
	return append([]int(nil), m.st.routing...)
}

// InputLabels returns the input labels, index i for input i+1; nil unless
// the labels setting is on and the device answered LABEL?.
func (m *Matrix) InputLabels() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.st.inLabels...)
}

// OutputLabels returns the output labels, index i for output i+1; nil
// unless the labels setting is on and the device answered LABEL?.
func (m *Matrix) OutputLabels() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.st.outLabels...)
}

// Route sets output to show input (both from 1) on the configured layer and
// returns once the device confirmed it. It fails at once when the driver is
// not connected or a port is out of range; otherwise with the device's
// error code (a *DeviceError), with ErrTimeout when no reply came within
// the timeout (the connection is then redialled), or with ctx's error.
func (m *Matrix) Route(ctx context.Context, output, input int) error {
	what := fmt.Sprintf("kramer %s: route output %d ← input %d", m.set.Address, output, input)
	m.mu.Lock()
	s, closed, lastErr := m.sess, m.closed, m.status.LastError
	ins, outs := m.st.inputs, m.st.outputs
	m.mu.Unlock()
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
	// The connection goroutine always replies, within the timeout, or at
	// once when the connection or the driver ends.
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
func (m *Matrix) run(ctx context.Context, emit drivers.Emitter) {
	const (
		unreported = iota
		reportedUp
		reportedDown
	)
	reported := unreported
	attempt := 0
	for {
		wasReady, err := m.connect(ctx, emit)
		if wasReady {
			reported = reportedUp
			attempt = 0
		}
		if ctx.Err() != nil {
			m.setDown(ErrClosed.Error())
			return
		}
		m.setDown(err.Error())
		if reported != reportedDown {
			reported = reportedDown
			emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{
				"address": m.set.Address,
				"error":   err.Error(),
			}})
		}
		t := time.NewTimer(m.backoff(attempt))
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
func (m *Matrix) setDown(why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.status.Connected {
		m.status.Connected = false
		m.status.Since = time.Now()
	}
	m.status.LastError = why
}

// backoff returns the delay before reconnection attempt n (from 0): it
// doubles from BackoffMin up to BackoffMax, drawn at random from its upper
// half but never below BackoffMin.
func (m *Matrix) backoff(n int) time.Duration {
	d := m.set.BackoffMin.D()
	for i := 0; i < n && d < m.set.BackoffMax.D(); i++ {
		d *= 2
	}
	d = min(d, m.set.BackoffMax.D())
	lo := max(d/2, m.set.BackoffMin.D())
	if d > lo {
		d = lo + rand.N(d-lo+1)
	}
	return d
}

// readResult is one line from the device, decoded.
type readResult struct {
	frame Frame
	reply Reply
	err   error
}

// link is one connection from dial to failure, owned by the connection
// goroutine.
type link struct {
	m       *Matrix
	ctx     context.Context
	emit    drivers.Emitter
	nc      net.Conn
	conn    *Conn
	reads   chan readResult
	timeout time.Duration
	sess    *session
	ready   bool
	pre     state // what was read before the connection was ready
}

// connect runs one connection from dial to failure. It reports whether the
// connection became ready, and why it ended.
func (m *Matrix) connect(ctx context.Context, emit drivers.Emitter) (ready bool, err error) {
	timeout := m.set.Timeout.D()
	dialer := net.Dialer{Timeout: timeout}
	nc, err := dialer.DialContext(ctx, "tcp", m.set.Address)
	if err != nil {
		return false, err
	}
	l := &link{
		m: m, ctx: ctx, emit: emit, nc: nc, conn: NewConn(nc),
		reads: make(chan readResult), timeout: timeout,
		sess: &session{cmds: make(chan *request), done: make(chan struct{})},
	}
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		l.readLoop(stop)
	}()
	defer func() {
		m.mu.Lock()
		if m.sess == l.sess {
			m.sess = nil
		}
		m.mu.Unlock()
		close(l.sess.done)
		close(stop)
		_ = l.conn.Close()
		<-readerDone
	}()
	if err := l.prelude(); err != nil {
		return false, err
	}
	l.ready = true
	m.commit(l.pre, l.sess)
	emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": m.set.Address}})
	for _, ev := range m.intended.Differences(m.Routing()) {
		emit(ev)
	}
	return true, l.serve()
}

// readLoop reads and decodes the device's lines until the connection ends.
// Lines that are not device messages (an echo, a banner, noise) and
// messages addressed from other machines that do not decode are skipped.
func (l *link) readLoop(stop <-chan struct{}) {
	for {
		f, err := l.conn.ReadFrame()
		var r Reply
		switch {
		case errors.Is(err, ErrMalformed):
			continue
		case err == nil && !f.Reply:
			continue
		case err == nil:
			r, err = DecodeReply(f)
			if err != nil && !l.ours(f) {
				continue
			}
		}
		select {
		case l.reads <- readResult{frame: f, reply: r, err: err}:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// ours reports whether a device message comes from the configured
// machine: it carries that number, or none (older firmware).
func (l *link) ours(f Frame) bool { return !f.Addressed || f.Machine == l.m.set.Machine }

// readError turns a failed read into the reason the connection ends.
func readError(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("connection closed by the device")
	}
	return fmt.Errorf("read: %w", err)
}

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
func (l *link) exchange(cmd Command, answer func(Frame, Reply) bool) (Frame, Reply, error) {
	name, _, _ := strings.Cut(cmd.CommandBody(), " ")
	name = strings.TrimSuffix(name, "?")
	_ = l.nc.SetWriteDeadline(time.Now().Add(l.timeout))
	if err := l.conn.WriteCommand(l.address(), cmd); err != nil {
		return Frame{}, nil, err
	}
	t := time.NewTimer(l.timeout)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return Frame{}, nil, l.ctx.Err()
		case r := <-l.reads:
			if r.err != nil {
				return Frame{}, nil, readError(r.err)
			}
			if e, ok := r.reply.(Err); ok && l.ours(r.frame) && (e.Command == "" || strings.TrimSuffix(e.Command, "?") == name) {
				return r.frame, e, nil
			}
			if answer(r.frame, r.reply) {
				return r.frame, r.reply, nil
			}
			if l.ours(r.frame) {
				l.unsolicited(r.reply)
			}
		case <-t.C:
			return Frame{}, nil, fmt.Errorf("%w to %q within %s", ErrTimeout, "#"+cmd.CommandBody(), l.timeout)
		}
	}
}

// deviceError turns an Err reply to cmd into a *DeviceError.
func deviceError(cmd Command, e Err) *DeviceError {
	return &DeviceError{Command: cmd.CommandBody(), Code: e.Code}
}

// prelude checks the device answers as the configured machine and reads
// its size, labels and routing, into l.pre.
func (l *link) prelude() error {
	set := l.m.set
	// The handshake's answer tells which machine answered: any machine's
	// OK is taken, then checked.
	from, r, err := l.exchange(Handshake{}, func(f Frame, r Reply) bool {
		_, ok := r.(OK)
		return ok
	})
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if e, ok := r.(Err); ok {
		return fmt.Errorf("handshake: the device answered %s", deviceError(Handshake{}, e))
	}
	if !l.ours(from) {
		return fmt.Errorf("the device answered as machine %d, not %d: set machine: %d", from.Machine, set.Machine, from.Machine)
	}

	_, r, err = l.exchange(InfoIOQuery{}, func(f Frame, r Reply) bool {
		_, ok := r.(IOCount)
		return ok && l.ours(f)
	})
	if err != nil {
		return fmt.Errorf("INFO-IO?: %w", err)
	}
	switch r := r.(type) {
	case IOCount:
		if r.Inputs < 1 || r.Outputs < 1 {
			return fmt.Errorf("INFO-IO?: the device reports %d inputs and %d outputs", r.Inputs, r.Outputs)
		}
		l.pre.inputs, l.pre.outputs = r.Inputs, r.Outputs
	case Err:
		if set.Inputs == 0 {
			return fmt.Errorf("the device cannot report its size (INFO-IO? answered %s): set inputs and outputs in the settings",
				deviceError(InfoIOQuery{}, r))
		}
		l.pre.inputs, l.pre.outputs = set.Inputs, set.Outputs
	}
	l.pre.routing = make([]int, l.pre.outputs)

	if set.Labels {
		if err := l.readLabels(); err != nil {
			return err
		}
	}
	for out := 1; out <= l.pre.outputs; out++ {
		in, err := l.readRoute(out)
		if err != nil {
			return err
		}
		if in <= l.pre.inputs {
			l.pre.routing[out-1] = in
		}
	}
	return nil
}

// readLabels reads every input and output label. The first error code
// means the device has no labels: they stay unknown (nil).
func (l *link) readLabels() error {
	in := make([]string, l.pre.inputs)
	out := make([]string, l.pre.outputs)
	for _, stage := range []struct {
		n      int
		labels []string
	}{{StageInput, in}, {StageOutput, out}} {
		for port := 1; port <= len(stage.labels); port++ {
			q := LabelQuery{Stage: stage.n, Port: port}
			_, r, err := l.exchange(q, func(f Frame, r Reply) bool {
				lb, ok := r.(Label)
				return ok && l.ours(f) && lb.Stage == q.Stage && lb.Port == q.Port
			})
			if err != nil {
				return fmt.Errorf("%s: %w", "#"+q.CommandBody(), err)
			}
			lb, ok := r.(Label)
			if !ok {
				return nil // an error code: no labels on this device
			}
			stage.labels[port-1] = lb.Text
		}
	}
	l.pre.inLabels, l.pre.outLabels = in, out
	return nil
}

// readRoute asks which input output shows on the layer. An error code is
// returned as a *DeviceError.
func (l *link) readRoute(out int) (int, error) {
	q := RouteQuery{Layer: l.m.set.Layer, Output: out}
	_, r, err := l.exchange(q, func(f Frame, r Reply) bool {
		rs, ok := r.(RouteStatus)
		return ok && l.ours(f) && rs.Layer == q.Layer && rs.Output == out
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", "#"+q.CommandBody(), err)
	}
	switch r := r.(type) {
	case Err:
		return 0, fmt.Errorf("%s: the device answered %w", "#"+q.CommandBody(), deviceError(q, r))
	case RouteStatus:
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
		case req := <-l.sess.cmds:
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
		return readError(r.err)
	}
	if l.ours(r.frame) {
		l.unsolicited(r.reply)
	}
	return nil
}

// unsolicited applies a message that answers no command: a route change
// the device announces (ROUTE on the layer, or a legacy VID/AUD/AV). Once
// ready, each change is reported as route_changed.
func (l *link) unsolicited(r Reply) {
	var links []Link
	switch r := r.(type) {
	case RouteStatus:
		if r.Layer != l.m.set.Layer {
			return
		}
		links = []Link{{Input: r.Input, Output: r.Output}}
	case Switched:
		if !legacyKindRoutes(r.Kind, l.m.set.Layer) {
			return
		}
		links = r.Links
	default:
		return
	}
	for _, lk := range links {
		if lk.Output == All {
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
		return l.pre.outputs
	}
	_, outs := l.m.Size()
	return outs
}

// apply records that output shows input (0: disconnected), in the state
// being read or, once ready, in the driver's state, reporting a change.
// Ports beyond the device's size are ignored.
func (l *link) apply(output, input int) {
	if !l.ready {
		if output >= 1 && output <= len(l.pre.routing) && input <= l.pre.inputs {
			l.pre.routing[output-1] = input
		}
		return
	}
	m := l.m
	m.mu.Lock()
	changed := false
	if output >= 1 && output <= len(m.st.routing) && input <= m.st.inputs && m.st.routing[output-1] != input {
		m.st.routing[output-1] = input
		changed = true
	}
	m.mu.Unlock()
	if changed {
		l.emit(drivers.Event{Name: drivers.EventRouteChanged, Fields: map[string]any{"output": output, "input": input}})
	}
}

// route carries out one Route request. It returns an error only when the
// connection must end (no reply, a failed read or write).
func (l *link) route(req *request) error {
	m := l.m
	what := fmt.Sprintf("route output %d ← input %d", req.output, req.input)
	if err := req.ctx.Err(); err != nil {
		req.reply <- fmt.Errorf("kramer %s: %s: %w", m.set.Address, what, err)
		return nil
	}
	ins, outs := m.Size()
	if err := checkRange(req.output, req.input, ins, outs); err != nil {
		req.reply <- fmt.Errorf("kramer %s: %s: %w", m.set.Address, what, err)
		return nil
	}
	cmd := RouteSet{Layer: m.set.Layer, Output: req.output, Input: req.input}
	_, r, err := l.exchange(cmd, func(f Frame, r Reply) bool {
		rs, ok := r.(RouteStatus)
		return ok && l.ours(f) && rs.Layer == cmd.Layer && rs.Output == cmd.Output && rs.Input == cmd.Input
	})
	switch {
	case err != nil && l.ctx.Err() != nil:
		req.reply <- fmt.Errorf("kramer %s: %s: %w", m.set.Address, what, ErrClosed)
		return err
	case errors.Is(err, ErrTimeout):
		req.reply <- fmt.Errorf("kramer %s: %s: %w; reconnecting", m.set.Address, what, err)
		return err
	case err != nil:
		req.reply <- fmt.Errorf("kramer %s: %s: connection lost: %w", m.set.Address, what, err)
		return err
	}
	switch r := r.(type) {
	case Err:
		req.reply <- fmt.Errorf("kramer %s refused %s: %w", m.set.Address, what, deviceError(cmd, r))
	default:
		l.apply(req.output, req.input)
		m.intended.Set(req.output, req.input)
		req.reply <- nil
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
		case req := <-l.sess.cmds:
			if err := l.route(req); err != nil {
				return err
			}
		default:
		}
		in, err := l.readRoute(out)
		var de *DeviceError
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

// commit makes the state read on a new connection the driver's state and
// the connection the one Route uses.
func (m *Matrix) commit(pre state, s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = pre
	m.sess = s
	m.status.Connected = true
	m.status.Since = time.Now()
	m.status.LastError = ""
}
