/*
 * check_defer_pg.c -- lib/defer on PostgreSQL: group commit with a
 * savepoint per task, lock waits retried, the task budget, the shutdown
 * deadline, lost connections (reconnect and replay, the budget for it),
 * and a COMMIT whose answer is lost with the connection.
 *
 * The server comes from WU_PG_DSN (a libpq key=value string); without it
 * the program exits 77 (SKIP).  tests/pg/check_defer_pg.sh runs it
 * against a private server from tests/pg/pg_env.sh.  Every test works on
 * a fresh public schema.  Timings are only generous upper bounds.
 */
#define _GNU_SOURCE
#include <check.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>

#include "defer.h"
#include "defer_int.h" /* defer__fault_commit: test-only fault injection */
#include "qb.h"
#include "qb_conn.h"
#include "testutil.h"
#include "pg/pg_proxy.h"

static const char *g_dsn;
static const char *g_restart; /* WU_PG_RESTART: restarts the server */
static size_t g_cache;        /* pg.stmt_cache_size: main runs the suite
                                 without, then with prepared statements */

/* ---- helpers ------------------------------------------------------------ */

static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_log[65536];
static size_t g_log_len;

static void cap_log(void *ud, int level, const char *line)
{
    (void)ud;
    pthread_mutex_lock(&g_log_mu);
    if (g_log_len < sizeof g_log - 1)
        g_log_len += (size_t)snprintf(g_log + g_log_len,
                                      sizeof g_log - g_log_len, "%d %s\n",
                                      level, line);
    if (g_log_len > sizeof g_log - 1)
        g_log_len = sizeof g_log - 1;
    pthread_mutex_unlock(&g_log_mu);
}

static int log_has(const char *needle)
{
    int found;
    pthread_mutex_lock(&g_log_mu);
    found = strstr(g_log, needle) != NULL;
    pthread_mutex_unlock(&g_log_mu);
    return found;
}

static void sh(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(res);
    ck_assert_msg(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
}

static long long scalar(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    long long v;
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQerrorMessage(c));
    v = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg, (void)msg; /* NOTICEs of the setup SQL */
}

static PGconn *side(const char *dsn)
{
    PGconn *c = PQconnectdb(dsn);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s",
                  PQerrorMessage(c));
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

/* A side connection on an empty public schema with table t. */
static PGconn *fresh(void)
{
    PGconn *c = side(g_dsn);
    sh(c, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;"
          "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)");
    pthread_mutex_lock(&g_log_mu);
    g_log_len = 0;
    g_log[0] = '\0';
    pthread_mutex_unlock(&g_log_mu);
    atomic_store(&defer__fault_commit, 0);
    return c;
}

static void pg_cfg(defer_config *cfg, const char *dsn, unsigned workers)
{
    defer_config_init(cfg);
    cfg->name = "pgtest";
    cfg->workers = workers;
    cfg->pg_conninfo = dsn;
    cfg->db.application_name = "defer_pg_test";
    cfg->db.stmt_cache_size = g_cache;
    cfg->batch_delay_us = 1000;
    cfg->log = cap_log;
    cfg->log_level = DEFER_LOG_DEBUG;
}

static defer_pool *pool_new(const defer_config *cfg)
{
    char eb[512] = "";
    defer_pool *p = NULL;
    int rc = defer_pool_create(&p, cfg, eb, sizeof eb);
    ck_assert_msg(rc == DEFER_OK, "create: %s (%s)", eb, defer_strerror(rc));
    return p;
}

static qb_query *q_sql(const char *sql, size_t n, const qb_value *v)
{
    qb_query *q = NULL;
    ck_assert_int_eq(qb_query_raw_dialect(&q, QB_DIALECT_POSTGRES, sql, n, v,
                                          QB_FETCH_NONE), QB_OK);
    return q;
}

static qb_query *q_ins(long long id)
{
    qb_value v[2] = { qb_int(id), qb_text("x") };
    return q_sql("INSERT INTO t (id, v) VALUES (?, ?)", 2, v);
}

/* One request with n queries: admit, submit. */
static void request(defer_pool *p, defer_ctx *c, qb_query **qs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(defer_wait_until_query(c, qs[i], "/t"), DEFER_OK);
    ck_assert_int_eq(defer_admit(p, c), DEFER_OK);
    defer_submit(p, c);
}

static void one(defer_pool *p, defer_ctx *c, qb_query *q)
{
    request(p, c, &q, 1);
}

/* Wait (bounded: TU_WAIT_MS) until pred(p, arg) holds; 1 if it did. */
static int wait_for(int (*pred)(defer_pool *, PGconn *), defer_pool *p,
                    PGconn *c)
{
    int64_t end = tu_now_ms() + TU_WAIT_MS;
    do {
        if (pred(p, c))
            return 1;
        usleep(10000);
    } while (tu_now_ms() < end);
    return pred(p, c);
}

static int has_retried(defer_pool *p, PGconn *c)
{
    defer_stats st;
    (void)c;
    defer_pool_stats(p, &st);
    return st.retried > 0;
}

/* The pool's session waits for a lock on the server. */
static int waits_on_lock(defer_pool *p, PGconn *c)
{
    (void)p;
    return scalar(c, "SELECT count(*) FROM pg_stat_activity WHERE "
                     "application_name = 'defer_pg_test' AND "
                     "wait_event_type = 'Lock'") == 1;
}

/* Wait (bounded: TU_WAIT_MS) until the pool has finished n tasks. */
static void wait_done(defer_pool *p, uint64_t n)
{
    defer_stats st;
    int64_t end = tu_now_ms() + TU_WAIT_MS;
    while (tu_now_ms() < end) {
        defer_pool_stats(p, &st);
        if (st.ok + st.failed + st.left >= n)
            return;
        usleep(10000);
    }
    defer_pool_stats(p, &st);
    ck_abort_msg("only %llu of %llu tasks done",
                 (unsigned long long)(st.ok + st.failed + st.left),
                 (unsigned long long)n);
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(group_commit_rows_exact)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    const int n = 2000;

    pg_cfg(&cfg, g_dsn, 2);
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_pool_dialect(p), QB_DIALECT_POSTGRES);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    for (int i = 0; i < n; i++)
        one(p, ctx, q_ins(i));
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.admitted, (uint64_t)n);
    ck_assert_uint_eq(st.ok, (uint64_t)n);
    ck_assert_uint_eq(st.failed + st.left, 0);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), n);
    /* Group commit: far fewer transactions than tasks. */
    ck_assert_msg(st.commits < (uint64_t)n / 4, "commits %llu",
                  (unsigned long long)st.commits);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

START_TEST(wrong_dialect_refused)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    qb_query *q = NULL;
    qb_value v = qb_int(1);
    qb_insert *ins;

    pg_cfg(&cfg, g_dsn, 1);
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    /* SQLite's rendering converts (the dialect follows the pool)... */
    ck_assert_int_eq(qb_query_raw(&q, "INSERT INTO t (id) VALUES (?)", 1, &v,
                                  QB_FETCH_NONE), QB_OK);
    ck_assert_int_eq(defer_wait_until_query(ctx, q, "/t"), DEFER_OK);
    /* ...SQLite-only text does not: refused at registration. */
    ins = qb_insert_new("t");
    qb_insert_set(ins, "id", qb_int(2));
    qb_insert_or(ins, QB_CONFLICT_IGNORE);
    ck_assert_int_eq(qb_insert_build(ins, &q), QB_OK);
    qb_insert_free(ins);
    ck_assert_int_eq(defer_wait_until_query(ctx, q, "/t"), DEFER_EINVAL);
    ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
    defer_submit(p, ctx);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.refused, 1);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t WHERE id = 1"), 1);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

/* A failing task is rolled back alone; its neighbours commit. */
START_TEST(savepoint_per_task)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    qb_query *qs[5];

    pg_cfg(&cfg, g_dsn, 1);
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    qs[0] = q_ins(1);
    qs[1] = q_ins(2);
    qs[2] = q_ins(1); /* unique violation */
    qs[3] = q_sql("INSERT INTO nosuch VALUES (1)", 0, NULL);
    qs[4] = q_ins(3);
    request(p, ctx, qs, 5);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 3);
    ck_assert_uint_eq(st.failed, 2);
    ck_assert_uint_eq(st.commits, 1);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 3);
    ck_assert_int_eq(scalar(c, "SELECT sum(id) FROM t"), 6);
    ck_assert(log_has("event=task_failed"));
    ck_assert(log_has("23505") || log_has("duplicate key"));
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

/* A lock held elsewhere: lock_timeout (55P03) -> QB_EBUSY -> retried;
 * the row lands once the lock is gone. */
START_TEST(lock_wait_retried)
{
    PGconn *c = fresh(), *locker = side(g_dsn);
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;

    pg_cfg(&cfg, g_dsn, 1);
    cfg.db.busy_timeout_ms = 50;
    cfg.busy_retries = 50;
    cfg.busy_backoff_ms = 10;
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    sh(locker, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
    one(p, ctx, q_ins(7));
    /* Held until the first attempt has timed out and been retried (the
     * retry budget, 50 x 50 ms + backoff, is far longer than this takes),
     * not for a fixed pause that a loaded machine may not fill. */
    ck_assert(wait_for(has_retried, p, NULL));
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 0);
    sh(locker, "COMMIT");
    wait_done(p, 1);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_gt(st.retried, 0);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 1);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(locker);
    PQfinish(c);
}
END_TEST

/* The task budget is the statement_timeout: a slow task fails alone. */
START_TEST(budget_is_statement_timeout)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    qb_query *qs[3];

    pg_cfg(&cfg, g_dsn, 1);
    cfg.task_budget_ms = 200;
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    qs[0] = q_ins(1);
    qs[1] = q_sql("SELECT pg_sleep(5)", 0, NULL);
    qs[2] = q_ins(2);
    request(p, ctx, qs, 3);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 2);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.timeouts, 1);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 2);
    ck_assert(log_has("time budget exceeded"));
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

/* At the shutdown deadline a statement blocked on a lock is cancelled:
 * shutdown returns in time, the task is reported left. */
START_TEST(deadline_cancels_statement)
{
    PGconn *c = fresh(), *locker = side(g_dsn);
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    int64_t t0, dt;

    pg_cfg(&cfg, g_dsn, 1);
    cfg.db.busy_timeout_ms = 0; /* lock_timeout off: wait forever */
    cfg.task_budget_ms = 0;     /* statement_timeout off */
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    sh(locker, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
    one(p, ctx, q_ins(1));
    /* The statement is blocked on the lock (not still queued). */
    ck_assert(wait_for(waits_on_lock, p, c));
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_pool_shutdown(p, 300), DEFER_ETIMEDOUT);
    dt = tu_now_ms() - t0;
    ck_assert_msg(dt < 2000, "shutdown took %lld ms", (long long)dt);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.left, 1);
    ck_assert_uint_eq(st.hung, 0);
    ck_assert_uint_eq(st.admitted, st.ok + st.failed + st.left);
    sh(locker, "COMMIT");
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 0);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(locker);
    PQfinish(c);
}
END_TEST

/* The server drops the workers' sessions (as a restart does): the next
 * transaction reconnects and every row lands once. */
START_TEST(lost_connection_reconnects)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    const int n = 300;

    pg_cfg(&cfg, g_dsn, 2);
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    for (int i = 0; i < n; i++) {
        one(p, ctx, q_ins(i));
        if (i % 100 == 50)
            sh(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE application_name = 'defer_pg_test'");
    }
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, (uint64_t)n);
    ck_assert_uint_eq(st.failed + st.left, 0);
    ck_assert_uint_gt(st.conn_lost, 0);
    ck_assert_uint_ge(st.reconnects, st.conn_lost);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), n);
    ck_assert(log_has("event=db_connection_lost"));
    ck_assert(log_has("event=db_reconnected"));
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

/* The server cannot be reached for longer than reconnect_ms: the tasks
 * fail, counted and logged; once it is back, the next ones land. */
START_TEST(reconnect_budget_spent)
{
    PGconn *c = fresh();
    char dsn[1024];
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    int64_t t0, dt;

    sh(c, "DROP DATABASE IF EXISTS defer_budget");
    sh(c, "CREATE DATABASE defer_budget");
    snprintf(dsn, sizeof dsn, "%s dbname=defer_budget", g_dsn);
    {
        PGconn *b = side(dsn);
        sh(b, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)");
        PQfinish(b);
    }
    pg_cfg(&cfg, dsn, 1);
    cfg.reconnect_ms = 300;
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    /* Nobody may connect (superusers included), and the worker's
     * session goes. */
    sh(c, "ALTER DATABASE defer_budget ALLOW_CONNECTIONS false");
    sh(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
          "WHERE datname = 'defer_budget'");
    t0 = tu_now_ms();
    one(p, ctx, q_ins(1));
    wait_done(p, 1);
    dt = tu_now_ms() - t0;
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.conn_lost, 1);
    ck_assert_uint_eq(st.reconnects, 0);
    ck_assert_msg(dt < 3000, "gave up after %lld ms", (long long)dt);
    ck_assert(log_has("reconnect budget spent"));
    sh(c, "ALTER DATABASE defer_budget ALLOW_CONNECTIONS true");
    one(p, ctx, q_ins(2));
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.reconnects, 1);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    {
        PGconn *b = side(dsn);
        ck_assert_int_eq(scalar(b, "SELECT count(*) FROM t"), 1);
        ck_assert_int_eq(scalar(b, "SELECT min(id) FROM t"), 2);
        PQfinish(b);
    }
    sh(c, "DROP DATABASE defer_budget");
    PQfinish(c);
}
END_TEST

/* A one-worker pool that reaches the server through a new proxy (*px):
 * its first task lands, then the server hangs (accepts, never answers)
 * and the worker's session is cut. */
static defer_pool *pool_then_hang(unsigned reconnect_ms, tu_proxy **px,
                                  defer_ctx **ctx)
{
    char dsn[1200];
    defer_config cfg;
    defer_pool *p;

    *px = pg_proxy(g_dsn, dsn, sizeof dsn);
    pg_cfg(&cfg, dsn, 1);
    cfg.reconnect_ms = reconnect_ms;
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, ctx), DEFER_OK);
    one(p, *ctx, q_ins(1));
    wait_done(p, 1);
    tu_proxy_hang(*px, 1);
    tu_proxy_cut(*px);
    return p;
}

/* The server hangs after the worker's session is cut: each reconnect attempt is bounded by what is left of
 * reconnect_ms, not by libpq's connect_timeout (10 s), so the task fails
 * on time; once the server answers again, the next task lands. */
START_TEST(reconnect_to_hung_server)
{
    PGconn *c = fresh();
    tu_proxy *px;
    defer_ctx *ctx;
    defer_pool *p = pool_then_hang(800, &px, &ctx);
    defer_stats st;
    int64_t t0, dt;

    t0 = tu_now_ms();
    one(p, ctx, q_ins(2));
    wait_done(p, 2);
    dt = tu_now_ms() - t0;
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.conn_lost, 1);
    ck_assert_uint_eq(st.reconnects, 0);
    ck_assert_msg(dt >= 700 && dt < 3000, "gave up after %lld ms",
                  (long long)dt);
    ck_assert(log_has("reconnect budget spent"));
    ck_assert(log_has("connection attempt timed out"));
    tu_proxy_hang(px, 0);
    one(p, ctx, q_ins(3));
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 2);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.reconnects, 1);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    tu_proxy_stop(px);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 2);
    ck_assert_int_eq(scalar(c, "SELECT sum(id) FROM t"), 4);
    PQfinish(c);
}
END_TEST

/* Shutdown while a worker is reconnecting to a hung server with a long
 * reconnect budget: the attempt stops at the deadline, so the worker
 * leaves within the grace period -- its task is left, nobody is hung. */
START_TEST(shutdown_while_reconnecting)
{
    PGconn *c = fresh();
    tu_proxy *px;
    defer_ctx *ctx;
    defer_pool *p = pool_then_hang(60000, &px, &ctx);
    defer_stats st;
    int64_t t0, dt;
    int i;

    one(p, ctx, q_ins(2));
    for (i = 0; i < 500 && !log_has("db_connection_lost"); i++)
        usleep(10000);
    ck_assert(log_has("db_connection_lost"));
    usleep(200000); /* into a reconnect attempt */
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_pool_shutdown(p, 200), DEFER_ETIMEDOUT);
    dt = tu_now_ms() - t0;
    defer_pool_stats(p, &st);
    ck_assert_msg(dt < 2000, "shutdown took %lld ms", (long long)dt);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_uint_eq(st.left, 1);
    ck_assert_uint_eq(st.hung, 0);
    /* The worker left by itself: its task was not taken from it. */
    ck_assert_msg(!log_has("hung worker") && !log_has("task_hung"), "%s",
                  g_log);
    ck_assert_msg(log_has("task_left"), "%s", g_log);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    tu_proxy_stop(px);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 1);
    PQfinish(c);
}
END_TEST

/* At the shutdown deadline a statement is running and the server has
 * stopped answering new connections (a hung server or proxy): stopping
 * the statement must not need a new connection to the server (libpq's
 * PQcancel would wait for that one forever).  The worker's session is
 * closed, so shutdown returns in time; the server notices the closed
 * session (client_connection_check_interval) and ends the statement,
 * whose transaction was never committed. */
START_TEST(deadline_with_hung_server)
{
    PGconn *c = fresh();
    char dsn[1200];
    tu_proxy *px = pg_proxy(g_dsn, dsn, sizeof dsn);
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    qb_query *qs[2];
    int64_t t0, dt;
    int i;

    pg_cfg(&cfg, dsn, 1);
    cfg.task_budget_ms = 0; /* statement_timeout off */
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    qs[0] = q_ins(1);
    qs[1] = q_sql("SELECT pg_sleep(30)", 0, NULL);
    request(p, ctx, qs, 2);
    for (i = 0; i < 500; i++) {
        if (scalar(c, "SELECT count(*) FROM pg_stat_activity "
                      "WHERE query LIKE 'SELECT pg_sleep(30)%'") == 1)
            break;
        usleep(10000);
    }
    ck_assert_int_lt(i, 500);
    tu_proxy_hang(px, 1);
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_pool_shutdown(p, 200), DEFER_ETIMEDOUT);
    dt = tu_now_ms() - t0;
    ck_assert_msg(dt < 2000, "shutdown took %lld ms", (long long)dt);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.left, 2);
    ck_assert_uint_eq(st.hung, 0);
    ck_assert_uint_eq(st.admitted, st.ok + st.failed + st.left);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    /* The statement ends on the server well before its 30 s. */
    for (i = 0; i < 500; i++) {
        if (scalar(c, "SELECT count(*) FROM pg_stat_activity "
                      "WHERE query LIKE 'SELECT pg_sleep(30)%'") == 0)
            break;
        usleep(10000);
    }
    ck_assert_msg(i < 500, "the statement still runs on the server");
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 0);
    tu_proxy_stop(px);
    PQfinish(c);
}
END_TEST

/* COMMIT's answer lost with the connection: the worker asks the server
 * (pg_xact_status) and neither doubles a committed batch nor loses a
 * rolled-back one. */
START_TEST(lost_commit_answer_resolved)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;

    pg_cfg(&cfg, g_dsn, 1);
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);

    atomic_store(&defer__fault_commit, DEFER_FAULT_AFTER_COMMIT);
    atomic_store(&defer__commit_fault_ns, 50000000); /* 50 ms more */
    one(p, ctx, q_ins(1));
    wait_done(p, 1);
    ck_assert_int_eq(atomic_load(&defer__fault_commit), 0);
    ck_assert(log_has("event=commit_confirmed"));
    /* A confirmed COMMIT is timed like any other (it used to count as a
     * 0 ns sample for the group-commit window). */
    defer_pool_stats(p, &st);
    ck_assert_uint_ge(st.commit_mean_us, 50000);
    atomic_store(&defer__commit_fault_ns, 0);

    atomic_store(&defer__fault_commit, DEFER_FAULT_NO_COMMIT);
    one(p, ctx, q_ins(2));
    wait_done(p, 2);
    ck_assert_int_eq(atomic_load(&defer__fault_commit), 0);

    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 2);
    ck_assert_uint_eq(st.failed, 0);
    ck_assert_uint_eq(st.commit_unknown, 0);
    ck_assert_uint_eq(st.conn_lost, 2);
    /* Row 1 once (not replayed), row 2 once (replayed). */
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 2);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

struct restart {
    int rc;
    atomic_int done;
};

static void *restart_main(void *arg)
{
    struct restart *r = arg;
    usleep(300000);
    r->rc = system(g_restart);
    atomic_store(&r->done, 1);
    return NULL;
}

/* PostgreSQL restarted (fast: sessions killed) while tasks keep coming:
 * every task lands exactly once within the reconnect budget.  Tasks keep
 * coming until the restart is over and 100 more after it, however long
 * the restart takes on a loaded machine: those meet the dead sessions. */
START_TEST(server_restart_mid_load)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    pthread_t th;
    struct restart rs = {-1, 0};
    int n = 0, after = 0;
    int64_t end;

    if (g_restart == NULL) {
        PQfinish(c);
        return; /* no restart command: pg_env.sh provides one */
    }
    PQfinish(c);
    pg_cfg(&cfg, g_dsn, 2);
    /* The budget must outlast the restart, which a loaded machine
     * stretches to seconds (pg_ctl stops, then starts the server). */
    cfg.reconnect_ms = TU_WAIT_MS;
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    ck_assert_int_eq(pthread_create(&th, NULL, restart_main, &rs), 0);
    end = tu_now_ms() + TU_WAIT_MS;
    while (n < 1500 || after < 100) {
        if (atomic_load(&rs.done))
            after++;
        else
            ck_assert_msg(tu_now_ms() < end, "the restart did not end");
        one(p, ctx, q_ins(n++));
        usleep(1000);
    }
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(rs.rc, 0);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, (uint64_t)n);
    ck_assert_uint_eq(st.failed + st.left + st.commit_unknown, 0);
    ck_assert_uint_gt(st.conn_lost, 0);
    fprintf(stderr, "# restart mid-load: %d tasks, ok %llu, conn_lost %llu, "
            "reconnects %llu, retried %llu, commits %llu\n", n,
            (unsigned long long)st.ok, (unsigned long long)st.conn_lost,
            (unsigned long long)st.reconnects,
            (unsigned long long)st.retried, (unsigned long long)st.commits);
    c = side(g_dsn);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), n);
    ck_assert_int_eq(scalar(c, "SELECT count(DISTINCT id) FROM t"), n);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

/* Callbacks get the worker's qb_conn; no SQLite handle on a PG pool. */
static int cb_env(defer_env *env, void *arg)
{
    qb_conn *pg = defer_env_db(env);
    qb_query *q = q_sql("INSERT INTO t (id, v) VALUES (42, 'cb')", 0, NULL);
    int rc;
    (void)arg;
    if (pg == NULL || qb_conn_engine(pg) != QB_ENGINE_POSTGRES ||
        qb_conn_sqlite(pg) != NULL) {
        qb_query_free(q);
        return 1;
    }
    rc = qb_exec(pg, q, NULL);
    qb_query_free(q);
    return rc == QB_OK ? 0 : 1;
}

/* The journal at level fsync on PostgreSQL: rotated files go only after
 * the barrier transaction (SET LOCAL synchronous_commit = on) commits,
 * and the clean stop removes the last one; the journal's rows are named
 * by the id in its id file (not host:path). */
START_TEST(journal_fsync_barrier_removes_files)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;
    char *dir = tu_mkdtemp("defer_pg_journal"), jp[4200], idp[4300];
    const int n = 1500;
    size_t len = 0;
    char *id;

    ck_assert_ptr_nonnull(dir);
    snprintf(jp, sizeof jp, "%s/journal", dir);
    pg_cfg(&cfg, g_dsn, 2);
    cfg.journal = DEFER_JOURNAL_FSYNC;
    cfg.journal_path = jp;
    cfg.journal_id = "some-host:/old/name";
    cfg.journal_rotate_bytes = 4096;
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    for (int i = 0; i < n; i++)
        one(p, ctx, q_ins(i));
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, (uint64_t)n);
    ck_assert_uint_eq(st.j_records, (uint64_t)n);
    ck_assert_uint_eq(st.j_pending, 0);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), n);
    ck_assert_msg(!log_has("journal_barrier_failed"), "%s", g_log);
    snprintf(idp, sizeof idp, "%s.id", jp);
    id = tu_read_file(idp, &len);
    ck_assert_ptr_nonnull(id);
    ck_assert_uint_eq(len, 33);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM waituntil_applied "
                               "WHERE jid = 'some-host:/old/name'"), 0);
    ck_assert_int_ge(scalar(c, "SELECT count(*) FROM waituntil_applied "
                               "WHERE length(jid) = 32"), 1);
    free(id);
    /* Every file removed: the next pool replays nothing. */
    p = pool_new(&cfg);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_replayed + st.j_skipped, 0);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_destroy(p);
    tu_rmtree(dir);
    free(dir);
    PQfinish(c);
}
END_TEST

/* The two stop tests below: the journal at level fsync in jp, lock and
 * statement waits longer than a test may take (lock_timeout = the busy
 * timeout, no statement_timeout), so only the stop's deadline ends a
 * barrier that waits. */
static void stuck_barrier_cfg(defer_config *cfg, const char *jp,
                              unsigned workers)
{
    pg_cfg(cfg, g_dsn, workers);
    cfg->journal = DEFER_JOURNAL_FSYNC;
    cfg->journal_path = jp;
    cfg->db.busy_timeout_ms = 2 * TU_WAIT_MS;
    cfg->task_budget_ms = 0;
}

/* Wait (bounded) until n tasks of p committed. */
static void wait_ok(defer_pool *p, uint64_t n)
{
    defer_stats st;
    int64_t end = tu_now_ms() + TU_WAIT_MS;
    do
        defer_pool_stats(p, &st);
    while (st.ok < n && tu_now_ms() < end && usleep(5000) == 0);
    ck_assert_uint_eq(st.ok, n);
}

/* defer_pool_shutdown(p, 200): how long the stop took, ms. */
static int64_t timed_stop(defer_pool *p)
{
    int64_t t0 = tu_now_ms();
    (void)defer_pool_shutdown(p, 200);
    return tu_now_ms() - t0;
}

/* After a stop whose barrier was cut (dt ms): it was bounded, the
 * failure was logged, and the next start replays nothing and skips the
 * n committed records whose files stayed. */
static void after_cut_stop(const defer_config *cfg, int64_t dt, uint64_t n)
{
    defer_pool *p;
    defer_stats st;

    ck_assert_msg(dt < TU_WAIT_MS, "stop took %lld ms", (long long)dt);
    ck_assert_msg(log_has("journal_barrier_failed"), "%s", g_log);
    p = pool_new(cfg);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_replayed, 0);
    ck_assert_uint_eq(st.j_skipped, n);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_destroy(p);
}

/* A stop on PostgreSQL is not held past its deadline by the workers'
 * last journal barrier: another session holds waituntil_applied locked
 * (as a stuck server would hold the barrier), the queue is drained, and
 * the stop (200 ms deadline) cuts the barrier's session; the barrier
 * fails, the files stay, and the next start skips every record.  Before,
 * the stop waited for the lock (here: lock_timeout, 2 x TU_WAIT_MS). */
START_TEST(journal_stop_bounds_pg_barrier)
{
    PGconn *c = fresh(), *lk;
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    char *dir = tu_mkdtemp("defer_pg_jstop"), jp[4200];
    const int n = 50;
    int64_t dt;

    ck_assert_ptr_nonnull(dir);
    snprintf(jp, sizeof jp, "%s/journal", dir);
    stuck_barrier_cfg(&cfg, jp, 2);
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    for (int i = 0; i < n; i++)
        one(p, ctx, q_ins(i));
    wait_ok(p, (uint64_t)n);
    lk = side(g_dsn);
    sh(lk, "BEGIN");
    sh(lk, "LOCK TABLE waituntil_applied IN ACCESS EXCLUSIVE MODE");
    dt = timed_stop(p); /* (ctx still live: not drained) */
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    sh(lk, "COMMIT");
    PQfinish(lk);
    /* The files stayed; every record committed: all skipped. */
    after_cut_stop(&cfg, dt, (uint64_t)n);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), n);
    tu_rmtree(dir);
    free(dir);
    PQfinish(c);
}
END_TEST

/* The same bound for the barrier a worker runs after a batch (rotated
 * files to remove), not only its last one: with the queue drained the
 * stop found nothing running, and waited for that barrier without a
 * deadline.  Another session holds an uncommitted row (jid, 0), the key
 * the barrier inserts, so the barrier waits; the stop (200 ms) cuts it. */
START_TEST(journal_stop_bounds_pg_batch_barrier)
{
    PGconn *c = fresh(), *lk;
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    char *dir = tu_mkdtemp("defer_pg_jbatch"), jp[4200], idp[4300];
    char *id;
    const char *pv[1];
    size_t len = 0;
    int64_t dt;
    PGresult *res;

    ck_assert_ptr_nonnull(dir);
    snprintf(jp, sizeof jp, "%s/journal", dir);
    stuck_barrier_cfg(&cfg, jp, 1);
    cfg.journal_rotate_bytes = 64; /* smaller than a record: a file per write */
    p = pool_new(&cfg);
    snprintf(idp, sizeof idp, "%s.id", jp);
    id = tu_read_file(idp, &len);
    ck_assert_ptr_nonnull(id);
    ck_assert_uint_eq(len, 33);
    id[32] = '\0';
    lk = side(g_dsn);
    sh(lk, "BEGIN");
    pv[0] = id;
    res = PQexecParams(lk, "INSERT INTO waituntil_applied (jid, seq) "
                           "VALUES ($1, 0)", 1, NULL, pv, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s",
                  PQerrorMessage(lk));
    PQclear(res);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    one(p, ctx, q_ins(1));
    wait_ok(p, 1);
    defer_ctx_free(ctx); /* (a live ctx holds a reservation: not drained) */
    dt = timed_stop(p);
    defer_pool_destroy(p);
    sh(lk, "ROLLBACK");
    PQfinish(lk);
    after_cut_stop(&cfg, dt, 1);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 1);
    free(id);
    tu_rmtree(dir);
    free(dir);
    PQfinish(c);
}
END_TEST

/* Replay on PostgreSQL with a waituntil_applied made before range rows
 * (no hi column: added at start), killed after its first 8-record
 * chunk committed (a range row and a plain row), then replayed to the
 * end: every journaled write once (RANGE ROWS in defer_journal.c). */
START_TEST(journal_replay_range_rows)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_stats st;
    char *dir = tu_mkdtemp("defer_pg_replay"), jp[4200];
    int status = 0;
    pid_t pid;

    ck_assert_ptr_nonnull(dir);
    snprintf(jp, sizeof jp, "%s/journal", dir);
    sh(c, "CREATE TABLE waituntil_applied (jid TEXT NOT NULL, "
          "seq BIGINT NOT NULL, PRIMARY KEY (jid, seq))");
    pg_cfg(&cfg, g_dsn, 1);
    cfg.journal = DEFER_JOURNAL_WRITE;
    cfg.journal_path = jp;
    /* 50 records admitted, never submitted, then a crash. */
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_pool *cp = NULL;
        defer_ctx *ctx = NULL;
        char err[256];
        if (defer_pool_create(&cp, &cfg, err, sizeof err) != DEFER_OK)
            _exit(10);
        for (int i = 0; i < 50; i++) {
            if (defer_ctx_create(cp, &ctx) != DEFER_OK ||
                defer_wait_until_query(ctx, q_ins(i), "/t") != DEFER_OK ||
                defer_admit(cp, ctx) != DEFER_OK)
                _exit(12);
            ctx = NULL; /* admitted, never submitted */
        }
        kill(getpid(), SIGKILL);
        _exit(14);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "child status %d", status);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 0);
    /* A replay killed after its first chunk. */
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        defer_pool *cp = NULL;
        char err[256];
        atomic_store(&defer__journal_replay_chunk, 8);
        atomic_store(&defer__journal_fault,
                     DEFER_JFAULT_KILL_AFTER_REPLAY_CHUNK);
        (void)defer_pool_create(&cp, &cfg, err, sizeof err);
        _exit(15);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "child status %d", status);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 8);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM waituntil_applied "
                               "WHERE hi IS NOT NULL"), 1);
    p = pool_new(&cfg);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.j_skipped, 8);
    ck_assert_uint_eq(st.j_replayed, 42);
    ck_assert_uint_eq(st.j_dead, 0);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_destroy(p);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t"), 50);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM waituntil_applied "
                               "WHERE hi IS NOT NULL"), 0);
    tu_rmtree(dir);
    free(dir);
    PQfinish(c);
}
END_TEST

START_TEST(callback_gets_pg)
{
    PGconn *c = fresh();
    defer_config cfg;
    defer_pool *p;
    defer_ctx *ctx;
    defer_stats st;

    pg_cfg(&cfg, g_dsn, 1);
    p = pool_new(&cfg);
    ck_assert_int_eq(defer_ctx_create(p, &ctx), DEFER_OK);
    ck_assert_int_eq(defer_wait_until(ctx, cb_env, NULL, NULL, "/cb"),
                     DEFER_OK);
    ck_assert_int_eq(defer_admit(p, ctx), DEFER_OK);
    defer_submit(p, ctx);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &st);
    ck_assert_uint_eq(st.ok, 1);
    ck_assert_int_eq(scalar(c, "SELECT count(*) FROM t WHERE id = 42"), 1);
    defer_ctx_free(ctx);
    defer_pool_destroy(p);
    PQfinish(c);
}
END_TEST

START_TEST(create_fails_cleanly)
{
    defer_config cfg;
    defer_pool *p = NULL;
    char eb[512] = "";
    int opened = -1;

    /* Workers never initialised are zeroed: their socket field names fd
     * 0, which must not be closed.  Make sure there is an fd 0 to see. */
    if (fcntl(0, F_GETFD) == -1) {
        opened = open("/dev/null", O_RDONLY);
        ck_assert_int_eq(opened, 0);
    }
    pg_cfg(&cfg, "host=/nonexistent-dir dbname=x connect_timeout=2", 2);
    ck_assert_int_eq(defer_pool_create(&p, &cfg, eb, sizeof eb), DEFER_EDB);
    ck_assert_ptr_null(p);
    ck_assert_int_ne(fcntl(0, F_GETFD), -1);
    if (opened == 0)
        close(0);
    ck_assert_msg(strstr(eb, "worker 0") != NULL, "%s", eb);
    cfg.db_path = "/tmp/x.db";
    ck_assert_int_eq(defer_pool_create(&p, &cfg, eb, sizeof eb),
                     DEFER_EINVAL);
}
END_TEST

static int run_suite(size_t cache)
{
    Suite *s = suite_create(cache ? "defer_pg_cached" : "defer_pg");
    TCase *tc = tcase_create("pg");
    SRunner *sr;
    int failed;

    g_cache = cache;
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_test(tc, group_commit_rows_exact);
    tcase_add_test(tc, wrong_dialect_refused);
    tcase_add_test(tc, savepoint_per_task);
    tcase_add_test(tc, lock_wait_retried);
    tcase_add_test(tc, budget_is_statement_timeout);
    tcase_add_test(tc, deadline_cancels_statement);
    tcase_add_test(tc, lost_connection_reconnects);
    tcase_add_test(tc, reconnect_budget_spent);
    tcase_add_test(tc, reconnect_to_hung_server);
    tcase_add_test(tc, shutdown_while_reconnecting);
    tcase_add_test(tc, deadline_with_hung_server);
    tcase_add_test(tc, lost_commit_answer_resolved);
    tcase_add_test(tc, server_restart_mid_load);
    tcase_add_test(tc, journal_fsync_barrier_removes_files);
    tcase_add_test(tc, journal_replay_range_rows);
    tcase_add_test(tc, journal_stop_bounds_pg_barrier);
    tcase_add_test(tc, journal_stop_bounds_pg_batch_barrier);
    tcase_add_test(tc, callback_gets_pg);
    tcase_add_test(tc, create_fails_cleanly);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed;
}

int main(void)
{
    int failed;

    g_dsn = getenv("WU_PG_DSN");
    if (g_dsn == NULL || *g_dsn == '\0') {
        fprintf(stderr, "check_defer_pg: WU_PG_DSN not set: skipped\n");
        return 77;
    }
    g_restart = getenv("WU_PG_RESTART");
    failed = run_suite(0);
    failed += run_suite(64);
    return failed == 0 ? 0 : 1;
}
