package config

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"understudy/suggest"
)

// Commission is understudy check's commissioning review of a valid site:
// what will not work as meant although every value is well formed. Members
// that no standby can cover (no standby in their pool, none with their disk
// layout, usage names or required capabilities), pools whose standbys
// cannot absorb the worst case they are built for (pools.NAME.absorb) are
// errors; timings that work against each other, and two coordinator
// candidates without a third (no election: the first coordinates alone),
// are warnings. How the members reach the bus and each other is reviewed
// too (commissionReach).
func (s *Site) Commission() Errors {
	var errs Errors
	add := func(warning bool, path, format string, args ...any) {
		e := &Error{File: s.File, Msg: fmt.Sprintf(format, args...), Warning: warning}
		e.Line, e.Col = s.position(path)
		errs = append(errs, e)
	}
	standbys := map[string][]*Member{} // by pool ("" for standbys without one)
	anyStandby := false
	for i := range s.Members {
		if m := &s.Members[i]; m.Standby {
			standbys[m.Pool] = append(standbys[m.Pool], m)
			anyStandby = true
		}
	}
	ids := func(ms []*Member) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return strings.Join(out, ", ")
	}
	for i, m := range s.Members {
		p := fmt.Sprintf("$.members[%d]", i)
		if m.Standby || m.Witness || m.Probe != nil || !m.Settings.Enabled || !anyStandby {
			continue
		}
		pool := standbys[m.Pool]
		poolName := "without a pool"
		if m.Pool != "" {
			poolName = "in pool " + m.Pool
		}
		if len(pool) == 0 {
			if m.Pool != "" {
				add(false, p+".pool", "no standby is %s, so nothing can cover %s (pools with standbys: %s)", poolName, m.ID, s.standbyPools(standbys))
			}
			continue
		}
		match := s.Pools[m.Pool].Match
		matched := m.Traits()
		matched.Requires = nil // said below, each with its own message
		fits := slices.DeleteFunc(slices.Clone(pool), func(sb *Member) bool { return Misfit(sb.Traits(), matched, match) != "" })
		if len(fits) == 0 {
			var offers []string
			for _, sb := range pool {
				offers = append(offers, fmt.Sprintf("%s (disk_layout %q, usage %v)", sb.ID, sb.DiskLayout, sb.Usage))
			}
			add(false, p, "no standby %s matches %s (disk_layout %q, usage %v) as pools.%s.match %v asks: %s", poolName, m.ID, m.DiskLayout, m.Usage, m.Pool, match, strings.Join(offers, ", "))
			continue
		}
		for _, req := range m.Requires {
			if !slices.ContainsFunc(fits, func(sb *Member) bool { return slices.Contains(sb.Capabilities, req) }) {
				add(false, p+".requires", "%s requires %q, which no standby %s offers (%s)", m.ID, req, poolName, ids(fits))
			}
		}
		st := m.Settings
		if st.AutoFailback && st.FailbackDelay < m.LostAfter.D() {
			add(true, p, "%s's failback_delay %v is shorter than detecting a loss (lost_after %v): a flapping member gets its duties back before it can be seen lost again", m.ID, st.FailbackDelay, m.LostAfter)
		}
		if st.Grace > 0 && st.Delay > st.Grace {
			add(true, p, "%s's failover delay %v is longer than its grace period %v", m.ID, st.Delay, st.Grace)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Pools)) {
		pool := s.Pools[name]
		if pool.Absorb <= 0 {
			continue
		}
		capacity := 0
		for _, sb := range standbys[name] {
			capacity += max(sb.Capacity, 1)
		}
		if capacity < pool.Absorb {
			add(false, "$.pools."+name+".absorb", "pool %s is built to absorb %d failures at once, but its standbys cover %d (%s)", name, pool.Absorb, capacity, orNone(ids(standbys[name])))
		}
	}
	if list := s.candidates(); len(list) == 2 {
		add(true, "$.coordinator", "coordinator: two candidates without a third would lose every decision when either machine dies (a raft group of two needs both); %s coordinates alone as before. Add a witness (a member with witness: true on any small box) as a third candidate to elect the coordinator", list[0])
	}
	if s.Elected() && s.Bus.URL == "" && s.CandidateBrokers() == nil {
		add(true, "$.coordinator", "coordinator: the candidates elect the coordinator, but the broker is embedded in %s (bus.broker_on) alone: while that machine is down no instance hears another, and no coordinator, elected or not, can act. Give the site a bus that outlives any one machine: a broker on every candidate (broker: host:port on each; every instance connects to all), bus.url to mosquitto on a machine of its own (the witness's box will do), or a clustered MQTT broker", s.Bus.BrokerOn)
	}
	s.commissionReach(add)
	s.commissionReplies(add)
	s.commissionBusAccount(add)
	return errs
}

func (s *Site) standbyPools(standbys map[string][]*Member) string {
	var names []string
	for _, name := range slices.Sorted(maps.Keys(standbys)) {
		if name == "" {
			name = "(none)"
		}
		names = append(names, name)
	}
	return orNone(strings.Join(names, ", "))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

var unknownFieldRe = regexp.MustCompile(`unknown field "([^"]+)"`)

// didYouMean adds the closest known key to an unknown-field message.
func didYouMean(msg string, vocabulary any) string {
	m := unknownFieldRe.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	if vocabulary == nil {
		vocabulary = &Site{}
	}
	best := suggest.Nearest(strings.ToLower(m[1]), yamlKeys(reflect.TypeOf(vocabulary), map[reflect.Type]bool{}))
	if best == "" {
		return msg
	}
	return fmt.Sprintf("%s (did you mean %q?)", msg, best)
}

// yamlKeys lists the yaml keys of t and of the types it contains.
func yamlKeys(t reflect.Type, seen map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return nil
	}
	seen[t] = true
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name != "" {
			out = append(out, name)
		}
		if name != "" || strings.Contains(opts, "inline") {
			out = append(out, yamlKeys(f.Type, seen)...)
		}
	}
	return out
}
