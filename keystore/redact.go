package keystore

import "strings"

// Redacted replaces the secret part of a key found by RedactKeys.
const Redacted = "REDACTED"

// minRedactSecret is the shortest run after "<prefix>_<id>_" that
// RedactKeys treats as a (possibly truncated) secret: a truncated key still
// gives most of its secret away, while an identifier that merely looks
// like "x_<12 characters>_" followed by a short word is left alone.
const minRedactSecret = 8

// RedactKeys returns s with the secret of every Keygate key in it (any
// prefix, the checksum need not match) replaced by Redacted, and whether
// it found one. The prefix and the public key id are kept, so a log line
// still says which key was used. Keys are found in percent-encoded form
// too ("kg%5Fabc…", "%6Bg_…"), as they appear in a logged URI. Strings
// without an underscore, plain or encoded, are returned at once: a key
// always has two.
func RedactKeys(s string) (string, bool) {
	if strings.IndexByte(s, '_') < 0 && !strings.Contains(s, "%5F") && !strings.Contains(s, "%5f") {
		return s, false
	}
	var out strings.Builder
	copied := 0 // bytes of s already written to out
	// A small state machine over the characters of s, an escape %XX
	// counting as the character it encodes.
	idRun := -1  // base62 characters since the last '_'; -1 before any '_'
	secret := -1 // byte offset where a candidate secret starts, or -1
	secretLen := 0
	flush := func(end int) {
		if secret >= 0 && secretLen >= minRedactSecret && s[secret:end] != Redacted {
			out.WriteString(s[copied:secret])
			out.WriteString(Redacted)
			copied = end
		}
		secret, secretLen = -1, 0
	}
	for i := 0; i < len(s); {
		c, w := logicalChar(s, i)
		switch {
		case isBase62(c):
			if secret >= 0 {
				secretLen++
			} else if idRun >= 0 {
				idRun++
			}
		case c == '_':
			flush(i)
			if idRun == IDLen {
				secret = i + w
			}
			idRun = 0
		default:
			flush(i)
			idRun = -1
		}
		i += w
	}
	flush(len(s))
	if copied == 0 {
		return s, false
	}
	out.WriteString(s[copied:])
	return out.String(), true
}

// logicalChar returns the character at s[i] and its width in bytes: a
// percent escape of a key character counts as that character.
func logicalChar(s string, i int) (byte, int) {
	if s[i] == '%' && i+2 < len(s) {
		if hi, ok := unhex(s[i+1]); ok {
			if lo, ok := unhex(s[i+2]); ok {
				if c := hi<<4 | lo; isBase62(c) || c == '_' {
					return c, 3
				}
			}
		}
	}
	return s[i], 1
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
