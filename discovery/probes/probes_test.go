package probes

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTCPProbeSucceedsOnlyWhileSomethingListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := TCP(addr).Check(ctx); err != nil {
		t.Fatalf("listening: %v", err)
	}
	l.Close()
	if err := TCP(addr).Check(ctx); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("closed: %v", err)
	}
}

func TestHTTPProbeChecksTheStatus(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := HTTP(srv.URL, nil).Check(ctx); err != nil {
		t.Fatal(err)
	}
	status = http.StatusServiceUnavailable
	if err := HTTP(srv.URL, nil).Check(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("503: %v", err)
	}
	if err := HTTP(srv.URL, []int{503}).Check(ctx); err != nil {
		t.Fatalf("expected 503: %v", err)
	}
	status = http.StatusFound // a redirect is an answer, not followed
	if err := HTTP(srv.URL, nil).Check(ctx); err == nil {
		t.Fatal("302 counted as alive without being expected")
	}
}

func TestRunReportsEachCheckUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan error, 16)
	p := Func("always", func(context.Context) error { return nil })
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, p, 5*time.Millisecond, time.Second, func() { results <- nil }, func(err error) { results <- err })
	}()
	wait := func() error {
		select {
		case err := <-results:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("no check within 5s")
			return nil
		}
	}
	if err := wait(); err != nil {
		t.Fatalf("first check: %v", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
