package diskhealth

import "golang.org/x/sys/unix"

// freeBytes returns the space on path's filesystem available to this process.
func freeBytes(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	size := uint64(st.Frsize) // Bavail counts fragments where the filesystem reports them
	if size == 0 {
		size = uint64(st.Bsize)
	}
	return uint64(st.Bavail) * size, nil
}
