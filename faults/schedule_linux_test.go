//go:build linux

package faults

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"understudy/drivers/builtin"
	"understudy/fixtures/testhost"
)

func TestDebugOneSchedule(t *testing.T) {
	seedS := os.Getenv("FAULTS_SEED")
	if seedS == "" {
		t.Skip("FAULTS_SEED")
	}
	seed, _ := strconv.ParseUint(seedS, 10, 64)
	testhost.RequireRoot(t)
	dir := os.Getenv("FAULTS_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	out, err := RunSchedule(context.Background(), Options{
		Binary: binary, Site: "../scripts/manager-backup/site.yaml", Dir: dir,
		Duration: 45 * time.Second, Registry: builtin.Registry(), Progress: testWriter{t},
	}, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out.History.Schedule)
	var b strings.Builder
	Timeline(&b, out.History, out.History.Start.Add(-5*time.Second), out.History.End)
	t.Log(b.String())
	for _, v := range out.Result.Violations {
		var b strings.Builder
		Explain(&b, out.History, v)
		t.Error(b.String())
	}
	t.Logf("covers %+v failbacks %d queued %d actions %d", out.Result.Covers, out.Result.Failbacks, out.Result.Queued, out.Result.Actions)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }
