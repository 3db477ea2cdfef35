// Package http01 solves ACME HTTP-01 challenges (RFC 8555, section 8.3) for
// a fleet of identical acmeq workers.
//
// The pieces fit together like this:
//
//   - Any worker presents a challenge with a [Presenter], which writes the
//     key authorization into the JetStream key-value bucket [Bucket] under
//     the challenge token.
//   - One or more `acmeq http01` processes run a [Responder], an
//     [net/http.Handler] that watches the bucket and answers
//     GET /.well-known/acme-challenge/<token> from memory. Port 80 of every
//     name being validated must be routed to a responder.
//   - Before asking the ACME server to validate, a worker may use a
//     [SelfCheck] to fetch the challenge URL the way the ACME server will,
//     and wait until the expected key authorization comes back.
//
// Create the bucket once per process with [EnsureBucket] and share the
// returned [jetstream.KeyValue].
package http01

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/solvers"
)

// Bucket is the name of the JetStream key-value bucket that holds presented
// HTTP-01 challenges. Keys are challenge tokens; values are the
// corresponding key authorizations.
const Bucket = "ACMEQ_HTTP01"

// DefaultTokenTTL is how long a presented token stays in [Bucket] after it
// was last presented. It bounds how long a token survives a worker that died
// between Present and CleanUp; an ACME server validates a challenge within
// minutes of being asked to, so a day is generous.
const DefaultTokenTTL = 24 * time.Hour

// expiryMarkerTTL is how long the bucket keeps the marker JetStream leaves
// when a token expires by [DefaultTokenTTL]. The marker is what tells a
// [Responder] to forget an expired token; a responder disconnected for longer
// than this keeps serving such a token until it restarts, which is harmless.
const expiryMarkerTTL = time.Hour

// ChallengePath is the path prefix under which HTTP-01 responses are served.
// The token follows it directly.
const ChallengePath = "/.well-known/acme-challenge/"

// MaxTokenLength is the longest token accepted. RFC 8555 requires tokens to
// carry at least 128 bits of entropy (22 base64url characters); Let's
// Encrypt's are 43 characters long.
const MaxTokenLength = 256

// ErrInvalidToken is returned, wrapped, for a challenge token that is empty,
// longer than [MaxTokenLength] or contains a character outside the base64url
// alphabet [A-Za-z0-9_-]. Tokens must be valid because they become both a URL
// path segment and a key in [Bucket].
var ErrInvalidToken = errors.New("http01: invalid token")

// ErrUnsupportedChallenge is returned, wrapped, for a challenge that HTTP-01
// cannot solve: one whose Type is neither empty nor [solvers.TypeHTTP01], or
// one for a wildcard name.
var ErrUnsupportedChallenge = errors.New("http01: unsupported challenge")

// ValidateToken reports whether token can be presented. It returns nil for a
// token of 1 to [MaxTokenLength] characters from the base64url alphabet, and
// an error wrapping [ErrInvalidToken] otherwise.
func ValidateToken(token string) error {
	switch {
	case token == "":
		return fmt.Errorf("%w %q: empty", ErrInvalidToken, token)
	case len(token) > MaxTokenLength:
		return fmt.Errorf("%w %s: %d bytes long, more than the maximum of %d",
			ErrInvalidToken, quoteTruncated(token, 32), len(token), MaxTokenLength)
	}
	for i := 0; i < len(token); i++ {
		if !isBase64URL(token[i]) {
			c := strconv.Quote(token[i : i+1]) // an invalid UTF-8 byte
			if r, size := utf8.DecodeRuneInString(token[i:]); size > 1 || r != utf8.RuneError {
				c = strconv.QuoteRune(r)
			}
			return fmt.Errorf("%w %q: character %s at offset %d is not in the base64url alphabet",
				ErrInvalidToken, token, c, i)
		}
	}
	return nil
}

// validToken is ValidateToken without the error, for the hot path.
func validToken(token string) bool {
	if token == "" || len(token) > MaxTokenLength {
		return false
	}
	for i := 0; i < len(token); i++ {
		if !isBase64URL(token[i]) {
			return false
		}
	}
	return true
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// quoteTruncated quotes at most the first n bytes of s (cut back to a rune
// boundary), marking the cut with "..." after the closing quote.
func quoteTruncated(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strconv.Quote(s[:n]) + "..."
}

// validateChallenge checks the parts of ch that both presenting and
// self-checking depend on.
func validateChallenge(ch solvers.Challenge) error {
	if ch.Type != "" && !strings.EqualFold(ch.Type, solvers.TypeHTTP01) {
		return fmt.Errorf("%w: type %q for %q, want %q", ErrUnsupportedChallenge, ch.Type, ch.DNSName, solvers.TypeHTTP01)
	}
	if ch.Wildcard {
		return fmt.Errorf("%w: HTTP-01 cannot validate wildcard name %q", ErrUnsupportedChallenge, "*."+ch.DNSName)
	}
	if err := ValidateToken(ch.Token); err != nil {
		return err
	}
	if ch.Key == "" {
		return fmt.Errorf("http01: challenge for %q with token %q has an empty key authorization", ch.DNSName, ch.Token)
	}
	return nil
}

// EnsureBucket creates [Bucket], or updates its configuration if it exists,
// and returns it. The bucket keeps one value per token (History 1), and
// tokens expire [DefaultTokenTTL] after they were last presented, so tokens
// abandoned by a crashed worker do not accumulate.
//
// The replica count, placement and storage type of an existing bucket are
// kept, so an operator may raise the bucket's replicas (for example with
// `nats kv edit`) without every worker start-up lowering them again; a new
// bucket gets JetStream's defaults (file storage, one replica).
//
// EnsureBucket is safe to call concurrently from many workers.
func EnsureBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	return ensureBucket(ctx, js, DefaultTokenTTL, 0)
}

// EnsureBucketReplicas is [EnsureBucket] for a bucket of replicas replicas
// (ACMEQ_REPLICAS): a new bucket gets that many, and an existing bucket
// with another count is an error ([bus.ReplicasError]), never changed.
// Zero is EnsureBucket: one replica for a new bucket, any for an existing.
func EnsureBucketReplicas(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	return ensureBucket(ctx, js, DefaultTokenTTL, replicas)
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:         Bucket,
		Description:    "acmeq HTTP-01 key authorizations, keyed by challenge token",
		History:        1,
		TTL:            ttl,
		LimitMarkerTTL: expiryMarkerTTL,
		Replicas:       max(replicas, 1),
	}
	existing, err := js.KeyValue(ctx, Bucket)
	switch {
	case err == nil:
		st, err := existing.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("http01: reading configuration of bucket %s: %w", Bucket, err)
		}
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok {
			old := bs.Config()
			if err := bus.CheckReplicas(bs.StreamInfo().Config.Name, old.Replicas, replicas); err != nil {
				return nil, fmt.Errorf("http01: bucket %s: %w", Bucket, err)
			}
			if old.TTL == cfg.TTL && old.LimitMarkerTTL == cfg.LimitMarkerTTL && old.History == cfg.History {
				// Nothing to change: no update, which would race with
				// other workers starting (nats-server's stream update).
				return existing, nil
			}
			cfg.Replicas, cfg.Placement, cfg.Storage = old.Replicas, old.Placement, old.Storage
		}
	case errors.Is(err, jetstream.ErrBucketNotFound):
		// Workers starting together: a create with the same config
		// succeeds for each, without the update that races in the server.
		if kv, err := js.CreateKeyValue(ctx, cfg); err == nil {
			return kv, nil
		}
	default:
		return nil, fmt.Errorf("http01: looking up bucket %s: %w", Bucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("http01: creating or updating bucket %s with %d replicas%s: %w", Bucket, cfg.Replicas, bus.ReplicasHint(cfg.Replicas), err)
	}
	return kv, nil
}

// Presenter presents HTTP-01 challenges by storing their key authorizations
// in [Bucket], from where every [Responder] serves them. It is safe for
// concurrent use, and any number of workers may present and clean up the
// same challenge.
type Presenter struct {
	kv jetstream.KeyValue
}

var _ solvers.Solver = (*Presenter)(nil)

// NewPresenter returns a Presenter that writes to kv, normally the bucket
// returned by [EnsureBucket].
func NewPresenter(kv jetstream.KeyValue) *Presenter {
	return &Presenter{kv: kv}
}

// Present stores ch's key authorization under its token. Presenting the same
// challenge again is harmless, and restarts the token's [DefaultTokenTTL].
//
// Present returns an error wrapping [ErrInvalidToken] or
// [ErrUnsupportedChallenge] for a challenge it cannot present.
func (p *Presenter) Present(ctx context.Context, ch solvers.Challenge) error {
	if err := validateChallenge(ch); err != nil {
		return err
	}
	if _, err := p.kv.Put(ctx, ch.Token, []byte(ch.Key)); err != nil {
		return fmt.Errorf("http01: presenting token %q for %q: %w", ch.Token, ch.DNSName, err)
	}
	return nil
}

// CleanUp deletes ch's token from the bucket, after which responders answer
// 404 for it. Cleaning up a token that is not present is not an error.
//
// CleanUp returns an error wrapping [ErrInvalidToken] for an invalid token:
// such a token can never have been presented.
func (p *Presenter) CleanUp(ctx context.Context, ch solvers.Challenge) error {
	if err := ValidateToken(ch.Token); err != nil {
		return err
	}
	if err := p.kv.Delete(ctx, ch.Token); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("http01: cleaning up token %q for %q: %w", ch.Token, ch.DNSName, err)
	}
	return nil
}
