#!/usr/bin/env bash
# The OpenAPI contract checked from outside: schemathesis (PyPI) runs every check (its default; a
# `--checks` option would override the per-operation settings of the config file) against /openapi.json
# of a live, throwaway server, once with the admin secret (Admin routes, and /v1 with X-Tenant-Id) and
# once with a tenant JWT (/v1 routes), with a fixed seed and a bounded number of examples. Any finding
# fails. Usage: .ci/schemathesis.sh <phoenix binary>. Per-operation settings are in .ci/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="$1"
VENV="${PHOENIX_SCHEMATHESIS_VENV:-/var/tmp/phoenix-schemathesis-venv}"
VERSION="4.32.5"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

WORK="$(mktemp -d)"
SECRET="schemathesis-admin-secret-$RANDOM$RANDOM"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
PHOENIX_LISTEN="127.0.0.1:$PORT" PHOENIX_DATA_DIR="$WORK/data" PHOENIX_ADMIN_SECRET="$SECRET" \
  PHOENIX_LOG_FORMAT=json PHOENIX_LOG=info "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "$BASE/livez" >/dev/null && break; sleep 0.1; done

# A tenant, a leaderboard with one scored player, and a tenant JWT for that player.
curl -sf -o /dev/null -X POST "$BASE/tenants" -H "X-API-Key: $SECRET" -H 'Content-Type: application/json' \
  -d '{"tenant_id":"st","name":"Schemathesis"}'
make_board() {
  curl -sf -o /dev/null -X POST "$BASE/tenants/st/leaderboards" -H "X-API-Key: $SECRET" \
    -H 'Content-Type: application/json' \
    -d '{"leaderboard_id":"daily","name":"Daily","config":{"timeframe":{"type":"all_time"},"scoring":{"rules":[{"event_type":"*","points_expression":"1"}]}}}' || true
}
make_board
# A tenant JWT for player p1, signed with the tenant's secret as it is now (the admin run may rotate it).
mint_jwt() {
  local secret
  secret=$(curl -sf -X POST "$BASE/tenants/st/secret:rotate" -H "X-API-Key: $SECRET" \
    -H 'Content-Type: application/json' -d '{"grace_period_seconds":0}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["hmac_secret"])')
  python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "p1", "sub_type": "tenant", "sub_id": "st", "iat": now, "exp": now + 7200}).encode())
sig = b64(hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}
JWT=$(mint_jwt)
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -sf -o /dev/null -X POST "$BASE/v1/events" -H "Authorization: Bearer $JWT" -H 'Content-Type: application/json' \
  -d "{\"event_id\":\"seed-1\",\"type\":\"match\",\"actor\":{\"user_id\":\"p1\"},\"occurred_at\":\"$NOW\",\"attrs\":{}}"

COMMON=(--max-examples 30 --seed 42 --workers 1 --no-color --output-truncate false
        --exclude-path '/v1/leaderboards/{id}/ws'
        --exclude-path '/tenants/{tenant_id}/leaderboards/{leaderboard_id}/ws')
ST=("$VENV/bin/schemathesis" --config-file .ci/schemathesis.toml run "$BASE/openapi.json")
status=0
echo "-- schemathesis: Admin routes with the admin secret"
"${ST[@]}" "${COMMON[@]}" -H "Authorization: Bearer $SECRET" -H 'X-Tenant-Id: st' \
  --exclude-path-regex '^/v1/' || status=1
make_board
JWT=$(mint_jwt)
echo "-- schemathesis: /v1 routes with a tenant JWT"
"${ST[@]}" "${COMMON[@]}" -H "Authorization: Bearer $JWT" --include-path-regex '^/v1/' || status=1
if grep -E '"status":5[0-9][0-9]' "$WORK/server.log" >/dev/null; then
  echo "the server answered 5xx during the run:"; grep -E '"status":5[0-9][0-9]' "$WORK/server.log" | head
  status=1
fi
exit $status
