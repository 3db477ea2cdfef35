package view

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Escape makes s safe to print in a table or a describe page: every rune
// that is not printable (strconv.IsPrint: control characters such as
// newline, carriage return, tab and ESC, and format characters such as
// the bidirectional overrides) is written as Go escapes it in a quoted
// string ("\n", "\x1b", "\u202e"), and each byte that is not UTF-8 as
// "\xff". Everything else, quotes and backslashes included, is kept as it
// is, so ordinary text reads as it was written. Labels, reasons and
// messages come from users and CAs: escaped, none of them can start a
// new line that looks like another row, rewrite the screen, or hide text.
// Only tables and describe pages are escaped; json and yaml output is
// exact.
func Escape(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || !strconv.IsPrint(r) })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for rest := s[i:]; rest != ""; {
		r, n := utf8.DecodeRuneInString(rest)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, rest[0])
		case strconv.IsPrint(r):
			b.WriteString(rest[:n])
		default:
			q := strconv.QuoteRune(r) // '\n', '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		rest = rest[n:]
	}
	return b.String()
}
