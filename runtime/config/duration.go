package config

import (
	"time"

	"understudy/units"
)

// Duration is units.Duration, the span of time site.yaml writes with units
// ("300ms", "5s", "3d"); the alias keeps config.Duration working for the
// runtime's packages.
type Duration = units.Duration

// ParseDuration is units.ParseDuration: Go duration syntax plus a whole
// number of days ("3d", "1d12h").
func ParseDuration(s string) (time.Duration, error) { return units.ParseDuration(s) }
