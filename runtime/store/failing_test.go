package store

import (
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// A write that cannot reach the file (BeforeCommit fails it as a full disk
// would) is reported by Failing, with since when, until a write succeeds;
// a transaction that fails on its own is not a write failure.
func TestFailingWrites(t *testing.T) {
	var full atomic.Bool
	errFull := errors.New("no space left on device")
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{BeforeCommit: func() error {
		if full.Load() {
			return errFull
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put("items", "a", item{"alpha", 1}); err != nil || s.Failing() != nil {
		t.Fatalf("put: %v, failing %+v", err, s.Failing())
	}
	if err := s.Update(func(*Tx) error { return errors.New("the caller's own") }); err == nil || s.Failing() != nil {
		t.Fatalf("a transaction failing on its own: %v, failing %+v", err, s.Failing())
	}
	full.Store(true)
	if err := s.Put("items", "b", item{"beta", 2}); !errors.Is(err, errFull) {
		t.Fatalf("put on a full disk: %v", err)
	}
	f := s.Failing()
	if f == nil || !errors.Is(f.Err, errFull) || !strings.Contains(f.Err.Error(), s.Path()) || f.Since.IsZero() {
		t.Fatalf("failing = %+v", f)
	}
	if err := s.Put("items", "c", item{"gamma", 3}); err == nil {
		t.Fatal("a second put on a full disk succeeded")
	}
	if again := s.Failing(); again == nil || !again.Since.Equal(f.Since) || !again.Last.After(f.Last) {
		t.Fatalf("a second failure moved since: %+v, first %+v", again, f)
	}
	if found, _ := s.Get("items", "b", &item{}); found {
		t.Fatal("a failed write landed")
	}
	// Room again: writes succeed, and count as failing until 30 s after
	// the last failure (small writes land in free pages of a full disk).
	full.Store(false)
	if err := s.Put("items", "b", item{"beta", 2}); err != nil || s.Failing() == nil {
		t.Fatalf("put with room: %v, failing %+v", err, s.Failing())
	}
	s.mu.Lock()
	s.lastFail = s.lastFail.Add(-failingHold)
	s.mu.Unlock()
	if s.Failing() != nil {
		t.Fatalf("failing %+v 30 s after the last failure, the last write fine", s.Failing())
	}
	if err := s.Put("items", "d", item{"delta", 4}); err != nil || s.Failing() != nil {
		t.Fatalf("put after the run: %v, failing %+v", err, s.Failing())
	}
}
