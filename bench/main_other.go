//go:build !linux

// Command bench measures understudy's figures on Linux (network namespaces,
// /proc); elsewhere it says so and exits 1.
package main

import (
	"fmt"
	"os"

	"understudy/platform"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench:", platform.Unsupported("measuring the figures (make bench)"))
	os.Exit(1)
}
