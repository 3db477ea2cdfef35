package producer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/messages"
)

const objectNameRule = "must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character"

// validCert is a defaulted Certificate that passes validation against
// httpIssuer.
func validCert() *messages.Certificate {
	c := &messages.Certificate{
		Metadata: messages.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: messages.CertificateSpec{
			DNSNames:  []string{"example.com", "www.example.com"},
			IssuerRef: messages.IssuerRef{Name: "dev"},
		},
	}
	SetDefaults(c)
	return c
}

// httpIssuer has no solvers, that is one HTTP-01 solver.
func httpIssuer() *messages.Issuer {
	i := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: "dev", Namespace: "default"},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server: "https://acme.example.com/directory",
			Email:  "ops@example.com",
		}},
	}
	SetDefaults(i)
	return i
}

// dnsIssuer has an HTTP-01 solver and a DNS-01 solver restricted by sel.
func dnsIssuer(sel *messages.SolverSelector) *messages.Issuer {
	i := httpIssuer()
	i.Spec.ACME.Solvers = []messages.ACMESolver{
		{HTTP01: &messages.HTTP01Solver{}},
		{Selector: sel, DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{
			Nameserver:          "10.0.0.53:53",
			TSIGKeyName:         "acmeq.",
			TSIGAlgorithm:       "hmac-sha256",
			TSIGSecretSecretRef: &messages.SecretKeySelector{Name: "tsig", Key: "tsig-secret.key"},
		}}},
	}
	return i
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("host%d.example.com", i)
	}
	return out
}

func TestValidateCertificateRejects(t *testing.T) {
	t.Parallel()
	long253 := strings.Repeat("a.", 125) + "com" // 253: the longest allowed
	long255 := strings.Repeat("a.", 126) + "com"
	label64 := strings.Repeat("x", 64)
	cn65 := strings.Repeat("c", 53) + ".example.com"
	tests := []struct {
		name   string
		mutate func(c *messages.Certificate)
		issuer *messages.Issuer // defaults to httpIssuer()
		// noIssuer validates as if the Issuer did not exist.
		noIssuer bool
		want     string
	}{{
		name:   "empty dnsNames",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = nil },
		want:   `spec.dnsNames: at least one DNS name is required`,
	}, {
		name:   "101 names",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = names(101) },
		want:   `spec.dnsNames: 101 names, at most 100 are allowed (the ACME limit of Let's Encrypt)`,
	}, {
		name:   "empty name",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"example.com", ""} },
		want:   `spec.dnsNames[1]: must not be empty`,
	}, {
		name: "empty label",
		mutate: func(c *messages.Certificate) {
			c.Spec.DNSNames = []string{"a.example.com", "b.example.com", "foo..example.com"}
		},
		want: `spec.dnsNames[2]: "foo..example.com" is not a valid DNS name: empty label`,
	}, {
		name:   "bad character",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"foo_bar.example.com"} },
		want:   `spec.dnsNames[0]: "foo_bar.example.com" is not a valid DNS name: label "foo_bar" contains '_' (allowed: a-z, 0-9 and '-')`,
	}, {
		name:   "label too long",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{label64 + ".example.com"} },
		want:   `spec.dnsNames[0]: "` + label64 + `..." is not a valid DNS name: label "` + label64 + `" is 64 characters long, at most 63 are allowed`,
	}, {
		name:   "name too long",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{long253, long255} },
		want:   `spec.dnsNames[1]: "` + long255[:64] + `..." is not a valid DNS name: 255 characters long, at most 253 are allowed`,
	}, {
		name:   "IPv4 address",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"192.0.2.1"} },
		want:   `spec.dnsNames[0]: "192.0.2.1" is an IP address, not a DNS name (acmeq issues for DNS names only)`,
	}, {
		name:   "IPv6 address",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"2001:db8::1"} },
		want:   `spec.dnsNames[0]: "2001:db8::1" is an IP address, not a DNS name (acmeq issues for DNS names only)`,
	}, {
		name:   "numeric top-level label",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"192.0.2.999"} },
		want:   `spec.dnsNames[0]: "192.0.2.999" is not a valid DNS name: the last label "999" is all numeric`,
	}, {
		name:   "leading hyphen",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"-foo.example.com"} },
		want:   `spec.dnsNames[0]: "-foo.example.com" is not a valid DNS name: label "-foo" starts with '-'`,
	}, {
		name:   "trailing hyphen",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"foo-.example.com"} },
		want:   `spec.dnsNames[0]: "foo-.example.com" is not a valid DNS name: label "foo-" ends with '-'`,
	}, {
		name:   "single label",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"localhost"} },
		want:   `spec.dnsNames[0]: "localhost" is not a valid DNS name: at least two labels are required`,
	}, {
		name:   "trailing dot",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"example.com."} },
		want:   `spec.dnsNames[0]: "example.com." is not a valid DNS name: a trailing dot is not allowed`,
	}, {
		name:   "wildcard with an HTTP-01-only issuer",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"*.example.com"} },
		want:   `spec.dnsNames[0]: "*.example.com" is a wildcard, which only DNS-01 can validate: issuer "dev": no solver matches "*.example.com": solver 0 (http01): HTTP-01 cannot validate a wildcard name`,
	}, {
		name:   "wildcard not selected by the dns01 solver",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"example.com", "*.example.com"} },
		issuer: dnsIssuer(&messages.SolverSelector{DNSZones: []string{"example.org"}}),
		want:   `spec.dnsNames[1]: "*.example.com" is a wildcard, which only DNS-01 can validate: issuer "dev": no solver matches "*.example.com": solver 0 (http01): HTTP-01 cannot validate a wildcard name; solver 1 (dns01): dnsZones ["example.org"] do not contain "*.example.com"`,
	}, {
		name:   "wildcard in the middle",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"www.*.example.com"} },
		want:   `spec.dnsNames[0]: "www.*.example.com" is not a valid DNS name: a wildcard is only allowed as the whole first label ("*.")`,
	}, {
		name:   "partial wildcard label",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"w*.example.com"} },
		want:   `spec.dnsNames[0]: "w*.example.com" is not a valid DNS name: a wildcard is only allowed as the whole first label ("*.")`,
	}, {
		name:   "wildcard of a top-level domain",
		mutate: func(c *messages.Certificate) { c.Spec.DNSNames = []string{"*.com"} },
		issuer: dnsIssuer(nil),
		want:   `spec.dnsNames[0]: "*.com" is not a valid DNS name: at least two labels are required`,
	}, {
		name: "duplicate, case-insensitive",
		mutate: func(c *messages.Certificate) {
			c.Spec.DNSNames = []string{"x.example.com", "a.example.com", "b.example.com", "A.Example.COM"}
		},
		want: `spec.dnsNames[3]: duplicate of spec.dnsNames[1] "a.example.com"`,
	}, {
		name:   "commonName not in dnsNames",
		mutate: func(c *messages.Certificate) { c.Spec.CommonName = "other.example.com" },
		want:   `spec.commonName: "other.example.com" must be one of spec.dnsNames`,
	}, {
		name: "commonName too long",
		mutate: func(c *messages.Certificate) {
			c.Spec.DNSNames = []string{cn65}
			c.Spec.CommonName = cn65
		},
		want: `spec.commonName: "` + cn65[:64] + `..." is 65 bytes long, at most 64 are allowed`,
	}, {
		name:     "unknown issuer",
		mutate:   func(c *messages.Certificate) { c.Spec.IssuerRef.Name = "prod" },
		noIssuer: true,
		want:     `spec.issuerRef.name: issuer "prod" not found in namespace "default"`,
	}, {
		name:   "no issuer",
		mutate: func(c *messages.Certificate) { c.Spec.IssuerRef.Name = "" },
		want:   `spec.issuerRef.name: must not be empty`,
	}, {
		name:   "foreign issuer kind",
		mutate: func(c *messages.Certificate) { c.Spec.IssuerRef.Kind = "AWSPCAClusterIssuer" },
		want:   `spec.issuerRef.kind: "AWSPCAClusterIssuer" is not supported (want Issuer or ClusterIssuer)`,
	}, {
		name:     "issuer kind spelled in lower case",
		mutate:   func(c *messages.Certificate) { c.Spec.IssuerRef.Kind = "clusterissuer" },
		noIssuer: true,
		want:     `spec.issuerRef.kind: "clusterissuer" is not supported (want Issuer or ClusterIssuer)`,
	}, {
		name:     "unknown ClusterIssuer",
		mutate:   func(c *messages.Certificate) { c.Spec.IssuerRef.Kind = "ClusterIssuer" },
		noIssuer: true,
		want:     `spec.issuerRef.name: clusterissuer "dev" not found`,
	}, {
		name:   "foreign issuer group",
		mutate: func(c *messages.Certificate) { c.Spec.IssuerRef.Group = "awspca.cert-manager.io" },
		want:   `spec.issuerRef.group: "awspca.cert-manager.io" is not supported (want cert-manager.io)`,
	}, {
		name:   "bad key algorithm",
		mutate: func(c *messages.Certificate) { c.Spec.PrivateKey = &messages.PrivateKeySpec{Algorithm: "Ed25519"} },
		want:   `spec.privateKey.algorithm: "Ed25519" is not supported (want ECDSA or RSA)`,
	}, {
		name: "bad RSA size",
		mutate: func(c *messages.Certificate) {
			c.Spec.PrivateKey = &messages.PrivateKeySpec{Algorithm: "RSA", Size: 1024}
		},
		want: `spec.privateKey.size: 1024 is not a valid RSA key size (want 2048, 3072 or 4096)`,
	}, {
		name: "bad ECDSA size",
		mutate: func(c *messages.Certificate) {
			c.Spec.PrivateKey = &messages.PrivateKeySpec{Algorithm: "ECDSA", Size: 521}
		},
		want: `spec.privateKey.size: 521 is not a valid ECDSA key size (want 256 or 384)`,
	}, {
		name:   "namespace with a dot",
		mutate: func(c *messages.Certificate) { c.Metadata.Namespace = "team.a" },
		want:   `metadata.namespace: "team.a" ` + objectNameRule,
	}, {
		name:   "uppercase name",
		mutate: func(c *messages.Certificate) { c.Metadata.Name = "Web" },
		want:   `metadata.name: "Web" ` + objectNameRule,
	}, {
		name:   "bad secretName",
		mutate: func(c *messages.Certificate) { c.Spec.SecretName = "web_tls" },
		want:   `spec.secretName: "web_tls" ` + objectNameRule,
	}, {
		name: "every problem at once",
		mutate: func(c *messages.Certificate) {
			c.Metadata.Name = "Web"
			c.Spec.DNSNames = []string{"ok.example.com", "bad..example.com", "OK.example.com"}
			c.Spec.PrivateKey = &messages.PrivateKeySpec{Algorithm: "RSA", Size: 512}
		},
		want: `metadata.name: "Web" ` + objectNameRule + "\n" +
			`spec.dnsNames[1]: "bad..example.com" is not a valid DNS name: empty label` + "\n" +
			`spec.dnsNames[2]: duplicate of spec.dnsNames[0] "ok.example.com"` + "\n" +
			`spec.privateKey.size: 512 is not a valid RSA key size (want 2048, 3072 or 4096)`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validCert()
			tt.mutate(c)
			issuer := tt.issuer
			if issuer == nil && !tt.noIssuer {
				issuer = httpIssuer()
			}
			err := ValidateCertificate(c, issuer)
			if err == nil {
				t.Fatalf("ValidateCertificate: nil error, want\n%s", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("ValidateCertificate:\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestValidateCertificateAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *messages.Certificate)
		issuer *messages.Issuer
	}{
		{"defaults", func(*messages.Certificate) {}, httpIssuer()},
		{"100 names", func(c *messages.Certificate) { c.Spec.DNSNames = names(100) }, httpIssuer()},
		{"253 characters", func(c *messages.Certificate) { c.Spec.DNSNames = []string{strings.Repeat("a.", 125) + "com"} }, httpIssuer()},
		{"63-character label", func(c *messages.Certificate) { c.Spec.DNSNames = []string{strings.Repeat("x", 63) + ".example.com"} }, httpIssuer()},
		{"punycode and digits", func(c *messages.Certificate) { c.Spec.DNSNames = []string{"xn--bcher-kva.example", "1-2.example.com"} }, httpIssuer()},
		{"mixed case, commonName in another case", func(c *messages.Certificate) {
			c.Spec.DNSNames = []string{"WWW.Example.com"}
			c.Spec.CommonName = "www.example.COM"
		}, httpIssuer()},
		{"wildcard, dns01 solver without selector", func(c *messages.Certificate) {
			c.Spec.DNSNames = []string{"example.com", "*.example.com"}
		}, dnsIssuer(nil)},
		{"wildcard, dns01 solver for the zone", func(c *messages.Certificate) {
			c.Spec.DNSNames = []string{"*.dev.example.com"}
		}, dnsIssuer(&messages.SolverSelector{DNSZones: []string{"example.com"}})},
		{"wildcard, dns01 solver for the name", func(c *messages.Certificate) {
			c.Spec.DNSNames = []string{"*.example.com"}
		}, dnsIssuer(&messages.SolverSelector{DNSNames: []string{"*.example.com"}})},
		{"RSA 4096", func(c *messages.Certificate) {
			c.Spec.PrivateKey = &messages.PrivateKeySpec{Algorithm: "RSA", Size: 4096}
		}, httpIssuer()},
		{"ECDSA 384", func(c *messages.Certificate) {
			c.Spec.PrivateKey = &messages.PrivateKeySpec{Algorithm: "ECDSA", Size: 384}
		}, httpIssuer()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validCert()
			tt.mutate(c)
			if err := ValidateCertificate(c, tt.issuer); err != nil {
				t.Errorf("ValidateCertificate: %v", err)
			}
		})
	}
}

func TestSetDefaults(t *testing.T) {
	t.Parallel()
	c := &messages.Certificate{
		Metadata: messages.ObjectMeta{Name: "web"},
		Spec: messages.CertificateSpec{
			DNSNames:   []string{"WWW.Example.com"},
			CommonName: "Www.Example.Com",
			IssuerRef:  messages.IssuerRef{Name: "dev"},
			PrivateKey: &messages.PrivateKeySpec{Algorithm: "rsa"},
		},
	}
	SetDefaults(c)
	s := c.Spec
	if c.Metadata.Namespace != "default" || s.SecretName != "web" || s.IssuerRef.Kind != "Issuer" || s.IssuerRef.Group != "cert-manager.io" ||
		s.DNSNames[0] != "www.example.com" || s.CommonName != "www.example.com" || *s.PrivateKey != (messages.PrivateKeySpec{Algorithm: "RSA", Size: 2048}) {
		t.Errorf("defaulted Certificate: %+v %+v %+v", c.Metadata, s, *s.PrivateKey)
	}
	c = &messages.Certificate{Metadata: messages.ObjectMeta{Name: "web"}}
	SetDefaults(c)
	if *c.Spec.PrivateKey != (messages.PrivateKeySpec{Algorithm: "ECDSA", Size: 256}) {
		t.Errorf("default private key: %+v", *c.Spec.PrivateKey)
	}
	i := &messages.Issuer{Metadata: messages.ObjectMeta{Name: "dev"}, Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{}}}
	SetDefaults(i)
	if i.Metadata.Namespace != "default" || i.Spec.ACME.PrivateKeySecretRef.Name != "dev-account-key" {
		t.Errorf("defaulted Issuer: %+v %+v", i.Metadata, i.Spec.ACME)
	}
}

// testCAPEM is a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "acmeq test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestValidateIssuer(t *testing.T) {
	t.Parallel()
	caPEM := testCAPEM(t)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not a key")}))
	rfc := func(mut func(p *messages.RFC2136Provider)) func(i *messages.Issuer) {
		return func(i *messages.Issuer) {
			p := &messages.RFC2136Provider{Nameserver: "ns1.example.com:53"}
			mut(p)
			i.Spec.ACME.Solvers = []messages.ACMESolver{{DNS01: &messages.DNS01Solver{RFC2136: p}}}
		}
	}
	const s0 = "spec.acme.solvers[0].dns01.rfc2136"
	tests := []struct {
		name   string
		mutate func(i *messages.Issuer)
		want   string // "" means valid
	}{
		{"valid", func(*messages.Issuer) {}, ""},
		{"valid with everything", func(i *messages.Issuer) {
			i.Spec.ACME.CABundle = caPEM
			i.Spec.ACME.Solvers = dnsIssuer(nil).Spec.ACME.Solvers
		}, ""},
		{"valid nameserver IPv6", rfc(func(p *messages.RFC2136Provider) { p.Nameserver = "[2001:db8::53]:53" }), ""},
		{"valid TSIG algorithm in upper case with a dot", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGAlgorithm, p.TSIGKeyName = "HMAC-SHA512.", "k."
			p.TSIGSecretSecretRef = &messages.SecretKeySelector{Name: "tsig", Key: "secret"}
		}), ""},
		{"valid TSIG algorithm spelled as in cert-manager", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGAlgorithm, p.TSIGKeyName = "HMACSHA256", "k"
			p.TSIGSecretSecretRef = &messages.SecretKeySelector{Name: "tsig", Key: "secret"}
		}), ""},
		{"TSIG algorithm HMACMD5", rfc(func(p *messages.RFC2136Provider) { p.TSIGAlgorithm = "HMACMD5" }),
			s0 + `.tsigAlgorithm: "HMACMD5" is not supported (want hmac-sha256, hmac-sha512 or hmac-sha1)`},
		{"no acme", func(i *messages.Issuer) { i.Spec.ACME = nil }, `spec.acme: required (acmeq supports ACME issuers only)`},
		{"no server", func(i *messages.Issuer) { i.Spec.ACME.Server = "" }, `spec.acme.server: an ACME directory URL is required`},
		{"http server", func(i *messages.Issuer) { i.Spec.ACME.Server = "http://127.0.0.1:14000/dir" },
			`spec.acme.server: "http://127.0.0.1:14000/dir" must be an absolute https URL`},
		{"relative server", func(i *messages.Issuer) { i.Spec.ACME.Server = "acme-v02.api.letsencrypt.org/directory" },
			`spec.acme.server: "acme-v02.api.letsencrypt.org/directory" must be an absolute https URL`},
		{"email without @", func(i *messages.Issuer) { i.Spec.ACME.Email = "ops.example.com" },
			`spec.acme.email: "ops.example.com" is not a valid email address: it must contain exactly one '@'`},
		{"email with two @", func(i *messages.Issuer) { i.Spec.ACME.Email = "ops@dev@example.com" },
			`spec.acme.email: "ops@dev@example.com" is not a valid email address: it must contain exactly one '@'`},
		{"email with a space", func(i *messages.Issuer) { i.Spec.ACME.Email = "ops @example.com" },
			`spec.acme.email: "ops @example.com" is not a valid email address: it contains white space`},
		{"email without local part", func(i *messages.Issuer) { i.Spec.ACME.Email = "@example.com" },
			`spec.acme.email: "@example.com" is not a valid email address: the part before '@' is empty`},
		{"email without domain", func(i *messages.Issuer) { i.Spec.ACME.Email = "ops@" },
			`spec.acme.email: "ops@" is not a valid email address: the part after '@' is empty`},
		{"caBundle not PEM", func(i *messages.Issuer) { i.Spec.ACME.CABundle = "not pem" },
			`spec.acme.caBundle: no PEM CERTIFICATE block found`},
		{"caBundle with a key only", func(i *messages.Issuer) { i.Spec.ACME.CABundle = keyPEM },
			`spec.acme.caBundle: no PEM CERTIFICATE block found`},
		{"bad account key secret", func(i *messages.Issuer) { i.Spec.ACME.PrivateKeySecretRef.Name = "Key" },
			`spec.acme.privateKeySecretRef.name: "Key" ` + objectNameRule},
		{"solver with both", func(i *messages.Issuer) {
			i.Spec.ACME.Solvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}, DNS01: &messages.DNS01Solver{}}}
		}, `spec.acme.solvers[0]: exactly one of http01 or dns01 must be set`},
		{"solver with neither", func(i *messages.Issuer) {
			i.Spec.ACME.Solvers = []messages.ACMESolver{{HTTP01: &messages.HTTP01Solver{}}, {}}
		}, `spec.acme.solvers[1]: exactly one of http01 or dns01 must be set`},
		{"dns01 without provider", func(i *messages.Issuer) {
			i.Spec.ACME.Solvers = []messages.ACMESolver{{DNS01: &messages.DNS01Solver{}}}
		}, `spec.acme.solvers[0].dns01: a provider is required (rfc2136, webhook or lego)`},
		{"nameserver missing", rfc(func(p *messages.RFC2136Provider) { p.Nameserver = "" }), s0 + `.nameserver: required (host:port)`},
		{"nameserver without port", rfc(func(p *messages.RFC2136Provider) { p.Nameserver = "ns1.example.com" }),
			s0 + `.nameserver: "ns1.example.com" must be host:port, e.g. 10.0.0.53:53`},
		{"nameserver bad port", rfc(func(p *messages.RFC2136Provider) { p.Nameserver = "ns1.example.com:99999" }),
			s0 + `.nameserver: "ns1.example.com:99999" must be host:port, e.g. 10.0.0.53:53`},
		{"TSIG algorithm", rfc(func(p *messages.RFC2136Provider) { p.TSIGAlgorithm = "hmac-md5" }),
			s0 + `.tsigAlgorithm: "hmac-md5" is not supported (want hmac-sha256, hmac-sha512 or hmac-sha1)`},
		{"TSIG key without secret ref", rfc(func(p *messages.RFC2136Provider) { p.TSIGKeyName = "k." }),
			s0 + `: tsigKeyName and tsigSecretSecretRef must be set together`},
		{"TSIG secret ref without key name", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGSecretSecretRef = &messages.SecretKeySelector{Name: "tsig", Key: "secret"}
		}), s0 + `: tsigKeyName and tsigSecretSecretRef must be set together`},
		{"TSIG key name not a DNS name", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = "a..b", &messages.SecretKeySelector{Name: "tsig", Key: "secret"}
		}), s0 + `.tsigKeyName: "a..b" is not a valid DNS name`},
		{"TSIG key name the root", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = ".", &messages.SecretKeySelector{Name: "tsig", Key: "secret"}
		}), s0 + `.tsigKeyName: "." is not a valid DNS name`},
		{"TSIG secret ref without name", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = "k.", &messages.SecretKeySelector{Key: "secret"}
		}), s0 + `.tsigSecretSecretRef.name: must not be empty`},
		{"TSIG secret ref with a bad name", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = "k.", &messages.SecretKeySelector{Name: "TSIG.secret", Key: "secret"}
		}), s0 + `.tsigSecretSecretRef.name: "TSIG.secret" ` + objectNameRule},
		{"TSIG secret ref without key", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = "k.", &messages.SecretKeySelector{Name: "tsig"}
		}), s0 + `.tsigSecretSecretRef.key: must not be empty`},
		{"TSIG secret ref with a bad key", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = "k.", &messages.SecretKeySelector{Name: "tsig", Key: "tsig/secret"}
		}), s0 + `.tsigSecretSecretRef.key: "tsig/secret" must consist of alphanumeric characters, '-', '_' or '.'`},
		{"TSIG secret ref with key ..", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = "k.", &messages.SecretKeySelector{Name: "tsig", Key: ".."}
		}), s0 + `.tsigSecretSecretRef.key: ".." must consist of alphanumeric characters, '-', '_' or '.'`},
		{"TSIG secret ref with a long key", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGKeyName, p.TSIGSecretSecretRef = "k.", &messages.SecretKeySelector{Name: "tsig", Key: strings.Repeat("k", 254)}
		}), s0 + `.tsigSecretSecretRef.key: "` + strings.Repeat("k", 64) + `..." is longer than 253 characters`},
		{"TSIG secret ref with every problem", rfc(func(p *messages.RFC2136Provider) {
			p.TSIGSecretSecretRef = &messages.SecretKeySelector{}
		}), s0 + `: tsigKeyName and tsigSecretSecretRef must be set together` + "\n" +
			s0 + `.tsigSecretSecretRef.name: must not be empty` + "\n" +
			s0 + `.tsigSecretSecretRef.key: must not be empty`},
		{"bad name and namespace", func(i *messages.Issuer) { i.Metadata.Name, i.Metadata.Namespace = "dev.1", "" },
			`metadata.name: "dev.1" ` + objectNameRule + "\n" + `metadata.namespace: must not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			i := httpIssuer()
			tt.mutate(i)
			err := ValidateIssuer(i)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("ValidateIssuer: %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("ValidateIssuer: nil error, want\n%s", tt.want)
			case tt.want != "" && err.Error() != tt.want:
				t.Errorf("ValidateIssuer:\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestSetDefaultsIssuerSolversAndAccountKey(t *testing.T) {
	t.Parallel()
	for _, solvers := range [][]messages.ACMESolver{nil, {}} {
		i := &messages.Issuer{Metadata: messages.ObjectMeta{Name: "dev"}, Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{Solvers: solvers}}}
		SetDefaults(i)
		if s := i.Spec.ACME.Solvers; len(s) != 1 || s[0].HTTP01 == nil || s[0].DNS01 != nil || s[0].Selector != nil {
			t.Errorf("solvers %#v defaulted to %+v, want one http01 solver", solvers, s)
		}
	}
	dns := []messages.ACMESolver{{DNS01: &messages.DNS01Solver{RFC2136: &messages.RFC2136Provider{Nameserver: "10.0.0.53:53"}}}}
	i := &messages.Issuer{Metadata: messages.ObjectMeta{Name: "dev"}, Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{Solvers: dns}}}
	SetDefaults(i)
	if len(i.Spec.ACME.Solvers) != 1 || i.Spec.ACME.Solvers[0].DNS01 == nil {
		t.Errorf("given solvers changed: %+v", i.Spec.ACME.Solvers)
	}

	// The longest names still get an account key Secret that fits.
	keyOf := func(name string) string {
		i := &messages.Issuer{Metadata: messages.ObjectMeta{Name: name}, Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{}}}
		SetDefaults(i)
		return i.Spec.ACME.PrivateKeySecretRef.Name
	}
	n188 := strings.Repeat("a", messages.MaxObjectNameLength-len(AccountKeySuffix))
	if got := keyOf(n188); got != n188+AccountKeySuffix {
		t.Errorf("account key of a %d-character issuer: %q, want the name and the suffix", len(n188), got)
	}
	a200, b200 := strings.Repeat("a", 199)+"b", strings.Repeat("a", 199)+"c"
	ka, kb := keyOf(a200), keyOf(b200)
	for _, k := range []string{ka, kb} {
		if len(k) > messages.MaxObjectNameLength || !strings.HasSuffix(k, AccountKeySuffix) || validateName("k", k) != nil {
			t.Errorf("account key %q (%d characters) does not fit", k, len(k))
		}
	}
	if ka == kb || ka != keyOf(a200) {
		t.Errorf("account keys %q and %q: want distinct and stable", ka, kb)
	}
}

// TestResourceSize checks MaxResourceSize at its boundary and that the
// error names the field that makes the resource large.
func TestResourceSize(t *testing.T) {
	t.Parallel()
	c := validCert()
	c.Metadata.Labels = map[string]string{"pad": ""}
	base, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Metadata.Labels["pad"] = strings.Repeat("p", MaxResourceSize-len(base))
	if err := checkResourceSize(c); err != nil {
		t.Errorf("a resource of exactly MaxResourceSize: %v", err)
	}
	c.Metadata.Labels["pad"] += "p"
	const want = "metadata.labels.pad: a string of 959.7 KiB, the resource is 960.1 KiB, over the 960 KiB limit"
	if err := checkResourceSize(c); err == nil || err.Error() != want {
		t.Errorf("one byte over:\n got: %v\nwant: %s", err, want)
	}

	c = validCert()
	c.Spec.DNSNames = make([]string, 45000)
	for i := range c.Spec.DNSNames {
		c.Spec.DNSNames[i] = fmt.Sprintf("host%05d.example.com", i)
	}
	err = ValidateCertificate(c, httpIssuer())
	const wantNames = "spec.dnsNames: 45000 names, the resource is 1.1 MiB, over the 960 KiB limit"
	if err == nil || !strings.Contains(err.Error(), "\n"+wantNames) {
		t.Errorf("45000 names:\n got: %v\nwant a line: %s", err, wantNames)
	}
	if first, _, _ := strings.Cut(err.Error(), "\n"); first != "spec.dnsNames: 45000 names, at most 100 are allowed (the ACME limit of Let's Encrypt)" {
		t.Errorf("45000 names: first problem %q", first)
	}
}

func TestValidateRenewalFields(t *testing.T) {
	t.Parallel()
	d := func(v time.Duration) *messages.Duration { return &messages.Duration{Duration: v} }
	i := func(v int) *int { return &v }
	tests := []struct {
		spec messages.CertificateSpec
		want string
	}{
		{messages.CertificateSpec{Duration: d(5 * time.Second)}, "spec.duration: 5s is shorter than 10s, the shortest certificate acmeq asks for"},
		{messages.CertificateSpec{RenewBefore: d(-time.Hour)}, "spec.renewBefore: -1h0m0s must be positive"},
		{messages.CertificateSpec{Duration: d(time.Hour), RenewBefore: d(time.Hour)}, "spec.renewBefore: 1h0m0s must be shorter than spec.duration (1h0m0s)"},
		{messages.CertificateSpec{RenewBeforePercentage: i(100)}, "spec.renewBeforePercentage: 100 must be between 1 and 99"},
		{messages.CertificateSpec{RenewBeforePercentage: i(10), RenewBefore: d(time.Hour)}, "spec.renewBeforePercentage: set together with spec.renewBefore; set one of them"},
		{messages.CertificateSpec{RevisionHistoryLimit: i(0)}, "spec.revisionHistoryLimit: 0 must be between 1 and 100"},
		{messages.CertificateSpec{PrivateKey: &messages.PrivateKeySpec{RotationPolicy: "Sometimes"}}, `spec.privateKey.rotationPolicy: "Sometimes" is not supported (want Always or Never)`},
		{messages.CertificateSpec{PrivateKey: &messages.PrivateKeySpec{Encoding: "DER"}}, `spec.privateKey.encoding: "DER" is not supported (want PKCS1 or PKCS8)`},
		{messages.CertificateSpec{Duration: d(2160 * time.Hour), RenewBefore: d(720 * time.Hour), RevisionHistoryLimit: i(3),
			PrivateKey: &messages.PrivateKeySpec{RotationPolicy: "Never", Encoding: "PKCS8"}}, ""},
	}
	for _, tt := range tests {
		errs := validateRenewal(&tt.spec)
		got := ""
		if len(errs) > 0 {
			got = errs[0].Error()
		}
		if got != tt.want {
			t.Errorf("validateRenewal(%+v) = %q, want %q", tt.spec, got, tt.want)
		}
	}
}
