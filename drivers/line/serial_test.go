//go:build linux

package line_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"understudy/drivers"
	"understudy/drivers/line/linesim"
)

// The serial tests open the slave side of a pseudo-terminal with
// go.bug.st/serial, as the driver would a USB adapter, while the simulator
// plays the device on the master side.

func TestSerial(t *testing.T) {
	sim, path, master := linesim.StartSerial(t, linesim.Options{Replies: projectorReplies()})
	d, ev := newDriver(t, "transport: serial\naddress: "+path+"\nbaud: 19200\ndata_bits: 7\nparity: even\nstop_bits: 2\n"+projector)
	if st := d.Status(); st.Connected || st.Address != path {
		t.Errorf("Status() before any command = %+v", st)
	}

	if got := mustDo(t, d, cmd("power_on")); !reflect.DeepEqual(got, map[string]any{"reply": "OK"}) {
		t.Errorf("power_on result %v", got)
	}
	ev.expect(drivers.EventConnected)
	if got := mustDo(t, d, cmd("power")); got["power"] != "1" {
		t.Errorf("power result %v", got)
	}
	_, err := do(t, d, map[string]any{"command": "input", "args": map[string]any{"n": 9}})
	if !errors.Is(err, drivers.ErrRefused) || err.Error() != path+" refused input: ERR 2" {
		t.Errorf("error %v", err)
	}
	if got := sim.Lines(); !reflect.DeepEqual(got, []string{"PWR ON", "PWR?", "INPUT 9"}) {
		t.Errorf("device received %q", got)
	}

	// The port was configured as asked: the pair shares one termios.
	var tio *unix.Termios
	rc, err := master.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { tio, err = unix.IoctlGetTermios(int(fd), unix.TCGETS) }); err != nil || tio == nil {
		t.Fatalf("termios: %v", err)
	}
	if got := tio.Cflag & unix.CBAUD; got != unix.B19200 {
		t.Errorf("baud bits %#o, want B19200 (%#o)", got, unix.B19200)
	}
	// A Linux pseudo-terminal keeps the stop bits asked for but forces
	// 8 data bits and no parity (pty_set_termios), so data_bits and parity
	// are checked only in that opening the port with them succeeded.
	if tio.Cflag&unix.CSTOPB == 0 {
		t.Errorf("cflag %#o, want 2 stop bits (CSTOPB)", tio.Cflag)
	}
	if tio.Lflag&(unix.ICANON|unix.ECHO) != 0 {
		t.Errorf("lflag %#o: the port is not raw", tio.Lflag)
	}
}

func TestSerialSilentDeviceKeepsThePortOpen(t *testing.T) {
	sim, path, _ := linesim.StartSerial(t, linesim.Options{Replies: projectorReplies()})
	d, ev := newDriver(t, "transport: serial\naddress: "+path+"\n"+projector)
	mustDo(t, d, cmd("power"))
	ev.expect(drivers.EventConnected)
	sim.NoReplyNext(1)
	_, err := do(t, d, cmd("ping"))
	isFinal(t, err, path+" ping: no reply within 250ms")
	if st := d.Status(); !st.Connected || st.LastError != "no reply within 250ms" {
		t.Errorf("Status() = %+v", st)
	}
	mustDo(t, d, cmd("power_off"))
	if st := d.Status(); !st.Connected || st.LastError != "" {
		t.Errorf("Status() = %+v", st)
	}
	ev.none()
	if got := sim.Lines(); !reflect.DeepEqual(got, []string{"PWR?", "PING", "PWR OFF"}) {
		t.Errorf("device received %q", got)
	}
}

func TestSerialUnplugged(t *testing.T) {
	_, path, master := linesim.StartSerial(t, linesim.Options{Replies: projectorReplies()})
	d, ev := newDriver(t, "transport: serial\naddress: "+path+"\n"+projector)
	mustDo(t, d, cmd("power_on"))
	ev.expect(drivers.EventConnected)

	master.Close() // the adapter is pulled out
	ev.expect(drivers.EventDisconnected)
	_, err := do(t, d, cmd("power_on"))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "open "+path) {
		t.Errorf("error %v, want not connected: open %s: …", err, path)
	}
	if st := d.Status(); st.Connected || st.LastError == "" {
		t.Errorf("Status() = %+v", st)
	}
}

func TestSerialMissingDevice(t *testing.T) {
	d, ev := newDriver(t, "transport: serial\naddress: /dev/understudy-no-such-port\n"+projector)
	_, err := do(t, d, cmd("power_on"))
	if !errors.Is(err, drivers.ErrNotConnected) || !strings.Contains(err.Error(), "open /dev/understudy-no-such-port") {
		t.Errorf("error %v", err)
	}
	ev.expect(drivers.EventDisconnected)
}
