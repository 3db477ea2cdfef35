package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// delete clusterissuer: refused while Certificates of any namespace refer
// to it (naming them), done with --force; --delete-account-key is refused
// (the key is in the workers' namespace); a missing one is NotFound.
func TestDeleteClusterIssuer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	if _, err := env.Producer.Apply(ctx, env.ClusterIssuerFor("shared")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"tenant-a", "tenant-b"} {
		c := &messages.Certificate{
			Metadata: messages.ObjectMeta{Name: "site", Namespace: ns},
			Spec: messages.CertificateSpec{DNSNames: []string{"site." + ns + ".example.com"},
				IssuerRef: messages.IssuerRef{Name: "shared", Kind: "ClusterIssuer"}},
		}
		if _, err := env.Producer.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// An Issuer of the same name is another resource: the Certificates
	// that refer to the ClusterIssuer do not hold it.
	iss := &messages.Issuer{Metadata: messages.ObjectMeta{Name: "shared", Namespace: "tenant-a"}, Spec: env.ClusterIssuerFor("shared").Spec}
	if _, err := env.Producer.Apply(ctx, iss); err != nil {
		t.Fatal(err)
	}
	var issOut bytes.Buffer
	if err := deleteIssuer(ctx, &issOut, io.Discard, env.Store, "tenant-a", "shared", false, false); err != nil || !strings.HasPrefix(issOut.String(), `issuer.cert-manager.io "shared" deleted`+"\n") || strings.Contains(issOut.String(), "refer to it") {
		t.Errorf("delete issuer tenant-a/shared beside the ClusterIssuer shared = %v, %q", err, issOut.String())
	}
	var ee exitError
	err = deleteClusterIssuer(ctx, io.Discard, io.Discard, env.Store, "shared", false, false)
	if !errors.As(err, &ee) || !strings.Contains(ee.msg, `clusterissuer "shared" is referred to by 2 Certificate(s) (tenant-a/site, tenant-b/site)`) {
		t.Errorf("delete in use = %v", err)
	}
	err = deleteClusterIssuer(ctx, io.Discard, io.Discard, env.Store, "shared", true, true)
	if !errors.As(err, &ee) || !strings.Contains(ee.msg, "--delete-account-key does not apply to a clusterissuer") {
		t.Errorf("delete --delete-account-key = %v", err)
	}
	if ok, err := env.Store.Exists(ctx, messages.KindClusterIssuer, "", "shared"); !ok || err != nil {
		t.Fatalf("the ClusterIssuer went with a refused delete: %v, %v", ok, err)
	}
	var out bytes.Buffer
	if err := deleteClusterIssuer(ctx, &out, io.Discard, env.Store, "shared", true, false); err != nil {
		t.Fatal(err)
	}
	want := `clusterissuer.cert-manager.io "shared" deleted` + "\n" +
		`2 Certificate(s) refer to it and wait until a ClusterIssuer "shared" exists again` + "\n" +
		`its ACME account key Secret "shared-account-key" (in the workers' cluster resource namespace) is kept` + "\n"
	if out.String() != want {
		t.Errorf("delete --force printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := env.Store.Get(ctx, "", "shared", messages.NewIssuer(messages.KindClusterIssuer)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	var errOut bytes.Buffer
	if err := deleteClusterIssuer(ctx, io.Discard, &errOut, env.Store, "shared", false, false); !errors.As(err, &ee) || errOut.String() != `Error from server (NotFound): clusterissuers "shared" not found`+"\n" {
		t.Errorf("delete a missing clusterissuer = %v, %q", err, errOut.String())
	}
	// get and describe of what is left: nothing, in no namespace.
	var getOut, getErr bytes.Buffer
	if err := getResources(ctx, &getOut, &getErr, env.Store, mustParseGet(t, "clusterissuers", "-n", "tenant-a"), time.Now); err != nil || getErr.String() != "No resources found\n" {
		t.Errorf("get clusterissuers = %v, %q %q", err, getOut.String(), getErr.String())
	}
}

// request --issuer-kind ClusterIssuer requests a certificate of a
// ClusterIssuer from any namespace; another kind is refused before
// anything is queued, naming the field and what it wants.
func TestRequestIssuerKind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	t.Setenv("ACMEQ_NATS_URL", env.Stack.NATS.URL)
	t.Setenv("ACMEQ_SECRET_KEY", env.SecretKey)
	if _, err := env.Producer.Apply(ctx, env.ClusterIssuerFor("shared")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "request", "-n", "tenant-b", "--issuer-kind", "ClusterIssuer", "--issuer", "shared", "--name", "api", "--dns", "api.example.org")
	if code != 0 || out != "certificate/tenant-b/api created\n" {
		t.Fatalf("request --issuer-kind ClusterIssuer: exit %d, %q, %s", code, out, errOut)
	}
	c := &messages.Certificate{}
	if err := env.Store.Get(ctx, "tenant-b", "api", c); err != nil {
		t.Fatal(err)
	}
	if c.Spec.IssuerRef.IssuerKind() != messages.KindClusterIssuer || c.Spec.IssuerRef.Name != "shared" {
		t.Errorf("issuerRef = %+v, want ClusterIssuer shared", c.Spec.IssuerRef)
	}
	code, _, errOut = runCLI(t, "request", "--issuer-kind", "Issuers", "--issuer", "shared", "--name", "bad", "--dns", "bad.example.org")
	if code == 0 || !strings.Contains(errOut, `spec.issuerRef.kind: "Issuers" is not supported (want Issuer or ClusterIssuer)`) {
		t.Errorf("request --issuer-kind Issuers: exit %d, %s", code, errOut)
	}
	if ok, _ := env.Store.Exists(ctx, messages.KindCertificate, dev.Namespace, "bad"); ok {
		t.Error("a refused request was stored")
	}
}
