#!/bin/sh
# Reliability (issue 15) -- SIGKILL under load, then restart: with
# `journal write` no answered write is lost and none is written twice.
#
# Every request has its own path (/log/k<round>-<i>), so each answered
# write is one row we can look for.  Two rounds:
#   stalled -- an outside connection holds the write lock, so every
#              answered write is still queued when SIGKILL comes: all of
#              them must come back from the journal.
#   running -- the pool commits freely; SIGKILL once a quarter landed
#              (some committed, some queued, some being committed).
#   handler -- as stalled, through a C handler (POST /users/<id>/touch:
#              waituntil_defer_query's upsert, answered 202): a write
#              deferred from C is journaled like a declarative one.
# After each kill the app is started again (nginx stays), replays before
# serving, and the rows are counted against the 200s: every 200 has its
# row, no path has two rows.  A row without a 200 is allowed (journaled,
# killed before the answer got out).
# Figure: per round answered, rows, lost, duplicated, replayed.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
t_tmpdir

N=${REL_KILL_N:-3000}
rel_start "$(rel_set workers 2)
$(rel_set busy_timeout 30s)
$(rel_set journal ${REL_KILL_JOURNAL:-write})"

hello_ok() {
    [ "$(curl -s -o /dev/null --max-time 30 -w '%{http_code}' "$E2E_URL/hello")" = 200 ]
}
# The app again, as stack_start runs it (nginx keeps running).
app_restart() {
    "$STACK_APP" -c "$E2E_CONF" -p "$TOP_SRCDIR" -l "unix:$STACK_SOCKET" \
        -d "$E2E_DB" 2>>"$REL_LOG" &
    STACK_APP_PID=$!
    t_wait_for "" hello_ok
}
landed() { [ "$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/$1-%'")" -ge "$2" ]; }

round() { # round NAME STALL(0/1) [handler]
    rn=$1
    if [ "${3:-}" = handler ]; then
        # The row's "path" is the request's: /users/<id>/touch.
        seq 1 "$N" | sed "s|.*|url = \"$E2E_URL/users/$rn-&/touch\"\noutput = \"/dev/null\"|" \
            > "$T_TMP/urls.$rn"
        method=POST want=202
    else
        seq 1 "$N" | sed "s|.*|url = \"$E2E_URL/log/$rn-&\"\noutput = \"/dev/null\"|" \
            > "$T_TMP/urls.$rn"
        method=GET want=200
    fi
    [ "$2" = 0 ] || rel_lock_hold "$E2E_DB" ||
        { t_fail "lock held"; return; }
    curl -s --no-progress-meter --max-time 120 --parallel --parallel-max 32 \
        -X "$method" -K "$T_TMP/urls.$rn" -w '%{http_code} %{url_effective}\n' \
        > "$T_TMP/codes.$rn" 2>/dev/null &
    cpid=$!
    if [ "$2" = 1 ]; then
        # Half of them answered (and journaled), none landed.
        answered() { [ "$(grep -c "^$want " "$T_TMP/codes.$rn")" -ge $((N / 2)) ]; }
        t_wait_for "" answered || t_fail "$rn: half answered"
    else
        t_wait_for "" landed "$rn" $((N / 4)) || t_fail "$rn: a quarter landed"
    fi
    kill -KILL "$STACK_APP_PID"
    wait "$STACK_APP_PID" 2>/dev/null
    STACK_APP_PID=
    wait "$cpid"
    [ "$2" = 0 ] || rel_lock_release
    app_restart || { t_fail "$rn: the app restarts" "$(tail -n 20 "$REL_LOG")"; return; }
    # The replay ran before the first accept: the rows are all there now.
    if [ "${3:-}" = handler ]; then
        sql "SELECT '/users/' || id || '/touch' FROM users WHERE id LIKE '$rn-%'"
    else
        sql "SELECT path FROM logs WHERE path LIKE '/log/$rn-%'"
    fi | sort > "$T_TMP/rows.$rn"
    rel_sigkill_account "$rn" "$2" "$REL_LOG" sigkill "$want"
}

round stalled 1
round running 0
round handler 1 handler
rel_log_clean
t_done
