package osc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Message is one OSC 1.0 message: an address pattern and typed arguments.
// An argument is an int32 (type tag i), float32 (f), string (s), []byte
// (blob, b), bool (T or F) or nil (N).
type Message struct {
	Address string
	Args    []any
}

// MaxPacket is the largest OSC packet the package encodes or parses: the
// largest UDP payload over IPv4.
const MaxPacket = 65507

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("malformed OSC packet")

// CheckAddress reports whether a is a valid OSC address pattern to send:
// it starts with '/' and has only printable ASCII characters other than
// space.
func CheckAddress(a string) error {
	if !strings.HasPrefix(a, "/") {
		return fmt.Errorf("OSC address %q must start with /", a)
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("OSC address %q: character %q at %d is not allowed (printable ASCII without spaces only)", a, c, i)
		}
	}
	return nil
}

// Marshal encodes m as an OSC packet.
func (m Message) Marshal() ([]byte, error) { return m.Append(nil) }

// Append appends m, encoded, to dst. The address and every argument are
// checked: an unsupported type, a string with a NUL byte or a packet larger
// than MaxPacket is an error.
func (m Message) Append(dst []byte) ([]byte, error) {
	if err := CheckAddress(m.Address); err != nil {
		return dst, err
	}
	start := len(dst)
	tags := make([]byte, 0, len(m.Args)+1)
	tags = append(tags, ',')
	for i, a := range m.Args {
		switch v := a.(type) {
		case int32:
			tags = append(tags, 'i')
		case float32:
			tags = append(tags, 'f')
		case string:
			if strings.IndexByte(v, 0) >= 0 {
				return dst, fmt.Errorf("argument %d: an OSC string cannot hold a NUL byte", i+1)
			}
			tags = append(tags, 's')
		case []byte:
			tags = append(tags, 'b')
		case bool:
			if v {
				tags = append(tags, 'T')
			} else {
				tags = append(tags, 'F')
			}
		case nil:
			tags = append(tags, 'N')
		default:
			return dst, fmt.Errorf("argument %d: OSC has no type for %T (use int32, float32, string, []byte, bool or nil)", i+1, a)
		}
	}
	dst = appendString(dst, m.Address)
	dst = appendString(dst, string(tags))
	for _, a := range m.Args {
		switch v := a.(type) {
		case int32:
			dst = binary.BigEndian.AppendUint32(dst, uint32(v))
		case float32:
			dst = binary.BigEndian.AppendUint32(dst, math.Float32bits(v))
		case string:
			dst = appendString(dst, v)
		case []byte:
			if len(v) > MaxPacket {
				return dst[:start], fmt.Errorf("OSC packet larger than %d bytes", MaxPacket)
			}
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
			dst = append(dst, v...)
			dst = pad(dst, len(v))
		}
	}
	if len(dst)-start > MaxPacket {
		return dst[:start], fmt.Errorf("OSC packet of %d bytes is larger than %d", len(dst)-start, MaxPacket)
	}
	return dst, nil
}

// appendString appends an OSC-string: the bytes, a NUL and more NULs up to
// a multiple of 4 bytes.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, s...)
	dst = append(dst, 0)
	return pad(dst, len(s)+1)
}

// pad appends the NULs that bring n bytes to a multiple of 4.
func pad(dst []byte, n int) []byte {
	for ; n%4 != 0; n++ {
		dst = append(dst, 0)
	}
	return dst
}

// Parse decodes one OSC message. It is strict: the packet's length is a
// multiple of 4, padding bytes are NULs, every argument is complete and
// nothing follows the last one. A message without a type tag string (from
// implementations older than OSC 1.0) has no arguments. Bundles are not
// supported.
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) > MaxPacket {
		return m, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxPacket)
	}
	if len(b)%4 != 0 {
		return m, fmt.Errorf("%w: length %d is not a multiple of 4", ErrMalformed, len(b))
	}
	if strings.HasPrefix(string(b), "#bundle\x00") {
		return m, fmt.Errorf("%w: bundles are not supported", ErrMalformed)
	}
	addr, rest, err := readString(b)
	if err != nil {
		return m, fmt.Errorf("%w: address: %v", ErrMalformed, err)
	}
	if err := CheckAddress(addr); err != nil {
		return m, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	m.Address = addr
	if len(rest) == 0 {
		return m, nil
	}
	tags, rest, err := readString(rest)
	if err != nil {
		return m, fmt.Errorf("%w: type tags: %v", ErrMalformed, err)
	}
	if !strings.HasPrefix(tags, ",") {
		return m, fmt.Errorf("%w: type tag string %q does not start with ','", ErrMalformed, tags)
	}
	for i := 1; i < len(tags); i++ {
		n := len(m.Args) + 1
		switch t := tags[i]; t {
		case 'i', 'f':
			if len(rest) < 4 {
				return m, fmt.Errorf("%w: argument %d (%c): packet ends", ErrMalformed, n, t)
			}
			u := binary.BigEndian.Uint32(rest)
			rest = rest[4:]
			if t == 'i' {
				m.Args = append(m.Args, int32(u))
			} else {
				m.Args = append(m.Args, math.Float32frombits(u))
			}
		case 's':
			var s string
			if s, rest, err = readString(rest); err != nil {
				return m, fmt.Errorf("%w: argument %d (s): %v", ErrMalformed, n, err)
			}
			m.Args = append(m.Args, s)
		case 'b':
			if len(rest) < 4 {
				return m, fmt.Errorf("%w: argument %d (b): packet ends", ErrMalformed, n)
			}
			size := binary.BigEndian.Uint32(rest)
			rest = rest[4:]
			if uint64(size) > uint64(len(rest)) {
				return m, fmt.Errorf("%w: argument %d (b): blob of %d bytes, %d left", ErrMalformed, n, size, len(rest))
			}
			padded := (int(size) + 3) &^ 3
			if padded > len(rest) {
				return m, fmt.Errorf("%w: argument %d (b): padding missing", ErrMalformed, n)
			}
			if !zeros(rest[size:padded]) {
				return m, fmt.Errorf("%w: argument %d (b): padding is not NUL bytes", ErrMalformed, n)
			}
			m.Args = append(m.Args, append([]byte{}, rest[:size]...))
			rest = rest[padded:]
		case 'T':
			m.Args = append(m.Args, true)
		case 'F':
			m.Args = append(m.Args, false)
		case 'N':
			m.Args = append(m.Args, nil)
		default:
			return m, fmt.Errorf("%w: argument %d: type tag %q is not supported", ErrMalformed, n, t)
		}
	}
	if len(rest) > 0 {
		return m, fmt.Errorf("%w: %d bytes after the last argument", ErrMalformed, len(rest))
	}
	return m, nil
}

// readString reads an OSC-string from b (whose length is a multiple of 4)
// and returns it with the bytes after it.
func readString(b []byte) (string, []byte, error) {
	end := -1
	for i, c := range b {
		if c == 0 {
			end = i
			break
		}
	}
	if end < 0 {
		return "", nil, errors.New("string without a NUL terminator")
	}
	next := (end + 4) &^ 3 // the NUL and padding to a multiple of 4
	if next > len(b) {
		return "", nil, errors.New("string padding missing")
	}
	if !zeros(b[end:next]) {
		return "", nil, errors.New("string padding is not NUL bytes")
	}
	return string(b[:end]), b[next:], nil
}

func zeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
