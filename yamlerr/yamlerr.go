// Package yamlerr is how understudy reports a mistake in a YAML file an
// installer wrote (site.yaml, a driver's settings, a scenario, a member's
// description): at its file:line:col, all mistakes of a file at once, and
// with warnings told apart from errors.
//
// It is a leaf: it imports nothing of understudy, so a driver can report a
// mistake in its own settings (At, from its UnmarshalYAML) and recognise
// the errors of the settings it is given (errors.As an *Error) without
// depending on the runtime's config package, which builds on this one.
package yamlerr

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Error is one problem in a YAML file.
type Error struct {
	File      string
	Line, Col int
	Msg       string
	// Warning: the file works, but probably not as meant (understudy check
	// reports it without failing).
	Warning bool
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Warning {
		msg = "warning: " + msg
	}
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, msg)
}

// Errors is every problem found, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Positioned turns an error of go-yaml (a syntax error, a strict decoding's
// unknown field, a type mismatch, an error At returned) into an *Error of
// file with the line and column go-yaml gives. Any other error keeps its
// text and has no position; an *Error (from Parse) is returned as it is.
func Positioned(file string, err error) *Error {
	if e := (*Error)(nil); errors.As(err, &e) {
		return e // already positioned (Parse)
	}
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		tok := ye.GetToken()
		return &Error{File: file, Line: tok.Position.Line, Col: tok.Position.Column, Msg: ye.GetMessage()}
	}
	return &Error{File: file, Msg: err.Error()}
}

// At returns an error at node's position, for a type's UnmarshalYAML to
// report a value it cannot take; the decoding that called it (and then
// Positioned) turns it into file:line:col.
func At(node ast.Node, format string, args ...any) error {
	return &yaml.SyntaxError{Message: fmt.Sprintf(format, args...), Token: node.GetToken()}
}
