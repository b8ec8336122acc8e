package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

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
		case strings.HasPrefix(u.Username, instanceUserPrefix):
			add(p+".username", "bus.users: %q: names beginning with %q are the instances' own accounts, derived from the site key; choose another name", u.Username, instanceUserPrefix)
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
			add("$.bus", "bus.users are set and the site has no key: the instances need an account too (bus.username and bus.password, one of the users); or give the site a key first (understudy keys new, with bus.users left out until it is made), and every instance logs in with an account of its own")
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

// commissionBusAccount is the part of Commission that looks at bus.username
// and bus.password on a site with a key. While bus.username is set the
// instances log in with it, one account for all, rather than each with its
// own understudy-<member> account derived from the key (which the broker
// holds to that member's topics): as a site of the previous release did,
// and as its instances not yet upgraded still do. With a key the embedded
// broker and the files of broker-config have only the instances' own
// accounts and bus.users: an account that is not one of bus.users is
// refused there. On the embedded broker, once it is closed (auth required,
// or any bus.users), that leaves no instance on the bus: an error. The rest
// are warnings that say what to do.
func (s *Site) commissionBusAccount(add func(warning bool, path, format string, args ...any)) {
	if s.AuthMode() == AuthOff || s.Bus.Username == "" && s.Bus.Password == "" {
		return
	}
	const own = "each instance logs in with its own account (understudy-<member>, its password derived from the key, held by the broker to that member's topics)"
	if s.Bus.Username == "" {
		add(true, "$.bus.password", "bus.password is not used: with a site key and no bus.username %s; remove it", own)
		return
	}
	user := s.Bus.Username
	if slices.ContainsFunc(s.Bus.Users, func(u BusUser) bool { return u.Username == user }) {
		add(true, "$.bus.username", "bus.username %s: with a site key the instances still log in with this one shared account while it is set; remove bus.username and bus.password, and %s; keep %s in bus.users only while instances of the previous release log in with it (during an upgrade)", user, own, user)
		return
	}
	const fix = "remove bus.username and bus.password, and %s; while instances of the previous release log in as %s (during an upgrade), add that account to bus.users"
	if s.Bus.URL != "" {
		add(true, "$.bus.username", "bus.username %s is not one of bus.users: with a site key the instances log in to %s with this one shared account while it is set, and the files of broker-config have only the instances' own accounts and bus.users, so a mosquitto configured with them refuses it, even in permissive mode; "+fix, user, s.Bus.URL, own, user)
		return
	}
	closed := s.AuthMode() == AuthRequired || len(s.Bus.Users) > 0
	refuses := "refuses them"
	if !closed {
		refuses = "will refuse them once it is closed (auth required, or any bus.users)"
	}
	add(!closed, "$.bus.username", "bus.username %s is not one of bus.users: with a site key the instances log in with this one shared account while it is set, and the embedded broker (its accounts are then the instances' own and bus.users) %s, its own member's instance included; "+fix, user, refuses, own, user)
}
