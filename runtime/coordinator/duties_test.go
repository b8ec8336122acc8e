package coordinator

import (
	"maps"
	"slices"
	"testing"

	"understudy/runtime/config"
	"understudy/runtime/policy"
)

// The editor definitions' Duties class lists the keys of the duty bundle.
func TestDutiesClassMatchesTheBundle(t *testing.T) {
	m := &config.Member{ID: "m", Duties: config.Duties{Switcher: "router", Config: &config.ConfigBundle{File: "/etc/x"}}}
	got := slices.Sorted(maps.Keys(dutiesOf(m)))
	var want []string
	for _, c := range policy.Classes() {
		if c.Name == "Duties" {
			for _, f := range c.Fields {
				want = append(want, f.Name)
			}
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the duty bundle has %v; the Duties class lists %v", got, want)
	}
}
