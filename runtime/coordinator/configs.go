package coordinator

import (
	"fmt"
	"understudy/runtime/engine"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/guards"
	"understudy/runtime/config"
)

const bucketConfigs = "configs"

// siteConfig is the newest version of a configuration bundle the site knows.
type siteConfig struct {
	Bundle  string `json:"bundle"`
	Version uint64 `json:"version"`
	Hash    string `json:"hash"`
	Content string `json:"content"`
	From    string `json:"from"` // the member that reported it
}

// ConfigReport takes an instance's configuration report. Any goroutine.
//
// The coordinator keeps the newest version of each bundle. A report derived
// from the newest (its base is at least the site's version) with a higher
// version is the new newest, and the other members sharing the bundle receive
// it. A report of an older version, or an edit derived from an older one, is
// answered with the newest: the member writes it into place. So an instance
// that starts first with an old configuration never overwrites a newer one.
func (c *Coordinator) ConfigReport(r bus.ConfigReport) {
	c.loop.PostBounded("config", func() {
		cm, ok := c.site.Member(r.Member)
		if !ok || cm.ConfigBundleName() != r.Bundle {
			if c.opts.Drops != nil {
				c.opts.Drops.Drop(r.Member, c.topics.Config(r.Member), len(r.Content), fmt.Errorf("%w: %s has no configuration bundle %q", bus.ErrInvalid, r.Member, r.Bundle))
			}
			return
		}
		var cur siteConfig
		found, err := c.store.Get(bucketConfigs, r.Bundle, &cur)
		if err != nil {
			c.log.Error("configuration state unreadable", "bundle", r.Bundle, "error", err)
			return
		}
		switch {
		case !found || (r.Version > cur.Version && r.Base >= cur.Version) || (r.Hash == cur.Hash && r.Version > cur.Version) ||
			guards.Off(guards.ConfigBase) && r.Hash != cur.Hash:
			next := siteConfig{Bundle: r.Bundle, Version: r.Version, Hash: r.Hash, Content: r.Content, From: r.Member}
			if err := c.store.Put(bucketConfigs, r.Bundle, next); err != nil {
				c.log.Error("configuration not recorded", "bundle", r.Bundle, "error", err)
				return
			}
			if found && cur.Hash == r.Hash {
				return
			}
			c.log.Info("configuration accepted", "bundle", r.Bundle, "version", r.Version, "from", r.Member)
			c.record(engine.Record{Type: events.ConfigAccepted, Member: r.Member, Fields: map[string]any{"bundle": r.Bundle, "version": r.Version, "previous": cur.Version}})
			for _, m := range c.site.Members {
				if m.ID != r.Member && m.ConfigBundleName() == r.Bundle {
					c.pushConfig(m.ID, next, "a newer version from "+r.Member)
				}
			}
		case r.Hash == cur.Hash && r.Version == cur.Version:
			// In step.
		default:
			why := "it reported version " + fmt.Sprint(r.Version) + ", the site has " + fmt.Sprint(cur.Version)
			if r.Version > cur.Version {
				why = fmt.Sprintf("its edit (version %d) is based on version %d, the site has %d since", r.Version, r.Base, cur.Version)
			}
			c.log.Warn("member has an older configuration; sending it the newest", "member", r.Member, "bundle", r.Bundle, "why", why)
			c.record(engine.Record{Type: events.ConfigStale, Member: r.Member, Fields: map[string]any{"bundle": r.Bundle, "reported": r.Version, "base": r.Base, "newest": cur.Version, "why": why}})
			c.pushConfig(r.Member, cur, why)
		}
	})
}

// pushConfig sends member the bundle's newest version, unless one is on its way.
func (c *Coordinator) pushConfig(member string, cv siteConfig, why string) {
	for _, f := range c.actions.remote {
		if f.a.Target == member && f.a.Verb == config.HookConfig && fmt.Sprint(f.a.Args["version"]) == fmt.Sprint(cv.Version) {
			return
		}
	}
	args := map[string]any{"member": member, "bundle": cv.Bundle, "version": cv.Version, "config": cv.Content, "from": cv.From}
	if _, err := c.runHook(member, config.HookConfig, args, "configuration: "+why); err != nil {
		c.log.Error("newest configuration not sent", "member", member, "error", err)
	}
}

// newestConfig is the site's newest version of member's bundle, if known.
func (c *Coordinator) newestConfig(cm *config.Member) (siteConfig, bool) {
	name := cm.ConfigBundleName()
	if name == "" {
		return siteConfig{}, false
	}
	var cv siteConfig
	found, err := c.store.Get(bucketConfigs, name, &cv)
	return cv, found && err == nil
}
