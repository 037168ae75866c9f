#!/bin/sh
# Reliability -- the SQLite file removed under load, then a backup put
# back (issue 13, item 4).  Through nginx, the shipped conf.
#
#   1. 200 GET /log/a-K land; a backup of the database is taken.
#   2. `rm` of the database file, then GET /log/s-K one after the other
#      until the first 503, then 2,000 GET /log/b-K, 16 in parallel: all
#      503.  No write after the rm is counted ok (tasks_ok stays 200);
#      each 200 after it (promised before the loss was seen) is counted
#      failed and in the log; the 503s carry Retry-After and
#      agree with responses_503_db_unavailable; /_status says "lost"
#      and why; the log holds one db_lost line and few task_failed lines
#      whose repeated= counts add up to the failures; nothing is created
#      at the path.
#   3. The backup is moved into place: the server reopens it (db_status
#      ok) and 500 GET /log/c-K all land there.  Rows at the path ==
#      tasks_ok exactly, integrity_check ok, exit 0.
# Figure: answers, counters, time from rm to the first 503, log lines.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
t_tmpdir

rel_start ""

urls() { # urls NAME COUNT: a curl config of COUNT GET /log/NAME-K
    i=0
    : > "$T_TMP/urls-$1"
    while [ $i -lt "$2" ]; do
        printf 'url = "%s/log/%s-%d"\noutput = "/dev/null"\n' "$E2E_URL" "$1" $i \
            >> "$T_TMP/urls-$1"
        i=$((i + 1))
    done
}
field() { rel_field "$(rel_status)" "$1"; }

# ---- 1. before -----------------------------------------------------------------
urls a 200
rel_curl_codes "$T_TMP/urls-a" "$T_TMP/codes-a" 8
expect "phase a: 200 answers 200" "$(grep -c '^200 ' "$T_TMP/codes-a")" "200"
wait_rows "SELECT count(*) FROM logs" 200 100 && t_ok "phase a: 200 rows" ||
    t_fail "phase a rows" "$(sql 'SELECT count(*) FROM logs')"
sqlite3 -cmd '.timeout 5000' "$E2E_DB" ".backup '$T_TMP/backup.db'"
expect "backup holds the 200 rows" \
    "$(sqlite3 "$T_TMP/backup.db" 'SELECT count(*) FROM logs')" "200"
ok0=$(field tasks_ok)
expect "tasks_ok before the rm" "$ok0" "200"

# ---- 2. rm under load ------------------------------------------------------------
# One request after the other until the first 503: those answered 200
# were promised before the loss was seen, and must be counted failed.
rm "$E2E_DB"
t0=$(date +%s%N)
first503= s200=0
i=0
while [ $i -lt 1000 ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$E2E_URL/log/s-$i")
    case $code in
    503) first503=$(rel_ms_since "$t0"); break ;;
    200) s200=$((s200 + 1)) ;;
    *) t_fail "answer $code after the rm" ;;
    esac
    i=$((i + 1))
done
[ -n "$first503" ] && t_ok "503 within $first503 ms of the rm ($s200 answered 200 before)" ||
    t_fail "no 503 within 1000 requests after the rm" "$(e2e_log)"
# Then 2,000 in parallel: the database is lost, none is promised.
urls b 2000
rel_curl_codes "$T_TMP/urls-b" "$T_TMP/codes-b" 16
n503=$(grep -c '^503 ' "$T_TMP/codes-b")
expect "phase b: all 2000 answers 503" "$n503" "2000"
hdr=$(curl -s -i "$E2E_URL/log/hdr" | tr -d '\r')
case $hdr in
*"HTTP/1.1 503"*"Retry-After: 1"*) t_ok "a refused write: 503 with Retry-After: 1" ;;
*) t_fail "503 + Retry-After" "$hdr" ;;
esac
# the writes answered 200 finish (failed) within a moment
settled() { [ "$(($(field tasks_ok) + $(field tasks_failed)))" -ge "$(field tasks_admitted)" ]; }
t_wait_for "" settled || t_fail "the writes admitted before the rm finish" "$(rel_status)"
st=$(rel_status)
ok1=$(rel_field "$st" tasks_ok)
failed1=$(rel_field "$st" tasks_failed)
expect "no write after the rm counted ok" "$ok1" "$ok0"
expect "each write answered 200 after the rm counted failed" "$failed1" "$s200"
expect "admitted == ok + failed" "$(rel_field "$st" tasks_admitted)" "$((ok1 + failed1))"
expect "responses_503_db_unavailable counts the 503s" \
    "$(rel_field "$st" responses_503_db_unavailable)" \
    "$(($(rel_field "$st" tasks_unavailable)))"
case $st in
*'"db_status":"lost","db_reason":"database file '*' was removed'*) t_ok "status: db_status lost, removed" ;;
*) t_fail "status: db_status" "$st" ;;
esac
expect "status: db_lost 1" "$(rel_field "$st" db_lost)" "1"
[ ! -e "$E2E_DB" ] && t_ok "nothing was created at the path" ||
    t_fail "a file appeared at the path"
# once the old connections are closed: within a second or two
no_wal() { [ ! -e "$E2E_DB-wal" ] && [ ! -e "$E2E_DB-shm" ]; }
t_wait_for "" no_wal
[ ! -e "$E2E_DB-wal" ] && [ ! -e "$E2E_DB-shm" ] &&
    t_ok "the old file's -wal/-shm were taken away" ||
    t_fail "-wal/-shm left at the path" "$(ls -l "$T_TMP/db")"
expect "one db_lost line" "$(grep -c 'event=db_lost' "$REL_LOG")" "1"
# the last repeated=N summary is written within about a second
all_logged() { [ "$(rel_log_events 'event=task_failed' "$REL_LOG")" -ge "$failed1" ]; }
t_wait_for "" all_logged
expect "every failed write is in the log (repeated= counted)" \
    "$(rel_log_events 'event=task_failed' "$REL_LOG")" "$failed1"
lines=$(grep -c 'event=task_failed' "$REL_LOG")
[ "$lines" -le 8 ] && t_ok "... in $lines task_failed lines" ||
    t_fail "too many task_failed lines" "$lines for $failed1 failures"

# ---- 3. the backup back in place ----------------------------------------------------
mv "$T_TMP/backup.db" "$E2E_DB"
t1=$(date +%s%N)
reopened() { case $(rel_status) in *'"db_status":"ok"'*) return 0 ;; esac; return 1; }
t_wait_for "" reopened
reopen_ms=$(rel_ms_since "$t1")
case $(rel_status) in
*'"db_status":"ok"'*) t_ok "the backup put back is reopened ($reopen_ms ms)" ;;
*) t_fail "not reopened" "$(rel_status)" ;;
esac
urls c 500
rel_curl_codes "$T_TMP/urls-c" "$T_TMP/codes-c" 8
expect "phase c: 500 answers 200" "$(grep -c '^200 ' "$T_TMP/codes-c")" "500"
wait_rows "SELECT count(*) FROM logs WHERE path LIKE '/log/c-%'" 500 100 &&
    t_ok "phase c: 500 rows in the file at the path" || t_fail "phase c rows"
stack_stop_app TERM
expect "exit 0" "$STACK_APP_RC" "0"
rows=$(sql "SELECT count(*) FROM logs")
okend=$(sed -n 's/.*event=stopped.* ok=\([0-9]*\).*/\1/p' "$REL_LOG" | tail -n 1)
expect "rows at the path == writes counted ok ($okend)" "$rows" "$okend"
expect "no row of phase b" "$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/b-%' OR path LIKE '/log/s-%'")" "0"
expect "integrity_check" "$(sql 'PRAGMA integrity_check')" "ok"
rel_figure "dbfile_rm answered_200_after_rm=$s200 first_503_ms=$first503 then_parallel=2000 answered_503=$n503 ok_after_rm=$((ok1 - ok0)) failed=$failed1 task_failed_lines=$lines reopen_ms=$reopen_ms rows=$rows ok=$okend"
rel_log_clean
t_done
