/*
 * defer_db.c -- the two database engines behind one small interface, so
 * that defer_run.c's group commit is written once.
 *
 * DESIGN
 *
 * A runner holds at most one connection: a qb_db (SQLite) or a qb_pg
 * (PostgreSQL), chosen by the pool's configuration.  The calls below map
 * one-to-one onto qb_sqlite.h / qb_pg.h; what differs between the engines
 * is kept here:
 *   - time: SQLite statements are stopped by the progress handler that
 *     defer_run.c installs; PostgreSQL ones by the session's
 *     statement_timeout (the task budget) and, at the shutdown deadline,
 *     by the shutdown thread closing the session's socket (shutdown(2) on
 *     a duplicate of it): unlike a cancel request (PQcancel) this needs
 *     no new connection, so a server that stopped answering cannot hold
 *     the shutdown thread; the server ends the orphaned statement when it
 *     notices (client_connection_check_interval, set on the session), and
 *     its transaction was never committed.  Not during COMMIT, whose
 *     outcome we would then not know (in_commit);
 *   - lock waits: SQLite's busy handler (db.busy_timeout_ms) versus the
 *     session's lock_timeout (the same value): a wait past it is 55P03,
 *     QB_EBUSY, and the transaction is retried like SQLITE_BUSY;
 *   - a lost connection (PostgreSQL only): QB_PG_ECONN; defer__db_reset
 *     reconnects without blocking past its bound or the shutdown deadline
 *     (qb_pg_reset_until) and sets the session up again.
 *
 * Threads: the runner's own thread makes every call except
 * defer__db_cancel, which the shutdown thread may call at any time; the
 * socket duplicate r->sock and r->in_commit are therefore set and used
 * under r->cancel_mu, a leaf lock (never taken with pool->mu).  The
 * duplicate is ours, so its number cannot be reused while we hold it,
 * whatever libpq does with its own descriptor.
 */
#define _GNU_SOURCE
#include "config.h"
#include "defer_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sqlite3.h>
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif

int defer__db_is_pg(const defer_pool *p)
{
    return p->cfg.pg_conninfo != NULL;
}

#ifdef HAVE_LIBPQ
/* Run one parameterless statement on the session (SET ...). */
static int pg_simple(qb_pg *pg, const char *sql)
{
    qb_query *q = NULL;
    int rc = qb_query_raw_dialect(&q, QB_DIALECT_POSTGRES, sql, 0, NULL,
                                  QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_pg_exec(pg, q, NULL);
    qb_query_free(q);
    return rc;
}

/* Swap r's socket duplicate for fd (-1: none) and close the old one. */
static void sock_set(defer_runner *r, int fd)
{
    int old;
    (void)pthread_mutex_lock(&r->cancel_mu);
    old = r->sock;
    r->sock = fd;
    (void)pthread_mutex_unlock(&r->cancel_mu);
    if (old >= 0)
        (void)close(old);
}

/* Session settings: statement_timeout = task budget, lock_timeout = the
 * busy timeout, and a check every second that we are still there (a
 * server before 14 does not know it: ignored), after taking a duplicate
 * of the new session's socket for defer__db_cancel. */
static int pg_session(defer_runner *r)
{
    defer_pool *p = r->pool;
    char sql[96];
    int rc;

    /* First, so that a server stalling during the SETs can be cut too.
     * Without a duplicate (EMFILE) the session is refused: a worker the
     * deadline cannot stop would be reported hung. */
    sock_set(r, fcntl(PQsocket(qb_pg_conn(r->pg)), F_DUPFD_CLOEXEC, 0));
    if (r->sock < 0)
        return QB_ENOMEM;
    snprintf(sql, sizeof sql, "SET statement_timeout = %u",
             p->cfg.task_budget_ms);
    rc = pg_simple(r->pg, sql);
    if (rc == QB_OK) {
        snprintf(sql, sizeof sql, "SET lock_timeout = %d",
                 p->cfg.db.busy_timeout_ms > 0 ? p->cfg.db.busy_timeout_ms
                                               : 0);
        rc = pg_simple(r->pg, sql);
    }
    if (rc == QB_OK &&
        pg_simple(r->pg, "SET client_connection_check_interval = 1000") ==
            QB_PG_ECONN)
        rc = QB_PG_ECONN;
    if (rc != QB_OK)
        sock_set(r, -1);
    return rc;
}
#endif

int defer__db_open(defer_runner *r, char *eb, size_t el)
{
    defer_pool *p = r->pool;
    int rc;

    if (p->cfg.pg_conninfo != NULL) {
#ifdef HAVE_LIBPQ
        qb_pg *pg = NULL;
        rc = qb_pg_open(&pg, p->cfg.pg_conninfo, &p->cfg.pg, eb, el);
        if (rc != QB_OK)
            return rc;
        r->pg = pg;
        rc = pg_session(r);
        if (rc != QB_OK) {
            if (eb != NULL)
                snprintf(eb, el, "session setup: %s", qb_pg_errmsg(pg));
            defer__db_close(r);
        }
        return rc;
#else
        if (eb != NULL)
            snprintf(eb, el, "built without PostgreSQL support");
        return QB_EINVAL;
#endif
    }
    if (p->cfg.db_path != NULL) {
        qb_db *db = NULL;
        rc = qb_db_open(&db, p->cfg.db_path, &p->cfg.db, eb, el);
        if (rc != QB_OK)
            return rc;
        defer__runner_set_db(r, db);
    }
    return QB_OK;
}

void defer__db_close(defer_runner *r)
{
    qb_db_close(r->db);
    r->db = NULL;
#ifdef HAVE_LIBPQ
    sock_set(r, -1);
    qb_pg_close(r->pg);
#endif
    r->pg = NULL;
}

int defer__db_connected(const defer_runner *r)
{
    return r->db != NULL || r->pg != NULL;
}

#ifdef HAVE_LIBPQ
static int reset_stop(void *arg)
{
    return atomic_load(&((defer_runner *)arg)->pool->abort);
}
#endif

int defer__db_reset(defer_runner *r, int timeout_ms)
{
#ifdef HAVE_LIBPQ
    int rc;
    if (r->pg == NULL)
        return QB_EINVAL;
    sock_set(r, -1); /* the old session is gone: nothing to stop */
    rc = qb_pg_reset_until(r->pg, timeout_ms, reset_stop, r);
    if (rc == QB_OK)
        rc = pg_session(r);
    return rc;
#else
    (void)r;
    (void)timeout_ms;
    return QB_EINVAL;
#endif
}

void defer__db_cancel(defer_runner *r)
{
#ifdef HAVE_LIBPQ
    (void)pthread_mutex_lock(&r->cancel_mu);
    if (r->sock >= 0 && !r->in_commit)
        (void)shutdown(r->sock, SHUT_RDWR);
    (void)pthread_mutex_unlock(&r->cancel_mu);
#else
    (void)r;
#endif
}

#ifdef HAVE_LIBPQ
/* PostgreSQL reports a cancelled or timed-out statement as 57014
 * (QB_EINTERRUPT); tell the budget from the shutdown deadline the way the
 * SQLite progress handler does. */
static int note_why(defer_runner *r, int rc)
{
    if (rc == QB_EINTERRUPT && r->why == WHY_NONE)
        r->why = atomic_load(&r->pool->abort) ? WHY_ABORT : WHY_BUDGET;
    return rc;
}
#endif

/* On a PostgreSQL runner, return the qb_pg call's result (through
 * note_why); otherwise fall through to the SQLite call. */
#ifdef HAVE_LIBPQ
#define ON_PG(r, call)                                                       \
    do {                                                                     \
        if ((r)->pg != NULL)                                                 \
            return note_why((r), (call));                                    \
    } while (0)
#else
#define ON_PG(r, call) ((void)0)
#endif

int defer__db_exec(defer_runner *r, const qb_query *q)
{
    ON_PG(r, qb_pg_exec(r->pg, q, NULL));
    return qb_exec(r->db, q, NULL);
}

int defer__db_begin(defer_runner *r)
{
    ON_PG(r, qb_pg_begin(r->pg));
    return qb_begin(r->db);
}

/* Test-only fault injection (tests/check_defer_pg.c), 0 in production:
 * the next PostgreSQL COMMIT loses its connection right after the
 * server committed (DEFER_FAULT_AFTER_COMMIT) or after rolling back
 * instead (DEFER_FAULT_NO_COMMIT), as a crash or a network cut would. */
atomic_int defer__fault_commit;

#ifdef HAVE_LIBPQ
static void set_in_commit(defer_runner *r, int on)
{
    (void)pthread_mutex_lock(&r->cancel_mu);
    r->in_commit = on;
    (void)pthread_mutex_unlock(&r->cancel_mu);
}

static int pg_commit(defer_runner *r)
{
    int f = atomic_exchange(&defer__fault_commit, 0);
    int rc;
    set_in_commit(r, 1);
    rc = f == DEFER_FAULT_NO_COMMIT ? qb_pg_rollback(r->pg)
                                    : qb_pg_commit(r->pg);
    set_in_commit(r, 0);
    if (f != 0 && rc == QB_OK) {
        (void)pg_simple(r->pg, "SELECT pg_terminate_backend(pg_backend_pid())");
        return QB_PG_ECONN;
    }
    return rc;
}
#endif

int defer__db_commit(defer_runner *r)
{
    ON_PG(r, pg_commit(r));
    return qb_commit(r->db);
}

int defer__db_rollback(defer_runner *r)
{
    ON_PG(r, qb_pg_rollback(r->pg));
    return qb_rollback(r->db);
}

int defer__db_savepoint(defer_runner *r, const char *name)
{
    ON_PG(r, qb_pg_savepoint(r->pg, name));
    return qb_savepoint(r->db, name);
}

int defer__db_release(defer_runner *r, const char *name)
{
    ON_PG(r, qb_pg_release(r->pg, name));
    return qb_release(r->db, name);
}

int defer__db_rollback_to(defer_runner *r, const char *name)
{
    ON_PG(r, qb_pg_rollback_to(r->pg, name));
    return qb_rollback_to(r->db, name);
}

int defer__db_pipeline(defer_runner *r, const qb_query *const *qs, size_t n,
                       size_t *failed_at)
{
#ifdef HAVE_LIBPQ
    if (r->pg != NULL)
        return note_why(r, qb_pg_pipeline(r->pg, qs, n, failed_at));
#endif
    (void)r, (void)qs, (void)n;
    *failed_at = 0;
    return QB_EINVAL;
}

int defer__db_in_tx(defer_runner *r)
{
#ifdef HAVE_LIBPQ
    if (r->pg != NULL)
        return qb_pg_in_transaction(r->pg);
#endif
    return r->db != NULL && !sqlite3_get_autocommit(qb_db_sqlite(r->db));
}

const char *defer__db_errmsg(const defer_runner *r)
{
#ifdef HAVE_LIBPQ
    if (r->pg != NULL)
        return qb_pg_errmsg(r->pg);
#endif
    return r->db != NULL ? qb_db_errmsg(r->db) : "no database connection";
}

const char *defer__db_strerror(int rc)
{
#ifdef HAVE_LIBPQ
    return qb_pg_strerror(rc);
#else
    return qb_strerror(rc);
#endif
}

/* Read one text cell of a one-row query into buf ("" for NULL). */
static int pg_one_text(defer_runner *r, const char *sql, const char *arg,
                       char *buf, size_t len)
{
#ifdef HAVE_LIBPQ
    qb_query *q = NULL;
    qb_pg_result *res = NULL;
    qb_value v = qb_text(arg != NULL ? arg : "");
    const char *s;
    int rc = qb_query_raw_dialect(&q, QB_DIALECT_POSTGRES, sql,
                                  arg != NULL ? 1 : 0, &v, QB_FETCH_ONE);
    if (rc == QB_OK)
        rc = note_why(r, qb_pg_exec(r->pg, q, &res));
    qb_query_free(q);
    if (rc != QB_OK)
        return rc;
    s = qb_pg_result_text(res, 0, 0, NULL);
    snprintf(buf, len, "%s", s != NULL ? s : "");
    qb_pg_result_free(res);
    return QB_OK;
#else
    (void)r, (void)sql, (void)arg, (void)buf, (void)len;
    return QB_EINVAL;
#endif
}

int defer__db_xact_id(defer_runner *r, char *buf, size_t len)
{
    return pg_one_text(r, "SELECT pg_current_xact_id()::text", NULL, buf,
                       len);
}

int defer__db_xact_status(defer_runner *r, const char *xid, int *status)
{
    char s[32];
    int rc = pg_one_text(r, "SELECT pg_xact_status(?::xid8)", xid, s,
                         sizeof s);
    if (rc != QB_OK)
        return rc;
    if (strcmp(s, "committed") == 0)
        *status = DEFER_XACT_COMMITTED;
    else if (strcmp(s, "aborted") == 0)
        *status = DEFER_XACT_ABORTED;
    else if (strcmp(s, "in progress") == 0)
        *status = DEFER_XACT_RUNNING;
    else
        *status = DEFER_XACT_UNKNOWN; /* NULL: too old to tell */
    return QB_OK;
}
