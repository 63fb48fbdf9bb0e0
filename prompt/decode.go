package prompt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/budhq/bud"
)

// decodeJSON reads exactly one JSON value, keeping numbers exact so that the
// strict decoder can tell 3 from 3.5.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		var syntax *json.SyntaxError
		switch {
		case errors.As(err, &syntax):
			return nil, bud.Errorf(bud.EINVALID, "invalid JSON at offset %d: %s", syntax.Offset, syntax)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, bud.Errorf(bud.EINVALID, "invalid JSON: unexpected end of input")
		}
		return nil, bud.Errorf(bud.EINVALID, "invalid JSON: %s", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bud.Errorf(bud.EINVALID, "invalid JSON at offset %d: unexpected data after the value", dec.InputOffset())
	}
	return v, nil
}

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// decodeInto stores the generic JSON value v into out, recording a problem
// for every unknown field and every value of the wrong type instead of
// stopping at the first, which encoding/json cannot do. Struct fields are
// matched by their json tags; JSON null leaves a field as it is.
func decodeInto(p *bud.Problems, path string, v any, out reflect.Value) {
	if v == nil {
		return
	}
	if out.CanAddr() && out.Addr().Type().Implements(unmarshalerType) {
		raw, err := json.Marshal(v)
		if err == nil {
			err = out.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(raw)
		}
		if err != nil {
			p.Add(path, "%s", err)
		}
		return
	}
	switch out.Kind() {
	case reflect.Pointer:
		elem := reflect.New(out.Type().Elem())
		decodeInto(p, path, v, elem.Elem())
		out.Set(elem)
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			p.Add(path, "must be a string")
			return
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			p.Add(path, "must be a boolean")
			return
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			p.Add(path, "must be an integer")
			return
		}
		i, err := n.Int64()
		if err != nil || out.OverflowInt(i) {
			p.Add(path, "must be an integer")
			return
		}
		out.SetInt(i)
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			p.Add(path, "must be a number")
			return
		}
		f, err := n.Float64()
		if err != nil || math.IsInf(f, 0) {
			p.Add(path, "must be a finite number")
			return
		}
		out.SetFloat(f)
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			p.Add(path, "must be an array")
			return
		}
		s := reflect.MakeSlice(out.Type(), len(arr), len(arr))
		for i, e := range arr {
			decodeInto(p, fmt.Sprintf("%s[%d]", path, i), e, s.Index(i))
		}
		out.Set(s)
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			p.Add(path, "must be an object")
			return
		}
		fields := jsonFields(out.Type())
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				p.Add(joinPath(path, k), "unknown field")
				continue
			}
			decodeInto(p, joinPath(path, k), obj[k], out.FieldByIndex(f))
		}
	default:
		// Every type of the document is handled above; reaching here is a
		// bug in this package, not in the input.
		panic(fmt.Sprintf("prompt: decode: unsupported kind %s", out.Kind()))
	}
}

// jsonFields maps the JSON names of t's fields to their indexes; the
// fields of an embedded struct read as the outer struct's, as
// encoding/json reads them.
func jsonFields(t reflect.Type) map[string][]int {
	m := make(map[string][]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct && f.Tag.Get("json") == "" {
			for name, idx := range jsonFields(f.Type) {
				m[name] = append([]int{i}, idx...)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = []int{i}
	}
	return m
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
