package coordinator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"understudy/runtime/engine"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/runtime/config"
	"understudy/runtime/takeover"
)

// A material copy is two actions: a grant to the member whose material is
// copied (its instance lets the restored member read the folders it recorded
// for it, with a token made for this copy), and the copy itself on the
// restored member's instance, which fetches what it lacks from the other's
// material server. With paths (folders mounted on the restored member's
// machine, inside its material_mounts) the copy is the only action. The
// commands name no folders: the grant names the member it is for and the
// token, the copy the member it copies from (or the paths) and the token;
// each instance finds the folders in its own site.yaml (duties.material,
// material_server, copy.subfolder, material_mounts) and refuses a command
// that names folders of its own. The restored member's own copy hook, if
// any, runs after the built-in copy.

// copyActions are the actions of a material copy (takeover.Site).
func (c *Coordinator) copyActions(req takeover.CopyRequest) ([]takeover.Action, error) {
	dest, ok := c.site.Member(req.Member)
	if !ok {
		return nil, fmt.Errorf("no member %q", req.Member)
	}
	args := siteView{c}.Bundle(req.Member)
	args["member"] = req.Member
	args["since"], args["until"] = rfc3339(req.Since), rfc3339(req.Until)
	args["settle_s"] = c.site.CopySettle().Seconds()
	args["limit_bps"] = c.site.CopyLimit()
	copyAction := takeover.Action{Target: req.Member, Verb: config.HookCopy, Args: args, Cause: req.Cause}
	_, hasHook := dest.Hooks[config.HookCopy]

	if len(req.Paths) > 0 {
		if len(dest.Duties.Material) == 0 {
			return nil, fmt.Errorf("%s has no duties.material folders to copy to", req.Member)
		}
		paths := make([]any, len(req.Paths))
		for i, p := range req.Paths {
			if !filepath.IsAbs(p) {
				return nil, fmt.Errorf("copy from %q: give the absolute path of a folder on %s", p, req.Member)
			}
			if !insideAny(p, dest.MaterialMounts) {
				return nil, fmt.Errorf("copy from %q: not inside %s's material_mounts %v (site.yaml says where %s may copy from)", p, req.Member, dest.MaterialMounts, req.Member)
			}
			paths[i] = p
		}
		args["from"], args["paths"] = strings.Join(req.Paths, ", "), paths
		return []takeover.Action{copyAction}, nil
	}

	src, ok := c.site.Member(req.From)
	switch {
	case req.From == "":
		return nil, errors.New("say where the material comes from: a member (from) or folders (paths)")
	case !ok:
		return nil, fmt.Errorf("no member %q to copy from", req.From)
	}
	args["from"] = req.From
	if src.MaterialServer == "" || len(src.Duties.Material) == 0 {
		if hasHook {
			return []takeover.Action{copyAction}, nil // the member's copy hook fetches it
		}
		return nil, fmt.Errorf("%s has no material_server to copy from, and %s has no copy hook", req.From, req.Member)
	}
	if len(dest.Duties.Material) == 0 {
		return nil, fmt.Errorf("%s has no duties.material folders to copy to", req.Member)
	}
	if req.From == req.Member {
		return nil, fmt.Errorf("%s cannot copy from itself", req.Member)
	}
	token := copyToken()
	args["token"] = token
	grant := takeover.Action{Target: req.From, Verb: config.VerbMaterialGrant, Cause: req.Cause,
		Args: map[string]any{"member": req.Member, "token": token}}
	return []takeover.Action{grant, copyAction}, nil
}

// insideAny reports whether p (absolute, no ".." elements) is one of
// folders or lies within one.
func insideAny(p string, folders []string) bool {
	if slices.Contains(strings.Split(filepath.ToSlash(p), "/"), "..") {
		return false
	}
	p = filepath.Clean(p)
	for _, f := range folders {
		f = filepath.Clean(f)
		if p == f || strings.HasPrefix(p, f+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// copySince is the lower bound of a copy of member's material from
// standby, since by this coordinator's clock. The files' times are the
// standby's clock: when the standby reports covering member since earlier
// (its own clock, behind this one), that is the bound. A since after this
// coordinator's now means its clock went back since (a time kept across a
// restart, a step): nothing it says about that period can be compared, and
// the bound is the standby's own or none (zero: every file the member
// lacks; a copy never overwrites a differing file) — never one that leaves
// recordings behind.
func (c *Coordinator) copySince(member, standby string, since time.Time) time.Time {
	if since.After(c.clock.Now()) {
		c.log.Warn("the coverage began after this coordinator's clock now reads: the clock went back; the copy takes the standby's own time, or none",
			"member", member, "standby", standby, "since", since, "now", c.clock.Now())
		since = time.Time{}
	}
	if own, ok := c.claimedSince[standby][member]; ok && !own.IsZero() && (since.IsZero() || own.Before(since)) {
		return own
	}
	return since
}

// copyMissing starts a copy asked for by the policy and returns the copy
// action's id. While the member is covered (or failing back), the standby
// and the start of the coverage are the defaults of From and Since.
func (c *Coordinator) copyMissing(req takeover.CopyRequest) (string, error) {
	if c.takeover != nil {
		if cv, ok := c.takeover.Covered(req.Member); ok {
			if req.From == "" && len(req.Paths) == 0 {
				req.From = cv.Standby
			}
			if req.Since.IsZero() {
				req.Since = cv.Since
			}
		}
	}
	if req.Since.IsZero() {
		return "", fmt.Errorf("%s is not covered: say since when its material is missing (since)", req.Member)
	}
	req.Since = c.copySince(req.Member, req.From, req.Since)
	if req.Until.IsZero() {
		req.Until = c.clock.Now()
	}
	if !req.Since.IsZero() && !req.Until.After(req.Since) {
		return "", fmt.Errorf("until (%s) is not after since (%s)", rfc3339(req.Until), rfc3339(req.Since))
	}
	acts, err := c.copyActions(req)
	if err != nil {
		return "", err
	}
	var id string
	for _, t := range acts {
		if id, err = c.actions.add(&action{Target: t.Target, Verb: t.Verb, Args: t.Args, Cause: t.Cause}); err != nil {
			return "", err
		}
	}
	return id, nil
}

// copyToken is a new random token for one copy.
func copyToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// rfc3339 formats t to the nanosecond: a window cut to whole seconds
// would leave out the files of its last second.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// isCopy says whether a is a material copy.
func (a *action) isCopy() bool { return a.Target != "" && a.Verb == config.HookCopy }

// copyFields are the fields of a copy's events.
func (a *action) copyFields() map[string]any {
	return map[string]any{"action": a.ID, "member": a.Args["member"], "from": a.Args["from"],
		"since": a.Args["since"], "until": a.Args["until"]}
}

// copyEvent reports a copy event to the record stream and the policy.
// Progress is not kept for redelivery: the next report supersedes it.
func (c *Coordinator) copyEvent(name string, a *action, fields map[string]any) {
	member, _ := a.Args["member"].(string)
	c.record(engine.Record{Type: name, Member: member, Fields: fields})
	ev := c.memberEvent(name, c.clock.Now(), member, fields)
	if name == events.CopyProgress {
		c.dispatch(ev)
		return
	}
	c.deliverOnce(ev, nil)
}

// copyStarted reports a copy sent for the first time.
func (c *Coordinator) copyStarted(a *action) {
	if a.isCopy() {
		c.log.Info("material copy started", "member", a.Args["member"], "from", a.Args["from"], "since", a.Args["since"], "until", a.Args["until"], "action", a.ID)
		c.copyEvent(events.CopyStarted, a, a.copyFields())
		c.publishCopies()
	}
}

// copyFinished reports a copy's result: copy_done with the report, or
// copy_failed with the error (and the report as far as it got).
func (c *Coordinator) copyFinished(a *action, result any, err error) {
	if !a.isCopy() {
		return
	}
	delete(c.copies, a.ID)
	defer c.publishCopies()
	fields := a.copyFields()
	if r, ok := result.(map[string]any); ok {
		for k, v := range r {
			if _, taken := fields[k]; !taken {
				fields[k] = v
			}
		}
	}
	if err != nil {
		fields["error"] = err.Error()
		c.copyEvent(events.CopyFailed, a, fields)
		return
	}
	c.copyEvent(events.CopyDone, a, fields)
	member, _ := a.Args["member"].(string)
	key := AlarmCopyFoundNone + ":" + member
	if nothing, _ := fields["found_nothing"].(bool); nothing {
		c.raiseAlarm(engine.Alarm{Key: key, Kind: AlarmCopyFoundNone, Severity: SeverityWarning, Member: member,
			Message: fmt.Sprintf("the copy to %s from %v found nothing to copy: %v has no folder for it there (check copy.subfolder and the material folders)", member, a.Args["from"], a.Args["from"]),
			Fields:  map[string]any{"from": a.Args["from"], "missing_folders": fields["missing_folders"]}})
	} else {
		c.clearAlarm(key, "a copy found material")
	}
}

// CopyProgress feeds an instance's report on a copy it runs. Any goroutine.
func (c *Coordinator) CopyProgress(p bus.CopyProgress) {
	c.loop.PostBounded(events.CopyProgress, func() {
		f, ok := c.actions.remote[p.Action]
		if !ok || !f.a.isCopy() || f.a.Target != p.Member {
			return // not a copy we wait for (finished already, or another coordinator's)
		}
		cs, seen := c.copies[p.Action]
		if !seen {
			cs.Since = c.clock.Now()
		}
		cs.CopyProgress = p
		c.copies[p.Action] = cs
		fields := f.a.copyFields()
		fields["files_done"], fields["files_total"] = p.FilesDone, p.FilesTotal
		fields["bytes_done"], fields["bytes_total"] = p.BytesDone, p.BytesTotal
		fields["rate"], fields["eta_s"] = p.Rate, p.ETA
		c.copyEvent(events.CopyProgress, f.a, fields)
		c.publishCopies()
	})
}

// publishCopies publishes the copies in progress on the retained copies
// topic, for show control.
func (c *Coordinator) publishCopies() {
	if c.opts.Publisher == nil {
		return
	}
	payload, _ := json.Marshal(map[string]any{"copies": nonNil(c.copyStatus())})
	if err := c.opts.Publisher.Publish(c.topics.Copies(), 1, true, payload); err != nil {
		c.log.Debug("copies not published", "error", err)
	}
}

// copyStatus lists the copies in progress.
func (c *Coordinator) copyStatus() []engine.CopyStatus {
	var out []engine.CopyStatus
	for _, id := range slices.Sorted(maps.Keys(c.copies)) {
		out = append(out, c.copies[id])
	}
	return out
}
