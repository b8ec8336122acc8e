package config

import (
	"understudy/discovery/broker"
	"understudy/sitekey"
)

// Anonymous access to the embedded broker when the site has a key.
const (
	AnonymousNone = "none" // refused (the default with a site key)
	AnonymousRead = "read" // may subscribe to the site's tree, publish nothing
)

// instanceUserPrefix begins the name of every instance's broker account;
// bus.users may not use it.
const instanceUserPrefix = "understudy-"

// InstanceUsername is the broker account of member id's instance when the
// site has a key.
func InstanceUsername(id string) string { return instanceUserPrefix + id }

// ownLeaves are the topics a member's instance publishes under its own
// member topic.
func ownLeaves() []string {
	return []string{"heartbeat", "presence", "ack", "health", "config", "about", "copy", "covering", "raft"}
}

// OwnTopics is the embedded broker's rule for the instances' own topics:
// InstanceUsername(id) publishes understudy/<site>/member/<id>/<leaf> for
// each leaf InstanceAccounts lists, checked from the name and the topic
// alone (see broker.OwnTopics).
func (s *Site) OwnTopics() *broker.OwnTopics {
	return &broker.OwnTopics{UserPrefix: instanceUserPrefix, TopicPrefix: "understudy/" + s.Name + "/member/", Leaves: ownLeaves()}
}

// InstancePassword is the broker password of member id's instance, derived
// from the site key: the signing key's first, then what the other keys of
// the ring derive (accepted during a key change). Every machine with the key
// computes the same, so there is no password to copy.
func (s *Site) InstancePassword(ring *sitekey.Ring, id string) (password string, alternates []string) {
	all := ring.Derive("broker password " + s.Name + " " + id)
	if len(all) == 0 {
		return "", nil
	}
	return all[0], all[1:]
}

// InstanceAccounts are the embedded broker's accounts of the site's own
// instances when it has a key, with what each may do: the coordinator
// publishes anywhere in the site's tree, under every reply prefix of
// bus.users (it alone answers operator commands, and a command may ask for
// its reply there) and Home Assistant's discovery configurations when that
// is on; where the coordinator is elected, so does every candidate (a
// witness too: any of them may be the leader); any other member only on its
// own topics (heartbeat, presence, ack, health, config, about, copy
// progress, covering) and the operator command topics it passes on.
// Everyone reads the site's tree.
func (s *Site) InstanceAccounts(ring *sitekey.Ring) []BusUser {
	tree := "understudy/" + s.Name + "/#"
	elected := s.Elected()
	var out []BusUser
	for _, m := range s.Members {
		if m.Probe != nil {
			continue // checked by a probe: runs no instance
		}
		u := BusUser{Username: InstanceUsername(m.ID), Subscribe: []string{tree}}
		u.Password, u.Alternates = s.InstancePassword(ring, m.ID)
		if m.ID == s.Coordinator || (elected && s.IsCandidate(m.ID)) {
			u.Publish = append([]string{tree}, s.ReplyFilters()...)
			if s.HomeAssistant.Discovery {
				u.Publish = append(u.Publish, s.HomeAssistant.ConfigFilter())
			}
		} else {
			own := "understudy/" + s.Name + "/member/" + m.ID + "/"
			for _, leaf := range ownLeaves() {
				u.Publish = append(u.Publish, own+leaf)
			}
			u.Publish = append(u.Publish, "understudy/"+s.Name+"/command/+")
		}
		out = append(out, u)
	}
	if s.Bus.Anonymous == AnonymousRead {
		out = append(out, BusUser{Subscribe: []string{tree}})
	}
	return out
}
