package materialcopy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultGrantIdle is GrantsOptions.Idle when it is zero.
const DefaultGrantIdle = time.Hour

// NotGrantedMessage starts the explanation of a 403 from Grants for a token
// with no live grant. IsNotGranted looks for it.
const NotGrantedMessage = "no grant for this token"

// minGrantToken is the shortest token Grants.Add accepts.
const minGrantToken = 16

// Grant lets the holder of Token read one subfolder, Sub, of each of the
// folders the Grants serves (GrantsOptions.Folders), for one copy: what a
// standby recorded for one member, nothing above or beside it.
type Grant struct {
	Token string `json:"token"`
	// Sub is the subfolder, relative, without ".." elements ("" for the
	// folders themselves). It must be reached without symlinks.
	Sub     string    `json:"sub"`
	For     string    `json:"for"` // the member that copies (for logs and status)
	Granted time.Time `json:"granted"`
}

// GrantInfo is a grant as status shows it: no token.
type GrantInfo struct {
	For      string            `json:"for"`
	Sub      string            `json:"sub"`
	Roots    map[string]string `json:"roots"` // root name → the folder it opens
	Granted  time.Time         `json:"granted"`
	LastUsed time.Time         `json:"last_used"`
}

// GrantsOptions configures NewGrants.
type GrantsOptions struct {
	// Folders are what grants open a subfolder of, by root name (absolute
	// paths): an instance's material folders.
	Folders map[string]string
	// Idle: a grant not used for this long is forgotten (zero means
	// DefaultGrantIdle).
	Idle time.Duration
	// Now is the clock for Idle; nil means time.Now.
	Now func() time.Time
	// OnForget, when set, is told each grant forgotten (revoked by its
	// holder or idle too long), e.g. to delete it from a store. It is called
	// without locks held. Grants.Revoke does not call it: its caller knows.
	OnForget func(token string)
}

// Grants serves an instance's material folders to peers on one listener,
// each copy authorised separately: a grant's holder reads only the grant's
// subfolder of each folder, with the grant's token. It is safe for
// concurrent use.
//
// As an http.Handler it answers, for a token with a live grant, the
// endpoints of NewServer for the grant's roots (named as in
// GrantsOptions.Folders), and
//
//	DELETE /grant    revoke the grant (the holder's copy is done): 204
//
// Every request refreshes the grant's last use. Answers: 401 without a
// bearer token, 403 with NotGrantedMessage for a token with no live grant
// (not granted yet, revoked, or idle for longer than Idle), 403 for a path
// that leads out of the grant's subfolder (a ".." element, an absolute path,
// a symlink, the subfolder itself swapped for a symlink). The handler
// expects the endpoints at the root of its path; mount it under a prefix
// with http.StripPrefix.
type Grants struct {
	folders  map[string]string
	idle     time.Duration
	now      func() time.Time
	onForget func(token string)

	mu     sync.Mutex
	grants map[[sha256.Size]byte]*grantEntry // by sha256 of the token
}

type grantEntry struct {
	grant    Grant
	roots    map[string]string // root name → folder opened
	server   http.Handler      // NewServer for the roots, each confined
	lastUsed time.Time
}

// NewGrants returns an empty set of grants over opts.Folders.
func NewGrants(opts GrantsOptions) *Grants {
	g := &Grants{folders: maps.Clone(opts.Folders), idle: opts.Idle, now: opts.Now, onForget: opts.OnForget, grants: map[[sha256.Size]byte]*grantEntry{}}
	if g.idle <= 0 {
		g.idle = DefaultGrantIdle
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g
}

// Add lets gr.Token read the subfolder gr.Sub of each folder, replacing a
// grant with the same token. The token must have at least 16 characters;
// Sub must be relative, without ".." elements; the Grants must serve at
// least one folder, each absolute. A zero Granted is set to now; the grant
// counts as used now.
func (g *Grants) Add(gr Grant) error {
	if len(gr.Token) < minGrantToken {
		return fmt.Errorf("materialcopy: grant for %q: token too short (%d characters, want at least %d)", gr.For, len(gr.Token), minGrantToken)
	}
	if len(g.folders) == 0 {
		return fmt.Errorf("materialcopy: grant for %q: this server has no folders to open", gr.For)
	}
	srv := &server{roots: make(map[string]*local, len(g.folders))}
	roots := make(map[string]string, len(g.folders))
	for name, dir := range g.folders {
		if name == "" {
			return fmt.Errorf("materialcopy: grant for %q: a folder with an empty root name", gr.For)
		}
		l, err := within(dir, gr.Sub)
		if err != nil {
			return fmt.Errorf("materialcopy: grant for %q: %w", gr.For, err)
		}
		srv.roots[name], roots[name] = l, l.root
	}
	srv.token, srv.hasToken = sha256.Sum256([]byte(gr.Token)), true
	now := g.now()
	if gr.Granted.IsZero() {
		gr.Granted = now
	}
	e := &grantEntry{grant: gr, roots: roots, server: srv, lastUsed: now}
	g.mu.Lock()
	g.grants[sha256.Sum256([]byte(gr.Token))] = e
	g.mu.Unlock()
	return nil
}

// Revoke forgets the grant of token and reports whether there was one. It
// does not call OnForget.
func (g *Grants) Revoke(token string) bool {
	key := sha256.Sum256([]byte(token))
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.grants[key]
	if !ok || !sameToken(e, token) {
		return false
	}
	delete(g.grants, key)
	return true
}

// List returns the live grants, sorted by Granted then For.
func (g *Grants) List() []GrantInfo {
	var out []GrantInfo
	var forgotten []string
	g.mu.Lock()
	now := g.now()
	for key, e := range g.grants {
		if g.expired(e, now) {
			delete(g.grants, key)
			forgotten = append(forgotten, e.grant.Token)
			continue
		}
		out = append(out, GrantInfo{For: e.grant.For, Sub: e.grant.Sub, Roots: maps.Clone(e.roots), Granted: e.grant.Granted, LastUsed: e.lastUsed})
	}
	g.mu.Unlock()
	g.forget(forgotten...)
	slices.SortFunc(out, func(a, b GrantInfo) int {
		return cmp.Or(a.Granted.Compare(b.Granted), cmp.Compare(a.For, b.For))
	})
	return out
}

// ServeHTTP answers a grant's holder; see Grants.
func (g *Grants) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="understudy material"`)
		fail(w, http.StatusUnauthorized, "missing bearer token")
		return
	}
	e, ok := g.use(token)
	if !ok {
		fail(w, http.StatusForbidden, "%s (not granted yet, revoked, or idle for longer than %s)", NotGrantedMessage, g.idle)
		return
	}
	if strings.TrimSuffix(r.URL.Path, "/") != "/grant" {
		e.server.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodDelete {
		w.Header().Set("Allow", http.MethodDelete)
		fail(w, http.StatusMethodNotAllowed, "/grant: only DELETE (to revoke the grant)")
		return
	}
	key := sha256.Sum256([]byte(token))
	g.mu.Lock()
	removed := g.grants[key] == e
	if removed {
		delete(g.grants, key)
	}
	g.mu.Unlock()
	if removed {
		g.forget(token)
	}
	w.WriteHeader(http.StatusNoContent)
}

// use returns the live grant of token and marks it used now. A grant found
// idle for too long is forgotten.
func (g *Grants) use(token string) (*grantEntry, bool) {
	key := sha256.Sum256([]byte(token))
	g.mu.Lock()
	e, ok := g.grants[key]
	if !ok || !sameToken(e, token) {
		g.mu.Unlock()
		return nil, false
	}
	now := g.now()
	if g.expired(e, now) {
		delete(g.grants, key)
		g.mu.Unlock()
		g.forget(token)
		return nil, false
	}
	e.lastUsed = now
	g.mu.Unlock()
	return e, true
}

// sameToken compares in constant time, after the look-up by hash.
func sameToken(e *grantEntry, token string) bool {
	return subtle.ConstantTimeCompare([]byte(e.grant.Token), []byte(token)) == 1
}

func (g *Grants) expired(e *grantEntry, now time.Time) bool {
	return now.Sub(e.lastUsed) > g.idle
}

// forget tells OnForget; it must be called without g.mu held.
func (g *Grants) forget(tokens ...string) {
	if g.onForget == nil {
		return
	}
	for _, t := range tokens {
		g.onForget(t)
	}
}

// IsNotGranted reports whether err is a material server's refusal of a token
// with no live grant (Grants answered 403 with NotGrantedMessage). The grant
// may simply not have arrived yet: a copier retries it for a while.
func IsNotGranted(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.StatusCode == http.StatusForbidden && strings.Contains(he.Message, NotGrantedMessage)
}

// Release revokes the grant of token at baseURL (where Grants is mounted;
// a query such as "?root=NAME" is ignored) when its holder's copy is done.
// A grant already gone (403) is not an error; other refusals are an
// *HTTPError. client may be nil for http.DefaultClient.
func Release(ctx context.Context, baseURL, token string, client *http.Client) error {
	if client == nil {
		client = http.DefaultClient
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return fmt.Errorf("materialcopy: release grant at %q: %w", baseURL, err)
	}
	u.RawQuery, u.Fragment, u.RawPath = "", "", ""
	u.Path = strings.TrimSuffix(u.Path, "/") + "/grant"
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return fmt.Errorf("materialcopy: release grant at %q: %w", baseURL, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("materialcopy: release grant: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusForbidden:
		return nil
	}
	return &HTTPError{StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(msg)), URL: u.String()}
}
