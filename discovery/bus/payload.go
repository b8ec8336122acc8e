package bus

import (
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
	Conn       uint64 `json:"conn"` // bus connection number within the boot; 0: sent over several brokers at once (Paths)
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
	// Path is the broker it came through (Message.Path), set by the
	// receiver: on a site with several brokers each of an instance's
	// connections has its own presence and Will.
	Path int `json:"-"`
}

// isToken reports whether s is a name this bus takes for a member, a boot, a
// command id and the like: a letter or digit, then up to 63 letters, digits,
// '_', '.' or '-' (the pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$, checked by
// hand: it runs several times for every heartbeat).
func isToken[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// Decoding errors, one per reason, so drops can be counted by reason.
var (
	ErrTooLarge    = errors.New("payload too large")
	ErrMalformed   = errors.New("malformed JSON")
	ErrInvalid     = errors.New("invalid field")
	ErrWrongMember = errors.New("member does not match topic")
	// ErrUnknownMember is for well-formed payloads from a member the site
	// does not have; the receiver wraps it.
	ErrUnknownMember = errors.New("unknown member")
	// ErrUnknownCommand is for an operator command of a verb neither the
	// runtime nor the running policy handles; the coordinator wraps it.
	ErrUnknownCommand = errors.New("unknown command")
)

// DecodeHeartbeat parses and checks a heartbeat published on the heartbeat
// topic of member topicMember.
func DecodeHeartbeat(topicMember string, payload []byte) (Heartbeat, error) {
	var h Heartbeat
	if err := decodeStrictly(payload, &h); err != nil {
		return Heartbeat{}, err
	}
	switch {
	case !isToken(h.Member):
		return Heartbeat{}, fmt.Errorf("%w: member %q", ErrInvalid, h.Member)
	case h.Member != topicMember:
		return Heartbeat{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, h.Member, topicMember)
	case !isToken(h.Boot):
		return Heartbeat{}, fmt.Errorf("%w: boot %q", ErrInvalid, h.Boot)
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
	case !isToken(p.Member):
		return Presence{}, fmt.Errorf("%w: member %q", ErrInvalid, p.Member)
	case p.Member != topicMember:
		return Presence{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, p.Member, topicMember)
	case p.State != "online" && p.State != "closed" && p.State != "gone":
		return Presence{}, fmt.Errorf("%w: state %q", ErrInvalid, p.State)
	case !isToken(p.Boot):
		return Presence{}, fmt.Errorf("%w: boot %q", ErrInvalid, p.Boot)
	}
	return p, nil
}

// MaxCommandPayload bounds commands, acks and health reports: a command may
// carry a member's configuration bundle.
const MaxCommandPayload = 1 << 20

// Command is what the coordinator sends an instance that must act: run the
// hook named Verb with Args. ID and Epoch let the receiver drop duplicates and
// commands of an older coordinator.
type Command struct {
	ID    string         `json:"id"`
	Epoch uint64         `json:"epoch"`
	From  string         `json:"from"`
	Verb  string         `json:"verb"`
	Args  map[string]any `json:"args,omitempty"`
}

// Ack states.
const (
	AckRunning = "running" // received, being carried out
	AckDone    = "done"
	AckFailed  = "failed"
	AckStale   = "stale" // from an older coordinator epoch: not carried out
)

// Ack is an instance's answer to a command.
type Ack struct {
	ID     string `json:"id"`
	Epoch  uint64 `json:"epoch"`
	Member string `json:"member"` // the instance that acted
	State  string `json:"state"`
	Error  string `json:"error,omitempty"`
	Result any    `json:"result,omitempty"`
	Newest uint64 `json:"newest,omitempty"` // stale: the newest epoch the instance has seen
}

// Health is an instance's report of its material disks.
type Health struct {
	Member string       `json:"member"`
	Broken bool         `json:"broken"` // every material disk failed
	Disks  []DiskHealth `json:"disks"`
}

// CopyProgress is the state of a material copy an instance runs for the
// coordinator's action Action, published at most about once a second.
type CopyProgress struct {
	Action     string  `json:"action"`
	Member     string  `json:"member"` // the instance copying (the restored member)
	From       string  `json:"from"`   // where the material comes from
	FilesDone  int     `json:"files_done"`
	FilesTotal int     `json:"files_total"`
	BytesDone  int64   `json:"bytes_done"`
	BytesTotal int64   `json:"bytes_total"`
	Rate       float64 `json:"rate"`  // bytes per second
	ETA        float64 `json:"eta_s"` // seconds; 0 when unknown or done
	Current    string  `json:"current,omitempty"`
	Final      bool    `json:"final,omitempty"` // the copy has stopped (its result comes as the action's answer)
}

// DecodeCopyProgress parses and checks a copy progress report of member
// topicMember.
func DecodeCopyProgress(topicMember string, payload []byte) (CopyProgress, error) {
	var p CopyProgress
	if err := decodeLimited(payload, &p, 16<<10); err != nil {
		return CopyProgress{}, err
	}
	switch {
	case p.Member != topicMember:
		return CopyProgress{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, p.Member, topicMember)
	case !isToken(p.Action):
		return CopyProgress{}, fmt.Errorf("%w: action %q", ErrInvalid, p.Action)
	case p.FilesDone < 0 || p.FilesTotal < 0 || p.BytesDone < 0 || p.BytesTotal < 0 || p.Rate < 0 || p.ETA < 0:
		return CopyProgress{}, fmt.Errorf("%w: negative count", ErrInvalid)
	}
	return p, nil
}

// DiskHealth is one disk of a Health report.
type DiskHealth struct {
	Path  string `json:"path"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// MaxConfigContent bounds a configuration bundle carried on the bus.
const MaxConfigContent = 512 << 10

// ConfigReport is an instance's retained report of its configuration bundle:
// its version, the version it was derived from (Base; equal to Version when
// the file has not changed since), its hash and content. The coordinator
// keeps the newest per bundle and sends it to a member that reports an older one.
type ConfigReport struct {
	Member  string `json:"member"`
	Bundle  string `json:"bundle"`
	Version uint64 `json:"version"`
	Base    uint64 `json:"base"`
	Hash    string `json:"hash"`
	Content string `json:"content"`
}

// DecodeConfigReport parses and checks a configuration report of member topicMember.
func DecodeConfigReport(topicMember string, payload []byte) (ConfigReport, error) {
	var r ConfigReport
	if err := decodeLimited(payload, &r, MaxConfigContent*2); err != nil {
		return ConfigReport{}, err
	}
	switch {
	case r.Member != topicMember:
		return ConfigReport{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, r.Member, topicMember)
	case !isToken(r.Bundle):
		return ConfigReport{}, fmt.Errorf("%w: bundle %q", ErrInvalid, r.Bundle)
	case r.Version == 0 || r.Base > r.Version:
		return ConfigReport{}, fmt.Errorf("%w: version %d base %d", ErrInvalid, r.Version, r.Base)
	case len(r.Hash) != 64:
		return ConfigReport{}, fmt.Errorf("%w: hash %q", ErrInvalid, r.Hash)
	case len(r.Content) > MaxConfigContent:
		return ConfigReport{}, fmt.Errorf("%w: content of %d bytes (limit %d)", ErrTooLarge, len(r.Content), MaxConfigContent)
	}
	return r, nil
}

// MaxAbout bounds a member's description of itself.
const MaxAbout = 64 << 10

// DecodeAbout parses a member's description of itself (at most MaxAbout
// bytes) into M, the caller's type for it (the runtime's member entry of
// site.yaml: the bus carries the description without knowing its schema).
// The description is a JSON object whose "id" (in any case, as
// encoding/json matches names) must name the member of the topic it came
// on. The receiver validates the rest against the site.
func DecodeAbout[M any](topicMember string, payload []byte) (M, error) {
	var m, zero M
	if err := decodeLimited(payload, &m, MaxAbout); err != nil {
		return zero, err
	}
	var head struct{ ID string }
	if err := decodeLimited(payload, &head, MaxAbout); err != nil {
		return zero, err
	}
	if head.ID != topicMember {
		return zero, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, head.ID, topicMember)
	}
	return m, nil
}

var verbRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// DecodeCommand parses and checks a command sent to member topicMember.
func DecodeCommand(payload []byte) (Command, error) {
	var c Command
	if err := decodeLimited(payload, &c, MaxCommandPayload); err != nil {
		return Command{}, err
	}
	switch {
	case !isToken(c.ID):
		return Command{}, fmt.Errorf("%w: id %q", ErrInvalid, c.ID)
	case c.Epoch == 0:
		return Command{}, fmt.Errorf("%w: epoch missing", ErrInvalid)
	case !isToken(c.From):
		return Command{}, fmt.Errorf("%w: from %q", ErrInvalid, c.From)
	case !isToken(c.Verb):
		return Command{}, fmt.Errorf("%w: verb %q", ErrInvalid, c.Verb)
	}
	return c, nil
}

// DecodeAck parses and checks an ack published on member topicMember's ack topic.
func DecodeAck(topicMember string, payload []byte) (Ack, error) {
	var a Ack
	if err := decodeLimited(payload, &a, MaxCommandPayload); err != nil {
		return Ack{}, err
	}
	switch {
	case !isToken(a.ID):
		return Ack{}, fmt.Errorf("%w: id %q", ErrInvalid, a.ID)
	case a.Member != topicMember:
		return Ack{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, a.Member, topicMember)
	case a.State != AckRunning && a.State != AckDone && a.State != AckFailed && a.State != AckStale:
		return Ack{}, fmt.Errorf("%w: state %q", ErrInvalid, a.State)
	}
	return a, nil
}

// DecodeHealth parses and checks a health report of member topicMember.
func DecodeHealth(topicMember string, payload []byte) (Health, error) {
	var h Health
	if err := decodeLimited(payload, &h, 64<<10); err != nil {
		return Health{}, err
	}
	if h.Member != topicMember {
		return Health{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, h.Member, topicMember)
	}
	return h, nil
}

// RaftMember is a coordinator candidate's retained word of itself in the
// election (understudy/<site>/member/<id>/raft): its raft server id (a new
// one each time its raft state is made anew) and address, the hash of the
// candidate list its site.yaml names, and whether it has raft state; one
// with state also says the group's servers as it knows them. New
// candidates form a group once all of them say they have none; a group
// that exists admits a new server only when an operator asks.
type RaftMember struct {
	Member     string   `json:"member"`
	Server     string   `json:"server"`
	Addr       string   `json:"addr"`
	Candidates string   `json:"candidates"`
	State      bool     `json:"state"`
	Servers    []string `json:"servers,omitempty"`
}

// DecodeRaftMember parses and checks a RaftMember of member topicMember.
func DecodeRaftMember(topicMember string, payload []byte) (RaftMember, error) {
	var r RaftMember
	if err := decodeLimited(payload, &r, 16<<10); err != nil {
		return RaftMember{}, err
	}
	if r.Member != topicMember {
		return RaftMember{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, r.Member, topicMember)
	}
	if r.Server == "" || r.Addr == "" || strings.ContainsAny(r.Server, "\n\r") {
		return RaftMember{}, fmt.Errorf("%w: no raft server id or address", ErrMalformed)
	}
	return r, nil
}

// CoordinatorInfo is the coordinator's retained word of itself
// (understudy/<site>/coordinator): which member decides for the site now,
// in which election term (0: the one site.yaml names) and coordinator
// epoch, since when. A site that elects its coordinator has a newer one
// with each election; the highest term is the one that holds.
type CoordinatorInfo struct {
	Member string    `json:"member"`
	Term   uint64    `json:"term,omitempty"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
}

// DecodeCoordinatorInfo decodes the coordinator's retained word of itself.
func DecodeCoordinatorInfo(payload []byte) (CoordinatorInfo, error) {
	var c CoordinatorInfo
	if err := decodeLimited(payload, &c, 4<<10); err != nil {
		return CoordinatorInfo{}, err
	}
	if c.Member == "" {
		return CoordinatorInfo{}, fmt.Errorf("%w: no member", ErrMalformed)
	}
	return c, nil
}

// MaxCovering bounds an instance's report of the members it covers.
const MaxCovering = 16 << 10

// Covering is an instance's retained report of the members whose duties it
// has taken over and not given back (a takeover command done, no release
// done since), from its own record of the commands it carried out. The
// coordinator rebuilds its coverage from these when its state was lost.
type Covering struct {
	Member   string    `json:"member"` // the instance reporting (a standby)
	Covering []Covered `json:"covering"`
}

// Covered is one member a standby covers: since when (the standby's clock:
// when the takeover command arrived), by which command of which epoch.
type Covered struct {
	Member string    `json:"member"`
	Since  time.Time `json:"since"`
	Action string    `json:"action,omitempty"`
	Epoch  uint64    `json:"epoch,omitempty"`
}

// DecodeCovering parses and checks a covering report of member topicMember
// (at most MaxCovering bytes): members are ids, none twice, none the
// reporter itself.
func DecodeCovering(topicMember string, payload []byte) (Covering, error) {
	var c Covering
	if err := decodeLimited(payload, &c, MaxCovering); err != nil {
		return Covering{}, err
	}
	if c.Member != topicMember {
		return Covering{}, fmt.Errorf("%w: payload says %q, topic %q", ErrWrongMember, c.Member, topicMember)
	}
	seen := make(map[string]bool, len(c.Covering))
	for _, cv := range c.Covering {
		switch {
		case !isToken(cv.Member):
			return Covering{}, fmt.Errorf("%w: covered member %q", ErrInvalid, cv.Member)
		case cv.Member == c.Member:
			return Covering{}, fmt.Errorf("%w: %s reports covering itself", ErrInvalid, c.Member)
		case seen[cv.Member]:
			return Covering{}, fmt.Errorf("%w: %s reported twice", ErrInvalid, cv.Member)
		case cv.Action != "" && !isToken(cv.Action):
			return Covering{}, fmt.Errorf("%w: action %q", ErrInvalid, cv.Action)
		}
		seen[cv.Member] = true
	}
	return c, nil
}

func decodeStrictly(payload []byte, v any) error { return decodeLimited(payload, v, MaxPayload) }

func decodeLimited(payload []byte, v any, limit int) error {
	if len(payload) > limit {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(payload), limit)
	}
	// One JSON value and nothing after it but white space.
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// Reason names the class of a decoding error for counting.
func Reason(err error) string {
	for _, e := range []error{ErrTooLarge, ErrMalformed, ErrWrongMember, ErrInvalid, ErrUnknownMember, ErrUnauthenticated, ErrBadMAC, ErrReplayed, ErrWrongSender, ErrUnknownCommand} {
		if errors.Is(err, e) {
			return strings.ReplaceAll(e.Error(), " ", "_")
		}
	}
	return "other"
}
