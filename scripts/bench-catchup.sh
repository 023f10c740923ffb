#!/usr/bin/env bash
# A new cluster node's catch-up (docs/benchmarks.md, "Cluster"): EVENTS events (default 10 million)
# through one node in batches of 1000 for USERS players (default one million), then TAIL seconds of
# single events; the cluster keeps its snapshots (PHOENIX_SNAPSHOT_INTERVAL=INTERVAL); then a new node
# starts, loads the newest snapshot and replays the log after it. Prints what the snapshot holds, what
# the new node replayed, the time from its start to /readyz 200, and its memory (RSS).
# Needs the machine's PostgreSQL and Redis (PHOENIX_BENCH_DATABASE_URL, PHOENIX_BENCH_REDIS_URL); the
# run gets a schema of its own, dropped at the end.
#
#   cargo build --release && scripts/bench-catchup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS="${EVENTS:-10000000}"
USERS="${USERS:-1000000}"
TAIL="${TAIL:-10}"
INTERVAL="${INTERVAL:-60s}"
SCHEMA_PREFIX=phx_catchup
# shellcheck source=scripts/cluster-bench-common.sh
. scripts/cluster-bench-common.sh
sql() { psql "$DB" -Atc "SET search_path TO $SCHEMA; $1" | tail -1; }

wait_ready() { for _ in $(seq 6000); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.01; done; echo "$1 not ready" >&2; return 1; }
start_node() {
  local port; port="$(free_port)"
  PHOENIX_LISTEN="127.0.0.1:$port" PHOENIX_DATABASE_URL="$CLUSTER_URL" PHOENIX_REDIS_URL="$REDIS" \
    PHOENIX_MASTER_KEY="$KEY" PHOENIX_ADMIN_SECRET="$SECRET" \
    PHOENIX_LOG="warn,phoenix_store=info" PHOENIX_SNAPSHOT_INTERVAL="$INTERVAL" "$BIN" serve >"$WORK/node-$port.log" 2>&1 &
  PIDS+=($!)
  NODE="http://127.0.0.1:$port"
  NODE_PID=$!
}

start_node; A="$NODE"; wait_ready "$A"
echo "== $EVENTS events in batches of 1000 for $USERS players through node A"
"$BIN" --admin-secret "$SECRET" bench ingest --url "$A" --mode batch --events "$EVENTS" --users "$USERS" \
  | grep -E "^(events/s|phoenix bench)" | sed 's/^/    /'
HEAD="$(sql "SELECT pos FROM phoenix_log_head")"
echo "== waiting for a snapshot at the log's head ($HEAD)"
for _ in $(seq 900); do
  [ "$(sql "SELECT coalesce(max(pos), 0) FROM phoenix_snapshots WHERE complete")" -ge "$HEAD" ] && break
  sleep 1
done
echo "== $TAIL s of single events after it"
"$BIN" --admin-secret "$SECRET" bench ingest --url "$A" --mode single --duration "$TAIL" --users "$USERS" \
  | grep -E "^(events/s)" | sed 's/^/    /'

echo "== a new node: from start to ready"
SNAP="$(sql "SELECT pos || ' ' || bytes FROM phoenix_snapshots WHERE complete ORDER BY pos DESC LIMIT 1")"
HEAD="$(sql "SELECT pos FROM phoenix_log_head")"
ROWS="$(sql "SELECT count(*) FROM phoenix_log")"
BEFORE="$(date +%s.%N)"
start_node; C="$NODE"; wait_ready "$C"
AFTER="$(date +%s.%N)"
read -r SNAP_POS SNAP_BYTES <<<"$SNAP"
# The snapshot the node loaded (a newer one may have completed while it started), from its own log.
LOADED="$(grep -h "loaded the cluster's newest snapshot" "$WORK/node-${C##*:}.log" | grep -o 'position=[0-9]*' | cut -d= -f2 | tail -1)"
LOADED="${LOADED:-$SNAP_POS}"
[ "$LOADED" = "$SNAP_POS" ] || SNAP_BYTES="$(sql "SELECT bytes FROM phoenix_snapshots WHERE pos = $LOADED LIMIT 1")"
echo "    snapshot loaded at position $LOADED: $((SNAP_BYTES / 1048576)) MiB of files (newest before the start: $SNAP_POS)"
echo "    log: head $HEAD, $ROWS rows kept; the new node replayed $((HEAD - LOADED)) records after the snapshot"
echo "    ready after $(python3 -c "print(f'{$AFTER-$BEFORE:.2f}')") s; RSS $(( $(ps -o rss= -p "$NODE_PID") / 1024 )) MiB"
echo "    node A's RSS $(( $(ps -o rss= -p "${PIDS[0]}") / 1024 )) MiB"
grep -h "snapshot" "$WORK"/node-*.log | tail -3 | sed 's/^/    /' || true
