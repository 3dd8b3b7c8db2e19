package storetest

import (
	"testing"

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
