package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

// copies is a Replicator that applies every transaction's writes to each
// of its stores, as a consensus log applies them on every member.
type copies struct {
	stores []*Store
	fail   error
	seen   [][]Write
}

func (c *copies) Replicate(writes []Write) error {
	if c.fail != nil {
		return c.fail
	}
	c.seen = append(c.seen, writes)
	for _, s := range c.stores {
		if err := s.ApplyWrites(writes); err != nil {
			return err
		}
	}
	return nil
}

func openTemp(t *testing.T, name string) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), name), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A replicated Update sees the state and its own writes, lands on every
// copy only through the replicator, and lands nowhere when the replicator
// refuses (not the leader, no quorum).
func TestReplicatedUpdate(t *testing.T) {
	leader, follower := openTemp(t, "leader.db"), openTemp(t, "follower.db")
	if err := leader.Put("items", "old", item{"old", 1}); err != nil {
		t.Fatal(err)
	}
	if err := follower.Put("items", "old", item{"old", 1}); err != nil {
		t.Fatal(err)
	}
	rep := &copies{stores: []*Store{leader, follower}}
	leader.Replicate(rep)
	var epoch uint64
	err := leader.Update(func(tx *Tx) error {
		if err := tx.Put("items", "a", item{"alpha", 1}); err != nil {
			return err
		}
		var got item
		if found, err := tx.Get("items", "a", &got); !found || err != nil || got.Name != "alpha" {
			t.Errorf("own write not seen inside the transaction: %v %v %+v", found, err, got)
		}
		if err := tx.Delete("items", "old"); err != nil {
			return err
		}
		var err error
		if _, err = tx.Increment("meta", "epoch"); err != nil {
			return err
		}
		epoch, err = tx.Increment("meta", "epoch")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if epoch != 2 {
		t.Errorf("second increment in one transaction = %d, want 2", epoch)
	}
	if len(rep.seen) != 1 || len(rep.seen[0]) != 4 {
		t.Fatalf("replicated %v, want one transaction of four writes", rep.seen)
	}
	for name, s := range map[string]*Store{"leader": leader, "follower": follower} {
		var a item
		if found, _ := s.Get("items", "a", &a); !found || a.Name != "alpha" {
			t.Errorf("%s: items/a = %+v (found %v)", name, a, found)
		}
		if found, _ := s.Get("items", "old", &a); found {
			t.Errorf("%s: items/old not deleted", name)
		}
		var n uint64
		s.View(func(tx *Tx) error { n = tx.Counter("meta", "epoch"); return nil })
		if n != 2 {
			t.Errorf("%s: epoch %d, want 2", name, n)
		}
	}

	rep.fail = errors.New("not the leader")
	err = leader.Update(func(tx *Tx) error { return tx.Clear("items") })
	if err == nil || !errors.Is(err, rep.fail) {
		t.Fatalf("update with a refusing replicator: %v", err)
	}
	if found, _ := leader.Get("items", "a", new(item)); !found {
		t.Error("a refused transaction changed the leader's own copy")
	}

	// A transaction that fails on its own replicates nothing.
	rep.fail = nil
	before := len(rep.seen)
	boom := errors.New("boom")
	if err := leader.Update(func(tx *Tx) error { tx.Clear("items"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed transaction: %v", err)
	}
	if len(rep.seen) != before {
		t.Error("a failed transaction was replicated")
	}
	if err := leader.Update(func(tx *Tx) error { return tx.Clear("items") }); err != nil {
		t.Fatal(err)
	}
	if found, _ := follower.Get("items", "a", new(item)); found {
		t.Error("clear not replicated")
	}
}

// A snapshot restored into another store replaces its whole state.
func TestSnapshotRestore(t *testing.T) {
	a, b := openTemp(t, "a.db"), openTemp(t, "b.db")
	a.Put("items", "x", item{"x", 1})
	a.Increment("meta", "epoch")
	b.Put("items", "stale", item{"stale", 9})
	b.Put("other", "gone", item{"gone", 9})
	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if found, _ := b.Get("items", "x", new(item)); !found {
		t.Error("restored state lacks items/x")
	}
	if found, _ := b.Get("items", "stale", new(item)); found {
		t.Error("restore kept a key the snapshot does not have")
	}
	if found, _ := b.Get("other", "gone", new(item)); found {
		t.Error("restore kept a bucket the snapshot does not have")
	}
	if err := b.Restore(bytes.NewReader([]byte("not a state file"))); err == nil {
		t.Error("garbage restored")
	}
	if found, _ := b.Get("items", "x", new(item)); !found {
		t.Error("a failed restore changed the state")
	}
}
