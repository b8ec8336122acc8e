// Package inbound is where every bus message enters an instance: a table of
// routes, each a topic filter, a decoder and the input the message becomes
// (the loop's, the coordinator's, the agent's, the operator commands').
// A message that does not decode is dropped and counted there, once, the
// same way for every kind, after the code of a message between instances is
// checked (Auth).
// The daemon installs the table on its MQTT client; tests install it on
// Memory and hand it the same messages.
package inbound

import (
	"understudy/discovery/bus"
	"understudy/runtime/config"
)

// Loop takes what every instance keeps: the member table's inputs and the
// members' descriptions of themselves (engine.Engine).
type Loop interface {
	Heartbeat(bus.Heartbeat)
	Presence(p bus.Presence, retained bool)
	About(config.Member)
}

// Coordinator takes what other instances report to the coordinator
// (coordinator.Coordinator).
type Coordinator interface {
	Ack(bus.Ack)
	ConfigReport(bus.ConfigReport)
	Health(bus.Health)
	CopyProgress(bus.CopyProgress)
	Covering(bus.Covering)
}

// Inputs are where decoded messages go.
type Inputs struct {
	Loop Loop
	// Coordinator is nil on an instance that does not coordinate: it then
	// subscribes to none of the coordinator's topics.
	Coordinator Coordinator
	// Command takes a command for this member's instance (the agent).
	Command func(payload []byte)
	// Control takes an operator command (on the coordinator).
	Control func(bus.Message)
	// Reply takes the coordinator's reply to a command this instance passed
	// on (one that does not coordinate, now or ever); ReplyFilter is the
	// topic filter of those replies.
	Reply       func(bus.Message)
	ReplyFilter string
	// Described, when set, also sees each member's description.
	Described func(config.Member)
	// CoordinatorInfo, when set, takes the coordinator's word of itself.
	CoordinatorInfo func(bus.CoordinatorInfo)
	// RaftMember, when set (on a coordinator candidate), takes each
	// candidate's word of itself in the election.
	RaftMember func(bus.RaftMember)
}

// Route is one row of the table: the messages on Filter (received at QoS)
// are decoded by Decode, which returns the input to hand over (nil:
// nothing, such as a cleared retained message) or why the message is
// dropped.
type Route struct {
	Name   string
	Filter string
	QoS    byte
	// From says who may send these messages: with authentication on, the
	// messages of every route but Anyone's must carry a site key's code
	// (and on Anyone's, a code a message carries is checked).
	From Sender
	// State: the topic's retained message is the sender's last state (its
	// presence, description, health, config), taken whenever its code is
	// good; on the other routes a retained message is news like any other,
	// and a stale one a replay.
	State bool
	// PerPath: on a site with several brokers, each broker carries its own
	// of these (a member's presence on it, its Will), not a copy of one
	// sent on every path; they are told apart by path (bus.Freshness).
	PerPath bool
	Decode  func(member string, m bus.Message) (hand func(), err error)
}

// Routes is the table of an instance of site member self.
func Routes(topics bus.Topics, self string, in Inputs) []Route {
	rs := []Route{
		{Name: "heartbeat", From: TopicMember, Filter: topics.AllHeartbeats(), QoS: 0, Decode: func(id string, m bus.Message) (func(), error) {
			hb, err := bus.DecodeHeartbeat(id, m.Payload)
			return func() { in.Loop.Heartbeat(hb) }, err
		}},
		{Name: "presence", From: TopicMember, State: true, PerPath: true, Filter: topics.AllPresence(), QoS: 1, Decode: func(id string, m bus.Message) (func(), error) {
			if len(m.Payload) == 0 {
				return nil, nil // a cleared retained message
			}
			p, err := bus.DecodePresence(id, m.Payload)
			p.Path = m.Path
			return func() { in.Loop.Presence(p, m.Retained) }, err
		}},
		{Name: "command", From: ACoordinator, Filter: topics.Command(self), QoS: 1, Decode: func(_ string, m bus.Message) (func(), error) {
			return func() { in.Command(m.Payload) }, nil // the agent decodes, answers and counts
		}},
		{Name: "about", From: TopicMember, State: true, Filter: topics.AllAbout(), QoS: 1, Decode: func(id string, m bus.Message) (func(), error) {
			if len(m.Payload) == 0 || id == self {
				return nil, nil // cleared, or this instance's own
			}
			about, err := bus.DecodeAbout[config.Member](id, m.Payload)
			return func() {
				in.Loop.About(about)
				if in.Described != nil {
					in.Described(about)
				}
			}, err
		}},
	}
	if in.CoordinatorInfo != nil {
		rs = append(rs, Route{Name: "coordinator", From: ACoordinator, State: true, Filter: topics.CoordinatorInfo(), QoS: 1, Decode: func(_ string, m bus.Message) (func(), error) {
			if len(m.Payload) == 0 {
				return nil, nil
			}
			ci, err := bus.DecodeCoordinatorInfo(m.Payload)
			return func() { in.CoordinatorInfo(ci) }, err
		}})
	}
	if in.RaftMember != nil {
		rs = append(rs, Route{Name: "raft", From: TopicMember, State: true, Filter: topics.AllRaft(), QoS: 1, Decode: func(id string, m bus.Message) (func(), error) {
			if len(m.Payload) == 0 {
				return nil, nil
			}
			r, err := bus.DecodeRaftMember(id, m.Payload)
			return func() { in.RaftMember(r) }, err
		}})
	}
	if c := in.Coordinator; c != nil {
		rs = append(rs,
			Route{Name: "ack", From: TopicMember, Filter: topics.AllAcks(), QoS: 1, Decode: func(id string, m bus.Message) (func(), error) {
				a, err := bus.DecodeAck(id, m.Payload)
				return func() { c.Ack(a) }, err
			}},
			Route{Name: "config", From: TopicMember, State: true, Filter: topics.AllConfigs(), QoS: 1, Decode: func(id string, m bus.Message) (func(), error) {
				if len(m.Payload) == 0 {
					return nil, nil
				}
				r, err := bus.DecodeConfigReport(id, m.Payload)
				return func() { c.ConfigReport(r) }, err
			}},
			Route{Name: "health", From: TopicMember, State: true, Filter: topics.AllHealth(), QoS: 1, Decode: func(id string, m bus.Message) (func(), error) {
				if len(m.Payload) == 0 {
					return nil, nil
				}
				h, err := bus.DecodeHealth(id, m.Payload)
				return func() { c.Health(h) }, err
			}},
			Route{Name: "covering", From: TopicMember, State: true, Filter: topics.AllCovering(), QoS: 1, Decode: func(id string, m bus.Message) (func(), error) {
				if len(m.Payload) == 0 {
					return nil, nil
				}
				r, err := bus.DecodeCovering(id, m.Payload)
				return func() { c.Covering(r) }, err
			}},
			Route{Name: "copy", From: TopicMember, Filter: topics.AllCopies(), QoS: 0, Decode: func(id string, m bus.Message) (func(), error) {
				p, err := bus.DecodeCopyProgress(id, m.Payload)
				return func() { c.CopyProgress(p) }, err
			}},
			Route{Name: "control", From: Anyone, Filter: topics.AllControl(), QoS: 1, Decode: func(_ string, m bus.Message) (func(), error) {
				return func() { in.Control(m) }, nil // decoded, answered and counted where it is carried out
			}},
		)
	}
	if in.Reply != nil {
		rs = append(rs, Route{Name: "reply", From: ACoordinator, Filter: in.ReplyFilter, QoS: 1, Decode: func(_ string, m bus.Message) (func(), error) {
			return func() { in.Reply(m) }, nil
		}})
	}
	return rs
}

// Subscriber is what the routes are installed on (bus.Client, Memory).
type Subscriber interface {
	Subscribe(filter string, qos byte, h bus.Handler)
}

// Install subscribes each route; what does not authenticate (with auth
// set) or decode is dropped and counted in drops (which may be nil).
func Install(sub Subscriber, topics bus.Topics, routes []Route, drops *bus.Drops, auth *Auth) {
	for _, r := range routes {
		sub.Subscribe(r.Filter, r.QoS, func(m bus.Message) { Deliver(topics, r, m, drops, auth) })
	}
}

// Deliver is the one place a message enters: it checks m's code (with auth
// set; on a route anyone may send on, only a code it carries), decodes it by
// r and hands the input over, or drops and counts it.
func Deliver(topics bus.Topics, r Route, m bus.Message, drops *bus.Drops, auth *Auth) {
	id, _, _ := topics.MemberOf(m.Topic)
	size := len(m.Payload) // as it came: what fails below has no payload left
	var err error
	switch {
	case auth == nil:
	case r.From == Anyone:
		m.Payload, m.SignedBy, err = auth.operator(m)
	default:
		m.Payload, err = auth.check(m, r.From, id, r.State, r.PerPath)
	}
	var hand func()
	if err == nil {
		hand, err = r.Decode(id, m)
	}
	if err != nil {
		if drops != nil {
			source := id
			if source == "" {
				source = m.Topic
			}
			drops.Drop(source, m.Topic, size, err)
		}
		return
	}
	if hand != nil {
		hand()
	}
}
