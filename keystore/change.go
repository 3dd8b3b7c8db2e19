package keystore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/keygate/keygate/audit"
)

// KeyChange is an update of a key's fields; nil fields stay as they are.
// The secret never changes.
type KeyChange struct {
	Name   *string
	Owner  *string
	Scopes *[]string
	// ExpiresAt: a pointer to the zero time removes the expiry.
	ExpiresAt *time.Time
	// NotBefore: a pointer to the zero time lets the key work at once.
	NotBefore *time.Time
	// AllowCIDRs replaces the key's allowlist; a pointer to nil removes
	// it.
	AllowCIDRs *[]netip.Prefix
	// Metadata entries to set; an empty value removes the entry.
	Metadata map[string]string
	// Limits replace the key's own limits; a pointer to nil or to zero
	// Limits removes them.
	Limits **Limits
}

// IsZero reports whether c changes nothing.
func (c KeyChange) IsZero() bool {
	return c.Name == nil && c.Owner == nil && c.Scopes == nil && c.ExpiresAt == nil && c.NotBefore == nil && c.AllowCIDRs == nil && c.Metadata == nil && c.Limits == nil
}

// apply returns k with c applied, checked like a new key's fields.
func (c KeyChange) apply(k *Key, now time.Time) (*Key, error) {
	p := NewKeyParams{Name: k.Name, Owner: k.Owner, Scopes: k.Scopes, Metadata: maps.Clone(k.Metadata), Limits: k.Limits, AllowCIDRs: k.AllowCIDRs}
	if c.AllowCIDRs != nil {
		p.AllowCIDRs = *c.AllowCIDRs
	}
	if c.Name != nil {
		p.Name = *c.Name
	}
	if c.Owner != nil {
		p.Owner = *c.Owner
	}
	if c.Scopes != nil {
		p.Scopes = slices.Clone(*c.Scopes)
	}
	for name, v := range c.Metadata {
		if p.Metadata == nil {
			p.Metadata = map[string]string{}
		}
		if v == "" {
			delete(p.Metadata, name)
		} else {
			p.Metadata[name] = v
		}
	}
	if c.Limits != nil {
		p.Limits = *c.Limits
	}
	// A new expiry must be in the future; one the key already has is
	// left alone, even if it passed.
	if c.ExpiresAt != nil {
		p.ExpiresAt = *c.ExpiresAt
	}
	if err := p.Validate(now); err != nil {
		return nil, err
	}
	out := *k
	out.Name, out.Owner, out.Scopes, out.Metadata, out.Limits, out.AllowCIDRs = p.Name, p.Owner, p.Scopes, p.Metadata, p.Limits, p.AllowCIDRs
	if c.ExpiresAt != nil {
		out.ExpiresAt = truncate(*c.ExpiresAt)
	}
	if c.NotBefore != nil {
		out.NotBefore = truncate(*c.NotBefore)
	}
	if !out.NotBefore.IsZero() && !out.ExpiresAt.IsZero() && !out.NotBefore.Before(out.ExpiresAt) {
		return nil, fmt.Errorf("not-before %s is not before the expiry %s", out.NotBefore.Format(time.RFC3339), out.ExpiresAt.Format(time.RFC3339))
	}
	normalize(&out)
	return &out, nil
}

// Update changes the fields of the key with id that c sets, without
// changing its secret, and records the change in the audit trail. A
// revoked key cannot be changed. changed is false (and nothing is
// recorded) when c leaves the key as it was.
func (l *Lifecycle) Update(ctx context.Context, actor, id string, c KeyChange) (k *Key, changed bool, err error) {
	if err := ValidateActor(actor); err != nil {
		return nil, false, err
	}
	if c.IsZero() {
		return nil, false, invalid(errors.New("nothing to change: name a field to update"))
	}
	at := l.now()
	err = l.Store.Change(ctx, func(tx Tx) error {
		before, err := tx.Get(ctx, id)
		if err != nil {
			return err
		}
		if !before.RevokedAt.IsZero() {
			return conflict(fmt.Errorf("key %s is revoked: a revoked key cannot be changed", id))
		}
		if k, err = c.apply(before, at); err != nil {
			return invalid(err)
		}
		if sameFields(before, k) {
			return errUnchanged
		}
		if err := tx.Update(ctx, k); err != nil {
			return err
		}
		changed = true
		return appendEvent(ctx, tx, actor, audit.ActionUpdate, at, before, k)
	})
	if errors.Is(err, errUnchanged) {
		return k, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return k, changed, nil
}

// sameFields reports whether a and b hold the same changeable fields.
func sameFields(a, b *Key) bool {
	return a.Name == b.Name && a.Owner == b.Owner && slices.Equal(a.Scopes, b.Scopes) &&
		maps.Equal(a.Metadata, b.Metadata) && a.ExpiresAt.Equal(b.ExpiresAt) && a.NotBefore.Equal(b.NotBefore) &&
		LimitsText(a.Limits) == LimitsText(b.Limits) && slices.Equal(a.AllowCIDRs, b.AllowCIDRs)
}

// Delete removes the key with id from the store and records it in the
// audit trail; the key's events stay. Unlike Revoke, nothing of the key
// is left to show or list.
func (l *Lifecycle) Delete(ctx context.Context, actor, id string) (*Key, error) {
	if err := ValidateActor(actor); err != nil {
		return nil, err
	}
	at := l.now()
	var k *Key
	err := l.Store.Change(ctx, func(tx Tx) error {
		var err error
		if k, err = tx.Delete(ctx, id); err != nil {
			return err
		}
		return appendEvent(ctx, tx, actor, audit.ActionDelete, at, k, nil)
	})
	return k, err
}
