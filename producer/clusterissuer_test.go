package producer

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/acmeq/acmeq/messages"
)

// eab is a valid binding, as a ZeroSSL or Google user writes it.
func eab() *messages.ExternalAccountBinding {
	return &messages.ExternalAccountBinding{KeyID: "kid-1", KeySecretRef: messages.SecretKeySelector{Name: "zerossl-eab", Key: "secret"}}
}

// clusterIssuer is a ClusterIssuer as a user writes it.
func clusterIssuer() *messages.Issuer {
	i := messages.NewIssuer(messages.KindClusterIssuer)
	i.Metadata.Name = "letsencrypt"
	i.Spec.ACME = &messages.ACMEIssuer{Server: "https://acme.example.com/directory", Email: "ops@example.com"}
	return i
}

// Bad input for spec.acme.externalAccountBinding and for ClusterIssuers:
// each is refused with the field and the rule.
func TestValidateIssuerEABAndClusterIssuer(t *testing.T) {
	t.Parallel()
	const f = "spec.acme.externalAccountBinding"
	withEAB := func(mut func(e *messages.ExternalAccountBinding)) func(*messages.Issuer) {
		return func(i *messages.Issuer) {
			e := eab()
			mut(e)
			i.Spec.ACME.ExternalAccountBinding = e
		}
	}
	tests := []struct {
		name    string
		cluster bool
		mutate  func(i *messages.Issuer)
		want    string // "" means valid
	}{
		{"valid binding", false, withEAB(func(*messages.ExternalAccountBinding) {}), ""},
		{"valid binding with HS256", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeyAlgorithm = "HS256" }), ""},
		{"valid ClusterIssuer", true, func(*messages.Issuer) {}, ""},
		{"valid ClusterIssuer with a binding", true, withEAB(func(*messages.ExternalAccountBinding) {}), ""},
		{"empty binding", false, withEAB(func(e *messages.ExternalAccountBinding) { *e = messages.ExternalAccountBinding{} }),
			f + `: keyID and keySecretRef are required (the key ID and the HMAC key the CA gave you)`},
		{"keyID without keySecretRef", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeySecretRef = messages.SecretKeySelector{} }),
			f + `.keySecretRef: required with keyID (the Secret key holding the HMAC key the CA gave, base64url)`},
		{"keySecretRef without keyID", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeyID = "" }),
			f + `.keyID: required with keySecretRef (the key ID the CA gave with the HMAC key)`},
		{"keySecretRef without key", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeySecretRef.Key = "" }),
			f + `.keySecretRef.key: must not be empty`},
		{"keySecretRef without name", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeySecretRef.Name = "" }),
			f + `.keySecretRef.name: must not be empty`},
		{"keySecretRef with a bad name", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeySecretRef.Name = "EAB" }),
			f + `.keySecretRef.name: "EAB" ` + objectNameRule},
		{"keySecretRef with a bad key", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeySecretRef.Key = "a/b" }),
			f + `.keySecretRef.key: "a/b" must consist of alphanumeric characters, '-', '_' or '.'`},
		{"keyID with a space", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeyID = "kid 1" }),
			f + `.keyID: "kid 1" must not contain white space or control characters`},
		{"keyID too long", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeyID = strings.Repeat("k", 1025) }),
			f + `.keyID: 1025 characters long, at most 1024 are allowed`},
		{"keyAlgorithm HS512", false, withEAB(func(e *messages.ExternalAccountBinding) { e.KeyAlgorithm = "HS512" }),
			f + `.keyAlgorithm: "HS512" is not supported (want HS256: bindings are signed with HS256, as cert-manager signs them)`},
		{"ClusterIssuer with a namespace", true, func(i *messages.Issuer) { i.Metadata.Namespace = "default" },
			`metadata.namespace: a ClusterIssuer has no namespace, got "default"`},
		{"ClusterIssuer with a bad name and binding", true, func(i *messages.Issuer) {
			i.Metadata.Name = "Lets.Encrypt"
			i.Spec.ACME.ExternalAccountBinding = &messages.ExternalAccountBinding{KeyID: "kid"}
		}, `metadata.name: "Lets.Encrypt" ` + objectNameRule + "\n" + f + `.keySecretRef: required with keyID (the Secret key holding the HMAC key the CA gave, base64url)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			i := httpIssuer()
			if tt.cluster {
				i = clusterIssuer()
				SetDefaults(i)
			}
			tt.mutate(i)
			err := ValidateIssuer(i)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("ValidateIssuer: %v, want valid", err)
			case tt.want != "" && err == nil:
				t.Fatalf("ValidateIssuer: valid, want\n%s", tt.want)
			case tt.want != "" && err.Error() != tt.want:
				t.Errorf("ValidateIssuer:\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

// A ClusterIssuer applies without a namespace (one given is cleared, as
// Kubernetes clears it), is queued on its own subject, and its account key
// is not claimed by Apply (the workers' cluster resource namespace is not
// known here).
func TestApplyClusterIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	ci := clusterIssuer()
	ci.Metadata.Namespace = "cert-manager" // as cert-manager manifests often carry
	e.mustApply(t, ci, Created)
	got := messages.NewIssuer(messages.KindClusterIssuer)
	if err := e.st.Get(ctx, "", "letsencrypt", got); err != nil {
		t.Fatal(err)
	}
	if got.Metadata.Namespace != "" || got.Kind != messages.KindClusterIssuer || got.Spec.ACME.PrivateKeySecretRef.Name != "letsencrypt-account-key" {
		t.Errorf("stored %+v %+v", got.TypeMeta, got.Metadata)
	}
	// Not in the Issuer bucket.
	if ok, err := e.st.Exists(ctx, messages.KindIssuer, "cert-manager", "letsencrypt"); err != nil || ok {
		t.Errorf("Issuer cert-manager/letsencrypt exists: %v, %v", ok, err)
	}
	tr, _ := e.lastTransition(t, messages.KindClusterIssuer, "", "letsencrypt")
	if tr.Kind != messages.KindClusterIssuer || tr.Namespace != "" || tr.Subject() != "acmeq.work.clusterissuer._.letsencrypt" {
		t.Errorf("transition %+v", tr)
	}
	for _, ns := range []string{"default", "cert-manager", "acmeq"} {
		if _, err := e.st.SecretOwner(ctx, ns, "letsencrypt-account-key"); err == nil {
			t.Errorf("Apply claimed %s/letsencrypt-account-key", ns)
		}
	}
	e.mustApply(t, clusterIssuer(), Unchanged)

	// Certificates of any namespace may use it; an Issuer of that name is
	// another resource.
	for _, ns := range []string{"tenant-a", "tenant-b"} {
		c := userCert()
		c.Metadata.Namespace = ns
		c.Spec.IssuerRef = messages.IssuerRef{Name: "letsencrypt", Kind: "ClusterIssuer"}
		e.mustApply(t, c, Created)
	}
	c := userCert()
	c.Spec.IssuerRef = messages.IssuerRef{Name: "letsencrypt"}
	_, err := e.c.Apply(ctx, c)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Err.Error() != `spec.issuerRef.name: issuer "letsencrypt" not found in namespace "default"` {
		t.Errorf("Certificate naming Issuer letsencrypt: %v", err)
	}
	c.Spec.IssuerRef = messages.IssuerRef{Name: "zerossl", Kind: "ClusterIssuer"}
	if _, err := e.c.Apply(ctx, c); !errors.As(err, &inv) || inv.Err.Error() != `spec.issuerRef.name: clusterissuer "zerossl" not found` {
		t.Errorf("Certificate naming ClusterIssuer zerossl: %v", err)
	}

	// An invalid ClusterIssuer is named without a namespace.
	bad := clusterIssuer()
	bad.Spec.ACME.Server = "http://acme.example.com/directory"
	_, err = e.c.Apply(ctx, bad)
	if !errors.As(err, &inv) || inv.Kind != messages.KindClusterIssuer || !strings.HasPrefix(err.Error(), "producer: clusterissuer/letsencrypt is invalid: spec.acme.server") {
		t.Errorf("Apply of an invalid ClusterIssuer: %v", err)
	}
}

// Writing an issuer's External Account Binding Secret wakes the issuers
// that wait for it, and only those.
func TestPutSecretWakesWaitingIssuers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	waiting := userIssuer()
	waiting.Metadata.Name = "zerossl"
	waiting.Spec.ACME.ExternalAccountBinding = eab()
	other := userIssuer() // no binding
	ci := clusterIssuer()
	ci.Spec.ACME.ExternalAccountBinding = eab()
	elsewhere := userIssuer()
	elsewhere.Metadata.Name, elsewhere.Metadata.Namespace = "zerossl", "staging"
	elsewhere.Spec.ACME.ExternalAccountBinding = eab()
	for _, i := range []*messages.Issuer{waiting, other, ci, elsewhere} {
		e.mustApply(t, i, Created)
	}
	before := e.workMsgs(t)
	if err := e.c.PutSecret(ctx, "default", "zerossl-eab", map[string][]byte{"secret": []byte("c2VjcmV0")}); err != nil {
		t.Fatal(err)
	}
	// The Issuer of default and the ClusterIssuer; not the Issuer without
	// a binding, nor the one of another namespace.
	if got := e.workMsgs(t); got != before+2 {
		t.Fatalf("work stream: %d new messages, want 2", got-before)
	}
	for _, w := range []struct {
		kind messages.Kind
		ns   string
		name string
	}{{messages.KindIssuer, "default", "zerossl"}, {messages.KindClusterIssuer, "", "letsencrypt"}} {
		tr, _ := e.lastTransition(t, w.kind, w.ns, w.name)
		if tr.Action != messages.ActionApply || tr.Cause != "secret/zerossl-eab" {
			t.Errorf("%s %s/%s: last transition %+v", w.kind, w.ns, w.name, tr)
		}
	}
	// A Ready issuer has registered: it is not woken.
	got := &messages.Issuer{}
	if err := e.st.Get(ctx, "default", "zerossl", got); err != nil {
		t.Fatal(err)
	}
	messages.SetCondition(&got.Status.Conditions, messages.Condition{Type: messages.ConditionReady, Status: messages.ConditionTrue}, got.Metadata.CreationTimestamp)
	if err := e.st.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	before = e.workMsgs(t)
	if err := e.c.PutSecret(ctx, "default", "zerossl-eab", map[string][]byte{"secret": []byte("b3RoZXI")}); err != nil {
		t.Fatal(err)
	}
	if got := e.workMsgs(t); got != before+1 {
		t.Errorf("work stream: %d new messages, want 1 (the ClusterIssuer)", got-before)
	}
}

// ClusterIssuer and EAB manifests as users write them (cert-manager's
// apiVersion included), through the decoder and Apply as `acmeq apply -f`
// runs them: the good ones are stored, each bad one is refused with its
// field and rule.
func TestApplyClusterIssuerManifests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const good = `apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: zerossl
  namespace: cert-manager
spec:
  acme:
    server: https://acme.zerossl.com/v2/DV90
    email: ops@example.com
    externalAccountBinding:
      keyID: kid-1
      keySecretRef:
        name: zerossl-eab
        key: secret
      keyAlgorithm: HS256
    solvers:
    - http01: {}
---
apiVersion: acmeq.io/v1
kind: Certificate
metadata: {name: shop, namespace: tenant-a}
spec:
  dnsNames: [shop.example.com]
  issuerRef: {name: zerossl, kind: ClusterIssuer, group: cert-manager.io}
`
	bad := []struct {
		name, manifest, want string
	}{{
		name: "HS384",
		manifest: `apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: gts}
spec:
  acme:
    server: https://dv.acme-v02.api.pki.goog/directory
    externalAccountBinding: {keyID: kid, keySecretRef: {name: gts-eab, key: secret}, keyAlgorithm: HS384}
`,
		want: `producer: clusterissuer/gts is invalid: spec.acme.externalAccountBinding.keyAlgorithm: "HS384" is not supported (want HS256: bindings are signed with HS256, as cert-manager signs them)`,
	}, {
		name: "binding without keyID",
		manifest: `apiVersion: acmeq.io/v1
kind: Issuer
metadata: {name: gts, namespace: tenant-a}
spec:
  acme:
    server: https://dv.acme-v02.api.pki.goog/directory
    externalAccountBinding: {keySecretRef: {name: gts-eab, key: secret}}
`,
		want: `producer: issuer/tenant-a/gts is invalid: spec.acme.externalAccountBinding.keyID: required with keySecretRef (the key ID the CA gave with the HMAC key)`,
	}, {
		name: "binding with the key inline",
		manifest: `apiVersion: acmeq.io/v1
kind: ClusterIssuer
metadata: {name: gts}
spec:
  acme:
    server: https://dv.acme-v02.api.pki.goog/directory
    externalAccountBinding: {keyID: kid, key: c2VjcmV0}
`,
		want: `document 1 (ClusterIssuer): spec.acme.externalAccountBinding.key: unknown field`,
	}, {
		name: "certificate of a foreign issuer kind",
		manifest: `apiVersion: acmeq.io/v1
kind: Certificate
metadata: {name: shop, namespace: tenant-a}
spec:
  dnsNames: [shop.example.com]
  issuerRef: {name: zerossl, kind: VenafiClusterIssuer}
`,
		want: `producer: certificate/tenant-a/shop is invalid: spec.issuerRef.kind: "VenafiClusterIssuer" is not supported (want Issuer or ClusterIssuer)`,
	}}
	apply := func(manifest string) (results []string, errs []string) {
		d := NewDecoder(strings.NewReader(manifest))
		for range 10 {
			obj, err := d.Next()
			if errors.Is(err, io.EOF) {
				return results, errs
			}
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			res, err := e.c.Apply(t.Context(), obj)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			m := obj.GetMeta()
			ns := m.Namespace
			if messages.IsClusterScoped(obj.GetKind()) {
				ns = "" // Apply ignores it
			}
			results = append(results, ref(obj.GetKind(), ns, m.Name)+" "+string(res))
		}
		t.Fatal("the decoder did not end")
		return nil, nil
	}
	res, errs := apply(good)
	if len(errs) > 0 || strings.Join(res, ", ") != "clusterissuer/zerossl created, certificate/tenant-a/shop created" {
		t.Fatalf("good manifests: %v, %v", res, errs)
	}
	for _, tt := range bad {
		res, errs := apply(tt.manifest)
		if len(res) > 0 || len(errs) != 1 || errs[0] != tt.want {
			t.Errorf("%s: applied %v, errors\n%s\nwant\n%s", tt.name, res, strings.Join(errs, "\n"), tt.want)
		}
	}
}
