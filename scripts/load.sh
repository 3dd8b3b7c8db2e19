#!/usr/bin/env bash
# Side-by-side load comparison: one Caddy process serves a plain
# reverse_proxy site and a Keygate site (api_key with a rate limit, a key
# with a quota, usage metering on) in front of the same upstream, and wrk
# drives them in alternating rounds, on loopback only. Alternating in one
# process is what makes the comparison fair on a shared machine: both
# sites see the same noise, the same warm caches, the same binary.
#
#   scripts/load.sh                           # 5 rounds of 5s per site
#   ROUNDS=9 DURATION=10s scripts/load.sh
#   EXTRA=1 scripts/load.sh                   # also malformed and unknown keys
#   FLOOD=1 scripts/load.sh                   # also valid keys during a flood of unknown ones
#   FLOOD=1 FLOOD_CONNECTIONS=2000 scripts/load.sh  # a flood on more connections than answers are held
#   MANYKEYS=100000 scripts/load.sh           # also the comparison with that many distinct keys
#   PROFILE=/tmp/keygate.pprof scripts/load.sh  # CPU profile of one Keygate round
#   CADDY_BIN=/path/to/caddy scripts/load.sh  # a prebuilt binary (else go build)
#
# Both sites get the same requests, key header included: the plain site
# passes it on, so the comparison is of what Keygate does, not of the
# bytes a client sends.
#
# Each round prints requests/s, p50 and p99 of both sites and their
# ratio; the summary prints the median ratio (Keygate/plain requests/s)
# and the median p50 added. Targets (docs/benchmarks.md): ratio ≥ 0.98,
# p50 added ≤ 0.1 ms. Every wrk run is bounded by `timeout`, and so is
# the whole script (LIMIT, default 15m).
#
# Needs wrk (Debian: apt-get install wrk), curl and python3. The cores of
# a small machine are shared by wrk, Caddy and the upstream: compare the
# sites within one run, never numbers across runs or machines.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-32}
FLOOD_CONNECTIONS=${FLOOD_CONNECTIONS:-$CONNECTIONS}
THREADS=${THREADS:-1}
LIMIT=${LIMIT:-15m}

if [ -z "${KEYGATE_LOAD_BOUNDED:-}" ]; then
	KEYGATE_LOAD_BOUNDED=1 exec timeout --foreground -k 10s "$LIMIT" "$0" "$@"
fi

for tool in wrk curl python3; do
	command -v "$tool" >/dev/null || { echo "$tool not found (Debian: apt-get install $tool)" >&2; exit 1; }
done

work=$(mktemp -d)
caddy_pid=""
cleanup() {
	if [ -n "$caddy_pid" ]; then
		kill "$caddy_pid" 2>/dev/null || true
		wait "$caddy_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
admin=$(free_port); up=$(free_port); plain=$(free_port); gated=$(free_port); many=$(free_port)

caddy=${CADDY_BIN:-}
if [ -z "$caddy" ]; then
	caddy="$work/caddy"
	echo "building cmd/caddy"
	go build -o "$caddy" ./cmd/caddy
fi
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
	api_key {
		rate_limit 1000000/s
	}
	reverse_proxy 127.0.0.1:$up
}
CADDY
if [ -n "${MANYKEYS:-}" ]; then
	# The site of the MANYKEYS comparison: imported keys, a cache that
	# holds them all for the whole run.
	cat >>"$work/Caddyfile" <<CADDY
http://127.0.0.1:$many {
	api_key {
		legacy_keys
		rate_limit 1000000/s
		cache {
			size $((MANYKEYS * 2))
			ttl 1h
		}
	}
	reverse_proxy 127.0.0.1:$up
}
CADDY
fi

"$caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
caddy_pid=$!
for _ in $(seq 1 100); do
	curl -fs "http://127.0.0.1:$plain/" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fs "http://127.0.0.1:$plain/" >/dev/null || { cat "$work/caddy.log"; exit 1; }

# The key has a quota the load stays under: the site's rate limit, the
# key's quota (counters shared through the store) and usage metering
# all run on every request.
key=$("$caddy" api-key create --name load --quota 1000000000/day 2>/dev/null)
curl -fs -H "Authorization: Bearer $key" "http://127.0.0.1:$gated/" >/dev/null || { echo "the key was refused" >&2; cat "$work/caddy.log"; exit 1; }

secs=${DURATION%s}
bound=$((secs + 30))

# wrk_run URL [wrk args…]: prints "req/s p50_ms p99_ms non2xx".
wrk_run() {
	local url=$1 out
	shift
	out=$(timeout -k 5s "$bound" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
	awk '
		function ms(v) {
			if (v ~ /us$/) return substr(v, 1, length(v)-2) / 1000
			if (v ~ /ms$/) return substr(v, 1, length(v)-2) + 0
			if (v ~ /s$/) return substr(v, 1, length(v)-1) * 1000
			return v
		}
		/Requests\/sec/ {rps=$2}
		/^ +50%/ {p50=ms($2)} /^ +99%/ {p99=ms($2)}
		/Non-2xx/ {bad=$5}
		END {printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad}' <<<"$out"
}

plain_url="http://127.0.0.1:$plain/"
gated_url="http://127.0.0.1:$gated/"
auth="Authorization: Bearer $key"

printf "Keygate load comparison: %s rounds of %s per site, %s connections, %s wrk thread(s), %s CPUs, %s\n" \
	"$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" "$(nproc)" "$(date -u +%FT%TZ)"
echo "keygate site: api_key with rate_limit 1000000/s, a key with a quota of 1000000000/day, usage metering on"
# A short warm-up of both, not counted.
DURATION=2s wrk_run "$plain_url" -H "$auth" >/dev/null
DURATION=2s wrk_run "$gated_url" -H "$auth" >/dev/null

# keys_lua FILE: a wrk script that sends the keys of FILE, one per line,
# in turn, as bearer keys.
keys_lua() {
	cat <<LUA
local keys = {}
for line in io.lines("$1") do keys[#keys + 1] = line end
local i = 0
request = function()
	i = i % #keys + 1
	return wrk.format("GET", "/", {["Authorization"] = "Bearer " .. keys[i]})
end
LUA
}

# compare_rounds OUT GATED_URL WRK_ARGS...: ROUNDS alternating rounds of
# the plain site and GATED_URL with the same requests; prints each round
# and appends "ratio p50-added" lines to OUT.
compare_rounds() {
	local out=$1 gated=$2 round p g prps pp50 pp99 grps gp50 gp99 gbad ratio added
	shift 2
	printf "%-6s %10s %9s %9s   %10s %9s %9s   %6s %9s\n" round "plain r/s" "p50 ms" "p99 ms" "keygate r/s" "p50 ms" "p99 ms" ratio "p50 +ms"
	: >"$out"
	for round in $(seq 1 "$ROUNDS"); do
		# Alternate which site goes first, so that neither always runs on
		# the machine's warmer (or noisier) half of a round.
		if [ $((round % 2)) = 1 ]; then
			p=$(wrk_run "$plain_url" "$@"); g=$(wrk_run "$gated" "$@")
		else
			g=$(wrk_run "$gated" "$@"); p=$(wrk_run "$plain_url" "$@")
		fi
		read -r prps pp50 pp99 _ <<<"$p"
		read -r grps gp50 gp99 gbad <<<"$g"
		if [ "${gbad:-0}" != 0 ]; then
			echo "round $round: $gbad Keygate answers were not 2xx" >&2
			exit 1
		fi
		ratio=$(awk -v g="$grps" -v p="$prps" 'BEGIN {printf "%.3f", g / p}')
		added=$(awk -v g="$gp50" -v p="$pp50" 'BEGIN {printf "%.3f", g - p}')
		echo "$ratio $added" >>"$out"
		printf "%-6s %10s %9s %9s   %10s %9s %9s   %6s %9s\n" "$round" "$prps" "$pp50" "$pp99" "$grps" "$gp50" "$gp99" "$ratio" "$added"
	done
}

compare_rounds "$work/rounds" "$gated_url" -H "$auth"

median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
ratio=$(cut -d' ' -f1 "$work/rounds" | median)
added=$(cut -d' ' -f2 "$work/rounds" | median)
echo
echo "median ratio (keygate/plain req/s): $ratio   (target >= 0.98)"
echo "median p50 added:                   $added ms   (target <= 0.1 ms)"

if [ -n "${PROFILE:-}" ]; then
	echo
	echo "profiling one Keygate round into $PROFILE"
	curl -fs -o "$PROFILE" "http://127.0.0.1:$admin/debug/pprof/profile?seconds=$secs" &
	prof=$!
	wrk_run "$gated_url" -H "$auth" >/dev/null
	wait "$prof"
	echo "go tool pprof -top $PROFILE"
fi

if [ -n "${MANYKEYS:-}" ]; then
	# MANYKEYS distinct keys in turn instead of one: every request a
	# different key, all of them served from the cache once each has been
	# used. The keys are imported (as legacy keys: the import is the fast
	# way to create many), which takes about a minute per 100,000 here.
	python3 - "$MANYKEYS" >"$work/many.csv" <<'PY'
import secrets, sys
print("key,name")
for _ in range(int(sys.argv[1])):
    print("legacy-" + secrets.token_hex(16) + ",load")
PY
	echo
	echo "importing $MANYKEYS keys"
	"$caddy" api-key import --timeout 15m --file "$work/many.csv" >/dev/null 2>&1
	tail -n +2 "$work/many.csv" | cut -d, -f1 >"$work/many.keys"
	rm -f "$work/many.csv"
	keys_lua "$work/many.keys" >"$work/many.lua"
	many_url="http://127.0.0.1:$many/"
	# Until the cache has looked every key up once (its miss count, from
	# the metrics); wrk cannot stop after a number of requests.
	echo "using each key once, to fill the cache"
	misses() { curl -fs "http://127.0.0.1:$admin/metrics" | awk '/^caddy_api_key_cache_lookups_total\{result="miss"\}/ {print $2 + 0}'; }
	target=$(($(misses) + MANYKEYS))
	wrk -t1 -c"$CONNECTIONS" -d30m -s "$work/many.lua" "$many_url" >/dev/null &
	warm=$!
	for _ in $(seq 1 1800); do
		[ "$(misses)" -ge "$target" ] && break
		sleep 1
	done
	kill "$warm" 2>/dev/null || true
	wait "$warm" 2>/dev/null || true
	compare_rounds "$work/many.rounds" "$many_url" -s "$work/many.lua"
	echo "$MANYKEYS keys: median ratio $(cut -d' ' -f1 "$work/many.rounds" | median), median p50 added $(cut -d' ' -f2 "$work/many.rounds" | median) ms"
fi

if [ -n "${FLOOD:-}" ]; then
	# Valid-key throughput from one address (127.0.0.2) alone, then while
	# another (127.0.0.1) floods the same site with unknown well-formed
	# keys, 20,000 of them in turn: the flooding client's budget of
	# failed checks runs out after its burst, and its further requests
	# cost a budget check and get 429, held for failed_auth_limit's delay
	# (at most 8,192 at once, 2,048 per client). Target: with the flood, ≥ 0.8 of the level
	# without it. The flood's own wrk takes CPU from the same cores.
	# FLOOD_CONNECTIONS sets the flood's connections (default: CONNECTIONS).
	go run ./scripts/genkey 20000 >"$work/unknown.keys"
	keys_lua "$work/unknown.keys" >"$work/flood.lua"
	valid_url="http://127.0.0.2:$gated/"
	host="Host: 127.0.0.1:$gated"
	curl -fs -H "$auth" -H "$host" "$valid_url" >/dev/null || { echo "the key was refused from 127.0.0.2" >&2; exit 1; }
	echo
	printf "%-6s %14s %14s %8s\n" round "alone r/s" "flooded r/s" ratio
	: >"$work/flood"
	for round in $(seq 1 "${FLOOD_ROUNDS:-3}"); do
		read -r alone _ <<<"$(wrk_run "$valid_url" -H "$auth" -H "$host")"
		timeout -k 5s "$bound" wrk -t1 -c"$FLOOD_CONNECTIONS" -d"$((secs + 2))s" -s "$work/flood.lua" "$gated_url" >/dev/null &
		flood=$!
		sleep 1
		read -r flooded _ <<<"$(wrk_run "$valid_url" -H "$auth" -H "$host")"
		wait "$flood" || true
		ratio=$(awk -v f="$flooded" -v a="$alone" 'BEGIN {printf "%.3f", f / a}')
		echo "$ratio" >>"$work/flood"
		printf "%-6s %14s %14s %8s\n" "$round" "$alone" "$flooded" "$ratio"
	done
	echo "median valid-key throughput under the flood: $(median <"$work/flood") of its level alone   (target >= 0.8)"
fi

if [ -n "${EXTRA:-}" ]; then
	malformed="${key%??????}AAAAAA"
	unknown=$(go run ./scripts/genkey)
	echo
	printf "%-10s %10s %9s %9s\n" scenario "req/s" "p50 ms" "p99 ms"
	for s in "malformed:$malformed" "unknown:$unknown"; do
		read -r rps p50 p99 _ <<<"$(wrk_run "$gated_url" -H "Authorization: Bearer ${s#*:}")"
		printf "%-10s %10s %9s %9s\n" "${s%%:*}" "$rps" "$p50" "$p99"
	done
fi

echo
curl -fs "http://127.0.0.1:$admin/metrics" | grep -E '^caddy_api_key_(requests_total|cache_lookups_total|usage_recorded_total|usage_written_total)' || true
