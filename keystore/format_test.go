package keystore

import (
	"bytes"
	"errors"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
)

func mustFormat(t testing.TB, prefix string) Format {
	t.Helper()
	f, err := NewFormat(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestGenerateParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"", "kg", "acme_live", "A1", strings.Repeat("p", MaxPrefixLen)} {
		f := mustFormat(t, prefix)
		want := prefix
		if want == "" {
			want = DefaultPrefix
		}
		shape := regexp.MustCompile(`^` + want + `_[A-Za-z0-9]{12}_[A-Za-z0-9]{49}$`)
		for i := 0; i < 50; i++ {
			key, id, err := f.Generate()
			if err != nil {
				t.Fatal(err)
			}
			if !shape.MatchString(key) {
				t.Fatalf("key %q does not have the documented shape", key)
			}
			if len(key) > 80 || len(key) > MaxKeyLen {
				t.Fatalf("key is %d characters, more than 80", len(key))
			}
			p, err := f.Parse(key)
			if err != nil {
				t.Fatalf("Parse(generated key): %v", err)
			}
			if p.ID != id || !ValidID(id) || p.Key != key {
				t.Fatalf("Parse returned id %q, want %q", p.ID, id)
			}
		}
	}
}

func TestChecksumIsCRC32OfHead(t *testing.T) {
	f := mustFormat(t, "kg")
	key, _, _ := f.Generate()
	var want [checksumLen]byte
	encodeChecksum(want[:], crc32.ChecksumIEEE([]byte(key[:len(key)-checksumLen])))
	if string(want[:]) != key[len(key)-checksumLen:] {
		t.Fatalf("checksum %q, want %q", key[len(key)-checksumLen:], want)
	}
}

func TestParseRejects(t *testing.T) {
	f := mustFormat(t, "kg")
	key, _, _ := f.Generate()
	other := mustFormat(t, "xx")
	otherKey, _, _ := other.Generate()
	flip := func(i int) string {
		b := []byte(key)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := []struct {
		name, key string
		want      error
	}{
		{"empty", "", errLength},
		{"short", key[:len(key)-1], errLength},
		{"long", key + "a", errLength},
		{"other prefix", otherKey, errPrefix},
		{"prefix case", "KG" + key[2:], errPrefix},
		{"missing separator", "kg" + key[3:] + "a", errPrefix},
		{"bad char in secret", key[:40] + "-" + key[41:], errAlphabet},
		{"non-ascii", key[:40] + "é" + key[42:], errAlphabet},
		{"space", key[:40] + " " + key[41:], errAlphabet},
		{"underscore in secret", key[:40] + "_" + key[41:], errLayout},
		{"no id separator", key[:15] + "a" + key[16:], errLayout},
		{"secret typo", flip(30), errChecksum},
		{"id typo", flip(5), errChecksum},
		{"checksum typo", flip(len(key) - 1), errChecksum},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.Parse(c.key)
			if err != c.want {
				t.Fatalf("Parse: got %v, want %v", err, c.want)
			}
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("error %v does not match ErrMalformedKey", err)
			}
			if strings.Contains(err.Error(), c.key) && c.key != "" {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	good := []string{"kg", "K", "acme_live", "a1_b2_c3", strings.Repeat("x", MaxPrefixLen)}
	bad := []string{strings.Repeat("x", MaxPrefixLen+1), "_kg", "kg_", "a__b", "k-g", "kg!", "ké"}
	for _, p := range good {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q): %v", p, err)
		}
	}
	for _, p := range bad {
		if err := ValidatePrefix(p); err == nil {
			t.Errorf("ValidatePrefix(%q) accepted a bad prefix", p)
		}
	}
	if _, err := NewFormat("k g"); err == nil {
		t.Error("NewFormat accepted a prefix with a space")
	}
}

func TestHintDoesNotRevealSecret(t *testing.T) {
	f := mustFormat(t, "kg")
	key, id, _ := f.Generate()
	p, _ := f.Parse(key)
	h := Hint(p)
	if !strings.HasPrefix(h, "kg_"+id+"_...") || !strings.HasSuffix(h, key[len(key)-4:]) {
		t.Fatalf("hint %q has an unexpected shape", h)
	}
	secret := key[len("kg_")+IDLen+1 : len(key)-checksumLen]
	for i := 0; i+4 <= len(secret); i++ {
		if strings.Contains(h, secret[i:i+4]) && !strings.Contains("kg_"+id, secret[i:i+4]) && !strings.HasSuffix(h, secret[i:i+4]) {
			t.Fatalf("hint %q contains part of the secret", h)
		}
	}
}

// TestRandomBase62Uniform checks that the rejection sampling gives every
// character the same chance: a biased generator would weaken the secret.
func TestRandomBase62Uniform(t *testing.T) {
	var counts [256]int
	buf := make([]byte, 62*2000)
	if err := randomBase62(randReader{}, buf); err != nil {
		t.Fatal(err)
	}
	for _, c := range buf {
		counts[c]++
	}
	for i := 0; i < len(base62); i++ {
		n := counts[base62[i]]
		// Expected 2000 per character; 6 standard deviations is ~270.
		if n < 1700 || n > 2300 {
			t.Fatalf("character %q drawn %d times, expected about 2000", base62[i], n)
		}
	}
}

func TestGenerateFailsWithoutRandomness(t *testing.T) {
	f := mustFormat(t, "kg")
	if _, _, err := f.generate(bytes.NewReader(nil)); err == nil {
		t.Fatal("generate succeeded with an empty random source")
	}
}

func TestParseDoesNotAllocate(t *testing.T) {
	f := mustFormat(t, "kg")
	key, _, _ := f.Generate()
	bad := key[:len(key)-1] + "0"
	allocs := testing.AllocsPerRun(100, func() {
		f.Parse(key)
		f.Parse(bad)
		f.Parse("garbage")
	})
	if allocs != 0 {
		t.Fatalf("Parse allocates %.0f times per call", allocs)
	}
}

func BenchmarkParse(b *testing.B) {
	f := mustFormat(b, "kg")
	key, _, _ := f.Generate()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Parse(key); err != nil {
			b.Fatal(err)
		}
	}
}
