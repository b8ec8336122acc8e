package instance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"understudy/discovery/broker"
	"understudy/discovery/mdns"
)

// How an instance reaches a broker found by mDNS: over TLS when the broker
// advertises a TLS port and the instance has bus.tls, or when TLS is all the
// broker offers.
func TestBrokerURLFromMDNS(t *testing.T) {
	ip := net.IPv4(198, 18, 0, 2)
	for _, tc := range []struct {
		port    int
		txt     map[string]string
		haveTLS bool
		want    string
	}{
		{1883, map[string]string{"site": "s"}, false, "tcp://198.18.0.2:1883"},
		{1883, map[string]string{"site": "s"}, true, "tcp://198.18.0.2:1883"},
		{1883, map[string]string{"site": "s", "tls": "8883"}, true, "ssl://198.18.0.2:8883"},
		{1883, map[string]string{"site": "s", "tls": "8883"}, false, "tcp://198.18.0.2:1883"},
		{8883, map[string]string{"site": "s", "tls": "8883"}, false, "ssl://198.18.0.2:8883"},
		{1883, map[string]string{"site": "s", "tls": "many"}, true, "tcp://198.18.0.2:1883"},
		{1883, map[string]string{"site": "s", "tls": "70000"}, true, "tcp://198.18.0.2:1883"},
	} {
		if got := brokerURL(mdns.Entry{Addr: ip, Port: tc.port, TXT: tc.txt}, tc.haveTLS); got != tc.want {
			t.Errorf("port %d TXT %v, bus.tls %v: %s, want %s", tc.port, tc.txt, tc.haveTLS, got, tc.want)
		}
	}
}

// The embedded broker's advertisement carries the TLS port in TXT tls=, and
// with TLS only, advertises that port.
func TestBrokerAdvert(t *testing.T) {
	conf := selfSignedTLS(t)
	both, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", ListenTLS: "127.0.0.1:0", TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()
	tlsOnly, err := broker.Start(broker.Options{ListenTLS: "127.0.0.1:0", TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsOnly.Close()
	plain, err := broker.Start(broker.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	for name, tc := range map[string]struct {
		b         *broker.Broker
		port, tls string
	}{
		"plain and TLS": {b: both, port: port(both.PlainAddr()), tls: port(both.TLSAddr())},
		"TLS only":      {b: tlsOnly, port: port(tlsOnly.TLSAddr()), tls: port(tlsOnly.TLSAddr())},
		"plain only":    {b: plain, port: port(plain.Addr())},
	} {
		svc := brokerAdvert(tc.b, "stage", "backup")
		if svc.Service != ServiceBroker || svc.Instance != "stage-broker" || svc.TXT["site"] != "stage" || svc.TXT["member"] != "backup" {
			t.Errorf("%s: %+v", name, svc)
		}
		if got := strconv.Itoa(svc.Port); got != tc.port {
			t.Errorf("%s: port %s, want %s", name, got, tc.port)
		}
		if got, ok := svc.TXT["tls"]; got != tc.tls || ok != (tc.tls != "") {
			t.Errorf("%s: TXT tls=%q (%v), want %q", name, got, ok, tc.tls)
		}
		// What a peer makes of it, with and without bus.tls.
		e := mdns.Entry{Addr: net.IPv4(198, 18, 0, 2), Port: svc.Port, TXT: svc.TXT}
		if tc.tls != "" {
			if got, want := brokerURL(e, true), "ssl://198.18.0.2:"+tc.tls; got != want {
				t.Errorf("%s: peer with bus.tls: %s, want %s", name, got, want)
			}
		}
		if tc.tls == "" || tc.port != tc.tls {
			if got, want := brokerURL(e, false), "tcp://198.18.0.2:"+tc.port; got != want {
				t.Errorf("%s: peer without bus.tls: %s, want %s", name, got, want)
			}
		}
	}
}

// selfSignedTLS is a server TLS configuration with a self-signed certificate.
func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
