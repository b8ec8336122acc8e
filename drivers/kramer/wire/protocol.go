package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Limits that bound what the parser accepts. Anything beyond them is an
// error, never a panic or an unbounded allocation.
const (
	// MaxLineSize is the longest line, in bytes without its line end, that
	// ParseFrame and the stream reader accept.
	MaxLineSize = 4096
	// MaxPorts is the largest port number (input or output) and port count
	// the messages accept.
	MaxPorts = 1024
	// MaxLayer is the largest layer number the messages accept.
	MaxLayer = 9999
	// MaxMachine is the largest machine number an address may carry.
	MaxMachine = 999
	// DefaultPort is the TCP port of Protocol 3000.
	DefaultPort = 5000
)

// Errors returned by the parser, wrapped with context.
var (
	ErrLineTooLong = errors.New("line longer than 4 KiB")
	ErrMalformed   = errors.New("malformed message")
)

// Start characters of the two kinds of line.
const (
	startCommand = '#'
	startReply   = '~'
)

// Frame is one protocol line without its line end: a command from a
// controller ('#') or a message from the device ('~'), with an optional
// machine-number address ("01@") and a body.
type Frame struct {
	Reply     bool // a device message ('~'); false for a controller's command ('#')
	Addressed bool // the line carries a machine number ("#05@…", "~01@…")
	Machine   int  // the machine number, when Addressed
	Body      string
}

// addressLen returns the length of the "NN@" address at the start of s, or
// 0 when s does not start with one (1 to 3 digits and '@').
func addressLen(s string) int {
	for i := 0; i < len(s) && i <= 3; i++ {
		c := s[i]
		if c == '@' && i > 0 {
			return i + 1
		}
		if c < '0' || c > '9' {
			return 0
		}
	}
	return 0
}

// ParseFrame parses one line (without, or with, its CR or CR LF end).
func ParseFrame(line []byte) (Frame, error) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) > MaxLineSize {
		return Frame{}, fmt.Errorf("kramer: %d bytes: %w", len(line), ErrLineTooLong)
	}
	if bytes.ContainsAny(line, "\r\n") {
		return Frame{}, fmt.Errorf("kramer: line break inside %q: %w", truncate(string(line)), ErrMalformed)
	}
	if len(line) == 0 || (line[0] != startCommand && line[0] != startReply) {
		return Frame{}, fmt.Errorf("kramer: line %q starts with neither '#' nor '~': %w", truncate(string(line)), ErrMalformed)
	}
	f := Frame{Reply: line[0] == startReply}
	rest := string(line[1:])
	if n := addressLen(rest); n > 0 {
		f.Addressed = true
		f.Machine, _ = strconv.Atoi(rest[:n-1])
		rest = rest[n:]
	}
	f.Body = rest
	return f, nil
}

// Validate reports whether f can be written as one line that parses back
// to f.
func (f Frame) Validate() error {
	switch {
	case strings.ContainsAny(f.Body, "\r\n"):
		return fmt.Errorf("kramer: line break in %q: %w", truncate(f.Body), ErrMalformed)
	case f.Addressed && (f.Machine < 0 || f.Machine > MaxMachine):
		return fmt.Errorf("kramer: machine number %d is not from 0 to %d: %w", f.Machine, MaxMachine, ErrMalformed)
	case !f.Addressed && addressLen(f.Body) > 0:
		return fmt.Errorf("kramer: body %q would read as an address: %w", truncate(f.Body), ErrMalformed)
	case len(f.Body)+5 > MaxLineSize:
		return fmt.Errorf("kramer: %d bytes: %w", len(f.Body), ErrLineTooLong)
	}
	return nil
}

// Bytes returns the exact wire bytes of f: the start character, the address
// (two digits at least), the body and the line end, CR for a command and
// CR LF for a device message. Call Validate first for a frame that did not
// come from ParseFrame.
func (f Frame) Bytes() []byte {
	out := make([]byte, 0, len(f.Body)+8)
	if f.Reply {
		out = append(out, startReply)
	} else {
		out = append(out, startCommand)
	}
	if f.Addressed {
		if f.Machine < 10 {
			out = append(out, '0')
		}
		out = strconv.AppendInt(out, int64(f.Machine), 10)
		out = append(out, '@')
	}
	out = append(out, f.Body...)
	if f.Reply {
		return append(out, '\r', '\n')
	}
	return append(out, '\r')
}

// String returns the line without its line end.
func (f Frame) String() string { return strings.TrimRight(string(f.Bytes()), "\r\n") }

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// SplitLines is a bufio.SplitFunc that yields one line per token, without
// its line end. A line ends at CR or LF, so that commands (ended by CR) and
// device messages (ended by CR LF) split alike; empty lines are skipped. A
// line longer than MaxLineSize is an error wrapping ErrLineTooLong; a stream
// that ends inside a line is an error wrapping io.ErrUnexpectedEOF.
//
// SplitLines looks at the whole of data on every call; NewReader uses a
// splitter that remembers how far it has looked, so that a line arriving a
// byte at a time costs linear, not quadratic, time.
func SplitLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	var s splitter
	return s.split(data, atEOF)
}

// splitter is SplitLines with memory of how far data has been examined.
// bufio.Scanner hands the unconsumed data back on the next call, so the
// offset stays valid.
type splitter struct {
	pos int
}

func isEnd(c byte) bool { return c == '\r' || c == '\n' }

func (s *splitter) split(data []byte, atEOF bool) (advance int, token []byte, err error) {
	// Line ends before the line (the LF of CR LF, empty lines) are skipped.
	start := 0
	for start < len(data) && isEnd(data[start]) {
		start++
	}
	for i := max(s.pos, start); i < len(data); i++ {
		if isEnd(data[i]) {
			s.pos = 0
			if i-start > MaxLineSize {
				return 0, nil, fmt.Errorf("kramer: %w", ErrLineTooLong)
			}
			return i + 1, data[start:i], nil
		}
	}
	if len(data)-start > MaxLineSize {
		return 0, nil, fmt.Errorf("kramer: %w", ErrLineTooLong)
	}
	if atEOF {
		s.pos = 0
		if len(data) > start {
			return 0, nil, fmt.Errorf("kramer: stream ended inside a line: %w", io.ErrUnexpectedEOF)
		}
		return len(data), nil, nil
	}
	// Consume the skipped line ends and ask for more data; the scanner
	// hands the rest back, so the offset examined shifts with it.
	s.pos = len(data) - start
	return start, nil, nil
}

// Reader reads frames from a byte stream.
type Reader struct {
	s *bufio.Scanner
}

// NewReader returns a Reader that reads frames from r, with a buffer
// bounded by MaxLineSize.
func NewReader(r io.Reader) *Reader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 512), MaxLineSize+512)
	s.Split(new(splitter).split)
	return &Reader{s: s}
}

// ReadFrame returns the next frame. A line that is not a frame is an error
// wrapping ErrMalformed, after which the stream is still in step. It returns
// io.EOF when the stream ends cleanly between lines.
func (r *Reader) ReadFrame() (Frame, error) {
	if !r.s.Scan() {
		err := r.s.Err()
		if err == nil {
			return Frame{}, io.EOF
		}
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("kramer: %w", ErrLineTooLong)
		}
		return Frame{}, err
	}
	return ParseFrame(r.s.Bytes())
}

// Conn is one end of a Protocol 3000 connection over any byte stream: the
// driver uses it as a controller, the simulator as the device. Reads must
// come from one goroutine; writes may come from several, each call is
// written with a single Write.
type Conn struct {
	rwc io.ReadWriteCloser
	r   *Reader
	wmu sync.Mutex
}

// NewConn wraps rwc.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	return &Conn{rwc: rwc, r: NewReader(rwc)}
}

// ReadFrame reads the next frame.
func (c *Conn) ReadFrame() (Frame, error) { return c.r.ReadFrame() }

// WriteCommand writes the commands as one line, chained with '|' when
// there are several; machine is the address, 0 for none.
func (c *Conn) WriteCommand(machine int, cmds ...Command) error {
	f, err := CommandFrame(machine, cmds...)
	if err != nil {
		return err
	}
	return c.WriteFrames(f)
}

// WriteReply writes the replies, one line each, from machine (0: no
// address).
func (c *Conn) WriteReply(machine int, rs ...Reply) error {
	fs := make([]Frame, len(rs))
	for i, r := range rs {
		fs[i] = ReplyFrame(machine, r)
	}
	return c.WriteFrames(fs...)
}

// WriteFrames validates and writes the frames, in order, with one Write.
func (c *Conn) WriteFrames(fs ...Frame) error {
	var buf []byte
	for _, f := range fs {
		if err := f.Validate(); err != nil {
			return err
		}
		buf = append(buf, f.Bytes()...)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rwc.Write(buf); err != nil {
		return fmt.Errorf("kramer: write: %w", err)
	}
	return nil
}

// Close closes the underlying stream.
func (c *Conn) Close() error { return c.rwc.Close() }
