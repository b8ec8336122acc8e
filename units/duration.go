// Package units holds the values with units that installers write in YAML
// (site.yaml, a driver's settings, a scenario): a Duration such as "300ms",
// "5s" or "3d", whose mistakes are reported at their file:line.
//
// It is a leaf: it imports nothing of understudy, so drivers, the bus and
// the runtime can all use it without depending on one another.
package units

import (
	"fmt"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Duration is a span of time written with units, as in Go: "300ms", "5s",
// "2h30m"; "d" is accepted for days ("3d"). A bad value is reported with its
// file:line, which time.Duration fields would not get.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.NodeUnmarshaler.
func (d *Duration) UnmarshalYAML(node ast.Node) error {
	s, ok := node.(*ast.StringNode)
	if !ok {
		return &yaml.SyntaxError{Message: fmt.Sprintf("%s is not a duration: write it with a unit, like 300ms, 5s, 2h", node.String()), Token: node.GetToken()}
	}
	v, err := ParseDuration(s.Value)
	if err != nil {
		return &yaml.SyntaxError{Message: err.Error(), Token: node.GetToken()}
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses Go duration syntax plus a whole number of days ("3d",
// "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		var n int
		if _, err := fmt.Sscanf(s[:i], "%d", &n); err != nil || fmt.Sprint(n) != s[:i] || n < 0 || n > 3650 {
			return 0, fmt.Errorf("bad duration %q: days must be a whole number, like 3d", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: write it with a unit, like 300ms, 5s, 2h", s)
	}
	return days + v, nil
}
