package materialcopy

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	grantTokenA = "grant-token-aaaaaaaa"
	grantTokenB = "grant-token-bbbbbbbb"
)

// fakeClock is a clock the test moves; handlers read it from other
// goroutines.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// forgotten records the tokens OnForget is told.
type forgotten struct {
	mu     sync.Mutex
	tokens []string
}

func (f *forgotten) add(token string) {
	f.mu.Lock()
	f.tokens = append(f.tokens, token)
	f.mu.Unlock()
}

func (f *forgotten) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tokens)
}

// serveGrants mounts g under /material and returns the server and the base
// URL for root "rec".
func serveGrants(t *testing.T, g *Grants) (*httptest.Server, string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/material/", http.StripPrefix("/material", g))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts, ts.URL + "/material?root=rec"
}

func mustAdd(t *testing.T, g *Grants, gr Grant) {
	t.Helper()
	if err := g.Add(gr); err != nil {
		t.Fatal(err)
	}
}

func paths(files []FileInfo) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Path)
	}
	slices.Sort(out)
	return out
}

func TestGrantsSeparateRoots(t *testing.T) {
	folder := t.TempDir()
	writeFile(t, filepath.Join(folder, "rec1/a.ts"), []byte("a"), old)
	writeFile(t, filepath.Join(folder, "rec2/b.ts"), []byte("b"), old)
	g := NewGrants(GrantsOptions{Folders: map[string]string{"rec": folder}})
	mustAdd(t, g, Grant{Token: grantTokenA, Sub: "rec1", For: "rec1"})
	mustAdd(t, g, Grant{Token: grantTokenB, Sub: "rec2", For: "rec2"})
	ts, base := serveGrants(t, g)

	a := Remote(base, grantTokenA, ts.Client())
	if l, err := a.List(t.Context(), time.Time{}, time.Time{}); err != nil || !slices.Equal(paths(l), []string{"a.ts"}) {
		t.Errorf("grant A lists %v, %v; want only a.ts", paths(l), err)
	}
	b := Remote(base, grantTokenB, ts.Client())
	if l, err := b.List(t.Context(), time.Time{}, time.Time{}); err != nil || !slices.Equal(paths(l), []string{"b.ts"}) {
		t.Errorf("grant B lists %v, %v; want only b.ts", paths(l), err)
	}
	if _, err := a.Stat(t.Context(), "b.ts"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("grant A stat of B's file: %v", err)
	}
	if _, err := a.Open(t.Context(), "../rec2/b.ts", 0); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("grant A open of ../rec2/b.ts: %v", err)
	}
	var he *HTTPError
	if _, err := Remote(ts.URL+"/material?root=other", grantTokenA, ts.Client()).List(t.Context(), old, old); !errors.As(err, &he) || he.StatusCode != 404 {
		t.Errorf("grant A listing a root it was not granted: %v", err)
	}
}

func TestGrantsRefusals(t *testing.T) {
	g := NewGrants(GrantsOptions{Folders: map[string]string{"rec": t.TempDir()}})
	mustAdd(t, g, Grant{Token: grantTokenA})
	ts, base := serveGrants(t, g)

	_, err := Remote(base, "unknown-token-xxxxxxxx", ts.Client()).List(t.Context(), old, old)
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 403 || !IsNotGranted(err) {
		t.Errorf("unknown token: %v, want 403 not granted", err)
	}

	for _, auth := range []string{"", "Basic Zm9vOmJhcg==", "Bearer "} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", ts.URL+"/material/list", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: %d %q, want 401 asking for a bearer token", auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// Other errors are not "not granted".
	plain := serve(t, t.TempDir(), nil)
	_, err = Remote(plain.URL+"?root=rec", "wrong", plain.Client()).List(t.Context(), old, old)
	if err == nil || IsNotGranted(err) {
		t.Errorf("wrong token for NewServer: %v, IsNotGranted true", err)
	}
	if _, err := Remote(base, grantTokenA, ts.Client()).Stat(t.Context(), "none.ts"); err == nil || IsNotGranted(err) {
		t.Errorf("missing file: %v, IsNotGranted true", err)
	}
	if IsNotGranted(nil) {
		t.Error("IsNotGranted(nil)")
	}
}

func TestGrantsAddValidation(t *testing.T) {
	abs := t.TempDir()
	g := NewGrants(GrantsOptions{Folders: map[string]string{"rec": abs}})
	for name, c := range map[string]struct {
		folders map[string]string
		grant   Grant
	}{
		"short token":           {grant: Grant{Token: "short", Sub: "rec1"}},
		"no folders":            {folders: map[string]string{}, grant: Grant{Token: grantTokenA}},
		"relative folder":       {folders: map[string]string{"rec": "material"}, grant: Grant{Token: grantTokenA, Sub: "rec1"}},
		"empty root name":       {folders: map[string]string{"": abs}, grant: Grant{Token: grantTokenA, Sub: "rec1"}},
		"sub with ..":           {grant: Grant{Token: grantTokenA, Sub: "../etc"}},
		"sub with .. inside":    {grant: Grant{Token: grantTokenA, Sub: "rec1/../../etc"}},
		"sub absolute":          {grant: Grant{Token: grantTokenA, Sub: "/etc"}},
		"sub with a NUL":        {grant: Grant{Token: grantTokenA, Sub: "rec1\x00"}},
		"sub is the folder (.)": {grant: Grant{Token: grantTokenA, Sub: "."}},
	} {
		gs := g
		if c.folders != nil {
			gs = NewGrants(GrantsOptions{Folders: c.folders})
		}
		if err := gs.Add(c.grant); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if l := g.List(); len(l) != 0 {
		t.Errorf("refused grants listed: %+v", l)
	}

	// The same token again replaces the grant.
	mustAdd(t, g, Grant{Token: grantTokenA, Sub: "rec1", For: "first"})
	mustAdd(t, g, Grant{Token: grantTokenA, Sub: "rec1", For: "second"})
	if l := g.List(); len(l) != 1 || l[0].For != "second" {
		t.Errorf("after replacing: %+v", l)
	}
}

func TestGrantsList(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	g := NewGrants(GrantsOptions{Now: clock.Now, Folders: map[string]string{"rec": dir}})
	t0 := clock.Now()
	mustAdd(t, g, Grant{Token: grantTokenA + "1", For: "rec2", Granted: t0.Add(time.Minute)})
	mustAdd(t, g, Grant{Token: grantTokenA + "2", For: "rec1", Granted: t0.Add(time.Minute)})
	mustAdd(t, g, Grant{Token: grantTokenA + "3", For: "rec3", Granted: t0})
	mustAdd(t, g, Grant{Token: grantTokenA + "4", For: "rec4"}) // Granted: now
	l := g.List()
	var order []string
	for _, i := range l {
		order = append(order, i.For)
	}
	if want := []string{"rec3", "rec4", "rec1", "rec2"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	b, _ := json.Marshal(l)
	if strings.Contains(string(b), grantTokenA) || !strings.Contains(string(b), `"last_used"`) {
		t.Errorf("status JSON %s", b)
	}
}

func TestGrantRelease(t *testing.T) {
	var forgot forgotten
	dir := t.TempDir()
	g := NewGrants(GrantsOptions{OnForget: forgot.add, Folders: map[string]string{"rec": dir}})
	mustAdd(t, g, Grant{Token: grantTokenA})
	mustAdd(t, g, Grant{Token: grantTokenB})
	ts, base := serveGrants(t, g)
	src := Remote(base, grantTokenA, ts.Client())
	if _, err := src.List(t.Context(), old, old); err != nil {
		t.Fatal(err)
	}

	if err := Release(t.Context(), base, grantTokenA, ts.Client()); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, err := src.List(t.Context(), old, old); !IsNotGranted(err) {
		t.Errorf("after release: %v, want not granted", err)
	}
	if got := forgot.list(); !slices.Equal(got, []string{grantTokenA}) {
		t.Errorf("OnForget told %q, want the released token once", got)
	}
	if err := Release(t.Context(), base, grantTokenA, ts.Client()); err != nil {
		t.Errorf("release of a grant already gone: %v", err)
	}
	if l := g.List(); len(l) != 1 {
		t.Errorf("B's grant should remain: %+v", l)
	}

	// The coordinator's Revoke does not call OnForget.
	if !g.Revoke(grantTokenB) || g.Revoke(grantTokenB) {
		t.Error("Revoke should report true once")
	}
	if got := forgot.list(); len(got) != 1 {
		t.Errorf("OnForget told %q after Revoke", got)
	}

	// Only DELETE on /grant.
	mustAdd(t, g, Grant{Token: grantTokenA})
	a := request(t, ts, "GET", "/material/grant", url.Values{}, grantTokenA, nil)
	if a.code != http.StatusMethodNotAllowed {
		t.Errorf("GET /grant: %d %q", a.code, a.body)
	}
	var he *HTTPError
	if err := Release(t.Context(), ts.URL+"/elsewhere", grantTokenA, ts.Client()); !errors.As(err, &he) || he.StatusCode != 404 {
		t.Errorf("release at a wrong URL: %v, want a 404 HTTPError", err)
	}
}

func TestGrantsIdle(t *testing.T) {
	clock := newFakeClock()
	var forgot forgotten
	dir := t.TempDir()
	g := NewGrants(GrantsOptions{Idle: 10 * time.Minute, Now: clock.Now, OnForget: forgot.add, Folders: map[string]string{"rec": dir}})
	mustAdd(t, g, Grant{Token: grantTokenA, For: "a"})
	mustAdd(t, g, Grant{Token: grantTokenB, For: "b"})
	ts, base := serveGrants(t, g)
	src := Remote(base, grantTokenA, ts.Client())

	// Used within Idle, A stays; B, never used, is forgotten by List.
	for range 2 {
		clock.Advance(9 * time.Minute)
		if _, err := src.List(t.Context(), old, old); err != nil {
			t.Fatalf("used within idle: %v", err)
		}
	}
	l := g.List()
	if len(l) != 1 || l[0].For != "a" || !l[0].LastUsed.Equal(clock.Now()) {
		t.Errorf("list after 18 minutes: %+v", l)
	}
	if got := forgot.list(); !slices.Equal(got, []string{grantTokenB}) {
		t.Errorf("OnForget told %q, want B's token", got)
	}

	// Past Idle, A is refused and forgotten.
	clock.Advance(11 * time.Minute)
	if _, err := src.List(t.Context(), old, old); !IsNotGranted(err) {
		t.Errorf("after idle: %v, want not granted", err)
	}
	if got := forgot.list(); !slices.Equal(got, []string{grantTokenB, grantTokenA}) {
		t.Errorf("OnForget told %q, want B's then A's token", got)
	}
	if l := g.List(); len(l) != 0 {
		t.Errorf("list after idle: %+v", l)
	}

	// The default is an hour.
	g = NewGrants(GrantsOptions{Now: clock.Now, Folders: map[string]string{"rec": dir}})
	mustAdd(t, g, Grant{Token: grantTokenA})
	clock.Advance(59 * time.Minute)
	if len(g.List()) != 1 {
		t.Error("default idle: forgotten within the hour")
	}
	clock.Advance(2 * time.Minute)
	if len(g.List()) != 0 {
		t.Error("default idle: kept after the hour")
	}
}

func TestCopyThroughGrant(t *testing.T) {
	folder := t.TempDir()
	member := filepath.Join(folder, "rec1")
	files := map[string]string{"cam1/0001.ts": "first segment", "cam2/0001.ts": "second camera"}
	for rel, data := range files {
		writeFile(t, filepath.Join(member, filepath.FromSlash(rel)), []byte(data), old)
	}
	writeFile(t, filepath.Join(folder, "rec2/cam1/0001.ts"), []byte("another member"), old)
	g := NewGrants(GrantsOptions{Folders: map[string]string{"rec": folder}})
	mustAdd(t, g, Grant{Token: grantTokenA, Sub: "rec1", For: "rec1"})
	ts, base := serveGrants(t, g)

	dest := t.TempDir()
	rep, err := Copy(t.Context(), Job{Source: Remote(base, grantTokenA, ts.Client()), Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Copied) != len(files) {
		t.Errorf("copied %+v, want %d files", rep.Copied, len(files))
	}
	for rel, data := range files {
		if got, err := os.ReadFile(filepath.Join(dest, filepath.FromSlash(rel))); err != nil || string(got) != data {
			t.Errorf("%s: %q, %v", rel, got, err)
		}
	}
	if err := Release(t.Context(), base, grantTokenA, ts.Client()); err != nil {
		t.Errorf("release: %v", err)
	}
}
