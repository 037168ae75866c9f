# tools/stack.sh -- start/stop nginx + waituntil from a private prefix.
# Sourced by tools/run.sh (make run), the end-to-end tests and the
# benchmarks, so all three run the very same stack.
#
#   stack_start SRCDIR BUILDDIR PREFIX PORT DB [CONF]
#     nginx listens on 127.0.0.1:PORT, waituntil on PREFIX/waituntil.sock,
#     the database is DB; waits until both answer (each wait bounded by
#     $STACK_WAIT_S seconds, default 120: generous, as TSan builds on a
#     loaded machine start slowly).  Sets STACK_APP_PID,
#     STACK_NGINX_PID.  Extra waituntil arguments: $STACK_APP_ARGS;
#     a wrapper (valgrind...) for the app: $STACK_APP_WRAPPER.
#     STACK_OWN_SESSION=1 starts both in sessions of their own, out of
#     the terminal's reach, so that Ctrl-C reaches only the caller, which
#     then stops them in order (make run: waituntil drains, then nginx).
#     Without it nginx, which sets its own SIGINT handler, would get the
#     terminal's SIGINT too and stop at once, before waituntil's drain.
#   stack_stop_app [SIGNAL]   signal the app (default TERM), wait for it;
#                             its exit status goes to STACK_APP_RC
#   stack_stop                stop both (app first: it drains)

stack_start() {
    st_src=$1 st_build=$2 STACK_PREFIX=$3 STACK_PORT=$4 st_db=$5
    st_conf=${6:-$st_src/conf/waituntil.conf}
    STACK_APP=$st_build/app/waituntil
    if [ ! -x "$STACK_APP" ]; then
        echo "stack: $STACK_APP is not built" >&2
        return 1
    fi
    st_nginx=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
    mkdir -p "$STACK_PREFIX/logs" "$STACK_PREFIX/tmp" "$STACK_PREFIX/conf" \
        "$(dirname "$st_db")"
    STACK_SOCKET=$STACK_PREFIX/waituntil.sock
    cp "$st_src/nginx/fastcgi.conf" "$st_src/nginx/waituntil-locations.conf" \
        "$STACK_PREFIX/conf/"
    # Started as root, nginx would run its workers as nobody, who can reach
    # neither the 0660 socket nor a prefix under a 0700 home.  This private
    # loopback-only instance keeps the invoking user for its workers
    # (production: workers as www-data, socket group www-data; README).
    st_user=
    [ "$(id -u)" -ne 0 ] || st_user="user root root;"
    sed -e "s|@PREFIX@|$STACK_PREFIX|g" -e "s|@USER@|$st_user|g" -e "s|@PORT@|$STACK_PORT|g" \
        -e "s|@SOCKET@|$STACK_SOCKET|g" \
        -e "s|@ACCESS_LOG@|${STACK_ACCESS_LOG:-$STACK_PREFIX/logs/access.log}|g" \
        "$st_src/nginx/dev.conf.in" > "$STACK_PREFIX/conf/nginx.conf"

    st_setsid=
    if [ "${STACK_OWN_SESSION:-0}" = 1 ] && command -v setsid >/dev/null; then
        # A background job of this (non-interactive) shell is not a group
        # leader, so setsid(1) execs in place: $! stays the process's pid.
        st_setsid=setsid
    fi
    # The app first, so nginx never answers 502 while it starts.
    $st_setsid ${STACK_APP_WRAPPER:-} "$STACK_APP" -c "$st_conf" -p "$st_src" -l "unix:$STACK_SOCKET" \
        -d "$st_db" ${STACK_APP_ARGS:-} 2>>"$STACK_PREFIX/logs/waituntil.log" &
    STACK_APP_PID=$!
    # The socket file appears at bind(), a moment before listen(): nginx
    # may still meet a refused connect (502), which the /hello wait below
    # retries.
    st_end=$(($(date +%s) + ${STACK_WAIT_S:-120}))
    while [ ! -S "$STACK_SOCKET" ]; do
        if [ "$(date +%s)" -ge "$st_end" ] || ! kill -0 "$STACK_APP_PID" 2>/dev/null; then
            echo "stack: waituntil did not start; its log:" >&2
            tail -n 20 "$STACK_PREFIX/logs/waituntil.log" >&2
            return 1
        fi
        sleep 0.1
    done
    $st_setsid "$st_nginx" -p "$STACK_PREFIX" -c "$STACK_PREFIX/conf/nginx.conf" \
        -g 'daemon off;' 2>>"$STACK_PREFIX/logs/nginx.stderr" &
    STACK_NGINX_PID=$!
    st_end=$(($(date +%s) + ${STACK_WAIT_S:-120}))
    while [ "$(curl -s -o /dev/null --max-time 30 -w '%{http_code}' "http://127.0.0.1:$STACK_PORT/hello")" != 200 ]; do
        if [ "$(date +%s)" -ge "$st_end" ] || ! kill -0 "$STACK_NGINX_PID" 2>/dev/null; then
            echo "stack: nginx did not start:" >&2
            cat "$STACK_PREFIX/logs/nginx.stderr" "$STACK_PREFIX/logs/error.log" >&2 2>/dev/null
            return 1
        fi
        sleep 0.1
    done
}

stack_stop_app() {
    STACK_APP_RC=
    [ -n "${STACK_APP_PID:-}" ] || return 0
    kill -"${1:-TERM}" "$STACK_APP_PID" 2>/dev/null
    STACK_APP_RC=0
    wait "$STACK_APP_PID" || STACK_APP_RC=$?
    STACK_APP_PID=
}

stack_stop() {
    [ -z "${STACK_APP_PID:-}" ] || stack_stop_app TERM
    if [ -n "${STACK_NGINX_PID:-}" ]; then
        kill -QUIT "$STACK_NGINX_PID" 2>/dev/null
        wait "$STACK_NGINX_PID" 2>/dev/null
        STACK_NGINX_PID=
    fi
}

# A free TCP port on 127.0.0.1 (the kernel picks it).
stack_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + $$ % 20000))
}
