#!/bin/sh
# lib/defer on PostgreSQL (see check_pg.sh).
. "$TESTS_SRCDIR/pg/check_pg.sh"
