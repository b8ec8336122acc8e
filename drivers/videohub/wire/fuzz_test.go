package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// checkBlock checks the properties every parsed block has: it validates,
// it dumps to bytes that parse back to it, and, when it decodes, the typed
// message dumps to a block that decodes back to the same message.
func checkBlock(t *testing.T, b Block) {
	t.Helper()
	if err := b.Validate(); err != nil {
		t.Fatalf("parsed block %#v does not validate: %v", b, err)
	}
	again, err := ParseBlock(b.Dump())
	if err != nil {
		t.Fatalf("ParseBlock(Dump(%#v)): %v", b, err)
	}
	if !reflect.DeepEqual(again, b) {
		t.Fatalf("block round trip: %#v became %#v", b, again)
	}
	m, err := Decode(b)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Decode error %v does not wrap ErrMalformed", err)
		}
		return
	}
	mb := m.Block()
	if err := mb.Validate(); err != nil {
		if errors.Is(err, ErrBlockTooLarge) {
			return // canonical form of a block near the limit may be longer
		}
		t.Fatalf("message %#v does not validate: %v", m, err)
	}
	pb, err := ParseBlock(mb.Dump())
	if err != nil {
		t.Fatalf("ParseBlock(message %#v): %v", m, err)
	}
	m2, err := Decode(pb)
	if err != nil {
		t.Fatalf("Decode(message %#v): %v", m, err)
	}
	if !reflect.DeepEqual(m2, m) {
		t.Fatalf("message round trip: %#v became %#v", m, m2)
	}
}

func FuzzParseBlock(f *testing.F) {
	f.Add([]byte(prelude28[:len("PROTOCOL PREAMBLE:\nVersion: 2.8\n\n")]))
	f.Add([]byte("VIDEO OUTPUT ROUTING:\r\n5 12\r\n\r\n"))
	f.Add([]byte("NAK\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBlock(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBlockTooLarge) {
				t.Fatalf("ParseBlock error %v wraps neither ErrMalformed nor ErrBlockTooLarge", err)
			}
			return
		}
		checkBlock(t, b)
	})
}

// readStream reads blocks with next until the stream ends or fails,
// skipping malformed blocks, and returns them with the final error.
func readStream(t *testing.T, next func() (Block, error), limit int) ([]Block, error) {
	var blocks []Block
	for len(blocks) <= limit {
		b, err := next()
		switch {
		case err == nil:
			blocks = append(blocks, b)
		case errors.Is(err, ErrMalformed):
			blocks = append(blocks, Block{Header: "<malformed>"})
		default:
			return blocks, err
		}
	}
	t.Fatalf("more than %d blocks", limit)
	return nil, nil
}

func FuzzStream(f *testing.F) {
	f.Add([]byte(prelude28))
	f.Add([]byte("ACK\n\nVIDEO OUTPUT ROUTING:\n5 12\n\nPING:\n\n"))
	f.Add([]byte("\x00\xffgarbage\n\n:\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Every block ends with its own blank line, so there can be no more
		// blocks than bytes / 2.
		// The stateless SplitBlocks, given everything at once...
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, MaxBlockSize+4096)
		sc.Split(SplitBlocks)
		blocks, err := readStream(t, func() (Block, error) {
			if !sc.Scan() {
				if sc.Err() == nil {
					return Block{}, io.EOF
				}
				return Block{}, sc.Err()
			}
			return ParseBlock(sc.Bytes())
		}, len(data)/2+1)
		if err != io.EOF && !errors.Is(err, ErrBlockTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("stream ended with %v", err)
		}
		for _, b := range blocks {
			if b.Header != "<malformed>" {
				checkBlock(t, b)
			}
		}
		// ...and the Reader's splitter, given one byte at a time, agree.
		again, err2 := readStream(t, NewReader(iotest.OneByteReader(bytes.NewReader(data))).ReadBlock, len(data)/2+1)
		if !reflect.DeepEqual(again, blocks) || (err == io.EOF) != (err2 == io.EOF) {
			t.Fatalf("one byte at a time: %#v, %v; all at once: %#v, %v", again, err2, blocks, err)
		}
	})
}
