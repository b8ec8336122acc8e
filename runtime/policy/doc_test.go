package policy

import (
	"flag"
	"os"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

var update = flag.Bool("update", false, "rewrite the generated parts of README.md")

const (
	apiBegin = "<!-- generated from policy.API(); go test ./runtime/policy -update -->\n"
	apiEnd   = "<!-- end of generated API -->"
)

// The README's API table is generated from API(): run with -update after
// changing the module.
func TestREADMEListsTheAPI(t *testing.T) {
	const path = "../../README.md"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	i, j := strings.Index(readme, apiBegin), strings.Index(readme, apiEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the generated API section markers")
	}
	want := readme[:i+len(apiBegin)] + APIMarkdown() + readme[j:]
	if readme == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("README.md's API table is out of date: run go test ./runtime/policy -update")
}

func TestEveryAPIFunctionIsInTheModule(t *testing.T) {
	env := newEnv()
	p, _ := load(t, env, "")
	for _, f := range API() {
		v := p.module.RawGetString(f.Name)
		if prefix, rest, ok := strings.Cut(f.Name, "."); ok {
			if sub, ok := p.module.RawGetString(prefix).(*lua.LTable); ok {
				v = sub.RawGetString(rest)
			}
		}
		if v.Type().String() != "function" {
			t.Errorf("us.%s is a %s", f.Name, v.Type())
		}
		if f.Doc == "" {
			t.Errorf("us.%s has no documentation", f.Name)
		}
	}
}
