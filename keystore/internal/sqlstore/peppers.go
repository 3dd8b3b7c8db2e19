package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/keystore"
)

// RegisteredPeppers returns the check values of the registered peppers,
// oldest first.
func (s *Store) RegisteredPeppers(ctx context.Context) ([][]byte, error) {
	rows, err := s.db.Query(ctx, "SELECT check_value FROM keygate_peppers ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("reading the registered peppers: %w", err)
	}
	defer rows.Close()
	checks, err := keystore.AppendRows([][]byte{}, rows, func(row keystore.Scanner) ([]byte, error) {
		var b []byte
		return b, row.Scan(&b)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the registered peppers: %w", err)
	}
	return checks, nil
}

// RegisterPeppers registers the peppers with checks, in order, after the
// registered ones. Two processes registering at once may both pick the
// next sequence number; the loser's insert does nothing and it tries
// again after the winner's.
func (s *Store) RegisterPeppers(ctx context.Context, checks []keystore.Digest) error {
	at := time.Now().UTC()
	for _, c := range checks {
		id := keystore.PepperID(c)
		for attempt := 0; ; attempt++ {
			if _, err := s.db.Exec(ctx,
				"INSERT INTO keygate_peppers (id, check_value, seq, registered_at) "+
					"SELECT $1, $2, coalesce(max(seq), 0) + 1, $3 FROM keygate_peppers WHERE true ON CONFLICT DO NOTHING",
				id, c[:], s.d.Time.Value(at)); err != nil {
				return fmt.Errorf("registering pepper %s: %w", id, err)
			}
			var n int
			if err := s.db.QueryRow(ctx, "SELECT count(*) FROM keygate_peppers WHERE id = $1", id).Scan(&n); err != nil {
				return fmt.Errorf("registering pepper %s: %w", id, err)
			}
			if n == 1 {
				break
			}
			if attempt == 5 {
				return fmt.Errorf("registering pepper %s: other processes kept registering peppers at the same time", id)
			}
		}
	}
	return nil
}

// Rehash moves a key from an older pepper's digest to the newest
// pepper's (see keystore.Keys.Rehash).
func (s *Store) Rehash(ctx context.Context, id string, from, to keystore.Digest, pepperID string) (bool, error) {
	if err := s.Ready(ctx); err != nil {
		return false, err
	}
	var newest string
	err := s.db.QueryRow(ctx, "SELECT id FROM keygate_peppers ORDER BY seq DESC LIMIT 1").Scan(&newest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("re-hashing key %s: %w", id, err)
	}
	if newest != pepperID {
		return false, fmt.Errorf("re-hashing key %s to pepper %s: %w (newest: %q); "+
			"run any `caddy api-key` command as the management role with the same peppers to register it", id, pepperID, keystore.ErrNotNewestPepper, newest)
	}
	n, err := s.db.Exec(ctx,
		"UPDATE keygate_keys SET digest = $1, pepper_id = $2 WHERE id = $3 AND digest = $4 AND (pepper_id IS NULL OR pepper_id <> $2)",
		to[:], pepperID, id, from[:])
	if err != nil {
		if s.d.IsDuplicate(err) {
			return false, fmt.Errorf("re-hashing key %s: %w", id, keystore.ErrDuplicate)
		}
		return false, fmt.Errorf("re-hashing key %s: %w", id, err)
	}
	return n > 0, nil
}

// PepperUses counts the keys on each pepper (see keystore.Registry).
func (s *Store) PepperUses(ctx context.Context, now time.Time) ([]keystore.PepperUse, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	working := "(" + statusWhere(keystore.StatusActive, "$1") + ") OR (" + statusWhere(keystore.StatusNotYetValid, "$1") + ")"
	rows, err := s.db.Query(ctx,
		"SELECT coalesce(k.pepper_id, ''), count(*), sum(CASE WHEN "+working+" THEN 1 ELSE 0 END) FROM keygate_keys k GROUP BY coalesce(k.pepper_id, '')",
		s.d.Time.Value(now))
	if err != nil {
		return nil, fmt.Errorf("counting keys per pepper: %w", err)
	}
	counts, err := keystore.AppendRows([]keystore.PepperUse{}, rows, func(row keystore.Scanner) (keystore.PepperUse, error) {
		var u keystore.PepperUse
		var keys, working int64
		err := row.Scan(&u.ID, &keys, &working)
		u.Keys, u.Working = int(keys), int(working)
		return u, err
	})
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("counting keys per pepper: %w", err)
	}
	rows, err = s.db.Query(ctx, "SELECT id, registered_at FROM keygate_peppers ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("reading the registered peppers: %w", err)
	}
	uses, err := keystore.AppendRows([]keystore.PepperUse{}, rows, func(row keystore.Scanner) (keystore.PepperUse, error) {
		var u keystore.PepperUse
		err := row.Scan(&u.ID, s.d.Time.Dest(&u.Registered))
		u.Registered = u.Registered.UTC()
		return u, err
	})
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the registered peppers: %w", err)
	}
	if len(uses) > 0 {
		uses[len(uses)-1].Newest = true
	}
	for _, c := range counts {
		i := slices.IndexFunc(uses, func(u keystore.PepperUse) bool { return u.ID == c.ID })
		if i < 0 {
			uses = append(uses, keystore.PepperUse{ID: c.ID})
			i = len(uses) - 1
		}
		uses[i].Keys, uses[i].Working = c.Keys, c.Working
	}
	return uses, nil
}
