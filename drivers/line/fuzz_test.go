package line_test

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"understudy/drivers/line"
)

// scanAll reads every line from r with SplitLines(term).
func scanAll(t *testing.T, r io.Reader, term []byte) []string {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, line.MaxLine+len(term))
	sc.Split(line.SplitLines(term))
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil && err != bufio.ErrTooLong {
		t.Fatalf("scanner: %v", err)
	}
	return out
}

// reference splits data the slow, obvious way.
func reference(data, term []byte) []string {
	var out []string
	for _, part := range strings.Split(string(data), string(term)) {
		if p := strings.Trim(part, "\r\n"); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func FuzzSplitLines(f *testing.F) {
	f.Add([]byte("OK\r\nPWR=1\r\n"), []byte("\r\n"))
	f.Add([]byte("OK\r\n\r\nERR 2\rtail"), []byte("\r"))
	f.Add([]byte("\x00\xff\xfe#?garbage\n\n\nx"), []byte("\n"))
	f.Add([]byte("a;;b;;;c"), []byte(";;"))
	f.Add([]byte("ab\r\n\r\n\r\ncd"), []byte("\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data, term []byte) {
		if len(term) == 0 || len(term) > 8 || len(data) > line.MaxLine {
			return
		}
		whole := scanAll(t, bytes.NewReader(data), term)
		// A byte at a time gives the same lines.
		if got := scanAll(t, iotest.OneByteReader(bytes.NewReader(data)), term); !slices.Equal(got, whole) {
			t.Fatalf("one byte at a time %q, all at once %q", got, whole)
		}
		if want := reference(data, term); !slices.Equal(whole, want) {
			t.Fatalf("lines %q, want %q", whole, want)
		}
		for _, l := range whole {
			if l == "" || strings.Contains(l, string(term)) || strings.Trim(l, "\r\n") != l {
				t.Fatalf("line %q (terminator %q)", l, term)
			}
		}
	})
}

func FuzzUnescape(f *testing.F) {
	f.Add(`PWR ON\r`)
	f.Add(`\x02PON\x03\r\n`)
	f.Add(`INPUT {{.n}}\r`)
	f.Add(`C:\\path \"q\" \'s\' \t\0\e`)
	f.Add(`bad \q`)
	f.Add(`\x4`)
	f.Add(`end\`)
	f.Fuzz(func(t *testing.T, s string) {
		// Every string survives Escape then Unescape.
		if back, err := line.Unescape(line.Escape(s)); err != nil || back != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, back, err)
		}
		u, err := line.Unescape(s)
		if err != nil {
			return
		}
		if len(u) > len(s) {
			t.Fatalf("Unescape(%q) = %q grew", s, u)
		}
		if !strings.Contains(s, `\`) && u != s {
			t.Fatalf("Unescape(%q) = %q changed text without escapes", s, u)
		}
		if again, err := line.Unescape(line.Escape(u)); err != nil || again != u {
			t.Fatalf("round trip of %q: %q, %v", u, again, err)
		}
	})
}
