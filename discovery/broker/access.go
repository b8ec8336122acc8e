package broker

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// User is an account of the embedded broker. A client must connect with a
// user's name and password; it may then publish to the topics matching one
// of Publish and subscribe to filters within one of Subscribe (MQTT topic
// filters with + and #).
type User struct {
	Username string
	Password string
	// Alternates are other passwords accepted for the same account (while
	// a site key is being changed).
	Alternates []string
	Publish    []string
	Subscribe  []string
}

// CheckFilter reports whether f is a valid MQTT topic filter.
func CheckFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty topic filter")
	}
	if strings.ContainsRune(f, 0) {
		return fmt.Errorf("topic filter %q: the null character is not allowed (MQTT forbids it)", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic filter %q: # must be the last level", f)
		case l != "#" && l != "+" && strings.ContainsAny(l, "#+"):
			return fmt.Errorf("topic filter %q: + and # stand alone in a level", f)
		}
	}
	return nil
}

// Covers reports whether the allowed filter covers every topic that
// requested (a topic name, or a topic filter) matches: what a user whose
// list holds allowed may publish or subscribe to.
func Covers(allowed, requested string) bool { return covers(allowed, requested) }

// covers reports whether the allowed filter covers every topic that
// requested (a topic name, or a filter being subscribed to) matches.
func covers(allowed, requested string) bool {
	// Level by level, without splitting (this runs for every publish).
	for {
		al, aRest, aMore := strings.Cut(allowed, "/")
		if al == "#" {
			return true
		}
		rl, rRest, rMore := strings.Cut(requested, "/")
		switch {
		case rl == "#":
			return false // the request reaches further than one level here
		case al != "+" && al != rl:
			return false
		}
		if !aMore || !rMore {
			// One has no more levels: covered if the other has none either,
			// or if all that is left of the filter is "#" (it matches its
			// parent level too).
			return aMore == rMore || (aMore && aRest == "#")
		}
		allowed, requested = aRest, rRest
	}
}

// accessHook authenticates clients against the users and checks each publish
// and subscription against their lists.
//
// A publish outside the user's list is acknowledged and dropped (OnPublish),
// as mosquitto does for MQTT 3.1.1, rather than refused in OnACLCheck: mochi
// ends the connection of a 3.1.1 client whose QoS 1 publish is refused
// there, and a client such as paho sends its unacknowledged publishes again
// on every reconnect, so one refused publish would keep it off the bus for
// good. Nothing of a dropped publish is delivered or retained.
type accessHook struct {
	mqtt.HookBase
	// users by name, for logins and subscriptions.
	users map[string]*User
	// publish decides publishes. It is read for every publish of thousands
	// of clients, mostly from memory that is not in the cache.
	publish publishACL
}

func newAccessHook(users []User, own *OwnTopics) *accessHook {
	h := &accessHook{users: make(map[string]*User, len(users)), publish: newPublishACL(users, own)}
	for i := range users {
		u := users[i]
		h.users[u.Username] = &u
	}
	return h
}

// publishACL is the users' publish lists arranged for one lookup per
// publish: every filter without a wildcard (a member's own topics: all of
// a member's heartbeats and presence) is a key of one map, user and topic
// together, so the common case touches one map entry instead of the user's
// record, its list and each filter's text; the filters with wildcards are
// kept per user and checked after.
type publishACL struct {
	own      *OwnTopics
	exact    map[string]struct{} // username + "\x00" + topic
	wildcard map[string][]string // username → filters with + or #
}

// OwnTopics are the topics each of many accounts publishes under a name
// of its own: the user named UserPrefix+ID may publish TopicPrefix+ID+"/"
// followed by one of Leaves (a member's instance publishes its heartbeat,
// presence and the like under its member id). The broker checks this rule
// from the user name and the topic alone, without reading any per-user
// record: at thousands of members, the per-user lookup of every publish
// missed the processor's cache and was most of what authentication cost
// (go run ./bench -only scale -profiles DIR).
type OwnTopics struct {
	UserPrefix, TopicPrefix string
	Leaves                  []string
}

// allows reports whether the rule lets username publish to topic.
func (o *OwnTopics) allows(username []byte, topic string) bool {
	if len(username) <= len(o.UserPrefix) || string(username[:len(o.UserPrefix)]) != o.UserPrefix {
		return false
	}
	id := username[len(o.UserPrefix):]
	rest, ok := strings.CutPrefix(topic, o.TopicPrefix)
	if !ok || len(rest) <= len(id) || rest[:len(id)] != string(id) || rest[len(id)] != '/' {
		return false
	}
	return slices.Contains(o.Leaves, rest[len(id)+1:])
}

func newPublishACL(users []User, own *OwnTopics) publishACL {
	a := publishACL{own: own, exact: map[string]struct{}{}, wildcard: map[string][]string{}}
	for _, u := range users {
		for _, f := range u.Publish {
			if strings.ContainsAny(f, "+#") {
				a.wildcard[u.Username] = append(a.wildcard[u.Username], f)
			} else {
				a.exact[u.Username+"\x00"+f] = struct{}{}
			}
		}
	}
	return a
}

// allows reports whether username may publish to topic.
func (a *publishACL) allows(username []byte, topic string) bool {
	if a.own != nil && a.own.allows(username, topic) {
		return true
	}
	// The key is built on the stack: a map index by string(bytes) does not
	// allocate.
	var buf [192]byte
	key := append(append(append(buf[:0], username...), 0), topic...)
	if _, ok := a.exact[string(key)]; ok {
		return true
	}
	for _, f := range a.wildcard[string(username)] {
		if covers(f, topic) {
			return true
		}
	}
	return false
}

func (*accessHook) ID() string { return "users-and-acls" }

func (*accessHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnPublish
}

func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	u, ok := h.users[string(pk.Connect.Username)]
	if !ok {
		u = &User{}
	}
	got := sha256.Sum256(pk.Connect.Password)
	match := 0
	for _, p := range append([]string{u.Password}, u.Alternates...) {
		want := sha256.Sum256([]byte(p))
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	ok = match == 1 && ok
	if !ok {
		h.Log.Warn("client refused: unknown user or wrong password", "client", cl.ID, "username", string(pk.Connect.Username), "remote", cl.Net.Remote)
	}
	return ok
}

// OnACLCheck checks subscriptions; publishes pass here and are checked in
// OnPublish (see accessHook).
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || h.subscribes(cl, topic) {
		return true
	}
	h.Log.Warn("client refused a topic", "client", cl.ID, "username", string(cl.Properties.Username), "topic", topic, "publish", false)
	return false
}

// OnPublish drops (acknowledged, neither delivered nor retained) a publish
// outside the user's list.
func (h *accessHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || h.publish.allows(cl.Properties.Username, pk.TopicName) {
		return pk, nil
	}
	h.refusedPublish(cl, pk.TopicName)
	return pk, packets.CodeSuccessIgnore
}

// refusedPublish logs a dropped publish. It is a function of its own, kept
// out of line, so that OnPublish's frame stays small: it runs on the stack
// of every client's reader for every publish, and a large frame made those
// stacks grow (and the collector shrink them again) over and over.
//
//go:noinline
func (h *accessHook) refusedPublish(cl *mqtt.Client, topic string) {
	h.Log.Warn("client refused a topic", "client", cl.ID, "username", string(cl.Properties.Username), "topic", topic, "publish", true, "dropped", true)
}

// subscribes reports whether cl's user may subscribe to the filter topic.
func (h *accessHook) subscribes(cl *mqtt.Client, topic string) bool {
	u, ok := h.users[string(cl.Properties.Username)]
	if !ok {
		return false
	}
	for _, f := range u.Subscribe {
		if covers(f, topic) {
			return true
		}
	}
	return false
}
