#!/bin/bash
# slope-run.sh BIN NAME EVENTS INGEST-ARGS...: a fresh server, sampler.sh beside it, one
# `bench ingest --mode batch` run; then `python3 slope.py /tmp/slope-NAME.txt LO HI` fits the RSS slope.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; NAME=$2; EVENTS=$3; shift 3
PORT=18082
DIR=/var/tmp/phx-slope-$NAME; rm -rf $DIR
export PHOENIX_ADMIN_SECRET=bench-admin-secret-0123456789
PHOENIX_DATA_DIR=$DIR PHOENIX_LISTEN=127.0.0.1:$PORT PHOENIX_LOG=warn PHOENIX_TENANT_EVENTS_PER_SECOND=0 $BIN serve > /tmp/slope-server-$NAME.log 2>&1 &
PID=$!
sleep 2
$HERE/sampler.sh $PID $PORT /tmp/slope-$NAME.txt &
$BIN bench ingest --url http://127.0.0.1:$PORT --mode batch --concurrency 2 --events $EVENTS --warmup 0 "$@" > /tmp/slope-ingest-$NAME.txt 2>&1
sleep 2
kill $PID; wait $PID 2>/dev/null
sleep 0.5
grep -E "events/s|accepted" /tmp/slope-ingest-$NAME.txt | head -3
rm -rf $DIR
