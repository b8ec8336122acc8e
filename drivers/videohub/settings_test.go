package videohub

import (
	"testing"
	"time"

	"understudy/units"
)

func TestNormalizeAddress(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.10.50":      "192.168.10.50:9990",
		" 192.168.10.50 ":    "192.168.10.50:9990",
		"10.0.0.5:9991":      "10.0.0.5:9991",
		"videohub.local":     "videohub.local:9990",
		"hub:9990":           "hub:9990",
		"fe80::1":            "[fe80::1]:9990",
		"[fe80::1]":          "[fe80::1]:9990",
		"[fe80::1]:4000":     "[fe80::1]:4000",
		"fe80::1%eth0":       "[fe80::1%eth0]:9990",
		"127.0.0.1:00009990": "127.0.0.1:9990",
	} {
		got, err := normalizeAddress(in)
		if err != nil || got != want {
			t.Errorf("normalizeAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", "host:", "host:0", "host:65536", "host:http", ":9990", "a b", "fe80::zz", "http://hub"} {
		if got, err := normalizeAddress(in); err == nil {
			t.Errorf("normalizeAddress(%q) = %q, want an error", in, got)
		}
	}
}

func TestBackoff(t *testing.T) {
	v, err := FromSettings(Settings{Address: "hub", BackoffMin: units.Duration(100 * time.Millisecond), BackoffMax: units.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	prevHi := time.Duration(0)
	for n := 0; n < 100; n++ {
		hi := min(100*time.Millisecond<<min(n, 20), 5*time.Second)
		lo := max(hi/2, 100*time.Millisecond)
		for range 20 {
			if d := v.backoff(n); d < lo || d > hi {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, lo, hi)
			}
		}
		if hi < prevHi {
			t.Fatalf("backoff bound shrinks at %d", n)
		}
		prevHi = hi
	}
	if d := v.backoff(0); d != 100*time.Millisecond {
		t.Errorf("first backoff %s, want backoff_min", d)
	}
}
