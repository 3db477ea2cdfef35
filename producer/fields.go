package producer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
)

// fieldChecker walks a JSON document, already known to be valid JSON,
// against the Go type it decodes into. It finds what encoding/json lets
// pass silently: a key given twice in one object (the last would win), and
// a field name that matches only case-insensitively. Every object key of a
// struct must name one of its fields exactly, as in Kubernetes.
//
// It works on the bytes, without allocating per value, because it runs on
// every document of a bulk apply.
type fieldChecker struct {
	raw   []byte
	i     int                  // the next byte
	pos   func(int64) position // nil: raw was converted from YAML
	dupAt int64                // offset of the key given twice, -1 if none
	fatal bool                 // a limit was crossed (nesting, in converted YAML)
	path  []pathSeg            // where the walk is
	keys  []keyAt              // keys of the objects being walked, innermost last
}

// pathSeg is one step of a field path: an object key or a list index.
type pathSeg struct {
	key   string
	index int // when key is ""
	isKey bool
}

// keyAt is an object key and the offset of its opening quote.
type keyAt struct {
	key []byte
	at  int
}

// manyKeys is the number of keys in one object above which duplicates are
// found with a map rather than by comparing with each earlier key.
const manyKeys = 16

// check walks the whole document as a value of type t.
func (w *fieldChecker) check(t reflect.Type) error {
	return w.value(t, 1)
}

// value walks the value at w.i, of type t (nil: anything), nested depth
// deep.
func (w *fieldChecker) value(t reflect.Type, depth int) error {
	w.skipSpace()
	switch w.raw[w.i] {
	case '{':
		if depth > MaxDocumentDepth {
			w.fatal = true
			return fmt.Errorf("nested deeper than %d levels, the limit for one document", MaxDocumentDepth)
		}
		return w.object(typeInfoOf(t), depth)
	case '[':
		if depth > MaxDocumentDepth {
			w.fatal = true
			return fmt.Errorf("nested deeper than %d levels, the limit for one document", MaxDocumentDepth)
		}
		return w.array(typeInfoOf(t), depth)
	case '"':
		w.skipString()
	default:
		w.skipLiteral()
	}
	return nil
}

func (w *fieldChecker) object(ti *typeInfo, depth int) error {
	w.i++ // '{'
	first := len(w.keys)
	defer func() { w.keys = w.keys[:first] }()
	var seen map[string]int // once the object has many keys
	for {
		w.skipSpace()
		switch w.raw[w.i] {
		case '}':
			w.i++
			return nil
		case ',':
			w.i++
			w.skipSpace()
		}
		at := w.i
		key := w.readString()
		// Duplicates.
		prev := -1
		switch {
		case seen != nil:
			if p, ok := seen[string(key)]; ok {
				prev = p
			}
		default:
			for _, k := range w.keys[first:] {
				if bytes.Equal(k.key, key) {
					prev = k.at
					break
				}
			}
		}
		if prev >= 0 {
			w.dupAt = int64(at)
			p := w.pathWith(string(key))
			if w.pos == nil {
				return fmt.Errorf("%s: duplicate key", p)
			}
			fp := w.pos(int64(prev))
			return fmt.Errorf("%s: duplicate key (first at line %d, column %d)", p, fp.line, fp.column)
		}
		w.keys = append(w.keys, keyAt{key: key, at: at})
		if seen == nil && len(w.keys)-first > manyKeys {
			seen = make(map[string]int, 2*manyKeys)
			for _, k := range w.keys[first:] {
				seen[string(k.key)] = k.at
			}
		} else if seen != nil {
			seen[string(key)] = at
		}
		// The field.
		var ft reflect.Type
		switch {
		case ti == nil:
		case ti.fields != nil:
			f, ok := ti.fields[string(key)]
			if !ok {
				p := w.pathWith(string(key))
				for name := range ti.fields {
					if strings.EqualFold(name, string(key)) {
						return fmt.Errorf("%s: unknown field (did you mean %q?)", p, name)
					}
				}
				return fmt.Errorf("%s: unknown field", p)
			}
			ft = f.Type
		default:
			ft = ti.elem
		}
		w.skipSpace()
		w.i++ // ':'
		w.path = append(w.path, pathSeg{key: string(key), isKey: true})
		if err := w.value(ft, depth+1); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
}

func (w *fieldChecker) array(ti *typeInfo, depth int) error {
	w.i++ // '['
	var et reflect.Type
	if ti != nil && ti.fields == nil {
		et = ti.elem
	}
	for n := 0; ; n++ {
		w.skipSpace()
		switch w.raw[w.i] {
		case ']':
			w.i++
			return nil
		case ',':
			w.i++
		}
		w.path = append(w.path, pathSeg{index: n})
		if err := w.value(et, depth+1); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
}

func (w *fieldChecker) skipSpace() {
	for w.i < len(w.raw) {
		switch w.raw[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
			continue
		}
		return
	}
}

// readString returns the key at w.i (a JSON string), unescaped, and moves
// past it.
func (w *fieldChecker) readString() []byte {
	start := w.i
	w.skipString()
	raw := w.raw[start+1 : w.i-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	var s string
	if err := json.Unmarshal(w.raw[start:w.i], &s); err != nil {
		return raw // cannot happen: the document is valid JSON
	}
	return []byte(s)
}

// skipString moves past the JSON string at w.i.
func (w *fieldChecker) skipString() {
	w.i++ // the opening quote
	for w.i < len(w.raw) {
		switch w.raw[w.i] {
		case '\\':
			w.i += 2
			continue
		case '"':
			w.i++
			return
		}
		w.i++
	}
}

// skipLiteral moves past a number, true, false or null.
func (w *fieldChecker) skipLiteral() {
	for w.i < len(w.raw) {
		switch w.raw[w.i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return
		}
		w.i++
	}
}

// pathWith renders the current path followed by key.
func (w *fieldChecker) pathWith(key string) string {
	p := ""
	for _, s := range w.path {
		if s.isKey {
			p = joinPath(p, s.key)
		} else {
			p = fmt.Sprintf("%s[%d]", p, s.index)
		}
	}
	return joinPath(p, key)
}

// typeInfo is what the checker needs of a Go type: the fields of a struct
// by JSON name, or the element type of a map, slice or array.
type typeInfo struct {
	fields map[string]reflect.StructField
	elem   reflect.Type
}

var (
	typeInfos       sync.Map // reflect.Type -> *typeInfo (nil: anything goes)
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// typeInfoOf describes t, or returns nil when the checker cannot look
// inside it: t is nil, a scalar, or decodes itself (time.Time).
func typeInfoOf(t reflect.Type) *typeInfo {
	if t == nil {
		return nil
	}
	if ti, ok := typeInfos.Load(t); ok {
		return ti.(*typeInfo)
	}
	var ti *typeInfo
	et := t
	for et.Kind() == reflect.Pointer {
		et = et.Elem()
	}
	switch {
	case reflect.PointerTo(et).Implements(jsonUnmarshaler):
	case et.Kind() == reflect.Struct:
		ti = &typeInfo{fields: jsonFields(et)}
	case et.Kind() == reflect.Map, et.Kind() == reflect.Slice, et.Kind() == reflect.Array:
		ti = &typeInfo{elem: et.Elem()}
	}
	typeInfos.Store(t, ti)
	return ti
}

// simpleKeyRE matches keys that read well in a dotted path.
var simpleKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// joinPath appends an object key to a field path: "spec.dnsNames", or
// `metadata.labels["app.kubernetes.io/name"]` for a key that is not a plain
// word.
func joinPath(path, key string) string {
	if len(key) <= maxEcho && simpleKeyRE.MatchString(key) {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	return path + "[" + quote(key) + "]"
}

// jsonFields maps the JSON names of a struct's fields, including those of
// embedded structs, to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, sf := range jsonFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = sf
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// describeType names a Go type in the words of a manifest's author.
func describeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		return "an object"
	case reflect.Map:
		return "an object of " + describeType(t.Elem()) + "s"
	case reflect.Slice, reflect.Array:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(describeType(t.Elem()), "a "), "an ") + "s"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}
