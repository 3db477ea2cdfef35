package tests

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
)

// An issuer the CA refuses is not Ready, with the ACME problem type in the
// reason and a Warning event, as in the reference's troubleshooting guide.
func TestIssuerRegistrationRefused(t *testing.T) {
	env, ctx := setup(t, 1)
	// Stored directly, as a producer in another language could: Pebble
	// refuses non-ASCII contacts with invalidContact.
	iss := &messages.Issuer{
		Metadata: messages.ObjectMeta{Name: "bad-email", Namespace: dev.Namespace},
		Spec: messages.IssuerSpec{ACME: &messages.ACMEIssuer{
			Server:   env.Stack.Pebble.DirectoryURL,
			Email:    "jörg@acmeq.test",
			CABundle: string(env.Stack.Pebble.TLSCertPEM),
		}},
	}
	if err := env.Store.Create(ctx, iss); err != nil {
		t.Fatal(err)
	}
	b := bus.New(env.JS, "test")
	if err := b.Publish(ctx, messages.Transition{Kind: messages.KindIssuer, Namespace: dev.Namespace, Name: "bad-email", Action: messages.ActionApply}, "1"); err != nil {
		t.Fatal(err)
	}
	want := `Failed to register ACME account: 400 urn:ietf:params:acme:error:invalidContact: contact email "jörg@acmeq.test" contains non-ASCII characters`
	eventually(t, 30*time.Second, func() bool {
		got := &messages.Issuer{}
		if err := env.Store.Get(ctx, dev.Namespace, "bad-email", got); err != nil {
			return false
		}
		c := messages.GetCondition(got.Status.Conditions, messages.ConditionReady)
		return c != nil && c.Status == messages.ConditionFalse && c.Reason == messages.ReasonErrRegisterACMEAccount && c.Message == want
	})
	evs := assertReasons(t, ctx, env, messages.KindIssuer, "bad-email", []string{"ErrRegisterACMEAccount"})
	if evs[0].Type != messages.EventWarning || evs[0].Message != want {
		t.Errorf("event = %+v", evs[0])
	}
}

// Malformed messages that reach the queue are terminated, recorded as a
// Warning event and kept with their payload in the dead-letter stream.
func TestPoisonMessagesAreDeadLettered(t *testing.T) {
	env, ctx := setup(t, 1)
	cases := []struct {
		subject, payload, reason string
	}{
		{"acmeq.work.order.default.broken", `{"v":1,"kind":`, "malformed message"},
		{"acmeq.work.challenge.default.future", `{"v":99,"kind":"Challenge","namespace":"default","name":"future","action":"scheduled"}`, "unsupported version v=99"},
		{"acmeq.work.certificate.default.wrong-kind", `{"v":1,"kind":"Order","namespace":"default","name":"wrong-kind","action":"apply"}`, `kind "Order" on the Certificate consumer`},
		// A payload naming another resource than its subject: the event
		// goes to the subject's resource, never the payload's.
		{"acmeq.work.certificate.default.decoy", `{"v":1,"kind":"Certificate","namespace":"other","name":"victim","action":"apply"}`, `names Certificate other/victim but was published on "acmeq.work.certificate.default.decoy"`},
		// Just under the server's 1 MiB limit: the dead letter adds headers,
		// so its payload is truncated, with the original size noted.
		{"acmeq.work.order.default.huge", `{"v":1,"kind":"Order","x":"` + strings.Repeat("a", 1<<20-300) + `"}`, "malformed message"},
	}
	for _, c := range cases {
		if _, err := env.JS.Publish(ctx, c.subject, []byte(c.payload)); err != nil {
			t.Fatal(err)
		}
	}
	// Subjects no consumer reads are refused by the stream, never stored
	// unread.
	for _, subj := range []string{"acmeq.work.widget.default.x", "acmeq.work.certificate", "acmeq.work.certificate.default", "acmeq.work.certificate.default.a.b"} {
		if _, err := env.JS.Publish(ctx, subj, []byte(`{"v":1}`)); err == nil {
			t.Errorf("publish on %q was stored; want it refused", subj)
		}
	}
	dead, err := env.JS.Stream(ctx, messages.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool {
		info, err := dead.Info(ctx)
		return err == nil && info.State.Msgs == uint64(len(cases))
	})
	bySubject := map[string]int{}
	for i, c := range cases {
		bySubject[c.subject] = i
	}
	for seq := uint64(1); seq <= uint64(len(cases)); seq++ {
		m, err := dead.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		i, ok := bySubject[m.Header.Get("Acmeq-Original-Subject")]
		if !ok {
			t.Fatalf("dead letter %d for unexpected subject %q", seq, m.Header.Get("Acmeq-Original-Subject"))
		}
		c := cases[i]
		if !strings.Contains(m.Header.Get("Acmeq-Reason"), c.reason) {
			t.Errorf("dead letter for %s: reason %q, want it to say %q", c.subject, m.Header.Get("Acmeq-Reason"), c.reason)
		}
		switch {
		case len(c.payload) > 1<<19:
			if m.Header.Get("Acmeq-Truncated") != "true" || m.Header.Get("Acmeq-Original-Size") != strconv.Itoa(len(c.payload)) ||
				!strings.HasPrefix(c.payload, string(m.Data)) || len(m.Data) == 0 {
				t.Errorf("dead letter for %s: %d bytes, headers %v; want the payload truncated with its original size", c.subject, len(m.Data), m.Header)
			}
		case string(m.Data) != c.payload:
			t.Errorf("dead letter for %s: payload %q", c.subject, m.Data)
		}
	}
	evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poison := 0
	for _, e := range evs {
		if e.Reason == messages.ReasonPoisonMessage && e.Type == messages.EventWarning {
			poison++
			if e.InvolvedObject.Name == "victim" || e.InvolvedObject.Namespace == "other" {
				t.Errorf("a PoisonMessage event names the payload's resource %+v", e.InvolvedObject)
			}
		}
	}
	if poison != len(cases) {
		t.Errorf("%d PoisonMessage events, want %d", poison, len(cases))
	}
	// And nothing is left to be retried forever.
	waitQueueDrained(t, ctx, env)
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	stacktest.EventuallyTrue(t, timeout, "the condition", cond)
}
