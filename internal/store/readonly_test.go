package store

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
)

// OpenReadOnly creates no bucket: before a worker ran it fails with
// ErrBucketNotFound naming the bucket, and leaves the server empty; after,
// it reads what the writer wrote, watch entries included.
func TestOpenReadOnly(t *testing.T) {
	t.Parallel()
	js := stacktest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, _ := NewSealer(key)

	_, err := OpenReadOnly(ctx, js, sealer, messages.KindCertificate, messages.KindSecret)
	if !errors.Is(err, ErrBucketNotFound) || !strings.Contains(err.Error(), "ACMEQ_CERTIFICATES") {
		t.Fatalf("OpenReadOnly before any worker: %v", err)
	}
	if names := js.StreamNames(ctx); names.Err() != nil {
		t.Fatal(names.Err())
	} else {
		for s := range names.Name() {
			t.Errorf("OpenReadOnly created stream %s", s)
		}
	}

	w, err := Open(ctx, js, sealer, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.PutSecret(ctx, "default", "shop", map[string][]byte{"tls.key": []byte("k")}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReadOnly(ctx, js, sealer, messages.KindSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.GetSecret(ctx, "default", "shop"); err != nil || string(got["tls.key"]) != "k" {
		t.Fatalf("GetSecret = %q, %v", got, err)
	}
	e, err := r.KV(messages.KindSecret).Get(ctx, "default.shop")
	if err != nil {
		t.Fatal(err)
	}
	sec, data, err := r.OpenSecretEntry(e)
	if err != nil || string(data["tls.key"]) != "k" || sec.Metadata.ResourceVersion != e.Revision() {
		t.Fatalf("OpenSecretEntry = %+v, %q, %v", sec, data, err)
	}
	// A sealed value copied under another key does not open.
	if _, err := w.kvs[messages.KindSecret].Put(ctx, "default.other", e.Value()); err != nil {
		t.Fatal(err)
	}
	e2, _ := r.KV(messages.KindSecret).Get(ctx, "default.other")
	if _, _, err := r.OpenSecretEntry(e2); err == nil {
		t.Error("a Secret copied under another key opened")
	}
}
