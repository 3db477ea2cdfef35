//go:build !dev

package main

import (
	"strings"
	"testing"
)

// TestNoDevTools: a binary built without the dev tag answers acmeq dev
// and acmeq bench, whatever their flags, with how to get them.
func TestNoDevTools(t *testing.T) {
	for _, args := range [][]string{{"dev"}, {"dev", "--certificates", "20", "--out", "certs"}, {"bench", "-n", "200", "-rounds", "3"}} {
		code, out, errOut := runCLI(t, args...)
		want := "go run -tags dev ./cmd/acmeq " + args[0]
		if code != 1 || out != "" || !strings.Contains(errOut, "built without the dev tools") || !strings.Contains(errOut, want) {
			t.Errorf("acmeq %s: exit %d, stdout %q, stderr %q; want %q", strings.Join(args, " "), code, out, errOut, want)
		}
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.Contains(out, "without dev tools") {
		t.Errorf("acmeq version = %d %q", code, out)
	}
}
