#!/usr/bin/env bash
# The cluster against the embedded store, in one sitting (docs/benchmarks.md, "Cluster"): durable
# ingest events/s (single and batch) through the embedded store, one cluster node and two cluster nodes
# (the load spread over both); the delay from a 202 on node A to the WebSocket frame on node B at
# RATE events/s; reads/s of one node, embedded and cluster (reads are local); and how long a new node
# takes to be ready with the log the runs left (the events it must replay are printed).
# Needs the machine's PostgreSQL and Redis (PHOENIX_BENCH_DATABASE_URL, PHOENIX_BENCH_REDIS_URL); each run
# gets a schema of its own, dropped at the end.
#
#   cargo build --release && DURATION=10 scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10}"
RATE="${RATE:-1000}"
SCHEMA_PREFIX=phx_bench
# shellcheck source=scripts/cluster-bench-common.sh
. scripts/cluster-bench-common.sh

wait_ready() { for _ in $(seq 600); do curl -sf "$1/readyz" >/dev/null && return 0; sleep 0.1; done; echo "$1 not ready" >&2; return 1; }

start_embedded() {
  local port; port="$(free_port)"
  PHOENIX_LISTEN="127.0.0.1:$port" PHOENIX_DATA_DIR="$WORK/embedded" PHOENIX_ADMIN_SECRET="$SECRET" \
    PHOENIX_LOG=warn "$BIN" serve >"$WORK/embedded.log" 2>&1 &
  PIDS+=($!)
  EMBEDDED="http://127.0.0.1:$port"
  wait_ready "$EMBEDDED"
}

# Starts a cluster node; its URL in NODE.
start_node() {
  local port; port="$(free_port)"
  PHOENIX_LISTEN="127.0.0.1:$port" PHOENIX_DATABASE_URL="$CLUSTER_URL" PHOENIX_REDIS_URL="$REDIS" \
    PHOENIX_MASTER_KEY="$KEY" PHOENIX_ADMIN_SECRET="$SECRET" PHOENIX_LOG=warn \
    "$BIN" serve >"$WORK/node-$port.log" 2>&1 &
  PIDS+=($!)
  NODE="http://127.0.0.1:$port"
}

ingest() { # url mode
  "$BIN" --admin-secret "$SECRET" bench ingest --url "$1" --mode "$2" --duration "$DURATION" \
    | grep -E "^(events/s|latency|phoenix bench)" | sed 's/^/    /'
}

echo "== durable ingest (events/s; $DURATION s a run)"
start_embedded
start_node; A="$NODE"; wait_ready "$A"
start_node; B="$NODE"; wait_ready "$B"
for mode in single batch; do
  echo "-- $mode: embedded"; ingest "$EMBEDDED" "$mode"
  echo "-- $mode: one cluster node"; ingest "$A" "$mode"
  echo "-- $mode: two cluster nodes"; ingest "$A,$B" "$mode"
done

echo "== cross-node freshness: 202 on node A to the frame on node B, $RATE events/s"
"$BIN" --admin-secret "$SECRET" bench ws --url "$A,$B" --rate "$RATE" --duration "$DURATION" \
  --subscribers 100 --sample 100 | sed 's/^/    /'

echo "== reads/s of one node (top 100, around me)"
for target in "$EMBEDDED" "$B"; do
  echo "-- $target"
  "$BIN" --admin-secret "$SECRET" bench query --url "$target" --players 100000 --duration "$DURATION" \
    | grep -E "^(top|around|ranked|reads)" | sed 's/^/    /' || true
done

echo "== a new node: from start to ready with the log so far"
EVENTS="$(psql "$DB" -Atc "SELECT count(*) FROM $SCHEMA.phoenix_log")"
BEFORE="$(date +%s.%N)"
start_node; C="$NODE"; wait_ready "$C"
AFTER="$(date +%s.%N)"
echo "    $EVENTS log records replayed; ready after $(python3 -c "print(f'{$AFTER-$BEFORE:.1f}')") s"
