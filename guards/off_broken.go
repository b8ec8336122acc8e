//go:build brokenguards

package guards

import (
	"os"
	"slices"
	"strings"
)

// Off reports whether guard is named in EnvVar.
func Off(guard Name) bool {
	return slices.Contains(strings.Split(os.Getenv(EnvVar), ","), string(guard))
}

// Enabled reports whether this build can switch guards off.
const Enabled = true
