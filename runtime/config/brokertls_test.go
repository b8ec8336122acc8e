package config

import (
	"fmt"
	"strings"
	"testing"
)

const brokerTLSSite = `site: t
coordinator: a
bus:
%s
members:
  - id: a
`

func TestEmbeddedBrokerTLSSettings(t *testing.T) {
	s, err := Parse("site.yaml", fmt.Appendf(nil, brokerTLSSite, `  listen: none
  listen_tls: ":8883"
  server_tls: {cert: /etc/us/broker.pem, key: /etc/us/broker.key, client_ca: /etc/us/clients.pem}
  tls: {ca: /etc/us/ca.pem, cert: /etc/us/me.pem, key: /etc/us/me.key}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Bus.PlainListen() != "" || s.Bus.ListenTLS != ":8883" || *s.Bus.ServerTLS != (ServerTLS{Cert: "/etc/us/broker.pem", Key: "/etc/us/broker.key", ClientCA: "/etc/us/clients.pem"}) {
		t.Errorf("bus = %+v, server_tls %+v", s.Bus, s.Bus.ServerTLS)
	}
	s, err = Parse("site.yaml", fmt.Appendf(nil, brokerTLSSite, `  listen_tls: "127.0.0.1:0"
  server_tls: {cert: /b.pem, key: /b.key}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Bus.PlainListen() != DefaultBrokerListen {
		t.Errorf("PlainListen() = %q, want the default %q beside TLS", s.Bus.PlainListen(), DefaultBrokerListen)
	}
}

func TestEmbeddedBrokerTLSErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ bus, want string }{
		{"  listen: none", "site.yaml:4:11: bus.listen: none turns the plain listener off, and there is no bus.listen_tls"},
		{"  listen: \"1883\"", `site.yaml:4:11: bus.listen "1883": want host:port`},
		{"  listen_tls: \":88833\"\n  server_tls: {cert: /b.pem, key: /b.key}", `site.yaml:4:15: bus.listen_tls ":88833": the port must be a number`},
		{"  listen_tls: \":8883\"", "site.yaml:4:15: bus.listen_tls needs the broker's certificate"},
		{"  listen: \":8883\"\n  listen_tls: \"0.0.0.0:8883\"\n  server_tls: {cert: /b.pem, key: /b.key}", "site.yaml:5:15: bus.listen_tls \"0.0.0.0:8883\" and bus.listen \":8883\" are the same port"},
		{"  server_tls: {cert: /b.pem, key: /b.key}", "site.yaml:4:16: bus.server_tls is set but bus.listen_tls is not"},
		{"  listen_tls: \":8883\"\n  server_tls: {cert: certs/b.pem, key: /b.key}", `site.yaml:5:22: bus.server_tls.cert: give the absolute path of the PEM file, not "certs/b.pem"`},
		{"  listen_tls: \":8883\"\n  server_tls: {cert: /b.pem}", "site.yaml:5:16: bus.server_tls: give both cert and key"},
		{"  listen: none\n  listen_tls: \":8883\"\n  server_tls: {cert: /b.pem, key: /b.key, client_ca: /c.pem}", "bus.server_tls.client_ca requires client certificates, and with bus.listen: none"},
		{"  listen_tls: \":8883\"\n  server_tls: {cert: /b.pem, key: /b.key, client: /c.pem}", `unknown field "client"`},
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, brokerTLSSite, tc.bus))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bus:\n%s\n  error %v\n  want  %q", tc.bus, err, tc.want)
		}
	}
	// Plain and TLS on different ports, or port 0 twice (tests), are fine.
	for _, bus := range []string{
		"  listen: \":1883\"\n  listen_tls: \":8883\"\n  server_tls: {cert: /b.pem, key: /b.key}",
		"  listen: \"127.0.0.1:0\"\n  listen_tls: \"127.0.0.1:0\"\n  server_tls: {cert: /b.pem, key: /b.key}",
		"  listen: \"10.0.0.1:1883\"\n  listen_tls: \"10.0.0.2:1883\"\n  server_tls: {cert: /b.pem, key: /b.key}",
		"  listen: none\n  listen_tls: \":8883\"\n  server_tls: {cert: /b.pem, key: /b.key, client_ca: /c.pem}\n  tls: {cert: /me.pem, key: /me.key}",
	} {
		if _, err := Parse("site.yaml", fmt.Appendf(nil, brokerTLSSite, bus)); err != nil {
			t.Errorf("bus:\n%s\n  error %v", bus, err)
		}
	}
}
