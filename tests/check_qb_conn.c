/*
 * check_qb_conn.c -- the qb executor (lib/qb/qb_conn.h): one Check
 * program for both engines.
 *
 * The engine is chosen at run time.  Without WU_PG_DSN the program runs
 * on SQLite (`make check` runs it so, always).  With WU_PG_DSN it runs on
 * that PostgreSQL server, whose public schema it empties before every
 * test: point it only at a throw-away server, which is what
 * tests/pg/check_qb_conn_pg.sh gives it (tests/pg/pg_env.sh run).  A
 * build without libpq exits 77 (SKIP) when asked for PostgreSQL.
 *
 * Suites:
 *   "qb_conn"            engine-neutral cases, here: each runs on the
 *                        engine under test; where the engines legitimately
 *                        differ (a cell type, SQLite's result code against
 *                        a SQLSTATE) the case asserts each engine's value.
 *   "qb_conn sqlite"     SQLite only (qb_conn_sqlite.c): pragmas, cursors,
 *                        EXPLAIN, busy and interrupt, threads, files.
 *   "qb_conn postgres"   PostgreSQL only (qb_conn_pg.c): SQLSTATEs, lost
 *                        connections and qb_reset_until (tests/pg/
 *                        pg_proxy.h), pipelines, the statement cache with
 *                        parameter types, workers-qb's PG cases.
 * On PostgreSQL both suites run twice: without a statement cache, then
 * with a small one (evictions happen) -- the two ways a statement reaches
 * the server.  On SQLite most loop cases run on ":memory:" and on a WAL
 * file.
 *
 * Environment: WU_PG_DSN, WU_PG_RESTART (the reconnect case runs only
 * with it), TESTS_SRCDIR (qb/cases.json); see tests/pg/README.md.
 */
#define _GNU_SOURCE
#include <check.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qb_conn_test.h"
#include "testutil.h"

int g_pg;
const char *g_dsn;
const char *g_restart;
size_t g_cache;

/* ---- fixtures and helpers (declared in qb_conn_test.h) -------------------- */

void fx_open_cfg(fx *f, int variant, const qb_conn_config *cfg)
{
    char err[256] = "";
    memset(f, 0, sizeof *f);
    if (g_pg) {
#ifdef QB_TEST_PG
        qb_conn_config c;
        if (cfg != NULL)
            c = *cfg;
        else
            memset(&c, 0, sizeof c);
        c.engine = QB_ENGINE_POSTGRES;
        if (c.stmt_cache_size == 0)
            c.stmt_cache_size = g_cache;
        snprintf(f->path, sizeof f->path, "%s", g_dsn);
        ck_assert_msg(qb_open(&f->db, f->path, &c, err, sizeof err) == QB_OK,
                      "connect: %s", err);
        ck_assert_ptr_nonnull(f->db);
        pg_reset_schema(f->db);
        return;
#else
        ck_abort_msg("PostgreSQL is not built in");
#endif
    }
    if (variant) {
        f->dir = tu_mkdtemp("qbsql");
        ck_assert_ptr_nonnull(f->dir);
        snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    } else {
        snprintf(f->path, sizeof f->path, ":memory:");
    }
    ck_assert_msg(qb_open(&f->db, f->path, cfg, err, sizeof err) == QB_OK,
                  "open: %s", err);
    ck_assert_ptr_nonnull(f->db);
}

void fx_open(fx *f, int variant) { fx_open_cfg(f, variant, NULL); }

void fx_close(fx *f)
{
    qb_close(f->db);
    f->db = NULL;
    if (f->dir != NULL) {
        tu_rmtree(f->dir);
        free(f->dir);
        f->dir = NULL;
    }
}

void script(qb_conn *db, const char *sql)
{
    char *err = NULL;
    if (g_pg) {
#ifdef QB_TEST_PG
        pg_script(db, sql);
#endif
        return;
    }
    ck_assert_msg(sqlite3_exec(qb_conn_sqlite(db), sql, NULL, NULL, &err) ==
                  SQLITE_OK, "setup failed: %s: %s", sql, err);
}

qb_conn *fresh(const char *schema)
{
    fx f;
    fx_open(&f, 0);
    if (schema != NULL)
        script(f.db, schema);
    return f.db;
}

qb_select *sel_new(const char *table)
{
    qb_select *s = qb_select_new(table);
    ck_assert_ptr_nonnull(s);
    qb_select_dialect(s, DIALECT);
    return s;
}

qb_insert *ins_new(const char *table)
{
    qb_insert *ins = qb_insert_new(table);
    ck_assert_ptr_nonnull(ins);
    qb_insert_dialect(ins, DIALECT);
    return ins;
}

qb_query *mkq(const char *sql, size_t n, const qb_value *a, qb_fetch f)
{
    qb_query *q = NULL;
    ck_assert_int_eq(qb_query_raw_dialect(&q, DIALECT, sql, n, a, f), QB_OK);
    ck_assert_ptr_nonnull(q);
    return q;
}

int run(qb_conn *db, const char *sql)
{
    qb_query *q = mkq(sql, 0, NULL, QB_FETCH_NONE);
    int rc = qb_exec(db, q, NULL);
    qb_query_free(q);
    return rc;
}

qb_result *run_ok(qb_conn *db, const qb_query *q)
{
    qb_result *r = NULL;
    int rc = qb_exec(db, q, &r);
    ck_assert_msg(rc == QB_OK, "exec %s: %s (%s) [%s]", qb_query_sql(q),
                  qb_strerror(rc), qb_errmsg(db), qb_sqlstate(db));
    ck_assert_ptr_nonnull(r);
    return r;
}

int64_t scalar(qb_conn *db, const char *sql)
{
    qb_query *q = mkq(sql, 0, NULL, QB_FETCH_ONE);
    qb_result *r = run_ok(db, q);
    int64_t v;
    ck_assert_uint_eq(qb_result_rows(r), 1);
    v = qb_result_int(r, 0, 0);
    qb_result_free(r);
    qb_query_free(q);
    return v;
}

const char *ids(const qb_result *r)
{
    static char buf[1024];
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < qb_result_rows(r) && off < sizeof buf - 32;
         i++) {
        const char *sep = i ? "," : "";
        switch (qb_result_type(r, i, 0)) {
        case QB_V_NULL:
            off += (size_t)snprintf(buf + off, sizeof buf - off, "%s-", sep);
            break;
        case QB_V_TEXT:
            off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%.64s",
                                    sep, qb_result_text(r, i, 0, NULL));
            break;
        default:
            off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%lld",
                                    sep,
                                    (long long)qb_result_int(r, i, 0));
            break;
        }
    }
    return buf;
}

const char *query_ids(qb_conn *db, const char *sql)
{
    static char keep[1024];
    qb_query *q = mkq(sql, 0, NULL, QB_FETCH_ALL);
    qb_result *r = run_ok(db, q);
    snprintf(keep, sizeof keep, "%s", ids(r));
    qb_result_free(r);
    qb_query_free(q);
    return keep;
}

void seed(qb_conn *db)
{
    ck_assert_int_eq(run(db, g_pg ? "CREATE TABLE t (id serial PRIMARY KEY, "
                                    "name text UNIQUE, score integer)"
                                  : "CREATE TABLE t (id INTEGER PRIMARY KEY, "
                                    "name TEXT UNIQUE, score INTEGER)"),
                     QB_OK);
    ck_assert_int_eq(run(db, "INSERT INTO t (name, score) VALUES "
                             "('a', 10), ('b', 20), ('c', 30)"), QB_OK);
}

qb_query *chain3(const char *n0, const char *n1, const char *n2,
                        qb_fetch fetch)
{
    const char *names[3] = { n0, n1, n2 };
    qb_query *head = NULL, **tail = &head;
    for (int i = 0; i < 3; i++) {
        qb_value v = qb_text(names[i]);
        *tail = mkq("INSERT INTO t (name) VALUES (?1) RETURNING id", 1, &v,
                    fetch);
        tail = &(*tail)->next;
    }
    return head;
}

int64_t relations(qb_conn *db, const char *quoted_names)
{
    char sql[512];
    if (g_pg)
        snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_class c JOIN "
                 "pg_namespace n ON n.oid = c.relnamespace WHERE "
                 "n.nspname = 'public' AND c.relname IN (%s)", quoted_names);
    else
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE "
                 "name IN (%s)", quoted_names);
    return scalar(db, sql);
}

void rec_logger(void *ud, const qb_query *q, int64_t d, int rc,
                const char *msg)
{
    rec *r = ud;
    if (r->calls < 8)
        snprintf(r->sql[r->calls], sizeof r->sql[0], "%s",
                 q ? q->sql : "(null)");
    r->calls++;
    if (rc != QB_OK)
        r->errors++;
    r->last_rc = rc;
    r->last_dur = d;
    if (d < 0)
        r->neg_dur = 1;
    if ((rc == QB_OK) != (msg == NULL))
        r->msg_ok = 0;
    r->last_q = q;
    snprintf(r->last_sql, sizeof r->last_sql, "%s", q ? q->sql : "(null)");
}

int rec_before(void *ud, const qb_query *q)
{
    rec *r = ud;
    (void)q;
    r->befores++;
    return r->veto;
}

void rec_after(void *ud, const qb_query *q, int rc, const qb_result *res,
               int64_t d)
{
    rec *r = ud;
    (void)q;
    (void)d;
    r->afters++;
    r->after_rc = rc;
    r->after_res = res;
}

void rec_init(rec *r)
{
    memset(r, 0, sizeof *r);
    r->msg_ok = 1;
}

TCase *tc(Suite *s, const char *name)
{
    TCase *t = tcase_create(name);
    tcase_set_timeout(t, TU_TCASE_TIMEOUT_S);
    suite_add_tcase(s, t);
    return t;
}

/* ==== runner ================================================================ */

static int run_suites(void)
{
    SRunner *sr = srunner_create(qb_conn_shared_suite());
    int failed;
#ifdef QB_TEST_PG
    if (g_pg)
        srunner_add_suite(sr, qb_conn_pg_suite());
    else
#endif
        srunner_add_suite(sr, qb_conn_sqlite_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

int main(void)
{
    int failed = 0;
    g_dsn = getenv("WU_PG_DSN");
    if (g_dsn != NULL && *g_dsn == '\0')
        g_dsn = NULL;
    g_pg = g_dsn != NULL;
    if (!g_pg)
        return run_suites() == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
#ifdef QB_TEST_PG
    g_restart = getenv("WU_PG_RESTART");
    if (g_restart != NULL && *g_restart == '\0')
        g_restart = NULL;
    if (g_restart == NULL)
        fprintf(stderr, "check_qb_conn: WU_PG_RESTART not set: the "
                "reconnect test is not run\n");
    if (qb_conn_pg_init() != 0)
        return EXIT_FAILURE;
    /* Everything twice: unnamed statements, then a small statement cache
     * (evictions happen) -- the two ways a statement reaches the server. */
    for (int pass = 0; pass < 2; pass++) {
        g_cache = pass == 0 ? 0 : 4;
        failed += run_suites();
    }
    qb_conn_pg_fini();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
#else
    (void)failed;
    fprintf(stderr, "check_qb_conn: WU_PG_DSN set but this build has no "
            "PostgreSQL (configure --without-postgresql): skipped\n");
    return 77;
#endif
}
