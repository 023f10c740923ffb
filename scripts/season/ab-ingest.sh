#!/bin/bash
# ab-ingest.sh NAME SERVER-BIN [CLIENT-BIN]: a fresh `phoenix serve` (SERVER-BIN) on an empty data dir,
# 20 s of `phoenix bench ingest --mode batch` from CLIENT-BIN (default: SERVER-BIN); prints events/s.
# Alternate two builds to compare them in one sitting (docs/benchmarks.md, "Runs for a season").
NAME=$1; BIN=$2; PORT=18083
DIR=/var/tmp/phx-ab-$NAME; rm -rf $DIR
export PHOENIX_ADMIN_SECRET=bench-admin-secret-0123456789
PHOENIX_DATA_DIR=$DIR PHOENIX_LISTEN=127.0.0.1:$PORT PHOENIX_LOG=warn PHOENIX_TENANT_EVENTS_PER_SECOND=0 $BIN serve > /tmp/ab-server-$NAME.log 2>&1 &
PID=$!
sleep 2
${3:-$BIN} bench ingest --url http://127.0.0.1:$PORT --mode batch --duration 20 --warmup 2 > /tmp/ab-$NAME.txt 2>&1
kill $PID; wait $PID 2>/dev/null
rm -rf $DIR
echo "$NAME: $(grep -E 'events/s' /tmp/ab-$NAME.txt | head -2 | tr '\n' ' ')"
