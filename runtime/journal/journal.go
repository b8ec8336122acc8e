// Package journal keeps the coordinator's event journal: every record of the
// engine's stream (member events, driver events, operator commands, timers,
// the policy's actions with their causes and results) as one JSON line,
// bounded and rotated, so that a day at the site can be read back, and
// replayed through a changed policy (understudy replay).
//
// The journal is a file NAME and its rotated predecessors NAME.1 … NAME.K
// (NAME.1 the newest of them). When NAME would grow past MaxBytes it becomes
// NAME.1, the others move up one, and the oldest beyond Keep is deleted.
package journal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
)

// Defaults of Options.
const (
	DefaultMaxBytes = 16 << 20
	DefaultKeep     = 4
)

// Options configure a Writer.
type Options struct {
	MaxBytes int64 // size at which the file is rotated (default 16 MiB)
	Keep     int   // rotated files kept (default 4)
}

// Writer appends entries to a journal. It is safe for concurrent use.
type Writer struct {
	path string
	opts Options

	mu   sync.Mutex
	f    file
	w    *bufio.Writer
	size int64 // the file's size: whole lines only
	err  error // the last write error, reported once
	// waiting are the lines that could not be written yet (a full disk),
	// in order, at most MaxBytes of them; lost counts those dropped beyond
	// that, oldest first.
	waiting      [][]byte
	waitingBytes int64
	lost         int
}

// file is what a Writer needs of its file (*os.File).
type file interface {
	Write([]byte) (int, error)
	Truncate(size int64) error
	Close() error
}

// Open opens (or creates) the journal at path for appending.
func Open(path string, opts Options) (*Writer, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	j := &Writer{path: path, opts: opts}
	if err := j.open(); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *Writer) open() error {
	f, err := os.OpenFile(j.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("journal: %w", err)
	}
	j.f, j.w, j.size = f, bufio.NewWriter(f), st.Size()
	return nil
}

// Write appends v as one JSON line and flushes it to the file. A line that
// cannot be written (a full disk) waits in memory, with those after it, and
// is written in its place as soon as the file takes writes again (at the
// next Write or Retry): the journal of the worst hour is kept whole. At
// most MaxBytes wait; beyond that the oldest are dropped and counted
// (Lost). It returns the first error of a run of failures (later ones
// return nil, so a full disk is reported once, not for every event).
func (j *Writer) Write(v any) error {
	line, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("journal: closed")
	}
	j.waiting = append(j.waiting, line)
	j.waitingBytes += int64(len(line))
	for j.waitingBytes > j.opts.MaxBytes && len(j.waiting) > 1 {
		j.waitingBytes -= int64(len(j.waiting[0]))
		j.waiting = j.waiting[1:]
		j.lost++
	}
	return j.flushWaiting()
}

// Retry writes the lines that wait for the file, if it takes writes now.
func (j *Writer) Retry() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil || len(j.waiting) == 0 {
		return nil
	}
	return j.flushWaiting()
}

// Waiting reports how many lines wait for the file to take writes, and
// how many were dropped because too many waited.
func (j *Writer) Waiting() (waiting, lost int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.waiting), j.lost
}

// flushWaiting writes the waiting lines in order, each flushed on its own,
// until one fails (it and those after it keep waiting).
func (j *Writer) flushWaiting() error {
	for len(j.waiting) > 0 {
		line := j.waiting[0]
		if j.size > 0 && j.size+int64(len(line)) > j.opts.MaxBytes {
			if err := j.rotate(); err != nil {
				return j.fail(err)
			}
		}
		if _, err := j.w.Write(line); err != nil {
			return j.fail(err)
		}
		if err := j.w.Flush(); err != nil {
			return j.fail(err)
		}
		j.size += int64(len(line))
		j.waiting[0] = nil
		j.waiting = j.waiting[1:]
		j.waitingBytes -= int64(len(line))
	}
	j.waiting = nil
	j.err = nil
	return nil
}

// fail undoes a line that could not be written (it keeps waiting): the
// part of it that reached the file is cut off (the journal keeps whole
// lines, and the next line starts on a line of its own), and the buffer,
// whose error would otherwise stick, starts afresh. The next try goes as
// if nothing happened: a disk that was full and has room again takes it.
func (j *Writer) fail(err error) error {
	switch {
	case j.f == nil: // a rotation that failed half-way: NAME again
		if oerr := j.open(); oerr != nil {
			err = errors.Join(err, oerr)
		}
	default:
		j.w.Reset(j.f)
		if terr := j.f.Truncate(j.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("cutting off the partial line: %w", terr))
		}
	}
	first := j.err == nil
	j.err = err
	if first {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	return nil
}

// rotate moves NAME to NAME.1 (and up), dropping the oldest beyond Keep.
func (j *Writer) rotate() error {
	j.w.Flush()
	j.f.Close()
	j.f = nil
	os.Remove(j.path + "." + strconv.Itoa(j.opts.Keep))
	for i := j.opts.Keep - 1; i >= 1; i-- {
		if err := os.Rename(j.path+"."+strconv.Itoa(i), j.path+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(j.path, j.path+".1"); err != nil {
		return err
	}
	return j.open()
}

// Close flushes and closes the journal.
func (j *Writer) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	j.flushWaiting() // what waits, if the file takes it now
	j.w.Flush()
	err := j.f.Close()
	j.f = nil
	return err
}

// Files lists the journal's files from the oldest to the newest: NAME.K …
// NAME.1, NAME (those that exist).
func Files(path string) []string {
	var out []string
	for i := 64; i >= 1; i-- {
		if _, err := os.Stat(path + "." + strconv.Itoa(i)); err == nil {
			out = append(out, path+"."+strconv.Itoa(i))
		}
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out
}

// Read decodes every line of the journal at path (with its rotated files,
// oldest first) as a T and passes each to fn. A line
// that does not decode (a torn last line after a crash) is skipped and
// counted.
func Read[T any](path string, fn func(T) error) (skipped int, err error) {
	files := Files(path)
	if len(files) == 0 {
		return 0, fmt.Errorf("journal %s: %w", path, fs.ErrNotExist)
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return skipped, fmt.Errorf("journal: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			var v T
			if json.Unmarshal(sc.Bytes(), &v) != nil {
				skipped++
				continue
			}
			if err := fn(v); err != nil {
				f.Close()
				return skipped, err
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return skipped, fmt.Errorf("journal %s: %w", name, err)
		}
	}
	return skipped, nil
}
