package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the understudy binary the end-to-end schedules run, built
// once without the race detector (the instances are not what these tests
// check for races; a race build triples their CPU on a small machine).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "understudy-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "understudy")
	build := exec.Command("go", "build", "-o", binary, "../cmd/understudy")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building understudy for the fault schedules:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
