package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/messages"
)

// ErrOwned: the Secret is claimed by another resource; the error message
// names that owner.
var ErrOwned = errors.New("store: secret owned by another resource")

// SecretOwnersBucket maps <ns>.<secret> to the resource that owns the
// Secret.
const SecretOwnersBucket = "ACMEQ_SECRET_OWNERS"

func (s *Store) owners(ctx context.Context) (jetstream.KeyValue, error) {
	s.ownersOnce.Do(func() {
		kv, err := s.js.KeyValue(ctx, SecretOwnersBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SecretOwnersBucket, Description: "acmeq: the owner of each Secret", History: 1})
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = s.js.KeyValue(ctx, SecretOwnersBucket)
			}
		}
		s.ownersKV, s.ownersErr = kv, err
	})
	if s.ownersErr != nil {
		return nil, fmt.Errorf("store: secret owners: %w", s.ownersErr)
	}
	return s.ownersKV, nil
}

// ClaimSecret claims ns/name for owner: atomic (KV Create), idempotent for
// the same owner, ErrOwned (wrapped, naming the current owner) when another
// owner holds it.
func (s *Store) ClaimSecret(ctx context.Context, ns, name string, owner messages.ObjectReference) error {
	kv, err := s.owners(ctx)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(owner)
	_, err = kv.Create(ctx, messages.Key(ns, name), b)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("store: claim secret %s/%s: %w", ns, name, err)
	}
	cur, err := s.SecretOwner(ctx, ns, name)
	if err != nil {
		return err
	}
	if cur == owner {
		return nil
	}
	return fmt.Errorf("%w: secret %s/%s belongs to %s %s/%s", ErrOwned, ns, name, cur.Kind, cur.Namespace, cur.Name)
}

// SecretOwner returns the owner of the claim on ns/name, or ErrNotFound.
func (s *Store) SecretOwner(ctx context.Context, ns, name string) (messages.ObjectReference, error) {
	var ref messages.ObjectReference
	kv, err := s.owners(ctx)
	if err != nil {
		return ref, err
	}
	e, err := kv.Get(ctx, messages.Key(ns, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ref, fmt.Errorf("%w: owner of secret %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return ref, fmt.Errorf("store: owner of secret %s/%s: %w", ns, name, err)
	}
	if err := json.Unmarshal(e.Value(), &ref); err != nil {
		return ref, fmt.Errorf("store: owner of secret %s/%s: %w", ns, name, err)
	}
	return ref, nil
}

// ReleaseSecret drops owner's claim on ns/name (no-op if absent or held by
// another owner).
func (s *Store) ReleaseSecret(ctx context.Context, ns, name string, owner messages.ObjectReference) error {
	cur, err := s.SecretOwner(ctx, ns, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil || cur != owner {
		return err
	}
	kv, err := s.owners(ctx)
	if err != nil {
		return err
	}
	return kv.Purge(ctx, messages.Key(ns, name))
}
