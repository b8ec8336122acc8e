package mdns

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The scheduler: the responder's goroutine that owns the per-interface
// state and sends every multicast.

// ifaceState is the scheduler's view of one interface.
type ifaceState struct {
	ifc    iface
	addrs  []net.IP // what the zone publishes on it; none: it stays silent
	recent recentKinds

	pending, pendingExtra recordSet // a multicast answer waiting for due
	pendingProbe          recordSet // the part of pending that answers a probe
	due                   time.Time

	announces    int // announcements still to send
	nextAnnounce time.Time
}

// run is the scheduler.
func (r *responder) run(states map[int]*ifaceState) {
	defer close(r.runDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescan := time.NewTicker(rescanInterval)
	defer rescan.Stop()
	for {
		sendDue(r.zone, states, time.Now(), r.multicast, r.log)
		if next, ok := nextWake(states); ok {
			timer.Reset(time.Until(next))
		} else {
			timer.Stop()
		}
		select {
		case <-r.stop:
			goodbye(r.zone, states, r.multicast, r.log)
			return
		case req := <-r.reqs:
			if s := states[req.ifindex]; s != nil {
				s.add(req, time.Now())
			}
		case <-timer.C:
		case <-rescan.C:
			links, err := r.scanner.scan()
			if err != nil {
				r.log.Debug("mdns: list interfaces", "error", err)
				continue
			}
			t := newIfaceTable(links)
			r.update(states, t, time.Now())
			r.table.Store(t)
		}
	}
}

// add merges a multicast answer into the interface's pending one; it goes
// out at the earlier of the two due times.
func (s *ifaceState) add(req multicastReq, now time.Time) {
	var d time.Duration
	switch req.delay {
	case delayShared:
		d = 20*time.Millisecond + rand.N(100*time.Millisecond)
	case delayTruncated:
		d = 400*time.Millisecond + rand.N(100*time.Millisecond)
	}
	due := now.Add(d)
	if s.pending == 0 || due.Before(s.due) {
		s.due = due
	}
	s.pending |= req.answers
	s.pendingExtra |= req.extra
	if req.probe {
		s.pendingProbe |= req.answers
	}
}

// nextWake returns when the scheduler next has something to send.
func nextWake(states map[int]*ifaceState) (time.Time, bool) {
	var next time.Time
	ok := false
	for _, s := range states {
		if len(s.addrs) == 0 {
			continue
		}
		if s.pending != 0 && (!ok || s.due.Before(next)) {
			next, ok = s.due, true
		}
		if s.announces > 0 && (!ok || s.nextAnnounce.Before(next)) {
			next, ok = s.nextAnnounce, true
		}
	}
	return next, ok
}

// sender multicasts a message on an interface.
type sender func(*ifaceState, *dns.Msg) error

// sendDue multicasts what is due on each interface: an announcement (every
// record in the answer section) and pending answers, in one packet, without
// the records multicast there in the last second (unless they answer a
// probe).
func sendDue(z *zone, states map[int]*ifaceState, now time.Time, send sender, log *slog.Logger) {
	for _, s := range states {
		if len(s.addrs) == 0 {
			continue
		}
		var answers, extra, probed recordSet
		if s.announces > 0 && !now.Before(s.nextAnnounce) {
			answers = recAll
			s.announces--
			s.nextAnnounce = now.Add(announceInterval)
			if s.announces == 0 {
				log.Debug("mdns: announced", "interface", s.ifc.name, "announcements", announceCount)
			}
		}
		if s.pending != 0 && !now.Before(s.due) {
			answers |= s.pending
			extra |= s.pendingExtra
			probed = s.pendingProbe
			s.pending, s.pendingExtra, s.pendingProbe = 0, 0, 0
		}
		answers = s.recent.limit(answers&^probed, now) | answers&probed
		extra = s.recent.limit(extra&^answers, now)
		if answers == 0 {
			continue
		}
		if err := send(s, z.response(answers, extra, s.addrs, recordTTL, true)); err != nil {
			log.Debug("mdns: multicast", "interface", s.ifc.name, "error", err)
			continue
		}
		s.recent.sent(answers|extra, now)
	}
}

// goodbye multicasts the zone's records with TTL 0 on every interface
// (RFC 6762 §10.1), so that caches drop them at once.
func goodbye(z *zone, states map[int]*ifaceState, send sender, log *slog.Logger) {
	for _, s := range states {
		if len(s.addrs) == 0 {
			continue
		}
		if err := send(s, z.response(recGoodbye, 0, s.addrs, 0, true)); err != nil {
			log.Debug("mdns: goodbye", "interface", s.ifc.name, "error", err)
		}
	}
}

func (r *responder) multicast(s *ifaceState, m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	return r.conn.sendMulticast(b, &s.ifc)
}

// update brings the per-interface state in line with a new scan: it joins the
// group on new interfaces and announces there, announces again where the
// published addresses changed, and leaves interfaces that went.
func (r *responder) update(states map[int]*ifaceState, t *ifaceTable, now time.Time) {
	seen := map[int]bool{}
	for i := range t.ifaces {
		ifc := &t.ifaces[i]
		s := states[ifc.index]
		if s == nil {
			// EADDRINUSE: still a member from before it went down.
			if err := r.conn.join(ifc); err != nil && !errors.Is(err, syscall.EADDRINUSE) {
				r.log.Debug("mdns: not answering on an interface", "interface", ifc.name, "error", err)
				continue // tried again at the next scan
			}
			s = &ifaceState{}
			states[ifc.index] = s
		}
		seen[ifc.index] = true
		addrs := r.zone.addrsFor(ifc)
		if !slices.EqualFunc(addrs, s.addrs, net.IP.Equal) {
			s.recent = recentKinds{}
			s.announces, s.nextAnnounce = announceCount, now
			if len(addrs) > 0 {
				r.log.Debug("mdns: announcing", "interface", ifc.name, "addresses", addrs)
			}
		}
		s.ifc, s.addrs = *ifc, addrs
	}
	for index, s := range states {
		if !seen[index] {
			if err := r.conn.leave(&s.ifc); err != nil {
				r.log.Debug("mdns: leaving an interface", "interface", s.ifc.name, "error", err)
			}
			delete(states, index)
		}
	}
}
