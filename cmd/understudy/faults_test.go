package main

import (
	"bytes"
	"strings"
	"testing"
)

// understudy faults refuses bad flags with its usage (exit 2) before it
// needs root or makes anything.
func TestFaultsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string // the flag named, and why
	}{
		{[]string{"--schedules", "0"}, "--schedules 0: at least 1"},
		{[]string{"--duration", "1s"}, "--duration 1s: at least 10s"},
		{[]string{"--max-faults", "1"}, "--max-faults 1: at least 2"},
		{[]string{"--parallel", "0"}, "--parallel 0: at least 1"},
		{[]string{"--failover-delay", "-1s"}, "--failover-delay -1s: not negative"},
		{[]string{"--quiet", "-5s"}, "--quiet -5s: not negative"},
		{[]string{"--aim", "copying"}, `--aim: unknown phase "copying"`},
		{[]string{"--aim", "takeover,idle"}, `--aim: unknown phase "idle"`},
		{[]string{"--broker", "emqx"}, `--broker: "emqx" is neither embedded nor mosquitto`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"faults"}, tc.args...), &out, &errb); code != 2 {
			t.Errorf("faults %v: exit %d, want 2 (stderr %q)", tc.args, code, errb.String())
		}
		if !strings.Contains(errb.String(), "usage: understudy faults") || !strings.Contains(errb.String(), tc.says) {
			t.Errorf("faults %v: want the usage and %q, got %q", tc.args, tc.says, errb.String())
		}
	}
}

// A site file that does not load is said once, before any schedule runs
// or any folder is made.
func TestFaultsSiteErrorOnce(t *testing.T) {
	var out, errb bytes.Buffer
	missing := t.TempDir() + "/nosuch.yaml"
	if code := run([]string{"faults", "-c", missing, "--schedules", "3"}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if n := strings.Count(errb.String(), "nosuch.yaml"); n != 1 {
		t.Errorf("the missing site named %d times, want once: %q", n, errb.String())
	}
	if out.Len() != 0 {
		t.Errorf("a report for a site that never ran: %q", out.String())
	}
}
