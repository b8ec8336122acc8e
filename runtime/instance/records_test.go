package instance

import (
	"testing"

	"understudy/runtime/engine"
)

// The feed keeps the last records, drops a subscriber that falls behind
// (closing its channel, so its stream reconnects), and ends every stream
// when the API shuts down.
func TestRecordFeedKeepsRecentDropsSlowAndCloses(t *testing.T) {
	f := newRecordFeed()
	for i := range feedKeep + 10 {
		f.add(engine.Record{Type: "r", Fields: map[string]any{"i": i}})
	}
	recent, updates, cancel := f.Subscribe()
	if len(recent) != feedKeep || recent[0].(engine.Record).Fields["i"] != 10 {
		t.Fatalf("recent: %d records, first %v", len(recent), recent[0])
	}
	for range feedBuffer + 1 {
		f.add(engine.Record{Type: "r"})
	}
	n := 0
	for range updates {
		n++
	}
	if n != feedBuffer {
		t.Fatalf("a slow subscriber got %d records before its channel closed, want %d", n, feedBuffer)
	}
	cancel() // after the drop: harmless

	_, live, cancelLive := f.Subscribe()
	defer cancelLive()
	f.close()
	if _, ok := <-live; ok {
		t.Fatal("a stream survived the shutdown")
	}
	if _, later, _ := f.Subscribe(); later != nil {
		if _, ok := <-later; ok {
			t.Fatal("a stream opened after the shutdown is open")
		}
	}
}
