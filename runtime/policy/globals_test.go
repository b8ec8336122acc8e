package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGlobalsAssignedInFunctionsAreFound(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(`local us = require "understudy"
failovers = 0                       -- set at every load: fine
local seen = {}
us.on("member_lost", function(ev)
  failovers = failovers + 1         -- line 5: lost with the Lua state
  seen[ev.member.id] = true         -- a field of a local: not a global
  local n = 1
  n = n + 1                         -- a local
  for i = 1, 2 do i = i + 1 end     -- a loop variable
  last_lost = ev.member.id          -- line 10
  failovers = 0                     -- reported once
end)
`), 0o644)
	problems, err := Globals(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	if len(got) != 2 || !strings.HasSuffix(strings.SplitN(got[0], ": ", 2)[0], "policy.lua:5") || !strings.Contains(got[0], "global failovers") ||
		!strings.Contains(got[1], "policy.lua:10") || !strings.Contains(got[1], `us.state.set("last_lost", value)`) {
		t.Fatalf("found:\n%s", strings.Join(got, "\n"))
	}
}
