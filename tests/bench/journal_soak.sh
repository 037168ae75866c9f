#!/bin/sh
# tests/bench/journal_soak.sh SRCDIR BUILDDIR -- `make bench-journal-soak`:
# does the journal stay bounded?  The shipped conf (journal write) under
# wrk -c32 on /log for SOAK seconds (300); every 5 s /_status's
# journal_file_bytes and journal_records_pending and the number of
# journal files on disk are sampled.  Prints the samples, then the
# maximum, the last value and the bytes appended in total: bounded means
# the files stay a small multiple of journal rotation while the appended
# bytes grow with the load.  Run on purpose, never by make check.
# Knobs: SOAK (300), CONNS (32), THREADS (2).  Bounded: wrk runs SOAK
# seconds; the EXIT trap stops what this script started, by PID.
set -u
SRC=$(cd "$1" && pwd) BUILD=$(cd "$2" && pwd)
SOAK=${SOAK:-300} CONNS=${CONNS:-32} THREADS=${THREADS:-2}
WORK=${BENCH_WORK:-$BUILD/bench-journal-soak}
. "$SRC/tools/stack.sh"
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 77; }
rm -rf "$WORK"
mkdir -p "$WORK"
WPID=
trap '[ -n "$WPID" ] && kill "$WPID" 2>/dev/null; stack_stop' EXIT INT TERM

port=$(stack_free_port)
STACK_ACCESS_LOG=off STACK_APP_ARGS='' stack_start "$SRC" "$BUILD" \
    "$WORK/prefix" "$port" "$WORK/db/wu.db" "$SRC/conf/waituntil.conf" \
    >/dev/null 2>&1 || { echo "stack did not start" >&2; exit 1; }
num() { # num JSON KEY
    printf '%s' "$1" | tr ',{}' '\n\n\n' | sed -n "s/^ *\"$2\": *\([0-9]*\).*/\1/p" | head -n 1
}
wrk -t "$THREADS" -c "$CONNS" -d "${SOAK}s" "http://127.0.0.1:$port/log" \
    > "$WORK/wrk.out" 2>&1 &
WPID=$!
max_b=0 max_p=0 max_f=0 t=0
echo "t_s file_bytes records_pending files appended_bytes"
while kill -0 "$WPID" 2>/dev/null; do
    j=$(curl -s --max-time 10 "http://127.0.0.1:$port/_status")
    b=$(num "$j" journal_file_bytes) p=$(num "$j" journal_records_pending)
    a=$(num "$j" journal_bytes)
    f=$(ls "$WORK/db" | grep -c '\.journal\.[0-9a-f]*$')
    echo "$t ${b:-?} ${p:-?} $f ${a:-?}"
    [ "${b:-0}" -gt "$max_b" ] && max_b=$b
    [ "${p:-0}" -gt "$max_p" ] && max_p=$p
    [ "$f" -gt "$max_f" ] && max_f=$f
    sleep 5
    t=$((t + 5))
done
WPID=
sed -n 's/^Requests\/sec: */wrk req\/s: /p' "$WORK/wrk.out"
echo "max file_bytes $max_b, max records_pending $max_p, max files $max_f, appended ${a:-?} bytes"
