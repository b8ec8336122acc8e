package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits that bound what the parsers accept. Anything beyond them is an
// error, never a panic or an unbounded allocation.
const (
	// MaxBody is the largest response body, in bytes, the driver reads, and
	// the largest reply the parsers accept.
	MaxBody = 64 << 10
	// MaxPorts is the largest port number and port count accepted (the
	// largest KUMO is 64 x 64).
	MaxPorts = 256
	// MaxParamID is the longest parameter id accepted, in bytes.
	MaxParamID = 128
	// MaxValue is the longest value accepted in a request, in bytes.
	MaxValue = 4096
	// MaxLabelLine is the longest button name line a KUMO keeps, in
	// characters.
	MaxLabelLine = 20
	// DefaultPort is the TCP port of the KUMO web server.
	DefaultPort = 80
)

// Paths, actions and names of the KUMO HTTP interface.
const (
	// ConfigPath answers action=get and action=set.
	ConfigPath = "/config"
	// OptionsPath is the older path; the whole routing is read through it.
	OptionsPath = "/options"
	// LoginPath takes a form POST of PasswordField when user
	// authentication is on; the reply sets SessionCookie.
	LoginPath     = "/authenticator/login"
	PasswordField = "password_provided"
	SessionCookie = "session"

	ActionGet = "get"
	ActionSet = "set"
)

// Parameters the driver reads.
const (
	ParamNumberOfSources      = "eParamID_NumberOfSources"
	ParamNumberOfDestinations = "eParamID_NumberOfDestinations"
	ParamProductID            = "eParamID_KumoProductID"
	// ParamDestinationAll is every destination's source in one read,
	// answered as text such as [1,2,4,4] with alt=text-plain; firmware
	// without it answers {}.
	ParamDestinationAll = "eParamID_XPT_DestinationAll_Status"
)

// Errors returned by the parsers, wrapped with context.
var (
	ErrMalformed = errors.New("malformed")
	// ErrNoRoutingList is ParseRoutingList's answer to {}: the firmware
	// cannot give the whole routing in one read.
	ErrNoRoutingList = errors.New("the device does not offer the whole routing in one read")
)

// ParamKind is what a parameter id names.
type ParamKind int

// Kinds of parameter. Ports and lines are numbered from 1, as on the wire
// and on the panel.
const (
	// ParamOther is any other well-formed parameter id (Param.Name).
	ParamOther ParamKind = iota
	// ParamDestinationStatus is eParamID_XPT_Destination{Port}_Status: the
	// source routed to a destination.
	ParamDestinationStatus
	// ParamDestinationLocked is eParamID_XPT_Destination{Port}_Locked: 1
	// when the destination is locked against changes, 0 otherwise.
	ParamDestinationLocked
	// ParamDestinationLine is eParamID_XPT_Destination{Port}_Line_{Line}:
	// one of the two lines of a destination button's name.
	ParamDestinationLine
	// ParamSourceLine is eParamID_XPT_Source{Port}_Line_{Line}.
	ParamSourceLine
)

// Param is a parsed parameter id.
type Param struct {
	Kind ParamKind
	Port int    // from 1; 0 for ParamOther
	Line int    // 1 or 2 for the line kinds; 0 otherwise
	Name string // the whole id for ParamOther; "" otherwise
}

var (
	paramRe = regexp.MustCompile(`^eParamID_[A-Za-z0-9_]+$`)
	xptRe   = regexp.MustCompile(`^eParamID_XPT_(Source|Destination)([0-9]+)_(Status|Locked|Line_([0-9]+))$`)
)

// ParseParam parses a parameter id. An id of a crosspoint shape with a bad
// number (0, a leading zero, above MaxPorts, a line other than 1 or 2) is
// malformed; any other id of letters, digits and '_' after "eParamID_" is
// ParamOther.
func ParseParam(s string) (Param, error) {
	if len(s) > MaxParamID || !paramRe.MatchString(s) {
		return Param{}, fmt.Errorf("kumo: parameter id %q: %w", Clip(s, 64), ErrMalformed)
	}
	m := xptRe.FindStringSubmatch(s)
	if m == nil {
		return Param{Kind: ParamOther, Name: s}, nil
	}
	var p Param
	switch {
	case m[4] != "":
		line, ok := number(m[4], 2)
		if !ok {
			return Param{}, fmt.Errorf("kumo: parameter id %q: line must be 1 or 2: %w", s, ErrMalformed)
		}
		p.Line = line
		p.Kind = ParamSourceLine
		if m[1] == "Destination" {
			p.Kind = ParamDestinationLine
		}
	case m[1] == "Source": // a source has no status or lock: not a crosspoint id
		return Param{Kind: ParamOther, Name: s}, nil
	case m[3] == "Status":
		p.Kind = ParamDestinationStatus
	default:
		p.Kind = ParamDestinationLocked
	}
	port, ok := number(m[2], MaxPorts)
	if !ok {
		return Param{}, fmt.Errorf("kumo: parameter id %q: port number out of range 1..%d: %w", s, MaxPorts, ErrMalformed)
	}
	p.Port = port
	return p, nil
}

// number parses a decimal from 1 to max without a leading zero.
func number(s string, max int) (int, bool) {
	if s == "" || s[0] == '0' || len(s) > 6 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, false
	}
	return n, true
}

// String returns the parameter id.
func (p Param) String() string {
	switch p.Kind {
	case ParamDestinationStatus:
		return DestinationStatus(p.Port)
	case ParamDestinationLocked:
		return DestinationLocked(p.Port)
	case ParamDestinationLine:
		return DestinationLine(p.Port, p.Line)
	case ParamSourceLine:
		return SourceLine(p.Port, p.Line)
	}
	return p.Name
}

// DestinationStatus is the id of the source routed to destination n (from 1).
func DestinationStatus(n int) string { return "eParamID_XPT_Destination" + strconv.Itoa(n) + "_Status" }

// DestinationLocked is the id of destination n's lock.
func DestinationLocked(n int) string { return "eParamID_XPT_Destination" + strconv.Itoa(n) + "_Locked" }

// DestinationLine is the id of line (1 or 2) of destination n's name.
func DestinationLine(n, line int) string {
	return "eParamID_XPT_Destination" + strconv.Itoa(n) + "_Line_" + strconv.Itoa(line)
}

// SourceLine is the id of line (1 or 2) of source n's name.
func SourceLine(n, line int) string {
	return "eParamID_XPT_Source" + strconv.Itoa(n) + "_Line_" + strconv.Itoa(line)
}

// Request is one get or set as the query of a GET to ConfigPath.
type Request struct {
	Action  string // ActionGet or ActionSet
	ParamID string
	Value   string // for ActionSet
}

// Query returns the request's query string, as AJA's clients send it:
// action=get&configid=0&paramid=… (and &value=… for a set).
func (r Request) Query() string {
	q := url.Values{"action": {r.Action}, "configid": {"0"}, "paramid": {r.ParamID}}
	if r.Action == ActionSet {
		q.Set("value", r.Value)
	}
	return q.Encode()
}

// ParseRequest reads a get or set from a request's query. Other actions
// (connect, wait_for_config_events) and other parameters (configid, alt,
// a cache-busting _) are not part of a Request: the caller looks at them.
func ParseRequest(q url.Values) (Request, error) {
	r := Request{Action: q.Get("action"), ParamID: q.Get("paramid"), Value: q.Get("value")}
	switch r.Action {
	case ActionGet:
		if q.Has("value") {
			return Request{}, fmt.Errorf("kumo: a get takes no value: %w", ErrMalformed)
		}
	case ActionSet:
		if !q.Has("value") {
			return Request{}, fmt.Errorf("kumo: set %s without a value: %w", Clip(r.ParamID, 64), ErrMalformed)
		}
		if len(r.Value) > MaxValue || !utf8.ValidString(r.Value) {
			return Request{}, fmt.Errorf("kumo: set %s: value too long or not UTF-8: %w", Clip(r.ParamID, 64), ErrMalformed)
		}
	default:
		return Request{}, fmt.Errorf("kumo: action %q: %w", Clip(r.Action, 32), ErrMalformed)
	}
	if _, err := ParseParam(r.ParamID); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Reply is the JSON object the KUMO answers a get or a set with:
// {"paramid":"…","name":"eParamID_…","value":"3","value_name":"3"}. Value
// and ValueName hold the device's text; a number, a boolean, an object or an
// array in the JSON is kept as its JSON text. Error holds an "error" member
// when the reply has one (AJA documents none for the KUMO; see Failed).
type Reply struct {
	ParamID   string // the device's own number for the parameter
	Name      string // the parameter id
	Value     string
	ValueName string // the value's name for enums, the value again for numbers, "" for text
	HasValue  bool   // whether the reply had a non-null value
	Error     string
}

// ParseReply parses a reply body. The body must be one JSON object of at
// most MaxBody bytes; unknown members are ignored.
func ParseReply(b []byte) (Reply, error) {
	if len(b) > MaxBody {
		return Reply{}, fmt.Errorf("kumo: reply of %d bytes: %w", len(b), ErrMalformed)
	}
	var raw struct {
		ParamID   json.RawMessage `json:"paramid"`
		Name      json.RawMessage `json:"name"`
		Value     json.RawMessage `json:"value"`
		ValueName json.RawMessage `json:"value_name"`
		Error     json.RawMessage `json:"error"`
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Reply{}, fmt.Errorf("kumo: reply %q is not a JSON object: %w", Clip(string(trimmed), 64), ErrMalformed)
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return Reply{}, fmt.Errorf("kumo: reply %q: %v: %w", Clip(string(trimmed), 64), err, ErrMalformed)
	}
	var r Reply
	var err error
	fields := []struct {
		name string
		raw  json.RawMessage
		dst  *string
	}{
		{"paramid", raw.ParamID, &r.ParamID},
		{"name", raw.Name, &r.Name},
		{"value", raw.Value, &r.Value},
		{"value_name", raw.ValueName, &r.ValueName},
		{"error", raw.Error, &r.Error},
	}
	for _, f := range fields {
		if *f.dst, err = jsonText(f.raw); err != nil {
			return Reply{}, fmt.Errorf("kumo: reply member %s: %v: %w", f.name, err, ErrMalformed)
		}
	}
	r.HasValue = len(raw.Value) > 0 && string(raw.Value) != "null"
	return r, nil
}

// jsonText returns a JSON value as text: a string's contents, null or
// absent as "", anything else compacted.
func jsonText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", err
	}
	return strings.ToValidUTF8(buf.String(), "\uFFFD"), nil
}

// Marshal returns the reply as the device sends it, every member a JSON
// string; value is null when !HasValue, and error is left out when empty.
// ParseReply(r.Marshal()) == r for every r that ParseReply returned.
func (r Reply) Marshal() []byte {
	type wire struct {
		ParamID   string  `json:"paramid"`
		Name      string  `json:"name"`
		Value     *string `json:"value"`
		ValueName string  `json:"value_name"`
		Error     string  `json:"error,omitempty"`
	}
	w := wire{ParamID: r.ParamID, Name: r.Name, ValueName: r.ValueName, Error: r.Error}
	if r.HasValue {
		w.Value = &r.Value
	}
	b, err := json.Marshal(w)
	if err != nil { // strings always marshal
		panic(err)
	}
	return b
}

// Failed reports whether the reply carries an error: an "error" member
// other than "", "0" or "false".
func (r Reply) Failed() bool {
	switch strings.ToLower(strings.TrimSpace(r.Error)) {
	case "", "0", "false":
		return false
	}
	return true
}

// Port returns the reply's value as a port number from 0 (no source) to
// max.
func (r Reply) Port(max int) (int, error) {
	if !r.HasValue {
		return 0, fmt.Errorf("kumo: %s: the reply has no value: %w", Clip(r.Name, 64), ErrMalformed)
	}
	n, err := strconv.Atoi(strings.TrimSpace(r.Value))
	if err != nil || n < 0 || n > max {
		return 0, fmt.Errorf("kumo: %s: value %q is not a number from 0 to %d: %w", Clip(r.Name, 64), Clip(r.Value, 32), max, ErrMalformed)
	}
	return n, nil
}

// ParseRoutingList parses the answer to a read of ParamDestinationAll:
// a JSON array of source numbers (0 to MaxPorts), one per destination from
// 1, at most MaxPorts long. {} is ErrNoRoutingList.
func ParseRoutingList(b []byte) ([]int, error) {
	if len(b) > MaxBody {
		return nil, fmt.Errorf("kumo: routing list of %d bytes: %w", len(b), ErrMalformed)
	}
	t := bytes.TrimSpace(b)
	if len(t) > 0 && t[0] == '{' {
		var obj map[string]json.RawMessage
		if json.Unmarshal(t, &obj) == nil && len(obj) == 0 {
			return nil, fmt.Errorf("kumo: %s answered {}: %w", ParamDestinationAll, ErrNoRoutingList)
		}
	}
	if len(t) == 0 || t[0] != '[' {
		return nil, fmt.Errorf("kumo: routing list %q is not a JSON array: %w", Clip(string(t), 64), ErrMalformed)
	}
	var list []any
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	if err := dec.Decode(&list); err != nil || dec.More() {
		return nil, fmt.Errorf("kumo: routing list %q: %w", Clip(string(t), 64), ErrMalformed)
	}
	if len(list) > MaxPorts {
		return nil, fmt.Errorf("kumo: routing list of %d destinations (at most %d): %w", len(list), MaxPorts, ErrMalformed)
	}
	out := make([]int, len(list))
	for i, e := range list {
		n, ok := e.(json.Number)
		v, err := strconv.Atoi(string(n))
		if !ok || err != nil || v < 0 || v > MaxPorts {
			return nil, fmt.Errorf("kumo: routing list entry %d (%v) is not a source number: %w", i+1, Clip(fmt.Sprint(e), 32), ErrMalformed)
		}
		out[i] = v
	}
	return out, nil
}

// FormatRoutingList returns routing as ParseRoutingList reads it:
// [1,2,4,4].
func FormatRoutingList(routing []int) []byte {
	b := []byte{'['}
	for i, v := range routing {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(v), 10)
	}
	return append(b, ']')
}

// Label joins the two lines of a button name as one label: the lines
// trimmed, joined by a space when both are there.
func Label(line1, line2 string) string {
	line1, line2 = strings.TrimSpace(line1), strings.TrimSpace(line2)
	switch {
	case line1 == "":
		return line2
	case line2 == "":
		return line1
	}
	return line1 + " " + line2
}

var (
	tagRe   = regexp.MustCompile(`<[^>]*>`)
	spaceRe = regexp.MustCompile(`\s+`)
)

// PlainText returns a response body as the device's own words for an error
// message: HTML tags removed, control characters and runs of white space
// made one space, invalid UTF-8 replaced, cut to max bytes on a character
// boundary ("…" marks a cut).
func PlainText(body []byte, max int) string {
	if len(body) > MaxBody {
		body = body[:MaxBody]
	}
	s := tagRe.ReplaceAllString(strings.ToValidUTF8(string(body), "\uFFFD"), " ")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(spaceRe.ReplaceAllString(s, " "))
	return Clip(s, max)
}

// Clip cuts s to at most max bytes (4 when max is smaller) on a character
// boundary, marking a cut with "…".
func Clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	if cut < 1 {
		cut = 1 // a short limit still keeps a character
	}
	if cut >= len(s) {
		return s
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "") + "…"
}

// StatusError is an HTTP answer other than 200 OK, in the device's words.
type StatusError struct {
	Code   int    // 403
	Status string // "403 Forbidden"
	Text   string // the body as PlainText
}

func (e *StatusError) Error() string {
	s := "HTTP " + e.Status
	if e.Text != "" && e.Text != e.Status {
		s += ": " + e.Text
	}
	return s
}
