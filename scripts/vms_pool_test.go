package scripts_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/sim"
)

// vmsSiteYAML is a VMS site: three servers protected by the pool vms, two
// failover servers with their disk layout and one (higher priority) with
// another layout. %s: the policy, the site's failover: section (indented),
// srv-2's own failover: options.
const vmsSiteYAML = `site: vms
coordinator: manager
mdns: false
bus: {url: "tcp://127.0.0.1:1"}
heartbeat: {interval: 1s, lost_after: 3s, startup_grace: 5s}
policy: {file: %q}
failover:
%s
pools:
  vms: {match: [disk_layout]}
members:
  - id: manager
    roles: [manager]
  - id: srv-1
    roles: [recorder]
    priority: 30
    pool: vms
    disk_layout: 4x8TB
    disks: [/mnt/d1, /mnt/d2]
    duties:
      streams: [{name: cam-1, address: "239.10.0.1:5004"}, {name: cam-2, address: "239.10.0.2:5004"}]
      material: [/mnt/d1, /mnt/d2]
  - id: srv-2
    roles: [server]
    priority: 20
    pool: vms
    disk_layout: 4x8TB
    disks: [/mnt/d1, /mnt/d2]
    duties:
      streams: [{name: cam-3, address: "239.10.0.3:5004"}]
      material: [/mnt/d1, /mnt/d2]
    failover: {%s}
  - id: srv-3
    roles: [recorder]
    priority: 10
    pool: vms
    disk_layout: 4x8TB
    disks: [/mnt/d1, /mnt/d2]
    duties:
      streams: [{name: cam-4, address: "239.10.0.4:5004"}]
      material: [/mnt/d1, /mnt/d2]
  - id: fo-big
    roles: [recorder]
    standby: true
    material_server: 198.18.0.10:7902
    duties: {material: [/mnt/failover]}
    priority: 100
    pool: vms
    disk_layout: 8x16TB
  - id: fo-1
    roles: [recorder]
    standby: true
    material_server: 198.18.0.11:7902
    duties: {material: [/mnt/failover]}
    priority: 20
    pool: vms
    disk_layout: 4x8TB
  - id: fo-2
    roles: [recorder]
    standby: true
    material_server: 198.18.0.12:7902
    duties: {material: [/mnt/failover]}
    priority: 10
    pool: vms
    disk_layout: 4x8TB
`

type vmsSite struct{ *scenario }

// newVMSSite runs the shipped vms-pool policy on the virtual clock with every
// member up. failover is the site's failover: section (indented); srv2 is
// srv-2's own failover options (flow style, without braces).
func newVMSSite(t *testing.T, failover, srv2 string) *vmsSite {
	t.Helper()
	return &vmsSite{startScenario(t, "vms-pool/policy.lua", vmsSiteYAML, failover, srv2)}
}

func TestVMSALostServerIsTakenOverAfterTheDelayByAFailoverServerWithItsDiskLayout(t *testing.T) {
	v := newVMSSite(t, "  delay: 10m", "")
	mark := v.mark()
	v.h.Silence("srv-1")
	v.h.Advance(3 * time.Second)
	if !v.has(mark, "member_lost", "srv-1") {
		t.Fatalf("srv-1 not lost:\n%s", v.dump(mark))
	}
	v.h.Advance(10*time.Minute - 4*time.Second) // 9 min 59 s after the silence
	if v.has(mark, "takeover_started", "srv-1") {
		t.Fatalf("taken over before the delay:\n%s", v.dump(mark))
	}
	v.h.Advance(5 * time.Second)
	if !v.has(mark, "takeover_started", "srv-1") {
		t.Fatalf("no takeover after the delay:\n%s", v.dump(mark))
	}
	// fo-big has the higher priority but another disk layout: never picked.
	if s, phase := v.coveredBy("srv-1"); s != "fo-1" || phase != "covering" {
		t.Fatalf("srv-1 covered by %q (%s), want fo-1 covering", s, phase)
	}
	if got := v.h.Ran("fo-big"); len(got) != 0 {
		t.Fatalf("fo-big (another disk layout) ran %v", v.ran("fo-big"))
	}
	// The failover server receives srv-1's streams with their own multicast addresses.
	cmds := v.h.Ran("fo-1")
	if len(cmds) != 1 || cmds[0].Verb != config.HookTakeover {
		t.Fatalf("fo-1 ran %v", v.ran("fo-1"))
	}
	streams := fmt.Sprint(cmds[0].Args["streams"])
	if !strings.Contains(streams, "239.10.0.1:5004") || !strings.Contains(streams, "239.10.0.2:5004") || strings.Contains(streams, "239.10.0.3") {
		t.Fatalf("takeover streams = %s", streams)
	}
	v.noPolicyErrors(mark)
}

func TestVMSABackWithinTheDelayIsNotTakenOverAndTheDelaySurvivesARestart(t *testing.T) {
	v := newVMSSite(t, "  delay: 2h", "")
	mark := v.mark()
	v.h.Silence("srv-3")
	v.h.Advance(time.Hour)
	v.h.Up("srv-3")
	v.h.Advance(3 * time.Hour)
	if v.has(mark, "takeover_started", "srv-3") {
		t.Fatalf("taken over although back within the delay:\n%s", v.dump(mark))
	}

	v.h.Silence("srv-3")
	v.h.Advance(time.Hour)
	if err := v.h.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	mark = v.mark()
	v.h.Advance(59 * time.Minute)
	if v.has(mark, "takeover_started", "srv-3") {
		t.Fatalf("takeover before the delay after a restart:\n%s", v.dump(mark))
	}
	v.h.Advance(2 * time.Minute)
	if !v.has(mark, "takeover_started", "srv-3") {
		t.Fatalf("the delayed failover was forgotten by the restart:\n%s", v.dump(mark))
	}
}

func TestVMSFailoverDisabledForAServerIsNeverTakenOver(t *testing.T) {
	v := newVMSSite(t, "  delay: 1m", "enabled: false")
	mark := v.mark()
	v.h.Crash("srv-2")
	v.h.Broken("srv-1", true) // the others are still protected
	v.h.Advance(2 * time.Hour)
	if !v.has(mark, "member_lost", "srv-2") {
		t.Fatalf("srv-2 not lost:\n%s", v.dump(mark))
	}
	if v.has(mark, "takeover_started", "srv-2") || v.has(mark, "takeover_queued", "srv-2") || v.has(mark, "takeover_proposed", "srv-2") {
		t.Fatalf("srv-2 (failover disabled) was taken over:\n%s", v.dump(mark))
	}
	if s, _ := v.coveredBy("srv-1"); s != "fo-1" {
		t.Fatalf("srv-1 covered by %q, want fo-1", s)
	}
	v.noPolicyErrors(mark)
}

func TestVMSAllDisksBrokenIsTakenOverAtOnceWhateverTheDelay(t *testing.T) {
	v := newVMSSite(t, "  delay: 2h\n  failback_delay: 1m", "")
	mark := v.mark()
	v.h.Broken("srv-1", true)
	if !v.has(mark, "member_broken", "srv-1") || !v.has(mark, "takeover_started", "srv-1") {
		t.Fatalf("broken disks did not start a takeover at once:\n%s", v.dump(mark))
	}
	v.h.Advance(time.Second)
	if s, phase := v.coveredBy("srv-1"); s != "fo-1" || phase != "covering" {
		t.Fatalf("srv-1 covered by %q (%s), want fo-1 covering", s, phase)
	}

	// The disks work again: failback after the failback delay.
	mark = v.mark()
	v.h.Broken("srv-1", false)
	v.h.Advance(59 * time.Second)
	if v.has(mark, "failback_started", "srv-1") {
		t.Fatalf("failback before failback_delay:\n%s", v.dump(mark))
	}
	v.h.Advance(2 * time.Second)
	if !v.has(mark, "failback_done", "srv-1") {
		t.Fatalf("no failback after the disks came back:\n%s", v.dump(mark))
	}
	if got := strings.Join(v.ran("fo-1"), ","); got != "takeover srv-1,release srv-1" {
		t.Fatalf("fo-1 ran %s", got)
	}

	// broken_is_lost: false leaves a server with broken disks alone.
	v = newVMSSite(t, "  broken_is_lost: false", "")
	mark = v.mark()
	v.h.Broken("srv-1", true)
	v.h.Advance(time.Hour)
	if !v.has(mark, "member_broken", "srv-1") || v.has(mark, "takeover_started", "srv-1") {
		t.Fatalf("broken_is_lost false:\n%s", v.dump(mark))
	}
}

func TestVMSTwoFailoverServersThreeLostOneQueuedUntilAFailoverServerFrees(t *testing.T) {
	v := newVMSSite(t, "  failback_delay: 1m", "")
	mark := v.mark()
	v.h.Crash("srv-3")
	v.h.Crash("srv-1")
	v.h.Crash("srv-2")
	v.h.Advance(time.Second)

	want := "takeover_started srv-3,takeover_started srv-1,takeover_queued srv-2"
	if got := strings.Join(v.events(mark, "takeover_started", "takeover_queued"), ","); got != want {
		t.Fatalf("events = %s, want %s\n%s", got, want, v.dump(mark))
	}
	if s, _ := v.coveredBy("srv-3"); s != "fo-1" {
		t.Fatalf("srv-3 covered by %q, want fo-1 (the free one of highest priority)", s)
	}
	if s, _ := v.coveredBy("srv-1"); s != "fo-2" {
		t.Fatalf("srv-1 covered by %q, want fo-2", s)
	}
	if q := v.h.Coordinator.Takeover().Queue(); len(q) != 1 || q[0].Member != "srv-2" {
		t.Fatalf("queue = %+v, want srv-2", q)
	}
	// However long it takes, fo-big (another disk layout) never steps in.
	v.h.Advance(6 * time.Hour)
	if len(v.h.Ran("fo-big")) != 0 || len(v.h.Coordinator.Takeover().Coverage()) != 2 {
		t.Fatalf("fo-big ran %v; coverage %+v", v.ran("fo-big"), v.h.Coordinator.Takeover().Coverage())
	}

	// srv-1 returns: after its failback fo-2 is free and takes srv-2.
	mark = v.mark()
	v.h.Up("srv-1")
	v.h.Advance(2 * time.Minute)
	want = "failback_started srv-1,failback_done srv-1,takeover_started srv-2,takeover_done srv-2"
	if got := strings.Join(v.events(mark, "failback_started", "failback_done", "takeover_started", "takeover_done"), ","); got != want {
		t.Fatalf("events = %s, want %s\n%s", got, want, v.dump(mark))
	}
	if s, phase := v.coveredBy("srv-2"); s != "fo-2" || phase != "covering" {
		t.Fatalf("srv-2 covered by %q (%s), want fo-2 covering", s, phase)
	}
	if len(v.h.Coordinator.Takeover().Queue()) != 0 {
		t.Fatalf("queue = %+v", v.h.Coordinator.Takeover().Queue())
	}
	if got := strings.Join(v.ran("fo-2"), ","); got != "takeover srv-1,release srv-1,takeover srv-2" {
		t.Fatalf("fo-2 ran %s", got)
	}
	v.noPolicyErrors(0)
}

func TestVMSNoAutomaticFailbackWaitsForTheOperatorThenCopiesAfterTheRelease(t *testing.T) {
	v := newVMSSite(t, "  failback_delay: 30s", "auto_failback: false, copy_material: true")
	v.h.Agent("srv-2", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookCopy {
			return sim.Reply{Delay: 10 * time.Minute}
		}
		return sim.Reply{}
	})
	mark := v.mark()
	v.h.Crash("srv-2")
	v.h.Advance(time.Hour)
	v.h.Up("srv-2")
	v.h.Advance(6 * time.Hour)
	if v.has(mark, "failback_started", "srv-2") {
		t.Fatalf("failback without the operator although auto_failback is off:\n%s", v.dump(mark))
	}
	if s, phase := v.coveredBy("srv-2"); s != "fo-1" || phase != "covering" {
		t.Fatalf("srv-2 covered by %q (%s), want fo-1 covering", s, phase)
	}

	mark = v.mark()
	v.h.Command("failback", map[string]any{"member": "srv-2"})
	v.h.Advance(time.Minute)
	if !v.has(mark, "copy_started", "srv-2") || v.has(mark, "failback_done", "srv-2") {
		t.Fatalf("the copy should be running:\n%s", v.dump(mark))
	}
	// fo-1 let go first: the files it was writing are complete for the copy.
	if !slices.Contains(v.ran("fo-1"), "release srv-2") {
		t.Fatal("fo-1 was not released before the copy")
	}
	if s, phase := v.coveredBy("srv-2"); s != "fo-1" || phase != "copying" {
		t.Fatalf("srv-2 covered by %q (%s), want fo-1 copying", s, phase)
	}
	v.h.Advance(10 * time.Minute)
	want := "failback_started srv-2,member_ready srv-2,copy_started srv-2,copy_done srv-2,failback_done srv-2"
	if got := strings.Join(v.events(mark, "failback_started", "member_ready", "copy_started", "copy_done", "failback_done"), ","); got != want {
		t.Fatalf("events = %s, want %s\n%s", got, want, v.dump(mark))
	}
	var released, copySent time.Time
	for _, rec := range v.h.Since(mark) {
		switch {
		case rec.Type == "copy_started":
			copySent = rec.At
		case rec.Type == "action_done" && rec.Fields["verb"] == config.HookRelease:
			released = rec.At
		}
	}
	if released.IsZero() || copySent.Before(released) {
		t.Fatalf("copy sent at %v, release done at %v", copySent, released)
	}
	// The copy ran on the restored server, from the failover server, for
	// everything since the takeover.
	cmds := v.h.Ran("srv-2")
	if got := strings.Join(v.ran("srv-2"), ","); got != "resume srv-2,copy srv-2" {
		t.Fatalf("srv-2 ran %s", got)
	}
	cp := cmds[1]
	since, err := time.Parse(time.RFC3339, fmt.Sprint(cp.Args["since"]))
	if cp.Args["from"] != "fo-1" || err != nil || v.h.Clock.Now().Sub(since) < 6*time.Hour || cp.Args["until"] != "" {
		t.Fatalf("copy args = %v", cp.Args)
	}
	if s, _ := v.coveredBy("srv-2"); s != "" {
		t.Fatalf("srv-2 still covered by %s", s)
	}
	v.noPolicyErrors(0)
}

func TestVMSARestartDuringTheFailbackCopyNeitherRepeatsTheCopyNorForgetsTheFailback(t *testing.T) {
	v := newVMSSite(t, "  failback_delay: 30s\n  copy_material: true", "")
	v.h.Agent("srv-1", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookCopy {
			return sim.Reply{Delay: 20 * time.Minute}
		}
		return sim.Reply{}
	})
	v.h.Crash("srv-1")
	v.h.Advance(time.Hour)
	mark := v.mark()
	v.h.Up("srv-1")
	v.h.Advance(5 * time.Minute)
	if _, phase := v.coveredBy("srv-1"); phase != "copying" {
		t.Fatalf("phase = %q, want copying\n%s", phase, v.dump(mark))
	}

	restart := v.mark()
	if err := v.h.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := v.mark()
	if _, phase := v.coveredBy("srv-1"); phase != "copying" {
		t.Fatalf("after the restart phase = %q, want copying", phase)
	}
	v.h.Advance(30 * time.Minute)
	if !slices.ContainsFunc(v.h.Since(restart), func(r engine.Record) bool {
		return r.Type == "action_resumed" && r.Fields["verb"] == config.HookCopy
	}) {
		t.Fatalf("the unanswered copy was not resumed:\n%s", v.dump(restart))
	}
	if n := v.count(mark, "copy_done", "srv-1"); n != 1 || !v.has(after, "failback_done", "srv-1") {
		t.Fatalf("copy_done %d times; records since the restart:\n%s", n, v.dump(after))
	}
	if v.has(after, "copy_started", "srv-1") || v.has(after, "failback_started", "srv-1") {
		t.Fatalf("the restarted coordinator started the failback again:\n%s", v.dump(after))
	}
	if got := strings.Join(v.ran("srv-1"), ","); got != "resume srv-1,copy srv-1" {
		t.Fatalf("srv-1 ran %s, want the copy once", got)
	}
	if got := strings.Join(v.ran("fo-1"), ","); got != "takeover srv-1,release srv-1,material_grant srv-1" {
		t.Fatalf("fo-1 ran %s", got)
	}
	if s, _ := v.coveredBy("srv-1"); s != "" {
		t.Fatalf("srv-1 still covered by %s", s)
	}
	v.noPolicyErrors(0)
}

func TestVMSAServerLostWhileTheFailoverServerLetsGoIsTakenOverAgain(t *testing.T) {
	v := newVMSSite(t, "  failback_delay: 30s", "")
	// fo-1 takes 10 s to let go; srv-1 dies again meanwhile.
	v.h.Agent("fo-1", func(c bus.Command) sim.Reply {
		if c.Verb == config.HookRelease {
			return sim.Reply{Delay: 10 * time.Second}
		}
		return sim.Reply{}
	})
	v.h.Crash("srv-1")
	v.h.Advance(time.Minute)
	v.h.Up("srv-1")
	v.h.Advance(30 * time.Second)
	if _, phase := v.coveredBy("srv-1"); phase != "releasing" {
		t.Fatalf("phase = %q, want releasing", phase)
	}
	mark := v.mark()
	v.h.Crash("srv-1")
	v.h.Advance(time.Minute)
	// Once fo-1 has let go it is told to take over again, at once (not after
	// failover.delay: it recorded srv-1 seconds ago), and the coverage keeps
	// its start, so the next failback copies all of it.
	want := "member_lost srv-1,failback_failed srv-1,takeover_started srv-1"
	if got := strings.Join(v.events(mark, "member_lost", "failback_done", "failback_failed", "takeover_started"), ","); got != want {
		t.Fatalf("events = %s, want %s\n%s", got, want, v.dump(mark))
	}
	if s, phase := v.coveredBy("srv-1"); s != "fo-1" || phase != "covering" {
		t.Fatalf("srv-1 covered by %q (%s), want fo-1 covering", s, phase)
	}
	v.noPolicyErrors(0)
}
