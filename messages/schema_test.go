package messages

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The JSON Schemas for other languages' producers name exactly the fields
// the Go types carry, so the two cannot drift apart silently.
func TestSchemasMatchTypes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		path []string // to the properties object
		typ  reflect.Type
	}{
		{"schema/transition.schema.json", nil, reflect.TypeOf(Transition{})},
		{"schema/certificate.schema.json", []string{"spec"}, reflect.TypeOf(CertificateSpec{})},
		{"schema/certificate.schema.json", []string{"spec", "issuerRef"}, reflect.TypeOf(IssuerRef{})},
		{"schema/certificate.schema.json", []string{"spec", "privateKey"}, reflect.TypeOf(PrivateKeySpec{})},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		var node map[string]any
		if err := json.Unmarshal(b, &node); err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		for _, p := range tt.path {
			node = node["properties"].(map[string]any)[p].(map[string]any)
		}
		var got []string
		for k := range node["properties"].(map[string]any) {
			got = append(got, k)
		}
		var want []string
		for i := range tt.typ.NumField() {
			name, _, _ := strings.Cut(tt.typ.Field(i).Tag.Get("json"), ",")
			want = append(want, name)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s %v: schema properties %v, Go fields %v", tt.file, tt.path, got, want)
		}
	}
}

// A message written by hand from the schema decodes.
func TestSchemaExampleDecodes(t *testing.T) {
	t.Parallel()
	tr, err := DecodeTransition([]byte(`{"v":1,"kind":"Certificate","namespace":"default","name":"shop","action":"apply"}`))
	if err != nil || tr.Subject() != "acmeq.work.certificate.default.shop" {
		t.Fatalf("DecodeTransition = %+v, %v", tr, err)
	}
	for _, bad := range []string{
		`{"v":2,"kind":"Certificate","namespace":"default","name":"shop","action":"apply"}`,
		`{"v":1,"kind":"Secret","namespace":"default","name":"shop","action":"apply"}`,
		`{"v":1,"kind":"Certificate","namespace":"a.b","name":"shop","action":"apply"}`,
		`not json`,
	} {
		if _, err := DecodeTransition([]byte(bad)); err == nil {
			t.Errorf("DecodeTransition(%s) accepted", bad)
		}
	}
}

// The schema's actions are exactly those a worker accepts.
func TestSchemaActions(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("schema/transition.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties struct {
			Action struct {
				Enum []Action `json:"enum"`
			} `json:"action"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Properties.Action.Enum, Actions) {
		t.Errorf("schema actions %v, messages.Actions %v", s.Properties.Action.Enum, Actions)
	}
}
