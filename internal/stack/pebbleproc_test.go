package stack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fix applies to the Pebble acmeq's go.mod selects, and refuses any
// other text rather than building an unpatched Pebble.
func TestPatchPebbleStore(t *testing.T) {
	dir, err := ModuleDir(t.Context(), "", PebbleModule)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(pebbleStoreFile)))
	if err != nil {
		t.Fatal(err)
	}
	patched, err := PatchPebbleStore(src)
	if err != nil {
		t.Fatalf("the module cache's %s: %v", pebbleStoreFile, err)
	}
	if !bytes.Contains(patched, []byte("m.RUnlock()\n\tfor _, authz := range authzs {")) || bytes.Contains(patched, []byte(pebbleFindValidAuthzOld)) {
		t.Errorf("patch not applied:\n%s", patched)
	}
	for name, in := range map[string][]byte{
		"changed": bytes.Replace(src, []byte("defer m.RUnlock()\n\tfor _, authz := range m.authorizationsByID"), []byte("defer m.RUnlock()\n\tfor _, a := range m.authorizationsByID"), 1),
		"twice":   append(append([]byte{}, src...), []byte(pebbleFindValidAuthzOld)...),
		"patched": patched,
		"empty":   nil,
	} {
		if _, err := PatchPebbleStore(in); !errors.Is(err, ErrPebblePatch) {
			t.Errorf("%s source: err = %v, want ErrPebblePatch", name, err)
		}
	}
}

// The patched Pebble builds from the module cache and serves its directory
// and its root as a process of its own; a second build comes from the
// cache.
func TestPebbleProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin, err := BuildPebble(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	again, err := BuildPebble(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if fi2, err := os.Stat(again); err != nil || again != bin || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("second build = %s (%v), want the cached %s", again, err, bin)
	}
	dir := t.TempDir()
	p, err := StartPebbleProcess(bin, dir, PebbleConfig{HTTPPort: 5002, TLSPort: 5001, NonceRejectPercent: 0}, filepath.Join(dir, "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	res, err := pebbleProbeClient(p.TLSCertPEM).Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "newOrder") {
		t.Errorf("directory: %s %s", res.Status, body)
	}
	root, err := p.RootPEM()
	if err != nil || !bytes.Contains(root, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("root: %v %q", err, root)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("pebble did not exit")
	}
}
