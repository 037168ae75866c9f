# Sourced by tests/pg/check_*_pg.sh: run the Check program named like the
# sourcing script (tests/pg/check_defer_pg.sh runs tests/check_defer_pg),
# or $prog_name if the script sets it, against a private PostgreSQL that
# tests/pg/pg_env.sh starts on a unix socket and removes; SKIP (77) without
# a server.
prog="$TOP_BUILDDIR/tests/${prog_name:-$(basename "$0" .sh)}"
if [ "${WU_SANITIZER:-}" = valgrind ]; then
    set -- sh "$TESTS_SRCDIR/valgrind.sh" "$prog"
else
    set -- "$prog"
fi
exec sh "$TESTS_SRCDIR/pg/pg_env.sh" run "$@"
