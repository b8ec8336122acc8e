package policy

import (
	"errors"
	"time"
)

// ErrorLogEvery is how often the errors of one handler are logged at most:
// its first error is logged, then, while it keeps failing, one line per
// ErrorLogEvery that says how many were left out since the last.
const ErrorLogEvery = 10 * time.Second

type errorLog struct {
	last       time.Time
	suppressed uint64
}

// ShouldLog says whether the error of a call into the policy is to be
// logged now (and recorded), and how many errors of the same handler were
// left out since its last logged one. Errors are told apart by the
// handler's file:line; time is the runtime's clock. Call it on the
// goroutine that owns the policy.
func (p *Policy) ShouldLog(err error) (bool, uint64) {
	key := ""
	var he *HandlerError
	if errors.As(err, &he) {
		key = he.Where
	}
	now := p.env.Clock().Now()
	l, seen := p.errLog[key]
	if !seen {
		p.errLog[key] = &errorLog{last: now}
		return true, 0
	}
	if now.Sub(l.last) < ErrorLogEvery {
		l.suppressed++
		p.stats.Suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// logError logs a failed call the policy made by itself (a timer's), rate
// limited as ShouldLog says.
func (p *Policy) logError(msg string, err error) {
	ok, suppressed := p.ShouldLog(err)
	if !ok {
		return
	}
	if suppressed > 0 {
		p.log.Error(msg, "error", err, "suppressed", suppressed)
		return
	}
	p.log.Error(msg, "error", err)
}
