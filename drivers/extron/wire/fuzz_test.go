package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"Out03 In07 All", "Out3In1Vid", "In05 All", "07", "V8X4 A8X4", "E22", "Password: ",
		"Login Administrator", "(c) Copyright 2013, Extron Electronics", "Qik", "Vrb3", "Nmo12,Main PJ1", "1.23"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r := ParseReply(line)
		out := r.Line()
		if again := ParseReply(out); !reflect.DeepEqual(again, r) {
			t.Fatalf("ParseReply(%q) = %#v; its Line %q parses to %#v", line, r, out, again)
		}
		if !strings.ContainsAny(line, "\r\n") && strings.ContainsAny(out, "\r\n") {
			t.Fatalf("ParseReply(%q).Line() = %q has a line end", line, out)
		}
		if _, isText := r.(Text); !isText && len(out) > len(line)+8 {
			t.Fatalf("ParseReply(%q).Line() = %q grew", line, out)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"1*3!", "003*003%", "5*!", "3$", "I", "\x1b+Q3*4%3*5%3*6!\r", "\x1b3NI\r",
		"\x1b1,Main PJ1NO\r", "\x1b3CV\r", "\x1bCV\r", "1*2*3!", "\x1bFOO\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, tok []byte) {
		c, err := ParseCommand(tok)
		if err != nil {
			if !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("ParseCommand(%q) error %v does not wrap ErrUnknownCommand", tok, err)
			}
			return
		}
		b := c.Bytes()
		again, err := ParseCommand(b)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("ParseCommand(%q) = %#v; its Bytes %q parse to %#v, %v", tok, c, b, again, err)
		}
		// A command's bytes are one token of the command stream.
		toks, err := scanAll(bytes.NewReader(b), SplitCommands, 2)
		if err != nil || len(toks) != 1 || toks[0] != string(b) {
			t.Fatalf("%q splits into %q, %v", b, toks, err)
		}
	})
}

// FuzzReplyStream checks the device-side stream reader: through the Telnet
// filter, all at once and one byte at a time, it yields the same lines (but
// for the password prompt, which is yielded as soon as it is seen), none
// holding a line end, and fails only on an overlong line.
func FuzzReplyStream(f *testing.F) {
	f.Add([]byte("\r\n(c) Copyright 2013, Extron Electronics, DXP 88 HDMI, V1.23\r\nTue, 02 Dec 2025\r\n\r\nPassword:"))
	f.Add([]byte("Login User\r\nV8X4 A8X4\r\n01\r\nOut03 In07 All\r\nE10\r\n"))
	f.Add([]byte("\xff\xfd\x01\xff\xfa\x18\x01\xff\xf0Qik\r\n\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		limit := len(data) + 1
		all, err := scanAll(NewTelnetReader(bytes.NewReader(data), nil), SplitReplies, limit)
		if err != nil && !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("stream error %v", err)
		}
		for _, l := range all {
			if l == "" || strings.ContainsAny(l, "\r\n") || len(l) > MaxLine {
				t.Fatalf("line %q", l)
			}
		}
		one, err2 := scanAll(NewTelnetReader(iotest.OneByteReader(bytes.NewReader(data)), nil), SplitReplies, limit)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("all at once: %v; one byte at a time: %v", err, err2)
		}
		if !bytes.Contains(data, []byte("Password:")) && err == nil && !reflect.DeepEqual(all, one) {
			t.Fatalf("all at once %q; one byte at a time %q", all, one)
		}
	})
}

// FuzzCommandStream checks the host-side stream reader the simulator uses:
// it never fails, yields the same tokens all at once and one byte at a
// time, loses no byte but separators, and bounds every token.
func FuzzCommandStream(f *testing.F) {
	f.Add([]byte("1*3!3%I\x1b3NI\r\r\nQ"))
	f.Add([]byte("\x1b+Q1*2!3*4!\r12\r\x1bCV\r"))
	f.Add([]byte("pw\r1*1!02*02&003*003%4*8$\x00X"))
	f.Fuzz(func(t *testing.T, data []byte) {
		limit := len(data) + 1
		all, err := scanAll(bytes.NewReader(data), SplitCommands, limit)
		if err != nil {
			t.Fatalf("stream error %v", err)
		}
		one, err := scanAll(iotest.OneByteReader(bytes.NewReader(data)), SplitCommands, limit)
		if err != nil || !reflect.DeepEqual(all, one) {
			t.Fatalf("all at once %q; one byte at a time %q, %v", all, one, err)
		}
		var kept []byte
		for _, tok := range all {
			if tok == "" || len(tok) > MaxCommand {
				t.Fatalf("token %q", tok)
			}
			kept = append(kept, tok...)
		}
		if got, want := dropSeparators(kept), dropSeparators(data); !bytes.Equal(got, want) {
			t.Fatalf("tokens %q lose bytes of %q", all, data)
		}
	})
}

// dropSeparators returns b without CR, LF and NUL bytes.
func dropSeparators(b []byte) []byte {
	var out []byte
	for _, c := range b {
		if c != '\r' && c != '\n' && c != 0 {
			out = append(out, c)
		}
	}
	return out
}
