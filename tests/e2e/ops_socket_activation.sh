#!/bin/sh
# Operations 3 -- socket activation (systemd's LISTEN_FDS/LISTEN_PID).
#
# A python3 stand-in for systemd binds the unix socket, puts it on fd 3,
# sets LISTEN_FDS=1 and LISTEN_PID to its own pid and execs waituntil
# (exec keeps the pid).  The app must accept on that socket (not bind
# its own), answer through nginx, and on SIGTERM leave the socket alone:
# not shut down (systemd would keep queueing connections on it for the
# next start) and not unlinked.  A LISTEN_PID meant for another process
# is ignored.
. "$TESTS_SRCDIR/lib.sh"
. "$TESTS_SRCDIR/e2e/e2e_lib.sh"
. "$TESTS_SRCDIR/e2e/reliability_lib.sh"
. "$TESTS_SRCDIR/e2e/ops_lib.sh"
t_tmpdir

cat > "$T_TMP/activate.py" <<'EOF'
import os, socket, sys
path, pid_for = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
os.umask(0o117)
s.bind(path)
s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1",
           LISTEN_PID=str(os.getpid()) if pid_for == "self" else pid_for)
os.execve(sys.argv[3], sys.argv[3:], env)
EOF
SOCK=$T_TMP/prefix/waituntil.sock
STACK_APP_WRAPPER="python3 $T_TMP/activate.py $SOCK self"
e2e_start
LOG=$(ops_log)

# The app answers a moment before it logs `started` (the threads accept
# first): wait for the line.
ops_wait_count 'event=started ' 1
grep -q "event=started .*listen=unix:$SOCK inherited=systemd" "$LOG" &&
    t_ok "the app takes the socket from LISTEN_FDS" || t_fail "inherited" "$(e2e_log)"
expect "it answers through nginx" "$(ops_code /hello)" 200
expect "its writes land" "$(ops_code /log/activated)" 200
wait_rows "SELECT count(*) FROM logs WHERE path='/log/activated'" 1 &&
    t_ok "the row landed" || t_fail "row" "$(e2e_log)"

stack_stop_app TERM
expect "exit status 0" "$STACK_APP_RC" 0
grep -q 'event=stopping signal=15 shared=1' "$LOG" &&
    t_ok "the stop leaves the socket to systemd (shared)" || t_fail "shared" "$(e2e_log)"
t_check "the socket file is not unlinked" test -S "$SOCK"

# ---- a LISTEN_PID for another process is not ours ------------------------------
rm -f "$SOCK"
cat > "$T_TMP/other.py" <<'EOF'
import os, sys
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1")
os.execve(sys.argv[1], sys.argv[1:], env)
EOF
: > "$LOG.2"
python3 "$T_TMP/other.py" "$OPS_APP" -c "$E2E_CONF" -p "$TOP_SRCDIR" \
    -l "unix:$SOCK" -d "$E2E_DB" 2>>"$LOG.2" &
APP2=$!
T_CLEANUP_HOOK='kill -TERM "$APP2" 2>/dev/null; wait "$APP2"; stack_stop'
started2() { grep -q 'event=started' "$LOG.2"; }
t_wait_for "" started2 || t_fail "second app started" "$(tail "$LOG.2")"
grep -q "event=started .*inherited=no" "$LOG.2" &&
    t_ok "LISTEN_PID of another process: the app binds its own socket" ||
    t_fail "not inherited" "$(tail "$LOG.2")"
kill -TERM "$APP2"
code=0
wait "$APP2" || code=$?
expect "it exits 0" "$code" 0
t_check "and unlinks the socket it made" test ! -e "$SOCK"
rel_log_clean "$LOG"
rel_log_clean "$LOG.2"
t_done
