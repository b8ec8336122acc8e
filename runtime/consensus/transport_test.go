package consensus

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"understudy/sitekey"
)

// onLoopback are raft's timeouts for candidates on the TLS transport on
// loopback: slower than fast, a handshake under the race detector takes
// milliseconds.
var onLoopback = Timing{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond, Commit: 10 * time.Millisecond}

func newKey(t *testing.T, id string) sitekey.Key {
	t.Helper()
	k, err := sitekey.NewKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRing(t *testing.T, keys ...sitekey.Key) *sitekey.Ring {
	t.Helper()
	r, err := sitekey.NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// logBuffer keeps a transport's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count is how many lines contain s.
func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// refusedLine is what a transport logs for a refused connection.
const refusedLine = "raft transport refused a connection: it made no TLS handshake with the site key"

// newTransport starts a transport on loopback (any port unless opts.Bind
// says), closed at the end of the test, and the buffer it logs to.
func newTransport(t *testing.T, opts TransportOptions) (*Transport, *logBuffer) {
	t.Helper()
	if opts.Bind == "" {
		opts.Bind = "127.0.0.1:0"
	}
	log := &logBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	tr, err := NewTransport(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return tr, log
}

// netGroup is a group of candidates on the TLS transport, each with its
// own ring.
type netGroup struct {
	*group
	rings map[string]*sitekey.Ring // the ring each candidate starts with next
	trans map[string]*Transport    // each candidate's last transport
	logs  map[string]*logBuffer    // and what it logged
	addrs map[string]string        // each candidate's address
}

// member is a candidate of a netGroup and its ring.
type member struct {
	id   string
	ring *sitekey.Ring
}

// newNetGroup starts a group on the TLS transport on loopback. A
// candidate started again listens on the same address, with the ring
// rings has for it then.
func newNetGroup(t *testing.T, members ...member) *netGroup {
	t.Helper()
	ng := &netGroup{rings: map[string]*sitekey.Ring{}, trans: map[string]*Transport{}, logs: map[string]*logBuffer{}, addrs: map[string]string{}}
	var peers []Peer
	for _, m := range members {
		tr, log := newTransport(t, TransportOptions{Ring: m.ring, ID: m.id})
		ng.rings[m.id], ng.trans[m.id], ng.logs[m.id] = m.ring, tr, log
		peers = append(peers, Peer{ID: m.id, Addr: tr.Addr()})
	}
	for _, p := range peers {
		ng.addrs[p.ID] = p.Addr
	}
	ng.group = startGroup(t, peers, onLoopback, func(c *candidate) raft.Transport {
		if tr := ng.trans[c.id]; tr != nil && !tr.IsShutdown() {
			return tr
		}
		tr, log := newTransport(t, TransportOptions{Bind: ng.addrs[c.id], Ring: ng.rings[c.id], ID: c.id})
		ng.trans[c.id], ng.logs[c.id] = tr, log
		return tr
	})
	return ng
}

// serve answers every RPC tr receives with an empty response, until the
// end of the test: a transport without a node, for a probe.
func serve(t *testing.T, tr *Transport) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-tr.Consumer():
				switch rpc.Command.(type) {
				case *raft.RequestVoteRequest:
					rpc.Respond(&raft.RequestVoteResponse{}, nil)
				default:
					rpc.Respond(nil, errors.New("not served by the test"))
				}
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		wg.Wait()
	})
}

// probe sends a harmless RPC (a vote request of term 0, which a node
// rejects at once) from one transport to the address to.
func probe(from *Transport, to string) error {
	req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("probe"), Addr: []byte(from.Addr())}, Term: 0}
	var resp raft.RequestVoteResponse
	return from.RequestVote("target", raft.ServerAddress(to), req, &resp)
}

// commitEverywhere writes key=value through the leader and waits for every
// running candidate of the group to apply it.
func (g *group) commitEverywhere(key, value string) {
	g.t.Helper()
	// A leader that lost its leadership between leader() and put (a
	// candidate restarted, an election) is asked again.
	var err error
	g.waitFor("a leader committing "+key, func() bool {
		l := g.leader()
		err = put(g.t, l.st, key, value)
		return err == nil || !(errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress))
	})
	if err != nil {
		g.t.Fatalf("writing %s: %v", key, err)
	}
	for _, c := range g.cs {
		if c.node != nil {
			g.waitFor(c.id+" applying "+key, func() bool { return get(c.st, key) == value })
		}
	}
}

// A site's candidates form the group over the TLS transport and replicate
// what the leader writes; nothing is refused among them.
func TestCandidatesWithTheSiteKeyFormTheGroupOverTLS(t *testing.T) {
	ring := newRing(t, newKey(t, "k1"))
	g := newNetGroup(t, member{"a", ring}, member{"b", ring}, member{"c", ring})
	for id, tr := range g.trans {
		if string(tr.LocalAddr()) != tr.Addr() || !strings.HasPrefix(tr.Addr(), "127.0.0.1:") {
			t.Errorf("%s: LocalAddr %s, Addr %s", id, tr.LocalAddr(), tr.Addr())
		}
	}
	g.commitEverywhere("x", "1")
	for id, tr := range g.trans {
		if n := tr.Refused(); n != 0 {
			t.Errorf("%s refused %d connections of its own site: %s", id, n, g.logs[id])
		}
	}
}

// A candidate whose ring has another key (of the same id) is refused both
// ways: the other two elect a leader and commit without it, and it never
// has what they committed nor leads. A refusal is logged once a minute
// per remote host, and counted every time.
func TestACandidateWithoutTheSiteKeyCannotJoin(t *testing.T) {
	good := newRing(t, newKey(t, "k1"))
	bad := newRing(t, newKey(t, "k1"))
	g := newNetGroup(t, member{"a", good}, member{"b", good}, member{"c", bad})
	l := g.leader("a", "b")
	if err := put(t, l.st, "x", "1"); err != nil {
		t.Fatal(err)
	}
	g.waitFor("a and b applying x", func() bool { return get(g.cs["a"].st, "x") == "1" && get(g.cs["b"].st, "x") == "1" })
	refused := func() uint64 { return g.trans["a"].Refused() + g.trans["b"].Refused() }
	// c goes on trying (its elections, the leader's replication): once it
	// has been refused a few more times since the commit, it has had its
	// chances.
	since := refused()
	g.waitFor("c being refused again", func() bool {
		return refused() >= since+6 && g.logs["a"].count(refusedLine) > 0 && g.logs["b"].count(refusedLine) > 0
	})
	c := g.cs["c"]
	if got := get(c.st, "x"); got != "" {
		t.Errorf("c, without the site key, has x=%q", got)
	}
	if c.node.IsLeader() || c.node.Leader() != "" {
		t.Errorf("c, without the site key, leads or knows a leader (%q)", c.node.Leader())
	}
	for _, id := range []string{"a", "b"} {
		tr, log := g.trans[id], g.logs[id]
		if tr.Refused() == 0 {
			t.Errorf("%s refused nothing", id)
		}
		if n := log.count(refusedLine); n != 1 {
			t.Errorf("%s logged %d refusals from the one host of c, refused %d connections, want one line a minute:\n%s", id, n, tr.Refused(), log)
		}
	}
}

// Clients without the site key — bytes that are not TLS, raft's own RPC in
// the clear, TLS without a certificate or with one of another key — are
// closed and counted, and the transport goes on serving its peers.
func TestClientsWithoutTheSiteKeyAreRefused(t *testing.T) {
	ring := newRing(t, newKey(t, "k1"))
	g := newNetGroup(t, member{"a", ring}, member{"b", ring}, member{"c", ring})
	g.commitEverywhere("before", "1")
	l := g.leader()
	var f *candidate
	for _, c := range g.cs {
		if c != l {
			f = c
		}
	}
	target := g.trans[f.id]

	// Bytes that are not TLS.
	garbage, err := net.Dial("tcp", target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	if _, err := garbage.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	closedByServer(t, garbage)

	// raft's own RequestVote, in the clear (raft's TCP transport).
	plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("intruder"), Addr: []byte(plain.LocalAddr())}, Term: 1000}
	if err := plain.RequestVote(raft.ServerID(f.id), raft.ServerAddress(target.Addr()), req, &raft.RequestVoteResponse{}); err == nil {
		t.Error("a RequestVote in the clear got an answer")
	}

	// TLS 1.3 without a certificate: its handshake ends before the server
	// has checked, the server's alert closes it at the first read.
	bare, err := tls.Dial("tcp", target.Addr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	closedByServer(t, bare)

	// TLS with a certificate of another key (of the same id), not caring
	// about the server's: the server's own check refuses it.
	other, err := tlsConfig(newRing(t, newKey(t, "k1")))
	if err != nil {
		t.Fatal(err)
	}
	other.VerifyConnection = nil
	forged, err := tls.Dial("tcp", target.Addr(), other)
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	closedByServer(t, forged)

	waitFor(t, f.id+" counting 4 refusals and logging", func() bool { return target.Refused() >= 4 && g.logs[f.id].count(refusedLine) > 0 })
	if f.node.Term() >= 1000 {
		t.Error("the RequestVote in the clear moved the follower's term")
	}
	// The follower still accepts a peer with the key, and the group
	// commits.
	outsider, _ := newTransport(t, TransportOptions{Ring: ring})
	if err := probe(outsider, target.Addr()); err != nil {
		t.Errorf("a peer with the site key, after the refusals: %v", err)
	}
	g.commitEverywhere("after", "1")
	if n := g.logs[f.id].count(refusedLine); n != 1 {
		t.Errorf("%s logged %d refusals from loopback, want 1:\n%s", f.id, n, g.logs[f.id])
	}
}

// closedByServer waits for the server to close c (the end of the stream or
// a TLS alert, not this side's deadline).
func closedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server left the connection open: %v", err)
	}
}

// A key change as sitekey documents it — the new key added second on every
// candidate, then moved first, then the old one removed — one candidate at
// a time, under a running group: at every step the group commits on every
// candidate.
func TestTheSiteKeyChangesUnderARunningGroup(t *testing.T) {
	k1, k2 := newKey(t, "k1"), newKey(t, "k2")
	steps := []*sitekey.Ring{newRing(t, k1, k2), newRing(t, k2, k1), newRing(t, k2)}
	old := newRing(t, k1)
	g := newNetGroup(t, member{"a", old}, member{"b", old}, member{"c", old})
	g.commitEverywhere("start", "1")
	for s, ring := range steps {
		for _, id := range []string{"a", "b", "c"} {
			c := g.cs[id]
			g.stop(c)
			g.rings[id] = ring
			g.start(c)
			g.commitEverywhere(fmt.Sprint(id, " at step ", s+1), "1")
		}
	}
	for id, tr := range g.trans {
		if tr.Refused() != 0 {
			t.Errorf("%s refused %d connections during the key change:\n%s", id, tr.Refused(), g.logs[id])
		}
	}
}

// Two transports talk when each has the other's signing key in its ring,
// whatever else the rings hold; mutual TLS needs both. So a candidate
// that skipped the first step of a key change (its ring [k1] when another
// already signs with k2) is refused both ways, as sitekey's signed
// messages are.
func TestTransportsTalkWhenEachHasTheOthersSigningKey(t *testing.T) {
	k1, k2 := newKey(t, "k1"), newKey(t, "k2")
	for _, c := range []struct {
		name string
		a, b *sitekey.Ring
		talk bool
	}{
		{"same key", newRing(t, k1), newRing(t, k1), true},
		{"new key added second", newRing(t, k1), newRing(t, k1, k2), true},
		{"new key moved first", newRing(t, k1, k2), newRing(t, k2, k1), true},
		{"old key removed", newRing(t, k2, k1), newRing(t, k2), true},
		{"new key first on one, absent on the other", newRing(t, k1), newRing(t, k2, k1), false},
		{"other keys", newRing(t, k1), newRing(t, k2), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _ := newTransport(t, TransportOptions{Ring: c.a})
			b, _ := newTransport(t, TransportOptions{Ring: c.b})
			serve(t, a)
			serve(t, b)
			errAB, errBA := probe(a, b.Addr()), probe(b, a.Addr())
			if c.talk {
				if errAB != nil || errBA != nil {
					t.Fatalf("a→b: %v, b→a: %v", errAB, errBA)
				}
				if a.Refused()+b.Refused() != 0 {
					t.Errorf("refused: a %d, b %d", a.Refused(), b.Refused())
				}
				return
			}
			if errAB == nil || errBA == nil {
				t.Fatalf("a→b: %v, b→a: %v; want both refused", errAB, errBA)
			}
			// Each refused the other's certificate, dialling or
			// accepting (the count of the accepting side is in its own
			// goroutine: wait for it).
			waitFor(t, "both counting refusals", func() bool { return a.Refused() > 0 && b.Refused() > 0 })
		})
	}
}

// Clients that connect and send nothing hold neither the accepts nor the
// peers: a peer with the key is served meanwhile, and each silent
// connection is closed after the handshake timeout and counted.
func TestSilentClientsDoNotHoldUpThePeers(t *testing.T) {
	ring := newRing(t, newKey(t, "k1"))
	const timeout = 2 * time.Second
	target, log := newTransport(t, TransportOptions{Ring: ring, Timeout: timeout})
	serve(t, target)
	peer, _ := newTransport(t, TransportOptions{Ring: ring})

	const silent = 4
	start := time.Now()
	closed := make(chan time.Duration, silent)
	for range silent {
		c, err := net.Dial("tcp", target.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			io.Copy(io.Discard, c)
			closed <- time.Since(start)
		}()
	}
	if err := probe(peer, target.Addr()); err != nil {
		t.Fatalf("a peer with the key, behind silent clients: %v", err)
	}
	select {
	case d := <-closed:
		t.Fatalf("a silent connection was closed after %s, before the peer was served: the peer waited for it", d)
	default:
	}
	for range silent {
		select {
		case d := <-closed:
			if d < timeout || d > 15*time.Second {
				t.Errorf("a silent connection closed after %s, want after the %s handshake timeout", d, timeout)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a silent connection is still open")
		}
	}
	// A refusal is counted, then logged.
	waitFor(t, "4 refusals, logged", func() bool { return target.Refused() == silent && log.count(refusedLine) > 0 })
	if n := log.count("no TLS handshake within 2s"); n != 1 {
		t.Errorf("%d lines about the silent clients, want 1:\n%s", n, log)
	}
}

// A transport needs the site key, and an address to advertise.
func TestNewTransportNeedsTheSiteKeyAndAnAddress(t *testing.T) {
	for _, ring := range []*sitekey.Ring{nil, newRing(t)} {
		_, err := NewTransport(TransportOptions{Bind: "127.0.0.1:0", Ring: ring})
		if err == nil || !strings.Contains(err.Error(), "needs the site key") {
			t.Errorf("without a key: %v", err)
		}
	}
	// Bound to every address (not listening on them in a test), nothing
	// advertised; an unspecified or incomplete address advertised.
	if _, err := advertise("", &net.TCPAddr{IP: net.IPv4zero, Port: 7400}); err == nil {
		t.Error("bound to 0.0.0.0, nothing advertised: no error")
	}
	for _, a := range []string{"0.0.0.0:7400", "[::]:7400", "host", "host:0", ":7400"} {
		if _, err := advertise(a, &net.TCPAddr{IP: net.IPv4zero, Port: 7400}); err == nil {
			t.Errorf("advertising %q: no error", a)
		}
	}
	ring := newRing(t, newKey(t, "k1"))
	tr, _ := newTransport(t, TransportOptions{Advertise: "192.0.2.7:7400", Ring: ring})
	if tr.Addr() != "192.0.2.7:7400" || tr.LocalAddr() != "192.0.2.7:7400" {
		t.Errorf("advertised %s (raft: %s)", tr.Addr(), tr.LocalAddr())
	}
}

// A candidate whose raft state is lost (its disk replaced) starts again as
// a new server, at the same address. It answers nothing meant for the
// server it was: a vote it gave in a term before would otherwise count
// twice. The leader replaces the old server with the new one, which gets
// the group's state and votes from then on.
func TestACandidateWithItsRaftStateLostRejoinsAsANewServer(t *testing.T) {
	ring := newRing(t, newKey(t, "k1"))
	g := newNetGroup(t, member{"a", ring}, member{"b", ring}, member{"c", ring})
	g.commitEverywhere("before", "1")
	l := g.leader()
	var lost *candidate
	for _, id := range []string{"a", "b", "c"} {
		if id != l.id {
			lost = g.cs[id]
		}
	}
	g.stop(lost)
	for _, p := range []string{lost.dir, lost.statePath} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	again := &candidate{id: lost.id + "-2", dir: lost.dir, statePath: lost.statePath, joins: true}
	g.rings[again.id], g.addrs[again.id] = ring, g.addrs[lost.id]
	g.cs[again.id] = again
	g.start(again)

	// What is meant for the old server is refused; the new one is reached.
	if err := probe(g.trans[l.id], Address(g.addrs[lost.id], lost.id)); err == nil {
		t.Error("the new server answered an RPC meant for the server it was before")
	}
	g.waitFor("the refusal logged", func() bool { return g.logs[again.id].count("meant for another raft server") > 0 })
	if err := probe(g.trans[l.id], Address(g.addrs[again.id], again.id)); err != nil {
		t.Errorf("an RPC meant for the new server: %v", err)
	}
	if ss, err := again.node.Servers(); err != nil || len(ss) != 0 {
		t.Errorf("the new server knows a configuration before it is added: %v, %v", ss, err)
	}

	l = g.leader()
	if err := l.node.RemoveServer(lost.id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.node.AddVoter(Peer{ID: again.id, Addr: g.addrs[again.id]}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	delete(g.cs, lost.id)
	g.waitFor(again.id+" applying what was committed before", func() bool { return get(again.st, "before") == "1" })
	ss, err := l.node.Servers()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	want := slices.DeleteFunc([]string{"a", "b", "c", again.id}, func(id string) bool { return id == lost.id })
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("the group after the replacement: %v", ids)
	}

	// The new server's vote counts: with the leader stopped, the other
	// old server needs it to win.
	g.stop(l)
	next := g.leader()
	if next.id == l.id {
		t.Fatal("the stopped leader leads")
	}
	g.commitEverywhere("after", "2")
}
