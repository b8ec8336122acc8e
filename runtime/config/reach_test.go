package config

import (
	"fmt"
	"strings"
	"testing"
)

// check calls loopback what the status API calls loopback (it answers
// reads without a token there: net.IP.IsLoopback of its listener): any
// address of 127.0.0.0/8, ::1 (and localhost), nothing else.
func TestLoopbackIsAll127AndIPv6Loopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.0.0.2": true, "127.255.255.254": true, "::1": true, "::ffff:127.0.0.2": true, "localhost": true, "LocalHost": true,
		"128.0.0.1": false, "126.255.255.255": false, "0.0.0.0": false, "::": false, "": false, "192.0.2.10": false, "fe80::1": false, "::2": false, "stage-pc": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
	// The members' api: warnings follow it.
	const site = "site: t\ncoordinator: a\nmembers:\n  - id: a\n    api: %s\n  - id: b\n    standby: true\n    api: 192.0.2.12:7901\n"
	for api, want := range map[string]bool{"127.0.0.1:7901": true, "127.0.0.2:7901": true, "127.9.9.9:7901": true, `"[::1]:7901"`: true, "localhost:7901": true, "192.0.2.11:7901": false, ":7901": false} {
		s, err := Parse("site.yaml", fmt.Appendf(nil, site, api))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range s.Commission() {
			if strings.Contains(e.Msg, "is on loopback") {
				got = append(got, e.Error())
			}
		}
		if (len(got) == 1) != want || len(got) > 1 {
			t.Errorf("api %s: loopback warnings %q, want one: %v", api, got, want)
		}
	}
}
