/*
 * defer_db.c -- a runner's connection: opening it, the PostgreSQL session
 * settings, cutting it at the deadline, the SQLite file it writes to.
 *
 * DESIGN
 *
 * A runner holds at most one qb_conn (qb_conn.h), SQLite or PostgreSQL as
 * the pool's configuration says; every call goes through qb_conn's one
 * API, so nothing here includes an engine's client library.  What still
 * differs between the engines is kept here:
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
 *   - a lost connection (PostgreSQL only): QB_ECONN; defer__db_reset
 *     reconnects without blocking past its bound or the shutdown deadline
 *     (qb_reset_until) and sets the session up again.
 *
 * SQLite file identity: at open, the runner records the st_dev/st_ino
 * of the path SQLite resolved (sqlite3_db_filename) after SQLite's own
 * SQLITE_FCNTL_HAS_MOVED said the path still names the open file, plus
 * the page size; defer__fileid_check compares a later stat(2) of the
 * path with them (defer_health.c uses it before COMMIT and once a
 * second).  Every SQLite open and close is counted per health
 * generation (defer__health_opened/closed), under pool->mu.
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

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

int defer__db_is_pg(const defer_pool *p)
{
    return p->cfg.pg_conninfo != NULL;
}

static int is_pg(const defer_runner *r)
{
    return qb_conn_engine(r->db) == QB_ENGINE_POSTGRES;
}

/* Run one parameterless statement on the connection (SET ...). */
static int run_simple(qb_conn *c, const char *sql)
{
    qb_query *q = NULL;
    int rc = qb_query_raw_dialect(&q, qb_conn_dialect(c), sql, 0, NULL,
                                  QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_exec(c, q, NULL);
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
    int fd = qb_conn_socket(r->db);
    sock_set(r, fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1);
    if (r->sock < 0)
        return QB_ENOMEM;
    snprintf(sql, sizeof sql, "SET statement_timeout = %u",
             p->cfg.task_budget_ms);
    rc = run_simple(r->db, sql);
    if (rc == QB_OK) {
        snprintf(sql, sizeof sql, "SET lock_timeout = %d",
                 p->cfg.db.busy_timeout_ms > 0 ? p->cfg.db.busy_timeout_ms
                                               : 0);
        rc = run_simple(r->db, sql);
    }
    if (rc == QB_OK &&
        run_simple(r->db, "SET client_connection_check_interval = 1000") ==
            QB_ECONN)
        rc = QB_ECONN;
    if (rc != QB_OK)
        sock_set(r, -1);
    return rc;
}

/* ---- SQLite: the file a connection writes to ---------------------------- */

void defer__fileid_clear(defer_fileid *id)
{
    free(id->path);
    memset(id, 0, sizeof *id);
}

static int page_size_cb(void *ud, int ncol, char **vals, char **names)
{
    (void)names;
    if (ncol > 0 && vals[0] != NULL)
        *(unsigned *)ud = (unsigned)strtoul(vals[0], NULL, 10);
    return 0;
}

/* Record the file db has open into id.  A database without a file
 * (":memory:", a temp database) leaves id->path NULL: nothing to watch. */
static int fileid_read(sqlite3 *db, defer_fileid *id, char *eb, size_t el)
{
    const char *fn = sqlite3_db_filename(db, "main");
    struct stat st;
    unsigned page = 0;
    int moved = 0;

    memset(id, 0, sizeof *id);
    if (fn == NULL || fn[0] == '\0' || stat(fn, &st) != 0)
        return QB_OK;
    /* SQLite's own check that fn still names the file it opened (inode);
     * our stat came after it, so both describe one file unless it moved
     * in between, which the next check will see. */
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) ==
            SQLITE_OK && moved) {
        if (eb != NULL)
            snprintf(eb, el, "%s was moved or removed while it was opened",
                     fn);
        return QB_ESQL;
    }
    (void)sqlite3_exec(db, "PRAGMA page_size", page_size_cb, &page, NULL);
    if (page < 512)
        page = 512;
    id->path = strdup(fn);
    if (id->path == NULL) {
        if (eb != NULL)
            snprintf(eb, el, "out of memory");
        return QB_ENOMEM;
    }
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->page_size = page;
    /* The PRAGMA read the file: in WAL mode its -wal and -shm exist now
     * and keep their inodes while a connection of ours is open on it.
     * They are what may be removed once the file is lost, and only they
     * (defer_health.c). */
    {
        static const char *const sfx[2] = { "-wal", "-shm" };
        size_t n = strlen(fn);
        int k;
        char *side = malloc(n + 5);
        for (k = 0; side != NULL && k < 2; k++) {
            struct stat ss;
            memcpy(side, fn, n);
            memcpy(side + n, sfx[k], 5);
            if (stat(side, &ss) == 0) {
                id->side_dev[id->nside] = ss.st_dev;
                id->side_ino[id->nside] = ss.st_ino;
                id->nside++;
            }
        }
        free(side);
    }
    id->floor = st.st_size >= (off_t)page ? (int64_t)page : 0;
    return QB_OK;
}

int defer__fileid_check(defer_fileid *id, char *why, size_t len)
{
    struct stat st;
    if (id->path == NULL)
        return DEFER_FILE_OK;
    if (stat(id->path, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            return DEFER_FILE_OK; /* cannot tell: not a loss */
        snprintf(why, len, "database file %s was removed", id->path);
        return DEFER_FILE_REMOVED;
    }
    if (st.st_dev != id->dev || st.st_ino != id->ino) {
        snprintf(why, len, "database file %s was replaced by another file",
                 id->path);
        return DEFER_FILE_REPLACED;
    }
    if ((int64_t)st.st_size < id->floor ||
        st.st_size % (off_t)id->page_size != 0) {
        snprintf(why, len, "database file %s was truncated (%lld bytes)",
                 id->path, (long long)st.st_size);
        return DEFER_FILE_TRUNCATED;
    }
    if (id->floor == 0 && st.st_size >= (off_t)id->page_size)
        id->floor = id->page_size; /* page 1 is there from now on */
    return DEFER_FILE_OK;
}

/* The table names of db, '\n'-separated (defer_health.c: a file that
 * reappears must have them).  NULL on error. */
static char *read_tables(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    size_t len = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE "
                                "type = 'table' AND name NOT LIKE 'sqlite%' "
                                "AND name <> 'defer_probe' ORDER BY name",
                                -1, &st, NULL);
    out = calloc(1, 1);
    while (rc == SQLITE_OK && out != NULL && sqlite3_step(st) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(st, 0);
        size_t k = n != NULL ? strlen(n) : 0;
        char *grown = realloc(out, len + k + 2);
        if (grown == NULL) {
            free(out);
            out = NULL;
            break;
        }
        out = grown;
        if (len > 0)
            out[len++] = '\n';
        memcpy(out + len, n != NULL ? n : "", k);
        len += k;
        out[len] = '\0';
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        free(out);
        out = NULL;
    }
    return out;
}

static int sqlite_open(defer_runner *r, int probe, char *eb, size_t el)
{
    defer_pool *p = r->pool;
    qb_conn *db = NULL;
    sqlite3 *s;
    unsigned gen;
    int rc;

    if (!probe && atomic_load(&p->hl.state) == DEFER_DB_LOST) {
        if (eb != NULL)
            snprintf(eb, el, "the database file was lost");
        return QB_EMISUSE;
    }
    gen = atomic_load(&p->hl.gen);
    {
        qb_conn_config cfg = p->cfg.db;
        cfg.engine = QB_ENGINE_SQLITE;
        rc = qb_open(&db, p->cfg.db_path, &cfg, eb, el);
    }
    if (rc != QB_OK)
        return rc;
    s = qb_conn_sqlite(db);
    if (p->cfg.db_init_sql != NULL) {
        char *err = NULL;
        if (sqlite3_exec(s, p->cfg.db_init_sql, NULL, NULL, &err) !=
            SQLITE_OK) {
            if (eb != NULL)
                snprintf(eb, el, "db_init_sql: %s", err ? err : "failed");
            sqlite3_free(err);
            qb_close(db);
            return QB_ESQL;
        }
    }
    rc = fileid_read(s, &r->file, eb, el);
    if (rc != QB_OK) {
        qb_close(db);
        return rc;
    }
    /* The first connection (during create, before any other thread):
     * what the pool watches and what a reappearing file must hold. */
    if (!p->hl.captured) {
        p->hl.captured = 1;
        p->hl.tables = read_tables(s);
        p->hl.file = r->file;
        p->hl.file.path = r->file.path ? strdup(r->file.path) : NULL;
        if ((r->file.path != NULL && p->hl.file.path == NULL) ||
            p->hl.tables == NULL) {
            if (eb != NULL)
                snprintf(eb, el, "out of memory");
            defer__fileid_clear(&r->file);
            qb_close(db);
            return QB_ENOMEM;
        }
    }
    defer__runner_set_db(r, db);
    r->gen = gen;
    defer__lock(p);
    defer__health_opened(r);
    defer__unlock(p);
    return QB_OK;
}

int defer__db_open_probe(defer_runner *r, char *eb, size_t el)
{
    return sqlite_open(r, 1, eb, el);
}

int defer__db_fatal(const defer_runner *r, int rc)
{
    int code;
    if (r->db == NULL || rc == QB_OK || rc == QB_EBUSY ||
        rc == QB_EINTERRUPT)
        return 0;
    code = qb_errcode(r->db) & 0xff;
    switch (code) {
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        return code;
    default:
        return 0;
    }
}

int defer__db_open(defer_runner *r, char *eb, size_t el)
{
    defer_pool *p = r->pool;

    if (p->cfg.pg_conninfo != NULL) {
        qb_conn *pg = NULL;
        qb_conn_config cfg = p->cfg.db;
        int rc;
        cfg.engine = QB_ENGINE_POSTGRES;
        rc = qb_open(&pg, p->cfg.pg_conninfo, &cfg, eb, el);
        if (rc != QB_OK)
            return rc;
        defer__runner_set_db(r, pg);
        rc = pg_session(r);
        if (rc != QB_OK) {
            if (eb != NULL)
                snprintf(eb, el, "session setup: %s", qb_errmsg(pg));
            defer__db_close(r);
        }
        return rc;
    }
    if (p->cfg.db_path != NULL)
        return sqlite_open(r, 0, eb, el);
    return QB_OK;
}

void defer__db_close(defer_runner *r)
{
    defer_pool *p = r->pool;
    int nockpt;

    if (r->db == NULL)
        return;
    if (is_pg(r)) {
        sock_set(r, -1);
        qb_close(r->db);
        r->db = NULL;
        return;
    }
    defer__lock(p);
    /* To a file someone truncated: write nothing more into it. */
    nockpt = r->gen != atomic_load(&p->hl.gen) &&
             p->hl.lost_kind == DEFER_FILE_TRUNCATED;
    defer__unlock(p);
    if (nockpt)
        (void)sqlite3_db_config(qb_conn_sqlite(r->db),
                                SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
                                (int *)NULL);
    qb_close(r->db);
    r->db = NULL;
    defer__lock(p);
    defer__health_closed(r);
    defer__unlock(p);
    defer__fileid_clear(&r->file);
}

int defer__db_connected(const defer_runner *r)
{
    return r->db != NULL;
}

static int reset_stop(void *arg)
{
    return atomic_load(&((defer_runner *)arg)->pool->abort);
}

int defer__db_reset(defer_runner *r, int timeout_ms)
{
    int rc;
    if (r->db == NULL || !is_pg(r))
        return QB_EINVAL;
    sock_set(r, -1); /* the old session is gone: nothing to stop */
    rc = qb_reset_until(r->db, timeout_ms, reset_stop, r);
    if (rc == QB_OK)
        rc = pg_session(r);
    return rc;
}

void defer__db_cancel(defer_runner *r)
{
    (void)pthread_mutex_lock(&r->cancel_mu);
    if (r->sock >= 0 && !r->in_commit)
        (void)shutdown(r->sock, SHUT_RDWR);
    (void)pthread_mutex_unlock(&r->cancel_mu);
}

/* A cancelled or timed-out statement is QB_EINTERRUPT; on PostgreSQL
 * (57014) tell the budget from the shutdown deadline the way the SQLite
 * progress handler does (it has set r->why before interrupting). */
static int note_why(defer_runner *r, int rc)
{
    if (rc == QB_EINTERRUPT && r->why == WHY_NONE && is_pg(r))
        r->why = atomic_load(&r->pool->abort) ? WHY_ABORT : WHY_BUDGET;
    return rc;
}

int defer__db_exec(defer_runner *r, const qb_query *q)
{
    return note_why(r, qb_exec(r->db, q, NULL));
}

int defer__db_begin(defer_runner *r)
{
    return note_why(r, qb_begin(r->db));
}

/* Test-only fault injection (tests/check_defer_pg.c), 0 in production:
 * the next PostgreSQL COMMIT loses its connection right after the
 * server committed (DEFER_FAULT_AFTER_COMMIT) or after rolling back
 * instead (DEFER_FAULT_NO_COMMIT), as a crash or a network cut would. */
atomic_int defer__fault_commit;

static void set_in_commit(defer_runner *r, int on)
{
    (void)pthread_mutex_lock(&r->cancel_mu);
    r->in_commit = on;
    (void)pthread_mutex_unlock(&r->cancel_mu);
}

int defer__db_commit(defer_runner *r)
{
    int f, rc;
    if (!is_pg(r))
        return qb_commit(r->db);
    f = atomic_exchange(&defer__fault_commit, 0);
    set_in_commit(r, 1);
    rc = f == DEFER_FAULT_NO_COMMIT ? qb_rollback(r->db) : qb_commit(r->db);
    set_in_commit(r, 0);
    if (f != 0 && rc == QB_OK) {
        (void)run_simple(r->db,
                         "SELECT pg_terminate_backend(pg_backend_pid())");
        return QB_ECONN;
    }
    return note_why(r, rc);
}

int defer__db_rollback(defer_runner *r)
{
    return note_why(r, qb_rollback(r->db));
}

int defer__db_savepoint(defer_runner *r, const char *name)
{
    return note_why(r, qb_savepoint(r->db, name));
}

int defer__db_release(defer_runner *r, const char *name)
{
    return note_why(r, qb_release(r->db, name));
}

int defer__db_rollback_to(defer_runner *r, const char *name)
{
    return note_why(r, qb_rollback_to(r->db, name));
}

int defer__db_pipeline(defer_runner *r, const qb_query *const *qs, size_t n,
                       size_t *failed_at)
{
    return note_why(r, qb_pipeline(r->db, qs, n, failed_at));
}

int defer__db_in_tx(defer_runner *r)
{
    return r->db != NULL && qb_in_transaction(r->db);
}

const char *defer__db_errmsg(const defer_runner *r)
{
    return r->db != NULL ? qb_errmsg(r->db) : "no database connection";
}

/* Read one text cell of a one-row query into buf ("" for NULL). */
static int one_text(defer_runner *r, const char *sql, const char *arg,
                    char *buf, size_t len)
{
    qb_query *q = NULL;
    qb_result *res = NULL;
    qb_value v = qb_text(arg != NULL ? arg : "");
    const char *s;
    int rc = qb_query_raw_dialect(&q, qb_conn_dialect(r->db), sql,
                                  arg != NULL ? 1 : 0, &v, QB_FETCH_ONE);
    if (rc == QB_OK)
        rc = note_why(r, qb_exec(r->db, q, &res));
    qb_query_free(q);
    if (rc != QB_OK)
        return rc;
    s = qb_result_text(res, 0, 0, NULL);
    snprintf(buf, len, "%s", s != NULL ? s : "");
    qb_result_free(res);
    return QB_OK;
}

int defer__db_xact_id(defer_runner *r, char *buf, size_t len)
{
    return one_text(r, "SELECT pg_current_xact_id()::text", NULL, buf,
                       len);
}

int defer__db_xact_status(defer_runner *r, const char *xid, int *status)
{
    char s[32];
    int rc = one_text(r, "SELECT pg_xact_status(?::xid8)", xid, s,
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
