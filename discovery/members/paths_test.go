package members

import (
	"strings"
	"testing"
)

func online(id string, path int, conn uint64) Presence {
	return Presence{ID: id, State: PresenceOnline, Boot: "b1", Conn: conn, Path: path}
}

func will(id string, path int, conn uint64) Presence {
	return Presence{ID: id, State: PresenceGone, Boot: "b1", Conn: conn, Path: path}
}

func TestOneBrokerPassesEveryPresenceThrough(t *testing.T) {
	ps := NewPaths(1)
	for _, p := range []Presence{online("main", 0, 3), will("main", 0, 2), will("main", 0, 3)} {
		got, ok, why := ps.Presence(p)
		if !ok || got != p {
			t.Errorf("%+v: got %+v %v %q, want it unchanged", p, got, ok, why)
		}
	}
	if out := ps.PathDown(0); out != nil {
		t.Errorf("path down gave %v", out)
	}
}

func TestAMemberIsLostOnlyWhenSilentOnEveryPath(t *testing.T) {
	ps := NewPaths(3)
	for path, conn := range []uint64{1, 2, 3} {
		if _, ok, _ := ps.Presence(online("main", path, conn)); !ok {
			t.Fatal("an online presence was not handed on")
		}
	}
	// Two of its paths go: it is still connected on the third.
	for path, conn := range []uint64{1, 2} {
		if got, ok, why := ps.Presence(will("main", path, conn)); ok {
			t.Fatalf("the Will on path %d went to the table (%+v) while another path was up", path, got)
		} else if !strings.Contains(why, "still connected on path") {
			t.Errorf("why: %q", why)
		}
	}
	// The last one: lost, as one connection (0) for the table.
	got, ok, _ := ps.Presence(will("main", 2, 3))
	if !ok || got.State != PresenceGone || got.Conn != 0 || got.Boot != "b1" {
		t.Fatalf("the last path's Will: got %+v %v, want it handed on with connection 0", got, ok)
	}
}

func TestAStaleWillOfAPathIsNotTaken(t *testing.T) {
	ps := NewPaths(2)
	ps.Presence(online("main", 0, 5)) // reconnected on path 0 as connection 5
	if _, ok, why := ps.Presence(will("main", 0, 1)); ok || !strings.Contains(why, "stale") {
		t.Errorf("the Will of connection 1, replaced by 5: handed on %v (%q)", ok, why)
	}
	// Another boot's Will on a path where this boot is online: stale too.
	old := will("main", 0, 9)
	old.Boot = "b0"
	if _, ok, _ := ps.Presence(old); ok {
		t.Error("an earlier boot's Will was handed on")
	}
}

func TestAWillSetAsideIsTakenWhenTheOtherPathDrops(t *testing.T) {
	ps := NewPaths(2)
	ps.Presence(online("main", 0, 1))
	ps.Presence(online("main", 1, 2))
	ps.Presence(online("w", 0, 1))
	ps.Presence(online("w", 1, 2))
	// main's host died with the broker of path 0: path 1's broker says its
	// Will first, then this instance's own connection on path 0 drops.
	if _, ok, _ := ps.Presence(will("main", 1, 2)); ok {
		t.Fatal("handed on while path 0 still looked up")
	}
	out := ps.PathDown(0)
	if len(out) != 1 || out[0].ID != "main" || out[0].State != PresenceGone || out[0].Conn != 0 {
		t.Fatalf("path 0 down gave %+v, want main's Will", out)
	}
	// w is still on path 1: nothing for it.
	if out := ps.PathDown(0); len(out) != 0 {
		t.Errorf("a second time: %+v", out)
	}
}

func TestAWillSetAsideIsHistoryOnceTheMemberIsHeard(t *testing.T) {
	ps := NewPaths(2)
	ps.Presence(online("main", 0, 1))
	ps.Presence(online("main", 1, 2))
	ps.Presence(will("main", 1, 2)) // only its link to broker 1 went
	ps.Heard("main")                // it is heard since, over path 0
	if out := ps.PathDown(0); len(out) != 0 {
		t.Errorf("an old Will came back when path 0 dropped: %+v", out)
	}
	// And a new connection on path 1 clears it as well.
	ps.Presence(online("main", 0, 3))
	ps.Presence(will("main", 0, 3))
	ps.Presence(online("main", 0, 4))
	if out := ps.PathDown(1); len(out) != 0 {
		t.Errorf("a Will of a connection made again came back: %+v", out)
	}
}

func TestAClosedMemberLeavesEveryPath(t *testing.T) {
	ps := NewPaths(2)
	ps.Presence(online("main", 0, 1))
	ps.Presence(online("main", 1, 2))
	got, ok, _ := ps.Presence(Presence{ID: "main", State: PresenceClosed, Boot: "b1", Path: 1})
	if !ok || got.State != PresenceClosed || got.Conn != 0 {
		t.Fatalf("closed: %+v %v", got, ok)
	}
	// It restarts: a new boot's Will after an online on one path is taken.
	p := online("main", 0, 1)
	p.Boot = "b2"
	ps.Presence(p)
	w := will("main", 0, 1)
	w.Boot = "b2"
	if _, ok, why := ps.Presence(w); !ok {
		t.Errorf("the restarted member's Will, on its only path, was set aside: %s", why)
	}
}
