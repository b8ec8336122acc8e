package osc

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors wrap
// ErrMalformed, and that what it accepts is exactly what Marshal writes (a
// message without a type tag string gains an empty one).
func FuzzParse(f *testing.F) {
	for _, m := range []Message{
		{"/go", nil},
		{"/oscillator/4/frequency", []any{float32(440)}},
		{"/foo", []any{int32(1000), int32(-1), "hello", float32(1.234), float32(5.678)}},
		{"/b", []any{[]byte{1, 2, 3, 4, 5}, true, false, nil}},
	} {
		b, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("/go\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := m.Marshal()
		noTags := len(m.Args) == 0 && bytes.Equal(append(data[:len(data):len(data)], ',', 0, 0, 0), enc)
		switch {
		case err != nil && len(m.Args) == 0 && len(data)+4 > MaxPacket:
			return // no type tags, and adding them makes it too large
		case err != nil:
			t.Fatalf("Marshal(Parse(%q)): %v", data, err)
		case !bytes.Equal(enc, data) && !noTags:
			t.Fatalf("Marshal(Parse(%q)) = %q", data, enc)
		}
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))): %v", data, err)
		}
		if enc2, _ := again.Marshal(); !bytes.Equal(enc2, enc) {
			t.Fatalf("second round trip of %q: %q", data, enc2)
		}
	})
}
