package main

import "syscall"

// demoProcAttr starts a member in a process group of its own, sent SIGTERM
// when the demo dies, even by SIGKILL (Pdeathsig).
func demoProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
