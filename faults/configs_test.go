package faults

import (
	"testing"
	"time"

	"understudy/events"
)

// showBundle is managerBackup with main and backup sharing the bundle
// "show", edited on main at +20 s (op #1) and on backup at +40 s (op #2).
func showBundle() (*History, Op, Op) {
	h := managerBackup()
	for _, id := range []string{"main", "backup"} {
		m := h.Site.Members[id]
		m.Bundle = "show"
		h.Site.Members[id] = m
	}
	e1 := op(OpConfigEdit, "main", 20, 20)
	e1.ID, e1.At = 1, 20*time.Second
	e2 := op(OpConfigEdit, "backup", 40, 40)
	e2.ID, e2.At = 2, 40*time.Second
	h.Ops = []Op{e1, e2}
	return h, e1, e2
}

// unprotected makes main a member nobody covers (its outages owe nothing).
func unprotected(h *History) {
	m := h.Site.Members["main"]
	m.Protected = false
	h.Site.Members["main"] = m
}

func holding(h *History, content map[string]string) {
	h.Configs = nil
	for _, m := range []string{"main", "backup"} {
		h.Configs = append(h.Configs, ConfigSeen{Member: m, Bundle: "show", Content: content[m]})
	}
}

func accepted(s float64, member string, version float64) Record {
	return Record{At: at(s), Type: events.ConfigAccepted, Member: member, Fields: map[string]any{"bundle": "show", "version": version}}
}

func TestConfigNewestWins(t *testing.T) {
	h, _, e2 := showBundle()
	newest := EditContent("show", e2)
	holding(h, map[string]string{"main": newest, "backup": newest})
	h.Journal = []Record{accepted(1, "backup", 1), accepted(21, "main", 2), accepted(41, "backup", 3)}
	if res := want(t, h); res.ConfigsJudged != 1 || res.ConfigsUnjudged != 0 {
		t.Errorf("judged %d, not %d; want the bundle judged", res.ConfigsJudged, res.ConfigsUnjudged)
	}
}

func TestConfigOlderThanASettledEdit(t *testing.T) {
	h, e1, _ := showBundle()
	older := EditContent("show", e1)
	holding(h, map[string]string{"main": older, "backup": older})
	want(t, h, PropConfig, PropConfig)
}

func TestConfigHostsDisagree(t *testing.T) {
	h, e1, e2 := showBundle()
	holding(h, map[string]string{"main": EditContent("show", e1), "backup": EditContent("show", e2)})
	want(t, h, PropConfig, PropConfig) // main differs, and is older than edit #2
}

func TestConfigEditWhileTheCoordinatorWasDownNeedNotWin(t *testing.T) {
	h, e1, _ := showBundle()
	h.Ops = append(h.Ops, op(OpStop, "backup", 35, 42))
	older := EditContent("show", e1)
	holding(h, map[string]string{"main": older, "backup": older})
	want(t, h) // edit #2 was made while the coordinator (backup) was stopped
}

func TestConfigNotJudgedBeforeTheSiteSettled(t *testing.T) {
	h, e1, e2 := showBundle()
	unprotected(h)
	h.Ops = append(h.Ops, op(OpKill, "main", 50, 58))
	holding(h, map[string]string{"main": EditContent("show", e1), "backup": EditContent("show", e2)})
	if res := want(t, h); res.ConfigsJudged != 0 || res.ConfigsUnjudged != 1 {
		t.Errorf("judged %d, not %d; want it not judged (main back 2 s before the end)", res.ConfigsJudged, res.ConfigsUnjudged)
	}
}

func TestConfigHolderKilledForGoodIsLeftOut(t *testing.T) {
	h, e1, e2 := showBundle()
	unprotected(h)
	h.Ops = append(h.Ops, op(OpKill, "main", 30, 0))
	holding(h, map[string]string{"main": EditContent("show", e1), "backup": EditContent("show", e2)})
	want(t, h)
}

func TestConfigUnknownContent(t *testing.T) {
	h, _, e2 := showBundle()
	holding(h, map[string]string{"main": EditContent("show", e2)[:20], "backup": EditContent("show", e2)})
	want(t, h, PropConfig, PropConfig) // torn, and different from backup's
}

func TestConfigFileGone(t *testing.T) {
	h, _, e2 := showBundle()
	holding(h, map[string]string{"main": EditContent("show", e2), "backup": EditContent("show", e2)})
	h.Configs[0] = ConfigSeen{Member: "main", Bundle: "show", Missing: true}
	want(t, h, PropConfig, PropConfig) // gone, and so not what backup holds
}

func TestConfigVersionsNeverGoBackwards(t *testing.T) {
	h, _, e2 := showBundle()
	newest := EditContent("show", e2)
	holding(h, map[string]string{"main": newest, "backup": newest})
	h.Journal = []Record{accepted(1, "backup", 1), accepted(21, "main", 2), accepted(41, "backup", 2)}
	want(t, h, PropConfig)
}

// An edit on the coordinator's host while another member of the bundle is
// down is the newest: the member that comes back with its older file must
// receive it, not push its own over it.
func TestConfigEditWhileAnotherMemberWasAwayMustWin(t *testing.T) {
	h, e1, _ := showBundle()
	unprotected(h)
	h.Ops = append(h.Ops, op(OpKill, "main", 35, 42))
	older := EditContent("show", e1)
	holding(h, map[string]string{"main": older, "backup": older})
	want(t, h, PropConfig, PropConfig)
}

// A bundle whose only member was killed and not started again is not
// judged at the end (nothing can reach its file), and the checker does not
// trip on it (make faults, recorder-standby seed 4: a recorder's own bundle).
func TestConfigOnlyMemberKilledForGood(t *testing.T) {
	h, e1, _ := showBundle()
	unprotected(h)
	m := h.Site.Members["backup"]
	m.Bundle = ""
	h.Site.Members["backup"] = m
	h.Ops = []Op{e1, op(OpKill, "main", 30, 0)}
	h.Configs = []ConfigSeen{{Member: "main", Bundle: "show", Content: EditContent("show", e1)}}
	if res := want(t, h); res.ConfigsJudged != 0 || res.ConfigsUnjudged != 1 {
		t.Errorf("judged %d, not %d; want it not judged", res.ConfigsJudged, res.ConfigsUnjudged)
	}
}
