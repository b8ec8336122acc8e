package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Plane is the signal plane a tie acts on, written as the character that
// ends the tie command ("1*2!"). Replies name it with a word ("All").
type Plane byte

// Planes. RGB and Video are interchangeable on most matrix switchers.
const (
	PlaneAll   Plane = '!' // video and audio; reply word "All"
	PlaneVideo Plane = '%' // video only (audio breakaway); reply word "Vid"
	PlaneAudio Plane = '$' // audio only; reply word "Aud"
	PlaneRGB   Plane = '&' // RGB video only; reply word "RGB"
)

// Valid reports whether p is one of the four planes.
func (p Plane) Valid() bool {
	switch p {
	case PlaneAll, PlaneVideo, PlaneAudio, PlaneRGB:
		return true
	}
	return false
}

// Word is the word replies use for p: All, Vid, Aud or RGB.
func (p Plane) Word() string {
	switch p {
	case PlaneAll:
		return "All"
	case PlaneVideo:
		return "Vid"
	case PlaneAudio:
		return "Aud"
	case PlaneRGB:
		return "RGB"
	}
	return "?"
}

// String returns the command character.
func (p Plane) String() string { return string(rune(p)) }

func planeOfWord(w string) (Plane, bool) {
	switch w {
	case "All":
		return PlaneAll, true
	case "Vid":
		return PlaneVideo, true
	case "Aud":
		return PlaneAudio, true
	case "RGB":
		return PlaneRGB, true
	}
	return 0, false
}

// ErrorCode is an SIS error response, "E01" to "E99".
type ErrorCode int

// Error codes of Extron matrix switchers (their user guides list them under
// "Switcher Error Responses"). Not every model uses every code.
const (
	ErrInvalidInput      ErrorCode = 1  // input number out of range
	ErrInvalidChange     ErrorCode = 6  // invalid input change (some switchers)
	ErrInvalidCommand    ErrorCode = 10 // command not known to this model
	ErrInvalidPreset     ErrorCode = 11
	ErrInvalidOutput     ErrorCode = 12 // output (or port) number out of range
	ErrInvalidValue      ErrorCode = 13 // parameter out of range
	ErrInvalidForConfig  ErrorCode = 14 // not valid for this configuration
	ErrTimedOut          ErrorCode = 17 // timeout on DXP/CrossPoint; "invalid for signal type" on FOX3, IN1800
	ErrSystemTimedOut    ErrorCode = 18 // system or command timed out (FOX3)
	ErrInvalidRoom       ErrorCode = 21
	ErrBusy              ErrorCode = 22
	ErrPrivilege         ErrorCode = 24 // a user-level login attempted an administrator command
	ErrDeviceNotPresent  ErrorCode = 25
	ErrTooManyConnection ErrorCode = 26 // maximum number of connections exceeded
	ErrInvalidEvent      ErrorCode = 27
	ErrFileNotFound      ErrorCode = 28
	ErrHardwareFailure   ErrorCode = 30
	ErrBreakPort         ErrorCode = 31 // attempt to break port
)

var errorMeanings = map[ErrorCode]string{
	ErrInvalidInput:      "invalid input number",
	ErrInvalidChange:     "invalid input change",
	ErrInvalidCommand:    "invalid command",
	ErrInvalidPreset:     "invalid preset number",
	ErrInvalidOutput:     "invalid output number",
	ErrInvalidValue:      "invalid value (out of range)",
	ErrInvalidForConfig:  "not valid for this configuration",
	ErrTimedOut:          "timeout (on some models: invalid for this signal type)",
	ErrSystemTimedOut:    "system or command timed out",
	ErrInvalidRoom:       "invalid room number",
	ErrBusy:              "busy",
	ErrPrivilege:         "privilege violation",
	ErrDeviceNotPresent:  "device not present",
	ErrTooManyConnection: "maximum number of connections exceeded",
	ErrInvalidEvent:      "invalid event number",
	ErrFileNotFound:      "bad filename or file not found",
	ErrHardwareFailure:   "hardware failure",
	ErrBreakPort:         "attempt to break port",
}

// Code is the code as the device writes it: "E01".
func (c ErrorCode) Code() string { return fmt.Sprintf("E%02d", int(c)) }

// Meaning is what Extron's documentation says the code means, or "error"
// for a code it does not list.
func (c ErrorCode) Meaning() string {
	if m, ok := errorMeanings[c]; ok {
		return m
	}
	return "error"
}

// String returns "E01 invalid input number".
func (c ErrorCode) String() string { return c.Code() + " " + c.Meaning() }

// Transient reports whether the same command may succeed if sent again
// later: busy, timed out, too many connections.
func (c ErrorCode) Transient() bool {
	switch c {
	case ErrBusy, ErrTimedOut, ErrSystemTimedOut, ErrTooManyConnection:
		return true
	}
	return false
}

// Line implements Reply.
func (c ErrorCode) Line() string { return c.Code() }

// ---------------------------------------------------------------------------
// Commands (host to device)

// Command is an SIS command. Bytes returns its exact wire form; for every
// command c, ParseCommand(c.Bytes()) returns c.
type Command interface {
	Bytes() []byte
}

// Esc is the escape character that starts the extended commands, which end
// with a carriage return.
const Esc = 0x1b

// Tie ties Input to Output on Plane: "7*3!". Input 0 unties the output.
type Tie struct {
	Input, Output int
	Plane         Plane
}

// TieAll ties Input to every output: "7*!".
type TieAll struct {
	Input int
	Plane Plane
}

// ReadTie asks which input is tied to Output on Plane: "3%". Extron
// documents it for the video (%, &) and audio ($) planes.
type ReadTie struct {
	Output int
	Plane  Plane
}

// QuickTie makes several ties at once: Esc "+Q7*3!1*2%" CR; the device
// answers "Qik".
type QuickTie []Tie

// Info is the information request "I"; the device answers its matrix size
// ("V8X4 A8X4").
type Info struct{}

// Firmware is the firmware version query "Q".
type Firmware struct{}

// PartNumber is the part number request "N".
type PartNumber struct{}

// ReadName asks for the name of an input (Esc "3NI" CR) or an output
// (Esc "3NO" CR).
type ReadName struct {
	Output bool
	Port   int
}

// WriteName names an input (Esc "3,Podium cam" "NI" CR) or an output.
type WriteName struct {
	Output bool
	Port   int
	Name   string
}

// SetVerbose sets the connection's verbose mode: Esc "3CV" CR. 0 (the
// default on Telnet connections) sends nothing unsolicited; 1 and 3 report
// changes made elsewhere; 2 and 3 tag the replies to queries.
type SetVerbose struct{ Mode int }

// ReadVerbose reads the connection's verbose mode: Esc "CV" CR.
type ReadVerbose struct{}

// Bytes implements Command.
func (c Tie) Bytes() []byte {
	return fmt.Appendf(nil, "%d*%d%c", c.Input, c.Output, c.Plane)
}

// Bytes implements Command.
func (c TieAll) Bytes() []byte { return fmt.Appendf(nil, "%d*%c", c.Input, c.Plane) }

// Bytes implements Command.
func (c ReadTie) Bytes() []byte { return fmt.Appendf(nil, "%d%c", c.Output, c.Plane) }

// Bytes implements Command.
func (c QuickTie) Bytes() []byte {
	b := []byte{Esc, '+', 'Q'}
	for _, t := range c {
		b = append(b, t.Bytes()...)
	}
	return append(b, '\r')
}

// Bytes implements Command.
func (Info) Bytes() []byte { return []byte("I") }

// Bytes implements Command.
func (Firmware) Bytes() []byte { return []byte("Q") }

// Bytes implements Command.
func (PartNumber) Bytes() []byte { return []byte("N") }

func nameSuffix(output bool) string {
	if output {
		return "NO"
	}
	return "NI"
}

// Bytes implements Command.
func (c ReadName) Bytes() []byte {
	return fmt.Appendf(nil, "\x1b%d%s\r", c.Port, nameSuffix(c.Output))
}

// Bytes implements Command.
func (c WriteName) Bytes() []byte {
	return fmt.Appendf(nil, "\x1b%d,%s%s\r", c.Port, c.Name, nameSuffix(c.Output))
}

// Bytes implements Command.
func (c SetVerbose) Bytes() []byte { return fmt.Appendf(nil, "\x1b%dCV\r", c.Mode) }

// Bytes implements Command.
func (ReadVerbose) Bytes() []byte { return []byte("\x1bCV\r") }

// ErrUnknownCommand is wrapped by ParseCommand for a token that is not one
// of the commands this package knows; a device answers it with E10.
var ErrUnknownCommand = errors.New("unknown command")

// MaxNumber is the largest number ParseCommand and ParseReply accept in a
// port or count field (four digits).
const MaxNumber = 9999

// MaxName is the longest name, in bytes, WriteName and NameReply carry.
const MaxName = 64

// ParseCommand parses one command token as SplitCommands yields it (the
// extended commands with their Esc and CR). A token that is not a command
// this package knows is an error wrapping ErrUnknownCommand.
func ParseCommand(tok []byte) (Command, error) {
	fail := func() (Command, error) {
		return nil, fmt.Errorf("extron: %q: %w", truncate(string(tok)), ErrUnknownCommand)
	}
	if len(tok) == 0 {
		return fail()
	}
	if tok[0] == Esc {
		if len(tok) < 2 || tok[len(tok)-1] != '\r' {
			return fail()
		}
		c, ok := parseEscape(string(tok[1 : len(tok)-1]))
		if !ok {
			return fail()
		}
		return c, nil
	}
	s := string(tok)
	switch s {
	case "I", "i":
		return Info{}, nil
	case "Q", "q":
		return Firmware{}, nil
	case "N", "n":
		return PartNumber{}, nil
	}
	p := Plane(s[len(s)-1])
	if !p.Valid() {
		return fail()
	}
	body := s[:len(s)-1]
	if in, out, ok := strings.Cut(body, "*"); ok {
		i, ok1 := number(in)
		if out == "" && ok1 {
			return TieAll{Input: i, Plane: p}, nil
		}
		o, ok2 := number(out)
		if !ok1 || !ok2 {
			return fail()
		}
		return Tie{Input: i, Output: o, Plane: p}, nil
	}
	o, ok := number(body)
	if !ok {
		return fail()
	}
	return ReadTie{Output: o, Plane: p}, nil
}

func parseEscape(body string) (Command, bool) {
	if rest, ok := strings.CutPrefix(body, "+Q"); ok {
		var q QuickTie
		for rest != "" {
			i := strings.IndexAny(rest, "!%$&")
			if i < 0 {
				return nil, false
			}
			c, err := ParseCommand([]byte(rest[:i+1]))
			t, isTie := c.(Tie)
			if err != nil || !isTie {
				return nil, false
			}
			q = append(q, t)
			rest = rest[i+1:]
		}
		if len(q) == 0 {
			return nil, false
		}
		return q, true
	}
	if body == "CV" {
		return ReadVerbose{}, true
	}
	if m, ok := strings.CutSuffix(body, "CV"); ok {
		n, ok := number(m)
		if !ok {
			return nil, false
		}
		return SetVerbose{Mode: n}, true
	}
	for _, output := range []bool{false, true} {
		arg, ok := strings.CutSuffix(body, nameSuffix(output))
		if !ok {
			continue
		}
		port, name, write := strings.Cut(arg, ",")
		n, ok := number(port)
		if !ok {
			return nil, false
		}
		if !write {
			return ReadName{Output: output, Port: n}, true
		}
		if !validName(name) {
			return nil, false
		}
		return WriteName{Output: output, Port: n, Name: name}, true
	}
	return nil, false
}

// validName reports whether a name can travel in WriteName and NameReply:
// printable, no more than MaxName bytes.
func validName(s string) bool {
	if len(s) > MaxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// number parses 1 to 4 decimal digits.
func number(s string) (int, bool) {
	if s == "" || len(s) > 4 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// ---------------------------------------------------------------------------
// Replies (device to host)

// Reply is one line a device sends, without its line end. For every reply r
// that ParseReply returns, ParseReply(r.Line()) returns r again.
type Reply interface {
	Line() string
}

// TieReply confirms a tie ("Out03 In07 All"), or, in verbose modes 1 and 3,
// reports one made elsewhere.
type TieReply struct {
	Output, Input int
	Plane         Plane
}

// TieAllReply confirms a tie of an input to all outputs ("In07 All").
type TieAllReply struct {
	Input int
	Plane Plane
}

// Number is a reply that is a bare number: the input tied to an output
// ("07", 0 when untied), a verbose mode.
type Number int

// InfoReply answers Info: "V8X4 A8X4" (video inputs X outputs, audio inputs
// X outputs). Audio is false when the device gave no audio size.
type InfoReply struct {
	VideoInputs, VideoOutputs int
	AudioInputs, AudioOutputs int
	Audio                     bool
}

// LoginReply follows an accepted password: "Login Administrator" or
// "Login User".
type LoginReply struct{ Admin bool }

// PasswordPrompt is "Password:", sent after the banner when the device is
// password protected and again after a wrong password. It has no line end
// on the wire.
type PasswordPrompt struct{}

// Copyright is the banner line a device sends on connect: "(c) Copyright
// 2013, Extron Electronics, DXP 88 HDMI, V1.23, 60-1234-01". Text is what
// follows "(c) Copyright ".
type Copyright struct{ Text string }

// Qik confirms a quick multiple tie; on some models, in verbose mode, it
// reports a tie made from the front panel.
type Qik struct{}

// VerboseReply confirms SetVerbose: "Vrb3".
type VerboseReply int

// NameReply confirms WriteName: "Nmi01,Podium cam" or "Nmo01,Main PJ1".
type NameReply struct {
	Output bool
	Port   int
	Name   string
}

// Text is any other line: a name, a firmware version, the banner's date.
type Text string

// Line implements Reply.
func (r TieReply) Line() string {
	return fmt.Sprintf("Out%02d In%02d %s", r.Output, r.Input, r.Plane.Word())
}

// Line implements Reply.
func (r TieAllReply) Line() string { return fmt.Sprintf("In%02d %s", r.Input, r.Plane.Word()) }

// Line implements Reply.
func (r Number) Line() string { return fmt.Sprintf("%02d", int(r)) }

// Line implements Reply.
func (r InfoReply) Line() string {
	s := fmt.Sprintf("V%dX%d", r.VideoInputs, r.VideoOutputs)
	if r.Audio {
		s += fmt.Sprintf(" A%dX%d", r.AudioInputs, r.AudioOutputs)
	}
	return s
}

// Line implements Reply.
func (r LoginReply) Line() string {
	if r.Admin {
		return "Login Administrator"
	}
	return "Login User"
}

// Line implements Reply.
func (PasswordPrompt) Line() string { return "Password:" }

// Line implements Reply.
func (r Copyright) Line() string { return "(c) Copyright " + r.Text }

// Line implements Reply.
func (Qik) Line() string { return "Qik" }

// Line implements Reply.
func (r VerboseReply) Line() string { return "Vrb" + strconv.Itoa(int(r)) }

// Line implements Reply.
func (r NameReply) Line() string {
	k := "Nmi"
	if r.Output {
		k = "Nmo"
	}
	return fmt.Sprintf("%s%02d,%s", k, r.Port, r.Name)
}

// Line implements Reply.
func (r Text) Line() string { return string(r) }

// ParseReply classifies one line (without its line end). It never fails:
// a line that is none of the known replies is Text.
func ParseReply(line string) Reply {
	if strings.TrimRight(line, " ") == "Password:" {
		return PasswordPrompt{}
	}
	switch line {
	case "Login Administrator":
		return LoginReply{Admin: true}
	case "Login User":
		return LoginReply{}
	case "Qik":
		return Qik{}
	}
	if rest, ok := strings.CutPrefix(line, "(c) Copyright "); ok {
		return Copyright{Text: rest}
	}
	if len(line) == 3 && line[0] == 'E' {
		if n, ok := number(line[1:]); ok && len(line[1:]) == 2 {
			return ErrorCode(n)
		}
	}
	if n, ok := number(line); ok {
		return Number(n)
	}
	if r, ok := parseTie(line); ok {
		return r
	}
	if r, ok := parseInfo(line); ok {
		return r
	}
	if rest, ok := strings.CutPrefix(line, "Vrb"); ok {
		if n, ok := number(rest); ok && len(rest) == 1 {
			return VerboseReply(n)
		}
	}
	if r, ok := parseNameReply(line); ok {
		return r
	}
	return Text(line)
}

// parseTie parses "Out03 In07 All" and "In07 All"; the spaces may be
// missing, as some manuals print them.
func parseTie(line string) (Reply, bool) {
	out := -1
	s := line
	if rest, ok := strings.CutPrefix(s, "Out"); ok {
		d := digits(rest)
		n, ok := number(rest[:d])
		if !ok {
			return nil, false
		}
		out, s = n, strings.TrimPrefix(rest[d:], " ")
	}
	rest, ok := strings.CutPrefix(s, "In")
	if !ok {
		return nil, false
	}
	d := digits(rest)
	in, ok := number(rest[:d])
	if !ok {
		return nil, false
	}
	p, ok := planeOfWord(strings.TrimPrefix(rest[d:], " "))
	if !ok {
		return nil, false
	}
	if out < 0 {
		return TieAllReply{Input: in, Plane: p}, true
	}
	return TieReply{Output: out, Input: in, Plane: p}, true
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// parseInfo parses "V8X4" optionally followed by " A8X4".
func parseInfo(line string) (Reply, bool) {
	f := strings.Split(line, " ")
	if len(f) > 2 {
		return nil, false
	}
	var r InfoReply
	var ok bool
	if r.VideoInputs, r.VideoOutputs, ok = size(f[0], 'V'); !ok {
		return nil, false
	}
	if len(f) == 2 {
		if r.AudioInputs, r.AudioOutputs, ok = size(f[1], 'A'); !ok {
			return nil, false
		}
		r.Audio = true
	}
	return r, true
}

func size(s string, prefix byte) (int, int, bool) {
	if len(s) < 4 || s[0] != prefix {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(s[1:], "X")
	if !ok {
		return 0, 0, false
	}
	x, ok1 := number(a)
	y, ok2 := number(b)
	return x, y, ok1 && ok2
}

// parseNameReply parses "Nmi01,Podium cam" and "Nmo01,Main PJ1".
func parseNameReply(line string) (Reply, bool) {
	var r NameReply
	switch {
	case strings.HasPrefix(line, "Nmi"):
	case strings.HasPrefix(line, "Nmo"):
		r.Output = true
	default:
		return nil, false
	}
	port, name, ok := strings.Cut(line[3:], ",")
	if !ok {
		return nil, false
	}
	n, ok := number(port)
	if !ok || !validName(name) {
		return nil, false
	}
	r.Port, r.Name = n, name
	return r, true
}
