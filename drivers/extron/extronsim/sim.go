// Package extronsim is an Extron matrix switcher simulator that speaks SIS
// over Telnet (drivers/extron/wire's framing and messages), for tests and demos.
//
// Each client gets the copyright banner on connect and, when a password is
// set, the "Password:" prompt; a wrong password is prompted again, and too
// many close the connection. Commands are answered as a switcher does: ties
// with "Out03 In07 All", tie reads with the input number, the information
// request with "V8X8 A8X8", names, verbose mode, and error codes (E01 input,
// E12 output, E10 unknown command, E13 bad value, E24 privilege). Like the
// device, the simulator sends Telnet clients nothing unsolicited unless they
// set verbose mode 1 or 3; those clients get ties made elsewhere (another
// client or the front panel, through SetRoute) as "Out03 In07 All" lines
// (or "Qik", with QikOnPanel, as DXP switchers do for the panel).
//
// The simulator records every command and every applied tie, and injects
// faults: error codes on the next ties, a connection dropped in the middle
// of a command, a silent device, all connections dropped.
//
// Ports are numbered from 1, on the wire and in the Go API alike.
package extronsim

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"understudy/drivers/extron/wire"
	"understudy/drivers/simcore"
)

// Limits of the simulator.
const (
	// MaxPorts is the largest port count Options accepts.
	MaxPorts = 999
	// MaxNameLen is the longest name the simulator keeps (as Extron
	// switchers: 12 characters); longer ones are cut.
	MaxNameLen = 12
	// MaxRecords is how many commands and how many routes are kept; past
	// it, the oldest are forgotten.
	MaxRecords = 1 << 16
	// clientQueue is how many writes may wait for one client; a client that
	// reads slower than that is disconnected.
	clientQueue = 1024
	// maxPassword is the longest password line read; longer input is cut
	// into several (wrong) attempts.
	maxPassword = 256
)

// ErrClosed is returned by Serve and Listen after Close.
var ErrClosed = errors.New("extronsim: closed")

// Options configure a simulator. Zero values take the defaults.
type Options struct {
	// Inputs and Outputs size the video matrix; default 8 each, at most
	// MaxPorts.
	Inputs, Outputs int
	// AudioInputs and AudioOutputs size the audio matrix; default the
	// video size.
	AudioInputs, AudioOutputs int
	// Model, Firmware and PartNumber appear in the banner and in the
	// answers to Q and N; defaults "DXP 88 HDMI", "1.23", "60-1234-01".
	Model, Firmware, PartNumber string
	// AdminPassword and UserPassword protect Telnet connections: when
	// either is set, a client must answer the "Password:" prompt. Both
	// levels may tie; only the administrator may write names.
	AdminPassword, UserPassword string
	// MaxLoginAttempts is how many wrong passwords close the connection;
	// default 3.
	MaxLoginAttempts int
	// InputNames and OutputNames give the first names; the others are
	// "Input N" and "Output N".
	InputNames, OutputNames []string
	// NoNames answers E10 to the name commands, as models without names do.
	NoNames bool
	// NoBanner leaves out the copyright banner.
	NoBanner bool
	// QikOnPanel reports ties made with SetRoute to verbose clients as
	// "Qik" rather than as the tie.
	QikOnPanel bool
}

// Command is one command (or password attempt) the simulator received.
type Command struct {
	Time   time.Time
	Remote string // the client's address
	Text   string // the command as received (Esc included); "(password)" for a login attempt
	Reply  string // the first line answered, "" when none (dropped, silent)
}

// RouteRecord is one tie the simulator applied.
type RouteRecord struct {
	Time          time.Time
	Output, Input int        // from 1; Input 0 unties
	Plane         wire.Plane // the command's plane: all, video, audio or RGB
	Remote        string     // the client's address, or "panel" for SetRoute and SetTie
}

// Sim is a simulated Extron matrix switcher. Its methods are safe for use
// from any goroutine.
type Sim struct {
	opts Options

	mu       sync.Mutex
	video    []int // input (from 1, 0 untied) on each video output
	audio    []int // same for audio outputs
	inNames  []string
	outNames []string
	srv      *simcore.Server[*client]
	commands simcore.Log[Command]
	routes   simcore.Log[RouteRecord]
	faults   simcore.Faults
	failCode wire.ErrorCode
}

// client is one connection to the simulator. Its own fields are guarded by
// Sim.mu.
type client struct {
	*simcore.Client

	loggedIn bool
	admin    bool
	attempts int
	verbose  int
}

// New returns a simulator with the given options; it serves nothing until
// Serve or Listen. Port counts outside 1..MaxPorts are clamped.
func New(o Options) *Sim {
	o.Inputs = clamp(o.Inputs, 8)
	o.Outputs = clamp(o.Outputs, 8)
	o.AudioInputs = clamp(o.AudioInputs, o.Inputs)
	o.AudioOutputs = clamp(o.AudioOutputs, o.Outputs)
	if o.MaxLoginAttempts <= 0 {
		o.MaxLoginAttempts = 3
	}
	o.Model = clean(orDefault(o.Model, "DXP 88 HDMI"), 64)
	o.Firmware = clean(orDefault(o.Firmware, "1.23"), 16)
	o.PartNumber = clean(orDefault(o.PartNumber, "60-1234-01"), 16)
	s := &Sim{
		opts:     o,
		video:    make([]int, o.Outputs),
		audio:    make([]int, o.AudioOutputs),
		inNames:  names(o.InputNames, max(o.Inputs, o.AudioInputs), "Input"),
		outNames: names(o.OutputNames, max(o.Outputs, o.AudioOutputs), "Output"),
		commands: simcore.Log[Command]{Max: MaxRecords},
		routes:   simcore.Log[RouteRecord]{Max: MaxRecords},
	}
	s.powerOnLocked()
	s.srv = &simcore.Server[*client]{
		Name:      "extronsim",
		ErrClosed: ErrClosed,
		Mu:        &s.mu,
		Queue:     clientQueue,
		Open:      s.openLocked,
		Read:      s.read,
	}
	return s
}

func clamp(n, def int) int {
	switch {
	case n <= 0:
		return def
	case n > MaxPorts:
		return MaxPorts
	}
	return n
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func names(given []string, n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		if i < len(given) {
			out[i] = clean(given[i], MaxNameLen)
		} else {
			out[i] = prefix + " " + strconv.Itoa(i+1)
		}
	}
	return out
}

// clean makes s printable ASCII, within max bytes.
func clean(s string, max int) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = ' '
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	return string(b)
}

// Listen listens on addr (e.g. "127.0.0.1:0") and serves in the background
// until Close. It returns the address listened on.
func (s *Sim) Listen(addr string) (net.Addr, error) { return s.srv.Listen(addr) }

// Serve serves clients from l until Close, then returns nil. It closes l.
func (s *Sim) Serve(l net.Listener) error { return s.srv.Serve(l) }

func (s *Sim) needsLogin() bool {
	return s.opts.AdminPassword != "" || s.opts.UserPassword != ""
}

// openLocked makes the client of a new connection and greets it with the
// banner and, when a password is set, the prompt.
func (s *Sim) openLocked(cc *simcore.Client) *client {
	c := &client{Client: cc, loggedIn: !s.needsLogin()}
	if !s.faults.Silent() {
		var b []byte
		if !s.opts.NoBanner {
			b = fmt.Appendf(b, "\r\n(c) Copyright 2024, Extron Electronics, %s, V%s, %s\r\n%s\r\n",
				s.opts.Model, s.opts.Firmware, s.opts.PartNumber, time.Now().UTC().Format("Mon, 02 Jan 2006, 15:04:05"))
		}
		if !c.loggedIn {
			b = append(b, "\r\nPassword:"...)
		}
		if len(b) > 0 {
			s.sendLocked(c, b)
		}
	}
	return c
}

// splitPassword yields a password line: up to CR or LF (a CR LF pair is
// one line end).
func splitPassword(data []byte, atEOF bool) (int, []byte, error) {
	for j, b := range data {
		if b == '\r' || b == '\n' {
			adv := j + 1
			if b == '\r' && j+1 < len(data) && data[j+1] == '\n' {
				adv++
			}
			return adv, data[:j], nil
		}
		if j+1 >= maxPassword {
			return j + 1, data[:j+1], nil
		}
	}
	if atEOF {
		return len(data), nil, nil
	}
	return 0, nil, nil
}

// read handles a client's input until its connection ends.
func (s *Sim) read(c *client) {
	sc := bufio.NewScanner(wire.NewTelnetReader(c.Conn, nil))
	sc.Buffer(make([]byte, 0, 4096), wire.MaxCommand+maxPassword+4096)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		s.mu.Lock()
		login := !c.loggedIn
		s.mu.Unlock()
		if login {
			return splitPassword(data, atEOF)
		}
		return wire.SplitCommands(data, atEOF)
	})
	for sc.Scan() {
		s.mu.Lock()
		if c.loggedIn {
			s.handleLocked(c, sc.Bytes())
		} else {
			s.loginLocked(c, sc.Text())
		}
		s.mu.Unlock()
	}
}

// sendLocked queues bytes for c, dropping a client that cannot keep up.
func (s *Sim) sendLocked(c *client, b []byte) {
	c.Send(b)
}

// replyLocked sends one line to c (unless silent) and returns it.
func (s *Sim) replyLocked(c *client, line string) string {
	if s.faults.Silent() {
		return ""
	}
	s.sendLocked(c, []byte(line+"\r\n"))
	return line
}

func (s *Sim) recordLocked(cmd Command) { s.commands.Append(cmd) }

// loginLocked checks one password attempt.
func (s *Sim) loginLocked(c *client, password string) {
	cmd := Command{Time: time.Now(), Remote: c.Remote, Text: "(password)"}
	defer func() { s.recordLocked(cmd) }()
	if s.faults.TakeDrop() {
		c.Close()
		return
	}
	if s.faults.Silent() {
		return
	}
	switch {
	case s.opts.AdminPassword != "" && password == s.opts.AdminPassword:
		c.loggedIn, c.admin = true, true
	case s.opts.UserPassword != "" && password == s.opts.UserPassword:
		c.loggedIn = true
	}
	if c.loggedIn {
		cmd.Reply = wire.LoginReply{Admin: c.admin}.Line()
		s.sendLocked(c, []byte("\r\n"+cmd.Reply+"\r\n"))
		return
	}
	c.attempts++
	if c.attempts >= s.opts.MaxLoginAttempts {
		c.Close()
		return
	}
	cmd.Reply = wire.PasswordPrompt{}.Line()
	s.sendLocked(c, []byte("\r\n"+cmd.Reply))
}

// handleLocked answers one command token from c.
func (s *Sim) handleLocked(c *client, tok []byte) {
	cmd := Command{Time: time.Now(), Remote: c.Remote, Text: string(tok)}
	defer func() { s.recordLocked(cmd) }()
	if s.faults.TakeDrop() {
		c.Close()
		return
	}
	if s.faults.Silent() {
		return
	}
	m, err := wire.ParseCommand(tok)
	if err != nil {
		cmd.Reply = s.replyLocked(c, wire.ErrInvalidCommand.Line())
		return
	}
	reply := func(r wire.Reply) { cmd.Reply = s.replyLocked(c, r.Line()) }
	now := time.Now()
	switch m := m.(type) {
	case wire.Tie, wire.TieAll, wire.QuickTie:
		if s.faults.TakeRefuse() {
			reply(s.failCode)
			return
		}
		switch m := m.(type) {
		case wire.Tie:
			if code := s.checkTie(m); code != 0 {
				reply(code)
				return
			}
			s.tieLocked(m, c.Remote, now)
			r := wire.TieReply{Output: m.Output, Input: m.Input, Plane: m.Plane}
			reply(r)
			s.notifyLocked(c, r.Line())
		case wire.TieAll:
			if code := s.checkTie(wire.Tie{Input: m.Input, Output: 1, Plane: m.Plane}); code != 0 {
				reply(code)
				return
			}
			outs := len(s.video)
			if m.Plane == wire.PlaneAudio {
				outs = len(s.audio)
			}
			for o := 1; o <= outs; o++ {
				s.tieLocked(wire.Tie{Input: m.Input, Output: o, Plane: m.Plane}, c.Remote, now)
			}
			r := wire.TieAllReply(m)
			reply(r)
			s.notifyLocked(c, r.Line())
		case wire.QuickTie:
			for _, t := range m {
				if code := s.checkTie(t); code != 0 {
					reply(code) // all or nothing
					return
				}
			}
			for _, t := range m {
				s.tieLocked(t, c.Remote, now)
			}
			reply(wire.Qik{})
			s.notifyLocked(c, wire.Qik{}.Line())
		}
	case wire.ReadTie:
		ties := s.video
		switch m.Plane {
		case wire.PlaneAudio:
			ties = s.audio
		case wire.PlaneAll:
			reply(wire.ErrInvalidCommand) // Extron documents reads for %, & and $ only
			return
		}
		if m.Output < 1 || m.Output > len(ties) {
			reply(wire.ErrInvalidOutput)
			return
		}
		reply(wire.Number(ties[m.Output-1]))
	case wire.Info:
		reply(wire.InfoReply{VideoInputs: s.opts.Inputs, VideoOutputs: s.opts.Outputs,
			AudioInputs: s.opts.AudioInputs, AudioOutputs: s.opts.AudioOutputs, Audio: true})
	case wire.Firmware:
		reply(wire.Text(s.opts.Firmware))
	case wire.PartNumber:
		reply(wire.Text(s.opts.PartNumber))
	case wire.ReadName:
		list, code := s.nameList(m.Output, m.Port)
		if code != 0 {
			reply(code)
			return
		}
		reply(wire.Text(list[m.Port-1]))
	case wire.WriteName:
		list, code := s.nameList(m.Output, m.Port)
		switch {
		case code != 0:
			reply(code)
		case s.needsLogin() && !c.admin:
			reply(wire.ErrPrivilege)
		default:
			list[m.Port-1] = clean(m.Name, MaxNameLen)
			reply(wire.NameReply{Output: m.Output, Port: m.Port, Name: list[m.Port-1]})
		}
	case wire.SetVerbose:
		if m.Mode > 3 {
			reply(wire.ErrInvalidValue)
			return
		}
		c.verbose = m.Mode
		reply(wire.VerboseReply(m.Mode))
	case wire.ReadVerbose:
		reply(wire.Text(strconv.Itoa(c.verbose)))
	default:
		reply(wire.ErrInvalidCommand)
	}
}

// nameList returns the names of inputs or outputs, or the error code for a
// port out of range (or E10 without names).
func (s *Sim) nameList(output bool, port int) ([]string, wire.ErrorCode) {
	if s.opts.NoNames {
		return nil, wire.ErrInvalidCommand
	}
	if output {
		if port < 1 || port > len(s.outNames) {
			return nil, wire.ErrInvalidOutput
		}
		return s.outNames, 0
	}
	if port < 1 || port > len(s.inNames) {
		return nil, wire.ErrInvalidInput
	}
	return s.inNames, 0
}

// checkTie returns the error code for a tie out of range, or 0: an input
// beyond the plane's inputs is E01, an output beyond its outputs E12.
func (s *Sim) checkTie(t wire.Tie) wire.ErrorCode {
	ins, outs := s.opts.Inputs, s.opts.Outputs
	if t.Plane == wire.PlaneAudio {
		ins, outs = s.opts.AudioInputs, s.opts.AudioOutputs
	}
	switch {
	case t.Input < 0 || t.Input > ins:
		return wire.ErrInvalidInput
	case t.Output < 1 || t.Output > outs:
		return wire.ErrInvalidOutput
	}
	return 0
}

// tieLocked applies a checked tie. A tie on all planes sets the audio tie
// too where the audio matrix has that input and output.
func (s *Sim) tieLocked(t wire.Tie, remote string, now time.Time) {
	switch t.Plane {
	case wire.PlaneAll:
		s.video[t.Output-1] = t.Input
		if t.Output <= len(s.audio) && t.Input <= s.opts.AudioInputs {
			s.audio[t.Output-1] = t.Input
		}
	case wire.PlaneVideo, wire.PlaneRGB:
		s.video[t.Output-1] = t.Input
	case wire.PlaneAudio:
		s.audio[t.Output-1] = t.Input
	}
	r := RouteRecord{Time: now, Output: t.Output, Input: t.Input, Plane: t.Plane, Remote: remote}
	s.routes.Append(r)
}

// notifyLocked sends line to every logged-in client in verbose mode 1 or 3
// other than from (nil: all of them), as a switcher reports changes.
func (s *Sim) notifyLocked(from *client, line string) {
	if s.faults.Silent() {
		return
	}
	for c := range s.srv.ClientsLocked() {
		if c != from && c.loggedIn && (c.verbose == 1 || c.verbose == 3) {
			s.sendLocked(c, []byte(line+"\r\n"))
		}
	}
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

// Size returns the video matrix size.
func (s *Sim) Size() (inputs, outputs int) { return s.opts.Inputs, s.opts.Outputs }

// AudioSize returns the audio matrix size.
func (s *Sim) AudioSize() (inputs, outputs int) { return s.opts.AudioInputs, s.opts.AudioOutputs }

// Routing returns the video ties: element i is the input (from 1, 0 untied)
// on output i+1.
func (s *Sim) Routing() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.video...)
}

// AudioRouting returns the audio ties, as Routing.
func (s *Sim) AudioRouting() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.audio...)
}

// InputNames returns the input names, index i for input i+1.
func (s *Sim) InputNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.inNames...)
}

// OutputNames returns the output names, index i for output i+1.
func (s *Sim) OutputNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.outNames...)
}

// SetRoute ties input to output (both from 1) on all planes as if from the
// front panel, and reports it to verbose clients.
func (s *Sim) SetRoute(output, input int) error {
	return s.SetTie(output, input, wire.PlaneAll)
}

// SetTie ties input to output (both from 1; input 0 unties) on plane as if
// from the front panel, and reports it to verbose clients.
func (s *Sim) SetTie(output, input int, plane wire.Plane) error {
	if !plane.Valid() {
		return fmt.Errorf("extronsim: plane %q is not !, %%, $ or &", rune(plane))
	}
	t := wire.Tie{Input: input, Output: output, Plane: plane}
	s.mu.Lock()
	defer s.mu.Unlock()
	if code := s.checkTie(t); code != 0 {
		return fmt.Errorf("extronsim: tie output %d ← input %d: %s", output, input, code)
	}
	s.tieLocked(t, "panel", time.Now())
	if s.opts.QikOnPanel {
		s.notifyLocked(nil, wire.Qik{}.Line())
	} else {
		s.notifyLocked(nil, wire.TieReply{Output: output, Input: input, Plane: plane}.Line())
	}
	return nil
}

// Commands returns the commands received so far, oldest first.
func (s *Sim) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands.All()
}

// Routes returns the ties applied so far, oldest first.
func (s *Sim) Routes() []RouteRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.routes.All()
}

// Subscribe returns a channel that receives every tie applied from now on,
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

// RefuseNext makes the simulator refuse the next n tie commands (ties, ties
// to all outputs, quick ties), from any client: it answers E14 (not valid
// for this configuration) and applies nothing.
func (s *Sim) RefuseNext(n int) { s.RefuseNextWith(n, wire.ErrInvalidForConfig) }

// RefuseNextWith is RefuseNext answering code instead: wire.ErrBusy (E22)
// for a busy switcher, say.
func (s *Sim) RefuseNextWith(n int, code wire.ErrorCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.RefuseNext(n)
	s.failCode = code
}

// DropNext makes the simulator close the connection of the client that
// sends each of the next n commands (or passwords), without replying or
// acting on it.
func (s *Sim) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.DropNext(n)
}

// Restart restarts the switcher as a power cycle would: every connection
// drops, the ties go back to the power-on default on every plane (output n
// shows input n; outputs beyond the inputs are untied), injected faults are
// gone, and new connections get the banner and must log in again. Names
// stay (the switcher keeps them in its settings).
func (s *Sim) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv.DropLocked()
	s.powerOnLocked()
	s.faults.Reset()
}

// powerOnLocked sets the ties a switcher has after power-on.
func (s *Sim) powerOnLocked() {
	for i := range s.video {
		s.video[i] = 0
		if i < s.opts.Inputs {
			s.video[i] = i + 1
		}
	}
	for i := range s.audio {
		s.audio[i] = 0
		if i < s.opts.AudioInputs {
			s.audio[i] = i + 1
		}
	}
}

// SetSilent makes the simulator read commands but neither act on nor answer
// them, and send nothing at all (no banner to new clients, no notices),
// like a hung device; false makes it answer again.
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

// String describes the simulator: "DXP 88 HDMI V8X8 A8X8".
func (s *Sim) String() string {
	return strings.TrimSpace(fmt.Sprintf("%s V%dX%d A%dX%d", s.opts.Model,
		s.opts.Inputs, s.opts.Outputs, s.opts.AudioInputs, s.opts.AudioOutputs))
}
