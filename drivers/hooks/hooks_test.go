package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// generous is an upper bound for steps that must end early; it only catches
// hangs, it does not measure speed.
const generous = 10 * time.Second

func testData() map[string]any {
	return map[string]any{
		"member":  "rec-2",
		"config":  `{"channels": 4}`,
		"version": 7,
		"streams": []any{"cam-1", "cam-2"},
	}
}

func run1(t *testing.T, s Step, data map[string]any) (StepResult, error) {
	t.Helper()
	res, err := Run(context.Background(), []Step{s}, data)
	if len(res.Steps) != 1 {
		t.Fatalf("Run: got %d step results, want 1 (err %v)", len(res.Steps), err)
	}
	sr := res.Steps[0]
	if (err == nil) != (sr.Err == "") {
		t.Fatalf("Run error %v but StepResult.Err %q", err, sr.Err)
	}
	return sr, err
}

func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

// ---- exec ----

func TestExecTrue(t *testing.T) {
	sr, err := run1(t, Step{Exec: []string{"/bin/true"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Kind != "exec" || sr.What != "exec /bin/true" || sr.Status != 0 {
		t.Errorf("got %+v", sr)
	}
}

func TestExecFalse(t *testing.T) {
	sr, err := run1(t, Step{Exec: []string{"/bin/false"}}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	if sr.Status != 1 {
		t.Errorf("status %d, want 1", sr.Status)
	}
	for _, want := range []string{"step 1", "exec /bin/false", "exited with status 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestExecFailureShowsLastLine(t *testing.T) {
	_, err := run1(t, Step{Exec: []string{"/bin/sh", "-c", "echo first; echo 'recorder busy' >&2; exit 3"}}, nil)
	if err == nil || !strings.Contains(err.Error(), `exited with status 3, last output line "recorder busy"`) {
		t.Fatalf("error %v", err)
	}
}

func TestExecTemplatedArgument(t *testing.T) {
	sr, err := run1(t, Step{Exec: []string{"/bin/echo", "cover", "{{.member}}", "v{{.version}}"}}, testData())
	if err != nil {
		t.Fatal(err)
	}
	if sr.Output != "cover rec-2 v7\n" {
		t.Errorf("output %q", sr.Output)
	}
	if sr.What != "exec /bin/echo cover rec-2 v7" {
		t.Errorf("what %q", sr.What)
	}
}

func TestExecTemplateFuncs(t *testing.T) {
	sr, err := run1(t, Step{Exec: []string{"/bin/echo", "{{json .streams}}", `{{join .streams ","}}`, `{{json .config}}`}}, testData())
	if err != nil {
		t.Fatal(err)
	}
	want := `["cam-1","cam-2"] cam-1,cam-2 "{\"channels\": 4}"` + "\n"
	if sr.Output != want {
		t.Errorf("output %q, want %q", sr.Output, want)
	}
}

func TestExecNoShell(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	arg := "x; touch " + marker
	sr, err := run1(t, Step{Exec: []string{"/bin/echo", arg, "$(touch " + marker + ")", "`touch " + marker + "`"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (or stat failed: %v): an argument went through a shell", marker, err)
	}
	if !strings.Contains(sr.Output, arg) || !strings.Contains(sr.Output, "$(touch ") {
		t.Errorf("output %q does not contain the literal arguments", sr.Output)
	}
	// The description quotes the argument so it reads as one.
	if !strings.Contains(sr.What, strconv.Quote(arg)) {
		t.Errorf("what %q does not quote %q", sr.What, arg)
	}
}

func TestExecTimeoutKills(t *testing.T) {
	start := time.Now()
	sr, err := run1(t, Step{Exec: []string{"/bin/sh", "-c", "sleep 30"}, Timeout: 200 * time.Millisecond}, nil)
	if took := time.Since(start); took > generous {
		t.Fatalf("Run took %v", took)
	}
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), "did not finish within 200ms; killed") {
		t.Errorf("error %q", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if sr.Status != -1 {
		t.Errorf("status %d, want -1", sr.Status)
	}
}

func TestExecCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res, err := Run(ctx, []Step{
		{Exec: []string{"/bin/sleep", "30"}},
		{Exec: []string{"/bin/true"}},
	}, nil)
	if took := time.Since(start); took > generous {
		t.Fatalf("Run took %v", took)
	}
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("error %v", err)
	}
	if len(res.Steps) != 1 {
		t.Errorf("%d steps ran, want 1", len(res.Steps))
	}
}

func TestExecMissingKey(t *testing.T) {
	sr, err := run1(t, Step{Exec: []string{"/bin/echo", "{{.member}}", "{{.stream_id}}"}}, testData())
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"step 1", "exec argument 2", `no key "stream_id"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if sr.Output != "" {
		t.Errorf("program ran: output %q", sr.Output)
	}
}

func TestExecEnvironment(t *testing.T) {
	data := testData()
	data["site-name"] = "hall b"
	sr, err := run1(t, Step{Exec: []string{"/usr/bin/env"}}, data)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for line := range strings.Lines(sr.Output) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		got[k] = v
	}
	want := map[string]string{
		"PATH":                 "/usr/sbin:/usr/bin:/sbin:/bin",
		"UNDERSTUDY_MEMBER":    "rec-2",
		"UNDERSTUDY_VERSION":   "7",
		"UNDERSTUDY_CONFIG":    `{"channels": 4}`,
		"UNDERSTUDY_SITE_NAME": "hall b",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("environment %v, want exactly %v (lists are not passed)", got, want)
	}

	sr, err = run1(t, Step{Exec: []string{"/bin/sh", "-c", `echo "$UNDERSTUDY_MEMBER"`}}, data)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Output != "rec-2\n" {
		t.Errorf("output %q", sr.Output)
	}
}

func TestExecExtraEnvironment(t *testing.T) {
	step := Step{Exec: []string{"/bin/sh", "-c", `echo "$SHOW_OPERATOR/$LANG"`}, Env: map[string]string{"SHOW_OPERATOR": "{{.member}} on duty", "LANG": "C.UTF-8"}}
	sr, err := run1(t, step, testData())
	if err != nil {
		t.Fatal(err)
	}
	if sr.Output != "rec-2 on duty/C.UTF-8\n" {
		t.Errorf("output %q", sr.Output)
	}
	for _, tc := range []struct {
		step Step
		want string
	}{
		{Step{Exec: []string{"/bin/true"}, Env: map[string]string{"2BAD": "x"}}, `env: "2BAD" is not a variable name`},
		{Step{Exec: []string{"/bin/true"}, Env: map[string]string{"X": "{{.member"}}, "env X"},
		{Step{HTTP: &HTTP{URL: "http://127.0.0.1/"}, Env: map[string]string{"X": "y"}}, "only an exec step has an environment"},
	} {
		if err := tc.step.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.step, err, tc.want)
		}
	}
}

func TestExecBigValueNotInEnvironment(t *testing.T) {
	data := map[string]any{"member": "rec-2", "config": strings.Repeat("x", 200<<10)}
	sr, err := run1(t, Step{Exec: []string{"/bin/sh", "-c", `echo "${#UNDERSTUDY_CONFIG} $UNDERSTUDY_MEMBER"`}}, data)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Output != "0 rec-2\n" {
		t.Errorf("output %q", sr.Output)
	}
}

func TestExecOutputKeepsTail(t *testing.T) {
	script := `i=0; while [ $i -lt 3000 ]; do echo "line $i 0123456789012345678901234567890123456789"; i=$((i+1)); done`
	sr, err := run1(t, Step{Exec: []string{"/bin/sh", "-c", script}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sr.Output, "[output truncated: ") {
		t.Errorf("output does not start with the truncation mark: %q", sr.Output[:80])
	}
	if !strings.HasSuffix(sr.Output, "line 2999 0123456789012345678901234567890123456789\n") {
		t.Errorf("output does not end with the last line")
	}
	if len(sr.Output) > maxExecOutput+100 {
		t.Errorf("output is %d bytes", len(sr.Output))
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{limit: 10}
	for _, s := range []string{"abc", "defgh", "ijklmnopqr", "st", "uvwxyz0123456789"} {
		_, _ = b.Write([]byte(s))
	}
	all := "abcdefghijklmnopqrstuvwxyz0123456789"
	want := fmt.Sprintf("[output truncated: %d earlier bytes not kept]\n", len(all)-10) + all[len(all)-10:]
	if got := b.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	b = &tailBuffer{limit: 10}
	for range 100 {
		_, _ = b.Write([]byte("ab"))
	}
	if got := b.String(); !strings.HasSuffix(got, "\nababababab") || !strings.Contains(got, " 190 earlier") {
		t.Errorf("got %q", got)
	}
	b = &tailBuffer{limit: 10}
	_, _ = b.Write([]byte("short"))
	if got := b.String(); got != "short" {
		t.Errorf("got %q", got)
	}
}

// ---- http ----

type recorded struct {
	Method, Path, Query, Body string
	Header                    http.Header
}

func recordingServer(t *testing.T, status int, reply string) (*httptest.Server, func() []recorded) {
	t.Helper()
	var mu sync.Mutex
	var reqs []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, string(body), r.Header.Clone()})
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), reqs...)
	}
}

func TestHTTPTemplatedRequest(t *testing.T) {
	srv, reqs := recordingServer(t, http.StatusOK, "ok\n")
	sr, err := run1(t, Step{HTTP: &HTTP{
		URL:     srv.URL + "/members/{{.member}}/cover?v={{.version}}",
		Headers: map[string]string{"X-Member": "{{.member}}", "Content-Type": "application/json"},
		Body:    `{"member":{{json .member}},"streams":{{json .streams}}}`,
	}}, testData())
	if err != nil {
		t.Fatal(err)
	}
	got := reqs()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	r := got[0]
	if r.Method != "POST" || r.Path != "/members/rec-2/cover" || r.Query != "v=7" {
		t.Errorf("request %s %s?%s", r.Method, r.Path, r.Query)
	}
	if r.Body != `{"member":"rec-2","streams":["cam-1","cam-2"]}` {
		t.Errorf("body %q", r.Body)
	}
	if r.Header.Get("X-Member") != "rec-2" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.Header)
	}
	if sr.Kind != "http" || sr.Status != 200 || sr.Output != "ok\n" {
		t.Errorf("result %+v", sr)
	}
	if want := "http POST " + srv.URL + "/members/rec-2/cover?v=7"; sr.What != want {
		t.Errorf("what %q, want %q", sr.What, want)
	}
}

func TestHTTPMethodAndNoBody(t *testing.T) {
	srv, reqs := recordingServer(t, http.StatusNoContent, "")
	sr, err := run1(t, Step{HTTP: &HTTP{Method: "PUT", URL: srv.URL + "/x"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := reqs()[0]; r.Method != "PUT" || r.Body != "" {
		t.Errorf("request %+v", r)
	}
	if sr.Status != 204 {
		t.Errorf("status %d", sr.Status)
	}
}

func TestHTTPDefaultAccepts2xxOnly(t *testing.T) {
	for _, code := range []int{200, 201, 202, 299} {
		srv, _ := recordingServer(t, code, "")
		if _, err := run1(t, Step{HTTP: &HTTP{URL: srv.URL}}, nil); err != nil {
			t.Errorf("status %d: %v", code, err)
		}
	}
	srv, _ := recordingServer(t, http.StatusInternalServerError, "\nrecorder rec-2 is busy\nsecond line\n")
	sr, err := run1(t, Step{HTTP: &HTTP{URL: srv.URL}}, nil)
	if err == nil {
		t.Fatal("no error for 500")
	}
	for _, want := range []string{"500", "expected 2xx", "recorder rec-2 is busy"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "second line") {
		t.Errorf("error %q has more than the first line", err)
	}
	if sr.Status != 500 {
		t.Errorf("status %d", sr.Status)
	}
}

func TestHTTPExpect(t *testing.T) {
	srv, _ := recordingServer(t, http.StatusOK, "")
	_, err := run1(t, Step{HTTP: &HTTP{URL: srv.URL, Expect: []int{201, 204}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "status 200 OK, expected 201 or 204") {
		t.Fatalf("error %v", err)
	}
	srv, _ = recordingServer(t, http.StatusConflict, "")
	if _, err := run1(t, Step{HTTP: &HTTP{URL: srv.URL, Expect: []int{200, 409}}}, nil); err != nil {
		t.Errorf("409 expected: %v", err)
	}
}

func TestHTTPTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	_, err := run1(t, Step{HTTP: &HTTP{URL: srv.URL}, Timeout: 200 * time.Millisecond}, nil)
	if took := time.Since(start); took > generous {
		t.Fatalf("Run took %v", took)
	}
	if err == nil || !strings.Contains(err.Error(), "did not finish within 200ms") {
		t.Fatalf("error %v", err)
	}
}

func TestHTTPBodyBounded(t *testing.T) {
	srv, _ := recordingServer(t, http.StatusOK, strings.Repeat("y", 10000))
	sr, err := run1(t, Step{HTTP: &HTTP{URL: srv.URL}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sr.Output, strings.Repeat("y", maxHTTPBody)+"\n[body truncated") {
		t.Errorf("output %d bytes: %q…", len(sr.Output), sr.Output[:20])
	}
}

func TestHTTPExpandedURLChecked(t *testing.T) {
	_, err := run1(t, Step{HTTP: &HTTP{URL: "{{.url}}"}}, map[string]any{"url": "file:///etc/passwd"})
	if err == nil || !strings.Contains(err.Error(), "http.url") || !strings.Contains(err.Error(), "not an http or https URL") {
		t.Fatalf("error %v", err)
	}
}

func TestHTTPRedactsPassword(t *testing.T) {
	srv, reqs := recordingServer(t, http.StatusOK, "")
	u := strings.Replace(srv.URL, "http://", "http://admin:s3cret@", 1)
	sr, err := run1(t, Step{HTTP: &HTTP{URL: u}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sr.What, "s3cret") {
		t.Errorf("what %q shows the password", sr.What)
	}
	if user, _, ok := (&http.Request{Header: reqs()[0].Header}).BasicAuth(); !ok || user != "admin" {
		t.Errorf("basic auth not sent")
	}
}

// ---- write ----

func TestWriteAtomicWithMode(t *testing.T) {
	dir := t.TempDir()
	sr, err := run1(t, Step{Write: &Write{
		Path:    dir + "/covered/../{{.member}}.json",
		Content: "{{.config}}",
		Mode:    0o600,
	}}, testData())
	if err == nil {
		t.Fatal("a path with .. was accepted")
	}
	if !strings.Contains(err.Error(), "write.path") || !strings.Contains(err.Error(), `".."`) {
		t.Errorf("error %v", err)
	}

	sr, err = run1(t, Step{Write: &Write{Path: dir + "/{{.member}}.json", Mode: 0o600}}, testData())
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "rec-2.json")
	if sr.Kind != "write" || sr.What != "write "+target {
		t.Errorf("result %+v", sr)
	}
	b, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"channels": 4}` {
		t.Errorf("content %q (default content is {{.config}})", b)
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	noTempFiles(t, dir)
}

func TestWriteOverwritesAndDefaultsMode(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "duty.conf")
	if err := os.WriteFile(target, []byte("old content that is longer than the new"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := run1(t, Step{Write: &Write{Path: target, Content: "member={{.member}}\n"}}, testData())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(target)
	if string(b) != "member=rec-2\n" {
		t.Errorf("content %q", b)
	}
	fi, _ := os.Stat(target)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want the default 0644", fi.Mode().Perm())
	}
	noTempFiles(t, dir)
}

func TestWriteMissingParent(t *testing.T) {
	dir := t.TempDir()
	_, err := run1(t, Step{Write: &Write{Path: dir + "/covered/{{.member}}.json"}}, testData())
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "covered")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("parent directory was created")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

func TestWriteTargetIsDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rec-2"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := run1(t, Step{Write: &Write{Path: dir + "/{{.member}}"}}, testData())
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("error %v", err)
	}
	noTempFiles(t, dir)
}

func TestWriteRelativeAfterExpansion(t *testing.T) {
	_, err := run1(t, Step{Write: &Write{Path: "{{.member}}/x.json"}}, testData())
	if err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("error %v", err)
	}
}

func TestWriteMissingKeyInContent(t *testing.T) {
	dir := t.TempDir()
	_, err := run1(t, Step{Write: &Write{Path: dir + "/x"}}, map[string]any{"member": "rec-2"})
	if err == nil || !strings.Contains(err.Error(), "write.content") || !strings.Contains(err.Error(), `no key "config"`) {
		t.Fatalf("error %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

// A step whose time runs out after the temporary file exists removes it and
// leaves the target alone.
func TestWriteInterruptedLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "rec-2.json")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sr, err := runStep(ctx, Step{Write: &Write{Path: target, Content: "new"}}, nil)
	if err == nil || !errors.Is(err, context.Canceled) || sr.Err == "" {
		t.Fatalf("error %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Errorf("target changed to %q", b)
	}
	noTempFiles(t, dir)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}
}

// ---- Run ----

func TestRunStopsAtFirstFailure(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "third")
	res, err := Run(context.Background(), []Step{
		{Exec: []string{"/bin/echo", "{{.member}}"}},
		{Exec: []string{"/bin/sh", "-c", "exit 4"}},
		{Write: &Write{Path: marker, Content: "ran"}},
	}, testData())
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.HasPrefix(err.Error(), `step 2 (exec /bin/sh -c "exit 4"): exited with status 4`) {
		t.Errorf("error %q", err)
	}
	if len(res.Steps) != 2 {
		t.Fatalf("%d step results, want 2", len(res.Steps))
	}
	if res.Steps[0].Err != "" || res.Steps[1].Err == "" || res.Steps[1].Status != 4 {
		t.Errorf("results %+v", res.Steps)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("step 3 ran")
	}
}

func TestRunValidatesBeforeRunning(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "first")
	res, err := Run(context.Background(), []Step{
		{Write: &Write{Path: marker, Content: "ran"}},
		{Exec: []string{"recctl", "add"}},
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "step 2") || !strings.Contains(err.Error(), "nothing was run") {
		t.Fatalf("error %v", err)
	}
	if len(res.Steps) != 0 {
		t.Errorf("results %+v", res.Steps)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("step 1 ran")
	}
}

func TestRunEmptyAndCancelled(t *testing.T) {
	res, err := Run(context.Background(), nil, nil)
	if err != nil || len(res.Steps) != 0 {
		t.Errorf("empty: %v %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err = Run(ctx, []Step{{Exec: []string{"/bin/true"}}}, nil)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "step 1 (exec /bin/true): not started") || len(res.Steps) != 0 {
		t.Errorf("cancelled: %+v %v", res, err)
	}
}

// ---- Validate, Kind, Check ----

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		step Step
		want []string // all must appear in the error
	}{
		{"none set", Step{}, []string{"exactly one of exec, http or write", "none"}},
		{"two set", Step{Exec: []string{"/bin/true"}, Write: &Write{Path: "/tmp/x"}}, []string{"exactly one", "exec and write"}},
		{"empty exec", Step{Exec: []string{}}, []string{"exec:", "no program"}},
		{"relative exec", Step{Exec: []string{"recctl", "add"}}, []string{"exec:", `"recctl"`, "absolute"}},
		{"templated program", Step{Exec: []string{"/usr/bin/{{.tool}}"}}, []string{"exec:", "literal path"}},
		{"bad exec template", Step{Exec: []string{"/bin/echo", "ok", "{{.member"}}, []string{"exec: argument 2", "does not parse"}},
		{"bad url template", Step{HTTP: &HTTP{URL: "http://x/{{.member"}}, []string{"http.url", "does not parse"}},
		{"missing url", Step{HTTP: &HTTP{}}, []string{"http.url", "missing"}},
		{"not http url", Step{HTTP: &HTTP{URL: "ftp://host/x"}}, []string{"http.url", "not an http or https URL"}},
		{"url without host", Step{HTTP: &HTTP{URL: "http:///path"}}, []string{"http.url", "no host"}},
		{"unparsable url", Step{HTTP: &HTTP{URL: "http://[::1"}}, []string{"http.url", "not a valid URL"}},
		{"bad method", Step{HTTP: &HTTP{Method: "PO ST", URL: "http://h/"}}, []string{"http.method", "PO ST"}},
		{"bad expect low", Step{HTTP: &HTTP{URL: "http://h/", Expect: []int{200, 42}}}, []string{"http.expect", "42"}},
		{"bad expect high", Step{HTTP: &HTTP{URL: "http://h/", Expect: []int{600}}}, []string{"http.expect", "600"}},
		{"bad header name", Step{HTTP: &HTTP{URL: "http://h/", Headers: map[string]string{"X Y": "1"}}}, []string{"http.headers", "X Y"}},
		{"bad header template", Step{HTTP: &HTTP{URL: "http://h/", Headers: map[string]string{"X-Y": "{{"}}}, []string{"http.headers.X-Y", "does not parse"}},
		{"bad body template", Step{HTTP: &HTTP{URL: "http://h/", Body: "{{end}}"}}, []string{"http.body", "does not parse"}},
		{"missing path", Step{Write: &Write{}}, []string{"write.path", "missing"}},
		{"relative path", Step{Write: &Write{Path: "etc/x"}}, []string{"write.path", "absolute"}},
		{"dotdot path", Step{Write: &Write{Path: "/etc/rec/../passwd"}}, []string{"write.path", `".."`}},
		{"bad content template", Step{Write: &Write{Path: "/tmp/x", Content: "{{.config"}}, []string{"write.content", "does not parse"}},
		{"unknown function", Step{Write: &Write{Path: "/tmp/x", Content: "{{yaml .config}}"}}, []string{"write.content", "yaml"}},
		{"bad mode", Step{Write: &Write{Path: "/tmp/x", Mode: os.ModeDir | 0o755}}, []string{"write.mode"}},
		{"negative timeout", Step{Exec: []string{"/bin/true"}, Timeout: -time.Second}, []string{"timeout", "negative"}},
		{"long timeout", Step{Exec: []string{"/bin/true"}, Timeout: 2 * time.Hour}, []string{"timeout", "maximum"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.step.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Step{HTTP: &HTTP{Method: "BAD METHOD", URL: "ftp://x", Expect: []int{1}}, Timeout: -1}.Validate()
	for _, want := range []string{"timeout", "http.method", "http.url", "http.expect"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestValidateGood(t *testing.T) {
	for _, s := range []Step{
		{Exec: []string{"/usr/bin/recctl", "add", "{{.member}}", `{{join .streams ","}}`}},
		{HTTP: &HTTP{URL: "http://{{.host}}:8080/x"}},                                         // templated: not checked as a URL
		{HTTP: &HTTP{Method: "PATCH", URL: "https://rec.local/api", Expect: []int{200, 204}}}, // literal
		{Write: &Write{Path: "/etc/rec/covered/{{.member}}.json"}, Timeout: time.Hour},
		{Write: &Write{Path: "/etc/rec/covered/x.json", Content: "{{json .}}", Mode: 0o640}},
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

func TestKind(t *testing.T) {
	for _, tc := range []struct {
		s    Step
		want string
	}{
		{Step{Exec: []string{"/bin/true"}}, "exec"},
		{Step{HTTP: &HTTP{}}, "http"},
		{Step{Write: &Write{}}, "write"},
		{Step{}, ""},
		{Step{HTTP: &HTTP{}, Write: &Write{}}, ""},
	} {
		if got := tc.s.Kind(); got != tc.want {
			t.Errorf("%+v: Kind %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(plain, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "true-link")
	if err := os.Symlink("/bin/true", link); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"/bin/true", "/bin/sh", link} {
		if err := (Step{Exec: []string{ok, "x"}}).Check(); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, tc := range []struct{ prog, want string }{
		{filepath.Join(dir, "missing"), "does not exist"},
		{dir, "is a directory"},
		{plain, "not executable"},
		{"/dev/null", "not a regular file"},
		{"relative", "absolute"},
	} {
		err := (Step{Exec: []string{tc.prog}}).Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "exec") {
			t.Errorf("%s: error %v, want %q", tc.prog, err, tc.want)
		}
	}
	if err := (Step{Write: &Write{Path: "/nonexistent/dir/x"}}).Check(); err != nil {
		t.Errorf("write step: %v", err)
	}
}
