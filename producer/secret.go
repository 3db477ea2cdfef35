package producer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// PutSecret writes the Secret ns/name (sealed at rest), replacing its data:
// the credentials an Issuer refers to, such as an RFC 2136 TSIG secret
// (tsigSecretSecretRef). The name and every key are validated first.
//
// Such a Secret owns itself: PutSecret claims it with owner kind Secret,
// so no Certificate or Issuer can take it over, and it refuses (matching
// ErrSecretOwned) a Secret that a Certificate or an Issuer owns.
//
// Once written, the Secret wakes the issuers that are not Ready and refer
// to it (see wakeIssuers): an issuer that failed for want of it, or
// because the CA refused the External Account Binding it held, tries
// again at once.
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
	return c.wakeIssuers(ctx, ns, name)
}

// wakeIssuers queues an apply transition for every issuer that is not
// Ready and whose External Account Binding key is the Secret ns/name: the
// Issuers of ns and every ClusterIssuer (the producer does not know the
// workers' cluster resource namespace, and waking one that reads its
// Secrets elsewhere costs one idempotent reconcile). Issuers are few; a
// Ready issuer has registered and needs the key no more.
func (c *Client) wakeIssuers(ctx context.Context, ns, name string) error {
	gen := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, scope := range []struct {
		kind messages.Kind
		ns   string
	}{{messages.KindIssuer, ns}, {messages.KindClusterIssuer, ""}} {
		objs, err := c.st.List(ctx, scope.kind, scope.ns)
		if err != nil {
			return fmt.Errorf("producer: secret %s/%s written, but listing the %ss that may wait for it failed: %w", ns, name, scope.kind.Token(), err)
		}
		for _, o := range objs {
			iss := o.(*messages.Issuer)
			if messages.IsReady(iss.Status.Conditions) || !refersToSecret(iss, name) {
				continue
			}
			m := iss.Metadata
			t := messages.Transition{Kind: iss.GetKind(), Namespace: m.Namespace, Name: m.Name, Action: messages.ActionApply, Cause: "secret/" + name}
			if err := c.bus.Publish(ctx, t, gen); err != nil {
				return fmt.Errorf("producer: secret %s/%s written, but waking %s failed: %w", ns, name, ref(iss.GetKind(), m.Namespace, m.Name), err)
			}
		}
	}
	return nil
}

// refersToSecret reports whether the issuer reads the Secret name when it
// registers (its External Account Binding key).
func refersToSecret(iss *messages.Issuer, name string) bool {
	a := iss.Spec.ACME
	return a != nil && a.ExternalAccountBinding != nil && a.ExternalAccountBinding.KeySecretRef.Name == name
}
