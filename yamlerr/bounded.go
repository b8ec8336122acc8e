package yamlerr

import (
	"fmt"
	"io"
	"os"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Bounds of a YAML file understudy reads. A site.yaml of a large site is a
// few hundred KiB at most; what is bigger, or whose aliases expand to more
// than MaxAliasNodes, is refused before it is decoded: decoding expands
// every alias into a copy, so nine levels of nine aliases (a "billion
// laughs") would take gigabytes.
const (
	// MaxDocument bounds a YAML file, in bytes.
	MaxDocument = 1 << 20
	// MaxAliasNodes bounds how many nodes (mappings, sequences, scalars)
	// the aliases of a file add to it when they are expanded.
	MaxAliasNodes = 100_000
)

// ReadFile reads a YAML file of at most MaxDocument bytes; a larger one is
// refused (with file) without being read whole.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxDocument+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxDocument {
		return nil, &Error{File: path, Msg: fmt.Sprintf("the file is over %d bytes (limit %d)", MaxDocument, MaxDocument)}
	}
	return data, nil
}

// Parse parses a YAML file's content (named file in errors) within the
// bounds: at most MaxDocument bytes, and aliases that add at most
// MaxAliasNodes nodes. A syntax error, or the alias that goes over the
// bound, is an *Error at its file:line:col.
func Parse(file string, data []byte) (*ast.File, error) {
	if len(data) > MaxDocument {
		return nil, &Error{File: file, Msg: fmt.Sprintf("the file is %d bytes (limit %d)", len(data), MaxDocument)}
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, Positioned(file, err)
	}
	for _, doc := range f.Docs {
		w := aliasWalk{anchors: map[string]int64{}}
		w.size(doc)
		if w.over != nil {
			pos := w.over.GetToken().Position
			return nil, &Error{File: file, Line: pos.Line, Col: pos.Column,
				Msg: fmt.Sprintf("aliases expand to more than %d nodes here (the limit; an alias bomb?): write the values out, or use fewer levels of aliases", MaxAliasNodes)}
		}
	}
	return f, nil
}

// aliasWalk counts the nodes of a document with its aliases expanded, in
// document order (an alias names the anchor defined last before it).
type aliasWalk struct {
	anchors map[string]int64 // anchor name: size of its value, expanded
	added   int64            // nodes the aliases added so far
	over    ast.Node         // the alias that went over MaxAliasNodes
}

// cap keeps sums from overflowing: nothing counts beyond it.
const sizeCap = int64(1) << 40

func (w *aliasWalk) size(n ast.Node) int64 {
	if n == nil || w.over != nil {
		return 0
	}
	switch n := n.(type) {
	case *ast.DocumentNode:
		return w.size(n.Body)
	case *ast.AnchorNode:
		v := w.size(n.Value)
		if n.Name != nil {
			w.anchors[n.Name.GetToken().Value] = v
		}
		return v
	case *ast.AliasNode:
		v := int64(1)
		if n.Value != nil {
			if s, ok := w.anchors[n.Value.GetToken().Value]; ok {
				v = s
			}
		}
		w.added = min(w.added+v, sizeCap)
		if w.added > MaxAliasNodes {
			w.over = n
		}
		return v
	case *ast.TagNode:
		return w.size(n.Value)
	case *ast.MappingKeyNode:
		return w.size(n.Value)
	case *ast.MappingValueNode:
		return min(w.size(n.Key)+w.size(n.Value), sizeCap)
	case *ast.MappingNode:
		sum := int64(1)
		for _, v := range n.Values {
			sum = min(sum+w.size(v), sizeCap)
		}
		return sum
	case *ast.SequenceNode:
		sum := int64(1)
		for _, v := range n.Values {
			sum = min(sum+w.size(v), sizeCap)
		}
		return sum
	}
	return 1
}
