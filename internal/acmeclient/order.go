package acmeclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // ES256, RS256
	_ "crypto/sha512" // ES384
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"golang.org/x/crypto/acme"
)

// OrderOptions are the new-order fields acmeq sets.
type OrderOptions struct {
	// Profile asks for an ACME profile (empty: the CA's default).
	Profile string
	// NotAfter asks for this notAfter (zero: the CA's default).
	NotAfter time.Time
	// Replaces is the ARI CertID of the certificate the order renews
	// (RFC 9773 §5); CAs exempt such renewals from most rate limits.
	Replaces string
}

// maxBadNonce bounds the in-place retries of a badNonce (RFC 8555 §6.5).
const maxBadNonce = 5

// NewOrder creates an order for ids. Without Replaces it is x/crypto/acme's
// AuthorizeOrder; with it, acmeq signs the request itself, since
// x/crypto/acme cannot send "replaces".
func (c *Client) NewOrder(ctx context.Context, ids []acme.AuthzID, o OrderOptions) (*acme.Order, error) {
	if o.Replaces == "" {
		var opts []acme.OrderOption
		if o.Profile != "" {
			opts = append(opts, acme.WithOrderIssuanceProfile(acme.ProfileName(o.Profile)))
		}
		if !o.NotAfter.IsZero() {
			opts = append(opts, acme.WithOrderNotAfter(o.NotAfter))
		}
		return c.AuthorizeOrder(ctx, ids, opts...)
	}
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, err
	}
	type wireID struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	req := struct {
		Identifiers []wireID `json:"identifiers"`
		NotAfter    string   `json:"notAfter,omitempty"`
		Profile     string   `json:"profile,omitempty"`
		Replaces    string   `json:"replaces,omitempty"`
	}{Profile: o.Profile, Replaces: o.Replaces}
	for _, id := range ids {
		req.Identifiers = append(req.Identifiers, wireID{Type: id.Type, Value: id.Value})
	}
	if !o.NotAfter.IsZero() {
		req.NotAfter = o.NotAfter.UTC().Format(time.RFC3339)
	}
	res, err := c.post(ctx, dir, dir.NewOrder, req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return nil, responseError(res)
	}
	order, err := decodeOrder(res)
	if err != nil {
		return nil, fmt.Errorf("acmeclient: new-order: %w", err)
	}
	order.Identifiers = append(order.Identifiers, ids...)
	return order, nil
}

// Finalize submits the CSR (DER) to an order's finalize URL and returns
// the order as the CA answered: "valid" with its certificate URL when the
// CA issued at once (Pebble, often Boulder), "processing" otherwise, with
// the CA's Retry-After in RetryAfter. Nothing waits: x/crypto/acme has no
// finalize-only call (CreateCertFromOrder polls with sleeps).
func (c *Client) Finalize(ctx context.Context, orderURL, finalizeURL string, csr []byte) (*acme.Order, time.Duration, error) {
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, 0, err
	}
	res, err := c.post(ctx, dir, finalizeURL, map[string]string{"csr": base64.RawURLEncoding.EncodeToString(csr)})
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, 0, responseError(res)
	}
	o, err := decodeOrder(res)
	if err != nil {
		return nil, 0, fmt.Errorf("acmeclient: finalize: %w", err)
	}
	o.URI = orderURL
	return o, ParseRetryAfter(res.Header.Get("Retry-After"), time.Now()), nil
}

// decodeOrder reads an order object (RFC 8555 §7.1.3) from a response.
func decodeOrder(res *http.Response) (*acme.Order, error) {
	var v struct {
		Status         string
		Authorizations []string
		Finalize       string
		Certificate    string
		Error          *struct{ Type, Detail string }
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxBody)).Decode(&v); err != nil {
		return nil, err
	}
	o := &acme.Order{
		URI:         res.Header.Get("Location"),
		Status:      v.Status,
		AuthzURLs:   v.Authorizations,
		FinalizeURL: v.Finalize,
		CertURL:     v.Certificate,
	}
	if v.Error != nil {
		o.Error = &acme.Error{ProblemType: v.Error.Type, Detail: v.Error.Detail}
	}
	return o, nil
}

// post sends a JWS-signed POST with the account's key ID, retrying a
// badNonce at once with the nonce of the error response.
func (c *Client) post(ctx context.Context, dir *Directory, url string, payload any) (*http.Response, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("acmeclient: encode request to %s: %w", url, err)
	}
	for attempt := 0; ; attempt++ {
		nonce, err := c.nonce(ctx, dir)
		if err != nil {
			return nil, err
		}
		jws, err := signJWS(c.Key, string(c.KID), nonce, url, body)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(jws))
		if err != nil {
			return nil, fmt.Errorf("acmeclient: post %s: %w", url, err)
		}
		req.Header.Set("Content-Type", "application/jose+json")
		req.Header.Set("User-Agent", UserAgent)
		res, err := c.HTTPClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("acmeclient: post %s: %w", url, err)
		}
		if res.StatusCode != http.StatusBadRequest || attempt >= maxBadNonce {
			return res, nil
		}
		perr := responseError(res)
		res.Body.Close()
		if !HasProblem(perr, ProblemBadNonce) {
			return nil, perr
		}
	}
}

// nonce asks newNonce for a nonce; the HTTP client's nonceTransport
// answers from the nonces of earlier responses when it has one, so this is
// rarely a round trip.
func (c *Client) nonce(ctx context.Context, dir *Directory) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, dir.NewNonce, nil)
	if err != nil {
		return "", fmt.Errorf("acmeclient: newNonce: %w", err)
	}
	req.Header.Set("User-Agent", UserAgent)
	res, err := c.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("acmeclient: newNonce %s: %w", dir.NewNonce, err)
	}
	res.Body.Close()
	v := res.Header.Get("Replay-Nonce")
	if v == "" {
		return "", fmt.Errorf("acmeclient: newNonce %s answered %d without a Replay-Nonce", dir.NewNonce, res.StatusCode)
	}
	return v, nil
}

// signJWS returns the flattened JSON JWS of payload (RFC 8555 §6.2) signed
// with the account key, naming the account by kid.
func signJWS(key crypto.Signer, kid, nonce, url string, payload []byte) ([]byte, error) {
	if kid == "" {
		return nil, errors.New("acmeclient: signed request without an account URL (KID)")
	}
	alg, hash, err := jwsAlgorithm(key)
	if err != nil {
		return nil, err
	}
	protected, err := json.Marshal(map[string]string{"alg": alg, "kid": kid, "nonce": nonce, "url": url})
	if err != nil {
		return nil, fmt.Errorf("acmeclient: jws header: %w", err)
	}
	enc := base64.RawURLEncoding
	p64, b64 := enc.EncodeToString(protected), enc.EncodeToString(payload)
	h := hash.New()
	h.Write([]byte(p64 + "." + b64))
	sig, err := key.Sign(rand.Reader, h.Sum(nil), hash)
	if err != nil {
		return nil, fmt.Errorf("acmeclient: jws sign: %w", err)
	}
	if pub, ok := key.Public().(*ecdsa.PublicKey); ok {
		if sig, err = ecdsaJOSE(sig, (pub.Curve.Params().BitSize+7)/8); err != nil {
			return nil, err
		}
	}
	return json.Marshal(map[string]string{"protected": p64, "payload": b64, "signature": enc.EncodeToString(sig)})
}

func jwsAlgorithm(key crypto.Signer) (string, crypto.Hash, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		return "RS256", crypto.SHA256, nil
	case *ecdsa.PublicKey:
		switch pub.Curve.Params().BitSize {
		case 256:
			return "ES256", crypto.SHA256, nil
		case 384:
			return "ES384", crypto.SHA384, nil
		}
	}
	return "", 0, fmt.Errorf("acmeclient: unsupported account key %T", key.Public())
}

// ecdsaJOSE turns an ASN.1 ECDSA signature into JOSE's r||s of fixed size.
func ecdsaJOSE(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("acmeclient: jws: ecdsa signature: %w", err)
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}
