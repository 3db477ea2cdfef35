package acmeclient

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// ErrNoARI: the CA's directory offers no renewalInfo (RFC 9773) resource.
var ErrNoARI = errors.New("acmeclient: the CA does not offer ACME Renewal Information")

// Client is an acme.Client with what x/crypto/acme lacks and acmeq needs:
// the directory's renewalInfo and ARI (RFC 9773), and new-order with
// "replaces". Everything else is the embedded client's.
type Client struct {
	*acme.Client

	dirMu sync.Mutex
	dir   *Directory
}

// Wrap returns a Client for cl, which must have its HTTPClient, Key,
// DirectoryURL and (for new-order) KID set.
func Wrap(cl *acme.Client) *Client { return &Client{Client: cl} }

// Directory is the part of the CA's directory acmeq reads itself.
type Directory struct {
	NewNonce    string `json:"newNonce"`
	NewOrder    string `json:"newOrder"`
	RenewalInfo string `json:"renewalInfo"`
}

// maxBody bounds what acmeq reads of a CA's answer.
const maxBody = 1 << 20

// Directory fetches the CA's directory once and keeps it; a failed fetch
// is tried again by the next call.
func (c *Client) Directory(ctx context.Context) (*Directory, error) {
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	if c.dir != nil {
		return c.dir, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.DirectoryURL, nil)
	if err != nil {
		return nil, fmt.Errorf("acmeclient: directory: %w", err)
	}
	req.Header.Set("User-Agent", UserAgent)
	res, err := c.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("acmeclient: directory %s: %w", c.DirectoryURL, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, responseError(res)
	}
	var d Directory
	if err := json.NewDecoder(io.LimitReader(res.Body, maxBody)).Decode(&d); err != nil {
		return nil, fmt.Errorf("acmeclient: directory %s: %w", c.DirectoryURL, err)
	}
	c.dir = &d
	return c.dir, nil
}

// CertID is the ARI identifier of a certificate (RFC 9773 §4.1):
// base64url(authority key identifier) "." base64url(DER serial number).
func CertID(leaf *x509.Certificate) (string, error) {
	if len(leaf.AuthorityKeyId) == 0 {
		return "", errors.New("acmeclient: certificate has no authority key identifier, so no ARI CertID")
	}
	serial := leaf.SerialNumber.Bytes()
	// The DER encoding of a positive INTEGER has a leading zero byte when
	// the high bit is set.
	if len(serial) == 0 || serial[0]&0x80 != 0 {
		serial = append([]byte{0}, serial...)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(leaf.AuthorityKeyId) + "." + enc.EncodeToString(serial), nil
}

// RenewalWindow is the CA's suggested renewal window for a certificate.
type RenewalWindow struct {
	Start, End     time.Time
	ExplanationURL string
	// RetryAfter is when to ask again, from the CA's Retry-After; zero
	// when the CA sent none.
	RetryAfter time.Duration
}

// RenewalInfo fetches the renewal window of the certificate with ARI
// CertID certID (a plain GET). ErrNoARI when the CA has no renewalInfo.
func (c *Client) RenewalInfo(ctx context.Context, certID string) (*RenewalWindow, error) {
	dir, err := c.Directory(ctx)
	if err != nil {
		return nil, err
	}
	if dir.RenewalInfo == "" {
		return nil, ErrNoARI
	}
	u := strings.TrimRight(dir.RenewalInfo, "/") + "/" + certID
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("acmeclient: renewalInfo: %w", err)
	}
	req.Header.Set("User-Agent", UserAgent)
	res, err := c.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("acmeclient: renewalInfo %s: %w", certID, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, responseError(res)
	}
	var body struct {
		SuggestedWindow struct {
			Start time.Time `json:"start"`
			End   time.Time `json:"end"`
		} `json:"suggestedWindow"`
		ExplanationURL string `json:"explanationURL"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxBody)).Decode(&body); err != nil {
		return nil, fmt.Errorf("acmeclient: renewalInfo %s: %w", certID, err)
	}
	w := &RenewalWindow{
		Start:          body.SuggestedWindow.Start,
		End:            body.SuggestedWindow.End,
		ExplanationURL: body.ExplanationURL,
		RetryAfter:     ParseRetryAfter(res.Header.Get("Retry-After"), time.Now()),
	}
	if w.Start.IsZero() || w.End.Before(w.Start) {
		return nil, fmt.Errorf("acmeclient: renewalInfo %s: malformed suggestedWindow %s..%s", certID, w.Start, w.End)
	}
	return w, nil
}

// responseError reads an ACME problem document from a failed response into
// an *acme.Error, as x/crypto/acme does, so callers classify it the same way.
func responseError(res *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxBody))
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(b, &p)
	if p.Detail == "" && p.Type == "" {
		p.Detail = strings.TrimSpace(string(b))
		if len(p.Detail) > 256 {
			p.Detail = p.Detail[:256] + "..."
		}
	}
	return &acme.Error{StatusCode: res.StatusCode, ProblemType: p.Type, Detail: p.Detail, Header: res.Header}
}
