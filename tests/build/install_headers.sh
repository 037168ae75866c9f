#!/bin/sh
# The installed libraries are usable as the README says: after `make
# install` (here into a DESTDIR), a program that includes
# <waituntil/qb.h> and <waituntil/defer.h> compiles with nothing but
# `pkg-config --cflags --libs waituntil-defer`, links, and runs: it builds
# an insert, runs it on an in-memory SQLite database through the installed
# library, and hands one to a pool.
. "$TESTS_SRCDIR/lib.sh"
t_tmpdir

command -v pkg-config >/dev/null || t_skip_all "pkg-config not installed"
dest=$T_TMP/dest
if ! make -s -C "$TOP_BUILDDIR" install DESTDIR="$dest" >"$T_TMP/install.log" 2>&1; then
    t_fail "make install DESTDIR=..." "$(tail -n 20 "$T_TMP/install.log")"
    t_done; exit 1
fi
t_ok "make install DESTDIR=..."
pcdir=$(find "$dest" -name waituntil-defer.pc | head -n 1)
[ -n "$pcdir" ] && t_ok "waituntil-defer.pc installed" ||
    { t_fail "waituntil-defer.pc installed" "$(find "$dest" | head -n 30)"; t_done; exit 1; }
pcdir=$(dirname "$pcdir")
libdir=$(dirname "$pcdir")

cat > "$T_TMP/app.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <waituntil/qb.h>
#include <waituntil/qb_conn.h>
#include <waituntil/defer.h>

int main(void)
{
    qb_conn *db = NULL;
    qb_query *q = NULL;
    qb_value v[2];
    defer_config cfg;
    defer_pool *pool = NULL;
    char err[256];

    if (qb_open(&db, ":memory:", NULL, err, sizeof err) != QB_OK)
        return 1;
    if (qb_query_raw(&q, "CREATE TABLE logs(method TEXT, path TEXT)", 0,
                     NULL, QB_FETCH_NONE) != QB_OK ||
        qb_exec(db, q, NULL) != QB_OK)
        return 2;
    qb_query_free(q);
    v[0] = qb_text("GET");
    v[1] = qb_text("/x");
    if (qb_query_raw(&q, "INSERT INTO logs(method, path) VALUES (?1, ?2)", 2,
                     v, QB_FETCH_NONE) != QB_OK ||
        qb_exec(db, q, NULL) != QB_OK)
        return 3;
    qb_query_free(q);
    qb_close(db);
    defer_config_init(&cfg);
    cfg.workers = 1;
    if (defer_pool_create(&pool, &cfg, err, sizeof err) != DEFER_OK)
        return 4;
    defer_pool_destroy(pool);
    printf("%s\n", defer_strerror(DEFER_OK));
    return 0;
}
EOF

pc() { PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$dest pkg-config "$@"; }
flags=$(pc --cflags --libs waituntil-defer) ||
    { t_fail "pkg-config waituntil-defer" "$(pc --cflags --libs waituntil-defer 2>&1)"; t_done; exit 1; }
# A tree built --disable-shared (the sanitizer trees) installs static
# libraries only: link them with their direct private dependencies (the
# system's shared libsqlite3/libpq: `pkg-config --static` would ask for
# libpq's own static archives, which Debian does not ship) and with the
# sanitizer runtime they were compiled for.
if [ -z "$(find "$libdir" -name 'libwaituntil-defer.so*' | head -n 1)" ]; then
    # shellcheck disable=SC2046
    flags="$flags $(pkg-config --libs $(pc --print-requires-private waituntil-qb)) -pthread"
fi
case ${WU_SANITIZER:-} in
asan) san=-fsanitize=address,undefined ;;
tsan) san=-fsanitize=thread ;;
*) san= ;;
esac
# shellcheck disable=SC2086
if ${CC:-cc} -std=c11 -Wall -Werror $san "$T_TMP/app.c" -o "$T_TMP/app" $flags \
        -Wl,-rpath,"$libdir" >"$T_TMP/cc.log" 2>&1; then
    t_ok "#include <waituntil/...> compiles and links with pkg-config's flags"
else
    t_fail "#include <waituntil/...> compiles and links with pkg-config's flags" \
        "flags: $flags
$(head -n 20 "$T_TMP/cc.log")"
    t_done; exit 1
fi
out=$(LD_LIBRARY_PATH=$libdir "$T_TMP/app" 2>"$T_TMP/app.err")
[ "$out" = "ok" ] && t_ok "the program runs on the installed libraries" ||
    t_fail "the program runs on the installed libraries" "$out $(cat "$T_TMP/app.err")"

# The README's "query builder on its own" example, as printed, compiles
# against the installed headers (wrapped in a function that declares the
# variables it uses).
readme=$TESTS_SRCDIR/../README.md
awk '/^## The query builder on its own/ { on = 1 }
     on && /^```c$/ { code = 1; next }
     code && /^```$/ { exit }
     code { print }' "$readme" > "$T_TMP/snippet.body"
{
    grep '^#include' "$T_TMP/snippet.body"
    echo 'int readme(const char *target, const char *method, const char *path,'
    echo '           const char *iso_time, const char *user_id,'
    echo '           const char *session_id);'
    echo 'int readme(const char *target, const char *method, const char *path,'
    echo '           const char *iso_time, const char *user_id,'
    echo '           const char *session_id)'
    echo '{'
    echo '    int rc;'
    echo '    char err[256];'
    grep -v '^#include' "$T_TMP/snippet.body"
    echo '    return rc;'
    echo '}'
} > "$T_TMP/snippet.c"
if [ "$(grep -c qb_exec "$T_TMP/snippet.c")" -ge 3 ] &&
   ${CC:-cc} -std=c11 -Wall -Wno-declaration-after-statement -Werror -c \
        "$T_TMP/snippet.c" -o "$T_TMP/snippet.o" $(pc --cflags waituntil-qb) \
        >"$T_TMP/snippet.log" 2>&1; then
    t_ok "the README's query builder example compiles as printed"
else
    t_fail "the README's query builder example compiles as printed" \
        "$(head -n 20 "$T_TMP/snippet.log") $(head -n 5 "$T_TMP/snippet.c")"
fi
# ... and makes the seed's three writes on a SQLite file.
if [ -f "$T_TMP/snippet.o" ] && command -v sqlite3 >/dev/null; then
    cat > "$T_TMP/snippet_main.c" <<'EOF'
#include <stdio.h>
int readme(const char *target, const char *method, const char *path,
           const char *iso_time, const char *user_id,
           const char *session_id);
int main(int argc, char **argv)
{
    (void)argc;
    printf("%d\n", readme(argv[1], "GET", "/readme", "2026-12-04T00:00:00Z",
                          "u1", "s1"));
    return 0;
}
EOF
    db=$T_TMP/readme.db
    sqlite3 "$db" "CREATE TABLE logs (method TEXT, path TEXT, timestamp TEXT);
        CREATE TABLE users (id TEXT PRIMARY KEY, last_seen TEXT);
        CREATE TABLE sessions (id TEXT PRIMARY KEY);
        INSERT INTO users (id) VALUES ('u1');
        INSERT INTO sessions VALUES ('s1'), ('s2');"
    # shellcheck disable=SC2086
    if ${CC:-cc} -std=c11 -Wall -Werror $san "$T_TMP/snippet_main.c" \
            "$T_TMP/snippet.o" -o "$T_TMP/snippet" $flags \
            -Wl,-rpath,"$libdir" >"$T_TMP/snippet_ld.log" 2>&1; then
        rc=$(LD_LIBRARY_PATH=$libdir "$T_TMP/snippet" "$db" 2>&1)
        got=$(sqlite3 "$db" "SELECT (SELECT count(*) FROM logs WHERE
            path = '/readme') || ' ' || (SELECT count(*) FROM users WHERE
            last_seen IS NOT NULL) || ' ' || (SELECT group_concat(id) FROM
            sessions)")
        if [ "$rc" = 0 ] && [ "$got" = "1 1 s2" ]; then
            t_ok "the README's example makes the seed's three writes"
        else
            t_fail "the README's example makes the seed's three writes" \
                "rc=$rc rows: $got"
        fi
    else
        t_fail "the README's example links" "$(head -n 20 "$T_TMP/snippet_ld.log")"
    fi
fi
t_done
