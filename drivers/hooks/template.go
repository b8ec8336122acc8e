package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// funcs returns the template functions available to hook templates.
func funcs() template.FuncMap {
	return template.FuncMap{
		"json": jsonFunc,
		"join": joinFunc,
	}
}

// jsonFunc renders v as compact JSON (without HTML escaping).
func jsonFunc(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// joinFunc joins the elements of a list (any slice or array, such as []any or
// []string) with sep, formatting each with fmt.Sprint: {{join .streams ","}}.
func joinFunc(list any, sep string) (string, error) {
	if list == nil {
		return "", nil
	}
	switch l := list.(type) {
	case []string:
		return strings.Join(l, sep), nil
	case []any:
		parts := make([]string, len(l))
		for i, e := range l {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, sep), nil
	}
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return "", fmt.Errorf("join: %T is not a list", list)
	}
	parts := make([]string, v.Len())
	for i := range parts {
		parts[i] = fmt.Sprint(v.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

// parseTemplate parses one hook template. name says which field it came from.
func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs()).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template %q does not parse: %w", oneLine(text, 80), err)
	}
	return t, nil
}

// hasActions reports whether a parsed template does anything but print its
// own text.
func hasActions(t *template.Template) bool {
	if t.Tree == nil || t.Root == nil {
		return false
	}
	for _, n := range t.Root.Nodes {
		if n.Type() != parse.NodeText {
			return true
		}
	}
	return false
}

// expand parses and executes one template with data. name says which field
// the template came from and appears in errors, as does any missing key.
func expand(name, text string, data map[string]any) (string, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if !hasActions(t) {
		return text, nil
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		if key, ok := missingKey(err); ok {
			return "", fmt.Errorf("%s: template %q: the data has no key %q (keys: %s): %w",
				name, oneLine(text, 80), key, strings.Join(sortedKeys(data), ", "), err)
		}
		return "", fmt.Errorf("%s: template %q: %w", name, oneLine(text, 80), err)
	}
	return b.String(), nil
}

// missingKey extracts the key from text/template's missingkey=error failure.
func missingKey(err error) (string, bool) {
	var execErr template.ExecError
	if !errors.As(err, &execErr) {
		return "", false
	}
	const marker = "map has no entry for key "
	msg := execErr.Error()
	i := strings.LastIndex(msg, marker)
	if i < 0 {
		return "", false
	}
	key, err2 := strconv.QuotedPrefix(msg[i+len(marker):])
	if err2 != nil {
		return "", false
	}
	if k, err2 := strconv.Unquote(key); err2 == nil {
		return k, true
	}
	return "", false
}

func argName(i int) string { return "exec argument " + strconv.Itoa(i) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
