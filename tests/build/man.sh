#!/bin/sh
# The man pages render with man(1) without a warning (groff's -ww through
# man --warnings), at 80 columns, and say what they document.
. "$TESTS_SRCDIR/lib.sh"
t_tmpdir
command -v man >/dev/null || t_skip_all "man not installed (Debian: man-db)"
for page in waituntil.8 waituntil.conf.5; do
    f=$TOP_SRCDIR/man/$page
    if MANWIDTH=80 man --warnings -l "$f" >"$T_TMP/out" 2>"$T_TMP/err" &&
        [ ! -s "$T_TMP/err" ]; then
        t_ok "$page renders without warnings"
    else
        t_fail "$page renders without warnings" "$(head -n 20 "$T_TMP/err")"
    fi
    grep -q "^NAME" "$T_TMP/out" && grep -q "^SEE ALSO" "$T_TMP/out" &&
        t_ok "$page has NAME and SEE ALSO" || t_fail "$page sections" "$(head -n 5 "$T_TMP/out")"
done
MANWIDTH=80 man -l "$TOP_SRCDIR/man/waituntil.conf.5" 2>/dev/null | grep -q "include pattern;" &&
    t_ok "waituntil.conf(5) documents include" || t_fail "waituntil.conf(5) documents include"
t_done
