package policy

import (
	"fmt"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// The string and table functions that loop over their input or build large
// strings are replaced with these: each bounds what it builds by MaxString
// and, where it can loop for long, looks at the call's context.

// installBoundedLibs replaces string.find, match, gmatch, gsub, rep and
// format and table.concat in L.
func installBoundedLibs(L *lua.LState) {
	str := L.GetGlobal("string").(*lua.LTable)
	for name, fn := range map[string]lua.LGFunction{
		"find":   strFind,
		"match":  strMatch,
		"gmatch": strGmatch,
		"gfind":  strGmatch,
		"gsub":   strGsub,
		"rep":    boundedRep,
		"format": strFormat,
	} {
		str.RawSetString(name, L.NewFunction(fn))
	}
	str.RawSetString("dump", lua.LNil)
	str.RawSetString("byte", L.NewFunction(strByte))
	tab := L.GetGlobal("table").(*lua.LTable)
	tab.RawSetString("concat", L.NewFunction(tableConcat))
	L.SetGlobal("unpack", L.NewFunction(unpack))
}

// MaxResults is the most values unpack or string.byte returns at once.
const MaxResults = 8000

// valueRange is the range i..j of a function that returns one value for
// each, refused when it has more than MaxResults.
func valueRange(L *lua.LState, fn string, i, j int) int {
	if i > j {
		return 0
	}
	if n := float64(j) - float64(i) + 1; n > MaxResults {
		L.RaiseError("%s: %.0f results, more than the %d a call may return", fn, n, MaxResults)
	}
	return j - i + 1
}

func unpack(L *lua.LState) int {
	t := L.CheckTable(1)
	i := L.OptInt(2, 1)
	j := L.OptInt(3, t.Len())
	n := valueRange(L, "unpack", i, j)
	for k := range n {
		L.Push(t.RawGetInt(i + k))
	}
	return n
}

func strByte(L *lua.LState) int {
	s := L.CheckString(1)
	i := L.OptInt(2, 1)
	j := L.OptInt(3, i)
	if i < 0 {
		i += len(s) + 1
	}
	if j < 0 {
		j += len(s) + 1
	}
	i, j = max(i, 1), min(j, len(s))
	n := valueRange(L, "string.byte", i, j)
	for k := range n {
		L.Push(lua.LNumber(s[i-1+k]))
	}
	return n
}

// tooLong raises the error of a built-in whose result would pass MaxString.
func tooLong(L *lua.LState, fn string, size int64) {
	L.RaiseError("%s: the result would be more than %d bytes (%d at least), the limit of a string built by a library function", fn, MaxString, size)
}

// startIndex turns Lua's 1-based, possibly negative init into an index of s
// (0..len), or -1 when it is past the end.
func startIndex(s string, init int) int {
	switch {
	case init < 0:
		init = max(len(s)+init+1, 1)
	case init == 0:
		init = 1
	}
	if init > len(s)+1 {
		return -1
	}
	return init - 1
}

func strFind(L *lua.LState) int  { return findAux(L, true) }
func strMatch(L *lua.LState) int { return findAux(L, false) }

// findAux is string.find (find set) and string.match.
func findAux(L *lua.LState, find bool) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	init := startIndex(src, L.OptInt(3, 1))
	if init < 0 {
		L.Push(lua.LNil)
		return 1
	}
	if find && (lua.LVAsBool(L.Get(4)) || !strings.ContainsAny(pat, "^$*+?.([%-")) {
		i := strings.Index(src[init:], pat)
		if i < 0 {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(lua.LNumber(init + i + 1))
		L.Push(lua.LNumber(init + i + len(pat)))
		return 2
	}
	m := &matcher{L: L, src: src, pat: pat}
	p0, anchored := 0, strings.HasPrefix(pat, "^")
	if anchored {
		p0 = 1
	}
	for s := init; s <= len(src); s++ {
		if e := m.at(s, p0); e != -1 {
			if find {
				L.Push(lua.LNumber(s + 1))
				L.Push(lua.LNumber(e))
				return m.pushCaptures(s, e, false) + 2
			}
			return m.pushCaptures(s, e, true)
		}
		if anchored {
			break
		}
	}
	L.Push(lua.LNil)
	return 1
}

// strGmatch returns an iterator over the matches; it matches lazily, one
// match per call.
func strGmatch(L *lua.LState) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	pos := 0
	L.Push(L.NewFunction(func(L *lua.LState) int {
		m := &matcher{L: L, src: src, pat: pat}
		for s := pos; s <= len(src); s++ {
			if e := m.at(s, 0); e != -1 {
				pos = e
				if e == s {
					pos++
				}
				return m.pushCaptures(s, e, true)
			}
		}
		pos = len(src) + 1
		return 0
	}))
	return 1
}

func strGsub(L *lua.LState) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	repl := L.Get(3)
	switch repl.(type) {
	case lua.LString, lua.LNumber, *lua.LTable, *lua.LFunction:
	default:
		L.TypeError(3, lua.LTString)
	}
	maxN := L.OptInt(4, len(src)+1)
	m := &matcher{L: L, src: src, pat: pat}
	p0, anchored := 0, strings.HasPrefix(pat, "^")
	if anchored {
		p0 = 1
	}
	var out strings.Builder
	grow := func(n int) {
		if out.Len()+n > MaxString {
			tooLong(L, "string.gsub", int64(out.Len())+int64(n))
		}
	}
	s, n := 0, 0
	for n < maxN {
		e := m.at(s, p0)
		if e != -1 {
			n++
			r := gsubValue(m, repl, s, e, grow)
			grow(len(r))
			out.WriteString(r)
		}
		switch {
		case e != -1 && e > s:
			s = e
		case s < len(src):
			grow(1)
			out.WriteByte(src[s])
			s++
		default:
			s = len(src) + 1
		}
		if s > len(src) || anchored {
			break
		}
	}
	if s < len(src) {
		grow(len(src) - s)
		out.WriteString(src[s:])
	}
	L.Push(lua.LString(out.String()))
	L.Push(lua.LNumber(n))
	return 2
}

// gsubValue is the replacement of the match from s to e.
func gsubValue(m *matcher, repl lua.LValue, s, e int, grow func(int)) string {
	L := m.L
	whole := m.src[s:e]
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		tmpl := lua.LVAsString(r)
		if !strings.Contains(tmpl, "%") {
			return tmpl
		}
		var b strings.Builder
		for i := 0; i < len(tmpl); i++ {
			c := tmpl[i]
			if c != '%' || i+1 == len(tmpl) {
				b.WriteByte(c)
				continue
			}
			i++
			c = tmpl[i]
			switch {
			case c == '0':
				grow(b.Len() + len(whole))
				b.WriteString(whole)
			case '1' <= c && c <= '9':
				v := m.captureValue(int(c-'1'), s, e)
				grow(b.Len() + len(lua.LVAsString(v)))
				b.WriteString(lua.LVAsString(v))
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	case *lua.LTable, *lua.LFunction:
		key := m.captureValue(0, s, e)
		var v lua.LValue
		if t, ok := r.(*lua.LTable); ok {
			v = L.GetTable(t, key)
		} else {
			level := m.level
			caps := m.caps
			top := L.GetTop()
			L.Push(r)
			nargs := m.pushCaptures(s, e, true)
			L.Call(nargs, 1)
			v = L.Get(-1)
			L.SetTop(top)
			m.level, m.caps = level, caps
		}
		switch v := v.(type) {
		case *lua.LNilType:
			return whole
		case lua.LBool:
			if !bool(v) {
				return whole
			}
		case lua.LString, lua.LNumber:
			return lua.LVAsString(v)
		}
		L.RaiseError("string.gsub: invalid replacement value (a %s)", v.Type())
	}
	return whole
}

// boundedRep is string.rep that refuses to build more than MaxString bytes.
func boundedRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := L.CheckNumber(2)
	sep := L.OptString(3, "")
	if n < 1 {
		L.Push(lua.LString(""))
		return 1
	}
	// Sizes are compared in float64 first: n may be 2^62, and 2*2^62
	// overflows an int64.
	if size := float64(len(s))*float64(n) + float64(len(sep))*(float64(n)-1); size > MaxString {
		L.RaiseError("string.rep: the result would be %.0f bytes, more than the %d byte limit", size, MaxString)
	}
	count := int(n)
	var b strings.Builder
	b.Grow(len(s)*count + len(sep)*(count-1))
	for i := range count {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(s)
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// strFormat is string.format with Lua's limits: a width or precision has at
// most two digits, and the result is at most MaxString bytes.
func strFormat(L *lua.LState) int {
	f := L.CheckString(1)
	if len(f) > MaxString {
		tooLong(L, "string.format", int64(len(f)))
	}
	var out strings.Builder
	arg := 1
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '%' {
			out.WriteByte(c)
			continue
		}
		i++
		if i < len(f) && f[i] == '%' {
			out.WriteByte('%')
			continue
		}
		start := i
		for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
			i++
		}
		digits := func(what string) {
			n := 0
			for i < len(f) && '0' <= f[i] && f[i] <= '9' {
				i++
				n++
			}
			if n > 2 {
				L.RaiseError("string.format: invalid conversion %q: a %s has at most two digits", "%"+f[start:min(i+1, len(f))], what)
			}
		}
		digits("width")
		if i < len(f) && f[i] == '.' {
			i++
			digits("precision")
		}
		if i >= len(f) {
			L.RaiseError("string.format: invalid conversion %q at the end of the format", "%"+f[start:])
		}
		spec := "%" + f[start:i]
		arg++
		var piece string
		switch verb := f[i]; verb {
		case 'd', 'i':
			piece = fmt.Sprintf(spec+"d", int64(L.CheckNumber(arg)))
		case 'c':
			piece = string([]byte{byte(L.CheckInt(arg))})
		case 'o', 'x', 'X':
			piece = fmt.Sprintf(spec+string(verb), int64(L.CheckNumber(arg)))
		case 'u':
			piece = fmt.Sprintf(spec+"d", uint64(int64(L.CheckNumber(arg))))
		case 'e', 'E', 'f', 'g', 'G':
			piece = fmt.Sprintf(spec+string(verb), float64(L.CheckNumber(arg)))
		case 'q':
			piece = quoteLua(L.CheckString(arg))
		case 's':
			v := L.CheckAny(arg)
			piece = fmt.Sprintf(spec+"s", L.ToStringMeta(v).String())
		default:
			L.RaiseError("string.format: invalid conversion %q", spec+string(verb))
		}
		if out.Len()+len(piece) > MaxString {
			tooLong(L, "string.format", int64(out.Len())+int64(len(piece)))
		}
		out.WriteString(piece)
	}
	L.Push(lua.LString(out.String()))
	return 1
}

// quoteLua is %q: a string Lua reads back as the same string.
func quoteLua(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString("\\n")
		case '\r':
			b.WriteString("\\r")
		case 0:
			b.WriteString("\\000")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tableConcat is table.concat with its result bounded by MaxString, counted
// before anything is built.
func tableConcat(L *lua.LState) int {
	t := L.CheckTable(1)
	sep := L.OptString(2, "")
	i := L.OptInt(3, 1)
	j := L.OptInt(4, t.Len())
	if i > j {
		L.Push(lua.LString(""))
		return 1
	}
	if float64(j)-float64(i) > MaxString {
		tooLong(L, "table.concat", int64(j-i))
	}
	size := 0
	parts := make([]string, 0, j-i+1)
	for k := i; k <= j; k++ {
		var s string
		switch v := t.RawGetInt(k).(type) {
		case lua.LString:
			s = string(v)
		case lua.LNumber:
			s = v.String()
		default:
			L.RaiseError("table.concat: invalid value (a %s) at index %d", v.Type(), k)
		}
		size += len(s)
		if k > i {
			size += len(sep)
		}
		if size > MaxString {
			tooLong(L, "table.concat", int64(size))
		}
		parts = append(parts, s)
	}
	L.Push(lua.LString(strings.Join(parts, sep)))
	return 1
}
