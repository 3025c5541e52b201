package ota

import (
	"strings"
	"unicode"
)

// NormalizeVersion trims surrounding white space and one leading "v" or "V",
// the form in which versions are compared (DESIGN.md section 4).
func NormalizeVersion(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 1 && (v[0] == 'v' || v[0] == 'V') {
		v = v[1:]
	}
	return v
}

// SameVersion reports whether a and b name the same version: identical after
// NormalizeVersion. Every match of versions in otactl uses it.
func SameVersion(a, b string) bool {
	return NormalizeVersion(a) == NormalizeVersion(b)
}

// CompareVersions orders two versions for spotting downgrades and sorting.
// Segments split on '.' and '-' are compared left to right, as numbers where
// both are digits, a number after text, and as text otherwise, so "3.10" is
// newer than "3.9"; after equal segments, a further textual one marks a
// pre-release, older. Build metadata after '+' does not order versions.
// ok is false when either version has no digit at all: then no order is
// assumed. cmp is -1, 0 or 1 as a is older than, equal to or newer than b.
func CompareVersions(a, b string) (cmp int, ok bool) {
	a, b = NormalizeVersion(a), NormalizeVersion(b)
	if !hasDigit(a) || !hasDigit(b) {
		return 0, false
	}
	// Build metadata ("+build5") names a build, not a newer version.
	a, _, _ = strings.Cut(a, "+")
	b, _, _ = strings.Cut(b, "+")
	split := func(r rune) bool { return r == '.' || r == '-' || r == '+' }
	as, bs := strings.FieldsFunc(a, split), strings.FieldsFunc(b, split)
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := compareSegment(as[i], bs[i]); c != 0 {
			return c, true
		}
	}
	switch {
	case len(as) < len(bs):
		return -extraOrder(bs[len(as)]), true
	case len(as) > len(bs):
		return extraOrder(as[len(bs)]), true
	}
	return 0, true
}

// extraOrder orders a version with more segments against its prefix: a
// numeric segment makes it newer ("2.0.0.1" after "2.0.0"), a textual one
// marks a pre-release, older ("2.0.0-rc1" before "2.0.0").
func extraOrder(seg string) int {
	if isDigits(seg) {
		return 1
	}
	return -1
}

// compareSegment orders two segments: numerically when both are digits, a
// number after text (a pre-release tag sorts before any release number), and
// otherwise run by run of letters and digits, so "rc2" comes before "rc10".
func compareSegment(a, b string) int {
	switch da, db := isDigits(a), isDigits(b); {
	case da && db:
		return compareNumbers(a, b)
	case da:
		return 1
	case db:
		return -1
	}
	for a != "" && b != "" {
		ra, rb := leadingRun(a), leadingRun(b)
		var c int
		if isDigits(ra) && isDigits(rb) {
			c = compareNumbers(ra, rb)
		} else {
			c = strings.Compare(ra, rb)
		}
		if c != 0 {
			return c
		}
		a, b = a[len(ra):], b[len(rb):]
	}
	return strings.Compare(a, b)
}

// compareNumbers compares two runs of digits of any length as numbers.
func compareNumbers(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// leadingRun returns s's first run of digits, or of anything but digits.
func leadingRun(s string) string {
	digit := s[0] >= '0' && s[0] <= '9'
	for i := 1; i < len(s); i++ {
		if (s[i] >= '0' && s[i] <= '9') != digit {
			return s[:i]
		}
	}
	return s
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func hasDigit(s string) bool {
	return strings.IndexFunc(s, unicode.IsDigit) >= 0
}
