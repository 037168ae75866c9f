#!/bin/sh
# Operations 2 -- binary upgrade with the socket handed over (SIGUSR2,
# nginx's model), under a bounded request loop through nginx.
#
# 2,000 GET /log/uN (32 in parallel) run while: `waituntil -s upgrade`
# starts the new process on the inherited socket; once it logged
# `started ... inherited=upgrade` and wrote the pid file (the old one is
# then PID.oldbin), `kill -QUIT $(cat PID.oldbin)` stops the old one,
# which leaves the socket to its successor.  Every answer must be 2xx and
# rows == answers; the socket file must survive the old process and be
# removed by the new one when it stops alone.  Then a rollback: a second
# upgrade whose new process is stopped instead gives the pid file back.
# Waits are for conditions (log lines, the pid file, rows), never for
# durations.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
. "$TESTS_SRCDIR/e2e/ops_lib.sh"
t_tmpdir

N=${OPS_UPGRADE_N:-2000}
e2e_start
LOG=$(ops_log)
PIDF=$T_TMP/prefix/waituntil.pid
SOCK=$T_TMP/prefix/waituntil.sock
OLD=$STACK_APP_PID
NEW=
# The new process is not the shell's child: stop it by pid at cleanup.
T_CLEANUP_HOOK='[ -z "$NEW" ] || { kill -TERM "$NEW" 2>/dev/null; t_wait_for "" ops_gone "$NEW"; }; stack_stop'

seq 1 "$N" | sed "s|.*|url = \"$E2E_URL/log/u&\"\noutput = \"/dev/null\"|" > "$T_TMP/urls"
rel_curl_codes "$T_TMP/urls" "$T_TMP/codes" 32 &
LOAD=$!
# Upgrade once the load is under way (its first rows landed).
under_way() { [ "$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/u%'")" -ge 50 ]; }
t_wait_for "" under_way || t_fail "load under way" "$(e2e_log)"

ops_wait_count 'event=started ' 1 # the pid file is written right before
ops_sig upgrade && t_ok "waituntil -s upgrade signals the app" ||
    t_fail "-s upgrade" "$(e2e_log)"
ops_wait_count 'event=started .*inherited=upgrade' 1 &&
    t_ok "the new process starts on the inherited socket" ||
    t_fail "new process started" "$(e2e_log)"
new_pid_written() { [ -s "$PIDF" ] && [ "$(cat "$PIDF")" != "$OLD" ]; }
t_wait_for "" new_pid_written && NEW=$(cat "$PIDF")
expect "PID.oldbin holds the old pid" "$(cat "$PIDF.oldbin" 2>/dev/null)" "$OLD"
grep -q "event=started .*pid=$NEW .*inherited=upgrade" "$LOG" &&
    t_ok "the pid file holds the new process ($NEW)" || t_fail "new pid" "$NEW"

kill -QUIT "$(cat "$PIDF.oldbin")"
code=0
wait "$OLD" || code=$?
STACK_APP_PID=
expect "the old process exits 0 after its drain" "$code" 0
grep -q 'event=stopping signal=3 shared=1' "$LOG" &&
    t_ok "the old process stops with the socket shared (no shutdown)" ||
    t_fail "shared stop" "$(e2e_log)"
t_check "the socket file survives the old process" test -S "$SOCK"
t_check "PID.oldbin is removed with the old process" test ! -e "$PIDF.oldbin"

wait "$LOAD"
n200=$(grep -c '^2[0-9][0-9] ' "$T_TMP/codes")
expect "every answer of $N is 2xx through the upgrade" "$n200" "$N"
wait_rows "SELECT count(*) FROM logs WHERE path LIKE '/log/u%'" "$n200" &&
    t_ok "rows == 2xx answers ($n200)" ||
    t_fail "rows" "$(sql "SELECT count(*) FROM logs WHERE path LIKE '/log/u%'") rows for $n200 answers"
expect "no write ran twice" \
    "$(sql "SELECT count(*) - count(DISTINCT path) FROM logs WHERE path LIKE '/log/u%'")" 0
old_ok=$(sed -n "s/.*event=stopped .*ok=\([0-9]*\) .*/\1/p" "$LOG" | head -n 1)
rel_figure "upgrade requests=$N answered_2xx=$n200 old_process_writes=${old_ok:-?}"

# ---- rollback: an upgrade whose new process is stopped -----------------------
kill -USR2 "$NEW"
ops_wait_count 'event=started .*inherited=upgrade' 2 &&
    t_ok "a second upgrade starts a third process" || t_fail "second upgrade" "$(e2e_log)"
third_written() { [ -s "$PIDF" ] && [ "$(cat "$PIDF")" != "$NEW" ]; }
t_wait_for "" third_written
THIRD=$(cat "$PIDF")
kill -TERM "$THIRD"
ops_wait_count "event=upgrade_child_exited pid=$THIRD status=0" 1 &&
    t_ok "the old process sees its new one exit" || t_fail "child exited" "$(e2e_log)"
pid_back() { [ "$(cat "$PIDF" 2>/dev/null)" = "$NEW" ]; }
t_wait_for "" pid_back && t_ok "the pid file is renamed back (rollback)" ||
    t_fail "pid file back" "$(cat "$PIDF" 2>/dev/null)"
grep -q 'event=stopping signal=15 shared=1' "$LOG" &&
    t_ok "the stopped new process left the socket to its old one" ||
    t_fail "rollback shared" "$(e2e_log)"
expect "the remaining process still answers" "$(ops_code /hello)" 200

ops_sig stop
t_wait_for "" ops_gone "$NEW" && t_ok "-s stop stops it" || t_fail "-s stop"
NEW=
t_check "the last process removes the socket file" test ! -e "$SOCK"
t_check "... and the pid file" test ! -e "$PIDF"
[ "$(ops_count 'event=stopped drain=complete')" -eq 3 ] &&
    t_ok "three processes, three complete drains" ||
    t_fail "drains" "$(grep event=stopped "$LOG")"
rel_log_clean "$LOG"
t_done
