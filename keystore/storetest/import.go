package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// testImport: a legacy file is imported whole or not at all. Good rows
// become keys found by the digest of the legacy key, with an import event
// each; importing again changes nothing; a file with bad rows imports
// nothing and names every bad line; a dry run stores nothing; an imported
// key rotates into a Keygate key.
func testImport(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	dsn := kind.NewDSN(t)
	s := Open(t, dsn, keystore.Options{PepperCheck: h.PepperCheck()})
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h, Now: func() time.Time { return now }}
	const legacyA = "sk-legacy-0123456789abcdefABCDEF"
	const legacyB = "0f9e8d7c6b5a4f3e2d1c"
	file := "key,name,owner,scopes,expires_at,metadata.plan\n" +
		legacyA + ",billing,acme,\"read, write\",2027-01-31,gold\n" +
		"\n" +
		legacyB + ",reports,globex,,,\n"

	// A dry run says what it would do and stores nothing.
	done, err := lc.ImportFile(ctx, "cli:alice", strings.NewReader(file), keystore.ImportCSV, true)
	if err != nil || len(done) != 2 || done[0].Existed || done[1].Line != 4 {
		t.Fatalf("dry run: %+v, %v", done, err)
	}
	if keys, err := s.List(ctx, keystore.ListFilter{}); err != nil || len(keys) != 0 {
		t.Fatalf("after a dry run the store holds %d keys (%v)", len(keys), err)
	}

	done, err = lc.ImportFile(ctx, "cli:alice", strings.NewReader(file), keystore.ImportCSV, false)
	if err != nil || len(done) != 2 {
		t.Fatalf("import: %+v, %v", done, err)
	}
	got, err := s.Lookup(ctx, h.Digest(keystore.LegacyKey(legacyA)))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != done[0].Key.ID || !keystore.ValidID(got.ID) || got.Name != "billing" || got.Owner != "acme" ||
		strings.Join(got.Scopes, ",") != "read,write" || got.Metadata["plan"] != "gold" ||
		!got.ExpiresAt.Equal(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) || !got.IsLegacy() || got.Hint != "legacy:...CDEF" {
		t.Fatalf("imported key: %+v", got)
	}
	if b, err := s.Lookup(ctx, h.Digest(keystore.LegacyKey(legacyB))); err != nil || b.Hint != "legacy:..." || b.Owner != "globex" {
		t.Fatalf("a short legacy key's hint shows none of it: %+v, %v", b, err)
	}
	evs := events(t, s, audit.Filter{})
	if len(evs) != 2 || evs[0].Action != audit.ActionImport || evs[0].Actor != "cli:alice" || evs[0].KeyID != got.ID {
		t.Fatalf("audit events: %+v", evs)
	}
	for _, e := range evs {
		if strings.Contains(e.After, legacyA) || strings.Contains(e.After, legacyB) {
			t.Fatal("an audit event holds a legacy key")
		}
	}
	if dump := kind.Dump(t, dsn); strings.Contains(dump, legacyA) || strings.Contains(dump, legacyB[4:]) {
		t.Fatal("the store holds a legacy key in plaintext")
	}

	// Again: nothing changes, nothing is recorded. A key changed since is
	// left as it is, and said to differ.
	if _, _, err := lc.Update(ctx, "cli:bob", got.ID, keystore.KeyChange{Name: ptr("billing v2")}); err != nil {
		t.Fatal(err)
	}
	done, err = lc.ImportFile(ctx, "cli:alice", strings.NewReader(file), keystore.ImportCSV, false)
	if err != nil || len(done) != 2 || !done[0].Existed || !done[0].Differs || !done[1].Existed || done[1].Differs {
		t.Fatalf("second import: %+v, %v", done, err)
	}
	if n := len(events(t, s, audit.Filter{})); n != 3 {
		t.Fatalf("a repeated import recorded events: %d, want 3 (two imports, one update)", n)
	}

	// One bad row: nothing of the file is imported; every bad line is
	// named, and no message quotes a key.
	bad := "key,name\n" +
		"fresh-legacy-key-number-one-0001,ok\n" +
		"short,too short\n" +
		"kg_AAAAAAAAAAAA_looks-like-keygate,prefix\n" +
		"fresh-legacy-key-number-two-0002,\n" +
		"fresh-legacy-key-number-one-0001,again\n" +
		"one,two,three\n"
	_, err = lc.ImportFile(ctx, "cli:alice", strings.NewReader(bad), keystore.ImportCSV, false)
	var ie *keystore.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("bad file: %v", err)
	}
	var lines []int
	for _, r := range ie.Rows {
		lines = append(lines, r.Line)
	}
	if want := []int{3, 4, 5, 6, 7}; !slices.Equal(lines, want) {
		t.Fatalf("bad lines %v, want %v:\n%v", lines, want, err)
	}
	for _, secret := range []string{"fresh-legacy", "looks-like-keygate", "short,"} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("the error quotes a key: %v", err)
		}
	}
	if !strings.Contains(err.Error(), "line 6: the same key as line 2") || !strings.Contains(err.Error(), "line 5: name is required") {
		t.Errorf("error:\n%v", err)
	}
	if _, err := s.Lookup(ctx, h.Digest(keystore.LegacyKey("fresh-legacy-key-number-one-0001"))); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a good row of a bad file was imported: %v", err)
	}

	// An imported key rotates into a Keygate key of the Lifecycle's format.
	key, rec, old, err := lc.Rotate(ctx, "cli:bob", got.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Format(t, "").Parse(key); err != nil || rec.IsLegacy() || rec.Replaces != got.ID || old.Status(now) != keystore.StatusRevoked {
		t.Fatalf("rotated legacy key: %v, %+v, old %+v", err, rec, old)
	}
	noFormat := &keystore.Lifecycle{Store: s, Hasher: h}
	bID := done[1].Key.ID
	if _, _, _, err := noFormat.Rotate(ctx, "cli:bob", bID, 0); err == nil || !strings.Contains(err.Error(), "legacy key") {
		t.Fatalf("rotating a legacy key without a format: %v", err)
	}
	if _, err := keystore.VerifyAudit(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }
