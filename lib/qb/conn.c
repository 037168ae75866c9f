/*
 * conn.c -- qb_conn.h: open a connection with the driver its target
 * names, and dispatch every call through the driver's table (qb_drv.h).
 * What both engines share lives here once: argument checks, the error
 * record, the observers (logger, hooks).
 */
#include "config.h"
#include "qb_drv.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- the common head ----------------------------------------------------- */

void qbi_conn_init(qb_conn *c, const qbi_driver *drv)
{
    memset(c, 0, sizeof *c);
    c->drv = drv;
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

/* ---- dispatch ------------------------------------------------------------ */

/* A feature the engine lacks. */
static int lacks(qb_conn *c, const char *what)
{
    return qbi_fail(c, QB_EDIALECT, 0, NULL, "%s is not available on %s",
                    what, c->drv->name);
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
    return c != NULL && c->drv->in_transaction(c);
}

QB_API int qb_exec(qb_conn *c, const qb_query *q, qb_result **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    return c->drv->exec(c, q, out);
}

QB_API int qb_count(qb_conn *c, const qb_query *q, int64_t *total)
{
    if (total != NULL)
        *total = 0;
    if (c == NULL)
        return QB_EINVAL;
    return c->drv->count(c, q, total);
}

QB_API int qb_paginate(qb_conn *c, const qb_query *q, int64_t page,
                       int64_t per_page, qb_result **out,
                       qb_pagination *info)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    if (c->drv->paginate == NULL)
        return lacks(c, "qb_paginate");
    return c->drv->paginate(c, q, page, per_page, out, info);
}

QB_API int qb_explain(qb_conn *c, const qb_query *q, qb_result **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    if (c->drv->explain == NULL)
        return lacks(c, "qb_explain");
    return c->drv->explain(c, q, out);
}

QB_API int qb_batch(qb_conn *c, const qb_query *const *qs, size_t n,
                    qb_result **results, size_t *failed_at)
{
    if (c == NULL)
        return QB_EINVAL;
    return c->drv->batch(c, qs, n, results, failed_at);
}

QB_API int qb_pipeline(qb_conn *c, const qb_query *const *qs, size_t n,
                       size_t *failed_at)
{
    if (c == NULL)
        return QB_EINVAL;
    if (c->drv->pipeline != NULL)
        return c->drv->pipeline(c, qs, n, failed_at);
    /* One by one, inside the caller's transaction. */
    if (qs == NULL && n > 0)
        return QB_EINVAL;
    if (!c->drv->in_transaction(c))
        return qbi_fail(c, QB_EMISUSE, 0, NULL,
                        "qb_pipeline: no transaction is open");
    for (size_t i = 0; i < n; i++) {
        int rc = qs[i] == NULL ? QB_EINVAL : c->drv->exec(c, qs[i], NULL);
        if (rc != QB_OK) {
            if (failed_at != NULL)
                *failed_at = i;
            return rc;
        }
    }
    return QB_OK;
}

QB_API int qb_begin(qb_conn *c)
{
    return c != NULL ? c->drv->tx(c, QBI_TX_BEGIN, NULL) : QB_EINVAL;
}

QB_API int qb_commit(qb_conn *c)
{
    return c != NULL ? c->drv->tx(c, QBI_TX_COMMIT, NULL) : QB_EINVAL;
}

QB_API int qb_rollback(qb_conn *c)
{
    return c != NULL ? c->drv->tx(c, QBI_TX_ROLLBACK, NULL) : QB_EINVAL;
}

QB_API int qb_savepoint(qb_conn *c, const char *name)
{
    return c != NULL ? c->drv->tx(c, QBI_TX_SAVEPOINT, name) : QB_EINVAL;
}

QB_API int qb_release(qb_conn *c, const char *name)
{
    return c != NULL ? c->drv->tx(c, QBI_TX_RELEASE, name) : QB_EINVAL;
}

QB_API int qb_rollback_to(qb_conn *c, const char *name)
{
    return c != NULL ? c->drv->tx(c, QBI_TX_ROLLBACK_TO, name) : QB_EINVAL;
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
    if (c == NULL || out == NULL)
        return;
    memset(out, 0, sizeof *out);
    c->drv->cache_stats(c, out);
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

QB_API int qb_migrations_applied(qb_conn *c, const char *table,
                                 qb_result **out)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return QB_EINVAL;
    return c->drv->mig_applied(c, table, out);
}

QB_API int qb_migrations_unapplied(qb_conn *c, const char *table,
                                   const qb_migration *list, size_t n,
                                   size_t *idx, size_t *nidx)
{
    if (c == NULL)
        return QB_EINVAL;
    return c->drv->mig_unapplied(c, table, list, n, idx, nidx);
}

QB_API int qb_migrations_apply(qb_conn *c, const char *table,
                               const qb_migration *list, size_t n,
                               size_t *applied, size_t *failed_at)
{
    if (applied != NULL)
        *applied = 0;
    if (c == NULL)
        return QB_EINVAL;
    return c->drv->mig_apply(c, table, list, n, applied, failed_at);
}

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
