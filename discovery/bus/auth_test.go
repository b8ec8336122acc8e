package bus

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"understudy/sitekey"
)

func testRing(t *testing.T, id string) *sitekey.Ring {
	t.Helper()
	k, err := sitekey.NewKey(id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sitekey.NewRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealedPayloadsOpenToTheOriginalBytes(t *testing.T) {
	r := testRing(t, "k1")
	topic := "understudy/hall/member/main/heartbeat"
	for _, p := range []string{
		`{"member":"main","boot":"b","conn":1,"seq":1,"interval_ms":100}`,
		`{}`,
		`{"text":"a \"quoted\" \"auth\":{ inside","n":[1,2]}`,
		`{"nested":{"auth":{"key":"k9"}}}`,
	} {
		s := Stamp{From: "main", Boot: 7, Conn: 2, Seq: 99}
		sealed, err := Seal(r, topic, []byte(p), s)
		if err != nil {
			t.Fatal(err)
		}
		plain, got, err := Open(r, topic, sealed)
		if err != nil {
			t.Fatalf("%s: %v (sealed %s)", p, err, sealed)
		}
		if string(plain) != p || got != s {
			t.Errorf("opened %s %v, want %s %v", plain, got, p, s)
		}
	}
	if _, err := Seal(r, topic, []byte(`[1,2]`), Stamp{From: "main"}); err == nil {
		t.Error("sealed a JSON array")
	}
	if _, err := Seal(nil, topic, []byte(`{}`), Stamp{From: "main"}); err == nil {
		t.Error("sealed without a key")
	}
}

// Receivers that predate authentication decode a sealed payload as before:
// the auth member is one more field they ignore.
func TestASealedHeartbeatDecodesWithTheOldDecoder(t *testing.T) {
	r := testRing(t, "k1")
	topic := Topics{Site: "hall"}.Heartbeat("main")
	sealed, err := Seal(r, topic, []byte(`{"member":"main","boot":"b1","conn":1,"seq":5,"interval_ms":100}`), Stamp{From: "main", Boot: 1, Conn: 1, Seq: 5})
	if err != nil {
		t.Fatal(err)
	}
	hb, err := DecodeHeartbeat("main", sealed)
	if err != nil || hb.Seq != 5 {
		t.Errorf("old decoder: %+v %v", hb, err)
	}
}

func TestOpenRefusesForgeriesAndChanges(t *testing.T) {
	r := testRing(t, "k1")
	topic := Topics{Site: "hall"}.Presence("main")
	sealed, err := Seal(r, topic, []byte(`{"member":"main","state":"online","boot":"b1","conn":1}`), Stamp{From: "main", Boot: 3, Conn: 1, Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := Seal(testRing(t, "k1"), topic, []byte(`{"member":"main","state":"gone","boot":"b1","conn":1}`), Stamp{From: "main", Boot: 3, Conn: 1, Seq: 2})
	cases := map[string]struct {
		topic   string
		payload []byte
		want    error
	}{
		"plain JSON":         {topic, []byte(`{"member":"main","state":"gone","boot":"b1","conn":1}`), ErrUnauthenticated},
		"another site's key": {topic, forged, ErrBadMAC},
		"state changed":      {topic, bytes.Replace(sealed, []byte(`online`), []byte(`gone!!`), 1), ErrBadMAC},
		"stamp changed":      {topic, bytes.Replace(sealed, []byte(`"n":[3,`), []byte(`"n":[9,`), 1), ErrBadMAC},
		"sender changed":     {topic, bytes.Replace(sealed, []byte(`"from":"main"`), []byte(`"from":"mai2"`), 1), ErrBadMAC},
		"other topic":        {Topics{Site: "hall"}.Presence("backup"), sealed, ErrBadMAC},
		"key unknown":        {topic, bytes.Replace(sealed, []byte(`"key":"k1"`), []byte(`"key":"k2"`), 1), ErrBadMAC},
		"mac cut":            {topic, append(append([]byte{}, sealed[:len(sealed)-6]...), `"}}`...), ErrBadMAC},
		"mac not last":       {topic, bytes.Replace(sealed, []byte(`,"mac":"`), []byte(`,"x":1,"mac":"`), 1), ErrBadMAC},
		"too large":          {topic, append(bytes.Repeat([]byte(" "), MaxAuthenticated), sealed...), ErrUnauthenticated},
	}
	for name, c := range cases {
		if _, _, err := Open(r, c.topic, c.payload); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

func TestFreshnessTakesEachMessageOnceAndInOrder(t *testing.T) {
	f := NewFreshness()
	hb := "understudy/hall/member/main/heartbeat"
	steps := []struct {
		topic    string
		s        Stamp
		retained bool
		path     int
		want     error
	}{
		{hb, Stamp{"main", 3, 1, 10}, false, -1, nil},
		{hb, Stamp{"main", 3, 1, 10}, false, -1, ErrReplayed},     // the same again
		{hb, Stamp{"main", 3, 1, 9}, false, -1, ErrReplayed},      // older
		{hb, Stamp{"main", 3, 1, 11}, false, -1, nil},             // next
		{hb, Stamp{"main", 3, 2, 1}, false, -1, nil},              // a new connection
		{hb, Stamp{"main", 3, 1, 12}, false, -1, ErrReplayed},     // the old connection's
		{hb, Stamp{"main", 2, 9, 99}, false, -1, ErrReplayed},     // an earlier boot's
		{hb, Stamp{"main", 4, 1, 1}, false, -1, nil},              // restarted
		{hb, Stamp{"backup", 1, 1, 1}, false, -1, nil},            // another sender
		{hb + "x", Stamp{"main", 1, 1, 1}, false, -1, nil},        // another topic
		{hb, Stamp{"main", 4, 1, 2}, true, -1, nil},               // retained: state, taken
		{hb, Stamp{"main", 4, 1, 1}, true, -1, nil},               // an older retained one too
		{hb, Stamp{"main", 4, 1, WillSeq}, false, 0, nil},         // its Last Will
		{hb, Stamp{"main", 4, 1, WillSeq}, false, 0, ErrReplayed}, // the Will once only
		{hb, Stamp{"main", 4, 1, WillSeq}, false, 1, nil},         // but once per path
		{hb, Stamp{"main", 4, 2, WillSeq}, false, 0, nil},         // a later connection's
		{hb, Stamp{"main", 4, 1, WillSeq}, false, 0, ErrReplayed}, // not an earlier one's after it
		{hb, Stamp{"main", 4, 1, 3}, false, 0, nil},               // a path's own message: marked apart
		{hb, Stamp{"main", 4, 1, 3}, false, 1, nil},               // each path's
		{hb, Stamp{"main", 4, 1, 3}, false, 1, ErrReplayed},       // once
	}
	for i, st := range steps {
		if err := f.Take(st.topic, st.s, st.retained, st.path); !errors.Is(err, st.want) {
			t.Errorf("step %d %v: got %v, want %v", i, st.s, err, st.want)
		}
	}
	if err := f.Take(hb, Stamp{"main", 4, 1, 2}, false, -1); err == nil || !strings.Contains(err.Error(), "newest taken main boot 4 conn 1 seq 2") {
		t.Errorf("a retained older message moved the mark back: %v", err)
	}
}

func TestFreshnessOverSeveralPathsCallsACopyADuplicate(t *testing.T) {
	f := NewFreshness()
	f.SeveralPaths()
	hb := "understudy/hall/member/main/heartbeat"
	if err := f.Take(hb, Stamp{"main", 3, 0, 10}, false, -1); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Stamp{{"main", 3, 0, 10}, {"main", 3, 0, 9}} {
		if err := f.Take(hb, s, false, -1); !errors.Is(err, ErrDuplicate) || errors.Is(err, ErrReplayed) {
			t.Errorf("%v over the other path: got %v, want a duplicate", s, err)
		}
	}
	// What a path carries of its own (a presence) is marked per path: an
	// older one on another path is news there, not a duplicate.
	presence := "understudy/hall/member/main/presence"
	if err := f.Take(presence, Stamp{"main", 3, 0, 21}, false, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Take(presence, Stamp{"main", 3, 0, 20}, false, 0); err != nil {
		t.Errorf("the online of path 0, sealed before path 1's and come after it: %v", err)
	}
	if err := f.Take(presence, Stamp{"main", 3, 0, 20}, false, 0); !errors.Is(err, ErrReplayed) {
		t.Errorf("it again on its path: got %v, want a replay", err)
	}
	// A Will is a path's own: a second copy on the same path is a replay.
	if err := f.Take(hb, Stamp{"main", 3, 4, WillSeq}, false, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Take(hb, Stamp{"main", 3, 4, WillSeq}, false, 1); !errors.Is(err, ErrReplayed) {
		t.Errorf("a Will again on its path: got %v, want a replay", err)
	}
}

// Open never panics and never accepts what the key did not seal, whatever
// the bytes; what it accepts opens to a payload that seals back the same.
func FuzzOpen(f *testing.F) {
	k, _ := sitekey.NewKey("k1")
	ring, _ := sitekey.NewRing(k)
	topic := "understudy/hall/member/main/heartbeat"
	good, _ := Seal(ring, topic, []byte(`{"member":"main","seq":1}`), Stamp{From: "main", Boot: 1, Conn: 1, Seq: 1})
	f.Add(good)
	f.Add([]byte(`{"auth":{"key":"k1","from":"main","n":[1,1,1],"mac":"AAAAAAAAAAAAAAAAAAAAAA"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`"auth":{"}}`))
	f.Add([]byte(` "auth":{"key":"k1","mac":"AAAAAAAAAAAAAAAAAAAAAA"}}`)) // nothing before the member: once a panic
	f.Fuzz(func(t *testing.T, payload []byte) {
		plain, st, err := Open(ring, topic, payload)
		if err != nil {
			return
		}
		again, err := Seal(ring, topic, plain, st)
		if err != nil || string(again) != string(payload) {
			t.Fatalf("opened %q from %q, which seals back to %q (%v)", plain, payload, again, err)
		}
	})
}
