//go:build linux

package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"understudy/fixtures/testhost"
)

// instance is one member's `understudy run` on its host (or the external
// broker on its own), started again after a kill. Its output (the JSON
// log) is appended to one file.
type instance struct {
	member string
	host   *testhost.Host
	args   []string
	env    []string // added to this process's environment
	log    *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newInstance(member string, h *testhost.Host, binary string, args []string, logPath string, env []string) (*instance, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", member, err)
	}
	// The instance gets a host name of its own (the namespace's), as a
	// machine has; unshare and sh exec, so the daemon keeps the PID.
	uts := append([]string{"--uts", "sh", "-c", `echo "$0" > /proc/sys/kernel/hostname && exec "$@"`, h.Name, binary}, args...)
	return &instance{member: member, host: h, args: uts, env: env, log: f}, nil
}

// start starts the process (it must not be running).
func (in *instance) start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	cmd := in.host.Command(context.Background(), "unshare", in.args...)
	cmd.Stdout, cmd.Stderr = in.log, in.log
	if len(in.env) > 0 {
		cmd.Env = append(os.Environ(), in.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", in.member, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	in.cmd, in.done = cmd, done
	return nil
}

// signal sends sig to the process group (nothing when not running).
func (in *instance) signal(sig syscall.Signal) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return nil
	}
	if err := syscall.Kill(-in.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%v to %s: %w", sig, in.member, err)
	}
	return nil
}

// exited is closed when the process started last has ended (nil when
// none runs: a nil channel never closes).
func (in *instance) exited() <-chan struct{} {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.done
}

// kill sends SIGKILL and waits until the process is reaped (bounded).
func (in *instance) kill() error {
	if err := in.signal(syscall.SIGKILL); err != nil {
		return err
	}
	in.mu.Lock()
	done := in.done
	in.cmd, in.done = nil, nil
	in.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s not reaped 10 s after SIGKILL", in.member)
	}
}

// close kills the process and closes the log.
func (in *instance) close() error {
	return errors.Join(in.kill(), in.log.Close())
}
