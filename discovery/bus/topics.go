// Package bus is understudy's MQTT bus: topic names, the heartbeat and
// presence payloads (with a strict decoder), counting of dropped payloads, and
// a client over paho that publishes heartbeats, sets a Last Will per
// connection, and announces a graceful close.
//
// Topic tree (site = site.yaml's site name):
//
//	understudy/<site>/member/<id>/heartbeat  every interval, QoS 0
//	understudy/<site>/member/<id>/presence   retained: online | closed | gone (the Last Will)
//	understudy/<site>/member/<id>/state      retained, from the coordinator: the member as it sees it
//	understudy/<site>/member/<id>/command    from the coordinator: a command for that instance (QoS 1)
//	understudy/<site>/member/<id>/ack        from the instance: its answer to a command (QoS 1)
//	understudy/<site>/member/<id>/health     retained, from the instance: its material disks
//	understudy/<site>/member/<id>/config     retained, from the instance: its configuration bundle and version
//	understudy/<site>/member/<id>/about      retained, from an instance that describes itself (run --describe)
//	understudy/<site>/member/<id>/covering   retained, from the instance: the members whose duties it has taken over
//	understudy/<site>/events                 from the coordinator: every member event and policy action
//	understudy/<site>/takeover               retained, from the coordinator: mode, coverage, queue, proposals
//	understudy/<site>/copies                 retained, from the coordinator: material copies in progress
//	understudy/<site>/drill                  retained, from the coordinator: fire drills running
//	understudy/<site>/command/<verb>         operator commands (confirm, reject, mode, takeover, failback, …)
//	understudy/<site>/command/<verb>/reply   the coordinator's answer to a command
//	understudy/<site>/reply/…                answers to commands that named their reply_to
package bus

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Topics builds the topic names of one site.
type Topics struct{ Site string }

func (t Topics) member(id, leaf string) string {
	return "understudy/" + t.Site + "/member/" + id + "/" + leaf
}

// Heartbeat is the topic a member's heartbeats go to.
func (t Topics) Heartbeat(id string) string { return t.member(id, "heartbeat") }

// Presence is a member's retained presence topic (and its Last Will topic).
func (t Topics) Presence(id string) string { return t.member(id, "presence") }

// State is the retained topic on which the coordinator publishes a member's state.
func (t Topics) State(id string) string { return t.member(id, "state") }

// Events is the coordinator's event stream.
func (t Topics) Events() string { return "understudy/" + t.Site + "/events" }

// Command is the topic an instance receives its commands on.
func (t Topics) Command(id string) string { return t.member(id, "command") }

// Ack is the topic an instance answers commands on.
func (t Topics) Ack(id string) string { return t.member(id, "ack") }

// Health is an instance's retained disk health topic.
func (t Topics) Health(id string) string { return t.member(id, "health") }

// Config is an instance's retained configuration report topic.
func (t Topics) Config(id string) string { return t.member(id, "config") }

// AllConfigs subscribes to every instance's configuration report.
func (t Topics) AllConfigs() string { return t.member("+", "config") }

// About is the retained topic of a member's description of itself.
func (t Topics) About(id string) string { return t.member(id, "about") }

// Raft is the topic a coordinator candidate says who it is in the
// coordinator election on (RaftMember, retained).
func (t Topics) Raft(id string) string { return t.member(id, "raft") }

// AllRaft matches every candidate's RaftMember.
func (t Topics) AllRaft() string { return t.member("+", "raft") }

// AllAbout subscribes to every member's description.
func (t Topics) AllAbout() string { return t.member("+", "about") }

// Covering is an instance's retained report of the members it covers.
func (t Topics) Covering(id string) string { return t.member(id, "covering") }

// AllCovering subscribes to every instance's report of what it covers.
func (t Topics) AllCovering() string { return t.member("+", "covering") }

// AllAcks subscribes to every instance's answers.
func (t Topics) AllAcks() string { return t.member("+", "ack") }

// AllHealth subscribes to every instance's disk health.
func (t Topics) AllHealth() string { return t.member("+", "health") }

// Copy carries the progress of the material copies an instance runs.
func (t Topics) Copy(id string) string { return t.member(id, "copy") }

// AllCopies subscribes to every instance's copy progress.
func (t Topics) AllCopies() string { return t.member("+", "copy") }

// Takeover is the coordinator's retained takeover state.
func (t Topics) Takeover() string { return "understudy/" + t.Site + "/takeover" }

// Copies is the coordinator's retained list of material copies in progress.
func (t Topics) Copies() string { return "understudy/" + t.Site + "/copies" }

// Drill is the coordinator's retained list of fire drills running.
func (t Topics) Drill() string { return "understudy/" + t.Site + "/drill" }

// CoordinatorInfo is the coordinator's retained word of itself
// (CoordinatorInfo).
func (t Topics) CoordinatorInfo() string { return "understudy/" + t.Site + "/coordinator" }

// Alarms is the coordinator's retained list of raised alarms.
func (t Topics) Alarms() string { return "understudy/" + t.Site + "/alarms" }

// Control is the topic of an operator command.
func (t Topics) Control(verb string) string { return "understudy/" + t.Site + "/command/" + verb }

// AllControl subscribes to every operator command.
func (t Topics) AllControl() string { return t.Control("+") }

// VerbOf returns the verb of an operator command topic.
func (t Topics) VerbOf(topic string) (string, bool) {
	return strings.CutPrefix(topic, "understudy/"+t.Site+"/command/")
}

// AllHeartbeats and AllPresence are the subscriptions for every member.
func (t Topics) AllHeartbeats() string { return t.member("+", "heartbeat") }

// AllPresence subscribes to every member's presence.
func (t Topics) AllPresence() string { return t.member("+", "presence") }

// AllStates subscribes to every member's state as the coordinator publishes it.
func (t Topics) AllStates() string { return t.member("+", "state") }

// MemberOf returns the member id and leaf of a member topic of this site.
func (t Topics) MemberOf(topic string) (id, leaf string, ok bool) {
	rest, found := strings.CutPrefix(topic, "understudy/"+t.Site+"/member/")
	if !found {
		return "", "", false
	}
	id, leaf, found = strings.Cut(rest, "/")
	if !found || id == "" || strings.Contains(leaf, "/") {
		return "", "", false
	}
	return id, leaf, true
}

// Limits of what a client of the bus publishes. The embedded broker takes
// packets of up to 1 MiB + 64 KiB (broker.DefaultMaxPacket): the largest
// payload and topic with room for the headers.
const (
	// MaxPublish bounds a payload: the largest understudy sends is a
	// command or a configuration report carrying a bundle (MaxCommandPayload).
	MaxPublish = MaxCommandPayload
	// MaxTopic bounds a topic name.
	MaxTopic = 4096
)

// CheckTopic reports whether topic is a plain topic name one may publish
// on: not empty, at most MaxTopic bytes of UTF-8 without NUL, no wild cards
// (+, #), not a broker's own topic ($SYS/…, anything starting with $).
// Errors wrap ErrInvalid.
func CheckTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalid)
	case len(topic) > MaxTopic:
		return fmt.Errorf("%w: topic of %d bytes (limit %d)", ErrInvalid, len(topic), MaxTopic)
	case !utf8.ValidString(topic) || strings.ContainsRune(topic, 0):
		return fmt.Errorf("%w: topic %q is not UTF-8 text without NUL", ErrInvalid, topic)
	case strings.ContainsAny(topic, "+#"):
		return fmt.Errorf("%w: topic %q: a topic to publish on has no wild cards (+, #)", ErrInvalid, topic)
	case topic[0] == '$':
		return fmt.Errorf("%w: topic %q: topics starting with $ are the broker's", ErrInvalid, topic)
	}
	return nil
}

// CheckPublish checks a message before it is published: a plain topic
// (CheckTopic) and a payload of at most MaxPublish bytes.
func CheckPublish(topic string, payload []byte) error {
	if err := CheckTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if len(payload) > MaxPublish {
		return fmt.Errorf("publish on %s: %w: %d bytes (limit %d)", topic, ErrTooLarge, len(payload), MaxPublish)
	}
	return nil
}
