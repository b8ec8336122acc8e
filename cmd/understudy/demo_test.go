package main

import (
	"encoding/json"
	"strings"
	"testing"

	"understudy/runtime/engine"
)

// The demo prints each action the coordinator starts as what it is: a
// switcher route, or a hook an instance runs (as the events topic carries
// them).
func TestDemoNarratesHookActionsAsHooks(t *testing.T) {
	for _, c := range []struct{ record, want, not string }{
		{`{"type":"action_started","fields":{"id":"b-1.1","verb":"takeover","cause":"takeover of main","target":"backup","member":"main"}}`,
			"policy    takeover on backup for main (on takeover of main)", "←"},
		{`{"type":"action_started","fields":{"id":"b-1.2","verb":"reroute","cause":"member_lost at policy.lua:9","target":"backup"}}`,
			"policy    run reroute on backup (on member_lost)", "←"},
		{`{"type":"action_started","fields":{"id":"b-1.3","verb":"route","cause":"takeover_started at policy.lua:142","driver":"router","output":1,"input":3}}`,
			"policy    route router output 1 ← input 3 (on takeover_started)", "input 0"},
		{`{"type":"action_failed","fields":{"id":"b-1.1","verb":"takeover","target":"backup","member":"main","error":"no licence"}}`,
			"policy    takeover on backup for main FAILED: no licence", "←"},
	} {
		var r engine.Record
		if err := json.Unmarshal([]byte(c.record), &r); err != nil {
			t.Fatal(err)
		}
		d := &demo{seen: map[string]bool{}}
		d.narrate(r)
		if len(d.pending) != 1 {
			t.Fatalf("%s: printed %d lines", c.record, len(d.pending))
		}
		line := d.pending[0].text
		if !strings.HasSuffix(line, c.want) || strings.Contains(line, c.not) {
			t.Errorf("printed %q\nwant it to end with %q", line, c.want)
		}
	}
}
