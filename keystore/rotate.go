package keystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/audit"
)

// formatOf returns the key format of k's prefix, read from its hint
// ("<prefix>_<id>_...").
func formatOf(k *Key) (Format, error) {
	i := strings.Index(k.Hint, "_"+k.ID+"_")
	if i <= 0 {
		return Format{}, fmt.Errorf("key %s has no prefix in its hint %q", k.ID, k.Hint)
	}
	return NewFormat(k.Hint[:i])
}

// MaxGrace bounds a rotation's grace period.
const MaxGrace = 366 * 24 * time.Hour

// Rotate issues a new key with the fields of the key with id (name,
// owner, scopes, metadata, limits, validity) and retires the old one: it
// keeps working for grace, then is refused like a revoked key (grace 0:
// at once). The new key records which key it replaced, the old one which
// replaced it; the audit trail gets a rotate event for the old key and a
// create event for the new. The new key is returned once, like Create's.
// A legacy key (imported) is replaced by a Keygate key of l.Format.
func (l *Lifecycle) Rotate(ctx context.Context, actor, id string, grace time.Duration) (key string, rec, old *Key, err error) {
	if err := ValidateActor(actor); err != nil {
		return "", nil, nil, err
	}
	if l.Hasher == nil {
		return "", nil, nil, errors.New("rotating a key needs the pepper")
	}
	if grace < 0 || grace > MaxGrace {
		return "", nil, nil, invalid(fmt.Errorf("grace %v must be 0 to %v", grace, MaxGrace))
	}
	at := l.now()
	for attempt := 0; attempt < idAttempts; attempt++ {
		err = l.Store.Change(ctx, func(tx Tx) error {
			before, err := tx.Get(ctx, id)
			if err != nil {
				return err
			}
			if !before.RevokedAt.IsZero() {
				return conflict(fmt.Errorf("key %s is revoked or being retired already: rotate its replacement", id))
			}
			if s := before.Status(at); s != StatusActive && s != StatusNotYetValid {
				return conflict(fmt.Errorf("key %s is %s: only a working key can be rotated", id, s))
			}
			p := NewKeyParams{Name: before.Name, Owner: before.Owner, Scopes: before.Scopes, Metadata: before.Metadata,
				ExpiresAt: before.ExpiresAt, NotBefore: before.NotBefore, Limits: before.Limits, AllowCIDRs: before.AllowCIDRs}
			// The new key has the old one's prefix: the gateways that
			// took the old key take it. A legacy key has none: its
			// replacement gets the Lifecycle's.
			f, err := formatOf(before)
			if before.IsLegacy() {
				if f, err = l.Format, nil; f.prefix == "" {
					err = invalid(fmt.Errorf("key %s is a legacy key: rotating it needs the prefix of its Keygate replacement", id))
				}
			}
			if err != nil {
				return err
			}
			if key, rec, err = newKey(f, l.Hasher, p, at); err != nil {
				return err
			}
			rec.Replaces = id
			if err := tx.Insert(ctx, rec); err != nil {
				return err
			}
			if old, err = tx.Retire(ctx, id, rec.ID, at.Add(grace)); err != nil {
				return err
			}
			if err := appendEvent(ctx, tx, actor, audit.ActionRotate, at, before, old); err != nil {
				return err
			}
			return appendEvent(ctx, tx, actor, audit.ActionCreate, at, nil, rec)
		})
		if !errors.Is(err, ErrDuplicate) {
			break
		}
	}
	if errors.Is(err, ErrDuplicate) {
		return "", nil, nil, errNoFreeID
	}
	if err != nil {
		return "", nil, nil, err
	}
	return key, rec, old, nil
}
