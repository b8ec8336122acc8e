package extron

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"understudy/drivers/extron/wire"

	"understudy/drivers"
	"understudy/drivers/extron/extronsim"
	"understudy/drivers/switcher"
	"understudy/units"
)

// Kind registers the driver as `kind: extron`, with its liveness check for
// probes and its simulator.
var Kind = drivers.Kind{
	Name:     "extron",
	Summary:  "Extron matrix switcher: DXP, CrossPoint, XTP, … (SIS over Telnet, TCP 23)",
	New:      New,
	Alive:    Alive,
	Simulate: extronsim.Simulate,
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
	Timeout units.Duration `yaml:"timeout"`
	// Poll is how often the routing is read back to notice ties made by
	// others (the front panel, another controller). nil: the default, 10s;
	// 0: never (the driver then only sends Q after KeepAlive idle). Write
	// "0s" in YAML.
	Poll *units.Duration `yaml:"poll"`
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts, which doubles from BackoffMin up to BackoffMax, with jitter.
	// Defaults 100ms and 5s.
	BackoffMin units.Duration `yaml:"backoff_min"`
	BackoffMax units.Duration `yaml:"backoff_max"`
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
	Code wire.ErrorCode
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
		d := units.Duration(DefaultPoll)
		s.Poll = &d
	} else {
		d := *s.Poll
		s.Poll = &d
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
	x := &Extron{set: s, plane: plane, keepAlive: keepAlive}
	x.c = switcher.NewCore(switcher.Config{
		Name:          "extron",
		Address:       addr,
		BackoffMin:    s.BackoffMin.D(),
		BackoffMax:    s.BackoffMax.D(),
		What:          x.tieWhat,
		ErrClosed:     ErrClosed,
		ErrOutOfRange: ErrOutOfRange,
	})
	return x, nil
}

func tiePlane(tie string) (wire.Plane, error) {
	switch tie {
	case "", "all":
		return wire.PlaneAll, nil
	case "video":
		return wire.PlaneVideo, nil
	case "audio":
		return wire.PlaneAudio, nil
	}
	return 0, fmt.Errorf("tie: %q is not all, video or audio", tie)
}

// normalizeAddress turns "host" or "host:port" into "host:port".
func normalizeAddress(a string) (string, error) {
	return switcher.NormalizeAddress(a, wire.DefaultPort)
}

// Extron is a connection to one Extron matrix switcher. It implements
// drivers.Router. Its methods are safe for use from any goroutine.
type Extron struct {
	set       Settings      // validated, defaults filled in
	plane     wire.Plane    // the plane ties are made on
	keepAlive time.Duration // KeepAlive, or shorter in tests

	c      *switcher.Core // state, route requests, reconnection
	banner string         // the copyright line of the last connection; guarded by c's lock
}

// Settings returns the settings in use, defaults filled in.
func (x *Extron) Settings() Settings {
	s := x.set
	p := *s.Poll
	s.Poll = &p
	return s
}

// state is what the driver knows of the device: Routing holds the input
// (from 1, 0 untied or unknown) on each output.
type state = switcher.State

// Start begins connecting in the background and returns at once.
func (x *Extron) Start(ctx context.Context, emit drivers.Emitter) {
	x.c.Start(ctx, emit, x.connect)
}

// Close ends the connection and waits for the driver's goroutines. A Route
// in flight returns an error wrapping ErrClosed.
func (x *Extron) Close() error { return x.c.Close() }

// Status reports the connection as the driver sees it now.
func (x *Extron) Status() drivers.Status { return x.c.Status() }

// Banner returns the copyright line the device sent on the last connection
// (model, firmware, part number), "" if none.
func (x *Extron) Banner() string {
	x.c.Lock()
	defer x.c.Unlock()
	return x.banner
}

// Size returns the port counts read from the device (0, 0 before): the
// video matrix for tie all and video, the audio matrix for tie audio.
func (x *Extron) Size() (inputs, outputs int) { return x.c.Size() }

// Routing returns the last known routing: element i is the input (from 1)
// on output i+1, 0 when untied or unknown; nil before the first read.
func (x *Extron) Routing() []int { return x.c.Routing() }

// InputLabels returns the input names read on connect, index i for input
// i+1; nil when the device does not answer the name commands.
func (x *Extron) InputLabels() []string { return x.c.InputLabels() }

// OutputLabels returns the output names read on connect, index i for output
// i+1; nil when the device does not answer the name commands.
func (x *Extron) OutputLabels() []string { return x.c.OutputLabels() }

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
	return x.c.Route(ctx, output, input)
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
	cmd    wire.Command
	port   int  // output for opRead and opTie, port for opName
	output bool // opName: an output's name
	req    *switcher.Request
}

type readResult struct {
	reply wire.Reply
	line  string
	err   error
}

// readPlane is the plane routing is read from.
func (x *Extron) readPlane() wire.Plane {
	if x.plane == wire.PlaneAudio {
		return wire.PlaneAudio
	}
	return wire.PlaneVideo
}

// affects reports whether a tie on plane p changes the plane the driver reads.
func (x *Extron) affects(p wire.Plane) bool {
	if x.readPlane() == wire.PlaneAudio {
		return p == wire.PlaneAll || p == wire.PlaneAudio
	}
	return p != wire.PlaneAudio
}

// login reads the banner and answers the password prompt. It returns once
// the device is ready for commands: after "Login …", or when the banner
// has been quiet for a moment without a prompt.
func (x *Extron) login(ctx context.Context, conn *wire.Conn, nc net.Conn, reads <-chan readResult) error {
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
				return switcher.ReadError(r.err)
			}
			switch m := r.reply.(type) {
			case wire.PasswordPrompt:
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
			case wire.LoginReply:
				return nil
			case wire.ErrorCode:
				return fmt.Errorf("the device answered %s on connect", m)
			case wire.Copyright:
				x.c.Lock()
				x.banner = r.line
				x.c.Unlock()
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

// connect runs one connection from dial to failure. It reports whether the
// connection became ready, and why it ended.
func (x *Extron) connect(ctx context.Context, emit drivers.Emitter) (ready bool, err error) {
	timeout := x.set.Timeout.D()
	poll := x.set.Poll.D()
	nc, err := switcher.Dial(ctx, x.set.Address, timeout)
	if err != nil {
		return false, err
	}
	conn := wire.NewConn(nc)
	reader := switcher.StartReader(func() (readResult, bool) {
		reply, line, err := conn.ReadReply()
		return readResult{reply, line, err}, err != nil
	})
	reads := reader.C

	sess := switcher.NewSession()
	var cur *op
	finish := func(err error) {
		if cur != nil && cur.req != nil {
			cur.req.Reply(err)
		}
		cur = nil
	}
	defer func() {
		x.c.Detach(sess)
		reader.Stop(conn.Close)
		if cur != nil && cur.req != nil {
			x.c.Lost(ctx, cur.req, err)
			cur = nil
		}
	}()

	if err := x.login(ctx, conn, nc, reads); err != nil {
		return false, err
	}

	var (
		queue    = []op{{kind: opInfo, cmd: wire.Info{}}}
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
			if output >= 1 && output <= len(pre.Routing) {
				pre.Routing[output-1] = input
			}
			return
		}
		x.c.Lock()
		routing := x.c.StateLocked().Routing
		changed := output >= 1 && output <= len(routing) && routing[output-1] != input
		if changed {
			routing[output-1] = input
		}
		x.c.Unlock()
		if changed {
			switcher.EmitRouteChanged(emit, output, input)
		}
	}
	deviceErr := func(o *op, code wire.ErrorCode) error {
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
				case req := <-sess.Cmds():
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
				x.c.Commit(pre, sess)
				nextPoll = time.Now().Add(poll)
				x.c.EmitConnected(emit)
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
		var cmds chan *switcher.Request
		if ready && cur == nil {
			cmds = sess.Cmds()
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
					finish(x.c.Errorf(cur.req, "%w within %s; reconnecting", ErrTimeout, timeout))
				}
				return ready, fmt.Errorf("%w to %s within %s: the connection is dropped", ErrTimeout, sent, timeout)
			case cur == nil && poll > 0 && !polling && !now.Before(nextPoll):
				polling = true
				_, outs := x.Size()
				queue = append(queue, x.readOps(outs)...)
			case cur == nil && !now.Before(lastIO.Add(x.keepAlive)):
				queue = append(queue, op{kind: opKeepAlive, cmd: wire.Firmware{}})
			}

		case r := <-reads:
			if r.err != nil {
				return ready, switcher.ReadError(r.err)
			}
			lastIO = time.Now()
			// Messages a device sends unasked in verbose modes 1 and 3.
			switch m := r.reply.(type) {
			case wire.TieReply:
				if cur != nil && cur.kind == opTie && m.Output == cur.req.Output && m.Input == cur.req.Input {
					break // the reply to our tie
				}
				if x.affects(m.Plane) {
					setTie(m.Output, m.Input)
				}
				continue
			case wire.TieAllReply, wire.Qik:
				// Many outputs changed at once (a tie to all, a quick tie or a
				// preset from the panel): read them all back soon.
				if ready && !polling {
					polling = true
					_, outs := x.Size()
					queue = append(queue, x.readOps(outs)...)
				}
				continue
			case wire.PasswordPrompt:
				return ready, fmt.Errorf("%w: the device asked for the password again", ErrLogin)
			}
			if cur == nil {
				continue // a line nobody asked for: ignore it
			}
			code, isErr := r.reply.(wire.ErrorCode)
			switch cur.kind {
			case opTie:
				req := cur.req
				switch m := r.reply.(type) {
				case wire.TieReply:
					setTie(m.Output, m.Input)
					finish(nil)
				case wire.ErrorCode:
					derr := &DeviceError{Code: m}
					if m.Transient() {
						finish(x.c.Errorf(req, "%w", derr))
					} else {
						finish(fmt.Errorf("extron %s refused %s: %w", x.set.Address, x.c.What(req), derr))
					}
				}
			case opInfo:
				switch m := r.reply.(type) {
				case wire.InfoReply:
					ins, outs := m.VideoInputs, m.VideoOutputs
					if x.plane == wire.PlaneAudio && m.Audio {
						ins, outs = m.AudioInputs, m.AudioOutputs
					}
					if ins > MaxPorts || outs > MaxPorts {
						return ready, fmt.Errorf("the device reports %q: more than %d ports", r.line, MaxPorts)
					}
					pre = state{Inputs: ins, Outputs: outs, Routing: make([]int, outs)}
					for i := 1; i <= ins; i++ {
						queue = append(queue, op{kind: opName, cmd: wire.ReadName{Port: i}, port: i})
					}
					for o := 1; o <= outs; o++ {
						queue = append(queue, op{kind: opName, cmd: wire.ReadName{Output: true, Port: o}, port: o, output: true})
					}
					queue = append(queue, x.readOps(outs)...)
					cur = nil
				case wire.ErrorCode:
					return ready, deviceErr(cur, m)
				}
			case opName:
				switch {
				case isErr:
					// No names on this model: leave the labels nil.
					namesOK = false
					pre.InLabels, pre.OutLabels = nil, nil
					kept := queue[:0]
					for _, o := range queue {
						if o.kind != opName {
							kept = append(kept, o)
						}
					}
					queue = kept
				case namesOK && cur.output:
					pre.OutLabels = append(pre.OutLabels, r.line)
				case namesOK:
					pre.InLabels = append(pre.InLabels, r.line)
				}
				cur = nil
			case opRead:
				switch m := r.reply.(type) {
				case wire.Number:
					setTie(cur.port, int(m))
					cur = nil
				case wire.ErrorCode:
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
		ops = append(ops, op{kind: opRead, cmd: wire.ReadTie{Output: o, Plane: x.readPlane()}, port: o})
	}
	return ops
}

// startTie sends a Route's tie, or answers it at once when its context has
// ended or a port is out of range.
func (x *Extron) startTie(req *switcher.Request, send func(op) error) error {
	if !x.c.Accept(req) {
		return nil
	}
	return send(op{kind: opTie, cmd: wire.Tie{Input: req.Input, Output: req.Output, Plane: x.plane}, port: req.Output, req: req})
}
