package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"understudy/fixtures/testhost"
)

// The unit in dist/ is one systemd accepts (with ExecStart pointing at a
// binary that exists here).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing (Debian package systemd); .ci/deps installs it")
		}
		t.Skip("systemd-analyze is not installed")
	}
	unit, err := os.ReadFile("../../dist/understudy.service")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/understudy", binary)
	path := filepath.Join(t.TempDir(), "understudy.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "understudy.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Started as a Type=notify service (NOTIFY_SOCKET, WATCHDOG_USEC), the
// daemon says READY, pings the watchdog while its loop runs, and says
// STOPPING on SIGTERM.
func TestDaemonNotifiesSystemd(t *testing.T) {
	site, _, _ := localSite(t, "notify")
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	messages := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(messages)
				return
			}
			messages <- string(buf[:n])
		}
	}()
	cmd := exec.Command(binary, "run", "-c", site, "--member", "backup", "--log-format", "json")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=300000")
	p := testhost.StartProcess(t, cmd)
	d := &daemon{t: t, id: "backup", p: p}

	expect := func(want string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m := <-messages:
				if strings.Contains(m, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q from the daemon within 20s; its log:\n%s", want, p.Output())
			}
		}
	}
	expect("READY=1")
	expect("WATCHDOG=1")
	expect("WATCHDOG=1") // again: it keeps pinging
	d.wait(10*time.Second, "msg", "systemd watchdog")
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	<-p.Exited()
}
