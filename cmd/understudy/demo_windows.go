//go:build windows

package main

import (
	"os"
	"syscall"

	"understudy/platform"
)

// demoKillHint is how to crash the main from another terminal (%d: its pid).
const demoKillHint = "taskkill /F /PID %d"

// demoProcAttr leaves a member in the demo's console: Ctrl-C reaches it too.
// Nothing ends the members of a demo that is killed (that needs a job
// object, not done yet).
func demoProcAttr() *syscall.SysProcAttr { return nil }

// pauseProcess cannot pause a process on Windows yet.
func pauseProcess(*os.Process) error { return platform.Unsupported("pausing a process") }

// resumeProcess cannot continue a process on Windows yet (none is paused).
func resumeProcess(*os.Process) error { return platform.Unsupported("pausing a process") }

// stopProcess kills p: Windows has no SIGTERM to ask another process to shut
// down gracefully (a console control event would, not done yet), so the site
// sees the member lost rather than closed.
func stopProcess(p *os.Process) error { return p.Kill() }

// killProcessGroup kills p itself; there are no process groups to kill.
func killProcessGroup(p *os.Process) error { return p.Kill() }
