//go:build linux

package main

import (
	"slices"
	"strings"
	"testing"
)

func TestSelectFigures(t *testing.T) {
	figs := figures()
	names := func(fs []figure) string {
		var out []string
		for _, f := range fs {
			out = append(out, f.name)
		}
		return strings.Join(out, ",")
	}
	got, err := selectFigures(figs, "footprint, crash")
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "crash,startup,idle-rss" {
		t.Errorf("-only footprint,crash selects %s", names(got))
	}
	if _, err := selectFigures(figs, "crash,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("an unknown name: %v", err)
	}
	all, _ := selectFigures(figs, "")
	if len(all) != len(figs) {
		t.Errorf("no -only selects %d of %d", len(all), len(figs))
	}
}

// Every figure has a goal and a method; the measured ones a command of
// their own, the others none, and they show as not measured yet.
func TestFiguresAreComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range figures() {
		if seen[f.name] {
			t.Errorf("two figures named %s", f.name)
		}
		seen[f.name] = true
		r := f.result()
		r.Judge()
		if f.how == "" || r.GoalText() == "" {
			t.Errorf("%s: no method or goal", f.name)
		}
		if f.measure == nil && (r.Command != "" || r.Status != "not measured yet") {
			t.Errorf("%s is not measured but has command %q, status %s", f.name, r.Command, r.Status)
		}
		if f.measure != nil && r.Command != "go run ./bench -only "+f.name {
			t.Errorf("%s: command %q", f.name, r.Command)
		}
	}
}

// The figures marked last are measured after the others; the rest in the
// table's order.
func TestMeasureOrder(t *testing.T) {
	figs := []figure{{name: "a"}, {name: "ns", last: true}, {name: "b"}, {name: "c"}}
	if got, want := measureOrder(figs), []int{0, 2, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	i := slices.IndexFunc(figures(), func(f figure) bool { return f.name == "silent-loss" })
	if i < 0 || !figures()[i].last {
		t.Error("the silent-loss figure (network namespaces) is not measured last")
	}
}
