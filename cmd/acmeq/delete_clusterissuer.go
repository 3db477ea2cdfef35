package main

import (
	"context"
	"fmt"
	"io"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// deleteClusterIssuer removes a ClusterIssuer. It is refused while
// Certificates of any namespace refer to it, unless force. Its ACME
// account key Secret, in the workers' cluster resource namespace, is kept
// (applying the ClusterIssuer again reuses the account): this command
// does not know that namespace, so --delete-account-key is refused for a
// ClusterIssuer before anything is deleted.
func deleteClusterIssuer(ctx context.Context, out, errOut io.Writer, st *store.Store, name string, force, deleteAccountKey bool) error {
	if deleteAccountKey {
		return exitError{code: 1, msg: "delete: --delete-account-key does not apply to a clusterissuer: its account key Secret is in the workers' ACMEQ_CLUSTER_RESOURCE_NAMESPACE and is kept"}
	}
	iss := messages.NewIssuer(messages.KindClusterIssuer)
	if err := st.Get(ctx, "", name, iss); err != nil {
		return notFound(errOut, messages.KindClusterIssuer, name, err)
	}
	certs, err := st.List(ctx, messages.KindCertificate, "")
	if err != nil {
		return err
	}
	var users []string
	for _, o := range certs {
		c := o.(*messages.Certificate)
		if r := c.Spec.IssuerRef; r.IssuerKind() == messages.KindClusterIssuer && r.Name == name {
			users = append(users, c.Metadata.Namespace+"/"+c.Metadata.Name)
		}
	}
	if len(users) > 0 && !force {
		return exitError{code: 1, msg: fmt.Sprintf("delete: clusterissuer %q is referred to by %d Certificate(s) (%s): delete them first, or use --force (they then wait for a clusterissuer of that name)",
			name, len(users), firstFew(users))}
	}
	if err := st.Delete(ctx, messages.KindClusterIssuer, "", name); err != nil {
		return err
	}
	fmt.Fprintf(out, "clusterissuer.cert-manager.io %q deleted\n", name)
	if len(users) > 0 {
		fmt.Fprintf(out, "%d Certificate(s) refer to it and wait until a ClusterIssuer %q exists again\n", len(users), name)
	}
	if iss.Spec.ACME != nil && iss.Spec.ACME.PrivateKeySecretRef.Name != "" {
		fmt.Fprintf(out, "its ACME account key Secret %q (in the workers' cluster resource namespace) is kept\n", iss.Spec.ACME.PrivateKeySecretRef.Name)
	}
	return nil
}
