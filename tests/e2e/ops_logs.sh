#!/bin/sh
# End-to-end (issue 17, "logs an operator can use"): through real nginx, a
# write that fails after the answer is logged with nginx's $request_id and
# the values it would have written, and the access log has one line per
# request with the same id.  nginx logs its own $request_id next to the
# URI (a log_format of this test), so the id is shown to be nginx's, not
# one the app made up.  Waits for log lines, never for durations.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
t_tmpdir

ACC=$T_TMP/prefix/logs/wu_access.log
RID=$T_TMP/prefix/logs/nginx_rid.log
LOG=$T_TMP/prefix/logs/waituntil.log
# Substituted into nginx's `access_log @ACCESS_LOG@;` (http level): the
# usual log, plus one of our own with $request_id.
STACK_ACCESS_LOG="$T_TMP/prefix/logs/access.log; log_format rid '\$request_id \$request_uri'; access_log $RID rid"
export STACK_ACCESS_LOG
E2E_SERVER="    access_log $ACC;
    log_values on;"
# The left write at the end: a short drain, so SIGTERM gives up on a write
# stuck behind a lock within a second or so.
E2E_POOL="    drain_timeout 1s;"
e2e_start '
route POST /adduser {
    respond 201 "added";
    defer insert users { id $arg_id; name $arg_name; }
}
'

expect() { # expect DESCRIPTION GOT WANT
    if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "got: $2
want: $3"; fi
}
post() { # post PATH: prints the status code
    curl -s -X POST -o /dev/null -w '%{http_code}' --max-time 60 "$E2E_URL$1"
}
# nginx's $request_id for the request with this URI
nginx_rid() { sed -n "s|^\([0-9a-f]*\) $1\$|\1|p" "$RID" | head -n 1; }
has_line() { grep -F -- "$1" "$2" | grep -Fq -- "$3"; }

sqlite3 "$E2E_DB" "INSERT INTO users (id, name) VALUES ('u1', 'Ann');"

# ---- a failed write names its request and its values ----------------------
# The answer is 201 (the write runs after it); the insert then fails on
# the primary key.  The name has a quote, a double quote and a newline
# followed by text that looks like a key: the line must stay one line.
URI1='/adduser?id=u1&name=O%27Brien%20%22x%22%0Aevent%3Dforged'
expect "the duplicate insert is answered before it runs" "$(post "$URI1")" 201
e2e_wait_log 'event=task_failed .*label="/adduser"' &&
    t_ok "the failed write is logged" ||
    t_fail "failed write logged" "$(e2e_log)"
t_wait_for "" test -s "$RID" || t_fail "nginx logs its request id"
rid1=$(nginx_rid "$URI1")
case $rid1 in
[0-9a-f]*) [ ${#rid1} -eq 32 ] && t_ok "nginx logged its \$request_id ($rid1)" ||
    t_fail "nginx request id" "$rid1" ;;
*) t_fail "nginx request id" "$(cat "$RID")" ;;
esac
line=$(grep -F 'event=task_failed' "$LOG" | grep -F 'label="/adduser"' | head -n 1)
printf '# failed: %s\n' "$line"
case $line in
*" request_id=$rid1 "*) t_ok "the failed write's line carries nginx's request id" ;;
*) t_fail "request id in the failed line" "$line" ;;
esac
case $line in
*"values=\"1:'u1' 2:'O''Brien \\\"x\\\"\\nevent=forged'\""*)
    t_ok "... and its values, escaped on one line" ;;
*) t_fail "values in the failed line" "$line" ;;
esac
expect "no forged line in the log" "$(grep -c '^event=forged' "$LOG")" 0

# ---- the access log ---------------------------------------------------------
t_wait_for "" has_line "request_id=$rid1" "$ACC" "event=access" &&
    t_ok "the access log has the request, by nginx's id" ||
    t_fail "access line" "$(cat "$ACC" 2>/dev/null)"
aline=$(grep -F "request_id=$rid1" "$ACC" | head -n 1)
printf '# access: %s\n' "$aline"
case $aline in
*' event=access method=POST uri="/adduser?id=u1&name=O%27Brien%20%22x%22%0Aevent%3Dforged" status=201 bytes=5 duration_ms='*' writes=1 request_id='"$rid1")
    t_ok "access line: method, uri, status, bytes, duration, writes, id" ;;
*) t_fail "access line fields" "$aline" ;;
esac
expect "GET /hello answers 200" "$(curl -s -o /dev/null -w '%{http_code}' "$E2E_URL/hello")" 200
t_wait_for "" has_line 'uri=/hello ' "$ACC" 'status=200 bytes=5' &&
    t_ok "a request without writes: writes=0" ||
    t_fail "hello access line" "$(tail -n 3 "$ACC")"
has_line 'uri=/hello ' "$ACC" ' writes=0 ' || t_fail "hello writes=0" "$(tail -n 3 "$ACC")"
expect "every access line starts with ts=" "$(grep -vc '^ts=' "$ACC")" 0
# /_status counts them: at least the lines in the file (the status
# request's own line is written after its answer), none dropped.
n_acc=$(wc -l < "$ACC")
st=$(e2e_status)
a_lines=$(e2e_field "$st" access_lines)
[ "${a_lines:-0}" -ge "$n_acc" ] 2>/dev/null &&
    t_ok "/_status access_lines ($a_lines) >= lines in the file ($n_acc)" ||
    t_fail "/_status access_lines" "got '$a_lines', file has $n_acc"
expect "/_status access_dropped" "$(e2e_field "$st" access_dropped)" 0

# ---- reopen: the access log follows a rotation -----------------------------
mv "$ACC" "$ACC.1"
kill -USR1 "$STACK_APP_PID"
e2e_wait_log 'event=reopen_access_log ok=1' || t_fail "reopen logged" "$(e2e_log)"
curl -s -o /dev/null "$E2E_URL/hello?after=rotate"
t_wait_for "" has_line 'uri="/hello?after=rotate"' "$ACC" 'status=200' &&
    t_ok "after USR1 the access log is written to the new file" ||
    t_fail "access log reopened" "$(ls -l "$T_TMP/prefix/logs")"

# ---- a write left at shutdown names its request and values ---------------
# An outside connection holds the write lock: the write waits in the
# pool; SIGTERM's drain (1 s) ends before it can run, so it is left.
e2e_lock_hold || t_fail "outside lock taken"
URI2='/adduser?id=u2&name=Left%20behind'
expect "a write behind the lock is answered" "$(post "$URI2")" 201
t_wait_for "" test -n "$(nginx_rid "$URI2")" || t_fail "nginx logs the id"
rid2=$(nginx_rid "$URI2")
stack_stop_app TERM
e2e_lock_release
left=$(grep -F 'event=task_left' "$LOG" | grep -F 'label="/adduser"' | head -n 1)
printf '# left: %s\n' "$left"
case $left in
*" request_id=$rid2 "*"values=\"1:'u2' 2:'Left behind'\""*)
    t_ok "the left write's line carries nginx's request id and its values" ;;
*) t_fail "left line" "$(e2e_log)" ;;
esac
expect "the left write was not written" \
    "$(sql "SELECT count(*) FROM users WHERE id='u2'")" 0
t_done
