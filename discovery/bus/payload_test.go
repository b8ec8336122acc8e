package bus

import (
	"bytes"
	"errors"
	"regexp"

	"log/slog"
	"strings"
	"testing"
)

func TestDecodeHeartbeat(t *testing.T) {
	good := `{"member":"main","boot":"a1b2c3","conn":2,"seq":17,"interval_ms":100,"version":"0.1.0","future_field":true}`
	h, err := DecodeHeartbeat("main", []byte(good))
	if err != nil {
		t.Fatalf("good heartbeat rejected: %v", err)
	}
	if h.Member != "main" || h.Boot != "a1b2c3" || h.Conn != 2 || h.Seq != 17 || h.Interval().Milliseconds() != 100 {
		t.Errorf("decoded %+v", h)
	}
	for _, tc := range []struct {
		name, topicMember, payload string
		want                       error
	}{
		{"not JSON", "main", `hello`, ErrMalformed},
		{"truncated", "main", `{"member":"main",`, ErrMalformed},
		{"two documents", "main", good + good, ErrMalformed},
		{"seq is a string", "main", `{"member":"main","boot":"a","conn":1,"seq":"17","interval_ms":100}`, ErrMalformed},
		{"negative conn", "main", `{"member":"main","boot":"a","conn":-1,"seq":1,"interval_ms":100}`, ErrMalformed},
		{"member is a number", "main", `{"member":7,"boot":"a","conn":1,"seq":1,"interval_ms":100}`, ErrMalformed},
		{"null", "main", `null`, ErrInvalid},
		{"empty object", "main", `{}`, ErrInvalid},
		{"other member's topic", "backup", good, ErrWrongMember},
		{"wildcard member", "+", `{"member":"+","boot":"a","conn":1,"seq":1,"interval_ms":100}`, ErrInvalid},
		{"no boot", "main", `{"member":"main","conn":1,"seq":1,"interval_ms":100}`, ErrInvalid},
		{"conn 0: sent over several brokers", "main", `{"member":"main","boot":"a","conn":0,"seq":1,"interval_ms":100}`, nil},
		{"zero interval", "main", `{"member":"main","boot":"a","conn":1,"seq":1,"interval_ms":0}`, ErrInvalid},
		{"interval of a year", "main", `{"member":"main","boot":"a","conn":1,"seq":1,"interval_ms":31536000000}`, ErrInvalid},
		{"1 MB payload", "main", `{"member":"main","boot":"a","conn":1,"seq":1,"interval_ms":100,"pad":"` + strings.Repeat("x", 1<<20) + `"}`, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeHeartbeat(tc.topicMember, []byte(tc.payload))
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodePresence(t *testing.T) {
	p, err := DecodePresence("main", []byte(`{"member":"main","state":"gone","boot":"b1","conn":3}`))
	if err != nil || p.State != "gone" || p.Conn != 3 {
		t.Fatalf("decoded %+v, %v", p, err)
	}
	for _, bad := range []string{`{"member":"main","state":"sleeping","boot":"b1","conn":3}`, `{"member":"main","state":"gone"}`, `[]`} {
		if _, err := DecodePresence("main", []byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// description stands for the runtime's member entry, which the bus decodes
// an about payload into without knowing it: encoding/json names, as the
// runtime publishes them.
type description struct {
	ID    string
	Roles []string
}

func TestDecodeAbout(t *testing.T) {
	d, err := DecodeAbout[description]("rec-2", []byte(`{"ID":"rec-2","Roles":["recorder"],"Usage":null}`))
	if err != nil || d.ID != "rec-2" || len(d.Roles) != 1 {
		t.Fatalf("decoded %+v, %v", d, err)
	}
	for _, tc := range []struct {
		name, payload string
		want          error
	}{
		{"another member's topic", `{"ID":"rec-3"}`, ErrWrongMember},
		{"no id", `{"Roles":["recorder"]}`, ErrWrongMember},
		{"null", `null`, ErrWrongMember},
		{"not JSON", `rec-2`, ErrMalformed},
		{"roles is a string", `{"ID":"rec-2","Roles":"recorder"}`, ErrMalformed},
		{"two documents", `{"ID":"rec-2"}{"ID":"rec-2"}`, ErrMalformed},
		{"over 64 KiB", `{"ID":"rec-2","Pad":"` + strings.Repeat("x", MaxAbout) + `"}`, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DecodeAbout[description]("rec-2", []byte(tc.payload))
			if !errors.Is(err, tc.want) || d.ID != "" {
				t.Errorf("%+v, %v; want %v", d, err, tc.want)
			}
		})
	}
}

func TestDecodeCopyProgress(t *testing.T) {
	p, err := DecodeCopyProgress("rec-1", []byte(`{"action":"main-ab.1.7","member":"rec-1","from":"sb","files_done":2,"files_total":5,"bytes_done":10,"bytes_total":50,"rate":5,"eta_s":8}`))
	if err != nil || p.FilesTotal != 5 || p.ETA != 8 || p.From != "sb" {
		t.Fatalf("decoded %+v, %v", p, err)
	}
	for _, bad := range []string{
		`{"action":"main-ab.1.7","member":"rec-2"}`,                 // another member's topic
		`{"action":"","member":"rec-1"}`,                            // no action
		`{"action":"main-ab.1.7","member":"rec-1","bytes_done":-1}`, // negative
	} {
		if _, err := DecodeCopyProgress("rec-1", []byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestDecodeCovering(t *testing.T) {
	c, err := DecodeCovering("sb", []byte(`{"member":"sb","covering":[{"member":"main","since":"2026-01-01T00:00:00Z","action":"main-ab.1.7","epoch":3},{"member":"rec-2","since":"2026-01-02T00:00:00Z"}]}`))
	if err != nil || len(c.Covering) != 2 || c.Covering[0].Member != "main" || c.Covering[0].Epoch != 3 || c.Covering[1].Since.Day() != 2 {
		t.Fatalf("decoded %+v, %v", c, err)
	}
	if c, err := DecodeCovering("sb", []byte(`{"member":"sb","covering":[]}`)); err != nil || len(c.Covering) != 0 {
		t.Fatalf("an empty report: %+v, %v", c, err)
	}
	for _, bad := range []string{
		`{"member":"other","covering":[]}`,                                                 // another member's topic
		`{"member":"sb","covering":[{"member":""}]}`,                                       // no member
		`{"member":"sb","covering":[{"member":"a/b"}]}`,                                    // not an id
		`{"member":"sb","covering":[{"member":"sb"}]}`,                                     // itself
		`{"member":"sb","covering":[{"member":"a"},{"member":"a"}]}`,                       // twice
		`{"member":"sb","covering":[{"member":"a","action":"x y"}]}`,                       // bad action
		`{"member":"sb","covering":[{"member":"a","since":"yesterday"}]}`,                  // bad time
		`{"member":"sb","covering":[]} {}`,                                                 // trailing data
		`{"member":"sb","covering":[],"extra":"` + strings.Repeat("x", MaxCovering) + `"}`, // too large
	} {
		if _, err := DecodeCovering("sb", []byte(bad)); err == nil {
			t.Errorf("accepted %.80s", bad)
		}
	}
}

func TestDropsCountEveryDropButLogOncePerSourceAndReason(t *testing.T) {
	var log bytes.Buffer
	d := NewDrops(slog.New(slog.NewTextHandler(&log, nil)))
	for range 100 {
		_, err := DecodeHeartbeat("main", []byte("garbage"))
		d.Drop("main", "understudy/s/member/main/heartbeat", 7, err)
	}
	_, err := DecodeHeartbeat("x", bytes.Repeat([]byte("a"), MaxPayload+1))
	d.Drop("x", "understudy/s/member/x/heartbeat", MaxPayload+1, err)
	if got := d.Counts(); got["malformed_JSON"] != 100 || got["payload_too_large"] != 1 || d.Total() != 101 {
		t.Errorf("counts %v total %d", got, d.Total())
	}
	if n := strings.Count(log.String(), "dropped bad bus payload"); n != 2 {
		t.Errorf("logged %d lines, want 2 (one per source):\n%s", n, log.String())
	}
	// After a malformed heartbeat on main's topic, a forgery there (a bad
	// code, a replay) is still logged, once per reason; the line says the
	// source is where it came, and how large it was.
	log.Reset()
	for range 3 {
		d.Drop("main", "understudy/s/member/main/presence", 118, ErrBadMAC)
		d.Drop("main", "understudy/s/member/main/heartbeat", 96, ErrReplayed)
	}
	out := log.String()
	if n := strings.Count(out, "dropped bad bus payload"); n != 2 {
		t.Errorf("logged %d lines for a bad code and a replay after a malformed payload, want 2:\n%s", n, out)
	}
	for _, want := range []string{"reason=bad_MAC", "reason=stale_or_replayed", "bytes=118", "bytes=96", "MQTT does not say who published", "member whose topic it came on"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
	// A size not known where the payload was refused is not written as 0.
	log.Reset()
	d.Drop("ghost", "understudy/s/member/ghost/heartbeat", -1, ErrUnknownMember)
	if out := log.String(); strings.Contains(out, "bytes=") {
		t.Errorf("an unknown size was logged: %s", out)
	}
}

func TestTopics(t *testing.T) {
	tp := Topics{Site: "demo"}
	if got := tp.Heartbeat("main"); got != "understudy/demo/member/main/heartbeat" {
		t.Errorf("heartbeat topic %q", got)
	}
	if got := tp.Covering("sb"); got != "understudy/demo/member/sb/covering" {
		t.Errorf("covering topic %q", got)
	}
	if got := tp.AllCovering(); got != "understudy/demo/member/+/covering" {
		t.Errorf("covering subscription %q", got)
	}
	for topic, want := range map[string][3]string{
		"understudy/demo/member/main/heartbeat": {"main", "heartbeat", "true"},
		"understudy/demo/member/main/presence":  {"main", "presence", "true"},
		"understudy/other/member/main/presence": {"", "", "false"},
		"understudy/demo/member//presence":      {"", "", "false"},
		"understudy/demo/member/main/a/b":       {"", "", "false"},
		"understudy/demo/events":                {"", "", "false"},
	} {
		id, leaf, ok := tp.MemberOf(topic)
		if id != want[0] || leaf != want[1] || (ok && want[2] != "true") || (!ok && want[2] != "false") {
			t.Errorf("MemberOf(%q) = %q %q %v", topic, id, leaf, ok)
		}
	}
}

// FuzzDecodeHeartbeat: whatever arrives, decoding never panics, and what it
// accepts is a heartbeat that names the topic's member and passes the checks.
func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add("main", []byte(`{"member":"main","boot":"a1b2c3","conn":2,"seq":17,"interval_ms":100}`))
	f.Add("main", []byte(`{"member":"main","boot":"a","conn":1,"seq":1,"interval_ms":100,"x":[1,2,{"y":null}]}`))
	f.Add("main", []byte(`{"member":"main","boot":"a","conn":18446744073709551615,"seq":1,"interval_ms":1}`))
	f.Add("main", []byte(`{"member":"main","member":"other","boot":"a","conn":1,"seq":1,"interval_ms":1}`))
	f.Add("m", []byte(`{"member":"m\u0000","boot":"a","conn":1,"seq":1,"interval_ms":1}`))
	f.Add("main", []byte(`{"member":"main","boot":"a","conn":1e3,"seq":1,"interval_ms":1}`))
	f.Add("main", []byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`))
	f.Add("main", []byte("\xff\xfe{"))
	f.Fuzz(func(t *testing.T, member string, payload []byte) {
		h, err := DecodeHeartbeat(member, payload)
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if h.Member != member || !isToken(h.Boot) || h.Conn == 0 || h.IntervalMS < 1 || len(payload) > MaxPayload {
			t.Fatalf("accepted invalid heartbeat %+v from %q", h, payload)
		}
	})
}

// FuzzDecodePresence: same properties for presence payloads.
func FuzzDecodePresence(f *testing.F) {
	f.Add("main", []byte(`{"member":"main","state":"gone","boot":"b1","conn":3}`))
	f.Add("main", []byte(`{"member":"main","state":"closed","boot":"b1","conn":0}`))
	f.Add("main", []byte(`{"state":"online"}`))
	f.Fuzz(func(t *testing.T, member string, payload []byte) {
		p, err := DecodePresence(member, payload)
		if err != nil {
			return
		}
		if p.Member != member || (p.State != "online" && p.State != "closed" && p.State != "gone") {
			t.Fatalf("accepted invalid presence %+v", p)
		}
	})
}

// isToken is the pattern it replaced, checked by hand.
func FuzzIsToken(f *testing.F) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	for _, s := range []string{"main", "a", "-a", "a-", "a.b_c", strings.Repeat("a", 64), strings.Repeat("a", 65), "", "é", "a b", "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isToken(s), re.MatchString(s); got != want {
			t.Fatalf("isToken(%q) = %v, the pattern says %v", s, got, want)
		}
		if isToken([]byte(s)) != isToken(s) {
			t.Fatalf("isToken differs for %q as bytes", s)
		}
	})
}
