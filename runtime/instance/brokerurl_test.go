package instance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
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
// with TLS only, advertises that port. A listener bound to loopback is not
// announced: peers could not reach it.
func TestBrokerAdvert(t *testing.T) {
	for name, tc := range map[string]struct {
		plain, tls string
		port       int
		txtTLS     string
		bound      string // "": nil
		setting    string
	}{
		"plain and TLS":         {plain: "[::]:1883", tls: "[::]:8883", port: 1883, txtTLS: "8883", bound: "::", setting: "bus.listen"},
		"TLS only":              {tls: "0.0.0.0:8883", port: 8883, txtTLS: "8883", bound: "0.0.0.0", setting: "bus.listen_tls"},
		"plain only":            {plain: "198.18.0.2:1883", port: 1883, bound: "198.18.0.2", setting: "bus.listen"},
		"plain on loopback":     {plain: "127.0.0.1:1883", tls: "198.18.0.2:8883", port: 8883, txtTLS: "8883", bound: "198.18.0.2", setting: "bus.listen_tls"},
		"TLS on loopback":       {plain: "198.18.0.2:1883", tls: "127.0.0.1:8883", port: 1883, bound: "198.18.0.2", setting: "bus.listen"},
		"both on loopback":      {plain: "127.0.0.1:1883", tls: "127.0.0.1:8883", port: 1883, bound: "127.0.0.1", setting: "bus.listen"},
		"TLS only, on loopback": {tls: "[::1]:8883", port: 8883, bound: "::1", setting: "bus.listen_tls"},
	} {
		svc, setting := brokerAdvert(tc.plain, tc.tls, "stage", "backup")
		if svc.Service != ServiceBroker || svc.Instance != "stage-broker" || svc.TXT["site"] != "stage" || svc.TXT["member"] != "backup" {
			t.Errorf("%s: %+v", name, svc)
		}
		if svc.Port != tc.port || setting != tc.setting {
			t.Errorf("%s: port %d of %s, want %d of %s", name, svc.Port, setting, tc.port, tc.setting)
		}
		if got, ok := svc.TXT["tls"]; got != tc.txtTLS || ok != (tc.txtTLS != "") {
			t.Errorf("%s: TXT tls=%q (%v), want %q", name, got, ok, tc.txtTLS)
		}
		if want := net.ParseIP(tc.bound); !svc.Bound.Equal(want) {
			t.Errorf("%s: bound to %v, want %v", name, svc.Bound, want)
		}
		// What a peer makes of it, with and without bus.tls.
		e := mdns.Entry{Addr: net.IPv4(198, 18, 0, 2), Port: svc.Port, TXT: svc.TXT}
		port := strconv.Itoa(tc.port)
		if tc.txtTLS != "" {
			if got, want := brokerURL(e, true), "ssl://198.18.0.2:"+tc.txtTLS; got != want {
				t.Errorf("%s: peer with bus.tls: %s, want %s", name, got, want)
			}
		}
		if tc.txtTLS == "" || port != tc.txtTLS {
			if got, want := brokerURL(e, false), "tcp://198.18.0.2:"+port; got != want {
				t.Errorf("%s: peer without bus.tls: %s, want %s", name, got, want)
			}
		}
	}
}

// brokerAdvert reads the addresses a real broker reports: on loopback, it
// announces nothing (mdns.Advertise refuses the loopback address).
func TestBrokerAdvertOfALoopbackBroker(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", ListenTLS: "127.0.0.1:0", TLS: selfSignedTLS(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	svc, setting := brokerAdvert(b.PlainAddr(), b.TLSAddr(), "stage", "backup")
	if _, p, _ := net.SplitHostPort(b.PlainAddr()); strconv.Itoa(svc.Port) != p || setting != "bus.listen" || !svc.Bound.IsLoopback() {
		t.Fatalf("advert %+v of %s, want the plain port %s bound to loopback", svc, setting, p)
	}
	if adv, err := mdns.Advertise(svc, nil); !errors.Is(err, mdns.ErrLoopback) {
		if adv != nil {
			adv.Close()
		}
		t.Fatalf("Advertise = %v, want mdns.ErrLoopback", err)
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
