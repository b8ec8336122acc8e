package config

import (
	"fmt"
	"path/filepath"
	"slices"

	"understudy/discovery/broker"
)

// BrokerUsers are the embedded broker's accounts with every list filled in:
// a user with no lists may use the site's whole tree (and, when it is the
// instances' account and home_assistant.discovery is on, publish the
// discovery configurations).
func (s *Site) BrokerUsers() []BusUser {
	out := make([]BusUser, len(s.Bus.Users))
	for i, u := range s.Bus.Users {
		if len(u.Publish) == 0 && len(u.Subscribe) == 0 {
			tree := "understudy/" + s.Name + "/#"
			u.Publish, u.Subscribe = []string{tree}, []string{tree}
			if u.Username == s.Bus.Username && s.HomeAssistant.Discovery {
				// The coordinator publishes Home Assistant's discovery configurations.
				u.Publish = append(u.Publish, s.HomeAssistant.ConfigFilter())
			}
		}
		out[i] = u
	}
	return out
}

func (s *Site) validateBusUsers(add func(path, format string, args ...any)) {
	seen := map[string]bool{}
	for i, u := range s.Bus.Users {
		p := fmt.Sprintf("$.bus.users[%d]", i)
		switch {
		case u.Username == "":
			add(p, "bus.users: a user needs a username")
		case seen[u.Username]:
			add(p+".username", "bus.users: %q is there twice", u.Username)
		case u.Password == "":
			add(p, "bus.users: %s needs a password", u.Username)
		}
		seen[u.Username] = true
		for j, f := range slices.Concat(u.Publish, u.Subscribe) {
			if err := broker.CheckFilter(f); err != nil {
				add(p, "bus.users: %s: filter %d: %v", u.Username, j+1, err)
			}
		}
	}
	switch s.Bus.Anonymous {
	case "", AnonymousNone, AnonymousRead:
	default:
		add("$.bus.anonymous", "bus.anonymous %q: want none or read", s.Bus.Anonymous)
	}
	if s.Bus.Anonymous != "" && s.AuthMode() == AuthOff {
		add("$.bus.anonymous", "bus.anonymous needs a site key (auth): without one the embedded broker lets everyone in unless bus.users are set")
	}
	if len(s.Bus.Users) > 0 && s.AuthMode() == AuthOff {
		switch {
		case s.Bus.Username == "":
			add("$.bus", "bus.users are set: the instances need an account too (bus.username and bus.password, one of the users)")
		case !seen[s.Bus.Username]:
			add("$.bus.username", "bus.username %q is not one of bus.users: the instances could not log in", s.Bus.Username)
		}
	}
	if t := s.Bus.TLS; t != nil {
		for key, f := range map[string]string{"ca": t.CA, "cert": t.Cert, "key": t.Key} {
			if f != "" && !filepath.IsAbs(f) {
				add("$.bus.tls."+key, "bus.tls.%s: give the absolute path of the PEM file, not %q", key, f)
			}
		}
		if (t.Cert == "") != (t.Key == "") {
			add("$.bus.tls", "bus.tls: give both cert and key, or neither")
		}
	}
}
