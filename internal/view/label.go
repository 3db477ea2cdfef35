package view

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// commonAcronyms stay upper case in labels, as in kubectl.
var commonAcronyms = []string{"API", "URL", "UID", "OSB", "GUID"}

// Label turns a JSON field name into the label kubectl describe prints
// for it (kubectl's smartLabelFor): camelCase words split and title-cased,
// with API, URL, UID, OSB and GUID upper case — "dnsNames" is "Dns Names",
// "authorizationURL" is "Authorization URL", "url" is "URL". A name with
// characters other than letters and '-' ("http01") is printed as it is.
func Label(field string) string {
	if strings.IndexFunc(field, func(r rune) bool { return !unicode.IsLetter(r) && r != '-' }) != -1 {
		return field
	}
	parts := splitCamel(field)
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p == "_" {
			continue
		}
		if slices.Contains(commonAcronyms, strings.ToUpper(p)) {
			p = strings.ToUpper(p)
		} else {
			p = titleWord(p)
		}
		out = append(out, p)
	}
	return strings.Join(out, " ")
}

func titleWord(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToTitle(r)) + s[n:]
}

// splitCamel splits at changes between lower case, upper case, digits and
// other characters, and moves the last letter of an upper-case run to the
// lower-case run after it ("TLSVerify" is "TLS", "Verify"), as the
// camelcase package kubectl uses does.
func splitCamel(src string) []string {
	if !utf8.ValidString(src) {
		return []string{src}
	}
	class := func(r rune) int {
		switch {
		case unicode.IsLower(r):
			return 1
		case unicode.IsUpper(r):
			return 2
		case unicode.IsDigit(r):
			return 3
		}
		return 4
	}
	var runs [][]rune
	last := 0
	for _, r := range src {
		c := class(r)
		if c == last && len(runs) > 0 {
			runs[len(runs)-1] = append(runs[len(runs)-1], r)
		} else {
			runs = append(runs, []rune{r})
		}
		last = c
	}
	for i := 0; i < len(runs)-1; i++ {
		if unicode.IsUpper(runs[i][0]) && unicode.IsLower(runs[i+1][0]) {
			runs[i+1] = append([]rune{runs[i][len(runs[i])-1]}, runs[i+1]...)
			runs[i] = runs[i][:len(runs[i])-1]
		}
	}
	out := make([]string, 0, len(runs))
	for _, r := range runs {
		if len(r) > 0 {
			out = append(out, string(r))
		}
	}
	return out
}
