package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testSource is a Source the test drives: its status comes from a func, and
// each subscription is handed to the test, which sends records on it.
type testSource struct {
	status func(ctx context.Context) (any, error)
	recent []any
	buffer int
	subs   chan *subscription
}

func newTestSource(recent ...any) *testSource {
	return &testSource{
		status: func(context.Context) (any, error) { return map[string]any{"site": "test"}, nil },
		recent: recent,
		buffer: 16,
		subs:   make(chan *subscription, 8),
	}
}

func (s *testSource) Status(ctx context.Context) (any, error) { return s.status(ctx) }

func (s *testSource) Subscribe() ([]any, <-chan any, func()) {
	sub := &subscription{updates: make(chan any, s.buffer), done: make(chan struct{})}
	s.subs <- sub
	return s.recent, sub.updates, sub.cancel
}

// next is the next subscription made.
func (s *testSource) next(t *testing.T) *subscription {
	t.Helper()
	select {
	case sub := <-s.subs:
		return sub
	case <-time.After(10 * time.Second):
		t.Fatal("nobody subscribed")
		return nil
	}
}

// subscription is one subscriber's feed, with the Source's rules: cancel
// closes it, and a subscriber that falls behind is dropped (closed).
type subscription struct {
	mu      sync.Mutex
	closed  bool
	updates chan any
	done    chan struct{} // closed by cancel
	once    sync.Once
}

func (s *subscription) cancel() {
	s.drop()
	s.once.Do(func() { close(s.done) })
}

// drop closes the feed, as the source does to a subscriber that fell behind.
func (s *subscription) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.updates)
	}
}

// send passes a record on, waiting for room; false once the subscriber is gone.
func (s *subscription) send(v any) bool {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return false
		}
		select {
		case s.updates <- v:
			s.mu.Unlock()
			return true
		default:
		}
		s.mu.Unlock()
		select {
		case <-s.done:
			return false
		case <-time.After(time.Millisecond):
		}
	}
}

// cancelled waits until the stream's handler has let go of the subscription.
func (s *subscription) cancelled(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(within):
		t.Fatalf("the event stream still holds its subscription after %v: the handler did not return", within)
	}
}

// serve runs the dashboard of src with the given timing.
func serve(t *testing.T, src Source, tm timing) *httptest.Server {
	t.Helper()
	d := New(src)
	d.timing = tm
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv
}

// quiet is a timing in which nothing comes by itself during a test.
func quiet() timing {
	tm := defaultTiming()
	tm.status, tm.heartbeat = time.Hour, time.Hour
	tm.settle = 20 * time.Millisecond
	return tm
}

// sseEvent is one event (or comment) read from a stream.
type sseEvent struct {
	name, data, comment string
}

// eventStream reads a response's events in a goroutine; it ends when the
// body is closed.
type eventStream struct {
	events chan sseEvent
	ended  chan error
	cancel context.CancelFunc
}

func openEvents(t *testing.T, url string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/dashboard/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		cancel()
		t.Fatalf("GET /dashboard/events: %s, Content-Type %q", resp.Status, ct)
	}
	es := &eventStream{events: make(chan sseEvent, 1024), ended: make(chan error, 1), cancel: cancel}
	go es.read(resp.Body)
	t.Cleanup(cancel)
	return es
}

func (es *eventStream) read(body io.ReadCloser) {
	defer body.Close()
	r := bufio.NewReader(body)
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			es.ended <- err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev != (sseEvent{}) {
				es.events <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[len("data: "):]
		case strings.HasPrefix(line, "retry: "):
			ev.name = "retry"
		}
	}
}

// expect returns the next event, which must be called name.
func (es *eventStream) expect(t *testing.T, name string) sseEvent {
	t.Helper()
	select {
	case ev := <-es.events:
		if ev.name != name {
			t.Fatalf("got event %q (%s%s), want %q", ev.name, ev.data, ev.comment, name)
		}
		return ev
	case err := <-es.ended:
		t.Fatalf("the stream ended (%v) before event %q", err, name)
	case <-time.After(10 * time.Second):
		t.Fatalf("no event %q within 10s", name)
	}
	return sseEvent{}
}

// expectEnd waits for the server to end the stream.
func (es *eventStream) expectEnd(t *testing.T) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-es.events:
		case <-es.ended:
			return
		case <-deadline:
			t.Fatal("the stream did not end within 10s")
		}
	}
}

func (es *eventStream) opening(t *testing.T) (status, records sseEvent) {
	t.Helper()
	es.expect(t, "retry")
	return es.expect(t, "status"), es.expect(t, "records")
}

// The page, its script and its style sheet are served with their types and
// a policy that allows nothing from elsewhere; they load nothing from
// elsewhere either.
func TestDashboardAssetsAreServedWithTheirTypes(t *testing.T) {
	srv := serve(t, newTestSource(), quiet())
	for path, want := range map[string]string{
		"/":                      "text/html; charset=utf-8",
		"/dashboard/":            "text/html; charset=utf-8",
		"/dashboard/index.html":  "text/html; charset=utf-8",
		"/dashboard/app.js":      "text/javascript; charset=utf-8",
		"/dashboard/style.css":   "text/css; charset=utf-8",
		"/dashboard/nonexistent": "",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want == "" {
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s: %s, want 404", path, resp.Status)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want {
			t.Errorf("GET %s: %s, Content-Type %q, want 200 and %q", path, resp.Status, resp.Header.Get("Content-Type"), want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", path)
		}
		if len(body) == 0 {
			t.Errorf("GET %s: empty", path)
		}
		// Revalidation: an unchanged file is not sent again.
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		again, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		again.Body.Close()
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %s, want 304", path, again.Status)
		}
	}
}

func TestDashboardAssetsReferNothingOutside(t *testing.T) {
	err := fs.WalkDir(embedded, "assets", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := fs.ReadFile(embedded, path)
		if err != nil {
			return err
		}
		for _, external := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(string(data), external) {
				t.Errorf("%s refers to %q: the page must work without internet", path, external)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	index, _ := fs.ReadFile(embedded, "assets/index.html")
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(index), -1) {
		if !strings.HasPrefix(m[1], "/dashboard/") {
			t.Errorf("index.html loads %q, not one of the dashboard's own files", m[1])
		}
	}
	// Every element the script looks up by id is on the page.
	script, _ := fs.ReadFile(embedded, "assets/app.js")
	for _, m := range regexp.MustCompile(`\$\('#([a-z-]+)`).FindAllStringSubmatch(string(script), -1) {
		if !strings.Contains(string(index), `id="`+m[1]+`"`) {
			t.Errorf("app.js looks up #%s, which index.html does not have", m[1])
		}
	}
}

// The stream opens with the status and the recent records, then passes each
// new record, followed shortly by a fresh status.
func TestDashboardEventsSendStatusRecordsAndEachRecord(t *testing.T) {
	src := newTestSource(
		map[string]any{"type": "member_seen", "member": "main"},
		map[string]any{"type": "member_lost", "member": "main"},
	)
	calls := make(chan struct{}, 16)
	src.status = func(context.Context) (any, error) {
		calls <- struct{}{}
		return map[string]any{"site": "test", "members": []any{}}, nil
	}
	srv := serve(t, src, quiet())
	es := openEvents(t, srv.URL)
	sub := src.next(t)

	status, records := es.opening(t)
	var st struct{ Site string }
	if err := json.Unmarshal([]byte(status.data), &st); err != nil || st.Site != "test" {
		t.Fatalf("status event %q: %v", status.data, err)
	}
	var recent []struct{ Type, Member string }
	if err := json.Unmarshal([]byte(records.data), &recent); err != nil || len(recent) != 2 || recent[1].Type != "member_lost" {
		t.Fatalf("records event %q: %v", records.data, err)
	}

	sub.send(map[string]any{"type": "takeover_started", "member": "main", "fields": map[string]any{"standby": "backup"}})
	sub.send(map[string]any{"type": "action_started"})
	rec := es.expect(t, "record")
	if !strings.Contains(rec.data, `"takeover_started"`) {
		t.Fatalf("record event %q", rec.data)
	}
	es.expect(t, "record")
	// One fresh status for the burst (the periodic one is an hour away).
	es.expect(t, "status")
	if n := len(calls); n != 2 {
		t.Errorf("status asked %d times, want 2 (at the start, after the records)", n)
	}
}

// With nothing happening, the status comes every so often and a comment
// keeps the connection busy.
func TestDashboardEventsRepeatStatusAndHeartbeat(t *testing.T) {
	src := newTestSource()
	tm := quiet()
	tm.status, tm.heartbeat = 30*time.Millisecond, 20*time.Millisecond
	srv := serve(t, src, tm)
	es := openEvents(t, srv.URL)
	_, records := es.opening(t)
	if records.data != "[]" {
		t.Errorf("records of a source without any: %q, want []", records.data)
	}
	statuses, pings := 0, 0
	deadline := time.After(10 * time.Second)
	for statuses < 2 || pings < 1 {
		select {
		case ev := <-es.events:
			switch {
			case ev.name == "status":
				statuses++
			case ev.comment == "ping":
				pings++
			default:
				t.Fatalf("unexpected event %+v", ev)
			}
		case <-deadline:
			t.Fatalf("within 10s: %d statuses, %d pings", statuses, pings)
		}
	}
}

// A status the instance does not give in time is reported, and the stream
// goes on.
func TestDashboardEventsSayWhenTheStatusDoesNotCome(t *testing.T) {
	src := newTestSource()
	src.status = func(ctx context.Context) (any, error) {
		<-ctx.Done()
		return nil, errors.New("the event loop did not answer")
	}
	tm := quiet()
	tm.ask = 20 * time.Millisecond
	srv := serve(t, src, tm)
	es := openEvents(t, srv.URL)
	sub := src.next(t)
	es.expect(t, "retry")
	ev := es.expect(t, "unavailable")
	if !strings.Contains(ev.data, "the event loop did not answer") {
		t.Errorf("unavailable event %q", ev.data)
	}
	es.expect(t, "records")
	sub.send(map[string]any{"type": "member_seen"})
	es.expect(t, "record")
}

// When the client goes away, the handler returns and lets go of its
// subscription.
func TestDashboardEventsEndWhenTheClientGoes(t *testing.T) {
	src := newTestSource()
	srv := serve(t, src, quiet())
	es := openEvents(t, srv.URL)
	sub := src.next(t)
	es.opening(t)
	es.cancel()
	sub.cancelled(t, 10*time.Second)
	if sub.send(map[string]any{"type": "member_seen"}) {
		t.Error("the subscription still takes records after the client went")
	}
}

// A subscriber that fell behind is dropped by the source: the stream ends,
// so that the browser reconnects and starts afresh from the recent records.
func TestDashboardEventsEndWhenTheSourceDropsTheSubscriber(t *testing.T) {
	src := newTestSource(map[string]any{"type": "member_seen", "member": "main"})
	srv := serve(t, src, quiet())
	es := openEvents(t, srv.URL)
	sub := src.next(t)
	es.opening(t)
	sub.drop()
	es.expectEnd(t)
	sub.cancelled(t, 10*time.Second)

	again := openEvents(t, srv.URL)
	src.next(t)
	if _, records := again.opening(t); !strings.Contains(records.data, "member_seen") {
		t.Errorf("records after a reconnect: %q", records.data)
	}
}

// A client that stops reading is given up after the write timeout: the
// handler does not wait for it for ever, nor hold the source back.
func TestDashboardEventsGiveUpAClientThatDoesNotRead(t *testing.T) {
	src := newTestSource()
	tm := quiet()
	tm.write = 200 * time.Millisecond
	srv := serve(t, src, tm)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/dashboard/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read
	sub := src.next(t)
	big := map[string]any{"type": "copy_progress", "fields": map[string]any{"pad": strings.Repeat("x", 256<<10)}}
	deadline := time.Now().Add(30 * time.Second)
	for sub.send(big) {
		if time.Now().After(deadline) {
			t.Fatal("the handler still takes records from a client that reads nothing")
		}
	}
	sub.cancelled(t, 10*time.Second)
}
