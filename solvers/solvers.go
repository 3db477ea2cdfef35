// Package solvers defines how acmeq proves control of an identifier to an
// ACME server.
//
// A [Solver] makes a challenge's response available (Present) and removes it
// again once the authorization has been decided (CleanUp). Because acmeq runs
// many identical workers, a solver must not keep the response in the memory
// of the worker that presents it: the worker that calls CleanUp, and the
// process that finally answers the ACME server, may be different ones.
// Implementations therefore store responses somewhere shared (see the http01
// subpackage, which uses a NATS JetStream key-value bucket).
//
// A solver may also implement [SelfChecker], so that callers can wait for a
// presented response to become visible before asking the ACME server to
// validate it, as cert-manager does.
package solvers

import "context"

// Challenge types, as used in [Challenge.Type].
const (
	// TypeHTTP01 is the type of an ACME "http-01" challenge (RFC 8555,
	// section 8.3).
	TypeHTTP01 = "HTTP-01"
	// TypeDNS01 is the type of an ACME "dns-01" challenge (RFC 8555,
	// section 8.4).
	TypeDNS01 = "DNS-01"
)

// Solver presents and cleans up an ACME challenge.
//
// Both methods must be idempotent: a worker may crash after presenting a
// challenge and another worker will then present it again, and CleanUp may
// be called for a challenge that was never presented or has already been
// cleaned up. Both must be safe for concurrent use.
type Solver interface {
	// Present makes the response to ch available to the ACME server.
	Present(ctx context.Context, ch Challenge) error
	// CleanUp removes whatever Present made available for ch.
	CleanUp(ctx context.Context, ch Challenge) error
}

// Challenge is what a solver needs of a Challenge resource.
type Challenge struct {
	// DNSName is the identifier being validated, without any "*." prefix
	// for wildcard names.
	DNSName string
	// Wildcard reports whether the authorization is for the wildcard name
	// "*." + DNSName. Only DNS-01 can validate wildcard names.
	Wildcard bool
	// Type is the challenge type: TypeHTTP01 or TypeDNS01.
	Type string
	// Token is the challenge token issued by the ACME server.
	Token string
	// Key is the key authorization: Token + "." + the base64url-encoded
	// thumbprint of the account key.
	Key string
}

// SelfChecker is the optional ability to verify that a presented challenge
// has propagated.
//
// Check returns nil once the response to ch can be observed the way the ACME
// server will observe it, and an error describing what was observed
// otherwise. Callers typically call Check repeatedly, with a delay, until it
// succeeds or a deadline passes.
type SelfChecker interface {
	Check(ctx context.Context, ch Challenge) error
}
