package evaluation

import (
	"errors"
	"strconv"
	"strings"
)

// pathStep is one step of a JSON path: a member name, or an array index
// when isIndex.
type pathStep struct {
	name    string
	index   int
	isIndex bool
}

// parsePath parses a JSON path of the form $, $.name, $['name'], $[0], in
// any sequence: enough to name one value, nothing that selects several.
func parsePath(p string) ([]pathStep, error) {
	if p == "" {
		return nil, errors.New("is required: a JSON path such as $.answer or $.items[0].name")
	}
	if p[0] != '$' {
		return nil, errors.New("must start with $")
	}
	var steps []pathStep
	rest := p[1:]
	for rest != "" {
		switch {
		case rest[0] == '.':
			rest = rest[1:]
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			if name == "" || strings.ContainsAny(name, " '\"*]") {
				return nil, errors.New("has an empty or unreadable .name step; use ['name'] for names with other characters")
			}
			steps = append(steps, pathStep{name: name})
			rest = rest[end:]
		case strings.HasPrefix(rest, "['") || strings.HasPrefix(rest, `["`):
			q := rest[1]
			end := strings.IndexByte(rest[2:], q)
			if end < 0 || !strings.HasPrefix(rest[2+end+1:], "]") {
				return nil, errors.New("has an unclosed ['name'] step")
			}
			steps = append(steps, pathStep{name: rest[2 : 2+end]})
			rest = rest[2+end+2:]
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, errors.New("has an unclosed [index] step")
			}
			n, err := strconv.Atoi(rest[1:end])
			if err != nil || n < 0 {
				return nil, errors.New("has an index that is not a non-negative integer (wildcards and slices select several values and are not supported)")
			}
			steps = append(steps, pathStep{index: n, isIndex: true})
			rest = rest[end+1:]
		default:
			return nil, errors.New("must continue with .name, ['name'] or [index] steps")
		}
	}
	return steps, nil
}

// walk follows steps into doc, a decoded JSON value.
func walk(doc any, steps []pathStep) (any, bool) {
	for _, s := range steps {
		if s.isIndex {
			list, ok := doc.([]any)
			if !ok || s.index >= len(list) {
				return nil, false
			}
			doc = list[s.index]
			continue
		}
		obj, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = obj[s.name]; !ok {
			return nil, false
		}
	}
	return doc, true
}
