package worker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/messages"
)

func dur(d time.Duration) *messages.Duration { return &messages.Duration{Duration: d} }
func intp(i int) *int                        { return &i }
func timep(t time.Time) *time.Time           { return &t }

func TestRenewalTime(t *testing.T) {
	t.Parallel()
	nb := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	na := nb.Add(90 * 24 * time.Hour)
	tests := []struct {
		name string
		spec messages.CertificateSpec
		want time.Time
	}{
		{"default: a third of the lifetime left", messages.CertificateSpec{}, na.Add(-30 * 24 * time.Hour)},
		{"renewBefore", messages.CertificateSpec{RenewBefore: dur(10 * 24 * time.Hour)}, na.Add(-10 * 24 * time.Hour)},
		{"renewBefore not shorter than the lifetime falls back", messages.CertificateSpec{RenewBefore: dur(90 * 24 * time.Hour)}, na.Add(-30 * 24 * time.Hour)},
		{"renewBeforePercentage", messages.CertificateSpec{RenewBeforePercentage: intp(10)}, na.Add(-9 * 24 * time.Hour)},
		{"renewBefore wins over the percentage", messages.CertificateSpec{RenewBefore: dur(24 * time.Hour), RenewBeforePercentage: intp(50)}, na.Add(-24 * time.Hour)},
		{"percentage out of range falls back", messages.CertificateSpec{RenewBeforePercentage: intp(100)}, na.Add(-30 * 24 * time.Hour)},
	}
	for _, tt := range tests {
		if got := RenewalTime(nb, na, tt.spec); !got.Equal(tt.want) {
			t.Errorf("%s: RenewalTime = %s, want %s", tt.name, got, tt.want)
		}
	}
	// A 40 s certificate (Pebble's short profile) renews 13 s before its end,
	// truncated to the second.
	short := RenewalTime(nb, nb.Add(39*time.Second), messages.CertificateSpec{})
	if want := nb.Add(26 * time.Second); !short.Equal(want) {
		t.Errorf("short-lived RenewalTime = %s, want %s", short, want)
	}
}

func TestFailureBackoff(t *testing.T) {
	t.Parallel()
	want := []time.Duration{0, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 16 * time.Hour, 32 * time.Hour, 32 * time.Hour, 32 * time.Hour}
	for n, w := range want {
		if got := FailureBackoff(n, time.Hour, 32*time.Hour); got != w {
			t.Errorf("FailureBackoff(%d) = %s, want %s", n, got, w)
		}
	}
}

func TestARIRenewalTime(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(48 * time.Hour)
	seen := map[time.Time]bool{}
	for _, serial := range []string{"1", "2", "3", "4", "5", "6", "7", "8"} {
		got := ARIRenewalTime(start, end, serial)
		if got.Before(start) || !got.Before(end) {
			t.Errorf("ARIRenewalTime(%s) = %s, outside [%s, %s)", serial, got, start, end)
		}
		if again := ARIRenewalTime(start, end, serial); !again.Equal(got) {
			t.Errorf("ARIRenewalTime(%s) is not deterministic", serial)
		}
		seen[got] = true
	}
	if len(seen) < 6 {
		t.Errorf("8 serials got %d distinct times: not spread over the window", len(seen))
	}
	if got := ARIRenewalTime(end, start, "x"); !got.Equal(end) {
		t.Errorf("empty window: %s, want its start", got)
	}
}

// The trigger policy, as a table: cert-manager's reasons and messages, the
// back-off and what skips it.
func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	spec := messages.CertificateSpec{SecretName: "shop", DNSNames: []string{"shop.example.com"}, IssuerRef: messages.IssuerRef{Name: "le"}}
	hash := specHash(spec)
	issued := func(mod func(*messages.CertificateStatus)) *messages.Certificate {
		c := &messages.Certificate{Spec: spec, Status: messages.CertificateStatus{
			Revision: 1, NotBefore: timep(now.Add(-60 * 24 * time.Hour)), NotAfter: timep(now.Add(30 * 24 * time.Hour)),
			RenewalTime: timep(now.Add(24 * time.Hour)), IssuedSpecHash: hash,
		}}
		if mod != nil {
			mod(&c.Status)
		}
		return c
	}
	backoff := func(n int) time.Duration { return FailureBackoff(n, time.Hour, 32*time.Hour) }
	facts := certFacts{now: now, secretExists: true, backoff: backoff}
	tests := []struct {
		name      string
		cert      *messages.Certificate
		facts     certFacts
		reason    string // issue with this reason; "" no issuance
		wait      time.Duration
		blocked   string
		wantInMsg string
	}{
		{"never issued", &messages.Certificate{Spec: spec}, certFacts{now: now, backoff: backoff}, reasonDoesNotExist, 0, "", "Issuing certificate as Secret does not exist"},
		{"up to date", issued(nil), facts, "", 0, "", ""},
		{"secret deleted", issued(nil), certFacts{now: now, backoff: backoff}, reasonDoesNotExist, 0, "", "Secret does not exist"},
		{"renewal due", issued(func(s *messages.CertificateStatus) { s.RenewalTime = timep(now.Add(-time.Minute)) }), facts, reasonRenewing, 0, "", "Renewing certificate as renewal was scheduled at 2026-12-03T11:59:00Z"},
		{"renewal due within the clock skew", issued(func(s *messages.CertificateStatus) { s.RenewalTime = timep(now.Add(50 * time.Millisecond)) }), facts, reasonRenewing, 0, "", "Renewing"},
		{"expired", issued(func(s *messages.CertificateStatus) { s.NotAfter = timep(now.Add(-time.Hour)) }), facts, reasonExpired, 0, "", "Certificate expired on Thu, 03 Dec 2026 11:00:00 UTC"},
		{"spec changed", issued(func(s *messages.CertificateStatus) { s.IssuedSpecHash = "other" }), facts, reasonRequestChanged, 0, "", "have changed"},
		{"first failure backs off 1h", issued(func(s *messages.CertificateStatus) {
			s.RenewalTime = timep(now.Add(-time.Hour))
			s.FailedIssuanceAttempts, s.LastFailureTime = 1, timep(now.Add(-10*time.Minute))
		}), certFacts{now: now, secretExists: true, backoff: backoff, failedHash: hash}, "", 50 * time.Minute, "", ""},
		{"third failure backs off 4h", issued(func(s *messages.CertificateStatus) {
			s.RenewalTime = timep(now.Add(-time.Hour))
			s.FailedIssuanceAttempts, s.LastFailureTime = 3, timep(now.Add(-time.Hour))
		}), certFacts{now: now, secretExists: true, backoff: backoff, failedHash: hash}, "", 3 * time.Hour, "", ""},
		{"back-off over: renew", issued(func(s *messages.CertificateStatus) {
			s.RenewalTime = timep(now.Add(-3 * time.Hour))
			s.FailedIssuanceAttempts, s.LastFailureTime = 1, timep(now.Add(-2*time.Hour))
		}), certFacts{now: now, secretExists: true, backoff: backoff, failedHash: hash}, reasonRenewing, 0, "", "Renewing"},
		{"spec changed since the failure skips the back-off", issued(func(s *messages.CertificateStatus) {
			s.IssuedSpecHash = "old"
			s.FailedIssuanceAttempts, s.LastFailureTime = 5, timep(now.Add(-time.Minute))
		}), certFacts{now: now, secretExists: true, backoff: backoff, failedHash: "older"}, reasonRequestChanged, 0, "", ""},
		{"manual renewal skips everything", issued(func(s *messages.CertificateStatus) {
			s.FailedIssuanceAttempts, s.LastFailureTime = 5, timep(now.Add(-time.Minute))
			s.Revocation = &messages.Revocation{SerialNumber: "ab", Reason: "keyCompromise", Time: now}
			s.Conditions = []messages.Condition{{Type: ConditionIssuing, Status: messages.ConditionTrue, Reason: reasonManuallyTriggered, Message: "Certificate re-issuance manually triggered"}}
		}), facts, reasonManuallyTriggered, 0, "", "manually triggered"},
		{"revoked waits for a manual renewal", issued(func(s *messages.CertificateStatus) {
			s.RenewalTime = timep(now.Add(-time.Hour))
			s.Revocation = &messages.Revocation{SerialNumber: "ab", Reason: "keyCompromise", Time: now}
		}), facts, "", 0, reasonRevoked, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(tt.cert, tt.facts)
			switch {
			case tt.reason != "":
				if d.issue == nil || d.issue.reason != tt.reason || !strings.Contains(d.issue.message, tt.wantInMsg) {
					t.Fatalf("decide = %+v (issue %+v), want issue %s %q", d, d.issue, tt.reason, tt.wantInMsg)
				}
			case tt.wait > 0:
				if d.issue != nil || !d.waitUntil.Equal(now.Add(tt.wait)) {
					t.Fatalf("decide = %+v (issue %+v), want wait until %s", d, d.issue, now.Add(tt.wait))
				}
			case tt.blocked != "":
				if d.blocked == nil || d.blocked.reason != tt.blocked {
					t.Fatalf("decide = %+v, want blocked %s", d, tt.blocked)
				}
			default:
				if d.issue != nil || d.blocked != nil || !d.waitUntil.IsZero() {
					t.Fatalf("decide = %+v (issue %+v), want nothing", d, d.issue)
				}
			}
		})
	}
}

// Each field of the spec that the certificate is issued for changes the
// hash (one re-issue per change); what does not shape the certificate
// does not.
func TestSpecHash(t *testing.T) {
	t.Parallel()
	base := func() messages.CertificateSpec {
		return messages.CertificateSpec{SecretName: "s", DNSNames: []string{"a.test", "b.test"}, IssuerRef: messages.IssuerRef{Name: "le"}}
	}
	h := specHash(base())
	changes := map[string]func(*messages.CertificateSpec){
		"dnsNames":    func(s *messages.CertificateSpec) { s.DNSNames = append(s.DNSNames, "c.test") },
		"commonName":  func(s *messages.CertificateSpec) { s.CommonName = "a.test" },
		"algorithm":   func(s *messages.CertificateSpec) { s.PrivateKey = &messages.PrivateKeySpec{Algorithm: "RSA"} },
		"size":        func(s *messages.CertificateSpec) { s.PrivateKey = &messages.PrivateKeySpec{Size: 384} },
		"encoding":    func(s *messages.CertificateSpec) { s.PrivateKey = &messages.PrivateKeySpec{Encoding: "PKCS8"} },
		"issuerRef":   func(s *messages.CertificateSpec) { s.IssuerRef.Name = "other" },
		"secretName":  func(s *messages.CertificateSpec) { s.SecretName = "t" },
		"duration":    func(s *messages.CertificateSpec) { s.Duration = dur(time.Hour) },
		"issuer kind": func(s *messages.CertificateSpec) { s.IssuerRef.Kind = "ClusterIssuer" },
	}
	for field, change := range changes {
		s := base()
		change(&s)
		if specHash(s) == h {
			t.Errorf("changing %s keeps the spec hash: no re-issue", field)
		}
	}
	same := map[string]func(*messages.CertificateSpec){
		"name order": func(s *messages.CertificateSpec) { s.DNSNames = []string{"b.test", "a.test"} },
		"defaults spelled": func(s *messages.CertificateSpec) {
			s.PrivateKey = &messages.PrivateKeySpec{Algorithm: "ECDSA", Size: 256, Encoding: "PKCS1"}
		},
		"rotationPolicy":       func(s *messages.CertificateSpec) { s.PrivateKey = &messages.PrivateKeySpec{RotationPolicy: "Never"} },
		"renewBefore":          func(s *messages.CertificateSpec) { s.RenewBefore = dur(time.Hour) },
		"revisionHistoryLimit": func(s *messages.CertificateSpec) { s.RevisionHistoryLimit = intp(3) },
	}
	for field, change := range same {
		s := base()
		change(&s)
		if specHash(s) != h {
			t.Errorf("changing %s changes the spec hash: a needless re-issue", field)
		}
	}
}

// A request no longer matching the spec names the fields, as cert-manager's
// RequestChanged message does.
func TestRequestMismatch(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spec := messages.CertificateSpec{DNSNames: []string{"a.test"}, IssuerRef: messages.IssuerRef{Name: "le"}}
	csr, err := makeCSR(key, spec)
	if err != nil {
		t.Fatal(err)
	}
	cr := &messages.CertificateRequest{Spec: messages.CertificateRequestSpec{Request: string(csr), IssuerRef: spec.IssuerRef}}
	if got := requestMismatch(cr, spec); len(got) != 0 {
		t.Errorf("matching request: %v", got)
	}
	changed := spec
	changed.DNSNames = []string{"a.test", "b.test"}
	changed.PrivateKey = &messages.PrivateKeySpec{Algorithm: "RSA"}
	changed.Duration = dur(time.Hour)
	got := requestMismatch(cr, changed)
	want := []string{"spec.dnsNames", "spec.privateKey.algorithm", "spec.duration"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("requestMismatch = %v, want %v", got, want)
	}
	c := &messages.Certificate{Spec: changed}
	if tr := specChangeTrigger(c, cr); tr.reason != reasonRequestChanged || tr.message != "Fields on existing CertificateRequest resource not up to date: [spec.dnsNames spec.privateKey.algorithm spec.duration]" {
		t.Errorf("specChangeTrigger = %+v", tr)
	}
	other := spec
	other.IssuerRef.Name = "zerossl"
	if tr := specChangeTrigger(&messages.Certificate{Spec: other}, cr); tr.reason != reasonIncorrectIssuer || tr.message != `Issuing certificate as Secret was previously issued by "Issuer.cert-manager.io/le"` {
		t.Errorf("specChangeTrigger (issuer) = %+v", tr)
	}
}

func TestNextWake(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	st := messages.CertificateStatus{NotAfter: timep(now.Add(10 * time.Hour)), RenewalTime: timep(now.Add(5 * time.Hour))}
	if got, ok := nextWake(st); !ok || !got.Equal(now.Add(5*time.Hour)) {
		t.Errorf("nextWake = %s, want the renewal time", got)
	}
	st.RenewalInfo = &messages.RenewalInfo{NextCheck: now.Add(time.Hour)}
	if got, _ := nextWake(st); !got.Equal(now.Add(time.Hour)) {
		t.Errorf("nextWake = %s, want the ARI check", got)
	}
	if _, ok := nextWake(messages.CertificateStatus{}); ok {
		t.Errorf("nextWake of a never issued certificate")
	}
}
