package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseReply(t *testing.T) {
	for line, want := range map[string]Reply{
		"Out03 In07 All":      TieReply{Output: 3, Input: 7, Plane: PlaneAll},
		"Out3 In1 All":        TieReply{Output: 3, Input: 1, Plane: PlaneAll}, // DXP prints no leading zeros
		"Out03In07Vid":        TieReply{Output: 3, Input: 7, Plane: PlaneVideo},
		"Out04 In24 Aud":      TieReply{Output: 4, Input: 24, Plane: PlaneAudio},
		"Out04 In10 RGB":      TieReply{Output: 4, Input: 10, Plane: PlaneRGB},
		"Out03 In00 All":      TieReply{Output: 3, Input: 0, Plane: PlaneAll},
		"Out128 In12 All":     TieReply{Output: 128, Input: 12, Plane: PlaneAll},
		"In05 All":            TieAllReply{Input: 5, Plane: PlaneAll},
		"07":                  Number(7),
		"0":                   Number(0),
		"128":                 Number(128),
		"V8X4 A8X4":           InfoReply{VideoInputs: 8, VideoOutputs: 4, AudioInputs: 8, AudioOutputs: 4, Audio: true},
		"V16X16":              InfoReply{VideoInputs: 16, VideoOutputs: 16},
		"E01":                 ErrInvalidInput,
		"E10":                 ErrInvalidCommand,
		"E22":                 ErrBusy,
		"E99":                 ErrorCode(99),
		"Password:":           PasswordPrompt{},
		"Password: ":          PasswordPrompt{},
		"Login Administrator": LoginReply{Admin: true},
		"Login User":          LoginReply{},
		"(c) Copyright 2013, Extron Electronics, DXP 88 HDMI, V1.23, 60-1234-01": Copyright{Text: "2013, Extron Electronics, DXP 88 HDMI, V1.23, 60-1234-01"},
		"Qik":                        Qik{},
		"Vrb3":                       VerboseReply(3),
		"Nmi01,Podium cam":           NameReply{Port: 1, Name: "Podium cam"},
		"Nmo12,Main PJ1":             NameReply{Output: true, Port: 12, Name: "Main PJ1"},
		"1.23":                       Text("1.23"),
		"Tue, 02 Dec 2025, 10:00:00": Text("Tue, 02 Dec 2025, 10:00:00"),
		"Podium cam":                 Text("Podium cam"),
		"Out03 In07 Foo":             Text("Out03 In07 Foo"),
		"Out03 In07":                 Text("Out03 In07"),
		"Out In07 All":               Text("Out In07 All"),
		"Out12345 In1 All":           Text("Out12345 In1 All"),
		"E1":                         Text("E1"),
		"E100":                       Text("E100"),
		"12345":                      Text("12345"),
		"V8X4 A8X4 B":                Text("V8X4 A8X4 B"),
		"V8x4":                       Text("V8x4"),
		"128X128 T1 U6 M128X128":     Text("128X128 T1 U6 M128X128"),
		"Vrb12":                      Text("Vrb12"),
		"Nmi01":                      Text("Nmi01"),
		"":                           Text(""),
	} {
		got := ParseReply(line)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseReply(%q) = %#v, want %#v", line, got, want)
		}
		if again := ParseReply(got.Line()); !reflect.DeepEqual(again, got) {
			t.Errorf("ParseReply(%q).Line() = %q parses to %#v", line, got.Line(), again)
		}
	}
}

func TestReplyLineExact(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		want string
	}{
		{TieReply{Output: 3, Input: 7, Plane: PlaneAll}, "Out03 In07 All"},
		{TieReply{Output: 5, Input: 7, Plane: PlaneVideo}, "Out05 In07 Vid"},
		{TieReply{Output: 120, Input: 7, Plane: PlaneAudio}, "Out120 In07 Aud"},
		{TieAllReply{Input: 5, Plane: PlaneRGB}, "In05 RGB"},
		{Number(2), "02"},
		{InfoReply{VideoInputs: 8, VideoOutputs: 4, AudioInputs: 8, AudioOutputs: 4, Audio: true}, "V8X4 A8X4"},
		{ErrInvalidOutput, "E12"},
		{LoginReply{Admin: true}, "Login Administrator"},
		{PasswordPrompt{}, "Password:"},
		{Qik{}, "Qik"},
		{VerboseReply(0), "Vrb0"},
		{NameReply{Output: true, Port: 1, Name: "Main PJ1"}, "Nmo01,Main PJ1"},
	} {
		if got := tc.r.Line(); got != tc.want {
			t.Errorf("%#v.Line() = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestParseCommand(t *testing.T) {
	for tok, want := range map[string]Command{
		"1*3!":                 Tie{Input: 1, Output: 3, Plane: PlaneAll},
		"02*02&":               Tie{Input: 2, Output: 2, Plane: PlaneRGB},
		"003*003%":             Tie{Input: 3, Output: 3, Plane: PlaneVideo},
		"4*8$":                 Tie{Input: 4, Output: 8, Plane: PlaneAudio},
		"0*3!":                 Tie{Input: 0, Output: 3, Plane: PlaneAll},
		"5*!":                  TieAll{Input: 5, Plane: PlaneAll},
		"3%":                   ReadTie{Output: 3, Plane: PlaneVideo},
		"12$":                  ReadTie{Output: 12, Plane: PlaneAudio},
		"I":                    Info{},
		"i":                    Info{},
		"Q":                    Firmware{},
		"N":                    PartNumber{},
		"\x1b+Q3*4%3*5%3*6!\r": QuickTie{{Input: 3, Output: 4, Plane: PlaneVideo}, {Input: 3, Output: 5, Plane: PlaneVideo}, {Input: 3, Output: 6, Plane: PlaneAll}},
		"\x1b3NI\r":            ReadName{Port: 3},
		"\x1b12NO\r":           ReadName{Output: true, Port: 12},
		"\x1b1,Podium camNI\r": WriteName{Port: 1, Name: "Podium cam"},
		"\x1b1,Main PJ1NO\r":   WriteName{Output: true, Port: 1, Name: "Main PJ1"},
		"\x1b1,NO\r":           WriteName{Output: true, Port: 1},
		"\x1b3CV\r":            SetVerbose{Mode: 3},
		"\x1bCV\r":             ReadVerbose{},
	} {
		got, err := ParseCommand([]byte(tok))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseCommand(%q) = %#v, %v; want %#v", tok, got, err, want)
			continue
		}
		if again, err := ParseCommand(got.Bytes()); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("ParseCommand(%q).Bytes() = %q parses to %#v, %v", tok, got.Bytes(), again, err)
		}
	}
	for _, tok := range []string{"", "*", "!", "1*", "1*2", "*3!", "1*2*3!", "12345*1!", "1*12345!", "1X", "+", "1I",
		"\x1b", "\x1b\r", "\x1b+Q\r", "\x1b+Q1*2\r", "\x1b+Q1*!\r", "\x1bFOO\r", "\x1b3NI", "\x1bNI\r", "\x1b1,a\x01NI\r", "\x1b5CVX\r"} {
		if c, err := ParseCommand([]byte(tok)); !errors.Is(err, ErrUnknownCommand) {
			t.Errorf("ParseCommand(%q) = %#v, %v; want ErrUnknownCommand", tok, c, err)
		}
	}
}

func TestCommandBytesExact(t *testing.T) {
	for _, tc := range []struct {
		c    Command
		want string
	}{
		{Tie{Input: 7, Output: 3, Plane: PlaneAll}, "7*3!"},
		{Tie{Input: 7, Output: 3, Plane: PlaneAudio}, "7*3$"},
		{TieAll{Input: 1, Plane: PlaneVideo}, "1*%"},
		{ReadTie{Output: 3, Plane: PlaneVideo}, "3%"},
		{QuickTie{{Input: 1, Output: 2, Plane: PlaneAll}, {Input: 3, Output: 4, Plane: PlaneAll}}, "\x1b+Q1*2!3*4!\r"},
		{Info{}, "I"},
		{Firmware{}, "Q"},
		{ReadName{Port: 3}, "\x1b3NI\r"},
		{ReadName{Output: true, Port: 3}, "\x1b3NO\r"},
		{WriteName{Port: 1, Name: "Podium cam"}, "\x1b1,Podium camNI\r"},
		{SetVerbose{Mode: 3}, "\x1b3CV\r"},
		{ReadVerbose{}, "\x1bCV\r"},
	} {
		if got := string(tc.c.Bytes()); got != tc.want {
			t.Errorf("%#v.Bytes() = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestErrorCode(t *testing.T) {
	if got := ErrInvalidInput.String(); got != "E01 invalid input number" {
		t.Errorf("String() = %q", got)
	}
	if got := ErrorCode(42).String(); got != "E42 error" {
		t.Errorf("String() = %q", got)
	}
	for _, c := range []ErrorCode{ErrBusy, ErrTimedOut, ErrSystemTimedOut, ErrTooManyConnection} {
		if !c.Transient() {
			t.Errorf("%s is not transient", c)
		}
	}
	for _, c := range []ErrorCode{ErrInvalidInput, ErrInvalidCommand, ErrInvalidOutput, ErrInvalidValue, ErrInvalidForConfig, ErrPrivilege} {
		if c.Transient() {
			t.Errorf("%s is transient", c)
		}
	}
}

// scanAll splits everything r yields with split and returns the tokens and
// the final error (nil at a clean end).
func scanAll(r io.Reader, split bufio.SplitFunc, max int) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64), MaxLine+MaxCommand+4096)
	sc.Split(split)
	var toks []string
	for sc.Scan() {
		toks = append(toks, sc.Text())
		if len(toks) > max {
			return toks, errors.New("too many tokens")
		}
	}
	return toks, sc.Err()
}

func TestSplitReplies(t *testing.T) {
	const banner = "\r\n(c) Copyright 2013, Extron Electronics, DXP 88 HDMI, V1.23, 60-1234-01\r\nTue, 02 Dec 2025, 10:00:00\r\n\r\nPassword:"
	want := []string{"(c) Copyright 2013, Extron Electronics, DXP 88 HDMI, V1.23, 60-1234-01", "Tue, 02 Dec 2025, 10:00:00", "Password:"}
	for name, r := range map[string]io.Reader{
		"all at once": strings.NewReader(banner),
		"one byte":    iotest.OneByteReader(strings.NewReader(banner)),
	} {
		// The prompt is yielded before the stream ends: the device sends no
		// line end and waits.
		pr, pw := io.Pipe()
		go func() {
			_, _ = io.Copy(pw, r)
		}()
		sc := bufio.NewScanner(pr)
		sc.Split(SplitReplies)
		var got []string
		for len(got) < len(want) && sc.Scan() {
			got = append(got, sc.Text())
		}
		pw.Close()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	for in, want := range map[string][]string{
		"Out03 In07 All\r\n07\r\n":  {"Out03 In07 All", "07"},
		"V8X4 A8X4\rE10\n\n\r\nQik": {"V8X4 A8X4", "E10", "Qik"}, // CR alone ends a line; a partial line at the end is kept
		"\r\n\r\n":                  nil,
	} {
		got, err := scanAll(strings.NewReader(in), SplitReplies, 100)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	long := strings.Repeat("x", MaxLine+1)
	for _, in := range []string{long, long + "\r\n", "ok\r\n" + long} {
		if _, err := scanAll(iotest.OneByteReader(strings.NewReader(in)), SplitReplies, 100); !errors.Is(err, ErrLineTooLong) {
			t.Errorf("a line of %d bytes: %v", len(in), err)
		}
	}
	if got, err := scanAll(strings.NewReader(strings.Repeat("x", MaxLine)+"\n"), SplitReplies, 100); err != nil || len(got) != 1 {
		t.Errorf("a line of MaxLine bytes: %d tokens, %v", len(got), err)
	}
}

func TestSplitCommands(t *testing.T) {
	for in, want := range map[string][]string{
		"1*3!3%I\x1b3NI\r\r\nQ":  {"1*3!", "3%", "I", "\x1b3NI\r", "Q"},
		"1*1!02*02&003*003%4*8$": {"1*1!", "02*02&", "003*003%", "4*8$"},
		"12\r3%":                 {"12", "3%"},         // a number cut short by CR
		"12\x1bCV\r":             {"12", "\x1bCV\r"},   // … or by Esc
		"\x1b+Q1*2!3*4!\r\n":     {"\x1b+Q1*2!3*4!\r"}, // the quick tie
		"\x1b3NI":                {"\x1b3NI"},          // unfinished at the end
		"1*2":                    {"1*2"},
		"\r\n\x00\r\n":           nil,
		"X+1I":                   {"X", "+", "1I"},
	} {
		for name, r := range map[string]io.Reader{
			"all at once": strings.NewReader(in),
			"one byte":    iotest.OneByteReader(strings.NewReader(in)),
		} {
			got, err := scanAll(r, SplitCommands, 100)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%q %s: %q, %v; want %q", in, name, got, err, want)
			}
		}
	}
	// Overlong input is cut into tokens of MaxCommand bytes, never an error.
	for _, in := range []string{strings.Repeat("1", 2*MaxCommand+1) + "!", "\x1b" + strings.Repeat("a", 2*MaxCommand) + "\r"} {
		got, err := scanAll(iotest.OneByteReader(strings.NewReader(in)), SplitCommands, 1000)
		if err != nil || len(got) < 3 || len(got[0]) != MaxCommand || !bytes.Equal(dropSeparators([]byte(strings.Join(got, ""))), dropSeparators([]byte(in))) {
			t.Errorf("overlong %q…: %d tokens, %v", in[:8], len(got), err)
		}
	}
}

func TestTelnetReader(t *testing.T) {
	in := "a\xff\xffb\xff\xfd\x01c\xff\xfa\x18\x01\xff\xff\xff\xf0d\xff\xf1e\x00f\xff\xfb\x03"
	for name, r := range map[string]io.Reader{
		"all at once": strings.NewReader(in),
		"one byte":    iotest.OneByteReader(strings.NewReader(in)),
	} {
		var asked [][2]byte
		got, err := io.ReadAll(NewTelnetReader(r, func(cmd, opt byte) { asked = append(asked, [2]byte{cmd, opt}) }))
		if err != nil || string(got) != "a\xffbcdef" {
			t.Errorf("%s: %q, %v", name, got, err)
		}
		if want := [][2]byte{{telnetDO, 1}, {telnetWILL, 3}}; !reflect.DeepEqual(asked, want) {
			t.Errorf("%s: negotiation %v, want %v", name, asked, want)
		}
	}
	if got := TelnetRefusal(telnetDO, 1); !bytes.Equal(got, []byte{telnetIAC, telnetWONT, 1}) {
		t.Errorf("refusal of DO: %v", got)
	}
	if got := TelnetRefusal(telnetWILL, 3); !bytes.Equal(got, []byte{telnetIAC, telnetDONT, 3}) {
		t.Errorf("refusal of WILL: %v", got)
	}
	if got := TelnetRefusal(telnetWONT, 3); got != nil {
		t.Errorf("answer to WONT: %v", got)
	}
	// A subnegotiation that never ends is given up after maxSubneg bytes.
	got, _ := io.ReadAll(NewTelnetReader(strings.NewReader("\xff\xfa"+strings.Repeat("z", maxSubneg+1)+"ok"), nil))
	if string(got) != "ok" {
		t.Errorf("after an endless subnegotiation: %q", got)
	}
}

func TestConnReadsAndWrites(t *testing.T) {
	var out bytes.Buffer
	rwc := struct {
		io.Reader
		io.Writer
		io.Closer
	}{strings.NewReader("\xff\xfd\x18\r\nPassword:\r\nLogin User\r\nOut01 In02 All\r\n"), &out, io.NopCloser(nil)}
	c := NewConn(rwc)
	var got []Reply
	for {
		r, _, err := c.ReadReply()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if want := []Reply{PasswordPrompt{}, LoginReply{}, TieReply{Output: 1, Input: 2, Plane: PlaneAll}}; !reflect.DeepEqual(got, want) {
		t.Errorf("replies %#v", got)
	}
	if err := c.SendPassword("pw"); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(Tie{Input: 2, Output: 1, Plane: PlaneAll}, ReadTie{Output: 1, Plane: PlaneVideo}); err != nil {
		t.Fatal(err)
	}
	if want := "\xff\xfc\x18pw\r2*1!1%"; out.String() != want {
		t.Errorf("wrote %q, want %q", out.String(), want)
	}
}
