package inbound_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"understudy/discovery/bus"
	"understudy/runtime/inbound"
	"understudy/sitekey"
)

func newRing(t *testing.T) *sitekey.Ring {
	t.Helper()
	k, err := sitekey.NewKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := sitekey.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sealed is payload as instance from would send it on topic.
func sealed(t *testing.T, ring *sitekey.Ring, topic, payload string, from string, conn, seq uint64) string {
	t.Helper()
	p, err := bus.Seal(ring, topic, []byte(payload), bus.Stamp{From: from, Boot: 5, Conn: conn, Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	return string(p)
}

func isBackup(id string) bool { return id == "backup" }

// isMember: the members of the test site.
func isMember(id string) bool { return id == "main" || id == "backup" }

// A Last Will forged from a member's public
// heartbeat declared a live main lost, and forged (or replayed) heartbeats
// kept a dead main alive. With the site key required, neither works.
func TestForgedAndReplayedLivenessIsRefused(t *testing.T) {
	ring := newRing(t)
	in := newInstance(t, "backup", inbound.NewAuth(ring, true, isBackup, isMember, nil))
	hbTopic, prTopic := in.topics.Heartbeat("main"), in.topics.Presence("main")
	hb1 := sealed(t, ring, hbTopic, heartbeat("main", 1), "main", 1, 2)
	in.send(prTopic, sealed(t, ring, prTopic, `{"member":"main","state":"online","boot":"b1","conn":1}`, "main", 1, 1), true)
	in.send(hbTopic, hb1, false)
	if st := in.state("main"); st != "alive" {
		t.Fatalf("main is %s after its signed heartbeat", st)
	}
	goneOfMain := `{"member":"main","state":"gone","boot":"b1","conn":1}`
	other := newRing(t)
	for name, payload := range map[string]string{
		"unsigned (boot and conn copied from its heartbeat)": goneOfMain,
		"signed with another site's key":                     sealed(t, other, prTopic, goneOfMain, "main", 1, bus.WillSeq),
		"signed by backup on main's topic":                   sealed(t, ring, prTopic, goneOfMain, "backup", 1, bus.WillSeq),
	} {
		in.send(prTopic, payload, false)
		if st := in.state("main"); st != "alive" {
			t.Fatalf("%s: a forged Last Will made main %s", name, st)
		}
	}
	counts := in.drops.Counts()
	if counts["unauthenticated"] != 1 || counts["bad_MAC"] != 1 || counts["wrong_sender"] != 1 {
		t.Errorf("drops %v: want one unauthenticated, one bad_MAC, one wrong_sender", counts)
	}
	// Its real Will is taken, once.
	will := sealed(t, ring, prTopic, goneOfMain, "main", 1, bus.WillSeq)
	in.send(prTopic, will, false)
	if st := in.state("main"); st != "lost" {
		t.Fatalf("main is %s after its real Last Will", st)
	}
	// Replaying its old heartbeat (live, or kept retained by the broker),
	// or its Will, changes nothing.
	in.send(hbTopic, hb1, false)
	in.send(hbTopic, hb1, true)
	in.send(prTopic, will, false)
	if st := in.state("main"); st != "lost" {
		t.Fatalf("a replayed heartbeat made the dead main %s", st)
	}
	if got := in.drops.Counts()["stale_or_replayed"]; got != 3 {
		t.Errorf("stale_or_replayed = %d, want 3 (%v)", got, in.drops.Counts())
	}
}

// A member obeys commands only from an instance that may coordinate, and
// each command once.
func TestCommandsComeOnlyFromTheCoordinatorAndOnce(t *testing.T) {
	ring := newRing(t)
	in := newInstance(t, "main", inbound.NewAuth(ring, true, isBackup, isMember, nil))
	topic := in.topics.Command("main")
	cmd := `{"id":"c1","epoch":1,"from":"backup","verb":"release"}`
	good := sealed(t, ring, topic, cmd, "backup", 1, 7)
	in.send(topic, cmd, false)                                       // unsigned
	in.send(topic, sealed(t, ring, topic, cmd, "main", 1, 1), false) // signed by a member that does not coordinate
	in.send(topic, good, false)
	in.send(topic, good, false) // replayed
	if want := []string{"command " + cmd}; fmt.Sprint(in.got) != fmt.Sprint(want) {
		t.Errorf("the agent got %q, want %q", in.got, want)
	}
	c := in.drops.Counts()
	if c["unauthenticated"] != 1 || c["wrong_sender"] != 1 || c["stale_or_replayed"] != 1 {
		t.Errorf("drops %v", c)
	}
}

// Operator commands cannot carry a code (show control has no site key):
// they pass the table as before, their trust resting on the broker's ACLs.
func TestOperatorCommandsNeedNoCode(t *testing.T) {
	in := newInstance(t, "backup", inbound.NewAuth(newRing(t), true, isBackup, isMember, nil))
	in.send(in.topics.Control("mode"), `{"mode":"manual"}`, false)
	if len(in.got) != 1 {
		t.Errorf("the operator command did not arrive: %q (drops %v)", in.got, in.drops.Counts())
	}
}

// Permissive (an upgrade under way): messages without a code are taken and
// counted; a wrong code is refused all the same.
func TestPermissiveTakesUnsignedMessagesAndCountsThem(t *testing.T) {
	ring := newRing(t)
	auth := inbound.NewAuth(ring, false, isBackup, isMember, nil)
	in := newInstance(t, "backup", auth)
	hbTopic := in.topics.Heartbeat("main")
	in.send(hbTopic, heartbeat("main", 1), false)
	if st := in.state("main"); st != "alive" || auth.Unsigned() != 1 {
		t.Fatalf("main is %s, unsigned %d: an old instance's heartbeat was not taken", st, auth.Unsigned())
	}
	in.send(in.topics.Presence("main"), sealed(t, newRing(t), in.topics.Presence("main"), `{"member":"main","state":"gone","boot":"b1","conn":1}`, "main", 1, bus.WillSeq), false)
	if st := in.state("main"); st != "alive" || in.drops.Counts()["bad_MAC"] != 1 {
		t.Errorf("a wrong code was taken in permissive mode: main %s, drops %v", st, in.drops.Counts())
	}
}

// A standby's report of whom it covers rebuilds the coordinator's coverage
// after a lost state file: it is taken only signed, by that standby.
func TestACoverageReportIsTakenOnlyFromItsStandby(t *testing.T) {
	ring := newRing(t)
	in := newInstance(t, "backup", inbound.NewAuth(ring, true, isBackup, isMember, nil))
	topic := in.topics.Covering("backup")
	report := `{"member":"backup","covering":[{"member":"main","since":"2026-01-01T00:00:00Z"}]}`
	in.send(topic, report, true)                                       // unsigned
	in.send(topic, sealed(t, ring, topic, report, "main", 1, 1), true) // main speaking for backup
	c := in.drops.Counts()
	if c["unauthenticated"] != 1 || c["wrong_sender"] != 1 {
		t.Errorf("drops %v: want one unauthenticated and one wrong_sender", c)
	}
	before := in.drops.Total()
	in.send(topic, sealed(t, ring, topic, report, "backup", 1, 2), true)
	if in.drops.Total() != before {
		t.Errorf("backup's own signed report was dropped: %v", in.drops.Counts())
	}
}

// Permissive (an upgrade under way) takes unsigned messages only from
// members not yet upgraded: once main has been heard with a good code, an
// anonymous client that republishes main's presence without the auth
// member, as gone, is refused, and so is an unsigned heartbeat. A member
// that still sends unsigned is taken as before; a name that is not a
// member of the site is not remembered (at most the site's members are),
// only counted.
func TestPermissiveRefusesUnsignedMessagesOfAMemberHeardSigned(t *testing.T) {
	ring := newRing(t)
	auth := inbound.NewAuth(ring, false, isBackup, isMember, nil)
	in := newInstance(t, "backup", auth)
	hbTopic, prTopic := in.topics.Heartbeat("main"), in.topics.Presence("main")
	// main, not upgraded yet: its unsigned heartbeat is taken.
	in.send(hbTopic, heartbeat("main", 1), false)
	if st := in.state("main"); st != "alive" || auth.Unsigned() != 1 {
		t.Fatalf("main is %s, unsigned %d: an old instance's heartbeat was not taken", st, auth.Unsigned())
	}
	// main restarts with the new release: it signs.
	in.send(prTopic, sealed(t, ring, prTopic, `{"member":"main","state":"online","boot":"b2","conn":1}`, "main", 1, 1), true)
	in.send(hbTopic, sealed(t, ring, hbTopic, `{"member":"main","boot":"b2","conn":1,"seq":1,"interval_ms":100}`, "main", 1, 2), false)
	if st := in.state("main"); st != "alive" {
		t.Fatalf("main is %s after its signed heartbeat", st)
	}
	// The forgery: its presence as gone, boot and conn copied, unsigned.
	gone := `{"member":"main","state":"gone","boot":"b2","conn":1}`
	in.send(prTopic, gone, false)
	if st := in.state("main"); st != "alive" {
		t.Fatalf("an unsigned presence of main, heard signed before, made it %s", st)
	}
	in.send(hbTopic, `{"member":"main","boot":"b2","conn":1,"seq":9,"interval_ms":100}`, false)
	if got := in.drops.Counts()["unauthenticated"]; got != 2 || auth.Unsigned() != 1 {
		t.Errorf("unauthenticated drops %d, unsigned taken %d: want 2 and 1 (%v)", got, auth.Unsigned(), in.drops.Counts())
	}
	// A member not heard signed is still taken unsigned.
	in.send(in.topics.Health("backup"), `{"member":"backup","broken":false,"disks":[]}`, true)
	if auth.Unsigned() != 2 {
		t.Errorf("unsigned taken %d: backup, not heard signed, was refused", auth.Unsigned())
	}
	// A name that is not a member is not remembered when it signs: its
	// unsigned messages are taken (and counted), as for any sender not
	// heard signed, and memory stays bounded by the site's members.
	ghost := in.topics.Heartbeat("ghost")
	in.send(ghost, sealed(t, ring, ghost, heartbeat("ghost", 1), "ghost", 1, 1), false)
	in.send(ghost, heartbeat("ghost", 2), false)
	if got := in.drops.Counts()["unauthenticated"]; got != 2 || auth.Unsigned() != 3 {
		t.Errorf("unauthenticated drops %d, unsigned taken %d: want 2 and 3 (%v)", got, auth.Unsigned(), in.drops.Counts())
	}
	// Its real Will, signed, is taken.
	in.send(prTopic, sealed(t, ring, prTopic, gone, "main", 1, bus.WillSeq), false)
	if st := in.state("main"); st != "lost" {
		t.Fatalf("main is %s after its signed Last Will", st)
	}
}

// On a member's instance in permissive mode, commands without a code are
// taken while the coordinator has not been heard signing (an old
// coordinator), and refused once it has.
func TestPermissiveRefusesUnsignedCommandsOnceTheCoordinatorSigns(t *testing.T) {
	ring := newRing(t)
	in := newInstance(t, "main", inbound.NewAuth(ring, false, isBackup, isMember, nil))
	topic := in.topics.Command("main")
	old := `{"id":"c1","epoch":1,"from":"backup","verb":"release"}`
	in.send(topic, old, false)
	signed := `{"id":"c2","epoch":2,"from":"backup","verb":"release"}`
	in.send(topic, sealed(t, ring, topic, signed, "backup", 1, 1), false)
	forged := `{"id":"c3","epoch":3,"from":"backup","verb":"takeover"}`
	in.send(topic, forged, false)
	if want := []string{"command " + old, "command " + signed}; fmt.Sprint(in.got) != fmt.Sprint(want) {
		t.Errorf("the agent got %q, want %q", in.got, want)
	}
	if got := in.drops.Counts()["unauthenticated"]; got != 1 {
		t.Errorf("unauthenticated drops %d, want 1 (%v)", got, in.drops.Counts())
	}
}

// A command given to a member's instance (its local API) is passed on to
// the coordinator over the bus, signed like everything the instance sends.
// The coordinator opens it: a good code takes the auth member off (the
// policy and the records never see it) and says which instance passed it
// on; a replay of it is refused; a bad code is a forgery (an operator
// cannot sign) and dropped as bad_MAC; a command without one is show
// control's, taken as before.
func TestAnOperatorCommandPassedOnByAnInstanceIsOpened(t *testing.T) {
	ring := newRing(t)
	in := newInstance(t, "backup", inbound.NewAuth(ring, true, isBackup, isMember, nil))
	topic := in.topics.Control("mode")
	cmd := `{"mode":"auto","request_id":"r1","reply_to":"understudy/hall/reply/main/r1"}`
	passedOn := sealed(t, ring, topic, cmd, "main", 1, 3)
	in.send(topic, passedOn, false)
	in.send(topic, passedOn, false) // replayed
	forged := sealed(t, newRing(t), topic, cmd, "main", 1, 4)
	in.send(topic, forged, false)
	in.send(topic, `{"mode":"manual"}`, false) // show control's
	if len(in.controls) != 2 {
		t.Fatalf("%d commands reached the coordinator, want 2 (drops %v)", len(in.controls), in.drops.Counts())
	}
	if got := in.controls[0]; string(got.Payload) != cmd || got.SignedBy != "main" {
		t.Errorf("the passed-on command reached the coordinator as %s, signed by %q; want %s, signed by main", got.Payload, got.SignedBy, cmd)
	}
	if got := in.controls[1]; string(got.Payload) != `{"mode":"manual"}` || got.SignedBy != "" {
		t.Errorf("show control's command reached the coordinator as %s, signed by %q", got.Payload, got.SignedBy)
	}
	c := in.drops.Counts()
	if c["bad_MAC"] != 1 || c["stale_or_replayed"] != 1 {
		t.Errorf("drops %v: want one bad_MAC and one stale_or_replayed", c)
	}
	if log := in.log.String(); !slices.Contains(strings.Fields(log), fmt.Sprintf("bytes=%d", len(forged))) {
		t.Errorf("the bad code's drop does not give the payload's size (%d bytes):\n%s", len(forged), log)
	}
}

// A drop is logged once per source and reason, with the size of the payload
// as it came: after a malformed heartbeat on main's topic, a forged
// presence there (no code, then a wrong one) is logged too.
func TestEveryKindOfDropOnAMembersTopicsIsLogged(t *testing.T) {
	ring := newRing(t)
	in := newInstance(t, "backup", inbound.NewAuth(ring, true, isBackup, isMember, nil))
	hbTopic, prTopic := in.topics.Heartbeat("main"), in.topics.Presence("main")
	in.send(hbTopic, sealed(t, ring, hbTopic, `{"member":"main","boot":"b1","conn":"one","seq":1,"interval_ms":100}`, "main", 1, 1), false)
	gone := `{"member":"main","state":"gone","boot":"b1","conn":1}`
	badCode := sealed(t, newRing(t), prTopic, gone, "main", 1, bus.WillSeq)
	for range 3 {
		in.send(prTopic, gone, false)
		in.send(prTopic, badCode, false)
	}
	log := in.log.String()
	for reason, size := range map[string]int{"malformed_JSON": -1, "unauthenticated": len(gone), "bad_MAC": len(badCode)} {
		n := 0
		for line := range strings.Lines(log) {
			if strings.Contains(line, "reason="+reason) {
				n++
				if size >= 0 && !slices.Contains(strings.Fields(line), fmt.Sprintf("bytes=%d", size)) {
					t.Errorf("the %s drop does not give the payload's size, %d bytes: %s", reason, size, line)
				}
				if !strings.Contains(line, "source=main") {
					t.Errorf("the %s drop does not name main's topic as the source: %s", reason, line)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s logged %d times, want once:\n%s", reason, n, log)
		}
	}
}
