// Package platform names what understudy cannot do yet on the operating
// system it runs on. understudy runs and is tested on Linux; it builds for
// Windows and macOS, where a feature that does not work yet returns the error
// of [Unsupported] when it is asked for, rather than pretending to work.
package platform

import (
	"errors"
	"runtime"
)

// UnsupportedError is the error of a feature that does not work on this
// operating system yet. It matches [errors.ErrUnsupported] with errors.Is.
type UnsupportedError struct {
	Feature string // what was asked for, e.g. "pausing a process"
	OS      string // runtime.GOOS
}

func (e *UnsupportedError) Error() string {
	return e.Feature + ": not supported on this operating system yet (" + e.OS + ")"
}

// Is reports whether target is errors.ErrUnsupported.
func (e *UnsupportedError) Is(target error) bool { return target == errors.ErrUnsupported }

// Unsupported returns the error saying that feature does not work on this
// operating system yet: "<feature>: not supported on this operating system
// yet (<GOOS>)".
func Unsupported(feature string) error {
	return &UnsupportedError{Feature: feature, OS: runtime.GOOS}
}
