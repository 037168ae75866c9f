#!/bin/sh
# Run tests/check_defer_pg against a private PostgreSQL (tests/pg/pg_env.sh
# starts it on a unix socket and removes it); SKIP (77) without a server.
prog="$TOP_BUILDDIR/tests/check_defer_pg"
if [ "${WU_SANITIZER:-}" = valgrind ]; then
    set -- sh "$TESTS_SRCDIR/valgrind.sh" "$prog"
else
    set -- "$prog"
fi
exec sh "$TESTS_SRCDIR/pg/pg_env.sh" run "$@"
