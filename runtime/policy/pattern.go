package policy

import (
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// Lua 5.1 string patterns, matched by a backtracking matcher that counts its
// steps and looks at the call's context every patternCheckEvery steps, so a
// pattern that backtracks for ever ("(.-.-.-.-b" on a long subject) stops at
// the handler's deadline like Lua code does. gopher-lua's own matcher never
// looks at the context.
const (
	maxCaptures       = 32   // as Lua's LUA_MAXCAPTURES
	maxPatternDepth   = 200  // nested match calls (one per capture, quantifier, ?)
	patternCheckEvery = 1024 // steps between two looks at the context
)

const (
	capOpen     = -1 // a capture not closed yet
	capPosition = -2 // a position capture, ()
)

// errPatternStopped is the message of a match stopped by its context.
const errPatternStopped = "string pattern stopped: "

type capture struct{ start, n int }

// matcher matches one pattern against one subject. Errors are raised as Lua
// errors on L.
type matcher struct {
	L     *lua.LState
	src   string
	pat   string
	level int
	caps  [maxCaptures]capture
	depth int
	steps int
}

func (m *matcher) fail(format string, args ...any) {
	m.L.RaiseError("%s", fmt.Sprintf(format, args...))
}

// step counts one step of the matcher and stops it once the call's context
// is done (its deadline, or the memory watchdog).
func (m *matcher) step() {
	m.steps++
	if m.steps%patternCheckEvery != 0 {
		return
	}
	checkContext(m.L, errPatternStopped)
}

// checkContext raises an error on L when the context of the running call is
// done; the policy host reports the call as stopped.
func checkContext(L *lua.LState, what string) {
	ctx := L.Context()
	if ctx == nil {
		return
	}
	select {
	case <-ctx.Done():
		L.RaiseError("%s%v", what, stopCause(ctx))
	default:
	}
}

// classEnd returns the index just after the single-character class that
// starts at p (a character, ., %x or a [set]).
func (m *matcher) classEnd(p int) int {
	c := m.pat[p]
	p++
	switch c {
	case '%':
		if p >= len(m.pat) {
			m.fail("malformed pattern %q (ends with '%%')", m.pat)
		}
		return p + 1
	case '[':
		if p < len(m.pat) && m.pat[p] == '^' {
			p++
		}
		// The first character of a set is taken as itself, even ']'.
		for {
			if p >= len(m.pat) {
				m.fail("malformed pattern %q (missing ']')", m.pat)
			}
			c := m.pat[p]
			p++
			if c == '%' {
				if p >= len(m.pat) {
					m.fail("malformed pattern %q (ends with '%%')", m.pat)
				}
				p++
			}
			if p < len(m.pat) && m.pat[p] == ']' {
				return p + 1
			}
		}
	}
	return p
}

// classMatches reports whether c is in the class %cl (%a, %d, ...; an upper
// case letter is the complement; any other character stands for itself).
func classMatches(c, cl byte) bool {
	var in bool
	switch cl | 0x20 {
	case 'a':
		in = isAlpha(c)
	case 'c':
		in = c < 32 || c == 127
	case 'd':
		in = '0' <= c && c <= '9'
	case 'l':
		in = 'a' <= c && c <= 'z'
	case 'p':
		in = isPunct(c)
	case 's':
		in = c == ' ' || ('\t' <= c && c <= '\r')
	case 'u':
		in = 'A' <= c && c <= 'Z'
	case 'w':
		in = isAlpha(c) || ('0' <= c && c <= '9')
	case 'x':
		in = ('0' <= c && c <= '9') || ('a' <= c|0x20 && c|0x20 <= 'f')
	case 'z':
		in = c == 0
	default:
		return cl == c
	}
	if 'A' <= cl && cl <= 'Z' {
		return !in
	}
	return in
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func isPunct(c byte) bool {
	return c > 32 && c < 127 && !isAlpha(c) && !('0' <= c && c <= '9')
}

// inSet reports whether c is in the set pat[p:ec+1] ("[...]", ec at ']').
func (m *matcher) inSet(c byte, p, ec int) bool {
	want := true
	p++
	if m.pat[p] == '^' {
		want = false
		p++
	}
	for ; p < ec; p++ {
		switch {
		case m.pat[p] == '%' && p+1 < ec:
			p++
			if classMatches(c, m.pat[p]) {
				return want
			}
		case p+2 < ec && m.pat[p+1] == '-':
			if m.pat[p] <= c && c <= m.pat[p+2] {
				return want
			}
			p += 2
		case m.pat[p] == c:
			return want
		}
	}
	return !want
}

// single reports whether the subject's byte at s matches the class pat[p:ep].
func (m *matcher) single(s, p, ep int) bool {
	if s >= len(m.src) {
		return false
	}
	c := m.src[s]
	switch m.pat[p] {
	case '.':
		return true
	case '%':
		return classMatches(c, m.pat[p+1])
	case '[':
		return m.inSet(c, p, ep-1)
	}
	return m.pat[p] == c
}

// match matches pat[p:] at src[s:] and returns the end of the match, or -1.
func (m *matcher) match(s, p int) int {
	m.depth++
	if m.depth > maxPatternDepth {
		m.fail("pattern %q is too complex (more than %d nested items)", m.pat, maxPatternDepth)
	}
	r := m.matchHere(s, p)
	m.depth--
	return r
}

func (m *matcher) matchHere(s, p int) int {
	for {
		m.step()
		if p == len(m.pat) {
			return s
		}
		switch m.pat[p] {
		case '(':
			if p+1 < len(m.pat) && m.pat[p+1] == ')' {
				return m.openCapture(s, p+2, capPosition)
			}
			return m.openCapture(s, p+1, capOpen)
		case ')':
			return m.closeCapture(s, p+1)
		case '$':
			if p+1 == len(m.pat) {
				if s == len(m.src) {
					return s
				}
				return -1
			}
		case '%':
			if p+1 < len(m.pat) {
				switch c := m.pat[p+1]; {
				case c == 'b':
					if s = m.balance(s, p+2); s == -1 {
						return -1
					}
					p += 4
					continue
				case c == 'f':
					p += 2
					if p >= len(m.pat) || m.pat[p] != '[' {
						m.fail("missing '[' after '%%f' in pattern %q", m.pat)
					}
					ep := m.classEnd(p)
					var prev, cur byte
					if s > 0 {
						prev = m.src[s-1]
					}
					if s < len(m.src) {
						cur = m.src[s]
					}
					if m.inSet(prev, p, ep-1) || !m.inSet(cur, p, ep-1) {
						return -1
					}
					p = ep
					continue
				case '0' <= c && c <= '9':
					if s = m.backReference(s, c); s == -1 {
						return -1
					}
					p += 2
					continue
				}
			}
		}
		ep := m.classEnd(p)
		ok := m.single(s, p, ep)
		if ep < len(m.pat) {
			switch m.pat[ep] {
			case '?':
				if ok {
					if r := m.match(s+1, ep+1); r != -1 {
						return r
					}
				}
				p = ep + 1
				continue
			case '*':
				return m.longest(s, p, ep)
			case '+':
				if !ok {
					return -1
				}
				return m.longest(s+1, p, ep)
			case '-':
				return m.shortest(s, p, ep)
			}
		}
		if !ok {
			return -1
		}
		s++
		p = ep
	}
}

// longest matches as many repetitions of the class pat[p:ep] as it can,
// then gives them back one by one until the rest of the pattern matches.
func (m *matcher) longest(s, p, ep int) int {
	n := 0
	for m.single(s+n, p, ep) {
		m.step()
		n++
	}
	for ; n >= 0; n-- {
		m.step()
		if r := m.match(s+n, ep+1); r != -1 {
			return r
		}
	}
	return -1
}

// shortest tries the rest of the pattern after as few repetitions of the
// class as possible.
func (m *matcher) shortest(s, p, ep int) int {
	for {
		m.step()
		if r := m.match(s, ep+1); r != -1 {
			return r
		}
		if !m.single(s, p, ep) {
			return -1
		}
		s++
	}
}

func (m *matcher) openCapture(s, p, what int) int {
	if m.level >= maxCaptures {
		m.fail("pattern %q has more than %d captures", m.pat, maxCaptures)
	}
	m.caps[m.level] = capture{start: s, n: what}
	m.level++
	r := m.match(s, p)
	if r == -1 {
		m.level--
	}
	return r
}

func (m *matcher) closeCapture(s, p int) int {
	l := -1
	for i := m.level - 1; i >= 0; i-- {
		if m.caps[i].n == capOpen {
			l = i
			break
		}
	}
	if l < 0 {
		m.fail("invalid pattern capture in %q (a ')' without its '(')", m.pat)
	}
	m.caps[l].n = s - m.caps[l].start
	r := m.match(s, p)
	if r == -1 {
		m.caps[l].n = capOpen
	}
	return r
}

// balance matches %bxy at s: x, then anything with x and y balanced, then y.
func (m *matcher) balance(s, p int) int {
	if p+1 >= len(m.pat) {
		m.fail("missing arguments to '%%b' in pattern %q", m.pat)
	}
	if s >= len(m.src) || m.src[s] != m.pat[p] {
		return -1
	}
	open, end := m.pat[p], m.pat[p+1]
	depth := 1
	for i := s + 1; i < len(m.src); i++ {
		m.step()
		switch m.src[i] {
		case end:
			depth--
			if depth == 0 {
				return i + 1
			}
		case open:
			depth++
		}
	}
	return -1
}

func (m *matcher) backReference(s int, c byte) int {
	i := int(c - '1')
	if i < 0 || i >= m.level || m.caps[i].n == capOpen {
		m.fail("invalid capture index %%%c in pattern %q", c, m.pat)
	}
	cp := m.caps[i]
	if cp.n < 0 { // a position capture matches no text
		return -1
	}
	if len(m.src)-s >= cp.n && m.src[s:s+cp.n] == m.src[cp.start:cp.start+cp.n] {
		return s + cp.n
	}
	return -1
}

// at tries the pattern (from p) at s, with no captures yet.
func (m *matcher) at(s, p int) int {
	m.level = 0
	m.depth = 0
	return m.match(s, p)
}

// captureValue is capture i of a match from s to e; with no captures,
// capture 0 is the whole match.
func (m *matcher) captureValue(i, s, e int) lua.LValue {
	if i >= m.level {
		if i == 0 {
			return lua.LString(m.src[s:e])
		}
		m.fail("invalid capture index %%%d", i+1)
	}
	cp := m.caps[i]
	switch cp.n {
	case capOpen:
		m.fail("unfinished capture in pattern %q", m.pat)
	case capPosition:
		return lua.LNumber(cp.start + 1)
	}
	return lua.LString(m.src[cp.start : cp.start+cp.n])
}

// pushCaptures pushes the captures of a match from s to e (the whole match
// when there are none and whole is set) and returns how many.
func (m *matcher) pushCaptures(s, e int, whole bool) int {
	n := m.level
	if n == 0 && whole {
		n = 1
	}
	for i := range n {
		m.L.Push(m.captureValue(i, s, e))
	}
	return n
}
