package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/messages"
)

// SecretOwnerBucket is the KV bucket of Secret claims: key
// <namespace>.<secret name>, value the owner as a JSON
// messages.ObjectReference.
const SecretOwnerBucket = "ACMEQ_SECRET_OWNERS"

// claimRetries bounds how often ClaimSecret starts over when the claim it
// found disappears before it could read it (released meanwhile).
const claimRetries = 5

// ErrOwned: the Secret is claimed by another resource; the error message names that owner.
var ErrOwned = errors.New("store: secret owned by another resource")

// OwnedError is returned, wrapped, for ErrOwned: it names the Secret and
// its current owner. errors.Is(err, ErrOwned) holds for it.
type OwnedError struct {
	// Namespace and Name identify the Secret.
	Namespace, Name string
	// Owner is the resource that holds the Secret. Kind Secret means a
	// Secret a user created (acmeq create secret), which no Certificate or
	// Issuer may take over.
	Owner messages.ObjectReference
}

// Error implements error: "store: secret owned by another resource: secret
// default/web-tls is owned by Certificate default/web".
func (e *OwnedError) Error() string {
	return fmt.Sprintf("%v: secret %s/%s is owned by %s %s/%s", ErrOwned, e.Namespace, e.Name, e.Owner.Kind, e.Owner.Namespace, e.Owner.Name)
}

// Is makes errors.Is(err, ErrOwned) true.
func (e *OwnedError) Is(target error) bool { return target == ErrOwned }

// A Secret has one owner: the Certificate whose spec.secretName it is, or
// the Issuer whose ACME account key it holds. The owner is recorded as a
// claim in SecretOwnerBucket, taken with a KV Create so that of two
// resources racing for one name exactly one wins. Whoever writes a Secret
// claims it first and never writes a Secret another resource holds.
//
// Secrets written before claims existed have no claim: such a Secret counts
// as owned by its metadata.ownerReference, or, without one, by itself (a
// Secret a user created with `acmeq create secret`, owner kind Secret).

// openClaims opens (creating it if needed) the claims bucket, as Open does
// for the resource buckets.
func (s *Store) openClaims(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if kv, err := js.KeyValue(ctx, SecretOwnerBucket); err == nil {
		s.owners = kv
		return nil
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      SecretOwnerBucket,
		Description: "acmeq Secret owners: one claim per Secret",
		History:     1,
		Replicas:    replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, SecretOwnerBucket)
	}
	if err != nil {
		return fmt.Errorf("store: open bucket %s: %w", SecretOwnerBucket, err)
	}
	s.owners = kv
	return nil
}

// normalizeOwner fills in the owner's namespace: owners live in the
// Secret's namespace, except a cluster-scoped one (a ClusterIssuer, whose
// Secrets are in the workers' cluster resource namespace), which has none.
func normalizeOwner(ns string, owner messages.ObjectReference) messages.ObjectReference {
	if owner.Namespace == "" && !messages.IsClusterScoped(owner.Kind) {
		owner.Namespace = ns
	}
	return owner
}

// claimEntry reads the claim on ns/name: its owner and KV revision, or
// ErrNotFound.
func (s *Store) claimEntry(ctx context.Context, ns, name string) (messages.ObjectReference, uint64, error) {
	e, err := s.owners.Get(ctx, messages.Key(ns, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return messages.ObjectReference{}, 0, fmt.Errorf("%w: claim on secret %s/%s", ErrNotFound, ns, name)
	}
	if err != nil {
		return messages.ObjectReference{}, 0, fmt.Errorf("store: read claim on secret %s/%s: %w", ns, name, err)
	}
	var owner messages.ObjectReference
	if err := json.Unmarshal(e.Value(), &owner); err != nil {
		return messages.ObjectReference{}, 0, fmt.Errorf("store: decode claim on secret %s/%s: %w", ns, name, err)
	}
	return normalizeOwner(ns, owner), e.Revision(), nil
}

// unclaimedOwner is the owner of a Secret that has no claim: the
// ownerReference of the stored Secret, the Secret itself when it has none,
// or ErrNotFound when there is no such Secret.
func (s *Store) unclaimedOwner(ctx context.Context, ns, name string) (messages.ObjectReference, error) {
	sec := &messages.Secret{}
	if err := s.Get(ctx, ns, name, sec); err != nil {
		return messages.ObjectReference{}, err
	}
	if o := sec.Metadata.OwnerReference; o != nil {
		return normalizeOwner(ns, *o), nil
	}
	return messages.ObjectReference{Kind: messages.KindSecret, Namespace: ns, Name: name}, nil
}

// ClaimSecret claims ns/name for owner: atomic (KV Create), idempotent for the same owner,
// ErrOwned (wrapped, naming the current owner) when another owner holds it.
//
// A Secret stored without a claim (written before claims existed) is
// claimed only by the owner it already has (see unclaimedOwner); for anyone
// else ClaimSecret returns ErrOwned and records nothing.
func (s *Store) ClaimSecret(ctx context.Context, ns, name string, owner messages.ObjectReference) error {
	owner = normalizeOwner(ns, owner)
	val, err := json.Marshal(owner)
	if err != nil {
		return fmt.Errorf("store: encode claim on secret %s/%s: %w", ns, name, err)
	}
	key := messages.Key(ns, name)
	for range claimRetries {
		rev, err := s.owners.Create(ctx, key, val)
		if err == nil {
			// Ours now, unless the Secret already exists for someone else
			// without a claim: then give the claim back.
			prev, err := s.unclaimedOwner(ctx, ns, name)
			switch {
			case errors.Is(err, ErrNotFound), err == nil && prev == owner:
				return nil
			case err != nil:
				s.dropClaim(ctx, key, rev)
				return fmt.Errorf("store: claim secret %s/%s: %w", ns, name, err)
			}
			s.dropClaim(ctx, key, rev)
			return &OwnedError{Namespace: ns, Name: name, Owner: prev}
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("store: claim secret %s/%s: %w", ns, name, err)
		}
		cur, _, err := s.claimEntry(ctx, ns, name)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // released in between: try again
		case err != nil:
			return err
		case cur == owner:
			return nil
		default:
			return &OwnedError{Namespace: ns, Name: name, Owner: cur}
		}
	}
	return fmt.Errorf("store: claim secret %s/%s: gave up after %d attempts: %w", ns, name, claimRetries, ErrConflict)
}

// dropClaim deletes the claim at key if it is still at revision rev. It
// runs on a failure path and must not be cut short by the caller's
// cancellation, or it would leave a claim nobody made.
func (s *Store) dropClaim(ctx context.Context, key string, rev uint64) {
	_ = s.owners.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
}

// SecretOwner returns the owner of the claim on ns/name, or ErrNotFound.
//
// A Secret stored without a claim counts as owned by its ownerReference,
// or by itself (kind Secret) when it has none.
func (s *Store) SecretOwner(ctx context.Context, ns, name string) (messages.ObjectReference, error) {
	owner, _, err := s.claimEntry(ctx, ns, name)
	if errors.Is(err, ErrNotFound) {
		return s.unclaimedOwner(ctx, ns, name)
	}
	return owner, err
}

// ReleaseSecret drops owner's claim on ns/name (no-op if absent or held by another owner).
// The claim is deleted with a compare-and-set on its revision, so a claim
// that changed hands in between is left alone.
func (s *Store) ReleaseSecret(ctx context.Context, ns, name string, owner messages.ObjectReference) error {
	owner = normalizeOwner(ns, owner)
	cur, rev, err := s.claimEntry(ctx, ns, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur != owner {
		return nil
	}
	err = s.owners.Delete(ctx, messages.Key(ns, name), jetstream.LastRevision(rev))
	if err != nil && !isRevisionMismatch(err) {
		return fmt.Errorf("store: release secret %s/%s: %w", ns, name, err)
	}
	return nil
}

// isRevisionMismatch reports whether a write with an expected revision
// failed because the key moved on (JetStream's "wrong last sequence":
// 10071, or 10164 on replicated streams).
func isRevisionMismatch(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
