package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"understudy/events"
	"understudy/runtime/coordinator"
)

const alarmPolicy = `
local us = require "understudy"
us.on("member_lost", function(ev)
  us.alarm("recorder_down", ev.member.id .. " records nothing", { member = ev.member, fields = { why = "lost" } })
end)
local function back(ev)
  if ev.member.state == "alive" then us.clear_alarm("recorder_down", ev.member) end
end
us.on("member_restored", back)
us.on("member_seen", back) -- after a restart of the coordinator
us.on("alarm", function(ev)
  us.log.info("saw alarm " .. ev.kind .. " of " .. ev.member.id .. " (" .. #us.alarms() .. " raised)")
end)
`

func TestAPolicyAlarmIsShownUntilClearedAndSurvivesARestart(t *testing.T) {
	h, _ := newPoolSite(t, alarmPolicy)
	h.Crash("a")
	h.Advance(time.Second)
	raised := records(h, events.Alarm)
	if len(raised) != 1 || raised[0].Member != "a" || raised[0].Fields["kind"] != "recorder_down" ||
		raised[0].Fields["message"] != "a records nothing" || raised[0].Fields["why"] != "lost" {
		t.Fatalf("alarm records: %+v", raised)
	}
	st := h.Engine.Snapshot()
	if len(st.Alarms) != 1 || st.Alarms[0].Key != "policy:recorder_down:a" || st.Alarms[0].Severity != coordinator.SeverityAlarm {
		t.Fatalf("status alarms: %+v", st.Alarms)
	}

	// A coordinator restart keeps it.
	if err := h.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Advance(time.Second)
	if st := h.Engine.Snapshot(); len(st.Alarms) != 1 || st.Alarms[0].Member != "a" {
		t.Fatalf("after a restart: %+v", st.Alarms)
	}
	if n := len(records(h, events.Alarm)); n != 1 {
		t.Fatalf("the alarm was raised again by the restart: %d records", n)
	}

	h.Up("a")
	h.Advance(time.Second)
	cleared := records(h, events.AlarmCleared)
	if len(cleared) != 1 || cleared[0].Member != "a" || cleared[0].Fields["kind"] != "recorder_down" {
		t.Fatalf("cleared records: %+v", cleared)
	}
	if st := h.Engine.Snapshot(); len(st.Alarms) != 0 {
		t.Fatalf("still raised: %+v", st.Alarms)
	}
	if errs := records(h, "policy_error"); len(errs) != 0 {
		t.Fatalf("policy errors: %+v", errs)
	}
}

func TestAlarmArgumentsAreChecked(t *testing.T) {
	for _, bad := range []string{
		`us.alarm("Not Snake", "x")`,
		`us.alarm("ok", "")`,
		`us.alarm("ok", "x", { severity = "panic" })`,
		`us.alarm("ok", "x", { member = "nobody" })`,
	} {
		h, _ := newPoolSite(t, "local us = require 'understudy'\nus.on('member_lost', function(ev) "+bad+" end)\n")
		h.Crash("a")
		h.Advance(time.Second)
		errs := records(h, "policy_error")
		if len(errs) != 1 || !strings.Contains(errs[0].Fields["error"].(string), "policy.lua:2") {
			t.Errorf("%s: policy errors %+v", bad, errs)
		}
		if st := h.Engine.Snapshot(); len(st.Alarms) != 0 {
			t.Errorf("%s: raised %+v", bad, st.Alarms)
		}
	}
}
