#!/bin/sh
# tests/bench/scaleout.sh [SRCDIR [BUILDDIR]] -- the scale-out benchmark of
# issue #8: /log through one nginx upstream with 1, 2 and 3 waituntil
# instances on one PostgreSQL database, and 1 instance on SQLite, measured
# with wrk.  Run on purpose, never by `make check` (tests/bench/SCALEOUT.md).
#
# DESIGN
#   App: BUILDDIR/app/waituntil as built (it must be optimised and free of
#   sanitizers, and configured --with-postgresql for the PostgreSQL runs).
#   Stack: tools/stack_multi.sh (N instances, nginx/upstream-dev.conf.in,
#   access log off); PostgreSQL: one private server (tests/pg/pg_env.sh:
#   unix socket only, fsync=off, max_connections=20) for the whole run,
#   `logs` emptied before each scenario; SQLite: a fresh file per scenario.
#   Each scenario: a warm-up wrk run, then the measured run, both on the
#   scenario's own path (/log/so-KIND-N), then every instance gets SIGTERM
#   and drains.
#
#   Accounting, exact: each 2xx answer of /log admitted exactly one task,
#   so after the drain rows(path) == sum over the instances' final
#   `event=stopped` lines of ok, with failed == left == 0.  wrk's own 2xx
#   count is lower by the requests still in flight when it stopped (at
#   most one per connection per wrk run): 0 <= rows - wrk_2xx <= 2 * CONNS.
#   Both are checked; a failed check makes the exit status 1.
#
#   Batches: /_status of every instance before and after the measured run
#   (commits, batches, batch_size_hist deltas, summed).  CPU: jiffies of
#   the instances, of nginx (master + workers), of PostgreSQL (postmaster
#   + backends) and of the whole machine during the measured run, in % of
#   one core (the machine has `nproc` cores: 200 % on 2).
#
#   Bounds: fixed wrk durations, every wait bounded (tools/stack_multi.sh),
#   an EXIT trap stops what this script started, by PID.  127.0.0.1 and
#   unix sockets only.
#
# Knobs (environment): SCENARIOS ("pg:1 pg:2 pg:3 sqlite:1"; KIND:N, KIND
# pg or sqlite), DURATION (10s), WARMUP (2s), CONNS (32), THREADS (wrk
# threads, 2), WRK_TIMEOUT (10s), SCALEOUT_WORK (BUILDDIR/scaleout-run),
# SCALEOUT_CONF (the instances' conf; default the shipped conf/waituntil.conf).
set -u

here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "${1:-$here/../..}" && pwd)
BUILD=$(cd "${2:-$SRC/build}" && pwd) || exit 1
SCENARIOS=${SCENARIOS:-pg:1 pg:2 pg:3 sqlite:1}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
WORK=${SCALEOUT_WORK:-$BUILD/scaleout-run}

. "$SRC/tools/stack.sh"
. "$SRC/tools/stack_multi.sh"
. "$SRC/tests/pg/pg_env.sh"

say() { printf '%s\n' "scaleout: $*" >&2; }
die() { say "$*"; exit 1; }

PGDIR=
cleanup() {
    multi_stop 2>/dev/null
    [ -z "$PGDIR" ] || wu_pg_stop "$PGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

for t in wrk curl awk; do command -v $t >/dev/null || die "$t is not installed"; done
make -s -C "$BUILD" app/waituntil || die "make app/waituntil failed in $BUILD"
flags=$(sed -n 's/^CFLAGS = //p' "$BUILD/Makefile")
case $flags in *-fsanitize*|*-O0*) die "$BUILD has CFLAGS '$flags': measure an optimised build" ;; esac
case " $SCENARIOS" in
*" pg:"*)
    grep -q '^#define HAVE_LIBPQ 1' "$BUILD/config.h" ||
        die "$BUILD was configured without PostgreSQL (--with-postgresql)"
    wu_pg_bindir >/dev/null || die "no PostgreSQL server binaries (tests/pg/README.md)"
    command -v psql >/dev/null || die "psql is not installed"
    ;;
esac
case " $SCENARIOS" in *" sqlite:"*) command -v sqlite3 >/dev/null || die "sqlite3 is not installed" ;; esac

rm -rf "$WORK"
mkdir -p "$WORK/raw" || die "cannot create $WORK"
HZ=$(getconf CLK_TCK)
NPROC=$(nproc)
FAILS=0

# ---- CPU: jiffies (utime + stime) ------------------------------------------
ticks() { # ticks PID...: summed over these processes (all their threads)
    for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}
children() { # children PID: the processes whose parent is PID
    for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null; done |
        awk -v pp="$1" '{ pid = $1; sub(/^.*\) /, ""); if ($2 == pp) print pid }'
}
busy() { # busy jiffies of the whole machine (all cores)
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
app_pids() {
    k=1
    while [ $k -le "$MULTI_N" ]; do multi_pid $k; k=$((k + 1)); done
}
nginx_pids() { echo "$MULTI_NGINX_PID"; children "$MULTI_NGINX_PID"; }
pg_pids() {
    [ -n "$PGDIR" ] && [ -f "$PGDIR/data/postmaster.pid" ] || return 0
    pm=$(head -n 1 "$PGDIR/data/postmaster.pid")
    echo "$pm"; children "$pm"
}
cpu_snap() { # cpu_snap: "app nginx pg machine" jiffies now
    # shellcheck disable=SC2046
    echo "$(ticks $(app_pids)) $(ticks $(nginx_pids)) $(ticks $(pg_pids)) $(busy)"
}

# ---- wrk --------------------------------------------------------------------
# wrk_parse FILE: "rps p99_ms requests non2xx sock_errs"
wrk_parse() {
    awk '
    function ms(v) {
        if (v ~ /us$/) return v / 1000
        if (v ~ /ms$/) return v + 0
        if (v ~ /m$/) return v * 60000
        if (v ~ /s$/) return v * 1000
        return v
    }
    /^ *99%/ { p99 = ms($2) }
    /requests in/ { req = $1 }
    /Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non = $NF }
    /Socket errors:/ { gsub(/,/, ""); se = $4 + $6 + $8 + $10 }
    END { printf "%.0f %.2f %d %d %d\n", rps, p99, req, non + 0, se + 0 }' "$1"
}

# status_sum NAME: counter summed over the running instances
status_sum() { multi_sum "$1"; }
# hist_sum: batch_size_hist summed over the running instances (16 numbers)
hist_sum() {
    k=1
    while [ $k -le "$MULTI_N" ]; do
        multi_status $k | sed -n 's/.*"batch_size_hist":\[\([0-9,]*\)\].*/\1/p'
        k=$((k + 1))
    done | awk -F, '{ for (i = 1; i <= NF; i++) s[i] += $i; n = NF }
        END { for (i = 1; i <= n; i++) printf "%s%d", (i > 1 ? " " : ""), s[i]; print "" }'
}
# hist_text BEFORE AFTER: non-empty buckets of the delta, "1:n 2-3:n ..."
hist_text() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, " "); split(b, y, " "); out = ""
        for (i = 1; i <= n; i++) {
            d = y[i] - x[i]; if (d == 0) continue
            lo = 2 ^ (i - 1); hi = 2 ^ i - 1
            out = out (out == "" ? "" : " ") (lo == hi ? lo : lo "-" hi) ":" d
        }
        print (out == "" ? "-" : out) }'
}

sql_rows() { multi_sql "SELECT count(*) FROM logs WHERE path = '$1'"; }

# ---- one scenario -------------------------------------------------------------
RES=$WORK/results.tsv
printf 'scenario\tinstances\trps\tp99_ms\twrk_2xx\tnon2xx\tsock_errs\trows\tok\tfailed_left\textra\tcommits\tbatches\ttasks_per_commit\tbatch_hist\tcpu_app\tcpu_nginx\tcpu_pg\tcpu_machine\texits\tcheck\n' > "$RES"

# scenario KIND N (set -- $(...) splits the helpers' "a b c" on purpose)
# shellcheck disable=SC2046
scenario() {
    kind=$1 n=$2 tag=so-$1-$2
    path=/log/$tag
    prefix=$WORK/$tag
    case $kind in
    pg)
        if [ -z "$PGDIR" ]; then
            PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/wu-pg.XXXXXX") || die "mktemp"
            wu_pg_start "$PGDIR" >/dev/null || die "PostgreSQL did not start ($PGDIR/server.log)"
        fi
        db=$(multi_pg_uri "$PGDIR")
        # The schema exists once an instance ran the migrations.
        psql "$db" -X -q -c 'TRUNCATE logs' >/dev/null 2>&1 || true
        ;;
    sqlite) db=$prefix/db/waituntil.db ;;
    *) die "unknown scenario kind '$kind' (pg or sqlite)" ;;
    esac
    port=$(stack_free_port)
    STACK_ACCESS_LOG=off STACK_APP_ARGS='' multi_start "$SRC" "$BUILD" "$prefix" "$port" \
        "$n" "$db" "${SCALEOUT_CONF:-$SRC/conf/waituntil.conf}" \
        > "$WORK/raw/$tag.start" 2>&1 ||
        die "$tag: the stack did not start: $(tail -n 5 "$WORK/raw/$tag.start")"
    url=$MULTI_URL$path

    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" --timeout "$WRK_TIMEOUT" "$url" \
        > "$WORK/raw/$tag.warmup.txt" 2>&1
    set -- $(wrk_parse "$WORK/raw/$tag.warmup.txt")
    w2xx=$(($3 - $4))
    k=1; while [ $k -le "$n" ]; do multi_wait_idle $k; k=$((k + 1)); done
    c0=$(status_sum commits) b0=$(status_sum batches) o0=$(status_sum tasks_ok)
    h0=$(hist_sum)
    set -- $(cpu_snap); a0=$1 n0=$2 p0=$3 m0=$4

    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency --timeout "$WRK_TIMEOUT" "$url" \
        > "$WORK/raw/$tag.txt" 2>&1
    set -- $(cpu_snap); a1=$1 n1=$2 p1=$3 m1=$4
    set -- $(wrk_parse "$WORK/raw/$tag.txt")
    rps=$1 p99=$2 m2xx=$(($3 - $4)) non=$4 se=$5
    secs=$(awk -v r="$3" -v q="$rps" 'BEGIN { print (q > 0 ? r / q : 1) }')
    k=1; while [ $k -le "$n" ]; do multi_wait_idle $k; k=$((k + 1)); done
    c1=$(status_sum commits) b1=$(status_sum batches) o1=$(status_sum tasks_ok)
    h1=$(hist_sum)
    multi_stop
    rows=$(sql_rows "$path")
    ok=$(multi_stopped_sum ok)
    fl=$(($(multi_stopped_sum failed) + $(multi_stopped_sum left)))
    wrk2xx=$((w2xx + m2xx))
    extra=$((rows - wrk2xx))
    check=ok
    if [ "$rows" != "$ok" ] || [ "$fl" != 0 ] || [ "$extra" -lt 0 ] ||
        [ "$extra" -gt $((2 * CONNS)) ]; then
        check=FAIL FAILS=$((FAILS + 1))
    fi
    case " $MULTI_RCS" in *:[!0]*) check=FAIL FAILS=$((FAILS + 1)) ;; esac
    pct() { awk -v t="$1" -v s="$secs" -v hz="$HZ" 'BEGIN { printf "%.0f", 100 * t / hz / s }'; }
    tpc=$(awk -v t=$((o1 - o0)) -v c=$((c1 - c0)) 'BEGIN { if (c > 0) printf "%.1f", t / c; else print "-" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$kind" "$n" "$rps" "$p99" "$wrk2xx" "$non" "$se" "$rows" "$ok" "$fl" "$extra" \
        $((c1 - c0)) $((b1 - b0)) "$tpc" "$(hist_text "$h0" "$h1")" \
        "$(pct $((a1 - a0)))" "$(pct $((n1 - n0)))" "$(pct $((p1 - p0)))" "$(pct $((m1 - m0)))" \
        "$MULTI_RCS" "$check" >> "$RES"
    say "$tag: $rps req/s p99 ${p99} ms; rows $rows = ok $ok, wrk 2xx $wrk2xx (+$extra in flight); $check"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
for s in $SCENARIOS; do
    scenario "${s%%:*}" "${s#*:}"
done
T1=$(date +%s)

# ---- report -------------------------------------------------------------------
GIT_REV="$(cd "$SRC" && git rev-parse --short HEAD 2>/dev/null)$(cd "$SRC" && git diff --quiet HEAD -- lib app conf 2>/dev/null || echo ' + uncommitted changes in lib/app/conf')"
{
    echo "## Scale-out: /log through one nginx upstream"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M') UTC, git $GIT_REV, $NPROC cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), load before $LOAD_BEFORE, $((T1 - T0)) s."
    echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency (after a $WARMUP warm-up) on http://127.0.0.1:PORT/log/so-KIND-N; app CFLAGS '$flags'; nginx $("${NGINX_BIN:-nginx}" -v 2>&1 | sed 's/.*\///'), 2 workers, access log off."
    [ -z "$PGDIR" ] || echo "PostgreSQL $("$(wu_pg_bindir)/postgres" --version | awk '{ print $3 }') from tests/pg/pg_env.sh: unix socket, fsync=off, shared_buffers=16MB; each instance has 2 writer connections (pool workers 2)."
    echo
    echo "| database | instances | req/s | p99 ms | rows | = tasks ok | wrk 2xx | rows - wrk 2xx (in flight) | non-2xx | commits | tasks/commit | batch sizes (size:count) | CPU app | nginx | PostgreSQL | machine | check |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' 'NR > 1 {
        db = ($1 == "pg" ? "PostgreSQL" : "SQLite")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s %% | %s %% | %s | %s %% | %s |\n",
            db, $2, $3, $4, $8, $9, $5, $11, $6 + $7, $12, $14, $15, $16, $17,
            ($1 == "pg" ? $18 " %" : "-"), $19, $21 }' "$RES"
    echo
    echo "CPU in % of one core during the measured run (the machine: $((NPROC * 100)) %); wrk and the rest make up the difference to \"machine\"."
    echo "rows = tasks ok summed over the instances' final counters (failed + left = 0); wrk does not count the requests still in flight when it stops (at most $CONNS per run, 2 runs)."
} | tee "$WORK/scaleout.md"
say "raw wrk output and results.tsv in $WORK"
[ "$FAILS" -eq 0 ] || { say "$FAILS accounting check(s) failed"; exit 1; }
