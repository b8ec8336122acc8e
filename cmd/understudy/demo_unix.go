//go:build unix

package main

import (
	"errors"
	"os"
	"syscall"
)

// demoKillHint is how to crash the main from another terminal (%d: its pid).
const demoKillHint = "kill -9 %d"

// pauseProcess stops p (SIGSTOP): it keeps its connections but says nothing.
func pauseProcess(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// resumeProcess continues a paused p (SIGCONT).
func resumeProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }

// stopProcess asks p to shut down gracefully (SIGTERM).
func stopProcess(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// killProcessGroup kills p's process group (p leads it: demoProcAttr).
func killProcessGroup(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
