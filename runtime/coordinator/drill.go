package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"understudy/runtime/engine"

	"understudy/discovery/members"
	"understudy/events"
	"understudy/runtime/clock"
	"understudy/runtime/config"
	"understudy/runtime/store"
	"understudy/runtime/takeover"
)

// A fire drill is a synthetic fault the coordinator gives a live member so
// that the site's failover is exercised for real: the member is held lost
// (or its disks reported broken) whatever it sends, the policy takes over
// as it would, and after a set time the drill reverts by itself: the fault
// ends and the member is failed back as an operator's failback would. A
// dry-run drill (nothing sent) runs on a simulation of the site instead; the
// instance does that, see scenario.DryRun.

// Drill faults.
const (
	DrillLost   = "lost"   // the member is held lost
	DrillBroken = "broken" // its material disks are reported failed
)

// Drill bounds.
const (
	DefaultDrillRevert = 5 * time.Minute
	MaxDrillRevert     = 12 * time.Hour
	bucketDrills       = "drills"
)

// drill is a running real drill, kept in the store so that a restarted
// coordinator still holds the fault and reverts it on time.
type drill struct {
	Member  string    `json:"member"`
	Fault   string    `json:"fault"`
	Started time.Time `json:"started"`
	Until   time.Time `json:"until"`
	By      string    `json:"by"`
	// Broken is what the member's own disk reports said last (a broken drill
	// hides them until it ends).
	Broken bool `json:"real_broken"`
	timer  clock.Timer
}

// DrillRequest is a drill command's fields.
type DrillRequest struct {
	Member string
	Fault  string        // lost (default) or broken
	DryRun bool          // dry_run: true, the default
	Revert time.Duration // revert_after
}

// ParseDrill reads a drill command's fields: member, fault (lost, broken),
// dry_run (default true: a real drill must be asked for), revert_after.
func ParseDrill(fields map[string]any) (DrillRequest, error) {
	r := DrillRequest{Fault: DrillLost, DryRun: true, Revert: DefaultDrillRevert}
	r.Member, _ = fields["member"].(string)
	if r.Member == "" {
		return r, errors.New("drill: which member? (member)")
	}
	if f, ok := fields["fault"]; ok && f != nil {
		s, _ := f.(string)
		if s != DrillLost && s != DrillBroken {
			return r, fmt.Errorf("drill: fault %v: want lost or broken", f)
		}
		r.Fault = s
	}
	if v, ok := fields["dry_run"]; ok && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			return r, fmt.Errorf("drill: dry_run %v: want true or false", v)
		}
		r.DryRun = b
	}
	switch v := fields["revert_after"].(type) {
	case nil:
	case string:
		d, err := config.ParseDuration(v)
		if err != nil {
			return r, fmt.Errorf("drill: revert_after: %w", err)
		}
		r.Revert = d
	case float64: // seconds, from JSON
		r.Revert = time.Duration(v * float64(time.Second))
	default:
		return r, fmt.Errorf("drill: revert_after %v: want a duration like 5m, or seconds", v)
	}
	if r.Revert <= 0 || r.Revert > MaxDrillRevert {
		return r, fmt.Errorf("drill: revert_after %v: want more than 0 and at most %v", r.Revert, MaxDrillRevert)
	}
	return r, nil
}

// startDrill starts a real drill (on the loop).
func (c *Coordinator) startDrill(r DrillRequest, by string) error {
	if !c.table.Known(r.Member) {
		return fmt.Errorf("drill: no member %q", r.Member)
	}
	if r.DryRun {
		return nil // the instance runs it on a simulation
	}
	if r.Member == c.opts.Self {
		return fmt.Errorf("drill: %s is the coordinator; drill another member", r.Member)
	}
	if _, on := c.drills[r.Member]; on {
		return fmt.Errorf("drill: %s is in a drill already", r.Member)
	}
	if state := c.stateOf(r.Member); state != string(members.Alive) {
		return fmt.Errorf("drill: %s is %s; a drill needs a member that is alive", r.Member, state)
	}
	now := c.clock.Now()
	d := &drill{Member: r.Member, Fault: r.Fault, Started: now, Until: now.Add(r.Revert), By: by, Broken: c.broken[r.Member]}
	if err := c.store.Put(bucketDrills, d.Member, d); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	c.drills[d.Member] = d
	c.log.Warn("fire drill started", "member", d.Member, "fault", d.Fault, "revert_at", d.Until, "by", by)
	c.record(engine.Record{Type: events.DrillStarted, Member: d.Member, Fields: map[string]any{
		"fault": d.Fault, "dry_run": false, "revert_at": d.Until, "revert_after_s": r.Revert.Seconds(), "by": by}})
	c.armDrill(d)
	c.publishDrills()
	c.applyDrill(d)
	return nil
}

// applyDrill gives the member the drill's fault.
func (c *Coordinator) applyDrill(d *drill) {
	switch d.Fault {
	case DrillLost:
		if err := c.table.Hold(d.Member, "fire drill"); err != nil {
			c.log.Warn("drill: member not held", "member", d.Member, "error", err)
		}
	case DrillBroken:
		c.setBroken(d.Member, true, []string{"fire drill"}, "fire drill: all material disks failed")
	}
}

func (c *Coordinator) armDrill(d *drill) {
	d.timer = c.clock.AfterFunc(max(d.Until.Sub(c.clock.Now()), 0), func() {
		c.Post(func() {
			if c.drills[d.Member] == d {
				c.endDrill(d.Member, "revert_after ran out", "drill")
			}
		})
	})
}

// endDrill ends a member's drill: the fault is lifted and, if the member is
// there and covered, it is failed back as an operator's failback would.
func (c *Coordinator) endDrill(member, why, by string) error {
	d, ok := c.drills[member]
	if !ok {
		return fmt.Errorf("drill: %s is not in a drill", member)
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	// The member's return still carries the drill's mark; then it is over.
	switch d.Fault {
	case DrillLost:
		if err := c.table.Release(member, "fire drill ended"); err != nil {
			c.log.Warn("drill: member not released", "member", member, "error", err)
		}
	case DrillBroken:
		if !d.Broken {
			c.setBroken(member, false, nil, "fire drill ended: material disks work again")
		}
	}
	delete(c.drills, member)
	if err := c.store.Delete(bucketDrills, member); err != nil {
		c.log.Error("drill: end not kept in the state file", "member", member, "error", err)
	}
	state := c.stateOf(member)
	fields := map[string]any{"fault": d.Fault, "why": why, "by": by, "state": state, "lasted_s": c.clock.Now().Sub(d.Started).Seconds()}
	c.log.Warn("fire drill ended", "member", member, "why", why, "state", state)
	c.record(engine.Record{Type: events.DrillEnded, Member: member, Fields: fields})
	c.publishDrills()
	// Revert: the member's return went to the policy first (member_restored);
	// then, if the takeover still stands, the drill fails it back.
	c.Post(func() {
		if st := c.stateOf(member); c.takeover == nil || (st != string(members.Alive) && st != string(members.Suspect)) {
			return
		}
		if cv, ok := c.takeover.Covered(member); ok && cv.Phase == takeover.PhaseCovering {
			c.command("failback", map[string]any{"member": member}, "drill")
		}
	})
	return nil
}

// restoreDrills holds the drills the store kept when the coordinator
// stopped; those whose time ran out meanwhile end at once.
func (c *Coordinator) restoreDrills() error {
	all, err := store.Load[*drill](c.store, bucketDrills)
	if err != nil {
		return fmt.Errorf("drills: %w", err)
	}
	for _, id := range slices.Sorted(maps.Keys(all)) {
		d := all[id]
		if !c.table.Known(id) {
			c.store.Delete(bucketDrills, id)
			continue
		}
		c.drills[id] = d
		c.log.Warn("fire drill resumed after a restart", "member", id, "fault", d.Fault, "revert_at", d.Until)
		c.applyDrill(d)
		c.armDrill(d)
	}
	return nil
}

// drillStatus lists the running drills.
func (c *Coordinator) drillStatus() []engine.DrillStatus {
	var out []engine.DrillStatus
	for _, id := range slices.Sorted(maps.Keys(c.drills)) {
		d := c.drills[id]
		out = append(out, engine.DrillStatus{Member: d.Member, Fault: d.Fault, Started: d.Started, Until: d.Until,
			Remaining: max(d.Until.Sub(c.clock.Now()), 0).Seconds(), By: d.By})
	}
	return out
}

// publishDrills publishes the running drills on the retained drill topic.
func (c *Coordinator) publishDrills() {
	if c.opts.Publisher == nil {
		return
	}
	drills := nonNil(c.drillStatus())
	payload, _ := json.Marshal(map[string]any{"active": len(drills) > 0, "drills": drills})
	if err := c.opts.Publisher.Publish(c.topics.Drill(), 1, true, payload); err != nil {
		c.log.Debug("drills not published", "error", err)
	}
}

// drillFields marks an event's fields when its member is in a drill, so
// that a policy (and whoever reads the events) can tell: drill = the fault.
func (c *Coordinator) drillFields(member string, fields map[string]any) map[string]any {
	if d, ok := c.drills[member]; ok {
		fields["drill"] = d.Fault
	}
	return fields
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// drillOf is the fault of the drill member is in, or "".
func (c *Coordinator) drillOf(member string) string {
	if d, ok := c.drills[member]; ok {
		return d.Fault
	}
	return ""
}
