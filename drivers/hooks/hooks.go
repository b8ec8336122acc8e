// Package hooks runs duty hooks: the steps a standby machine takes to become
// a member it is covering for, or to stop covering it.
//
// Hooks are configured in the site.yaml of the machine that runs them (the
// config package converts them to the plain types here and calls
// [Step.Validate]). A step does exactly one of three things:
//
//   - exec: run an allow-listed program, given by absolute path, with
//     arguments. There is never a shell: each argument reaches the program as
//     one literal string, whatever it contains. On unix the program runs in
//     its own process group, which is killed as a whole on timeout or
//     cancellation; on Windows only the program itself is killed for now, and
//     the step's error says so.
//   - http: make one HTTP request and check the status code.
//   - write: write a file (typically the duty's configuration bundle) into
//     place atomically: a temporary file in the same directory, fsync, rename,
//     fsync of the directory (not on Windows, which cannot sync a directory).
//     A reader sees the old file or the new one, never a part of either.
//
// Arguments, URLs, headers, bodies, paths and contents are text/template
// templates expanded with the command's data (for example {"member": "rec-2",
// "config": "<bundle>", "version": 7}). A key the data does not have is an
// error, not an empty string. Besides the standard functions, templates have
// json (a value as JSON) and join (a list joined with a separator:
// {{join .streams ","}}).
//
// [Run] runs steps in order and stops at the first failure; the [Result]
// records every step that ran, with its output, for the coordinator's report.
//
// The exec driver (drivers/execprog) runs its programs as exec steps, which
// is why hooks sit under drivers/: they are the member's side of an action.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Default step timeouts, used when Step.Timeout is 0.
const (
	DefaultExecTimeout  = 30 * time.Second
	DefaultHTTPTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second

	// MaxTimeout is the longest timeout a step may ask for.
	MaxTimeout = time.Hour
)

// Step is one duty-hook step. Exactly one of Exec, HTTP and Write is set.
type Step struct {
	// Exec is the program (an absolute path, taken literally) followed by its
	// arguments; each argument is a text/template. No shell is involved.
	Exec []string
	// Env adds environment variables to an exec step's program (names of
	// letters, digits and '_'; values are text/templates), after PATH and the
	// UNDERSTUDY_* data.
	Env     map[string]string
	HTTP    *HTTP
	Write   *Write
	Timeout time.Duration // 0: default (exec 30s, http 10s, write 10s)
}

// HTTP is an HTTP request step.
type HTTP struct {
	Method  string            // default POST
	URL     string            // text/template; http or https
	Headers map[string]string // values are templates
	Body    string            // text/template; "" sends no body
	Expect  []int             // accepted status codes; empty: any 2xx
}

// Write is an atomic file-write step.
type Write struct {
	Path    string      // text/template; absolute after expansion
	Content string      // text/template; default "{{.config}}"
	Mode    os.FileMode // permission bits; default 0644
}

// DefaultWriteContent is the content template of a write step that gives none.
const DefaultWriteContent = "{{.config}}"

// Kind returns "exec", "http" or "write", or "" if the step does not set
// exactly one of them.
func (s Step) Kind() string {
	kind, n := "", 0
	if s.Exec != nil {
		kind, n = "exec", n+1
	}
	if s.HTTP != nil {
		kind, n = "http", n+1
	}
	if s.Write != nil {
		kind, n = "write", n+1
	}
	if n != 1 {
		return ""
	}
	return kind
}

// timeout returns the step's effective timeout.
func (s Step) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	switch s.Kind() {
	case "http":
		return DefaultHTTPTimeout
	case "write":
		return DefaultWriteTimeout
	default:
		return DefaultExecTimeout
	}
}

// Validate checks a step without running it: exactly one of exec, http and
// write is set; the exec program is an absolute path (whether it exists is
// [Step.Check]'s job); every template parses; an http URL without template
// actions is an http or https URL with a host; the method is a valid token;
// expected status codes are within 100..599; the timeout is between 0 and 1h.
// All problems found are reported together, each naming its field.
func (s Step) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	var set []string
	if s.Exec != nil {
		set = append(set, "exec")
	}
	if s.HTTP != nil {
		set = append(set, "http")
	}
	if s.Write != nil {
		set = append(set, "write")
	}
	switch len(set) {
	case 0:
		add("a step needs exactly one of exec, http or write; none is set")
	case 1:
	case 2:
		add("a step needs exactly one of exec, http or write; %s are both set (use one step for each)", strings.Join(set, " and "))
	default:
		add("a step needs exactly one of exec, http or write; all three are set (use one step for each)")
	}
	if s.Timeout < 0 {
		add("timeout: %v is negative", s.Timeout)
	} else if s.Timeout > MaxTimeout {
		add("timeout: %v is longer than the maximum of %v", s.Timeout, MaxTimeout)
	}
	if s.Exec != nil {
		errs = append(errs, validateExec(s.Exec)...)
	}
	if len(s.Env) > 0 && s.Exec == nil {
		add("env: only an exec step has an environment")
	}
	for _, k := range sortedKeys(s.Env) {
		if !envNameRe.MatchString(k) {
			add("env: %q is not a variable name (letters, digits and _, not starting with a digit)", k)
		} else if _, err := parseTemplate("env "+k, s.Env[k]); err != nil {
			errs = append(errs, err)
		}
	}
	if s.HTTP != nil {
		errs = append(errs, validateHTTP(s.HTTP)...)
	}
	if s.Write != nil {
		errs = append(errs, validateWrite(s.Write)...)
	}
	return joinErrors(errs)
}

func validateExec(argv []string) []error {
	var errs []error
	if len(argv) == 0 {
		return []error{errors.New("exec: no program given (the first item must be the program's absolute path)")}
	}
	prog := argv[0]
	switch {
	case prog == "":
		errs = append(errs, errors.New("exec: the program path is empty"))
	case strings.Contains(prog, "{{"):
		errs = append(errs, fmt.Errorf("exec: program %q must be a literal path, not a template (only its arguments are templates)", prog))
	case strings.ContainsRune(prog, 0):
		errs = append(errs, fmt.Errorf("exec: program %q contains a NUL byte", prog))
	case !filepath.IsAbs(prog):
		errs = append(errs, fmt.Errorf("exec: program %q is not an absolute path (write it in full, e.g. /usr/bin/%s; there is no PATH search)", prog, filepath.Base(prog)))
	}
	for i, arg := range argv[1:] {
		if _, err := parseTemplate(argName(i+1), arg); err != nil {
			errs = append(errs, fmt.Errorf("exec: argument %d: %w", i+1, err))
		}
	}
	return errs
}

func validateHTTP(h *HTTP) []error {
	var errs []error
	if h.Method != "" && !isToken(h.Method) {
		errs = append(errs, fmt.Errorf("http.method: %q is not a valid HTTP method", h.Method))
	}
	if strings.TrimSpace(h.URL) == "" {
		errs = append(errs, errors.New("http.url: missing"))
	} else if t, err := parseTemplate("http.url", h.URL); err != nil {
		errs = append(errs, fmt.Errorf("http.url: %w", err))
	} else if !hasActions(t) {
		if err := checkURL(h.URL); err != nil {
			errs = append(errs, fmt.Errorf("http.url: %w", err))
		}
	}
	for _, name := range sortedKeys(h.Headers) {
		if !isToken(name) {
			errs = append(errs, fmt.Errorf("http.headers: %q is not a valid header name", name))
			continue
		}
		if _, err := parseTemplate("http.headers."+name, h.Headers[name]); err != nil {
			errs = append(errs, fmt.Errorf("http.headers.%s: %w", name, err))
		}
	}
	if _, err := parseTemplate("http.body", h.Body); err != nil {
		errs = append(errs, fmt.Errorf("http.body: %w", err))
	}
	for _, code := range h.Expect {
		if code < 100 || code > 599 {
			errs = append(errs, fmt.Errorf("http.expect: %d is not an HTTP status code (100 to 599)", code))
		}
	}
	return errs
}

func validateWrite(w *Write) []error {
	var errs []error
	if strings.TrimSpace(w.Path) == "" {
		errs = append(errs, errors.New("write.path: missing"))
	} else if t, err := parseTemplate("write.path", w.Path); err != nil {
		errs = append(errs, fmt.Errorf("write.path: %w", err))
	} else if !hasActions(t) {
		if err := checkWritePath(w.Path); err != nil {
			errs = append(errs, fmt.Errorf("write.path: %w", err))
		}
	}
	if _, err := parseTemplate("write.content", w.content()); err != nil {
		errs = append(errs, fmt.Errorf("write.content: %w", err))
	}
	if w.Mode&^os.ModePerm != 0 {
		errs = append(errs, fmt.Errorf("write.mode: %v has bits other than permissions (use e.g. 0644)", w.Mode))
	}
	return errs
}

func (w *Write) content() string {
	if w.Content == "" {
		return DefaultWriteContent
	}
	return w.Content
}

func (w *Write) mode() os.FileMode {
	if w.Mode == 0 {
		return 0o644
	}
	return w.Mode.Perm()
}

func (h *HTTP) method() string {
	if h.Method == "" {
		return "POST"
	}
	return h.Method
}

// checkURL checks an expanded (or literal) request URL.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a valid URL: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http or https URL", u.Redacted())
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", u.Redacted())
	}
	return nil
}

// checkWritePath checks an expanded (or literal) write target.
func checkWritePath(p string) error {
	if strings.ContainsRune(p, 0) {
		return fmt.Errorf("%q contains a NUL byte", p)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	slashed := filepath.ToSlash(p) // on Windows a backslash separates too
	for _, elem := range strings.Split(slashed, "/") {
		if elem == ".." {
			return fmt.Errorf("%q contains a \"..\" element", p)
		}
	}
	if strings.HasSuffix(slashed, "/") {
		return fmt.Errorf("%q names a directory, not a file", p)
	}
	return nil
}

// Check verifies what can only be checked on the machine that runs the step:
// an exec program exists, is a regular file (symbolic links are followed) and
// is executable (on Windows: a .exe or .com file; see windowsProgramError).
// It reports Validate's error first if the step is invalid. http and write
// steps have nothing more to check.
func (s Step) Check() error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.Kind() != "exec" {
		return nil
	}
	prog := s.Exec[0]
	fi, err := os.Stat(prog)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("exec: program %s does not exist on this machine: %w", prog, err)
	case err != nil:
		return fmt.Errorf("exec: program %s: %w", prog, err)
	case fi.IsDir():
		return fmt.Errorf("exec: program %s is a directory, not a program", prog)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("exec: program %s is not a regular file (%v)", prog, fi.Mode().Type())
	}
	return checkExecutable(prog, fi)
}

// StepResult is what happened when one step ran.
type StepResult struct {
	Kind string
	// What is a one-line description: "exec /usr/bin/recctl add rec-2",
	// "http POST http://…", "write /etc/rec/covered/rec-2.json".
	What string
	Took time.Duration
	// Output is, for exec, the combined stdout and stderr (its last 64 KiB,
	// marked if earlier output was dropped); for http, the response body
	// (its first 4 KiB, marked if longer).
	Output string
	// Status is the HTTP status, or the exec exit code (-1 if the program was
	// killed by a signal or did not start).
	Status int
	Err    string // "" on success
}

// Result holds a StepResult for every step that ran, in order.
type Result struct {
	Steps []StepResult
}

// Run runs steps in order with data as the template data, stopping at the
// first failure. Every step is validated before any runs. The returned error
// names the failing step (1-based index and What) and wraps the cause; the
// Result holds every step that ran, including the failed one. Cancelling ctx
// stops the running step (killing an exec step's process group) and the steps
// after it.
func Run(ctx context.Context, steps []Step, data map[string]any) (Result, error) {
	var res Result
	for i, s := range steps {
		if err := s.Validate(); err != nil {
			return res, fmt.Errorf("step %d (%s): invalid, nothing was run: %w", i+1, describeRaw(s), err)
		}
	}
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("step %d (%s): not started: %w", i+1, describeRaw(s), err)
		}
		sr, err := runStep(ctx, s, data)
		res.Steps = append(res.Steps, sr)
		if err != nil {
			return res, fmt.Errorf("step %d (%s): %w", i+1, sr.What, err)
		}
	}
	return res, nil
}

// runStep runs one valid step and returns its result; the error is also
// recorded in StepResult.Err.
func runStep(ctx context.Context, s Step, data map[string]any) (StepResult, error) {
	start := time.Now()
	sr := StepResult{Kind: s.Kind(), What: describeRaw(s)}
	stepCtx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	var err error
	switch sr.Kind {
	case "exec":
		err = runExec(stepCtx, ctx, s, data, &sr)
	case "http":
		err = runHTTP(stepCtx, ctx, s, data, &sr)
	case "write":
		err = runWrite(stepCtx, ctx, s, data, &sr)
	}
	sr.Took = time.Since(start)
	if err != nil {
		sr.Err = err.Error()
	}
	return sr, err
}

// interrupted explains why stepCtx ended: the caller's ctx was cancelled
// ("cancelled", context.Canceled), or the step ran out of time ("did not
// finish within 30s", context.DeadlineExceeded). cause is nil if stepCtx is
// still live.
func interrupted(stepCtx, ctx context.Context, timeout time.Duration) (why string, cause error) {
	if stepCtx.Err() == nil {
		return "", nil
	}
	if err := ctx.Err(); err != nil {
		return "cancelled", err
	}
	return fmt.Sprintf("did not finish within %v", timeout), context.DeadlineExceeded
}

// Descriptions.

const (
	maxWhatArg = 60
	maxWhat    = 240
)

// describeRaw describes a step from its configuration, before expansion.
func describeRaw(s Step) string {
	switch s.Kind() {
	case "exec":
		return describeExec(s.Exec)
	case "http":
		return describeHTTP(s.HTTP.method(), s.HTTP.URL)
	case "write":
		return "write " + oneLine(s.Write.Path, maxWhat)
	default:
		return "invalid step"
	}
}

func describeExec(argv []string) string {
	var b strings.Builder
	b.WriteString("exec")
	for _, a := range argv {
		b.WriteByte(' ')
		b.WriteString(quoteArg(a))
	}
	return oneLine(b.String(), maxWhat)
}

func describeHTTP(method, rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		rawURL = u.Redacted()
	}
	return oneLine("http "+method+" "+rawURL, maxWhat)
}

// quoteArg renders one argument for a description: bare if it is plain,
// quoted otherwise, and shortened if long.
func quoteArg(a string) string {
	if utf8.RuneCountInString(a) > maxWhatArg {
		a = string([]rune(a)[:maxWhatArg]) + "…"
	}
	plain := a != ""
	for _, r := range a {
		if r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == 0x7f || !strconv.IsPrint(r) {
			plain = false
			break
		}
	}
	if plain {
		return a
	}
	return strconv.Quote(a)
}

// oneLine makes s a single line of at most max runes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return s
}

// firstLine returns the first non-blank line of s, trimmed and shortened.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return oneLine(line, 200)
		}
	}
	return ""
}

// lastLine returns the last non-blank line of s, trimmed and shortened.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return oneLine(strings.TrimSpace(s), 200)
}

// isToken reports whether s is an RFC 9110 token (methods, header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// multiError joins several errors on one line and unwraps to all of them.
type multiError []error

func (m multiError) Error() string {
	parts := make([]string, len(m))
	for i, err := range m {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (m multiError) Unwrap() []error { return m }

func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	default:
		return multiError(errs)
	}
}
