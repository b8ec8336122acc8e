package bus_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"understudy/discovery/bus"
	"understudy/sitekey"
)

// An instance connected to two brokers: each message goes out once, sealed
// once, on both; each connection has its own number, presence and Will,
// and what arrives says which broker it came through. One broker going
// does not take the instance off the bus; the second does.
func TestPathsCarryEachMessageOnEveryBroker(t *testing.T) {
	srv0, ln0 := startMochi(t)
	_, ln1 := startMochi(t)
	urls := []string{"tcp://" + ln0.Addr().String(), "tcp://" + ln1.Addr().String()}
	key, err := sitekey.NewKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := sitekey.NewRing(key)
	if err != nil {
		t.Fatal(err)
	}
	topics := bus.Topics{Site: "t"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The observer: its own two paths.
	var mu sync.Mutex
	var heard []bus.Message
	obs := bus.NewPaths(bus.Options{URLs: urls, Topics: topics, Member: "o", Interval: time.Hour, KeepAlive: time.Second, Ring: ring, BootCount: 1})
	for _, f := range []string{topics.Heartbeat("m"), topics.Presence("m")} {
		obs.Subscribe(f, 1, func(m bus.Message) {
			mu.Lock()
			heard = append(heard, m)
			mu.Unlock()
		})
	}
	obs.Connect()
	t.Cleanup(func() { obs.Close(false) })
	waitFor(ctx, t, "the observer on both brokers", func() bool { s := obs.States(); return s[0].Connected && s[1].Connected })

	var ups, downs, lastDown sync.Map
	p := bus.NewPaths(bus.Options{
		URLs: urls, Topics: topics, Member: "m", Interval: time.Hour, KeepAlive: time.Second,
		Ring: ring, BootCount: 1,
		OnPath: func(path int, up bool) {
			if up {
				ups.Store(path, true)
			} else {
				downs.Store(path, true)
			}
		},
		OnDisconnected: func(error) { lastDown.Store("all", true) },
	})
	p.Connect()
	t.Cleanup(func() { p.Close(false) })
	waitFor(ctx, t, "both paths up", func() bool { _, a := ups.Load(0); _, b := ups.Load(1); return a && b })

	hb, ok := p.Probe()
	if !ok || hb.Conn != 0 {
		t.Fatalf("a heartbeat over two paths: %+v %v, want connection 0", hb, ok)
	}
	matching := func(state string) []bus.Message {
		mu.Lock()
		defer mu.Unlock()
		var out []bus.Message
		for _, m := range heard {
			if bytes.Contains(m.Payload, []byte(state)) {
				out = append(out, m)
			}
		}
		return out
	}
	waitFor(ctx, t, "the heartbeat through both brokers", func() bool { return len(matching(`"seq":1,`)) == 2 })
	beats := matching(`"seq":1,`)
	if !bytes.Equal(beats[0].Payload, beats[1].Payload) || beats[0].Path == beats[1].Path {
		t.Fatalf("the heartbeat's two copies: %q (path %d) and %q (path %d); want the same bytes through each broker", beats[0].Payload, beats[0].Path, beats[1].Payload, beats[1].Path)
	}
	waitFor(ctx, t, "an online presence through each broker", func() bool { return len(matching(`"online"`)) >= 2 })
	online := map[int]bus.Presence{}
	for _, m := range matching(`"online"`) {
		pr, _, err := bus.Open(ring, m.Topic, m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		dp, err := bus.DecodePresence("m", pr)
		if err != nil {
			t.Fatal(err)
		}
		online[m.Path] = dp
	}
	if online[0].Conn == online[1].Conn || online[0].Conn == 0 || online[1].Conn == 0 {
		t.Fatalf("the two connections' presences: %+v; want a number of their own each", online)
	}

	// Broker 0 ends m's connection: its Will comes through broker 0 only,
	// naming that connection; m is still on the bus through broker 1.
	for _, cl := range srv0.Clients.GetAll() {
		if bytes.Contains([]byte(cl.ID), []byte("-m-")) {
			cl.Stop(packets.ErrServerShuttingDown)
		}
	}
	waitFor(ctx, t, "m's Will through broker 0", func() bool { return len(matching(`"gone"`)) >= 1 })
	will := matching(`"gone"`)[0]
	pr, _, err := bus.Open(ring, will.Topic, will.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if dp, _ := bus.DecodePresence("m", pr); will.Path != 0 || dp.Conn != online[0].Conn {
		t.Fatalf("the Will came through path %d for connection %d; want path 0, connection %d", will.Path, dp.Conn, online[0].Conn)
	}
	waitFor(ctx, t, "path 0 noted down", func() bool { _, d := downs.Load(0); return d })
	if _, all := lastDown.Load("all"); all || !p.Connected() {
		t.Fatal("one broker of two ending the connection took the instance off the bus")
	}
	if err := p.Publish(topics.Presence("m"), 1, false, []byte(`{"member":"m","state":"online","boot":"x","conn":9}`)); err != nil {
		t.Fatalf("publishing with one path of two: %v", err)
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("never: %s", what)
		case <-tick.C:
		}
	}
}
