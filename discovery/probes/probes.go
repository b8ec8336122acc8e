// Package probes checks members that run no understudy — an IP camera, a
// third-party server, the video switcher itself — so that they take part in
// the same member states and events as instances that heartbeat: each probe
// that succeeds counts as a heartbeat; a member whose probes fail for
// lost_after is lost.
package probes

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Probe checks once whether a member answers.
type Probe interface {
	Check(ctx context.Context) error
	String() string
}

// TCP succeeds when a TCP connection to addr (host:port) opens.
func TCP(addr string) Probe { return tcpProbe{addr} }

type tcpProbe struct{ addr string }

func (p tcpProbe) String() string { return "tcp " + p.addr }

func (p tcpProbe) Check(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return fmt.Errorf("tcp %s: %w", p.addr, err)
	}
	return c.Close()
}

// HTTP succeeds when a GET of url answers with one of the expected statuses
// (any 2xx when expect is empty).
func HTTP(url string, expect []int) Probe {
	return httpProbe{url: url, expect: expect, client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type httpProbe struct {
	url    string
	expect []int
	client *http.Client
}

func (p httpProbe) String() string { return "http " + p.url }

func (p httpProbe) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("http %s: %w", p.url, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("http %s: %w", p.url, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if len(p.expect) > 0 {
		ok = slices.Contains(p.expect, resp.StatusCode)
	}
	if !ok {
		return fmt.Errorf("http %s: status %s", p.url, strconv.Itoa(resp.StatusCode))
	}
	return nil
}

// Func succeeds when f returns nil (e.g. "the switcher's driver is
// connected", or a device's own protocol answers).
func Func(name string, f func(context.Context) error) Probe { return funcProbe{name, f} }

type funcProbe struct {
	name string
	f    func(context.Context) error
}

func (p funcProbe) String() string                  { return p.name }
func (p funcProbe) Check(ctx context.Context) error { return p.f(ctx) }

// Run checks p every interval (each check bounded by timeout) until ctx ends,
// calling alive after each success and failed after each failure. Checks
// never overlap; the first one is immediate.
func Run(ctx context.Context, p Probe, interval, timeout time.Duration, alive func(), failed func(error)) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failed(err)
		} else {
			alive()
		}
		t.Reset(interval)
	}
}
