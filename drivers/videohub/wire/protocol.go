package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Limits that bound what the parser accepts. Anything beyond them is an
// error, never a panic or an unbounded allocation.
const (
	// MaxBlockSize is the largest block, in bytes including line ends, that
	// ParseBlock and the stream reader accept.
	MaxBlockSize = 64 << 10
	// MaxPorts is the largest number of ports of one kind (inputs, outputs);
	// port numbers on the wire are 0 to MaxPorts-1.
	MaxPorts = 1024
	// DefaultPort is the TCP port of the Videohub Ethernet protocol.
	DefaultPort = 9990
)

// Errors returned by the parser, wrapped with context.
var (
	ErrBlockTooLarge = errors.New("block larger than 64 KiB")
	ErrMalformed     = errors.New("malformed block")
)

// Block is one protocol block: a header line and its item lines. Header is
// the header without its trailing ':' ("VIDEO OUTPUT ROUTING"); ACK and NAK,
// which carry no ':' on the wire, have Header "ACK" and "NAK". A block with no
// lines is a bare header (a request for a dump, or PING, ACK, NAK, END PRELUDE).
type Block struct {
	Header string
	Lines  []string
}

// isReply reports whether h is one of the two headers written without ':'.
func isReply(h string) bool { return h == "ACK" || h == "NAK" }

// validHeader reports whether h may be a block header: it starts with a
// capital letter and holds no lower-case ASCII letter, ':' or control
// character, within 128 bytes.
func validHeader(h string) bool {
	if h == "" || len(h) > 128 || h[0] < 'A' || h[0] > 'Z' {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c < 0x20 || c == 0x7f || c == ':' || (c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// Validate reports whether b can be written as one block that parses back
// to b: a valid header, and item lines that are not empty, hold no '\n' and
// do not end in '\r', within MaxBlockSize.
func (b Block) Validate() error {
	if !validHeader(b.Header) {
		return fmt.Errorf("videohub: header %q: %w", b.Header, ErrMalformed)
	}
	size := len(b.Header) + 3
	for i, l := range b.Lines {
		if l == "" || strings.IndexByte(l, '\n') >= 0 || strings.HasSuffix(l, "\r") {
			return fmt.Errorf("videohub: %s line %d %q: %w", b.Header, i+1, l, ErrMalformed)
		}
		size += len(l) + 1
	}
	if size > MaxBlockSize {
		return fmt.Errorf("videohub: %s: %w", b.Header, ErrBlockTooLarge)
	}
	return nil
}

// Dump returns the exact wire bytes of b: the header line, one line per
// item, and the terminating blank line, all ending in "\n". Call Validate
// first for content that did not come from ParseBlock.
func (b Block) Dump() []byte {
	n := len(b.Header) + 3
	for _, l := range b.Lines {
		n += len(l) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, b.Header...)
	if !isReply(b.Header) {
		out = append(out, ':')
	}
	out = append(out, '\n')
	for _, l := range b.Lines {
		out = append(out, l...)
		out = append(out, '\n')
	}
	return append(out, '\n')
}

// String returns Dump as a string.
func (b Block) String() string { return string(b.Dump()) }

// ParseBlock parses exactly one block: a header line, item lines, and
// optionally the terminating blank line. Lines may end in "\n" or "\r\n";
// the last one may lack its line end.
func ParseBlock(data []byte) (Block, error) {
	if len(data) > MaxBlockSize {
		return Block{}, fmt.Errorf("videohub: %d bytes: %w", len(data), ErrBlockTooLarge)
	}
	var b Block
	first := true
	for len(data) > 0 {
		line := data
		rest := []byte(nil)
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, rest = data[:i], data[i+1:]
		}
		line = bytes.TrimRight(line, "\r")
		data = rest
		if first {
			first = false
			h := string(line)
			switch {
			case isReply(h):
			case strings.HasSuffix(h, ":") && validHeader(h[:len(h)-1]):
				h = h[:len(h)-1]
			default:
				return Block{}, fmt.Errorf("videohub: header line %q: %w", truncate(h), ErrMalformed)
			}
			b.Header = h
			continue
		}
		if len(line) == 0 {
			// The blank line ends the block; nothing may follow it but
			// further line ends.
			if len(bytes.Trim(data, "\r\n")) != 0 {
				return Block{}, fmt.Errorf("videohub: %s: data after the blank line: %w", b.Header, ErrMalformed)
			}
			break
		}
		b.Lines = append(b.Lines, string(line))
	}
	if first {
		return Block{}, fmt.Errorf("videohub: empty block: %w", ErrMalformed)
	}
	return b, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// SplitBlocks is a bufio.SplitFunc that yields one protocol block per token:
// the block's lines up to, not including, the blank line that ends it. Blank
// lines between blocks are skipped. A block longer than MaxBlockSize is an
// error wrapping ErrBlockTooLarge; a stream that ends inside a block is an
// error wrapping io.ErrUnexpectedEOF.
//
// SplitBlocks looks at the whole of data on every call; NewReader uses a
// splitter that remembers how far it has looked, so that a block arriving a
// byte at a time costs linear, not quadratic, time.
func SplitBlocks(data []byte, atEOF bool) (advance int, token []byte, err error) {
	var s splitter
	return s.split(data, atEOF)
}

// splitter is SplitBlocks with memory: offsets into data of where the
// pending block starts and how far lines have been examined. bufio.Scanner
// hands the unconsumed data back on the next call, so the offsets stay valid
// once shifted by what was consumed.
type splitter struct {
	start, pos int
	inBlock    bool
}

func (s *splitter) split(data []byte, atEOF bool) (advance int, token []byte, err error) {
	for {
		i := bytes.IndexByte(data[s.pos:], '\n')
		if i < 0 {
			break
		}
		line, next := data[s.pos:s.pos+i], s.pos+i+1
		blank := len(bytes.TrimRight(line, "\r")) == 0
		switch {
		case !s.inBlock && blank:
			s.start = next // a blank line between blocks
		case blank:
			token = data[s.start:s.pos]
			*s = splitter{}
			return next, token, nil
		default:
			s.inBlock = true
		}
		s.pos = next
		if s.pos-s.start > MaxBlockSize {
			return 0, nil, fmt.Errorf("videohub: %w", ErrBlockTooLarge)
		}
	}
	if len(data)-s.start > MaxBlockSize {
		return 0, nil, fmt.Errorf("videohub: %w", ErrBlockTooLarge)
	}
	if atEOF {
		if len(bytes.TrimRight(data[s.start:], "\r")) > 0 {
			return 0, nil, fmt.Errorf("videohub: stream ended inside a block: %w", io.ErrUnexpectedEOF)
		}
		*s = splitter{}
		return len(data), nil, nil
	}
	// Consume the blank lines skipped so far and ask for more data.
	advance = s.start
	s.start, s.pos = 0, s.pos-advance
	return advance, nil, nil
}

// Reader reads blocks from a byte stream.
type Reader struct {
	s *bufio.Scanner
}

// NewReader returns a Reader that reads blocks from r, with a buffer bounded
// by MaxBlockSize.
func NewReader(r io.Reader) *Reader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), MaxBlockSize+4096)
	s.Split(new(splitter).split)
	return &Reader{s: s}
}

// ReadBlock returns the next block. It returns io.EOF when the stream ends
// cleanly between blocks.
func (r *Reader) ReadBlock() (Block, error) {
	if !r.s.Scan() {
		err := r.s.Err()
		if err == nil {
			return Block{}, io.EOF
		}
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("videohub: %w", ErrBlockTooLarge)
		}
		return Block{}, err
	}
	return ParseBlock(r.s.Bytes())
}

// ReadMessage returns the next block, decoded (see Decode).
func (r *Reader) ReadMessage() (Message, error) {
	b, err := r.ReadBlock()
	if err != nil {
		return nil, err
	}
	return Decode(b)
}

// Conn is one end of a Videohub protocol connection over any byte stream:
// the driver uses it as a client, the simulator as the device. Reads must
// come from one goroutine; writes may come from several, each message is
// written with a single Write call.
type Conn struct {
	rwc io.ReadWriteCloser
	r   *Reader
	wmu sync.Mutex
}

// NewConn wraps rwc.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	return &Conn{rwc: rwc, r: NewReader(rwc)}
}

// ReadBlock reads the next raw block.
func (c *Conn) ReadBlock() (Block, error) { return c.r.ReadBlock() }

// ReadMessage reads and decodes the next block.
func (c *Conn) ReadMessage() (Message, error) { return c.r.ReadMessage() }

// WriteMessage validates and writes the messages, in order, with one Write.
func (c *Conn) WriteMessage(ms ...Message) error {
	var buf []byte
	for _, m := range ms {
		b := m.Block()
		if err := b.Validate(); err != nil {
			return err
		}
		buf = append(buf, b.Dump()...)
	}
	return c.write(buf)
}

// WriteBlock validates and writes one raw block.
func (c *Conn) WriteBlock(b Block) error {
	if err := b.Validate(); err != nil {
		return err
	}
	return c.write(b.Dump())
}

func (c *Conn) write(buf []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.rwc.Write(buf); err != nil {
		return fmt.Errorf("videohub: write: %w", err)
	}
	return nil
}

// Close closes the underlying stream.
func (c *Conn) Close() error { return c.rwc.Close() }
