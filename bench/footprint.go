//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"understudy/bench/proc"
	"understudy/bench/report"
	"understudy/fixtures/testhost"
)

func measureStartup(e *env, r *report.Result) {
	s, err := newRealSite(e, "startup", "100ms")
	if err != nil {
		fail(r, err)
		return
	}
	defer s.close()
	sock := filepath.Join(s.dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		fail(r, fmt.Errorf("notify socket: %w", err))
		return
	}
	defer conn.Close()

	n := e.pick(5, 30)
	ctx, cancel := context.WithTimeout(e.ctx, e.pickD(20*time.Second, time.Minute))
	defer cancel()
	var ready, busUp []float64
	for i := range n + 1 { // the first start warms up and is not counted
		if err := ctx.Err(); err != nil {
			fail(r, fmt.Errorf("startup: after %d starts: %w", i, err))
			return
		}
		rd, bus, err := startOnce(ctx, s, conn, sock)
		if err != nil {
			fail(r, fmt.Errorf("start %d: %w", i, err))
			return
		}
		if i > 0 {
			ready = append(ready, ms(rd))
			busUp = append(busUp, ms(bus))
		}
	}
	r.Stats = report.Summarize(ready)

	mq, err := testhost.LookPath("mosquitto")
	if err != nil {
		r.Notes = append(r.Notes, "No reference: mosquitto is not installed (make bench installs it).")
	} else {
		var refs []float64
		for i := range n + 1 {
			m, err := startMosquitto(e, mq)
			if err != nil {
				fail(r, fmt.Errorf("mosquitto reference: %w", err))
				return
			}
			m.p.Kill()
			if i > 0 {
				refs = append(refs, ms(m.accepting))
			}
		}
		rs := report.Summarize(refs)
		r.Reference = &report.Reference{What: "Debian mosquitto to listening", Unit: "ms", Stats: rs, Value: rs.P99, Stat: "p99"}
	}
	bs := report.Summarize(busUp)
	r.Notes = append(r.Notes, fmt.Sprintf("%d starts after one warm-up. READY comes once the policy is loaded and the status API listens; to its embedded broker started and its own bus connection up (the `bus connected` log line's time stamp): p50 %s, p99 %s.",
		n, report.Format(bs.P50, "ms"), report.Format(bs.P99, "ms")))
}

// startOnce starts the coordinator, returns how long it took to READY=1 and
// to its bus connection, and kills it.
func startOnce(ctx context.Context, s *realSite, conn *net.UnixConn, sock string) (ready, busUp time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// Forget what the previous start said after its READY.
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now())
	for {
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	cmd := s.command("backup")
	cmd.Env = append(cleanEnv(), "NOTIFY_SOCKET="+sock)
	p, err := proc.Start(cmd)
	if err != nil {
		return 0, 0, err
	}
	defer p.Kill()
	for ready == 0 {
		deadline, _ := ctx.Deadline()
		conn.SetReadDeadline(deadline)
		k, err := conn.Read(buf)
		if err != nil {
			return 0, 0, fmt.Errorf("no READY=1 on the notify socket: %w\nits log ends:\n%s", err, logTail(p))
		}
		if strings.Contains(string(buf[:k]), "READY=1") {
			ready = time.Since(p.Started)
		}
	}
	if err := p.WaitOutput(ctx, `"bus connected"`); err != nil {
		return 0, 0, err
	}
	at, err := logTime(p.Output(), "bus connected")
	if err != nil {
		return 0, 0, err
	}
	return ready, at.Sub(p.Started), nil
}

// cleanEnv is this process's environment without systemd's variables.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "NOTIFY_SOCKET" && k != "WATCHDOG_USEC" && k != "WATCHDOG_PID" {
			out = append(out, kv)
		}
	}
	return out
}

// logTime returns the time stamp of the first JSON log line with msg.
func logTime(log, msg string) (time.Time, error) {
	for line := range strings.SplitSeq(log, "\n") {
		var l struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == msg {
			return l.Time, nil
		}
	}
	return time.Time{}, fmt.Errorf("no log line %q", msg)
}

// mosquitto is a running Debian mosquitto.
type mosquitto struct {
	p         *proc.Process
	addr      string
	accepting time.Duration // from fork/exec to its port accepting
}

// startMosquitto starts mosquitto on a free loopback port (anonymous, no
// persistence, errors only in its log) and returns once the port accepts.
func startMosquitto(e *env, bin string) (*mosquitto, error) {
	dir, err := e.dir("mosquitto")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n", port)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("write mosquitto.conf: %w", err)
	}
	p, err := proc.Start(exec.Command(bin, "-c", conf))
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			at := time.Since(p.Started)
			c.Close()
			return &mosquitto{p: p, addr: addr, accepting: at}, nil
		}
		select {
		case <-p.Exited():
			return nil, fmt.Errorf("mosquitto exited: %v\n%s", p.Wait(), p.Output())
		case <-e.ctx.Done():
			p.Kill()
			return nil, fmt.Errorf("mosquitto: %w", e.ctx.Err())
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return nil, fmt.Errorf("mosquitto does not accept on %s: %w", addr, err)
		}
	}
}

func measureIdleRSS(e *env, r *report.Result) {
	idle := e.pickD(5*time.Second, 10*time.Second)
	s, err := newRealSite(e, "idle", "100ms")
	if err != nil {
		fail(r, err)
		return
	}
	defer s.close()
	var mq *mosquitto
	if bin, err := testhost.LookPath("mosquitto"); err == nil {
		if mq, err = startMosquitto(e, bin); err != nil {
			fail(r, fmt.Errorf("mosquitto reference: %w", err))
			return
		}
		defer mq.p.Kill()
	}
	if err := s.start(); err != nil {
		fail(r, fmt.Errorf("the site did not come up: %w\ncoordinator's log ends:\n%s", err, logTail(s.coord)))
		return
	}
	select {
	case <-time.After(idle):
	case <-e.ctx.Done():
		fail(r, fmt.Errorf("idle RSS: %w", e.ctx.Err()))
		return
	}
	var errs []error
	read := func(p *proc.Process) (float64, float64) {
		rss, hwm, err := proc.RSS(p.Pid())
		errs = append(errs, err)
		return float64(rss) / 1024, float64(hwm) / 1024
	}
	coordRSS, coordHWM := read(s.coord)
	memberRSS, memberHWM := read(s.member)
	if err := errors.Join(errs...); err != nil {
		fail(r, err)
		return
	}
	r.Stats = report.Summarize([]float64{coordRSS, memberRSS})
	r.Notes = append(r.Notes, fmt.Sprintf("Coordinator %s (peak %s), member %s (peak %s), read %v after main was alive.",
		report.Format(coordRSS, "MiB"), report.Format(coordHWM, "MiB"), report.Format(memberRSS, "MiB"), report.Format(memberHWM, "MiB"), idle))
	if e.quick {
		r.Notes = append(r.Notes, "Quick run: 5 s idle instead of 10 s.")
	}
	if mq != nil {
		rss, _, err := proc.RSS(mq.p.Pid())
		if err != nil {
			fail(r, err)
			return
		}
		v := float64(rss) / 1024
		r.Reference = &report.Reference{What: "Debian mosquitto, idle", Unit: "MiB", Value: v, Stat: "RSS"}
		r.Notes = append(r.Notes, "mosquitto has no clients; the coordinator's embedded broker serves the two instances and the bench's subscriber.")
	} else {
		r.Notes = append(r.Notes, "No reference: mosquitto is not installed (make bench installs it).")
	}
}
