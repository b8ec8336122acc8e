package platform

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
)

func TestUnsupported(t *testing.T) {
	err := fmt.Errorf("demo: %w", Unsupported("pausing a process"))
	want := "demo: pausing a process: not supported on this operating system yet (" + runtime.GOOS + ")"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("errors.Is(%v, errors.ErrUnsupported) = false", err)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Errorf("errors.Is(%v, os.ErrNotExist) = true", err)
	}
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Feature != "pausing a process" || ue.OS != runtime.GOOS {
		t.Errorf("errors.As gave %+v", ue)
	}
}
