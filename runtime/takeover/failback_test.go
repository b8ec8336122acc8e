package takeover

import (
	"strings"
	"testing"
	"time"

	"understudy/runtime/config"
)

// resultWith hands the manager an action's result with its report.
func (h *harness) resultWith(id, errText string, result map[string]any) {
	h.t.Helper()
	if !h.m.Result(id, errText, result) {
		h.t.Fatalf("Result(%s) was not the manager's", id)
	}
}

// suspect, alive and lose change rec1's state as the member table would
// and tell the manager.
func (h *harness) state(member, state string) {
	h.site.set(member, state)
	h.m.MemberChanged(member)
}

func TestFailbackErrors(t *testing.T) {
	h := newHarness(t, recSite(config.FailoverSettings{WaitReady: true}), nil)
	if _, err := h.m.Failback("rec1", "back"); err == nil || !strings.Contains(err.Error(), "not covered") {
		t.Fatalf("Failback of an uncovered member: %v", err)
	}
	h.takeover(Request{Member: "rec1"})
	s := h.expectSent("takeover>sb1")[0]
	h.site.set("rec1", "alive")
	if _, err := h.m.Failback("rec1", "back"); err == nil || !strings.Contains(err.Error(), "not finished") {
		t.Fatalf("Failback while starting: %v", err)
	}
	h.result(s.ID, "")
	for _, state := range []string{"lost", "closed", "broken"} {
		h.site.set("rec1", state)
		if _, err := h.m.Failback("rec1", "back"); err == nil || !strings.Contains(err.Error(), "is "+state) {
			t.Fatalf("Failback of a %s member: %v", state, err)
		}
	}
	h.expectSent()
	if h.phase("rec1") != PhaseCovering {
		t.Fatalf("phase = %s", h.phase("rec1"))
	}
}

// The standby lets go before the copy, so that the copy finds every file it
// recorded complete; the coverage ends only when the copy is done.
func TestFailbackWaitReadyWithCopy(t *testing.T) {
	h := coveredHarness(t, config.FailoverSettings{WaitReady: true, CopyMaterial: true})
	h.advance(10 * time.Minute)
	h.site.set("rec1", "alive")
	out, err := h.m.Failback("rec1", "back")
	if err != nil || out != (Outcome{Status: FailingBack, Member: "rec1", Standby: "sb1"}) {
		t.Fatalf("Failback = %+v, %v", out, err)
	}
	if ev := h.expectEvents("failback_started:rec1")[0]; ev.Fields["standby"] != "sb1" || ev.Fields["reason"] != "back" {
		t.Fatalf("failback_started fields = %v", ev.Fields)
	}
	resume := h.expectSent("resume>rec1")[0]
	if resume.Args["member"] != "rec1" || resume.Args["standby"] != "sb1" || resume.Args["duties"] != "duties of rec1" {
		t.Fatalf("resume args = %v", resume.Args)
	}
	if c, _ := h.m.Covered("rec1"); c.Phase != PhaseResuming || c.Pending != resume.ID {
		t.Fatalf("coverage = %+v", c)
	}
	if sc, _ := h.stored("rec1"); sc.Phase != PhaseResuming || sc.Pending != resume.ID {
		t.Fatalf("stored coverage = %+v", sc)
	}
	// Asking again while failing back sends nothing.
	if out, err := h.m.Failback("rec1", "back"); err != nil || out.Status != FailingBack {
		t.Fatalf("second Failback = %+v, %v", out, err)
	}
	h.expectSent()
	h.expectEvents()

	h.advance(time.Minute)
	h.result(resume.ID, "")
	h.expectEvents("member_ready:rec1")
	rel := h.expectSent("release>sb1")[0]
	if rel.Args["member"] != "rec1" || rel.Args["standby"] != "sb1" {
		t.Fatalf("release args = %v", rel.Args)
	}
	if c, _ := h.m.Covered("rec1"); c.Phase != PhaseReleasing || c.Pending != rel.ID || !c.ReadyAt.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("coverage = %+v", c)
	}

	h.advance(time.Minute)
	h.result(rel.ID, "")
	h.expectEvents()
	cp := h.expectSent("grant>sb1", "copy>rec1")[1]
	// Everything since the takeover: the standby does not record for rec1
	// any more, so the window is open at its end.
	if cp.Args["member"] != "rec1" || cp.Args["from"] != "sb1" || cp.Args["since"] != t0.Format(time.RFC3339) {
		t.Errorf("copy args = %v", cp.Args)
	}
	c, _ := h.m.Covered("rec1")
	if c.Phase != PhaseCopying || c.Pending != cp.ID || !c.ReleasedAt.Equal(t0.Add(12*time.Minute)) {
		t.Fatalf("coverage = %+v", c)
	}
	if sc, _ := h.stored("rec1"); sc.Phase != PhaseCopying || sc.Pending != cp.ID {
		t.Fatalf("stored coverage = %+v", sc)
	}
	// Still covered while it copies: the standby holds the only copy of
	// that material.
	if got := h.m.Covering("sb1"); len(got) != 1 {
		t.Fatalf("Covering(sb1) = %v", got)
	}

	h.advance(time.Minute)
	h.resultWith(cp.ID, "", map[string]any{"copied": 12, "still_writing": 0})
	ev := h.expectEvents("failback_done:rec1")[0]
	if ev.Fields["standby"] != "sb1" || ev.Fields["covered_s"] != (13*time.Minute).Seconds() || ev.Fields["copy_passes"] != 1 {
		t.Fatalf("failback_done fields = %v", ev.Fields)
	}
	if _, ok := h.m.Covered("rec1"); ok {
		t.Fatal("still covered after failback")
	}
	if _, ok := h.stored("rec1"); ok {
		t.Fatal("coverage still stored after failback")
	}
}

// Files the standby was still writing when it let go are copied in a later
// pass, once they settle: nothing is left behind.
func TestFailbackCopiesAgainWhileFilesAreStillBeingWritten(t *testing.T) {
	h := coveredHarness(t, config.FailoverSettings{CopyMaterial: true})
	h.opts.CopySettle = 20 * time.Second
	h.m.opts.CopySettle = 20 * time.Second
	h.site.set("rec1", "alive")
	h.m.Failback("rec1", "back")
	rel := h.expectSent("resume>rec1", "release>sb1")[1]
	h.result(rel.ID, "")
	cp := h.expectSent("grant>sb1", "copy>rec1")[1]
	h.takeEvents()
	h.resultWith(cp.ID, "", map[string]any{"copied": 40, "still_writing": 2})
	h.expectEvents()
	if c, _ := h.m.Covered("rec1"); c.Phase != PhaseCopying || c.Pending != "" || !c.NextCopy.Equal(h.clk.Now().Add(20*time.Second)) {
		t.Fatalf("coverage = %+v", c)
	}
	h.advance(19 * time.Second)
	h.expectSent()
	h.advance(time.Second)
	cp = h.expectSent("grant>sb1", "copy>rec1")[1]
	h.resultWith(cp.ID, "", map[string]any{"copied": 2, "still_writing": 0})
	if ev := h.expectEvents("failback_done:rec1")[0]; ev.Fields["copy_passes"] != 2 {
		t.Fatalf("failback_done fields = %v", ev.Fields)
	}
}

func TestFailbackWaitReadyWithoutCopy(t *testing.T) {
	h := coveredHarness(t, config.FailoverSettings{WaitReady: true})
	h.site.set("rec1", "alive")
	h.m.Failback("rec1", "back")
	resume := h.expectSent("resume>rec1")[0]
	h.result(resume.ID, "")
	h.expectEvents("failback_started:rec1", "member_ready:rec1")
	rel := h.expectSent("release>sb1")[0]
	if h.phase("rec1") != PhaseReleasing {
		t.Fatalf("phase = %s", h.phase("rec1"))
	}
	h.result(rel.ID, "")
	h.expectEvents("failback_done:rec1")
}

func TestFailbackWithoutWaitReady(t *testing.T) {
	h := coveredHarness(t, config.FailoverSettings{})
	h.site.set("rec1", "alive")
	if out, err := h.m.Failback("rec1", "back"); err != nil || out.Status != FailingBack {
		t.Fatalf("Failback = %+v, %v", out, err)
	}
	sent := h.expectSent("resume>rec1", "release>sb1")
	c, _ := h.m.Covered("rec1")
	if c.Phase != PhaseReleasing || c.Pending != sent[1].ID {
		t.Fatalf("coverage = %+v", c)
	}
	if h.m.Result(sent[0].ID, "", nil) {
		t.Fatal("the resume was waited for")
	}
	h.result(sent[1].ID, "")
	h.expectEvents("failback_started:rec1", "failback_done:rec1")

	t.Run("with copy", func(t *testing.T) {
		h := coveredHarness(t, config.FailoverSettings{CopyMaterial: true})
		h.site.set("rec1", "alive")
		h.m.Failback("rec1", "back")
		sent := h.expectSent("resume>rec1", "release>sb1")
		h.result(sent[1].ID, "")
		cp := h.expectSent("grant>sb1", "copy>rec1")[1]
		if h.phase("rec1") != PhaseCopying {
			t.Fatalf("phase = %s", h.phase("rec1"))
		}
		h.result(cp.ID, "")
		h.expectEvents("failback_started:rec1", "failback_done:rec1")
	})
}

// A step that fails before the standby let go leaves it the duties; a copy
// that fails after keeps the coverage, says why, and is tried again.
func TestFailbackStepFails(t *testing.T) {
	for _, step := range []string{"resume", "release"} {
		t.Run(step, func(t *testing.T) {
			h := coveredHarness(t, config.FailoverSettings{WaitReady: true, CopyMaterial: true})
			h.site.set("rec1", "alive")
			h.m.Failback("rec1", "back")
			failed := h.expectSent("resume>rec1")[0]
			if step == "release" {
				h.result(failed.ID, "")
				failed = h.expectSent("release>sb1")[0]
			}
			h.takeEvents()
			h.result(failed.ID, "disk full")
			ev := h.expectEvents("failback_failed:rec1")[0]
			if ev.Fields["step"] != step || ev.Fields["error"] != "disk full" || ev.Fields["standby"] != "sb1" {
				t.Fatalf("failback_failed fields = %v", ev.Fields)
			}
			c, ok := h.m.Covered("rec1")
			if !ok || c.Phase != PhaseCovering || c.Pending != "" || !c.ReadyAt.IsZero() || c.Standby != "sb1" {
				t.Fatalf("coverage = %+v, %v", c, ok)
			}
			if sc, _ := h.stored("rec1"); sc.Phase != PhaseCovering || sc.Pending != "" {
				t.Fatalf("stored coverage = %+v", sc)
			}
			h.expectSent()
			// The failback can be tried again.
			if out, err := h.m.Failback("rec1", "retry"); err != nil || out.Status != FailingBack {
				t.Fatalf("Failback again = %+v, %v", out, err)
			}
			h.expectSent("resume>rec1")
		})
	}
	t.Run("copy", func(t *testing.T) {
		h := coveredHarness(t, config.FailoverSettings{WaitReady: true, CopyMaterial: true})
		h.site.set("rec1", "alive")
		h.m.Failback("rec1", "back")
		h.result(h.expectSent("resume>rec1")[0].ID, "")
		h.result(h.expectSent("release>sb1")[0].ID, "")
		cp := h.expectSent("grant>sb1", "copy>rec1")[1]
		h.takeEvents()
		h.resultWith(cp.ID, "no space left on device", map[string]any{"copied": 3})
		ev := h.expectEvents("copy_incomplete:rec1")[0]
		if ev.Fields["error"] != "no space left on device" || ev.Fields["retry_in_s"] != copyRetryMin.Seconds() {
			t.Fatalf("copy_incomplete fields = %v", ev.Fields)
		}
		c, _ := h.m.Covered("rec1")
		if c.Phase != PhaseCopying || c.CopyError != "no space left on device" || c.CopyFailures != 1 {
			t.Fatalf("coverage = %+v", c)
		}
		// Tried again after a minute, and after two the next time.
		h.advance(copyRetryMin)
		cp = h.expectSent("grant>sb1", "copy>rec1")[1]
		h.resultWith(cp.ID, "no space left on device", nil)
		if ev := h.expectEvents("copy_incomplete:rec1")[0]; ev.Fields["retry_in_s"] != (2 * copyRetryMin).Seconds() {
			t.Fatalf("second copy_incomplete = %v", ev.Fields)
		}
		// An operator's failback tries it at once.
		if out, err := h.m.Failback("rec1", "operator"); err != nil || out.Status != FailingBack {
			t.Fatalf("Failback = %+v, %v", out, err)
		}
		cp = h.expectSent("grant>sb1", "copy>rec1")[1]
		h.result(cp.ID, "")
		h.expectEvents("failback_started:rec1", "failback_done:rec1")
		h.advance(time.Hour)
		h.expectSent()
	})
}

// A member lost before the standby let go leaves it the duties; lost after,
// the standby takes them over again, and the coverage keeps its start so the
// next failback copies everything since then.
func TestMemberLostDuringFailback(t *testing.T) {
	for _, phase := range []string{PhaseResuming, PhaseReleasing, PhaseCopying} {
		t.Run(phase, func(t *testing.T) {
			h := coveredHarness(t, config.FailoverSettings{WaitReady: true, CopyMaterial: true})
			h.advance(time.Hour)
			h.site.set("rec1", "alive")
			h.m.Failback("rec1", "back")
			pending := h.expectSent("resume>rec1")[0]
			if phase != PhaseResuming {
				h.result(pending.ID, "")
				pending = h.expectSent("release>sb1")[0]
			}
			if phase == PhaseCopying {
				h.result(pending.ID, "")
				pending = h.expectSent("grant>sb1", "copy>rec1")[1]
			}
			if h.phase("rec1") != phase {
				t.Fatalf("phase = %s, want %s", h.phase("rec1"), phase)
			}
			h.takeEvents()
			h.state("rec1", "lost")
			switch phase {
			case PhaseResuming:
				ev := h.expectEvents("failback_failed:rec1")[0]
				if ev.Fields["step"] != stepResume || !strings.Contains(ev.Fields["error"].(string), "lost") {
					t.Fatalf("failback_failed fields = %v", ev.Fields)
				}
				if c, _ := h.m.Covered("rec1"); c.Phase != PhaseCovering || c.Pending != "" {
					t.Fatalf("coverage = %+v", c)
				}
				h.expectSent()
			case PhaseReleasing:
				// The release is on its way: the standby takes over again
				// once it has let go.
				h.expectEvents()
				h.expectSent()
				h.result(pending.ID, "")
				fallthrough
			case PhaseCopying:
				evs := h.expectEvents("failback_failed:rec1", "takeover_started:rec1")
				if !strings.Contains(evs[0].Fields["error"].(string), "takes over again") || evs[1].Fields["standby"] != "sb1" {
					t.Fatalf("events = %+v", evs)
				}
				h.expectSent("takeover>sb1")
				c, _ := h.m.Covered("rec1")
				if c.Phase != PhaseStarting || !c.Since.Equal(t0) || c.Standby != "sb1" {
					t.Fatalf("coverage = %+v", c)
				}
			}
			if sc, _ := h.stored("rec1"); sc.Phase != h.phase("rec1") {
				t.Fatalf("stored coverage = %+v", sc)
			}
			// The late result of the abandoned step is no longer waited for.
			if phase != PhaseReleasing && h.m.Result(pending.ID, "", nil) {
				t.Fatal("late result taken")
			}
			h.expectEvents()
		})
	}
}

// A member that goes suspect does not fail its failback: the next step waits
// until it is alive again.
func TestFailbackPausesWhileTheMemberIsSuspect(t *testing.T) {
	h := coveredHarness(t, config.FailoverSettings{WaitReady: true})
	// Suspect when the failback is asked for: nothing is sent yet.
	h.site.set("rec1", "suspect")
	if out, err := h.m.Failback("rec1", "automatic failback"); err != nil || out.Status != FailingBack {
		t.Fatalf("Failback = %+v, %v", out, err)
	}
	if ev := h.expectEvents("failback_started:rec1", "failback_paused:rec1")[1]; ev.Fields["step"] != stepResume {
		t.Fatalf("failback_paused fields = %v", ev.Fields)
	}
	h.expectSent()
	if c, _ := h.m.Covered("rec1"); c.Phase != PhaseResuming || c.Paused != stepResume {
		t.Fatalf("coverage = %+v", c)
	}
	h.advance(2 * time.Second)
	h.state("rec1", "alive")
	resume := h.expectSent("resume>rec1")[0]

	// Suspect again while it resumes: the standby does not let go until it
	// is alive.
	h.state("rec1", "suspect")
	h.result(resume.ID, "")
	h.expectEvents("member_ready:rec1", "failback_paused:rec1")
	h.expectSent()
	h.advance(time.Second)
	h.state("rec1", "alive")
	rel := h.expectSent("release>sb1")[0]
	// A blip while the standby lets go holds nothing back (the release goes
	// to the standby), but it is the third time: the failback is stalled.
	h.state("rec1", "suspect")
	h.state("rec1", "alive")
	h.result(rel.ID, "")
	h.expectEvents("failback_stalled:rec1", "failback_done:rec1")
}

// A failback that keeps pausing is reported once (and keeps waiting): after
// StallPauses dips, or StallTime suspect in all.
func TestFailbackStalled(t *testing.T) {
	t.Run("pauses", func(t *testing.T) {
		h := coveredHarness(t, config.FailoverSettings{WaitReady: true})
		h.site.set("rec1", "alive")
		h.m.Failback("rec1", "back")
		h.expectSent("resume>rec1")
		h.takeEvents()
		for i := 1; i <= StallPauses+1; i++ {
			h.state("rec1", "suspect")
			h.advance(time.Second)
			h.state("rec1", "alive")
		}
		var stalled []Event
		for _, ev := range h.takeEvents() {
			if ev.Name == "failback_stalled" {
				stalled = append(stalled, ev)
			}
		}
		if len(stalled) != 1 || stalled[0].Fields["pauses"] != StallPauses || stalled[0].Fields["step"] != stepResume {
			t.Fatalf("failback_stalled events = %+v", stalled)
		}
		if c, _ := h.m.Covered("rec1"); c.Phase != PhaseResuming || !c.Stalled {
			t.Fatalf("coverage = %+v", c)
		}
	})
	t.Run("time", func(t *testing.T) {
		h := coveredHarness(t, config.FailoverSettings{WaitReady: true})
		h.site.set("rec1", "suspect")
		h.m.Failback("rec1", "back")
		h.takeEvents()
		h.advance(StallTime - time.Millisecond)
		h.expectEvents()
		// It survives a restart of the coordinator.
		h.restart(0, nil)
		h.advance(time.Millisecond)
		ev := h.expectEvents("failback_stalled:rec1")[0]
		if ev.Fields["suspect_s"] != StallTime.Seconds() || ev.Fields["step"] != stepResume {
			t.Fatalf("failback_stalled fields = %v", ev.Fields)
		}
		h.state("rec1", "alive")
		h.expectSent("resume>rec1")
	})
}

// A failback paused or waiting for its next copy pass goes on after a
// restart of the coordinator.
func TestFailbackResumesAfterARestart(t *testing.T) {
	h := coveredHarness(t, config.FailoverSettings{WaitReady: true})
	h.site.set("rec1", "suspect")
	h.m.Failback("rec1", "back")
	h.expectSent()
	h.restart(time.Minute, nil)
	if c, _ := h.m.Covered("rec1"); c.Paused != stepResume {
		t.Fatalf("coverage after a restart = %+v", c)
	}
	h.state("rec1", "alive")
	h.expectSent("resume>rec1")

	h2 := coveredHarness(t, config.FailoverSettings{CopyMaterial: true})
	h2.site.set("rec1", "alive")
	h2.m.Failback("rec1", "back")
	h2.result(h2.expectSent("resume>rec1", "release>sb1")[1].ID, "")
	cp := h2.expectSent("grant>sb1", "copy>rec1")[1]
	h2.resultWith(cp.ID, "", map[string]any{"still_writing": 1})
	h2.restart(10*time.Second, nil)
	h2.advance(defaultSettle - 10*time.Second)
	h2.expectSent("grant>sb1", "copy>rec1")
}
