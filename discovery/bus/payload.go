package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// MaxPayload is the largest heartbeat or presence payload accepted. Real ones
// are about 120 bytes; anything near this is garbage or an attack.
const MaxPayload = 4096

// Heartbeat is the payload an instance publishes every interval.
type Heartbeat struct {
	Member     string `json:"member"`
	Boot       string `json:"boot"` // random per process start
	Conn       uint64 `json:"conn"` // bus connection number within the boot
	Seq        uint64 `json:"seq"`
	IntervalMS int64  `json:"interval_ms"`
	Version    string `json:"version,omitempty"`
}

// Interval returns the sender's heartbeat interval.
func (h Heartbeat) Interval() time.Duration { return time.Duration(h.IntervalMS) * time.Millisecond }

// Presence is the retained payload of an instance's presence topic: "online"
// on each connect, "closed" on graceful shutdown, and "gone" in its Last Will.
type Presence struct {
	Member string `json:"member"`
	State  string `json:"state"`
	Boot   string `json:"boot"`
	Conn   uint64 `json:"conn"`
}

var tokenRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Decoding errors, one per reason, so drops can be counted by reason.
var (
	ErrTooLarge    = errors.New("payload too large")
	ErrMalformed   = errors.New("malformed JSON")
	ErrInvalid     = errors.New("invalid field")
	ErrWrongMember = errors.New("member does not match topic")
	// ErrUnknownMember is for well-formed payloads from a member the site
	// does not have; the receiver wraps it.
	ErrUnknownMember = errors.New("unknown member")
)

// DecodeHeartbeat parses and checks a heartbeat published on the heartbeat
// topic of member topicMember.
func DecodeHeartbeat(topicMember string, payload []byte) (Heartbeat, error) {
	var h Heartbeat
	if err := decodeStrictly(payload, &h); err != nil {
		return Heartbeat{}, err
	}
	switch {
	case !tokenRe.MatchString(h.Member):
		return Heartbeat{}, fmt.Errorf("%w: member %q", ErrInvalid, h.Member)
	case h.Member != topicMember:
		return Heartbeat{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, h.Member, topicMember)
	case !tokenRe.MatchString(h.Boot):
		return Heartbeat{}, fmt.Errorf("%w: boot %q", ErrInvalid, h.Boot)
	case h.Conn == 0:
		return Heartbeat{}, fmt.Errorf("%w: conn missing", ErrInvalid)
	case h.IntervalMS < 1 || h.IntervalMS > 24*3600*1000:
		return Heartbeat{}, fmt.Errorf("%w: interval_ms %d", ErrInvalid, h.IntervalMS)
	case len(h.Version) > 64:
		return Heartbeat{}, fmt.Errorf("%w: version too long", ErrInvalid)
	}
	return h, nil
}

// DecodePresence parses and checks a presence payload of member topicMember.
func DecodePresence(topicMember string, payload []byte) (Presence, error) {
	var p Presence
	if err := decodeStrictly(payload, &p); err != nil {
		return Presence{}, err
	}
	switch {
	case !tokenRe.MatchString(p.Member):
		return Presence{}, fmt.Errorf("%w: member %q", ErrInvalid, p.Member)
	case p.Member != topicMember:
		return Presence{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, p.Member, topicMember)
	case p.State != "online" && p.State != "closed" && p.State != "gone":
		return Presence{}, fmt.Errorf("%w: state %q", ErrInvalid, p.State)
	case !tokenRe.MatchString(p.Boot):
		return Presence{}, fmt.Errorf("%w: boot %q", ErrInvalid, p.Boot)
	}
	return p, nil
}

func decodeStrictly(payload []byte, v any) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(payload), MaxPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	return nil
}

// Reason names the class of a decoding error for counting.
func Reason(err error) string {
	for _, e := range []error{ErrTooLarge, ErrMalformed, ErrWrongMember, ErrInvalid, ErrUnknownMember} {
		if errors.Is(err, e) {
			return strings.ReplaceAll(e.Error(), " ", "_")
		}
	}
	return "other"
}
