package config

import (
	"fmt"
	"strings"
	"testing"
)

// On a site with a key, check says what bus.username and bus.password do:
// the instances log in with that one account while it is set, and the
// embedded broker and broker-config's files know it only as one of
// bus.users. Each case says what happens and what to do; an embedded
// broker that would refuse every instance is an error.
func TestCommissionBusAccountWithASiteKey(t *testing.T) {
	const site = "site: t\ncoordinator: a\n%s\nmembers:\n  - id: a\n  - id: b\n"
	commission := func(yaml string) []*Error {
		t.Helper()
		s, err := Parse("site.yaml", fmt.Appendf(nil, site, yaml))
		if err != nil {
			t.Fatalf("%s:\n%v", yaml, err)
		}
		var out []*Error
		for _, e := range s.Commission() {
			if strings.Contains(e.Msg, "bus.username") || strings.Contains(e.Msg, "bus.password") {
				out = append(out, e)
			}
		}
		return out
	}
	const shared = "  username: understudy\n  password: change-me\n"
	const sharedUser = "    - {username: understudy, password: change-me}\n"
	const showctl = "    - {username: showctl, password: s, publish: [understudy/t/command/+]}\n"
	for _, tc := range []struct {
		name, yaml string
		warning    bool
		line, col  int
		want       []string
	}{
		{"one of the users, permissive", "auth: {mode: permissive}\nbus:\n" + shared + "  users:\n" + sharedUser, true, 5, 13, []string{
			"bus.username understudy: with a site key the instances still log in with this one shared account while it is set",
			"remove bus.username and bus.password, and each instance logs in with its own account (understudy-<member>",
			"keep understudy in bus.users only while instances of the previous release log in with it",
		}},
		{"one of the users, required", "auth: {mode: required}\nbus:\n" + shared + "  users:\n" + sharedUser + showctl, true, 5, 13, []string{
			"bus.username understudy: with a site key the instances still log in with this one shared account",
		}},
		{"embedded, open in permissive", "auth: {mode: permissive}\nbus:\n" + shared, true, 5, 13, []string{
			"bus.username understudy is not one of bus.users",
			"the embedded broker (its accounts are then the instances' own and bus.users) will refuse them once it is closed (auth required, or any bus.users)",
			"while instances of the previous release log in as understudy (during an upgrade), add that account to bus.users",
		}},
		{"embedded, closed by required", "auth: {mode: required}\nbus:\n" + shared, false, 5, 13, []string{
			"the embedded broker (its accounts are then the instances' own and bus.users) refuses them, its own member's instance included",
		}},
		{"embedded, closed by users", "auth: {mode: permissive}\nbus:\n" + shared + "  users:\n" + showctl, false, 5, 13, []string{
			"refuses them, its own member's instance included",
		}},
		{"external broker", "auth: {mode: permissive}\nmdns: false\nbus:\n  url: tcp://192.0.2.1:1883\n" + shared, true, 7, 13, []string{
			"bus.username understudy is not one of bus.users: with a site key the instances log in to tcp://192.0.2.1:1883 with this one shared account",
			"a mosquitto configured with them refuses it, even in permissive mode",
		}},
		{"a password alone", "auth: {mode: required}\nbus:\n  password: change-me\n", true, 5, 13, []string{
			"bus.password is not used: with a site key and no bus.username each instance logs in with its own account",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := commission(tc.yaml)
			if len(got) != 1 {
				t.Fatalf("want one finding about the account, got %v", got)
			}
			e := got[0]
			if e.Warning != tc.warning || e.Line != tc.line || e.Col != tc.col {
				t.Errorf("warning %v at %d:%d, want %v at %d:%d: %v", e.Warning, e.Line, e.Col, tc.warning, tc.line, tc.col, e)
			}
			for _, w := range tc.want {
				if !strings.Contains(e.Msg, w) {
					t.Errorf("%s\nlacks %q", e.Msg, w)
				}
			}
		})
	}
	// Without a key the account is the instances' only way in: nothing to say.
	for _, yaml := range []string{"bus:\n" + shared + "  users:\n" + sharedUser, "auth: {mode: off}\nbus:\n" + shared} {
		if got := commission(yaml); len(got) != 0 {
			t.Errorf("without a key:\n%s\ngot %v", yaml, got)
		}
	}
	// Nor with a key and no bus.username: each instance has its own account.
	if got := commission("auth: {mode: required}\nbus:\n  users:\n" + showctl); len(got) != 0 {
		t.Errorf("without bus.username: %v", got)
	}
}
