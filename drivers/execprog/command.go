package execprog

// This file is the same in every controller package of drivers/ that takes
// named commands with templates (httpreq, osc, mqttpub, wol, execprog), but
// for its package clause and what a package does not use (wol has no
// templates; execprog needs no literal()).

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

// parseSend reads the args of driver:send: a command name and, optionally, a
// table of values for the command's templates.
//
//	driver:send("power_on")                            -- {command = "power_on"}
//	driver:send{command = "input", args = {n = 3}}
func parseSend(args map[string]any) (command string, data map[string]any, err error) {
	for k := range args {
		if k != "command" && k != "args" {
			return "", nil, fmt.Errorf("unknown field %q: send takes a command name and args, like {command = \"input\", args = {n = 3}}", k)
		}
	}
	c, ok := args["command"]
	if !ok || c == nil {
		return "", nil, errors.New("no command: send a command name, like send(\"power_on\") or send{command = \"input\", args = {n = 3}}")
	}
	command, ok = c.(string)
	if !ok || command == "" {
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
	return command, data, nil
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

// unknownCommand is the error for a command name that is not configured.
func unknownCommand(what, command string, known []string) error {
	slices.Sort(known)
	if len(known) == 0 {
		return fmt.Errorf("unknown %s %q: none is configured", what, command)
	}
	return fmt.Errorf("unknown %s %q (configured: %s)", what, command, strings.Join(known, ", "))
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

// tmpl is one text/template from the settings: the text of a field whose
// {{.key}} actions take the values of the send's args.
type tmpl struct {
	field string             // the setting it came from, for errors: "requests.cue.path"
	text  string             // as written
	t     *template.Template // nil when text has no actions: it is used as written
}

// parseTmpl parses text from the named setting. A template refers to args
// as {{.n}}; a key the args do not have is an error when it is expanded.
// Besides text/template's own functions, json (a value as JSON) and join (a
// list joined with a separator) are available.
func parseTmpl(field, text string) (*tmpl, error) {
	t, err := template.New(field).Option("missingkey=error").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: template %q does not parse: %w", field, shorten(text), err)
	}
	out := &tmpl{field: field, text: text}
	if t.Tree != nil && t.Root != nil {
		for _, n := range t.Root.Nodes {
			if n.Type() != parse.NodeText {
				out.t = t
				break
			}
		}
	}
	return out, nil
}

// expand executes the template with data.
func (t *tmpl) expand(data map[string]any) (string, error) {
	if t.t == nil {
		return t.text, nil
	}
	var b strings.Builder
	if err := t.t.Execute(&b, data); err != nil {
		if key, ok := missingKey(err); ok {
			keys := make([]string, 0, len(data))
			for k := range data {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			have := "args has none"
			if len(keys) > 0 {
				have = "args has " + strings.Join(keys, ", ")
			}
			return "", fmt.Errorf("%s: template %q needs args.%s (%s)", t.field, shorten(t.text), key, have)
		}
		return "", fmt.Errorf("%s: template %q: %w", t.field, shorten(t.text), err)
	}
	return b.String(), nil
}

func shorten(s string) string {
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

var templateFuncs = template.FuncMap{
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
