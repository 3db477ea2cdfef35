package store_test

import (
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// setup starts an in-process NATS server and opens a Store on it.
func setup(t *testing.T) (*store.Store, jetstream.JetStream) {
	t.Helper()
	js := stacktest.JetStream(t)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), js, sealer, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return st, js
}

func certRef(name string) messages.ObjectReference {
	return messages.ObjectReference{Kind: messages.KindCertificate, Namespace: "default", Name: name}
}

func TestClaimSecret(t *testing.T) {
	t.Parallel()
	st, js := setup(t)
	ctx := t.Context()

	if _, err := st.SecretOwner(ctx, "default", "web-tls"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SecretOwner of an unclaimed name: %v, want ErrNotFound", err)
	}
	if err := st.ClaimSecret(ctx, "default", "web-tls", certRef("web")); err != nil {
		t.Fatal(err)
	}
	// Idempotent, with or without the namespace spelled out.
	if err := st.ClaimSecret(ctx, "default", "web-tls", messages.ObjectReference{Kind: messages.KindCertificate, Name: "web"}); err != nil {
		t.Fatalf("claiming again: %v", err)
	}
	if o, err := st.SecretOwner(ctx, "default", "web-tls"); err != nil || o != certRef("web") {
		t.Fatalf("SecretOwner: %+v, %v", o, err)
	}
	// Another owner is refused, and told who holds it.
	err := st.ClaimSecret(ctx, "default", "web-tls", certRef("other"))
	var oe *store.OwnedError
	if !errors.Is(err, store.ErrOwned) || !errors.As(err, &oe) || oe.Owner != certRef("web") {
		t.Fatalf("ClaimSecret by another owner: %v, want ErrOwned naming certificate web", err)
	}
	const want = "store: secret owned by another resource: secret default/web-tls is owned by Certificate default/web"
	if err.Error() != want {
		t.Errorf("error:\n got: %s\nwant: %s", err, want)
	}
	// The same name in another namespace is another Secret.
	if err := st.ClaimSecret(ctx, "shop", "web-tls", messages.ObjectReference{Kind: messages.KindCertificate, Namespace: "shop", Name: "other"}); err != nil {
		t.Fatalf("claim in another namespace: %v", err)
	}

	// Release by someone else does nothing; by the owner frees the name.
	if err := st.ReleaseSecret(ctx, "default", "web-tls", certRef("other")); err != nil {
		t.Fatal(err)
	}
	if o, err := st.SecretOwner(ctx, "default", "web-tls"); err != nil || o != certRef("web") {
		t.Fatalf("after a release by another owner: %+v, %v", o, err)
	}
	if err := st.ReleaseSecret(ctx, "default", "web-tls", certRef("web")); err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseSecret(ctx, "default", "web-tls", certRef("web")); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
	if _, err := st.SecretOwner(ctx, "default", "web-tls"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SecretOwner after release: %v, want ErrNotFound", err)
	}
	if err := st.ClaimSecret(ctx, "default", "web-tls", certRef("other")); err != nil {
		t.Fatalf("claim after release: %v", err)
	}

	// The claim is stored as the brief says: key <ns>.<name>, value the
	// owner as JSON.
	kv, err := js.KeyValue(ctx, store.SecretOwnerBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "default.web-tls")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(e.Value()); got != `{"kind":"Certificate","namespace":"default","name":"other"}` {
		t.Errorf("stored claim %s", got)
	}
}

// TestClaimSecretRace: of many resources claiming one Secret at once,
// exactly one wins and the others are told who.
func TestClaimSecretRace(t *testing.T) {
	t.Parallel()
	st, _ := setup(t)
	ctx := t.Context()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = st.ClaimSecret(ctx, "default", "shared", certRef(string(rune('a'+i))))
		})
	}
	wg.Wait()
	owner, err := st.SecretOwner(ctx, "default", "shared")
	if err != nil {
		t.Fatal(err)
	}
	won := 0
	for i, err := range errs {
		var oe *store.OwnedError
		switch {
		case err == nil:
			won++
			if owner != certRef(string(rune('a'+i))) {
				t.Errorf("claimant %d succeeded but the owner is %+v", i, owner)
			}
		case errors.As(err, &oe):
			if oe.Owner != owner {
				t.Errorf("claimant %d was told the owner is %+v, it is %+v", i, oe.Owner, owner)
			}
		default:
			t.Errorf("claimant %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d claimants won, want 1", won)
	}
}

// TestClaimSecretWithoutClaim: Secrets written before claims existed count
// as owned by their ownerReference, or by themselves without one.
func TestClaimSecretWithoutClaim(t *testing.T) {
	t.Parallel()
	st, js := setup(t)
	ctx := t.Context()
	issuer := messages.ObjectReference{Kind: messages.KindIssuer, Namespace: "default", Name: "dev"}
	data := map[string][]byte{"tls.key": []byte("key")}
	if err := st.PutSecret(ctx, "default", "dev-account-key", data, &issuer); err != nil {
		t.Fatal(err)
	}
	if err := st.PutSecret(ctx, "default", "tsig", data, nil); err != nil {
		t.Fatal(err)
	}

	if o, err := st.SecretOwner(ctx, "default", "dev-account-key"); err != nil || o != issuer {
		t.Fatalf("SecretOwner of an unclaimed Secret: %+v, %v; want its ownerReference", o, err)
	}
	self := messages.ObjectReference{Kind: messages.KindSecret, Namespace: "default", Name: "tsig"}
	if o, err := st.SecretOwner(ctx, "default", "tsig"); err != nil || o != self {
		t.Fatalf("SecretOwner of a user's Secret: %+v, %v; want the Secret itself", o, err)
	}

	err := st.ClaimSecret(ctx, "default", "dev-account-key", certRef("web"))
	var oe *store.OwnedError
	if !errors.As(err, &oe) || oe.Owner != issuer {
		t.Fatalf("claiming the account key for a Certificate: %v, want ErrOwned naming the issuer", err)
	}
	if err := st.ClaimSecret(ctx, "default", "tsig", certRef("web")); !errors.As(err, &oe) || oe.Owner != self {
		t.Fatalf("claiming a user's Secret for a Certificate: %v, want ErrOwned naming the Secret", err)
	}
	// A refused claim leaves nothing behind.
	kv, err := js.KeyValue(ctx, store.SecretOwnerBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"default.dev-account-key", "default.tsig"} {
		if _, err := kv.Get(ctx, k); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("claim %s after a refused claim: %v, want none", k, err)
		}
	}
	// The owner the Secret names may claim it.
	if err := st.ClaimSecret(ctx, "default", "dev-account-key", issuer); err != nil {
		t.Fatalf("claim by the Secret's ownerReference: %v", err)
	}
	if _, err := kv.Get(ctx, "default.dev-account-key"); err != nil {
		t.Errorf("the claim was not recorded: %v", err)
	}
}

// TestOpenKeepsClaims: opening the store again (every worker and CLI does)
// keeps the bucket and its claims.
func TestOpenKeepsClaims(t *testing.T) {
	t.Parallel()
	st, js := setup(t)
	ctx := t.Context()
	if err := st.ClaimSecret(ctx, "default", "web", certRef("web")); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := store.Open(ctx, js, sealer, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := again.SecretOwner(ctx, "default", "web"); err != nil || o != certRef("web") {
		t.Errorf("SecretOwner after reopening: %+v, %v", o, err)
	}
}
