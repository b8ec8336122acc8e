package bus

import (
	"context"
	"net"
	"testing"
	"time"
	"understudy/discovery/broker"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// fakeBroker accepts connections and answers CONNECT, and acknowledges
// nothing else: what the client publishes at QoS 1 stays unacknowledged.
// Each connection comes on the channel it returns, with the PUBLISH packets
// it carries.
func fakeBroker(t *testing.T) (addr string, conns <-chan fakeConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	out := make(chan fakeConn, 4)
	go func() {
		for range 4 { // bounded: the test needs two
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			pubs := make(chan *packets.PublishPacket, 16)
			out <- fakeConn{c, pubs}
			go func() {
				defer close(pubs)
				for {
					p, err := packets.ReadPacket(c)
					if err != nil {
						return
					}
					switch p := p.(type) {
					case *packets.ConnectPacket:
						ack := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
						if err := ack.Write(c); err != nil {
							return
						}
					case *packets.PublishPacket:
						pubs <- p
					case *packets.PingreqPacket:
						_ = packets.NewControlPacket(packets.Pingresp).Write(c)
					}
				}
			}()
		}
	}()
	return l.Addr().String(), out
}

type fakeConn struct {
	net.Conn
	pubs chan *packets.PublishPacket
}

// A publish the broker did not acknowledge before the connection ended is
// not sent again on the next connection (see noStore).
func TestAnUnacknowledgedPublishIsNotResentAfterAReconnect(t *testing.T) {
	addr, conns := fakeBroker(t)
	c := New(Options{URL: "tcp://" + addr, Topics: Topics{Site: "t"}, Member: "m", Interval: time.Hour})
	c.Connect()
	defer c.Close(false)
	next := func() fakeConn {
		select {
		case fc := <-conns:
			return fc
		case <-time.After(10 * time.Second):
			t.Fatal("the client did not connect")
		}
		return fakeConn{}
	}
	first := next()
	if err := c.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("t/once", 1, false, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	// The first connection sees the publish (after the presence) ...
	for p := range first.pubs {
		if p.TopicName == "t/once" {
			break
		}
	}
	// ... and ends; the client connects again.
	first.Close()
	second := next()
	deadline := time.After(2 * time.Second) // a bounded look at what the new connection carries
	for {
		select {
		case p, ok := <-second.pubs:
			if !ok {
				return
			}
			if p.TopicName == "t/once" {
				t.Fatalf("the publish of the earlier connection was sent again (dup %v)", p.Dup)
			}
		case <-deadline:
			return
		}
	}
}

// An account with several passwords (a site key change under way) logs in
// with whichever the broker knows, and tries that one first next time.
func TestTheNextPasswordIsTriedWhenTheBrokerRefusesOne(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:0", Users: []broker.User{
		{Username: "understudy-m", Password: "old-key-password", Publish: []string{"#"}, Subscribe: []string{"#"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := New(Options{URL: "tcp://" + b.Addr(), Topics: Topics{Site: "t"}, Member: "m", Interval: time.Hour,
		Username: "understudy-m", Password: "new-key-password", Alternates: []string{"old-key-password"}})
	c.Connect()
	defer c.Close(false)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("did not log in with the alternate password: %v", err)
	}
	// paho calls onConnect, which keeps the password that worked, on a
	// goroutine of its own, after the connection is open.
	for c.passwordOK.Load() != 1 {
		select {
		case <-ctx.Done():
			t.Fatalf("the password that worked is number %d, want 1", c.passwordOK.Load())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
