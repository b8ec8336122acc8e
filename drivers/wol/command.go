package wol

// This file is the first part of command.go in the other controller
// packages of drivers/ (httpreq, osc, mqttpub, execprog), which also have
// templates; wol has none.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// parseSend reads the args of driver:send: a command name and, optionally, a
// table of values for the command's templates.
//
//	driver:send("power_on")                            -- {command = "power_on"}
//	driver:send{command = "input", args = {n = 3}}
func parseSend(args map[string]any) (command string, data map[string]any, err error) {
	for k := range args {
		if k != "command" && k != "args" {
			return "", nil, fmt.Errorf("unknown field %q: send takes a command name and args, like {command = \"input\", args = {n = 3}}", k)
		}
	}
	c, ok := args["command"]
	if !ok || c == nil {
		return "", nil, errors.New("no command: send a command name, like send(\"power_on\") or send{command = \"input\", args = {n = 3}}")
	}
	command, ok = c.(string)
	if !ok || command == "" {
		return "", nil, fmt.Errorf("command must be a command name, not %v", describeValue(c))
	}
	data = map[string]any{}
	switch a := args["args"].(type) {
	case nil:
	case map[string]any:
		data = normalize(a).(map[string]any)
	case []any:
		if len(a) > 0 { // an empty Lua table converts as a list or a table
			return "", nil, fmt.Errorf("args must be a table of named values, like {n = 3}, not a list")
		}
	default:
		return "", nil, fmt.Errorf("args must be a table of named values, like {n = 3}, not %v", describeValue(a))
	}
	return command, data, nil
}

// normalize returns v with every whole float64 made an int64, in nested
// tables and lists too, so that a template prints 1000000 and not 1e+06 for
// args that went through JSON (an action resumed after a restart).
func normalize(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return normalize(f)
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

// unknownCommand is the error for a command name that is not configured.
func unknownCommand(what, command string, known []string) error {
	slices.Sort(known)
	if len(known) == 0 {
		return fmt.Errorf("unknown %s %q: none is configured", what, command)
	}
	return fmt.Errorf("unknown %s %q (configured: %s)", what, command, strings.Join(known, ", "))
}

func describeValue(v any) string {
	switch v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case map[string]any:
		return "a table"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%v (%T)", v, v)
}
