//go:build linux

package materialcopy

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing n bytes of f from off to
// the disk now, without waiting (sync_file_range SYNC_FILE_RANGE_WRITE).
// Left alone, dirty pages wait for the writeback threads and the fsync at
// the end of the file writes all of them while the copy waits; started as
// they are written, the disk works while the rest arrives. It is only a
// hint: errors are ignored (the fsync reports them).
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
