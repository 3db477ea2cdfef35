package messages

import (
	"strings"
	"testing"
)

func TestDerivedName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxObjectNameLength)
	tests := []struct {
		base, suffix string
		want         string // "" checks only the rules
	}{
		{"shop", "-1", "shop-1"},
		{strings.Repeat("a", 198), "-1", strings.Repeat("a", 198) + "-1"},
		{strings.Repeat("a", 199), "-1", ""},
		{long, "-12-key", ""},
		{long, "-4294967295", ""},
		{strings.Repeat("a-", 99) + "b", "-1-2745722290-99", ""},
	}
	for _, tt := range tests {
		got := DerivedName(tt.base, tt.suffix)
		if tt.want != "" && got != tt.want {
			t.Errorf("DerivedName(%d chars, %q) = %q, want %q", len(tt.base), tt.suffix, got, tt.want)
		}
		if err := ValidateObjectName("name", got); err != nil {
			t.Errorf("DerivedName(%d chars, %q) = %q: %v", len(tt.base), tt.suffix, got, err)
		}
		if !strings.HasSuffix(got, tt.suffix) {
			t.Errorf("DerivedName(%d chars, %q) = %q lost its suffix", len(tt.base), tt.suffix, got)
		}
		if got != DerivedName(tt.base, tt.suffix) {
			t.Errorf("DerivedName is not deterministic")
		}
	}
	// Two long bases that share their first 190 characters stay distinct.
	a, b := DerivedName(long+"x", "-1"), DerivedName(long+"y", "-1")
	if a == b {
		t.Errorf("distinct long bases derive the same name %q", a)
	}
}
