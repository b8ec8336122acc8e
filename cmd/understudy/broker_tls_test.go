package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/testhost"
	"understudy/fixtures/testpki"
)

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
			ca := testpki.New(t, "site-ca")
			srvCert, srvKey := ca.Issue("broker", x509.ExtKeyUsageServerAuth, "127.0.0.1")
			addr := freePort(t)
			name := "tls-embedded"
			serverTLS := fmt.Sprintf("server_tls: {cert: %q, key: %q}", srvCert, srvKey)
			clientTLS := fmt.Sprintf("tls: {ca: %q}", ca.File)
			var subCert []string // mosquitto_sub's certificate
			if clientCerts {
				name = "tls-clients"
				clients := testpki.New(t, "client-ca")
				serverTLS = fmt.Sprintf("server_tls: {cert: %q, key: %q, client_ca: %q}", srvCert, srvKey, clients.File)
				cert, key := clients.Issue("members", x509.ExtKeyUsageClientAuth)
				clientTLS = fmt.Sprintf("tls: {ca: %q, cert: %q, key: %q}", ca.File, cert, key)
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
			out, err := tlsSub(t, addr, presence, append([]string{"--cafile", ca.File}, subCert...)...)
			if err != nil || !strings.Contains(out, `"state":"online"`) {
				t.Fatalf("mosquitto_sub --cafile: %v %s", err, out)
			}

			// Refused: trusting only the system's CAs; with client
			// certificates required, without one.
			refused := map[string][]string{"the system's CAs": append([]string{"--capath", "/etc/ssl/certs"}, subCert...)}
			if clientCerts {
				refused["no client certificate"] = []string{"--cafile", ca.File}
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
	ca := testpki.New(t, "site-ca")
	cert, key := ca.Issue("broker", x509.ExtKeyUsageServerAuth, b.Addr.String())
	site := writeSite(t, siteParams{Name: "stage-tls", MDNS: true, Router: l.Addr().String(),
		Bus: fmt.Sprintf(`discover: 2s, listen_tls: ":8883", server_tls: {cert: %q, key: %q}, tls: {ca: %q}`, cert, key, ca.File)})
	backup := runIn(t, b, site, "backup")
	backup.wait(30*time.Second, "msg", "embedded broker started", "listen", ":1883", "listen_tls", ":8883")
	backup.wait(30*time.Second, "msg", "bus connected", "broker", "tcp://127.0.0.1:1883")
	main := runIn(t, a, site, "main")
	tlsURL := "ssl://" + net.JoinHostPort(b.Addr.String(), "8883")
	main.wait(30*time.Second, "msg", "found the site's broker by mDNS", "broker", tlsURL)
	main.wait(30*time.Second, "msg", "bus connected", "broker", tlsURL)
	backup.wait(30*time.Second, "msg", "member alive", "member", "main", "event", "member_seen")
	// Their status APIs listen on loopback (the default): not announced.
	for _, d := range []*daemon{main, backup} {
		d.wait(10*time.Second, "level", "WARN", "msg", "(loopback): not announced by mDNS; set the member's api: to a LAN address", "api", "127.0.0.1:")
	}
}
