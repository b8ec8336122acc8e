package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A handler that hangs where its deadline cannot reach (or runs the process
// out of memory) takes the coordinator down in the middle of it; the
// watchdog restarts it and the event, still in the inbox, is delivered again
// — on every start, without end, under Restart=always. Here the
// takeover_started handler hangs and the test kills the process each time,
// as the watchdog would. After the second death the event is quarantined at
// start: the coordinator starts, says so (log, /status, /metrics, an alarm),
// and once the policy is fixed an operator's confirm runs it once more and
// the failover completes.
func TestAPoisonEventIsQuarantinedAfterTwoDeaths(t *testing.T) {
	ts := newTakeoverSite(t, "poison", false)
	hanging := strings.Replace(takeoverPolicy,
		`us.on("takeover_started", function(ev) route(ev.member, us.member(ev.standby)) end)`,
		`us.on("takeover_started", function(ev)
  us.log.info("takeover_started handler hangs")
  local t0 = us.now()
  while us.now() - t0 < 50 do end
end)`, 1)
	policyFile := installHangingPolicy(t, ts, hanging)
	mgr, main, _ := ts.startAll()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "takeover_started handler hangs")
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}
	// The first restart hands it over again: the process may have died for
	// another reason.
	mgr = ts.run("manager")
	mgr.wait(20*time.Second, "msg", "handing the policy an event it had not finished with before the restart", "event", "takeover_started")
	mgr.wait(20*time.Second, "msg", "takeover_started handler hangs")
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}
	// The second does not.
	mgr = ts.run("manager")
	q := mgr.wait(20*time.Second, "msg", "event quarantined: takeover_started", "level", "ERROR", "member", "main")
	proposal := q.str("proposal")
	mgr.wait(20*time.Second, "msg", "ALARM event_quarantined")
	api := apiAddress(t, mgr)
	waitHealthz(t, http.DefaultClient, api+"/healthz", http.StatusOK, "ok")
	if mgr.has("msg", "takeover_started handler hangs") {
		t.Fatal("the quarantined event was handed to the policy again")
	}
	var st struct {
		Quarantined []struct {
			Proposal, Event, Member string
			Deliveries              int
		} `json:"quarantined"`
	}
	getJSON(t, api+"/status", &st)
	if len(st.Quarantined) != 1 || st.Quarantined[0].Proposal != proposal || st.Quarantined[0].Event != "takeover_started" || st.Quarantined[0].Deliveries != 2 {
		t.Fatalf("/status quarantined %+v, want %s", st.Quarantined, proposal)
	}
	expectQuarantinedMetric(t, api)

	// The policy is fixed; the operator confirms: it runs once more and the
	// outputs go to the backup.
	fixAndConfirm(t, ts, mgr, policyFile, proposal, api)
}

// A member_lost handler that takes the coordinator down would do so at every
// start: member events are not kept in the inbox (the member table raises
// them afresh after a restart), so the restarted coordinator judges the
// member lost again, runs the same handler and dies again. Here main's
// member_lost handler hangs and the test kills the coordinator each time, as
// the watchdog would. After the second death member_lost of main is
// quarantined at start: the coordinator starts, says so (log, /status,
// /metrics, an alarm), main's next member_lost is held instead of run, and
// once the policy is fixed an operator's confirm runs it once more and main
// is taken over.
func TestAPoisonMemberLostIsQuarantinedAfterTwoDeaths(t *testing.T) {
	ts := newTakeoverSite(t, "poisonlost", false)
	hanging := strings.Replace(takeoverPolicy,
		`us.on("member_lost", function(ev) if ev.member.id == "main" then us.takeover(ev.member, "backup") end end)`,
		`us.on("member_lost", function(ev)
  us.log.info("member_lost handler hangs")
  local t0 = us.now()
  while us.now() - t0 < 50 do end
end)`, 1)
	if hanging == takeoverPolicy {
		t.Fatal("the member_lost handler to replace is not in takeoverPolicy")
	}
	policyFile := installHangingPolicy(t, ts, hanging)
	mgr, main, _ := ts.startAll()
	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	mgr.wait(10*time.Second, "msg", "member_lost handler hangs")
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}
	// The first restart judges main lost again and runs the handler again:
	// the process may have died for another reason.
	mgr = ts.run("manager")
	mgr.wait(20*time.Second, "msg", "the handlers of a member event did not finish before the restart; it is not handed to the policy again by itself, and if it is raised again and its handlers do not finish once more it is quarantined", "event", "member_lost", "member", "main")
	mgr.wait(30*time.Second, "msg", "member_lost handler hangs")
	if err := mgr.p.Kill(); err != nil {
		t.Fatal(err)
	}
	// The second does not.
	mgr = ts.run("manager")
	q := mgr.wait(20*time.Second, "msg", "event quarantined: member_lost of main is not handed to the policy again", "level", "ERROR", "member", "main")
	proposal := q.str("proposal")
	mgr.wait(20*time.Second, "msg", "ALARM event_quarantined")
	api := apiAddress(t, mgr)
	waitHealthz(t, http.DefaultClient, api+"/healthz", http.StatusOK, "ok")
	mgr.wait(30*time.Second, "msg", "event held: member_lost of main is quarantined and not handed to the policy (logged once; each is recorded as event_held)")
	if mgr.has("msg", "member_lost handler hangs") {
		t.Fatal("the quarantined member_lost was handed to the policy again")
	}
	var st struct {
		Quarantined []struct {
			Proposal, Event, Member string
			Deliveries, Held        int
		} `json:"quarantined"`
	}
	getJSON(t, api+"/status", &st)
	if len(st.Quarantined) != 1 || st.Quarantined[0].Proposal != proposal || st.Quarantined[0].Event != "member_lost" || st.Quarantined[0].Member != "main" || st.Quarantined[0].Deliveries != 2 || st.Quarantined[0].Held < 1 {
		t.Fatalf("/status quarantined %+v, want %s of member_lost of main, held", st.Quarantined, proposal)
	}
	expectQuarantinedMetric(t, api)

	// The policy is fixed; the operator confirms: member_lost runs once
	// more, main is taken over and its outputs go to the backup.
	fixAndConfirm(t, ts, mgr, policyFile, proposal, api)
}

// installHangingPolicy writes policy as the coordinator's, with a handler
// deadline longer than its hang: it stands for a hang no deadline stops (a
// Go built-in, an allocation storm). It returns the policy file.
func installHangingPolicy(t *testing.T, ts *takeoverSite, policy string) string {
	t.Helper()
	policyFile := filepath.Join(filepath.Dir(ts.coordSite), "policy.lua")
	if err := os.WriteFile(policyFile, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(ts.coordSite)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ts.coordSite, []byte(strings.Replace(string(b), "policy: {file: policy.lua}", "policy: {file: policy.lua, handler_timeout: 60s}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return policyFile
}

// expectQuarantinedMetric checks that /metrics counts one quarantined event.
func expectQuarantinedMetric(t *testing.T, api string) {
	t.Helper()
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "understudy_events_quarantined 1") {
		t.Errorf("/metrics has no understudy_events_quarantined 1")
	}
}

// fixAndConfirm puts the working takeover policy back, confirms the
// quarantined event's proposal and waits until main's outputs show the
// backup, the alarm is cleared and /status has nothing quarantined.
func fixAndConfirm(t *testing.T, ts *takeoverSite, mgr *daemon, policyFile, proposal, api string) {
	t.Helper()
	mgr.mark()
	if err := os.WriteFile(policyFile, []byte(takeoverPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	mgr.wait(20*time.Second, "msg", "policy reloaded")
	out := cliOf(t, ts.coordSite, "manager")(0, "confirm", proposal)
	t.Logf("confirm: %s", out)
	ts.waitRouting(20*time.Second, map[int]int{1: 3, 2: 4})
	mgr.wait(10*time.Second, "msg", "alarm cleared: event_quarantined")
	var st struct {
		Quarantined []json.RawMessage `json:"quarantined"`
	}
	getJSON(t, api+"/status", &st)
	if len(st.Quarantined) != 0 {
		t.Errorf("/status quarantined after confirm: %s", st.Quarantined)
	}
}
