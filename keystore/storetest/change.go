package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// testUpdateAndDelete: an update changes the fields it names and keeps the
// secret, goes on the change feed and into the audit trail; an update
// that changes nothing records nothing; a revoked key cannot be updated;
// a deleted key is gone but its events stay.
func testUpdateAndDelete(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, ""), Hasher: h}
	key, k, err := lc.Create(ctx, "cli:alice", keystore.NewKeyParams{Name: "a", Owner: "acme", Scopes: []string{"read"},
		Metadata: map[string]string{"team": "core", "env": "prod"}, Limits: &keystore.Limits{Rate: "5/s"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := StartWatch(t, s)
	name, scopes, expires := "renamed", []string{"write", "read"}, time.Now().Add(48*time.Hour)
	var noLimits *keystore.Limits
	updated, changed, err := lc.Update(ctx, "cli:bob", k.ID, keystore.KeyChange{Name: &name, Scopes: &scopes, ExpiresAt: &expires,
		Metadata: map[string]string{"env": "", "tier": "gold"}, Limits: &noLimits})
	if err != nil || !changed {
		t.Fatalf("update: %v, %v", changed, err)
	}
	rec.WaitFor(t, "the update on the change feed", func(r *Recorder) bool { return r.Saw(k.Digest) })
	p, _ := Format(t, "").Parse(key)
	got, err := s.Lookup(ctx, h.Digest(p))
	if err != nil || got.Name != "renamed" || strings.Join(got.Scopes, ",") != "read,write" || got.Owner != "acme" ||
		got.Metadata["tier"] != "gold" || got.Metadata["env"] != "" || got.Metadata["team"] != "core" ||
		got.Limits != nil || !got.ExpiresAt.Equal(expires.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("after the update, with the same secret: %+v, %v", got, err)
	}
	if updated.Name != got.Name {
		t.Errorf("Update returned %+v", updated)
	}
	if _, changed, err := lc.Update(ctx, "cli:bob", k.ID, keystore.KeyChange{Name: &name}); err != nil || changed {
		t.Fatalf("an update that changes nothing: %v, %v", changed, err)
	}
	bad := ""
	if _, _, err := lc.Update(ctx, "cli:bob", k.ID, keystore.KeyChange{Name: &bad}); err == nil || !strings.Contains(err.Error(), "name is required") {
		t.Fatalf("an empty name: %v", err)
	}
	if _, _, err := lc.Update(ctx, "cli:bob", "AAAAAAAAAAAA", keystore.KeyChange{Name: &name}); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("update of an unknown key: %v", err)
	}

	_, revoked, err := lc.Create(ctx, "cli:alice", keystore.NewKeyParams{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := lc.Revoke(ctx, "cli:alice", revoked.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lc.Update(ctx, "cli:bob", revoked.ID, keystore.KeyChange{Name: &name}); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("update of a revoked key: %v", err)
	}

	deleted, err := lc.Delete(ctx, "cli:carol", k.ID)
	if err != nil || deleted.ID != k.ID {
		t.Fatalf("delete: %+v, %v", deleted, err)
	}
	if _, err := s.Lookup(ctx, h.Digest(p)); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a deleted key is still found: %v", err)
	}
	if _, err := lc.Delete(ctx, "cli:carol", k.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	var actions []string
	for _, e := range events(t, s, audit.Filter{KeyID: k.ID}) {
		actions = append(actions, e.Action+" by "+e.Actor)
		if e.Action == audit.ActionDelete && (e.Before == "" || e.After != "") {
			t.Errorf("delete event: before %q, after %q", e.Before, e.After)
		}
	}
	if want := "create by cli:alice,update by cli:bob,delete by cli:carol"; strings.Join(actions, ",") != want {
		t.Fatalf("events of the key: %v, want %s", actions, want)
	}
	if head, err := keystore.VerifyAudit(ctx, s, nil); err != nil || head.Seq != 5 { // create, update, create, revoke, delete
		t.Fatalf("the chain: %+v, %v", head, err)
	}
}
