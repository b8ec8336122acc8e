package instance

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"path/filepath"
	"strings"
)

// ReadTokenPath is where the instance of member keeps its read-only API
// token (for /status, /metrics, /healthz and the dashboard's stream when the
// API is not on loopback).
func ReadTokenPath(stateDir, site, member string) string {
	return filepath.Join(stateDir, site+"-"+member+".read-token")
}

// onLoopback reports whether addr (the API's listener) is a loopback address:
// only there does the API answer without a token.
func onLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// guard lets a request through when the API listens on loopback (as before:
// reading needs no token there; commands check their own token), and
// otherwise only with a token: the command token for anything, the read
// token for reading. The dashboard's page itself (its HTML, script and style:
// no data) is served to anyone, and /metrics too with api_open_metrics.
func (inst *Instance) guard(next http.Handler) http.Handler {
	open := onLoopback(inst.api.Addr())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case open,
			strings.HasPrefix(path, "/command/"), // checked by handleCommand
			r.Method == http.MethodGet && (path == "/" || strings.HasPrefix(path, "/dashboard/") && path != "/dashboard/events"),
			path == "/metrics" && inst.member.OpenMetrics,
			inst.mayRead(r):
			next.ServeHTTP(w, r)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="understudy"`)
			http.Error(w, "this API is not on loopback: it answers only with a token (Authorization: Bearer …, the read token "+filepath.Base(inst.readTokenPath)+" or the command token "+filepath.Base(inst.tokenPath)+" from its state folder)", http.StatusUnauthorized)
		}
	})
}

// mayRead reports whether r carries the command token or the read token, in
// its Authorization header or the dashboard's cookie.
func (inst *Instance) mayRead(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		c, err := r.Cookie("understudy_token")
		if err != nil {
			return false
		}
		tok = c.Value
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := 0
	for _, want := range []string{inst.token, inst.readToken} {
		w := sha256.Sum256([]byte(want))
		match |= subtle.ConstantTimeCompare(got[:], w[:])
	}
	return match == 1
}
