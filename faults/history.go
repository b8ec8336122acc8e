package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"understudy/runtime/agent"
	"understudy/runtime/journal"
	"understudy/runtime/store"
)

// History is what really happened during one schedule, on one time base:
// the wall clock of this machine, which every test host shares.
type History struct {
	Seed     uint64    `json:"seed"`
	Site     SiteFacts `json:"site"`
	Schedule Schedule  `json:"schedule"`
	// Start is when the schedule began (every instance up and seen by the
	// coordinator); End is when the history ended, before the instances
	// were stopped: the schedule's faults, every one healed at its end
	// (killed instances started again), then Quiet without any fault, so
	// that the site can settle and fail back. Checks look at [Start, End]
	// only.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Quiet is the time at the end without any fault.
	Quiet time.Duration `json:"quiet,omitempty"`
	// Ops are the schedule's ops as carried out (Start, End filled in).
	Ops     []Op        `json:"ops"`
	Journal []Record    `json:"journal"` // the coordinator's journal
	Logs    []LogLine   `json:"logs"`    // every instance's JSON log lines
	Routing []RouteSeen `json:"routing"` // each switcher simulator's routing as it changed
	// Applied are the routes each switcher simulator applied, from its own
	// record, each with the host its connection came from: which
	// coordinator routed (the overlapping-terms property).
	Applied []RouteApplied `json:"applied,omitempty"`
	// Stores are the reads of each member's command records (its state
	// store, as the agent persists them): after every kill, once the process
	// was reaped and before it started again, and at the end once every
	// instance has stopped. In the order they were read.
	Stores []StoreRead `json:"stores"`
	// Recorded are the files the recorder emulation wrote into the material
	// folders, as they were when it stopped at the end of the schedule.
	Recorded []Recorded `json:"recorded,omitempty"`
	// Material is every file in the members' material folders at the end,
	// once every instance had stopped.
	Material []FileSeen `json:"material,omitempty"`
	// Configs are the members' configuration bundle files as they were at
	// the end, once every instance had stopped.
	Configs []ConfigSeen `json:"configs,omitempty"`
	// Timing are the flags that changed the site's timing for the run
	// (--failback-delay, --copy-settle), for the command that reproduces it.
	Timing string `json:"timing,omitempty"`
}

// StoreRead is one read of a member's command records.
type StoreRead struct {
	Member  string    `json:"member"`
	At      time.Time `json:"at"`
	After   string    `json:"after"` // what the read followed: "kill #N" or "end"
	Err     string    `json:"error,omitempty"`
	Records []Stored  `json:"records"`
}

// ReadEnd is StoreRead.After of the read at the end of the run.
const ReadEnd = "end"

// Stored is a command record a member's store held: what the agent wrote
// when it received the command (and again when it ran it after an
// interruption), and when it finished.
type Stored struct {
	Member   string    `json:"member"`
	ID       string    `json:"id"`
	Verb     string    `json:"verb"`
	Epoch    uint64    `json:"epoch"`
	State    string    `json:"state"` // running, done, failed
	At       time.Time `json:"at"`    // received (or received again after an interruption)
	Finished time.Time `json:"finished,omitzero"`
	// Stepped is the member's clock step Unstep took off At (and
	// Finished): its reading was At + Stepped.
	Stepped time.Duration `json:"stepped,omitempty"`
}

// Record is one line of the coordinator's journal (runtime/engine.Record).
type Record struct {
	At     time.Time      `json:"at"`
	Type   string         `json:"type"`
	Member string         `json:"member,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
	// Stepped is the coordinator's clock step Unstep took off At: its
	// reading was At + Stepped.
	Stepped time.Duration `json:"stepped,omitempty"`
	// Source is the candidate whose journal holds the record: on an
	// elected site every candidate's journal is read (what it recorded
	// while it coordinated); "" in a history of a site with one
	// coordinator written before (the coordinator's).
	Source string `json:"source,omitempty"`
}

// By is the member whose journal holds the record: Source, or the one
// coordinator of f.
func (r Record) By(f SiteFacts) string {
	if r.Source != "" {
		return r.Source
	}
	return f.Coordinator
}

// Str returns a string field ("" when absent or not a string).
func (r Record) Str(k string) string { s, _ := r.Fields[k].(string); return s }

// LogLine is one JSON log line of an instance.
type LogLine struct {
	At     time.Time      `json:"at"`
	Member string         `json:"member"`
	Level  string         `json:"level"`
	Msg    string         `json:"msg"`
	Fields map[string]any `json:"fields,omitempty"`
	// Stepped is the member's clock step Unstep took off At.
	Stepped time.Duration `json:"stepped,omitempty"`
}

// Str returns a string field ("" when absent or not a string).
func (l LogLine) Str(k string) string { s, _ := l.Fields[k].(string); return s }

// RouteSeen is a switcher simulator's routing from At on: element i is the
// input shown on output i+1.
type RouteSeen struct {
	At      time.Time `json:"at"`
	Driver  string    `json:"driver"`
	Routing []int     `json:"routing"`
}

// RouteApplied is a route a switcher simulator applied (its own record:
// the time it took the command).
type RouteApplied struct {
	At     time.Time `json:"at"`
	Driver string    `json:"driver"`
	Output int       `json:"output"`
	Input  int       `json:"input"`
	Remote string    `json:"remote"`         // the connection's address (host:port), or "panel"
	Host   string    `json:"host,omitempty"` // the test host of that address: a member id ("" none)
}

// SiteFacts are what the checker needs to know of the site (from
// site.yaml as loaded by runtime/config).
type SiteFacts struct {
	Name         string        `json:"name"`
	Coordinator  string        `json:"coordinator"`
	Mode         string        `json:"mode"`  // auto or manual
	Limit        int           `json:"limit"` // failovers at once (0: no limit)
	StartupGrace time.Duration `json:"startup_grace"`
	KeepAlive    time.Duration `json:"keepalive"`             // MQTT keep-alive of the instances
	CopySettle   time.Duration `json:"copy_settle,omitempty"` // copy.settle: a file younger is still being written
	// Broker is the external broker on its own host (BrokerHost), "" when
	// the broker is embedded in the coordinator's process.
	Broker  string                `json:"broker,omitempty"`
	Members map[string]MemberFact `json:"members"`
	// Candidates are, on a site whose coordinator is elected, the
	// candidates in order of preference (Witnesses among them: they only
	// vote); empty on a site with one coordinator (Coordinator).
	Candidates []string `json:"candidates,omitempty"`
	Witnesses  []string `json:"witnesses,omitempty"`
	// BrokerHosts are, on an elected site, the host labels of the brokers
	// every instance is connected to: every candidate's with the embedded
	// broker, BrokerHost with an external one.
	BrokerHosts []string `json:"broker_hosts,omitempty"`
}

// Elected reports whether the site's coordinator is elected among
// Candidates.
func (f SiteFacts) Elected() bool { return len(f.Candidates) > 0 }

// IsCandidate reports whether member may coordinate: one of the elected
// site's candidates, or the one coordinator.
func (f SiteFacts) IsCandidate(member string) bool {
	if f.Elected() {
		return slices.Contains(f.Candidates, member)
	}
	return member == f.Coordinator
}

// CoordinatorsOf are the members that may coordinate (Candidates, or the
// one Coordinator).
func (f SiteFacts) CoordinatorsOf() []string {
	if f.Elected() {
		return f.Candidates
	}
	return []string{f.Coordinator}
}

// MemberFact is one member as the checker sees it.
type MemberFact struct {
	ID      string `json:"id"`
	Standby bool   `json:"standby,omitempty"`
	Pool    string `json:"pool,omitempty"`
	// Standbys are the standbys that may cover it: its pool's that fit it
	// (config.Misfit). Histories written before it have none: every
	// standby of the pool then.
	Standbys      []string      `json:"standbys,omitempty"`
	Capacity      int           `json:"capacity,omitempty"`
	Instance      bool          `json:"instance"` // runs an understudy instance (has a host)
	Protected     bool          `json:"protected"`
	Interval      time.Duration `json:"interval"`
	LostAfter     time.Duration `json:"lost_after"`
	Delay         time.Duration `json:"delay,omitempty"`
	AutoFailback  bool          `json:"auto_failback"`
	FailbackDelay time.Duration `json:"failback_delay"`
	Switcher      string        `json:"switcher,omitempty"`
	Outputs       []int         `json:"outputs,omitempty"`
	Inputs        []int         `json:"inputs,omitempty"`
	CopyMaterial  bool          `json:"copy_material,omitempty"`
	Material      []string      `json:"material,omitempty"` // duties.material, as site.yaml names them
	Bundle        string        `json:"bundle,omitempty"`   // its configuration bundle's name, "" without one
}

// ReadStored reads the command records of a member's state store (the
// instance must have stopped). It reads a copy, so that the member's own
// file is left exactly as its instance wrote it (a corrupt file is not
// moved aside by the reader).
func ReadStored(member, path string) ([]Stored, error) {
	tmp, err := os.MkdirTemp("", "understudy-faults-store-")
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", member, err)
	}
	defer os.RemoveAll(tmp)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", member, err)
	}
	cp := filepath.Join(tmp, filepath.Base(path))
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		return nil, fmt.Errorf("state of %s: %w", member, err)
	}
	st, err := store.Open(cp, store.Options{NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", member, err)
	}
	defer st.Close()
	if rc := st.Recovered(); rc != nil {
		return nil, fmt.Errorf("state of %s is unreadable (%s): its instance would start with an empty store", member, rc.Reason)
	}
	recs, err := agent.ReadReceived(st)
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", member, err)
	}
	var out []Stored
	for _, id := range slices.Sorted(maps.Keys(recs)) {
		r := recs[id]
		out = append(out, Stored{Member: member, ID: id, Verb: r.Verb, Epoch: r.Epoch, State: r.State, At: r.At, Finished: r.Finished})
	}
	return out, nil
}

// ReadJournal reads the coordinator's journal (with its rotated files).
func ReadJournal(path string) ([]Record, error) {
	var out []Record
	if _, err := journal.Read(path, func(r Record) error { out = append(out, r); return nil }); err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	return out, nil
}

// ParseLog reads an instance's JSON log (slog's JSON handler: time, level,
// msg and the attributes). Lines that are not JSON (a Go panic, a goroutine
// dump) are kept with level "raw" and the time of the line before.
func ParseLog(member string, r io.Reader) ([]LogLine, error) {
	var out []LogLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var last time.Time
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			if len(sc.Bytes()) > 0 {
				out = append(out, LogLine{At: last, Member: member, Level: "raw", Msg: sc.Text()})
			}
			continue
		}
		l := LogLine{Member: member, Fields: map[string]any{}}
		for k, v := range m {
			switch k {
			case "time":
				s, _ := v.(string)
				l.At, _ = time.Parse(time.RFC3339Nano, s)
			case "level":
				l.Level, _ = v.(string)
			case "msg":
				l.Msg, _ = v.(string)
			case "instance":
			default:
				l.Fields[k] = v
			}
		}
		if l.At.IsZero() {
			l.At = last
		}
		last = l.At
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read log of %s: %w", member, err)
	}
	return out, nil
}

// ReadLogFile is ParseLog on a file.
func ReadLogFile(member, path string) ([]LogLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read log of %s: %w", member, err)
	}
	defer f.Close()
	return ParseLog(member, f)
}

// Sort orders every source by time (stable).
func (h *History) Sort() {
	slices.SortStableFunc(h.Journal, func(a, b Record) int { return a.At.Compare(b.At) })
	slices.SortStableFunc(h.Logs, func(a, b LogLine) int { return a.At.Compare(b.At) })
	slices.SortStableFunc(h.Routing, func(a, b RouteSeen) int { return a.At.Compare(b.At) })
}

// Write saves the history as JSON.
func (h *History) Write(path string) error {
	data, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// LoadHistory reads a history Write saved.
func LoadHistory(path string) (*History, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var h History
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	return &h, nil
}
