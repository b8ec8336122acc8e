package mdns

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// sent records what the scheduler multicasts, as "answers | additional"
// record types.
type sentLog []string

func (l *sentLog) send(_ *ifaceState, m *dns.Msg) error {
	*l = append(*l, types(m.Answer)+" | "+types(m.Extra))
	return nil
}

func types(rrs []dns.RR) string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		t := dns.TypeToString[h.Rrtype]
		if h.Ttl == 0 {
			t += "/0"
		}
		out = append(out, t)
	}
	return strings.Join(out, " ")
}

func (l *sentLog) take(t *testing.T, want ...string) {
	t.Helper()
	if strings.Join(*l, "; ") != strings.Join(want, "; ") {
		t.Fatalf("sent %q, want %q", *l, want)
	}
	*l = nil
}

// The scheduler's timing on one interface, on a made-up clock: two
// announcements a second apart, answers merged and held back while their
// records were multicast less than a second ago, probes answered anyway,
// goodbyes without the A records.
func TestSchedule(t *testing.T) {
	z := testZone(t, nil)
	log := slog.New(slog.DiscardHandler)
	s := &ifaceState{ifc: *testIface(), addrs: []net.IP{net.IPv4(198, 18, 0, 1).To4()}, announces: announceCount}
	states := map[int]*ifaceState{s.ifc.index: s}
	var sent sentLog
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	if next, ok := nextWake(states); !ok || !next.IsZero() {
		t.Fatalf("first wake %v, %v; want at once", next, ok)
	}
	sendDue(z, states, t0, sent.send, log)
	sent.take(t, "PTR PTR SRV TXT A | ")
	if next, _ := nextWake(states); !next.Equal(at(time.Second)) {
		t.Fatalf("next wake %v, want the second announcement a second later", next)
	}

	// A PTR question half a second later: its answer is due 20-120 ms on,
	// but the PTR went out 0.5 s ago, and so did its additional records.
	s.add(multicastReq{answers: recPTR, extra: recSRV | recTXT | recA, delay: delayShared}, at(500*time.Millisecond))
	if d := s.due.Sub(at(500 * time.Millisecond)); d < 20*time.Millisecond || d > 120*time.Millisecond {
		t.Fatalf("shared answer due after %v, want 20-120 ms", d)
	}
	sendDue(z, states, s.due, sent.send, log)
	sent.take(t)
	// A probe for the host name at the same moment is answered.
	s.add(multicastReq{answers: recA, probe: true}, at(700*time.Millisecond))
	sendDue(z, states, at(700*time.Millisecond), sent.send, log)
	sent.take(t, "A | ")

	// The second announcement, and a TXT question merged into it.
	s.add(multicastReq{answers: recTXT}, at(time.Second))
	sendDue(z, states, at(time.Second), sent.send, log)
	sent.take(t, "PTR PTR SRV TXT | ")
	if _, ok := nextWake(states); ok {
		t.Fatal("something left to send after the announcements")
	}

	// Two seconds on: an SRV question goes out at once with its A record.
	s.add(multicastReq{answers: recSRV, extra: recA}, at(3*time.Second))
	sendDue(z, states, at(3*time.Second), sent.send, log)
	sent.take(t, "SRV | A")

	goodbye(z, states, sent.send, log)
	sent.take(t, "PTR/0 SRV/0 TXT/0 | ")
}
