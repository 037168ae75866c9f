#!/bin/sh
# End-to-end, issue #8: three waituntil instances behind one nginx upstream
# (tools/stack_multi.sh, nginx/upstream-dev.conf.in), one shared
# PostgreSQL database (tests/pg/pg_env.sh, private, unix socket only).
#
# Phase 1: 20,000 POST /log/p1-K through nginx, 32 in parallel; SIGTERM to
# instance 2 once a fifth of them were admitted.  Phase 2: instance 2 is
# started again and rejoins; 20,000 GET /log/p2-K; SIGTERM to instance 3.
# Each phase asserts: the stopped instance exits 0 with a complete drain;
# the survivors keep answering after the kill (their own admitted counters
# grow); every answer is 2xx, none 502, for POST too (nginx never
# re-sends a POST it has sent, so the stopping instance must answer every
# connection already in its socket's backlog, which it does: accept()
# returns them after shutdown(), new connects are refused and go to the
# other instances); and the rows of
# the phase equal its 2xx answers exactly, each path once.  At the end the
# instances' own final counters (ok summed over every process) equal the
# rows.  Figures: "# figure: upstream ..." lines.
#
# WU_E2E_DB=sqlite runs the same on one shared SQLite file (WAL) instead
# (the machinery without PostgreSQL).  SKIP (77) without PostgreSQL server
# binaries or psql, or when the app was built without libpq.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
. "$TOP_SRCDIR/tools/stack_multi.sh"
. "$TESTS_SRCDIR/pg/pg_env.sh"
t_tmpdir

N=${UP_N:-20000}        # requests per phase
P=${UP_PARALLEL:-32}    # curl's parallel transfers
KIND=${WU_E2E_DB:-postgresql}
PGDIR=

up_cleanup() {
    multi_stop
    [ -z "$PGDIR" ] || wu_pg_stop "$PGDIR"
}
# shellcheck disable=SC2034 # read by t_cleanup (tests/lib.sh)
T_CLEANUP_HOOK=up_cleanup

case $KIND in
postgresql)
    grep -q '^#define HAVE_LIBPQ 1' "$TOP_BUILDDIR/config.h" 2>/dev/null ||
        t_skip_all "built without PostgreSQL (configure --with-postgresql)"
    wu_pg_bindir >/dev/null 2>&1 || t_skip_all "no PostgreSQL server binaries"
    command -v psql >/dev/null || t_skip_all "psql not installed"
    # Not under $T_TMP: as root the server runs as another user, who
    # cannot enter a 0700 folder of root's.
    PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/wu-pg.XXXXXX") || exit 1
    wu_pg_start "$PGDIR" >/dev/null || {
        t_fail "private PostgreSQL starts" "$(tail -n 20 "$PGDIR/server.log" 2>/dev/null)"
        t_done; exit 1; }
    DB=$(multi_pg_uri "$PGDIR")
    ;;
sqlite) DB=$T_TMP/db/waituntil.db ;;
*) t_fail "WU_E2E_DB is postgresql or sqlite, not '$KIND'"; t_done; exit 1 ;;
esac

PORT=$(stack_free_port)
if ! multi_start "$TOP_SRCDIR" "$TOP_BUILDDIR" "$T_TMP/prefix" "$PORT" 3 "$DB" \
    > "$T_TMP/start.out" 2>&1; then
    t_fail "3 instances and nginx start ($KIND)" "$(cat "$T_TMP/start.out")"
    t_done; exit 1
fi
t_ok "3 instances and nginx start on one $KIND database"
engine=$(multi_status 1 | sed -n 's/.*"engine":"\([a-z]*\)".*/\1/p')
[ -z "$engine" ] || expect "instance 1 runs on $KIND (/_status engine)" "$engine" "$KIND"

# Each instance answers on its own and writes to the shared database.
for i in 1 2 3; do curl -s -o /dev/null "$MULTI_URL/_wu/$i/log/warm$i"; done
for i in 1 2 3; do multi_wait_idle $i; done
expect "each instance wrote its warm-up row to the shared database" \
    "$(multi_sql "SELECT count(*) FROM logs WHERE path LIKE '/log/warm%'")" "3"

# phase NAME METHOD VICTIM: N requests /log/NAME-K with METHOD, SIGTERM to
# instance VICTIM once N/5 were admitted; sets ph_2xx, ph_502, ph_rc.
phase() {
    name=$1 method=$2 victim=$3
    { [ "$method" = GET ] || echo "request = \"$method\""
      seq 1 "$N" | sed "s|.*|url = \"$MULTI_URL/log/$name-&\"\noutput = \"/dev/null\"|"
    } > "$T_TMP/urls"
    a0=$(multi_sum tasks_admitted)
    rel_curl_codes "$T_TMP/urls" "$T_TMP/codes-$name" "$P" &
    load=$!
    k=0
    while [ $(($(multi_sum tasks_admitted) - a0)) -lt $((N / 5)) ] && [ $k -lt 600 ]; do
        k=$((k + 1)); sleep 0.05
    done
    # The survivors' admitted counters at the kill: what they admit later
    # was answered after it.
    surv0=0
    for i in 1 2 3; do
        [ $i = "$victim" ] || surv0=$((surv0 + $(multi_field "$(multi_status $i)" tasks_admitted)))
    done
    # "Under load" means the SIGTERM lands while requests are still being
    # sent (how long the drain then takes is the instance's business).
    if kill -0 "$load" 2>/dev/null; then running=1; else running=0; fi
    t0=$(date +%s%N)
    multi_stop_app "$victim" TERM
    ph_rc=$MULTI_RC
    stop_ms=$(rel_ms_since "$t0")
    wait "$load"
    surv1=0
    for i in 1 2 3; do
        [ $i = "$victim" ] || surv1=$((surv1 + $(multi_field "$(multi_status $i)" tasks_admitted)))
    done
    for i in 1 2 3; do [ $i = "$victim" ] || multi_wait_idle $i; done

    ph_2xx=$(grep -c '^2' "$T_TMP/codes-$name")
    ph_502=$(grep -c '^502 ' "$T_TMP/codes-$name")
    other=$(grep -v '^2' "$T_TMP/codes-$name" | grep -vc '^502 ')
    rows=$(multi_sql "SELECT count(*) FROM logs WHERE path LIKE '/log/$name-%'")
    dups=$(multi_sql "SELECT count(*) - count(DISTINCT path) FROM logs WHERE path LIKE '/log/$name-%'")
    resent=$(grep "/log/$name-" "$T_TMP/prefix/logs/access.log" | grep -c ', unix:')

    expect "$name: load still running when instance $victim got SIGTERM (raise UP_N if not)" "$running" 1
    expect "$name: instance $victim exits 0 on SIGTERM under load" "$ph_rc" 0
    grep -q 'event=stopped drain=complete' "$(multi_log "$victim")" &&
        t_ok "$name: instance $victim drained completely" ||
        t_fail "$name: instance $victim drain" "$(tail -n 5 "$(multi_log "$victim")")"
    [ $((surv1 - surv0)) -gt 0 ] &&
        t_ok "$name: the other instances answered $((surv1 - surv0)) requests after the kill" ||
        t_fail "$name: nothing answered after the kill" "before $surv0 after $surv1"
    expect "$name: every answer is 2xx or 502 ($(sort "$T_TMP/codes-$name" | cut -d' ' -f1 | uniq -c | tr '\n' ' '))" \
        "$other" 0
    expect "$name: no 502 ($method: the stopping instance answers its backlog)" "$ph_502" 0
    expect "$name: rows == 2xx answers ($ph_2xx), exactly" "$rows" "$ph_2xx"
    expect "$name: no row written twice" "$dups" 0
    rel_figure "upstream $KIND phase=$name method=$method requests=$N answered_2xx=$ph_2xx resp_502=$ph_502 resent_by_nginx=$resent rows=$rows after_kill_2xx=$((surv1 - surv0)) victim_exit=$ph_rc victim_stop_ms=$stop_ms"
}

phase p1 POST 2

# Instance 2 again; it rejoins the upstream once nginx's fail_timeout for
# it has passed: send single requests until one lands on it (bounded).
multi_start_app 2 && t_ok "instance 2 starts again" || t_fail "instance 2 restart"
a2=$(multi_field "$(multi_status 2)" tasks_admitted)
: > "$T_TMP/codes-rejoin"
k=0 end=$(($(date +%s) + T_WAIT_S))
while [ "$(multi_field "$(multi_status 2)" tasks_admitted)" = "$a2" ] &&
    [ "$(date +%s)" -lt "$end" ]; do
    k=$((k + 1))
    curl -s -o /dev/null -w '%{http_code}\n' "$MULTI_URL/log/rejoin-$k" >> "$T_TMP/codes-rejoin"
    sleep 0.1
done
[ "$(multi_field "$(multi_status 2)" tasks_admitted)" != "$a2" ] &&
    t_ok "instance 2 is back in the upstream after $k requests" ||
    t_fail "instance 2 gets no request through the upstream"

phase p2 GET 3

# The rejoin requests, then every process's final counters.
for i in 1 2; do multi_wait_idle $i; done
rj=$(grep -c '^2' "$T_TMP/codes-rejoin")
expect "rejoin: rows == 2xx ($rj)" \
    "$(multi_sql "SELECT count(*) FROM logs WHERE path LIKE '/log/rejoin-%'")" "$rj"
multi_stop
expect "the other instances exit 0 on SIGTERM" "$MULTI_RCS" "1:0 2:0"
total=$(multi_sql "SELECT count(*) FROM logs")
expect "rows == tasks ok summed over all 4 processes" "$(multi_stopped_sum ok)" "$total"
expect "no task failed or was left in any process" \
    "$(multi_stopped_sum failed) $(multi_stopped_sum left)" "0 0"
expect "rows == every 2xx of the test (3 warm-ups + phases + rejoin)" \
    "$total" "$((3 + $(grep -c '^2' "$T_TMP/codes-p1") + rj + $(grep -c '^2' "$T_TMP/codes-p2")))"
for i in 1 2 3; do rel_log_clean "$(multi_log $i)"; done
t_done
