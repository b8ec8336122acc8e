//go:build linux

// Package proc starts the processes a benchmark measures, outside the
// testing package: each in a process group of its own with its output kept
// (the last few MiB), killed with its group and waited for by Kill. It is
// the non-test counterpart of fixtures/testhost's Process. Like make bench,
// it is Linux only (it reads /proc).
package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// keep bounds the output a Process keeps: older output is dropped.
const keep = 4 << 20

// waitDelay bounds how long Wait waits for the output pipes after the
// process exited.
const waitDelay = 2 * time.Second

// Process is a started program.
type Process struct {
	Cmd     *exec.Cmd
	Started time.Time // just before the fork

	out     *output
	done    chan struct{}
	waitErr error
}

// Start starts cmd in a new process group with stdout and stderr captured.
func Start(cmd *exec.Cmd) (*Process, error) {
	out := &output{changed: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.WaitDelay = waitDelay
	p := &Process{Cmd: cmd, out: out, done: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Output returns what the process printed (the last few MiB of it).
func (p *Process) Output() string { s, _ := p.out.snapshot(); return s }

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Wait waits for the process to exit; any number of times, from any goroutine.
func (p *Process) Wait() error { <-p.done; return p.waitErr }

// KillNow sends SIGKILL to the process alone (not its group), as `kill -9
// PID` does, and returns without waiting.
func (p *Process) KillNow() error {
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill -9 %d: %w", p.Pid(), err)
	}
	return nil
}

// Kill sends SIGKILL to the process group and waits until the process has
// been reaped. Killing a process that has exited is not an error.
func (p *Process) Kill() error {
	err := syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", p.Pid(), err)
	}
	return nil
}

// WaitOutput returns once the output contains substr; an error when ctx ends
// or the process exits first.
func (p *Process) WaitOutput(ctx context.Context, substr string) error {
	for {
		out, changed := p.out.snapshot()
		if strings.Contains(out, substr) {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			if strings.Contains(p.Output(), substr) {
				return nil
			}
			return fmt.Errorf("%s exited (%v) without printing %q; its output ends:\n%s", p.Cmd.Path, p.waitErr, substr, Tail(p.Output(), 20))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q from %s: %w; its output ends:\n%s", substr, p.Cmd.Path, ctx.Err(), Tail(p.Output(), 20))
		}
	}
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RSS returns the resident set size (VmRSS) and its peak (VmHWM) of a
// process, in KiB, from /proc/PID/status.
func RSS(pid int) (rss, hwm int, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// output collects a process's output, keeping the last keep bytes, and lets
// readers wait for the next write.
type output struct {
	mu      sync.Mutex
	buf     []byte
	changed chan struct{}
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, b...)
	if len(o.buf) > keep {
		o.buf = append(o.buf[:0], o.buf[len(o.buf)-keep/2:]...)
	}
	close(o.changed)
	o.changed = make(chan struct{})
	return len(b), nil
}

func (o *output) snapshot() (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf), o.changed
}

// userHZ is the unit of the times in /proc/PID/stat (USER_HZ, 100 on Linux).
const userHZ = 100

// CPUTime returns the CPU time (user and system) a process has used, from
// /proc/PID/stat, in steps of 10 ms.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("read CPU time of %d: no command name in /proc/%d/stat", pid, pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state (3), …, utime (14), stime (15).
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time of %d: short /proc/%d/stat", pid, pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}
