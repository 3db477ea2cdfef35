package view

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"
)

// Format is an output format of get.
type Format int

// The formats of -o.
const (
	// FormatTable is the default: kubectl's table.
	FormatTable Format = iota
	// FormatWide is -o wide: the table with more columns.
	FormatWide
	// FormatJSON is -o json: the resource, or a List of them.
	FormatJSON
	// FormatYAML is -o yaml: the same as YAML.
	FormatYAML
	// FormatJSONPath is -o jsonpath=TEMPLATE, evaluated against the JSON.
	FormatJSONPath
)

// Output is a parsed -o value.
type Output struct {
	Format   Format
	Template *JSONPath
}

// ParseOutput parses -o as kubectl does: "" (table), wide, json, yaml,
// jsonpath=TEMPLATE, or jsonpath-as-json=TEMPLATE (the results as an
// indented JSON array). "jsonpath" or "jsonpath=" without a template is
// kubectl's "template format specified but no template given".
func ParseOutput(s string) (Output, error) {
	switch s {
	case "":
		return Output{Format: FormatTable}, nil
	case "wide":
		return Output{Format: FormatWide}, nil
	case "json":
		return Output{Format: FormatJSON}, nil
	case "yaml":
		return Output{Format: FormatYAML}, nil
	}
	for _, f := range []string{"jsonpath", "jsonpath-as-json"} {
		tmpl, ok := strings.CutPrefix(s, f+"=")
		if !ok {
			if s != f {
				continue
			}
			tmpl = ""
		}
		if tmpl == "" {
			return Output{}, errors.New("template format specified but no template given")
		}
		j, err := ParseJSONPath(tmpl)
		if err != nil {
			return Output{}, err
		}
		j.asJSON = f == "jsonpath-as-json"
		return Output{Format: FormatJSONPath, Template: j}, nil
	}
	return Output{}, fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json, jsonpath, jsonpath-as-json, wide, yaml", s)
}

// Structured reports whether the output prints data (json, yaml, jsonpath)
// rather than a table.
func (o Output) Structured() bool {
	return o.Format == FormatJSON || o.Format == FormatYAML || o.Format == FormatJSONPath
}

// List is what get -o json prints for several resources, as kubectl does.
type List struct {
	APIVersion string   `json:"apiVersion"`
	Items      []any    `json:"items"`
	Kind       string   `json:"kind"`
	Metadata   ListMeta `json:"metadata"`
}

// ListMeta is the metadata of a List.
type ListMeta struct {
	ResourceVersion string `json:"resourceVersion"`
}

// ListOf wraps items (resources, or opened Secrets) in a List
// (apiVersion v1, kind List).
func ListOf[T any](items []T) *List {
	l := &List{APIVersion: "v1", Items: make([]any, len(items)), Kind: "List"}
	for i, it := range items {
		l.Items[i] = it
	}
	return l
}

// JSON is v as kubectl prints it with -o json: indented by four spaces,
// with a final newline.
func JSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// YAML is v as -o yaml prints it (the JSON field names, keys sorted).
func YAML(v any) ([]byte, error) {
	return yaml.Marshal(v)
}

// Write prints v (a resource, a List or an event) in a structured format.
func (o Output) Write(w io.Writer, v any) error {
	var b []byte
	var err error
	switch o.Format {
	case FormatJSON:
		b, err = JSON(v)
	case FormatYAML:
		b, err = YAML(v)
	case FormatJSONPath:
		return o.Template.Execute(w, v)
	default:
		return fmt.Errorf("view: output format %d is not structured", o.Format)
	}
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
