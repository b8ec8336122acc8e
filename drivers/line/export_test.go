package line

import (
	"context"
	"errors"
	"time"
)

// WaitBuffered waits until the driver's open connection holds at least n
// bytes received and not yet read (so a test knows stale bytes arrived
// before its next command).
func WaitBuffered(ctx context.Context, d *Line, n int) error {
	for {
		d.mu.Lock()
		s := d.cur
		d.mu.Unlock()
		if s == nil {
			return errors.New("no open connection")
		}
		have, changed := s.in.buffered()
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-s.in.dead:
			return s.in.readErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Backoff returns the delay before connecting again after n+1 failures.
func Backoff(d *Line, n int) time.Duration { return d.backoff(n) }
