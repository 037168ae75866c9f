#!/bin/sh
# run.sh SRCDIR BUILDDIR -- `make run`: nginx on 127.0.0.1:$PORT (8080) in
# front of waituntil, database $DB (BUILDDIR/var/waituntil.db), both in the
# foreground; Ctrl-C (or TERM) stops waituntil first (it drains its
# deferred writes) and then nginx.
set -u
src=$1 build=$2
PORT=${PORT:-8080}
DB=${DB:-$build/var/waituntil.db}
. "$src/tools/stack.sh"
if [ ! -x "$build/app/waituntil" ]; then
    echo "make run: the waituntil server is not built in this tree yet" >&2
    exit 1
fi
tail_pid=
# Ctrl-C reaches this script only (STACK_OWN_SESSION): stop waituntil
# with SIGTERM and wait until its drain is over and it has exited, then
# stop nginx (QUIT: graceful).  The order matters: nginx keeps answering
# clients while waituntil finishes what it accepted.
trap 'echo; echo "stopping: waituntil first (SIGTERM, drain), then nginx"
      stack_stop_app TERM
      echo "waituntil exited (status $STACK_APP_RC); stopping nginx"
      stack_stop
      [ -z "$tail_pid" ] || kill "$tail_pid" 2>/dev/null
      exit "$STACK_APP_RC"' INT TERM
STACK_ACCESS_LOG=${ACCESS_LOG:-off}
STACK_OWN_SESSION=1
stack_start "$src" "$build" "$build/var/run" "$PORT" "$DB" || { stack_stop; exit 1; }
echo "waituntil: http://127.0.0.1:$PORT/  (db $DB, logs $build/var/run/logs)"
echo "try: curl -s http://127.0.0.1:$PORT/log ; Ctrl-C to stop"
# Follow the app's log in the foreground; stop when either process dies.
tail -n +1 -f "$build/var/run/logs/waituntil.log" &
tail_pid=$!
while kill -0 "$STACK_APP_PID" 2>/dev/null && kill -0 "$STACK_NGINX_PID" 2>/dev/null; do
    sleep 1
done
kill "$tail_pid" 2>/dev/null
echo "make run: a process exited; stopping" >&2
stack_stop
exit 1
