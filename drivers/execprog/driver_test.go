//go:build linux

package execprog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/drivers"
	"understudy/drivers/drivertest"
	"understudy/drivers/execprog"
	"understudy/runtime/config"
)

func newRunner(t *testing.T, doc string) *execprog.Runner {
	t.Helper()
	d, err := execprog.New(drivertest.Config("local", doc))
	if err != nil {
		t.Fatal(err)
	}
	r := d.(*execprog.Runner)
	r.Start(context.Background(), nil)
	t.Cleanup(func() { r.Close() })
	return r
}

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func send(command string, args map[string]any) map[string]any {
	m := map[string]any{"command": command}
	if args != nil {
		m["args"] = args
	}
	return m
}

func result(t *testing.T, res any) (int, string) {
	t.Helper()
	m, ok := res.(map[string]any)
	if !ok {
		t.Fatalf("result %#v", res)
	}
	return m["exit"].(int), m["output"].(string)
}

func readmeYAML(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no yaml block")
	}
	return block
}

const siteHead = "site: test\ncoordinator: a\nmembers:\n  - id: a\n"

func TestReadmeSample(t *testing.T) {
	site, err := config.Parse("site.yaml", []byte(siteHead+readmeYAML(t)))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := site.BuildDrivers(drivers.NewRegistry(execprog.Kind))
	if err != nil {
		t.Fatal(err)
	}
	r := ds["local"].(*execprog.Runner)
	s := r.Settings()
	rp, ls := s.Programs["restart_player"], s.Programs["load_show"]
	if rp.Path != "/usr/bin/systemctl" || len(rp.Args) != 2 || rp.Timeout.D() != 20*time.Second ||
		ls.Timeout.D() != 30*time.Second || ls.Env["SHOWCTL_OPERATOR"] != "{{.who}}" {
		t.Errorf("settings %+v", s)
	}
	// The sample's showctl is not on this machine: Check says so.
	err = r.Check(send("load_show", map[string]any{"show": "gala", "who": "policy"}))
	if err == nil || !strings.Contains(err.Error(), "programs.load_show: program /opt/showctl/bin/showctl does not exist on this machine") {
		t.Errorf("Check: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"programs: {}\n", "programs: none configured"},
		{"programs: {a: {}}\n", "programs.a.path: the program path is empty"},
		{"programs: {a: {path: bin/x}}\n", `programs.a.path: program "bin/x" is not an absolute path`},
		{"programs: {a: {path: '/bin/{{.x}}'}}\n", "must be a literal path"},
		{"programs: {a: {path: /bin/x, args: ['{{']}}\n", "programs.a.args[0]: template"},
		{"programs: {a: {path: /bin/x, env: {1X: y}}}\n", `programs.a.env: "1X" is not a variable name`},
		{"programs: {a: {path: /bin/x, env: {X: '{{'}}}\n", "programs.a.env.X: template"},
		{"programs: {a: {path: /bin/x, timeout: 2h}}\n", "programs.a.timeout: 2h0m0s is not between 0 and 1h0m0s"},
		{"programs: {a: {path: /bin/x, shell: true}}\n", "shell"},
	} {
		_, err := execprog.New(drivertest.Config("local", tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q) error %v, want one containing %q", tc.doc, err, tc.want)
		}
	}
	site, err := config.Parse("site.yaml", []byte(siteHead+"drivers:\n  x:\n    kind: exec\n    programs:\n      a: {path: /bin/true, timeout: soon}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = site.BuildDrivers(drivers.NewRegistry(execprog.Kind)); err == nil || !strings.Contains(err.Error(), "site.yaml:9:") {
		t.Errorf("site.yaml error %v", err)
	}
}

func TestRun(t *testing.T) {
	prog := script(t, `printf '[%s]\n' "$@"; echo "host=$SHOWCTL_HOST who=$SHOWCTL_OPERATOR screen=$UNDERSTUDY_SCREEN path=$PATH" >&2`)
	r := newRunner(t, fmt.Sprintf(`
programs:
  p:
    path: %s
    args: ["{{.screen}}", "a b; rm -rf /", "$(id)", "{{json .list}}", "{{join .list \",\"}}"]
    env: {SHOWCTL_HOST: 127.0.0.1, SHOWCTL_OPERATOR: "{{.who}}"}
`, prog))
	args := send("p", map[string]any{"screen": float64(2), "who": "op 1", "list": []any{int64(1), "x"}})
	if err := r.Check(args); err != nil {
		t.Fatal(err)
	}
	res, err := r.Do(drivertest.Context(t), args)
	if err != nil {
		t.Fatal(err)
	}
	exit, out := result(t, res)
	want := "[2]\n[a b; rm -rf /]\n[$(id)]\n[[1,\"x\"]]\n[1,x]\nhost=127.0.0.1 who=op 1 screen=2 path=/usr/sbin:/usr/bin:/sbin:/bin\n"
	if exit != 0 || out != want {
		t.Errorf("exit %d, output %q, want %q", exit, out, want)
	}
	if st := r.Status(); !st.Connected || st.Address != "localhost" {
		t.Errorf("status %+v", st)
	}
}

func TestExitStatus(t *testing.T) {
	prog := script(t, "echo working\necho 'no such show: {{x}}' >&2\nexit 3")
	quiet := script(t, "exit 4")
	r := newRunner(t, "programs: {p: {path: "+prog+"}, q: {path: "+quiet+"}}\n")
	res, err := r.Do(drivertest.Context(t), send("p", nil))
	if err == nil || errors.Is(err, drivers.ErrNotConnected) {
		t.Fatalf("error %v", err)
	}
	if want := `exec p: exited with status 3, last output line "no such show: {{x}}"`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if exit, out := result(t, res); exit != 3 || out != "working\nno such show: {{x}}\n" {
		t.Errorf("result %d %q", exit, out)
	}
	if _, err := r.Do(drivertest.Context(t), send("q", nil)); err == nil || err.Error() != "exec q: exited with status 4 (no output)" {
		t.Errorf("error %v", err)
	}
}

func TestOutputTail(t *testing.T) {
	prog := script(t, `i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done`)
	r := newRunner(t, "programs: {p: {path: "+prog+"}}\n")
	res, err := r.Do(drivertest.Context(t), send("p", nil))
	if err != nil {
		t.Fatal(err)
	}
	_, out := result(t, res)
	if len(out) != execprog.MaxOutput || !strings.HasSuffix(out, "line 1998\nline 1999\n") {
		t.Errorf("output of %d bytes ending %q", len(out), out[max(0, len(out)-30):])
	}
}

// gone reports whether pid has exited (it may remain a zombie if nothing
// reaps it in this container).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	prog := script(t, `sleep 30 & echo $! > "$1"; echo started; wait`)
	r := newRunner(t, "programs: {p: {path: "+prog+", args: ["+pidFile+"], timeout: 300ms}}\n")
	start := time.Now()
	res, err := r.Do(drivertest.Context(t), send("p", nil))
	if took := time.Since(start); took > drivertest.Deadline {
		t.Fatalf("Do took %v", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "exec p: did not finish within 300ms; killed") {
		t.Fatalf("error %v", err)
	}
	if exit, out := result(t, res); exit != -1 || out != "started\n" {
		t.Errorf("result %d %q", exit, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The kill is sent before Do returns; the child's exit may take a moment
	// to show in /proc.
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Deadline)
	defer cancel()
	if _, err := eventually.Poll(ctx, func() (bool, string) { return gone(pid), "" }); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("background child %d survived the timeout", pid)
	}
}

func TestCancel(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(ready, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Unblock the reader below if the program never opened the fifo.
		if f, err := os.OpenFile(ready, os.O_RDWR, 0); err == nil {
			f.Close()
		}
	})
	prog := script(t, `echo up > "$1"; exec sleep 30`)
	r := newRunner(t, "programs: {p: {path: "+prog+", args: ["+ready+"]}}\n")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the program runs: it has written to the fifo.
		if b, err := os.ReadFile(ready); err == nil && len(b) > 0 {
			cancel()
		}
	}()
	_, err := r.Do(ctx, send("p", nil))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("error %v", err)
	}
	// Cancelled before it starts.
	_, err = r.Do(ctx, send("p", nil))
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "exec p: not started") {
		t.Errorf("error %v", err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := script(t, "true")
	r := newRunner(t, fmt.Sprintf(`
programs:
  missing: {path: %s/nope}
  plain: {path: %s}
  dir: {path: %s}
  ok: {path: %s, args: ["{{.n}}"], env: {X: "{{.x}}"}}
`, dir, notExec, dir, ok))
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"command": "rm"}, `unknown program "rm" (configured: dir, missing, ok, plain)`},
		{map[string]any{"command": "missing"}, "programs.missing: program " + dir + "/nope does not exist on this machine"},
		{map[string]any{"command": "plain"}, "is not executable (mode 0644; chmod +x it)"},
		{map[string]any{"command": "dir"}, "is a directory, not a program"},
		{send("ok", map[string]any{"x": 1}), `programs.ok.args[0]: template "{{.n}}" needs args.n (args has x)`},
		{send("ok", map[string]any{"n": 1}), `programs.ok.env.X: template "{{.x}}" needs args.x (args has n)`},
		{send("ok", map[string]any{"n": "a\x00b", "x": 1}), "programs.ok.args[0]: expands to text with a NUL byte"},
		{map[string]any{"command": "ok", "n": 1}, `unknown field "n"`},
	} {
		if err := r.Check(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%v) = %v, want %q", tc.args, err, tc.want)
		}
		if _, err := r.Do(drivertest.Context(t), tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Do(%v) = %v, want %q", tc.args, err, tc.want)
		}
	}
	if err := r.Check(send("ok", map[string]any{"n": 1, "x": 2})); err != nil {
		t.Error(err)
	}
}

func TestClosed(t *testing.T) {
	r := newRunner(t, "programs: {p: {path: "+script(t, "true")+"}}\n")
	r.Close()
	if _, err := r.Do(drivertest.Context(t), send("p", nil)); !errors.Is(err, execprog.ErrClosed) {
		t.Errorf("error %v", err)
	}
	if r.Status().Connected {
		t.Error("connected after Close")
	}
}
