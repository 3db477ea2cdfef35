package messages

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode"
)

// FuzzDecodeTransition feeds DecodeTransition arbitrary messages. It must
// never panic; what it refuses wraps ErrMalformed; what it accepts has a
// subject of exactly five valid NATS tokens that split back into its kind,
// namespace and name, and encodes to a message it accepts again, equal.
//
// The seed corpus (testdata/fuzz/FuzzDecodeTransition) runs with every go
// test; fuzz with: go test -fuzz=FuzzDecodeTransition -fuzztime=3m ./messages
func FuzzDecodeTransition(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"Certificate","namespace":"default","name":"shop","action":"apply"}`))
	f.Add([]byte(`{"v":1,"kind":"Challenge","namespace":"default","name":"shop-1-4060539867-0","action":"scheduled","cause":"x"}`))
	f.Add([]byte(`{"v":2,"kind":"Order","namespace":"a","name":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := DecodeTransition(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		subject := tr.Subject()
		tokens := strings.Split(subject, ".")
		if len(tokens) != 5 {
			t.Fatalf("subject %q has %d tokens, want 5", subject, len(tokens))
		}
		for _, tok := range tokens {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || r < 0x20 || r == 0x7f }) {
				t.Fatalf("subject %q has an invalid token %q", subject, tok)
			}
		}
		if tokens[0]+"."+tokens[1] != WorkSubjectPrefix || tokens[2] != tr.Kind.Token() || tokens[3] != tr.Namespace || tokens[4] != tr.Name {
			t.Fatalf("subject %q does not split back into %s %s/%s", subject, tr.Kind, tr.Namespace, tr.Name)
		}
		if k, err := ParseKind(tokens[2]); err != nil || k != tr.Kind {
			t.Fatalf("subject token %q parses as kind %q, %v; want %s", tokens[2], k, err, tr.Kind)
		}
		if !strings.HasPrefix(subject, WorkSubjectPrefix+"."+tr.Kind.Token()+".") {
			t.Fatalf("subject %q is not read by the %s consumer (%s)", subject, tr.Kind, WorkFilter(tr.Kind))
		}
		b, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeTransition(b)
		if err != nil {
			t.Fatalf("re-encoded %s: %v", b, err)
		}
		if again != tr {
			t.Fatalf("round trip: %+v, want %+v", again, tr)
		}
	})
}
