package extron

import "time"

// SetKeepAlive shortens the idle interval before Q of the drivers made from
// now on; the returned function restores it. Tests that use it must not run
// in parallel.
func SetKeepAlive(d time.Duration) (restore func()) {
	old := keepAlive
	keepAlive = d
	return func() { keepAlive = old }
}
