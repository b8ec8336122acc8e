package main

import (
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The coordinator's state file is damaged while it is down, the ways a disk,
// a power cut or a person do: emptied, truncated, overwritten with random
// bytes. Each time the restarted coordinator must start (no panic, no
// SIGBUS, no crash loop), say so in its log, on /healthz and on /status, move
// the file aside, and still fail over right after.
func TestACorruptStateFileIsMovedAsideAndFailoverStillWorks(t *testing.T) {
	ts := newTakeoverSite(t, "corrupt-state", false)
	mgr, main, _ := ts.startAll()
	stateFile := filepath.Join(ts.stateDir, "corrupt-state-manager.db")
	damages := []struct {
		name string
		do   func(b []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"random bytes", func(b []byte) []byte {
			r := rand.New(rand.NewPCG(7, 8))
			for i := 2 * os.Getpagesize(); i < len(b); i++ {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
	}
	for _, d := range damages {
		if err := mgr.p.Kill(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(stateFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stateFile, d.do(b), 0o600); err != nil {
			t.Fatal(err)
		}
		mgr = ts.run("manager")
		e := mgr.wait(20*time.Second, "msg", "state file "+stateFile+" was corrupt", "level", "ERROR")
		t.Logf("%s: %s", d.name, e.str("msg"))
		moved := e.str("moved_to")
		if _, err := os.Stat(moved); err != nil {
			t.Errorf("%s: the corrupt file is not where the log says: %v", d.name, err)
		}
		api := apiAddress(t, mgr)
		waitHealthz(t, http.DefaultClient, api+"/healthz", http.StatusOK, "was corrupt")
		var st struct {
			StateRecovered *struct {
				File, Reason, MovedTo string
			} `json:"state_recovered"`
		}
		getJSON(t, api+"/status", &st)
		if st.StateRecovered == nil || st.StateRecovered.Reason == "" {
			t.Errorf("%s: /status does not say the state file was recovered: %+v", d.name, st.StateRecovered)
		}
		mgr.wait(20*time.Second, "msg", "member alive", "member", "main")
		mgr.wait(20*time.Second, "msg", "member alive", "member", "backup")
	}
	// A failover still works, with the members' epochs ahead of the fresh
	// state's.
	mgr.mark()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "member lost", "member", "main")
	mgr.wait(30*time.Second, "msg", "takeover_done", "member", "main")
	ts.waitRouting(20*time.Second, map[int]int{1: 3, 2: 4})
}
