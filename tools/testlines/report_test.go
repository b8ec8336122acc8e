package main

import (
	"strings"
	"testing"
)

const stream = `{"Action":"start","Package":"p/fast"}
{"Action":"run","Package":"p/fast","Test":"TestQuick"}
{"Action":"output","Package":"p/fast","Test":"TestQuick","Output":"=== RUN   TestQuick\n"}
{"Action":"pass","Package":"p/fast","Test":"TestQuick","Elapsed":0.01}
{"Action":"output","Package":"p/fast","Output":"ok  \tp/fast\t0.02s\n"}
{"Action":"pass","Package":"p/fast","Elapsed":0.02}
{"Action":"run","Package":"p/slow","Test":"TestLong"}
{"Action":"run","Package":"p/slow","Test":"TestLong/part"}
{"Action":"pass","Package":"p/slow","Test":"TestLong/part","Elapsed":2}
{"Action":"pass","Package":"p/slow","Test":"TestLong","Elapsed":3.25}
{"Action":"output","Package":"p/slow","Test":"TestNoTool","Output":"    x_test.go:9: chromium is not installed\n"}
{"Action":"output","Package":"p/slow","Test":"TestNoTool","Output":"--- SKIP: TestNoTool (0.00s)\n"}
{"Action":"skip","Package":"p/slow","Test":"TestNoTool"}
{"Action":"output","Package":"p/slow","Test":"TestBroken","Output":"    x_test.go:12: want 2, got 3\n"}
{"Action":"fail","Package":"p/slow","Test":"TestBroken","Elapsed":0.5}
{"Action":"output","Package":"p/slow","Output":"FAIL\tp/slow\t4.1s\n"}
{"Action":"fail","Package":"p/slow","Elapsed":4.1}
vet: something the go command said
`

func TestALineForSlowSkippedAndFailedTestsAndEachPackage(t *testing.T) {
	var out strings.Builder
	err := run(strings.NewReader(stream), &out)
	if err == nil || !strings.Contains(err.Error(), "1 failed") {
		t.Errorf("error %v, want 1 failed", err)
	}
	want := "ok  \tp/fast\t0.02s\n" +
		"    ok   p/slow TestLong (3.2s)\n" +
		"    skip p/slow TestNoTool: x_test.go:9: chromium is not installed\n" +
		"--- FAIL p/slow TestBroken (0.50s)\n    x_test.go:12: want 2, got 3\n" +
		"FAIL\tp/slow\t4.1s\n" +
		"vet: something the go command said\n"
	if out.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestABuildFailureFails(t *testing.T) {
	var out strings.Builder
	in := `{"ImportPath":"p [p.test]","Action":"build-output","Output":"# p [p.test]\n"}
{"ImportPath":"p [p.test]","Action":"build-output","Output":"./a.go:2:9: syntax error\n"}
{"ImportPath":"p [p.test]","Action":"build-fail"}
{"Action":"start","Package":"p"}
{"Action":"output","Package":"p","Output":"FAIL\tp [build failed]\n"}
{"Action":"fail","Package":"p","Elapsed":0,"FailedBuild":"p [p.test]"}
`
	if err := run(strings.NewReader(in), &out); err == nil {
		t.Error("a build failure passed")
	}
	if got := out.String(); got != "# p [p.test]\n./a.go:2:9: syntax error\nFAIL\tp [build failed]\n" {
		t.Errorf("log:\n%s", got)
	}
}

func TestAllPassedIsNoError(t *testing.T) {
	var out strings.Builder
	in := `{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p","Elapsed":0.1}
`
	if err := run(strings.NewReader(in), &out); err != nil || out.String() != "ok  \tp\t0.1s\n" {
		t.Errorf("run = %v, log %q", err, out.String())
	}
}
