package storetest

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// testOwnerLimits: an owner's limits come with each of its keys (Lookup,
// Get, List), a change is recorded in the audit trail and put on the
// change feed for each of the owner's keys, a change that changes nothing
// records nothing, and uses are refused for an owner.
func testOwnerLimits(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h}
	keyA, a, err := lc.Create(ctx, "cli:alice", keystore.NewKeyParams{Name: "a", Owner: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := lc.Create(ctx, "cli:alice", keystore.NewKeyParams{Name: "b", Owner: "globex"})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := s.OwnerLimits(ctx, "acme"); err != nil || l != nil {
		t.Fatalf("limits of an owner without any: %+v, %v", l, err)
	}
	rec := StartWatch(t, s)
	set := &keystore.Limits{Rate: "1000/m", Quota: "50000/month"}
	if changed, err := lc.SetOwnerLimits(ctx, "cli:bob", "acme", set); err != nil || !changed {
		t.Fatalf("set: %v, %v", changed, err)
	}
	rec.WaitFor(t, "the owner's key on the change feed", func(r *Recorder) bool { return r.Saw(a.Digest) })

	p, err := Format(t, "").Parse(keyA)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(ctx, h.Digest(p))
	if err != nil || got.OwnerLimits == nil || got.OwnerLimits.Rate != "1000/m" || got.OwnerLimits.Quota != "50000/month" {
		t.Fatalf("Lookup: owner limits %+v, %v", got.OwnerLimits, err)
	}
	if byID, err := s.Get(ctx, a.ID); err != nil || byID.OwnerLimits == nil {
		t.Fatalf("Get: owner limits %+v, %v", byID.OwnerLimits, err)
	}
	if o, err := s.Get(ctx, other.ID); err != nil || o.OwnerLimits != nil {
		t.Fatalf("another owner's key got limits: %+v, %v", o.OwnerLimits, err)
	}
	listed, err := s.List(ctx, keystore.ListFilter{Owner: "acme"})
	if err != nil || len(listed) != 1 || listed[0].OwnerLimits == nil {
		t.Fatalf("List: %v, %v", listed, err)
	}
	if changed, err := lc.SetOwnerLimits(ctx, "cli:bob", "acme", &keystore.Limits{Rate: "1000/m", Quota: "50000/month"}); err != nil || changed {
		t.Fatalf("setting the same limits again: changed %v, %v", changed, err)
	}
	if _, err := lc.SetOwnerLimits(ctx, "cli:bob", "acme", &keystore.Limits{Uses: 5}); err == nil {
		t.Fatal("uses accepted for an owner")
	}
	if changed, err := lc.SetOwnerLimits(ctx, "cli:bob", "acme", nil); err != nil || !changed {
		t.Fatalf("clear: %v, %v", changed, err)
	}
	if l, err := s.OwnerLimits(ctx, "acme"); err != nil || l != nil {
		t.Fatalf("after clearing: %+v, %v", l, err)
	}
	var changes []*audit.Event
	for _, e := range events(t, s, audit.Filter{Owner: "acme"}) {
		if e.Action == audit.ActionOwnerLimits {
			changes = append(changes, e)
		}
	}
	if len(changes) != 2 || changes[0].Actor != "cli:bob" || changes[0].Before != "" || changes[0].After != keystore.LimitsText(set) ||
		changes[1].Before != keystore.LimitsText(set) || changes[1].After != "" || changes[0].KeyID != "" {
		t.Fatalf("owner_limits events: %+v", changes)
	}
	if head, err := keystore.VerifyAudit(ctx, s, nil); err != nil || head.Seq != 4 {
		t.Fatalf("the chain with owner events: %+v, %v", head, err)
	}
}

// testRevokeOwner: RevokeOwner revokes every key of the owner not revoked
// yet (one in a rotation's grace, one not yet valid and an expired one
// included) and no other, with one revoke event each in a chain that
// verifies; each revoked key goes on the change feed; a second call, or
// an owner without keys, revokes and records nothing.
func testRevokeOwner(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock := t0
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h, Now: func() time.Time { return clock }}
	create := func(owner string, p keystore.NewKeyParams) *keystore.Key {
		t.Helper()
		p.Name, p.Owner = "k", owner
		clock = clock.Add(time.Second) // in creation order, which is OwnerKeys'
		_, k, err := lc.Create(ctx, "cli:alice", p)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	plain := create("acme", keystore.NewKeyParams{})
	rotated := create("acme", keystore.NewKeyParams{})
	revokedBefore := create("acme", keystore.NewKeyParams{})
	notYet := create("acme", keystore.NewKeyParams{NotBefore: t0.Add(time.Hour)})
	expired := create("acme", keystore.NewKeyParams{ExpiresAt: t0.Add(time.Minute)})
	other := create("globex", keystore.NewKeyParams{})
	unowned := create("", keystore.NewKeyParams{})
	clock = t0.Add(2 * time.Minute)
	_, replacement, _, err := lc.Rotate(ctx, "cli:alice", rotated.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := lc.Revoke(ctx, "cli:alice", revokedBefore.ID); err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(5 * time.Minute)
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := StartWatch(t, s)

	revoked, err := lc.RevokeOwner(ctx, "cli:carol", "acme")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{plain.ID, rotated.ID, notYet.ID, expired.ID, replacement.ID}
	if got := idsOf(revoked); !reflect.DeepEqual(got, want) {
		t.Fatalf("RevokeOwner revoked %v, want %v", got, want)
	}
	for _, k := range revoked {
		if !k.RevokedAt.Equal(clock) || k.Status(clock) != keystore.StatusRevoked {
			t.Errorf("key %s as returned: revoked at %v, %s", k.ID, k.RevokedAt, k.Status(clock))
		}
		if got, err := s.Get(ctx, k.ID); err != nil || !got.RevokedAt.Equal(clock) {
			t.Errorf("key %s as stored: %+v, %v", k.ID, got, err)
		}
	}
	if got, err := s.Get(ctx, revokedBefore.ID); err != nil || !got.RevokedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("the key revoked before: %+v, %v", got, err)
	}
	for _, k := range []*keystore.Key{other, unowned} {
		if got, err := s.Get(ctx, k.ID); err != nil || !got.RevokedAt.IsZero() {
			t.Errorf("a key of owner %q: %+v, %v", k.Owner, got, err)
		}
	}

	var ids []string
	for _, e := range events(t, s, audit.Filter{AfterSeq: head.Seq}) {
		ids = append(ids, e.KeyID)
		var before, after keystore.Key
		if e.Action != audit.ActionRevoke || e.Actor != "cli:carol" || e.Owner != "acme" || !e.Time.Equal(clock) ||
			json.Unmarshal([]byte(e.Before), &before) != nil || json.Unmarshal([]byte(e.After), &after) != nil ||
			before.ID != e.KeyID || !after.RevokedAt.Equal(clock) {
			t.Errorf("event %d: %+v", e.Seq, e)
		}
		if e.KeyID == rotated.ID && !before.RevokedAt.Equal(t0.Add(2*time.Minute+time.Hour)) {
			t.Errorf("the revoke event of the key in its grace has before %s", e.Before)
		}
	}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("revoke events for %v, want one for each of %v", ids, want)
	}
	newHead, err := keystore.VerifyAudit(ctx, s, &head)
	if err != nil || newHead.Seq != head.Seq+int64(len(want)) {
		t.Fatalf("the chain after RevokeOwner: %+v, %v", newHead, err)
	}

	rec.WaitFor(t, "every revoked key on the change feed", func(r *Recorder) bool {
		for _, k := range revoked {
			if !r.Saw(k.Digest) {
				return false
			}
		}
		return true
	})
	rec.Lock()
	for _, k := range []*keystore.Key{other, unowned, revokedBefore} {
		if rec.Saw(k.Digest) {
			t.Errorf("key %s of owner %q, which RevokeOwner left alone, is on the change feed", k.ID, k.Owner)
		}
	}
	rec.Unlock()

	for _, owner := range []string{"acme", "nobody"} {
		if again, err := lc.RevokeOwner(ctx, "cli:carol", owner); err != nil || len(again) != 0 {
			t.Errorf("RevokeOwner(%q) with nothing to revoke: %v, %v", owner, idsOf(again), err)
		}
	}
	if h, err := s.Head(ctx); err != nil || h.Seq != newHead.Seq {
		t.Errorf("RevokeOwner with nothing to revoke recorded events: head %+v, %v", h, err)
	}
	for _, bad := range []struct{ actor, owner, err string }{
		{"cli:carol", "", "owner is required"},
		{"cli:carol", "  ", "owner is required"},
		{"cli:carol", "a\x00b", "control character"},
		{"", "globex", "actor"},
	} {
		if _, err := lc.RevokeOwner(ctx, bad.actor, bad.owner); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("RevokeOwner(%q, %q): %v, want an error about %s", bad.actor, bad.owner, err, bad.err)
		}
	}
	if got, err := s.Get(ctx, other.ID); err != nil || !got.RevokedAt.IsZero() {
		t.Errorf("globex's key after the refused calls: %+v, %v", got, err)
	}
}

// testRevokeOwnerHoldsOffNewKeys: a key created for the owner by another
// process while RevokeOwner runs waits until its transaction ends, and
// is then the owner's new key: it can neither slip in unseen before the
// revocation commits nor be revoked by it.
func testRevokeOwnerHoldsOffNewKeys(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	dsn := kind.NewDSN(t)
	s := Open(t, dsn, keystore.Options{PepperCheck: h.PepperCheck()})
	other := Open(t, dsn, keystore.Options{PepperCheck: h.PepperCheck()})
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h}
	otherLC := &keystore.Lifecycle{Store: other, Format: Format(t, ""), Hasher: h}
	_, old, err := lc.Create(ctx, "cli:alice", keystore.NewKeyParams{Name: "old", Owner: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Get(ctx, old.ID); err != nil { // set up before the race
		t.Fatal(err)
	}
	var late *keystore.Key
	var lateErr error
	done := make(chan struct{})
	paused := &pauseAfterOwnerKeys{Store: s, pause: func() {
		go func() {
			defer close(done)
			_, late, lateErr = otherLC.Create(ctx, "cli:dave", keystore.NewKeyParams{Name: "late", Owner: "acme"})
		}()
		select {
		case <-done:
			t.Error("a key was created for the owner while RevokeOwner held the owner's keys")
		case <-time.After(500 * time.Millisecond):
		}
	}}
	revoked, err := (&keystore.Lifecycle{Store: paused}).RevokeOwner(ctx, "cli:carol", "acme")
	<-done
	if err != nil || lateErr != nil {
		t.Fatalf("RevokeOwner: %v; the concurrent create: %v", err, lateErr)
	}
	if got := idsOf(revoked); !reflect.DeepEqual(got, []string{old.ID}) {
		t.Errorf("revoked %v, want %s only", got, old.ID)
	}
	if got, err := s.Get(ctx, late.ID); err != nil || !got.RevokedAt.IsZero() {
		t.Errorf("the key created after the revocation: %+v, %v", got, err)
	}
	if _, err := keystore.VerifyAudit(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
}

// pauseAfterOwnerKeys is a Store whose changes call pause once OwnerKeys
// has returned, with the transaction still open.
type pauseAfterOwnerKeys struct {
	keystore.Store
	pause func()
}

func (s *pauseAfterOwnerKeys) Change(ctx context.Context, f func(keystore.Tx) error) error {
	return s.Store.Change(ctx, func(tx keystore.Tx) error { return f(pausingTx{tx, s.pause}) })
}

type pausingTx struct {
	keystore.Tx
	pause func()
}

func (t pausingTx) OwnerKeys(ctx context.Context, owner string) ([]*keystore.Key, error) {
	keys, err := t.Tx.OwnerKeys(ctx, owner)
	if err == nil {
		t.pause()
	}
	return keys, err
}
