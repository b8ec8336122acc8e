package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	us "understudy/runtime/instance"
)

// operatorTimeout bounds one command through a member's API: the member
// passes it to the coordinator and answers with its reply.
const operatorTimeout = 10 * time.Second

// operate carries out an operator op: the command through o.Member's API
// (another member's when that one does not answer), sent again every
// second until the coordinator takes it, as an operator would; for manual
// mode, auto again once For has passed since the first try.
func (r *runner) operate(ctx context.Context, o *Op) {
	o.Start = time.Now()
	if o.Verb == VerbReassert {
		o.Reply, _ = r.insist(ctx, o.Member, VerbReassert, map[string]any{}, o.Start.Add(r.opts.Duration))
		o.End = o.Start
		r.logf("%s", o)
		return
	}
	o.Reply, _ = r.insist(ctx, o.Member, VerbMode, map[string]any{"mode": "manual"}, o.Start.Add(o.For))
	r.logf("%s", o)
	if !sleepUntil(ctx, o.Start.Add(o.For)) {
		return
	}
	reply, taken := r.insist(ctx, o.Member, VerbMode, map[string]any{"mode": "auto"}, o.Start.Add(r.opts.Duration))
	o.Reply += "; auto: " + reply
	if taken {
		o.End = time.Now()
	}
}

// insist sends a command every second until it is taken, ctx ends or
// until passes, and returns the replies of the tries (each different one
// once) and whether it was taken.
func (r *runner) insist(ctx context.Context, member, verb string, fields map[string]any, until time.Time) (string, bool) {
	var replies []string
	for {
		reply, taken := r.command(ctx, member, verb, fields)
		if n := len(replies); n == 0 || replies[n-1] != reply {
			replies = append(replies, reply)
		}
		if taken || time.Now().After(until) {
			return strings.Join(replies, ", then "), taken
		}
		select {
		case <-ctx.Done():
			return strings.Join(replies, ", then "), false
		case <-time.After(time.Second):
		}
	}
}

// command sends verb through member's API, or through the next member's
// when that one cannot be reached, and returns "ok" or why not, and
// whether the coordinator took it.
func (r *runner) command(ctx context.Context, member, verb string, fields map[string]any) (string, bool) {
	var tried []string
	order := []string{member}
	for _, h := range r.plan.Hosts {
		if h.Member != member {
			order = append(order, h.Member)
		}
	}
	for _, m := range order {
		reply, reached := r.commandVia(ctx, m, verb, fields)
		if reached {
			if len(tried) > 0 {
				reply += " (through " + m + "; " + strings.Join(tried, "; ") + ")"
			}
			return reply, strings.HasPrefix(reply, "ok")
		}
		tried = append(tried, m+": "+reply)
		if ctx.Err() != nil {
			break
		}
	}
	return "no member's API answered: " + strings.Join(tried, "; "), false
}

// commandVia sends verb through member's API from its own host, with the
// command token its instance keeps in its state folder. reached is false
// when the API could not be reached or gave no reply.
func (r *runner) commandVia(ctx context.Context, member, verb string, fields map[string]any) (reply string, reached bool) {
	h, _ := r.plan.Host(member)
	host := r.hosts[member]
	token, err := os.ReadFile(us.TokenPath(h.StateDir, r.plan.Site.Name, member))
	if err != nil {
		return fmt.Sprintf("no token: %v", err), false
	}
	client := &http.Client{Timeout: operatorTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return host.Dial(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(fields)
	url := "http://" + net.JoinHostPort(h.Addr, strconv.Itoa(APIPort)) + "/command/" + verb
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err.Error(), false
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err.Error(), false
	}
	defer resp.Body.Close()
	var cr us.CommandReply
	if err := json.NewDecoder(resp.Body).Decode(&cr); err != nil {
		return fmt.Sprintf("%s: %v", resp.Status, err), false
	}
	if cr.OK {
		return "ok", true
	}
	return "refused: " + cr.Error, true
}
