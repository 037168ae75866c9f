/*
 * bench_qb.c -- cost of building and executing an insert through lib/qb
 * versus hand-written sqlite3 calls.  A benchmark, not a test: it prints
 * plain key=value lines and always exits 0 unless setup fails.
 *
 * One qb_conn (default config: WAL, synchronous=NORMAL) on a file in a fresh
 * temp directory; every measurement inserts into the same 3-column table on
 * the same connection, N rows inside one transaction, table emptied between
 * measurements (outside the timed region).  Each measurement runs 3 times,
 * interleaved (a, b, e, f, c, a, b, e, f, c, ...), and the median is printed:
 *   qb_insert_ns      (a) build + bind + execute via qb_exec and its cache
 *   raw_insert_ns     (b) sqlite3: prepared once; bind, step, reset
 *   ratio             a / b (target <= 1.3)
 *   qb_exec_ns        (e) qb_exec of one prebuilt query (executor alone)
 *   exec_ratio        e / b
 *   qb_rebind_ns      (f) qb_query_rebind of a statement built once (a
 *                     route's template, what the server does per request)
 *                     + qb_exec + free
 *   rebind_ratio      f / b
 *   build_ns          (c) building (+ freeing) one insert, no database
 *   *_cpu_ns, *_cpu   the same with process CPU time instead of wall time
 *   heap_growth_bytes (d) mallinfo2().uordblks after - before 10^6 builds
 *   rss_growth_kb     (d) resident set after - before, same run
 *
 * Usage: bench_qb [N]   (default 100000 rows per measurement)
 * Build (the insert builder; -DBENCH_RAW_BUILD uses qb_query_raw instead):
 *   gcc -std=gnu11 -O2 -DQB_BUILDING -Ilib/qb -Itests tests/bench/bench_qb.c \
 *       tests/testutil.c lib/qb/[a-z]*.c $(pkg-config --cflags --libs sqlite3)
 * (every lib/qb source file: the builder and sqlite.c)
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qb.h"
#include "qb_conn.h"
#include "testutil.h"

#define REPS 3
#define BUILDS 1000000L

static const char INSERT_SQL[] = "INSERT INTO t (a, b, c) VALUES (?1, ?2, ?3)";
static const char TEXT[] = "hello, deferred world";

/* Process CPU time: on a shared machine wall time also counts the time
 * other processes held the CPU; both are printed. */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct timing {
    double wall, cpu;   /* ns per operation */
} timing;

static int64_t g_w0, g_c0;

static void t_start(void)
{
    g_w0 = tu_now_ns();
    g_c0 = cpu_ns();
}

static timing t_stop(long n)
{
    timing t;
    t.wall = (double)(tu_now_ns() - g_w0) / (double)n;
    t.cpu = (double)(cpu_ns() - g_c0) / (double)n;
    return t;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_qb: %s: %s\n", what, msg ? msg : "");
    exit(1);
}

/* Build the insert of row i.  Both ways produce INSERT_SQL-equivalent SQL
 * with three bound values (int, text, real). */
/* Row i's three values (int, text, real). */
static void insert_values(long i, qb_value v[3])
{
    v[0] = qb_int(i);
    v[1] = qb_text(TEXT);
    v[2] = qb_real((double)i * 0.5);
}

static qb_query *build_insert(long i)
{
    qb_query *q = NULL;
#ifdef BENCH_RAW_BUILD
    qb_value v[3];
    insert_values(i, v);
    if (qb_query_raw(&q, INSERT_SQL, 3, v, QB_FETCH_NONE) != QB_OK)
        die("qb_query_raw", "failed");
#else
    qb_insert *ins = qb_insert_new("t");
    if (ins == NULL)
        die("qb_insert_new", "out of memory");
    qb_insert_set(ins, "a", qb_int(i));
    qb_insert_set(ins, "b", qb_text(TEXT));
    qb_insert_set(ins, "c", qb_real((double)i * 0.5));
    if (qb_insert_build(ins, &q) != QB_OK)
        die("qb_insert_build", qb_insert_errmsg(ins));
    qb_insert_free(ins);
#endif
    return q;
}

static void run_sql(qb_conn *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(qb_conn_sqlite(db), sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench_qb: %s: %s\n", sql, err ? err : "");
        sqlite3_free(err);
        exit(1);
    }
}

static void reset_table(qb_conn *db)
{
    run_sql(db, "DELETE FROM t");
}

/* The timed region of (a), (e) and (f): an empty table, then one
 * transaction through qb. */
static void tx_open(qb_conn *db)
{
    reset_table(db);
    t_start();
    if (qb_begin(db) != QB_OK)
        die("begin", qb_errmsg(db));
}

static timing tx_close(qb_conn *db, long n)
{
    if (qb_commit(db) != QB_OK)
        die("commit", qb_errmsg(db));
    return t_stop(n);
}

/* (a) */
static timing bench_qb_insert(qb_conn *db, long n)
{
    tx_open(db);
    for (long i = 0; i < n; i++) {
        qb_query *q = build_insert(i);
        if (qb_exec(db, q, NULL) != QB_OK)
            die("qb_exec", qb_errmsg(db));
        qb_query_free(q);
    }
    return tx_close(db, n);
}

/* (e) the executor alone: one prebuilt query executed n times. */
static timing bench_qb_exec(qb_conn *db, long n)
{
    qb_query *q = build_insert(7);
    timing t;
    tx_open(db);
    for (long i = 0; i < n; i++)
        if (qb_exec(db, q, NULL) != QB_OK)
            die("qb_exec", qb_errmsg(db));
    t = tx_close(db, n);
    qb_query_free(q);
    return t;
}

/* (f) a template built once; per row its values rebound, executed. */
static timing bench_qb_rebind(qb_conn *db, long n)
{
    qb_query *tpl = build_insert(0);
    timing t;
    tx_open(db);
    for (long i = 0; i < n; i++) {
        qb_value v[3];
        qb_query *q = NULL;
        insert_values(i, v);
        if (qb_query_rebind(tpl, 3, v, &q) != QB_OK)
            die("qb_query_rebind", "failed");
        if (qb_exec(db, q, NULL) != QB_OK)
            die("qb_exec", qb_errmsg(db));
        qb_query_free(q);
    }
    t = tx_close(db, n);
    qb_query_free(tpl);
    return t;
}

/* (b) */
static timing bench_raw_insert(qb_conn *db, long n)
{
    sqlite3 *s = qb_conn_sqlite(db);
    sqlite3_stmt *st = NULL;
    timing t;
    reset_table(db);
    t_start();
    if (sqlite3_prepare_v2(s, INSERT_SQL, -1, &st, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(s));
    run_sql(db, "BEGIN IMMEDIATE");
    for (long i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, i);
        sqlite3_bind_text(st, 2, TEXT, (int)sizeof TEXT - 1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, (double)i * 0.5);
        if (sqlite3_step(st) != SQLITE_DONE)
            die("step", sqlite3_errmsg(s));
        sqlite3_reset(st);
    }
    run_sql(db, "COMMIT");
    sqlite3_finalize(st);
    t = t_stop(n);
    return t;
}

/* (c) */
static timing bench_build(long n)
{
    t_start();
    for (long i = 0; i < n; i++)
        qb_query_free(build_insert(i));
    return t_stop(n);
}

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double median3v(const double *v)
{
    double a = v[0], b = v[1], c = v[2];
    if ((a <= b && b <= c) || (c <= b && b <= a))
        return b;
    if ((b <= a && a <= c) || (c <= a && a <= b))
        return a;
    return c;
}

/* Median over the reps of the wall (cpu = 0) or CPU time. */
static double median3(const timing *t, int cpu)
{
    double v[REPS];
    for (int i = 0; i < REPS; i++)
        v[i] = cpu ? t[i].cpu : t[i].wall;
    return median3v(v);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    timing a[REPS], b[REPS], c[REPS], e[REPS], f[REPS];
    char path[4096], err[256];
    char *dir;
    qb_conn *db = NULL;
    struct mallinfo2 m0, m1;
    long r0, r1;
    qb_cache_stats st;

    if (n <= 0)
        die("usage", "bench_qb [rows-per-measurement > 0]");
    dir = tu_mkdtemp("bench_qb");
    if (dir == NULL)
        die("mkdtemp", "failed");
    snprintf(path, sizeof path, "%s/bench.db", dir);
    if (qb_open(&db, path, NULL, err, sizeof err) != QB_OK)
        die("open", err);
    run_sql(db, "CREATE TABLE t (a INTEGER, b TEXT, c REAL)");

    /* Warm-up: page cache, statement cache, allocator. */
    bench_qb_insert(db, n / 10 + 1);
    bench_raw_insert(db, n / 10 + 1);

    for (int r = 0; r < REPS; r++) {
        a[r] = bench_qb_insert(db, n);
        b[r] = bench_raw_insert(db, n);
        e[r] = bench_qb_exec(db, n);
        f[r] = bench_qb_rebind(db, n);
        c[r] = bench_build(n);
    }

    /* (d) allocation growth across 10^6 builds, after a warm-up. */
    bench_build(10000);
    m0 = mallinfo2();
    r0 = rss_kb();
    bench_build(BUILDS);
    m1 = mallinfo2();
    r1 = rss_kb();

    qb_conn_cache_stats(db, &st);
#ifdef BENCH_RAW_BUILD
    printf("builder=qb_query_raw\n");
#else
    printf("builder=qb_insert\n");
#endif
    printf("rows_per_run=%ld\n", n);
    printf("reps=%d\n", REPS);
    printf("qb_insert_ns=%.1f\n", median3(a, 0));
    printf("raw_insert_ns=%.1f\n", median3(b, 0));
    printf("ratio=%.3f\n", median3(a, 0) / median3(b, 0));
    printf("qb_exec_ns=%.1f\n", median3(e, 0));
    printf("exec_ratio=%.3f\n", median3(e, 0) / median3(b, 0));
    printf("qb_rebind_ns=%.1f\n", median3(f, 0));
    printf("rebind_ratio=%.3f\n", median3(f, 0) / median3(b, 0));
    printf("build_ns=%.1f\n", median3(c, 0));
    printf("qb_insert_cpu_ns=%.1f\n", median3(a, 1));
    printf("raw_insert_cpu_ns=%.1f\n", median3(b, 1));
    printf("ratio_cpu=%.3f\n", median3(a, 1) / median3(b, 1));
    printf("qb_exec_cpu_ns=%.1f\n", median3(e, 1));
    printf("exec_ratio_cpu=%.3f\n", median3(e, 1) / median3(b, 1));
    printf("qb_rebind_cpu_ns=%.1f\n", median3(f, 1));
    printf("rebind_ratio_cpu=%.3f\n", median3(f, 1) / median3(b, 1));
    printf("build_cpu_ns=%.1f\n", median3(c, 1));
    printf("builds=%ld\n", BUILDS);
    printf("heap_growth_bytes=%lld\n",
           (long long)m1.uordblks - (long long)m0.uordblks);
    printf("rss_growth_kb=%ld\n", r1 - r0);
    printf("cache_hits=%llu\n", (unsigned long long)st.hits);
    printf("cache_misses=%llu\n", (unsigned long long)st.misses);

    qb_close(db);
    tu_rmtree(dir);
    free(dir);
    return 0;
}
