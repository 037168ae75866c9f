# tests/e2e/e2e_lib.sh -- start the real stack (nginx + waituntil on
# loopback) for an end-to-end test.  Sourced after tests/lib.sh.

. "$TOP_SRCDIR/tools/stack.sh"

command -v curl >/dev/null || t_skip_all "curl not installed"
command -v sqlite3 >/dev/null || t_skip_all "sqlite3 CLI not installed"
[ -x "${NGINX_BIN:-/usr/sbin/nginx}" ] || command -v nginx >/dev/null ||
    t_skip_all "nginx not installed"
[ -x "$TOP_BUILDDIR/app/waituntil" ] || t_skip_all "app/waituntil not built"

# e2e_start [EXTRA-CONF-TEXT]: the shipped conf plus extra routes/settings
# (later blocks of the same name override: the test conf is the shipped
# one with test routes appended), on a free port in $T_TMP.
e2e_start() {
    E2E_CONF=$T_TMP/waituntil.conf
    cat "$TOP_SRCDIR/conf/waituntil.conf" > "$E2E_CONF"
    printf '%s\n' "${1:-}" >> "$E2E_CONF"
    E2E_DB=$T_TMP/db/waituntil.db
    E2E_PORT=$(stack_free_port)
    E2E_URL=http://127.0.0.1:$E2E_PORT
    T_CLEANUP_HOOK=stack_stop
    STACK_APP_ARGS="${E2E_APP_ARGS:-}"
    stack_start "$TOP_SRCDIR" "$TOP_BUILDDIR" "$T_TMP/prefix" "$E2E_PORT" \
        "$E2E_DB" "$E2E_CONF" || { t_fail "stack starts"; t_done; exit 1; }
}

# sql QUERY: run a read-only query on the test database.
sql() {
    sqlite3 -batch -noheader -cmd '.timeout 5000' "$E2E_DB" "$1"
}

# wait_rows QUERY WANT [TENTHS]: poll until QUERY prints WANT (bounded).
wait_rows() {
    i=0
    while [ "$(sql "$1")" != "$2" ] && [ $i -lt "${3:-50}" ]; do
        i=$((i + 1)); sleep 0.1
    done
    [ "$(sql "$1")" = "$2" ]
}

# The app's log, for failure details.
e2e_log() {
    tail -n "${1:-20}" "$T_TMP/prefix/logs/waituntil.log"
}
