package policy

import (
	"fmt"
	"strings"

	"understudy/events"
)

// Class is a table type the API hands to Lua (a member, a driver, an
// event…), for the editor definitions. Its fields and methods are checked
// against the tables the code really builds (defs_test.go), so they cannot
// drift.
type Class struct {
	Name    string
	Doc     string
	Fields  []ClassField
	Methods []Function // Params and Returns as in API; called with a colon
}

// ClassField is one field of a Class.
type ClassField struct {
	Name, Type, Doc string
}

// Classes returns the table types of the API.
func Classes() []Class {
	return []Class{
		{Name: "Event", Doc: "What a handler receives: the event's name, its time, the member it is about, and its own fields (see the README's events table).", Fields: []ClassField{
			{"name", "EventName|string", "the event's name"},
			{"at", "number", "when, as Unix seconds"},
			{"member", "Member?", "the member it is about, as it is now"},
			{"[string]", "any", "the event's other fields"},
		}},
		{Name: "Member", Doc: "A member of the site as it is now.", Fields: []ClassField{
			{"id", "string", ""},
			{"state", `"alive"|"suspect"|"lost"|"closed"|"broken"|"unknown"`, ""},
			{"since", "number?", "when it entered this state (Unix seconds)"},
			{"reason", "string", "why it is in this state"},
			{"roles", "string[]", ""},
			{"usage", "string[]", "its usage names (1:1 mirrors)"},
			{"priority", "number", "queue order when standbys are short"},
			{"standby", "boolean", ""},
			{"self", "boolean", "it is the instance running this policy"},
			{"duties", "Duties", ""},
			{"pool", "string", "a standby's pool, or the pool that protects the member"},
			{"capacity", "number", "how many members a standby covers at once"},
			{"disk_layout", "string", ""},
			{"capabilities", "string[]", ""},
			{"requires", "string[]", ""},
			{"failover", "table<string, any>", "its failover options (durations in seconds)"},
			{"covered_by", "string?", "the standby covering it"},
		}, Methods: []Function{
			{Name: "has_role", Params: "name: string", Returns: "boolean"},
			{Name: "has_usage", Params: "name: string", Returns: "boolean"},
		}},
		{Name: "Duties", Doc: "What a member does that another may take over.", Fields: []ClassField{
			{"switcher", "string?", "the driver its signals go through"},
			{"outputs", "integer[]", "switcher outputs it feeds"},
			{"inputs", "integer[]", "switcher inputs its signals arrive on"},
			{"usage", "table<string, {outputs: integer[], inputs: integer[]}>", ""},
			{"clients", "string[]", ""},
			{"streams", "{name: string, address: string}[]", ""},
			{"material", "string[]", "folders of recorded material"},
			{"config_file", "string?", ""},
		}},
		{Name: "Router", Doc: "A driver from us.driver(name): every driver has status and connected; switchers add route, keep, routing, size and labels; control drivers add send.", Fields: []ClassField{
			{"name", "string", ""},
		}, Methods: []Function{
			{Name: "status", Returns: "DriverStatus"},
			{Name: "connected", Returns: "boolean"},
			{Name: "route", Params: "output: integer, input: integer", Returns: "string", Doc: "Routes input to output (ports from 1); returns the action id. The route becomes the desired routing of that output, which the runtime puts back when the switcher shows another input (see routing_differs)."},
			{Name: "keep", Params: "output: integer", Returns: "integer", Doc: "Accepts the input the switcher shows on output as the desired route: the runtime does not put its own back. In a routing_differs handler it replaces the runtime's default (re-assert a duty output). Returns the input kept; raises an error when the switcher's route there is not known."},
			{Name: "routing", Returns: "integer[]", Doc: "The input on each output, as last read from the device."},
			{Name: "size", Returns: "integer, integer", Doc: "Inputs and outputs."},
			{Name: "labels", Returns: "{inputs: string[], outputs: string[]}"},
			{Name: "send", Params: "command: string|table", Returns: "string", Doc: "A control action: a command name or {command = …, args…}; returns the action id."},
		}},
		{Name: "DriverStatus", Fields: []ClassField{
			{"connected", "boolean", ""},
			{"address", "string", ""},
			{"since", "number?", ""},
			{"error", "string?", "the last error, in the device's words"},
		}},
		{Name: "Timer", Doc: "A timer from us.after, us.every or us.cron.", Fields: []ClassField{
			{"id", "integer|string", ""},
		}, Methods: []Function{
			{Name: "cancel", Returns: "boolean"},
			{Name: "remaining", Returns: "number?", Doc: "Seconds until it fires."},
		}},
		{Name: "TimerInfo", Fields: []ClassField{
			{"name", "string", ""},
			{"args", "table", ""},
			{"remaining", "number", "seconds"},
		}},
		{Name: "Coverage", Fields: []ClassField{
			{"member", "string", ""},
			{"standby", "string", ""},
			{"since", "number", ""},
			{"phase", `"starting"|"covering"|"resuming"|"releasing"|"copying"`, ""},
			{"grace_remaining", "number?", "seconds"},
		}},
		{Name: "Queued", Fields: []ClassField{
			{"member", "string", ""},
			{"standby", "string", "the standby asked for, or empty"},
			{"pool", "string", ""},
			{"priority", "number", ""},
			{"since", "number", ""},
			{"position", "integer", ""},
		}},
		{Name: "Pool", Fields: []ClassField{
			{"name", "string", ""},
		}, Methods: []Function{
			{Name: "pick", Params: "opts: {member: Member|string, usage?: string|string[], exclude?: (Member|string)[]}", Returns: "Member?"},
			{Name: "members", Returns: "Member[]"},
			{Name: "free", Returns: "Member[]"},
		}},
		{Name: "Alarm", Doc: "A raised alarm (us.alarms).", Fields: []ClassField{
			{"key", "string", "kind and subject"},
			{"kind", "string", ""},
			{"severity", `"alarm"|"warning"`, ""},
			{"member", "string?", "the member it is about"},
			{"message", "string", ""},
			{"since", "number", "when it was raised (Unix seconds)"},
			{"count", "integer", "how often it was raised while active"},
		}},
		{Name: "Proposal", Fields: []ClassField{
			{"id", "string", ""},
			{"member", "string", ""},
			{"standby", "string", ""},
			{"created", "number", ""},
			{"act_in", "number?", "seconds until it is carried out by itself"},
		}},
	}
}

// Definitions returns the editor definitions of the `understudy` module: a
// LuaLS meta file (---@meta) generated from API and Classes.
func Definitions() string {
	var b strings.Builder
	b.WriteString("---@meta understudy\n")
	b.WriteString("-- Editor definitions of understudy's Lua API (LuaLS annotations).\n")
	b.WriteString("-- Generated by `understudy defs`; do not edit.\n\n")
	writeEventNames(&b)
	for _, c := range Classes() {
		if c.Doc != "" {
			fmt.Fprintf(&b, "---%s\n", c.Doc)
		}
		fmt.Fprintf(&b, "---@class %s\n", c.Name)
		for _, f := range c.Fields {
			doc := ""
			if f.Doc != "" {
				doc = " " + f.Doc
			}
			fmt.Fprintf(&b, "---@field %s %s%s\n", f.Name, f.Type, doc)
		}
		if len(c.Methods) == 0 {
			b.WriteString("\n")
			continue
		}
		local := "local " + strings.ToLower(c.Name[:1]) + c.Name[1:]
		fmt.Fprintf(&b, "%s = {}\n\n", local)
		for _, m := range c.Methods {
			writeFunction(&b, strings.TrimPrefix(local, "local ")+":"+m.Name, m)
		}
	}
	b.WriteString("---The understudy module: `local us = require \"understudy\"`.\n")
	b.WriteString("---@class understudy\n")
	b.WriteString("---@field site string the site's name\n")
	b.WriteString("---@field self string this instance's member id\n")
	b.WriteString("---@field settings table<string, any> policy.settings of site.yaml\n")
	b.WriteString("local us = {}\n\n")
	subs := map[string]bool{}
	for _, f := range API() {
		if prefix, _, ok := strings.Cut(f.Name, "."); ok && !subs[prefix] {
			subs[prefix] = true
			fmt.Fprintf(&b, "us.%s = {}\n\n", prefix)
		}
		writeFunction(&b, "us."+f.Name, f)
	}
	b.WriteString("return us\n")
	return b.String()
}

// writeEventNames writes the alias EventName: the exact names of the
// events handlers receive, from the events registry, each with when it
// happens; the patterns are in its doc (us.on takes EventName|string).
func writeEventNames(b *strings.Builder) {
	var patterns []string
	for _, e := range events.List() {
		if e.Policy && e.Prefix() != "" {
			patterns = append(patterns, fmt.Sprintf("%q", e.Name))
		}
	}
	fmt.Fprintf(b, "---The name of an event a handler receives (us.on); besides these, the patterns %s, and %q for every event.\n", strings.Join(patterns, ", "), events.CatchAll)
	b.WriteString("---@alias EventName\n")
	for _, e := range events.List() {
		if e.Policy && e.Prefix() == "" {
			fmt.Fprintf(b, "---| %q # %s\n", e.Name, plain(e.When))
		}
	}
	fmt.Fprintf(b, "---| %q # every event\n\n", events.CatchAll)
}

// plain is Markdown text with its links ([text](target)) reduced to their
// text: the editor shows it where the README's anchors lead nowhere.
func plain(s string) string {
	var b strings.Builder
	for {
		open := strings.Index(s, "[")
		mid := strings.Index(s[max(open, 0):], "](")
		if open < 0 || mid < 0 {
			break
		}
		mid += open
		end := strings.Index(s[mid:], ")")
		if end < 0 {
			break
		}
		b.WriteString(s[:open] + s[open+1:mid])
		s = s[mid+end+1:]
	}
	return b.String() + s
}

// writeFunction writes one annotated function stub.
func writeFunction(b *strings.Builder, name string, f Function) {
	if f.Doc != "" {
		for _, line := range strings.Split(f.Doc, "\n") {
			fmt.Fprintf(b, "---%s\n", line)
		}
	}
	var names []string
	for _, p := range splitTop(f.Params) {
		pname, ptype, _ := strings.Cut(p, ":")
		pname, ptype = strings.TrimSpace(pname), strings.TrimSpace(ptype)
		fmt.Fprintf(b, "---@param %s %s\n", pname, ptype)
		names = append(names, strings.TrimSuffix(pname, "?"))
	}
	for _, r := range splitTop(f.Returns) {
		fmt.Fprintf(b, "---@return %s\n", r)
	}
	fmt.Fprintf(b, "function %s(%s) end\n\n", name, strings.Join(names, ", "))
}

// splitTop splits a comma-separated list at the commas outside brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '{', '(', '[', '<':
			depth++
		case '}', ')', ']', '>':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}
