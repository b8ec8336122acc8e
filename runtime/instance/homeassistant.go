package instance

import (
	"encoding/json"
	"fmt"
	"strings"

	"understudy/discovery/bus"
	"understudy/runtime/config"
)

// Home Assistant MQTT discovery (site.yaml home_assistant: {discovery: true}).
// The coordinator publishes, retained, one binary_sensor per member at
// <prefix>/binary_sensor/understudy_<site>_<member>/config: a connectivity
// sensor that reads the member's state topic (ON for alive and suspect),
// shows the rest of that topic (covered_by, reason, …) as attributes, and is
// available while the coordinator's presence is online. It publishes them on
// every bus connection (a broker restarted without persistence has forgotten
// them) and for members that describe themselves later.

// Templates of the discovery configurations, in Home Assistant's Jinja.
const (
	// haValueTemplate turns the member's state into the sensor's ON/OFF.
	haValueTemplate = "{{ 'ON' if value_json.state in ['alive', 'suspect'] else 'OFF' }}"
	// haAvailabilityTemplate turns the coordinator's presence (online,
	// closed, gone) into Home Assistant's online/offline.
	haAvailabilityTemplate = "{{ 'online' if value_json.state == 'online' else 'offline' }}"
)

// haBinarySensor is a binary_sensor discovery configuration.
type haBinarySensor struct {
	Name     string `json:"name"`
	UniqueID string `json:"unique_id"`
	// ObjectID suggests the entity id to Home Assistant before 2025.10;
	// DefaultEntityID replaces it from 2025.10 on. Each version drops the
	// key it does not know.
	ObjectID            string           `json:"object_id"`
	DefaultEntityID     string           `json:"default_entity_id"`
	DeviceClass         string           `json:"device_class"`
	StateTopic          string           `json:"state_topic"`
	ValueTemplate       string           `json:"value_template"`
	PayloadOn           string           `json:"payload_on"`
	PayloadOff          string           `json:"payload_off"`
	JSONAttributesTopic string           `json:"json_attributes_topic"`
	QoS                 int              `json:"qos"`
	Availability        []haAvailability `json:"availability"`
	Device              haDevice         `json:"device"`
	Origin              haOrigin         `json:"origin"`
}

type haAvailability struct {
	Topic               string `json:"topic"`
	ValueTemplate       string `json:"value_template"`
	PayloadAvailable    string `json:"payload_available"`
	PayloadNotAvailable string `json:"payload_not_available"`
}

// haDevice groups a site's sensors into one device.
type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	SWVersion    string   `json:"sw_version,omitempty"`
}

type haOrigin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

// homeAssistantConfig returns the discovery topic and configuration of
// member's binary_sensor.
func homeAssistantConfig(prefix, site, coordinator, member, version string) (topic string, payload []byte, err error) {
	topics := bus.Topics{Site: site}
	id := "understudy_" + site + "_" + member
	slug := haSlug(id)
	c := haBinarySensor{
		Name:                member,
		UniqueID:            id,
		ObjectID:            slug,
		DefaultEntityID:     "binary_sensor." + slug,
		DeviceClass:         "connectivity",
		StateTopic:          topics.State(member),
		ValueTemplate:       haValueTemplate,
		PayloadOn:           "ON",
		PayloadOff:          "OFF",
		JSONAttributesTopic: topics.State(member),
		QoS:                 1,
		Availability: []haAvailability{{
			Topic:               topics.Presence(coordinator),
			ValueTemplate:       haAvailabilityTemplate,
			PayloadAvailable:    "online",
			PayloadNotAvailable: "offline",
		}},
		Device: haDevice{
			Identifiers:  []string{"understudy_" + site},
			Name:         "understudy " + site,
			Manufacturer: "understudy",
			Model:        "failover site",
			SWVersion:    version,
		},
		Origin: haOrigin{Name: "understudy", SWVersion: version},
	}
	payload, err = json.Marshal(c)
	if err != nil {
		return "", nil, fmt.Errorf("home assistant discovery of %s: %w", member, err)
	}
	return prefix + "/binary_sensor/" + haTopicID(id) + "/config", payload, nil
}

// haTopicID keeps what Home Assistant allows in a discovery topic's object
// id, [a-zA-Z0-9_-]; other characters (a '.' of a member id) become '_'.
func haTopicID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// haSlug is s as an entity id's object part: lower case letters, digits and
// single underscores, none at either end.
func haSlug(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			under = false
			continue
		}
		under = true
	}
	return b.String()
}

// publishHomeAssistant publishes the discovery configurations of the members
// ids, on the coordinator of a site with home_assistant.discovery.
func (inst *Instance) publishHomeAssistant(ids ...string) {
	h := inst.site.HomeAssistant
	if !h.Discovery || inst.coord.Load() == nil || len(ids) == 0 {
		return
	}
	for _, id := range ids {
		topic, payload, err := homeAssistantConfig(h.DiscoveryPrefix(), inst.site.Name, inst.site.Coordinator, id, inst.opts.Version)
		if err != nil {
			inst.log.Error("Home Assistant discovery not encoded", "member", id, "error", err)
			continue
		}
		if err := (publisher{inst}).Publish(topic, 1, true, payload); err != nil {
			inst.log.Debug("Home Assistant discovery not published", "member", id, "error", err)
			return
		}
	}
	inst.log.Info("Home Assistant discovery published", "prefix", h.DiscoveryPrefix(), "members", strings.Join(ids, ","))
}

// homeAssistantDescribed publishes the discovery configuration of a member
// that described itself, if the site takes the description (the engine
// drops and counts one it refuses). It is called from the bus's message
// handler, which must not block: the publish runs on the engine's loop,
// after the engine has taken the description.
func (inst *Instance) homeAssistantDescribed(m config.Member) {
	if !inst.site.HomeAssistant.Discovery || inst.coord.Load() == nil {
		return
	}
	inst.engine.Post(func() {
		if _, err := inst.site.Clone().Describe(m); err != nil {
			return
		}
		inst.publishHomeAssistant(m.ID)
	})
}
