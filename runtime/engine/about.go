package engine

import (
	"fmt"
	"reflect"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/runtime/config"
)

// About takes a member's description of itself (from its about topic): it
// replaces the member's site.yaml entry, or adds a member the site file does
// not list. Any goroutine.
func (e *Engine) About(m config.Member) {
	e.PostBounded("about", func() {
		if cur, ok := e.site.Member(m.ID); ok {
			if c, ok := describedCopy(e.site, m); ok && reflect.DeepEqual(c, *cur) {
				return // nothing new (a retained description seen again)
			}
		}
		added, err := e.site.Describe(m)
		if err != nil {
			if e.opts.Drops != nil {
				e.opts.Drops.Drop(m.ID, e.topics.About(m.ID), -1, fmt.Errorf("%w: %v", bus.ErrInvalid, err))
			}
			return
		}
		cm, _ := e.site.Member(m.ID)
		if added {
			e.table.Add(m.ID, cm.Heartbeat.D(), cm.LostAfter.D())
		}
		e.log.Info("member described itself", "member", m.ID, "new", added, "roles", cm.Roles, "standby", cm.Standby, "pool", cm.Pool)
		e.Record(Record{Type: events.MemberDescribed, Member: m.ID, Fields: map[string]any{"new": added, "roles": cm.Roles, "standby": cm.Standby, "pool": cm.Pool}})
		e.coord.Described(m.ID)
	})
}

// describedCopy is m as the site would hold it after Describe.
func describedCopy(site *config.Site, m config.Member) (config.Member, bool) {
	c := site.Clone()
	if _, err := c.Describe(m); err != nil {
		return config.Member{}, false
	}
	got, ok := c.Member(m.ID)
	if !ok {
		return config.Member{}, false
	}
	return *got, true
}
