//go:build !windows

package materialcopy

import (
	"errors"
	"os"
	"syscall"
)

// syncDir fsyncs a directory, so that a file created or renamed in it
// survives a power cut. A filesystem that cannot sync a directory (EINVAL)
// is left as it is.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
