package events

import (
	"fmt"
	"slices"
	"strings"
)

// Markdown is the events table of the documentation for groups (every
// group when none is given): per group a title and a table, one row per
// event, saying whether handlers receive it and whether it is recorded.
// The README's and docs/takeover.md's tables are this (go test ./events
// -update writes them; go test ./runtime/policy -update writes the editor
// definitions' EventName).
func Markdown(groups ...Group) string {
	if len(groups) == 0 {
		groups = Groups()
	}
	all := List()
	var b strings.Builder
	for _, g := range groups {
		rows := slices.DeleteFunc(slices.Clone(all), func(e Event) bool { return e.Group != g })
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "**%s%s**\n\n", strings.ToUpper(string(g[:1])), g[1:])
		b.WriteString("| event | policy | record | fields | when |\n|---|---|---|---|---|\n")
		for _, e := range rows {
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", e.Name, tick(e.Policy), tick(e.Record), cell(fieldList(e.Fields)), cell(e.When))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func tick(yes bool) string {
	if yes {
		return "✓"
	}
	return "—"
}

// fieldList is "`name` (doc), …"; a field named … is its doc alone.
func fieldList(fields []Field) string {
	var parts []string
	for _, f := range fields {
		switch {
		case f.Name == "…":
			parts = append(parts, f.Doc)
		case f.Doc != "":
			parts = append(parts, fmt.Sprintf("`%s` (%s)", f.Name, f.Doc))
		default:
			parts = append(parts, "`"+f.Name+"`")
		}
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// cell escapes what would end a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
