package worker

import (
	"context"
	"testing"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// A ClusterIssuer's Secrets are read in the cluster resource namespace,
// whatever namespace its Certificates (and so their challenges) are in; an
// Issuer's in its own.
func TestSecretNamespace(t *testing.T) {
	t.Parallel()
	w := &Worker{cfg: Config{ClusterResourceNamespace: "platform"}}
	for _, tt := range []struct {
		ref  messages.IssuerRef
		want string
	}{
		{messages.IssuerRef{Name: "le"}, "tenant-a"},
		{messages.IssuerRef{Name: "le", Kind: "Issuer"}, "tenant-a"},
		{messages.IssuerRef{Name: "le", Kind: "ClusterIssuer"}, "platform"},
	} {
		ch := &messages.Challenge{Metadata: messages.ObjectMeta{Name: "c", Namespace: "tenant-a"}, Spec: messages.ChallengeSpec{IssuerRef: tt.ref}}
		if got := w.secretNamespace(ch); got != tt.want {
			t.Errorf("%+v: secretNamespace = %q, want %q", tt.ref, got, tt.want)
		}
	}
	ci := messages.NewIssuer(messages.KindClusterIssuer)
	iss := &messages.Issuer{Metadata: messages.ObjectMeta{Name: "le", Namespace: "tenant-a"}}
	if got := resourceNamespace(ci, "platform"); got != "platform" {
		t.Errorf("resourceNamespace(ClusterIssuer) = %q", got)
	}
	if got := resourceNamespace(iss, "platform"); got != "tenant-a" {
		t.Errorf("resourceNamespace(Issuer) = %q", got)
	}
	if issuerCacheKey(messages.KindIssuer, "", "le") == issuerCacheKey(messages.KindClusterIssuer, "", "le") {
		t.Error("an Issuer and a ClusterIssuer of one name share a cache entry")
	}
}

// An issuer waiting for its EAB Secret backs off from IssuerNotReadyRetry
// to IssuerRetryMax with each delivery.
func TestIssuerRetry(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		delivered uint64
		want      time.Duration
	}{{0, IssuerNotReadyRetry}, {1, IssuerNotReadyRetry}, {2, 2 * IssuerNotReadyRetry}, {4, 8 * IssuerNotReadyRetry}, {100, IssuerRetryMax}} {
		ctx := context.WithValue(context.Background(), deliveredKey{}, tt.delivered)
		if got := issuerRetry(ctx); got != tt.want {
			t.Errorf("delivery %d: %s, want %s", tt.delivered, got, tt.want)
		}
	}
}

// Config: the cluster resource namespace defaults to
// ClusterResourceNamespaceDefault and must be a namespace name.
func TestConfigClusterResourceNamespace(t *testing.T) {
	t.Parallel()
	var c Config
	c.defaults()
	if c.ClusterResourceNamespace != ClusterResourceNamespaceDefault {
		t.Errorf("default %q", c.ClusterResourceNamespace)
	}
	c.ClusterResourceNamespace = "Cert_Manager"
	if err := c.Validate(); err == nil {
		t.Error("Validate accepted ClusterResourceNamespace Cert_Manager")
	}
}
