package inbound

import (
	"log/slog"

	"understudy/discovery/bus"
)

// Split is a Subscriber that takes the site's heartbeats from inside the
// process, as they pass through the embedded broker, and everything else
// over the connection. At 2,000 members the round trip of every heartbeat
// from the broker back to the instance that embeds it was about a quarter of
// that instance's CPU (`go run ./bench -only scale`).
//
// The instance's own heartbeat still comes back over the connection: it is
// the canary of both directions of its way to the bus, so a connection that
// stops delivering is noticed (bus_silent) as it was before. The handlers are
// the same routes either way: a heartbeat is decoded, checked and counted in
// one place whichever way it came.
type Split struct {
	Conn Subscriber
	// Inline subscribes h to filter inside the broker (broker.SubscribeInline).
	Inline func(filter string, h func(topic string, payload []byte, retained bool)) error
	// Heartbeats is the filter taken inline (Topics.AllHeartbeats), Own the
	// topic kept on the connection (Topics.Heartbeat of this instance).
	Heartbeats, Own string
	Log             *slog.Logger
}

var _ Subscriber = Split{}

// Subscribe subscribes the heartbeats inline (but Own, over the connection)
// and any other filter over the connection. If the broker refuses the inline
// subscription the heartbeats go over the connection, and the log says so.
func (s Split) Subscribe(filter string, qos byte, h bus.Handler) {
	if filter != s.Heartbeats {
		s.Conn.Subscribe(filter, qos, h)
		return
	}
	err := s.Inline(filter, func(topic string, payload []byte, retained bool) {
		if topic != s.Own {
			h(bus.Message{Topic: topic, Payload: payload, Retained: retained})
		}
	})
	if err != nil {
		s.Log.Warn("heartbeats over the connection instead of inside the broker", "error", err)
		s.Conn.Subscribe(filter, qos, h)
		return
	}
	s.Conn.Subscribe(s.Own, qos, h)
}
