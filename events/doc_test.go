package events

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated events tables of README.md and docs/takeover.md")

const (
	tableBegin = "<!-- generated from events.List(); go test ./events -update -->\n"
	tableEnd   = "<!-- end of generated events -->"
)

// The events tables of the README (every group) and of docs/takeover.md
// (the takeover's groups) are generated from List: run with -update after
// changing it.
func TestTheDocsListTheEvents(t *testing.T) {
	for path, groups := range map[string][]Group{
		"../README.md":        nil,
		"../docs/takeover.md": {GroupTakeover, GroupCopies, GroupAlarms, GroupCommands, GroupConfiguration},
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		doc := string(data)
		i, j := strings.Index(doc, tableBegin), strings.Index(doc, tableEnd)
		if i < 0 || j < i || strings.Count(doc, tableBegin) != 1 {
			t.Errorf("%s lacks the generated events table's markers (or has them twice)", path)
			continue
		}
		want := doc[:i+len(tableBegin)] + Markdown(groups...) + doc[j:]
		if doc == want {
			continue
		}
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s's events table is out of date: run go test ./events -update", path)
	}
}

// Every event of the registry has a row in the README's table, which says
// whether handlers receive it and whether it is recorded.
func TestTheTableHasARowPerEvent(t *testing.T) {
	md := Markdown()
	for _, e := range List() {
		row := "| `" + e.Name + "` | " + tick(e.Policy) + " | " + tick(e.Record) + " | "
		if strings.Count(md, row) != 1 {
			t.Errorf("no row (or more than one) for %s starting %q", e.Name, row)
		}
	}
	for _, g := range Groups() {
		if !strings.Contains(md, "**"+strings.ToUpper(string(g[:1]))+string(g[1:])+"**\n") {
			t.Errorf("no title for the group %s", g)
		}
	}
}
