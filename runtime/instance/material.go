package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/agent"
	"understudy/runtime/config"
	"understudy/runtime/materialcopy"
	"understudy/runtime/store"
)

// The instance's side of material copies. A member with a material_server
// serves its material folders there, each copy authorised by a grant the
// coordinator sends (material_grant: a token and the folders it opens); the
// grants are kept in the state store so a restart does not break a copy in
// progress. A restored member runs the copy (verb copy) as an agent task,
// reporting progress on its copy topic, and releases the grant when done.

const (
	bucketGrants = "material_grants"

	// grantWait is how long a copy keeps asking a material server that
	// does not know its token yet: the grant command may arrive after the
	// copy command.
	grantWait = 2 * time.Minute
	// progressEvery is how often a running copy reports its progress.
	progressEvery = time.Second
	// maxListed is how many conflicts or failures a copy's result lists.
	maxListed = 50
)

// startMaterialServer loads the stored grants and listens on the member's
// material_server address. It returns nil when the member serves none.
func (inst *Instance) startMaterialServer() (net.Listener, error) {
	if inst.member.MaterialServer == "" {
		return nil, nil
	}
	inst.grants = materialcopy.NewGrants(materialcopy.GrantsOptions{OnForget: func(token string) {
		if err := inst.store.Delete(bucketGrants, token); err != nil {
			inst.log.Warn("forgotten material grant not deleted from the state file", "error", err)
		}
	}})
	stored, err := store.Load[materialcopy.Grant](inst.store, bucketGrants)
	if err != nil {
		return nil, fmt.Errorf("material grants: %w", err)
	}
	for _, g := range stored {
		if err := inst.grants.Add(g); err != nil {
			inst.log.Warn("stored material grant dropped", "for", g.For, "error", err)
		}
	}
	ln, err := net.Listen("tcp", inst.member.MaterialServer)
	if err != nil {
		return nil, fmt.Errorf("material server on %s: %w", inst.member.MaterialServer, err)
	}
	return ln, nil
}

// serveMaterial serves the grants until ctx ends.
func (inst *Instance) serveMaterial(ctx context.Context, ln net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/material/", http.StripPrefix("/material", inst.grants))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	inst.log.Info("material server listening", "address", "http://"+ln.Addr().String()+"/material", "folders", inst.member.Duties.Material)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		inst.log.Error("material server stopped", "error", err)
	}
}

// grantTask carries out a material_grant: it lets the member named in the
// command read the given folders, which must lie in this member's material
// folders, with the given token.
func (inst *Instance) grantTask(_ context.Context, c bus.Command) (map[string]any, error) {
	if inst.grants == nil {
		return nil, fmt.Errorf("%s has no material_server: it cannot serve material", inst.opts.Self)
	}
	var args struct {
		Member string            `json:"member"`
		Token  string            `json:"token"`
		Roots  map[string]string `json:"roots"`
	}
	if err := remarshal(c.Args, &args); err != nil {
		return nil, fmt.Errorf("material grant: %w", err)
	}
	for name, dir := range args.Roots {
		if !inside(dir, inst.member.Duties.Material) {
			return nil, fmt.Errorf("material grant: root %s (%s) is not inside this member's material folders %v", name, dir, inst.member.Duties.Material)
		}
	}
	g := materialcopy.Grant{Token: args.Token, Roots: args.Roots, For: args.Member, Granted: time.Now()}
	if err := inst.grants.Add(g); err != nil {
		return nil, err
	}
	if err := inst.store.Put(bucketGrants, g.Token, g); err != nil {
		inst.grants.Revoke(g.Token)
		return nil, fmt.Errorf("material grant not recorded: %w", err)
	}
	inst.log.Info("material grant", "for", g.For, "roots", g.Roots, "action", c.ID)
	return map[string]any{"granted": args.Member, "roots": len(args.Roots)}, nil
}

// copyRoot is one folder pair of a copy: a source (a material server's root
// or a mounted folder) and a folder of this member.
type copyRoot struct {
	URL  string `json:"url"`
	Path string `json:"path"`
	Dest string `json:"dest"`
}

// copyArgs are what the coordinator sends with a copy.
type copyArgs struct {
	From     string     `json:"from"`
	Since    string     `json:"since"`
	Until    string     `json:"until"`
	Token    string     `json:"token"`
	Roots    []copyRoot `json:"roots"`
	SettleS  float64    `json:"settle_s"`
	LimitBPS int64      `json:"limit_bps"`
}

// copyTask carries out a copy: each root in turn, with verification and
// resumption (materialcopy.Copy), reporting progress, and then releases the
// grant. Without roots the member's copy hook does the work alone.
func (inst *Instance) copyTask(ctx context.Context, c bus.Command) (map[string]any, error) {
	var args copyArgs
	if err := remarshal(c.Args, &args); err != nil {
		return nil, fmt.Errorf("material copy: %w", err)
	}
	if len(args.Roots) == 0 {
		return map[string]any{"note": "no built-in copy asked for (the source has no material server): the copy hook does it"}, nil
	}
	var since, until time.Time
	for _, f := range []struct {
		in  string
		out *time.Time
	}{{args.Since, &since}, {args.Until, &until}} {
		if f.in == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.in)
		if err != nil {
			return nil, fmt.Errorf("material copy: time %q: %w", f.in, err)
		}
		*f.out = t
	}
	// One copy at a time: a copy redelivered after a restart and the next
	// failback's copy must not write the same temporary files at once.
	select {
	case inst.copying <- struct{}{}:
		defer func() { <-inst.copying }()
	case <-ctx.Done():
		return nil, fmt.Errorf("material copy waiting for the one before it: %w", ctx.Err())
	}
	client := materialcopy.Client()
	defer client.CloseIdleConnections()
	progress := &copyProgress{inst: inst, p: bus.CopyProgress{Action: c.ID, Member: inst.opts.Self, From: args.From}}
	var total materialcopy.Report
	var missing []any // source folders that do not exist
	start := time.Now()
	for i, r := range args.Roots {
		if !inside(r.Dest, inst.member.Duties.Material) {
			return nil, fmt.Errorf("material copy: destination %s is not one of this member's material folders %v", r.Dest, inst.member.Duties.Material)
		}
		var src materialcopy.Source
		switch {
		case r.URL != "":
			src = materialcopy.Remote(r.URL, args.Token, client)
		case filepath.IsAbs(r.Path):
			src = materialcopy.Local(r.Path)
		default:
			return nil, fmt.Errorf("material copy: root %d has neither a url nor an absolute path", i+1)
		}
		job := materialcopy.Job{
			Source: src, Dest: r.Dest, Since: since, Until: until,
			Settle: time.Duration(args.SettleS * float64(time.Second)), BandwidthLimit: args.LimitBPS,
			Progress: progress.update,
		}
		rep, err := copyWhenGranted(ctx, job)
		merge(&total, rep)
		progress.next()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, fmt.Errorf("material copy from %s stopped: %w", src, ctx.Err())
		case errors.Is(err, fs.ErrNotExist) && len(rep.Copied)+len(rep.Failed) == 0:
			// The source has no folder there for this member: it recorded
			// nothing there, or copy.subfolder or the path is wrong.
			inst.log.Warn("nothing to copy from this folder: it does not exist on the source", "source", src, "error", err)
			missing = append(missing, fmt.Sprint(src))
		default:
			progress.final()
			return reportFields(total, time.Since(start)), fmt.Errorf("material copy from %s to %s: %w", src, r.Dest, err)
		}
	}
	progress.final()
	total.Took = time.Since(start)
	inst.log.Info(total.Summary(), "from", args.From, "action", c.ID)
	if args.Token != "" {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := materialcopy.Release(rctx, args.Roots[0].URL, args.Token, client); err != nil {
			inst.log.Warn("material grant not released (it lapses when idle)", "error", err)
		}
		cancel()
	}
	result := reportFields(total, total.Took)
	if len(missing) > 0 {
		result["missing_folders"] = missing
		result["found_nothing"] = len(missing) == len(args.Roots)
	}
	if n := len(total.Failed); n > 0 {
		return result, fmt.Errorf("material copy: %d files failed, first %s: %s", n, total.Failed[0].Path, total.Failed[0].Reason)
	}
	return result, nil
}

// copyWhenGranted runs the copy, asking again while the material server
// does not know the token yet (the grant is on its way), for up to grantWait.
func copyWhenGranted(ctx context.Context, job materialcopy.Job) (materialcopy.Report, error) {
	deadline := time.Now().Add(grantWait)
	wait := 100 * time.Millisecond
	for {
		rep, err := materialcopy.Copy(ctx, job)
		if !materialcopy.IsNotGranted(err) || time.Now().After(deadline) {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// merge adds one root's report to the total.
func merge(total *materialcopy.Report, r materialcopy.Report) {
	total.Copied = append(total.Copied, r.Copied...)
	total.Skipped = append(total.Skipped, r.Skipped...)
	total.Conflicts = append(total.Conflicts, r.Conflicts...)
	total.Failed = append(total.Failed, r.Failed...)
	total.Bytes += r.Bytes
	total.ResumedBytes += r.ResumedBytes
}

// reportFields is a copy's result as the coordinator and the policy see it:
// counts, and the conflicts and failures by name (at most maxListed each).
func reportFields(r materialcopy.Report, took time.Duration) map[string]any {
	r.Took = took
	writing := 0
	for _, s := range r.Skipped {
		if strings.HasPrefix(s.Reason, materialcopy.ReasonStillWriting) {
			writing++
		}
	}
	list := func(skips []materialcopy.Skip) []any {
		out := []any{}
		for _, s := range skips[:min(len(skips), maxListed)] {
			out = append(out, map[string]any{"path": s.Path, "reason": s.Reason})
		}
		return out
	}
	return map[string]any{
		"summary": r.Summary(), "copied": len(r.Copied), "bytes": r.Bytes, "resumed_bytes": r.ResumedBytes,
		"skipped": len(r.Skipped), "still_writing": writing,
		"conflicts": list(r.Conflicts), "failed": list(r.Failed), "took_s": took.Seconds(),
	}
}

// copyProgress publishes a copy's progress over all its roots, at most
// every progressEvery.
type copyProgress struct {
	inst      *Instance
	p         bus.CopyProgress
	base      bus.CopyProgress // the roots already done
	published time.Time
}

func (cp *copyProgress) update(p materialcopy.Progress) {
	cp.p.FilesDone, cp.p.FilesTotal = cp.base.FilesDone+p.FilesDone, cp.base.FilesTotal+p.FilesTotal
	cp.p.BytesDone, cp.p.BytesTotal = cp.base.BytesDone+p.BytesDone, cp.base.BytesTotal+p.BytesTotal
	cp.p.Rate, cp.p.ETA, cp.p.Current = p.Rate, p.ETA.Seconds(), p.Current
	if time.Since(cp.published) >= progressEvery {
		cp.publish()
	}
}

// next starts counting the next root on top of the ones done.
func (cp *copyProgress) next() {
	cp.base.FilesDone, cp.base.FilesTotal = cp.p.FilesDone, cp.p.FilesTotal
	cp.base.BytesDone, cp.base.BytesTotal = cp.p.BytesDone, cp.p.BytesTotal
}

func (cp *copyProgress) final() {
	cp.p.Final, cp.p.ETA, cp.p.Current = true, 0, ""
	cp.publish()
}

func (cp *copyProgress) publish() {
	cp.published = time.Now()
	payload, err := json.Marshal(cp.p)
	if err != nil {
		return
	}
	topic := (bus.Topics{Site: cp.inst.site.Name}).Copy(cp.inst.opts.Self)
	if err := (publisher{cp.inst}).Publish(topic, 0, false, payload); err != nil {
		cp.inst.log.Debug("copy progress not published", "error", err)
	}
}

// inside reports whether dir is one of folders or lies within one.
func inside(dir string, folders []string) bool {
	if !filepath.IsAbs(dir) {
		return false
	}
	dir = filepath.Clean(dir)
	for _, f := range folders {
		f = filepath.Clean(f)
		if dir == f || strings.HasPrefix(dir, f+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// remarshal decodes a command's args (JSON values) into v.
func remarshal(args map[string]any, v any) error {
	data, err := json.Marshal(args)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// materialTasks are the verbs the instance carries out itself for copies.
func (inst *Instance) materialTasks() map[string]agent.Task {
	return map[string]agent.Task{
		config.VerbMaterialGrant: inst.grantTask,
		config.HookCopy:          inst.copyTask,
	}
}
