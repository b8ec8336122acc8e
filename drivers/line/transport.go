package line

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"go.bug.st/serial"
)

var (
	// errNoReply: no reply line came within the timeout.
	errNoReply = errors.New("no reply")
	// errClosedByDevice: the device closed the connection (EOF).
	errClosedByDevice = errors.New("connection closed by the device")
)

// stream is an open tcp connection or serial port, with a goroutine reading
// everything the device sends into an inbox.
type stream struct {
	rwc        io.ReadWriteCloser
	nc         net.Conn // nil for a serial port
	in         *inbox
	readerDone chan struct{}
}

// open connects (tcp) or opens the port (serial).
func (d *Line) open(ctx context.Context) (*stream, error) {
	s := &stream{in: newInbox(), readerDone: make(chan struct{})}
	switch d.set.Transport {
	case TCP:
		dialer := net.Dialer{Timeout: d.set.Timeout.D()}
		nc, err := dialer.DialContext(ctx, "tcp", d.set.Address)
		if err != nil {
			return nil, err
		}
		s.rwc, s.nc = nc, nc
	case Serial:
		p, err := serial.Open(d.set.Address, d.mode)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", d.set.Address, err)
		}
		s.rwc = p
	default:
		return nil, fmt.Errorf("transport %s has no connection", d.set.Transport)
	}
	go func() {
		defer close(s.readerDone)
		s.in.fill(s.rwc)
	}()
	return s, nil
}

// close closes the connection and waits for its reader.
func (s *stream) close() {
	_ = s.rwc.Close()
	<-s.readerDone
}

// write writes all of data within timeout (tcp) and returns how many bytes
// were written. ctx interrupts a tcp write.
func (s *stream) write(ctx context.Context, data []byte, timeout time.Duration) (int, error) {
	if s.nc != nil {
		_ = s.nc.SetWriteDeadline(time.Now().Add(timeout))
		stop := context.AfterFunc(ctx, func() { _ = s.nc.SetWriteDeadline(time.Now()) })
		defer stop()
	}
	written := 0
	for written < len(data) {
		n, err := s.rwc.Write(data[written:])
		written += max(n, 0)
		if err != nil {
			return written, err
		}
		if n <= 0 {
			return written, io.ErrShortWrite
		}
	}
	return written, nil
}

// inbox holds what the device sent and the command has not read yet.
type inbox struct {
	mu      sync.Mutex
	buf     []byte
	err     error         // why reading ended; nil while it goes on
	changed chan struct{} // closed (and replaced) when buf or err changes
	dead    chan struct{} // closed when reading ended
}

func newInbox() *inbox {
	return &inbox{changed: make(chan struct{}), dead: make(chan struct{})}
}

// fill reads from r into the inbox until r fails. While no command reads,
// only the last MaxLine bytes are kept.
func (in *inbox) fill(r io.Reader) {
	chunk := make([]byte, 4096)
	for {
		n, err := r.Read(chunk)
		in.mu.Lock()
		if n > 0 {
			in.buf = append(in.buf, chunk[:n]...)
			if len(in.buf) > 2*MaxLine {
				in.buf = append([]byte(nil), in.buf[len(in.buf)-MaxLine:]...)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errClosedByDevice
			}
			in.err = err
			close(in.dead)
		}
		if n > 0 || err != nil {
			close(in.changed)
			in.changed = make(chan struct{})
		}
		in.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// drain discards everything received so far: stale replies, unsolicited
// messages, a late answer to an earlier command.
func (in *inbox) drain() {
	in.mu.Lock()
	in.buf = nil
	in.mu.Unlock()
}

func (in *inbox) isDead() bool {
	select {
	case <-in.dead:
		return true
	default:
		return false
	}
}

func (in *inbox) readErr() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.err == nil {
		return errors.New("connection ended")
	}
	return in.err
}

// buffered returns how many bytes wait to be read, and a channel closed
// when that changes.
func (in *inbox) buffered() (int, <-chan struct{}) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.buf), in.changed
}

// readLine returns the next line framed by split, waiting until deadline.
// It fails with errNoReply after the deadline, ctx's error when ctx ends,
// ErrLineTooLong, or the reason reading ended.
func (in *inbox) readLine(ctx context.Context, split bufio.SplitFunc, deadline time.Time) (string, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		in.mu.Lock()
		adv, tok, _ := split(in.buf, in.err != nil)
		if tok != nil {
			line := string(tok)
			in.buf = in.buf[adv:]
			in.mu.Unlock()
			return line, nil
		}
		in.buf = in.buf[adv:]
		err, changed, size := in.err, in.changed, len(in.buf)
		in.mu.Unlock()
		switch {
		case err != nil:
			return "", err
		case size > MaxLine:
			return "", ErrLineTooLong
		}
		select {
		case <-changed:
		case <-t.C:
			return "", errNoReply
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// execUDP sends a command as one datagram from a fresh socket and, when a
// reply is expected, takes the first line of the first datagram that comes
// back to that socket.
func (d *Line) execUDP(ctx, rctx context.Context, req *request) outcome {
	timeout := d.set.Timeout.D()
	dctx, cancel := context.WithTimeout(rctx, timeout)
	nc, err := (&net.Dialer{}).DialContext(dctx, "udp", d.set.Address)
	cancel()
	if err != nil {
		if rctx.Err() == nil {
			d.setDown(err.Error())
		}
		return d.notSent(ctx, req, err)
	}
	defer nc.Close()
	now := time.Now()
	_ = nc.SetWriteDeadline(now.Add(timeout))
	_ = nc.SetReadDeadline(now.Add(req.timeout))
	stop := context.AfterFunc(rctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	if _, err := nc.Write(req.data); err != nil {
		if rctx.Err() == nil {
			d.setDown(err.Error())
		}
		return d.notSent(ctx, req, err)
	}
	if req.expect == nil {
		d.failures = 0
		return outcome{result: map[string]any{}}
	}
	split := SplitLines(d.term)
	buf := make([]byte, 64<<10)
	for {
		n, err := nc.Read(buf)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return outcome{err: d.errorf(req, "%w", ErrClosed)}
		case errors.Is(err, syscall.ECONNREFUSED):
			// An ICMP port unreachable: no program on the device took the
			// datagram, so sending it again is safe.
			why := "nothing listens on the device's port (ICMP port unreachable)"
			d.setDown(why)
			return d.notSent(ctx, req, errors.New(why))
		case req.ctx.Err() != nil:
			return outcome{err: d.errorf(req, "sent, then stopped waiting for the reply: %w", req.ctx.Err())}
		case errors.Is(err, os.ErrDeadlineExceeded):
			msg := fmt.Sprintf("no reply within %s", req.timeout)
			d.setDown(msg)
			return outcome{err: d.errorf(req, "%s", msg)}
		default:
			d.setDown(err.Error())
			return outcome{err: d.errorf(req, "sent, then reading the reply failed: %v", err)}
		}
		if line := firstLine(split, buf[:n]); line != "" {
			d.succeeded()
			return d.judge(req, line)
		}
	}
}
