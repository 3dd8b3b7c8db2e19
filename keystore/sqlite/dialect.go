package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/internal/sqlstore"
)

// dialect is SQLite's part of the shared store: times as Unix
// microseconds (usage minutes as Unix seconds), scopes and metadata as
// JSON text, no locks beyond the write lock every transaction takes at
// BEGIN (see db.Begin), and batches of usage passed as one JSON array that
// json_each unpacks into one statement.
var dialect = &sqlstore.Dialect{
	Name:   "SQLite",
	Time:   micros,
	Minute: seconds,

	ScanKey:        scanKey,
	KeyCollections: keyCollections,
	IsDuplicate: func(err error) bool {
		var sqlErr *sqlite.Error
		return errors.As(err, &sqlErr) && (sqlErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqlErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
	},

	CreateMigrationsTable: `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL)`,
	MigrationsTableExists: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keygate_schema_migrations')",

	UsageBuckets: `SELECT (minute / $1) * $1 AS b,
    sum(status_1xx), sum(status_2xx), sum(status_3xx), sum(status_4xx), sum(status_5xx),
    sum(bytes_in), sum(bytes_out), sum(latency_us)
FROM keygate_usage
WHERE ($2 = '' OR key_id = $2) AND ($3 = '' OR owner = $3) AND minute >= $4
GROUP BY b ORDER BY b`,
	BucketSize: func(q keystore.UsageQuery) any { return q.BucketSeconds() },
	// WHERE true: without it SQLite would read ON CONFLICT as a join's ON.
	UpsertUsage: `INSERT INTO keygate_usage
    (key_id, minute, owner, status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, bytes_in, bytes_out, latency_us)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10
FROM json_each($1) WHERE true
ON CONFLICT (key_id, minute) DO UPDATE SET
    owner = excluded.owner,
    status_1xx = status_1xx + excluded.status_1xx,
    status_2xx = status_2xx + excluded.status_2xx,
    status_3xx = status_3xx + excluded.status_3xx,
    status_4xx = status_4xx + excluded.status_4xx,
    status_5xx = status_5xx + excluded.status_5xx,
    bytes_in = bytes_in + excluded.bytes_in,
    bytes_out = bytes_out + excluded.bytes_out,
    latency_us = latency_us + excluded.latency_us`,
	UsageArgs: usageArgs,
	UpsertLastUsed: `INSERT INTO keygate_last_used (key_id, at)
SELECT value ->> 0, value ->> 1 FROM json_each($1) WHERE true
ON CONFLICT (key_id) DO UPDATE SET at = max(at, excluded.at)`,
	LastUsedArgs: lastUsedArgs,
}

// micros and seconds are times as Unix microseconds and seconds.
var (
	micros = sqlstore.Times{
		Value: func(t time.Time) any { return t.UnixMicro() },
		Dest:  func(t *time.Time) any { return (*unixMicros)(t) },
	}
	seconds = sqlstore.Times{
		Value: func(t time.Time) any { return t.Unix() },
		Dest:  func(t *time.Time) any { return (*unixSeconds)(t) },
	}
)

// unixMicros and unixSeconds scan a column of Unix microseconds or
// seconds into the time.Time they convert from.
type (
	unixMicros  time.Time
	unixSeconds time.Time
)

func (t *unixMicros) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("reading a time in microseconds from %T", src)
	}
	*t = unixMicros(time.UnixMicro(v))
	return nil
}

func (t *unixSeconds) Scan(src any) error {
	v, ok := src.(int64)
	if !ok {
		return fmt.Errorf("reading a time in seconds from %T", src)
	}
	*t = unixSeconds(time.Unix(v, 0))
	return nil
}

func scanKey(row keystore.Scanner) (*keystore.Key, error) {
	var (
		k                keystore.Key
		digest           []byte
		scopes, metadata string
		created          int64
		expires, revoked sql.NullInt64
		notBefore        sql.NullInt64
		limits, ownerLim string
		cidrs            string
	)
	if err := row.Scan(&k.ID, &digest, &k.Name, &k.Owner, &scopes, &metadata, &k.Hint, &created, &expires, &revoked, &limits, &notBefore,
		&k.Replaces, &k.ReplacedBy, &cidrs, &k.PepperID, &ownerLim); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, keystore.ErrNotFound
		}
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, fmt.Errorf("key %s has corrupt scopes: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(metadata), &k.Metadata); err != nil {
		return nil, fmt.Errorf("key %s has corrupt metadata: %w", k.ID, err)
	}
	k.CreatedAt = time.UnixMicro(created)
	if expires.Valid {
		k.ExpiresAt = time.UnixMicro(expires.Int64)
	}
	if revoked.Valid {
		k.RevokedAt = time.UnixMicro(revoked.Int64)
	}
	if notBefore.Valid {
		k.NotBefore = time.UnixMicro(notBefore.Int64)
	}
	var err error
	if k.Limits, err = keystore.ParseLimits(limits); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if k.AllowCIDRs, err = keystore.ParseCIDRs(cidrs); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if k.OwnerLimits, err = keystore.ParseLimits(ownerLim); err != nil {
		return nil, fmt.Errorf("owner %q: %w", k.Owner, err)
	}
	return keystore.ScannedKey(&k, digest)
}

func keyCollections(scopes []string, metadata map[string]string) (any, any, error) {
	s, err := json.Marshal(scopes)
	if err != nil {
		return nil, nil, err
	}
	m, err := json.Marshal(metadata)
	if err != nil {
		return nil, nil, err
	}
	return string(s), string(m), nil
}

// usageArgs turns rows into the JSON array UpsertUsage unpacks: one
// array of column values a row.
func usageArgs(rows []keystore.UsageRow) ([]any, error) {
	values := make([][11]any, len(rows))
	for i, r := range rows {
		values[i] = [11]any{r.KeyID, r.Minute.Unix(), r.Owner, r.Status[0], r.Status[1], r.Status[2], r.Status[3], r.Status[4],
			r.BytesIn, r.BytesOut, r.LatencyMicros}
	}
	return jsonArg(values)
}

// lastUsedArgs turns last uses into the JSON array UpsertLastUsed
// unpacks.
func lastUsedArgs(ids []string, at []time.Time) ([]any, error) {
	values := make([][2]any, len(ids))
	for i, id := range ids {
		values[i] = [2]any{id, at[i].UnixMicro()}
	}
	return jsonArg(values)
}

func jsonArg(v any) ([]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return []any{string(b)}, nil
}
