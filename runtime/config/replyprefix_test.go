package config

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"understudy/sitekey"
)

const replyPrefixSite = `site: t
coordinator: a
%s
members:
  - id: a
  - id: b
`

// A reply_prefix is checked where it is written: the error names the file,
// line and column of the prefix, and says what is wrong with it.
func TestReplyPrefixErrorsNameTheLine(t *testing.T) {
	const users = "bus:\n  username: inst\n  password: p\n  users:\n    - {username: inst, password: p}\n    - username: show\n      password: q\n      reply_prefix: %s"
	for _, tc := range []struct{ prefix, want string }{
		{`""`, "site.yaml:10:21: bus.users: show: reply_prefix is empty"},
		{"showctl/replies", `site.yaml:10:21: bus.users: show: reply_prefix "showctl/replies": end it in / ("showctl/replies/")`},
		{"showctl/+/", `site.yaml:10:21: bus.users: show: reply_prefix "showctl/+/": a prefix of topics to publish on has no wild cards (+, #)`},
		{`"showctl/#/"`, `reply_prefix "showctl/#/": a prefix of topics to publish on has no wild cards`},
		{`"$SYS/"`, `reply_prefix "$SYS/": topics starting with $ are the broker's`},
		{"understudy/t/reply/", `reply_prefix "understudy/t/reply/" is inside understudy's own topics`},
		{"understudy/other/", `reply_prefix "understudy/other/" is inside understudy's own topics`},
		{`"a\0/"`, `reply_prefix "a\x00/" is not UTF-8 text without NUL`},
		{strings.Repeat("x", 256) + "/", "site.yaml:10:21: bus.users: show: reply_prefix of 257 bytes: at most 255, so that a reply_to under it stays within 256"},
		{"[a/]", "site.yaml:10:21:"}, // not a string
	} {
		_, err := Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, fmt.Sprintf(users, tc.prefix)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("reply_prefix: %s\n  error %v\n  want  %q", tc.prefix, err, tc.want)
		}
	}
	// The instances' account with lists of its own must be allowed to
	// publish the replies, else the broker would drop them.
	const listed = "bus:\n  username: inst\n  password: p\n  users:\n    - {username: show, password: q, reply_prefix: showctl/replies/}\n    - {username: inst, password: p, publish: [%s], subscribe: [understudy/t/#]}"
	_, err := Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, fmt.Sprintf(listed, "understudy/t/#")))
	if want := "site.yaml:8:8: bus.users: inst (the instances' account) may not publish to showctl/replies/#"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("the instances' account may not publish the replies:\n  error %v\n  want  %q", err, want)
	}
	// Beside bus.url without a key, the lists are the external broker's.
	if _, err := Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, strings.Replace(fmt.Sprintf(listed, "understudy/t/#"), "bus:\n", "bus:\n  url: tcp://192.0.2.1:1883\n", 1))); err != nil {
		t.Errorf("beside bus.url: %v", err)
	}
	for _, publish := range []string{"understudy/t/#, showctl/replies/#", "understudy/t/#, showctl/#", "'#'"} {
		if _, err := Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, fmt.Sprintf(listed, publish))); err != nil {
			t.Errorf("the instances' account publishes [%s]: %v", publish, err)
		}
	}
	// A good prefix, in block style, loads.
	s, err := Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, fmt.Sprintf(users, "showctl/replies/")))
	if err != nil {
		t.Fatal(err)
	}
	if s.Bus.Users[1].ReplyPrefix != "showctl/replies/" {
		t.Errorf("reply_prefix = %q", s.Bus.Users[1].ReplyPrefix)
	}
}

// Every user's reply prefix holds for the whole site (MQTT does not say who
// sent a command); the coordinator, which alone answers commands, may
// publish under each; a user without lists may read its own; accounts with
// lists are as written.
func TestReplyPrefixesWidenTheAnsweringAccounts(t *testing.T) {
	const bus = "bus:\n  username: inst\n  password: p\n  users:\n" +
		"    - {username: inst, password: p}\n" +
		"    - {username: show, password: q, reply_prefix: showctl/replies/, publish: [understudy/t/command/+], subscribe: [showctl/replies/#]}\n" +
		"    - {username: qlab, password: r, reply_prefix: qlab/answers/}\n" +
		"    - {username: again, password: s, reply_prefix: showctl/replies/, subscribe: [showctl/replies/#]}\n" +
		"    - {username: viewer, password: v, subscribe: [understudy/t/member/+/state]}"
	s, err := Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, bus))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.ReplyPrefixes(), []string{"qlab/answers/", "showctl/replies/"}; !slices.Equal(got, want) {
		t.Errorf("ReplyPrefixes() = %v, want %v", got, want)
	}
	if got, want := s.ReplyFilters(), []string{"qlab/answers/#", "showctl/replies/#"}; !slices.Equal(got, want) {
		t.Errorf("ReplyFilters() = %v, want %v", got, want)
	}
	u := s.BrokerUsers()
	for i, want := range []struct{ publish, subscribe []string }{
		{[]string{"understudy/t/#", "qlab/answers/#", "showctl/replies/#"}, []string{"understudy/t/#"}}, // the instances'
		{[]string{"understudy/t/command/+"}, []string{"showctl/replies/#"}},                             // as written
		{[]string{"understudy/t/#"}, []string{"understudy/t/#", "qlab/answers/#"}},                      // no lists: its own replies too
		{nil, []string{"showctl/replies/#"}},
		{nil, []string{"understudy/t/member/+/state"}},
	} {
		if !slices.Equal(u[i].Publish, want.publish) || !slices.Equal(u[i].Subscribe, want.subscribe) {
			t.Errorf("broker user %s: publish %v subscribe %v, want %v %v", u[i].Username, u[i].Publish, u[i].Subscribe, want.publish, want.subscribe)
		}
	}
	if s.Bus.Users[0].Publish != nil {
		t.Error("BrokerUsers changed the site's own lists")
	}

	// With a site key: the coordinator's account (a) publishes the replies,
	// b's does not (it never answers a command).
	k, err := sitekey.NewKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := sitekey.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	accounts := s.InstanceAccounts(ring)
	if len(accounts) != 2 || accounts[0].Username != "understudy-a" || accounts[1].Username != "understudy-b" {
		t.Fatalf("accounts = %+v", accounts)
	}
	if want := []string{"understudy/t/#", "qlab/answers/#", "showctl/replies/#"}; !slices.Equal(accounts[0].Publish, want) {
		t.Errorf("the coordinator publishes %v, want %v", accounts[0].Publish, want)
	}
	for _, f := range accounts[1].Publish {
		if strings.HasPrefix(f, "showctl/") || strings.HasPrefix(f, "qlab/") {
			t.Errorf("b, not the coordinator, may publish %s", f)
		}
	}
	if len(accounts[1].Publish) == 0 {
		t.Error("b may publish nothing")
	}

	// Without reply prefixes, nothing is added.
	s, err = Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, "bus:\n  username: inst\n  password: p\n  users: [{username: inst, password: p}]"))
	if err != nil {
		t.Fatal(err)
	}
	if s.ReplyPrefixes() != nil || !slices.Equal(s.BrokerUsers()[0].Publish, []string{"understudy/t/#"}) || !slices.Equal(s.InstanceAccounts(ring)[0].Publish, []string{"understudy/t/#"}) {
		t.Errorf("without reply prefixes: %v, %+v, %+v", s.ReplyPrefixes(), s.BrokerUsers(), s.InstanceAccounts(ring))
	}
}

// check warns about a user with lists that cannot read the replies under
// its own reply_prefix, and, beside bus.url, that bus.users are ignored but
// for their reply_prefix.
func TestReplyPrefixCommissioning(t *testing.T) {
	warnings := func(bus string) []string {
		t.Helper()
		s, err := Parse("site.yaml", fmt.Appendf(nil, replyPrefixSite, bus))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range s.Commission() {
			out = append(out, e.Error())
		}
		return out
	}
	const user = "bus:\n  username: inst\n  password: p\n  users:\n    - {username: inst, password: p}\n    - {username: show, password: q, publish: [understudy/t/command/+], subscribe: [%s], reply_prefix: showctl/replies/}"
	got := strings.Join(warnings(fmt.Sprintf(user, "understudy/t/#")), "\n")
	if want := "site.yaml:8:115: warning: bus.users: show may not subscribe to showctl/replies/#: it would not see the replies under its reply_prefix"; !strings.Contains(got, want) {
		t.Errorf("warnings:\n%s\nwant %q", got, want)
	}
	for _, sub := range []string{"showctl/replies/#", "showctl/#", "'#'"} {
		if got := strings.Join(warnings(fmt.Sprintf(user, sub)), "\n"); strings.Contains(got, "may not subscribe") {
			t.Errorf("subscribe [%s]: %s", sub, got)
		}
	}
	got = strings.Join(warnings("bus:\n  url: tcp://192.0.2.1:1883\n  username: inst\n  password: p\n  users: [{username: inst, password: p}, {username: show, password: q, reply_prefix: showctl/replies/}]"), "\n")
	if want := "bus.users are ignored but for their reply_prefix: with bus.url every member connects to tcp://192.0.2.1:1883 and no member embeds a broker (that broker must let the coordinator publish to showctl/replies/#)"; !strings.Contains(got, want) {
		t.Errorf("beside bus.url:\n%s\nwant %q", got, want)
	}
}
