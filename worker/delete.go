package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// DeleteCertificate stops managing a Certificate, as deleting one does in
// cert-manager: the Certificate, its CertificateRequests with their Orders
// and issued chains, its temporary keys and its pending renewal schedule
// go; its Secret is kept (servers still use it) and released, so that a
// Certificate of the same name applied again adopts it. It returns the
// name of the Secret kept.
func DeleteCertificate(ctx context.Context, st *store.Store, js jetstream.JetStream, ns, name string) (string, error) {
	cert := &messages.Certificate{}
	if err := st.Get(ctx, ns, name, cert); err != nil {
		return "", err
	}
	ref := messages.ObjectReference{Kind: messages.KindCertificate, Namespace: ns, Name: name}
	if err := st.Delete(ctx, messages.KindCertificate, ns, name); err != nil {
		return "", err
	}
	// Requests: the revisions kept (at most revisionHistoryLimit below the
	// current one) and the next one, in progress or failed.
	for rev := cert.Status.Revision + 1; rev >= 1; rev-- {
		cr := &messages.CertificateRequest{}
		err := st.Get(ctx, ns, RequestName(name, rev), cr)
		if errors.Is(err, store.ErrNotFound) {
			if rev <= cert.Status.Revision {
				break // older ones were pruned
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if err := deleteRequest(ctx, st, cr); err != nil {
			return "", err
		}
		key := nextKeySecretName(name, rev)
		if err := st.Delete(ctx, messages.KindSecret, ns, key); err != nil {
			return "", err
		}
		if err := st.ReleaseSecret(ctx, ns, key, ref); err != nil {
			return "", err
		}
	}
	if err := st.ReleaseSecret(ctx, ns, cert.Spec.SecretName, ref); err != nil {
		return "", err
	}
	s, err := js.Stream(ctx, messages.WorkStream)
	if err != nil {
		return "", fmt.Errorf("worker: delete certificate %s/%s: %w", ns, name, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(messages.ScheduleSubject(messages.KindCertificate, ns, name))); err != nil {
		return "", fmt.Errorf("worker: delete certificate %s/%s: cancel its renewal schedule: %w", ns, name, err)
	}
	return cert.Spec.SecretName, nil
}
