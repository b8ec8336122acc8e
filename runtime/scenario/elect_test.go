package scenario_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"understudy/drivers/builtin"
	"understudy/runtime/scenario"
)

// electedSite: main, backup and the witness w elect the coordinator; main
// is the first candidate (it leads) and has the duties.
const electedSite = `site: el
coordinator: [main, backup, w]
mdns: false
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 5s}
policy: {file: policy.lua}
members:
  - id: main
    raft: 192.0.2.1:7950
    duties: {switcher: router, outputs: [1, 2], inputs: [1, 2]}
  - id: backup
    standby: true
    raft: 192.0.2.2:7950
    duties: {switcher: router, inputs: [3, 4]}
  - id: w
    witness: true
    raft: 192.0.2.3:7950
drivers:
  router: {kind: videohub, address: 192.0.2.1, timeout: 1s}
`

// electedPolicy routes main's outputs to the backup when main is lost; on
// each election it routes output 3 to the term's number and output 4 to a
// count it keeps in a Lua global, which a new leader's policy starts again.
const electedPolicy = `local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id ~= "main" then return end
  local r = us.driver("router")
  for i, out in ipairs(ev.member.duties.outputs) do r:route(out, us.member("backup").duties.inputs[i]) end
end)
elections = 0
us.on("coordinator_elected", function(ev)
  elections = elections + 1
  us.driver("router"):route(3, ev.term)
  us.driver("router"):route(4, elections)
end)
`

// The leader's own host crashes: the next candidate is elected after the
// followers notice, elect and wait out the lease (0.95 s at a 100 ms
// heartbeat), its policy starts afresh (coordinator_elected, its globals
// new) and covers main. Then the new leader is cut off from the witness —
// with main down no majority remains, and nobody coordinates until the
// partition heals.
func TestSimulatedCandidatesElectTheNextLeader(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"site.yaml":  electedSite,
		"policy.lua": electedPolicy,
		"scenarios/elect.yaml": `name: the leader's host lost, then the new leader cut off
steps:
  - {at: 10s, crash: main}
  - {at: 20s, partition: backup, for: 5s}
expect:
  - {event: coordinator_elected, member: main, before: 1s}
  - {routed: {driver: router, output: 3, input: 1}, by: 5s}
  - {event: coordinator_lost, member: main, after: 10s, within: 100ms}
  - {no: coordinator_elected, after: 10s, before: 10900ms}
  - {event: coordinator_elected, member: backup, fields: {term: 2}, after: 10900ms, within: 100ms}
  - {event: member_lost, member: main, after: 10s, within: 2s}
  - {routed: {driver: router, output: 1, input: 3}, by: 12s}
  - {routed: {driver: router, output: 2, input: 4}, by: 12s}
  - {routed: {driver: router, output: 3, input: 2}, by: 12s}
  - {routed: {driver: router, output: 4, input: 1}, by: 12s}
  - {event: coordinator_lost, member: backup, after: 20s, within: 100ms}
  - {no: coordinator_elected, after: 20s, before: 25s}
  - {event: coordinator_elected, member: backup, fields: {term: 3}, after: 25s, within: 2s}
`,
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustPass(t, run(t, filepath.Join(dir, "scenarios", "elect.yaml")))
}

// A partition is only for a candidate of an elected coordinator.
func TestAPartitionNamesACandidate(t *testing.T) {
	path := writeSite(t, "videohub", rightPolicy, `name: partition on a named coordinator
steps:
  - {at: 1s, partition: backup}
expect:
  - {nothing: true}
`)
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = scenario.Run(context.Background(), sc, scenario.Options{Registry: builtin.Registry(), StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "only a candidate of an elected coordinator") {
		t.Fatalf("got %v", err)
	}
}
