// Package hooks is the old import path of drivers/hooks, where the duty
// hooks now live (the exec driver runs its programs with them, and drivers
// import nothing of runtime/). Only runtime/instance still imports this path;
// it goes when that file imports understudy/drivers/hooks.
package hooks

import "understudy/drivers/hooks"

// Step and Write are drivers/hooks' types.
type (
	Step  = hooks.Step
	Write = hooks.Write
)
