package bus

import (
	"errors"
	"log/slog"
	"sync"
)

// maxLogged bounds the memory spent remembering what was logged: at most
// this many (source, reason) pairs, then drops are only counted.
const maxLogged = 1024

// Drops counts payloads that were dropped, by reason, and logs the first drop
// of each reason from each source, so that a misbehaving sender cannot flood
// the log and one kind of drop does not hide another (a malformed heartbeat
// logged first, then every forgery on the same member's topics silent). The
// source is where the payload came, not who sent it: MQTT does not tell a
// subscriber who published, so the inbound table names the member whose
// topic it came on (a forgery names its victim), or the topic. It is safe
// for concurrent use.
type Drops struct {
	log    *slog.Logger
	mu     sync.Mutex
	counts map[string]uint64
	logged map[dropKey]bool
	// duplicates are copies of messages already taken over another
	// broker (ErrDuplicate): expected on a site with several, not drops.
	duplicates uint64
}

type dropKey struct{ source, reason string }

// NewDrops returns an empty counter that logs to log.
func NewDrops(log *slog.Logger) *Drops {
	return &Drops{log: log, counts: map[string]uint64{}, logged: map[dropKey]bool{}}
}

// Drop counts one dropped payload of size bytes (size < 0: not known here,
// such as a payload decoded before it was refused) that came from source
// (the member whose topic it came on, or the topic) and logs it if it is the
// first of its reason from that source.
func (d *Drops) Drop(source, topic string, size int, err error) {
	if errors.Is(err, ErrDuplicate) {
		d.mu.Lock()
		d.duplicates++
		d.mu.Unlock()
		return
	}
	reason := Reason(err)
	k := dropKey{source, reason}
	d.mu.Lock()
	d.counts[reason]++
	first := !d.logged[k] && len(d.logged) < maxLogged
	if first {
		d.logged[k] = true
	}
	d.mu.Unlock()
	if !first {
		return
	}
	attrs := []any{"source", source, "topic", topic, "reason", reason, "error", err}
	if size >= 0 {
		attrs = append(attrs, "bytes", size)
	}
	d.log.Warn("dropped bad bus payload (source is the member whose topic it came on, or the topic: not necessarily the sender, as MQTT does not say who published; further drops of this reason from this source are only counted)", attrs...)
}

// Duplicates is how many copies of messages already taken over another
// broker were set aside (not counted as drops).
func (d *Drops) Duplicates() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.duplicates
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
