package yamlerr_test

import (
	"errors"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"understudy/yamlerr"
)

// colour accepts only red or blue, and says so at the value.
type colour string

func (c *colour) UnmarshalYAML(node ast.Node) error {
	s, ok := node.(*ast.StringNode)
	if !ok || (s.Value != "red" && s.Value != "blue") {
		return yamlerr.At(node, "colour %s: want red or blue", node.String())
	}
	*c = colour(s.Value)
	return nil
}

type settings struct {
	Name   string `yaml:"name"`
	Colour colour `yaml:"colour"`
}

// A mistake in a file is reported at its file:line:col, whether go-yaml
// found it (an unknown key in a strict decoding) or a type's own
// UnmarshalYAML did (At).
func TestMistakesAreReportedAtTheirPosition(t *testing.T) {
	for doc, want := range map[string]string{
		"name: a\ncolour: green\n": "site.yaml:2:9: colour green: want red or blue",
		"name: a\ncolor: red\n":    `site.yaml:2:1: unknown field "color"`,
	} {
		var s settings
		err := yaml.UnmarshalWithOptions([]byte(doc), &s, yaml.Strict())
		if err == nil {
			t.Fatalf("%q decoded", doc)
		}
		if got := yamlerr.Positioned("site.yaml", err).Error(); got != want {
			t.Errorf("%q: %q, want %q", doc, got, want)
		}
	}
	if got := yamlerr.Positioned("site.yaml", errors.New("read: no such file")).Error(); got != "site.yaml: read: no such file" {
		t.Errorf("an error without a position: %q", got)
	}
}

func TestErrorsListEveryProblemAndTellWarnings(t *testing.T) {
	es := yamlerr.Errors{
		{File: "site.yaml", Line: 3, Col: 5, Msg: "no standby in pool a"},
		{File: "site.yaml", Line: 9, Col: 1, Msg: "failback before detection", Warning: true},
	}
	want := "site.yaml:3:5: no standby in pool a\nsite.yaml:9:1: warning: failback before detection"
	if es.Error() != want {
		t.Errorf("%q, want %q", es.Error(), want)
	}
	var e *yamlerr.Error
	if !errors.As(error(es[1]), &e) || !e.Warning {
		t.Error("an *Error is not found with errors.As")
	}
}
