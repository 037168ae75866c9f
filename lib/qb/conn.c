/*
 * conn.c -- qb_conn.h: open a connection with the driver its target
 * names, and everything that is the same on every engine, once.
 *
 * DESIGN
 *
 * A driver (qb_drv.h) knows its engine: how to run one statement of a
 * query (checks, binding, fetching rows), internal SQL, a migration
 * script, and where the session stands (idle, in a transaction,
 * unusable).  Everything built from those lives here: argument checks,
 * the error record, the observers (logger, hooks), chains, counts,
 * pages, batches, our own transaction scopes, the transaction verbs and
 * savepoint names, and migrations.  Engine differences that are only
 * words (BEGIN IMMEDIATE or BEGIN, RELEASE or RELEASE SAVEPOINT, the
 * migrations table's id column) are data in the driver table.
 *
 * Scopes.  Work that spans statements (a chain, a batch, a page = count +
 * rows, a migration) opens BEGIN when the session is idle, otherwise a
 * SAVEPOINT, so it nests inside a caller's transaction.  On error we roll
 * back exactly what we opened, and only while the engine still has a
 * transaction open (some errors end it themselves: SQLite's interrupt or
 * disk full, PostgreSQL's failed COMMIT, a lost connection).  A COMMIT
 * that fails is followed by ROLLBACK, so "error" always means "nothing
 * committed here".
 *
 * Errors.  The first error of a call is recorded on the connection;
 * cleanup statements run "quiet" (run_sql) so they cannot overwrite it.
 * Every observed execution passes through qbi_exec (or, for a migration
 * or a cursor, qbi_obs_begin/qbi_obs_end), which calls the logger and
 * the after hook exactly once.
 */
#include "config.h"
#include "qb_drv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- the common head ----------------------------------------------------- */

void qbi_conn_init(qb_conn *c, const qbi_driver *drv)
{
    memset(c, 0, sizeof *c);
    c->drv = drv;
    c->lru.prev = c->lru.next = &c->lru;
}

int qbi_vfail(qb_conn *c, int rc, int code, const char *state,
              const char *fmt, va_list ap)
{
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    c->errcode = code;
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s",
             state != NULL && strlen(state) == 5 ? state : "");
    return rc;
}

int qbi_fail(qb_conn *c, int rc, int code, const char *state,
             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = qbi_vfail(c, rc, code, state, fmt, ap);
    va_end(ap);
    return rc;
}

int qbi_nomem(qb_conn *c)
{
    return qbi_fail(c, QB_ENOMEM, c->drv->nomem_code, NULL, "out of memory");
}

void qbi_prefix(qb_conn *c, const char *fmt, ...)
{
    char tmp[QBI_ERRMSG_MAX];
    size_t h, m;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp - 2, fmt, ap);
    va_end(ap);
    h = strlen(tmp);
    memcpy(tmp + h, ": ", 3);
    h += 2;
    /* Truncating the engine's part is fine: the prefix is the context. */
    m = strlen(c->errmsg);
    if (m > sizeof tmp - 1 - h)
        m = sizeof tmp - 1 - h;
    memcpy(tmp + h, c->errmsg, m);
    tmp[h + m] = '\0';
    memcpy(c->errmsg, tmp, sizeof tmp);
}

int64_t qbi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int qbi_obs_begin(qb_conn *c, const qb_query *q, qbi_obs *o)
{
    o->on = c->logger != NULL || c->before != NULL || c->after != NULL;
    if (!o->on)
        return QB_OK;
    o->t0 = qbi_now_ns();
    if (c->before != NULL && c->before(c->hook_ud, q) != 0)
        return qbi_fail(c, QB_EINVAL, 0, NULL,
                        "query vetoed by the before hook");
    return QB_OK;
}

void qbi_obs_end(qb_conn *c, const qb_query *q, const qbi_obs *o, int rc,
                 const qb_result *res)
{
    int64_t d;
    if (!o->on)
        return;
    d = qbi_now_ns() - o->t0;
    if (d < 0)
        d = 0;
    if (c->logger != NULL)
        c->logger(c->logger_ud, q, d, rc, rc != QB_OK ? c->errmsg : NULL);
    if (c->after != NULL)
        c->after(c->hook_ud, q, rc, rc == QB_OK ? res : NULL, d);
}

/* ---- open ---------------------------------------------------------------- */

static int is_pg_uri(const char *t)
{
    return strncasecmp(t, "postgresql://", 13) == 0 ||
           strncasecmp(t, "postgres://", 11) == 0;
}

QB_API int qb_open(qb_conn **out, const char *target,
                   const qb_conn_config *cfg, char *errbuf,
                   size_t errbuf_len)
{
    qb_engine e = cfg != NULL ? cfg->engine : QB_ENGINE_AUTO;
    const qbi_driver *drv = NULL;

    if (out != NULL)
        *out = NULL;
    if (errbuf != NULL && errbuf_len > 0)
        errbuf[0] = '\0';
    if (out == NULL || target == NULL) {
        if (errbuf != NULL)
            snprintf(errbuf, errbuf_len, "qb_open: NULL argument");
        return QB_EINVAL;
    }
    if (e == QB_ENGINE_AUTO)
        e = is_pg_uri(target) ? QB_ENGINE_POSTGRES : QB_ENGINE_SQLITE;
    if (e == QB_ENGINE_SQLITE)
        drv = &qbi_sqlite_driver;
#ifdef HAVE_LIBPQ
    else if (e == QB_ENGINE_POSTGRES)
        drv = &qbi_pg_driver;
#endif
    if (drv == NULL) {
        if (errbuf != NULL)
            snprintf(errbuf, errbuf_len, "%s",
                     e == QB_ENGINE_POSTGRES
                         ? "built without PostgreSQL support"
                         : "unknown engine");
        return QB_EINVAL;
    }
    return drv->open(out, target, cfg, errbuf, errbuf_len);
}

QB_API int qb_engine_available(qb_engine e)
{
#ifdef HAVE_LIBPQ
    if (e == QB_ENGINE_POSTGRES)
        return 1;
#endif
    return e == QB_ENGINE_SQLITE;
}

QB_API void qb_close(qb_conn *c)
{
    if (c != NULL)
        c->drv->close(c);
}

QB_API qb_engine qb_conn_engine(const qb_conn *c)
{
    return c != NULL ? c->drv->engine : QB_ENGINE_AUTO;
}

QB_API qb_dialect qb_conn_dialect(const qb_conn *c)
{
    return c != NULL ? c->drv->dialect : QB_DIALECT_SQLITE;
}

QB_API struct sqlite3 *qb_conn_sqlite(qb_conn *c)
{
    if (c == NULL || c->drv->engine != QB_ENGINE_SQLITE)
        return NULL;
    return (struct sqlite3 *)c->drv->handle(c);
}

QB_API struct pg_conn *qb_conn_pg(qb_conn *c)
{
    if (c == NULL || c->drv->engine != QB_ENGINE_POSTGRES)
        return NULL;
    return (struct pg_conn *)c->drv->handle(c);
}

QB_API int qb_conn_socket(qb_conn *c)
{
    if (c == NULL || c->drv->socket == NULL)
        return -1;
    return c->drv->socket(c);
}

QB_API const char *qb_errmsg(const qb_conn *c)
{
    return c != NULL ? c->errmsg : "no connection";
}

QB_API int qb_errcode(const qb_conn *c)
{
    return c != NULL ? c->errcode : 0;
}

QB_API const char *qb_sqlstate(const qb_conn *c)
{
    return c != NULL ? c->sqlstate : "";
}

/* ---- running ------------------------------------------------------------- */

/* A feature the engine lacks. */
static int lacks(qb_conn *c, const char *what)
{
    return qbi_fail(c, QB_EDIALECT, 0, NULL, "%s is not available on %s",
                    what, c->drv->name);
}

/* Internal SQL.  quiet: keep the recorded error (cleanup paths). */
static int run_sql(qb_conn *c, const char *sql, int quiet)
{
    char saved[QBI_ERRMSG_MAX], saved_st[sizeof c->sqlstate];
    int saved_code = c->errcode, rc;

    if (!quiet)
        return c->drv->run_sql(c, sql);
    memcpy(saved, c->errmsg, sizeof saved);
    memcpy(saved_st, c->sqlstate, sizeof saved_st);
    rc = c->drv->run_sql(c, sql);
    memcpy(c->errmsg, saved, sizeof saved);
    memcpy(c->sqlstate, saved_st, sizeof saved_st);
    c->errcode = saved_code;
    return rc;
}

/* "<verb> <name>" for a savepoint command: savepoints take no
 * parameters, so names are pasted and must be plain identifiers. */
static int sp_run(qb_conn *c, const char *verb, const char *name, int quiet)
{
    char sql[QBI_IDENT_MAX + 40];
    if (name == NULL || !qb_ident_valid(name) || strchr(name, '.') != NULL ||
        strlen(name) > QBI_IDENT_MAX)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "invalid savepoint name");
    snprintf(sql, sizeof sql, "%s %s", verb, name);
    return run_sql(c, sql, quiet);
}

enum { SCOPE_NONE = 0, SCOPE_BEGIN, SCOPE_SAVEPOINT };

/* Open our own scope: BEGIN (the driver's) when idle, else a savepoint
 * named sp. */
static int scope_open(qb_conn *c, const char *sp, int *mode)
{
    int rc;
    *mode = SCOPE_NONE;
    switch (c->drv->tx_state(c)) {
    case QBI_TX_IDLE:
        rc = run_sql(c, c->drv->begin_sql, 0);
        if (rc == QB_OK)
            *mode = SCOPE_BEGIN;
        return rc;
    case QBI_TX_OPEN:   /* PostgreSQL, aborted: the server refuses (25P02) */
        rc = sp_run(c, "SAVEPOINT", sp, 0);
        if (rc == QB_OK)
            *mode = SCOPE_SAVEPOINT;
        return rc;
    default:
        return qbi_fail(c, QB_ECONN, 0, NULL, "connection not usable (%s)",
                        qb_connected(c) ? "busy" : "lost");
    }
}

/* Close the scope scope_open made: commit/release if rc is QB_OK, else
 * roll back.  Returns the final status (a failed COMMIT is rolled back). */
static int scope_close(qb_conn *c, int mode, const char *sp, int rc)
{
    if (mode == SCOPE_NONE)
        return rc;
    if (rc == QB_OK) {
        rc = mode == SCOPE_BEGIN ? run_sql(c, "COMMIT", 0)
                                 : sp_run(c, c->drv->release_sql, sp, 0);
        if (rc == QB_OK)
            return QB_OK;
    }
    if (c->drv->tx_state(c) != QBI_TX_OPEN)
        return rc;      /* the engine rolled back whatever was open */
    if (mode == SCOPE_BEGIN) {
        run_sql(c, "ROLLBACK", 1);
    } else {
        sp_run(c, c->drv->rollback_to_sql, sp, 1);
        sp_run(c, c->drv->release_sql, sp, 1);
    }
    return rc;
}

/* q and its chain, not observed; *out (if out) receives a result on
 * success only. */
static int run_query(qb_conn *c, const qb_query *q, qb_result **out)
{
    qb_result *r = NULL;
    int rc, mode;

    if (out != NULL) {
        r = qbi_result_new();
        if (r == NULL)
            return qbi_nomem(c);
    }
    if (q->next == NULL) {
        rc = c->drv->run_link(c, q, q->fetch, r);
    } else {
        rc = scope_open(c, "qb_chain", &mode);
        for (const qb_query *l = q; rc == QB_OK && l != NULL; l = l->next)
            rc = c->drv->run_link(c, l, q->fetch, r);
        rc = scope_close(c, mode, "qb_chain", rc);
    }
    if (rc != QB_OK) {
        qb_result_free(r);
        r = NULL;
    }
    if (out != NULL)
        *out = r;
    return rc;
}

int qbi_check_link(qb_conn *c, const qb_query *q)
{
    if (q->sql == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "query has no SQL text");
    if (q->dialect != c->drv->dialect)
        return qbi_fail(c, QB_EDIALECT, 0, NULL, "query was rendered for "
                        "another SQL dialect%s",
                        c->drv->dialect == QB_DIALECT_POSTGRES
                            ? " (build it with QB_DIALECT_POSTGRES)" : "");
    if (q->nparams > 0 && q->params == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL,
                        "query has no parameter array");
    return QB_OK;
}

int qbi_row_begin(qb_conn *c, qb_result *r, size_t ncols, qbi_cell **row)
{
    *row = NULL;
    if (ncols != r->ncols)
        return qbi_fail(c, QB_ESQL, 0, NULL,
                        "statements of one chain return different columns");
    if (ncols == 0)
        return QB_OK;
    *row = qbi_result_add_row(r);
    return *row != NULL ? QB_OK : qbi_nomem(c);
}

int qbi_exec(qb_conn *c, const qb_query *q, qb_result **out)
{
    qbi_obs o;
    qb_result *r = NULL;
    int rc = qbi_obs_begin(c, q, &o);
    if (rc == QB_OK)
        rc = run_query(c, q, out ? &r : NULL);
    qbi_obs_end(c, q, &o, rc, r);
    if (out != NULL)
        *out = r;
    return rc;
}

/* timeout_ms 0: the driver's own bound (its connect timeout). */
static int reset(qb_conn *c, int timeout_ms, int (*stop)(void *), void *arg)
{
    if (c == NULL)
        return QB_EINVAL;
    if (c->drv->reset_until == NULL)
        return QB_OK;
    return c->drv->reset_until(c, timeout_ms, stop, arg);
}

QB_API int qb_reset(qb_conn *c)
{
    return reset(c, 0, NULL, NULL);
}

QB_API int qb_reset_until(qb_conn *c, int timeout_ms, int (*stop)(void *),
                          void *arg)
{
    return timeout_ms > 0 ? reset(c, timeout_ms, stop, arg) : QB_EINVAL;
}

QB_API int qb_connected(const qb_conn *c)
{
    if (c == NULL)
        return 0;
    return c->drv->connected == NULL || c->drv->connected(c);
}

QB_API int qb_in_transaction(const qb_conn *c)
{
    return c != NULL && c->drv->tx_state(c) == QBI_TX_OPEN;
}

/* The dialect follows the connection: a query rendered for the other
 * one is converted (qb_query_convert) into *tmp, which the caller frees;
 * one that does not convert is left as it is, for qbi_check_link to
 * refuse with its message.  *use is what to run.  QB_OK or QB_ENOMEM. */
static int for_conn(qb_conn *c, const qb_query *q, qb_query **tmp,
                    const qb_query **use)
{
    int rc;
    *tmp = NULL;
    *use = q;
    if (q == NULL || q->dialect == c->drv->dialect)
        return QB_OK;
    rc = qb_query_convert(q, c->drv->dialect, tmp);
    if (rc == QB_ENOMEM)
        return qbi_nomem(c);
    if (rc == QB_OK)
        *use = *tmp;
    return QB_OK;
}

/* qbi_exec of q in c's dialect. */
static int exec_for(qb_conn *c, const qb_query *q, qb_result **out)
{
    qb_query *tmp;
    const qb_query *use;
    int rc = for_conn(c, q, &tmp, &use);
    if (rc == QB_OK)
        rc = qbi_exec(c, use, out);
    qb_query_free(tmp);
    return rc;
}

QB_API int qb_exec(qb_conn *c, const qb_query *q, qb_result **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    if (q == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "NULL query");
    return exec_for(c, q, out);
}

QB_API int qb_explain(qb_conn *c, const qb_query *q, qb_result **out)
{
    struct qb_query v;
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    if (!c->drv->explain)
        return lacks(c, "qb_explain");
    if (q == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "NULL query");
    v = *q;
    v.fetch = QB_FETCH_ALL;
    return qbi_exec(c, &v, out);
}

/* ---- counts and pages ---------------------------------------------------- */

/* A view of q that runs its count statement. */
static int count_view(qb_conn *c, const qb_query *q, struct qb_query *v)
{
    if (q->count_sql == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL,
                        "query has no count statement");
    *v = *q;
    v->sql = q->count_sql;
    v->sql_len = strlen(q->count_sql);
    v->count_sql = NULL;
    v->next = NULL;
    v->fetch = QB_FETCH_ONE;
    v->kind = QB_KIND_SELECT;
    return QB_OK;
}

static int count_run(qb_conn *c, const qb_query *v, int64_t *total)
{
    qb_result *r = NULL;
    int rc = qbi_exec(c, v, &r);
    if (rc == QB_OK)
        *total = qb_result_int(r, 0, 0);
    qb_result_free(r);
    return rc;
}

QB_API int qb_count(qb_conn *c, const qb_query *q, int64_t *total)
{
    struct qb_query v;
    qb_query *tmp = NULL;
    int rc;
    if (total != NULL)
        *total = 0;
    if (c == NULL)
        return QB_EINVAL;
    if (q == NULL || total == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "NULL query or output");
    rc = for_conn(c, q, &tmp, &q);
    if (rc == QB_OK)
        rc = count_view(c, q, &v);
    if (rc == QB_OK)
        rc = count_run(c, &v, total);
    qb_query_free(tmp);
    return rc;
}

QB_API int qb_paginate(qb_conn *c, const qb_query *q, int64_t page,
                       int64_t per_page, qb_result **out,
                       qb_pagination *info)
{
    struct qb_query cv, dv;
    qb_query *tmp = NULL;
    int64_t total = 0;
    int rc, mode = SCOPE_NONE;

    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    if (!c->drv->snapshot_sp)
        return lacks(c, "qb_paginate");
    if (info != NULL)
        memset(info, 0, sizeof *info);
    if (q == NULL || out == NULL || info == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "NULL query or output");
    if (page < 1)
        return qbi_fail(c, QB_ECONFIG, 0, NULL, "Invalid page value: %lld. "
                        "Page must be an integer >= 1.", (long long)page);
    if (per_page < 1)
        return qbi_fail(c, QB_ECONFIG, 0, NULL, "Invalid perPage value: "
                        "%lld. perPage must be an integer >= 1.",
                        (long long)per_page);
    rc = for_conn(c, q, &tmp, &q);
    if (rc == QB_OK)
        rc = count_view(c, q, &cv);
    if (rc != QB_OK) {
        qb_query_free(tmp);
        return rc;
    }
    dv = *q;
    dv.fetch = QB_FETCH_ALL;

    /* A deferred savepoint: count and rows read one snapshot. */
    rc = sp_run(c, "SAVEPOINT", "qb_paginate", 0);
    if (rc == QB_OK)
        mode = SCOPE_SAVEPOINT;
    if (rc == QB_OK)
        rc = count_run(c, &cv, &total);
    if (rc == QB_OK)
        rc = qbi_exec(c, &dv, out);
    rc = scope_close(c, mode, "qb_paginate", rc);
    qb_query_free(tmp);
    if (rc != QB_OK) {
        qb_result_free(*out);
        *out = NULL;
        return rc;
    }
    info->page = page;
    info->per_page = per_page;
    info->total = total;
    info->total_pages = total / per_page + (total % per_page != 0);
    info->has_next = page < info->total_pages;
    info->has_prev = page > 1;
    return QB_OK;
}

/* ---- batches and pipelines ----------------------------------------------- */

QB_API int qb_batch(qb_conn *c, const qb_query *const *qs, size_t n,
                    qb_result **results, size_t *failed_at)
{
    size_t i, failed = n;
    int rc, mode;

    if (c == NULL)
        return QB_EINVAL;
    if (failed_at != NULL)
        *failed_at = n;
    if (results != NULL)
        for (i = 0; i < n; i++)
            results[i] = NULL;
    if (n == 0)
        return QB_OK;
    if (qs == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "NULL query list");
    for (i = 0; i < n; i++)
        if (qs[i] == NULL) {
            if (failed_at != NULL)
                *failed_at = i;
            return qbi_fail(c, QB_EINVAL, 0, NULL, "batch query %zu is NULL",
                            i);
        }

    rc = scope_open(c, "qb_batch", &mode);
    if (rc != QB_OK) {
        failed = 0;
        qbi_prefix(c, "batch: cannot open a transaction");
    }
    for (i = 0; rc == QB_OK && i < n; i++) {
        rc = exec_for(c, qs[i], results ? &results[i] : NULL);
        if (rc != QB_OK) {
            failed = i;
            qbi_prefix(c, "batch query %zu", i);
        }
    }
    rc = scope_close(c, mode, "qb_batch", rc);
    if (rc != QB_OK) {
        if (results != NULL)
            for (i = 0; i < n; i++) {
                qb_result_free(results[i]);
                results[i] = NULL;
            }
        if (failed_at != NULL)
            *failed_at = failed;
    }
    return rc;
}

/* The driver's pipeline over qs in c's dialect: queries of the other
 * dialect converted into a copy of the array first. */
static int pipeline_for(qb_conn *c, const qb_query *const *qs, size_t n,
                        size_t *failed_at)
{
    const qb_query **use;
    qb_query **tmp;
    size_t i, k = 0;
    int rc = QB_OK;

    if (qs != NULL)
        for (i = 0; i < n; i++)
            if (qs[i] != NULL && qs[i]->dialect != c->drv->dialect)
                k++;
    if (k == 0)
        return c->drv->pipeline(c, qs, n, failed_at);
    use = calloc(n, sizeof *use);
    tmp = calloc(n, sizeof *tmp);
    if (use == NULL || tmp == NULL)
        rc = qbi_nomem(c);
    for (i = 0; rc == QB_OK && i < n; i++)
        rc = for_conn(c, qs[i], &tmp[i], &use[i]);
    if (rc == QB_OK)
        rc = c->drv->pipeline(c, use, n, failed_at);
    for (i = 0; tmp != NULL && i < n; i++)
        qb_query_free(tmp[i]);
    free(tmp);
    free(use);
    return rc;
}

QB_API int qb_pipeline(qb_conn *c, const qb_query *const *qs, size_t n,
                       size_t *failed_at)
{
    if (c == NULL)
        return QB_EINVAL;
    if (c->drv->pipeline != NULL)
        return pipeline_for(c, qs, n, failed_at);
    /* One by one, inside the caller's transaction. */
    if (qs == NULL && n > 0)
        return QB_EINVAL;
    if (c->drv->tx_state(c) != QBI_TX_OPEN)
        return qbi_fail(c, QB_EMISUSE, 0, NULL,
                        "qb_pipeline: no transaction is open");
    for (size_t i = 0; i < n; i++) {
        int rc = qs[i] == NULL ? QB_EINVAL : exec_for(c, qs[i], NULL);
        if (rc != QB_OK) {
            if (failed_at != NULL)
                *failed_at = i;
            return rc;
        }
    }
    return QB_OK;
}

/* ---- transactions -------------------------------------------------------- */

QB_API int qb_begin(qb_conn *c)
{
    return c != NULL ? run_sql(c, c->drv->begin_sql, 0) : QB_EINVAL;
}

QB_API int qb_commit(qb_conn *c)
{
    return c != NULL ? run_sql(c, "COMMIT", 0) : QB_EINVAL;
}

QB_API int qb_rollback(qb_conn *c)
{
    return c != NULL ? run_sql(c, "ROLLBACK", 0) : QB_EINVAL;
}

QB_API int qb_savepoint(qb_conn *c, const char *name)
{
    return c != NULL ? sp_run(c, "SAVEPOINT", name, 0) : QB_EINVAL;
}

QB_API int qb_release(qb_conn *c, const char *name)
{
    return c != NULL ? sp_run(c, c->drv->release_sql, name, 0) : QB_EINVAL;
}

QB_API int qb_rollback_to(qb_conn *c, const char *name)
{
    int rc;
    if (c == NULL)
        return QB_EINVAL;
    rc = sp_run(c, c->drv->rollback_to_sql, name, 0);
    /* ROLLBACK TO keeps the savepoint open; the contract also releases. */
    return rc == QB_OK ? sp_run(c, c->drv->release_sql, name, 0) : rc;
}

QB_API int64_t qb_changes(const qb_conn *c)
{
    if (c == NULL || c->drv->changes == NULL)
        return 0;
    return c->drv->changes(c);
}

QB_API int64_t qb_last_insert_rowid(const qb_conn *c)
{
    if (c == NULL || c->drv->last_rowid == NULL)
        return 0;
    return c->drv->last_rowid(c);
}

QB_API void qb_conn_cache_stats(const qb_conn *c, qb_cache_stats *out)
{
    if (c != NULL && out != NULL)
        *out = c->cache;
}

QB_API int qb_cursor_open(qb_conn *c, const qb_query *q, qb_cursor **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    if (c->drv->cursor_open == NULL)
        return lacks(c, "a cursor");
    return c->drv->cursor_open(c, q, out);
}

/* ---- migrations ---------------------------------------------------------- */

/* A query over sql and params the caller keeps alive. */
static void qview(const qb_conn *c, struct qb_query *v, const char *sql,
                  const qb_value *params, size_t n, qb_fetch fetch,
                  qb_kind kind)
{
    memset(v, 0, sizeof *v);
    v->sql = (char *)sql;            /* views never write through these */
    v->sql_len = strlen(sql);
    v->params = (qb_value *)params;
    v->nparams = n;
    v->fetch = fetch;
    v->kind = kind;
    v->dialect = c->drv->dialect;
}

/* A migration's name as a (borrowed) text value. */
static void name_value(qb_value *v, const char *name)
{
    memset(v, 0, sizeof *v);
    v->type = QB_V_TEXT;
    v->flags = QB_VF_BORROWED;
    v->u.b.p = name;
    v->u.b.n = strlen(name);
}

static int mig_table(qb_conn *c, const char **table)
{
    if (*table == NULL)
        *table = "migrations";
    if (!qb_ident_valid(*table) || strlen(*table) > QBI_IDENT_MAX)
        return qbi_fail(c, QB_EINVAL, 0, NULL,
                        "invalid migrations table name");
    return QB_OK;
}

/* Create the table if needed (logged), then list it (logged). */
static int mig_applied(qb_conn *c, const char *table, qb_result **out)
{
    char sql[QBI_IDENT_MAX + 200];
    struct qb_query v;
    int rc;

    snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s ( id %s, "
             "name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT "
             "CURRENT_TIMESTAMP NOT NULL)", table, c->drv->mig_id);
    qview(c, &v, sql, NULL, 0, QB_FETCH_NONE, QB_KIND_RAW);
    rc = qbi_exec(c, &v, NULL);
    if (rc != QB_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY id", table);
    qview(c, &v, sql, NULL, 0, QB_FETCH_ALL, QB_KIND_SELECT);
    return qbi_exec(c, &v, out);
}

QB_API int qb_migrations_applied(qb_conn *c, const char *table,
                                 qb_result **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    if (out == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "NULL output");
    if (mig_table(c, &table) != QB_OK)
        return QB_EINVAL;
    return mig_applied(c, table, out);
}

static int mig_unapplied(qb_conn *c, const char *table,
                         const qb_migration *list, size_t n, size_t *idx,
                         size_t *nidx)
{
    qb_result *done = NULL;
    int rc, col;
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (list[i].name == NULL || list[i].sql == NULL)
            return qbi_fail(c, QB_EINVAL, 0, NULL,
                            "migration %zu has no name or no SQL", i);
    rc = mig_applied(c, table, &done);
    if (rc != QB_OK)
        return rc;
    col = qb_result_colindex(done, "name");
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; col >= 0 && j < done->nrows && !seen; j++) {
            const char *nm = qb_result_text(done, j, (size_t)col, NULL);
            seen = nm != NULL && strcmp(nm, list[i].name) == 0;
        }
        if (!seen)
            idx[k++] = i;
    }
    qb_result_free(done);
    *nidx = k;
    return QB_OK;
}

QB_API int qb_migrations_unapplied(qb_conn *c, const char *table,
                                   const qb_migration *list, size_t n,
                                   size_t *idx, size_t *nidx)
{
    if (c == NULL)
        return QB_EINVAL;
    if (nidx != NULL)
        *nidx = 0;
    if (nidx == NULL || (n > 0 && (list == NULL || idx == NULL)))
        return qbi_fail(c, QB_EINVAL, 0, NULL,
                        "NULL migration list or output");
    if (mig_table(c, &table) != QB_OK)
        return QB_EINVAL;
    return mig_unapplied(c, table, list, n, idx, nidx);
}

/* Run sql (one placeholder) with name bound, not observed; *row (if row)
 * tells whether it returned a row. */
static int mig_named(qb_conn *c, const char *sql, const char *name, int *row)
{
    struct qb_query v;
    qb_value val;
    qb_result *r = NULL;
    int rc;

    name_value(&val, name);
    qview(c, &v, sql, &val, 1, row ? QB_FETCH_ONE : QB_FETCH_NONE,
          QB_KIND_RAW);
    rc = run_query(c, &v, row ? &r : NULL);
    if (rc == QB_OK && row != NULL)
        *row = qb_result_rows(r) > 0;
    qb_result_free(r);
    return rc;
}

/* One migration in its own transaction.  *did: committed by us. */
static int mig_one(qb_conn *c, const char *table, const qb_migration *m,
                   int *did)
{
    const char *ph = c->drv->dialect == QB_DIALECT_POSTGRES ? "$1" : "?";
    char sql[QBI_IDENT_MAX + 64];
    int rc, applied = 0;

    *did = 0;
    rc = run_sql(c, c->drv->begin_sql, 0);
    if (rc != QB_OK)
        return rc;
    /* PostgreSQL's lock queues concurrent appliers (SQLite's BEGIN
     * IMMEDIATE did); then look again: another process may have applied
     * this one while we were listing. */
    if (c->drv->mig_lock != NULL) {
        snprintf(sql, sizeof sql, "LOCK TABLE %s %s", table,
                 c->drv->mig_lock);
        rc = run_sql(c, sql, 0);
    }
    if (rc == QB_OK) {
        snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE name = %s", table,
                 ph);
        rc = mig_named(c, sql, m->name, &applied);
    }
    if (rc == QB_OK && !applied) {
        rc = c->drv->run_script(c, m->sql);
        /* A script that ends our transaction would record its name outside
         * it (and may have committed half of itself): refuse it. */
        if (rc == QB_OK && c->drv->tx_state(c) != QBI_TX_OPEN)
            rc = qbi_fail(c, QB_EINVAL, 0, NULL, "migration SQL must not "
                          "end the transaction (COMMIT/ROLLBACK/END)");
        if (rc == QB_OK) {
            snprintf(sql, sizeof sql, "INSERT INTO %s (name) VALUES (%s)",
                     table, ph);
            rc = mig_named(c, sql, m->name, NULL);
        }
    }
    rc = scope_close(c, SCOPE_BEGIN, NULL, rc);
    if (rc == QB_OK)
        *did = !applied;
    return rc;
}

QB_API int qb_migrations_apply(qb_conn *c, const char *table,
                               const qb_migration *list, size_t n,
                               size_t *applied, size_t *failed_at)
{
    size_t *idx = NULL, k = 0, count = 0;
    int rc;

    if (applied != NULL)
        *applied = 0;
    if (c == NULL)
        return QB_EINVAL;
    if (failed_at != NULL)
        *failed_at = n;
    if (n > 0 && list == NULL)
        return qbi_fail(c, QB_EINVAL, 0, NULL, "NULL migration list");
    if (mig_table(c, &table) != QB_OK)
        return QB_EINVAL;
    if (c->drv->tx_state(c) != QBI_TX_IDLE)
        return qbi_fail(c, qb_connected(c) ? QB_EMISUSE : QB_ECONN, 0, NULL,
                        "migrations cannot run inside an open transaction");
    if (n == 0)
        return QB_OK;
    if (n > SIZE_MAX / sizeof *idx)
        return qbi_nomem(c);
    idx = malloc(n * sizeof *idx);
    if (idx == NULL)
        return qbi_nomem(c);
    rc = mig_unapplied(c, table, list, n, idx, &k);
    for (size_t j = 0; rc == QB_OK && j < k; j++) {
        const qb_migration *m = &list[idx[j]];
        struct qb_query v;
        qb_value name;
        qbi_obs o;
        int did = 0;

        /* Observed as its sql with its name as the one param. */
        name_value(&name, m->name);
        qview(c, &v, m->sql, &name, 1, QB_FETCH_NONE, QB_KIND_RAW);
        rc = qbi_obs_begin(c, &v, &o);
        if (rc == QB_OK)
            rc = mig_one(c, table, m, &did);
        if (rc != QB_OK) {
            qbi_prefix(c, "migration '%s'", m->name);
            if (failed_at != NULL)
                *failed_at = idx[j];
        }
        qbi_obs_end(c, &v, &o, rc, NULL);
        count += (size_t)did;
    }
    free(idx);
    if (applied != NULL)
        *applied = count;
    return rc;
}

/* ---- observers ----------------------------------------------------------- */

QB_API void qb_set_logger(qb_conn *c, qb_logger_fn fn, void *ud)
{
    if (c == NULL)
        return;
    c->logger = fn;
    c->logger_ud = ud;
}

QB_API void qb_set_hooks(qb_conn *c, qb_before_fn before, qb_after_fn after,
                         void *ud)
{
    if (c == NULL)
        return;
    c->before = before;
    c->after = after;
    c->hook_ud = ud;
}
