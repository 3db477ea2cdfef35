package producer

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/acmeq/acmeq/messages"
)

const multiDocYAML = `# acmeq manifests
---
apiVersion: acmeq.io/v1
kind: Issuer
metadata:
  name: dev
spec:
  acme:
    server: https://acme.example.com/directory
    email: ops@example.com
    caBundle: |
      -----BEGIN CERTIFICATE-----
      ---
      -----END CERTIFICATE-----
    solvers:
    - http01: {}
    - dns01:
        rfc2136:
          nameserver: 10.0.0.53:53
          tsigKeyName: acmeq-key
          tsigAlgorithm: HMACSHA512
          tsigSecretSecretRef:
            name: tsig-secret
            key: tsig-secret-key
---
# an empty document is skipped
--- # pasted from cert-manager
apiVersion: cert-manager.io/v1
kind: certificate
metadata:
  name: web
  namespace: shop
  labels:
    team: shop
spec:
  secretName: web-tls
  dnsNames:
  - www.example.com
  - "*.example.com"
  issuerRef:
    name: dev
    kind: Issuer
    group: cert-manager.io
  privateKey:
    algorithm: RSA
    size: 3072
...
`

func TestDecodeYAMLMultiDoc(t *testing.T) {
	t.Parallel()
	objs, err := Decode(strings.NewReader(multiDocYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2", len(objs))
	}
	iss, ok := objs[0].(*messages.Issuer)
	if !ok {
		t.Fatalf("objs[0] is %T, want *messages.Issuer", objs[0])
	}
	if iss.APIVersion != messages.APIVersion || iss.Kind != messages.KindIssuer || iss.Metadata.Name != "dev" ||
		iss.Spec.ACME.Email != "ops@example.com" || len(iss.Spec.ACME.Solvers) != 2 ||
		!reflect.DeepEqual(iss.Spec.ACME.Solvers[1].DNS01.RFC2136, &messages.RFC2136Provider{
			Nameserver: "10.0.0.53:53", TSIGKeyName: "acmeq-key", TSIGAlgorithm: "HMACSHA512",
			TSIGSecretSecretRef: &messages.SecretKeySelector{Name: "tsig-secret", Key: "tsig-secret-key"},
		}) ||
		!strings.Contains(iss.Spec.ACME.CABundle, "\n---\n") {
		t.Errorf("Issuer: %+v %+v", iss, iss.Spec.ACME)
	}
	cert, ok := objs[1].(*messages.Certificate)
	if !ok {
		t.Fatalf("objs[1] is %T, want *messages.Certificate", objs[1])
	}
	s := cert.Spec
	if cert.APIVersion != messages.APIVersion || cert.Kind != messages.KindCertificate ||
		cert.Metadata.Namespace != "shop" || cert.Metadata.Labels["team"] != "shop" ||
		s.SecretName != "web-tls" || strings.Join(s.DNSNames, ",") != "www.example.com,*.example.com" ||
		s.IssuerRef != (messages.IssuerRef{Name: "dev", Kind: "Issuer", Group: "cert-manager.io"}) ||
		*s.PrivateKey != (messages.PrivateKeySpec{Algorithm: "RSA", Size: 3072}) {
		t.Errorf("Certificate: %+v", cert)
	}
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	cert := func(name string) string {
		return `{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"` + name +
			`"},"spec":{"dnsNames":["` + name + `.example.com"],"issuerRef":{"name":"dev"}}}`
	}
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"object", "\ufeff\n  {\n \"apiVersion\": \"acmeq.io/v1\",\n \"kind\": \"Issuer\",\n \"metadata\": {\"name\": \"dev\"},\n \"spec\": {\"acme\": {\"server\": \"https://a.example/dir\"}}\n}\n", []string{"dev"}},
		{"array", "[\n" + cert("a") + ",\n" + cert("b") + "\n]\n", []string{"a", "b"}},
		{"JSON Lines", cert("a") + "\n" + cert("b") + "\n\n" + cert("c"), []string{"a", "b", "c"}},
		{"JSON Lines, CRLF", cert("a") + "\r\n" + cert("b") + "\r\n", []string{"a", "b"}},
		{"concatenated objects", cert("a") + cert("b"), []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs, err := Decode(strings.NewReader(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.GetMeta().Name)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("names %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	const issuer = `{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"dev"},"spec":{"acme":{"server":"https://a.example/dir"}}}`
	tests := []struct {
		name  string
		input string
		want  string
	}{{
		name:  "unknown field, YAML",
		input: "apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: web\nspec:\n  dnsNames: [a.example.com]\n  isCA: true\n",
		want:  `document 1 (Certificate): spec.isCA: unknown field`,
	}, {
		name:  "unknown field in a list, JSON Lines",
		input: issuer + "\n" + `{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"x"},"spec":{"acme":{"solvers":[{"http01":{}},{"dns01":{"route53":{}}}]}}}`,
		want:  `document 2 (Issuer): spec.acme.solvers[1].dns01.route53: unknown field`,
	}, {
		name:  "inline TSIG secret",
		input: "apiVersion: acmeq.io/v1\nkind: Issuer\nmetadata:\n  name: dev\nspec:\n  acme:\n    solvers:\n    - dns01:\n        rfc2136:\n          nameserver: 10.0.0.53:53\n          tsigSecret: c2VjcmV0\n",
		want:  `document 1 (Issuer): spec.acme.solvers[0].dns01.rfc2136.tsigSecret: unknown field`,
	}, {
		name:  "unknown metadata field",
		input: "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata:\n  name: dev\n  annotations: {a: b}\n",
		want:  `document 1 (Issuer): metadata.annotations: unknown field`,
	}, {
		name:  "wrong type",
		input: "apiVersion: acmeq.io/v1\nkind: Certificate\nspec:\n  dnsNames: a.example.com\n",
		want:  `document 1 (Certificate): spec.dnsNames: got a JSON string, want a list of strings`,
	}, {
		name:  "wrong type in a list",
		input: "apiVersion: acmeq.io/v1\nkind: Certificate\nspec:\n  dnsNames: [a.example.com, {x: 1}]\n",
		want:  `document 1 (Certificate): spec.dnsNames: got a JSON object, want a string`,
	}, {
		name:  "wrong type, integer",
		input: "apiVersion: acmeq.io/v1\nkind: Certificate\nspec:\n  privateKey: {size: big}\n",
		want:  `document 1 (Certificate): spec.privateKey.size: got a JSON string, want an integer`,
	}, {
		name:  "bad apiVersion",
		input: issuer + "\n" + issuer + "\n" + `{"apiVersion":"v2","kind":"Issuer"}`,
		want:  `document 3: apiVersion: "v2" is not supported (want acmeq.io/v1)`,
	}, {
		name:  "missing apiVersion",
		input: "kind: Issuer\n",
		want:  `document 1: apiVersion: required (want acmeq.io/v1)`,
	}, {
		name:  "unknown kind",
		input: "---\napiVersion: acmeq.io/v1\nkind: CertificateSigningRequest\n",
		want:  `document 1: kind: "CertificateSigningRequest" is not supported (want Issuer, ClusterIssuer or Certificate)`,
	}, {
		name:  "missing kind",
		input: "apiVersion: acmeq.io/v1\n",
		want:  `document 1: kind: required (want Issuer, ClusterIssuer or Certificate)`,
	}, {
		name:  "Secret",
		input: `[{"apiVersion":"acmeq.io/v1","kind":"secret"}]`,
		want:  `document 1: kind: "secret" is not supported (want Issuer, ClusterIssuer or Certificate)`,
	}, {
		name:  "kind made by workers",
		input: "apiVersion: acmeq.io/v1\nkind: orders\n",
		want:  `document 1: kind: Order cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)`,
	}, {
		name:  "not an object",
		input: "- a\n- b\n",
		want:  `document 1: want an object with apiVersion and kind, got an array`,
	}, {
		name:  "invalid YAML",
		input: "apiVersion: acmeq.io/v1\nkind: [\n",
		want:  "document 1, line 2: invalid YAML: did not find expected node content",
	}, {
		name:  "YAML keys that are equal once resolved",
		input: "apiVersion: acmeq.io/v1\nkind: Issuer\nmetadata:\n  labels:\n    true: a\n    yes: b\n",
		want:  "document 1, line 6: invalid YAML: key true already set in map",
	}, {
		name:  "invalid JSON Lines",
		input: issuer + "\n{\"apiVersion\": }\n" + issuer,
		want:  `document 2, line 2, column 16: invalid JSON: invalid character '}' looking for beginning of value`,
	}, {
		name:  "truncated JSON array",
		input: "[" + issuer + ",",
		want:  fmt.Sprintf(`document 2, line 1, column %d: invalid JSON: unexpected end of input: a value is missing after ','`, len(issuer)+3),
	}, {
		name:  "data after the JSON array",
		input: "[" + issuer + "]\n" + issuer,
		want:  `document 2, line 2, column 1: invalid JSON: unexpected data after the array`,
	}, {
		name:  "every document's problem at once",
		input: "apiVersion: v1\nkind: Issuer\n---\n" + issuer + "\n---\nkind: Order\napiVersion: acmeq.io/v1\n",
		want: `document 1: apiVersion: "v1" is not supported (want acmeq.io/v1)` + "\n" +
			`document 3: kind: Order cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs, err := Decode(strings.NewReader(tt.input))
			if err == nil {
				t.Fatalf("Decode: %d objects and no error, want %s", len(objs), tt.want)
			}
			if objs != nil {
				t.Errorf("Decode returned %d objects with an error", len(objs))
			}
			if err.Error() != tt.want {
				t.Errorf("Decode:\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestDecoderContinuesAfterADocumentError(t *testing.T) {
	t.Parallel()
	d := NewDecoder(strings.NewReader(`{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"a"}}
{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"b"},"oops":1}
{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"c"}}
`))
	var got []string
	for {
		obj, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			got = append(got, err.Error())
			continue
		}
		got = append(got, obj.GetMeta().Name)
	}
	want := []string{"a", `document 2 (Issuer): oops: unknown field`, "c"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := d.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
}

// TestDecoderStopsAtBrokenInput: a syntax error is reported once, with
// where the document starts, and then the input is over. (Returning it
// again made `acmeq apply` collect it forever.)
func TestDecoderStopsAtBrokenInput(t *testing.T) {
	t.Parallel()
	d := NewDecoder(strings.NewReader("{\"kind\": \n{\"apiVersion\":\"acmeq.io/v1\",\"kind\":\"Issuer\"}\n"))
	_, err := d.Next()
	var de *DecodeError
	if !errors.As(err, &de) || !de.Fatal {
		t.Fatalf("Next: %v, want a fatal *DecodeError", err)
	}
	const want = "document 1, line 3, column 1: invalid JSON: unexpected end of input: the document, which starts at line 1, is cut short"
	if err.Error() != want {
		t.Errorf("Next:\n got: %s\nwant: %s", err, want)
	}
	for range 3 {
		if _, err := d.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("Next after a fatal error: %v, want io.EOF", err)
		}
	}
}

// TestDecoderStreams checks that Next returns each JSON line as soon as it
// is complete, without reading the rest of the input.
func TestDecoderStreams(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pr.Close()
	d := NewDecoder(pr)
	type result struct {
		obj messages.Object
		err error
	}
	results := make(chan result)
	go func() {
		for {
			obj, err := d.Next()
			results <- result{obj, err}
			if err != nil {
				return
			}
		}
	}()
	for i := range 3 {
		fmt.Fprintf(pw, `{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"c%d"}}`+"\n", i)
		r := <-results // would block forever if Next waited for more input
		if r.err != nil {
			t.Fatalf("Next: %v", r.err)
		}
		if name := r.obj.GetMeta().Name; name != fmt.Sprintf("c%d", i) {
			t.Fatalf("Next: %s, want c%d", name, i)
		}
	}
	pw.Close()
	if r := <-results; !errors.Is(r.err, io.EOF) {
		t.Errorf("Next at the end: %v, want io.EOF", r.err)
	}
}

func TestIndentedYAML(t *testing.T) {
	t.Parallel()
	objs, err := Decode(strings.NewReader("\n\n  apiVersion: acmeq.io/v1\n  kind: Issuer\n  metadata:\n    name: dev\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetMeta().Name != "dev" {
		t.Errorf("objects %v", objs)
	}
}

func TestDecodeEmptyInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", " \n\t\r\n", "\ufeff", "[]", " [ \n ] \n", "# only a comment\n", "---\n---\n...\n", "--- # empty\n\n# and a comment\n", "null\n", "~\n---\n"} {
		objs, err := Decode(strings.NewReader(in))
		if !errors.Is(err, ErrNoObjects) || err.Error() != "no objects passed to apply" || objs != nil {
			t.Errorf("Decode(%q): %d objects, %v; want ErrNoObjects", in, len(objs), err)
		}
		d := NewDecoder(strings.NewReader(in))
		if _, err := d.Next(); !errors.Is(err, ErrNoObjects) {
			t.Errorf("Next(%q): %v, want ErrNoObjects", in, err)
		}
		if _, err := d.Next(); !errors.Is(err, io.EOF) {
			t.Errorf("Next(%q) again: %v, want io.EOF", in, err)
		}
	}
}

// TestDecodeAlwaysEnds feeds inputs that used to make Next return the same
// error forever (the CLI collected 1.25 GB of them in 10 s) and checks that
// each ends after one fatal error that says where and why.
func TestDecodeAlwaysEnds(t *testing.T) {
	t.Parallel()
	const iss = `{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"dev"},"spec":{"acme":{"server":"https://a.example/dir"}}}`
	dir := t.TempDir()
	tests := []struct {
		name  string
		input func(t *testing.T) io.Reader
		want  string
		objs  int // documents decoded before the error
	}{{
		name:  "truncated JSON document",
		input: text(iss[:50]),
		want:  `document 1, line 1, column 51: invalid JSON: unexpected end of input: the document, which starts at line 1, is cut short inside a string`,
	}, {
		name:  "JSON Lines whose last line is cut",
		input: text(iss + "\n" + iss + "\n" + iss[:len(iss)-2]),
		want:  fmt.Sprintf(`document 3, line 3, column %d: invalid JSON: unexpected end of input: the document, which starts at line 3, is cut short`, len(iss)-1),
		objs:  2,
	}, {
		name:  "JSON Lines with a line cut in the middle",
		input: text(iss + "\n" + iss[:60] + "\n" + iss + "\n"),
		want:  `document 2, line 2, column 61: invalid JSON: the line ends inside a string`,
		objs:  1,
	}, {
		name:  "10,000 nested brackets",
		input: text(strings.Repeat("[", 10000)),
		want:  `document 1, line 1, column 34: nested deeper than 32 levels, the limit for one document`,
	}, {
		name:  "nested objects in JSON Lines",
		input: text(iss + "\n" + strings.Repeat(`{"a":`, 100000)),
		want:  fmt.Sprintf(`document 2, line 2, column %d: nested deeper than 32 levels, the limit for one document`, 5*32+1),
		objs:  1,
	}, {
		name:  "a directory",
		input: func(t *testing.T) io.Reader { return open(t, dir) },
		want:  `document 1, line 1, column 1: cannot read the input: read ` + dir + `: is a directory`,
	}, {
		name: "a read error after two documents",
		input: func(*testing.T) io.Reader {
			return io.MultiReader(strings.NewReader(iss+"\n"+iss+"\n"), failingReader{})
		},
		want: `document 3, line 3, column 1: cannot read the input: disk on fire`,
		objs: 2,
	}, {
		name: "a read error inside a YAML document",
		input: func(*testing.T) io.Reader {
			return io.MultiReader(strings.NewReader("kind: Issuer\n"), failingReader{})
		},
		want: `document 1, line 2, column 1: cannot read the input: disk on fire`,
	}, {
		name:  "JSON array not closed",
		input: text("[" + iss + "," + iss),
		want:  fmt.Sprintf(`document 2, line 1, column %d: invalid JSON: unexpected end of input: the array is not closed with ']'`, 2*len(iss)+3),
		objs:  2,
	}, {
		name:  "a bracket that closes the wrong one",
		input: text(`{"apiVersion":["acmeq.io/v1"}`),
		want:  `document 1, line 1, column 29: invalid JSON: '}' does not close '['`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDecoder(tt.input(t))
			var errs []error
			objs := 0
			for calls := 0; ; calls++ {
				if calls > 100 {
					t.Fatalf("Next called %d times without io.EOF; errors: %v", calls, errs)
				}
				obj, err := d.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if obj != nil {
					objs++
				}
			}
			if len(errs) != 1 {
				t.Fatalf("errors %q, want exactly one", errs)
			}
			var de *DecodeError
			if !errors.As(errs[0], &de) || !de.Fatal {
				t.Errorf("error %v is not a fatal *DecodeError", errs[0])
			}
			if errs[0].Error() != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", errs[0], tt.want)
			}
			if objs != tt.objs {
				t.Errorf("%d documents decoded before the error, want %d", objs, tt.objs)
			}
		})
	}
}

func text(s string) func(*testing.T) io.Reader {
	return func(*testing.T) io.Reader { return strings.NewReader(s) }
}

func open(t *testing.T, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// TestDecodeLimits checks each limit at its boundary.
func TestDecodeLimits(t *testing.T) {
	t.Parallel()
	// A Certificate padded with labels to exactly n bytes of JSON.
	certOfSize := func(n int) string {
		head := `{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"c","labels":{"pad":"`
		tail := `"}}}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	nested := func(depth int) string {
		return `{"apiVersion":"acmeq.io/v1","kind":"Certificate","status":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + "}"
	}
	values := func(n int) string {
		// The object, apiVersion, kind and status: 4, then n-4 in a list.
		return `{"apiVersion":"acmeq.io/v1","kind":"Certificate","status":[` + strings.Repeat("1,", n-5) + "1]}"
	}
	yamlValues := func(lines int) string {
		return "apiVersion: acmeq.io/v1\nkind: Certificate\n" + strings.Repeat("# padding\n", lines-3)
	}
	tests := []struct {
		name, input, want string
	}{
		{"JSON at MaxDocumentSize", certOfSize(MaxDocumentSize), ""},
		{"JSON over MaxDocumentSize", certOfSize(MaxDocumentSize + 1), fmt.Sprintf("document 1, line 1, column %d: larger than 2 MiB, the limit for one document", MaxDocumentSize+1)},
		{"YAML over MaxDocumentSize", "apiVersion: acmeq.io/v1\nkind: Certificate\n" + strings.Repeat("#"+strings.Repeat(" ", 1000)+"\n", MaxDocumentSize/1000), "document 1, line 1, column 1: larger than 2 MiB, the limit for one document"},
		{"JSON at MaxDocumentDepth", nested(MaxDocumentDepth), ""},
		{"JSON over MaxDocumentDepth", nested(MaxDocumentDepth + 1), "document 1, line 1, column 90: nested deeper than 32 levels, the limit for one document"},
		{"YAML over MaxDocumentDepth", "apiVersion: acmeq.io/v1\nkind: Certificate\nstatus: " + strings.Repeat("[", MaxDocumentDepth) + strings.Repeat("]", MaxDocumentDepth) + "\n", "document 1, line 3, column 40: nested deeper than 32 levels, the limit for one document"},
		{"JSON at MaxDocumentValues", values(MaxDocumentValues), ""},
		{"JSON over MaxDocumentValues", values(MaxDocumentValues + 1), fmt.Sprintf("document 1, line 1, column %d: more than 100000 values, the limit for one document", len(values(MaxDocumentValues+1))-3)},
		{"YAML over MaxDocumentValues", yamlValues(MaxDocumentValues + 1), "document 1, line 1: more than 100000 values, the limit for one document"},
		{"YAML alias bomb", "apiVersion: acmeq.io/v1\nkind: Certificate\nstatus:\n  a: &a [x,x,x,x,x,x,x,x,x,x]\n  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n  f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
			"document 1, line 8, column 31: more than 100000 values (with its aliases expanded), the limit for one document"},
		{"YAML aliases nested too deep", "apiVersion: acmeq.io/v1\nkind: Certificate\nstatus:\n  a: &a " + strings.Repeat("[", 20) + strings.Repeat("]", 20) + "\n  b: " + strings.Repeat("[", 15) + "*a" + strings.Repeat("]", 15) + "\n",
			"document 1, line 5, column 21: nested deeper than 32 levels (with its aliases expanded), the limit for one document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDecoder(strings.NewReader(tt.input))
			_, err := d.Next()
			var de *DecodeError
			switch {
			case tt.want == "" && errors.As(err, &de) && de.Fatal:
				t.Fatalf("Next: %v, want no limit error", err)
			case tt.want == "":
				// At the limit: decoded, or refused for its content.
			case err == nil || err.Error() != tt.want:
				t.Fatalf("Next:\n got: %v\nwant: %s", err, tt.want)
			}
			if d.peak > MaxDocumentSize {
				t.Errorf("the decoder held %d bytes, over MaxDocumentSize", d.peak)
			}
		})
	}
}

func TestDecodeDuplicateKeys(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, input, want string }{{
		name:  "JSON",
		input: `{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"a","name":"b"}}`,
		want:  `document 1, line 1, column 73: metadata.name: duplicate key (first at line 1, column 62)`,
	}, {
		name:  "JSON Lines, second line",
		input: `{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"a"}}` + "\n" + `{"apiVersion":"acmeq.io/v1","kind":"Certificate","spec":{"dnsNames":["a.example.com"],` + "\n" + ` "dnsNames":[]}}`,
		want:  `document 2, line 3, column 2: spec.dnsNames: duplicate key (first at line 2, column 58)`,
	}, {
		name:  "JSON, a label",
		input: `{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"labels":{"app.kubernetes.io/name":"a","app.kubernetes.io/name":"b"}}}`,
		want:  `document 1, line 1, column 101: metadata.labels["app.kubernetes.io/name"]: duplicate key (first at line 1, column 72)`,
	}, {
		name:  "YAML",
		input: "apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: a\n  name: b\n",
		want:  `document 1, line 5, column 3: metadata.name: duplicate key (first at line 4, column 3)`,
	}, {
		name:  "YAML, second document, top level",
		input: "apiVersion: acmeq.io/v1\nkind: Issuer\nmetadata: {name: a}\n---\napiVersion: acmeq.io/v1\nkind: Issuer\nkind: Certificate\n",
		want:  `document 2, line 7, column 1: kind: duplicate key (first at line 6, column 1)`,
	}, {
		name:  "YAML, in a list",
		input: "apiVersion: acmeq.io/v1\nkind: Issuer\nspec:\n  acme:\n    solvers:\n    - http01: {}\n    - dns01: {}\n      dns01: {}\n",
		want:  `document 1, line 8, column 7: spec.acme.solvers[1].dns01: duplicate key (first at line 7, column 7)`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode(strings.NewReader(tt.input))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Decode:\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestDecodeFieldNamesAreExact(t *testing.T) {
	t.Parallel()
	_, err := Decode(strings.NewReader("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  Name: web\n"))
	const want = `document 1 (Certificate): metadata.Name: unknown field (did you mean "name"?)`
	if err == nil || err.Error() != want {
		t.Fatalf("Decode:\n got: %v\nwant: %s", err, want)
	}
}

// TestDecodeStreamsLargeFiles decodes files of 100,000 lines, JSON Lines
// and YAML documents, and checks that the decoder never held more than one
// document. Under the race detector, which checks the concurrency and not
// the memory, 20,000 lines show the same.
func TestDecodeStreamsLargeFiles(t *testing.T) {
	t.Parallel()
	lines := 100_000
	if raceDetector {
		lines = 20_000
	}
	for _, format := range []string{"JSON Lines", "YAML"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			docs, lineOf := lines, func(i int) string {
				return fmt.Sprintf(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"c%d"}}`+"\n", i)
			}
			if format == "YAML" {
				docs, lineOf = lines/2, func(i int) string {
					return fmt.Sprintf("---\n{apiVersion: acmeq.io/v1, kind: Certificate, metadata: {name: c%d}}\n", i)
				}
			}
			d := NewDecoder(&generator{n: docs, next: lineOf})
			count := 0
			for {
				obj, err := d.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("c%d", count); obj.GetMeta().Name != want {
					t.Fatalf("document %d is %s, want %s", count+1, obj.GetMeta().Name, want)
				}
				count++
			}
			if count != docs {
				t.Errorf("decoded %d, want %d", count, docs)
			}
			if d.pos.line != lines+1 {
				t.Errorf("read %d lines, want %d", d.pos.line-1, lines)
			}
			if d.peak > 100 {
				t.Errorf("the decoder held up to %d bytes at once, more than one document", d.peak)
			}
		})
	}
}

// generator is a reader of n documents made on demand, so that the input
// is never in memory either.
type generator struct {
	n, i int
	next func(int) string
	buf  []byte
}

func (g *generator) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.i == g.n {
			return 0, io.EOF
		}
		g.buf = []byte(g.next(g.i))
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// BenchmarkDecode measures decoding JSON Lines and YAML documents of
// typical Certificates (go test -bench Decode ./producer).
func BenchmarkDecode(b *testing.B) {
	const cert = `{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"c","namespace":"shop","labels":{"team":"shop"}},"spec":{"secretName":"c-tls","dnsNames":["c.example.com","www.c.example.com"],"issuerRef":{"name":"dev"}}}` + "\n"
	for _, format := range []string{"JSON Lines", "YAML"} {
		b.Run(format, func(b *testing.B) {
			doc := cert
			if format == "YAML" {
				doc = "---\napiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: c\n  namespace: shop\n  labels: {team: shop}\nspec:\n  secretName: c-tls\n  dnsNames: [c.example.com, www.c.example.com]\n  issuerRef: {name: dev}\n"
			}
			input := strings.Repeat(doc, 1000)
			b.SetBytes(int64(len(input)))
			b.ReportAllocs()
			for b.Loop() {
				d := NewDecoder(strings.NewReader(input))
				for {
					if _, err := d.Next(); errors.Is(err, io.EOF) {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
