#!/bin/sh
# tests/pg/pg_env.sh -- a private, throw-away PostgreSQL for the tests.
#
#   pg_env.sh start DIR    initdb in DIR/data, start a server listening on a
#                          unix socket in DIR only (no TCP), print its
#                          libpq connection string on stdout
#   pg_env.sh restart DIR  pg_ctl restart (fast): drops every connection
#   pg_env.sh stop DIR     stop the server and remove DIR
#   pg_env.sh run CMD...   start one in a fresh temp DIR, run CMD with
#                          WU_PG_DSN and WU_PG_RESTART exported, stop it,
#                          exit with CMD's status (77 = skip when no
#                          PostgreSQL server binaries are installed)
#
# Sourced instead of run, it defines the same as wu_pg_start/_restart/_stop.
#
# initdb and the server refuse to run as root, so as root they run as
# $WU_PG_USER (default "postgres", else "nobody") and DIR is handed to that
# user.  No system service, no cluster under /var/lib is touched.  The
# server binaries come from $WU_PG_BINDIR, else pg_config --bindir, else the
# newest /usr/lib/postgresql/*/bin.  Trust authentication: only someone who
# can reach DIR can connect, and DIR is mode 0700.

wu_pg_bindir() {
    if [ -n "${WU_PG_BINDIR:-}" ]; then echo "$WU_PG_BINDIR"; return 0; fi
    best='' bestv=0
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] || continue
        v=${d%/bin}
        v=${v##*/}
        case $v in ''|*[!0-9]*) continue ;; esac
        if [ "$v" -gt "$bestv" ]; then best=$d bestv=$v; fi
    done
    if [ -n "$best" ]; then echo "$best"; return 0; fi
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir)
        if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    fi
    echo "pg_env: no initdb found (install postgresql)" >&2
    return 1
}

# Run "$@" as the server's user.
wu_pg_as() {
    if [ "$(id -u)" -ne 0 ]; then
        "$@"
        return
    fi
    u=${WU_PG_USER:-}
    if [ -z "$u" ]; then
        if id postgres >/dev/null 2>&1; then u=postgres; else u=nobody; fi
    fi
    runuser -u "$u" -- "$@"
}

wu_pg_owner() {
    if [ "$(id -u)" -ne 0 ]; then id -un; return; fi
    if [ -n "${WU_PG_USER:-}" ]; then echo "$WU_PG_USER"
    elif id postgres >/dev/null 2>&1; then echo postgres
    else echo nobody; fi
}

wu_pg_opts() {
    # No TCP; socket in DIR/sock; small footprint (the machine is shared);
    # fsync off: the data is thrown away, speed matters more.
    echo "-k $1/sock -c listen_addresses= -c fsync=off -c shared_buffers=16MB -c max_connections=20"
}

wu_pg_start() {
    dir=$1
    [ -n "$dir" ] || { echo "usage: pg_env.sh start DIR" >&2; return 2; }
    bin=$(wu_pg_bindir) || return 1
    mkdir -p "$dir/sock" || return 1
    chmod 0700 "$dir" "$dir/sock"
    if [ "$(id -u)" -eq 0 ]; then chown -R "$(wu_pg_owner)" "$dir" || return 1; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        wu_pg_as "$bin/initdb" -D "$dir/data" -U wu -A trust -E UTF8 \
            --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
            echo "pg_env: initdb failed, see $dir/initdb.log" >&2; return 1; }
    fi
    wu_pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "$(wu_pg_opts "$dir")" start >/dev/null || {
        echo "pg_env: server did not start, see $dir/server.log" >&2; return 1; }
    echo "host=$dir/sock dbname=postgres user=wu"
}

wu_pg_restart() {
    dir=$1
    bin=$(wu_pg_bindir) || return 1
    wu_pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -m fast -o "$(wu_pg_opts "$dir")" restart >/dev/null
}

wu_pg_stop() {
    dir=$1
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    bin=$(wu_pg_bindir) || return 1
    if [ -f "$dir/data/postmaster.pid" ]; then
        wu_pg_as "$bin/pg_ctl" -D "$dir/data" -w -t 60 -m fast stop >/dev/null
    fi
    rm -rf "$dir"
}

wu_pg_run() {
    [ $# -gt 0 ] || { echo "usage: pg_env.sh run CMD [ARGS]" >&2; return 2; }
    if ! wu_pg_bindir >/dev/null 2>&1; then
        echo "pg_env: no PostgreSQL server installed: skipped" >&2
        return 77
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/wu-pg.XXXXXX") || return 1
    if ! dsn=$(wu_pg_start "$dir"); then
        [ -f "$dir/server.log" ] && tail -n 20 "$dir/server.log" >&2
        wu_pg_stop "$dir"
        return 1
    fi
    self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
    WU_PG_DSN=$dsn
    # A command line for system(): the quotes are meant to stay literal.
    # shellcheck disable=SC2089,SC2090
    WU_PG_RESTART="sh '$self' restart '$dir'"
    # shellcheck disable=SC2090
    export WU_PG_DSN WU_PG_RESTART
    "$@"
    st=$?
    wu_pg_stop "$dir"
    return $st
}

# Run as a script (not sourced): dispatch on the first argument.
case "${0##*/}" in
pg_env.sh)
    cmd=${1:-}
    [ $# -gt 0 ] && shift
    case "$cmd" in
    start) wu_pg_start "$@" ;;
    restart) wu_pg_restart "$@" ;;
    stop) wu_pg_stop "$@" ;;
    run) wu_pg_run "$@" ;;
    *) echo "usage: pg_env.sh start|restart|stop DIR | run CMD..." >&2
       exit 2 ;;
    esac
    ;;
esac
