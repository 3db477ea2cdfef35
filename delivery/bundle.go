package delivery

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// File names inside a certificate's directory.
const (
	// FileCert holds the leaf certificate followed by the chain (PEM).
	FileCert = "tls.crt"
	// FileKey holds the private key (PEM, PKCS#8 today), mode 0600.
	FileKey = "tls.key"
	// FileCA holds the CA certificate, when the issuer sent one.
	FileCA = "ca.crt"
	// FilePEM holds the key followed by the leaf and chain, for servers
	// that take one file (HAProxy's crt), mode 0600.
	FilePEM = "tls.pem"
)

// Errors about the content of a Secret. They come wrapped in
// "delivery: certificate <ns>/<name>: Secret <ns>/<name> (revision N): ...".
var (
	// ErrBadCertificate: the Secret's tls.crt is missing or does not parse.
	ErrBadCertificate = errors.New("bad certificate")
	// ErrBadKey: the Secret's tls.key is missing or does not parse.
	ErrBadKey = errors.New("bad private key")
	// ErrKeyMismatch: tls.key is not the key of the leaf in tls.crt.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
)

// bundle is one version of a certificate's files, checked: the key is the
// leaf's and every certificate of the chain is signed by the next.
type bundle struct {
	cert, key, ca []byte
	leaf          *x509.Certificate
	// version names the content: equal bundles have equal versions.
	version string
}

// file is one file of a bundle.
type file struct {
	name string
	data []byte
	perm uint32
}

// newBundle checks a Secret's data and returns its files.
func newBundle(data map[string][]byte) (*bundle, error) {
	b := &bundle{cert: data[messages.SecretTLSCert], key: data[messages.SecretTLSKey], ca: data[messages.SecretCACert]}
	chain, err := parseChain(b.cert)
	if err != nil {
		return nil, err
	}
	b.leaf = chain[0]
	signer, err := parseKey(b.key)
	if err != nil {
		return nil, err
	}
	pub, ok := b.leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.Public()) {
		return nil, fmt.Errorf("%w: %s is not the key of the certificate in %s (serial %s)", ErrKeyMismatch, FileKey, FileCert, serialHex(b.leaf))
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("%w: certificate %d of %s is not signed by the next one: %w", ErrBadCertificate, i, FileCert, err)
		}
	}
	if len(b.ca) > 0 {
		if _, err := parseChain(b.ca); err != nil {
			return nil, fmt.Errorf("%s: %w", FileCA, err)
		}
	}
	h := sha256.New()
	for _, part := range [][]byte{b.cert, b.key, b.ca} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write(part)
	}
	b.version = hex.EncodeToString(h.Sum(nil))[:16]
	return b, nil
}

// files are what a certificate's directory holds.
func (b *bundle) files() []file {
	fs := []file{
		{FileCert, b.cert, 0o644},
		{FileKey, b.key, 0o600},
		{FilePEM, append(append(append([]byte{}, b.key...), newlineIfMissing(b.key)...), b.cert...), 0o600},
	}
	if len(b.ca) > 0 {
		fs = append(fs, file{FileCA, b.ca, 0o644})
	}
	return fs
}

func newlineIfMissing(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return []byte{'\n'}
	}
	return nil
}

func (b *bundle) notAfter() time.Time { return b.leaf.NotAfter }

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// parseChain parses every CERTIFICATE block of a PEM chain, leaf first.
func parseChain(p []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := p; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadCertificate, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate in %s", ErrBadCertificate, FileCert)
	}
	return out, nil
}

// parseKey parses the first private key block: PKCS#8, SEC 1 (EC) or
// PKCS#1 (RSA).
func parseKey(p []byte) (crypto.Signer, error) {
	for rest := p; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("%w: no PEM private key in %s", ErrBadKey, FileKey)
		}
		var k any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T is not a signing key", ErrBadKey, k)
		}
		return s, nil
	}
}
