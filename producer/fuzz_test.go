package producer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/acmeq/acmeq/messages"
)

// maxErrorLength bounds an error message of the decoder: values it repeats
// are cut to 64 bytes, and paths are at most MaxDocumentDepth deep.
const maxErrorLength = 4096

// FuzzDecode feeds the manifest decoder arbitrary input. It must never
// panic, always end (each call of Next consumes input, so there are at most
// len+2 calls), hold at most one document of MaxDocumentSize, and every
// error must be ErrNoObjects or a *DecodeError whose message starts with
// its document (and a line within the input) and stays short.
//
// The seed corpus (testdata/fuzz/FuzzDecode) runs with every go test;
// fuzz with: go test -fuzz=FuzzDecode -fuzztime=3m ./producer
func FuzzDecode(f *testing.F) {
	f.Add([]byte(multiDocYAML))
	f.Add([]byte(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"web"},"spec":{"dnsNames":["a.example.com"],"issuerRef":{"name":"dev"}}}`))
	f.Add([]byte(`[{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"dev"},"spec":{"acme":{"server":"https://a.example/dir"}}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data))
		lines := bytes.Count(data, []byte{'\n'}) + 1
		sawNoObjects := false
		for calls := 0; ; calls++ {
			if calls > len(data)+2 {
				t.Fatalf("Next called %d times on %d bytes without io.EOF", calls, len(data))
			}
			obj, err := d.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if d.peak > MaxDocumentSize {
				t.Fatalf("the decoder holds %d bytes, over MaxDocumentSize", d.peak)
			}
			if err != nil {
				if len(err.Error()) > maxErrorLength {
					t.Fatalf("error of %d bytes: %.200s...", len(err.Error()), err)
				}
				if errors.Is(err, ErrNoObjects) {
					if sawNoObjects || calls > 0 {
						t.Fatalf("ErrNoObjects after %d calls", calls)
					}
					sawNoObjects = true
					continue
				}
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %T %q is not a *DecodeError", err, err)
				}
				if de.Document < 1 || !strings.HasPrefix(err.Error(), fmt.Sprintf("document %d", de.Document)) {
					t.Fatalf("error %q does not name its document (%d)", err, de.Document)
				}
				if de.Line > lines {
					t.Fatalf("error %q names line %d of %d", err, de.Line, lines)
				}
				continue
			}
			switch o := obj.(type) {
			case *messages.Certificate:
				if o.APIVersion != messages.APIVersion || o.Kind != messages.KindCertificate {
					t.Fatalf("Certificate with %s %s", o.APIVersion, o.Kind)
				}
			case *messages.Issuer:
				if o.APIVersion != messages.APIVersion || o.Kind != messages.KindIssuer {
					t.Fatalf("Issuer with %s %s", o.APIVersion, o.Kind)
				}
			default:
				t.Fatalf("Next returned %T", obj)
			}
		}
		if _, err := d.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("Next after io.EOF: %v", err)
		}
	})
}
