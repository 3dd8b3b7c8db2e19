// Package storetest is the conformance suite of Keygate's key stores:
// the same tests, run unchanged against every backend, so that a backend
// (or a new table) is checked by the tests that already exist. A
// backend's package calls Run from its own tests with a Backend that says
// how to make an empty store and how to reach into it.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Backend is the store under test, and what the suite needs to do to it
// behind Keygate's back.
type Backend struct {
	// NewDSN returns the DSN of a fresh, empty store.
	NewDSN func(t *testing.T) string
	// Dump returns everything the store holds, as text, for the "no key
	// material at rest" check.
	Dump func(t *testing.T, dsn string) string
	// Exec runs SQL on the store behind Keygate's back, as an operator (or
	// an attacker with write access) would, on a connection of its own.
	Exec func(t *testing.T, dsn, sql string)
	// Bytes returns the SQL literal of a binary value.
	Bytes func(b []byte) string
	// AppliedAt is an SQL value for keygate_schema_migrations.applied_at.
	AppliedAt string
	// MalformedChanges are statements that put something that is not a
	// key digest on the store's change feed.
	MalformedChanges []string
}

// tests are the suite, by name; each runs on a store of its own.
var tests = []struct {
	name string
	run  func(t *testing.T, b Backend)
}{
	{"StoreIssueLookupGet", testStoreIssueLookupGet},
	{"StoreNotFoundAndDuplicate", testStoreNotFoundAndDuplicate},
	{"StoreRevoke", testStoreRevoke},
	{"StoreList", testStoreList},
	{"ListStatuses", testListStatuses},
	{"ListPages", testListPages},
	{"StoreMigrations", testStoreMigrations},
	{"StorePepperCheck", testStorePepperCheck},
	{"StorePepperCheckCorrupt", testStorePepperCheckCorrupt},
	{"StoreHoldsNoKeyMaterial", testStoreHoldsNoKeyMaterial},
	{"OpenSchemaModes", testOpenSchemaModes},
	{"StorePrefixes", testStorePrefixes},
	{"StoreResetPepperCheck", testStoreResetPepperCheck},
	{"PepperRotation", testPepperRotation},
	{"PepperRotationImport", testPepperRotationImport},
	{"LifecycleRecordsChanges", testLifecycleRecordsChanges},
	{"ChangeIsAtomic", testChangeIsAtomic},
	{"ConcurrentWritersMakeOneChain", testConcurrentWritersMakeOneChain},
	{"VerifyAuditFindsTampering", testVerifyAuditFindsTampering},
	{"UsageWriteAndRead", testUsageWriteAndRead},
	{"UsageConcurrentWriters", testUsageConcurrentWriters},
	{"CountersAddOnce", testCountersAddOnce},
	{"OwnerLimits", testOwnerLimits},
	{"RevokeOwner", testRevokeOwner},
	{"RevokeOwnerHoldsOffNewKeys", testRevokeOwnerHoldsOffNewKeys},
	{"UpdateAndDelete", testUpdateAndDelete},
	{"Rotate", testRotate},
	{"Import", testImport},
	{"CountersConcurrentWriters", testCountersConcurrentWriters},
	{"WatchSeesChangesFromOtherProcesses", testWatchSeesChangesFromOtherProcesses},
	{"WatchIgnoresMalformedChanges", testWatchIgnoresMalformedChanges},
	{"SigningKeysRotate", testSigningKeysRotate},
	{"SigningKeysWrongPepper", testSigningKeysWrongPepper},
	{"SigningKeysConcurrentFirstStart", testSigningKeysConcurrentFirstStart},
}

// Run runs the suite against b, each test as a parallel subtest of t.
func Run(t *testing.T, b Backend) {
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			test.run(t, b)
		})
	}
}

// Context returns a context that ends with the test, or after 30s.
func Context(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Open opens the store dsn names, failing the test if it cannot, and
// closes it when the test ends.
func Open(t *testing.T, dsn string, opts keystore.Options) keystore.Store {
	t.Helper()
	s, err := keystore.Open(Context(t), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Peppers of the tests' hashers.
// TestPepper is the pepper of Hasher.
var TestPepper = testPepper

var (
	testPepper  = []byte("f099aeadf53a609f00758a43d0b7f0450c86ee050e6dbc3f86c94dee1e9b81aa")
	otherPepper = []byte("6d39be979e1654be2cffe0f5d194279ff1d6fad5e2e47e1c890f44cee7a3ebec")
)

// Hasher returns the tests' hasher.
func Hasher(t testing.TB) *keystore.Hasher {
	h, err := keystore.NewHasher(testPepper)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Format returns the key format with prefix ("" for the default).
func Format(t testing.TB, prefix string) keystore.Format {
	t.Helper()
	f, err := keystore.NewFormat(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// insertKey stores k as it is, with no audit event: for tests of the
// store's own checks.
func insertKey(ctx context.Context, s keystore.Store, k *keystore.Key) error {
	return s.Change(ctx, func(tx keystore.Tx) error { return tx.Insert(ctx, k) })
}

// revokeAt revokes the key with id at a given time, with no audit event.
func revokeAt(ctx context.Context, s keystore.Store, id string, at time.Time) (k *keystore.Key, changed bool, err error) {
	err = s.Change(ctx, func(tx keystore.Tx) error {
		k, changed, err = tx.Revoke(ctx, id, at)
		return err
	})
	return k, changed, err
}
