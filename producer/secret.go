package producer

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/acmeq/acmeq/messages"
)

// PutSecret writes the Secret ns/name (sealed at rest), replacing its data:
// the credentials an Issuer refers to, such as an RFC 2136 TSIG secret
// (tsigSecretSecretRef). The name and every key are validated first.
//
// Such a Secret owns itself: PutSecret claims it with owner kind Secret,
// so no Certificate or Issuer can take it over, and it refuses (matching
// ErrSecretOwned) a Secret that a Certificate or an Issuer owns.
func (c *Client) PutSecret(ctx context.Context, ns, name string, data map[string][]byte) error {
	if ns == "" {
		ns = DefaultNamespace
	}
	var errs []error
	if err := validateName("metadata.namespace", ns); err != nil {
		errs = append(errs, err)
	}
	if err := validateName("metadata.name", name); err != nil {
		errs = append(errs, err)
	}
	if len(data) == 0 {
		errs = append(errs, errors.New("data: at least one key is required"))
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case len(k) > maxSecretKeyLength:
			errs = append(errs, fmt.Errorf("data: key %s is longer than %d characters", quote(k), maxSecretKeyLength))
		case !secretKeyRE.MatchString(k) || k == "." || k == "..":
			errs = append(errs, fmt.Errorf("data: key %s must consist of alphanumeric characters, '-', '_' or '.'", quote(k)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &InvalidError{Kind: messages.KindSecret, Namespace: ns, Name: name, Err: err}
	}
	self := messages.ObjectReference{Kind: messages.KindSecret, Namespace: ns, Name: name}
	if err := c.claim(ctx, messages.KindSecret, "metadata.name", name, self); err != nil {
		return err
	}
	if err := c.st.PutSecret(ctx, ns, name, data, nil); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	return nil
}
