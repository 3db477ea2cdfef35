package delivery

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for valid
	}{
		{"minimal", Config{Dir: "/x"}, ""},
		{"no dir", Config{}, "Dir (--dir) is required"},
		{"namespace and all", Config{Dir: "/x", Namespace: "a", AllNamespaces: true}, "exclude each other"},
		{"names across namespaces", Config{Dir: "/x", AllNamespaces: true, Names: []string{"shop"}}, "cannot be combined with AllNamespaces"},
		{"names and selector", Config{Dir: "/x", Names: []string{"shop"}, LabelSelector: "a=b"}, "exclude each other"},
		{"bad name", Config{Dir: "/x", Names: []string{"Shop_1"}}, `"Shop_1" must consist of`},
		{"bad namespace", Config{Dir: "/x", Namespace: "a.b"}, "Namespace (-n)"},
		{"bad selector", Config{Dir: "/x", LabelSelector: "a in b"}, "LabelSelector (-l)"},
		{"selector", Config{Dir: "/x", LabelSelector: "env=prod,tier in (edge,cdn),!canary"}, ""},
		{"negative timeout", Config{Dir: "/x", ExecTimeout: -time.Second}, "ExecTimeout (--exec-timeout)"},
		{"negative debounce", Config{Dir: "/x", Debounce: -time.Second}, "Debounce (--debounce)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if _, nerr := New(nil, nil, tt.cfg); tt.want != "" && !errors.Is(nerr, ErrConfig) {
				t.Errorf("New accepted what Validate refuses: %v", nerr)
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want an ErrConfig containing %q", err, tt.want)
			}
		})
	}
}

// The agent writes the selected certificates, follows their renewals in
// debounced batches with one hook run each, and reports it in /metrics.
func TestSyncWritesAndFollows(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := filepath.Join(t.TempDir(), "certs")
	e.putCertificate(t, "default", "shop", nil, "shop.example.test")
	e.putCertificate(t, "default", "blog", nil, "blog.example.test")
	e.putCertificate(t, "other", "api", nil, "api.example.test")
	shop1 := e.issue(t, "default", "shop", "shop.example.test")
	e.issue(t, "default", "blog", "blog.example.test")
	e.issue(t, "other", "api", "api.example.test")
	e.putCertificate(t, "default", "pending", nil, "pending.example.test") // not issued yet

	hookLog := filepath.Join(t.TempDir(), "hook.log")
	r := e.start(t, Config{Dir: dir, Exec: `echo "$ACMEQ_SYNC_CHANGED" >> ` + hookLog})
	eventually(t, 20*time.Second, "the first hook run", func() bool { return len(hookLines(hookLog)) == 1 })
	if got := hookLines(hookLog)[0]; got != "default/blog default/shop" {
		t.Errorf("first hook run saw ACMEQ_SYNC_CHANGED=%q, want both certificates of default", got)
	}
	p := readPair(t, dir, "default", "shop", e.ca.pool())
	if p.serial != shop1 || !slices.Equal(p.names, []string{"shop.example.test"}) {
		t.Errorf("shop on disk: %+v, want serial %s", p, shop1)
	}
	readPair(t, dir, "default", "blog", e.ca.pool())
	if _, err := os.Lstat(filepath.Join(dir, "other")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace other was written without -A: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "default", "pending")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a certificate without a Secret got files: %v", err)
	}
	for f, perm := range map[string]os.FileMode{FileKey: 0o600, FilePEM: 0o600, FileCert: 0o644, FileCA: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, "default", "shop", f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s has mode %v, want %v", f, fi.Mode().Perm(), perm)
		}
	}
	if ca, _ := os.ReadFile(filepath.Join(dir, "default", "shop", FileCA)); !bytes.Equal(ca, e.ca.pem) {
		t.Error("ca.crt is not the Secret's ca.crt")
	}
	if got := metric(t, r.reg, "acmeq_sync_certificates_synced_total"); got != 2 {
		t.Errorf("synced = %v, want 2", got)
	}
	if got := metric(t, r.reg, "acmeq_sync_certificates"); got != 2 {
		t.Errorf("certificates = %v, want 2", got)
	}
	// The last sync time is set once the hook that wrote the line returns.
	eventually(t, 20*time.Second, "the last sync time", func() bool {
		return metric(t, r.reg, "acmeq_sync_last_sync_timestamp_seconds") != 0
	})

	// A renewal of both, close together: one batch, one hook run.
	shop2 := e.issue(t, "default", "shop", "shop.example.test", "www.shop.example.test")
	e.issue(t, "default", "blog", "blog.example.test")
	eventually(t, 20*time.Second, "the second hook run", func() bool { return len(hookLines(hookLog)) >= 2 })
	if lines := hookLines(hookLog); len(lines) != 2 || lines[1] != "default/blog default/shop" {
		t.Errorf("hook runs: %q, want a second run for both certificates", lines)
	}
	p2 := readPair(t, dir, "default", "shop", e.ca.pool())
	if p2.serial != shop2 || p2.version == p.version {
		t.Errorf("after renewal shop is %+v, want serial %s in a new version", p2, shop2)
	}
	// The previous version stays for readers that resolved it; older ones go.
	if _, err := os.Stat(filepath.Join(dir, "default", p.version, FileKey)); err != nil {
		t.Errorf("previous version removed at once: %v", err)
	}
	// The soonest expiry is the minimum of the two on disk.
	var soonest time.Time
	for _, n := range []string{"shop", "blog"} {
		crt, _ := os.ReadFile(filepath.Join(dir, "default", n, FileCert))
		chain, _ := parseChain(crt)
		if soonest.IsZero() || chain[0].NotAfter.Before(soonest) {
			soonest = chain[0].NotAfter
		}
	}
	if got := metric(t, r.reg, "acmeq_sync_soonest_expiry_timestamp_seconds"); got != float64(soonest.Unix()) {
		t.Errorf("soonest expiry = %v, want %d", got, soonest.Unix())
	}

	// The pending certificate is issued: written, hook runs for it alone.
	e.issue(t, "default", "pending", "pending.example.test")
	eventually(t, 20*time.Second, "the hook for the new certificate", func() bool { return len(hookLines(hookLog)) >= 3 })
	if got := hookLines(hookLog)[2]; got != "default/pending" {
		t.Errorf("third hook run saw %q", got)
	}
	readPair(t, dir, "default", "pending", e.ca.pool())

	// A status-only update of a Certificate rewrites nothing.
	before := metric(t, r.reg, "acmeq_sync_certificates_synced_total")
	e.putCertificate(t, "default", "shop", map[string]string{"touched": "yes"}, "shop.example.test", "www.shop.example.test")
	e.issue(t, "default", "blog", "blog.example.test") // a change to wait for
	eventually(t, 20*time.Second, "the blog renewal", func() bool { return len(hookLines(hookLog)) >= 4 })
	if got := metric(t, r.reg, "acmeq_sync_certificates_synced_total"); got != before+1 {
		t.Errorf("synced went from %v to %v, want one more (blog only)", before, got)
	}
}

func hookLines(path string) []string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// -n, names, -l and -A select what is written; --once reports what it
// could not write.
func TestSyncSelection(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, c := range []struct{ ns, name, env string }{
		{"default", "shop", "prod"}, {"default", "blog", "staging"}, {"default", "wiki", ""}, {"team-a", "api", "prod"},
	} {
		lbls := map[string]string{}
		if c.env != "" {
			lbls["env"] = c.env
		}
		e.putCertificate(t, c.ns, c.name, lbls, c.name+".example.test")
		e.issue(t, c.ns, c.name, c.name+".example.test")
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"default namespace", Config{}, []string{"default/blog", "default/shop", "default/wiki"}},
		{"namespace", Config{Namespace: "team-a"}, []string{"team-a/api"}},
		{"names", Config{Names: []string{"shop", "wiki"}}, []string{"default/shop", "default/wiki"}},
		{"label", Config{LabelSelector: "env=prod"}, []string{"default/shop"}},
		{"label all namespaces", Config{AllNamespaces: true, LabelSelector: "env=prod"}, []string{"default/shop", "team-a/api"}},
		{"label set", Config{AllNamespaces: true, LabelSelector: "env in (prod,staging),env!=staging"}, []string{"default/shop", "team-a/api"}},
		{"label absent", Config{LabelSelector: "!env"}, []string{"default/wiki"}},
		{"all", Config{AllNamespaces: true}, []string{"default/blog", "default/shop", "default/wiki", "team-a/api"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.cfg.Dir = dir
			reg, _, err := e.once(t, tt.cfg)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := onDisk(t, dir)
			if !slices.Equal(got, tt.want) {
				t.Errorf("on disk %v, want %v", got, tt.want)
			}
			if n := metric(t, reg, "acmeq_sync_certificates_synced_total"); n != float64(len(tt.want)) {
				t.Errorf("synced = %v, want %d", n, len(tt.want))
			}
		})
	}
}

// onDisk lists the ns/name symlinks under dir.
func onDisk(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	nss, _ := os.ReadDir(dir)
	for _, ns := range nss {
		if !ns.IsDir() {
			continue
		}
		w := writer{dir: dir}
		names, err := w.managed(ns.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			out = append(out, ns.Name()+"/"+n)
		}
	}
	slices.Sort(out)
	return out
}

// --once fails, naming the certificate and the reason, for an unknown
// name, a certificate not issued yet and a Secret whose key does not match
// its certificate; the files already on disk stay.
func TestSyncOnceErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := t.TempDir()
	e.putCertificate(t, "default", "shop", nil, "shop.example.test")
	serial := e.issue(t, "default", "shop", "shop.example.test")
	e.putCertificate(t, "default", "new", nil, "new.example.test")
	if _, _, err := e.once(t, Config{Dir: dir, Names: []string{"shop"}}); err != nil {
		t.Fatal(err)
	}

	_, _, err := e.once(t, Config{Dir: dir, Names: []string{"shop", "nope"}})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "default/nope is not in the store") {
		t.Errorf("unknown name: %v", err)
	}
	_, _, err = e.once(t, Config{Dir: dir, Names: []string{"new"}})
	if !errors.Is(err, ErrNotIssued) || !strings.Contains(err.Error(), "default/new has no Secret default/new") {
		t.Errorf("not issued: %v", err)
	}

	// A Secret whose key is another certificate's.
	chain, _, _ := e.ca.issue(t, "shop.example.test")
	_, otherKey, _ := e.ca.issue(t, "shop.example.test")
	e.putSecret(t, "default", "shop", map[string][]byte{messages.SecretTLSCert: chain, messages.SecretTLSKey: otherKey})
	reg, _, err := e.once(t, Config{Dir: dir, Names: []string{"shop"}})
	if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "certificate default/shop") {
		t.Errorf("mismatched pair: %v", err)
	}
	if got := readPair(t, dir, "default", "shop", e.ca.pool()); got.serial != serial {
		t.Errorf("after a bad Secret the files hold serial %s, want the last good %s", got.serial, serial)
	}
	if metric(t, reg, "acmeq_sync_certificates_failing") != 1 {
		t.Error("failing gauge not 1")
	}

	// Garbage in tls.crt.
	e.putSecret(t, "default", "shop", map[string][]byte{messages.SecretTLSCert: []byte("not pem"), messages.SecretTLSKey: otherKey})
	if _, _, err := e.once(t, Config{Dir: dir, Names: []string{"shop"}}); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("bad certificate: %v", err)
	}
	readPair(t, dir, "default", "shop", e.ca.pool())

	// A Secret sealed under another ACMEQ_SECRET_KEY does not open.
	other, _ := store.NewSealer(make([]byte, 32))
	a, err := New(e.js, other, Config{Dir: dir, Names: []string{"shop"}, Once: true, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.issue(t, "default", "shop", "shop.example.test")
	if err := a.Run(ctxT(t)); err == nil || !strings.Contains(err.Error(), "ACMEQ_SECRET_KEY") {
		t.Errorf("wrong key: %v", err)
	}
	if got := readPair(t, dir, "default", "shop", e.ca.pool()); got.serial != serial {
		t.Errorf("wrong key replaced the files: %s", got.serial)
	}
}

// A restart (or a second --once) rewrites nothing that is up to date and
// does not run the hook.
func TestSyncRestartRewritesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		e.putCertificate(t, "default", n, nil, n+".example.test")
		e.issue(t, "default", n, n+".example.test")
	}
	hookLog := filepath.Join(t.TempDir(), "hook.log")
	cfg := Config{Dir: dir, Exec: "echo ran >> " + hookLog}
	if _, _, err := e.once(t, cfg); err != nil {
		t.Fatal(err)
	}
	before := map[string]os.FileInfo{}
	for _, n := range []string{"a", "b", "c"} {
		fi, err := os.Stat(filepath.Join(dir, "default", n, FileKey))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = fi
	}
	reg, _, err := e.once(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := metric(t, reg, "acmeq_sync_certificates_synced_total"); got != 0 {
		t.Errorf("second run wrote %v certificates", got)
	}
	if got := metric(t, reg, "acmeq_sync_certificates"); got != 3 {
		t.Errorf("second run holds %v certificates, want 3", got)
	}
	for n, fi := range before {
		after, _ := os.Stat(filepath.Join(dir, "default", n, FileKey))
		if !os.SameFile(fi, after) || !after.ModTime().Equal(fi.ModTime()) {
			t.Errorf("%s was rewritten", n)
		}
	}
	if got := hookLines(hookLog); len(got) != 1 {
		t.Errorf("hook ran %d times, want once (first run only)", len(got))
	}
}

// A Certificate deleted from the store keeps its files, unless Prune.
func TestSyncDeletedCertificate(t *testing.T) {
	t.Parallel()
	e := setup(t)
	dir := t.TempDir()
	for _, n := range []string{"keep", "gone"} {
		e.putCertificate(t, "default", n, map[string]string{"edge": "yes"}, n+".example.test")
		e.issue(t, "default", n, n+".example.test")
	}
	r := e.start(t, Config{Dir: dir})
	eventually(t, 20*time.Second, "both written", func() bool { return len(onDisk(t, dir)) == 2 })
	if err := e.st.Delete(ctxT(t), messages.KindCertificate, "default", "gone"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the deletion logged", func() bool {
		return strings.Contains(r.log.String(), "was deleted from the store; keeping its files")
	})
	readPair(t, dir, "default", "gone", e.ca.pool())

	// With Prune: a deletion, and a label change that deselects.
	pdir := t.TempDir()
	e.putCertificate(t, "default", "gone", map[string]string{"edge": "yes"}, "gone.example.test")
	e.start(t, Config{Dir: pdir, Prune: true, LabelSelector: "edge=yes"})
	eventually(t, 20*time.Second, "both written", func() bool { return len(onDisk(t, pdir)) == 2 })
	if err := e.st.Delete(ctxT(t), messages.KindCertificate, "default", "gone"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "gone pruned", func() bool { return slices.Equal(onDisk(t, pdir), []string{"default/keep"}) })
	// The symlink goes first, then its versions: keep and its version stay.
	eventually(t, 20*time.Second, "gone's versions removed", func() bool {
		entries, _ := os.ReadDir(filepath.Join(pdir, "default"))
		return len(entries) == 2
	})
	e.putCertificate(t, "default", "keep", map[string]string{"edge": "no"}, "keep.example.test")
	eventually(t, 20*time.Second, "keep pruned after its label changed", func() bool { return len(onDisk(t, pdir)) == 0 })

	// Prune at start: files of certificates that are no longer in the store.
	if err := e.st.Delete(ctxT(t), messages.KindCertificate, "default", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.once(t, Config{Dir: dir, Prune: true}); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(t, dir); !slices.Equal(got, []string{"default/keep"}) {
		t.Errorf("after a pruning --once: %v", got)
	}
}

// A hook that fails or hangs is reported (error, log, metric), bounded by
// the timeout, and run again at the next change; the files stay written.
func TestSyncHookFailures(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.putCertificate(t, "default", "shop", nil, "shop.example.test")
	e.issue(t, "default", "shop", "shop.example.test")

	reg, _, err := e.once(t, Config{Dir: t.TempDir(), Exec: "echo reload refused >&2; exit 3"})
	if !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "reload refused") {
		t.Errorf("failing hook: %v", err)
	}
	if metric(t, reg, "acmeq_sync_hook_failures_total") != 1 {
		t.Error("hook failure not counted")
	}

	// A hook that hangs, with a child that hangs too, is killed.
	dir := t.TempDir()
	start := time.Now()
	reg, _, err = e.once(t, Config{Dir: dir, Exec: "sleep 60 & sleep 60", ExecTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), "did not finish within 300ms (killed)") {
		t.Errorf("hanging hook: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("a hanging hook held --once for %s", d)
	}
	if metric(t, reg, "acmeq_sync_hook_failures_total") != 1 {
		t.Error("hanging hook not counted as a failure")
	}
	readPair(t, dir, "default", "shop", e.ca.pool())

	// Long-running: a failed hook runs again at the next change.
	flag := filepath.Join(t.TempDir(), "ok")
	runs := filepath.Join(t.TempDir(), "runs")
	hookCmd := "echo run >> " + runs + "; test -e " + flag
	r := e.start(t, Config{Dir: t.TempDir(), Exec: hookCmd, RetryInterval: time.Hour})
	eventually(t, 20*time.Second, "a hook failure", func() bool { return metric(t, r.reg, "acmeq_sync_hook_failures_total") == 1 })
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.issue(t, "default", "shop", "shop.example.test")
	eventually(t, 20*time.Second, "the hook run again", func() bool { return len(hookLines(runs)) == 2 })
	eventually(t, 5*time.Second, "last sync after the hook succeeded", func() bool {
		return metric(t, r.reg, "acmeq_sync_last_sync_timestamp_seconds") > 0
	})
	if metric(t, r.reg, "acmeq_sync_hook_failures_total") != 1 || metric(t, r.reg, "acmeq_sync_hook_runs_total") != 2 {
		t.Error("hook metrics after the retry")
	}
	if !strings.Contains(r.log.String(), "reload hook failed") {
		t.Error("hook failure not logged")
	}
}
