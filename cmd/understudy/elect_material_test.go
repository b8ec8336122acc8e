//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"understudy/fixtures/eventually"
)

// electMaterialSite: materialSite's recorder and standby, with the
// coordinator elected among c1, c2 and the witness w, each embedding a
// broker. %[1]s: the recorder's folder, %[2]s the standby's material
// server, %[3]s its folder, %[4]s the file its release hook touches;
// %[5]d… the candidates' raft and broker ports.
const electMaterialSite = `site: matel
coordinator: [c1, c2, w]
mdns: false
heartbeat: {interval: 100ms, lost_after: 300ms, startup_grace: 3s}
policy: {file: policy.lua}
copy: {settle: 1ms, limit_mbit: 4}
failover: {copy_material: true}
members:
  - id: c1
    api: 127.0.0.1:0
    raft: 127.0.0.1:%[5]d
    broker: 127.0.0.1:%[6]d
  - id: c2
    api: 127.0.0.1:0
    raft: 127.0.0.1:%[7]d
    broker: 127.0.0.1:%[8]d
  - id: w
    api: 127.0.0.1:0
    witness: true
    raft: 127.0.0.1:%[9]d
    broker: 127.0.0.1:%[10]d
  - id: rec
    api: 127.0.0.1:0
    duties: {material: [%[1]q]}
  - id: sb
    standby: true
    api: 127.0.0.1:0
    material_server: %[2]s
    duties: {material: [%[3]q]}
    hooks: {release: [{exec: [/usr/bin/touch, %[4]q]}]}
`

// The elected coordinator's host killed in the middle of a failback's
// material copy: the next leader resumes the failback where it was — the
// copy the recorder is running goes on under the new epoch, is not started
// over, and every file arrives as it should — and records it done.
func TestALeaderKilledMidCopyResumesTheFailback(t *testing.T) {
	dir := t.TempDir()
	recDir, sbDir := filepath.Join(dir, "rec-disk"), filepath.Join(dir, "sb-disk")
	for _, d := range []string{recDir, sbDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	released := filepath.Join(dir, "sb-released")
	args := []any{recDir, freePort(t), sbDir, released}
	for range 6 {
		args = append(args, freeLoopbackPort(t))
	}
	text := fmt.Sprintf(electMaterialSite, args...)
	path := writeSiteFiles(t, text)
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "policy.lua"), []byte(materialPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	es := &electedSite{t: t, path: path, d: map[string]*daemon{}, api: map[string]string{}}
	es.start("c1", "c2", "w", "rec", "sb")
	first := es.leader(40*time.Second, "c1", "c2")
	es.d["sb"].wait(20*time.Second, "msg", "material server listening")
	first.wait(20*time.Second, "msg", "member alive", "member", "rec")
	first.wait(20*time.Second, "msg", "member alive", "member", "sb")

	// rec dies; sb takes over and records for it.
	if err := es.d["rec"].p.Kill(); err != nil {
		t.Fatal(err)
	}
	first.wait(20*time.Second, "msg", "takeover_done", "member", "rec")
	recorded := map[string][]byte{}
	for i := 1; i <= 6; i++ {
		recorded[fmt.Sprintf("cam1/seg-%04d.ts", i)] = randomBytes(512 << 10)
	}
	for rel, data := range recorded {
		writeBytes(t, filepath.Join(sbDir, "rec", rel), data, time.Time{})
	}

	// rec comes back; the failback copies at 4 Mbit/s (3 MiB: about 6 s).
	// The leader's host is killed in the middle of it.
	first.mark()
	es.start("rec")
	first.wait(30*time.Second, "msg", "material copy started", "member", "rec")
	eventually.True(t, 30*time.Second, "a temporary file of 100 KiB in "+recDir, func() (bool, string) {
		var biggest int64
		for _, n := range partialFiles(recDir) {
			biggest = max(biggest, n)
		}
		return biggest >= 100<<10, fmt.Sprintf("the biggest has %d bytes", biggest)
	})
	other := map[string]string{"c1": "c2", "c2": "c1"}[first.id]
	next := es.d[other]
	next.mark()
	if err := first.p.Kill(); err != nil {
		t.Fatal(err)
	}
	next.wait(30*time.Second, "msg", "elected: coordinating")
	next.wait(30*time.Second, "msg", "resuming an unanswered action", "do", "copy")
	next.wait(60*time.Second, "msg", "failback_done", "member", "rec")
	for rel, data := range recorded {
		got, err := os.ReadFile(filepath.Join(recDir, rel))
		if err != nil {
			t.Fatalf("%s was not copied back: %v", rel, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s on rec: %d bytes, not the expected content", rel, len(got))
		}
	}
	if left := partialFiles(recDir); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// Carried out once: the new leader's copy command, sent again, was
	// answered from rec's record of the one it was running.
	rec := es.d["rec"]
	if n := strings.Count(rec.p.Output(), `"msg":"command received","instance":"rec","component":"agent","id":`); n == 0 {
		t.Fatalf("rec logged no command received:\n%s", rec.p.Output())
	}
	copies := 0
	for _, line := range strings.Split(rec.p.Output(), "\n") {
		if strings.Contains(line, `"msg":"command received"`) && strings.Contains(line, `"verb":"copy"`) {
			copies++
		}
	}
	if copies != 1 {
		t.Errorf("rec received the copy command as new %d times; once is right", copies)
	}
	rec.wait(10*time.Second, "msg", "material copy: 6 copied")
}
