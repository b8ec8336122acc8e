package kramer_test

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"understudy/drivers/drivertest"
	"understudy/drivers/kramer"
	"understudy/drivers/kramer/kramersim"
)

func TestAliveAgainstTheSimulator(t *testing.T) {
	for _, o := range []kramersim.Options{{}, {Machine: 3, Banner: "Welcome to Kramer VS-88UT"}} {
		_, addr := kramersim.StartLoopback(t, o)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := kramer.Alive(ctx, addr); err != nil {
			t.Errorf("Alive(%s) with %+v = %v", addr, o, err)
		}
		cancel()
	}
}

func TestAliveRefusesWhatIsNotAKramer(t *testing.T) {
	// Something else listens there: it accepts, says nothing useful.
	l := drivertest.Listen(t)
	go func() {
		c := l.Accept()
		c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := kramer.Alive(ctx, l.Addr)
	if err == nil || !strings.Contains(err.Error(), "no answer to the handshake") {
		t.Fatalf("Alive = %v, want no answer to the handshake", err)
	}

	// Nothing listens.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := kramer.Alive(ctx2, "127.0.0.1:1"); err == nil {
		t.Fatal("Alive on a closed port succeeded")
	}
}

func TestAliveRefusesAnErrorCodeToTheHandshake(t *testing.T) {
	l := drivertest.Listen(t)
	go func() {
		c := l.Accept()
		if line, err := bufio.NewReader(c).ReadString('\r'); err == nil && line == "#\r" {
			c.Write([]byte("~01@ERR 004\r\n"))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := kramer.Alive(ctx, l.Addr); err == nil || !strings.Contains(err.Error(), "the handshake was answered ERR 004") {
		t.Fatalf("Alive = %v, want the handshake's error code", err)
	}
}
