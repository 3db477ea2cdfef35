package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
)

// Buckets created by one Open are checked by the next: an explicit other
// replica count is an error naming the bucket's stream; zero accepts them.
func TestOpenReplicas(t *testing.T) {
	js := stacktest.JetStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sealer, err := store.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}

	// R3 cannot be placed on one server: a prompt error naming the variable.
	if _, err := store.Open(ctx, js, sealer, store.Config{Replicas: 3}); err == nil || !strings.Contains(err.Error(), "ACMEQ_REPLICAS=3") {
		t.Errorf("Open with R3 on a single server = %v, want an error naming ACMEQ_REPLICAS=3", err)
	}
	st, err := store.Open(ctx, js, sealer, store.Config{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CheckReplicas(ctx, 1); err != nil {
		t.Errorf("CheckReplicas(1): %v", err)
	}
	if _, err := store.Open(ctx, js, sealer, store.Config{}); err != nil {
		t.Errorf("Open with Replicas 0: %v", err)
	}
	err = st.CheckReplicas(ctx, 2)
	var re *bus.ReplicasError
	if !errors.Is(err, bus.ErrReplicasMismatch) || !errors.As(err, &re) {
		t.Fatalf("CheckReplicas(2) = %v, want a *bus.ReplicasError", err)
	}
	if !strings.HasPrefix(re.Stream, "KV_ACMEQ_") || re.Existing != 1 || re.Wanted != 2 {
		t.Errorf("ReplicasError %+v", re)
	}
	if _, err := store.Open(ctx, js, sealer, store.Config{Replicas: 2}); !errors.Is(err, bus.ErrReplicasMismatch) {
		t.Errorf("Open with Replicas 2 on R1 buckets = %v, want ErrReplicasMismatch", err)
	}
}
