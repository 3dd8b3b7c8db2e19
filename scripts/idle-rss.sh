#!/usr/bin/env bash
# Measures the memory of a gateway (embedded store) for each cache size
# given: idle after start, and after 20,000 lookups of distinct unknown
# keys (which touch the cache's admission counters all over), as resident
# memory (VmRSS) and as Go heap in use. Memory follows the keys cached,
# not the setting.
#
#   scripts/idle-rss.sh                 # the default size and 10,000,000
#   scripts/idle-rss.sh 100000 1000000  # these sizes
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(default 10000000)

tmp=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/caddy" ./cmd/caddy
go build -o "$tmp/genkey" ./scripts/genkey

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
measure() {
	local rss heap
	rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	heap=$(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^go_memstats_heap_inuse_bytes / {printf "%.0f", $2 / 1048576}')
	printf '%6d MiB resident, %6d MiB Go heap in use' $((rss / 1024)) "$heap"
}

for size in "${sizes[@]}"; do
	p=$(port)
	admin=$(port)
	cache=""
	[ "$size" = default ] || cache="cache {
			size $size
			negative_size $size
		}"
	cat >"$tmp/Caddyfile" <<CADDY
{
	admin 127.0.0.1:$admin
	auto_https off
}
http://127.0.0.1:$p {
	api_key {
		database sqlite:$tmp/keys-$size.db
		failed_auth_limit off
		$cache
	}
	respond ok
}
CADDY
	XDG_DATA_HOME="$tmp/data" "$tmp/caddy" run --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/log-$size" 2>&1 &
	pid=$!
	for _ in $(seq 1 100); do
		curl -s -o /dev/null "http://127.0.0.1:$p/" && break
		sleep 0.1
	done
	sleep 2 # let start-up garbage be collected
	printf 'cache size %-10s idle: %s\n' "$size" "$(measure)"
	# 20,000 distinct unknown keys, 200 per connection.
	for _ in $(seq 1 100); do
		args=()
		for _ in $(seq 1 200); do
			args+=(-s -o /dev/null -H "Authorization: Bearer $("$tmp/genkey")" "http://127.0.0.1:$p/" --next)
		done
		curl "${args[@]}" -s -o /dev/null "http://127.0.0.1:$p/" || true
	done
	printf 'cache size %-10s after 20,000 unknown keys: %s\n' "$size" "$(measure)"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=
done
