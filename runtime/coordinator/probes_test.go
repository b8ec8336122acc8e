package coordinator_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/drivers/extron/extronsim"
	"understudy/drivers/videohub/videohubsim"
	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
)

const probeSite = `site: p
coordinator: c
heartbeat: {interval: 100ms, lost_after: 400ms, startup_grace: 2s}
members:
  - id: c
  - id: camera
    probe: {http: "%s", interval: 100ms}
`

// A member that runs no understudy is seen, lost and restored through its
// probe, like any instance through its heartbeats.
func TestAProbedMemberIsSeenLostAndRestored(t *testing.T) {
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := srv.URL
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.yaml"), fmt.Appendf(nil, probeSite, addr), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	records := make(chan engine.Record, 64)
	c, err := coordinator.New(coordinator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Site: site, Self: "c", Coordinator: c, Online: true, Observe: func(r engine.Record) {
		if r.Member == "camera" {
			records <- r
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	expect := func(typ string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r := <-records:
				if r.Type == typ {
					return
				}
			case <-deadline:
				t.Fatalf("no %s for the camera within 10s", typ)
			}
		}
	}
	expect("member_seen")
	down.Store(true) // the camera stops answering
	expect("member_lost")
	down.Store(false)
	expect("member_restored")
}

// Switchers that are members but not drivers are probed in their own
// protocol: a Videohub answers PING, an Extron sends its banner.
func TestSwitchersAreProbedInTheirOwnProtocol(t *testing.T) {
	vh, vhAddr := videohubsim.StartLoopback(t, videohubsim.Options{})
	_, exAddr := extronsim.StartLoopback(t, extronsim.Options{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.yaml"), fmt.Appendf(nil, `site: p
coordinator: c
heartbeat: {interval: 100ms, lost_after: 600ms, startup_grace: 3s}
members:
  - id: c
  - id: hub
    probe: {videohub: "%s", interval: 200ms}
  - id: matrix
    probe: {extron: "%s", interval: 200ms}
`, vhAddr, exAddr), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	records := make(chan engine.Record, 256)
	c, err := coordinator.New(coordinator.Options{Registry: builtin.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(engine.Options{Site: site, Self: "c", Coordinator: c, Online: true, Observe: func(r engine.Record) {
		if r.Member == "hub" || r.Member == "matrix" {
			records <- r
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	seen := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for !seen["hub"] || !seen["matrix"] {
		select {
		case r := <-records:
			switch r.Type {
			case "member_seen":
				seen[r.Member] = true
			case "member_lost":
				t.Fatalf("%s lost unexpectedly: %+v", r.Member, r)
			}
		case <-deadline:
			t.Fatalf("within 10s only these were seen: %v", seen)
		}
	}
	vh.Close() // the Videohub goes away
	for {
		select {
		case r := <-records:
			if r.Type == "member_lost" {
				if r.Member != "hub" {
					t.Fatalf("%s lost, want hub", r.Member)
				}
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the Videohub was not lost within 10s of closing")
		}
	}
}
