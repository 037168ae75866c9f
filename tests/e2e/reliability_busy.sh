#!/bin/sh
# Reliability 4 -- SQLITE_BUSY: a lock held longer than busy_timeout.
#
# busy_timeout 500ms, busy_retries 20 (backoff 10, 20, 40, 80, then 160 ms,
# each jittered down to half): a write's budget is about 21 x 500 ms + 2 s,
# 12 to 13 s -- long enough that the test reacts within it on a loaded
# machine (one request through the TSan build can take seconds there).
#   A. The outside lock is held until the first attempt has timed out with
#      SQLITE_BUSY (busy_retries moved: the pool counts a retry when it
#      starts it), then released: a retry succeeds -- busy_retries counts
#      it, the row lands, nothing fails.
#   B. The lock is held until the task has failed (+0.5 s), beyond the
#      retry budget: the task fails,
#      counted (tasks_failed) and logged (label, SQL, the SQLite error),
#      never silent; the row is absent.  After the release the pool writes
#      again.
# Figure: retries and time-to-land for A, time-to-failure for B.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
t_tmpdir

BUSY_RETRIES=20
rel_start "$(rel_set busy_timeout 500ms)
$(rel_set busy_retries $BUSY_RETRIES)
$(rel_set workers 1)"

curl -s -o /dev/null "$E2E_URL/log/warm"
wait_rows "SELECT count(*) FROM logs WHERE path='/log/warm'" 1 || t_fail "warm-up row"
st0=$(rel_status)

# ---- A: held longer than busy_timeout, shorter than the retry budget -------
rel_lock_hold "$E2E_DB" || { t_fail "lock held"; t_done; exit 1; }
t0=$(date +%s%N)
expect "A: request answered at once" \
    "$(curl -s -o /dev/null -w '%{http_code}' "$E2E_URL/log/busy-a")" "200"
r0=$(rel_field "$st0" busy_retries)
retried() { [ "$(rel_field "$(rel_status)" busy_retries)" -gt "$r0" ] 2>/dev/null; }
t_wait_for "" retried || t_fail "A: the first attempt met the lock (busy_retries moved)" "$(rel_status)"
hold_ms=$(rel_ms_since "$t0")
rel_lock_release
wait_rows "SELECT count(*) FROM logs WHERE path='/log/busy-a'" 1 &&
    t_ok "A: the row lands after the lock is released" || t_fail "A: row" "$(e2e_log)"
land_ms=$(rel_ms_since "$t0")
st1=$(rel_status)
retriesA=$(($(rel_field "$st1" busy_retries) - $(rel_field "$st0" busy_retries)))
[ "$retriesA" -gt 0 ] && t_ok "A: busy_retries counted ($retriesA)" ||
    t_fail "A: no retry counted" "$st1"
expect "A: nothing failed" "$(rel_field "$st1" tasks_failed)" "$(rel_field "$st0" tasks_failed)"

# ---- B: held beyond the retry budget ---------------------------------------------
rel_lock_hold "$E2E_DB" || { t_fail "lock held (B)"; t_done; exit 1; }
t0=$(date +%s%N)
expect "B: request answered at once" \
    "$(curl -s -o /dev/null -w '%{http_code}' "$E2E_URL/log/busy-b")" "200"
f0=$(rel_field "$st1" tasks_failed)
failed_moved() { [ "$(rel_field "$(rel_status)" tasks_failed)" -gt "$f0" ] 2>/dev/null; }
fail_ms=
t_wait_for "" failed_moved && fail_ms=$(rel_ms_since "$t0")
[ -n "$fail_ms" ] && t_ok "B: counted in tasks_failed after ${fail_ms} ms" ||
    t_fail "B: tasks_failed did not move within $T_WAIT_S s" "$(rel_status)"
sleep 0.5  # the lock is still held: nothing may retry behind our back
rel_lock_release
st2=$(rel_status)
expect "B: exactly one task failed" "$(($(rel_field "$st2" tasks_failed) - f0))" "1"
retriesB=$(($(rel_field "$st2" busy_retries) - $(rel_field "$st1" busy_retries)))
expect "B: the retry budget was used (busy_retries $BUSY_RETRIES)" "$retriesB" "$BUSY_RETRIES"
grep 'event=task_failed' "$REL_LOG" > "$T_TMP/failed"
grep -q 'label="/log/\*" kind=sql.*sql="INSERT INTO logs' "$T_TMP/failed" &&
    t_ok "B: the failure is logged with label and SQL" ||
    t_fail "B: task_failed line" "$(tail -n 5 "$REL_LOG")"
grep -q -i 'busy\|locked' "$T_TMP/failed" &&
    t_ok "B: the log names the cause (BUSY / locked)" ||
    t_fail "B: cause not in the log" "$(cat "$T_TMP/failed")"
expect "B: its row is absent" "$(sql "SELECT count(*) FROM logs WHERE path='/log/busy-b'")" "0"

curl -s -o /dev/null "$E2E_URL/log/busy-c"
wait_rows "SELECT count(*) FROM logs WHERE path='/log/busy-c'" 1 &&
    t_ok "after the release the pool writes again" || t_fail "busy-c row"
stack_stop_app TERM
expect "exit 0 (a failed task was reported, nothing was left)" "$STACK_APP_RC" "0"
rel_figure "busy busy_timeout_ms=500 busy_retries=$BUSY_RETRIES A_hold_ms=$hold_ms A_retries=$retriesA A_land_ms=$land_ms B_hold_ms=until_failed+500 B_retries=$retriesB B_fail_ms=${fail_ms:-none} B_failed=1"
rel_log_clean
t_done
