//go:build linux

package faults

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// stateFSSize is the size of each host's state folder when the schedule
// may fill one (a tmpfs of its own). A state folder holds a few hundred KiB
// after a schedule of a minute (the coordinator's, with its journal, the
// most); filling 4 MiB takes milliseconds.
const stateFSSize = 4 << 20

// stateFiller is the file the nemesis fills a state folder with.
const stateFiller = ".faults-filler"

// needsStateFS reports whether the run may fill a state folder: with
// Options.StateFaults, or a hand-made schedule that has a state_full.
func (o Options) needsStateFS() bool {
	if o.StateFaults {
		return true
	}
	if o.Schedule != nil {
		for _, op := range o.Schedule.Ops {
			if op.Kind == OpStateFull {
				return true
			}
		}
	}
	return false
}

// mountStateDirs makes each host's state folder a tmpfs of stateFSSize;
// every mount made is recorded in r.mounts, for unmountStateDirs, also when
// a later one fails.
func (r *runner) mountStateDirs() error {
	for _, h := range r.plan.Hosts {
		opts := fmt.Sprintf("size=%d,mode=0755", stateFSSize)
		if err := syscall.Mount("tmpfs", h.StateDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
			return fmt.Errorf("state folder of %s as a tmpfs (%s): %w", h.Member, h.StateDir, err)
		}
		r.mounts = append(r.mounts, h.StateDir)
	}
	return nil
}

// unmountStateDirs unmounts every state folder mountStateDirs mounted,
// keeping what they hold (the filler left out) in the folders underneath,
// where the run's folder keeps it. The instances must be stopped.
func (r *runner) unmountStateDirs() error {
	var errs []error
	for len(r.mounts) > 0 {
		dir := r.mounts[len(r.mounts)-1]
		r.mounts = r.mounts[:len(r.mounts)-1]
		files, err := readTree(dir)
		if err != nil {
			errs = append(errs, err)
		}
		if err := syscall.Unmount(dir, 0); err != nil {
			// Something still holds it: detach it (it goes once released).
			if derr := syscall.Unmount(dir, syscall.MNT_DETACH); derr != nil {
				errs = append(errs, fmt.Errorf("unmount the state folder %s: %w", dir, errors.Join(err, derr)))
				continue
			}
		}
		for rel, f := range files {
			p := filepath.Join(dir, rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				errs = append(errs, fmt.Errorf("keep the state folder %s: %w", dir, err))
				continue
			}
			if err := os.WriteFile(p, f.data, f.mode); err != nil {
				errs = append(errs, fmt.Errorf("keep the state folder %s: %w", dir, err))
			}
		}
	}
	return errors.Join(errs...)
}

type keptFile struct {
	data []byte
	mode fs.FileMode
}

// readTree reads every regular file under dir but the filler.
func readTree(dir string) (map[string]keptFile, error) {
	files := map[string]keptFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == stateFiller {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[rel] = keptFile{data: data, mode: info.Mode().Perm()}
		return nil
	})
	if err != nil {
		return files, fmt.Errorf("read the state folder %s: %w", dir, err)
	}
	return files, nil
}

// fillStateDir writes the filler in dir until the file system is full
// (ENOSPC), at most stateFSSize and a MiB: more means dir is not the
// small tmpfs it should be, and the filler is removed.
func fillStateDir(dir string) (err error) {
	p := filepath.Join(dir, stateFiller)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("filler in %s: %w", dir, err)
	}
	defer func() {
		err = errors.Join(err, f.Close())
		if err != nil {
			os.Remove(p)
		}
	}()
	buf := make([]byte, 64<<10)
	for written := 0; written <= stateFSSize+1<<20; {
		n, err := f.Write(buf)
		written += n
		if errors.Is(err, syscall.ENOSPC) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("filler in %s: %w", dir, err)
		}
	}
	return fmt.Errorf("filler in %s: not full after %d bytes (not a tmpfs of its own?)", dir, stateFSSize+1<<20)
}

// emptyStateDir removes the filler from dir.
func emptyStateDir(dir string) error {
	if err := os.Remove(filepath.Join(dir, stateFiller)); err != nil {
		return fmt.Errorf("filler in %s: %w", dir, err)
	}
	return nil
}
