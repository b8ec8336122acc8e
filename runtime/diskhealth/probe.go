package diskhealth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// probePrefix starts the name of every probe file, so that one left behind by
// a crash is recognisable.
const probePrefix = ".understudy-probe-"

// errFreeUnsupported is what freeBytes returns where the operating system's
// free space is not read.
var errFreeUnsupported = errors.New("free space is not read on this operating system")

// probe does the filesystem work of a check. It may block for as long as the
// filesystem does.
func probe(path string) probeResult {
	var res probeResult
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		res.problem = fmt.Sprintf("%s does not exist (%v)", path, osErr(err))
		return res
	case err != nil:
		res.problem = fmt.Sprintf("cannot look up %s (%v)", path, osErr(err))
		return res
	case !info.IsDir():
		res.problem = fmt.Sprintf("%s is not a directory", path)
		return res
	}

	free, freeErr := freeBytes(path)
	if freeErr == nil {
		res.free, res.freeKnown = free, true
	}
	if problem := writeProbe(path); problem != "" {
		res.problem = problem
		return res
	}
	if freeErr != nil && !errors.Is(freeErr, errFreeUnsupported) {
		res.problem = fmt.Sprintf("cannot read the free space of %s (%v)", path, osErr(freeErr))
	}
	return res
}

// writeProbe creates, writes, fsyncs, reads back and removes a probe file in
// dir and returns why that failed, or "". The messages leave out the probe
// file's name, which differs at every check.
func writeProbe(dir string) (problem string) {
	token := rand.Uint64()
	name := filepath.Join(dir, fmt.Sprintf("%s%d-%016x", probePrefix, os.Getpid(), token))
	want := fmt.Appendf(nil, "understudy disk probe %016x\n", token)

	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Sprintf("cannot create a file in %s (%v)", dir, osErr(err))
	}
	removed := false
	defer func() {
		if !removed {
			os.Remove(name) // best effort after an earlier failure
		}
	}()

	if _, err := f.Write(want); err != nil {
		f.Close()
		return fmt.Sprintf("cannot write to %s (%v)", dir, osErr(err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Sprintf("cannot flush a write to %s onto the disk (%v)", dir, osErr(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Sprintf("cannot finish writing to %s (%v)", dir, osErr(err))
	}
	got, err := os.ReadFile(name)
	if err != nil {
		return fmt.Sprintf("cannot read back a file written to %s (%v)", dir, osErr(err))
	}
	if !bytes.Equal(got, want) {
		return fmt.Sprintf("a file written to %s read back different", dir)
	}
	removed = true
	if err := os.Remove(name); err != nil {
		return fmt.Sprintf("cannot remove the probe file from %s (%v)", dir, osErr(err))
	}
	return ""
}

// osErr strips the operation and file name from err, leaving the operating
// system's own words ("no such file or directory").
func osErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
