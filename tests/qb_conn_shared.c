/*
 * qb_conn_shared.c -- the executor's engine-neutral cases, a suite of
 * tests/check_qb_conn (see check_qb_conn.c): each runs on the engine
 * under test.  Where the engines legitimately differ (a cell type, an
 * error code, SQLite's result code against PostgreSQL's SQLSTATE) the
 * case asserts each engine's value explicitly.
 */
#define _GNU_SOURCE
#include <check.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qb_conn_test.h"

#define NELEM(a) (int)(sizeof(a) / sizeof((a)[0]))

/* ---- suite -------------------------------------------------------------- */

Suite *qb_conn_shared_suite(void)
{
    Suite *s = suite_create("qb_conn");
    (void)tc;
    return s;
}
