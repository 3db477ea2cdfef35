package producer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/acmeq/acmeq/messages"
)

// CertManagerAPIVersion is cert-manager's apiVersion, accepted besides
// messages.APIVersion so users can paste their cert-manager manifests.
const CertManagerAPIVersion = "cert-manager.io/v1"

// maxDecodeErrors bounds how many document errors Decode collects.
const maxDecodeErrors = 20

// Decode reads every resource of r (see Decoder for the formats). It
// reports the problems of all documents at once, joined with errors.Join,
// and returns no objects if there is any.
func Decode(r io.Reader) ([]messages.Object, error) {
	d := NewDecoder(r)
	var objs []messages.Object
	var errs []error
	for {
		obj, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, err)
			if d.err != nil {
				break // the stream cannot be resynchronised
			}
			if len(errs) == maxDecodeErrors {
				errs = append(errs, fmt.Errorf("producer: more than %d documents are invalid, stopped reading", maxDecodeErrors))
				break
			}
			continue
		}
		objs = append(objs, obj)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

type decodeMode int

const (
	modeUnknown   decodeMode = iota
	modeYAML                 // documents separated by "---" lines
	modeJSON                 // a JSON object, or one per line (JSON Lines)
	modeJSONArray            // a JSON array of objects
)

// Decoder reads Issuers and Certificates one at a time, so a file of
// 100,000 lines is never held in memory at once. The format is chosen by
// the first character of the input:
//
//   - '[': a JSON array of objects;
//   - '{': a JSON object, or a sequence of them such as JSON Lines (one
//     object per line);
//   - anything else: YAML, possibly several documents separated by lines
//     "---". Empty documents are skipped.
//
// Each document needs apiVersion acmeq.io/v1 (or cert-manager.io/v1) and
// kind Issuer or Certificate (case-insensitive, plurals and "cert"
// accepted); unknown fields are errors. Errors start with the 1-based
// index of the document: `document 3: apiVersion: "v2" is not supported
// (want acmeq.io/v1)`.
type Decoder struct {
	src  io.Reader
	br   *bufio.Reader
	jd   *json.Decoder
	mode decodeMode
	doc  int   // documents returned so far (including invalid ones)
	eof  bool  // YAML: the input is exhausted
	err  error // sticky: the input cannot be read further
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{src: r}
}

// Next returns the next resource, already typed (*messages.Issuer or
// *messages.Certificate, with apiVersion acmeq.io/v1 and the canonical
// kind), or io.EOF after the last. After an error in one document Next can
// be called again to continue with the next one, unless the input itself is
// broken (unreadable, or invalid JSON), in which case Next keeps returning
// that error.
func (d *Decoder) Next() (messages.Object, error) {
	if d.err != nil {
		return nil, d.err
	}
	if d.mode == modeUnknown {
		if err := d.sniff(); err != nil {
			d.err = err
			return nil, err
		}
	}
	var raw []byte
	var err error
	switch d.mode {
	case modeYAML:
		raw, err = d.nextYAML()
	default:
		raw, err = d.nextJSON()
	}
	if err != nil {
		return nil, err
	}
	return decodeDocument(d.doc, raw)
}

// sniff picks the format from the first non-blank character.
func (d *Decoder) sniff() error {
	d.br = bufio.NewReaderSize(d.src, 64<<10)
	if bom, _ := d.br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = d.br.Discard(3)
	}
	// Skip blank space, keeping the indentation of the first non-blank line
	// so that YAML sees it unchanged.
	var indent []byte
	for {
		b, err := d.br.ReadByte()
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return fmt.Errorf("producer: read: %w", err)
		}
		switch b {
		case ' ', '\t', '\r':
			indent = append(indent, b)
			continue
		case '\n':
			indent = indent[:0]
			continue
		}
		_ = d.br.UnreadByte()
		switch b {
		case '[':
			d.mode = modeJSONArray
			d.jd = json.NewDecoder(d.br)
			if _, err := d.jd.Token(); err != nil {
				return fmt.Errorf("document 1: invalid JSON: %w", err)
			}
		case '{':
			d.mode = modeJSON
			d.jd = json.NewDecoder(d.br)
		default:
			d.mode = modeYAML
			if len(indent) > 0 {
				d.br = bufio.NewReader(io.MultiReader(bytes.NewReader(indent), d.br))
			}
		}
		return nil
	}
}

func (d *Decoder) nextJSON() ([]byte, error) {
	if d.mode == modeJSONArray && !d.jd.More() {
		if _, err := d.jd.Token(); err != nil { // the closing ']'
			d.err = d.jsonError(err)
			return nil, d.err
		}
		if _, err := d.jd.Token(); err != io.EOF {
			d.err = fmt.Errorf("document %d: unexpected data after the JSON array", d.doc+1)
			return nil, d.err
		}
		d.err = io.EOF
		return nil, io.EOF
	}
	var raw json.RawMessage
	if err := d.jd.Decode(&raw); err != nil {
		if err == io.EOF && d.mode == modeJSON {
			d.err = io.EOF
			return nil, io.EOF
		}
		d.err = d.jsonError(err)
		return nil, d.err
	}
	d.doc++
	return raw, nil
}

func (d *Decoder) jsonError(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("document %d: invalid JSON at byte %d: %w", d.doc+1, se.Offset, err)
	}
	return fmt.Errorf("document %d: invalid JSON: %w", d.doc+1, err)
}

func (d *Decoder) nextYAML() ([]byte, error) {
	for {
		if d.eof {
			d.err = io.EOF
			return nil, io.EOF
		}
		var buf bytes.Buffer
		for {
			line, err := d.br.ReadString('\n')
			if line != "" {
				if isDocumentSeparator(line) {
					break
				}
				buf.WriteString(line)
			}
			if err == io.EOF {
				d.eof = true
				break
			}
			if err != nil {
				d.err = fmt.Errorf("producer: read: %w", err)
				return nil, d.err
			}
		}
		j, err := yaml.YAMLToJSON(buf.Bytes())
		if err == nil && bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			continue // empty document, or comments only
		}
		d.doc++
		if err != nil {
			return nil, fmt.Errorf("document %d: invalid YAML: %v", d.doc, err)
		}
		return j, nil
	}
}

// isDocumentSeparator reports whether a YAML line starts a new document
// ("---") or ends one ("..."), optionally followed by a comment.
func isDocumentSeparator(line string) bool {
	for _, marker := range []string{"---", "..."} {
		rest, ok := strings.CutPrefix(line, marker)
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if rest == "" || strings.HasPrefix(rest, "#") {
			return true
		}
	}
	return false
}

// decodeDocument turns document n (JSON) into a typed resource.
func decodeDocument(n int, raw []byte) (messages.Object, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("document %d: want an object with apiVersion and kind, got %s", n, jsonType(trimmed))
	}
	var probe struct {
		APIVersion any `json:"apiVersion"`
		Kind       any `json:"kind"`
	}
	if err := json.Unmarshal(trimmed, &probe); err != nil {
		return nil, fmt.Errorf("document %d: %s", n, strings.TrimPrefix(err.Error(), "json: "))
	}
	switch v := probe.APIVersion.(type) {
	case nil:
		return nil, fmt.Errorf("document %d: apiVersion: required (want %s)", n, messages.APIVersion)
	case string:
		if v != messages.APIVersion && v != CertManagerAPIVersion {
			return nil, fmt.Errorf("document %d: apiVersion: %q is not supported (want %s)", n, v, messages.APIVersion)
		}
	default:
		return nil, fmt.Errorf("document %d: apiVersion: must be a string (want %s)", n, messages.APIVersion)
	}
	var kindName string
	switch v := probe.Kind.(type) {
	case nil:
		return nil, fmt.Errorf("document %d: kind: required (want Issuer or Certificate)", n)
	case string:
		kindName = v
	default:
		return nil, fmt.Errorf("document %d: kind: must be a string (want Issuer or Certificate)", n)
	}
	kind, err := messages.ParseKind(kindName)
	switch {
	case err != nil || kind == messages.KindSecret:
		return nil, fmt.Errorf("document %d: kind: %q is not supported (want Issuer or Certificate)", n, kindName)
	case kind == messages.KindCertificateRequest || kind == messages.KindOrder || kind == messages.KindChallenge:
		return nil, fmt.Errorf("document %d: kind: %s cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer or Certificate)", n, kind)
	}
	var obj messages.Object
	var tm *messages.TypeMeta
	switch kind {
	case messages.KindIssuer:
		o := new(messages.Issuer)
		obj, tm = o, &o.TypeMeta
	default:
		o := new(messages.Certificate)
		obj, tm = o, &o.TypeMeta
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		if path := unknownField(trimmed, reflect.TypeOf(obj)); path != "" {
			return nil, fmt.Errorf("document %d (%s): %s: unknown field", n, kind, path)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" && te.Type != nil {
			return nil, fmt.Errorf("document %d (%s): %s: got a JSON %s, want %s", n, kind, te.Field, te.Value, describeType(te.Type))
		}
		return nil, fmt.Errorf("document %d (%s): %s", n, kind, strings.TrimPrefix(err.Error(), "json: "))
	}
	tm.APIVersion, tm.Kind = messages.APIVersion, kind
	return obj, nil
}

func jsonType(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// unknownField returns the path ("spec.acme.foo", "spec.acme.solvers[1].bar")
// of the first field of the JSON object raw that t does not have, or "".
// encoding/json names only the key, not where it is.
func unknownField(raw []byte, t reflect.Type) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	return findUnknown(v, t, "")
}

func findUnknown(v any, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			f, ok := lookupField(fields, k)
			if !ok {
				return p
			}
			if u := findUnknown(v[k], f.Type, p); u != "" {
				return u
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return ""
		}
		for i, e := range v {
			if u := findUnknown(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); u != "" {
				return u
			}
		}
	}
	return ""
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

// lookupField finds a field as encoding/json does: exact name first, then
// case-insensitively.
func lookupField(fields map[string]reflect.StructField, key string) (reflect.StructField, bool) {
	if f, ok := fields[key]; ok {
		return f, true
	}
	for name, f := range fields {
		if strings.EqualFold(name, key) {
			return f, true
		}
	}
	return reflect.StructField{}, false
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
