package inbound

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"understudy/discovery/bus"
	"understudy/sitekey"
)

// Sender says who may send the messages of a route.
type Sender int

const (
	// Anyone: operator commands and show control, whose trust rests on
	// the broker's accounts and ACLs (they cannot compute a site key's
	// code). Not checked here.
	Anyone Sender = iota
	// TopicMember: the member the topic names (its heartbeat, presence,
	// description, acks, health, config, copy progress).
	TopicMember
	// ACoordinator: a coordinator candidate (commands to a member, replies).
	ACoordinator
)

// Auth checks the auth member (bus.Open) of every message between instances
// before it is decoded: its code, its sender and its freshness. What fails
// is dropped and counted with the other drops. Safe for concurrent use.
type Auth struct {
	Ring *sitekey.Ring
	// Required refuses messages without an auth member; without it
	// (permissive, for an upgrade) they are taken, counted and warned
	// about once per sender. A wrong code is refused either way.
	Required bool
	// Coordinator reports whether a member may coordinate (and so send
	// commands and replies).
	Coordinator func(id string) bool
	Log         *slog.Logger

	fresh       *bus.Freshness
	unsigned    atomic.Uint64
	warned      sync.Map // source → struct{}
	warnedCount atomic.Int64
}

// maxWarned bounds the sources permissive mode warns about by name.
const maxWarned = 1024

// NewAuth returns an Auth with ring; required as above.
func NewAuth(ring *sitekey.Ring, required bool, coordinator func(string) bool, log *slog.Logger) *Auth {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auth{Ring: ring, Required: required, Coordinator: coordinator, Log: log, fresh: bus.NewFreshness()}
}

// Unsigned is how many messages without an auth member were taken (in
// permissive mode).
func (a *Auth) Unsigned() uint64 { return a.unsigned.Load() }

// check opens m for a route whose messages come from sender; topicMember is
// the member the topic names; state says a retained message there is state
// (Route.State). It returns the payload to decode.
func (a *Auth) check(m bus.Message, sender Sender, topicMember string, state bool) ([]byte, error) {
	plain, st, err := bus.Open(a.Ring, m.Topic, m.Payload)
	if errors.Is(err, bus.ErrUnauthenticated) && !a.Required && len(m.Payload) > 0 {
		a.unsigned.Add(1)
		source := topicMember
		if source == "" {
			source = m.Topic
		}
		// The source is whatever the topic says: remembered for at most
		// maxWarned sources, then only counted.
		if a.warnedCount.Load() >= maxWarned {
			return m.Payload, nil
		}
		if _, seen := a.warned.LoadOrStore(source, struct{}{}); !seen {
			a.warnedCount.Add(1)
			a.Log.Warn("took a message without a site key's code (auth: permissive; further ones from this source are only counted)", "source", source, "topic", m.Topic)
		}
		return m.Payload, nil
	}
	if errors.Is(err, bus.ErrUnauthenticated) && len(m.Payload) == 0 && m.Retained {
		return m.Payload, nil // a cleared retained message: nothing to take
	}
	if err != nil {
		return nil, err
	}
	switch sender {
	case TopicMember:
		if st.From != topicMember {
			return nil, fmt.Errorf("%w: %s signed a message on %s's topic", bus.ErrWrongSender, st.From, topicMember)
		}
	case ACoordinator:
		if a.Coordinator == nil || !a.Coordinator(st.From) {
			return nil, fmt.Errorf("%w: %s may not coordinate", bus.ErrWrongSender, st.From)
		}
	}
	if err := a.fresh.Take(m.Topic, st, m.Retained && state); err != nil {
		return nil, err
	}
	return plain, nil
}
