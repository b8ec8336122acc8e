package yamlerr_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"understudy/yamlerr"
)

// aliasBomb is nine levels of nine aliases each under key (a "billion
// laughs"): decoded, 9^9 strings.
func aliasBomb(key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n  l0: &l0 \"lol\"\n", key)
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "  l%d: &l%d [", i, i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// An alias bomb is refused before it is decoded, at the alias that goes
// over the bound; a file with the usual aliases is not.
func TestParseRefusesAnAliasBomb(t *testing.T) {
	doc := "site: hall\n" + aliasBomb("settings")
	_, err := yamlerr.Parse("site.yaml", []byte(doc))
	var e *yamlerr.Error
	if !errors.As(err, &e) {
		t.Fatalf("alias bomb: %v, want an *Error", err)
	}
	// Levels 1 to 5 add 9 + 90 + 819 + 7,380 + 66,429 = 74,727 nodes;
	// the first alias of level 6 (on line 9) adds 66,430 more.
	if !strings.HasPrefix(e.Error(), "site.yaml:9:12: aliases expand to more than 100000 nodes") {
		t.Errorf("error %q, want it at site.yaml:9:12 (level 6's first alias)", e.Error())
	}

	ok := `
defaults: &defaults {heartbeat: 1s, lost_after: 3s}
members:
  - {id: a, <<: *defaults}
  - {id: b, <<: *defaults}
list: &l [1, 2, 3]
again: [*l, *l, *l]
`
	f, err := yamlerr.Parse("ok.yaml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.NodeToValue(f.Docs[0].Body, &v); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(v["again"]) != "[[1 2 3] [1 2 3] [1 2 3]]" {
		t.Errorf("again = %v", v["again"])
	}
	// Just under the bound: 1 + 10 × 9,999 nodes added by aliases.
	var under strings.Builder
	under.WriteString("big: &big [" + strings.Repeat("0, ", 9_998) + "0]\nuse: [")
	for i := range 10 {
		if i > 0 {
			under.WriteString(", ")
		}
		under.WriteString("*big")
	}
	under.WriteString("]\n")
	if _, err := yamlerr.Parse("under.yaml", []byte(under.String())); err != nil {
		t.Errorf("10 aliases of 9,999 nodes: %v", err)
	}
}

// A file over MaxDocument is refused, by Parse and by ReadFile (which does
// not read it whole).
func TestDocumentSizeIsBounded(t *testing.T) {
	big := []byte("a: \"" + strings.Repeat("x", yamlerr.MaxDocument) + "\"\n")
	if _, err := yamlerr.Parse("big.yaml", big); err == nil || !strings.Contains(err.Error(), "big.yaml: the file is") {
		t.Errorf("Parse of %d bytes: %v", len(big), err)
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := yamlerr.ReadFile(path); err == nil || !strings.Contains(err.Error(), "limit 1048576") {
		t.Errorf("ReadFile of %d bytes: %v", len(big), err)
	}
	if _, err := yamlerr.ReadFile(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}
