/*
 * bench_journal.c -- lib/defer's journal (issue 15): what admission costs
 * per level, and how fast a start replays.
 *
 *   1. admit+submit of one 3-value insert per request from T threads,
 *      journal off / write / fsync: requests per second (the writes are
 *      committed by the pool meanwhile, as in the server), and writes
 *      per second from the first admission to the drained pool, and
 *      the process's CPU time per write over the same span (what the
 *      appends and the workers' commits cost, applied rows included).
 *   2. replay: N journaled inserts that never committed (a child
 *      process admits them while a connection of its own holds the write
 *      lock, so the pool's transactions fail with BUSY, then dies
 *      without a shutdown), then a new pool replays them before it
 *      starts: records per second.
 *
 * Environment: BENCH_JOURNAL_N (replay records, default 1000000),
 * BENCH_JOURNAL_REQ (requests per level, default 200000),
 * BENCH_JOURNAL_LEVELS (which of "off write fsync", default all), threads 4.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "defer.h"
#include "qb.h"
#include "testutil.h"

#define THREADS 4

static char g_db[4096], g_jp[4096];
static qb_query *g_tpl;

static void die(const char *what)
{
    fprintf(stderr, "bench_journal: %s\n", what);
    exit(1);
}

static void db_exec(const char *sql)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(g_db, &db) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die(sql);
    sqlite3_close(db);
}

static long long db_count(void)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_open(g_db, &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT count(*) FROM logs", -1, &st, NULL) !=
            SQLITE_OK)
        die("count");
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void quiet(void *ud, int level, const char *line)
{
    (void)ud;
    (void)level;
    (void)line;
}

static defer_config cfg(defer_journal_level lv)
{
    defer_config c;
    defer_config_init(&c);
    c.db_path = g_db;
    c.journal = lv;
    c.journal_path = g_jp;
    c.log = quiet;
    c.queue_capacity = (size_t)1 << 22;
    return c;
}

static qb_query *ins(long i)
{
    qb_query *q = NULL;
    char path[64];
    qb_value v[3];
    snprintf(path, sizeof path, "/log/bench-%ld", i);
    v[0] = qb_text("GET");
    v[1] = qb_text(path);
    v[2] = qb_text("2026-12-04T10:00:00Z");
    if (qb_query_rebind(g_tpl, 3, v, &q) != QB_OK)
        die("rebind");
    return q;
}

typedef struct arg {
    defer_pool *p;
    long from, n;
    int rc;
} arg;

static void *submitter(void *a_)
{
    arg *a = a_;
    defer_ctx *c = NULL;
    long i;
    if (defer_ctx_create(a->p, &c) != DEFER_OK)
        die("ctx");
    for (i = 0; i < a->n; i++) {
        if (defer_wait_until_query(c, ins(a->from + i), "/log") != DEFER_OK)
            die("register");
        a->rc = defer_admit(a->p, c);
        if (a->rc != DEFER_OK)
            break;
        defer_submit(a->p, c);
    }
    defer_ctx_free(c);
    return NULL;
}

static double now_s(void)
{
    return (double)tu_now_ns() / 1e9;
}

/* CPU time of the whole process (every thread, user and system): less
 * noisy than the clock on a shared machine. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double run_level(defer_journal_level lv, long n, defer_stats *st,
                        double *drained, double *cpu_us)
{
    defer_config c = cfg(lv);
    defer_pool *p = NULL;
    pthread_t t[THREADS];
    arg a[THREADS];
    char eb[256];
    double t0, dt, c0;
    int k;

    if (defer_pool_create(&p, &c, eb, sizeof eb) != DEFER_OK)
        die(eb);
    t0 = now_s();
    c0 = cpu_s();
    for (k = 0; k < THREADS; k++) {
        a[k].p = p;
        a[k].from = (long)k * (n / THREADS);
        a[k].n = n / THREADS;
        a[k].rc = 0;
        if (pthread_create(&t[k], NULL, submitter, &a[k]) != 0)
            die("thread");
    }
    for (k = 0; k < THREADS; k++) {
        pthread_join(t[k], NULL);
        if (a[k].rc != DEFER_OK)
            die("admit failed");
    }
    dt = now_s() - t0;
    defer_pool_shutdown(p, 60000);
    *drained = (double)(n / THREADS * THREADS) / (now_s() - t0);
    *cpu_us = (cpu_s() - c0) * 1e6 / (double)(n / THREADS * THREADS);
    defer_pool_stats(p, st);
    defer_pool_destroy(p);
    return (double)(n / THREADS * THREADS) / dt;
}

static void replay_only(const char *dir)
{
    defer_config c;
    defer_pool *p = NULL;
    defer_stats st;
    char eb[256];
    double t0, dt;
    snprintf(g_db, sizeof g_db, "%s/b.db", dir);
    snprintf(g_jp, sizeof g_jp, "%s/b.db.journal", dir);
    c = cfg(DEFER_JOURNAL_WRITE);
    c.workers = 1;
    t0 = now_s();
    if (defer_pool_create(&p, &c, eb, sizeof eb) != DEFER_OK)
        die(eb);
    dt = now_s() - t0;
    defer_pool_stats(p, &st);
    defer_pool_destroy(p);
    printf("replay: %llu records in %.2f s = %.0f records/s\n",
           (unsigned long long)st.j_replayed, dt,
           (double)st.j_replayed / dt);
}

int main(int argc, char **argv)
{
    char *dir;
    const char *e;
    long nrep = 1000000, nreq = 200000;
    defer_stats st;
    sqlite3 *lock = NULL;
    qb_value v[3] = {qb_text("x"), qb_text("x"), qb_text("x")};
    static const char *names[] = {"off", "write", "fsync"};
    int lv;

    if (argc == 3 && strcmp(argv[1], "replay") == 0) {
        /* A copy of a set kept by BENCH_JOURNAL_KEEP=1 (for a profiler). */
        replay_only(argv[2]);
        return 0;
    }
    dir = tu_mkdtemp("bench_journal");
    if ((e = getenv("BENCH_JOURNAL_N")) != NULL)
        nrep = atol(e);
    if ((e = getenv("BENCH_JOURNAL_REQ")) != NULL)
        nreq = atol(e);
    if (dir == NULL)
        die("tmpdir");
    snprintf(g_db, sizeof g_db, "%s/b.db", dir);
    snprintf(g_jp, sizeof g_jp, "%s/b.db.journal", dir);
    db_exec("PRAGMA journal_mode=WAL; CREATE TABLE logs(id INTEGER PRIMARY "
            "KEY, method TEXT, path TEXT, timestamp TEXT)");
    if (qb_query_raw(&g_tpl, "INSERT INTO logs (method, path, timestamp) "
                     "VALUES (?1, ?2, ?3)", 3, v, QB_FETCH_NONE) != QB_OK)
        die("tpl");

    printf("admission, %d threads, %ld requests of one insert each:\n",
           THREADS, nreq);
    for (lv = 0; lv < 3; lv++) {
        double drained = 0, cpu = 0;
        if ((e = getenv("BENCH_JOURNAL_LEVELS")) != NULL &&
            strstr(e, names[lv]) == NULL)
            continue;
        double rate = run_level((defer_journal_level)lv,
                                lv == 2 ? nreq / 10 : nreq, &st, &drained,
                                &cpu);
        printf("  journal %-5s %10.0f req/s, %9.0f/s committed, %5.2f us "
               "CPU each", names[lv], rate, drained, cpu);
        if (lv > 0)
            printf("  appends=%llu (%.1f records each) bytes/record=%.0f",
                   (unsigned long long)st.j_appends,
                   st.j_appends ? (double)st.j_records / (double)st.j_appends
                                : 0.0,
                   st.j_records ? (double)st.j_bytes / (double)st.j_records
                                : 0.0);
        if (lv == 2 && st.j_fsyncs)
            printf(" fsync_avg=%.0f us",
                   (double)st.j_fsync_ns / (double)st.j_fsyncs / 1000.0);
        printf("\n");
    }

    /* Replay: records that never committed.  A child process admits
     * them while a connection of its own holds the write lock (the
     * pool's transactions fail with BUSY), then dies without a shutdown
     * (_exit: a crash), so its journal keeps every record -- a clean
     * shutdown would remove the files of records already resolved (a
     * failed task resolves its record, see ROTATION in defer_journal.c).
     * One file (rotation off): a rotated file whose records all failed
     * would be removed by the pool's tidy before the crash. */
    db_exec("DELETE FROM logs");
    {
        defer_config c = cfg(DEFER_JOURNAL_WRITE);
        defer_pool *p = NULL;
        char eb[256];
        double t0, dt;
        pid_t pid;
        int wst = 0;
        c.busy_retries = 0;
        c.db.busy_timeout_ms = 1;
        c.batch_max = 65536;
        c.workers = 1;
        c.journal_rotate_bytes = (size_t)1 << 40;
        fflush(stdout);
        pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            defer_ctx *ctx = NULL;
            long i;
            if (defer_pool_create(&p, &c, eb, sizeof eb) != DEFER_OK)
                die(eb);
            if (sqlite3_open(g_db, &lock) != SQLITE_OK ||
                sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
                    SQLITE_OK)
                die("lock");
            if (defer_ctx_create(p, &ctx) != DEFER_OK)
                die("ctx");
            for (i = 0; i < nrep; i++) {
                if (defer_wait_until_query(ctx, ins(i), "/log") != DEFER_OK ||
                    defer_admit(p, ctx) != DEFER_OK)
                    die("admit (replay set)");
                defer_submit(p, ctx);
            }
            _exit(0); /* every admit returned: its record is written */
        }
        if (waitpid(pid, &wst, 0) != pid || !WIFEXITED(wst) ||
            WEXITSTATUS(wst) != 0)
            die("replay set child");
        if (db_count() != 0)
            die("rows landed while locked");
        c.busy_retries = 5;
        c.db.busy_timeout_ms = 1000;
        if (getenv("BENCH_JOURNAL_KEEP") != NULL) {
            printf("replay set kept in %s (copy it, then: bench_journal "
                   "replay COPY)\n", dir);
            return 0;
        }
        t0 = now_s();
        if (defer_pool_create(&p, &c, eb, sizeof eb) != DEFER_OK)
            die(eb);
        dt = now_s() - t0;
        defer_pool_stats(p, &st);
        defer_pool_destroy(p);
        printf("replay: %llu records in %.2f s = %.0f records/s (rows %lld, "
               "dead %llu)\n",
               (unsigned long long)st.j_replayed, dt,
               (double)st.j_replayed / dt, db_count(),
               (unsigned long long)st.j_dead);
    }
    qb_query_free(g_tpl);
    tu_rmtree(dir);
    free(dir);
    return 0;
}
