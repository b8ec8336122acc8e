package videohub_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"understudy/drivers/drivertest"
	"understudy/drivers/videohub"
	"understudy/drivers/videohub/videohubsim"
)

func TestAliveAgainstTheSimulator(t *testing.T) {
	_, addr := videohubsim.StartLoopback(t, videohubsim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := videohub.Alive(ctx, addr); err != nil {
		t.Fatalf("Alive(%s) = %v", addr, err)
	}
}

func TestAliveRefusesWhatIsNotAVideohub(t *testing.T) {
	// Something else listens there: it accepts, says nothing useful.
	l := drivertest.Listen(t)
	go func() {
		c := l.Accept()
		c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := videohub.Alive(ctx, l.Addr)
	if err == nil || !strings.Contains(err.Error(), "no protocol preamble") {
		t.Fatalf("Alive = %v, want no protocol preamble", err)
	}

	// Nothing listens.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := videohub.Alive(ctx2, "127.0.0.1:1"); err == nil {
		t.Fatal("Alive on a closed port succeeded")
	}
}

func TestAliveRefusesADeviceWithoutHardware(t *testing.T) {
	l := drivertest.Listen(t)
	go func() {
		c := l.Accept()
		c.Write([]byte("PROTOCOL PREAMBLE:\nVersion: 2.8\n\nVIDEOHUB DEVICE:\nDevice present: false\n\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := videohub.Alive(ctx, l.Addr); err == nil || !strings.Contains(err.Error(), "Device present: false") {
		t.Fatalf("Alive = %v, want the device-not-present error", err)
	}
}
