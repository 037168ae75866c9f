#!/bin/sh
# tests/bench/stall.sh [SRCDIR [BUILDDIR...]] -- `make bench-stall`: what
# clients see while the writer is stalled, with the SHIPPED conf.
#
# DESIGN
#   For each build tree (default BUILDDIR = SRCDIR/build; give several to
#   compare builds in one run), start nginx + waituntil with
#   conf/waituntil.conf unchanged, warm up, then stall the writer: an
#   outside sqlite3 connection holds BEGIN IMMEDIATE for STALL seconds
#   (default 20; the shipped busy_timeout 5s x busy_retries 5 outlasts it,
#   so the stalled batch commits after the release).  wrk -c CONNS (128)
#   loads /log for the stall; once the queue is full (queue_depth =
#   the conf's queue), a probe client sends sequential requests to /log,
#   /hello and /_status in turn (a new connection each, like a browser)
#   until wrk ends, and records status and latency.  Then the lock is
#   released, the pool drains, and the script reconciles:
#   rows in logs == tasks_ok, tasks_admitted == ok + failed (+ left),
#   and every 503 counted (responses_503_queue_full == tasks_rejected).
#   Figures: p50/p99/max per probe endpoint and status, wrk's req/s and
#   non-2xx, the counters.  Benchmarks are not tests: nothing here is
#   asserted on timing; the reconciliation failing exits 1.
#
#   Bounds: every wait has a maximum number of 0.1 s steps; an EXIT trap
#   stops what the script started.  Only 127.0.0.1.
#
# Knobs (environment): STALL (20), CONNS (128), QUEUE_WAIT (steps of 0.1 s
# to wait for a full queue, 600).
set -u
here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "${1:-$here/../..}" && pwd)
[ $# -gt 0 ] && shift
BUILDS=${*:-$SRC/build}
STALL=${STALL:-20}
CONNS=${CONNS:-128}
QUEUE_WAIT=${QUEUE_WAIT:-600}
. "$SRC/tools/stack.sh"

work=$(mktemp -d /tmp/wu-stall.XXXXXX)
holder=
cleanup() {
    [ -z "$holder" ] || kill "$holder" 2>/dev/null
    stack_stop
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

status_field() { # JSON /_status -> one counter
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("'"$1"'", 0))' 2>/dev/null
}
status() { curl -s -m 60 "http://127.0.0.1:$port/_status"; }

cat > "$work/holder.py" <<'EOF'
import signal, sqlite3, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
db, secs, ready = sys.argv[1], float(sys.argv[2]), sys.argv[3]
# held until SIGUSR1; secs only bounds it if this script dies
c = sqlite3.connect(db, isolation_level=None, timeout=10)
c.execute("BEGIN IMMEDIATE")
open(ready, "w").close()
signal.sigtimedwait([signal.SIGUSR1], secs)
c.execute("COMMIT")
EOF

cat > "$work/probe.py" <<'EOF'
import http.client, sys, time
port, until = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
paths = ["/log/probe", "/hello", "/_status"]
lat = {}
while time.monotonic() < until:
    for p in paths:
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            c.request("GET", p)
            r = c.getresponse()
            r.read()
            st = r.status
        except Exception:
            st = 0
        c.close()
        lat.setdefault((p, st), []).append((time.monotonic() - t0) * 1000)
for (p, st), v in sorted(lat.items()):
    v.sort()
    q = lambda f: v[min(len(v) - 1, int(f * len(v)))]
    print(f"probe {p:<11} status={st} n={len(v)} p50={q(.50):.1f}ms "
          f"p99={q(.99):.1f}ms max={v[-1]:.1f}ms")
EOF

rc=0
for build in $BUILDS; do
    build=$(cd "$build" && pwd)
    prefix=$work/run
    rm -rf "$prefix"
    mkdir -p "$prefix"
    db=$prefix/waituntil.db
    port=$(stack_free_port)
    rev=$(git -C "$build/.." rev-parse --short HEAD 2>/dev/null || echo '?')
    echo "=== $build (HEAD $rev), shipped conf, writer stalled ${STALL} s, wrk -c$CONNS on /log"
    stack_start "$SRC" "$build" "$prefix" "$port" "$db" || { rc=1; continue; }
    wrk -t2 -c32 -d2s "http://127.0.0.1:$port/log/warm" >/dev/null 2>&1
    i=0
    while [ "$(status | status_field queue_depth)" != 0 ] && [ $i -lt 300 ]; do
        i=$((i + 1)); sleep 0.1
    done
    cap=$(sed -n 's/^[[:space:]]*queue[[:space:]]\{1,\}\([0-9]*\);.*/\1/p' "$SRC/conf/waituntil.conf" | head -n 1)
    st0=$(status)

    rm -f "$work/ready"
    python3 "$work/holder.py" "$db" "$((STALL + 120))" "$work/ready" &
    holder=$!
    i=0
    while [ ! -e "$work/ready" ] && [ $i -lt 300 ]; do i=$((i + 1)); sleep 0.1; done
    t0=$(date +%s)
    wrk -t2 -c"$CONNS" -d"${STALL}s" --timeout 30s --latency \
        "http://127.0.0.1:$port/log/stall" > "$work/wrk.out" 2>&1 &
    wrkpid=$!
    i=0
    while [ "$(status | status_field queue_depth)" != "$cap" ] && [ $i -lt "$QUEUE_WAIT" ]; do
        i=$((i + 1)); sleep 0.1
    done
    full=$(($(date +%s) - t0))
    echo "queue full (depth $cap) after $full s of stall; probing until wrk ends"
    python3 "$work/probe.py" "$port" "$((STALL - full - 1))"
    wait "$wrkpid"
    grep -E 'Requests/sec|Non-2xx|requests in|Latency|  (50|99)%' "$work/wrk.out"
    kill -USR1 "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
    holder=
    i=0
    while [ "$(status | status_field queue_depth)" != 0 ] && [ $i -lt 1200 ]; do
        i=$((i + 1)); sleep 0.1
    done
    st1=$(status)
    stack_stop
    d() { echo $(($(echo "$st1" | status_field "$1") - $(echo "$st0" | status_field "$1"))); }
    ok=$(echo "$st1" | status_field tasks_ok)
    rows=$(sqlite3 "$db" 'SELECT count(*) FROM logs')
    adm=$(d tasks_admitted) okd=$(d tasks_ok) fail=$(d tasks_failed)
    rej=$(d tasks_rejected) r503=$(d responses_503_queue_full)
    echo "counters during the stall: admitted=$adm ok=$okd failed=$fail rejected=$rej 503=$r503 admit_waits=$(d admit_waits 2>/dev/null) admit_stalled=$(d admit_stalled 2>/dev/null)"
    echo "rows=$rows tasks_ok(total)=$ok"
    [ "$rows" = "$ok" ] && [ "$adm" = "$((okd + fail))" ] && [ "$rej" = "$r503" ] ||
        { echo "RECONCILIATION FAILED"; rc=1; }
done
exit $rc
