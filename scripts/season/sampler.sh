#!/bin/bash
# sampler.sh PID PORT OUT: every 100 ms, appends "accepted_events rss_kib" of the server to OUT.
PID=$1; PORT=$2; OUT=$3; : > $OUT
while kill -0 $PID 2>/dev/null; do
  N=$(curl -s http://127.0.0.1:$PORT/metrics | grep '^phoenix_events_accepted_total' | awk '{print $2}')
  R=$(grep VmRSS /proc/$PID/status 2>/dev/null | awk '{print $2}')
  [ -n "$N" ] && echo "$N $R" >> $OUT
  sleep 0.1
done
