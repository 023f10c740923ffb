#!/bin/bash
# players-at-rest.sh NAME SERVER-BIN [CLIENT-BIN]: memory per player. One tenant, one all-time board;
# 0.5M new players (one event each), RSS at rest, then 1.5M more, RSS at rest; prints the slope.
# CLIENT-BIN needs `bench ingest --new-player-per-event` (default: SERVER-BIN).
NAME=$1; BIN=$2; PORT=18084; CLIENT=${3:-$BIN}
ADMIN=bench-admin-secret-0123456789
DIR=/var/tmp/phx-pp-$NAME; rm -rf $DIR
PHOENIX_ADMIN_SECRET=$ADMIN PHOENIX_DATA_DIR=$DIR PHOENIX_LISTEN=127.0.0.1:$PORT PHOENIX_LOG=warn PHOENIX_TENANT_EVENTS_PER_SECOND=0 $BIN serve > /tmp/pp-server-$NAME.log 2>&1 &
PID=$!
sleep 2
SECRET=$(curl -s -X POST http://127.0.0.1:$PORT/tenants -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"tenant_id":"pp","name":"pp"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["hmac_secret"])')
curl -s -o /dev/null -X POST http://127.0.0.1:$PORT/tenants/pp/leaderboards -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"leaderboard_id":"all","name":"all","config":{"timeframe":{"type":"all_time"},"scoring":{"rules":[{"event_type":"match.*","points_expression":"attrs.score"}]}}}'
rss() { grep VmRSS /proc/$PID/status | awk '{print $2}'; }
R0=$(rss)
$CLIENT bench ingest --url http://127.0.0.1:$PORT --tenant pp --tenant-secret "$SECRET" --mode batch --concurrency 2 --events 500000 --warmup 0 --new-player-per-event --first-user 0 > /tmp/pp-a-$NAME.txt 2>&1
sleep 8; R1=$(rss)
$CLIENT bench ingest --url http://127.0.0.1:$PORT --tenant pp --tenant-secret "$SECRET" --mode batch --concurrency 2 --events 1500000 --warmup 0 --new-player-per-event --first-user 500000 > /tmp/pp-b-$NAME.txt 2>&1
sleep 8; R2=$(rss)
ACC=$(curl -s http://127.0.0.1:$PORT/metrics | grep '^phoenix_events_accepted_total' | awk '{print $2}')
kill $PID; wait $PID 2>/dev/null; rm -rf $DIR
python3 -c "print('$NAME: start $R0 KiB, 0.5M players $R1 KiB, 2M players $R2 KiB, accepted $ACC; slope', round(($R2-$R1)*1024/1.5e6,1), 'B/player')"
