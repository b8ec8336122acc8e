package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"understudy/fixtures/eventually"
	"understudy/fixtures/testhost"

	"understudy/fixtures/mqtttest"
	"understudy/fixtures/testpki"
)

// serverTLS is a TLS configuration with a certificate of ca for names.
func serverTLS(t *testing.T, ca *testpki.CA, clientCA string, names ...string) *tls.Config {
	t.Helper()
	certFile, keyFile := ca.Issue("broker", x509.ExtKeyUsageServerAuth, names...)
	c, err := ServerTLS(certFile, keyFile, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// overTLS makes mqtttest clients dial with TLS (handshake included).
func overTLS(c *tls.Config) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: c}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// waitLog waits until h has a record whose message is msg.
func waitLog(t *testing.T, h *recordHandler, msg string) slog.Record {
	t.Helper()
	var found slog.Record
	eventually.True(t, deadline, fmt.Sprintf("a log record %q", msg), func() (bool, string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.records {
			if r.Message == msg {
				found = r
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d other records", len(h.records))
	})
	return found
}

// Plain and TLS listeners serve one broker: messages cross between them, a
// TLS client's Last Will comes at once, and a client that does not trust the
// certificate, or does not speak TLS, is refused.
func TestTLSListenerBesideThePlainOne(t *testing.T) {
	ca := testpki.New(t, "site-ca")
	h := &recordHandler{}
	b := start(t, Options{Listen: "127.0.0.1:0", ListenTLS: "127.0.0.1:0", TLS: serverTLS(t, ca, "", "127.0.0.1"), Logger: slog.New(h)})
	host, port, err := net.SplitHostPort(b.TLSAddr())
	if err != nil || host != "127.0.0.1" || port == "0" || b.TLSAddr() == b.Addr() || b.PlainAddr() != b.Addr() {
		t.Fatalf("TLSAddr() = %q (%v), Addr() = %q, PlainAddr() = %q: want the picked TLS port beside the plain one", b.TLSAddr(), err, b.Addr(), b.PlainAddr())
	}
	if got, want := b.LocalURL(), "tcp://"+b.Addr(); got != want {
		t.Errorf("LocalURL() = %q, want the plain listener %q", got, want)
	}
	trusting := mqtttest.Options{Dial: overTLS(&tls.Config{RootCAs: ca.Pool})}
	tlsURL := "tcp://" + b.TLSAddr() // the URL's scheme is unused: Dial speaks TLS

	plain := connect(t, b, "plain", mqtttest.Options{})
	msgs := mqtttest.Subscribe(t, plain, "us/#")
	secure := mqtttest.Connect(t, tlsURL, "secure", trusting)
	fromPlain := mqtttest.Subscribe(t, secure, "us/from-plain")
	mqtttest.Publish(t, secure, "us/from-tls", "over TLS", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/from-tls", Payload: "over TLS"})
	mqtttest.Publish(t, plain, "us/from-plain", "in the clear", false)
	mqtttest.Receive(t, fromPlain, mqtttest.Message{Topic: "us/from-plain", Payload: "in the clear"})
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/from-plain", Payload: "in the clear"}) // its own

	o := trusting
	o.Will = &mqtttest.Message{Topic: "us/will/tls", Payload: "lost"}
	dying := mqtttest.Connect(t, tlsURL, "dying", o)
	dying.Cut()
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/will/tls", Payload: "lost"})
	if n := len(h.levels()); n != 0 {
		t.Fatalf("%d warnings logged for TLS clients that came and went (%v)", n, h.records)
	}

	// Trusting only the system's CAs: refused in the handshake, and the
	// broker says so.
	if _, err := mqtttest.TryConnect(t, tlsURL, "untrusting", mqtttest.Options{Dial: overTLS(&tls.Config{})}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client without the CA: %v, want a certificate error", err)
	}
	waitLog(t, h, "client refused: TLS handshake failed")
	// Plain MQTT on the TLS port goes nowhere.
	if _, err := mqtttest.TryConnect(t, tlsURL, "cleartext", mqtttest.Options{}); err == nil {
		t.Error("plain MQTT connected to the TLS listener")
	}
	mqtttest.Publish(t, plain, "us/marker", "still serving", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/marker", Payload: "still serving"})
}

// A TLS-only broker: this process reaches it with LocalURL and LocalTLS,
// which trust exactly the listener's certificate, even one that names
// another host; LocalTLS refuses any other broker's certificate.
func TestTLSOnlyBrokerAndTheLocalConnection(t *testing.T) {
	ca := testpki.New(t, "site-ca")
	b := start(t, Options{ListenTLS: "127.0.0.1:0", TLS: serverTLS(t, ca, "", "broker.example")})
	if b.PlainAddr() != "" || b.Addr() != b.TLSAddr() {
		t.Fatalf("PlainAddr() = %q, Addr() = %q, TLSAddr() = %q: want no plain listener", b.PlainAddr(), b.Addr(), b.TLSAddr())
	}
	if got, want := b.LocalURL(), "ssl://"+b.TLSAddr(); got != want {
		t.Fatalf("LocalURL() = %q, want %q", got, want)
	}
	local := b.LocalTLS(nil)
	c := mqtttest.Connect(t, "tcp://"+b.TLSAddr(), "self", mqtttest.Options{Dial: overTLS(local)})
	msgs := mqtttest.Subscribe(t, c, "us/self")
	mqtttest.Publish(t, c, "us/self", "hello", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/self", Payload: "hello"})

	// The CA's usual check fails on the name...
	if _, err := mqtttest.TryConnect(t, "tcp://"+b.TLSAddr(), "by-ca", mqtttest.Options{Dial: overTLS(&tls.Config{RootCAs: ca.Pool})}); err == nil {
		t.Error("a client checking the name 127.0.0.1 accepted a certificate for broker.example")
	}
	// ...and another broker, even with a certificate of the same CA, is not this one.
	other := start(t, Options{ListenTLS: "127.0.0.1:0", TLS: serverTLS(t, ca, "", "broker.example")})
	_, err := mqtttest.TryConnect(t, "tcp://"+other.TLSAddr(), "self-elsewhere", mqtttest.Options{Dial: overTLS(local)})
	if err == nil || !strings.Contains(err.Error(), "not its own") {
		t.Errorf("LocalTLS with another broker: %v, want refused", err)
	}
	if (&Broker{}).LocalTLS(nil) != nil {
		t.Error("LocalTLS of a broker without TLS is not nil")
	}
}

// With a client CA, a TLS client must present a certificate it signed.
func TestTLSClientCertificatesRequired(t *testing.T) {
	ca, clientCA, otherCA := testpki.New(t, "site-ca"), testpki.New(t, "client-ca"), testpki.New(t, "other-ca")
	h := &recordHandler{}
	b := start(t, Options{ListenTLS: "127.0.0.1:0", TLS: serverTLS(t, ca, clientCA.File, "127.0.0.1"), Logger: slog.New(h)})
	url := "tcp://" + b.TLSAddr()
	good := clientCA.KeyPair("member-main", x509.ExtKeyUsageClientAuth)
	foreign := otherCA.KeyPair("stranger", x509.ExtKeyUsageClientAuth)

	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA's certificate": {foreign}} {
		if _, err := mqtttest.TryConnect(t, url, "refused", mqtttest.Options{Dial: overTLS(&tls.Config{RootCAs: ca.Pool, Certificates: certs})}); err == nil {
			t.Errorf("%s: connected", name)
		}
	}
	waitLog(t, h, "client refused: TLS handshake failed")
	c := mqtttest.Connect(t, url, "main", mqtttest.Options{Dial: overTLS(&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{good}})})
	msgs := mqtttest.Subscribe(t, c, "us/x")
	mqtttest.Publish(t, c, "us/x", "1", false)
	mqtttest.Receive(t, msgs, mqtttest.Message{Topic: "us/x", Payload: "1"})
	// The broker's own process presents the same kind of certificate.
	self := mqtttest.Connect(t, url, "self", mqtttest.Options{Dial: overTLS(b.LocalTLS([]tls.Certificate{good}))})
	self.Disconnect(250)
}

func TestCloseStopsTheTLSListener(t *testing.T) {
	ca := testpki.New(t, "site-ca")
	b, err := Start(Options{Listen: "127.0.0.1:0", ListenTLS: "127.0.0.1:0", TLS: serverTLS(t, ca, "", "127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	c := mqtttest.Connect(t, "tcp://"+b.TLSAddr(), "c", mqtttest.Options{Dial: overTLS(&tls.Config{RootCAs: ca.Pool})})
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		t.Fatal("Close did not return")
	}
	select {
	case <-c.Lost:
	case <-time.After(deadline):
		t.Fatal("TLS client not disconnected by Close")
	}
	for _, addr := range []string{b.Addr(), b.TLSAddr()} {
		if conn, err := net.DialTimeout("tcp", addr, deadline); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
}

func TestStartRejectsBadTLSOptions(t *testing.T) {
	ca := testpki.New(t, "site-ca")
	good := serverTLS(t, ca, "", "127.0.0.1")
	for name, o := range map[string]Options{
		"TLS address without configuration": {ListenTLS: "127.0.0.1:0"},
		"configuration without TLS address": {Listen: "127.0.0.1:0", TLS: good},
		"configuration without certificate": {ListenTLS: "127.0.0.1:0", TLS: &tls.Config{}},
		"bad TLS address":                   {Listen: "127.0.0.1:0", ListenTLS: "127.0.0.1:99999", TLS: good},
	} {
		if b, err := Start(o); err == nil {
			b.Close()
			t.Errorf("%s: Start succeeded", name)
		}
	}
	// The TLS port is taken: the error names it, and the plain port is let go.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	plain := freeAddr(t)
	_, err = Start(Options{Listen: plain, ListenTLS: taken.Addr().String(), TLS: good})
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("Start on a taken TLS port = %v, want an error naming it", err)
	}
	l, err := net.Listen("tcp", plain)
	if err != nil {
		t.Fatalf("the plain port was not released after the failed start: %v", err)
	}
	l.Close()

	certFile, keyFile := ca.Issue("broker", x509.ExtKeyUsageServerAuth, "127.0.0.1")
	notPEM := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(notPEM, []byte("no certificate here\n"), 0o600)
	for _, tc := range []struct{ cert, key, clientCA, want string }{
		{certFile, filepath.Join(t.TempDir(), "missing.key"), "", "missing.key"},
		{certFile, keyFile, filepath.Join(t.TempDir(), "missing-ca.pem"), "client CA"},
		{certFile, keyFile, notPEM, "no PEM certificate"},
	} {
		if _, err := ServerTLS(tc.cert, tc.key, tc.clientCA); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ServerTLS(%s, %s, %s) = %v, want an error with %q", tc.cert, tc.key, tc.clientCA, err, tc.want)
		}
	}
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testhost.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func TestLoopback(t *testing.T) {
	for in, want := range map[string]string{
		":1883":          "127.0.0.1:1883",
		"0.0.0.0:8883":   "127.0.0.1:8883",
		"[::]:8883":      "127.0.0.1:8883",
		"10.0.0.2:1883":  "10.0.0.2:1883",
		"127.0.0.1:1883": "127.0.0.1:1883",
	} {
		if got := loopback(in); got != want {
			t.Errorf("loopback(%q) = %q, want %q", in, got, want)
		}
	}
}
