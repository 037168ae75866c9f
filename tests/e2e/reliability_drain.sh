#!/bin/sh
# Reliability 1 -- graceful drain with a stalled writer.
#
# An outside connection holds BEGIN IMMEDIATE, so the pool cannot commit;
# 2,000 deferred inserts arrive through nginx and are all answered 200
# (nothing lands while the lock is held); SIGTERM arrives while the writer
# is still stalled and the lock is released a second later: every answered
# insert must land and the process must exit 0 within drain_timeout.
# Figure: rows_lost, exit status, drain_ms (SIGTERM -> exit).
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
t_tmpdir

N=${REL_DRAIN_N:-2000}
DEADLINE_S=20
rel_start "$(rel_set busy_timeout 30s)
$(rel_set drain_timeout ${DEADLINE_S}s)
$(rel_set workers 2)"

curl -s -o /dev/null "$E2E_URL/log/warmup"
wait_rows "SELECT count(*) FROM logs WHERE path='/log/warmup'" 1 ||
    t_fail "warm-up row" "$(e2e_log)"

rel_lock_hold "$E2E_DB" && t_ok "outside connection holds BEGIN IMMEDIATE" ||
    { t_fail "lock held"; t_done; exit 1; }

seq 1 "$N" | sed "s|.*|url = \"$E2E_URL/log/d&\"\noutput = \"/dev/null\"|" > "$T_TMP/urls"
t0=$(date +%s%N)
rel_curl_codes "$T_TMP/urls" "$T_TMP/codes" 32
load_ms=$(rel_ms_since "$t0")
n200=$(grep -c '^200 ' "$T_TMP/codes")
expect "$N deferred inserts answered 200 while the writer is stalled" "$n200" "$N"
st=$(rel_status)
expect "nothing landed while the lock is held" \
    "$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/d%'")" "0"
depth=$(rel_field "$st" queue_depth)
[ "${depth:-0}" -ge "$N" ] && t_ok "the queue holds them (depth $depth)" ||
    t_fail "queue depth" "$st"

# SIGTERM while the writer is still stalled; release one second after the
# app has begun its stop (logged "stopping"), so the drain does meet the
# stalled writer however late the signal is handled.
t0=$(date +%s%N)
kill -TERM "$STACK_APP_PID"
stopping() { grep -q 'event=stopping' "$REL_LOG"; }
t_wait_for "" stopping || t_fail "the app begins its stop" "$(e2e_log)"
sleep 1
rel_lock_release
code=0
wait "$STACK_APP_PID" || code=$?
drain_ms=$(rel_ms_since "$t0")
STACK_APP_PID=
rows=$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/d%'")
dup=$(sql "SELECT count(*) - count(DISTINCT path) FROM logs WHERE path LIKE '/log/d%'")
expect "exit status 0 after the drain" "$code" "0"
expect "every answered insert landed (rows == 200 answers)" "$rows" "$n200"
expect "no insert ran twice" "$dup" "0"
[ "$drain_ms" -lt $((DEADLINE_S * 1000)) ] &&
    t_ok "drained within drain_timeout (${drain_ms} ms < ${DEADLINE_S} s)" ||
    t_fail "drain took ${drain_ms} ms"
grep -q 'event=stopped .*drain=complete' "$REL_LOG" &&
    t_ok "the app logs a complete drain" || t_fail "stopped line" "$(e2e_log)"
rel_figure "drain requests=$N answered_200=$n200 load_ms=$load_ms rows_lost=$((n200 - rows)) exit=$code drain_ms=$drain_ms (lock released 1000 ms after SIGTERM)"
rel_log_clean
t_done
