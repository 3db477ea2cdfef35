package messages

import "time"

// Issuer is an ACME account at a CA, as cert-manager's Issuer with an acme block.
//
// The same type holds a ClusterIssuer, as in cert-manager, where both
// kinds share IssuerSpec and IssuerStatus: TypeMeta.Kind tells them apart
// (GetKind), and a ClusterIssuer's metadata.namespace is empty. Build one
// with NewIssuer(KindClusterIssuer) before reading it from the store, so
// that the right bucket is read.
type Issuer struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta   `json:"metadata"`
	Spec     IssuerSpec   `json:"spec"`
	Status   IssuerStatus `json:"status,omitempty"`
}

// IssuerSpec configures an ACME issuer.
type IssuerSpec struct {
	ACME *ACMEIssuer `json:"acme"`
}

// ACMEIssuer is the acme block of an Issuer.
type ACMEIssuer struct {
	// Server is the ACME directory URL.
	Server string `json:"server"`
	// Email is the account contact; empty registers without contact.
	Email string `json:"email,omitempty"`
	// PrivateKeySecretRef names the Secret holding the account key. It is
	// generated on first registration. Defaults to "<issuer name>-account-key".
	PrivateKeySecretRef SecretRef `json:"privateKeySecretRef"`
	// CABundle is PEM CA certificates trusted for the ACME server's TLS
	// (base64 in cert-manager; PEM text here).
	CABundle string `json:"caBundle,omitempty"`
	// SkipTLSVerify disables TLS verification of the ACME server.
	SkipTLSVerify bool `json:"skipTLSVerify,omitempty"`
	// Solvers lists the challenge solvers; the first whose selector matches
	// a name is used. Empty means one HTTP-01 solver.
	Solvers []ACMESolver `json:"solvers,omitempty"`
	// Profile is the ACME profile new orders ask for (draft
	// ietf-acme-profiles; Let's Encrypt's "classic", "tlsserver",
	// "shortlived"). Empty lets the CA choose.
	Profile string `json:"profile,omitempty"`
	// PreferredChain selects, among the chains the CA offers, the one
	// whose root (or topmost certificate) has this subject common name, as
	// cert-manager. Empty or no match keeps the CA's default chain.
	PreferredChain string `json:"preferredChain,omitempty"`
	// RateLimits are the CA's rate limits the fleet keeps within (see
	// RateLimits). Defaults to the letsencrypt preset for Let's Encrypt's
	// production server and to none for any other.
	RateLimits *RateLimits `json:"rateLimits,omitempty"`
	// ExternalAccountBinding binds the new ACME account to an account the
	// user holds at the CA (RFC 8555 section 7.3.4), as CAs such as
	// ZeroSSL and Google Trust Services require. It is used when the
	// account is registered, and not after.
	ExternalAccountBinding *ExternalAccountBinding `json:"externalAccountBinding,omitempty"`
}

// ExternalAccountBinding is cert-manager's ACMEExternalAccountBinding: the
// key ID and HMAC key the CA handed out for binding an ACME account.
type ExternalAccountBinding struct {
	// KeyID is the key identifier the CA gave (the "kid" of the binding).
	// Required.
	KeyID string `json:"keyID"`
	// KeySecretRef selects the Secret key holding the HMAC key, base64url
	// encoded (with or without padding) as CAs hand it out. The Secret is
	// in the Issuer's namespace, or, for a ClusterIssuer, in the workers'
	// cluster resource namespace. Required.
	KeySecretRef SecretKeySelector `json:"keySecretRef"`
	// KeyAlgorithm is the MAC algorithm of the binding. Only HS256 is
	// supported (golang.org/x/crypto/acme signs with it, as cert-manager
	// does, where the field is deprecated). Defaults to HS256.
	KeyAlgorithm string `json:"keyAlgorithm,omitempty"`
}

// EABKeyAlgorithmHS256 is the only ExternalAccountBinding.KeyAlgorithm.
const EABKeyAlgorithmHS256 = "HS256"

// SecretRef names a Secret in the Issuer's namespace (for a ClusterIssuer,
// in the workers' cluster resource namespace).
type SecretRef struct {
	Name string `json:"name"`
}

// ACMESolver is one solver of an ACME issuer.
type ACMESolver struct {
	Selector *SolverSelector `json:"selector,omitempty"`
	HTTP01   *HTTP01Solver   `json:"http01,omitempty"`
	DNS01    *DNS01Solver    `json:"dns01,omitempty"`
}

// SolverSelector restricts a solver to some names, as cert-manager's
// CertificateDNSNameSelector: every condition that is set must match, and
// when several solvers match a name the most specific one is used (see
// solvers.Select).
type SolverSelector struct {
	// DNSNames lists the names the solver is for, matched exactly
	// (case-insensitively); a wildcard name is matched as "*.example.com".
	DNSNames []string `json:"dnsNames,omitempty"`
	// DNSZones lists zones: the solver is for these names and every name
	// below them ("example.com" selects "www.example.com" and
	// "*.example.com"). The longest matching zone is the most specific.
	DNSZones []string `json:"dnsZones,omitempty"`
	// MatchLabels lists labels the Certificate must carry, every one with
	// the given value.
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// HTTP01Solver solves HTTP-01 by publishing tokens to the acmeq responder.
type HTTP01Solver struct{}

// DNS01Solver solves DNS-01 through a DNS provider: exactly one of RFC2136,
// Webhook and Lego is set.
type DNS01Solver struct {
	// CNAMEStrategy is what to do when _acme-challenge.<name> is a CNAME,
	// as cert-manager's cnameStrategy: CNAMEStrategyNone (the default)
	// writes the TXT record at _acme-challenge.<name> itself;
	// CNAMEStrategyFollow follows the CNAME chain (through the recursive
	// nameservers) and writes the TXT record at its end, for names whose
	// owner delegated their challenges to a zone the solver can edit.
	CNAMEStrategy string           `json:"cnameStrategy,omitempty"`
	RFC2136       *RFC2136Provider `json:"rfc2136,omitempty"`
	Webhook       *WebhookProvider `json:"webhook,omitempty"`
	Lego          *LegoProvider    `json:"lego,omitempty"`
}

// Values of DNS01Solver.CNAMEStrategy.
const (
	// CNAMEStrategyNone writes the challenge record at
	// _acme-challenge.<name>, following no CNAME.
	CNAMEStrategyNone = "None"
	// CNAMEStrategyFollow follows a CNAME at _acme-challenge.<name> and
	// writes the challenge record at its target.
	CNAMEStrategyFollow = "Follow"
)

// WebhookProvider presents DNS-01 records through an HTTP service that
// implements acmeq's webhook contract (POST {url}/present and
// {url}/cleanup with a JSON body; see the README), so that any DNS API can
// be bridged.
type WebhookProvider struct {
	// URL is the base URL of the service, http or https, e.g.
	// "https://dns-bridge.internal/acme". Required.
	URL string `json:"url"`
	// BearerTokenSecretRef selects a Secret key whose value is sent as
	// "Authorization: Bearer <value>".
	BearerTokenSecretRef *SecretKeySelector `json:"bearerTokenSecretRef,omitempty"`
	// HMACSecretRef selects a Secret key whose value is the key of an
	// HMAC-SHA256 signature of each request, sent in the
	// X-Acmeq-Signature header.
	HMACSecretRef *SecretKeySelector `json:"hmacSecretRef,omitempty"`
	// CABundle is PEM CA certificates trusted for the service's TLS, in
	// addition to the system's.
	CABundle string `json:"caBundle,omitempty"`
	// Timeout bounds each call, as a Go duration ("30s"). Defaults to 30s.
	Timeout string `json:"timeout,omitempty"`
}

// LegoProvider presents DNS-01 records through one of lego's DNS
// providers (github.com/go-acme/lego/v5/providers/dns/<name>).
type LegoProvider struct {
	// Provider is the lego provider's name, e.g. "pdns". Required.
	Provider string `json:"provider"`
	// Config holds the provider's non-secret settings, keyed by lego's
	// environment variable names, e.g. {"PDNS_API_URL": "http://..."}.
	Config map[string]string `json:"config,omitempty"`
	// CredentialsSecretRef names a Secret in the Issuer's namespace whose
	// keys are the provider's secret settings, again keyed by lego's
	// environment variable names (e.g. PDNS_API_KEY).
	CredentialsSecretRef *SecretRef `json:"credentialsSecretRef,omitempty"`
}

// RFC2136Provider updates a zone by RFC 2136 dynamic updates, as
// cert-manager's rfc2136 solver. The TSIG secret is not part of the Issuer
// (Issuers are stored in plain text): it is read from a Secret, which is
// sealed at rest.
type RFC2136Provider struct {
	// Nameserver is the host:port of the primary nameserver that accepts
	// dynamic updates, e.g. "10.0.0.53:53". The self-check asks it too.
	Nameserver string `json:"nameserver"`
	// TSIGKeyName is the name of the TSIG key updates are signed with; it
	// and TSIGSecretSecretRef are set together, or neither (unsigned
	// updates).
	TSIGKeyName string `json:"tsigKeyName,omitempty"`
	// TSIGAlgorithm is hmac-sha256 (the default), hmac-sha512 or hmac-sha1.
	TSIGAlgorithm string `json:"tsigAlgorithm,omitempty"`
	// TSIGSecretSecretRef selects the key of a Secret, in the Issuer's
	// namespace, whose value is the TSIG secret in base64 (as named.conf
	// and tsig-keygen write it).
	TSIGSecretSecretRef *SecretKeySelector `json:"tsigSecretSecretRef,omitempty"`
}

// SecretKeySelector selects one key of a Secret in the referring
// resource's namespace (for a ClusterIssuer, in the workers' cluster
// resource namespace), as cert-manager's SecretKeySelector.
type SecretKeySelector struct {
	// Name of the Secret.
	Name string `json:"name"`
	// Key of the entry in the Secret's data.
	Key string `json:"key"`
}

// IssuerStatus is the observed state of an Issuer.
type IssuerStatus struct {
	Conditions []Condition       `json:"conditions,omitempty"`
	ACME       *ACMEIssuerStatus `json:"acme,omitempty"`
}

// ACMEIssuerStatus records the registered account.
type ACMEIssuerStatus struct {
	URI                 string `json:"uri,omitempty"`
	LastRegisteredEmail string `json:"lastRegisteredEmail,omitempty"`
}

// Certificate is a desired certificate, as cert-manager's Certificate.
type Certificate struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     CertificateSpec   `json:"spec"`
	Status   CertificateStatus `json:"status,omitempty"`
}

// CertificateSpec is what the user asks for.
type CertificateSpec struct {
	// SecretName is the Secret the issued key and chain are written to.
	// Defaults to the Certificate's name.
	SecretName string `json:"secretName"`
	// CommonName is optional; it must be one of DNSNames.
	CommonName string    `json:"commonName,omitempty"`
	DNSNames   []string  `json:"dnsNames"`
	IssuerRef  IssuerRef `json:"issuerRef"`
	// PrivateKey selects the key algorithm, its encoding and when it is
	// rotated. Defaults to a new ECDSA P-256 key for every issuance,
	// PKCS1-encoded.
	PrivateKey *PrivateKeySpec `json:"privateKey,omitempty"`
	// Duration is the lifetime asked of the CA (the order's notAfter, when
	// the CA honours it). Unset asks for the CA's default, as cert-manager
	// does for ACME issuers.
	Duration *Duration `json:"duration,omitempty"`
	// RenewBefore renews this long before notAfter. Unset (and no
	// RenewBeforePercentage) renews when a third of the lifetime is left.
	// A value not shorter than the lifetime falls back to that default.
	RenewBefore *Duration `json:"renewBefore,omitempty"`
	// RenewBeforePercentage renews when this share (1-99) of the lifetime
	// is left; RenewBefore wins when both are set.
	RenewBeforePercentage *int `json:"renewBeforePercentage,omitempty"`
	// RevisionHistoryLimit is how many CertificateRequests (each with its
	// Order and issued chain) are kept, the current one included. Defaults
	// to RevisionHistoryLimitDefault (1), as cert-manager since v1.18.
	RevisionHistoryLimit *int `json:"revisionHistoryLimit,omitempty"`
}

// RevisionHistoryLimitDefault is how many CertificateRequests of a
// Certificate are kept when spec.revisionHistoryLimit is unset.
const RevisionHistoryLimitDefault = 1

// Private key rotation policies, as cert-manager's.
const (
	// RotationPolicyAlways generates a new private key for every issuance
	// (the default).
	RotationPolicyAlways = "Always"
	// RotationPolicyNever reuses the key in the Secret for renewals and
	// re-issuances, unless it no longer matches spec.privateKey.
	RotationPolicyNever = "Never"
)

// Private key encodings of tls.key, as cert-manager's.
const (
	// KeyEncodingPKCS1 writes "RSA PRIVATE KEY" / "EC PRIVATE KEY" PEM
	// blocks (the default, as cert-manager).
	KeyEncodingPKCS1 = "PKCS1"
	// KeyEncodingPKCS8 writes a "PRIVATE KEY" PEM block.
	KeyEncodingPKCS8 = "PKCS8"
)

// Key algorithms, as cert-manager spells them.
const (
	KeyAlgorithmECDSA = "ECDSA"
	KeyAlgorithmRSA   = "RSA"
)

// PrivateKeySpec selects a private key algorithm and size.
type PrivateKeySpec struct {
	// Algorithm is ECDSA or RSA. Defaults to ECDSA.
	Algorithm string `json:"algorithm,omitempty"`
	// Size is 256 or 384 for ECDSA (defaults to 256) and 2048, 3072 or 4096
	// for RSA (defaults to 2048).
	Size int `json:"size,omitempty"`
	// RotationPolicy is Always (a new key for every issuance, the default)
	// or Never (keep the key while it matches algorithm and size).
	RotationPolicy string `json:"rotationPolicy,omitempty"`
	// Encoding of tls.key: PKCS1 (the default) or PKCS8.
	Encoding string `json:"encoding,omitempty"`
}

// CertificateStatus is the observed state of a Certificate.
type CertificateStatus struct {
	// Conditions are Ready (the Secret holds a valid certificate for the
	// spec) and Issuing (a CertificateRequest is in progress), with
	// cert-manager's reasons.
	Conditions []Condition `json:"conditions,omitempty"`
	// Revision is the revision of the last issuance attempt; the
	// CertificateRequest of revision N is named <certificate>-<N>.
	Revision int `json:"revision,omitempty"`
	// NextPrivateKeySecretName holds the private key of the issuance in
	// progress until it is stored in the Secret.
	NextPrivateKeySecretName string `json:"nextPrivateKeySecretName,omitempty"`
	// NotBefore and NotAfter are those of the certificate in the Secret.
	NotBefore *time.Time `json:"notBefore,omitempty"`
	NotAfter  *time.Time `json:"notAfter,omitempty"`
	// RenewalTime is when the certificate in the Secret will be renewed:
	// from spec.renewBefore (a third of the lifetime by default), or a time
	// inside the CA's ARI window.
	RenewalTime *time.Time `json:"renewalTime,omitempty"`
	// LastFailureTime is when the last issuance attempt failed; the next
	// one waits for the back-off of FailedIssuanceAttempts.
	LastFailureTime *time.Time `json:"lastFailureTime,omitempty"`
	// FailedIssuanceAttempts counts consecutive failed issuances (reset by
	// a success or `acmeq renew`); the back-off is 1h, 2h, 4h ... 32h.
	FailedIssuanceAttempts int `json:"failedIssuanceAttempts,omitempty"`
	// SerialNumber of the certificate in the Secret, hexadecimal (acmeq).
	SerialNumber string `json:"serialNumber,omitempty"`
	// RenewalInfo is the CA's ACME Renewal Information (RFC 9773) for the
	// certificate in the Secret, when the CA offers it (acmeq).
	RenewalInfo *RenewalInfo `json:"renewalInfo,omitempty"`
	// Revocation records the revocation of the certificate in the Secret
	// (acmeq). A revoked certificate is not re-issued until `acmeq renew`.
	Revocation *Revocation `json:"revocation,omitempty"`
	// IssuedSpecHash fingerprints the spec fields the current certificate
	// was issued for; a change re-issues once (acmeq).
	IssuedSpecHash string `json:"issuedSpecHash,omitempty"`
	// RenewRequestedTime is the last `acmeq renew` handled (acmeq).
	RenewRequestedTime *time.Time `json:"renewRequestedTime,omitempty"`
}

// RenewalInfo is a CA's suggested renewal window for one certificate
// (RFC 9773 ACME Renewal Information).
type RenewalInfo struct {
	// CertID is the ARI identifier of the certificate:
	// base64url(authority key id) "." base64url(serial).
	CertID string `json:"certID"`
	// WindowStart and WindowEnd bound the suggested window.
	WindowStart time.Time `json:"windowStart"`
	WindowEnd   time.Time `json:"windowEnd"`
	// ExplanationURL is the CA's explanation, when it gives one.
	ExplanationURL string `json:"explanationURL,omitempty"`
	// NextCheck is when the window is fetched again (the CA's
	// Retry-After).
	NextCheck time.Time `json:"nextCheck"`
}

// Revocation records a revoked certificate.
type Revocation struct {
	// SerialNumber of the revoked certificate, hexadecimal.
	SerialNumber string `json:"serialNumber"`
	// Reason is the RFC 5280 reason name (keyCompromise, superseded, ...).
	Reason string `json:"reason"`
	// Time the CA accepted the revocation.
	Time time.Time `json:"time"`
}

// CertificateRequest is one CSR passed to an issuer.
type CertificateRequest struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta               `json:"metadata"`
	Spec     CertificateRequestSpec   `json:"spec"`
	Status   CertificateRequestStatus `json:"status,omitempty"`
}

// CertificateRequestSpec holds the PEM CSR.
type CertificateRequestSpec struct {
	Request   string    `json:"request"`
	IssuerRef IssuerRef `json:"issuerRef"`
	// Duration is the Certificate's spec.duration when requested.
	Duration *Duration `json:"duration,omitempty"`
	// Replaces is the ARI CertID of the certificate this request renews,
	// when the CA offers ARI (acmeq).
	Replaces string `json:"replaces,omitempty"`
}

// CertificateRequestStatus is the observed state of a CertificateRequest.
type CertificateRequestStatus struct {
	Conditions  []Condition `json:"conditions,omitempty"`
	FailureTime *time.Time  `json:"failureTime,omitempty"`
}

// Order is an ACME order, as cert-manager's acme.cert-manager.io Order.
type Order struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     OrderSpec   `json:"spec"`
	Status   OrderStatus `json:"status,omitempty"`
}

// OrderSpec is immutable once the Order exists.
type OrderSpec struct {
	Request    string    `json:"request"`
	IssuerRef  IssuerRef `json:"issuerRef"`
	CommonName string    `json:"commonName,omitempty"`
	DNSNames   []string  `json:"dnsNames"`
	// Duration asks the CA for this lifetime (the order's notAfter).
	Duration *Duration `json:"duration,omitempty"`
	// Replaces is the ARI CertID of the certificate this order renews
	// (RFC 9773 §5): CAs exempt such renewals from most rate limits.
	Replaces string `json:"replaces,omitempty"`
}

// OrderStatus is the observed state of an Order.
type OrderStatus struct {
	URL            string              `json:"url,omitempty"`
	FinalizeURL    string              `json:"finalizeURL,omitempty"`
	CertificateURL string              `json:"certificateURL,omitempty"`
	State          State               `json:"state,omitempty"`
	Reason         string              `json:"reason,omitempty"`
	Authorizations []ACMEAuthorization `json:"authorizations,omitempty"`
	FailureTime    *time.Time          `json:"failureTime,omitempty"`
	// Attempts counts polls of a CA still issuing, and transient errors,
	// in the current state; it sets the poll delay (acmeq).
	Attempts int `json:"attempts,omitempty"`
}

// ACMEAuthorization is one authorization of an order.
type ACMEAuthorization struct {
	URL          string          `json:"url"`
	Identifier   string          `json:"identifier"`
	Wildcard     bool            `json:"wildcard,omitempty"`
	InitialState State           `json:"initialState,omitempty"`
	Challenges   []ACMEChallenge `json:"challenges,omitempty"`
}

// ACMEChallenge is one challenge the CA offered for an authorization.
type ACMEChallenge struct {
	URL   string `json:"url"`
	Token string `json:"token"`
	Type  string `json:"type"`
}

// Challenge is one ACME challenge being solved, as cert-manager's Challenge.
type Challenge struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Spec     ChallengeSpec   `json:"spec"`
	Status   ChallengeStatus `json:"status,omitempty"`
}

// Challenge types as cert-manager spells them in spec.type.
const (
	ChallengeTypeHTTP01 = "HTTP-01"
	ChallengeTypeDNS01  = "DNS-01"
)

// ChallengeSpec is immutable once the Challenge exists.
type ChallengeSpec struct {
	URL              string     `json:"url"`
	AuthorizationURL string     `json:"authorizationURL"`
	DNSName          string     `json:"dnsName"`
	Wildcard         bool       `json:"wildcard,omitempty"`
	Type             string     `json:"type"`
	Token            string     `json:"token"`
	Key              string     `json:"key"`
	Solver           ACMESolver `json:"solver"`
	IssuerRef        IssuerRef  `json:"issuerRef"`
}

// ChallengeStatus is the observed state of a Challenge.
type ChallengeStatus struct {
	// Processing is true while the challenge is scheduled: it holds a
	// scheduler slot and its (dnsName, type) lock.
	Processing bool `json:"processing"`
	// Presented is true once the solver has presented the challenge.
	Presented bool   `json:"presented"`
	Reason    string `json:"reason,omitempty"`
	State     State  `json:"state,omitempty"`
	// Accepted is true once the challenge was accepted at the CA; acmeq
	// records it so a redelivered message does not accept twice.
	Accepted bool `json:"accepted,omitempty"`
	// ScheduledTime is when the challenge was last scheduled; the deadline
	// (ACMEQ_CHALLENGE_TIMEOUT) counts from it.
	ScheduledTime *time.Time `json:"scheduledTime,omitempty"`
	// Attempts counts the tries of the current step that did not finish
	// it (present errors, failed self-checks, polls of a CA still
	// validating); it starts at 0 in every step and sets the step's retry
	// delay (acmeq).
	Attempts int `json:"attempts,omitempty"`
}

// Secret holds private keys and certificates. Data is sealed with AEAD at
// rest; the store never writes it in plain text.
type Secret struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	// Data maps tls.key, tls.crt, ca.crt (or acme.key) to sealed bytes.
	Data map[string][]byte `json:"data"`
}

// Secret data keys.
const (
	SecretTLSKey  = "tls.key"
	SecretTLSCert = "tls.crt"
	SecretCACert  = "ca.crt"
	SecretACMEKey = "tls.key"
)

// GetMeta implements Object.
func (o *Issuer) GetMeta() *ObjectMeta { return &o.Metadata }

// GetMeta implements Object.
func (o *Certificate) GetMeta() *ObjectMeta { return &o.Metadata }

// GetMeta implements Object.
func (o *CertificateRequest) GetMeta() *ObjectMeta { return &o.Metadata }

// GetMeta implements Object.
func (o *Order) GetMeta() *ObjectMeta { return &o.Metadata }

// GetMeta implements Object.
func (o *Challenge) GetMeta() *ObjectMeta { return &o.Metadata }

// GetMeta implements Object.
func (o *Secret) GetMeta() *ObjectMeta { return &o.Metadata }

// GetKind implements Object: KindClusterIssuer for a ClusterIssuer (its
// TypeMeta.Kind), KindIssuer otherwise.
func (o *Issuer) GetKind() Kind {
	if o.Kind == KindClusterIssuer {
		return KindClusterIssuer
	}
	return KindIssuer
}

// NewIssuer returns an empty Issuer of kind k (KindIssuer or
// KindClusterIssuer), for reading from the store or decoding.
func NewIssuer(k Kind) *Issuer {
	if k == KindClusterIssuer {
		return &Issuer{TypeMeta: TypeMeta{Kind: KindClusterIssuer}}
	}
	return &Issuer{}
}

// GetKind implements Object.
func (o *Certificate) GetKind() Kind { return KindCertificate }

// GetKind implements Object.
func (o *CertificateRequest) GetKind() Kind { return KindCertificateRequest }

// GetKind implements Object.
func (o *Order) GetKind() Kind { return KindOrder }

// GetKind implements Object.
func (o *Challenge) GetKind() Kind { return KindChallenge }

// GetKind implements Object.
func (o *Secret) GetKind() Kind { return KindSecret }

// New returns an empty resource of kind k, for decoding.
func New(k Kind) (Object, bool) {
	switch k {
	case KindIssuer, KindClusterIssuer:
		return NewIssuer(k), true
	case KindCertificate:
		return &Certificate{}, true
	case KindCertificateRequest:
		return &CertificateRequest{}, true
	case KindOrder:
		return &Order{}, true
	case KindChallenge:
		return &Challenge{}, true
	case KindSecret:
		return &Secret{}, true
	}
	return nil, false
}
