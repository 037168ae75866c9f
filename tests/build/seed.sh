#!/bin/sh
# examples/seed builds OUT of tree from an installed waituntil with only
# pkg-config and its plain Makefile, as the README says: `make install`
# into a DESTDIR, the example copied to a scratch folder, then `make` and
# `make check` there (its Check tests run through the test kit), `./seed
# -t` checks its conf, and the program serves a FastCGI request whose
# deferred write lands in its database.
. "$TESTS_SRCDIR/lib.sh"
t_tmpdir
command -v pkg-config >/dev/null || t_skip_all "pkg-config not installed"
pkg-config --exists check || t_skip_all "check's pkg-config file not installed"
dest=$T_TMP/dest
if ! make -s -C "$TOP_BUILDDIR" install DESTDIR="$dest" >"$T_TMP/install.log" 2>&1; then
    t_fail "make install DESTDIR=..." "$(tail -n 20 "$T_TMP/install.log")"
    t_done; exit 1
fi
pc=$(find "$dest" -name waituntil.pc | head -n 1)
[ -n "$pc" ] && t_ok "waituntil.pc installed" ||
    { t_fail "waituntil.pc installed" "$(find "$dest" -name '*.pc')"; t_done; exit 1; }
pcdir=$(dirname "$pc")
# Installed for /usr/local but put under DESTDIR: the libraries' own run
# path (the real libdir) does not lead to each other here.
LD_LIBRARY_PATH=$(dirname "$pcdir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
for h in waituntil.h test.h web.h web_server.h defer.h qb.h qb_conn.h; do
    [ -n "$(find "$dest" -path "*/include/waituntil/$h" | head -n 1)" ] &&
        t_ok "installed <waituntil/$h>" || t_fail "installed <waituntil/$h>"
done

app=$T_TMP/seed
cp -R "$TOP_SRCDIR/examples/seed" "$app"
rm -f "$app/seed" "$app/test_seed"
# A tree built --disable-shared (the sanitizer trees) installs static
# libraries only: add their private dependencies, and the sanitizer
# runtime they were compiled for.
extra=
if [ -z "$(find "$dest" -name 'libwaituntil.so*' | head -n 1)" ]; then
    extra="$(pkg-config --libs jansson sqlite3) -lfcgi -pthread"
    pkg-config --exists libpq && extra="$extra $(pkg-config --libs libpq)"
fi
case ${WU_SANITIZER:-} in
asan) san=-fsanitize=address,undefined ;;
tsan) san=-fsanitize=thread ;;
*) san= ;;
esac
mk() {
    make -C "$app" PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_SYSROOT_DIR="$dest" \
        CC="${CC:-cc}" CFLAGS="-O1 -g -Wall -Wextra -Werror $san" \
        LDFLAGS="$san" LDLIBS="$extra" "$@"
}
if mk >"$T_TMP/make.log" 2>&1 && [ -x "$app/seed" ]; then
    t_ok "make (plain Makefile, pkg-config only) builds the seed app"
else
    t_fail "make builds the seed app" "$(tail -n 30 "$T_TMP/make.log")"
    t_done; exit 1
fi
# The README's shortest application, as printed, builds the same way
# and is the waituntil program (-v).
awk '/^## Write your own handlers/ { on = 1 }
     on && /^```c$/ { code = 1; next }
     code && /^```$/ { exit }
     code { print }' "$TOP_SRCDIR/README.md" > "$T_TMP/readme_app.c"
pcf() { PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$dest pkg-config "$@"; }
# shellcheck disable=SC2046,SC2086
if grep -q waituntil_main "$T_TMP/readme_app.c" &&
   ${CC:-cc} -std=c11 -Wall -Wextra -Werror $san "$T_TMP/readme_app.c" \
        -o "$T_TMP/readme_app" $(pcf --cflags --libs waituntil) $extra \
        >"$T_TMP/readme_cc.log" 2>&1 &&
   "$T_TMP/readme_app" -v | grep -q '^waituntil '; then
    t_ok "the README's shortest application builds and runs as printed"
else
    t_fail "the README's shortest application builds and runs as printed" \
        "$(head -n 20 "$T_TMP/readme_cc.log") $(head -n 5 "$T_TMP/readme_app.c")"
fi
if mk check >"$T_TMP/check.log" 2>&1; then
    t_ok "make check: the seed's Check tests pass ($(grep -o 'Checks: [0-9]*' "$T_TMP/check.log"))"
else
    t_fail "make check: the seed's Check tests pass" "$(tail -n 30 "$T_TMP/check.log")"
fi
grep -q "Checks: 4, Failures: 0, Errors: 0" "$T_TMP/check.log" &&
    t_ok "all 4 seed tests ran" ||
    t_fail "all 4 seed tests ran" "$(tail -n 5 "$T_TMP/check.log")"

# The program is waituntil with the seed's handlers: -t, then a request.
if (cd "$app" && ./seed -p . -c seed.conf -t) >"$T_TMP/t.log" 2>&1; then
    t_ok "./seed -t passes"
else
    t_fail "./seed -t passes" "$(cat "$T_TMP/t.log")"
fi
if (cd "$app" && ./seed -h) >"$T_TMP/h.log" 2>&1 &&
    head -n 1 "$T_TMP/h.log" | grep -q '^usage: seed \[-c FILE\]'; then
    t_ok "./seed -h names the program seed"
else
    t_fail "./seed -h names the program seed" "$(head -n 3 "$T_TMP/h.log")"
fi
command -v python3 >/dev/null || { t_done; exit 0; }
(cd "$app" && exec ./seed -p . -c seed.conf) 2>"$T_TMP/seed.err" &
pid=$!
sock=$app/var/seed.sock
up() { [ -S "$sock" ] && python3 "$TESTS_SRCDIR/e2e/fcgi_get.py" "$sock" POST /log/x >"$T_TMP/r" 2>/dev/null; }
if t_wait_for 60 up; then
    [ "$(head -n 1 "$T_TMP/r")" = 200 ] && t_ok "the seed app answers POST /log/x" ||
        t_fail "the seed app answers POST /log/x" "$(cat "$T_TMP/r")"
else
    t_fail "the seed app listens" "$(tail -n 20 "$T_TMP/seed.err")"
fi
kill -TERM "$pid" 2>/dev/null
wait "$pid"
rc=$?
[ "$rc" = 0 ] && t_ok "SIGTERM: drained, exit 0" ||
    t_fail "SIGTERM: drained, exit 0" "rc=$rc $(tail -n 5 "$T_TMP/seed.err")"
if command -v sqlite3 >/dev/null; then
    n=$(sqlite3 "$app/var/seed.db" "SELECT count(*) FROM logs WHERE path = '/log/x'")
    [ "$n" = 1 ] && t_ok "the deferred write is in the seed's database" ||
        t_fail "the deferred write is in the seed's database" "rows: $n"
fi
t_done
