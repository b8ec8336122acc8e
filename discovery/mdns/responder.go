package mdns

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

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
