package instance

import (
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

	"understudy/discovery/bus"
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

// CommandReply is the answer to POST /command/VERB.
type CommandReply struct {
	Verb      string          `json:"verb"`
	RequestID string          `json:"request_id,omitempty"` // echoed from an MQTT command
	OK        bool            `json:"ok"`
	Error     string          `json:"error,omitempty"`
	Forwarded string          `json:"forwarded_to,omitempty"` // the coordinator it was passed to
	Records   []engine.Record `json:"records,omitempty"`      // what followed
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
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fields, err := bus.DecodeControl(verb, body)
	if err != nil {
		http.Error(w, "bad command: "+err.Error(), http.StatusBadRequest)
		return
	}
	reply := CommandReply{Verb: verb}
	if inst.site.Coordinator != inst.opts.Self {
		// The coordinator decides: pass it on over the bus.
		payload, _ := json.Marshal(fields)
		if err := (publisher{inst}).Publish((bus.Topics{Site: inst.site.Name}).Control(verb), 1, false, payload); err != nil {
			http.Error(w, "cannot pass the command to the coordinator: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		reply.OK, reply.Forwarded = true, inst.site.Coordinator
		writeReply(w, reply)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	reply, err = inst.runCommand(ctx, verb, fields, "api")
	if err != nil {
		http.Error(w, "the event loop did not answer: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeReply(w, reply)
}

// runCommand carries out an operator command on the coordinator and says
// what followed: refused (the runtime's error, or the policy's while handling
// it) or done, with the records it led to.
func (inst *Instance) runCommand(ctx context.Context, verb string, fields map[string]any, by string) (CommandReply, error) {
	reply := CommandReply{Verb: verb}
	records, err := inst.engine.CommandWait(ctx, verb, fields, by)
	if err != nil {
		return reply, err
	}
	if verb == "drill" && commandOK(records) {
		if req, perr := engine.ParseDrill(fields); perr == nil && req.DryRun {
			rec, err := inst.dryRunDrill(ctx, req, by)
			if err != nil {
				return reply, err
			}
			records = append(records, rec)
		}
	}
	reply.OK, reply.Records = true, records
	for _, rec := range records {
		if rec.Type == "command" {
			if e, ok := rec.Fields["error"].(string); ok {
				reply.OK, reply.Error = false, e
			}
		}
		if rec.Type == "policy_error" && reply.Error == "" {
			reply.OK, reply.Error = false, fmt.Sprint(rec.Fields["error"])
		}
	}
	return reply, nil
}

// commandFromBus carries out a command that came over MQTT and publishes the
// reply on its reply topic: reply_to from the payload, else
// understudy/<site>/command/<verb>/reply; request_id is echoed. It runs on a
// goroutine of its own (bus callbacks must not block).
func (inst *Instance) commandFromBus(verb string, fields map[string]any) {
	replyTo, _ := fields["reply_to"].(string)
	requestID, _ := fields["request_id"].(string)
	delete(fields, "reply_to")
	delete(fields, "request_id")
	if replyTo == "" {
		replyTo = (bus.Topics{Site: inst.site.Name}).Control(verb) + "/reply"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := inst.runCommand(ctx, verb, fields, "mqtt")
	if err != nil {
		reply.Error = "the event loop did not answer: " + err.Error()
	}
	reply.RequestID = requestID
	payload, err := json.Marshal(reply)
	if err != nil {
		return
	}
	if err := (publisher{inst}).Publish(replyTo, 1, false, payload); err != nil {
		inst.log.Warn("command reply not published", "verb", verb, "topic", replyTo, "error", err)
	}
}

// commandOK reports whether the command's record says it was accepted.
func commandOK(records []engine.Record) bool {
	for _, r := range records {
		if r.Type == "command" {
			return r.Fields["error"] == nil
		}
	}
	return false
}

// dryRunDrill runs a dry-run fire drill on a simulation of the site as the
// coordinator sees it now, and records what the policy would decide (as
// drill_dry_run, on every surface); nothing is sent.
func (inst *Instance) dryRunDrill(ctx context.Context, req engine.DrillRequest, by string) (engine.Record, error) {
	site, err := inst.engine.SiteCopy(ctx)
	if err != nil {
		return engine.Record{}, err
	}
	now, err := inst.engine.Status(ctx)
	if err != nil {
		return engine.Record{}, err
	}
	rec := engine.Record{Type: "drill_dry_run", Member: req.Member, Fields: map[string]any{
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

func writeReply(w http.ResponseWriter, reply CommandReply) {
	w.Header().Set("Content-Type", "application/json")
	if !reply.OK {
		w.WriteHeader(http.StatusConflict)
	}
	json.NewEncoder(w).Encode(reply)
}
