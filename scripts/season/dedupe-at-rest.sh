#!/bin/bash
# dedupe-at-rest.sh NAME SERVER-BIN [CLIENT-BIN]: idempotency memory per event. 100 players; RSS at rest
# after 1.3M events and after 2M more; prints the slope in bytes per event.
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
$CLIENT bench ingest --url http://127.0.0.1:$PORT --tenant pp --tenant-secret "$SECRET" --mode batch --concurrency 2 --events 1300000 --warmup 0 --users 100 > /tmp/pp-a-$NAME.txt 2>&1
sleep 8; R1=$(rss)
$CLIENT bench ingest --url http://127.0.0.1:$PORT --tenant pp --tenant-secret "$SECRET" --mode batch --concurrency 2 --events 2000000 --warmup 0 --users 100 > /tmp/pp-b-$NAME.txt 2>&1
sleep 8; R2=$(rss)
ACC=$(curl -s http://127.0.0.1:$PORT/metrics | grep '^phoenix_events_accepted_total' | awk '{print $2}')
kill $PID; wait $PID 2>/dev/null; rm -rf $DIR
python3 -c "print('$NAME: start $R0 KiB, 1.3M events $R1 KiB, 3.3M events $R2 KiB, accepted $ACC; slope', round(($R2-$R1)*1024/2e6,2), 'B/event')"
