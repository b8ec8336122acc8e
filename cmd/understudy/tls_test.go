package main

import (
	"crypto/x509"
	"net"
	"testing"
	"time"

	"understudy/fixtures/mosquitto"
	"understudy/fixtures/testpki"
)

// An instance reaches a broker over TLS, trusting the CA of bus.tls; without
// that CA it does not connect.
func TestBusOverTLS(t *testing.T) {
	pki := testpki.New(t, "understudy test CA")
	ca := pki.File
	cert, key := pki.Issue("server", x509.ExtKeyUsageServerAuth, "127.0.0.1")
	mq := mosquitto.StartTLS(t, mosquitto.TLS{CertFile: cert, KeyFile: key})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startSwitcher(t, l)
	site := writeSite(t, siteParams{Name: "tls", Bus: `url: "` + mq.URL + `", tls: {ca: "` + ca + `"}`, Router: l.Addr().String()})
	backup := runIn(t, nil, site, "backup")
	backup.wait(20*time.Second, "msg", "bus connected", "broker", mq.URL)

	// Trusting only the system's CAs, the certificate is refused.
	untrusted := writeSite(t, siteParams{Name: "tls2", Bus: `url: "` + mq.URL + `", tls: {}`, Router: l.Addr().String()})
	d := runIn(t, nil, untrusted, "backup")
	d.wait(20*time.Second, "msg", "cannot connect to the broker", "error", "certificate")
	if d.has("msg", "bus connected") {
		t.Fatal("connected to a broker whose CA it does not trust")
	}
}
