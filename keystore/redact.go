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
// it found one. Keys are found in percent-encoded form too ("kg%5Fabc…",
// "%6Bg_…"), as they appear in a logged URI. Strings without an
// underscore, plain or encoded, are returned at once: a key always has
// two.
//
// A key is a run of [A-Za-z0-9_] whose '_'-separated parts end in a
// 12-character id followed by the secret. A prefix may itself contain a
// 12-character part ("kg_production01"), so every part of at least
// minRedactSecret characters that follows a 12-character part (itself not
// the first part) is masked: with such a prefix the public id is masked
// as well, never the other way round.
func RedactKeys(s string) (string, bool) {
	if strings.IndexByte(s, '_') < 0 && !strings.Contains(s, "%5F") && !strings.Contains(s, "%5f") {
		return s, false
	}
	var out strings.Builder
	copied := 0 // bytes of s already written to out
	// The current part of a run: where it starts, how many characters it
	// has, and its index in the run; prevLen is the previous part's
	// length. An escape %XX counts as the character it encodes.
	partStart, partLen, partIdx, prevLen := 0, 0, 0, -1
	endPart := func(end int) {
		if partIdx >= 2 && prevLen == IDLen && partLen >= minRedactSecret && s[partStart:end] != Redacted {
			out.WriteString(s[copied:partStart])
			out.WriteString(Redacted)
			copied = end
		}
	}
	for i := 0; i < len(s); {
		c, w := logicalChar(s, i)
		switch {
		case isBase62(c):
			partLen++
		case c == '_':
			endPart(i)
			prevLen, partLen, partIdx = partLen, 0, partIdx+1
			partStart = i + w
		default:
			endPart(i)
			prevLen, partLen, partIdx = -1, 0, 0
			partStart = i + w
		}
		i += w
	}
	endPart(len(s))
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
