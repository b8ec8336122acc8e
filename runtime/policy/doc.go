package policy

import (
	"fmt"
	"strings"
)

// APIMarkdown renders the `understudy` module as a Markdown table for the
// README, from the same list the loader builds the module from.
func APIMarkdown() string {
	var b strings.Builder
	b.WriteString("| function | returns | what it does |\n|---|---|---|\n")
	for _, f := range API() {
		ret := f.Returns
		if ret == "" {
			ret = "—"
		}
		cell := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
		fmt.Fprintf(&b, "| `us.%s(%s)` | `%s` | %s |\n", f.Name, cell(f.Params), cell(ret), cell(f.Doc))
	}
	return b.String()
}
