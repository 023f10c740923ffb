#!/usr/bin/env bash
# Ingest throughput with 10 active achievements against none, in one sitting (docs/benchmarks.md,
# "Achievements and webhooks"). Starts a release server on a throwaway data dir, makes tenant `none`
# (no achievement) and tenant `ten` (ten achievements, every one counting every event the bench
# sends, or a typical mix with MIX=typical), then alternates `phoenix bench ingest` runs on the two (batch mode): a warm-up round
# (WARMUP=0 skips it), then ROUNDS times, and prints the median ratio of those. After each
# run on `ten` it waits until every event is folded into progress (phoenix_achievement_queue_events
# back to 0) and reports how long that took, so a run cannot look fast by leaving work behind.
#
#   cargo build --release && ROUNDS=5 DURATION=10 scripts/bench-achievements.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${PHOENIX_BIN:-${CARGO_TARGET_DIR:-target}/release/phoenix}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10}"
USERS="${USERS:-100000}"
SECRET="bench-admin-secret-$RANDOM$RANDOM"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
WORK="$(mktemp -d)"
PHOENIX_LISTEN="127.0.0.1:$PORT" PHOENIX_DATA_DIR="$WORK/data" PHOENIX_ADMIN_SECRET="$SECRET" \
  PHOENIX_LOG=warn "$BIN" serve >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "$BASE/livez" >/dev/null && break; sleep 0.1; done

post() { curl -sf -X POST "$BASE$1" -H "Authorization: Bearer $SECRET" -H 'Content-Type: application/json' -d "$2"; }
tenant_secret() { post /tenants "{\"tenant_id\":\"$1\",\"name\":\"$1\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hmac_secret"])'; }
NONE_SECRET="$(tenant_secret none)"
TEN_SECRET="$(tenant_secret ten)"
steps='[{"threshold":10},{"threshold":100},{"threshold":1000,"rewards":[{"type":"badge","badge":"b"}]}]'
# MIX=all: every one of the ten counts every event the bench sends (the worst case). MIX=typical:
# four count its events (a count with a condition, a sum, a streak, a plain count) and six count other
# event types (purchases, logins, level-ups, ...), as a game's achievements spread over its events.
MIX="${MIX:-all}"
if [ "$MIX" = all ]; then
  metrics=(
    '{"event_type":"match.completed","aggregation":"count"}'
    '{"event_type":"match.completed","aggregation":"count","conditions":{"attrs.score":{"gte":0}}}'
    '{"event_type":"match.completed","aggregation":"count","conditions":{"attrs.score":{"lt":1000000000}}}'
    '{"event_type":"*","aggregation":"count"}'
    '{"event_type":"match.completed","aggregation":"sum","points_expression":"attrs.score"}'
    '{"event_type":"match.completed","aggregation":"sum","points_expression":"attrs.score * 2 + 1"}'
    '{"event_type":"match.completed","aggregation":"sum","points_expression":"1"}'
    '{"event_type":"match.completed","aggregation":"streak"}'
    '{"event_type":"match.completed","aggregation":"streak","timezone":"America/New_York"}'
    '{"event_type":"match.completed","aggregation":"streak","timezone":"Asia/Tokyo"}')
else
  metrics=(
    '{"event_type":"match.completed","aggregation":"count","conditions":{"attrs.score":{"gte":50}}}'
    '{"event_type":"match.completed","aggregation":"sum","points_expression":"attrs.score"}'
    '{"event_type":"match.completed","aggregation":"streak","timezone":"America/New_York"}'
    '{"event_type":"match.completed","aggregation":"count"}'
    '{"event_type":"shop.purchase","aggregation":"count"}'
    '{"event_type":"shop.purchase","aggregation":"sum","points_expression":"attrs.price"}'
    '{"event_type":"session.login","aggregation":"streak"}'
    '{"event_type":"player.level_up","aggregation":"count"}'
    '{"event_type":"quest.completed","aggregation":"count"}'
    '{"event_type":"social.friend_added","aggregation":"count"}')
fi
i=0
for metric in "${metrics[@]}"; do
  i=$((i + 1))
  post /tenants/ten/achievements \
    "{\"achievement_id\":\"a$i\",\"name\":\"A$i\",\"metric\":$metric,\"steps\":$steps}" >/dev/null
done

queue() { curl -sf "$BASE/metrics" | awk '/^phoenix_achievement_queue_events / {print $2}'; }
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/$PID/status"; }
run() {
  "$BIN" bench ingest --url "$BASE" --tenant "$1" --tenant-secret "$2" --mode batch \
    --duration "$DURATION" --users "$USERS" | awk '/^events\/s/ {print $2}'
}
echo "bench achievements: MIX=$MIX, $ROUNDS rounds of $DURATION s per side, batch mode, $USERS players, server pid $PID"
printf '%-6s %-12s %-12s %-10s %s\n' round none ten ratio "catch-up after ten"
ratios=()
for r in $(seq 0 "$ROUNDS"); do
  if [ "$r" = 0 ] && [ "${WARMUP:-1}" = 0 ]; then continue; fi
  a="$(run none "$NONE_SECRET")"
  b="$(run ten "$TEN_SECRET")"
  start=$(date +%s.%N)
  while [ "$(queue)" != "0" ]; do sleep 0.05; done
  sleep 0.3
  caught=$(python3 -c "print(f'{$(date +%s.%N) - $start:.2f} s')")
  ratio="$(python3 -c "print(f'{$b / $a:.2f}')")"
  # Round 0 warms up: every player's row is loaded, and the first steps (10 events) are completed by
  # all 100 000 players at once, a storm of completions no game sees in steady play. Reported, not
  # counted in the median.
  label="$r"; [ "$r" = 0 ] && label="warm-up" || ratios+=("$ratio")
  printf '%-6s %-12s %-12s %-10s %s\n' "$label" "$a" "$b" "$ratio" "$caught"
done
echo "median ratio over rounds 1-$ROUNDS: $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')"
echo "server RSS $(rss); ledger.db $(du -m "$WORK/data/ledger.db" | cut -f1) MiB"
curl -sf "$BASE/tenants/ten/achievements/a1" -H "Authorization: Bearer $SECRET" \
  | python3 -c 'import json,sys; a=json.load(sys.stdin); print("completions of a1:", a["completions"])'
