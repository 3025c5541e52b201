package ota

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLen is the longest product or device key, in characters.
const MaxKeyLen = 64

// MaxVersionLen is the longest firmware version or name, in characters.
const MaxVersionLen = 64

// ValidateKey checks a product or device key against the rules of DESIGN.md
// section 8: 1 to 64 characters of valid UTF-8, no control characters, no
// spaces and none of / + # $ (they would change the meaning of an MQTT topic).
// what names the key in the error, for example "device key".
// Keys are validated before any topic is built from them.
func ValidateKey(what, key string) error {
	if key == "" {
		return Invalid("%s is empty", what)
	}
	if !utf8.ValidString(key) {
		return Invalid("%s %q is not valid UTF-8", what, key)
	}
	if n := utf8.RuneCountInString(key); n > MaxKeyLen {
		return Invalid("%s %q is %d characters long; the limit is %d", what, shorten(key), n, MaxKeyLen)
	}
	for _, r := range key {
		switch {
		case unicode.IsControl(r):
			return Invalid("%s %q contains a control character", what, key)
		case unicode.IsSpace(r):
			return Invalid("%s %q contains a space", what, key)
		case strings.ContainsRune("/+#$", r):
			return Invalid("%s %q contains %q, which MQTT topics reserve", what, key, r)
		}
	}
	return nil
}

// ValidateLabel checks a firmware version or name: 1 to 64 characters of
// valid UTF-8 with no control characters.
func ValidateLabel(what, s string) error {
	if strings.TrimSpace(s) == "" {
		return Invalid("%s is empty", what)
	}
	if !utf8.ValidString(s) {
		return Invalid("%s %q is not valid UTF-8", what, s)
	}
	if n := utf8.RuneCountInString(s); n > MaxVersionLen {
		return Invalid("%s %q is %d characters long; the limit is %d", what, shorten(s), n, MaxVersionLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return Invalid("%s %q contains a control character", what, s)
		}
	}
	return nil
}

// shorten keeps error messages about very long inputs on one readable line.
func shorten(s string) string {
	const keep = 24
	if utf8.RuneCountInString(s) <= keep {
		return s
	}
	r := []rune(s)
	return string(r[:keep]) + "…"
}

// ValidateReportedVersion checks a version a device reported: at most 64
// characters with no control characters. Unlike a firmware version it may
// be empty: that is what some devices say, and it matches no firmware.
func ValidateReportedVersion(v string) error {
	if v == "" {
		return nil
	}
	return ValidateLabel("reported version", v)
}
