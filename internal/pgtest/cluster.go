package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/testport"
)

// Cluster is a private PostgreSQL server that a test owns: it can stop
// and start it without disturbing anything else running on the machine.
// PostgreSQL refuses to run as root, so as root the server runs as the
// postgres user.
type Cluster struct {
	Dir  string // data directory
	Port int
	// URL connects as the superuser to the postgres database.
	URL string

	bin    string // directory of initdb and pg_ctl
	runAs  string // user to run as, or "" for the current user
	logLoc string
}

// StartCluster initialises and starts a cluster on a free loopback port,
// and removes it when the test ends. It skips the test when the server
// binaries are missing, unless CI=true.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := serverBinDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL server binaries are required under CI=true: %v", err)
		}
		t.Skipf("PostgreSQL server binaries not found: %v", err)
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		c.runAs = "postgres"
	}
	dir, err := os.MkdirTemp("", "keygate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if c.runAs != "" {
		u, err := user.Lookup(c.runAs)
		if err != nil {
			t.Fatalf("looking up user %s: %v", c.runAs, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	c.Dir = filepath.Join(dir, "data")
	c.logLoc = filepath.Join(dir, "server.log")
	c.Port = freePort(t)
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	c.run(t, "initdb", "-D", c.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n", c.Port, dir)
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(conf)
	f.Close()
	c.Start(t)
	t.Cleanup(func() { c.run(t, "pg_ctl", "-D", c.Dir, "-m", "immediate", "-w", "stop") })
	return c
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.run(t, "pg_ctl", "-D", c.Dir, "-l", c.logLoc, "-w", "-t", "60", "start")
	c.waitReady(t)
}

// Stop stops the server the way a crash or an operator would: fast
// shutdown disconnects every client at once.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.run(t, "pg_ctl", "-D", c.Dir, "-m", "fast", "-w", "-t", "60", "stop")
}

// CreateDatabase creates a database and returns its URL.
func (c *Cluster) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, name)
}

func (c *Cluster) waitReady(t testing.TB) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.URL)
		if err == nil {
			conn.Close(ctx)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(c.logLoc)
			t.Fatalf("private PostgreSQL did not come up: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) run(t testing.TB, prog string, args ...string) {
	t.Helper()
	path := filepath.Join(c.bin, prog)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(c.logLoc)
		t.Fatalf("%s %v: %v\n%s\n%s", prog, args, err, out, log)
	}
}

// serverBinDir finds initdb and pg_ctl: on PATH or in Debian's
// /usr/lib/postgresql/<version>/bin.
func serverBinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", fmt.Errorf("no pg_ctl on PATH or in /usr/lib/postgresql/*/bin")
}

func freePort(t testing.TB) int { return testport.Free(t) }
