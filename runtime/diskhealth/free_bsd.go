//go:build darwin || freebsd

package diskhealth

import "golang.org/x/sys/unix"

// freeBytes returns the space on path's filesystem available to this process.
func freeBytes(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	avail := int64(st.Bavail) // signed on FreeBSD: negative when root's reserve is in use
	if avail < 0 {
		avail = 0
	}
	return uint64(avail) * uint64(st.Bsize), nil
}
