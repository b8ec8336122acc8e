package instance

import (
	"fmt"

	"understudy/runtime/config"
	"understudy/runtime/inbound"
	"understudy/runtime/store"
	"understudy/sitekey"
)

// loadSiteKey reads the site key when authentication is on and counts this
// start: the boot counter orders this instance's messages for the others,
// without clocks, across restarts.
func (inst *Instance) loadSiteKey() error {
	mode := inst.site.AuthMode()
	if mode == config.AuthOff {
		hint := "make a site key with `understudy keys new`"
		if inst.site.Auth.Mode == config.AuthOff {
			hint = "auth.mode is off in site.yaml"
		}
		inst.log.Warn("messages between instances are not authenticated (auth: off): anyone on the bus can speak for a member; " + hint)
		return nil
	}
	ring, err := sitekey.Load(inst.site.KeyPath())
	if err != nil {
		return fmt.Errorf("auth: %s: %w", mode, err)
	}
	// The counter only grows, even if the state file is lost and made anew:
	// it is at least the clock's seconds (an instance whose counter went
	// back would be taken for a replay until the others restart).
	err = inst.store.Update(func(tx *store.Tx) error {
		var n uint64
		if _, err := tx.Get("meta", "boot_count", &n); err != nil {
			return err
		}
		inst.bootCount = max(n+1, uint64(inst.clock.Now().Unix()))
		return tx.Put("meta", "boot_count", inst.bootCount)
	})
	switch {
	case err != nil && inst.store.Failing() != nil && inst.bootCount > 0:
		// The state file takes no writes (the state folder full): the
		// count is at least the clock's seconds, above every count before
		// (unless the clock went back), and the instance starts.
		inst.log.Error("this start is not counted in the state file: it takes no writes; counting from the clock", "boot", inst.bootCount, "error", err)
	case err != nil:
		return fmt.Errorf("auth: count this start: %w", err)
	}
	inst.ring = ring
	site := inst.site
	members := make(map[string]bool, len(inst.site.Members))
	for _, id := range inst.site.MemberIDs() {
		members[id] = true
	}
	inst.auth = inbound.NewAuth(ring, mode == config.AuthRequired, site.IsCandidate, func(id string) bool { return members[id] }, inst.log.With("component", "auth"))
	if len(site.CandidateBrokers()) > 1 {
		inst.auth.SeveralPaths()
	}
	inst.log.Info("messages between instances are authenticated", "mode", mode, "key", ring.Signer(), "keys", ring.IDs(), "boot", inst.bootCount)
	return nil
}
