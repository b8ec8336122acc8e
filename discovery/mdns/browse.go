package mdns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Entry is a service instance found by Browse.
type Entry struct {
	Instance string            // the plain instance name (unescaped, without the service suffix)
	Host     string            // the host's DNS name (the SRV target), e.g. "vm.local."
	Addr     net.IP            // an IPv4 address of Host
	Port     int               // the service's port
	TXT      map[string]string // TXT attributes; keys in lower case, attributes without "=" map to ""
}

// HostPort returns Addr and Port as "host:port", ready to dial.
func (e Entry) HostPort() string {
	return net.JoinHostPort(e.Addr.String(), strconv.Itoa(e.Port))
}

// Query rounds: Browse queries in rounds of firstRound, then of at most
// maxRound, so that a lost query or answer is repeated. A remainder shorter
// than minRound is added to the round before.
const (
	firstRound = time.Second
	maxRound   = 2 * time.Second
	minRound   = 250 * time.Millisecond
)

// Browse queries for instances of service (e.g. "_understudy._tcp") for
// timeout and returns every instance that answered, deduplicated by instance
// name, sorted by instance name, filtered by match (nil: all). Entries without
// an IPv4 address are skipped.
//
// The query is repeated: the first round lasts a second, later rounds two;
// each round lists the interfaces and opens a fresh socket, in the network
// namespace of the calling thread (see queryRound for how it asks). Browse
// returns after timeout, or when ctx ends (at its deadline, or at once when
// cancelled) with the entries found so far and the context's error.
func Browse(ctx context.Context, service string, timeout time.Duration, match func(Entry) bool, logger *slog.Logger) ([]Entry, error) {
	svc, err := normalizeService(service)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("mdns: browse %s: timeout %v must be positive", svc, timeout)
	}
	end := time.Now().Add(timeout)
	found := map[string]Entry{}
	round := firstRound
	for {
		if err := ctx.Err(); err != nil {
			return sortedEntries(found), fmt.Errorf("mdns: browse %s: %w", svc, err)
		}
		remaining := time.Until(end)
		if remaining <= 0 {
			return sortedEntries(found), nil
		}
		d := min(round, remaining)
		if remaining-d < minRound {
			d = remaining
		}
		if dl, ok := ctx.Deadline(); ok {
			d = min(d, time.Until(dl))
		}
		if d <= 0 {
			<-ctx.Done() // its deadline has passed: reported at the top
			continue
		}
		entries, err := queryRound(ctx, svc, d, logger)
		if err != nil {
			return sortedEntries(found), err
		}
		for _, e := range entries {
			if match == nil || match(e) {
				found[strings.ToLower(e.Instance)] = e
			}
		}
		round = maxRound
	}
}

func sortedEntries(found map[string]Entry) []Entry {
	entries := make([]Entry, 0, len(found))
	for _, e := range found {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Instance < entries[j].Instance })
	return entries
}

// Find browses in rounds of length round (<= 0: one second) until an entry
// matching match (nil: any) is found, and returns the first by instance name.
// It ends with ctx's error when ctx ends first: give ctx a deadline.
func Find(ctx context.Context, service string, round time.Duration, match func(Entry) bool, logger *slog.Logger) (Entry, error) {
	if round <= 0 {
		round = time.Second
	}
	for {
		entries, err := Browse(ctx, service, round, match, logger)
		if len(entries) > 0 {
			return entries[0], nil
		}
		if err != nil {
			return Entry{}, err
		}
	}
}
