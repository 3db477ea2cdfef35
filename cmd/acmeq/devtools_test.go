//go:build dev

package main

import (
	"strings"
	"testing"
)

// TestDevTools: built with the dev tag, acmeq dev and acmeq bench are the
// real commands, with their flags (single-dash Go style included).
func TestDevTools(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--certificates", "-1"}, "--certificates must not be negative"},
		{[]string{"dev", "-workers", "0"}, "--workers must be at least 1"},
		{[]string{"bench", "-rounds", "0"}, "--rounds must be positive"},
		{[]string{"bench", "-n", "0"}, "-n, --concurrency"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("acmeq %s: exit %d, stderr %q; want %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.Contains(out, "with dev tools") {
		t.Errorf("acmeq version = %d %q", code, out)
	}
}
