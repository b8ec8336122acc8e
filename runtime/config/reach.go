package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// commissionReach is the part of Commission that asks whether the members
// can reach the bus and each other as site.yaml says: a member that can never
// find the broker, embedded-broker settings bus.url makes pointless,
// addresses on loopback that mDNS announces to peers, and two instances that
// would listen on the same API address.
func (s *Site) commissionReach(add func(warning bool, path, format string, args ...any)) {
	// The members that run understudy (a probed member runs none), and
	// those among them that do not embed the broker.
	var instances, others []string
	for _, m := range s.Members {
		if m.Probe != nil {
			continue
		}
		instances = append(instances, m.ID)
		if m.ID != s.Bus.BrokerOn {
			others = append(others, m.ID)
		}
	}
	if s.Bus.URL == "" && !s.UseMDNS() && len(others) > 0 && s.CandidateBrokers() == nil {
		add(false, "$.mdns", "mdns is false and there is no bus.url: only %s (bus.broker_on) embeds a broker, and %s can never find it (without mDNS only bus.url tells an instance where the broker is): set bus.url to a broker every member reaches (then no member embeds one), or turn mdns on",
			s.Bus.BrokerOn, strings.Join(others, ", "))
	}
	if s.Bus.URL != "" {
		// The embedded broker starts only without bus.url.
		for _, key := range []string{"broker_on", "listen", "listen_tls", "server_tls", "users", "discover"} {
			if key == "users" && s.AuthMode() != AuthOff {
				continue // understudy broker-config writes them into the external broker's files
			}
			switch {
			case s.node("$.bus."+key) == nil:
			case key == "users" && len(s.ReplyPrefixes()) > 0:
				add(true, "$.bus."+key, "bus.users are ignored but for their reply_prefix: with bus.url every member connects to %s and no member embeds a broker (that broker must let the coordinator publish to %s)", s.Bus.URL, strings.Join(s.ReplyFilters(), ", "))
			default:
				add(true, "$.bus."+key, "bus.%s is ignored: with bus.url every member connects to %s and no member embeds a broker", key, s.Bus.URL)
			}
		}
	}
	if s.CandidateBrokers() != nil {
		// Every candidate embeds a broker at its broker: address.
		for _, key := range []string{"broker_on", "listen", "discover"} {
			if s.node("$.bus."+key) != nil {
				add(true, "$.bus."+key, "bus.%s is ignored: every coordinator candidate embeds a broker at its broker: address, and every instance connects to each", key)
			}
		}
	}
	if s.Bus.URL == "" && s.UseMDNS() && len(others) > 0 && s.CandidateBrokers() == nil {
		// A listener on loopback is not announced by mDNS: the others reach
		// the broker only through a listener that is not.
		var loopback, reachable []string
		for _, l := range []struct{ key, addr string }{{"listen", s.Bus.PlainListen()}, {"listen_tls", s.Bus.ListenTLS}} {
			host, _, err := net.SplitHostPort(l.addr)
			switch {
			case err != nil:
			case isLoopback(host):
				loopback = append(loopback, l.key)
			default:
				reachable = append(reachable, l.key)
			}
		}
		for _, key := range loopback {
			addr := s.Bus.PlainListen()
			if key == "listen_tls" {
				addr = s.Bus.ListenTLS
			}
			if len(reachable) == 0 {
				add(false, "$.bus."+key, "bus.%s %s is on loopback and the embedded broker listens nowhere else: it is not announced by mDNS, and the other members (%s) can never reach it: listen on all addresses (\":%s\") or on one the others reach, or set bus.url to a broker of your own that every member reaches (then no member embeds one)",
					key, addr, strings.Join(others, ", "), portOf(addr))
				continue
			}
			add(true, "$.bus."+key, "bus.%s %s is on loopback: it is not announced by mDNS, and the other members (%s) reach the broker only on bus.%s",
				key, addr, strings.Join(others, ", "), strings.Join(reachable, ", "))
		}
	}
	s.commissionAPIs(add, instances)
	s.commissionListeners(add)
}

// commissionListeners finds two listeners of the site at one address: a
// member's raft:, broker: or material_server: that is another's (or the
// same member's) api:, raft:, broker: or material_server: — the second
// could not listen (address in use). api: against api: is commissionAPIs'.
func (s *Site) commissionListeners(add func(warning bool, path, format string, args ...any)) {
	type listener struct{ member, key string }
	seen := map[string]listener{}
	for i, m := range s.Members {
		if m.Probe != nil {
			continue
		}
		p := fmt.Sprintf("$.members[%d]", i)
		for _, l := range []struct{ key, addr string }{{"api", m.API}, {"raft", m.Raft}, {"broker", m.Broker}, {"material_server", m.MaterialServer}} {
			host, port, err := net.SplitHostPort(l.addr)
			if err != nil || port == "0" || isUnspecified(host) || (l.key == "api" && s.node(p+".api") == nil) {
				continue
			}
			k := normalHost(host) + ":" + port
			first, dup := seen[k]
			if !dup {
				seen[k] = listener{m.ID, l.key}
				continue
			}
			if l.key == "api" && first.key == "api" {
				continue // commissionAPIs says it, with the nuances of loopback
			}
			add(false, p+"."+l.key, "%s's %s %s is also %s's %s: one machine cannot listen on it twice (address in use); give each its own port", m.ID, l.key, l.addr, first.member, first.key)
		}
	}
}

// commissionAPIs looks at the members' api: addresses.
func (s *Site) commissionAPIs(add func(warning bool, path, format string, args ...any), instances []string) {
	// With a broker on loopback every instance runs on this one machine.
	oneMachine := false
	if u, err := url.Parse(s.Bus.URL); err == nil && s.Bus.URL != "" && isLoopback(u.Hostname()) {
		oneMachine = true
	}
	first := map[string]int{} // api address → index of the first member that has it
	for i, m := range s.Members {
		if m.Probe != nil {
			continue
		}
		p := fmt.Sprintf("$.members[%d]", i)
		written := s.node(p+".api") != nil
		host, port, err := net.SplitHostPort(m.API)
		if err != nil {
			continue
		}
		if written && s.UseMDNS() && len(instances) > 1 && isLoopback(host) {
			add(true, p+".api", "%s's api %s is on loopback: it is not announced by mDNS, and peers on other machines cannot see its status and dashboard; give an address they reach (like \":%s\") if they should (with every instance on this one machine, as in a trial, this warning is expected)",
				m.ID, m.API, port)
		}
		if port == "0" || !written && !oneMachine {
			continue // a port of the system's choice, or a default on machines of their own
		}
		key := normalHost(host) + ":" + port
		j, seen := first[key]
		if !seen {
			first[key] = i
			continue
		}
		other := s.Members[j]
		switch {
		case oneMachine:
			add(false, p+".api", "%s's api %s is %s's too, and bus.url %s says every member runs on this machine: the second instance cannot start (address in use); give each member its own port",
				m.ID, m.API, other.ID, s.Bus.URL)
		case host != "" && !isLoopback(host) && !isUnspecified(host):
			add(false, p+".api", "%s's api %s is %s's too: both would run on the machine with that address, and the second instance cannot start (address in use); give each member its own port",
				m.ID, m.API, other.ID)
		case isLoopback(host):
			add(true, p+".api", "%s's api %s is %s's too: if the two run on the same machine, the second instance cannot start (address in use); give each its own port",
				m.ID, m.API, other.ID)
		}
	}
}

// isLoopback reports whether host (an IP address or a name) is this
// machine's loopback: localhost, any address of 127.0.0.0/8 or ::1, as the
// status API decides whether it answers without a token
// (instance.onLoopback: net.IP.IsLoopback of its listener).
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isUnspecified reports whether host means every address of the machine.
func isUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// normalHost writes the addresses that mean the same listener alike.
func normalHost(host string) string {
	switch {
	case isUnspecified(host):
		return ""
	case strings.EqualFold(host, "localhost"):
		return "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return strings.ToLower(host)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
