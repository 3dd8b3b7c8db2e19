// Package pgtest gives tests a private PostgreSQL database.
//
// Tests connect to KEYGATE_TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/test), create a database of their
// own there and drop it when they finish, so that test packages running
// in parallel never see each other's keys. When the server is not
// reachable the test is skipped, unless CI=true, where it fails: CI must
// never go green by skipping the PostgreSQL half of the suite.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminURL returns the server URL tests start from.
func AdminURL() string {
	if u := os.Getenv("KEYGATE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test"
}

// Connect opens a connection to the admin URL, skipping or failing the
// test (see the package comment) when the server cannot be reached.
func Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI=true but %s is not reachable: %v", AdminURL(), err)
		}
		t.Skipf("PostgreSQL not reachable at %s (set KEYGATE_TEST_DATABASE_URL): %v", AdminURL(), err)
	}
	return conn
}

// NewDatabase creates an empty database, drops it when the test ends and
// returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	conn := Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer conn.Close(ctx)
	suffix := make([]byte, 6)
	rand.Read(suffix)
	name := "keygate_test_" + hex.EncodeToString(suffix)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() { DropDatabase(t, name) })
	u, err := url.Parse(AdminURL())
	if err != nil {
		t.Fatalf("parsing %s: %v", AdminURL(), err)
	}
	u.Path = "/" + name
	return u.String()
}

// DropDatabase removes a database, disconnecting whoever still uses it.
func DropDatabase(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Errorf("dropping test database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("dropping test database %s: %v", name, err)
	}
}
