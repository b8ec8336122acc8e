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
	// code). A command without an auth member is not checked; one with an
	// auth member is a command an instance passed on (from its local
	// API): its code is checked and the member taken off.
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
	// about once per sender, but only for a member not yet heard with a
	// good code: once a member's instance has signed, an unsigned message
	// on its topics is not its own. A wrong code is refused either way.
	Required bool
	// Coordinator reports whether a member may coordinate (and so send
	// commands and replies).
	Coordinator func(id string) bool
	// Member reports whether id is a member of the site: only members are
	// remembered as heard signed (so at most the site's members are).
	Member func(id string) bool
	Log    *slog.Logger

	fresh       *bus.Freshness
	unsigned    atomic.Uint64
	warned      sync.Map // source → struct{}
	warnedCount atomic.Int64
	// signed are the members heard with a good code (member → struct{}),
	// signedCoordinator whether one of them may coordinate.
	signed            sync.Map
	signedCoordinator atomic.Bool
}

// maxWarned bounds the sources permissive mode warns about by name.
const maxWarned = 1024

// NewAuth returns an Auth with ring; required, coordinator and member as
// above.
func NewAuth(ring *sitekey.Ring, required bool, coordinator, member func(string) bool, log *slog.Logger) *Auth {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auth{Ring: ring, Required: required, Coordinator: coordinator, Member: member, Log: log, fresh: bus.NewFreshness()}
}

// SeveralPaths says that messages between instances come over several
// brokers at once (bus.Paths): a copy of one taken is a duplicate.
func (a *Auth) SeveralPaths() { a.fresh.SeveralPaths() }

// Unsigned is how many messages without an auth member were taken (in
// permissive mode).
func (a *Auth) Unsigned() uint64 { return a.unsigned.Load() }

// heard remembers that member's instance signs: a message with its name
// and a good code came.
func (a *Auth) heard(member string) {
	if a.Required {
		return // every message needs a code: nothing to remember
	}
	if _, ok := a.signed.Load(member); ok {
		return // the common case: a member heard before
	}
	if a.Member == nil || !a.Member(member) {
		return // not a member of the site: nothing to remember (bounded)
	}
	if _, seen := a.signed.LoadOrStore(member, struct{}{}); !seen && a.Coordinator != nil && a.Coordinator(member) {
		a.signedCoordinator.Store(true)
	}
}

// signs reports whether the sender of a route's messages has been heard
// signing: the topic's member, or for commands and replies a coordinator.
func (a *Auth) signs(sender Sender, topicMember string) bool {
	switch sender {
	case TopicMember:
		_, ok := a.signed.Load(topicMember)
		return ok
	case ACoordinator:
		return a.signedCoordinator.Load()
	}
	return false
}

// check opens m for a route whose messages come from sender; topicMember is
// the member the topic names; state says a retained message there is state
// (Route.State). It returns the payload to decode.
func (a *Auth) check(m bus.Message, sender Sender, topicMember string, state, perPath bool) ([]byte, error) {
	// The payload without its auth member is a copy, but decoding the sealed
	// payload as it came (skipping the auth member) cost encoding/json
	// more than twice the decoding of a heartbeat (go run ./bench -only
	// scale -profiles).
	plain, st, err := bus.Open(a.Ring, m.Topic, m.Payload)
	if errors.Is(err, bus.ErrUnauthenticated) && !a.Required && len(m.Payload) > 0 {
		if a.signs(sender, topicMember) {
			who := topicMember
			if sender == ACoordinator {
				who = "the coordinator"
			}
			return nil, fmt.Errorf("%w: %s signs its messages (heard with a good code since this instance started), so an unsigned one on %s is not its own", bus.ErrUnauthenticated, who, m.Topic)
		}
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
	a.heard(st.From)
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
	path := -1
	if perPath {
		path = m.Path
	}
	if err := a.fresh.Take(m.Topic, st, m.Retained && state, path); err != nil {
		return nil, err
	}
	return plain, nil
}

// operator opens an operator command m (a route anyone may send on). One
// without an auth member is show control's or an operator's, taken as it
// is. One with an auth member was passed on by an instance from its local
// API: with a good code (and new) the member is taken off and the command
// said to come from that instance; with a bad one it is a forgery (an
// operator cannot sign) and refused.
func (a *Auth) operator(m bus.Message) ([]byte, string, error) {
	plain, st, err := bus.Open(a.Ring, m.Topic, m.Payload)
	if errors.Is(err, bus.ErrUnauthenticated) {
		// Not sealed as an instance seals. An auth member elsewhere in it
		// is refused where the command is decoded (bus.DecodeControl).
		return m.Payload, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w (an operator command carries an auth member only when an instance passed it on)", err)
	}
	a.heard(st.From)
	if err := a.fresh.Take(m.Topic, st, false, -1); err != nil {
		return nil, "", err
	}
	return plain, st.From, nil
}
