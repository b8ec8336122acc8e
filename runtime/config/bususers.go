package config

import (
	"fmt"
	"path/filepath"
	"slices"

	"understudy/discovery/broker"
	"understudy/discovery/bus"
)

// BrokerUsers are the embedded broker's accounts with every list filled in:
// a user with no lists may use the site's whole tree (and, when it is the
// instances' account, publish the replies under every reply prefix and,
// with home_assistant.discovery on, the discovery configurations; when it
// has a reply_prefix of its own, read the replies there).
func (s *Site) BrokerUsers() []BusUser {
	out := make([]BusUser, len(s.Bus.Users))
	for i, u := range s.Bus.Users {
		if len(u.Publish) == 0 && len(u.Subscribe) == 0 {
			tree := "understudy/" + s.Name + "/#"
			u.Publish, u.Subscribe = []string{tree}, []string{tree}
			if u.Username == s.Bus.Username {
				// The coordinator answers commands under the reply prefixes.
				u.Publish = append(u.Publish, s.ReplyFilters()...)
				if s.HomeAssistant.Discovery {
					// The coordinator publishes Home Assistant's discovery configurations.
					u.Publish = append(u.Publish, s.HomeAssistant.ConfigFilter())
				}
			}
			if u.ReplyPrefix != "" {
				u.Subscribe = append(u.Subscribe, u.ReplyPrefix+"#")
			}
		}
		out[i] = u
	}
	return out
}

// ReplyPrefixes are the bus users' reply prefixes (bus.users[].reply_prefix),
// sorted, each once: under each of them, as under understudy/<site>/reply/,
// a command may ask for its reply (bus.Topics.ReplyTopic). MQTT does not say
// who published a command, so they hold for every command of the site.
func (s *Site) ReplyPrefixes() []string {
	var out []string
	for _, u := range s.Bus.Users {
		if u.ReplyPrefix != "" {
			out = append(out, u.ReplyPrefix)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ReplyFilters are the topic filters the coordinator publishes replies
// under besides the site's tree: <prefix># for every reply prefix.
func (s *Site) ReplyFilters() []string {
	var out []string
	for _, p := range s.ReplyPrefixes() {
		out = append(out, p+"#")
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
		if s.node(p+".reply_prefix") != nil {
			if err := bus.CheckReplyPrefix(u.ReplyPrefix); err != nil {
				add(p+".reply_prefix", "bus.users: %s: %v", u.Username, err)
			}
		}
	}
	// The instances' account must be allowed to publish the replies under
	// every reply prefix (an account without lists is, see BrokerUsers): the
	// broker would drop them. Beside bus.url without a site key the lists
	// are the external broker's own (see commissionReach).
	for i, u := range s.Bus.Users {
		if u.Username != s.Bus.Username || (len(u.Publish) == 0 && len(u.Subscribe) == 0) || s.Bus.URL != "" && s.AuthMode() == AuthOff {
			continue
		}
		for _, want := range s.ReplyFilters() {
			if !slices.ContainsFunc(u.Publish, func(f string) bool { return broker.Covers(f, want) }) {
				add(fmt.Sprintf("$.bus.users[%d]", i), "bus.users: %s (the instances' account) may not publish to %s, where the coordinator answers commands with a reply_to under a reply_prefix; add that to its publish list", u.Username, want)
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

// commissionReplies is the part of Commission that asks whether a bus user
// with a reply_prefix may read the replies there: one with lists of its own
// that do not let it subscribe to <reply_prefix># would never see them
// (one without lists may, see BrokerUsers). The lists are the broker's only
// where understudy writes them: on the embedded broker, or with a site key
// (broker-config).
func (s *Site) commissionReplies(add func(warning bool, path, format string, args ...any)) {
	if s.Bus.URL != "" && s.AuthMode() == AuthOff {
		return
	}
	for i, u := range s.Bus.Users {
		if u.ReplyPrefix == "" || bus.CheckReplyPrefix(u.ReplyPrefix) != nil || len(u.Publish) == 0 && len(u.Subscribe) == 0 {
			continue
		}
		want := u.ReplyPrefix + "#"
		if !slices.ContainsFunc(u.Subscribe, func(f string) bool { return broker.Covers(f, want) }) {
			add(true, fmt.Sprintf("$.bus.users[%d].reply_prefix", i), "bus.users: %s may not subscribe to %s: it would not see the replies under its reply_prefix (add that to its subscribe list)", u.Username, want)
		}
	}
}
