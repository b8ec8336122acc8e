package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The page's live feed, GET /dashboard/events, as Server-Sent Events:
//
//	event: status    the instance's status (as GET /status), at once, shortly
//	                 after records and every couple of seconds
//	event: records   the recent records, oldest first, at once
//	event: record    each new record
//	event: unavailable {"error": …} when the instance did not give its status
//	: ping           a comment now and then, so that proxies keep it open
//
// The stream ends when the client goes away, or when it falls so far behind
// that the source drops it; the browser then reconnects and starts afresh.

// errBehind ends a stream whose subscriber was dropped by the source.
var errBehind = errors.New("dashboard: the event stream fell behind")

// stream is one client's event stream.
type stream struct {
	ctx context.Context
	w   io.Writer
	rc  *http.ResponseController
	src Source
	t   timing
}

func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	recent, updates, cancel := d.src.Subscribe()
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a reverse proxy must not hold events back
	w.WriteHeader(http.StatusOK)
	s := &stream{ctx: r.Context(), w: w, rc: http.NewResponseController(w), src: d.src, t: d.timing}
	// The connection may serve other requests after the stream: no deadline
	// of the stream's may stay on it.
	defer s.rc.SetWriteDeadline(time.Time{})
	// The error only says why this client's stream ended (it went away, or
	// fell behind); there is nobody to tell.
	_ = s.run(recent, updates)
}

// run sends the opening events, then follows the source until the client
// goes away or the source drops it.
func (s *stream) run(recent []any, updates <-chan any) error {
	if err := s.write(fmt.Sprintf("retry: %d\n\n", s.t.retry.Milliseconds())); err != nil {
		return err
	}
	if err := s.sendStatus(); err != nil {
		return err
	}
	if recent == nil {
		recent = []any{}
	}
	if err := s.send("records", recent); err != nil {
		return err
	}
	status := time.NewTicker(s.t.status)
	defer status.Stop()
	beat := time.NewTicker(s.t.heartbeat)
	defer beat.Stop()
	var settle <-chan time.Time // armed by a record, fires a fresh status
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case rec, ok := <-updates:
			if !ok {
				return errBehind
			}
			if err := s.send("record", rec); err != nil {
				return err
			}
			if settle == nil {
				settle = time.After(s.t.settle)
			}
		case <-settle:
			settle = nil
			status.Reset(s.t.status)
			if err := s.sendStatus(); err != nil {
				return err
			}
		case <-status.C:
			if err := s.sendStatus(); err != nil {
				return err
			}
		case <-beat.C:
			if err := s.write(": ping\n\n"); err != nil {
				return err
			}
		}
	}
}

// sendStatus asks the source for the status and sends it, or says that it
// did not answer.
func (s *stream) sendStatus() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.t.ask)
	defer cancel()
	st, err := s.src.Status(ctx)
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	if err != nil {
		return s.send("unavailable", map[string]string{"error": err.Error()})
	}
	return s.send("status", st)
}

// send writes one event whose data is v as JSON (one line: JSON from
// encoding/json has no raw newlines).
func (s *stream) send(event string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("dashboard: %s event: %w", event, err)
	}
	return s.write("event: " + event + "\ndata: " + string(data) + "\n\n")
}

// write sends text and flushes it. A client that does not take it within
// the write timeout is given up.
func (s *stream) write(text string) error {
	// Not every ResponseWriter supports deadlines (a test recorder does
	// not); the stream works without them.
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.t.write))
	if _, err := io.WriteString(s.w, text); err != nil {
		return fmt.Errorf("dashboard: event stream: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("dashboard: event stream: %w", err)
	}
	return nil
}
