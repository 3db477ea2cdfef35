package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// deleteCertificate finishes the deletion of a Certificate a user deleted
// (metadata.deletionTimestamp, see producer.DeleteCertificate), as
// deleting one does in cert-manager: its CertificateRequests with their
// Orders and issued chains, its temporary keys and its pending renewal
// schedule go, then the Certificate; its Secret is kept (servers still use
// it) and released, so that a Certificate of the same name applied again
// adopts it.
func (w *Worker) deleteCertificate(ctx context.Context, cert *messages.Certificate) (Outcome, error) {
	ns, name := cert.Metadata.Namespace, cert.Metadata.Name
	if err := removeCertificate(ctx, w.store, w.js, cert); err != nil {
		return Done(), fmt.Errorf("certificate %s/%s: delete: %w", ns, name, err)
	}
	logger(ctx).Info("certificate deleted; its Secret is kept", "secret", cert.Spec.SecretName)
	return Done(), nil
}

func removeCertificate(ctx context.Context, st *store.Store, js jetstream.JetStream, cert *messages.Certificate) error {
	ns, name := cert.Metadata.Namespace, cert.Metadata.Name
	ref := messages.ObjectReference{Kind: messages.KindCertificate, Namespace: ns, Name: name}
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
			return err
		}
		if err := deleteRequest(ctx, st, cr); err != nil {
			return err
		}
	}
	if err := st.ReleaseSecret(ctx, ns, cert.Spec.SecretName, ref); err != nil {
		return err
	}
	s, err := js.Stream(ctx, messages.WorkStream)
	if err != nil {
		return err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(messages.ScheduleSubject(messages.KindCertificate, ns, name))); err != nil {
		return fmt.Errorf("cancel its renewal schedule: %w", err)
	}
	// Last: while the Certificate is there, a redelivery finishes this.
	return st.Delete(ctx, messages.KindCertificate, ns, name)
}
