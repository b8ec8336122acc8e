package members

import (
	"fmt"
	"slices"
	"strings"
)

// Paths merges what several brokers say of each member's connections into
// what the member table takes, on a site whose instances are each connected
// to every coordinator candidate's broker (bus.Paths).
//
// Each of a member's connections has its own presence and Last Will, and a
// Will only says that the path through one broker is gone: the broker's
// host may be the one that died, or the member's link to it. A member is
// lost when it is silent on every path, so a Will goes to the table only
// when no other path to the member is up, as far as this instance sees:
// one whose broker this instance is connected to and on which the member's
// current connection said it was online and has not left since. A Will set
// aside because another path was up is kept until the member is heard
// again: if that other path then drops from this instance's side (its broker
// died with the host the member was on), the Will goes to the table then.
// The table then judges one connection per member: what Paths hands it
// carries connection 0 (heartbeats over several paths carry 0 too), and the
// currency of a Will within its path is decided here.
//
// With one broker (NewPaths(1)) every presence goes through unchanged. Not
// safe for concurrent use: the engine's loop owns it.
type Paths struct {
	several bool
	members map[string]*memberPaths
}

type memberPaths struct {
	paths map[int]pathState
	// will is a Will set aside while another path was up (see Paths).
	will *Presence
}

// pathState is a member's connection on one path, as last said there.
type pathState struct {
	boot string
	conn uint64
	up   bool
}

// NewPaths returns the merger of n paths.
func NewPaths(n int) *Paths { return &Paths{several: n > 1, members: map[string]*memberPaths{}} }

// Presence takes p (of a member the table knows) and returns what the table
// is to take, or false and why nothing.
func (ps *Paths) Presence(p Presence) (Presence, bool, string) {
	if !ps.several {
		return p, true, ""
	}
	m := ps.members[p.ID]
	if m == nil {
		m = &memberPaths{paths: map[int]pathState{}}
		ps.members[p.ID] = m
	}
	st, known := m.paths[p.Path]
	switch p.State {
	case PresenceOnline:
		m.paths[p.Path] = pathState{boot: p.Boot, conn: p.Conn, up: true}
		if !p.Retained && m.will != nil {
			m.will = nil // a new connection: the member is there
		}
	case PresenceGone:
		if known && (st.boot != p.Boot || st.conn > p.Conn) {
			return p, false, fmt.Sprintf("stale Last Will of member %q on path %d (boot %s conn %d; current there boot %s conn %d)", p.ID, p.Path, p.Boot, p.Conn, st.boot, st.conn)
		}
		m.paths[p.Path] = pathState{boot: p.Boot, conn: p.Conn}
		if p.Retained {
			break // history: the table says so
		}
		if q, ok := m.upElsewhere(p.Path, p.Boot); ok {
			w := p
			m.will = &w
			return p, false, fmt.Sprintf("the Last Will of member %q on path %d: its path through that broker is gone; it is still connected on path %d", p.ID, p.Path, q)
		}
		m.will = nil
	case PresenceClosed:
		for i, s := range m.paths {
			if s.boot == p.Boot {
				m.paths[i] = pathState{boot: s.boot, conn: s.conn}
			}
		}
		m.will = nil
	}
	p.Conn = 0
	return p, true, ""
}

// upElsewhere reports a path other than path on which the member's
// connection of boot is up.
func (m *memberPaths) upElsewhere(path int, boot string) (int, bool) {
	for i, s := range m.paths {
		if i != path && s.up && s.boot == boot {
			return i, true
		}
	}
	return 0, false
}

// Heard notes a heartbeat of member id: a Will set aside is history now.
func (ps *Paths) Heard(id string) {
	if m := ps.members[id]; m != nil {
		m.will = nil
	}
}

// PathDown notes that this instance's own connection on path dropped: what
// it said of the members is unknown from now on (until the broker's
// retained presences come back on reconnect). It returns the Wills set
// aside that no path opposes any more, for the table to take.
func (ps *Paths) PathDown(path int) []Presence {
	if !ps.several {
		return nil
	}
	var out []Presence
	for _, m := range ps.members {
		delete(m.paths, path)
		if m.will == nil {
			continue
		}
		if _, ok := m.upElsewhere(m.will.Path, m.will.Boot); ok {
			continue
		}
		w := *m.will
		w.Conn = 0
		out = append(out, w)
		m.will = nil
	}
	slices.SortFunc(out, func(a, b Presence) int { return strings.Compare(a.ID, b.ID) })
	return out
}
