package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/agent"
	"understudy/runtime/config"
	"understudy/runtime/materialcopy"
	"understudy/runtime/store"
)

// The instance's side of material copies. A member with a material_server
// serves its material folders there, each copy authorised by a grant the
// coordinator sends (material_grant: a token and the member it is for); the
// grant opens that member's subfolder (copy.subfolder) of this member's own
// duties.material and nothing else. The grants are kept in the state store
// so a restart does not break a copy in progress. A restored member runs the
// copy (verb copy) as an agent task, reporting progress on its copy topic,
// and releases the grant when done.
//
// What is copied where comes from site.yaml, never from the command: the
// command names the peer (from) and the token, or folders inside this
// member's material_mounts (paths); the sources are the peer's configured
// material folders over its configured material_server, the destinations
// this member's own duties.material. A command that names folders (roots)
// is refused, and so is one about a member that is not in the site, about
// this member itself, or one with paths outside material_mounts: each
// refusal fails the command with the reason and is counted (status
// material.refused, metric understudy_material_refused_total).

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
	inst.grants = materialcopy.NewGrants(materialcopy.GrantsOptions{Folders: servedFolders(inst.member), OnForget: func(token string) {
		if err := inst.store.Delete(bucketGrants, token); err != nil {
			inst.log.Warn("forgotten material grant not deleted from the state file", "error", err)
		}
	}})
	stored, err := store.Load[materialcopy.Grant](inst.store, bucketGrants)
	if err != nil {
		return nil, fmt.Errorf("material grants: %w", err)
	}
	for _, g := range stored {
		// What a grant opens follows site.yaml as it is now (a grant stored
		// by an earlier version named folders of its own).
		sub, err := grantSub(inst.site, inst.opts.Self, g.For)
		if err == nil {
			g.Sub = sub
			err = inst.grants.Add(g)
		}
		if err != nil {
			inst.log.Warn("stored material grant dropped", "for", g.For, "error", err)
			if derr := inst.store.Delete(bucketGrants, g.Token); derr != nil {
				inst.log.Warn("dropped material grant not deleted from the state file", "error", derr)
			}
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

// servedFolders are the folders this member's material server serves, by
// root name: "1", "2", … in the order of duties.material (peers name them
// so from the same site.yaml).
func servedFolders(m *config.Member) map[string]string {
	out := make(map[string]string, len(m.Duties.Material))
	for i, f := range m.Duties.Material {
		out[strconv.Itoa(i+1)] = f
	}
	return out
}

// grantSub is the subfolder of self's material folders that a grant for
// member opens: copy.subfolder for member. member must be another member of
// the site.
func grantSub(site *config.Site, self, member string) (string, error) {
	switch _, ok := site.Member(member); {
	case member == "":
		return "", errors.New("no member named to grant to")
	case member == self:
		return "", fmt.Errorf("a grant for %s itself: a member does not copy from itself", self)
	case !ok:
		return "", fmt.Errorf("%q is not a member of site %s", member, site.Name)
	}
	return site.CopySubfolder(member), nil
}

// errRefused marks a material command refused for what it asks (as
// opposed to one that failed while it was carried out).
var errRefused = errors.New("refused")

// refusal is a refused material command's error: errRefused, with why.
func refusal(verb, format string, args ...any) error {
	return fmt.Errorf("%s %w: %s", verb, errRefused, fmt.Sprintf(format, args...))
}

// forbidArgs refuses a command whose args carry any of keys.
func forbidArgs(verb string, args map[string]any, keys ...string) error {
	for _, k := range keys {
		if _, ok := args[k]; ok {
			return refusal(verb, "the command names %q: what is copied and served comes from site.yaml (duties.material, material_server, copy.subfolder, material_mounts), never from a command", k)
		}
	}
	return nil
}

// refused counts and logs a refused material command and returns err.
func (inst *Instance) refused(c bus.Command, err error) error {
	inst.materialRefused.add(c.Verb)
	inst.log.Warn("material command refused", "id", c.ID, "verb", c.Verb, "from", c.From, "error", err)
	return err
}

// grantTask carries out a material_grant: it lets the member named in the
// command read, with the command's token, that member's subfolder of this
// member's material folders, and nothing else.
func (inst *Instance) grantTask(_ context.Context, c bus.Command) (map[string]any, error) {
	if inst.grants == nil {
		return nil, inst.refused(c, refusal(c.Verb, "%s has no material_server: it cannot serve material", inst.opts.Self))
	}
	var args struct {
		Member string `json:"member"`
		Token  string `json:"token"`
	}
	if err := forbidArgs(c.Verb, c.Args, "roots", "sub", "folders", "path", "paths"); err != nil {
		return nil, inst.refused(c, err)
	}
	if err := remarshal(c.Args, &args); err != nil {
		return nil, inst.refused(c, refusal(c.Verb, "%v", err))
	}
	sub, err := grantSub(inst.site, inst.opts.Self, args.Member)
	if err != nil {
		return nil, inst.refused(c, refusal(c.Verb, "%v", err))
	}
	g := materialcopy.Grant{Token: args.Token, Sub: sub, For: args.Member, Granted: inst.clock.Now()}
	if err := inst.grants.Add(g); err != nil {
		return nil, inst.refused(c, refusal(c.Verb, "%v", err))
	}
	if err := inst.store.Put(bucketGrants, g.Token, g); err != nil {
		inst.grants.Revoke(g.Token)
		return nil, fmt.Errorf("material grant not recorded: %w", err)
	}
	inst.log.Info("material grant", "for", g.For, "subfolder", g.Sub, "folders", inst.member.Duties.Material, "action", c.ID)
	return map[string]any{"granted": args.Member, "roots": len(inst.member.Duties.Material)}, nil
}

// copyRoot is one folder pair of a copy: a source (a material server's root,
// or a folder inside a mount) and a folder of this member.
type copyRoot struct {
	URL   string // a peer's material server, with the root
	Mount string // or a mounted folder,
	Sub   string // and the folder inside it
	Dest  string // one of this member's duties.material
}

func (r copyRoot) String() string {
	if r.URL != "" {
		return r.URL
	}
	return filepath.Join(r.Mount, filepath.FromSlash(r.Sub))
}

// copyArgs are what the coordinator sends with a copy.
type copyArgs struct {
	From     string   `json:"from"`
	Paths    []string `json:"paths"`
	Since    string   `json:"since"`
	Until    string   `json:"until"`
	Token    string   `json:"token"`
	SettleS  float64  `json:"settle_s"`
	LimitBPS int64    `json:"limit_bps"`
}

// errNoBuiltinCopy: the source has no material server; the member's copy
// hook does the work.
var errNoBuiltinCopy = errors.New("no built-in copy")

// copyRoots picks a copy's folders from site.yaml for member self: the
// i-th material folder of the peer from, over its material_server, into
// self's i-th material folder (its first when it has fewer), or each of
// paths, which must lie inside one of self's material_mounts, into self's
// material folders likewise. A peer without a material server gives
// errNoBuiltinCopy (wrapped); anything not in site.yaml, errRefused.
func copyRoots(site *config.Site, self string, args copyArgs) ([]copyRoot, error) {
	me, ok := site.Member(self)
	if !ok {
		return nil, refusal(config.HookCopy, "%q is not a member of site %s", self, site.Name)
	}
	if len(me.Duties.Material) == 0 {
		return nil, refusal(config.HookCopy, "%s has no duties.material folders to copy to", self)
	}
	dest := func(i int) string {
		if i < len(me.Duties.Material) {
			return me.Duties.Material[i]
		}
		return me.Duties.Material[0]
	}
	if len(args.Paths) > 0 {
		roots := make([]copyRoot, len(args.Paths))
		for i, p := range args.Paths {
			mount, sub, ok := mountOf(p, me.MaterialMounts)
			if !ok {
				return nil, refusal(config.HookCopy, "folder %q is not inside %s's material_mounts %v", p, self, me.MaterialMounts)
			}
			roots[i] = copyRoot{Mount: mount, Sub: sub, Dest: dest(i)}
		}
		return roots, nil
	}
	src, ok := site.Member(args.From)
	switch {
	case args.From == "":
		return nil, refusal(config.HookCopy, "the command names no member to copy from (from)")
	case args.From == self:
		return nil, refusal(config.HookCopy, "%s does not copy from itself", self)
	case !ok:
		return nil, refusal(config.HookCopy, "%q is not a member of site %s to copy from", args.From, site.Name)
	case src.MaterialServer == "" || len(src.Duties.Material) == 0:
		return nil, fmt.Errorf("%s has no material_server with duties.material: %w", args.From, errNoBuiltinCopy)
	}
	roots := make([]copyRoot, len(src.Duties.Material))
	for i := range src.Duties.Material {
		u := url.URL{Scheme: "http", Host: src.MaterialServer, Path: "/material", RawQuery: url.Values{"root": {strconv.Itoa(i + 1)}}.Encode()}
		roots[i] = copyRoot{URL: u.String(), Dest: dest(i)}
	}
	return roots, nil
}

// mountOf finds the mount of mounts that p lies in (or is), and p's path
// inside it with slashes ("" for the mount itself). p must be absolute and
// clean of ".." elements.
func mountOf(p string, mounts []string) (mount, sub string, ok bool) {
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return "", "", false
	}
	for _, el := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == filepath.Separator }) {
		if el == ".." {
			return "", "", false
		}
	}
	p = filepath.Clean(p)
	for _, m := range mounts {
		m = filepath.Clean(m)
		if p == m {
			return m, "", true
		}
		if rest, found := strings.CutPrefix(p, m+string(filepath.Separator)); found && filepath.IsAbs(m) {
			return m, filepath.ToSlash(rest), true
		}
	}
	return "", "", false
}

// copyTask carries out a copy: each root in turn, with verification and
// resumption (materialcopy.Copy), reporting progress, and then releases the
// grant. From a peer without a material server the member's copy hook does
// the work alone.
func (inst *Instance) copyTask(ctx context.Context, c bus.Command) (map[string]any, error) {
	if err := forbidArgs(c.Verb, c.Args, "roots", "dest", "url"); err != nil {
		return nil, inst.refused(c, err)
	}
	var args copyArgs
	if err := remarshal(c.Args, &args); err != nil {
		return nil, inst.refused(c, refusal(c.Verb, "%v", err))
	}
	roots, err := copyRoots(inst.site, inst.opts.Self, args)
	switch {
	case errors.Is(err, errNoBuiltinCopy):
		return map[string]any{"note": "no built-in copy (the source has no material server): the copy hook does it"}, nil
	case err != nil:
		return nil, inst.refused(c, err)
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
			return nil, inst.refused(c, refusal(c.Verb, "time %q: %v", f.in, err))
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
	from := args.From
	if len(args.Paths) > 0 {
		from = strings.Join(args.Paths, ", ")
	}
	progress := &copyProgress{inst: inst, p: bus.CopyProgress{Action: c.ID, Member: inst.opts.Self, From: from}}
	var total materialcopy.Report
	var missing []any // source folders that do not exist
	start := time.Now()
	for _, r := range roots {
		var src materialcopy.Source
		if r.URL != "" {
			src = materialcopy.Remote(r.URL, args.Token, client)
		} else if src, err = materialcopy.Within(r.Mount, r.Sub); err != nil {
			return nil, inst.refused(c, refusal(c.Verb, "%v", err))
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
	inst.log.Info(total.Summary(), "from", from, "action", c.ID)
	if args.Token != "" && roots[0].URL != "" {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := materialcopy.Release(rctx, roots[0].URL, args.Token, client); err != nil {
			inst.log.Warn("material grant not released (it lapses when idle)", "error", err)
		}
		cancel()
	}
	result := reportFields(total, total.Took)
	if len(missing) > 0 {
		result["missing_folders"] = missing
		result["found_nothing"] = len(missing) == len(roots)
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

// refusals counts refused material commands by verb.
type refusals struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (r *refusals) add(verb string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]uint64{}
	}
	r.n[verb]++
}

// counts returns the counts so far (nil when none).
func (r *refusals) counts() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.n) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(r.n))
	for k, v := range r.n {
		out[k] = v
	}
	return out
}
