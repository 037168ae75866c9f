#!/bin/sh
# tests/bench/profile.sh [SRCDIR [BUILDDIR]] -- CPU instructions per
# request of waituntil, per endpoint and per thread kind, under
# `valgrind --tool=callgrind`.  Unlike req/s on a shared 2-core machine,
# instruction counts do not depend on what else runs, so they show what a
# change to the request path or the pool costs or saves.
#
# DESIGN
#   For each endpoint the app (the -O2 build run.sh makes, $BENCH_BUILD)
#   starts under callgrind with one output file per thread, serves N
#   requests (curl, 8 in parallel, every answer checked), drains and stops
#   on SIGTERM.  Threads are classed by the function they run: request
#   threads (lib/web's thread_main), pool workers (lib/defer's
#   worker_main), the rest (main: conf, migrations, signals).  A run with
#   no requests is subtracted, so Ir/request excludes start and stop.
#   Wall time is not measured: callgrind serialises threads.
#
# Knobs: N (2000), ENDPOINTS ("/hello /log /log_sync"), BENCH_BUILD,
# BENCH_WORK (BUILDDIR/bench-run).  Output: BENCH_WORK/profile/, summary on
# stdout (also written to BENCH_WORK/profile/summary.txt).
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "${1:-$here/../..}" && pwd)
BUILD=${2:-$SRC/build}
[ -d "$BUILD" ] && BUILD=$(cd "$BUILD" && pwd)
N=${N:-2000}
ENDPOINTS=${ENDPOINTS:-/hello /log /log_sync}
BENCH_BUILD=${BENCH_BUILD:-$BUILD/bench-O2}
BENCH_WORK=${BENCH_WORK:-$BUILD/bench-run}
OUT=$BENCH_WORK/profile

. "$SRC/tools/stack.sh"
for t in valgrind callgrind_annotate curl; do
    command -v $t >/dev/null 2>&1 || { echo "profile: $t is not installed (Debian: valgrind, curl)" >&2; exit 1; }
done
[ -x "$BENCH_BUILD/app/waituntil" ] || { echo "profile: no $BENCH_BUILD/app/waituntil; run tests/bench/run.sh first (or set BENCH_BUILD)" >&2; exit 1; }
trap 'stack_stop 2>/dev/null' EXIT
trap 'exit 130' INT TERM HUP
rm -rf "$OUT"
mkdir -p "$OUT"

# one NAME ENDPOINT COUNT: a callgrind run; sets IR_REQ, IR_WRK (Ir of the
# request threads and of the pool workers).  Runs in this shell, so a
# failure exits through the trap that stops the stack.
one() {
    d=$OUT/$1
    mkdir -p "$d"
    { cat "$SRC/conf/waituntil.conf"
      printf '\nroute any /log_sync {\n    handler log_sync;\n}\n'
    } > "$d/waituntil.conf"
    STACK_ACCESS_LOG=off STACK_APP_ARGS='' \
    STACK_APP_WRAPPER="valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$d/cg.out" \
        stack_start "$SRC" "$BENCH_BUILD" "$d/prefix" "$(stack_free_port)" "$d/db/w.db" \
        "$d/waituntil.conf" || { echo "profile: stack did not start" >&2; exit 1; }
    if [ "$3" -gt 0 ]; then
        curl -s --no-progress-meter --parallel --parallel-max 8 -o /dev/null \
            -w '%{http_code}\n' "http://127.0.0.1:$STACK_PORT$2?n=[1-$3]" > "$d/codes"
        ok=$(grep -c '^200$' "$d/codes")
        [ "$ok" -eq "$3" ] || { echo "profile: $2: only $ok of $3 answered 200" >&2; exit 1; }
    fi
    stack_stop
    [ "${STACK_APP_RC:-1}" -eq 0 ] || { echo "profile: app exited ${STACK_APP_RC:-?}" >&2; exit 1; }
    req=0 wrk=0
    for f in "$d"/cg.out-*; do
        ir=$(sed -n 's/^summary: *//p;s/^totals: *//p' "$f" | head -n 1)
        if grep -q 'worker_main' "$f"; then wrk=$((wrk + ir))
        elif grep -q 'thread_main' "$f"; then req=$((req + ir))
        fi
    done
    IR_REQ=$req IR_WRK=$wrk
}

one idle /hello 0
idle_req=$IR_REQ idle_wrk=$IR_WRK
{
    echo "waituntil instructions (Ir) per request, callgrind, N=$N per endpoint, $(sed -n 's/^CFLAGS = //p' "$BENCH_BUILD/Makefile" 2>/dev/null)"
    printf '%-10s %14s %14s %14s\n' endpoint request-thr pool-workers total
} > "$OUT/summary.txt"
for e in $ENDPOINTS; do
    name=$(echo "$e" | tr -d /)
    one "$name" "$e" "$N"
    awk -v e="$e" -v n="$N" -v r="$IR_REQ" -v w="$IR_WRK" -v r0="$idle_req" -v w0="$idle_wrk" 'BEGIN {
        printf "%-10s %14.0f %14.0f %14.0f\n", e, (r - r0) / n, (w - w0) / n, (r - r0 + w - w0) / n }' >> "$OUT/summary.txt"
done
# Where /log's instructions go, inclusive, per thread kind (first file of each).
for e in $ENDPOINTS; do
    [ "$e" = /log ] || continue
    for f in "$OUT"/log/cg.out-*; do
        if grep -q 'worker_main' "$f"; then k=worker; elif grep -q 'thread_main' "$f"; then k=request; else continue; fi
        [ -f "$OUT/log-$k.top" ] && continue
        callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
            sed -e 's|  */[^ ]*/\(lib/[^:]*\):|  \1:|' -e 's| \[[^]]*\]$||' |
            awk '/^-+$/ { s++ } s >= 4 && /%\)/ && !seen[$0]++' | sed -n '1,30p' > "$OUT/log-$k.top"
    done
done
{
    for k in request worker; do
        [ -f "$OUT/log-$k.top" ] || continue
        echo
        echo "/log, one $k thread, inclusive Ir by function (top 30):"
        cat "$OUT/log-$k.top"
    done
} >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
