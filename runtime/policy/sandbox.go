package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// MaxString is the largest string a library function (string.rep, gsub,
// format, table.concat) may build.
const MaxString = 1 << 20

// removedGlobals are base functions a policy must not have: they read files,
// compile code at run time, or reach under the sandbox.
var removedGlobals = []string{"dofile", "loadfile", "load", "loadstring", "module", "require", "collectgarbage", "getfenv", "setfenv", "newproxy", "_printregs"}

var moduleNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// newSandbox returns a Lua state with only base, table, string and math open
// (in that order), without the functions in removedGlobals, with a bounded
// string.rep, a require that reaches only the understudy module and the
// policy's folder, and print going to the log.
func newSandbox(p *Policy) *lua.LState {
	L := lua.NewState(lua.Options{
		SkipOpenLibs:    true,
		CallStackSize:   200,
		RegistrySize:    1024 * 16,
		RegistryMaxSize: 1024 * 1024,
	})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	for _, name := range removedGlobals {
		L.SetGlobal(name, lua.LNil)
	}
	installBoundedLibs(L)
	L.SetGlobal("require", L.NewFunction(p.require))
	L.SetGlobal("print", L.NewFunction(p.print))
	return L
}

// require loads the understudy API, or a Lua file from the policy's folder
// (require "lib.util" reads lib/util.lua there). Nothing else.
func (p *Policy) require(L *lua.LState) int {
	name := L.CheckString(1)
	if name == "understudy" {
		L.Push(p.module)
		return 1
	}
	if v, ok := p.loaded[name]; ok {
		L.Push(v)
		return 1
	}
	if !moduleNameRe.MatchString(name) {
		L.ArgError(1, fmt.Sprintf("%q: require loads \"understudy\" or a .lua file of the policy's folder, named like lib.util", name))
	}
	if p.loading[name] {
		L.RaiseError("require %q: it requires itself (circular require)", name)
	}
	path := filepath.Join(p.dir, strings.ReplaceAll(name, ".", string(filepath.Separator))+".lua")
	if p.isMain(path) {
		L.RaiseError("require %q: that is the policy's main file (%s), which is already running; put what it shares in another file of its folder and require that", name, p.opts.File)
	}
	fn, err := L.LoadFile(path)
	if err != nil {
		L.RaiseError("require %q: %s", name, luaErrorText(err))
	}
	p.loading[name] = true
	defer delete(p.loading, name)
	L.Push(fn)
	L.Call(0, 1)
	v := L.Get(-1)
	L.Pop(1)
	if v == lua.LNil {
		v = lua.LTrue
	}
	p.loaded[name] = v
	L.Push(v)
	return 1
}

func (p *Policy) print(L *lua.LState) int {
	parts := make([]string, L.GetTop())
	for i := range parts {
		parts[i] = L.ToStringMeta(L.Get(i + 1)).String()
	}
	p.log.Info(strings.Join(parts, "\t"), "policy", callerWhere(L))
	return 0
}

// callerWhere returns "file:line" of the Lua code calling the current Go function.
func callerWhere(L *lua.LState) string {
	return strings.TrimSuffix(L.Where(1), ":")
}

// isMain reports whether path is the policy's main file.
func (p *Policy) isMain(path string) bool {
	if mainPath(path) == p.main {
		return true
	}
	a, err1 := os.Stat(path)
	b, err2 := os.Stat(p.main)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}
