//go:build !linux

package faults

import (
	"context"
	"fmt"

	"understudy/platform"
)

// RunSchedule needs Linux network namespaces.
func RunSchedule(ctx context.Context, opts Options, seed uint64) (*Outcome, error) {
	return nil, fmt.Errorf("faults: %w", platform.Unsupported("the fault suite (Linux network namespaces)"))
}
