package producer

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// claims lists the Secret claims in the store as "<key> <owner kind>/<owner name>".
func (e *env) claims(t *testing.T) []string {
	t.Helper()
	kv, err := e.js.KeyValue(t.Context(), store.SecretOwnerBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range keys.Keys() {
		ns, name, _ := messages.SplitKey(k)
		o, err := e.st.SecretOwner(t.Context(), ns, name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k+" "+o.Kind.Token()+"/"+o.Name)
	}
	sort.Strings(out)
	return out
}

func certWithSecret(name, secret string) *messages.Certificate {
	c := userCert()
	c.Metadata.Name = name
	c.Spec.SecretName = secret
	c.Spec.DNSNames = []string{name + ".example.com"}
	return c
}

func TestApplySecretOwnership(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.mustApply(t, userIssuer(), Created)
	e.mustApply(t, certWithSecret("a", "shared-tls"), Created)
	e.mustApply(t, certWithSecret("a", "shared-tls"), Unchanged)
	e.expectMsgs(t, 2)

	refused := []struct {
		name string
		obj  messages.Object
		want string
	}{{
		name: "another Certificate's Secret",
		obj:  certWithSecret("b", "shared-tls"),
		want: `producer: certificate/default/b is invalid: spec.secretName: Secret "shared-tls" is owned by certificate/default/a`,
	}, {
		name: "the Issuer's account key",
		obj:  certWithSecret("c", "dev-account-key"),
		want: `producer: certificate/default/c is invalid: spec.secretName: Secret "dev-account-key" is owned by issuer/default/dev (its ACME account key)`,
	}, {
		name: "an Issuer whose account key is a Certificate's Secret",
		obj: func() messages.Object {
			i := userIssuer()
			i.Metadata.Name = "other"
			i.Spec.ACME.PrivateKeySecretRef.Name = "shared-tls"
			return i
		}(),
		want: `producer: issuer/default/other is invalid: spec.acme.privateKeySecretRef.name: Secret "shared-tls" is owned by certificate/default/a`,
	}, {
		name: "an Issuer whose account key is another Issuer's",
		obj: func() messages.Object {
			i := userIssuer()
			i.Metadata.Name = "other"
			i.Spec.ACME.PrivateKeySecretRef.Name = "dev-account-key"
			return i
		}(),
		want: `producer: issuer/default/other is invalid: spec.acme.privateKeySecretRef.name: Secret "dev-account-key" is owned by issuer/default/dev (its ACME account key)`,
	}}
	for _, tt := range refused {
		_, err := e.c.Apply(ctx, tt.obj)
		var inv *InvalidError
		if !errors.As(err, &inv) || !errors.Is(err, ErrSecretOwned) {
			t.Errorf("%s: Apply: %v, want an *InvalidError matching ErrSecretOwned", tt.name, err)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s: Apply:\n got: %s\nwant: %s", tt.name, err, tt.want)
		}
	}
	// Nothing was written or queued, and no claim was left.
	var c messages.Certificate
	if err := e.st.Get(ctx, "default", "b", &c); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("certificate b: %v, want not found", err)
	}
	var i messages.Issuer
	if err := e.st.Get(ctx, "default", "other", &i); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("issuer other: %v, want not found", err)
	}
	e.expectMsgs(t, 2)
	want := []string{"default.dev-account-key issuer/dev", "default.shared-tls certificate/a"}
	if got := e.claims(t); !equal(got, want) {
		t.Errorf("claims %q, want %q", got, want)
	}

	// Changing spec.secretName claims the new name; the old one stays with
	// the Certificate until a worker has re-issued into the new one.
	e.mustApply(t, certWithSecret("a", "a-tls"), Configured)
	want = []string{"default.a-tls certificate/a", "default.dev-account-key issuer/dev", "default.shared-tls certificate/a"}
	if got := e.claims(t); !equal(got, want) {
		t.Errorf("claims after renaming the Secret %q, want %q", got, want)
	}
	// Released (as `acmeq delete certificate` does), the name is free.
	field, secret, owner, ok := SecretClaim(certWithSecret("a", "shared-tls"))
	if !ok || field != "spec.secretName" || secret != "shared-tls" || owner != (messages.ObjectReference{Kind: messages.KindCertificate, Name: "a"}) {
		t.Fatalf("SecretClaim: %s %s %+v %v", field, secret, owner, ok)
	}
	if err := e.st.ReleaseSecret(ctx, "default", secret, owner); err != nil {
		t.Fatal(err)
	}
	e.mustApply(t, certWithSecret("b", "shared-tls"), Created)
}

// TestApplySecretsWrittenBeforeClaims: a Secret stored before claims
// existed belongs to its ownerReference; one created with `acmeq create
// secret` belongs to no Certificate.
func TestApplySecretsWrittenBeforeClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.mustApply(t, userIssuer(), Created)
	old := messages.ObjectReference{Kind: messages.KindCertificate, Namespace: "default", Name: "old"}
	if err := e.st.PutSecret(ctx, "default", "old-tls", map[string][]byte{"tls.crt": []byte("x")}, &old); err != nil {
		t.Fatal(err)
	}
	if err := e.c.PutSecret(ctx, "", "tsig", map[string][]byte{"secret": []byte("c2VjcmV0")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		obj  messages.Object
		want string
	}{
		{certWithSecret("new", "old-tls"), `producer: certificate/default/new is invalid: spec.secretName: Secret "old-tls" is owned by certificate/default/old`},
		{certWithSecret("new", "tsig"), `producer: certificate/default/new is invalid: spec.secretName: Secret "tsig" holds data created with acmeq create secret, which no Certificate or Issuer may overwrite`},
	}
	for _, tt := range tests {
		if _, err := e.c.Apply(ctx, tt.obj); err == nil || err.Error() != tt.want {
			t.Errorf("Apply:\n got: %v\nwant: %s", err, tt.want)
		}
	}
	// The owner named by the old Secret may take it; creating a secret over
	// a Certificate's is refused.
	e.mustApply(t, certWithSecret("old", "old-tls"), Created)
	err := e.c.PutSecret(ctx, "", "old-tls", map[string][]byte{"secret": []byte("x")})
	const want = `producer: secret/default/old-tls is invalid: metadata.name: Secret "old-tls" is owned by certificate/default/old`
	if !errors.Is(err, ErrSecretOwned) || err.Error() != want {
		t.Errorf("PutSecret over a Certificate's Secret:\n got: %v\nwant: %s", err, want)
	}
	// The user's own secret can be replaced.
	if err := e.c.PutSecret(ctx, "", "tsig", map[string][]byte{"secret": []byte("bmV3")}); err != nil {
		t.Errorf("PutSecret again: %v", err)
	}
	got := e.claims(t)
	want2 := []string{"default.dev-account-key issuer/dev", "default.old-tls certificate/old", "default.tsig secret/tsig"}
	if !equal(got, want2) {
		t.Errorf("claims %q, want %q", got, want2)
	}
}

// TestApplyReleasesClaimOnFailedWrite: a claim made for a write that then
// fails is given back.
func TestApplyReleasesClaimOnFailedWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.mustApply(t, userIssuer(), Created)
	// A bucket that takes no value as large as a Certificate: the read
	// finds nothing, the claim is made, the write fails.
	if err := e.js.DeleteKeyValue(ctx, messages.KindCertificate.Bucket()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: messages.KindCertificate.Bucket(), MaxValueSize: 16}); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.Apply(ctx, certWithSecret("web", "web-tls"))
	if err == nil || !strings.HasPrefix(err.Error(), "producer: create certificate/default/web: ") {
		t.Fatalf("Apply into a bucket that refuses it: %v", err)
	}
	want := []string{"default.dev-account-key issuer/dev"}
	if got := e.claims(t); !equal(got, want) {
		t.Errorf("claims %q, want %q", got, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
