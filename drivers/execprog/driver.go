// Package execprog is the `kind: exec` driver: allow-listed programs run on
// this machine as control actions (a vendor's command-line tool, a script
// that restarts a service or loads a show file).
//
// Programs are named in the settings with an absolute path, arguments
// (templates over the send's args), a timeout and environment variables.
// There is never a shell. Running is drivers/hooks' exec step: its own
// process group, killed as a whole on timeout; combined output captured.
// See README.md.
package execprog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"understudy/drivers"
	"understudy/drivers/command"
	"understudy/drivers/hooks"
	"understudy/units"
)

// Kind registers the driver as `kind: exec`.
var Kind = drivers.Kind{
	Name:    "exec",
	Summary: "allow-listed programs run on this machine (no shell; killed on timeout)",
	New:     New,
}

// Settings is the driver's configuration block in site.yaml.
type Settings struct {
	// Programs are the commands a policy can send, by name: the allow-list.
	Programs map[string]Program `yaml:"programs"`
}

// Program is one allow-listed program.
type Program struct {
	// Path is the program's absolute path, taken literally (no PATH search).
	Path string `yaml:"path"`
	// Args are its arguments, each a template passed as one argument
	// whatever it expands to.
	Args []string `yaml:"args"`
	// Timeout bounds the run; the program's process group is killed when it
	// is up. Default 30s, at most 1h.
	Timeout units.Duration `yaml:"timeout"`
	// Env adds environment variables (values are templates).
	Env map[string]string `yaml:"env"`
}

// Defaults and limits.
const (
	DefaultTimeout = hooks.DefaultExecTimeout
	MaxTimeout     = hooks.MaxTimeout
	// MaxOutput is how much of a program's output (its end) the result keeps.
	MaxOutput = 4 << 10
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("driver closed")

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var _ drivers.Controller = (*Runner)(nil)

// New decodes and validates the settings; it does no I/O.
func New(cfg drivers.Config) (drivers.Driver, error) {
	if cfg.Decode == nil {
		return nil, errors.New("exec: no settings decoder")
	}
	var s Settings
	if err := cfg.Decode(&s); err != nil {
		return nil, err
	}
	return FromSettings(s)
}

// program is a Program validated, with its templates parsed.
type program struct {
	name    string
	path    string
	argv    []string            // as hooks runs it: path args…
	env     map[string]string   // extra environment (values are templates)
	checks  []*command.Template // every template of argv and env, for Check
	timeout time.Duration
}

// FromSettings validates s, fills in defaults and returns the driver, not yet
// started. It does no I/O: whether each program exists is checked when a
// policy sends it. All problems found are reported together.
func FromSettings(s Settings) (*Runner, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(s.Programs) == 0 {
		add("programs: none configured (name each program a policy may run, with its absolute path)")
	}
	r := &Runner{set: s, progs: map[string]*program{}, status: drivers.Status{Address: "localhost"}}
	progs := make(map[string]Program, len(s.Programs))
	for _, name := range slices.Sorted(maps.Keys(s.Programs)) {
		p := s.Programs[name]
		field := "programs." + name
		if strings.TrimSpace(name) == "" {
			add("programs: a program has an empty name")
			continue
		}
		if p.Timeout < 0 || p.Timeout.D() > MaxTimeout {
			add("%s.timeout: %s is not between 0 and %s", field, p.Timeout, MaxTimeout)
		}
		if p.Timeout == 0 {
			p.Timeout = units.Duration(DefaultTimeout)
		}
		pr := &program{name: name, path: p.Path, timeout: p.Timeout.D(), env: p.Env}
		for _, k := range slices.Sorted(maps.Keys(p.Env)) {
			if !envNameRe.MatchString(k) {
				add("%s.env: %q is not a variable name (letters, digits and _, not starting with a digit)", field, k)
				continue
			}
			t, err := command.ParseTemplate(field+".env."+k, p.Env[k])
			if err != nil {
				errs = append(errs, err)
				continue
			}
			pr.checks = append(pr.checks, t)
		}
		pr.argv = append(pr.argv, p.Path)
		for i, a := range p.Args {
			t, err := command.ParseTemplate(fmt.Sprintf("%s.args[%d]", field, i), a)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			pr.argv = append(pr.argv, a)
			pr.checks = append(pr.checks, t)
		}
		// The path: absolute, literal (hooks' rules).
		if err := (hooks.Step{Exec: []string{p.Path}}).Validate(); err != nil {
			add("%s.path: %s", field, strings.TrimPrefix(err.Error(), "exec: "))
		}
		r.progs[name] = pr
		progs[name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r.set.Programs = progs
	return r, nil
}

// Runner is the driver: it runs the allow-listed programs. It implements
// drivers.Controller; its methods are safe for use from any goroutine.
// Programs run one at a time per driver only if the runtime calls Do so.
type Runner struct {
	set   Settings
	progs map[string]*program

	mu      sync.Mutex
	status  drivers.Status
	started bool
	closed  bool
}

// Settings returns the settings in use, defaults filled in.
func (r *Runner) Settings() Settings { return r.set }

// Start makes the driver ready and returns at once. There is nothing to
// connect to: the driver is connected until Close.
func (r *Runner) Start(context.Context, drivers.Emitter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return
	}
	r.started = true
	r.status.Connected, r.status.Since = true, time.Now()
}

// Close makes Do fail with ErrClosed. A program running is not stopped by
// Close; cancel its Do's context to kill it.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.status.Connected {
		r.status.Connected, r.status.Since = false, time.Now()
	}
	return nil
}

// Status reports the driver as connected between Start and Close.
func (r *Runner) Status() drivers.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// prepare finds the program and checks it against args: every template
// expands, and the program exists and is executable.
func (r *Runner) prepare(args map[string]any) (*program, map[string]any, error) {
	name, data, err := command.Parse(args)
	if err != nil {
		return nil, nil, err
	}
	p, ok := r.progs[name]
	if !ok {
		return nil, nil, command.Unknown("program", name, slices.Collect(maps.Keys(r.progs)))
	}
	for _, t := range p.checks {
		v, err := t.Expand(data)
		if err != nil {
			return nil, nil, err
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, nil, fmt.Errorf("%s: expands to text with a NUL byte, which cannot be passed to a program", t.Field())
		}
	}
	if err := (hooks.Step{Exec: []string{p.path}}).Check(); err != nil {
		return nil, nil, fmt.Errorf("programs.%s: %s", name, strings.TrimPrefix(err.Error(), "exec: "))
	}
	return p, data, nil
}

// Check validates args without running anything: the program is in the
// allow-list, exists and is executable, and its templates expand with the
// args.
func (r *Runner) Check(args map[string]any) error {
	_, _, err := r.prepare(args)
	return err
}

// Do runs the program and waits for it to end; the result is {exit = code,
// output = the last 4 KiB of its combined stdout and stderr}. An exit
// status other than 0 is an error naming the status and the last line of
// output; so is a program killed on timeout or by a signal (exit -1). The
// result comes with the error too. Nothing here is retried by the runtime.
func (r *Runner) Do(ctx context.Context, args map[string]any) (any, error) {
	p, data, err := r.prepare(args)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("exec %s: %w", p.name, ErrClosed)
	}
	res, err := hooks.Run(ctx, []hooks.Step{{Exec: p.argv, Env: p.env, Timeout: p.timeout}}, data)
	if len(res.Steps) == 0 {
		// Not started: cancelled before, or (not expected after prepare)
		// the step did not validate.
		return nil, &runError{msg: fmt.Sprintf("exec %s: not started", p.name), err: err}
	}
	sr := res.Steps[0]
	result := map[string]any{"exit": sr.Status, "output": tail(sr.Output, MaxOutput)}
	if err == nil {
		return result, nil
	}
	msg := fmt.Sprintf("exec %s: %s", p.name, sr.Err)
	if sr.Status > 0 {
		msg = fmt.Sprintf("exec %s: exited with status %d", p.name, sr.Status)
		if line := lastLine(sr.Output); line != "" {
			msg += fmt.Sprintf(", last output line %q", line)
		} else {
			msg += " (no output)"
		}
	}
	return result, &runError{msg: msg, err: err}
}

// runError has a message of its own (hooks' names the step with its whole
// command line, environment values included) and unwraps to hooks' error
// (context.DeadlineExceeded on timeout, an *exec.ExitError, …).
type runError struct {
	msg string
	err error
}

func (e *runError) Error() string { return e.msg }
func (e *runError) Unwrap() error { return e.err }

// tail returns the last max bytes of s, starting on a whole UTF-8 sequence.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	for i := 0; i < utf8.UTFMax && len(s) > 0 && !utf8.RuneStart(s[0]); i++ {
		s = s[1:]
	}
	return s
}

// lastLine returns the last non-blank line of s, trimmed and shortened.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}
