package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// testRotate: a rotation makes a new key with the old one's fields and
// prefix, links both ways, keeps the old key working for the grace and
// revoked after it, records a rotate and a create event, and cannot be
// done twice on one key; revoking a key in its grace ends the grace.
func testRotate(t *testing.T, kind Backend) {
	ctx := Context(t)
	h := Hasher(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{PepperCheck: h.PepperCheck()})
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	lc := &keystore.Lifecycle{Store: s, Format: Format(t, "acme_live"), Hasher: h, Now: func() time.Time { return now }}
	_, old, err := lc.Create(ctx, "cli:alice", keystore.NewKeyParams{Name: "billing", Owner: "acme", Scopes: []string{"read"},
		Metadata: map[string]string{"env": "prod"}, Limits: &keystore.Limits{Quota: "5/day"}, ExpiresAt: now.Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	lc.Format = Format(t, "") // the rotation keeps the key's own prefix
	key, rec, retired, err := lc.Rotate(ctx, "cli:bob", old.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "acme_live_") || rec.Replaces != old.ID || retired.ReplacedBy != rec.ID ||
		rec.Name != "billing" || rec.Owner != "acme" || rec.Metadata["env"] != "prod" || rec.Limits == nil || rec.Limits.Quota != "5/day" ||
		!rec.ExpiresAt.Equal(old.ExpiresAt) || strings.Join(rec.Scopes, ",") != "read" {
		t.Fatalf("rotated: key %q, new %+v, old %+v", key[:12], rec, retired)
	}
	if got := retired.Status(now.Add(59 * time.Minute)); got != keystore.StatusActive {
		t.Errorf("the old key during its grace: %s", got)
	}
	if got := retired.Status(now.Add(time.Hour)); got != keystore.StatusRevoked {
		t.Errorf("the old key after its grace: %s", got)
	}
	p, _ := Format(t, "acme_live").Parse(key)
	if got, err := s.Lookup(ctx, h.Digest(p)); err != nil || got.Replaces != old.ID {
		t.Fatalf("the new key: %+v, %v", got, err)
	}
	if got, err := s.Get(ctx, old.ID); err != nil || got.ReplacedBy != rec.ID || !got.RevokedAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("the old key: %+v, %v", got, err)
	}
	if _, _, _, err := lc.Rotate(ctx, "cli:bob", old.ID, 0); err == nil || !strings.Contains(err.Error(), "rotate its replacement") {
		t.Fatalf("rotating a retired key: %v", err)
	}
	if _, _, _, err := lc.Rotate(ctx, "cli:bob", "AAAAAAAAAAAA", 0); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("rotating an unknown key: %v", err)
	}
	// Revoking the old key during its grace ends the grace.
	if k, changed, err := lc.Revoke(ctx, "cli:carol", old.ID); err != nil || !changed || !k.RevokedAt.Equal(now) {
		t.Fatalf("revoke during the grace: %+v %v %v", k, changed, err)
	}
	var actions []string
	for _, e := range events(t, s, audit.Filter{Owner: "acme"}) {
		actions = append(actions, e.Action)
	}
	if want := "create,rotate,create,revoke"; strings.Join(actions, ",") != want {
		t.Fatalf("events: %v, want %s", actions, want)
	}
	listed, err := s.List(ctx, keystore.ListFilter{Owner: "acme", Statuses: keystore.WorkingStatuses(), Now: now})
	if err != nil || len(listed) != 1 || listed[0].ID != rec.ID {
		t.Fatalf("active keys after the revoke: %v, %v", listed, err)
	}
}
