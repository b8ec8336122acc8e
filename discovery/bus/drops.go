package bus

import (
	"log/slog"
	"sync"
)

// maxLoggedSources bounds the memory spent remembering who was logged.
const maxLoggedSources = 1024

// Drops counts payloads that were dropped, by reason, and logs the first drop
// from each source (a member id or topic) so a misbehaving sender cannot flood
// the log. It is safe for concurrent use.
type Drops struct {
	log    *slog.Logger
	mu     sync.Mutex
	counts map[string]uint64
	logged map[string]bool
}

// NewDrops returns an empty counter that logs to log.
func NewDrops(log *slog.Logger) *Drops {
	return &Drops{log: log, counts: map[string]uint64{}, logged: map[string]bool{}}
}

// Drop counts one dropped payload from source and logs it if it is the first
// from that source.
func (d *Drops) Drop(source, topic string, size int, err error) {
	reason := Reason(err)
	d.mu.Lock()
	d.counts[reason]++
	first := !d.logged[source] && len(d.logged) < maxLoggedSources
	if first {
		d.logged[source] = true
	}
	d.mu.Unlock()
	if first {
		d.log.Warn("dropped bad bus payload (further drops from this source are only counted)", "source", source, "topic", topic, "bytes", size, "reason", reason, "error", err)
	}
}

// Counts returns a copy of the counts by reason.
func (d *Drops) Counts() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint64, len(d.counts))
	for k, v := range d.counts {
		out[k] = v
	}
	return out
}

// Total returns the number of dropped payloads.
func (d *Drops) Total() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n uint64
	for _, v := range d.counts {
		n += v
	}
	return n
}
