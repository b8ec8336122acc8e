package policy

import (
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// TestPatternsAsLua: the string functions that replaced gopher-lua's give
// Lua 5.1's results.
func TestPatternsAsLua(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`string.find("hello world", "o w")`, "5 7"},
		{`string.find("hello world", "o", 6)`, "8 8"},
		{`string.find("hello", "l+")`, "3 4"},
		{`string.find("hello", "xyz")`, "nil"},
		{`string.find("a.b", ".", 1, true)`, "2 2"},
		{`string.find("abc", "", 10)`, "nil"},
		{`string.find("abc", "", 4)`, "4 3"},
		{`string.find("abc", "c", -1)`, "3 3"},
		{`string.find("key = value", "(%w+)%s*=%s*(%w+)")`, "1 11 key value"},
		{`string.find("abc", "()b()")`, "2 2 2 3"},
		{`string.find("  x", "^%s*x$")`, "1 3"},
		{`string.find("ab", "^b")`, "nil"},
		{`string.match("2026-12-07", "(%d+)-(%d+)-(%d+)")`, "2026 12 07"},
		{`string.match("hello", ".-l")`, "hel"},
		{`string.match("hello", ".*l")`, "hell"},
		{`string.match("hello", "l?e")`, "e"},
		{`string.match("THE (quick) fox", "%((%a+)%)")`, "quick"},
		{`string.match("f(a(b)c)d", "%b()")`, "(a(b)c)"},
		{`string.match("THE (quick) fox", "%f[%a]%a+%f[%A]", 5)`, "quick"},
		{`string.match("x = 'a' 'b'", "(['\"])(.-)%1")`, "' a"},
		{`string.match("[x]", "[%[%]]")`, "["},
		{`string.match("a-b", "[a%-]+")`, "a-"},
		{`string.match("]", "[]]")`, "]"},
		{`string.match("abc", "[^a]+")`, "bc"},
		{`string.match("x9F", "%x+$")`, "9F"},
		{`string.match("ab$", "b$")`, "nil"},
		{`string.match("a$b", "a$b")`, "a$b"},
		{`string.match("hello", "()ll()")`, "3 5"},
		{`string.match(" \t x", "^%s*(.-)%s*$")`, "x"},
		{`string.gsub("hello world", "o", "0")`, "hell0 w0rld 2"},
		{`string.gsub("hello world", "(%w+)", "<%1>")`, "<hello> <world> 2"},
		{`string.gsub("hello", "", "-")`, "-h-e-l-l-o- 6"},
		{`string.gsub("abc", "%w", "%0%0")`, "aabbcc 3"},
		{`string.gsub("abc", "b", "%%")`, "a%c 1"},
		{`string.gsub("hello world", "%w+", {hello = "HI"})`, "HI world 2"},
		{`string.gsub("a b c", "%w", function(c) if c ~= "b" then return c:upper() end end)`, "A b C 3"},
		{`string.gsub("aaa", "a", "b", 2)`, "bba 2"},
		{`string.gsub("aaa", "^a", "b")`, "baa 1"},
		{`string.gsub("x=1, y=2", "(%w+)=(%w+)", "%2=%1")`, "1=x, 2=y 2"},
		{`string.gsub("abc", ".", 7)`, "777 3"},
		{`(function() local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, ",") end)()`, "a1,b2"},
		{`(function() local t = {} for w in ("one two  three"):gmatch("%a+") do t[#t+1] = w end return table.concat(t, ",") end)()`, "one,two,three"},
		{`(function() local n = 0 for w in ("abc"):gmatch("") do n = n + 1 end return n end)()`, "4"},
		{`string.rep("ab", 3, ",")`, "ab,ab,ab"},
		{`string.rep("ab", 0)`, ""},
		{`string.format("%d %5.2f %s %q %x %5s|%-5s|", 42, 3.14159, "hi", "a\"b\n", 255, "r", "l")`, "42  3.14 hi \"a\\\"b\\n\" ff     r|l    |"},
		{`string.format("%3d%%", 50)`, " 50%"},
		{`string.format("%c%c", 72, 105)`, "Hi"},
		{`string.format("%s", setmetatable({}, {__tostring = function() return "obj" end}))`, "obj"},
		{`table.concat({1, "a", 2.5}, "-")`, "1-a-2.5"},
		{`table.concat({"a", "b", "c"}, "", 2, 3)`, "bc"},
		{`table.concat({})`, ""},
		{`string.byte("ABC", 1, -1)`, "65 66 67"},
		{`string.byte("ABC")`, "65"},
		{`unpack({1, 2, 3})`, "1 2 3"},
		{`unpack({1, 2, 3}, 2)`, "2 3"},
	} {
		env := newEnv()
		p, _ := load(t, env, "function probe() local r = {"+tc.expr+"} local out = {} for i = 1, select('#', "+tc.expr+") do out[i] = tostring(r[i]) end return table.concat(out, ' ') end\n")
		if err := p.L.CallByParam(lua.P{Fn: p.L.GetGlobal("probe"), NRet: 1, Protect: true}); err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		got := p.L.Get(-1).String()
		p.L.Pop(1)
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
		}
	}
}
