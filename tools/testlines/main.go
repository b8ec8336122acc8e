// Command testlines turns `go test -json` into a short log that shows
// progress: a line for each test that took a second or more, was skipped
// (with why) or failed (with its whole output), and go test's own line for
// each package. make test pipes the suite through it, so a long end-to-end
// package is not two silent minutes. It exits 1 when anything failed,
// including a package that did not build.
//
//	go test -json ./... | go run ./tools/testlines
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testlines:", err)
		os.Exit(1)
	}
}

// run reads events from in and writes the log to out. It returns an error
// when a test or a package failed.
func run(in io.Reader, out io.Writer) error {
	r := newReport(out)
	if err := r.read(in); err != nil {
		return err
	}
	return r.result()
}
