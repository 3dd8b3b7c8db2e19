package keystore

import (
	"bytes"
	"regexp"
)

// KeyPattern matches every string shaped like a Keygate key of any
// prefix: a prefix of letters, digits and single underscores, "_", the
// 12-character id, "_", and 49 characters of secret and checksum. A
// match is a key only if its checksum holds (FindKeys checks it), which
// random text passes once in 2^32 tries. docs/leaked-keys.md gives it to
// secret scanners.
const KeyPattern = `[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*_[A-Za-z0-9]{12}_[A-Za-z0-9]{49}`

var keyPattern = regexp.MustCompile(`(?:^|[^A-Za-z0-9_])(` + KeyPattern + `)(?:$|[^A-Za-z0-9_])`)

// FoundKey is a well-formed key found in some text.
type FoundKey struct {
	// Line is the 1-based line it starts on.
	Line int
	// Prefix is the key's prefix; Key the key (never to be printed).
	Prefix string
	Key    ParsedKey
}

// FindKeys returns every well-formed Keygate key in b whose checksum
// holds, whatever its prefix, in order. The checksum covers the prefix,
// so a key glued to a word ("tokenkg_…") is found from the start of its
// real prefix.
func FindKeys(b []byte) []FoundKey {
	var out []FoundKey
	line, counted := 1, 0
	for start := 0; start < len(b); {
		m := keyPattern.FindSubmatchIndex(b[start:])
		if m == nil {
			break
		}
		s, e := start+m[2], start+m[3]
		if k, prefix, ok := checkCandidate(string(b[s:e])); ok {
			line += bytes.Count(b[counted:s], []byte{'\n'})
			counted = s
			out = append(out, FoundKey{Line: line, Prefix: prefix, Key: k})
		}
		// The trailing separator may start the next match.
		start = e
	}
	return out
}

// checkCandidate finds the key in a match: the longest tail of it whose
// prefix is valid and whose checksum holds.
func checkCandidate(s string) (ParsedKey, string, bool) {
	body := len(s) - bodyLen // where the id starts
	for i := max(0, body-1-MaxPrefixLen); i <= body-2; i++ {
		prefix := s[i : body-1]
		if ValidatePrefix(prefix) != nil {
			continue
		}
		f := Format{prefix: prefix + "_"}
		if k, err := f.Parse(s[i:]); err == nil {
			return k, prefix, true
		}
	}
	return ParsedKey{}, "", false
}
