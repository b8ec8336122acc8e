package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/store"
)

const wait = 5 * time.Second

// fixture is a site whose member "standby" has real hook programs in a
// temporary folder, and a state file path.
type fixture struct {
	dir       string
	site      *config.Site
	statePath string
}

const siteYAML = `site: demo
coordinator: main
members:
  - id: main
    roles: [manager]
  - id: standby
    standby: true
    hooks:
      takeover:
        - exec: [DIR/takeover.sh, "{{.member}}", "{{.self}}", "{{.verb}}", "{{.action}}", "{{.coordinator}}", '{{join .outputs ","}}']
      release:
        - exec: [DIR/fail.sh]
      hold:
        - exec: [DIR/hold.sh]
`

var scripts = map[string]string{
	// Records each run, then reports what it got (arguments and environment).
	"takeover.sh": `#!/bin/sh
echo "$*" >> DIR/takeover.runs
echo "took over $1 as $2 (verb $3, action $4, from $5, outputs $6, env $UNDERSTUDY_SELF/$UNDERSTUDY_ACTION)"
`,
	"fail.sh": `#!/bin/sh
echo run >> DIR/fail.runs
echo "boom: recorder missing" >&2
exit 3
`,
	// Waits until the test creates DIR/go.
	"hold.sh": `#!/bin/sh
echo run >> DIR/hold.runs
while [ ! -e DIR/go ]; do sleep 0.02; done
echo released
`,
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	for name, text := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(text, "DIR", dir)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{dir: dir, site: parseSite(t, dir, strings.ReplaceAll(siteYAML, "DIR", dir)), statePath: filepath.Join(dir, "state", "standby.db")}
}

func parseSite(t *testing.T, dir, text string) *config.Site {
	t.Helper()
	site, err := config.Parse(filepath.Join(dir, "site.yaml"), []byte(text))
	if err != nil {
		t.Fatalf("site: %v", err)
	}
	return site
}

// runs counts the runs a hook program recorded.
func (f *fixture) runs(t *testing.T, hook string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, hook+".runs"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// release lets hold.sh finish.
func (f *fixture) release(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(f.statePath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// published is one ack the agent published.
type published struct {
	topic    string
	qos      byte
	retained bool
	raw      []byte
	ack      bus.Ack
}

// harness is an agent with its published acks.
type harness struct {
	t      *testing.T
	a      *Agent
	acks   chan published
	cancel context.CancelFunc
	done   chan struct{}
}

// newHarness makes an agent on st without running it; mod may change its
// options (Publish is already set to capture acks).
func (f *fixture) newHarness(t *testing.T, st *store.Store, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, acks: make(chan published, 4096)}
	opts := Options{
		Site:  f.site,
		Self:  "standby",
		Store: st,
		Publish: func(topic string, qos byte, retained bool, payload []byte) error {
			p := published{topic: topic, qos: qos, retained: retained, raw: append([]byte(nil), payload...)}
			if err := json.Unmarshal(payload, &p.ack); err != nil {
				t.Errorf("ack is not JSON: %v: %s", err, payload)
			}
			h.acks <- p
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.a = a
	return h
}

// start runs the agent until stop (or the end of the test).
func (h *harness) start() *harness {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		h.a.Run(ctx)
	}()
	h.t.Cleanup(h.stop)
	return h
}

// stop ends Run and waits for it to return.
func (h *harness) stop() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(wait):
		h.t.Fatal("Run did not return after its context ended")
	}
}

func (f *fixture) start(t *testing.T, st *store.Store) *harness {
	t.Helper()
	return f.newHarness(t, st, nil).start()
}

// send delivers a command as the bus would.
func (h *harness) send(id string, epoch uint64, verb string, args map[string]any) {
	h.t.Helper()
	payload, err := json.Marshal(bus.Command{ID: id, Epoch: epoch, From: "main", Verb: verb, Args: args})
	if err != nil {
		h.t.Fatal(err)
	}
	h.a.Handle(payload)
}

// next returns the next published ack, checking how it was published.
func (h *harness) next() published {
	h.t.Helper()
	select {
	case p := <-h.acks:
		if p.topic != "understudy/demo/member/standby/ack" || p.qos != 1 || p.retained {
			h.t.Errorf("ack published on %s qos %d retained %v; want understudy/demo/member/standby/ack, qos 1, not retained", p.topic, p.qos, p.retained)
		}
		if p.ack.Member != "standby" {
			h.t.Errorf("ack member %q, want standby", p.ack.Member)
		}
		return p
	case <-time.After(wait):
		h.t.Fatalf("no ack within %v", wait)
		return published{}
	}
}

// expect returns the next ack and checks its id and state.
func (h *harness) expect(id, state string) published {
	h.t.Helper()
	p := h.next()
	if p.ack.ID != id || p.ack.State != state {
		h.t.Fatalf("ack %s %s (error %q), want %s %s", p.ack.ID, p.ack.State, p.ack.Error, id, state)
	}
	return p
}

// noMoreAcks checks that nothing else was published (call once the agent
// has stopped or is idle).
func (h *harness) noMoreAcks() {
	h.t.Helper()
	select {
	case p := <-h.acks:
		h.t.Fatalf("unexpected ack %s %s", p.ack.ID, p.ack.State)
	default:
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// lockedBuffer is a log sink for several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var takeoverArgs = map[string]any{"member": "rec-2", "outputs": []int{3, 4}}

func TestTakeoverRunsOnceAndDuplicatesGetTheSameAnswer(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	h := f.start(t, st)

	h.send("a1", 1, "takeover", takeoverArgs)
	if p := h.expect("a1", bus.AckRunning); p.ack.Epoch != 1 || p.ack.Result != nil {
		t.Errorf("running ack %+v: want epoch 1 and no result", p.ack)
	}
	done := h.expect("a1", bus.AckDone)
	if done.ack.Epoch != 1 || done.ack.Error != "" {
		t.Errorf("done ack %+v", done.ack)
	}
	steps, ok := done.ack.Result.([]any)
	if !ok || len(steps) != 1 {
		t.Fatalf("result %#v: want a list of one step", done.ack.Result)
	}
	step, _ := steps[0].(map[string]any)
	want := "took over rec-2 as standby (verb takeover, action a1, from main, outputs 3,4, env standby/a1)"
	if step["kind"] != "exec" || step["status"] != float64(0) || strings.TrimSpace(fmt.Sprint(step["output"])) != want ||
		!strings.HasSuffix(fmt.Sprint(step["what"]), " rec-2 standby takeover a1 main 3,4") || step["error"] != nil {
		t.Errorf("step %#v", step)
	}
	if _, ok := step["took_ms"].(float64); !ok {
		t.Errorf("took_ms %#v: want a number", step["took_ms"])
	}
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("hook ran %d times, want 1", n)
	}
	r, ok := h.a.Received("a1")
	if !ok || r.State != bus.AckDone || r.Verb != "takeover" || r.From != "main" || r.Epoch != 1 || r.At.IsZero() || r.Finished.IsZero() {
		t.Errorf("Received(a1) = %+v, %v", r, ok)
	}
	if !reflect.DeepEqual(r.Result, done.ack.Result) {
		t.Errorf("recorded result %#v, acked %#v", r.Result, done.ack.Result)
	}

	// The same command again, even from a newer coordinator: not run, the
	// same final answer.
	h.send("a1", 2, "takeover", takeoverArgs)
	again := h.expect("a1", bus.AckDone)
	if !bytes.Equal(again.raw, done.raw) {
		t.Errorf("duplicate answered\n%s\nwant\n%s", again.raw, done.raw)
	}
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("hook ran %d times after a duplicate, want 1", n)
	}

	// After a restart of the instance: still not run again.
	h.stop()
	h.noMoreAcks()
	st.Close()
	st = f.openStore(t)
	h = f.start(t, st)
	h.send("a1", 2, "takeover", takeoverArgs)
	if again := h.expect("a1", bus.AckDone); !bytes.Equal(again.raw, done.raw) {
		t.Errorf("duplicate after restart answered\n%s\nwant\n%s", again.raw, done.raw)
	}
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("hook ran %d times after a restart and a duplicate, want 1", n)
	}
	// The duplicate's newer epoch was remembered across the restart too.
	h.send("a2", 1, "takeover", takeoverArgs)
	h.expect("a2", bus.AckStale)
}

func TestOlderEpochIsStale(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	h := f.start(t, st)

	h.send("x1", 5, "noop", nil)
	h.expect("x1", bus.AckRunning)
	h.expect("x1", bus.AckDone)

	h.send("x2", 4, "takeover", takeoverArgs)
	stale := h.expect("x2", bus.AckStale)
	if stale.ack.Epoch != 4 || !strings.Contains(stale.ack.Error, "older than 5") {
		t.Errorf("stale ack %+v: want the command's epoch 4 and a reason", stale.ack)
	}
	if _, ok := h.a.Received("x2"); ok {
		t.Error("a stale command was recorded")
	}

	h.stop()
	st.Close()
	st = f.openStore(t)
	h = f.start(t, st)
	h.send("x3", 3, "takeover", takeoverArgs)
	h.expect("x3", bus.AckStale)
	h.send("x2", 4, "takeover", takeoverArgs) // redelivered: still stale
	h.expect("x2", bus.AckStale)
	if n := f.runs(t, "takeover"); n != 0 {
		t.Fatalf("stale commands ran the hook %d times", n)
	}

	// The current epoch is still obeyed.
	h.send("x4", 5, "takeover", takeoverArgs)
	h.expect("x4", bus.AckRunning)
	h.expect("x4", bus.AckDone)
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("hook ran %d times, want 1", n)
	}
}

// A command whose epoch is far above the newest seen (a forged 2^64-1,
// say) is refused, counted and not remembered: the real coordinator's
// commands are still obeyed, also after a restart, and also when the
// forgery reuses the id of a finished command. Before, the member stored
// 2^64-1 and refused every real takeover as stale, for good.
func TestAnAbsurdEpochIsRefusedAndNotRemembered(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	drops := bus.NewDrops(slog.New(slog.DiscardHandler))
	h := f.newHarness(t, st, func(o *Options) { o.Drops = drops }).start()

	h.send("real1", 3, "noop", nil)
	h.expect("real1", bus.AckRunning)
	h.expect("real1", bus.AckDone)
	for i, epoch := range []uint64{math.MaxUint64, 3 + EpochWindow + 1} {
		id := fmt.Sprintf("forged%d", i)
		h.send(id, epoch, "takeover", takeoverArgs)
		p := h.expect(id, bus.AckFailed)
		if want := fmt.Sprintf("epoch %d is more than %d above 3", epoch, EpochWindow); !strings.Contains(p.ack.Error, want) {
			t.Errorf("refusal %q, want it to say %q", p.ack.Error, want)
		}
		if _, ok := h.a.Received(id); ok {
			t.Errorf("the forged command %s was recorded", id)
		}
	}
	h.send("real1", math.MaxUint64, "noop", nil) // a forged duplicate of a finished command
	h.expect("real1", bus.AckFailed)
	if got := drops.Counts()["invalid_field"]; got != 3 {
		t.Errorf("counted %d refusals (invalid_field), want 3: %v", got, drops.Counts())
	}
	// At the edge of the window: taken.
	h.send("real2", 3+EpochWindow, "noop", nil)
	h.expect("real2", bus.AckRunning)
	h.expect("real2", bus.AckDone)

	h.stop()
	st.Close()
	st = f.openStore(t)
	h = f.start(t, st)
	h.send("real3", 3+EpochWindow, "takeover", takeoverArgs)
	h.expect("real3", bus.AckRunning)
	h.expect("real3", bus.AckDone)
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("the real takeover ran %d times, want 1", n)
	}
}

func TestFailingHookAnswersFailed(t *testing.T) {
	f := newFixture(t)
	h := f.start(t, f.openStore(t))

	h.send("r1", 1, "release", map[string]any{"member": "rec-2"})
	h.expect("r1", bus.AckRunning)
	failed := h.expect("r1", bus.AckFailed)
	if !strings.Contains(failed.ack.Error, "exited with status 3") || !strings.Contains(failed.ack.Error, "boom: recorder missing") {
		t.Errorf("error %q: want the exit status and the last output line", failed.ack.Error)
	}
	steps, _ := failed.ack.Result.([]any)
	if len(steps) != 1 {
		t.Fatalf("result %#v: want the step that ran", failed.ack.Result)
	}
	step, _ := steps[0].(map[string]any)
	if step["status"] != float64(3) || !strings.Contains(fmt.Sprint(step["output"]), "boom") || step["error"] == nil {
		t.Errorf("step %#v", step)
	}
	if r, _ := h.a.Received("r1"); r.State != bus.AckFailed || r.Error != failed.ack.Error {
		t.Errorf("Received(r1) = %+v", r)
	}

	h.send("r1", 1, "release", map[string]any{"member": "rec-2"})
	if again := h.expect("r1", bus.AckFailed); !bytes.Equal(again.raw, failed.raw) {
		t.Errorf("duplicate answered\n%s\nwant\n%s", again.raw, failed.raw)
	}
	if n := f.runs(t, "fail"); n != 1 {
		t.Fatalf("failing hook ran %d times, want 1", n)
	}
}

func TestVerbWithoutHookIsDoneWithNote(t *testing.T) {
	f := newFixture(t)
	h := f.start(t, f.openStore(t))
	h.send("n1", 1, "resume", nil)
	h.expect("n1", bus.AckRunning)
	done := h.expect("n1", bus.AckDone)
	want := map[string]any{"note": "no resume hook on standby; nothing to run"}
	if !reflect.DeepEqual(done.ack.Result, want) {
		t.Errorf("result %#v, want %#v", done.ack.Result, want)
	}
}

func TestDuplicateWhileRunningIsAnsweredRunning(t *testing.T) {
	f := newFixture(t)
	h := f.start(t, f.openStore(t))

	h.send("h1", 1, "hold", nil)
	h.expect("h1", bus.AckRunning)
	h.send("h1", 1, "hold", nil)
	h.expect("h1", bus.AckRunning)
	if r, ok := h.a.Received("h1"); !ok || r.State != bus.AckRunning {
		t.Errorf("Received(h1) = %+v, %v while the hook runs", r, ok)
	}
	f.release(t)
	done := h.expect("h1", bus.AckDone)
	steps, _ := done.ack.Result.([]any)
	if len(steps) != 1 || !strings.Contains(fmt.Sprint(steps[0]), "released") {
		t.Errorf("result %#v", done.ack.Result)
	}
	if n := f.runs(t, "hold"); n != 1 {
		t.Fatalf("hook ran %d times, want 1", n)
	}
}

func TestInterruptedCommandRunsAgain(t *testing.T) {
	t.Run("stopped mid-hook", func(t *testing.T) {
		f := newFixture(t)
		st := f.openStore(t)
		h := f.start(t, st)
		h.send("i1", 1, "hold", nil)
		h.expect("i1", bus.AckRunning)
		eventually.True(t, wait, "the hook starts", func() (bool, string) { return f.runs(t, "hold") > 0, "it has not" })
		h.stop() // the instance stops mid-hook
		h.noMoreAcks()
		if r, ok := h.a.Received("i1"); !ok || r.State != bus.AckRunning {
			t.Fatalf("Received(i1) = %+v, %v after a stop mid-hook; want running", r, ok)
		}

		// The next process: the coordinator redelivers, the hook runs again.
		f.release(t)
		h = f.start(t, st)
		h.send("i1", 1, "hold", nil)
		h.expect("i1", bus.AckRunning)
		h.expect("i1", bus.AckDone)
		if n := f.runs(t, "hold"); n != 2 {
			t.Fatalf("hook ran %d times, want 2 (interrupted, then again)", n)
		}
		h.send("i1", 1, "hold", nil)
		h.expect("i1", bus.AckDone)
	})

	t.Run("recorded as running", func(t *testing.T) {
		f := newFixture(t)
		st := f.openStore(t)
		if err := st.Put(bucketReceived, "i2", Received{ID: "i2", Epoch: 1, Verb: "takeover", From: "main", State: bus.AckRunning, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		h := f.start(t, st)
		h.send("i2", 1, "takeover", takeoverArgs)
		h.expect("i2", bus.AckRunning)
		h.expect("i2", bus.AckDone)
		if n := f.runs(t, "takeover"); n != 1 {
			t.Fatalf("hook ran %d times, want 1", n)
		}
	})
}

func TestMalformedPayloadIsDroppedWithoutAnswer(t *testing.T) {
	f := newFixture(t)
	var log lockedBuffer
	h := f.newHarness(t, f.openStore(t), func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&log, nil)) }).start()

	for _, payload := range []string{
		`not json`,
		`{"id": "m1"`,
		`{"id": "m1", "from": "main", "verb": "takeover"}`,              // no epoch
		`{"id": "m1", "epoch": 1, "from": "main", "verb": "take over"}`, // bad verb
		`{"id": "m1", "epoch": 1, "from": "main", "verb": "takeover"} {}`,
	} {
		h.a.Handle([]byte(payload))
	}
	h.send("ok", 1, "noop", nil)
	h.expect("ok", bus.AckRunning) // nothing was answered before it
	h.expect("ok", bus.AckDone)
	if _, ok := h.a.Received("m1"); ok {
		t.Error("a malformed command was recorded")
	}
	if n := strings.Count(log.String(), "dropped malformed command"); n != 2 {
		t.Errorf("logged %d drops, want one per reason (2):\n%s", n, log.String())
	}
}

func TestHandleNeverBlocksWhenTheQueueIsFull(t *testing.T) {
	f := newFixture(t)
	var log lockedBuffer
	h := f.newHarness(t, f.openStore(t), func(o *Options) {
		o.Queue = 1
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})

	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for i := range 100 {
			h.send(fmt.Sprintf("q%d", i), 1, "noop", nil)
		}
	}()
	select {
	case <-flooded:
	case <-time.After(wait):
		t.Fatal("Handle blocked with a full queue and Run not running")
	}
	if n := strings.Count(log.String(), "command queue full"); n != 1 {
		t.Errorf("logged the full queue %d times, want once:\n%s", n, log.String())
	}

	h.start()
	h.expect("q0", bus.AckRunning)
	h.expect("q0", bus.AckDone)
	for i := 1; i < 100; i++ {
		if _, ok := h.a.Received(fmt.Sprintf("q%d", i)); ok {
			t.Fatalf("q%d was kept although the queue was full", i)
		}
	}
	h.noMoreAcks()
	// The coordinator resends a dropped command; now there is room.
	h.send("q7", 1, "noop", nil)
	h.expect("q7", bus.AckRunning)
	h.expect("q7", bus.AckDone)
}

func TestPublishErrorIsAnsweredOnTheNextAsk(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	failed := false
	h := f.newHarness(t, f.openStore(t), func(o *Options) {
		capture := o.Publish
		o.Publish = func(topic string, qos byte, retained bool, payload []byte) error {
			mu.Lock()
			defer mu.Unlock()
			if !failed && bytes.Contains(payload, []byte(`"done"`)) {
				failed = true
				return errors.New("not connected")
			}
			return capture(topic, qos, retained, payload)
		}
	}).start()
	h.send("p1", 1, "takeover", takeoverArgs)
	h.expect("p1", bus.AckRunning)
	// The final answer was lost; the coordinator asks again.
	eventually.True(t, wait, "the command finishes", func() (bool, string) {
		r, ok := h.a.Received("p1")
		return ok && r.State == bus.AckDone, fmt.Sprintf("%+v", r)
	})
	h.send("p1", 1, "takeover", takeoverArgs)
	h.expect("p1", bus.AckDone)
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("hook ran %d times, want 1", n)
	}
}

func TestNewChecksHooksAndMember(t *testing.T) {
	dir := t.TempDir()
	site := parseSite(t, dir, `site: demo
coordinator: main
members:
  - id: main
  - id: standby
    hooks:
      takeover:
        - exec: [/bin/true]
        - exec: [`+dir+`/missing.sh, "{{.member}}"]
`)
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	publish := func(string, byte, bool, []byte) error { return nil }

	_, err = New(Options{Site: site, Self: "standby", Store: st, Publish: publish})
	if err == nil {
		t.Fatal("New accepted a hook whose program does not exist")
	}
	for _, want := range []string{"member standby", "hook takeover step 2", dir + "/missing.sh", "does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap os.ErrNotExist", err)
	}

	_, err = New(Options{Site: site, Self: "ghost", Store: st, Publish: publish})
	if err == nil || !strings.Contains(err.Error(), `"ghost" is not a member`) {
		t.Errorf("New for an unknown member: %v", err)
	}
	if _, err := New(Options{Site: site, Self: "main", Store: st, Publish: publish}); err != nil {
		t.Errorf("New for a member without hooks: %v", err)
	}
}

func TestNewForgetsOldCommands(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	records := map[string]Received{
		"old-done":    {State: bus.AckDone, At: now.Add(-8 * 24 * time.Hour), Finished: now.Add(-8 * 24 * time.Hour)},
		"recent-done": {State: bus.AckDone, At: now.Add(-8 * 24 * time.Hour), Finished: now.Add(-6 * 24 * time.Hour)},
		"old-running": {State: bus.AckRunning, At: now.Add(-8 * 24 * time.Hour)},
		"running":     {State: bus.AckRunning, At: now.Add(-time.Hour)},
	}
	for id, r := range records {
		r.ID, r.Epoch, r.Verb, r.From = id, 1, "takeover", "main"
		if err := st.Put(bucketReceived, id, r); err != nil {
			t.Fatal(err)
		}
	}
	h := f.newHarness(t, st, func(o *Options) { o.Now = func() time.Time { return now } })
	for id, want := range map[string]bool{"old-done": false, "recent-done": true, "old-running": false, "running": true} {
		if _, ok := h.a.Received(id); ok != want {
			t.Errorf("Received(%s) found %v, want %v", id, ok, want)
		}
	}
}

func TestTrimOutput(t *testing.T) {
	long := strings.Repeat("é", 1000) + "the end"
	got := trimOutput("exec", long)
	if len(got) > maxOutput || !strings.HasSuffix(got, "the end") || !strings.HasPrefix(got, "…") || !utf8Valid(got) {
		t.Errorf("exec output trimmed to %d bytes: %q…", len(got), got[:20])
	}
	long = "the start" + strings.Repeat("é", 1000)
	got = trimOutput("http", long)
	if len(got) > maxOutput || !strings.HasPrefix(got, "the start") || !strings.HasSuffix(got, "…") || !utf8Valid(got) {
		t.Errorf("http output trimmed to %d bytes", len(got))
	}
	if got := trimOutput("exec", "short"); got != "short" {
		t.Errorf("short output changed to %q", got)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestTaskRunsBesideHooksAndBeforeItsOwn(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	started := make(chan string, 4)
	finish := make(chan error, 4)
	h := f.newHarness(t, st, func(o *Options) {
		o.Tasks = map[string]Task{
			// The task for "takeover" runs before the member's takeover hook.
			"takeover": func(ctx context.Context, c bus.Command) (map[string]any, error) {
				started <- c.ID
				select {
				case err := <-finish:
					return map[string]any{"copied": 3}, err
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			},
		}
	}).start()

	// A task that takes its time holds up neither a hook nor another task.
	h.send("t1", 1, "takeover", takeoverArgs)
	h.expect("t1", bus.AckRunning)
	if id := <-started; id != "t1" {
		t.Fatalf("task started for %s", id)
	}
	h.send("h1", 1, "hold", nil)
	h.expect("h1", bus.AckRunning)
	f.release(t)
	h.expect("h1", bus.AckDone)
	h.send("t2", 1, "takeover", takeoverArgs)
	h.expect("t2", bus.AckRunning)
	if id := <-started; id != "t2" {
		t.Fatalf("task started for %s", id)
	}
	if n := f.runs(t, "takeover"); n != 0 {
		t.Fatalf("the takeover hook ran %d times before its task finished", n)
	}

	// A task that fails: its hook does not run.
	finish <- errors.New("disk full")
	failed := h.next()
	if failed.ack.State != bus.AckFailed || failed.ack.Error != "disk full" {
		t.Fatalf("ack %+v, want failed with the task's error", failed.ack)
	}
	// The other succeeds: the hook runs after it, given the task's result.
	finish <- nil
	done := h.next()
	if done.ack.State != bus.AckDone {
		t.Fatalf("ack %+v, want done", done.ack)
	}
	res, _ := done.ack.Result.(map[string]any)
	steps, _ := res["steps"].([]any)
	if res["copied"] != float64(3) || len(steps) != 1 {
		t.Fatalf("result %#v: want the task's result with the hook's steps", done.ack.Result)
	}
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("the takeover hook ran %d times, want 1 (after the task that succeeded)", n)
	}
	// Duplicates are answered from the record, not run again.
	h.send(failed.ack.ID, 1, "takeover", takeoverArgs)
	h.expect(failed.ack.ID, bus.AckFailed)
	select {
	case id := <-started:
		t.Fatalf("task ran again for duplicate %s", id)
	default:
	}
}

func TestTaskStoppedByShutdownRunsAgainWhenRedelivered(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	runs := 0
	task := func(ctx context.Context, c bus.Command) (map[string]any, error) {
		runs++
		if runs == 1 {
			<-ctx.Done() // stopped mid-copy
			return nil, fmt.Errorf("copying: %w", ctx.Err())
		}
		return map[string]any{"run": runs}, nil
	}
	withTask := func(o *Options) { o.Tasks = map[string]Task{"copy": task} }

	h := f.newHarness(t, st, withTask).start()
	h.send("c1", 1, "copy", nil)
	h.expect("c1", bus.AckRunning)
	h.stop()
	h.noMoreAcks()
	if r, ok := h.a.Received("c1"); !ok || r.State != bus.AckRunning {
		t.Fatalf("Received(c1) = %+v, %v after a stop mid-task; want running", r, ok)
	}

	h = f.newHarness(t, st, withTask).start()
	h.send("c1", 1, "copy", nil)
	h.expect("c1", bus.AckRunning)
	done := h.expect("c1", bus.AckDone)
	if res, _ := done.ack.Result.(map[string]any); res["run"] != float64(2) {
		t.Fatalf("result %#v, want the second run's", done.ack.Result)
	}
}

// The agent keeps what its member covers: a takeover done adds the member,
// a release done removes it, a failed one changes nothing; the record
// outlives a restart, and every change is told.
func TestTheAgentKeepsWhatItsMemberCovers(t *testing.T) {
	f := newFixture(t)
	st := f.openStore(t)
	told := make(chan []bus.Covered, 16)
	withTold := func(o *Options) { o.CoveringChanged = func(c []bus.Covered) { told <- c } }
	members := func(c []bus.Covered) []string {
		out := []string{}
		for _, cv := range c {
			out = append(out, cv.Member)
		}
		return out
	}
	nextTold := func() []string {
		t.Helper()
		select {
		case c := <-told:
			return members(c)
		case <-time.After(wait):
			t.Fatal("the change of what the member covers was not told")
			return nil
		}
	}
	h := f.newHarness(t, st, withTold).start()
	if c := h.a.Covering(); len(c) != 0 {
		t.Fatalf("a new agent covers %v", c)
	}
	h.send("a1", 3, "takeover", takeoverArgs)
	h.expect("a1", bus.AckRunning)
	h.expect("a1", bus.AckDone)
	if got := nextTold(); !reflect.DeepEqual(got, []string{"rec-2"}) {
		t.Fatalf("told %v after the takeover of rec-2", got)
	}
	c := h.a.Covering()
	if len(c) != 1 || c[0].Member != "rec-2" || c[0].Action != "a1" || c[0].Epoch != 3 || c[0].Since.IsZero() {
		t.Fatalf("Covering() = %+v", c)
	}
	since := c[0].Since
	// A command that is no takeover, and a release that fails: no change.
	h.send("a2", 3, "hold", map[string]any{"member": "rec-2"})
	h.expect("a2", bus.AckRunning)
	f.release(t)
	h.expect("a2", bus.AckDone)
	h.send("a3", 3, "release", map[string]any{"member": "rec-2"})
	h.expect("a3", bus.AckRunning)
	h.expect("a3", bus.AckFailed)
	// Taken over again: covered since the first time.
	h.send("a4", 3, "takeover", takeoverArgs)
	h.expect("a4", bus.AckRunning)
	h.expect("a4", bus.AckDone)
	if got := nextTold(); !reflect.DeepEqual(got, []string{"rec-2"}) {
		t.Fatalf("told %v after rec-2 was taken over again", got)
	}
	if c := h.a.Covering(); len(c) != 1 || !c[0].Since.Equal(since) || c[0].Action != "a4" {
		t.Fatalf("Covering() = %+v after a takeover again; want since %v", c, since)
	}

	// After a restart, with a release hook that works.
	h.stop()
	st.Close()
	f.site = parseSite(t, f.dir, strings.ReplaceAll(strings.ReplaceAll(siteYAML, "DIR/fail.sh", "DIR/hold.sh"), "DIR", f.dir))
	st = f.openStore(t)
	h = f.newHarness(t, st, withTold).start()
	if got := members(h.a.Covering()); !reflect.DeepEqual(got, []string{"rec-2"}) {
		t.Fatalf("after a restart the agent covers %v, want rec-2", got)
	}
	h.send("a5", 4, "release", map[string]any{"member": "rec-2"})
	h.expect("a5", bus.AckRunning)
	h.expect("a5", bus.AckDone)
	if got := nextTold(); len(got) != 0 {
		t.Fatalf("told %v after the release of rec-2, want nothing", got)
	}
	if c := h.a.Covering(); len(c) != 0 {
		t.Fatalf("Covering() = %+v after the release", c)
	}
	select {
	case c := <-told:
		t.Fatalf("told %v without a change", members(c))
	default:
	}
}

// A command that finishes while the state file takes no writes (the state
// folder full) is answered, and its result is written once the file takes
// writes again: a restart after that answers a redelivery from the record
// and does not run the hook again.
func TestAResultNotWrittenIsWrittenWhenThereIsRoom(t *testing.T) {
	f := newFixture(t)
	var full atomic.Bool
	st, err := store.Open(f.statePath, store.Options{BeforeCommit: func() error {
		if full.Load() {
			return errors.New("no space left on device")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := f.start(t, st)
	h.send("r1", 1, "hold", nil)
	h.expect("r1", bus.AckRunning)
	full.Store(true)
	f.release(t)
	h.expect("r1", bus.AckDone)
	if recs, _ := ReadReceived(st); recs["r1"].State != bus.AckRunning {
		t.Fatalf("with the state folder full the record is %+v, want still running", recs["r1"])
	}
	full.Store(false)
	eventually.True(t, wait, "the result is written once there is room", func() (bool, string) {
		recs, err := ReadReceived(st)
		return err == nil && recs["r1"].State == bus.AckDone, fmt.Sprintf("record %+v, %v", recs["r1"], err)
	})
	h.stop()
	h = f.start(t, st)
	h.send("r1", 1, "hold", nil)
	h.expect("r1", bus.AckDone)
	if n := f.runs(t, "hold"); n != 1 {
		t.Fatalf("hook ran %d times, want once", n)
	}
}

// A command received while the state file takes no writes runs all the
// same (a takeover does not wait for the disk); its record and its epoch
// are written with its result once the file takes writes, and a restart
// after that answers a redelivery from the record.
func TestACommandRunsWhileTheStateFileTakesNoWrites(t *testing.T) {
	f := newFixture(t)
	var full atomic.Bool
	st, err := store.Open(f.statePath, store.Options{BeforeCommit: func() error {
		if full.Load() {
			return errors.New("no space left on device")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	full.Store(true)
	h := f.start(t, st)
	h.send("w1", 3, "takeover", takeoverArgs)
	h.expect("w1", bus.AckRunning)
	h.expect("w1", bus.AckDone)
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("hook ran %d times with the state file full, want once", n)
	}
	full.Store(false)
	eventually.True(t, wait, "the record is written once there is room", func() (bool, string) {
		recs, err := ReadReceived(st)
		return err == nil && recs["w1"].State == bus.AckDone, fmt.Sprintf("record %+v, %v", recs["w1"], err)
	})
	var epoch uint64
	if _, err := st.Get(bucketMeta, keyEpoch, &epoch); err != nil || epoch != 3 {
		t.Fatalf("epoch %d (%v), want 3", epoch, err)
	}
	h.stop()
	h = f.start(t, st)
	h.send("w1", 3, "takeover", takeoverArgs)
	h.expect("w1", bus.AckDone)
	if n := f.runs(t, "takeover"); n != 1 {
		t.Fatalf("hook ran %d times, want once", n)
	}
}
