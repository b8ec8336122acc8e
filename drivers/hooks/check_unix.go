//go:build unix

package hooks

import (
	"fmt"
	"io/fs"
	"syscall"
)

// checkExecutable verifies that the regular file prog, described by fi, may
// be run by this user: it has an execute bit and access(2) agrees.
func checkExecutable(prog string, fi fs.FileInfo) error {
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("exec: program %s is not executable (mode %04o; chmod +x it)", prog, fi.Mode().Perm())
	}
	const xOK = 1 // access(2) X_OK
	if err := syscall.Access(prog, xOK); err != nil {
		return fmt.Errorf("exec: program %s is not executable by this user: %w", prog, err)
	}
	return nil
}
