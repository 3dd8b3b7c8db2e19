package keystore

import (
	"strings"
	"testing"
	"time"
)

func TestParseImportCSV(t *testing.T) {
	in := "\xef\xbb\xbfKey, Name ,owner,scopes,expires_at,not_before,allow_cidrs,metadata.Plan,metadata.region\n" +
		"legacy-key-0000000001,billing,acme,\"read write,admin\",2027-01-31T12:00:00Z,2026-12-01,\"10.0.0.0/8 2001:db8::/32\",gold,\n" +
		"\"legacy-key-0000000002\",\"multi\nline name\",,,,,,,eu\n"
	rows, bad, err := ParseImport(strings.NewReader(in), ImportCSV)
	if err != nil || len(bad) != 0 || len(rows) != 2 {
		t.Fatalf("rows %+v, bad %v, err %v", rows, bad, err)
	}
	r := rows[0]
	if r.Line != 2 || r.Key != "legacy-key-0000000001" || r.Params.Name != "billing" || r.Params.Owner != "acme" ||
		strings.Join(r.Params.Scopes, "|") != "read|write|admin" || !r.Params.ExpiresAt.Equal(time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC)) ||
		!r.Params.NotBefore.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || len(r.Params.AllowCIDRs) != 2 ||
		len(r.Params.Metadata) != 1 || r.Params.Metadata["Plan"] != "gold" {
		t.Fatalf("row 1: %+v", r)
	}
	if r := rows[1]; r.Line != 3 || r.Params.Name != "multi\nline name" || r.Params.Metadata["region"] != "eu" || r.Params.Scopes != nil {
		t.Fatalf("row 2: %+v", r)
	}
}

func TestParseImportCSVErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "the file is empty"},
		{"name\nx\n", `no "key" column`},
		{"key,name,colour\n", `unknown column "colour"`},
		{"key,name,Key\n", `column "Key" appears twice`},
		{"key,name,metadata.\n", `unknown column "metadata."`},
	} {
		_, _, err := ParseImport(strings.NewReader(c.in), ImportCSV)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
	in := "key,name,expires_at,allow_cidrs\n" +
		"legacy-key-0000000001,a,tomorrow,\n" +
		"legacy-key-0000000002,b,,300.1.1.1/8\n" +
		"legacy-key-0000000003,c\n" +
		",d,,\n" +
		"legacy-key-0000000005,e,,\n" +
		"legacy-key-0000000006,\"f,,\n"
	rows, bad, err := ParseImport(strings.NewReader(in), ImportCSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Line != 6 {
		t.Fatalf("good rows: %+v", rows)
	}
	want := []string{
		`line 2: expires_at "tomorrow" is not a time`,
		"line 3: allow_cidrs:",
		"line 4: 2 fields, but the header has 4",
		"line 5: key is empty",
		"line 7: extraneous or missing \" in quoted-field; the rest of the file was not read",
	}
	if len(bad) != len(want) {
		t.Fatalf("bad rows: %v", bad)
	}
	for i, w := range want {
		if !strings.Contains(bad[i].Error(), w) {
			t.Errorf("bad row %d: %v, want %q", i, bad[i], w)
		}
	}
}

func TestParseImportJSONL(t *testing.T) {
	in := `{"key":"legacy-key-0000000001","name":"a","scopes":["read"],"metadata":{"plan":"gold"},"allow_cidrs":["192.0.2.0/24"]}` + "\n" +
		"\n" +
		`{"key":"legacy-key-0000000002","name":"b","scopes":"read"}` + "\n" +
		`{"key":"legacy-key-0000000003","name":"c","colour":"red"}` + "\n" +
		`{"key":"legacy-key-0000000004","name":` + "\n" +
		`{"key":"legacy-key-0000000005","name":"e"} {"key":"x"}` + "\n" +
		`["legacy-key-0000000006"]` + "\n" +
		`{"key":"legacy-key-0000000007","name":"g","expires_at":"2027-02-01"}` + "\n"
	rows, bad, err := ParseImport(strings.NewReader(in), ImportJSONL)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Line != 1 || rows[0].Params.Metadata["plan"] != "gold" || len(rows[0].Params.AllowCIDRs) != 1 ||
		rows[1].Line != 8 || rows[1].Params.ExpiresAt.IsZero() {
		t.Fatalf("rows: %+v", rows)
	}
	want := []string{
		"line 3: scopes must be an array of strings, not a JSON string",
		`line 4: unknown field "colour"`,
		"line 5: not valid JSON",
		"line 6: more than one JSON value on the line",
		"line 7: not a JSON object but a JSON array",
	}
	if len(bad) != len(want) {
		t.Fatalf("bad rows: %v", bad)
	}
	for i, w := range want {
		if !strings.Contains(bad[i].Error(), w) {
			t.Errorf("bad row %d: %v, want %q", i, bad[i], w)
		}
		if strings.Contains(bad[i].Error(), "legacy-key") {
			t.Errorf("bad row %d quotes a key: %v", i, bad[i])
		}
	}
	if _, _, err := ParseImport(strings.NewReader("\n\n"), ImportJSONL); err == nil {
		t.Error("an empty JSON Lines file was accepted")
	}
	if _, _, err := ParseImport(strings.NewReader(`{"key":"`+strings.Repeat("a", MaxImportLine)+`"}`), ImportJSONL); err == nil ||
		!strings.Contains(err.Error(), "line 1 is longer than") {
		t.Errorf("an over-long line: %v", err)
	}
	if _, _, err := ParseImport(strings.NewReader(""), "xml"); err == nil || !strings.Contains(err.Error(), "unknown import format") {
		t.Errorf("unknown format: %v", err)
	}
}

func TestCheckLegacyKey(t *testing.T) {
	f, _ := NewFormat("acme")
	for _, c := range []struct {
		key  string
		want string // "" for a usable key
	}{
		{"0123456789abcdef", ""},
		{"sk_live_" + strings.Repeat("x", 24), ""},
		{"0123456789abcde", "15 characters long"},
		{strings.Repeat("x", MaxLegacyKeyLen+1), "257 characters long"},
		{"0123456789 abcdef", "character 11 is not visible ASCII"},
		{"0123456789abcdéf", "character 15 is not visible ASCII"},
		{"acme_0123456789abcdef", `prefix "acme"`},
		{"kg_0123456789abcdef", `prefix "kg"`},
	} {
		err := CheckLegacyKey(c.key, "acme", DefaultPrefix)
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.key, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), c.key) {
			t.Errorf("the error quotes the key: %v", err)
		}
		// The gateway's check agrees, for its own prefix.
		if c.want != `prefix "kg"` && f.IsLegacyCandidate(c.key) != (c.want == "") {
			t.Errorf("IsLegacyCandidate(%q) = %v", c.key, !(c.want == ""))
		}
	}
	key, _, _ := f.Generate()
	if f.IsLegacyCandidate(key) {
		t.Error("a key of the gateway's own format is a legacy candidate")
	}
	if n := testing.AllocsPerRun(100, func() { f.IsLegacyCandidate("0123456789abcdef0123") }); n != 0 {
		t.Errorf("IsLegacyCandidate allocates %v times", n)
	}
}
