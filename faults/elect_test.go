package faults

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/events"
	"understudy/runtime/config"
)

// electWitness is a history of the elected two-machine site with a witness
// (faults/testdata/elect-witness) with no faults: main (protected, outputs
// 1 and 2 on its inputs 1 and 2), backup (the standby, on inputs 3 and 4)
// and the witness w are the candidates, each with a broker; main leads
// term 2 from before the start and routed its outputs then. 60 s long.
func electWitness() *History {
	h := managerBackup()
	h.Site.Name, h.Site.Coordinator = "elect-witness", "main"
	h.Site.Candidates, h.Site.Witnesses = []string{"main", "backup", "w"}, []string{"w"}
	h.Site.BrokerHosts = []string{"main", "backup", "w"}
	h.Site.Members["w"] = MemberFact{ID: "w", Instance: true, Interval: 250 * time.Millisecond, LostAfter: time.Second}
	h.Journal = []Record{recBy("main", -2, events.PolicyLoaded, ""), recBy("main", -1.99, events.CoordinatorElected, "main", "term", 2.0)}
	h.Applied = []RouteApplied{applied("main", -1.5, 1, 1), applied("main", -1.5, 2, 2)}
	return h
}

// recBy is a record of src's journal.
func recBy(src string, s float64, typ, member string, kv ...any) Record {
	r := Record{At: at(s), Type: typ, Member: member, Source: src, Fields: map[string]any{}}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Fields[kv[i].(string)] = kv[i+1]
	}
	return r
}

// hostAddrs are the test hosts' addresses in the hand-made histories.
var hostAddrs = map[string]string{"main": "198.18.0.1", "backup": "198.18.0.2", "w": "198.18.0.3"}

// applied is a route the switcher took over a connection from host.
func applied(host string, s float64, output, input int) RouteApplied {
	return RouteApplied{At: at(s), Driver: "router", Output: output, Input: input, Remote: hostAddrs[host] + ":40000", Host: host}
}

// leaderKilled: main, which leads, is killed at +10 s and not restarted;
// backup is elected (term 3), waits out the lease, coordinates from +11.5 s,
// takes main over and routes its outputs to itself.
func leaderKilled() *History {
	h := electWitness()
	h.Ops = []Op{op(OpKill, "main", 10, 0)}
	h.Journal = append(h.Journal,
		recBy("backup", 11.49, events.PolicyLoaded, ""),
		recBy("backup", 11.495, events.MemberLost, "main", "reason", "connection dropped (Last Will)"),
		recBy("backup", 11.496, events.TakeoverStarted, "main", "standby", "backup"),
		recBy("backup", 11.5, events.CoordinatorElected, "backup", "term", 3.0),
		recBy("backup", 11.6, events.TakeoverDone, "main", "standby", "backup"),
	)
	h.Applied = append(h.Applied, applied("backup", 11.52, 1, 3), applied("backup", 11.53, 2, 4))
	h.Routing = append(h.Routing, routes(11.54, 3, 4, 3, 4))
	return h
}

// The leader killed: its own duties are covered by the next leader within
// the election's bound, every route came from the leader of its time, and
// the first routes of the new leader, in the same step as its
// coordinator_elected but before it, are its term's.
func TestOverlappingTermsHold(t *testing.T) {
	res := want(t, leaderKilled())
	if res.Terms != 2 || res.Routes != 4 {
		t.Errorf("judged %d terms and %d routes, want 2 and 4", res.Terms, res.Routes)
	}
	if len(res.Covers) != 1 || !res.Covers[0].OK {
		t.Errorf("covers %+v, want main's outage covered", res.Covers)
	}
}

// A leader stopped past its lease wakes and routes after the new leader
// began acting: two leaders acting at once, from the switcher's own record.
func TestOverlappingTermsOldLeaderRoutesAfterTheNewOne(t *testing.T) {
	h := leaderKilled()
	h.End = at(30)
	h.Ops = []Op{op(OpStop, "main", 10, 20)}
	h.Applied = append(h.Applied, applied("main", 20.01, 1, 1))
	h.Journal = append(h.Journal, recBy("main", 20.02, events.CoordinatorLost, "main", "term", 2.0, "reason", "another candidate leads"))
	res := want(t, h, PropTerms)
	if len(res.Violations) == 1 && !bytesContain(res.Violations[0].Message, "after backup began acting in the newer term 3") {
		t.Errorf("violation %q does not say which leader acted first", res.Violations[0].Message)
	}
	// The same route before the new leader began is the old leader's own.
	h.Applied[len(h.Applied)-1] = applied("main", 10.5, 1, 1)
	want(t, h)
}

// Routes from a candidate that never led (the witness), or after its term
// ended, and two candidates elected in one term, are violations.
func TestOverlappingTermsOutsideATerm(t *testing.T) {
	h := leaderKilled()
	h.Applied = append(h.Applied, applied("w", 30, 1, 3))
	want(t, h, PropTerms)

	h = leaderKilled()
	h.Applied = append(h.Applied, applied("main", 10.5, 1, 1)) // killed at +10
	want(t, h, PropTerms)

	h = leaderKilled()
	h.Journal = append(h.Journal, recBy("w", 12, events.CoordinatorElected, "w", "term", 3.0))
	want(t, h, PropTerms)
}

// The same action done by two leaders is done twice.
func TestAtMostOnceAcrossLeaders(t *testing.T) {
	h := leaderKilled()
	h.Journal = append(h.Journal,
		recBy("main", 9, events.ActionDone, "", "id", "main-1.2.1", "verb", "route"),
		recBy("backup", 11.7, events.ActionDone, "", "id", "main-1.2.1", "verb", "route"),
	)
	res := want(t, h, PropAtMostOnce)
	if !bytesContain(res.Violations[0].Message, "by main, then by backup") {
		t.Errorf("violation %q does not name both leaders", res.Violations[0].Message)
	}
}

// The leader's own duties must be covered after the election, not when it
// comes back: no new leader and no takeover is a violation within the
// election's bound, while a majority of the candidates could elect one.
func TestCoverageOfTheLeaderDoesNotWaitForIt(t *testing.T) {
	h := electWitness()
	h.Ops = []Op{op(OpKill, "main", 10, 0)}
	res := want(t, h, PropCoverage)
	b := Bounds{}.withDefaults(h.Site)
	if dl := res.Covers[0].Deadline; dl.After(at(10).Add(b.Elect + 2*time.Second + b.Detect + b.Cover)) {
		t.Errorf("bound %s: later than the election, detect and cover after the kill", dl.Sub(t0))
	}
	// With the witness gone too, no majority is left: nothing is owed.
	h.Ops = append(h.Ops, op(OpKill, "w", 9, 0))
	want(t, h)
}

// A member_lost is judged from the candidate that recorded it: main cut off
// from the other candidates is not heard by backup (a loss, not a false
// one), while the witness, heard all along, is not lost.
func TestFalseLossJudgedByTheCandidateThatRecordedIt(t *testing.T) {
	h := leaderKilled()
	h.Ops = []Op{op(OpCandidateCut, "main", 10, 0)}
	h.Ops[0].Member = "main"
	want(t, h)
	h.Journal = append(h.Journal, recBy("backup", 30, events.MemberLost, "w", "reason", "no heartbeat for 1s"))
	want(t, h, PropFalseLoss)
}

func bytesContain(s, sub string) bool { return bytes.Contains([]byte(s), []byte(sub)) }

// The example sites' policy is the shipped manager-backup policy.
func TestTheElectedSitesRunTheShippedPolicy(t *testing.T) {
	shipped, err := os.ReadFile("../scripts/manager-backup/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("testdata/elect/policy.lua")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, shipped) {
		t.Errorf("testdata/elect/policy.lua is not scripts/manager-backup/policy.lua: copy it again")
	}
}

// electedSites are the example sites whose coordinator is elected, in
// testdata/elect (they share the policy).
var electedSites = []string{"elect-witness", "elect-three"}

// electedSiteFile is the site.yaml of example site name.
func electedSiteFile(name string) string {
	return filepath.Join("testdata", "elect", strings.TrimPrefix(name, "elect-")+".yaml")
}

// An elected site plans with each candidate's raft transport on its own
// host and, with the embedded broker, a broker on every candidate's host
// (no bus.url): every instance is connected to all of them. With mosquitto
// the candidates embed none and every instance uses it. Nothing names an
// address but the test hosts'.
func TestPlanElectedSites(t *testing.T) {
	for _, name := range electedSites {
		for _, broker := range []string{BrokerEmbedded, BrokerMosquitto} {
			t.Run(name+"/"+broker, func(t *testing.T) {
				p, err := NewPlan(electedSiteFile(name), t.TempDir(), builtin.Registry())
				if err != nil {
					t.Fatal(err)
				}
				p.Broker = broker
				addrs := map[string]string{}
				for _, s := range p.Switchers {
					addrs[s.Driver] = s.Listen
				}
				if err := p.Write(addrs); err != nil {
					t.Fatal(err)
				}
				if !p.Elected() || len(p.Candidates()) != 3 {
					t.Fatalf("candidates %v, want the site's three", p.Candidates())
				}
				for _, h := range p.Hosts {
					data, err := os.ReadFile(h.SiteFile)
					if err != nil {
						t.Fatal(err)
					}
					if strings.Contains(string(data), "192.168.") {
						t.Errorf("%s: the rewritten site still names a site address:\n%s", h.Member, data)
					}
					s, err := config.Load(h.SiteFile)
					if err != nil {
						t.Fatal(err)
					}
					if !s.Elected() {
						t.Fatalf("%s: the rewritten site does not elect its coordinator", h.Member)
					}
					for _, c := range p.Candidates() {
						m, _ := s.Member(c)
						ch, _ := p.Host(c)
						if m.Raft != ch.Addr+":7950" {
							t.Errorf("%s: candidate %s's raft %q, want on its host %s", h.Member, c, m.Raft, ch.Addr)
						}
						want := ch.Addr + ":1883"
						if broker == BrokerMosquitto {
							want = ""
						}
						if m.Broker != want {
							t.Errorf("%s: candidate %s's broker %q, want %q", h.Member, c, m.Broker, want)
						}
					}
					switch {
					case broker == BrokerMosquitto && s.Bus.URL != "tcp://"+p.BrokerAddr()+":1883":
						t.Errorf("%s: bus.url %q, want mosquitto's", h.Member, s.Bus.URL)
					case broker == BrokerEmbedded && (s.Bus.URL != "" || len(s.CandidateBrokers()) != 3):
						t.Errorf("%s: bus.url %q and %d candidate brokers, want every candidate's broker", h.Member, s.Bus.URL, len(s.CandidateBrokers()))
					}
				}
				f := p.Facts()
				if !f.Elected() || len(f.Witnesses) != 1 || f.Witnesses[0] != "w" {
					t.Errorf("facts: candidates %v, witnesses %v", f.Candidates, f.Witnesses)
				}
				if want := p.Candidates(); broker == BrokerMosquitto {
					if !slices.Equal(f.BrokerHosts, []string{BrokerHost}) {
						t.Errorf("facts: broker hosts %v, want the broker host", f.BrokerHosts)
					}
				} else if !slices.Equal(f.BrokerHosts, want) {
					t.Errorf("facts: broker hosts %v, want the candidates' %v", f.BrokerHosts, want)
				}
			})
		}
	}
}

// The faults aimed at the leader come from a stream of their own: a seed
// draws the same other faults with or without them, and they name the
// leader (found when they land), the witness or a candidate.
func TestLeaderFaultsLeaveTheRestAlone(t *testing.T) {
	base := Target{Members: []string{"main", "backup", "w"}, Candidates: []string{"main", "backup", "w"}, Witnesses: []string{"w"},
		Standbys: []string{"backup"}, Switchers: []string{"router"}, LostAfter: time.Second, Protected: []string{"main"}, Outage: true, Aim: []string{PhaseTakeover}}
	with := base
	with.LeaderFaults = true
	kinds := map[string]int{}
	for seed := uint64(0); seed < 300; seed++ {
		plain, more := NewSchedule(seed, base, time.Minute), NewSchedule(seed, with, time.Minute)
		var rest []Op
		for _, o := range more.Ops {
			o.ID = 0
			switch {
			case o.Leader && o.Aim == "":
				kinds[string(o.Kind)+" leader"]++
				if o.Member != TheLeader {
					t.Fatalf("seed %d: %s names %s before it lands", seed, o, o.Member)
				}
			case o.Member == "w" && (o.Kind == OpKill || o.Kind == OpStop) && !slices.ContainsFunc(plain.Ops, func(x Op) bool { return x.Member == "w" && x.At == o.At }):
				kinds["witness"]++
			case o.Kind == OpClockStep && !slices.ContainsFunc(plain.Ops, func(x Op) bool { return x.Kind == OpClockStep && x.At == o.At }):
				kinds["clock_step"]++
			default:
				rest = append(rest, o)
			}
		}
		for i := range plain.Ops {
			plain.Ops[i].ID = 0
		}
		if !slices.EqualFunc(rest, plain.Ops, func(a, b Op) bool { return a.String() == b.String() }) {
			t.Fatalf("seed %d: the other faults changed with the leader faults:\n%s\n%s", seed, plain, more)
		}
		for _, o := range more.Ops {
			if o.Aim != "" && (o.Kind == OpKill || o.Kind == OpStop) && o.Member != "backup" && o.Member != TheLeader {
				t.Fatalf("seed %d: aimed %s at %s, neither the leader nor a standby", seed, o, o.Member)
			}
		}
		if !strings.Contains(more.Flags(), "--leader-faults=true") {
			t.Fatalf("seed %d: flags %q do not draw it again", seed, more.Flags())
		}
	}
	for _, k := range []string{"kill leader", "stop leader", "candidate_cut leader", "witness", "clock_step"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among 300 seeds (%v)", k, kinds)
		}
	}
}

// A candidate killed as its coordinator began, before it recorded
// coordinator_elected, had a term all the same (the number its log said it
// leads in); started again and elected, its routes are its new term's.
func TestATermKilledBeforeItWasElected(t *testing.T) {
	h := electWitness()
	h.Ops = []Op{op(OpKill, "main", 10, 0), op(OpKill, "backup", 11.495, 12.5)}
	h.Logs = []LogLine{{At: at(11), Member: "backup", Msg: logLeads, Fields: map[string]any{"term": 3.0}}}
	h.Journal = append(h.Journal,
		recBy("backup", 11.49, events.PolicyLoaded, ""),
		recBy("backup", 11.491, events.MemberLost, "main", "reason", "connection dropped (Last Will)"),
		recBy("backup", 13.0, events.PolicyLoaded, ""),
		recBy("backup", 13.01, events.CoordinatorElected, "backup", "term", 4.0),
		recBy("backup", 13.1, events.TakeoverDone, "main", "standby", "backup"),
	)
	h.Applied = append(h.Applied, applied("backup", 13.02, 1, 3), applied("backup", 13.03, 2, 4))
	h.Routing = append(h.Routing, routes(13.04, 3, 4, 3, 4))
	h.Sort()
	c := &checker{h: h, b: Bounds{}.withDefaults(h.Site), end: h.End, elected: true}
	var got []string
	for _, x := range c.terms() {
		got = append(got, fmt.Sprintf("%s %d %s–%s", x.Member, x.Term, x.From.Sub(t0), x.To.Sub(t0)))
	}
	if want := []string{"main 2 -2s–10s", "backup 3 11.49s–11.495s", "backup 4 13s–1m0s"}; !slices.Equal(got, want) {
		t.Fatalf("terms %q, want %q", got, want)
	}
	want(t, h)
	// A route from backup while it was down between its terms is none of
	// them.
	h.Applied = append(h.Applied, applied("backup", 12, 1, 3))
	want(t, h, PropTerms)
}
