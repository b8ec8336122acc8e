package command_test

// No test in the five drivers called their copies of command.go directly:
// they exercise it through Check and Do, and those tests stay where they
// are. The cases below that came from them (the send-argument and
// missing-key rows of httpreq's and execprog's TestCheck, json and join from
// execprog's TestRun, 1000000 and {{json .}} from httpreq's TestRequest) are
// here too, asserted on whole messages.

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"understudy/drivers/command"
)

func send(name string, args map[string]any) map[string]any {
	m := map[string]any{"command": name}
	if args != nil {
		m["args"] = args
	}
	return m
}

// expand parses text as the setting "x.y" and expands it with data.
func expand(t *testing.T, text string, data map[string]any) (string, error) {
	t.Helper()
	tm, err := command.ParseTemplate("x.y", text)
	if err != nil {
		t.Fatalf("ParseTemplate(%q): %v", text, err)
	}
	return tm.Expand(data)
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args map[string]any
		name string
		data map[string]any
	}{
		{map[string]any{"command": "off"}, "off", map[string]any{}},
		{map[string]any{"command": "off", "args": nil}, "off", map[string]any{}},
		{map[string]any{"command": "off", "args": []any{}}, "off", map[string]any{}}, // an empty Lua table
		{send("input", map[string]any{"n": 3, "a": "x", "b": nil}), "input", map[string]any{"n": 3, "a": "x", "b": nil}},
	} {
		name, data, err := command.Parse(tc.args)
		if err != nil || name != tc.name || data == nil || !reflect.DeepEqual(data, tc.data) {
			t.Errorf("Parse(%v) = %q, %#v, %v; want %q, %#v", tc.args, name, data, err, tc.name, tc.data)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{}, `no command: send a command name, like send("power_on") or send{command = "input", args = {n = 3}}`},
		{map[string]any{"command": nil}, "no command: "},
		{map[string]any{"command": ""}, `command must be a command name, not the string ""`},
		{map[string]any{"command": 3}, "command must be a command name, not 3 (int)"},
		{map[string]any{"command": map[string]any{}}, "command must be a command name, not a table"},
		{map[string]any{"command": []any{"a"}}, "command must be a command name, not a list"},
		{map[string]any{"command": "off", "n": 3}, `unknown field "n": send takes a command name and args, like {command = "input", args = {n = 3}}`},
		{map[string]any{"command": "off", "args": "x"}, `args must be a table of named values, like {n = 3}, not the string "x"`},
		{map[string]any{"command": "off", "args": 1.5}, "args must be a table of named values, like {n = 3}, not 1.5 (float64)"},
		{map[string]any{"command": "off", "args": []any{1}}, "args must be a table of named values, like {n = 3}, not a list"},
	} {
		name, data, err := command.Parse(tc.args)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || name != "" || data != nil {
			t.Errorf("Parse(%v) = %q, %v, %v; want an error starting %q", tc.args, name, data, err, tc.want)
		}
	}
}

func TestUnknown(t *testing.T) {
	known := []string{"plain", "dir", "ok", "missing"}
	if err := command.Unknown("program", "rm", known); err == nil || err.Error() != `unknown program "rm" (configured: dir, missing, ok, plain)` {
		t.Errorf("error %v", err)
	}
	if err := command.Unknown("host", "c", nil); err == nil || err.Error() != `unknown host "c": none is configured` {
		t.Errorf("error %v", err)
	}
}

// Args that went through JSON (an action resumed after a restart) have
// float64 or json.Number for every number: whole ones print as integers.
func TestNumbersNormalised(t *testing.T) {
	_, data, err := command.Parse(send("a", map[string]any{
		"big":    float64(1000000),
		"neg":    float64(-3),
		"frac":   0.5,
		"huge":   float64(1 << 60), // beyond float64's exact integers: left alone
		"num":    json.Number("12"),
		"numf":   json.Number("2.0"),
		"numx":   json.Number("0.25"),
		"nested": map[string]any{"l": []any{float64(2), 1.5, map[string]any{"n": float64(7)}}},
		"s":      "1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"big":    int64(1000000),
		"neg":    int64(-3),
		"frac":   0.5,
		"huge":   float64(1 << 60),
		"num":    int64(12),
		"numf":   int64(2),
		"numx":   0.25,
		"nested": map[string]any{"l": []any{int64(2), 1.5, map[string]any{"n": int64(7)}}},
		"s":      "1",
	}
	if !reflect.DeepEqual(data, want) {
		t.Errorf("data %#v, want %#v", data, want)
	}
	if got, err := expand(t, "/cues/{{.big}}/go {{json .nested}}", data); err != nil || got != `/cues/1000000/go {"l":[2,1.5,{"n":7}]}` {
		t.Errorf("expanded %q, %v", got, err)
	}
}

func TestMissingKey(t *testing.T) {
	for _, tc := range []struct {
		text string
		data map[string]any
		want string
	}{
		{"/input/{{.n}}", map[string]any{"a": 1}, `x.y: template "/input/{{.n}}" needs args.n (args has a)`},
		{"{{.a}}{{.b}}", map[string]any{"n": 1, "a": 1}, `x.y: template "{{.a}}{{.b}}" needs args.b (args has a, n)`},
		{"{{.n}}", map[string]any{}, `x.y: template "{{.n}}" needs args.n (args has none)`},
		{"{{.n}}", nil, `x.y: template "{{.n}}" needs args.n (args has none)`},
		{"  {{.n}}\n\n" + strings.Repeat("é", 100), map[string]any{}, `x.y: template "{{.n}} ` + strings.Repeat("é", 73) + `…" needs args.n`},
	} {
		if got, err := expand(t, tc.text, tc.data); err == nil || !strings.HasPrefix(err.Error(), tc.want) || got != "" {
			t.Errorf("expand(%q, %v) = %q, %v; want an error starting %q", tc.text, tc.data, got, err, tc.want)
		}
	}
	// The error is a *MissingKeyError, for a driver that words it its own way.
	_, err := expand(t, "IN {{.n}}", map[string]any{"b": 1, "a": 2})
	var mk *command.MissingKeyError
	if !errors.As(err, &mk) || mk.Field != "x.y" || mk.Text != "IN {{.n}}" || mk.Key != "n" || !reflect.DeepEqual(mk.Have, []string{"a", "b"}) {
		t.Errorf("error %#v", err)
	}
	// A nil value is there: it prints as text/template prints nil.
	if got, err := expand(t, "{{.a}}{{.b}}", map[string]any{"a": "x", "b": nil}); err != nil || got != "x<no value>" {
		t.Errorf("expanded %q, %v", got, err)
	}
	// Other execution errors are reported as they are.
	if _, err := expand(t, "{{index .l 5}}", map[string]any{"l": []any{1}}); err == nil ||
		!strings.HasPrefix(err.Error(), `x.y: template "{{index .l 5}}": `) || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("error %v", err)
	}
}

func TestParseTemplate(t *testing.T) {
	for _, tc := range []struct {
		text    string
		literal bool
	}{
		{"", true},
		{"/cue/go", true},
		{"{ \"a\": 1 }", true},
		{"/cue/{{.n}}", false},
		{"{{if .on}}1{{else}}0{{end}}", false},
	} {
		tm, err := command.ParseTemplate("messages.a.address", tc.text)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tc.text, err)
			continue
		}
		if tm.Literal() != tc.literal || tm.Field() != "messages.a.address" {
			t.Errorf("ParseTemplate(%q): literal %v, field %q", tc.text, tm.Literal(), tm.Field())
		}
		if tc.literal {
			if got, err := tm.Expand(nil); err != nil || got != tc.text {
				t.Errorf("literal %q expanded to %q, %v", tc.text, got, err)
			}
		}
	}
	for _, text := range []string{"/{{.x", "{{if}}", "{{end}}", "{{", "{{nosuchfunc 1}}"} {
		tm, err := command.ParseTemplate("requests.a.path", text)
		if want := `requests.a.path: template "` + text + `" does not parse: `; err == nil || !strings.HasPrefix(err.Error(), want) || tm != nil {
			t.Errorf("ParseTemplate(%q) = %v, %v; want an error starting %q", text, tm, err, want)
		}
	}
	// The error wraps text/template's, which names the template by field.
	_, err := command.ParseTemplate("on", "IN {{.n")
	if inner := errors.Unwrap(err); inner == nil || inner.Error() != "template: on:1: unclosed action" {
		t.Errorf("unwrapped %v", inner)
	}
	// Comments and trim markers leave only text nodes, but not the text as
	// written: such a template is not literal.
	for text, want := range map[string]string{
		"a{{/* c */}}b":       "ab",
		"a {{- /* c */ -}} b": "ab",
		"a {{- `` -}} b":      "ab",
		"{{/* only */}}":      "",
		"x{{/* c */}}{{.n}}":  "x3",
	} {
		tm, err := command.ParseTemplate("x.y", text)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", text, err)
			continue
		}
		if got, err := tm.Expand(map[string]any{"n": 3}); tm.Literal() || err != nil || got != want {
			t.Errorf("%q: literal %v, expanded %q, %v; want %q", text, tm.Literal(), got, err, want)
		}
	}
}

func TestExpandLimit(t *testing.T) {
	data := map[string]any{"s": "abcd", "l": []any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	for _, tc := range []struct {
		text  string
		limit int
		want  string // "" = too long
	}{
		{"ab", 2, "ab"},
		{"abc", 2, ""},
		{"", 0, ""},
		{"x{{.s}}", 5, "xabcd"},
		{"x{{.s}}", 4, ""},
		{"{{.s}}", 0, ""},
		{"{{range .l}}..........{{end}}", 100, strings.Repeat(".", 100)},
		{"{{range .l}}..........{{end}}", 99, ""},
	} {
		tm, err := command.ParseTemplate("x.y", tc.text)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tm.ExpandLimit(data, tc.limit)
		if tc.want != "" || tc.text == "" {
			if err != nil || got != tc.want {
				t.Errorf("ExpandLimit(%q, %d) = %q, %v; want %q", tc.text, tc.limit, got, err, tc.want)
			}
			continue
		}
		var tl *command.TooLongError
		want := `x.y: template "` + tc.text + `" expands to more than ` + strconv.Itoa(tc.limit) + ` bytes`
		if !errors.As(err, &tl) || tl.Field != "x.y" || tl.Text != tc.text || tl.Limit != tc.limit || err.Error() != want || got != "" {
			t.Errorf("ExpandLimit(%q, %d) = %q, %v; want %q", tc.text, tc.limit, got, err, want)
		}
	}
	// Other errors are Expand's.
	tm, _ := command.ParseTemplate("x.y", "{{.n}}")
	var mk *command.MissingKeyError
	if _, err := tm.ExpandLimit(nil, 10); !errors.As(err, &mk) || mk.Key != "n" {
		t.Errorf("error %v", err)
	}
}

func TestFuncs(t *testing.T) {
	data := map[string]any{
		"list":  []any{int64(1), "x"},
		"names": []string{"a", "b"},
		"arr":   [2]int{3, 4},
		"html":  "<a&b>",
		"n":     int64(3),
		"none":  nil,
	}
	for text, want := range map[string]string{
		`{{json .list}}`:          `[1,"x"]`,
		`{{json .html}}`:          `"<a&b>"`, // not HTML-escaped
		`{{json .none}}`:          `null`,
		`{{join .list ","}}`:      `1,x`,
		`{{join .names " and "}}`: `a and b`,
		`{{join .arr "-"}}`:       `3-4`,
		`{{join .none ","}}`:      ``,
		`{{.html}}`:               `<a&b>`, // text/template, not html/template
		`{{urlquery .html}}`:      `%3Ca%26b%3E`,
	} {
		if got, err := expand(t, text, data); err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", text, got, err, want)
		}
	}
	// {{json .}} is the whole args table, keys sorted.
	if got, err := expand(t, "{{json .}}", map[string]any{"layer": int64(2), "who": "a b&c", "level": 0.5}); err != nil ||
		got != `{"layer":2,"level":0.5,"who":"a b&c"}` {
		t.Errorf("json of the args: %q, %v", got, err)
	}
	for text, want := range map[string]string{
		`{{join .n ","}}`: "join: int64 is not a list",
		`{{json .ch}}`:    "json: json: unsupported type: chan int",
	} {
		_, err := expand(t, text, map[string]any{"n": int64(3), "ch": make(chan int)})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "x.y: template ") {
			t.Errorf("expand(%q) error %v, want one containing %q", text, err, want)
		}
	}
}

func TestShorten(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"  a \n\t b  ":            "a b",
		strings.Repeat("x", 80):   strings.Repeat("x", 80),
		strings.Repeat("é", 81):   strings.Repeat("é", 80) + "…",
		strings.Repeat("ab ", 40): strings.Repeat("ab ", 26) + "ab…",
	} {
		if got := command.Shorten(in); got != want {
			t.Errorf("Shorten(%q) = %q, want %q", in, got, want)
		}
	}
}
