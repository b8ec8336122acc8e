package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"understudy/drivers/builtin"
)

// A probe names a driver kind with a liveness check by its name, as
// probe: {videohub: host} always did; every switcher kind that has one
// works the same way, and any other name is a mistake reported at its
// file:line once the registry is known (check, and the coordinator when it
// builds its drivers).
func TestAProbeNamesADriverKindWithALivenessCheck(t *testing.T) {
	const site = `site: t
coordinator: a
members:
  - id: a
  - id: sw
    lost_after: 3s
    probe: {%s}
drivers:
  router: {kind: videohub, address: 192.0.2.1}
`
	for _, kind := range []string{"videohub", "extron", "kramer", "kumo"} {
		s, err := Parse("site.yaml", fmt.Appendf(nil, site, kind+": 192.0.2.7, interval: 500ms"))
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		sw, _ := s.Member("sw")
		if p := sw.Probe; p.Kind != kind || p.Address != "192.0.2.7" || p.Interval.D().String() != "500ms" {
			t.Errorf("%s: probe %+v", kind, p)
		}
		if errs := s.CheckProbes(builtin.Registry()); len(errs) > 0 {
			t.Errorf("%s: %v", kind, errs)
		}
	}
	for _, tc := range []struct{ probe, want string }{
		{"vidoehub: 192.0.2.7", `site.yaml:7:23: probe: "vidoehub" is neither a probe setting (tcp, http, expect, driver, interval, timeout) nor a driver kind with a liveness check (extron, kramer, kumo, videohub) (did you mean "videohub"?)`},
		{"intervall: 2s", `site.yaml:7:24: probe: "intervall" is neither a probe setting`},
		{"line: 192.0.2.7", "site.yaml:7:19: probe: driver kind line has no liveness check; the kinds that have one: extron, kramer, kumo, videohub"},
	} {
		s, err := Parse("site.yaml", fmt.Appendf(nil, site, tc.probe))
		if err != nil {
			t.Fatalf("%s: %v", tc.probe, err)
		}
		_, err = s.BuildDrivers(builtin.Registry())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("probe {%s}:\n  %v\nwant\n  %s", tc.probe, err, tc.want)
		}
	}
	for _, tc := range []struct{ probe, want string }{
		{"kramer: 192.0.2.7, kumo: 192.0.2.8", "site.yaml:7:13: probe: give exactly one of tcp, http, driver, videohub or extron (or another driver kind with a liveness check); it gives kramer, kumo"},
		{`tcp: "192.0.2.7:23", timout: 1s`, "it gives tcp, timout (timout: did you mean timeout?)"},
		{"kramer: [192.0.2.7]", "site.yaml:7:21: probe.kramer: give the address of the device (host, or host:port), like 10.0.0.20"},
		{"tcp: h:1, expcet: [200]", `site.yaml:7:23: probe: unknown field "expcet" (did you mean "expect"?)`},
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, site, tc.probe))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("probe {%s}:\n  %v\nwant\n  %s", tc.probe, err, tc.want)
		}
	}
}

// A probe by kind name travels in a member's description (JSON on the bus)
// and is still one probe when the site takes the description.
func TestAProbeByKindSurvivesADescription(t *testing.T) {
	s, err := Parse("site.yaml", []byte(`site: t
coordinator: a
members:
  - id: a
  - id: sw
    lost_after: 3s
    probe: {kramer: 192.0.2.7}
`))
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := s.Member("sw")
	data, err := json.Marshal(sw)
	if err != nil {
		t.Fatal(err)
	}
	var m Member
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Clone().Describe(m); err != nil {
		t.Fatalf("the description of %s: %v", data, err)
	}
	if m.Probe.Kind != "kramer" || m.Probe.Address != "192.0.2.7" {
		t.Errorf("probe %+v after JSON", m.Probe)
	}
}
