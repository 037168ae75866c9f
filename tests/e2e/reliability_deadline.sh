#!/bin/sh
# Reliability 2 -- the drain deadline is exceeded.
#
# drain_timeout 2s, task_timeout 30s (larger, so only the deadline cuts).
# Worker 1 runs the `slow` callback (?ms=10000); worker 2 runs an SQL
# insert stuck behind an outside BEGIN IMMEDIATE (busy_timeout 30s); more
# inserts and a slow callback wait in the queue.  On SIGTERM the process
# must exit within deadline + 1 s, with a non-zero status, and log every
# task it leaves behind: its label, and for an SQL task its SQL.  The
# stop's duration is the app's own ("stopping" to "stopped" in its log;
# it _exits right after): a loaded machine's scheduling of the processes
# around it does not stretch it.
# Figure: exit status, app_stop_ms (by the app's clock), stop_ms (SIGTERM
# -> exit seen by the test), tasks reported left.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
t_tmpdir

DEADLINE_S=2
rel_start "$(rel_set busy_timeout 30s)
$(rel_set drain_timeout ${DEADLINE_S}s)
$(rel_set task_timeout 30s)
$(rel_set workers 2)" '
route POST /slow { handler slow; }'

rel_lock_hold "$E2E_DB" || { t_fail "lock held"; t_done; exit 1; }
# One request at a time so each worker takes exactly one: the first
# worker sleeps in the callback, the second waits for the lock.  The next
# request goes once the previous task is running (queue_in_flight), so
# the two never share a batch.
in_flight() { [ "$(rel_field "$(rel_status)" queue_in_flight)" = "$1" ]; }
c1=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$E2E_URL/slow?ms=10000")
t_wait_for "" in_flight 1 || t_fail "the slow callback runs" "$(rel_status)"
c2=$(curl -s -o /dev/null -w '%{http_code}' "$E2E_URL/log/stuck")
t_wait_for "" in_flight 2 || t_fail "the insert runs (stuck behind the lock)" "$(rel_status)"
c3=$(curl -s -o /dev/null -w '%{http_code}' "$E2E_URL/log/queued-1")
c4=$(curl -s -o /dev/null -w '%{http_code}' "$E2E_URL/log/queued-2")
c5=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$E2E_URL/slow?ms=10000")
expect "five deferred tasks answered 200" "$c1 $c2 $c3 $c4 $c5" "200 200 200 200 200"
st=$(rel_status)
expect "two tasks in flight, three queued" \
    "$(rel_field "$st" queue_in_flight) $(rel_field "$st" queue_queued)" "2 3"

t0=$(date +%s%N)
kill -TERM "$STACK_APP_PID"
# Bounded: an app that waited for its tasks (10 s, 30 s) would still end.
app_gone() { ! kill -0 "$STACK_APP_PID" 2>/dev/null; }
t_wait_for "" app_gone || kill -KILL "$STACK_APP_PID"
code=0
wait "$STACK_APP_PID" || code=$?
stop_ms=$(rel_ms_since "$t0")
STACK_APP_PID=
rel_lock_release
app_stop_ms=$(t_log_span "$REL_LOG" stopping stopped) || app_stop_ms=

[ "$code" -ne 0 ] && [ "$code" -ne 137 ] && t_ok "exit status is non-zero ($code)" ||
    t_fail "exit status $code (0 although tasks were left, or killed)"
[ -n "$app_stop_ms" ] && [ "$app_stop_ms" -le $((DEADLINE_S * 1000 + 1000)) ] &&
    t_ok "stopped within deadline + 1 s by the app's clock (${app_stop_ms} ms; exit seen after ${stop_ms} ms)" ||
    t_fail "stop took ${app_stop_ms:-?} ms by the app's clock (deadline ${DEADLINE_S} s)" \
        "$(grep -E 'event=(stopping|stopped)' "$REL_LOG")"

grep 'event=task_left' "$REL_LOG" > "$T_TMP/left"
nleft=$(wc -l < "$T_TMP/left")
nsql=$(grep -c 'label="/log/\*" kind=sql detail="queued at deadline" sql="INSERT INTO logs' "$T_TMP/left")
expect "both queued inserts logged left, with label and SQL" "$nsql" "2"
grep -q 'label="/slow" kind=callback detail="queued at deadline"' "$T_TMP/left" &&
    t_ok "the queued callback logged left, with its label" ||
    t_fail "left callback task" "$(cat "$T_TMP/left")"
# The insert stuck behind the lock and the sleeping callback were running
# at the deadline: each is reported (left, failed after the interrupt, or
# hung), never silent.
grep -E 'event=(task_failed|task_hung|task_left) worker=[0-9]+ label="/log/\*" kind=sql' "$REL_LOG" |
    grep -q 'sql="INSERT INTO logs' && t_ok "the insert stuck behind the lock is reported with its SQL" ||
    t_fail "stuck insert not reported" "$(grep -E 'event=' "$REL_LOG" | tail -n 15)"
grep -E -q 'event=(task_failed|task_hung|task_left) worker=[0-9]+ label="/slow"' "$REL_LOG" &&
    t_ok "the running slow callback is reported" ||
    t_fail "running callback not reported" "$(grep -E 'event=' "$REL_LOG" | tail -n 15)"
expect "tasks reported: 5 of 5 (4 task_left + 1 task_failed/hung)" \
    "$(grep -E -c 'event=(task_left|task_failed|task_hung) ' "$REL_LOG")" "5"
stopped=$(grep 'event=stopped' "$REL_LOG")
case $stopped in
*drain=incomplete*) t_ok "stopped line says drain=incomplete" ;;
*) t_fail "stopped line" "$stopped" ;;
esac
adm=$(printf '%s' "$stopped" | sed -n 's/.*admitted=\([0-9]*\).*/\1/p')
ok=$(printf '%s' "$stopped" | sed -n 's/.* ok=\([0-9]*\).*/\1/p')
fl=$(printf '%s' "$stopped" | sed -n 's/.*failed=\([0-9]*\).*/\1/p')
lf=$(printf '%s' "$stopped" | sed -n 's/.*left=\([0-9]*\).*/\1/p')
expect "admitted = ok + failed + left ($adm = $ok + $fl + $lf)" "$adm" "$((ok + fl + lf))"
expect "no row of a left task landed" \
    "$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/queued-%'")" "0"
rel_figure "deadline drain_timeout_s=$DEADLINE_S exit=$code app_stop_ms=$app_stop_ms stop_ms=$stop_ms task_left_lines=$nleft admitted=$adm ok=$ok failed=$fl left=$lf"
rel_log_clean
t_done
