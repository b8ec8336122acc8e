package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/discovery/broker"
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

// notifySocket listens where a Type=notify daemon reports to systemd
// (NOTIFY_SOCKET). The returned func waits (20s at most) until the daemon
// has said STATUS= with want in it.
func notifySocket(t *testing.T) (path string, status func(want string)) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var mu sync.Mutex
	var said []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			said = append(said, string(buf[:n]))
			mu.Unlock()
		}
	}()
	return path, func(want string) {
		t.Helper()
		eventually.True(t, 20*time.Second, "systemd told STATUS="+want, func() (bool, string) {
			mu.Lock()
			all := strings.Join(said, "\n")
			mu.Unlock()
			return strings.Contains(all, "STATUS="+want), all
		})
	}
}

// waitHealthz waits (20s at most) until GET url (a /healthz) answers status
// with a body that contains want, and returns the body.
func waitHealthz(t *testing.T, client *http.Client, url string, status int, want string) string {
	t.Helper()
	var body string
	eventually.True(t, 20*time.Second, fmt.Sprintf("/healthz %d with %q", status, want), func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if resp.StatusCode == status && strings.Contains(body, want) {
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Fatalf("/healthz Content-Type %q", ct)
			}
			return true, body
		}
		return false, fmt.Sprintf("%d %q", resp.StatusCode, body)
	})
	return body
}

// An instance that cannot reach its broker says so from the first second:
// in its log, on GET /healthz (503, in words) and in systemd's status line;
// once connected /healthz says ok, and a connection lost for longer than a
// few seconds is said the same way.
func TestAnInstanceOffTheBusSaysWhy(t *testing.T) {
	port := freePort(t) // nothing listens there yet
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startSwitcher(t, l)
	site := writeSite(t, siteParams{Name: "offbus", Bus: "url: tcp://" + port, Router: l.Addr().String()})
	sock, systemdStatus := notifySocket(t)
	cmd := exec.Command(binary, "run", "-c", site, "--member", "backup", "--log-format", "json")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	d := &daemon{t: t, id: "backup", p: testhost.StartProcess(t, cmd)}
	api := apiAddress(t, d)
	healthz := func(status int, want string) string {
		t.Helper()
		return waitHealthz(t, http.DefaultClient, api+"/healthz", status, want)
	}

	waiting := "waiting for the broker: connecting to tcp://" + port
	body := healthz(http.StatusServiceUnavailable, waiting+" for ")
	if !strings.Contains(body, "connection refused") {
		t.Errorf("/healthz does not say why: %q", body)
	}
	d.wait(10*time.Second, "level", "WARN", "msg", waiting)
	systemdStatus(waiting)

	b, err := broker.Start(broker.Options{Listen: port})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	healthz(http.StatusOK, "ok")
	systemdStatus("running; bus connected to tcp://" + port)

	b.Close()
	lost := "not connected to the broker since "
	body = healthz(http.StatusServiceUnavailable, lost)
	if !strings.Contains(body, "reconnecting to tcp://"+port) {
		t.Errorf("/healthz: %q", body)
	}
	d.wait(20*time.Second, "level", "WARN", "msg", lost)
	systemdStatus(lost)
	var st struct{ Health string }
	getJSON(t, api+"/status", &st)
	if !strings.HasPrefix(st.Health, lost) {
		t.Errorf("/status health = %q", st.Health)
	}
}
