// Command mutate checks that the tests guard Keygate's promises: it
// breaks the code one promise at a time, in a scratch copy of the
// repository, runs the tests meant to catch that break, and fails unless
// every break is caught. Breaks are checked two at a time, each worker in
// a scratch copy of its own.
//
//	go run ./scripts/mutate            # every break
//	go run ./scripts/mutate -run cache # the breaks whose name matches
//	go run ./scripts/mutate -workers 1 # one at a time
//
// A break whose original text is no longer found exactly once, or whose
// code no longer compiles, is an error too: the list must follow the code.
// A new invariant adds its break to the list below, with the tests that
// catch it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// mutation is one deliberate break.
type mutation struct {
	name  string // what the break does to a promise
	file  string // relative to the repository root
	from  string // text that occurs exactly once in file
	to    string // what it becomes
	pkg   string // package whose tests must catch it
	tests string // test names (a go test -run pattern; "/" separates subtest levels)
}

var mutations = []mutation{
	{
		name: "failed-check budget: the answer to a client out of budget is not held",
		file: "caddymodule/failures.go",
		from: "t := time.NewTimer(d)",
		to:   "t := time.NewTimer(0)",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay",
	},
	{
		name: "failed-check budget: a held answer outlives its client",
		file: "caddymodule/failures.go",
		from: "case <-r.Context().Done(): // the client went away",
		to:   "case <-make(chan struct{}):",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay",
	},
	{
		name: "failed-check budget: a held answer outlives its server's shutdown",
		file: "caddymodule/failures.go",
		from: "\tcase <-h.shutdown:\n",
		to:   "\tcase <-make(chan struct{}):\n",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay/the_server_shuts_down",
	},
	{
		name: "failed-check budget: a hold uses up the server's write timeout",
		file: "caddymodule/handler.go",
		from: "h.failedDelay = min(h.failedDelay, time.Duration(srv.WriteTimeout)/2)",
		to:   "h.failedDelay = min(h.failedDelay, h.failedDelay)",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay/write_timeout",
	},
	{
		name: "failed-check budget: held answers are not capped in all",
		file: "caddymodule/failures.go",
		from: "if a.total.Add(1) > a.limit {",
		to:   "if a.total.Add(1) < 0 {",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay/caps",
	},
	{
		name: "failed-check budget: held answers are not capped per client",
		file: "caddymodule/failures.go",
		from: "if sh.clients[c] >= a.perClient {",
		to:   "if false {",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay/caps",
	},
	{
		name: "failed-check budget: Retry-After ignores the time held",
		file: "caddymodule/failures.go",
		from: "wait = max(0, wait-h.holdAnswer(r))",
		to:   "h.holdAnswer(r)",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay/held",
	},
	{
		name: "failed-check budget: a failure within the budget is held too",
		file: "caddymodule/failures.go",
		from: "\treturn h.reject(w, r, h.problems.invalid, keyID)\n}",
		to:   "\th.holdAnswer(r)\n\treturn h.reject(w, r, h.problems.invalid, keyID)\n}",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay",
	},
	{
		name: "failed-check budget: auth_server holds answers by default",
		file: "caddymodule/failures.go",
		from: "if authServer {\n\t\t\treturn 0",
		to:   "if false {\n\t\t\treturn 0",
		pkg:  "./caddymodule", tests: "TestFailedAuthDelay/delay_0_and_auth_server",
	},
	{
		name: "revoke --owner: an owner with no key at all (a misspelling) is not an error",
		file: "caddymodule/command.go",
		from: "\t\tif len(any) == 0 {\n",
		to:   "\t\tif len(any) < 0 {\n",
		pkg:  "./caddymodule", tests: "TestCLIRevokeOwner",
	},
	{
		name: "roles: the owner role may not create the tables of later migrations",
		file: "keystore/postgres/grants.go",
		from: "GRANT USAGE, CREATE ON SCHEMA %%I TO %s",
		to:   "GRANT USAGE ON SCHEMA %%I TO %s",
		pkg:  "./keystore/postgres", tests: "TestGrantsWithOwnerRole",
	},
	{
		name: "pepper rotation: a key found with a previous pepper is never re-hashed",
		file: "caddymodule/step_verify.go",
		from: "if err == nil && h.peppers.IsPrevious(other) &&",
		to:   "if false && h.peppers.IsPrevious(other) &&",
		pkg:  "./caddymodule", tests: "TestPepperRotationHandler",
	},
	{
		name: "pepper rotation: the other peppers are not tried",
		file: "caddymodule/step_verify.go",
		from: "if errors.Is(err, keystore.ErrNotFound) && h.peppers.Rotating() {",
		to:   "if false && h.peppers.Rotating() {",
		pkg:  "./tests", tests: "TestPepperRotationUnderTraffic",
	},
	{
		name: "pepper rotation: a valid key found with a previous pepper stays charged to the failed-check budget",
		file: "caddymodule/step_verify.go",
		from: "if x.owed && lookupExcused(x.r, key, err, x.now) {",
		to:   "if false && lookupExcused(x.r, key, err, x.now) {",
		pkg:  "./caddymodule", tests: "TestPepperRotationHandler",
	},
	{
		name: "pepper rotation: an unknown key is charged once per pepper",
		file: "caddymodule/step_verify.go",
		from: "if h.failures == nil || x.charged || h.verifier.InFlight(d) {",
		to:   "if h.failures == nil || h.verifier.InFlight(d) {",
		pkg:  "./caddymodule", tests: "TestPepperRotationHandler",
	},
	{
		name: "pepper rotation: a store accepts a process none of whose peppers it knows",
		file: "keystore/setup.go",
		from: "\tif !accepted {\n",
		to:   "\tif !accepted && false {\n",
		pkg:  "./keystore/sqlite", tests: "TestConformance/PepperRotation$",
	},
	{
		name: "pepper rotation: a key is re-hashed to a pepper that is not the newest",
		file: "keystore/internal/sqlstore/peppers.go",
		from: "\tif newest != pepperID {\n",
		to:   "\tif false {\n",
		pkg:  "./keystore/sqlite", tests: "TestConformance/PepperRotation$",
	},
	{
		name: "pepper rotation: the runtime role may change any digest",
		file: "keystore/postgres/migrations/0009_pepper_rotation.sql",
		from: "IF newest IS NULL OR NEW.pepper_id IS DISTINCT FROM newest OR OLD.pepper_id IS NOT DISTINCT FROM newest\n       OR NEW.digest = OLD.digest THEN",
		to:   "IF false THEN",
		pkg:  "./keystore/postgres", tests: "TestLeastPrivilegeRoles",
	},
	{
		name: "pepper rotation: pepper-status --check passes with keys left on an older pepper",
		file: "caddymodule/command_pepper.go",
		from: "\t\t\tif check && left > 0 {\n",
		to:   "\t\t\tif check && left > 1<<30 {\n",
		pkg:  "./caddymodule", tests: "TestPepperStatusCommand",
	},
	{
		name: "roles: the runtime role may insert keys",
		file: "keystore/postgres/grants.go",
		from: "\t{\"keygate_keys\", \"SELECT, UPDATE (digest, pepper_id)\"},\n",
		to:   "\t{\"keygate_keys\", \"SELECT, INSERT, UPDATE (digest, pepper_id)\"},\n",
		pkg:  "./keystore/postgres", tests: "TestLeastPrivilegeRoles",
	},
	{
		name: "roles: the audit trail can be updated by the management role",
		file: "keystore/postgres/migrations/0008_audit_append_only.sql",
		from: "BEFORE UPDATE OR DELETE ON keygate_audit",
		to:   "BEFORE INSERT ON keygate_audit",
		pkg:  "./keystore/postgres", tests: "TestLeastPrivilegeRoles",
	},
	{
		name: "require_tls: a client's own X-Forwarded-Proto counts as TLS",
		file: "caddymodule/step_tls.go",
		from: "return trusted && strings.EqualFold(",
		to:   "return trusted || strings.EqualFold(",
		pkg:  "./caddymodule", tests: "TestRequireTLS",
	},
	{
		name: "scan: a match is taken for a key without its checksum",
		file: "keystore/scan.go",
		from: "if k, err := f.Parse(s[i:]); err == nil {",
		to:   "if k, err := f.Parse(s[i:]); err == nil || true {",
		pkg:  "./keystore", tests: "TestFindKeys",
	},
	{
		name: "scan: --revoke leaves the keys active",
		file: "caddymodule/command_scan.go",
		from: "if revoke && (f.Status == keystore.StatusActive",
		to:   "if false && (f.Status == keystore.StatusActive",
		pkg:  "./tests", tests: "TestScanFindsLeakedKeys",
	},
	{
		name: "admin API: unknown JSON members accepted",
		file: "adminapi/routes.go",
		from: "\tdec.DisallowUnknownFields()\n",
		to:   "\n",
		pkg:  "./tests", tests: "TestAdminAPI$",
	},
	{
		name: "admin API: the audit actor is not the caller",
		file: "adminapi/adminapi.go",
		from: "return truncateActor(\"admin:\" + r.RemoteAddr)",
		to:   "return \"admin\"",
		pkg:  "./adminapi", tests: "TestActorOf",
	},
	{
		name: "admin API: a refused value answers 503",
		file: "adminapi/adminapi.go",
		from: "\tcase errors.Is(err, keystore.ErrInvalid):\n",
		to:   "\tcase false:\n",
		pkg:  "./tests", tests: "TestAdminAPI$",
	},
	{
		name: "import: a bad row does not stop the good ones",
		file: "keystore/import.go",
		from: "\tif len(bad) > 0 {\n\t\tslices.SortStableFunc",
		to:   "\tif false && len(bad) > 0 {\n\t\tslices.SortStableFunc",
		pkg:  "./keystore/sqlite", tests: "TestConformance/Import",
	},
	{
		name: "import: a key already there is imported again",
		file: "keystore/import.go",
		from: "\t\t\tif err == nil {\n\t\t\t\tout = append(out, Imported{Line: r.line, Key: old, Existed: true",
		to:   "\t\t\tif err == nil && false {\n\t\t\t\tout = append(out, Imported{Line: r.line, Key: old, Existed: true",
		pkg:  "./keystore/sqlite", tests: "TestConformance/Import",
	},
	{
		name: "gateway: legacy keys accepted without legacy_keys",
		file: "caddymodule/step_find.go",
		from: "if err != nil && h.LegacyKeys && h.format.IsLegacyCandidate(raw) {",
		to:   "if err != nil && h.format.IsLegacyCandidate(raw) {",
		pkg:  "./caddymodule", tests: "TestLegacyKeys",
	},
	{
		name: "gateway: a broken key with the gateway's prefix is looked up as a legacy key",
		file: "keystore/legacy.go",
		from: "len(key) > MaxLegacyKeyLen || strings.HasPrefix(key, f.prefix) {",
		to:   "len(key) > MaxLegacyKeyLen {",
		pkg:  "./caddymodule", tests: "TestLegacyKeys",
	},
	{
		name: "cache: serve an entry read before an invalidation",
		file: "cache/verifier.go",
		from: "if e, ok := v.pos.Get(slot(d)); ok && e.gen == gen && e.key.Digest.Equal(d) {",
		to:   "if e, ok := v.pos.Get(slot(d)); ok && e.key.Digest.Equal(d) {",
		pkg:  "./cache", tests: "TestInvalidateBetweenCheckAndSet",
	},
	{
		name: "cache: keep a fill whose query overlapped an invalidation",
		file: "cache/verifier.go",
		from: "keep := v.gen(d).Load() == gen && v.epoch.Load() == epoch",
		to:   "keep := true || v.gen(d).Load() == gen && v.epoch.Load() == epoch",
		pkg:  "./cache", tests: "TestOverlappedFillIsNotKept",
	},
	{
		name: "cache: a hit without the full-digest comparison",
		file: "cache/verifier.go",
		from: "if e, ok := v.pos.Get(slot(d)); ok && e.gen == gen && e.key.Digest.Equal(d) {",
		to:   "if e, ok := v.pos.Get(slot(d)); ok && e.gen == gen {",
		pkg:  "./cache", tests: "TestSlotCollision",
	},
	{
		name: "cache: a timed-out wait for a query slot answers unknown key",
		file: "cache/verifier.go",
		from: "\t\tv.Stats.Busy.Add(1)\n\t\treturn &unavailableError{ErrBusy}\n\t}\n}",
		to:   "\t\tv.Stats.Busy.Add(1)\n\t\treturn keystore.ErrNotFound\n\t}\n}",
		pkg:  "./cache", tests: "TestSlotWaitIsNotAStoreError",
	},
	{
		name: "cache: a wait for a query slot counts as a store outage",
		file: "cache/verifier.go",
		from: "\t\tv.Stats.Busy.Add(1)\n\t\treturn &unavailableError{ErrBusy}\n\t}\n}",
		to:   "\t\tv.Stats.StoreErrors.Add(1)\n\t\tv.storeDown.Store(true)\n\t\treturn &unavailableError{ErrBusy}\n\t}\n}",
		pkg:  "./cache", tests: "TestSlotWaitIsNotAStoreError",
	},
	{
		name: "cache: a lookup every requester abandoned runs on",
		file: "cache/flight.go",
		from: "\tif f.calls[d] == c {\n\t\tdelete(f.calls, d)\n\t}\n\tc.cancel()\n}\n\n// finish",
		to:   "\tif f.calls[d] == c {\n\t\tdelete(f.calls, d)\n\t}\n}\n\n// finish",
		pkg:  "./cache", tests: "TestAbandonedLookupIsCancelled|TestAbandonedFloodLeavesNoGoroutines",
	},
	{
		name: "cache: no background refresh of stale entries while the store is down",
		file: "cache/verifier.go",
		from: "\t} else {\n\t\tv.refreshAsync(d)\n\t}",
		to:   "\t}",
		pkg:  "./cache", tests: "TestStaleRefreshSeesRevocation",
	},
	{
		name: "keystore: expiry checked before revocation",
		file: "keystore/key.go",
		from: "\tcase !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):\n\t\treturn StatusRevoked\n\tcase !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):\n\t\treturn StatusExpired",
		to:   "\tcase !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):\n\t\treturn StatusExpired\n\tcase !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):\n\t\treturn StatusRevoked",
		pkg:  "./keystore", tests: "TestKeyStatusRevocationWinsOverExpiry",
	},
	{
		name: "keystore: no limit on the number of scopes",
		file: "keystore/key.go",
		from: "if len(p.Scopes) > MaxScopes {",
		to:   "if false && len(p.Scopes) > MaxScopes {",
		pkg:  "./keystore", tests: "TestKeyParamsValidate",
	},
	{
		name: "keystore: no limit on the number of metadata entries",
		file: "keystore/key.go",
		from: "if len(p.Metadata) > MaxMetadata {",
		to:   "if false && len(p.Metadata) > MaxMetadata {",
		pkg:  "./keystore", tests: "TestKeyParamsValidate",
	},
	{
		name: "keystore: the checksum is not checked",
		file: "keystore/format.go",
		from: "if string(want[:]) != key[len(head):] {",
		to:   "if false && string(want[:]) != key[len(head):] {",
		pkg:  "./keystore", tests: "TestParseRejects",
	},
	{
		name: "keystore: a malformed change notification purges every cache",
		file: "keystore/postgres/watch.go",
		from: "\t\t\t} else {\n\t\t\t\th.MalformedChange()\n\t\t\t}",
		to:   "\t\t\t} else {\n\t\t\t\th.Resync()\n\t\t\t}",
		pkg:  "./keystore/postgres", tests: "TestConformance/WatchIgnoresMalformedChanges",
	},
	{
		name: "keystore: the SQLite change log is read but not delivered",
		file: "keystore/sqlite/watch.go",
		from: "\t\tif len(digest) == keystore.DigestLen {\n\t\t\th.KeyChanged(keystore.Digest(digest))",
		to:   "\t\tif len(digest) == keystore.DigestLen {\n\t\t\t_ = digest",
		pkg:  "./cache", tests: "TestInvalidatorWithSQLite",
	},
	{
		name: "handler: a revoked key is accepted",
		file: "caddymodule/step_status.go",
		from: "\tcase keystore.StatusRevoked:",
		to:   "\tcase \"never\":",
		pkg:  "./caddymodule", tests: "TestServeHTTPRefusals",
	},
	{
		name: "handler: expiry judged by when the key was cached, not by the request's instant",
		file: "caddymodule/step_status.go",
		from: "switch x.key.Status(x.now) {",
		to:   "switch x.key.Status(x.key.CreatedAt) {",
		pkg:  "./caddymodule", tests: "TestServeHTTPExpired",
	},
	{
		name: "handler: the key in the client-went-away debug line",
		file: "caddymodule/step_verify.go",
		from: `v.why = "client went away during the key lookup"`,
		to:   `v.why, v.err = "client went away during the key lookup", errors.New(x.parsed.Key)`,
		pkg:  "./caddymodule", tests: "TestNoKeyInHandlerLogs",
	},
	{
		name: "handler: the key in a success-path debug line",
		file: "caddymodule/pipeline.go",
		from: "\th.admit(x.r, x.adm, tok)\n\tcountRequest(\"ok\")",
		to:   "\th.debug(\"admitted\", x.r, zap.String(\"authorization\", x.r.Header.Get(\"Authorization\")))\n\th.admit(x.r, x.adm, tok)\n\tcountRequest(\"ok\")",
		pkg:  "./caddymodule", tests: "TestNoKeyInHandlerLogs",
	},
	{
		name: "handler: the key in the store-error message",
		file: "caddymodule/step_verify.go",
		from: "\t\tdefault:\n\t\t\th.storeError(err)",
		to:   "\t\tdefault:\n\t\t\th.storeError(fmt.Errorf(\"%w (key %s)\", err, x.parsed.Key))",
		pkg:  "./caddymodule", tests: "TestNoKeyInHandlerLogs",
	},
	{
		name: "handler: a busy query slot answers 401",
		file: "caddymodule/step_verify.go",
		from: "\tcase errors.Is(err, keystore.ErrNotFound):\n",
		to:   "\tcase errors.Is(err, keystore.ErrNotFound) || errors.Is(err, cache.ErrBusy):\n",
		pkg:  "./caddymodule", tests: "TestBusySlotAnswers503",
	},
	{
		name: "handler: Connection can remove identity headers",
		file: "caddymodule/step_identity.go",
		from: "\tkeepFromConnection(r, h.identityNames)\n",
		to:   "\n",
		pkg:  "./caddymodule", tests: "TestConnectionCannotDropIdentity",
	},
	{
		name: "handler: trailers can carry identity headers",
		file: "caddymodule/hopbyhop.go",
		from: "\tif err == io.EOF {\n\t\tdropTrailers(g.trailer, g.blocked)\n\t}",
		to:   "",
		pkg:  "./caddymodule", tests: "TestTrailersCannotCarryIdentity",
	},
	{
		name: "handler: default identity headers kept when renamed or off",
		file: "caddymodule/step_identity.go",
		from: "for _, n := range append([]string{defaultIDHeader, defaultOwnerHeader, h.idHeader, h.ownerHeader}, h.jwtHeaderNames()...) {",
		to:   "for _, n := range append([]string{h.idHeader, h.ownerHeader}, h.jwtHeaderNames()...) {",
		pkg:  "./caddymodule", tests: "TestServeHTTPIdentityHeaders",
	},
	{
		name: "handler: a key forwarded in Authorization when bearer is no source",
		file: "caddymodule/step_identity.go",
		from: "\tstripAuthorizationKeys(r, h.format)\n",
		to:   "\n",
		pkg:  "./caddymodule", tests: "TestKeyNeverForwarded",
	},
	{
		name: "handler: no budget of failed key checks",
		file: "ratelimit/gcra.go",
		from: "\tif over := newTAT - t - int64(l.tolerance()); over > 0 {",
		to:   "\tif over := newTAT - t - int64(l.tolerance()); false && over > 0 {",
		pkg:  "./caddymodule", tests: "TestFailedAuthBudget",
	},
	{
		name: "handler: cookie keys on cross-site POSTs",
		file: "caddymodule/step_find.go",
		from: "\tif h.sources[src].From == FromCookie {",
		to:   "\tif false && h.sources[src].From == FromCookie {",
		pkg:  "./caddymodule", tests: "TestCookieCrossOrigin",
	},
	{
		name: "rate limit: a key past its limit is let through",
		file: "caddymodule/step_ratelimit.go",
		from: "\tif !d.Allowed {",
		to:   "\tif false && !d.Allowed {",
		pkg:  "./caddymodule", tests: "TestServeHTTPRateLimit",
	},
	{
		name: "rate limit: checked before status and scopes, so refusals spend it",
		file: "caddymodule/handler.go",
		from: "\th.checks = append(h.checks, ipCheck{h.problems.ipNotAllowed}, h.rateLimitStep(h.limiter))\n",
		to:   "\th.checks = append([]check{h.rateLimitStep(h.limiter)}, append(h.checks, ipCheck{h.problems.ipNotAllowed})...)\n",
		pkg:  "./caddymodule", tests: "TestRateLimitSpendsNothingOnRefusals",
	},
	{
		name: "rate limit: each handler keeps its own state",
		file: "caddymodule/pool.go",
		from: "\tval, _, err := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {",
		to:   "\tkey.capacity += int(time.Now().UnixNano() % 1000)\n\tval, _, err := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {",
		pkg:  "./caddymodule", tests: "TestRateLimitSharedAcrossHandlers",
	},
	{
		name: "rate limit: a key at rest is kept over a busy one",
		file: "ratelimit/states.go",
		from: "\t\tif st.idle(now) {",
		to:   "\t\tif false && st.idle(now) {",
		pkg:  "./ratelimit", tests: "TestKeyedBounded",
	},
	{
		name: "quota: a key past its quota is let through",
		file: "caddymodule/step_quota.go",
		from: "\t\tif ok, wait := c.take(x, k, q, \"quota\", leftQuota); !ok {",
		to:   "\t\tif ok, wait := c.take(x, k, q, \"quota\", leftQuota); false && !ok {",
		pkg:  "./caddymodule", tests: "TestServeHTTPQuota",
	},
	{
		name: "quota: a refused use keeps the quota it took",
		file: "caddymodule/step_quota.go",
		from: "\t\t\tc.counters.Refund(k)\n",
		to:   "\t\t\t_ = k\n",
		pkg:  "./caddymodule", tests: "TestServeHTTPUses",
	},
	{
		name: "quota: a new gateway does not read the store's count",
		file: "caddymodule/step_quota.go",
		from: "\t_ = c.counters.Load(ctx, k, end, c.counters.read)",
		to:   "\t_ = c.counters.Load(ctx, k, end, func(context.Context, ratelimit.CounterKey) (int64, error) { return 0, nil })",
		pkg:  "./caddymodule", tests: "TestQuotaSurvivesNewCounters",
	},
	{
		name: "quota: a retried count batch is counted again",
		file: "keystore/internal/sqlstore/counters.go",
		from: "\t\t\tif n > 0 { // a new batch: add it",
		to:   "\t\t\tif n >= 0 { // a new batch: add it",
		pkg:  "./keystore/sqlite", tests: "TestConformance",
	},
	{
		name: "quota: counts not written when a gateway stops",
		file: "caddymodule/pool.go",
		from: "\tif err := c.sync(ctx); err != nil {\n\t\tc.logger.Error(\"quota and uses counts lost at shutdown",
		to:   "\tif err := error(nil); err != nil && ctx != nil {\n\t\tc.logger.Error(\"quota and uses counts lost at shutdown",
		pkg:  "./tests", tests: "TestUsesThroughCaddy",
	},
	{
		name: "quota: gateways do not read each other's counts back",
		file: "ratelimit/counters.go",
		from: "\t\t\tct.known = totals[i]\n",
		to:   "\t\t\tct.known += d.N + int64(i*0)\n",
		pkg:  "./ratelimit", tests: "TestCountersShared",
	},
	{
		name: "owner limits: a change does not reach cached keys",
		file: "keystore/internal/sqlstore/keys.go",
		from: "\"UPDATE keygate_keys SET owner = owner WHERE owner = $1\"",
		to:   "\"UPDATE keygate_keys SET owner = owner WHERE owner = $1 AND false\"",
		pkg:  "./keystore/sqlite", tests: "TestConformance",
	},
	{
		name: "owner revocation: a key created meanwhile slips past the revocation (no LockKeys)",
		file: "keystore/internal/sqlstore/keys.go",
		from: "\tif s.d.LockKeys != \"\" {",
		to:   "\tif false && s.d.LockKeys != \"\" {",
		pkg:  "./keystore/postgres", tests: "TestConformance/RevokeOwnerHoldsOffNewKeys",
	},
	{
		name: "list: a key in its rotation's grace is listed as revoked",
		file: "keystore/internal/sqlstore/keys.go",
		from: "return \"k.revoked_at IS NOT NULL AND k.revoked_at <= \" + now",
		to:   "return \"k.revoked_at IS NOT NULL\"",
		pkg:  "./keystore/sqlite", tests: "TestConformance/ListStatuses",
	},
	{
		name: "owner limits: an owner's rate is not checked",
		file: "caddymodule/step_ratelimit.go",
		from: "\top, owned := x.key.OwnerLimits.RatePolicy()",
		to:   "\top, owned := x.key.OwnerLimits.RatePolicy()\n\towned = false",
		pkg:  "./caddymodule", tests: "TestOwnerSharedLimits",
	},
	{
		name: "owner limits: changed without an audit event",
		file: "keystore/lifecycle.go",
		from: "\t\tif err := tx.Append(ctx, e); err != nil {\n\t\t\treturn fmt.Errorf(\"recording the change in the audit trail: %w\", err)\n\t\t}\n\t\treturn nil\n\t})\n\tif errors.Is(err, errUnchanged) {",
		to:   "\t\t_ = e\n\t\treturn nil\n\t})\n\tif errors.Is(err, errUnchanged) {",
		pkg:  "./keystore/sqlite", tests: "TestConformance",
	},
	{
		name: "update: a key changed without its audit event",
		file: "keystore/change.go",
		from: "\t\treturn appendEvent(ctx, tx, actor, audit.ActionUpdate, at, before, k)",
		to:   "\t\t_ = before\n\t\treturn nil",
		pkg:  "./keystore/sqlite", tests: "TestConformance",
	},
	{
		name: "update: a revoked key can be changed",
		file: "keystore/change.go",
		from: "\t\tif !before.RevokedAt.IsZero() {",
		to:   "\t\tif false && !before.RevokedAt.IsZero() {",
		pkg:  "./keystore/sqlite", tests: "TestConformance",
	},
	{
		name: "delete: the record is left in place",
		file: "keystore/internal/sqlstore/keys.go",
		from: "\"DELETE FROM keygate_keys WHERE id = $1\"",
		to:   "\"DELETE FROM keygate_keys WHERE id = $1 AND false\"",
		pkg:  "./keystore/sqlite", tests: "TestConformance",
	},
	{
		name: "scopes: a wildcard grants a scope that merely starts like it",
		file: "keystore/key.go",
		from: "strings.HasSuffix(g, \":*\") && len(scope) > len(g)-1 && strings.HasPrefix(scope, g[:len(g)-1])",
		to:   "strings.HasSuffix(g, \":*\") && strings.HasPrefix(scope, g[:len(g)-2])",
		pkg:  "./keystore", tests: "TestScopeWildcards",
	},
	{
		name: "not-before: a key works before its start",
		file: "keystore/key.go",
		from: "\tcase !k.NotBefore.IsZero() && now.Before(k.NotBefore):",
		to:   "\tcase false && !k.NotBefore.IsZero() && now.Before(k.NotBefore):",
		pkg:  "./caddymodule", tests: "TestServeHTTPNotBefore",
	},
	{
		name: "rotate: the old key is refused at once, grace or not",
		file: "keystore/rotate.go",
		from: "\t\t\tif old, err = tx.Retire(ctx, id, rec.ID, at.Add(grace)); err != nil {",
		to:   "\t\t\tif old, err = tx.Retire(ctx, id, rec.ID, at); err != nil {",
		pkg:  "./caddymodule", tests: "TestRotationGrace",
	},
	{
		name: "rotate: a key revoked in the future counts as revoked now",
		file: "keystore/key.go",
		from: "\tcase !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):",
		to:   "\tcase !k.RevokedAt.IsZero():",
		pkg:  "./caddymodule", tests: "TestRotationGrace",
	},
	{
		name: "allowlist: a key works from any address",
		file: "caddymodule/step_ipallow.go",
		from: "\tif a, ok := clientAddr(x.r); ok && x.key.AllowsFrom(a) {",
		to:   "\tif a, ok := clientAddr(x.r); ok || x.key.AllowsFrom(a) {",
		pkg:  "./tests", tests: "TestAllowlistThroughCaddy",
	},
	{
		name: "allowlist: IPv4-mapped addresses do not match IPv4 networks",
		file: "keystore/cidr.go",
		from: "\ta = a.Unmap().WithZone(\"\")",
		to:   "\ta = a.WithZone(\"\")",
		pkg:  "./keystore", tests: "TestCIDRs",
	},
	{
		name: "security log: every refusal of a flood logged one by one",
		file: "caddymodule/securitylog.go",
		from: "time.Second, refusalLinesPerSecond, 0,",
		to:   "time.Second, refusalLinesPerSecond, 1,",
		pkg:  "./caddymodule", tests: "TestSecurityLogFloodIsBounded",
	},
	{
		name: "security log: refusals not counted",
		file: "caddymodule/securitylog.go",
		from: "\ts.counts[code]++\n",
		to:   "\t_ = code\n",
		pkg:  "./caddymodule", tests: "TestSecurityLogFloodIsBounded|TestSecurityLogLines",
	},
	{
		name: "logs: header values pass the redacting encoder unredacted",
		file: "caddymodule/logredact.go",
		from: "return o.ObjectEncoder.AddArray(redact(k), redactingArrayMarshaler{v})",
		to:   "return o.ObjectEncoder.AddArray(redact(k), v)",
		pkg:  "./caddymodule", tests: "TestRedactEncoder",
	},
	{
		name: "logs: a percent-encoded key is not found",
		file: "keystore/redact.go",
		from: "\tif s[i] == '%' && i+2 < len(s) {",
		to:   "\tif false && s[i] == '%' && i+2 < len(s) {",
		pkg:  "./keystore", tests: "TestRedactKeys",
	},
	{
		name: "audit: the hash leaves out the actor",
		file: "audit/audit.go",
		from: "for _, s := range []string{e.Actor, e.Action, e.KeyID, e.Owner, e.Before, e.After} {",
		to:   "for _, s := range []string{e.Action, e.KeyID, e.Owner, e.Before, e.After} {",
		pkg:  "./audit", tests: "TestEditedEventIsNamed",
	},
	{
		name: "audit: an event that does not link to the one before passes",
		file: "audit/audit.go",
		from: "\tcase !bytes.Equal(e.Prev, c.prev):",
		to:   "\tcase false:",
		pkg:  "./keystore/sqlite", tests: "TestConformance/VerifyAuditFindsTampering",
	},
	{
		name: "audit: a head recorded earlier is not checked",
		file: "audit/audit.go",
		from: "\tif c.want != nil && !c.matched {",
		to:   "\tif false {",
		pkg:  "./keystore/sqlite", tests: "TestConformance/VerifyAuditFindsTampering",
	},
	{
		name: "audit: PostgreSQL appends without holding the chain's head",
		file: "keystore/postgres/dialect.go",
		from: `"LOCK TABLE keygate_audit IN SHARE ROW EXCLUSIVE MODE"`,
		to:   `"SELECT 1"`,
		pkg:  "./keystore/postgres", tests: "TestConformance/ConcurrentWritersMakeOneChain",
	},
	{
		name: "audit: a revoke commits without its event",
		file: "keystore/lifecycle.go",
		from: "\t\treturn appendEvent(ctx, tx, actor, audit.ActionRevoke, at, before, k)",
		to:   "\t\t_ = before\n\t\treturn nil",
		pkg:  "./keystore/sqlite", tests: "TestConformance/LifecycleRecordsChanges",
	},
	{
		name: "usage: a retried batch is counted again",
		file: "keystore/internal/sqlstore/usage.go",
		from: "if err != nil || n == 0 {",
		to:   "if _ = n; err != nil {",
		pkg:  "./usage", tests: "TestAmbiguousCommitOnPostgres",
	},
	{
		name: "usage: a batch that failed is dropped",
		file: "usage/recorder.go",
		from: "\t\tr.Stats.WriteErrors.Add(1)\n\t\treturn err",
		to:   "\t\tr.Stats.WriteErrors.Add(1)\n\t\tr.pending = nil\n\t\treturn err",
		pkg:  "./usage", tests: "TestOutageKeepsCounts",
	},
	{
		name: "usage: counts not written when a gateway stops",
		file: "caddymodule/pool.go",
		from: "\tif err := r.Recorder.Close(ctx); err != nil {",
		to:   "\t_ = ctx\n\tif err := error(nil); err != nil {",
		pkg:  "./tests", tests: "TestUsageLossless",
	},
	{
		name: "usage: the buffer has no bound",
		file: "usage/recorder.go",
		from: "\t\tif r.rows.Load() >= r.cfg.MaxBuffered {",
		to:   "\t\tif false {",
		pkg:  "./usage", tests: "TestBufferBound",
	},
	{
		name: "metrics: a replaced cache takes its counts with it",
		file: "caddymodule/metrics.go",
		from: "\ts.addTo(&metricSources.retired)",
		to:   "",
		pkg:  "./tests", tests: "TestCountersSurviveReload",
	},
	{
		name: "auth_server: an admitted request is passed on after the answer",
		file: "caddymodule/pipeline.go",
		from: "\t\th.answer(w, x.key, tok)\n\t\treturn nil\n",
		to:   "\t\th.answer(w, x.key, tok)\n",
		pkg:  "./caddymodule", tests: "TestAuthServerAdmits",
	},
	{
		name: "auth_server: its answers are not metered",
		file: "caddymodule/pipeline.go",
		from: "\tif h.usage == nil {\n\t\treturn h.decide(w, &x, next)",
		to:   "\tif h.usage == nil || h.AuthServer {\n\t\treturn h.decide(w, &x, next)",
		pkg:  "./caddymodule", tests: "TestAuthServerLimitsAndUsage",
	},
	{
		name: "auth_server: the cookie check judges the auth request's GET",
		file: "caddymodule/step_find.go",
		from: "h.crossOrigin.Check(h.crossOriginRequest(x.r))",
		to:   "h.crossOrigin.Check(x.r)",
		pkg:  "./caddymodule", tests: "TestAuthServerCookieMethod",
	},
	{
		name: "identity_jwt: a client's own token header is not removed",
		file: "caddymodule/step_identity.go",
		from: "h.idHeader, h.ownerHeader}, h.jwtHeaderNames()...) {",
		to:   "h.idHeader, h.ownerHeader}) {",
		pkg:  "./caddymodule", tests: "TestIdentityJWT$",
	},
	{
		name: "identity_jwt: tokens expire later than the configured lifetime",
		file: "signing/issuer.go",
		from: "Expiry:   jwt.NewNumericDate(now.Add(i.cfg.Lifetime)),",
		to:   "Expiry:   jwt.NewNumericDate(now.Add(MaxLifetime)),",
		pkg:  "./signing", tests: "TestIssuerClaimsAndCache",
	},
	{
		name: "signing keys: private keys sealed under a key that is not the pepper's",
		file: "signing/keys.go",
		from: "\tk := h.DeriveKey(sealLabel)\n",
		to:   "\tk := [32]byte{}\n",
		pkg:  "./keystore/sqlite", tests: "TestConformance/SigningKeysWrongPepper",
	},
}

func main() {
	only := flag.String("run", "", "only the breaks whose name matches this regular expression")
	timeout := flag.Duration("timeout", 5*time.Minute, "limit for building one break's tests, and for running them")
	workers := flag.Int("workers", 2, "breaks checked at once, each worker in a scratch copy of its own")
	flag.Parse()
	var pick *regexp.Regexp
	if *only != "" {
		pick = regexp.MustCompile(*only)
	}
	root, err := repoRoot()
	if err != nil {
		fail(err)
	}
	var picked []mutation
	for _, m := range mutations {
		if pick == nil || pick.MatchString(m.name) {
			picked = append(picked, m)
		}
	}
	if len(picked) == 0 {
		fail(fmt.Errorf("no break matches %q", *only))
	}
	n := max(1, min(*workers, len(picked)))

	// Each worker applies one break at a time to its own scratch copy and
	// restores the file afterwards, so every break is checked alone, and
	// the build cache, shared by all, keeps what a break does not touch.
	scratches := make([]string, n)
	for w := range scratches {
		scratch, err := copyRepo(root)
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(scratch)
		scratches[w] = scratch
	}

	verdicts := make([]string, len(picked))
	details := make([]string, len(picked))
	next := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	done := 0
	for _, scratch := range scratches {
		wg.Go(func() {
			for i := range next {
				m := picked[i]
				start := time.Now()
				verdict, detail := check(scratch, m, *timeout)
				mu.Lock()
				verdicts[i], details[i] = verdict, detail
				done++
				fmt.Printf("%2d/%d %-8s %-70s %s (%s)\n", done, len(picked), verdict, m.name, m.tests, time.Since(start).Round(time.Second))
				mu.Unlock()
			}
		})
	}
	for i := range picked {
		next <- i
	}
	close(next)
	wg.Wait()

	var problems []string
	for i, m := range picked {
		if verdicts[i] != "caught" {
			problems = append(problems, fmt.Sprintf("%s: %s\n%s", verdicts[i], m.name, details[i]))
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "\n%d of %d breaks not caught:\n\n%s\n", len(problems), len(picked), strings.Join(problems, "\n\n"))
		os.Exit(1)
	}
	fmt.Printf("\nall %d breaks caught\n", len(picked))
}

// check applies m in the scratch copy, builds its package's tests, runs
// the ones meant to catch it and restores the file. The verdict is
// "caught" (the tests failed, or hung), "SURVIVED", "STALE" (the text to
// break is not there exactly once) or "INVALID" (the broken code does not
// build, or the tests could not run).
func check(scratch string, m mutation, timeout time.Duration) (verdict, detail string) {
	path := filepath.Join(scratch, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "STALE", err.Error()
	}
	if n := bytes.Count(orig, []byte(m.from)); n != 1 {
		return "STALE", fmt.Sprintf("%s holds the text to break %d times, want once:\n%s", m.file, n, m.from)
	}
	broken := bytes.Replace(orig, []byte(m.from), []byte(m.to), 1)
	if err := os.WriteFile(path, broken, 0o644); err != nil {
		return "STALE", err.Error()
	}
	defer os.WriteFile(path, orig, 0o644)

	bin, err := os.MkdirTemp("", "keygate-mutate-bin-")
	if err != nil {
		return "INVALID", err.Error()
	}
	defer os.RemoveAll(bin)
	test := filepath.Join(bin, "pkg.test")

	// Built once, on its own, so that a break that does not compile is
	// told apart from one the tests catch. The checks go vet would make
	// are CI's job on the unbroken code; no debug information is needed.
	// -trimpath keeps the scratch copy's path out of what is compiled, so
	// the workers, and later runs, share the build cache's packages.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "test", "-c", "-vet=off", "-trimpath", "-ldflags=-w", "-o", test, m.pkg)
	build.Dir = scratch
	if out, err := build.CombinedOutput(); err != nil {
		return "INVALID", fmt.Sprintf("building the tests: %v\n%s", err, out)
	}
	if _, err := os.Stat(test); err != nil {
		return "INVALID", fmt.Sprintf("%s has no tests: %v", m.pkg, err)
	}

	// Run the way go test runs it: in the package's directory.
	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, test, "-test.paniconexit0", "-test.count=1", "-test.run", runPattern(m.tests))
	cmd.Dir = filepath.Join(scratch, m.pkg)
	// The end-to-end tests' Caddy is built as for a developer's run,
	// without -race even under CI: a break is a change of behaviour for
	// the tests to see, races are the race step's, and a race-enabled
	// Caddy would be rebuilt, slower, for every break in its code.
	cmd.Env = append(os.Environ(), "KEYGATE_E2E_RACE=0")
	cmd.WaitDelay = 10 * time.Second // a child left holding the output does not hold the check
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		return "caught", "" // the tests hung: a failure all the same
	case err == nil:
		return "SURVIVED", string(out)
	case bytes.Contains(out, []byte("--- FAIL")):
		return "caught", ""
	default:
		return "INVALID", string(out)
	}
}

// runPattern anchors each level of a -run pattern, so that a break's
// tests match by whole name, subtests ("TestConformance/LifecycleRecordsChanges")
// included.
func runPattern(tests string) string {
	levels := strings.Split(tests, "/")
	for i, l := range levels {
		levels[i] = "^(" + l + ")$"
	}
	return strings.Join(levels, "/")
}

func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// copyRepo copies the files git knows (tracked, and new ones not
// ignored) into a temporary directory.
func copyRepo(root string) (string, error) {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return "", fmt.Errorf("listing files: %w", err)
	}
	dir, err := os.MkdirTemp("", "keygate-mutate-")
	if err != nil {
		return "", err
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, name))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			return "", err
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	os.Exit(2)
}
