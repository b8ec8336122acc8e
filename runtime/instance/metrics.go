package instance

import (
	"context"
	"fmt"
	"net/http"
	"time"
	"understudy/runtime/coordinator"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"understudy/events"
	"understudy/runtime/engine"
)

// metrics are the instance's Prometheus metrics (GET /metrics on the status
// API). Counters and the detection histogram follow the record stream; the
// rest is read from the instance's status at each scrape.
type metrics struct {
	inst      *Instance
	reg       *prometheus.Registry
	detection prometheus.Histogram
	actions   *prometheus.CounterVec
	copyBytes prometheus.Counter
	commit    prometheus.Histogram // replicated transactions (elected coordinator)
	logWrite  prometheus.Histogram // appends to this candidate's raft log

	memberState *prometheus.Desc
	driverUp    *prometheus.Desc
	busUp       *prometheus.Desc
	busPath     *prometheus.Desc
	duplicates  *prometheus.Desc
	dropped     *prometheus.Desc
	heartbeats  *prometheus.Desc
	brokerDrops *prometheus.Desc
	brokerBig   *prometheus.Desc
	policyCalls *prometheus.Desc
	policyErrs  *prometheus.Desc
	policyTOs   *prometheus.Desc
	copies      *prometheus.Desc
	drill       *prometheus.Desc
	alarms      *prometheus.Desc
	quarantined *prometheus.Desc
	inDropped   *prometheus.Desc
	beatsMerged *prometheus.Desc
	matRefused  *prometheus.Desc
	leads       *prometheus.Desc
	term        *prometheus.Desc
	elections   *prometheus.Desc
	raftRefused *prometheus.Desc
	contact     *prometheus.Desc
}

func newMetrics(inst *Instance) *metrics {
	m := &metrics{
		inst: inst,
		reg:  prometheus.NewRegistry(),
		detection: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "understudy_detection_seconds",
			Help:    "Time from a member's last heartbeat to its loss being noticed.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_actions_total",
			Help: "Actions finished, by kind (route, send, or the command's verb) and result (done, failed).",
		}, []string{"kind", "result"}),
		copyBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_copy_bytes_total",
			Help: "Bytes of material copied back by finished copies.",
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "understudy_election_commit_seconds",
			Help:    "Time for the elected coordinator's state writes to commit on a majority of candidates (fsync included) and apply here.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		logWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "understudy_election_log_write_seconds",
			Help:    "Time for each append to this candidate's raft log, fsync included: what its storage adds to every commit.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		memberState: prometheus.NewDesc("understudy_member_state", "1 for the member's current state, 0 for the others.", []string{"member", "state"}, nil),
		driverUp:    prometheus.NewDesc("understudy_driver_connected", "1 while the driver is connected to its device.", []string{"driver", "kind"}, nil),
		busUp:       prometheus.NewDesc("understudy_bus_connected", "1 while the instance is connected to the broker.", nil, nil),
		busPath:     prometheus.NewDesc("understudy_bus_path_connected", "On a site whose coordinator candidates each embed a broker: 1 while the instance is connected to that broker.", []string{"broker"}, nil),
		duplicates:  prometheus.NewDesc("understudy_bus_duplicates_total", "Copies of messages already taken over another broker, set aside (not drops).", nil, nil),
		dropped:     prometheus.NewDesc("understudy_dropped_payloads_total", "Malformed bus payloads dropped, by reason.", []string{"reason"}, nil),
		policyCalls: prometheus.NewDesc("understudy_policy_calls_total", "Calls into the Lua policy (handlers and timers).", nil, nil),
		policyErrs:  prometheus.NewDesc("understudy_policy_errors_total", "Calls into the Lua policy that raised an error.", nil, nil),
		policyTOs:   prometheus.NewDesc("understudy_policy_timeouts_total", "Calls into the Lua policy stopped at their deadline.", nil, nil),
		heartbeats:  prometheus.NewDesc("understudy_heartbeats_received_total", "Heartbeats received from other members (well-formed; the dropped are counted in understudy_dropped_payloads_total).", nil, nil),
		brokerDrops: prometheus.NewDesc("understudy_broker_dropped_total", "Messages the embedded broker dropped for clients that read too slowly.", nil, nil),
		brokerBig:   prometheus.NewDesc("understudy_broker_oversized_total", "Clients the embedded broker disconnected for a packet over its size limit.", nil, nil),
		copies:      prometheus.NewDesc("understudy_copies_in_progress", "Material copies running.", nil, nil),
		drill:       prometheus.NewDesc("understudy_drill_active", "1 while the member is in a real fire drill (by fault).", []string{"member", "fault"}, nil),
		inDropped:   prometheus.NewDesc("understudy_inputs_dropped_total", "Inputs from other instances the event loop dropped because it fell behind, by kind (the sender sends them again).", []string{"kind"}, nil),
		beatsMerged: prometheus.NewDesc("understudy_heartbeats_merged_total", "Heartbeats replaced by a newer one of the same member before the event loop took them in.", nil, nil),
		matRefused:  prometheus.NewDesc("understudy_material_refused_total", "Material commands (copy, material_grant) refused for what they asked: folders of their own, a member not in the site.", []string{"verb"}, nil),
		alarms:      prometheus.NewDesc("understudy_alarms_active", "Alarms raised on the coordinator now, by kind and severity.", []string{"kind", "severity"}, nil),
		quarantined: prometheus.NewDesc("understudy_events_quarantined", "Events set aside on the coordinator because their handlers took the process down twice (confirm or reject each).", nil, nil),
		leads:       prometheus.NewDesc("understudy_election_coordinating", "1 while this candidate is the elected coordinator.", nil, nil),
		term:        prometheus.NewDesc("understudy_election_term", "The election's current term as this candidate knows it.", nil, nil),
		elections:   prometheus.NewDesc("understudy_election_won_total", "Terms this candidate coordinated since it started.", nil, nil),
		raftRefused: prometheus.NewDesc("understudy_election_refused_total", "Connections to this candidate's raft transport refused: no TLS handshake with the site key.", nil, nil),
		contact:     prometheus.NewDesc("understudy_election_last_contact_seconds", "How long ago this candidate last heard the leader (0 on the leader).", nil, nil),
	}
	m.reg.MustRegister(m.detection, m.actions, m.copyBytes, m.commit, m.logWrite, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observe updates the counters from one record (on the engine's loop).
func (m *metrics) observe(r engine.Record) {
	switch r.Type {
	case events.MemberLost:
		if ms, ok := number(r.Fields["silence_ms"]); ok {
			m.detection.Observe(ms / 1000)
		}
	case events.ActionDone, events.ActionFailed:
		kind := fmt.Sprint(r.Fields["verb"])
		if _, ok := r.Fields["driver"]; ok && kind != "route" {
			kind = "send"
		}
		result := "done"
		if r.Type == events.ActionFailed {
			result = "failed"
		}
		m.actions.WithLabelValues(kind, result).Inc()
	case events.CopyDone, events.CopyFailed:
		if b, ok := number(r.Fields["bytes"]); ok {
			m.copyBytes.Add(b)
		}
	}
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// Describe implements prometheus.Collector for the scraped metrics.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.memberState, m.driverUp, m.busUp, m.busPath, m.duplicates, m.dropped, m.heartbeats, m.brokerDrops, m.brokerBig, m.policyCalls, m.policyErrs, m.policyTOs, m.copies, m.drill, m.alarms, m.quarantined, m.inDropped, m.beatsMerged, m.matRefused, m.leads, m.term, m.elections, m.raftRefused, m.contact} {
		ch <- d
	}
}

// Collect reads the instance's status. An event loop that does not answer
// within a second leaves those metrics out of the scrape.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := m.inst.status(ctx)
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, mem := range st.Members {
		for _, s := range []string{"alive", "suspect", "lost", "closed", "broken", "unknown"} {
			gauge(m.memberState, b2f(mem.State == s), mem.ID, s)
		}
	}
	for _, d := range st.Drivers {
		gauge(m.driverUp, b2f(d.Connected), d.Name, d.Kind)
	}
	gauge(m.busUp, b2f(st.Bus.Connected))
	for _, p := range st.Bus.Paths {
		gauge(m.busPath, b2f(p.Connected), p.URL)
	}
	counter(m.duplicates, float64(st.Bus.Duplicates))
	for reason, n := range st.Bus.Dropped {
		counter(m.dropped, float64(n), reason)
	}
	counter(m.heartbeats, float64(st.Bus.Heartbeats))
	for kind, n := range st.Inputs.Dropped {
		counter(m.inDropped, float64(n), kind)
	}
	counter(m.beatsMerged, float64(st.Inputs.HeartbeatsMerged))
	if st.Bus.Embedded != "" {
		counter(m.brokerDrops, float64(st.Bus.EmbeddedDropped))
		counter(m.brokerBig, float64(st.Bus.EmbeddedOversized))
	}
	if p := st.Policy; p != nil {
		counter(m.policyCalls, float64(p.Calls))
		counter(m.policyErrs, float64(p.Errors))
		counter(m.policyTOs, float64(p.Timeouts))
	}
	gauge(m.copies, float64(len(st.Copies)))
	if st.Material != nil {
		for verb, n := range st.Material.Refused {
			counter(m.matRefused, float64(n), verb)
		}
	}
	for _, d := range st.Drills {
		gauge(m.drill, 1, d.Member, d.Fault)
	}
	if el := st.Election; el != nil {
		gauge(m.leads, b2f(el.Coordinates))
		gauge(m.term, float64(el.Term))
		counter(m.elections, float64(el.Elections))
		counter(m.raftRefused, float64(el.Refused))
		gauge(m.contact, el.LastContact.Seconds())
	}
	if st.Coordinator {
		active := map[[2]string]float64{}
		for kind, severity := range coordinator.RuntimeAlarms() {
			active[[2]string{kind, severity}] = 0
		}
		for _, a := range st.Alarms {
			active[[2]string{a.Kind, a.Severity}]++
		}
		for k, n := range active {
			gauge(m.alarms, n, k[0], k[1])
		}
		gauge(m.quarantined, float64(len(st.Quarantined)))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
