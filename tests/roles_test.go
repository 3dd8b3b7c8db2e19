package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestGatewayRunsAsRuntimeRole: with the roles and grants that `migrate
// --print-grants` prints, applied after the owner migrated, a gateway
// connecting as the runtime role starts, serves a key the management role
// created with the CLI, hears of its revocation through LISTEN and writes
// usage; it only warns that it cannot record its key prefix, and logs no
// error.
func TestGatewayRunsAsRuntimeRole(t *testing.T) {
	t.Parallel()
	owner := newSandbox(t, postgresStore)
	owner.mustCLI("migrate")
	suffix := make([]byte, 4)
	rand.Read(suffix)
	runtimeRole, managementRole := "kg_gw_"+hex.EncodeToString(suffix), "kg_mg_"+hex.EncodeToString(suffix)
	grants := owner.mustCLI("migrate", "--print-grants", "--runtime-role", runtimeRole, "--management-role", managementRole).stdout

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, owner.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, grants); err != nil {
		t.Fatalf("applying the printed grants: %v\n%s", err, grants)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, owner.dsn)
		if err != nil {
			t.Errorf("dropping roles: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, q := range []string{"DROP OWNED BY " + runtimeRole + ", " + managementRole, "DROP ROLE " + runtimeRole, "DROP ROLE " + managementRole} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	for _, role := range []string{runtimeRole, managementRole} {
		if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" LOGIN"); err != nil {
			t.Fatal(err)
		}
	}
	as := func(role string) string {
		u, err := url.Parse(owner.dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(role) // the test cluster trusts 127.0.0.1
		return u.String()
	}
	mgmt := pgSandbox(t, as(managementRole), owner.pepper)
	runtime := pgSandbox(t, as(runtimeRole), owner.pepper)

	// The management role's first key records the pepper check.
	k := mgmt.createKey("k")

	up := newUpstream(t)
	g := newGateway(t, runtime)
	g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 1s\n\t\t}\n\t}\n"
	g.start(apiKeySite(g, up, ""))
	waitForLog(t, g, watchingLog, 1, 10*time.Second)
	for range 3 {
		wantUpstream(t, "a key of the management role", bearer(t, g.url+"/", k.Key))
	}
	if !strings.Contains(g.log(), "caddy api-key migrate --prefix") {
		t.Errorf("the gateway did not say how to record its prefix:\n%s", g.log())
	}

	mgmt.revoke(k.ID)
	if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool {
		return bearer(t, g.url+"/", k.Key).status == http.StatusUnauthorized
	}); !ok {
		t.Fatalf("the runtime role's gateway still accepts the revoked key:\n%s", g.log())
	}
	g.stop()
	if _, requests, _, _ := storedUsage(t, mgmt, k.ID); requests < 3 {
		t.Errorf("usage written by the runtime role: %d requests, want at least 3\n%s", requests, g.log())
	}
	// The management role records the prefix the gateway could not.
	if res := mgmt.mustCLI("migrate", "--prefix", "kg"); !strings.Contains(res.stdout, `accept keys with prefix "kg"`) {
		t.Errorf("migrate --prefix did not record the prefix:\n%s", res)
	}
	if res := runtime.cli("migrate", "--prefix", "kg"); res.code == 0 || !strings.Contains(res.stderr, "permission denied") {
		t.Errorf("the runtime role recorded a prefix:\n%s", res)
	}
	if log := g.log(); strings.Contains(log, `"level":"error"`) || strings.Contains(log, "permission denied for table keygate_usage") {
		t.Errorf("the gateway logged an error:\n%s", log)
	}
}
