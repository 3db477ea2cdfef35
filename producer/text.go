package producer

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxEcho bounds how much of a user's value an error message repeats, in
// bytes: a hostile manifest must not make errors as large as itself.
const maxEcho = 64

// quote renders a user's value for an error message: quoted with Go
// escapes (so control characters and newlines cannot forge output), and
// cut to maxEcho bytes with "..." when longer.
func quote(s string) string {
	if len(s) <= maxEcho {
		return strconv.Quote(s)
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut] + "...")
}

// quoteByte renders one byte of the input for an error message: '}' or
// 0x00.
func quoteByte(b byte) string {
	if b >= 0x20 && b < 0x7f {
		return strconv.QuoteRune(rune(b))
	}
	return fmt.Sprintf("byte 0x%02x", b)
}

// sizeString renders a size in bytes as people read it: 960 KiB, 1.3 MiB.
// Fractions are rounded up, so that a size over a limit never reads as the
// limit.
func sizeString(n int) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
	)
	tenths := func(unit int) float64 { return float64((n*10+unit-1)/unit) / 10 }
	switch {
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", tenths(mib))
	case n >= kib && n%kib == 0:
		return fmt.Sprintf("%d KiB", n/kib)
	case n >= kib:
		return fmt.Sprintf("%.1f KiB", tenths(kib))
	}
	return fmt.Sprintf("%d bytes", n)
}
