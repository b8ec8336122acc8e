//go:build unix

package main

import (
	"context"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
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
	// step presses key and waits for each of want in what the demo prints
	// after that.
	step := func(key string, want ...string) {
		t.Helper()
		from := len(p.Output())
		if key != "" {
			if _, err := io.WriteString(stdin, key+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		for _, w := range want {
			tick := time.NewTicker(10 * time.Millisecond)
			for !strings.Contains(p.Output()[from:], w) {
				select {
				case <-ctx.Done():
					t.Fatalf("the demo did not print %q after %q:\n%s", w, key, p.Output()[from:])
				case <-p.Exited():
					if !strings.Contains(p.Output()[from:], w) {
						t.Fatalf("the demo exited before printing %q:\n%s", w, p.Output())
					}
				case <-tick.C:
				}
			}
			tick.Stop()
		}
	}
	step("", "ready: main is on air")
	pids := regexp.MustCompile(`(?m)^  (main|backup|w) +pid (\d+)`).FindAllStringSubmatch(p.Output(), -1)
	if len(pids) != 3 {
		t.Fatalf("demo banner does not show the three pids:\n%s", p.Output())
	}
	step("k", "main      LOST: connection dropped (Last Will)", "output 1 Projector L now shows input 3 Backup A", "output 2 Projector R now shows input 4 Backup B")
	step("r", "main      restored", "output 1 Projector L now shows input 1 Main A", "output 2 Projector R now shows input 2 Main B")
	step("p", "main      LOST: no heartbeat for", "now shows input 3 Backup A")
	step("r", "kill -CONT", "output 1 Projector L now shows input 1 Main A")
	// The coordinator's host killed (backup, the first candidate): another
	// candidate is elected. Brought back, backup follows; then the main —
	// now the coordinator — is killed: backup is elected and takes it over.
	step("c", "(backup, the coordinator)", "backup    LOST: connection dropped (Last Will)", "main      elected: coordinates from now on")
	step("r", "backup restarted as pid", "backup    restored")
	step("k", "main      LOST: connection dropped (Last Will)", "backup    elected: coordinates from now on", "output 1 Projector L now shows input 3 Backup A", "output 2 Projector R now shows input 4 Backup B")
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
