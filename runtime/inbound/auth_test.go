package inbound_test

import (
	"fmt"
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

// A Last Will forged from a member's public
// heartbeat declared a live main lost, and forged (or replayed) heartbeats
// kept a dead main alive. With the site key required, neither works.
func TestForgedAndReplayedLivenessIsRefused(t *testing.T) {
	ring := newRing(t)
	in := newInstance(t, "backup", inbound.NewAuth(ring, true, isBackup, nil))
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
	in := newInstance(t, "main", inbound.NewAuth(ring, true, isBackup, nil))
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
	in := newInstance(t, "backup", inbound.NewAuth(newRing(t), true, isBackup, nil))
	in.send(in.topics.Control("mode"), `{"mode":"manual"}`, false)
	if len(in.got) != 1 {
		t.Errorf("the operator command did not arrive: %q (drops %v)", in.got, in.drops.Counts())
	}
}

// Permissive (an upgrade under way): messages without a code are taken and
// counted; a wrong code is refused all the same.
func TestPermissiveTakesUnsignedMessagesAndCountsThem(t *testing.T) {
	ring := newRing(t)
	auth := inbound.NewAuth(ring, false, isBackup, nil)
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
	in := newInstance(t, "backup", inbound.NewAuth(ring, true, isBackup, nil))
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
