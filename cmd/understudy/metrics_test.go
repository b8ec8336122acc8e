package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches and parses /metrics with the Prometheus text parser.
func scrape(t *testing.T, api string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// value is the value of the metric of family name whose labels include
// labels (gauge, counter or the histogram's count), and whether there is one.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range labels {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// /metrics parses and moves when a member changes state.
func TestMetricsMoveWithTheSite(t *testing.T) {
	site, _, sw := localSite(t, "metrics")
	backup := runIn(t, nil, site, "backup")
	main := runIn(t, nil, site, "main")
	api := apiAddress(t, backup)
	backup.wait(20*time.Second, "msg", "member alive", "member", "main")
	backup.wait(20*time.Second, "msg", "driver connected")

	m := scrape(t, api)
	for name, labels := range map[string]map[string]string{
		"understudy_member_state":     {"member": "main", "state": "alive"},
		"understudy_driver_connected": {"driver": "router", "kind": "videohub"},
		"understudy_bus_connected":    nil,
	} {
		if v, ok := value(m, name, labels); !ok || v != 1 {
			t.Errorf("%s%v = %v (present %v), want 1", name, labels, v, ok)
		}
	}
	if v, _ := value(m, "understudy_detection_seconds", nil); v != 0 {
		t.Errorf("detections before any loss: %v", v)
	}

	if err := main.p.Kill(); err != nil {
		t.Fatal(err)
	}
	sw.expectRoutes(t, 10*time.Second, [2]int{1, 3}, [2]int{2, 4})
	eventually.True(t, 10*time.Second, "the metrics of main lost and covered", func() (bool, string) {
		m = scrape(t, api)
		lost, _ := value(m, "understudy_member_state", map[string]string{"member": "main", "state": "lost"})
		alive, _ := value(m, "understudy_member_state", map[string]string{"member": "main", "state": "alive"})
		detections, _ := value(m, "understudy_detection_seconds", nil)
		routes, _ := value(m, "understudy_actions_total", map[string]string{"kind": "route", "result": "done"})
		return lost == 1 && alive == 0 && detections >= 1 && routes >= 2,
			fmt.Sprintf("lost %v, alive %v, detections %v, routes done %v", lost, alive, detections, routes)
	})
}
