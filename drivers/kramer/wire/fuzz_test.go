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

// checkReply checks that a decoded reply formats to a line that decodes
// to the same reply.
func checkReply(t *testing.T, r Reply) {
	t.Helper()
	f := ReplyFrame(1, r)
	if err := f.Validate(); err != nil {
		if errors.Is(err, ErrLineTooLong) {
			return // the canonical form of a line near the limit may be longer
		}
		t.Fatalf("reply %#v does not validate: %v", r, err)
	}
	again, err := ParseFrame(f.Bytes())
	if err != nil {
		t.Fatalf("ParseFrame(%q): %v", f.Bytes(), err)
	}
	r2, err := DecodeReply(again)
	if err != nil {
		t.Fatalf("DecodeReply(%q) of reply %#v: %v", f.Bytes(), r, err)
	}
	if !reflect.DeepEqual(r2, r) {
		t.Fatalf("reply round trip: %#v became %#v", r, r2)
	}
}

// checkCommands is checkReply for commands.
func checkCommands(t *testing.T, cmds []Command) {
	t.Helper()
	f, err := CommandFrame(1, cmds...)
	if err != nil {
		if errors.Is(err, ErrLineTooLong) {
			return
		}
		t.Fatalf("commands %#v: %v", cmds, err)
	}
	again, err := ParseFrame(f.Bytes())
	if err != nil {
		t.Fatalf("ParseFrame(%q): %v", f.Bytes(), err)
	}
	c2, err := DecodeCommands(again)
	if err != nil {
		t.Fatalf("DecodeCommands(%q) of %#v: %v", f.Bytes(), cmds, err)
	}
	if !reflect.DeepEqual(c2, cmds) {
		t.Fatalf("command round trip: %#v became %#v", cmds, c2)
	}
}

// checkFrame checks the properties every parsed frame has: it validates,
// its bytes parse back to it, and what it decodes to round-trips.
func checkFrame(t *testing.T, f Frame) {
	t.Helper()
	if err := f.Validate(); err != nil {
		t.Fatalf("parsed frame %#v does not validate: %v", f, err)
	}
	again, err := ParseFrame(f.Bytes())
	if err != nil || again != f {
		t.Fatalf("frame round trip: %#v became %#v, %v", f, again, err)
	}
	if f.Reply {
		r, err := DecodeReply(f)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeReply error %v does not wrap ErrMalformed", err)
			}
			return
		}
		checkReply(t, r)
		return
	}
	cmds, err := DecodeCommands(f)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeCommands error %v does not wrap ErrMalformed", err)
		}
		return
	}
	checkCommands(t, cmds)
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte("~01@ROUTE 1,3,7 OK\r\n"))
	f.Add([]byte("#ROUTE? 1,*\r"))
	f.Add([]byte("~01@ROUTE 1,9,1 ERR 003"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := ParseFrame(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrLineTooLong) {
				t.Fatalf("ParseFrame error %v wraps neither ErrMalformed nor ErrLineTooLong", err)
			}
			return
		}
		checkFrame(t, fr)
	})
}

func FuzzDecodeReply(f *testing.F) {
	f.Add("ROUTE 1,3,7 OK")
	f.Add("INFO-IO IN 8,OUT 8")
	f.Add("LABEL 0,1,1,Blu-ray, OK")
	f.Fuzz(func(t *testing.T, body string) {
		if strings.ContainsAny(body, "\r\n") || len(body) > MaxLineSize {
			return
		}
		r, err := DecodeReply(Frame{Reply: true, Addressed: true, Machine: 1, Body: body})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeReply error %v does not wrap ErrMalformed", err)
			}
			return
		}
		checkReply(t, r)
	})
}

func FuzzDecodeCommands(f *testing.F) {
	f.Add("ROUTE 1,3,7")
	f.Add("ROUTE? 1,*|INFO-IO?")
	f.Add("LABEL? 0,1")
	f.Fuzz(func(t *testing.T, body string) {
		if strings.ContainsAny(body, "\r\n") || len(body) > MaxLineSize {
			return
		}
		cmds, err := DecodeCommands(Frame{Addressed: true, Machine: 1, Body: body})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeCommands error %v does not wrap ErrMalformed", err)
			}
			return
		}
		checkCommands(t, cmds)
	})
}

// readStream reads frames with next until the stream ends or fails,
// marking malformed lines, and returns them with the final error.
func readStream(t *testing.T, next func() (Frame, error), limit int) ([]Frame, error) {
	var frames []Frame
	for len(frames) <= limit {
		f, err := next()
		switch {
		case err == nil:
			frames = append(frames, f)
		case errors.Is(err, ErrMalformed):
			frames = append(frames, Frame{Body: "<malformed>"})
		default:
			return frames, err
		}
	}
	t.Fatalf("more than %d frames", limit)
	return nil, nil
}

func FuzzStream(f *testing.F) {
	f.Add([]byte("~01@ OK\r\n~01@ROUTE 1,3,7 OK\r\n~01@ROUTE 1,4,2\r\n"))
	f.Add([]byte("#\r#ROUTE 1,3,7\r#05@ROUTE? 1,*\r"))
	f.Add([]byte("Welcome\r\n\r\n~01@ERR 001\r\n~01@ROU"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Every line ends with a line end, so there are no more lines than
		// bytes.
		// The stateless SplitLines, given everything at once...
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, MaxLineSize+512)
		sc.Split(SplitLines)
		frames, err := readStream(t, func() (Frame, error) {
			if !sc.Scan() {
				if sc.Err() == nil {
					return Frame{}, io.EOF
				}
				return Frame{}, sc.Err()
			}
			return ParseFrame(sc.Bytes())
		}, len(data)+1)
		if err != io.EOF && !errors.Is(err, ErrLineTooLong) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("stream ended with %v", err)
		}
		for _, fr := range frames {
			if fr.Body != "<malformed>" {
				checkFrame(t, fr)
			}
		}
		// ...and the Reader's splitter, given one byte at a time, agree.
		again, err2 := readStream(t, NewReader(iotest.OneByteReader(bytes.NewReader(data))).ReadFrame, len(data)+1)
		if !reflect.DeepEqual(again, frames) || (err == io.EOF) != (err2 == io.EOF) {
			t.Fatalf("one byte at a time: %#v, %v; all at once: %#v, %v", again, err2, frames, err)
		}
	})
}
