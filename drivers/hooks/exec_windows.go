//go:build windows

package hooks

import (
	"os"
	"os/exec"
	"path/filepath"

	"understudy/platform"
)

// execPathEnv is the whole PATH a hook program gets: Windows' own folders.
// (os/exec adds SYSTEMROOT, which Windows programs need.)
func execPathEnv() string {
	root := os.Getenv("SystemRoot")
	if root == "" {
		root = `C:\Windows`
	}
	return "PATH=" + filepath.Join(root, "System32") + ";" + root + ";" + filepath.Join(root, "System32", "Wbem")
}

// checkRunnable refuses a program that Windows would not run directly, or
// would run through cmd.exe (see windowsProgramError).
func checkRunnable(prog string) error { return windowsProgramError(prog) }

// killTreeOnCancel leaves exec.Cmd's own cancellation: on timeout or
// cancellation only the program itself is killed. The processes it started
// keep running (ending a process tree on Windows needs a job object, which is
// not done yet); execWaitDelay still bounds the wait for output they hold.
func killTreeOnCancel(*exec.Cmd) {}

// killedNote says, in the error of a step that was interrupted, what was
// killed and what was not.
func killedNote() string {
	return "killed the program; " + platform.Unsupported("ending the processes it started").Error()
}
