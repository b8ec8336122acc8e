package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Size limits of operator commands (understudy/<site>/command/<verb> and the
// local API's POST /command/VERB): one number for both.
const (
	// MaxControlPayload bounds an operator command. A command names a
	// member, a standby, a proposal or a mode; the policy's own commands
	// may carry a little more, but nothing like a file.
	MaxControlPayload = 64 << 10
	// MaxRequestID bounds request_id as written in the payload.
	MaxRequestID = 256
	// MaxReplyTo bounds a reply_to topic.
	MaxReplyTo = 256
)

// Control is a decoded operator command: its fields for the runtime and the
// policy, and what the reply needs (request_id as sent, reply_to).
type Control struct {
	Verb   string
	Fields map[string]any // the payload's fields without request_id and reply_to
	// RequestID is request_id exactly as written (a JSON string, number or
	// boolean: a number keeps every digit), nil when there is none.
	RequestID json.RawMessage
	// ReplyTo is reply_to as sent, if HasReplyTo; ReplyTopic checks it.
	ReplyTo    string
	HasReplyTo bool
}

// fieldKind is the JSON type a field of a known command must have.
type fieldKind int

const (
	kindString fieldKind = iota
	kindBool
	kindDuration // a duration string like "5m", or seconds
)

// controlFields are the fields of the operator commands the runtime knows,
// with their types. A field of the wrong type makes the command malformed;
// whether a member or proposal exists is for the coordinator to say.
func controlFields(verb string) map[string]fieldKind {
	switch verb {
	case "takeover":
		return map[string]fieldKind{"member": kindString, "standby": kindString, "pool": kindString}
	case "failback", "drill_end":
		return map[string]fieldKind{"member": kindString}
	case "takeover_all":
		return map[string]fieldKind{"standby": kindString}
	case "confirm", "reject":
		return map[string]fieldKind{"proposal": kindString}
	case "mode":
		return map[string]fieldKind{"mode": kindString}
	case "drill":
		return map[string]fieldKind{"member": kindString, "fault": kindString, "dry_run": kindBool, "revert_after": kindDuration}
	}
	return nil
}

// DecodeControl parses an operator command's payload: a JSON object (or
// nothing) of at most MaxControlPayload bytes; the verb comes from the topic
// or the URL. It checks the types of the known commands' fields, request_id
// (a string, number or boolean) and that reply_to is a string. On an error
// the Control holds what could be read (the verb, request_id and reply_to
// when they parsed), so that the sender can still be answered.
func DecodeControl(verb string, payload []byte) (Control, error) {
	c := Control{Verb: verb, Fields: map[string]any{}}
	if len(payload) > MaxControlPayload {
		return c, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(payload), MaxControlPayload)
	}
	badVerb := !verbRe.MatchString(verb)
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		if badVerb {
			return c, fmt.Errorf("%w: verb %q: a command is named with lower-case letters, digits and _", ErrInvalid, verb)
		}
		return c, nil
	}
	if trimmed[0] != '{' {
		return c, fmt.Errorf("%w: a command is a JSON object ({\"member\": …}), not %s", ErrMalformed, jsonKind(trimmed[0]))
	}
	var raw map[string]json.RawMessage
	if err := decodeLimited(payload, &raw, MaxControlPayload); err != nil {
		return c, fmt.Errorf("%w (a command is a JSON object)", err)
	}
	var problems []string
	if id, ok := raw["request_id"]; ok {
		delete(raw, "request_id")
		switch first := firstByte(id); {
		case len(id) > MaxRequestID:
			problems = append(problems, fmt.Sprintf("request_id of %d bytes (limit %d)", len(id), MaxRequestID))
		case first == 'n': // null: none
		case first == '"' || first == 't' || first == 'f' || first == '-' || first >= '0' && first <= '9':
			c.RequestID = json.RawMessage(bytes.TrimSpace(id))
		default:
			problems = append(problems, "request_id: want a string, a number or a boolean")
		}
	}
	if badVerb {
		// The request id is read first, so that even this refusal echoes it.
		return c, fmt.Errorf("%w: verb %q: a command is named with lower-case letters, digits and _", ErrInvalid, verb)
	}
	if rt, ok := raw["reply_to"]; ok {
		delete(raw, "reply_to")
		if err := json.Unmarshal(rt, &c.ReplyTo); err != nil {
			problems = append(problems, "reply_to: want a topic (a string)")
		} else {
			c.HasReplyTo = true
		}
	}
	if _, ok := raw["auth"]; ok {
		// The inbound table opens and takes off the auth member of a
		// command an instance signed: one still here is not as an instance
		// seals it, and an operator cannot sign. It never reaches the
		// policy or the records.
		return c, fmt.Errorf("%w: the command carries an auth member that is no instance's seal (only instances sign, with the site key)", ErrBadMAC)
	}
	kinds := controlFields(verb)
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		var v any
		if err := json.Unmarshal(raw[name], &v); err != nil {
			return c, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
		}
		if k, known := kinds[name]; known && v != nil && !k.accepts(v) {
			problems = append(problems, fmt.Sprintf("%s: want %s, not %s", name, k, raw[name]))
		}
		c.Fields[name] = v
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return c, nil
}

func firstByte(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func (k fieldKind) accepts(v any) bool {
	switch k {
	case kindBool:
		_, ok := v.(bool)
		return ok
	case kindDuration:
		switch v.(type) {
		case string, float64:
			return true
		}
		return false
	default:
		_, ok := v.(string)
		return ok
	}
}

func (k fieldKind) String() string {
	switch k {
	case kindBool:
		return "true or false"
	case kindDuration:
		return `a duration like "5m", or seconds`
	default:
		return "a string"
	}
}

// ReplyPrefix is the topic prefix under which the coordinator answers
// commands that name their own reply topic: understudy/<site>/reply/.
func (t Topics) ReplyPrefix() string { return "understudy/" + t.Site + "/reply/" }

// Reply is the default reply topic of a command: understudy/<site>/command/<verb>/reply.
func (t Topics) Reply(verb string) string { return t.Control(verb) + "/reply" }

// MaxReplyPrefix bounds a reply prefix an operator account may name
// (CheckReplyPrefix): one byte less than MaxReplyTo, so that a reply_to
// under it can still be a topic of its own.
const MaxReplyPrefix = MaxReplyTo - 1

// CheckReplyPrefix checks a topic prefix under which commands may ask for
// their replies besides understudy/<site>/reply/ (site.yaml's
// bus.users[].reply_prefix, like "showctl/replies/"): not empty, ending in
// "/", UTF-8 without NUL, no wild cards (+, #), not a $ topic, at most
// MaxReplyPrefix bytes, and outside understudy's own topics ("understudy/"
// of every site: commands, states, heartbeats), so a reply can never land
// on them.
func CheckReplyPrefix(p string) error {
	switch {
	case p == "":
		return errors.New("reply_prefix is empty: give a topic prefix ending in /, like showctl/replies/")
	case len(p) > MaxReplyPrefix:
		return fmt.Errorf("reply_prefix of %d bytes: at most %d, so that a reply_to under it stays within %d", len(p), MaxReplyPrefix, MaxReplyTo)
	case !utf8.ValidString(p) || strings.ContainsRune(p, 0):
		return fmt.Errorf("reply_prefix %q is not UTF-8 text without NUL", p)
	case strings.ContainsAny(p, "+#"):
		return fmt.Errorf("reply_prefix %q: a prefix of topics to publish on has no wild cards (+, #)", p)
	case p[0] == '$':
		return fmt.Errorf("reply_prefix %q: topics starting with $ are the broker's", p)
	case !strings.HasSuffix(p, "/"):
		return fmt.Errorf("reply_prefix %q: end it in / (%q), so that it is a topic level of its own and not the start of one", p, p+"/")
	case strings.HasPrefix(p, "understudy/"):
		return fmt.Errorf("reply_prefix %q is inside understudy's own topics: a reply must never land on a site's commands, states or heartbeats (understudy/<site>/reply/ is allowed without a prefix)", p)
	}
	return nil
}

// ReplyTopic is where the answer to a command goes: its reply_to when it
// has one, else the default reply topic. A reply_to must be a topic under
// understudy/<site>/reply/, under one of prefixes (the operator accounts'
// reply prefixes; one that CheckReplyPrefix refuses is ignored), or the
// default reply topic itself: without wild cards, at most MaxReplyTo bytes
// of UTF-8 without NUL, not a $ topic. Anything else would let whoever may
// send a command make the coordinator publish on any topic (a member's
// command topic, say). A bad reply_to is an error wrapping ErrInvalid that
// names where replies may go; the reply then goes to the default topic.
func (t Topics) ReplyTopic(c Control, prefixes []string) (string, error) {
	def := t.Reply(c.Verb)
	if !c.HasReplyTo {
		return def, nil
	}
	r := c.ReplyTo
	switch {
	case r == "":
		return def, fmt.Errorf("%w: reply_to is empty", ErrInvalid)
	case len(r) > MaxReplyTo:
		return def, fmt.Errorf("%w: reply_to of %d bytes (limit %d)", ErrInvalid, len(r), MaxReplyTo)
	case !utf8.ValidString(r) || strings.ContainsRune(r, 0):
		return def, fmt.Errorf("%w: reply_to is not UTF-8 text", ErrInvalid)
	case strings.ContainsAny(r, "+#"):
		return def, fmt.Errorf("%w: reply_to %q: a topic to publish on has no wild cards (+, #)", ErrInvalid, r)
	case r == def:
		return r, nil
	case !under(r, t.ReplyPrefix()) && !slices.ContainsFunc(prefixes, func(p string) bool { return CheckReplyPrefix(p) == nil && under(r, p) }):
		allowed := []string{t.ReplyPrefix() + "…"}
		for _, p := range prefixes {
			if CheckReplyPrefix(p) == nil && !slices.Contains(allowed, p+"…") {
				allowed = append(allowed, p+"…")
			}
		}
		return def, fmt.Errorf("%w: reply_to %q: replies go under %s (or to %s)", ErrInvalid, r, strings.Join(allowed, " or "), def)
	}
	if err := CheckTopic(r); err != nil {
		return def, fmt.Errorf("reply_to: %w", err)
	}
	return r, nil
}

// under reports whether topic is a topic below prefix (which ends in "/").
func under(topic, prefix string) bool {
	return len(topic) > len(prefix) && strings.HasPrefix(topic, prefix)
}

// jsonKind names the JSON value that starts with b, for errors.
func jsonKind(b byte) string {
	switch {
	case b == '[':
		return "an array"
	case b == '"':
		return "a string"
	case b == 'n':
		return "null"
	case b == 't' || b == 'f':
		return "a boolean"
	case b == '-' || b >= '0' && b <= '9':
		return "a number"
	}
	return "valid JSON"
}
