package takeover

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/store"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testSite is a Site over a map of members, listed in the order they were added.
type testSite struct {
	order   []string
	members map[string]*Member
	match   map[string][]string
}

func newSite(ms ...Member) *testSite {
	s := &testSite{members: map[string]*Member{}, match: map[string][]string{}}
	for _, m := range ms {
		s.add(m)
	}
	return s
}

func (s *testSite) add(m Member) {
	if _, ok := s.members[m.ID]; !ok {
		s.order = append(s.order, m.ID)
	}
	s.members[m.ID] = &m
}

func (s *testSite) set(id, state string) { s.members[id].State = state }

func (s *testSite) Member(id string) (Member, bool) {
	m, ok := s.members[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

func (s *testSite) Members() []Member {
	out := make([]Member, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, *s.members[id])
	}
	return out
}

func (s *testSite) Match(pool string) []string { return s.match[pool] }

func (s *testSite) Bundle(member string) map[string]any {
	return map[string]any{"duties": "duties of " + member, "outputs": []any{1, 2}}
}

// CopyActions authorises the member at the standby, then copies.
func (s *testSite) CopyActions(r CopyRequest) ([]Action, error) {
	return []Action{
		{Target: r.From, Verb: "grant", Args: map[string]any{"member": r.Member}, Cause: r.Cause},
		{Target: r.Member, Verb: config.HookCopy, Cause: r.Cause, Args: map[string]any{
			"member": r.Member, "from": r.From,
			"since": r.Since.UTC().Format(time.RFC3339), "until": r.Until.UTC().Format(time.RFC3339),
		}},
	}, nil
}

// testActions records actions in the store transaction (bucket test_actions)
// and keeps the delivered ones.
const actionsBucket = "test_actions"

type actionRecord struct {
	ID     string         `json:"id"`
	Target string         `json:"target"`
	Verb   string         `json:"verb"`
	Args   map[string]any `json:"args"`
	Cause  string         `json:"cause"`
}

type sent struct {
	ID     string
	Target string
	Verb   string
	Args   map[string]any
}

type testActions struct {
	t         *testing.T
	st        *store.Store
	actions   map[string]Action
	delivered []sent
	// failRecord makes Record fail after it wrote the action in tx.
	failRecord error
	onDeliver  func(id string)
}

func (a *testActions) Record(tx *store.Tx, act Action) (string, error) {
	n, err := tx.Increment("test_actions_seq", "n")
	if err != nil {
		return "", err
	}
	id := "a" + strconv.FormatUint(n, 10)
	if err := tx.Put(actionsBucket, id, actionRecord{ID: id, Target: act.Target, Verb: act.Verb, Args: act.Args, Cause: act.Cause}); err != nil {
		return "", err
	}
	if a.failRecord != nil {
		return "", a.failRecord
	}
	a.actions[id] = act
	return id, nil
}

func (a *testActions) RecordLater(act *Action, later func(*store.Tx) error) string {
	a.t.Errorf("RecordLater(%+v): the state file took no writes", act)
	return ""
}

func (a *testActions) Deliver(id string) {
	var rec actionRecord
	if found, err := a.st.Get(actionsBucket, id, &rec); err != nil || !found {
		a.t.Errorf("action %s delivered but not in the store (found %v, err %v)", id, found, err)
	}
	act, ok := a.actions[id]
	if !ok {
		a.t.Errorf("action %s delivered but never recorded", id)
	}
	a.delivered = append(a.delivered, sent{ID: id, Target: act.Target, Verb: act.Verb, Args: act.Args})
	if a.onDeliver != nil {
		a.onDeliver(id)
	}
}

func (a *testActions) take() []sent {
	out := a.delivered
	a.delivered = nil
	return out
}

// harness is a manager over a real store and a virtual clock.
type harness struct {
	t      *testing.T
	st     *store.Store
	clk    *clock.Virtual
	site   *testSite
	acts   *testActions
	opts   Options
	m      *Manager
	events []Event
	posted []func()
}

func newHarness(t *testing.T, site *testSite, tune func(*Options)) *harness {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, st: st, clk: clock.NewVirtual(t0), site: site}
	h.acts = &testActions{t: t, st: st, actions: map[string]Action{}}
	h.opts = Options{
		Store: st, Clock: h.clk, Site: site, Actions: h.acts,
		Post: func(f func()) { h.posted = append(h.posted, f) },
		Emit: func(e Event) { h.events = append(h.events, e) },
	}
	if tune != nil {
		tune(&h.opts)
	}
	h.m = h.newManager()
	return h
}

func (h *harness) newManager() *Manager {
	h.t.Helper()
	m, err := New(h.opts)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	return m
}

// restart stops the manager, lets down pass on the clock with no manager
// running, and builds a new manager on the same store.
func (h *harness) restart(down time.Duration, tune func(*Options)) {
	h.t.Helper()
	h.m.Stop()
	h.posted = nil
	if down > 0 {
		h.clk.Advance(down)
		if len(h.posted) > 0 {
			h.t.Fatalf("a stopped manager's timer fired")
		}
	}
	h.events = nil
	if tune != nil {
		tune(&h.opts)
	}
	h.m = h.newManager()
}

// advance moves the clock and runs what the timers posted.
func (h *harness) advance(d time.Duration) {
	h.clk.Advance(d)
	h.run()
}

func (h *harness) run() {
	for len(h.posted) > 0 {
		f := h.posted[0]
		h.posted = h.posted[1:]
		f()
	}
}

// takeEvents returns the events since the last call.
func (h *harness) takeEvents() []Event {
	out := h.events
	h.events = nil
	return out
}

func names(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name+":"+e.Member)
	}
	return out
}

func (h *harness) expectEvents(want ...string) []Event {
	h.t.Helper()
	evs := h.takeEvents()
	if got := names(evs); !slices.Equal(got, want) {
		h.t.Fatalf("events = %v, want %v", got, want)
	}
	return evs
}

func (h *harness) expectSent(want ...string) []sent {
	h.t.Helper()
	got := h.acts.take()
	var gs []string
	for _, s := range got {
		gs = append(gs, s.Verb+">"+s.Target)
	}
	if !slices.Equal(gs, want) {
		h.t.Fatalf("sent = %v, want %v", gs, want)
	}
	return got
}

func (h *harness) takeover(req Request) Outcome {
	h.t.Helper()
	out, err := h.m.Takeover(req)
	if err != nil {
		h.t.Fatalf("Takeover(%+v): %v", req, err)
	}
	return out
}

func (h *harness) result(id, errText string) {
	h.t.Helper()
	if !h.m.Result(id, errText, nil) {
		h.t.Fatalf("Result(%s) was not the manager's", id)
	}
}

func (h *harness) phase(member string) string {
	h.t.Helper()
	c, ok := h.m.Covered(member)
	if !ok {
		return ""
	}
	return c.Phase
}

func (h *harness) stored(member string) (Coverage, bool) {
	h.t.Helper()
	var c Coverage
	found, err := h.st.Get(bucketCoverage, member, &c)
	if err != nil {
		h.t.Fatal(err)
	}
	return c, found
}

func (h *harness) storedQueue() []string {
	h.t.Helper()
	q, err := store.Load[*Queued](h.st, bucketQueue)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for id := range q {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func queueMembers(q []Queued) []string {
	var out []string
	for _, e := range q {
		out = append(out, e.Member)
	}
	return out
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// recSite is a pool "rec" with lost members rec1 (priority 5), rec2 (3),
// rec3 (8) and standbys sb1 (priority 5) and sb2 (1).
func recSite(settings config.FailoverSettings) *testSite {
	return newSite(
		Member{ID: "rec1", State: "lost", Priority: 5, Pool: "rec", Usage: []string{"record"}, Settings: settings},
		Member{ID: "rec2", State: "lost", Priority: 3, Pool: "rec", Usage: []string{"record"}, Settings: settings},
		Member{ID: "rec3", State: "lost", Priority: 8, Pool: "rec", Usage: []string{"record"}, Settings: settings},
		Member{ID: "sb1", State: "alive", Priority: 5, Standby: true, Pool: "rec", Capacity: 1},
		Member{ID: "sb2", State: "alive", Priority: 1, Standby: true, Pool: "rec", Capacity: 1},
	)
}

func TestNewRequiresOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without options: no error")
	}
	h := newHarness(t, recSite(config.FailoverSettings{}), nil)
	if h.m.Mode() != config.ModeAuto {
		t.Fatalf("default mode = %q, want auto", h.m.Mode())
	}
}

func TestPick(t *testing.T) {
	target := Member{ID: "m", State: "lost", Pool: "rec", Usage: []string{"record"}, DiskLayout: "A", Requires: []string{"ptp"}}
	fit := Member{ID: "sbA", State: "alive", Priority: 1, Standby: true, Pool: "rec", Usage: []string{"other", "record"}, DiskLayout: "A", Capabilities: []string{"ptp", "gpu"}}
	better := func(mod func(*Member)) Member {
		b := fit
		b.ID, b.Priority = "sbB", 9
		b.Usage = slices.Clone(fit.Usage)
		b.Capabilities = slices.Clone(fit.Capabilities)
		mod(&b)
		return b
	}
	cases := []struct {
		name    string
		other   Member
		match   []string
		pool    string
		exclude []string
		want    string
	}{
		{name: "higher priority wins", other: better(func(*Member) {}), want: "sbB"},
		{name: "lower priority loses", other: better(func(b *Member) { b.Priority = 0 }), want: "sbA"},
		{name: "not a standby", other: better(func(b *Member) { b.Standby = false }), want: "sbA"},
		{name: "suspect", other: better(func(b *Member) { b.State = "suspect" }), want: "sbA"},
		{name: "lost", other: better(func(b *Member) { b.State = "lost" }), want: "sbA"},
		{name: "another pool", other: better(func(b *Member) { b.Pool = "vms" }), want: "sbA"},
		{name: "another pool asked for", other: better(func(b *Member) { b.Pool = "vms" }), pool: "vms", want: "sbB"},
		{name: "lacks a capability", other: better(func(b *Member) { b.Capabilities = []string{"gpu"} }), want: "sbA"},
		{name: "disk layout matched", other: better(func(b *Member) { b.DiskLayout = "B" }), match: []string{config.MatchDiskLayout}, want: "sbA"},
		{name: "disk layout not matched", other: better(func(b *Member) { b.DiskLayout = "B" }), want: "sbB"},
		{name: "usage matched", other: better(func(b *Member) { b.Usage = []string{"stream"} }), match: []string{config.MatchUsage}, want: "sbA"},
		{name: "usage shared", other: better(func(b *Member) { b.Usage = []string{"record"} }), match: []string{config.MatchUsage, config.MatchDiskLayout}, want: "sbB"},
		{name: "usage not matched", other: better(func(b *Member) { b.Usage = []string{"stream"} }), want: "sbB"},
		{name: "excluded", other: better(func(*Member) {}), exclude: []string{"sbB"}, want: "sbA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			site := newSite(target, Member{ID: "n", State: "alive", Priority: 99, Pool: "rec", Capabilities: []string{"ptp"}, DiskLayout: "A", Usage: []string{"record"}}, fit, tc.other)
			site.match["rec"] = tc.match
			site.match["vms"] = tc.match
			h := newHarness(t, site, nil)
			got, ok := h.m.Pick(tc.pool, "m", tc.exclude...)
			if !ok || got != tc.want {
				t.Fatalf("Pick = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}

	t.Run("none", func(t *testing.T) {
		h := newHarness(t, newSite(target, better(func(b *Member) { b.State = "lost" })), nil)
		if got, ok := h.m.Pick("", "m"); ok {
			t.Fatalf("Pick = %q, want none", got)
		}
		if got, ok := h.m.Pick("", "nobody"); ok {
			t.Fatalf("Pick for an unknown member = %q, want none", got)
		}
		if got, ok := h.m.Pick("", "m", "sbB"); ok {
			t.Fatalf("Pick = %q, want none", got)
		}
	})
}

func TestPickTieBrokenByID(t *testing.T) {
	// Two standbys of equal priority: the doc says "highest priority first,
	// then by id", whatever order the site lists them in.
	site := newSite(
		Member{ID: "m", State: "lost", Pool: "rec"},
		Member{ID: "sb-z", State: "alive", Priority: 3, Standby: true, Pool: "rec"},
		Member{ID: "sb-a", State: "alive", Priority: 3, Standby: true, Pool: "rec"},
	)
	h := newHarness(t, site, nil)
	if got, _ := h.m.Pick("", "m"); got != "sb-a" {
		t.Fatalf("Pick broke a priority tie by list order, not by id: got %s, want sb-a", got)
	}
}

func TestPickCapacity(t *testing.T) {
	site := newSite(
		Member{ID: "m1", State: "lost", Pool: "rec"},
		Member{ID: "m2", State: "lost", Pool: "rec"},
		Member{ID: "m3", State: "lost", Pool: "rec"},
		Member{ID: "m4", State: "lost", Pool: "rec"},
		Member{ID: "big", State: "alive", Priority: 9, Standby: true, Pool: "rec", Capacity: 2},
		Member{ID: "small", State: "alive", Priority: 1, Standby: true, Pool: "rec"}, // capacity 0 counts as 1
	)
	h := newHarness(t, site, nil)
	for _, want := range []struct{ member, standby string }{{"m1", "big"}, {"m2", "big"}, {"m3", "small"}} {
		out := h.takeover(Request{Member: want.member})
		if out.Status != Started || out.Standby != want.standby {
			t.Fatalf("Takeover(%s) = %+v, want started by %s", want.member, out, want.standby)
		}
	}
	if got := h.m.Covering("big"); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Fatalf("Covering(big) = %v", got)
	}
	if got, ok := h.m.Pick("", "m4"); ok {
		t.Fatalf("Pick with every standby full = %q", got)
	}
	if why := h.m.Fits("big", "m4"); !strings.Contains(why, "capacity 2") {
		t.Fatalf("Fits(big, m4) = %q", why)
	}
	if out := h.takeover(Request{Member: "m4"}); out.Status != QueuedUp {
		t.Fatalf("Takeover(m4) = %+v, want queued", out)
	}
}

func TestFits(t *testing.T) {
	site := recSite(config.FailoverSettings{})
	site.add(Member{ID: "sbx", State: "alive", Standby: true, Pool: "other"})
	site.add(Member{ID: "sb3", State: "lost", Standby: true, Pool: "rec"})
	h := newHarness(t, site, nil)
	if why := h.m.Fits("sb1", "rec1"); why != "" {
		t.Fatalf("Fits(sb1, rec1) = %q", why)
	}
	if why := h.m.Fits("sbx", "rec1"); why != "" {
		t.Fatalf("Fits(sbx, rec1) = %q (the pool is not checked)", why)
	}
	for _, c := range []struct{ standby, member, want string }{
		{"nobody", "rec1", "no such member"},
		{"sb1", "nobody", "no such member nobody"},
		{"rec2", "rec1", "not a standby"},
		{"sb3", "rec1", "sb3 is lost"},
	} {
		if why := h.m.Fits(c.standby, c.member); !strings.Contains(why, c.want) {
			t.Errorf("Fits(%s, %s) = %q, want %q", c.standby, c.member, why, c.want)
		}
	}
	// A standby that is itself covered (a state an older version could
	// keep) covers nobody.
	if err := h.st.Put(bucketCoverage, "sb3", &Coverage{Member: "sb3", Standby: "sb2", Since: t0, Phase: PhaseCovering}); err != nil {
		t.Fatal(err)
	}
	h.restart(0, nil)
	site.set("sb3", "alive")
	if why := h.m.Fits("sb3", "rec1"); !strings.Contains(why, "itself covered") {
		t.Fatalf("Fits(sb3, rec1) = %q", why)
	}
	if got, _ := h.m.Pick("", "rec1", "sb1"); got != "" {
		t.Fatalf("Pick = %q, want none (sb2 is full, sb3 is covered)", got)
	}
}

func TestTakeoverRequestErrors(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), nil)
	for _, req := range []Request{
		{Member: "nobody"},
		{Member: "rec1", Standby: "nobody"},
		{Member: "rec1", Standby: "rec2"},
		{Member: "sb1", Standby: "sb1"},
	} {
		if out, err := h.m.Takeover(req); err == nil {
			t.Errorf("Takeover(%+v) = %+v, want an error", req, out)
		}
	}
	h.expectSent()
	h.expectEvents()
}

func TestTakeoverStartsAndCompletes(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), nil)
	out := h.takeover(Request{Member: "rec1", Reason: "lost"})
	if out != (Outcome{Status: Started, Member: "rec1", Standby: "sb1"}) {
		t.Fatalf("Takeover = %+v", out)
	}
	s := h.expectSent("takeover>sb1")[0]
	for k, want := range map[string]any{"member": "rec1", "standby": "sb1", "reason": "lost", "duties": "duties of rec1"} {
		if s.Args[k] != want {
			t.Errorf("takeover arg %s = %v, want %v", k, s.Args[k], want)
		}
	}
	c, ok := h.m.Covered("rec1")
	if !ok || c.Phase != PhaseStarting || c.Pending != s.ID || c.Standby != "sb1" || !c.Since.Equal(t0) || c.Reason != "lost" {
		t.Fatalf("coverage = %+v, %v", c, ok)
	}
	ev := h.expectEvents("takeover_started:rec1")[0]
	if ev.Fields["standby"] != "sb1" || ev.Fields["action"] != s.ID || ev.Fields["reason"] != "lost" {
		t.Fatalf("takeover_started fields = %v", ev.Fields)
	}
	if _, ok := ev.Fields["grace_until"]; ok {
		t.Fatalf("grace_until without grace: %v", ev.Fields)
	}

	// Asking again while covered changes nothing.
	if out := h.takeover(Request{Member: "rec1"}); out != (Outcome{Status: Covered, Member: "rec1", Standby: "sb1"}) {
		t.Fatalf("second Takeover = %+v", out)
	}
	h.expectSent()
	h.expectEvents()

	if h.m.Result("unknown", "", nil) {
		t.Fatal("Result of an unknown action was taken")
	}
	h.result(s.ID, "")
	ev = h.expectEvents("takeover_done:rec1")[0]
	if ev.Fields["standby"] != "sb1" {
		t.Fatalf("takeover_done fields = %v", ev.Fields)
	}
	c, _ = h.m.Covered("rec1")
	if c.Phase != PhaseCovering || c.Pending != "" {
		t.Fatalf("coverage after done = %+v", c)
	}
	if sc, _ := h.stored("rec1"); sc.Phase != PhaseCovering || sc.Pending != "" {
		t.Fatalf("stored coverage after done = %+v", sc)
	}
	if h.m.Result(s.ID, "", nil) {
		t.Fatal("a second result of the same action was taken")
	}
	if got := h.m.Covering("sb1"); !slices.Equal(got, []string{"rec1"}) {
		t.Fatalf("Covering(sb1) = %v", got)
	}
	if got := h.m.Coverage(); len(got) != 1 || got[0].Member != "rec1" {
		t.Fatalf("Coverage() = %+v", got)
	}
}

func TestTakeoverFailedDrainsQueue(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), func(o *Options) { o.Limit = 1 })
	h.takeover(Request{Member: "rec1"})
	first := h.expectSent("takeover>sb1")[0]
	if out := h.takeover(Request{Member: "rec2"}); out.Status != QueuedUp {
		t.Fatalf("Takeover(rec2) = %+v, want queued", out)
	}
	h.takeEvents()

	h.result(first.ID, "hook exited 1")
	evs := h.expectEvents("takeover_failed:rec1", "takeover_started:rec2")
	if evs[0].Fields["error"] != "hook exited 1" || evs[0].Fields["standby"] != "sb1" {
		t.Fatalf("takeover_failed fields = %v", evs[0].Fields)
	}
	if _, ok := h.m.Covered("rec1"); ok {
		t.Fatal("rec1 still covered after a failed takeover")
	}
	if _, ok := h.stored("rec1"); ok {
		t.Fatal("rec1's coverage still stored after a failed takeover")
	}
	h.expectSent("takeover>sb1")
	if c, _ := h.m.Covered("rec2"); c.Standby != "sb1" || c.Phase != PhaseStarting {
		t.Fatalf("rec2 coverage = %+v", c)
	}
	if q := h.m.Queue(); len(q) != 0 {
		t.Fatalf("queue = %+v", q)
	}
	if q := h.storedQueue(); len(q) != 0 {
		t.Fatalf("stored queue = %v", q)
	}
}

func TestLimitQueuesByPriorityThenTime(t *testing.T) {
	site := recSite(config.FailoverSettings{})
	site.add(Member{ID: "rec4", State: "lost", Priority: 3, Pool: "rec"})
	h := newHarness(t, site, func(o *Options) { o.Limit = 1 })

	h.takeover(Request{Member: "rec1", Reason: "lost"})
	first := h.expectSent("takeover>sb1")[0]
	h.expectEvents("takeover_started:rec1")

	h.advance(time.Second)
	if out := h.takeover(Request{Member: "rec2", Reason: "lost"}); out != (Outcome{Status: QueuedUp, Member: "rec2"}) {
		t.Fatalf("Takeover(rec2) = %+v", out)
	}
	ev := h.expectEvents("takeover_queued:rec2")[0]
	if ev.Fields["position"] != 1 || !strings.Contains(ev.Fields["why"].(string), "limit (1)") {
		t.Fatalf("takeover_queued fields = %v", ev.Fields)
	}
	h.advance(time.Second)
	h.takeover(Request{Member: "rec3"})
	if ev := h.expectEvents("takeover_queued:rec3")[0]; ev.Fields["position"] != 1 {
		t.Fatalf("rec3 (priority 8) position = %v, want 1", ev.Fields["position"])
	}
	h.advance(time.Second)
	h.takeover(Request{Member: "rec4"})
	if ev := h.expectEvents("takeover_queued:rec4")[0]; ev.Fields["position"] != 3 {
		t.Fatalf("rec4 (priority 3, later) position = %v, want 3", ev.Fields["position"])
	}
	h.expectSent()

	// Asking again for a queued member keeps its place.
	if out := h.takeover(Request{Member: "rec2"}); out.Status != QueuedUp {
		t.Fatalf("second Takeover(rec2) = %+v", out)
	}
	h.expectEvents()

	q := h.m.Queue()
	if got := queueMembers(q); !slices.Equal(got, []string{"rec3", "rec2", "rec4"}) {
		t.Fatalf("queue = %v", got)
	}
	if q[1].Priority != 3 || !q[1].Since.Equal(t0.Add(time.Second)) || q[1].Reason != "lost" {
		t.Fatalf("rec2 queued = %+v", q[1])
	}
	if got := h.storedQueue(); !slices.Equal(got, []string{"rec2", "rec3", "rec4"}) {
		t.Fatalf("stored queue = %v", got)
	}

	// The first coverage ends: the next in line starts with a picked standby.
	h.result(first.ID, "")
	h.site.set("rec1", "alive")
	h.m.Failback("rec1", "back")
	sentAll := h.expectSent("resume>rec1", "release>sb1")
	h.takeEvents()
	h.result(sentAll[1].ID, "")
	h.expectEvents("failback_done:rec1", "takeover_started:rec3")
	h.expectSent("takeover>sb1")
	if got := queueMembers(h.m.Queue()); !slices.Equal(got, []string{"rec2", "rec4"}) {
		t.Fatalf("queue after drain = %v", got)
	}
	if got := h.storedQueue(); !slices.Equal(got, []string{"rec2", "rec4"}) {
		t.Fatalf("stored queue after drain = %v", got)
	}
}

func TestQueueTieBrokenByMember(t *testing.T) {
	site := newSite(
		Member{ID: "b", State: "lost", Priority: 2, Pool: "rec"},
		Member{ID: "a", State: "lost", Priority: 2, Pool: "rec"},
		Member{ID: "c", State: "lost", Priority: 1, Pool: "rec"},
	)
	h := newHarness(t, site, nil)
	for _, id := range []string{"c", "b", "a"} {
		if out, err := h.m.Enqueue(Request{Member: id}); err != nil || out.Status != QueuedUp {
			t.Fatalf("Enqueue(%s) = %+v, %v", id, out, err)
		}
	}
	if _, err := h.m.Enqueue(Request{Member: "nobody"}); err == nil {
		t.Fatal("Enqueue of an unknown member: no error")
	}
	if got := queueMembers(h.m.Queue()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("queue = %v", got)
	}
	if !h.m.Dequeue("b", "test") || h.m.Dequeue("b", "test") {
		t.Fatal("Dequeue(b) twice: want true then false")
	}
	if got := h.storedQueue(); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("stored queue = %v", got)
	}
}

func TestNoFreeStandbyQueuedUntilOneComesBack(t *testing.T) {
	site := recSite(config.FailoverSettings{})
	site.set("sb1", "lost")
	site.set("sb2", "broken")
	h := newHarness(t, site, nil)
	if out := h.takeover(Request{Member: "rec1"}); out.Status != QueuedUp {
		t.Fatalf("Takeover = %+v, want queued", out)
	}
	if ev := h.expectEvents("takeover_queued:rec1")[0]; ev.Fields["why"] != "no standby is free" {
		t.Fatalf("why = %v", ev.Fields["why"])
	}
	h.m.MemberChanged("sb1") // still lost
	h.expectEvents()
	h.expectSent()

	site.set("sb2", "alive")
	h.m.MemberChanged("sb2")
	h.expectEvents("takeover_started:rec1")
	h.expectSent("takeover>sb2")
	if len(h.m.Queue()) != 0 || len(h.storedQueue()) != 0 {
		t.Fatalf("queue = %v, stored %v", h.m.Queue(), h.storedQueue())
	}
}

func TestQueuedForAskedStandby(t *testing.T) {
	site := recSite(config.FailoverSettings{})
	site.set("sb2", "lost")
	h := newHarness(t, site, nil)
	out := h.takeover(Request{Member: "rec1", Standby: "sb2"})
	if out != (Outcome{Status: QueuedUp, Member: "rec1", Standby: "sb2"}) {
		t.Fatalf("Takeover = %+v", out)
	}
	if q := h.m.Queue(); len(q) != 1 || q[0].Standby != "sb2" {
		t.Fatalf("queue = %+v", q)
	}
	site.set("sb2", "alive")
	h.m.MemberChanged("sb2")
	h.expectSent("takeover>sb2")
}

func TestMemberBackLeavesQueueAndProposals(t *testing.T) {
	site := recSite(config.FailoverSettings{})
	site.set("sb1", "lost")
	site.set("sb2", "lost")
	h := newHarness(t, site, func(o *Options) { o.ConfirmAfter = time.Minute })
	h.takeover(Request{Member: "rec1"})
	h.m.SetMode(config.ModeManual, "op")
	out := h.takeover(Request{Member: "rec2"})
	if out.Status != Proposed {
		t.Fatalf("Takeover(rec2) = %+v", out)
	}
	h.takeEvents()

	site.set("rec1", "alive")
	h.m.MemberChanged("rec1")
	ev := h.expectEvents("takeover_dequeued:rec1")[0]
	if ev.Fields["why"] != "the member is back" {
		t.Fatalf("dequeued why = %v", ev.Fields["why"])
	}
	if len(h.m.Queue()) != 0 || len(h.storedQueue()) != 0 {
		t.Fatal("rec1 still queued")
	}

	site.set("rec2", "alive")
	h.m.MemberChanged("rec2")
	ev = h.expectEvents("proposal_withdrawn:rec2")[0]
	if ev.Fields["proposal"] != out.Proposal {
		t.Fatalf("withdrawn fields = %v", ev.Fields)
	}
	if len(h.m.Proposals()) != 0 {
		t.Fatalf("proposals = %+v", h.m.Proposals())
	}
	if props, _ := store.Load[*Proposal](h.st, bucketProposals); len(props) != 0 {
		t.Fatalf("stored proposals = %v", props)
	}
	// Its confirm-after deadline is gone too.
	if n := h.clk.Pending(); n != 0 {
		t.Fatalf("%d timers left after the proposal was withdrawn", n)
	}
	site.set("sb1", "alive")
	h.advance(time.Hour)
	h.expectEvents()
	h.expectSent()
}

func TestManualProposals(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), func(o *Options) { o.Mode = config.ModeManual })
	if h.m.Mode() != config.ModeManual {
		t.Fatalf("mode = %q", h.m.Mode())
	}
	out := h.takeover(Request{Member: "rec1", Reason: "lost"})
	if out.Status != Proposed || out.Proposal == "" || out.Member != "rec1" {
		t.Fatalf("Takeover = %+v", out)
	}
	ev := h.expectEvents("takeover_proposed:rec1")[0]
	if ev.Fields["proposal"] != out.Proposal || ev.Fields["reason"] != "lost" {
		t.Fatalf("takeover_proposed fields = %v", ev.Fields)
	}
	if _, ok := ev.Fields["act_in_s"]; ok {
		t.Fatalf("act_in_s without confirm_after: %v", ev.Fields)
	}
	h.expectSent()
	if _, ok := h.m.Covered("rec1"); ok {
		t.Fatal("covered before confirmation")
	}
	if again := h.takeover(Request{Member: "rec1"}); again != out {
		t.Fatalf("second Takeover = %+v, want %+v", again, out)
	}
	h.expectEvents()
	h.advance(time.Second)
	other := h.takeover(Request{Member: "rec2", Standby: "sb2"})
	if other.Proposal == out.Proposal || other.Standby != "sb2" {
		t.Fatalf("Takeover(rec2) = %+v", other)
	}
	h.takeEvents()
	props := h.m.Proposals()
	if len(props) != 2 || props[0].ID != out.Proposal || props[1].ID != other.Proposal || props[1].Standby != "sb2" || !props[0].ActAt.IsZero() {
		t.Fatalf("proposals = %+v", props)
	}

	if err := h.m.Confirm(out.Proposal, "op"); err != nil {
		t.Fatal(err)
	}
	evs := h.expectEvents("proposal_confirmed:rec1", "takeover_started:rec1")
	if evs[0].Fields["by"] != "op" || evs[0].Fields["proposal"] != out.Proposal {
		t.Fatalf("proposal_confirmed fields = %v", evs[0].Fields)
	}
	h.expectSent("takeover>sb1")
	if err := h.m.Confirm(out.Proposal, "op"); err == nil {
		t.Fatal("confirming twice: no error")
	}

	if err := h.m.Reject(other.Proposal, "op"); err != nil {
		t.Fatal(err)
	}
	if ev := h.expectEvents("proposal_rejected:rec2")[0]; ev.Fields["by"] != "op" {
		t.Fatalf("proposal_rejected fields = %v", ev.Fields)
	}
	if err := h.m.Reject(other.Proposal, "op"); err == nil {
		t.Fatal("rejecting twice: no error")
	}
	if _, ok := h.m.Covered("rec2"); ok || len(h.m.Proposals()) != 0 {
		t.Fatal("rejected proposal carried out or kept")
	}
	if props, _ := store.Load[*Proposal](h.st, bucketProposals); len(props) != 0 {
		t.Fatalf("stored proposals = %v", props)
	}
	h.expectSent()

	// A confirmed request skips the proposal.
	if out := h.takeover(Request{Member: "rec3", Confirmed: true}); out.Status != Started || out.Standby != "sb2" {
		t.Fatalf("confirmed Takeover = %+v", out)
	}
}

func TestSetModeAutoConfirmsProposals(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), nil)
	if err := h.m.SetMode("sometimes", "op"); err == nil {
		t.Fatal("SetMode(sometimes): no error")
	}
	if err := h.m.SetMode(config.ModeAuto, "op"); err != nil {
		t.Fatal(err)
	}
	h.expectEvents() // no change, no event
	if err := h.m.SetMode(config.ModeManual, "op"); err != nil {
		t.Fatal(err)
	}
	ev := h.expectEvents("mode_changed:")[0]
	if ev.Fields["mode"] != config.ModeManual || ev.Fields["previous"] != config.ModeAuto || ev.Fields["by"] != "op" {
		t.Fatalf("mode_changed fields = %v", ev.Fields)
	}
	// rec2 is proposed first; sb2 is lost, so only sb1 is free: rec2 gets it,
	// rec1 waits in the queue.
	h.site.set("sb2", "lost")
	h.takeover(Request{Member: "rec2"})
	h.advance(time.Second)
	h.takeover(Request{Member: "rec1"})
	h.takeEvents()
	if err := h.m.SetMode(config.ModeAuto, "op2"); err != nil {
		t.Fatal(err)
	}
	h.expectEvents("mode_changed:", "proposal_confirmed:rec2", "takeover_started:rec2", "proposal_confirmed:rec1", "takeover_queued:rec1")
	h.expectSent("takeover>sb1")
	if len(h.m.Proposals()) != 0 || h.m.Mode() != config.ModeAuto {
		t.Fatalf("proposals = %v, mode = %s", h.m.Proposals(), h.m.Mode())
	}
}

func TestConfirmAfter(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), func(o *Options) {
		o.Mode = config.ModeManual
		o.ConfirmAfter = 2 * time.Minute
	})
	out := h.takeover(Request{Member: "rec1"})
	ev := h.expectEvents("takeover_proposed:rec1")[0]
	if ev.Fields["act_in_s"] != 120.0 {
		t.Fatalf("act_in_s = %v", ev.Fields["act_in_s"])
	}
	if p := h.m.Proposals(); len(p) != 1 || !p[0].ActAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("proposals = %+v", p)
	}
	h.advance(2*time.Minute - time.Second)
	h.expectEvents()
	h.expectSent()
	h.advance(time.Second)
	evs := h.expectEvents("proposal_confirmed:rec1", "takeover_started:rec1")
	if evs[0].Fields["proposal"] != out.Proposal || evs[0].Fields["by"] != "no answer within confirm_after" {
		t.Fatalf("proposal_confirmed fields = %v", evs[0].Fields)
	}
	h.expectSent("takeover>sb1")
	if c, _ := h.m.Covered("rec1"); !c.Since.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("coverage since %v", c.Since)
	}

	// A proposal confirmed by hand does not fire again later.
	h.takeover(Request{Member: "rec2"})
	p := h.m.Proposals()[0]
	if err := h.m.Confirm(p.ID, "op"); err != nil {
		t.Fatal(err)
	}
	h.takeEvents()
	h.acts.take()
	if n := h.clk.Pending(); n != 0 {
		t.Fatalf("%d timers left after the proposal was confirmed", n)
	}
	h.advance(time.Hour)
	h.expectEvents()
	h.expectSent()
}

func TestManualStateSurvivesRestart(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), func(o *Options) { o.ConfirmAfter = 2 * time.Minute })
	if err := h.m.SetMode(config.ModeManual, "op"); err != nil {
		t.Fatal(err)
	}
	p1 := h.takeover(Request{Member: "rec1", Reason: "lost"}).Proposal
	h.advance(30 * time.Second)
	p2 := h.takeover(Request{Member: "rec2", Standby: "sb2"}).Proposal
	before := asJSON(t, h.m.Proposals())

	// The stored mode wins over the option.
	h.restart(0, func(o *Options) { o.Mode = config.ModeAuto })
	if h.m.Mode() != config.ModeManual {
		t.Fatalf("mode after restart = %q", h.m.Mode())
	}
	if after := asJSON(t, h.m.Proposals()); after != before {
		t.Fatalf("proposals after restart = %s, want %s", after, before)
	}
	// Asking again finds the restored proposal.
	if out := h.takeover(Request{Member: "rec1"}); out.Proposal != p1 {
		t.Fatalf("Takeover(rec1) after restart = %+v, want proposal %s", out, p1)
	}
	// p1's deadline (t0+2m) still fires.
	h.advance(90*time.Second - time.Nanosecond)
	h.expectEvents()
	h.advance(time.Nanosecond)
	h.expectEvents("proposal_confirmed:rec1", "takeover_started:rec1")
	h.expectSent("takeover>sb1")

	// p2's deadline (t0+2m30s) passes while no manager runs: it fires at once.
	h.restart(5*time.Minute, nil)
	if p := h.m.Proposals(); len(p) != 1 || p[0].ID != p2 {
		t.Fatalf("proposals after second restart = %+v", p)
	}
	h.advance(0)
	h.expectEvents("proposal_confirmed:rec2", "takeover_started:rec2")
	h.expectSent("takeover>sb2")

	// Proposal ids keep counting after a restart.
	h.site.add(Member{ID: "rec5", State: "lost", Pool: "rec"})
	if out := h.takeover(Request{Member: "rec5"}); out.Proposal == p1 || out.Proposal == p2 {
		t.Fatalf("new proposal reuses an id: %+v", out)
	}
}

// coveredHarness returns a harness in which sb1 covers rec1 (phase covering).
func coveredHarness(t *testing.T, settings config.FailoverSettings) *harness {
	t.Helper()
	h := newHarness(t, recSite(settings), nil)
	h.takeover(Request{Member: "rec1", Reason: "lost"})
	s := h.expectSent("takeover>sb1")[0]
	h.result(s.ID, "")
	h.takeEvents()
	return h
}

func TestGrace(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{Grace: 10 * time.Minute}), nil)
	if _, ok := h.m.GraceRemaining("rec1"); ok {
		t.Fatal("grace for an uncovered member")
	}
	h.takeover(Request{Member: "rec1"})
	ev := h.expectEvents("takeover_started:rec1")[0]
	if gu, _ := ev.Fields["grace_until"].(time.Time); !gu.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("grace_until = %v", ev.Fields["grace_until"])
	}
	if d, ok := h.m.GraceRemaining("rec1"); !ok || d != 10*time.Minute {
		t.Fatalf("GraceRemaining = %v, %v", d, ok)
	}
	h.advance(4 * time.Minute)
	if d, _ := h.m.GraceRemaining("rec1"); d != 6*time.Minute {
		t.Fatalf("GraceRemaining after 4m = %v", d)
	}
	h.advance(6*time.Minute - time.Nanosecond)
	h.expectEvents()
	h.advance(time.Nanosecond)
	ev = h.expectEvents("grace_expired:rec1")[0]
	if ev.Fields["standby"] != "sb1" || !ev.Fields["since"].(time.Time).Equal(t0) {
		t.Fatalf("grace_expired fields = %v", ev.Fields)
	}
	if d, ok := h.m.GraceRemaining("rec1"); !ok || d != 0 {
		t.Fatalf("GraceRemaining after expiry = %v, %v", d, ok)
	}
	if c, _ := h.m.Covered("rec1"); !c.GraceExpired {
		t.Fatal("GraceExpired not set")
	}
	if sc, _ := h.stored("rec1"); !sc.GraceExpired {
		t.Fatal("GraceExpired not stored")
	}
	h.advance(time.Hour)
	h.expectEvents()

	// Without grace there is none.
	h2 := newHarness(t, recSite(config.FailoverSettings{}), nil)
	h2.takeover(Request{Member: "rec1"})
	if _, ok := h2.m.GraceRemaining("rec1"); ok {
		t.Fatal("grace without a grace setting")
	}
}

func TestGraceEndsWithCoverage(t *testing.T) {
	h := coveredHarness(t, config.FailoverSettings{Grace: 10 * time.Minute})
	h.site.set("rec1", "alive")
	h.m.Failback("rec1", "back")
	rel := h.expectSent("resume>rec1", "release>sb1")[1]
	h.result(rel.ID, "")
	h.takeEvents()
	if n := h.clk.Pending(); n != 0 {
		t.Fatalf("%d timers left after the coverage ended", n)
	}
	h.advance(time.Hour)
	h.expectEvents()
}

func TestStaleGraceTimerSparesNewCoverage(t *testing.T) {
	// The grace timer of a coverage fires, but the manager's goroutine runs
	// what it posted only after that coverage ended and a new one of the same
	// member began: the new coverage keeps its own grace period.
	h := coveredHarness(t, config.FailoverSettings{Grace: 10 * time.Minute})
	h.advance(9 * time.Minute)
	h.site.set("rec1", "alive")
	h.m.Failback("rec1", "back")
	rel := h.expectSent("resume>rec1", "release>sb1")[1]
	h.clk.Advance(time.Minute) // the old grace timer fires; its work waits in the post queue
	h.result(rel.ID, "")
	h.site.set("rec1", "lost")
	h.takeover(Request{Member: "rec1", Reason: "lost again"})
	h.takeEvents()
	h.run() // the stale grace work runs now
	evs := h.takeEvents()
	d, _ := h.m.GraceRemaining("rec1")
	c, _ := h.m.Covered("rec1")
	if len(evs) != 0 || c.GraceExpired {
		t.Fatalf("a grace timer's work posted before its coverage ended expired the next coverage of the same member at once "+
			"(events %v, GraceExpired %v, remaining %v)", names(evs), c.GraceExpired, d)
	}
	if d != 10*time.Minute {
		t.Fatalf("GraceRemaining = %v, want 10m", d)
	}
	h.advance(10 * time.Minute)
	h.expectEvents("grace_expired:rec1")
}

func TestGraceSurvivesRestart(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{Grace: 10 * time.Minute}), nil)
	h.takeover(Request{Member: "rec1"})
	h.advance(3 * time.Minute)
	h.restart(0, nil)
	if d, ok := h.m.GraceRemaining("rec1"); !ok || d != 7*time.Minute {
		t.Fatalf("GraceRemaining after restart = %v, %v", d, ok)
	}
	h.advance(7*time.Minute - time.Nanosecond)
	h.expectEvents()
	h.advance(time.Nanosecond)
	h.expectEvents("grace_expired:rec1")

	// The expiry is remembered: no second event after another restart.
	h.restart(time.Minute, nil)
	h.advance(time.Hour)
	h.expectEvents()
	if c, _ := h.m.Covered("rec1"); !c.GraceExpired {
		t.Fatal("GraceExpired lost in restart")
	}

	// A grace period that ends while no manager runs expires at once.
	h.takeover(Request{Member: "rec2"})
	h.takeEvents()
	h.restart(20*time.Minute, nil)
	if d, ok := h.m.GraceRemaining("rec2"); !ok || d != 0 {
		t.Fatalf("GraceRemaining = %v, %v", d, ok)
	}
	h.advance(0)
	h.expectEvents("grace_expired:rec2")
}

func TestTakeoverIsAtomic(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), nil)
	checked := false
	h.acts.onDeliver = func(id string) {
		// By the time the action is sent, the coverage waiting for it is stored.
		sc, ok := h.stored("rec1")
		if !ok || sc.Pending != id || sc.Phase != PhaseStarting {
			t.Errorf("at delivery the stored coverage is %+v, %v", sc, ok)
		}
		checked = true
	}
	h.takeover(Request{Member: "rec1", Reason: "lost"})
	if !checked {
		t.Fatal("nothing delivered")
	}
	h.acts.onDeliver = nil
	id := h.expectSent("takeover>sb1")[0].ID
	var rec actionRecord
	if found, err := h.st.Get(actionsBucket, id, &rec); err != nil || !found {
		t.Fatalf("action record: %v, %v", found, err)
	}
	if rec.Target != "sb1" || rec.Verb != config.HookTakeover || rec.Args["member"] != "rec1" || rec.Cause != "takeover of rec1" {
		t.Fatalf("action record = %+v", rec)
	}
	if sc, ok := h.stored("rec1"); !ok || sc.Pending != id {
		t.Fatalf("stored coverage = %+v, %v", sc, ok)
	}

	// When recording the action fails, nothing is written and nothing sent.
	h.acts.failRecord = errors.New("record failed")
	if _, err := h.m.Takeover(Request{Member: "rec2"}); err == nil {
		t.Fatal("Takeover with a failing Record: no error")
	}
	if _, ok := h.m.Covered("rec2"); ok {
		t.Fatal("rec2 covered in memory")
	}
	if _, ok := h.stored("rec2"); ok {
		t.Fatal("rec2 coverage stored")
	}
	recs, err := store.Load[actionRecord](h.st, actionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("action records = %v, want only %s", recs, id)
	}
	h.expectSent()
	h.expectEvents("takeover_started:rec1")
}

func TestQueuedStartFailureKeepsQueue(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), func(o *Options) { o.Limit = 1 })
	h.takeover(Request{Member: "rec1"})
	first := h.expectSent("takeover>sb1")[0]
	h.takeover(Request{Member: "rec2"})
	h.takeEvents()
	h.acts.failRecord = errors.New("record failed")
	h.result(first.ID, "boom")
	h.expectEvents("takeover_failed:rec1")
	h.expectSent()
	if got := queueMembers(h.m.Queue()); !slices.Equal(got, []string{"rec2"}) {
		t.Fatalf("queue = %v", got)
	}
	if got := h.storedQueue(); !slices.Equal(got, []string{"rec2"}) {
		t.Fatalf("stored queue = %v", got)
	}
	h.acts.failRecord = nil
	h.m.Drain()
	h.expectSent("takeover>sb1")
	h.expectEvents("takeover_started:rec2")
}

func TestStateSurvivesRestart(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{WaitReady: true}), func(o *Options) { o.Limit = 1 })
	h.takeover(Request{Member: "rec1", Reason: "lost"})
	first := h.expectSent("takeover>sb1")[0]
	h.advance(time.Second)
	h.takeover(Request{Member: "rec2", Reason: "lost"})
	h.advance(time.Second)
	h.takeover(Request{Member: "rec3", Reason: "lost"})
	if err := h.m.SetMode(config.ModeManual, "op"); err != nil {
		t.Fatal(err)
	}
	h.site.add(Member{ID: "rec4", State: "lost", Pool: "rec"})
	prop := h.takeover(Request{Member: "rec4"}).Proposal
	before := h.m.Snapshot()

	h.restart(0, nil)
	after := h.m.Snapshot()
	if asJSON(t, after) != asJSON(t, before) {
		t.Fatalf("snapshot after restart:\n%s\nwant\n%s", asJSON(t, after), asJSON(t, before))
	}
	if after.Mode != config.ModeManual || after.Limit != 1 || len(after.Coverage) != 1 || len(after.Proposals) != 1 || after.Proposals[0].ID != prop {
		t.Fatalf("snapshot = %+v", after)
	}
	if got := queueMembers(after.Queue); !slices.Equal(got, []string{"rec3", "rec2"}) {
		t.Fatalf("queue after restart = %v", got)
	}
	h.expectEvents()
	h.expectSent()

	// The pending takeover's result reaches the restored manager.
	h.result(first.ID, "")
	h.expectEvents("takeover_done:rec1")
	// A failback after the restart ends the coverage and starts the next in line.
	h.site.set("rec1", "alive")
	h.m.Failback("rec1", "back")
	resume := h.expectSent("resume>rec1")[0]
	h.result(resume.ID, "")
	rel := h.expectSent("release>sb1")[0]
	h.takeEvents()
	h.result(rel.ID, "")
	h.expectEvents("failback_done:rec1", "takeover_started:rec3")
	h.expectSent("takeover>sb1")
}

// A standby is never covered: a takeover or a queue entry for one is
// refused, whether a standby is named or not (with none named, the pick
// found nobody and the standby waited in the queue for ever).
func TestAStandbyIsNeverCovered(t *testing.T) {
	for _, c := range []struct {
		name string
		site *testSite
	}{
		{"another standby free", recSite(config.FailoverSettings{})},
		{"the only standby", newSite(
			Member{ID: "rec1", State: "alive", Pool: "rec"},
			Member{ID: "sb1", State: "lost", Standby: true, Pool: "rec", Capacity: 1},
		)},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.site, nil)
			for _, req := range []Request{{Member: "sb1"}, {Member: "sb1", Reason: "lost"}, {Member: "sb1", Confirmed: true}} {
				if out, err := h.m.Takeover(req); err == nil || !strings.Contains(err.Error(), "sb1 is a standby") {
					t.Errorf("Takeover(%+v) = %+v, %v; want refused: sb1 is a standby", req, out, err)
				}
			}
			if out, err := h.m.Enqueue(Request{Member: "sb1"}); err == nil || !strings.Contains(err.Error(), "sb1 is a standby") {
				t.Errorf("Enqueue(sb1) = %+v, %v; want refused", out, err)
			}
			if err := h.m.SetMode(config.ModeManual, "op"); err != nil {
				t.Fatal(err)
			}
			if out, err := h.m.Takeover(Request{Member: "sb1"}); err == nil {
				t.Errorf("Takeover(sb1) in manual mode = %+v, want refused", out)
			}
			if q, p, cov := h.m.Queue(), h.m.Proposals(), h.m.Coverage(); len(q)+len(p)+len(cov) > 0 {
				t.Fatalf("queue %+v, proposals %+v, coverage %+v: want nothing for a standby", q, p, cov)
			}
			h.expectSent()
			if got := h.storedQueue(); len(got) > 0 {
				t.Fatalf("stored queue = %v", got)
			}
		})
	}
}

// A queue entry or proposal for a standby that an older version stored is
// dropped when the state is restored, and the rest stays.
func TestRestoreDropsStandbysFromTheQueueAndProposals(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), func(o *Options) { o.Limit = 1 })
	h.takeover(Request{Member: "rec3", Reason: "lost"}) // takes the one place
	h.takeover(Request{Member: "rec1", Reason: "lost"}) // queued
	for _, q := range []*Queued{{Member: "sb2", Priority: 9, Since: t0}} {
		if err := h.st.Put(bucketQueue, q.Member, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*Proposal{{ID: "p7", Member: "sb1", Created: t0}, {ID: "p8", Member: "rec2", Standby: "sb2", Created: t0}} {
		if err := h.st.Put(bucketProposals, p.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	h.restart(0, nil)
	if got := h.m.Queue(); len(got) != 1 || got[0].Member != "rec1" {
		t.Fatalf("queue after restart = %+v, want rec1 only", got)
	}
	if got := h.storedQueue(); !slices.Equal(got, []string{"rec1"}) {
		t.Fatalf("stored queue after restart = %v, want [rec1]", got)
	}
	if got := h.m.Proposals(); len(got) != 1 || got[0].ID != "p8" {
		t.Fatalf("proposals after restart = %+v, want p8 only", got)
	}
	var p Proposal
	if found, err := h.st.Get(bucketProposals, "p7", &p); found || err != nil {
		t.Fatalf("proposal p7 of standby sb1 still stored (%v, %v)", found, err)
	}
}

// A proposal that names no standby shows the one that would be picked now;
// confirmed, it goes to that one, or to another if that one is no longer
// free.
func TestAProposalShowsTheStandbyItWouldPick(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{}), nil)
	if err := h.m.SetMode(config.ModeManual, "op"); err != nil {
		t.Fatal(err)
	}
	h.takeEvents()
	out := h.takeover(Request{Member: "rec1", Reason: "lost"})
	if out.Status != Proposed || out.Standby != "sb1" {
		t.Fatalf("Takeover(rec1) = %+v, want proposed with sb1", out)
	}
	ev := h.expectEvents("takeover_proposed:rec1")[0]
	if ev.Fields["standby"] != "sb1" {
		t.Fatalf("takeover_proposed standby = %v, want sb1 (fields %v)", ev.Fields["standby"], ev.Fields)
	}
	if p := h.m.Proposals(); len(p) != 1 || p[0].Standby != "sb1" {
		t.Fatalf("proposals = %+v, want sb1 shown", p)
	}
	if out := h.takeover(Request{Member: "rec2", Reason: "lost"}); out.Standby != "sb1" {
		t.Fatalf("Takeover(rec2) = %+v, want proposed with sb1 (free now)", out)
	}
	p2 := h.m.Proposals()[1].ID
	h.takeEvents()

	// Confirmed while sb1 is free: sb1 takes over.
	if err := h.m.Confirm(out.Proposal, "op"); err != nil {
		t.Fatal(err)
	}
	h.expectEvents("proposal_confirmed:rec1", "takeover_started:rec1")
	h.expectSent("takeover>sb1")
	// rec2's proposal showed sb1 too, which is busy now: the confirm picks sb2.
	if err := h.m.Confirm(p2, "op"); err != nil {
		t.Fatal(err)
	}
	evs := h.expectEvents("proposal_confirmed:rec2", "takeover_started:rec2")
	if evs[1].Fields["standby"] != "sb2" {
		t.Fatalf("rec2 taken over by %v, want sb2", evs[1].Fields["standby"])
	}
	h.expectSent("takeover>sb2")
}

// A coordinator started again on a host whose clock was stepped back an
// hour since the takeover: the grace period's end, kept as a wall-clock
// time, is now an hour further away. It ends at most the grace period
// after the restart, not the step on top of it.
func TestGraceAfterTheClockWentBack(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{Grace: 10 * time.Minute}), nil)
	h.takeover(Request{Member: "rec1"})
	h.takeEvents()
	h.advance(3 * time.Minute)
	h.restart(0, func(o *Options) {
		h.clk = clock.NewVirtual(h.clk.Now().Add(-time.Hour))
		o.Clock = h.clk
	})
	h.advance(10*time.Minute - time.Nanosecond)
	h.expectEvents()
	h.advance(time.Nanosecond)
	h.expectEvents("grace_expired:rec1")
}
