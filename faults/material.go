package faults

import (
	"fmt"
	"path"
	"strings"
	"time"

	"understudy/events"
	"understudy/runtime/materialcopy"
)

// materialIntact: no material file lost, truncated or overwritten, and no
// temporary file of a copy left (property 6), on what the recorder
// emulation wrote (History.Recorded) and what the material folders held at
// the end (History.Material):
//
//   - every file the emulation wrote is still in the folder it wrote it to,
//     with the content it wrote (a member's own recordings, which a copy
//     back must never overwrite, among them: the name conflict too);
//   - for every failback that ended (failback_done) after its copy
//     (copy_done), every file its standby had finished recording for the
//     member before that last copy started is in the member's folder with
//     the same content — except where the member has a recording of its own
//     by that name (a conflict: the member's is kept, above);
//   - no temporary file of a copy (.NAME.understudy-partial) is in any
//     material folder, except in the folder of a member whose last copy
//     did not finish (copy_failed, or still running when the schedule
//     ended): an interrupted copy leaves it to resume from.
//
// A history without recordings (a site without material folders) is not
// checked.
func (c *checker) materialIntact(r *Result) {
	if len(c.h.Recorded) == 0 {
		return
	}
	type key struct{ host, root, path string }
	seen := map[key]FileSeen{}
	for _, f := range c.h.Material {
		seen[key{f.Host, f.Root, f.Path}] = f
	}
	// differs says how the file at k differs from want ("" when it does not).
	differs := func(k key, want Recorded) string {
		got, ok := seen[k]
		switch {
		case !ok:
			return "is missing"
		case got.Size < want.Size:
			return fmt.Sprintf("is truncated (%d bytes, want %d)", got.Size, want.Size)
		case got.Size != want.Size || got.Hash != want.Hash:
			return fmt.Sprintf("has other content (%d bytes, sha256 %.12s; want %d bytes, %.12s)", got.Size, got.Hash, want.Size, want.Hash)
		}
		return ""
	}
	own := map[[2]string]bool{} // member, path: a recording of its own
	for _, w := range c.h.Recorded {
		if w.Host == w.For {
			own[[2]string{w.Host, w.Rel}] = true
		}
		when := w.Closed
		if when.IsZero() {
			when = c.end
		}
		if bad := differs(key{w.Host, w.Root, w.Path}, w); bad != "" {
			what := fmt.Sprintf("%s's recording for %s", w.Host, w.For)
			if w.Host == w.For {
				what = w.Host + "'s own recording"
			}
			r.Violations = append(r.Violations, Violation{
				Property: PropMaterial, Member: w.Host, At: c.end,
				Message: fmt.Sprintf("%s %s in %s %s at the end", what, w.Path, w.Root, bad),
				From:    when.Add(-2 * time.Second), To: when.Add(2 * time.Second),
			})
		}
	}
	for _, fb := range c.copiedFailbacks() {
		m := c.h.Site.Members[fb.member]
		if len(m.Material) == 0 {
			continue
		}
		r.Copies++
		for _, w := range c.h.Recorded {
			if w.Host != fb.standby || w.For != fb.member || w.Closed.IsZero() || !w.Closed.Before(fb.copyStarted) {
				continue
			}
			r.MaterialFiles++
			if own[[2]string{fb.member, w.Rel}] {
				continue // a conflict: the member's own must be kept (above)
			}
			if bad := differs(key{fb.member, m.Material[0], w.Rel}, w); bad != "" {
				r.Violations = append(r.Violations, Violation{
					Property: PropMaterial, Member: fb.member, At: fb.done,
					Message: fmt.Sprintf("failed back at %s after a copy from %s begun at %s, but %s, which %s finished recording for it at %s, %s in %s",
						clock(fb.done), fb.standby, clock(fb.copyStarted), w.Rel, fb.standby, clock(w.Closed), bad, m.Material[0]),
					From: fb.copyStarted.Add(-2 * time.Second), To: fb.done.Add(2 * time.Second),
				})
			}
		}
	}
	// Temporary files: where the member's last copy finished.
	open := map[string]bool{} // member → its last copy has not finished
	for _, rec := range c.h.Journal {
		switch rec.Type {
		case events.CopyStarted:
			open[rec.Member] = true
		case events.CopyDone:
			open[rec.Member] = false
		}
	}
	for _, f := range c.h.Material {
		base := path.Base(f.Path)
		if !strings.HasPrefix(base, ".") || !strings.HasSuffix(base, materialcopy.TempSuffix) || open[f.Host] {
			continue
		}
		r.Violations = append(r.Violations, Violation{
			Property: PropMaterial, Member: f.Host, At: c.end,
			Message: fmt.Sprintf("a copy's temporary file %s (%d bytes) is left in %s, although no copy to %s was unfinished at the end", f.Path, f.Size, f.Root, f.Host),
			From:    c.end.Add(-4 * time.Second), To: c.end,
		})
	}
}

// copiedFailback is a failback that ended after a material copy.
type copiedFailback struct {
	member, standby string
	copyStarted     time.Time // the last copy pass began (copy_started)
	done            time.Time // failback_done
}

// copiedFailbacks are the failbacks in the journal that ended
// (failback_done) after a copy_done of their member within the failback
// (since its failback_started), with their last copy pass.
func (c *checker) copiedFailbacks() []copiedFailback {
	var out []copiedFailback
	started := map[string]time.Time{} // member → the last copy_started
	copied := map[string]bool{}       // member → a copy_done since its failback began
	for _, rec := range c.h.Journal {
		switch rec.Type {
		case events.FailbackStarted:
			if rec.Str("step") == "" {
				copied[rec.Member] = false
			}
		case events.CopyStarted:
			started[rec.Member] = rec.At
		case events.CopyDone:
			copied[rec.Member] = true
		case events.FailbackDone:
			if copied[rec.Member] && !started[rec.Member].IsZero() {
				out = append(out, copiedFailback{member: rec.Member, standby: rec.Str("standby"), copyStarted: started[rec.Member], done: rec.At})
			}
			copied[rec.Member] = false
		}
	}
	return out
}

// failbackAfterCopy: a member with failover.copy_material is failed back
// only after its material was copied: within each failback (since its
// failback_started), the last copy record for the member before
// failback_done is a copy_done that found no file still being written.
func (c *checker) failbackAfterCopy(r *Result) {
	since := map[string]time.Time{}
	last := map[string]Record{} // member → its last copy record since the failback began
	for _, rec := range c.h.Journal {
		m, ok := c.h.Site.Members[rec.Member]
		if !ok || !m.CopyMaterial {
			continue
		}
		switch rec.Type {
		case events.FailbackStarted:
			if rec.Str("step") == "" {
				since[rec.Member] = rec.At
				delete(last, rec.Member)
			}
		case events.CopyStarted, events.CopyDone, events.CopyFailed:
			last[rec.Member] = rec
		case events.FailbackDone:
			if rec.At.Before(c.h.Start) || rec.At.After(c.end) {
				continue
			}
			l, ok := last[rec.Member]
			bad := ""
			switch {
			case !ok:
				bad = "no material copy for it since its failback began"
			case l.Type != events.CopyDone:
				bad = fmt.Sprintf("its last copy (%s at %s) had not finished", l.Type, clock(l.At))
			case intOf(l.Fields["still_writing"]) > 0:
				bad = fmt.Sprintf("its last copy (done at %s) left %d file(s) still being written", clock(l.At), intOf(l.Fields["still_writing"]))
			}
			delete(last, rec.Member)
			if bad == "" {
				continue
			}
			from := since[rec.Member]
			if from.IsZero() || from.After(rec.At) {
				from = rec.At.Add(-10 * time.Second)
			}
			r.Violations = append(r.Violations, Violation{
				Property: PropFailbackCopy, Member: rec.Member, At: rec.At,
				Message: fmt.Sprintf("failed back (failback_done from %s) at %s with copy_material, but %s", rec.Str("standby"), clock(rec.At), bad),
				From:    from.Add(-2 * time.Second), To: rec.At.Add(2 * time.Second),
			})
		}
	}
}

// intOf reads a journal number (JSON numbers are float64; a list counts its
// elements).
func intOf(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case int:
		return x
	case int64:
		return int(x)
	case []any:
		return len(x)
	}
	return 0
}
