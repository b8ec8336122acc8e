// Package drivertest holds helpers for testing a driver: config from YAML,
// an event collector with deadlines, a started driver, and a listener the
// test answers by hand.
package drivertest

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"understudy/drivers"
)

// Deadline bounds every wait in driver tests; nothing waits on a clock to
// pass, only for an event or a reply.
const Deadline = 10 * time.Second

// Config returns the configuration of a driver named name whose settings
// are the YAML document doc, decoded strictly (unknown keys are errors).
func Config(name, doc string) drivers.Config {
	return drivers.Config{Name: name, Decode: func(v any) error {
		return yaml.UnmarshalWithOptions([]byte(doc), v, yaml.Strict())
	}}
}

// Doc returns the YAML settings "address: addr" followed by the extra lines,
// and then each of defaults ("key: value") whose key is not already set.
func Doc(addr string, extra []string, defaults ...string) string {
	doc := "address: " + addr + "\n" + strings.Join(extra, "\n") + "\n"
	for _, def := range defaults {
		key, _, _ := strings.Cut(def, ":")
		if !strings.Contains("\n"+doc, "\n"+key+":") {
			doc += def + "\n"
		}
	}
	return doc
}

// Context returns a context that ends after Deadline or with the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Deadline)
	t.Cleanup(cancel)
	return ctx
}

// Events collects what a driver emits.
type Events struct {
	t  testing.TB
	ch chan drivers.Event
}

// NewEvents returns a collector that fails t when a wait passes Deadline.
func NewEvents(t testing.TB) *Events {
	return &Events{t: t, ch: make(chan drivers.Event, 1000)}
}

// Emit is the collector's drivers.Emitter. It never blocks; it panics if
// the buffer is full.
func (e *Events) Emit(ev drivers.Event) {
	select {
	case e.ch <- ev:
	default:
		panic("test event buffer full")
	}
}

// Next returns the next event.
func (e *Events) Next() drivers.Event {
	e.t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(Deadline):
		e.t.Fatal("no event within the deadline")
		return drivers.Event{}
	}
}

// WaitFor returns the next event with the given name, and the others that
// came before it.
func (e *Events) WaitFor(name string) (drivers.Event, []drivers.Event) {
	e.t.Helper()
	var before []drivers.Event
	for {
		ev := e.Next()
		if ev.Name == name {
			return ev, before
		}
		before = append(before, ev)
	}
}

// None checks that no event is waiting.
func (e *Events) None() {
	e.t.Helper()
	select {
	case ev := <-e.ch:
		e.t.Errorf("unexpected event %+v", ev)
	default:
	}
}

// Drain returns the events waiting now, without waiting for more.
func (e *Events) Drain() []drivers.Event {
	var out []drivers.Event
	for {
		select {
		case ev := <-e.ch:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// Connected waits for the driver_connected event and fails the test if any
// other event came before it.
func (e *Events) Connected() {
	e.t.Helper()
	if _, before := e.WaitFor(drivers.EventConnected); len(before) > 0 {
		e.t.Fatalf("events before the connection was ready: %+v", before)
	}
}

// Start makes a driver with newDriver from the settings doc (driver name
// "router"), starts it with a new collector and closes it with the test.
// The driver must be a D.
func Start[D drivers.Driver](t testing.TB, newDriver func(drivers.Config) (drivers.Driver, error), doc string) (D, *Events) {
	t.Helper()
	d, err := newDriver(Config("router", doc))
	if err != nil {
		t.Fatal(err)
	}
	x := d.(D)
	ev := NewEvents(t)
	x.Start(context.Background(), ev.Emit)
	t.Cleanup(func() { x.Close() })
	return x, ev
}

// Listener is a TCP listener on the loopback the test answers by hand, for
// exact control of what the driver sees and when.
type Listener struct {
	Addr  string // host:port
	t     testing.TB
	conns chan net.Conn
}

// Listen starts a Listener that is closed, with its connections, with the
// test.
func Listen(t testing.TB) *Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Listener{Addr: l.Addr().String(), t: t, conns: make(chan net.Conn, 10)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case f.conns <- c:
			default:
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(f.conns)
		for c := range f.conns {
			c.Close()
		}
	})
	return f
}

// Accept returns the driver's next connection, closed with the test; it
// fails the test if none comes within Deadline.
func (f *Listener) Accept() net.Conn {
	f.t.Helper()
	select {
	case nc := <-f.conns:
		f.t.Cleanup(func() { nc.Close() })
		return nc
	case <-time.After(Deadline):
		f.t.Fatal("the driver did not connect")
		return nil
	}
}
