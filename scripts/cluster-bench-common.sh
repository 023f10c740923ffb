# Shared by the cluster benchmarks (sourced, not run): the binary, the machine's PostgreSQL and Redis
# (PHOENIX_BENCH_DATABASE_URL, PHOENIX_BENCH_REDIS_URL), a schema of the run's own (SCHEMA_PREFIX),
# a work dir, and the clean-up of both and of every process in PIDS when the script exits.
BIN="${PHOENIX_BIN:-${CARGO_TARGET_DIR:-target}/release/phoenix}"
DB="${PHOENIX_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${PHOENIX_BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
SECRET="bench-admin-secret-$RANDOM$RANDOM"
KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
SCHEMA="${SCHEMA_PREFIX:-phx_bench}_$(date +%s)_$RANDOM"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  psql "$DB" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$DB" -qc "CREATE SCHEMA $SCHEMA"
CLUSTER_URL="$DB?options[search_path]=$SCHEMA"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
