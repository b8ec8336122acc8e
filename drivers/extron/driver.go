package extron

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

// Kind registers the driver as `kind: extron`.
var Kind = drivers.Kind{
	Name:    "extron",
	Summary: "Extron matrix switcher: DXP, CrossPoint, XTP, … (SIS over Telnet, TCP 23)",
	New:     New,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Address is "host" or "host:port"; the port is 23 unless given.
	Address string `yaml:"address"`
	// Password answers the device's "Password:" prompt (administrator or
	// user; both may tie). Empty: the device must not ask for one.
	Password string `yaml:"password"`
	// Tie is the plane routes act on: "all" (video and audio, "1*2!", the
	// default), "video" ("1*2%") or "audio" ("1*2$"). Routing is read back
	// from the video plane for all and video, the audio plane for audio.
	Tie string `yaml:"tie"`
	// Timeout bounds each command's reply, connecting, and the login.
	// Default 2s.
	Timeout config.Duration `yaml:"timeout"`
	// Poll is how often the routing is read back to notice ties made by
	// others (the front panel, another controller). nil: the default, 10s;
	// 0: never (the driver then only sends Q after KeepAlive idle). Write
	// "0s" in YAML.
	Poll *config.Duration `yaml:"poll"`
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin config.Duration `yaml:"backoff_min"`
	BackoffMax config.Duration `yaml:"backoff_max"`
}

// Default settings.
const (
	DefaultTimeout    = 2 * time.Second
	DefaultPoll       = 10 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	// KeepAlive is how long the connection may stay idle before the driver
	// sends Q (firmware version) to check it and to keep the device's port
	// timeout (5 minutes by default) from closing it. Polls shorter than
	// this are traffic enough.
	KeepAlive = 30 * time.Second
	// MaxPorts is the largest port count the driver accepts from a device
	// (SIS commands take up to three digits).
	MaxPorts = 999
	// maxSettle bounds how long the driver waits, after the banner went
	// quiet, for a password prompt before it sends its first command.
	maxSettle = 500 * time.Millisecond
)

// Errors a Route call can wrap; test for them with errors.Is, and for the
// device's error code with errors.As(err, new(*DeviceError)).
var (
	// ErrNotConnected is drivers.ErrNotConnected: the runtime retries.
	ErrNotConnected = drivers.ErrNotConnected
	// ErrOutOfRange is a refusal: a port beyond the device's size.
	ErrOutOfRange = drivers.Refusal("port out of range")
	// ErrTimeout: no reply within the timeout (the connection is redialled).
	ErrTimeout = errors.New("no reply")
	// ErrClosed: the driver was closed.
	ErrClosed = errors.New("driver closed")
	// ErrLogin: the device asked for a password that was missing or wrong.
	ErrLogin = errors.New("login failed")
)

// DeviceError is an error code the device answered a command with. It is a
// refusal (errors.Is(err, drivers.ErrRefused)) unless the code is transient
// (busy, timed out, too many connections), which the runtime retries.
type DeviceError struct {
	Code ErrorCode
}

func (e *DeviceError) Error() string { return e.Code.String() }

// Unwrap makes a non-transient code a drivers.ErrRefused.
func (e *DeviceError) Unwrap() error {
	if e.Code.Transient() {
		return nil
	}
	return drivers.ErrRefused
}

var _ drivers.Router = (*Extron)(nil)

// keepAlive is the KeepAlive of drivers made from now on; tests shorten it.
var keepAlive = KeepAlive

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("extron: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O.
func FromSettings(s Settings) (*Extron, error) {
	addr, err := normalizeAddress(s.Address)
	if err != nil {
		return nil, err
	}
	s.Address = addr
	plane, err := tiePlane(s.Tie)
	if err != nil {
		return nil, err
	}
	if s.Tie == "" {
		s.Tie = "all"
	}
	for i := 0; i < len(s.Password); i++ {
		if c := s.Password[i]; c < 0x20 || c == 0x7f {
			return nil, errors.New("password: control characters (line ends, tabs) cannot be sent at the prompt")
		}
	}
	if s.Poll == nil {
		d := config.Duration(DefaultPoll)
		s.Poll = &d
	} else {
		d := *s.Poll
		s.Poll = &d
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
		if *d.v == 0 {
			*d.v = config.Duration(d.def)
		}
	}
	if s.BackoffMax < s.BackoffMin {
		return nil, fmt.Errorf("backoff_max (%s) is less than backoff_min (%s)", s.BackoffMax, s.BackoffMin)
	}
	return &Extron{set: s, plane: plane, keepAlive: keepAlive, status: drivers.Status{Address: addr}}, nil
}

func tiePlane(tie string) (Plane, error) {
	switch tie {
	case "", "all":
		return PlaneAll, nil
	case "video":
		return PlaneVideo, nil
	case "audio":
		return PlaneAudio, nil
	}
	return 0, fmt.Errorf("tie: %q is not all, video or audio", tie)
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

// Extron is a connection to one Extron matrix switcher. It implements
// drivers.Router. Its methods are safe for use from any goroutine.
type Extron struct {
	set       Settings      // validated, defaults filled in
	plane     Plane         // the plane ties are made on
	keepAlive time.Duration // KeepAlive, or shorter in tests

	intended drivers.Intended // routes understudy set, compared after a reconnect

	mu      sync.Mutex
	status  drivers.Status
	st      state    // last state read from the device
	banner  string   // the copyright line of the last connection
	sess    *session // the ready connection, nil when there is none
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Settings returns the settings in use, defaults filled in.
func (x *Extron) Settings() Settings {
	s := x.set
	p := *s.Poll
	s.Poll = &p
	return s
}

// state is what the driver knows of the device.
type state struct {
	inputs, outputs int
	routing         []int // input (from 1, 0 untied or unknown) on each output; nil before the first read
	inLabels        []string
	outLabels       []string
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
func (x *Extron) Start(ctx context.Context, emit drivers.Emitter) {
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.started || x.closed {
		return
	}
	x.started = true
	x.status.Since = time.Now()
	ctx, x.cancel = context.WithCancel(ctx)
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		x.run(ctx, emit)
	}()
}

// Close ends the connection and waits for the driver's goroutines. A Route
// in flight returns an error wrapping ErrClosed.
func (x *Extron) Close() error {
	x.mu.Lock()
	x.closed = true
	cancel := x.cancel
	x.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	x.wg.Wait()
	return nil
}

// Status reports the connection as the driver sees it now.
func (x *Extron) Status() drivers.Status {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.status
}

// Banner returns the copyright line the device sent on the last connection
// (model, firmware, part number), "" if none.
func (x *Extron) Banner() string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.banner
}

// Size returns the port counts read from the device (0, 0 before): the
// video matrix for tie all and video, the audio matrix for tie audio.
func (x *Extron) Size() (inputs, outputs int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.st.inputs, x.st.outputs
}

// Routing returns the last known routing: element i is the input (from 1)
// on output i+1, 0 when untied or unknown; nil before the first read.
func (x *Extron) Routing() []int {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.st.routing == nil {
		return nil
	}
	return append([]int(nil), x.st.routing...)
}

// InputLabels returns the input names read on connect, index i for input
// i+1; nil when the device does not answer the name commands.
func (x *Extron) InputLabels() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.st.inLabels...)
}

// OutputLabels returns the output names read on connect, index i for output
// i+1; nil when the device does not answer the name commands.
func (x *Extron) OutputLabels() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.st.outLabels...)
}

func (x *Extron) tieWhat(output, input int) string {
	return fmt.Sprintf("tie output %d ← input %d", output, input)
}

// Route ties input to output (both from 1) on the configured plane and
// returns once the device confirmed the tie ("Out03 In07 All"). It fails at
// once when the driver is not connected or a port is out of range;
// otherwise with the device's error code (a *DeviceError), with ErrTimeout
// when no reply came within the timeout (the connection is then redialled),
// or with ctx's error.
func (x *Extron) Route(ctx context.Context, output, input int) error {
	what := fmt.Sprintf("extron %s: %s", x.set.Address, x.tieWhat(output, input))
	x.mu.Lock()
	s, closed, lastErr := x.sess, x.closed, x.status.LastError
	ins, outs := x.st.inputs, x.st.outputs
	x.mu.Unlock()
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
func (x *Extron) run(ctx context.Context, emit drivers.Emitter) {
	const (
		unreported = iota
		reportedUp
		reportedDown
	)
	reported := unreported
	attempt := 0
	for {
		wasReady, err := x.connect(ctx, emit)
		if wasReady {
			reported = reportedUp
			attempt = 0
		}
		if ctx.Err() != nil {
			x.setDown(ErrClosed.Error())
			return
		}
		x.setDown(err.Error())
		if reported != reportedDown {
			reported = reportedDown
			emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{
				"address": x.set.Address,
				"error":   err.Error(),
			}})
		}
		t := time.NewTimer(x.backoff(attempt))
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
func (x *Extron) setDown(why string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.status.Connected {
		x.status.Connected = false
		x.status.Since = time.Now()
	}
	x.status.LastError = why
}

// backoff returns the delay before reconnection attempt n (from 0): it
// doubles from BackoffMin up to BackoffMax, drawn at random from its upper
// half but never below BackoffMin.
func (x *Extron) backoff(n int) time.Duration {
	d := x.set.BackoffMin.D()
	for i := 0; i < n && d < x.set.BackoffMax.D(); i++ {
		d *= 2
	}
	d = min(d, x.set.BackoffMax.D())
	lo := max(d/2, x.set.BackoffMin.D())
	if d > lo {
		d = lo + rand.N(d-lo+1)
	}
	return d
}

// opKind is what a command on the wire is for.
type opKind int

const (
	opInfo      opKind = iota // I: the matrix size
	opName                    // Esc n NI / NO: a port's name
	opRead                    // n% / n$: an output's tie
	opTie                     // n*m!: a Route
	opKeepAlive               // Q: the idle check
)

type op struct {
	kind   opKind
	cmd    Command
	port   int  // output for opRead and opTie, port for opName
	output bool // opName: an output's name
	req    *request
}

type readResult struct {
	reply Reply
	line  string
	err   error
}

// readPlane is the plane routing is read from.
func (x *Extron) readPlane() Plane {
	if x.plane == PlaneAudio {
		return PlaneAudio
	}
	return PlaneVideo
}

// affects reports whether a tie on plane p changes the plane the driver reads.
func (x *Extron) affects(p Plane) bool {
	if x.readPlane() == PlaneAudio {
		return p == PlaneAll || p == PlaneAudio
	}
	return p != PlaneAudio
}

// login reads the banner and answers the password prompt. It returns once
// the device is ready for commands: after "Login …", or when the banner
// has been quiet for a moment without a prompt.
func (x *Extron) login(ctx context.Context, conn *Conn, nc net.Conn, reads <-chan readResult) error {
	timeout := x.set.Timeout.D()
	settle := min(timeout/4, maxSettle)
	hard := time.Now().Add(timeout)
	timer := time.NewTimer(settle)
	defer timer.Stop()
	pwSent := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-reads:
			if r.err != nil {
				if pwSent && errors.Is(r.err, io.EOF) {
					return fmt.Errorf("%w: the device closed the connection after the password was sent", ErrLogin)
				}
				return readError(r.err)
			}
			switch m := r.reply.(type) {
			case PasswordPrompt:
				if x.set.Password == "" {
					return fmt.Errorf("%w: the device asks for a password and none is configured", ErrLogin)
				}
				if pwSent {
					return fmt.Errorf("%w: the device refused the password (it asked for it again)", ErrLogin)
				}
				pwSent = true
				_ = nc.SetWriteDeadline(time.Now().Add(timeout))
				if err := conn.SendPassword(x.set.Password); err != nil {
					return err
				}
				timer.Reset(timeout)
			case LoginReply:
				return nil
			case ErrorCode:
				return fmt.Errorf("the device answered %s on connect", m)
			case Copyright:
				x.mu.Lock()
				x.banner = r.line
				x.mu.Unlock()
			}
			if !pwSent {
				// More banner: wait until it goes quiet, within the timeout.
				timer.Reset(max(0, min(settle, time.Until(hard))))
			}
		case <-timer.C:
			if pwSent {
				return fmt.Errorf("%w: no reply to the password within %s", ErrTimeout, timeout)
			}
			return nil // no prompt: the device is not password protected
		}
	}
}

func readError(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("connection closed by the device")
	}
	return fmt.Errorf("read: %w", err)
}

// connect runs one connection from dial to failure. It reports whether the
// connection became ready, and why it ended.
func (x *Extron) connect(ctx context.Context, emit drivers.Emitter) (ready bool, err error) {
	timeout := x.set.Timeout.D()
	poll := x.set.Poll.D()
	dialer := net.Dialer{Timeout: timeout}
	nc, err := dialer.DialContext(ctx, "tcp", x.set.Address)
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
			reply, line, err := conn.ReadReply()
			select {
			case reads <- readResult{reply, line, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	sess := &session{cmds: make(chan *request), done: make(chan struct{})}
	var cur *op
	finish := func(err error) {
		if cur != nil && cur.req != nil {
			cur.req.reply <- err
		}
		cur = nil
	}
	defer func() {
		x.mu.Lock()
		if x.sess == sess {
			x.sess = nil
		}
		x.mu.Unlock()
		close(sess.done)
		close(stop)
		_ = conn.Close()
		<-readerDone
		if cur != nil && cur.req != nil {
			w := x.tieWhat(cur.req.output, cur.req.input)
			if ctx.Err() != nil {
				finish(fmt.Errorf("extron %s: %s: %w", x.set.Address, w, ErrClosed))
			} else {
				finish(fmt.Errorf("extron %s: %s: connection lost: %w", x.set.Address, w, err))
			}
		}
	}()

	if err := x.login(ctx, conn, nc, reads); err != nil {
		return false, err
	}

	var (
		queue    = []op{{kind: opInfo, cmd: Info{}}}
		pre      state // read on connect, committed when complete
		namesOK  = true
		polling  bool
		nextPoll time.Time
		deadline time.Time // of cur
		lastIO   = time.Now()
	)
	send := func(o op) error {
		now := time.Now()
		_ = nc.SetWriteDeadline(now.Add(timeout))
		lastIO, deadline = now, now.Add(timeout)
		cur = &o
		return conn.Send(o.cmd)
	}
	// setTie records the input on an output (from 1) and reports a change.
	setTie := func(output, input int) {
		if !ready {
			if output >= 1 && output <= len(pre.routing) {
				pre.routing[output-1] = input
			}
			return
		}
		x.mu.Lock()
		changed := output >= 1 && output <= len(x.st.routing) && x.st.routing[output-1] != input
		if changed {
			x.st.routing[output-1] = input
		}
		x.mu.Unlock()
		if changed {
			emit(drivers.Event{Name: drivers.EventRouteChanged, Fields: map[string]any{"output": output, "input": input}})
		}
	}
	deviceErr := func(o *op, code ErrorCode) error {
		what := "reading the size (I)"
		switch o.kind {
		case opRead:
			what = fmt.Sprintf("reading the tie of output %d (%s)", o.port, o.cmd.Bytes())
		case opName:
			what = fmt.Sprintf("reading the name of port %d", o.port)
		}
		return fmt.Errorf("%s: the device answered %s", what, code)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()

	for {
		// Send what is next: a Route first, then queued reads.
		if cur == nil {
			if ready {
				select {
				case req := <-sess.cmds:
					if err := x.startTie(req, send); err != nil {
						return ready, err
					}
					continue
				default:
				}
			}
			switch {
			case len(queue) > 0:
				o := queue[0]
				queue = queue[1:]
				if err := send(o); err != nil {
					return ready, err
				}
			case !ready:
				ready = true
				x.commit(pre, sess)
				nextPoll = time.Now().Add(poll)
				emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": x.set.Address}})
				for _, ev := range x.intended.Differences(x.Routing()) {
					emit(ev)
				}
			case polling:
				polling = false
				nextPoll = time.Now().Add(poll)
			}
		}

		next := deadline
		if cur == nil {
			next = lastIO.Add(x.keepAlive)
			if poll > 0 && nextPoll.Before(next) {
				next = nextPoll
			}
		}
		timer.Reset(time.Until(next))
		var cmds chan *request
		if ready && cur == nil {
			cmds = sess.cmds
		}

		select {
		case <-ctx.Done():
			return ready, ctx.Err()

		case req := <-cmds:
			if err := x.startTie(req, send); err != nil {
				return ready, err
			}

		case <-timer.C:
			now := time.Now()
			switch {
			case cur != nil && !now.Before(deadline):
				sent := strconv.QuoteToASCII(string(cur.cmd.Bytes()))
				if cur.req != nil {
					finish(fmt.Errorf("extron %s: %s: %w within %s; reconnecting",
						x.set.Address, x.tieWhat(cur.req.output, cur.req.input), ErrTimeout, timeout))
				}
				return ready, fmt.Errorf("%w to %s within %s: the connection is dropped", ErrTimeout, sent, timeout)
			case cur == nil && poll > 0 && !polling && !now.Before(nextPoll):
				polling = true
				_, outs := x.Size()
				queue = append(queue, x.readOps(outs)...)
			case cur == nil && !now.Before(lastIO.Add(x.keepAlive)):
				queue = append(queue, op{kind: opKeepAlive, cmd: Firmware{}})
			}

		case r := <-reads:
			if r.err != nil {
				return ready, readError(r.err)
			}
			lastIO = time.Now()
			// Messages a device sends unasked in verbose modes 1 and 3.
			switch m := r.reply.(type) {
			case TieReply:
				if cur != nil && cur.kind == opTie && m.Output == cur.req.output && m.Input == cur.req.input {
					break // the reply to our tie
				}
				if x.affects(m.Plane) {
					setTie(m.Output, m.Input)
				}
				continue
			case TieAllReply, Qik:
				// Many outputs changed at once (a tie to all, a quick tie or a
				// preset from the panel): read them all back soon.
				if ready && !polling {
					polling = true
					_, outs := x.Size()
					queue = append(queue, x.readOps(outs)...)
				}
				continue
			case PasswordPrompt:
				return ready, fmt.Errorf("%w: the device asked for the password again", ErrLogin)
			}
			if cur == nil {
				continue // a line nobody asked for: ignore it
			}
			code, isErr := r.reply.(ErrorCode)
			switch cur.kind {
			case opTie:
				req := cur.req
				switch m := r.reply.(type) {
				case TieReply:
					setTie(m.Output, m.Input)
					x.intended.Set(m.Output, m.Input)
					finish(nil)
				case ErrorCode:
					derr := &DeviceError{Code: m}
					if m.Transient() {
						finish(fmt.Errorf("extron %s: %s: %w", x.set.Address, x.tieWhat(req.output, req.input), derr))
					} else {
						finish(fmt.Errorf("extron %s refused %s: %w", x.set.Address, x.tieWhat(req.output, req.input), derr))
					}
				}
			case opInfo:
				switch m := r.reply.(type) {
				case InfoReply:
					ins, outs := m.VideoInputs, m.VideoOutputs
					if x.plane == PlaneAudio && m.Audio {
						ins, outs = m.AudioInputs, m.AudioOutputs
					}
					if ins > MaxPorts || outs > MaxPorts {
						return ready, fmt.Errorf("the device reports %q: more than %d ports", r.line, MaxPorts)
					}
					pre = state{inputs: ins, outputs: outs, routing: make([]int, outs)}
					for i := 1; i <= ins; i++ {
						queue = append(queue, op{kind: opName, cmd: ReadName{Port: i}, port: i})
					}
					for o := 1; o <= outs; o++ {
						queue = append(queue, op{kind: opName, cmd: ReadName{Output: true, Port: o}, port: o, output: true})
					}
					queue = append(queue, x.readOps(outs)...)
					cur = nil
				case ErrorCode:
					return ready, deviceErr(cur, m)
				}
			case opName:
				switch {
				case isErr:
					// No names on this model: leave the labels nil.
					namesOK = false
					pre.inLabels, pre.outLabels = nil, nil
					kept := queue[:0]
					for _, o := range queue {
						if o.kind != opName {
							kept = append(kept, o)
						}
					}
					queue = kept
				case namesOK && cur.output:
					pre.outLabels = append(pre.outLabels, r.line)
				case namesOK:
					pre.inLabels = append(pre.inLabels, r.line)
				}
				cur = nil
			case opRead:
				switch m := r.reply.(type) {
				case Number:
					setTie(cur.port, int(m))
					cur = nil
				case ErrorCode:
					if !code.Transient() {
						return ready, deviceErr(cur, m)
					}
					cur = nil // busy: read it again next time
				}
			case opKeepAlive:
				cur = nil
			}
		}
	}
}

// readOps returns the commands that read the ties of outputs 1..n.
func (x *Extron) readOps(n int) []op {
	ops := make([]op, 0, n)
	for o := 1; o <= n; o++ {
		ops = append(ops, op{kind: opRead, cmd: ReadTie{Output: o, Plane: x.readPlane()}, port: o})
	}
	return ops
}

// startTie sends a Route's tie, or answers it at once when its context has
// ended or a port is out of range.
func (x *Extron) startTie(req *request, send func(op) error) error {
	what := x.tieWhat(req.output, req.input)
	if err := req.ctx.Err(); err != nil {
		req.reply <- fmt.Errorf("extron %s: %s: %w", x.set.Address, what, err)
		return nil
	}
	ins, outs := x.Size()
	if err := checkRange(req.output, req.input, ins, outs); err != nil {
		req.reply <- fmt.Errorf("extron %s: %s: %w", x.set.Address, what, err)
		return nil
	}
	return send(op{kind: opTie, cmd: Tie{Input: req.input, Output: req.output, Plane: x.plane}, port: req.output, req: req})
}

// commit makes the state read on a new connection the driver's state and
// the connection the one Route uses.
func (x *Extron) commit(pre state, s *session) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.st = pre
	x.sess = s
	x.status.Connected = true
	x.status.Since = time.Now()
	x.status.LastError = ""
}
