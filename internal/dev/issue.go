package dev

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// DemoRequests returns n certificate requests of 1 to 3 names each, under
// the .acmeq.test domain (dev's resolver answers every name).
func DemoRequests(n int) []producer.RequestOptions {
	out := make([]producer.RequestOptions, n)
	for i := range n {
		name := "demo-" + strconv.Itoa(i)
		base := name + ".acmeq.test"
		names := []string{base}
		for j := 1; j <= i%3; j++ {
			names = append(names, "www"+strconv.Itoa(j)+"."+base)
		}
		out[i] = producer.RequestOptions{Namespace: Namespace, Name: name, Issuer: IssuerName, DNSNames: names}
	}
	return out
}

// Result is the outcome of one certificate.
type Result struct {
	Name    string
	Ready   bool
	Message string
	Names   []string
}

// WaitCertificates follows the named Certificates of ns (by a KV watch,
// no polling) until each is Ready or failed, or ctx ends.
func (env *Env) WaitCertificates(ctx context.Context, ns string, names []string) (map[string]Result, error) {
	keys := make([][2]string, len(names))
	for i, n := range names {
		keys[i] = [2]string{ns, n}
	}
	got, err := producer.WaitCertificates(ctx, env.Store, keys, nil)
	out := make(map[string]Result, len(got))
	for k, o := range got {
		out[k[1]] = Result{Name: o.Name, Ready: o.Ready, Message: o.Reason, Names: o.Names}
	}
	return out, err
}

// WriteCertificate writes DIR/<name>/tls.crt (leaf first, then the chain)
// and DIR/<name>/tls.key from the Certificate's Secret.
func (env *Env) WriteCertificate(ctx context.Context, dir, ns, name string) error {
	c := &messages.Certificate{}
	if err := env.Store.Get(ctx, ns, name, c); err != nil {
		return err
	}
	sec := c.Spec.SecretName
	if sec == "" {
		sec = name
	}
	data, err := env.Store.GetSecret(ctx, ns, sec)
	if err != nil {
		return fmt.Errorf("dev: read secret of certificate %s: %w", name, err)
	}
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "tls.crt"), data[messages.SecretTLSCert], 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, "tls.key"), data[messages.SecretTLSKey], 0o600)
}

// WriteRoot writes DIR/ca.crt, the root of dev's Pebble.
func (env *Env) WriteRoot(dir string) error {
	root, err := env.Stack.Pebble.RootPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ca.crt"), root, 0o644)
}

// VerifyChain checks a PEM chain (leaf first) against root PEM for the
// given names.
func VerifyChain(chainPEM, rootPEM []byte, names []string) (*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := chainPEM; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate in chain")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("no root certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	for _, n := range names {
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: n, CurrentTime: time.Now()}); err != nil {
			return nil, fmt.Errorf("verify for %s: %w", n, err)
		}
	}
	return certs[0], nil
}
