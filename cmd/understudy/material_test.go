package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"understudy/fixtures/eventually"

	"understudy/fixtures/mosquitto"
)

// A recorder (rec) is lost and a standby (sb) records its cameras meanwhile.
// When rec returns, the failback has sb let go (its release hook stops the
// recording it was still writing), then copies back what sb recorded for it,
// from sb's material server to rec's folder, that file included. The copy is
// interrupted (rec killed with -9 in the middle of a file) and must resume
// after rec's restart without starting over; every file ends up verified,
// nothing that differs on rec is overwritten, and no temporary file is left.
// Three real `understudy run` processes on loopback, Debian's mosquitto as the
// broker.

const materialSite = `site: mat
coordinator: manager
mdns: false
bus: {url: "%[1]s"}
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 3s}
policy: {file: policy.lua}
copy: {settle: 1ms, limit_mbit: 4}
failover: {copy_material: true}
members:
  - id: manager
    api: 127.0.0.1:0
  - id: rec
    api: 127.0.0.1:0
    duties: {material: [%[2]q]}
  - id: sb
    standby: true
    api: 127.0.0.1:0
    material_server: %[3]s
    duties: {material: [%[4]q]}
    hooks: {release: [{exec: [/usr/bin/touch, %[5]q]}]}
`

const materialPolicy = `local us = require "understudy"
us.on("member_lost", function(ev)
  if ev.member.id == "rec" and not us.covered(ev.member) then us.takeover(ev.member, "sb") end
end)
us.on("member_restored", function(ev)
  local c = us.covered(ev.member)
  if c and c.phase == "covering" then us.failback(ev.member) end
end)
-- Back before the takeover finished (rec restarted at once while sb was
-- taking it over again): fail back when it has.
us.on("takeover_done", function(ev)
  local m = us.member(ev.member.id)
  if m and m.state == "alive" then us.failback(m) end
end)
us.on("copy_done", function(ev)
  us.log.info("copy report", {action = ev.action, copied = ev.copied, bytes = ev.bytes,
    resumed = ev.resumed_bytes, conflicts = #ev.conflicts, summary = ev.summary})
end)
`

// freePort is a loopback host:port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freeLoopbackPort(t)))
}

func writeBytes(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// partialFiles lists the copy's temporary files under dir with their sizes.
func partialFiles(dir string) map[string]int64 {
	out := map[string]int64{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(d.Name(), ".understudy-partial") {
			if info, err := d.Info(); err == nil {
				out[path] = info.Size()
			}
		}
		return nil
	})
	return out
}

func TestFailbackCopiesTheMaterialBackAndResumesAfterAnInterruption(t *testing.T) {
	mq := mosquitto.Start(t)
	dir := t.TempDir()
	recDir, sbDir := filepath.Join(dir, "rec-disk"), filepath.Join(dir, "sb-disk")
	for _, d := range []string{recDir, sbDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	site := filepath.Join(dir, "site.yaml")
	released := filepath.Join(dir, "sb-released")
	if err := os.WriteFile(site, fmt.Appendf(nil, materialSite, mq.URL, recDir, freePort(t), sbDir, released), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.lua"), []byte(materialPolicy), 0o644); err != nil {
		t.Fatal(err)
	}

	manager := runIn(t, nil, site, "manager")
	sb := runIn(t, nil, site, "sb")
	rec := runIn(t, nil, site, "rec")
	sb.wait(20*time.Second, "msg", "material server listening")
	manager.wait(20*time.Second, "msg", "bus connected")
	manager.wait(20*time.Second, "msg", "member alive", "member", "rec")

	// rec dies; sb takes over and records for it meanwhile.
	if err := rec.p.Kill(); err != nil {
		t.Fatal(err)
	}
	manager.wait(20*time.Second, "msg", "takeover_done", "member", "rec")
	recorded := map[string][]byte{}
	for i := 1; i <= 4; i++ {
		recorded[fmt.Sprintf("cam1/seg-%04d.ts", i)] = randomBytes(768 << 10)
	}
	recorded["cam1/same.ts"] = randomBytes(100 << 10)
	recorded["cam2/partial.ts"] = randomBytes(512 << 10)
	recorded["cam2/conflict.ts"] = randomBytes(100 << 10)
	for rel, data := range recorded {
		writeBytes(t, filepath.Join(sbDir, "rec", rel), data, time.Time{})
	}
	// What rec already has: the same file, the start of one, and a file that
	// differs from the standby's and must be left alone.
	mine := randomBytes(100 << 10)
	writeBytes(t, filepath.Join(recDir, "cam1/same.ts"), recorded["cam1/same.ts"], time.Time{})
	writeBytes(t, filepath.Join(recDir, "cam2/partial.ts"), recorded["cam2/partial.ts"][:200<<10], time.Time{})
	writeBytes(t, filepath.Join(recDir, "cam2/conflict.ts"), mine, time.Now().Add(time.Hour))
	// copy.settle is 1ms: by the time rec is back and asks, the files have settled.
	// But sb is still recording one camera for rec, until it is told to let go.
	live := filepath.Join(sbDir, "rec", "cam3", "live.ts")
	writeBytes(t, live, randomBytes(64<<10), time.Time{})
	stopWriting := make(chan struct{})
	writing := make(chan error, 1)
	go func() { writing <- appendUntil(live, released, stopWriting) }()
	t.Cleanup(func() { close(stopWriting); <-writing })

	// rec comes back; the failback copies at 4 Mbit/s. Kill it in the middle.
	manager.mark()
	rec = runIn(t, nil, site, "rec")
	manager.wait(30*time.Second, "msg", "material copy started", "member", "rec")
	eventually.True(t, 30*time.Second, "a temporary file of 150 KiB in "+recDir, func() (bool, string) {
		var biggest int64
		for _, n := range partialFiles(recDir) {
			biggest = max(biggest, n)
		}
		return biggest >= 150<<10, fmt.Sprintf("the biggest has %d bytes; rec's log:\n%s", biggest, rec.p.Output())
	})
	if err := rec.p.Kill(); err != nil {
		t.Fatal(err)
	}
	manager.wait(20*time.Second, "msg", "failback_failed", "member", "rec")
	if len(partialFiles(recDir)) == 0 {
		t.Fatal("the interrupted copy left no temporary file to resume")
	}

	// rec restarts: the copy resumes and the failback finishes.
	manager.mark()
	rec = runIn(t, nil, site, "rec")
	manager.wait(60*time.Second, "msg", "failback_done", "member", "rec")
	report := manager.wait(10*time.Second, "msg", "copy report")
	t.Logf("copy report: %v", report["summary"])
	rec.wait(10*time.Second, "msg", "material copy: ", "from", "sb")

	// The file sb was writing when rec came back is there, complete.
	liveData, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	recorded["cam3/live.ts"] = liveData
	for rel, data := range recorded {
		got, err := os.ReadFile(filepath.Join(recDir, rel))
		if err != nil {
			t.Fatalf("%s was not copied back: %v", rel, err)
		}
		want := data
		if rel == "cam2/conflict.ts" {
			want = mine
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s on rec: %d bytes, not the expected content", rel, len(got))
		}
	}
	if left := partialFiles(recDir); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// Some copy went on from an earlier run's bytes rather than start over.
	resumed := false
	for _, line := range strings.Split(manager.p.Output(), "\n") {
		if strings.Contains(line, `"copy report"`) && !strings.Contains(line, `"resumed":0`) {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("no copy reported resumed bytes; coordinator log:\n%s", manager.p.Output())
	}
}

// appendUntil appends to path every 20ms, as a recorder writes a segment,
// until the file stop exists (the standby's release hook made it), or done
// is closed, or a minute has passed.
func appendUntil(path, stop string, done <-chan struct{}) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(time.Minute)
	for {
		if _, err := os.Stat(stop); err == nil {
			return nil
		}
		if _, err := f.Write(randomBytes(16 << 10)); err != nil {
			return err
		}
		select {
		case <-done:
			return nil
		case <-limit:
			return nil
		case <-tick.C:
		}
	}
}
