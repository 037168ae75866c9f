#!/bin/sh
# End-to-end, issue #8: the shared PostgreSQL goes away under load.
# Two waituntil instances behind one nginx upstream (tools/stack_multi.sh)
# on a private PostgreSQL (tests/pg/pg_env.sh).
#
# Phase 1 (within the reconnect budget, `reconnect 30s`): 20,000
# GET /log/r1-K, 32 in parallel; `pg_env.sh restart` (fast: every
# connection is dropped) once a fifth of them were admitted, then 100
# more to each instance.  Asserts:
# every request answered 2xx, rows == 2xx exactly and no path twice (a
# batch whose connection died is replayed, one that died in COMMIT is
# looked up, never doubled), and from /_status: conn_lost > 0,
# reconnects > 0, commit_unknown == 0, tasks_failed == 0.
#
# Phase 2 (beyond the budget, `reconnect 1s`, instances restarted with it):
# the server is stopped while the instances are idle (so no COMMIT is in
# flight: commit_unknown stays 0 by construction), 2,000 GET /log/r2-K are
# answered 200, and the server stays down until both instances have
# finished with every task (bounded).  Asserts: tasks_failed > 0, every
# failed task in the event=task_failed lines (identical failures are
# folded: the first line, then one "repeated=N" line a second, so the
# lines are few and their counts add up), rows == 2xx - failed
# exactly.  Then the server starts again and 2,000 GET /log/r3-K all land
# (the instances reconnect on their own).  At the end every process's
# final counters add up: ok == rows, failed == the failures counted.
#
# Also in phase 1: GET /log_sync (the log_sync handler: an insert on
# the request thread's own connection, web_call_db) on each instance
# before the restart, then after it one at a time until 20 in a row
# answered 200: a thread whose session died answers 500 once (its call
# fails with QB_ECONN), then web_call_db reconnects it; no more than one
# failure per request thread.
#
# SKIP (77) without PostgreSQL server binaries or psql, or when the app
# was built without libpq.  Figures: "# figure: pg_restart ..." lines.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
. "$TOP_SRCDIR/tools/stack_multi.sh"
. "$TESTS_SRCDIR/pg/pg_env.sh"
t_tmpdir

N1=${RESTART_N:-20000}
N2=${RESTART_OUTAGE_N:-2000}
P=${RESTART_PARALLEL:-32}
PGDIR=

rs_cleanup() {
    multi_stop
    [ -z "$PGDIR" ] || wu_pg_stop "$PGDIR"
}
# shellcheck disable=SC2034 # read by t_cleanup (tests/lib.sh)
T_CLEANUP_HOOK=rs_cleanup

grep -q '^#define HAVE_LIBPQ 1' "$TOP_BUILDDIR/config.h" 2>/dev/null ||
    t_skip_all "built without PostgreSQL (configure --with-postgresql)"
wu_pg_bindir >/dev/null 2>&1 || t_skip_all "no PostgreSQL server binaries"
command -v psql >/dev/null || t_skip_all "psql not installed"
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/wu-pg.XXXXXX") || exit 1
wu_pg_start "$PGDIR" >/dev/null || {
    t_fail "private PostgreSQL starts" "$(tail -n 20 "$PGDIR/server.log" 2>/dev/null)"
    t_done; exit 1; }
DB=$(multi_pg_uri "$PGDIR")

# conf_with RECONNECT FILE: the shipped conf with `reconnect RECONNECT;`.
conf_with() {
    sed -e "$(rel_set reconnect "$1")" "$TOP_SRCDIR/conf/waituntil.conf" > "$2" &&
        grep -q "^[[:space:]]*reconnect $1;" "$2"
}
# pg_down: stop the server but keep its files (pg_env.sh stop removes them).
pg_down() {
    wu_pg_as "$(wu_pg_bindir)/pg_ctl" -D "$PGDIR/data" -w -t 60 -m fast stop >/dev/null
}
# urls NAME N: a curl config for N GETs of /log/NAME-K.
urls() {
    seq 1 "$2" | sed "s|.*|url = \"$MULTI_URL/log/$1-&\"\noutput = \"/dev/null\"|" \
        > "$T_TMP/urls-$1"
}
rows() { multi_sql "SELECT count(*) FROM logs WHERE path LIKE '/log/$1-%'"; }
dups() { multi_sql "SELECT count(*) - count(DISTINCT path) FROM logs WHERE path LIKE '/log/$1-%'"; }
idle() { multi_wait_idle 1 "${1:-300}" && multi_wait_idle 2 "${1:-300}"; }

conf_with 30s "$T_TMP/conf1" || { t_fail "conf with reconnect 30s"; t_done; exit 1; }
printf '\nroute any /log_sync {\n    handler log_sync;\n}\n' >> "$T_TMP/conf1"
THREADS=$(sed -n 's/^[[:space:]]*threads \([0-9]*\);.*/\1/p' "$T_TMP/conf1" | head -n 1)
# sync_codes I N: N GETs of /log_sync to instance I, one at a time.
sync_codes() {
    k=0
    while [ $k -lt "$2" ]; do
        curl -s -o /dev/null --max-time 60 -w '%{http_code}\n' "$MULTI_URL/_wu/$1/log_sync"
        k=$((k + 1))
    done
}
# sync_until_streak I: GETs of /log_sync to instance I, one at a time,
# until 20 in a row answered 200 (at most 300).  Which request thread
# takes a request is libfcgi's race: a thread whose session died may be
# used first late, so "the last N" would be timing; but each thread
# fails at most once, so with T threads 20 * (T + 1) + T requests are
# always enough.
sync_until_streak() {
    k=0 streak=0
    while [ $k -lt 300 ] && [ $streak -lt 20 ]; do
        c=$(curl -s -o /dev/null --max-time 60 -w '%{http_code}' "$MULTI_URL/_wu/$1/log_sync")
        echo "$c"
        if [ "$c" = 200 ]; then streak=$((streak + 1)); else streak=0; fi
        k=$((k + 1))
    done
}
PORT=$(stack_free_port)
if ! multi_start "$TOP_SRCDIR" "$TOP_BUILDDIR" "$T_TMP/prefix" "$PORT" 2 "$DB" \
    "$T_TMP/conf1" > "$T_TMP/start.out" 2>&1; then
    t_fail "2 instances and nginx start on PostgreSQL" "$(cat "$T_TMP/start.out")"
    t_done; exit 1
fi
t_ok "2 instances and nginx start on PostgreSQL"
for i in 1 2; do curl -s -o /dev/null "$MULTI_URL/_wu/$i/log/warm$i"; done
idle
expect "warm-up rows" "$(multi_sql "SELECT count(*) FROM logs WHERE path LIKE '/log/warm%'")" "2"
for i in 1 2; do sync_codes $i 20 > "$T_TMP/sync-before-$i"; done
expect "GET /log_sync before the restart: 40 x 200" \
    "$(cat "$T_TMP"/sync-before-* | grep -c '^200$')" 40

# ---- phase 1: restart within the budget ------------------------------------
urls r1 "$N1"
rel_curl_codes "$T_TMP/urls-r1" "$T_TMP/codes-r1" "$P" &
load=$!
k=0
while [ "$(multi_sum tasks_admitted)" -lt $((N1 / 5)) ] && [ $k -lt 600 ]; do
    k=$((k + 1)); sleep 0.05
done
if kill -0 "$load" 2>/dev/null; then running=1; else running=0; fi
t0=$(date +%s%N)
wu_pg_restart "$PGDIR" && t_ok "pg_env.sh restart under load" ||
    t_fail "restart" "$(tail -n 5 "$PGDIR/server.log")"
restart_ms=$(rel_ms_since "$t0")
wait "$load"
expect "load running when the restart began (raise RESTART_N if not)" "$running" 1
# A tail after the restart, 100 requests to each instance: however the
# load ended, dead connections get used after the restart (conn_lost).
for i in 1 2; do
    seq 1 100 | sed "s|.*|url = \"$MULTI_URL/_wu/$i/log/r1t-$i-&\"\noutput = \"/dev/null\"|"
done > "$T_TMP/urls-r1t"
rel_curl_codes "$T_TMP/urls-r1t" "$T_TMP/codes-r1t" 8
for i in 1 2; do
    sync_until_streak $i > "$T_TMP/sync-after-$i"
    bad=$(grep -vc '^200$' "$T_TMP/sync-after-$i")
    all=$(wc -l < "$T_TMP/sync-after-$i")
    [ "$bad" -le "${THREADS:-4}" ] &&
        t_ok "instance $i: /log_sync after the restart: $bad of $all failed (<= one per request thread)" ||
        t_fail "instance $i: /log_sync after the restart" "$(sort "$T_TMP/sync-after-$i" | uniq -c)"
    expect "instance $i: then 20 /log_sync in a row are 200" \
        "$(tail -n 20 "$T_TMP/sync-after-$i" | grep -c '^200$')" 20
done
idle 600 || t_fail "instances idle after the restart (60 s)" "$(multi_status 1)"
n2xx=$(grep -c '^2' "$T_TMP/codes-r1")
expect "all $N1 requests answered 2xx" "$n2xx" "$N1"
expect "rows == 2xx ($n2xx), exactly" "$(rows r1)" "$n2xx"
expect "no row written twice" "$(dups r1)" 0
expect "the tail after the restart: rows == 2xx (200)" \
    "$(rows r1t) $(grep -c '^2' "$T_TMP/codes-r1t")" "200 200"
lost=$(multi_sum conn_lost) rec=$(multi_sum reconnects)
unk=$(multi_sum commit_unknown) failed=$(multi_sum tasks_failed)
[ "${lost:-0}" -gt 0 ] && t_ok "status: conn_lost $lost > 0" ||
    t_fail "status: conn_lost" "$(multi_status 1)"
[ "${rec:-0}" -gt 0 ] && t_ok "status: reconnects $rec > 0" ||
    t_fail "status: reconnects" "$(multi_status 1)"
expect "status: commit_unknown == 0" "$unk" 0
expect "status: tasks_failed == 0" "$failed" 0
rel_figure "pg_restart phase=restart requests=$N1 answered_2xx=$n2xx rows=$(rows r1) conn_lost=$lost reconnects=$rec commit_unknown=$unk failed=$failed restart_ms=$restart_ms"

# ---- phase 2: down for longer than the budget --------------------------------
conf_with 1s "$T_TMP/conf2" || t_fail "conf with reconnect 1s"
# shellcheck disable=SC2034 # read by multi_start_app
MULTI_CONF=$T_TMP/conf2
for i in 1 2; do
    multi_stop_app $i TERM
    expect "instance $i exits 0 after phase 1" "$MULTI_RC" 0
    multi_start_app $i || t_fail "instance $i restarts with reconnect 1s"
done
idle
pg_down && t_ok "PostgreSQL stopped while the instances are idle" ||
    t_fail "pg_ctl stop" "$(tail -n 5 "$PGDIR/server.log")"
urls r2 "$N2"
rel_curl_codes "$T_TMP/urls-r2" "$T_TMP/codes-r2" "$P"
n2xx2=$(grep -c '^2' "$T_TMP/codes-r2")
expect "all $N2 requests answered 2xx while the database is down" "$n2xx2" "$N2"
t0=$(date +%s%N)
idle 1200 && t_ok "both instances gave up on every task ($(rel_ms_since "$t0") ms)" ||
    t_fail "instances still busy after 120 s" "$(multi_status 1)"
failed2=$(multi_sum tasks_failed) unk2=$(multi_sum commit_unknown)
# The last repeated=N summary is written within about a second.
all_logged() {
    logged=$(rel_log_events 'event=task_failed' "$(multi_log 1)" "$(multi_log 2)")
    [ "$logged" -ge "${failed2:-0}" ]
}
t_wait_for "" all_logged
lines=$(cat "$(multi_log 1)" "$(multi_log 2)" | grep -c 'event=task_failed')
wu_pg_start "$PGDIR" >/dev/null && t_ok "PostgreSQL starts again" ||
    t_fail "PostgreSQL start" "$(tail -n 5 "$PGDIR/server.log")"
[ "${failed2:-0}" -gt 0 ] && t_ok "status: tasks_failed $failed2 > 0" ||
    t_fail "status: tasks_failed" "$(multi_status 1)"
expect "every failed task in the event=task_failed lines (repeated=N counted)" "$logged" "$failed2"
[ "$lines" -lt "$failed2" ] && t_ok "... in $lines lines, not one per task" ||
    t_fail "task_failed lines not folded" "$lines lines for $failed2 failures"
expect "status: commit_unknown == 0 (stopped while idle)" "$unk2" 0
expect "rows == 2xx - failed ($n2xx2 - $failed2), exactly" "$(rows r2)" "$((n2xx2 - failed2))"

urls r3 "$N2"
rel_curl_codes "$T_TMP/urls-r3" "$T_TMP/codes-r3" "$P"
idle 600 || t_fail "instances idle after the database came back" "$(multi_status 1)"
n2xx3=$(grep -c '^2' "$T_TMP/codes-r3")
expect "after the outage: rows == 2xx ($n2xx3)" "$(rows r3)" "$n2xx3"
expect "after the outage: nothing more failed" "$(multi_sum tasks_failed)" "$failed2"
rec2=$(multi_sum reconnects)
[ "${rec2:-0}" -gt 0 ] && t_ok "status: reconnects $rec2 > 0 after the outage" ||
    t_fail "status: reconnects after the outage" "$(multi_status 1)"
rel_figure "pg_restart phase=outage requests=$N2 answered_2xx=$n2xx2 failed=$failed2 task_failed_events=$logged task_failed_lines=$lines rows=$(rows r2) then requests=$N2 rows=$(rows r3) reconnects=$rec2"

multi_stop
expect "both instances exit 0" "$MULTI_RCS" "1:0 2:0"
total=$(multi_sql "SELECT count(*) FROM logs WHERE path <> '/log_sync'")
expect "rows == tasks ok summed over all 4 processes" "$(multi_stopped_sum ok)" "$total"
expect "failed summed over all processes == the outage's failures" \
    "$(multi_stopped_sum failed)" "$failed2"
for i in 1 2; do rel_log_clean "$(multi_log $i)"; done
t_done
