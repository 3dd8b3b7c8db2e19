package keystore

import (
	"hash/crc32"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary strings to the parser. Whatever it accepts must
// have the exact documented shape and a correct checksum; it must never
// panic.
func FuzzParse(f *testing.F) {
	format := mustFormat(f, "kg")
	for i := 0; i < 4; i++ {
		key, _, _ := format.Generate()
		f.Add(key)
		f.Add(key[:len(key)-1] + "x")
	}
	f.Add("")
	f.Add("kg_")
	f.Add("kg_____________________________________________________________")
	f.Add("Bearer kg_abc")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := format.Parse(s)
		if err != nil {
			if p != (ParsedKey{}) {
				t.Fatalf("Parse returned a key along with error %v", err)
			}
			return
		}
		if len(s) != format.KeyLen() || s[:3] != "kg_" || s[3+IDLen] != '_' {
			t.Fatalf("Parse accepted %q of the wrong shape", s)
		}
		for i := 3; i < len(s); i++ {
			if i != 3+IDLen && !isBase62(s[i]) {
				t.Fatalf("Parse accepted %q with a bad character", s)
			}
		}
		var want [checksumLen]byte
		encodeChecksum(want[:], crc32.ChecksumIEEE([]byte(s[:len(s)-checksumLen])))
		if string(want[:]) != s[len(s)-checksumLen:] {
			t.Fatalf("Parse accepted %q with a wrong checksum", s)
		}
		if p.ID != s[3:3+IDLen] || !ValidID(p.ID) {
			t.Fatalf("Parse returned id %q for %q", p.ID, s)
		}
	})
}

// FuzzRedactDSN: RedactDSN runs on whatever an operator configured,
// often in an error path; it must never panic.
func FuzzRedactDSN(f *testing.F) {
	for _, s := range []string{
		"postgres://u:pw@h/db?sslpassword=x&sslmode=require#f",
		"postgres://u:pw@[::1/db?password=x",
		"host=h password='a b\\' c' sslpassword = x",
		"password='",
		"password=\\",
		"sqlite:/a@b/c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { RedactDSN(s) })
}

// FuzzParseImport feeds arbitrary files to both import parsers. They must
// never panic; every row and every bad row they report has the number of
// a line the file has, and a bad row's message never quotes a key the
// file holds on another, good line.
func FuzzParseImport(f *testing.F) {
	f.Add("key,name,scopes,metadata.plan\nlegacy-key-0000000001,a,\"r w\",gold\n", true)
	f.Add("key,name\n\"unterminated,x\n", true)
	f.Add(`{"key":"legacy-key-0000000001","name":"a","metadata":{"x":"y"}}`+"\n[1]\n{", false)
	f.Fuzz(func(t *testing.T, in string, csvFormat bool) {
		format := ImportJSONL
		if csvFormat {
			format = ImportCSV
		}
		rows, bad, err := ParseImport(strings.NewReader(in), format)
		if err != nil {
			return
		}
		lines := strings.Count(in, "\n") + 1
		for _, r := range rows {
			if r.Line < 1 || r.Line > lines {
				t.Fatalf("row on line %d of %d", r.Line, lines)
			}
		}
		for _, b := range bad {
			if b.Line < 1 || b.Line > lines {
				t.Fatalf("bad row on line %d of %d: %v", b.Line, lines, b)
			}
			for _, r := range rows {
				if len(r.Key) >= MinLegacyKeyLen && strings.Contains(b.Error(), r.Key) {
					t.Fatalf("bad row %v quotes a key", b)
				}
			}
		}
	})
}

// FuzzFindKeys: FindKeys never panics, and everything it finds is in the
// text, on the line it says, and parses with its prefix.
func FuzzFindKeys(f *testing.F) {
	key, _, _ := mustFormat(f, "kg").Generate()
	f.Add("token: " + key + "\nnext")
	f.Add("x_" + key + "_y " + key[:40])
	f.Add(strings.Repeat("a_", 40) + key)
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range FindKeys([]byte(s)) {
			i := strings.Index(s, k.Key.Key)
			if i < 0 {
				t.Fatalf("found %q, which is not in the text", k.Key.Key)
			}
			if _, err := mustFormat(t, k.Prefix).Parse(k.Key.Key); err != nil {
				t.Fatalf("found %q, which does not parse: %v", k.Key.Key, err)
			}
			if line := strings.Count(s[:i], "\n") + 1; k.Line < line {
				t.Fatalf("found on line %d, first in the text on line %d", k.Line, line)
			}
		}
	})
}
