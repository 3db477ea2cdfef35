package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/messages"
)

// ErrBucketNotFound: OpenReadOnly found no bucket for a kind (no worker has
// created it yet, or the NATS user may not see it).
var ErrBucketNotFound = errors.New("store: bucket not found")

// OpenReadOnly returns a Store on the existing buckets of kinds, for
// readers such as the sync agent: it never creates or updates a bucket, so
// a NATS user that may only read those buckets can use it. Each bucket is
// looked up once ($JS.API.STREAM.INFO.KV_<bucket>); a missing one is
// ErrBucketNotFound. Only Get, List, GetSecret, KV, DecodeEntry and
// OpenSecretEntry make sense on the result; writes fail with the server's
// permission error.
func OpenReadOnly(ctx context.Context, js jetstream.JetStream, sealer *Sealer, kinds ...messages.Kind) (*Store, error) {
	s := &Store{js: js, kvs: map[messages.Kind]jetstream.KeyValue{}, sealer: sealer}
	for _, k := range kinds {
		kv, err := js.KeyValue(ctx, k.Bucket())
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("%w: %s (start an acmeq worker once to create it)", ErrBucketNotFound, k.Bucket())
		}
		if err != nil {
			return nil, fmt.Errorf("store: open bucket %s: %w", k.Bucket(), err)
		}
		s.kvs[k] = kv
	}
	return s, nil
}

// DecodeEntry decodes a KV entry of obj's kind (from a watch) into obj and
// sets its ResourceVersion to the entry's revision.
func DecodeEntry(e jetstream.KeyValueEntry, obj messages.Object) error {
	return decodeEntry(e, obj)
}

// OpenSecretEntry decodes a Secret bucket entry (from a watch) and opens
// its sealed data, as GetSecret does for a key.
func (s *Store) OpenSecretEntry(e jetstream.KeyValueEntry) (*messages.Secret, map[string][]byte, error) {
	sec := &messages.Secret{}
	if err := decodeEntry(e, sec); err != nil {
		return nil, nil, err
	}
	ns, name, ok := messages.SplitKey(e.Key())
	if !ok {
		return nil, nil, fmt.Errorf("store: secret key %q is not <namespace>.<name>", e.Key())
	}
	out := make(map[string][]byte, len(sec.Data))
	for k, v := range sec.Data {
		// The additional data is the key's namespace and name, not the
		// metadata inside the value: a value copied under another key
		// does not open.
		plain, err := s.sealer.Open(v, ns+"/"+name+"/"+k)
		if err != nil {
			return nil, nil, err
		}
		out[k] = plain
	}
	return sec, out, nil
}
