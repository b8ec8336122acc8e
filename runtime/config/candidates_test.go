package config

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"understudy/sitekey"
)

const electedSite = `site: t
coordinator: [backup, main, w]
members:
  - id: main
    raft: 10.0.0.1:7950
    duties: {outputs: [1]}
  - id: backup
    standby: true
    raft: 10.0.0.2:7950
  - id: w
    witness: true
    raft: 10.0.0.3:7950
  - id: rec
`

func TestCoordinatorIsANameOrAListOfCandidates(t *testing.T) {
	for _, tc := range []struct {
		name, coordinator string
		candidates        []string
		elected           bool
	}{
		{"a name, as before", "coordinator: backup", []string{"backup"}, false},
		{"a quoted name", `coordinator: "backup"`, []string{"backup"}, false},
		{"a list of one", "coordinator: [backup]", []string{"backup"}, false},
		{"a list of three", "coordinator: [backup, main, w]", []string{"backup", "main", "w"}, true},
		{"a block list", "coordinator:\n  - w\n  - backup\n  - main", []string{"w", "backup", "main"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := strings.Replace(electedSite, "coordinator: [backup, main, w]", tc.coordinator, 1)
			if !tc.elected {
				site = strings.ReplaceAll(site, "    witness: true\n", "")
				site = strings.ReplaceAll(site, "    raft: 10.0.0.1:7950\n", "")
				site = strings.ReplaceAll(site, "    raft: 10.0.0.3:7950\n", "")
			}
			s, err := Parse("site.yaml", []byte(site))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Candidates, tc.candidates) || s.Coordinator != tc.candidates[0] {
				t.Errorf("candidates %v, coordinator %q; want %v, %q", s.Candidates, s.Coordinator, tc.candidates, tc.candidates[0])
			}
			if s.Elected() != tc.elected {
				t.Errorf("Elected() = %v, want %v", s.Elected(), tc.elected)
			}
			if s.Bus.BrokerOn != tc.candidates[0] {
				t.Errorf("bus.broker_on defaults to %q, want the first candidate %q", s.Bus.BrokerOn, tc.candidates[0])
			}
			for _, id := range []string{"main", "backup", "w", "rec"} {
				if got, want := s.IsCandidate(id), slices.Contains(tc.candidates, id); got != want {
					t.Errorf("IsCandidate(%s) = %v, want %v", id, got, want)
				}
			}
		})
	}
	// A member id that reads as a number was always a valid coordinator.
	s, err := Parse("site.yaml", []byte("site: t\ncoordinator: 7\nmembers:\n  - id: \"7\"\n"))
	if err != nil {
		t.Fatalf("coordinator: 7: %v", err)
	}
	if s.Coordinator != "7" {
		t.Errorf("coordinator: 7 = %q", s.Coordinator)
	}
}

func TestCoordinatorOfAnotherShapeIsAnErrorAtItsLine(t *testing.T) {
	const hint = "coordinator: name a member, or list the candidates in order of preference: [backup, main, witness]"
	for _, tc := range []struct{ coordinator, want string }{
		{"coordinator: {backup: main}", "site.yaml:2:14: " + hint},
		{"coordinator: [backup, {x: y}, w]", "site.yaml:2:23: " + hint},
		{"coordinator: [backup, [main], w]", "site.yaml:2:23: " + hint},
		{"coordinator: []", "coordinator: name the member whose instance runs the policy, or list the candidates"},
	} {
		_, err := Parse("site.yaml", []byte(strings.Replace(electedSite, "coordinator: [backup, main, w]", tc.coordinator, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  error %v\n  want %q", tc.coordinator, err, tc.want)
		}
	}
}

func TestCandidatesWitnessesAndRaftAreCheckedAtTheirLine(t *testing.T) {
	if _, err := Parse("site.yaml", []byte(electedSite)); err != nil {
		t.Fatalf("the elected site does not load: %v", err)
	}
	// Each case edits the site (pairs of from, to) to make one mistake.
	const noW = "  - id: w\n    witness: true\n    raft: 10.0.0.3:7950\n"
	for _, tc := range []struct {
		name  string
		edits []string
		want  string
	}{
		{"candidate not a member", []string{"[backup, main, w]", "[backup, mian, w]"}, `site.yaml:2:23: coordinator "mian" is not a member (members: main, backup, w, rec)`},
		{"single name not a member", []string{"[backup, main, w]", "bakup"}, `site.yaml:2:14: coordinator "bakup" is not a member`},
		{"candidate twice", []string{"[backup, main, w]", "[backup, main, w, main]"}, "site.yaml:2:32: coordinator: main is listed twice"},
		{"candidate checked by a probe", []string{"[backup, main, w]", "[backup, main, w, rec]", "  - id: rec\n", "  - id: rec\n    lost_after: 3s\n    probe: {tcp: \"10.0.0.9:80\"}\n"}, "site.yaml:2:32: coordinator: rec is checked by a probe and runs no understudy, so it can neither coordinate nor vote"},
		{"candidate without raft", []string{"    raft: 10.0.0.1:7950\n", ""}, "site.yaml:4:5: raft: main is a candidate of the elected coordinator: give the host:port where its raft transport listens"},
		{"raft without a host", []string{"raft: 10.0.0.1:7950", "raft: \":7950\""}, `site.yaml:5:11: raft ":7950": give the host:port the other candidates reach it at, like 10.0.0.2:7950 (a host or address, not only a port`},
		{"raft without a port", []string{"raft: 10.0.0.1:7950", "raft: main.local"}, `site.yaml:5:11: raft "main.local": give the host:port`},
		{"raft port out of range", []string{"raft: 10.0.0.1:7950", "raft: main.local:70000"}, `raft "main.local:70000": the port is a number from 1 to 65535`},
		{"raft port zero", []string{"raft: 10.0.0.1:7950", "raft: main.local:0"}, `raft "main.local:0": the port is a number from 1 to 65535`},
		{"raft on every interface", []string{"raft: 10.0.0.1:7950", "raft: 0.0.0.0:7950"}, `site.yaml:5:11: raft "0.0.0.0:7950": give the host:port the other candidates reach it at, like 10.0.0.2:7950 (not 0.0.0.0`},
		{"raft shared", []string{"raft: 10.0.0.3:7950", "raft: 10.0.0.2:7950"}, "site.yaml:12:11: raft 10.0.0.2:7950 is also backup's: each candidate needs its own raft address"},
		{"raft shared, written otherwise", []string{"raft: 10.0.0.3:7950", "raft: \"[::ffff:10.0.0.2]:07950\""}, "site.yaml:12:11: raft [::ffff:10.0.0.2]:07950 is also backup's"},
		{"raft on a non-candidate", []string{"  - id: rec\n", "  - id: rec\n    raft: 10.0.0.9:7950\n"}, "site.yaml:14:11: raft: only coordinator candidates take part in the election; add rec to coordinator: or remove raft:"},
		{"witness not a candidate", []string{"  - id: rec\n", "  - id: rec\n    witness: true\n"}, "site.yaml:14:14: witness: rec is not one of coordinator:'s candidates, so it does not vote"},
		{"witness with duties", []string{"    witness: true\n", "    witness: true\n    duties: {outputs: [2]}\n"}, "site.yaml:12:14: duties: w is a witness: it only votes in the coordinator's election and has no duties"},
		{"witness a standby", []string{"    witness: true\n", "    witness: true\n    standby: true\n"}, "site.yaml:12:14: standby: w is a witness"},
		{"witness with disks", []string{"    witness: true\n", "    witness: true\n    disks: [/srv/a]\n"}, "site.yaml:12:12: disks: w is a witness"},
		{"witness with hooks", []string{"    witness: true\n", "    witness: true\n    hooks: {takeover: [{exec: [/bin/true]}]}\n"}, "site.yaml:12:13: hooks: w is a witness"},
		{"witness in a pool", []string{"    witness: true\n", "    witness: true\n    pool: p\n"}, "site.yaml:12:11: pool: w is a witness"},
		{"witness with a material server", []string{"    witness: true\n", "    witness: true\n    material_server: 10.0.0.3:7902\n"}, "site.yaml:12:22: material_server: w is a witness"},
		{"witness with failover options", []string{"    witness: true\n", "    witness: true\n    failover: {enabled: true}\n"}, "site.yaml:12:16: failover: w is a witness: it has no duties to fail over"},
		{"witness first of two", []string{"[backup, main, w]", "[w, main]", "    raft: 10.0.0.2:7950\n", ""}, "site.yaml:2:15: coordinator: w is a witness, and two candidates hold no election (the first coordinates alone)"},
		{"witness alone", []string{"[backup, main, w]", "w", "    raft: 10.0.0.1:7950\n", "", "    raft: 10.0.0.2:7950\n", ""}, "site.yaml:2:14: coordinator: w is a witness, which only votes in an election, and one candidate holds none"},
		{"only witnesses", []string{"    duties: {outputs: [1]}\n", "    witness: true\n", "    standby: true\n", "    witness: true\n"}, "site.yaml:2:14: coordinator: every candidate is a witness: at least one must be a member that can coordinate"},
		{"elected without the key", []string{"members:", "auth: {mode: off}\nmembers:"}, "site.yaml:2:14: coordinator: an elected coordinator needs the site key (auth.mode off): nothing without the key may join the election"},
		{"two candidates and no third", []string{"[backup, main, w]", "[backup, main]", noW, "  - id: w\n    raft: 10.0.0.3:7950\n"}, "site.yaml:11:11: raft: only coordinator candidates take part in the election; add w to coordinator:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := electedSite
			for i := 0; i < len(tc.edits); i += 2 {
				if !strings.Contains(site, tc.edits[i]) {
					t.Fatalf("fixture lacks %q", tc.edits[i])
				}
				site = strings.Replace(site, tc.edits[i], tc.edits[i+1], 1)
			}
			_, err := Parse("site.yaml", []byte(site))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
			if len(errs) != 1 {
				t.Errorf("%d errors reported for one mistake:\n%v", len(errs), err)
			}
		})
	}
}

func TestEveryCandidateMistakeIsReportedAtOnce(t *testing.T) {
	const site = `site: t
coordinator: [a, b, w]
members:
  - id: a
  - id: b
    raft: "b:7950"
  - id: w
    witness: true
    standby: true
    raft: "b:7950"
  - id: x
    witness: true
`
	_, err := Parse("site.yaml", []byte(site))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T %v is not Errors", err, err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		"site.yaml:4:5: raft: a is a candidate of the elected coordinator",
		"site.yaml:9:14: standby: w is a witness",
		"site.yaml:10:11: raft b:7950 is also b's",
		"site.yaml:12:14: witness: x is not one of coordinator:'s candidates",
	}
	if len(got) != len(want) {
		t.Fatalf("%d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d\n  %s\nwant\n  %s…", i, got[i], want[i])
		}
	}
}

func TestAWitnessIsNeverProtectedNorCheckedForCover(t *testing.T) {
	s, err := Parse("site.yaml", []byte(strings.Replace(electedSite, "members:", "failover: {enabled: true}\nmembers:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := s.Member("w"); w.Settings.Enabled {
		t.Error("a witness has failover enabled: it has no duties to fail over")
	}
	for _, e := range s.Commission() {
		if strings.Contains(e.Msg, " w ") || strings.Contains(e.Msg, "w (") {
			t.Errorf("commissioning reviews the witness: %v", e)
		}
	}
}

func TestTwoCandidatesKeepTheSingleCoordinatorWithAWarning(t *testing.T) {
	site := strings.Replace(electedSite, "[backup, main, w]", "[backup, main]", 1)
	site = strings.Replace(site, "  - id: w\n    witness: true\n    raft: 10.0.0.3:7950\n", "", 1)
	s, err := Parse("site.yaml", []byte(site))
	if err != nil {
		t.Fatal(err)
	}
	if s.Elected() || s.Coordinator != "backup" || !s.IsCandidate("main") {
		t.Errorf("two candidates: elected %v, coordinator %s, main a candidate %v", s.Elected(), s.Coordinator, s.IsCandidate("main"))
	}
	var warned bool
	for _, e := range s.Commission() {
		if strings.Contains(e.Error(), "site.yaml:2:14: warning: coordinator: two candidates without a third would lose every decision when either machine dies (a raft group of two needs both); backup coordinates alone as before. Add a witness") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about two candidates: %v", s.Commission())
	}
	// Without a key a two-candidate site is fine: it elects nothing.
	if _, err := Parse("site.yaml", []byte(strings.Replace(site, "members:", "auth: {mode: off}\nmembers:", 1))); err != nil {
		t.Errorf("two candidates, auth off: %v", err)
	}
}

func TestCandidatesHashFollowsTheListAndItsAddresses(t *testing.T) {
	hash := func(site string) string {
		t.Helper()
		s, err := Parse("site.yaml", []byte(site))
		if err != nil {
			t.Fatal(err)
		}
		return s.CandidatesHash()
	}
	h := hash(electedSite)
	if len(h) != 16 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Fatalf("hash %q: want 16 hex digits", h)
	}
	if again := hash(electedSite); again != h {
		t.Errorf("the same list hashes to %s and %s", h, again)
	}
	// Members that are not candidates do not count.
	if other := hash(strings.Replace(electedSite, "  - id: rec\n", "  - id: rec\n    priority: 3\n  - id: rec-2\n", 1)); other != h {
		t.Errorf("a non-candidate changed the hash: %s, %s", h, other)
	}
	for _, change := range [][2]string{
		{"[backup, main, w]", "[main, backup, w]"},
		{"raft: 10.0.0.3:7950", "raft: 10.0.0.4:7950"},
		{"[backup, main, w]", "[backup, main, w, rec]\n"},
	} {
		site := strings.Replace(electedSite, change[0], change[1], 1)
		if change[1] == "[backup, main, w, rec]\n" {
			site = strings.Replace(site, "  - id: rec\n", "  - id: rec\n    raft: 10.0.0.4:7950\n", 1)
		}
		if other := hash(site); other == h {
			t.Errorf("%s → %s: the hash stays %s", change[0], change[1], h)
		}
	}
}

func TestEveryCandidateOfAnElectedSiteGetsTheCoordinatorsBusRights(t *testing.T) {
	k, err := sitekey.NewKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := sitekey.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(site string) map[string][]string {
		t.Helper()
		s, err := Parse("site.yaml", []byte(site))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, u := range s.InstanceAccounts(ring) {
			out[strings.TrimPrefix(u.Username, "understudy-")] = u.Publish
		}
		return out
	}
	tree := []string{"understudy/t/#"}
	p := publish(electedSite)
	for _, id := range []string{"backup", "main", "w"} {
		if !slices.Equal(p[id], tree) {
			t.Errorf("candidate %s publishes %v, want the coordinator's %v", id, p[id], tree)
		}
	}
	if slices.Contains(p["rec"], tree[0]) {
		t.Errorf("rec, no candidate, publishes %v", p["rec"])
	}
	// Two candidates elect nothing: the first alone coordinates.
	site := strings.Replace(electedSite, "[backup, main, w]", "[backup, main]", 1)
	site = strings.Replace(site, "  - id: w\n    witness: true\n    raft: 10.0.0.3:7950\n", "", 1)
	p = publish(site)
	if !slices.Equal(p["backup"], tree) || slices.Contains(p["main"], tree[0]) {
		t.Errorf("two candidates: backup publishes %v, main %v", p["backup"], p["main"])
	}
}
