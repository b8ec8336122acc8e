package events

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"
)

func TestKnown(t *testing.T) {
	for name, want := range map[string]bool{
		"member_lost":     true,
		"action_started":  true, // a record only, but one understudy has
		"coordinator":     true, // the policy's only
		"timer:failback":  true,
		"cron:nightly":    true,
		"command:drill":   true,
		"*":               true,
		"member_lsot":     false,
		"timer:":          false, // a pattern needs its name
		"timer":           false,
		"timer:NAME:":     true, // any rest after the prefix
		"takeover_startd": false,
		"":                false,
		"mqtt:hall/go":    false, // no such pattern (yet)
	} {
		if got := Known(name); got != want {
			t.Errorf("Known(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestNearest(t *testing.T) {
	for _, c := range []struct {
		name string
		keep func(Event) bool
		want string
	}{
		{"member_lsot", nil, "member_lost"},
		{"takeover_startd", Recorded, "takeover_started"},
		{"timr:failback", Handled, "timer:failback"},
		{"comand:takeover", nil, "command:takeover"},
		{"cron:nightly", Recorded, ""},         // cron jobs are not recorded
		{"policy_loadd", Handled, ""},          // a record only: no handler receives it
		{"coordinatr", Recorded, ""},           // the policy's only
		{"coordinatr", Handled, "coordinator"}, // …which a handler receives
		{"something_else", nil, ""},
	} {
		if got := Nearest(c.name, c.keep); got != c.want {
			t.Errorf("Nearest(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

// The registry is well formed: names unique, each with a group of Groups,
// a when, and someone who sees it; patterns are the three prefixes.
func TestTheRegistryIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range List() {
		if seen[e.Name] {
			t.Errorf("%s is listed twice", e.Name)
		}
		seen[e.Name] = true
		if !slices.Contains(Groups(), e.Group) {
			t.Errorf("%s: group %q is not one of Groups()", e.Name, e.Group)
		}
		if e.When == "" {
			t.Errorf("%s: no when", e.Name)
		}
		if !e.Policy && !e.Record {
			t.Errorf("%s: neither the policy nor the record stream sees it", e.Name)
		}
		if p := e.Prefix(); p != "" && !slices.Contains([]string{TimerPrefix, CronPrefix, CommandPrefix}, p) {
			t.Errorf("%s: a pattern with an unknown prefix %q", e.Name, p)
		}
		for _, f := range e.Fields {
			if f.Name == "" || (f.Name == "…" && f.Doc == "") {
				t.Errorf("%s: a field without a name, or … without a meaning", e.Name)
			}
		}
	}
	for _, g := range Groups() {
		if !slices.ContainsFunc(List(), func(e Event) bool { return e.Group == g }) {
			t.Errorf("group %q has no event", g)
		}
	}
}

// Every string constant of this package is an exact name of the registry
// (or a prefix of its patterns, or the catch-all), and every exact name of
// the registry has a constant: the code's names and the registry cannot
// drift apart.
func TestTheConstantsAreTheRegistry(t *testing.T) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{} // value → constant
	for _, d := range file.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if vs.Type != nil { // Group values
				continue
			}
			for i, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				consts[s] = vs.Names[i].Name
			}
		}
	}
	if len(consts) < 20 {
		t.Fatalf("found only %d constants: the walk of events.go is broken", len(consts))
	}
	exact := map[string]bool{}
	for _, e := range List() {
		if e.Prefix() == "" {
			exact[e.Name] = true
			if _, ok := consts[e.Name]; !ok {
				t.Errorf("%s has no constant", e.Name)
			}
		}
	}
	for value, name := range consts {
		switch value {
		case CatchAll, TimerPrefix, CronPrefix, CommandPrefix:
			continue
		}
		if !exact[value] {
			t.Errorf("constant %s = %q is not in List()", name, value)
		}
	}
}
