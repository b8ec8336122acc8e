package coordinator_test

import (
	"testing"

	"understudy/discovery/bus"
)

// BenchmarkLuaDispatch measures events through the loop into a Lua handler.
func BenchmarkLuaDispatch(b *testing.B) {
	h, _, _ := newHarness(b, `
local us = require "understudy"
local n = 0
us.on("tick", function(ev) n = n + ev.value end)
`)
	fields := map[string]any{"value": 1}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.Coordinator.Emit("tick", fields)
		h.Engine.RunPending()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkHeartbeat measures a heartbeat through the loop into the member table.
func BenchmarkHeartbeat(b *testing.B) {
	h, _, _ := newHarness(b, "-- no handlers\n")
	hb := bus.Heartbeat{Member: "main", Boot: "b", Conn: 1, IntervalMS: 100}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.Engine.Heartbeat(hb)
		h.Engine.RunPending()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
}
