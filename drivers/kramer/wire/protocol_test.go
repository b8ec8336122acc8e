package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"understudy/drivers"
)

func TestParseFrame(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Frame
	}{
		{"#", Frame{}},
		{"#\r", Frame{}},
		{"#ROUTE 1,3,7\r", Frame{Body: "ROUTE 1,3,7"}},
		{"#05@ROUTE 1,3,7", Frame{Addressed: true, Machine: 5, Body: "ROUTE 1,3,7"}},
		{"#6@VID 4>2", Frame{Addressed: true, Machine: 6, Body: "VID 4>2"}},
		{"~01@ OK\r\n", Frame{Reply: true, Addressed: true, Machine: 1, Body: " OK"}},
		{"~01@ROUTE ERR 003", Frame{Reply: true, Addressed: true, Machine: 1, Body: "ROUTE ERR 003"}},
		{"~OK", Frame{Reply: true, Body: "OK"}},
		{"~1234@X", Frame{Reply: true, Body: "1234@X"}}, // four digits: no address
		{"~@X", Frame{Reply: true, Body: "@X"}},
		{"~001@X", Frame{Reply: true, Addressed: true, Machine: 1, Body: "X"}},
	} {
		got, err := ParseFrame([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("ParseFrame(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "ROUTE 1,2,3", " #ROUTE", "a\rb", "#a\nb", strings.Repeat("#", MaxLineSize+1)} {
		if f, err := ParseFrame([]byte(in)); err == nil {
			t.Errorf("ParseFrame(%.40q) = %#v, want an error", in, f)
		}
	}
	if _, err := ParseFrame([]byte("#" + strings.Repeat("x", MaxLineSize))); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: %v, want ErrLineTooLong", err)
	}
}

func TestFrameBytes(t *testing.T) {
	for _, tc := range []struct {
		f    Frame
		want string
	}{
		{Frame{}, "#\r"},
		{Frame{Body: "ROUTE 1,3,7"}, "#ROUTE 1,3,7\r"},
		{Frame{Addressed: true, Machine: 5, Body: "ROUTE? 1,3"}, "#05@ROUTE? 1,3\r"},
		{Frame{Reply: true, Addressed: true, Machine: 1, Body: " OK"}, "~01@ OK\r\n"},
		{Frame{Reply: true, Addressed: true, Machine: 12, Body: "X"}, "~12@X\r\n"},
		{Frame{Reply: true, Body: "X"}, "~X\r\n"},
	} {
		if got := string(tc.f.Bytes()); got != tc.want {
			t.Errorf("%#v.Bytes() = %q, want %q", tc.f, got, tc.want)
		}
		if err := tc.f.Validate(); err != nil {
			t.Errorf("%#v.Validate(): %v", tc.f, err)
		}
	}
	for _, f := range []Frame{
		{Body: "a\rb"},
		{Body: "5@X"}, // would read back as an address
		{Addressed: true, Machine: 1000},
		{Body: strings.Repeat("x", MaxLineSize)},
	} {
		if err := f.Validate(); err == nil {
			t.Errorf("Validate(%#v) = nil, want an error", f)
		}
	}
}

func reply(t *testing.T, line string) (Reply, error) {
	t.Helper()
	f, err := ParseFrame([]byte(line))
	if err != nil {
		t.Fatalf("ParseFrame(%q): %v", line, err)
	}
	return DecodeReply(f)
}

func TestDecodeReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
	}{
		{"~01@ OK", OK{}},
		{"~01@ok", OK{}},
		{"~OK", OK{}},
		{"~01@ROUTE 1,3,7 OK", RouteStatus{Layer: 1, Output: 3, Input: 7, OK: true}},
		{"~01@ROUTE 1,3,7", RouteStatus{Layer: 1, Output: 3, Input: 7}},
		{"~01@ROUTE 12, 1, 3 ok", RouteStatus{Layer: 12, Output: 1, Input: 3, OK: true}},
		{"~01@ROUTE 1,*,2", RouteStatus{Layer: 1, Output: All, Input: 2}},
		{"~01@ROUTE 2,4,0", RouteStatus{Layer: 2, Output: 4, Input: 0}},
		{"~01@ROUTE ERR 003", Err{Command: "ROUTE", Code: 3}},
		{"~01@ROUTE 1,9,1 ERR 003", Err{Command: "ROUTE", Params: "1,9,1", Code: 3}},
		{"~01@ROUTE? ERR003", Err{Command: "ROUTE?", Code: 3}},
		{"~01@ERR 001", Err{Code: 1}},
		{"~01@ERR002", Err{Code: 2}},
		{"~01@FROBNICATE ERR 002", Err{Command: "FROBNICATE", Code: 2}},
		{"~VID 82>3 ERR 003", Err{Command: "VID", Params: "82>3", Code: 3}},
		{"~01@INFO-IO IN 8,OUT 8", IOCount{Inputs: 8, Outputs: 8}},
		{"~01@INFO-IO? IN 16, OUT 18", IOCount{Inputs: 16, Outputs: 18}},
		{"~01@MODEL VS-88UT", Model{Name: "VS-88UT"}},
		{"~01@MODEL", Model{}},
		{"~01@LABEL 0,1,1,Blu-ray", Label{Stage: 0, Port: 1, On: true, Text: "Blu-ray"}},
		{"~01@LABEL 1,4,0,Room A, left", Label{Stage: 1, Port: 4, Text: "Room A, left"}},
		{"~01@VID 1>2,3>4", Switched{Kind: "VID", Links: []Link{{1, 2}, {3, 4}}}},
		{"~AV 3>7 OK", Switched{Kind: "AV", Links: []Link{{3, 7}}}},
		{"~01@AUD 0>1, 2>*", Switched{Kind: "AUD", Links: []Link{{0, 1}, {2, All}}}},
		{"~01@Kramer Electronics LTD., VS-88UT, Version 1.2", UnknownReply{Body: "Kramer Electronics LTD., VS-88UT, Version 1.2"}},
		{"~01@", UnknownReply{}},
		{"~01@ERR", UnknownReply{Body: "ERR"}},
		{"~01@VMUTE 6,1 OK", UnknownReply{Body: "VMUTE 6,1 OK"}},
	} {
		got, err := reply(t, tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeReply(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

func TestDecodeReplyErrors(t *testing.T) {
	for _, in := range []string{
		"~01@ROUTE 1,3", "~01@ROUTE 1,3,7,9", "~01@ROUTE a,3,7", "~01@ROUTE 1,3,*",
		"~01@ROUTE 1,1025,1", "~01@ROUTE -1,3,7", "~01@ROUTE", "~01@ROUTE 10000,1,1",
		"~01@INFO-IO 8,8", "~01@INFO-IO IN x,OUT 8", "~01@INFO-IO IN 2000,OUT 8",
		"~01@LABEL 0,1", "~01@LABEL 2,1,1,x", "~01@LABEL 0,1,2,x",
		"~01@VID", "~01@VID 1-2", "~01@AV x>1", "~01@AUD 1>",
	} {
		if r, err := reply(t, in); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeReply(%q) = %#v, %v; want ErrMalformed", in, r, err)
		}
	}
	if _, err := DecodeReply(Frame{Body: "ROUTE 1,2,3"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a command decoded as a reply: %v", err)
	}
}

func TestDecodeCommands(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Command
	}{
		{"#", []Command{Handshake{}}},
		{"#ROUTE 1,3,7", []Command{RouteSet{Layer: 1, Output: 3, Input: 7}}},
		{"#route 2, *, 0", []Command{RouteSet{Layer: 2, Output: All, Input: 0}}},
		{"#ROUTE? 1,3", []Command{RouteQuery{Layer: 1, Output: 3}}},
		{"#ROUTE? 1,*", []Command{RouteQuery{Layer: 1, Output: All}}},
		{"#INFO-IO?", []Command{InfoIOQuery{}}},
		{"#model?", []Command{ModelQuery{}}},
		{"#LABEL? 1,4", []Command{LabelQuery{Stage: 1, Port: 4}}},
		{"#VID 1>2", []Command{UnknownCommand{Name: "VID", Params: "1>2"}}},
		{"#ROUTE 1,1,1|ROUTE? 1,1| MODEL?", []Command{RouteSet{1, 1, 1}, RouteQuery{1, 1}, ModelQuery{}}},
		{"#ROUTE 1,1,1|", []Command{RouteSet{1, 1, 1}, Handshake{}}},
	} {
		f, err := ParseFrame([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCommands(f)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeCommands(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"#ROUTE 1,3", "#ROUTE 1,3,x", "#ROUTE 1,3,*", "#ROUTE 1,1025,1", "#ROUTE? 1", "#ROUTE? *,1",
		"#INFO-IO? 1", "#MODEL? x", "#LABEL? 0", "#ROUTE 1,1,1|ROUTE",
	} {
		f, err := ParseFrame([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if c, err := DecodeCommands(f); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeCommands(%q) = %#v, %v; want ErrMalformed", in, c, err)
		}
	}
	if _, err := DecodeCommands(Frame{Reply: true}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a reply decoded as a command: %v", err)
	}
}

func TestFormatExact(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{string(ReplyFrame(1, OK{}).Bytes()), "~01@ OK\r\n"},
		{string(ReplyFrame(1, RouteStatus{1, 3, 7, true}).Bytes()), "~01@ROUTE 1,3,7 OK\r\n"},
		{string(ReplyFrame(1, RouteStatus{2, All, 7, false}).Bytes()), "~01@ROUTE 2,*,7\r\n"},
		{string(ReplyFrame(1, Err{Command: "ROUTE", Code: 3}).Bytes()), "~01@ROUTE ERR 003\r\n"},
		{string(ReplyFrame(1, Err{Command: "ROUTE", Params: "1,9,1", Code: 3}).Bytes()), "~01@ROUTE 1,9,1 ERR 003\r\n"},
		{string(ReplyFrame(1, Err{Code: 1}).Bytes()), "~01@ERR 001\r\n"},
		{string(ReplyFrame(1, IOCount{8, 16}).Bytes()), "~01@INFO-IO IN 8,OUT 16\r\n"},
		{string(ReplyFrame(1, Model{"VS-88UT"}).Bytes()), "~01@MODEL VS-88UT\r\n"},
		{string(ReplyFrame(1, Label{0, 2, true, "Camera"}).Bytes()), "~01@LABEL 0,2,1,Camera\r\n"},
		{string(ReplyFrame(1, Switched{"VID", []Link{{1, 2}, {0, All}}}).Bytes()), "~01@VID 1>2,0>*\r\n"},
		{string(ReplyFrame(0, UnknownReply{"hello"}).Bytes()), "~hello\r\n"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, tc := range []struct {
		machine int
		cmds    []Command
		want    string
	}{
		{0, []Command{Handshake{}}, "#\r"},
		{0, []Command{RouteSet{1, 3, 7}}, "#ROUTE 1,3,7\r"},
		{5, []Command{RouteQuery{2, 4}}, "#05@ROUTE? 2,4\r"},
		{0, []Command{InfoIOQuery{}, ModelQuery{}, LabelQuery{1, 3}}, "#INFO-IO?|MODEL?|LABEL? 1,3\r"},
		{0, []Command{UnknownCommand{Name: "VID", Params: "1>2"}}, "#VID 1>2\r"},
	} {
		f, err := CommandFrame(tc.machine, tc.cmds...)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(f.Bytes()); got != tc.want {
			t.Errorf("CommandFrame(%d, %#v) = %q, want %q", tc.machine, tc.cmds, got, tc.want)
		}
	}
	for _, c := range []Command{UnknownCommand{Name: "A|B"}, UnknownCommand{Name: "A\rB"}} {
		if _, err := CommandFrame(0, c); err == nil {
			t.Errorf("CommandFrame(%#v) accepted", c)
		}
	}
}

func readAll(t *testing.T, r io.Reader) ([]Frame, error) {
	t.Helper()
	rd := NewReader(r)
	var got []Frame
	for {
		f, err := rd.ReadFrame()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, f)
	}
}

func TestStream(t *testing.T) {
	const stream = "~01@ OK\r\n~01@ROUTE 1,3,7 OK\r\n\r\n~01@ROUTE ERR 003\r\n"
	want := []Frame{
		{Reply: true, Addressed: true, Machine: 1, Body: " OK"},
		{Reply: true, Addressed: true, Machine: 1, Body: "ROUTE 1,3,7 OK"},
		{Reply: true, Addressed: true, Machine: 1, Body: "ROUTE ERR 003"},
	}
	for name, r := range map[string]io.Reader{
		"crlf":           strings.NewReader(stream),
		"lf":             strings.NewReader(strings.ReplaceAll(stream, "\r\n", "\n")),
		"cr":             strings.NewReader(strings.ReplaceAll(stream, "\r\n", "\r")),
		"one byte":       iotest.OneByteReader(strings.NewReader(stream)),
		"blank lines":    strings.NewReader("\r\n\n\r" + strings.ReplaceAll(stream, "\r\n", "\r\n\n\r\r")),
		"half at a time": iotest.HalfReader(strings.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(t, r)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, %v; want %#v", got, err, want)
			}
		})
	}

	// Commands end with CR alone.
	got, err := readAll(t, strings.NewReader("#\r#ROUTE 1,3,7\r#ROUTE? 1,3\r"))
	if err != nil || len(got) != 3 || got[1].Body != "ROUTE 1,3,7" {
		t.Errorf("commands: %#v, %v", got, err)
	}

	// A line that is not a frame does not lose the framing.
	rd := NewReader(strings.NewReader("Welcome\r\n~01@ OK\r\n"))
	if _, err := rd.ReadFrame(); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage line: %v, want ErrMalformed", err)
	}
	if f, err := rd.ReadFrame(); err != nil || f.Body != " OK" {
		t.Errorf("line after garbage: %#v, %v", f, err)
	}

	// A stream that ends inside a line.
	rd = NewReader(strings.NewReader("~01@ OK\r\n~01@ROU"))
	rd.ReadFrame()
	if _, err := rd.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated line: %v, want io.ErrUnexpectedEOF", err)
	}

	for name, in := range map[string]string{
		"long line":   "~01@" + strings.Repeat("x", MaxLineSize+10) + "\r\n",
		"no line end": strings.Repeat("x", 3*MaxLineSize),
	} {
		t.Run(name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(in), iotest.HalfReader(strings.NewReader(in))} {
				if _, err := NewReader(r).ReadFrame(); !errors.Is(err, ErrLineTooLong) {
					t.Errorf("error %v, want ErrLineTooLong", err)
				}
			}
		})
	}

	// Line ends alone are a clean end, however many there are.
	if _, err := NewReader(strings.NewReader(strings.Repeat("\r\n", MaxLineSize))).ReadFrame(); err != io.EOF {
		t.Errorf("blank stream: %v, want io.EOF", err)
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
	rwc := &pipeRWC{Reader: strings.NewReader("~01@ OK\r\n~01@ROUTE 1,3,7 OK\r\n"), Writer: &out}
	c := NewConn(rwc)
	if err := c.WriteCommand(0, Handshake{}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteCommand(3, RouteSet{1, 3, 7}, RouteQuery{1, 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteReply(1, OK{}, Err{Command: "ROUTE", Code: 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteCommand(0, UnknownCommand{Name: "BAD|NAME"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("writing a command with '|': %v, want ErrMalformed", err)
	}
	if err := c.WriteReply(1, Model{Name: "two\nlines"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("writing a reply with a line break: %v, want ErrMalformed", err)
	}
	if got, want := out.String(), "#\r#03@ROUTE 1,3,7|ROUTE? 1,3\r~01@ OK\r\n~01@ROUTE ERR 003\r\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	f, err := c.ReadFrame()
	if r, derr := DecodeReply(f); err != nil || derr != nil || r != (OK{}) {
		t.Errorf("read %#v: %v, %v", f, err, derr)
	}
	f, _ = c.ReadFrame()
	if r, _ := DecodeReply(f); r != (RouteStatus{1, 3, 7, true}) {
		t.Errorf("read %#v", r)
	}
	if _, err := c.ReadFrame(); err != io.EOF {
		t.Errorf("at end: %v, want io.EOF", err)
	}
	if err := c.Close(); err != nil || !rwc.closed {
		t.Errorf("Close: %v, closed %v", err, rwc.closed)
	}
}

func TestErrorCodes(t *testing.T) {
	for code, want := range map[int]string{
		1: "syntax error", 2: "command not available", 3: "parameter out of range", 4: "unauthorized access",
		5: "internal firmware error", 6: "device busy", 8: "timeout", 15: "feature not supported", 77: "error 077",
	} {
		if got := CodeText(code); got != want {
			t.Errorf("CodeText(%d) = %q, want %q", code, got, want)
		}
	}
	e := &DeviceError{Command: "ROUTE 1,9,1", Code: 3}
	if e.Error() != "ERR 003 (parameter out of range)" {
		t.Errorf("Error() = %q", e.Error())
	}
	for code, refused := range map[int]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: false, 8: false, 31: true} {
		err := error(&DeviceError{Code: code})
		if errors.Is(err, drivers.ErrRefused) != refused {
			t.Errorf("code %d: refused = %v, want %v", code, !refused, refused)
		}
	}
}
