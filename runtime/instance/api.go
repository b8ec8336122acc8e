package instance

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"
	"understudy/discovery/bus"

	"understudy/runtime/dashboard"
	"understudy/runtime/engine"
	"understudy/runtime/materialcopy"
)

// Status is what GET /status returns.
type Status struct {
	engine.Status
	// Health is "ok", or what keeps the instance from doing its job, in
	// words (as GET /healthz says it).
	Health   string          `json:"health"`
	Bus      BusStatus       `json:"bus"`
	Peers    []PeerInfo      `json:"peers"`
	Material *MaterialStatus `json:"material,omitempty"`
	// StateRecovered is set when the state file was corrupt, truncated or
	// empty at start and was moved aside: this run began without it.
	StateRecovered *StateRecovered `json:"state_recovered,omitempty"`
	// Election is this candidate's view of the coordinator election (a
	// site that elects its coordinator), else nil.
	Election *ElectionStatus `json:"election,omitempty"`
	// CoordinatorInfo is the coordinator's word of itself as this instance
	// last heard it (which member, term, epoch), nil before any.
	CoordinatorInfo *bus.CoordinatorInfo `json:"coordinator_info,omitempty"`
}

// StateRecovered says that the state file was unusable at start.
type StateRecovered struct {
	File    string    `json:"file"`
	Reason  string    `json:"reason"`
	MovedTo string    `json:"moved_to"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// MaterialStatus is this instance's material server and who may read it,
// and the material commands it refused.
type MaterialStatus struct {
	Server string                   `json:"server,omitempty"`
	Grants []materialcopy.GrantInfo `json:"grants,omitempty"`
	// Refused counts, by verb (copy, material_grant), the commands refused
	// for what they asked: folders of their own, a member not in the site.
	Refused map[string]uint64 `json:"refused,omitempty"`
}

// BusStatus describes this instance's bus connection.
type BusStatus struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
	// Paths are the brokers this instance is connected to at once, on a
	// site whose coordinator candidates each embed one (else empty).
	Paths []bus.PathState `json:"paths,omitempty"`
	// Duplicates counts the copies of messages already taken over
	// another broker (with several brokers), set aside.
	Duplicates uint64 `json:"duplicates,omitempty"`
	Embedded   string `json:"embedded_broker,omitempty"`
	// EmbeddedDropped counts the messages the embedded broker dropped for
	// clients that read too slowly.
	EmbeddedDropped int64 `json:"embedded_broker_dropped,omitempty"`
	// EmbeddedOversized counts the clients the embedded broker disconnected
	// for a packet over its size limit.
	EmbeddedOversized int64             `json:"embedded_broker_oversized,omitempty"`
	Dropped           map[string]uint64 `json:"dropped_payloads"`
	// Heartbeats counts the heartbeats received from other members since
	// the start (well-formed ones; the dropped are in Dropped).
	Heartbeats uint64 `json:"heartbeats_received"`
	// Auth is off, permissive or required (auth.mode, or its default);
	// AuthKey is the id of the site key this instance signs with and
	// AuthKeys the ids of its ring (the keys it accepts), signing key
	// first, as it read them at start (both absent with auth off);
	// Unsigned counts the messages without a code taken in permissive mode.
	Auth     string   `json:"auth"`
	AuthKey  string   `json:"auth_key,omitempty"`
	AuthKeys []string `json:"auth_keys,omitempty"`
	Unsigned uint64   `json:"unsigned_taken,omitempty"`
}

// PeerInfo is a peer found by mDNS.
type PeerInfo struct {
	Member  string `json:"member"`
	Address string `json:"address"`
	Roles   string `json:"roles,omitempty"`
}

func (inst *Instance) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		st, err := inst.status(ctx)
		if err != nil {
			http.Error(w, "the event loop did not answer: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	mux.Handle("GET /metrics", inst.metrics.handler())
	page := dashboard.New(dashboardSource{inst})
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /dashboard/", page)
	mux.HandleFunc("POST /command/{verb}", inst.handleCommand)
	mux.HandleFunc("GET /healthz", inst.healthz)
	return mux
}

func (inst *Instance) status(ctx context.Context) (Status, error) {
	es, err := inst.engine.Status(ctx)
	if err != nil {
		return Status{}, err
	}
	st := Status{Status: es, Health: cmp.Or(inst.healthProblem(), "ok"), Bus: BusStatus{Dropped: inst.drops.Counts(), Duplicates: inst.drops.Duplicates(), Heartbeats: inst.engine.HeartbeatsReceived(), Auth: inst.site.AuthMode()}, Peers: []PeerInfo{}}
	if inst.auth != nil {
		st.Bus.Unsigned = inst.auth.Unsigned()
	}
	if !inst.ring.Empty() {
		st.Bus.AuthKey, st.Bus.AuthKeys = inst.ring.Signer(), inst.ring.IDs()
	}
	if c := inst.bus.Load(); c != nil {
		st.Bus.Connected = c.Connected()
		if c.Len() > 1 {
			st.Bus.Paths = c.States()
		}
	}
	if inst.election != nil {
		st.Election = inst.election.status()
	}
	st.CoordinatorInfo = inst.coordinatorInfo.Load()
	if rec := inst.store.Recovered(); rec != nil {
		st.StateRecovered = &StateRecovered{File: inst.store.Path(), Reason: rec.Reason, MovedTo: rec.MovedTo, At: rec.At, Message: rec.Message(inst.store.Path())}
	}
	inst.mu.Lock()
	st.Bus.URL = inst.busURL
	if inst.broker != nil {
		st.Bus.Embedded = inst.broker.Addr()
		st.Bus.EmbeddedDropped = inst.broker.Dropped()
		st.Bus.EmbeddedOversized = inst.broker.Oversized()
	}
	for id, e := range inst.peers {
		st.Peers = append(st.Peers, PeerInfo{Member: id, Address: e.HostPort(), Roles: e.TXT["roles"]})
	}
	inst.mu.Unlock()
	if inst.grants != nil {
		st.Material = &MaterialStatus{Server: "http://" + inst.material.Addr().String() + "/material", Grants: inst.grants.List()}
	}
	if refused := inst.materialRefused.counts(); refused != nil {
		if st.Material == nil {
			st.Material = &MaterialStatus{}
		}
		st.Material.Refused = refused
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Member < st.Peers[j].Member })
	return st, nil
}

// healthz answers GET /healthz: whether this instance can do its job now,
// in one line of plain text.
//
//	200 ok                                        the event loop answers and the instance is on the bus
//	503 event loop stuck: …                       the event loop did not answer within 1s
//	503 starting: …                               the policy and the status API are still coming up
//	503 waiting for the site's broker: …          looking for the broker by mDNS (what, and for how long)
//	503 waiting for the broker: connecting to …   the broker is known; no connection yet (for how long, the last error)
//	503 not connected to the broker since …       the connection was lost more than 5s ago (the error; it keeps reconnecting)
//	503 state not written: …                      writes to the state file fail (the state folder full, a failing disk): since when, the error
//
// A 200 that follows a state file found corrupt at start says so on a
// second line ("state file … was corrupt (…), moved to …").
func (inst *Instance) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := inst.engine.Do(ctx, func() {}); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		msg := "event loop stuck: it did not answer within 1s"
		if why := storeProblem(inst.store, time.Now()); why != "" {
			msg += "; " + why
		}
		fmt.Fprintln(w, msg)
		return
	}
	if msg := inst.healthProblem(); msg != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, msg)
		return
	}
	fmt.Fprintln(w, "ok")
	if rec := inst.store.Recovered(); rec != nil {
		fmt.Fprintln(w, rec.Message(inst.store.Path()))
	}
}
