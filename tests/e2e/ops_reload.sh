#!/bin/sh
# Operations 1 -- reload (SIGHUP, `waituntil -s reload`) through nginx.
#
#   good conf: a route added to the file answers after the reload, the
#     old routes keep answering, and settings that need a restart are
#     logged and keep their running values;
#   in flight: a request accepted before a reload (held mid-body straight
#     on the FastCGI socket) finishes on the routes it started with, even
#     though the reload removed its route, and its deferred write lands;
#     its old generation is freed once it is done;
#   bad conf: a syntax error and a statement that does not fit the
#     database are refused with FILE:LINE in the log; the running routes
#     keep answering.
# Waits are for conditions (a log line, a counter, a status code), never
# for durations.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
. "$TESTS_SRCDIR/e2e/ops_lib.sh"
t_tmpdir

INFLIGHT='
route GET /inflight /inflight/* {
    respond 200 "old generation";
    defer insert logs { method $request_method; path $uri; timestamp $time_iso; }
}'
e2e_start "$INFLIGHT"
LOG=$(ops_log)

expect "a route not yet in the conf answers 404" "$(ops_code /added)" 404
# Written once the threads accept, right before the `started` line.
ops_wait_count 'event=started ' 1
t_check "the pid file names the app" \
    test "$(cat "$T_TMP/prefix/waituntil.pid")" = "$STACK_APP_PID"

# ---- good conf: a route is added --------------------------------------------
cat >> "$E2E_CONF" <<'EOF'
route GET /added { respond 200 "added by a reload"; }
EOF
ops_sig reload && t_ok "waituntil -s reload signals the running app" ||
    t_fail "-s reload" "$(e2e_log)"
ops_wait_count 'event=reloaded generation=2 ' 1 &&
    t_ok "the app logs the reload (generation 2)" || t_fail "reloaded line" "$(e2e_log)"
expect "the added route answers" \
    "$(curl -s --max-time 60 "$E2E_URL/added")" "added by a reload"
expect "an old route keeps answering" "$(ops_code /hello)" 200
st=$(rel_status)
expect "/_status says generation 2" "$(rel_field "$st" conf_generation)" 2

# ---- in flight across a reload ----------------------------------------------
ops_fcgi_held "$T_TMP/prefix/waituntil.sock" /inflight/held \
    "$T_TMP/held.ready" "$T_TMP/held.go" "$T_TMP/held.out"
t_wait_for "" test -e "$T_TMP/held.ready" || t_fail "held request sent"
# Accepted (and so holding its generation) while unfinished: a status
# request sees itself and the held one in flight.
held_accepted() {
    hs=$(rel_status)
    [ $(($(rel_field "$hs" requests_accepted) - $(rel_field "$hs" requests_finished))) -ge 2 ]
}
t_wait_for "" held_accepted && t_ok "the held request is accepted" ||
    t_fail "held request accepted" "$(rel_status)"
# The new conf drops /inflight and adds /after.
cp "$TOP_SRCDIR/conf/waituntil.conf" "$E2E_CONF"
printf 'route GET /added { respond 200 "added by a reload"; }\n' >> "$E2E_CONF"
printf 'route GET /after { respond 200 "generation 3"; }\n' >> "$E2E_CONF"
kill -HUP "$STACK_APP_PID"
ops_wait_count 'event=reloaded generation=3 ' 1 &&
    t_ok "reloaded to generation 3 with the request in flight" ||
    t_fail "reload 3" "$(e2e_log)"
expect "new requests get the new routes (/after)" "$(ops_code /after)" 200
expect "new requests no longer find /inflight" "$(ops_code /inflight/new)" 404
expect "two generations live while the request is in flight" \
    "$(rel_field "$(rel_status)" conf_generations_live)" 2
touch "$T_TMP/held.go"
wait "$OPS_HELD_PID"
expect "the in-flight request finished on its old route" \
    "$(tr -d '\r' < "$T_TMP/held.out" | sed -n '$p')" "old generation"
grep -q '^Status: 200' "$T_TMP/held.out" && t_ok "... with status 200" ||
    t_fail "held status" "$(cat "$T_TMP/held.out")"
wait_rows "SELECT count(*) FROM logs WHERE path='/inflight/held'" 1 &&
    t_ok "its deferred write (an old-generation template) landed" ||
    t_fail "held row" "$(e2e_log)"
gens_one() { [ "$(rel_field "$(rel_status)" conf_generations_live)" = 1 ]; }
t_wait_for "" gens_one && t_ok "the old generation is freed after its last request" ||
    t_fail "generations live" "$(rel_status)"
ops_wait_count 'event=generation_freed generation=2' 1 &&
    t_ok "generation 2 freed (logged)" || t_fail "generation_freed" "$(e2e_log)"

# ---- settings that need a restart --------------------------------------------
sed -i -e 's|^\([[:space:]]*\)threads 4;|\1threads 8;|' "$E2E_CONF"
kill -HUP "$STACK_APP_PID"
ops_wait_count 'event=reloaded generation=4 ' 1 &&
    t_ok "a reload that changes threads still swaps the routes" ||
    t_fail "reload 4" "$(e2e_log)"
grep -q 'event=reload_needs_restart setting=server.threads running=4 new=8' "$LOG" &&
    t_ok "threads is logged as needing a restart" || t_fail "needs_restart" "$(e2e_log)"
expect "threads keeps its running value" \
    "$(rel_field "$(rel_status)" request_threads)" 4

# ---- bad conf: a syntax error --------------------------------------------------
good=$(cat "$E2E_CONF")
printf 'route GET /broken { respond 200 "x" }\n' >> "$E2E_CONF"
bad_line=$(wc -l < "$E2E_CONF")
# Like nginx -s reload, the signaller reads the conf (for the pid file)
# and refuses to signal with a broken one, saying where it is broken.
if ops_sig reload 2>"$T_TMP/sig.err"; then
    t_fail "-s reload refuses a broken conf"
else
    grep -q "$E2E_CONF:$bad_line: " "$T_TMP/sig.err" &&
        t_ok "-s reload refuses a broken conf and names FILE:LINE" ||
        t_fail "-s reload stderr" "$(cat "$T_TMP/sig.err")"
fi
kill -HUP "$STACK_APP_PID" # an operator's kill -HUP reaches the app
ops_wait_count 'event=reload_failed ' 1 &&
    t_ok "a conf with a syntax error is refused" || t_fail "reload_failed" "$(e2e_log)"
grep -Eq "event=reload_failed error=\"$E2E_CONF:$bad_line: .*kept=1" "$LOG" &&
    t_ok "the log names FILE:LINE ($(basename "$E2E_CONF"):$bad_line)" ||
    t_fail "file:line" "$(grep reload_failed "$LOG")"
expect "the old routes keep answering (/after)" "$(ops_code /after)" 200
expect "... and the generation is unchanged" \
    "$(rel_field "$(rel_status)" conf_generation)" 4

# ---- bad conf: a statement the database refuses -------------------------------
printf '%s\n' "$good" > "$E2E_CONF"
printf 'route GET /nosuch {\n    respond 200 "x";\n    defer insert no_such_table { a $uri; }\n}\n' >> "$E2E_CONF"
defer_line=$(($(wc -l < "$E2E_CONF") - 1))
kill -HUP "$STACK_APP_PID"
ops_wait_count 'event=reload_failed error=".* do not fit the schema' 1 &&
    t_ok "a statement that does not fit the live schema is refused" ||
    t_fail "schema reload_failed" "$(e2e_log)"
grep -q "event=reload_failed error=\"$E2E_CONF:$defer_line: route GET /nosuch: defer 1: insert into no_such_table: no such table" "$LOG" &&
    t_ok "the log names FILE:LINE of the defer block" ||
    t_fail "defer file:line" "$(grep reload_failed "$LOG")"
expect "the old routes keep answering (/added)" "$(ops_code /added)" 200
expect "/nosuch was not swapped in" "$(ops_code /nosuch)" 404

# ---- the log is still reopened on HUP and USR1 -------------------------------
n=$(ops_count 'event=reopen_log ok=1')
ops_sig reopen
ops_wait_count 'event=reopen_log ok=1' $((n + 1)) &&
    t_ok "-s reopen (USR1) reopens the log" || t_fail "reopen" "$(e2e_log)"

stack_stop_app TERM
expect "exit status 0 after the reloads" "$STACK_APP_RC" 0
t_check "the pid file is removed at exit" test ! -e "$T_TMP/prefix/waituntil.pid"
rel_log_clean "$LOG"
t_done
