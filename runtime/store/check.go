package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Recovery says that the state file was unusable when it was opened and was
// moved aside: the store started empty.
type Recovery struct {
	Reason  string    // what was wrong with it, in words
	MovedTo string    // where the unusable file is now
	At      time.Time // when it was moved
}

// Message is the loud line an instance logs and shows for a recovery.
func (r Recovery) Message(path string) string {
	return fmt.Sprintf("state file %s was corrupt (%s), moved to %s; starting with an empty state: who covered whom, pending actions, timers and the inbox it held are forgotten, check the site", path, r.Reason, r.MovedTo)
}

// errCorrupt marks what makes a state file unusable (as opposed to one that
// cannot be opened now: in use, no permission).
type errCorrupt struct{ reason string }

func (e errCorrupt) Error() string { return e.reason }

// bbolt's on-disk layout (go.etcd.io/bbolt internal/common): a page header
// of 16 bytes (id, flags, count, overflow), then on the two meta pages the
// meta: magic, version, page size, flags, root bucket (root, sequence),
// freelist, pgid (the high-water mark: pages in use), txid and an FNV-64a
// checksum of everything before it.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	metaSize       = 64
	metaSumOffset  = 56
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// readMeta decodes the meta page found at b (page header first); a page that
// is not a valid meta is an error saying why.
func readMeta(b []byte) (boltMeta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}, errors.New("too short for a meta page")
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.NativeEndian
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("no bbolt magic number")
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("bbolt version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumOffset])
	if h.Sum64() != le.Uint64(m[metaSumOffset:]) {
		return boltMeta{}, errors.New("meta checksum does not match")
	}
	meta := boltMeta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if meta.pageSize < 512 || meta.pageSize > 1<<20 || meta.pageSize&(meta.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("page size %d", meta.pageSize)
	}
	if meta.pgid < 4 || meta.root < 2 || meta.root >= meta.pgid || (meta.freelist >= meta.pgid && meta.freelist != ^uint64(0)) {
		return boltMeta{}, fmt.Errorf("page numbers out of range (root %d, freelist %d, %d pages)", meta.root, meta.freelist, meta.pgid)
	}
	return meta, nil
}

// checkFile looks at an existing state file before bbolt maps it: bbolt
// trusts its file, so a truncated one kills the process with SIGBUS and
// garbage makes it panic. It returns errCorrupt for a file that is empty,
// has no valid meta page, or is shorter than its meta says.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return errCorrupt{"empty: zero bytes"}
	}
	head := make([]byte, pageHeaderSize+metaSize)
	if _, err := f.ReadAt(head, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return errCorrupt{fmt.Sprintf("truncated to %d bytes, shorter than a meta page", size)}
		}
		return fmt.Errorf("state file %s: %w", path, err)
	}
	best, err0 := readMeta(head)
	// The second meta page is one page further on; its size comes from the
	// first, or bbolt's default if the first is unreadable.
	pageSize := int64(os.Getpagesize())
	if err0 == nil {
		pageSize = int64(best.pageSize)
	}
	second := make([]byte, pageHeaderSize+metaSize)
	var err1 error
	if _, rerr := f.ReadAt(second, pageSize); rerr != nil {
		err1 = fmt.Errorf("second meta page unreadable (%d bytes)", size)
	} else {
		var m1 boltMeta
		if m1, err1 = readMeta(second); err1 == nil && (err0 != nil || m1.txid > best.txid) {
			best = m1
		}
	}
	if err0 != nil && err1 != nil {
		return errCorrupt{fmt.Sprintf("no valid meta page: %v; %v", err0, err1)}
	}
	if need := int64(best.pgid) * int64(best.pageSize); size < need {
		return errCorrupt{fmt.Sprintf("truncated: %d bytes, its meta page says %d", size, need)}
	}
	return nil
}

// verify runs bbolt's own consistency check over the whole file (every
// page reachable, no page twice, keys in order), recovering from the panics
// bbolt raises on pages it cannot read.
func verify(db *bolt.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errCorrupt{fmt.Sprintf("bbolt: %v", r)}
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		var problems []string
		for e := range tx.Check() {
			if len(problems) < 3 {
				problems = append(problems, e.Error())
			}
		}
		if len(problems) > 0 {
			return errCorrupt{fmt.Sprintf("bbolt check: %v", problems)}
		}
		return nil
	})
}

// openBolt opens path with bbolt, turning its panics and its errors about
// the file's content into errCorrupt.
func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, errCorrupt{fmt.Sprintf("bbolt: %v", r)}
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: opts.NoSync})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("state file %s is in use by another process (is this member already running?)", path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, errCorrupt{fmt.Sprintf("bbolt: %v", err)}
	}
	return nil, fmt.Errorf("state file %s: %w", path, err)
}
