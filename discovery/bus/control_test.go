package bus

import (
	"errors"
	"strings"
	"testing"
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
	for _, tc := range []struct {
		replyTo string
		set     bool
		want    string
		err     bool
	}{
		{"", false, "understudy/hall/command/mode/reply", false},
		{"understudy/hall/reply/companion/42", true, "understudy/hall/reply/companion/42", false},
		{"understudy/hall/command/mode/reply", true, "understudy/hall/command/mode/reply", false},
		{"", true, "understudy/hall/command/mode/reply", true},
		{"understudy/hall/reply/", true, "understudy/hall/command/mode/reply", true},
		{"understudy/hall/reply/+", true, "understudy/hall/command/mode/reply", true},
		{"understudy/hall/reply/#", true, "understudy/hall/command/mode/reply", true},
		{"understudy/hall/member/main/command", true, "understudy/hall/command/mode/reply", true},
		{"understudy/other/reply/x", true, "understudy/hall/command/mode/reply", true},
		{"understudy/hall/command/takeover/reply", true, "understudy/hall/command/mode/reply", true},
		{"lights/stage/on", true, "understudy/hall/command/mode/reply", true},
		{"understudy/hall/reply/" + strings.Repeat("x", MaxReplyTo), true, "understudy/hall/command/mode/reply", true},
		{"understudy/hall/reply/a\x00b", true, "understudy/hall/command/mode/reply", true},
	} {
		got, err := topics.ReplyTopic(Control{Verb: "mode", ReplyTo: tc.replyTo, HasReplyTo: tc.set})
		if got != tc.want || (err != nil) != tc.err || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("reply_to %q (set %v): %q, %v; want %q, error %v", tc.replyTo, tc.set, got, err, tc.want, tc.err)
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
		{"mode", `{"reply_to":"understudy/hall/reply/\u0000"}`},
		{"mode", `{"a":{"b":{"c":[1,2,{"d":null}]}}}`},
	} {
		f.Add(seed.verb, []byte(seed.payload))
	}
	topics := Topics{Site: "hall"}
	f.Fuzz(func(t *testing.T, verb string, payload []byte) {
		c, err := DecodeControl(verb, payload)
		to, rerr := topics.ReplyTopic(c)
		if cerr := CheckTopic(to); cerr != nil && verbRe.MatchString(verb) {
			t.Fatalf("reply topic %q: %v", to, cerr)
		}
		if rerr == nil && to != topics.Reply(c.Verb) && !strings.HasPrefix(to, topics.ReplyPrefix()) {
			t.Fatalf("reply topic %q outside %s", to, topics.ReplyPrefix())
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
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
	})
}

// FuzzReplyTopic: whatever reply_to says, the answer goes to the default
// reply topic or under understudy/<site>/reply/, on a plain topic: never a
// wild card, a $ topic, a command topic, NUL, or more than MaxReplyTo bytes.
func FuzzReplyTopic(f *testing.F) {
	for _, seed := range []string{
		"showctl/#", "understudy/hall/reply/companion/42", "understudy/hall/reply/", "understudy/hall/reply/+",
		"understudy/hall/command/takeover", "understudy/hall/member/main/command", "$SYS/broker", "understudy/hall/reply/a\x00b",
		"understudy/hall/command/mode/reply", "understudy/hall/reply/" + strings.Repeat("x", MaxReplyTo), "understudy/hall/reply/\xff", "",
	} {
		f.Add("mode", seed)
	}
	topics := Topics{Site: "hall"}
	f.Fuzz(func(t *testing.T, verb, replyTo string) {
		if !verbRe.MatchString(verb) {
			return // DecodeControl refuses the command before its reply_to matters
		}
		to, err := topics.ReplyTopic(Control{Verb: verb, ReplyTo: replyTo, HasReplyTo: true})
		if cerr := CheckTopic(to); cerr != nil {
			t.Fatalf("reply_to %q: reply topic %q: %v", replyTo, to, cerr)
		}
		if _, isControl := topics.VerbOf(to); isControl && !strings.HasSuffix(to, "/reply") {
			t.Fatalf("reply_to %q: a command topic %q", replyTo, to)
		}
		if err != nil {
			if to != topics.Reply(verb) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("reply_to %q refused (%v) but answered on %q", replyTo, err, to)
			}
			return
		}
		if to != replyTo || len(to) > MaxReplyTo || to != topics.Reply(verb) && !strings.HasPrefix(to, topics.ReplyPrefix()) {
			t.Fatalf("reply_to %q accepted as %q", replyTo, to)
		}
	})
}
