package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/testhost"
)

// An instance whose API is not on loopback (here on a test host's address)
// answers only with a token: the read token for reading, the command token
// for anything; the dashboard's page itself needs none.
func TestAnAPIOffLoopbackNeedsAToken(t *testing.T) {
	nw := testhost.NewNetwork(t, 1)
	h := nw.Hosts[0]
	site := writeSite(t, siteParams{Name: "api", Bus: "url: tcp://127.0.0.1:1", Router: "127.0.0.1:9", MainAPI: net.JoinHostPort(h.Addr.String(), "0")})
	main := runIn(t, h, site, "main")
	api := apiAddress(t, main)
	if !strings.Contains(api, h.Addr.String()) {
		t.Fatalf("the API listens on %s, not on the test host's address", api)
	}
	stateDir := filepath.Join(filepath.Dir(site), ".understudy")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(stateDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	readToken, commandToken := read("api-main.read-token"), read("api-main.token")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return h.Dial(ctx, network, addr)
	}}}
	call := func(method, path, bearer, cookie string) int {
		t.Helper()
		req, err := http.NewRequest(method, api+path, strings.NewReader(`{"mode":"auto"}`))
		if err != nil {
			t.Fatal(err)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "understudy_token", Value: cookie})
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		method, path, bearer, cookie string
		want                         int
	}{
		{"GET", "/status", "", "", 401},
		{"GET", "/status", "wrong", "", 401},
		{"GET", "/status", readToken, "", 200},
		{"GET", "/status", commandToken, "", 200},
		{"GET", "/healthz", "", "", 401},
		{"GET", "/metrics", "", "", 401},
		{"GET", "/metrics", readToken, "", 200},
		{"GET", "/dashboard/events", "", "", 401},
		{"GET", "/", "", "", 200}, // the page: no data in it
		{"POST", "/command/mode", "", "", 401},
		{"POST", "/command/mode", readToken, "", 401}, // the read token commands nothing
	} {
		if got := call(c.method, c.path, c.bearer, c.cookie); got != c.want {
			t.Errorf("%s %s (token %v, cookie %v): %d, want %d", c.method, c.path, c.bearer != "", c.cookie != "", got, c.want)
		}
	}
	// The dashboard's stream takes the token from its cookie (EventSource
	// cannot send a header); it streams, so only the answer's status is read.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", api+"/dashboard/events", nil)
	req.AddCookie(&http.Cookie{Name: "understudy_token", Value: readToken})
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the dashboard's stream with the cookie: %d", resp.StatusCode)
	}
}
