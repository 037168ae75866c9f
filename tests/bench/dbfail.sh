#!/bin/sh
# dbfail.sh -- the figures of issue 13 (items 4 and 5): the SQLite file
# removed, truncated or replaced under load, and a full filesystem.
# Run on purpose, not by `make check`.
#
#   sh tests/bench/dbfail.sh SRCDIR APP SCENARIO [SECONDS] [OUTDIR]
#
# Starts nginx + APP (a waituntil binary: compare two builds) with the
# shipped conf, runs wrk -t2 -c32 on /log for SECONDS (10), applies the
# fault 2 s in, and prints the answers (200/503), the /_status counters,
# the rows at the database path and the log's size.  SCENARIO:
#   rm        rm of the database file
#   truncate  truncate -s 0 of it
#   mv        mv of another database (a logs table only) over it
#   mvbackup  mv of a .backup of it, taken at the fault, over it
#   full      the database on a 2 MB tmpfs (it fills up in ~0.5 s)
#   fulllog   the same with the log file on that tmpfs too
#   fullfree  the tmpfs holds a 1 MiB file, removed 5 s in
# full* mount a tmpfs: root only.  Needs wrk, curl, sqlite3, nginx.
set -u
SRC=$1 BIN=$2 SC=$3 DUR=${4:-10}
W=${5:-$(mktemp -d "${TMPDIR:-/tmp}/dbfail.XXXXXX")}/$SC
rm -rf "$W"
mkdir -p "$W/build/app" "$W/db" "$W/prefix/logs"
ln -s "$(realpath "$BIN")" "$W/build/app/waituntil"
. "$SRC/tools/stack.sh"
PORT=$(stack_free_port)
DB=$W/db/waituntil.db
CONF=$SRC/conf/waituntil.conf
LOG=$W/prefix/logs/waituntil.log
case $SC in
full*) mount -t tmpfs -o size=2m tmpfs "$W/db" || exit 1 ;;
esac
[ "$SC" = fullfree ] &&
    dd if=/dev/zero of="$W/db/filler" bs=1k count=1024 2>/dev/null
if [ "$SC" = fulllog ]; then
    sed -e "s|^\( *\)log stderr;|\1log $W/db/waituntil.log;|" "$CONF" > "$W/conf"
    CONF=$W/conf LOG=$W/db/waituntil.log
fi
stack_start "$SRC" "$W/build" "$W/prefix" "$PORT" "$DB" "$CONF" || {
    case $SC in full*) umount "$W/db" ;; esac
    exit 1
}
URL=http://127.0.0.1:$PORT
cat > "$W/count.lua" <<'L'
threads = {}
setup = function(t) table.insert(threads, t) end
init = function() c200 = 0; c503 = 0; cother = 0 end
response = function(status)
  if status == 200 then c200 = c200 + 1
  elseif status == 503 then c503 = c503 + 1 else cother = cother + 1 end
end
done = function()
  local a, b, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("c200"); b = b + t:get("c503"); o = o + t:get("cother")
  end
  io.write(string.format("answers: 200=%d 503=%d other=%d\n", a, b, o))
end
L
field() { printf '%s' "$1" | sed -n -E "s/.*\"$2\":([0-9]+).*/\\1/p"; }
LOG0=$(wc -c < "$LOG" 2>/dev/null || echo 0)
wrk -t2 -c32 -d"${DUR}s" -s "$W/count.lua" "$URL/log" > "$W/wrk.out" 2>&1 &
WRK=$!
sleep 2
case $SC in
rm) rm -f "$DB" ;;
truncate) truncate -s 0 "$DB" ;;
mv) sqlite3 "$W/other.db" "PRAGMA journal_mode=WAL; CREATE TABLE logs(id INTEGER PRIMARY KEY, method TEXT, path TEXT, timestamp TEXT);" >/dev/null
    mv "$W/other.db" "$DB" ;;
mvbackup) sqlite3 -cmd '.timeout 5000' "$DB" ".backup '$W/other.db'"
    echo "backup rows: $(sqlite3 "$W/other.db" 'SELECT count(*) FROM logs')"
    mv "$W/other.db" "$DB" ;;
fullfree) sleep 3; rm "$W/db/filler"; echo "1 MiB freed 5 s in" ;;
esac
S1=$(curl -s "$URL/_status")
wait $WRK
sleep 1
S=$(curl -s "$URL/_status")
grep -E 'Requests/sec|answers:' "$W/wrk.out"
echo "tasks_ok just after the fault: $(field "$S1" tasks_ok)"
for k in tasks_admitted tasks_ok tasks_failed tasks_unavailable \
    responses_503_db_unavailable db_state db_lost db_failing db_reopened \
    db_probes db_unavailable_ms log_repeated log_dropped; do
    printf '%s=%s ' "$k" "$(field "$S" $k)"
done
echo
printf '%s' "$S" | sed -n -E 's/.*("db_status":"[a-z]*","db_reason":"[^"]*").*/\1/p'; echo
if [ -e "$DB" ]; then
    echo "rows at the path: $(sqlite3 -cmd '.timeout 5000' "$DB" 'SELECT count(*) FROM logs' 2>&1)"
else
    echo "rows at the path: (no file)"
fi
echo "log: $(( $(wc -c < "$LOG") - LOG0 )) bytes, $(grep -c 'event=task_failed' "$LOG") task_failed lines"
stack_stop
echo "exit status: ${STACK_APP_RC:-?}"
case $SC in full*) df -h "$W/db" | tail -n 1; umount "$W/db" ;; esac
