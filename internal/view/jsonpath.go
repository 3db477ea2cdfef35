package view

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/client-go/util/jsonpath"
)

// JSONPath is a parsed kubectl -o jsonpath template, evaluated by
// client-go's jsonpath package, the one kubectl uses: every kubectl
// expression works ({.a.b}, {.a[0]}, {.a[1:3]}, {.a[*].b}, {..name},
// unions {.a['b','c']}, filters {.a[?(@.type=="Ready")].status},
// {range .items[*]}...{end}, {"literal"}, escaped dots {.data.tls\.crt}).
// As with kubectl, missing keys print nothing, several results are
// separated by a space, objects and lists print as compact JSON, and
// nothing is added at the end.
type JSONPath struct {
	src    string
	asJSON bool // -o jsonpath-as-json: the results as an indented JSON array
}

// ParseJSONPath parses a template, as kubectl does before it reads any
// resource.
func ParseJSONPath(tmpl string) (*JSONPath, error) {
	if _, err := newJSONPath(tmpl); err != nil {
		return nil, err
	}
	return &JSONPath{src: tmpl}, nil
}

// newJSONPath parses tmpl into a client-go JSONPath. A client-go JSONPath
// with a {range} rewrites its own parse tree while it runs, so each
// evaluation gets a fresh one (get -w evaluates a template many times).
func newJSONPath(tmpl string) (*jsonpath.JSONPath, error) {
	j := jsonpath.New("out").AllowMissingKeys(true)
	if err := j.Parse(tmpl); err != nil {
		return nil, fmt.Errorf("error parsing jsonpath %s: %w", tmpl, err)
	}
	return j, nil
}

// String is the template as given.
func (j *JSONPath) String() string { return j.src }

// Execute writes the template evaluated against data (any value that
// encodes to JSON; it is evaluated as that JSON, as kubectl evaluates a
// resource). Nothing is written when evaluation fails.
func (j *JSONPath) Execute(w io.Writer, data any) error {
	root, err := toGeneric(data)
	if err != nil {
		return err
	}
	jp, err := newJSONPath(j.src)
	if err != nil {
		return err
	}
	jp.EnableJSONOutput(j.asJSON)
	var buf bytes.Buffer
	if err := jp.Execute(&buf, root); err != nil {
		// Unlike kubectl, the object is not dumped into the error: it may
		// be a Secret.
		return fmt.Errorf("error executing jsonpath %q: %w", j.src, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// ExecuteJSONPath parses tmpl and evaluates it against data.
func ExecuteJSONPath(tmpl string, data any) (string, error) {
	j, err := ParseJSONPath(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := j.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// toGeneric is data as the JSON values kubectl's unstructured objects
// hold: integers as int64 (so 12345678 prints as such, not 1.2345678e+07,
// and compares with numbers in filters), other numbers as float64.
func toGeneric(data any) (any, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return convertNumbers(v), nil
}

func convertNumbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			t[k] = convertNumbers(c)
		}
	case []any:
		for i, c := range t {
			t[i] = convertNumbers(c)
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
		return t.String()
	}
	return v
}
