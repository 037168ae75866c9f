/*
 * qb_conn_pg.c -- the executor's PostgreSQL-only cases, a suite of
 * tests/check_qb_conn (see check_qb_conn.c), built when libpq is
 * (QB_TEST_PG): SQLSTATEs and their mapping, PostgreSQL's types, lost
 * connections, qb_reset_until and TCP settings through tests/pg/
 * pg_proxy.h, pipelines, the statement cache keyed by parameter types,
 * and workers-qb's PostgreSQL cases (238-245) run for real.
 *
 * The server is WU_PG_DSN's; WU_PG_RESTART, if set, restarts it (the
 * reconnect case runs only then).  Every test starts from an empty
 * "public" schema.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "qb_conn_test.h"
#include "pg/pg_proxy.h"

#include "qb/cases.c"

static json_t *g_cases;       /* tests/qb/cases.json, read-only */

/* ---- helpers ----------------------------------------------------------- */

/* Run trusted setup SQL (several statements allowed) on db's connection. */
static void sh(qb_conn *db, const char *sql)
{
    PGresult *res = PQexec(qb_conn_pg(db), sql);
    ExecStatusType s = PQresultStatus(res);
    ck_assert_msg(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK,
                  "setup failed: %s: %s", sql,
                  PQerrorMessage(qb_conn_pg(db)));
    PQclear(res);
}

/* qb_open on PostgreSQL whatever the conninfo looks like (cfg may be
 * NULL: the defaults). */
static int pg_open(qb_conn **out, const char *dsn, const qb_conn_config *cfg,
                   char *err, size_t errlen)
{
    qb_conn_config c;
    if (cfg != NULL)
        c = *cfg;
    else
        memset(&c, 0, sizeof c);
    c.engine = QB_ENGINE_POSTGRES;
    return qb_open(out, dsn, &c, err, errlen);
}

static qb_conn *db_connect(void)
{
    char err[256] = "";
    qb_conn_config cfg;
    qb_conn *db = NULL;
    int rc;

    memset(&cfg, 0, sizeof cfg);
    cfg.stmt_cache_size = g_cache;
    rc = pg_open(&db, g_dsn, &cfg, err, sizeof err);
    ck_assert_msg(rc == QB_OK, "connect: %s", err);
    ck_assert_ptr_nonnull(db);
    return db;
}

/* A connection on an empty public schema, plus schema (may be NULL). */
static qb_conn *db_fresh(const char *schema)
{
    qb_conn *db = db_connect();
    sh(db, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
    if (schema != NULL)
        sh(db, schema);
    return db;
}

/* Raw PostgreSQL-dialect query; `?` become $N. */
static qb_query *raw(const char *sql, size_t n, const qb_value *v,
                     qb_fetch f)
{
    qb_query *q = NULL;
    ck_assert_int_eq(qb_query_raw_dialect(&q, QB_DIALECT_POSTGRES, sql, n, v,
                                          f), QB_OK);
    return q;
}

static qb_insert *pg_ins(const char *table)
{
    qb_insert *ins = qb_insert_new(table);
    ck_assert_ptr_nonnull(ins);
    qb_insert_dialect(ins, QB_DIALECT_POSTGRES);
    return ins;
}

/* ---- connection -------------------------------------------------------- */

START_TEST(test_open_bad_host)
{
    char err[256] = "";
    qb_conn *db = (qb_conn *)1;
    int rc = pg_open(&db, "host=/nonexistent/wu-pg dbname=x "
                        "connect_timeout=2", NULL, err, sizeof err);
    ck_assert_int_eq(rc, QB_ECONN);
    ck_assert_ptr_null(db);
    ck_assert_msg(err[0] != '\0', "no message");
    ck_assert_str_eq(qb_strerror(QB_ECONN),
                     "connection to the database lost: reset and retry");
    ck_assert_str_eq(qb_strerror(QB_EBUSY), qb_strerror(QB_EBUSY));
}
END_TEST

typedef struct lit_case {
    const char *sql;    /* run with the one value 7 */
    const char *want;   /* row 0's columns joined with '|' */
} lit_case;

static const lit_case lit_cases[] = {
    { "SELECT E'it''s ?\\'' , $$ ? $$, $t$ ? $t$, ?",
      "it's ?'| ? | ? |7" },
    { "SELECT e'\\'?', $fn$ a $$ ? $$ 'b $fn$, ?::int + 1",
      "'?| a $$ ? $$ 'b |8" },
    { "SELECT $$a  b$$, E'x\\'  y' ,  ?::text", "a  b|x'  y|7" },
    { "SELECT /* a /* ? */ ? */ ? -- what?\n, '?' AS \"c?\"", "7|?" },
    { "SELECT (ARRAY[10, 20])[?::int - 6], 'a\\', 'x'", "10|a\\|x" },
};
#define NLIT (sizeof lit_cases / sizeof lit_cases[0])

START_TEST(test_raw_literals)
{
    const lit_case *c = &lit_cases[_i];
    qb_conn *db = db_fresh(NULL);
    qb_query *q = raw(c->sql, 1, QB_VALS(qb_int(7)), QB_FETCH_ALL);
    qb_result *r = run_ok(db, q);
    char got[256];
    size_t off = 0;

    ck_assert_uint_eq(qb_result_rows(r), 1);
    got[0] = '\0';
    for (size_t i = 0; i < qb_result_cols(r); i++) {
        const char *t = qb_result_text(r, 0, i, NULL);
        char num[32];
        if (qb_result_type(r, 0, i) == QB_V_INT) {
            snprintf(num, sizeof num, "%lld",
                     (long long)qb_result_int(r, 0, i));
            t = num;
        }
        off += (size_t)snprintf(got + off, sizeof got - off, "%s%s",
                                i ? "|" : "", t ? t : "-");
        ck_assert_uint_lt(off, sizeof got);
    }
    ck_assert_msg(strcmp(got, c->want) == 0, "%s\n  sent %s\n  got  %s",
                  c->sql, qb_query_sql(q), got);
    qb_result_free(r);
    qb_query_free(q);
    qb_close(db);
}
END_TEST

/* ---- types --------------------------------------------------------------- */

START_TEST(test_typed_results)
{
    qb_conn *db = db_fresh(NULL);
    qb_query *q = raw("SELECT 1::int2 AS a, 2::int4 AS b, "
                      "9223372036854775807::int8 AS c, 1.5::float4 AS d, "
                      "2.25::float8 AS e, true AS f, false AS g, "
                      "'txt'::text AS h, '\\x00ff41'::bytea AS i, "
                      "NULL::int AS j, 12.345678901234567890::numeric AS k, "
                      "'Infinity'::float8 AS l, 'NaN'::float8 AS m, "
                      "'2024-01-02 03:04:05'::timestamp AS n, "
                      "'{\"a\":1}'::jsonb AS o, ''::bytea AS p, "
                      "''::text AS q", 0, NULL, QB_FETCH_ONE);
    qb_result *r = run_ok(db, q);
    size_t len = 99;
    const unsigned char *b;

    ck_assert_uint_eq(qb_result_cols(r), 17);
    ck_assert_str_eq(qb_result_colname(r, 0), "a");
    ck_assert_ptr_null(qb_result_colname(r, 17));
    ck_assert_uint_eq(qb_result_coltype(r, 2), 20);
    ck_assert_int_eq(qb_result_type_by(r, 0, "a"), QB_V_INT);
    ck_assert_int_eq(qb_result_int_by(r, 0, "a"), 1);
    ck_assert_int_eq(qb_result_int_by(r, 0, "b"), 2);
    ck_assert(qb_result_int_by(r, 0, "c") == INT64_MAX);
    ck_assert_int_eq(qb_result_type_by(r, 0, "d"), QB_V_REAL);
    ck_assert_double_eq(qb_result_real_by(r, 0, "d"), 1.5);
    ck_assert_double_eq(qb_result_real_by(r, 0, "e"), 2.25);
    ck_assert_int_eq(qb_result_int_by(r, 0, "e"), 2);
    ck_assert_int_eq(qb_result_type_by(r, 0, "f"), QB_V_BOOL);
    ck_assert_int_eq(qb_result_int_by(r, 0, "f"), 1);
    ck_assert_int_eq(qb_result_int_by(r, 0, "g"), 0);
    ck_assert_double_eq(qb_result_real_by(r, 0, "f"), 1.0);
    ck_assert_ptr_null(qb_result_text_by(r, 0, "f", NULL));
    ck_assert_int_eq(qb_result_type_by(r, 0, "h"), QB_V_TEXT);
    ck_assert_str_eq(qb_result_text_by(r, 0, "h", &len), "txt");
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(qb_result_type_by(r, 0, "i"), QB_V_BLOB);
    b = qb_result_blob_by(r, 0, "i", &len);
    ck_assert_uint_eq(len, 3);
    ck_assert(b[0] == 0 && b[1] == 0xff && b[2] == 'A');
    ck_assert_int_eq(qb_result_type_by(r, 0, "j"), QB_V_NULL);
    ck_assert(qb_result_is_null_by(r, 0, "j"));
    ck_assert_int_eq(qb_result_int_by(r, 0, "j"), 0);
    ck_assert_ptr_null(qb_result_text_by(r, 0, "j", &len));
    ck_assert_uint_eq(len, 0);
    /* numeric stays exact text; the numeric accessors parse it */
    ck_assert_int_eq(qb_result_type_by(r, 0, "k"), QB_V_TEXT);
    ck_assert_str_eq(qb_result_text_by(r, 0, "k", NULL),
                     "12.345678901234567890");
    ck_assert_int_eq(qb_result_int_by(r, 0, "k"), 12);
    ck_assert_double_eq_tol(qb_result_real_by(r, 0, "k"), 12.3456789,
                            1e-6);
    ck_assert(isinf(qb_result_real_by(r, 0, "l")));
    ck_assert(qb_result_int_by(r, 0, "l") == INT64_MAX);
    ck_assert(isnan(qb_result_real_by(r, 0, "m")));
    ck_assert_int_eq(qb_result_int_by(r, 0, "m"), 0);
    ck_assert_str_eq(qb_result_text_by(r, 0, "n", NULL),
                     "2024-01-02 03:04:05");
    ck_assert_str_eq(qb_result_text_by(r, 0, "o", NULL), "{\"a\": 1}");
    ck_assert_ptr_nonnull(qb_result_blob_by(r, 0, "p", &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(qb_result_text_by(r, 0, "q", &len), "");
    /* out of range and unknown names read as NULL cells */
    ck_assert_int_eq(qb_result_type(r, 1, 0), QB_V_NULL);
    ck_assert_int_eq(qb_result_type(r, 0, 99), QB_V_NULL);
    ck_assert_int_eq(qb_result_type_by(r, 0, "nope"), QB_V_NULL);
    ck_assert_int_eq(qb_result_colindex(r, "nope"), QB_EINVAL);
    qb_result_free(r);
    qb_query_free(q);
    qb_close(db);
}
END_TEST

/* Parameter values of each type arrive intact (compared server-side and
 * read back). */
START_TEST(test_param_types)
{
    qb_conn *db = db_fresh("CREATE TABLE v (i bigint, i4 integer, r double "
                         "precision, nm numeric, b boolean, t text, "
                         "j jsonb, ts timestamp, bl bytea)");
    qb_insert *ins = pg_ins("v");
    qb_query *q = NULL;
    qb_result *r;

    qb_insert_set(ins, "i", qb_int(INT64_MIN));
    qb_insert_set(ins, "i4", qb_text("12"));   /* untyped text -> integer */
    qb_insert_set(ins, "r", qb_real(-INFINITY));
    qb_insert_set(ins, "nm", qb_real(0.1));
    qb_insert_set(ins, "b", qb_bool(1));
    qb_insert_set(ins, "t", qb_text(""));
    qb_insert_set(ins, "j", qb_text("{\"k\": [1, 2]}"));
    qb_insert_set(ins, "ts", qb_text("2020-02-29 12:00:00"));
    qb_insert_set(ins, "bl", qb_blob("", 0));
    qb_insert_returning(ins, "*");
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    r = run_ok(db, q);
    ck_assert(qb_result_int_by(r, 0, "i") == INT64_MIN);
    ck_assert_int_eq(qb_result_int_by(r, 0, "i4"), 12);
    ck_assert(isinf(qb_result_real_by(r, 0, "r")) &&
              qb_result_real_by(r, 0, "r") < 0);
    ck_assert_str_eq(qb_result_text_by(r, 0, "nm", NULL), "0.1");
    ck_assert_int_eq(qb_result_type_by(r, 0, "b"), QB_V_BOOL);
    ck_assert_int_eq(qb_result_int_by(r, 0, "b"), 1);
    ck_assert_int_eq(qb_result_type_by(r, 0, "t"), QB_V_TEXT);
    ck_assert_str_eq(qb_result_text_by(r, 0, "t", NULL), "");
    ck_assert_str_eq(qb_result_text_by(r, 0, "j", NULL),
                     "{\"k\": [1, 2]}");
    ck_assert_str_eq(qb_result_text_by(r, 0, "ts", NULL),
                     "2020-02-29 12:00:00");
    ck_assert_int_eq(qb_result_type_by(r, 0, "bl"), QB_V_BLOB);
    qb_result_free(r);
    qb_query_free(q);
    qb_insert_free(ins);
    /* A double survives the text round trip bit for bit. */
    q = raw("SELECT ? = 0.1::float8 + 0.2::float8 AS same, ? AS back", 2,
            QB_VALS(qb_real(0.1 + 0.2), qb_real(1.0 / 3.0)), QB_FETCH_ONE);
    r = run_ok(db, q);
    ck_assert_int_eq(qb_result_int_by(r, 0, "same"), 1);
    ck_assert(qb_result_real_by(r, 0, "back") == 1.0 / 3.0);
    qb_result_free(r);
    qb_query_free(q);
    qb_close(db);
}
END_TEST

/* ---- placeholders ------------------------------------------------------ */

typedef struct ph_case {
    const char *sql;   /* executed with `n` integer params 1..n */
    size_t n;
    int rc;            /* QB_OK or QB_EINVAL (count mismatch) */
} ph_case;

static const ph_case ph_cases[] = {
    { "SELECT $1::int + $2::int", 2, QB_OK },
    { "SELECT '$3'::text, $1::int", 1, QB_OK },
    { "SELECT E'\\'$4', $1::int", 1, QB_OK },
    { "SELECT \"x$2\".a FROM (SELECT $1::int AS a) AS \"x$2\"", 1, QB_OK },
    { "SELECT $$ $7 $$, $1::int", 1, QB_OK },
    { "SELECT $q$ it's $5 $q$, $1::int", 1, QB_OK },
    { "SELECT $1::int -- $9\n", 1, QB_OK },
    { "SELECT /* $2 /* $3 */ $4 */ $1::int", 1, QB_OK },
    { "SELECT 1 AS a$1", 0, QB_OK },
    { "SELECT $1::int, $1::int + 1", 1, QB_OK },
    { "SELECT $2::int", 1, QB_EINVAL },
    { "SELECT $1::int", 2, QB_EINVAL },
    { "SELECT 1", 1, QB_EINVAL },
    { "SELECT $70000::int", 1, QB_EINVAL },
};
#define NPH (sizeof ph_cases / sizeof ph_cases[0])

START_TEST(test_placeholder_count)
{
    const ph_case *c = &ph_cases[_i];
    qb_conn *db = db_fresh(NULL);
    qb_value v[2] = { qb_int(1), qb_int(2) };
    qb_query *q = NULL;
    int rc;

    /* qb_query_raw renders for SQLite; make it a PG query by hand so the
     * SQL reaches the executor exactly as written. */
    ck_assert_int_eq(qb_query_raw(&q, c->sql, c->n, v, QB_FETCH_ALL), QB_OK);
    q->dialect = QB_DIALECT_POSTGRES;
    rc = qb_exec(db, q, NULL);
    ck_assert_msg(rc == c->rc, "%s: rc %d (%s)", c->sql, rc,
                  qb_errmsg(db));
    if (rc == QB_EINVAL)
        ck_assert_ptr_nonnull(strstr(qb_errmsg(db), "placeholder"));
    qb_query_free(q);
    qb_close(db);
}
END_TEST

/* ---- dialect ----------------------------------------------------------- */

/* ---- errors ------------------------------------------------------------ */

typedef struct err_case {
    const char *sql;
    int rc;
    const char *state;
} err_case;

static const err_case err_cases[] = {
    { "SELEC 1", QB_ESQL, "42601" },
    { "SELECT * FROM no_such_table", QB_ESQL, "42P01" },
    { "INSERT INTO u (id, name) VALUES (1, 'again')", QB_ECONSTRAINT,
      "23505" },
    { "INSERT INTO u (id, name) VALUES (2, NULL)", QB_ECONSTRAINT, "23502" },
    { "INSERT INTO u (id, name, n) VALUES (3, 'x', -1)", QB_ECONSTRAINT,
      "23514" },
    { "INSERT INTO c (uid) VALUES (77)", QB_ECONSTRAINT, "23503" },
    { "SELECT 1/0", QB_ESQL, "22012" },
    { "SELECT 1; SELECT 2", QB_ESQL, "42601" },
    { "SELECT pg_sleep(2)", QB_EINTERRUPT, "57014" },
};
#define NERR (sizeof err_cases / sizeof err_cases[0])

START_TEST(test_errors)
{
    const err_case *c = &err_cases[_i];
    qb_conn *db = db_fresh("CREATE TABLE u (id integer PRIMARY KEY, "
                         "name text NOT NULL, n integer CHECK (n >= 0));"
                         "INSERT INTO u VALUES (1, 'one', 1);"
                         "CREATE TABLE c (uid integer REFERENCES u(id));"
                         "SET statement_timeout = '100ms'");
    qb_query *q = raw(c->sql, 0, NULL, QB_FETCH_ALL);
    qb_result *r = (qb_result *)1;
    int rc = qb_exec(db, q, &r);

    ck_assert_msg(rc == c->rc, "%s: rc %d (%s)", c->sql, rc,
                  qb_errmsg(db));
    ck_assert_ptr_null(r);
    ck_assert_str_eq(qb_sqlstate(db), c->state);
    ck_assert_msg(strlen(qb_errmsg(db)) > 0, "empty message");
    /* The connection stays usable. */
    ck_assert_int_eq(qb_connected(db), 1);
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM u"), 1);
    qb_query_free(q);
    qb_close(db);
}
END_TEST

/* 40001 and 55P03 come out as QB_EBUSY: a second connection makes them
 * deterministically (no timing involved). */
START_TEST(test_busy_mapping)
{
    qb_conn *a = db_fresh("CREATE TABLE acc (id integer PRIMARY KEY, "
                        "bal integer); INSERT INTO acc VALUES (1, 10)");
    qb_conn *b = db_connect();
    qb_query *upd = raw("UPDATE acc SET bal = bal + ? WHERE id = 1", 1,
                        QB_VALS(qb_int(1)), QB_FETCH_NONE);
    qb_query *nowait = raw("SELECT bal FROM acc WHERE id = 1 FOR UPDATE "
                           "NOWAIT", 0, NULL, QB_FETCH_ALL);

    /* serialization_failure: A's snapshot predates B's committed update */
    sh(a, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT bal FROM acc");
    ck_assert_int_eq(qb_exec(b, upd, NULL), QB_OK);
    ck_assert_int_eq(qb_exec(a, upd, NULL), QB_EBUSY);
    ck_assert_str_eq(qb_sqlstate(a), "40001");
    ck_assert_int_eq(qb_in_transaction(a), 1);  /* aborted, still open */
    ck_assert_int_eq(qb_rollback(a), QB_OK);
    ck_assert_int_eq(qb_exec(a, upd, NULL), QB_OK); /* retry works */

    /* lock_not_available */
    ck_assert_int_eq(qb_begin(a), QB_OK);
    ck_assert_int_eq(qb_exec(a, nowait, NULL), QB_OK);
    ck_assert_int_eq(qb_exec(b, nowait, NULL), QB_EBUSY);
    ck_assert_str_eq(qb_sqlstate(b), "55P03");
    ck_assert_int_eq(qb_commit(a), QB_OK);
    ck_assert_int_eq(qb_exec(b, nowait, NULL), QB_OK);
    ck_assert_int_eq(scalar(a, "SELECT bal FROM acc"), 12);
    qb_query_free(upd);
    qb_query_free(nowait);
    qb_close(b);
    qb_close(a);
}
END_TEST

/* 40P01: A holds row 1 and waits (asynchronously) for row 2; B holds row 2
 * and asks for row 1.  B's deadlock_timeout is the short one, so B is the
 * one that detects the cycle and is cancelled, deterministically. */
START_TEST(test_deadlock_mapping)
{
    qb_conn *a = db_fresh("CREATE TABLE r (id integer PRIMARY KEY, v integer);"
                        "INSERT INTO r VALUES (1, 0), (2, 0)");
    qb_conn *b = db_connect();
    qb_query *lock1 = raw("UPDATE r SET v = v + 1 WHERE id = ?", 1,
                          QB_VALS(qb_int(1)), QB_FETCH_NONE);
    qb_query *lock2 = raw("UPDATE r SET v = v + 1 WHERE id = ?", 1,
                          QB_VALS(qb_int(2)), QB_FETCH_NONE);
    PGconn *ca = qb_conn_pg(a);
    PGresult *res;

    sh(a, "SET deadlock_timeout = '30s'");
    sh(b, "SET deadlock_timeout = '100ms'");
    ck_assert_int_eq(qb_begin(a), QB_OK);
    ck_assert_int_eq(qb_exec(a, lock1, NULL), QB_OK);
    ck_assert_int_eq(qb_begin(b), QB_OK);
    ck_assert_int_eq(qb_exec(b, lock2, NULL), QB_OK);
    ck_assert_int_eq(PQsendQuery(ca, "UPDATE r SET v = v + 1 WHERE id = 2"),
                     1);
    /* B blocks until its deadlock check runs, then fails. */
    ck_assert_int_eq(qb_exec(b, lock1, NULL), QB_EBUSY);
    ck_assert_str_eq(qb_sqlstate(b), "40P01");
    ck_assert_int_eq(qb_rollback(b), QB_OK);
    /* A's update goes through once B is gone. */
    res = PQgetResult(ca);
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    while ((res = PQgetResult(ca)) != NULL)
        PQclear(res);
    ck_assert_int_eq(qb_commit(a), QB_OK);
    ck_assert_int_eq(scalar(a, "SELECT sum(v) FROM r"), 2);
    qb_query_free(lock1);
    qb_query_free(lock2);
    qb_close(b);
    qb_close(a);
}
END_TEST

/* ---- transactions ------------------------------------------------------ */

/* Pipeline: many statements answered together inside the caller's
 * transaction; the first failure is reported with its index and stops
 * the rest. */
START_TEST(test_pipeline)
{
    qb_conn *db = db_fresh("CREATE TABLE t (id integer PRIMARY KEY)");
    const qb_query *qs[150];
    qb_query *own[150], *bulk = NULL, *dup;
    qb_insert *ins = qb_insert_new("t");
    size_t at = 99;
    int i;

    for (i = 0; i < 150; i++) {
        own[i] = raw("INSERT INTO t VALUES (?)", 1, QB_VALS(qb_int(i)),
                     QB_FETCH_NONE);
        qs[i] = own[i];
    }
    /* Outside a transaction: refused, nothing sent. */
    ck_assert_int_eq(qb_pipeline(db, qs, 3, &at), QB_EMISUSE);
    ck_assert_uint_eq(at, 3);
    /* 150 statements: three Syncs (64 + 64 + 22). */
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 150, &at), QB_OK);
    ck_assert_uint_eq(at, 150);
    ck_assert_int_eq(qb_commit(db), QB_OK);
    ck_assert_str_eq(query_ids(db, "SELECT count(*) FROM t"), "150");

    /* A chain (bulk insert) runs link by link. */
    qb_insert_dialect(ins, QB_DIALECT_POSTGRES);
    qb_insert_set(ins, "id", qb_int(1000));
    ck_assert_int_eq(qb_insert_build(ins, &bulk), QB_OK);
    qs[0] = bulk;
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 1, &at), QB_OK);
    ck_assert_int_eq(qb_commit(db), QB_OK);
    ck_assert_str_eq(query_ids(db, "SELECT count(*) FROM t"), "151");

    /* Failure at index 70 (second chunk): reported there, the rest not
     * run, the transaction aborted. */
    sh(db, "DELETE FROM t");
    dup = raw("INSERT INTO t VALUES (0)", 0, NULL, QB_FETCH_NONE);
    for (i = 0; i < 150; i++)
        qs[i] = own[i];
    qs[70] = dup;
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 150, &at), QB_ECONSTRAINT);
    ck_assert_uint_eq(at, 70);
    ck_assert_str_eq(qb_sqlstate(db), "23505");
    ck_assert_ptr_nonnull(strstr(qb_errmsg(db), "pipeline query 70"));
    ck_assert_int_eq(qb_in_transaction(db), 1);
    ck_assert_int_eq(qb_rollback(db), QB_OK);
    ck_assert_str_eq(query_ids(db, "SELECT count(*) FROM t"), "0");
    /* The connection is usable afterwards, in and out of pipelines. */
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 70, &at), QB_OK);
    ck_assert_int_eq(qb_commit(db), QB_OK);
    ck_assert_str_eq(query_ids(db, "SELECT count(*) FROM t"), "70");
    ck_assert_int_eq(qb_pipeline(db, NULL, 0, NULL), QB_OK);
    ck_assert_int_eq(qb_pipeline(NULL, qs, 1, NULL), QB_EINVAL);

    for (i = 0; i < 150; i++)
        qb_query_free(own[i]);
    qb_query_free(dup);
    qb_query_free(bulk);
    qb_insert_free(ins);
    qb_close(db);
}
END_TEST

/* The session dies in the middle of a pipeline: QB_ECONN; after
 * qb_reset the connection runs pipelines again. */
START_TEST(test_pipeline_conn_lost)
{
    qb_conn *db = db_fresh("CREATE TABLE t (id integer PRIMARY KEY)");
    qb_query *a = raw("INSERT INTO t VALUES (1)", 0, NULL, QB_FETCH_NONE);
    qb_query *kill = raw("SELECT pg_terminate_backend(pg_backend_pid())", 0,
                         NULL, QB_FETCH_NONE);
    qb_query *b = raw("INSERT INTO t VALUES (2)", 0, NULL, QB_FETCH_NONE);
    const qb_query *qs[3] = { a, kill, b };
    size_t at = 99;

    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 3, &at), QB_ECONN);
    ck_assert_uint_eq(at, 1);
    ck_assert_int_eq(qb_reset(db), QB_OK);
    ck_assert_int_eq(qb_in_transaction(db), 0);
    qs[1] = b;
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 2, &at), QB_OK);
    ck_assert_int_eq(qb_commit(db), QB_OK);
    ck_assert_str_eq(query_ids(db, "SELECT id FROM t ORDER BY id"), "1,2");
    qb_query_free(a);
    qb_query_free(kill);
    qb_query_free(b);
    qb_close(db);
}
END_TEST

/* ---- logger and hooks -------------------------------------------------- */

typedef struct obs_log {
    int calls, errors;
    int last_rc;
    char sql[8][256];
} obs_log;

static void log_fn(void *ud, const qb_query *q, int64_t ns, int rc,
                   const char *errmsg)
{
    obs_log *l = ud;
    ck_assert(ns >= 0);
    if (l->calls < 8)
        snprintf(l->sql[l->calls], sizeof l->sql[0], "%s", qb_query_sql(q));
    l->calls++;
    l->last_rc = rc;
    if (rc != QB_OK) {
        ck_assert_ptr_nonnull(errmsg);
        l->errors++;
    } else {
        ck_assert_ptr_null(errmsg);
    }
}

/* ---- migrations -------------------------------------------------------- */

/* A $N left in a migration (the server: 42P02 "there is no parameter")
 * is refused the way qb_exec refuses a count mismatch: QB_EINVAL with
 * the same message, naming the file and the statement, the migration
 * rolled back.  A $N that belongs to the SQL (an SQL-standard function
 * body, BEGIN ATOMIC, PREPARE) or sits in a literal or comment runs. */
typedef struct stray_case {
    const char *sql;    /* the second migration's script */
    const char *stmt;   /* the statement named, as qb_exec gets it */
    const char *where;  /* "statement K at line L" */
} stray_case;

static const stray_case stray_cases[] = {
    { "CREATE TABLE m1 (a int);\n-- $9 in a comment\n"
      "INSERT INTO m1 VALUES (length('$8' || $$ $7 $$ || E'\\'$6'));\n"
      "CREATE FUNCTION addx(integer, integer) RETURNS integer\n"
      "  LANGUAGE SQL IMMUTABLE RETURN $1 + $2;\n"
      "INSERT INTO m1\n  VALUES ($1);\nCREATE TABLE m3 (a int);",
      "INSERT INTO m1 VALUES ($1)", "statement 4 at line 6" },
    /* ';' inside BEGIN ATOMIC ... END and CASE ... END does not split */
    { "CREATE FUNCTION f3(int) RETURNS int LANGUAGE sql\n"
      "BEGIN ATOMIC SELECT 1; SELECT CASE WHEN $1 > 0 THEN 1 END; END;;\n"
      "PREPARE p3(int) AS SELECT $1;\n"
      "SELECT $3::int, $1::int",
      "SELECT $3::int, $1::int", "statement 3 at line 4" },
};
#define NSTRAY (sizeof stray_cases / sizeof stray_cases[0])

START_TEST(test_migrations_stray_placeholder)
{
    const stray_case *c = &stray_cases[_i];
    qb_conn *db = db_fresh(NULL);
    const qb_migration m[3] = {
        { "0001_ok.sql", "CREATE TABLE m0 (a int);" },
        { "0002_bad.sql", c->sql },
        { "0003_after.sql", "CREATE TABLE m2 (a int);" },
    };
    size_t applied = 9, failed = 9;
    char exec_msg[256], want[512];
    qb_query *q = NULL;

    /* what qb_exec says about that statement, sent as written */
    ck_assert_int_eq(qb_query_raw(&q, c->stmt, 0, NULL, QB_FETCH_NONE),
                     QB_OK);
    q->dialect = QB_DIALECT_POSTGRES;
    ck_assert_int_eq(qb_exec(db, q, NULL), QB_EINVAL);
    snprintf(exec_msg, sizeof exec_msg, "%s", qb_errmsg(db));
    ck_assert_ptr_nonnull(strstr(exec_msg, "parameter count mismatch"));
    qb_query_free(q);

    ck_assert_int_eq(qb_migrations_apply(db, NULL, m, 3, &applied,
                                            &failed), QB_EINVAL);
    ck_assert_uint_eq(applied, 1);
    ck_assert_uint_eq(failed, 1);
    snprintf(want, sizeof want, "migration '0002_bad.sql': %s (%s): %s",
             c->where, c->stmt, exec_msg);
    ck_assert_str_eq(qb_errmsg(db), want);
    ck_assert_int_eq(qb_in_transaction(db), 0);
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM pg_tables WHERE "
                     "schemaname = 'public' AND tablename LIKE 'm_'"), 1);
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM pg_proc WHERE "
                     "proname IN ('addx', 'f3')"), 0);
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM migrations"), 1);
    qb_close(db);
}
END_TEST

/* ... and the same placeholders where they are the SQL's own apply. */
START_TEST(test_migrations_own_params_run)
{
    qb_conn *db = db_fresh(NULL);
    const qb_migration m[1] = {
        { "0001_fn.sql",
          "CREATE FUNCTION addx(integer, integer) RETURNS integer\n"
          "  LANGUAGE SQL IMMUTABLE RETURN $1 + $2;\n"
          "CREATE FUNCTION f3(int) RETURNS int LANGUAGE sql\n"
          "BEGIN ATOMIC SELECT CASE WHEN $1 > 0 THEN $1 + 1 END; END;\n"
          "CREATE FUNCTION f4(int) RETURNS int LANGUAGE plpgsql AS $b$\n"
          "BEGIN RETURN $1 * 2; END $b$;\n"
          "SELECT '?' AS q, $$ $1 $$ AS r;" },
    };
    size_t applied = 9;

    ck_assert_int_eq(qb_migrations_apply(db, NULL, m, 1, &applied, NULL),
                     QB_OK);
    ck_assert_uint_eq(applied, 1);
    ck_assert_int_eq(scalar(db, "SELECT addx(1, 2) + f3(5) + f4(7)"), 23);
    qb_close(db);
}
END_TEST

/* ---- workers-qb's PostgreSQL cases (238-245), run for real ----------- */

static const case_entry *case_of(int id)
{
    for (size_t i = 0; i < NCASES; i++)
        if (case_table[i].id == id)
            return &case_table[i];
    return NULL;
}

static json_t *json_case(int id)
{
    size_t i;
    json_t *c;
    json_array_foreach(g_cases, i, c)
        if (json_integer_value(json_object_get(c, "id")) == id)
            return c;
    return NULL;
}

/* The SQL the case builds is the SQL workers-qb 1.14.0 sent. */
static void check_case_sql(int id, const char *sql)
{
    json_t *c = json_case(id), *s;
    const char *want;
    size_t i;

    ck_assert_ptr_nonnull(c);
    want = json_string_value(json_object_get(c, "sql"));
    if (want != NULL)
        ck_assert_str_eq(sql, want);
    json_array_foreach(json_object_get(c, "sql_contains"), i, s)
        ck_assert_msg(strstr(sql, json_string_value(s)) != NULL,
                      "case %d: '%s' not in '%s'", id, json_string_value(s),
                      sql);
}

static const char case_schema[] =
    "CREATE TABLE users (id integer PRIMARY KEY, name text, status text, "
    "  active boolean);"
    "INSERT INTO users VALUES (42, 'Bob', 'active', true),"
    "  (43, 'Cy', 'inactive', true), (44, 'Di', 'active', false)";

static const int pg_case_ids[] = { 238, 239, 240, 241, 242, 243, 244, 245 };
/* Rows (first column) each SELECT/UPDATE case returns on case_schema. */
static const char *const pg_case_want[] = {
    "42", "42", "", "42", "42,43,44", "", "", ""
};

START_TEST(test_pg_cases)
{
    int id = pg_case_ids[_i];
    const case_entry *ce = case_of(id);
    qb_conn *db = db_fresh(case_schema);
    case_out o;
    qb_result *r;

    ck_assert_ptr_nonnull(ce);
    memset(&o, 0, sizeof o);
    ce->fn(&o);
    ck_assert_int_eq(o.rc, QB_OK);
    if (o.q != NULL) {
        ck_assert_int_eq(o.q->dialect, QB_DIALECT_POSTGRES);
        check_case_sql(id, qb_query_sql(o.q));
        if (id == 243) {
            /* the migrations table: drop users first, the statement must
             * work on a fresh database and be idempotent */
            qb_result_free(run_ok(db, o.q));
            qb_result_free(run_ok(db, o.q));
            ck_assert_int_eq(scalar(db, "SELECT count(*) FROM migrations"),
                             0);
        } else {
            r = run_ok(db, o.q);
            if (id == 240) {
                ck_assert_int_eq(qb_result_changes(r), 1);
                ck_assert_str_eq(query_ids(db, "SELECT name FROM users "
                                           "WHERE id = 42"), "Alice");
            } else {
                ck_assert_str_eq(ids(r), pg_case_want[_i]);
            }
            qb_result_free(r);
        }
    } else {
        /* 244/245: the six statements of PGQB's apply().  Run them in
         * order, except the migration text itself: the extended protocol
         * takes one statement, so it goes through the migration runner,
         * which sends it as workers-qb does (no parameters). */
        const char *mig_sql = qb_query_sql(o.hist[3]);
        qb_migration m = { "0001_create_users_table.sql", mig_sql };
        obs_log l;
        size_t applied = 0;

        ck_assert_uint_eq(o.nhist, 6);
        sh(db, "DROP TABLE users");
        for (size_t i = 0; i < 6; i++) {
            if (i == 3 && id == 245) {
                ck_assert_int_eq(qb_exec(db, o.hist[i], NULL), QB_ESQL);
                ck_assert_str_eq(qb_sqlstate(db), "42601");
                ck_assert_int_eq(qb_rollback(db), QB_OK);
                ck_assert_int_eq(qb_begin(db), QB_OK);
                sh(db, mig_sql);
                continue;
            }
            ck_assert_msg(qb_exec(db, o.hist[i], NULL) == QB_OK,
                          "case %d statement %zu: %s", id, i,
                          qb_errmsg(db));
        }
        ck_assert_int_eq(scalar(db, "SELECT count(*) FROM migrations"), 1);
        ck_assert_int_eq(scalar(db, "SELECT count(*) FROM users"), 0);
        /* The runner does the same and logs PGQB's first statements. */
        sh(db, "DROP TABLE migrations; DROP TABLE users CASCADE");
        memset(&l, 0, sizeof l);
        qb_set_logger(db, log_fn, &l);
        ck_assert_int_eq(qb_migrations_apply(db, NULL, &m, 1, &applied,
                                                NULL), QB_OK);
        ck_assert_uint_eq(applied, 1);
        ck_assert_str_eq(l.sql[0], qb_query_sql(o.hist[0]));
        ck_assert_str_eq(l.sql[1], qb_query_sql(o.hist[1]));
        ck_assert_str_eq(l.sql[2], mig_sql);
        ck_assert_int_eq(scalar(db, "SELECT count(*) FROM migrations WHERE "
                         "name = '0001_create_users_table.sql'"), 1);
        for (size_t i = 0; i < o.nhist; i++)
            qb_query_free(o.hist[i]);
    }
    qb_query_free(o.q);
    free(o.errmsg);
    free(o.text);
    qb_close(db);
}
END_TEST

/* ---- reconnect --------------------------------------------------------- */

/* pg_ctl restart between two queries: the first query after it fails with
 * QB_ECONN, qb_reset reconnects, the next query succeeds. */
START_TEST(test_reconnect)
{
    qb_conn *db = db_fresh("CREATE TABLE t (id integer)");
    qb_query *ins = raw("INSERT INTO t VALUES (?)", 1, QB_VALS(qb_int(1)),
                        QB_FETCH_NONE);
    int rc, st;

    ck_assert_int_eq(qb_exec(db, ins, NULL), QB_OK);
    st = system(g_restart);
    ck_assert_msg(st == 0, "restart command failed: %s", g_restart);
    rc = qb_exec(db, ins, NULL);
    ck_assert_msg(rc == QB_ECONN, "rc %d (%s) [%s]", rc, qb_errmsg(db),
                  qb_sqlstate(db));
    ck_assert_int_eq(qb_connected(db), 0);
    /* Still down: the same code again, no crash. */
    ck_assert_int_eq(qb_exec(db, ins, NULL), QB_ECONN);
    ck_assert_int_eq(qb_reset(db), QB_OK);
    ck_assert_int_eq(qb_connected(db), 1);
    ck_assert_int_eq(qb_exec(db, ins, NULL), QB_OK);
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM t"), 2);
    qb_query_free(ins);
    qb_close(db);
}
END_TEST

static int stop_at(void *arg)
{
    return tu_now_ms() >= *(const int64_t *)arg;
}

/* A server that accepts and never answers: qb_reset_until gives up at
 * its bound or when told to stop, not at libpq's connect_timeout (10 s
 * here), and the handle works again once the server does. */
START_TEST(test_reset_until_hung_server)
{
    char dsn[1200], err[256] = "";
    qb_conn_config cfg;
    qb_conn *db = NULL;
    tu_proxy *px = pg_proxy(g_dsn, dsn, sizeof dsn);
    qb_query *sel = raw("SELECT 1", 0, NULL, QB_FETCH_ONE);
    int64_t t0, dt, stop;

    memset(&cfg, 0, sizeof cfg);
    cfg.stmt_cache_size = g_cache;
    ck_assert_msg(pg_open(&db, dsn, &cfg, err, sizeof err) == QB_OK, "%s",
                  err);
    ck_assert_int_eq(qb_exec(db, sel, NULL), QB_OK);
    tu_proxy_hang(px, 1);
    tu_proxy_cut(px);
    ck_assert_int_eq(qb_exec(db, sel, NULL), QB_ECONN);

    t0 = tu_now_ms();
    ck_assert_int_eq(qb_reset_until(db, 300, NULL, NULL), QB_ECONN);
    dt = tu_now_ms() - t0;
    ck_assert_msg(dt >= 290 && dt < 2000, "gave up after %lld ms",
                  (long long)dt);
    ck_assert_msg(strstr(qb_errmsg(db), "timed out") != NULL, "%s",
                  qb_errmsg(db));
    ck_assert_int_eq(qb_connected(db), 0);
    ck_assert_int_eq(qb_exec(db, sel, NULL), QB_ECONN);

    t0 = tu_now_ms();
    stop = t0 + 200;
    ck_assert_int_eq(qb_reset_until(db, 60000, stop_at, &stop),
                     QB_ECONN);
    dt = tu_now_ms() - t0;
    ck_assert_msg(dt >= 190 && dt < 2000, "stopped after %lld ms",
                  (long long)dt);
    ck_assert_msg(strstr(qb_errmsg(db), "stopped") != NULL, "%s",
                  qb_errmsg(db));
    ck_assert_int_eq(qb_reset_until(db, 0, NULL, NULL), QB_EINVAL);
    ck_assert_int_eq(qb_reset_until(NULL, 10, NULL, NULL), QB_EINVAL);

    tu_proxy_hang(px, 0);
    ck_assert_msg(qb_reset_until(db, 5000, NULL, NULL) == QB_OK, "%s",
                  qb_errmsg(db));
    ck_assert_int_eq(qb_connected(db), 1);
    ck_assert_int_eq(qb_exec(db, sel, NULL), QB_OK);
    qb_query_free(sel);
    qb_close(db);
    tu_proxy_stop(px);
}
END_TEST

static const char *conn_opt(qb_conn *db, const char *key, char *out, size_t n)
{
    PQconninfoOption *o = PQconninfo(qb_conn_pg(db));
    ck_assert_ptr_nonnull(o);
    out[0] = '\0';
    for (PQconninfoOption *i = o; i->keyword != NULL; i++)
        if (strcmp(i->keyword, key) == 0 && i->val != NULL)
            snprintf(out, n, "%s", i->val);
    PQconninfoFree(o);
    return out;
}

/* TCP sessions get keepalives and tcp_user_timeout (= connect timeout)
 * unless the connection string says otherwise. */
START_TEST(test_tcp_settings)
{
    char dsn[1200], dsn2[1300], err[256] = "", v[32];
    qb_conn_config cfg;
    qb_conn *db = NULL;
    tu_proxy *px = pg_proxy(g_dsn, dsn, sizeof dsn);

    memset(&cfg, 0, sizeof cfg);
    cfg.connect_timeout_s = 7;
    ck_assert_msg(pg_open(&db, dsn, &cfg, err, sizeof err) == QB_OK, "%s",
                  err);
    ck_assert_str_eq(conn_opt(db, "tcp_user_timeout", v, sizeof v), "7000");
    ck_assert_str_eq(conn_opt(db, "keepalives_idle", v, sizeof v), "10");
    ck_assert_str_eq(conn_opt(db, "keepalives_interval", v, sizeof v), "3");
    ck_assert_str_eq(conn_opt(db, "keepalives_count", v, sizeof v), "3");
    qb_close(db);
    snprintf(dsn2, sizeof dsn2, "%s tcp_user_timeout=1234 keepalives_idle=60",
             dsn);
    ck_assert_msg(pg_open(&db, dsn2, &cfg, err, sizeof err) == QB_OK, "%s",
                  err);
    ck_assert_str_eq(conn_opt(db, "tcp_user_timeout", v, sizeof v), "1234");
    ck_assert_str_eq(conn_opt(db, "keepalives_idle", v, sizeof v), "60");
    qb_close(db);
    tu_proxy_stop(px);
}
END_TEST

/* A connect_timeout in the connection string bounds qb_reset_until
 * too (as it bounds libpq's blocking connect). */
START_TEST(test_conninfo_connect_timeout)
{
    char dsn[1200], dsn2[1300], err[256] = "";
    qb_conn *db = NULL;
    tu_proxy *px = pg_proxy(g_dsn, dsn, sizeof dsn);
    int64_t t0, dt;

    snprintf(dsn2, sizeof dsn2, "%s connect_timeout=2", dsn);
    ck_assert_msg(pg_open(&db, dsn2, NULL, err, sizeof err) == QB_OK, "%s",
                  err);
    tu_proxy_hang(px, 1);
    tu_proxy_cut(px);
    t0 = tu_now_ms();
    ck_assert_int_eq(qb_reset_until(db, 60000, NULL, NULL), QB_ECONN);
    dt = tu_now_ms() - t0;
    ck_assert_msg(dt >= 1900 && dt < 5000, "gave up after %lld ms",
                  (long long)dt);
    qb_close(db);
    tu_proxy_stop(px);
}
END_TEST

/* ---- statement cache --------------------------------------------------- */

static qb_conn *db_cached(size_t size)
{
    char err[256] = "";
    qb_conn_config cfg;
    qb_conn *db = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.stmt_cache_size = size;
    ck_assert_msg(pg_open(&db, g_dsn, &cfg, err, sizeof err) == QB_OK,
                  "%s", err);
    sh(db, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
    return db;
}

START_TEST(test_cache_hits_evictions)
{
    qb_conn *db = db_cached(2);
    qb_cache_stats st;
    qb_query *q[3];
    qb_result *r;

    q[0] = raw("SELECT ?::int + 1", 1, QB_VALS(qb_int(1)), QB_FETCH_ONE);
    q[1] = raw("SELECT ?::int + 2", 1, QB_VALS(qb_int(1)), QB_FETCH_ONE);
    q[2] = raw("SELECT ?::int + 3", 1, QB_VALS(qb_int(1)), QB_FETCH_ONE);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(qb_exec(db, q[0], NULL), QB_OK);
    qb_conn_cache_stats(db, &st);
    ck_assert_uint_eq(st.misses, 1);
    ck_assert_uint_eq(st.hits, 2);
    ck_assert_uint_eq(st.size, 1);
    ck_assert_uint_eq(st.capacity, 2);
    /* Same SQL, another parameter type: another statement. */
    q[0]->params[0] = qb_null();
    ck_assert_int_eq(qb_exec(db, q[0], NULL), QB_OK);
    qb_conn_cache_stats(db, &st);
    ck_assert_uint_eq(st.misses, 2);
    ck_assert_uint_eq(st.evictions, 0);
    ck_assert_int_eq(qb_exec(db, q[1], NULL), QB_OK);
    ck_assert_int_eq(qb_exec(db, q[2], NULL), QB_OK);
    qb_conn_cache_stats(db, &st);
    ck_assert_uint_eq(st.evictions, 2);
    ck_assert_uint_eq(st.size, 2);
    /* Evicted statements are deallocated on the server. */
    ck_assert_int_eq(scalar(db, "SELECT count(*) FROM pg_prepared_statements"),
                     2);
    r = run_ok(db, q[2]);
    ck_assert_int_eq(qb_result_int(r, 0, 0), 4);
    qb_result_free(r);
    /* A prepare error is reported and nothing is cached. */
    {
        qb_query *bad = raw("SELEC ?", 1, QB_VALS(qb_int(1)), QB_FETCH_ONE);
        ck_assert_int_eq(qb_exec(db, bad, NULL), QB_ESQL);
        ck_assert_str_eq(qb_sqlstate(db), "42601");
        qb_query_free(bad);
    }
    qb_conn_cache_stats(db, &st);
    ck_assert_uint_eq(st.size, 2);
    for (int k = 0; k < 3; k++)
        qb_query_free(q[k]);
    qb_close(db);
}
END_TEST

/* A cached SELECT * whose table changed shape, and statements dropped
 * behind the cache's back, are prepared again transparently (outside a
 * transaction). */
START_TEST(test_cache_stale)
{
    qb_conn *db = db_cached(8);
    qb_cache_stats st;
    qb_query *q = raw("SELECT * FROM t", 0, NULL, QB_FETCH_ALL);
    qb_result *r;

    sh(db, "CREATE TABLE t (a integer); INSERT INTO t VALUES (1)");
    qb_result_free(run_ok(db, q));
    sh(db, "ALTER TABLE t ADD COLUMN b text DEFAULT 'x'");
    r = run_ok(db, q);
    ck_assert_uint_eq(qb_result_cols(r), 2);
    ck_assert_str_eq(qb_result_text_by(r, 0, "b", NULL), "x");
    qb_result_free(r);
    sh(db, "DEALLOCATE ALL");
    qb_result_free(run_ok(db, q));
    qb_conn_cache_stats(db, &st);
    ck_assert_uint_eq(st.replans, 2);
    /* Inside a transaction the refusal aborts it: reported, not retried. */
    sh(db, "ALTER TABLE t ADD COLUMN c integer");
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_exec(db, q, NULL), QB_ESQL);
    ck_assert_str_eq(qb_sqlstate(db), "0A000");
    ck_assert_int_eq(qb_rollback(db), QB_OK);
    r = run_ok(db, q);
    ck_assert_uint_eq(qb_result_cols(r), 3);
    qb_result_free(r);
    qb_query_free(q);
    qb_close(db);
}
END_TEST

/* A stale cached statement inside a pipeline: QB_EBUSY (retry the
 * transaction), the entry forgotten, the retry re-prepares. */
START_TEST(test_pipeline_stale)
{
    qb_conn *db = db_cached(8);
    qb_cache_stats st;
    qb_query *q = raw("SELECT * FROM t", 0, NULL, QB_FETCH_NONE);
    const qb_query *qs[2] = { q, q };
    size_t at;

    sh(db, "CREATE TABLE t (a integer)");
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 2, &at), QB_OK);
    ck_assert_int_eq(qb_commit(db), QB_OK);
    sh(db, "ALTER TABLE t ADD COLUMN b text");
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 2, &at), QB_EBUSY);
    ck_assert_uint_eq(at, 0);
    ck_assert_int_eq(qb_rollback(db), QB_OK);
    ck_assert_int_eq(qb_begin(db), QB_OK);
    ck_assert_int_eq(qb_pipeline(db, qs, 2, &at), QB_OK);
    ck_assert_int_eq(qb_commit(db), QB_OK);
    qb_conn_cache_stats(db, &st);
    ck_assert_uint_eq(st.replans, 1);
    qb_query_free(q);
    qb_close(db);
}
END_TEST

START_TEST(test_cache_bad_config)
{
    qb_conn_config cfg;
    qb_conn *db = (qb_conn *)1;
    char err[128] = "";
    memset(&cfg, 0, sizeof cfg);
    cfg.stmt_cache_size = 4097;
    ck_assert_int_eq(pg_open(&db, g_dsn, &cfg, err, sizeof err),
                     QB_EINVAL);
    ck_assert_ptr_null(db);
    ck_assert_str_eq(err, "stmt_cache_size out of range");
    cfg.stmt_cache_size = 0;
    cfg.connect_timeout_s = -1;
    ck_assert_int_eq(pg_open(&db, g_dsn, &cfg, err, sizeof err),
                     QB_EINVAL);
}
END_TEST

/* ---- suite ------------------------------------------------------------- */

Suite *qb_conn_pg_suite(void)
{
    Suite *s = suite_create(g_cache ? "qb_conn postgres (statement cache 4)"
                                    : "qb_conn postgres (no statement cache)");
    TCase *t;

    t = tc(s, "connection");
    tcase_add_test(t, test_open_bad_host);
    tcase_add_test(t, test_reset_until_hung_server);
    tcase_add_test(t, test_tcp_settings);
    tcase_add_test(t, test_conninfo_connect_timeout);
    t = tc(s, "statements");
    tcase_add_loop_test(t, test_raw_literals, 0, (int)NLIT);
    t = tc(s, "types");
    tcase_add_test(t, test_typed_results);
    tcase_add_test(t, test_param_types);
    tcase_add_loop_test(t, test_placeholder_count, 0, (int)NPH);
    t = tc(s, "errors");
    tcase_add_loop_test(t, test_errors, 0, (int)NERR);
    tcase_add_test(t, test_busy_mapping);
    tcase_add_test(t, test_deadlock_mapping);
    t = tc(s, "transactions");
    tcase_add_test(t, test_pipeline);
    tcase_add_test(t, test_pipeline_conn_lost);
    t = tc(s, "observers");
    t = tc(s, "migrations");
    tcase_add_loop_test(t, test_migrations_stray_placeholder, 0, (int)NSTRAY);
    tcase_add_test(t, test_migrations_own_params_run);
    t = tc(s, "workers-qb cases");
    tcase_add_loop_test(t, test_pg_cases, 0,
                        (int)(sizeof pg_case_ids / sizeof pg_case_ids[0]));
    if (g_cache == 0) {
        t = tc(s, "statement cache");
        tcase_add_test(t, test_cache_hits_evictions);
        tcase_add_test(t, test_cache_stale);
        tcase_add_test(t, test_pipeline_stale);
        tcase_add_test(t, test_cache_bad_config);
    }
    if (g_restart != NULL) {
        t = tc(s, "reconnect");
        tcase_add_test(t, test_reconnect);
    }
    return s;
}

/* ---- setup ------------------------------------------------------------- */

int pg_prepared(qb_conn *db, const char *sql)
{
    const char *v[1] = { sql };
    PGresult *res = PQexecParams(qb_conn_pg(db), "SELECT count(*) FROM "
                                 "pg_prepared_statements WHERE statement = $1",
                                 1, NULL, v, NULL, NULL, 0);
    int n;
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    n = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

void pg_script(qb_conn *db, const char *sql)
{
    sh(db, sql);
}

void pg_reset_schema(qb_conn *db)
{
    sh(db, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
}

int qb_conn_pg_init(void)
{
    json_error_t jerr;
    g_cases = json_load_file(tu_data_path("qb/cases.json"), 0, &jerr);
    if (g_cases == NULL) {
        fprintf(stderr, "check_qb_conn: cannot load cases.json: %s\n",
                jerr.text);
        return -1;
    }
    return 0;
}

void qb_conn_pg_fini(void)
{
    json_decref(g_cases);
    g_cases = NULL;
}
