//go:build !linux && !darwin && !freebsd && !windows

package diskhealth

// freeBytes cannot tell the free space on this operating system: disks are
// checked without it, and MinFree is not applied.
func freeBytes(string) (uint64, error) {
	return 0, errFreeUnsupported
}
