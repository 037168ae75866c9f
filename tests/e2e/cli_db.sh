#!/bin/sh
# -t and the start agree about the SQLite database (issue 13, item 6):
#   - a missing database folder: -t says the start creates it (and creates
#     nothing), the start creates it (one level, mode 0750) and runs;
#   - a folder that cannot be created (parent missing, a regular file in
#     the way, parent not writable): both fail with the same message;
#   - a table dropped from the live database: -t fails naming the defer
#     block's file:line and route, the start refuses with the same
#     message, exits non-zero and leaves no socket behind;
#   - a migration pending on the live database: -t checks the statements
#     against the live schema as the pending migrations will leave it.
. "$TESTS_SRCDIR/lib.sh"
t_tmpdir
APP=$TOP_BUILDDIR/app/waituntil
[ -x "$APP" ] || t_skip_all "app/waituntil not built"
command -v sqlite3 >/dev/null || t_skip_all "sqlite3 CLI not installed"
umask 022

# The shipped conf with its migrations folder made absolute, so that -p
# can name any prefix; the database and the socket stay under var/.
CONF=$T_TMP/waituntil.conf
sed -e "s|^    migrations conf/migrations;|    migrations $TOP_SRCDIR/conf/migrations;|" \
    "$TOP_SRCDIR/conf/waituntil.conf" > "$CONF"
grep -q "^    migrations $TOP_SRCDIR/conf/migrations;" "$CONF" ||
    { t_fail "test conf: migrations line not found in conf/waituntil.conf"; t_done; exit 1; }

# run_t CONF PREFIX [AS...]: waituntil -t; output in $T_TMP/t.out, exit
# status in T_RC.  AS is a command prefix (setpriv ...) or nothing.
run_t() {
    rt_conf=$1 rt_p=$2
    shift 2
    T_RC=0
    "$@" "$APP" -t -c "$rt_conf" -p "$rt_p" >"$T_TMP/t.out" 2>&1 || T_RC=$?
}

# start_app CONF PREFIX LOG [AS...]: start in the background and wait
# (bounded: 60 s, for a loaded CI box) until it has started (S_STATE
# started, pid S_PID) or has exited on its own (S_STATE exited, status
# S_RC); a process that does neither is killed (S_STATE hung).
start_app() {
    sa_conf=$1 sa_p=$2 sa_log=$3
    shift 3
    : >"$sa_log"
    "$@" "$APP" -c "$sa_conf" -p "$sa_p" >"$sa_log" 2>&1 &
    S_PID=$!
    S_RC=
    i=0
    while :; do
        if grep -q "event=started" "$sa_log"; then
            S_STATE=started
            return 0
        fi
        if ! kill -0 "$S_PID" 2>/dev/null; then
            S_RC=0
            wait "$S_PID" || S_RC=$?
            S_STATE=exited
            return 0
        fi
        if [ $i -ge 600 ]; then
            kill -KILL "$S_PID" 2>/dev/null
            wait "$S_PID" 2>/dev/null
            S_STATE=hung
            return 0
        fi
        i=$((i + 1))
        sleep 0.1
    done
}

# stop_app: SIGTERM a started server and wait for it (status in S_RC).
stop_app() {
    kill -TERM "$S_PID" 2>/dev/null
    S_RC=0
    wait "$S_PID" || S_RC=$?
}

# both_fail DESCRIPTION PREFIX MESSAGE [AS...]: -t and the start both fail
# and both print MESSAGE; the start leaves no socket and no var/ folder.
both_fail() {
    bf_what=$1 bf_p=$2 bf_msg=$3
    shift 3
    run_t "$CONF" "$bf_p" "$@"
    if [ "$T_RC" -ne 0 ] && grep -qF "waituntil: $bf_msg" "$T_TMP/t.out" &&
        grep -q "test failed" "$T_TMP/t.out"; then
        t_ok "-t: $bf_what: fails with the message"
    else
        t_fail "-t: $bf_what (exit $T_RC)" "$(cat "$T_TMP/t.out")"
    fi
    start_app "$CONF" "$bf_p" "$T_TMP/start.log" "$@"
    if [ "$S_STATE" = exited ] && [ "$S_RC" -ne 0 ] &&
        grep -qF "$bf_msg" "$T_TMP/start.log" &&
        [ ! -S "$bf_p/var/waituntil.sock" ]; then
        t_ok "start: $bf_what: refuses with the same message, exit $S_RC"
    else
        [ "$S_STATE" != started ] || stop_app
        t_fail "start: $bf_what ($S_STATE, exit $S_RC)" "$(cat "$T_TMP/start.log")"
    fi
}

# ---- (a) a prefix without var/: -t announces, the start creates ----------
P=$T_TMP/fresh
mkdir "$P"
run_t "$CONF" "$P"
if [ "$T_RC" -eq 0 ] && grep -q "test is successful" "$T_TMP/t.out" &&
    grep -qF "waituntil: database folder $P/var does not exist: the start creates it (mode 0750)" "$T_TMP/t.out" &&
    [ ! -e "$P/var" ]; then
    t_ok "-t on a prefix without var/: successful, says the start creates it, creates nothing"
else
    t_fail "-t on a prefix without var/ (exit $T_RC)" "$(cat "$T_TMP/t.out"; ls -la "$P")"
fi
start_app "$CONF" "$P" "$T_TMP/fresh.log"
if [ "$S_STATE" = started ] && [ -S "$P/var/waituntil.sock" ] &&
    grep -q "event=db_dir_created path=$P/var mode=0750" "$T_TMP/fresh.log"; then
    t_ok "start on a prefix without var/: creates it and runs"
else
    t_fail "start on a prefix without var/ ($S_STATE, exit $S_RC)" "$(cat "$T_TMP/fresh.log")"
fi
[ "$S_STATE" != started ] || stop_app
mode=$(stat -c %a "$P/var" 2>/dev/null)
[ "$mode" = 750 ] && [ -s "$P/var/waituntil.db" ] &&
    t_ok "the folder has mode 0750 (umask 022) and holds the database" ||
    t_fail "var/ mode $mode" "$(ls -la "$P" "$P/var" 2>&1)"

# ---- (a) and (c): folders that cannot be created ---------------------------
both_fail "parent of var/ missing" "$T_TMP/missing/deeper" \
    "cannot create database folder $T_TMP/missing/deeper/var: No such file or directory"
[ ! -e "$T_TMP/missing" ] && t_ok "nothing was created above the missing parent" ||
    t_fail "a missing parent was created" "$(ls -laR "$T_TMP/missing")"
P=$T_TMP/file
mkdir "$P"
: > "$P/var"
both_fail "var is a regular file" "$P" "database folder $P/var: Not a directory"

# A parent that is not writable.  Root passes every mode bit, so as root
# the check runs as nobody (setpriv); as another user, chmod is enough.
P=$T_TMP/ro/p
mkdir -p "$P"
AS=
if [ "$(id -u)" -eq 0 ]; then
    if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
        AS="setpriv --reuid=nobody --regid=$(id -g nobody) --clear-groups"
        # nobody must reach the conf and the prefix, not write to them.
        chmod 0711 "$T_TMP"
        chmod 0755 "$T_TMP/ro" "$P"
    fi
else
    chmod 0555 "$P"
fi
if [ "$(id -u)" -eq 0 ] && [ -z "$AS" ]; then
    t_fail "unwritable parent: running as root without setpriv or a nobody user: cannot drop privileges to test it"
elif $AS mkdir "$P/probe" 2>/dev/null; then
    t_fail "unwritable parent: precondition: $P is writable to $($AS id -un)"
else
    # shellcheck disable=SC2086 # AS is a command prefix, split on purpose
    both_fail "parent of var/ not writable" "$P" \
        "cannot create database folder $P/var: Permission denied" $AS
fi
chmod 0755 "$P" 2>/dev/null

# ---- (b) a table dropped from the live database ---------------------------
# var/ is made here so that this part does not depend on the start
# making it.
P=$T_TMP/live
mkdir -p "$P/var"
DB=$P/var/waituntil.db
start_app "$CONF" "$P" "$T_TMP/live.log"
[ "$S_STATE" != started ] || stop_app
[ "$S_STATE" = started ] && [ "$S_RC" -eq 0 ] &&
    [ "$(sqlite3 "$DB" "SELECT count(*) FROM sqlite_master WHERE name = 'sessions'")" = 1 ] &&
    t_ok "the live database is made by a first start" ||
    t_fail "first start ($S_STATE, exit $S_RC)" "$(cat "$T_TMP/live.log")"
sqlite3 "$DB" 'DROP TABLE sessions'
line=$(grep -n 'defer delete sessions' "$CONF" | cut -d: -f1)
msg="$CONF:$line: route POST /logout: defer 1: delete from sessions: no such table: sessions"
run_t "$CONF" "$P"
[ "$T_RC" -ne 0 ] && grep -qF "waituntil: $msg (schema of the database)" "$T_TMP/t.out" &&
    grep -qF "waituntil: database $DB: 0 migration(s) to apply at start" "$T_TMP/t.out" &&
    t_ok "-t: a table dropped from the live database fails with file:line, route and defer" ||
    t_fail "-t on a live database without sessions (exit $T_RC)" "$(cat "$T_TMP/t.out")"
start_app "$CONF" "$P" "$T_TMP/drop.log"
if [ "$S_STATE" = exited ] && [ "$S_RC" -ne 0 ] &&
    grep -qF "$msg (schema of the database)" "$T_TMP/drop.log" &&
    grep -q "event=start_failed" "$T_TMP/drop.log" &&
    [ ! -e "$P/var/waituntil.sock" ]; then
    t_ok "start: a table dropped from the live database: refused with the same message, exit $S_RC, no socket"
else
    [ "$S_STATE" != started ] || stop_app
    t_fail "start on a live database without sessions ($S_STATE, exit $S_RC)" \
        "$(cat "$T_TMP/drop.log"; ls -la "$P/var")"
fi

# ---- a migration pending on the live database -----------------------------
# 0002 adds the table a new route writes to.  -t must check against the
# live schema as the start will leave it: sessions still missing (reported),
# audit about to be made (not reported).
MIG=$T_TMP/mig
mkdir "$MIG"
cp "$TOP_SRCDIR/conf/migrations/0001_init.sql" "$MIG/"
printf 'CREATE TABLE audit (id INTEGER PRIMARY KEY, path TEXT NOT NULL);\n' \
    > "$MIG/0002_audit.sql"
CONF2=$T_TMP/pending.conf
sed -e "s|^    migrations .*;|    migrations $MIG;|" "$CONF" > "$CONF2"
printf '%s\n' 'route POST /audit { respond 200 "a"; defer insert audit { path $uri; } }' >> "$CONF2"
run_t "$CONF2" "$P"
[ "$T_RC" -ne 0 ] &&
    grep -qF "waituntil: database $DB: 1 migration(s) to apply at start" "$T_TMP/t.out" &&
    grep -qF "route POST /logout: defer 1: delete from sessions: no such table: sessions (schema of the database after its pending migrations)" "$T_TMP/t.out" &&
    ! grep -q "audit" "$T_TMP/t.out" &&
    t_ok "-t with a migration pending: the live schema as migrated (sessions missing, audit coming)" ||
    t_fail "-t with a migration pending (exit $T_RC)" "$(cat "$T_TMP/t.out")"
sqlite3 "$DB" "CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT, created_at TEXT)"
run_t "$CONF2" "$P"
[ "$T_RC" -eq 0 ] && grep -q "test is successful" "$T_TMP/t.out" &&
    [ "$(sqlite3 "$DB" "SELECT count(*) FROM sqlite_master WHERE name = 'audit'")" = 0 ] &&
    [ "$(sqlite3 "$DB" "SELECT count(*) FROM migrations")" = 1 ] &&
    t_ok "-t with a migration pending that makes the table: successful, the database untouched" ||
    t_fail "-t with the pending migration making audit (exit $T_RC)" "$(cat "$T_TMP/t.out")"
start_app "$CONF2" "$P" "$T_TMP/pending.log"
[ "$S_STATE" != started ] || stop_app
[ "$S_STATE" = started ] && [ "$S_RC" -eq 0 ] &&
    grep -q "event=migrations .*found=2 applied=1" "$T_TMP/pending.log" &&
    t_ok "the start agrees: migrates and runs" ||
    t_fail "start with the pending migration ($S_STATE, exit $S_RC)" "$(cat "$T_TMP/pending.log")"
t_done
