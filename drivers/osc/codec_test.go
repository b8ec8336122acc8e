package osc

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The examples of the OSC 1.0 specification, byte for byte.
func TestSpecExamples(t *testing.T) {
	for _, tc := range []struct {
		m   Message
		hex string
	}{
		{Message{"/oscillator/4/frequency", []any{float32(440)}},
			"2f6f7363 696c6c61 746f722f 342f6672 65717565 6e637900 2c660000 43dc0000"},
		{Message{"/foo", []any{int32(1000), int32(-1), "hello", float32(1.234), float32(5.678)}},
			"2f666f6f 00000000 2c696973 66660000 000003e8 ffffffff 68656c6c 6f000000 3f9df3b6 40b5b22d"},
	} {
		want := unhex(t, tc.hex)
		got, err := tc.m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Marshal(%v) =\n%x, want\n%x", tc.m, got, want)
		}
		back, err := Parse(want)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, tc.m) {
			t.Errorf("Parse = %#v, want %#v", back, tc.m)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Address: "/go"},
		{Address: "/a", Args: []any{true, false, nil, "", []byte{}}},
		{Address: "/abc", Args: []any{"abc", "abcd", []byte{1}, []byte{1, 2, 3, 4}, []byte{1, 2, 3, 4, 5}}},
		{Address: "/cue/*/st[a-z]rt", Args: []any{int32(-2147483648), float32(-0.5), "ünïcode"}},
	} {
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if len(b)%4 != 0 {
			t.Errorf("%v: %d bytes", m, len(b))
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(%v)): %v", m, err)
		}
		if len(m.Args) == 0 {
			m.Args = nil
		}
		if !reflect.DeepEqual(back, m) {
			t.Errorf("round trip %#v became %#v", m, back)
		}
	}
	// A blob is padded with NULs to a multiple of 4.
	b, _ := Message{"/b", []any{[]byte{9, 9, 9, 9, 9}}}.Marshal()
	if want := unhex(t, "2f620000 2c620000 00000005 09090909 09000000"); !bytes.Equal(b, want) {
		t.Errorf("blob: %x, want %x", b, want)
	}
	// T, F and N take no bytes after the type tags.
	b, _ = Message{"/t", []any{true, false, nil}}.Marshal()
	if want := unhex(t, "2f740000 2c54464e 00000000"); !bytes.Equal(b, want) {
		t.Errorf("T F N: %x, want %x", b, want)
	}
}

func TestMarshalErrors(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		want string
	}{
		{Message{Address: "go"}, "must start with /"},
		{Message{Address: "/a b"}, "not allowed"},
		{Message{Address: "/a\x00"}, "not allowed"},
		{Message{Address: "/a", Args: []any{"a\x00b"}}, "NUL"},
		{Message{Address: "/a", Args: []any{3}}, "OSC has no type for int"},
		{Message{Address: "/a", Args: []any{make([]byte, MaxPacket)}}, "larger than"},
	} {
		if _, err := tc.m.Marshal(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Marshal(%.40v) error %v, want %q", tc.m, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ hex, want string }{
		{"", "address: string without a NUL terminator"},
		{"2f6100", "not a multiple of 4"},
		{"2f616263", "without a NUL terminator"},
		{"2f610001", "padding is not NUL"},
		{"61000000", "must start with /"},
		{"2f610000 69000000", "does not start with ','"},
		{"2f610000 2c690000", "argument 1 (i): packet ends"},
		{"2f610000 2c660000", "argument 1 (f): packet ends"},
		{"2f610000 2c730000", "argument 1 (s): string without"},
		{"2f610000 2c620000", "argument 1 (b): packet ends"},
		{"2f610000 2c620000 00000005 01020304", "blob of 5 bytes, 4 left"},
		{"2f610000 2c620000 00000003 01020304", "padding is not NUL"},
		{"2f610000 2c620000 ffffffff", "blob of 4294967295 bytes"},
		{"2f610000 2c680000 00000000 00000000", `type tag 'h' is not supported`},
		{"2f610000 2c000000 00000000", "4 bytes after the last argument"},
		{"2362756e 646c6500 00000000 00000001", "bundles are not supported"},
	} {
		_, err := Parse(unhex(t, tc.hex))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) error %v, want %q", tc.hex, err, tc.want)
		}
	}
	// Without a type tag string (pre-1.0 senders): no arguments.
	m, err := Parse(unhex(t, "2f676f00"))
	if err != nil || m.Address != "/go" || m.Args != nil {
		t.Errorf("no type tags: %#v, %v", m, err)
	}
}
