package engine_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/discovery/members"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/engine"
)

const willSite = `site: test
coordinator: backup
mdns: false
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 1s}
members:
  - id: main
    roles: [manager]
  - id: spare
    roles: [manager]
  - id: backup
    roles: [manager]
    standby: true
`

const aside = "a Last Will arrived as the broker went away: not taken as a loss; the member is judged by its heartbeats"

// willRig is the loop of the coordinator backup on a virtual clock, with a
// fake way through the broker: probe records what it sends, and the test
// decides what comes back.
type willRig struct {
	t      *testing.T
	vc     *clock.Virtual
	e      *engine.Engine
	log    bytes.Buffer
	up     bool   // this instance's connection
	conn   uint64 // its number
	seq    uint64 // its heartbeats
	quiet  bool   // its heartbeats do not come back (the broker stalls)
	mconn  uint64 // the other members' connection number
	probes []bus.Heartbeat
	steps  int // of run, 10 ms each
}

const selfBoot = "selfboot"

func newWillRig(t *testing.T, check bool) *willRig {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(willSite), 0o644)
	site, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := &willRig{t: t, vc: clock.NewVirtual(time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)), up: true, conn: 1, mconn: 1}
	r.e, err = engine.New(engine.Options{
		Site: site, Self: "backup", Clock: r.vc, Online: true,
		Logger: slog.New(slog.NewTextHandler(&r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if check {
		r.e.CheckWills(r.probe)
	}
	if err := r.e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.e.Stop)
	r.e.RunPending()
	return r
}

func (r *willRig) probe() (bus.Heartbeat, bool) {
	if !r.up {
		return bus.Heartbeat{}, false
	}
	r.seq++
	hb := bus.Heartbeat{Member: "backup", Boot: selfBoot, Conn: r.conn, Seq: r.seq, IntervalMS: 100}
	r.probes = append(r.probes, hb)
	return hb, true
}

// own is this instance's next heartbeat, as the timer sends it.
func (r *willRig) own() bus.Heartbeat {
	r.seq++
	return bus.Heartbeat{Member: "backup", Boot: selfBoot, Conn: r.conn, Seq: r.seq, IntervalMS: 100}
}

func (r *willRig) beat(id string) {
	r.e.Heartbeat(bus.Heartbeat{Member: id, Boot: id + "boot", Conn: r.mconn, Seq: 1, IntervalMS: 100})
}

func (r *willRig) will(id string, conn uint64) {
	r.e.Presence(bus.Presence{Member: id, State: members.PresenceGone, Boot: id + "boot", Conn: conn}, false)
}

// run advances the clock by d in steps of 10 ms, running the loop after
// each, with a heartbeat of each member named in beating (and this
// instance's own, when up and not quiet) every 100 ms.
func (r *willRig) run(d time.Duration, beating ...string) {
	for elapsed := time.Duration(0); elapsed < d; elapsed += 10 * time.Millisecond {
		if r.steps%10 == 0 {
			for _, id := range beating {
				r.beat(id)
			}
			if r.up && !r.quiet {
				r.e.Heartbeat(r.own())
			}
		}
		r.e.RunPending()
		r.vc.Advance(10 * time.Millisecond)
		r.e.RunPending()
		r.steps++
	}
}

func (r *willRig) disconnect() {
	r.up = false
	r.e.BusConnected(false)
	r.e.RunPending()
}

func (r *willRig) reconnect() {
	r.up = true
	r.conn++
	r.e.BusConnected(true)
	r.e.RunPending()
}

// lostBy checks that id is lost for reason (a prefix), since at (within a
// step of the rig).
func (r *willRig) lostBy(id, reason string, at time.Time) {
	r.t.Helper()
	m, _ := r.e.Table().Get(id)
	if m.State != members.Lost || !strings.HasPrefix(m.Reason, reason) {
		r.t.Fatalf("%s is %s (%s), want lost: %s…\n%s", id, m.State, m.Reason, reason, r.log.String())
	}
	if d := m.Since.Sub(at); d < 0 || d > 10*time.Millisecond {
		r.t.Errorf("%s lost at %v, want %v", id, m.Since, at)
	}
}

func (r *willRig) alive(ids ...string) {
	r.t.Helper()
	for _, id := range ids {
		if m, _ := r.e.Table().Get(id); m.State != members.Alive {
			r.t.Fatalf("%s is %s (%s), want alive\n%s", id, m.State, m.Reason, r.log.String())
		}
	}
}

const byWill = "connection dropped (Last Will)"

// Over a broker in another process a member's Last Will is taken once the
// broker has carried this instance's own heartbeat, sent after the Will,
// back to it: one probe for the Wills that arrived together, and an own
// heartbeat sent before the Wills confirms nothing.
func TestAWillIsTakenOnceTheBrokerCarriesThisInstancesOwnHeartbeatBack(t *testing.T) {
	r := newWillRig(t, true)
	r.run(500*time.Millisecond, "main", "spare")
	inFlight := r.own() // sent before the Wills, not back yet
	r.will("main", 1)
	r.will("spare", 1)
	r.e.RunPending()
	if len(r.probes) != 1 {
		t.Fatalf("%d probes for two Wills that arrived together, want 1", len(r.probes))
	}
	r.alive("main", "spare")
	r.e.Heartbeat(inFlight)
	r.e.RunPending()
	r.alive("main", "spare")

	at := r.vc.Now()
	r.e.Heartbeat(r.probes[0])
	r.e.RunPending()
	r.lostBy("main", byWill, at)
	r.lostBy("spare", byWill, at)
	if strings.Contains(r.log.String(), aside) {
		t.Errorf("a confirmed Will was set aside:\n%s", r.log.String())
	}
}

// A probe the broker drops (it is QoS 0) costs a heartbeat interval at
// most: any later own heartbeat of the same connection confirms the Will.
func TestAWillWhoseProbeIsDroppedIsTakenWithTheNextOwnHeartbeat(t *testing.T) {
	r := newWillRig(t, true)
	r.run(500*time.Millisecond, "main")
	at := r.vc.Now()
	r.will("main", 1)
	r.e.RunPending()
	if len(r.probes) != 1 {
		t.Fatalf("%d probes, want 1", len(r.probes))
	}
	r.run(100 * time.Millisecond)
	r.lostBy("main", byWill, at)
}

// The broker goes away (systemctl restart mosquitto): it publishes main's
// Will, then this instance's connection drops before the probe is back.
// The Will is set aside, with a word in the log; main, heard again after
// the reconnect, stays alive. An own heartbeat of a later connection
// (heartbeats wait merged in the loop's queue, so one may overtake the
// news that the connection dropped) confirms nothing.
func TestAWillAsTheBrokerGoesAwayIsSetAside(t *testing.T) {
	r := newWillRig(t, true)
	r.run(500*time.Millisecond, "main")
	r.will("main", 1)
	r.e.RunPending()
	r.e.Heartbeat(bus.Heartbeat{Member: "backup", Boot: selfBoot, Conn: r.conn + 1, Seq: r.probes[0].Seq + 1, IntervalMS: 100})
	r.e.RunPending()
	r.alive("main")
	r.disconnect()
	if !strings.Contains(r.log.String(), aside) || !strings.Contains(r.log.String(), "member=main") {
		t.Fatalf("the Will set aside is not in the log:\n%s", r.log.String())
	}
	r.run(2 * time.Second) // the broker restarts
	r.reconnect()
	r.mconn++
	r.run(3*time.Second, "main")
	r.alive("main")
	// The probe, were it to come back now, finds nothing held.
	r.e.Heartbeat(r.probes[0])
	r.e.RunPending()
	r.alive("main")
	if strings.Contains(r.log.String(), `msg="member lost" member=main`) {
		t.Fatalf("main was lost:\n%s", r.log.String())
	}
}

// A member that really died as the broker went away is lost after the
// reconnect, when the startup grace runs out without a word from it: no
// failover is missed.
func TestAMemberThatDiedWithTheBrokerIsLostAfterTheReconnect(t *testing.T) {
	r := newWillRig(t, true)
	r.run(500*time.Millisecond, "main")
	r.will("main", 1)
	r.e.RunPending()
	r.disconnect()
	r.run(time.Second)
	r.reconnect()
	back := r.vc.Now()
	r.run(2 * time.Second)
	r.lostBy("main", "not heard within 1s of rejoining the bus", back.Add(time.Second))
}

// The broker stalls: neither the probe nor this instance's heartbeats come
// back, and the connection stays up. The Will is set aside when main's
// lost_after has run out; nobody is judged while this instance cannot hear
// itself, and when it can again, main (dead) is lost by its silence — not
// by the Will the late heartbeats would have confirmed.
func TestAWillWhoseProbeNeverComesBackLeavesTheMemberToItsHeartbeats(t *testing.T) {
	r := newWillRig(t, true)
	r.run(500*time.Millisecond, "main")
	r.quiet = true
	r.will("main", 1)
	r.e.RunPending()
	r.run(400 * time.Millisecond)
	if !strings.Contains(r.log.String(), aside) || !strings.Contains(r.log.String(), "within the member's lost_after (300ms)") {
		t.Fatalf("the expired Will is not in the log:\n%s", r.log.String())
	}
	r.alive("main")
	r.quiet = false
	resumed := r.vc.Now()
	r.run(time.Second)
	m, _ := r.e.Table().Get("main")
	if m.State != members.Lost || !strings.HasPrefix(m.Reason, "no heartbeat for") {
		t.Fatalf("main is %s (%s), want lost by its silence\n%s", m.State, m.Reason, r.log.String())
	}
	if d := m.Since.Sub(resumed); d < 300*time.Millisecond || d > 400*time.Millisecond {
		t.Errorf("main lost %v after this instance heard itself again, want a lost_after (300ms)", d)
	}
}

// With the broker in this process (nothing calls CheckWills) a Will is
// taken at once: the crash-detection path has no round trip added.
func TestWithTheBrokerInThisProcessAWillIsTakenAtOnce(t *testing.T) {
	r := newWillRig(t, false)
	r.run(500*time.Millisecond, "main")
	at := r.vc.Now()
	r.will("main", 1)
	r.e.RunPending()
	r.lostBy("main", byWill, at)
	if len(r.probes) != 0 {
		t.Errorf("%d probes", len(r.probes))
	}
}

// Only a Will that would mark its member lost waits for a probe: after a
// reconnect the retained "gone" the broker kept from before is history
// (its member heartbeats), a Will of a connection the member has replaced
// is stale, this instance's own Will is nonsense. A real crash afterwards
// is taken after the round trip.
func TestOnlyAWillThatWouldCountIsProbed(t *testing.T) {
	r := newWillRig(t, true)
	r.run(500*time.Millisecond, "main")
	r.disconnect()
	r.reconnect()
	r.e.Presence(bus.Presence{Member: "main", State: members.PresenceGone, Boot: "mainboot", Conn: 1}, true)
	r.e.Presence(bus.Presence{Member: "main", State: members.PresenceOnline, Boot: "mainboot", Conn: 2}, false)
	r.mconn = 2
	r.will("main", 1)   // the old connection's, published late
	r.will("backup", 1) // this instance's own
	r.run(2*time.Second, "main")
	r.alive("main")
	if len(r.probes) != 0 {
		t.Fatalf("%d probes for Wills that do not count", len(r.probes))
	}
	if strings.Contains(r.log.String(), aside) {
		t.Errorf("a Will that did not count was held and set aside:\n%s", r.log.String())
	}

	at := r.vc.Now()
	r.will("main", 2)
	r.e.RunPending()
	r.e.Heartbeat(r.probes[0])
	r.e.RunPending()
	r.lostBy("main", byWill, at)
}

// A broker going away publishes every client's Will: setting them aside
// takes one log line, naming the first members.
func TestWillsSetAsideTogetherAreLoggedOnce(t *testing.T) {
	r := newWillRig(t, true)
	r.run(500*time.Millisecond, "main", "spare")
	r.will("main", 1)
	r.will("spare", 1)
	r.e.RunPending()
	r.disconnect()
	if n := strings.Count(r.log.String(), aside); n != 1 || !strings.Contains(r.log.String(), `member="main, spare" wills=2`) {
		t.Fatalf("%d lines for two Wills set aside:\n%s", n, r.log.String())
	}
}
