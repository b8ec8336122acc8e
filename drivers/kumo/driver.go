package kumo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"understudy/drivers/kumo/wire"

	"understudy/drivers"
	"understudy/drivers/kumo/kumosim"
	"understudy/units"
)

// Kind registers the driver as `kind: kumo`, with its liveness check for
// probes and its simulator.
var Kind = drivers.Kind{
	Name:     "kumo",
	Summary:  "AJA KUMO SDI router (KUMO web interface, HTTP port 80)",
	New:      New,
	Alive:    Alive,
	Simulate: kumosim.Simulate,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Address is "host" or "host:port" (an http:// prefix is allowed); the
	// port is 80 unless given.
	Address string `yaml:"address"`
	// Timeout bounds each HTTP request, and the wait for a route to show
	// in the device's read-back. Default 2s.
	Timeout units.Duration `yaml:"timeout"`
	// Poll is how often the routing is read back while connected. Default 2s.
	Poll units.Duration `yaml:"poll"`
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin units.Duration `yaml:"backoff_min"`
	BackoffMax units.Duration `yaml:"backoff_max"`
	// Password is the KUMO's web password, needed only when its user
	// authentication is set to Login. The KUMO has no user names.
	Password string `yaml:"password"`
}

// Default settings.
const (
	DefaultTimeout    = 2 * time.Second
	DefaultPoll       = 2 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
)

// Errors a Route call can wrap; test for them with errors.Is.
var (
	// ErrNotConnected is drivers.ErrNotConnected: the runtime retries.
	ErrNotConnected = drivers.ErrNotConnected
	// ErrOutOfRange, ErrRefusedByDevice and ErrNotApplied are refusals
	// (errors.Is(err, drivers.ErrRefused)): the runtime does not retry them.
	ErrOutOfRange      = drivers.Refusal("port out of range")
	ErrRefusedByDevice = drivers.Refusal("refused")
	ErrNotApplied      = drivers.Refusal("not applied")
	ErrClosed          = errors.New("driver closed")
)

var _ drivers.Router = (*Kumo)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("kumo: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O.
func FromSettings(s Settings) (*Kumo, error) {
	addr, err := normalizeAddress(s.Address)
	if err != nil {
		return nil, err
	}
	s.Address = addr
	for _, d := range []struct {
		name string
		v    *units.Duration
		def  time.Duration
	}{
		{"timeout", &s.Timeout, DefaultTimeout},
		{"poll", &s.Poll, DefaultPoll},
		{"backoff_min", &s.BackoffMin, DefaultBackoffMin},
		{"backoff_max", &s.BackoffMax, DefaultBackoffMax},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%s: %s is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = units.Duration(d.def)
		}
	}
	if s.BackoffMax < s.BackoffMin {
		return nil, fmt.Errorf("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}
	return &Kumo{set: s, client: NewClient(addr, s.Timeout.D()), status: drivers.Status{Address: addr}}, nil
}

// normalizeAddress turns "host", "host:port" or "http://host[:port][/]"
// into "host:port".
func normalizeAddress(a string) (string, error) {
	orig := a
	a = strings.TrimSpace(a)
	if rest, ok := strings.CutPrefix(strings.ToLower(a), "http://"); ok {
		a = strings.TrimSuffix(a[len(a)-len(rest):], "/")
	}
	if a == "" {
		return "", errors.New("address is required (host or host:port)")
	}
	bad := fmt.Errorf("address %q: want host or host:port", orig)
	if strings.Contains(a, "://") {
		return "", bad
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		// No port: a name, an IPv4 address or a bare or bracketed IPv6 one.
		host, port = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]"), strconv.Itoa(wire.DefaultPort)
	}
	if host == "" || strings.ContainsAny(host, " /[]\t?#@") {
		return "", bad
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return "", bad
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("address %q: port must be a number from 1 to 65535", orig)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// Kumo is a connection to one KUMO router. It implements drivers.Router.
// Its methods are safe for use from any goroutine.
type Kumo struct {
	set    Settings // validated, defaults filled in
	client *Client

	mu      sync.Mutex
	status  drivers.Status
	st      state    // last state read from the device
	sess    *session // while connected: where Route hands its commands
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Settings returns the settings in use, defaults filled in.
func (k *Kumo) Settings() Settings { return k.set }

// state is what the driver knows of the device.
type state struct {
	inputs, outputs int
	routing         []int // source (from 1) on each destination, 0 when unknown; nil before the first read
	inLabels        []string
	outLabels       []string
	wholeList       bool // the routing is read in one request (ParamDestinationAll)
}

// session is one connected period: Route hands it commands.
type session struct {
	cmds chan *request // unbuffered: taken only between polls
	done chan struct{} // closed when the connection is lost
}

type request struct {
	ctx           context.Context
	output, input int // 1-based
	reply         chan error
}

// Start begins connecting in the background and returns at once.
func (k *Kumo) Start(ctx context.Context, emit drivers.Emitter) {
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.started || k.closed {
		return
	}
	k.started = true
	k.status.Since = time.Now()
	ctx, k.cancel = context.WithCancel(ctx)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		k.run(ctx, emit)
	}()
}

// Close stops the driver and waits for its goroutine. A Route in flight
// returns an error wrapping ErrClosed.
func (k *Kumo) Close() error {
	k.mu.Lock()
	k.closed = true
	cancel := k.cancel
	k.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	k.wg.Wait()
	k.client.Close()
	return nil
}

// Status reports the connection as the driver sees it now.
func (k *Kumo) Status() drivers.Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status
}

// Size returns the port counts read from the device (0, 0 before).
func (k *Kumo) Size() (inputs, outputs int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.st.inputs, k.st.outputs
}

// Routing returns the last known routing: element i is the source (from 1)
// on destination i+1, 0 when unknown; nil before the first read.
func (k *Kumo) Routing() []int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.st.routing == nil {
		return nil
	}
	return append([]int(nil), k.st.routing...)
}

// InputLabels returns the source names, index i for source i+1: the
// button's two lines joined by a space.
func (k *Kumo) InputLabels() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.st.inLabels...)
}

// OutputLabels returns the destination names, index i for destination i+1.
func (k *Kumo) OutputLabels() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.st.outLabels...)
}

// Route routes source input to destination output (both from 1) and
// returns once the device's read-back shows it. It fails at once, sending
// nothing, when the driver is not connected or a port is out of range;
// otherwise with the device's refusal (HTTP 403, an error in its reply),
// with ErrNotApplied when the read-back still shows another source after
// the timeout, with the device's HTTP error, with ErrNotConnected when the
// device stopped answering (the connection is then re-established), or with
// ctx's error.
func (k *Kumo) Route(ctx context.Context, output, input int) error {
	what := fmt.Sprintf("kumo %s: route output %d ← input %d", k.set.Address, output, input)
	k.mu.Lock()
	s, closed, lastErr := k.sess, k.closed, k.status.LastError
	ins, outs := k.st.inputs, k.st.outputs
	k.mu.Unlock()
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
		k.mu.Lock()
		closed = k.closed
		k.mu.Unlock()
		if closed {
			return fmt.Errorf("%s: %w", what, ErrClosed)
		}
		return fmt.Errorf("%s: %w (connection lost)", what, ErrNotConnected)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	// The connection goroutine always replies: its requests end with the
	// caller's context, the timeout or the driver.
	return <-req.reply
}

func checkRange(output, input, inputs, outputs int) error {
	if output < 1 || output > outputs || input < 1 || input > inputs {
		return fmt.Errorf("%w (the device has %d outputs and %d inputs)", ErrOutOfRange, outputs, inputs)
	}
	return nil
}

// run owns the connection: it connects, serves polls and routes, and
// reconnects with backoff until ctx ends.
func (k *Kumo) run(ctx context.Context, emit drivers.Emitter) {
	const (
		unreported = iota
		reportedUp
		reportedDown
	)
	reported := unreported
	attempt := 0
	for {
		err := k.connect(ctx)
		if err == nil {
			reported = reportedUp
			attempt = 0
			// connect has read the routing: Routing() shows the device's.
			emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": k.set.Address}})
			err = k.serve(ctx, emit)
		}
		k.client.Logout()
		if ctx.Err() != nil {
			k.setDown(ErrClosed.Error())
			return
		}
		k.setDown(err.Error())
		if reported != reportedDown {
			reported = reportedDown
			emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{
				"address": k.set.Address,
				"error":   err.Error(),
			}})
		}
		t := time.NewTimer(k.backoff(attempt))
		attempt++
		select {
		case <-ctx.Done():
			t.Stop()
			k.setDown(ErrClosed.Error())
			return
		case <-t.C:
		}
	}
}

// setDown records that there is no connection and why, and ends the
// session, failing the Route calls waiting on it.
func (k *Kumo) setDown(why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sess != nil {
		close(k.sess.done)
		k.sess = nil
	}
	if k.status.Connected {
		k.status.Connected = false
		k.status.Since = time.Now()
	}
	k.status.LastError = why
}

// backoff returns the delay before reconnection attempt n (from 0): it
// doubles from BackoffMin up to BackoffMax, drawn at random from its upper
// half but never below BackoffMin.
func (k *Kumo) backoff(n int) time.Duration {
	d := k.set.BackoffMin.D()
	for i := 0; i < n && d < k.set.BackoffMax.D(); i++ {
		d *= 2
	}
	d = min(d, k.set.BackoffMax.D())
	lo := max(d/2, k.set.BackoffMin.D())
	if d > lo {
		d = lo + rand.N(d-lo+1)
	}
	return d
}

// connect logs in when a password is set, reads the size, the names and
// the routing, and makes them the driver's state.
func (k *Kumo) connect(ctx context.Context) error {
	// A login that sets no cookie may be a wrong password or a router whose
	// authentication is off: the next request tells.
	var login error
	if k.set.Password != "" {
		if login = k.client.Login(ctx, k.set.Password); login != nil && !errors.Is(login, ErrNoSession) {
			return login
		}
	}
	ins, outs, err := k.readSize(ctx)
	if err != nil {
		var se *wire.StatusError
		switch {
		case !errors.As(err, &se) || se.Code != 404:
		case login != nil:
			err = fmt.Errorf("%w (%w)", err, login)
		case k.set.Password == "":
			err = fmt.Errorf("%w (if the KUMO's user authentication is on, set password)", err)
		}
		return err
	}
	st := state{inputs: ins, outputs: outs}
	if st.inLabels, err = k.readLabels(ctx, ins, wire.SourceLine); err != nil {
		return err
	}
	if st.outLabels, err = k.readLabels(ctx, outs, wire.DestinationLine); err != nil {
		return err
	}
	// The whole routing in one read when the firmware has it; else one read
	// per destination.
	list, err := k.client.RoutingList(ctx)
	switch {
	case err == nil && len(list) == outs:
		st.wholeList = true
		st.routing, err = checkRouting(list, ins)
		if err != nil {
			return err
		}
	case err == nil || errors.Is(err, wire.ErrNoRoutingList) || isAnswer(err):
		if st.routing, err = k.readEach(ctx, ins, outs); err != nil {
			return err
		}
	default:
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.st = st
	k.sess = &session{cmds: make(chan *request), done: make(chan struct{})}
	k.status.Connected = true
	k.status.Since = time.Now()
	k.status.LastError = ""
	return nil
}

// isAnswer reports whether err is the device's answer (an HTTP error or a
// reply that cannot be read) rather than no answer at all.
func isAnswer(err error) bool {
	var se *wire.StatusError
	return errors.As(err, &se) || errors.Is(err, wire.ErrMalformed)
}

var productSizeRe = regexp.MustCompile(`(\d{1,3})\s*[xX]\s*(\d{1,3})`)

// readSize reads the port counts of the current switching mode; a device
// that does not answer them is sized from its product name ("KUMO 16x04
// Matrix").
func (k *Kumo) readSize(ctx context.Context) (ins, outs int, err error) {
	count := func(param string) (int, error) {
		r, err := k.client.Get(ctx, param)
		if err != nil {
			return 0, err
		}
		n, err := r.Port(wire.MaxPorts)
		if err == nil && n == 0 {
			err = fmt.Errorf("kumo: %s is 0: %w", param, wire.ErrMalformed)
		}
		return n, err
	}
	ins, err = count(wire.ParamNumberOfSources)
	if err == nil {
		outs, err = count(wire.ParamNumberOfDestinations)
	}
	if err == nil || !isAnswer(err) {
		return ins, outs, err
	}
	r, perr := k.client.Get(ctx, wire.ParamProductID)
	if perr != nil {
		return 0, 0, err // the first error says more
	}
	m := productSizeRe.FindStringSubmatch(r.ValueName)
	if m == nil {
		return 0, 0, fmt.Errorf("%w; the product %q does not give its size either", err, wire.Clip(r.ValueName, 64))
	}
	ins, _ = strconv.Atoi(m[1])
	outs, _ = strconv.Atoi(m[2])
	if ins < 1 || ins > wire.MaxPorts || outs < 1 || outs > wire.MaxPorts {
		return 0, 0, fmt.Errorf("%w; the product %q gives no usable size", err, wire.Clip(r.ValueName, 64))
	}
	return ins, outs, nil
}

// readLabels reads the two name lines of n ports. A line the device
// answers with an HTTP error or an unreadable reply is left empty: names
// are for people, not worth a failed connection.
func (k *Kumo) readLabels(ctx context.Context, n int, id func(port, line int) string) ([]string, error) {
	labels := make([]string, n)
	for p := 1; p <= n; p++ {
		var lines [2]string
		for l := 1; l <= 2; l++ {
			r, err := k.client.Get(ctx, id(p, l))
			if err != nil {
				if isAnswer(err) {
					continue
				}
				return nil, err
			}
			lines[l-1] = r.Value
		}
		labels[p-1] = wire.Label(lines[0], lines[1])
	}
	return labels, nil
}

// readEach reads every destination's source, one request each.
func (k *Kumo) readEach(ctx context.Context, ins, outs int) ([]int, error) {
	routing := make([]int, outs)
	for o := 1; o <= outs; o++ {
		r, err := k.client.Get(ctx, wire.DestinationStatus(o))
		if err != nil {
			return nil, err
		}
		if routing[o-1], err = r.Port(ins); err != nil {
			return nil, err
		}
	}
	return routing, nil
}

// checkRouting checks that every source number is within the inputs.
func checkRouting(list []int, ins int) ([]int, error) {
	for i, v := range list {
		if v > ins {
			return nil, fmt.Errorf("kumo: destination %d shows source %d, but the device has %d: %w", i+1, v, ins, wire.ErrMalformed)
		}
	}
	return list, nil
}

// readRouting reads the routing as the connection found best.
func (k *Kumo) readRouting(ctx context.Context) ([]int, error) {
	k.mu.Lock()
	ins, outs, whole := k.st.inputs, k.st.outputs, k.st.wholeList
	k.mu.Unlock()
	if !whole {
		return k.readEach(ctx, ins, outs)
	}
	list, err := k.client.RoutingList(ctx)
	if err != nil {
		return nil, err
	}
	if len(list) != outs {
		return nil, fmt.Errorf("kumo: the routing now has %d destinations, not %d (switching mode changed?): %w", len(list), outs, wire.ErrMalformed)
	}
	return checkRouting(list, ins)
}

// serve runs one connected period: it polls the routing every Poll and
// carries out routes, one request at a time, until a poll fails or a route
// finds the device gone.
func (k *Kumo) serve(ctx context.Context, emit drivers.Emitter) error {
	k.mu.Lock()
	sess := k.sess
	k.mu.Unlock()
	poll := time.NewTimer(k.set.Poll.D())
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll.C:
			routing, err := k.readRouting(ctx)
			if err != nil {
				return fmt.Errorf("reading the routing: %w", err)
			}
			k.apply(routing, emit)
			poll.Reset(k.set.Poll.D())
		case req := <-sess.cmds:
			err, lost := k.route(ctx, req, emit)
			req.reply <- err
			if lost != nil {
				return lost
			}
		}
	}
}

// apply makes routing the known routing and reports each destination that
// changed.
func (k *Kumo) apply(routing []int, emit drivers.Emitter) {
	k.mu.Lock()
	var changed [][2]int
	for o, in := range routing {
		if o < len(k.st.routing) && k.st.routing[o] != in {
			k.st.routing[o] = in
			if in > 0 {
				changed = append(changed, [2]int{o + 1, in})
			}
		}
	}
	k.mu.Unlock()
	for _, c := range changed {
		emit(drivers.Event{Name: drivers.EventRouteChanged, Fields: map[string]any{"output": c[0], "input": c[1]}})
	}
}

// applyOne records that destination output shows source input.
func (k *Kumo) applyOne(output, input int, emit drivers.Emitter) {
	k.mu.Lock()
	routing := append([]int(nil), k.st.routing...)
	k.mu.Unlock()
	if output-1 < len(routing) {
		routing[output-1] = input
		k.apply(routing, emit)
	}
}

// route carries out one route: set, then read back until the device shows
// the new source or the timeout passes. It returns the caller's error, and
// lost when the device stopped answering (the connection is then dropped).
func (k *Kumo) route(ctx context.Context, req *request, emit drivers.Emitter) (err, lost error) {
	what := fmt.Sprintf("kumo %s: route output %d ← input %d", k.set.Address, req.output, req.input)
	if err := req.ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err), nil
	}
	ins, outs := k.Size()
	if err := checkRange(req.output, req.input, ins, outs); err != nil {
		return fmt.Errorf("%s: %w", what, err), nil
	}
	// Requests end with the driver, the caller's context or the timeout.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(req.ctx, cancel)
	defer stop()
	// fail classifies a request's error.
	fail := func(err error) (error, error) {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w", what, ErrClosed), nil
		case req.ctx.Err() != nil:
			return fmt.Errorf("%s: %w", what, req.ctx.Err()), nil
		case isAnswer(err):
			return fmt.Errorf("%s: %w", what, err), nil
		}
		return fmt.Errorf("%s: %w: connection lost: %w", what, ErrNotConnected, err), err
	}

	reply, err := k.client.Set(rctx, wire.DestinationStatus(req.output), strconv.Itoa(req.input))
	var se *wire.StatusError
	switch {
	case errors.As(err, &se) && se.Code == 403:
		locked := ""
		if r, lerr := k.client.Get(rctx, wire.DestinationLocked(req.output)); lerr == nil && strings.TrimSpace(r.Value) == "1" {
			locked = fmt.Sprintf(" (output %d is locked)", req.output)
		}
		return fmt.Errorf("%s %w: %w%s", what, ErrRefusedByDevice, err, locked), nil
	case errors.Is(err, wire.ErrMalformed):
		// A 200 OK with an unreadable body: the read-back tells.
	case err != nil:
		return fail(err)
	case reply.Failed():
		return fmt.Errorf("%s %w: the device answered error %q", what, ErrRefusedByDevice, wire.Clip(reply.Error, 200)), nil
	}

	// Read back until the device shows the new source, or the timeout.
	deadline := time.Now().Add(k.set.Timeout.D())
	wait := 20 * time.Millisecond
	for {
		r, err := k.client.Get(rctx, wire.DestinationStatus(req.output))
		if err != nil {
			if errors.Is(err, wire.ErrMalformed) && rctx.Err() == nil {
				return fmt.Errorf("%s: reading it back: %w", what, err), err
			}
			return fail(err)
		}
		shown, err := r.Port(ins)
		if err != nil {
			return fmt.Errorf("%s: reading it back: %w", what, err), err
		}
		k.applyOne(req.output, shown, emit)
		if shown == req.input {
			return nil, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s %w: the device still shows input %d after %s", what, ErrNotApplied, shown, k.set.Timeout), nil
		}
		t := time.NewTimer(min(wait, left))
		select {
		case <-rctx.Done():
			t.Stop()
			return fail(rctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
}
