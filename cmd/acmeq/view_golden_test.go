package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/yaml"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

// goldenRequests are the certificates of the golden test: one name each,
// names of different widths.
func goldenRequests() []producer.RequestOptions {
	req := func(name, dns string) producer.RequestOptions {
		return producer.RequestOptions{Namespace: dev.Namespace, Name: name, Issuer: dev.IssuerName, DNSNames: []string{dns}}
	}
	return []producer.RequestOptions{req("shop", "shop.acmeq.test"), req("www-blog", "www.blog.acmeq.test"), req("api", "api.acmeq.test")}
}

func mustParseGet(t *testing.T, args ...string) getOptions {
	t.Helper()
	o, err := parseGetArgs(args)
	if err != nil {
		t.Fatalf("parse get %q: %v", args, err)
	}
	return o
}

// orderOf finds the Order a CertificateRequest created.
func orderOf(t *testing.T, ctx context.Context, env *dev.Env, cr string) *messages.Order {
	t.Helper()
	objs, err := env.Store.List(ctx, messages.KindOrder, dev.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if ow := o.GetMeta().OwnerReference; ow != nil && ow.Name == cr {
			return o.(*messages.Order)
		}
	}
	t.Fatalf("no order owned by %s", cr)
	return nil
}

// TestViewsOfRealIssuance issues three certificates with the real stack,
// then checks get, describe and events against golden files, and the
// json, yaml and jsonpath outputs against the stored resources.
func TestViewsOfRealIssuance(t *testing.T) {
	t.Parallel()
	env, ctx := startEnvKeepingChallenges(t, goldenRequests())
	order := orderOf(t, ctx, env, "shop-1")
	challenge := order.Metadata.Name + "-0"
	// A ClusterIssuer, shown without a namespace (even with -A).
	if err := env.CreateClusterIssuer(ctx, "letsencrypt"); err != nil {
		t.Fatal(err)
	}

	t.Run("get", func(t *testing.T) {
		for _, kind := range messages.ReconciledKinds {
			for _, v := range []struct {
				suffix string
				args   []string
			}{{"", nil}, {"_wide", []string{"-o", "wide"}}, {"_all_namespaces", []string{"-A"}}} {
				o := mustParseGet(t, append([]string{plural(kind)}, v.args...)...)
				objs, err := fetchResources(ctx, env.Store, o)
				if err != nil {
					t.Fatal(err)
				}
				for _, obj := range objs {
					normaliseObject(t, obj)
				}
				var out, errOut bytes.Buffer
				if err := renderGet(&out, &errOut, o, objs, goldenNow); err != nil {
					t.Fatal(err)
				}
				golden(t, "get_"+kind.Token()+v.suffix+".golden", out.String())
			}
		}
	})

	t.Run("describe", func(t *testing.T) {
		for kind, name := range map[messages.Kind]string{
			messages.KindIssuer:             dev.IssuerName,
			messages.KindClusterIssuer:      "letsencrypt",
			messages.KindCertificate:        "shop",
			messages.KindCertificateRequest: "shop-1",
			messages.KindOrder:              order.Metadata.Name,
			messages.KindChallenge:          challenge,
		} {
			items, err := collectDescribed(ctx, env.Store, env.JS, kind, dev.Namespace, name)
			if err != nil {
				t.Fatal(err)
			}
			for i := range items {
				normaliseObject(t, items[i].obj)
				items[i].events = normaliseEvents(t, items[i].events)
			}
			var out bytes.Buffer
			if err := renderDescribed(&out, items, goldenNow); err != nil {
				t.Fatal(err)
			}
			golden(t, "describe_"+kind.Token()+".golden", out.String())
		}
	})

	t.Run("events", func(t *testing.T) {
		o, err := parseEventsArgs([]string{"certificate/shop", "-n", dev.Namespace})
		if err != nil {
			t.Fatal(err)
		}
		evs, err := bus.ReadEvents(ctx, env.JS, bus.EventsOptions{Filter: messages.EventFilter(o.kind, o.namespace, o.name)})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := renderEvents(&out, &out, o, normaliseEvents(t, evs), goldenNow); err != nil {
			t.Fatal(err)
		}
		golden(t, "events_certificate.golden", out.String())
	})

	// The real output (not normalised), for people reading the test log.
	t.Run("real", func(t *testing.T) {
		var out bytes.Buffer
		if err := describeResources(ctx, &out, &out, env.Store, env.JS, messages.KindOrder, dev.Namespace, order.Metadata.Name, time.Now()); err != nil {
			t.Fatal(err)
		}
		out.WriteString("\n$ acmeq get challenges\n")
		if err := getResources(ctx, &out, &out, env.Store, mustParseGet(t, "challenges"), time.Now); err != nil {
			t.Fatal(err)
		}
		t.Logf("$ acmeq describe order %s\n%s", order.Metadata.Name, out.String())
	})

	get := func(t *testing.T, args ...string) (string, string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := getResources(ctx, &out, &errOut, env.Store, mustParseGet(t, args...), time.Now)
		return out.String(), errOut.String(), err
	}

	t.Run("json", func(t *testing.T) {
		out, _, err := get(t, "order", order.Metadata.Name, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var got messages.Order
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("-o json does not parse: %v\n%s", err, out)
		}
		stored := &messages.Order{}
		if err := env.Store.Get(ctx, dev.Namespace, order.Metadata.Name, stored); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, stored) {
			t.Errorf("-o json = %+v\nstored  = %+v", got, stored)
		}
		if !strings.HasPrefix(out, "{\n    \"apiVersion\": \"acmeq.io/v1\",\n") {
			t.Errorf("-o json is not indented like kubectl's:\n%s", out)
		}

		out, _, err = get(t, "orders", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			APIVersion string           `json:"apiVersion"`
			Kind       string           `json:"kind"`
			Items      []messages.Order `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatal(err)
		}
		if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) != 3 {
			t.Errorf("get orders -o json: apiVersion %q kind %q, %d items", list.APIVersion, list.Kind, len(list.Items))
		}
	})

	t.Run("yaml", func(t *testing.T) {
		out, _, err := get(t, "certificate", "shop", "-o", "yaml")
		if err != nil {
			t.Fatal(err)
		}
		var got messages.Certificate
		if err := yaml.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("-o yaml does not parse: %v\n%s", err, out)
		}
		stored := &messages.Certificate{}
		if err := env.Store.Get(ctx, dev.Namespace, "shop", stored); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, stored) {
			t.Errorf("-o yaml = %+v\nstored  = %+v", got, stored)
		}
	})

	t.Run("jsonpath", func(t *testing.T) {
		// As in the reference: kubectl get order <order-name> -ojsonpath='{.status.authorizations[x].url}'
		out, _, err := get(t, "order", order.Metadata.Name, "-o", "jsonpath={.status.authorizations[0].url}")
		if err != nil {
			t.Fatal(err)
		}
		if want := order.Status.Authorizations[0].URL; out != want || want == "" {
			t.Errorf("jsonpath authorizations[0].url = %q, want %q", out, want)
		}
		// kubectl get challenge <challenge-name> -ojsonpath='{.spec.authorizationURL}'
		ch := &messages.Challenge{}
		if err := env.Store.Get(ctx, dev.Namespace, challenge, ch); err != nil {
			t.Fatal(err)
		}
		out, _, err = get(t, "challenge", challenge, "-ojsonpath={.spec.authorizationURL}")
		if err != nil {
			t.Fatal(err)
		}
		if out != ch.Spec.AuthorizationURL || out == "" {
			t.Errorf("-ojsonpath={.spec.authorizationURL} = %q, want %q", out, ch.Spec.AuthorizationURL)
		}
		if ch.Spec.AuthorizationURL != order.Status.Authorizations[0].URL {
			t.Errorf("challenge %s authorizationURL %q is not its order's first authorization %q", challenge, ch.Spec.AuthorizationURL, order.Status.Authorizations[0].URL)
		}
		out, _, err = get(t, "certificates", `-o=jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		if err != nil {
			t.Fatal(err)
		}
		if want := "api=True\nshop=True\nwww-blog=True\n"; out != want {
			t.Errorf("range over certificates = %q, want %q", out, want)
		}
	})

	t.Run("secret", func(t *testing.T) {
		// The list needs no key: a store opened with another key lists
		// the same names, types and key counts.
		other := make([]byte, 32)
		if _, err := rand.Read(other); err != nil {
			t.Fatal(err)
		}
		sealer, err := store.NewSealer(other)
		if err != nil {
			t.Fatal(err)
		}
		wrongKey, err := store.Open(ctx, env.JS, sealer, store.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var table, errOut bytes.Buffer
		if err := getResources(ctx, &table, &errOut, wrongKey, mustParseGet(t, "secrets"), time.Now); err != nil {
			t.Fatal(err)
		}
		rows := map[string][]string{}
		for _, l := range lines(table.String()) {
			f := strings.Fields(l)
			rows[f[0]] = f
		}
		if h := rows["NAME"]; !slices.Equal(h, []string{"NAME", "TYPE", "DATA", "AGE"}) {
			t.Errorf("get secrets header = %q", h)
		}
		for _, name := range []string{"shop", "www-blog", "api"} {
			if r := rows[name]; len(r) != 4 || r[1] != "kubernetes.io/tls" || (r[2] != "2" && r[2] != "3") {
				t.Errorf("get secrets row %s = %q", name, r)
			}
		}
		if r := rows[dev.IssuerName+"-account-key"]; len(r) != 4 || r[1] != "Opaque" || r[2] != "1" {
			t.Errorf("get secrets row of the account key = %q\n%s", r, table.String())
		}

		// kubectl's habit: the certificate through jsonpath and base64 -d.
		out, _, err := get(t, "secret", "shop", "-o", `jsonpath={.data.tls\.crt}`)
		if err != nil {
			t.Fatal(err)
		}
		pemBytes, err := base64.StdEncoding.DecodeString(out)
		if err != nil {
			t.Fatalf("{.data.tls\\.crt} is not base64: %v: %q", err, out)
		}
		stored, err := env.Store.GetSecret(ctx, dev.Namespace, "shop")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pemBytes, stored[messages.SecretTLSCert]) {
			t.Errorf("get secret shop tls.crt differs from the stored certificate")
		}
		blk, _ := pem.Decode(pemBytes)
		if blk == nil {
			t.Fatalf("tls.crt is not PEM: %q", pemBytes)
		}
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil || !slices.Equal(leaf.DNSNames, []string{"shop.acmeq.test"}) {
			t.Errorf("tls.crt: %v, names %v", err, leaf.DNSNames)
		}

		out, _, err = get(t, "secret", "shop", "-o", "yaml")
		if err != nil {
			t.Fatal(err)
		}
		var sec struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Type       string            `json:"type"`
			Data       map[string][]byte `json:"data"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(out), &sec); err != nil {
			t.Fatal(err)
		}
		if sec.APIVersion != "v1" || sec.Kind != "Secret" || sec.Type != "kubernetes.io/tls" || sec.Metadata.Name != "shop" || sec.Metadata.Namespace != dev.Namespace ||
			!bytes.Equal(sec.Data["tls.key"], stored[messages.SecretTLSKey]) || !bytes.Equal(sec.Data["tls.crt"], stored[messages.SecretTLSCert]) {
			t.Errorf("get secret shop -o yaml:\n%s", out)
		}
		out, _, err = get(t, "secrets", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Kind  string `json:"kind"`
			Items []struct {
				Kind string `json:"kind"`
				Type string `json:"type"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != "List" || len(list.Items) < 4 || list.Items[0].Kind != "Secret" {
			t.Errorf("get secrets -o json: %v\n%s", err, truncate(out))
		}

		// With another key the data does not open: the error says which
		// key is needed.
		var o2, e2 bytes.Buffer
		err = getResources(ctx, &o2, &e2, wrongKey, mustParseGet(t, "secret", "shop", "-o", "yaml"), time.Now)
		if err == nil || !strings.Contains(err.Error(), "does not open with this ACMEQ_SECRET_KEY") || o2.Len() != 0 {
			t.Errorf("get secret with another key = %v, %q", err, o2.String())
		}
		_, errOut2, err := get(t, "secret", "nope")
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 || errOut2 != "Error from server (NotFound): secrets \"nope\" not found\n" {
			t.Errorf("get secret nope = %v, %q", err, errOut2)
		}
	})

	t.Run("errors", func(t *testing.T) {
		out, errOut, err := get(t, "order", "x")
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 || out != "" || errOut != "Error from server (NotFound): orders \"x\" not found\n" {
			t.Errorf("get order x = %v, out %q, stderr %q", err, out, errOut)
		}
		out, errOut, err = get(t, "challenges", "-n", "elsewhere")
		if err != nil || out != "" || errOut != "No resources found in elsewhere namespace.\n" {
			t.Errorf("get challenges -n elsewhere = %v, out %q, stderr %q", err, out, errOut)
		}
		var dout, derr bytes.Buffer
		err = describeResources(ctx, &dout, &derr, env.Store, env.JS, messages.KindChallenge, dev.Namespace, "nope", time.Now())
		if !errors.As(err, &ee) || ee.code != 1 || derr.String() != "Error from server (NotFound): challenges \"nope\" not found\n" {
			t.Errorf("describe challenge nope = %v, stderr %q", err, derr.String())
		}
	})
}

// startEnvKeepingChallenges is startEnv for views of challenges: the
// workers remove finished challenges once their order is final, so their
// last state is watched while the certificates are issued and stored again
// afterwards, as `get challenges` would have shown them just before.
func startEnvKeepingChallenges(t *testing.T, reqs []producer.RequestOptions) (*dev.Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: 3})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	w, err := env.Store.KV(messages.KindChallenge).WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string][]byte{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				mu.Lock()
				last[e.Key()] = e.Value()
				mu.Unlock()
			}
		}
	}()
	issueAll(t, ctx, env, reqs)
	eventually(t, 10*time.Second, "finished challenges removed", func() bool {
		objs, err := env.Store.List(ctx, messages.KindChallenge, "")
		return err == nil && len(objs) == 0
	})
	_ = w.Stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for key, b := range last {
		ch := &messages.Challenge{}
		if err := json.Unmarshal(b, ch); err != nil {
			t.Fatalf("challenge %s: %v", key, err)
		}
		if err := env.Store.Create(ctx, ch); err != nil {
			t.Fatalf("store challenge %s again: %v", key, err)
		}
	}
	return env, ctx
}
