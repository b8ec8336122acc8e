package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Limits that bound what the parsers accept: anything beyond them is an
// error or an invalid token, never a panic or an unbounded allocation.
const (
	// DefaultPort is the TCP port of an Extron switcher's Telnet (SIS) server.
	DefaultPort = 23
	// MaxLine is the longest reply line, in bytes, SplitReplies accepts.
	MaxLine = 1024
	// MaxCommand is the longest command token SplitCommands yields; a longer
	// run of bytes is cut into tokens of this size (which do not parse).
	MaxCommand = 256
)

// ErrLineTooLong is returned by SplitReplies for a line longer than MaxLine.
var ErrLineTooLong = errors.New("extron: reply line longer than 1024 bytes")

// Telnet bytes (RFC 854). An SIS server is a Telnet server: it may send
// option negotiation, which a client must strip from the data (and may
// refuse).
const (
	telnetSE   = 240
	telnetSB   = 250
	telnetWILL = 251
	telnetWONT = 252
	telnetDO   = 253
	telnetDONT = 254
	telnetIAC  = 255
	maxSubneg  = 1024
)

// TelnetRefusal returns the answer that refuses an option request: WONT for
// DO, DONT for WILL, nil for anything else (WONT and DONT need no answer).
func TelnetRefusal(cmd, opt byte) []byte {
	switch cmd {
	case telnetDO:
		return []byte{telnetIAC, telnetWONT, opt}
	case telnetWILL:
		return []byte{telnetIAC, telnetDONT, opt}
	}
	return nil
}

type telnetState int

const (
	tsData telnetState = iota
	tsIAC
	tsOption
	tsSub
	tsSubIAC
)

// telnetReader strips Telnet commands from a byte stream.
type telnetReader struct {
	r      io.Reader
	answer func(cmd, opt byte)
	state  telnetState
	cmd    byte
	sub    int
}

// NewTelnetReader returns a reader of r's data with Telnet commands removed:
// IAC IAC becomes one 0xFF byte; option negotiation (IAC WILL/WONT/DO/DONT
// opt) is passed to answer, if not nil; subnegotiation (IAC SB … IAC SE),
// other IAC commands and NUL bytes are dropped. The state carries over
// between reads, so a command split across reads is still removed.
func NewTelnetReader(r io.Reader, answer func(cmd, opt byte)) io.Reader {
	return &telnetReader{r: r, answer: answer}
}

func (t *telnetReader) Read(p []byte) (int, error) {
	for {
		n, err := t.r.Read(p)
		w := 0
		for _, b := range p[:n] {
			switch t.state {
			case tsData:
				switch b {
				case telnetIAC:
					t.state = tsIAC
				case 0:
				default:
					p[w] = b
					w++
				}
			case tsIAC:
				switch {
				case b == telnetIAC:
					p[w] = b
					w++
					t.state = tsData
				case b >= telnetWILL && b <= telnetDONT:
					t.cmd, t.state = b, tsOption
				case b == telnetSB:
					t.sub, t.state = 0, tsSub
				default:
					t.state = tsData
				}
			case tsOption:
				if t.answer != nil {
					t.answer(t.cmd, b)
				}
				t.state = tsData
			case tsSub, tsSubIAC:
				t.sub++
				switch {
				case t.state == tsSubIAC && b == telnetSE:
					t.state = tsData
				case t.state == tsSub && b == telnetIAC:
					t.state = tsSubIAC
				case t.sub > maxSubneg:
					t.state = tsData // a subnegotiation that never ends: give up on it
				default:
					t.state = tsSub
				}
			}
		}
		if w > 0 || err != nil || n == 0 {
			return w, err
		}
	}
}

// isPrompt reports whether a partial line is the password prompt, which
// the device sends without a line end.
func isPrompt(b []byte) bool {
	return string(bytes.TrimRight(b, " ")) == "Password:"
}

// SplitReplies is a bufio.SplitFunc that yields the lines a device sends,
// without their line ends. A line ends at CR or LF (the device sends CR LF);
// blank lines are skipped. A pending partial line that is the password
// prompt ("Password:") is yielded without waiting for a line end, since the
// device sends none. A partial line at the end of the stream is yielded. A
// line longer than MaxLine is an error wrapping ErrLineTooLong.
func SplitReplies(data []byte, atEOF bool) (advance int, token []byte, err error) {
	i := 0
	for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
		i++
	}
	rest := data[i:]
	if j := bytes.IndexAny(rest, "\r\n"); j >= 0 {
		if j > MaxLine {
			return 0, nil, ErrLineTooLong
		}
		return i + j + 1, rest[:j], nil
	}
	if len(rest) > MaxLine {
		return 0, nil, ErrLineTooLong
	}
	if len(rest) > 0 && (atEOF || isPrompt(rest)) {
		return len(data), rest, nil
	}
	return i, nil, nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// SplitCommands is a bufio.SplitFunc that yields the commands a host sends,
// the way a device delimits them: CR, LF and NUL between commands are
// skipped; an extended command runs from Esc to its CR (inclusive); any
// other command is a run of digits and '*' followed by one command
// character ("1*3!", "3%", "I"). A run cut short by CR, LF or Esc, and a
// run longer than MaxCommand, are yielded as tokens of their own, which
// ParseCommand rejects (a device answers E10). The stream never fails.
func SplitCommands(data []byte, atEOF bool) (advance int, token []byte, err error) {
	i := 0
	for i < len(data) && (data[i] == '\r' || data[i] == '\n' || data[i] == 0) {
		i++
	}
	if i == len(data) {
		return i, nil, nil
	}
	rest := data[i:]
	if rest[0] == Esc {
		if j := bytes.IndexByte(rest, '\r'); j >= 0 && j < MaxCommand {
			return i + j + 1, rest[:j+1], nil
		}
		if len(rest) >= MaxCommand {
			return i + MaxCommand, rest[:MaxCommand], nil
		}
		if atEOF {
			return len(data), rest, nil
		}
		return i, nil, nil
	}
	j := 0
	for j < len(rest) && j < MaxCommand && (isDigit(rest[j]) || rest[j] == '*') {
		j++
	}
	switch {
	case j == MaxCommand:
		return i + j, rest[:j], nil
	case j == len(rest):
		if atEOF {
			return len(data), rest, nil
		}
		return i, nil, nil
	case rest[j] == '\r' || rest[j] == '\n' || rest[j] == 0 || rest[j] == Esc:
		return i + j, rest[:j], nil
	}
	return i + j + 1, rest[:j+1], nil
}

// Conn is the host's end of an SIS connection over any byte stream: it
// strips Telnet negotiation from what it reads (refusing every option),
// splits the device's output into lines and writes commands. Reads must come
// from one goroutine; writes may come from several (each is one Write).
type Conn struct {
	rwc io.ReadWriteCloser
	sc  *bufio.Scanner
	wmu sync.Mutex
}

// NewConn wraps rwc.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	c := &Conn{rwc: rwc}
	tr := NewTelnetReader(rwc, func(cmd, opt byte) {
		if b := TelnetRefusal(cmd, opt); b != nil {
			_ = c.write(b)
		}
	})
	c.sc = bufio.NewScanner(tr)
	c.sc.Buffer(make([]byte, 0, 4096), MaxLine+4096)
	c.sc.Split(SplitReplies)
	return c
}

// ReadLine returns the next line the device sent (or the password prompt),
// without its line end. It returns io.EOF when the stream ends.
func (c *Conn) ReadLine() (string, error) {
	if !c.sc.Scan() {
		if err := c.sc.Err(); err != nil {
			return "", err
		}
		return "", io.EOF
	}
	return c.sc.Text(), nil
}

// ReadReply returns the next line, classified by ParseReply, and the line.
func (c *Conn) ReadReply() (Reply, string, error) {
	line, err := c.ReadLine()
	if err != nil {
		return nil, "", err
	}
	return ParseReply(line), line, nil
}

// Send writes the commands, back to back, with one Write.
func (c *Conn) Send(cmds ...Command) error {
	var buf []byte
	for _, cmd := range cmds {
		buf = append(buf, cmd.Bytes()...)
	}
	return c.write(buf)
}

// SendPassword answers the password prompt: the password and a CR.
func (c *Conn) SendPassword(password string) error {
	return c.write(append([]byte(password), '\r'))
}

func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rwc.Write(b); err != nil {
		return fmt.Errorf("extron: write: %w", err)
	}
	return nil
}

// Close closes the underlying stream.
func (c *Conn) Close() error { return c.rwc.Close() }
