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

// brokenBinary is the same built with the tag brokenguards: its safety
// guards can be switched off (package guards), for the checker's tests.
var brokenBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "understudy-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "understudy")
	brokenBinary = filepath.Join(dir, "understudy-brokenguards")
	for _, args := range [][]string{{"-o", binary}, {"-tags", "brokenguards", "-o", brokenBinary}} {
		build := exec.Command("go", append(append([]string{"build"}, args...), "../cmd/understudy")...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building understudy for the fault schedules:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
