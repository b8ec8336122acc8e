package suggest

import "testing"

func TestNearest(t *testing.T) {
	words := []string{"standby", "standbys", "stream", "takeover"}
	for in, want := range map[string]string{"stanby": "standby", "takeovr": "takeover", "xyz": "", "standby": "standby"} {
		if got := Nearest(in, words); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", in, got, want)
		}
	}
	if d := Distance("kitten", "sitting"); d != 3 {
		t.Errorf("Distance = %d", d)
	}
}
