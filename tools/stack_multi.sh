# tools/stack_multi.sh -- N waituntil instances behind one nginx upstream,
# from a private prefix, on one shared database.  Sourced (POSIX sh) by
# tests/pg/e2e_upstream.sh, tests/pg/e2e_restart.sh and
# tests/bench/scaleout.sh; tools/stack.sh is the one-instance version and
# lends its knobs: $STACK_APP_ARGS, $STACK_APP_WRAPPER, $STACK_ACCESS_LOG,
# $NGINX_BIN.
#
#   multi_start SRCDIR BUILDDIR PREFIX PORT N DB [CONF]
#       Instance I (1..N) listens on PREFIX/wuI.sock, logs to
#       PREFIX/logs/wuI.log, runs CONF (default conf/waituntil.conf) with
#       `-d DB`: a SQLite file path or a postgresql:// URI, the same for
#       all.  The instances start one after the other (the first applies
#       the migrations, the others find them applied), then nginx on
#       127.0.0.1:PORT (nginx/upstream-dev.conf.in).  Returns once nginx
#       answers /hello and every instance answers /_wu/I/hello.
#       $MULTI_URL is http://127.0.0.1:PORT.
#   multi_start_app I        (re)start instance I (its log is appended to)
#   multi_stop_app I [SIG]   signal it (default TERM) and wait (bounded:
#                            $MULTI_STOP_S, default 120 s, then KILL); its
#                            exit status goes to MULTI_RC (137 if killed)
#   multi_stop               every instance (TERM, each drains), then
#                            nginx; exit statuses in MULTI_RCS ("I:RC ...")
#   multi_pid I, multi_log I
#   multi_status I           /_status JSON of instance I (through nginx)
#   multi_field JSON NAME    one integer counter out of it
#   multi_sum NAME           that counter summed over the running instances
#   multi_wait_idle I [T]    until instance I has no deferred task queued
#                            or in flight (bounded: T tenths of a second,
#                            default 300); returns 1 if it never was
#   multi_stopped_sum NAME   NAME=N summed over every `event=stopped` line
#                            of every instance log (each process's final
#                            counters: admitted, ok, failed, left...)
#   multi_sql QUERY          run QUERY on the shared database (sqlite3 or
#                            psql, by the form of DB); prints the rows
#   multi_pg_uri DIR         the postgresql:// URI of tests/pg/pg_env.sh's
#                            server in DIR (user wu, database postgres)
#
# Upstream knobs: $MULTI_MAX_FAILS (1), $MULTI_FAIL_TIMEOUT (2s).
# Source tools/stack.sh too for stack_free_port.  Call these functions
# from the main shell, not in $(...): the PIDs are its children.

MULTI_STEPS=${MULTI_STEPS:-300}   # 0.1 s steps for any start

multi_start() {
    MULTI_SRC=$1 MULTI_BUILD=$2 MULTI_PREFIX=$3 MULTI_PORT=$4 MULTI_N=$5
    MULTI_DB=$6 MULTI_CONF=${7:-$1/conf/waituntil.conf}
    MULTI_APP=$MULTI_BUILD/app/waituntil
    MULTI_URL=http://127.0.0.1:$MULTI_PORT
    MULTI_NGINX_PID=
    if [ ! -x "$MULTI_APP" ]; then
        echo "stack_multi: $MULTI_APP is not built" >&2
        return 1
    fi
    mkdir -p "$MULTI_PREFIX/logs" "$MULTI_PREFIX/tmp" "$MULTI_PREFIX/conf" || return 1
    case $MULTI_DB in
    postgres://*|postgresql://*) ;;
    *) mkdir -p "$(dirname "$MULTI_DB")" || return 1 ;;
    esac
    cp "$MULTI_SRC/nginx/fastcgi.conf" "$MULTI_SRC/nginx/waituntil-locations.conf" \
        "$MULTI_PREFIX/conf/" || return 1

    mu_i=1
    : > "$MULTI_PREFIX/conf/servers.part"
    : > "$MULTI_PREFIX/conf/locations.part"
    while [ $mu_i -le "$MULTI_N" ]; do
        printf '        server unix:%s max_fails=%s fail_timeout=%s;\n' \
            "$MULTI_PREFIX/wu$mu_i.sock" "${MULTI_MAX_FAILS:-1}" \
            "${MULTI_FAIL_TIMEOUT:-2s}" >> "$MULTI_PREFIX/conf/servers.part"
        cat >> "$MULTI_PREFIX/conf/locations.part" <<EOF
        location /_wu/$mu_i/ {
            allow 127.0.0.1;
            deny  all;
            rewrite ^/_wu/$mu_i(/.*)\$ \$1 break;
            include fastcgi.conf;
            fastcgi_pass unix:$MULTI_PREFIX/wu$mu_i.sock;
        }
EOF
        multi_start_app "$mu_i" || return 1
        mu_i=$((mu_i + 1))
    done

    # Started as root, nginx's workers would run as nobody (stack.sh).
    mu_user=
    [ "$(id -u)" -ne 0 ] || mu_user="user root root;"
    mu_log=${STACK_ACCESS_LOG:-$MULTI_PREFIX/logs/access.log}
    [ "$mu_log" = off ] || mu_log="$mu_log wu_upstream"
    awk -v servers="$MULTI_PREFIX/conf/servers.part" \
        -v locations="$MULTI_PREFIX/conf/locations.part" '
        function slurp(f,   l, s) { s = ""; while ((getline l < f) > 0) s = s l "\n"; close(f); return s }
        /^@UPSTREAM_SERVERS@$/ { printf "%s", slurp(servers); next }
        /^@INSTANCE_LOCATIONS@$/ { printf "%s", slurp(locations); next }
        { print }' "$MULTI_SRC/nginx/upstream-dev.conf.in" |
        sed -e "s|@PREFIX@|$MULTI_PREFIX|g" -e "s|@USER@|$mu_user|g" \
            -e "s|@PORT@|$MULTI_PORT|g" -e "s|@ACCESS_LOG@|$mu_log|g" \
            > "$MULTI_PREFIX/conf/nginx.conf" || return 1
    mu_nginx=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
    "$mu_nginx" -p "$MULTI_PREFIX" -c "$MULTI_PREFIX/conf/nginx.conf" \
        -g 'daemon off;' 2>>"$MULTI_PREFIX/logs/nginx.stderr" &
    MULTI_NGINX_PID=$!
    multi_wait_200 "$MULTI_URL/hello" || {
        echo "stack_multi: nginx did not answer /hello:" >&2
        cat "$MULTI_PREFIX/logs/nginx.stderr" "$MULTI_PREFIX/logs/error.log" >&2 2>/dev/null
        return 1
    }
    mu_i=1
    while [ $mu_i -le "$MULTI_N" ]; do
        multi_wait_200 "$MULTI_URL/_wu/$mu_i/hello" || {
            echo "stack_multi: instance $mu_i does not answer through nginx" >&2
            return 1
        }
        mu_i=$((mu_i + 1))
    done
}

multi_pid() { eval "echo \${MULTI_PID_$1:-}"; }
multi_log() { echo "$MULTI_PREFIX/logs/wu$1.log"; }

# multi_wait_200 URL: until URL answers 200 (bounded); nginx must live.
multi_wait_200() {
    mu_j=0
    while [ "$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$1")" != 200 ]; do
        mu_j=$((mu_j + 1))
        if [ $mu_j -gt "$MULTI_STEPS" ] ||
            { [ -n "${MULTI_NGINX_PID:-}" ] && ! kill -0 "$MULTI_NGINX_PID" 2>/dev/null; }; then
            return 1
        fi
        sleep 0.1
    done
}

multi_start_app() {
    mu_sock=$MULTI_PREFIX/wu$1.sock
    mu_applog=$(multi_log "$1")
    if [ -n "$(multi_pid "$1")" ]; then
        echo "stack_multi: instance $1 is running" >&2
        return 1
    fi
    rm -f "$mu_sock"
    # shellcheck disable=SC2086
    ${STACK_APP_WRAPPER:-} "$MULTI_APP" -c "$MULTI_CONF" -p "$MULTI_SRC" \
        -l "unix:$mu_sock" -d "$MULTI_DB" ${STACK_APP_ARGS:-} 2>>"$mu_applog" &
    eval "MULTI_PID_$1=\$!"
    mu_pid=$!
    mu_j=0
    while [ ! -S "$mu_sock" ]; do
        mu_j=$((mu_j + 1))
        if [ $mu_j -gt "$MULTI_STEPS" ] || ! kill -0 "$mu_pid" 2>/dev/null; then
            echo "stack_multi: instance $1 did not start; its log:" >&2
            tail -n 20 "$mu_applog" >&2
            kill -KILL "$mu_pid" 2>/dev/null
            wait "$mu_pid" 2>/dev/null
            eval "MULTI_PID_$1="
            return 1
        fi
        sleep 0.1
    done
    # A restart: answering through its own location is not yet being back
    # in the upstream (nginx may hold it out for fail_timeout after the
    # connect errors of the stop), only proof that it serves.
    [ -z "${MULTI_NGINX_PID:-}" ] || multi_wait_200 "$MULTI_URL/_wu/$1/hello"
}

multi_stop_app() {
    MULTI_RC=
    mu_pid=$(multi_pid "$1")
    [ -n "$mu_pid" ] || return 0
    kill -"${2:-TERM}" "$mu_pid" 2>/dev/null
    mu_j=0
    while kill -0 "$mu_pid" 2>/dev/null && [ $mu_j -lt $((${MULTI_STOP_S:-120} * 10)) ]; do
        mu_j=$((mu_j + 1)); sleep 0.1
    done
    if kill -0 "$mu_pid" 2>/dev/null; then
        echo "stack_multi: instance $1 (pid $mu_pid) still runs after ${MULTI_STOP_S:-120} s: KILL" >&2
        kill -KILL "$mu_pid" 2>/dev/null
    fi
    MULTI_RC=0
    wait "$mu_pid" || MULTI_RC=$?
    eval "MULTI_PID_$1="
}

multi_stop() {
    MULTI_RCS=
    mu_i=1
    while [ $mu_i -le "${MULTI_N:-0}" ]; do
        if [ -n "$(multi_pid $mu_i)" ]; then
            multi_stop_app $mu_i TERM
            MULTI_RCS="$MULTI_RCS $mu_i:$MULTI_RC"
        fi
        mu_i=$((mu_i + 1))
    done
    MULTI_RCS=${MULTI_RCS# }
    if [ -n "${MULTI_NGINX_PID:-}" ]; then
        kill -QUIT "$MULTI_NGINX_PID" 2>/dev/null
        mu_j=0
        while kill -0 "$MULTI_NGINX_PID" 2>/dev/null && [ $mu_j -lt 100 ]; do
            mu_j=$((mu_j + 1)); sleep 0.1
        done
        kill -KILL "$MULTI_NGINX_PID" 2>/dev/null
        wait "$MULTI_NGINX_PID" 2>/dev/null
        MULTI_NGINX_PID=
    fi
}

multi_status() {
    curl -s --max-time 10 "$MULTI_URL/_wu/$1/_status"
}

multi_field() {
    printf '%s' "$1" | sed -n -E "s/.*\"$2\":([0-9]+).*/\\1/p"
}

multi_sum() {
    mu_s=0 mu_i=1
    while [ $mu_i -le "${MULTI_N:-0}" ]; do
        if [ -n "$(multi_pid $mu_i)" ]; then
            mu_v=$(multi_field "$(multi_status $mu_i)" "$1")
            mu_s=$((mu_s + ${mu_v:-0}))
        fi
        mu_i=$((mu_i + 1))
    done
    echo "$mu_s"
}

multi_wait_idle() {
    mu_j=0
    while [ $mu_j -lt "${2:-300}" ]; do
        mu_st=$(multi_status "$1")
        [ "$(multi_field "$mu_st" queue_depth)" = 0 ] && return 0
        mu_j=$((mu_j + 1)); sleep 0.1
    done
    return 1
}

multi_stopped_sum() {
    cat "$MULTI_PREFIX"/logs/wu*.log 2>/dev/null |
        sed -n "s/.*event=stopped .*[[:space:]]$1=\([0-9]*\).*/\1/p" |
        awk '{ s += $1 } END { print s + 0 }'
}

multi_sql() {
    case $MULTI_DB in
    postgres://*|postgresql://*)
        psql "$MULTI_DB" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1" ;;
    *)
        sqlite3 -batch -noheader -cmd '.timeout 5000' "$MULTI_DB" "$1" ;;
    esac
}

multi_pg_uri() {
    echo "postgresql://wu@/postgres?host=$1/sock"
}
