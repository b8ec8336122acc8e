package takeover

import (
	"fmt"
	"time"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/store"
)

// A failback gives a covered member its duties back in an order that leaves
// no moment with nobody doing them and no material behind:
//
//  1. resume: the member takes its duties again; with failover.wait_ready
//     the failback waits until it reports ready (PhaseResuming);
//  2. release: the standby lets go of them (PhaseReleasing);
//  3. copy (failover.copy_material): what the standby recorded for the
//     member since the takeover is copied back — the files it was still
//     writing included, since it has now stopped writing them: while a pass
//     finds files still being written, another follows after copy.settle
//     (PhaseCopying). A copy that cannot finish keeps the coverage, raises
//     copy_incomplete and is tried again (or at once by another failback);
//  4. the coverage ends (failback_done).
//
// A member that is suspect (late heartbeats: a loaded machine, a network
// blip) does not fail its failback: the next step waits until it is alive
// again (a pause), and a step already sent goes on. Only a member that is
// lost, closed or broken fails it: before the standby let go, the standby
// simply keeps the duties (failback_failed); after, it is told to take them
// over again (failback_failed, then takeover_started), and the coverage —
// with the material still owed since its start — goes on. A failback that
// pauses StallPauses times, or StallTime in all, raises failback_stalled
// (and keeps waiting).

// Failback stall limits: a failback_stalled event goes out when the member
// went suspect this often, or was suspect this long in all, during one
// failback.
const (
	StallPauses = 3
	StallTime   = time.Minute
)

// Copy passes of a failback: at most this many passes wait for files still
// being written; a copy that fails is tried again after a backoff from
// copyRetryMin doubling to copyRetryMax.
const (
	maxCopyPasses = 10
	copyRetryMin  = time.Minute
	copyRetryMax  = 30 * time.Minute
	defaultSettle = 30 * time.Second
)

// Failback steps that wait for a suspect member (Coverage.Paused).
const (
	stepResume  = "resume"
	stepRelease = "release"
	stepCopy    = "copy"
)

// failbackState is a coverage's failback bookkeeping, kept with it in the
// store.
type failbackState struct {
	// Paused is the step that waits for the member to be alive again.
	Paused string `json:"paused,omitempty"`
	// SuspectSince is when the member went suspect during this failback
	// (zero while it is not).
	SuspectSince time.Time `json:"suspect_since,omitzero"`
	// Pauses counts the times it went suspect during this failback;
	// SuspectS the seconds it was, before the current time.
	Pauses   int     `json:"pauses,omitempty"`
	SuspectS float64 `json:"suspect_s,omitempty"`
	Stalled  bool    `json:"stalled,omitempty"` // failback_stalled went out
	// Retake: the member was lost while the standby was letting go; it
	// takes the duties over again once the release is answered.
	Retake     bool      `json:"retake,omitempty"`
	ReleasedAt time.Time `json:"released_at,omitzero"` // when the standby let go
	CopyPasses int       `json:"copy_passes,omitempty"`
	// CopyFailures counts copy passes that failed in a row; CopyError is
	// the last one's error; NextCopy is when the next pass starts (zero:
	// none is waiting).
	CopyFailures int       `json:"copy_failures,omitempty"`
	CopyError    string    `json:"copy_error,omitempty"`
	NextCopy     time.Time `json:"next_copy,omitzero"`
}

// DutiesBack reports whether the covered member has taken its duties back
// in a failback (it answered resume: member_ready), while the standby lets
// go or its material is copied back: its outputs are its own again.
func (c *Coverage) DutiesBack() bool {
	return c.Phase == PhaseReleasing || c.Phase == PhaseCopying
}

// failingBack reports whether c is in a failback.
func (c *Coverage) failingBack() bool {
	return c.Phase == PhaseResuming || c.Phase == PhaseReleasing || c.Phase == PhaseCopying
}

// Failback starts giving member's duties back (see the order above). A
// member that is suspect may be failed back: the failback waits for it.
// Called while the copy of an earlier failback waits to be tried again, it
// tries it now.
func (m *Manager) Failback(member, reason string) (Outcome, error) {
	c, ok := m.coverage[member]
	if !ok {
		return Outcome{}, fmt.Errorf("%s is not covered", member)
	}
	out := Outcome{Status: FailingBack, Member: member, Standby: c.Standby}
	switch c.Phase {
	case PhaseStarting:
		return Outcome{}, fmt.Errorf("%s: the takeover by %s has not finished yet", member, c.Standby)
	case PhaseCopying:
		if c.Pending == "" && c.Paused == "" {
			m.opts.Emit(Event{Name: events.FailbackStarted, Member: member, Fields: map[string]any{"standby": c.Standby, "reason": reason, "step": stepCopy}})
			c.CopyFailures = 0
			return out, m.step(c, stepCopy)
		}
		return out, nil
	case PhaseResuming, PhaseReleasing:
		return out, nil
	}
	target, _ := m.opts.Site.Member(member)
	if target.State != "alive" && target.State != "suspect" {
		return Outcome{}, fmt.Errorf("%s is %s: it cannot take its duties back", member, target.State)
	}
	m.opts.Emit(Event{Name: events.FailbackStarted, Member: member, Fields: map[string]any{"standby": c.Standby, "reason": reason}})
	c.failbackState = failbackState{}
	c.ReadyAt = time.Time{}
	c.Phase = PhaseResuming
	if target.State == "suspect" {
		m.suspect(c)
	}
	return out, m.step(c, stepResume)
}

// step carries out a failback step, or holds it while the member is suspect.
func (m *Manager) step(c *Coverage, step string) error {
	target, _ := m.opts.Site.Member(c.Member)
	if target.State == "suspect" {
		c.Paused = step
		m.save(c)
		m.log.Info("failback paused: the member is suspect", "member", c.Member, "step", step)
		m.opts.Emit(Event{Name: events.FailbackPaused, Member: c.Member, Fields: map[string]any{"standby": c.Standby, "step": step, "pauses": c.Pauses}})
		return nil
	}
	c.Paused = ""
	var err error
	switch step {
	case stepResume:
		err = m.resume(c, target)
	case stepRelease:
		err = m.release(c)
	case stepCopy:
		err = m.copyPass(c)
	}
	if err != nil {
		m.failed(c, step, err.Error())
	}
	return err
}

// resume tells the member to take its duties again.
func (m *Manager) resume(c *Coverage, target Member) error {
	a := Action{Target: c.Member, Verb: config.HookResume, Args: m.args(c), Cause: "failback of " + c.Member}
	if target.Settings.WaitReady {
		return m.send(c, PhaseResuming, a, true)
	}
	// Resume without waiting for it; the standby lets go at once.
	if err := m.send(c, PhaseResuming, a, false); err != nil {
		return err
	}
	c.ReadyAt = m.opts.Clock.Now()
	return m.release(c)
}

// release tells the standby to let go.
func (m *Manager) release(c *Coverage) error {
	a := Action{Target: c.Standby, Verb: config.HookRelease, Args: m.args(c), Cause: "failback of " + c.Member}
	return m.send(c, PhaseReleasing, a, true)
}

// copyPass sends one pass of the material copy: everything the standby
// recorded for the member since the coverage began (the copy skips what is
// there already).
func (m *Manager) copyPass(c *Coverage) error {
	m.disarm("copy:" + c.Member)
	c.NextCopy = time.Time{}
	c.CopyPasses++
	actions, err := m.opts.Site.CopyActions(CopyRequest{Member: c.Member, From: c.Standby, Since: c.Since, Cause: "material copy for " + c.Member})
	if err != nil {
		return fmt.Errorf("material copy: %w", err)
	}
	for i, a := range actions {
		if err := m.send(c, PhaseCopying, a, i == len(actions)-1); err != nil {
			return err
		}
	}
	return nil
}

func (m *Manager) args(c *Coverage) map[string]any {
	args := m.opts.Site.Bundle(c.Member)
	args["member"] = c.Member
	args["standby"] = c.Standby
	return args
}

// send records the action (and, when wait, the phase waiting for it) and delivers it.
func (m *Manager) send(c *Coverage, phase string, a Action, wait bool) error {
	next := *c
	if wait {
		next.Phase = phase
	}
	var id string
	err := m.opts.Store.Update(func(tx *store.Tx) error {
		var err error
		if id, err = m.opts.Actions.Record(tx, a); err != nil {
			return err
		}
		if wait {
			next.Pending = id
		}
		return tx.Put(bucketCoverage, next.Member, &next)
	})
	if err != nil {
		if m.opts.Store.Failing() == nil {
			return fmt.Errorf("failback state not written, nothing sent: %w", err)
		}
		// The state file takes no writes: the failback goes on, and what
		// it would have written is written once it can be.
		id = m.opts.Actions.RecordLater(&a, m.coverageLater(c.Member))
		if wait {
			next.Pending = id
		}
		m.log.Error("failback state not written; going on, and writing it as soon as the state file takes writes (until then a restart would forget it)", "member", c.Member, "error", err)
	}
	*c = next
	m.opts.Actions.Deliver(id)
	return nil
}

// Result takes the result of an action the manager sent (errText "" for
// done; result is the action's result, a copy's report). It reports whether
// the action was one of the manager's.
func (m *Manager) Result(id, errText string, result any) bool {
	if id == "" {
		return false
	}
	var c *Coverage
	for _, cv := range m.coverage {
		if cv.Pending == id {
			c = cv
			break
		}
	}
	if c == nil {
		return false
	}
	c.Pending = ""
	failed := errText != ""
	switch c.Phase {
	case PhaseStarting:
		if failed {
			m.end(c, events.TakeoverFailed, map[string]any{"standby": c.Standby, "error": errText})
			return true
		}
		c.Phase = PhaseCovering
		m.save(c)
		m.opts.Emit(Event{Name: events.TakeoverDone, Member: c.Member, Fields: map[string]any{"standby": c.Standby}})
	case PhaseResuming:
		if failed {
			m.backToCovering(c, stepResume, errText)
			return true
		}
		c.ReadyAt = m.opts.Clock.Now()
		m.save(c)
		m.opts.Emit(Event{Name: events.MemberReady, Member: c.Member, Fields: map[string]any{"standby": c.Standby}})
		m.step(c, stepRelease)
	case PhaseReleasing:
		if failed {
			// The standby may still hold the duties: it keeps the coverage.
			m.backToCovering(c, stepRelease, errText)
			return true
		}
		c.ReleasedAt = m.opts.Clock.Now()
		if c.Retake {
			m.retake(c, stepRelease, fmt.Sprintf("%s was lost while %s let go", c.Member, c.Standby))
			return true
		}
		if target, _ := m.opts.Site.Member(c.Member); target.Settings.CopyMaterial {
			c.Phase = PhaseCopying
			m.save(c)
			m.step(c, stepCopy)
			return true
		}
		m.finish(c)
	case PhaseCopying:
		m.copyResult(c, errText, result)
	default:
		m.save(c)
	}
	return true
}

// copyResult goes on after a copy pass: another pass while files were still
// being written, a retry later when it failed, else the end of the failback.
func (m *Manager) copyResult(c *Coverage, errText string, result any) {
	writing := 0
	if r, ok := result.(map[string]any); ok {
		writing = intOf(r["still_writing"])
	}
	switch {
	case errText != "":
		c.CopyFailures++
		c.CopyError = errText
		wait := copyRetryMin
		for i := 1; i < c.CopyFailures && wait < copyRetryMax; i++ {
			wait *= 2
		}
		m.copyLater(c, min(wait, copyRetryMax))
		m.opts.Emit(Event{Name: AlarmCopyIncomplete, Member: c.Member, Fields: map[string]any{
			"standby": c.Standby, "error": errText, "failures": c.CopyFailures, "retry_in_s": min(wait, copyRetryMax).Seconds(),
		}})
	case writing > 0 && c.CopyPasses < maxCopyPasses:
		c.CopyFailures, c.CopyError = 0, ""
		m.log.Info("files were still being written: copying again once they settle", "member", c.Member, "files", writing, "pass", c.CopyPasses)
		m.copyLater(c, m.settle())
	case writing > 0:
		c.CopyError = fmt.Sprintf("%d files were still being written after %d passes", writing, c.CopyPasses)
		c.CopyFailures++
		m.copyLater(c, copyRetryMin)
		m.opts.Emit(Event{Name: AlarmCopyIncomplete, Member: c.Member, Fields: map[string]any{
			"standby": c.Standby, "error": c.CopyError, "failures": c.CopyFailures, "retry_in_s": copyRetryMin.Seconds(),
		}})
	default:
		m.finish(c)
	}
}

func (m *Manager) settle() time.Duration {
	if m.opts.CopySettle > 0 {
		return m.opts.CopySettle
	}
	return defaultSettle
}

// copyLater arms the next copy pass of c.
func (m *Manager) copyLater(c *Coverage, after time.Duration) {
	c.NextCopy = m.opts.Clock.Now().Add(after)
	m.save(c)
	m.armFailback(c)
}

// armFailback arms what a failback in progress waits for by time: its next
// copy pass, its stall deadline (at start and after a restart).
func (m *Manager) armFailback(c *Coverage) {
	member := c.Member
	if c.Phase == PhaseCopying && !c.NextCopy.IsZero() {
		m.arm("copy:"+member, time.Time{}, c.NextCopy, func() {
			c, ok := m.coverage[member]
			if !ok || c.Phase != PhaseCopying || c.Pending != "" || c.NextCopy.IsZero() {
				return
			}
			m.step(c, stepCopy)
		})
	}
	if c.failingBack() && !c.SuspectSince.IsZero() && !c.Stalled {
		left := StallTime - time.Duration(c.SuspectS*float64(time.Second))
		m.arm("stall:"+member, c.SuspectSince, c.SuspectSince.Add(left), func() {
			if c, ok := m.coverage[member]; ok && c.failingBack() && !c.SuspectSince.IsZero() {
				m.checkStall(c)
			}
		})
	}
}

// finish ends a failback that is complete.
func (m *Manager) finish(c *Coverage) {
	fields := map[string]any{"standby": c.Standby, "covered_s": m.opts.Clock.Now().Sub(c.Since).Seconds()}
	if c.CopyPasses > 0 {
		fields["copy_passes"] = c.CopyPasses
	}
	m.end(c, events.FailbackDone, fields)
}

// failed ends a failback step that could not be sent.
func (m *Manager) failed(c *Coverage, step, errText string) {
	switch c.Phase {
	case PhaseCopying:
		c.CopyFailures++
		c.CopyError = errText
		m.copyLater(c, copyRetryMax)
		m.opts.Emit(Event{Name: AlarmCopyIncomplete, Member: c.Member, Fields: map[string]any{"standby": c.Standby, "error": errText, "failures": c.CopyFailures, "retry_in_s": copyRetryMax.Seconds()}})
	default:
		m.backToCovering(c, step, errText)
	}
}

// backToCovering ends a failback that could not finish while the standby
// still had the duties: it keeps them, so nothing is left uncovered.
func (m *Manager) backToCovering(c *Coverage, step, errText string) {
	m.disarmFailback(c)
	c.Phase = PhaseCovering
	c.Pending = ""
	c.ReadyAt = time.Time{}
	c.failbackState = failbackState{}
	m.save(c)
	m.opts.Emit(Event{Name: events.FailbackFailed, Member: c.Member, Fields: map[string]any{"standby": c.Standby, "step": step, "error": errText}})
}

// retake has the standby take the duties over again: the member was lost
// after the standby let go. The coverage keeps its start, so the next
// failback copies back everything since then.
func (m *Manager) retake(c *Coverage, step, why string) {
	m.disarmFailback(c)
	m.opts.Emit(Event{Name: events.FailbackFailed, Member: c.Member, Fields: map[string]any{"standby": c.Standby, "step": step, "error": why + "; " + c.Standby + " takes over again"}})
	c.Phase = PhaseStarting
	c.ReadyAt = time.Time{}
	c.failbackState = failbackState{}
	args := m.args(c)
	args["reason"] = why
	id, err := m.commit(c, Action{Target: c.Standby, Verb: config.HookTakeover, Args: args, Cause: "takeover of " + c.Member + " (lost during its failback)"})
	if err != nil {
		m.log.Error("NOBODY COVERS "+c.Member+": the takeover again was not recorded", "member", c.Member, "standby", c.Standby, "error", err)
		return
	}
	m.opts.Emit(Event{Name: events.TakeoverStarted, Member: c.Member, Fields: map[string]any{"standby": c.Standby, "reason": why, "action": id, "again": true}})
	m.opts.Actions.Deliver(id)
}

func (m *Manager) disarmFailback(c *Coverage) {
	m.disarm("copy:" + c.Member)
	m.disarm("stall:" + c.Member)
}

// end removes a coverage and lets the queue move.
func (m *Manager) end(c *Coverage, event string, fields map[string]any) {
	if err := m.opts.Store.Delete(bucketCoverage, c.Member); err != nil {
		m.log.Error("coverage not removed", "member", c.Member, "error", err)
		return
	}
	delete(m.coverage, c.Member)
	m.disarm("grace:" + c.Member)
	m.disarmFailback(c)
	m.opts.Emit(Event{Name: event, Member: c.Member, Fields: fields})
	m.Drain()
}

// suspect notes that a failing-back member went suspect.
func (m *Manager) suspect(c *Coverage) {
	if !c.SuspectSince.IsZero() {
		return
	}
	c.SuspectSince = m.opts.Clock.Now()
	c.Pauses++
	m.save(c)
	m.armFailback(c)
	m.checkStall(c)
}

// alive notes that a failing-back member is alive again and sends the step
// that waited for it.
func (m *Manager) alive(c *Coverage) {
	if !c.SuspectSince.IsZero() {
		c.SuspectS += m.opts.Clock.Now().Sub(c.SuspectSince).Seconds()
		c.SuspectSince = time.Time{}
		m.disarm("stall:" + c.Member)
		m.save(c)
	}
	if step := c.Paused; step != "" {
		m.log.Info("failback goes on: the member is alive again", "member", c.Member, "step", step)
		m.step(c, step)
	}
}

// checkStall raises failback_stalled once when the failback paused too often
// or too long.
func (m *Manager) checkStall(c *Coverage) {
	if c.Stalled {
		return
	}
	suspect := time.Duration(c.SuspectS * float64(time.Second))
	if !c.SuspectSince.IsZero() {
		suspect += m.opts.Clock.Now().Sub(c.SuspectSince)
	}
	if c.Pauses < StallPauses && suspect < StallTime {
		return
	}
	c.Stalled = true
	m.save(c)
	step := c.Paused
	if step == "" {
		step = map[string]string{PhaseResuming: stepResume, PhaseReleasing: stepRelease, PhaseCopying: stepCopy}[c.Phase]
	}
	m.log.Warn("failback stalled: the member keeps going suspect", "member", c.Member, "pauses", c.Pauses, "suspect", suspect)
	m.opts.Emit(Event{Name: AlarmFailbackStalled, Member: c.Member, Fields: map[string]any{
		"standby": c.Standby, "pauses": c.Pauses, "suspect_s": suspect.Seconds(), "step": step,
	}})
}

// MemberChanged is told when a member's state changes: a member that comes
// back leaves the queue and its proposals; a failing-back member that goes
// suspect pauses its failback, and one that is lost fails it (the standby
// keeps or takes the duties again); a standby that comes back may let the
// queue move.
func (m *Manager) MemberChanged(id string) {
	mem, ok := m.opts.Site.Member(id)
	if !ok {
		return
	}
	if mem.Available() {
		m.Withdraw(id, "the member is back")
	}
	if c, ok := m.coverage[id]; ok && c.failingBack() {
		switch mem.State {
		case "alive":
			m.alive(c)
		case "suspect":
			m.suspect(c)
		default:
			why := fmt.Sprintf("%s is %s again", id, mem.State)
			switch c.Phase {
			case PhaseResuming:
				m.backToCovering(c, stepResume, why)
			case PhaseReleasing:
				// The release is on its way: once answered, the standby
				// takes the duties again.
				c.Retake = true
				c.Paused = ""
				m.save(c)
			case PhaseCopying:
				m.retake(c, stepCopy, why)
			}
		}
	}
	m.Drain()
}

func intOf(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	return 0
}
