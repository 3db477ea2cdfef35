package acmeclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// Problem types of RFC 8555 §6.7 and its extensions, in full: this is what
// users see in reasons ("403 urn:ietf:params:acme:error:unauthorized: ...")
// and what code matches with HasProblem, never by string suffix.
const (
	ProblemAccountDoesNotExist     = "urn:ietf:params:acme:error:accountDoesNotExist"
	ProblemAlreadyReplaced         = "urn:ietf:params:acme:error:alreadyReplaced" // RFC 9773
	ProblemAlreadyRevoked          = "urn:ietf:params:acme:error:alreadyRevoked"
	ProblemBadCSR                  = "urn:ietf:params:acme:error:badCSR"
	ProblemBadNonce                = "urn:ietf:params:acme:error:badNonce"
	ProblemBadPublicKey            = "urn:ietf:params:acme:error:badPublicKey"
	ProblemBadRevocationReason     = "urn:ietf:params:acme:error:badRevocationReason"
	ProblemBadSignatureAlgorithm   = "urn:ietf:params:acme:error:badSignatureAlgorithm"
	ProblemCAA                     = "urn:ietf:params:acme:error:caa"
	ProblemCompound                = "urn:ietf:params:acme:error:compound"
	ProblemConnection              = "urn:ietf:params:acme:error:connection"
	ProblemDNS                     = "urn:ietf:params:acme:error:dns"
	ProblemExternalAccountRequired = "urn:ietf:params:acme:error:externalAccountRequired"
	ProblemIncorrectResponse       = "urn:ietf:params:acme:error:incorrectResponse"
	ProblemInvalidContact          = "urn:ietf:params:acme:error:invalidContact"
	ProblemInvalidProfile          = "urn:ietf:params:acme:error:invalidProfile" // ACME profiles draft
	ProblemMalformed               = "urn:ietf:params:acme:error:malformed"
	ProblemOrderNotReady           = "urn:ietf:params:acme:error:orderNotReady"
	ProblemRateLimited             = "urn:ietf:params:acme:error:rateLimited"
	ProblemRejectedIdentifier      = "urn:ietf:params:acme:error:rejectedIdentifier"
	ProblemServerInternal          = "urn:ietf:params:acme:error:serverInternal"
	ProblemTLS                     = "urn:ietf:params:acme:error:tls"
	ProblemUnauthorized            = "urn:ietf:params:acme:error:unauthorized"
	ProblemUnsupportedContact      = "urn:ietf:params:acme:error:unsupportedContact"
	ProblemUnsupportedIdentifier   = "urn:ietf:params:acme:error:unsupportedIdentifier"
	ProblemUserActionRequired      = "urn:ietf:params:acme:error:userActionRequired"
)

// legacyProblemPrefix is the namespace of ACME drafts before RFC 8555, which
// older Boulder versions still send.
const legacyProblemPrefix = "urn:acme:error:"

// HasProblem reports whether err is an ACME problem of type typ (one of the
// Problem constants); the pre-RFC namespace urn:acme:error: counts as the
// same type.
func HasProblem(err error, typ string) bool {
	var ae *acme.Error
	if !errors.As(err, &ae) {
		return false
	}
	return normalizeProblem(ae.ProblemType) == typ
}

func normalizeProblem(t string) string {
	if name, ok := strings.CutPrefix(t, legacyProblemPrefix); ok {
		return "urn:ietf:params:acme:error:" + name
	}
	return t
}

// ProblemType returns the ACME problem type of err, or "".
func ProblemType(err error) string {
	var ae *acme.Error
	if errors.As(err, &ae) {
		return normalizeProblem(ae.ProblemType)
	}
	return ""
}

// Class is what a caller should do about an error from the CA.
type Class int

// The classes, from Classify.
const (
	// RetryNow: nothing to wait for; redeliver at once (e.g. a badNonce
	// the client could not absorb).
	RetryNow Class = iota
	// RetryLater: the CA is busy, rate limiting or unreachable; retry
	// after Verdict.After (the CA's Retry-After) or with back-off when it
	// is zero.
	RetryLater
	// Permanent: the CA refused the request itself (a 4xx problem other
	// than rate limits and nonces); the same request fails the same way,
	// so the resource fails with the problem in its reason.
	Permanent
)

// String names the class in logs.
func (c Class) String() string {
	switch c {
	case RetryNow:
		return "retry-now"
	case RetryLater:
		return "retry-later"
	}
	return "permanent"
}

// Verdict is Classify's answer.
type Verdict struct {
	Class Class
	// After is the CA's Retry-After, when it sent one (RetryLater).
	After time.Duration
	// Problem is the ACME problem type, "" for transport errors.
	Problem string
}

// Classify sorts an error from the CA into what to do about it, the one
// place orders, challenges and issuers all decide retry or fail. A
// cancelled or timed-out context, a transport error or a 5xx is
// RetryLater; 429 and rateLimited are RetryLater with the CA's
// Retry-After; badNonce is RetryNow; any other 4xx problem is Permanent.
func Classify(err error) Verdict {
	var ae *acme.Error
	if !errors.As(err, &ae) {
		return Verdict{Class: RetryLater}
	}
	v := Verdict{Problem: normalizeProblem(ae.ProblemType), After: RetryAfter(err)}
	switch {
	case v.Problem == ProblemBadNonce:
		v.Class = RetryNow
	case ae.StatusCode == http.StatusTooManyRequests || v.Problem == ProblemRateLimited:
		v.Class = RetryLater
	case ae.StatusCode >= 400 && ae.StatusCode < 500:
		v.Class = Permanent
	default:
		v.Class = RetryLater
	}
	return v
}

// IsPermanent reports a client-side ACME problem (4xx other than 429 and
// badNonce): retrying the same request will fail the same way.
func IsPermanent(err error) bool { return Classify(err).Class == Permanent }

// IsRateLimited reports an ACME rateLimited problem or a 429.
func IsRateLimited(err error) bool {
	var ae *acme.Error
	return HasProblem(err, ProblemRateLimited) || (errors.As(err, &ae) && ae.StatusCode == http.StatusTooManyRequests)
}

// RetryAfter returns how long the CA asked us to wait (429, 503 with
// Retry-After), or 0.
func RetryAfter(err error) time.Duration {
	var ae *acme.Error
	if !errors.As(err, &ae) || ae.Header == nil {
		return 0
	}
	return ParseRetryAfter(ae.Header.Get("Retry-After"), time.Now())
}

// ParseRetryAfter reads a Retry-After header value: delay seconds or an
// HTTP date; 0 when absent, malformed or past.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Describe formats an ACME error as users see it in reasons:
// "400 urn:ietf:params:acme:error:invalidEmail: detail". Other errors
// are their message; a context error says it timed out.
func Describe(err error) string {
	var ae *acme.Error
	if errors.As(err, &ae) {
		return fmt.Sprintf("%d %s: %s", ae.StatusCode, ae.ProblemType, ae.Detail)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the ACME server did not answer in time: " + err.Error()
	}
	return err.Error()
}
