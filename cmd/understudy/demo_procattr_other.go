//go:build unix && !linux

package main

import "syscall"

// demoProcAttr starts a member in a process group of its own. There is no
// parent-death signal here: a demo killed with SIGKILL leaves its members
// running (any other end of the demo stops them).
func demoProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
