package instance

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"understudy/discovery/bus"
)

// forwardWait is how long a member's instance waits for the coordinator's
// answer to a command it passed on (the coordinator gives itself 5s).
const forwardWait = 7 * time.Second

// pendingReplies are the commands this instance passed to the coordinator
// and waits to hear the answer to, by request id.
type pendingReplies struct {
	mu      sync.Mutex
	waiting map[string]chan CommandReply
}

func (p *pendingReplies) add(id string) <-chan CommandReply {
	ch := make(chan CommandReply, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting == nil {
		p.waiting = map[string]chan CommandReply{}
	}
	p.waiting[id] = ch
	return ch
}

func (p *pendingReplies) remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.waiting, id)
}

// deliver hands an answer to whoever waits for it; it reports whether
// anyone did.
func (p *pendingReplies) deliver(id string, r CommandReply) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, ok := p.waiting[id]
	if ok {
		delete(p.waiting, id)
		ch <- r
	}
	return ok
}

// replyTopics is the filter of the topics on which this instance hears the
// coordinator's answers to the commands it passed on.
func (inst *Instance) replyTopics() string {
	return (bus.Topics{Site: inst.site.Name}).ReplyPrefix() + inst.opts.Self + "/+"
}

// replyFromBus takes the coordinator's answer to a command this instance
// passed on.
func (inst *Instance) replyFromBus(m bus.Message) {
	id := m.Topic[strings.LastIndexByte(m.Topic, '/')+1:]
	var r CommandReply
	if len(m.Payload) > 4*bus.MaxControlPayload || json.Unmarshal(m.Payload, &r) != nil {
		inst.drops.Drop(m.Topic, m.Topic, len(m.Payload), fmt.Errorf("%w: not a command reply", bus.ErrMalformed))
		return
	}
	if !inst.replies.deliver(id, r) {
		inst.log.Debug("answer to a command nobody waits for any more", "topic", m.Topic)
	}
}

// forwardCommand passes a command given to this member's instance on to the
// coordinator over the bus, with a reply_to of this instance's own
// (understudy/<site>/reply/<member>/<id>), and answers the request with the
// coordinator's reply. The caller's reply_to does not apply: the answer is
// the HTTP response.
func (inst *Instance) forwardCommand(ctx context.Context, w http.ResponseWriter, cmd bus.Control) {
	if e := inst.election; e != nil && e.formed.Load() && e.actingLeader() == "" {
		// A candidate in the group that knows of no leader that acts: an
		// election is under way (or the witness holds the lead for a
		// moment), or no majority reaches this one.
		writeReplyStatus(w, http.StatusServiceUnavailable, CommandReply{Verb: cmd.Verb, RequestID: cmd.RequestID,
			Error: fmt.Sprintf("no coordinator elected now (%s is a candidate and knows of no leader that acts): the candidates are electing one, or the witness holds the lead while it hands it on, or fewer than a majority reach each other; send it again in a few seconds", inst.opts.Self)})
		return
	}
	coordinator := cmp.Or(inst.coordinatorName(), "(none elected now)")
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	topics := bus.Topics{Site: inst.site.Name}
	fields := make(map[string]any, len(cmd.Fields)+2)
	for k, v := range cmd.Fields {
		fields[k] = v
	}
	fields["request_id"] = id
	fields["reply_to"] = topics.ReplyPrefix() + inst.opts.Self + "/" + id
	payload, err := json.Marshal(fields)
	if err != nil {
		writeReplyStatus(w, http.StatusBadRequest, CommandReply{Verb: cmd.Verb, RequestID: cmd.RequestID, Error: "bad command: " + err.Error()})
		return
	}
	answer := inst.replies.add(id)
	defer inst.replies.remove(id)
	if err := (publisher{inst}).Publish(topics.Control(cmd.Verb), 1, false, payload); err != nil {
		writeReplyStatus(w, http.StatusServiceUnavailable, CommandReply{Verb: cmd.Verb, RequestID: cmd.RequestID, Forwarded: coordinator,
			Error: "cannot pass the command to the coordinator " + coordinator + ": " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, forwardWait)
	defer cancel()
	select {
	case reply := <-answer:
		reply.Verb, reply.RequestID, reply.Forwarded = cmd.Verb, cmd.RequestID, coordinator
		writeReply(w, reply)
	case <-ctx.Done():
		writeReplyStatus(w, http.StatusGatewayTimeout, CommandReply{Verb: cmd.Verb, RequestID: cmd.RequestID, Forwarded: coordinator,
			Error: fmt.Sprintf("passed to the coordinator %s, which did not answer within %v: is it running and on the bus?", coordinator, forwardWait)})
	}
}
