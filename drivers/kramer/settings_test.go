package kramer

import (
	"testing"
	"time"

	"understudy/units"
)

func TestNormalizeAddress(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.39":      "192.168.1.39:5000",
		" 192.168.1.39 ":    "192.168.1.39:5000",
		"10.0.0.5:5001":     "10.0.0.5:5001",
		"matrix.local":      "matrix.local:5000",
		"fe80::1":           "[fe80::1]:5000",
		"[fe80::1]":         "[fe80::1]:5000",
		"[fe80::1]:4000":    "[fe80::1]:4000",
		"127.0.0.1:0005000": "127.0.0.1:5000",
	} {
		got, err := normalizeAddress(in)
		if err != nil || got != want {
			t.Errorf("normalizeAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", "host:", "host:0", "host:65536", "host:http", ":5000", "a b", "fe80::zz", "http://matrix"} {
		if got, err := normalizeAddress(in); err == nil {
			t.Errorf("normalizeAddress(%q) = %q, want an error", in, got)
		}
	}
}

func TestBackoff(t *testing.T) {
	m, err := FromSettings(Settings{Address: "matrix", BackoffMin: units.Duration(100 * time.Millisecond), BackoffMax: units.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 100; n++ {
		hi := min(100*time.Millisecond<<min(n, 20), 5*time.Second)
		lo := max(hi/2, 100*time.Millisecond)
		for range 20 {
			if d := m.backoff(n); d < lo || d > hi {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, lo, hi)
			}
		}
	}
	if d := m.backoff(0); d != 100*time.Millisecond {
		t.Errorf("first backoff %s, want backoff_min", d)
	}
}
