package coordinator

import (
	"fmt"
	"slices"
	"strings"

	"understudy/discovery/bus"
	"understudy/events"
	"understudy/runtime/takeover"
)

// Operator commands the runtime knows. It carries out confirm, reject,
// mode, drill, drill_end and reassert itself; takeover, failback and takeover_all are
// the policy's to carry out (command:VERB), after the runtime has checked
// their members. Any other verb needs a command:VERB handler in the policy:
// without one it is refused before the policy or the inbox sees it, and one
// that came over the bus is counted as a dropped payload (unknown_command).
func runtimeVerbs() []string {
	return []string{"confirm", "drill", "drill_end", "mode", "reassert", "reject"}
}

func policyVerbs() []string { return []string{"failback", "takeover", "takeover_all"} }

// electionVerbs are the commands of a site that elects its coordinator,
// which the instance carries out (runtime/instance).
func electionVerbs() []string {
	return []string{"candidate_admit", "candidate_remove", "leader_transfer"}
}

// checkCommand refuses, before anything is carried out or reaches the
// policy, a command that cannot be carried out as asked: a verb nobody
// handles, a member the site does not have, a standby asked to be covered
// or to cover, a failback of a member nobody covers. The error is the
// reason given to the operator.
func (c *Coordinator) checkCommand(verb string, fields map[string]any) error {
	switch {
	case slices.Contains(runtimeVerbs(), verb):
		return nil // checked where they are carried out
	case !c.policyHandles(events.CommandEvent(verb)):
		if slices.Contains(policyVerbs(), verb) {
			return fmt.Errorf("%s: the policy has no command:%s handler, so nothing would carry it out", verb, verb)
		}
		return fmt.Errorf("%w %q: the known commands are %s", bus.ErrUnknownCommand, verb, strings.Join(c.knownVerbs(), ", "))
	}
	switch verb {
	case "takeover":
		m, err := c.memberField(verb, fields, "member")
		if err != nil {
			return err
		}
		s, _ := fields["standby"].(string)
		if s == m.ID {
			return fmt.Errorf("takeover: %s cannot take over itself", m.ID)
		}
		if m.Standby {
			return fmt.Errorf("takeover: %s is a standby: a standby covers others and is never covered itself", m.ID)
		}
		if v := fields["standby"]; v != nil && v != "" { // none named: the policy picks
			if _, err := c.standbyField(verb, fields); err != nil {
				return err
			}
		}
	case "failback":
		m, err := c.memberField(verb, fields, "member")
		if err != nil {
			return err
		}
		if m.Standby {
			return fmt.Errorf("failback: %s is a standby: it is never covered, so it has nothing to get back", m.ID)
		}
		if c.takeover == nil {
			return fmt.Errorf("failback: this instance does not coordinate")
		}
		cv, ok := c.takeover.Covered(m.ID)
		switch {
		case !ok:
			return fmt.Errorf("failback: %s is not covered by any standby: there is nothing to give back", m.ID)
		case cv.Phase == takeover.PhaseStarting:
			return fmt.Errorf("failback: the takeover of %s by %s has not finished yet", m.ID, cv.Standby)
		case m.State != "alive" && m.State != "suspect" && (cv.Phase == takeover.PhaseCovering || cv.Phase == takeover.PhaseCopying):
			return fmt.Errorf("failback: %s is %s: it can take its duties back once it is alive", m.ID, m.State)
		}
	case "takeover_all":
		if _, err := c.standbyField(verb, fields); err != nil {
			return err
		}
	}
	return nil
}

// policyHandles reports whether the running policy has a handler for event.
func (c *Coordinator) policyHandles(event string) bool {
	if c.policy == nil {
		return false
	}
	for _, h := range c.policy.Handlers() {
		if h.Event == event && h.Count > 0 {
			return true
		}
	}
	return false
}

// knownVerbs are the commands the runtime takes now: its own and those the
// running policy handles.
func (c *Coordinator) knownVerbs() []string {
	verbs := runtimeVerbs()
	if c.opts.Term > 0 {
		// An elected coordinator's instance takes these before the
		// coordinator sees a command.
		verbs = append(verbs, electionVerbs()...)
	}
	if c.policy != nil {
		for _, h := range c.policy.Handlers() {
			if v, ok := strings.CutPrefix(h.Event, events.CommandPrefix); ok && h.Count > 0 && !slices.Contains(verbs, v) {
				verbs = append(verbs, v)
			}
		}
	}
	slices.Sort(verbs)
	return verbs
}

// memberField is the member a command's field names, as the takeover
// bookkeeping sees it.
func (c *Coordinator) memberField(verb string, fields map[string]any, key string) (takeover.Member, error) {
	v, present := fields[key]
	if !present || v == nil || v == "" {
		return takeover.Member{}, fmt.Errorf("%s: which member? (%s)", verb, key)
	}
	id, ok := v.(string)
	if !ok {
		return takeover.Member{}, fmt.Errorf("%s: %s %v: want a member id", verb, key, v)
	}
	m, ok := (siteView{c}).Member(id)
	if !ok {
		return takeover.Member{}, fmt.Errorf("%s: no member %q (members: %s)", verb, id, strings.Join(c.site.MemberIDs(), ", "))
	}
	return m, nil
}

// standbyField is the standby a command's standby field names.
func (c *Coordinator) standbyField(verb string, fields map[string]any) (takeover.Member, error) {
	if v, present := fields["standby"]; !present || v == nil || v == "" {
		return takeover.Member{}, fmt.Errorf("%s: which standby? (standby)", verb)
	}
	s, err := c.memberField(verb, fields, "standby")
	if err != nil {
		return s, err
	}
	if !s.Standby {
		return s, fmt.Errorf("%s: %s is not a standby (standbys: %s)", verb, s.ID, c.standbyIDs())
	}
	return s, nil
}

func (c *Coordinator) standbyIDs() string {
	var ids []string
	for _, m := range c.site.Members {
		if m.Standby {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}
