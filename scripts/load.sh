#!/usr/bin/env bash
# Reproducible load comparison: the same Caddy process serves a plain
# reverse_proxy site and an api_key + reverse_proxy site in front of the
# same upstream, and wrk drives each in turn, on loopback only.
#
#   scripts/load.sh                 # 10s per run, 2 rounds
#   DURATION=30s ROUNDS=3 CONNECTIONS=64 scripts/load.sh
#
# It prints requests/s and latency percentiles per scenario:
#   plain      reverse_proxy alone (the baseline)
#   valid      api_key with a valid key (cache hits; usage metering on)
#   limited    the same with a rate limit the load stays under (limiter,
#              RateLimit headers)
#   quota      the rate-limited site with a key that also has a quota the
#              load stays under (shared counters, written every second)
#   malformed  api_key with a key that fails the checksum (401, no lookup)
#   unknown    api_key with one well-formed unknown key (401, negative cache)
# Needs wrk (Debian: apt-get install wrk). The two cores of a small machine
# are shared by wrk, Caddy and the upstream: compare scenarios within one
# run, not numbers across machines.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}

command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
caddy_pid=""
cleanup() {
	[ -n "$caddy_pid" ] && kill "$caddy_pid" 2>/dev/null && wait "$caddy_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
admin=$(free_port); up=$(free_port); plain=$(free_port); gated=$(free_port); limited=$(free_port)

go build -o "$work/caddy" ./cmd/caddy
export XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config"

cat >"$work/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$admin
	auto_https off
	log {
		level ERROR
	}
}
http://127.0.0.1:$up {
	respond "ok"
}
http://127.0.0.1:$plain {
	reverse_proxy 127.0.0.1:$up
}
http://127.0.0.1:$gated {
	api_key
	reverse_proxy 127.0.0.1:$up
}
http://127.0.0.1:$limited {
	api_key {
		rate_limit 1000000/s
	}
	reverse_proxy 127.0.0.1:$up
}
CADDY

"$work/caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
caddy_pid=$!
for _ in $(seq 1 100); do
	curl -fs "http://127.0.0.1:$plain/" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fs "http://127.0.0.1:$plain/" >/dev/null || { cat "$work/caddy.log"; exit 1; }

key=$("$work/caddy" api-key create --name load 2>/dev/null)
quota_key=$("$work/caddy" api-key create --name load-quota --quota 1000000000/day 2>/dev/null)
malformed="${key%??????}AAAAAA"
unknown=$(go run ./scripts/genkey)

curl -fs -H "Authorization: Bearer $key" "http://127.0.0.1:$gated/" >/dev/null || { echo "valid key refused" >&2; cat "$work/caddy.log"; exit 1; }

run() { # name url [header]
	local name=$1 url=$2 out
	shift 2
	out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
	awk -v name="$name" '
		/Requests\/sec/ {rps=$2}
		/^ +50%/ {p50=$2} /^ +90%/ {p90=$2} /^ +99%/ {p99=$2}
		/Non-2xx/ {non2xx=$5}
		END {printf "%-10s %12s %10s %10s %10s\n", name, rps, p50, p90, p99}' <<<"$out"
}

printf "Keygate load comparison: %s x %s rounds, %s connections, %s threads, %s CPUs\n" "$DURATION" "$ROUNDS" "$CONNECTIONS" "$THREADS" "$(nproc)"
printf "%-10s %12s %10s %10s %10s\n" scenario "req/s" p50 p90 p99
for round in $(seq 1 "$ROUNDS"); do
	run plain "http://127.0.0.1:$plain/"
	run valid "http://127.0.0.1:$gated/" -H "Authorization: Bearer $key"
	run limited "http://127.0.0.1:$limited/" -H "Authorization: Bearer $key"
	run quota "http://127.0.0.1:$limited/" -H "Authorization: Bearer $quota_key"
	run malformed "http://127.0.0.1:$gated/" -H "Authorization: Bearer $malformed"
	run unknown "http://127.0.0.1:$gated/" -H "Authorization: Bearer $unknown"
done
echo
curl -fs "http://127.0.0.1:$admin/metrics" | grep -E '^caddy_api_key_(requests_total|store_queries_total|cache_lookups_total|usage_recorded_total|usage_written_total)' || true
