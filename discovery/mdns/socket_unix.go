//go:build unix

package mdns

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// shareMDNSPort lets the socket share port 5353 with the host's other mDNS
// stacks: SO_REUSEADDR and SO_REUSEPORT, as Avahi sets them.
func shareMDNSPort(fd uintptr) error {
	if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	return nil
}
