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
func (c *Client) PutSecret(ctx context.Context, ns, name string, data map[string][]byte) error {
	if ns == "" {
		ns = DefaultNamespace
	}
	var errs []error
	if err := messages.ValidateObjectName("metadata.namespace", ns); err != nil {
		errs = append(errs, err)
	}
	if err := messages.ValidateObjectName("metadata.name", name); err != nil {
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
			errs = append(errs, fmt.Errorf("data: key %q is longer than %d characters", k, maxSecretKeyLength))
		case !secretKeyRE.MatchString(k) || k == "." || k == "..":
			errs = append(errs, fmt.Errorf("data: key %q must consist of alphanumeric characters, '-', '_' or '.'", k))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &InvalidError{Kind: messages.KindSecret, Namespace: ns, Name: name, Err: err}
	}
	if err := c.st.PutSecret(ctx, ns, name, data, nil); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	return nil
}
