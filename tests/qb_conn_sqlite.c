/*
 * qb_conn_sqlite.c -- the executor's SQLite-only cases, a suite of
 * tests/check_qb_conn (see check_qb_conn.c): pragmas and open options,
 * the statement cache seen through sqlite3_next_stmt, cursors, EXPLAIN
 * QUERY PLAN, SQLITE_BUSY and SQLITE_INTERRUPT, one handle per thread,
 * files that outlive a connection.
 *
 * Queries are made with qb_query_raw; chains and count statements are
 * also assembled through qb_int.h the way the builder produces them.
 * Most tests run twice (loop index parity): on ":memory:" and on a file
 * in a fresh temp directory (WAL).
 */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qb_conn_test.h"

#define NELEM(a) (int)(sizeof(a) / sizeof((a)[0]))

/* ---- open / config -------------------------------------------------------- */

START_TEST(test_open_defaults)
{
    fx f;
    qb_query *q;
    qb_result *r = NULL;
    fx_open(&f, _i);
    q = mkq("PRAGMA journal_mode", 0, NULL, QB_FETCH_ONE);
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_str_eq(qb_result_text(r, 0, 0, NULL), _i ? "wal" : "memory");
    qb_result_free(r);
    qb_query_free(q);
    ck_assert_int_eq(scalar(f.db, "PRAGMA synchronous"), 1);   /* NORMAL */
    ck_assert_int_eq(scalar(f.db, "PRAGMA busy_timeout"), 5000);
    ck_assert_int_eq(scalar(f.db, "PRAGMA foreign_keys"), 1);
    ck_assert_ptr_nonnull(qb_conn_sqlite(f.db));
    ck_assert_str_eq(qb_errmsg(f.db), "not an error");
    fx_close(&f);
}
END_TEST

START_TEST(test_open_config_applied)
{
    fx f;
    qb_conn_config cfg = {.journal_mode = "DELETE", .synchronous = "FULL",
                          .busy_timeout_ms = 123, .readonly = 0,
                          .stmt_cache_size = 8};
    qb_cache_stats st;
    fx_open_cfg(&f, 1, &cfg);
    ck_assert_int_eq(scalar(f.db, "PRAGMA synchronous"), 2);
    ck_assert_int_eq(scalar(f.db, "PRAGMA busy_timeout"), 123);
    qb_conn_cache_stats(f.db, &st);
    ck_assert_uint_eq(st.capacity, 8);
    fx_close(&f);
}
END_TEST

static const struct bad_cfg {
    const char *jm, *sync;
    int busy;
    size_t cache;
} bad_cfgs[] = {
    { "bogus", NULL, 0, 0 },
    { NULL, "NORMAL; DROP TABLE x", 0, 0 },
    { "WAL", "NORMAL", -1, 0 },
    { "WAL", "NORMAL", 10, 1u << 20 },
};

START_TEST(test_open_config_invalid)
{
    const struct bad_cfg *b = &bad_cfgs[_i];
    qb_conn_config cfg = {.journal_mode = b->jm, .synchronous = b->sync,
                          .busy_timeout_ms = b->busy, .readonly = 0,
                          .stmt_cache_size = b->cache};
    qb_conn *db = (qb_conn *)&cfg;   /* must be overwritten with NULL */
    char err[128] = "x";
    ck_assert_int_eq(qb_open(&db, ":memory:", &cfg, err, sizeof err),
                     QB_EINVAL);
    ck_assert_ptr_null(db);
    ck_assert_int_gt(strlen(err), 0);
}
END_TEST

START_TEST(test_open_bad_path)
{
    qb_conn *db = NULL;
    char err[256] = "";
    ck_assert_int_eq(qb_open(&db, "/nonexistent-dir/qb/x.db", NULL, err,
                                sizeof err), QB_ESQL);
    ck_assert_ptr_null(db);
    ck_assert_ptr_nonnull(strstr(err, "cannot open"));
    ck_assert_int_eq(qb_open(NULL, ":memory:", NULL, NULL, 0), QB_EINVAL);
    ck_assert_int_eq(qb_open(&db, NULL, NULL, NULL, 0), QB_EINVAL);
}
END_TEST

START_TEST(test_open_readonly)
{
    fx f;
    qb_conn *ro = NULL;
    qb_conn_config cfg = {.journal_mode = NULL, .synchronous = NULL,
                          .busy_timeout_ms = 100, .readonly = 1,
                          .stmt_cache_size = 0};
    fx_open(&f, 1);
    seed(f.db);
    ck_assert_int_eq(qb_open(&ro, f.path, &cfg, NULL, 0), QB_OK);
    ck_assert_int_eq(scalar(ro, "SELECT count(*) FROM t"), 3);
    ck_assert_int_eq(run(ro, "DELETE FROM t"), QB_ESQL);
    ck_assert_int_eq(qb_errcode(ro) & 0xff, SQLITE_READONLY);
    qb_close(ro);
    fx_close(&f);
}
END_TEST

/* ---- statement cache -------------------------------------------------------- */

static int count_stmts(qb_conn *db, const char *sql, sqlite3_stmt **found)
{
    int n = 0;
    for (sqlite3_stmt *s = sqlite3_next_stmt(qb_conn_sqlite(db), NULL); s;
         s = sqlite3_next_stmt(qb_conn_sqlite(db), s))
        if (strcmp(sqlite3_sql(s), sql) == 0) {
            n++;
            if (found != NULL)
                *found = s;
        }
    return n;
}

START_TEST(test_cache_hit_same_statement)
{
    fx f;
    qb_cache_stats a, b;
    sqlite3_stmt *s1 = NULL, *s2 = NULL;
    fx_open(&f, _i);
    seed(f.db);
    qb_conn_cache_stats(f.db, &a);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE id > 0"), 3);
    ck_assert_int_eq(count_stmts(f.db, "SELECT count(*) FROM t WHERE id > 0",
                                 &s1), 1);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE id > 0"), 3);
    ck_assert_int_eq(count_stmts(f.db, "SELECT count(*) FROM t WHERE id > 0",
                                 &s2), 1);
    ck_assert_ptr_eq(s1, s2);
    qb_conn_cache_stats(f.db, &b);
    ck_assert_uint_eq(b.misses - a.misses, 1);
    ck_assert_uint_eq(b.hits - a.hits, 1);
    ck_assert_uint_eq(b.size, a.size + 1);
    /* Returned statements are reset and unbound. */
    ck_assert_int_eq(sqlite3_stmt_busy(s2), 0);
    fx_close(&f);
}
END_TEST

START_TEST(test_cache_in_use_not_shared)
{
    fx f;
    qb_query *q;
    qb_cursor *c = NULL;
    qb_result *r = NULL;
    qb_cache_stats st;
    fx_open(&f, _i);
    seed(f.db);
    q = mkq("SELECT id FROM t ORDER BY id", 0, NULL, QB_FETCH_ALL);
    ck_assert_int_eq(qb_cursor_open(f.db, q, &c), QB_OK);
    ck_assert_int_eq(qb_cursor_next(c), QB_OK);
    ck_assert_int_eq(qb_cursor_int(c, 0), 1);
    /* Same SQL while the cursor holds the cached statement. */
    ck_assert_int_eq(qb_exec(f.db, q, &r), QB_OK);
    ck_assert_uint_eq(qb_result_rows(r), 3);
    qb_result_free(r);
    qb_conn_cache_stats(f.db, &st);
    ck_assert_uint_eq(st.transient, 1);
    /* The cursor was not disturbed. */
    ck_assert_int_eq(qb_cursor_next(c), QB_OK);
    ck_assert_int_eq(qb_cursor_int(c, 0), 2);
    qb_cursor_close(c);
    ck_assert_int_eq(count_stmts(f.db, "SELECT id FROM t ORDER BY id", NULL),
                     1);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_OK);
    qb_conn_cache_stats(f.db, &st);
    ck_assert_uint_eq(st.transient, 1);
    ck_assert_uint_ge(st.hits, 1);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

START_TEST(test_cache_reuse_after_error)
{
    fx f;
    qb_value v[2];
    qb_query *q;
    qb_cache_stats a, b;
    sqlite3_stmt *s = NULL;
    fx_open(&f, _i);
    seed(f.db);
    v[0] = qb_int(1);
    v[1] = qb_text("dup");
    q = mkq("INSERT INTO t (id, name) VALUES (?1, ?2)", 2, v, QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_ECONSTRAINT);
    ck_assert_int_eq(qb_errcode(f.db), SQLITE_CONSTRAINT_PRIMARYKEY);
    ck_assert_ptr_nonnull(strstr(qb_errmsg(f.db), "UNIQUE"));
    count_stmts(f.db, "INSERT INTO t (id, name) VALUES (?1, ?2)", &s);
    ck_assert_int_eq(sqlite3_stmt_busy(s), 0);
    qb_query_free(q);
    qb_conn_cache_stats(f.db, &a);
    v[0] = qb_int(10);
    q = mkq("INSERT INTO t (id, name) VALUES (?1, ?2)", 2, v, QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(f.db, q, NULL), QB_OK);
    qb_conn_cache_stats(f.db, &b);
    ck_assert_uint_eq(b.hits - a.hits, 1);
    ck_assert_uint_eq(b.misses, a.misses);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t WHERE id = 10"), 1);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

/* ---- cursor ------------------------------------------------------------------ */

START_TEST(test_cursor_10k)
{
    fx f;
    qb_query *ins, *sel;
    qb_cursor *c = NULL;
    rec lg;
    int64_t n = 0, sum = 0, prev = 0;
    size_t len;
    int rc;

    fx_open(&f, _i);
    ck_assert_int_eq(run(f.db, "CREATE TABLE big (id INTEGER PRIMARY KEY, "
                               "v TEXT, b BLOB)"), QB_OK);
    ck_assert_int_eq(qb_begin(f.db), QB_OK);
    for (int i = 1; i <= 10000; i++) {
        char txt[32];
        qb_value a[2];
        snprintf(txt, sizeof txt, "row-%d", i);
        a[0] = qb_text(txt);
        a[1] = i % 100 == 0 ? qb_null() : qb_blob(&i, sizeof i);
        ins = mkq("INSERT INTO big (v, b) VALUES (?1, ?2)", 2, a,
                  QB_FETCH_NONE);
        ck_assert_int_eq(qb_exec(f.db, ins, NULL), QB_OK);
        qb_query_free(ins);
    }
    ck_assert_int_eq(qb_commit(f.db), QB_OK);

    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    sel = mkq("SELECT id, v, b FROM big ORDER BY id", 0, NULL, QB_FETCH_ALL);
    ck_assert_int_eq(qb_cursor_open(f.db, sel, &c), QB_OK);
    ck_assert_uint_eq(qb_cursor_cols(c), 3);
    ck_assert_str_eq(qb_cursor_colname(c, 1), "v");
    ck_assert_int_eq(qb_cursor_colindex(c, "b"), 2);
    ck_assert_int_eq(qb_cursor_colindex(c, "zz"), QB_EINVAL);
    /* No row yet: accessors read NULL. */
    ck_assert_int_eq(qb_cursor_type(c, 0), QB_V_NULL);
    while ((rc = qb_cursor_next(c)) == QB_OK) {
        int64_t id = qb_cursor_int(c, 0);
        char want[32];
        ck_assert_int_eq(id, prev + 1);
        prev = id;
        n++;
        sum += id;
        snprintf(want, sizeof want, "row-%lld", (long long)id);
        ck_assert_str_eq(qb_cursor_text(c, 1, &len), want);
        ck_assert_uint_eq(len, strlen(want));
        if (id % 100 == 0) {
            ck_assert_int_eq(qb_cursor_is_null(c, 2), 1);
            ck_assert_ptr_null(qb_cursor_blob(c, 2, &len));
        } else {
            int x;
            const void *p = qb_cursor_blob(c, 2, &len);
            ck_assert_int_eq(qb_cursor_type(c, 2), QB_V_BLOB);
            ck_assert_uint_eq(len, sizeof x);
            memcpy(&x, p, sizeof x);
            ck_assert_int_eq(x, (int)id);
        }
    }
    ck_assert_int_eq(rc, QB_EDONE);
    ck_assert_int_eq(qb_cursor_next(c), QB_EDONE);   /* sticky */
    ck_assert_int_eq(n, 10000);
    ck_assert_int_eq(sum, 10000LL * 10001 / 2);
    ck_assert_int_eq(qb_cursor_type(c, 0), QB_V_NULL);
    ck_assert_int_eq(qb_cursor_int(c, 0), 0);
    ck_assert_int_eq(lg.calls, 1);          /* logged when it finished */
    ck_assert_int_eq(lg.last_rc, QB_OK);
    qb_cursor_close(c);
    ck_assert_int_eq(lg.calls, 1);          /* ... and only then */
    qb_query_free(sel);
    fx_close(&f);
}
END_TEST

START_TEST(test_cursor_abandoned_and_errors)
{
    fx f;
    qb_query *q, *q2, *bad;
    qb_cursor *c = (qb_cursor *)&f;
    qb_value one = qb_int(1);
    rec lg;
    fx_open(&f, 0);
    seed(f.db);
    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);

    q = mkq("SELECT id FROM t", 0, NULL, QB_FETCH_ALL);
    ck_assert_int_eq(qb_cursor_open(f.db, q, &c), QB_OK);
    ck_assert_int_eq(qb_cursor_next(c), QB_OK);
    ck_assert_int_eq(lg.calls, 0);
    qb_cursor_close(c);                      /* abandoned after one row */
    ck_assert_int_eq(lg.calls, 1);
    ck_assert_int_eq(lg.last_rc, QB_OK);

    /* A chain cannot be a cursor. */
    q2 = mkq("SELECT 2", 0, NULL, QB_FETCH_ALL);
    q->next = q2;
    c = (qb_cursor *)&f;
    ck_assert_int_eq(qb_cursor_open(f.db, q, &c), QB_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(lg.calls, 2);
    ck_assert_int_eq(lg.last_rc, QB_EINVAL);

    /* Wrong parameter count, syntax error. */
    bad = mkq("SELECT ?1, ?2", 1, &one, QB_FETCH_ALL);
    ck_assert_int_eq(qb_cursor_open(f.db, bad, &c), QB_EINVAL);
    qb_query_free(bad);
    bad = mkq("SELECT FROM", 0, NULL, QB_FETCH_ALL);
    ck_assert_int_eq(qb_cursor_open(f.db, bad, &c), QB_ESQL);
    qb_query_free(bad);
    ck_assert_int_eq(lg.calls, 4);

    /* A runtime error mid-way is returned by next, sticky, logged once. */
    bad = mkq("SELECT CASE WHEN id = 2 THEN json('{bad') ELSE id END FROM t "
              "ORDER BY id", 0, NULL, QB_FETCH_ALL);
    ck_assert_int_eq(qb_cursor_open(f.db, bad, &c), QB_OK);
    ck_assert_int_eq(qb_cursor_next(c), QB_OK);
    ck_assert_int_eq(qb_cursor_next(c), QB_ESQL);
    ck_assert_int_eq(qb_cursor_next(c), QB_ESQL);
    ck_assert_int_eq(lg.calls, 5);
    ck_assert_int_eq(lg.last_rc, QB_ESQL);
    qb_cursor_close(c);
    ck_assert_int_eq(lg.calls, 5);
    ck_assert(lg.msg_ok);
    qb_query_free(bad);

    ck_assert_int_eq(qb_cursor_next(NULL), QB_EINVAL);
    ck_assert_uint_eq(qb_cursor_cols(NULL), 0);
    ck_assert_ptr_null(qb_cursor_text(NULL, 0, NULL));
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

/* ---- explain ------------------------------------------------------------------ */

START_TEST(test_explain)
{
    fx f;
    qb_value v = qb_int(1);
    qb_query *q;
    qb_result *r = NULL;
    fx_open(&f, _i);
    seed(f.db);
    q = mkq("EXPLAIN QUERY PLAN SELECT * FROM t WHERE id = ?1", 1, &v,
            QB_FETCH_NONE);
    ck_assert_int_eq(qb_explain(f.db, q, &r), QB_OK);
    ck_assert_uint_ge(qb_result_rows(r), 1);
    ck_assert_int_ge(qb_result_colindex(r, "detail"), 0);
    ck_assert_ptr_nonnull(strstr(qb_result_text_by(r, 0, "detail", NULL),
                                 "INTEGER PRIMARY KEY"));
    qb_result_free(r);
    qb_query_free(q);
    fx_close(&f);
}
END_TEST

/* ---- migrations ------------------------------------------------------------------ */

/* A placeholder left in a migration (any form SQLite binds: ?, ?N, :x,
 * @x, $x) used to run with NULL bound to it, while qb_exec refuses the
 * same statement.  Now the migration is refused the way qb_exec refuses
 * it (QB_EINVAL, the same message), naming the file and the statement,
 * and rolled back; the one before it stays applied, the one after it
 * does not run. */
static const struct {
    const char *ph;   /* the stray placeholder */
    int count;        /* what sqlite3_bind_parameter_count says */
} stray_cases[] = {
    { "?", 1 }, { "?3", 3 }, { ":v", 1 }, { "@v", 1 }, { "$v", 1 },
};

START_TEST(test_migrations_stray_placeholder)
{
    fx f;
    char bad_sql[256], stmt[64], want[512], exec_msg[256];
    qb_migration m[3] = {
        { "0001_ok.sql", "CREATE TABLE m0 (a)" },
        { "0002_bad.sql", bad_sql },
        { "0003_after.sql", "CREATE TABLE m2 (a)" },
    };
    size_t applied = 9, failed = 9;
    rec lg;
    fx_open(&f, 0);

    /* literals and comments holding '?' are not placeholders */
    snprintf(stmt, sizeof stmt, "INSERT INTO m1 VALUES (%s)",
             stray_cases[_i].ph);
    snprintf(bad_sql, sizeof bad_sql,
             "CREATE TABLE m1 (a);\n-- a comment with ? and ?1\n"
             "INSERT INTO m1 VALUES ('?');\n"
             "INSERT INTO m1\n  VALUES (%s);\nCREATE TABLE m3 (a);",
             stray_cases[_i].ph);

    /* what qb_exec says about that statement */
    ck_assert_int_eq(run(f.db, "CREATE TABLE m1 (a)"), QB_OK);
    ck_assert_int_eq(run(f.db, stmt), QB_EINVAL);
    snprintf(exec_msg, sizeof exec_msg, "%s", qb_errmsg(f.db));
    ck_assert_int_eq(run(f.db, "DROP TABLE m1"), QB_OK);

    rec_init(&lg);
    qb_set_logger(f.db, rec_logger, &lg);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, m, 3, &applied,
                                         &failed), QB_EINVAL);
    ck_assert_uint_eq(applied, 1);
    ck_assert_uint_eq(failed, 1);
    ck_assert_int_eq(lg.last_rc, QB_EINVAL);
    snprintf(want, sizeof want, "migration '0002_bad.sql': statement 3 at "
             "line 4 (INSERT INTO m1 VALUES (%s)): %s", stray_cases[_i].ph,
             exec_msg);
    ck_assert_str_eq(qb_errmsg(f.db), want);
    snprintf(want, sizeof want, "parameter count mismatch: the statement "
             "has %d placeholder(s), the query has 0 value(s)",
             stray_cases[_i].count);
    ck_assert_str_eq(exec_msg, want);
    /* 0002 rolled back whole, 0003 never ran, 0001 stays */
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM sqlite_master WHERE "
                                  "name IN ('m1', 'm2', 'm3')"), 0);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM migrations"), 1);
    ck_assert_int_ne(sqlite3_get_autocommit(qb_conn_sqlite(f.db)), 0);
    qb_set_logger(f.db, NULL, NULL);
    fx_close(&f);
}
END_TEST

/* A long statement is named by its first 60 bytes, cut on a character
 * boundary. */
START_TEST(test_migrations_stray_placeholder_long)
{
    fx f;
    qb_migration m = {
        "0001_long.sql",
        "CREATE TABLE m1 (a);\n\n"
        "INSERT INTO m1 (a)\n    SELECT 'abcdecaf\xc3\xa9 caf\xc3\xa9 "
        "caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9' || ? FROM m1;"
    };
    const char *msg;
    fx_open(&f, 0);
    ck_assert_int_eq(qb_migrations_apply(f.db, NULL, &m, 1, NULL, NULL),
                     QB_EINVAL);
    msg = qb_errmsg(f.db);
    /* the 60th byte is the first of the 5th e-acute's two: cut before it */
    ck_assert_str_eq(msg, "migration '0001_long.sql': statement 2 at line 3 "
                          "(INSERT INTO m1 (a) SELECT 'abcdecaf\xc3\xa9 "
                          "caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9 caf...): "
                          "parameter count mismatch: the statement has 1 "
                          "placeholder(s), the query has 0 value(s)");
    fx_close(&f);
}
END_TEST

/* ---- BUSY and INTERRUPT mapping ------------------------------------------------- */

START_TEST(test_busy_mapping)
{
    fx f;
    qb_conn *b = NULL;
    qb_conn_config cfg = {.journal_mode = NULL, .synchronous = NULL,
                          .busy_timeout_ms = 30, .readonly = 0,
                          .stmt_cache_size = 0};
    qb_query *ins, *chain, *qs[1];
    size_t failed = 99;
    fx_open(&f, 1);
    seed(f.db);
    ck_assert_int_eq(qb_open(&b, f.path, &cfg, NULL, 0), QB_OK);
    ck_assert_int_eq(qb_begin(f.db), QB_OK);          /* A holds the lock */

    ins = mkq("INSERT INTO t (name) VALUES ('from_b')", 0, NULL,
              QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(b, ins, NULL), QB_EBUSY);
    ck_assert_int_eq(qb_errcode(b) & 0xff, SQLITE_BUSY);
    ck_assert_int_eq(qb_begin(b), QB_EBUSY);
    chain = chain3("c1", "c2", "c3", QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(b, chain, NULL), QB_EBUSY);
    qs[0] = ins;
    ck_assert_int_eq(qb_batch(b, (const qb_query *const *)qs, 1, NULL,
                              &failed), QB_EBUSY);
    ck_assert_uint_eq(failed, 0);
    ck_assert_int_ne(sqlite3_get_autocommit(qb_conn_sqlite(b)), 0);
    /* Readers are not blocked in WAL. */
    ck_assert_int_eq(scalar(b, "SELECT count(*) FROM t"), 3);

    ck_assert_int_eq(qb_commit(f.db), QB_OK);
    ck_assert_int_eq(qb_exec(b, ins, NULL), QB_OK);    /* usable again */
    ck_assert_int_eq(qb_exec(b, chain, NULL), QB_OK);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 7);
    qb_query_free(ins);
    qb_query_free(chain);
    qb_close(b);
    fx_close(&f);
}
END_TEST

static int interrupt_progress(void *ud)
{
    sqlite3_interrupt(ud);
    return 0;
}

START_TEST(test_interrupt_mapping)
{
    fx f;
    sqlite3 *s;
    qb_query *slow, *chain;
    fx_open(&f, _i);
    seed(f.db);
    s = qb_conn_sqlite(f.db);
    sqlite3_progress_handler(s, 1000, interrupt_progress, s);
    slow = mkq("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM "
               "c WHERE i < 10000000) SELECT count(*) FROM c", 0, NULL,
               QB_FETCH_ONE);
    ck_assert_int_eq(qb_exec(f.db, slow, NULL), QB_EINTERRUPT);
    ck_assert_int_eq(qb_errcode(f.db), SQLITE_INTERRUPT);
    /* Inside a chain whose third link is slow: SQLite aborts the
     * transaction; the first two links are gone, none is left open. */
    chain = chain3("i1", "i2", "i3", QB_FETCH_NONE);
    qb_query_free(chain->next->next);
    chain->next->next = mkq("INSERT INTO t (name) SELECT 'slow' || i FROM "
                            "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL "
                            "SELECT i + 1 FROM c WHERE i < 10000000) "
                            "SELECT i FROM c)", 0, NULL, QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(f.db, chain, NULL), QB_EINTERRUPT);
    ck_assert_int_ne(sqlite3_get_autocommit(s), 0);
    sqlite3_progress_handler(s, 0, NULL, NULL);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 3);
    qb_query_free(chain);
    chain = chain3("i1", "i2", "i3", QB_FETCH_NONE);
    ck_assert_int_eq(qb_exec(f.db, chain, NULL), QB_OK);
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 6);
    qb_query_free(slow);
    qb_query_free(chain);
    fx_close(&f);
}
END_TEST

/* ---- one handle per thread ------------------------------------------------------ */

typedef struct worker {
    const char *path;
    int id;
    int rc;        /* first failure, read by the test thread after join */
    int inserted;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    qb_conn *db = NULL;
    qb_conn_config cfg = {.journal_mode = NULL, .synchronous = NULL,
                          .busy_timeout_ms = 10000, .readonly = 0,
                          .stmt_cache_size = 0};
    w->rc = qb_open(&db, w->path, &cfg, NULL, 0);
    for (int t = 0; w->rc == QB_OK && t < 10; t++) {
        w->rc = qb_begin(db);
        for (int i = 0; w->rc == QB_OK && i < 20; i++) {
            qb_value v[2] = { qb_int(w->id), qb_int(t * 20 + i) };
            qb_query *q = NULL;
            w->rc = qb_query_raw(&q, "INSERT INTO w (who, n) VALUES (?1, ?2)",
                                 2, v, QB_FETCH_NONE);
            if (w->rc == QB_OK)
                w->rc = qb_exec(db, q, NULL);
            qb_query_free(q);
        }
        if (w->rc == QB_OK)
            w->rc = qb_commit(db);
        if (w->rc == QB_OK)
            w->inserted += 20;
    }
    qb_close(db);
    return NULL;
}

START_TEST(test_threads_own_handles)
{
    fx f;
    pthread_t th[2];
    worker w[2];
    fx_open(&f, 1);
    ck_assert_int_eq(run(f.db, "CREATE TABLE w (who INTEGER, n INTEGER)"),
                     QB_OK);
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].path = f.path;
        w[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(w[i].rc, QB_OK);
        ck_assert_int_eq(w[i].inserted, 200);
    }
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM w"), 400);
    ck_assert_int_eq(scalar(f.db, "SELECT count(DISTINCT who) FROM w"), 2);
    fx_close(&f);
}
END_TEST

/* ---- files ------------------------------------------------------------------- */

START_TEST(test_persist_reopen)
{
    fx f;
    qb_conn *again = NULL;
    fx_open(&f, 1);
    seed(f.db);
    qb_close(f.db);
    ck_assert_int_eq(qb_open(&again, f.path, NULL, NULL, 0), QB_OK);
    f.db = again;
    ck_assert_int_eq(scalar(f.db, "SELECT count(*) FROM t"), 3);
    fx_close(&f);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------ */

Suite *qb_conn_sqlite_suite(void)
{
    Suite *s = suite_create("qb_conn sqlite");
    TCase *t;

    t = tc(s, "open");
    tcase_add_loop_test(t, test_open_defaults, 0, 2);
    tcase_add_test(t, test_open_config_applied);
    tcase_add_loop_test(t, test_open_config_invalid, 0, NELEM(bad_cfgs));
    tcase_add_test(t, test_open_bad_path);
    tcase_add_test(t, test_open_readonly);
    tcase_add_test(t, test_persist_reopen);

    t = tc(s, "exec");

    t = tc(s, "cache");
    tcase_add_loop_test(t, test_cache_hit_same_statement, 0, 2);
    tcase_add_loop_test(t, test_cache_in_use_not_shared, 0, 2);
    tcase_add_loop_test(t, test_cache_reuse_after_error, 0, 2);

    t = tc(s, "cursor");
    tcase_add_loop_test(t, test_cursor_10k, 0, 2);
    tcase_add_test(t, test_cursor_abandoned_and_errors);

    t = tc(s, "explain");
    tcase_add_loop_test(t, test_explain, 0, 2);

    t = tc(s, "migrations");
    tcase_add_loop_test(t, test_migrations_stray_placeholder, 0,
                        (int)(sizeof stray_cases / sizeof stray_cases[0]));
    tcase_add_test(t, test_migrations_stray_placeholder_long);

    t = tc(s, "errors");
    tcase_add_test(t, test_busy_mapping);
    tcase_add_test(t, test_threads_own_handles);
    tcase_add_loop_test(t, test_interrupt_mapping, 0, 2);
    return s;
}
