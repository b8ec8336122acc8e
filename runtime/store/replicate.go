package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// WriteOp is the kind of a Write.
type WriteOp string

// The changes a transaction makes.
const (
	OpPut    WriteOp = "put"    // Key set to Value
	OpDelete WriteOp = "delete" // Key removed
	OpClear  WriteOp = "clear"  // the whole bucket removed
)

// Write is one change a transaction made to the state: what a replicated
// store sends to the other copies (Replicator), in the order it was made.
type Write struct {
	Op     WriteOp `json:"op"`
	Bucket string  `json:"bucket"`
	Key    string  `json:"key,omitempty"`
	Value  []byte  `json:"value,omitempty"`
}

// Replicator commits a transaction's writes on every copy of the state (a
// consensus log: runtime/consensus) and returns once they are committed
// and applied to this store through ApplyWrites — or an error, and then
// nothing of them is applied here (not the leader, no quorum).
type Replicator interface {
	Replicate(writes []Write) error
}

// Replicate makes every later Update a replicated one: its function runs
// in a transaction of this store that sees the state and its own writes,
// is then rolled back, and its writes go to r, which applies them to every
// copy (this one through ApplyWrites). Updates are serialised meanwhile. A
// nil r makes Updates local again.
func (s *Store) Replicate(r Replicator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replicator = r
}

func (s *Store) replicatorOf() Replicator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicator
}

// errRecorded rolls back the transaction whose writes were recorded.
var errRecorded = errors.New("writes recorded for replication")

// updateReplicated runs fn on the local state, rolls it back and commits
// its writes through r.
func (s *Store) updateReplicated(r Replicator, fn func(*Tx) error) error {
	s.replicating.Lock()
	defer s.replicating.Unlock()
	var writes []Write
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		if fnErr = fn(&Tx{tx: tx, writes: &writes}); fnErr != nil {
			return fnErr
		}
		return errRecorded
	})
	if fnErr != nil {
		return fnErr
	}
	if !errors.Is(err, errRecorded) {
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	if len(writes) == 0 {
		return nil
	}
	if err := r.Replicate(writes); err != nil {
		return fmt.Errorf("replicate %d write(s): %w", len(writes), err)
	}
	return nil
}

// ApplyWrites commits writes (a replicated transaction) to this copy of
// the state in one transaction, as Update commits its own: through
// BeforeCommit, counted by Failing.
func (s *Store) ApplyWrites(writes []Write) error {
	done := s.begin()
	defer done()
	err := s.db.Update(func(btx *bolt.Tx) error {
		tx := &Tx{tx: btx}
		for _, w := range writes {
			if err := tx.apply(w); err != nil {
				return err
			}
		}
		if s.before != nil {
			if err := s.before(); err != nil {
				return fmt.Errorf("state file %s: %w", s.path, err)
			}
		}
		return nil
	})
	s.wrote(err)
	return err
}

// apply makes one change.
func (t *Tx) apply(w Write) error {
	switch w.Op {
	case OpPut:
		b, err := t.bucket(w.Bucket, true)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(w.Key), w.Value); err != nil {
			return fmt.Errorf("state %s/%s: %w", w.Bucket, w.Key, err)
		}
		return nil
	case OpDelete:
		return t.Delete(w.Bucket, w.Key)
	case OpClear:
		return t.Clear(w.Bucket)
	}
	return fmt.Errorf("state %s/%s: unknown write %q", w.Bucket, w.Key, w.Op)
}

// Snapshot writes the whole state, as a consistent bbolt file, to w.
func (s *Store) Snapshot(w io.Writer) error {
	f, err := s.Freeze()
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteTo(w); err != nil {
		return fmt.Errorf("snapshot of %s: %w", s.path, err)
	}
	return nil
}

// Restore replaces the whole state with a Snapshot read from r, in one
// transaction: on an error the state is what it was.
func (s *Store) Restore(r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".restore-*")
	if err != nil {
		return fmt.Errorf("restore %s: %w", s.path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return fmt.Errorf("restore %s: read the snapshot: %w", s.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore %s: %w", s.path, err)
	}
	src, err := bolt.Open(tmp.Name(), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("restore %s: the snapshot is not a state file: %w", s.path, err)
	}
	defer src.Close()
	done := s.begin()
	defer done()
	err = src.View(func(from *bolt.Tx) error {
		return s.db.Update(func(to *bolt.Tx) error {
			var names [][]byte
			if err := to.ForEach(func(name []byte, _ *bolt.Bucket) error {
				names = append(names, append([]byte(nil), name...))
				return nil
			}); err != nil {
				return err
			}
			for _, name := range names {
				if err := to.DeleteBucket(name); err != nil {
					return fmt.Errorf("bucket %s: %w", name, err)
				}
			}
			return from.ForEach(func(name []byte, b *bolt.Bucket) error {
				nb, err := to.CreateBucket(name)
				if err != nil {
					return fmt.Errorf("bucket %s: %w", name, err)
				}
				return b.ForEach(func(k, v []byte) error { return nb.Put(k, v) })
			})
		})
	})
	s.wrote(err)
	if err != nil {
		return fmt.Errorf("restore %s: %w", s.path, err)
	}
	return nil
}

// Empty removes every bucket: the state as a new file has it. The
// replicated state of an elected coordinator's candidate, kept without
// fsync, is emptied at each start and rebuilt from raft's snapshot and log.
func (s *Store) Empty() error {
	done := s.begin()
	defer done()
	err := s.db.Update(func(tx *bolt.Tx) error {
		var names [][]byte
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, append([]byte(nil), name...))
			return nil
		}); err != nil {
			return err
		}
		for _, name := range names {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		return nil
	})
	s.wrote(err)
	if err != nil {
		return fmt.Errorf("empty %s: %w", s.path, err)
	}
	return nil
}

// Frozen is a consistent read of the whole state, held until Close: what a
// snapshot writes while later transactions go on (Store.Freeze).
type Frozen struct{ tx *bolt.Tx }

// Freeze begins a consistent read of the whole state. Close it soon: while
// it is open the file cannot grow its mapping, and a write that needs to
// waits for it.
func (s *Store) Freeze() (*Frozen, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", s.path, err)
	}
	return &Frozen{tx: tx}, nil
}

// WriteTo writes the frozen state, as a bbolt file, to w.
func (f *Frozen) WriteTo(w io.Writer) (int64, error) { return f.tx.WriteTo(w) }

// Close ends the read.
func (f *Frozen) Close() error { return f.tx.Rollback() }
