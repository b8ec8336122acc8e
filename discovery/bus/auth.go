package bus

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"understudy/sitekey"
)

// An instance's messages to the others (heartbeats, presence and its Last
// Will, commands, acks, health, grants, config pushes, replies) carry an
// "auth" member as the last member of their JSON object:
//
//	{…,"auth":{"key":"k1","from":"main","n":[7,2,1234],"mac":"<22 chars>"}}
//
// key names the site key that signed, from the instance that sent it, and n
// orders its messages without clocks: its boot counter (persisted, one more
// at every start), its bus connection number and a sequence number that only
// grows within the boot. mac is the site key's code (sitekey.Ring.Sign) over
// the topic and every byte of the payload before the code itself. Receivers
// that predate authentication ignore the member; Open gives the payload back
// without it, byte for byte as it was sealed.

// WillSeq is the sequence number of a Last Will. Its payload is fixed when
// the connection is made, so it cannot carry the sequence of the moment the
// broker publishes it; it sorts after every other message of its connection,
// and a second copy is a replay.
const WillSeq = 1 << 53

// Stamp is what orders an authenticated message: who sent it and where it
// falls among that sender's messages.
type Stamp struct {
	From string
	Boot uint64 // the sender's boot counter
	Conn uint64 // its bus connection within the boot
	Seq  uint64 // its sequence within the boot
}

// after reports whether s comes after o (boot, then connection, then
// sequence).
func (s Stamp) after(o Stamp) bool {
	if s.Boot != o.Boot {
		return s.Boot > o.Boot
	}
	if s.Conn != o.Conn {
		return s.Conn > o.Conn
	}
	return s.Seq > o.Seq
}

func (s Stamp) String() string {
	return fmt.Sprintf("%s boot %d conn %d seq %d", s.From, s.Boot, s.Conn, s.Seq)
}

// Reasons an authenticated payload is refused, counted by Reason.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrBadMAC          = errors.New("bad MAC")
	ErrReplayed        = errors.New("stale or replayed")
	// ErrDuplicate: on a site with several brokers, a copy of a message
	// already taken over another path (or older than one taken). Not a
	// fault: it is counted apart (Drops.Duplicates), not as a drop.
	ErrDuplicate = errors.New("duplicate over another path")
	// ErrWrongSender: signed by an instance that may not send it there.
	ErrWrongSender = errors.New("wrong sender")
)

const (
	authOpen  = `"auth":{`
	macOpen   = `"mac":"`
	macClose  = `"}}`
	macLength = 22 // base64 (raw, URL) of sitekey.MACSize bytes
)

// Seal adds the auth member to payload, a JSON object, and signs it with
// the ring's first key for topic.
func Seal(ring *sitekey.Ring, topic string, payload []byte, s Stamp) ([]byte, error) {
	p := bytes.TrimRight(payload, " \t\r\n")
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return nil, fmt.Errorf("seal %s: the payload is not a JSON object", topic)
	}
	if !isToken(s.From) {
		return nil, fmt.Errorf("seal %s: sender %q", topic, s.From)
	}
	if ring.Empty() {
		return nil, fmt.Errorf("seal %s: no site key", topic)
	}
	out := make([]byte, 0, len(p)+96)
	out = append(out, p[:len(p)-1]...)
	if len(bytes.TrimSpace(p[1:len(p)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, authOpen...)
	out = append(out, `"key":"`...)
	out = append(out, ring.Signer()...)
	out = append(out, `","from":"`...)
	out = append(out, s.From...)
	out = append(out, `","n":[`...)
	out = strconv.AppendUint(out, s.Boot, 10)
	out = append(out, ',')
	out = strconv.AppendUint(out, s.Conn, 10)
	out = append(out, ',')
	out = strconv.AppendUint(out, s.Seq, 10)
	out = append(out, "],"+macOpen...)
	_, code := ring.Sign(topic, out)
	out = base64.RawURLEncoding.AppendEncode(out, code)
	return append(out, macClose...), nil
}

// split finds the auth member at the end of payload: what precedes it (up
// to its comma, or the opening brace of an object that has no other member)
// and the member's object.
func split(payload []byte) (head, block []byte, ok bool) {
	if len(payload) > MaxAuthenticated || !bytes.HasSuffix(payload, []byte(macClose)) {
		return nil, nil, false
	}
	i := bytes.LastIndex(payload, []byte(authOpen))
	if i < 1 {
		return nil, nil, false
	}
	block = payload[i+len(authOpen)-1 : len(payload)-1]
	head = bytes.TrimRight(payload[:i], " \t\r\n")
	if len(head) == 0 || (head[len(head)-1] != ',' && head[len(head)-1] != '{') {
		return nil, nil, false
	}
	return head, block, true
}

// withoutAuth is the payload as it was before Seal: head (from split) closed.
func withoutAuth(head []byte) []byte {
	if head[len(head)-1] == '{' {
		return []byte("{}")
	}
	return append(append(make([]byte, 0, len(head)), head[:len(head)-1]...), '}')
}

// MaxAuthenticated is the largest sealed payload Open looks at: the largest
// of the payloads instances send each other, with its auth member.
const MaxAuthenticated = 256 << 10

// Open checks the auth member of payload against topic with ring: it
// returns the payload without the member, byte for byte as it was sealed,
// and its stamp. A payload without one is ErrUnauthenticated; a wrong code,
// an unknown key or a malformed member is ErrBadMAC.
func Open(ring *sitekey.Ring, topic string, payload []byte) ([]byte, Stamp, error) {
	head, st, err := verify(ring, topic, payload)
	if err != nil {
		return nil, Stamp{}, err
	}
	return withoutAuth(head), st, nil
}

func verify(ring *sitekey.Ring, topic string, payload []byte) ([]byte, Stamp, error) {
	head, block, ok := split(payload)
	if !ok {
		return nil, Stamp{}, ErrUnauthenticated
	}
	key, from, n, mac, ok := parseBlock(block)
	if !ok {
		return nil, Stamp{}, fmt.Errorf("%w: the auth member is not as Seal writes it", ErrBadMAC)
	}
	var code [sitekey.MACSize]byte
	if len(mac) != macLength {
		return nil, Stamp{}, fmt.Errorf("%w: mac is not %d bytes of base64", ErrBadMAC, sitekey.MACSize)
	}
	if k, err := base64.RawURLEncoding.Decode(code[:], mac); err != nil || k != sitekey.MACSize {
		return nil, Stamp{}, fmt.Errorf("%w: mac is not %d bytes of base64", ErrBadMAC, sitekey.MACSize)
	}
	signed := payload[:len(payload)-len(macClose)-macLength]
	if err := ring.Verify(string(key), topic, signed, code[:]); err != nil {
		return nil, Stamp{}, fmt.Errorf("%w: %v", ErrBadMAC, err)
	}
	if !isToken(from) {
		return nil, Stamp{}, fmt.Errorf("%w: from %q", ErrBadMAC, from)
	}
	return head, Stamp{From: string(from), Boot: n[0], Conn: n[1], Seq: n[2]}, nil
}

// parseBlock reads the auth member's object exactly as Seal writes it:
// {"key":"K","from":"F","n":[B,C,S],"mac":"M"}. Anything else is not ok: no
// JSON decoding, nothing to be lenient about.
func parseBlock(b []byte) (key, from []byte, n [3]uint64, mac []byte, ok bool) {
	str := func(prefix string) ([]byte, bool) {
		if !bytes.HasPrefix(b, []byte(prefix)) {
			return nil, false
		}
		b = b[len(prefix):]
		i := bytes.IndexByte(b, '"')
		if i < 0 {
			return nil, false
		}
		v := b[:i]
		b = b[i+1:]
		return v, true
	}
	if key, ok = str(`{"key":"`); !ok {
		return
	}
	if from, ok = str(`,"from":"`); !ok {
		return
	}
	if !bytes.HasPrefix(b, []byte(`,"n":[`)) {
		return key, from, n, nil, false
	}
	b = b[len(`,"n":[`):]
	for i := range n {
		j := 0
		for j < len(b) && j < 20 && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		v, err := strconv.ParseUint(string(b[:j]), 10, 64)
		if j == 0 || err != nil {
			return key, from, n, nil, false
		}
		n[i] = v
		sep := byte(',')
		if i == 2 {
			sep = ']'
		}
		if j >= len(b) || b[j] != sep {
			return key, from, n, nil, false
		}
		b = b[j+1:]
	}
	if mac, ok = str(`,"mac":"`); !ok {
		return
	}
	return key, from, n, mac, string(b) == "}"
}

// Freshness remembers, per sender and topic, the newest stamp taken, so
// that a message is taken at most once and never after a newer one from the
// same sender on the same topic (MQTT keeps one client's messages on one
// topic in order). Retained messages are the broker's record of the last
// state, not news: they are taken whenever their code is good, and move the
// mark only forward. Safe for concurrent use.
//
// On a site with several brokers (Paths) a message sent on every path is
// marked once for all of them (path < 0), and a copy is a duplicate; what
// each path carries of its own — a member's presence there, its Last Will
// — is marked per path: each broker's word on the member's connection to it
// is news to the paths merger (a member is lost when silent on every path).
// A Last Will is marked apart from the rest of its topic: within a path it
// is taken once, and only one of a newer connection than the last.
type Freshness struct {
	mu     sync.Mutex
	newest map[freshKey]Stamp
	// several: messages come over several paths (brokers), each message
	// between instances on every one of them, so a copy already taken or
	// one older than the newest is a duplicate (ErrDuplicate), not a replay.
	several bool
}

type freshKey struct {
	from, topic string
	will        bool
	path        int
}

// NewFreshness returns an empty Freshness.
func NewFreshness() *Freshness { return &Freshness{newest: map[freshKey]Stamp{}} }

// SeveralPaths tells f that messages come over several brokers at once:
// a message older than the newest taken is then a copy that came the
// longer way (ErrDuplicate).
func (f *Freshness) SeveralPaths() {
	f.mu.Lock()
	f.several = true
	f.mu.Unlock()
}

// Take reports whether a message with stamp s on topic is new, and marks it
// taken; a message that is not is ErrReplayed (or ErrDuplicate over several
// paths). path is the path it came over for a message each path carries of
// its own (a presence, a Will), or -1 for one marked for all paths.
func (f *Freshness) Take(topic string, s Stamp, retained bool, path int) error {
	k := freshKey{from: s.From, topic: topic, path: max(path, -1)}
	if s.Seq == WillSeq {
		k.will = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	last, seen := f.newest[k]
	if seen && !s.after(last) {
		if retained {
			return nil
		}
		if f.several && k.path < 0 {
			return fmt.Errorf("%w: %s, newest taken %s", ErrDuplicate, s, last)
		}
		return fmt.Errorf("%w: %s, newest taken %s", ErrReplayed, s, last)
	}
	f.newest[k] = s
	return nil
}
