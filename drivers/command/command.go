// Package command is the part that the control-action drivers taking named
// commands (httpreq, osc, mqttpub, wol, execprog, line) have in common: reading
// the args of driver:send — a command name and, optionally, a table of
// values — and expanding the text/templates of a command's settings with
// those values.
//
// A driver parses its templates once, when its configuration is loaded
// (ParseTemplate), and for each send calls Parse, looks the name up in its
// own configuration (Unknown makes the error for a name it does not have)
// and expands the command's templates with the values (Template.Expand).
// Errors are written for whoever wrote the policy or the settings: they
// name the setting, quote the template and list what args has.
package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// Parse reads the args of driver:send: a command name and, optionally, a
// table of values for the command's templates. data is never nil; whole
// numbers in it are int64 (see Template).
//
//	driver:send("power_on")                            -- {command = "power_on"}
//	driver:send{command = "input", args = {n = 3}}
func Parse(args map[string]any) (name string, data map[string]any, err error) {
	for k := range args {
		if k != "command" && k != "args" {
			return "", nil, fmt.Errorf("unknown field %q: send takes a command name and args, like {command = \"input\", args = {n = 3}}", k)
		}
	}
	c, ok := args["command"]
	if !ok || c == nil {
		return "", nil, errors.New("no command: send a command name, like send(\"power_on\") or send{command = \"input\", args = {n = 3}}")
	}
	name, ok = c.(string)
	if !ok || name == "" {
		return "", nil, fmt.Errorf("command must be a command name, not %v", describeValue(c))
	}
	data = map[string]any{}
	switch a := args["args"].(type) {
	case nil:
	case map[string]any:
		data = normalize(a).(map[string]any)
	case []any:
		if len(a) > 0 { // an empty Lua table converts as a list or a table
			return "", nil, fmt.Errorf("args must be a table of named values, like {n = 3}, not a list")
		}
	default:
		return "", nil, fmt.Errorf("args must be a table of named values, like {n = 3}, not %v", describeValue(a))
	}
	return name, data, nil
}

// normalize returns v with every whole float64 made an int64, in nested
// tables and lists too, so that a template prints 1000000 and not 1e+06 for
// args that went through JSON (an action resumed after a restart).
func normalize(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return normalize(f)
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

// Unknown is the error for a command name that is not configured. what is
// the driver's word for its commands ("request", "message", "host",
// "program"); known lists the configured names, and is sorted in place.
func Unknown(what, name string, known []string) error {
	slices.Sort(known)
	if len(known) == 0 {
		return fmt.Errorf("unknown %s %q: none is configured", what, name)
	}
	return fmt.Errorf("unknown %s %q (configured: %s)", what, name, strings.Join(known, ", "))
}

func describeValue(v any) string {
	switch v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case map[string]any:
		return "a table"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

// Template is one text/template from the settings: the text of a field
// whose {{.key}} actions take the values of the send's args.
type Template struct {
	field string             // the setting it came from, for errors: "requests.cue.path"
	text  string             // as written
	t     *template.Template // nil when text has no actions: it is used as written
}

// ParseTemplate parses text from the setting named field, which is also the
// template's name in text/template's own messages. A template refers to args
// as {{.n}}; a key the args do not have is an error when it is expanded.
// Besides text/template's own functions, json (a value as compact JSON,
// {{json .}}) and join (a list's elements joined with a separator,
// {{join .names ","}}) are available. The error wraps text/template's
// (errors.Unwrap gives it), for a driver that words it its own way.
func ParseTemplate(field, text string) (*Template, error) {
	t, err := template.New(field).Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: template %q does not parse: %w", field, Shorten(text), err)
	}
	out := &Template{field: field, text: text}
	if t.Tree != nil && t.Root != nil {
		// Literal only when the text nodes are the whole text: a comment
		// ({{/* … */}}) or a trim marker leaves only text nodes, but not
		// the text as written.
		var plain strings.Builder
		for _, n := range t.Root.Nodes {
			if n.Type() != parse.NodeText {
				plain.Reset()
				break
			}
			plain.Write(n.(*parse.TextNode).Text)
		}
		if plain.String() != text {
			out.t = t
		}
	}
	return out, nil
}

// Field is the setting the template came from, as given to ParseTemplate:
// the prefix of a driver's own errors about what it expands to.
func (t *Template) Field() string { return t.field }

// Literal reports whether the template has no actions: it expands to its
// text as written, whatever the args.
func (t *Template) Literal() bool { return t.t == nil }

// Expand executes the template with data, the args from Parse. A key the
// template uses and data lacks is a *MissingKeyError.
func (t *Template) Expand(data map[string]any) (string, error) {
	return t.expand(data, -1)
}

// ExpandLimit is Expand for a driver that bounds what it sends: once the
// expansion passes limit bytes it stops, with a *TooLongError.
func (t *Template) ExpandLimit(data map[string]any, limit int) (string, error) {
	return t.expand(data, max(limit, 0))
}

// expand is Expand with no limit when limit < 0.
func (t *Template) expand(data map[string]any, limit int) (string, error) {
	if t.t == nil {
		if limit >= 0 && len(t.text) > limit {
			return "", &TooLongError{Field: t.field, Text: t.text, Limit: limit}
		}
		return t.text, nil
	}
	b := &limitedBuilder{limit: limit}
	if err := t.t.Execute(b, data); err != nil {
		if errors.Is(err, errLimit) {
			return "", &TooLongError{Field: t.field, Text: t.text, Limit: limit}
		}
		if key, ok := missingKey(err); ok {
			keys := make([]string, 0, len(data))
			for k := range data {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			return "", &MissingKeyError{Field: t.field, Text: t.text, Key: key, Have: keys}
		}
		return "", fmt.Errorf("%s: template %q: %w", t.field, Shorten(t.text), err)
	}
	return b.b.String(), nil
}

// MissingKeyError is the error of Expand for a key the template uses
// ({{.n}}) and the args do not have.
type MissingKeyError struct {
	Field string   // the template's setting, as given to ParseTemplate
	Text  string   // the template as written
	Key   string   // the key missing: "n" for args.n
	Have  []string // the keys args has, sorted
}

func (e *MissingKeyError) Error() string {
	have := "args has none"
	if len(e.Have) > 0 {
		have = "args has " + strings.Join(e.Have, ", ")
	}
	return fmt.Sprintf("%s: template %q needs args.%s (%s)", e.Field, Shorten(e.Text), e.Key, have)
}

// TooLongError is the error of ExpandLimit for a template that expands to
// more than its limit.
type TooLongError struct {
	Field string // the template's setting, as given to ParseTemplate
	Text  string // the template as written
	Limit int    // in bytes
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("%s: template %q expands to more than %d bytes", e.Field, Shorten(e.Text), e.Limit)
}

var errLimit = errors.New("limit reached")

// limitedBuilder is an io.Writer into a strings.Builder that refuses to
// grow past limit bytes; limit < 0 is no limit. It has Write alone, so that
// every write is counted.
type limitedBuilder struct {
	b     strings.Builder
	limit int
}

func (l *limitedBuilder) Write(p []byte) (int, error) {
	if l.limit >= 0 && l.b.Len()+len(p) > l.limit {
		return 0, errLimit
	}
	return l.b.Write(p)
}

// Shorten makes s fit in an error message: its runs of white space made one
// space, and cut at 80 characters.
func Shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 80 {
		s = string(r[:80]) + "…"
	}
	return s
}

// missingKey extracts the key from text/template's missingkey=error failure.
func missingKey(err error) (string, bool) {
	var execErr template.ExecError
	if !errors.As(err, &execErr) {
		return "", false
	}
	const marker = "map has no entry for key "
	msg := execErr.Error()
	i := strings.LastIndex(msg, marker)
	if i < 0 {
		return "", false
	}
	q, err := strconv.QuotedPrefix(msg[i+len(marker):])
	if err != nil {
		return "", false
	}
	k, err := strconv.Unquote(q)
	return k, err == nil
}

var funcs = template.FuncMap{
	"json": jsonFunc,
	"join": joinFunc,
}

// jsonFunc renders v as compact JSON (without HTML escaping): {{json .}}.
func jsonFunc(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// joinFunc joins a list's elements with sep: {{join .names ","}}.
func joinFunc(list any, sep string) (string, error) {
	if list == nil {
		return "", nil
	}
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return "", fmt.Errorf("join: %T is not a list", list)
	}
	parts := make([]string, v.Len())
	for i := range parts {
		parts[i] = fmt.Sprint(v.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}
