package bus

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeControl(t *testing.T) {
	c, err := DecodeControl("takeover", []byte(`{"member":"main","standby":"backup","request_id":12345678901234567890.25,"reply_to":"understudy/s/reply/x","extra":[1]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Fields["member"] != "main" || c.Fields["standby"] != "backup" || c.Fields["extra"] == nil || len(c.Fields) != 3 {
		t.Errorf("fields %v", c.Fields)
	}
	if string(c.RequestID) != "12345678901234567890.25" || c.ReplyTo != "understudy/s/reply/x" || !c.HasReplyTo {
		t.Errorf("request_id %s, reply_to %q", c.RequestID, c.ReplyTo)
	}
	for _, id := range []string{`"abc"`, `7`, `-1.5e3`, `true`, `false`} {
		c, err := DecodeControl("mode", []byte(`{"mode":"auto","request_id":`+id+`}`))
		if err != nil || string(c.RequestID) != id {
			t.Errorf("request_id %s: got %s, %v", id, c.RequestID, err)
		}
	}
	if c, err := DecodeControl("mode", []byte(`{"request_id":null}`)); err != nil || c.RequestID != nil {
		t.Errorf("request_id null: %s, %v", c.RequestID, err)
	}
	for _, tc := range []struct {
		name, verb, payload string
		want                error
		id                  string // request_id still read
	}{
		{"bad verb", "Take-Over", `{}`, ErrInvalid, ""},
		{"bad verb, request_id still echoed", "Takeover", `{"request_id":"t3"}`, ErrInvalid, `"t3"`},
		{"not JSON", "mode", `mode=auto`, ErrMalformed, ""},
		{"not an object", "mode", `["auto"]`, ErrMalformed, ""},
		{"null", "mode", `null`, ErrMalformed, ""},
		{"two objects", "mode", `{}{}`, ErrMalformed, ""},
		{"too large", "flash", `{"pad":"` + strings.Repeat("x", MaxControlPayload) + `"}`, ErrTooLarge, ""},
		{"member is a number", "takeover", `{"member":5,"request_id":"r1"}`, ErrInvalid, `"r1"`},
		{"standby is a list", "takeover_all", `{"standby":["s"],"request_id":2}`, ErrInvalid, "2"},
		{"dry_run is a string", "drill", `{"member":"m","dry_run":"no","request_id":true}`, ErrInvalid, "true"},
		{"revert_after is an object", "drill", `{"member":"m","revert_after":{}}`, ErrInvalid, ""},
		{"mode is a number", "mode", `{"mode":1}`, ErrInvalid, ""},
		{"request_id is an object", "mode", `{"mode":"auto","request_id":{"a":1}}`, ErrInvalid, ""},
		{"request_id too long", "mode", `{"mode":"auto","request_id":"` + strings.Repeat("x", MaxRequestID) + `"}`, ErrInvalid, ""},
		{"reply_to is a number", "mode", `{"mode":"auto","reply_to":5,"request_id":"r"}`, ErrInvalid, `"r"`},
		// An instance's seal is opened and taken off by the inbound table:
		// one left here is not as an instance seals it (an operator cannot
		// sign), and must reach neither the policy nor the records.
		{"an auth member", "mode", `{"mode":"auto","auth":{"key":"k1","from":"main","n":[1,1,1],"mac":"AAAAAAAAAAAAAAAAAAAAAA"},"request_id":"a1"}`, ErrBadMAC, `"a1"`},
		{"an auth member spelt with an escape", "mode", `{"\u0061uth":{},"mode":"auto"}`, ErrBadMAC, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeControl(tc.verb, []byte(tc.payload))
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if string(c.RequestID) != tc.id {
				t.Errorf("request_id %s, want %s", c.RequestID, tc.id)
			}
		})
	}
}

func TestReplyTopic(t *testing.T) {
	topics := Topics{Site: "hall"}
	const def = "understudy/hall/command/mode/reply"
	for _, tc := range []struct {
		replyTo string
		set     bool
		want    string
		err     bool
	}{
		{"", false, def, false},
		{"understudy/hall/reply/companion/42", true, "understudy/hall/reply/companion/42", false},
		{def, true, def, false},
		{"", true, def, true},
		{"understudy/hall/reply/", true, def, true},
		{"understudy/hall/reply/+", true, def, true},
		{"understudy/hall/reply/#", true, def, true},
		{"understudy/hall/member/main/command", true, def, true},
		{"understudy/other/reply/x", true, def, true},
		{"understudy/hall/command/takeover/reply", true, def, true},
		{"lights/stage/on", true, def, true},
		{"showctl/replies/x", true, def, true}, // no reply prefix configured
		{"understudy/hall/reply/" + strings.Repeat("x", MaxReplyTo), true, def, true},
		{"understudy/hall/reply/a\x00b", true, def, true},
	} {
		got, err := topics.ReplyTopic(Control{Verb: "mode", ReplyTo: tc.replyTo, HasReplyTo: tc.set}, nil)
		if got != tc.want || (err != nil) != tc.err || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("reply_to %q (set %v): %q, %v; want %q, error %v", tc.replyTo, tc.set, got, err, tc.want, tc.err)
		}
	}
}

// With reply prefixes (bus.users[].reply_prefix), a reply_to under one of
// them gets the reply there; anything else is refused as before, answered
// on the default reply topic, with an error naming where replies may go. A
// prefix CheckReplyPrefix refuses opens nothing.
func TestReplyTopicUnderAReplyPrefix(t *testing.T) {
	topics := Topics{Site: "hall"}
	const def = "understudy/hall/command/takeover/reply"
	prefixes := []string{"showctl/replies/", "qlab/", "understudy/hall/", "", "$SYS/", "open"}
	for _, tc := range []struct {
		replyTo, want string
	}{
		{"showctl/replies/x", "showctl/replies/x"},
		{"showctl/replies/companion/42", "showctl/replies/companion/42"},
		{"qlab/cue-7", "qlab/cue-7"},
		{"understudy/hall/reply/x", "understudy/hall/reply/x"},
		{def, def},
		{"showctl/replies/", def},  // the prefix itself is no topic under it
		{"showctl/replies/#", def}, // a wild card
		{"showctl/replies/+/x", def},
		{"showctl/repliesX", def}, // not under the prefix: it ends in /
		{"showctl/replies", def},
		{"showctl/other", def},
		{"$SYS/broker/x", def},                       // a $ prefix opens nothing
		{"understudy/hall/command/takeover", def},    // nor one inside understudy/
		{"understudy/hall/member/main/command", def}, // (the site's own topics)
		{"openx", def},                               // nor one without the closing /
		{"showctl/replies/" + strings.Repeat("x", MaxReplyTo), def},
		{"showctl/replies/\xff", def},
		{"showctl/replies/a\x00b", def},
	} {
		got, err := topics.ReplyTopic(Control{Verb: "takeover", ReplyTo: tc.replyTo, HasReplyTo: true}, prefixes)
		if got != tc.want {
			t.Errorf("reply_to %q: answered on %q, want %q (%v)", tc.replyTo, got, tc.want, err)
		}
		if refused := tc.want != tc.replyTo; refused != (err != nil) || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("reply_to %q: error %v, want refused %v", tc.replyTo, err, refused)
		}
	}
	_, err := topics.ReplyTopic(Control{Verb: "takeover", ReplyTo: "showctl/repliesX", HasReplyTo: true}, []string{"showctl/replies/", "qlab/", "showctl/replies/"})
	if want := `reply_to "showctl/repliesX": replies go under understudy/hall/reply/… or showctl/replies/… or qlab/… (or to ` + def + ")"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v\nwant it to name the prefixes: %s", err, want)
	}
	_, err = topics.ReplyTopic(Control{Verb: "takeover", ReplyTo: "x/y", HasReplyTo: true}, []string{"understudy/hall/", "$SYS/"})
	if err == nil || strings.Contains(err.Error(), "$SYS") || strings.Contains(err.Error(), "understudy/hall/…") {
		t.Errorf("bad prefixes named as allowed: %v", err)
	}
}

func TestCheckReplyPrefix(t *testing.T) {
	for _, p := range []string{"showctl/replies/", "a/", "/", "qlab/show 1/replies/", "ünïcode/", strings.Repeat("x", MaxReplyPrefix-1) + "/"} {
		if err := CheckReplyPrefix(p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	for _, tc := range []struct{ prefix, want string }{
		{"", "reply_prefix is empty"},
		{"showctl/replies", `end it in / ("showctl/replies/")`},
		{"showctl/+/", "no wild cards"},
		{"showctl/#", "no wild cards"},
		{"#/", "no wild cards"},
		{"$SYS/", "topics starting with $ are the broker's"},
		{"$share/g/", "topics starting with $ are the broker's"},
		{"understudy/", "inside understudy's own topics"},
		{"understudy/hall/reply/", "inside understudy's own topics"},
		{"understudy/other/", "inside understudy's own topics"},
		{"a\x00/", "not UTF-8 text without NUL"},
		{"\xff/", "not UTF-8 text without NUL"},
		{strings.Repeat("x", MaxReplyPrefix) + "/", "reply_prefix of 256 bytes: at most 255"},
	} {
		if err := CheckReplyPrefix(tc.prefix); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.prefix, err, tc.want)
		}
	}
}

// FuzzDecodeControl: no payload makes DecodeControl panic or accept what
// it must refuse; an accepted command has a good verb, no request_id or
// reply_to among its fields, and its reply goes to a topic one may publish on.
func FuzzDecodeControl(f *testing.F) {
	for _, seed := range []struct{ verb, payload string }{
		{"mode", `{"mode":"auto","reply_to":"showctl/#"}`},
		{"mode", `{"mode":"auto","reply_to":"understudy/hall/command/takeover"}`},
		{"takeover", `{"member":"main","standby":"backup","request_id":12345678901234567890.25,"reply_to":"understudy/hall/reply/x"}`},
		{"dance", `{"request_id":"r"}`},
		{"drill", `{"member":"m","dry_run":true,"revert_after":"5m"}`},
		{"Take-Over", `{}`},
		{"mode", ``},
		{"mode", `{"mode":"auto"}{}`},
		{"mode", `{"reply_to":"$SYS/x"}`},
		{"mode", `{"reply_to":"showctl/replies/x"}`},
		{"mode", `{"reply_to":"showctl/repliesX"}`},
		{"mode", `{"reply_to":"understudy/hall/reply/\u0000"}`},
		{"mode", `{"a":{"b":{"c":[1,2,{"d":null}]}}}`},
		{"mode", `{"mode":"auto","auth":{"key":"k1","from":"main","n":[1,1,1],"mac":"AAAAAAAAAAAAAAAAAAAAAA"}}`},
		{"mode", `{"\u0061uth":1}`},
	} {
		f.Add(seed.verb, []byte(seed.payload))
	}
	topics := Topics{Site: "hall"}
	prefixes := []string{"showctl/replies/"}
	f.Fuzz(func(t *testing.T, verb string, payload []byte) {
		c, err := DecodeControl(verb, payload)
		to, rerr := topics.ReplyTopic(c, prefixes)
		if cerr := CheckTopic(to); cerr != nil && verbRe.MatchString(verb) {
			t.Fatalf("reply topic %q: %v", to, cerr)
		}
		if rerr == nil && to != topics.Reply(c.Verb) && !strings.HasPrefix(to, topics.ReplyPrefix()) && !strings.HasPrefix(to, prefixes[0]) {
			t.Fatalf("reply topic %q outside %s and %s", to, topics.ReplyPrefix(), prefixes[0])
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrBadMAC) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if !verbRe.MatchString(verb) {
			t.Fatalf("verb %q accepted", verb)
		}
		if _, ok := c.Fields["request_id"]; ok {
			t.Fatal("request_id among the fields")
		}
		if _, ok := c.Fields["reply_to"]; ok {
			t.Fatal("reply_to among the fields")
		}
		if _, ok := c.Fields["auth"]; ok {
			t.Fatal("auth among the fields")
		}
	})
}

// FuzzReplyTopic: whatever reply_to and the configured reply prefix say,
// the answer goes to the default reply topic, under
// understudy/<site>/reply/, or under the prefix when CheckReplyPrefix takes
// it, on a plain topic: never a wild card, a $ topic, a command topic or
// another of understudy's own topics, NUL, or more than MaxReplyTo bytes.
// A prefix CheckReplyPrefix takes is itself never one that could reach them.
func FuzzReplyTopic(f *testing.F) {
	for _, seed := range []string{
		"showctl/#", "understudy/hall/reply/companion/42", "understudy/hall/reply/", "understudy/hall/reply/+",
		"understudy/hall/command/takeover", "understudy/hall/member/main/command", "$SYS/broker", "understudy/hall/reply/a\x00b",
		"understudy/hall/command/mode/reply", "understudy/hall/reply/" + strings.Repeat("x", MaxReplyTo), "understudy/hall/reply/\xff", "",
	} {
		f.Add("mode", seed, "")
	}
	for _, seed := range [][2]string{
		{"showctl/replies/x", "showctl/replies/"}, {"showctl/replies/#", "showctl/replies/"}, {"showctl/repliesX", "showctl/replies"},
		{"$SYS/broker/x", "$SYS/"}, {"understudy/hall/command/takeover", "understudy/hall/command/"}, {"understudy/other/x", "understudy/"},
		{"showctl/replies/" + strings.Repeat("x", MaxReplyTo), "showctl/replies/"}, {"a/b", "a/"}, {"a/\x00", "a/"},
	} {
		f.Add("takeover", seed[0], seed[1])
	}
	topics := Topics{Site: "hall"}
	f.Fuzz(func(t *testing.T, verb, replyTo, prefix string) {
		if perr := CheckReplyPrefix(prefix); perr == nil {
			if prefix == "" || len(prefix) > MaxReplyPrefix || strings.ContainsAny(prefix, "+#\x00") || prefix[0] == '$' ||
				!strings.HasSuffix(prefix, "/") || strings.HasPrefix(prefix, "understudy/") || !utf8.ValidString(prefix) {
				t.Fatalf("reply prefix %q accepted", prefix)
			}
		}
		if !verbRe.MatchString(verb) {
			return // DecodeControl refuses the command before its reply_to matters
		}
		to, err := topics.ReplyTopic(Control{Verb: verb, ReplyTo: replyTo, HasReplyTo: true}, []string{prefix})
		if cerr := CheckTopic(to); cerr != nil {
			t.Fatalf("reply_to %q, prefix %q: reply topic %q: %v", replyTo, prefix, to, cerr)
		}
		if _, isControl := topics.VerbOf(to); isControl && !strings.HasSuffix(to, "/reply") {
			t.Fatalf("reply_to %q, prefix %q: a command topic %q", replyTo, prefix, to)
		}
		if strings.HasPrefix(to, "understudy/") && to != topics.Reply(verb) && !strings.HasPrefix(to, topics.ReplyPrefix()) {
			t.Fatalf("reply_to %q, prefix %q: one of understudy's own topics %q", replyTo, prefix, to)
		}
		if err != nil {
			if to != topics.Reply(verb) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("reply_to %q refused (%v) but answered on %q", replyTo, err, to)
			}
			return
		}
		underPrefix := CheckReplyPrefix(prefix) == nil && strings.HasPrefix(to, prefix) && len(to) > len(prefix)
		if to != replyTo || len(to) > MaxReplyTo || to != topics.Reply(verb) && !strings.HasPrefix(to, topics.ReplyPrefix()) && !underPrefix {
			t.Fatalf("reply_to %q, prefix %q accepted as %q", replyTo, prefix, to)
		}
	})
}
