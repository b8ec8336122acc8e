package inbound_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"understudy/discovery/bus"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/coordinator"
	"understudy/runtime/engine"
	"understudy/runtime/inbound"
)

const site = `site: hall
coordinator: backup
mdns: false
bus: {url: "tcp://127.0.0.1:1"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 10s}
members:
  - id: main
  - id: backup
    standby: true
`

// instance is a loop (and, on the coordinator, a coordinator) with the bus
// table installed on Memory: the messages a daemon would receive are handed
// to it in memory.
type instance struct {
	t       *testing.T
	loop    *engine.Engine
	mem     *inbound.Memory
	drops   *bus.Drops
	topics  bus.Topics
	records []engine.Record
	got     []string // what reached the agent, the operator commands, the replies
	// controls are the operator commands as they reached the coordinator.
	controls []bus.Message
	auth     *inbound.Auth
	log      logBuffer // what drops logged
}

// logBuffer is a log written from the test's and the loop's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newInstance makes an instance of member self; with auth, the table checks
// the codes of the messages between instances.
func newInstance(t *testing.T, self string, auth ...*inbound.Auth) *instance {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := config.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, mem: &inbound.Memory{}, topics: bus.Topics{Site: "hall"}}
	in.drops = bus.NewDrops(slog.New(slog.NewTextHandler(&in.log, nil)))
	opts := engine.Options{Site: s, Self: self, Clock: clock.NewVirtual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), Online: true, Drops: in.drops,
		Observe: func(r engine.Record) { in.records = append(in.records, r) }}
	inputs := inbound.Inputs{
		Command: func(p []byte) { in.got = append(in.got, "command "+string(p)) },
		Control: func(m bus.Message) {
			in.got = append(in.got, "control "+m.Topic)
			in.controls = append(in.controls, m)
		},
		Reply: func(m bus.Message) { in.got = append(in.got, "reply "+m.Topic) }, ReplyFilter: "understudy/hall/reply/" + self + "/+",
	}
	var coord *coordinator.Coordinator
	if self == s.Coordinator {
		if coord, err = coordinator.New(coordinator.Options{}); err != nil {
			t.Fatal(err)
		}
		opts.Coordinator = coord
		inputs.Coordinator = coord
	}
	if in.loop, err = engine.New(opts); err != nil {
		t.Fatal(err)
	}
	if err := in.loop.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.loop.Stop)
	inputs.Loop = in.loop
	if len(auth) > 0 {
		in.auth = auth[0]
	}
	inbound.Install(in.mem, in.topics, inbound.Routes(in.topics, self, inputs), in.drops, in.auth)
	return in
}

// send hands the instance a message as its broker would, and lets the loop
// take it in.
func (in *instance) send(topic, payload string, retained bool) int {
	n := in.mem.Publish(bus.Message{Topic: topic, Payload: []byte(payload), Retained: retained})
	in.loop.RunPending()
	return n
}

func (in *instance) state(member string) string {
	for _, m := range in.loop.Snapshot().Members {
		if m.ID == member {
			return m.State
		}
	}
	return "absent"
}

func heartbeat(member string, seq int) string {
	return fmt.Sprintf(`{"member":%q,"boot":"b1","conn":1,"seq":%d,"interval_ms":100}`, member, seq)
}

func TestEveryMessageEntersThroughTheTable(t *testing.T) {
	in := newInstance(t, "backup")
	// A heartbeat makes main alive; its Last Will makes it lost.
	if n := in.send(in.topics.Heartbeat("main"), heartbeat("main", 1), false); n != 1 {
		t.Fatalf("the heartbeat reached %d routes", n)
	}
	if st := in.state("main"); st != "alive" {
		t.Fatalf("main is %s after its heartbeat", st)
	}
	in.send(in.topics.Presence("main"), `{"member":"main","state":"online","boot":"b1","conn":1}`, false)
	in.send(in.topics.Presence("main"), `{"member":"main","state":"gone","boot":"b1","conn":1}`, false)
	if st := in.state("main"); st != "lost" {
		t.Fatalf("main is %s after its Last Will", st)
	}
	// What does not decode is dropped and counted, by reason.
	in.send(in.topics.Heartbeat("main"), `{"member":`, false)
	in.send(in.topics.Heartbeat("main"), heartbeat("backup", 2), false)
	in.send(in.topics.Ack("main"), `not json`, false)
	want := map[string]uint64{"malformed_JSON": 2, "member_does_not_match_topic": 1}
	for reason, n := range want {
		if got := in.drops.Counts()[reason]; got != n {
			t.Errorf("%s drops = %d, want %d (%v)", reason, got, n, in.drops.Counts())
		}
	}
	// A cleared retained message is nothing, and not a bad one.
	before := in.drops.Total()
	in.send(in.topics.Presence("main"), ``, true)
	in.send(in.topics.About("main"), ``, true)
	if in.drops.Total() != before {
		t.Errorf("a cleared retained message was counted as dropped: %v", in.drops.Counts())
	}
	// A member that describes itself joins the site.
	in.send(in.topics.About("cam-7"), `{"id":"cam-7","roles":["camera"]}`, true)
	if st := in.state("cam-7"); st != "unknown" {
		t.Fatalf("cam-7 is %s after describing itself", st)
	}
	// Commands for this member reach its agent; operator commands the coordinator.
	in.send(in.topics.Command("backup"), `{"id":"x"}`, false)
	in.send(in.topics.Command("main"), `{"id":"y"}`, false)
	in.send(in.topics.Control("mode"), `{"mode":"manual"}`, false)
	if want := []string{`command {"id":"x"}`, "control understudy/hall/command/mode"}; !slices.Equal(in.got, want) {
		t.Errorf("handed on %q, want %q", in.got, want)
	}
}

// An instance that does not coordinate takes none of the coordinator's
// messages, and the replies to the commands it passed on.
func TestAMembersInstanceTakesOnlyItsOwn(t *testing.T) {
	in := newInstance(t, "main")
	for _, topic := range []string{in.topics.Ack("backup"), in.topics.Health("backup"), in.topics.Config("backup"), in.topics.Copy("backup"), in.topics.Covering("backup"), in.topics.Control("mode")} {
		if n := in.send(topic, `{}`, false); n != 0 {
			t.Errorf("%s reached %d routes of a member's instance", topic, n)
		}
	}
	in.send("understudy/hall/reply/main/r1", `{"ok":true}`, false)
	in.send("understudy/hall/reply/backup/r1", `{"ok":true}`, false)
	if want := []string{"reply understudy/hall/reply/main/r1"}; !slices.Equal(in.got, want) {
		t.Errorf("handed on %q, want %q", in.got, want)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/c/d", false},
		{"a/+", "a", false},
		{"a/#", "a/b/c", true},
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"#", "x", true},
	} {
		if got := inbound.Match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}
