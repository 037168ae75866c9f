#!/bin/sh
# lib/qb's executor suite (tests/check_qb_conn) on PostgreSQL: the same
# program `make check` runs on SQLite, here against a private server
# (see check_pg.sh).
prog_name=check_qb_conn
. "$TESTS_SRCDIR/pg/check_pg.sh"
