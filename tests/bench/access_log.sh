#!/bin/sh
# tests/bench/access_log.sh SRCDIR BUILDDIR -- what the access log costs:
# wrk through nginx on /log (a deferred write) and /hello, with
# `access_log` off and on, interleaved (off, on, off, on, ...) so both see
# the same machine state; prints req/s per run and the median on/off
# ratio.  nginx's own access log is off in both.  Run on purpose, never by
# make check.  Knobs: REPS (3), DURATION (10s), CONNS (32), THREADS (2).
# Bounded: every wrk run has a fixed duration; the EXIT trap stops what
# this script started, by PID.
set -u
SRC=$(cd "$1" && pwd) BUILD=$(cd "$2" && pwd)
REPS=${REPS:-3} DURATION=${DURATION:-10s} CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
WORK=${BENCH_WORK:-$BUILD/bench-access}
. "$SRC/tools/stack.sh"
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 77; }
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'stack_stop' EXIT INT TERM

run_mode() { # run_mode off|on ENDPOINT: prints req/s
    conf=$WORK/$1.conf
    if [ "$1" = on ]; then
        sed "s|^    access_log off;|    access_log $WORK/access.log;|" \
            "$SRC/conf/waituntil.conf" > "$conf"
        grep -q "^    access_log $WORK/access.log;" "$conf" ||
            { echo "conf/waituntil.conf has no 'access_log off;' line" >&2; exit 1; }
    else
        cp "$SRC/conf/waituntil.conf" "$conf"
    fi
    port=$(stack_free_port)
    STACK_ACCESS_LOG=off STACK_APP_ARGS='' stack_start "$SRC" "$BUILD" \
        "$WORK/prefix-$1" "$port" "$WORK/db/wu.db" "$conf" >/dev/null 2>&1 ||
        { echo "stack did not start" >&2; exit 1; }
    wrk -t "$THREADS" -c "$CONNS" -d 2s "http://127.0.0.1:$port$2" >/dev/null 2>&1
    wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" "http://127.0.0.1:$port$2" 2>/dev/null |
        sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p'
    stack_stop
}

for ep in /log /hello; do
    ratios=
    r=1
    while [ "$r" -le "$REPS" ]; do
        off=$(run_mode off "$ep")
        on=$(run_mode on "$ep")
        ratio=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }')
        echo "$ep rep $r: off $off req/s, on $on req/s, on/off $ratio"
        ratios="$ratios $ratio"
        r=$((r + 1))
    done
    med=$(printf '%s\n' $ratios | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    echo "$ep median on/off: $med (access log lines: $(wc -l < "$WORK/access.log" 2>/dev/null || echo 0))"
done
