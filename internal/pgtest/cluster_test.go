package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestClusterStopStart(t *testing.T) {
	c := StartCluster(t)
	dsn := c.CreateDatabase(t, "k")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ping := func() error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	if err := ping(); err == nil {
		t.Fatal("connected to a stopped cluster")
	}
	c.Start(t)
	if err := ping(); err != nil {
		t.Fatal(err)
	}
}
