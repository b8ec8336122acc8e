package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// prelude28 is a status dump as a 2.8 device sends it on connect, with a
// block this package does not know (NETWORK) in the middle.
const prelude28 = "PROTOCOL PREAMBLE:\nVersion: 2.8\n\n" +
	"VIDEOHUB DEVICE:\nDevice present: true\nModel name: Blackmagic Smart Videohub 4 x 4\n" +
	"Friendly name: Studio Hub\nUnique ID: 7C2E0D0102AB\nVideo inputs: 4\nVideo processing units: 0\n" +
	"Video outputs: 4\nVideo monitoring outputs: 0\nSerial ports: 0\n\n" +
	"NETWORK:\nInterface Count: 1\n\n" +
	"INPUT LABELS:\n0 Camera 1\n1 Camera 2\n2 Playout\n3 \n\n" +
	"OUTPUT LABELS:\n0 Program\n1 Preview\n2 Recorder A\n3 Recorder B\n\n" +
	"VIDEO OUTPUT LOCKS:\n0 U\n1 O\n2 L\n3 U\n\n" +
	"VIDEO OUTPUT ROUTING:\n0 0\n1 1\n2 2\n3 0\n\n" +
	"CONFIGURATION:\nTake Mode: false\n\n" +
	"END PRELUDE:\n\n"

func wantPrelude28() []Message {
	return []Message{
		Preamble{Version: "2.8"},
		Device{Present: "true", ModelName: "Blackmagic Smart Videohub 4 x 4", FriendlyName: "Studio Hub",
			UniqueID: "7C2E0D0102AB", VideoInputs: 4, VideoOutputs: 4},
		Unknown{Header: "NETWORK", Lines: []string{"Interface Count: 1"}},
		InputLabels{{0, "Camera 1"}, {1, "Camera 2"}, {2, "Playout"}, {3, ""}},
		OutputLabels{{0, "Program"}, {1, "Preview"}, {2, "Recorder A"}, {3, "Recorder B"}},
		OutputLocks{{0, Unlocked}, {1, Owned}, {2, Locked}, {3, Unlocked}},
		OutputRouting{{0, 0}, {1, 1}, {2, 2}, {3, 0}},
		Configuration{{Key: "Take Mode", Value: "false"}},
		EndPrelude{},
	}
}

func readAll(t *testing.T, r io.Reader) []Message {
	t.Helper()
	rd := NewReader(r)
	var got []Message
	for {
		m, err := rd.ReadMessage()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("ReadMessage after %d messages: %v", len(got), err)
		}
		got = append(got, m)
	}
}

func TestReadPrelude(t *testing.T) {
	crlf := strings.ReplaceAll(prelude28, "\n", "\r\n")
	for name, r := range map[string]io.Reader{
		"lf":            strings.NewReader(prelude28),
		"crlf":          strings.NewReader(crlf),
		"one byte":      iotest.OneByteReader(strings.NewReader(prelude28)),
		"crlf one byte": iotest.OneByteReader(strings.NewReader(crlf)),
		"blank lines":   strings.NewReader("\n\r\n" + strings.ReplaceAll(prelude28, "\n\n", "\n\n\n")),
	} {
		t.Run(name, func(t *testing.T) {
			got := readAll(t, r)
			if want := wantPrelude28(); !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%#v\nwant\n%#v", got, want)
			}
		})
	}
}

func TestDumpExact(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		want string
	}{
		{OutputRouting{{5, 12}}, "VIDEO OUTPUT ROUTING:\n5 12\n\n"},
		{OutputRouting(nil), "VIDEO OUTPUT ROUTING:\n\n"},
		{Ping{}, "PING:\n\n"},
		{Ack{}, "ACK\n\n"},
		{Nak{}, "NAK\n\n"},
		{EndPrelude{}, "END PRELUDE:\n\n"},
		{OutputLocks{{3, Owned}, {4, ForceUnlock}}, "VIDEO OUTPUT LOCKS:\n3 O\n4 F\n\n"},
		{InputLabels{{0, "Camera 1"}}, "INPUT LABELS:\n0 Camera 1\n\n"},
		{Configuration{{"Take Mode", "false"}}, "CONFIGURATION:\nTake Mode: false\n\n"},
		{Preamble{Version: "2.8"}, "PROTOCOL PREAMBLE:\nVersion: 2.8\n\n"},
		{Device{Present: "true", ModelName: "M", FriendlyName: "F", UniqueID: "U", VideoInputs: 2, VideoOutputs: 3},
			"VIDEOHUB DEVICE:\nDevice present: true\nModel name: M\nFriendly name: F\nUnique ID: U\n" +
				"Video inputs: 2\nVideo processing units: 0\nVideo outputs: 3\nVideo monitoring outputs: 0\nSerial ports: 0\n\n"},
	} {
		b := tc.m.Block()
		if got := b.String(); got != tc.want {
			t.Errorf("%#v dumps %q, want %q", tc.m, got, tc.want)
		}
		if err := b.Validate(); err != nil {
			t.Errorf("%#v: Validate: %v", tc.m, err)
		}
	}
}

func TestMessageRoundTrip(t *testing.T) {
	msgs := append(wantPrelude28(),
		Ping{}, Ack{}, Nak{},
		OutputRouting(nil), InputLabels(nil), OutputLabels(nil), OutputLocks(nil),
		OutputRouting{{1023, 1023}, {0, 5}, {0, 6}},
		InputLabels{{7, "  spaces  around "}, {8, "ünïcødé ✓"}},
		Preamble{Version: "", Other: []Field{{"Extra", "x: y"}}},
		Device{Present: "needs_update", Other: []Field{{"Video outputs B", "3"}}},
		Configuration{{"Take Mode", ""}, {"Other", " lead"}},
		Unknown{Header: "TAKE MODE", Lines: []string{"0 true"}},
	)
	for _, m := range msgs {
		b, err := ParseBlock(m.Block().Dump())
		if err != nil {
			t.Errorf("%#v: ParseBlock(Dump): %v", m, err)
			continue
		}
		got, err := Decode(b)
		if err != nil {
			t.Errorf("%#v: Decode: %v", m, err)
			continue
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip: got %#v, want %#v", got, m)
		}
	}
}

func TestParseBlock(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Block
	}{
		{"PING:\n\n", Block{Header: "PING"}},
		{"PING:", Block{Header: "PING"}},
		{"ACK\n\n", Block{Header: "ACK"}},
		{"NAK\r\n\r\n", Block{Header: "NAK"}},
		{"VIDEO OUTPUT ROUTING:\r\n5 12\r\n", Block{Header: "VIDEO OUTPUT ROUTING", Lines: []string{"5 12"}}},
		{"NETWORK INTERFACE 0:\nName: 1GbE\n\n\n", Block{Header: "NETWORK INTERFACE 0", Lines: []string{"Name: 1GbE"}}},
		{"INPUT LABELS:\n0 a\r\r\n1 b\rc\n", Block{Header: "INPUT LABELS", Lines: []string{"0 a", "1 b\rc"}}},
	} {
		got, err := ParseBlock([]byte(tc.in))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseBlock(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "\n", "hello\n\n", "ping:\n\n", "PING\n\n", ":\n\n", "ACKNOWLEDGE\n\n",
		"PING:\n\nPING:\n\n", "A:\n1\n\n2\n", "1 2:\n\n", "BAD\x00HEADER:\n\n",
		"A:" + strings.Repeat("x", MaxBlockSize),
	} {
		if b, err := ParseBlock([]byte(in)); err == nil {
			t.Errorf("ParseBlock(%.40q) = %#v, want an error", in, b)
		}
	}
	big := "A:\n" + strings.Repeat("x\n", MaxBlockSize)
	if _, err := ParseBlock([]byte(big)); !errors.Is(err, ErrBlockTooLarge) {
		t.Errorf("ParseBlock(big) error %v, want ErrBlockTooLarge", err)
	}
}

func TestValidate(t *testing.T) {
	for _, b := range []Block{
		{Header: ""},
		{Header: "lower"},
		{Header: "X:"},
		{Header: "X", Lines: []string{""}},
		{Header: "X", Lines: []string{"a\nb"}},
		{Header: "X", Lines: []string{"a\r"}},
		{Header: "X", Lines: []string{strings.Repeat("y", MaxBlockSize)}},
	} {
		if err := b.Validate(); err == nil {
			t.Errorf("Validate(%.60q) = nil, want an error", b.String())
		}
	}
	if err := (InputLabels{{0, "two\nlines"}}).Block().Validate(); err == nil {
		t.Error("a label with a line break validates")
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{
		"VIDEO OUTPUT ROUTING:\n1024 0\n\n",
		"VIDEO OUTPUT ROUTING:\n0 1024\n\n",
		"VIDEO OUTPUT ROUTING:\n-1 0\n\n",
		"VIDEO OUTPUT ROUTING:\n+1 0\n\n",
		"VIDEO OUTPUT ROUTING:\n1\n\n",
		"VIDEO OUTPUT ROUTING:\n1 2 3\n\n",
		"VIDEO OUTPUT ROUTING:\n99999999999999999999 1\n\n",
		"VIDEO OUTPUT LOCKS:\n0 X\n\n",
		"VIDEO OUTPUT LOCKS:\n0 UU\n\n",
		"INPUT LABELS:\nCamera 1\n\n",
		"OUTPUT LABELS:\n 0 x\n\n",
		"VIDEOHUB DEVICE:\nVideo inputs: 1025\n\n",
		"VIDEOHUB DEVICE:\nVideo outputs: many\n\n",
		"VIDEOHUB DEVICE:\nno colon\n\n",
		"PROTOCOL PREAMBLE:\n: no key\n\n",
		"CONFIGURATION:\nTake Mode\n\n",
		"ACK\nextra\n\n",
		"PING:\nextra\n\n",
		"END PRELUDE:\nextra\n\n",
	} {
		b, err := ParseBlock([]byte(in))
		if err != nil {
			t.Fatalf("ParseBlock(%q): %v", in, err)
		}
		if m, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%q) = %#v, %v; want ErrMalformed", in, m, err)
		}
	}
}

func TestStreamErrors(t *testing.T) {
	rd := NewReader(strings.NewReader("PING:\n\nVIDEO OUTPUT ROUTING:\n0 1\n"))
	if b, err := rd.ReadBlock(); err != nil || b.Header != "PING" {
		t.Fatalf("first block %#v, %v", b, err)
	}
	if _, err := rd.ReadBlock(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated block: error %v, want io.ErrUnexpectedEOF", err)
	}

	// One malformed block does not lose the framing.
	rd = NewReader(strings.NewReader("hello\n\nPING:\n\n"))
	if _, err := rd.ReadBlock(); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage block: error %v, want ErrMalformed", err)
	}
	if b, err := rd.ReadBlock(); err != nil || b.Header != "PING" {
		t.Errorf("block after garbage: %#v, %v", b, err)
	}

	for name, in := range map[string]string{
		"many lines":    "INPUT LABELS:\n" + strings.Repeat("0 x\n", MaxBlockSize/4+1) + "\n",
		"one long line": "INPUT LABELS:\n0 " + strings.Repeat("x", MaxBlockSize+10),
		"no line end":   strings.Repeat("A", 3*MaxBlockSize),
	} {
		t.Run(name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(in), iotest.HalfReader(strings.NewReader(in))} {
				_, err := NewReader(r).ReadBlock()
				if !errors.Is(err, ErrBlockTooLarge) {
					t.Errorf("error %v, want ErrBlockTooLarge", err)
				}
			}
		})
	}

	// Blank lines alone are a clean end, however many there are.
	rd = NewReader(strings.NewReader(strings.Repeat("\r\n\n", MaxBlockSize)))
	if _, err := rd.ReadBlock(); err != io.EOF {
		t.Errorf("blank stream: error %v, want io.EOF", err)
	}
}

// pipeRWC joins a reader and a writer into an io.ReadWriteCloser.
type pipeRWC struct {
	io.Reader
	io.Writer
	closed bool
}

func (p *pipeRWC) Close() error { p.closed = true; return nil }

func TestConn(t *testing.T) {
	var out bytes.Buffer
	rwc := &pipeRWC{Reader: strings.NewReader("ACK\n\nVIDEO OUTPUT ROUTING:\n5 12\n\n"), Writer: &out}
	c := NewConn(rwc)
	if err := c.WriteMessage(OutputRouting{{5, 12}}, Ping{}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(InputLabels{{0, "bad\nlabel"}}); !errors.Is(err, ErrMalformed) {
		t.Errorf("writing an invalid label: %v, want ErrMalformed", err)
	}
	if err := c.WriteBlock(Block{Header: "TAKE MODE", Lines: []string{"0 true"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "VIDEO OUTPUT ROUTING:\n5 12\n\nPING:\n\nTAKE MODE:\n0 true\n\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	if m, err := c.ReadMessage(); err != nil || m != (Ack{}) {
		t.Errorf("read %#v, %v; want ACK", m, err)
	}
	if m, err := c.ReadMessage(); err != nil || !reflect.DeepEqual(m, OutputRouting{{5, 12}}) {
		t.Errorf("read %#v, %v", m, err)
	}
	if _, err := c.ReadMessage(); err != io.EOF {
		t.Errorf("at end: %v, want io.EOF", err)
	}
	if err := c.Close(); err != nil || !rwc.closed {
		t.Errorf("Close: %v, closed %v", err, rwc.closed)
	}
}

// prelude returns the status dump of an inputs x outputs device.
func prelude(inputs, outputs int) []byte {
	var b bytes.Buffer
	b.WriteString("PROTOCOL PREAMBLE:\nVersion: 2.8\n\n")
	fmt.Fprintf(&b, "VIDEOHUB DEVICE:\nDevice present: true\nModel name: Blackmagic Videohub %dx%d\n"+
		"Friendly name: Bench\nUnique ID: 7C2E0D000000\nVideo inputs: %d\nVideo processing units: 0\n"+
		"Video outputs: %d\nVideo monitoring outputs: 0\nSerial ports: 0\n\n", inputs, outputs, inputs, outputs)
	b.WriteString("INPUT LABELS:\n")
	for i := range inputs {
		fmt.Fprintf(&b, "%d Camera %d\n", i, i+1)
	}
	b.WriteString("\nOUTPUT LABELS:\n")
	for i := range outputs {
		fmt.Fprintf(&b, "%d Monitor %d\n", i, i+1)
	}
	b.WriteString("\nVIDEO OUTPUT LOCKS:\n")
	for i := range outputs {
		fmt.Fprintf(&b, "%d U\n", i)
	}
	b.WriteString("\nVIDEO OUTPUT ROUTING:\n")
	for i := range outputs {
		fmt.Fprintf(&b, "%d %d\n", i, i%inputs)
	}
	b.WriteString("\nCONFIGURATION:\nTake Mode: false\n\nEND PRELUDE:\n\n")
	return b.Bytes()
}

func BenchmarkParsePrelude(b *testing.B) {
	data := prelude(40, 40)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rd := NewReader(bytes.NewReader(data))
		n := 0
		for {
			_, err := rd.ReadMessage()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 8 {
			b.Fatalf("%d messages, want 8", n)
		}
	}
}
