package drivers_test

import (
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// module is the module path; root is the module's folder, seen from here.
const (
	module = "understudy"
	root   = ".."
)

// Drivers and the bus sit below the runtime: nothing under drivers/ or in
// discovery/bus imports a package of runtime/, directly or through another
// package of understudy, on any platform (every non-test file counts,
// whatever its build constraints). units, yamlerr, platform and suggest,
// which they share with the runtime, import nothing of understudy at all,
// nor do sitekey and guards; events imports only the first four.
func TestDriversAndTheBusImportNothingOfTheRuntime(t *testing.T) {
	var starts []string
	err := filepath.WalkDir(filepath.Join(root, "drivers"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			starts = append(starts, module+"/"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	starts = append(starts, module+"/discovery/bus")

	imports := importGraph(t)
	via := map[string]string{} // package → the package that imports it ("" for a start)
	queue := []string{}
	for _, p := range starts {
		if _, ok := imports[p]; ok {
			via[p] = ""
			queue = append(queue, p)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, q := range imports[p] {
			if _, seen := via[q]; !seen {
				via[q] = p
				queue = append(queue, q)
			}
		}
	}
	for _, must := range []string{module + "/drivers/videohub", module + "/units", module + "/discovery/bus"} {
		if _, ok := via[must]; !ok {
			t.Fatalf("%s is not reached: the walk of the imports is broken", must)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(via)) {
		if p == module+"/runtime" || strings.HasPrefix(p, module+"/runtime/") {
			chain := []string{p}
			for q := via[p]; q != ""; q = via[q] {
				chain = append(chain, q)
			}
			slices.Reverse(chain)
			t.Errorf("%s imports the runtime: %s", chain[0], strings.Join(chain, " → "))
		}
	}
	leaves := []string{module + "/units", module + "/yamlerr", module + "/platform", module + "/suggest"}
	for _, leaf := range append(slices.Clone(leaves), module+"/sitekey", module+"/guards") {
		if deps := imports[leaf]; len(deps) > 0 {
			t.Errorf("%s is a leaf but imports %v", leaf, deps)
		}
	}
	// The events registry, which drivers and discovery name their events
	// from, builds on leaves only.
	for _, dep := range imports[module+"/events"] {
		if !slices.Contains(leaves, dep) {
			t.Errorf("%s imports %s, which is not a leaf", module+"/events", dep)
		}
	}
}

// importGraph maps every package of the module to the packages of the
// module its non-test files import.
func importGraph(t *testing.T) map[string][]string {
	t.Helper()
	graph := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		pkg := module
		if rel != "." {
			pkg += "/" + filepath.ToSlash(rel)
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		deps := graph[pkg]
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if (p == module || strings.HasPrefix(p, module+"/")) && !slices.Contains(deps, p) {
				deps = append(deps, p)
			}
		}
		graph[pkg] = deps
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}
