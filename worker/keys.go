package worker

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/acmeq/acmeq/messages"
)

// keySpec is the algorithm and size spec.privateKey asks for, defaulted as
// cert-manager does: ECDSA P-256; RSA 2048.
func keySpec(spec *messages.PrivateKeySpec) (alg string, size int) {
	alg = messages.KeyAlgorithmECDSA
	if spec != nil {
		if spec.Algorithm != "" {
			alg = spec.Algorithm
		}
		size = spec.Size
	}
	if size == 0 {
		size = 256
		if alg == messages.KeyAlgorithmRSA {
			size = 2048
		}
	}
	return alg, size
}

// generateKey makes a private key as the Certificate's spec.privateKey says:
// ECDSA P-256 by default, P-384, or RSA 2048/3072/4096.
func generateKey(spec *messages.PrivateKeySpec) (crypto.Signer, error) {
	alg, size := keySpec(spec)
	switch {
	case alg == messages.KeyAlgorithmECDSA && size == 256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case alg == messages.KeyAlgorithmECDSA && size == 384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case alg == messages.KeyAlgorithmRSA && (size == 2048 || size == 3072 || size == 4096):
		return rsa.GenerateKey(rand.Reader, size)
	}
	return nil, fmt.Errorf("spec.privateKey: unsupported algorithm %q size %d", alg, size)
}

// keyMismatch names the spec.privateKey fields a public key does not
// satisfy, or nil.
func keyMismatch(pub crypto.PublicKey, spec *messages.PrivateKeySpec) []string {
	alg, size := keySpec(spec)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if alg != messages.KeyAlgorithmECDSA {
			return []string{"spec.privateKey.algorithm"}
		}
		if k.Curve.Params().BitSize != size {
			return []string{"spec.privateKey.size"}
		}
	case *rsa.PublicKey:
		if alg != messages.KeyAlgorithmRSA {
			return []string{"spec.privateKey.algorithm"}
		}
		if k.N.BitLen() != size {
			return []string{"spec.privateKey.size"}
		}
	default:
		return []string{"spec.privateKey.algorithm"}
	}
	return nil
}

// marshalKey encodes a private key as spec.privateKey.encoding asks:
// PKCS1 (the default, as cert-manager: "RSA PRIVATE KEY" or SEC 1 "EC
// PRIVATE KEY") or PKCS8 ("PRIVATE KEY").
func marshalKey(k crypto.Signer, encoding string) ([]byte, error) {
	if encoding == messages.KeyEncodingPKCS8 {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("marshal private key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
	switch key := k.(type) {
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("marshal private key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("marshal private key: unsupported key %T", k)
}

// marshalKeyPEM is the encoding of keys acmeq keeps for itself (account
// keys, keys awaiting issuance): PKCS#8.
func marshalKeyPEM(k crypto.Signer) ([]byte, error) {
	return marshalKey(k, messages.KeyEncodingPKCS8)
}

// parseKeyPEM reads a PEM private key in any of the encodings above.
func parseKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("private key: no PEM block")
	}
	var k any
	var err error
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("private key: not a signer")
	}
	return s, nil
}

// makeCSR returns a PEM CSR for the certificate's names.
func makeCSR(key crypto.Signer, spec messages.CertificateSpec) ([]byte, error) {
	tmpl := &x509.CertificateRequest{DNSNames: spec.DNSNames}
	if spec.CommonName != "" {
		tmpl.Subject = pkix.Name{CommonName: spec.CommonName}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// publicKeysEqual reports whether two public keys are the same key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// parseLeaf returns the first certificate of a PEM chain.
func parseLeaf(chainPEM []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(chainPEM)
	if blk == nil {
		return nil, errors.New("issued chain holds no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
