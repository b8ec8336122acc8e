package policy

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"

	"understudy/events"
	"understudy/suggest"
)

// Problem is something Lint found, at file:line.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// Lint reads the .lua files of a policy's folder and reports uses of the
// understudy module that do not exist (us.takeovr, us.log.inf): names the
// editor definitions would flag, found before the policy runs; and handlers
// for events that do not exist (us.on("member_lsot", …)) or that handlers
// never receive (a record such as action_started). It sees the module
// through any local bound to require "understudy".
func Lint(dir string) ([]Problem, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.lua"))
	if err != nil {
		return nil, err
	}
	sub, _ := filepath.Glob(filepath.Join(dir, "*", "*.lua"))
	files = append(files, sub...)
	known := map[string]bool{}
	for _, f := range API() {
		known[f.Name] = true
	}
	for _, f := range []string{"site", "self", "settings", "log"} { // the module's values that are not functions
		known[f] = true
	}
	var out []Problem
	for _, file := range files {
		src, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		chunk, err := parse.Parse(src, file)
		src.Close()
		if err != nil {
			continue // the loader reports syntax errors, with their line
		}
		names := map[string]bool{}
		walk(reflect.ValueOf(chunk), func(n any) {
			if s, ok := n.(*ast.LocalAssignStmt); ok {
				for i, e := range s.Exprs {
					if isRequireUnderstudy(e) && i < len(s.Names) {
						names[s.Names[i]] = true
					}
				}
			}
		})
		walk(reflect.ValueOf(chunk), func(n any) {
			if call, ok := n.(*ast.FuncCallExpr); ok {
				if p, found := lintOn(call, names); found {
					p.File = file
					out = append(out, p)
				}
				return
			}
			get, ok := n.(*ast.AttrGetExpr)
			if !ok {
				return
			}
			name, line := moduleName(get, names)
			if name == "" || known[name] {
				return
			}
			msg := fmt.Sprintf("us.%s is not part of the understudy module", name)
			if near := suggest.Nearest(name, slices.Sorted(maps.Keys(known))); near != "" {
				msg += fmt.Sprintf(" (did you mean us.%s?)", near)
			}
			out = append(out, Problem{File: file, Line: line, Msg: msg})
		})
	}
	slices.SortFunc(out, func(a, b Problem) int {
		if a.File != b.File {
			return strings.Compare(a.File, b.File)
		}
		return a.Line - b.Line
	})
	return out, nil
}

// lintOn checks the event name of a call us.on("name", …) given as a
// string: it must be an event handlers receive (events.Known, and not a
// record only). found reports a problem (its File left to the caller).
func lintOn(call *ast.FuncCallExpr, names map[string]bool) (p Problem, found bool) {
	get, ok := call.Func.(*ast.AttrGetExpr)
	if !ok || len(call.Args) == 0 {
		return Problem{}, false
	}
	if name, _ := moduleName(get, names); name != "on" {
		return Problem{}, false
	}
	arg, ok := call.Args[0].(*ast.StringExpr)
	if !ok {
		return Problem{}, false
	}
	event := arg.Value
	e, known := events.Lookup(event)
	switch {
	case event == events.CatchAll || (known && e.Policy):
		return Problem{}, false
	case known:
		return Problem{Line: arg.Line(), Msg: fmt.Sprintf("us.on(%q): %s is a record, not an event handlers receive: this handler never runs", event, event)}, true
	}
	msg := fmt.Sprintf("us.on(%q): no event is called %s", event, event)
	if near := events.Nearest(event, events.Handled); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", near)
	}
	return Problem{Line: arg.Line(), Msg: msg}, true
}

func isRequireUnderstudy(e ast.Expr) bool {
	call, ok := e.(*ast.FuncCallExpr)
	if !ok || len(call.Args) != 1 {
		return false
	}
	fn, ok := call.Func.(*ast.IdentExpr)
	arg, isString := call.Args[0].(*ast.StringExpr)
	return ok && fn.Value == "require" && isString && arg.Value == "understudy"
}

// moduleName is "name" for us.name and "log.info" for us.log.info, where us
// is one of names; "" for anything else.
func moduleName(get *ast.AttrGetExpr, names map[string]bool) (string, int) {
	key, ok := get.Key.(*ast.StringExpr)
	if !ok {
		return "", 0
	}
	switch obj := get.Object.(type) {
	case *ast.IdentExpr:
		if names[obj.Value] {
			return key.Value, get.Line()
		}
	case *ast.AttrGetExpr:
		inner, ok := obj.Key.(*ast.StringExpr)
		if id, isIdent := obj.Object.(*ast.IdentExpr); ok && isIdent && names[id.Value] && inner.Value == "log" {
			return "log." + key.Value, get.Line()
		}
	}
	return "", 0
}

// walk calls visit for every AST node reachable from v.
func walk(v reflect.Value, visit func(any)) {
	switch v.Kind() {
	case reflect.Interface:
		if !v.IsNil() {
			walk(v.Elem(), visit)
		}
	case reflect.Pointer:
		if v.IsNil() || v.Elem().Kind() != reflect.Struct {
			return
		}
		visit(v.Interface())
		walk(v.Elem(), visit)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walk(v.Field(i), visit)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			walk(v.Index(i), visit)
		}
	}
}

// Globals reads the .lua files of a policy's folder, as Lint does, and
// reports each global variable a function assigns (a handler, a timer's
// function): its value lives in the Lua state, which a reload, a restart or
// a newly elected coordinator starts afresh, so what it remembers is lost
// then. A global assigned only at the top of a file is set again at every
// load and is not reported. Names declared local anywhere in the file are
// taken as locals (the check does not follow scopes).
func Globals(dir string) ([]Problem, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.lua"))
	if err != nil {
		return nil, err
	}
	sub, _ := filepath.Glob(filepath.Join(dir, "*", "*.lua"))
	var out []Problem
	for _, file := range append(files, sub...) {
		src, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		chunk, err := parse.Parse(src, file)
		src.Close()
		if err != nil {
			continue // the loader reports syntax errors
		}
		locals := map[string]bool{}
		walk(reflect.ValueOf(chunk), func(n any) {
			switch s := n.(type) {
			case *ast.LocalAssignStmt:
				for _, name := range s.Names {
					locals[name] = true
				}
			case *ast.ParList:
				for _, name := range s.Names {
					locals[name] = true
				}
			case *ast.NumberForStmt:
				locals[s.Name] = true
			case *ast.GenericForStmt:
				for _, name := range s.Names {
					locals[name] = true
				}
			}
		})
		reported := map[string]bool{}
		walk(reflect.ValueOf(chunk), func(n any) {
			fn, ok := n.(*ast.FunctionExpr)
			if !ok {
				return
			}
			walk(reflect.ValueOf(fn.Stmts), func(n any) {
				as, ok := n.(*ast.AssignStmt)
				if !ok {
					return
				}
				for _, lhs := range as.Lhs {
					id, ok := lhs.(*ast.IdentExpr)
					if !ok || locals[id.Value] || reported[id.Value] {
						continue
					}
					reported[id.Value] = true
					out = append(out, Problem{File: file, Line: id.Line(), Msg: fmt.Sprintf("the global %s is assigned in a function: it lives in the Lua state, which a reload, a restart or a newly elected coordinator starts afresh; keep what must be remembered with us.state.set(%q, value) (a local of the file, or a table changed in place, starts afresh just the same); declare it local only if it need not outlive one call", id.Value, id.Value)})
				}
			})
		})
	}
	slices.SortFunc(out, func(a, b Problem) int {
		if a.File != b.File {
			return strings.Compare(a.File, b.File)
		}
		return a.Line - b.Line
	})
	return out, nil
}
