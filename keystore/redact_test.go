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
		if strings.Contains(got, secretPart(key)) || strings.Contains(got, secretPart(key)[:20]) {
			t.Errorf("%s: the secret survived: %q", c.name, got)
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
	f.Fuzz(func(t *testing.T, s string) {
		out, found := RedactKeys(s)
		if !found && out != s {
			t.Fatalf("changed without finding a key: %q -> %q", s, out)
		}
		// Whatever is left has no key in it.
		if again, more := RedactKeys(out); more {
			t.Fatalf("a key survived redaction: %q -> %q -> %q", s, out, again)
		}
		// Every well-formed key in the input is gone from the output.
		for i := 0; i+fm.KeyLen() <= len(s); i++ {
			if p, err := fm.Parse(s[i : i+fm.KeyLen()]); err == nil && strings.Contains(out, p.Key) {
				t.Fatalf("key %q survived in %q", p.Key, out)
			}
		}
	})
}
