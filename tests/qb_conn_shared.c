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

/* ---- batches ------------------------------------------------------------- */

START_TEST(test_batch_atomic)
{
    fx f;
    qb_query *qs[4];
    qb_result *res[4];
    size_t failed = 99;
    fx_open(&f, _i);
    seed(f.db);
    qs[0] = mkq("INSERT INTO t (name) VALUES ('b1')", 0, NULL, QB_FETCH_NONE);
    qs[1] = mkq("UPDATE t SET score = 0", 0, NULL, QB_FETCH_NONE);
    qs[2] = mkq("INSERT INTO t (name) VALUES ('a')", 0, NULL, QB_FETCH_NONE);
    qs[3] = mkq("DELETE FROM t", 0, NULL, QB_FETCH_NONE);
    ck_assert_int_eq(qb_batch(f.db, (const qb_query *const *)qs, 4, res,
                              &failed), QB_ECONSTRAINT);
    ASSERT_CODE(f.db, SQLITE_CONSTRAINT_UNIQUE, "23505");
    ck_assert_uint_eq(failed, 2);
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_null(res[i]);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "batch query 2"));
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 3);
    ck_assert_int_eq(scalar(f.db, "SELECT sum(score) FROM t"), 60);
    for (int i = 0; i < 4; i++)
        qb_query_free(qs[i]);
    fx_close(&f);
}
END_TEST

START_TEST(test_batch_results)
{
    fx f;
    qb_query *qs[3], *a, *b, *dup;
    qb_result *res[3];
    size_t failed = 99;
    fx_open(&f, _i);
    seed(f.db);
    qs[0] = mkq("INSERT INTO t (name) VALUES ('n') RETURNING id", 0, NULL,
                QB_FETCH_ONE);
    qs[1] = mkq("SELECT id FROM t ORDER BY id", 0, NULL, QB_FETCH_ALL);
    qs[2] = mkq("DELETE FROM t WHERE id = 1", 0, NULL, QB_FETCH_NONE);
    ck_assert_int_eq(qb_batch(f.db, (const qb_query *const *)qs, 3, res,
                              &failed), QB_OK);
    ck_assert_uint_eq(failed, 3);
    ck_assert_uint_eq(qb_result_rows(res[0]), 1);
    ck_assert_int_eq(qb_result_int(res[0], 0, 0), 4);
    ck_assert_uint_eq(qb_result_rows(res[1]), 4);
    ck_assert_uint_eq(qb_result_rows(res[2]), 0);
    ck_assert_int_eq(qb_result_changes(res[2]), 1);
    for (int i = 0; i < 3; i++) {
        qb_result_free(res[i]);
        qb_query_free(qs[i]);
    }
    /* No results wanted, empty batch, NULL element. */
    qs[0] = mkq("INSERT INTO t (name) VALUES ('m')", 0, NULL, QB_FETCH_NONE);
    ck_assert_int_eq(qb_batch(f.db, (const qb_query *const *)qs, 1, NULL,
                              NULL), QB_OK);
    ck_assert_int_eq(qb_batch(f.db, NULL, 0, NULL, NULL), QB_OK);
    qs[1] = NULL;
    ck_assert_int_eq(qb_batch(f.db, (const qb_query *const *)qs, 2, res,
                              &failed), QB_EINVAL);
    ck_assert_uint_eq(failed, 1);
    ck_assert_int_eq(qb_batch(f.db, NULL, 2, NULL, NULL), QB_EINVAL);
    ck_assert_int_eq(qb_batch(f.db, NULL, 1, NULL, NULL), QB_EINVAL);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 4);
    qb_query_free(qs[0]);

    /* RETURNING rows of each query; a failure at index 1 of 3 leaves
     * nothing of the batch and no result. */
    a = mkq("INSERT INTO t (id) VALUES (?) RETURNING id", 1,
            QB_VALS(qb_int(11)), QB_FETCH_ALL);
    b = mkq("INSERT INTO t (id) VALUES (?) RETURNING id", 1,
            QB_VALS(qb_int(12)), QB_FETCH_ALL);
    dup = mkq("INSERT INTO t (id) VALUES (11)", 0, NULL, QB_FETCH_NONE);
    qs[0] = a;
    qs[1] = b;
    ck_assert_int_eq(qb_batch(f.db, (const qb_query *const *)qs, 2, res,
                              &failed), QB_OK);
    ck_assert_uint_eq(failed, 2);
    ck_assert_int_eq(qb_result_int(res[0], 0, 0), 11);
    ck_assert_int_eq(qb_result_int(res[1], 0, 0), 12);
    qb_result_free(res[0]);
    qb_result_free(res[1]);
    ck_assert_int_eq(run(f.db, "DELETE FROM t WHERE id = 12"), QB_OK);
    qs[0] = b;
    qs[1] = dup;
    qs[2] = a;
    ck_assert_int_eq(qb_batch(f.db, (const qb_query *const *)qs, 3, res,
                              &failed), QB_ECONSTRAINT);
    ck_assert_uint_eq(failed, 1);
    ck_assert(res[0] == NULL && res[1] == NULL && res[2] == NULL);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "batch query 1"));
    ck_assert_str_eq(query_ids(f.db, "SELECT id FROM t WHERE id > 10 "
                                     "ORDER BY id"), "11");
    qb_query_free(a);
    qb_query_free(b);
    qb_query_free(dup);
    fx_close(&f);
}
END_TEST

START_TEST(test_batch_in_transaction)
{
    fx f;
    qb_query *qs[2];
    fx_open(&f, _i);
    seed(f.db);
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(run(f.db, "INSERT INTO t (name) VALUES ('keep')"), QB_OK);
    qs[0] = mkq("INSERT INTO t (name) VALUES ('gone')", 0, NULL,
                QB_FETCH_NONE);
    qs[1] = mkq("INSERT INTO t (name) VALUES ('keep')", 0, NULL,
                QB_FETCH_NONE);
    ck_assert_int_eq(qb_batch(f.db, (const qb_query *const *)qs, 2, NULL,
                              NULL), QB_ECONSTRAINT);
    ck_assert_int_eq(qb_in_transaction(f.db), 1);
    ck_assert_int_eq(qb_commit(f.db), QB_OK);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE name = "
                                  "'keep'"), 1);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE name = "
                                  "'gone'"), 0);
    qb_query_free(qs[0]);
    qb_query_free(qs[1]);
    fx_close(&f);
}
END_TEST

/* ---- count, paginate --------------------------------------------------------- */

static qb_query *page_query(int64_t per_page, int64_t page)
{
    char sql[160];
    qb_value min = qb_int(0);
    qb_query *q;
    snprintf(sql, sizeof sql, "SELECT * FROM p WHERE v > ?1 ORDER BY id "
             "LIMIT %lld OFFSET %lld", (long long)per_page,
             (long long)((page - 1) * per_page));
    q = mkq(sql, 1, &min, QB_FETCH_ALL);
    /* count_sql is used as written: in the engine's placeholder form */
    q->count_sql = strdup(g_pg ? "SELECT count(*) as total FROM p WHERE "
                                 "v > $1 LIMIT 1"
                               : "SELECT count(*) as total FROM p WHERE "
                                 "v > ?1 LIMIT 1");
    ck_assert_ptr_nonnull(q->count_sql);
    return q;
}

static void seed_pages(qb_conn *db, int n)
{
    char sql[128];
    ck_assert_int_eq(run(db, g_pg ? "CREATE TABLE p (id serial PRIMARY KEY, "
                                    "v integer)"
                                  : "CREATE TABLE p (id INTEGER PRIMARY KEY, "
                                    "v)"), QB_OK);
    snprintf(sql, sizeof sql, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL "
             "SELECT i + 1 FROM c WHERE i < %d) INSERT INTO p (v) SELECT i "
             "FROM c", n);
    if (n > 0)
        ck_assert_int_eq(run(db, sql), QB_OK);
}

START_TEST(test_count)
{
    fx f;
    qb_query *q;
    qb_select *s;
    qb_result *r;
    int64_t total = -1;
    fx_open(&f, _i);
    seed_pages(f.db, 25);
    q = page_query(10, 1);
    ck_assert_int_eq(qb_count(f.db, q, &total), QB_OK);
    ck_assert_int_eq(total, 25);
    free(q->count_sql);
    q->count_sql = NULL;
    ck_assert_int_eq(qb_count(f.db, q, &total), QB_EINVAL);
    ck_assert_int_eq(total, 0);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "count"));
    ck_assert_int_eq(qb_count(f.db, q, NULL), QB_EINVAL);
    qb_query_free(q);

    /* The builder's count statement, through qb_count and standalone; a
     * raw query has none. */
    s = qb_select_new("p");
    ck_assert_ptr_nonnull(s);
    qb_select_dialect(s, DIALECT);
    QB_WHERE(s, "v > ?", qb_int(20));
    qb_select_paginate(s, 1, 1);
    ck_assert_int_eq(qb_select_build(s, QB_FETCH_ALL, &q), QB_OK);
    ck_assert_ptr_nonnull(q->count_sql);
    ck_assert_int_eq(qb_count(f.db, q, &total), QB_OK);
    ck_assert_int_eq(total, 5);
    qb_query_free(q);
    ck_assert_int_eq(qb_select_build_count(s, &q), QB_OK);
    ck_assert_str_eq(query_ids(f.db, "SELECT 1"), "1");
    r = run_ok(f.db, q);
    ck_assert_int_eq(qb_result_int(r, 0, 0), 5);
    qb_result_free(r);
    qb_query_free(q);
    qb_select_free(s);
    q = mkq("SELECT 1", 0, NULL, QB_FETCH_ONE);
    ck_assert_int_eq(qb_count(f.db, q, &total), QB_EINVAL);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

static const struct page_case {
    int rows;
    int64_t page, per_page;
    size_t got;
    int64_t first_id, total_pages;
    int has_next, has_prev;
} pages[] = {
    { 25, 1, 10, 10, 1, 3, 1, 0 },
    { 25, 2, 10, 10, 11, 3, 1, 1 },
    { 25, 3, 10, 5, 21, 3, 0, 1 },
    { 25, 4, 10, 0, 0, 3, 0, 1 },
    { 20, 2, 10, 10, 11, 2, 0, 1 },
    { 0, 1, 10, 0, 0, 0, 0, 0 },
    { 7, 1, 1, 1, 1, 7, 1, 0 },
};

START_TEST(test_paginate)
{
    const struct page_case *c = &pages[_i];
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    qb_pagination pg;
    rec lg;
    fx_open(&f, 0);
    seed_pages(f.db, c->rows);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    q = page_query(c->per_page, c->page);
    if (g_pg) {
        /* SQLite only for now (qb_conn.h): refused, nothing run. */
        ck_assert_int_eq(qb_paginate(f.db, q, c->page, c->per_page, &r,
                                     &pg), QB_EDIALECT);
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "not available"));
        ck_assert_int_eq(lg.calls, 0);
        qb_query_free(q);
        fx_close(&f);
        return;
    }
    ck_assert_int_eq(qb_paginate(f.db, q, c->page, c->per_page, &r, &pg),
                     QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), c->got);
    if (c->got > 0)
        ck_assert_int_eq(qb_result_int_by(r, 0, "id"), c->first_id);
    ck_assert_int_eq(pg.page, c->page);
    ck_assert_int_eq(pg.per_page, c->per_page);
    ck_assert_int_eq(pg.total, c->rows);
    ck_assert_int_eq(pg.total_pages, c->total_pages);
    ck_assert_int_eq(pg.has_next, c->has_next);
    ck_assert_int_eq(pg.has_prev, c->has_prev);
    ck_assert_int_eq(lg.calls, 2);                 /* count + rows */
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    qb_result_free(r);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

START_TEST(test_paginate_invalid)
{
    fx f;
    qb_query *q;
    qb_result *r = (qb_result *)&f;
    qb_pagination pg;
    rec lg;
    fx_open(&f, 0);
    seed_pages(f.db, 3);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    q = page_query(10, 1);
    if (g_pg) {
        /* SQLite only for now: refused before the arguments are read. */
        ck_assert_int_eq(qb_paginate(f.db, q, 0, 10, &r, &pg), QB_EDIALECT);
        ck_assert_ptr_null(r);
        ck_assert_int_eq(lg.calls, 0);
        qb_query_free(q);
        fx_close(&f);
        return;
    }
    ck_assert_int_eq(qb_paginate(f.db, q, 0, 10, &r, &pg), QB_ECONFIG);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "Invalid page value: 0"));
    ck_assert_int_eq(qb_paginate(f.db, q, 1, -3, &r, &pg), QB_ECONFIG);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "Invalid perPage"));
    ck_assert_int_eq(qb_paginate(f.db, q, 1, 10, NULL, &pg), QB_EINVAL);
    ck_assert_int_eq(lg.calls, 0);                 /* nothing ran */
    /* A failing data statement: error, nothing returned, no open txn. */
    free(q->sql);
    q->sql = strdup("SELECT * FROM nope LIMIT 10");
    q->sql_len = strlen(q->sql);
    q->nparams = 1;
    ck_assert_int_eq(qb_paginate(f.db, q, 1, 10, &r, &pg), QB_ESQL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

/* ---- dialect, misuse ----------------------------------------------------------- */

/* A query rendered for the other engine is refused before anything runs;
 * the builder refuses SQLite-only syntax in the PostgreSQL dialect. */
START_TEST(test_dialect_refused)
{
    fx f;
    qb_dialect other = g_pg ? QB_DIALECT_SQLITE : QB_DIALECT_POSTGRES;
    qb_select *s = qb_select_new("t");
    qb_insert *ins = qb_insert_new("t");
    qb_query *q = NULL;
    qb_result *r = (qb_result *)&f;
    fx_open(&f, 0);
    seed(f.db);
    ck_assert_int_eq(qb_query_raw_dialect(&q, other, "SELECT 1", 0, NULL,
                                          QB_FETCH_ALL), QB_OK);
    if (g_pg) {
        /* The dialect follows the connection: SQLite's rendering that
         * uses nothing PostgreSQL lacks is converted and runs. */
        int64_t total = -1;
        ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
        ck_assert_uint_eq(qb_result_rows(r), 1);
        qb_result_free(r);
        qb_query_free(q);
        qb_select_dialect(s, other);
        QB_WHERE(s, "id = ? AND name <> 'a?b'", qb_int(1));
        ck_assert_int_eq(qb_select_build(s, QB_FETCH_ALL, &q), QB_OK);
        ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
        ck_assert_uint_eq(qb_result_rows(r), 1);
        qb_result_free(r);
        ck_assert_int_eq(qb_count(f.db, q, &total), QB_OK);
        ck_assert_int_eq(total, 1);
        qb_query_free(q);
        /* SQLite-only text (OFFSET without LIMIT: LIMIT -1) does not. */
        qb_select_offset(s, 1);
        ck_assert_int_eq(qb_select_build(s, QB_FETCH_ALL, &q), QB_OK);
        r = (qb_result *)&f;
        ck_assert_int_eq(qb_exec(f.db, q, &r), QB_EDIALECT);
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "dialect"));
        ck_assert_str_eq(qb_sqlstate(f.db), "");
        qb_query_free(q);
    } else {
        /* PostgreSQL's rendering never runs on SQLite. */
        ck_assert_int_eq(qb_exec(f.db, q, &r), QB_EDIALECT);
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "dialect"));
        ck_assert_str_eq(qb_sqlstate(f.db), "");
        qb_query_free(q);
        qb_select_dialect(s, other);
        QB_WHERE(s, "id = ?", qb_int(1));
        ck_assert_int_eq(qb_select_build(s, QB_FETCH_ALL, &q), QB_OK);
        ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_EDIALECT);
        qb_query_free(q);
    }

    /* The builder refuses SQLite-only syntax in the PG dialect. */
    qb_insert_dialect(ins, QB_DIALECT_POSTGRES);
    qb_insert_set(ins, "id", qb_int(9));
    qb_insert_or(ins, QB_CONFLICT_IGNORE);
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_EDIALECT);
    ck_assert_ptr_null(q);
    qb_select_dialect(s, QB_DIALECT_POSTGRES);
    ck_assert_int_eq(qb_select_build_explain(s, &q), QB_EDIALECT);
    ck_assert_ptr_null(q);
    {
        qb_update *u = qb_update_new("t");
        qb_update_dialect(u, QB_DIALECT_POSTGRES);
        qb_update_set(u, "score", qb_int(1));
        qb_update_or(u, QB_CONFLICT_REPLACE);
        ck_assert_int_eq(qb_update_build(u, &q), QB_EDIALECT);
        qb_update_free(u);
    }
    {
        /* PostgreSQL has no DELETE ... LIMIT; the builder says so first,
         * and the server refuses the raw statement. */
        qb_delete *d = qb_delete_new("t");
        qb_delete_dialect(d, QB_DIALECT_POSTGRES);
        QB_DELETE_WHERE(d, "score > ?", qb_int(15));
        qb_delete_order_by(d, "score", QB_ORDER_DESC);
        qb_delete_limit(d, 1);
        ck_assert_int_eq(qb_delete_build(d, &q), QB_EDIALECT);
        ck_assert_ptr_null(q);
        ck_assert_ptr_nonnull(strstr(qb_delete_errmsg(d), "SQLite only"));
        qb_delete_free(d);
        if (g_pg) {
            q = mkq("DELETE FROM t WHERE score > ? ORDER BY score DESC "
                    "LIMIT 1", 1, QB_VALS(qb_int(15)), QB_FETCH_ALL);
            ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_ESQL);
            ck_assert_str_eq(qb_sqlstate(f.db), "42601");
            qb_query_free(q);
        }
        ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 3);
    }
    qb_insert_free(ins);
    qb_select_free(s);
    fx_close(&f);
}
END_TEST

START_TEST(test_misuse_null_db)
{
    qb_query *q = mkq("SELECT 1", 0, NULL, QB_FETCH_ALL);
    qb_result *r = (qb_result *)q;
    qb_cursor *c = (qb_cursor *)q;
    qb_conn *db = (qb_conn *)q;
    qb_pagination pg;
    qb_cache_stats st;
    int64_t total = 5;
    size_t n = 5;
    const qb_query *qs[1] = { q };

    ck_assert_int_eq(qb_open(NULL, g_pg ? g_dsn : ":memory:", NULL, NULL, 0),
                     QB_EINVAL);
    ck_assert_int_eq(qb_open(&db, NULL, NULL, NULL, 0), QB_EINVAL);
    ck_assert_int_eq(qb_exec(NULL, q, &r), QB_EINVAL);
    ck_assert_ptr_null(r);
    r = (qb_result *)q;
    ck_assert_int_eq(qb_exec(NULL, NULL, &r), QB_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qb_cursor_open(NULL, q, &c), QB_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(qb_count(NULL, q, &total), QB_EINVAL);
    ck_assert_int_eq(total, 0);
    total = 5;
    ck_assert_int_eq(qb_count(NULL, NULL, &total), QB_EINVAL);
    ck_assert_int_eq(total, 0);
    ck_assert_int_eq(qb_paginate(NULL, q, 1, 1, &r, &pg), QB_EINVAL);
    ck_assert_int_eq(qb_explain(NULL, q, &r), QB_EINVAL);
    ck_assert_int_eq(qb_batch(NULL, qs, 1, NULL, NULL), QB_EINVAL);
    ck_assert_int_eq(qb_pipeline(NULL, qs, 1, NULL), QB_EINVAL);
    ck_assert_int_eq(qb_migrations_apply(NULL, NULL, NULL, 0, &n, NULL),
                     QB_EINVAL);
    ck_assert_int_eq(qb_migrations_applied(NULL, NULL, &r), QB_EINVAL);
    ck_assert_int_eq(qb_migrations_unapplied(NULL, NULL, NULL, 0, NULL, &n),
                     QB_EINVAL);
    ck_assert_int_eq(qb_begin(NULL), QB_EINVAL);
    ck_assert_int_eq(qb_commit(NULL), QB_EINVAL);
    ck_assert_int_eq(qb_rollback(NULL), QB_EINVAL);
    ck_assert_int_eq(qb_savepoint(NULL, "a"), QB_EINVAL);
    ck_assert_int_eq(qb_release(NULL, "a"), QB_EINVAL);
    ck_assert_int_eq(qb_rollback_to(NULL, "a"), QB_EINVAL);
    ck_assert_int_eq(qb_reset(NULL), QB_EINVAL);
    ck_assert_int_eq(qb_connected(NULL), 0);
    ck_assert_int_eq(qb_in_transaction(NULL), 0);
    ck_assert_int_eq(qb_changes(NULL), 0);
    ck_assert_int_eq(qb_last_insert_rowid(NULL), 0);
    ck_assert_ptr_null(qb_conn_sqlite(NULL));
    ck_assert_ptr_null(qb_conn_pg(NULL));
    ck_assert_ptr_nonnull(qb_errmsg(NULL));
    ck_assert_int_eq(qb_errcode(NULL), 0); /* no engine, no engine code */
    ck_assert_str_eq(qb_sqlstate(NULL), "");
    qb_conn_cache_stats(NULL, &st);
    qb_set_logger(NULL, rec_logger, NULL);
    qb_set_hooks(NULL, rec_before, rec_after, NULL);
    qb_close(NULL);
    qb_result_free(NULL);
    qb_cursor_close(NULL);
    /* A NULL result reads as NULL cells. */
    ck_assert_uint_eq(qb_result_rows(NULL), 0);
    ck_assert_uint_eq(qb_result_cols(NULL), 0);
    ck_assert_int_eq(qb_result_type(NULL, 0, 0), QB_V_NULL);
    ck_assert_ptr_null(qb_result_text(NULL, 0, 0, NULL));
    ck_assert_int_eq(qb_result_colindex(NULL, "x"), QB_EINVAL);
    ck_assert_int_eq(qb_result_int(NULL, 0, 0), 0);
    qb_query_free(q);
}
END_TEST

START_TEST(test_misuse_null_query)
{
    fx f;
    qb_result *r = (qb_result *)&f;
    qb_cursor *c = (qb_cursor *)&f;
    int64_t total = 3;
    rec lg;
    fx_open(&f, 0);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    ck_assert_int_eq(qb_exec(f.db, NULL, &r), QB_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "NULL query"));
    ck_assert_int_eq(qb_explain(f.db, NULL, &r), g_pg ? QB_EDIALECT
                                                      : QB_EINVAL);
    ck_assert_int_eq(qb_cursor_open(f.db, NULL, &c), g_pg ? QB_EDIALECT
                                                          : QB_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(qb_count(f.db, NULL, &total), QB_EINVAL);
    ck_assert_int_eq(lg.calls, 0);      /* nothing to attribute a log to */
    ck_assert_int_eq(scalar(f.db, "SELECT 1"), 1);
    fx_close(&f);
}
END_TEST

/* ---- SQL shape ---------------------------------------------------------------- */

static const struct shape_case {
    const char *sql;
    int rc;
    const char *msg;
    int pg_rc;           /* PostgreSQL's status ... */
    const char *pg_msg;  /* ... and message */
} shapes[] = {
    /* qb_conn.h says SQL holding more than one statement is refused
     * (QB_EINVAL): SQLite's driver does; PostgreSQL's sends it and the
     * server refuses it (QB_ESQL, 42601) -- a driver difference. */
    { "SELECT 1; SELECT 2", QB_EINVAL, "more than one", QB_ESQL,
      "cannot insert multiple commands" },
    { "SELECT 1;", QB_OK, NULL, QB_OK, NULL },
    { "SELECT 1; -- trailing comment", QB_OK, NULL, QB_OK, NULL },
    { "SELECT 1; /* block */ ;", QB_OK, NULL, QB_OK, NULL },
    { "", QB_EINVAL, "empty", QB_EINVAL, "empty" },
    { "-- only a comment", QB_EINVAL, "empty", QB_EINVAL, "empty" },
    { "SELECT 'unterminated", QB_ESQL, "unrecognized token", QB_ESQL,
      "unterminated quoted string" },
};

START_TEST(test_sql_shapes)
{
    const struct shape_case *c = &shapes[_i];
    const char *msg;
    qb_query *q;
    int rc;
    fx f;
    fx_open(&f, 0);
    /* Set the text directly: this checks the executor, not the builder's
     * whitespace handling. */
    q = mkq("SELECT 0", 0, NULL, QB_FETCH_ALL);
    free(q->sql);
    q->sql = strdup(c->sql);
    ck_assert_ptr_nonnull(q->sql);
    q->sql_len = strlen(c->sql);
    rc = qb_exec(f.db, q, NULL);
    ck_assert_msg(rc == (g_pg ? c->pg_rc : c->rc), "'%s': %d %s [%s]",
                  c->sql, rc, qb_errmsg(f.db), qb_sqlstate(f.db));
    qb_query_free(q);
    msg = g_pg ? c->pg_msg : c->msg;
    if (msg != NULL)
        ck_assert_msg(strstr(qb_errmsg(f.db), msg) != NULL,
                      "message '%s' lacks '%s'", qb_errmsg(f.db), msg);
    ck_assert_int_eq(scalar(f.db, "SELECT 3"), 3);
    fx_close(&f);
}
END_TEST

/* ---- parameter count -------------------------------------------------------------- */

static const struct param_case {
    const char *sql;
    size_t nargs;
    int rc;
} param_cases[] = {
    { "SELECT ?1 + ?2", 1, QB_EINVAL },
    { "SELECT ?1 + ?2", 3, QB_EINVAL },
    { "SELECT ?", 0, QB_EINVAL },
    { "SELECT 1", 1, QB_EINVAL },
    { "SELECT ?2", 1, QB_EINVAL },        /* highest index counts */
    { "SELECT ?1 + ?1", 1, QB_OK },       /* reuse is one value */
    { "SELECT ?1, ?3", 3, QB_OK },
};

START_TEST(test_param_count)
{
    const struct param_case *c = &param_cases[_i];
    qb_value a[3] = { qb_int(1), qb_int(2), qb_int(3) };
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    fx_open(&f, 0);
    q = mkq(c->sql, c->nargs, a, QB_FETCH_ONE);
    ck_assert_int_eq(qb_exec(f.db, q, &r), c->rc);
    if (c->rc != QB_OK) {
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "parameter count"));
        /* refused by qb: SQLite's code for it, no SQLSTATE */
        if (g_pg)
            ck_assert_str_eq(qb_sqlstate(f.db), "");
        else
            ck_assert_int_eq(qb_errcode(f.db), SQLITE_RANGE);
    }
    qb_result_free(r);
    qb_query_free(q);
    /* The connection (and the cached statement) stay usable. */
    ck_assert_int_eq(scalar(f.db, "SELECT 7"), 7);
    fx_close(&f);
}
END_TEST

/* ---- statement kinds (table-driven) --------------------------------------- */

static const struct kind_case {
    const char *sql;
    int nargs;
    int64_t a0, a1;
    qb_fetch fetch;
    int rc;
    size_t rows;
    int64_t first;         /* first column of row 0, if rows > 0 */
    int64_t changes;
    const char *check;     /* scalar query run afterwards ... */
    int64_t check_val;     /* ... and its expected value */
    const char *rel;       /* or: relations(rel) (engine's catalog) */
    int sqlite_code;       /* on error: SQLite's extended code ... */
    const char *sqlstate;  /* ... and PostgreSQL's SQLSTATE */
} kinds[] = {
    { "SELECT id, name FROM t ORDER BY id", 0, 0, 0, QB_FETCH_ALL,
      QB_OK, 3, 1, 0, "SELECT count(*) FROM t", 3, NULL, 0, NULL },
    { "SELECT id FROM t WHERE id > ?1 ORDER BY id", 1, 1, 0, QB_FETCH_ONE,
      QB_OK, 1, 2, 0, "SELECT count(*) FROM t", 3, NULL, 0, NULL },
    { "SELECT id FROM t WHERE id > ?1", 1, 99, 0, QB_FETCH_ONE,
      QB_OK, 0, 0, 0, "SELECT count(*) FROM t", 3, NULL, 0, NULL },
    { "SELECT id FROM t", 0, 0, 0, QB_FETCH_NONE,
      QB_OK, 0, 0, 0, "SELECT count(*) FROM t", 3, NULL, 0, NULL },
    { "WITH x AS (SELECT score FROM t WHERE score >= ?1) "
      "SELECT sum(score) FROM x", 1, 20, 0, QB_FETCH_ONE,
      QB_OK, 1, 50, 0, "SELECT count(*) FROM t", 3, NULL, 0, NULL },
    { "INSERT INTO t (name, score) VALUES (?1, ?2)", 2, 0, 40, QB_FETCH_NONE,
      QB_OK, 0, 0, 1, "SELECT score FROM t WHERE id = 4", 40, NULL, 0, NULL },
    { "INSERT INTO t (name, score) VALUES ('d', ?1), ('e', ?2) "
      "RETURNING id", 2, 5, 6, QB_FETCH_ALL,
      QB_OK, 2, 4, 2, "SELECT count(*) FROM t", 5, NULL, 0, NULL },
    { "UPDATE t SET score = score + ?1 WHERE id <= ?2", 2, 10, 2,
      QB_FETCH_NONE, QB_OK, 0, 0, 2, "SELECT sum(score) FROM t", 80, NULL, 0, NULL },
    /* ONE from a writer: first row returned, every row still updated. */
    { "UPDATE t SET score = ?1 RETURNING id", 1, 7, 0, QB_FETCH_ONE,
      QB_OK, 1, 1, 3, "SELECT sum(score) FROM t", 21, NULL, 0, NULL },
    { "DELETE FROM t WHERE id = ?1", 1, 3, 0, QB_FETCH_NONE,
      QB_OK, 0, 0, 1, "SELECT count(*) FROM t", 2, NULL, 0, NULL },
    { "DELETE FROM t WHERE id = ?1", 1, 42, 0, QB_FETCH_NONE,
      QB_OK, 0, 0, 0, "SELECT count(*) FROM t", 3, NULL, 0, NULL },
    { "CREATE TABLE u (x INTEGER)", 0, 0, 0, QB_FETCH_NONE,
      QB_OK, 0, 0, 0, NULL, 1, "'u'", 0, NULL },
    { "CREATE INDEX t_score ON t (score)", 0, 0, 0, QB_FETCH_NONE,
      QB_OK, 0, 0, 0, NULL, 1, "'t_score'", 0, NULL },
    { "DROP TABLE t", 0, 0, 0, QB_FETCH_NONE,
      QB_OK, 0, 0, 0, NULL, 0, "'t'", 0, NULL },
    { "INSERT INTO t (id, name) VALUES (?1, 'zz')", 1, 1, 0, QB_FETCH_NONE,
      QB_ECONSTRAINT, 0, 0, 0, "SELECT count(*) FROM t", 3, NULL,
      SQLITE_CONSTRAINT_PRIMARYKEY, "23505" },
    { "SELEKT 1", 0, 0, 0, QB_FETCH_ALL,
      QB_ESQL, 0, 0, 0, "SELECT count(*) FROM t", 3, NULL, SQLITE_ERROR,
      "42601" },
    { "SELECT * FROM missing_table", 0, 0, 0, QB_FETCH_ALL,
      QB_ESQL, 0, 0, 0, "SELECT count(*) FROM t", 3, NULL, SQLITE_ERROR,
      "42P01" },
};
#define NKINDS (int)(sizeof kinds / sizeof kinds[0])

START_TEST(test_statement_kinds)
{
    const struct kind_case *k = &kinds[_i / NVAR];
    qb_value a[2];
    qb_query *q;
    qb_result *r = (qb_result *)&a;   /* must be overwritten */
    fx f;

    fx_open(&f, _i % NVAR);
    seed(f.db);
    a[0] = k->sql[0] == 'I' && k->a0 == 0 ? qb_text("d") : qb_int(k->a0);
    a[1] = qb_int(k->a1);
    q = mkq(k->sql, (size_t)k->nargs, a, k->fetch);
    ck_assert_int_eq(qb_exec(f.db, q, &r), k->rc);
    if (k->rc == QB_OK) {
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(qb_result_rows(r), k->rows);
        if (k->rows > 0)
            ck_assert_int_eq(qb_result_int(r, 0, 0), k->first);
        ck_assert_int_eq(qb_result_changes(r), k->changes);
    } else {
        ck_assert_ptr_null(r);
        ck_assert_str_ne(qb_errmsg(f.db), "not an error");
        ASSERT_CODE(f.db, k->sqlite_code, k->sqlstate);
    }
    qb_result_free(r);
    /* Same query again without out: same status, nothing allocated. */
    if (k->rc != QB_OK)
        ck_assert_int_eq(qb_exec(f.db, q, NULL), k->rc);
    qb_query_free(q);
    if (k->rel != NULL)
        ck_assert_int_eq(relations(f.db, k->rel), k->check_val);
    else
        ck_assert_int_eq(scalar(f.db, k->check), k->check_val);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_last_insert_rowid)
{
    fx f;
    qb_value v = qb_text("zz");
    qb_query *q;
    qb_result *r = NULL;
    fx_open(&f, _i);
    seed(f.db);
    q = mkq("INSERT INTO t (name) VALUES (?1)", 1, &v, QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_int_eq(qb_result_changes(r), 1);
    /* SQLite only: PostgreSQL has no last rowid (use RETURNING), and
     * qb_changes is SQLite's (qb_conn.h) */
    ck_assert_int_eq(qb_result_last_insert_rowid(r), g_pg ? 0 : 4);
    ck_assert_int_eq(qb_last_insert_rowid(f.db), g_pg ? 0 : 4);
    ck_assert_int_eq(qb_changes(f.db), g_pg ? 0 : 1);
    qb_result_free(r);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

/* ---- binding and typed rows ----------------------------------------------- */

START_TEST(test_bind_types)
{
    static const char nul_text[] = { 'a', '\0', 'b' };
    static const unsigned char blob[] = { 0, 1, 2, 0xff };
    qb_value v[9];
    qb_query *ins, *sel;
    qb_result *r = NULL;
    size_t n = 0;
    const void *p;
    fx f;

    fx_open(&f, _i);
    ck_assert_int_eq(run(f.db, g_pg ? "CREATE TABLE v (a integer, b bigint, "
                                      "c bigint, d double precision, e text, "
                                      "f text, g bytea, h bytea, i boolean)"
                                    : "CREATE TABLE v (a, b, c, d, e, f, g, "
                                      "h, i)"), QB_OK);
    v[0] = qb_null();
    v[1] = qb_int(INT64_MIN);
    v[2] = qb_int(INT64_MAX);
    v[3] = qb_real(-2.5);
    v[4] = qb_textn(nul_text, sizeof nul_text);
    v[5] = qb_text("");
    v[6] = qb_blob(blob, sizeof blob);
    v[7] = qb_blob(NULL, 0);
    v[8] = qb_bool(5);
    ins = mkq("INSERT INTO v VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
              9, v, QB_FETCH_NONE);
    if (g_pg) {
        /* PostgreSQL text cannot hold a NUL byte: refused before it is
         * sent; the same row with "a<NUL>" cut to "a" goes in. */
        ck_assert_int_eq(qb_exec(f.db, ins, NULL), QB_EINVAL);
        ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "NUL"));
        ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM v"), 0);
        qb_query_free(ins);
        v[4] = qb_textn(nul_text, 1);
        ins = mkq("INSERT INTO v VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                  9, v, QB_FETCH_NONE);
    }
    ck_assert_int_eq(qb_exec(f.db, ins, NULL), QB_OK);
    sel = mkq(g_pg ? "SELECT a, b, c, d, e, f, g, h, i, pg_typeof(h)::text "
                     "AS th FROM v"
                   : "SELECT a, b, c, d, e, f, g, h, i, typeof(h) AS th "
                     "FROM v", 0, NULL, QB_FETCH_ONE);
    ck_assert_int_eq(qb_exec(f.db, sel, &r), QB_OK);
    ck_assert_uint_eq(qb_result_cols(r), 10);
    ck_assert_int_eq(qb_result_type(r, 0, 0), QB_V_NULL);
    ck_assert_int_eq(qb_result_is_null(r, 0, 0), 1);
    ck_assert_int_eq(qb_result_type(r, 0, 1), QB_V_INT);
    ck_assert(qb_result_int(r, 0, 1) == INT64_MIN);
    ck_assert(qb_result_int_by(r, 0, "c") == INT64_MAX);
    ck_assert_int_eq(qb_result_type_by(r, 0, "d"), QB_V_REAL);
    ck_assert(qb_result_real_by(r, 0, "d") == -2.5);
    ck_assert_int_eq(qb_result_type(r, 0, 4), QB_V_TEXT);
    p = qb_result_text(r, 0, 4, &n);
    ck_assert_uint_eq(n, g_pg ? 1 : 3);
    ck_assert_mem_eq(p, nul_text, n);
    ck_assert_str_eq(qb_result_text_by(r, 0, "f", &n), "");
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(qb_result_type_by(r, 0, "f"), QB_V_TEXT);
    ck_assert_int_eq(qb_result_type(r, 0, 6), QB_V_BLOB);
    p = qb_result_blob_by(r, 0, "g", &n);
    ck_assert_uint_eq(n, sizeof blob);
    ck_assert_mem_eq(p, blob, sizeof blob);
    /* Empty blob stays a blob (not NULL), with a usable pointer. */
    ck_assert_str_eq(qb_result_text_by(r, 0, "th", NULL),
                     g_pg ? "bytea" : "blob");
    ck_assert_ptr_nonnull(qb_result_blob(r, 0, 7, &n));
    ck_assert_uint_eq(n, 0);
    /* qb_bool: a BOOL cell on PostgreSQL, SQLite stores the integer 1 */
    ck_assert_int_eq(qb_result_type_by(r, 0, "i"), g_pg ? QB_V_BOOL
                                                        : QB_V_INT);
    ck_assert_int_eq(qb_result_int_by(r, 0, "i"), 1);
    ck_assert_int_eq(qb_result_is_null_by(r, 0, "i"), 0);
    /* Conversions between storage classes. */
    ck_assert(qb_result_real(r, 0, 2) == (double)INT64_MAX);
    ck_assert_int_eq(qb_result_int(r, 0, 3), -2);
    ck_assert_ptr_null(qb_result_text(r, 0, 1, &n));
    ck_assert_uint_eq(n, 0);
    qb_result_free(r);
    qb_query_free(sel);
    qb_query_free(ins);
    fx_close(&f);
}
END_TEST

START_TEST(test_result_names_and_bounds)
{
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    size_t n = 99;
    fx_open(&f, 0);
    seed(f.db);
    q = mkq("SELECT id, name AS label, score FROM t ORDER BY id", 0, NULL,
            QB_FETCH_ALL);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 3);
    ck_assert_uint_eq(qb_result_cols(r), 3);
    ck_assert_str_eq(qb_result_colname(r, 1), "label");
    ck_assert_ptr_null(qb_result_colname(r, 3));
    ck_assert_int_eq(qb_result_colindex(r, "score"), 2);
    ck_assert_int_eq(qb_result_colindex(r, "nope"), QB_EINVAL);
    ck_assert_str_eq(qb_result_text_by(r, 2, "label", NULL), "c");
    ck_assert_int_eq(qb_result_int_by(r, 1, "score"), 20);
    /* Out of range and unknown names read as NULL cells. */
    ck_assert_int_eq(qb_result_type(r, 3, 0), QB_V_NULL);
    ck_assert_int_eq(qb_result_is_null(r, 0, 9), 1);
    ck_assert_int_eq(qb_result_int_by(r, 0, "nope"), 0);
    ck_assert(qb_result_real_by(r, 0, "nope") == 0.0);
    ck_assert_ptr_null(qb_result_text_by(r, 0, "nope", &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(qb_result_blob(r, 7, 7, NULL));
    /* NULL result handle. */
    ck_assert_uint_eq(qb_result_rows(NULL), 0);
    ck_assert_uint_eq(qb_result_cols(NULL), 0);
    ck_assert_int_eq(qb_result_colindex(NULL, "id"), QB_EINVAL);
    ck_assert_int_eq(qb_result_int(NULL, 0, 0), 0);
    qb_result_free(r);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

START_TEST(test_result_large_rows)
{
    /* Enough rows and bytes to make the row and byte arenas grow. */
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    size_t n = 0;
    fx_open(&f, 0);
    q = mkq(g_pg ? "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                   "FROM c WHERE i < 3000) SELECT i, lpad(i::text, 100, '0') "
                   "AS s FROM c"
                 : "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                   "FROM c WHERE i < 3000) SELECT i, printf('%0100d', i) AS s "
                   "FROM c", 0, NULL, QB_FETCH_ALL);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 3000);
    for (size_t i = 0; i < 3000; i += 499) {
        const char *s = qb_result_text(r, i, 1, &n);
        ck_assert_int_eq(qb_result_int(r, i, 0), (int64_t)i + 1);
        ck_assert_uint_eq(n, 100);
        ck_assert_int_eq(strtoll(s, NULL, 10), (long long)i + 1);
    }
    qb_result_free(r);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

static const struct fetch_case {
    qb_fetch fetch;
    size_t rows;
} fetches[] = {
    { QB_FETCH_NONE, 0 }, { QB_FETCH_ONE, 1 }, { QB_FETCH_ALL, 3 },
};

START_TEST(test_fetch_types)
{
    const struct fetch_case *c = &fetches[_i / NVAR];
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    fx_open(&f, _i % NVAR);
    seed(f.db);
    q = mkq("SELECT name FROM t ORDER BY id DESC", 0, NULL, c->fetch);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), c->rows);
    ck_assert_uint_eq(qb_result_cols(r), 1);
    if (c->rows > 0)
        ck_assert_str_eq(qb_result_text(r, 0, 0, NULL), "c");
    qb_result_free(r);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST


/* ---- migrations ------------------------------------------------------------------ */

static const qb_migration migs_sqlite[] = {
    { "0002_users", "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
                    "\n-- a comment between statements\n"
                    "CREATE INDEX users_name ON users (name);" },
    { "0001_logs", "CREATE TABLE logs (id INTEGER PRIMARY KEY, msg TEXT)" },
    { "0003_seed", "INSERT INTO users (name) VALUES ('root'); "
                   "PRAGMA user_version;   " },
};
static const qb_migration migs_pg[] = {
    { "0002_users", "CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT);"
                    "\n-- a comment between statements\n"
                    "CREATE INDEX users_name ON users (name);" },
    { "0001_logs", "CREATE TABLE logs (id SERIAL PRIMARY KEY, msg TEXT)" },
    { "0003_seed", "INSERT INTO users (name) VALUES ('root'); "
                   "SELECT 1;   " },
};
#define migs_ok (g_pg ? migs_pg : migs_sqlite)

START_TEST(test_migrations_apply_order)
{
    fx f;
    size_t applied = 99, failed = 99, idx[3], n = 99;
    qb_result *r = NULL;
    rec lg;
    fx_open(&f, _i);
    ck_assert_int_eq(qb_migrations_unapplied(f.db, NULL, migs_ok, 3, idx, &n),
                     QB_OK);
    ck_assert_uint_eq(n, 3);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, migs_ok, 2, &applied,
                                         &failed), QB_OK);
    ck_assert_uint_eq(applied, 2);
    ck_assert_uint_eq(failed, 2);
    /* setup + listing + one per migration */
    ck_assert_int_eq(lg.calls, 4);
    ck_assert_ptr_nonnull(strstr(lg.sql[0], g_pg ? "SERIAL PRIMARY KEY"
                                                 : "INTEGER PRIMARY KEY"));
    ck_assert_str_eq(lg.sql[1], "SELECT * FROM migrations ORDER BY id");
    ck_assert_str_eq(lg.sql[2], migs_ok[0].sql);
    qb_set_logger(f.db, NULL, NULL);
    /* idempotent */
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, migs_ok, 2, &applied,
                                         NULL), QB_OK);
    ck_assert_uint_eq(applied, 0);
    ck_assert_int_eq(qb_migrations_unapplied(f.db, NULL, migs_ok, 3, idx, &n),
                     QB_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(idx[0], 2);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, migs_ok, 3, &applied,
                                         &failed), QB_OK);
    ck_assert_uint_eq(applied, 1);
    ck_assert_uint_eq(failed, 3);
    ck_assert_int_eq(qb_migrations_applied(f.db, NULL, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 3);
    /* List order, not name order; ids ascending. */
    for (size_t i = 0; i < 3; i++) {
        ck_assert_str_eq(qb_result_text_by(r, i, "name", NULL),
                         migs_ok[i].name);
        ck_assert_int_eq(qb_result_int_by(r, i, "id"), (int64_t)i + 1);
        ck_assert_int_eq(qb_result_is_null_by(r, i, "applied_at"), 0);
        ck_assert_int_eq(qb_result_type_by(r, i, "applied_at"), QB_V_TEXT);
    }
    qb_result_free(r);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM users"), 1);
    ck_assert_int_eq(relations(f.db, "'users_name'"), 1);
    /* Idempotent. */
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, migs_ok, 3, &applied,
                                         NULL), QB_OK);
    ck_assert_uint_eq(applied, 0);
    ck_assert_int_eq(qb_migrations_unapplied(f.db, NULL, migs_ok, 3, idx, &n),
                     QB_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM users"), 1);
    fx_close(&f);
}
END_TEST

START_TEST(test_migrations_failure_stops)
{
    fx f;
    qb_migration list[5];
    size_t applied = 99, failed = 99, idx[5], n = 0;
    qb_result *r = NULL;
    rec lg;
    fx_open(&f, _i);
    memcpy(list, migs_ok, sizeof migs_sqlite);
    list[3].name = "0004_broken";
    list[3].sql = "CREATE TABLE half (x integer); INSERT INTO half VALUES (1); "
                  "INSERT INTO nowhere VALUES (1);";
    list[4].name = "0005_after";
    list[4].sql = "CREATE TABLE after_t (x integer)";
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, list, 2, &applied, NULL),
                     QB_OK);
    ck_assert_uint_eq(applied, 2);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, list, 5, &applied,
                                         &failed), QB_ESQL);
    ck_assert_uint_eq(applied, 1);            /* 0003 committed first */
    ck_assert_uint_eq(failed, 3);
    ASSERT_CODE(f.db, SQLITE_ERROR, "42P01");
    ck_assert_msg(strncmp(qb_errmsg(f.db), "migration '0004_broken': ",
                          25) == 0, "%s", qb_errmsg(f.db));
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "nowhere"));
    ck_assert_int_eq(lg.last_rc, QB_ESQL);
    ck_assert_str_eq(lg.last_sql, list[3].sql);
    ck_assert(lg.msg_ok);
    /* table setup + listing + 0003 + 0004 */
    ck_assert_int_eq(lg.calls, 4);
    /* Only the failing one rolled back; nothing after it ran. */
    ck_assert_int_eq(relations(f.db, "'half', 'after_t'"), 0);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM users"), 1);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    ck_assert_int_eq(qb_migrations_unapplied(f.db, NULL, list, 5, idx, &n),
                     QB_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(idx[0], 3);
    ck_assert_uint_eq(idx[1], 4);
    ck_assert_int_eq(qb_migrations_applied(f.db, NULL, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 3);
    qb_result_free(r);
    fx_close(&f);
}
END_TEST

START_TEST(test_migrations_table_and_misuse)
{
    fx f;
    size_t applied = 0, n = 0, idx[1];
    qb_result *r = NULL;
    qb_migration nameless = { NULL, "SELECT 1" };
    fx_open(&f, 0);
    ck_assert_int_eq(qb_migrations_apply(f.db, "schema_versions", migs_ok, 1,
                                         &applied, NULL), QB_OK);
    ck_assert_uint_eq(applied, 1);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM schema_versions"), 1);
    ck_assert_int_eq(relations(f.db, "'migrations'"), 0);
    ck_assert_int_eq(qb_migrations_apply(f.db, "x; DROP TABLE users", migs_ok,
                                         1, &applied, NULL), QB_EINVAL);
    ck_assert_int_eq(qb_migrations_apply(f.db, "x y", migs_ok, 1, &applied,
                                         NULL), QB_EINVAL);
    ck_assert_int_eq(qb_migrations_applied(f.db, "bad name", &r), QB_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(qb_migrations_unapplied(f.db, NULL, &nameless, 1, idx,
                                             &n), QB_EINVAL);
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, migs_ok, 1, &applied,
                                         NULL), QB_EMISUSE);
    ck_assert_int_eq(qb_in_transaction(f.db), 1);
    ck_assert_int_eq(qb_rollback(f.db), QB_OK);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, NULL, 0, &applied, NULL),
                     QB_OK);
    ck_assert_uint_eq(applied, 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_migrations_script_ends_txn)
{
    fx f;
    qb_migration m[2] = {
        { "sneaky", "CREATE TABLE s1 (x integer); COMMIT; "
                    "CREATE TABLE s2 (x integer)" },
        { "next", "CREATE TABLE s3 (x integer)" },
    };
    size_t applied = 9, failed = 9;
    fx_open(&f, 0);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, m, 2, &applied, &failed),
                     QB_EINVAL);
    ck_assert_uint_eq(applied, 0);
    ck_assert_uint_eq(failed, 0);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "must not end"));
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM migrations"), 0);
    /* whatever the script committed stays (qb_conn.h); the next
     * migration never ran */
    ck_assert_int_eq(relations(f.db, "'s1', 's2'"), 2);
    ck_assert_int_eq(relations(f.db, "'s3'"), 0);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    /* ... nor end it as its last statement. */
    m[0].sql = "CREATE TABLE d (x integer); COMMIT;";
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, m, 1, &applied, &failed),
                     QB_EINVAL);
    ck_assert_uint_eq(failed, 0);
    ck_assert_int_eq(relations(f.db, "'d'"), 1);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM migrations"), 0);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_migrations_name_is_bound)
{
    /* A hostile name is stored verbatim, never executed. */
    fx f;
    qb_migration m = { "x'); DROP TABLE migrations; --", "SELECT 1" };
    qb_result *r = NULL;
    fx_open(&f, 0);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, &m, 1, NULL, NULL),
                     QB_OK);
    ck_assert_int_eq(qb_migrations_applied(f.db, NULL, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 1);
    ck_assert_str_eq(qb_result_text_by(r, 0, "name", NULL), m.name);
    qb_result_free(r);
    fx_close(&f);
}
END_TEST


/* ---- logger and hooks (table-driven over execution paths) ------------------------ */

enum { OP_EXEC_OK, OP_EXEC_ERR, OP_EXEC_PARAMS, OP_CHAIN_ERR, OP_CURSOR,
       OP_COUNT, OP_BATCH, OP_BATCH_ERR, OP_PAGINATE, OP_EXPLAIN,
       OP_MIGRATE, OP_NOPS };

static const struct log_case {
    int op;
    int rc;        /* expected status of the call */
    int calls;     /* logger calls */
    int last_rc;   /* rc of the last logger call */
    int sqlite_only; /* PostgreSQL: QB_EDIALECT, nothing logged */
} log_cases[] = {
    { OP_EXEC_OK, QB_OK, 1, QB_OK, 0 },
    { OP_EXEC_ERR, QB_ESQL, 1, QB_ESQL, 0 },
    { OP_EXEC_PARAMS, QB_EINVAL, 1, QB_EINVAL, 0 },
    { OP_CHAIN_ERR, QB_ECONSTRAINT, 1, QB_ECONSTRAINT, 0 },
    { OP_CURSOR, QB_OK, 1, QB_OK, 1 },
    { OP_COUNT, QB_OK, 1, QB_OK, 0 },
    { OP_BATCH, QB_OK, 2, QB_OK, 0 },
    { OP_BATCH_ERR, QB_ECONSTRAINT, 2, QB_ECONSTRAINT, 0 },
    { OP_PAGINATE, QB_OK, 2, QB_OK, 1 },
    { OP_EXPLAIN, QB_OK, 1, QB_OK, 1 },
    { OP_MIGRATE, QB_OK, 3, QB_OK, 0 }, /* setup, listing, one migration */
};

static int do_op(qb_conn *db, int op)
{
    qb_query *q = NULL, *q2 = NULL;
    qb_result *r = NULL;
    qb_cursor *c = NULL;
    qb_pagination pg;
    int64_t total;
    size_t fa;
    int rc;
    const qb_query *qs[2];
    qb_migration m = { "m1", "CREATE TABLE m1 (x integer)" };

    switch (op) {
    case OP_EXEC_OK:
        q = mkq("SELECT * FROM t", 0, NULL, QB_FETCH_ALL);
        rc = qb_exec(db, q, &r);
        break;
    case OP_EXEC_ERR:
        q = mkq("SELECT * FROM nope", 0, NULL, QB_FETCH_ALL);
        rc = qb_exec(db, q, &r);
        break;
    case OP_EXEC_PARAMS:
        q = mkq("SELECT ?1", 0, NULL, QB_FETCH_ALL);
        rc = qb_exec(db, q, NULL);
        break;
    case OP_CHAIN_ERR:
        q = chain3("k1", "k2", "a", QB_FETCH_NONE);
        rc = qb_exec(db, q, NULL);
        break;
    case OP_CURSOR:
        q = mkq("SELECT * FROM t", 0, NULL, QB_FETCH_ALL);
        rc = qb_cursor_open(db, q, &c);
        while (rc == QB_OK)
            rc = qb_cursor_next(c);
        rc = rc == QB_EDONE ? QB_OK : rc;
        qb_cursor_close(c);
        break;
    case OP_COUNT:
        q = mkq("SELECT * FROM t LIMIT 2", 0, NULL, QB_FETCH_ALL);
        q->count_sql = strdup("SELECT count(*) AS total FROM t");
        rc = qb_count(db, q, &total);
        break;
    case OP_BATCH:
    case OP_BATCH_ERR:
        q = mkq("INSERT INTO t (name) VALUES ('new')", 0, NULL, QB_FETCH_NONE);
        q2 = mkq(op == OP_BATCH ? "SELECT 1" : "INSERT INTO t (name) VALUES "
                 "('new')", 0, NULL, QB_FETCH_ALL);
        qs[0] = q;
        qs[1] = q2;
        rc = qb_batch(db, qs, 2, NULL, &fa);
        break;
    case OP_PAGINATE:
        q = mkq("SELECT * FROM t LIMIT 2 OFFSET 0", 0, NULL, QB_FETCH_ALL);
        q->count_sql = strdup("SELECT count(*) AS total FROM t");
        rc = qb_paginate(db, q, 1, 2, &r, &pg);
        break;
    case OP_EXPLAIN:
        q = mkq(g_pg ? "EXPLAIN SELECT * FROM t"
                     : "EXPLAIN QUERY PLAN SELECT * FROM t", 0, NULL,
                QB_FETCH_ALL);
        rc = qb_explain(db, q, &r);
        break;
    default:
        rc = qb_migrations_apply(db, NULL, &m, 1, NULL, NULL);
        break;
    }
    qb_result_free(r);
    qb_query_free(q);
    qb_query_free(q2);
    return rc;
}

START_TEST(test_logger_every_path)
{
    const struct log_case *c = &log_cases[_i];
    fx f;
    rec lg;
    fx_open(&f, 0);
    seed(f.db);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    if (g_pg && c->sqlite_only) {
        /* SQLite only for now (qb_conn.h): refused, nothing logged */
        ck_assert_int_eq(do_op(f.db, c->op), QB_EDIALECT);
        ck_assert_int_eq(lg.calls, 0);
        fx_close(&f);
        return;
    }
    ck_assert_int_eq(do_op(f.db, c->op), c->rc);
    ck_assert_int_eq(lg.calls, c->calls);
    ck_assert_int_eq(lg.last_rc, c->last_rc);
    ck_assert_int_eq(lg.neg_dur, 0);
    ck_assert(lg.msg_ok);
    /* Unset: silent. */
    qb_set_logger(f.db, NULL, NULL);
    do_op(f.db, c->op);
    ck_assert_int_eq(lg.calls, c->calls);
    fx_close(&f);
}
END_TEST

START_TEST(test_logger_sees_query)
{
    fx f;
    rec lg;
    qb_query *q;
    fx_open(&f, 0);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    q = mkq("SELECT 1", 0, NULL, QB_FETCH_ONE);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_OK);
    ck_assert_ptr_eq(lg.last_q, q);
    ck_assert_int_ge(lg.last_dur, 0);
    qb_query_free(q);
    /* A slow statement has a visibly positive duration. */
    q = mkq("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
            "WHERE i < 200000) SELECT count(*) FROM c", 0, NULL, QB_FETCH_ONE);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_OK);
    ck_assert_int_gt(lg.last_dur, 0);
    qb_query_free(q);
    /* qb_count logs the count statement it ran. */
    q = mkq("SELECT 1 LIMIT 1", 0, NULL, QB_FETCH_ALL);
    q->count_sql = strdup("SELECT 5 AS total");
    {
        int64_t total = 0;
        ck_assert_int_eq(qb_count(f.db, q, &total), QB_OK);
        ck_assert_int_eq(total, 5);
    }
    ck_assert_str_eq(lg.last_sql, "SELECT 5 AS total");
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

START_TEST(test_hooks_veto_and_after)
{
    fx f;
    rec h;
    qb_query *q;
    qb_result *r = NULL;
    qb_cursor *c = NULL;
    fx_open(&f, _i);
    seed(f.db);
    rec_init(&h);
    qb_set_hooks(f.db, rec_before, rec_after, &h);
    qb_set_logger(f.db, rec_logger, &h);

    q = mkq("SELECT id FROM t", 0, NULL, QB_FETCH_ALL);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_int_eq(h.befores, 1);
    ck_assert_int_eq(h.afters, 1);
    ck_assert_int_eq(h.after_rc, QB_OK);
    ck_assert_ptr_eq(h.after_res, r);
    ck_assert_uint_eq(qb_result_rows(h.after_res), 3);
    ck_assert_str_eq(h.sql[0], qb_query_sql(q));
    qb_result_free(r);
    qb_query_free(q);

    h.veto = 1;
    q = mkq("DELETE FROM t", 0, NULL, QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "vetoed"));
    ck_assert_int_eq(h.befores, 2);
    ck_assert_int_eq(h.afters, 2);
    ck_assert_int_eq(h.after_rc, QB_EINVAL);
    ck_assert_ptr_null(h.after_res);
    ck_assert_int_eq(h.calls, 2);                 /* the veto is logged */
    ck_assert_int_eq(h.last_rc, QB_EINVAL);
    /* a cursor: vetoed on SQLite; PostgreSQL has none (QB_EDIALECT,
     * before any hook) */
    ck_assert_int_eq(qb_cursor_open(f.db, q, &c), g_pg ? QB_EDIALECT
                                                       : QB_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(h.afters, g_pg ? 2 : 3);
    h.veto = 0;
    qb_query_free(q);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 3);
    ck_assert_int_eq(h.afters, g_pg ? 3 : 4);
    ck_assert_int_eq(h.after_rc, QB_OK);

    /* Argument errors found after the hooks start are logged too. */
    q = mkq("SELECT ?1", 1, QB_VALS(qb_int(1)), QB_FETCH_ALL);
    q->nparams = 0;
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_EINVAL);
    q->nparams = 1;
    qb_query_free(q);
    ck_assert_int_eq(h.calls, g_pg ? 4 : 5);
    ck_assert_int_eq(h.last_rc, QB_EINVAL);
    /* Transactions are not queries. */
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    ck_assert_int_eq(qb_rollback(f.db), QB_OK);
    ck_assert_int_eq(h.calls, g_pg ? 4 : 5);
    ck_assert(h.msg_ok);

    qb_set_hooks(f.db, NULL, NULL, NULL);
    qb_set_logger(f.db, NULL, NULL);
    ck_assert_int_eq(scalar(f.db, "SELECT 1"), 1);
    ck_assert_int_eq(h.befores, g_pg ? 4 : 5);   /* nothing after unhooking */
    ck_assert_int_eq(h.afters, g_pg ? 4 : 5);
    ck_assert_int_eq(h.calls, g_pg ? 4 : 5);
    fx_close(&f);
}
END_TEST


/* ---- builder statements (users/orders) -------------------------------------- */

static const char users_seed_pg[] =
    "CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, "
    "  email text, dept text, age integer, score double precision, "
    "  active boolean NOT NULL DEFAULT true);"
    "INSERT INTO users VALUES "
    "  (1, 'Ann', 'ann@x.org', 'eng', 31, 9.5, true),"
    "  (2, 'Bob', 'bob@spam.com', 'eng', 45, 7.25, false),"
    "  (3, 'Cid', NULL, 'ops', 28, 8.0, true),"
    "  (4, 'Dee', 'dee@x.org', 'ops', 52, 6.5, true),"
    "  (5, 'Eve', 'eve@x.org', 'sales', 39, NULL, false);"
    "CREATE TABLE orders (id serial PRIMARY KEY, "
    "  user_id integer REFERENCES users(id), amount numeric(10,2), "
    "  item text);"
    "INSERT INTO orders (user_id, amount, item) VALUES (1, 10.50, 'pen'),"
    "  (1, 5.25, 'ink'), (2, 99.99, 'desk'), (4, 1.00, 'clip'),"
    "  (4, 2.00, 'tape'), (4, 3.00, 'glue');";
/* The same on SQLite: a rowid id, booleans stored as 1/0. */
static const char users_seed_sqlite[] =
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "  email TEXT, dept TEXT, age INTEGER, score REAL, "
    "  active INTEGER NOT NULL DEFAULT 1);"
    "INSERT INTO users VALUES "
    "  (1, 'Ann', 'ann@x.org', 'eng', 31, 9.5, 1),"
    "  (2, 'Bob', 'bob@spam.com', 'eng', 45, 7.25, 0),"
    "  (3, 'Cid', NULL, 'ops', 28, 8.0, 1),"
    "  (4, 'Dee', 'dee@x.org', 'ops', 52, 6.5, 1),"
    "  (5, 'Eve', 'eve@x.org', 'sales', 39, NULL, 0);"
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
    "  user_id INTEGER REFERENCES users(id), amount NUMERIC(10,2), "
    "  item TEXT);"
    "INSERT INTO orders (user_id, amount, item) VALUES (1, 10.50, 'pen'),"
    "  (1, 5.25, 'ink'), (2, 99.99, 'desk'), (4, 1.00, 'clip'),"
    "  (4, 2.00, 'tape'), (4, 3.00, 'glue');";
#define users_seed (g_pg ? users_seed_pg : users_seed_sqlite)


START_TEST(test_insert_one_returning)
{
    qb_conn *db = fresh(g_pg ? "CREATE TABLE t (id serial PRIMARY KEY, "
                               "name text NOT NULL, n integer, "
                               "at timestamp DEFAULT now())"
                             : "CREATE TABLE t (id INTEGER PRIMARY KEY, "
                               "name TEXT NOT NULL, n INTEGER, "
                               "at TEXT DEFAULT CURRENT_TIMESTAMP)");
    qb_insert *ins = ins_new("t");
    qb_query *q = NULL;
    qb_result *r;

    qb_insert_set(ins, "name", qb_text("first"));
    qb_insert_set(ins, "n", qb_int(7));
    qb_insert_returning(ins, "id, name, n");
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    /* rendered with the engine's placeholders */
    ck_assert_ptr_null(strstr(qb_query_sql(q), g_pg ? "?" : "$"));
    r = run_ok(db, q);
    ck_assert_uint_eq(qb_result_rows(r), 1);
    ck_assert_int_eq(qb_result_changes(r), 1);
    ck_assert_int_eq(qb_result_type_by(r, 0, "id"), QB_V_INT);
    ck_assert_int_eq(qb_result_int_by(r, 0, "id"), 1);
    ck_assert_str_eq(qb_result_text_by(r, 0, "name", NULL), "first");
    ck_assert_int_eq(qb_result_int_by(r, 0, "n"), 7);
    qb_result_free(r);
    /* Without out: runs, allocates nothing. */
    ck_assert_int_eq(qb_exec(db, q, NULL), QB_OK);
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM t"), 2);
    qb_query_free(q);
    qb_insert_free(ins);
    qb_close(db);
}
END_TEST

/* A bulk insert split into a chain by the parameter limit runs in one
 * transaction and returns every link's rows. */
START_TEST(test_insert_bulk_chain)
{
    qb_conn *db = fresh("CREATE TABLE t (id integer PRIMARY KEY, "
                         "label text)");
    qb_insert *ins = ins_new("t");
    qb_query *q = NULL;
    qb_result *r;
    size_t links = 0;

    for (int i = 1; i <= 7; i++) {
        char lab[16];
        if (i > 1)
            qb_insert_next_row(ins);
        snprintf(lab, sizeof lab, "row%d", i);
        qb_insert_set(ins, "id", qb_int(i));
        qb_insert_set(ins, "label", qb_text(lab));
    }
    qb_insert_returning(ins, "id");
    qb_insert_max_params(ins, 4);  /* 2 rows per statement */
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    for (const qb_query *l = q; l != NULL; l = qb_query_next(l))
        links++;
    ck_assert_uint_eq(links, 4);
    r = run_ok(db, q);
    ck_assert_str_eq(ids(r), "1,2,3,4,5,6,7");
    ck_assert_int_eq(qb_result_changes(r), 7);
    ck_assert_int_eq(qb_in_transaction(db), 0);
    qb_result_free(r);
    ck_assert_str_eq(query_ids(db, "SELECT label FROM t WHERE id = 7"),
                     "row7");
    qb_query_free(q);
    qb_insert_free(ins);
    qb_close(db);
}
END_TEST

/* The last link fails: nothing of the chain stays. */
START_TEST(test_insert_chain_atomic)
{
    qb_conn *db = fresh("CREATE TABLE t (id integer PRIMARY KEY);"
                         "INSERT INTO t VALUES (5)");
    qb_insert *ins = ins_new("t");
    qb_query *q = NULL;
    qb_result *r = (qb_result *)1;

    for (int i = 1; i <= 5; i++) {
        if (i > 1)
            qb_insert_next_row(ins);
        qb_insert_set(ins, "id", qb_int(i));
    }
    qb_insert_max_params(ins, 2);
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    ck_assert_int_eq(qb_exec(db, q, &r), QB_ECONSTRAINT);
    ck_assert_ptr_null(r);
    ASSERT_CODE(db, SQLITE_CONSTRAINT_PRIMARYKEY, "23505");
    ck_assert_int_eq(qb_in_transaction(db), 0);
    ck_assert_str_eq(query_ids(db, "SELECT id FROM t ORDER BY id"), "5");
    /* Inside a caller's transaction the chain uses a savepoint: the
     * caller's earlier work survives the chain's failure. */
    ck_assert_int_eq(qb_begin(db), QB_OK);
    script(db, "INSERT INTO t VALUES (100)");
    ck_assert_int_eq(qb_exec(db, q, NULL), QB_ECONSTRAINT);
    ck_assert_int_eq(qb_in_transaction(db), 1);
    ck_assert_int_eq(qb_commit(db), QB_OK);
    ck_assert_str_eq(query_ids(db, "SELECT id FROM t ORDER BY id"), "5,100");
    qb_query_free(q);
    qb_insert_free(ins);
    qb_close(db);
}
END_TEST

START_TEST(test_upsert)
{
    qb_conn *db = fresh("CREATE TABLE kv (k text PRIMARY KEY, v integer, "
                         "hits integer DEFAULT 1);"
                         "INSERT INTO kv VALUES ('a', 1, 1)");
    const char *const key[] = { "k" };
    qb_insert *ins = ins_new("kv");
    qb_query *q = NULL;
    qb_result *r;

    qb_insert_set(ins, "k", qb_text("a"));
    qb_insert_set(ins, "v", qb_int(42));
    qb_insert_on_conflict(ins, 1, key);
    qb_insert_on_conflict_set(ins, "v", qb_raw("excluded.v"));
    qb_insert_on_conflict_set(ins, "hits", qb_raw("kv.hits + 1"));
    qb_insert_returning(ins, "k, v, hits");
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    r = run_ok(db, q);
    ck_assert_int_eq(qb_result_int_by(r, 0, "v"), 42);
    ck_assert_int_eq(qb_result_int_by(r, 0, "hits"), 2);
    qb_result_free(r);
    qb_query_free(q);
    qb_insert_free(ins);

    /* DO NOTHING: no change, no row returned. */
    ins = ins_new("kv");
    qb_insert_set(ins, "k", qb_text("a"));
    qb_insert_set(ins, "v", qb_int(-1));
    qb_insert_on_conflict(ins, 1, key);
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    ck_assert_ptr_nonnull(strstr(qb_query_sql(q), "DO NOTHING"));
    r = run_ok(db, q);
    ck_assert_int_eq(qb_result_changes(r), 0);
    qb_result_free(r);
    ck_assert_int_eq(scalar(db, "SELECT v FROM kv WHERE k = 'a'"), 42);
    qb_query_free(q);
    qb_insert_free(ins);
    qb_close(db);
}
END_TEST

START_TEST(test_update_where_returning)
{
    qb_conn *db = fresh(users_seed);
    qb_update *u = qb_update_new("users");
    qb_query *q = NULL;
    qb_result *r;

    qb_update_dialect(u, DIALECT);
    qb_update_set(u, "age", qb_raw("age + 1"));
    qb_update_set(u, "name", qb_text("Team ops"));
    QB_UPDATE_WHERE(u, "dept = ?", qb_text("ops"));
    QB_UPDATE_WHERE(u, "active = ?", qb_bool(1));
    qb_update_returning(u, "id, age");
    ck_assert_int_eq(qb_update_build(u, &q), QB_OK);
    r = run_ok(db, q);
    ck_assert_int_eq(qb_result_changes(r), 2);
    ck_assert_uint_eq(qb_result_rows(r), 2);
    ck_assert_int_eq(scalar(db, "SELECT age FROM users WHERE id = 4"), 53);
    ck_assert_str_eq(query_ids(db, "SELECT name FROM users WHERE id = 3"),
                     "Team ops");
    qb_result_free(r);
    qb_query_free(q);
    qb_update_free(u);
    qb_close(db);
}
END_TEST

START_TEST(test_delete_where_returning)
{
    qb_conn *db = fresh(users_seed);
    qb_delete *d = qb_delete_new("orders");
    qb_query *q = NULL;
    qb_result *r;

    qb_delete_dialect(d, DIALECT);
    QB_DELETE_WHERE(d, "user_id = ? AND amount < ?", qb_int(4),
                    qb_real(2.5));
    qb_delete_returning(d, "item");
    ck_assert_int_eq(qb_delete_build(d, &q), QB_OK);
    r = run_ok(db, q);
    ck_assert_int_eq(qb_result_changes(r), 2);
    ck_assert_uint_eq(qb_result_rows(r), 2);
    qb_result_free(r);
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM orders"), 4);
    qb_query_free(q);
    qb_delete_free(d);
    qb_close(db);
}
END_TEST

/* ---- selects (table-driven) -------------------------------------------- */

typedef struct sel_case {
    const char *what;
    void (*build)(qb_select *s);
    const char *table;
    qb_fetch fetch;
    const char *want;      /* first column of every row */
} sel_case;

static void s_where(qb_select *s)
{
    QB_WHERE(s, "age > ?", qb_int(40));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_or_where(qb_select *s)
{
    QB_WHERE(s, "dept = ?", qb_text("eng"));
    QB_OR_WHERE(s, "age > ?", qb_int(50));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_in_int(qb_select *s)
{
    QB_WHERE_IN(s, "id", qb_int(2), qb_int(4), qb_int(5));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_in_text_not(qb_select *s)
{
    qb_select_where_in(s, QB_NOT, "dept", 2,
                       QB_VALS(qb_text("eng"), qb_text("sales")));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_in_cols(qb_select *s)
{
    const char *const cols[] = { "dept", "active" };
    qb_select_where_in_cols(s, QB_AND, 2, cols, 2,
                            QB_VALS(qb_text("eng"), qb_bool(1),
                                    qb_text("ops"), qb_bool(1)));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_between(qb_select *s)
{
    qb_select_where_between(s, QB_AND, "age", qb_int(30), qb_int(45));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_like(qb_select *s)
{
    qb_select_where_like(s, QB_AND, "email", qb_text("%@x.org"));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_null(qb_select *s)
{
    qb_select_where_null(s, QB_AND, "email");
}

static void s_real(qb_select *s)
{
    QB_WHERE(s, "score >= ?", qb_real(8.0));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_join(qb_select *s)
{
    qb_select_fields(s, "DISTINCT users.id");
    qb_select_inner_join(s, "orders", "o", "o.user_id = users.id");
    QB_WHERE(s, "o.amount > ?", qb_real(5.0));
    qb_select_order_by(s, "users.id", QB_ORDER_NONE);
}

static void s_left_join(qb_select *s)
{
    qb_select_fields(s, "users.id");
    qb_select_left_join(s, "orders", NULL, "orders.user_id = users.id");
    qb_select_where_null(s, QB_AND, "orders.id");
    qb_select_order_by(s, "users.id", QB_ORDER_NONE);
}

static void s_group_having(qb_select *s)
{
    qb_select_fields(s, "user_id, count(*) AS n");
    qb_select_group_by(s, "user_id");
    QB_HAVING(s, "count(*) >= ?", qb_int(2));
    qb_select_order_by(s, "user_id", QB_ORDER_NONE);
}

static void s_order_limit_offset(qb_select *s)
{
    qb_select_fields(s, "id");
    qb_select_order_by(s, "age", QB_ORDER_DESC);
    qb_select_limit(s, 2);
    qb_select_offset(s, 1);
}

static void s_offset_only(qb_select *s)
{
    qb_select_order_by(s, "id", QB_ORDER_NONE);
    qb_select_offset(s, 3);
}

static void s_one(qb_select *s)
{
    QB_WHERE(s, "active = ?", qb_bool(0));
    qb_select_order_by(s, "id", QB_ORDER_DESC);
}

static void s_distinct_on(qb_select *s)
{
    qb_select_distinct_on(s, "dept");
    qb_select_fields(s, "id, dept");
    qb_select_order_by(s, "dept", QB_ORDER_NONE);
    qb_select_order_by(s, "id", QB_ORDER_NONE);
}

static void s_subquery(qb_select *s)
{
    qb_select *sub = sel_new("orders");
    qb_select_fields(sub, "user_id");
    QB_WHERE(sub, "item = ?", qb_text("desk"));
    QB_WHERE(s, "age > ? AND (id IN ?1 OR id = ?)", qb_int(0),
             qb_subquery(sub), qb_int(3));
    qb_select_order_by(s, "id", QB_ORDER_NONE);
    qb_select_free(sub);
}

static void s_paginate(qb_select *s)
{
    qb_select_order_by(s, "id", QB_ORDER_NONE);
    qb_select_paginate(s, 2, 2);
}

static const sel_case sel_cases[] = {
    { "where", s_where, "users", QB_FETCH_ALL, "2,4" },
    { "orWhere", s_or_where, "users", QB_FETCH_ALL, "1,2,4" },
    { "whereIn int", s_in_int, "users", QB_FETCH_ALL, "2,4,5" },
    { "whereNotIn text", s_in_text_not, "users", QB_FETCH_ALL, "3,4" },
    { "whereIn columns", s_in_cols, "users", QB_FETCH_ALL, "1,3,4" },
    { "between", s_between, "users", QB_FETCH_ALL, "1,2,5" },
    { "like", s_like, "users", QB_FETCH_ALL, "1,4,5" },
    { "is null", s_null, "users", QB_FETCH_ALL, "3" },
    { "real param", s_real, "users", QB_FETCH_ALL, "1,3" },
    { "inner join", s_join, "users", QB_FETCH_ALL, "1,2" },
    { "left join", s_left_join, "users", QB_FETCH_ALL, "3,5" },
    { "group/having", s_group_having, "orders", QB_FETCH_ALL, "1,4" },
    { "order/limit/offset", s_order_limit_offset, "users", QB_FETCH_ALL,
      "2,5" },
    { "offset only", s_offset_only, "users", QB_FETCH_ALL, "4,5" },
    { "fetch one", s_one, "users", QB_FETCH_ONE, "5" },
    { "subquery", s_subquery, "users", QB_FETCH_ALL, "2,3" },
    { "paginate", s_paginate, "users", QB_FETCH_ALL, "3,4" },
    /* PostgreSQL only: the last one */
    { "distinct on", s_distinct_on, "users", QB_FETCH_ALL, "1,3,5" },
};
#define NSEL (sizeof sel_cases / sizeof sel_cases[0])
#define NSEL_ENGINE ((int)NSEL - (g_pg ? 0 : 1))

START_TEST(test_select)
{
    const sel_case *c = &sel_cases[_i];
    qb_conn *db = fresh(users_seed);
    qb_select *s = sel_new(c->table);
    qb_query *q = NULL;
    qb_result *r;

    c->build(s);
    ck_assert_msg(qb_select_build(s, c->fetch, &q) == QB_OK, "%s: %s",
                  c->what, qb_select_errmsg(s));
    r = run_ok(db, q);
    ck_assert_msg(strcmp(ids(r), c->want) == 0, "%s: got %s want %s (%s)",
                  c->what, ids(r), c->want, qb_query_sql(q));
    ck_assert_int_eq(qb_result_changes(r), 0);
    qb_result_free(r);
    qb_query_free(q);
    qb_select_free(s);
    qb_close(db);
}
END_TEST

START_TEST(test_raw_placeholders)
{
    qb_conn *db = fresh(users_seed);
    qb_query *q = mkq("SELECT id FROM users WHERE dept = ?2 AND age > ?1 "
                      "AND name <> ?2 ORDER BY id", 2,
                      QB_VALS(qb_int(30), qb_text("eng")), QB_FETCH_ALL);
    qb_result *r;

    ck_assert_ptr_nonnull(strstr(qb_query_sql(q), g_pg ? "$2" : "?2"));
    r = run_ok(db, q);
    ck_assert_str_eq(ids(r), "1,2");
    qb_result_free(r);
    qb_query_free(q);
    qb_close(db);
}
END_TEST

/* Raw SQL with `?` inside PostgreSQL literals and comments, executed:
 * only the real placeholders are numbered, the literals come back
 * byte for byte (whitespace runs included), and the one value binds. */
START_TEST(test_nulls)
{
    qb_conn *db = fresh("CREATE TABLE t (id integer, s text, b bytea)");
    qb_insert *ins = ins_new("t");
    qb_query *q = NULL;
    qb_result *r;

    qb_insert_set(ins, "id", qb_null());
    qb_insert_set(ins, "s", qb_text(NULL));
    qb_insert_set(ins, "b", qb_null());
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    qb_result_free(run_ok(db, q));
    qb_query_free(q);
    q = mkq("SELECT id, s, b, CAST(? AS text) AS p FROM t WHERE s IS NULL", 1,
            QB_VALS(qb_null()), QB_FETCH_ALL);
    r = run_ok(db, q);
    ck_assert_uint_eq(qb_result_rows(r), 1);
    for (size_t c = 0; c < 4; c++)
        ck_assert(qb_result_is_null(r, 0, c));
    qb_result_free(r);
    qb_query_free(q);
    qb_insert_free(ins);
    qb_close(db);
}
END_TEST

static const char *const texts[] = {
    "O'Reilly",
    "\"double\" and 'single' '' quotes",
    "$1 ? ?1 $$ $tag$ -- not a comment /* nor this */ ; DROP TABLE t;",
    "back\\slash \\x00 \\'",
    "h\xc3\xa9llo \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89",
    "line1\nline2\r\n\ttab",
    "",
};
#define NTEXTS (sizeof texts / sizeof texts[0])

/* Text values round-trip byte for byte and compare equal as parameters. */
START_TEST(test_text_roundtrip)
{
    const char *t = texts[_i];
    qb_conn *db = fresh("CREATE TABLE t (id serial, s text)");
    qb_insert *ins = ins_new("t");
    qb_select *s = sel_new("t");
    qb_query *q = NULL;
    qb_result *r;
    size_t len = 0;

    qb_insert_set(ins, "s", qb_text(t));
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    ck_assert_int_eq(qb_exec(db, q, NULL), QB_OK);
    qb_query_free(q);
    qb_select_fields(s, "s, length(s) AS n");
    QB_WHERE(s, "s = ?", qb_text_ref(t));
    ck_assert_int_eq(qb_select_build(s, QB_FETCH_ALL, &q), QB_OK);
    r = run_ok(db, q);
    ck_assert_uint_eq(qb_result_rows(r), 1);
    ck_assert_mem_eq(qb_result_text(r, 0, 0, &len), t, strlen(t) + 1);
    ck_assert_uint_eq(len, strlen(t));
    qb_result_free(r);
    qb_query_free(q);
    qb_select_free(s);
    qb_insert_free(ins);
    qb_close(db);
}
END_TEST

START_TEST(test_bytea_roundtrip)
{
    qb_conn *db = fresh("CREATE TABLE t (id integer, b bytea)");
    unsigned char all[512];
    qb_query *q;
    qb_result *r;
    size_t len = 0;

    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (unsigned char)(i * 7 + (i >> 8));
    q = mkq("INSERT INTO t VALUES (1, ?), (2, ?)", 2,
            QB_VALS(qb_blob(all, sizeof all), qb_blob_ref("", 0)),
            QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(db, q, NULL), QB_OK);
    qb_query_free(q);
    q = mkq("SELECT b, length(b) AS n FROM t WHERE b = ? OR id = 2 "
            "ORDER BY id", 1, QB_VALS(qb_blob_ref(all, sizeof all)),
            QB_FETCH_ALL);
    r = run_ok(db, q);
    ck_assert_uint_eq(qb_result_rows(r), 2);
    ck_assert_int_eq(qb_result_int_by(r, 0, "n"), 512);
    ck_assert_mem_eq(qb_result_blob(r, 0, 0, &len), all, sizeof all);
    ck_assert_uint_eq(len, sizeof all);
    ck_assert_ptr_nonnull(qb_result_blob(r, 1, 0, &len));
    ck_assert_uint_eq(len, 0);
    qb_result_free(r);
    qb_query_free(q);
    qb_close(db);
}
END_TEST


/* ---- the builder end to end (members) ---------------------------------------------------- */

/* members: the builder's own CREATE TABLE; active takes qb_bool (a
 * boolean on PostgreSQL, 1/0 on SQLite), n an integer. */
static void users_table(qb_conn *db)
{
    qb_query *q = NULL;
    ck_assert_int_eq(qb_create_table(&q, DIALECT, "members",
                                     g_pg ? "id serial PRIMARY KEY, name text "
                                            "UNIQUE, active boolean, "
                                            "n integer"
                                          : "id INTEGER PRIMARY KEY, name TEXT "
                                            "UNIQUE, active INTEGER, "
                                            "n INTEGER", 0), QB_OK);
    ck_assert_int_eq(qb_exec(db, q, NULL), QB_OK);
    qb_query_free(q);
}

/* Bulk insert of names u<from>..u<to-1> (plus an optional extra name),
 * split into a chain of 3-row statements. */
static qb_query *bulk_users(int from, int to, const char *extra)
{
    qb_insert *ins = ins_new("members");
    qb_query *q = NULL;
    char name[32];
    ck_assert_ptr_nonnull(ins);
    for (int i = from; i < to; i++) {
        if (i > from)
            qb_insert_next_row(ins);
        snprintf(name, sizeof name, "u%02d", i);
        qb_insert_set(ins, "name", qb_text(name));
        qb_insert_set(ins, "active", qb_bool(i % 2 == 0));
    }
    if (extra != NULL) {
        qb_insert_next_row(ins);
        qb_insert_set(ins, "name", qb_text(extra));
        qb_insert_set(ins, "active", qb_bool(0));
    }
    qb_insert_max_params(ins, 6);
    ck_assert_msg(qb_insert_build(ins, &q) == QB_OK, "%s",
                  qb_insert_errmsg(ins));
    qb_insert_free(ins);
    return q;
}

START_TEST(test_builder_bulk_chain)
{
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    fx_open(&f, _i);
    users_table(f.db);
    q = bulk_users(0, 25, NULL);
    ck_assert_ptr_nonnull(qb_query_next(q));     /* really a chain */
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_int_eq(qb_result_changes(r), 25);
    qb_result_free(r);
    qb_query_free(q);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM members"), 25);
    /* A duplicate in the last link rolls the whole chain back. */
    q = bulk_users(30, 40, "u31");
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_ECONSTRAINT);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM members"), 25);
    ck_assert_int_eq(qb_in_transaction(f.db), 0);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

START_TEST(test_builder_select_paths)
{
    fx f;
    qb_query *q, *cq, *eq, *one;
    qb_result *r = NULL;
    qb_select *s;
    qb_pagination pg;
    int64_t total = 0;
    fx_open(&f, _i);
    users_table(f.db);
    q = bulk_users(0, 25, NULL);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_OK);
    qb_query_free(q);

    s = sel_new("members");
    qb_select_where(s, "active = ?", 1, (qb_value[]){ qb_bool(1) });
    qb_select_order_by(s, "id", QB_ORDER_ASC);
    qb_select_paginate(s, 2, 5);
    ck_assert_int_eq(qb_select_build(s, QB_FETCH_ALL, &q), QB_OK);
    if (g_pg) {
        /* qb_paginate is SQLite's only: the page itself through qb_exec */
        ck_assert_int_eq(qb_paginate(f.db, q, 2, 5, &r, &pg), QB_EDIALECT);
        ck_assert_ptr_null(r);
        r = run_ok(f.db, q);
        ck_assert_uint_eq(qb_result_rows(r), 5);
        ck_assert_str_eq(qb_result_text_by(r, 0, "name", NULL), "u10");
    } else {
        ck_assert_int_eq(qb_paginate(f.db, q, 2, 5, &r, &pg), QB_OK);
        ck_assert_uint_eq(qb_result_rows(r), 5);
        ck_assert_str_eq(qb_result_text_by(r, 0, "name", NULL), "u10");
        ck_assert_int_eq(pg.total, 13);
        ck_assert_int_eq(pg.total_pages, 3);
        ck_assert_int_eq(pg.has_next, 1);
        ck_assert_int_eq(pg.has_prev, 1);
    }
    qb_result_free(r);
    ck_assert_msg(qb_count(f.db, q, &total) == QB_OK, "count: %s [%s] %s",
                  qb_errmsg(f.db), qb_sqlstate(f.db), q->count_sql);
    ck_assert_int_eq(total, 13);
    qb_query_free(q);

    ck_assert_int_eq(qb_select_build_count(s, &cq), QB_OK);
    ck_assert_int_eq(qb_exec(f.db, cq, &r), QB_OK);
    ck_assert_int_eq(qb_result_int_by(r, 0, "total"), 13);
    qb_result_free(r);
    qb_query_free(cq);

    if (g_pg) {
        /* explain() is SQLite's EXPLAIN QUERY PLAN: not in PG's dialect */
        ck_assert_int_eq(qb_select_build_explain(s, &eq), QB_EDIALECT);
        ck_assert_ptr_null(eq);
    } else {
        ck_assert_int_eq(qb_select_build_explain(s, &eq), QB_OK);
        ck_assert_int_eq(qb_explain(f.db, eq, &r), QB_OK);
        ck_assert_uint_ge(qb_result_rows(r), 1);
        qb_result_free(r);
        qb_query_free(eq);
    }

    ck_assert_int_eq(qb_select_build(s, QB_FETCH_ONE, &one), QB_OK);
    ck_assert_int_eq(qb_exec(f.db, one, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 1);
    qb_result_free(r);
    qb_query_free(one);
    qb_select_free(s);
    fx_close(&f);
}
END_TEST

START_TEST(test_builder_update_delete)
{
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    qb_update *u;
    qb_delete *d;
    fx_open(&f, _i);
    users_table(f.db);
    q = bulk_users(0, 6, NULL);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_OK);
    qb_query_free(q);

    u = qb_update_new("members");
    qb_update_dialect(u, DIALECT);
    qb_update_set(u, "n", qb_int(7));
    qb_update_where(u, "id > ?", 1, (qb_value[]){ qb_int(3) });
    ck_assert_int_eq(qb_update_build(u, &q), QB_OK);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_int_eq(qb_result_changes(r), 3);
    qb_result_free(r);
    qb_query_free(q);
    qb_update_free(u);

    d = qb_delete_new("members");
    qb_delete_dialect(d, DIALECT);
    qb_delete_where(d, "n = ?", 1, (qb_value[]){ qb_int(7) });
    qb_delete_returning(d, "name");
    ck_assert_int_eq(qb_delete_build(d, &q), QB_OK);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 3);
    ck_assert_int_eq(qb_result_changes(r), 3);
    qb_result_free(r);
    qb_query_free(q);
    qb_delete_free(d);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM members"), 3);
    fx_close(&f);
}
END_TEST

/* ---- statement cache ------------------------------------------------------ */

/* Prepared statements of that SQL the engine holds for db: SQLite's
 * sqlite3_next_stmt list, PostgreSQL's pg_prepared_statements (read
 * through libpq, so the cache is not touched). */
static int engine_stmts(qb_conn *db, const char *sql)
{
    int n = 0;
    if (g_pg) {
#ifdef QB_TEST_PG
        return pg_prepared(db, sql);
#endif
    }
    for (sqlite3_stmt *s = sqlite3_next_stmt(qb_conn_sqlite(db), NULL); s;
         s = sqlite3_next_stmt(qb_conn_sqlite(db), s))
        if (strcmp(sqlite3_sql(s), sql) == 0)
            n++;
    return n;
}

/* The LRU: stats and the engine's own statements agree (the pass's
 * g_cache is overridden by the config's 4 on PostgreSQL). */
START_TEST(test_cache_lru_eviction)
{
    qb_conn_config cfg = {.journal_mode = NULL, .synchronous = NULL,
                          .busy_timeout_ms = 0, .readonly = 0,
                          .stmt_cache_size = 4};
    qb_cache_stats st;
    fx f;
    fx_open_cfg(&f, _i, &cfg);
    /* A..D fill the cache; touching A makes B the least recent. */
    ck_assert_int_eq(scalar(f.db, "SELECT 1"), 1);
    ck_assert_int_eq(scalar(f.db, "SELECT 2"), 2);
    ck_assert_int_eq(scalar(f.db, "SELECT 3"), 3);
    ck_assert_int_eq(scalar(f.db, "SELECT 4"), 4);
    ck_assert_int_eq(scalar(f.db, "SELECT 1"), 1);
    ck_assert_int_eq(scalar(f.db, "SELECT 5"), 5);
    qb_conn_cache_stats(f.db, &st);
    ck_assert_uint_eq(st.size, 4);
    ck_assert_uint_eq(st.evictions, 1);
    ck_assert_int_eq(engine_stmts(f.db, "SELECT 2"), 0);
    ck_assert_int_eq(engine_stmts(f.db, "SELECT 1"), 1);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_int_eq(scalar(f.db, "SELECT 1"), 1);      /* still cached */
    ck_assert_int_eq(scalar(f.db, "SELECT 2"), 2);      /* re-prepared */
    qb_conn_cache_stats(f.db, &st);
    ck_assert_uint_eq(st.hits, 2);
    ck_assert_uint_eq(st.misses, 6);
    ck_assert_uint_eq(st.evictions, 2);
    ck_assert_uint_le(st.size, st.capacity);
    fx_close(&f);
}
END_TEST

/* ---- pipelines ------------------------------------------------------------ */

/* Observers in a pipeline: before hooks first (a veto sends nothing),
 * the logger once per query run.  PostgreSQL sends the statements as one
 * pipeline, SQLite runs them one by one: the same observations. */
START_TEST(test_pipeline_observers)
{
    qb_conn *db = fresh("CREATE TABLE t (id integer PRIMARY KEY)");
    qb_query *a = mkq("INSERT INTO t VALUES (1)", 0, NULL, QB_FETCH_NONE);
    qb_query *b = mkq("INSERT INTO t VALUES (1)", 0, NULL, QB_FETCH_NONE);
    qb_query *c = mkq("INSERT INTO t VALUES (3)", 0, NULL, QB_FETCH_NONE);
    const qb_query *qs[3] = { a, b, c };
    rec l;
    size_t at;

    rec_init(&l);
    qb_set_logger(db, rec_logger, &l);
    qb_set_hooks(db, rec_before, rec_after, &l);
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 3, &at), QB_ECONSTRAINT);
    ck_assert_uint_eq(at, 1);
    ASSERT_CODE(db, SQLITE_CONSTRAINT_PRIMARYKEY, "23505");
    /* a ran (ok), b failed; c was not run: no log line for it. */
    ck_assert_int_eq(l.calls, 2);
    ck_assert_int_eq(l.errors, 1);
    ck_assert_int_eq(l.last_rc, QB_ECONSTRAINT);
    ck_assert(l.msg_ok);
    /* PostgreSQL asks every before hook first, then sends; SQLite asks
     * each in turn and stops at the failure */
    ck_assert_int_eq(l.befores, g_pg ? 3 : 2);
    ck_assert_int_eq(l.afters, 2);
    ck_assert_int_eq(qb_rollback(db), QB_OK);

    rec_init(&l);
    l.veto = 1;
    qs[1] = c;
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 2, &at), QB_EINVAL);
    ck_assert_uint_eq(at, 0);
    ck_assert_int_eq(l.befores, 1);   /* the first veto stops it */
    ck_assert_int_eq(qb_commit(db), QB_OK); /* nothing was sent */
    qb_set_logger(db, NULL, NULL);
    qb_set_hooks(db, NULL, NULL, NULL);
    ck_assert_str_eq(query_ids(db, "SELECT count(*) FROM t"), "0");
    qb_query_free(a);
    qb_query_free(b);
    qb_query_free(c);
    qb_close(db);
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

    t = tc(s, "exec");
    tcase_add_loop_test(t, test_statement_kinds, 0, NKINDS * NVAR);
    tcase_add_loop_test(t, test_last_insert_rowid, 0, NVAR);
    tcase_add_loop_test(t, test_fetch_types, 0, NELEM(fetches) * NVAR);

    t = tc(s, "rows");
    tcase_add_loop_test(t, test_bind_types, 0, NVAR);
    tcase_add_test(t, test_result_names_and_bounds);
    tcase_add_test(t, test_result_large_rows);

    t = tc(s, "migrations");
    tcase_add_loop_test(t, test_migrations_apply_order, 0, NVAR);
    tcase_add_loop_test(t, test_migrations_failure_stops, 0, NVAR);
    tcase_add_test(t, test_migrations_table_and_misuse);
    tcase_add_test(t, test_migrations_name_is_bound);
    tcase_add_test(t, test_migrations_script_ends_txn);

    t = tc(s, "observe");
    tcase_add_loop_test(t, test_logger_every_path, 0, NELEM(log_cases));
    tcase_add_test(t, test_logger_sees_query);
    tcase_add_loop_test(t, test_hooks_veto_and_after, 0, NVAR);

    t = tc(s, "builder");
    tcase_add_test(t, test_insert_one_returning);
    tcase_add_test(t, test_insert_bulk_chain);
    tcase_add_test(t, test_insert_chain_atomic);
    tcase_add_test(t, test_upsert);
    tcase_add_test(t, test_update_where_returning);
    tcase_add_test(t, test_delete_where_returning);
    tcase_add_loop_test(t, test_select, 0, NSEL_ENGINE);
    tcase_add_test(t, test_raw_placeholders);

    tcase_add_loop_test(t, test_builder_bulk_chain, 0, NVAR);
    tcase_add_loop_test(t, test_builder_select_paths, 0, NVAR);
    tcase_add_loop_test(t, test_builder_update_delete, 0, NVAR);

    t = tc(s, "values");
    tcase_add_test(t, test_nulls);
    tcase_add_loop_test(t, test_text_roundtrip, 0, (int)NTEXTS);
    tcase_add_test(t, test_bytea_roundtrip);

    t = tc(s, "cache");
    tcase_add_loop_test(t, test_cache_lru_eviction, 0, NVAR);

    t = tc(s, "misuse");
    tcase_add_test(t, test_dialect_refused);
    tcase_add_test(t, test_misuse_null_db);
    tcase_add_test(t, test_misuse_null_query);
    tcase_add_loop_test(t, test_param_count, 0, NELEM(param_cases));
    tcase_add_loop_test(t, test_sql_shapes, 0, NELEM(shapes));

    t = tc(s, "batch");
    tcase_add_test(t, test_pipeline_observers);
    tcase_add_loop_test(t, test_batch_atomic, 0, NVAR);
    tcase_add_loop_test(t, test_batch_results, 0, NVAR);
    tcase_add_loop_test(t, test_batch_in_transaction, 0, NVAR);

    t = tc(s, "count_paginate");
    tcase_add_loop_test(t, test_count, 0, NVAR);
    tcase_add_loop_test(t, test_paginate, 0, g_pg ? 1 : NELEM(pages));
    tcase_add_test(t, test_paginate_invalid);
    return s;
}
