package scenario

import (
	"fmt"
	"io"
	"strings"

	"understudy/events"
	"understudy/runtime/engine"
)

// quiet reports the record types the decision log leaves out: bookkeeping
// that says nothing a person needs to follow the decisions.
func quiet(typ string) bool {
	switch typ {
	case events.ActionRunning, events.PolicyLoaded, events.Coordinator, events.BusHeard, events.CopyProgress:
		return true
	}
	return false
}

// interesting reports whether a record type tells what happened to members
// (for "what happened instead").
func interesting(typ string) bool {
	return !quiet(typ) && !strings.HasPrefix(typ, "action_") && typ != events.DriverConnected && typ != events.RouteChanged
}

// actionText is an action record in words: what it does and why.
func actionText(r engine.Record) string {
	what := r.Action()
	if c, ok := r.Fields["cause"]; ok && fmt.Sprint(c) != "" {
		what += "   ← " + fmt.Sprint(c)
	}
	return what
}

// WriteLog writes the decision log: what happened to the members and
// devices, each action with the event, timer and policy line that caused it,
// and each action's result, at its virtual time.
func (r *Result) WriteLog(w io.Writer) {
	for _, rec := range r.Records {
		if quiet(rec.Type) {
			continue
		}
		t := at(rec.At.Sub(r.Start))
		switch rec.Type {
		case events.ActionStarted, events.ActionResumed:
			fmt.Fprintf(w, "%10s   → %s\n", t, actionText(rec))
		case events.ActionDone:
			fmt.Fprintf(w, "%10s     ✓ %s%s\n", t, shortAction(rec), result(rec))
		case events.ActionFailed:
			fmt.Fprintf(w, "%10s     ✗ %s: %v\n", t, shortAction(rec), rec.Fields["error"])
		case events.RouteChanged:
			fmt.Fprintf(w, "%10s %s %v output %v ← input %v\n", t, rec.Type, rec.Fields["driver"], rec.Fields["output"], rec.Fields["input"])
		case events.RoutingDiffers:
			duty := ""
			if d, ok := rec.Fields["duty"]; ok {
				duty = fmt.Sprintf(", %v's output", d)
			}
			fmt.Fprintf(w, "%10s %s %v output %v shows input %v, not %v (%v%s: %v)\n", t, rec.Type, rec.Fields["driver"],
				rec.Fields["output"], rec.Fields["actual"], rec.Fields["expected"], rec.Fields["cause"], duty, rec.Fields["default"])
		case events.PolicyError:
			fmt.Fprintf(w, "%10s   ! policy error: %v\n", t, rec.Fields["error"])
		default:
			who := rec.Member
			if who == "" {
				if d, ok := rec.Fields["driver"]; ok {
					who = fmt.Sprint(d)
				}
			}
			fmt.Fprintf(w, "%10s %s %s%s\n", t, rec.Type, who, rec.Summary())
		}
	}
}

func shortAction(r engine.Record) string {
	if r.Fields["driver"] != nil && r.Fields["verb"] != "route" {
		return fmt.Sprintf("%v send", r.Fields["driver"])
	}
	if r.Fields["driver"] == nil {
		return fmt.Sprintf("%v on %v", r.Fields["verb"], r.Fields["target"])
	}
	return r.Action()
}

func result(r engine.Record) string {
	if n, ok := r.Fields["result"].(string); ok && n != "" {
		return " (" + n + ")"
	}
	return ""
}

// WriteChecks writes each expectation with its outcome, and a summary line.
func (r *Result) WriteChecks(w io.Writer) {
	failed := 0
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark, failed = "FAIL", failed+1
		}
		fmt.Fprintf(w, "%s %s:%d: %s", mark, r.Scenario.File, c.Line, c.Want)
		if c.Detail != "" {
			sep := ": "
			if !c.OK {
				sep = "\n       instead: "
			}
			fmt.Fprintf(w, "%s%s", sep, c.Detail)
		}
		fmt.Fprintln(w)
	}
	verdict := "passed"
	if failed > 0 {
		verdict = fmt.Sprintf("FAILED (%d of %d expectations)", failed, len(r.Checks))
	}
	fmt.Fprintf(w, "%s: %s — %s of site time in %s\n", r.Scenario.File, verdict, at(r.Length), r.Wall.Round(10_000))
}
