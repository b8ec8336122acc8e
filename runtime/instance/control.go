package instance

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"understudy/runtime/coordinator"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/runtime/engine"
	"understudy/runtime/scenario"
)

// Operator commands through the local API: POST /command/VERB with a JSON
// object of fields and the instance's token as a bearer token. The token is
// a file beside the state file (mode 0600), made at the first start, so only
// who may read the state folder may command (the CLI reads it there). The
// coordinator carries the command out and answers with what followed; any
// other instance passes it to the coordinator over the bus.

// TokenPath is where the instance of member keeps its API token.
func TokenPath(stateDir, site, member string) string {
	return filepath.Join(stateDir, site+"-"+member+".token")
}

// AddressPath is where the instance of member writes the address its API
// listens on (for the CLI: the configured port may be 0).
func AddressPath(stateDir, site, member string) string {
	return filepath.Join(stateDir, site+"-"+member+".api")
}

// ReadToken reads an API token file.
func ReadToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// loadToken reads the token file, or makes one.
func loadToken(path string) (string, error) {
	tok, err := ReadToken(path)
	if err == nil && len(tok) >= 32 {
		return tok, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 32)
	rand.Read(b)
	tok = hex.EncodeToString(b)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	return tok, nil
}

// CommandReply is the answer to an operator command: the body of the reply
// to POST /command/VERB and the payload of the reply on the bus.
type CommandReply struct {
	Verb string `json:"verb"`
	// RequestID is the command's request_id exactly as it was sent (a
	// string, number or boolean), when it had one.
	RequestID json.RawMessage `json:"request_id,omitempty"`
	OK        bool            `json:"ok"`
	Error     string          `json:"error,omitempty"`
	Forwarded string          `json:"forwarded_to,omitempty"` // the coordinator it was passed to
	Records   []engine.Record `json:"records,omitempty"`      // what followed
	Said      string          `json:"said,omitempty"`         // what was done, in words (membership changes)
}

func (inst *Instance) authorised(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	got, want := sha256.Sum256([]byte(strings.TrimSpace(tok))), sha256.Sum256([]byte(inst.token))
	return ok && subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (inst *Instance) handleCommand(w http.ResponseWriter, r *http.Request) {
	if !inst.authorised(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="understudy"`)
		http.Error(w, "commands need the instance's API token (Authorization: Bearer …, from "+filepath.Base(inst.tokenPath)+" in its state folder)", http.StatusUnauthorized)
		return
	}
	verb := r.PathValue("verb")
	body, err := io.ReadAll(io.LimitReader(r.Body, bus.MaxControlPayload+1))
	if err != nil {
		writeReplyStatus(w, http.StatusBadRequest, CommandReply{Verb: verb, Error: "bad command: " + err.Error()})
		return
	}
	cmd, err := bus.DecodeControl(verb, body)
	switch {
	case len(body) > bus.MaxControlPayload:
		err = fmt.Errorf("%w: over %d bytes (limit %d)", bus.ErrTooLarge, bus.MaxControlPayload, bus.MaxControlPayload)
	case err == nil:
		_, err = (bus.Topics{Site: inst.site.Name}).ReplyTopic(cmd, inst.site.ReplyPrefixes())
	}
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, bus.ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		writeReplyStatus(w, status, CommandReply{Verb: verb, RequestID: cmd.RequestID, Error: "bad command: " + err.Error()})
		return
	}
	if inst.coord.Load() == nil {
		// The coordinator decides: pass it on over the bus.
		inst.forwardCommand(r.Context(), w, cmd)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	reply, err := inst.runCommand(ctx, cmd.Verb, cmd.Fields, "api")
	if err != nil {
		writeReplyStatus(w, http.StatusServiceUnavailable, CommandReply{Verb: verb, RequestID: cmd.RequestID, Error: "the event loop did not answer: " + err.Error()})
		return
	}
	reply.RequestID = cmd.RequestID
	writeReply(w, reply)
}

// runCommand carries out an operator command on the coordinator and says
// what followed: refused (the runtime's error, or the policy's while handling
// it) or done, with the records it led to.
func (inst *Instance) runCommand(ctx context.Context, verb string, fields map[string]any, by string) (CommandReply, error) {
	reply := CommandReply{Verb: verb}
	c := inst.coord.Load()
	if c == nil {
		return reply, errNotCoordinating
	}
	switch verb {
	case verbLeaderTransfer:
		return inst.leaderTransfer(ctx, fields), nil
	case verbCandidateAdmit, verbCandidateRemove:
		return inst.membershipChange(verb, fields), nil
	}
	records, err := c.CommandWait(ctx, verb, fields, by)
	if err != nil {
		return reply, err
	}
	if verb == "drill" && commandOK(records) {
		if req, perr := coordinator.ParseDrill(fields); perr == nil && req.DryRun {
			rec, err := inst.dryRunDrill(ctx, req, by)
			if err != nil {
				return reply, err
			}
			records = append(records, rec)
		}
	}
	reply.OK, reply.Records = true, records
	for _, rec := range records {
		if rec.Type == events.Command {
			if e, ok := rec.Fields["error"].(string); ok {
				reply.OK, reply.Error = false, e
			}
		}
		if rec.Type == events.PolicyError && reply.Error == "" {
			reply.OK, reply.Error = false, fmt.Sprint(rec.Fields["error"])
		}
	}
	return reply, nil
}

// controlFromBus takes an operator command that came over MQTT: a command
// that does not decode, or names a reply_to it may not, is counted as a
// dropped payload and refused (on the default reply topic, or on its
// reply_to when that is a good one: under understudy/<site>/reply/ or a
// bus user's reply_prefix); any other is carried out on a goroutine of its
// own (bus callbacks must not block), at most cap(busCommands) at once.
func (inst *Instance) controlFromBus(m bus.Message) {
	leading := inst.election == nil || inst.coord.Load() != nil
	if !leading && inst.election.actingLeader() != "" {
		return // a candidate that does not lead now: the leader answers
	}
	topics := bus.Topics{Site: inst.site.Name}
	verb, _ := topics.VerbOf(m.Topic)
	if m.Retained {
		return // a command is for now, not for whoever connects later
	}
	cmd, err := bus.DecodeControl(verb, m.Payload)
	replyTo, rerr := topics.ReplyTopic(cmd, inst.site.ReplyPrefixes())
	if err == nil {
		err = rerr
	}
	if err != nil {
		if leading {
			inst.drops.Drop(m.Topic, m.Topic, len(m.Payload), err)
			inst.publishReply(replyTo, CommandReply{Verb: verb, RequestID: cmd.RequestID, Error: "bad command: " + err.Error()})
		}
		return
	}
	if !leading {
		if !inst.election.formed.Load() {
			return // in no group yet: it cannot tell whether one leads
		}
		// No candidate leads as far as this one knows (an election under
		// way): said at once rather than left unanswered. The new leader
		// may answer the same command too.
		inst.publishReply(replyTo, CommandReply{Verb: verb, RequestID: cmd.RequestID,
			Error: fmt.Sprintf("no coordinator elected now (%s is a candidate and does not lead): the candidates are electing one; send it again in a few seconds", inst.opts.Self)})
		return
	}

	// A command signed by an instance is one it passed on from its local
	// API (forwardCommand); any other came from show control or an operator
	// on the bus.
	by := "mqtt"
	if m.SignedBy != "" {
		by = "api@" + m.SignedBy
	}
	select {
	case inst.busCommands <- struct{}{}:
		if reply, done, fresh := inst.recent.take(verb, cmd.RequestID, m.Payload, time.Now()); !fresh {
			// The same command again (its request_id): over another
			// broker, or a retry. Carried out once; a retry gets the reply
			// it had.
			<-inst.busCommands
			inst.drops.Drop(m.Topic, m.Topic, len(m.Payload), fmt.Errorf("%w: command %s with request_id %s", bus.ErrDuplicate, verb, cmd.RequestID))
			if done {
				inst.publishReply(replyTo, reply)
			}
			return
		}
		go func() {
			defer func() { <-inst.busCommands }()
			inst.commandFromBus(cmd, m.Payload, replyTo, by)
		}()
	default:
		inst.log.Warn("too many operator commands at once over the bus: refused", "verb", verb)
		inst.publishReply(replyTo, CommandReply{Verb: verb, RequestID: cmd.RequestID,
			Error: fmt.Sprintf("busy: %d commands are being carried out already; send it again", cap(inst.busCommands))})
	}
}

// commandFromBus carries out a command that came over MQTT and publishes the
// reply on replyTo, with the command's request_id; by says who gave it
// ("mqtt", or "api@<member>" for one a member's instance passed on).
func (inst *Instance) commandFromBus(cmd bus.Control, payload []byte, replyTo, by string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := inst.runCommand(ctx, cmd.Verb, cmd.Fields, by)
	if errors.Is(err, errNotCoordinating) {
		return // stepped down meanwhile: the new leader answers
	}
	if err != nil {
		reply.OK, reply.Error = false, "the event loop did not answer: "+err.Error()
	}
	reply.RequestID = cmd.RequestID
	inst.recent.answered(cmd.Verb, cmd.RequestID, payload, reply)
	inst.publishReply(replyTo, reply)
}

// publishReply publishes the answer to a command that came over MQTT.
func (inst *Instance) publishReply(topic string, reply CommandReply) {
	payload, err := json.Marshal(reply)
	if err != nil {
		inst.log.Error("command reply not encoded", "verb", reply.Verb, "error", err)
		return
	}
	if err := (publisher{inst}).Publish(topic, 1, false, payload); err != nil {
		inst.log.Warn("command reply not published", "verb", reply.Verb, "topic", topic, "error", err)
	}
}

// commandOK reports whether the command's record says it was accepted.
func commandOK(records []engine.Record) bool {
	for _, r := range records {
		if r.Type == events.Command {
			return r.Fields["error"] == nil
		}
	}
	return false
}

// dryRunDrill runs a dry-run fire drill on a simulation of the site as the
// coordinator sees it now, and records what the policy would decide (as
// drill_dry_run, on every surface); nothing is sent.
func (inst *Instance) dryRunDrill(ctx context.Context, req coordinator.DrillRequest, by string) (engine.Record, error) {
	site, err := inst.engine.SiteCopy(ctx)
	if err != nil {
		return engine.Record{}, err
	}
	now, err := inst.engine.Status(ctx)
	if err != nil {
		return engine.Record{}, err
	}
	rec := engine.Record{Type: events.DrillDryRun, Member: req.Member, Fields: map[string]any{
		"fault": req.Fault, "dry_run": true, "revert_after_s": req.Revert.Seconds(), "by": by}}
	res, err := scenario.DryRun(ctx, site, now, req, scenario.Options{Registry: inst.opts.Registry})
	if err != nil {
		rec.Fields["error"] = err.Error()
	} else {
		list := func(ds []scenario.Decision) []map[string]any {
			out := []map[string]any{}
			for _, d := range ds {
				out = append(out, map[string]any{"at_s": d.At.Seconds(), "what": d.What, "cause": d.Cause})
			}
			return out
		}
		rec.Fields["decisions"], rec.Fields["events"] = list(res.Decisions), list(res.Events)
		rec.Fields["errors"], rec.Fields["wall_ms"] = res.Errors, res.Wall.Milliseconds()
		inst.log.Info("fire drill dry run", "member", req.Member, "fault", req.Fault, "decisions", len(res.Decisions), "policy_errors", len(res.Errors), "wall", res.Wall)
	}
	return inst.engine.Note(ctx, rec)
}

// writeReply answers POST /command/VERB: 200 when the command was carried
// out, 409 when it was refused.
func writeReply(w http.ResponseWriter, reply CommandReply) {
	status := http.StatusOK
	if !reply.OK {
		status = http.StatusConflict
	}
	writeReplyStatus(w, status, reply)
}

func writeReplyStatus(w http.ResponseWriter, status int, reply CommandReply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(reply)
}

// errNotCoordinating: this instance does not coordinate (any more).
var errNotCoordinating = errors.New("this instance does not coordinate now")

// membershipChange admits a candidate to the coordinator group, or
// removes it ({"member": MEMBER}): the leader carries it out, any instance
// passes it on.
func (inst *Instance) membershipChange(verb string, fields map[string]any) CommandReply {
	reply := CommandReply{Verb: verb}
	if inst.election == nil {
		reply.Error = "this site's coordinator is not elected (coordinator: names one member): there is no coordinator group"
		return reply
	}
	member, _ := fields["member"].(string)
	if member == "" {
		reply.Error = "member: want a candidate's member id"
		return reply
	}
	var (
		said string
		err  error
	)
	if verb == verbCandidateAdmit {
		said, err = inst.election.admit(member)
	} else {
		said, err = inst.election.remove(member)
	}
	if err != nil {
		reply.Error = err.Error()
		return reply
	}
	reply.OK, reply.Said = true, said
	return reply
}

// verbLeaderTransfer hands the elected coordinator's lead to another
// candidate ({"to": MEMBER}, or the first alive in the order of
// preference): the leader
// carries it out, any instance passes it on.
const verbLeaderTransfer = "leader_transfer"

func (inst *Instance) leaderTransfer(ctx context.Context, fields map[string]any) CommandReply {
	reply := CommandReply{Verb: verbLeaderTransfer}
	if inst.election == nil {
		reply.Error = "this site's coordinator is not elected (coordinator: names one member): there is no lead to hand on"
		return reply
	}
	to, _ := fields["to"].(string)
	if v, ok := fields["to"]; ok && to == "" && v != nil {
		reply.Error = "to: want a candidate's member id"
		return reply
	}
	if err := inst.election.transfer(ctx, to); err != nil {
		reply.Error = "leader transfer: " + err.Error()
		return reply
	}
	inst.log.Info("handed the coordinator's lead on, as asked", "to", cmp.Or(to, "the first alive candidate in the order of preference"))
	reply.OK = true
	return reply
}
