package main

import (
	"bytes"
	"strings"
	"testing"
)

// understudy faults refuses bad flags with its usage (exit 2) before it
// needs root or makes anything.
func TestFaultsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--schedules", "0"},
		{"--duration", "1s"},
		{"--max-faults", "1"},
		{"--parallel", "0"},
		{"--failover-delay", "-1s"},
		{"--aim", "copying"},
		{"--aim", "takeover,idle"},
		{"--broker", "emqx"},
		{"extra"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"faults"}, args...), &out, &errb); code != 2 {
			t.Errorf("faults %v: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
		if !strings.Contains(errb.String(), "usage: understudy faults") {
			t.Errorf("faults %v: no usage in %q", args, errb.String())
		}
	}
}
