package worker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/acme"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// errEABKey marks an External Account Binding key that could not be read:
// its Secret or key is missing, or its value is not base64url. The issuer
// waits for it (see issuerRetry) rather than registering without it.
var errEABKey = errors.New("worker: external account binding key unreadable")

// eabKeyError is an errEABKey with what was wrong.
type eabKeyError struct {
	msg string
	err error // the store's error, if any
}

func (e *eabKeyError) Error() string { return e.msg }

// Is makes errors.Is(err, errEABKey) true.
func (e *eabKeyError) Is(target error) bool { return target == errEABKey }

func (e *eabKeyError) Unwrap() error { return e.err }

// externalAccountBinding reads the binding of an issuer's spec from its
// Secret in namespace ns (see resourceNamespace): nil when the issuer has
// none. The HMAC key is decoded as base64url, with or without padding, as
// cert-manager decodes it (CAs hand it out unpadded).
func externalAccountBinding(ctx context.Context, st *store.Store, ns string, e *messages.ExternalAccountBinding) (*acme.ExternalAccountBinding, error) {
	if e == nil {
		return nil, nil
	}
	ref := e.KeySecretRef
	data, err := st.GetSecret(ctx, ns, ref.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &eabKeyError{msg: fmt.Sprintf("failed to get External Account Binding key from Secret %q: the Secret does not exist in namespace %q", ref.Name, ns), err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("read External Account Binding key from Secret %s/%s: %w", ns, ref.Name, err)
	}
	v, ok := data[ref.Key]
	if !ok || len(v) == 0 {
		return nil, &eabKeyError{msg: fmt.Sprintf("failed to get External Account Binding key from Secret %q: no data for key %q in Secret %q of namespace %q", ref.Name, ref.Key, ref.Name, ns)}
	}
	key, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(string(v)), "="))
	if err != nil {
		return nil, &eabKeyError{msg: fmt.Sprintf("failed to decode External Account Binding key data in Secret %q, key %q: want the key as the CA gave it, base64url: %v", ref.Name, ref.Key, err)}
	}
	return &acme.ExternalAccountBinding{KID: e.KeyID, Key: key}, nil
}
