package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/engine"
	"understudy/runtime/instance"
)

// The operator's CLI: it talks to the instance running on this machine
// through its local API (the address and the token it keeps in its state
// folder), which carries commands out on the coordinator or passes them to it.

// apiFlags are the flags every control command takes.
type apiFlags struct {
	site, member, state, api string
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.site, "c", "site.yaml", "the site file")
	fs.StringVar(&a.member, "member", "", "which member's instance to talk to (default: $UNDERSTUDY_MEMBER, else the host name)")
	fs.StringVar(&a.state, "state", "", "its state folder (default: $STATE_DIRECTORY, else site.yaml's state_dir)")
	fs.StringVar(&a.api, "api", "", "its API address, http://host:port (default: as it wrote it in its state folder)")
}

// client finds the instance's API address and command token.
func (a *apiFlags) client() (base, token string, err error) {
	return a.clientWith(instance.TokenPath)
}

// clientWith finds the instance's API address and the token kept in the
// file tokenPath names (instance.TokenPath, instance.ReadTokenPath).
func (a *apiFlags) clientWith(tokenPath func(stateDir, site, member string) string) (base, token string, err error) {
	site, err := config.Load(a.site)
	if err != nil {
		return "", "", err
	}
	self, err := whoAmI(site, a.member)
	if err != nil {
		return "", "", err
	}
	dir := a.state
	if dir == "" {
		dir = os.Getenv("STATE_DIRECTORY")
	}
	if dir == "" {
		dir = site.StateDir
	}
	base = a.api
	if base == "" {
		data, err := os.ReadFile(instance.AddressPath(dir, site.Name, self))
		if err != nil {
			return "", "", fmt.Errorf("is the instance of %s running on this machine? %w", self, err)
		}
		base = strings.TrimSpace(string(data))
	}
	token, err = instance.ReadToken(tokenPath(dir, site.Name, self))
	return strings.TrimSuffix(base, "/"), token, err
}

var apiClient = &http.Client{Timeout: 10 * time.Second}

// cmdControl sends an operator command: takeover, failback, mode, confirm,
// reject.
func cmdControl(verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a apiFlags
	a.register(fs)
	standby := fs.String("standby", "", "takeover: the standby to take over (default: the policy picks)")
	all := fs.String("all", "", "takeover --all STANDBY: the standby takes over every member of its pool")
	realDrill := fs.Bool("real", false, "drill: a real drill (the fault is given for real; it reverts after --revert); default: a dry run, nothing sent")
	fault := fs.String("fault", "lost", "drill: the fault, lost or broken")
	revert := fs.String("revert", "5m", "drill: how long until a real drill reverts (the dry run shows the revert too)")
	end := fs.Bool("end", false, "drill --end MEMBER: end the member's drill now")
	usage := map[string]string{
		"takeover":   "understudy takeover [flags] MEMBER | --all STANDBY",
		"failback":   "understudy failback [flags] MEMBER",
		"mode":       "understudy mode [flags] auto|manual",
		"confirm":    "understudy confirm [flags] PROPOSAL",
		"reject":     "understudy reject [flags] PROPOSAL",
		"drill":      "understudy drill [flags] [--real] [--fault lost|broken] [--revert 5m] MEMBER | --end MEMBER",
		"reassert":   "understudy reassert [flags] [DRIVER [OUTPUT]]",
		"command":    "understudy command [flags] VERB [KEY=VALUE ...]",
		"leader":     "understudy leader transfer [flags] [MEMBER]  (hand the elected coordinator's lead to MEMBER, default the first candidate in the order of preference that is alive and can coordinate)",
		"candidates": "understudy candidates admit|remove [flags] MEMBER  (admit MEMBER's candidate to the coordinator group as the raft server it is now, in place of the one it was; or take it out)",
	}
	fs.Usage = func() { fmt.Fprintln(stderr, "usage:", usage[verb]); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	fields := map[string]any{}
	switch {
	case verb == "reassert":
		if fs.NArg() > 2 {
			fs.Usage()
			return 2
		}
		if fs.NArg() > 0 {
			fields["driver"] = fs.Arg(0)
		}
		if fs.NArg() > 1 {
			n, err := strconv.Atoi(fs.Arg(1))
			if err != nil || n < 1 {
				fmt.Fprintf(stderr, "understudy reassert: output %q: a switcher output, from 1\n", fs.Arg(1))
				return 2
			}
			fields["output"] = n
		}
	case verb == "leader":
		if fs.NArg() < 1 || fs.Arg(0) != "transfer" || fs.NArg() > 2 {
			fs.Usage()
			return 2
		}
		verb = "leader_transfer"
		if fs.NArg() == 2 {
			fields["to"] = fs.Arg(1)
		}
	case verb == "candidates":
		if fs.NArg() != 2 || (fs.Arg(0) != "admit" && fs.Arg(0) != "remove") {
			fs.Usage()
			return 2
		}
		verb = "candidate_" + fs.Arg(0)
		fields["member"] = fs.Arg(1)
	case verb == "command":
		if fs.NArg() < 1 {
			fs.Usage()
			return 2
		}
		verb = fs.Arg(0)
		for _, kv := range fs.Args()[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				fmt.Fprintf(stderr, "understudy command: %q: give KEY=VALUE\n", kv)
				return 2
			}
			var value any
			if json.Unmarshal([]byte(v), &value) != nil {
				value = v // not JSON: text
			}
			fields[k] = value
		}
	case verb == "takeover" && *all != "" && fs.NArg() == 0:
		verb, fields["standby"] = "takeover_all", *all
	case fs.NArg() != 1:
		fs.Usage()
		return 2
	case verb == "takeover" || verb == "failback":
		fields["member"] = fs.Arg(0)
		if *standby != "" {
			fields["standby"] = *standby
		}
	case verb == "drill" && *end:
		verb, fields["member"] = "drill_end", fs.Arg(0)
	case verb == "drill":
		fields["member"], fields["fault"], fields["dry_run"], fields["revert_after"] = fs.Arg(0), *fault, !*realDrill, *revert
	case verb == "mode":
		if !slices.Contains([]string{config.ModeAuto, config.ModeManual}, fs.Arg(0)) {
			fmt.Fprintf(stderr, "understudy mode: %q: auto or manual\n", fs.Arg(0))
			return 2
		}
		fields["mode"] = fs.Arg(0)
	default: // confirm, reject
		fields["proposal"] = fs.Arg(0)
	}
	// said is the command as the operator typed it, for the messages.
	said := map[string]string{"leader_transfer": "leader transfer", "candidate_admit": "candidates admit", "candidate_remove": "candidates remove"}[verb]
	if said == "" {
		said = verb
	}
	base, token, err := a.client()
	if err != nil {
		fmt.Fprintln(stderr, "understudy "+said+":", err)
		return 1
	}
	body, _ := json.Marshal(fields)
	req, _ := http.NewRequest(http.MethodPost, base+"/command/"+verb, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "understudy "+said+":", err)
		return 1
	}
	defer resp.Body.Close()
	var reply instance.CommandReply
	if resp.Header.Get("Content-Type") != "application/json" || json.NewDecoder(resp.Body).Decode(&reply) != nil {
		msg, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(stderr, "understudy %s: %s %s\n", said, resp.Status, strings.TrimSpace(string(msg)))
		return 1
	}
	for _, r := range reply.Records {
		switch {
		case r.Type == events.Command:
		case strings.HasPrefix(r.Type, "action_"):
			fmt.Fprintf(stdout, "  → %s%s\n", r.Action(), r.Summary())
		case r.Type == events.DrillDryRun:
			printDryRun(stdout, r)
		default:
			fmt.Fprintln(stdout, recordLine(r))
		}
	}
	by := ""
	if reply.Forwarded != "" {
		by = " by the coordinator " + reply.Forwarded
	}
	switch {
	case !reply.OK:
		fmt.Fprintf(stderr, "understudy %s: refused%s: %s\n", said, by, reply.Error)
		return 1
	case verb == "leader_transfer":
		to := "the first candidate in the order of preference that is alive and can coordinate"
		if t, ok := fields["to"].(string); ok {
			to = t
		}
		fmt.Fprintf(stdout, "leader transfer: the lead is handed to %s%s; `understudy status` shows the new leader once it coordinates\n", to, by)
	case reply.Said != "":
		fmt.Fprintf(stdout, "%s%s\n", reply.Said, by)
	case len(reply.Records) <= 1:
		fmt.Fprintf(stdout, "%s: accepted%s; the policy did nothing with it\n", verb, by)
	default:
		fmt.Fprintf(stdout, "%s: done%s\n", verb, by)
	}
	return 0
}

// recordLine is a record in one line: its type, member and story (its
// fields when it has none of the usual ones).
func recordLine(r engine.Record) string {
	line := r.Type
	if r.Member != "" {
		line += " " + r.Member
	}
	if sum := r.Summary(); sum != "" {
		return line + sum
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.Fields)) {
		if v := fmt.Sprint(r.Fields[k]); v != "" && len(v) <= 80 {
			parts = append(parts, k+": "+v)
		}
	}
	if len(parts) > 0 {
		line += " (" + strings.Join(parts, "; ") + ")"
	}
	return line
}

// printDryRun prints what a dry-run drill found.
func printDryRun(w io.Writer, r engine.Record) {
	if e, ok := r.Fields["error"]; ok {
		fmt.Fprintf(w, "DRY-RUN DRILL of %s could not run: %v\n", r.Member, e)
		return
	}
	fmt.Fprintf(w, "DRY-RUN DRILL: %s %v, reverted after %vs; nothing was sent. The policy would:\n", r.Member, r.Fields["fault"], r.Fields["revert_after_s"])
	list := func(key, prefix string) {
		items, _ := r.Fields[key].([]any)
		for _, it := range items {
			d, _ := it.(map[string]any)
			cause := ""
			if c, ok := d["cause"].(string); ok && c != "" {
				cause = " (" + c + ")"
			}
			fmt.Fprintf(w, "  +%6.1fs %s%v%s\n", d["at_s"], prefix, d["what"], cause)
		}
	}
	list("events", "")
	list("decisions", "→ ")
	if errs, _ := r.Fields["errors"].([]any); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(w, "  policy error: %v\n", e)
		}
	}
}

// cmdStatus prints the site as the instance on this machine sees it.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a apiFlags
	a.register(fs)
	asJSON := fs.Bool("json", false, "print the whole status as JSON")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	base, token, err := a.client()
	if err != nil {
		fmt.Fprintln(stderr, "understudy status:", err)
		return 1
	}
	req, err := http.NewRequest(http.MethodGet, base+"/status", nil)
	if err != nil {
		fmt.Fprintln(stderr, "understudy status:", err)
		return 1
	}
	req.Header.Set("Authorization", "Bearer "+token) // needed where the API is not on loopback
	resp, err := apiClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "understudy status:", err)
		return 1
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "understudy status: %s %s\n", resp.Status, strings.TrimSpace(string(data)))
		return 1
	}
	if *asJSON {
		stdout.Write(data)
		return 0
	}
	var st instance.Status
	if err := json.Unmarshal(data, &st); err != nil {
		fmt.Fprintln(stderr, "understudy status:", err)
		return 1
	}
	fmt.Fprintf(stdout, "site %s, seen from %s (coordinator: %v), bus %s connected %v\n", st.Site, st.Self, st.Coordinator, st.Bus.URL, st.Bus.Connected)
	fmt.Fprintln(stdout, busAuthLine(st.Bus))
	if el := st.Election; el != nil {
		fmt.Fprintln(stdout, electionLine(el))
	}
	if st.Health != "" && st.Health != "ok" {
		fmt.Fprintf(stdout, "NOT WORKING: %s\n", st.Health)
	}
	for _, a := range st.Alarms {
		about := ""
		if a.Member != "" {
			about = " of " + a.Member
		}
		fmt.Fprintf(stdout, "%s %s%s since %s: %s\n", strings.ToUpper(a.Severity), a.Kind, about, a.Since.Format(time.DateTime), a.Message)
	}
	for _, m := range st.Members {
		extra := ""
		if m.Standby {
			extra = " standby"
		}
		if m.Drill != "" {
			extra += " [FIRE DRILL: " + m.Drill + "]"
		}
		fmt.Fprintf(stdout, "  %-16s %-8s since %s  %s%s\n", m.ID, m.State, m.Since.Format(time.DateTime), m.Reason, extra)
	}
	for _, d := range st.Drivers {
		fmt.Fprintf(stdout, "  driver %s (%s) %s connected %v %s\n", d.Name, d.Kind, d.Address, d.Connected, d.Error)
	}
	if t := st.Takeover; t != nil {
		fmt.Fprintf(stdout, "mode %s\n", t.Mode)
		for _, c := range t.Coverage {
			fmt.Fprintf(stdout, "  %s covered by %s since %s (%s)\n", c.Member, c.Standby, c.Since.Format(time.DateTime), c.Phase)
		}
		for _, q := range t.Queue {
			fmt.Fprintf(stdout, "  queued: %s\n", q.Member)
		}
		for _, p := range t.Proposals {
			fmt.Fprintf(stdout, "  proposal %s: %s by %s\n", p.ID, p.Member, p.Standby)
		}
	}
	for _, d := range st.Drills {
		fmt.Fprintf(stdout, "FIRE DRILL: %s %s since %s, reverts at %s (in %.0fs), by %s\n", d.Member, d.Fault, d.Started.Format(time.DateTime), d.Until.Format(time.DateTime), d.Remaining, d.By)
	}
	for _, c := range st.Copies {
		fmt.Fprintf(stdout, "  copy to %s from %s: %d/%d files, %d/%d bytes\n", c.Member, c.From, c.FilesDone, c.FilesTotal, c.BytesDone, c.BytesTotal)
	}
	if st.Health != "" && st.Health != "ok" {
		return 1 // it cannot do its job now (what /healthz says)
	}
	return 0
}

// busAuthLine says how the instance authenticates the bus and what it
// dropped: `auth required (key k2 of [k2 k1]), dropped payloads: bad_MAC 2,
// unauthenticated 1`, and in permissive mode the unsigned messages taken.
func busAuthLine(b instance.BusStatus) string {
	var line strings.Builder
	line.WriteString("auth " + cmp.Or(b.Auth, "unknown"))
	if b.AuthKey != "" {
		fmt.Fprintf(&line, " (key %s of %v)", b.AuthKey, b.AuthKeys)
	}
	if b.Auth == "permissive" {
		fmt.Fprintf(&line, ", unsigned taken %d", b.Unsigned)
	}
	line.WriteString(", dropped payloads: ")
	if len(b.Dropped) == 0 {
		line.WriteString("none")
	}
	for i, reason := range slices.Sorted(maps.Keys(b.Dropped)) {
		if i > 0 {
			line.WriteString(", ")
		}
		fmt.Fprintf(&line, "%s %d", reason, b.Dropped[reason])
	}
	return line.String()
}

// electionLine says who leads the elected coordinator's group, in which
// term, and this candidate's part.
func electionLine(el *instance.ElectionStatus) string {
	leader := el.Leader
	if leader == "" {
		leader = "NONE (" + el.Problem + ")"
	}
	var cands []string
	for _, c := range el.Candidates {
		if slices.Contains(el.Witnesses, c) {
			c += " (witness)"
		}
		cands = append(cands, c)
	}
	line := fmt.Sprintf("coordinator elected: leader %s, term %d; candidates %s; this instance: %s", leader, el.Term, strings.Join(cands, ", "), el.Role)
	if el.Coordinates {
		line += fmt.Sprintf(", coordinating since %s", el.Since.Format(time.DateTime))
	}
	if el.Refused > 0 {
		line += fmt.Sprintf("; %d raft connection(s) refused (no site key, or meant for a server this candidate was before)", el.Refused)
	}
	if len(el.Servers) > 0 {
		line += "; group " + strings.Join(el.Servers, ", ")
	}
	if el.Leader != "" && el.Problem != "" {
		line += "; " + el.Problem
	}
	if el.Warning != "" {
		line += "; WARNING: " + el.Warning
	}
	return line
}
