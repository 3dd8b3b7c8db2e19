#!/usr/bin/env bash
# Runs Keygate's whole test suite: formatting, vet, every test with the
# race detector (unit, store conformance on SQLite and PostgreSQL, and the
# end-to-end tests that start real Caddy processes), the allocation
# checks, the mutation check (each promise broken once must fail a test),
# then a short run of every fuzz target.
#
# PostgreSQL: tests use KEYGATE_TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test) and create a database of their
# own there. If the server is not running, this script tries to start the
# local cluster. Without PostgreSQL the PostgreSQL tests are skipped,
# unless CI=true, where they fail.
#
# Environment: FUZZTIME (default 10s per fuzz target), TESTFLAGS (extra
# flags for go test, e.g. "-run TestX -v"), KEYGATE_E2E_RACE=1 (build the
# Caddy that the end-to-end tests start with -race as well; CI does),
# MUTATE=0 (skip the mutation check, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

pg_url=${KEYGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_up() { pg_isready -q -d "$pg_url" 2>/dev/null; }

step "PostgreSQL"
if ! command -v pg_isready >/dev/null 2>&1; then
	echo "pg_isready not found (Debian: apt-get install postgresql-client)"
	[ "${CI:-}" = true ] && exit 1
elif pg_up; then
	echo "reachable at ${pg_url%%\?*}"
else
	if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
		echo "not running; starting the local cluster"
		for v in $(ls /etc/postgresql); do
			pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
		done
		for _ in $(seq 1 30); do pg_up && break; sleep 1; done
	fi
	if pg_up; then
		echo "started"
	elif [ "${CI:-}" = true ]; then
		echo "PostgreSQL is required under CI=true and is not reachable at $pg_url" >&2
		exit 1
	else
		echo "not reachable: PostgreSQL tests will be skipped"
	fi
fi

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

# go test would vet each package again, with a subset of the checks that
# go vet ./... just made; -vet=off skips that repetition.
step "go test -race"
# shellcheck disable=SC2086
go test -race -vet=off -count=1 -timeout 20m ${TESTFLAGS:-} ./...

# The race detector changes what allocates (sync.Pool drops items), so the
# allocation checks skip under -race and run here without it.
step "allocation checks (without -race)"
go test -vet=off -count=1 -run 'DoesNotAllocate' ./...

# Each benchmark a few times, so that they keep compiling and running;
# docs/benchmarks.md has how to measure with them.
step "benchmarks (100 iterations each)"
go test -count=1 -run '^$' -bench . -benchtime 100x ./caddymodule/ ./cache/ ./ratelimit/ ./usage/ ./keystore/ ./signing/

# Breaks each promise in a scratch copy and fails unless a test catches
# it; see scripts/mutate/main.go for the list.
if [ "${MUTATE:-1}" != 0 ]; then
	step "mutation check"
	go run ./scripts/mutate
fi

step "fuzz (${FUZZTIME:-10s} per target)"
# Each package's test binary is built once, with the fuzzing
# instrumentation, and run once per target: running "go test -fuzz" per
# target would check and relink the binary every time. The binary runs in
# its package's directory, so a failure's input lands in that package's
# testdata/fuzz (commit it), and it keeps its corpus where "go test -fuzz"
# would, under $GOCACHE/fuzz.
fuzzbin=$(mktemp -d)
trap 'rm -rf "$fuzzbin"' EXIT
fuzzcache="$(go env GOCACHE)/fuzz"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
	[ -n "$targets" ] || continue
	bin="$fuzzbin/$(echo "$pkg" | tr / _).test"
	go test -c -vet=off -fuzz . -o "$bin" "$pkg"
	for target in $targets; do
		echo "$pkg $target"
		log=$(mktemp)
		# Go's fuzzing coordinator can fail a target with a bare "context
		# deadline exceeded" at the end of -fuzztime on a loaded machine,
		# having found nothing (golang/go#51484). Such a run, and only
		# such a run (no failing input written), is tried once more.
		for attempt in 1 2; do
			if (cd "$dir" && "$bin" -test.paniconexit0 -test.timeout 10m -test.run '^$' \
				-test.fuzz "^${target}\$" -test.fuzztime "${FUZZTIME:-10s}" -test.fuzzminimizetime 2s \
				-test.fuzzcachedir "$fuzzcache/$pkg") >"$log" 2>&1; then
				break
			fi
			if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"; then
				echo "  the fuzzing coordinator's deadline race, nothing found; once more"
				continue
			fi
			cat "$log"; rm -f "$log"; exit 1
		done
		rm -f "$log"
	done
done

step "all tests passed"
