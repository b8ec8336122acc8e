// Package store is an instance's state on disk: a bbolt file of JSON values in
// named buckets, written in atomic transactions. The coordinator keeps its
// epoch, actions, coverage, queue, proposals and named timers here before it
// acts, so a restart neither repeats an acknowledged action nor forgets a
// pending one; an agent keeps the commands it has received, to drop
// duplicates and stale epochs.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Options tune how the store writes.
type Options struct {
	// NoSync skips fsync on commit: for simulations and benchmarks, where
	// nothing must survive a crash, and for a copy that is rebuilt from
	// elsewhere at each start (an elected coordinator's replicated state:
	// consensus.Config.Volatile).
	NoSync bool
	// BeforeCommit, when set, is called in every read-write transaction
	// whose function succeeded, just before bbolt commits it (and syncs);
	// an error fails the write as a full disk does (the transaction is
	// rolled back). The fault suite's test hook (runtime/faulthook) waits
	// there while it stalls commits, as a disk whose fsync stalls holds the
	// commit; tests fail writes there.
	BeforeCommit func() error
}

// Store is an open state file. Its methods are safe for concurrent use.
type Store struct {
	db        *bolt.DB
	path      string
	recovered *Recovery
	before    func() error

	// replicator, when set, commits every Update's writes on every copy
	// of the state (Replicate); replicating serialises those Updates.
	replicator  Replicator
	replicating sync.Mutex

	mu       sync.Mutex
	writeErr error                // the last failure of a write to reach the file
	failing  time.Time            // when the run of failures began
	lastFail time.Time            // when the last write failed
	lastOK   bool                 // the last write reached the file
	writing  map[uint64]time.Time // the writes under way (Update) and when each began
	nextW    uint64
}

// failingHold is how long writes count as failing after the last failure,
// though some succeeded since: on a full disk small writes often land in
// the file's free pages while bigger ones fail.
const failingHold = 30 * time.Second

// WriteFailure is a run of writes to the state file that failed: the file
// system full, a failing disk.
type WriteFailure struct {
	Err   error     // the last failure
	Since time.Time // when the first of the run failed
	Last  time.Time // when the last failed
}

// Failing reports whether writes to the file fail: the last one failed, or
// one did less than 30 s ago (nil when neither). A transaction that failed
// on its own (its function returned an error) is not counted.
func (s *Store) Failing() *WriteFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr == nil || s.lastOK && time.Since(s.lastFail) >= failingHold {
		return nil
	}
	return &WriteFailure{Err: s.writeErr, Since: s.failing, Last: s.lastFail}
}

// wrote notes the outcome of a write that reached the commit.
func (s *Store) wrote(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.lastOK = err == nil
	switch {
	case err == nil:
		if s.writeErr != nil && now.Sub(s.lastFail) >= failingHold {
			s.writeErr = nil // the run is over
		}
		return
	case s.writeErr == nil:
		s.failing = now
	}
	s.writeErr, s.lastFail = err, now
}

// Open opens (or creates) the state file at path, creating its directory.
// A file held by another running instance is an error, not a wait. A file
// that is corrupt (bbolt cannot read it, or its own check finds broken
// pages), truncated or empty is moved aside to path.corrupt-TIME and the
// store starts empty: Recovered says so, and the caller must say it loudly.
// An instance never crash-loops on its state file.
func Open(path string, opts Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	db, err := openChecked(path, opts)
	var bad errCorrupt
	if !errors.As(err, &bad) {
		if err != nil {
			return nil, err
		}
		return &Store{db: db, path: path, before: opts.BeforeCommit}, nil
	}
	now := time.Now()
	moved := path + ".corrupt-" + now.UTC().Format("20060102T150405.000Z")
	if err := os.Rename(path, moved); err != nil {
		return nil, fmt.Errorf("state file %s is corrupt (%s) and could not be moved aside: %w", path, bad.reason, err)
	}
	if db, err = openBolt(path, opts); err != nil {
		return nil, fmt.Errorf("fresh state file after moving a corrupt one aside: %w", err)
	}
	return &Store{db: db, path: path, before: opts.BeforeCommit, recovered: &Recovery{Reason: bad.reason, MovedTo: moved, At: now}}, nil
}

// openChecked opens an existing state file only once it has passed
// checkFile and bbolt's own check (errCorrupt otherwise), a new one as
// bbolt makes it.
func openChecked(path string, opts Options) (*bolt.DB, error) {
	if _, err := os.Stat(path); err == nil {
		if err := checkFile(path); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	if err := verify(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Recovered reports whether Open found the file unusable and moved it
// aside (nil: it did not).
func (s *Store) Recovered() *Recovery { return s.recovered }

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Update runs fn in a read-write transaction: all its writes land together, or
// none do if fn returns an error or the file cannot be written (then
// Failing says so until a write succeeds again).
func (s *Store) Update(fn func(*Tx) error) error {
	if r := s.replicatorOf(); r != nil {
		return s.updateReplicated(r, fn)
	}
	done := s.begin()
	defer done()
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		if fnErr = fn(&Tx{tx: tx}); fnErr != nil {
			return fnErr
		}
		if s.before != nil {
			if err := s.before(); err != nil {
				return fmt.Errorf("state file %s: %w", s.path, err)
			}
		}
		return nil
	})
	if fnErr == nil {
		s.wrote(err)
	}
	return err
}

// begin notes a write under way until the returned function is called.
func (s *Store) begin() func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writing == nil {
		s.writing = map[uint64]time.Time{}
	}
	s.nextW++
	id := s.nextW
	s.writing[id] = time.Now()
	return func() {
		s.mu.Lock()
		delete(s.writing, id)
		s.mu.Unlock()
	}
}

// Writing reports the oldest write under way (Update, from waiting for
// the file to its commit and sync) and when it began: a write that lasts
// seconds is a disk that does not finish writing, and whoever waits for it
// (the instance's loop) waits with it. ok is false when none is under way.
func (s *Store) Writing() (since time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.writing {
		if !ok || t.Before(since) {
			since, ok = t, true
		}
	}
	return since, ok
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Put stores v (as JSON) under bucket/key in a transaction of its own.
func (s *Store) Put(bucket, key string, v any) error {
	return s.Update(func(tx *Tx) error { return tx.Put(bucket, key, v) })
}

// Get reads bucket/key into v; found is false when there is no such key.
func (s *Store) Get(bucket, key string, v any) (found bool, err error) {
	err = s.View(func(tx *Tx) error {
		found, err = tx.Get(bucket, key, v)
		return err
	})
	return found, err
}

// Delete removes bucket/key.
func (s *Store) Delete(bucket, key string) error {
	return s.Update(func(tx *Tx) error { return tx.Delete(bucket, key) })
}

// Increment adds one to the counter bucket/key and returns the new value.
func (s *Store) Increment(bucket, key string) (n uint64, err error) {
	err = s.Update(func(tx *Tx) error {
		n, err = tx.Increment(bucket, key)
		return err
	})
	return n, err
}

// Tx is a transaction.
type Tx struct {
	tx *bolt.Tx
	// writes, when not nil, records every change (a replicated store's
	// Update: Write).
	writes *[]Write
}

// record notes a change of the transaction.
func (t *Tx) record(w Write) {
	if t.writes != nil {
		*t.writes = append(*t.writes, w)
	}
}

func (t *Tx) bucket(name string, create bool) (*bolt.Bucket, error) {
	if b := t.tx.Bucket([]byte(name)); b != nil || !create {
		return b, nil
	}
	b, err := t.tx.CreateBucket([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", name, err)
	}
	return b, nil
}

// Put stores v as JSON under bucket/key.
func (t *Tx) Put(bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state %s/%s: %w", bucket, key, err)
	}
	b, err := t.bucket(bucket, true)
	if err != nil {
		return err
	}
	if err := b.Put([]byte(key), data); err != nil {
		return fmt.Errorf("state %s/%s: %w", bucket, key, err)
	}
	t.record(Write{Op: OpPut, Bucket: bucket, Key: key, Value: data})
	return nil
}

// PutRaw stores value as it is under bucket/key (a copy of another store's
// value, as Each gives it).
func (t *Tx) PutRaw(bucket, key string, value []byte) error {
	w := Write{Op: OpPut, Bucket: bucket, Key: key, Value: value}
	if err := t.apply(w); err != nil {
		return err
	}
	t.record(w)
	return nil
}

// GetRaw returns a copy of bucket/key's value as it is stored, nil when
// there is none.
func (t *Tx) GetRaw(bucket, key string) []byte {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return nil
	}
	if v := b.Get([]byte(key)); v != nil {
		return append([]byte(nil), v...)
	}
	return nil
}

// Buckets lists the store's buckets in name order.
func (t *Tx) Buckets() []string {
	var out []string
	t.tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		out = append(out, string(name))
		return nil
	})
	return out
}

// Get reads bucket/key into v.
func (t *Tx) Get(bucket, key string, v any) (bool, error) {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return false, nil
	}
	data := b.Get([]byte(key))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("state %s/%s is unreadable: %w", bucket, key, err)
	}
	return true, nil
}

// Delete removes bucket/key; a missing key is not an error.
func (t *Tx) Delete(bucket, key string) error {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(key)); err != nil {
		return fmt.Errorf("state %s/%s: %w", bucket, key, err)
	}
	t.record(Write{Op: OpDelete, Bucket: bucket, Key: key})
	return nil
}

// Each calls fn for every key of bucket in key order with its JSON value.
// fn must not modify the bucket.
func (t *Tx) Each(bucket string, fn func(key string, value []byte) error) error {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// Clear removes every key of bucket.
func (t *Tx) Clear(bucket string) error {
	if t.tx.Bucket([]byte(bucket)) == nil {
		return nil
	}
	if err := t.tx.DeleteBucket([]byte(bucket)); err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	t.record(Write{Op: OpClear, Bucket: bucket})
	return nil
}

// Increment adds one to the counter bucket/key and returns the new value.
func (t *Tx) Increment(bucket, key string) (uint64, error) {
	b, err := t.bucket(bucket, true)
	if err != nil {
		return 0, err
	}
	var n uint64
	if v := b.Get([]byte(key)); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	n++
	value := binary.BigEndian.AppendUint64(nil, n)
	if err := b.Put([]byte(key), value); err != nil {
		return 0, fmt.Errorf("counter %s/%s: %w", bucket, key, err)
	}
	t.record(Write{Op: OpPut, Bucket: bucket, Key: key, Value: value})
	return n, nil
}

// Load reads every value of bucket into a map keyed by key.
func Load[T any](s *Store, bucket string) (map[string]T, error) {
	out := map[string]T{}
	err := s.View(func(tx *Tx) error {
		return tx.Each(bucket, func(key string, value []byte) error {
			var v T
			if err := json.Unmarshal(value, &v); err != nil {
				return fmt.Errorf("state %s/%s is unreadable: %w", bucket, key, err)
			}
			out[key] = v
			return nil
		})
	})
	return out, err
}

// SetCounter sets the counter bucket/key to n.
func (t *Tx) SetCounter(bucket, key string, n uint64) error {
	b, err := t.bucket(bucket, true)
	if err != nil {
		return err
	}
	value := binary.BigEndian.AppendUint64(nil, n)
	if err := b.Put([]byte(key), value); err != nil {
		return fmt.Errorf("counter %s/%s: %w", bucket, key, err)
	}
	t.record(Write{Op: OpPut, Bucket: bucket, Key: key, Value: value})
	return nil
}

// Counter reads the counter bucket/key (0 if unset).
func (t *Tx) Counter(bucket, key string) uint64 {
	b, _ := t.bucket(bucket, false)
	if b == nil {
		return 0
	}
	if v := b.Get([]byte(key)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
