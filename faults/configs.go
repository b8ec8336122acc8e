package faults

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"understudy/events"
)

// PropConfig is property 7: the newest configuration version wins on every
// host.
const PropConfig = "config-newest"

// ConfigSeen is a member's configuration bundle file as it was at the end.
type ConfigSeen struct {
	Member  string `json:"member"`
	Bundle  string `json:"bundle"`
	Content string `json:"content"`
	Missing bool   `json:"missing,omitempty"`
	Err     string `json:"error,omitempty"`
}

// InitialConfig is the content every bundle file of bundle starts with in a
// run: the same on every member that shares the bundle, so they start in
// step.
func InitialConfig(bundle string) string {
	return "# configuration bundle " + bundle + " as the fault suite started it\n"
}

// EditContent is what the config_edit op o writes into its member's file of
// bundle: unique to the op, so the checker knows which edit a file holds.
func EditContent(bundle string, o Op) string {
	return fmt.Sprintf("# configuration bundle %s: edit #%d, made on %s at +%s\n", bundle, o.ID, o.Member, o.At.Round(time.Millisecond))
}

// editConfig saves content into path as an editor does: a new file beside
// it, renamed over it (the watcher never reads half an edit).
func editConfig(path, content string) error {
	if path == "" {
		return errors.New("the member has no configuration bundle file")
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".edit")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	return nil
}

// ReadConfigs reads every member's configuration bundle file (the instances
// must have stopped).
func ReadConfigs(p *Plan) []ConfigSeen {
	var out []ConfigSeen
	for _, h := range p.Hosts {
		if h.Config == "" {
			continue
		}
		m, _ := p.Site.Member(h.Member)
		cs := ConfigSeen{Member: h.Member, Bundle: m.ConfigBundleName()}
		data, err := os.ReadFile(h.Config)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			cs.Missing = true
		case err != nil:
			cs.Err = err.Error()
		}
		cs.Content = string(data)
		out = append(out, cs)
	}
	return out
}

// configSettle is how long after the last fault that touched a bundle's
// holders or the coordinator (or the last edit) the holders must agree:
// back on the bus, the file checked (every second), the coordinator's
// answer and the agent's write.
func (c *checker) configSettle() time.Duration { return c.b.Reconnect + 5*time.Second }

// configs checks property 7 on every bundle: the coordinator's accepted
// versions never go backwards; every file holds the bundle's initial
// content or one of the edits (nothing torn or foreign); once the site has
// been settled for configSettle at the end (no fault on a holder, its
// state store or the coordinator), every holder whose instance
// runs holds the same content, and it is no older than the last edit made
// on a settled site (its member and the coordinator undisturbed for
// configSettle before and after it, no other edit of the bundle in that
// time): an edit made so is the newest and must win, also over a member
// that was away meanwhile and comes back with an older file.
func (c *checker) configs(r *Result) {
	holders := map[string][]string{}
	for _, id := range sortedKeys(c.h.Site.Members) {
		if m := c.h.Site.Members[id]; m.Bundle != "" && m.Instance {
			holders[m.Bundle] = append(holders[m.Bundle], id)
		}
	}
	c.acceptedInOrder(r)
	settle := c.configSettle()
	for _, bundle := range sortedKeys(holders) {
		members := holders[bundle]
		var edits []Op
		for _, o := range c.h.Ops {
			if o.Kind == OpConfigEdit && o.Err == "" && !o.Start.IsZero() && slices.Contains(members, o.Member) {
				edits = append(edits, o)
			}
		}
		slices.SortFunc(edits, func(a, b Op) int { return a.Start.Compare(b.Start) })
		known := map[string]int{InitialConfig(bundle): -1} // content → index in edits
		for i, e := range edits {
			known[EditContent(bundle, e)] = i
		}
		final := map[string]ConfigSeen{}
		for _, cs := range c.h.Configs {
			if cs.Bundle == bundle {
				final[cs.Member] = cs
			}
		}
		// The holders whose instance runs at the end, and the last time
		// anything disturbed them or the coordinator.
		var running []string
		quiet := c.h.Start
		for _, e := range edits {
			quiet = later(quiet, e.Start)
		}
		coordTrouble := c.coordBlocked()
		for _, coord := range c.h.Site.CoordinatorsOf() {
			coordTrouble = append(coordTrouble, c.hostTrouble(coord)...)
		}
		coordTrouble = coordTrouble.merge(0)
		trouble := slices.Clone(coordTrouble)
		for _, m := range members {
			if slices.ContainsFunc(c.procDown(m, OpKill), func(s span) bool { return !s.To.Before(c.end) }) {
				continue // killed and not started again: nothing can reach its file
			}
			running = append(running, m)
			trouble = append(trouble, c.away(m)...)
			trouble = append(trouble, c.hostTrouble(m)...)
		}
		for _, s := range trouble.merge(0) {
			quiet = later(quiet, s.To)
		}
		for _, m := range members {
			cs, ok := final[m]
			switch {
			case !ok || cs.Err != "":
				r.Violations = append(r.Violations, Violation{Property: PropConfig, Member: m, At: c.end, From: c.end.Add(-settle), To: c.end,
					Message: fmt.Sprintf("its file of bundle %s could not be read at the end: %s", bundle, cs.Err)})
			case cs.Missing:
				r.Violations = append(r.Violations, Violation{Property: PropConfig, Member: m, At: c.end, From: c.end.Add(-settle), To: c.end,
					Message: fmt.Sprintf("its file of bundle %s is gone at the end", bundle)})
			default:
				if _, ok := known[cs.Content]; !ok {
					r.Violations = append(r.Violations, Violation{Property: PropConfig, Member: m, At: c.end, From: c.end.Add(-settle), To: c.end,
						Message: fmt.Sprintf("its file of bundle %s holds neither the initial content nor any edit made: %q", bundle, clip(cs.Content, 120))})
				}
			}
		}
		if c.end.Sub(quiet) < settle || len(running) == 0 {
			r.ConfigsUnjudged++ // not settled, or no member of it runs at the end
			continue
		}
		r.ConfigsJudged++
		newest := -1 // the last edit made on a settled site
		for i, e := range edits {
			from, to := e.Start.Add(-settle), e.Start.Add(settle)
			if i > 0 && edits[i-1].Start.After(from) || i+1 < len(edits) && edits[i+1].Start.Before(to) {
				continue
			}
			busy := slices.ContainsFunc(append(append(c.away(e.Member), c.hostTrouble(e.Member)...), coordTrouble...), func(s span) bool { return s.From.Before(to) && s.To.After(from) })
			if !busy {
				newest = i
			}
		}
		first := final[running[0]]
		for _, m := range running {
			cs := final[m]
			if cs.Content != first.Content {
				r.Violations = append(r.Violations, Violation{Property: PropConfig, Member: m, At: c.end, From: quiet, To: c.end,
					Message: fmt.Sprintf("bundle %s differs at the end, %s after the site settled: %s holds %q, %s holds %q", bundle, c.end.Sub(quiet).Round(time.Millisecond), running[0], clip(first.Content, 80), m, clip(cs.Content, 80))})
			}
			if i, ok := known[cs.Content]; ok && i < newest {
				e := edits[newest]
				r.Violations = append(r.Violations, Violation{Property: PropConfig, Member: m, At: e.Start, From: e.Start.Add(-settle), To: c.end,
					Message: fmt.Sprintf("bundle %s holds an older content (%q) at the end than the edit #%d made on %s at %s on a settled site", bundle, clip(cs.Content, 80), e.ID, e.Member, clock(e.Start))})
			}
		}
	}
}

// hostTrouble is when member's state store could not keep what its
// configuration sync must (the version it agreed with the site): its
// commits stalled or its state folder full.
func (c *checker) hostTrouble(member string) spans {
	return c.opSpans(func(o Op) bool { return (o.Kind == OpStoreStall || o.Kind == OpStateFull) && o.Member == member })
}

// acceptedInOrder checks that the versions the coordinator accepted of each
// bundle only ever grew.
func (c *checker) acceptedInOrder(r *Result) {
	last := map[string]float64{}
	for _, rec := range c.h.Journal {
		if rec.Type != events.ConfigAccepted {
			continue
		}
		bundle := rec.Str("bundle")
		v, _ := rec.Fields["version"].(float64)
		if prev, ok := last[bundle]; ok && v <= prev {
			r.Violations = append(r.Violations, Violation{Property: PropConfig, Member: rec.Member, At: rec.At, From: rec.At.Add(-5 * time.Second), To: rec.At.Add(time.Second),
				Message: fmt.Sprintf("the coordinator accepted version %v of bundle %s after version %v: versions went backwards", v, bundle, prev)})
		}
		last[bundle] = v
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
