package inbound_test

import (
	"errors"
	"log/slog"
	"slices"
	"testing"

	"understudy/discovery/bus"
	"understudy/runtime/inbound"
)

// inlineOf is a broker's inline subscription made of a Memory: what is
// published on it reaches the handler as it would inside the broker.
func inlineOf(m *inbound.Memory) func(string, func(string, []byte, bool)) error {
	return func(filter string, h func(string, []byte, bool)) error {
		m.Subscribe(filter, 0, func(msg bus.Message) { h(msg.Topic, msg.Payload, msg.Retained) })
		return nil
	}
}

// The site's heartbeats come inline; this instance's own comes back over the
// connection (the canary of both directions); everything else goes over the
// connection.
func TestSplitTakesHeartbeatsInlineButItsOwnOverTheConnection(t *testing.T) {
	topics := bus.Topics{Site: "hall"}
	conn, broker := &inbound.Memory{}, &inbound.Memory{}
	split := inbound.Split{Conn: conn, Inline: inlineOf(broker), Heartbeats: topics.AllHeartbeats(), Own: topics.Heartbeat("backup"), Log: slog.New(slog.DiscardHandler)}
	var got []string
	record := func(msg bus.Message) { got = append(got, msg.Topic) }
	split.Subscribe(topics.AllHeartbeats(), 0, record)
	split.Subscribe(topics.AllPresence(), 1, record)

	broker.Publish(bus.Message{Topic: topics.Heartbeat("main")})   // inline: taken
	broker.Publish(bus.Message{Topic: topics.Heartbeat("backup")}) // its own, inline: not taken there
	conn.Publish(bus.Message{Topic: topics.Heartbeat("backup")})   // its own, over the connection: taken
	conn.Publish(bus.Message{Topic: topics.Heartbeat("main")})     // nobody subscribed the others over the connection
	conn.Publish(bus.Message{Topic: topics.Presence("main")})      // everything else: over the connection
	broker.Publish(bus.Message{Topic: topics.Presence("main")})    // and only there

	want := []string{topics.Heartbeat("main"), topics.Heartbeat("backup"), topics.Presence("main")}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A broker that refuses the inline subscription leaves the heartbeats on the
// connection.
func TestSplitFallsBackToTheConnection(t *testing.T) {
	topics := bus.Topics{Site: "hall"}
	conn := &inbound.Memory{}
	split := inbound.Split{Conn: conn, Heartbeats: topics.AllHeartbeats(), Own: topics.Heartbeat("backup"), Log: slog.New(slog.DiscardHandler),
		Inline: func(string, func(string, []byte, bool)) error { return errors.New("inline client not enabled") }}
	var got []string
	split.Subscribe(topics.AllHeartbeats(), 0, func(msg bus.Message) { got = append(got, msg.Topic) })
	conn.Publish(bus.Message{Topic: topics.Heartbeat("main")})
	conn.Publish(bus.Message{Topic: topics.Heartbeat("backup")})
	if want := []string{topics.Heartbeat("main"), topics.Heartbeat("backup")}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
