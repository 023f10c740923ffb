#!/bin/bash
# redis-players.sh: Redis's memory per sorted-set member, the same way as players-at-rest.sh: ZADD of
# u0..u499999, VmRSS of redis-server at rest, then u500000..u1999999; prints the slope. Deletes its key.
KEY=phx-bench-players
redis-cli del $KEY > /dev/null
RPID=$(redis-cli info server | grep process_id | cut -d: -f2 | tr -d '\r')
rss() { grep VmRSS /proc/$RPID/status | awk '{print $2}'; }
gen() { python3 -c "
import sys
w=sys.stdout.write
for i in range($1,$2):
    m='u%d'%i; s=str(1+i%100)
    w('*4\r\n\$4\r\nZADD\r\n\$%d\r\n%s\r\n\$%d\r\n%s\r\n\$%d\r\n%s\r\n'%(len('$KEY'),'$KEY',len(s),s,len(m),m))
"; }
R0=$(rss)
gen 0 500000 | redis-cli --pipe > /dev/null
sleep 3; R1=$(rss); U1=$(redis-cli info memory | grep '^used_memory:' | cut -d: -f2 | tr -d '\r')
gen 500000 2000000 | redis-cli --pipe > /dev/null
sleep 3; R2=$(rss); U2=$(redis-cli info memory | grep '^used_memory:' | cut -d: -f2 | tr -d '\r')
N=$(redis-cli zcard $KEY)
redis-cli del $KEY > /dev/null
python3 -c "print('redis: start $R0 KiB, 0.5M $R1 KiB, 2M $R2 KiB, zcard $N; RSS slope', round(($R2-$R1)*1024/1.5e6,1), 'B/player; used_memory slope', round(($U2-$U1)/1.5e6,1))"
