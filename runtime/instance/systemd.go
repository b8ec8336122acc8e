package instance

import (
	"context"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notify tells systemd how the instance is (sd_notify), when systemd started
// it as a Type=notify service (NOTIFY_SOCKET set); otherwise it does nothing.
func (inst *Instance) notify(states ...string) {
	if _, err := daemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		inst.log.Debug("systemd notification not sent", "error", err)
	}
}

// watchdog pings systemd's watchdog (WatchdogSec=) while the event loop
// answers: a loop that is stuck stops the pings, and systemd restarts the
// service. It returns when ctx ends, at once when there is no watchdog.
func (inst *Instance) watchdog(ctx context.Context) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every <= 0 {
		return
	}
	every /= 3
	inst.log.Info("systemd watchdog", "ping_every", every)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, every)
		err := inst.engine.Do(cctx, func() {})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				inst.log.Error("event loop did not answer: not pinging the systemd watchdog", "error", err, "state_store", storeProblem(inst.store, time.Now()))
			}
			continue
		}
		inst.notify(daemon.SdNotifyWatchdog)
	}
}
