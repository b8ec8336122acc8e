package coordinator

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"understudy/runtime/engine"
	"understudy/runtime/store"

	"understudy/drivers"
	"understudy/runtime/clock"
	"understudy/runtime/policy"
	"understudy/runtime/takeover"
)

// policyEnv is the engine as the policy sees it.
type policyEnv struct{ c *Coordinator }

var _ policy.Env = policyEnv{}

func (v policyEnv) Clock() clock.Clock       { return v.c.clock }
func (v policyEnv) Post(f func())            { v.c.Post(func() { f(); v.c.checkPolicy() }) }
func (v policyEnv) Location() *time.Location { return v.c.site.Location }

func (v policyEnv) Member(id string) (policy.Member, bool) {
	if !v.c.table.Known(id) {
		return policy.Member{}, false
	}
	return v.c.policyMember(id), true
}

func (v policyEnv) Members() []policy.Member {
	all := v.c.table.All()
	out := make([]policy.Member, len(all))
	for i, m := range all {
		out[i] = v.c.policyMember(m.ID)
	}
	return out
}

func (v policyEnv) Driver(name string) (drivers.Driver, bool) {
	d, ok := v.c.opts.Drivers[name]
	return d, ok
}

func (v policyEnv) DriverNames() []string { return slices.Sorted(maps.Keys(v.c.opts.Drivers)) }

func (v policyEnv) Route(driver string, output, input int, cause string) (string, error) {
	return v.c.actions.route(driver, output, input, cause)
}

func (v policyEnv) KeepRoute(driver string, output int, cause string) (int, error) {
	return v.c.keepRoute(driver, output, cause)
}

func (v policyEnv) Publish(topic string, payload []byte, retained bool) error {
	if v.c.opts.Publisher == nil {
		return errors.New("no bus")
	}
	return v.c.opts.Publisher.Publish(topic, 1, retained, payload)
}

func (v policyEnv) SetTimer(name string, args map[string]any, due time.Time, where string) (string, error) {
	return v.c.timers.set(name, args, due, where)
}

func (v policyEnv) CancelTimers(name string, match map[string]any) int {
	return v.c.timers.cancel(name, match)
}

func (v policyEnv) CancelTimer(id string) bool { return v.c.timers.remove(id) }

func (v policyEnv) Timers(name string) []policy.TimerInfo { return v.c.timers.list(name) }

func (v policyEnv) Takeovers() policy.Takeovers {
	if v.c.takeover == nil {
		return nil
	}
	return v.c.takeover
}

func (v policyEnv) RunHook(target, name string, args map[string]any, cause string) (string, error) {
	return v.c.runHook(target, name, args, cause)
}

func (v policyEnv) Send(driver string, args map[string]any, cause string) (string, error) {
	return v.c.actions.controlAction(driver, args, cause)
}

func (v policyEnv) CopyMissing(r takeover.CopyRequest) (string, error) {
	return v.c.copyMissing(r)
}

func (v policyEnv) RaiseAlarm(kind, member, message, severity string, fields map[string]any) (string, error) {
	if member != "" && !v.c.table.Known(member) {
		return "", fmt.Errorf("no member %q", member)
	}
	key := policyAlarmKey(kind, member)
	v.c.raiseAlarm(engine.Alarm{Key: key, Kind: kind, Severity: severity, Member: member, Message: message, Fields: fields})
	return key, nil
}

func (v policyEnv) ClearAlarm(kind, member string) bool {
	key := policyAlarmKey(kind, member)
	if !v.c.alarmRaised(key) {
		return false
	}
	v.c.clearAlarm(key, "cleared by the policy")
	return true
}

func (v policyEnv) Alarms() []policy.AlarmInfo {
	var out []policy.AlarmInfo
	for _, a := range v.c.alarmList() {
		out = append(out, policy.AlarmInfo{Key: a.Key, Kind: a.Kind, Severity: a.Severity, Member: a.Member, Message: a.Message,
			Since: float64(a.Since.UnixMilli()) / 1000, Count: a.Count})
	}
	return out
}

// bucketPolicyState holds us.state.
const bucketPolicyState = "policy_state"

func (v policyEnv) StateGet(key string) ([]byte, bool, error) {
	var raw []byte
	err := v.c.store.View(func(tx *store.Tx) error {
		raw = tx.GetRaw(bucketPolicyState, key)
		return nil
	})
	return raw, raw != nil, err
}

func (v policyEnv) StateSet(key string, value []byte) error {
	return v.c.store.Update(func(tx *store.Tx) error {
		if value == nil {
			return tx.Delete(bucketPolicyState, key)
		}
		n := 0
		tx.Each(bucketPolicyState, func(string, []byte) error { n++; return nil })
		if tx.GetRaw(bucketPolicyState, key) == nil && n >= policy.MaxStateKeys {
			return fmt.Errorf("%d keys stored already, the most us.state keeps: remove some with us.state.set(key, nil)", n)
		}
		return tx.PutRaw(bucketPolicyState, key, value)
	})
}

func (v policyEnv) StateKeys() []string {
	var keys []string
	v.c.store.View(func(tx *store.Tx) error {
		return tx.Each(bucketPolicyState, func(k string, _ []byte) error {
			keys = append(keys, k)
			return nil
		})
	})
	return keys
}
