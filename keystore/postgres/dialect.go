package postgres

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/internal/sqlstore"
)

// dialect is PostgreSQL's part of the shared store: timestamptz, bytea,
// text[] and jsonb as pgx converts them, table locks for the transactions
// that need one, and arrays that unnest into one statement per batch.
var dialect = &sqlstore.Dialect{
	Name:   "PostgreSQL",
	Time:   timestamptz,
	Minute: timestamptz,

	ScanKey: scanKey,
	KeyCollections: func(scopes []string, metadata map[string]string) (any, any, error) {
		return scopes, metadata, nil
	},
	IsDuplicate: func(err error) bool {
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == "23505"
	},

	LockKeys:  "LOCK TABLE keygate_keys IN SHARE ROW EXCLUSIVE MODE",
	LockAudit: "LOCK TABLE keygate_audit IN SHARE ROW EXCLUSIVE MODE",
	// An advisory lock of the transaction, "keygate" in ASCII
	// (0x6b657967617465), serialises instances that start at once.
	LockMigrations: "SELECT pg_advisory_xact_lock(30229394607928421)",

	CreateMigrationsTable: `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`,
	MigrationsTableExists: "SELECT to_regclass('keygate_schema_migrations') IS NOT NULL",

	UsageBuckets: `SELECT date_trunc($1, minute, 'UTC') AS b,
    sum(status_1xx)::bigint, sum(status_2xx)::bigint, sum(status_3xx)::bigint, sum(status_4xx)::bigint, sum(status_5xx)::bigint,
    sum(bytes_in)::bigint, sum(bytes_out)::bigint, sum(latency_us)::bigint
FROM keygate_usage
WHERE ($2 = '' OR key_id = $2) AND ($3 = '' OR owner = $3) AND minute >= $4
GROUP BY b ORDER BY b`,
	BucketSize: func(q keystore.UsageQuery) any { return q.By },
	UpsertUsage: `INSERT INTO keygate_usage AS u
    (key_id, minute, owner, status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, bytes_in, bytes_out, latency_us)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
ON CONFLICT (key_id, minute) DO UPDATE SET
    owner = EXCLUDED.owner,
    status_1xx = u.status_1xx + EXCLUDED.status_1xx,
    status_2xx = u.status_2xx + EXCLUDED.status_2xx,
    status_3xx = u.status_3xx + EXCLUDED.status_3xx,
    status_4xx = u.status_4xx + EXCLUDED.status_4xx,
    status_5xx = u.status_5xx + EXCLUDED.status_5xx,
    bytes_in = u.bytes_in + EXCLUDED.bytes_in,
    bytes_out = u.bytes_out + EXCLUDED.bytes_out,
    latency_us = u.latency_us + EXCLUDED.latency_us`,
	UsageArgs: usageArgs,
	UpsertLastUsed: `INSERT INTO keygate_last_used AS l (key_id, at)
SELECT * FROM unnest($1::text[], $2::timestamptz[])
ON CONFLICT (key_id) DO UPDATE SET at = GREATEST(l.at, EXCLUDED.at)`,
	LastUsedArgs: func(ids []string, at []time.Time) ([]any, error) { return []any{ids, at}, nil },
}

// timestamptz is a time as pgx sends and reads it.
var timestamptz = sqlstore.Times{
	Value: func(t time.Time) any { return t },
	Dest:  func(t *time.Time) any { return t },
}

func scanKey(row keystore.Scanner) (*keystore.Key, error) {
	var (
		k                   keystore.Key
		digest              []byte
		exp                 *time.Time
		revoked             *time.Time
		notBefore           *time.Time
		limits, ownerLimits string
		cidrs               string
	)
	if err := row.Scan(&k.ID, &digest, &k.Name, &k.Owner, &k.Scopes, &k.Metadata, &k.Hint, &k.CreatedAt, &exp, &revoked, &limits, &notBefore,
		&k.Replaces, &k.ReplacedBy, &cidrs, &k.PepperID, &ownerLimits); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, keystore.ErrNotFound
		}
		return nil, err
	}
	if exp != nil {
		k.ExpiresAt = *exp
	}
	if revoked != nil {
		k.RevokedAt = *revoked
	}
	if notBefore != nil {
		k.NotBefore = *notBefore
	}
	var err error
	if k.Limits, err = keystore.ParseLimits(limits); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if k.AllowCIDRs, err = keystore.ParseCIDRs(cidrs); err != nil {
		return nil, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if k.OwnerLimits, err = keystore.ParseLimits(ownerLimits); err != nil {
		return nil, fmt.Errorf("owner %q: %w", k.Owner, err)
	}
	return keystore.ScannedKey(&k, digest)
}

// usageArgs turns rows into the columns UpsertUsage unnests.
func usageArgs(rows []keystore.UsageRow) ([]any, error) {
	n := len(rows)
	var (
		ids, owners                    = make([]string, n), make([]string, n)
		minutes                        = make([]time.Time, n)
		c1, c2, c3, c4, c5, in, out, l = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, r := range rows {
		ids[i], owners[i], minutes[i] = r.KeyID, r.Owner, r.Minute
		c1[i], c2[i], c3[i], c4[i], c5[i] = r.Status[0], r.Status[1], r.Status[2], r.Status[3], r.Status[4]
		in[i], out[i], l[i] = r.BytesIn, r.BytesOut, r.LatencyMicros
	}
	return []any{ids, minutes, owners, c1, c2, c3, c4, c5, in, out, l}, nil
}
