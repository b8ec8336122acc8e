package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/testhost"
)

// pki is a CA made by a test, with the files of the certificates it issued.
type pki struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	CA   string // the CA's certificate, PEM
	n    int64
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // read by mosquitto_sub too
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{t: t, dir: dir, cert: cert, key: key, CA: filepath.Join(dir, name+".pem"), n: 1}
	p.write(p.CA, "CERTIFICATE", der)
	return p
}

func (p *pki) write(path, typ string, der []byte) {
	p.t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// issue writes a certificate for the IP addresses given (a server's) or none
// (a client's) and its key.
func (p *pki) issue(name string, usage x509.ExtKeyUsage, ips ...net.IP) (cert, key string) {
	p.t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	p.n++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.n), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &k.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		p.t.Fatal(err)
	}
	cert, key = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+".key")
	p.write(cert, "CERTIFICATE", der)
	p.write(key, "EC PRIVATE KEY", keyDER)
	return cert, key
}

// tlsSub runs mosquitto_sub against a TLS listener with extra arguments
// (--cafile, --cert, …) for the first message on topic, and returns its
// output and error.
func tlsSub(t *testing.T, addr, topic string, extra ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"-h", host, "-p", port, "-t", topic, "-C", "1", "-W", "10"}, extra...)
	out, err := exec.CommandContext(ctx, "mosquitto_sub", args...).CombinedOutput()
	return string(out), err
}

// The embedded broker listening only on TLS: the instance that embeds it
// connects to it over TLS itself, a second instance with the site's CA
// (bus.tls.ca) joins through it, and so does mosquitto_sub with --cafile;
// a client without the CA, or without TLS, is refused and the broker says
// so. With server_tls.client_ca, a client must also show its certificate.
func TestEmbeddedBrokerListensOnTLS(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Fatalf("mosquitto_sub is missing (Debian package mosquitto-clients; .ci/deps installs it): %v", err)
	}
	for _, clientCerts := range []bool{false, true} {
		t.Run(map[bool]string{false: "server certificate", true: "client certificates required"}[clientCerts], func(t *testing.T) {
			ca := newPKI(t, "site-ca")
			srvCert, srvKey := ca.issue("broker", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
			addr := freePort(t)
			name := "tls-embedded"
			serverTLS := fmt.Sprintf("server_tls: {cert: %q, key: %q}", srvCert, srvKey)
			clientTLS := fmt.Sprintf("tls: {ca: %q}", ca.CA)
			var subCert []string // mosquitto_sub's certificate
			if clientCerts {
				name = "tls-clients"
				clients := newPKI(t, "client-ca")
				serverTLS = fmt.Sprintf("server_tls: {cert: %q, key: %q, client_ca: %q}", srvCert, srvKey, clients.CA)
				cert, key := clients.issue("members", x509.ExtKeyUsageClientAuth)
				clientTLS = fmt.Sprintf("tls: {ca: %q, cert: %q, key: %q}", ca.CA, cert, key)
				subCert = []string{"--cert", cert, "--key", key}
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			startSwitcher(t, l)
			// One site, two files: the backup embeds the broker, the main
			// is pointed at it (no mDNS on loopback).
			hostSite := writeSite(t, siteParams{Name: name, Router: l.Addr().String(),
				Bus: fmt.Sprintf(`listen: none, listen_tls: %q, %s, %s`, addr, serverTLS, clientTLS)})
			peerSite := writeSite(t, siteParams{Name: name, Router: l.Addr().String(),
				Bus: fmt.Sprintf(`url: "ssl://%s", %s`, addr, clientTLS)})

			backup := runIn(t, nil, hostSite, "backup")
			backup.wait(20*time.Second, "msg", "embedded broker started", "listen", "none", "listen_tls", addr)
			backup.wait(20*time.Second, "msg", "bus connected", "broker", "ssl://"+addr)
			main := runIn(t, nil, peerSite, "main")
			main.wait(20*time.Second, "msg", "bus connected", "broker", "ssl://"+addr)
			backup.wait(20*time.Second, "msg", "member alive", "member", "main")

			presence := "understudy/" + name + "/member/main/presence"
			out, err := tlsSub(t, addr, presence, append([]string{"--cafile", ca.CA}, subCert...)...)
			if err != nil || !strings.Contains(out, `"state":"online"`) {
				t.Fatalf("mosquitto_sub --cafile: %v %s", err, out)
			}

			// Refused: trusting only the system's CAs; with client
			// certificates required, without one.
			refused := map[string][]string{"the system's CAs": append([]string{"--capath", "/etc/ssl/certs"}, subCert...)}
			if clientCerts {
				refused["no client certificate"] = []string{"--cafile", ca.CA}
			}
			for why, args := range refused {
				backup.mark()
				out, err := tlsSub(t, addr, presence, args...)
				if err == nil || strings.Contains(out, "online") {
					t.Errorf("mosquitto_sub with %s: %v %s", why, err, out)
				}
				t.Logf("mosquitto_sub with %s: %v: %s", why, err, strings.TrimSpace(out))
				backup.wait(20*time.Second, "component", "broker", "msg", "client refused: TLS handshake failed")
			}
			// Without TLS, mosquitto_sub keeps trying to connect: refused
			// each time, it never gets the message.
			backup.mark()
			host, port, _ := net.SplitHostPort(addr)
			plain := testhost.StartProcess(t, exec.Command("mosquitto_sub", "-h", host, "-p", port, "-t", presence, "-C", "1"))
			backup.wait(20*time.Second, "component", "broker", "msg", "client refused: TLS handshake failed", "error", "first record does not look like a TLS handshake")
			if err := plain.Kill(); err != nil {
				t.Fatal(err)
			}
			if out := plain.Output(); strings.Contains(out, "online") {
				t.Errorf("mosquitto_sub without TLS got %s", out)
			}
			// An instance that does not trust the site's CA does not get in.
			untrusting := writeSite(t, siteParams{Name: name, Router: l.Addr().String(), Bus: fmt.Sprintf(`url: "ssl://%s", tls: {}`, addr), MainAPI: "127.0.0.1:0"})
			stranger := runIn(t, nil, untrusting, "main")
			stranger.wait(20*time.Second, "msg", "cannot connect to the broker", "error", "certificate")
			if stranger.has("msg", "bus connected") {
				t.Fatal("an instance without the site's CA connected")
			}
		})
	}
}

// Peers find the embedded broker by mDNS and, having bus.tls, reach it on
// its TLS port (advertised in TXT tls=) rather than the plain one, which the
// instance that embeds it uses itself.
func TestPeersFindTheTLSBrokerByMDNS(t *testing.T) {
	testhost.RequireRoot(t)
	nw := testhost.NewNetwork(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	l, err := b.Listen("tcp", net.JoinHostPort(b.Addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	startSwitcher(t, l)
	ca := newPKI(t, "site-ca")
	cert, key := ca.issue("broker", x509.ExtKeyUsageServerAuth, b.Addr)
	site := writeSite(t, siteParams{Name: "stage-tls", MDNS: true, Router: l.Addr().String(),
		Bus: fmt.Sprintf(`discover: 2s, listen_tls: ":8883", server_tls: {cert: %q, key: %q}, tls: {ca: %q}`, cert, key, ca.CA)})
	backup := runIn(t, b, site, "backup")
	backup.wait(30*time.Second, "msg", "embedded broker started", "listen", ":1883", "listen_tls", ":8883")
	backup.wait(30*time.Second, "msg", "bus connected", "broker", "tcp://127.0.0.1:1883")
	main := runIn(t, a, site, "main")
	tlsURL := "ssl://" + net.JoinHostPort(b.Addr.String(), "8883")
	main.wait(30*time.Second, "msg", "found the site's broker by mDNS", "broker", tlsURL)
	main.wait(30*time.Second, "msg", "bus connected", "broker", tlsURL)
	backup.wait(30*time.Second, "msg", "member alive", "member", "main", "event", "member_seen")
}
