//go:build unix

package hooks

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExecBackgroundChildHoldingOutput(t *testing.T) {
	start := time.Now()
	sr, err := run1(t, Step{
		Exec:    []string{"/bin/sh", "-c", "sleep 30 & echo started $!"},
		Timeout: 20 * time.Second,
	}, nil)
	if took := time.Since(start); took > generous {
		t.Fatalf("Run took %v", took)
	}
	if f := strings.Fields(sr.Output); len(f) >= 2 {
		if pid, perr := strconv.Atoi(f[1]); perr == nil {
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		}
	}
	if err != nil {
		t.Fatalf("the program exited 0 but Run failed: %v", err)
	}
	if !strings.HasPrefix(sr.Output, "started ") || !strings.Contains(sr.Output, "still holds it open") {
		t.Errorf("output %q", sr.Output)
	}
}
