package config

import (
	"net"
	"path/filepath"
	"strconv"
)

// ListenNone as bus.listen turns the embedded broker's plain listener off:
// it listens only on bus.listen_tls.
const ListenNone = "none"

// ServerTLS names the embedded broker's TLS files (PEM, absolute paths; read
// when the broker starts, on the member that embeds it).
type ServerTLS struct {
	Cert string `yaml:"cert"` // the broker's certificate (with the chain up to the CA clients trust)
	Key  string `yaml:"key"`  // its private key
	// ClientCA, when set, is the CA whose client certificates the TLS
	// listener requires: a client without one is refused.
	ClientCA string `yaml:"client_ca"`
}

// PlainListen is the address of the embedded broker's plain listener, or ""
// when bus.listen is "none".
func (b Bus) PlainListen() string {
	if b.Listen == ListenNone {
		return ""
	}
	return b.Listen
}

func (s *Site) validateBrokerTLS(add func(path, format string, args ...any)) {
	b := s.Bus
	if b.Listen == ListenNone && b.ListenTLS == "" {
		add("$.bus.listen", "bus.listen: none turns the plain listener off, and there is no bus.listen_tls: the embedded broker would not listen at all")
	}
	if b.Listen != ListenNone {
		checkListenAddress(add, "$.bus.listen", "bus.listen", b.Listen)
	}
	if b.ListenTLS != "" {
		checkListenAddress(add, "$.bus.listen_tls", "bus.listen_tls", b.ListenTLS)
		if b.ServerTLS == nil {
			add("$.bus.listen_tls", "bus.listen_tls needs the broker's certificate: bus.server_tls: {cert: …, key: …}")
		}
		if samePort(b.PlainListen(), b.ListenTLS) {
			add("$.bus.listen_tls", "bus.listen_tls %q and bus.listen %q are the same port", b.ListenTLS, b.Listen)
		}
	}
	t := b.ServerTLS
	if t == nil {
		return
	}
	if b.ListenTLS == "" {
		add("$.bus.server_tls", "bus.server_tls is set but bus.listen_tls is not: say where the embedded broker listens for TLS (for example \":8883\")")
	}
	for _, f := range []struct{ key, path string }{{"cert", t.Cert}, {"key", t.Key}, {"client_ca", t.ClientCA}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			add("$.bus.server_tls."+f.key, "bus.server_tls.%s: give the absolute path of the PEM file, not %q", f.key, f.path)
		}
	}
	if t.Cert == "" || t.Key == "" {
		add("$.bus.server_tls", "bus.server_tls: give both cert and key")
	}
	// With only a TLS listener, the instance that embeds the broker connects
	// to it over TLS too, and then needs a client certificate of its own.
	if t.ClientCA != "" && b.Listen == ListenNone && (b.TLS == nil || b.TLS.Cert == "") {
		add("$.bus.server_tls.client_ca", "bus.server_tls.client_ca requires client certificates, and with bus.listen: none the instance that embeds the broker connects over TLS as well: give it one in bus.tls: {cert: …, key: …}")
	}
}

// checkListenAddress checks a listen address: host:port (host may be empty).
func checkListenAddress(add func(path, format string, args ...any), path, key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		add(path, "%s %q: want host:port or :port (for example \":8883\")", key, addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add(path, "%s %q: the port must be a number from 0 to 65535", key, addr)
	}
}

// samePort reports whether two listen addresses would collide: the same port
// (not 0) on the same host, or on every interface.
func samePort(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { ip := net.ParseIP(h); return h == "" || (ip != nil && ip.IsUnspecified()) }
	return ha == hb || wild(ha) || wild(hb)
}
