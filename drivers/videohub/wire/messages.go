package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// Block headers of the messages this package knows.
const (
	HeaderPreamble      = "PROTOCOL PREAMBLE"
	HeaderDevice        = "VIDEOHUB DEVICE"
	HeaderInputLabels   = "INPUT LABELS"
	HeaderOutputLabels  = "OUTPUT LABELS"
	HeaderOutputLocks   = "VIDEO OUTPUT LOCKS"
	HeaderOutputRouting = "VIDEO OUTPUT ROUTING"
	HeaderConfiguration = "CONFIGURATION"
	HeaderEndPrelude    = "END PRELUDE"
	HeaderPing          = "PING"
	HeaderAck           = "ACK"
	HeaderNak           = "NAK"
)

// Message is a decoded block. Block returns the block it is written as;
// Decode(m.Block()) returns a message equal to m.
type Message interface {
	Block() Block
}

// Field is a "Key: Value" line.
type Field struct {
	Key, Value string
}

// Preamble is the PROTOCOL PREAMBLE block.
type Preamble struct {
	Version string
	Other   []Field // fields other than Version, in order
}

// Device is the VIDEOHUB DEVICE block. Present is "true", "false" or
// "needs_update". Counts missing from the block are 0.
type Device struct {
	Present                string
	ModelName              string
	FriendlyName           string
	UniqueID               string
	VideoInputs            int
	VideoProcessingUnits   int
	VideoOutputs           int
	VideoMonitoringOutputs int
	SerialPorts            int
	Other                  []Field // fields not listed above, in order
}

// Label is one line of a label block: a 0-based port and its text.
type Label struct {
	Port int
	Text string
}

// InputLabels is the INPUT LABELS block; empty, it requests a dump.
type InputLabels []Label

// OutputLabels is the OUTPUT LABELS block; empty, it requests a dump.
type OutputLabels []Label

// LockState is the state of an output lock as the wire writes it.
type LockState byte

// Lock states. A device reports Unlocked, Owned (by the client it writes
// to) or Locked (by another client); a client sends Owned to lock, Unlocked
// to unlock and ForceUnlock to unlock another client's lock.
const (
	Unlocked    LockState = 'U'
	Owned       LockState = 'O'
	Locked      LockState = 'L'
	ForceUnlock LockState = 'F'
)

// Lock is one line of the VIDEO OUTPUT LOCKS block (0-based output).
type Lock struct {
	Port  int
	State LockState
}

// OutputLocks is the VIDEO OUTPUT LOCKS block; empty, it requests a dump.
type OutputLocks []Lock

// Route is one line of the VIDEO OUTPUT ROUTING block (0-based ports).
type Route struct {
	Output, Input int
}

// OutputRouting is the VIDEO OUTPUT ROUTING block; empty, it requests a dump.
type OutputRouting []Route

// Configuration is the CONFIGURATION block ("Take Mode: false").
type Configuration []Field

// EndPrelude is the END PRELUDE block that ends the initial status dump.
type EndPrelude struct{}

// Ping is the PING block; the device answers ACK.
type Ping struct{}

// Ack is the device's "ACK" reply: the command was accepted.
type Ack struct{}

// Nak is the device's "NAK" reply: the command was malformed or out of range.
type Nak struct{}

// Unknown is a block with a header this package does not know. Clients
// ignore it.
type Unknown Block

// Block implements Message.
func (m Preamble) Block() Block {
	lines := []string{"Version: " + m.Version}
	return Block{Header: HeaderPreamble, Lines: append(lines, fieldLines(m.Other)...)}
}

// Block implements Message.
func (m Device) Block() Block {
	lines := []string{
		"Device present: " + m.Present,
		"Model name: " + m.ModelName,
		"Friendly name: " + m.FriendlyName,
		"Unique ID: " + m.UniqueID,
		"Video inputs: " + strconv.Itoa(m.VideoInputs),
		"Video processing units: " + strconv.Itoa(m.VideoProcessingUnits),
		"Video outputs: " + strconv.Itoa(m.VideoOutputs),
		"Video monitoring outputs: " + strconv.Itoa(m.VideoMonitoringOutputs),
		"Serial ports: " + strconv.Itoa(m.SerialPorts),
	}
	return Block{Header: HeaderDevice, Lines: append(lines, fieldLines(m.Other)...)}
}

// Block implements Message.
func (m InputLabels) Block() Block { return labelBlock(HeaderInputLabels, m) }

// Block implements Message.
func (m OutputLabels) Block() Block { return labelBlock(HeaderOutputLabels, m) }

// Block implements Message.
func (m OutputLocks) Block() Block {
	b := Block{Header: HeaderOutputLocks}
	for _, l := range m {
		b.Lines = append(b.Lines, strconv.Itoa(l.Port)+" "+string(rune(l.State)))
	}
	return b
}

// Block implements Message.
func (m OutputRouting) Block() Block {
	b := Block{Header: HeaderOutputRouting}
	for _, r := range m {
		b.Lines = append(b.Lines, strconv.Itoa(r.Output)+" "+strconv.Itoa(r.Input))
	}
	return b
}

// Block implements Message.
func (m Configuration) Block() Block {
	return Block{Header: HeaderConfiguration, Lines: fieldLines(m)}
}

// Block implements Message.
func (EndPrelude) Block() Block { return Block{Header: HeaderEndPrelude} }

// Block implements Message.
func (Ping) Block() Block { return Block{Header: HeaderPing} }

// Block implements Message.
func (Ack) Block() Block { return Block{Header: HeaderAck} }

// Block implements Message.
func (Nak) Block() Block { return Block{Header: HeaderNak} }

// Block implements Message.
func (m Unknown) Block() Block { return Block(m) }

func fieldLines(fs []Field) []string {
	if len(fs) == 0 {
		return nil
	}
	lines := make([]string, len(fs))
	for i, f := range fs {
		lines[i] = f.Key + ": " + f.Value
	}
	return lines
}

func labelBlock(header string, ls []Label) Block {
	b := Block{Header: header}
	for _, l := range ls {
		b.Lines = append(b.Lines, strconv.Itoa(l.Port)+" "+l.Text)
	}
	return b
}

// Decode turns a block into its typed message. Blocks with an unknown header
// decode to Unknown. A known block with a malformed line, a port number of
// MaxPorts or more, or a count above MaxPorts is an error wrapping
// ErrMalformed. An empty label, lock or routing block decodes to a nil slice.
func Decode(b Block) (Message, error) {
	switch b.Header {
	case HeaderPreamble:
		var m Preamble
		err := eachField(b, func(f Field) error {
			if f.Key == "Version" {
				m.Version = f.Value
			} else {
				m.Other = append(m.Other, f)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return m, nil
	case HeaderDevice:
		return decodeDevice(b)
	case HeaderInputLabels:
		ls, err := decodeLabels(b)
		if err != nil {
			return nil, err
		}
		return InputLabels(ls), nil
	case HeaderOutputLabels:
		ls, err := decodeLabels(b)
		if err != nil {
			return nil, err
		}
		return OutputLabels(ls), nil
	case HeaderOutputLocks:
		var m OutputLocks
		for i, line := range b.Lines {
			port, val, ok := twoFields(line)
			if !ok || len(val) != 1 {
				return nil, lineError(b, i, "want \"<output> U|O|L|F\"")
			}
			p, err := parsePort(port)
			if err != nil {
				return nil, lineError(b, i, err.Error())
			}
			s := LockState(val[0])
			switch s {
			case Unlocked, Owned, Locked, ForceUnlock:
			default:
				return nil, lineError(b, i, "lock state must be U, O, L or F")
			}
			m = append(m, Lock{Port: p, State: s})
		}
		return m, nil
	case HeaderOutputRouting:
		var m OutputRouting
		for i, line := range b.Lines {
			out, in, ok := twoFields(line)
			if !ok {
				return nil, lineError(b, i, "want \"<output> <input>\"")
			}
			o, err := parsePort(out)
			if err != nil {
				return nil, lineError(b, i, err.Error())
			}
			n, err := parsePort(in)
			if err != nil {
				return nil, lineError(b, i, err.Error())
			}
			m = append(m, Route{Output: o, Input: n})
		}
		return m, nil
	case HeaderConfiguration:
		var m Configuration
		err := eachField(b, func(f Field) error {
			m = append(m, f)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return m, nil
	case HeaderEndPrelude:
		return bare(b, EndPrelude{})
	case HeaderPing:
		return bare(b, Ping{})
	case HeaderAck:
		return bare(b, Ack{})
	case HeaderNak:
		return bare(b, Nak{})
	}
	return Unknown(b), nil
}

func decodeDevice(b Block) (Message, error) {
	var m Device
	err := eachField(b, func(f Field) error {
		var n *int
		switch f.Key {
		case "Device present":
			m.Present = f.Value
		case "Model name":
			m.ModelName = f.Value
		case "Friendly name":
			m.FriendlyName = f.Value
		case "Unique ID":
			m.UniqueID = f.Value
		case "Video inputs":
			n = &m.VideoInputs
		case "Video processing units":
			n = &m.VideoProcessingUnits
		case "Video outputs":
			n = &m.VideoOutputs
		case "Video monitoring outputs":
			n = &m.VideoMonitoringOutputs
		case "Serial ports":
			n = &m.SerialPorts
		default:
			m.Other = append(m.Other, f)
		}
		if n != nil {
			v, err := parseCount(f.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", f.Key, err)
			}
			*n = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func decodeLabels(b Block) ([]Label, error) {
	var ls []Label
	for i, line := range b.Lines {
		port, text, _ := strings.Cut(line, " ")
		p, err := parsePort(port)
		if err != nil {
			return nil, lineError(b, i, err.Error())
		}
		ls = append(ls, Label{Port: p, Text: text})
	}
	return ls, nil
}

// eachField calls fn for every "Key: Value" line of b.
func eachField(b Block, fn func(Field) error) error {
	for i, line := range b.Lines {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			return lineError(b, i, "want \"Key: Value\"")
		}
		if err := fn(Field{Key: k, Value: strings.TrimPrefix(v, " ")}); err != nil {
			return lineError(b, i, err.Error())
		}
	}
	return nil
}

// bare returns m when b has no lines, as the blocks with nothing but a
// header must.
func bare(b Block, m Message) (Message, error) {
	if len(b.Lines) > 0 {
		return nil, lineError(b, 0, "this block has no lines")
	}
	return m, nil
}

func lineError(b Block, i int, why string) error {
	return fmt.Errorf("videohub: %s line %d %q: %s: %w", b.Header, i+1, truncate(b.Lines[i]), why, ErrMalformed)
}

// twoFields splits "a b" (fields separated by spaces) into exactly two.
func twoFields(line string) (a, b string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", false
	}
	return f[0], f[1], true
}

// parsePort parses a 0-based port number below MaxPorts: decimal digits only.
func parsePort(s string) (int, error) {
	n, err := parseDigits(s)
	if err != nil || n >= MaxPorts {
		return 0, fmt.Errorf("port %q is not a number from 0 to %d", truncate(s), MaxPorts-1)
	}
	return n, nil
}

// parseCount parses a port count from 0 to MaxPorts.
func parseCount(s string) (int, error) {
	n, err := parseDigits(s)
	if err != nil || n > MaxPorts {
		return 0, fmt.Errorf("count %q is not a number from 0 to %d", truncate(s), MaxPorts)
	}
	return n, nil
}

func parseDigits(s string) (int, error) {
	if s == "" || len(s) > 6 {
		return 0, strconv.ErrRange
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, strconv.ErrSyntax
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
