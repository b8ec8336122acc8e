package coordinator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
)

// The policy of these tests handles the operator's commands by failing
// loudly: a command the runtime refuses must never reach it.
const commandPolicy = `local us = require "understudy"
us.on("command:takeover", function(c) error("the policy saw takeover of " .. tostring(c.member)) end)
us.on("command:failback", function(c) error("the policy saw failback of " .. tostring(c.member)) end)
us.on("command:takeover_all", function(c) error("the policy saw takeover_all of " .. tostring(c.standby)) end)
us.on("command:flash", function(c) error("the policy saw flash") end)
`

// The runtime refuses, with the reason, an operator command that cannot be
// carried out as asked, before the policy sees it.
func TestOperatorCommandsThatCannotBeCarriedOutAreRefused(t *testing.T) {
	for _, c := range []struct {
		name, verb string
		fields     map[string]any
		want       string
	}{
		{"unknown verb", "dance", nil, `unknown command "dance": the known commands are confirm, drill, drill_end, failback, flash, mode, reassert, reject, takeover, takeover_all`},
		{"takeover of nobody", "takeover", nil, "takeover: which member? (member)"},
		{"takeover of a number", "takeover", map[string]any{"member": 5.0}, "takeover: member 5: want a member id"},
		{"takeover of an unknown member", "takeover", map[string]any{"member": "ghost"}, `takeover: no member "ghost" (members: c, a, s, s2)`},
		{"takeover of a standby", "takeover", map[string]any{"member": "s"}, "takeover: s is a standby: a standby covers others and is never covered itself"},
		{"takeover of a standby by another", "takeover", map[string]any{"member": "s", "standby": "s2"}, "takeover: s is a standby"},
		{"a standby taking over itself", "takeover", map[string]any{"member": "s", "standby": "s"}, "takeover: s cannot take over itself"},
		{"takeover by an unknown standby", "takeover", map[string]any{"member": "a", "standby": "ghost"}, `takeover: no member "ghost"`},
		{"takeover by a member that is no standby", "takeover", map[string]any{"member": "a", "standby": "c"}, "takeover: c is not a standby (standbys: s, s2)"},
		{"failback of nobody", "failback", nil, "failback: which member? (member)"},
		{"failback of an unknown member", "failback", map[string]any{"member": "ghost"}, `failback: no member "ghost"`},
		{"failback of a member nobody covers", "failback", map[string]any{"member": "a"}, "failback: a is not covered by any standby: there is nothing to give back"},
		{"failback of a standby", "failback", map[string]any{"member": "s"}, "failback: s is a standby"},
		{"takeover_all without a standby", "takeover_all", nil, "takeover_all: which standby? (standby)"},
		{"takeover_all by an unknown member", "takeover_all", map[string]any{"standby": "ghost"}, `takeover_all: no member "ghost"`},
		{"takeover_all by a member that is no standby", "takeover_all", map[string]any{"standby": "a"}, "takeover_all: a is not a standby (standbys: s, s2)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := startSite(t, poolSite+`  - id: s2
    standby: true
    pool: p
`, commandPolicy)
			h.Command(c.verb, c.fields)
			cmds := records(h, "command")
			if len(cmds) != 1 {
				t.Fatalf("command records = %+v", cmds)
			}
			if got, _ := cmds[0].Fields["error"].(string); !strings.Contains(got, c.want) {
				t.Fatalf("refusal = %q, want %q", got, c.want)
			}
			if errs := records(h, "policy_error"); len(errs) > 0 {
				t.Fatalf("the policy saw a refused command: %v", errs[0].Fields["error"])
			}
		})
	}
}

// A verb the runtime leaves to the policy is refused when the policy has no
// handler for it; what the policy handles reaches it.
func TestCommandsReachThePolicyOnlyWhenItHandlesThem(t *testing.T) {
	h, _ := newPoolSite(t, `local us = require "understudy"
us.on("command:flash", function(c) us.run("s", "flash", { n = c.n }) end)
`)
	h.Command("takeover", map[string]any{"member": "a"})
	h.Command("flash", map[string]any{"n": 1.0})
	h.Advance(time.Second)
	cmds := records(h, "command")
	if len(cmds) != 2 {
		t.Fatalf("command records = %+v", cmds)
	}
	if got, _ := cmds[0].Fields["error"].(string); !strings.Contains(got, "takeover: the policy has no command:takeover handler") {
		t.Errorf("takeover without a handler: refusal %q", got)
	}
	if cmds[1].Fields["error"] != nil {
		t.Errorf("flash refused: %v", cmds[1].Fields["error"])
	}
	if ran := h.Ran("s"); len(ran) != 1 || ran[0].Verb != "flash" {
		t.Fatalf("s ran %+v, want the policy's flash", ran)
	}
}

// A takeover and a failback that can be carried out reach the policy, which
// carries them out; a second failback finds nothing to give back.
func TestGoodTakeoverAndFailbackCommandsReachThePolicy(t *testing.T) {
	h, _ := newPoolSite(t, `local us = require "understudy"
us.on("command:takeover", function(c) us.takeover(c.member, c.standby, { reason = "operator", confirmed = true }) end)
us.on("command:failback", function(c) us.failback(c.member, { reason = "operator" }) end)
`)
	h.Command("takeover", map[string]any{"member": "a", "standby": "s"})
	h.Advance(time.Second)
	h.Command("failback", map[string]any{"member": "a"})
	h.Advance(time.Second)
	for _, r := range records(h, "command") {
		if r.Fields["error"] != nil {
			t.Fatalf("refused: %+v", r)
		}
	}
	if errs := records(h, "policy_error"); len(errs) > 0 {
		t.Fatalf("policy errors: %+v", errs)
	}
	if len(records(h, "takeover_done")) != 1 || len(records(h, "failback_done")) != 1 {
		t.Fatalf("records: %+v", h.Records())
	}
	h.Command("failback", map[string]any{"member": "a"})
	cmds := records(h, "command")
	if got, _ := cmds[len(cmds)-1].Fields["error"].(string); !strings.Contains(got, "a is not covered by any standby") {
		t.Fatalf("second failback: refusal %q", got)
	}
	if errs := records(h, "policy_error"); len(errs) > 0 {
		t.Fatalf("the policy saw the second failback: %+v", errs)
	}
}

// Each command's reply holds what followed from it and nothing else: two
// commands carried out back to back, while the loop is busy, do not see each
// other's records, errors or results.
func TestEachCommandGetsOnlyWhatFollowedFromIt(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(siteYAML), 0o644)
	os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(`local us = require "understudy"
us.on("command:bad", function(c) error("bad command " .. c.n) end)
us.on("command:good", function(c) us.log.info("good " .. c.n) end)
`), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.New(coordinator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Site: site, Self: "backup", Coordinator: c, Online: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if _, err := e.Status(ctx); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		hold, release := make(chan struct{}), make(chan struct{})
		e.Post(func() { close(hold); <-release }) // the loop is busy: both commands queue up
		<-hold
		type reply struct {
			recs []engine.Record
			err  error
		}
		good, bad := make(chan reply, 1), make(chan reply, 1)
		go func() {
			recs, err := c.CommandWait(ctx, "good", map[string]any{"n": round}, "test")
			good <- reply{recs, err}
		}()
		go func() {
			recs, err := c.CommandWait(ctx, "bad", map[string]any{"n": round}, "test")
			bad <- reply{recs, err}
		}()
		close(release)
		g, b := <-good, <-bad
		if g.err != nil || b.err != nil {
			t.Fatal(g.err, b.err)
		}
		for _, r := range g.recs {
			if r.Type == "policy_error" || (r.Type == "command" && r.Fields["verb"] != "good") {
				t.Fatalf("round %d: the good command's reply has %+v", round, r)
			}
		}
		var errs int
		for _, r := range b.recs {
			if r.Type == "command" && r.Fields["verb"] != "bad" {
				t.Fatalf("round %d: the bad command's reply has %+v", round, r)
			}
			if r.Type == "policy_error" {
				errs++
			}
		}
		if errs != 1 {
			t.Fatalf("round %d: the bad command's reply has %d policy errors: %+v", round, errs, b.recs)
		}
	}
}
