package events

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The code names events by the registry's constants, never inline: in the
// module's non-test Go files (this package aside),
//   - no string literal is a registered name with an underscore or a colon
//     (member_lost, timer:), nor a pattern's prefix;
//   - no Record or Event is built with a literal Type, Name or Kind
//     (engine.Record{Type: "alarm"}), registered or not;
//   - no record's Type is compared with a literal (r.Type == "command").
//
// The tests that run the code do the rest: every shipped scenario with a
// handler for "*" (scripts' TestShippedScenariosRecordAndDispatchOnly-
// RegisteredEvents) and every site of the coordinator's and the scripts'
// tests (recordsAreRegistered) see only names of List, as the record or the
// policy event List says they are.
func TestTheCodeNamesEventsByTheirConstants(t *testing.T) {
	const root = ".."
	distinct := map[string]bool{TimerPrefix: true, CronPrefix: true, CommandPrefix: true}
	registered := map[string]bool{}
	for _, e := range List() {
		if e.Prefix() == "" {
			registered[e.Name] = true
			if strings.ContainsAny(e.Name, "_:") {
				distinct[e.Name] = true
			}
		}
	}
	fset := token.NewFileSet()
	files := 0
	var problems []string
	report := func(pos token.Pos, format string, args ...any) {
		p := fset.Position(pos)
		rel, _ := filepath.Rel(root, p.Filename)
		problems = append(problems, fmt.Sprintf("%s:%d: %s", filepath.ToSlash(rel), p.Line, fmt.Sprintf(format, args...)))
	}
	literal := func(e ast.Expr) (string, bool) {
		for {
			bin, ok := e.(*ast.BinaryExpr)
			if !ok || bin.Op != token.ADD {
				break
			}
			e = bin.X // "timer:" + name
		}
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(lit.Value)
		return s, err == nil
	}
	isTypeField := func(e ast.Expr) bool {
		sel, ok := e.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Type"
	}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".") || path == filepath.Join(root, "events")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				return false // struct tags: `json:"member_lost"` would be a field, not an event
			case *ast.BasicLit:
				if s, ok := literal(n); ok && distinct[s] {
					report(n.Pos(), "the event name %q inline: use its constant in understudy/events", s)
				}
			case *ast.CompositeLit:
				var typ string
				switch ty := n.Type.(type) {
				case *ast.Ident:
					typ = ty.Name
				case *ast.SelectorExpr:
					typ = ty.Sel.Name
				}
				if typ != "Record" && typ != "Event" {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					key, _ := kv.Key.(*ast.Ident)
					if key == nil || (key.Name != "Type" && key.Name != "Name" && key.Name != "Kind") {
						continue
					}
					if s, ok := literal(kv.Value); ok {
						report(kv.Pos(), "a %s with the %s %q inline: name it by a constant of understudy/events (a new one goes into List)", typ, key.Name, s)
					}
				}
			case *ast.BinaryExpr:
				if n.Op != token.EQL && n.Op != token.NEQ {
					return true
				}
				for _, pair := range [][2]ast.Expr{{n.X, n.Y}, {n.Y, n.X}} {
					if s, ok := literal(pair[1]); ok && isTypeField(pair[0]) && registered[s] {
						report(n.Pos(), "a record's Type compared with %q inline: use its constant in understudy/events", s)
					}
				}
			case *ast.SwitchStmt:
				if !isTypeField(n.Tag) {
					return true
				}
				for _, st := range n.Body.List {
					for _, e := range st.(*ast.CaseClause).List {
						if s, ok := literal(e); ok && registered[s] {
							report(e.Pos(), "a record's Type compared with %q inline: use its constant in understudy/events", s)
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d files: the walk of the module is broken", files)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
