//go:build linux

package linesim_test

import (
	"bufio"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"understudy/drivers/line/linesim"
)

func TestSerialOverPTY(t *testing.T) {
	sim, path, _ := linesim.StartSerial(t, linesim.Options{Replies: replies})
	// Open the slave side raw, as a serial port would be.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ctlErr error
	if err := rc.Control(func(fd uintptr) {
		tio, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			ctlErr = err
			return
		}
		tio.Lflag &^= unix.ICANON | unix.ECHO | unix.ISIG
		tio.Iflag &^= unix.ICRNL
		tio.Oflag &^= unix.OPOST
		ctlErr = unix.IoctlSetTermios(int(fd), unix.TCSETS, tio)
	}); err != nil || ctlErr != nil {
		t.Fatal(err, ctlErr)
	}
	_ = f.SetDeadline(time.Now().Add(deadline))
	if _, err := io.WriteString(f, "PWR?\r"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(f).ReadString('\n')
	if err != nil || got != "PWR=1\r\n" {
		t.Errorf("reply %q, %v", got, err)
	}
	if c := sim.Commands(); len(c) != 1 || c[0].Transport != "stream" || c[0].Line != "PWR?" {
		t.Errorf("log %+v", c)
	}
}
