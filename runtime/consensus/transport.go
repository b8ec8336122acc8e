package consensus

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"understudy/sitekey"
)

// TransportOptions are a candidate's raft transport: where it listens and
// the site key that admits a peer.
type TransportOptions struct {
	// Bind is the address to listen on, host:port (port 0: any free one).
	Bind string
	// Advertise is the address the other candidates dial (default: the
	// bound address, which must then not be unspecified).
	Advertise string
	// Ring is the site key: a peer is admitted, both ways, only with a
	// certificate from one of its keys.
	Ring *sitekey.Ring
	// Logger receives the refused connections (at most a line per remote
	// host a minute) and raft's own transport lines, warnings and up
	// (default: none).
	Logger *slog.Logger
	// Timeout bounds a TLS handshake and each RPC's I/O (default 2 s).
	Timeout time.Duration
	// MaxPool is how many connections to each peer are kept open for
	// reuse (default 3).
	MaxPool int
	// ID is this candidate's raft server id: a connection meant for
	// another server (an older incarnation of this candidate, whose raft
	// state was lost) is refused. Empty: every connection is taken.
	ID string
}

// Address is the raft address of server id at addr (host:port), as the
// group's configuration keeps it: a connection made to it names the server
// it is for, and a candidate that is not that server (its raft state was
// lost and it starts as a new one) refuses it, so that nothing it answers,
// a vote above all, counts as the old server's.
func Address(addr, id string) string {
	if id == "" {
		return addr
	}
	return addr + "#" + id
}

// splitAddress is Address's inverse.
func splitAddress(a string) (addr, id string) {
	addr, id, _ = strings.Cut(a, "#")
	return addr, id
}

// prefaceMax bounds the line that names the server a connection is for.
const prefaceMax = 256

// raftPurpose is what the ring derives the raft CA keys for.
const raftPurpose = "raft-ca"

// refusedLogEvery is how often a refused connection from one remote host
// is logged; the others are counted in the next line.
const refusedLogEvery = time.Minute

// maxRefusedHosts bounds the hosts remembered for refusedLogEvery: past it
// (connections from more hosts than that within a minute) refusals are
// counted but not logged.
const maxRefusedHosts = 1024

// validity is when the certificates are valid: always. The candidates'
// clocks may differ, and what admits a peer is the key that signed its
// certificate, not a date (the leaf's key lives in this process only);
// peers are verified as of notBefore.
func validity() (notBefore, notAfter time.Time) {
	return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
}

// errNotSiteKey is a peer certificate no key of the ring signed.
var errNotSiteKey = errors.New("peer certificate not signed by the site key")

// networkTransport names raft's NetworkTransport for embedding in
// Transport without an exported field.
type networkTransport = raft.NetworkTransport

// Transport is raft's network transport over mutual TLS derived from the
// site key. It implements raft.Transport and raft.WithClose (Node.Close
// closes it).
type Transport struct {
	*networkTransport
	stream *stream
}

// Interface guard: a Transport is a raft transport raft closes.
var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

// NewTransport listens on opts.Bind and returns the transport. Every
// connection, dialled or accepted, is TLS 1.3 where both sides present a
// certificate from the site key: each key of opts.Ring derives an Ed25519
// CA; this transport's ephemeral certificate is signed by the signing
// key's CA, and a peer's must be signed by the CA of any key of the ring.
// So two candidates talk when each has the other's signing key in its
// ring, and a key changed as sitekey says (the new key added second on
// every candidate, then moved first, then the old one removed) keeps the
// group together at every step.
func NewTransport(opts TransportOptions) (*Transport, error) {
	if opts.Ring.Empty() {
		return nil, errors.New("consensus transport: the elected coordinator needs the site key, and the ring has no key")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxPool <= 0 {
		opts.MaxPool = 3
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := tlsConfig(opts.Ring)
	if err != nil {
		return nil, fmt.Errorf("consensus transport: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Bind)
	if err != nil {
		return nil, fmt.Errorf("consensus transport: %w", err)
	}
	adv, err := advertise(opts.Advertise, ln.Addr())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("consensus transport on %s: %w", ln.Addr(), err)
	}
	s := &stream{
		id:       opts.ID,
		ln:       ln,
		addr:     adv,
		cfg:      cfg,
		timeout:  opts.Timeout,
		log:      log,
		accepted: make(chan net.Conn),
		done:     make(chan struct{}),
		conns:    map[*conn]struct{}{},
		warned:   map[string]*warned{},
	}
	s.wg.Add(1)
	go s.acceptLoop()

	hlog := hclog.NewNullLogger()
	if opts.Logger != nil {
		hlog = hclog.FromStandardLogger(slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn), &hclog.LoggerOptions{Name: "raft-net", Level: hclog.Warn})
	}
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  s,
		MaxPool: opts.MaxPool,
		Timeout: opts.Timeout,
		Logger:  hlog,
	})
	return &Transport{networkTransport: nt, stream: s}, nil
}

// serverAddress names the server id in its address (see Address).
func (t *Transport) serverAddress(addr, id string) raft.ServerAddress {
	return raft.ServerAddress(Address(addr, id))
}

// Addr is the address the other candidates dial.
func (t *Transport) Addr() string { return t.stream.addr.String() }

// Refused is how many connections were refused: a peer without a
// certificate from the site key (accepted or dialled), or one that did
// not complete a TLS handshake in time.
func (t *Transport) Refused() uint64 { return t.stream.refused.Load() }

// Close stops listening and closes every connection, those raft pools and
// those it serves. It may be called more than once.
func (t *Transport) Close() error {
	t.networkTransport.Close() // closes the stream too, and never fails
	return t.stream.Close()
}

// advertise is the address to give the peers: a (validated), else the
// bound address when it is a specific one.
func advertise(a string, bound net.Addr) (tcpAddr, error) {
	if a == "" {
		ta, ok := bound.(*net.TCPAddr)
		if !ok || ta.IP == nil || ta.IP.IsUnspecified() {
			return "", errors.New("bound to an unspecified address: set an address to advertise")
		}
		return tcpAddr(ta.String()), nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("address to advertise: %w", err)
	}
	if host == "" || port == "" || port == "0" {
		return "", fmt.Errorf("address to advertise %q: host and port are needed", a)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("address to advertise %q is unspecified", a)
	}
	return tcpAddr(a), nil
}

// tcpAddr is an advertised address.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// tlsConfig is the TLS of both sides: this transport's certificate, signed
// by the signing key's CA, and a peer's verified against every key's CA.
//
// Peers are dialled by address and their certificates name no host, so the
// standard verification is off (InsecureSkipVerify on the client side,
// RequireAnyClientCert on the server side: a certificate is required,
// checked by no one else) and verifyPeer checks the chain on both sides.
// Sessions are not resumed: every connection shows a certificate (after a
// key left the ring, none it signed is admitted again).
func tlsConfig(ring *sitekey.Ring) (*tls.Config, error) {
	ids := ring.IDs()
	pool := x509.NewCertPool()
	var signer *x509.Certificate
	var signerKey ed25519.PrivateKey
	for i, secret := range ring.Derive(raftPurpose) {
		ca, key, err := authority(ids[i], secret)
		if err != nil {
			return nil, err
		}
		pool.AddCert(ca)
		if i == 0 {
			signer, signerKey = ca, key
		}
	}
	leaf, err := leafCertificate(signer, signerKey)
	if err != nil {
		return nil, err
	}
	verify := func(cs tls.ConnectionState) error { return verifyPeer(pool, cs) }
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{leaf},
		ClientAuth:             tls.RequireAnyClientCert,
		InsecureSkipVerify:     true,
		VerifyConnection:       verify,
		SessionTicketsDisabled: true,
	}, nil
}

// verifyPeer checks that the peer's certificate was signed by a CA of the
// pool (the peer's other certificates are ignored: a chain is a leaf and
// a CA).
func verifyPeer(pool *x509.CertPool, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no certificate", errNotSiteKey)
	}
	notBefore, _ := validity()
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: notBefore, // dates do not matter, see validity
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errNotSiteKey, err)
	}
	return nil
}

// authority is the CA one key of the ring derives: its Ed25519 key from
// the derived secret, and a self-signed certificate for it.
func authority(id, secret string) (*x509.Certificate, ed25519.PrivateKey, error) {
	seed, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, nil, fmt.Errorf("raft CA of key %s: derived secret is not %d bytes of base64 (%v)", id, ed25519.SeedSize, err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	notBefore, notAfter := validity()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "understudy raft " + id},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("raft CA of key %s: %w", id, err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("raft CA of key %s: %w", id, err)
	}
	return ca, key, nil
}

// leafCertificate makes this transport's ephemeral key and its
// certificate, signed by ca, for both ends of a connection.
func leafCertificate(ca *x509.Certificate, caKey ed25519.PrivateKey) (tls.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raft certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raft certificate serial: %w", err)
	}
	notBefore, notAfter := validity()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "understudy raft candidate"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raft certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raft certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// stream is the raft.StreamLayer: TCP connections in mutual TLS.
//
// The handshake of an accepted connection is done in a goroutine of its
// own, with a deadline, and Accept hands raft only the connections whose
// handshake succeeded (through the accepted channel). So one slow or
// hostile client holds only its own goroutine, never the accepts, and raft
// never sees a connection without the site key (it would log an error for
// each). Doing the handshake at the first Read instead would need the
// deadline set and cleared around it inside Read, and the refusals would
// reach raft as read errors.
type stream struct {
	id       string // this server's id (see TransportOptions.ID)
	ln       net.Listener
	addr     tcpAddr
	cfg      *tls.Config
	timeout  time.Duration
	log      *slog.Logger
	refused  atomic.Uint64
	accepted chan net.Conn
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{} // every connection open, in a handshake or raft's
	warned map[string]*warned // refusals logged, by remote host

	closeOnce sync.Once
	closeErr  error
}

// warned is when a refusal from a host was last logged and how many were
// not since.
type warned struct {
	at     time.Time
	unsaid uint64
}

// Interface guard: stream is raft's stream layer.
var _ raft.StreamLayer = (*stream)(nil)

// acceptLoop accepts TCP connections and starts their handshakes.
func (s *stream) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			if s.isClosed() {
				return
			}
			// Out of file descriptors or the like: try again, slower
			// each time.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if unsaid, ok := s.logNow(""); ok {
				s.log.Warn("raft transport cannot accept", "addr", s.addr.String(), "err", err, "not_logged_since", unsaid)
			}
			select {
			case <-s.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		s.wg.Add(1)
		go s.handshake(raw)
	}
}

// handshake completes an accepted connection's TLS handshake within the
// timeout and hands it to Accept, or refuses it.
func (s *stream) handshake(raw net.Conn) {
	defer s.wg.Done()
	c, ok := s.track(raw, tls.Server(raw, s.cfg))
	if !ok {
		return
	}
	raw.SetDeadline(time.Now().Add(s.timeout))
	if err := c.Handshake(); err != nil {
		c.Close()
		if !s.isClosed() {
			s.refuse(raw.RemoteAddr().String(), handshakeError(err, s.timeout))
		}
		return
	}
	meant, err := readPreface(c)
	if err != nil {
		c.Close()
		if !s.isClosed() {
			s.refuse(raw.RemoteAddr().String(), handshakeError(err, s.timeout))
		}
		return
	}
	if meant != "" && s.id != "" && meant != s.id {
		c.Close()
		s.refuseServer(raw.RemoteAddr().String(), meant)
		return
	}
	raw.SetDeadline(time.Time{})
	select {
	case s.accepted <- c:
	case <-s.done:
		c.Close()
	}
}

// handshakeError says what a failed handshake was, a timeout plainly.
func handshakeError(err error, timeout time.Duration) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no TLS handshake within %s: %w", timeout, err)
	}
	return err
}

// Accept returns the next connection whose handshake succeeded.
func (s *stream) Accept() (net.Conn, error) {
	select {
	case c := <-s.accepted:
		return c, nil
	case <-s.done:
		return nil, fmt.Errorf("raft transport %s closed: %w", s.addr, net.ErrClosed)
	}
}

// Dial connects to a peer and completes the TLS handshake within timeout
// (in TLS 1.3 the client's handshake ends before the server has checked
// its certificate: a peer that refuses this one closes the connection at
// the first RPC).
func (s *stream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = s.timeout
	}
	if s.isClosed() {
		return nil, fmt.Errorf("raft transport %s closed: %w", s.addr, net.ErrClosed)
	}
	addr, id := splitAddress(string(address))
	d := net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft transport: %w", err)
	}
	c, ok := s.track(raw, tls.Client(raw, s.cfg))
	if !ok {
		return nil, fmt.Errorf("raft transport %s closed: %w", s.addr, net.ErrClosed)
	}
	raw.SetDeadline(time.Now().Add(timeout))
	if err := c.Handshake(); err != nil {
		c.Close()
		err = handshakeError(err, timeout)
		if errors.Is(err, errNotSiteKey) {
			s.refuse(string(address), err)
		}
		return nil, fmt.Errorf("raft transport: TLS with %s: %w", address, err)
	}
	if _, err := io.WriteString(c, prefacePrefix+id+"\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft transport: to %s: %w", address, err)
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// Addr is the advertised address (raft's LocalAddr).
func (s *stream) Addr() net.Addr { return s.addr }

// Close stops listening, closes every connection and waits for the
// handshakes to end. Raft's goroutines serving a connection end with it:
// they read the end of the stream.
func (s *stream) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		conns := s.conns
		s.conns = nil
		s.mu.Unlock()
		s.closeErr = s.ln.Close()
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("raft transport %s: %w", s.addr, s.closeErr)
		}
		for c := range conns {
			c.raw.Close() // not the TLS close: no close_notify to a peer that may not read it
		}
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *stream) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// track registers a connection to close with the stream; false (and the
// connection closed) when the stream is closed already.
func (s *stream) track(raw net.Conn, tc *tls.Conn) (*conn, bool) {
	c := &conn{Conn: tc, raw: raw, s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		raw.Close()
		return nil, false
	}
	s.conns[c] = struct{}{}
	return c, true
}

// refuse counts a refused connection and logs it, at most once a
// refusedLogEvery per remote host.
func (s *stream) refuse(remote string, reason error) {
	n := s.refused.Add(1)
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	if unsaid, ok := s.logNow(host); ok {
		s.log.Warn("raft transport refused a connection: it made no TLS handshake with the site key (a peer without the key, a scanner, or a candidate that gave up halfway)", "addr", s.addr.String(), "remote", remote, "reason", reason, "refused_total", n, "not_logged_since", unsaid)
	}
}

// refuseServer counts and logs (as refuse does) a connection meant for
// another raft server than this one.
func (s *stream) refuseServer(remote, meant string) {
	n := s.refused.Add(1)
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	if unsaid, ok := s.logNow(host); ok {
		s.log.Warn("raft transport refused a connection meant for another raft server: this candidate's raft state was made anew (lost, or moved aside), and it answers nothing for the server it was before; the leader admits it as the new one (understudy candidates admit)",
			"addr", s.addr.String(), "remote", remote, "meant_for", meant, "this_server", s.id, "refused_total", n, "not_logged_since", unsaid)
	}
}

// prefacePrefix begins the line a dialled connection sends first, after
// the TLS handshake: the id of the server it is meant for.
const prefacePrefix = "understudy-raft "

// readPreface reads the line that names the server a connection is for.
func readPreface(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < prefaceMax {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("no preface: %w", err)
		}
		if b[0] == '\n' {
			id, ok := strings.CutPrefix(string(line), prefacePrefix)
			if !ok {
				return "", errors.New("the first line is not a raft preface")
			}
			return id, nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("a first line over %d bytes", prefaceMax)
}

// logNow reports whether a line about key (a remote host) may be logged
// now, and how many were not since the last one.
func (s *stream) logNow(key string) (unsaid uint64, ok bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.warned[key]
	if w != nil && now.Sub(w.at) < refusedLogEvery {
		w.unsaid++
		return 0, false
	}
	if w == nil {
		if len(s.warned) >= maxRefusedHosts {
			for k, o := range s.warned {
				if now.Sub(o.at) >= refusedLogEvery {
					delete(s.warned, k)
				}
			}
		}
		if len(s.warned) >= maxRefusedHosts {
			return 0, false
		}
		w = &warned{}
		s.warned[key] = w
	}
	unsaid = w.unsaid
	w.at, w.unsaid = now, 0
	return unsaid, true
}

// conn is a TLS connection the stream closes when it is closed.
type conn struct {
	*tls.Conn
	raw net.Conn
	s   *stream
}

// Read reads the end of the stream once the transport is closed (raft
// logs any other error as a failure).
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.s.isClosed() {
		err = io.EOF
	}
	return n, err
}

// Close closes the connection and forgets it.
func (c *conn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}
