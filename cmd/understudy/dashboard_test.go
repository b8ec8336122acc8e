package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The operator's dashboard in a real browser, on a running site: it shows
// the main lost and covered when its process is killed, alive and still
// covered when it is back (automatic failback is off), and an operator's
// failback from the page — a click and a confirmation in the page's own
// dialog — gives the projectors back to the main. Then a real fire drill
// started from the page shows in its banner and on main's row, and ending
// it from the banner fails main back. Then every other command is given
// from the page: take over, take over all, both modes, and the confirmation
// of a proposal (made by a drill in manual mode).
func TestDashboardFailbackInTheBrowser(t *testing.T) {
	browser := chromiumPath(t)
	site, _, sw := localSite(t, "dash")
	noAutoFailback(t, site)
	// The backup takes a moment to let go, as a real one does: the page's
	// commands must not race a failback that is still releasing.
	slowRelease(t, site, "0.5")
	backup := runIn(t, nil, site, "backup")
	main := runIn(t, nil, site, "main")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")

	var out, errs bytes.Buffer
	if code := run([]string{"dashboard", "-c", site, "--member", "backup"}, &out, &errs); code != 0 {
		t.Fatalf("understudy dashboard: exit %d\n%s%s", code, out.String(), errs.String())
	}
	link := strings.TrimSpace(out.String())
	if !strings.HasPrefix(link, api+"/dashboard/#token=") || len(link) < len(api)+len("/dashboard/#token=")+32 {
		t.Fatalf("understudy dashboard printed %q, want %s/dashboard/#token=…", link, api)
	}

	page := openBrowser(t, browser)
	page.do("open the dashboard", chromedp.Navigate(link))
	mainRow := `#members tr[data-member="main"]`
	page.do("main shows alive", chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-state="alive"]`)))
	if text := page.text(mainRow + " .state"); text != "alive" {
		t.Fatalf("main's state reads %q, want alive", text)
	}
	if hash := page.eval("location.hash"); hash != "" {
		t.Errorf("the token stays in the address bar: %q", hash)
	}
	page.do("actions are unlocked", chromedp.WaitVisible(chromedp.CSS(`#lock`)))

	// A crash: the backup takes over, and the page says so.
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	page.do("main shows lost, covered by backup",
		chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-state="lost"][data-covered-by="backup"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#coverage li[data-covered="main"][data-standby="backup"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li[data-type="member_lost"][data-subject="main"]`)))
	if text := page.text(mainRow + " .state"); text != "lost" {
		t.Fatalf("main's state reads %q, want lost", text)
	}

	// Back, but still covered: the operator decides.
	runIn(t, nil, site, "main")
	page.do("main shows alive and still covered",
		chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-state="alive"][data-covered-by="backup"][data-phase="covering"]`)))
	failback := `[data-action="failback"][data-member="main"]`
	page.do("fail back main, confirmed in the dialog",
		chromedp.WaitEnabled(chromedp.CSS(failback)),
		chromedp.Click(chromedp.CSS(failback)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-dialog[open] #confirm-ok`)))
	if text := page.text(`#confirm-text`); !strings.Contains(text, "Fail back main") || !strings.Contains(text, "backup") {
		t.Errorf("the confirmation asks %q", text)
	}
	page.do("confirm", chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})
	page.do("main shows alive and no longer covered",
		chromedp.WaitVisible(chromedp.CSS(`#results li[data-verb="failback"][data-state="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li[data-type="failback_done"][data-subject="main"]`)),
		chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-state="alive"][data-covered-by=""]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#coverage li[data-covered="main"]`)))
	if text := page.text(`#results li[data-verb="failback"]`); !strings.Contains(text, "failback of main started") {
		t.Errorf("the failback's result reads %q", text)
	}

	shot := page.screenshot(filepath.Join(artifacts(t), "dashboard-failback.png"))
	t.Logf("screenshot: %s", shot)

	// A real fire drill from the page: the banner says so, main is marked
	// and the backup takes over; ending it from the banner fails main back.
	page.do("start a real drill of main",
		chromedp.SetValue(chromedp.CSS(`#drill-member`), "main"),
		chromedp.SetValue(chromedp.CSS(`#drill-revert`), "1h"),
		chromedp.Click(chromedp.CSS(`#drill-dry-run`)),
		chromedp.Click(chromedp.CSS(`#drill-form [data-action="drill"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-dialog[open] #confirm-ok`)))
	if text := page.text(`#confirm-text`); !strings.Contains(text, "REAL fire drill") {
		t.Errorf("the drill's confirmation asks %q", text)
	}
	page.do("confirm the drill", chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 3}, [2]int{2, 4})
	page.do("the page shows the drill",
		chromedp.WaitVisible(chromedp.CSS(`#drill-banner [data-drill="main"]`)),
		chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-drill="lost"][data-state="lost"][data-covered-by="backup"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li[data-type="drill_started"][data-subject="main"]`)))
	t.Logf("screenshot: %s", page.screenshot(filepath.Join(artifacts(t), "dashboard-drill.png")))
	endDrill := `#drill-banner [data-action="drill_end"][data-member="main"]`
	page.do("end the drill from the banner",
		chromedp.Click(chromedp.CSS(endDrill)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-dialog[open] #confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})
	page.do("the drill is over and main has its duties",
		chromedp.WaitNotVisible(chromedp.CSS(`#drill-banner`)),
		chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-state="alive"][data-covered-by=""]`)))

	// The other commands, each clicked and confirmed in the page: take
	// over, take over all, mode manual, a drill's proposal confirmed, mode
	// auto.
	confirmed := func(what, button string) {
		t.Helper()
		page.do(what,
			chromedp.WaitEnabled(chromedp.CSS(button)),
			chromedp.Click(chromedp.CSS(button)),
			chromedp.WaitVisible(chromedp.CSS(`#confirm-dialog[open] #confirm-ok`)),
			chromedp.Click(chromedp.CSS(`#confirm-ok`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#confirm-dialog[open]`)))
	}
	// The projectors go back to main as soon as it is ready, before the
	// backup has let go: a command given then finds main still covered.
	// Each step waits until the failback is over, as an operator would see
	// on the page.
	uncovered := func(what string) {
		t.Helper()
		page.do(what,
			chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-state="alive"][data-covered-by=""]`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#coverage li[data-covered="main"]`)))
	}
	uncovered("main is no longer covered after the drill")
	confirmed("take over main", `[data-action="takeover"][data-member="main"]`)
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 3}, [2]int{2, 4})
	page.do("main is covered", chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-phase="covering"]`)))
	confirmed("fail back main", failback)
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})
	uncovered("main is no longer covered after the failback")
	confirmed("take over all on backup", `#takeover-all-form [data-action="takeover_all"]`)
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 3}, [2]int{2, 4})
	page.do("main is covered again", chromedp.WaitVisible(chromedp.CSS(mainRow+`[data-phase="covering"]`)))
	confirmed("fail back main", failback)
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})
	uncovered("main is no longer covered after the second failback")
	confirmed("mode manual", `#mode-box [data-action="mode"][data-mode="manual"]`)
	page.do("the page shows mode manual", chromedp.WaitVisible(chromedp.CSS(`#mode-box[data-mode="manual"]`)))
	page.do("a real drill in manual mode",
		chromedp.Click(chromedp.CSS(`#drill-form [data-action="drill"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-dialog[open] #confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	confirmed("confirm the proposal", `#proposals [data-action="confirm"]`)
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 3}, [2]int{2, 4})
	confirmed("end the drill", endDrill)
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1}, [2]int{2, 2})
	uncovered("main is no longer covered after the second drill")
	confirmed("mode auto", `#mode-box [data-action="mode"][data-mode="auto"]`)
	page.do("the page shows mode auto and every command's result",
		chromedp.WaitVisible(chromedp.CSS(`#mode-box[data-mode="auto"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#results li[data-verb="confirm"][data-state="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#results li[data-verb="takeover_all"][data-state="ok"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#results li[data-verb="takeover"][data-state="ok"]`)))

	// Another controller keeps changing main's output 1: put back twice,
	// then given up with an alarm on the page, and put back from it.
	for i := 0; i < 2; i++ {
		if err := sw.SetRoute(1, 6); err != nil {
			t.Fatal(err)
		}
		sw.expectRoutes(t, 20*time.Second, [2]int{1, 6}, [2]int{1, 1})
	}
	if err := sw.SetRoute(1, 6); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 6})
	fight := `#alarms li[data-alarm="routing_fight"][data-member="main"]`
	page.do("the page shows the routing fight", chromedp.WaitVisible(chromedp.CSS(`#alarms-banner`)), chromedp.WaitVisible(chromedp.CSS(fight)))
	if text := page.text(fight); !strings.Contains(text, "output 1") || !strings.Contains(text, "reassert") {
		t.Errorf("the alarm reads %q", text)
	}
	t.Logf("screenshot: %s", page.screenshot(filepath.Join(artifacts(t), "dashboard-alarm.png")))
	confirmed("put output 1 back", fight+` [data-action="reassert"]`)
	sw.expectRoutes(t, 20*time.Second, [2]int{1, 1})
	page.do("the alarm is gone", chromedp.WaitNotVisible(chromedp.CSS(`#alarms-banner`)),
		chromedp.WaitVisible(chromedp.CSS(`#results li[data-verb="reassert"][data-state="ok"]`)))
	page.noScriptErrors()
}

// chromiumPath finds Debian's chromium; without it the test is skipped, or
// fails under CI=true.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the dashboard test needs chromium (CI=true: nothing is skipped): %v; .ci/deps installs it (apt-get install chromium)", err)
	}
	t.Skipf("chromium is not installed (apt-get install chromium): %v", err)
	return ""
}

// noAutoFailback turns the policy's automatic failback off in site.yaml, so
// that a restored main stays covered until an operator fails it back.
func noAutoFailback(t *testing.T, site string) {
	t.Helper()
	data, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	const from, to = "settings: {failback_delay: 1s}", "settings: {failback_delay: 1s, auto_failback: false}"
	if !bytes.Contains(data, []byte(from)) {
		t.Fatalf("site.yaml has no %q to change:\n%s", from, data)
	}
	if err := os.WriteFile(site, bytes.Replace(data, []byte(from), []byte(to), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// slowRelease gives the backup a release hook that takes seconds.
func slowRelease(t *testing.T, site, seconds string) {
	t.Helper()
	data, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	const from = "    duties: {switcher: router, inputs: [3, 4]}\n"
	to := from + `    hooks: {release: [{exec: [/bin/sleep, "` + seconds + `"]}]}` + "\n"
	if !bytes.Contains(data, []byte(from)) {
		t.Fatalf("site.yaml has no %q to change:\n%s", from, data)
	}
	if err := os.WriteFile(site, bytes.Replace(data, []byte(from), []byte(to), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// artifacts is the repository's folder for what tests leave to look at.
func artifacts(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", ".artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserPage is one headless chromium tab, and the script errors it saw.
type browserPage struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	errors []string
}

// openBrowser starts chromium; the test's end stops it.
func openBrowser(t *testing.T, path string) *browserPage {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1280, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser process to end
	})
	p := &browserPage{t: t, ctx: ctx}
	// The first call starts the browser; it must not have a deadline.
	if err := chromedp.Listen(ctx, p.watch); err != nil {
		t.Fatalf("starting chromium (%s): %v", path, err)
	}
	return p
}

// watch collects uncaught exceptions and console errors of the page.
func (p *browserPage) watch(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = ev.ExceptionDetails.Text
		if ex := ev.ExceptionDetails.Exception; ex != nil {
			msg += " " + ex.Description
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		msg = "console.error"
		for _, arg := range ev.Args {
			msg += " " + string(arg.Value)
		}
	default:
		return
	}
	p.mu.Lock()
	p.errors = append(p.errors, msg)
	p.mu.Unlock()
}

func (p *browserPage) noScriptErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errors {
		p.t.Errorf("script error on the page: %s", e)
	}
}

// do runs the steps within 30 seconds; when they fail, the test fails with
// what the page shows.
func (p *browserPage) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v\n%s", what, err, p.describe())
	}
}

func (p *browserPage) text(selector string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector)))
	if err != nil {
		p.t.Fatalf("text of %s: %v\n%s", selector, err, p.describe())
	}
	return strings.TrimSpace(text)
}

func (p *browserPage) eval(expression string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expression))
	if err != nil {
		p.t.Fatalf("%s: %v", expression, err)
	}
	return v
}

// describe is the page's text, its script errors and a screenshot, for a
// failed step.
func (p *browserPage) describe() string {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		text = fmt.Sprintf("(no text: %v)", err)
	}
	p.mu.Lock()
	errs := strings.Join(p.errors, "\n")
	p.mu.Unlock()
	shot := "(none)"
	if data, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		shot = filepath.Join(artifacts(p.t), "dashboard-failure.png")
		if err := os.WriteFile(shot, data, 0o644); err != nil {
			shot = err.Error()
		}
	}
	return fmt.Sprintf("the page shows:\n%s\nscript errors: %s\nscreenshot: %s", text, errs, shot)
}

// screenshot saves the whole page as a PNG at path.
func (p *browserPage) screenshot(path string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	data, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// understudy dashboard says why it has no address to print.
func TestDashboardCommandWithoutAnInstance(t *testing.T) {
	site := writeSite(t, siteParams{Name: "nodash", Bus: "url: tcp://127.0.0.1:1", Router: "127.0.0.1:9990"})
	var out, errs bytes.Buffer
	if code := run([]string{"dashboard", "-c", site, "--member", "backup", "--state", t.TempDir()}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "is the instance of backup running on this machine?") {
		t.Errorf("dashboard without a running instance: exit %d\n%s%s", code, out.String(), errs.String())
	}
	errs.Reset()
	if code := run([]string{"dashboard", "-c", site, "extra"}, &out, &errs); code != 2 || !strings.Contains(errs.String(), "usage: understudy dashboard") {
		t.Errorf("dashboard with an argument: exit %d\n%s", code, errs.String())
	}
	if out.Len() != 0 {
		t.Errorf("printed %q without an address", out.String())
	}
	if got, err := dashboardURL("http://127.0.0.1:7901", "0123abcd"); err != nil || got != "http://127.0.0.1:7901/dashboard/#token=0123abcd" {
		t.Errorf("dashboardURL = %q, %v", got, err)
	}
	if _, err := dashboardURL("127.0.0.1:7901", "x"); err == nil {
		t.Error("dashboardURL took an address without a scheme")
	}
}

// understudy dashboard --read-only prints the link with the read token (a
// link that may watch, whose buttons are refused), the default the one with
// the command token; each says what its token lets whoever has it do.
func TestDashboardReadOnlyLinkCarriesTheReadToken(t *testing.T) {
	site := writeSite(t, siteParams{Name: "rodash", Bus: "url: tcp://127.0.0.1:1", Router: "127.0.0.1:9990"})
	state := t.TempDir()
	for file, content := range map[string]string{"rodash-backup.api": "http://127.0.0.1:21907\n", "rodash-backup.token": "command-token-0123456789abcdef0123456789\n", "rodash-backup.read-token": "read-token-0123456789abcdef0123456789\n"} {
		if err := os.WriteFile(filepath.Join(state, file), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		flags      []string
		link, says string
	}{
		{nil, "http://127.0.0.1:21907/dashboard/#token=command-token-0123456789abcdef0123456789", "whoever has it may command the site"},
		{[]string{"--read-only"}, "http://127.0.0.1:21907/dashboard/#token=read-token-0123456789abcdef0123456789", "whoever has it may watch the site (its commands are refused)"},
	} {
		var out, errs bytes.Buffer
		if code := run(append([]string{"dashboard", "-c", site, "--member", "backup", "--state", state}, tc.flags...), &out, &errs); code != 0 {
			t.Fatalf("dashboard %v: exit %d\n%s", tc.flags, code, errs.String())
		}
		if got := strings.TrimSpace(out.String()); got != tc.link {
			t.Errorf("dashboard %v printed %q, want %q", tc.flags, got, tc.link)
		}
		if !strings.Contains(errs.String(), tc.says) {
			t.Errorf("dashboard %v says %q, want %q", tc.flags, errs.String(), tc.says)
		}
	}
	// No read token yet (an instance of a release without one has not
	// started since): it says where it looked.
	if err := os.Remove(filepath.Join(state, "rodash-backup.read-token")); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	if code := run([]string{"dashboard", "--read-only", "-c", site, "--member", "backup", "--state", state}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "rodash-backup.read-token") || out.Len() != 0 {
		t.Errorf("dashboard --read-only without a read token: exit %d\n%s%s", code, out.String(), errs.String())
	}
}
