package inbound

import (
	"strings"

	"understudy/discovery/bus"
)

// Memory is a Subscriber in memory, for tests: Publish hands a message to
// every handler whose filter matches its topic, in the order they
// subscribed, as a broker would.
type Memory struct {
	subs []memorySub
}

type memorySub struct {
	filter string
	h      bus.Handler
}

// Subscribe adds a handler for the messages matching filter.
func (m *Memory) Subscribe(filter string, _ byte, h bus.Handler) {
	m.subs = append(m.subs, memorySub{filter: filter, h: h})
}

// Publish hands msg to the handlers whose filter matches its topic and
// returns how many took it.
func (m *Memory) Publish(msg bus.Message) int {
	n := 0
	for _, s := range m.subs {
		if Match(s.filter, msg.Topic) {
			s.h(msg)
			n++
		}
	}
	return n
}

// Match reports whether an MQTT topic filter ("+" one level, "#" the rest)
// matches topic.
func Match(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		switch {
		case f == "#":
			return true
		case i >= len(ts):
			return false
		case f != "+" && f != ts[i]:
			return false
		}
	}
	return len(fs) == len(ts)
}
