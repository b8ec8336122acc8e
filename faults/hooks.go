package faults

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"understudy/runtime/faulthook"
)

// hookWait bounds the wait for an instance's fault hook to answer.
const hookWait = 10 * time.Second

// hostFault reports whether o goes through the instance's fault hook
// (runtime/faulthook).
func (o Op) hostFault() bool { return o.Kind == OpClockStep || o.Kind == OpStoreStall }

// sendHook sends one command line to the fault hook listening on the Unix
// socket at path and waits for its answer (until ctx ends): nil for "ok",
// else what the hook answered. A Unix socket is a file: no network is
// needed to reach it, whatever namespace its instance is in.
func sendHook(ctx context.Context, path, line string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("fault hook %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(hookWait))
	}
	if _, err := fmt.Fprintln(c, line); err != nil {
		return fmt.Errorf("fault hook %s: %q: %w", path, line, err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("fault hook %s: %q: no answer: %w", path, line, err)
	}
	if reply = strings.TrimSpace(reply); reply != faulthook.Reply {
		return fmt.Errorf("fault hook %s: %q: %s", path, line, reply)
	}
	return nil
}
