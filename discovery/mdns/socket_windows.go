//go:build windows

package mdns

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// shareMDNSPort lets the socket share port 5353 with the host's other mDNS
// stacks (Bonjour, the Windows DNS client): Windows has SO_REUSEADDR only.
func shareMDNSPort(fd uintptr) error {
	if err := windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	return nil
}
