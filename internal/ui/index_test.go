package ui

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/worker"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func tp(t time.Time) *time.Time { return &t }

func cond(typ string, s messages.ConditionStatus, reason, msg string) messages.Condition {
	return messages.Condition{Type: typ, Status: s, Reason: reason, Message: msg, LastTransitionTime: t0}
}

func TestClassify(t *testing.T) {
	ready := cond(messages.ConditionReady, messages.ConditionTrue, "Ready", "Certificate is up to date and has not expired")
	notReady := cond(messages.ConditionReady, messages.ConditionFalse, "DoesNotExist", "Issuing certificate as Secret does not exist")
	issuing := cond(worker.ConditionIssuing, messages.ConditionTrue, "Renewing", "Renewing certificate as renewal was scheduled")
	for _, tc := range []struct {
		name string
		st   messages.CertificateStatus
		want State
	}{
		{"new", messages.CertificateStatus{}, StateNotReady},
		{"ready", messages.CertificateStatus{Conditions: []messages.Condition{ready}, NotAfter: tp(t0)}, StateReady},
		{"first issuance", messages.CertificateStatus{Conditions: []messages.Condition{notReady, cond(worker.ConditionIssuing, messages.ConditionTrue, "DoesNotExist", "")}}, StateIssuing},
		{"renewing", messages.CertificateStatus{Conditions: []messages.Condition{ready, issuing}, NotAfter: tp(t0)}, StateRenewing},
		{"failed, waiting", messages.CertificateStatus{Conditions: []messages.Condition{notReady, cond(worker.ConditionIssuing, messages.ConditionFalse, "Failed", "x")}, FailedIssuanceAttempts: 2}, StateFailing},
		{"failed, retrying", messages.CertificateStatus{Conditions: []messages.Condition{ready, issuing}, NotAfter: tp(t0), FailedIssuanceAttempts: 1}, StateFailing},
		{"issuing false after success", messages.CertificateStatus{Conditions: []messages.Condition{ready, cond(worker.ConditionIssuing, messages.ConditionFalse, "x", "")}}, StateReady},
		{"expired", messages.CertificateStatus{Conditions: []messages.Condition{cond(messages.ConditionReady, messages.ConditionFalse, "Expired", "")}, NotAfter: tp(t0)}, StateNotReady},
	} {
		if got := classify(&tc.st); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// fleet builds n certificates in namespaces ns-0..ns-(n/1000): a tenth
// failing, a tenth renewing, a twentieth not yet issued; notAfter spread
// over 90 days.
func fleet(n int) []*messages.Certificate {
	out := make([]*messages.Certificate, n)
	for i := range out {
		c := &messages.Certificate{
			Metadata: messages.ObjectMeta{
				Name: fmt.Sprintf("site-%06d", i), Namespace: fmt.Sprintf("ns-%d", i/1000), CreationTimestamp: t0.Add(-time.Duration(i) * time.Minute),
				Labels: map[string]string{"tenant": fmt.Sprintf("t%d", i%50), "tier": []string{"edge", "origin"}[i%2]},
			},
			Spec: messages.CertificateSpec{
				SecretName: fmt.Sprintf("site-%06d", i), DNSNames: []string{fmt.Sprintf("site-%06d.customers.example.com", i), fmt.Sprintf("www.site-%06d.customers.example.com", i)},
				IssuerRef: messages.IssuerRef{Name: "letsencrypt", Kind: "Issuer", Group: "cert-manager.io"},
			},
		}
		st := &c.Status
		notAfter := t0.Add(time.Duration(i%90)*24*time.Hour + time.Hour)
		switch {
		case i%20 == 0:
			st.Conditions = []messages.Condition{cond(messages.ConditionReady, messages.ConditionFalse, "DoesNotExist", "Issuing certificate as Secret does not exist"),
				cond(worker.ConditionIssuing, messages.ConditionTrue, "DoesNotExist", "Issuing certificate as Secret does not exist")}
		case i%10 == 1:
			st.NotAfter, st.RenewalTime = tp(notAfter), tp(notAfter.Add(-30*24*time.Hour))
			st.FailedIssuanceAttempts, st.LastFailureTime = 1+i%5, tp(t0.Add(-time.Hour))
			st.Conditions = []messages.Condition{cond(messages.ConditionReady, messages.ConditionTrue, "Ready", "Certificate is up to date and has not expired"),
				cond(worker.ConditionIssuing, messages.ConditionFalse, "Failed", fmt.Sprintf("The certificate request has failed to complete and will be retried: order default/site-%06d-2-12345: urn:ietf:params:acme:error:rejectedIdentifier", i))}
		case i%10 == 2:
			st.NotAfter, st.RenewalTime = tp(notAfter), tp(notAfter.Add(-30*24*time.Hour))
			st.Conditions = []messages.Condition{cond(messages.ConditionReady, messages.ConditionTrue, "Ready", "Certificate is up to date and has not expired"),
				cond(worker.ConditionIssuing, messages.ConditionTrue, "Renewing", "Renewing certificate as renewal was scheduled at 2026-06-01T00:00:00Z")}
		default:
			st.NotAfter, st.RenewalTime = tp(notAfter), tp(notAfter.Add(-30*24*time.Hour))
			st.Conditions = []messages.Condition{cond(messages.ConditionReady, messages.ConditionTrue, "Ready", "Certificate is up to date and has not expired")}
		}
		st.Revision = 1 + i%3
		out[i] = c
	}
	return out
}

func indexOf(certs []*messages.Certificate) *index {
	ix := newIndex()
	for _, c := range certs {
		ix.put(messages.Key(c.Metadata.Namespace, c.Metadata.Name), c)
	}
	ix.setSynced(nil)
	return ix
}

func TestQuery(t *testing.T) {
	ix := indexOf(fleet(3000))
	all := ix.all()
	if len(all) != 3000 || all[0].name != "site-000000" || all[2999].name != "site-002999" {
		t.Fatalf("all: %d entries, first %s", len(all), all[0].name)
	}
	sel := func(s string) labels.Selector {
		l, err := labels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		name  string
		q     query
		total int
		first string
	}{
		{"all", query{}, 3000, "site-000000"},
		{"namespace", query{namespace: "ns-1"}, 1000, "site-001000"},
		{"failing", query{state: string(StateFailing)}, 300, "site-000001"},
		{"renewing", query{state: string(StateRenewing)}, 300, "site-000002"},
		{"issuing", query{state: string(StateIssuing)}, 150, "site-000000"},
		// notAfter is t0 + (i%90) days + 1h: within 14 days for i%90 < 14,
		// minus the certificates never issued (i%20 == 0).
		{"expiring", query{state: FilterExpiring}, expiringCount(3000, 14), "site-000001"},
		{"selector", query{selector: sel("tenant=t3,tier=origin")}, 60, "site-000003"},
		{"selector notin", query{selector: sel("tier notin (edge),tenant in (t1)")}, 60, "site-000001"},
		{"search dns", query{search: "www.site-002999"}, 1, "site-002999"},
		{"search name", query{search: "site-00001"}, 10, "site-000010"},
		{"combined", query{namespace: "ns-2", state: string(StateReady), selector: sel("tier=edge")}, 350, "site-002004"},
		{"expiry sort", query{sort: SortExpiry}, 3000, "site-000090"},
		{"page 2", query{page: 2, per: 7}, 3000, "site-000007"},
		{"past the end", query{page: 1000, per: 50}, 3000, ""},
	} {
		if tc.q.page == 0 {
			tc.q.page = 1
		}
		if tc.q.per == 0 {
			tc.q.per = 50
		}
		res := tc.q.run(all, t0, 14*24*time.Hour)
		if res.total != tc.total {
			t.Errorf("%s: %d matches, want %d", tc.name, res.total, tc.total)
		}
		first := ""
		if len(res.rows) > 0 {
			first = res.rows[0].name
		}
		if first != tc.first {
			t.Errorf("%s: first %q, want %q", tc.name, first, tc.first)
		}
		if len(res.rows) > tc.q.per {
			t.Errorf("%s: page of %d rows", tc.name, len(res.rows))
		}
		if sum := res.counts[StateReady] + res.counts[StateIssuing] + res.counts[StateRenewing] + res.counts[StateFailing] + res.counts[StateNotReady]; sum != res.all {
			t.Errorf("%s: counts %v add up to %d, not %d", tc.name, res.counts, sum, res.all)
		}
	}
	// Removing and replacing keep the order and the counts right.
	ix.remove(messages.Key("ns-0", "site-000000"))
	c := fleet(1)[0]
	c.Metadata.Name = "aaa"
	ix.put(messages.Key("ns-0", "aaa"), c)
	if all := ix.all(); len(all) != 3000 || all[0].name != "aaa" || all[1].name != "site-000001" {
		t.Fatalf("after a remove and an add: %d, %s, %s", len(all), all[0].name, all[1].name)
	}
}

func expiringCount(n, days int) int {
	c := 0
	for i := range n {
		if i%20 != 0 && i%90 < days {
			c++
		}
	}
	return c
}

// TestCertificateMetricsText: the per-certificate families are valid
// Prometheus text, with one ready series per condition status.
func TestCertificateMetricsText(t *testing.T) {
	certs := fleet(40)
	certs[3].Spec.IssuerRef.Name = `we"ird\issuer` // the text format's escapes
	ix := indexOf(certs)
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := writeCertificateMetrics(w, ix); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("not valid text format: %v\n%s", err, buf.String())
	}
	issued := 0
	for _, c := range certs {
		if c.Status.NotAfter != nil {
			issued++
		}
	}
	for name, want := range map[string]int{MetricExpiration: issued, MetricRenewal: issued, MetricReady: 3 * 40, MetricFailedAttempts: 40} {
		if got := len(mfs[name].GetMetric()); got != want {
			t.Errorf("%s: %d series, want %d", name, got, want)
		}
	}
	found := false
	for _, m := range mfs[MetricReady].GetMetric() {
		lv := map[string]string{}
		for _, l := range m.GetLabel() {
			lv[l.GetName()] = l.GetValue()
		}
		if lv["name"] == "site-000003" && lv["issuer_name"] == `we"ird\issuer` && lv["condition"] == "True" && m.GetGauge().GetValue() == 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("no ready series for the escaped issuer:\n%s", buf.String())
	}
	// An unsynced index writes none (no vanishing series at start-up).
	buf.Reset()
	w.Reset(&buf)
	if err := writeCertificateMetrics(w, newIndex()); err != nil || w.Flush() != nil || buf.Len() != 0 {
		t.Fatalf("unsynced index wrote %q (%v)", buf.String(), err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"zero", Config{}, ""},
		{"loopback v4", Config{Listen: "127.0.0.1:0"}, ""},
		{"loopback v6", Config{Listen: "[::1]:9404"}, ""},
		{"localhost", Config{Listen: "localhost:9404"}, ""},
		{"all interfaces", Config{Listen: ":9404"}, "ACMEQ_UI_TOKEN"},
		{"unspecified", Config{Listen: "0.0.0.0:9404"}, "not a loopback address"},
		{"host name", Config{Listen: "ui.internal:9404"}, "not a loopback address"},
		{"beyond loopback with token", Config{Listen: ":9404", Token: "0123456789abcdef"}, ""},
		{"beyond loopback with basic", Config{Listen: ":9404", BasicAuth: "ops:pw"}, ""},
		{"short token", Config{Token: "short"}, "at least 16"},
		{"basic without password", Config{BasicAuth: "ops:"}, "user:password"},
		{"basic without colon", Config{BasicAuth: "ops"}, "user:password"},
		{"no port", Config{Listen: "127.0.0.1"}, "--listen"},
		{"tls half", Config{TLSCertFile: "c.pem"}, "--tls-key"},
		{"page size", Config{PageSize: PageSizeMax + 1}, "PageSize"},
		{"negative expiring", Config{ExpiringWithin: -time.Hour}, "ExpiringWithin"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	if err := (Config{Listen: ":1"}).Validate(); !errors.Is(err, ErrCredentialsRequired) {
		t.Errorf("beyond loopback: %v, want ErrCredentialsRequired", err)
	}
}
