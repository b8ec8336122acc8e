//go:build windows

package hooks

import "io/fs"

// checkExecutable verifies that the regular file prog is a kind of file
// Windows runs as a program (windowsProgramError). Windows has no execute
// bit; whether this user may run it (its ACL) shows when it is started.
func checkExecutable(prog string, _ fs.FileInfo) error { return windowsProgramError(prog) }
