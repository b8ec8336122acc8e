package materialcopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
)

// FileInfo describes one file of a Source.
type FileInfo struct {
	// Path is relative to the source's root, with forward slashes.
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	// Mode is the file's permission bits (0 when the source does not say:
	// a server of an earlier version). Copy never gives a copy more.
	Mode fs.FileMode `json:"mode,omitempty"`
}

// DirInfo is a folder under a source's root, for its permission bits: the
// folders Copy creates get no more than the source's.
type DirInfo struct {
	Path string      `json:"path"` // relative to the root, with forward slashes
	Mode fs.FileMode `json:"mode"`
}

// dirLister is a Source that lists its folders with its files (Local and
// Remote do).
type dirLister interface {
	listAll(ctx context.Context, since, until time.Time) ([]FileInfo, []DirInfo, error)
}

// Source is a folder of material that Copy reads from: Local for a folder on
// this machine, Remote for another instance's NewServer.
//
// Paths are relative to the source's root with forward slashes, as List
// returns them. A file that does not exist gives an error matching
// fs.ErrNotExist; a path outside the root one matching ErrOutsideRoot.
type Source interface {
	// List returns the regular files under the root, sorted by path, that
	// were modified within [since, until]; a zero since or until leaves that
	// side of the window open. Copy's temporary files and symlinks are not
	// listed.
	List(ctx context.Context, since, until time.Time) ([]FileInfo, error)
	// Stat describes one file as it is now.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// Open returns the file's content from offset to its end.
	Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error)
	// Hash returns the xxh3-64 hash, as 16 lower-case hex digits, of the
	// file's first length bytes, or of the whole file when length < 0. A file
	// shorter than length gives an error matching ErrChanged.
	Hash(ctx context.Context, path string, length int64) (string, error)
}

// Errors a Source returns.
var (
	// ErrOutsideRoot refuses a path that is absolute, has a ".." element or
	// resolves (through symlinks) to somewhere outside the source's root.
	ErrOutsideRoot = errors.New("path outside the root")
	// ErrChanged reports a source file that no longer matches its listing
	// (for example, it is shorter than the length asked for).
	ErrChanged = errors.New("file changed at the source")
)

// TempSuffix ends the name of the temporary file Copy writes a target to:
// "dir/.NAME" + TempSuffix. Sources never list such files.
const TempSuffix = ".understudy-partial"

func isTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, TempSuffix)
}

// Local is a Source reading the folder root on this machine.
func Local(root string) Source { return &local{root: root} }

// Within is Local(filepath.Join(base, sub)) confined to base: sub must be a
// relative path without ".." elements, and the folder must be reached from
// base without symlinks (base itself may be one), so that it cannot lead
// above or beside sub — say, to another member's folder. Within checks sub
// at once and the symlinks at every use: a folder swapped for a symlink
// later is refused then.
func Within(base, sub string) (Source, error) {
	l, err := within(base, sub)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func within(base, sub string) (*local, error) {
	if !filepath.IsAbs(base) {
		return nil, fmt.Errorf("materialcopy: folder %q is not an absolute path", base)
	}
	if sub == "" {
		return &local{root: filepath.Clean(base), base: filepath.Clean(base)}, nil
	}
	c, err := cleanRel(sub)
	if err != nil {
		return nil, fmt.Errorf("materialcopy: subfolder of %s: %w", base, err)
	}
	return &local{root: filepath.Join(base, filepath.FromSlash(c)), base: filepath.Clean(base), sub: c}, nil
}

type local struct {
	root string
	// base, when set, is the folder root must stay in: root is base/sub,
	// reached without symlinks.
	base, sub string
}

func (l *local) String() string { return l.root }

// realRoot is the root with its symlinks resolved. A confined root must
// resolve to its base's real path joined with sub.
func (l *local) realRoot() (string, error) {
	r, err := filepath.EvalSymlinks(l.root)
	if err != nil {
		return "", fmt.Errorf("source root: %w", err)
	}
	if l.base == "" {
		return r, nil
	}
	b, err := filepath.EvalSymlinks(l.base)
	if err != nil {
		return "", fmt.Errorf("source root: %w", err)
	}
	if want := filepath.Join(b, filepath.FromSlash(l.sub)); r != want {
		return "", fmt.Errorf("source root %s: %w: it leads to %s through a symlink, not to %s", l.root, ErrOutsideRoot, r, want)
	}
	return r, nil
}

// cleanRel checks a relative path given by a caller: not empty, not
// absolute, no ".." element, no NUL. It returns it cleaned, with slashes.
func cleanRel(rel string) (string, error) {
	if rel == "" || strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("%q: %w: empty or invalid path", rel, ErrOutsideRoot)
	}
	if path.IsAbs(rel) || filepath.IsAbs(rel) || filepath.VolumeName(rel) != "" {
		return "", fmt.Errorf("%q: %w: absolute paths are refused", rel, ErrOutsideRoot)
	}
	for _, el := range strings.FieldsFunc(rel, func(r rune) bool { return r == '/' || r == filepath.Separator }) {
		if el == ".." {
			return "", fmt.Errorf("%q: %w: \"..\" is refused", rel, ErrOutsideRoot)
		}
	}
	c := path.Clean(filepath.ToSlash(rel))
	if c == "." {
		return "", fmt.Errorf("%q: %w: not a file", rel, ErrOutsideRoot)
	}
	return c, nil
}

// resolve confines c (cleaned by cleanRel) to root (resolved by realRoot):
// it resolves symlinks and checks that the result is still inside root. It
// returns the resolved path relative to root.
func resolve(root, c string) (inside string, err error) {
	real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(c)))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s: %w", c, err)
	}
	if !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", fmt.Errorf("%s: %w: it resolves outside the root", c, ErrOutsideRoot)
	}
	return real[len(root)+1:], nil
}

// open opens a regular file inside the root, always through os.Root, which
// refuses symlinks escaping the root (also one swapped in meanwhile).
//
// A path os.Root opens as a regular file is inside the root, and that is
// the common case, so it is tried first. Anything else takes the slower way
// that explains the refusal: symlinks are resolved with EvalSymlinks and the
// result checked against the root, then the resolved path is opened through
// os.Root (which also lets in an absolute symlink to a file inside the
// root, that os.Root alone refuses).
func (l *local) open(rel string) (*os.File, fs.FileInfo, error) {
	c, err := cleanRel(rel)
	if err != nil {
		return nil, nil, err
	}
	root, err := l.realRoot()
	if err != nil {
		return nil, nil, err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, nil, fmt.Errorf("source root: %w", err)
	}
	defer r.Close()
	if f, err := r.Open(filepath.FromSlash(c)); err == nil {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			return f, st, nil
		}
		f.Close()
	}

	inside, err := resolve(root, c)
	if err != nil {
		return nil, nil, err
	}
	f, err := r.Open(inside)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, nil, fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
		case errors.Is(err, fs.ErrPermission):
			return nil, nil, err
		}
		// os.Root refused it: a symlink escaping the root.
		return nil, nil, fmt.Errorf("%s: %w: %v", rel, ErrOutsideRoot, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: not a regular file: %w", rel, fs.ErrNotExist)
	}
	return f, st, nil
}

func inWindow(mt, since, until time.Time) bool {
	return (since.IsZero() || !mt.Before(since)) && (until.IsZero() || !mt.After(until))
}

func (l *local) List(ctx context.Context, since, until time.Time) ([]FileInfo, error) {
	files, _, err := l.listAll(ctx, since, until)
	return files, err
}

func (l *local) listAll(ctx context.Context, since, until time.Time) ([]FileInfo, []DirInfo, error) {
	root, err := l.realRoot()
	if err != nil {
		return nil, nil, err
	}
	var out []FileInfo
	var dirs []DirInfo
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if (!d.Type().IsRegular() && !d.IsDir()) || isTempName(d.Name()) || p == root {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking
		} else if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, DirInfo{Path: filepath.ToSlash(rel), Mode: info.Mode().Perm()})
			return nil
		}
		if !inWindow(info.ModTime(), since, until) {
			return nil
		}
		out = append(out, FileInfo{Path: filepath.ToSlash(rel), Size: info.Size(), ModTime: info.ModTime(), Mode: info.Mode().Perm()})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing %s: %w", l.root, err)
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return strings.Compare(a.Path, b.Path) })
	return out, dirs, nil
}

func (l *local) Stat(_ context.Context, rel string) (FileInfo, error) {
	f, st, err := l.open(rel)
	if err != nil {
		return FileInfo{}, err
	}
	f.Close()
	return FileInfo{Path: path.Clean(filepath.ToSlash(rel)), Size: st.Size(), ModTime: st.ModTime(), Mode: st.Mode().Perm()}, nil
}

func (l *local) Open(_ context.Context, rel string, offset int64) (io.ReadCloser, error) {
	f, _, err := l.open(rel)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func (l *local) Hash(ctx context.Context, rel string, length int64) (string, error) {
	f, _, err := l.open(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum, err := hashReader(ctx, f, length)
	if err != nil {
		return "", fmt.Errorf("%s: %w", rel, err)
	}
	return sum, nil
}

// hashFile hashes the first length bytes of a local file (all if length < 0).
func hashFile(ctx context.Context, name string, length int64) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return hashReader(ctx, f, length)
}

const bufSize = 256 << 10

// hashBufs holds the buffers of hashReader and of the copy's workers: a
// copy hashes or copies thousands of files, and a fresh 256 KiB buffer for
// each would be allocated and cleared as many times.
var hashBufs = sync.Pool{New: func() any { return new([bufSize]byte) }}

// hashReader hashes the first length bytes of r (all if length < 0),
// checking ctx between blocks.
func hashReader(ctx context.Context, r io.Reader, length int64) (string, error) {
	h := xxh3.New()
	pooled := hashBufs.Get().(*[bufSize]byte)
	defer hashBufs.Put(pooled)
	if err := hashInto(ctx, h, r, length, pooled[:]); err != nil {
		return "", err
	}
	return hexSum(h.Sum64()), nil
}

// hashInto writes the first length bytes of r (all if length < 0) into h,
// reading through buf and checking ctx between blocks. An r shorter than
// length gives an error matching ErrChanged.
func hashInto(ctx context.Context, h *xxh3.Hasher, r io.Reader, length int64, buf []byte) error {
	var n int64
	for length < 0 || n < length {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf
		if length >= 0 && length-n < int64(len(b)) {
			b = b[:length-n]
		}
		m, err := r.Read(b)
		h.Write(b[:m])
		n += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if length >= 0 && n < length {
		return fmt.Errorf("%w: shorter than %d bytes (%d)", ErrChanged, length, n)
	}
	return nil
}

func hexSum(s uint64) string { return fmt.Sprintf("%016x", s) }
