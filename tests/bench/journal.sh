#!/bin/sh
# tests/bench/journal.sh SRCDIR BUILDDIR -- `make bench-journal`: what
# each durability level costs.  wrk through nginx on /log (one deferred
# write per request) with the shipped conf and
#   off      journal off
#   write    journal write (the default: survives a crash of the process)
#   fsync    journal fsync (survives power loss: a group fdatasync before
#            the answers)
#   interval journal fsync-interval (100ms: a background fdatasync)
#   full     journal off, database.synchronous full (SQLite's own fsync
#            at every group commit)
# and /hello (no write) as the baseline, all interleaved per rep (hello,
# off, write, fsync, full, hello, ...) so each rep sees one machine
# state.  Prints req/s and p99 per run; for fsync, the fdatasyncs per
# second and requests per fdatasync (from /_status); the CPU time per
# request of waituntil, and of waituntil plus nginx (from /proc: on a
# shared machine less noisy than req/s, and on a CPU-bound box its
# inverse ratio predicts the req/s ratio); then per level the median of
# the per-rep ratios to /hello.  Each run starts from an empty
# database.  Run on purpose, never by make check.
# Knobs: REPS (3), DURATION (10s), CONNS (32), THREADS (2), LEVELS,
# BATCH_DELAY, BATCH_DELAY_MAX (the pool's batch_delay and batch_delay_max
# in every run; shipped 2ms and 20ms: BATCH_DELAY_MAX=2ms is a fixed window).
# Bounded: every wrk run has a fixed duration; the EXIT trap stops what
# this script started, by PID.
set -u
SRC=$(cd "$1" && pwd) BUILD=$(cd "$2" && pwd)
REPS=${REPS:-3} DURATION=${DURATION:-10s} CONNS=${CONNS:-32}
THREADS=${THREADS:-2} LEVELS=${LEVELS:-off write fsync interval full}
WORK=${BENCH_WORK:-$BUILD/bench-journal}
. "$SRC/tools/stack.sh"
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 77; }
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'stack_stop' EXIT INT TERM

# conf_for LEVEL: the shipped conf with that level's two lines changed.
conf_for() {
    j=write s=normal
    case $1 in off) j=off ;; fsync) j=fsync ;; interval) j=fsync-interval ;;
        full) j=off s=full ;; hello) ;; esac
    sed -e "s|^\(    journal\) write;|\1 $j;|" \
        -e "s|^\(    synchronous\) normal;|\1 $s;|" \
        -e "s|^\(    batch_delay\) 2ms;|\1 ${BATCH_DELAY:-2ms};|" \
        -e "s|^\(    batch_delay_max\) 20ms;|\1 ${BATCH_DELAY_MAX:-20ms};|" \
        "$SRC/conf/waituntil.conf" > "$WORK/$1.conf"
    [ "$(grep -c -e "^    journal $j;" -e "^    synchronous $s;" "$WORK/$1.conf")" = 2 ] ||
        { echo "conf/waituntil.conf: no 'journal write;' or 'synchronous normal;' line" >&2; exit 1; }
}

# cpu_ticks PID...: user+system clock ticks of these processes (every
# thread), from /proc.
cpu_ticks() {
    for pid in "$@"; do cat "/proc/$pid/stat" 2>/dev/null; done |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

status_num() { # status_num PORT KEY: a number from /_status (JSON)
    curl -s "http://127.0.0.1:$1/_status" | tr ',{}' '\n\n\n' |
        sed -n "s/^ *\"$2\": *\([0-9.]*\).*/\1/p" | head -n 1
}

run() { # run LEVEL ENDPOINT REP: prints "req/s p99_ms fsyncs_per_s
    # req_per_fsync cpu_us_waituntil cpu_us_with_nginx commits_per_s window_ms"
    conf_for "$1"
    rm -rf "$WORK/db"
    port=$(stack_free_port)
    STACK_ACCESS_LOG=off STACK_APP_ARGS='' stack_start "$SRC" "$BUILD" \
        "$WORK/prefix" "$port" "$WORK/db/wu.db" "$WORK/$1.conf" >/dev/null 2>&1 ||
        { echo "stack did not start ($1)" >&2; exit 1; }
    wrk -t "$THREADS" -c "$CONNS" -d 2s "http://127.0.0.1:$port$2" >/dev/null 2>&1
    f0=$(status_num "$port" journal_fsyncs) m0=$(status_num "$port" commits)
    pids="$STACK_APP_PID $STACK_NGINX_PID $(pgrep -P "$STACK_NGINX_PID" | tr '\n' ' ')"
    a0=$(cpu_ticks "$STACK_APP_PID") c0=$(cpu_ticks $pids)
    wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency \
        "http://127.0.0.1:$port$2" > "$WORK/wrk.$1.$3" 2>/dev/null
    a1=$(cpu_ticks "$STACK_APP_PID") c1=$(cpu_ticks $pids)
    f1=$(status_num "$port" journal_fsyncs) m1=$(status_num "$port" commits)
    win=$(status_num "$port" batch_window_us)
    stack_stop
    awk -v f0="${f0:-0}" -v f1="${f1:-0}" -v d="$DURATION" \
        -v app=$((a1 - a0)) -v all=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
        -v commits=$((${m1:-0} - ${m0:-0})) -v win="${win:-0}" '
        /^Requests\/sec:/ { rps = $2 }
        /^ *99%/ { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u)
                   p99 = (u == "us") ? v / 1000 : ((u == "s") ? v * 1000 : v) }
        /requests in/ { n = $1 }
        END { secs = d; sub(/s$/, "", secs); f = f1 - f0
              printf "%s %.2f %.0f %s %.1f %.1f %.0f %.1f\n", rps, p99,
                     f / secs, ((f > 0) ? sprintf("%.1f", n / f) : "-"),
                     app * 1e6 / hz / n, all * 1e6 / hz / n,
                     commits / secs, win / 1000 }' "$WORK/wrk.$1.$3"
}

r=1
while [ "$r" -le "$REPS" ]; do
    set -- $(run hello /hello "$r")
    hello=$1 hello_cpu=$6
    echo "rep $r: /hello $hello req/s p99 $2 ms cpu_us/req waituntil $5 with_nginx $6"
    for lv in $LEVELS; do
        set -- $(run "$lv" /log "$r")
        ratio=$(awk -v a="$1" -v b="$hello" 'BEGIN { printf "%.3f", a / b }')
        cratio=$(awk -v a="$6" -v b="$hello_cpu" 'BEGIN { printf "%.3f", b / a }')
        echo "rep $r: /log journal=$lv $1 req/s p99 $2 ms fsyncs/s $3 requests/fsync $4 commits/s $7 window_ms $8 cpu_us/req waituntil $5 with_nginx $6 ratio_to_hello $ratio cpu_ratio $cratio"
        echo "$lv $ratio $cratio" >> "$WORK/ratios"
    done
    r=$((r + 1))
done
for lv in $LEVELS; do
    med=$(awk -v l="$lv" '$1 == l { print $2 }' "$WORK/ratios" | sort -n |
        awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    cmed=$(awk -v l="$lv" '$1 == l { print $3 }' "$WORK/ratios" | sort -n |
        awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    echo "median /log ÷ /hello, $lv: $med (CPU per request, /hello ÷ /log: $cmed)"
done
