package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type item struct {
	Name  string
	Count int
}

func TestValuesSurviveReopening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("items", "a", item{"alpha", 1}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Increment("meta", "epoch"); err != nil || n != 1 {
		t.Fatalf("first epoch = %d, %v", n, err)
	}
	s.Close()

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got item
	found, err := s.Get("items", "a", &got)
	if err != nil || !found || got != (item{"alpha", 1}) {
		t.Fatalf("after reopen: %+v found=%v err=%v", got, found, err)
	}
	if n, _ := s.Increment("meta", "epoch"); n != 2 {
		t.Fatalf("epoch after reopen = %d, want 2", n)
	}
}

func TestAFailedTransactionWritesNothing(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Update(func(tx *Tx) error {
		if err := tx.Put("items", "a", item{"alpha", 1}); err != nil {
			return err
		}
		return tx.Put("items", "b", func() {}) // cannot be JSON
	})
	if err == nil || !strings.Contains(err.Error(), "items/b") {
		t.Fatalf("error = %v, want one naming items/b", err)
	}
	if found, _ := s.Get("items", "a", &item{}); found {
		t.Fatal("a was written although its transaction failed")
	}
}

func TestEachLoadDeleteAndClear(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, k := range []string{"c", "a", "b"} {
		if err := s.Put("items", k, item{k, i}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	s.View(func(tx *Tx) error {
		return tx.Each("items", func(k string, _ []byte) error { keys = append(keys, k); return nil })
	})
	if strings.Join(keys, ",") != "a,b,c" {
		t.Fatalf("keys in order = %v", keys)
	}
	if err := s.Delete("items", "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("items", "missing"); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	all, err := Load[item](s, "items")
	if err != nil || len(all) != 2 || all["c"].Count != 0 || all["a"].Count != 1 {
		t.Fatalf("Load = %v, %v", all, err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.Clear("items") }); err != nil {
		t.Fatal(err)
	}
	if all, _ := Load[item](s, "items"); len(all) != 0 {
		t.Fatalf("after Clear: %v", all)
	}
	if all, err := Load[item](s, "never-written"); err != nil || len(all) != 0 {
		t.Fatalf("missing bucket: %v, %v", all, err)
	}
}

func TestASecondOpenIsRefusedClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want 'in use'", err)
	}
}

func TestAnUnreadableValueIsAnError(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Put("items", "a", "just a string")
	var it item
	if _, err := s.Get("items", "a", &it); err == nil || !strings.Contains(err.Error(), "items/a") {
		t.Fatalf("error = %v", err)
	}
}

// A commit that does not finish (BeforeCommit holds it, as a stalled fsync
// does) is reported by Writing with when it began; reads go on meanwhile,
// and the write lands once the commit goes through.
func TestWritingReportsACommitThatDoesNotFinish(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{BeforeCommit: func() error {
		select {
		case held <- struct{}{}:
		default:
		}
		<-release
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Writing(); ok {
		t.Fatal("a write under way before any")
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.Put("items", "a", item{"alpha", 1}) }()
	<-held
	since, ok := s.Writing()
	if !ok || since.Before(start) {
		t.Fatalf("Writing while a commit is held: %v, %v", since, ok)
	}
	var got item
	if found, err := s.Get("items", "a", &got); err != nil || found {
		t.Fatalf("the held write is visible (found %v, %v)", found, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Writing(); ok {
		t.Error("a write under way after it finished")
	}
	if found, err := s.Get("items", "a", &got); err != nil || !found {
		t.Fatalf("the write did not land (found %v, %v)", found, err)
	}
}
