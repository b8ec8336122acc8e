package mdns

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	hmdns "github.com/hashicorp/mdns"
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
// each round opens fresh sockets, in the network namespace of the calling
// thread. Browse returns after timeout, or when ctx ends: with a ctx deadline
// at that deadline, after a cancellation at the end of the current round. When
// ctx ends first, Browse returns the entries of the finished rounds with the
// context's error.
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

// queryRound runs one hashicorp/mdns query of length d.
//
// hashicorp/mdns hands out *ServiceEntry values and keeps updating them while
// further answers arrive; QueryContext runs its receive loop on the calling
// goroutine. The entries are therefore only read after QueryContext returned,
// on this goroutine. Its Entries channel send does not block, so a goroutine
// collects the pointers meanwhile.
func queryRound(ctx context.Context, svc string, d time.Duration, logger *slog.Logger) ([]Entry, error) {
	ch := make(chan *hmdns.ServiceEntry, 64)
	var raw []*hmdns.ServiceEntry
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for e := range ch {
			raw = append(raw, e)
		}
	}()
	params := &hmdns.QueryParam{
		Service:     svc,
		Domain:      domain,
		Timeout:     d,
		Entries:     ch,
		DisableIPv6: true, // only IPv4 addresses are used; IPv6 queries would double the traffic
		Logger:      stdLogger(logger),
	}
	err := hmdns.QueryContext(ctx, params)
	close(ch)
	<-collected
	if err != nil {
		return nil, fmt.Errorf("mdns: browse %s: %w", svc, err)
	}
	var entries []Entry
	for _, se := range raw {
		e, ok := toEntry(svc, se)
		if !ok {
			if logger != nil {
				logger.Debug("mdns: ignoring answer", "service", svc, "name", se.Name, "addr", se.AddrV4)
			}
			continue
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// toEntry converts a hashicorp/mdns entry; ok is false for answers about
// other services and for entries without an IPv4 address.
func toEntry(svc string, se *hmdns.ServiceEntry) (Entry, bool) {
	suffix := "." + svc + "." + domain
	name := se.Name
	if len(name) <= len(suffix) || !strings.EqualFold(name[len(name)-len(suffix):], suffix) {
		return Entry{}, false
	}
	instance, err := unescapeLabel(name[:len(name)-len(suffix)])
	if err != nil {
		return Entry{}, false
	}
	addr := se.AddrV4.To4()
	if addr == nil || se.Port <= 0 {
		return Entry{}, false
	}
	return Entry{
		Instance: instance,
		Host:     se.Host,
		Addr:     slices.Clone(addr),
		Port:     se.Port,
		TXT:      decodeTXT(se.InfoFields),
	}, true
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

// stdLogger returns a *log.Logger for hashicorp/mdns that forwards its lines
// to logger at debug level (nil: discards them).
func stdLogger(logger *slog.Logger) *log.Logger {
	if logger == nil {
		return log.New(io.Discard, "", 0)
	}
	return log.New(slogWriter{logger.With("component", "mdns")}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
