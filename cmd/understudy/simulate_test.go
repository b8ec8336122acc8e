package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every shipped policy has scenarios, and they pass.
func TestShippedPoliciesPassTheirScenarios(t *testing.T) {
	var out, errs bytes.Buffer
	code := run([]string{"test", "../../scripts"}, &out, &errs)
	if code != 0 {
		t.Fatalf("understudy test scripts: exit %d\n%s%s", code, out.String(), errs.String())
	}
	entries, err := os.ReadDir("../../scripts")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join("../../scripts", e.Name(), "policy.lua")); err != nil {
			continue
		}
		if !strings.Contains(out.String(), "scripts/"+e.Name()+"/scenarios/") {
			t.Errorf("the shipped policy %s has no scenario that passed:\n%s", e.Name(), out.String())
		}
	}
}

// simulate exits 1 naming the expectation and what happened instead.
func TestSimulateExitCodes(t *testing.T) {
	dir := t.TempDir()
	policy, err := os.ReadFile("../../scripts/manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	site, err := os.ReadFile("../../scripts/manager-backup/site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "policy.lua"), policy, 0o644)
	os.WriteFile(filepath.Join(dir, "site.yaml"), site, 0o644)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("name: good\nsteps:\n  - {at: 10s, crash: main}\nexpect:\n  - {routed: {driver: router, output: 1, input: 3}, by: 11s}\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: bad\nsteps:\n  - {at: 10s, crash: main}\nexpect:\n  - {no: takeover_started, member: main}\n"), 0o644)

	var out, errs bytes.Buffer
	if code := run([]string{"simulate", good}, &out, &errs); code != 0 {
		t.Fatalf("good scenario: exit %d\n%s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "→ route router output 1 ← input 3   ← takeover_started at ") {
		t.Errorf("the decision log does not show the route with its cause:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"simulate", "-q", bad}, &out, &errs); code != 1 {
		t.Fatalf("bad scenario: exit %d, want 1\n%s", code, out.String())
	}
	if want := "bad.yaml:5: no takeover_started of main\n       instead: it happened at 10s (standby: backup; reason: lost)"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	out.Reset()
	errs.Reset()
	if code := run([]string{"simulate", filepath.Join(dir, "missing.yaml")}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "missing.yaml") {
		t.Errorf("missing scenario: exit %d, %s", code, errs.String())
	}
}
