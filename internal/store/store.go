// Package store keeps acmeq's resources in JetStream KV: one bucket per
// kind, key <namespace>.<name> (_.<name> for a ClusterIssuer, which has no
// namespace: see messages.ClusterScope), JSON values. The KV revision is the
// resourceVersion, and every update is a compare-and-set on it, so two
// workers racing on one resource cannot both win. Secrets are sealed with
// AEAD before they are written.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/messages"
)

// Errors callers match with errors.Is.
var (
	// ErrNotFound: no resource under that key.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: Create found the key taken.
	ErrExists = errors.New("store: already exists")
	// ErrConflict: Update lost a compare-and-set race; read again and retry.
	ErrConflict = errors.New("store: conflict: the resource was modified by someone else")
)

// Config configures a Store.
type Config struct {
	// Replicas of each bucket. A bucket Open creates gets this many; use 3
	// on a cluster. An existing bucket with another count is never
	// changed: Open fails with a *bus.ReplicasError (errors.Is
	// bus.ErrReplicasMismatch) naming the bucket's stream and both counts.
	// Zero creates buckets with 1 replica and accepts any existing count
	// (the CLI). Defaults to 0.
	Replicas int
}

// MarkerTTL is how long the marker a deleted resource leaves in its bucket
// is kept (for watchers that were away); then it is gone, so a bucket holds
// the resources that exist and no history of the deleted ones.
const MarkerTTL = time.Hour

// Store reads and writes resources.
type Store struct {
	js     jetstream.JetStream
	kvs    map[messages.Kind]jetstream.KeyValue
	sealer *Sealer
	now    func() time.Time
	// markerTTL is set for buckets created with LimitMarkerTTL (older
	// buckets keep their delete markers).
	markerTTL map[messages.Kind]bool
	owners    jetstream.KeyValue // SecretOwnerBucket, see claims.go
}

// Open creates the buckets if needed (idempotent) and returns a Store.
func Open(ctx context.Context, js jetstream.JetStream, sealer *Sealer, cfg Config) (*Store, error) {
	s := &Store{js: js, kvs: map[messages.Kind]jetstream.KeyValue{}, sealer: sealer, now: time.Now, markerTTL: map[messages.Kind]bool{}}
	kinds := append([]messages.Kind{messages.KindSecret}, messages.ReconciledKinds...)
	for _, k := range kinds {
		kv, err := openBucket(ctx, js, k, cfg.Replicas)
		if err == nil {
			// Buckets created before marker TTLs keep their markers.
			if st, serr := kv.Status(ctx); serr == nil && st.LimitMarkerTTL() > 0 {
				s.markerTTL[k] = true
			}
		}
		if err != nil {
			return nil, err
		}
		s.kvs[k] = kv
	}
	if err := s.openClaims(ctx, js, cfg.Replicas); err != nil {
		return nil, err
	}
	return s, nil
}

// openBucket opens the bucket of k, creating it if needed (idempotent
// across racing workers), and checks its replicas against replicas.
func openBucket(ctx context.Context, js jetstream.JetStream, k messages.Kind, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, k.Bucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:         k.Bucket(),
			Description:    "acmeq " + string(k) + " resources",
			History:        1,
			Replicas:       max(replicas, 1),
			LimitMarkerTTL: MarkerTTL,
		})
		if err == nil {
			return leaderReads(ctx, js, kv)
		}
		if !errors.Is(err, jetstream.ErrBucketExists) {
			return nil, fmt.Errorf("store: create bucket %s with %d replicas%s: %w", k.Bucket(), max(replicas, 1), bus.ReplicasHint(replicas), err)
		}
		// Created meanwhile by another worker: check it like any
		// existing bucket.
		kv, err = js.KeyValue(ctx, k.Bucket())
	}
	if err != nil {
		return nil, fmt.Errorf("store: open bucket %s: %w", k.Bucket(), err)
	}
	if err := checkBucket(ctx, kv, replicas); err != nil {
		return nil, err
	}
	return leaderReads(ctx, js, kv)
}

// leaderReads turns off direct gets on a replicated bucket and reopens it.
// With direct gets (nats.go's default for KV) any replica answers a Get,
// and a follower that has not yet applied the latest write answers the
// value before it: a worker woken by a transition would read the state
// from before that transition, find nothing to do and ack, and the
// resource would wait for the resync. Without them, Get asks the stream
// leader, which has applied every write it acknowledged. A bucket of one
// replica has no followers and is left as it is.
func leaderReads(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.KeyValue, error) {
	name := "KV_" + kv.Bucket()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("store: read the configuration of bucket %s: %w", kv.Bucket(), err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Replicas <= 1 || !cfg.AllowDirect {
		return kv, nil
	}
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("store: turn off direct gets on bucket %s: %w", kv.Bucket(), err)
	}
	bucket := kv.Bucket()
	if kv, err = js.KeyValue(ctx, bucket); err != nil {
		return nil, fmt.Errorf("store: open bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// CheckReplicas checks that every bucket has want replicas (zero accepts
// any count), as Open does; a worker handed an opened Store calls it with
// its own ACMEQ_REPLICAS.
func (s *Store) CheckReplicas(ctx context.Context, want int) error {
	for _, kv := range s.kvs {
		if err := checkBucket(ctx, kv, want); err != nil {
			return err
		}
	}
	return nil
}

func checkBucket(ctx context.Context, kv jetstream.KeyValue, want int) error {
	if want <= 0 {
		return nil
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("store: read the configuration of bucket %s: %w", kv.Bucket(), err)
	}
	if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		sc := bs.StreamInfo().Config
		if err := bus.CheckReplicas(sc.Name, sc.Replicas, want); err != nil {
			return fmt.Errorf("store: bucket %s: %w", kv.Bucket(), err)
		}
	}
	return nil
}

// KV returns the bucket of a kind, for watchers.
func (s *Store) KV(k messages.Kind) jetstream.KeyValue { return s.kvs[k] }

func (s *Store) kv(k messages.Kind) (jetstream.KeyValue, error) {
	kv, ok := s.kvs[k]
	if !ok {
		return nil, fmt.Errorf("store: unknown kind %q", k)
	}
	return kv, nil
}

func describe(k messages.Kind, ns, name string) string {
	return fmt.Sprintf("%s %s/%s", k, ns, name)
}

// Get reads a resource into obj (whose kind selects the bucket) and sets
// its ResourceVersion.
func (s *Store) Get(ctx context.Context, ns, name string, obj messages.Object) error {
	k := obj.GetKind()
	kv, err := s.kv(k)
	if err != nil {
		return err
	}
	e, err := kv.Get(ctx, messages.Key(ns, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, describe(k, ns, name))
	}
	if err != nil {
		return fmt.Errorf("store: get %s: %w", describe(k, ns, name), err)
	}
	return decodeEntry(e, obj)
}

func decodeEntry(e jetstream.KeyValueEntry, obj messages.Object) error {
	if err := json.Unmarshal(e.Value(), obj); err != nil {
		return fmt.Errorf("store: decode %s %s: %w", obj.GetKind(), e.Key(), err)
	}
	obj.GetMeta().ResourceVersion = e.Revision()
	return nil
}

func encode(obj messages.Object) ([]byte, error) {
	m := obj.GetMeta()
	rv := m.ResourceVersion
	m.ResourceVersion = 0
	b, err := json.Marshal(obj)
	m.ResourceVersion = rv
	return b, err
}

// Exists reports whether a resource of kind k is stored under ns/name,
// without decoding (or, for Secrets, opening) it.
func (s *Store) Exists(ctx context.Context, k messages.Kind, ns, name string) (bool, error) {
	kv, err := s.kv(k)
	if err != nil {
		return false, err
	}
	_, err = kv.Get(ctx, messages.Key(ns, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: get %s: %w", describe(k, ns, name), err)
	}
	return true, nil
}

// Create stores a new resource; ErrExists if the key is taken. It fills in
// apiVersion, kind and the creation timestamp when unset.
func (s *Store) Create(ctx context.Context, obj messages.Object) error {
	k := obj.GetKind()
	kv, err := s.kv(k)
	if err != nil {
		return err
	}
	m := obj.GetMeta()
	if m.CreationTimestamp.IsZero() {
		m.CreationTimestamp = s.now().UTC().Truncate(time.Millisecond)
	}
	setTypeMeta(obj)
	b, err := encode(obj)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", describe(k, m.Namespace, m.Name), err)
	}
	rev, err := kv.Create(ctx, messages.Key(m.Namespace, m.Name), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %s", ErrExists, describe(k, m.Namespace, m.Name))
	}
	if err != nil {
		return fmt.Errorf("store: create %s: %w", describe(k, m.Namespace, m.Name), err)
	}
	m.ResourceVersion = rev
	return nil
}

// Update writes obj if it is still at obj's ResourceVersion (compare and
// set); ErrConflict otherwise. On success ResourceVersion is the new one.
func (s *Store) Update(ctx context.Context, obj messages.Object) error {
	k := obj.GetKind()
	kv, err := s.kv(k)
	if err != nil {
		return err
	}
	m := obj.GetMeta()
	setTypeMeta(obj)
	b, err := encode(obj)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", describe(k, m.Namespace, m.Name), err)
	}
	rev, err := kv.Update(ctx, messages.Key(m.Namespace, m.Name), b, m.ResourceVersion)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: %s at revision %d", ErrConflict, describe(k, m.Namespace, m.Name), m.ResourceVersion)
		}
		return fmt.Errorf("store: update %s: %w", describe(k, m.Namespace, m.Name), err)
	}
	m.ResourceVersion = rev
	return nil
}

// Delete removes a resource; deleting a missing one is not an error. The
// key is purged: its marker expires after MarkerTTL, so deleted resources
// cost nothing in the bucket afterwards.
func (s *Store) Delete(ctx context.Context, k messages.Kind, ns, name string) error {
	kv, err := s.kv(k)
	if err != nil {
		return err
	}
	var opts []jetstream.KVDeleteOpt
	if s.markerTTL[k] {
		opts = append(opts, jetstream.PurgeTTL(MarkerTTL))
	}
	if err := kv.Purge(ctx, messages.Key(ns, name), opts...); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("store: delete %s: %w", describe(k, ns, name), err)
	}
	return nil
}

// List returns every resource of kind k in namespace ns ("" for all),
// sorted by key.
func (s *Store) List(ctx context.Context, k messages.Kind, ns string) ([]messages.Object, error) {
	kv, err := s.kv(k)
	if err != nil {
		return nil, err
	}
	filter := ">"
	if ns != "" {
		filter = ns + ".*"
	}
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", k, err)
	}
	defer func() { _ = w.Stop() }()
	var out []messages.Object
	for e := range w.Updates() {
		if e == nil {
			break
		}
		obj, _ := messages.New(k)
		if err := decodeEntry(e, obj); err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	// The watch delivers in last-write order.
	slices.SortFunc(out, func(a, b messages.Object) int {
		am, bm := a.GetMeta(), b.GetMeta()
		return strings.Compare(messages.Key(am.Namespace, am.Name), messages.Key(bm.Namespace, bm.Name))
	})
	return out, nil
}

func setTypeMeta(obj messages.Object) {
	tm := typeMeta(obj)
	if tm == nil {
		return
	}
	tm.APIVersion = messages.APIVersion
	tm.Kind = obj.GetKind()
}

func typeMeta(obj messages.Object) *messages.TypeMeta {
	switch o := obj.(type) {
	case *messages.Issuer:
		return &o.TypeMeta
	case *messages.Certificate:
		return &o.TypeMeta
	case *messages.CertificateRequest:
		return &o.TypeMeta
	case *messages.Order:
		return &o.TypeMeta
	case *messages.Challenge:
		return &o.TypeMeta
	case *messages.Secret:
		return &o.TypeMeta
	}
	return nil
}

// PutSecret seals data and writes the Secret ns/name, replacing any
// previous value.
func (s *Store) PutSecret(ctx context.Context, ns, name string, data map[string][]byte, owner *messages.ObjectReference) error {
	b, err := s.sealSecret(ns, name, data, owner)
	if err != nil {
		return err
	}
	if _, err := s.kvs[messages.KindSecret].Put(ctx, messages.Key(ns, name), b); err != nil {
		return fmt.Errorf("store: put secret %s/%s: %w", ns, name, err)
	}
	return nil
}

// CreateSecret is PutSecret that fails with ErrExists if the Secret is
// there already: two workers generating the same key agree on one.
func (s *Store) CreateSecret(ctx context.Context, ns, name string, data map[string][]byte, owner *messages.ObjectReference) error {
	b, err := s.sealSecret(ns, name, data, owner)
	if err != nil {
		return err
	}
	_, err = s.kvs[messages.KindSecret].Create(ctx, messages.Key(ns, name), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: secret %s/%s", ErrExists, ns, name)
	}
	if err != nil {
		return fmt.Errorf("store: create secret %s/%s: %w", ns, name, err)
	}
	return nil
}

func (s *Store) sealSecret(ns, name string, data map[string][]byte, owner *messages.ObjectReference) ([]byte, error) {
	sec := &messages.Secret{Metadata: messages.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: s.now().UTC(), OwnerReference: owner}, Data: map[string][]byte{}}
	for k, v := range data {
		sealed, err := s.sealer.Seal(v, ns+"/"+name+"/"+k)
		if err != nil {
			return nil, err
		}
		sec.Data[k] = sealed
	}
	setTypeMeta(sec)
	b, err := encode(sec)
	if err != nil {
		return nil, fmt.Errorf("store: encode secret %s/%s: %w", ns, name, err)
	}
	return b, nil
}

// GetSecret reads and opens the Secret ns/name.
func (s *Store) GetSecret(ctx context.Context, ns, name string) (map[string][]byte, error) {
	sec := &messages.Secret{}
	if err := s.Get(ctx, ns, name, sec); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(sec.Data))
	for k, v := range sec.Data {
		plain, err := s.sealer.Open(v, ns+"/"+name+"/"+k)
		if err != nil {
			return nil, err
		}
		out[k] = plain
	}
	return out, nil
}
