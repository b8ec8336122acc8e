package faults

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/runtime/config"
)

// The recorder emulation on the shipped recorder site, fed journal records
// by hand: each recorder has its own recordings; standby-1 records for
// rec-2 from takeover_done until the release command runs, one growing
// file at a time, the first with the name of rec-2's last own recording;
// the file being written when it let go is closed then; the timing
// overrides reach the rewritten site.
func TestRecorderEmulation(t *testing.T) {
	p, err := NewPlan(filepath.Join("..", "scripts", "recorder-standby", "site.yaml"), t.TempDir(), builtin.Registry())
	if err != nil {
		t.Fatal(err)
	}
	p.Shorten(0, 5*time.Second, 3*time.Second)
	if err := p.Write(nil); err != nil {
		t.Fatal(err)
	}
	short, err := config.Load(p.Hosts[1].SiteFile)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := short.Member("rec-2"); m.Settings.FailbackDelay != 5*time.Second || short.CopySettle() != 3*time.Second {
		t.Errorf("rewritten site: failback delay %s, copy.settle %s; want 5s and 3s", m.Settings.FailbackDelay, short.CopySettle())
	}
	if f := p.Facts(); f.Members["rec-2"].FailbackDelay != 5*time.Second || f.CopySettle != 3*time.Second || !f.Members["rec-2"].CopyMaterial {
		t.Errorf("facts %+v: want the shortened timing and copy_material", f)
	}

	rc := newRecorder(p, 7)
	start := time.Now()
	if err := rc.seedOwn(p, start); err != nil {
		t.Fatal(err)
	}
	now := start
	step := func(n int) {
		for range n {
			now = now.Add(recTick)
			rc.tick(now)
		}
	}
	rc.observe(Record{At: now, Type: "takeover_done", Member: "rec-2", Fields: map[string]any{"standby": "standby-1"}}, now)
	step(60)
	rc.observe(Record{At: now, Type: "action_running", Fields: map[string]any{"verb": "release", "target": "standby-1", "member": "rec-2"}}, now)
	released := now
	step(10)
	files, err := rc.finish()
	if err != nil {
		t.Fatal(err)
	}
	var own, forRec2 []Recorded
	for _, f := range files {
		switch {
		case f.Host == f.For:
			own = append(own, f)
		case f.Host == "standby-1" && f.For == "rec-2":
			forRec2 = append(forRec2, f)
		default:
			t.Errorf("unexpected recording %+v", f)
		}
	}
	if len(own) != 3*recOwnFiles {
		t.Errorf("%d own recordings, want %d for each of rec-1..3", len(own), recOwnFiles)
	}
	// 60 ticks of one chunk, files of 4–16 chunks.
	if len(forRec2) < 60/recMaxChunks || len(forRec2) > 60/recMinChunks+1 {
		t.Fatalf("%d recordings for rec-2, want one file at a time over 60 chunks", len(forRec2))
	}
	if forRec2[0].Rel != "cam-2/seg-0002.rec" || forRec2[0].Path != "rec-2/cam-2/seg-0002.rec" || !slices.ContainsFunc(own, func(f Recorded) bool {
		return f.Host == "rec-2" && f.Rel == forRec2[0].Rel && f.Hash != forRec2[0].Hash
	}) {
		t.Errorf("first recording for rec-2 %+v: want the name of rec-2's last own recording, other content", forRec2[0])
	}
	last := forRec2[len(forRec2)-1]
	if !last.Closed.Equal(released) || last.Size%recChunk != 0 || last.Size == 0 {
		t.Errorf("last recording %+v: want it closed when standby-1 let go (%s)", last, released.Format(time.StampMilli))
	}
	var chunks int64
	for i, f := range forRec2 {
		chunks += f.Size / recChunk
		if f.Closed.IsZero() || i > 0 && f.Opened.Before(forRec2[i-1].Closed) {
			t.Errorf("recording %d %+v: want one file at a time, each closed", i, f)
		}
	}
	if chunks != 60 {
		t.Errorf("%d chunks written, want 60 (one a tick while covering, none after)", chunks)
	}
	// The folders hold exactly what the emulation says it wrote.
	listed, err := ListMaterial(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(files) {
		t.Errorf("%d files in the material folders, %d written", len(listed), len(files))
	}
	for _, f := range files {
		if !slices.Contains(listed, FileSeen{Host: f.Host, Root: f.Root, Path: f.Path, Size: f.Size, Hash: f.Hash}) {
			t.Errorf("%s %s %s (%d bytes) not in the folders as written", f.Host, f.Root, f.Path, f.Size)
		}
	}
	// The same seed draws the same recordings.
	if a, b := rc.draw("standby-1", "rec-2", 5), newRecorder(p, 7).draw("standby-1", "rec-2", 5); !slices.Equal(a, b) {
		t.Error("the same seed drew other content")
	}
}
