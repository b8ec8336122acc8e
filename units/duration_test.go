package units

import (
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"300ms": 300 * time.Millisecond, "2h": 2 * time.Hour, "3d": 72 * time.Hour, "1d12h": 36 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5", "d", "1.5d", "-1d", "soon"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}

// A Duration decodes from YAML written with units; a number without one,
// or a word, is an error at the value's line and column.
func TestDurationDecodesFromYAML(t *testing.T) {
	var v struct {
		Timeout Duration `yaml:"timeout"`
	}
	if err := yaml.Unmarshal([]byte("timeout: 1d2h\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.Timeout.D() != 26*time.Hour || v.Timeout.String() != "26h0m0s" {
		t.Errorf("decoded %v", v.Timeout)
	}
	for doc, want := range map[string]string{
		"\ntimeout: 5\n":    "[2:10] 5 is not a duration: write it with a unit",
		"\ntimeout: soon\n": `[2:10] bad duration "soon"`,
	} {
		err := yaml.Unmarshal([]byte(doc), &v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
	}
}
