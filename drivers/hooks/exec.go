package hooks

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// envPrefix prefixes the data keys passed in the environment.
	envPrefix = "UNDERSTUDY_"

	// maxEnvValue is the longest data value passed in the environment. Linux
	// refuses to start a program with a single environment string over 128 KiB
	// (and all of them count against ARG_MAX), so a big value such as a config
	// bundle is left out; pass it with a template argument or a write step.
	maxEnvValue = 32 << 10

	// maxExecOutput is how much of a program's output is kept (the tail).
	maxExecOutput = 64 << 10

	// execWaitDelay bounds how long Run keeps reading output after the program
	// has exited (or been killed) while something else still holds the pipe:
	// typically a background child it started.
	execWaitDelay = 2 * time.Second
)

// envNameRe is what an environment variable's name may be.
var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// runExec runs an exec step. stepCtx carries the step's timeout; ctx is the
// caller's, to tell a cancellation from a timeout.
func runExec(stepCtx, ctx context.Context, s Step, data map[string]any, sr *StepResult) error {
	sr.Status = -1
	argv := make([]string, len(s.Exec))
	argv[0] = s.Exec[0]
	for i, arg := range s.Exec[1:] {
		v, err := expand(argName(i+1), arg, data)
		if err != nil {
			return err
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("%s: expands to text with a NUL byte, which cannot be passed to a program", argName(i+1))
		}
		argv[i+1] = v
	}
	sr.What = describeExec(argv)
	if err := checkRunnable(argv[0]); err != nil {
		return err
	}

	out := &tailBuffer{limit: maxExecOutput}
	cmd := exec.CommandContext(stepCtx, argv[0], argv[1:]...)
	cmd.Env = execEnv(data)
	for _, k := range sortedKeys(s.Env) {
		v, err := expand("env "+k, s.Env[k], data)
		if err != nil {
			return err
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("env %s: expands to text with a NUL byte, which cannot be passed to a program", k)
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = "/"
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = out
	cmd.Stderr = out
	killTreeOnCancel(cmd)
	cmd.WaitDelay = execWaitDelay

	if err := cmd.Start(); err != nil {
		if why, cause := interrupted(stepCtx, ctx, s.timeout()); cause != nil {
			return fmt.Errorf("not started: %s: %w", why, cause)
		}
		return fmt.Errorf("could not start %s: %w", argv[0], err)
	}
	err := cmd.Wait()
	if cmd.ProcessState != nil {
		sr.Status = cmd.ProcessState.ExitCode()
	}
	heldOpen := errors.Is(err, exec.ErrWaitDelay)
	sr.Output = out.String()
	if heldOpen {
		sr.Output += fmt.Sprintf("\n[stopped reading output %v after the program ended: a process it started still holds it open]", execWaitDelay)
	}

	if err == nil || (heldOpen && cmd.ProcessState != nil && cmd.ProcessState.Success()) {
		return nil
	}
	if why, cause := interrupted(stepCtx, ctx, s.timeout()); cause != nil {
		return fmt.Errorf("%s; %s: %w", why, killedNote(), cause)
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		msg := "exited with status " + fmt.Sprint(exitErr.ExitCode())
		if exitErr.ExitCode() < 0 {
			msg = "ended abnormally (" + exitErr.String() + ")"
		}
		if line := lastLine(out.String()); line != "" {
			return fmt.Errorf("%s, last output line %q: %w", msg, line, err)
		}
		return fmt.Errorf("%s (no output): %w", msg, err)
	}
	return fmt.Errorf("running %s: %w", argv[0], err)
}

// execEnv builds a hook program's environment: PATH (execPathEnv), and each
// top-level scalar data value (string, bool or number) as UNDERSTUDY_<KEY>,
// the key upper-cased with anything but letters, digits and '_' made '_'.
// Values with NUL bytes or over maxEnvValue bytes are left out.
func execEnv(data map[string]any) []string {
	env := []string{execPathEnv()}
	seen := map[string]bool{}
	for _, k := range sortedKeys(data) {
		val, ok := scalarString(data[k])
		if !ok || len(val) > maxEnvValue || strings.ContainsRune(val, 0) {
			continue
		}
		name := envName(k)
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		env = append(env, envPrefix+name+"="+val)
	}
	return env
}

func envName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		if ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func scalarString(v any) (string, bool) {
	if v == nil {
		return "", false
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return fmt.Sprint(v), true
	}
	return "", false
}

// tailBuffer keeps the last limit bytes written to it, counting the rest.
// It is safe for concurrent writes.
type tailBuffer struct {
	mu      sync.Mutex
	limit   int
	buf     []byte // the tail; may grow to 2*limit before compaction
	dropped int64
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.limit {
		b.dropped += int64(len(b.buf) + len(p) - b.limit)
		b.buf = append(b.buf[:0], p[len(p)-b.limit:]...)
		return n, nil
	}
	if len(b.buf)+len(p) > 2*b.limit {
		drop := len(b.buf) + len(p) - b.limit
		b.dropped += int64(drop)
		kept := copy(b.buf, b.buf[drop:])
		b.buf = b.buf[:kept]
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// String returns the kept output, prefixed with a note if some was dropped.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	tail := b.buf
	dropped := b.dropped
	if over := len(tail) - b.limit; over > 0 {
		tail = tail[over:]
		dropped += int64(over)
	}
	if dropped == 0 {
		return string(tail)
	}
	// Do not start in the middle of a UTF-8 sequence.
	for i := 0; i < utf8.UTFMax && len(tail) > 0 && !utf8.RuneStart(tail[0]); i++ {
		tail = tail[1:]
		dropped++
	}
	return fmt.Sprintf("[output truncated: %d earlier bytes not kept]\n", dropped) + string(tail)
}
