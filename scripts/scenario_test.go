package scripts_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
	"understudy/runtime/store"
)

// scenario runs a shipped policy on a site on the virtual clock, with every
// member's instance simulated, and reads what happened from the records.
type scenario struct {
	t     *testing.T
	h     *sim.Harness
	site  *config.Site
	store *store.Store
}

// startScenario writes siteYAML (a format string whose first verb is the
// policy's path, followed by args) and starts the site with every member up.
func startScenario(t *testing.T, policy, siteYAML string, args ...any) *scenario {
	t.Helper()
	abs, err := filepath.Abs(policy)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, siteYAML, append([]any{abs}, args...)...), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := sim.New(cfg, sim.Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	recordsAreRegistered(t, h)
	s := &scenario{t: t, h: h, site: cfg, store: st}
	for _, id := range cfg.MemberIDs() {
		h.Up(id)
	}
	h.Advance(time.Second)
	s.noPolicyErrors(0)
	return s
}

// restart kills and restarts the coordinator on the same store.
func (s *scenario) restart() {
	s.t.Helper()
	if err := s.h.Restart(context.Background()); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scenario) mark() int { return len(s.h.Records()) }

// events lists "type member" for records of the given types from mark on.
func (s *scenario) events(mark int, types ...string) []string {
	var out []string
	for _, rec := range s.h.Since(mark) {
		if slices.Contains(types, rec.Type) {
			out = append(out, rec.Type+" "+rec.Member)
		}
	}
	return out
}

func (s *scenario) has(mark int, typ, member string) bool { return s.count(mark, typ, member) > 0 }

func (s *scenario) count(mark int, typ, member string) int {
	n := 0
	for _, rec := range s.h.Since(mark) {
		if rec.Type == typ && rec.Member == member {
			n++
		}
	}
	return n
}

func (s *scenario) dump(mark int) string {
	var b strings.Builder
	for _, rec := range s.h.Since(mark) {
		fmt.Fprintf(&b, "  %s %s %s %v\n", rec.At.Format("Jan 2 15:04:05.000"), rec.Type, rec.Member, rec.Fields)
	}
	return b.String()
}

func (s *scenario) noPolicyErrors(mark int) {
	s.t.Helper()
	if i := slices.IndexFunc(s.h.Since(mark), func(r engine.Record) bool { return r.Type == "policy_error" }); i >= 0 {
		s.t.Fatalf("policy error: %v\n%s", s.h.Since(mark)[i].Fields, s.dump(mark))
	}
}

// coveredBy returns who covers member and in which phase ("" if nobody).
func (s *scenario) coveredBy(member string) (string, string) {
	if c, ok := s.h.Coordinator.Takeover().Covered(member); ok {
		return c.Standby, c.Phase
	}
	return "", ""
}

// ran lists "verb member" of the commands a member's instance carried out.
func (s *scenario) ran(id string) []string {
	var out []string
	for _, c := range s.h.Ran(id) {
		out = append(out, fmt.Sprintf("%s %v", c.Verb, c.Args["member"]))
	}
	return out
}
