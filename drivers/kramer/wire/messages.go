package wire

import (
	"fmt"
	"strconv"
	"strings"

	"understudy/drivers"
)

// All stands for '*' (all outputs) where a message takes an output.
const All = -1

// Command is a message from a controller to the device. CommandBody is the
// text between the start character (and address) and the CR;
// DecodeCommands(CommandFrame(m, c)) returns a command equal to c.
type Command interface {
	CommandBody() string
}

// Reply is a message from the device. ReplyBody is the text between the
// address and the CR LF; DecodeReply(ReplyFrame(m, r)) returns a reply equal
// to r.
type Reply interface {
	ReplyBody() string
}

// Commands a controller sends.
type (
	// Handshake is "#" alone; the device answers OK.
	Handshake struct{}
	// RouteSet is "ROUTE layer,dest,src": route input Input (0 disconnects)
	// to output Output (All for every output) on a layer.
	RouteSet struct{ Layer, Output, Input int }
	// RouteQuery is "ROUTE? layer,dest": which input does Output (All for
	// every output) show on a layer.
	RouteQuery struct{ Layer, Output int }
	// InfoIOQuery is "INFO-IO?": how many inputs and outputs.
	InfoIOQuery struct{}
	// ModelQuery is "MODEL?".
	ModelQuery struct{}
	// LabelQuery is "LABEL? stage,index": the label of an input (stage 0) or
	// an output (stage 1).
	LabelQuery struct{ Stage, Port int }
	// UnknownCommand is any other command, name upper-cased.
	UnknownCommand struct{ Name, Params string }
)

// Label stages.
const (
	StageInput  = 0
	StageOutput = 1
)

// Replies a device sends.
type (
	// OK is the answer to a handshake ("~01@ OK").
	OK struct{}
	// RouteStatus is "ROUTE layer,dest,src": the answer to a RouteSet (OK
	// set when it ends in "OK") or a RouteQuery, and the notification a
	// device sends when a route changes. Output is All for '*'.
	RouteStatus struct {
		Layer, Output, Input int
		OK                   bool
	}
	// Err is an error code: "ERR 003" (Command empty) or "ROUTE ERR 003",
	// possibly echoing the command's parameters ("ROUTE 1,9,1 ERR 003").
	Err struct {
		Command string // upper-cased, as it came ("ROUTE", "ROUTE?"); "" for a general error
		Params  string
		Code    int
	}
	// IOCount is "INFO-IO IN n,OUT m".
	IOCount struct{ Inputs, Outputs int }
	// Model is "MODEL name".
	Model struct{ Name string }
	// Label is "LABEL stage,index,on,text".
	Label struct {
		Stage, Port int
		On          bool
		Text        string
	}
	// Switched is a legacy switching message: "VID in>out,…" (video),
	// "AUD …" (audio) or "AV …" (both), sent as an answer to the legacy
	// commands and, by older devices, when a route changes.
	Switched struct {
		Kind  string // "VID", "AUD" or "AV"
		Links []Link
	}
	// UnknownReply is any other message, kept as it came (trimmed).
	UnknownReply struct{ Body string }
)

// Link is one "in>out" of a Switched message; Input 0 disconnects, Output
// is All for '*'.
type Link struct{ Input, Output int }

// CommandBody implements Command.
func (Handshake) CommandBody() string { return "" }

// CommandBody implements Command.
func (c RouteSet) CommandBody() string {
	return "ROUTE " + strconv.Itoa(c.Layer) + "," + port(c.Output) + "," + strconv.Itoa(c.Input)
}

// CommandBody implements Command.
func (c RouteQuery) CommandBody() string {
	return "ROUTE? " + strconv.Itoa(c.Layer) + "," + port(c.Output)
}

// CommandBody implements Command.
func (InfoIOQuery) CommandBody() string { return "INFO-IO?" }

// CommandBody implements Command.
func (ModelQuery) CommandBody() string { return "MODEL?" }

// CommandBody implements Command.
func (c LabelQuery) CommandBody() string {
	return "LABEL? " + strconv.Itoa(c.Stage) + "," + strconv.Itoa(c.Port)
}

// CommandBody implements Command.
func (c UnknownCommand) CommandBody() string { return withParams(c.Name, c.Params) }

// ReplyBody implements Reply. The device puts a space before "OK".
func (OK) ReplyBody() string { return " OK" }

// ReplyBody implements Reply.
func (r RouteStatus) ReplyBody() string {
	s := "ROUTE " + strconv.Itoa(r.Layer) + "," + port(r.Output) + "," + strconv.Itoa(r.Input)
	if r.OK {
		s += " OK"
	}
	return s
}

// ReplyBody implements Reply.
func (r Err) ReplyBody() string {
	return withParams(withParams(r.Command, r.Params), fmt.Sprintf("ERR %03d", r.Code))
}

// ReplyBody implements Reply.
func (r IOCount) ReplyBody() string {
	return "INFO-IO IN " + strconv.Itoa(r.Inputs) + ",OUT " + strconv.Itoa(r.Outputs)
}

// ReplyBody implements Reply.
func (r Model) ReplyBody() string { return withParams("MODEL", r.Name) }

// ReplyBody implements Reply.
func (r Label) ReplyBody() string {
	on := "0"
	if r.On {
		on = "1"
	}
	return "LABEL " + strconv.Itoa(r.Stage) + "," + strconv.Itoa(r.Port) + "," + on + "," + r.Text
}

// ReplyBody implements Reply.
func (r Switched) ReplyBody() string {
	var b strings.Builder
	b.WriteString(r.Kind)
	for i, l := range r.Links {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(l.Input) + ">" + port(l.Output))
	}
	return b.String()
}

// ReplyBody implements Reply.
func (r UnknownReply) ReplyBody() string { return r.Body }

func port(n int) string {
	if n == All {
		return "*"
	}
	return strconv.Itoa(n)
}

func withParams(name, params string) string {
	switch {
	case name == "":
		return params
	case params == "":
		return name
	}
	return name + " " + params
}

// CommandFrame returns the frame that carries the commands, chained with
// '|' when there are several, addressed to machine (0: no address). It
// fails when a command's text holds a line break or a '|'.
func CommandFrame(machine int, cmds ...Command) (Frame, error) {
	bodies := make([]string, len(cmds))
	for i, c := range cmds {
		b := c.CommandBody()
		if strings.ContainsAny(b, "|\r\n") {
			return Frame{}, fmt.Errorf("kramer: command %q: %w", truncate(b), ErrMalformed)
		}
		bodies[i] = b
	}
	f := Frame{Addressed: machine > 0, Machine: machine, Body: strings.Join(bodies, "|")}
	return f, f.Validate()
}

// ReplyFrame returns the frame that carries r from machine (0: no address).
func ReplyFrame(machine int, r Reply) Frame {
	return Frame{Reply: true, Addressed: machine > 0, Machine: machine, Body: r.ReplyBody()}
}

// splitName splits a trimmed body into its upper-cased command name and
// the trimmed rest.
func splitName(t string) (name, rest string) {
	name, rest, _ = strings.Cut(t, " ")
	return upper(name), trim(rest)
}

// upper upper-cases ASCII letters only, keeping every other byte (and so
// every byte offset) as it is.
func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func trim(s string) string { return strings.Trim(s, " \t") }

// DecodeCommands turns a controller's frame into its commands (several
// when chained with '|'). A known command with malformed parameters (a
// missing one, a letter for a number, a port above MaxPorts) is an error
// wrapping ErrMalformed; a device answers it with ERR 001.
func DecodeCommands(f Frame) ([]Command, error) {
	if f.Reply {
		return nil, fmt.Errorf("kramer: %q is a device message, not a command: %w", truncate(f.String()), ErrMalformed)
	}
	pieces := strings.Split(f.Body, "|")
	cmds := make([]Command, 0, len(pieces))
	for _, p := range pieces {
		c, err := DecodeCommand(p)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, c)
	}
	return cmds, nil
}

// DecodeCommand decodes one command's text (no chaining).
func DecodeCommand(body string) (Command, error) {
	t := trim(body)
	if t == "" {
		return Handshake{}, nil
	}
	name, rest := splitName(t)
	bad := func(why string) error {
		return fmt.Errorf("kramer: %q: %s: %w", truncate(t), why, ErrMalformed)
	}
	switch name {
	case "ROUTE":
		p, err := numbers(rest, 3, 1)
		if err != nil {
			return nil, bad(err.Error())
		}
		return RouteSet{Layer: p[0], Output: p[1], Input: p[2]}, nil
	case "ROUTE?":
		p, err := numbers(rest, 2, 1)
		if err != nil {
			return nil, bad(err.Error())
		}
		return RouteQuery{Layer: p[0], Output: p[1]}, nil
	case "INFO-IO?", "MODEL?":
		if rest != "" {
			return nil, bad("takes no parameters")
		}
		if name == "MODEL?" {
			return ModelQuery{}, nil
		}
		return InfoIOQuery{}, nil
	case "LABEL?":
		p, err := numbers(rest, 2, -1)
		if err != nil {
			return nil, bad(err.Error())
		}
		return LabelQuery{Stage: p[0], Port: p[1]}, nil
	}
	return UnknownCommand{Name: name, Params: rest}, nil
}

// numbers parses exactly n comma-separated numbers; the one at index
// star (if any) may be '*' (All). The first is a layer (up to MaxLayer),
// the others ports (up to MaxPorts).
func numbers(s string, n, star int) ([]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) != n || s == "" {
		return nil, fmt.Errorf("want %d comma-separated parameters", n)
	}
	out := make([]int, n)
	for i, p := range parts {
		p = trim(p)
		if i == star && p == "*" {
			out[i] = All
			continue
		}
		limit := MaxPorts
		if i == 0 {
			limit = MaxLayer
		}
		v, err := parseNumber(p, limit)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// parseNumber parses decimal digits only, from 0 to limit.
func parseNumber(s string, limit int) (int, error) {
	if s == "" || len(s) > 6 {
		return 0, fmt.Errorf("%q is not a number from 0 to %d", truncate(s), limit)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number from 0 to %d", truncate(s), limit)
		}
		n = n*10 + int(c-'0')
	}
	if n > limit {
		return 0, fmt.Errorf("%q is not a number from 0 to %d", truncate(s), limit)
	}
	return n, nil
}

// stripOK removes every trailing "OK" (any case) from rest and reports
// whether there was one.
func stripOK(rest string) (string, bool) {
	ok := false
	for {
		u := upper(rest)
		switch {
		case u == "OK":
			return "", true
		case strings.HasSuffix(u, " OK") || strings.HasSuffix(u, "\tOK"):
			rest, ok = trim(rest[:len(rest)-2]), true
		default:
			return rest, ok
		}
	}
}

// errorSuffix finds a trailing "ERR nnn" (or "ERRnnn"): it returns the
// text before it (trimmed), the code, and whether there was one. ERR must
// start s or follow a space, a tab or a comma.
func errorSuffix(s string) (before string, code int, ok bool) {
	u := upper(s)
	i := strings.LastIndex(u, "ERR")
	if i < 0 || (i > 0 && !strings.ContainsRune(" \t,", rune(u[i-1]))) {
		return "", 0, false
	}
	digits := strings.TrimPrefix(u[i+3:], " ")
	if len(digits) == 0 || len(digits) > 3 {
		return "", 0, false
	}
	code, err := parseNumber(digits, 999)
	if err != nil {
		return "", 0, false
	}
	return trim(s[:i]), code, true
}

// DecodeReply turns a device's frame into its reply. A known message with
// malformed parameters (ROUTE, INFO-IO, LABEL, VID/AUD/AV) is an error
// wrapping ErrMalformed; a message this package does not know decodes to
// UnknownReply.
func DecodeReply(f Frame) (Reply, error) {
	if !f.Reply {
		return nil, fmt.Errorf("kramer: %q is a command, not a device message: %w", truncate(f.String()), ErrMalformed)
	}
	t := trim(f.Body)
	name, rest := splitName(t)
	rest, ok := stripOK(rest)
	if name == "OK" && rest == "" {
		return OK{}, nil
	}
	// A general error: "ERR 003", "ERR003".
	if strings.HasPrefix(name, "ERR") {
		if _, code, isErr := errorSuffix(withParams(name, rest)); isErr && (rest == "" || name == "ERR") {
			return Err{Code: code}, nil
		}
	}
	if before, code, isErr := errorSuffix(rest); isErr {
		return Err{Command: name, Params: before, Code: code}, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("kramer: %q: %s: %w", truncate(t), why, ErrMalformed)
	}
	switch name {
	case "ROUTE":
		p, err := numbers(rest, 3, 1)
		if err != nil {
			return nil, bad(err.Error())
		}
		return RouteStatus{Layer: p[0], Output: p[1], Input: p[2], OK: ok}, nil
	case "INFO-IO", "INFO-IO?":
		in, out, found := strings.Cut(rest, ",")
		if !found {
			return nil, bad(`want "IN n,OUT m"`)
		}
		ni, err1 := count(in, "IN")
		no, err2 := count(out, "OUT")
		if err1 != nil || err2 != nil {
			return nil, bad(`want "IN n,OUT m"`)
		}
		return IOCount{Inputs: ni, Outputs: no}, nil
	case "MODEL":
		return Model{Name: rest}, nil
	case "LABEL":
		parts := strings.SplitN(rest, ",", 4)
		if len(parts) != 4 {
			return nil, bad(`want "stage,index,on,text"`)
		}
		p, err := numbers(strings.Join(parts[:3], ","), 3, -1)
		if err != nil || p[0] > 1 || p[2] > 1 {
			return nil, bad(`want "stage,index,on,text" with stage and on 0 or 1`)
		}
		return Label{Stage: p[0], Port: p[1], On: p[2] == 1, Text: trim(parts[3])}, nil
	case "VID", "AUD", "AV":
		links, err := parseLinks(rest)
		if err != nil {
			return nil, bad(err.Error())
		}
		return Switched{Kind: name, Links: links}, nil
	}
	return UnknownReply{Body: t}, nil
}

// count parses "IN 8" (prefix "IN") into 8.
func count(s, prefix string) (int, error) {
	s = trim(s)
	if len(s) < len(prefix) || upper(s[:len(prefix)]) != prefix {
		return 0, ErrMalformed
	}
	return parseNumber(trim(s[len(prefix):]), MaxPorts)
}

// parseLinks parses "in>out,in>out".
func parseLinks(s string) ([]Link, error) {
	if s == "" {
		return nil, fmt.Errorf(`want "in>out,…"`)
	}
	var links []Link
	for _, p := range strings.Split(s, ",") {
		in, out, found := strings.Cut(trim(p), ">")
		if !found {
			return nil, fmt.Errorf(`want "in>out", got %q`, truncate(p))
		}
		l := Link{Output: All}
		var err error
		if l.Input, err = parseNumber(trim(in), MaxPorts); err != nil {
			return nil, err
		}
		if out = trim(out); out != "*" {
			if l.Output, err = parseNumber(out, MaxPorts); err != nil {
				return nil, err
			}
		}
		links = append(links, l)
	}
	return links, nil
}

// Error codes of Protocol 3000 ("Result and Error Codes").
const (
	CodeSyntax         = 1
	CodeNotAvailable   = 2
	CodeOutOfRange     = 3
	CodeUnauthorized   = 4
	CodeInternal       = 5
	CodeBusy           = 6
	CodeWrongCRC       = 7
	CodeTimeout        = 8
	CodeNotSupported   = 15
	CodeDeviceSpecific = 31
	CodeWrongMode      = 33
	CodeNotInitialized = 34
)

var codeWords = map[int]string{
	0:                  "no error",
	CodeSyntax:         "syntax error",
	CodeNotAvailable:   "command not available",
	CodeOutOfRange:     "parameter out of range",
	CodeUnauthorized:   "unauthorized access",
	CodeInternal:       "internal firmware error",
	CodeBusy:           "device busy",
	CodeWrongCRC:       "wrong CRC",
	CodeTimeout:        "timeout",
	10:                 "not enough space for data",
	11:                 "not enough space in the file system",
	12:                 "file does not exist",
	13:                 "file cannot be created",
	14:                 "file cannot be opened",
	CodeNotSupported:   "feature not supported",
	21:                 "packet CRC error",
	22:                 "packet number not expected",
	23:                 "packet size wrong",
	30:                 "EDID corrupted",
	CodeDeviceSpecific: "device-specific error",
	32:                 "file has the same CRC, not changed",
	CodeWrongMode:      "wrong operation mode",
	CodeNotInitialized: "device or chip not initialized",
}

// CodeText returns the meaning of an error code in words ("parameter out
// of range"), or "error nnn" for a code the protocol does not list.
func CodeText(code int) string {
	if w, ok := codeWords[code]; ok {
		return w
	}
	return fmt.Sprintf("error %03d", code)
}

// DeviceError is an error code the device answered a command with. It is
// a refusal (errors.Is(err, drivers.ErrRefused)) unless the code says the
// device was busy or timed out, which a retry may cure.
type DeviceError struct {
	Command string // the command refused, as sent ("ROUTE 1,3,7")
	Code    int
}

// Error returns "ERR 003 (parameter out of range)".
func (e *DeviceError) Error() string {
	return fmt.Sprintf("ERR %03d (%s)", e.Code, CodeText(e.Code))
}

// Temporary reports whether retrying may help (busy, timeout).
func (e *DeviceError) Temporary() bool { return e.Code == CodeBusy || e.Code == CodeTimeout }

// Is makes a lasting error code match drivers.ErrRefused.
func (e *DeviceError) Is(target error) bool {
	return target == drivers.ErrRefused && !e.Temporary()
}
