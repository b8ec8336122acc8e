package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

const homeAssistantSite = `site: t
coordinator: a
%s
members:
  - id: a
`

func TestHomeAssistantSettings(t *testing.T) {
	s, err := Parse("site.yaml", fmt.Appendf(nil, homeAssistantSite, "home_assistant: {discovery: true}"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.HomeAssistant.Discovery || s.HomeAssistant.DiscoveryPrefix() != "homeassistant" || s.HomeAssistant.ConfigFilter() != "homeassistant/binary_sensor/+/config" {
		t.Errorf("home_assistant = %+v, prefix %q", s.HomeAssistant, s.HomeAssistant.DiscoveryPrefix())
	}
	s, err = Parse("site.yaml", fmt.Appendf(nil, homeAssistantSite, "home_assistant: {discovery: true, prefix: ha/stage}"))
	if err != nil {
		t.Fatal(err)
	}
	if s.HomeAssistant.ConfigFilter() != "ha/stage/binary_sensor/+/config" {
		t.Errorf("ConfigFilter() = %q", s.HomeAssistant.ConfigFilter())
	}
	s, err = Parse("site.yaml", fmt.Appendf(nil, homeAssistantSite, ""))
	if err != nil {
		t.Fatal(err)
	}
	if s.HomeAssistant.Discovery {
		t.Error("discovery on without home_assistant")
	}
}

func TestHomeAssistantErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ section, want string }{
		{"home_assistant: {discovery: true, prefix: \"\"}", "site.yaml:3:43: home_assistant.prefix is empty"},
		{"home_assistant:\n  discovery: true\n  prefix: ha/#", `site.yaml:5:11: home_assistant.prefix "ha/#": an MQTT topic prefix without + or #`},
		{"home_assistant: {prefix: /ha}", `home_assistant.prefix "/ha"`},
		{"home_assistant: {prefix: understudy/t}", `home_assistant.prefix "understudy/t" is inside understudy's own topics`},
		{"home_assistant: {discover: true}", `site.yaml:3:18: unknown field "discover"`},
		{"home_assistant: {discovery: yes please}", "site.yaml:3:"},
		// The instances' account must be allowed to publish the configurations.
		{"home_assistant: {discovery: true}\nbus:\n  username: inst\n  password: p\n  users:\n    - {username: show, password: q}\n    - {username: inst, password: p, publish: [understudy/t/#], subscribe: [understudy/t/#]}",
			"site.yaml:9:8: home_assistant.discovery: bus user inst (the instances' account) may not publish to homeassistant/binary_sensor/+/config"},
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, homeAssistantSite, tc.section))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n  error %v\n  want  %q", tc.section, err, tc.want)
		}
	}
}

// With discovery on, the instances' account without lists may publish the
// configurations too; other accounts, and accounts with lists, are as
// written.
func TestHomeAssistantDiscoveryWidensTheInstancesAccount(t *testing.T) {
	const users = "bus:\n  username: inst\n  password: p\n  users:\n    - {username: inst, password: p}\n    - {username: viewer, password: q}\n    - {username: ha, password: r, publish: [homeassistant/status], subscribe: [homeassistant/#, understudy/t/member/+/state]}"
	for _, on := range []bool{true, false} {
		s, err := Parse("site.yaml", fmt.Appendf(nil, homeAssistantSite, fmt.Sprintf("home_assistant: {discovery: %v, prefix: ha}\n%s", on, users)))
		if err != nil {
			t.Fatal(err)
		}
		u := s.BrokerUsers()
		want := []string{"understudy/t/#"}
		if on {
			want = append(want, "ha/binary_sensor/+/config")
		}
		if !slices.Equal(u[0].Publish, want) || !slices.Equal(u[0].Subscribe, []string{"understudy/t/#"}) {
			t.Errorf("discovery %v: the instances' account = %+v, want publish %v", on, u[0], want)
		}
		if !slices.Equal(u[1].Publish, []string{"understudy/t/#"}) || !slices.Equal(u[2].Publish, []string{"homeassistant/status"}) {
			t.Errorf("discovery %v: other accounts changed: %+v", on, u[1:])
		}
	}
	// An account with lists that allow it passes.
	if _, err := Parse("site.yaml", fmt.Appendf(nil, homeAssistantSite, "home_assistant: {discovery: true}\nbus:\n  username: inst\n  password: p\n  users:\n    - {username: inst, password: p, publish: [understudy/t/#, homeassistant/#], subscribe: [understudy/t/#]}")); err != nil {
		t.Error(err)
	}
}
