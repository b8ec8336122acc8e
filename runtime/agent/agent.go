// Package agent carries out the coordinator's commands on this instance.
//
// Every instance runs an agent. The coordinator sends it commands on
// understudy/<site>/member/<self>/command (QoS 1): "run your hook VERB with
// ARGS", for example verb "takeover" with {member: "rec-2", outputs: [...]}.
// The coordinator resends a command until it gets a final answer, and keeps
// asking (with the same id) while the answer is "running". The agent:
//
//   - runs each command at most once per id. What it has received is kept in
//     the state store (bucket agent_received), written before the command is
//     acknowledged or run, so a duplicate is answered from the record, also
//     after the instance restarts;
//   - refuses commands of an older coordinator epoch than the highest it has
//     seen (bucket agent_meta), answering "stale", and of an epoch more than
//     EpochWindow above it (forged or corrupt), answering "failed";
//   - answers every command, duplicates included, on its ack topic: running,
//     then done or failed with the hook's result;
//   - never blocks the bus callback: [Agent.Handle] decodes and queues,
//     [Agent.Run] does the work, running hooks one at a time while it keeps
//     answering duplicates;
//   - keeps what this member covers (bucket agent_covering): a takeover
//     command for a member that finished done adds it, a release for it that
//     finished done removes it, in the same write as the command's final
//     record. The instance reports the list (retained) so that a coordinator
//     whose state was lost learns who covers whom (Options.CoveringChanged);
//   - carries out a few verbs itself (Options.Tasks: the material copy),
//     each command in a goroutine of its own, so a copy of hours holds up no
//     takeover or configuration command.
//
// A command recorded as running that this process is not running was
// interrupted mid-hook (the instance stopped or restarted). It never finished,
// so it runs again when the coordinator redelivers it.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"understudy/discovery/bus"
	"understudy/drivers/hooks"
	"understudy/runtime/config"
	"understudy/runtime/store"
)

const (
	// bucketReceived holds a Received per command id.
	bucketReceived = "agent_received"
	// bucketCovering holds a bus.Covered per member this one covers.
	bucketCovering = "agent_covering"
	// bucketMeta holds keyEpoch: the highest coordinator epoch seen.
	bucketMeta = "agent_meta"
	keyEpoch   = "epoch"

	// retention is how long a finished command is remembered (New prunes
	// older ones). The coordinator stops resending long before.
	retention = 7 * 24 * time.Hour

	// DefaultQueue is how many commands may wait when Options.Queue is 0.
	DefaultQueue = 256

	// maxOutput is how much of a step's output goes into a result.
	maxOutput = 1024

	// EpochWindow is how far above the newest coordinator epoch it has seen
	// a command's epoch may be. A coordinator's epoch grows by one per start
	// (and once when it adopts a member's newer one), so a jump of more than
	// a million is no coordinator's: a forged or corrupt command, refused
	// (answered failed, counted as a dropped payload) and never stored, so
	// that it cannot make every real command look stale.
	EpochWindow = 1 << 20
)

// Options configure an Agent.
type Options struct {
	Site  *config.Site
	Self  string // this instance's member id
	Store *store.Store
	// Publish sends a payload on the bus. Errors are logged; the coordinator
	// asks again and gets the answer then.
	Publish func(topic string, qos byte, retained bool, payload []byte) error
	Logger  *slog.Logger
	Now     func() time.Time // default time.Now
	// Queue is how many commands may wait to be looked at, and how many
	// accepted commands may wait for their hook (default 256). When full, new
	// commands are dropped and logged; the coordinator resends them.
	Queue int
	// Builtin, when set, gives steps the instance itself runs for a verb
	// before the member's own hooks (e.g. writing a configuration bundle into
	// place), and a function told how the command ended; an error fails the
	// command before anything runs.
	Builtin func(verb string, args map[string]any) (steps []hooks.Step, done func(error), err error)
	// Tasks are verbs the instance carries out itself, each command in a
	// goroutine of its own, so a long task (a material copy that takes
	// hours) holds up no other command. The member's own hooks for the verb
	// run after a task that succeeded.
	Tasks map[string]Task
	// Drops counts commands refused for an epoch beyond EpochWindow (as
	// dropped payloads, reason invalid_field); nil: only logged.
	Drops *bus.Drops
	// CoveringChanged, when set, is told the members this one covers each
	// time the list changes (a takeover or a release finished done). It is
	// called from the goroutine that carried out the command.
	CoveringChanged func([]bus.Covered)
}

// A Task carries out one command. Its result is the command's result; when
// the member's hooks for the verb ran too, their steps are added to it under
// "steps". A task stopped by ctx (the instance shutting down) must return
// ctx's error: its command then stays running and runs again when it is
// redelivered, so a task must be able to pick up where it stopped.
type Task func(ctx context.Context, c bus.Command) (map[string]any, error)

// Received is what the agent records about a command.
type Received struct {
	ID       string    `json:"id"`
	Epoch    uint64    `json:"epoch"`
	Verb     string    `json:"verb"`
	From     string    `json:"from"`
	State    string    `json:"state"` // running, done, failed
	Error    string    `json:"error,omitempty"`
	Result   any       `json:"result,omitempty"`
	At       time.Time `json:"at"`
	Finished time.Time `json:"finished,omitzero"`
}

// ReadReceived returns every command record of a member's state store, by
// command id: what the member received, ran and answered (the fault suite
// reads it after a run, with the instance stopped).
func ReadReceived(st *store.Store) (map[string]Received, error) {
	recs, err := store.Load[Received](st, bucketReceived)
	if err != nil {
		return nil, fmt.Errorf("command records: %w", err)
	}
	return recs, nil
}

// Agent receives the coordinator's commands and runs this member's hooks.
type Agent struct {
	self         string
	store        *store.Store
	publish      func(topic string, qos byte, retained bool, payload []byte) error
	log          *slog.Logger
	now          func() time.Time
	topic        string                  // where acks go
	commandTopic string                  // where commands come from
	steps        map[string][]hooks.Step // this member's hooks, checked by New
	queue        int
	builtin      func(verb string, args map[string]any) ([]hooks.Step, func(error), error)
	tasks        map[string]Task
	drops        *bus.Drops
	covering     func([]bus.Covered)

	in      chan bus.Command // Handle → Run
	running atomic.Bool      // Run is active
	full    atomic.Bool      // in was full at the last Handle
	dropped atomic.Uint64    // commands dropped since in was last not full

	mu sync.Mutex
	// mem holds the commands this process has accepted and not finished
	// (state running), and finished ones whose record could not be written
	// (so that duplicates still get the final answer).
	mem       map[string]Received
	badLogged map[string]bool // malformed-payload reasons already logged

	// wmu orders the writes of results. unwritten are the finished
	// commands whose result (with what it changes of what this member
	// covers) did not reach the state file — the state folder full, a
	// failing disk —, oldest first: they are written, in order, before any
	// later result, and tried again every second (Run) until they land, so
	// that a restart does not run again a command that finished.
	wmu       sync.Mutex
	unwritten []job

	// epoch is the highest coordinator epoch seen. Only Run's intake (and New)
	// touch it.
	epoch uint64
}

// job is an accepted command waiting for its hook.
type job struct {
	cmd bus.Command
	rec Received
}

// New returns the agent of member opts.Self. It checks that every step of
// every hook of the member can run on this machine (the program of an exec
// step exists and is executable), and fails naming member, hook and step if
// one cannot. It reads the highest epoch seen and prunes commands that
// finished more than 7 days ago.
func New(opts Options) (*Agent, error) {
	switch {
	case opts.Site == nil:
		return nil, errors.New("agent: no site")
	case opts.Store == nil:
		return nil, errors.New("agent: no state store")
	case opts.Publish == nil:
		return nil, errors.New("agent: no bus to publish on")
	case opts.Queue < 0:
		return nil, fmt.Errorf("agent: queue %d: 0 (default %d) or more", opts.Queue, DefaultQueue)
	}
	m, ok := opts.Site.Member(opts.Self)
	if !ok {
		return nil, fmt.Errorf("agent: %q is not a member of site %s (members: %v)", opts.Self, opts.Site.Name, opts.Site.MemberIDs())
	}
	steps, err := checkHooks(m)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Queue == 0 {
		opts.Queue = DefaultQueue
	}
	a := &Agent{
		self:         opts.Self,
		store:        opts.Store,
		publish:      opts.Publish,
		log:          opts.Logger.With("component", "agent"),
		now:          opts.Now,
		topic:        bus.Topics{Site: opts.Site.Name}.Ack(opts.Self),
		commandTopic: bus.Topics{Site: opts.Site.Name}.Command(opts.Self),
		steps:        steps,
		queue:        opts.Queue,
		builtin:      opts.Builtin,
		tasks:        opts.Tasks,
		drops:        opts.Drops,
		covering:     opts.CoveringChanged,
		in:           make(chan bus.Command, opts.Queue),
		mem:          map[string]Received{},
		badLogged:    map[string]bool{},
	}
	if _, err := a.store.Get(bucketMeta, keyEpoch, &a.epoch); err != nil {
		return nil, fmt.Errorf("agent: highest epoch seen: %w", err)
	}
	if err := a.prune(); err != nil {
		if a.store.Failing() == nil {
			return nil, fmt.Errorf("agent: pruning old commands: %w", err)
		}
		// The state file takes no writes (the state folder full): the old
		// records stay until the next start; the instance starts.
		a.log.Error("old command records not pruned: the state file takes no writes", "error", err)
	}
	return a, nil
}

// checkHooks converts and checks every hook of m, reporting every step that
// cannot run here.
func checkHooks(m *config.Member) (map[string][]hooks.Step, error) {
	out := map[string][]hooks.Step{}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m.Hooks)) {
		steps, err := m.Steps(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("agent: member %s: %w", m.ID, err))
			continue
		}
		for i, s := range steps {
			if err := s.Check(); err != nil {
				errs = append(errs, fmt.Errorf("agent: member %s: hook %s step %d cannot run on this machine: %w", m.ID, name, i+1, err))
			}
		}
		out[name] = steps
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// prune deletes the records of commands that finished more than retention
// ago, and of commands recorded as running that long ago: such a command was
// interrupted and never redelivered since; were it redelivered now it would
// run again either way.
func (a *Agent) prune() error {
	cutoff := a.now().Add(-retention)
	n := 0
	err := a.store.Update(func(tx *store.Tx) error {
		var old []string
		err := tx.Each(bucketReceived, func(id string, value []byte) error {
			var r Received
			if err := json.Unmarshal(value, &r); err != nil {
				a.log.Warn("unreadable command record kept", "id", id, "error", err)
				return nil
			}
			last := r.Finished
			if last.IsZero() {
				last = r.At
			}
			if last.Before(cutoff) {
				old = append(old, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range old {
			if err := tx.Delete(bucketReceived, id); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err == nil && n > 0 {
		a.log.Info("forgot old commands", "count", n, "older_than", retention)
	}
	return err
}

// Handle takes a raw command payload from the bus. It is safe to call from
// any goroutine and never blocks: the command is queued for Run, or dropped
// (and logged) when the queue is full; the coordinator resends it. Malformed
// payloads are dropped, and logged once per reason.
func (a *Agent) Handle(payload []byte) {
	c, err := bus.DecodeCommand(payload)
	if err != nil {
		a.dropMalformed(err, len(payload))
		return
	}
	select {
	case a.in <- c:
		if a.full.Swap(false) {
			a.log.Info("command queue has room again", "dropped", a.dropped.Swap(0))
		}
	default:
		a.dropped.Add(1)
		if !a.full.Swap(true) {
			a.log.Warn("command queue full: dropping commands until it has room (the coordinator resends them)",
				"id", c.ID, "verb", c.Verb, "queue", cap(a.in))
		}
	}
}

func (a *Agent) dropMalformed(err error, size int) {
	reason := bus.Reason(err)
	a.mu.Lock()
	first := !a.badLogged[reason]
	a.badLogged[reason] = true
	a.mu.Unlock()
	if first {
		a.log.Warn("dropped malformed command (further ones for this reason are not logged)",
			"reason", reason, "bytes", size, "error", err)
	}
}

// Run carries out commands until ctx ends: it answers each as it arrives
// and runs hooks one at a time, in order, with a context derived from ctx.
// When ctx ends mid-hook the hook is stopped, its command stays recorded as
// running and gets no final answer: the next process runs it again when the
// coordinator redelivers it. Run returns once the hook has stopped. Only one
// Run may be active at a time.
func (a *Agent) Run(ctx context.Context) {
	if !a.running.CompareAndSwap(false, true) {
		a.log.Error("agent is already running; this Run returns at once")
		return
	}
	defer a.running.Store(false)
	work := make(chan job, a.queue)
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		// Accepted commands that did not finish are not running any more;
		// a redelivery finds them interrupted and runs them.
		a.mu.Lock()
		maps.DeleteFunc(a.mem, func(_ string, r Received) bool { return r.State == bus.AckRunning })
		a.mu.Unlock()
	}()
	wg.Go(func() { a.work(ctx, work) })
	tasks := 0 // tasks running; only this goroutine counts
	taskDone := make(chan struct{}, a.queue)
	retry := time.NewTicker(retryResults)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			a.retryResults()
		case <-taskDone:
			tasks--
		case c := <-a.in:
			_, isTask := a.tasks[c.Verb]
			room := len(work) < cap(work)
			if isTask {
				room = tasks < a.queue
			}
			j, ok := a.intake(c, room)
			switch {
			case !ok:
			case isTask:
				tasks++
				wg.Go(func() {
					defer func() { taskDone <- struct{}{} }()
					a.carryOut(ctx, j)
				})
			default:
				work <- j
			}
		}
	}
}

// intake answers one command and returns it if it is to run (room says
// whether there is room for it to wait or run).
func (a *Agent) intake(c bus.Command, room bool) (job, bool) {
	if c.Epoch > a.epoch && c.Epoch-a.epoch > EpochWindow {
		err := fmt.Errorf("%w: epoch %d is more than %d above %d, the newest coordinator epoch %s has seen (a forged or corrupt command?)", bus.ErrInvalid, c.Epoch, EpochWindow, a.epoch, a.self)
		if a.drops != nil {
			a.drops.Drop(a.self, a.commandTopic, -1, err)
		} else {
			a.log.Warn("command refused", "id", c.ID, "verb", c.Verb, "from", c.From, "error", err)
		}
		a.ack(bus.Ack{ID: c.ID, Epoch: c.Epoch, Member: a.self, State: bus.AckFailed, Error: "refused: " + err.Error()})
		return job{}, false
	}
	// What this process is running (or finished without a record) first: the
	// worker writes the final record before it forgets the command here, so
	// a command not found here is not between the two.
	a.mu.Lock()
	r, ok := a.mem[c.ID]
	a.mu.Unlock()
	if ok {
		a.noteEpoch(c.Epoch)
		a.ack(ackOf(a.self, r))
		return job{}, false
	}

	found, err := a.store.Get(bucketReceived, c.ID, &r)
	switch {
	case err != nil && found:
		// Running it could run it twice; saying nothing would make the
		// coordinator ask forever.
		a.log.Error("record of command unreadable; answering failed", "id", c.ID, "error", err)
		a.ack(bus.Ack{ID: c.ID, Epoch: c.Epoch, Member: a.self, State: bus.AckFailed,
			Error: "cannot tell whether this command ran: its record on " + a.self + " is unreadable: " + err.Error()})
		return job{}, false
	case err != nil:
		a.log.Error("cannot read record of command; not answered (the coordinator asks again)", "id", c.ID, "error", err)
		return job{}, false
	case found && (r.State == bus.AckDone || r.State == bus.AckFailed):
		a.noteEpoch(c.Epoch)
		a.log.Debug("duplicate of a finished command; answering again", "id", c.ID, "state", r.State)
		a.ack(ackOf(a.self, r))
		return job{}, false
	case found && r.State != bus.AckRunning:
		a.log.Error("record of command has an unknown state; answering failed", "id", c.ID, "state", r.State)
		a.ack(bus.Ack{ID: c.ID, Epoch: c.Epoch, Member: a.self, State: bus.AckFailed,
			Error: fmt.Sprintf("cannot tell whether this command ran: its record on %s has state %q", a.self, r.State)})
		return job{}, false
	}
	interrupted, previous := found, r

	if c.Epoch < a.epoch {
		a.log.Warn("command from an older coordinator epoch refused", "id", c.ID, "verb", c.Verb, "from", c.From, "epoch", c.Epoch, "highest", a.epoch)
		a.ack(bus.Ack{ID: c.ID, Epoch: c.Epoch, Member: a.self, State: bus.AckStale, Newest: a.epoch,
			Error: fmt.Sprintf("epoch %d is older than %d, the newest %s has seen", c.Epoch, a.epoch, a.self)})
		return job{}, false
	}
	if !room {
		a.log.Warn("too many commands waiting or running; dropped (the coordinator resends it)", "id", c.ID, "verb", c.Verb)
		return job{}, false
	}

	rec := Received{ID: c.ID, Epoch: c.Epoch, Verb: c.Verb, From: c.From, State: bus.AckRunning, At: a.now()}
	err = a.store.Update(func(tx *store.Tx) error {
		if c.Epoch > a.epoch {
			if err := tx.Put(bucketMeta, keyEpoch, c.Epoch); err != nil {
				return err
			}
		}
		return tx.Put(bucketReceived, c.ID, rec)
	})
	if err != nil {
		if a.store.Failing() == nil {
			a.log.Error("cannot record command; not run (the coordinator asks again)", "id", c.ID, "verb", c.Verb, "error", err)
			return job{}, false
		}
		// The state file takes no writes (the state folder full): a
		// takeover does not wait for the disk. The command runs; its
		// record (and the epoch) is written with its result once the file
		// takes writes.
		a.log.Error("cannot record command: the state file takes no writes; running it all the same (its record is written with its result once it does)", "id", c.ID, "verb", c.Verb, "error", err)
	}
	a.epoch = max(a.epoch, c.Epoch)
	if interrupted {
		a.log.Warn("command was interrupted before it finished (the instance stopped mid-hook); running it again",
			"id", c.ID, "verb", c.Verb, "from", c.From, "epoch", c.Epoch, "first_received", previous.At)
	} else {
		a.log.Info("command received", "id", c.ID, "verb", c.Verb, "from", c.From, "epoch", c.Epoch)
	}
	a.mu.Lock()
	a.mem[c.ID] = rec
	a.mu.Unlock()
	a.ack(ackOf(a.self, rec))
	return job{cmd: c, rec: rec}, true
}

// noteEpoch records e if it is the highest epoch seen.
func (a *Agent) noteEpoch(e uint64) {
	if e <= a.epoch {
		return
	}
	a.epoch = e
	if err := a.store.Put(bucketMeta, keyEpoch, e); err != nil {
		a.log.Error("highest epoch not written", "epoch", e, "error", err)
	}
}

// work runs accepted commands one at a time until ctx ends.
func (a *Agent) work(ctx context.Context, work <-chan job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-work:
			if ctx.Err() != nil {
				return
			}
			a.carryOut(ctx, j)
		}
	}
}

// carryOut runs an accepted command's hook, records and announces the result.
func (a *Agent) carryOut(ctx context.Context, j job) {
	c, rec := j.cmd, j.rec
	var result any
	var herr error
	steps := a.steps[c.Verb]
	var builtinDone func(error)
	if a.builtin != nil {
		var extra []hooks.Step
		extra, builtinDone, herr = a.builtin(c.Verb, c.Args)
		steps = append(extra, steps...)
	}
	if builtinDone != nil {
		defer func() { builtinDone(herr) }()
	}
	var taskResult map[string]any
	if task, ok := a.tasks[c.Verb]; ok {
		taskResult, herr = task(ctx, c)
		if herr != nil && ctx.Err() != nil && errors.Is(herr, ctx.Err()) {
			a.log.Warn("task stopped by shutdown; the command stays running and runs again when redelivered",
				"id", c.ID, "verb", c.Verb, "error", herr)
			return
		}
		if taskResult == nil {
			taskResult = map[string]any{}
		}
		result = taskResult
	}
	switch {
	case herr != nil:
		// The task failed: the hooks that follow it do not run.
	case len(steps) == 0 && taskResult == nil:
		result = map[string]any{"note": fmt.Sprintf("no %s hook on %s; nothing to run", c.Verb, a.self)}
	case len(steps) > 0:
		data := make(map[string]any, len(c.Args)+5)
		maps.Copy(data, c.Args)
		data["self"] = a.self
		data["verb"] = c.Verb
		data["action"] = c.ID
		data["coordinator"] = c.From
		if taskResult != nil {
			data["result"] = taskResult
		}
		res, err := hooks.Run(ctx, steps, data)
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			a.log.Warn("hook stopped by shutdown; the command stays running and runs again when redelivered",
				"id", c.ID, "verb", c.Verb, "error", err)
			return
		}
		if len(res.Steps) > 0 {
			if taskResult != nil {
				taskResult["steps"] = report(res)
			} else {
				result = report(res)
			}
		}
		herr = err
	}

	rec.State, rec.Finished, rec.Result = bus.AckDone, a.now(), jsonValue(result)
	if herr != nil {
		rec.State, rec.Error = bus.AckFailed, herr.Error()
		a.log.Error("command failed", "id", c.ID, "verb", c.Verb, "error", herr)
	} else {
		a.log.Info("command done", "id", c.ID, "verb", c.Verb, "took", rec.Finished.Sub(rec.At))
	}
	done, werr := a.writeResult(job{cmd: c, rec: rec})
	if werr != nil {
		a.log.Error("result of command not written yet; it is written as soon as the state file takes writes (a restart before then would run the command again)", "id", c.ID, "error", werr)
	}
	a.ack(ackOf(a.self, rec))
	a.written(done)
}

// retryResults is how often results that did not reach the state file are
// tried again.
const retryResults = time.Second

// writeResult writes a finished command's record, behind those still
// waiting for the state file; when it does not land either, it waits with
// them (and is kept in mem, so that duplicates still get the answer). It
// returns the results written.
func (a *Agent) writeResult(j job) ([]job, error) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.mu.Lock()
	a.mem[j.cmd.ID] = j.rec
	a.mu.Unlock()
	a.unwritten = append(a.unwritten, j)
	return a.flushResults()
}

// retryResults writes the results waiting for the state file, if it takes
// them now (Run, every retryResults).
func (a *Agent) retryResults() {
	a.wmu.Lock()
	if len(a.unwritten) == 0 {
		a.wmu.Unlock()
		return
	}
	done, _ := a.flushResults()
	a.wmu.Unlock()
	if len(done) > 0 {
		a.log.Warn("the state file takes writes again: command results that waited for it are written", "commands", len(done))
	}
	a.written(done)
}

// flushResults writes the waiting results in order, each in a transaction
// of its own, until one fails; it returns those written (a.wmu held).
func (a *Agent) flushResults() ([]job, error) {
	var done []job
	for len(a.unwritten) > 0 {
		j := a.unwritten[0]
		c, rec := j.cmd, j.rec
		cover, covered := coverChange(c, rec)
		err := a.store.Update(func(tx *store.Tx) error {
			if err := tx.Put(bucketReceived, c.ID, rec); err != nil {
				return err
			}
			// The epoch, had the command's receipt not been written.
			var seen uint64
			if _, err := tx.Get(bucketMeta, keyEpoch, &seen); err != nil {
				return err
			}
			if c.Epoch > seen {
				if err := tx.Put(bucketMeta, keyEpoch, c.Epoch); err != nil {
					return err
				}
			}
			switch {
			case cover == "":
			case covered:
				cv := bus.Covered{Member: cover, Since: rec.At, Action: c.ID, Epoch: c.Epoch}
				var before bus.Covered
				if found, err := tx.Get(bucketCovering, cover, &before); err == nil && found && !before.Since.IsZero() {
					cv.Since = before.Since // taken over again: it has covered it since the first time
				}
				return tx.Put(bucketCovering, cover, cv)
			default:
				return tx.Delete(bucketCovering, cover)
			}
			return nil
		})
		if err != nil {
			return done, fmt.Errorf("result of command %s: %w", c.ID, err)
		}
		a.unwritten = a.unwritten[1:]
		a.mu.Lock()
		if r, ok := a.mem[c.ID]; ok && r.State == rec.State {
			delete(a.mem, c.ID)
		}
		a.mu.Unlock()
		done = append(done, j)
	}
	return done, nil
}

// written says what the results written change of what this member
// covers, and publishes it.
func (a *Agent) written(jobs []job) {
	changed := false
	for _, j := range jobs {
		cover, covered := coverChange(j.cmd, j.rec)
		if cover == "" {
			continue
		}
		changed = true
		if covered {
			a.log.Info("covering "+cover, "member", cover, "action", j.cmd.ID)
		} else {
			a.log.Info("no longer covering "+cover, "member", cover, "action", j.cmd.ID)
		}
	}
	if changed && a.covering != nil {
		a.covering(a.Covering())
	}
}

// coverChange says how a finished command changes what this member covers:
// a takeover of a member done covers it, a release of it done ends that
// (member "" for any other command, or one that failed).
func coverChange(c bus.Command, rec Received) (member string, covered bool) {
	if rec.State != bus.AckDone || (c.Verb != config.HookTakeover && c.Verb != config.HookRelease) {
		return "", false
	}
	m, _ := c.Args["member"].(string)
	return m, c.Verb == config.HookTakeover
}

// Covering lists the members this one covers (a takeover done, no release
// since), by member id.
func (a *Agent) Covering() []bus.Covered {
	all, err := store.Load[bus.Covered](a.store, bucketCovering)
	if err != nil {
		a.log.Error("what this member covers is unreadable", "error", err)
	}
	out := make([]bus.Covered, 0, len(all))
	for _, id := range slices.Sorted(maps.Keys(all)) {
		out = append(out, all[id])
	}
	return out
}

// stepReport is one step of a result as the coordinator sees it.
type stepReport struct {
	Kind   string  `json:"kind"`
	What   string  `json:"what"`
	TookMS float64 `json:"took_ms"`
	Status int     `json:"status"`
	Output string  `json:"output,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// report turns a hook result into the list of steps an ack carries.
func report(res hooks.Result) []stepReport {
	out := make([]stepReport, len(res.Steps))
	for i, s := range res.Steps {
		out[i] = stepReport{
			Kind:   s.Kind,
			What:   s.What,
			TookMS: float64(s.Took.Microseconds()) / 1000,
			Status: s.Status,
			Output: trimOutput(s.Kind, s.Output),
			Error:  s.Err,
		}
	}
	return out
}

// trimOutput keeps at most maxOutput bytes of a step's output: the end of a
// program's output (where its errors are), the start of anything else.
func trimOutput(kind, s string) string {
	if len(s) <= maxOutput {
		return s
	}
	const mark = "…"
	keep := maxOutput - len(mark)
	if kind == "exec" {
		cut := len(s) - keep
		for cut < len(s) && !utf8.RuneStart(s[cut]) {
			cut++
		}
		return mark + s[cut:]
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// jsonValue returns v as it reads back from JSON, so that a result answered
// at once and the same result answered from the store are the same value.
func jsonValue(v any) any {
	if v == nil {
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return string(data)
	}
	return out
}

func ackOf(self string, r Received) bus.Ack {
	return bus.Ack{ID: r.ID, Epoch: r.Epoch, Member: self, State: r.State, Error: r.Error, Result: r.Result}
}

// ack publishes an answer: QoS 1, not retained.
func (a *Agent) ack(k bus.Ack) {
	payload, err := json.Marshal(k)
	if err != nil {
		a.log.Error("answer cannot be encoded", "id", k.ID, "error", err)
		return
	}
	if err := a.publish(a.topic, 1, false, payload); err != nil {
		a.log.Warn("answer not published (the coordinator asks again)", "id", k.ID, "state", k.State, "error", err)
	}
}

// Received returns what the agent has recorded about command id: what this
// process is running, else the store's record.
func (a *Agent) Received(id string) (Received, bool) {
	a.mu.Lock()
	r, ok := a.mem[id]
	a.mu.Unlock()
	if ok {
		return r, true
	}
	found, err := a.store.Get(bucketReceived, id, &r)
	if err != nil {
		a.log.Warn("record of command unreadable", "id", id, "error", err)
		return Received{}, false
	}
	return r, found
}
