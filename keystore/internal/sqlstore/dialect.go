package sqlstore

import (
	"time"

	"github.com/keygate/keygate/keystore"
)

// Dialect is what a backend's database does differently: the types it
// keeps values in, its locks, and the statements that cannot be written
// alike. Statements the dialects share are written once in this package,
// with $1, $2… placeholders, which SQLite reads as numbered parameters
// too.
type Dialect struct {
	// Name names the database in errors ("PostgreSQL").
	Name string

	// Time is how times to the microsecond are stored (keys, audit
	// events, last uses, usage batches); Minute is how the minutes of
	// keygate_usage are stored.
	Time, Minute Times

	// ScanKey reads a row of keystore.KeyColumns, or returns
	// keystore.ErrNotFound for a missing row. Each backend writes it for
	// its own types: it is the request path's one conversion.
	ScanKey func(row keystore.Scanner) (*keystore.Key, error)
	// KeyCollections returns a key's scopes and metadata as arguments
	// for keygate_keys' columns.
	KeyCollections func(scopes []string, metadata map[string]string) (scopeArg, metadataArg any, err error)
	// IsDuplicate reports whether err is a violation of a unique
	// constraint.
	IsDuplicate func(err error) bool

	// LockKeys, LockAudit and LockMigrations are statements that take a
	// lock for the rest of a transaction: of keygate_keys against
	// inserts, of the audit chain's head against other appenders, and of
	// the schema against other migrators. Empty for a database whose
	// transactions hold its one write lock from Begin.
	LockKeys, LockAudit, LockMigrations string

	// CreateMigrationsTable creates keygate_schema_migrations (version,
	// name, applied_at) if it does not exist; MigrationsTableExists
	// selects whether it does.
	CreateMigrationsTable, MigrationsTableExists string

	// UsageBuckets sums keygate_usage into buckets (start, the five
	// status classes, bytes in, bytes out, latency): $1 is BucketSize of
	// the query, $2 a key id or '', $3 an owner or '', $4 the first
	// minute.
	UsageBuckets string
	// BucketSize is a query's bucket size as UsageBuckets takes it.
	BucketSize func(q keystore.UsageQuery) any
	// UpsertUsage adds rows to keygate_usage in one statement, with the
	// arguments UsageArgs makes of them.
	UpsertUsage string
	UsageArgs   func(rows []keystore.UsageRow) ([]any, error)
	// UpsertLastUsed moves keys' last uses forward in one statement, with
	// the arguments LastUsedArgs makes of them.
	UpsertLastUsed string
	LastUsedArgs   func(ids []string, at []time.Time) ([]any, error)
}

// Times are the conversions of a time column.
type Times struct {
	// Value returns t as a statement argument.
	Value func(t time.Time) any
	// Dest returns a Scan destination that reads a non-NULL column of
	// this kind into *t.
	Dest func(t *time.Time) any
}
