package mdns

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

const (
	// announceCount unsolicited announcements, announceInterval apart, go
	// out on start and when an interface or its addresses appear (RFC 6762
	// §8.3: at least two, one second apart).
	announceCount    = 2
	announceInterval = time.Second
	// rescanInterval is how often the interfaces are listed again, to answer
	// on interfaces and addresses that appear later (a DHCP lease, a cable
	// plugged in) and to stop on those that went.
	rescanInterval = 5 * time.Second
	// readErrorPause keeps a socket that keeps failing from spinning.
	readErrorPause = 100 * time.Millisecond
	// pendingRequests bounds the multicast answers waiting for the
	// scheduler; beyond it queries are dropped.
	pendingRequests = 64
)

// responder answers mDNS queries for one zone. It runs two goroutines: read
// (the socket's only reader) decides about each query and sends unicast
// answers itself; run (the scheduler) owns the per-interface state, sends
// every multicast (delayed answers, announcements, goodbyes), and lists the
// interfaces again now and then.
type responder struct {
	zone    *zone
	conn    *mconn
	scanner scanner
	log     *slog.Logger

	table    atomic.Pointer[ifaceTable] // written by run, read by read
	reqs     chan multicastReq          // read → run
	stop     chan struct{}              // closed by Close
	runDone  chan struct{}              // closed when run has returned
	readDone chan struct{}              // closed when read has returned
}

// multicastReq asks the scheduler to multicast records on an interface.
type multicastReq struct {
	ifindex        int
	answers, extra recordSet
	delay          delayKind
	probe          bool // answers a probe: not limited to once a second
}

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

func newResponder(z *zone, conn *mconn, sc scanner, t *ifaceTable, logger *slog.Logger) *responder {
	r := &responder{
		zone: z, conn: conn, scanner: sc, log: logger,
		reqs: make(chan multicastReq, pendingRequests),
		stop: make(chan struct{}), runDone: make(chan struct{}), readDone: make(chan struct{}),
	}
	r.table.Store(t)
	return r
}

// start joins the group on the table's interfaces and starts the goroutines.
func (r *responder) start() {
	states := map[int]*ifaceState{}
	r.update(states, r.table.Load(), time.Now())
	go r.read()
	go r.run(states)
}

// close stops the scheduler (which sends the goodbyes), then the reader, and
// waits for both.
func (r *responder) close() error {
	close(r.stop)
	<-r.runDone
	err := r.conn.Close()
	<-r.readDone
	return errors.Join(err, r.scanner.Close())
}

// read is the socket's reader.
func (r *responder) read() {
	defer close(r.readDone)
	buf := make([]byte, maxPacket+1) // one more: a longer packet is dropped, not truncated
	bucket := newTokenBucket(time.Now())
	for {
		n, cm, src, err := r.conn.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("mdns: read", "error", err)
			select {
			case <-r.stop:
				return
			case <-time.After(readErrorPause):
			}
			continue
		}
		udp, ok := src.(*net.UDPAddr)
		if !ok || cm == nil {
			continue
		}
		r.handle(buf[:n], udp, cm, bucket)
	}
}

// handle answers one packet.
func (r *responder) handle(pkt []byte, src *net.UDPAddr, cm *ipv4.ControlMessage, bucket *tokenBucket) {
	t := r.table.Load()
	in := packetInfo{src: src, ifc: t.byIndex(cm.IfIndex), fromSelf: t.isOwn(src.IP)}
	switch {
	case cm.Dst.Equal(mdnsGroup().IP):
		in.toGroup = true
	case !t.isOwn(cm.Dst):
		return // another group (IP_MULTICAST_ALL), or a broadcast: not mDNS
	}
	p := r.zone.answer(pkt, in)
	if p.unicast != nil {
		if !bucket.take(time.Now()) {
			r.log.Debug("mdns: unicast answer dropped: rate limit", "to", src)
		} else if b, err := p.unicast.Pack(); err != nil {
			r.log.Debug("mdns: pack answer", "error", err)
		} else if err := r.conn.sendUnicast(b, src); err != nil {
			r.log.Debug("mdns: unicast answer", "error", err)
		}
	}
	if p.multicast != 0 {
		select {
		case r.reqs <- multicastReq{ifindex: cm.IfIndex, answers: p.multicast, extra: p.multicastExtra, delay: p.delay, probe: p.probe}:
		default:
			r.log.Debug("mdns: multicast answer dropped: queue full", "from", src)
		}
	}
}

// run is the scheduler.
func (r *responder) run(states map[int]*ifaceState) {
	defer close(r.runDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescan := time.NewTicker(rescanInterval)
	defer rescan.Stop()
	for {
		r.sendDue(states, time.Now())
		if next, ok := nextWake(states); ok {
			timer.Reset(time.Until(next))
		} else {
			timer.Stop()
		}
		select {
		case <-r.stop:
			r.goodbye(states)
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

// sendDue multicasts what is due on each interface: an announcement (every
// record in the answer section) and pending answers, in one packet, without
// the records multicast there in the last second.
func (r *responder) sendDue(states map[int]*ifaceState, now time.Time) {
	for _, s := range states {
		if len(s.addrs) == 0 {
			continue
		}
		var answers, extra, probed recordSet
		if s.announces > 0 && !now.Before(s.nextAnnounce) {
			answers = recAll
			s.announces--
			s.nextAnnounce = now.Add(announceInterval)
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
		if err := r.multicast(s, r.zone.response(answers, extra, s.addrs, recordTTL, true)); err != nil {
			r.log.Debug("mdns: multicast", "interface", s.ifc.name, "error", err)
			continue
		}
		s.recent.sent(answers|extra, now)
	}
}

// goodbye multicasts the zone's records with TTL 0 on every interface
// (RFC 6762 §10.1), so that caches drop them at once.
func (r *responder) goodbye(states map[int]*ifaceState) {
	for _, s := range states {
		if len(s.addrs) == 0 {
			continue
		}
		if err := r.multicast(s, r.zone.response(recGoodbye, 0, s.addrs, 0, true)); err != nil {
			r.log.Debug("mdns: goodbye", "interface", s.ifc.name, "error", err)
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
