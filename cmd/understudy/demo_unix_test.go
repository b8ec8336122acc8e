//go:build unix

package main

import (
	"context"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"understudy/fixtures/testhost"
)

// make run: the demo comes up, shows a failover and a failback as they
// happen, and quits cleanly, leaving no process behind.
func TestDemo(t *testing.T) {
	cmd := exec.Command(binary, "demo", "--failback-delay", "1s")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := testhost.StartProcess(t, cmd)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	step := func(key string, want ...string) {
		t.Helper()
		if key != "" {
			if _, err := io.WriteString(stdin, key+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		for _, w := range want {
			if err := p.WaitOutput(ctx, w); err != nil {
				t.Fatal(err)
			}
		}
	}
	step("", "ready: main is on air")
	pids := regexp.MustCompile(`(?m)^  (main|backup) +pid (\d+)`).FindAllStringSubmatch(p.Output(), -1)
	if len(pids) != 2 {
		t.Fatalf("demo banner does not show both pids:\n%s", p.Output())
	}
	step("k", "main      LOST: connection dropped (Last Will)", "output 1 Projector L now shows input 3 Backup A", "output 2 Projector R now shows input 4 Backup B")
	step("r", "main      restored", "output 1 Projector L now shows input 1 Main A", "output 2 Projector R now shows input 2 Main B")
	step("p", "main      LOST: no heartbeat for", "now shows input 3 Backup A")
	step("r", "kill -CONT")
	step("q", "stopping")
	if err := p.Wait(); err != nil {
		t.Fatalf("demo exited with %v\n%s", err, p.Output())
	}
	for _, m := range pids {
		pid, _ := strconv.Atoi(m[2])
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("%s (pid %d) still exists after the demo quit", m[1], pid)
		}
	}
}
