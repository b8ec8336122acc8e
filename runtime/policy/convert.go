package policy

import (
	"fmt"
	"math"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// maxDepth bounds nesting when converting Lua tables to Go values.
const maxDepth = 32

// toLua converts a plain Go value to Lua. Maps become tables, slices become
// arrays (from 1), times become Unix seconds.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case lua.LValue:
		return x
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case uint64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case time.Time:
		if x.IsZero() {
			return lua.LNil
		}
		return unixSeconds(x)
	case time.Duration:
		return lua.LNumber(x.Seconds())
	case []string:
		t := L.CreateTable(len(x), 0)
		for _, s := range x {
			t.Append(lua.LString(s))
		}
		return t
	case []int:
		t := L.CreateTable(len(x), 0)
		for _, n := range x {
			t.Append(lua.LNumber(n))
		}
		return t
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case map[string]string:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetString(k, lua.LString(e))
		}
		return t
	default:
		return lua.LString(fmt.Sprint(x))
	}
}

func unixSeconds(t time.Time) lua.LNumber {
	return lua.LNumber(float64(t.UnixMilli()) / 1000)
}

// MaxConverted bounds the size of a Lua value converted for Go (published,
// logged, stored with a timer): strings count their bytes, every other value
// and every table entry 8, and a table reached through several fields counts
// each time, as it would be sent.
const MaxConverted = MaxString

// fromLua converts a Lua value to a plain Go value (for JSON and for timer
// arguments that must outlive the Lua state). Arrays (keys 1..n) become []any,
// other tables map[string]any; functions and userdata are refused, and so is
// a value deeper than maxDepth or larger than MaxConverted.
func fromLua(v lua.LValue) (any, error) {
	c := converter{left: MaxConverted}
	return c.value(v, 0)
}

type converter struct{ left int }

func (c *converter) spend(n int) error {
	c.left -= n
	if c.left < 0 {
		return fmt.Errorf("value larger than %d bytes once converted (a table reached through several fields counts each time)", MaxConverted)
	}
	return nil
}

func (c *converter) value(v lua.LValue, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("table nested deeper than %d", maxDepth)
	}
	cost := 8
	if s, ok := v.(lua.LString); ok {
		cost += len(s)
	}
	if err := c.spend(cost); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LString:
		return string(x), nil
	case lua.LNumber:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %v cannot be sent", f)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f), nil
		}
		return f, nil
	case *lua.LTable:
		n := x.Len()
		count := 0
		x.ForEach(func(lua.LValue, lua.LValue) { count++ })
		if err := c.spend(8 * count); err != nil {
			return nil, err
		}
		if n > 0 && n == count {
			arr := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				e, err := c.value(x.RawGetInt(i), depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, e)
			}
			return arr, nil
		}
		m := make(map[string]any, count)
		var err error
		x.ForEach(func(k, e lua.LValue) {
			if err != nil {
				return
			}
			var key string
			switch k := k.(type) {
			case lua.LString:
				key = string(k)
			case lua.LNumber:
				key = k.String()
			default:
				err = fmt.Errorf("table key of type %s cannot be sent", k.Type())
				return
			}
			if err = c.spend(len(key)); err != nil {
				return
			}
			m[key], err = c.value(e, depth+1)
		})
		return m, err
	default:
		return nil, fmt.Errorf("a %s cannot be sent", v.Type())
	}
}
