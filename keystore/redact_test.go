package keystore

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedactKeys(t *testing.T) {
	f, _ := NewFormat("")
	key, id, _ := f.Generate()
	live, _ := NewFormat("acme_live")
	liveKey, liveID, _ := live.Generate()
	prod, _ := NewFormat("kg_production01")
	prodKey, _, _ := prod.Generate()
	twelve, _ := NewFormat("acmeliveprod")
	twelveKey, _, _ := twelve.Generate()
	kept := "kg_" + id + "_" + Redacted
	for _, c := range []struct{ name, in, want string }{
		{"alone", key, kept},
		{"bearer", "Bearer " + key, "Bearer " + kept},
		{"query", "/orders?page=2&api_key=" + key + "&x=1", "/orders?page=2&api_key=" + kept + "&x=1"},
		{"percent-encoded underscore", "/o?k=" + strings.ReplaceAll(key, "_", "%5F"), "/o?k=kg%5F" + id + "%5F" + Redacted},
		{"percent-encoded letters", "/o?k=" + url.PathEscape(key[:5]) + "%" + strings.ToUpper(hexByte(key[5])) + key[6:], "/o?k=" + key[:5] + "%" + strings.ToUpper(hexByte(key[5])) + key[6:len(key)-49-1] + "_" + Redacted},
		{"cookie", "session=1; api_key=" + key + "; theme=dark", "session=1; api_key=" + kept + "; theme=dark"},
		{"two keys", key + "," + key, kept + "," + kept},
		{"other prefix", liveKey, "acme_live_" + liveID + "_" + Redacted},
		// A prefix part of 12 characters looks like an id: the real id is
		// masked too, the secret never left.
		{"12-character prefix part", prodKey, "kg_production01_" + Redacted + "_" + Redacted},
		{"12-character prefix", "x_" + twelveKey, "x_acmeliveprod_" + Redacted + "_" + Redacted},
		{"wrong checksum", key[:len(key)-1] + "x", kept},
		{"truncated", key[:len(key)-30], kept},
		{"in json", `{"k":"` + key + `"}`, `{"k":"` + kept + `"}`},
		{"no key", "GET /orders?page=2 user_id=abc", "GET /orders?page=2 user_id=abc"},
		{"short tail", "x_abcdefghijkl_short", "x_abcdefghijkl_short"},
		{"id too long", "x_abcdefghijklm_" + strings.Repeat("a", 49), "x_abcdefghijklm_" + strings.Repeat("a", 49)},
		{"empty", "", ""},
	} {
		got, found := RedactKeys(c.in)
		if got != c.want {
			t.Errorf("%s: RedactKeys(%q)\n = %q\nwant %q", c.name, c.in, got, c.want)
		}
		if found != (c.in != c.want) {
			t.Errorf("%s: found = %v", c.name, found)
		}
		for _, k := range []string{key, liveKey, prodKey, twelveKey} {
			if strings.Contains(got, secretPart(k)[:16]) {
				t.Errorf("%s: a secret survived: %q", c.name, got)
			}
		}
	}
}

func hexByte(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&15]})
}

// secretPart is the secret and checksum of a default-prefix key.
func secretPart(key string) string { return key[len(key)-49:] }

func FuzzRedactKeys(f *testing.F) {
	fm, _ := NewFormat("")
	key, _, _ := fm.Generate()
	f.Add(key)
	f.Add("a=" + key + "&b=" + key)
	f.Add("kg%5F" + key[3:])
	prod, _ := NewFormat("kg_production01")
	pkey, _, _ := prod.Generate()
	f.Add("k=" + pkey)
	f.Fuzz(func(t *testing.T, s string) {
		out, found := RedactKeys(s)
		if !found && out != s {
			t.Fatalf("changed without finding a key: %q -> %q", s, out)
		}
		// Whatever is left has no key in it.
		if again, more := RedactKeys(out); more {
			t.Fatalf("a key survived redaction: %q -> %q -> %q", s, out, again)
		}
		// Every well-formed key in the input, whatever its prefix, is
		// gone from the output: no 49-character secret-and-checksum of
		// one survives.
		// (The same 49 characters may stand elsewhere in the input on
		// their own, not as part of a key: those may stay.)
		keys := map[string]int{}
		for i := 1; i+bodyLen <= len(s); i++ {
			if s[i-1] != '_' {
				continue
			}
			body := s[i : i+bodyLen]
			for _, prefix := range prefixCandidates(trailingPrefix(s[:i])) {
				if f, err := NewFormat(prefix); err == nil {
					if _, err := f.Parse(prefix + "_" + body); err == nil {
						keys[body[len(body)-49:]]++
						break
					}
				}
			}
		}
		for secret, n := range keys {
			if strings.Count(out, secret) > strings.Count(s, secret)-n {
				t.Fatalf("a key's secret %q survived in %q", secret, out)
			}
		}
	})
}

// trailingPrefix returns the key prefix that ends s: its trailing run of
// [A-Za-z0-9_] without the final '_'.
func trailingPrefix(s string) string {
	i := len(s)
	for i > 0 && (isBase62(s[i-1]) || s[i-1] == '_') {
		i--
	}
	return strings.TrimSuffix(s[i:], "_")
}

// prefixCandidates returns run and each of its suffixes that starts after
// a '_': the prefixes a key ending a text could have.
func prefixCandidates(run string) []string {
	out := []string{run}
	for i := 0; i < len(run); i++ {
		if run[i] == '_' {
			out = append(out, run[i+1:])
		}
	}
	return out
}
