package keystore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Issue creates a key with the caller's parameters and stores its record.
// The returned key string is the only copy there will ever be: the store
// keeps its digest.
func Issue(ctx context.Context, s Store, f Format, h *Hasher, p NewKeyParams) (string, *Key, error) {
	created := now()
	if err := p.Validate(created); err != nil {
		return "", nil, err
	}
	// Ids carry 71 random bits; a collision is practically impossible but
	// costs nothing to survive.
	for attempt := 0; attempt < 3; attempt++ {
		key, _, err := f.Generate()
		if err != nil {
			return "", nil, fmt.Errorf("generating key: %w", err)
		}
		parsed, err := f.Parse(key)
		if err != nil {
			return "", nil, fmt.Errorf("generated key failed its own format check: %w", err)
		}
		rec := &Key{
			ID:        parsed.ID,
			Name:      p.Name,
			Owner:     p.Owner,
			Scopes:    p.Scopes,
			Metadata:  p.Metadata,
			Hint:      Hint(parsed),
			CreatedAt: created,
			ExpiresAt: truncate(p.ExpiresAt),
			Digest:    h.Digest(parsed),
		}
		normalize(rec)
		err = s.Insert(ctx, rec)
		if errors.Is(err, ErrDuplicate) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return key, rec, nil
	}
	return "", nil, errors.New("could not find a free key id after 3 attempts")
}

func truncate(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}
