package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/view")

// startEnv runs the whole stack (NATS, Redis, Pebble, 3 workers) and
// issues the given certificates for real.
func startEnv(t *testing.T, reqs []producer.RequestOptions) (*dev.Env, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	env, err := dev.Start(ctx, dev.Options{Dir: t.TempDir(), Workers: 3})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(env.Close)
	issueAll(t, ctx, env, reqs)
	return env, ctx
}

// issueAll requests the certificates and waits until each is Ready.
func issueAll(t *testing.T, ctx context.Context, env *dev.Env, reqs []producer.RequestOptions) {
	t.Helper()
	var names []string
	for _, r := range reqs {
		if _, err := env.Producer.Request(ctx, r); err != nil {
			t.Fatalf("request %s: %v", r.Name, err)
		}
		names = append(names, r.Name)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	res, err := env.WaitCertificates(wctx, dev.Namespace, names)
	if err != nil {
		t.Fatalf("waiting for certificates: %v", err)
	}
	for _, n := range names {
		if !res[n].Ready {
			t.Fatalf("certificate %s not issued: %s", n, res[n].Message)
		}
	}
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	stacktest.EventuallyTrue(t, timeout, what, cond)
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The golden files must not depend on what differs between two real runs,
// so the resources and events are normalised BEFORE they are rendered
// (normalising the rendered text instead would break the column
// alignment, which depends on the width of every cell). goldenNow is the
// "now" ages are counted to. The replacer, applied to every string of the
// resources' and events' JSON:
//
//   - RFC 3339 timestamps                -> goldenTime (so every AGE is 5m)
//   - Order hashes, shop-1-<fnv32>        -> shop-1-1234567890 (the hash
//     covers the CSR, whose key is random)
//   - https://127.0.0.1:<port>           -> https://pebble.test:14000
//     (Pebble listens on a random port)
//   - the id after /<path>/ in those URLs -> ID (Pebble's random ids)
//   - values of "token" and "key"        -> TOKEN and TOKEN.THUMBPRINT
//     (empty ones stay empty)
//   - metadata.resourceVersion           -> 1 (depends on interleaving)
//
// and Pebble offers an authorization's challenges in random order, so the
// "challenges" lists of an Order's authorizations are sorted by type. (The
// certificates of the golden test have one name each: Pebble also orders
// an order's authorizations at random, and a Challenge's name carries the
// index of its authorization.)
var (
	goldenTime = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	goldenNow  = goldenTime.Add(5 * time.Minute)

	orderHashRE = regexp.MustCompile(`\b([a-z][a-z0-9-]*?-\d+)-\d{5,}\b`)
	pebbleRE    = regexp.MustCompile(`https://127\.0\.0\.1:\d+`)
	pebbleIDRE  = regexp.MustCompile(`(https://pebble\.test:14000/[A-Za-z-]+/)[A-Za-z0-9_-]+`)
)

func normaliseString(key, s string) string {
	switch {
	case s == "":
		return s
	case key == "token":
		return "TOKEN"
	case key == "key":
		return "TOKEN.THUMBPRINT"
	case key == "serialNumber":
		return "SERIAL"
	case key == "certID":
		return "AKI.SERIAL"
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return goldenTime.Format(time.RFC3339)
	}
	s = orderHashRE.ReplaceAllString(s, "${1}-1234567890")
	s = pebbleRE.ReplaceAllString(s, "https://pebble.test:14000")
	return pebbleIDRE.ReplaceAllString(s, "${1}ID")
}

func normaliseValue(key string, v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			t[k] = normaliseValue(k, c)
		}
		return t
	case []any:
		for i, c := range t {
			t[i] = normaliseValue(key, c)
		}
		if key == "challenges" {
			slices.SortStableFunc(t, func(a, b any) int {
				ta, _ := a.(map[string]any)["type"].(string)
				tb, _ := b.(map[string]any)["type"].(string)
				return strings.Compare(ta, tb)
			})
		}
		return t
	case string:
		return normaliseString(key, t)
	}
	return v
}

// normaliseJSON round-trips v (a pointer) through JSON with the replacer.
func normaliseJSON(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(normaliseValue("", generic)); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func normaliseObject(t *testing.T, obj messages.Object) messages.Object {
	t.Helper()
	normaliseJSON(t, obj)
	obj.GetMeta().ResourceVersion = 1
	return obj
}

func normaliseEvents(t *testing.T, evs []messages.Event) []messages.Event {
	t.Helper()
	out := make([]messages.Event, len(evs))
	copy(out, evs)
	for i := range out {
		normaliseJSON(t, &out[i])
	}
	return out
}

// golden compares got with testdata/view/NAME (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "view", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (-update rewrites it):\n--- got ---\n%s--- want ---\n%s", name, path, got, want)
	}
}

// lines splits output into lines without the final newline.
func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
