package kumo_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"understudy/drivers/kumo"
	"understudy/drivers/kumo/kumosim"
)

func TestAliveAgainstTheSimulator(t *testing.T) {
	// A KUMO without a password answers the product id; one with a password
	// answers 404 to a request without its session, which counts.
	for _, o := range []kumosim.Options{{}, {Password: "secret"}} {
		_, addr := kumosim.StartLoopback(t, o)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := kumo.Alive(ctx, "http://"+addr+"/"); err != nil {
			t.Errorf("Alive(%s) with %+v = %v", addr, o, err)
		}
		cancel()
	}
}

func TestAliveRefusesWhatIsNotAKumo(t *testing.T) {
	// A web server that answers something else.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := kumo.Alive(ctx, srv.Listener.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Alive = %v, want the 503", err)
	}
	// Nothing listens.
	if err := kumo.Alive(ctx, "127.0.0.1:1"); err == nil {
		t.Fatal("Alive on a closed port succeeded")
	}
}
