package line

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"text/template"
	"time"

	"go.bug.st/serial"

	"understudy/drivers"
	"understudy/drivers/command"
)

// ErrClosed is wrapped by Do after Close.
var ErrClosed = errors.New("driver closed")

var _ drivers.Controller = (*Line)(nil)

// Line is a configured line-protocol device. It implements
// drivers.Controller. Its methods are safe for use from any goroutine; one
// goroutine (started by Start) owns the connection and carries the commands
// out one at a time.
type Line struct {
	set      Settings // validated, defaults filled in
	term     []byte   // Terminator, unescaped
	greeting *regexp.Regexp
	mode     *serial.Mode
	commands map[string]*compiled
	names    []string // sorted command names

	reqs     chan *request // unbuffered: taken by the owner goroutine
	done     chan struct{} // closed when the owner goroutine has ended
	doneOnce sync.Once

	// Owned by the owner goroutine.
	emit     drivers.Emitter
	failures int       // failed connection attempts or exchanges in a row
	nextDial time.Time // no connection attempt before this

	mu       sync.Mutex
	status   drivers.Status
	reported int     // what the last connection event said
	cur      *stream // the open connection (tcp, serial), nil when none
	started  bool
	closed   bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// What the last driver_connected / driver_disconnected event said.
const (
	unreported = iota
	reportedUp
	reportedDown
)

// request is one command on its way to the owner goroutine.
type request struct {
	ctx     context.Context
	what    string // "power_on", or `raw send "…"`
	data    []byte
	expect  *regexp.Regexp // nil: no reply awaited
	refuse  *regexp.Regexp
	timeout time.Duration
	reply   chan outcome // buffered 1
}

type outcome struct {
	result any
	err    error
}

// Settings returns the settings in use, defaults filled in.
func (d *Line) Settings() Settings { return d.set }

// Commands returns the names of the configured commands, sorted.
func (d *Line) Commands() []string { return append([]string(nil), d.names...) }

// Start starts the goroutine that owns the connection and returns at once.
// Nothing connects until the first command (the connection is made lazily).
func (d *Line) Start(ctx context.Context, emit drivers.Emitter) {
	if emit == nil {
		emit = func(drivers.Event) {}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.closed {
		return
	}
	d.started = true
	d.emit = emit
	d.status.Since = time.Now()
	ctx, d.cancel = context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.doneOnce.Do(func() { close(d.done) })
		d.run(ctx)
	}()
}

// Close ends the connection and waits for the driver's goroutines. A Do in
// flight returns an error wrapping ErrClosed.
func (d *Line) Close() error {
	d.mu.Lock()
	d.closed = true
	cancel := d.cancel
	d.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	d.wg.Wait()
	d.doneOnce.Do(func() { close(d.done) })
	return nil
}

// Status reports the connection as the driver sees it now: for tcp, whether
// the connection is up; for serial, whether the port is open; for udp,
// whether the last command that awaited a reply got one.
func (d *Line) Status() drivers.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// Check validates args without acting: the command exists and its template
// executes with args.args, or, when raw sends are allowed, send, expect and
// error are well formed.
func (d *Line) Check(args map[string]any) error {
	_, err := d.prepare(args)
	return err
}

// Do sends one command and, when the command expects a reply, reads one
// reply line. The result is {reply = line} plus the named groups of the
// command's expect regexp ({} when no reply is awaited). A reply matching
// the command's error regexp is a refusal (drivers.ErrRefused) in the
// device's words; one not matching expect is an error. Errors wrap
// drivers.ErrNotConnected only when nothing was sent.
func (d *Line) Do(ctx context.Context, args map[string]any) (any, error) {
	req, err := d.prepare(args)
	if err != nil {
		return nil, err
	}
	req.ctx = ctx
	d.mu.Lock()
	started, closed := d.started, d.closed
	d.mu.Unlock()
	switch {
	case closed:
		return nil, d.errorf(req, "%w", ErrClosed)
	case !started:
		return nil, d.errorf(req, "%w: the driver is not started", drivers.ErrNotConnected)
	}
	select {
	case d.reqs <- req:
	case <-d.done:
		return nil, d.errorf(req, "%w", ErrClosed)
	case <-ctx.Done():
		return nil, d.errorf(req, "%w: nothing was sent: %w", drivers.ErrNotConnected, ctx.Err())
	}
	select {
	case o := <-req.reply:
		return o.result, o.err
	case <-ctx.Done():
		// The owner goroutine honours ctx and replies at once; this is a
		// backstop for a write that cannot be interrupted (a stalled
		// serial port).
		t := time.NewTimer(d.set.Timeout.D())
		defer t.Stop()
		select {
		case o := <-req.reply:
			return o.result, o.err
		case <-t.C:
			return nil, d.errorf(req, "%w (the command may have been sent)", ctx.Err())
		}
	}
}

// allowedArgs are the keys Do and Check accept.
var allowedArgs = []string{"command", "args", "send", "expect", "error"}

// prepare validates args and renders the command.
func (d *Line) prepare(args map[string]any) (*request, error) {
	for k := range args {
		found := false
		for _, a := range allowedArgs {
			found = found || k == a
		}
		if !found {
			return nil, fmt.Errorf("unknown field %q (want command and args, or send, expect and error)", k)
		}
	}
	cmdV, hasCmd := args["command"]
	sendV, hasSend := args["send"]
	switch {
	case hasCmd && hasSend:
		return nil, errors.New("give command or send, not both")
	case hasCmd:
		return d.prepareCommand(cmdV, args)
	case hasSend:
		return d.prepareRaw(sendV, args)
	}
	return nil, fmt.Errorf("want a command (one of %s)", d.known())
}

func (d *Line) known() string {
	if len(d.names) == 0 {
		return "none configured"
	}
	return strings.Join(d.names, ", ")
}

func (d *Line) prepareCommand(cmdV any, args map[string]any) (*request, error) {
	name, ok := cmdV.(string)
	if !ok {
		return nil, fmt.Errorf("command must be a name, not %T", cmdV)
	}
	for _, k := range []string{"expect", "error"} {
		if _, ok := args[k]; ok {
			return nil, fmt.Errorf("%s comes from the command's settings; it goes with send (a raw send)", k)
		}
	}
	c, ok := d.commands[name]
	if !ok {
		return nil, fmt.Errorf("unknown command %q (known: %s)", name, d.known())
	}
	// prepare has refused every field but command and args by now.
	_, data, err := command.Parse(args)
	if err != nil {
		return nil, fmt.Errorf("command %s: %w", name, err)
	}
	if err := checkValues("args", data); err != nil {
		return nil, fmt.Errorf("command %s: %w", name, err)
	}
	text, err := c.send.ExpandLimit(data, MaxLine)
	if err != nil {
		return nil, fmt.Errorf("command %s: %s", name, templateError(err))
	}
	if text == "" {
		return nil, fmt.Errorf("command %s: renders to nothing to send", name)
	}
	req := &request{what: name, data: []byte(text), expect: c.expect, refuse: c.refuse, timeout: c.timeout, reply: make(chan outcome, 1)}
	if req.timeout == 0 {
		req.timeout = d.set.Timeout.D()
	}
	return req, nil
}

func (d *Line) prepareRaw(sendV any, args map[string]any) (*request, error) {
	if !d.set.Raw {
		return nil, errors.New("raw sends are off for this driver (set raw: true to allow them); use a named command")
	}
	if _, ok := args["args"]; ok {
		return nil, errors.New("args go with command, not with send")
	}
	send, ok := sendV.(string)
	if !ok || send == "" {
		return nil, errors.New("send must be the text to write to the device")
	}
	if len(send) > MaxLine {
		return nil, fmt.Errorf("send is longer than %d bytes", MaxLine)
	}
	req := &request{what: fmt.Sprintf("raw send %q", send), data: []byte(send), timeout: d.set.Timeout.D(), reply: make(chan outcome, 1)}
	for _, f := range []struct {
		key string
		re  **regexp.Regexp
	}{{"expect", &req.expect}, {"error", &req.refuse}} {
		v, ok := args[f.key]
		if !ok {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s must be a regexp string, not %T", f.key, v)
		}
		if s == "" {
			continue
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f.key, err)
		}
		*f.re = re
	}
	if req.refuse != nil && req.expect == nil {
		return nil, errors.New("error needs expect (a reply is read only when expect is set; expect = \".*\" accepts any reply)")
	}
	return req, nil
}

// checkValues refuses control characters in the policy's values, so that a
// value cannot end a command early and inject another one.
func checkValues(path string, v any) error {
	switch x := v.(type) {
	case string:
		for i := 0; i < len(x); i++ {
			if c := x[i]; c < 0x20 || c == 0x7f {
				return fmt.Errorf("%s holds a control character (%q), which could end the command early", path, c)
			}
		}
	case map[string]any:
		for k, e := range x {
			if err := checkValues(path+"."+k, e); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range x {
			if err := checkValues(fmt.Sprintf("%s[%d]", path, i+1), e); err != nil {
				return err
			}
		}
	}
	return nil
}

// templateError rewords the template's errors for the policy: a missing
// argument, a command too long to send, text/template's own message.
func templateError(err error) string {
	var mk *command.MissingKeyError
	if errors.As(err, &mk) {
		return fmt.Sprintf("args.%s is missing (the command's send uses {{.%s}})", mk.Key, mk.Key)
	}
	var tl *command.TooLongError
	if errors.As(err, &tl) {
		return fmt.Sprintf("renders to more than %d bytes", tl.Limit)
	}
	var ee template.ExecError
	if errors.As(err, &ee) && ee.Err != nil {
		return ee.Err.Error()
	}
	return err.Error()
}

// errorf formats an error about req: "address what: …".
func (d *Line) errorf(req *request, format string, a ...any) error {
	return fmt.Errorf("%s %s: "+format, append([]any{d.set.Address, req.what}, a...)...)
}

// notSent is the error for a command that was not sent: the runtime retries
// it (drivers.ErrNotConnected), unless the driver is closing.
func (d *Line) notSent(ctx context.Context, req *request, err error) outcome {
	if ctx.Err() != nil {
		return outcome{err: d.errorf(req, "%w", ErrClosed)}
	}
	return outcome{err: d.errorf(req, "%w: %w", drivers.ErrNotConnected, err)}
}

// judge turns a reply line into the command's outcome.
func (d *Line) judge(req *request, line string) outcome {
	if req.refuse != nil && req.refuse.MatchString(line) {
		return outcome{err: drivers.Refusal(fmt.Sprintf("%s refused %s: %s", d.set.Address, req.what, line))}
	}
	m := req.expect.FindStringSubmatch(line)
	if m == nil {
		return outcome{err: d.errorf(req, "unexpected reply %q (want %s)", line, req.expect)}
	}
	res := map[string]any{"reply": line}
	for i, name := range req.expect.SubexpNames() {
		if name != "" && i < len(m) {
			res[name] = m[i]
		}
	}
	return outcome{result: res}
}

// run is the owner goroutine: it carries out the commands one at a time and
// owns the connection.
func (d *Line) run(ctx context.Context) {
	var s *stream
	defer func() {
		if s != nil {
			s.close()
			d.setCur(nil)
		}
		d.mu.Lock()
		d.status.Connected = false
		d.status.LastError = ErrClosed.Error()
		d.mu.Unlock()
	}()
	for {
		var dead <-chan struct{}
		if s != nil {
			dead = s.in.dead
		}
		select {
		case <-ctx.Done():
			return
		case req := <-d.reqs:
			req.reply <- d.exec(ctx, &s, req)
		case <-dead:
			// The device closed the connection, or it failed, between
			// commands: report it; the next command connects again.
			d.lost(&s, s.in.readErr(), false)
		}
	}
}

// exec carries out one command.
func (d *Line) exec(ctx context.Context, sp **stream, req *request) outcome {
	if err := req.ctx.Err(); err != nil {
		return d.notSent(ctx, req, err)
	}
	// rctx ends with the request or with the driver.
	rctx, cancel := context.WithCancel(req.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	if d.set.Transport == UDP {
		return d.execUDP(ctx, rctx, req)
	}
	return d.execStream(ctx, rctx, sp, req)
}

// execStream carries out a command over the tcp connection or the serial
// port, connecting first when needed.
func (d *Line) execStream(ctx, rctx context.Context, sp **stream, req *request) outcome {
	if s := *sp; s != nil && s.in.isDead() {
		d.lost(sp, s.in.readErr(), false)
	}
	if *sp == nil {
		s, err := d.connect(rctx)
		if err != nil {
			return d.notSent(ctx, req, err)
		}
		*sp = s
	}
	s := *sp
	s.in.drain()
	n, err := s.write(rctx, req.data, d.set.Timeout.D())
	if err != nil {
		if ctx.Err() != nil {
			return outcome{err: d.errorf(req, "%w", ErrClosed)}
		}
		if n == 0 && req.ctx.Err() != nil {
			// Stopped before a byte was written: the connection is fine.
			return d.notSent(ctx, req, req.ctx.Err())
		}
		d.lost(sp, fmt.Errorf("write: %w", err), true)
		if n == 0 {
			return d.notSent(ctx, req, err)
		}
		return outcome{err: d.errorf(req, "connection lost while sending (%d of %d bytes written): %v", n, len(req.data), err)}
	}
	if req.expect == nil {
		d.succeeded()
		return outcome{result: map[string]any{}}
	}
	line, err := s.in.readLine(rctx, SplitLines(d.term), time.Now().Add(req.timeout))
	switch {
	case err == nil:
		d.succeeded()
		return d.judge(req, line)
	case ctx.Err() != nil:
		return outcome{err: d.errorf(req, "%w", ErrClosed)}
	case errors.Is(err, errNoReply):
		msg := fmt.Sprintf("no reply within %s", req.timeout)
		if d.set.Transport == TCP {
			// The stream is out of step with the commands: start afresh.
			d.lost(sp, errors.New(msg+"; reconnecting"), true)
		} else {
			d.setLastError(msg)
		}
		return outcome{err: d.errorf(req, "%s", msg)}
	case req.ctx.Err() != nil:
		return outcome{err: d.errorf(req, "sent, then stopped waiting for the reply: %w", req.ctx.Err())}
	default:
		d.lost(sp, err, true)
		return outcome{err: d.errorf(req, "sent, then the connection was lost: %v", err)}
	}
}

// connect opens the connection, after the backoff delay if the last attempt
// failed.
func (d *Line) connect(rctx context.Context) (*stream, error) {
	if wait := time.Until(d.nextDial); wait > 0 {
		d.mu.Lock()
		last := d.status.LastError
		d.mu.Unlock()
		if dl, ok := rctx.Deadline(); ok && dl.Before(d.nextDial) {
			return nil, fmt.Errorf("next attempt in %s (last error: %s)", wait.Round(time.Millisecond), last)
		}
		t := time.NewTimer(wait)
		select {
		case <-rctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting to connect again (last error: %s): %w", last, rctx.Err())
		case <-t.C:
		}
	}
	s, err := d.open(rctx)
	if err == nil && d.greeting != nil {
		if err = d.greet(rctx, s); err != nil {
			s.close()
		}
	}
	if err != nil {
		if rctx.Err() == nil {
			d.failed()
			d.setDown(err.Error())
		}
		return nil, err
	}
	d.setCur(s)
	d.setUp()
	return s, nil
}

// greet reads lines until one matches the greeting.
func (d *Line) greet(rctx context.Context, s *stream) error {
	deadline := time.Now().Add(d.set.Timeout.D())
	split := SplitLines(d.term)
	for {
		line, err := s.in.readLine(rctx, split, deadline)
		if errors.Is(err, errNoReply) {
			return fmt.Errorf("no greeting matching %s within %s", d.greeting, d.set.Timeout)
		}
		if err != nil {
			return fmt.Errorf("waiting for the greeting: %w", err)
		}
		if d.greeting.MatchString(line) {
			return nil
		}
	}
}

// lost closes the connection after err. A failure (as opposed to the device
// closing an idle connection) delays the next attempt.
func (d *Line) lost(sp **stream, err error, failure bool) {
	if s := *sp; s != nil {
		s.close()
		*sp = nil
		d.setCur(nil)
	}
	if failure {
		d.failed()
	}
	d.setDown(err.Error())
}

// failed counts a failure and sets when the next attempt may be made.
func (d *Line) failed() {
	d.nextDial = time.Now().Add(d.backoff(d.failures))
	d.failures++
}

// succeeded records an exchange that went through.
func (d *Line) succeeded() {
	d.failures = 0
	d.nextDial = time.Time{}
	if d.set.Transport == UDP {
		d.setUp()
		return
	}
	d.setLastError("")
}

// backoff returns the delay before attempt n+1 after n+1 failures (n from
// 0): it doubles from BackoffMin up to BackoffMax, drawn at random from its
// upper half but never below BackoffMin.
func (d *Line) backoff(n int) time.Duration {
	lo, hi := d.set.BackoffMin.D(), d.set.BackoffMax.D()
	b := lo
	for i := 0; i < n && b < hi; i++ {
		b *= 2
	}
	b = min(b, hi)
	floor := max(b/2, lo)
	if b > floor {
		b = floor + rand.N(b-floor+1)
	}
	return b
}

func (d *Line) setCur(s *stream) {
	d.mu.Lock()
	d.cur = s
	d.mu.Unlock()
}

func (d *Line) setLastError(why string) {
	d.mu.Lock()
	d.status.LastError = why
	d.mu.Unlock()
}

// setUp records that the device is reachable, with driver_connected when
// that is news.
func (d *Line) setUp() {
	d.mu.Lock()
	news := d.reported != reportedUp
	d.reported = reportedUp
	if !d.status.Connected {
		d.status.Connected = true
		d.status.Since = time.Now()
	}
	d.status.LastError = ""
	d.mu.Unlock()
	if news {
		d.emit(drivers.Event{Name: drivers.EventConnected, Fields: map[string]any{"address": d.set.Address}})
	}
}

// setDown records that the device is not reachable and why, with
// driver_disconnected when that is news (not for each failed retry).
func (d *Line) setDown(why string) {
	d.mu.Lock()
	news := d.reported != reportedDown
	d.reported = reportedDown
	if d.status.Connected {
		d.status.Connected = false
		d.status.Since = time.Now()
	}
	d.status.LastError = why
	d.mu.Unlock()
	if news {
		d.emit(drivers.Event{Name: drivers.EventDisconnected, Fields: map[string]any{"address": d.set.Address, "error": why}})
	}
}

// firstLine returns the first non-empty line of a datagram.
func firstLine(split bufio.SplitFunc, data []byte) string {
	for len(data) > 0 {
		adv, tok, _ := split(data, true)
		if tok != nil {
			return string(tok)
		}
		if adv <= 0 {
			break
		}
		data = data[adv:]
	}
	return ""
}
