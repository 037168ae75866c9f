# tests/e2e/e2e_lib.sh -- start the real stack (nginx + waituntil on
# loopback) for an end-to-end test.  Sourced after tests/lib.sh.

. "$TOP_SRCDIR/tools/stack.sh"

command -v curl >/dev/null || t_skip_all "curl not installed"
command -v sqlite3 >/dev/null || t_skip_all "sqlite3 CLI not installed"
[ -x "${NGINX_BIN:-/usr/sbin/nginx}" ] || command -v nginx >/dev/null ||
    t_skip_all "nginx not installed"
[ -x "$TOP_BUILDDIR/app/waituntil" ] || t_skip_all "app/waituntil not built"

# e2e_start [EXTRA-CONF-TEXT]: the shipped conf plus extra routes
# appended (a block may be given once: server and pool settings go in
# $E2E_SERVER and $E2E_POOL, one directive a line, which take the place
# of the shipped block's directives of the same names), on a free port
# in $T_TMP.
e2e_start() {
    E2E_CONF=$T_TMP/waituntil.conf
    printf '%s\n' "${E2E_SERVER:-}" > "$T_TMP/server.inc"
    printf '%s\n' "${E2E_POOL:-}" > "$T_TMP/pool.inc"
    awk -v srv="$T_TMP/server.inc" -v pool="$T_TMP/pool.inc" '
        function load(f, b,   l, w) {
            while ((getline l < f) > 0) { split(l, w, " ");
                if (w[1] != "") { name[b, w[1]] = 1; add[b] = add[b] l "\n" } } }
        BEGIN { load(srv, "server"); load(pool, "pool") }
        /^(server|pool) \{/ { print; blk = $1; printf "%s", add[blk]; next }
        blk != "" && /^}/ { blk = "" }
        blk != "" { split($0, w, " "); if ((blk, w[1]) in name) next }
        { print }' "$TOP_SRCDIR/conf/waituntil.conf" > "$E2E_CONF"
    printf '%s\n' "${1:-}" >> "$E2E_CONF"
    E2E_DB=$T_TMP/db/waituntil.db
    E2E_PORT=$(stack_free_port)
    E2E_URL=http://127.0.0.1:$E2E_PORT
    T_CLEANUP_HOOK='e2e_lock_release; stack_stop'
    STACK_APP_ARGS="${E2E_APP_ARGS:-}"
    stack_start "$TOP_SRCDIR" "$TOP_BUILDDIR" "$T_TMP/prefix" "$E2E_PORT" \
        "$E2E_DB" "$E2E_CONF" || { t_fail "stack starts"; t_done; exit 1; }
}

# sql QUERY: run a read-only query on the test database.
sql() {
    sqlite3 -batch -noheader -cmd '.timeout 5000' "$E2E_DB" "$1"
}

# wait_rows QUERY WANT [SECONDS]: poll until QUERY prints WANT, at most
# SECONDS (default $T_WAIT_S: rows land after the answer, by a pool that
# may be slow under load; an early success costs nothing).
rows_are() { [ "$(sql "$1")" = "$2" ]; }
wait_rows() {
    t_wait_for "${3:-}" rows_are "$1" "$2"
}

# e2e_status: the /_status JSON, through nginx.  e2e_field JSON NAME: one
# integer counter out of it.
e2e_status() {
    curl -s --max-time 60 "$E2E_URL/_status"
}
e2e_field() {
    printf '%s' "$1" | sed -n -E "s/.*\"$2\":([0-9]+).*/\\1/p"
}
# e2e_wait_idle [SECONDS]: until the pool holds no task (queue_depth 0:
# nothing reserved, queued or running; the counters of every task that
# ran are final then, they are updated under the same lock).
e2e_idle() { [ "$(e2e_field "$(e2e_status)" queue_depth)" = 0 ]; }
e2e_wait_idle() {
    t_wait_for "${1:-}" e2e_idle
}

# e2e_wait_log PATTERN [SECONDS]: until the app's log has a line matching
# the extended regular expression PATTERN.
e2e_log_has() { grep -Eq "$1" "$T_TMP/prefix/logs/waituntil.log" 2>/dev/null; }
e2e_wait_log() {
    t_wait_for "${2:-}" e2e_log_has "$1"
}

# e2e_lock_hold: an outside sqlite3 shell takes the database's write lock
# (BEGIN IMMEDIATE) and keeps it until e2e_lock_release; returns 0 once it
# holds it (the shell prints "locked" after its BEGIN).  Meanwhile no
# deferred write can land: the pool waits for the lock (busy_timeout,
# then busy_retries).  Released with ".quit", not by EOF: the fifo's
# write end (fd 3) is inherited by every process started meanwhile.
e2e_lock_hold() {
    rm -f "$T_TMP/lock.in" "$T_TMP/lock.out"
    mkfifo "$T_TMP/lock.in" || return 1
    sqlite3 -batch "$E2E_DB" <"$T_TMP/lock.in" >"$T_TMP/lock.out" 2>&1 &
    E2E_LOCK_PID=$!
    exec 3>"$T_TMP/lock.in"
    (printf ".timeout %s\nBEGIN IMMEDIATE;\nSELECT 'locked';\n" \
        $((T_WAIT_S * 1000)) >&3) 2>/dev/null
    t_wait_for "" grep -qx locked "$T_TMP/lock.out"
}
# e2e_lock_release: commit the outside transaction and wait for the shell.
e2e_lock_release() {
    [ -n "${E2E_LOCK_PID:-}" ] || return 0
    (printf 'COMMIT;\n.quit\n' >&3) 2>/dev/null
    exec 3>&-
    wait "$E2E_LOCK_PID"
    E2E_LOCK_PID=
}

# The app's log, for failure details.
e2e_log() {
    tail -n "${1:-20}" "$T_TMP/prefix/logs/waituntil.log"
}
