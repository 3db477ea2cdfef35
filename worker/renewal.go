package worker

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// The renewal policy, as pure functions of a Certificate and the time:
// when to renew, how long to back off after failures, and whether (and
// why) to issue now. certificate.go applies them.

// Reasons of the Issuing and Ready conditions, as cert-manager's trigger
// and readiness policies word them.
const (
	reasonDoesNotExist      = messages.ReasonDoesNotExist
	reasonRequestChanged    = "RequestChanged"
	reasonIncorrectIssuer   = "IncorrectIssuer"
	reasonRenewing          = "Renewing"
	reasonExpired           = "Expired"
	reasonManuallyTriggered = "ManuallyTriggered"
	reasonRevoked           = "Revoked"
	reasonIncorrectCert     = "IncorrectCertificate"
)

// ConditionIssuing is set while a CertificateRequest is in progress (True)
// or after one failed (False, reason Failed), as cert-manager.
const ConditionIssuing = "Issuing"

// clockSkew is how early a scheduled time counts as due: the server fires
// schedules by its clock (rounded up to the second, see schedule), the
// worker decides by its own.
const clockSkew = 100 * time.Millisecond

// minTimerDelay is the shortest time ahead a wake-up is scheduled, so a
// worker whose clock lags the server's cannot make a schedule fire in a
// tight loop.
const minTimerDelay = time.Second

// due reports whether t has come, allowing for clock skew.
func due(t, now time.Time) bool { return !t.After(now.Add(clockSkew)) }

// RenewalTime is when a certificate valid from notBefore to notAfter is
// renewed: renewBefore ahead of notAfter, or renewBeforePercentage of the
// lifetime ahead of it; by default when a third of the lifetime is left. A
// renewBefore not shorter than the lifetime falls back to the default, as
// cert-manager does. The result is truncated to the second.
func RenewalTime(notBefore, notAfter time.Time, spec messages.CertificateSpec) time.Time {
	lifetime := notAfter.Sub(notBefore)
	before := lifetime / 3
	switch {
	case spec.RenewBefore != nil && spec.RenewBefore.Duration > 0 && spec.RenewBefore.Duration < lifetime:
		before = spec.RenewBefore.Duration
	case spec.RenewBefore == nil && spec.RenewBeforePercentage != nil && *spec.RenewBeforePercentage > 0 && *spec.RenewBeforePercentage < 100:
		before = lifetime * time.Duration(*spec.RenewBeforePercentage) / 100
	}
	return notAfter.Add(-before).Truncate(time.Second)
}

// ARIRenewalTime picks the renewal time inside a CA's suggested window
// (RFC 9773 §4.2: a uniformly random point of the window, so a fleet does
// not renew all at once). The point is derived from the certificate's
// serial, so every worker and every redelivery picks the same one.
func ARIRenewalTime(start, end time.Time, serial string) time.Time {
	span := end.Sub(start)
	if span <= 0 {
		return start.Truncate(time.Second)
	}
	sum := sha256.Sum256([]byte(serial))
	frac := float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53)
	return start.Add(time.Duration(frac * float64(span))).Truncate(time.Second)
}

// FailureBackoff is the wait after the n-th consecutive failed issuance:
// base, doubling with each failure, capped at limit (cert-manager: 1h, 2h,
// 4h ... 32h).
func FailureBackoff(n int, base, limit time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return doubling(base, limit, uint64(n))
}

// specHash fingerprints the spec fields a certificate is issued for; a
// change of any of them re-issues, once.
func specHash(spec messages.CertificateSpec) string {
	names := slices.Clone(spec.DNSNames)
	slices.Sort(names)
	alg, size := keySpec(spec.PrivateKey)
	enc := messages.KeyEncodingPKCS1
	if spec.PrivateKey != nil && spec.PrivateKey.Encoding != "" {
		enc = spec.PrivateKey.Encoding
	}
	var dur string
	if spec.Duration != nil {
		dur = spec.Duration.String()
	}
	b, _ := json.Marshal([]any{names, spec.CommonName, alg, size, enc, issuerRefString(spec.IssuerRef), spec.SecretName, dur})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// issuerRefString is cert-manager's spelling of an issuerRef:
// Issuer.cert-manager.io/name.
func issuerRefString(ref messages.IssuerRef) string {
	kind, group := ref.Kind, ref.Group
	if kind == "" {
		kind = string(messages.KindIssuer)
	}
	if group == "" {
		group = "cert-manager.io"
	}
	return kind + "." + group + "/" + ref.Name
}

// trigger is why a Certificate is issued now: the Issuing condition's
// reason and message (and the Ready condition's, when the Secret does not
// serve the spec any more).
type trigger struct {
	reason, message string
	// notReady: the Secret does not hold a usable certificate for the
	// spec, so Ready is False while issuing (a renewal keeps Ready True).
	notReady bool
	// renewal: the certificate in the Secret is renewed as it is, so the
	// order names it in "replaces" (ARI).
	renewal bool
}

// certFacts is what the trigger policy looks at besides the Certificate.
type certFacts struct {
	now          time.Time
	secretExists bool
	// issuedRequest is the CertificateRequest the current certificate was
	// issued from (nil when pruned or never issued).
	issuedRequest *messages.CertificateRequest
	// failedHash is the spec hash of the last failed request, "" if none.
	failedHash string
	backoff    func(n int) time.Duration
}

// decision is the trigger policy's verdict.
type decision struct {
	// issue is set when a new CertificateRequest is due now.
	issue *trigger
	// waitUntil is set when an issuance is wanted but backed off.
	waitUntil time.Time
	// blocked says why nothing is issued although it should be (revoked).
	blocked *trigger
}

// decide is the trigger policy, in cert-manager's order: a manual
// renewal; a revoked certificate waits for one; a missing Secret; a spec
// change (which skips the failure back-off, as cert-manager); then, after
// any back-off, expiry and the renewal time.
func decide(c *messages.Certificate, f certFacts) decision {
	st := &c.Status
	if cond := messages.GetCondition(st.Conditions, ConditionIssuing); cond != nil && cond.Status == messages.ConditionTrue && cond.Reason == reasonManuallyTriggered {
		return decision{issue: &trigger{reason: reasonManuallyTriggered, message: cond.Message, renewal: st.NotAfter != nil}}
	}
	if rv := st.Revocation; rv != nil {
		return decision{blocked: &trigger{reason: reasonRevoked, notReady: true,
			message: fmt.Sprintf("Certificate %s was revoked (%s) at %s; run `acmeq renew` to issue a new one", rv.SerialNumber, rv.Reason, rv.Time.Format(time.RFC3339))}}
	}
	hash := specHash(c.Spec)
	specChanged := st.IssuedSpecHash != "" && st.IssuedSpecHash != hash
	if st.FailedIssuanceAttempts > 0 && st.LastFailureTime != nil && f.failedHash == hash {
		if until := st.LastFailureTime.Add(f.backoff(st.FailedIssuanceAttempts)); !due(until, f.now) {
			return decision{waitUntil: until}
		}
	}
	if st.NotAfter == nil || !f.secretExists {
		return decision{issue: &trigger{reason: reasonDoesNotExist, message: "Issuing certificate as Secret does not exist", notReady: true}}
	}
	if specChanged {
		return decision{issue: specChangeTrigger(c, f.issuedRequest)}
	}
	if due(*st.NotAfter, f.now) {
		return decision{issue: &trigger{reason: reasonExpired, notReady: true, renewal: true,
			message: fmt.Sprintf("Certificate expired on %s", st.NotAfter.Format(time.RFC1123))}}
	}
	if st.RenewalTime != nil && due(*st.RenewalTime, f.now) {
		return decision{issue: &trigger{reason: reasonRenewing, renewal: true,
			message: fmt.Sprintf("Renewing certificate as renewal was scheduled at %s", st.RenewalTime.Format(time.RFC3339))}}
	}
	return decision{}
}

// specChangeTrigger words a spec change as cert-manager does: a different
// issuer, or the fields of the request that no longer match.
func specChangeTrigger(c *messages.Certificate, issued *messages.CertificateRequest) *trigger {
	if issued == nil {
		return &trigger{reason: reasonRequestChanged, notReady: true, message: "Fields on the Certificate resource have changed since the certificate was issued"}
	}
	if issuerRefString(issued.Spec.IssuerRef) != issuerRefString(c.Spec.IssuerRef) {
		return &trigger{reason: reasonIncorrectIssuer, notReady: true,
			message: fmt.Sprintf("Issuing certificate as Secret was previously issued by %q", issuerRefString(issued.Spec.IssuerRef))}
	}
	fields := requestMismatch(issued, c.Spec)
	if len(fields) == 0 {
		// Not visible in the request: how the key is written.
		fields = []string{"spec.privateKey.encoding"}
	}
	return &trigger{reason: reasonRequestChanged, notReady: true,
		message: fmt.Sprintf("Fields on existing CertificateRequest resource not up to date: [%s]", strings.Join(fields, " "))}
}

// requestMismatch lists the spec fields a request (its CSR and spec) does
// not match.
func requestMismatch(cr *messages.CertificateRequest, spec messages.CertificateSpec) []string {
	csr, err := parseCSR(cr.Spec.Request)
	if err != nil {
		return []string{"spec.request"}
	}
	var out []string
	a, b := slices.Clone(csr.DNSNames), slices.Clone(spec.DNSNames)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		out = append(out, "spec.dnsNames")
	}
	if csr.Subject.CommonName != spec.CommonName {
		out = append(out, "spec.commonName")
	}
	out = append(out, keyMismatch(csr.PublicKey, spec.PrivateKey)...)
	var had, want time.Duration
	if cr.Spec.Duration != nil {
		had = cr.Spec.Duration.Duration
	}
	if spec.Duration != nil {
		want = spec.Duration.Duration
	}
	if had != want {
		out = append(out, "spec.duration")
	}
	if cr.Spec.IssuerRef.Name != spec.IssuerRef.Name {
		out = append(out, "spec.issuerRef")
	}
	return out
}

// nextWake is when a Certificate needs looking at again: its renewal time,
// its expiry, or the next check of its ARI window, whichever comes first.
func nextWake(st messages.CertificateStatus) (time.Time, bool) {
	var t time.Time
	for _, c := range []*time.Time{st.RenewalTime, st.NotAfter} {
		if c != nil && (t.IsZero() || c.Before(t)) {
			t = *c
		}
	}
	if ri := st.RenewalInfo; ri != nil && !ri.NextCheck.IsZero() && (t.IsZero() || ri.NextCheck.Before(t)) {
		t = ri.NextCheck
	}
	return t, !t.IsZero()
}
