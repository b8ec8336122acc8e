package extron

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"understudy/drivers/extron/wire"

	"understudy/drivers/switcher"
)

// bannerWait is how long Alive waits for the copyright banner before it asks
// for the firmware version instead (some models are set to send none).
const bannerWait = time.Second

// firmwareRe is a firmware version as Q answers it, like 1.23.
var firmwareRe = regexp.MustCompile(`^\d+\.\d+`)

// Alive checks that an Extron switcher answers at addr (host, or host:port;
// the port defaults to 23), for a switcher that is a member of the site but
// not one of its drivers. The copyright banner the device sends on connect,
// or its password prompt, is an answer; a device that sends neither within
// a second is asked for its firmware version (Q), never sent anything that
// could count as a wrong password.
func Alive(ctx context.Context, addr string) error {
	addr, err := switcher.NormalizeAddress(addr, wire.DefaultPort)
	if err != nil {
		return fmt.Errorf("extron: %w", err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("extron %s: %w", addr, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()

	lines := make(chan string)
	failed := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(nc)
		sc.Buffer(make([]byte, 0, 512), wire.MaxLine+2)
		sc.Split(wire.SplitReplies)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		failed <- fmt.Errorf("connection closed: %v", sc.Err())
	}()
	askAt := time.NewTimer(bannerWait)
	defer askAt.Stop()
	asked := false
	for {
		select {
		case line := <-lines:
			switch r := wire.ParseReply(line).(type) {
			case wire.Copyright, wire.PasswordPrompt:
				return nil
			case wire.Text:
				if strings.Contains(string(r), "Extron") || (asked && firmwareRe.MatchString(string(r))) {
					return nil
				}
			}
		case <-askAt.C:
			if _, err := nc.Write(append(wire.Firmware{}.Bytes(), '\r', '\n')); err != nil {
				return fmt.Errorf("extron %s: asking for the firmware version: %w", addr, err)
			}
			asked = true
		case err := <-failed:
			return fmt.Errorf("extron %s: no banner, prompt or firmware version: %w", addr, err)
		case <-ctx.Done():
			what := "no banner or password prompt"
			if asked {
				what = "no banner, and no answer to Q"
			}
			return fmt.Errorf("extron %s: %s: %w", addr, what, ctx.Err())
		}
	}
}
