package guards

import "testing"

func TestOffFollowsTheBuildAndTheVariable(t *testing.T) {
	t.Setenv(EnvVar, "intent-log,stall-rule")
	if got := Off(StallRule); got != Enabled {
		t.Errorf("Off(%s) with %s=%q: %v in a build where switches are enabled=%v", StallRule, EnvVar, "intent-log,stall-rule", got, Enabled)
	}
	if Off(RouteRetry) {
		t.Errorf("Off(%s) although %s does not name it", RouteRetry, EnvVar)
	}
}
