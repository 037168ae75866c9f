#!/bin/sh
# tests/bench/ops.sh [SRCDIR [BUILDDIR]] -- `make bench-ops`: reload,
# binary upgrade and restart of waituntil under load.  Benchmarks are not
# tests: this prints figures; only a reconciliation that fails (a 2xx
# without its row) exits 1.
#
# DESIGN
#   nginx + waituntil with the shipped conf on loopback; wrk -t2 -c32 on
#   /log for DUR seconds per round, ROUNDS rounds (10) per mode.  A wrk
#   Lua script gives every request its own path (/log/MODE-R-THREAD-N),
#   so each answer in nginx's access log can be matched with its row.
#     reload:  during the round a route GET /rR is appended to the conf
#              and SIGHUP sent; the script polls /rR (a new connection
#              every 5 ms) and records the time from the signal to the
#              first 200;
#     upgrade: SIGUSR2 to the process in the pid file; once the new
#              process logged `started` and wrote the pid file, QUIT to
#              the old one (PID.oldbin); wait for it to exit;
#     restart: the socket is held by a stand-in for systemd (python3,
#              LISTEN_FDS); the round stops the running process (TERM,
#              drain, exit) and then starts a new one on the same socket:
#              connections queue in the socket's backlog meanwhile.
#   Per round: answers by status from the access log; 499 (wrk closes
#   its connections at the end of the round, mid-request) is reported
#   apart; rows whose path was answered 2xx must equal the 2xx answers
#   (lost = 2xx answers without a row, 0 expected).
#
# Knobs (environment): ROUNDS (10), DUR (4, seconds), MODES ("reload
# upgrade restart").
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "${1:-$here/../..}" && pwd)
BUILD=$(cd "${2:-$SRC/build}" && pwd)
ROUNDS=${ROUNDS:-10}
DUR=${DUR:-4}
MODES=${MODES:-reload upgrade restart}
. "$SRC/tools/stack.sh"
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 2; }

work=$(mktemp -d /tmp/wu-ops.XXXXXX)
holder=
cleanup() {
    [ -z "$holder" ] || { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; }
    if [ -s "$work/prefix/waituntil.pid" ]; then
        p=$(cat "$work/prefix/waituntil.pid")
        kill -TERM "$p" 2>/dev/null
        while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    fi
    STACK_APP_PID=
    stack_stop
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

LOG=$work/prefix/logs/waituntil.log
PIDF=$work/prefix/waituntil.pid
DB=$work/db/waituntil.db
CONF=$work/waituntil.conf
ACCESS=$work/access.log
fail=0

# wait_until MAX_STEPS CMD...: CMD every 0.05 s, at most MAX_STEPS times.
wait_until() {
    wu_n=$1; shift
    until "$@"; do
        wu_n=$((wu_n - 1)); [ "$wu_n" -gt 0 ] || return 1; sleep 0.05
    done
}
count_log() { grep -c "$1" "$LOG" 2>/dev/null || echo 0; }
log_ge() { [ "$(count_log "$1")" -ge "$2" ]; }
gone() { ! kill -0 "$1" 2>/dev/null; }
pid_is_not() { [ -s "$PIDF" ] && [ "$(cat "$PIDF")" != "$1" ]; }
ms() { date +%s%3N; }

cat > "$work/paths.lua" <<'EOF'
local n, tag = 0, "x"
function setup(thread) thread:set("tid", tostring(math.random(1, 1e9))) end
function init(args) tag = args[1] or "x" end
function request()
    n = n + 1
    return wrk.format("GET", "/log/" .. tag .. "-" .. tid .. "-" .. n)
end
EOF

start_stack() { # [wrapper]
    cp "$SRC/conf/waituntil.conf" "$CONF"
    : > "$ACCESS"
    STACK_ACCESS_LOG=$ACCESS STACK_APP_WRAPPER=${1:-} \
        stack_start "$SRC" "$BUILD" "$work/prefix" "$port" "$DB" "$CONF" || exit 1
}
stop_stack() {
    if [ -n "$holder" ]; then
        kill "$holder"; wait "$holder" 2>/dev/null; holder=
    elif [ -s "$PIDF" ]; then
        p=$(cat "$PIDF"); kill -TERM "$p"
        wait_until 2400 gone "$p"
    fi
    STACK_APP_PID=
    stack_stop
}

# round MODE R: wrk in the background, the operation, then the figures.
round() {
    mode=$1 r=$2 tag=$1-$2 op_ms=-
    wrk -t2 -c32 -d"${DUR}s" -s "$work/paths.lua" "http://127.0.0.1:$port/" \
        "$tag" > "$work/wrk.$tag" 2>&1 &
    wrkpid=$!
    wait_until 200 test "$(grep -c "/log/$tag-" "$ACCESS")" -gt 100 2>/dev/null
    case $mode in
    reload)
        printf 'route GET /r%s { respond 200 "route %s"; }\n' "$r" "$r" >> "$CONF"
        t0=$(ms)
        kill -HUP "$(cat "$PIDF")"
        route_up() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/r$r")" = 200 ]; }
        until route_up; do
            [ $(($(ms) - t0)) -lt 10000 ] || break
            sleep 0.005
        done
        op_ms=$(($(ms) - t0)) ;;
    upgrade)
        old=$(cat "$PIDF") n0=$(count_log 'event=started')
        t0=$(ms)
        kill -USR2 "$old"
        wait_until 2400 log_ge 'event=started' $((n0 + 1)) &&
            wait_until 2400 pid_is_not "$old" || echo "round $tag: no new process" >&2
        kill -QUIT "$old"
        wait_until 2400 gone "$old"
        op_ms=$(($(ms) - t0)) ;;
    restart)
        n0=$(count_log 'event=started')
        t0=$(ms)
        kill -USR1 "$holder" # the stand-in for `systemctl restart`
        wait_until 2400 log_ge 'event=started' $((n0 + 1))
        op_ms=$(($(ms) - t0)) ;;
    esac
    wait "$wrkpid"
    # nginx's access log: "GET /log/TAG-... HTTP/1.1" STATUS
    sleep 1 # the access log is written by nginx after the answer
    awk -v t="/log/$tag-" '$7 ~ "^" t { print $9, $7 }' "$ACCESS" > "$work/ans.$tag"
    ok=$(awk '$1 ~ /^2/' "$work/ans.$tag" | wc -l)
    cut=$(awk '$1 == 499' "$work/ans.$tag" | wc -l)
    bad=$(awk '$1 !~ /^2/ && $1 != 499' "$work/ans.$tag" | wc -l)
    awk '$1 ~ /^2/ { print $2 }' "$work/ans.$tag" | sort > "$work/ok.$tag"
    # rows land after the answers: until the pool is idle
    idle() { [ "$(curl -s "http://127.0.0.1:$port/_status" | sed -n 's/.*"queue_depth":\([0-9]*\).*/\1/p')" = 0 ]; }
    wait_until 2400 idle
    sqlite3 -cmd '.timeout 10000' "$DB" "SELECT path FROM logs WHERE path LIKE '/log/$tag-%'" | sort > "$work/rows.$tag"
    rows=$(wc -l < "$work/rows.$tag")
    lost=$(comm -23 "$work/ok.$tag" "$work/rows.$tag" | wc -l)
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/wrk.$tag")
    [ "$lost" -eq 0 ] || fail=1
    printf '%-8s %2s %8s %6s %5s %4s %8s %5s %9s\n' "$mode" "$r" "$ok" "$bad" "$cut" \
        "$lost" "$rows" "$op_ms" "$rps"
}

port=$(stack_free_port)
echo "# waituntil ops under load: wrk -t2 -c32 -d${DUR}s on /log, $(nproc) cores, $(date -u +%FT%TZ)"
printf '%-8s %2s %8s %6s %5s %4s %8s %5s %9s\n' mode r 2xx non2xx 499 lost rows op_ms req/s
for mode in $MODES; do
    if [ "$mode" = restart ]; then
        cat > "$work/holder.py" <<'EOF'
import os, signal, socket, sys
path, argv = sys.argv[1], sys.argv[2:]
os.umask(0o117)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(1024)
def spawn():
    pid = os.fork()
    if pid == 0:
        os.dup2(s.fileno(), 3)
        os.set_inheritable(3, True)
        env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
        os.execve(argv[0], argv, env)
    return pid
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGTERM])
child = spawn()
while True:
    sig = signal.sigwait([signal.SIGUSR1, signal.SIGTERM])
    os.kill(child, signal.SIGTERM)
    os.waitpid(child, 0)
    if sig == signal.SIGTERM:
        os.unlink(path)
        sys.exit(0)
    child = spawn()
EOF
        # stack_start runs the wrapper in the background: it is the holder
        start_stack "python3 $work/holder.py $work/prefix/waituntil.sock"
        holder=$STACK_APP_PID
    else
        start_stack
    fi
    i=1
    while [ "$i" -le "$ROUNDS" ]; do
        round "$mode" "$i"
        i=$((i + 1))
    done
    stop_stack
    rm -f "$DB" "$DB-wal" "$DB-shm"
done
exit $fail
