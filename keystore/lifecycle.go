package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/audit"
)

// Lifecycle is the one way keys change: the CLI and the admin API both
// call it. Each change names its actor and appends its audit event in the
// same transaction as the change, so that the chain holds every change
// that committed and no other.
type Lifecycle struct {
	Store Store
	// Format and Hasher make new keys; Create needs them.
	Format Format
	Hasher *Hasher
	// OtherPeppers are the other peppers of a pepper rotation: Import
	// finds a key already in the store that one of them hashed.
	OtherPeppers []*Hasher
	// Now is the clock (nil: the system's).
	Now func() time.Time
}

// MaxActorLen bounds an actor name.
const MaxActorLen = 200

// ValidateActor checks an actor name: 1 to MaxActorLen bytes of UTF-8
// text without control characters.
func ValidateActor(actor string) error {
	if actor == "" {
		return invalid(errors.New("actor is required: who makes the change"))
	}
	return invalid(checkText("actor", actor, MaxActorLen))
}

func (l *Lifecycle) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC().Truncate(time.Microsecond)
	}
	return now()
}

// Create issues a key with p and returns it with its record. The key
// string is the only copy there will ever be: the store keeps its digest.
func (l *Lifecycle) Create(ctx context.Context, actor string, p NewKeyParams) (string, *Key, error) {
	if err := ValidateActor(actor); err != nil {
		return "", nil, err
	}
	if l.Hasher == nil {
		return "", nil, errors.New("creating a key needs the pepper")
	}
	created := l.now()
	if err := p.Validate(created); err != nil {
		return "", nil, invalid(err)
	}
	for attempt := 0; attempt < idAttempts; attempt++ {
		key, rec, err := newKey(l.Format, l.Hasher, p, created)
		if err != nil {
			return "", nil, err
		}
		err = l.Store.Change(ctx, func(tx Tx) error {
			if err := tx.Insert(ctx, rec); err != nil {
				return err
			}
			return appendEvent(ctx, tx, actor, audit.ActionCreate, created, nil, rec)
		})
		if errors.Is(err, ErrDuplicate) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return key, rec, nil
	}
	return "", nil, errNoFreeID
}

// Revoke revokes the key with id. Revoking a revoked key changes nothing
// and records nothing: changed is false and k is the key as it is.
func (l *Lifecycle) Revoke(ctx context.Context, actor, id string) (k *Key, changed bool, err error) {
	if err := ValidateActor(actor); err != nil {
		return nil, false, err
	}
	at := l.now()
	err = l.Store.Change(ctx, func(tx Tx) error {
		before, err := tx.Get(ctx, id)
		if err != nil {
			return err
		}
		if k, changed, err = tx.Revoke(ctx, id, at); err != nil || !changed {
			return err
		}
		return appendEvent(ctx, tx, actor, audit.ActionRevoke, at, before, k)
	})
	if err != nil {
		return nil, false, err
	}
	return k, changed, nil
}

// RevokeOwner revokes every key of owner that is not revoked yet, in one
// transaction with a revoke event for each: keys in a rotation's grace
// are revoked too, their grace ending now. It returns the keys it revoked,
// as they are now; none (and no event) when the owner had none left to
// revoke. Each revocation reaches every gateway's cache as Revoke's does.
func (l *Lifecycle) RevokeOwner(ctx context.Context, actor, owner string) ([]*Key, error) {
	if err := ValidateActor(actor); err != nil {
		return nil, err
	}
	if err := validateOwner(owner); err != nil {
		return nil, err
	}
	at := l.now()
	var revoked []*Key
	err := l.Store.Change(ctx, func(tx Tx) error {
		revoked = revoked[:0]
		// OwnerKeys holds off other changes of keygate_keys until the
		// transaction ends: a key created for the owner meanwhile is
		// either seen here or made after, never missed.
		keys, err := tx.OwnerKeys(ctx, owner)
		if err != nil {
			return err
		}
		for _, before := range keys {
			if !before.RevokedAt.IsZero() && !at.Before(before.RevokedAt) {
				continue // revoked already; a grace still running is not
			}
			k, changed, err := tx.Revoke(ctx, before.ID, at)
			if err != nil {
				return err
			}
			if !changed {
				continue
			}
			if err := appendEvent(ctx, tx, actor, audit.ActionRevoke, at, before, k); err != nil {
				return err
			}
			revoked = append(revoked, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("revoking the keys of owner %q: %w", owner, err)
	}
	return revoked, nil
}

// validateOwner checks the owner a change names for all of its keys.
func validateOwner(owner string) error {
	if strings.TrimSpace(owner) == "" {
		return invalid(errors.New("owner is required"))
	}
	return invalid(checkText("owner", owner, MaxOwnerLen))
}

// appendEvent records a change of a key from before to after (either may
// be nil) as an audit event.
func appendEvent(ctx context.Context, tx Tx, actor, action string, at time.Time, before, after *Key) error {
	e := &audit.Event{Time: at, Actor: actor, Action: action}
	for _, k := range []*Key{before, after} {
		if k != nil {
			e.KeyID, e.Owner = k.ID, k.Owner
		}
	}
	var err error
	if e.Before, err = keyJSON(before); err != nil {
		return err
	}
	if e.After, err = keyJSON(after); err != nil {
		return err
	}
	if err := tx.Append(ctx, e); err != nil {
		return fmt.Errorf("recording the change in the audit trail: %w", err)
	}
	return nil
}

// SetOwnerLimits sets the limits all of owner's keys share (nil or zero
// clears them), recording the change in the audit trail. changed is false
// when the limits were already l.
func (l *Lifecycle) SetOwnerLimits(ctx context.Context, actor, owner string, lim *Limits) (changed bool, err error) {
	if err := ValidateActor(actor); err != nil {
		return false, err
	}
	if err := validateOwner(owner); err != nil {
		return false, err
	}
	if err := lim.ValidateForOwner(); err != nil {
		return false, invalid(err)
	}
	at := l.now()
	err = l.Store.Change(ctx, func(tx Tx) error {
		before, err := tx.SetOwnerLimits(ctx, owner, lim)
		if err != nil {
			return err
		}
		if LimitsText(before) == LimitsText(lim) {
			return errUnchanged
		}
		changed = true
		e := &audit.Event{Time: at, Actor: actor, Action: audit.ActionOwnerLimits, Owner: owner,
			Before: LimitsText(before), After: LimitsText(lim)}
		if err := tx.Append(ctx, e); err != nil {
			return fmt.Errorf("recording the change in the audit trail: %w", err)
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return false, nil
	}
	return changed, err
}

// errUnchanged rolls back a change that changes nothing.
var errUnchanged = errors.New("nothing to change")

// keyJSON is the state of a key an audit event keeps: its record as JSON,
// which never holds the digest.
func keyJSON(k *Key) (string, error) {
	if k == nil {
		return "", nil
	}
	b, err := json.Marshal(k)
	return string(b), err
}

// VerifyAudit checks the whole audit chain of s from the genesis and
// returns its head. If want is not nil, the chain must also pass through
// that head, recorded earlier: a chain cut short before it lost its
// newest events. A chain that does not hold gives an *audit.BrokenError
// naming the first event that does not.
func VerifyAudit(ctx context.Context, s Store, want *audit.Head) (audit.Head, error) {
	c := audit.NewChain(want)
	if err := s.Events(ctx, audit.Filter{}, c.Add); err != nil {
		return audit.Head{}, err
	}
	return c.Finish()
}
