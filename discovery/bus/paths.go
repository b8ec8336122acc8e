package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Paths is an instance's way to the bus: a connection to each of the site's
// brokers (Options.URLs), or to its one broker (Options.URL).
//
// On a site whose coordinator candidates each embed a broker, every instance
// stays connected to all of them, so that losing a candidate's host costs no
// reconnect: the new coordinator already hears the whole site, and the dead
// host's Last Will comes at once from the brokers that survive it. Each
// message goes out once, sealed once, on every connected path; receivers
// take the first copy (Freshness calls the others duplicates). Each
// connection has its own presence and Last Will, which name their path
// (Presence.Path): a Will says the path to one broker is gone, not the
// member — the paths merger (members.Paths) decides when a member is silent
// on every path.
//
// With one broker Paths is exactly that broker's Client.
type Paths struct {
	opts    Options
	clients []*Client
	several bool
	*shared

	cbMu sync.Mutex // orders the callbacks of the paths going up and down
	up   []bool
}

// PathState is one path's broker and whether it is connected.
type PathState struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
}

// NewPaths prepares the connections (Options.URLs, or Options.URL); Connect
// starts them. Options.OnConnected is called each time a path connects (the
// instance's retained topics go out again: that broker may be new),
// OnDisconnected when the last one drops, OnPath on every change of one.
func NewPaths(opts Options) *Paths {
	urls := opts.URLs
	if len(urls) == 0 {
		urls = []string{opts.URL}
	}
	p := &Paths{opts: opts, several: len(urls) > 1, shared: newShared(), up: make([]bool, len(urls))}
	for i, u := range urls {
		o := opts
		o.URL, o.URLs, o.Path = u, nil, i
		o.OnConnected = func() { p.changed(i, true, nil) }
		o.OnDisconnected = func(err error) { p.changed(i, false, err) }
		p.clients = append(p.clients, newClient(o, p.shared, p.several))
	}
	return p
}

func (p *Paths) changed(i int, up bool, err error) {
	p.cbMu.Lock()
	defer p.cbMu.Unlock()
	p.up[i] = up
	if p.opts.OnPath != nil {
		p.opts.OnPath(i, up)
	}
	switch {
	case up && p.opts.OnConnected != nil:
		p.opts.OnConnected()
	case !up && p.opts.OnDisconnected != nil && !p.anyUp():
		p.opts.OnDisconnected(err)
	}
}

func (p *Paths) anyUp() bool {
	for _, u := range p.up {
		if u {
			return true
		}
	}
	return false
}

// Boot returns this process's boot id.
func (p *Paths) Boot() string { return p.boot }

// Len is the number of paths.
func (p *Paths) Len() int { return len(p.clients) }

// States says each path's broker and whether it is connected.
func (p *Paths) States() []PathState {
	out := make([]PathState, len(p.clients))
	for i, c := range p.clients {
		out[i] = PathState{URL: c.opts.URL, Connected: c.Connected()}
	}
	return out
}

// Connect starts connecting every path in the background.
func (p *Paths) Connect() {
	for _, c := range p.clients {
		c.Connect()
	}
}

// WaitConnected waits until a path is connected or ctx ends.
func (p *Paths) WaitConnected(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !p.Connected() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to %s: %w", p.describe(), ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func (p *Paths) describe() string {
	if !p.several {
		return p.clients[0].opts.URL
	}
	return fmt.Sprintf("any of %d brokers", len(p.clients))
}

// Connected reports whether a path is up now.
func (p *Paths) Connected() bool {
	for _, c := range p.clients {
		if c.Connected() {
			return true
		}
	}
	return false
}

// Subscribe subscribes on every path.
func (p *Paths) Subscribe(filter string, qos byte, h Handler) {
	for _, c := range p.clients {
		c.Subscribe(filter, qos, h)
	}
}

// Publish sends a message on every connected path (see Client.Publish);
// an error when none is.
func (p *Paths) Publish(topic string, qos byte, retained bool, payload []byte) error {
	if !p.several {
		return p.clients[0].Publish(topic, qos, retained, payload)
	}
	if err := CheckPublish(topic, payload); err != nil {
		return err
	}
	if len(payload) > 0 {
		payload = p.clients[0].sealAs(topic, payload, 0, p.sealSeq.Add(1))
	}
	if len(p.publishSealed(topic, qos, retained, payload)) == 0 {
		return errors.New("bus not connected")
	}
	return nil
}

// publishSealed publishes a sealed payload on every connected path and
// returns their tokens.
func (p *Paths) publishSealed(topic string, qos byte, retained bool, payload []byte) []mqtt.Token {
	var toks []mqtt.Token
	for _, c := range p.clients {
		if c.Connected() {
			toks = append(toks, c.mqtt.Publish(topic, qos, retained, payload))
		}
	}
	return toks
}

// Beats is how many heartbeats this instance has published.
func (p *Paths) Beats() uint64 { return p.seq.Load() }

// Beat publishes one heartbeat (skipped while no path is connected).
func (p *Paths) Beat() { p.Probe() }

// Probe publishes one heartbeat now, out of turn, on every connected path
// and returns it (see Client.Probe); false when none is connected. Over
// several paths it carries connection 0: its sequence orders it.
func (p *Paths) Probe() (Heartbeat, bool) {
	if !p.several {
		return p.clients[0].Probe()
	}
	if !p.Connected() {
		return Heartbeat{}, false
	}
	p.beatMu.Lock()
	defer p.beatMu.Unlock()
	hb := Heartbeat{
		Member: p.opts.Member, Boot: p.boot, Seq: p.seq.Add(1),
		IntervalMS: p.opts.Interval.Milliseconds(), Version: p.opts.Version,
	}
	b, _ := json.Marshal(hb)
	topic := p.opts.Topics.Heartbeat(p.opts.Member)
	p.publishSealed(topic, 0, false, p.clients[0].sealAs(topic, b, 0, p.sealSeq.Add(1)))
	return hb, true
}

// RunHeartbeats publishes a heartbeat every interval until ctx ends, and
// makes a new connection on a path that has been deaf for DeafAfter.
func (p *Paths) RunHeartbeats(ctx context.Context) {
	if !p.several {
		p.clients[0].RunHeartbeats(ctx)
		return
	}
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	p.Beat()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			now := time.Now()
			for _, c := range p.clients {
				c.noteStall(now, last)
			}
			p.Beat()
			for _, c := range p.clients {
				c.checkDeaf(now)
			}
			last = now
		}
	}
}

// Close ends every connection. With graceful set it first publishes
// "closed" on the presence topic, on every path.
func (p *Paths) Close(graceful bool) {
	if !p.several {
		p.clients[0].Close(graceful)
		return
	}
	if graceful {
		topic := p.opts.Topics.Presence(p.opts.Member)
		b, _ := json.Marshal(Presence{Member: p.opts.Member, State: "closed", Boot: p.boot})
		deadline := time.Now().Add(time.Second)
		for _, tok := range p.publishSealed(topic, 1, true, p.clients[0].sealAs(topic, b, 0, p.sealSeq.Add(1))) {
			if !tok.WaitTimeout(time.Until(deadline)) {
				p.clients[0].log.Warn("closing: a broker did not confirm the closed message in time")
			}
		}
	}
	var wg sync.WaitGroup
	for _, c := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close(false)
		}()
	}
	wg.Wait()
}
