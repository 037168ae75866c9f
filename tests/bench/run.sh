#!/bin/sh
# tests/bench/run.sh [SRCDIR [BUILDDIR]] -- `make bench`: waituntil against
# a bare libfcgi loop, PHP-FPM 8.2 and workers-qb on workerd, all behind
# (or, for workerd, like) the same loopback setup, measured with wrk.
#
# DESIGN
#   Build: an optimised out-of-tree build of the app in $BENCH_BUILD
#   (default BUILDDIR/bench-O2, CFLAGS "-g -O2": -g only adds symbols for
#   perf) so a sanitizer or -O0 main build never gets measured; bare_fcgi.c
#   is compiled there too.  Every server then starts from a private prefix
#   in $BENCH_WORK on 127.0.0.1 only, and all of them stay up for the whole
#   run, so the repetitions can be interleaved: rep 1 of every
#   system/endpoint/concurrency, then rep 2, ...  Ratios are taken per rep
#   (runs minutes apart on the same machine state), then the median.
#
#   Accounting: every wrk run (warm-ups included) adds its 2xx count
#   (requests - non-2xx) to the total its endpoint promised, and its
#   connection count to the slack: wrk stops with up to one request per
#   connection in flight, which the server still answers and writes but
#   wrk never counts.  So for each write endpoint, after the servers have
#   drained and stopped (SIGTERM; the row count is read with sqlite3 after
#   the process exited), 0 <= rows - promised <= slack must hold.  The exact
#   check then sends a fixed number of requests with curl, every answer
#   counted, and needs rows added == 200 answers == N.  Rows are counted per
#   path, so /log (via the pool) and /log_sync (inline) never mix.
#
#   Bounds: every wrk run has a fixed duration, every wait loop a maximum
#   number of 0.1 s steps, and an EXIT trap stops every process this script
#   started, by PID.  Nothing listens beyond 127.0.0.1.
#
# Knobs (environment): REPS (3), DURATION (10s), WARMUP (2s), CONNS
# ("32 128"), THREADS (wrk threads, 2), WRK_TIMEOUT (10s), LOSS_N (20000;
# LOSS_N_SLOW (5000) for PHP and workerd), SYSTEMS ("wu bare php cf"),
# BENCH_BUILD, BENCH_WORK (BUILDDIR/bench-run), BENCH_OUT (where
# RESULTS.md, results.tsv and results.png go: SRCDIR/tests/bench),
# PERF=1 (record `perf` of the app during one extra /log run), PROFILE=1
# (after the run, instructions per request under callgrind: profile.sh).
set -u

here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "${1:-$here/../..}" && pwd)
BUILD=${2:-$SRC/build}
[ -d "$BUILD" ] && BUILD=$(cd "$BUILD" && pwd)
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32 128}
THREADS=${THREADS:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
LOSS_N=${LOSS_N:-20000}
LOSS_N_SLOW=${LOSS_N_SLOW:-5000}
SYSTEMS=${SYSTEMS:-wu bare php cf}
BENCH_BUILD=${BENCH_BUILD:-$BUILD/bench-O2}
BENCH_WORK=${BENCH_WORK:-$BUILD/bench-run}
BENCH_OUT=${BENCH_OUT:-$SRC/tests/bench}
PERF=${PERF:-0}
PROFILE=${PROFILE:-0}
MAX_WAIT_STEPS=300 # 0.1 s steps: 30 s for any start or drain

. "$SRC/tools/stack.sh"

say() { printf '%s\n' "bench: $*" >&2; }
die() { say "$*"; exit 1; }
has() { command -v "$1" >/dev/null 2>&1; }

# ---- processes we start, stopped on every exit ----------------------------
BARE_PID='' BARE_NGINX_PID='' PHP_PID='' PHP_NGINX_PID='' CF_PID='' SAMPLER_PID=''

stop_pid() { # stop_pid PID SIGNAL: signal it, wait (bounded), then KILL
    [ -n "$1" ] || return 0
    kill -"$2" "$1" 2>/dev/null || return 0
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $MAX_WAIT_STEPS ]; do
        i=$((i + 1)); sleep 0.1
    done
    kill -0 "$1" 2>/dev/null && { say "pid $1 ignored SIG$2; killing"; kill -KILL "$1" 2>/dev/null; }
    wait "$1" 2>/dev/null
    return 0
}

cleanup() {
    stop_pid "$SAMPLER_PID" TERM
    stack_stop 2>/dev/null
    stop_pid "$BARE_PID" TERM; stop_pid "$BARE_NGINX_PID" QUIT
    stop_pid "$PHP_NGINX_PID" QUIT; stop_pid "$PHP_PID" QUIT
    stop_pid "$CF_PID" TERM
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---- tools ----------------------------------------------------------------
for t in wrk curl sqlite3 awk; do has $t || die "$t is not installed (Debian: apt-get install $t)"; done
NGINX=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || die "nginx is not installed (Debian: apt-get install nginx-light)"
CC=${CC:-cc}
PHP_FPM=${PHP_FPM:-$(command -v php-fpm8.2 || command -v php-fpm || echo /usr/sbin/php-fpm8.2)}
JOBS=$(nproc 2>/dev/null || echo 2)

mkdir -p "$BENCH_WORK" "$BENCH_OUT" || die "cannot create $BENCH_WORK"
rm -rf "$BENCH_WORK/raw" "$BENCH_WORK/wu" "$BENCH_WORK/bare" "$BENCH_WORK/php" \
    "$BENCH_WORK/cf" "$BENCH_WORK/wu-stopped.txt" "$BENCH_WORK/wu-status.json" \
    "$BENCH_WORK/perf-top.txt" "$BENCH_WORK/perf.data" "$BENCH_WORK/chart.dat" \
    "$BENCH_WORK/profile"
mkdir -p "$BENCH_WORK/raw"
RUNS=$BENCH_WORK/runs.tsv      # one line per measured run
CHECKS=$BENCH_WORK/checks.tsv  # one line per exact/final check
META=$BENCH_WORK/meta.txt      # machine, versions, commands
ACCT=$BENCH_WORK/acct.tsv      # promised 2xx and slack per system/path
SKIPS=$BENCH_WORK/skipped.txt
: > "$CHECKS"; : > "$ACCT"; : > "$SKIPS"
printf 'system\tendpoint\tconns\trep\trps\tp50_ms\tp99_ms\trequests\tnon2xx\tsock_errs\trows_added\tok2xx\textra_rows\tdrain_s\trss_max_kb\tqueue_hwm\ttasks_rejected\tresp_503\ttasks_per_commit\n' > "$RUNS"

skip() { # skip SYSTEM REASON
    say "skipping $1: $2"
    printf '%s\t%s\n' "$1" "$2" >> "$SKIPS"
    SYSTEMS=$(printf '%s\n' $SYSTEMS | grep -vx "$1" | tr '\n' ' ')
}
want() { printf '%s\n' $SYSTEMS | grep -qx "$1"; }

# ---- build ----------------------------------------------------------------
build_app() {
    if [ -f "$SRC/config.status" ]; then
        # automake refuses a second tree next to an in-tree build: measure
        # that build if it is optimised and free of sanitizers.
        flags=$(sed -n 's/^CFLAGS = //p' "$SRC/Makefile" 2>/dev/null)
        case $flags in *-fsanitize*|*-O0*) die "in-tree build has CFLAGS '$flags'; reconfigure it with -O2 or build out of tree" ;; esac
        BENCH_BUILD=$SRC
        make -s -C "$SRC" -j"$JOBS" app/waituntil || die "make app/waituntil failed"
        return
    fi
    mkdir -p "$BENCH_BUILD" || die "cannot create $BENCH_BUILD"
    if [ ! -f "$BENCH_BUILD/Makefile" ]; then
        [ -x "$SRC/configure" ] || (cd "$SRC" && autoreconf -fi) || die "autoreconf failed"
        say "configuring $BENCH_BUILD (CFLAGS='-g -O2')"
        (cd "$BENCH_BUILD" && "$SRC/configure" -q --disable-tests --disable-shared \
            CC="$CC" CFLAGS="-g -O2") || die "configure failed in $BENCH_BUILD"
    fi
    make -s -C "$BENCH_BUILD" -j"$JOBS" app/waituntil || die "make app/waituntil failed"
}
build_app
APP=$BENCH_BUILD/app/waituntil
# The tree that was built (others may commit while the run goes on).
GIT_REV="$(cd "$SRC" && git rev-parse --short HEAD 2>/dev/null)$(cd "$SRC" && git diff --quiet HEAD -- lib app conf 2>/dev/null || echo ' + uncommitted changes in lib/app/conf') (at build time, $(date -u '+%H:%M:%S') UTC)"
BARE=$BENCH_WORK/bare_fcgi
$CC -std=gnu11 -O2 -g -Wall -Wextra -Werror -o "$BARE" "$here/bare_fcgi.c" -lfcgi -pthread ||
    die "cannot build bare_fcgi.c"

# ---- workerd (npm) ----------------------------------------------------------
CFDIR=$here/workerd
setup_cf() {
    has node || { skip cf "node is not installed (Debian/NodeSource: nodejs >= 18)"; return; }
    has npm || { skip cf "npm is not installed"; return; }
    if [ ! -d "$CFDIR/node_modules/miniflare" ] || [ ! -d "$CFDIR/node_modules/workers-qb" ]; then
        say "npm install in $CFDIR"
        (cd "$CFDIR" && timeout 600 npm install --no-audit --no-fund --no-package-lock) \
            > "$BENCH_WORK/npm.log" 2>&1 ||
            { skip cf "npm install failed (see $BENCH_WORK/npm.log: $(tail -n 1 "$BENCH_WORK/npm.log"))"; return; }
    fi
    node "$CFDIR/build.mjs" > "$BENCH_WORK/esbuild.log" 2>&1 ||
        { skip cf "esbuild failed: $(tail -n 1 "$BENCH_WORK/esbuild.log")"; return; }
}
want cf && setup_cf
want php && { [ -x "$PHP_FPM" ] || skip php "php-fpm8.2 is not installed (Debian: php8.2-fpm php8.2-sqlite3; see RESULTS.md)"; }

# ---- start ------------------------------------------------------------------
SCHEMA='CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY, method TEXT NOT NULL, path TEXT NOT NULL, timestamp TEXT NOT NULL);'

# nginx_start NAME SOCKET LOCATIONS-FILE: nginx/dev.conf.in (the shape
# `make run` uses) in front of SOCKET, access log off; sets NGINX_PID, PORT.
nginx_start() {
    p=$BENCH_WORK/$1
    mkdir -p "$p/logs" "$p/tmp" "$p/conf"
    cp "$SRC/nginx/fastcgi.conf" "$p/conf/"
    sed -e "s|@PHPDIR@|$here/php/|g" "$3" > "$p/conf/waituntil-locations.conf"
    u=; [ "$(id -u)" -ne 0 ] || u="user root root;"
    PORT=$(stack_free_port)
    sed -e "s|@PREFIX@|$p|g" -e "s|@USER@|$u|g" -e "s|@PORT@|$PORT|g" \
        -e "s|@SOCKET@|$2|g" -e "s|@ACCESS_LOG@|off|g" \
        "$SRC/nginx/dev.conf.in" > "$p/conf/nginx.conf"
    "$NGINX" -p "$p" -c "$p/conf/nginx.conf" -g 'daemon off;' 2>>"$p/logs/nginx.stderr" &
    NGINX_PID=$!
}

# wait_200 URL PID: until URL answers 200 (bounded) while PID lives
wait_200() {
    i=0
    while [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" != 200 ]; do
        i=$((i + 1))
        { [ $i -gt $MAX_WAIT_STEPS ] || ! kill -0 "$2" 2>/dev/null; } && return 1
        sleep 0.1
    done
}

start_wu() {
    WU_CONF=$BENCH_WORK/wu/waituntil.conf
    mkdir -p "$BENCH_WORK/wu/db"
    { cat "$SRC/conf/waituntil.conf"
      printf '\n# tests/bench: the synchronous baseline\nroute any /log_sync {\n    handler log_sync;\n}\n'
      printf '\n# tests/bench: /log as a C handler (waituntil_defer_sql)\nroute any /log_c {\n    handler log_defer;\n}\n'
    } > "$WU_CONF"
    WU_DB=$BENCH_WORK/wu/db/waituntil.db
    WU_PORT=$(stack_free_port)
    STACK_ACCESS_LOG=off STACK_APP_ARGS='' stack_start "$SRC" "$BENCH_BUILD" \
        "$BENCH_WORK/wu/prefix" "$WU_PORT" "$WU_DB" "$WU_CONF" || die "waituntil stack did not start"
    WU_URL=http://127.0.0.1:$WU_PORT
}

start_bare() {
    mkdir -p "$BENCH_WORK/bare"
    BARE_SOCK=$BENCH_WORK/bare/bare.sock
    "$BARE" -s "$BARE_SOCK" -t 4 2>>"$BENCH_WORK/bare/bare.log" &
    BARE_PID=$!
    i=0
    while [ ! -S "$BARE_SOCK" ] && [ $i -lt $MAX_WAIT_STEPS ]; do i=$((i + 1)); sleep 0.1; done
    nginx_start bare "$BARE_SOCK" "$SRC/nginx/waituntil-locations.conf"
    BARE_NGINX_PID=$NGINX_PID BARE_URL=http://127.0.0.1:$PORT
    wait_200 "$BARE_URL/hello" "$BARE_NGINX_PID" || die "bare libfcgi stack did not start"
}

start_php() {
    p=$BENCH_WORK/php
    mkdir -p "$p/logs" "$p/db"
    PHP_DB=$p/db/php.db
    sqlite3 "$PHP_DB" "PRAGMA journal_mode=WAL; $SCHEMA" >/dev/null || die "cannot create $PHP_DB"
    sed -e "s|@PREFIX@|$p|g" -e "s|@DB@|$PHP_DB|g" "$here/php/php-fpm.conf.in" > "$p/php-fpm.conf"
    "$PHP_FPM" -F -R -y "$p/php-fpm.conf" -p "$p" 2>>"$p/logs/php-fpm.stderr" &
    PHP_PID=$!
    i=0
    while [ ! -S "$p/php.sock" ] && [ $i -lt $MAX_WAIT_STEPS ]; do i=$((i + 1)); sleep 0.1; done
    nginx_start php "$p/php.sock" "$here/php/locations.conf"
    PHP_NGINX_PID=$NGINX_PID PHP_URL=http://127.0.0.1:$PORT
    wait_200 "$PHP_URL/hello" "$PHP_NGINX_PID" || { skip php "PHP-FPM did not answer: $(tail -n 2 "$p/logs/"* 2>/dev/null | tr '\n' ' ')"; return; }
}

start_cf() {
    p=$BENCH_WORK/cf
    mkdir -p "$p"
    CF_PORT=$(stack_free_port)
    : > "$p/server.log"
    node "$CFDIR/server.mjs" "$CF_PORT" "$p/d1" >> "$p/server.log" 2>&1 &
    CF_PID=$!
    CF_URL=http://127.0.0.1:$CF_PORT
    # "ready" comes after the logs table exists; /hello answers earlier.
    i=0
    while ! grep -q '^ready ' "$p/server.log" && kill -0 "$CF_PID" 2>/dev/null &&
        [ $i -lt $MAX_WAIT_STEPS ]; do i=$((i + 1)); sleep 0.1; done
    wait_200 "$CF_URL/hello" "$CF_PID" || { skip cf "Miniflare/workerd did not start: $(tail -n 3 "$p/server.log" | tr '\n' ' ')"; stop_pid "$CF_PID" TERM; CF_PID=; return; }
    CF_DB=$(find "$p/d1" -name '*.sqlite' ! -name metadata.sqlite | head -n 1)
    [ -n "$CF_DB" ] || { skip cf "cannot find the local D1 file under $p/d1"; return; }
}

want wu && start_wu
want bare && start_bare
want php && start_php
want cf && start_cf

# ---- per system: URL, DB, endpoints ---------------------------------------
sys_url() { case $1 in wu) echo "$WU_URL" ;; bare) echo "$BARE_URL" ;; php) echo "$PHP_URL" ;; cf) echo "$CF_URL" ;; esac; }
sys_db() { case $1 in wu) echo "$WU_DB" ;; php) echo "$PHP_DB" ;; cf) echo "$CF_DB" ;; *) echo ;; esac; }
sys_endpoints() {
    case $1 in
    wu) echo "/hello /log /log_c /log_sync" ;;
    bare) echo "/hello" ;;
    php) echo "/hello /sync /deferred /deferred_normal" ;;
    cf) echo "/hello /log" ;;
    esac
}
writes() { [ "$2" != /hello ]; }

rows() { # rows DB PATH: rows written for PATH (-1 if it cannot be read)
    n=$(sqlite3 -batch -noheader -cmd '.timeout 5000' "$1" \
        "SELECT count(*) FROM logs WHERE path = '$2';" 2>/dev/null) || n=-1
    echo "${n:--1}"
}

# drain DB PATH: wait until the row count for PATH holds still for 0.5 s;
# prints "COUNT SECONDS" (time until it last changed).
drain() {
    last=$(rows "$1" "$2"); same=0 i=0 changed=0
    while [ $same -lt 5 ] && [ $i -lt $MAX_WAIT_STEPS ]; do
        sleep 0.1; i=$((i + 1))
        n=$(rows "$1" "$2")
        if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0 last=$n changed=$i; fi
    done
    echo "$last $((changed / 10)).$((changed % 10))"
}

status_field() { # status_field JSON NAME
    printf '%s' "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}

acct() { # acct SYSTEM PATH OK2XX SLACK
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$ACCT"
}

# wrk_parse FILE: "rps p50_ms p99_ms requests non2xx sock_errs"
wrk_parse() {
    awk '
    function ms(v) {
        if (v ~ /us$/) return v / 1000
        if (v ~ /ms$/) return v + 0
        if (v ~ /m$/) return v * 60000
        if (v ~ /s$/) return v * 1000
        return v
    }
    /^ *50%/ { p50 = ms($2) }
    /^ *99%/ { p99 = ms($2) }
    /requests in/ { req = $1 }
    /Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non = $NF }
    /Socket errors:/ { gsub(/,/, ""); se = $4 + $6 + $8 + $10 }
    END { printf "%.1f %.3f %.3f %d %d %d\n", rps, p50, p99, req, non + 0, se + 0 }' "$1"
}

# RSS sampler: the app's VmRSS every 0.2 s into a file, max kept by awk.
rss_start() {
    [ -n "${STACK_APP_PID:-}" ] || return 0
    (while kill -0 "$STACK_APP_PID" 2>/dev/null; do
        sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$STACK_APP_PID/status"
        sleep 0.2
    done) > "$BENCH_WORK/rss.samples" 2>/dev/null &
    SAMPLER_PID=$!
}
rss_stop() {
    [ -n "$SAMPLER_PID" ] || { echo 0; return; }
    kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=
    awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }' "$BENCH_WORK/rss.samples"
}

WRK_CMD="wrk -t$THREADS -c{CONNS} -d$DURATION --latency --timeout $WRK_TIMEOUT URL"

# one_run SYSTEM ENDPOINT CONNS REP
one_run() {
    s=$1 e=$2 c=$3 r=$4
    url=$(sys_url "$s")$e db=$(sys_db "$s")
    tag=$s-$(echo "$e" | tr -d /)-c$c-r$r
    wrk -t"$THREADS" -c"$c" -d"$WARMUP" --timeout "$WRK_TIMEOUT" "$url" > "$BENCH_WORK/raw/$tag.warmup.txt" 2>&1
    set -- $(wrk_parse "$BENCH_WORK/raw/$tag.warmup.txt")
    acct "$s" "$e" $(($4 - $5)) "$c"
    before=-
    if writes "$s" "$e"; then set -- $(drain "$db" "$e"); before=$1; fi
    t_ok0=0 t_commits0=0
    if [ "$s" = wu ]; then
        st=$(curl -s "$WU_URL/_status")
        t_ok0=$(status_field "$st" tasks_ok) t_commits0=$(status_field "$st" commits)
        rss_start
    fi
    wrk -t"$THREADS" -c"$c" -d"$DURATION" --latency --timeout "$WRK_TIMEOUT" "$url" \
        > "$BENCH_WORK/raw/$tag.txt" 2>&1
    rss=-; [ "$s" = wu ] && rss=$(rss_stop)
    set -- $(wrk_parse "$BENCH_WORK/raw/$tag.txt")
    rps=$1 p50=$2 p99=$3 req=$4 non=$5 se=$6 ok=$(($4 - $5))
    acct "$s" "$e" "$ok" "$c"
    added=- extra=- dr=-
    if writes "$s" "$e"; then
        set -- $(drain "$db" "$e")
        added=$(($1 - before)) extra=$(($1 - before - ok)) dr=$2
    fi
    hwm=- rej=- r503=- tpc=-
    if [ "$s" = wu ]; then
        st=$(curl -s "$WU_URL/_status")
        hwm=$(status_field "$st" queue_depth_hwm)
        rej=$(status_field "$st" tasks_rejected)
        r503=$(status_field "$st" responses_503_queue_full)
        tpc=$(awk -v t=$(($(status_field "$st" tasks_ok) - t_ok0)) \
            -v c=$(($(status_field "$st" commits) - t_commits0)) \
            'BEGIN { if (c > 0) printf "%.1f", t / c; else print "-" }')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$s" "$e" "$c" "$r" "$rps" "$p50" "$p99" "$req" "$non" "$se" "$added" "$ok" \
        "$extra" "$dr" "$rss" "$hwm" "$rej" "$r503" "$tpc" >> "$RUNS"
    printf 'bench: rep %s c=%-3s %-4s %-16s %9s req/s  p50 %7s ms  p99 %8s ms  non2xx %s  rows-2xx %s\n' \
        "$r" "$c" "$s" "$e" "$rps" "$p50" "$p99" "$non" "$extra" >&2
}

# smoke: every endpoint answers 200 once (counted as promised, no slack)
for s in $SYSTEMS; do
    for e in $(sys_endpoints "$s"); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$(sys_url "$s")$e")
        [ "$code" = 200 ] || die "$s $e answers $code, not 200"
        acct "$s" "$e" 1 0
    done
done

T0=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "systems: $SYSTEMS; $REPS reps x conns ($CONNS) x ${DURATION} (+${WARMUP} warm-up)"
r=1
while [ $r -le "$REPS" ]; do
    for c in $CONNS; do
        for s in $SYSTEMS; do
            for e in $(sys_endpoints "$s"); do
                one_run "$s" "$e" "$c" "$r"
            done
        done
    done
    r=$((r + 1))
done

# ---- exact loss check: N requests, every answer counted --------------------
# exact SYSTEM ENDPOINT N
exact() {
    s=$1 e=$2 n=$3 db=$(sys_db "$1")
    set -- $(drain "$db" "$e"); before=$1
    t0=$(date +%s.%N)
    curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 32 \
        -o /dev/null -w '%{http_code}\n' "$(sys_url "$s")$e?n=[1-$n]" \
        > "$BENCH_WORK/raw/exact-$s$(echo "$e" | tr / -).codes" 2>"$BENCH_WORK/raw/exact-$s.stderr"
    t1=$(date +%s.%N)
    ok=$(grep -c '^200$' "$BENCH_WORK/raw/exact-$s$(echo "$e" | tr / -).codes")
    set -- $(drain "$db" "$e")
    acct "$s" "$e" "$ok" 0
    printf 'exact\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$e" "$n" "$ok" "$(($1 - before))" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "$2" >> "$CHECKS"
    say "exact $s $e: requests=$n http_200=$ok rows_added=$(($1 - before)) drain_s=$2"
}
want wu && exact wu /log "$LOSS_N"
want wu && exact wu /log_c "$LOSS_N"
want wu && exact wu /log_sync "$LOSS_N"
want php && exact php /deferred "$LOSS_N_SLOW"
want cf && exact cf /log "$LOSS_N_SLOW"

# ---- optional profile of the app under /log load -----------------------------
if [ "$PERF" = 1 ] && want wu && has perf; then
    say "perf: recording waituntil during wrk -c128 $DURATION on /log"
    perf record -F 999 -g -p "$STACK_APP_PID" -o "$BENCH_WORK/perf.data" -- sleep 8 \
        > "$BENCH_WORK/perf.log" 2>&1 &
    perf_pid=$!
    wrk -t"$THREADS" -c128 -d"$DURATION" --timeout "$WRK_TIMEOUT" "$WU_URL/log" > "$BENCH_WORK/raw/perf-wrk.txt" 2>&1
    wait "$perf_pid"
    set -- $(wrk_parse "$BENCH_WORK/raw/perf-wrk.txt"); acct wu /log $(($4 - $5)) 128
    { echo "$(grep -o '([0-9]* samples)' "$BENCH_WORK/perf.log"), by thread:"
      perf report -i "$BENCH_WORK/perf.data" --no-children -g none --sort comm --stdio 2>/dev/null |
          grep '%' | grep -v '^#'
      echo "top symbols (self):"
      perf report -i "$BENCH_WORK/perf.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null |
          grep '%' | grep -v '^#' | head -n 30
    } | sed 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//' > "$BENCH_WORK/perf-top.txt"
fi

# ---- stop, then the final count --------------------------------------------
if want wu; then
    st=$(curl -s "$WU_URL/_status")
    printf '%s\n' "$st" > "$BENCH_WORK/wu-status.json"
    WU_HWM_KB=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$STACK_APP_PID/status")
    stack_stop
    printf 'wu_exit\t%s\t%s\n' "${STACK_APP_RC:-?}" "$WU_HWM_KB" >> "$CHECKS"
    grep 'event=stopped' "$BENCH_WORK/wu/prefix/logs/waituntil.log" | tail -n 1 > "$BENCH_WORK/wu-stopped.txt"
fi
stop_pid "$BARE_PID" TERM; BARE_PID=; stop_pid "$BARE_NGINX_PID" QUIT; BARE_NGINX_PID=
stop_pid "$PHP_NGINX_PID" QUIT; PHP_NGINX_PID=; stop_pid "$PHP_PID" QUIT; PHP_PID=
stop_pid "$CF_PID" TERM; CF_PID=

# final SYSTEM PATH: rows after stop vs promised 2xx (and slack)
for s in $SYSTEMS; do
    for e in $(sys_endpoints "$s"); do
        writes "$s" "$e" || continue
        n=$(rows "$(sys_db "$s")" "$e")
        awk -F'\t' -v s="$s" -v e="$e" -v n="$n" '
            $1 == s && $2 == e { ok += $3; slack += $4 }
            END { printf "final\t%s\t%s\t%d\t%d\t%d\t%d\n", s, e, n, ok, n - ok, slack }' \
            "$ACCT" >> "$CHECKS"
    done
done
T1=$(date +%s)
if [ "$PROFILE" = 1 ] && want wu; then
    say "profile: callgrind, instructions per request (tests/bench/profile.sh)"
    BENCH_BUILD=$BENCH_BUILD BENCH_WORK=$BENCH_WORK sh "$here/profile.sh" "$SRC" "$BUILD" > /dev/null ||
        say "profile.sh failed; no instruction counts in the report"
fi

# ---- machine, versions, commands ------------------------------------------
{
    echo "date_utc=$(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "duration_s=$((T1 - T0))"
    echo "nproc=$(nproc)"
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "kernel=$(uname -sr)"
    echo "mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "load_before=$LOAD_BEFORE (1/5/15 min, when the measured runs began)"
    echo "git=$GIT_REV"
    echo "app=$APP ($(sed -n 's/^CFLAGS = //p' "$BENCH_BUILD/Makefile"))"
    echo "cc=$($CC --version | head -n 1)"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*: //')"
    echo "wrk=$(wrk -v 2>&1 | head -n 1)"
    echo "sqlite=$(sqlite3 -version | cut -d' ' -f1-2)"
    echo "libfcgi=$(dpkg-query -W -f='${Version}' libfcgi-dev 2>/dev/null)"
    want php && echo "php=$("$PHP_FPM" -v 2>/dev/null | head -n 1)"
    if want cf; then
        v() { sed -n 's/^  "version": "\(.*\)",*$/\1/p' "$CFDIR/node_modules/$1/package.json" | head -n 1; }
        echo "node=$(node -v)"
        echo "miniflare=$(v miniflare)"
        echo "workerd=$(v workerd)"
        echo "workers_qb=$(v workers-qb)"
    fi
    echo "wrk_cmd=$WRK_CMD"
    echo "warmup=wrk -t$THREADS -c{CONNS} -d$WARMUP --timeout $WRK_TIMEOUT URL (before every measured run)"
    echo "reps=$REPS"
    echo "conns=$CONNS"
    printf '%s\n' "exact_cmd=curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 32 -o /dev/null -w '%{http_code}\\n' 'URL?n=[1-N]' (N=$LOSS_N for waituntil, $LOSS_N_SLOW for PHP-FPM and workerd)"
} > "$META"

sh "$here/report.sh" "$BENCH_WORK" "$BENCH_OUT" "$here/plot.gp"
