package config

import (
	"fmt"
	"strings"

	"understudy/discovery/broker"
)

// DefaultHomeAssistantPrefix is Home Assistant's own default discovery prefix.
const DefaultHomeAssistantPrefix = "homeassistant"

// HomeAssistant is the home_assistant section: with Discovery on, the
// coordinator publishes a Home Assistant MQTT discovery configuration per
// member (a connectivity binary_sensor), retained, under Prefix.
type HomeAssistant struct {
	Discovery bool   `yaml:"discovery"`
	Prefix    string `yaml:"prefix"` // Home Assistant's discovery prefix (default homeassistant)
}

// DiscoveryPrefix is Prefix, or Home Assistant's default.
func (h HomeAssistant) DiscoveryPrefix() string {
	if h.Prefix == "" {
		return DefaultHomeAssistantPrefix
	}
	return h.Prefix
}

// ConfigFilter is the topic filter the discovery configurations are
// published under: <prefix>/binary_sensor/+/config.
func (h HomeAssistant) ConfigFilter() string {
	return h.DiscoveryPrefix() + "/binary_sensor/+/config"
}

func (s *Site) validateHomeAssistant(add func(path, format string, args ...any)) {
	h := s.HomeAssistant
	if s.node("$.home_assistant.prefix") != nil {
		p := h.Prefix
		switch {
		case p == "":
			add("$.home_assistant.prefix", "home_assistant.prefix is empty: leave it out for Home Assistant's default, %q", DefaultHomeAssistantPrefix)
		case strings.ContainsAny(p, "+#") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//"):
			add("$.home_assistant.prefix", "home_assistant.prefix %q: an MQTT topic prefix without + or #, and without an empty level (like %q)", p, DefaultHomeAssistantPrefix)
		case p == "understudy" || strings.HasPrefix(p, "understudy/"):
			add("$.home_assistant.prefix", "home_assistant.prefix %q is inside understudy's own topics: use Home Assistant's prefix (%q unless changed there)", p, DefaultHomeAssistantPrefix)
		}
	}
	if !h.Discovery || len(s.Bus.Users) == 0 {
		return
	}
	// The embedded broker's users: the instances' account must be allowed to
	// publish the configurations (an account without lists is, see
	// BrokerUsers), or the broker would end the coordinator's connection.
	for i, u := range s.Bus.Users {
		if u.Username != s.Bus.Username || (len(u.Publish) == 0 && len(u.Subscribe) == 0) {
			continue
		}
		allowed := false
		for _, f := range u.Publish {
			allowed = allowed || broker.Covers(f, h.ConfigFilter())
		}
		if !allowed {
			add(fmt.Sprintf("$.bus.users[%d]", i), "home_assistant.discovery: bus user %s (the instances' account) may not publish to %s; add that to its publish list", u.Username, h.ConfigFilter())
		}
	}
}
