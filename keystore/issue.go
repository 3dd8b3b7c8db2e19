package keystore

import (
	"errors"
	"fmt"
	"time"
)

// newKey generates a key for p and the record the store keeps of it. The
// returned key string is the only copy there will ever be: the record
// holds its digest.
func newKey(f Format, h *Hasher, p NewKeyParams, created time.Time) (string, *Key, error) {
	key, _, err := f.Generate()
	if err != nil {
		return "", nil, fmt.Errorf("generating key: %w", err)
	}
	parsed, err := f.Parse(key)
	if err != nil {
		return "", nil, fmt.Errorf("generated key failed its own format check: %w", err)
	}
	rec := &Key{
		ID:         parsed.ID,
		Name:       p.Name,
		Owner:      p.Owner,
		Scopes:     p.Scopes,
		Metadata:   p.Metadata,
		Hint:       Hint(parsed),
		CreatedAt:  created,
		ExpiresAt:  truncate(p.ExpiresAt),
		NotBefore:  truncate(p.NotBefore),
		Limits:     p.Limits,
		AllowCIDRs: p.AllowCIDRs,
		Digest:     h.Digest(parsed),
		PepperID:   h.ID(),
	}
	normalize(rec)
	return key, rec, nil
}

// idAttempts bounds the retries after an id collision. Ids carry 71
// random bits; a collision is practically impossible but costs nothing
// to survive.
const idAttempts = 3

var errNoFreeID = errors.New("could not find a free key id after 3 attempts")

func truncate(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}
