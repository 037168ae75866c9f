#!/bin/sh
# End-to-end: the shipped routes through real nginx on loopback, plus test
# routes appended to the shipped conf.  Every request goes through nginx.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
t_tmpdir

e2e_start '
route POST /slow { handler slow; }
route POST /json {
    respond 201 application/json "{\"ok\":true}";
    defer insert logs {
        method    $request_method;
        path      $body_path;
        timestamp $time_iso;
    }
}
route GET /users/:id { respond 200 "user"; }
'

# req METHOD PATH [curl args]: prints "CODE BODY" on one line.
req() {
    m=$1 p=$2; shift 2
    curl -s -X "$m" -o "$T_TMP/body" -w '%{http_code}' "$@" "$E2E_URL$p" >"$T_TMP/code"
    printf '%s %s' "$(cat "$T_TMP/code")" "$(tr -d '\n' <"$T_TMP/body")"
}
expect() { # expect DESCRIPTION GOT WANT
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "got: $2
want: $3"; fi
}

# ---- the seed's three background writes ----------------------------------
expect "GET /log answers 200 and its text" "$(req GET /log)" \
    "200 Request logged in the background!"
wait_rows "SELECT count(*) FROM logs WHERE method='GET' AND path='/log'" 1 &&
    t_ok "GET /log: its row lands after the response" ||
    t_fail "GET /log row" "$(e2e_log)"
expect "PUT /log/a/b answers 200 (any method, prefix)" \
    "$(req PUT /log/a/b)" "200 Request logged in the background!"
wait_rows "SELECT count(*) FROM logs WHERE method='PUT' AND path='/log/a/b'" 1 &&
    t_ok "PUT /log/a/b row has method and path" || t_fail "PUT /log/a/b row"
ts=$(sql "SELECT timestamp FROM logs WHERE path='/log/a/b'")
case $ts in
[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9]Z)
    t_ok "timestamp is ISO-8601 UTC with milliseconds ($ts)" ;;
*) t_fail "timestamp format" "$ts" ;;
esac

sqlite3 "$E2E_DB" "INSERT INTO users (id, name) VALUES ('u1', 'Ann'), ('u2', 'Bob');
INSERT INTO sessions (id, user_id) VALUES ('s1', 'u1'), ('s2', 'u2');"
expect "POST /seen answers 200" "$(req POST /seen -H 'X-User-ID: u1')" \
    "200 User activity updated in the background."
wait_rows "SELECT count(*) FROM users WHERE id='u1' AND last_seen IS NOT NULL" 1 &&
    t_ok "POST /seen sets users.last_seen" || t_fail "last_seen set"
expect "POST /seen without X-User-ID answers 200" "$(req POST /seen)" \
    "200 User activity updated in the background."
adm() { curl -s "$E2E_URL/_status" | sed -E 's/.*"tasks_admitted":([0-9]+).*/\1/'; }
a0=$(adm)
req POST /seen -H 'X-User-ID;' >/dev/null
expect "an empty X-User-ID registers no write" "$(adm)" "$a0"
expect "POST /logout answers 200" "$(req POST /logout -H 'X-Session-ID: s1')" \
    "200 Session invalidated in the background."
wait_rows "SELECT count(*) FROM sessions WHERE id='s1'" 0 &&
    t_ok "POST /logout deletes the session" || t_fail "session deleted"
expect "POST /logout without X-Session-ID answers 200" "$(req POST /logout)" \
    "200 Session invalidated in the background."
expect "GET /hello" "$(req GET /hello)" "200 hello"
expect "POST /users/u9/touch (a C handler) answers 202" \
    "$(req POST /users/u9/touch)" '202 {"queued":true}'
wait_rows "SELECT count(*) FROM users WHERE id='u9' AND last_seen IS NOT NULL" 1 &&
    t_ok "... and upserts users.last_seen after the answer" || t_fail "touch upsert"

# Without the header nothing was written: drain, then look.
e2e_wait_idle || t_fail "the pool drains" "$(e2e_status)"
expect "no write without the header (u2 untouched, s2 kept)" \
    "$(sql "SELECT count(*) FROM users WHERE id='u2' AND last_seen IS NULL") $(sql "SELECT count(*) FROM sessions WHERE id='s2'")" \
    "1 1"

# ---- the response does not wait for the write -----------------------------
# An ordering, not a duration: while an outside connection holds the
# database's write lock no deferred write can land (the pool waits for
# the lock: busy_timeout 5 s, busy_retries 5, about 30 s), so an answer
# that comes while the lock is held did not wait for its write.
e2e_lock_hold || t_fail "an outside connection holds the write lock" \
    "$(cat "$T_TMP/lock.out")"
t0=$(date +%s%N)
expect "GET /log/nowait answers while the write lock is held" \
    "$(req GET /log/nowait)" "200 Request logged in the background!"
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
expect "... in ${dt} ms, without its row: the answer did not wait for the write" \
    "$(sql "SELECT count(*) FROM logs WHERE path='/log/nowait'")" "0"
e2e_lock_release
wait_rows "SELECT count(*) FROM logs WHERE path='/log/nowait'" 1 &&
    t_ok "... and the row lands once the lock is released" ||
    t_fail "/log/nowait row" "$(e2e_log)"
# A C handler's deferred callback (it sleeps, then writes a row).
expect "POST /slow?ms=500 answers" "$(req POST '/slow?ms=500')" "200 slow write queued"
wait_rows "SELECT count(*) FROM logs WHERE path='/slow'" 1 &&
    t_ok "the slow task's row lands later" || t_fail "slow row" "$(e2e_log)"

# ---- HTTP errors -------------------------------------------------------------
expect "404 for an unknown path" "$(req GET /nope | cut -c1-3)" "404"
req POST /hello -D "$T_TMP/hdr" >/dev/null
grep -qi '^Allow: GET, HEAD' "$T_TMP/hdr" && grep -q ' 405' "$T_TMP/hdr" &&
    t_ok "405 with Allow: GET, HEAD" || t_fail "405 Allow" "$(cat "$T_TMP/hdr")"
h=$(curl -s -I "$E2E_URL/hello" -w '%{http_code} %{size_download}' -o /dev/null)
expect "HEAD /hello: 200 without a body" "$h" "200 0"
big=$T_TMP/big
head -c 1100000 /dev/zero | tr '\0' a > "$big"
expect "413 for a body over 1m" \
    "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$big" "$E2E_URL/log")" "413"
expect "malformed JSON: 400" "$(req POST /json -H 'Content-Type: application/json' --data '{"path": ' | cut -c1-3)" "400"
expect "JSON body field feeds a deferred value" \
    "$(req POST /json -H 'Content-Type: application/json' --data '{"path":"/from-json"}')" \
    '201 {"ok":true}'
wait_rows "SELECT count(*) FROM logs WHERE path='/from-json' AND method='POST'" 1 &&
    t_ok "JSON field stored" || t_fail "JSON field stored"
expect "named segment route" "$(req GET /users/42)" "200 user"

# ---- values are bound, never pasted -------------------------------------------
inj="x'); DROP TABLE users; --"
req POST /seen -H "X-User-ID: $inj" >/dev/null
req POST /json -H 'Content-Type: application/json' --data "{\"path\":\"$inj\"}" >/dev/null
wait_rows "SELECT count(*) FROM logs WHERE path=\"$inj\"" 1 &&
    t_ok "an SQL-injection string is stored verbatim" || t_fail "injection stored"
expect "users table survived (u1, u2, u9)" "$(sql "SELECT count(*) FROM users")" "3"

# ---- 200 concurrent requests -> 200 rows -------------------------------------
before=$(sql "SELECT count(*) FROM logs")
# -o applies to one URL only: each gets its own output line in the list.
seq 1 200 | sed "s|.*|url = \"$E2E_URL/log/c&\"\noutput = \"/dev/null\"|" > "$T_TMP/urls"
curl -s --no-progress-meter --parallel --parallel-max 50 -K "$T_TMP/urls" -w '%{http_code}\n' > "$T_TMP/codes"
expect "200 concurrent requests all 200" "$(grep -c '^200$' "$T_TMP/codes")" "200" ||
    sort "$T_TMP/codes" | uniq -c
wait_rows "SELECT count(*) - $before FROM logs" 200 &&
    t_ok "... and 200 rows" || t_fail "200 rows" "$(sql "SELECT count(*) - $before FROM logs")"

# ---- the status route reconciles with the rows -----------------------------------
e2e_wait_idle || t_fail "the pool drains" "$(e2e_status)"
st=$(e2e_status)
ok=$(echo "$st" | sed -E 's/.*"tasks_ok":([0-9]+).*/\1/')
failed=$(echo "$st" | sed -E 's/.*"tasks_failed":([0-9]+).*/\1/')
admitted=$(echo "$st" | sed -E 's/.*"tasks_admitted":([0-9]+).*/\1/')
expect "status: admitted = ok + failed" "$admitted" "$((ok + failed))"
# Each /log and /json request wrote one row, /seen and /logout the others.
rows=$(sql "SELECT count(*) FROM logs")
[ "$failed" -eq 0 ] && t_ok "no deferred task failed" || t_fail "tasks failed: $failed" "$(e2e_log)"
# Every logs row is one task (the slow callback's too); the other tasks
# are /seen u1, /logout s1, the injected /seen and the touch upsert: 4.
expect "status tasks_ok matches the writes made" "$ok" "$((rows + 4))"
pr=$(curl -s "$E2E_URL/_status?format=prometheus" | grep '^waituntil_tasks_ok_total ')
expect "status in Prometheus format: the same tasks_ok" "$pr" "waituntil_tasks_ok_total $ok"

# ---- USR1 does not stop the server (libfcgi's USR1 handler would) ----
# Asked once the app has handled it (its log says so), not after a pause.
# (USR2 starts a binary upgrade: tests/e2e/ops_upgrade.sh.)
kill -USR1 "$STACK_APP_PID"
e2e_wait_log 'event=reopen_log ' ||
    t_fail "USR1 handled (logged)" "$(e2e_log)"
ok1=$(req GET /hello); ok2=$(req GET /hello); ok3=$(req GET /hello)
expect "after SIGUSR1 the server still answers" "$ok1|$ok2|$ok3" \
    "200 hello|200 hello|200 hello"

# ---- SIGTERM under load: every 2xx has its row -------------------------------------
before=$(sql "SELECT count(*) FROM logs")
seq 1 20000 | sed "s|.*|url = \"$E2E_URL/log/t&\"\noutput = \"/dev/null\"|" > "$T_TMP/urls"
curl -s --no-progress-meter --parallel --parallel-max 32 -K "$T_TMP/urls" -w '%{http_code}\n' > "$T_TMP/codes" 2>/dev/null &
load=$!
# SIGTERM once the load is being answered (its first row landed), not
# after a pause: curl alone needs 0.4-0.8 s to read its 20,000 entries
# on a loaded machine, and a stop sent before its first request makes a
# run with nothing to check.
load_answered() {
    [ "$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/t%'")" -gt 0 ] ||
        ! kill -0 "$load" 2>/dev/null
}
t_wait_for "" load_answered
kill -0 "$load" 2>/dev/null && running=1 || running=0
stack_stop_app TERM
code=$STACK_APP_RC
wait $load
n2xx=$(grep -c '^2' "$T_TMP/codes")
rows=$(( $(sql "SELECT count(*) FROM logs") - before ))
expect "SIGTERM under load: the load was still running at the stop" "$running" "1"
expect "SIGTERM under load: exit status 0" "$code" "0"
expect "SIGTERM under load: rows == 2xx answers ($n2xx)" "$rows" "$n2xx"
[ "$n2xx" -gt 0 ] && t_ok "some requests were answered before the stop ($n2xx)" ||
    t_fail "no 2xx before the stop"
t_done
