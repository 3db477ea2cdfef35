package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// TestFollowWatchAndDelete: `events -f` and `get -w` print what happens
// after they started; `delete order` retries an order with a new ACME
// order; `delete certificate` keeps the Secret.
func TestFollowWatchAndDelete(t *testing.T) {
	t.Parallel()
	env, ctx := startEnv(t, dev.DemoRequests(2)) // demo-0 (1 name), demo-1 (2 names)
	ns := dev.Namespace

	t.Run("events -f and get -w", func(t *testing.T) {
		fctx, stop := context.WithCancel(ctx)
		defer stop()
		var events, watch syncBuffer
		followed := make(chan error, 1)
		go func() {
			followed <- printEvents(fctx, &events, io.Discard, env.JS, eventsOptions{namespace: ns, follow: true}, time.Now)
		}()
		var issued syncBuffer
		filtered := make(chan error, 1)
		go func() {
			o, err := parseEventsArgs([]string{"-f", "-A", "--reason", "Issued", "--reason=OrderValid,NoSuchReason"})
			if err != nil {
				filtered <- err
				return
			}
			filtered <- printEvents(fctx, &issued, io.Discard, env.JS, o, time.Now)
		}()
		watched := make(chan error, 1)
		go func() {
			watched <- getResources(fctx, &watch, io.Discard, env.Store, mustParseGet(t, "certificates", "-w"), time.Now)
		}()
		// History comes first: once the last issuance's OrderValid is
		// printed, the follower is live; likewise the watch's table.
		eventually(t, 30*time.Second, "events -f printed the history", func() bool {
			return strings.Count(events.String(), "OrderValid") == 2
		})
		eventually(t, 30*time.Second, "get -w printed the table", func() bool {
			return strings.Contains(watch.String(), "demo-1 ")
		})

		late := producer.RequestOptions{Namespace: ns, Name: "late", Issuer: dev.IssuerName, DNSNames: []string{"late.acmeq.test"}}
		if _, err := env.Producer.Request(ctx, late); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "events -f printed the new order's OrderValid", func() bool {
			for _, l := range lines(events.String()) {
				if strings.Contains(l, "OrderValid") && strings.Contains(l, "order/late-1-") {
					return true
				}
			}
			return false
		})
		eventually(t, 30*time.Second, "events -f --reason printed the new certificate's Issued", func() bool {
			return strings.Contains(issued.String(), "certificate/late ")
		})
		eventually(t, 30*time.Second, "get -w printed the new certificate Ready", func() bool {
			for _, l := range lines(watch.String()) {
				if f := strings.Fields(l); len(f) >= 2 && f[0] == "late" && f[1] == "True" {
					return true
				}
			}
			return false
		})
		stop()
		if err := <-followed; err != nil {
			t.Errorf("events -f: %v", err)
		}
		if err := <-watched; err != nil {
			t.Errorf("get -w: %v", err)
		}
		if err := <-filtered; err != nil {
			t.Errorf("events -f --reason: %v", err)
		}
		// Only the reasons asked for, from every certificate and order.
		counts := map[string]int{}
		for _, l := range lines(issued.String())[1:] {
			f := strings.Fields(l)
			switch {
			case slices.Contains(f, "Issued"):
				counts["Issued"]++
			case slices.Contains(f, "OrderValid"):
				counts["OrderValid"]++
			default:
				counts[l]++
			}
		}
		if len(counts) != 2 || counts["Issued"] != 3 || counts["OrderValid"] != 3 {
			t.Errorf("events -f -A --reason Issued,OrderValid printed reasons %v:\n%s", counts, issued.String())
		}
		// And the history alone, filtered.
		var hist bytes.Buffer
		if err := printEvents(ctx, &hist, io.Discard, env.JS, eventsOptions{namespace: ns, reasons: []string{"issued"}, types: []string{"Normal"}}, time.Now); err != nil {
			t.Fatal(err)
		}
		if h := lines(hist.String()); len(h) != 4 || strings.Count(hist.String(), " Issued ") != 3 {
			t.Errorf("events --reason issued --types Normal:\n%s", hist.String())
		}
		ev := lines(events.String())
		if !strings.HasPrefix(ev[0], "LAST SEEN   TYPE ") || strings.Count(events.String(), "LAST SEEN") != 1 {
			t.Errorf("events -f header:\n%s", events.String())
		}
		w := lines(watch.String())
		if !strings.HasPrefix(w[0], "NAME ") || strings.Fields(w[0])[1] != "READY" || strings.Count(watch.String(), "NAME") != 1 {
			t.Errorf("get -w header:\n%s", watch.String())
		}
		t.Logf("$ acmeq events -f (last lines)\n%s", strings.Join(ev[max(0, len(ev)-6):], "\n"))
		t.Logf("$ acmeq get certificates -w\n%s", watch.String())

		// -o json: one event per line, with Kubernetes' field names.
		var out bytes.Buffer
		if err := printEvents(ctx, &out, io.Discard, env.JS, eventsOptions{namespace: ns, kind: messages.KindCertificate, name: "late", json: true}, time.Now); err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, l := range lines(out.String()) {
			var raw map[string]any
			if err := json.Unmarshal([]byte(l), &raw); err != nil {
				t.Fatalf("events -o json line %q: %v", l, err)
			}
			for _, k := range []string{"type", "reason", "message", "involvedObject", "firstTimestamp", "lastTimestamp", "count"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("events -o json line lacks %q: %s", k, l)
				}
			}
			if obj := raw["involvedObject"].(map[string]any); obj["kind"] != "Certificate" || obj["name"] != "late" || obj["namespace"] != ns {
				t.Errorf("involvedObject = %v", obj)
			}
			reasons = append(reasons, raw["reason"].(string))
		}
		if strings.Join(reasons, ",") != "Issuing,Generated,Requested,Issued" {
			t.Errorf("events certificate/late -o json reasons = %v", reasons)
		}
	})

	t.Run("delete order of a pending request", func(t *testing.T) {
		crName := "demo-0-1"
		old := orderOf(t, ctx, env, crName)
		// Make the request look stuck on its order, as when a challenge
		// never passes its self-check.
		cr := &messages.CertificateRequest{}
		if err := env.Store.Get(ctx, ns, crName, cr); err != nil {
			t.Fatal(err)
		}
		cr.Status.Conditions = []messages.Condition{{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: messages.ReasonPending,
			Message: "Waiting on certificate issuance from order", LastTransitionTime: time.Now().UTC()}}
		if err := env.Store.Update(ctx, cr); err != nil {
			t.Fatal(err)
		}
		before := time.Now().UTC().Truncate(time.Millisecond)
		var out, errOut bytes.Buffer
		if err := deleteOrder(ctx, &out, &errOut, env.Store, bus.New(env.JS, "test"), ns, old.Metadata.Name, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		want := `order.acme.cert-manager.io "` + old.Metadata.Name + `" deleted` + "\n" +
			`CertificateRequest "demo-0-1" will create a new Order "` + old.Metadata.Name + `" (a new ACME order)` + "\n"
		if out.String() != want || errOut.Len() != 0 {
			t.Errorf("delete order printed:\n%s%s\nwant:\n%s", out.String(), errOut.String(), want)
		}
		// The same name, a new ACME order.
		var got *messages.Order
		eventually(t, time.Minute, "the new order was made at the CA", func() bool {
			o := &messages.Order{}
			if err := env.Store.Get(ctx, ns, old.Metadata.Name, o); err != nil {
				return false
			}
			got = o
			return o.Status.URL != "" && !o.Metadata.CreationTimestamp.Before(before)
		})
		if got.Status.URL == old.Status.URL {
			t.Errorf("the new order has the old ACME order URL %s", got.Status.URL)
		}
		// And the retried order completes: its challenges' wake-ups are not
		// dropped as duplicates of the first order's.
		eventually(t, time.Minute, "the new order is valid and its request Ready", func() bool {
			o, r := &messages.Order{}, &messages.CertificateRequest{}
			return env.Store.Get(ctx, ns, old.Metadata.Name, o) == nil && o.Status.State == messages.StateValid &&
				env.Store.Get(ctx, ns, crName, r) == nil && messages.IsReady(r.Status.Conditions)
		})
		// The old challenges went with the old order.
		chs, err := env.Store.List(ctx, messages.KindChallenge, ns)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chs {
			m := ch.GetMeta()
			if o := m.OwnerReference; o != nil && o.Name == old.Metadata.Name && m.CreationTimestamp.Before(before) {
				t.Errorf("challenge %s of the deleted order is still there", m.Name)
			}
		}
		t.Logf("$ acmeq delete order %s\n%s", old.Metadata.Name, out.String())
	})

	t.Run("delete order of a failed request", func(t *testing.T) {
		crName := "late-1"
		old := orderOf(t, ctx, env, crName)
		// Make the order and its request look failed, as the workers
		// leave them when the CA invalidates an order.
		failed := time.Now().UTC()
		old.Status.State = messages.StateInvalid
		old.Status.Reason = "authorization failed"
		old.Status.FailureTime = &failed
		if err := env.Store.Update(ctx, old); err != nil {
			t.Fatal(err)
		}
		cr := &messages.CertificateRequest{}
		if err := env.Store.Get(ctx, ns, crName, cr); err != nil {
			t.Fatal(err)
		}
		cr.Status.FailureTime = &failed
		cr.Status.Conditions = []messages.Condition{{Type: messages.ConditionReady, Status: messages.ConditionFalse, Reason: messages.ReasonFailed,
			Message: "Failed to wait for order resource to become ready: order is in \"invalid\" state", LastTransitionTime: failed}}
		if err := env.Store.Update(ctx, cr); err != nil {
			t.Fatal(err)
		}
		before := time.Now().UTC().Truncate(time.Millisecond)
		var out, errOut bytes.Buffer
		if err := deleteOrder(ctx, &out, &errOut, env.Store, bus.New(env.JS, "test"), ns, old.Metadata.Name, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		want := `order.acme.cert-manager.io "` + old.Metadata.Name + `" deleted` + "\n" +
			`CertificateRequest "late-1" had failed: it is pending again` + "\n" +
			`CertificateRequest "late-1" will create a new Order "` + old.Metadata.Name + `" (a new ACME order)` + "\n"
		if out.String() != want || errOut.Len() != 0 {
			t.Errorf("delete order printed:\n%s%s\nwant:\n%s", out.String(), errOut.String(), want)
		}
		eventually(t, time.Minute, "the retried order is valid and its request Ready again", func() bool {
			o, r := &messages.Order{}, &messages.CertificateRequest{}
			return env.Store.Get(ctx, ns, old.Metadata.Name, o) == nil && o.Status.State == messages.StateValid && !o.Metadata.CreationTimestamp.Before(before) &&
				o.Status.URL != old.Status.URL && env.Store.Get(ctx, ns, crName, r) == nil && messages.IsReady(r.Status.Conditions) && r.Status.FailureTime == nil
		})
		t.Logf("$ acmeq delete order %s   # of a failed request\n%s", old.Metadata.Name, out.String())
	})

	t.Run("delete issuer", func(t *testing.T) {
		devIssuer := &messages.Issuer{}
		if err := env.Store.Get(ctx, ns, dev.IssuerName, devIssuer); err != nil {
			t.Fatal(err)
		}
		newIssuer := func(name string) {
			t.Helper()
			iss := &messages.Issuer{TypeMeta: devIssuer.TypeMeta, Metadata: messages.ObjectMeta{Name: name, Namespace: ns}, Spec: devIssuer.Spec}
			acme := *devIssuer.Spec.ACME
			acme.PrivateKeySecretRef = messages.SecretRef{}
			iss.Spec.ACME = &acme
			if _, err := env.Producer.Apply(ctx, iss); err != nil {
				t.Fatal(err)
			}
			eventually(t, time.Minute, "issuer "+name+" registered its ACME account", func() bool {
				i := &messages.Issuer{}
				return env.Store.Get(ctx, ns, name, i) == nil && messages.IsReady(i.Status.Conditions)
			})
		}
		del := func(name string, force, withKey bool) (string, error) {
			var out bytes.Buffer
			err := deleteIssuer(ctx, &out, io.Discard, env.Store, ns, name, force, withKey)
			return out.String(), err
		}
		// In use: refused, nothing deleted.
		_, err := del(dev.IssuerName, false, true)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(ee.msg, `issuer "dev" is referred to by 3 Certificate(s) in namespace "`+ns+`" (demo-0, demo-1, late)`) || !strings.Contains(ee.msg, "--force") {
			t.Errorf("delete issuer dev = %v", err)
		}
		if err := env.Store.Get(ctx, ns, dev.IssuerName, &messages.Issuer{}); err != nil {
			t.Errorf("issuer dev after a refused delete: %v", err)
		}

		newIssuer("spare")
		req := producer.RequestOptions{Namespace: ns, Name: "on-spare", Issuer: "spare", DNSNames: []string{"spare.acmeq.test"}}
		if _, err := env.Producer.Request(ctx, req); err != nil {
			t.Fatal(err)
		}
		out, err := del("spare", true, false)
		want := `issuer.cert-manager.io "spare" deleted` + "\n" +
			`1 Certificate(s) refer to it and wait until an Issuer "spare" exists again` + "\n" +
			`its ACME account key Secret "spare-account-key" is kept (--delete-account-key deletes it)` + "\n"
		if err != nil || out != want {
			t.Errorf("delete issuer spare --force = %v:\n%s\nwant:\n%s", err, out, want)
		}
		if err := env.Store.Get(ctx, ns, "spare-account-key", &messages.Secret{}); err != nil {
			t.Errorf("the account key went without --delete-account-key: %v", err)
		}

		newIssuer("spare2")
		out, err = del("spare2", false, true)
		want = `issuer.cert-manager.io "spare2" deleted` + "\n" + `secret "spare2-account-key" deleted (the ACME account key)` + "\n"
		if err != nil || out != want {
			t.Errorf("delete issuer spare2 --delete-account-key = %v:\n%s\nwant:\n%s", err, out, want)
		}
		if err := env.Store.Get(ctx, ns, "spare2-account-key", &messages.Secret{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("account key after --delete-account-key: %v", err)
		}
		if err := env.Store.Get(ctx, ns, "spare2", &messages.Issuer{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("issuer after delete: %v", err)
		}
		var errOut bytes.Buffer
		if err := deleteIssuer(ctx, io.Discard, &errOut, env.Store, ns, "spare2", false, false); !errors.As(err, &ee) || errOut.String() != `Error from server (NotFound): issuers "spare2" not found`+"\n" {
			t.Errorf("delete a missing issuer = %v, %q", err, errOut.String())
		}
	})

	t.Run("delete order of a ready request", func(t *testing.T) {
		old := orderOf(t, ctx, env, "demo-1-1")
		var out, errOut bytes.Buffer
		if err := deleteOrder(ctx, &out, &errOut, env.Store, bus.New(env.JS, "test"), ns, old.Metadata.Name, time.Second); err != nil {
			t.Fatal(err)
		}
		want := `order.acme.cert-manager.io "` + old.Metadata.Name + `" deleted` + "\n" +
			`CertificateRequest "demo-1-1" is already Ready: it will not create a new Order` + "\n"
		if out.String() != want {
			t.Errorf("delete order printed:\n%s\nwant:\n%s", out.String(), want)
		}
		if err := env.Store.Get(ctx, ns, old.Metadata.Name, &messages.Order{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("order after delete: %v", err)
		}
		for i := range old.Status.Authorizations {
			if err := env.Store.Get(ctx, ns, old.Metadata.Name+"-"+string(rune('0'+i)), &messages.Challenge{}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("challenge %d after delete: %v", i, err)
			}
		}
		var errOut2 bytes.Buffer
		err := deleteOrder(ctx, io.Discard, &errOut2, env.Store, bus.New(env.JS, "test"), ns, old.Metadata.Name, time.Second)
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 || errOut2.String() != `Error from server (NotFound): orders "`+old.Metadata.Name+`" not found`+"\n" {
			t.Errorf("delete a missing order = %v, stderr %q", err, errOut2.String())
		}
	})

	t.Run("delete certificate", func(t *testing.T) {
		var out bytes.Buffer
		if err := deleteCertificate(ctx, &out, io.Discard, env.Store, env.JS, ns, "demo-1", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		want := `certificate.cert-manager.io "demo-1" deleted` + "\n" +
			`acmeq no longer manages it: its Secret "demo-1" is kept; its CertificateRequests, Orders and renewal schedule are removed` + "\n"
		if out.String() != want {
			t.Errorf("delete certificate printed:\n%s\nwant:\n%s", out.String(), want)
		}
		if err := env.Store.Get(ctx, ns, "demo-1", &messages.Certificate{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("certificate after delete: %v", err)
		}
		if data, err := env.Store.GetSecret(ctx, ns, "demo-1"); err != nil || len(data[messages.SecretTLSCert]) == 0 {
			t.Errorf("secret after delete: %v", err)
		}
		if err := env.Store.Get(ctx, ns, "demo-1-1", &messages.CertificateRequest{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("certificate request after delete: %v, want it removed", err)
		}
		// Released: a Certificate of the same name applied again adopts
		// the Secret; another cannot take it.
		other := messages.ObjectReference{Kind: messages.KindCertificate, Namespace: ns, Name: "someone-else"}
		if err := env.Store.ClaimSecret(ctx, ns, "demo-1", other); !errors.Is(err, store.ErrOwned) {
			t.Errorf("another Certificate claims the kept Secret: %v, want ErrOwned", err)
		}
		same := messages.ObjectReference{Kind: messages.KindCertificate, Namespace: ns, Name: "demo-1"}
		if err := env.Store.ClaimSecret(ctx, ns, "demo-1", same); err != nil {
			t.Errorf("a Certificate of the same name cannot adopt its Secret: %v", err)
		}
		s, err := env.JS.Stream(ctx, messages.WorkStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(messages.ScheduleSubject(messages.KindCertificate, ns, "demo-1")))
		if err != nil || len(info.State.Subjects) != 0 {
			t.Errorf("renewal schedule after delete: %v, %v; want none", info.State.Subjects, err)
		}
	})
}
