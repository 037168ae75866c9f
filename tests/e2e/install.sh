#!/bin/sh
# The installed daemon: `make install` into a DESTDIR, then the INSTALLED
# program started from / with no flag but -p DESTDIR, which relocates the
# installed conf's relative paths (and the default conf) into the DESTDIR.
# The only other adjustment is what systemd does for the unit: make the
# runtime, state and log folders (RuntimeDirectory=, StateDirectory=,
# LogsDirectory=).  Nothing in the installed conf is rewritten.  It must
# answer a FastCGI request, write its deferred row, and exit 0 on SIGTERM.
. "$TESTS_SRCDIR/lib.sh"
t_tmpdir
command -v python3 >/dev/null || t_skip_all "python3 not installed"
dest=$T_TMP/dest

# What the daemon needs (the program brings the libraries along: automake
# installs them first; tests.am runs this test after install_headers.sh,
# so that two installs never relink the same libraries at once).
if ! make -s -C "$TOP_BUILDDIR" DESTDIR="$dest" install-sbinPROGRAMS \
        install-migrationsDATA install-pgmigrationsDATA \
        install-nginxsnippetsDATA install-data-local install-man \
        >"$T_TMP/install.log" 2>&1; then
    t_fail "make install DESTDIR=..." "$(tail -n 20 "$T_TMP/install.log")"
    t_done; exit 1
fi
t_ok "make install DESTDIR=... (program, conf, migrations, nginx snippets, man pages)"

bin=$dest$WU_SBINDIR/waituntil
conf=$dest$WU_SYSCONFDIR/waituntil/waituntil.conf
for f in "$bin" "$conf" "$dest$WU_PKGDATADIR/migrations/0001_init.sql" \
    "$dest$WU_PKGDATADIR/migrations/postgresql/0001_init.sql" \
    "$dest$WU_PKGDATADIR/nginx/waituntil.conf" \
    "$dest$WU_PKGDATADIR/nginx/fastcgi.conf" \
    "$dest$WU_SYSCONFDIR/logrotate.d/waituntil" \
    "$dest$WU_MANDIR/man8/waituntil.8" "$dest$WU_MANDIR/man5/waituntil.conf.5"; do
    [ -f "$f" ] && t_ok "installed ${f#"$dest"}" ||
        t_fail "installed ${f#"$dest"}" "$(find "$dest" -type f | head -n 40)"
done
grep -q "unix:$WU_RUNSTATEDIR/waituntil/waituntil.sock" \
    "$dest$WU_PKGDATADIR/nginx/waituntil.conf" &&
    t_ok "the nginx snippet names the installed socket" ||
    t_fail "the nginx snippet names the installed socket" \
        "$(grep -n unix: "$dest$WU_PKGDATADIR/nginx/waituntil.conf")"

# What systemd's RuntimeDirectory=, StateDirectory=, LogsDirectory= make.
sock=$dest$WU_RUNSTATEDIR/waituntil/waituntil.sock
db=$dest$WU_LOCALSTATEDIR/lib/waituntil/waituntil.db
log=$dest$WU_LOCALSTATEDIR/log/waituntil/waituntil.log
mkdir -p "$(dirname "$sock")" "$(dirname "$db")" "$(dirname "$log")"

# -T from /, relocated: where the start would take everything from.
cd / || exit 1
if "$bin" -p "$dest" -T >"$T_TMP/T.out" 2>"$T_TMP/T.err"; then
    t_ok "installed waituntil -p DESTDIR -T: the installed conf passes"
else
    t_fail "installed waituntil -p DESTDIR -T" "$(cat "$T_TMP/T.err")"
fi
hdr() { sed -n "s|^# $1: *||p" "$T_TMP/T.out" | head -n 1; }
want_eq() { # DESCRIPTION GOT WANT
    [ "$2" = "$3" ] && t_ok "$1" || t_fail "$1" "got:  $2
want: $3"
}
want_eq "-T: the default conf is the installed one" "$(hdr conf)" "$dest$WU_SYSCONFDIR/waituntil/waituntil.conf"
want_eq "-T: socket in runstatedir/waituntil" "$(hdr listen)" "unix:$dest$WU_RUNSTATEDIR/waituntil/waituntil.sock"
want_eq "-T: database in localstatedir/lib/waituntil" "$(hdr database)" "$dest$WU_LOCALSTATEDIR/lib/waituntil/waituntil.db (sqlite)"
want_eq "-T: migrations in pkgdatadir" "$(hdr migrations)" "$dest$WU_PKGDATADIR/migrations"
want_eq "-T: log in localstatedir/log/waituntil" "$(hdr log)" "$dest$WU_LOCALSTATEDIR/log/waituntil/waituntil.log"
grep -q "^# configuration file $conf:" "$T_TMP/T.out" &&
    t_ok "-T prints the conf file's text" || t_fail "-T prints the conf" "$(head -n 12 "$T_TMP/T.out")"


"$bin" -p "$dest" 2>"$T_TMP/stderr" &
pid=$!
T_CLEANUP_HOOK='kill -KILL $pid 2>/dev/null'
up() { [ -S "$sock" ] && python3 "$TESTS_SRCDIR/e2e/fcgi_get.py" "$sock" GET /hello >"$T_TMP/hello" 2>/dev/null; }
alive_and_up() { kill -0 "$pid" 2>/dev/null || return 0; up; }
t_wait_for "" alive_and_up
if kill -0 "$pid" 2>/dev/null && up; then
    t_ok "the installed program, started from / with -p only, answers"
else
    t_fail "the installed program answers" "$(cat "$T_TMP/stderr" "$log" 2>/dev/null | tail -n 20)"
    t_done; exit 1
fi
[ "$(cat "$T_TMP/hello")" = "200
hello" ] && t_ok "GET /hello over FastCGI: 200 hello" || t_fail "GET /hello" "$(cat "$T_TMP/hello")"
python3 "$TESTS_SRCDIR/e2e/fcgi_get.py" "$sock" GET /log >"$T_TMP/logr" 2>&1
head -n 1 "$T_TMP/logr" | grep -qx 200 && t_ok "GET /log: 200" || t_fail "GET /log" "$(cat "$T_TMP/logr")"
rows() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1], timeout=60).execute("select count(*) from logs").fetchone()[0])' "$db" 2>/dev/null; }
one_row() { [ "$(rows)" = 1 ]; }
t_wait_for "" one_row && t_ok "its deferred write landed in the installed database" ||
    t_fail "deferred write landed" "rows=$(rows)"
grep -q "event=started" "$log" && t_ok "it logs to the installed log file" ||
    t_fail "log file" "$(cat "$T_TMP/stderr")"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
T_CLEANUP_HOOK=
[ "$rc" -eq 0 ] && t_ok "SIGTERM: exit 0" || t_fail "SIGTERM: exit 0" "rc=$rc; $(tail -n 5 "$log")"
grep -q "event=stopped drain=complete" "$log" && t_ok "SIGTERM: the drain completed" ||
    t_fail "SIGTERM: drain" "$(tail -n 5 "$log")"
t_done
