#!/bin/sh
# End-to-end, issue 15 on PostgreSQL: SIGKILL under load, then restart;
# with `journal write` no answered write is lost and none is written twice.
# One instance behind nginx (tools/stack_multi.sh) on the private
# PostgreSQL (tests/pg/pg_env.sh); the rounds of
# tests/e2e/reliability_sigkill.sh:
#   stalled -- an outside session holds ACCESS EXCLUSIVE on logs, so every
#              answered write is still queued at the kill: all of them
#              come back from the journal (released after the kill);
#   running -- killed once a quarter of the writes landed.
# Every 200 has its row after the restart, no path has two.
# SKIP (77) without PostgreSQL server binaries or psql, or without libpq.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
. "$TOP_SRCDIR/tools/stack_multi.sh"
. "$TESTS_SRCDIR/pg/pg_env.sh"
t_tmpdir

N=${REL_KILL_N:-3000}
PGDIR=
LOCKER=
sk_cleanup() {
    [ -z "$LOCKER" ] || { kill "$LOCKER" 2>/dev/null; wait "$LOCKER" 2>/dev/null; }
    multi_stop
    [ -z "$PGDIR" ] || wu_pg_stop "$PGDIR"
}
# shellcheck disable=SC2034 # read by t_cleanup (tests/lib.sh)
T_CLEANUP_HOOK=sk_cleanup

grep -q '^#define HAVE_LIBPQ 1' "$TOP_BUILDDIR/config.h" 2>/dev/null ||
    t_skip_all "built without PostgreSQL (configure --with-postgresql)"
wu_pg_bindir >/dev/null 2>&1 || t_skip_all "no PostgreSQL server binaries"
command -v psql >/dev/null || t_skip_all "psql not installed"
PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/wu-pg.XXXXXX") || exit 1
wu_pg_start "$PGDIR" >/dev/null || {
    t_fail "private PostgreSQL starts" "$(tail -n 20 "$PGDIR/server.log" 2>/dev/null)"
    t_done; exit 1; }
DB=$(multi_pg_uri "$PGDIR")
sed -e "$(rel_set journal write)" -e "$(rel_set busy_timeout 60s)" \
    "$TOP_SRCDIR/conf/waituntil.conf" > "$T_TMP/conf"
PORT=$(stack_free_port)
multi_start "$TOP_SRCDIR" "$TOP_BUILDDIR" "$T_TMP/prefix" "$PORT" 1 "$DB" \
    "$T_TMP/conf" > "$T_TMP/start.out" 2>&1 ||
    { t_fail "instance and nginx start on PostgreSQL" "$(cat "$T_TMP/start.out")"; t_done; exit 1; }
LOG=$(multi_log 1)

landed() { [ "$(multi_sql "SELECT count(*) FROM logs WHERE path LIKE '/log/$1-%'")" -ge "$2" ]; }
lock_hold() {
    psql "$DB" -X -q -c "BEGIN; LOCK TABLE logs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);" \
        >/dev/null 2>&1 &
    LOCKER=$!
    held() { [ "$(multi_sql "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'logs' AND l.mode = 'AccessExclusiveLock' AND l.granted")" -ge 1 ]; }
    t_wait_for "" held
}
lock_release() {
    multi_sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()" >/dev/null
    wait "$LOCKER" 2>/dev/null
    LOCKER=
}

round() { # round NAME STALL(0/1)
    rn=$1
    seq 1 "$N" | sed "s|.*|url = \"$MULTI_URL/log/$rn-&\"\noutput = \"/dev/null\"|" \
        > "$T_TMP/urls.$rn"
    [ "$2" = 0 ] || lock_hold || { t_fail "$rn: lock held"; return; }
    curl -s --no-progress-meter --max-time 120 --parallel --parallel-max 32 \
        -K "$T_TMP/urls.$rn" -w '%{http_code} %{url_effective}\n' \
        > "$T_TMP/codes.$rn" 2>/dev/null &
    cpid=$!
    if [ "$2" = 1 ]; then
        answered() { [ "$(grep -c '^200 ' "$T_TMP/codes.$rn")" -ge $((N / 2)) ]; }
        t_wait_for "" answered || t_fail "$rn: half answered"
    else
        t_wait_for "" landed "$rn" $((N / 4)) || t_fail "$rn: a quarter landed"
    fi
    multi_stop_app 1 KILL
    wait "$cpid"
    [ "$2" = 0 ] || lock_release
    multi_start_app 1 || { t_fail "$rn: the app restarts" "$(tail -n 20 "$LOG")"; return; }
    multi_sql "SELECT path FROM logs WHERE path LIKE '/log/$rn-%'" | sort > "$T_TMP/rows.$rn"
    rel_sigkill_account "$rn" "$2" "$LOG" pg_sigkill
}

round stalled 1
round running 0
rel_log_clean "$LOG"
t_done
