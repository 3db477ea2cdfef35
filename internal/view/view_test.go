package view

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/messages"
)

// TestSince: ages are kubectl's (apimachinery's HumanDuration).
func TestSince(t *testing.T) {
	now := time.Date(2026, 5, 15, 22, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-2 * time.Second, "<invalid>"},
		{-1500 * time.Millisecond, "0s"},
		{-time.Second, "0s"},
		{0, "0s"},
		{999 * time.Millisecond, "0s"},
		{22 * time.Second, "22s"},
		{105 * time.Second, "105s"},
		{119 * time.Second, "119s"},
		{2 * time.Minute, "2m"},
		{2*time.Minute + time.Second, "2m1s"},
		{8*time.Minute + 20*time.Second, "8m20s"},
		{9*time.Minute + 59*time.Second, "9m59s"},
		{10 * time.Minute, "10m"},
		{10*time.Minute + 59*time.Second, "10m"},
		{72 * time.Minute, "72m"},
		{179 * time.Minute, "179m"},
		{3 * time.Hour, "3h"},
		{3*time.Hour + 5*time.Minute, "3h5m"},
		{7*time.Hour + 59*time.Minute, "7h59m"},
		{8 * time.Hour, "8h"},
		{8*time.Hour + 30*time.Minute, "8h"},
		{47 * time.Hour, "47h"},
		{48 * time.Hour, "2d"},
		{51 * time.Hour, "2d3h"},
		{8*24*time.Hour - time.Hour, "7d23h"},
		{8 * 24 * time.Hour, "8d"},
		{300 * 24 * time.Hour, "300d"},
		{2*365*24*time.Hour - time.Hour, "729d"},
		{2 * 365 * 24 * time.Hour, "2y"},
		{(2*365 + 10) * 24 * time.Hour, "2y10d"},
		{8 * 365 * 24 * time.Hour, "8y"},
		{20 * 365 * 24 * time.Hour, "20y"},
	} {
		if got := Since(now.Add(-tc.d), now); got != tc.want {
			t.Errorf("Since(now - %v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	if got := Since(time.Time{}, time.Now()); got != "<unknown>" {
		t.Errorf("Since(zero) = %q, want <unknown>", got)
	}
}

func TestLabel(t *testing.T) {
	for in, want := range map[string]string{
		"dnsNames":                 "Dns Names",
		"dnsName":                  "Dns Name",
		"authorizationURL":         "Authorization URL",
		"finalizeURL":              "Finalize URL",
		"certificateURL":           "Certificate URL",
		"url":                      "URL",
		"uri":                      "Uri",
		"apiVersion":               "API Version",
		"issuerRef":                "Issuer Ref",
		"creationTimestamp":        "Creation Timestamp",
		"lastTransitionTime":       "Last Transition Time",
		"privateKeySecretRef":      "Private Key Secret Ref",
		"nextPrivateKeySecretName": "Next Private Key Secret Name",
		"skipTLSVerify":            "Skip TLS Verify",
		"caBundle":                 "Ca Bundle",
		"state":                    "State",
		"kind":                     "Kind",
		"uid":                      "UID",
		"http01":                   "http01", // not only letters: as is, like kubectl
		"rfc2136":                  "rfc2136",
		"acmeq.io/dns-names":       "acmeq.io/dns-names",
		"":                         "",
	} {
		if got := Label(in); got != want {
			t.Errorf("Label(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAggregateEvents(t *testing.T) {
	now := time.Date(2026, 5, 15, 21, 47, 0, 0, time.UTC)
	iss := messages.ObjectReference{Kind: messages.KindIssuer, Namespace: "default", Name: "letsencrypt-http"}
	msg := "Failed to update ACME account:400 urn:ietf:params:acme:error:invalidEmail: Unable to update account :: invalid contact domain. Contact emails @example.com are forbidden"
	ev := func(obj messages.ObjectReference, typ messages.EventType, reason, message string, ago time.Duration) messages.Event {
		ts := now.Add(-ago)
		return messages.Event{Type: typ, Reason: reason, Message: message, InvolvedObject: obj, FirstTimestamp: ts, LastTimestamp: ts, Count: 1}
	}
	other := messages.ObjectReference{Kind: messages.KindIssuer, Namespace: "default", Name: "other"}
	in := []messages.Event{
		ev(iss, messages.EventWarning, "ErrUpdateACMEAccount", msg, 106*time.Second),
		ev(iss, messages.EventNormal, "Checking", "checking", 104*time.Second),
		ev(iss, messages.EventWarning, "ErrUpdateACMEAccount", msg, 103*time.Second),
		ev(other, messages.EventWarning, "ErrUpdateACMEAccount", msg, 102*time.Second), // another object
		ev(iss, messages.EventNormal, "ErrUpdateACMEAccount", msg, 102*time.Second),    // another type
		ev(iss, messages.EventWarning, "ErrUpdateACMEAccount", msg, 101*time.Second),
	}
	got := AggregateEvents(in)
	if len(got) != 4 {
		t.Fatalf("AggregateEvents: %d events, want 4: %+v", len(got), got)
	}
	a := got[0]
	if a.Count != 3 || !a.FirstTimestamp.Equal(now.Add(-106*time.Second)) || !a.LastTimestamp.Equal(now.Add(-101*time.Second)) {
		t.Errorf("aggregated = count %d, first %v, last %v", a.Count, a.FirstTimestamp, a.LastTimestamp)
	}
	if age := EventAge(a, now); age != "101s (x3 over 106s)" {
		t.Errorf("EventAge = %q, want %q", age, "101s (x3 over 106s)")
	}
	for i, want := range []string{"ErrUpdateACMEAccount", "Checking", "ErrUpdateACMEAccount", "ErrUpdateACMEAccount"} {
		if got[i].Reason != want {
			t.Errorf("event %d reason = %q, want %q (ordered by first timestamp)", i, got[i].Reason, want)
		}
	}
	if got[1].Count != 1 || EventAge(got[1], now) != "104s" {
		t.Errorf("single event: count %d age %q", got[1].Count, EventAge(got[1], now))
	}

	// The reference's Issuer describe, events part.
	issuer := &messages.Issuer{Metadata: messages.ObjectMeta{Name: "letsencrypt-http", Namespace: "default"}}
	var evs []messages.Event
	for _, e := range in {
		if e.InvolvedObject == iss && e.Type == messages.EventWarning {
			e.Source = "cert-manager"
			evs = append(evs, e)
		}
	}
	out := Describe(issuer, evs, now)
	want := strings.Join([]string{
		"Events:",
		"  Type     Reason                Age                  From          Message",
		"  ----     ------                ----                 ----          -------",
		"  Warning  ErrUpdateACMEAccount  101s (x3 over 106s)  cert-manager  " + msg,
		"",
	}, "\n")
	if !strings.HasSuffix(out, want) {
		t.Errorf("describe events:\n%s\nwant suffix:\n%s", out, want)
	}
}

func TestTableReference(t *testing.T) {
	now := time.Date(2026, 5, 15, 22, 0, 0, 0, time.UTC)
	ch := func(name, domain, reason string, state messages.State, age time.Duration) messages.Object {
		return &messages.Challenge{
			Metadata: messages.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: now.Add(-age)},
			Spec:     messages.ChallengeSpec{DNSName: domain},
			Status:   messages.ChallengeStatus{State: state, Reason: reason, Processing: true, Presented: true},
		}
	}
	objs := []messages.Object{
		// The reference's row (its name is 34 characters; the document's
		// copy has a digit typed twice).
		ch("example-com-2745722290-439160286-0", "example.com", "Waiting for dns-01 challenge propagation", messages.StatePending, 22*time.Second),
		ch("example-com-2745722290-439160286-1", "www.example.com", "", messages.StateValid, 8*time.Minute+20*time.Second),
	}
	got := Table(messages.KindChallenge, objs, false, false, now)
	want := "" +
		"NAME                                 STATE     DOMAIN            REASON                                     AGE\n" +
		"example-com-2745722290-439160286-0   pending   example.com       Waiting for dns-01 challenge propagation   22s\n" +
		"example-com-2745722290-439160286-1   valid     www.example.com                                              8m20s\n"
	if got != want {
		t.Errorf("challenges table:\n%s\nwant:\n%s", got, want)
	}
	if wide := Table(messages.KindChallenge, objs, true, false, now); wide != want {
		t.Errorf("challenges -o wide differs from the table:\n%s", wide)
	}

	iss := func(name string, ready messages.ConditionStatus, msg string, age time.Duration) messages.Object {
		return &messages.Issuer{
			Metadata: messages.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: now.Add(-age)},
			Status:   messages.IssuerStatus{Conditions: []messages.Condition{{Type: "Ready", Status: ready, Message: msg}}},
		}
	}
	issuers := []messages.Object{iss("letsencrypt", "True", "The ACME account was registered with the ACME server", 38*time.Minute), iss("letsencrypt-http", "False", "Failed to update ACME account", 32*time.Minute)}
	if got, want := Table(messages.KindIssuer, issuers, false, false, now), ""+
		"NAME               READY   AGE\n"+
		"letsencrypt        True    38m\n"+
		"letsencrypt-http   False   32m\n"; got != want {
		t.Errorf("issuers table:\n%s\nwant:\n%s", got, want)
	}
	if got, want := Table(messages.KindIssuer, issuers, true, true, now), ""+
		"NAMESPACE   NAME               READY   STATUS                                                 AGE\n"+
		"default     letsencrypt        True    The ACME account was registered with the ACME server   38m\n"+
		"default     letsencrypt-http   False   Failed to update ACME account                          32m\n"; got != want {
		t.Errorf("issuers -A -o wide:\n%s\nwant:\n%s", got, want)
	}

	for kind, want := range map[messages.Kind]string{
		messages.KindCertificate:        "NAME   READY   SECRET   AGE",
		messages.KindCertificateRequest: "NAME   READY   ISSUER   AGE",
		messages.KindOrder:              "NAME   STATE   AGE",
	} {
		if got := strings.TrimSuffix(Table(kind, nil, false, false, now), "\n"); got != want {
			t.Errorf("%s header = %q, want %q", kind, got, want)
		}
	}
	for kind, want := range map[messages.Kind]string{
		messages.KindCertificate:        "NAMESPACE   NAME   READY   SECRET   ISSUER   STATUS   AGE",
		messages.KindCertificateRequest: "NAMESPACE   NAME   READY   ISSUER   STATUS   AGE",
		messages.KindOrder:              "NAMESPACE   NAME   STATE   ISSUER   REASON   AGE",
	} {
		if got := strings.TrimSuffix(Table(kind, nil, true, true, now), "\n"); got != want {
			t.Errorf("%s -A -o wide header = %q, want %q", kind, got, want)
		}
	}
}

func TestAlignerKeepsWidths(t *testing.T) {
	var a Aligner
	first := a.Format([][]string{{"NAME", "STATE", "AGE"}, {"a-long-name", "valid", "1s"}})
	next := a.Format([][]string{{"b", "pending", "2s"}})
	if first != "NAME          STATE   AGE\na-long-name   valid   1s\n" {
		t.Errorf("first = %q", first)
	}
	if next != "b             pending   2s\n" {
		t.Errorf("next = %q (STATE widens from now on)", next)
	}
}

func TestDescribeReference(t *testing.T) {
	now := time.Date(2020, 5, 15, 21, 54, 0, 0, time.UTC)
	ev := func(obj messages.Object, reason, msg string, ago time.Duration) messages.Event {
		m := obj.GetMeta()
		ts := now.Add(-ago)
		return messages.Event{Type: messages.EventNormal, Reason: reason, Message: msg, Source: "cert-manager",
			InvolvedObject: messages.ObjectReference{Kind: obj.GetKind(), Namespace: m.Namespace, Name: m.Name}, FirstTimestamp: ts, LastTimestamp: ts, Count: 1}
	}

	// kubectl describe challenge (reference, "3. Troubleshooting Challenges").
	ch := &messages.Challenge{
		TypeMeta: messages.TypeMeta{APIVersion: messages.APIVersion, Kind: messages.KindChallenge},
		Metadata: messages.ObjectMeta{Name: "example-com-2745722290-4391602865-0", Namespace: "default", CreationTimestamp: now.Add(-22 * time.Second)},
		Spec: messages.ChallengeSpec{URL: "https://acme.test/chal/1", AuthorizationURL: "https://acme.test/authz/1", DNSName: "example.com", Type: "DNS-01", Token: "tok",
			Key: "tok.thumb", IssuerRef: messages.IssuerRef{Name: "letsencrypt", Kind: "Issuer", Group: "cert-manager.io"}},
		Status: messages.ChallengeStatus{Processing: true, Presented: true, Reason: "Waiting for dns-01 challenge propagation", State: messages.StatePending},
	}
	out := Describe(ch, []messages.Event{
		ev(ch, "Presented", "Presented challenge using dns-01 challenge mechanism", 16*time.Second),
		ev(ch, "Started", "Challenge scheduled for processing", 19*time.Second),
	}, now)
	want := `Status:
  Presented:   true
  Processing:  true
  Reason:      Waiting for dns-01 challenge propagation
  State:       pending
Events:
  Type    Reason     Age   From          Message
  ----    ------     ----  ----          -------
  Normal  Started    19s   cert-manager  Challenge scheduled for processing
  Normal  Presented  16s   cert-manager  Presented challenge using dns-01 challenge mechanism
`
	if !strings.HasSuffix(out, want) {
		t.Errorf("describe challenge:\n%s\nwant suffix:\n%s", out, want)
	}
	wantHead := `Name:         example-com-2745722290-4391602865-0
Namespace:    default
Labels:       <none>
Annotations:  <none>
API Version:  acmeq.io/v1
Kind:         Challenge
Metadata:
  Creation Timestamp:  2020-05-15T21:53:38Z
Spec:
  Authorization URL:  https://acme.test/authz/1
  Dns Name:           example.com
  Issuer Ref:
    Group:  cert-manager.io
    Kind:   Issuer
    Name:   letsencrypt
  Key:      tok.thumb
  Solver:
  Token:  tok
  Type:   DNS-01
  URL:    https://acme.test/chal/1
Status:
`
	if !strings.HasPrefix(out, wantHead) {
		t.Errorf("describe challenge:\n%s\nwant prefix:\n%s", out, wantHead)
	}

	// kubectl describe certificaterequest (reference, "2. Checking the
	// CertificateRequest"): the CSR is not printed.
	cr := &messages.CertificateRequest{
		Metadata: messages.ObjectMeta{Name: "example-tls-bw5t9", Namespace: "default", Labels: map[string]string{"b": "2", "a": "1"}},
		Spec:     messages.CertificateRequestSpec{Request: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", IssuerRef: messages.IssuerRef{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: "letencrypt-production"}},
		Status: messages.CertificateRequestStatus{Conditions: []messages.Condition{{Type: "Ready", Status: "False", Reason: "Pending",
			Message: `Waiting on certificate issuance from order example-tls-fqtfg-1165244518: "pending"`, LastTransitionTime: time.Date(2020, 5, 15, 21, 45, 36, 123456789, time.UTC)}}},
	}
	out = Describe(cr, []messages.Event{ev(cr, "OrderCreated", "Created Order resource example-tls-fqtfg-1165244518", 500*time.Second)}, now)
	want = `Name:         example-tls-bw5t9
Namespace:    default
Labels:       a=1
              b=2
Annotations:  <none>
API Version:  
Kind:         
Metadata:
  Creation Timestamp:  0001-01-01T00:00:00Z
Spec:
  Issuer Ref:
    Group:  cert-manager.io
    Kind:   ClusterIssuer
    Name:   letencrypt-production
  Request:  [...]
Status:
  Conditions:
    Last Transition Time:  2020-05-15T21:45:36Z
    Message:               Waiting on certificate issuance from order example-tls-fqtfg-1165244518: "pending"
    Reason:                Pending
    Status:                False
    Type:                  Ready
Events:
  Type    Reason        Age    From          Message
  ----    ------        ----   ----          -------
  Normal  OrderCreated  8m20s  cert-manager  Created Order resource example-tls-fqtfg-1165244518
`
	if out != want {
		t.Errorf("describe certificaterequest:\n%s\nwant:\n%s", out, want)
	}

	// No events; no PEM.
	iss := &messages.Issuer{Metadata: messages.ObjectMeta{Name: "letsencrypt", Namespace: "default"}, Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
		Server: "https://acme.test/dir", CABundle: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	}}}
	out = Describe(iss, nil, now)
	if strings.Contains(out, "BEGIN") || !strings.Contains(out, "    Ca Bundle:  [...]\n") {
		t.Errorf("describe issuer shows the CA bundle:\n%s", out)
	}
	// An empty Status is a line without a value, so "Events:" starts its
	// own block of aligned lines, as in kubectl.
	if !strings.HasSuffix(out, "Status:\nEvents:  <none>\n") {
		t.Errorf("describe issuer without events:\n%s", out)
	}
	// A TSIG secret inline (as Issuers stored it before it became a
	// Secret reference) is not printed either.
	legacy := sanitize(map[string]any{"rfc2136": map[string]any{"nameserver": "ns:53", "tsigSecret": "c2VjcmV0"}}).(map[string]any)
	if got := legacy["rfc2136"].(map[string]any)["tsigSecret"]; got != Omitted {
		t.Errorf("tsigSecret = %v, want %s", got, Omitted)
	}
}

func TestJSONPath(t *testing.T) {
	order := &messages.Order{
		TypeMeta: messages.TypeMeta{APIVersion: messages.APIVersion, Kind: messages.KindOrder},
		Metadata: messages.ObjectMeta{Name: "o", Namespace: "default", ResourceVersion: 42},
		Spec:     messages.OrderSpec{DNSNames: []string{"a.test", "b.test"}},
		Status: messages.OrderStatus{State: messages.StateValid, URL: "https://ca/order/1", Authorizations: []messages.ACMEAuthorization{
			{URL: "https://ca/authz/1", Identifier: "a.test", Challenges: []messages.ACMEChallenge{{Type: "http-01", Token: "t1"}, {Type: "dns-01", Token: "t2"}}},
			{URL: "https://ca/authz/2", Identifier: "b.test", Wildcard: true},
		}},
	}
	cr := &messages.CertificateRequest{TypeMeta: messages.TypeMeta{Kind: messages.KindCertificateRequest}, Metadata: messages.ObjectMeta{Name: "cr", Labels: map[string]string{"acmeq.io/x": "y"}}, Status: messages.CertificateRequestStatus{Conditions: []messages.Condition{
		{Type: "Other", Status: "False"}, {Type: "Ready", Status: "True", Message: "done"}}}}
	list := ListOf([]messages.Object{order, cr})
	for _, tc := range []struct {
		tmpl string
		data any
		want string
	}{
		{"{.status.authorizations[0].url}", order, "https://ca/authz/1"},
		{"{.status.authorizations[-1].identifier}", order, "b.test"},
		{"{.status.authorizations[*].url}", order, "https://ca/authz/1 https://ca/authz/2"},
		{"{.status.authorizations[0].challenges[*].type}", order, "http-01 dns-01"},
		{"{.status.authorizations[1:].identifier}", order, "b.test"},
		{"{.status.nothing}", order, ""},
		{"{.spec.dnsNames}", order, `["a.test","b.test"]`},
		{"{.spec.dnsNames[1]}", order, "b.test"},
		{"{.metadata.resourceVersion}", order, "42"},
		{"{.status.authorizations[1].wildcard}", order, "true"},
		{"{$.metadata.name}", order, "o"},
		{"{.metadata['name']}", order, "o"},
		{"state={.status.state}\n", order, "state=valid\n"},
		{`{.status.state}{"\n"}`, order, "valid\n"},
		{`{.status.conditions[?(@.type=="Ready")].status}`, cr, "True"},
		{`{.status.conditions[?(@.type!='Ready')].type}`, cr, "Other"},
		{`{.status.authorizations[?(@.wildcard)].identifier}`, order, "b.test"},
		{`{.status.authorizations[?(@.challenges[0].type=="http-01")].identifier}`, order, "a.test"},
		{`{.items[?(@.metadata.resourceVersion>40)].metadata.name}`, list, "o"},
		// What the hand-written look-alike could not do: recursive
		// descent, unions, escaped dots.
		{"{..identifier}", order, "a.test b.test"},
		{"{.metadata['name','namespace']}", order, "o default"},
		{"{.status.authorizations[*]['identifier','wildcard']}", order, "a.test b.test true"},
		{`{.metadata.labels.acmeq\.io/x}`, cr, "y"},
		{`{range .items[*]}{.kind}/{.metadata.name}{"\n"}{end}`, list, "Order/o\nCertificateRequest/cr\n"},
		{`{range .status.authorizations[*]}[{.identifier}:{range .challenges[*]}{.token},{end}]{end}`, order, "[a.test:t1,t2,][b.test:]"},
		{"{.kind}", list, "List"},
		{"{.items[0].status.url}", list, "https://ca/order/1"},
		{"plain text", order, "plain text"},
	} {
		got, err := ExecuteJSONPath(tc.tmpl, tc.data)
		if err != nil {
			t.Errorf("%s: %v", tc.tmpl, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
	for _, bad := range []string{"{.a", "{.a[x]}", `{.a[?(@.b==)]}`, "{.a[1:2:3:4]}"} {
		if _, err := ParseJSONPath(bad); err == nil {
			t.Errorf("ParseJSONPath(%q) succeeded, want an error", bad)
		}
	}
	// kubectl parses these and fails when it evaluates them.
	for _, bad := range []string{"{.status.authorizations[5].url}", "{end}", "{.metadata[?(@.resourceVersion>40)].name}"} {
		if out, err := ExecuteJSONPath(bad, order); err == nil {
			t.Errorf("ExecuteJSONPath(%q) = %q, want an error", bad, out)
		}
	}
}

func TestParseOutput(t *testing.T) {
	for in, want := range map[string]Format{"": FormatTable, "wide": FormatWide, "json": FormatJSON, "yaml": FormatYAML, "jsonpath={.a}": FormatJSONPath, "jsonpath-as-json={.a}": FormatJSONPath} {
		o, err := ParseOutput(in)
		if err != nil || o.Format != want {
			t.Errorf("ParseOutput(%q) = %v, %v; want %v", in, o.Format, err, want)
		}
	}
	for _, bad := range []string{"jsonpath", "jsonpath=", "jsonpath-as-json=", "xml", "jsonpath={.a"} {
		if _, err := ParseOutput(bad); err == nil {
			t.Errorf("ParseOutput(%q) succeeded", bad)
		}
	}
	b, err := JSON(ListOf[messages.Object](nil))
	if err != nil {
		t.Fatal(err)
	}
	var l map[string]any
	if err := json.Unmarshal(b, &l); err != nil || l["kind"] != "List" || l["apiVersion"] != "v1" || l["items"] == nil {
		t.Errorf("empty list = %s (%v)", b, err)
	}
}

func TestEventsTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC)
	ref := messages.ObjectReference{Kind: messages.KindOrder, Namespace: "default", Name: "example-com-1-123"}
	evs := []messages.Event{
		{Type: messages.EventNormal, Reason: "Created", Message: "Created Challenge resource \"example-com-1-123-0\" for domain \"example.com\"", InvolvedObject: ref, FirstTimestamp: now.Add(-72 * time.Second), LastTimestamp: now.Add(-72 * time.Second), Count: 1},
		{Type: messages.EventWarning, Reason: "ErrOrder", Message: "boom", InvolvedObject: ref, FirstTimestamp: now.Add(-5 * time.Minute), LastTimestamp: now.Add(-4 * time.Second), Count: 3},
	}
	got := EventsTable(evs, false, now)
	want := "" +
		"LAST SEEN         TYPE      REASON     OBJECT                    MESSAGE\n" +
		"72s               Normal    Created    order/example-com-1-123   Created Challenge resource \"example-com-1-123-0\" for domain \"example.com\"\n" +
		"4s (x3 over 5m)   Warning   ErrOrder   order/example-com-1-123   boom\n"
	if got != want {
		t.Errorf("events table:\n%s\nwant:\n%s", got, want)
	}
	if got := EventsTable(evs[:1], true, now); !strings.HasPrefix(got, "NAMESPACE   LAST SEEN   TYPE     REASON    OBJECT") {
		t.Errorf("events -A:\n%s", got)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":                     "plain text",
		`quotes "stay" and \ too`:        `quotes "stay" and \ too`,
		"héllo wörld ✓":                  "héllo wörld ✓",
		"two\nlines":                     `two\nlines`,
		"cr\r\nlf":                       `cr\r\nlf`,
		"tab\there":                      `tab\there`,
		"\x1b[2J\x1b[31mred":             `\x1b[2J\x1b[31mred`,
		"bell\a and nul\x00":             `bell\a and nul\x00`,
		"del\x7f":                        `del\x7f`,
		"c1\u0085next line":              `c1\u0085next line`,
		"bidi \u202eevil\u202c override": `bidi \u202eevil\u202c override`,
		"bad utf-8 \xff\xfe":             `bad utf-8 \xff\xfe`,
		"replacement \ufffd is text":     "replacement \ufffd is text",
		"":                               "",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestForgedOutput: what users and CAs write (labels, reasons, messages,
// any field) cannot add lines or terminal sequences to get, describe and
// events output; json and yaml stay exact.
func TestForgedOutput(t *testing.T) {
	now := time.Date(2026, 5, 15, 22, 0, 0, 0, time.UTC)
	forged := "ok\nshop-1-2-0   valid     shop.example.test        1s\x1b[2K"
	ch := &messages.Challenge{
		TypeMeta: messages.TypeMeta{APIVersion: messages.APIVersion, Kind: messages.KindChallenge},
		Metadata: messages.ObjectMeta{Name: "c", Namespace: "default", CreationTimestamp: now.Add(-time.Minute),
			Labels: map[string]string{"team\nx": "a\rb"}},
		Spec:   messages.ChallengeSpec{DNSName: "shop.example.test", Token: "t\tk"},
		Status: messages.ChallengeStatus{State: messages.StatePending, Reason: forged},
	}
	ev := messages.Event{Type: messages.EventWarning, Reason: "Bad\nReason", Message: "line1\nline2\x1b]0;title\a",
		InvolvedObject: messages.ObjectReference{Kind: messages.KindChallenge, Namespace: "default", Name: "c"},
		FirstTimestamp: now.Add(-time.Second), LastTimestamp: now.Add(-time.Second), Count: 1}
	clean := func(what, out string, lines int) {
		t.Helper()
		if strings.ContainsAny(out, "\x1b\r\t\a") {
			t.Errorf("%s has raw control characters:\n%q", what, out)
		}
		if n := strings.Count(out, "\n"); n != lines {
			t.Errorf("%s has %d lines, want %d:\n%s", what, n, lines, out)
		}
	}
	table := Table(messages.KindChallenge, []messages.Object{ch}, true, true, now)
	clean("get -A -o wide", table, 2)
	if !strings.Contains(table, `ok\nshop-1-2-0   valid     shop.example.test        1s\x1b[2K`) {
		t.Errorf("the reason is not shown escaped:\n%s", table)
	}
	events := EventsTable([]messages.Event{ev}, true, now)
	clean("events", events, 2)
	if !strings.Contains(events, `Bad\nReason`) || !strings.Contains(events, `line1\nline2\x1b]0;title\a`) {
		t.Errorf("events table:\n%s", events)
	}
	desc := Describe(ch, []messages.Event{ev}, now)
	clean("describe", desc, strings.Count(Describe(&messages.Challenge{
		TypeMeta: ch.TypeMeta, Metadata: messages.ObjectMeta{Name: "c", Namespace: "default", CreationTimestamp: ch.Metadata.CreationTimestamp, Labels: map[string]string{"k": "v"}},
		Spec: messages.ChallengeSpec{DNSName: "x", Token: "t"}, Status: messages.ChallengeStatus{State: messages.StatePending, Reason: "r"},
	}, []messages.Event{{Type: messages.EventWarning, Reason: "R", Message: "m", InvolvedObject: ev.InvolvedObject, FirstTimestamp: ev.FirstTimestamp, LastTimestamp: ev.LastTimestamp, Count: 1}}, now), "\n"))
	for _, want := range []string{`Labels:       team\nx=a\rb`, `Token:  t\tk`, `Reason:      ok\nshop-1-2-0`, `Warning  Bad\nReason  1s    acmeq  line1\nline2\x1b]0;title\a`} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	// -o json is exact: the reason comes back byte for byte.
	b, err := JSON(ch)
	if err != nil {
		t.Fatal(err)
	}
	var back messages.Challenge
	if err := json.Unmarshal(b, &back); err != nil || back.Status.Reason != forged || back.Metadata.Labels["team\nx"] != "a\rb" {
		t.Errorf("-o json changed the data: %v %q", err, back.Status.Reason)
	}
	y, err := YAML(ch)
	if err != nil || !strings.Contains(string(y), `\e[2K`) {
		t.Errorf("-o yaml does not keep the reason as data: %v\n%s", err, y)
	}
}

// TestAlignerRemembersWidths: like kubectl's tabwriter with
// RememberWidths, a row printed later lines up with the rows before it
// and widens its column when it is wider.
func TestAlignerRemembersWidths(t *testing.T) {
	var a Aligner
	first := a.Format([][]string{{"NAME", "READY", "AGE"}, {"shop", "True", "1s"}})
	second := a.Format([][]string{{"s", "False", "2s"}})
	third := a.Format([][]string{{"a-much-longer-name", "True", "3s"}})
	fourth := a.Format([][]string{{"b", "True", "4s"}})
	want := []string{"NAME   READY   AGE\nshop   True    1s\n", "s      False   2s\n", "a-much-longer-name   True    3s\n", "b                    True    4s\n"}
	for i, got := range []string{first, second, third, fourth} {
		if got != want[i] {
			t.Errorf("batch %d = %q, want %q", i, got, want[i])
		}
	}
}

func TestSecretView(t *testing.T) {
	now := time.Date(2026, 5, 15, 22, 0, 0, 0, time.UTC)
	meta := messages.ObjectMeta{Name: "shop", Namespace: "default", CreationTimestamp: now.Add(-90 * time.Second)}
	tls := &messages.Secret{Metadata: meta, Data: map[string][]byte{"tls.crt": []byte("sealed"), "tls.key": []byte("sealed"), "ca.crt": []byte("sealed")}}
	key := &messages.Secret{Metadata: messages.ObjectMeta{Name: "dev-account-key", Namespace: "default", CreationTimestamp: now.Add(-time.Hour)}, Data: map[string][]byte{"tls.key": []byte("sealed")}}
	got := Table(messages.KindSecret, []messages.Object{key, tls}, false, false, now)
	want := "" +
		"NAME              TYPE                DATA   AGE\n" +
		"dev-account-key   Opaque              1      60m\n" +
		"shop              kubernetes.io/tls   3      90s\n"
	if got != want {
		t.Errorf("secrets table:\n%s\nwant:\n%s", got, want)
	}
	s := OpenedSecret(meta, map[string][]byte{"tls.crt": []byte("-----BEGIN CERTIFICATE-----\n"), "tls.key": []byte("k")})
	y, err := YAML(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"apiVersion: v1\n", "kind: Secret\n", "type: kubernetes.io/tls\n", "  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n", "  tls.key: aw==\n", "  name: shop\n"} {
		if !strings.Contains(string(y), line) {
			t.Errorf("secret yaml lacks %q:\n%s", line, y)
		}
	}
	if out, err := ExecuteJSONPath(`{.data.tls\.crt}`, s); err != nil || out != "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==" {
		t.Errorf(`{.data.tls\.crt} = %q, %v`, out, err)
	}
	o, err := ParseOutput(`jsonpath-as-json={.data.tls\.key}`)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := o.Write(&b, s); err != nil || b.String() != "[\n    \"aw==\"\n]\n" {
		t.Errorf("jsonpath-as-json = %q, %v", b.String(), err)
	}
}
