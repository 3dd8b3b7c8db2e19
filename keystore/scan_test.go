package keystore

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestFindKeys(t *testing.T) {
	kg := mustFormat(t, "kg")
	live := mustFormat(t, "acme_live")
	a, _, _ := kg.Generate()
	b, _, _ := live.Generate()
	c, _, _ := kg.Generate()
	broken := a[:len(a)-1] + string("AB"[strings.IndexByte("AB", a[len(a)-1])+1&1])
	text := "config:\n  token: " + a + "\n" +
		"curl -H 'Authorization: Bearer " + b + "' https://api\n" +
		"typo " + broken + " and glued tokenkg" + c[2:] + "\n" +
		"url?api_key=" + c + "&x=1 " + c + "\n" +
		strings.Repeat("x", 70) + "\n"
	got := FindKeys([]byte(text))
	want := []struct {
		line   int
		prefix string
		key    string
	}{{2, "kg", a}, {3, "acme_live", b}, {4, "kg", c}, {5, "kg", c}, {5, "kg", c}}
	if len(got) != len(want) {
		t.Fatalf("found %d keys, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Line != w.line || got[i].Prefix != w.prefix || got[i].Key.Key != w.key {
			t.Errorf("key %d: line %d prefix %q, want line %d prefix %q", i, got[i].Line, got[i].Prefix, w.line, w.prefix)
		}
	}
	// A key glued to a word ("tokenkg_…") is found from its real
	// prefix; a broken checksum is no key.
	for _, f := range got {
		if f.Key.Key == broken {
			t.Error("a key with a broken checksum was found")
		}
	}
}

// TestGitleaksRule: the documented gitleaks rule's pattern is KeyPattern
// and matches keys.
func TestGitleaksRule(t *testing.T) {
	b, err := os.ReadFile("../docs/gitleaks.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^regex = '''(.*)'''$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no regex in docs/gitleaks.toml")
	}
	if want := `\b(` + KeyPattern + `)\b`; string(m[1]) != want {
		t.Fatalf("the gitleaks rule's regex is %s, want %s", m[1], want)
	}
	re := regexp.MustCompile(string(m[1]))
	for _, prefix := range []string{"kg", "acme_live"} {
		key, _, _ := mustFormat(t, prefix).Generate()
		if got := re.FindStringSubmatch("token=" + key + ";"); got == nil || got[1] != key {
			t.Errorf("the rule does not find %s…: %q", key[:len(prefix)+5], got)
		}
	}
	doc, err := os.ReadFile("../docs/leaked-keys.md")
	if err != nil || !strings.Contains(string(doc), KeyPattern) {
		t.Errorf("docs/leaked-keys.md does not give the pattern: %v", err)
	}
}
