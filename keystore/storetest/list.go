package storetest

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// idsOf returns the ids of keys, in order.
func idsOf(keys []*keystore.Key) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

// testListStatuses: List selects each status exactly as Key.Status judges
// it, at the boundaries too (a time equal to the revocation, expiry or
// start), alone and combined, with an owner; a revocation still to come
// (a rotation's grace) is active; nil selects every key; an unknown status
// is refused, naming the valid ones.
func testListStatuses(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := t0.Add(2 * time.Hour) // when the keys are listed
	clock := t0
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h, Now: func() time.Time { return clock }}
	want := map[string]string{} // id → status at at
	create := func(name, status string, p keystore.NewKeyParams) *keystore.Key {
		t.Helper()
		p.Name = name
		_, k, err := lc.Create(ctx, "test", p)
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		want[k.ID] = status
		return k
	}
	create("active", keystore.StatusActive, keystore.NewKeyParams{Owner: "acme"})
	create("expired", keystore.StatusExpired, keystore.NewKeyParams{ExpiresAt: t0.Add(time.Hour)})
	create("expires at the instant", keystore.StatusExpired, keystore.NewKeyParams{ExpiresAt: at})
	create("not yet valid", keystore.StatusNotYetValid, keystore.NewKeyParams{Owner: "acme", NotBefore: at.Add(time.Hour)})
	create("starts at the instant", keystore.StatusActive, keystore.NewKeyParams{NotBefore: at})
	revoked := create("revoked", keystore.StatusRevoked, keystore.NewKeyParams{Owner: "acme"})
	revokedExpired := create("revoked, then expired", keystore.StatusRevoked, keystore.NewKeyParams{ExpiresAt: t0.Add(90 * time.Minute)})
	revokedEarly := create("revoked before its start", keystore.StatusRevoked, keystore.NewKeyParams{NotBefore: at.Add(time.Hour)})
	revokedAtInstant := create("revoked at the instant", keystore.StatusRevoked, keystore.NewKeyParams{})
	inGrace := create("in a rotation's grace", keystore.StatusActive, keystore.NewKeyParams{Owner: "acme"})
	graceOver := create("its rotation's grace over", keystore.StatusRevoked, keystore.NewKeyParams{})

	clock = t0.Add(time.Hour)
	for _, id := range []string{revoked.ID, revokedExpired.ID, revokedEarly.ID} {
		if _, _, err := lc.Revoke(ctx, "test", id); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		id    string
		grace time.Duration
	}{{inGrace.ID, 2 * time.Hour}, {graceOver.ID, 30 * time.Minute}} {
		_, rec, _, err := lc.Rotate(ctx, "test", r.id, r.grace)
		if err != nil {
			t.Fatal(err)
		}
		want[rec.ID] = keystore.StatusActive
	}
	clock = at
	if _, _, err := lc.Revoke(ctx, "test", revokedAtInstant.ID); err != nil {
		t.Fatal(err)
	}
	// Expired before a start still to come: no lifecycle call makes such a
	// key, but the order of the checks must hold for it too.
	odd := *revoked
	odd.ID, odd.Digest, odd.Owner = "XpiredNotYet", keystore.Digest{7, 7, 7}, ""
	odd.RevokedAt, odd.ExpiresAt, odd.NotBefore = time.Time{}, at, at.Add(time.Hour)
	if err := insertKey(ctx, s, &odd); err != nil {
		t.Fatal(err)
	}
	want[odd.ID] = keystore.StatusExpired

	list := func(f keystore.ListFilter) []*keystore.Key {
		t.Helper()
		f.Now = at
		keys, err := s.List(ctx, f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		return keys
	}
	all := list(keystore.ListFilter{})
	if len(all) != len(want) {
		t.Fatalf("List with no status listed %d keys, want all %d", len(all), len(want))
	}
	for _, k := range all {
		if got := k.Status(at); got != want[k.ID] {
			t.Errorf("key %q (%s) is %s, want %s", k.Name, k.ID, got, want[k.ID])
		}
	}
	// Keys of all as Key.Status judges them, in List's order.
	judged := func(owner string, statuses ...string) []string {
		out := []string{}
		for _, k := range all {
			if (owner == "" || k.Owner == owner) && (len(statuses) == 0 || slices.Contains(statuses, k.Status(at))) {
				out = append(out, k.ID)
			}
		}
		return out
	}
	for _, statuses := range [][]string{
		{keystore.StatusActive},
		{keystore.StatusNotYetValid},
		{keystore.StatusRevoked},
		{keystore.StatusExpired},
		keystore.WorkingStatuses(),
		{keystore.StatusRevoked, keystore.StatusExpired},
		{keystore.StatusExpired, keystore.StatusActive, keystore.StatusExpired},
		keystore.AllStatuses(),
	} {
		for _, owner := range []string{"", "acme"} {
			got := idsOf(list(keystore.ListFilter{Owner: owner, Statuses: statuses}))
			if w := judged(owner, statuses...); !reflect.DeepEqual(got, w) {
				t.Errorf("List(owner %q, statuses %v) = %v, want %v", owner, statuses, got, w)
			}
		}
	}
	// The rotation's new key and the one in its grace are both active.
	if got := idsOf(list(keystore.ListFilter{Owner: "acme", Statuses: []string{keystore.StatusActive}})); len(got) != 3 || !slices.Contains(got, inGrace.ID) {
		t.Errorf("active keys of acme: %v, want 3 with %s in its grace", got, inGrace.ID)
	}

	_, err := s.List(ctx, keystore.ListFilter{Statuses: []string{keystore.StatusActive, "valid"}})
	if err == nil || !strings.Contains(err.Error(), `"valid"`) || !strings.Contains(err.Error(), "active, not_yet_valid, revoked, expired") {
		t.Errorf("an unknown status: %v", err)
	}
}

// testListPages: pages of Limit keys chained by After cover every key
// exactly once in List's order, with keys created at the same instant
// ordered by id, with and without a status filter; After a deleted or
// unknown key is an error naming it, not an empty page.
func testListPages(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	clock := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h, Now: func() time.Time { return clock }}
	var made []*keystore.Key
	for i := 0; i < 9; i++ {
		if i == 5 {
			clock = clock.Add(time.Minute) // five keys share an instant, four the next
		}
		_, k, err := lc.Create(ctx, "test", keystore.NewKeyParams{Name: "k", Owner: []string{"acme", "globex"}[i%2]})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, k)
	}
	if _, _, err := lc.Revoke(ctx, "test", made[3].ID); err != nil {
		t.Fatal(err)
	}

	walk := func(f keystore.ListFilter) []string {
		t.Helper()
		var ids []string
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("walking %+v: no end after %d pages: %v", f, pages, ids)
			}
			page, err := s.List(ctx, f)
			if err != nil {
				t.Fatalf("List(%+v): %v", f, err)
			}
			if len(page) > f.Limit {
				t.Fatalf("List(%+v) returned %d keys", f, len(page))
			}
			ids = append(ids, idsOf(page)...)
			if len(page) < f.Limit {
				return ids
			}
			f.After = page[len(page)-1].ID
		}
	}
	for _, f := range []keystore.ListFilter{
		{},
		{Statuses: keystore.WorkingStatuses()},
		{Statuses: []string{keystore.StatusRevoked}},
		{Owner: "acme"},
		{Owner: "globex", Statuses: keystore.WorkingStatuses()},
	} {
		all, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(all); i++ {
			if all[i].CreatedAt.Before(all[i-1].CreatedAt) {
				t.Fatalf("List(%+v) is not in creation order: %v", f, idsOf(all))
			}
		}
		for _, limit := range []int{1, 2, 3, 4, 9, 10} {
			f := f
			f.Limit = limit
			if got := walk(f); !reflect.DeepEqual(got, idsOf(all)) && !(len(got) == 0 && len(all) == 0) {
				t.Errorf("pages of %d of %+v: %v, want each of %v once, in order", limit, f, got, idsOf(all))
			}
		}
	}
	// A cursor need not be selected by the filter: it is a place.
	all, err := s.List(ctx, keystore.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	wantAfter := []string{}
	for i := slices.Index(idsOf(all), made[3].ID) + 1; i < len(all); i++ {
		if all[i].ID != made[3].ID && all[i].RevokedAt.IsZero() {
			wantAfter = append(wantAfter, all[i].ID)
		}
	}
	after, err := s.List(ctx, keystore.ListFilter{Statuses: keystore.WorkingStatuses(), After: made[3].ID})
	if err != nil || !reflect.DeepEqual(idsOf(after), wantAfter) {
		t.Errorf("working keys after the revoked %s: %v, %v; want %v", made[3].ID, idsOf(after), err, wantAfter)
	}

	if _, err := lc.Delete(ctx, "test", made[4].ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{made[4].ID, "AAAAAAAAAAAA"} {
		keys, err := s.List(ctx, keystore.ListFilter{After: id, Limit: 2})
		if !errors.Is(err, keystore.ErrNotFound) || !strings.Contains(err.Error(), id) {
			t.Errorf("List after %s, which does not exist: %v, %v; want an error naming it", id, idsOf(keys), err)
		}
	}
}
