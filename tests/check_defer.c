/*
 * check_defer.c -- lib/defer: the deferred-task pool.
 *
 * One START_TEST per behaviour.  Helper threads (submitters, releasers)
 * only record what they saw; every assertion runs on the test's thread.
 * Timings are only asserted as generous upper bounds (or as lower bounds
 * that the code guarantees), never tightly.
 *
 * Build (until the autotools build lands), from the top folder:
 *   gcc -std=gnu11 -Wall -Wextra -Werror -g -O1 -fvisibility=hidden
 *     -DQB_BUILDING -DDEFER_BUILDING -Ilib/qb -Ilib/defer -Itests
 *     tests/check_defer.c tests/testutil.c lib/defer/defer_*.c lib/qb/(all .c)
 *     $(pkg-config --cflags --libs check sqlite3) -pthread -o check_defer
 * Environment: DEFER_STRESS_TASKS (default 100000) scales the stress test.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "defer.h"
#include "defer_int.h" /* the window rule; defer__commit_fault_ns */
#include "qb.h"
#include "qb_conn.h"
#include "testutil.h"

/* ==== fixtures: temp dir, database, log capture ========================== */

static char *g_dir;
static char g_db[4096];

typedef struct logcap {
    pthread_mutex_t mu;
    char *buf;
    size_t len, cap;
} logcap;

static logcap g_log;
/* Thread id of the worker that logged hung_worker_returned (0: none). */
static atomic_long g_hung_tid;

static void cap_log(void *ud, int level, const char *line)
{
    logcap *c = ud;
    size_t n = strlen(line) + 8;
    if (strstr(line, "event=hung_worker_returned") != NULL)
        atomic_store(&g_hung_tid, (long)gettid());
    pthread_mutex_lock(&c->mu);
    if (c->cap - c->len <= n) {
        size_t ncap = (c->cap + n) * 2;
        char *nb = realloc(c->buf, ncap);
        if (nb == NULL) {
            pthread_mutex_unlock(&c->mu);
            return;
        }
        c->buf = nb;
        c->cap = ncap;
    }
    c->len += (size_t)snprintf(c->buf + c->len, c->cap - c->len, "%d %s\n",
                               level, line);
    pthread_mutex_unlock(&c->mu);
}

/* Number of captured lines containing every one of the needles. */
static int log_count(const char *n1, const char *n2, const char *n3)
{
    int count = 0;
    char *p, *save = NULL, *copy;
    pthread_mutex_lock(&g_log.mu);
    copy = strndup(g_log.buf != NULL ? g_log.buf : "", g_log.len);
    pthread_mutex_unlock(&g_log.mu);
    ck_assert_ptr_nonnull(copy);
    for (p = strtok_r(copy, "\n", &save); p != NULL;
         p = strtok_r(NULL, "\n", &save)) {
        if ((n1 == NULL || strstr(p, n1)) && (n2 == NULL || strstr(p, n2)) &&
            (n3 == NULL || strstr(p, n3)))
            count++;
    }
    free(copy);
    return count;
}

/* Number of events the captured lines matching every needle stand for:
 * a line ending in " repeated=N" (a summary of folded repeats) stands
 * for N, any other line for 1. */
static long log_events(const char *n1, const char *n2, const char *n3)
{
    long count = 0;
    char *p, *save = NULL, *copy;
    pthread_mutex_lock(&g_log.mu);
    copy = strndup(g_log.buf != NULL ? g_log.buf : "", g_log.len);
    pthread_mutex_unlock(&g_log.mu);
    ck_assert_ptr_nonnull(copy);
    for (p = strtok_r(copy, "\n", &save); p != NULL;
         p = strtok_r(NULL, "\n", &save)) {
        const char *rep;
        if ((n1 != NULL && !strstr(p, n1)) || (n2 != NULL && !strstr(p, n2)) ||
            (n3 != NULL && !strstr(p, n3)))
            continue;
        rep = strstr(p, " repeated=");
        count += rep != NULL ? strtol(rep + 10, NULL, 10) : 1;
    }
    free(copy);
    return count;
}

static void db_exec(const char *sql)
{
    char eb[512];
    ck_assert_msg(tu_sqlite_exec(g_db, sql, eb, sizeof eb) == 0, "%s: %s",
                  sql, eb);
}

static int64_t db_scalar(const char *sql)
{
    int64_t v;
    ck_assert_msg(tu_sqlite_scalar(g_db, sql, &v) == 0, "%s", sql);
    return v;
}

static void setup(void)
{
    g_dir = tu_mkdtemp("check_defer");
    ck_assert_ptr_nonnull(g_dir);
    snprintf(g_db, sizeof g_db, "%s/t.db", g_dir);
    pthread_mutex_init(&g_log.mu, NULL);
    g_log.buf = NULL;
    g_log.len = g_log.cap = 0;
    atomic_store(&g_hung_tid, 0);
    db_exec("PRAGMA journal_mode=WAL;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER UNIQUE,"
            " note TEXT)");
}

static void teardown(void)
{
    tu_rmtree(g_dir);
    free(g_dir);
    g_dir = NULL;
    free(g_log.buf);
    g_log.buf = NULL;
    pthread_mutex_destroy(&g_log.mu);
}

static defer_config base_cfg(void)
{
    defer_config c;
    defer_config_init(&c);
    c.db_path = g_db;
    c.log = cap_log;
    c.log_ud = &g_log;
    c.log_level = DEFER_LOG_DEBUG;
    c.db.busy_timeout_ms = 2000;
    return c;
}

static defer_pool *mkpool(const defer_config *c)
{
    defer_pool *p = NULL;
    char err[256] = "";
    int rc = defer_pool_create(&p, c, err, sizeof err);
    ck_assert_msg(rc == DEFER_OK, "create: %s (%s)", defer_strerror(rc), err);
    return p;
}

static defer_ctx *mkctx(defer_pool *p)
{
    defer_ctx *c = NULL;
    ck_assert_int_eq(defer_ctx_create(p, &c), DEFER_OK);
    return c;
}

/* ==== tasks that record what happened to them ========================== */

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Wait (bounded) until a detached hung worker has logged its return and
 * its thread has exited, so that everything it frees is freed (leak
 * checkers run at the end of the test's process).  A condition, not a
 * duration: the thread's /proc entry goes away when it exits. */
static int wait_hung_worker_exit(int64_t bound_ms)
{
    int64_t end = tu_now_ms() + bound_ms;
    char path[64];
    long tid;
    while ((tid = atomic_load(&g_hung_tid)) == 0 && tu_now_ms() < end)
        sleep_ms(5);
    if (tid == 0)
        return 0;
    snprintf(path, sizeof path, "/proc/self/task/%ld", tid);
    while (access(path, F_OK) == 0 && tu_now_ms() < end)
        sleep_ms(5);
    return access(path, F_OK) != 0;
}

/* Wait (bounded) until the pool's slots in use drop to depth. */
static int wait_depth(defer_pool *p, uint64_t depth, int64_t bound_ms)
{
    int64_t end = tu_now_ms() + bound_ms;
    defer_stats s;
    for (;;) {
        defer_pool_stats(p, &s);
        if (s.depth == depth)
            return 1;
        if (tu_now_ms() >= end)
            return 0;
        sleep_ms(5);
    }
}

/* A gate: callbacks block in it until the test opens it. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open, entered;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
    g->entered = 0;
}

static void gate_pass(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Wait (bounded) until n callbacks are inside the gate. */
static int gate_wait_entered(gate *g, int n, int timeout_ms)
{
    struct timespec ts;
    int ok;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&g->mu);
    while (g->entered < n)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &ts) == ETIMEDOUT)
            break;
    ok = g->entered >= n;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static void gate_destroy(gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

typedef struct tracker {
    int n;
    atomic_int *runs, *frees;
    atomic_int *worker;        /* env worker index seen by the run */
    pthread_mutex_t mu;        /* order log */
    int *order;
    int norder, order_cap;
} tracker;

static tracker *tr_new(int n)
{
    tracker *t = calloc(1, sizeof *t);
    ck_assert_ptr_nonnull(t);
    t->n = n;
    t->runs = calloc((size_t)n, sizeof *t->runs);
    t->frees = calloc((size_t)n, sizeof *t->frees);
    t->worker = calloc((size_t)n, sizeof *t->worker);
    t->order = calloc((size_t)n, sizeof *t->order);
    t->order_cap = n;
    ck_assert(t->runs && t->frees && t->worker && t->order);
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void tr_free(tracker *t)
{
    pthread_mutex_destroy(&t->mu);
    free(t->runs);
    free(t->frees);
    free(t->worker);
    free(t->order);
    free(t);
}

typedef struct tok {
    tracker *tr;
    int id;
    int rc;                    /* what the callback returns */
    int sleep_ms;              /* pretend to work this long */
    gate *g;                   /* block in this gate first */
    pthread_t *tid_out;        /* record the running thread */
    char *name_out;            /* record the thread name (16 bytes) */
    int *sigterm_blocked_out;
} tok;

/* No assertion here: helper threads use it too. */
static tok *tok_make(tracker *tr, int id, int rc)
{
    tok *t = calloc(1, sizeof *t);
    if (t != NULL) {
        t->tr = tr;
        t->id = id;
        t->rc = rc;
    }
    return t;
}

static tok *tok_new(tracker *tr, int id, int rc)
{
    tok *t = tok_make(tr, id, rc);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void tok_free(void *arg)
{
    tok *t = arg;
    atomic_fetch_add(&t->tr->frees[t->id], 1);
    free(t);
}

static int tok_run(defer_env *env, void *arg)
{
    tok *t = arg;
    atomic_fetch_add(&t->tr->runs[t->id], 1);
    atomic_store(&t->tr->worker[t->id], defer_env_worker(env));
    pthread_mutex_lock(&t->tr->mu);
    if (t->tr->norder < t->tr->order_cap)
        t->tr->order[t->tr->norder++] = t->id;
    pthread_mutex_unlock(&t->tr->mu);
    if (t->tid_out != NULL)
        *t->tid_out = pthread_self();
    if (t->name_out != NULL)
        pthread_getname_np(pthread_self(), t->name_out, 16);
    if (t->sigterm_blocked_out != NULL) {
        sigset_t s;
        pthread_sigmask(SIG_BLOCK, NULL, &s);
        *t->sigterm_blocked_out = sigismember(&s, SIGTERM) &&
                                  sigismember(&s, SIGINT);
    }
    if (t->g != NULL)
        gate_pass(t->g);
    if (t->sleep_ms > 0)
        sleep_ms(t->sleep_ms);
    if (t->rc != 0)
        defer_env_set_error(env, "tok asked to fail");
    return t->rc;
}

static int reg(defer_ctx *c, tracker *tr, int id, int rc, const char *label)
{
    return defer_wait_until(c, tok_run, tok_new(tr, id, rc), tok_free, label);
}

static int reg_gate(defer_ctx *c, tracker *tr, int id, gate *g)
{
    tok *t = tok_new(tr, id, 0);
    t->g = g;
    return defer_wait_until(c, tok_run, t, tok_free, "/gate");
}

static qb_query *q_sql(const char *sql, int nargs, int64_t a)
{
    qb_query *q = NULL;
    qb_value v = qb_int(a);
    ck_assert_int_eq(qb_query_raw(&q, sql, (size_t)nargs, nargs ? &v : NULL,
                                  QB_FETCH_NONE), QB_OK);
    return q;
}

static qb_query *q_ins(int64_t v)
{
    return q_sql("INSERT INTO t(v) VALUES (?1)", 1, v);
}

/* A write that would run for minutes: stopped only by an interrupt. */
#define SLOW_INSERT                                                     \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "    \
    "WHERE x < 1000000000) INSERT INTO t(v) SELECT x + 10000000 FROM c"
#define SLOW_SELECT                                                     \
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "    \
    "WHERE x < 1000000000) SELECT count(*) FROM c"

static void admit_submit(defer_pool *p, defer_ctx *c)
{
    int rc = defer_admit(p, c);
    ck_assert_msg(rc == DEFER_OK, "admit: %s", defer_strerror(rc));
    defer_submit(p, c);
}

/* Bounded poll of a counter (stats) until pred holds; 1 if it did. */
static int wait_stat(defer_pool *p, size_t offset, uint64_t want,
                     int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    defer_stats s;
    do {
        defer_pool_stats(p, &s);
        if (*(uint64_t *)((char *)&s + offset) >= want)
            return 1;
        sleep_ms(5);
    } while (tu_now_ms() < end);
    return 0;
}

#define STAT_AT_LEAST(p, field, want, ms) \
    wait_stat((p), offsetof(defer_stats, field), (want), (ms))

static void assert_reconciled(const defer_stats *s)
{
    ck_assert_msg(s->admitted == s->ok + s->failed + s->left,
                  "admitted=%llu ok=%llu failed=%llu left=%llu",
                  (unsigned long long)s->admitted, (unsigned long long)s->ok,
                  (unsigned long long)s->failed,
                  (unsigned long long)s->left);
    ck_assert_uint_eq(s->queued, 0);
    ck_assert_uint_eq(s->in_flight, 0);
    ck_assert_uint_eq(s->reserved, 0);
    ck_assert_uint_eq(s->depth, 0);
}

/* ==== ownership: arg_free exactly once on every path ==================== */

enum {
    OWN_RUN_OK, OWN_RUN_FAIL, OWN_REJECT, OWN_INLINE, OWN_DISCARD,
    OWN_TOOMANY, OWN_LEFT, OWN_EINVAL, OWN_MISUSE, OWN_SHUTDOWN,
    OWN_LATE_SUBMIT, OWN_DISCARD_ADMITTED, OWN_CTX_FREE, OWN_NPATHS
};

static const char *own_name[OWN_NPATHS] = {
    "run ok", "run fail", "reject", "inline", "discard", "too many",
    "left at shutdown", "einval", "misuse", "admit after shutdown",
    "late submit", "discard admitted", "ctx free"
};

START_TEST(test_ownership_every_path)
{
    tracker *tr = tr_new(8);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    int i, rc, want_runs[8] = { 0 }, used = 0, srv;

    gate_init(&g);
    cfg.workers = 1;
    cfg.max_tasks_per_request = 2;
    if (_i == OWN_REJECT || _i == OWN_INLINE) {
        cfg.queue_capacity = 1;
        cfg.policy = _i == OWN_REJECT ? DEFER_POLICY_REJECT
                                      : DEFER_POLICY_INLINE;
    }
    p = mkpool(&cfg);
    c = mkctx(p);

    switch (_i) {
    case OWN_RUN_OK:
    case OWN_RUN_FAIL:
        ck_assert_int_eq(reg(c, tr, 0, _i == OWN_RUN_FAIL ? 7 : 0, "/own"),
                         DEFER_OK);
        admit_submit(p, c);
        want_runs[0] = 1;
        used = 1;
        break;
    case OWN_REJECT:
    case OWN_INLINE: {
        defer_ctx *c2 = mkctx(p);
        ck_assert_int_eq(reg_gate(c2, tr, 0, &g), DEFER_OK);
        admit_submit(p, c2);
        ck_assert(gate_wait_entered(&g, 1, 10000));
        ck_assert_int_eq(reg(c, tr, 1, 0, "/own"), DEFER_OK);
        rc = defer_admit(p, c);
        ck_assert_int_eq(rc, _i == OWN_REJECT ? DEFER_EFULL : DEFER_INLINE);
        /* settled at once, before the worker is released */
        ck_assert_int_eq(atomic_load(&tr->frees[1]), 1);
        ck_assert_int_eq(atomic_load(&tr->runs[1]), _i == OWN_INLINE);
        ck_assert_int_eq(defer_ctx_count(c), 0);
        defer_submit(p, c); /* nothing admitted: no-op */
        gate_open(&g);
        defer_ctx_free(c2);
        want_runs[0] = 1;
        want_runs[1] = _i == OWN_INLINE;
        used = 2;
        break;
    }
    case OWN_DISCARD:
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(reg(c, tr, 1, 0, "/own"), DEFER_OK);
        defer_ctx_discard(c);
        ck_assert_int_eq(defer_ctx_count(c), 0);
        ck_assert_int_eq(atomic_load(&tr->frees[0]), 1);
        ck_assert_int_eq(atomic_load(&tr->frees[1]), 1);
        used = 2;
        break;
    case OWN_TOOMANY:
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(reg(c, tr, 1, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(reg(c, tr, 2, 0, "/own"), DEFER_ETOOMANY);
        ck_assert_int_eq(atomic_load(&tr->frees[2]), 1);
        admit_submit(p, c);
        want_runs[0] = want_runs[1] = 1;
        used = 3;
        break;
    case OWN_LEFT:
        /* The worker is busy with a write that only an interrupt ends;
         * two more tasks wait in the queue behind it. */
        ck_assert_int_eq(defer_wait_until_query(c, q_sql(SLOW_INSERT, 0, 0),
                                                "/slow"), DEFER_OK);
        admit_submit(p, c);
        ck_assert(STAT_AT_LEAST(p, in_flight, 1, 10000));
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(reg(c, tr, 1, 0, "/own"), DEFER_OK);
        admit_submit(p, c);
        ck_assert_int_eq(defer_pool_shutdown(p, 100), DEFER_ETIMEDOUT);
        used = 2;
        break;
    case OWN_EINVAL:
        ck_assert_int_eq(defer_wait_until(c, NULL, tok_new(tr, 0, 0),
                                          tok_free, "/own"), DEFER_EINVAL);
        ck_assert_int_eq(defer_wait_until(NULL, tok_run, tok_new(tr, 1, 0),
                                          tok_free, "/own"), DEFER_EINVAL);
        used = 2;
        break;
    case OWN_MISUSE:
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(defer_admit(p, c), DEFER_OK);
        ck_assert_int_eq(reg(c, tr, 1, 0, "/own"), DEFER_EMISUSE);
        ck_assert_int_eq(defer_admit(p, c), DEFER_EMISUSE);
        ck_assert_int_eq(atomic_load(&tr->frees[1]), 1);
        defer_submit(p, c);
        want_runs[0] = 1;
        used = 2;
        break;
    case OWN_SHUTDOWN:
        ck_assert_int_eq(defer_pool_shutdown(p, 1000), DEFER_OK);
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(defer_admit(p, c), DEFER_ESHUTDOWN);
        ck_assert_int_eq(atomic_load(&tr->frees[0]), 1);
        used = 1;
        break;
    case OWN_LATE_SUBMIT:
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(defer_admit(p, c), DEFER_OK);
        /* the reservation never drains: shutdown gives up on it */
        ck_assert_int_eq(defer_pool_shutdown(p, 50), DEFER_ETIMEDOUT);
        ck_assert_int_eq(atomic_load(&tr->frees[0]), 0);
        defer_submit(p, c);
        ck_assert_int_eq(atomic_load(&tr->frees[0]), 1);
        used = 1;
        break;
    case OWN_DISCARD_ADMITTED:
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        ck_assert_int_eq(defer_admit(p, c), DEFER_OK);
        defer_ctx_discard(c); /* admitted work is never dropped */
        want_runs[0] = 1;
        used = 1;
        break;
    case OWN_CTX_FREE:
        ck_assert_int_eq(reg(c, tr, 0, 0, "/own"), DEFER_OK);
        defer_ctx_free(c);
        c = NULL;
        ck_assert_int_eq(atomic_load(&tr->frees[0]), 1);
        used = 1;
        break;
    default:
        ck_abort_msg("no such path");
    }

    defer_ctx_free(c);
    srv = defer_pool_shutdown(p, 10000);
    defer_pool_stats(p, &s);
    defer_pool_destroy(p);
    for (i = 0; i < used; i++) {
        ck_assert_msg(atomic_load(&tr->frees[i]) == 1,
                      "%s: task %d freed %d times", own_name[_i], i,
                      atomic_load(&tr->frees[i]));
        ck_assert_msg(atomic_load(&tr->runs[i]) == want_runs[i],
                      "%s: task %d ran %d times", own_name[_i], i,
                      atomic_load(&tr->runs[i]));
    }
    assert_reconciled(&s);
    if (_i == OWN_RUN_FAIL) {
        ck_assert_uint_eq(s.failed, 1);
        ck_assert_int_eq(log_count("event=task_failed", "label=\"/own\"",
                                   "kind=callback"), 1);
        ck_assert_int_eq(log_count("task_failed", "tok asked to fail", NULL),
                         1);
    }
    if (_i == OWN_LEFT) {
        ck_assert_uint_eq(s.left, 3);
        ck_assert_int_eq(log_count("event=task_left", "label=\"/slow\"",
                                   "sql=\"WITH RECURSIVE"), 1);
        ck_assert_int_eq(log_count("event=task_left", "label=\"/own\"",
                                   NULL), 2);
    }
    if (_i == OWN_LATE_SUBMIT)
        ck_assert_uint_eq(s.left, 1);
    if (_i == OWN_SHUTDOWN || _i == OWN_REJECT)
        ck_assert_uint_eq(s.rejected, 1);
    if (_i == OWN_INLINE)
        ck_assert_uint_eq(s.inline_run, 1);
    if (_i == OWN_TOOMANY || _i == OWN_EINVAL || _i == OWN_MISUSE)
        ck_assert_uint_ge(s.refused, 1);
    (void)srv;
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_query_ownership_on_refusal)
{
    /* q is freed on every refusal (ASan/valgrind would report a leak). */
    defer_config cfg = base_cfg();
    defer_pool *p, *nodb;
    defer_ctx *c, *c2;

    cfg.max_tasks_per_request = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(defer_wait_until_query(c, NULL, "/x"), DEFER_EINVAL);
    ck_assert_int_eq(defer_wait_until_query(NULL, q_ins(1), "/x"),
                     DEFER_EINVAL);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/x"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(2), "/x"),
                     DEFER_ETOOMANY);
    defer_ctx_discard(c);
    defer_ctx_free(c);
    defer_pool_destroy(p);

    cfg.db_path = NULL;
    nodb = mkpool(&cfg);
    c2 = mkctx(nodb);
    ck_assert_int_eq(defer_wait_until_query(c2, q_ins(3), "/x"),
                     DEFER_EINVAL);
    defer_ctx_free(c2);
    defer_pool_destroy(nodb);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 0);
}
END_TEST

/* A query built for PostgreSQL is refused by a SQLite pool (and freed);
 * SQLite and PostgreSQL settings together are refused at create, and a
 * build without libpq says how to get it. */
START_TEST(test_dialect_and_engine_checks)
{
    defer_config cfg = base_cfg();
    defer_pool *p, *bad = NULL;
    defer_ctx *c;
    qb_query *q = NULL;
    qb_value v = qb_int(1);
    char eb[256] = "";
    int rc;

    p = mkpool(&cfg);
    ck_assert_int_eq(defer_pool_dialect(p), QB_DIALECT_SQLITE);
    c = mkctx(p);
    ck_assert_int_eq(qb_query_raw_dialect(&q, QB_DIALECT_POSTGRES,
                                          "INSERT INTO t (id) VALUES (?)", 1,
                                          &v, QB_FETCH_NONE), QB_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q, "/x"), DEFER_EINVAL);
    defer_ctx_free(c);
    defer_pool_destroy(p);

    cfg.pg_conninfo = "host=/nonexistent dbname=x";
    ck_assert_int_eq(defer_pool_create(&bad, &cfg, eb, sizeof eb),
                     DEFER_EINVAL);
    ck_assert_ptr_null(bad);
    ck_assert_msg(strstr(eb, "exclusive") != NULL, "%s", eb);
    cfg.db_path = NULL;
    rc = defer_pool_create(&bad, &cfg, eb, sizeof eb);
    ck_assert_ptr_null(bad);
    /* With libpq: cannot connect (EDB); without: EINVAL and the hint. */
    ck_assert_msg(rc == DEFER_EDB ||
                      (rc == DEFER_EINVAL &&
                       strstr(eb, "built without PostgreSQL") != NULL),
                  "rc %d: %s", rc, eb);
}
END_TEST

/* ==== admission policies ================================================ */

/* One worker held in a gate, capacity 2: the gate task and one queued
 * task fill the queue. */
static defer_pool *stalled_pool(defer_config *cfg, tracker *tr, gate *g)
{
    defer_pool *p;
    defer_ctx *c;
    cfg->workers = 1;
    cfg->queue_capacity = 2;
    p = mkpool(cfg);
    c = mkctx(p);
    ck_assert_int_eq(reg_gate(c, tr, 0, g), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(g, 1, 10000));
    ck_assert_int_eq(reg(c, tr, 1, 0, "/q"), DEFER_OK);
    admit_submit(p, c);
    defer_ctx_free(c);
    return p;
}

START_TEST(test_wait_policy_times_out)
{
    tracker *tr = tr_new(4);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    int64_t t0, dt;

    gate_init(&g);
    cfg.policy = DEFER_POLICY_WAIT;
    /* Long enough that the worker took its batch within the bound before
     * we admit (a stall older than the bound is refused at once: see
     * test_wait_policy_refuses_when_stalled). */
    cfg.admit_wait_ms = 3000;
    p = stalled_pool(&cfg, tr, &g);
    c = mkctx(p);
    ck_assert_int_eq(reg(c, tr, 2, 0, "/w"), DEFER_OK);
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_admit(p, c), DEFER_EFULL);
    dt = tu_now_ms() - t0;
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.admit_waits, 1);
    ck_assert_uint_eq(s.admit_stalled, 0);
    /* it waited (condvar timeouts never fire early), and not for ever;
     * the pool had moved less than the bound before, so at least
     * 3000 - that */
    ck_assert_msg(dt >= 10 && dt < 20000, "waited %lld ms", (long long)dt);
    ck_assert_int_eq(atomic_load(&tr->frees[2]), 1);
    ck_assert_int_eq(atomic_load(&tr->runs[2]), 0);
    gate_open(&g);
    defer_ctx_free(c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.rejected, 1);
    ck_assert_uint_eq(s.ok, 2);
    ck_assert_uint_eq(s.depth_hwm, 2);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

typedef struct opener {
    gate *g;
    int delay_ms;
} opener;

static void *open_later(void *arg)
{
    opener *o = arg;
    sleep_ms(o->delay_ms);
    gate_open(o->g);
    return NULL;
}

START_TEST(test_wait_policy_gets_slot)
{
    tracker *tr = tr_new(4);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    pthread_t th;
    opener o;
    int64_t t0, dt;

    gate_init(&g);
    cfg.policy = DEFER_POLICY_WAIT;
    cfg.admit_wait_ms = 20000;
    p = stalled_pool(&cfg, tr, &g);
    c = mkctx(p);
    ck_assert_int_eq(reg(c, tr, 2, 0, "/w"), DEFER_OK);
    o.g = &g;
    o.delay_ms = 100;
    ck_assert_int_eq(pthread_create(&th, NULL, open_later, &o), 0);
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_admit(p, c), DEFER_OK);
    dt = tu_now_ms() - t0;
    defer_submit(p, c);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(dt < 15000, "waited %lld ms", (long long)dt);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.admit_waits, 1);
    defer_ctx_free(c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_pool_destroy(p);
    ck_assert_int_eq(atomic_load(&tr->runs[2]), 1);
    ck_assert_uint_eq(s.rejected, 0);
    ck_assert_uint_eq(s.ok, 3);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

/* Regression (issue 13 item 3): with the writer stalled, WAIT admission
 * held each request thread for the whole bound (100 ms by default), so
 * at c=128 with 4 request threads a 503 took 3 s and /_status as long.
 * A pool that has not taken or finished a batch within admit_wait_ms
 * now refuses at once: the counters show it did not wait. */
START_TEST(test_wait_policy_refuses_when_stalled)
{
    tracker *tr = tr_new(4);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;

    gate_init(&g);
    cfg.policy = DEFER_POLICY_WAIT;
    cfg.admit_wait_ms = 200;
    p = stalled_pool(&cfg, tr, &g);
    /* The worker took its batch before it entered the gate; sleeping
     * past the bound makes the stall older than admit_wait_ms (a lower
     * bound, which sleeping guarantees; the result does not depend on
     * how much longer it takes). */
    sleep_ms(250);
    c = mkctx(p);
    ck_assert_int_eq(reg(c, tr, 2, 0, "/w"), DEFER_OK);
    ck_assert_int_eq(defer_admit(p, c), DEFER_EFULL);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.admit_stalled, 1);
    ck_assert_uint_eq(s.admit_waits, 0);
    ck_assert_int_eq(atomic_load(&tr->frees[2]), 1);
    ck_assert_int_eq(atomic_load(&tr->runs[2]), 0);
    /* Nothing is latched: once the writer has caught up, admission
     * admits again. */
    gate_open(&g);
    ck_assert(wait_depth(p, 0, 60000));
    ck_assert_int_eq(reg(c, tr, 3, 0, "/w"), DEFER_OK);
    ck_assert_int_eq(defer_admit(p, c), DEFER_OK);
    defer_submit(p, c);
    defer_ctx_free(c);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_pool_destroy(p);
    ck_assert_int_eq(atomic_load(&tr->runs[3]), 1);
    ck_assert_uint_eq(s.rejected, 1);
    ck_assert_uint_eq(s.ok, 3);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_reject_policy_is_immediate)
{
    tracker *tr = tr_new(4);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    int64_t t0, dt;

    gate_init(&g);
    cfg.policy = DEFER_POLICY_REJECT;
    cfg.admit_wait_ms = 60000; /* ignored by REJECT */
    p = stalled_pool(&cfg, tr, &g);
    c = mkctx(p);
    ck_assert_int_eq(reg(c, tr, 2, 0, "/r"), DEFER_OK);
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_admit(p, c), DEFER_EFULL);
    dt = tu_now_ms() - t0;
    ck_assert_msg(dt < 5000, "took %lld ms", (long long)dt);
    ck_assert_int_eq(atomic_load(&tr->frees[2]), 1);
    gate_open(&g);
    defer_ctx_free(c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.rejected, 1);
    ck_assert_int_eq(log_count("event=task_rejected", "label=\"/r\"", NULL),
                     1);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_inline_policy_runs_in_caller)
{
    tracker *tr = tr_new(4);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    tok *t;
    pthread_t ran_on;

    gate_init(&g);
    cfg.policy = DEFER_POLICY_INLINE;
    p = stalled_pool(&cfg, tr, &g);
    c = mkctx(p);
    /* registration order: SQL, failing callback, callback */
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(42), "/i"), DEFER_OK);
    ck_assert_int_eq(reg(c, tr, 2, 5, "/i"), DEFER_OK);
    t = tok_new(tr, 3, 0);
    t->tid_out = &ran_on;
    ck_assert_int_eq(defer_wait_until(c, tok_run, t, tok_free, "/i"),
                     DEFER_OK);
    ck_assert_int_eq(defer_admit(p, c), DEFER_INLINE);
    /* already done, in this thread, before anything is "answered" */
    ck_assert(pthread_equal(ran_on, pthread_self()));
    ck_assert_int_eq(atomic_load(&tr->worker[3]), -1);
    ck_assert_int_eq(atomic_load(&tr->frees[2]), 1);
    ck_assert_int_eq(atomic_load(&tr->frees[3]), 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 42"), 1);
    gate_open(&g);
    defer_ctx_free(c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.inline_run, 3);
    ck_assert_uint_eq(s.inline_failed, 1);
    ck_assert_uint_eq(s.admitted, 2);
    ck_assert_uint_eq(s.ok, 2);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

/* ==== ordering =========================================================== */

START_TEST(test_order_one_worker)
{
    enum { NREQ = 50, PER = 4 };
    tracker *tr = tr_new(NREQ * PER);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    gate g;
    int r, i;

    gate_init(&g);
    cfg.workers = 1;
    cfg.batch_max = 7; /* batches cut between requests */
    cfg.max_tasks_per_request = PER;
    p = mkpool(&cfg);
    c = mkctx(p);
    /* hold the worker so that everything queues up first */
    {
        tracker *tg = tr_new(1);
        defer_ctx *cg = mkctx(p);
        ck_assert_int_eq(reg_gate(cg, tg, 0, &g), DEFER_OK);
        admit_submit(p, cg);
        ck_assert(gate_wait_entered(&g, 1, 10000));
        for (r = 0; r < NREQ; r++) {
            for (i = 0; i < PER; i++)
                ck_assert_int_eq(reg(c, tr, r * PER + i, 0, "/o"), DEFER_OK);
            admit_submit(p, c);
        }
        gate_open(&g);
        ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
        defer_ctx_free(cg);
        tr_free(tg);
    }
    ck_assert_int_eq(tr->norder, NREQ * PER);
    for (i = 0; i < NREQ * PER; i++)
        ck_assert_msg(tr->order[i] == i, "position %d ran task %d", i,
                      tr->order[i]);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_request_larger_than_batch)
{
    tracker *tr = tr_new(8);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    int i;

    gate_init(&g);
    cfg.workers = 1;
    cfg.batch_max = 2;
    cfg.max_tasks_per_request = 5;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(reg_gate(c, tr, 0, &g), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 1, 10000));
    for (i = 1; i <= 5; i++)
        ck_assert_int_eq(reg(c, tr, i, 0, "/big"), DEFER_OK);
    admit_submit(p, c);
    ck_assert_int_eq(reg(c, tr, 6, 0, "/small"), DEFER_OK);
    admit_submit(p, c);
    gate_open(&g);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    /* the 5-task request went whole, alone; then the 1-task one */
    ck_assert_uint_eq(s.batches, 3);
    ck_assert_uint_eq(s.batch_hist[0], 2);
    ck_assert_uint_eq(s.batch_hist[2], 1);
    ck_assert_uint_eq(s.batch_tasks, 7); /* 1 + 5 + 1 */
    ck_assert_int_eq(tr->norder, 7);
    for (i = 0; i < 7; i++)
        ck_assert_int_eq(tr->order[i], i);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

/* Callback that checks, on the pool's own connection, that the SQL task
 * registered before it in the same request has been committed. */
typedef struct seen_arg {
    int64_t v;
    atomic_int *bad;
    atomic_int *why;           /* last failure: stage * 1000 + code */
} seen_arg;

static int see_row(defer_env *env, void *arg)
{
    seen_arg *a = arg;
    qb_conn *db = defer_env_db(env);
    qb_query *q = NULL;
    qb_result *res = NULL;
    qb_value v = qb_int(a->v);
    int ok = 0;
    sqlite3 *other = NULL;
    sqlite3_stmt *st = NULL;

    int rc;

    if (db == NULL ||
        qb_query_raw(&q, "SELECT count(*) FROM t WHERE v = ?1", 1, &v,
                     QB_FETCH_ONE) != QB_OK) {
        atomic_store(a->why, 1000);
        goto out;
    }
    rc = qb_exec(db, q, &res);
    if (rc != QB_OK) {
        atomic_store(a->why, 2000 - rc);
        goto out;
    }
    if (qb_result_rows(res) != 1 || qb_result_int(res, 0, 0) != 1) {
        atomic_store(a->why, 3000);
        goto out;
    }
    /* committed means visible to another connection too */
    rc = sqlite3_open(g_db, &other);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(other, 5000);
        rc = sqlite3_prepare_v2(other, "SELECT count(*) FROM t WHERE v = ?1",
                                -1, &st, NULL);
    }
    if (rc != SQLITE_OK) {
        atomic_store(a->why, 4000 + rc);
        goto out;
    }
    sqlite3_bind_int64(st, 1, a->v);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || sqlite3_column_int64(st, 0) != 1) {
        atomic_store(a->why, 5000 + rc);
        goto out;
    }
    ok = 1;
out:
    sqlite3_finalize(st);
    sqlite3_close(other);
    qb_result_free(res);
    qb_query_free(q);
    if (!ok)
        atomic_fetch_add(a->bad, 1);
    return ok ? 0 : 1;
}

START_TEST(test_order_sql_then_callback)
{
    enum { NREQ = 40 };
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    atomic_int bad, why;
    int r;

    atomic_init(&bad, 0);
    atomic_init(&why, 0);
    cfg.workers = 2;
    p = mkpool(&cfg);
    c = mkctx(p);
    for (r = 0; r < NREQ; r++) {
        seen_arg *a = malloc(sizeof *a);
        ck_assert_ptr_nonnull(a);
        a->v = r;
        a->bad = &bad;
        a->why = &why;
        ck_assert_int_eq(defer_wait_until_query(c, q_ins(r), "/m"), DEFER_OK);
        ck_assert_int_eq(defer_wait_until(c, see_row, a, free, "/m"),
                         DEFER_OK);
        ck_assert_int_eq(defer_wait_until_query(c, q_ins(1000 + r), "/m"),
                         DEFER_OK);
        admit_submit(p, c);
    }
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_msg(atomic_load(&bad) == 0, "%d callbacks did not see their "
                  "row committed (last: %d)", atomic_load(&bad),
                  atomic_load(&why));
    ck_assert_uint_eq(s.ok, 3 * NREQ);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 2 * NREQ);
    assert_reconciled(&s);
}
END_TEST

/* ==== group commit: failure isolation, BUSY, time budget ================ */

START_TEST(test_batch_failure_isolated)
{
    tracker *tr = tr_new(1);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    int r;

    gate_init(&g);
    db_exec("INSERT INTO t(v) VALUES (5)");
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(reg_gate(c, tr, 0, &g), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 1, 10000));
    /* ten requests queue up behind the gate; v = 5 already exists */
    for (r = 0; r < 10; r++) {
        char label[32];
        snprintf(label, sizeof label, "/iso/%d", r);
        ck_assert_int_eq(defer_wait_until_query(c, q_ins(r), label),
                         DEFER_OK);
        admit_submit(p, c);
    }
    gate_open(&g);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);

    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 10);
    ck_assert_uint_eq(s.ok, 10);     /* gate + 9 inserts */
    ck_assert_uint_eq(s.failed, 1);
    ck_assert_uint_eq(s.commits, 1); /* the nine went in one transaction */
    ck_assert_uint_eq(s.batches, 2);
    ck_assert_uint_eq(s.batch_hist[0], 1); /* the gate alone */
    ck_assert_uint_eq(s.batch_hist[3], 1); /* 10 tasks: bucket 8..15 */
    ck_assert_int_eq(log_count("event=task_failed", "label=\"/iso/5\"",
                               "sql=\"INSERT INTO t(v) VALUES (?1)\""), 1);
    ck_assert_int_eq(log_count("task_failed", "UNIQUE", NULL), 1);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_partial_failure_rolled_back_alone)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;

    db_exec("INSERT INTO t(v) VALUES (5)");
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    /* one request, one transaction: OR FAIL keeps the rows it inserted
     * before the conflict, so only a rollback of the task alone removes
     * 100 and 101; a second failure later in the same transaction must
     * be isolated too */
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/p"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_sql(
        "INSERT OR FAIL INTO t(v) VALUES (100), (101), (?1)", 1, 5),
        "/p/partial"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(2), "/p"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/p/dup"),
                     DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_sql(
        "INSERT INTO nosuchtable VALUES (?1)", 1, 1), "/p/notable"),
        DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(3), "/p"), DEFER_OK);
    admit_submit(p, c);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v IN (1,2,3)"),
                     3);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v >= 100"), 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 4);
    ck_assert_uint_eq(s.ok, 3);
    ck_assert_uint_eq(s.failed, 3);
    ck_assert_uint_eq(s.commits, 1);
    ck_assert_int_eq(log_count("task_failed", "label=\"/p/partial\"", NULL),
                     1);
    ck_assert_int_eq(log_count("task_failed", "label=\"/p/dup\"", NULL), 1);
    ck_assert_int_eq(log_count("task_failed", "label=\"/p/notable\"",
                               "nosuchtable"), 1);
    assert_reconciled(&s);
}
END_TEST

START_TEST(test_busy_retried_then_succeeds)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    sqlite3 *ext = NULL;

    cfg.workers = 1;
    cfg.db.busy_timeout_ms = 20;
    cfg.busy_retries = 100;
    cfg.busy_backoff_ms = 10;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(sqlite3_open(g_db, &ext), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(ext, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/busy"), DEFER_OK);
    admit_submit(p, c);
    ck_assert(STAT_AT_LEAST(p, retried, 2, 10000));
    ck_assert_int_eq(sqlite3_exec(ext, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(ext);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.ok, 1);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_uint_ge(s.retried, 2);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 1"), 1);
    assert_reconciled(&s);
}
END_TEST

START_TEST(test_busy_beyond_budget_fails)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    sqlite3 *ext = NULL;
    int r;

    cfg.workers = 1;
    cfg.db.busy_timeout_ms = 10;
    cfg.busy_retries = 2;
    cfg.busy_backoff_ms = 5;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(sqlite3_open(g_db, &ext), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(ext, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    for (r = 0; r < 3; r++) {
        ck_assert_int_eq(defer_wait_until_query(c, q_ins(r), "/busy"),
                         DEFER_OK);
        admit_submit(p, c);
    }
    ck_assert(STAT_AT_LEAST(p, failed, 3, 20000));
    ck_assert_int_eq(sqlite3_exec(ext, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(ext);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.failed, 3);
    ck_assert_uint_eq(s.ok, 0);
    /* each transaction attempt retried exactly the budget */
    ck_assert_uint_eq(s.retried % 2, 0);
    ck_assert_uint_ge(s.retried, 2);
    /* Identical failures are folded (first line, then repeated=N):
     * the lines still account for every one of them. */
    ck_assert_int_eq(log_events("event=task_failed", "label=\"/busy\"",
                                "busy after retries"), 3);
    ck_assert_int_eq(log_events("task_failed", "rc=-9", "sql=\"INSERT"), 3);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 0);
    assert_reconciled(&s);
}
END_TEST

START_TEST(test_time_budget_interrupts)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    int64_t t0, dt;

    cfg.workers = 1;
    cfg.task_budget_ms = 200;
    p = mkpool(&cfg);
    c = mkctx(p);
    /* one transaction: the slow write is interrupted (which rolls the
     * whole transaction back); the tasks around it must still land */
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/tb"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_sql(SLOW_INSERT, 0, 0),
                                            "/tb/slow"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(2), "/tb"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_sql(SLOW_SELECT, 0, 0),
                                            "/tb/select"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(3), "/tb"), DEFER_OK);
    t0 = tu_now_ms();
    admit_submit(p, c);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    dt = tu_now_ms() - t0;
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_msg(dt < 20000, "took %lld ms", (long long)dt);
    ck_assert_uint_eq(s.failed, 2);
    ck_assert_uint_eq(s.timeouts, 2);
    ck_assert_uint_eq(s.ok, 3);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v IN (1,2,3)"),
                     3);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 3);
    ck_assert_int_eq(log_count("task_failed", "label=\"/tb/slow\"",
                               "time budget exceeded"), 1);
    ck_assert_int_eq(log_count("task_failed", "label=\"/tb/select\"",
                               "time budget exceeded"), 1);
    assert_reconciled(&s);
}
END_TEST

/* A callback that leaves a transaction open is rolled back and failed. */
static int leave_tx_open(defer_env *env, void *arg)
{
    qb_conn *db = defer_env_db(env);
    qb_query *q = NULL;
    qb_value v = qb_int(777);
    (void)arg;
    if (qb_begin(db) != QB_OK)
        return 1;
    if (qb_query_raw(&q, "INSERT INTO t(v) VALUES (?1)", 1, &v,
                     QB_FETCH_NONE) == QB_OK)
        (void)qb_exec(db, q, NULL);
    qb_query_free(q);
    return 0; /* "forgot" the COMMIT */
}

static int own_tx(defer_env *env, void *arg)
{
    qb_conn *db = defer_env_db(env);
    qb_query *q = NULL;
    qb_value v = qb_int(888);
    int rc;
    (void)arg;
    /* callbacks run outside the batch transaction: they may BEGIN */
    if (qb_begin(db) != QB_OK)
        return 1;
    rc = qb_query_raw(&q, "INSERT INTO t(v) VALUES (?1)", 1, &v,
                      QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_exec(db, q, NULL);
    qb_query_free(q);
    if (rc != QB_OK) {
        (void)qb_rollback(db);
        return 1;
    }
    return qb_commit(db) == QB_OK ? 0 : 1;
}

START_TEST(test_callback_transactions)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;

    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/tx"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until(c, own_tx, NULL, NULL, "/tx/own"),
                     DEFER_OK);
    ck_assert_int_eq(defer_wait_until(c, leave_tx_open, NULL, NULL,
                                      "/tx/open"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(2), "/tx"), DEFER_OK);
    admit_submit(p, c);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.ok, 3);
    ck_assert_uint_eq(s.failed, 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 888"), 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 777"), 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v IN (1,2)"), 2);
    ck_assert_int_eq(log_count("task_failed", "label=\"/tx/open\"",
                               "transaction open"), 1);
    assert_reconciled(&s);
}
END_TEST

/* ==== shutdown =========================================================== */

START_TEST(test_drain_within_deadline)
{
    enum { N = 2000 };
    tracker *tr = tr_new(1);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    pthread_t th;
    opener o;
    int r;

    gate_init(&g);
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(reg_gate(c, tr, 0, &g), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 1, 10000));
    for (r = 0; r < N; r++) {
        ck_assert_int_eq(defer_wait_until_query(c, q_ins(r), "/drain"),
                         DEFER_OK);
        admit_submit(p, c);
    }
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.queued, N);
    /* shutdown starts while the writer is still stalled */
    o.g = &g;
    o.delay_ms = 200;
    ck_assert_int_eq(pthread_create(&th, NULL, open_later, &o), 0);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), N);
    ck_assert_uint_eq(s.ok, N + 1);
    ck_assert_uint_eq(s.left, 0);
    ck_assert_uint_eq(s.depth_hwm, N + 1);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_deadline_with_hung_callback)
{
    tracker *tr = tr_new(4);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    int64_t t0, dt;
    int i, rc;

    gate_init(&g);
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(reg_gate(c, tr, 0, &g), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 1, 10000));
    for (i = 1; i < 4; i++) {
        ck_assert_int_eq(reg(c, tr, i, 0, "/behind"), DEFER_OK);
        admit_submit(p, c);
    }
    t0 = tu_now_ms();
    rc = defer_pool_shutdown(p, 300);
    dt = tu_now_ms() - t0;
    ck_assert_int_eq(rc, DEFER_ETIMEDOUT);
    /* Bounded by deadline + grace (800 ms), not by the callback (which
     * never returns here); the slack is for a loaded machine. */
    ck_assert_msg(dt >= 290 && dt <= 800 + 10000, "shutdown took %lld ms",
                  (long long)dt);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.hung, 1);
    ck_assert_uint_eq(s.left, 4);
    ck_assert_uint_eq(s.ok, 0);
    assert_reconciled(&s);
    for (i = 1; i < 4; i++) {
        ck_assert_int_eq(atomic_load(&tr->frees[i]), 1);
        ck_assert_int_eq(atomic_load(&tr->runs[i]), 0);
    }
    /* the hung callback still owns its argument */
    ck_assert_int_eq(atomic_load(&tr->frees[0]), 0);
    ck_assert_int_eq(log_count("event=task_hung", "/gate", NULL), 1);
    ck_assert_int_eq(log_count("event=task_left", "label=\"/behind\"", NULL),
                     3);
    ck_assert_int_eq(defer_pool_shutdown(p, 300), DEFER_ETIMEDOUT);
    defer_ctx_free(c);
    defer_pool_destroy(p); /* the hung worker keeps the memory alive */

    /* When the callback finally returns, its worker frees its argument
     * once and then the pool. */
    gate_open(&g);
    ck_assert(wait_hung_worker_exit(60000));
    ck_assert_int_eq(log_count("hung_worker_returned", NULL, NULL), 1);
    ck_assert_int_eq(atomic_load(&tr->frees[0]), 1);
    ck_assert_int_eq(log_count("hung_task_returned", NULL, NULL), 1);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

/* Regression (issue 13 item 1): the hung callback is followed by more
 * tasks of the SAME batch (one request).  Shutdown used to free those
 * stolen task structs while the hung worker still held them; when the
 * callback returned, the worker read them (heap-use-after-free under
 * ASan, a double free when the freed memory read as READY).  Now the
 * worker that holds a task owns its memory: shutdown counts and reports
 * the stolen tasks, the worker frees them (never running them) when it
 * comes back. */
START_TEST(test_deadline_hung_callback_mid_batch)
{
    enum { N = 6 };
    tracker *tr = tr_new(N);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    int i;

    gate_init(&g);
    cfg.workers = 1;
    cfg.max_tasks_per_request = N;
    p = mkpool(&cfg);
    c = mkctx(p);
    /* One request: the gate, then callbacks and SQL tasks behind it. */
    ck_assert_int_eq(defer_ctx_set_request_id(c, "req-left"), DEFER_OK);
    ck_assert_int_eq(reg_gate(c, tr, 0, &g), DEFER_OK);
    for (i = 1; i < N; i++) {
        if (i % 2)
            ck_assert_int_eq(reg(c, tr, i, 0, "/behind"), DEFER_OK);
        else
            ck_assert_int_eq(defer_wait_until_query(c, q_ins(i), "/behind"),
                             DEFER_OK);
    }
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 1, 30000));
    ck_assert_int_eq(defer_pool_shutdown(p, 100), DEFER_ETIMEDOUT);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.hung, 1);
    ck_assert_uint_eq(s.left, N);
    ck_assert_uint_eq(s.ok, 0);
    assert_reconciled(&s);
    /* Every task behind the hung one is reported, once, at shutdown. */
    ck_assert_int_eq(log_count("event=task_hung", "/gate", NULL), 1);
    ck_assert_int_eq(log_count("event=task_left", "label=\"/behind\"",
                               "hung worker"), N - 1);
    ck_assert_int_eq(log_count("event=task_left", "kind=sql", "INSERT"),
                     (N - 1) / 2);
    /* each left line names its request, an SQL one its values too */
    ck_assert_int_eq(log_count("event=task_left", "request_id=req-left",
                               NULL), N - 1);
    ck_assert_int_eq(log_count("event=task_hung", "request_id=req-left",
                               NULL), 1);
    ck_assert_int_eq(log_count("event=task_left", "kind=sql",
                               "values=\"1:"), (N - 1) / 2);
    defer_ctx_free(c);
    defer_pool_destroy(p); /* the hung worker keeps the memory alive */

    gate_open(&g);
    ck_assert(wait_hung_worker_exit(60000));
    ck_assert_int_eq(log_count("hung_worker_returned", NULL, NULL), 1);
    /* Each argument freed exactly once, none of the stolen ones run; no
     * task reported twice. */
    ck_assert_int_eq(atomic_load(&tr->frees[0]), 1);
    for (i = 1; i < N; i += 2) {
        ck_assert_int_eq(atomic_load(&tr->runs[i]), 0);
        ck_assert_int_eq(atomic_load(&tr->frees[i]), 1);
    }
    ck_assert_int_eq(log_count("event=task_left", NULL, NULL), N - 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 0);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_deadline_interrupts_sql)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    int64_t t0, dt;

    cfg.workers = 1;
    cfg.task_budget_ms = 0; /* no budget: only the deadline stops it */
    /* "Interrupted, not hung" must not depend on the worker being
     * scheduled within the default 500 ms on a loaded machine: a long
     * grace still tells them apart (SLOW_INSERT runs for minutes unless
     * interrupted), and shutdown returns as soon as the worker leaves. */
    cfg.grace_ms = 20000; /* below the tcase timeout (60 s) */
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/d"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_sql(SLOW_INSERT, 0, 0),
                                            "/d/slow"), DEFER_OK);
    admit_submit(p, c);
    ck_assert(STAT_AT_LEAST(p, in_flight, 2, 10000));
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_pool_shutdown(p, 300), DEFER_ETIMEDOUT);
    dt = tu_now_ms() - t0;
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_msg(dt < 20000, "shutdown took %lld ms", (long long)dt);
    /* interrupted, not hung: both tasks of the rolled-back transaction
     * are reported left (the time it took is a benchmark's business) */
    ck_assert_uint_eq(s.hung, 0);
    ck_assert_uint_eq(s.left, 2);
    ck_assert_int_eq(log_count("event=task_left", "label=\"/d/slow\"",
                               "shutdown deadline"), 1);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 0);
    assert_reconciled(&s);
}
END_TEST

START_TEST(test_counters_reconcile)
{
    enum { NREQ = 300 };
    tracker *tr = tr_new(NREQ * 3 + 2);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;
    uint64_t adm = 0, rej = 0, reg_ok = 0, hist = 0;
    int r, k, rc, id = 1;

    gate_init(&g);
    cfg.workers = 2;
    cfg.queue_capacity = 100;
    cfg.policy = DEFER_POLICY_REJECT;
    cfg.max_tasks_per_request = 3;
    p = mkpool(&cfg);
    c = mkctx(p);
    /* both workers wait in the gate: the queue can only fill up */
    ck_assert_int_eq(reg_gate(c, tr, 0, &g), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 1, 10000));
    ck_assert_int_eq(reg_gate(c, tr, id++, &g), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 2, 10000));
    adm += 2;
    for (r = 0; r < NREQ; r++) {
        int n = 1 + r % 3;
        for (k = 0; k < n; k++) {
            if (r % 4 == 0 && k == 0)
                ck_assert_int_eq(defer_wait_until_query(c, q_ins(r % 50),
                                                        "/rc"), DEFER_OK);
            else
                ck_assert_int_eq(reg(c, tr, id++, r % 7 == 0 ? 1 : 0, "/rc"),
                                 DEFER_OK);
            reg_ok++;
        }
        rc = defer_admit(p, c);
        ck_assert(rc == DEFER_OK || rc == DEFER_EFULL);
        if (rc == DEFER_OK) {
            adm += (uint64_t)n;
            defer_submit(p, c);
        } else {
            rej += (uint64_t)n;
        }
        if (r == NREQ / 2)
            gate_open(&g); /* the queue starts moving halfway */
    }
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.admitted, adm);
    ck_assert_uint_eq(s.rejected, rej);
    ck_assert_uint_eq(s.admitted + s.rejected, reg_ok + 2);
    ck_assert_uint_gt(s.rejected, 0);
    ck_assert_uint_gt(s.failed, 0);
    ck_assert_uint_eq(s.depth_hwm, 100);
    for (k = 0; k < DEFER_HIST_BUCKETS; k++)
        hist += s.batch_hist[k];
    ck_assert_uint_eq(hist, s.batches);
    /* every admitted task was taken in a batch exactly once */
    ck_assert_uint_eq(s.batch_tasks, s.admitted);
    for (k = 0; k < id; k++)
        ck_assert_int_eq(atomic_load(&tr->frees[k]), 1);
    assert_reconciled(&s);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

START_TEST(test_two_pools_independent)
{
    tracker *tr = tr_new(64);
    defer_config ca = base_cfg(), cb = base_cfg();
    char db2[4200];
    defer_pool *a, *b;
    defer_ctx *c1, *c2;
    defer_stats sa, sb;
    gate g;
    int i;

    gate_init(&g);
    snprintf(db2, sizeof db2, "%s/u.db", g_dir);
    ca.workers = 1;
    ca.name = "poolA";
    cb.name = "poolB";
    cb.db_path = db2;
    a = mkpool(&ca);
    b = mkpool(&cb);
    c1 = mkctx(a);
    c2 = mkctx(b);
    /* a ctx belongs to its pool */
    ck_assert_int_eq(defer_admit(b, c1), DEFER_EINVAL);
    ck_assert_int_eq(reg_gate(c1, tr, 0, &g), DEFER_OK);
    admit_submit(a, c1);
    ck_assert(gate_wait_entered(&g, 1, 10000));
    for (i = 1; i < 21; i++) {
        ck_assert_int_eq(reg(c2, tr, i, 0, "/b"), DEFER_OK);
        admit_submit(b, c2);
    }
    ck_assert_int_eq(defer_wait_until_query(c2, q_sql(
        "CREATE TABLE IF NOT EXISTS u(x)", 0, 0), "/b"), DEFER_OK);
    admit_submit(b, c2);
    /* pool B drains and stops while pool A is stuck */
    ck_assert_int_eq(defer_pool_shutdown(b, 20000), DEFER_OK);
    defer_pool_stats(b, &sb);
    defer_pool_stats(a, &sa);
    ck_assert_uint_eq(sb.ok, 21);
    ck_assert_uint_eq(sa.ok, 0);
    ck_assert_uint_eq(sa.in_flight, 1);
    /* A still admits */
    ck_assert_int_eq(reg(c1, tr, 30, 0, "/a"), DEFER_OK);
    admit_submit(a, c1);
    gate_open(&g);
    ck_assert_int_eq(defer_pool_shutdown(a, 20000), DEFER_OK);
    defer_pool_stats(a, &sa);
    ck_assert_uint_eq(sa.ok, 2);
    ck_assert_int_eq(log_count("pool=poolB", "event=shutdown", NULL), 1);
    ck_assert_int_eq(log_count("pool=poolA", "event=shutdown", NULL), 1);
    defer_ctx_free(c1);
    defer_ctx_free(c2);
    defer_pool_destroy(a);
    defer_pool_destroy(b);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

/* ==== stress ============================================================= */

typedef struct stress_sub {
    defer_pool *pool;
    tracker *tr;
    int first, count;          /* ids [first, first+count) */
    uint64_t seed;
    /* results, read by the test thread after join */
    int registered;            /* ids [first, first+registered) handed in */
    uint64_t admitted, rejected, inlined, errors;
} stress_sub;

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *stress_submitter(void *arg)
{
    stress_sub *ss = arg;
    defer_ctx *c = NULL;
    int id = ss->first, end = ss->first + ss->count;

    if (defer_ctx_create(ss->pool, &c) != DEFER_OK) {
        ss->errors++;
        return NULL;
    }
    while (id < end) {
        int n = 1 + (int)(xs(&ss->seed) % 4), k, rc;
        if (n > end - id)
            n = end - id;
        for (k = 0; k < n; k++, id++) {
            tok *t = tok_make(ss->tr, id, id % 97 == 0 ? 3 : 0);
            if (t == NULL) {
                ss->errors++;
                continue;
            }
            /* some tasks take a while, so that the queue builds up */
            t->sleep_ms = id % 32 == 1 ? 1 : 0;
            if (defer_wait_until(c, tok_run, t, tok_free, "/stress") !=
                DEFER_OK)
                ss->errors++;
        }
        ss->registered = id - ss->first;
        rc = defer_admit(ss->pool, c);
        if (rc == DEFER_OK) {
            ss->admitted += (uint64_t)n;
            defer_submit(ss->pool, c);
        } else if (rc == DEFER_EFULL) {
            ss->rejected += (uint64_t)n;
        } else if (rc == DEFER_INLINE) {
            ss->inlined += (uint64_t)n;
        } else if (rc == DEFER_ESHUTDOWN) {
            ss->rejected += (uint64_t)n;
            break;
        } else {
            ss->errors++;
            break;
        }
    }
    defer_ctx_free(c);
    return NULL;
}

static void quiet_log(void *ud, int level, const char *line)
{
    atomic_int *n = ud;
    (void)level;
    (void)line;
    atomic_fetch_add(n, 1);
}

START_TEST(test_stress_random_shutdown)
{
    enum { SUBS = 4 };
    const char *env = getenv("DEFER_STRESS_TASKS");
    int total = env != NULL ? atoi(env) : 100000;
    static const defer_policy pol[3] = {
        DEFER_POLICY_WAIT, DEFER_POLICY_REJECT, DEFER_POLICY_INLINE
    };
    uint64_t seed = (uint64_t)tu_now_ns() | 1;
    tracker *tr;
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_stats s;
    stress_sub sub[SUBS];
    pthread_t th[SUBS];
    atomic_int nlog;
    uint64_t adm = 0, rej = 0, inl = 0, runs = 0;
    unsigned deadline;
    int i, registered = 0, delay;

    if (total < 1000)
        total = 1000;
    tr = tr_new(total);
    atomic_init(&nlog, 0);
    cfg.workers = 8;
    cfg.queue_capacity = 2048;
    cfg.max_tasks_per_request = 4;
    cfg.batch_max = 64;
    cfg.admit_wait_ms = 2;
    cfg.policy = pol[_i % 3];
    cfg.db_path = NULL;
    cfg.log = quiet_log;
    cfg.log_ud = &nlog;
    p = mkpool(&cfg);
    for (i = 0; i < SUBS; i++) {
        memset(&sub[i], 0, sizeof sub[i]);
        sub[i].pool = p;
        sub[i].tr = tr;
        sub[i].first = i * (total / SUBS);
        sub[i].count = i == SUBS - 1 ? total - sub[i].first : total / SUBS;
        sub[i].seed = seed + (uint64_t)i * 0x9e3779b97f4a7c15ull;
        ck_assert_int_eq(pthread_create(&th[i], NULL, stress_submitter,
                                        &sub[i]), 0);
    }
    /* a random moment, and a deadline that is sometimes zero */
    delay = (int)(xs(&seed) % 400);
    deadline = (unsigned[]){ 0, 5, 10000 }[xs(&seed) % 3];
    sleep_ms(delay);
    (void)defer_pool_shutdown(p, deadline);
    for (i = 0; i < SUBS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    defer_pool_stats(p, &s);
    defer_pool_destroy(p);

    for (i = 0; i < SUBS; i++) {
        int k;
        ck_assert_uint_eq(sub[i].errors, 0);
        adm += sub[i].admitted;
        rej += sub[i].rejected;
        inl += sub[i].inlined;
        registered += sub[i].registered;
        for (k = 0; k < sub[i].count; k++) {
            int id = sub[i].first + k;
            int want = k < sub[i].registered ? 1 : 0;
            ck_assert_msg(atomic_load(&tr->frees[id]) == want,
                          "seed %llu: task %d freed %d times",
                          (unsigned long long)seed, id,
                          atomic_load(&tr->frees[id]));
            ck_assert_int_le(atomic_load(&tr->runs[id]), 1);
            runs += (uint64_t)atomic_load(&tr->runs[id]);
        }
    }
    ck_assert_uint_eq(s.admitted, adm);
    /* an inline run overtaken by the deadline counts its unrun tasks as
     * rejected, not inline */
    ck_assert_uint_eq(s.rejected + s.inline_run, rej + inl);
    ck_assert_uint_eq(adm + rej + inl, (uint64_t)registered);
    ck_assert_uint_eq(s.hung, 0);
    ck_assert_uint_eq(runs, s.ok + s.failed + s.inline_run);
    if (getenv("DEFER_STRESS_VERBOSE") != NULL)
        fprintf(stderr, "stress policy=%d delay=%d deadline=%u registered=%d "
                "admitted=%llu rejected=%llu inline=%llu ok=%llu "
                "failed=%llu left=%llu batches=%llu hwm=%llu\n",
                (int)cfg.policy, delay, deadline, registered,
                (unsigned long long)s.admitted,
                (unsigned long long)s.rejected,
                (unsigned long long)s.inline_run,
                (unsigned long long)s.ok, (unsigned long long)s.failed,
                (unsigned long long)s.left, (unsigned long long)s.batches,
                (unsigned long long)s.depth_hwm);
    assert_reconciled(&s);
    tr_free(tr);
}
END_TEST

/* ==== creation, errors, hygiene ========================================== */

START_TEST(test_config_errors)
{
    defer_config cfg = base_cfg();
    defer_pool *p = (defer_pool *)&cfg;
    char err[256];
    int rc, codes[] = { DEFER_OK, DEFER_INLINE, DEFER_ENOMEM, DEFER_EINVAL,
                        DEFER_EFULL, DEFER_ETOOMANY, DEFER_ESHUTDOWN,
                        DEFER_ETIMEDOUT, DEFER_EDB, DEFER_ETHREAD,
                        DEFER_EMISUSE, -1000 };
    size_t i;

    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        ck_assert_ptr_nonnull(defer_strerror(codes[i]));
    ck_assert_str_eq(defer_strerror(DEFER_EFULL), "queue full");

    cfg.workers = 0;
    err[0] = '\0';
    ck_assert_int_eq(defer_pool_create(&p, &cfg, err, sizeof err),
                     DEFER_EINVAL);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(err, "workers"));

    cfg = base_cfg();
    cfg.queue_capacity = 0;
    ck_assert_int_eq(defer_pool_create(&p, &cfg, NULL, 0), DEFER_EINVAL);
    cfg = base_cfg();
    cfg.policy = (defer_policy)42;
    ck_assert_int_eq(defer_pool_create(&p, &cfg, NULL, 0), DEFER_EINVAL);
    ck_assert_int_eq(defer_pool_create(NULL, &cfg, NULL, 0), DEFER_EINVAL);

    cfg = base_cfg();
    cfg.db_path = "/nonexistent-dir-for-defer/x.db";
    rc = defer_pool_create(&p, &cfg, err, sizeof err);
    ck_assert_int_eq(rc, DEFER_EDB);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(err, "nonexistent"));

    /* NULL handles are no-ops */
    defer_pool_destroy(NULL);
    defer_ctx_free(NULL);
    defer_ctx_discard(NULL);
    defer_submit(NULL, NULL);
    ck_assert_int_eq(defer_admit(NULL, NULL), DEFER_EINVAL);
    ck_assert_int_eq(defer_pool_shutdown(NULL, 0), DEFER_EINVAL);
    ck_assert_int_eq(defer_ctx_create(NULL, NULL), DEFER_EINVAL);

    /* defaults */
    ck_assert_int_eq(defer_pool_create(&p, NULL, NULL, 0), DEFER_OK);
    defer_pool_destroy(p);
}
END_TEST

START_TEST(test_worker_threads_named_and_masked)
{
    tracker *tr = tr_new(2);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    char name[16] = "";
    int blocked = 0;
    tok *t;

    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    t = tok_new(tr, 0, 0);
    t->name_out = name;
    t->sigterm_blocked_out = &blocked;
    ck_assert_int_eq(defer_wait_until(c, tok_run, t, tok_free, "/h"),
                     DEFER_OK);
    admit_submit(p, c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_str_eq(name, "defer-w0");
    ck_assert_int_eq(blocked, 1);
    ck_assert_int_eq(atomic_load(&tr->worker[0]), 0);
    tr_free(tr);
}
END_TEST

START_TEST(test_log_lines_escaped)
{
    tracker *tr = tr_new(1);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;

    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(reg(c, tr, 0, 9, "/a \"q\"\nb\\"), DEFER_OK);
    admit_submit(p, c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    /* one line, quotes and newline escaped */
    ck_assert_int_eq(log_count("event=task_failed",
                               "label=\"/a \\\"q\\\"\\nb\\\\\"", "rc=9"), 1);
    tr_free(tr);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

START_TEST(test_thread_create_failure_joins)
{
    /* Make pthread_create fail part-way (no address space left for more
     * thread stacks): create must fail cleanly with DEFER_ETHREAD after
     * joining the workers it did start.  Needs a process of its own, and
     * sanitizers reserve too much address space for the trick. */
#ifdef UNDER_SANITIZER
    return;
#else
    defer_config cfg = base_cfg();
    defer_pool *p = NULL;
    struct rlimit rl;
    char err[256] = "";
    const char *fork_env = getenv("CK_FORK");
    int rc;

    if ((fork_env != NULL && strcmp(fork_env, "no") == 0) ||
        getenv("DEFER_NO_RLIMIT_TEST") != NULL)
        return; /* would cripple the shared process (or valgrind) */
    cfg.workers = 256;
    cfg.db_path = NULL;
    getrlimit(RLIMIT_AS, &rl);
    {
        /* current mappings + room for a few 8 MiB stacks */
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
        fclose(f);
        rl.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) +
                      (rlim_t)64 * 1024 * 1024;
        ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
    }
    rc = defer_pool_create(&p, &cfg, err, sizeof err);
    ck_assert_int_eq(rc, DEFER_ETHREAD);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(err, "pthread_create"));
#endif
}
END_TEST

/* ==== the adaptive group-commit window ================================ */

/* The rule: 9 x the mean COMMIT time, within [batch_delay,
 * max(batch_delay, batch_delay_max)]; batch_delay 0 keeps no window. */
START_TEST(test_window_rule)
{
    defer_config c;

    defer_config_init(&c); /* 2 ms, at most 20 ms */
    ck_assert_int_eq(defer__window_ns(&c, 0), 2000000);
    ck_assert_int_eq(defer__window_ns(&c, 12000), 2000000); /* a cheap one */
    ck_assert_int_eq(defer__window_ns(&c, 1000000), 9000000); /* an fsync */
    ck_assert_int_eq(defer__window_ns(&c, 5000000), 20000000); /* ceiling */
    c.batch_delay_max_us = 1000; /* below batch_delay: a fixed window */
    ck_assert_int_eq(defer__window_ns(&c, 5000000), 2000000);
    c.batch_delay_us = 0; /* no window at all, however slow the commit */
    c.batch_delay_max_us = 20000;
    ck_assert_int_eq(defer__window_ns(&c, 5000000), 0);
    /* The mean: the first batch's whole, then 1/8 of the way per batch. */
    ck_assert_int_eq(defer__commit_avg(0, 3000, 3), 1000);
    ck_assert_int_eq(defer__commit_avg(1000, 9000, 1), 2000);
    ck_assert_int_eq(defer__commit_avg(2000, 2000, 1), 2000);
    ck_assert_int_eq(defer__commit_avg(2000, 400, 1), 1800);
}
END_TEST

/* Slow commits widen the window.  Every COMMIT is measured 50 ms longer
 * than it took: after the first, the mean passes 50 ms and the window is
 * at its ceiling (200 ms here), so a task submitted alone then waits that
 * long before it runs.  Elapsed time is only bounded from below (a window
 * that did not adapt would run it after 1 ms). */
/* One worker, a window of 1 ms .. max_us; its first task committed with
 * every COMMIT measured fault_ns longer (the fault stays set). */
static defer_pool *slow_commit_pool(unsigned max_us, int64_t fault_ns,
                                    defer_ctx **c)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_stats s;

    cfg.workers = 1;
    cfg.batch_delay_us = 1000;
    cfg.batch_delay_max_us = max_us;
    p = mkpool(&cfg);
    *c = mkctx(p);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.commit_mean_us, 0);
    ck_assert_uint_eq(s.window_us, 1000);
    atomic_store(&defer__commit_fault_ns, fault_ns);
    ck_assert_int_eq(defer_wait_until_query(*c, q_ins(1), "/w/1"), DEFER_OK);
    admit_submit(p, *c);
    ck_assert(STAT_AT_LEAST(p, commits, 1, 30000));
    return p;
}

START_TEST(test_window_adapts_to_commit_time)
{
    defer_ctx *c;
    defer_pool *p = slow_commit_pool(200000, 50000000, &c);
    defer_stats s;
    int64_t t0;

    defer_pool_stats(p, &s);
    ck_assert_uint_ge(s.commit_mean_us, 50000);
    ck_assert_uint_eq(s.window_us, 200000);
    t0 = tu_now_ms();
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(2), "/w/2"), DEFER_OK);
    admit_submit(p, c);
    ck_assert(STAT_AT_LEAST(p, commits, 2, 30000));
    ck_assert_int_ge(tu_now_ms() - t0, 200);
    atomic_store(&defer__commit_fault_ns, 0);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.ok, 2);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), 2);
}
END_TEST

/* A worker in a long window when shutdown starts leaves it at once: a
 * drain wants the queue empty, not a full batch.  (Found by a second
 * reader: shutdown woke no one in a window, so a stop waited out up to
 * batch_delay_max, and a deadline shorter than what was left of the
 * window reported a healthy queue's task as left.)  The window here is
 * 1 s and the deadline 900 ms: the drain must not need the window. */
START_TEST(test_shutdown_ends_window)
{
    defer_ctx *c;
    defer_pool *p = slow_commit_pool(1000000, 200000000, &c);
    defer_stats s;
    int64_t end;
    unsigned in_window = 0, n;
    uint64_t committed;

    atomic_store(&defer__commit_fault_ns, 0);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.window_us, 1000000);
    /* A task, then wait until the worker sits in its window for it (a
     * condition, bounded).  Should this thread be starved for the whole
     * second, the task commits before it is seen: then another. */
    for (n = 2; in_window == 0 && n < 7; n++) {
        char label[16];
        snprintf(label, sizeof label, "/s/%u", n);
        ck_assert_int_eq(defer_wait_until_query(c, q_ins(n), label),
                         DEFER_OK);
        admit_submit(p, c);
        end = tu_now_ms() + 30000;
        for (;;) {
            defer__lock(p);
            in_window = p->windows;
            committed = p->st.commits;
            defer__unlock(p);
            if (in_window != 0 || committed >= n || tu_now_ms() > end)
                break;
            sleep_ms(1);
        }
    }
    ck_assert_uint_eq(in_window, 1);
    ck_assert_int_eq(defer_pool_shutdown(p, 900), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.ok, n - 1);
    ck_assert_uint_eq(s.left, 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"), (int64_t)n - 1);
}
END_TEST

/* ==== found by a second reader (issue 13 item 1 and 3 changes) ======== */

/* A pool idle for longer than admit_wait_ms is not a stalled pool.  A
 * burst fills the queue before the worker has taken its first batch (it
 * sits in its group-commit window): WAIT admission must wait, cut the
 * window short and get the slots the batch frees.  (The first version of
 * the stall check refused it at once: progress was the pool's start.) */
START_TEST(test_wait_after_idle_burst)
{
    tracker *tr = tr_new(8);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *a, *b, *c;
    defer_stats s;
    int rc;

    cfg.workers = 1;
    cfg.policy = DEFER_POLICY_WAIT;
    cfg.admit_wait_ms = 1000;
    cfg.queue_capacity = 4;
    cfg.max_tasks_per_request = 4;
    cfg.batch_delay_us = 1000000; /* the window: ended by a waiter */
    p = mkpool(&cfg);
    a = mkctx(p);
    b = mkctx(p);
    c = mkctx(p);
    /* Idle for longer than the bound (a lower bound sleeping guarantees). */
    sleep_ms(1100);
    /* The burst: 2 queued (the worker wakes and opens its window), 2
     * reserved by a request still being answered: the queue is full. */
    ck_assert_int_eq(reg(a, tr, 0, 0, "/burst"), DEFER_OK);
    ck_assert_int_eq(reg(a, tr, 1, 0, "/burst"), DEFER_OK);
    admit_submit(p, a);
    ck_assert_int_eq(reg(b, tr, 2, 0, "/burst"), DEFER_OK);
    ck_assert_int_eq(reg(b, tr, 3, 0, "/burst"), DEFER_OK);
    ck_assert_int_eq(defer_admit(p, b), DEFER_OK);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.depth, 4);
    ck_assert_uint_eq(s.batches, 0); /* precondition: nothing taken yet */
    /* A healthy worker, 2 queued tasks it will run as soon as asked. */
    ck_assert_int_eq(reg(c, tr, 4, 0, "/burst"), DEFER_OK);
    rc = defer_admit(p, c);
    defer_pool_stats(p, &s);
    ck_assert_msg(rc == DEFER_OK,
                  "admission after an idle period: %s (admit_stalled=%llu "
                  "admit_waits=%llu)", defer_strerror(rc),
                  (unsigned long long)s.admit_stalled,
                  (unsigned long long)s.admit_waits);
    defer_submit(p, c);
    defer_submit(p, b);
    ck_assert_int_eq(defer_pool_shutdown(p, 30000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(a);
    defer_ctx_free(b);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.ok, 5);
    assert_reconciled(&s);
    tr_free(tr);
}
END_TEST

/* A batch whose first task finished before the deadline and whose
 * second hangs: once shutdown has returned, admitted == ok + failed +
 * left (defer.h).  The finished task's outcome used to sit in the hung
 * worker's runner, and its slot in in_flight, until the callback returned
 * -- never, if it never did.  Each segment is now settled as it ends. */
START_TEST(test_hung_after_done_reconciles)
{
    tracker *tr = tr_new(4);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    gate g;

    gate_init(&g);
    cfg.workers = 1;
    cfg.max_tasks_per_request = 3;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(reg(c, tr, 0, 0, "/first"), DEFER_OK);
    ck_assert_int_eq(reg_gate(c, tr, 1, &g), DEFER_OK);
    ck_assert_int_eq(reg(c, tr, 2, 0, "/behind"), DEFER_OK);
    admit_submit(p, c);
    ck_assert(gate_wait_entered(&g, 1, 30000));
    ck_assert_int_eq(atomic_load(&tr->runs[0]), 1);
    ck_assert_int_eq(defer_pool_shutdown(p, 100), DEFER_ETIMEDOUT);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.hung, 1);
    /* keep the test's memory valid whatever the outcome */
    gate_open(&g);
    ck_assert(wait_hung_worker_exit(60000));
    defer_ctx_free(c);
    defer_pool_destroy(p);
    assert_reconciled(&s);
    ck_assert_uint_eq(s.ok, 1);
    gate_destroy(&g);
    tr_free(tr);
}
END_TEST

/* An SQL task RUNNING when shutdown gives up is marked HUNG and its SQL
 * read (qb_query_sql(t->arg)) under pool->mu for the report; the worker
 * used to free a claimed task's arg in finish_sql without pool->mu.  Here
 * the worker is in finish_sql, held in the log callback on the first
 * task's "task_left" line, when the grace period ends: shutdown marks the
 * second task HUNG and formats its SQL.  Nothing orders the two (the log
 * callback spins on a relaxed flag and takes no lock), so TSan reported
 * the free racing with shutdown's read (plain and ASan builds pass: the
 * forced order, read then free, does not crash).  Now a HUNG task's arg
 * is freed after the batch, when shutdown no longer looks at it. */
static atomic_int g_blk_armed, g_blk_entered, g_blk_release;

static void blocking_log(void *ud, int level, const char *line)
{
    int exp = 1;
    if (strstr(line, "event=task_left") != NULL &&
        strstr(line, "interrupted at the shutdown deadline") != NULL &&
        atomic_compare_exchange_strong_explicit(&g_blk_armed, &exp, 0,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {
        atomic_store_explicit(&g_blk_entered, 1, memory_order_relaxed);
        while (!atomic_load_explicit(&g_blk_release, memory_order_relaxed))
            sleep_ms(1);
        return; /* no lock: nothing may order us after shutdown */
    }
    cap_log(ud, level, line);
}

START_TEST(test_hung_sql_arg_vs_report)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;

    atomic_store(&g_blk_armed, 1);
    atomic_store(&g_blk_entered, 0);
    atomic_store(&g_blk_release, 0);
    cfg.workers = 1;
    cfg.task_budget_ms = 0;
    cfg.log = blocking_log;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(1), "/d"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(c, q_sql(SLOW_INSERT, 0, 0),
                                            "/d/slow"), DEFER_OK);
    admit_submit(p, c);
    ck_assert(STAT_AT_LEAST(p, in_flight, 2, 10000));
    ck_assert_int_eq(defer_pool_shutdown(p, 300), DEFER_ETIMEDOUT);
    ck_assert(atomic_load_explicit(&g_blk_entered, memory_order_relaxed));
    defer_pool_stats(p, &s);
    /* The slow task was still RUNNING in the worker's finish_sql: HUNG,
     * its SQL formatted by shutdown. */
    ck_assert_uint_eq(s.hung, 1);
    ck_assert_int_eq(log_count("event=task_hung", "kind=sql",
                               "SELECT x + 10000000"), 1);
    atomic_store_explicit(&g_blk_release, 1, memory_order_relaxed);
    ck_assert(wait_hung_worker_exit(60000));
    defer_ctx_free(c);
    defer_pool_destroy(p);
}
END_TEST

/* ==== the log: repeats folded, lines that cannot be written counted ===== */

START_TEST(test_log_repeats_folded)
{
    enum { N = 300 };
    tracker *tr = tr_new(N);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    int64_t t0;
    long lines, firsts, secs;
    int i;

    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    t0 = tu_now_ms();
    for (i = 0; i < N; i++) {
        ck_assert_int_eq(reg(c, tr, i, 7, "/same"), DEFER_OK);
        admit_submit(p, c);
    }
    ck_assert(STAT_AT_LEAST(p, failed, N, 20000));
    secs = (long)((tu_now_ms() - t0) / 1000);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    /* Every failure is accounted for in the log ... */
    ck_assert_int_eq(log_events("event=task_failed", "tok asked to fail",
                                NULL), N);
    /* ... by its first line and at most one summary a second, not N. */
    lines = log_count("event=task_failed", "tok asked to fail", NULL);
    firsts = lines - log_count("event=task_failed", "repeated=", NULL);
    ck_assert_int_ge(firsts, 1);
    ck_assert_msg(lines <= 2 * (secs + 2), "%ld lines in %ld s", lines, secs);
    ck_assert_uint_eq(s.log_repeated, (uint64_t)(N - firsts));
    ck_assert_uint_eq(s.failed, N);
    tr_free(tr);
}
END_TEST

START_TEST(test_log_distinct_failures_not_folded_together)
{
    enum { N = 100 };
    tracker *tr = tr_new(2 * N);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    int i;

    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < N; i++) {
        /* two kinds of failure (rc 7 and 8) interleaved */
        ck_assert_int_eq(reg(c, tr, 2 * i, 7, "/a"), DEFER_OK);
        ck_assert_int_eq(reg(c, tr, 2 * i + 1, 8, "/b"), DEFER_OK);
        admit_submit(p, c);
    }
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_int_eq(log_events("event=task_failed", " rc=7 ", NULL), N);
    ck_assert_int_eq(log_events("event=task_failed", " rc=8 ", NULL), N);
    ck_assert_int_ge(log_count("event=task_failed", " rc=7 ", NULL), 1);
    ck_assert_int_ge(log_count("event=task_failed", " rc=8 ", NULL), 1);
    tr_free(tr);
}
END_TEST

START_TEST(test_log_dropped_counted)
{
    tracker *tr = tr_new(3);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    int full, saved, i;

    full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (full < 0)
        return; /* no /dev/full here: nothing to write into that fails */
    cfg.log = NULL; /* the pool's own stderr line */
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    /* stderr on a full disk (ENOSPC on every write) */
    saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_eq(dup2(full, STDERR_FILENO), STDERR_FILENO);
    for (i = 0; i < 3; i++) { /* three different failures: three lines */
        ck_assert_int_eq(reg(c, tr, i, 10 + i, "/drop"), DEFER_OK);
        admit_submit(p, c);
    }
    ck_assert(STAT_AT_LEAST(p, failed, 3, 10000));
    ck_assert(STAT_AT_LEAST(p, log_dropped, 3, 10000));
    ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(full);
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.log_dropped, 3);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    tr_free(tr);
}
END_TEST

/* ==== database health: lost file, failing database ====================== */

static int wait_db_state(defer_pool *p, int state, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    defer_stats s;
    do {
        defer_pool_stats(p, &s);
        if (s.db_state == state)
            return 1;
        sleep_ms(5);
    } while (tu_now_ms() < end);
    return 0;
}

/* Bounded wait for a line holding both needles. */
static int wait_log(const char *n1, const char *n2, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    do {
        if (log_count(n1, n2, NULL) > 0)
            return 1;
        sleep_ms(5);
    } while (tu_now_ms() < end);
    return 0;
}

/* A scalar of the database at path (-1 if it cannot be read). */
static int64_t scalar_at(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* PRAGMA integrity_check of the file at path says "ok". */
static int integrity_ok(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ok = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ok = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Register one insert of v and admit it; submit when admitted. */
static int try_insert(defer_pool *p, defer_ctx *c, int64_t v,
                      const char *label)
{
    int rc;
    ck_assert_int_eq(defer_wait_until_query(c, q_ins(v), label), DEFER_OK);
    rc = defer_admit(p, c);
    if (rc == DEFER_OK)
        defer_submit(p, c);
    return rc;
}

/* Keep writing (v from v0, one request every ms) until admission
 * refuses or timeout_ms pass; returns what was admitted, *rc the last
 * admission result. */
static int insert_until_refused(defer_pool *p, defer_ctx *c, int64_t v0,
                                const char *label, int timeout_ms, int *rc)
{
    int64_t end = tu_now_ms() + timeout_ms;
    int n = 0;
    *rc = DEFER_OK;
    while (*rc == DEFER_OK && tu_now_ms() < end) {
        *rc = try_insert(p, c, v0 + n, label);
        if (*rc == DEFER_OK)
            n++;
        sleep_ms(1);
    }
    return n;
}

/* rm of the database file while the pool runs: nothing written after it
 * may be counted ok; the loss is logged once, refused at admission and
 * reported; the old file's -wal/-shm are taken away and nothing is
 * created at the path. */
START_TEST(test_db_removed_nothing_counted_ok_after)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    char side[4200];
    int i, rc, after;
    int64_t t0;

    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < 20; i++)
        ck_assert_int_eq(try_insert(p, c, i, "/before"), DEFER_OK);
    ck_assert(STAT_AT_LEAST(p, ok, 20, 10000));
    ck_assert_int_eq(unlink(g_db), 0);
    t0 = tu_now_ms();
    after = insert_until_refused(p, c, 1000, "/after", 15000, &rc);
    ck_assert_int_eq(rc, DEFER_EUNAVAIL);
    ck_assert(STAT_AT_LEAST(p, failed, (uint64_t)after, 10000));
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.ok, 20);
    ck_assert_uint_eq(s.failed, (uint64_t)after);
    ck_assert_int_eq(s.db_state, DEFER_DB_LOST);
    ck_assert_ptr_nonnull(strstr(s.db_reason, "removed"));
    ck_assert_uint_eq(s.db_lost, 1);
    ck_assert_uint_ge(s.unavail, 1);
    ck_assert_uint_eq(s.rejected, s.unavail);
    ck_assert_int_eq(log_count("event=db_lost", "was removed", NULL), 1);
    ck_assert(wait_log("event=db_wal_removed", NULL, 10000));
    snprintf(side, sizeof side, "%s-wal", g_db);
    ck_assert(!exists(side));
    snprintf(side, sizeof side, "%s-shm", g_db);
    ck_assert(!exists(side));
    ck_assert(!exists(g_db));
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert(!exists(g_db));
    /* every failed write is in the log (shutdown wrote the last
     * summaries), in a few lines */
    ck_assert_int_eq(log_events("event=task_failed", "label=\"/after\"",
                                "was removed"), after);
    ck_assert_int_le(log_count("event=task_failed", NULL, NULL),
                     2 * (int)((tu_now_ms() - t0) / 1000 + 2));
    assert_reconciled(&s);
}
END_TEST

/* truncate -s 0 of the database file: as rm, and the path is left an
 * empty database, not a malformed one. */
START_TEST(test_db_truncated_nothing_counted_ok_after)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    int i, rc, after;

    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < 20; i++)
        ck_assert_int_eq(try_insert(p, c, i, "/before"), DEFER_OK);
    ck_assert(STAT_AT_LEAST(p, ok, 20, 10000));
    ck_assert_int_eq(truncate(g_db, 0), 0);
    after = insert_until_refused(p, c, 1000, "/after", 15000, &rc);
    ck_assert_int_eq(rc, DEFER_EUNAVAIL);
    ck_assert(STAT_AT_LEAST(p, failed, (uint64_t)after, 10000));
    defer_pool_stats(p, &s);
    ck_assert_uint_eq(s.ok, 20);
    ck_assert_uint_eq(s.failed, (uint64_t)after);
    ck_assert_int_eq(s.db_state, DEFER_DB_LOST);
    ck_assert_ptr_nonnull(strstr(s.db_reason, "truncated"));
    ck_assert_int_eq(log_count("event=db_lost", "truncated", NULL), 1);
    ck_assert(wait_log("event=db_wal_removed", NULL, 10000));
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    /* (a write may also fail reading the cut file: malformed) */
    ck_assert_int_eq(log_events("event=task_failed", "label=\"/after\"",
                                NULL), after);
    /* nothing of ours was written into it afterwards */
    ck_assert(integrity_ok(g_db));
    ck_assert_int_eq(scalar_at(g_db, "SELECT count(*) FROM sqlite_schema"),
                     0);
    assert_reconciled(&s);
}
END_TEST

/* mv of a copy (a restored backup) over the database: writes are never
 * counted ok unless they are in the file at the path; once the old
 * connections are closed and its -wal/-shm gone, the pool reopens at the
 * path and goes on writing there. */
START_TEST(test_db_replaced_by_copy_reopens)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    char copy[4200], sql[4300];
    int i, rc;

    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < 10; i++)
        ck_assert_int_eq(try_insert(p, c, i, "/before"), DEFER_OK);
    ck_assert(STAT_AT_LEAST(p, ok, 10, 10000));
    snprintf(copy, sizeof copy, "%s/copy.db", g_dir);
    snprintf(sql, sizeof sql, "VACUUM INTO '%s'", copy);
    db_exec(sql);
    ck_assert_int_eq(rename(copy, g_db), 0);
    /* writes right after the swap: they land in the new file or fail */
    for (i = 0; i < 5; i++) {
        rc = try_insert(p, c, 100 + i, "/swap");
        ck_assert(rc == DEFER_OK || rc == DEFER_EUNAVAIL);
    }
    ck_assert(STAT_AT_LEAST(p, db_reopened, 1, 20000));
    ck_assert(wait_db_state(p, DEFER_DB_OK, 10000));
    for (i = 0; i < 10; i++)
        ck_assert_int_eq(try_insert(p, c, 200 + i, "/reopened"), DEFER_OK);
    ck_assert_int_eq(defer_pool_shutdown(p, 20000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert(integrity_ok(g_db));
    /* the copy's 10, plus exactly the writes counted ok since */
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t"),
                     10 + (int64_t)s.ok - 10);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v >= 200"), 10);
    ck_assert_uint_eq(s.db_lost, 1);
    ck_assert_uint_eq(s.db_reopened, 1);
    ck_assert_int_eq(s.db_state, DEFER_DB_OK);
    ck_assert_int_eq(log_count("event=db_lost", "replaced", NULL), 1);
    ck_assert_int_eq(log_count("event=db_reopened", NULL, NULL), 1);
    assert_reconciled(&s);
}
END_TEST

/* mv of a database without our tables over it: the pool does not write
 * into it (no migrations in lib/defer), stays lost and says why. */
START_TEST(test_db_replaced_without_schema_stays_lost)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    char other[4200];
    sqlite3 *db = NULL;
    int64_t end;
    int i, rc, after;

    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < 5; i++)
        ck_assert_int_eq(try_insert(p, c, i, "/before"), DEFER_OK);
    ck_assert(STAT_AT_LEAST(p, ok, 5, 10000));
    snprintf(other, sizeof other, "%s/other.db", g_dir);
    ck_assert_int_eq(sqlite3_open(other, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL;"
                                  "CREATE TABLE x(a)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(rename(other, g_db), 0);
    after = insert_until_refused(p, c, 1000, "/after", 15000, &rc);
    ck_assert_int_eq(rc, DEFER_EUNAVAIL);
    /* it looks at the file, and says what is wrong with it */
    end = tu_now_ms() + 10000;
    do {
        defer_pool_stats(p, &s);
        if (strstr(s.db_reason, "lacks table(s) t") != NULL)
            break;
        sleep_ms(10);
    } while (tu_now_ms() < end);
    ck_assert_msg(strstr(s.db_reason, "lacks table(s) t") != NULL, "%s",
                  s.db_reason);
    ck_assert_int_eq(s.db_state, DEFER_DB_LOST);
    ck_assert_int_eq(try_insert(p, c, 5000, "/later"), DEFER_EUNAVAIL);
    ck_assert(STAT_AT_LEAST(p, failed, (uint64_t)after, 10000));
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_uint_eq(s.ok, 5);
    ck_assert_uint_eq(s.db_reopened, 0);
    ck_assert(integrity_ok(g_db));
    ck_assert_int_eq(scalar_at(g_db, "SELECT count(*) FROM sqlite_schema"),
                     1); /* x alone: nothing of ours was added */
    assert_reconciled(&s);
}
END_TEST

/* Disk full (simulated: PRAGMA max_page_count on every connection of the
 * pool): the failing transaction's tasks fail at once, the pool refuses
 * writes (503 before the response) instead of promising them, logs one
 * line a second, and takes writes again once a probe commits. */
START_TEST(test_db_full_refuses_then_recovers)
{
    tracker *tr = tr_new(1);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    char init[96];
    int64_t pages, t0;
    uint64_t failed;
    int rc, admitted;

    /* 300 rows of 1 kB that can be deleted later to make room */
    db_exec("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
            " WHERE x < 300) INSERT INTO t(v, note)"
            " SELECT x + 1000000, hex(zeroblob(500)) FROM c");
    pages = db_scalar("PRAGMA page_count");
    snprintf(init, sizeof init, "PRAGMA max_page_count = %lld",
             (long long)pages + 4);
    cfg.db_init_sql = init;
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    t0 = tu_now_ms();
    admitted = 0;
    rc = DEFER_OK;
    while (rc == DEFER_OK && tu_now_ms() < t0 + 15000) {
        ck_assert_int_eq(defer_wait_until_query(c, q_sql(
            "INSERT INTO t(v, note) VALUES (?1, hex(zeroblob(500)))", 1,
            admitted), "/fill"), DEFER_OK);
        rc = defer_admit(p, c);
        if (rc == DEFER_OK) {
            defer_submit(p, c);
            admitted++;
        }
        sleep_ms(1);
    }
    ck_assert_int_eq(rc, DEFER_EUNAVAIL);
    /* a callback is refused as well, and freed once */
    ck_assert_int_eq(reg(c, tr, 0, 0, "/cb"), DEFER_OK);
    ck_assert_int_eq(defer_admit(p, c), DEFER_EUNAVAIL);
    ck_assert_int_eq(atomic_load(&tr->runs[0]), 0);
    ck_assert_int_eq(atomic_load(&tr->frees[0]), 1);
    ck_assert(STAT_AT_LEAST(p, failed, 1, 10000));
    {
        int64_t end = tu_now_ms() + 10000;
        do {
            defer_pool_stats(p, &s);
            if (s.ok + s.failed == (uint64_t)admitted)
                break;
            sleep_ms(5);
        } while (tu_now_ms() < end);
    }
    ck_assert_uint_eq(s.ok + s.failed, (uint64_t)admitted);
    ck_assert_int_eq(s.db_state, DEFER_DB_FAILING);
    ck_assert_ptr_nonnull(strstr(s.db_reason, "SQLITE_FULL"));
    ck_assert_uint_eq(s.db_failing, 1);
    ck_assert_uint_ge(s.unavail, 2);
    /* every write counted ok is in the file, and only those */
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v < 1000000"),
                     (int64_t)s.ok);
    ck_assert_int_eq(log_count("event=db_failing", "SQLITE_FULL", NULL), 1);
    failed = s.failed;

    /* room again (as when files are deleted from a full disk) */
    db_exec("DELETE FROM t WHERE v >= 1000000");
    ck_assert(wait_db_state(p, DEFER_DB_OK, 15000));
    ck_assert_int_eq(try_insert(p, c, 5000000, "/after"), DEFER_OK);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 5000000"),
                     1);
    /* every failure is in the log, in about a line a second */
    ck_assert_int_eq(log_events("event=task_failed", "label=\"/fill\"",
                                "full"), (long)failed);
    ck_assert_int_le(log_count("event=task_failed", NULL, NULL),
                     2 * (int)((tu_now_ms() - t0) / 1000 + 2));
    ck_assert_uint_ge(s.db_probes, 1);
    ck_assert_uint_gt(s.db_unavail_ms, 0);
    ck_assert_int_eq(log_count("event=db_recovered", NULL, NULL), 1);
    ck_assert_int_eq(s.db_state, DEFER_DB_OK);
    assert_reconciled(&s);
    tr_free(tr);
}
END_TEST

/* A callback that writes through the task's connection (as the app's
 * /slow does): records whether it had one. */
typedef struct envw {
    atomic_int runs, had_db;
    int64_t v;
} envw;

static int envw_run(defer_env *env, void *arg)
{
    envw *e = arg;
    qb_conn *db = defer_env_db(env);
    char sql[96];
    atomic_fetch_add(&e->runs, 1);
    if (db == NULL) {
        defer_env_set_error(env, "no connection");
        return -1;
    }
    atomic_store(&e->had_db, 1);
    snprintf(sql, sizeof sql, "INSERT INTO t(v) VALUES (%lld)",
             (long long)e->v);
    if (sqlite3_exec(qb_conn_sqlite(db), sql, NULL, NULL, NULL) != SQLITE_OK) {
        defer_env_set_error(env, sqlite3_errmsg(qb_conn_sqlite(db)));
        return -1;
    }
    return 0;
}

/* After the pool reopened a replaced file, a callback (no SQL task in
 * between) gets the connection to it: the worker that closed its
 * connection to the lost file opens the new one for callbacks too. */
START_TEST(test_db_reopened_callback_gets_connection)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    envw e;
    char copy[4200], sql[4300];
    int i;

    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < 5; i++)
        ck_assert_int_eq(try_insert(p, c, i, "/before"), DEFER_OK);
    ck_assert(STAT_AT_LEAST(p, ok, 5, 10000));
    snprintf(copy, sizeof copy, "%s/copy.db", g_dir);
    snprintf(sql, sizeof sql, "VACUUM INTO '%s'", copy);
    db_exec(sql);
    ck_assert_int_eq(rename(copy, g_db), 0);
    ck_assert(STAT_AT_LEAST(p, db_reopened, 1, 20000));
    ck_assert(wait_db_state(p, DEFER_DB_OK, 10000));

    atomic_init(&e.runs, 0);
    atomic_init(&e.had_db, 0);
    e.v = 4242;
    ck_assert_int_eq(defer_wait_until(c, envw_run, &e, NULL, "/cb"),
                     DEFER_OK);
    ck_assert_int_eq(defer_admit(p, c), DEFER_OK);
    defer_submit(p, c);
    ck_assert(wait_depth(p, 0, 10000));
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_int_eq(atomic_load(&e.runs), 1);
    ck_assert_msg(atomic_load(&e.had_db) == 1,
                  "the callback ran without a connection after the reopen");
    ck_assert_uint_eq(s.ok, 6);
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v = 4242"), 1);
    assert_reconciled(&s);
}
END_TEST

/* A database put at the path together with its -wal and -shm (a restore
 * of all three, or another process writing it) before the pool looks
 * again: those files are the new database's, not the lost one's, and
 * must not be removed -- its rows live in that -wal. */
START_TEST(test_db_replaced_with_its_wal_keeps_the_wal)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    defer_stats s;
    sqlite3 *db = NULL;
    char nw[4200], from[4300], to[4300];
    const char *sfx[3] = { "-wal", "-shm", "" };
    int64_t end;
    int i;

    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < 5; i++)
        ck_assert_int_eq(try_insert(p, c, i, "/before"), DEFER_OK);
    ck_assert(STAT_AT_LEAST(p, ok, 5, 10000));

    /* the new database: its rows in its -wal, not checkpointed */
    snprintf(nw, sizeof nw, "%s/new.db", g_dir);
    ck_assert_int_eq(sqlite3_open(nw, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL;"
                                  "PRAGMA wal_autocheckpoint=0;"
                                  "CREATE TABLE t(id INTEGER PRIMARY KEY,"
                                  " v INTEGER UNIQUE, note TEXT);"
                                  "INSERT INTO t(v) VALUES (900), (901),"
                                  " (902)", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                                       1, (int *)NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
    snprintf(from, sizeof from, "%s-wal", nw);
    ck_assert(exists(from));
    /* -wal and -shm first, the database last: the pool sees the path
     * change only when all three are in place */
    for (i = 0; i < 3; i++) {
        snprintf(from, sizeof from, "%s%s", nw, sfx[i]);
        snprintf(to, sizeof to, "%s%s", g_db, sfx[i]);
        ck_assert_int_eq(rename(from, to), 0);
    }
    /* (no look at it from here: closing the last connection to it would
     * checkpoint the -wal into it) */

    /* the pool notices, closes its connections to the old file and then
     * either reopens at the path or says why not */
    ck_assert(STAT_AT_LEAST(p, db_lost, 1, 10000));
    end = tu_now_ms() + 20000;
    do {
        defer_pool_stats(p, &s);
        if (s.db_reopened > 0 || strstr(s.db_reason, "now:") != NULL)
            break;
        sleep_ms(10);
    } while (tu_now_ms() < end);
    ck_assert_msg(s.db_reopened == 1, "not reopened: %s", s.db_reason);
    /* db_reopened is counted a moment before the state is OK again
     * (recovered() ends the episode after the probe connection closes):
     * wait for the state, as the other reopen tests do */
    ck_assert(wait_db_state(p, DEFER_DB_OK, 10000));
    /* the new database's rows are still there */
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v >= 900"), 3);
    ck_assert_int_eq(try_insert(p, c, 5000, "/after"), DEFER_OK);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_pool_stats(p, &s);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert(integrity_ok(g_db));
    ck_assert_int_eq(db_scalar("SELECT count(*) FROM t WHERE v >= 900"), 4);
    assert_reconciled(&s);
}
END_TEST


/* ==== log lines name the request and its values (issue 17) ============== */

/* A query with the values vals[0..n) on sql. */
static qb_query *q_vals(const char *sql, size_t n, const qb_value *vals)
{
    qb_query *q = NULL;
    ck_assert_int_eq(qb_query_raw(&q, sql, n, vals, QB_FETCH_NONE), QB_OK);
    return q;
}

START_TEST(test_log_failed_write_names_request_and_values)
{
    tracker *tr = tr_new(1);
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    qb_value v[2];

    db_exec("INSERT INTO t(v) VALUES (5)");
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(defer_ctx_set_request_id(c, "0123abcdef"), DEFER_OK);
    v[0] = qb_int(5);
    v[1] = qb_text("it's \"q\"\nkey=x");
    ck_assert_int_eq(defer_wait_until_query(
                         c, q_vals("INSERT INTO t(v, note) VALUES (?1, ?2)",
                                   2, v), "/dup"), DEFER_OK);
    admit_submit(p, c);
    /* The ctx forgets the id once emptied: the next request's task
     * (registered without one) is logged request_id=-. */
    ck_assert_int_eq(reg(c, tr, 0, 3, "/cb"), DEFER_OK);
    admit_submit(p, c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    /* One line, the keys it had before in their order, then the id
     * bare and the values in order, the text's quote doubled, its '"'
     * and newline escaped (no key can start inside). */
    ck_assert_int_eq(log_count("event=task_failed worker=0 label=\"/dup\" "
                               "kind=sql rc=",
                               "\" request_id=0123abcdef values=\"1:5 "
                               "2:'it''s \\\"q\\\"\\nkey=x'\"",
                               "UNIQUE"), 1);
    ck_assert_int_eq(log_count("event=task_failed worker=0 label=\"/cb\" "
                               "kind=callback rc=", "\" request_id=-",
                               NULL), 1);
    /* a callback's arg is opaque: no values key */
    ck_assert_int_eq(log_count("label=\"/cb\"", "values=", NULL), 0);
    ck_assert_int_eq(log_count("key=x", NULL, NULL), 1);
    tr_free(tr);
}
END_TEST

START_TEST(test_log_values_bounded)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    qb_value v[6];
    char *big = malloc(5001);
    unsigned char blob[100];
    qb_value many[40];
    char want[200];
    size_t i;

    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 5000);
    big[5000] = '\0';
    /* a 2-byte character across the 64-byte cut: cut before it */
    memcpy(big + 63, "\xc3\xa9", 2);
    for (i = 0; i < sizeof blob; i++)
        blob[i] = (unsigned char)i;
    v[0] = qb_text(big);
    v[1] = qb_blob(blob, sizeof blob);
    v[2] = qb_textn("\xff\xfe\x01ok", 5);
    v[3] = qb_null();
    v[4] = qb_real(0.5);
    v[5] = qb_bool(1);
    for (i = 0; i < 40; i++)
        many[i] = qb_text("0123456789012345678901234567890123456789");
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    ck_assert_int_eq(defer_ctx_set_request_id(c, "r1"), DEFER_OK);
    ck_assert_int_eq(defer_wait_until_query(
                         c, q_vals("INSERT INTO nosuch1 VALUES "
                                   "(?1, ?2, ?3, ?4, ?5, ?6)", 6, v),
                         "/big"), DEFER_OK);
    admit_submit(p, c);
    ck_assert_int_eq(defer_ctx_set_request_id(c, "r\"2 x=y"), DEFER_OK);
    {
        char sql[400] = "INSERT INTO nosuch2 VALUES (?1";
        for (i = 2; i <= 40; i++)
            snprintf(sql + strlen(sql), sizeof sql - strlen(sql), ", ?%zu", i);
        strcat(sql, ")");
        ck_assert_int_eq(defer_wait_until_query(c, q_vals(sql, 40, many),
                                                "/many"), DEFER_OK);
    }
    admit_submit(p, c);
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    free(big);
    /* 63 bytes of text (the character at 63..64 does not fit whole),
     * then the marker with the full length */
    snprintf(want, sizeof want, "values=\"1:'%.*s'...(len=5000) 2:x'", 63,
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    ck_assert_int_eq(log_count("request_id=r1 ", want, NULL), 1);
    ck_assert_int_eq(log_count("request_id=r1 ",
                               "x'000102030405060708090a0b0c0d0e0f1011121314"
                               "15161718191a1b1c1d1e1f'...(len=100) ",
                               "3:'\\xff\\xfe\\x01ok' 4:NULL 5:0.5 6:1\""),
                     1);
    /* An id that is not a plain token is quoted; the list stops whole
     * values short of its bound and says how many there were. */
    ck_assert_int_eq(log_count("label=\"/many\"",
                               " request_id=\"r\\\"2 x=y\" values=\"1:'",
                               "...(40 values)\""), 1);
    ck_assert_int_eq(log_count("/many", "40:'", NULL), 0);
}
END_TEST

START_TEST(test_log_values_redact_and_off)
{
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    qb_value v[3];
    int mode;

    v[0] = qb_int(42);
    v[1] = qb_text("secret");
    v[2] = qb_blob("xyz", 3);
    for (mode = 0; mode < 2; mode++) {
        cfg.workers = 1;
        cfg.log_values = mode == 0 ? DEFER_VALUES_REDACT : DEFER_VALUES_OFF;
        p = mkpool(&cfg);
        c = mkctx(p);
        ck_assert_int_eq(defer_ctx_set_request_id(c, "red"), DEFER_OK);
        ck_assert_int_eq(defer_wait_until_query(
                             c, q_vals(mode == 0
                                           ? "INSERT INTO nosuch1 VALUES "
                                             "(?1, ?2, ?3)"
                                           : "INSERT INTO nosuch2 VALUES "
                                             "(?1, ?2, ?3)",
                                       3, v), "/r"), DEFER_OK);
        admit_submit(p, c);
        ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
        defer_ctx_free(c);
        defer_pool_destroy(p);
    }
    ck_assert_int_eq(log_count("request_id=red", "nosuch1",
                               "values=\"1:int 2:text(len=6) "
                               "3:blob(len=3)\""), 1);
    ck_assert_int_eq(log_count("request_id=red", "nosuch2", NULL), 1);
    ck_assert_int_eq(log_count("nosuch2", "values=", NULL), 0);
    ck_assert_int_eq(log_count("secret", NULL, NULL), 0);
    ck_assert_int_eq(log_count("42", "values", NULL), 0);
}
END_TEST

START_TEST(test_log_summary_names_no_request)
{
    enum { N = 20 };
    defer_config cfg = base_cfg();
    defer_pool *p;
    defer_ctx *c;
    int i;

    db_exec("INSERT INTO t(v) VALUES (5)");
    cfg.workers = 1;
    p = mkpool(&cfg);
    c = mkctx(p);
    for (i = 0; i < N; i++) {
        char rid[32];
        qb_value v = qb_int(5);
        snprintf(rid, sizeof rid, "req%d", i);
        ck_assert_int_eq(defer_ctx_set_request_id(c, rid), DEFER_OK);
        ck_assert_int_eq(defer_wait_until_query(
                             c, q_vals("INSERT INTO t(v) VALUES (?1)", 1, &v),
                             "/dup"), DEFER_OK);
        admit_submit(p, c);
    }
    ck_assert(STAT_AT_LEAST(p, failed, N, 20000));
    ck_assert_int_eq(defer_pool_shutdown(p, 10000), DEFER_OK);
    defer_ctx_free(c);
    defer_pool_destroy(p);
    ck_assert_int_eq(log_events("event=task_failed", "UNIQUE", NULL), N);
    /* Some were folded (20 identical failures in well under a second on
     * one worker would need a stall of a second between two of them to
     * be all written; then this test only checks the firsts). */
    ck_assert_int_ge(log_count("event=task_failed", "request_id=req0 ",
                               "values=\"1:5\""), 1);
    /* a summary stands for N tasks: it names none of them */
    ck_assert_int_eq(log_count("repeated=", "request_id=", NULL), 0);
    ck_assert_int_eq(log_count("repeated=", "values=", NULL), 0);
    /* every line that is not a summary names its request */
    ck_assert_int_eq(log_count("event=task_failed", "request_id=req", NULL) +
                         log_count("event=task_failed", "repeated=", NULL),
                     log_count("event=task_failed", NULL, NULL));
}
END_TEST

/* ==== main =============================================================== */

static TCase *tc(Suite *s, const char *name)
{
    TCase *t = tcase_create(name);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, TU_TCASE_TIMEOUT_S); /* a guard against hangs only */
    suite_add_tcase(s, t);
    return t;
}

int main(void)
{
    Suite *s = suite_create("defer");
    SRunner *sr;
    TCase *t;
    int failed;

    t = tc(s, "ownership");
    tcase_add_loop_test(t, test_ownership_every_path, 0, OWN_NPATHS);
    tcase_add_test(t, test_query_ownership_on_refusal);
    tcase_add_test(t, test_dialect_and_engine_checks);

    t = tc(s, "admission");
    tcase_add_test(t, test_wait_policy_times_out);
    tcase_add_test(t, test_wait_policy_refuses_when_stalled);
    tcase_add_test(t, test_wait_policy_gets_slot);
    tcase_add_test(t, test_reject_policy_is_immediate);
    tcase_add_test(t, test_inline_policy_runs_in_caller);

    t = tc(s, "order");
    tcase_add_test(t, test_order_one_worker);
    tcase_add_test(t, test_request_larger_than_batch);
    tcase_add_test(t, test_order_sql_then_callback);

    t = tc(s, "group_commit");
    tcase_add_test(t, test_window_rule);
    tcase_add_test(t, test_window_adapts_to_commit_time);
    tcase_add_test(t, test_shutdown_ends_window);
    tcase_add_test(t, test_batch_failure_isolated);
    tcase_add_test(t, test_partial_failure_rolled_back_alone);
    tcase_add_test(t, test_busy_retried_then_succeeds);
    tcase_add_test(t, test_busy_beyond_budget_fails);
    tcase_add_test(t, test_time_budget_interrupts);
    tcase_add_test(t, test_callback_transactions);

    t = tc(s, "shutdown");
    tcase_add_test(t, test_drain_within_deadline);
    tcase_add_test(t, test_deadline_with_hung_callback);
    tcase_add_test(t, test_deadline_hung_callback_mid_batch);
    tcase_add_test(t, test_deadline_interrupts_sql);

    t = tc(s, "counters");
    tcase_add_test(t, test_counters_reconcile);
    tcase_add_test(t, test_two_pools_independent);

    t = tc(s, "stress");
    tcase_add_loop_test(t, test_stress_random_shutdown, 0, 3);

    t = tc(s, "hygiene");
    tcase_add_test(t, test_config_errors);
    tcase_add_test(t, test_worker_threads_named_and_masked);
    tcase_add_test(t, test_log_lines_escaped);
    tcase_add_test(t, test_thread_create_failure_joins);

    t = tc(s, "second_reader");
    tcase_add_test(t, test_wait_after_idle_burst);
    tcase_add_test(t, test_hung_after_done_reconciles);
    tcase_add_test(t, test_hung_sql_arg_vs_report);

    t = tc(s, "log");
    tcase_add_test(t, test_log_repeats_folded);
    tcase_add_test(t, test_log_distinct_failures_not_folded_together);
    tcase_add_test(t, test_log_dropped_counted);
    tcase_add_test(t, test_log_failed_write_names_request_and_values);
    tcase_add_test(t, test_log_values_bounded);
    tcase_add_test(t, test_log_values_redact_and_off);
    tcase_add_test(t, test_log_summary_names_no_request);

    t = tc(s, "db_health");
    tcase_add_test(t, test_db_removed_nothing_counted_ok_after);
    tcase_add_test(t, test_db_truncated_nothing_counted_ok_after);
    tcase_add_test(t, test_db_replaced_by_copy_reopens);
    tcase_add_test(t, test_db_replaced_without_schema_stays_lost);
    tcase_add_test(t, test_db_full_refuses_then_recovers);
    tcase_add_test(t, test_db_reopened_callback_gets_connection);
    tcase_add_test(t, test_db_replaced_with_its_wal_keeps_the_wal);

    sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
