// Package kramersim is a Kramer matrix switcher simulator that speaks Kramer
// Protocol 3000 (drivers/kramer/wire) over TCP, for tests and demos.
//
// It serves any number of clients. Each command line ("#ROUTE 1,3,7\r") is
// answered as a device does ("~01@ROUTE 1,3,7 OK\r\n"), errors included
// ("~01@ROUTE ERR 003\r\n" for a port out of range, "~01@FOO ERR 002\r\n"
// for a command it does not have, "~01@ERR 001\r\n" for a line that is not
// a command). A route set by one client, or through the Go API as if from
// the front panel, is announced to the other clients ("~01@ROUTE 1,3,7\r\n")
// unless NoNotify is set. The simulator records every command and every
// applied route, and can inject faults: error codes, a connection dropped
// in the middle of a command, a silent device, all connections dropped.
//
// Ports are numbered from 1, on the wire and in the Go API.
package kramersim

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"understudy/drivers/kramer/wire"
	"understudy/drivers/simcore"
)

// Limits of the simulator.
const (
	// MaxLabel is the longest label, in bytes, the simulator keeps; longer
	// ones are cut on a character boundary.
	MaxLabel = 32
	// MaxRecords is how many commands and how many routes are kept; past
	// it, the oldest are forgotten.
	MaxRecords = 1 << 16
	// clientQueue is how many writes may wait for one client; a client that
	// reads slower than that is disconnected.
	clientQueue = 1024
)

// ErrClosed is returned by Serve and Listen after Close.
var ErrClosed = errors.New("kramersim: closed")

// Options configure a simulator. Zero values take the defaults.
type Options struct {
	Inputs, Outputs int    // default 8 each; at most wire.MaxPorts
	Machine         int    // machine number, default 1
	Model           string // MODEL? answer, default "VS-88UT"
	// Layers are the layers the matrix routes, default {1, 2} (video and
	// audio); ROUTE on another layer is ERR 003.
	Layers []int
	// InputLabels and OutputLabels give the first labels; the others are
	// "Input N" and "Output N".
	InputLabels, OutputLabels []string
	// NoInfoIO makes INFO-IO? answer ERR 002, as a device that cannot report
	// its size.
	NoInfoIO bool
	// NoLabels makes LABEL? answer ERR 002.
	NoLabels bool
	// NoNotify stops route changes from being announced to the other
	// clients (a device without those notifications).
	NoNotify bool
	// OmitOK answers a route with "ROUTE 1,3,7" instead of "ROUTE 1,3,7 OK".
	OmitOK bool
	// Banner, when set, is a line sent to every client on connect, before
	// anything else (as some devices greet).
	Banner string
}

// Command is one line the simulator received.
type Command struct {
	Time    time.Time
	Remote  string   // the client's address
	Line    string   // the line without its CR ("#ROUTE 1,3,7")
	Replies []string // the reply lines sent, without CR LF ("~01@ROUTE 1,3,7 OK"); none when dropped, silent or addressed elsewhere
}

// RouteRecord is one route the simulator applied.
type RouteRecord struct {
	Time                 time.Time
	Layer, Output, Input int    // Input 0 disconnected the output
	Remote               string // the client's address, or "panel"
}

// Sim is a simulated Kramer matrix. Its methods are safe for use from any
// goroutine.
type Sim struct {
	opts Options

	mu        sync.Mutex
	inLabels  []string
	outLabels []string
	routing   map[int][]int // layer → input (0 none) on each output, index output-1
	srv       *simcore.Server[*client]
	commands  simcore.Log[Command]
	routes    simcore.Log[RouteRecord]
	faults    simcore.Faults
	errCode   int
}

// client is one connection to the simulator.
type client struct {
	*simcore.Client
}

// New returns a simulator with the given options; it serves nothing until
// Serve or Listen. Port counts outside 1..wire.MaxPorts are clamped.
func New(o Options) *Sim {
	o.Inputs = clampPorts(o.Inputs)
	o.Outputs = clampPorts(o.Outputs)
	if o.Machine <= 0 || o.Machine > 99 {
		o.Machine = 1
	}
	if o.Model == "" {
		o.Model = "VS-88UT"
	}
	o.Model = cleanText(o.Model, 19)
	o.Banner = cleanText(o.Banner, 128)
	var layers []int
	for _, l := range o.Layers {
		if l >= 1 && l <= wire.MaxLayer && !slices.Contains(layers, l) {
			layers = append(layers, l)
		}
	}
	if len(layers) == 0 {
		layers = []int{1, 2}
	}
	o.Layers = layers
	s := &Sim{
		opts:      o,
		inLabels:  labels(o.InputLabels, o.Inputs, "Input"),
		outLabels: labels(o.OutputLabels, o.Outputs, "Output"),
		routing:   make(map[int][]int),
		commands:  simcore.Log[Command]{Max: MaxRecords, Clone: cloneCommand},
		routes:    simcore.Log[RouteRecord]{Max: MaxRecords},
	}
	s.powerOnLocked()
	s.srv = &simcore.Server[*client]{
		Name:      "kramersim",
		ErrClosed: ErrClosed,
		Mu:        &s.mu,
		Queue:     clientQueue,
		Open:      s.openLocked,
		Read:      s.read,
	}
	return s
}

func clampPorts(n int) int {
	switch {
	case n <= 0:
		return 8
	case n > wire.MaxPorts:
		return wire.MaxPorts
	}
	return n
}

func labels(given []string, n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		if i < len(given) {
			out[i] = cleanText(given[i], MaxLabel)
		} else {
			out[i] = prefix + " " + strconv.Itoa(i+1)
		}
	}
	return out
}

// cleanText replaces control characters and '|' with spaces, trims spaces
// and cuts s to max bytes.
func cleanText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '|' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	s = strings.TrimSpace(s)
	for len(s) > max {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return strings.TrimSpace(s)
}

// Listen listens on addr (e.g. "127.0.0.1:0") and serves in the background
// until Close. It returns the address listened on.
func (s *Sim) Listen(addr string) (net.Addr, error) { return s.srv.Listen(addr) }

// Serve serves clients from l until Close, then returns nil. It closes l.
func (s *Sim) Serve(l net.Listener) error { return s.srv.Serve(l) }

// openLocked makes the client of a new connection and greets it.
func (s *Sim) openLocked(cc *simcore.Client) *client {
	c := &client{Client: cc}
	if s.opts.Banner != "" && !s.faults.Silent() {
		s.queueLocked(c, []byte(s.opts.Banner+"\r\n"))
	}
	return c
}

// read handles a client's lines until its connection ends.
func (s *Sim) read(c *client) {
	kc := wire.NewConn(c.Conn)
	for {
		f, err := kc.ReadFrame()
		switch {
		case errors.Is(err, wire.ErrMalformed):
			// Not a command line; the stream is still in step.
			s.handleGarbage(c, err)
			continue
		case err != nil:
			return
		}
		s.handle(c, f)
	}
}

// queueLocked queues bytes for c, dropping a client that cannot keep up.
func (s *Sim) queueLocked(c *client, b []byte) {
	c.Send(b)
}

// replyLocked queues the replies for c and returns their lines.
func (s *Sim) replyLocked(c *client, rs ...wire.Reply) []string {
	var buf []byte
	lines := make([]string, 0, len(rs))
	for _, r := range rs {
		f := wire.ReplyFrame(s.opts.Machine, r)
		buf = append(buf, f.Bytes()...)
		lines = append(lines, f.String())
	}
	if len(buf) > 0 {
		s.queueLocked(c, buf)
	}
	return lines
}

func (s *Sim) recordLocked(cmd Command) { s.commands.Append(cmd) }

func cloneCommand(c Command) Command {
	c.Replies = append([]string(nil), c.Replies...)
	return c
}

// handleGarbage answers a line that is not a command with a syntax error.
func (s *Sim) handleGarbage(c *client, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := Command{Time: time.Now(), Remote: c.Remote, Line: "<" + err.Error() + ">"}
	defer func() { s.recordLocked(cmd) }()
	if s.faults.TakeDrop() {
		c.Close()
		return
	}
	if !s.faults.Silent() {
		cmd.Replies = s.replyLocked(c, wire.Err{Code: wire.CodeSyntax})
	}
}

// handle answers one line from c.
func (s *Sim) handle(c *client, f wire.Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := Command{Time: time.Now(), Remote: c.Remote, Line: f.String()}
	defer func() { s.recordLocked(cmd) }()
	if s.faults.TakeDrop() {
		c.Close()
		return
	}
	if s.faults.Silent() {
		return
	}
	if f.Reply {
		cmd.Replies = s.replyLocked(c, wire.Err{Code: wire.CodeSyntax})
		return
	}
	if f.Addressed && f.Machine != s.opts.Machine {
		return // for another machine on the bus
	}
	// Each command of a chain gets its own replies, in order.
	var replies []wire.Reply
	for _, piece := range strings.Split(f.Body, "|") {
		replies = append(replies, s.commandLocked(c, piece)...)
	}
	cmd.Replies = s.replyLocked(c, replies...)
}

// commandLocked carries out one command and returns its replies.
func (s *Sim) commandLocked(c *client, body string) []wire.Reply {
	k, err := wire.DecodeCommand(body)
	if err != nil {
		name, _, _ := strings.Cut(strings.TrimSpace(body), " ")
		return []wire.Reply{wire.Err{Command: strings.ToUpper(name), Code: wire.CodeSyntax}}
	}
	outOfRange := func(name string) []wire.Reply {
		return []wire.Reply{wire.Err{Command: name, Code: wire.CodeOutOfRange}}
	}
	switch k := k.(type) {
	case wire.Handshake:
		return []wire.Reply{wire.OK{}}
	case wire.RouteSet:
		if s.faults.TakeRefuse() {
			return []wire.Reply{wire.Err{Command: "ROUTE", Code: s.errCode}}
		}
		routing, ok := s.routing[k.Layer]
		if !ok || k.Input < 0 || k.Input > s.opts.Inputs || (k.Output != wire.All && (k.Output < 1 || k.Output > s.opts.Outputs)) {
			return outOfRange("ROUTE")
		}
		s.applyLocked(c, routing, k.Layer, k.Output, k.Input, c.Remote)
		return []wire.Reply{wire.RouteStatus{Layer: k.Layer, Output: k.Output, Input: k.Input, OK: !s.opts.OmitOK}}
	case wire.RouteQuery:
		routing, ok := s.routing[k.Layer]
		switch {
		case !ok || (k.Output != wire.All && (k.Output < 1 || k.Output > s.opts.Outputs)):
			return outOfRange("ROUTE?")
		case k.Output == wire.All:
			rs := make([]wire.Reply, len(routing))
			for i, in := range routing {
				rs[i] = wire.RouteStatus{Layer: k.Layer, Output: i + 1, Input: in}
			}
			return rs
		}
		return []wire.Reply{wire.RouteStatus{Layer: k.Layer, Output: k.Output, Input: routing[k.Output-1]}}
	case wire.InfoIOQuery:
		if s.opts.NoInfoIO {
			return []wire.Reply{wire.Err{Command: "INFO-IO?", Code: wire.CodeNotAvailable}}
		}
		return []wire.Reply{wire.IOCount{Inputs: s.opts.Inputs, Outputs: s.opts.Outputs}}
	case wire.ModelQuery:
		return []wire.Reply{wire.Model{Name: s.opts.Model}}
	case wire.LabelQuery:
		var labels []string
		switch k.Stage {
		case wire.StageInput:
			labels = s.inLabels
		case wire.StageOutput:
			labels = s.outLabels
		}
		switch {
		case s.opts.NoLabels:
			return []wire.Reply{wire.Err{Command: "LABEL?", Code: wire.CodeNotAvailable}}
		case k.Port < 1 || k.Port > len(labels):
			return outOfRange("LABEL?")
		}
		return []wire.Reply{wire.Label{Stage: k.Stage, Port: k.Port, On: true, Text: labels[k.Port-1]}}
	case wire.UnknownCommand:
		return []wire.Reply{wire.Err{Command: k.Name, Code: wire.CodeNotAvailable}}
	}
	return []wire.Reply{wire.Err{Code: wire.CodeSyntax}}
}

// applyLocked routes input to output (All: every output) on a layer,
// records it and announces it to every client but from (nil: all).
func (s *Sim) applyLocked(from *client, routing []int, layer, output, input int, remote string) {
	now := time.Now()
	first, last := output, output
	if output == wire.All {
		first, last = 1, len(routing)
	}
	for o := first; o <= last; o++ {
		routing[o-1] = input
		s.routeAppliedLocked(RouteRecord{Time: now, Layer: layer, Output: o, Input: input, Remote: remote})
	}
	if s.opts.NoNotify || s.faults.Silent() {
		return
	}
	note := wire.ReplyFrame(s.opts.Machine, wire.RouteStatus{Layer: layer, Output: output, Input: input}).Bytes()
	for c := range s.srv.ClientsLocked() {
		if c != from {
			s.queueLocked(c, note)
		}
	}
}

func (s *Sim) routeAppliedLocked(r RouteRecord) {
	s.routes.Append(r)
}

// Close stops serving, closes every listener and client connection, ends
// every subscription and waits for the simulator's goroutines.
func (s *Sim) Close() error {
	s.mu.Lock()
	s.srv.CloseLocked()
	s.routes.Close()
	s.commands.Close()
	s.mu.Unlock()
	s.srv.Wait()
	return nil
}

// Size returns the simulator's port counts.
func (s *Sim) Size() (inputs, outputs int) { return s.opts.Inputs, s.opts.Outputs }

// Layers returns the layers the simulator routes.
func (s *Sim) Layers() []int { return append([]int(nil), s.opts.Layers...) }

// Routing returns the routing of the first layer (video by default):
// element i is the input shown on output i+1, 0 when disconnected.
func (s *Sim) Routing() []int { return s.LayerRouting(s.opts.Layers[0]) }

// LayerRouting returns the routing of a layer, nil for a layer the
// simulator does not have.
func (s *Sim) LayerRouting(layer int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.routing[layer]
	if !ok {
		return nil
	}
	return append([]int(nil), r...)
}

// InputLabels returns the input labels, index i for input i+1.
func (s *Sim) InputLabels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.inLabels...)
}

// OutputLabels returns the output labels, index i for output i+1.
func (s *Sim) OutputLabels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.outLabels...)
}

// SetRoute routes input to output on every layer, as the front panel does
// with audio following video, and announces it to every client (unless
// NoNotify or silent). Input 0 disconnects the output.
func (s *Sim) SetRoute(output, input int) error {
	for _, l := range s.opts.Layers {
		if err := s.SetLayerRoute(l, output, input); err != nil {
			return err
		}
	}
	return nil
}

// SetLayerRoute routes input to output on one layer, as from the front
// panel in breakaway mode, and announces it to every client (unless
// NoNotify or silent).
func (s *Sim) SetLayerRoute(layer, output, input int) error {
	if output < 1 || output > s.opts.Outputs {
		return fmt.Errorf("kramersim: output %d out of range 1..%d", output, s.opts.Outputs)
	}
	if input < 0 || input > s.opts.Inputs {
		return fmt.Errorf("kramersim: input %d out of range 0..%d", input, s.opts.Inputs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	routing, ok := s.routing[layer]
	if !ok {
		return fmt.Errorf("kramersim: no layer %d (layers %v)", layer, s.opts.Layers)
	}
	s.applyLocked(nil, routing, layer, output, input, "panel")
	return nil
}

// Commands returns the lines received so far, oldest first.
func (s *Sim) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands.All()
}

// Routes returns the routes applied so far, oldest first.
func (s *Sim) Routes() []RouteRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes.All()
}

// Subscribe returns a channel that receives every route applied from now on,
// and a function that ends the subscription and closes the channel. The
// simulator never waits for a subscriber: records that do not fit in the
// channel's buffer are not delivered to it. Close ends all subscriptions.
func (s *Sim) Subscribe(buffer int) (<-chan RouteRecord, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes.Subscribe(buffer)
}

// SubscribeCommands is Subscribe for the lines received (see Commands).
func (s *Sim) SubscribeCommands(buffer int) (<-chan Command, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands.Subscribe(buffer)
}

// RefuseNext makes the simulator refuse the next n route commands (#ROUTE,
// from any client): it answers "ROUTE ERR 004" (not authorized) and leaves
// the routing as it is.
func (s *Sim) RefuseNext(n int) { s.RefuseNextWith(n, wire.CodeUnauthorized) }

// RefuseNextWith is RefuseNext answering "ROUTE ERR <code>" instead:
// wire.CodeBusy for a busy device, say.
func (s *Sim) RefuseNextWith(n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.RefuseNext(n)
	s.errCode = min(max(code, 0), 999)
}

// DropNext makes the simulator close the connection of the client that
// sends each of the next n lines, without replying or acting on it.
func (s *Sim) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.DropNext(n)
}

// Restart restarts the device as a power cycle would: every connection
// drops, the routing of every layer goes back to the power-on default
// (output n shows input n; outputs beyond the inputs show the last input),
// injected faults are gone, and new connections get the banner again.
// Labels stay (the device keeps them in its settings).
func (s *Sim) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv.DropLocked()
	s.powerOnLocked()
	s.faults.Reset()
}

// powerOnLocked sets the routing a device has after power-on.
func (s *Sim) powerOnLocked() {
	for _, l := range s.opts.Layers {
		r := make([]int, s.opts.Outputs)
		for i := range r {
			r[i] = min(i+1, s.opts.Inputs) // output n shows input n (or the last input)
		}
		s.routing[l] = r
	}
}

// SetSilent makes the simulator read lines but neither act on nor answer
// them, and send nothing at all (no banner, no announcements), like a hung
// device; false makes it answer again.
func (s *Sim) SetSilent(silent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.SetSilent(silent)
}

// DropConnections closes every client connection now.
func (s *Sim) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv.DropLocked()
}

// ClientCount returns the number of connected clients.
func (s *Sim) ClientCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv.LenLocked()
}
