package producer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// applyFile does what `acmeq apply -f` does with a file: decode each
// document and apply it. It returns what was applied ("certificate/ns/name
// created"), every error in order, and the resources refused by Apply.
// It fails the test if decoding does not end.
func applyFile(t *testing.T, c *Client, r io.Reader) (applied, errs []string, refused []string) {
	t.Helper()
	d := NewDecoder(r)
	for calls := 0; ; calls++ {
		if calls > 1000 {
			t.Fatalf("Next called %d times without io.EOF", calls)
		}
		obj, err := d.Next()
		if errors.Is(err, io.EOF) {
			return applied, errs, refused
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		m := obj.GetMeta()
		ns := m.Namespace
		if ns == "" {
			ns = DefaultNamespace
		}
		r := ref(obj.GetKind(), ns, m.Name)
		res, err := c.Apply(t.Context(), obj)
		if err != nil {
			errs = append(errs, err.Error())
			refused = append(refused, r)
			continue
		}
		applied = append(applied, r+" "+string(res))
	}
}

// cert is a Certificate manifest (JSON) of issuer dev with one name,
// <name>.example.com, and extra fields of spec appended.
func cert(name, extraSpec string) string {
	return fmt.Sprintf(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":%q},"spec":{"dnsNames":[%q],"issuerRef":{"name":"dev"}%s}}`,
		name, name+".example.com", extraSpec)
}

// certNames is a Certificate manifest of issuer with the given names.
func certNames(name, issuer string, names ...string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return fmt.Sprintf(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":%q},"spec":{"dnsNames":[%s],"issuerRef":{"name":%q}}}`,
		name, strings.Join(q, ","), issuer)
}

// issuerYAML is an Issuer manifest with the given solvers block (YAML,
// indented under acme:).
func issuerYAML(name, solvers string) string {
	return "apiVersion: acmeq.io/v1\nkind: Issuer\nmetadata:\n  name: " + name + "\nspec:\n  acme:\n    server: https://acme.example.com/directory\n" + solvers
}

const invalidCert = "producer: certificate/default/"
const labelKeyRule = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
const labelValueRule = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"

// TestBadInputs applies careless and hostile files, as a user of `acmeq
// apply -f` would, against a real store, and checks the exact errors: each
// names the document (and line), or the resource and field, and the rule.
// Afterwards every accepted Certificate is stored, no refused one is, and
// every Secret claim belongs to a stored resource.
func TestBadInputs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	// The world the inputs meet: issuer dev (HTTP-01 for every name),
	// issuer zones (DNS-01 for dns.example, HTTP-01 for example.com), a
	// Certificate owning Secret shared-tls, a Secret written before claims
	// for a Certificate since deleted, and a Secret a user created.
	e.mustApply(t, userIssuer(), Created)
	zones, errs := Decode(strings.NewReader(issuerYAML("zones", `    solvers:
    - selector: {dnsZones: [dns.example]}
      dns01: {rfc2136: {nameserver: "10.0.0.53:53"}}
    - selector: {dnsZones: [example.com]}
      http01: {}
`)))
	if errs != nil {
		t.Fatal(errs)
	}
	e.mustApply(t, zones[0], Created)
	e.mustApply(t, certWithSecret("owner-a", "shared-tls"), Created)
	gone := messages.ObjectReference{Kind: messages.KindCertificate, Namespace: "default", Name: "gone"}
	if err := e.st.PutSecret(ctx, "default", "legacy-tls", map[string][]byte{"tls.crt": []byte("x")}, &gone); err != nil {
		t.Fatal(err)
	}
	if err := e.c.PutSecret(ctx, "", "tsig", map[string][]byte{"secret": []byte("c2VjcmV0")}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	garbage := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(8, 8))
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	garbage[0] = 0 // not '{' or '[': read as YAML
	name200 := strings.Repeat("n", 200)
	name201 := strings.Repeat("n", 201)
	names50k := make([]string, 50000)
	for i := range names50k {
		names50k[i] = fmt.Sprintf(`"h%05d.example.com"`, i)
	}
	bigLabels := make([]string, 20000)
	for i := range bigLabels {
		bigLabels[i] = fmt.Sprintf(`"label-%05d":%q`, i, strings.Repeat("v", 40))
	}
	badNames := make([]string, 30)
	for i := range badNames {
		badNames[i] = fmt.Sprintf("bad_%02d.example.com", i)
	}

	tests := []struct {
		name    string
		input   func(t *testing.T) io.Reader
		errs    []string
		applied []string
		absent  []string // Certificates the input names that must not be stored
	}{
		// Files that used to hang the CLI.
		{
			name:   "truncated JSON document",
			input:  text(cert("trunc", "")[:80]),
			errs:   []string{`document 1, line 1, column 81: invalid JSON: unexpected end of input: the document, which starts at line 1, is cut short inside a string`},
			absent: []string{"trunc"},
		}, {
			name:    "JSON Lines whose last line is cut",
			input:   text(cert("jl-1", "") + "\n" + cert("jl-2", "") + "\n" + cert("jl-3", "")[:100]),
			errs:    []string{`document 3, line 3, column 101: invalid JSON: unexpected end of input: the document, which starts at line 3, is cut short inside a string`},
			applied: []string{"certificate/default/jl-1 created", "certificate/default/jl-2 created"},
			absent:  []string{"jl-3"},
		}, {
			name:   "JSON Lines with a line cut in the middle",
			input:  text(cert("mid-1", "")[:70] + "\n" + cert("mid-2", "") + "\n"),
			errs:   []string{`document 1, line 1, column 71: invalid JSON: the line ends inside a string`},
			absent: []string{"mid-1", "mid-2"},
		}, {
			name:  "10,000 nested brackets",
			input: text(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)),
			errs:  []string{`document 1, line 1, column 34: nested deeper than 32 levels, the limit for one document`},
		}, {
			name:  "10,000 nested YAML flow lists",
			input: text("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n"),
			errs:  []string{`document 1, line 3, column 42: nested deeper than 32 levels, the limit for one document`},
		}, {
			name:  "binary garbage",
			input: func(*testing.T) io.Reader { return bytes.NewReader(garbage) },
			errs:  []string{`document 1, line 1: invalid YAML: control characters are not allowed`},
		}, {
			name:  "binary garbage after a brace",
			input: text("{\x00\xff\xfe}\n"),
			errs:  []string{`document 1, line 1, column 2: invalid JSON: invalid character '\x00' looking for beginning of object key string`},
		}, {
			name:  "a directory",
			input: func(t *testing.T) io.Reader { return open(t, dir) },
			errs:  []string{`document 1, line 1, column 1: cannot read the input: read ` + dir + `: is a directory`},
		}, {
			name:  "an empty file",
			input: func(t *testing.T) io.Reader { return open(t, writeFile(t, "empty.yaml", "")) },
			errs:  []string{`no objects passed to apply`},
		}, {
			name:  "comments and separators only",
			input: text("# nothing yet\n---\n---\n"),
			errs:  []string{`no objects passed to apply`},
		}, {
			name:  "an empty JSON array",
			input: text("[ ]\n"),
			errs:  []string{`no objects passed to apply`},
		}, {
			name:   "a document over 2 MiB",
			input:  text(cert("huge", `,"secretName":"`+strings.Repeat("s", MaxDocumentSize)+`"`)),
			errs:   []string{`document 1, line 1, column 2097153: larger than 2 MiB, the limit for one document`},
			absent: []string{"huge"},
		}, {
			name:  "a YAML alias bomb",
			input: text("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  labels:\n    a: &a [x,x,x,x,x,x,x,x,x,x]\n    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n    f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"),
			errs:  []string{`document 1, line 9, column 33: more than 100000 values (with its aliases expanded), the limit for one document`},
		}, {
			name:  "100,001 values",
			input: text(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","spec":{"dnsNames":[` + strings.Repeat(`"a",`, 99995) + `"a"]}}`),
			errs:  []string{fmt.Sprintf(`document 1, line 1, column %d: more than 100000 values, the limit for one document`, 69+4*99995)},
		},

		// Broken syntax and structure.
		{
			name:  "a tab in YAML indentation",
			input: text("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n\tname: web\n"),
			errs:  []string{`document 1, line 4: invalid YAML: found character that cannot start any token`},
		}, {
			name:    "a trailing comma in a JSON array",
			input:   text("[" + cert("comma", "") + ",]"),
			errs:    []string{fmt.Sprintf(`document 2, line 1, column %d: invalid JSON: want an array element, got ']'`, len(cert("comma", ""))+3)},
			applied: []string{"certificate/default/comma created"},
		}, {
			name:    "data after a JSON array",
			input:   text("[" + cert("arr-1", "") + "]\n{}"),
			errs:    []string{`document 2, line 2, column 1: invalid JSON: unexpected data after the array`},
			applied: []string{"certificate/default/arr-1 created"},
		}, {
			name:  "a bracket closing the wrong one",
			input: text(`{"apiVersion":"acmeq.io/v1","spec":{"dnsNames":["a.example.com"}}`),
			errs:  []string{`document 1, line 1, column 64: invalid JSON: '}' does not close '['`},
		}, {
			name:   "a key given twice in JSON",
			input:  text(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"dup-a"},"spec":{"secretName":"a","dnsNames":["dup-a.example.com"],"issuerRef":{"name":"dev"},"secretName":"shared-tls"}}`),
			errs:   []string{`document 1, line 1, column 163: spec.secretName: duplicate key (first at line 1, column 86)`},
			absent: []string{"dup-a"},
		}, {
			name:   "a key given twice in YAML",
			input:  text("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: dup-b\nspec:\n  dnsNames: [dup-b.example.com]\n  issuerRef: {name: dev}\n  secretName: dup-b-tls\n  secretName: shared-tls\n"),
			errs:   []string{`document 1, line 9, column 3: spec.secretName: duplicate key (first at line 8, column 3)`},
			absent: []string{"dup-b"},
		}, {
			name:    "a YAML document after JSON",
			input:   text(cert("mixed", "") + "\n---\napiVersion: acmeq.io/v1\n"),
			errs:    []string{`document 2, line 2, column 2: invalid JSON: invalid character '-' in numeric literal`},
			applied: []string{"certificate/default/mixed created"},
		}, {
			name:    "a key given twice in a second YAML document",
			input:   text("apiVersion: acmeq.io/v1\nkind: Issuer\nmetadata: {name: dev}\nspec: {acme: {server: \"https://acme.example.com/directory\"}}\n---\napiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: dup-c\n  name: owner-a\n"),
			errs:    []string{`document 2, line 10, column 3: metadata.name: duplicate key (first at line 9, column 3)`},
			applied: []string{"issuer/default/dev unchanged"},
			absent:  []string{"dup-c"},
		}, {
			name:   "an unknown field",
			input:  text(cert("unknown", `,"isCA":true`)),
			errs:   []string{`document 1 (Certificate): spec.isCA: unknown field`},
			absent: []string{"unknown"},
		}, {
			name:   "a field name in the wrong case",
			input:  text(cert("casing", `,"SecretName":"shared-tls"`)),
			errs:   []string{`document 1 (Certificate): spec.SecretName: unknown field (did you mean "secretName"?)`},
			absent: []string{"casing"},
		}, {
			name:   "a string where a list goes",
			input:  text(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"wrongtype"},"spec":{"dnsNames":"a.example.com"}}`),
			errs:   []string{`document 1 (Certificate): spec.dnsNames: got a JSON string, want a list of strings`},
			absent: []string{"wrongtype"},
		}, {
			name:  "a long apiVersion",
			input: text(`{"apiVersion":"` + strings.Repeat("v", 1000) + `","kind":"Certificate"}`),
			errs:  []string{`document 1: apiVersion: "` + strings.Repeat("v", 64) + `..." is not supported (want acmeq.io/v1)`},
		}, {
			name:  "a kind with a newline",
			input: text(`{"apiVersion":"acmeq.io/v1","kind":"Certificate\nkind: Issuer"}`),
			errs:  []string{`document 1: kind: "Certificate\nkind: Issuer" is not supported (want Issuer, ClusterIssuer or Certificate)`},
		}, {
			name:  "an Order",
			input: text("apiVersion: acmeq.io/v1\nkind: Order\n"),
			errs:  []string{`document 1: kind: Order cannot be applied: orders, challenges and certificaterequests are created by workers (want Issuer, ClusterIssuer or Certificate)`},
		}, {
			name:  "a scalar",
			input: text("just some text\n"),
			errs:  []string{`document 1: want an object with apiVersion and kind, got a string`},
		},

		// Names.
		{
			name:   "Unicode DNS name",
			input:  text(certNames("idn-unicode", "dev", "bücher.example")),
			errs:   []string{invalidCert + `idn-unicode is invalid: spec.dnsNames[0]: "bücher.example" is not a valid DNS name: it contains non-ASCII characters: write it in its ASCII (punycode) form "xn--bcher-kva.example"`},
			absent: []string{"idn-unicode"},
		}, {
			name:    "punycode DNS name",
			input:   text(certNames("idn-ok", "dev", "xn--bcher-kva.example", "www.xn--bcher-kva.example")),
			applied: []string{"certificate/default/idn-ok created"},
		}, {
			name:   "punycode that does not decode",
			input:  text(certNames("idn-bad", "dev", "xn--zz.example")),
			errs:   []string{invalidCert + `idn-bad is invalid: spec.dnsNames[0]: "xn--zz.example" is not a valid DNS name: label "xn--zz" is not a valid IDNA label: idna: invalid label "zz"`},
			absent: []string{"idn-bad"},
		}, {
			name:   "punycode of nothing",
			input:  text(certNames("idn-empty", "dev", "xn--.example")),
			errs:   []string{invalidCert + `idn-empty is invalid: spec.dnsNames[0]: "xn--.example" is not a valid DNS name: label "xn--" ends with '-'`},
			absent: []string{"idn-empty"},
		}, {
			name:   "punycode of a disallowed character",
			input:  text(certNames("idn-disallowed", "dev", "xn--a.example")),
			errs:   []string{invalidCert + `idn-disallowed is invalid: spec.dnsNames[0]: "xn--a.example" is not a valid DNS name: label "xn--a" is not a valid IDNA label: idna: invalid label "\u0080"`},
			absent: []string{"idn-disallowed"},
		}, {
			name:   "hyphens reserved for IDNA",
			input:  text(certNames("rldh", "dev", "ab--cd.example.com")),
			errs:   []string{invalidCert + `rldh is invalid: spec.dnsNames[0]: "ab--cd.example.com" is not a valid DNS name: label "ab--cd" has "--" in its third and fourth characters, which only IDNA labels ("xn--") may have`},
			absent: []string{"rldh"},
		}, {
			name:   "a newline in a DNS name",
			input:  text(certNames("ctrl", "dev", "a\nb.example.com")),
			errs:   []string{invalidCert + `ctrl is invalid: spec.dnsNames[0]: "a\nb.example.com" is not a valid DNS name: label "a\nb" contains '\n' (allowed: a-z, 0-9 and '-')`},
			absent: []string{"ctrl"},
		}, {
			name:   "an IP address",
			input:  text(certNames("ip", "dev", "192.0.2.7")),
			errs:   []string{invalidCert + `ip is invalid: spec.dnsNames[0]: "192.0.2.7" is an IP address, not a DNS name (acmeq issues for DNS names only)`},
			absent: []string{"ip"},
		}, {
			name:   "101 DNS names",
			input:  text(certNames("many-names", "dev", names(101)...)),
			errs:   []string{invalidCert + `many-names is invalid: spec.dnsNames: 101 names, at most 100 are allowed (the ACME limit of Let's Encrypt)`},
			absent: []string{"many-names"},
		}, {
			name:  "30 bad names, problems counted past 20",
			input: text(certNames("bad-names", "dev", badNames...)),
			errs: []string{invalidCert + `bad-names is invalid: ` + func() string {
				var lines []string
				for i := range 20 {
					lines = append(lines, fmt.Sprintf(`spec.dnsNames[%d]: "bad_%02d.example.com" is not a valid DNS name: label "bad_%02d" contains '_' (allowed: a-z, 0-9 and '-')`, i, i, i))
				}
				return strings.Join(append(lines, "... and 10 more problems"), "\n")
			}()},
			absent: []string{"bad-names"},
		}, {
			name:   "a name no solver of the issuer selects",
			input:  text(certNames("unserved", "zones", "shop.example.com", "api.other.org")),
			errs:   []string{invalidCert + `unserved is invalid: spec.dnsNames[1]: "api.other.org" cannot be validated: issuer "zones": no solver matches "api.other.org": solver 0 (dns01): dnsZones ["dns.example"] do not contain "api.other.org"; solver 1 (http01): dnsZones ["example.com"] do not contain "api.other.org"`},
			absent: []string{"unserved"},
		}, {
			name:   "a wildcard only HTTP-01 would serve",
			input:  text(certNames("wild-http", "zones", "*.example.com")),
			errs:   []string{invalidCert + `wild-http is invalid: spec.dnsNames[0]: "*.example.com" is a wildcard, which only DNS-01 can validate: issuer "zones": no solver matches "*.example.com": solver 0 (dns01): dnsZones ["dns.example"] do not contain "*.example.com"; solver 1 (http01): HTTP-01 cannot validate a wildcard name`},
			absent: []string{"wild-http"},
		}, {
			name:    "names each served by a solver",
			input:   text(certNames("served", "zones", "*.dns.example", "dns.example", "www.example.com")),
			applied: []string{"certificate/default/served created"},
		}, {
			name:    "metadata.name of 200 characters",
			input:   text(certNames(name200, "dev", "long-name.example.com")),
			applied: []string{"certificate/default/" + name200 + " created"},
		}, {
			name:  "metadata.name of 201 characters",
			input: text(certNames(name201, "dev", "long-name.example.com")),
			errs: []string{invalidCert + name201 + ` is invalid: metadata.name: "` + name201[:64] + `..." is 201 characters long, at most 200 are allowed` + "\n" +
				`spec.secretName: "` + name201[:64] + `..." is 201 characters long, at most 200 are allowed`},
			absent: []string{name201},
		}, {
			name:    "metadata.namespace of 200 characters",
			input:   text(`{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"ns200","namespace":"` + name200 + `"},"spec":{"acme":{"server":"https://acme.example.com/directory"}}}`),
			applied: []string{"issuer/" + name200 + "/ns200 created"},
		}, {
			name:  "metadata.namespace of 201 characters",
			input: text(`{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"ns201","namespace":"` + name201 + `"},"spec":{"acme":{"server":"https://acme.example.com/directory"}}}`),
			errs:  []string{"producer: issuer/" + name201 + `/ns201 is invalid: metadata.namespace: "` + name201[:64] + `..." is 201 characters long, at most 200 are allowed`},
		}, {
			name:    "an Issuer name of 200 characters gets a shortened account key",
			input:   text(issuerYAML(name200, "")),
			applied: []string{"issuer/default/" + name200 + " created"},
		}, {
			name:   "an invalid spec.secretName",
			input:  text(cert("bad-secret", `,"secretName":"Web_TLS"`)),
			errs:   []string{invalidCert + `bad-secret is invalid: spec.secretName: "Web_TLS" must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character`},
			absent: []string{"bad-secret"},
		}, {
			name:   "an unknown issuer",
			input:  text(certNames("orphan", "prod", "orphan.example.com")),
			errs:   []string{invalidCert + `orphan is invalid: spec.issuerRef.name: issuer "prod" not found in namespace "default"`},
			absent: []string{"orphan"},
		},

		// Labels.
		{
			name:   "a label key with a space",
			input:  text("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: label-key\n  labels: {\"bad key\": x}\nspec: {dnsNames: [label-key.example.com], issuerRef: {name: dev}}\n"),
			errs:   []string{invalidCert + `label-key is invalid: metadata.labels: key "bad key" is not valid: ` + labelKeyRule},
			absent: []string{"label-key"},
		}, {
			name:   "a label value of 64 characters",
			input:  text("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: label-long\n  labels: {team: " + strings.Repeat("t", 64) + "}\nspec: {dnsNames: [label-long.example.com], issuerRef: {name: dev}}\n"),
			errs:   []string{invalidCert + `label-long is invalid: metadata.labels.team: value "` + strings.Repeat("t", 64) + `" is not valid: must be no more than 63 bytes`},
			absent: []string{"label-long"},
		}, {
			name:   "a label prefix that is not a DNS subdomain",
			input:  text("apiVersion: acmeq.io/v1\nkind: Certificate\nmetadata:\n  name: label-prefix\n  labels: {Example.COM/team: shop}\nspec: {dnsNames: [label-prefix.example.com], issuerRef: {name: dev}}\n"),
			errs:   []string{invalidCert + `label-prefix is invalid: metadata.labels: key "Example.COM/team" is not valid: prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
			absent: []string{"label-prefix"},
		}, {
			name:   "a label value with a control character",
			input:  text(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"label-ctrl","labels":{"app.kubernetes.io/name":"a\u001bb"}},"spec":{"dnsNames":["label-ctrl.example.com"],"issuerRef":{"name":"dev"}}}`),
			errs:   []string{invalidCert + `label-ctrl is invalid: metadata.labels["app.kubernetes.io/name"]: value "a\x1bb" is not valid: ` + labelValueRule},
			absent: []string{"label-ctrl"},
		},

		// Issuers.
		{
			name:    "an Issuer with solvers: []",
			input:   text(issuerYAML("no-solvers", "    solvers: []\n")),
			applied: []string{"issuer/default/no-solvers created"},
		}, {
			name:  "a selector zone that is not a DNS name",
			input: text(issuerYAML("bad-zone", "    solvers:\n    - selector: {dnsZones: [\"exa mple.com\", \"*.example.com\", example.org.]}\n      http01: {}\n")),
			errs: []string{"producer: issuer/default/bad-zone is invalid: " +
				`spec.acme.solvers[0].selector.dnsZones[0]: "exa mple.com" is not a valid DNS zone: label "exa mple" contains ' ' (allowed: a-z, 0-9 and '-')` + "\n" +
				`spec.acme.solvers[0].selector.dnsZones[1]: "*.example.com" is not a valid DNS zone: a zone cannot be a wildcard (a zone selects its subdomains: write "example.com")`},
		}, {
			name:  "a selector name that is not a DNS name",
			input: text(issuerYAML("bad-sel-name", "    solvers:\n    - selector: {dnsNames: [\"*.example.com\", bad_name.example.com, \"bücher.example\"]}\n      dns01: {rfc2136: {nameserver: \"10.0.0.53:53\"}}\n")),
			errs: []string{"producer: issuer/default/bad-sel-name is invalid: " +
				`spec.acme.solvers[0].selector.dnsNames[1]: "bad_name.example.com" is not a valid DNS name: label "bad_name" contains '_' (allowed: a-z, 0-9 and '-')` + "\n" +
				`spec.acme.solvers[0].selector.dnsNames[2]: "bücher.example" is not a valid DNS name: it contains non-ASCII characters: write it in its ASCII (punycode) form "xn--bcher-kva.example"`},
		}, {
			name:  "an Issuer over the size limit",
			input: text(`{"apiVersion":"acmeq.io/v1","kind":"Issuer","metadata":{"name":"big-issuer"},"spec":{"acme":{"server":"https://acme.example.com/directory","solvers":[{"selector":{"dnsNames":[` + strings.Join(names50k, ",") + `]},"http01":{}}]}}}`),
			errs:  []string{`producer: issuer/default/big-issuer is invalid: spec.acme.solvers[0].selector.dnsNames: 50000 names, the resource is 1.1 MiB, over the 960 KiB limit`},
		}, {
			name:   "a Certificate over the size limit",
			input:  text(`{"apiVersion":"acmeq.io/v1","kind":"Certificate","metadata":{"name":"big-cert","labels":{` + strings.Join(bigLabels, ",") + `}},"spec":{"dnsNames":["big-cert.example.com"],"issuerRef":{"name":"dev"}}}`),
			errs:   []string{invalidCert + `big-cert is invalid: metadata.labels: 20000 labels, the resource is 1.1 MiB, over the 960 KiB limit`},
			absent: []string{"big-cert"},
		},

		// Secrets.
		{
			name:   "another Certificate's Secret",
			input:  text(cert("steal", `,"secretName":"shared-tls"`)),
			errs:   []string{invalidCert + `steal is invalid: spec.secretName: Secret "shared-tls" is owned by certificate/default/owner-a`},
			absent: []string{"steal"},
		}, {
			name:   "the Issuer's account key",
			input:  text(cert("steal-key", `,"secretName":"dev-account-key"`)),
			errs:   []string{invalidCert + `steal-key is invalid: spec.secretName: Secret "dev-account-key" is owned by issuer/default/dev (its ACME account key)`},
			absent: []string{"steal-key"},
		}, {
			name:  "an Issuer whose account key is a Certificate's Secret",
			input: text(issuerYAML("steal-issuer", "    privateKeySecretRef: {name: shared-tls}\n")),
			errs:  []string{`producer: issuer/default/steal-issuer is invalid: spec.acme.privateKeySecretRef.name: Secret "shared-tls" is owned by certificate/default/owner-a`},
		}, {
			name:   "a Secret written before claims, for another Certificate",
			input:  text(cert("steal-legacy", `,"secretName":"legacy-tls"`)),
			errs:   []string{invalidCert + `steal-legacy is invalid: spec.secretName: Secret "legacy-tls" is owned by certificate/default/gone`},
			absent: []string{"steal-legacy"},
		}, {
			name:   "a Secret a user created",
			input:  text(cert("steal-tsig", `,"secretName":"tsig"`)),
			errs:   []string{invalidCert + `steal-tsig is invalid: spec.secretName: Secret "tsig" holds data created with acmeq create secret, which no Certificate or Issuer may overwrite`},
			absent: []string{"steal-tsig"},
		}, {
			name:    "two Certificates of one file naming one Secret",
			input:   text(cert("twin-1", `,"secretName":"twin-tls"`) + "\n" + cert("twin-2", `,"secretName":"twin-tls"`) + "\n"),
			errs:    []string{invalidCert + `twin-2 is invalid: spec.secretName: Secret "twin-tls" is owned by certificate/default/twin-1`},
			applied: []string{"certificate/default/twin-1 created"},
			absent:  []string{"twin-2"},
		}, {
			name:   "a Certificate's default secretName taken by another",
			input:  text(cert("shared-tls", "")),
			errs:   []string{invalidCert + `shared-tls is invalid: spec.secretName: Secret "shared-tls" is owned by certificate/default/owner-a`},
			absent: []string{"shared-tls"},
		},
	}
	if len(tests) < 50 {
		t.Fatalf("%d bad inputs, the brief asks for at least 50", len(tests))
	}

	accepted := map[string]bool{}
	refusedCerts := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			applied, errs, refused := applyFile(t, e.c, tt.input(t))
			if !slices.Equal(errs, tt.errs) {
				t.Errorf("errors:\n got: %s\nwant: %s", strings.Join(quoteAll(errs), "\n      "), strings.Join(quoteAll(tt.errs), "\n      "))
			}
			if !slices.Equal(applied, tt.applied) {
				t.Errorf("applied %q, want %q", applied, tt.applied)
			}
			for _, a := range applied {
				accepted[strings.Fields(a)[0]] = true
			}
			for _, r := range refused {
				refusedCerts[r] = true
			}
			for _, n := range tt.absent {
				refusedCerts[ref(messages.KindCertificate, "default", n)] = true
			}
		})
	}

	// Every accepted resource is stored; no refused Certificate is.
	for r := range accepted {
		kind, ns, name := splitRef(t, r)
		obj, _ := messages.New(kind)
		if err := e.st.Get(ctx, ns, name, obj); err != nil {
			t.Errorf("accepted %s is not stored: %v", r, err)
		}
	}
	for r := range refusedCerts {
		if accepted[r] || r == "certificate/default/owner-a" {
			continue
		}
		kind, ns, name := splitRef(t, r)
		obj, _ := messages.New(kind)
		if err := e.st.Get(ctx, ns, name, obj); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused %s: %v, want not stored", r, err)
		}
	}
	// The Issuer with solvers: [] has its solver spelled out.
	var ns messages.Issuer
	if err := e.st.Get(ctx, "default", "no-solvers", &ns); err != nil || len(ns.Spec.ACME.Solvers) != 1 || ns.Spec.ACME.Solvers[0].HTTP01 == nil {
		t.Errorf("issuer no-solvers: %+v, %v; want one http01 solver", ns.Spec.ACME, err)
	}
	// Every claim belongs to a stored resource that names that Secret, and
	// every stored Certificate and Issuer holds its claim: a refused apply
	// left none behind.
	checkClaims(ctx, t, e)
}

// checkClaims compares the claims in the store with the Secrets the stored
// Certificates and Issuers name.
func checkClaims(ctx context.Context, t *testing.T, e *env) {
	t.Helper()
	want := map[string]string{}
	for _, k := range []messages.Kind{messages.KindCertificate, messages.KindIssuer} {
		objs, err := e.st.List(ctx, k, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			_, secret, owner, _ := SecretClaim(o)
			want[messages.Key(owner.Namespace, secret)] = owner.Kind.Token() + "/" + owner.Name
		}
	}
	want["default.tsig"] = "secret/tsig"
	got := map[string]string{}
	for _, c := range e.claims(t) {
		key, owner, _ := strings.Cut(c, " ")
		got[key] = owner
	}
	for k, o := range got {
		if want[k] != o {
			t.Errorf("claim %s by %s: no stored resource names that Secret", k, o)
		}
	}
	for k, o := range want {
		if got[k] != o {
			t.Errorf("%s names Secret %s but holds no claim on it", o, k)
		}
	}
}

func splitRef(t *testing.T, r string) (messages.Kind, string, string) {
	t.Helper()
	parts := strings.SplitN(r, "/", 3)
	if len(parts) != 3 {
		t.Fatalf("bad ref %q", r)
	}
	k, err := messages.ParseKind(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	return k, parts[1], parts[2]
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
