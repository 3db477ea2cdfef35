package ui

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/acmeq/acmeq/internal/dev"
)

// browserTimeout bounds everything the browser does in a test.
const browserTimeout = 60 * time.Second

// newBrowser starts headless Chromium (Debian's chromium) on a private
// profile and returns a tab's context; the browser dies with the test. A
// missing chromium fails the test with the command that installs it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): install it with `apt-get install -y chromium` (scripts/deps.sh does)", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Without these, Chromium's own connections (updates, sync, QUIC
		// probes) are refused here and slow everything down.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // kills the browser and waits for it
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// saveArtifact writes a test artifact under the test's temp dir and, when
// ACMEQ_TEST_ARTIFACTS is set, there too.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	dirs := []string{t.TempDir()}
	if d := os.Getenv("ACMEQ_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("ACMEQ_TEST_ARTIFACTS: %v", err)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("artifact: %s", p)
	}
}

// TestBrowser: in a real browser, the certificate list shows a certificate
// requested while the page is open and sees it turn Ready without a
// reload; its describe page shows the issuance. Screenshots of both are
// kept as test artifacts.
func TestBrowser(t *testing.T) {
	f := setup(t, Config{LiveInterval: 200 * time.Millisecond}, dev.Options{})
	ctx := newBrowser(t)

	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.srv.URL+"/certificates"),
		chromedp.WaitVisible(css(`#certificates`)),
		// A mark on this page's window: a reload would lose it.
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[bool](`window.acmeqNoReload = "still here"; true`)(ctx, tg)
			return chromedp.Void{}, err
		},
		chromedp.WaitVisible(css(`#live-status.on`)),
	); err != nil {
		t.Fatalf("open the list: %v", err)
	}
	live, err := chromedp.Run(ctx, chromedp.Text(css(`#live-status`)))
	if err != nil || live != "live" {
		t.Fatalf("live status %q: %v", live, err)
	}

	f.request(t, "browser", map[string]string{"app": "browser"}, "browser.example.test", "www.browser.example.test")
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`tr#cert-default-browser[data-ready="True"]`))); err != nil {
		t.Fatalf("the requested certificate did not turn Ready on the open page: %v", err)
	}
	ready, err := chromedp.Run(ctx, chromedp.Text(css(`tr#cert-default-browser td.ready`)))
	if err != nil || strings.TrimSpace(ready) != "True" {
		t.Fatalf("Ready cell %q: %v", ready, err)
	}
	mark, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.acmeqNoReload || "reloaded"`))
	if err != nil || mark != "still here" {
		t.Fatalf("the page was reloaded (mark %q): %v", mark, err)
	}
	list, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "fleet-view-list.png", list)

	if err := chromedp.Do(ctx,
		chromedp.Click(css(`tr#cert-default-browser a`)),
		chromedp.WaitVisible(css(`pre.describe`)),
	); err != nil {
		t.Fatalf("open the describe page: %v", err)
	}
	describe, err := chromedp.Run(ctx, chromedp.Text(css(`pre.describe`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Name:         browser", "www.browser.example.test", "The certificate has been successfully issued"} {
		if !strings.Contains(describe, want) {
			t.Errorf("describe lacks %q:\n%s", want, describe)
		}
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveArtifact(t, "fleet-view-describe.png", shot)
}
