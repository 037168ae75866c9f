#!/bin/sh
# configure must stop on a missing dependency with a message naming the
# Debian package that provides it.  Each dependency is hidden in turn: a
# pkg-config wrapper that denies one module, or an autoconf cache variable
# that says a header/library is absent.
. "$TESTS_SRCDIR/lib.sh"
t_tmpdir

real_pc=$(command -v pkg-config || true)
[ -n "$real_pc" ] || t_skip_all "pkg-config not installed"

mk_pc() { # fake pkg-config that fails for module $1
    cat > "$T_TMP/pc-$1" <<EOS
#!/bin/sh
for a in "\$@"; do case \$a in $1|$1\ *) exit 1;; esac; done
exec "$real_pc" "\$@"
EOS
    chmod +x "$T_TMP/pc-$1"
}

run_case() { # run_case DESCRIPTION EXPECTED-TEXT CONFIGURE-ARGS...
    desc=$1 want=$2; shift 2
    dir=$T_TMP/b$T_PASS$T_FAIL
    mkdir -p "$dir"
    if (cd "$dir" && "$TOP_SRCDIR/configure" -q "$@" >out.txt 2>&1); then
        t_fail "$desc" "configure succeeded"
    elif grep -q "$want" "$dir/out.txt"; then
        t_ok "$desc"
    else
        t_fail "$desc" "$(tail -n 3 "$dir/out.txt")"
    fi
}

for m in sqlite3 jansson check; do mk_pc $m; done
run_case "missing sqlite3 names libsqlite3-dev" "apt-get install libsqlite3-dev" PKG_CONFIG="$T_TMP/pc-sqlite3"
run_case "missing jansson names libjansson-dev" "apt-get install libjansson-dev" PKG_CONFIG="$T_TMP/pc-jansson"
run_case "missing Check names the check package" "apt-get install check" PKG_CONFIG="$T_TMP/pc-check"
run_case "missing fcgiapp.h names libfcgi-dev" "apt-get install libfcgi-dev" ac_cv_header_fcgiapp_h=no
run_case "missing libfcgi names libfcgi-dev" "apt-get install libfcgi-dev" ac_cv_lib_fcgi_FCGX_Accept_r=no
t_done
