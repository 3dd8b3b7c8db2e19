package keystore

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

var testPepper = bytes.Repeat([]byte("p"), MinPepperLen)

func TestDigestIsHMACSHA256(t *testing.T) {
	h, err := NewHasher(testPepper)
	if err != nil {
		t.Fatal(err)
	}
	f := mustFormat(t, "kg")
	key, _, _ := f.Generate()
	p, _ := f.Parse(key)
	m := hmac.New(sha256.New, testPepper)
	m.Write([]byte(key))
	if got := h.Digest(p); !bytes.Equal(got[:], m.Sum(nil)) {
		t.Fatal("Digest is not HMAC-SHA-256(pepper, key)")
	}
	other, _ := NewHasher(bytes.Repeat([]byte("q"), MinPepperLen))
	if other.Digest(p) == h.Digest(p) {
		t.Fatal("different peppers gave the same digest")
	}
	if other.PepperCheck() == h.PepperCheck() {
		t.Fatal("different peppers gave the same pepper check")
	}
}

func TestDigestLongKeyChunks(t *testing.T) {
	h, _ := NewHasher(testPepper)
	long := string(bytes.Repeat([]byte("k"), 300))
	m := hmac.New(sha256.New, testPepper)
	m.Write([]byte(long))
	if got := h.digest(long); !bytes.Equal(got[:], m.Sum(nil)) {
		t.Fatal("digest of a string longer than the chunk buffer is wrong")
	}
}

func TestShortPepperRejected(t *testing.T) {
	if _, err := NewHasher(testPepper[:MinPepperLen-1]); err == nil {
		t.Fatal("NewHasher accepted a short pepper")
	}
}

func TestDigestDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	h, _ := NewHasher(testPepper)
	f := mustFormat(t, "kg")
	key, _, _ := f.Generate()
	p, _ := f.Parse(key)
	h.Digest(p) // warm the pool
	if allocs := testing.AllocsPerRun(100, func() { h.Digest(p) }); allocs != 0 {
		t.Fatalf("Digest allocates %.0f times per call", allocs)
	}
}

func BenchmarkDigest(b *testing.B) {
	h, _ := NewHasher(testPepper)
	f := mustFormat(b, "kg")
	key, _, _ := f.Generate()
	p, _ := f.Parse(key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Digest(p)
		}
	})
}
