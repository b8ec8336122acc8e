package coordinator

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"understudy/runtime/engine"

	"understudy/drivers"
	"understudy/runtime/clock"
	"understudy/runtime/policy"
	"understudy/runtime/takeover"
)

// policyEnv is the engine as the policy sees it.
type policyEnv struct{ e *Coordinator }

var _ policy.Env = policyEnv{}

func (v policyEnv) Clock() clock.Clock       { return v.e.clock }
func (v policyEnv) Post(f func())            { v.e.Post(f) }
func (v policyEnv) Location() *time.Location { return v.e.site.Location }

func (v policyEnv) Member(id string) (policy.Member, bool) {
	if !v.e.table.Known(id) {
		return policy.Member{}, false
	}
	return v.e.policyMember(id), true
}

func (v policyEnv) Members() []policy.Member {
	all := v.e.table.All()
	out := make([]policy.Member, len(all))
	for i, m := range all {
		out[i] = v.e.policyMember(m.ID)
	}
	return out
}

func (v policyEnv) Driver(name string) (drivers.Driver, bool) {
	d, ok := v.e.opts.Drivers[name]
	return d, ok
}

func (v policyEnv) DriverNames() []string { return slices.Sorted(maps.Keys(v.e.opts.Drivers)) }

func (v policyEnv) Route(driver string, output, input int, cause string) (string, error) {
	return v.e.actions.route(driver, output, input, cause)
}

func (v policyEnv) KeepRoute(driver string, output int, cause string) (int, error) {
	return v.e.keepRoute(driver, output, cause)
}

func (v policyEnv) Publish(topic string, payload []byte, retained bool) error {
	if v.e.opts.Publisher == nil {
		return errors.New("no bus")
	}
	return v.e.opts.Publisher.Publish(topic, 1, retained, payload)
}

func (v policyEnv) SetTimer(name string, args map[string]any, due time.Time, where string) (string, error) {
	return v.e.timers.set(name, args, due, where)
}

func (v policyEnv) CancelTimers(name string, match map[string]any) int {
	return v.e.timers.cancel(name, match)
}

func (v policyEnv) CancelTimer(id string) bool { return v.e.timers.remove(id) }

func (v policyEnv) Timers(name string) []policy.TimerInfo { return v.e.timers.list(name) }

func (v policyEnv) Takeovers() policy.Takeovers {
	if v.e.takeover == nil {
		return nil
	}
	return v.e.takeover
}

func (v policyEnv) RunHook(target, name string, args map[string]any, cause string) (string, error) {
	return v.e.runHook(target, name, args, cause)
}

func (v policyEnv) Send(driver string, args map[string]any, cause string) (string, error) {
	return v.e.actions.controlAction(driver, args, cause)
}

func (v policyEnv) CopyMissing(r takeover.CopyRequest) (string, error) {
	return v.e.copyMissing(r)
}

func (v policyEnv) RaiseAlarm(kind, member, message, severity string, fields map[string]any) (string, error) {
	if member != "" && !v.e.table.Known(member) {
		return "", fmt.Errorf("no member %q", member)
	}
	key := policyAlarmKey(kind, member)
	v.e.raiseAlarm(engine.Alarm{Key: key, Kind: kind, Severity: severity, Member: member, Message: message, Fields: fields})
	return key, nil
}

func (v policyEnv) ClearAlarm(kind, member string) bool {
	key := policyAlarmKey(kind, member)
	if !v.e.alarmRaised(key) {
		return false
	}
	v.e.clearAlarm(key, "cleared by the policy")
	return true
}

func (v policyEnv) Alarms() []policy.AlarmInfo {
	var out []policy.AlarmInfo
	for _, a := range v.e.alarmList() {
		out = append(out, policy.AlarmInfo{Key: a.Key, Kind: a.Kind, Severity: a.Severity, Member: a.Member, Message: a.Message,
			Since: float64(a.Since.UnixMilli()) / 1000, Count: a.Count})
	}
	return out
}
