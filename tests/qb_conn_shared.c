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

/* The engine's own code for a failed call: SQLite's extended result code
 * and PostgreSQL's SQLSTATE, each asserted where the case names both. */
#define ASSERT_CODE(db, sqlite_code, sqlstate)                              \
    do {                                                                    \
        if (g_pg)                                                           \
            ck_assert_str_eq(qb_sqlstate(db), sqlstate);                    \
        else                                                                \
            ck_assert_int_eq(qb_errcode(db), sqlite_code);                  \
    } while (0)

/* ---- transactions and savepoints --------------------------------------- */

START_TEST(test_transactions)
{
    fx f;
    fx_open(&f, _i);
    seed(f.db);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(qb_in_transaction(f.db), 1);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('x')"), QB_OK);
    ck_assert_int_eq(qb_rollback(f.db), QB_OK);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 3);

    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    /* No nesting: SQLite refuses a second BEGIN; PostgreSQL only warns
     * and the transaction goes on. */
    ck_assert_int_eq(qb_begin(f.db), g_pg ? QB_OK : QB_ESQL);
    ck_assert_int_eq(qb_in_transaction(f.db), 1);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('x')"), QB_OK);
    ck_assert_int_eq(qb_commit(f.db), QB_OK);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 4);

    /* COMMIT / ROLLBACK with none open: an error on SQLite, a warning
     * only on PostgreSQL. */
    ck_assert_int_eq(qb_commit(f.db), g_pg ? QB_OK : QB_ESQL);
    ck_assert_int_eq(qb_rollback(f.db), g_pg ? QB_OK : QB_ESQL);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);

    /* A failing statement inside a transaction: PostgreSQL aborts it
     * (25P02 until a ROLLBACK TO a savepoint taken before), SQLite goes
     * on; rolling back to the savepoint recovers on both. */
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (id, name) VALUES (10, 'p')"),
                     QB_OK);
    ck_assert_int_eq(qb_savepoint(f.db, "sp1"), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (id, name) VALUES (11, 'q')"),
                     QB_OK);
    ck_assert_int_eq(qb_rollback_to(f.db, "sp1"), QB_OK);
    ck_assert_int_eq(qb_savepoint(f.db, "sp2"), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (id, name) VALUES (12, 'r')"),
                     QB_OK);
    ck_assert_int_eq(qb_release(f.db, "sp2"), QB_OK);
    ck_assert_int_eq(qb_savepoint(f.db, "sp3"), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (id, name) VALUES (10, 'x')"),
                     QB_ECONSTRAINT);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (id, name) VALUES (11, 'q')"),
                     g_pg ? QB_ESQL : QB_OK);
    if (g_pg)
        ck_assert_str_eq(qb_sqlstate(f.db), "25P02");
    ck_assert_int_eq(qb_rollback_to(f.db, "sp3"), QB_OK);
    ck_assert_int_eq(qb_commit(f.db), QB_OK);
    ck_assert_str_eq(query_ids(f.db, "SELECT id FROM t WHERE id >= 10 "
                                     "ORDER BY id"), "10,12");

    /* COMMIT after a failed statement: PostgreSQL's transaction was
     * aborted, the COMMIT is an error (25P02) and ends it; SQLite's was
     * not, the COMMIT keeps the statement that worked. */
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (id, name) VALUES (11, 'q')"),
                     QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (id, name) VALUES (10, 'x')"),
                     QB_ECONSTRAINT);
    ck_assert_int_eq(qb_commit(f.db), g_pg ? QB_ESQL : QB_OK);
    if (g_pg)
        ck_assert_str_eq(qb_sqlstate(f.db), "25P02");
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    ck_assert_str_eq(query_ids(f.db, "SELECT id FROM t WHERE id >= 10 "
                                     "ORDER BY id"),
                     g_pg ? "10,12" : "10,11,12");
    fx_close(&f);
}
END_TEST

START_TEST(test_savepoints_nested)
{
    fx f;
    fx_open(&f, _i);
    seed(f.db);
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('p')"), QB_OK);
    ck_assert_int_eq(qb_savepoint(f.db, "s1"), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('q')"), QB_OK);
    ck_assert_int_eq(qb_savepoint(f.db, "s2"), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('r')"), QB_OK);
    ck_assert_int_eq(qb_rollback_to(f.db, "s2"), QB_OK);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE name='r'"), 0);
    ck_assert_int_eq(qb_release(f.db, "s2"), QB_ESQL);  /* already gone */
    if (g_pg) {
        /* ... and that error aborted PostgreSQL's transaction: back to
         * s1 (which releases it too), then redo what followed it. */
        ck_assert_str_eq(qb_sqlstate(f.db), "3B001");
        ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('x')"),
                         QB_ESQL);
        ck_assert_int_eq(qb_rollback_to(f.db, "s1"), QB_OK);
        ck_assert_int_eq(qb_release(f.db, "s1"), QB_ESQL);
        ck_assert_int_eq(qb_rollback(f.db), QB_OK);
        ck_assert_int_eq(qb_begin(f.db), QB_OK);
        ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('p'), "
                                   "('q')"), QB_OK);
    } else {
        ck_assert_int_eq(qb_release(f.db, "s1"), QB_OK);
    }
    ck_assert_int_eq(qb_commit(f.db), QB_OK);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE name IN "
                                  "('p','q','r')"), 2);
    /* A savepoint with no transaction open: SQLite starts one;
     * PostgreSQL refuses (25P01) and none is open. */
    if (g_pg) {
        ck_assert_int_eq(qb_savepoint(f.db, "outer_sp"), QB_ESQL);
        ck_assert_str_eq(qb_sqlstate(f.db), "25P01");
        ck_assert_int_eq(qb_in_transaction(f.db), 0);
    } else {
        ck_assert_int_eq(qb_savepoint(f.db, "outer_sp"), QB_OK);
        ck_assert_int_eq(qb_in_transaction(f.db), 1);
        ck_assert_int_eq(run(f.db, "DELETE FROM t"), QB_OK);
        ck_assert_int_eq(qb_rollback_to(f.db, "outer_sp"), QB_OK);
        ck_assert_int_eq(qb_in_transaction(f.db), 0);
    }
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 5);
    fx_close(&f);
}
END_TEST

static const char *const bad_sp[] = {
    "a;b", "x.y", "", "1abc", "sp name", "s'1", "x; DROP TABLE t", NULL,
};

/* Bad savepoint names never reach the engine. */
START_TEST(test_savepoint_names)
{
    fx f;
    const char *n = bad_sp[_i];
    fx_open(&f, 0);
    ck_assert_int_eq(qb_savepoint(f.db, n), QB_EINVAL);
    ck_assert_int_eq(qb_release(f.db, n), QB_EINVAL);
    ck_assert_int_eq(qb_rollback_to(f.db, n), QB_EINVAL);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    fx_close(&f);
}
END_TEST

/* ---- chains (bulk inserts split by the builder) -------------------------- */

START_TEST(test_chain_commits_whole)
{
    fx f;
    qb_result *r = NULL;
    qb_query *q;
    fx_open(&f, _i);
    seed(f.db);
    q = chain3("x1", "x2", "x3", QB_FETCH_ALL);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 3);             /* concatenated */
    ck_assert_int_eq(qb_result_int(r, 2, 0), 6);
    ck_assert_int_eq(qb_result_changes(r), 3);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 6);
    qb_result_free(r);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

START_TEST(test_chain_rolls_back_whole)
{
    fx f;
    qb_result *r = (qb_result *)&f;
    qb_query *q;
    fx_open(&f, _i);
    seed(f.db);
    q = chain3("y1", "y2", "a", QB_FETCH_NONE);    /* 'a' is UNIQUE-taken */
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_ECONSTRAINT);
    ASSERT_CODE(f.db, SQLITE_CONSTRAINT_UNIQUE, "23505");
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 3);
    qb_query_free(q);

    /* Inside a caller's transaction: a savepoint; the caller's own work
     * survives, the transaction stays open. */
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('mine')"), QB_OK);
    q = chain3("z1", "z2", "b", QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_ECONSTRAINT);
    ck_assert_int_eq(qb_in_transaction(f.db), 1);
    ck_assert_int_eq(qb_commit(f.db), QB_OK);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 4);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE name LIKE "
                                  "'z%'"), 0);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

Suite *qb_conn_shared_suite(void)
{
    Suite *s = suite_create("qb_conn");
    TCase *t;

    t = tc(s, "transactions");
    tcase_add_loop_test(t, test_transactions, 0, NVAR);
    tcase_add_loop_test(t, test_savepoints_nested, 0, NVAR);
    tcase_add_loop_test(t, test_savepoint_names, 0, NELEM(bad_sp));
    tcase_add_loop_test(t, test_chain_commits_whole, 0, NVAR);
    tcase_add_loop_test(t, test_chain_rolls_back_whole, 0, NVAR);
    return s;
}
