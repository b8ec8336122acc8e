package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"understudy/fixtures/mosquitto"
)

// writeCerts makes a CA and a certificate for 127.0.0.1 signed by it, and
// writes ca.pem, server.pem and server.key to dir (readable by mosquitto).
func writeCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "understudy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for path, block := range map[string]*pem.Block{ca: {Type: "CERTIFICATE", Bytes: caDER}, cert: {Type: "CERTIFICATE", Bytes: srvDER}, key: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// mosquitto reads them as its own user.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	return ca, cert, key
}

// An instance reaches a broker over TLS, trusting the CA of bus.tls; without
// that CA it does not connect.
func TestBusOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
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
