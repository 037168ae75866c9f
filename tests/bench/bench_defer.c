/*
 * bench_defer.c -- throughput of lib/defer against SQLite's own ceiling.
 * A benchmark, not a test: it prints numbers, asserts nothing.
 *
 * Same table and pragmas everywhere (a file database in a fresh temp dir,
 * journal_mode=WAL, synchronous=NORMAL):
 *   a  pool_sql_tps     INSERT tasks through the pool (1 request = 1 task,
 *                       default config: 2 workers, group commit), timed
 *                       from the first registration until shutdown
 *                       returned (every row committed).  The queries are
 *                       built beforehand (that is the handler's work);
 *                       pool_sql_with_build_tps builds them in the loop.
 *   b  raw_batch_tps    one thread, one prepared statement reused, 1000
 *                       inserts per transaction: SQLite's ceiling here
 *   c  autocommit_tps   one thread, one prepared statement, one implicit
 *                       transaction per insert (what a naive server does)
 *   noop_cb_per_s       no-op callbacks through the pool (1 per request)
 *   admit_submit_ns     defer_admit + defer_submit of a 1-task ctx
 * Three interleaved repetitions; the summary is the median of each.
 * Output: key=value lines.
 *
 * Usage: bench_defer [tasks]   (default 200000)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "defer.h"
#include "qb.h"
#include "qb_conn.h"
#include "testutil.h"

#define REPS 3
#define SCHEMA                                                          \
    "CREATE TABLE ev(id INTEGER PRIMARY KEY, route TEXT NOT NULL,"      \
    " ts INTEGER NOT NULL, n INTEGER NOT NULL)"
#define INSERT_SQL "INSERT INTO ev(route, ts, n) VALUES (?1, ?2, ?3)"

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_defer: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

static sqlite3 *open_db(const char *path)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("open", sqlite3_errmsg(db));
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "PRAGMA busy_timeout=5000", NULL, NULL,
                     &err) != SQLITE_OK)
        die("pragmas", err);
    return db;
}

/* A fresh database file with the table; returns its path (malloc'd). */
static char *fresh_db(const char *dir, const char *name)
{
    char *path = malloc(4096);
    sqlite3 *db;
    char *err = NULL;
    if (path == NULL)
        die("malloc", NULL);
    snprintf(path, 4096, "%s/%s.db", dir, name);
    db = open_db(path);
    if (sqlite3_exec(db, SCHEMA, NULL, NULL, &err) != SQLITE_OK)
        die("schema", err);
    sqlite3_close(db);
    return path;
}

static long long count_rows(const char *path)
{
    sqlite3 *db = open_db(path);
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM ev", -1, &st, NULL) ==
            SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void quiet(void *ud, int level, const char *line)
{
    (void)ud;
    if (level >= DEFER_LOG_WARN)
        fprintf(stderr, "%s\n", line);
}

static defer_pool *mkpool(const char *path)
{
    defer_config cfg;
    defer_pool *p = NULL;
    char err[256] = "";
    defer_config_init(&cfg); /* defaults: the configuration we ship */
    cfg.db_path = path;
    cfg.log = quiet;
    if (defer_pool_create(&p, &cfg, err, sizeof err) != DEFER_OK)
        die("defer_pool_create", err);
    return p;
}

/* Register one task, then admit + submit; on EFULL register it again
 * (WAIT only refuses when the workers fell 100 ms behind). */
static unsigned long long admit_retries;

static void submit(defer_pool *p, defer_ctx *c, int (*add)(defer_ctx *, int),
                   int i)
{
    for (;;) {
        int rc;
        if (add(c, i) != DEFER_OK)
            die("register", NULL);
        rc = defer_admit(p, c);
        if (rc == DEFER_OK) {
            defer_submit(p, c);
            return;
        }
        if (rc != DEFER_EFULL)
            die("admit", defer_strerror(rc));
        admit_retries++;
    }
}

static qb_query *build_insert(int i)
{
    qb_query *q = NULL;
    qb_value v[3];
    v[0] = qb_text("/api/event");
    v[1] = qb_int(1700000000 + i);
    v[2] = qb_int(i);
    if (qb_query_raw(&q, INSERT_SQL, 3, v, QB_FETCH_NONE) != QB_OK)
        die("qb_query_raw", NULL);
    return q;
}

/* Queries built beforehand (the handler's work, not the pool's), or NULL:
 * build inside the timed loop. */
static qb_query **prebuilt;

static int add_insert(defer_ctx *c, int i)
{
    qb_query *q = prebuilt != NULL ? prebuilt[i] : build_insert(i);
    return defer_wait_until_query(c, q, "/api/event");
}

static int noop(defer_env *env, void *arg)
{
    (void)env;
    (void)arg;
    return 0;
}

static int add_noop(defer_ctx *c, int i)
{
    (void)i;
    return defer_wait_until(c, noop, NULL, NULL, "/noop");
}

/* (a); build: also build the queries inside the timed region */
static double bench_pool_sql(const char *dir, int n, int rep, int build)
{
    char name[32];
    char *path;
    defer_pool *p;
    defer_ctx *c = NULL;
    defer_stats s;
    int64_t t0, tp, t1;
    int i;

    snprintf(name, sizeof name, "pool%d_%d", build, rep);
    path = fresh_db(dir, name);
    p = mkpool(path);
    if (defer_ctx_create(p, &c) != DEFER_OK)
        die("ctx", NULL);
    prebuilt = NULL;
    if (!build) {
        prebuilt = malloc((size_t)n * sizeof *prebuilt);
        if (prebuilt == NULL)
            die("malloc", NULL);
        for (i = 0; i < n; i++)
            prebuilt[i] = build_insert(i);
    }
    t0 = tu_now_ns();
    for (i = 0; i < n; i++)
        submit(p, c, add_insert, i);
    tp = tu_now_ns();
    if (defer_pool_shutdown(p, 600000) != DEFER_OK)
        die("shutdown", "not drained");
    t1 = tu_now_ns();
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    free(prebuilt); /* the queries themselves were freed by the pool */
    prebuilt = NULL;
    if (count_rows(path) != n || s.ok != (uint64_t)n)
        die("pool", "row count mismatch");
    printf("rep=%d case=%s tasks=%d submit_ms=%.0f total_ms=%.0f "
           "commits=%llu batches=%llu tasks_per_commit=%.1f retried=%llu "
           "hwm=%llu\n", rep, build ? "pool_sql_with_build" : "pool_sql", n,
           (double)(tp - t0) / 1e6,
           (double)(t1 - t0) / 1e6,
           (unsigned long long)s.commits, (unsigned long long)s.batches,
           s.commits ? (double)n / (double)s.commits : 0.0,
           (unsigned long long)s.retried, (unsigned long long)s.depth_hwm);
    free(path);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

/* (b) and (c): batch = 1000 rows per transaction, or 0 = autocommit */
static double bench_raw(const char *dir, int n, int batch, int rep)
{
    char name[32];
    char *path;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int64_t t0, t1;
    int i;

    snprintf(name, sizeof name, "raw%d_%d", batch, rep);
    path = fresh_db(dir, name);
    db = open_db(path);
    if (sqlite3_prepare_v2(db, INSERT_SQL, -1, &st, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));
    t0 = tu_now_ns();
    for (i = 0; i < n; i++) {
        if (batch > 0 && i % batch == 0 &&
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            die("begin", sqlite3_errmsg(db));
        sqlite3_bind_text(st, 1, "/api/event", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, 1700000000 + i);
        sqlite3_bind_int64(st, 3, i);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("insert", sqlite3_errmsg(db));
        sqlite3_reset(st);
        if (batch > 0 && (i % batch == batch - 1 || i == n - 1) &&
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            die("commit", sqlite3_errmsg(db));
    }
    t1 = tu_now_ns();
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (count_rows(path) != n)
        die("raw", "row count mismatch");
    free(path);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

static double bench_noop(int n)
{
    defer_pool *p = mkpool(NULL);
    defer_ctx *c = NULL;
    defer_stats s;
    int64_t t0, t1;
    int i;
    if (defer_ctx_create(p, &c) != DEFER_OK)
        die("ctx", NULL);
    t0 = tu_now_ns();
    for (i = 0; i < n; i++)
        submit(p, c, add_noop, i);
    if (defer_pool_shutdown(p, 600000) != DEFER_OK)
        die("shutdown", "noop");
    t1 = tu_now_ns();
    defer_pool_stats(p, &s);
    if (s.ok != (uint64_t)n)
        die("noop", "count mismatch");
    defer_ctx_free(c);
    defer_pool_destroy(p);
    return (double)n / ((double)(t1 - t0) / 1e9);
}

/* Mean ns of admit + submit of a 1-task ctx (registration not timed),
 * with the workers consuming meanwhile. */
static double bench_admit(int n)
{
    defer_pool *p = mkpool(NULL);
    defer_ctx *c = NULL;
    int64_t total = 0;
    int i;
    if (defer_ctx_create(p, &c) != DEFER_OK)
        die("ctx", NULL);
    for (i = 0; i < n; i++) {
        int64_t t0;
        int rc;
        if (add_noop(c, i) != DEFER_OK)
            die("register", NULL);
        t0 = tu_now_ns();
        rc = defer_admit(p, c);
        if (rc == DEFER_OK)
            defer_submit(p, c);
        total += tu_now_ns() - t0;
        if (rc != DEFER_OK)
            die("admit", defer_strerror(rc));
    }
    (void)defer_pool_shutdown(p, 600000);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    return (double)total / n;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    double s[REPS];
    memcpy(s, v, sizeof s);
    qsort(s, REPS, sizeof s[0], cmp_d);
    return s[REPS / 2];
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200000;
    int n_auto = n / 10; /* autocommit is slow; its rate is what counts */
    double a[REPS], ab[REPS], b[REPS], c[REPS], noops[REPS], adm[REPS];
    double rab[REPS], rac[REPS];
    char *dir = tu_mkdtemp("bench_defer");
    int r;

    if (n < 1000)
        n = 1000;
    if (n_auto < 1000)
        n_auto = 1000;
    if (dir == NULL)
        die("mkdtemp", NULL);
    printf("sqlite_version=%s tasks=%d autocommit_tasks=%d reps=%d "
           "journal_mode=WAL synchronous=NORMAL\n", sqlite3_libversion(), n,
           n_auto, REPS);
    for (r = 0; r < REPS; r++) {
        a[r] = bench_pool_sql(dir, n, r, 0);
        b[r] = bench_raw(dir, n, 1000, r);
        c[r] = bench_raw(dir, n_auto, 0, r);
        ab[r] = bench_pool_sql(dir, n, r, 1);
        noops[r] = bench_noop(n);
        adm[r] = bench_admit(n);
        /* ratios within one repetition: the machine is shared, so the
         * load drifts between repetitions more than within one */
        rab[r] = a[r] / b[r];
        rac[r] = a[r] / c[r];
        printf("rep=%d pool_sql_tps=%.0f raw_batch_tps=%.0f "
               "autocommit_tps=%.0f pool_sql_with_build_tps=%.0f "
               "noop_cb_per_s=%.0f admit_submit_ns=%.0f a_over_b=%.2f "
               "a_over_c=%.1f\n", r, a[r], b[r], c[r], ab[r], noops[r],
               adm[r], rab[r], rac[r]);
        fflush(stdout);
    }
    printf("median pool_sql_tps=%.0f raw_batch_tps=%.0f autocommit_tps=%.0f "
           "pool_sql_with_build_tps=%.0f noop_cb_per_s=%.0f "
           "admit_submit_ns=%.0f\n", median(a), median(b), median(c),
           median(ab), median(noops), median(adm));
    printf("median a_over_b=%.2f goal_a_over_b=0.5 a_over_c=%.1f "
           "goal_a_over_c=20 admit_efull_retries=%llu\n", median(rab),
           median(rac), admit_retries);
    tu_rmtree(dir);
    free(dir);
    return 0;
}
