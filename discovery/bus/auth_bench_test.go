package bus

import (
	"encoding/json"
	"testing"
)

// The per-message cost of authentication on the coordinator's busiest
// path: a heartbeat sealed, opened and decoded (the scale figure of make
// bench measures it whole; this one says where it goes).
func benchHeartbeat(b *testing.B) (topic string, plain []byte) {
	hb, err := json.Marshal(Heartbeat{Member: "m01234", Boot: "3f9c2a7d1e", Conn: 1, Seq: 123456, IntervalMS: 1000, Version: "v0.9.0"})
	if err != nil {
		b.Fatal(err)
	}
	return "understudy/scale/member/m01234/heartbeat", hb
}

func BenchmarkOpenHeartbeat(b *testing.B) {
	ring := testRing(&testing.T{}, "k1")
	topic, plain := benchHeartbeat(b)
	sealed, err := Seal(ring, topic, plain, Stamp{From: "m01234", Boot: 7, Conn: 1, Seq: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(sealed)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Open(ring, topic, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeHeartbeat(b *testing.B) {
	_, plain := benchHeartbeat(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeHeartbeat("m01234", plain); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFreshnessTake(b *testing.B) {
	f := NewFreshness()
	topic, _ := benchHeartbeat(b)
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		if err := f.Take(topic, Stamp{From: "m01234", Boot: 7, Conn: 1, Seq: seq}, false, -1); err != nil {
			b.Fatal(err)
		}
	}
}
