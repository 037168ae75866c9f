/*
 * defer_run.c -- running tasks: group-committed SQL segments, callbacks,
 * BUSY retry, time budgets, failure logging.
 *
 * DESIGN
 *
 * A worker's batch is cut into segments: a maximal run of consecutive SQL
 * tasks is one segment (one transaction), a callback task is a segment of
 * its own and runs outside any transaction.  Registration order is kept,
 * and a callback only starts after the SQL before it was committed.
 *
 * An SQL segment: take the pool's writer token, BEGIN IMMEDIATE, run the
 * tasks, COMMIT.  On PostgreSQL the first pass sends the segment's tasks
 * as one pipeline (qb_pipeline: one round trip, not one per task);
 * a failure there is handled like a failure of the first pass below.  Savepoints cost two extra statements per task, and
 * failures are rare, so the first pass runs without them: on the first
 * failure the whole transaction is rolled back, the failed task is marked
 * (its error kept; it is not run again: the replay reaches it in the same
 * state, so it would fail the same way) and the segment is replayed with
 * SAVEPOINT / qb_exec / RELEASE per task, where a failing task is rolled
 * back to its savepoint alone and the others go on.  The net effect is
 * exactly "a savepoint per task", at the price of one replay per segment
 * that has failures.  Some failures take the whole transaction with them
 * even under a savepoint (an interrupted write, RAISE(ROLLBACK), disk
 * full: SQLite is then back in autocommit mode); the failed task is
 * marked and the segment restarted without it, so at most n restarts.
 * QB_EBUSY anywhere rolls the transaction back and retries it after an
 * exponential, jittered backoff, at most busy_retries times; then every
 * task still standing is failed.  Results are only counted and logged
 * once the transaction's fate is known, so a task retried after BUSY is
 * logged once.
 *
 * Time: the progress handler (every PROGRESS_OPS VM steps) stops a
 * statement past its task budget (WHY_BUDGET) or once the pool aborts at
 * the shutdown deadline (WHY_ABORT).  Our busy handler replaces
 * sqlite3_busy_timeout so that a wait for the lock also ends at the
 * deadline: it sleeps on the pool's sleep_cv, not in nanosleep.
 *
 * Ownership: each task is claimed with a CAS (READY -> RUNNING) before it
 * runs; see defer_int.h.  The claimer calls arg_free exactly once, after
 * the task's result is final.  A lost claim means shutdown stole the task.
 *
 * Threads: a runner is used by one thread; it touches the pool only under
 * pool->mu (token, sleep) or through the atomic abort flag.
 */
#define _GNU_SOURCE
#include "defer_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRESS_OPS 1000
#define SP_NAME "defer_task"
/* A task's line: at most LOG_LINE_MAX - 1 bytes, whatever it holds (the
 * web log adds ~45 bytes of ts= and level= to it within its 4096; a
 * summary adds " repeated=N").  The bounds below add up to less, so
 * request_id and values, written last, are not cut off.
 * Each quoted value is cut at its own bound, and at what is left of the
 * line less LB_RESERVE, so that a cut value still gets its closing quote
 * and the keys after it still fit. */
#define LOG_LINE_MAX 4000
#define LB_RESERVE 16
#define LOG_SQL_MAX 1000
#define LOG_VALUE_MAX 400
#define LOG_RID_MAX 200        /* a request id that needs quoting */
#define LOG_VALUES_RAW 600     /* the values list, before escaping */
#define LOG_VALUES_MAX 1200    /* ... after */
#define LOG_TEXT_CUT 64        /* one text value's bytes shown */
#define LOG_BLOB_CUT 32        /* one blob's bytes shown (hex) */

enum { S_PENDING = 0, S_OK, S_FAILED };

/* exec_one() results */
enum { X_OK = 0, X_FAIL, X_RESTART, X_BUSY, X_ABORT, X_CONN };

/* ---- clock, locks ------------------------------------------------------- */

int64_t defer__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    /* A failing mutex/condvar operation on a valid object means memory
     * corruption; continuing would risk lost or doubled tasks. */
    fprintf(stderr, "defer: fatal: %s: %s\n", what, strerror(rc));
    abort();
}

/* A pthread call that must not fail (see die). */
#define MUST(call, what)                                                  \
    do {                                                                  \
        int must_rc_ = (call);                                            \
        if (must_rc_ != 0)                                                \
            die(what, must_rc_);                                          \
    } while (0)

void defer__mutex_lock(pthread_mutex_t *mu)
{
    MUST(pthread_mutex_lock(mu), "pthread_mutex_lock");
}

void defer__mutex_unlock(pthread_mutex_t *mu)
{
    MUST(pthread_mutex_unlock(mu), "pthread_mutex_unlock");
}

void defer__lock(defer_pool *p)
{
    defer__mutex_lock(&p->mu);
}

void defer__unlock(defer_pool *p)
{
    defer__mutex_unlock(&p->mu);
}

void defer__broadcast(pthread_cond_t *cv)
{
    MUST(pthread_cond_broadcast(cv), "pthread_cond_broadcast");
}

void defer__signal(pthread_cond_t *cv)
{
    MUST(pthread_cond_signal(cv), "pthread_cond_signal");
}

int defer__cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           int64_t abs_ns)
{
    int rc;
    if (abs_ns == 0) {
        rc = pthread_cond_wait(cv, mu);
    } else {
        struct timespec ts;
        ts.tv_sec = (time_t)(abs_ns / 1000000000);
        ts.tv_nsec = (long)(abs_ns % 1000000000);
        rc = pthread_cond_timedwait(cv, mu, &ts);
    }
    if (rc != 0 && rc != ETIMEDOUT)
        die("pthread_cond_wait", rc);
    return rc;
}

int defer__wait(defer_pool *p, pthread_cond_t *cv, int64_t abs_ns)
{
    return defer__cond_wait_until(cv, &p->mu, abs_ns);
}

int defer__cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &a);
    (void)pthread_condattr_destroy(&a);
    return rc;
}

void defer__pool_sleep(defer_pool *p, unsigned ms)
{
    int64_t end = defer__now_ns() + (int64_t)ms * 1000000;
    defer__lock(p);
    while (!atomic_load(&p->abort)) {
        if (defer__wait(p, &p->sleep_cv, end) == ETIMEDOUT)
            break;
    }
    defer__unlock(p);
}

static int aborted(const defer_pool *p)
{
    return atomic_load_explicit(&p->abort, memory_order_acquire);
}

/* ---- logging ------------------------------------------------------------ */

typedef struct lbuf {
    char s[LOG_LINE_MAX];
    size_t n;
} lbuf;

static void lb_putc(lbuf *b, char c)
{
    if (b->n + 1 < sizeof b->s)
        b->s[b->n++] = c;
    b->s[b->n] = '\0';
}

static void lb_puts(lbuf *b, const char *s)
{
    while (*s != '\0')
        lb_putc(b, *s++);
}

/* Length of the UTF-8 sequence at s (n bytes left), or 0 when s does
 * not start a well-formed one (a stray continuation byte, a cut or
 * overlong sequence, a lead byte over F4). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t k, i;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        k = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        k = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        k = 4;
    else
        return 0;
    if (k > n)
        return 0;
    for (i = 1; i < k; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return k;
}

/* key="value", escaped so that the line stays one parseable logfmt line
 * whatever v holds: '"' and '\\' escaped, control bytes and bytes that
 * are not UTF-8 written \xNN (\n, \t for those two), so no byte of v can
 * end the line, end the quoted string or start a key.  At most max bytes
 * of output for v (and never past the line's reserve); a cut value ends
 * in "..." inside the quotes. */
static void lb_kv(lbuf *b, const char *key, const char *v, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)v;
    size_t i, n, out = 0, room;
    if (v == NULL)
        return;
    lb_putc(b, ' ');
    lb_puts(b, key);
    lb_puts(b, "=\"");
    room = sizeof b->s - 1 - b->n;
    room = room > LB_RESERVE + 4 ? room - LB_RESERVE - 4 : 0;
    if (max > room)
        max = room;
    n = strlen(v);
    for (i = 0; i < n;) {
        char e[8];
        size_t k = utf8_len(p + i, n - i), el;
        if (k == 1 && (p[i] == '"' || p[i] == '\\')) {
            e[0] = '\\';
            e[1] = (char)p[i];
            el = 2;
        } else if (k == 1 && p[i] == '\n') {
            memcpy(e, "\\n", 2);
            el = 2;
        } else if (k == 1 && p[i] == '\t') {
            memcpy(e, "\\t", 2);
            el = 2;
        } else if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
            e[0] = '\\';
            e[1] = 'x';
            e[2] = hex[p[i] >> 4];
            e[3] = hex[p[i] & 15];
            el = 4;
            k = 1;
        } else {
            memcpy(e, p + i, k);
            el = k;
        }
        if (out + el > max) {
            lb_puts(b, "...");
            break;
        }
        for (size_t j = 0; j < el; j++)
            lb_putc(b, e[j]);
        out += el;
        i += k;
    }
    lb_putc(b, '"');
}

/* The request id: bare when it is a plain token ([A-Za-z0-9._-], what
 * nginx's $request_id is), "-" when there is none, else quoted. */
static void lb_rid(lbuf *b, const char *rid)
{
    size_t i;
    for (i = 0; rid[i] != '\0'; i++) {
        char c = rid[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-')) {
            lb_kv(b, "request_id", rid, LOG_RID_MAX);
            return;
        }
    }
    lb_puts(b, " request_id=");
    lb_puts(b, i > 0 ? rid : "-");
}

static void lb_kvi(lbuf *b, const char *key, long long v)
{
    char num[32];
    snprintf(num, sizeof num, " %s=%lld", key, v);
    lb_puts(b, num);
}

static const char *level_name(int level)
{
    switch (level) {
    case DEFER_LOG_DEBUG: return "debug";
    case DEFER_LOG_INFO: return "info";
    case DEFER_LOG_WARN: return "warn";
    default: return "error";
    }
}

void defer__log_write(defer_pool *p, int level, const char *line)
{
    if (p->cfg.log != NULL) {
        p->cfg.log(p->cfg.log_ud, level, line);
        return;
    }
    /* One call, so stdio's stream lock keeps the line whole.  A line
     * that cannot be written (disk full under a redirected stderr) has
     * nowhere to be reported: it is counted (log_dropped). */
    if (fprintf(stderr, "level=%s %s\n", level_name(level), line) < 0)
        atomic_fetch_add(&p->log_dropped, 1);
}

int defer__log_enabled(const defer_pool *p, int level)
{
    return level >= p->cfg.log_level;
}

/* ---- a task's bound values (defer.h, LOG LINES) ---------------------- */

typedef struct vbuf {
    char *s;
    size_t len, n;  /* capacity, used (s[n] is NUL) */
    int full;       /* something did not fit */
} vbuf;

static void vb_put(vbuf *v, const char *s, size_t n)
{
    if (v->full || v->len - 1 - v->n < n) {
        v->full = 1;
        return;
    }
    memcpy(v->s + v->n, s, n);
    v->n += n;
    v->s[v->n] = '\0';
}

static void vb_str(vbuf *v, const char *s)
{
    vb_put(v, s, strlen(s));
}

/* Text bytes cut to at most max, at a character boundary. */
static size_t text_cut(const unsigned char *s, size_t n, size_t max)
{
    size_t k;
    if (n <= max)
        return n;
    k = max;
    /* back off over continuation bytes (at most 3) to a lead byte */
    while (k > 0 && max - k < 3 && (s[k] & 0xc0) == 0x80)
        k--;
    return (s[k] & 0xc0) == 0x80 ? max : k;
}

/* One value, formatted (mode ON) or typed (REDACT), into v as a unit:
 * all of it or nothing (v->full). */
static void vb_value(vbuf *v, size_t idx, const qb_value *val, int mode)
{
    static const char hex[] = "0123456789abcdef";
    char one[LOG_TEXT_CUT * 2 + LOG_BLOB_CUT * 2 + 64];
    vbuf u = {one, sizeof one, 0, 0};
    char num[64];
    one[0] = '\0';
    snprintf(num, sizeof num, "%zu:", idx);
    vb_str(&u, num);
    switch (val->type) {
    case QB_V_NULL:
        vb_str(&u, "NULL");
        break;
    case QB_V_INT:
        if (mode == DEFER_VALUES_REDACT)
            vb_str(&u, "int");
        else {
            snprintf(num, sizeof num, "%" PRId64, val->u.i);
            vb_str(&u, num);
        }
        break;
    case QB_V_BOOL:
        vb_str(&u, mode == DEFER_VALUES_REDACT ? "bool"
                   : val->u.i                  ? "1"
                                               : "0");
        break;
    case QB_V_REAL:
        if (mode == DEFER_VALUES_REDACT)
            vb_str(&u, "real");
        else {
            snprintf(num, sizeof num, "%.17g", val->u.d);
            vb_str(&u, num);
        }
        break;
    case QB_V_TEXT: {
        const unsigned char *t = val->u.b.p;
        size_t n = t != NULL ? val->u.b.n : 0, cut, i;
        if (mode == DEFER_VALUES_REDACT) {
            snprintf(num, sizeof num, "text(len=%zu)", n);
            vb_str(&u, num);
            break;
        }
        cut = text_cut(t, n, LOG_TEXT_CUT);
        vb_put(&u, "'", 1);
        for (i = 0; i < cut; i++) {
            if (t[i] == '\'')
                vb_put(&u, "''", 2);
            else
                vb_put(&u, (const char *)t + i, 1);
        }
        vb_put(&u, "'", 1);
        if (cut < n) {
            snprintf(num, sizeof num, "...(len=%zu)", n);
            vb_str(&u, num);
        }
        break;
    }
    case QB_V_BLOB: {
        const unsigned char *t = val->u.b.p;
        size_t n = t != NULL ? val->u.b.n : 0, i;
        if (mode == DEFER_VALUES_REDACT) {
            snprintf(num, sizeof num, "blob(len=%zu)", n);
            vb_str(&u, num);
            break;
        }
        vb_put(&u, "x'", 2);
        for (i = 0; i < n && i < LOG_BLOB_CUT; i++) {
            char h[2] = {hex[t[i] >> 4], hex[t[i] & 15]};
            vb_put(&u, h, 2);
        }
        vb_put(&u, "'", 1);
        if (n > LOG_BLOB_CUT) {
            snprintf(num, sizeof num, "...(len=%zu)", n);
            vb_str(&u, num);
        }
        break;
    }
    case QB_V_RAW:
        vb_str(&u, "raw"); /* never bound; listed for the index */
        break;
    default:
        vb_str(&u, "subquery");
        break;
    }
    vb_put(v, one, u.n);
}

size_t defer__format_values(char *buf, size_t len, const qb_query *q,
                            int mode)
{
    vbuf v = {buf, len, 0, 0};
    size_t total = 0, shown = 0;
    const qb_query *l;
    char tail[48];

    if (buf == NULL || len == 0)
        return 0;
    buf[0] = '\0';
    if (q == NULL || mode == DEFER_VALUES_OFF || len < sizeof tail + 1)
        return 0;
    for (l = q; l != NULL; l = qb_query_next(l))
        total += qb_query_nparams(l);
    /* room for the " ...(N values)" tail is kept back until the end */
    v.len = len - sizeof tail;
    for (l = q; l != NULL && !v.full; l = qb_query_next(l)) {
        const qb_value *vals = qb_query_params(l);
        size_t i, n = qb_query_nparams(l);
        if (l != q)
            vb_str(&v, " |");
        for (i = 0; i < n && !v.full; i++) {
            size_t before = v.n;
            if (v.n > 0)
                vb_put(&v, " ", 1);
            vb_value(&v, i + 1, &vals[i], mode);
            if (v.full) {
                v.n = before; /* a value is shown whole or not at all */
                buf[v.n] = '\0';
            } else {
                shown++;
            }
        }
    }
    if (shown < total) {
        v.len = len;
        v.full = 0;
        snprintf(tail, sizeof tail, "%s...(%zu values)", v.n > 0 ? " " : "",
                 total);
        vb_str(&v, tail);
    }
    return v.n;
}

/* The line emit writes, without the level; touches nothing but p's
 * immutable fields and t, so it may run under pool->mu.  with_task: the
 * request id and the values too (not in a repeat summary's kept line). */
static void format_line(lbuf *b, const defer_pool *p, const char *event,
                        const defer_task *t, int worker, int has_rc, int rc,
                        const char *rcstr, const char *detail, int with_task)
{
    b->n = 0;
    b->s[0] = '\0';
    lb_puts(b, "pool=");
    lb_puts(b, p->name);
    lb_puts(b, " event=");
    lb_puts(b, event);
    if (worker >= 0)
        lb_kvi(b, "worker", worker);
    if (t != NULL) {
        lb_kv(b, "label", t->label, LOG_VALUE_MAX);
        lb_puts(b, t->fn != NULL ? " kind=callback" : " kind=sql");
    }
    if (has_rc) {
        lb_kvi(b, "rc", rc);
        lb_kv(b, "error", rcstr, LOG_VALUE_MAX);
    }
    lb_kv(b, "detail", detail, LOG_VALUE_MAX);
    if (t != NULL && t->fn == NULL)
        lb_kv(b, "sql", qb_query_sql(t->arg), LOG_SQL_MAX);
    /* New keys go last, so that what consumers of these lines match on
     * ("worker=N label=... kind=sql detail=...") keeps its order. */
    if (t != NULL && with_task)
        lb_rid(b, defer__task_rid(t));
    if (t != NULL && t->fn == NULL && with_task &&
        p->cfg.log_values != DEFER_VALUES_OFF) {
        char vals[LOG_VALUES_RAW];
        defer__format_values(vals, sizeof vals, t->arg,
                             (int)p->cfg.log_values);
        lb_kv(b, "values", vals, LOG_VALUES_MAX);
    }
}

void defer__log_line(defer_pool *p, int level, const char *line)
{
    if (line == NULL || !defer__log_enabled(p, level))
        return;
    defer__log_write(p, level, line); /* shutdown's reports: not folded */
}

char *defer__task_line(const defer_pool *p, int level, const char *event,
                       const defer_task *t, int worker, const char *detail)
{
    lbuf b;
    if (!defer__log_enabled(p, level))
        return NULL;
    format_line(&b, p, event, t, worker, 0, 0, NULL, detail, 1);
    return strdup(b.s);
}

static void emit(defer_pool *p, int level, const char *event,
                 const defer_task *t, int worker, int has_rc, int rc,
                 const char *rcstr, const char *detail)
{
    lbuf b, keep;
    char sum[LOG_LINE_MAX + 32];
    int pass, sum_level = level;
    if (!defer__log_enabled(p, level))
        return;
    format_line(&b, p, event, t, worker, has_rc, rc, rcstr, detail, 1);
    /* What a repeat summary would show of this line: no request id and
     * no values, which would name one of the N folded tasks as if it
     * were all of them.  Formatted only for a task's line (the rest are
     * the same either way); this is the failure path, not a hot one. */
    if (t != NULL)
        format_line(&keep, p, event, t, worker, has_rc, rc, rcstr, detail,
                    0);
    /* Fold repeats (defer_log.c): the key leaves label, SQL, request id
     * and values out. */
    pass = defer__rl_pass(p, level, event, has_rc ? rc : 0, detail,
                          t != NULL ? keep.s : b.s, sum, sizeof sum,
                          &sum_level);
    if (sum[0] != '\0')
        defer__log_write(p, sum_level, sum);
    if (pass)
        defer__log_write(p, level, b.s);
}

void defer__log(defer_pool *p, int level, const char *event,
                const defer_task *t, int worker, int rc, const char *detail)
{
    emit(p, level, event, t, worker, 1, rc, defer_strerror(rc), detail);
}

void defer__drop_task(defer_pool *p, defer_task *t, int level,
                      const char *event, const char *why)
{
    emit(p, level, event, t, -1, 0, 0, NULL, why);
    if (t->arg_free != NULL)
        t->arg_free(t->arg);
    free(t);
}

/* ---- SQLite handlers ---------------------------------------------------- */

static int progress_cb(void *ud)
{
    defer_runner *r = ud;
    if (aborted(r->pool)) {
        r->why = WHY_ABORT;
        return 1;
    }
    if (r->stmt_deadline_ns != 0 && defer__now_ns() > r->stmt_deadline_ns) {
        r->why = WHY_BUDGET;
        return 1;
    }
    return 0;
}

static int busy_cb(void *ud, int count)
{
    static const unsigned delays[] = { 1, 2, 5, 10, 20 };
    defer_runner *r = ud;
    defer_pool *p = r->pool;
    int64_t now = defer__now_ns(), limit, waited;
    int64_t stop_end = atomic_load(&p->stop_end_ns);
    unsigned d;

    if (aborted(p) || (stop_end != 0 && now >= stop_end))
        return 0;
    if (count == 0)
        r->busy_start_ns = now;
    limit = (int64_t)p->cfg.db.busy_timeout_ms * 1000000;
    waited = now - r->busy_start_ns;
    if (waited >= limit)
        return 0;
    d = delays[count < 4 ? count : 4];
    if ((int64_t)d * 1000000 > limit - waited)
        d = (unsigned)((limit - waited) / 1000000) + 1;
    defer__pool_sleep(p, d);
    return !aborted(p);
}

void defer__runner_set_db(defer_runner *r, qb_conn *db)
{
    sqlite3 *s = qb_conn_sqlite(db);
    r->db = db;
    if (s != NULL) {
        sqlite3_progress_handler(s, PROGRESS_OPS, progress_cb, r);
        (void)sqlite3_busy_handler(s, busy_cb, r);
    }
}

void defer__runner_init(defer_runner *r, defer_pool *p, int worker,
                        qb_conn *db)
{
    memset(r, 0, sizeof *r);
    /* Default attributes: cannot fail on Linux. */
    (void)pthread_mutex_init(&r->cancel_mu, NULL);
    r->sock = -1;
    r->pool = p;
    r->worker = worker;
    r->slots = calloc(p->batch_cap, sizeof *r->slots);
    r->qs = calloc(p->batch_cap, sizeof *r->qs);
    r->rng = (uint64_t)(uintptr_t)r ^ (uint64_t)defer__now_ns();
    if (r->rng == 0)
        r->rng = 0x9e3779b97f4a7c15ull;
    r->env.r = r;
    defer__runner_set_db(r, db);
}

void defer__runner_fini(defer_runner *r)
{
    if (r->pool == NULL)
        return; /* zeroed, never initialised (pool create failed first) */
    defer__db_close(r);
    free(r->slots);
    r->slots = NULL;
    free(r->qs);
    r->qs = NULL;
    (void)pthread_mutex_destroy(&r->cancel_mu);
}

static uint64_t rnd(defer_runner *r)
{
    /* xorshift64: jitter only, per runner, no shared state. */
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

/* ---- the env seen by callbacks ------------------------------------------ */

DEFER_API qb_conn *defer_env_db(defer_env *env)
{
    return env != NULL ? env->r->db : NULL;
}

DEFER_API const char *defer_env_label(const defer_env *env)
{
    return env != NULL && env->task != NULL ? env->task->label : "-";
}

DEFER_API const char *defer_env_request_id(const defer_env *env)
{
    const char *rid;
    if (env == NULL || env->task == NULL)
        return "-";
    rid = defer__task_rid(env->task);
    return rid[0] != '\0' ? rid : "-";
}

DEFER_API int defer_env_worker(const defer_env *env)
{
    return env != NULL ? env->r->worker : -1;
}

DEFER_API int defer_env_expired(const defer_env *env)
{
    if (env == NULL)
        return 1;
    if (aborted(env->r->pool))
        return 1;
    return env->deadline_ns != 0 && defer__now_ns() > env->deadline_ns;
}

DEFER_API void defer_env_set_error(defer_env *env, const char *msg)
{
    if (env == NULL || msg == NULL)
        return;
    snprintf(env->err, sizeof env->err, "%s", msg);
    env->has_err = 1;
}

/* ---- claiming ----------------------------------------------------------- */

static int claim(defer_task *t)
{
    int exp = T_READY;
    return atomic_compare_exchange_strong(&t->state, &exp, T_RUNNING);
}

/* An unclaimed task given up (deadline): report, free its arg. */
static void leave_task(defer_runner *r, defer_task *t, const char *why)
{
    int exp = T_READY;
    if (!atomic_compare_exchange_strong(&t->state, &exp, T_WLEFT))
        return; /* stolen: shutdown reports it */
    emit(r->pool, DEFER_LOG_ERROR, "task_left", t, r->worker, 0, 0, NULL,
         why);
    r->n_left++;
    if (t->arg_free != NULL)
        t->arg_free(t->arg);
}

/* ---- callbacks ---------------------------------------------------------- */

static void run_callback(defer_runner *r, defer_task *t)
{
    defer_pool *p = r->pool;
    int64_t start, budget = (int64_t)p->cfg.task_budget_ms * 1000000;
    int rc, exp;

    if (aborted(p)) {
        leave_task(r, t, "deadline passed before it ran");
        return;
    }
    if (!claim(t))
        return;
    {
        /* SQLite (a no-op on PostgreSQL): the callback writes through
         * defer_env_db too.  Not through a connection to a lost file
         * (closed here: the callback sees NULL while the pool is LOST),
         * and after a reopen through the new one -- a worker that only
         * runs callbacks reopens here, not at an SQL segment that may
         * never come. */
        char why[DEFER_ERRMSG_MAX];
        (void)defer__health_sync(r, why, sizeof why);
    }
    r->env.task = t;
    r->env.has_err = 0;
    r->env.err[0] = '\0';
    start = defer__now_ns();
    r->env.deadline_ns = budget != 0 ? start + budget : 0;
    r->stmt_deadline_ns = 0; /* callbacks are not interrupted on budget */
    r->why = WHY_NONE;

    rc = t->fn(&r->env, t->arg);

    if (defer__db_in_tx(r)) {
        (void)defer__db_rollback(r);
        if (rc == 0)
            rc = DEFER_EMISUSE;
        defer_env_set_error(&r->env,
                            "callback left a transaction open; rolled back");
    }
    exp = T_RUNNING;
    if (atomic_compare_exchange_strong(&t->state, &exp, T_DONE)) {
        char detail[DEFER_ERRMSG_MAX + 64];
        if (rc == 0) {
            r->n_ok++;
            if (budget != 0 && defer__now_ns() - start > budget) {
                snprintf(detail, sizeof detail, "ran %lld ms, budget %u ms",
                         (long long)((defer__now_ns() - start) / 1000000),
                         p->cfg.task_budget_ms);
                emit(p, DEFER_LOG_WARN, "task_over_budget", t, r->worker, 0,
                     0, NULL, detail);
            }
        } else {
            r->n_failed++;
            emit(p, DEFER_LOG_ERROR, "task_failed", t, r->worker, 1, rc,
                 "callback failed", r->env.has_err ? r->env.err : NULL);
        }
        if (t->arg_free != NULL)
            t->arg_free(t->arg);
    } else {
        /* HUNG: shutdown counted and reported it; its arg is freed after
         * the batch (worker_main), when shutdown can no longer read it. */
        emit(p, DEFER_LOG_WARN, "hung_task_returned", t, r->worker, 1, rc,
             rc == 0 ? "ok" : "callback failed", "already reported hung");
    }
    r->env.task = NULL;
}

/* ---- SQL segments ------------------------------------------------------- */

static int token_get(defer_runner *r)
{
    defer_pool *p = r->pool;
    int ok;
    if (defer__db_is_pg(p))
        return !aborted(p); /* row locks: no single writer */
    defer__lock(p);
    while (p->writer_busy && !atomic_load(&p->abort))
        defer__wait(p, &p->writer_cv, 0);
    ok = !atomic_load(&p->abort);
    if (ok)
        p->writer_busy = 1;
    defer__unlock(p);
    return ok;
}

static void token_put(defer_runner *r)
{
    defer_pool *p = r->pool;
    if (defer__db_is_pg(p))
        return;
    defer__lock(p);
    p->writer_busy = 0;
    defer__signal(&p->writer_cv);
    defer__unlock(p);
}

int defer__token_get(defer_runner *r)
{
    return token_get(r);
}

void defer__token_put(defer_runner *r)
{
    token_put(r);
}

/* 1: retry now; 0: retries exhausted; -1: aborted while backing off. */
static int busy_retry(defer_runner *r, unsigned *tries)
{
    defer_pool *p = r->pool;
    unsigned b, shift;
    if (aborted(p))
        return -1;
    if (*tries >= p->cfg.busy_retries)
        return 0;
    shift = *tries < 4 ? *tries : 4;
    (*tries)++;
    /* Counted at once (not at the end of the batch): a long BUSY episode
     * should show in the stats while it lasts. */
    defer__lock(p);
    p->st.retried++;
    defer__unlock(p);
    b = p->cfg.busy_backoff_ms << shift;
    if (b > 1)
        b = b / 2 + (unsigned)(rnd(r) % (b / 2 + 1));
    if (b > 0)
        defer__pool_sleep(p, b);
    return aborted(p) ? -1 : 1;
}

static void rollback_if_open(defer_runner *r)
{
    if (defer__db_in_tx(r))
        (void)defer__db_rollback(r);
}

/* PostgreSQL: the connection is gone, and with it the transaction (the
 * server rolls it back).  Back off (50 ms doubling to 1 s, woken by the
 * deadline) and reconnect, for at most reconnect_ms since the episode
 * began (r->conn_since; one episode per run_sql).  Returns 1 when
 * reconnected (replay), 0 when the budget is spent, -1 at the deadline. */
static int conn_retry(defer_runner *r)
{
    defer_pool *p = r->pool;
    int64_t limit = (int64_t)p->cfg.reconnect_ms * 1000000, now;
    char detail[DEFER_ERRMSG_MAX + 64];

    if (aborted(p))
        return -1; /* at the deadline the shutdown thread cut it */
    if (r->conn_since == 0) {
        r->conn_since = defer__now_ns();
        r->conn_tries = 0;
        defer__lock(p);
        p->st.conn_lost++;
        defer__unlock(p);
        emit(p, DEFER_LOG_WARN, "db_connection_lost", NULL, r->worker, 0, 0,
             NULL, defer__db_errmsg(r));
    }
    for (;;) {
        int64_t left;
        unsigned d = 50u << (r->conn_tries < 5 ? r->conn_tries : 5);
        if (aborted(p))
            return -1;
        now = defer__now_ns();
        left = limit - (now - r->conn_since);
        if (left <= 0)
            return 0;
        if (d > 1000)
            d = 1000;
        if ((int64_t)d * 1000000 > left)
            d = (unsigned)(left / 1000000) + 1;
        r->conn_tries++;
        defer__pool_sleep(p, d);
        if (aborted(p))
            return -1;
        /* One attempt may use what is left of the budget (at least
         * 50 ms; qb_reset_until keeps it within the connect timeout). */
        left = (limit - (defer__now_ns() - r->conn_since)) / 1000000;
        if (left < 50)
            left = 50;
        if (left > INT_MAX)
            left = INT_MAX;
        if (defer__db_reset(r, (int)left) == QB_OK) {
            defer__lock(p);
            p->st.reconnects++;
            p->st.retried++;
            defer__unlock(p);
            snprintf(detail, sizeof detail, "attempt %u, %lld ms after loss",
                     r->conn_tries,
                     (long long)((defer__now_ns() - r->conn_since) / 1000000));
            emit(p, DEFER_LOG_INFO, "db_reconnected", NULL, r->worker, 0, 0,
                 NULL, detail);
            return 1;
        }
    }
}

/* The connection died while COMMIT was under way, so its answer is lost.
 * Reconnect and ask the server what became of transaction r->xid.
 * Returns 1 committed, 0 not committed (replay it), -1 deadline,
 * -2 cannot tell (budget spent, or the server forgot). */
static int commit_outcome(defer_runner *r)
{
    defer_pool *p = r->pool;
    int64_t limit = (int64_t)p->cfg.reconnect_ms * 1000000;

    for (;;) {
        int br = conn_retry(r);
        if (br <= 0)
            return br == 0 ? -2 : -1;
        for (;;) {
            int st = DEFER_XACT_UNKNOWN;
            int rc = defer__db_xact_status(r, r->xid, &st);
            if (rc == QB_ECONN)
                break; /* lost again: reconnect */
            if (rc != QB_OK || st == DEFER_XACT_UNKNOWN)
                return -2;
            if (st == DEFER_XACT_COMMITTED)
                return 1;
            if (st == DEFER_XACT_ABORTED)
                return 0;
            /* Still running: the old session has not ended yet. */
            if (defer__now_ns() - r->conn_since > limit)
                return -2;
            defer__pool_sleep(p, 20);
            if (aborted(p))
                return -1;
        }
    }
}

/* A failure rc that will not pass by itself (defer__db_fatal) ends the
 * segment: remember the first one and its message. */
static void note_fatal(defer_runner *r, int rc)
{
    if (r->fatal != 0)
        return;
    r->fatal = defer__db_fatal(r, rc);
    if (r->fatal != 0)
        snprintf(r->fatal_msg, sizeof r->fatal_msg, "%s",
                 defer__db_errmsg(r));
}

static void record_msg(struct defer_slot *s, int rc, const char *msg,
                       int timeout)
{
    free(s->msg);
    s->msg = strdup(msg); /* NULL on ENOMEM: logged without detail */
    s->rc = rc;
    s->timeout = timeout;
    s->st = S_FAILED;
}

static void record(defer_runner *r, struct defer_slot *s, int rc,
                   const char *prefix, int timeout)
{
    const char *m = defer__db_errmsg(r);
    char buf[DEFER_ERRMSG_MAX];
    note_fatal(r, rc);
    snprintf(buf, sizeof buf, "%s%s", prefix, m != NULL ? m : "");
    record_msg(s, rc, buf, timeout);
}

/* Fail every task of the segment that has not failed yet (claiming the
 * ones not yet claimed): BEGIN/COMMIT failed or BUSY outlasted retries.
 * Their message: prefix and the connection's error, or msg if not NULL. */
static void fail_rest_as(defer_runner *r, defer_task **t,
                         struct defer_slot *s, size_t n, int rc,
                         const char *prefix, const char *msg)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (s[i].st == S_FAILED)
            continue;
        if (!s[i].claimed) {
            if (!claim(t[i]))
                continue;
            s[i].claimed = 1;
        }
        if (msg != NULL)
            record_msg(&s[i], rc, msg, 0);
        else
            record(r, &s[i], rc, prefix, 0);
    }
}

static void fail_rest(defer_runner *r, defer_task **t,
                      struct defer_slot *s, size_t n, int rc,
                      const char *prefix)
{
    fail_rest_as(r, t, s, n, rc, prefix, NULL);
}

/* A failure that will not pass by itself (disk full, read-only, corrupt,
 * I/O error) ended the transaction: replaying the segment task by task
 * would meet it again once per task, so every task still standing fails
 * now, with the same message (one folded log line, not one per task). */
static void fail_fatal(defer_runner *r, defer_task **t,
                       struct defer_slot *s, size_t n)
{
    rollback_if_open(r);
    fail_rest_as(r, t, s, n, QB_ESQL, "", r->fatal_msg);
}

/* Run one SQL task inside the open transaction.  With use_sp, under its
 * own savepoint, so that a failure is undone alone (X_FAIL).  Without,
 * any failure rolls the whole transaction back (X_RESTART) and the caller
 * replays the segment with savepoints. */
/* A statement of the first pass (no savepoints) failed with rc: the
 * transaction is lost or aborted; roll it back.  X_CONN, X_ABORT, X_BUSY,
 * or X_RESTART when the failure is the task's own (the caller records
 * it; the segment is replayed with savepoints). */
static int first_pass_failure(defer_runner *r, int rc)
{
    if (rc == QB_ECONN)
        return X_CONN;
    rollback_if_open(r);
    if (r->why == WHY_ABORT)
        return X_ABORT;
    return rc == QB_EBUSY ? X_BUSY : X_RESTART;
}

/* Time since t0, a COMMIT's start (plus the test-only fault). */
static int64_t commit_time(int64_t t0)
{
    return defer__now_ns() - t0 +
           atomic_load_explicit(&defer__commit_fault_ns, memory_order_relaxed);
}

/* Run t's statement within the task budget (the progress handler or the
 * session's statement_timeout stops it at r->stmt_deadline_ns). */
static int exec_in_budget(defer_runner *r, defer_task *t)
{
    unsigned ms = r->pool->cfg.task_budget_ms;
    int rc;

    r->why = WHY_NONE;
    r->stmt_deadline_ns = ms != 0 ? defer__now_ns() + (int64_t)ms * 1000000
                                  : 0;
    rc = defer__db_exec(r, t->arg);
    r->stmt_deadline_ns = 0;
    return rc;
}

static int exec_one(defer_runner *r, defer_task *t, struct defer_slot *s,
                    int use_sp)
{
    int rc, x;

    if (!use_sp) {
        rc = exec_in_budget(r, t);
        if (rc == QB_OK)
            return X_OK;
        x = first_pass_failure(r, rc);
        if (x == X_RESTART)
            record(r, s, rc, "", r->why == WHY_BUDGET);
        return x;
    }
    rc = defer__db_savepoint(r, SP_NAME);
    if (rc == QB_ECONN)
        return X_CONN;
    if (rc == QB_EBUSY) {
        rollback_if_open(r);
        return X_BUSY;
    }
    if (rc != QB_OK) {
        record(r, s, rc, "SAVEPOINT: ", 0);
        rollback_if_open(r);
        return X_RESTART;
    }
    rc = exec_in_budget(r, t);
    if (rc == QB_ECONN)
        return X_CONN;
    if (rc == QB_OK) {
        rc = defer__db_release(r, SP_NAME);
        if (rc == QB_OK)
            return X_OK;
        if (rc == QB_ECONN)
            return X_CONN;
        rollback_if_open(r);
        if (rc == QB_EBUSY)
            return X_BUSY;
        record(r, s, rc, "RELEASE: ", 0);
        return X_RESTART;
    }
    if (r->why == WHY_ABORT) {
        rollback_if_open(r);
        return X_ABORT;
    }
    if (rc == QB_EBUSY) {
        rollback_if_open(r);
        return X_BUSY;
    }
    record(r, s, rc, "", r->why == WHY_BUDGET);
    if (!defer__db_in_tx(r))
        return X_RESTART; /* SQLite rolled the whole transaction back */
    rc = defer__db_rollback_to(r, SP_NAME);
    if (rc == QB_ECONN)
        return X_CONN;
    if (rc != QB_OK) {
        rollback_if_open(r);
        return X_RESTART;
    }
    return X_FAIL;
}

/* PostgreSQL, first pass: every pending task of the segment in one
 * pipeline (one round trip instead of one per task).  The tasks must all
 * be claimed.  Results as exec_one's; on X_RESTART the failed task was
 * recorded and the transaction rolled back. */
static int exec_pipeline(defer_runner *r, defer_task **t,
                         struct defer_slot *s, size_t n)
{
    size_t i, m = 0, at = 0;
    int rc, x;

    for (i = 0; i < n; i++)
        if (s[i].st != S_FAILED)
            r->qs[m++] = t[i]->arg;
    r->why = WHY_NONE;
    rc = defer__db_pipeline(r, r->qs, m, &at);
    if (rc == QB_OK) {
        for (i = 0; i < n; i++)
            if (s[i].st != S_FAILED)
                s[i].st = S_OK;
        return X_OK;
    }
    x = first_pass_failure(r, rc);
    if (x != X_RESTART)
        return x;
    /* Map the pipeline index back to the task. */
    for (i = 0; i < n; i++) {
        if (s[i].st == S_FAILED)
            continue;
        if (at-- == 0) {
            record(r, &s[i], rc, "", r->why == WHY_BUDGET);
            break;
        }
    }
    return X_RESTART;
}

static void finish_sql(defer_runner *r, defer_task **t,
                       struct defer_slot *s, size_t n, const char *left_why)
{
    defer_pool *p = r->pool;
    size_t i;

    for (i = 0; i < n; i++) {
        int exp = T_RUNNING, mine;
        if (!s[i].claimed) {
            leave_task(r, t[i], left_why != NULL ? left_why
                                                  : "deadline passed");
            continue;
        }
        if (left_why != NULL && s[i].st != S_FAILED) {
            /* Its work was rolled back with the transaction. */
            mine = atomic_compare_exchange_strong(&t[i]->state, &exp,
                                                  T_WLEFT);
            if (mine) {
                emit(p, DEFER_LOG_ERROR, "task_left", t[i], r->worker, 0, 0,
                     NULL, left_why);
                r->n_left++;
            }
        } else if ((mine = atomic_compare_exchange_strong(&t[i]->state, &exp,
                                                          T_DONE))) {
            if (s[i].st == S_FAILED) {
                r->n_failed++;
                if (s[i].timeout)
                    r->n_timeouts++;
                /* Failed for good with its whole transaction (no applied
                 * row committed): its journal record no longer pins its
                 * file, or one failure episode (disk full, a lost
                 * PostgreSQL past its reconnect budget) would keep every
                 * later journal file until a restart.  Failed is failed,
                 * as without a journal (its line names the request and
                 * the values); only a crash before its file goes replays
                 * it. */
                if (t[i]->jseq != 0)
                    defer__journal_committed(p, &t[i], 1);
                emit(p, DEFER_LOG_ERROR, "task_failed", t[i], r->worker, 1,
                     s[i].rc, s[i].timeout ? "time budget exceeded"
                                           : qb_strerror(s[i].rc),
                     s[i].msg);
            } else {
                r->n_ok++;
            }
        }
        /* Not mine: HUNG; shutdown may be reading its SQL for the report
         * now, so its arg is freed after the batch (worker_main). */
        if (mine && t[i]->arg_free != NULL)
            t[i]->arg_free(t[i]->arg);
        free(s[i].msg);
        s[i].msg = NULL;
    }
}

/* After a lost connection: 1 replay, else the segment's end is set
 * (left_why or failures recorded) and the caller breaks out. */
static int after_conn_loss(defer_runner *r, defer_task **t,
                           struct defer_slot *s, size_t n,
                           const char **left_why)
{
    int br = conn_retry(r);
    if (br > 0)
        return 1;
    if (br < 0)
        *left_why = "deadline passed while reconnecting";
    else
        fail_rest(r, t, s, n, QB_ECONN,
                  "connection lost; reconnect budget spent: ");
    return 0;
}

/* A pass over the segment stopped with x (X_RESTART, X_ABORT, X_CONN or
 * X_BUSY; the transaction is gone).  Returns 1 to start the transaction
 * again, -1 when its tasks were failed, 0 when *left_why was set. */
static int after_failure(defer_runner *r, defer_task **t,
                         struct defer_slot *s, size_t n, int x,
                         unsigned *tries, int *use_sp, const char **left_why)
{
    int br;
    switch (x) {
    case X_RESTART:
        *use_sp = 1;
        return 1;
    case X_ABORT:
        *left_why = "interrupted at the shutdown deadline";
        return 0;
    case X_CONN:
        return after_conn_loss(r, t, s, n, left_why) ? 1 : -1;
    default: /* X_BUSY: transaction already rolled back */
        br = busy_retry(r, tries);
        if (br > 0)
            return 1;
        if (br < 0) {
            *left_why = "deadline passed while database busy";
            return 0;
        }
        fail_rest(r, t, s, n, QB_EBUSY, "busy after retries: ");
        return -1;
    }
}

/* The end of the segment's transaction (its journal rows, or COMMIT)
 * failed with rc.  Rolled back; then, interrupted at the shutdown
 * deadline or busy past it, the segment is left (*left_why: journaled
 * records replay at the next start) -- not failed, which would resolve
 * them; busy within busy_retries: 1, run it again.  Otherwise every
 * task not failed alone fails with prefix.  0: the segment is over. */
static int end_failed(defer_runner *r, defer_task **t, struct defer_slot *s,
                      size_t n, int rc, unsigned *tries,
                      const char **left_why, const char *prefix)
{
    size_t i;
    int br;

    rollback_if_open(r);
    if (r->why == WHY_ABORT || aborted(r->pool)) {
        *left_why = "interrupted at the shutdown deadline";
        return 0;
    }
    if (rc == QB_EBUSY) {
        br = busy_retry(r, tries);
        if (br > 0)
            return 1;
        if (br < 0) {
            *left_why = "deadline passed while database busy";
            return 0;
        }
    }
    for (i = 0; i < n; i++)
        if (s[i].st == S_OK)
            s[i].st = S_PENDING;
    fail_rest(r, t, s, n, rc, prefix);
    return 0;
}

static void run_sql(defer_runner *r, defer_task **t, size_t n)
{
    defer_pool *p = r->pool;
    struct defer_slot *s = r->slots;
    const char *left_why = NULL;
    unsigned tries = 0;
    size_t i;
    int rc, br, use_sp = 0;
    int pg = qb_conn_engine(r->db) == QB_ENGINE_POSTGRES;
    int lost = DEFER_FILE_OK;
    int64_t t0;
    char lost_why[DEFER_ERRMSG_MAX] = "";

    for (i = 0; i < n; i++) {
        s[i].st = S_PENDING;
        s[i].claimed = 0;
        s[i].rc = 0;
        s[i].timeout = 0;
        s[i].msg = NULL;
    }
    r->conn_since = 0;
    if (aborted(p)) {
        finish_sql(r, t, s, n, "deadline passed before it ran");
        return;
    }
    r->fatal = 0;
    if (!pg) {
        /* SQLite: not into a lost file; reopen after recovery. */
        char why[DEFER_ERRMSG_MAX];
        if (defer__health_sync(r, why, sizeof why) != DEFER_OK) {
            fail_rest_as(r, t, s, n, QB_ESQL, "", why);
            finish_sql(r, t, s, n, NULL);
            return;
        }
    }
    if (!defer__db_connected(r)) {
        for (i = 0; i < n; i++) {
            if (!claim(t[i]))
                continue;
            s[i].claimed = 1;
            s[i].st = S_FAILED;
            s[i].rc = DEFER_EDB;
            s[i].msg = strdup("no database connection");
        }
        finish_sql(r, t, s, n, NULL);
        return;
    }
    if (!token_get(r)) {
        finish_sql(r, t, s, n, "deadline passed before it ran");
        return;
    }
    for (;;) {
        int restart = 0;
        if (aborted(p)) {
            left_why = "deadline passed; transaction rolled back";
            break;
        }
        r->why = WHY_NONE;
        rc = defer__db_begin(r);
        if (rc != QB_OK && (r->why == WHY_ABORT || aborted(p))) {
            rollback_if_open(r);
            left_why = "deadline passed before it ran";
            break;
        }
        if (rc == QB_ECONN) {
            if (after_conn_loss(r, t, s, n, &left_why))
                continue;
            break;
        }
        if (rc == QB_EBUSY) {
            br = busy_retry(r, &tries);
            if (br > 0)
                continue;
            if (br < 0) {
                left_why = "deadline passed while database busy";
                break;
            }
            fail_rest(r, t, s, n, rc, "BEGIN busy after retries: ");
            break;
        }
        if (rc != QB_OK) {
            fail_rest(r, t, s, n, rc, "BEGIN: ");
            break;
        }
        if (pg && !use_sp && n > 1) {
            int x;
            for (i = 0; i < n && left_why == NULL; i++) {
                if (s[i].st == S_FAILED || s[i].claimed)
                    continue;
                if (aborted(p) || !claim(t[i]))
                    left_why = "deadline passed; transaction rolled back";
                else
                    s[i].claimed = 1;
            }
            x = left_why == NULL ? exec_pipeline(r, t, s, n) : X_OK;
            if (x != X_OK)
                restart = after_failure(r, t, s, n, x, &tries, &use_sp,
                                        &left_why);
            i = n; /* the per-task pass below has nothing left to do */
        } else {
            i = 0;
        }
        for (; i < n && !restart && left_why == NULL; i++) {
            int x;
            if (s[i].st == S_FAILED)
                continue;
            s[i].st = S_PENDING;
            if (!s[i].claimed) {
                if (aborted(p) || !claim(t[i])) {
                    left_why = "deadline passed; transaction rolled back";
                    break;
                }
                s[i].claimed = 1;
            }
            x = exec_one(r, t[i], &s[i], use_sp);
            if (x == X_OK) {
                s[i].st = S_OK;
            } else if (r->fatal != 0) {
                fail_fatal(r, t, s, n);
                restart = -1;
            } else if (x != X_FAIL) {
                restart = after_failure(r, t, s, n, x, &tries, &use_sp,
                                        &left_why);
            }
        }
        if (left_why != NULL) {
            rollback_if_open(r);
            break;
        }
        if (restart < 0)
            break;
        if (restart)
            continue;
        if (pg) {
            /* Its id lets us learn the outcome if COMMIT's answer is
             * lost with the connection (commit_outcome). */
            r->why = WHY_NONE;
            rc = defer__db_xact_id(r, r->xid, sizeof r->xid);
            if (rc == QB_ECONN) {
                if (after_conn_loss(r, t, s, n, &left_why))
                    continue;
                break;
            }
            if (rc != QB_OK)
                r->xid[0] = '\0'; /* cannot resolve a lost COMMIT */
        }
        if (!pg) {
            /* Is the path still the file this connection writes to?  If
             * not, committing would write where nobody will read. */
            char why[DEFER_ERRMSG_MAX + 32];
            lost = defer__fileid_check(&r->file, lost_why, sizeof lost_why);
            if (lost != DEFER_FILE_OK) {
                rollback_if_open(r);
                for (i = 0; i < n; i++)
                    if (s[i].st == S_OK)
                        s[i].st = S_PENDING;
                snprintf(why, sizeof why, "not committed: %s", lost_why);
                fail_rest_as(r, t, s, n, QB_ESQL, "", why);
                break;
            }
        }
        /* The journal's applied rows commit with the writes (or not). */
        rc = defer__journal_mark(r, t, n);
        if (rc == QB_ECONN) { /* as any statement of the transaction */
            if (after_conn_loss(r, t, s, n, &left_why))
                continue;
            break;
        }
        if (rc != QB_OK) {
            if (end_failed(r, t, s, n, rc, &tries, &left_why,
                           "journal mark: "))
                continue;
            break;
        }
        r->why = WHY_NONE;
        t0 = defer__now_ns();
        rc = defer__db_commit(r);
        if (rc == QB_OK) {
            r->n_commits++;
            r->commit_ns += commit_time(t0);
            defer__journal_committed(p, t, n);
            break;
        }
        if (rc == QB_ECONN) {
            int oc = r->xid[0] != '\0' ? commit_outcome(r) : -2;
            if (oc == 1) {
                r->n_commits++;
                r->commit_ns += commit_time(t0);
                defer__journal_committed(p, t, n);
                emit(p, DEFER_LOG_WARN, "commit_confirmed", NULL, r->worker,
                     0, 0, NULL, "COMMIT answer lost with the connection; "
                     "the server says it committed");
                break;
            }
            if (oc == 0)
                continue; /* rolled back: replay on the new session */
            if (oc == -1) {
                left_why = "deadline passed while learning COMMIT's "
                           "outcome (the rows may have landed)";
                break;
            }
            for (i = 0; i < n; i++)
                if (s[i].st == S_OK)
                    s[i].st = S_PENDING;
            defer__lock(p);
            for (i = 0; i < n; i++)
                if (s[i].st == S_PENDING)
                    p->st.commit_unknown++;
            defer__unlock(p);
            fail_rest(r, t, s, n, rc, "connection lost during COMMIT; "
                      "outcome unknown (the rows may have landed): ");
            break;
        }
        if (end_failed(r, t, s, n, rc, &tries, &left_why, "COMMIT: "))
            continue;
        break;
    }
    token_put(r);
    if (lost != DEFER_FILE_OK || r->fatal != 0)
        defer__health_report(r, lost, lost_why);
    finish_sql(r, t, s, n, left_why);
}

void defer__run_batch(defer_runner *r, defer_task **t, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i + 1;
        if (t[i]->fn != NULL) {
            run_callback(r, t[i]);
        } else {
            while (j < n && t[j]->fn == NULL)
                j++;
            run_sql(r, t + i, j - i);
        }
        /* A later callback of the batch may hang: account for these
         * now, so their slots free and the counters reconcile even if
         * the worker never comes back. */
        if (r->worker >= 0)
            defer__settle(r, t + i, j - i);
        i = j;
    }
}
