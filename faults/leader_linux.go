//go:build linux

package faults

import (
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

// leaderPoll is how often awaitLeader asks the candidates who leads.
const leaderPoll = 50 * time.Millisecond

// statusTimeout bounds one /status asked of a candidate (a stopped one
// does not answer).
const statusTimeout = 500 * time.Millisecond

// awaitLeader waits until a candidate says on its /status that it
// coordinates (election.coordinates, election.leader itself) and nothing
// holds what o would hold on it, and returns it; false when ctx ended
// first.
func (r *runner) awaitLeader(ctx context.Context, o Op) (string, bool) {
	var why string
	for {
		leader, answers := r.leaderNow(ctx)
		if leader != "" {
			o.Member = leader
			if !r.isHeld(o) {
				return leader, true
			}
			why = leader + " leads, held by another fault"
		} else {
			why = answers
		}
		select {
		case <-ctx.Done():
			r.logf("%s: missed: no leader it could land on until the end (last: %s)", o, why)
			return "", false
		case <-time.After(leaderPoll):
		}
	}
}

// leaderNow is the candidate that coordinates now by its own /status, ""
// when none says so (answers then says what each said).
func (r *runner) leaderNow(ctx context.Context) (string, string) {
	var answers []string
	for _, c := range r.plan.Candidates() {
		var st struct {
			Election *struct {
				Self        string `json:"self"`
				Leader      string `json:"leader"`
				Coordinates bool   `json:"coordinates"`
			} `json:"election"`
		}
		if err := r.getJSON(ctx, c, "/status", &st); err != nil || st.Election == nil {
			answers = append(answers, fmt.Sprintf("%s: %v", c, err))
			continue
		}
		e := st.Election
		if e.Coordinates && e.Leader == c {
			return c, ""
		}
		answers = append(answers, fmt.Sprintf("%s: leader %q, coordinates %t", c, e.Leader, e.Coordinates))
	}
	return "", strings.Join(answers, "; ")
}

// getJSON decodes the answer of a GET of path on member's API, asked from
// its own host.
func (r *runner) getJSON(ctx context.Context, member, path string, v any) error {
	h, _ := r.plan.Host(member)
	host := r.hosts[member]
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return host.Dial(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	token, err := os.ReadFile(us.ReadTokenPath(h.StateDir, r.plan.Site.Name, member))
	if err != nil {
		return fmt.Errorf("no read token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(h.Addr, strconv.Itoa(APIPort))+path, nil)
	if err != nil {
		return err
	}
	// Not on loopback: the API answers only with a token.
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
