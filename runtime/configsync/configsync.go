// Package configsync keeps an instance's configuration bundle in step with
// the site. The instance watches its bundle file and reports it (version,
// the version it was derived from, hash, content); a local edit makes a new
// version derived from the last one the site knew. When the coordinator sends
// a newer version, the instance writes it into place and adopts its version,
// so a member that returns with an older configuration receives the newer one
// instead of overwriting it, whatever the start order.
package configsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/store"
)

const bucket = "configsync"

// Options configure a Sync.
type Options struct {
	Self     string
	Bundle   string
	File     string
	Store    *store.Store
	Publish  func(payload []byte) // retained, on the member's config topic
	Interval time.Duration        // how often the file is checked (default 1s)
	Logger   *slog.Logger
}

// known is the version of the content this instance last agreed with the site.
type known struct {
	Version uint64 `json:"version"`
	Hash    string `json:"hash"`
}

// Sync watches one bundle file.
type Sync struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	expect   map[string]uint64 // hash → version being written by the coordinator's command
	last     []byte            // last report published
	lastHash string
	missing  bool
}

// New returns a Sync; Run starts it.
func New(opts Options) *Sync {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sync{opts: opts, log: opts.Logger, expect: map[string]uint64{}}
}

// Hash is how bundles are compared.
func Hash(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// Run checks the file every interval until ctx ends.
func (s *Sync) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		if err := s.Check(); err != nil {
			s.log.Warn("configuration bundle not reported", "file", s.opts.File, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check reads the file once and publishes a report when it changed.
func (s *Sync) Check() error {
	_, err := s.check()
	return err
}

// check is Check, and says whether it published a report.
func (s *Sync) check() (reported bool, err error) {
	content, err := os.ReadFile(s.opts.File)
	if errors.Is(err, fs.ErrNotExist) {
		s.mu.Lock()
		first := !s.missing
		s.missing = true
		s.mu.Unlock()
		if first {
			s.log.Warn("configuration bundle file does not exist (yet)", "file", s.opts.File)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", s.opts.File, err)
	}
	if len(content) > bus.MaxConfigContent {
		return false, fmt.Errorf("%s is %d bytes; bundles on the bus are limited to %d", s.opts.File, len(content), bus.MaxConfigContent)
	}
	hash := Hash(content)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.missing = false
	if hash == s.lastHash && s.last != nil {
		return false, nil
	}
	var k known
	found, err := s.opts.Store.Get(bucket, s.opts.Bundle, &k)
	if err != nil {
		return false, err
	}
	report := bus.ConfigReport{Member: s.opts.Self, Bundle: s.opts.Bundle, Hash: hash, Content: string(content)}
	switch v, expected := s.expect[hash]; {
	case expected:
		// The coordinator's newer version, written into place by our agent.
		k = known{Version: v, Hash: hash}
		delete(s.expect, hash)
	case !found:
		k = known{Version: 1, Hash: hash}
	case k.Hash != hash:
		s.log.Info("configuration bundle changed here", "file", s.opts.File, "from_version", k.Version, "version", k.Version+1)
		report.Base = k.Version
		k = known{Version: k.Version + 1, Hash: hash}
	}
	report.Version = k.Version
	if report.Base == 0 {
		report.Base = k.Version
	}
	if err := s.opts.Store.Put(bucket, s.opts.Bundle, k); err != nil {
		return false, err
	}
	payload, err := json.Marshal(report)
	if err != nil {
		return false, err
	}
	s.last, s.lastHash = payload, hash
	s.opts.Publish(payload)
	return true, nil
}

// Republish sends the last report again (after a reconnect).
func (s *Sync) Republish() {
	s.mu.Lock()
	p := s.last
	s.mu.Unlock()
	if p != nil {
		s.opts.Publish(p)
	}
}

// Accept decides whether the coordinator's version may be written into the
// file, and if so expects it there (when the file shows that content, it is
// that version, not a local edit). The file is checked first: an edit made
// here that the coordinator has not heard of yet is reported instead and the
// version sent is refused, so it never overwrites the edit; the coordinator
// then decides again, knowing both.
func (s *Sync) Accept(version uint64, content string) error {
	reported, err := s.check()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if reported {
		return fmt.Errorf("configuration %s was changed here since it was last reported: reported it now instead of writing version %d over it; the coordinator decides which is newest", s.opts.Bundle, version)
	}
	s.expect[Hash([]byte(content))] = version
	return nil
}

// Done ends an Expect: on success the file is checked at once; on failure
// the expectation is dropped.
func (s *Sync) Done(content string, err error) {
	if err != nil {
		s.mu.Lock()
		delete(s.expect, Hash([]byte(content)))
		s.mu.Unlock()
		return
	}
	if cerr := s.Check(); cerr != nil {
		s.log.Warn("configuration bundle not reported", "file", s.opts.File, "error", cerr)
	}
}
