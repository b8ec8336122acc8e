package instance

import (
	"crypto/sha256"
	"sync"
	"time"
)

// recentCommands remembers the operator commands that came over MQTT with a
// request_id, for a few seconds: the same command again (the same payload,
// request_id included) is not carried out twice. Show-control gear connected
// to two candidates' brokers may send it on both, a broker may deliver a
// QoS 1 message twice, and a retry of a command whose reply was lost gets
// that reply again. A command given again later is a new one. Bounded: at
// most maxRecent commands are remembered; the oldest goes first. Safe for
// concurrent use.
type recentCommands struct {
	mu    sync.Mutex
	byKey map[string]*recentCommand
	order []string // keys, oldest first
}

type recentCommand struct {
	at    time.Time
	done  bool
	reply CommandReply
}

const (
	maxRecent    = 256
	recentForget = time.Minute
	recentKeySep = "\x00"
)

// recentKey identifies a command: its verb and payload.
func recentKey(verb string, payload []byte) string {
	sum := sha256.Sum256(payload)
	return verb + "\x00" + string(sum[:])
}

// take reports whether the command (verb, payload, with requestID) is new,
// and remembers it; when it is not, the reply it had (done false: not
// answered yet).
func (r *recentCommands) take(verb string, requestID, payload []byte, now time.Time) (reply CommandReply, done, fresh bool) {
	if len(requestID) == 0 {
		return CommandReply{}, false, true // nothing to know it again by
	}
	k := recentKey(verb, payload)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey = map[string]*recentCommand{}
	}
	for len(r.order) > 0 {
		oldest := r.byKey[r.order[0]]
		if len(r.order) < maxRecent && oldest != nil && now.Sub(oldest.at) < recentForget {
			break
		}
		delete(r.byKey, r.order[0])
		r.order = r.order[1:]
	}
	if c, ok := r.byKey[k]; ok {
		return c.reply, c.done, false
	}
	r.byKey[k] = &recentCommand{at: now}
	r.order = append(r.order, k)
	return CommandReply{}, false, true
}

// answered keeps the reply of a command taken.
func (r *recentCommands) answered(verb string, requestID, payload []byte, reply CommandReply) {
	if len(requestID) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.byKey[recentKey(verb, payload)]; ok {
		c.done, c.reply = true, reply
	}
}
