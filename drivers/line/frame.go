package line

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// MaxLine is the longest reply line, in bytes, the driver accepts, and the
// longest command it sends. A reply that grows past it without a terminator
// is a protocol error (the connection is dropped), never an unbounded
// allocation.
const MaxLine = 64 << 10

// ErrLineTooLong is returned when a reply grows past MaxLine bytes without a
// terminator.
var ErrLineTooLong = errors.New("reply longer than 64 KiB without a terminator")

// SplitLines returns a bufio.SplitFunc that yields one reply line per token:
// the bytes before each occurrence of term, with any '\r' and '\n' around them
// removed (left over when a device ends its lines differently, "\r\n" where
// term is "\r" or "\n"). Empty lines are skipped. At EOF, what remains after
// the last terminator is a line too. term must not be empty.
//
// The split is stateless: it yields the same lines whether the stream arrives
// at once or a byte at a time.
func SplitLines(term []byte) bufio.SplitFunc {
	if len(term) == 0 {
		panic("line.SplitLines: empty terminator")
	}
	term = bytes.Clone(term)
	return func(data []byte, atEOF bool) (advance int, token []byte, err error) {
		for {
			i := bytes.Index(data[advance:], term)
			if i < 0 {
				break
			}
			tok := trimEnds(data[advance : advance+i])
			advance += i + len(term)
			if len(tok) > 0 {
				return advance, tok, nil
			}
		}
		if atEOF && advance < len(data) {
			if tok := trimEnds(data[advance:]); len(tok) > 0 {
				return len(data), tok, nil
			}
			return len(data), nil, nil
		}
		return advance, nil, nil
	}
}

func trimEnds(b []byte) []byte { return bytes.Trim(b, "\r\n") }

// Unescape turns the escapes in a command, a terminator or a greeting as
// written in site.yaml into the bytes they stand for: \r, \n, \t, \0 (NUL),
// \e (ESC), \\ (a backslash), \" and \', and \xHH (any byte, two hex
// digits). Any other byte stands for itself. An unknown escape or a
// backslash at the end is an error, so that a typo does not reach the device.
func Unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(s) {
			return "", errors.New(`a backslash at the end (write \\ for a backslash)`)
		}
		i++
		switch e := s[i]; e {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case '0':
			b.WriteByte(0)
		case 'e':
			b.WriteByte(0x1b)
		case '\\', '"', '\'':
			b.WriteByte(e)
		case 'x':
			if i+2 >= len(s) {
				return "", fmt.Errorf(`\x needs two hex digits (at byte %d)`, i)
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf(`\x needs two hex digits, not %q (at byte %d)`, s[i+1:i+3], i)
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		default:
			return "", fmt.Errorf(`unknown escape \%c (known: \r \n \t \0 \e \\ \" \' \xHH)`, e)
		}
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Escape is the inverse of Unescape: it writes s with printable ASCII as is
// (a backslash doubled), \r, \n and \t by name and every other byte as \xHH.
// Unescape(Escape(s)) == s for every s.
func Escape(s string) string {
	const hexDigits = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
