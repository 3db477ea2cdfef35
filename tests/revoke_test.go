package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// pebbleCertStatus asks Pebble's management API whether a serial is
// revoked: "Valid" or "Revoked", and the RFC 5280 reason code.
func pebbleCertStatus(t *testing.T, env *dev.Env, serial string) (string, *uint) {
	t.Helper()
	res, err := env.Stack.Pebble.HTTPClient().Get(env.Stack.Pebble.ManagementURL + "/cert-status-by-serial/" + serial)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("cert-status-by-serial/%s: %s", serial, res.Status)
	}
	var v struct {
		Status string
		Reason *uint
	}
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Status, v.Reason
}

// `acmeq revoke` revokes the certificate in the Secret at the CA with the
// account key: the CA reports it revoked with the reason, the Certificate
// records it (status.revocation, Ready False, a Revoked event), it is not
// renewed when its renewal time comes, and `acmeq renew` issues a new one.
func TestRevokeCertificate(t *testing.T) {
	// 9 s certificates renew 3 s before they end: the renewal time of the
	// revoked one comes during the test.
	env, ctx := setupRenewal(t, 2, 9*time.Second, stack.PebbleConfig{}, nil)
	if _, err := env.Producer.Request(ctx, producer.RequestOptions{Namespace: dev.Namespace, Name: "gone", Issuer: dev.IssuerName, DNSNames: []string{"gone.acmeq.test"}}); err != nil {
		t.Fatal(err)
	}
	c := waitIssued(t, ctx, env, "gone", 1, time.Minute)
	if _, err := env.Producer.Revoke(ctx, dev.Namespace, "gone", "bogus"); err == nil {
		t.Fatal("Revoke with reason bogus was accepted")
	}
	serial, err := env.Producer.Revoke(ctx, dev.Namespace, "gone", "keyCompromise")
	if err != nil {
		t.Fatal(err)
	}
	if serial != c.Status.SerialNumber {
		t.Fatalf("Revoke asked for %s, the certificate holds %s", serial, c.Status.SerialNumber)
	}
	stacktest.Eventually(t, 20*time.Second, func() error {
		c = certificate(t, ctx, env, "gone")
		if rv := c.Status.Revocation; rv == nil || rv.SerialNumber != serial || rv.Reason != "keyCompromise" {
			return fmt.Errorf("status.revocation = %+v", c.Status.Revocation)
		}
		return nil
	})
	if status, reason := pebbleCertStatus(t, env, serial); status != "Revoked" || reason == nil || *reason != 1 {
		t.Errorf("Pebble says %s (reason %v), want Revoked (1, keyCompromise)", status, reason)
	}
	if cond := messages.GetCondition(c.Status.Conditions, messages.ConditionReady); cond == nil || cond.Status != messages.ConditionFalse || cond.Reason != "Revoked" {
		t.Errorf("Ready condition = %+v, want False, Revoked", cond)
	}
	// The event follows the status write the test waited for.
	stacktest.Eventually(t, 10*time.Second, func() error {
		evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(messages.KindCertificate, dev.Namespace, "gone")})
		if err != nil {
			return err
		}
		if len(evs) == 0 || evs[len(evs)-1].Reason != messages.ReasonRevoked {
			return fmt.Errorf("events %+v, want the last Revoked", evs)
		}
		return nil
	})
	// Its renewal time passes: not renewed.
	rt := *c.Status.RenewalTime
	stacktest.Eventually(t, 20*time.Second, func() error {
		if time.Now().Before(rt.Add(2 * time.Second)) {
			return errors.New("renewal time not passed yet")
		}
		return nil
	})
	waitQueueDrained(t, ctx, env)
	if c = certificate(t, ctx, env, "gone"); c.Status.Revision != 1 {
		t.Fatalf("a revoked certificate was renewed: revision %d", c.Status.Revision)
	}
	// acmeq renew issues a new one.
	if err := env.Producer.Renew(ctx, dev.Namespace, "gone"); err != nil {
		t.Fatal(err)
	}
	c = waitIssued(t, ctx, env, "gone", 2, 30*time.Second)
	if c.Status.Revocation != nil || c.Status.SerialNumber == serial {
		t.Errorf("after renew: revocation %+v, serial %s (revoked %s)", c.Status.Revocation, c.Status.SerialNumber, serial)
	}
	// A revocation of a serial that is no longer current is refused.
	if _, err := env.Producer.Revoke(ctx, "default", "nothere", ""); err == nil {
		t.Error("Revoke of an unknown certificate was accepted")
	}
}
