package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

func events(t *testing.T, s keystore.Store, f audit.Filter) []*audit.Event {
	t.Helper()
	var out []*audit.Event
	if err := s.Events(Context(t), f, func(e *audit.Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Create and revoke each record one event, in the same transaction, with
// the key's state before and after and never its digest.
func testLifecycleRecordsChanges(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	clock := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h, Now: func() time.Time { return clock }}

	if head, err := s.Head(ctx); err != nil || head.Seq != 0 {
		t.Fatalf("head of a new store: %v %v", head, err)
	}
	_, a, err := lc.Create(ctx, "cli:alice", keystore.NewKeyParams{Name: "a", Owner: "acme", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	_, b, err := lc.Create(ctx, "cli:bob", keystore.NewKeyParams{Name: "b", Owner: "globex"})
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	if _, changed, err := lc.Revoke(ctx, "admin:10.0.0.1", a.ID); err != nil || !changed {
		t.Fatalf("revoke: %v %v", changed, err)
	}
	// A revoke that changes nothing records nothing.
	if _, changed, err := lc.Revoke(ctx, "admin:10.0.0.1", a.ID); err != nil || changed {
		t.Fatalf("second revoke: %v %v", changed, err)
	}
	if _, _, err := lc.Revoke(ctx, "admin:10.0.0.1", "AAAAAAAAAAAA"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("revoke of an unknown key: %v", err)
	}
	all := events(t, s, audit.Filter{})
	if len(all) != 3 {
		t.Fatalf("%d events, want 3", len(all))
	}
	want := []struct{ actor, action, id, owner string }{
		{"cli:alice", audit.ActionCreate, a.ID, "acme"},
		{"cli:bob", audit.ActionCreate, b.ID, "globex"},
		{"admin:10.0.0.1", audit.ActionRevoke, a.ID, "acme"},
	}
	for i, w := range want {
		e := all[i]
		if e.Seq != int64(i+1) || e.Actor != w.actor || e.Action != w.action || e.KeyID != w.id || e.Owner != w.owner ||
			!e.Time.Equal(time.Date(2026, 11, 29, 12+i, 0, 0, 0, time.UTC)) {
			t.Errorf("event %d: %+v, want %+v", i+1, e, w)
		}
	}
	if all[0].Before != "" || !strings.Contains(all[0].After, `"name":"a"`) || !strings.Contains(all[0].After, `"scopes":["read"]`) {
		t.Errorf("create event's states: before %q after %q", all[0].Before, all[0].After)
	}
	var before, after keystore.Key
	if json.Unmarshal([]byte(all[2].Before), &before) != nil || json.Unmarshal([]byte(all[2].After), &after) != nil ||
		!before.RevokedAt.IsZero() || !after.RevokedAt.Equal(clock) {
		t.Errorf("revoke event's states: before %q after %q", all[2].Before, all[2].After)
	}
	for _, e := range all {
		for _, state := range []string{e.Before, e.After} {
			if strings.Contains(strings.ToLower(state), "digest") {
				t.Errorf("event %d keeps a digest: %s", e.Seq, state)
			}
		}
	}
	head, err := keystore.VerifyAudit(ctx, s, nil)
	if err != nil || head.Seq != 3 {
		t.Fatalf("verify: %v %v", head, err)
	}
	if stored, err := s.Head(ctx); err != nil || stored.String() != head.String() {
		t.Fatalf("Head %v, verified head %v, %v", stored, head, err)
	}

	// Filters.
	if got := events(t, s, audit.Filter{KeyID: a.ID}); len(got) != 2 || got[1].Action != audit.ActionRevoke {
		t.Errorf("filter by key: %d events", len(got))
	}
	if got := events(t, s, audit.Filter{Owner: "globex"}); len(got) != 1 || got[0].KeyID != b.ID {
		t.Errorf("filter by owner: %d events", len(got))
	}
	if got := events(t, s, audit.Filter{Since: time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)}); len(got) != 2 || got[0].Seq != 2 {
		t.Errorf("filter by time: %d events", len(got))
	}
	if got := events(t, s, audit.Filter{AfterSeq: 2}); len(got) != 1 || got[0].Seq != 3 {
		t.Errorf("filter after seq: %d events", len(got))
	}

	// Bad actors are refused before anything changes.
	for _, actor := range []string{"", "a\nb", strings.Repeat("x", keystore.MaxActorLen+1)} {
		if _, _, err := lc.Create(ctx, actor, keystore.NewKeyParams{Name: "c"}); err == nil || !strings.Contains(err.Error(), "actor") {
			t.Errorf("actor %q: %v", actor, err)
		}
	}
	if n := len(events(t, s, audit.Filter{})); n != 3 {
		t.Errorf("%d events after refused changes", n)
	}
}

// A change and its event commit together or not at all.
func testChangeIsAtomic(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	boom := errors.New("boom")
	// The lifecycle service inserts the key and appends its event; the
	// transaction then fails.
	failing := &failAfter{Store: s, err: boom}
	lc := &keystore.Lifecycle{Store: failing, Format: Format(t, ""), Hasher: h}
	_, _, err := lc.Create(ctx, "test", keystore.NewKeyParams{Name: "a"})
	if !errors.Is(err, boom) {
		t.Fatalf("Change: %v", err)
	}
	rec := failing.inserted
	if rec == nil || failing.appended == 0 {
		t.Fatalf("the change inserted %v and appended %d events", rec, failing.appended)
	}
	if _, err := s.Get(ctx, rec.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("key of a failed change: %v", err)
	}
	if head, err := s.Head(ctx); err != nil || head.Seq != 0 {
		t.Errorf("head after a failed change: %v %v", head, err)
	}
}

// failAfter is a Store whose changes fail with err after they ran: what
// they inserted and appended must not be kept.
type failAfter struct {
	keystore.Store
	err      error
	inserted *keystore.Key
	appended int
}

func (s *failAfter) Change(ctx context.Context, f func(keystore.Tx) error) error {
	return s.Store.Change(ctx, func(tx keystore.Tx) error {
		if err := f(&watchedTx{Tx: tx, s: s}); err != nil {
			return err
		}
		return s.err
	})
}

// watchedTx notes what a failAfter change did.
type watchedTx struct {
	keystore.Tx
	s *failAfter
}

func (t *watchedTx) Insert(ctx context.Context, k *keystore.Key) error {
	t.s.inserted = k
	return t.Tx.Insert(ctx, k)
}

func (t *watchedTx) Append(ctx context.Context, e *audit.Event) error {
	t.s.appended++
	return t.Tx.Append(ctx, e)
}

// Writers with their own connections (as separate processes and machines
// have) append concurrently, and the result is one valid chain holding
// every change.
func testConcurrentWritersMakeOneChain(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	dsn := kind.NewDSN(t)
	Open(t, dsn, keystore.Options{}) // create and migrate once
	const writers, each = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		s := Open(t, dsn, keystore.Options{})
		lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, rec, err := lc.Create(ctx, fmt.Sprint("writer-", w), keystore.NewKeyParams{Name: "k"})
				if err == nil && i%3 == 0 {
					_, _, err = lc.Revoke(ctx, fmt.Sprint("writer-", w), rec.ID)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := Open(t, dsn, keystore.Options{})
	head, err := keystore.VerifyAudit(ctx, s, nil)
	if want := int64(writers * (each + each/3)); err != nil || head.Seq != want {
		t.Fatalf("verify: head %v, %v; want %d events", head, err, want)
	}
}

// Changes made to the table behind Keygate's back are found, and the
// first event that does not hold is named.
func testVerifyAuditFindsTampering(t *testing.T, kind Backend) {
	cases := []struct {
		name   string
		sql    string
		seq    int64
		reason string
		head   bool // check against the head recorded before tampering
	}{
		{"edited", "UPDATE keygate_audit SET actor = 'cli:mallory' WHERE seq = 3", 3, "altered", false},
		{"edited state", "UPDATE keygate_audit SET after = replace(after, '\"name\":\"k2\"', '\"name\":\"kX\"') WHERE seq = 3", 3, "altered", false},
		{"deleted in the middle", "DELETE FROM keygate_audit WHERE seq = 2", 2, "missing", false},
		{"reordered", "UPDATE keygate_audit SET seq = 100 WHERE seq = 2; UPDATE keygate_audit SET seq = 2 WHERE seq = 3; UPDATE keygate_audit SET seq = 3 WHERE seq = 100", 2, "does not link", false},
		{"newest deleted", "DELETE FROM keygate_audit WHERE seq >= 4", 4, "removed", true},
		{"all deleted", "DELETE FROM keygate_audit", 1, "removed", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := Context(t)
			h := Hasher(t)
			dsn := kind.NewDSN(t)
			s := Open(t, dsn, keystore.Options{})
			lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h}
			for i := 0; i < 5; i++ {
				if _, _, err := lc.Create(ctx, "test", keystore.NewKeyParams{Name: fmt.Sprint("k", i)}); err != nil {
					t.Fatal(err)
				}
			}
			recorded, err := keystore.VerifyAudit(ctx, s, nil)
			if err != nil || recorded.Seq != 5 {
				t.Fatalf("before tampering: %v %v", recorded, err)
			}
			kind.Exec(t, dsn, c.sql)
			var want *audit.Head
			if c.head {
				if _, err := keystore.VerifyAudit(ctx, s, nil); err != nil {
					t.Fatalf("a chain cut at its end verifies on its own, but: %v", err)
				}
				want = &recorded
			}
			_, err = keystore.VerifyAudit(ctx, s, want)
			var broken *audit.BrokenError
			if !errors.As(err, &broken) || broken.Seq != c.seq || !strings.Contains(broken.Reason, c.reason) {
				t.Fatalf("verify after %s: %v; want event %d, %q", c.sql, err, c.seq, c.reason)
			}
		})
	}
}
