package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// writeChunk is how much content is written between checks of the deadline.
const writeChunk = 256 << 10

// runWrite runs a write step: the content goes to a temporary file (".<name>.*.tmp")
// in the target's directory, which is synced, given its mode and renamed over
// the target; then the directory is synced (syncDir). The parent directory is never
// created. On failure the temporary file is removed and the target is left as
// it was.
//
// Filesystem calls cannot be interrupted: the timeout is checked between
// stages, up to the rename. Once the rename is done the new file is in place
// and the step only fails if the directory cannot be synced.
func runWrite(stepCtx, ctx context.Context, s Step, data map[string]any, sr *StepResult) error {
	w := s.Write
	path, err := expand("write.path", w.Path, data)
	if err != nil {
		return err
	}
	sr.What = "write " + oneLine(path, maxWhat)
	if err := checkWritePath(path); err != nil {
		return fmt.Errorf("write.path: %w", err)
	}
	content, err := expand("write.content", w.content(), data)
	if err != nil {
		return err
	}
	path = filepath.Clean(path)
	dir := filepath.Dir(path)

	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("directory %s does not exist (it is not created automatically): %w", dir, err)
	case err != nil:
		return fmt.Errorf("directory %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}

	stage := func(what string) error {
		if why, cause := interrupted(stepCtx, ctx, s.timeout()); cause != nil {
			return fmt.Errorf("%s: %s, %s left unchanged: %w", what, why, path, cause)
		}
		return nil
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating a temporary file in %s: %w", dir, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			_ = f.Close() // may already be closed
			_ = os.Remove(tmp)
		}
	}()

	for rest := content; rest != ""; {
		n := min(len(rest), writeChunk)
		if _, err := f.WriteString(rest[:n]); err != nil {
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
		rest = rest[n:]
		if err := stage("while writing"); err != nil {
			return err
		}
	}
	if err := f.Chmod(w.mode()); err != nil {
		return fmt.Errorf("setting mode %04o on %s: %w", w.mode(), tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := stage("before renaming into place"); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	renamed = true
	sr.Output = fmt.Sprintf("wrote %d bytes, mode %04o", len(content), w.mode())
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%s is in place but its directory could not be synced, so it may not survive a power cut: %w", path, err)
	}
	return nil
}
