//go:build unix

package hooks

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// execPathEnv is the whole PATH a hook program gets.
func execPathEnv() string { return "PATH=/usr/sbin:/usr/bin:/sbin:/bin" }

// checkRunnable refuses a program before it is started; on unix the start
// itself says what is wrong.
func checkRunnable(string) error { return nil }

// killTreeOnCancel makes the program lead a new process group; on timeout or
// cancellation the whole group is killed so that its children do not linger.
func killTreeOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
}

// killedNote says, in the error of a step that was interrupted, what was
// killed.
func killedNote() string { return "killed" }
