package instance

import (
	"fmt"
	"testing"
	"time"
)

// A command with a request_id is taken once; the same again gets the reply
// the first had (or nothing while it runs); another verb, id or payload is
// new; seconds later, or past maxRecent others, it is forgotten.
func TestACommandIsCarriedOutOncePerRequestID(t *testing.T) {
	var r recentCommands
	now := time.Unix(1000, 0)
	id := []byte(`"req-1"`)
	cmd := []byte(`{"mode":"manual","request_id":"req-1"}`)
	if _, _, fresh := r.take("mode", id, cmd, now); !fresh {
		t.Fatal("the first command was not fresh")
	}
	if _, done, fresh := r.take("mode", id, cmd, now); fresh || done {
		t.Fatalf("the same command while it runs: fresh %v done %v", fresh, done)
	}
	r.answered("mode", id, cmd, CommandReply{Verb: "mode", OK: true})
	if reply, done, fresh := r.take("mode", id, cmd, now.Add(time.Second)); fresh || !done || !reply.OK {
		t.Fatalf("the same command once answered: fresh %v done %v reply %+v", fresh, done, reply)
	}
	if _, _, fresh := r.take("drill", id, cmd, now); !fresh {
		t.Error("another verb with the same id was not fresh")
	}
	if _, _, fresh := r.take("mode", id, []byte(`{"mode":"auto","request_id":"req-1"}`), now); !fresh {
		t.Error("another command with the same id was not fresh")
	}
	if _, _, fresh := r.take("mode", nil, cmd, now); !fresh {
		t.Error("a command without an id was not fresh")
	}
	if _, _, fresh := r.take("mode", nil, cmd, now); !fresh {
		t.Error("a command without an id, again, was not fresh")
	}
	if _, _, fresh := r.take("mode", id, cmd, now.Add(recentForget+time.Second)); !fresh {
		t.Error("a command was remembered past a minute")
	}
	for i := range maxRecent + 1 {
		r.take("mode", id, fmt.Appendf(nil, `{"n":%d}`, i), now.Add(recentForget+2*time.Second))
	}
	if len(r.byKey) > maxRecent || len(r.order) > maxRecent {
		t.Errorf("remembers %d commands, at most %d", len(r.byKey), maxRecent)
	}
}
