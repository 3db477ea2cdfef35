package producer

import (
	"errors"
	"fmt"
	"io"
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
		{"empty array", " [ ] ", nil},
		{"JSON Lines", cert("a") + "\n" + cert("b") + "\n\n" + cert("c"), []string{"a", "b", "c"}},
		{"empty", " \n\t\n", nil},
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
		input: "apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: web\nspec:\n  dnsNames: [a.example.com]\n  duration: 2160h\n",
		want:  `document 1 (Certificate): spec.duration: unknown field`,
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
		input: "---\napiVersion: acmeq.io/v1\nkind: ClusterIssuer\n",
		want:  `document 1: kind: "ClusterIssuer" is not supported (want Issuer or Certificate)`,
	}, {
		name:  "missing kind",
		input: "apiVersion: acmeq.io/v1\n",
		want:  `document 1: kind: required (want Issuer or Certificate)`,
	}, {
		name:  "Secret",
		input: `[{"apiVersion":"acmeq.io/v1","kind":"secret"}]`,
		want:  `document 1: kind: "secret" is not supported (want Issuer or Certificate)`,
	}, {
		name:  "kind made by workers",
		input: "apiVersion: acmeq.io/v1\nkind: orders\n",
		want:  `document 1: kind: Order cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer or Certificate)`,
	}, {
		name:  "not an object",
		input: "- a\n- b\n",
		want:  `document 1: want an object with apiVersion and kind, got an array`,
	}, {
		name:  "invalid YAML",
		input: "apiVersion: acmeq.io/v1\nkind: [\n",
		want:  "document 1: invalid YAML: yaml: line 2: did not find expected node content",
	}, {
		name:  "invalid JSON Lines",
		input: issuer + "\n{\"apiVersion\": }\n" + issuer,
		want: fmt.Sprintf(`document 2: invalid JSON at byte %d: invalid character '}' looking for beginning of value`,
			len(issuer)+len("\n{\"apiVersion\": }")),
	}, {
		name:  "truncated JSON array",
		input: "[" + issuer + ",",
		want:  `document 2: invalid JSON: unexpected EOF`,
	}, {
		name:  "data after the JSON array",
		input: "[" + issuer + "]\n" + issuer,
		want:  `document 2: unexpected data after the JSON array`,
	}, {
		name:  "every document's problem at once",
		input: "apiVersion: v1\nkind: Issuer\n---\n" + issuer + "\n---\nkind: Order\napiVersion: acmeq.io/v1\n",
		want: `document 1: apiVersion: "v1" is not supported (want acmeq.io/v1)` + "\n" +
			`document 3: kind: Order cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer or Certificate)`,
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
		if err == io.EOF {
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
	if _, err := d.Next(); err != io.EOF {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
}

func TestDecoderBrokenJSONIsSticky(t *testing.T) {
	t.Parallel()
	d := NewDecoder(strings.NewReader("{\"kind\": \n{\"apiVersion\":\"acmeq.io/v1\",\"kind\":\"Issuer\"}\n"))
	_, err1 := d.Next()
	_, err2 := d.Next()
	if err1 == nil || err1 == io.EOF || err2 != err1 {
		t.Errorf("errors %v, %v: want the same syntax error twice", err1, err2)
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

// TestDecodeManyLines decodes a large JSON Lines file.
func TestDecodeManyLines(t *testing.T) {
	t.Parallel()
	const n = 20000
	pr, pw := io.Pipe()
	go func() {
		for i := range n {
			fmt.Fprintf(pw, `{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"c%d"},"spec":{"dnsNames":["c%d.example.com"],"issuerRef":{"name":"dev"}}}`+"\n", i, i)
		}
		pw.Close()
	}()
	d := NewDecoder(pr)
	count := 0
	for {
		obj, err := d.Next()
		if err == io.EOF {
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
	if count != n {
		t.Errorf("decoded %d, want %d", count, n)
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
