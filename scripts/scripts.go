// Package scripts holds the policies shipped with understudy, one folder per
// scenario, each with its policy.lua and the tests that show what it does.
// They are embedded so that `understudy demo` can run them anywhere.
package scripts

import "embed"

// FS holds the shipped policies, e.g. "manager-backup/policy.lua".
//
//go:embed */*.lua
var FS embed.FS
