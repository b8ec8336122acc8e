package scenario

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
	"understudy/runtime/coordinator"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/journal"
)

// Replay runs a recorded day (the coordinator's event journal) through a
// policy: what happened to the members (seen, lost by a dropped connection
// or by silence, closed, broken, back) and the operators' commands are
// played again on the virtual clock at the times they were recorded, and the
// decisions (the actions the policy asked for) are compared with the
// recorded ones.

// Decision is an action the policy asked for, in words.
type Decision struct {
	At    time.Duration // from the start of the journal
	What  string        // route router output 1 ← input 3; takeover on backup for main
	Cause string        // the event and policy line
}

// ReplayResult compares the recorded decisions with the replayed ones.
type ReplayResult struct {
	Journal  string
	Policy   string
	Records  int           // records read from the journal
	Length   time.Duration // the time the journal covers
	Same     []Decision    // recorded and decided again (the replay's)
	Recorded []Decision    // recorded, not decided by the policy now
	Replayed []Decision    // decided by the policy now, not recorded
	Run      *Result
}

// Differs reports whether the policy decided otherwise than recorded.
func (r *ReplayResult) Differs() bool { return len(r.Recorded)+len(r.Replayed) > 0 }

// ReplayOptions configure ReplayJournal.
type ReplayOptions struct {
	Options // Options.Policy: the changed policy
	// Tolerance is how far apart in time a recorded and a replayed decision
	// may be and still be the same (default 2s: the replay's detection is
	// exact, the recording's was real).
	Tolerance time.Duration
}

// ReplayJournal replays the journal at path through the site's policy (or
// opts.Policy).
func ReplayJournal(ctx context.Context, path string, opts ReplayOptions) (*ReplayResult, error) {
	var records []engine.Record
	if _, err := journal.Read(path, func(r engine.Record) error { records = append(records, r); return nil }); err != nil {
		return nil, err
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("journal %s is empty", path)
	}
	site, err := config.Load(opts.Site)
	if err != nil {
		return nil, err
	}
	sc := FromRecords(records, site)
	sc.File = path
	if opts.Policy != "" {
		abs, err := filepath.Abs(opts.Policy)
		if err != nil {
			return nil, err
		}
		opts.Policy = abs
	}
	run, err := Run(ctx, sc, opts.Options)
	if err != nil {
		return nil, err
	}
	start := records[0].At
	res := &ReplayResult{Journal: path, Policy: run.Site.PolicyPath(), Records: len(records), Length: records[len(records)-1].At.Sub(start), Run: run}
	tol := opts.Tolerance
	if tol <= 0 {
		tol = 2 * time.Second
	}
	recorded := decisions(records, start)
	replayed := decisions(run.Records, run.Start)
	used := make([]bool, len(replayed))
	for _, d := range recorded {
		found := false
		for i, n := range replayed {
			if !used[i] && n.What == d.What && (n.At-d.At).Abs() <= tol {
				used[i], found = true, true
				res.Same = append(res.Same, n)
				break
			}
		}
		if !found {
			res.Recorded = append(res.Recorded, d)
		}
	}
	for i, n := range replayed {
		if !used[i] {
			res.Replayed = append(res.Replayed, n)
		}
	}
	return res, nil
}

// decisions lists the actions started in records, but for the runtime's
// own upkeep of the switcher routing (re-asserts, start-up routes): they
// follow what the devices showed, which a replay does not play.
func decisions(records []engine.Record, start time.Time) []Decision {
	var out []Decision
	for _, r := range records {
		if r.Type != events.ActionStarted || coordinator.RoutingUpkeep(fmt.Sprint(r.Fields["cause"])) {
			continue
		}
		out = append(out, Decision{At: r.At.Sub(start), What: r.Action(), Cause: fmt.Sprint(r.Fields["cause"])})
	}
	return out
}

// FromRecords turns a recorded stream into a scenario that makes the same
// things happen to the members at the same times: seen or back (up), lost by
// a dropped connection (crash) or by silence (silence, lost_after before it
// was noticed), closed (shutdown), broken and repaired, and the operators'
// commands. It has no expectations; Replay compares decisions instead.
func FromRecords(records []engine.Record, site *config.Site) *Scenario {
	sc := &Scenario{Name: "replay", Start: records[0].At.UTC().Format(time.RFC3339Nano), NoneUp: true}
	start := records[0].At
	add := func(at time.Duration, s Step) {
		s.At = config.Duration(max(at, 0))
		sc.Steps = append(sc.Steps, s)
	}
	up := map[string]bool{}
	for _, r := range records {
		at := r.At.Sub(start)
		m, isMember := site.Member(r.Member)
		switch {
		case r.Type == events.Command:
			// A fire drill is replayed by its command: what the drill itself
			// did (the hold, the revert's failback) follows from it again.
			args, _ := r.Fields["args"].(map[string]any)
			if _, failed := r.Fields["error"]; !failed && args["by"] != "drill" {
				add(at, Step{Command: fmt.Sprint(r.Fields["verb"]), Args: args})
			}
		case !isMember || m.Probe != nil || r.Fields["drill"] != nil:
		case r.Type == events.MemberSeen || r.Type == events.MemberRestored && r.Fields["reason"] != "material disks work again":
			if !up[r.Member] {
				add(at, Step{Up: r.Member})
				up[r.Member] = true
			}
		case r.Type == events.MemberRestored:
			add(at, Step{Repaired: r.Member})
		case r.Type == events.MemberBroken:
			add(at, Step{Broken: r.Member})
		case r.Type == events.MemberClosed:
			add(at, Step{Shutdown: r.Member})
			up[r.Member] = false
		case r.Type == events.MemberLost:
			reason := fmt.Sprint(r.Fields["reason"])
			switch {
			case strings.Contains(reason, "not heard within"):
				// Never heard: it was not up, nothing to do.
			case strings.Contains(reason, "Last Will") || strings.Contains(reason, "connection dropped"):
				add(at, Step{Crash: r.Member})
			default:
				add(at-m.LostAfter.D(), Step{Silence: r.Member})
			}
			up[r.Member] = false
		}
	}
	last := records[len(records)-1].At.Sub(start)
	sc.Run = config.Duration(last + time.Second)
	return sc
}

// Write reports the comparison.
func (r *ReplayResult) Write(w io.Writer) {
	fmt.Fprintf(w, "replay of %s (%d records, %s) through %s\n", r.Journal, r.Records, at(r.Length), r.Policy)
	fmt.Fprintf(w, "%d decisions as recorded\n", len(r.Same))
	list := func(title string, ds []Decision) {
		if len(ds) == 0 {
			return
		}
		fmt.Fprintln(w, title)
		for _, d := range ds {
			fmt.Fprintf(w, "%10s  %s   ← %s\n", at(d.At), d.What, d.Cause)
		}
	}
	list("recorded, but not decided by this policy:", r.Recorded)
	list("decided by this policy, not recorded:", r.Replayed)
	if !r.Differs() {
		fmt.Fprintln(w, "no differences")
	}
}
