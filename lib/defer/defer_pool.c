/*
 * defer_pool.c -- the pool: per-request contexts, admission, the queue,
 * the workers' loop and shutdown.
 *
 * DESIGN
 *
 * One mutex (pool->mu) guards the queue, the slot accounting, the state,
 * the writer token and every counter; five condition variables (all on
 * CLOCK_MONOTONIC) hang off it: work_cv (workers wait for work), space_cv
 * (WAIT admission waits for slots), done_cv (shutdown waits for drain or
 * for workers to leave), writer_cv (the writer token) and sleep_cv (BUSY
 * backoff, woken early by the deadline).  pool->abort is an atomic flag
 * read without the lock by SQLite's progress/busy handlers.
 *
 * LOCK ORDER: pool->mu is the only lock of this module and is a leaf: it
 * is never held while calling SQLite, a task callback, arg_free or the
 * log callback.  SQLite calls our busy handler with its own locks held and
 * the handler takes pool->mu, so the order is "SQLite internals, then
 * pool->mu", never the reverse.  The log callback must not call back into
 * the pool.  The other locks of lib/defer are leaves too, never held
 * together with pool->mu: each runner's cancel_mu (defer_db.c) and the
 * log's repeat table lock rl->mu (defer_log.c).
 *
 * SLOTS: capacity bounds reserved + queued + in_flight.  defer_admit
 * reserves all of a request's slots at once, before the response is
 * final; defer_submit turns reserved into queued and cannot fail; a slot
 * is released only after its task ran (in_flight drops when the
 * worker settles the task's segment or callback, defer__settle: a later
 * callback of the same batch may hang), so "drained" means queue empty
 * AND nothing in flight AND nothing reserved -- the Redis bio.c rule.
 *
 * QUEUE: one FIFO list of tasks; the tasks of a request are contiguous and
 * the first carries the request's length.  A worker takes whole requests,
 * up to batch_max tasks (at least one request), so a request never spans
 * two workers and its tasks run in registration order.
 *
 * POSTGRESQL: the same queue and workers; each worker owns a connection
 * (defer_db.c).  There is no writer token (the server has row locks), and
 * at the deadline the shutdown thread also stops running statements by
 * closing their sessions, outside pool->mu (each runner's cancel_mu is a
 * leaf lock of its own).
 *
 * HEALTH (defer_health.c): a third kind of thread, the monitor
 * ("defer-mon", one per pool, started last in create, joined in
 * shutdown after the workers), checks the SQLite file once every
 * 500 ms, probes a failing or lost database, and writes the log's
 * repeated=N summaries.  defer_admit asks defer__health_admit first
 * (one atomic load while the database is fine); an idle worker closes
 * its connection to a lost file (defer__health_idle, woken by the
 * monitor).  A ctx holds a reference on the pool (refs), since freeing
 * it closes its inline connection, which the pool counts.
 *
 * REQUEST IDS: defer_ctx_set_request_id copies the id into the ctx (one
 * thread's, no lock); add_task copies it again into the task, in the
 * same allocation as the label, so a task carries it without a pointer
 * into anything another thread may free or reuse (the ctx is reset for
 * the next request as soon as it is submitted).  Read-only from then
 * on: workers and shutdown read it like the label, under the rules of
 * defer_int.h (shutdown formats its reports under mu).
 *
 * WRITER TOKEN: SQLite (WAL) has one writer.  Rather than let the pool's
 * own workers collide on SQLITE_BUSY and sleep in the busy handler, a
 * worker takes the pool's writer token for the length of a transaction;
 * BUSY then only comes from other processes/connections, and while one
 * worker commits, the others' batches grow (group commit).
 *
 * GROUP-COMMIT WINDOW: a worker woken for a non-full queue waits for its
 * batch to grow, for 9 x the moving mean of the pool's COMMIT times,
 * within [batch_delay, batch_delay_max] (defer__window_ns): where a
 * COMMIT pays an fsync (SQLite synchronous=FULL) or a round trip
 * (PostgreSQL), fewer and larger commits pay it; where it costs tens of
 * microseconds the window stays at batch_delay.  The window ends early
 * on a full batch, on admissions waiting for room, and when shutdown
 * starts draining (it wakes the workers in a window).
 *
 * SHUTDOWN: state RUNNING -> DRAINING (admission refused, workers keep
 * going) -> STOPPED.  If the queue drains before the deadline, workers
 * see STOPPED with an empty queue and leave; all are joined.  At the
 * deadline pool->abort is set: SQL in progress is interrupted (progress
 * handler) and its transaction rolled back, backoff and token waits end,
 * the queue is emptied and reported "left", and each worker gives up the
 * rest of its batch ("left").  A worker that has not left its loop 500 ms
 * later is stuck in a callback: its unclaimed tasks are stolen (CAS, see
 * defer_int.h: counted and reported left, but still the worker's to free),
 * its running task is reported "hung", and the thread is detached holding
 * a reference on the pool, so the pool's memory (and its batch) outlives
 * it; the last reference frees the pool.  No thread is ever cancelled.
 */
#define _GNU_SOURCE
#include "config.h"
#include "defer_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Upper bounds on configuration, so arithmetic on them cannot overflow. */
#define MAX_WORKERS 256u
#define MAX_CAPACITY ((size_t)1 << 30)
#define MAX_PER_REQUEST 65536u
#define MAX_BATCH 65536u

struct defer_ctx {
    defer_pool *pool;
    defer_task *head, *tail;
    size_t n;
    int admitted;
    int db_tried;              /* inline connection open attempted */
    defer_task **scratch;      /* max_tasks_per_request entries */
    defer_runner run;          /* inline runs */
    size_t rid_len;            /* the request id tasks get (set_request_id) */
    char rid[DEFER_REQUEST_ID_MAX + 1];
};

/* ---- small helpers ------------------------------------------------------ */

DEFER_API const char *defer_strerror(int rc)
{
    switch (rc) {
    case DEFER_OK: return "ok";
    case DEFER_INLINE: return "tasks ran inline";
    case DEFER_ENOMEM: return "out of memory";
    case DEFER_EINVAL: return "invalid argument";
    case DEFER_EFULL: return "queue full";
    case DEFER_ETOOMANY: return "too many tasks for one request";
    case DEFER_ESHUTDOWN: return "pool is shutting down";
    case DEFER_ETIMEDOUT: return "shutdown deadline passed";
    case DEFER_EDB: return "database open failed";
    case DEFER_ETHREAD: return "thread creation failed";
    case DEFER_EMISUSE: return "called out of order";
    case DEFER_EUNAVAIL: return "database unavailable (failing or lost)";
    case DEFER_EJOURNAL: return "journal append failed";
    default: return "unknown error";
    }
}

DEFER_API void defer_config_init(defer_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->name = "defer";
    cfg->workers = 2;
    cfg->queue_capacity = 65536;
    cfg->max_tasks_per_request = 16;
    cfg->batch_max = 256;
    cfg->batch_delay_us = 2000;
    cfg->batch_delay_max_us = 20000;
    cfg->task_budget_ms = 5000;
    cfg->policy = DEFER_POLICY_WAIT;
    cfg->admit_wait_ms = 100;
    cfg->drain_ms = 30000;
    cfg->grace_ms = DEFER_GRACE_MS;
    cfg->busy_retries = 5;
    cfg->busy_backoff_ms = 10;
    cfg->reconnect_ms = 10000;
    cfg->db_path = NULL;
    cfg->db.journal_mode = "WAL";
    cfg->db.synchronous = "NORMAL";
    cfg->db.busy_timeout_ms = 1000;
    cfg->db.readonly = 0;
    cfg->db.stmt_cache_size = 64;
    cfg->log = NULL;
    cfg->log_ud = NULL;
    cfg->log_level = DEFER_LOG_INFO;
}

static void set_err(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static char *dup_or_null(const char *s, int *oom)
{
    char *d;
    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *oom = 1;
    return d;
}

static void update_hwm(defer_pool *p)
{
    p->st.depth = p->st.reserved + p->st.queued + p->st.in_flight;
    if (p->st.depth > p->st.depth_hwm)
        p->st.depth_hwm = p->st.depth;
}

static int drained(const defer_pool *p)
{
    return p->st.queued == 0 && p->st.in_flight == 0 && p->st.reserved == 0;
}

static unsigned hist_bucket(size_t n)
{
    unsigned k = 0;
    while (n > 1 && k < DEFER_HIST_BUCKETS - 1) {
        n >>= 1;
        k++;
    }
    return k;
}

static void free_task_list(defer_pool *p, defer_task *t, int level,
                           const char *event, const char *why)
{
    while (t != NULL) {
        defer_task *next = t->next;
        defer__drop_task(p, t, level, event, why);
        t = next;
    }
}

/* ---- the worker ------------------------------------------------------- */

static void pool_free(defer_pool *p);

/* The most a batch can hold: a queue smaller than batch_max never has
 * batch_max tasks queued, so the window must not wait for that. */
static size_t full_batch(const defer_pool *p)
{
    return p->cfg.batch_max < p->cfg.queue_capacity ? p->cfg.batch_max
                                                    : p->cfg.queue_capacity;
}

atomic_int_least64_t defer__commit_fault_ns;

int64_t defer__window_ns(const defer_config *cfg, int64_t commit_avg_ns)
{
    int64_t lo = (int64_t)cfg->batch_delay_us * 1000;
    int64_t hi = (int64_t)cfg->batch_delay_max_us * 1000;
    int64_t w = commit_avg_ns * DEFER_WINDOW_PER_COMMIT;

    if (lo == 0)
        return 0;
    if (w > hi)
        w = hi;
    return w > lo ? w : lo;
}

int64_t defer__commit_avg(int64_t avg_ns, int64_t sum_ns, uint64_t n)
{
    int64_t sample = sum_ns / (int64_t)n;
    return avg_ns == 0 ? sample : avg_ns + (sample - avg_ns) / 8;
}

static void *worker_main(void *arg)
{
    defer_worker *w = arg;
    defer_pool *p = w->pool;
    char name[16];
    int rc, det, last;

    snprintf(name, sizeof name, "defer-w%u", w->index);
    rc = pthread_setname_np(pthread_self(), name);
    if (rc != 0)
        defer__log(p, DEFER_LOG_WARN, "thread_name_failed", NULL,
                   (int)w->index, rc, strerror(rc));

    defer__lock(p);
    for (;;) {
        size_t n = 0, i;

        while (p->qhead == NULL && p->state != P_STOPPED) {
            if (defer__health_idle(w))
                continue; /* closed a connection to a lost file */
            p->idle++;
            defer__wait(p, &p->work_cv, 0);
            p->idle--;
        }
        if (p->qhead == NULL)
            break; /* stopped and nothing left for us */

        /* Group-commit window: one commit per task costs a BEGIN/COMMIT
         * and a context switch per request.  The clients already have
         * their answers, so wait briefly for the batch to grow.  Not
         * while draining: shutdown wants the queue empty, not full.
         * The window grows with the commit's cost (an fsync per COMMIT
         * with synchronous=FULL, a round trip on PostgreSQL), so that
         * fewer, larger commits pay it. */
        if (p->cfg.batch_delay_us > 0 && p->state == P_RUNNING &&
            p->st.queued < full_batch(p) && p->space_waiters == 0) {
            int64_t end = defer__now_ns() +
                          defer__window_ns(&p->cfg, p->commit_avg_ns);
            p->windows++;
            /* Ends early on a full batch, or when admissions are waiting
             * for room (then waiting longer only makes them wait). */
            while (p->state == P_RUNNING && p->st.queued < full_batch(p) &&
                   p->space_waiters == 0 && p->qhead != NULL) {
                if (defer__wait(p, &p->work_cv, end) == ETIMEDOUT)
                    break;
            }
            p->windows--;
            if (p->qhead == NULL)
                continue; /* another worker took it meanwhile */
        }

        /* Whole requests only, so that a request never spans workers; the
         * first request is taken even if it alone exceeds batch_max. */
        while (p->qhead != NULL &&
               (n == 0 || (n < p->cfg.batch_max &&
                           p->qhead->req_len <= p->cfg.batch_max - n))) {
            size_t k = p->qhead->req_len;
            while (k-- > 0) {
                defer_task *t = p->qhead;
                p->qhead = t->next;
                t->next = NULL;
                w->batch[n++] = t;
            }
        }
        if (p->qhead == NULL)
            p->qtail = NULL;
        p->st.queued -= n;
        p->st.in_flight += n;
        p->st.batches++;
        p->st.batch_hist[hist_bucket(n)]++;
        p->st.batch_tasks += n;
        w->nbatch = n;
        p->progress_ns = defer__now_ns();
        if (p->qhead != NULL && p->idle > 0)
            defer__signal(&p->work_cv);
        defer__unlock(p);

        /* Settled segment by segment (defer__settle). */
        defer__run_batch(&w->run, w->batch, n);

        /* Once nbatch is 0 (under mu) no one else changes a state. */
        defer__lock(p);
        w->nbatch = 0;
        defer__unlock(p);

        /* The batch was ours throughout (defer_int.h): a stolen task was
         * reported by shutdown and is freed here, unrun; a hung one's arg
         * is freed here, now that shutdown cannot be reading it. */
        for (i = 0; i < n; i++) {
            defer_task *t = w->batch[i];
            int s = atomic_load(&t->state);
            if ((s == T_STOLEN || s == T_HUNG) && t->arg_free != NULL)
                t->arg_free(t->arg);
            free(t);
        }
        /* The batch is over: journal files whose records all landed go
         * (it may wait for the write lock: not while the batch counts
         * as in flight). */
        defer__journal_tidy(&w->run, 0);

        defer__lock(p);
    }
    w->leaving = 1;
    det = w->detached;
    defer__broadcast(&p->done_cv);
    defer__unlock(p);

    defer__journal_tidy(&w->run, 1);
    defer__db_close(&w->run);
    if (!det)
        return NULL; /* shutdown joins us and owns the pool */

    /* We were declared hung and detached: our reference keeps the pool
     * alive until here; the last reference frees it. */
    defer__log(p, DEFER_LOG_WARN, "hung_worker_returned", NULL,
               (int)w->index, DEFER_OK, "detached worker exits");
    defer__lock(p);
    last = --p->refs == 0;
    defer__unlock(p);
    if (last)
        pool_free(p);
    return NULL;
}

void defer__settle(defer_runner *r, defer_task **t, size_t n)
{
    defer_pool *p = r->pool;
    size_t i;

    defer__lock(p);
    for (i = 0; i < n; i++) {
        int s = atomic_load(&t[i]->state);
        if (s == T_DONE || s == T_WLEFT)
            p->st.in_flight--;
    }
    p->st.ok += r->n_ok;
    p->st.failed += r->n_failed;
    p->st.left += r->n_left;
    p->st.timeouts += r->n_timeouts;
    p->st.commits += r->n_commits;
    if (r->n_commits > 0)
        p->commit_avg_ns = defer__commit_avg(p->commit_avg_ns, r->commit_ns,
                                             r->n_commits);
    r->n_ok = r->n_failed = r->n_left = 0;
    r->n_timeouts = r->n_commits = 0;
    r->commit_ns = 0;
    p->progress_ns = defer__now_ns();
    update_hwm(p);
    if (p->space_waiters > 0)
        defer__broadcast(&p->space_cv);
    if (p->state != P_RUNNING && drained(p))
        defer__broadcast(&p->done_cv);
    defer__unlock(p);
}

/* Join worker i (shutdown).  A worker that has left its loop may still
 * be in its last journal barrier (defer__journal_tidy, SQL on its own
 * connection).  On SQLite its lock waits end at the deadline (busy
 * handler); on PostgreSQL, from the deadline on, its session is cut
 * every 100 ms (defer__db_cancel), so a server that stopped answering
 * cannot hold the stop: the barrier fails and the files stay for the
 * next start to skip (DURABILITY in defer_journal.c). */
static int join_worker(defer_pool *p, unsigned i, int64_t end)
{
    defer_worker *w = &p->workers[i];

    if (p->journal == NULL || !defer__db_is_pg(p))
        return pthread_join(w->tid, NULL);
    for (;;) {
        int64_t now = defer__now_ns();
        int64_t ns = now < end ? end - now : 100000000;
        struct timespec ts;
        int rc;

        /* pthread_timedjoin_np takes CLOCK_REALTIME: a step of the wall
         * clock during a stop stretches one wait by the step.
         * (pthread_clockjoin_np would not: ThreadSanitizer does not know
         * it, and then sees no join.) */
        if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
            return pthread_join(w->tid, NULL);
        ns += ts.tv_nsec;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        rc = pthread_timedjoin_np(w->tid, NULL, &ts);
        if (rc != ETIMEDOUT)
            return rc;
        if (defer__now_ns() >= end)
            defer__db_cancel(&w->run);
    }
}

/* ---- create / free ------------------------------------------------------ */

/* What defer_pool_create allocates before anything can run: the worker
 * array, the copies of the configuration's strings, the pool itself. */
static void free_copies(defer_pool *p)
{
    free(p->workers);
    free(p->name);
    free(p->db_path);
    free(p->pg_conninfo);
    free(p->pg_appname);
    free(p->journal_mode);
    free(p->synchronous);
    free(p);
}

/* Free everything; all threads are gone or never started. */
static void pool_free(defer_pool *p)
{
    unsigned i;
    if (p == NULL)
        return;
    for (i = 0; i < p->nworkers; i++) {
        defer__runner_fini(&p->workers[i].run);
        free(p->workers[i].batch);
    }
    defer__journal_free(p);
    defer__health_fini(p);
    defer__rl_fini(p);
    (void)pthread_cond_destroy(&p->work_cv);
    (void)pthread_cond_destroy(&p->space_cv);
    (void)pthread_cond_destroy(&p->done_cv);
    (void)pthread_cond_destroy(&p->writer_cv);
    (void)pthread_cond_destroy(&p->sleep_cv);
    (void)pthread_mutex_destroy(&p->mu);
    free_copies(p);
}

/* Drop one reference (the creator's, or a ctx's); the last frees p. */
static void pool_unref(defer_pool *p)
{
    int last;
    defer__lock(p);
    last = --p->refs == 0;
    defer__unlock(p);
    if (last)
        pool_free(p);
}

static int check_config(const defer_config *c, char *errbuf, size_t len)
{
    if (c->workers < 1 || c->workers > MAX_WORKERS) {
        set_err(errbuf, len, "workers must be 1..%u", MAX_WORKERS);
        return DEFER_EINVAL;
    }
    if (c->queue_capacity < 1 || c->queue_capacity > MAX_CAPACITY) {
        set_err(errbuf, len, "queue_capacity must be 1..%zu", MAX_CAPACITY);
        return DEFER_EINVAL;
    }
    if (c->max_tasks_per_request < 1 ||
        c->max_tasks_per_request > MAX_PER_REQUEST) {
        set_err(errbuf, len, "max_tasks_per_request must be 1..%u",
                MAX_PER_REQUEST);
        return DEFER_EINVAL;
    }
    if (c->batch_max < 1 || c->batch_max > MAX_BATCH) {
        set_err(errbuf, len, "batch_max must be 1..%u", MAX_BATCH);
        return DEFER_EINVAL;
    }
    if (c->batch_delay_us > 1000000u || c->batch_delay_max_us > 1000000u) {
        set_err(errbuf, len, "batch_delay_us and batch_delay_max_us must be "
                "<= 1000000");
        return DEFER_EINVAL;
    }
    if (c->policy != DEFER_POLICY_WAIT && c->policy != DEFER_POLICY_REJECT &&
        c->policy != DEFER_POLICY_INLINE) {
        set_err(errbuf, len, "unknown admission policy %d", (int)c->policy);
        return DEFER_EINVAL;
    }
    if (c->busy_retries > 1000 || c->busy_backoff_ms > 60000) {
        set_err(errbuf, len, "busy_retries <= 1000, busy_backoff_ms <= 60000");
        return DEFER_EINVAL;
    }
    if (c->task_budget_ms > 86400000u || c->admit_wait_ms > 86400000u ||
        c->drain_ms > 86400000u || c->grace_ms > 86400000u) {
        set_err(errbuf, len, "time bounds must be at most one day");
        return DEFER_EINVAL;
    }
    if (c->log_values != DEFER_VALUES_ON &&
        c->log_values != DEFER_VALUES_REDACT &&
        c->log_values != DEFER_VALUES_OFF) {
        set_err(errbuf, len, "unknown log_values %d", (int)c->log_values);
        return DEFER_EINVAL;
    }
    if (c->reconnect_ms > 86400000u) {
        set_err(errbuf, len, "reconnect_ms must be at most one day");
        return DEFER_EINVAL;
    }
    if (c->pg_conninfo != NULL && c->db_path != NULL) {
        set_err(errbuf, len, "db_path and pg_conninfo are exclusive");
        return DEFER_EINVAL;
    }
    if (c->pg_conninfo != NULL && !qb_engine_available(QB_ENGINE_POSTGRES)) {
        set_err(errbuf, len, "built without PostgreSQL support "
                "(configure --with-postgresql; Debian: libpq-dev)");
        return DEFER_EINVAL;
    }
    return DEFER_OK;
}

static int init_sync(defer_pool *p, char *errbuf, size_t len)
{
    pthread_condattr_t ca;
    pthread_cond_t *cvs[5];
    int rc, i, made = 0;

    cvs[0] = &p->work_cv;
    cvs[1] = &p->space_cv;
    cvs[2] = &p->done_cv;
    cvs[3] = &p->writer_cv;
    cvs[4] = &p->sleep_cv;
    rc = pthread_mutex_init(&p->mu, NULL);
    if (rc != 0) {
        set_err(errbuf, len, "pthread_mutex_init: %s", strerror(rc));
        return DEFER_ETHREAD;
    }
    rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        for (i = 0; rc == 0 && i < 5; i++) {
            rc = pthread_cond_init(cvs[i], &ca);
            if (rc == 0)
                made++;
        }
        (void)pthread_condattr_destroy(&ca);
    }
    if (rc != 0) {
        for (i = 0; i < made; i++)
            (void)pthread_cond_destroy(cvs[i]);
        (void)pthread_mutex_destroy(&p->mu);
        set_err(errbuf, len, "condition variable setup: %s", strerror(rc));
        return DEFER_ETHREAD;
    }
    return DEFER_OK;
}

/* Stop and join the first `started` workers of a pool that failed to
 * come up (nothing was ever queued). */
static void abort_start(defer_pool *p)
{
    unsigned i;
    defer__lock(p);
    p->state = P_STOPPED;
    defer__broadcast(&p->work_cv);
    defer__unlock(p);
    for (i = 0; i < p->nworkers; i++) {
        if (p->workers[i].started) {
            int rc = pthread_join(p->workers[i].tid, NULL);
            if (rc != 0)
                fprintf(stderr, "defer: pthread_join: %s\n", strerror(rc));
        }
    }
}

DEFER_API int defer_pool_create(defer_pool **out, const defer_config *cfg,
                                char *errbuf, size_t errbuf_len)
{
    defer_config defaults;
    defer_pool *p;
    sigset_t all, old;
    unsigned i;
    int rc, oom = 0;

    if (out == NULL) {
        set_err(errbuf, errbuf_len, "out is NULL");
        return DEFER_EINVAL;
    }
    *out = NULL;
    if (cfg == NULL) {
        defer_config_init(&defaults);
        cfg = &defaults;
    }
    rc = check_config(cfg, errbuf, errbuf_len);
    if (rc != DEFER_OK)
        return rc;

    p = calloc(1, sizeof *p);
    if (p == NULL) {
        set_err(errbuf, errbuf_len, "out of memory");
        return DEFER_ENOMEM;
    }
    p->cfg = *cfg;
    p->name = dup_or_null(cfg->name != NULL ? cfg->name : "defer", &oom);
    p->db_path = dup_or_null(cfg->db_path, &oom);
    p->pg_conninfo = dup_or_null(cfg->pg_conninfo, &oom);
    p->pg_appname = dup_or_null(cfg->db.application_name, &oom);
    p->journal_mode = dup_or_null(cfg->db.journal_mode, &oom);
    p->synchronous = dup_or_null(cfg->db.synchronous, &oom);
    p->cfg.name = p->name;
    p->cfg.db_path = p->db_path;
    p->cfg.pg_conninfo = p->pg_conninfo;
    p->cfg.db.application_name = p->pg_appname;
    p->cfg.db.journal_mode = p->journal_mode;
    p->cfg.db.synchronous = p->synchronous;
    if (p->cfg.policy == DEFER_POLICY_REJECT)
        p->cfg.admit_wait_ms = 0;
    p->batch_cap = cfg->batch_max > cfg->max_tasks_per_request
                       ? cfg->batch_max : cfg->max_tasks_per_request;
    p->nworkers = cfg->workers;
    p->refs = 1;
    p->progress_ns = defer__now_ns();
    atomic_init(&p->abort, 0);
    p->workers = calloc(p->nworkers, sizeof *p->workers);
    if (oom || p->workers == NULL) {
        free_copies(p);
        set_err(errbuf, errbuf_len, "out of memory");
        return DEFER_ENOMEM;
    }
    rc = init_sync(p, errbuf, errbuf_len);
    if (rc != DEFER_OK) {
        free_copies(p);
        return rc;
    }
    rc = defer__rl_init(p);
    if (rc == DEFER_OK)
        rc = defer__health_init(p);
    if (rc != DEFER_OK) {
        set_err(errbuf, errbuf_len, "log or monitor setup failed");
        pool_free(p);
        return rc;
    }

    /* Everything that can fail short of threads comes first. */
    for (i = 0; i < p->nworkers; i++) {
        defer_worker *w = &p->workers[i];
        char msg[256] = "";
        int qrc;
        w->pool = p;
        w->index = i;
        w->batch = calloc(p->batch_cap, sizeof *w->batch);
        defer__runner_init(&w->run, p, (int)i, NULL);
        if (w->batch == NULL || w->run.slots == NULL) {
            set_err(errbuf, errbuf_len, "out of memory");
            pool_free(p);
            return DEFER_ENOMEM;
        }
        qrc = defer__db_open(&w->run, msg, sizeof msg);
        if (qrc != QB_OK) {
            /* The conninfo may hold a password: never echo it. */
            set_err(errbuf, errbuf_len, "worker %u: open %s: %s (%s)", i,
                    p->db_path != NULL ? p->db_path : "PostgreSQL", msg,
                    qb_strerror(qrc));
            pool_free(p);
            return qrc == QB_ENOMEM ? DEFER_ENOMEM
                   : qrc == QB_EINVAL ? DEFER_EINVAL : DEFER_EDB;
        }
    }

    /* Replay the journal on the first connection before any worker (or
     * any request) runs. */
    if (p->cfg.journal != DEFER_JOURNAL_OFF) {
        rc = defer__journal_start(p, &p->workers[0].run, errbuf, errbuf_len);
        if (rc != DEFER_OK) {
            pool_free(p);
            return rc;
        }
    }
    /* The journal copied them; the caller's strings are not kept. */
    p->cfg.journal_path = p->cfg.journal_id = NULL;

    /* Workers inherit a fully blocked signal mask: signals belong to the
     * application's main thread, never to a pool thread. */
    sigfillset(&all);
    rc = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (rc != 0) {
        set_err(errbuf, errbuf_len, "pthread_sigmask: %s", strerror(rc));
        pool_free(p);
        return DEFER_ETHREAD;
    }
    for (i = 0; i < p->nworkers; i++) {
        rc = pthread_create(&p->workers[i].tid, NULL, worker_main,
                            &p->workers[i]);
        if (rc != 0)
            break;
        p->workers[i].started = 1;
        p->alive++;
    }
    if (rc == 0 && (rc = defer__health_start(p)) != 0)
        i = p->nworkers; /* the monitor thread failed, not a worker */
    {
        int rc2 = pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc2 != 0) /* cannot restore the caller's mask: say so */
            fprintf(stderr, "defer: restoring signal mask: %s\n",
                    strerror(rc2));
    }
    if (rc != 0) {
        if (i < p->nworkers)
            set_err(errbuf, errbuf_len, "pthread_create (worker %u): %s", i,
                    strerror(rc));
        else
            set_err(errbuf, errbuf_len, "pthread_create (monitor): %s",
                    strerror(rc));
        abort_start(p);
        pool_free(p);
        return DEFER_ETHREAD;
    }
    *out = p;
    return DEFER_OK;
}

/* ---- shutdown ----------------------------------------------------------- */

/* Append line (may be NULL: level off or no memory) to a report. */
static void report_add(char ***lines, size_t *n, char *line)
{
    char **grown;
    if (line == NULL)
        return;
    grown = realloc(*lines, (*n + 1) * sizeof **lines);
    if (grown == NULL) {
        free(line);
        return;
    }
    *lines = grown;
    (*lines)[(*n)++] = line;
}

/* Under mu: take a hung worker's batch away.  READY tasks are STOLEN
 * (counted and reported left here; the worker frees them unrun when it
 * returns), the RUNNING one is marked HUNG.  The report lines are
 * formatted now, under mu: once mu is released the worker may return
 * and free the tasks. */
static void steal_batch(defer_pool *p, defer_worker *w, char ***lines,
                        size_t *nlines, size_t *nhung)
{
    size_t i;

    for (i = 0; i < w->nbatch; i++) {
        defer_task *t = w->batch[i];
        int exp = T_READY;
        if (atomic_compare_exchange_strong(&t->state, &exp, T_STOLEN)) {
            p->st.in_flight--;
            p->st.left++;
            report_add(lines, nlines,
                       defer__task_line(p, DEFER_LOG_ERROR, "task_left", t,
                                        (int)w->index,
                                        "taken by a hung worker"));
            continue;
        }
        exp = T_RUNNING;
        if (atomic_compare_exchange_strong(&t->state, &exp, T_HUNG)) {
            p->st.in_flight--;
            p->st.left++;
            p->st.hung++;
            (*nhung)++;
            report_add(lines, nlines,
                       defer__task_line(p, DEFER_LOG_ERROR, "task_hung", t,
                                        (int)w->index,
                                        "still running after the deadline"));
        }
    }
}

DEFER_API int defer_pool_shutdown(defer_pool *p, unsigned deadline_ms)
{
    int64_t end, grace_end;
    defer_task *left = NULL;
    char **report = NULL;
    size_t nreport = 0, nhung = 0, i, nleft = 0;
    uint64_t left_before;
    int drained_ok, rc, detach_failed = 0;

    if (p == NULL)
        return DEFER_EINVAL;
    defer__lock(p);
    if (p->shut_called) {
        rc = p->shut_done ? p->shut_rc : DEFER_EMISUSE;
        defer__unlock(p);
        return rc;
    }
    p->shut_called = 1;
    left_before = p->st.left;
    p->state = P_DRAINING;
    defer__broadcast(&p->space_cv);
    /* A worker in its group-commit window (up to batch_delay_max) would
     * otherwise wait it out: draining wants the queue empty now. */
    if (p->windows > 0)
        defer__broadcast(&p->work_cv);
    end = defer__now_ns() + (int64_t)deadline_ms * 1000000;
    atomic_store(&p->stop_end_ns, end);
    while (!drained(p)) {
        if (defer__wait(p, &p->done_cv, end) == ETIMEDOUT)
            break;
    }
    drained_ok = drained(p);
    if (!drained_ok)
        atomic_store(&p->abort, 1);
    p->state = P_STOPPED;
    left = p->qhead;
    for (defer_task *t = left; t != NULL; t = t->next)
        nleft++;
    p->qhead = p->qtail = NULL;
    p->st.queued -= nleft;
    p->st.left += nleft;
    update_hwm(p);
    defer__broadcast(&p->work_cv);
    defer__broadcast(&p->space_cv);
    defer__broadcast(&p->writer_cv);
    defer__broadcast(&p->sleep_cv);
    defer__unlock(p);

    if (nleft > 0)
        defer__log(p, DEFER_LOG_ERROR, "drain_deadline", NULL, -1,
                   DEFER_ETIMEDOUT, "queued tasks left unrun");
    free_task_list(p, left, DEFER_LOG_ERROR, "task_left",
                   "queued at deadline");

    defer__lock(p);
    grace_end = defer__now_ns() +
                (int64_t)(p->cfg.grace_ms ? p->cfg.grace_ms : DEFER_GRACE_MS) *
                    1000000;
    for (;;) {
        unsigned still = 0;
        int jbar, past;
        int64_t until = grace_end;
        for (i = 0; i < p->nworkers; i++)
            if (p->workers[i].started && !p->workers[i].leaving)
                still++;
        if (still == 0)
            break;
        /* Drained, a worker may still be in a journal barrier after its
         * last batch (defer__journal_tidy: SQL of its own), on
         * PostgreSQL not bounded by the deadline (SQLite's lock waits
         * are): treated as a running statement once the deadline passed. */
        jbar = drained_ok && p->journal != NULL && defer__db_is_pg(p);
        past = defer__now_ns() >= end;
        if (defer__db_is_pg(p) && (!drained_ok || (jbar && past))) {
            /* PostgreSQL has no progress handler: close the sessions
             * of running statements, again every 100 ms for one that was
             * in COMMIT (never cut).  Not under mu (the lock is a leaf). */
            defer__unlock(p);
            for (i = 0; i < p->nworkers; i++)
                defer__db_cancel(&p->workers[i].run);
            defer__lock(p);
            if (until > defer__now_ns() + 100000000)
                until = defer__now_ns() + 100000000;
        }
        /* Drained: nobody is inside a task, they all leave promptly (a
         * barrier: cut above; never detached, it is no callback). */
        if (drained_ok)
            until = !jbar ? 0 : past ? until : end;
        if (defer__wait(p, &p->done_cv, until) == ETIMEDOUT &&
            until == grace_end && !drained_ok)
            break;
    }
    for (i = 0; i < p->nworkers; i++) {
        defer_worker *w = &p->workers[i];
        int drc;
        if (!w->started || w->leaving)
            continue;
        steal_batch(p, w, &report, &nreport, &nhung);
        drc = pthread_detach(w->tid);
        if (drc != 0)
            detach_failed = drc;
        w->detached = 1;
        w->started = 0; /* not ours to join any more */
        p->refs++;
    }
    update_hwm(p);
    defer__unlock(p);

    for (i = 0; i < nreport; i++) {
        defer__log_line(p, DEFER_LOG_ERROR, report[i]);
        free(report[i]);
    }
    free(report);
    if (detach_failed)
        defer__log(p, DEFER_LOG_ERROR, "detach_failed", NULL, -1,
                   DEFER_ETHREAD, strerror(detach_failed));

    for (i = 0; i < p->nworkers; i++) {
        if (p->workers[i].started) {
            int jrc = join_worker(p, i, end);
            if (jrc != 0)
                defer__log(p, DEFER_LOG_ERROR, "join_failed", NULL, (int)i,
                           DEFER_ETHREAD, strerror(jrc));
            p->workers[i].started = 0;
        }
    }

    defer__health_stop(p); /* joins the monitor */
    defer__rl_flush(p, 1); /* repeated=N summaries still pending */
    defer__lock(p);
    rc = (p->st.left > left_before || nhung > 0 || !drained_ok)
             ? DEFER_ETIMEDOUT : DEFER_OK;
    p->shut_done = 1;
    p->shut_rc = rc;
    {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "admitted=%llu ok=%llu failed=%llu left=%llu hung=%llu",
                 (unsigned long long)p->st.admitted,
                 (unsigned long long)p->st.ok,
                 (unsigned long long)p->st.failed,
                 (unsigned long long)p->st.left,
                 (unsigned long long)p->st.hung);
        defer__unlock(p);
        defer__log(p, rc == DEFER_OK ? DEFER_LOG_INFO : DEFER_LOG_ERROR,
                   "shutdown", NULL, -1, rc, msg);
    }
    return rc;
}

DEFER_API void defer_pool_destroy(defer_pool *p)
{
    int called;
    if (p == NULL)
        return;
    defer__lock(p);
    called = p->shut_called;
    defer__unlock(p);
    if (!called)
        (void)defer_pool_shutdown(p, p->cfg.drain_ms);
    pool_unref(p);
}

DEFER_API qb_dialect defer_pool_dialect(const defer_pool *p)
{
    return p != NULL && p->cfg.pg_conninfo != NULL ? QB_DIALECT_POSTGRES
                                                   : QB_DIALECT_SQLITE;
}

DEFER_API void defer_pool_stats(defer_pool *p, defer_stats *out)
{
    if (out == NULL)
        return;
    if (p == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    defer__lock(p);
    update_hwm(p);
    *out = p->st;
    out->commit_mean_us = (uint64_t)(p->commit_avg_ns / 1000);
    out->window_us = (uint64_t)(defer__window_ns(&p->cfg, p->commit_avg_ns) /
                                1000);
    defer__health_stats(p, out);
    defer__rl_stats(p, out);
    defer__unlock(p);
    defer__journal_stats(p, out); /* its own leaf lock, not under mu */
}

/* ---- contexts and registration ------------------------------------------ */

DEFER_API int defer_ctx_create(defer_pool *pool, defer_ctx **out)
{
    defer_ctx *c;
    if (out == NULL)
        return DEFER_EINVAL;
    *out = NULL;
    if (pool == NULL)
        return DEFER_EINVAL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return DEFER_ENOMEM;
    c->pool = pool;
    c->scratch = calloc(pool->cfg.max_tasks_per_request, sizeof *c->scratch);
    defer__runner_init(&c->run, pool, -1, NULL);
    if (c->scratch == NULL || c->run.slots == NULL) {
        free(c->scratch);
        defer__runner_fini(&c->run);
        free(c);
        return DEFER_ENOMEM;
    }
    /* A ctx may be freed after the pool: closing its inline connection
     * still counts it in the pool (defer_health.c), so it holds a
     * reference. */
    defer__lock(pool);
    pool->refs++;
    defer__unlock(pool);
    *out = c;
    return DEFER_OK;
}

static void ctx_reset(defer_ctx *c)
{
    c->head = c->tail = NULL;
    c->n = 0;
    c->admitted = 0;
    c->rid_len = 0;
    c->rid[0] = '\0';
}

DEFER_API int defer_ctx_set_request_id(defer_ctx *c, const char *id)
{
    if (c == NULL)
        return DEFER_EINVAL;
    c->rid_len = id != NULL ? strnlen(id, DEFER_REQUEST_ID_MAX) : 0;
    memcpy(c->rid, id != NULL ? id : "", c->rid_len);
    c->rid[c->rid_len] = '\0';
    return DEFER_OK;
}

DEFER_API void defer_ctx_discard(defer_ctx *c)
{
    defer_task *t;
    if (c == NULL)
        return;
    if (c->admitted) {
        defer_submit(c->pool, c);
        return;
    }
    t = c->head;
    ctx_reset(c);
    while (t != NULL) {
        defer_task *next = t->next;
        if (t->arg_free != NULL)
            t->arg_free(t->arg);
        free(t);
        t = next;
    }
}

DEFER_API void defer_ctx_free(defer_ctx *c)
{
    defer_pool *p;
    if (c == NULL)
        return;
    p = c->pool;
    defer_ctx_discard(c);
    defer__runner_fini(&c->run);
    free(c->scratch);
    free(c);
    pool_unref(p);
}

DEFER_API size_t defer_ctx_count(const defer_ctx *c)
{
    return c != NULL ? c->n : 0;
}

DEFER_API int defer_ctx_task(const defer_ctx *c, size_t i, const qb_query **q,
                             const char **label)
{
    const defer_task *t;
    if (c == NULL || c->admitted || i >= c->n)
        return DEFER_EINVAL;
    for (t = c->head; i > 0; i--)
        t = t->next;
    if (q != NULL)
        *q = t->fn == NULL ? (const qb_query *)t->arg : NULL;
    if (label != NULL)
        *label = t->label;
    return DEFER_OK;
}

static void count_refused(defer_pool *p)
{
    defer__lock(p);
    p->st.refused++;
    defer__unlock(p);
}

static int add_task(defer_ctx *c, defer_fn fn, void *arg,
                    defer_free_fn arg_free, const char *label)
{
    defer_task *t;
    size_t len;

    if (c->admitted) {
        if (arg_free != NULL)
            arg_free(arg);
        count_refused(c->pool);
        return DEFER_EMISUSE;
    }
    if (c->n >= c->pool->cfg.max_tasks_per_request) {
        if (arg_free != NULL)
            arg_free(arg);
        count_refused(c->pool);
        return DEFER_ETOOMANY;
    }
    if (label == NULL)
        label = "-";
    len = strnlen(label, DEFER_LABEL_MAX);
    /* label, NUL, request id, NUL: the id lives in the task's own
     * allocation (both bounded: 127 + 64 bytes). */
    t = malloc(sizeof *t + len + 1 + c->rid_len + 1);
    if (t == NULL) {
        if (arg_free != NULL)
            arg_free(arg);
        count_refused(c->pool);
        return DEFER_ENOMEM;
    }
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    t->arg_free = arg_free;
    t->req_len = 0;
    t->jseq = 0;
    atomic_init(&t->state, T_READY);
    memcpy(t->label, label, len);
    t->label[len] = '\0';
    t->rid_off = (unsigned short)(len + 1);
    memcpy(t->label + len + 1, c->rid, c->rid_len);
    t->label[len + 1 + c->rid_len] = '\0';
    if (c->tail != NULL)
        c->tail->next = t;
    else
        c->head = t;
    c->tail = t;
    c->n++;
    c->head->req_len = c->n;
    return DEFER_OK;
}

DEFER_API int defer_wait_until(defer_ctx *c, defer_fn fn, void *arg,
                               defer_free_fn arg_free, const char *label)
{
    if (c == NULL || fn == NULL) {
        if (arg_free != NULL)
            arg_free(arg);
        if (c != NULL)
            count_refused(c->pool);
        return DEFER_EINVAL;
    }
    return add_task(c, fn, arg, arg_free, label);
}

static void free_query(void *q)
{
    qb_query_free(q);
}

DEFER_API int defer_wait_until_query(defer_ctx *c, qb_query *q,
                                     const char *label)
{
    if (c != NULL && q != NULL &&
        qb_query_dialect(q) != defer_pool_dialect(c->pool)) {
        /* The dialect follows the pool: converted once, here, in the
         * request's thread (QB_EDIALECT when it cannot be). */
        qb_query *conv = NULL;
        (void)qb_query_convert(q, defer_pool_dialect(c->pool), &conv);
        qb_query_free(q);
        q = conv;
        if (q == NULL) {
            count_refused(c->pool);
            return DEFER_EINVAL;
        }
    }
    if (c == NULL || q == NULL ||
        (c->pool->db_path == NULL && c->pool->pg_conninfo == NULL)) {
        qb_query_free(q);
        if (c != NULL)
            count_refused(c->pool);
        return DEFER_EINVAL;
    }
    return add_task(c, NULL, q, free_query, label);
}

/* ---- admission ---------------------------------------------------------- */

static size_t used_slots(const defer_pool *p)
{
    return (size_t)(p->st.reserved + p->st.queued + p->st.in_flight);
}

/* Run ctx's tasks in the calling thread (policy INLINE, queue full). */
static void run_inline(defer_pool *p, defer_ctx *c)
{
    defer_task *t = c->head;
    size_t n = 0, i;

    while (t != NULL) {
        c->scratch[n++] = t;
        t = t->next;
    }
    ctx_reset(c);
    if (!defer__db_connected(&c->run) && !c->db_tried &&
        (p->db_path != NULL || p->pg_conninfo != NULL)) {
        char msg[256] = "";
        /* Try once per ctx: a failing open would otherwise be retried on
         * every overloaded request.  Its SQL tasks then fail, logged. */
        c->db_tried = 1;
        if (defer__db_open(&c->run, msg, sizeof msg) != QB_OK)
            defer__log(p, DEFER_LOG_ERROR, "inline_db_open_failed", NULL,
                       -1, DEFER_EDB, msg);
    }
    defer__run_batch(&c->run, c->scratch, n);
    defer__lock(p);
    p->st.inline_run += c->run.n_ok + c->run.n_failed;
    p->st.inline_failed += c->run.n_failed;
    /* Not run because the shutdown deadline passed meanwhile (logged as
     * task_left): they were never admitted, so they count as rejected. */
    p->st.rejected += c->run.n_left;
    p->st.timeouts += c->run.n_timeouts;
    defer__unlock(p);
    c->run.n_ok = c->run.n_failed = c->run.n_left = 0;
    c->run.n_timeouts = c->run.n_commits = 0;
    c->run.commit_ns = 0;
    for (i = 0; i < n; i++)
        free(c->scratch[i]);
}

static void reject(defer_pool *p, defer_ctx *c, const char *why)
{
    defer_task *t = c->head;
    ctx_reset(c);
    free_task_list(p, t, DEFER_LOG_DEBUG, "task_rejected", why);
}

/* Under mu, policy WAIT, no room for n tasks: wait up to admit_wait_ms
 * for room, but only in a pool whose workers took or finished a batch
 * within that time.  A stalled writer (a lock held elsewhere, a hung
 * server) frees no slot: each waiter would
 * hold its request thread for the whole bound while the requests behind
 * it (in nginx, in the listen backlog) waited too -- 503s took seconds at
 * c=128 with 4 threads.  Then the caller refuses at once. */
static void wait_for_room(defer_pool *p, size_t n)
{
    size_t cap = p->cfg.queue_capacity;
    int64_t now = defer__now_ns();
    int64_t wait_ns = (int64_t)p->cfg.admit_wait_ms * 1000000;

    if (p->windows > 0) /* a worker waiting for its batch: start now */
        defer__broadcast(&p->work_cv);
    /* Stalled: there is work for the workers (not only slots reserved by
     * requests still being answered), none is in its batch window, and
     * none took a batch or finished a segment since the work arrived or
     * for the whole bound. */
    if (p->st.queued + p->st.in_flight > 0 && p->windows == 0 &&
        now - p->progress_ns > wait_ns) {
        p->st.admit_stalled++;
        return;
    }
    p->st.admit_waits++;
    p->space_waiters++;
    while (p->state == P_RUNNING && n > cap - used_slots(p)) {
        if (defer__wait(p, &p->space_cv, now + wait_ns) == ETIMEDOUT)
            break;
    }
    p->space_waiters--;
}

DEFER_API int defer_admit(defer_pool *p, defer_ctx *c)
{
    size_t n, cap;

    if (p == NULL || c == NULL || c->pool != p)
        return DEFER_EINVAL;
    if (c->admitted)
        return DEFER_EMISUSE;
    n = c->n;
    if (n == 0) {
        c->admitted = 1;
        return DEFER_OK;
    }
    if (defer__health_admit(p, &c->run, n) != DEFER_OK) {
        reject(p, c, "database unavailable");
        return DEFER_EUNAVAIL;
    }
    cap = p->cfg.queue_capacity;
    defer__lock(p);
    if (p->state == P_RUNNING && n > cap - used_slots(p) &&
        p->cfg.policy == DEFER_POLICY_WAIT && p->cfg.admit_wait_ms > 0 &&
        n <= cap)
        wait_for_room(p, n);
    if (p->state != P_RUNNING) {
        p->st.rejected += n;
        defer__unlock(p);
        reject(p, c, "shutting down");
        return DEFER_ESHUTDOWN;
    }
    if (n > cap - used_slots(p)) {
        if (p->cfg.policy == DEFER_POLICY_INLINE) {
            defer__unlock(p);
            run_inline(p, c);
            return DEFER_INLINE;
        }
        p->st.rejected += n;
        defer__unlock(p);
        reject(p, c, "queue full");
        return DEFER_EFULL;
    }
    p->st.reserved += n;
    p->st.admitted += n;
    update_hwm(p);
    defer__unlock(p);
    /* The slots are ours: now the journal (never for a full queue). */
    if (p->journal != NULL && defer__journal_admit(p, c->head) != DEFER_OK) {
        defer__lock(p);
        p->st.reserved -= n;
        p->st.admitted -= n;
        p->st.rejected += n;
        defer__broadcast(&p->space_cv);
        defer__unlock(p);
        reject(p, c, "journal append failed");
        return DEFER_EJOURNAL;
    }
    c->admitted = 1;
    return DEFER_OK;
}

DEFER_API void defer_submit(defer_pool *p, defer_ctx *c)
{
    defer_task *head, *tail;
    size_t n;

    if (p == NULL || c == NULL || c->pool != p || !c->admitted)
        return;
    head = c->head;
    tail = c->tail;
    n = c->n;
    ctx_reset(c);
    if (n == 0)
        return;
    defer__lock(p);
    p->st.reserved -= n;
    if (p->st.queued + p->st.in_flight == 0)
        p->progress_ns = defer__now_ns(); /* work arrives in an idle pool */
    if (p->state == P_STOPPED) {
        /* Admitted before shutdown, submitted after it gave up: the
         * tasks will never run; account and report them as left. */
        p->st.left += n;
        update_hwm(p);
        defer__unlock(p);
        free_task_list(p, head, DEFER_LOG_ERROR, "task_left",
                       "submitted after shutdown");
        return;
    }
    if (p->qtail != NULL)
        p->qtail->next = head;
    else
        p->qhead = head;
    p->qtail = tail;
    p->st.queued += n;
    /* Wake a worker when there is something new to start on: the queue
     * was empty, or a full batch is waiting (which also ends a worker's
     * group-commit window early).  Waking one per request would cost a
     * context switch per request and commit batches of one. */
    if ((p->idle > 0 || p->windows > 0) &&
        (p->st.queued == n || p->st.queued >= full_batch(p)))
        defer__signal(&p->work_cv);
    defer__unlock(p);
}
