package stack

import (
	"strings"
	"testing"
)

func TestStartRedisMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartRedis(t.TempDir())
	const want = "stack: redis-server not found in PATH: install it (Debian/Ubuntu: apt-get install -y redis-server)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{limit: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnop", "qr"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "klmnopqr" {
		t.Fatalf("String() = %q, want %q", got, "klmnopqr")
	}
	if !strings.HasSuffix(b.String(), "qr") {
		t.Fatal("lost newest bytes")
	}
}

func TestSplitTXT(t *testing.T) {
	long := strings.Repeat("x", 600)
	parts := splitTXT(long)
	if len(parts) != 3 || len(parts[0]) != 255 || len(parts[1]) != 255 || len(parts[2]) != 90 {
		t.Fatalf("splitTXT lengths wrong: %d parts", len(parts))
	}
	if got := splitTXT("short"); len(got) != 1 || got[0] != "short" {
		t.Fatalf("splitTXT(short) = %q", got)
	}
}
