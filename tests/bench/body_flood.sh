#!/bin/sh
# tests/bench/body_flood.sh OLD_SRC OLD_BUILD NEW_SRC NEW_BUILD
#
# Issue 13, item 2: how much do big JSON bodies posted to a route that
# never reads them cost everyone else?  For each build (interleaved, REPS
# rounds, both in the same run), through real nginx on loopback:
#   1. /hello alone: wrk -t2 -c32 for DURATION;
#   2. the same while ATTACKERS clients (a second wrk, -t1) post a
#      1,048,575-byte "[0,0,...,0]" (524,287 elements, just under nginx's
#      client_max_body_size 1m) with Content-Type: application/json to
#      ATTACK_PATH (default /nope, a 404);
# and the app's peak RSS during the attacks (VmHWM from /proc/PID/status,
# reset through /proc/PID/clear_refs just before them when allowed).  A
# 6 s attack alone comes first: the app's CPU time (utime + stime from
# /proc/PID/stat) per attack request.
# Each build runs with its own shipped conf (OLD_SRC/conf, NEW_SRC/conf).
#
# Prints one "# figure:" line per build and round, then the medians.
# Results of one run: tests/bench/BODY-FLOOD.md.
# Bounds: every wrk run has a fixed duration, the stack's waits are
# bounded (tools/stack.sh), an EXIT trap stops what this script started.
# Knobs: REPS (2), DURATION (10s), ATTACKERS (8), ATTACK_PATH (/nope),
# WORK (a temp dir).
set -u

[ $# -eq 4 ] || { echo "usage: $0 OLD_SRC OLD_BUILD NEW_SRC NEW_BUILD" >&2; exit 2; }
OLD_SRC=$(cd "$1" && pwd) OLD_BUILD=$(cd "$2" && pwd)
NEW_SRC=$(cd "$3" && pwd) NEW_BUILD=$(cd "$4" && pwd)
REPS=${REPS:-2}
DURATION=${DURATION:-10s}
ATTACKERS=${ATTACKERS:-8}
ATTACK_PATH=${ATTACK_PATH:-/nope}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/wu-flood.XXXXXX")}
secs=${DURATION%s}
mkdir -p "$WORK"

command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 77; }
. "$NEW_SRC/tools/stack.sh"
trap 'stack_stop' EXIT
trap 'exit 130' INT TERM

cat >"$WORK/flood.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "[" .. string.rep("0,", 524286) .. "0]"
EOF

# rps FILE: requests/s from a wrk report.
rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }
# the app's peak RSS (kB) and its CPU time (user + system, clock ticks)
vmhwm() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$STACK_APP_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$STACK_APP_PID/stat"; }
TICK=$(getconf CLK_TCK)
# median of the numbers on stdin
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

run_one() { # run_one NAME SRC BUILD ROUND
    name=$1 src=$2 build=$3 round=$4
    dir=$WORK/$name-$round
    port=$(stack_free_port)
    stack_start "$src" "$build" "$dir/prefix" "$port" "$dir/db/w.db" \
        "$src/conf/waituntil.conf" || { echo "$name: stack did not start" >&2; return 1; }
    url=http://127.0.0.1:$port
    wrk -t2 -c32 -d2s "$url/hello" >/dev/null 2>&1 # warm-up
    wrk -t2 -c32 -d"$DURATION" "$url/hello" >"$dir/alone.txt" 2>&1
    alone=$(rps "$dir/alone.txt")
    # Peak RSS of the attack alone: reset the high-water mark if we may.
    echo 5 >"/proc/$STACK_APP_PID/clear_refs" 2>/dev/null || true
    hwm0=$(vmhwm)
    # The attack alone: the app's CPU time per attack request.
    cpu0=$(cpu_ticks)
    wrk -t1 -c"$ATTACKERS" -d6s --timeout 30s -s "$WORK/flood.lua" \
        "$url$ATTACK_PATH" >"$dir/attack-alone.txt" 2>&1
    cpu=$(( $(cpu_ticks) - cpu0 ))
    cpu_ms=$(awk -v t=$cpu -v h="$TICK" -v r="$(rps "$dir/attack-alone.txt")" \
        'BEGIN { n = r * 6; if (n > 0) printf "%.2f", 1000 * t / h / n; else print "-" }')
    # /hello while the attack goes on.
    wrk -t1 -c"$ATTACKERS" -d"$((secs + 4))s" --timeout 30s -s "$WORK/flood.lua" \
        "$url$ATTACK_PATH" >"$dir/attack.txt" 2>&1 &
    attack=$!
    sleep 2 # let the attack reach steady state before measuring
    wrk -t2 -c32 -d"$DURATION" --timeout 30s "$url/hello" >"$dir/under.txt" 2>&1
    hwm=$(vmhwm)
    wait "$attack"
    under=$(rps "$dir/under.txt")
    arps=$(rps "$dir/attack.txt")
    non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$dir/attack.txt")
    st=$(curl -s "$url/_status")
    parsed=$(echo "$st" | sed -n 's/.*"bodies_parsed":\([0-9]*\).*/\1/p')
    stack_stop
    echo "# figure: build=$name round=$round hello_alone_rps=$alone hello_under_attack_rps=$under attack_rps=$arps attack_non2xx=${non2xx:-0} vmhwm_before_attack_kb=$hwm0 vmhwm_attack_kb=$hwm bodies_parsed=${parsed:--} attack_alone_rps=$(rps "$dir/attack-alone.txt") app_cpu_ms_per_attack_req=$cpu_ms"
    echo "$name $alone $under $hwm" >>"$WORK/all.txt"
}

: >"$WORK/all.txt"
r=1
while [ $r -le "$REPS" ]; do
    run_one old "$OLD_SRC" "$OLD_BUILD" $r
    run_one new "$NEW_SRC" "$NEW_BUILD" $r
    r=$((r + 1))
done
for b in old new; do
    echo "# median: build=$b hello_alone_rps=$(awk -v b=$b '$1 == b { print $2 }' "$WORK/all.txt" | median)" \
        "hello_under_attack_rps=$(awk -v b=$b '$1 == b { print $3 }' "$WORK/all.txt" | median)" \
        "vmhwm_attack_kb=$(awk -v b=$b '$1 == b { print $4 }' "$WORK/all.txt" | median)"
done
echo "# raw wrk reports: $WORK"
