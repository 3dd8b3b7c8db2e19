package storetest

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

func testStoreIssueLookupGet(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	f := Format(t, "kg")
	exp := time.Now().Add(time.Hour)
	key, rec, err := testkeys.Issue(ctx, s, f, h, keystore.NewKeyParams{
		Name:       "billing sync",
		Owner:      "acme",
		Scopes:     []string{"write:orders", "read:orders", "read:orders"},
		Metadata:   map[string]string{"env": "prod", "ticket": "OPS-1"},
		ExpiresAt:  exp,
		Limits:     &keystore.Limits{Rate: "100/s", Burst: 200, Quota: "10000/month", Uses: 500, Refill: "day"},
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("203.0.113.0/24")},
		NotBefore:  time.Now().Add(-time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != p.ID || rec.Hint != keystore.Hint(p) {
		t.Fatalf("record id/hint %q/%q do not match the key", rec.ID, rec.Hint)
	}
	if q, ok := rec.Limits.QuotaLimit(); !ok || q.Limit != 10000 {
		t.Fatalf("limits not kept: %+v", rec.Limits)
	}
	if !reflect.DeepEqual(rec.Scopes, []string{"read:orders", "write:orders"}) {
		t.Fatalf("scopes not normalised: %v", rec.Scopes)
	}
	got, err := s.Lookup(ctx, h.Digest(p))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("Lookup returned\n%+v\nwant\n%+v", got, rec)
	}
	byID, err := s.Get(ctx, rec.ID)
	if err != nil || !reflect.DeepEqual(byID, rec) {
		t.Fatalf("Get: %v\n%+v", err, byID)
	}
	if got.Status(time.Now()) != keystore.StatusActive || got.Status(exp.Add(time.Second)) != keystore.StatusExpired {
		t.Fatal("status does not follow expiry")
	}
	if !got.HasScopes([]string{"read:orders"}) || got.HasScopes([]string{"admin"}) {
		t.Fatal("HasScopes is wrong")
	}
}

func testStoreNotFoundAndDuplicate(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	if _, err := s.Lookup(ctx, keystore.Digest{1}); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Lookup of unknown digest: %v", err)
	}
	if _, err := s.Get(ctx, "AAAAAAAAAAAA"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Get of unknown id: %v", err)
	}
	if _, _, err := revokeAt(ctx, s, "AAAAAAAAAAAA", time.Now()); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Revoke of unknown id: %v", err)
	}
	_, rec, err := testkeys.Issue(ctx, s, Format(t, ""), h, keystore.NewKeyParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	dupID := *rec
	dupID.Digest = keystore.Digest{9}
	if err := insertKey(ctx, s, &dupID); !errors.Is(err, keystore.ErrDuplicate) {
		t.Fatalf("Insert with a taken id: %v", err)
	}
	dupDigest := *rec
	dupDigest.ID = "BBBBBBBBBBBB"
	if err := insertKey(ctx, s, &dupDigest); !errors.Is(err, keystore.ErrDuplicate) {
		t.Fatalf("Insert with a taken digest: %v", err)
	}
}

func testStoreRevoke(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	_, rec, err := testkeys.Issue(ctx, s, Format(t, ""), h, keystore.NewKeyParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	k, changed, err := revokeAt(ctx, s, rec.ID, at)
	if err != nil || !changed || !k.RevokedAt.Equal(at) || k.Status(time.Now()) != keystore.StatusRevoked {
		t.Fatalf("Revoke: %v changed=%v %+v", err, changed, k)
	}
	k, changed, err = revokeAt(ctx, s, rec.ID, at.Add(time.Hour))
	if err != nil || changed || !k.RevokedAt.Equal(at) {
		t.Fatalf("second Revoke: %v changed=%v revoked_at=%v", err, changed, k.RevokedAt)
	}
	got, err := s.Lookup(ctx, rec.Digest)
	if err != nil || got.Status(time.Now()) != keystore.StatusRevoked {
		t.Fatalf("Lookup after revoke: %v %+v", err, got)
	}
}

func testStoreList(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	f := Format(t, "")
	var ids []string
	for i, owner := range []string{"acme", "globex", "acme", "acme"} {
		_, rec, err := testkeys.Issue(ctx, s, f, h, keystore.NewKeyParams{Name: fmt.Sprint("k", i), Owner: owner, ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID)
	}
	if _, _, err := revokeAt(ctx, s, ids[2], time.Now()); err != nil {
		t.Fatal(err)
	}
	idsOf := func(keys []*keystore.Key) []string {
		var out []string
		for _, k := range keys {
			out = append(out, k.ID)
		}
		return out
	}
	check := func(f keystore.ListFilter, want ...string) {
		t.Helper()
		keys, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if got := idsOf(keys); !reflect.DeepEqual(got, want) {
			t.Fatalf("List(%+v) = %v, want %v", f, got, want)
		}
	}
	working := keystore.WorkingStatuses()
	check(keystore.ListFilter{Statuses: working}, ids[0], ids[1], ids[3])
	check(keystore.ListFilter{Owner: "acme", Statuses: working}, ids[0], ids[3])
	check(keystore.ListFilter{Owner: "acme"}, ids[0], ids[2], ids[3])
	check(keystore.ListFilter{Limit: 2}, ids[0], ids[1])
	check(keystore.ListFilter{Statuses: working, Now: time.Now().Add(2 * time.Hour)})
	check(keystore.ListFilter{Owner: "nobody"})
}

// checksumLen is the length of a key's checksum: 6 base62 characters.
const checksumLen = 6

// testStoreHoldsNoKeyMaterial dumps the whole store and looks for the
// keys, their secrets and the pepper.
func testStoreHoldsNoKeyMaterial(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	dsn := kind.NewDSN(t)
	s := Open(t, dsn, keystore.Options{PepperCheck: h.PepperCheck()})
	f := Format(t, "")
	var keys []string
	for i := 0; i < 5; i++ {
		key, rec, err := testkeys.Issue(ctx, s, f, h, keystore.NewKeyParams{Name: "k"})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, changed, err := revokeAt(ctx, s, rec.ID, time.Now()); err != nil || !changed {
				t.Fatalf("revoking %s: changed %v, %v", rec.ID, changed, err)
			}
		}
		keys = append(keys, key)
	}
	s.Close()
	dump := kind.Dump(t, dsn)
	if !strings.Contains(dump, keys[0][3:3+keystore.IDLen]) {
		t.Fatal("dump does not contain a key id; the dump is not working")
	}
	for _, key := range keys {
		secret := key[3+keystore.IDLen+1 : len(key)-checksumLen]
		for _, needle := range []string{key, secret, secret[:16], secret[len(secret)-16:]} {
			if strings.Contains(dump, needle) {
				t.Fatalf("store dump contains key material %q", needle)
			}
		}
	}
	if strings.Contains(dump, string(testPepper)) {
		t.Fatal("store dump contains the pepper")
	}
}
