package instance

import (
	"sync"
	"time"
)

// recentCommands remembers the operator commands that came over MQTT with a
// request_id, for a minute: the same command again (its verb and
// request_id) is not carried out twice. Show-control gear connected to two
// candidates' brokers may send it on both, and a retry of a command whose
// reply was lost gets that reply again. Bounded: at most maxRecent commands
// are remembered; the oldest goes first. Safe for concurrent use.
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

// take reports whether the command (verb, requestID) is new, and remembers
// it; when it is not, the reply it had (done false: not answered yet).
func (r *recentCommands) take(verb string, requestID []byte, now time.Time) (reply CommandReply, done, fresh bool) {
	if len(requestID) == 0 {
		return CommandReply{}, false, true // nothing to know it again by
	}
	k := verb + recentKeySep + string(requestID)
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
func (r *recentCommands) answered(verb string, requestID []byte, reply CommandReply) {
	if len(requestID) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.byKey[verb+recentKeySep+string(requestID)]; ok {
		c.done, c.reply = true, reply
	}
}
