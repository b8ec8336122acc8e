// Package videohubsim is a Blackmagic Videohub simulator that speaks the
// real Videohub Ethernet protocol (drivers/videohub/wire), for tests and for
// `understudy demo`.
//
// It serves any number of clients: each gets the status dump on connect, and
// every change (a route, a label, a lock, set by a client or through the Go
// API as if from the front panel) is pushed to all of them. Set commands are
// answered ACK or NAK as a device does; a route onto an output locked by
// another client is ACKed and followed by an update showing the route
// unchanged. The simulator records every command and every applied route,
// and can inject faults: NAKs, a connection dropped in the middle of a
// command, a silent device, all connections dropped.
//
// The Go API numbers ports from 1, as the rest of understudy does; the wire
// numbers them from 0.
package videohubsim

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"understudy/drivers/simcore"
	"understudy/drivers/videohub/wire"
)

// Limits of the simulator.
const (
	// MaxLabel is the longest label, in bytes, the simulator keeps; longer
	// ones are cut (on a character boundary), so that a full label dump of
	// wire.MaxPorts ports stays within wire.MaxBlockSize.
	MaxLabel = 48
	// MaxRecords is how many commands and how many routes are kept; past
	// it, the oldest are forgotten.
	MaxRecords = 1 << 16
	// clientQueue is how many messages may wait to be written to one
	// client; a client that reads slower than that is disconnected.
	clientQueue = 1024
)

// ErrClosed is returned by Serve and Listen after Close.
var ErrClosed = errors.New("videohubsim: closed")

// Options configure a simulator. Zero values take the defaults.
type Options struct {
	Inputs, Outputs int    // default 16 each; at most wire.MaxPorts
	Model           string // default "Blackmagic Smart Videohub"
	// InputLabels and OutputLabels give the first labels; the others are
	// "Input N" and "Output N" (N from 1).
	InputLabels, OutputLabels []string
	// OmitEndPrelude leaves END PRELUDE out of the status dump, as older
	// firmware does.
	OmitEndPrelude bool
	// ProtocolVersion is the PROTOCOL PREAMBLE version; default "2.8".
	ProtocolVersion string
}

// Command is one block the simulator received.
type Command struct {
	Time   time.Time
	Remote string // the client's address
	Header string // without ':'; "" when the block could not be parsed
	Lines  []string
	Reply  string // "ACK", "NAK", or "" when no reply was sent (dropped, silent)
}

// RouteRecord is one route the simulator applied.
type RouteRecord struct {
	Time          time.Time
	Output, Input int    // from 1
	Remote        string // the client's address, or "panel" for SetRoute
}

// Sim is a simulated Videohub. Its methods are safe for use from any
// goroutine.
type Sim struct {
	opts  Options
	panel *client // owner of locks set with LockOutput

	mu        sync.Mutex
	inLabels  []string
	outLabels []string
	routing   []int     // input (from 0) shown on each output
	locks     []*client // lock owner of each output, nil when unlocked
	srv       *simcore.Server[*client]
	commands  simcore.Log[Command]
	routes    simcore.Log[RouteRecord]
	faults    simcore.Faults // fail: NAK the next set commands
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
	if o.Model == "" {
		o.Model = "Blackmagic Smart Videohub"
	}
	if o.ProtocolVersion == "" {
		o.ProtocolVersion = "2.8"
	}
	o.Model = cleanText(o.Model, 128)
	o.ProtocolVersion = cleanText(o.ProtocolVersion, 16)
	s := &Sim{
		opts:      o,
		panel:     &client{simcore.NewClient("panel", nil, 0)},
		inLabels:  labels(o.InputLabels, o.Inputs, "Input"),
		outLabels: labels(o.OutputLabels, o.Outputs, "Output"),
		routing:   make([]int, o.Outputs),
		locks:     make([]*client, o.Outputs),
		commands:  simcore.Log[Command]{Max: MaxRecords, Clone: cloneCommand},
		routes:    simcore.Log[RouteRecord]{Max: MaxRecords},
	}
	s.powerOnLocked()
	s.srv = &simcore.Server[*client]{
		Name:      "videohubsim",
		ErrClosed: ErrClosed,
		Mu:        &s.mu,
		Queue:     clientQueue,
		Open: func(cc *simcore.Client) *client {
			c := &client{cc}
			if !s.faults.Silent() {
				s.sendLocked(c, s.preludeLocked(c)...)
			}
			return c
		},
		Read: s.read,
		Gone: s.removeLocked,
	}
	return s
}

func clampPorts(n int) int {
	switch {
	case n <= 0:
		return 16
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

// cleanText replaces control characters with spaces and cuts s to max bytes.
func cleanText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	for len(s) > max {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// Listen listens on addr (e.g. "127.0.0.1:0") and serves in the background
// until Close. It returns the address listened on.
func (s *Sim) Listen(addr string) (net.Addr, error) { return s.srv.Listen(addr) }

// Serve serves clients from l until Close, then returns nil. It closes l.
func (s *Sim) Serve(l net.Listener) error { return s.srv.Serve(l) }

// read handles a client's commands until its connection ends.
func (s *Sim) read(c *client) {
	vc := wire.NewConn(c.Conn)
	for {
		b, err := vc.ReadBlock()
		if err != nil {
			if errors.Is(err, wire.ErrMalformed) {
				// One unparsable block; the stream is still framed.
				s.mu.Lock()
				s.recordLocked(Command{Time: time.Now(), Remote: c.Remote, Reply: s.replyLocked(c, false)})
				s.mu.Unlock()
				continue
			}
			return
		}
		s.handle(c, b)
	}
}

// removeLocked releases the locks of a client gone.
func (s *Sim) removeLocked(c *client) {
	var freed []int
	for i, owner := range s.locks {
		if owner == c {
			s.locks[i] = nil
			freed = append(freed, i)
		}
	}
	if len(freed) > 0 {
		s.broadcastLocksLocked(freed)
	}
}

// sendLocked queues messages for c, dropping a client that cannot keep up.
func (s *Sim) sendLocked(c *client, ms ...wire.Message) {
	var buf []byte
	for _, m := range ms {
		buf = append(buf, m.Block().Dump()...)
	}
	c.Send(buf)
}

// replyLocked sends ACK or NAK to c (unless silent) and returns what it sent.
func (s *Sim) replyLocked(c *client, ok bool, then ...wire.Message) string {
	if s.faults.Silent() {
		return ""
	}
	if ok {
		s.sendLocked(c, append([]wire.Message{wire.Ack{}}, then...)...)
		return "ACK"
	}
	s.sendLocked(c, wire.Nak{})
	return "NAK"
}

func (s *Sim) recordLocked(cmd Command) { s.commands.Append(cmd) }

func cloneCommand(c Command) Command {
	c.Lines = append([]string(nil), c.Lines...)
	return c
}

// handle answers one block from c.
func (s *Sim) handle(c *client, b wire.Block) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := Command{Time: time.Now(), Remote: c.Remote, Header: b.Header, Lines: append([]string(nil), b.Lines...)}
	defer func() { s.recordLocked(cmd) }()
	if s.faults.TakeDrop() {
		c.Close()
		return
	}
	if s.faults.Silent() {
		return
	}
	m, err := wire.Decode(b)
	if err != nil {
		cmd.Reply = s.replyLocked(c, false)
		return
	}
	request := len(b.Lines) == 0
	switch m := m.(type) {
	case wire.Ping:
		cmd.Reply = s.replyLocked(c, true)
	case wire.Preamble, wire.Device, wire.Configuration:
		if request {
			cmd.Reply = s.replyLocked(c, true, s.dumpLocked(c, b.Header))
		} else {
			cmd.Reply = s.replyLocked(c, false) // read-only here
		}
	case wire.InputLabels, wire.OutputLabels, wire.OutputLocks, wire.OutputRouting:
		if request {
			cmd.Reply = s.replyLocked(c, true, s.dumpLocked(c, b.Header))
			return
		}
		if s.faults.TakeRefuse() {
			cmd.Reply = s.replyLocked(c, false)
			return
		}
		cmd.Reply = s.setLocked(c, m)
	default: // ACK, NAK, END PRELUDE and unknown blocks are not commands
		cmd.Reply = s.replyLocked(c, false)
	}
}

// setLabels sets labels (all ports in range, or none) and returns the
// update to broadcast, cleaned as stored.
func setLabels(labels []string, set []wire.Label) ([]wire.Label, bool) {
	for _, l := range set {
		if l.Port >= len(labels) {
			return nil, false
		}
	}
	update := make([]wire.Label, 0, len(set))
	for _, l := range set {
		labels[l.Port] = cleanText(l.Text, MaxLabel)
		update = append(update, wire.Label{Port: l.Port, Text: labels[l.Port]})
	}
	return update, true
}

// replyAndBroadcastLocked answers ACK and sends the update to every client,
// or answers NAK when !ok.
func (s *Sim) replyAndBroadcastLocked(c *client, ok bool, update wire.Message) string {
	reply := s.replyLocked(c, ok)
	if ok {
		s.broadcastLocked(update)
	}
	return reply
}

// setLocked carries out a set command: all lines valid, or NAK and nothing
// changes.
func (s *Sim) setLocked(c *client, m wire.Message) string {
	switch m := m.(type) {
	case wire.InputLabels:
		update, ok := setLabels(s.inLabels, m)
		return s.replyAndBroadcastLocked(c, ok, wire.InputLabels(update))
	case wire.OutputLabels:
		update, ok := setLabels(s.outLabels, m)
		return s.replyAndBroadcastLocked(c, ok, wire.OutputLabels(update))
	case wire.OutputLocks:
		for _, l := range m {
			if l.Port >= s.opts.Outputs || l.State == wire.Locked {
				return s.replyLocked(c, false)
			}
		}
		var ports []int
		for _, l := range m {
			owner := s.locks[l.Port]
			switch l.State {
			case wire.Owned:
				if owner == nil {
					s.locks[l.Port] = c
				}
			case wire.Unlocked:
				if owner == c {
					s.locks[l.Port] = nil
				}
			case wire.ForceUnlock:
				s.locks[l.Port] = nil
			}
			ports = append(ports, l.Port)
		}
		reply := s.replyLocked(c, true)
		s.broadcastLocksLocked(ports)
		return reply
	case wire.OutputRouting:
		for _, r := range m {
			if r.Output >= s.opts.Outputs || r.Input >= s.opts.Inputs {
				return s.replyLocked(c, false)
			}
		}
		now := time.Now()
		var outputs []int
		for _, r := range m {
			if owner := s.locks[r.Output]; owner != nil && owner != c {
				outputs = append(outputs, r.Output) // locked by another client: unchanged
				continue
			}
			s.routing[r.Output] = r.Input
			s.routeAppliedLocked(RouteRecord{Time: now, Output: r.Output + 1, Input: r.Input + 1, Remote: c.Remote})
			outputs = append(outputs, r.Output)
		}
		reply := s.replyLocked(c, true)
		s.broadcastRoutesLocked(outputs)
		return reply
	}
	return s.replyLocked(c, false)
}

func (s *Sim) routeAppliedLocked(r RouteRecord) { s.routes.Append(r) }

// broadcastLocked sends m to every client (nothing while silent).
func (s *Sim) broadcastLocked(m wire.Message) {
	if s.faults.Silent() {
		return
	}
	for c := range s.srv.ClientsLocked() {
		s.sendLocked(c, m)
	}
}

// broadcastRoutesLocked sends the current routes of the given outputs (from
// 0) to every client.
func (s *Sim) broadcastRoutesLocked(outputs []int) {
	var m wire.OutputRouting
	for _, o := range outputs {
		m = append(m, wire.Route{Output: o, Input: s.routing[o]})
	}
	s.broadcastLocked(m)
}

// broadcastLocksLocked sends the lock state of the given outputs (from 0) to
// every client, each seeing its own locks as O and the others' as L.
func (s *Sim) broadcastLocksLocked(outputs []int) {
	if s.faults.Silent() {
		return
	}
	for c := range s.srv.ClientsLocked() {
		s.sendLocked(c, s.locksFor(c, outputs))
	}
}

func (s *Sim) locksFor(c *client, outputs []int) wire.OutputLocks {
	var m wire.OutputLocks
	for _, o := range outputs {
		st := wire.Unlocked
		switch s.locks[o] {
		case nil:
		case c:
			st = wire.Owned
		default:
			st = wire.Locked
		}
		m = append(m, wire.Lock{Port: o, State: st})
	}
	return m
}

func (s *Sim) allOutputs() []int {
	out := make([]int, s.opts.Outputs)
	for i := range out {
		out[i] = i
	}
	return out
}

// dumpLocked returns the full block with the given header, as c sees it.
func (s *Sim) dumpLocked(c *client, header string) wire.Message {
	switch header {
	case wire.HeaderPreamble:
		return wire.Preamble{Version: s.opts.ProtocolVersion}
	case wire.HeaderDevice:
		return wire.Device{
			Present:      "true",
			ModelName:    s.opts.Model,
			FriendlyName: s.opts.Model,
			UniqueID:     "7C2E0D51A001",
			VideoInputs:  s.opts.Inputs,
			VideoOutputs: s.opts.Outputs,
		}
	case wire.HeaderInputLabels:
		m := make(wire.InputLabels, len(s.inLabels))
		for i, l := range s.inLabels {
			m[i] = wire.Label{Port: i, Text: l}
		}
		return m
	case wire.HeaderOutputLabels:
		m := make(wire.OutputLabels, len(s.outLabels))
		for i, l := range s.outLabels {
			m[i] = wire.Label{Port: i, Text: l}
		}
		return m
	case wire.HeaderOutputLocks:
		return s.locksFor(c, s.allOutputs())
	case wire.HeaderOutputRouting:
		m := make(wire.OutputRouting, len(s.routing))
		for o, in := range s.routing {
			m[o] = wire.Route{Output: o, Input: in}
		}
		return m
	case wire.HeaderConfiguration:
		return wire.Configuration{{Key: "Take Mode", Value: "false"}}
	}
	return wire.Unknown{Header: header}
}

// preludeLocked is the status dump a client gets on connect.
func (s *Sim) preludeLocked(c *client) []wire.Message {
	ms := []wire.Message{
		s.dumpLocked(c, wire.HeaderPreamble),
		s.dumpLocked(c, wire.HeaderDevice),
		s.dumpLocked(c, wire.HeaderInputLabels),
		s.dumpLocked(c, wire.HeaderOutputLabels),
		s.dumpLocked(c, wire.HeaderOutputLocks),
		s.dumpLocked(c, wire.HeaderOutputRouting),
		s.dumpLocked(c, wire.HeaderConfiguration),
	}
	if !s.opts.OmitEndPrelude {
		ms = append(ms, wire.EndPrelude{})
	}
	return ms
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

// Routing returns the routing: element i is the input (from 1) shown on
// output i+1.
func (s *Sim) Routing() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int, len(s.routing))
	for i, in := range s.routing {
		out[i] = in + 1
	}
	return out
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

func (s *Sim) checkOutput(output int) error {
	if output < 1 || output > s.opts.Outputs {
		return fmt.Errorf("videohubsim: output %d out of range 1..%d", output, s.opts.Outputs)
	}
	return nil
}

// SetRoute routes input to output (both from 1) as if from the front panel,
// whatever the locks, and pushes the update to every client.
func (s *Sim) SetRoute(output, input int) error {
	if err := s.checkOutput(output); err != nil {
		return err
	}
	if input < 1 || input > s.opts.Inputs {
		return fmt.Errorf("videohubsim: input %d out of range 1..%d", input, s.opts.Inputs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routing[output-1] = input - 1
	s.routeAppliedLocked(RouteRecord{Time: time.Now(), Output: output, Input: input, Remote: "panel"})
	s.broadcastRoutesLocked([]int{output - 1})
	return nil
}

// LockOutput locks output (from 1) as another client would: every client
// sees it as L, and routes onto it are refused (ACKed, left unchanged).
func (s *Sim) LockOutput(output int) error {
	return s.setLock(output, s.panel)
}

// UnlockOutput removes any lock on output (from 1).
func (s *Sim) UnlockOutput(output int) error {
	return s.setLock(output, nil)
}

func (s *Sim) setLock(output int, owner *client) error {
	if err := s.checkOutput(output); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locks[output-1] = owner
	s.broadcastLocksLocked([]int{output - 1})
	return nil
}

// Commands returns the commands received so far, oldest first.
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

// SubscribeCommands is Subscribe for the commands received (see Commands).
func (s *Sim) SubscribeCommands(buffer int) (<-chan Command, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands.Subscribe(buffer)
}

// RefuseNext makes the simulator refuse the next n set commands (blocks
// with lines for labels, locks or routing), from any client: it answers
// NAK and acts on none of them.
func (s *Sim) RefuseNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.RefuseNext(n)
}

// DropNext makes the simulator close the connection of the client that
// sends each of the next n commands (any block), without replying or
// acting on it.
func (s *Sim) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.DropNext(n)
}

// Restart restarts the device as a power cycle would: every connection
// drops, the routing goes back to the power-on default (output n shows
// input n; outputs beyond the inputs show input 1), locks and injected
// faults are gone, and new connections get the new status dump. Labels
// stay (the device keeps them in its settings).
func (s *Sim) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv.DropLocked()
	s.powerOnLocked()
	s.faults.Reset()
}

// powerOnLocked sets the routing and locks a device has after power-on.
func (s *Sim) powerOnLocked() {
	for i := range s.routing {
		s.routing[i] = 0
		if i < s.opts.Inputs {
			s.routing[i] = i
		}
		s.locks[i] = nil
	}
}

// SetSilent makes the simulator read commands but neither act on nor answer
// them, and send nothing at all (no status dump to new clients, no
// updates), like a hung device; false makes it answer again.
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
