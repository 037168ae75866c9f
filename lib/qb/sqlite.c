/*
 * sqlite.c -- the qb executor on SQLite (the driver behind qb_conn.h).
 *
 * DESIGN
 *
 * One qb_db is one sqlite3 connection opened SQLITE_OPEN_NOMUTEX: the
 * caller guarantees one thread at a time, so nothing here locks.
 *
 * Statement cache.  Every statement we run (user queries and our own
 * BEGIN/COMMIT/SAVEPOINT text) goes through cache_acquire/cache_release.
 * Entries are keyed by the exact SQL bytes: a 64-bit FNV-1a hash picks a
 * bucket, then length and memcmp confirm.  Entries sit on an LRU list
 * (head = most recently acquired); when the cache is full the idle entry
 * nearest the tail is finalized.  An entry is handed to one user at a time
 * (in_use): if the same SQL is wanted again while it is out (an open cursor
 * plus an exec of the same text) a transient statement is prepared and
 * finalized on release, so no statement is ever stepped by two users.
 * Release resets AND clears bindings: bindings are SQLITE_STATIC pointers
 * into the qb_query, which may be freed as soon as the call returns.
 *
 * Hot path (qb_exec of one statement, no out, no callbacks): hash + one
 * bucket probe, bind, step, reset, clear_bindings.  No allocation, no clock
 * read (the clock is read only when a logger or hook is installed), no
 * transaction statements (a single statement is atomic on its own).
 *
 * Transactions.  Work that spans statements (a chain, a batch, a page =
 * count + rows) is wrapped in BEGIN IMMEDIATE/COMMIT when the connection is
 * in autocommit mode, otherwise in a SAVEPOINT, so it nests inside a
 * caller's transaction.  On error we roll back exactly what we opened, and
 * only if SQLite has not already rolled it back (some errors -- interrupt,
 * disk full -- end the transaction themselves; sqlite3_get_autocommit
 * tells).  A COMMIT that fails (SQLITE_BUSY leaves the transaction open) is
 * followed by ROLLBACK, so "error" always means "nothing committed here".
 *
 * Errors.  The first error of a call is recorded on the handle (extended
 * code + message); cleanup statements run "quiet" so they cannot overwrite
 * it.  Every return path of a public call passes through the observer
 * (obs_begin/obs_end), which calls the logger and the after hook exactly
 * once.
 */
#include "qb_drv.h"
#include "qb_priv.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#define QB_ERRMSG_MAX 1024
#define QB_CACHE_DEFAULT 64
#define QB_CACHE_MAX 65536
#define QB_IDENT_MAX 128

/* ---- handle ------------------------------------------------------------ */

typedef struct qb_stmt {
    struct qb_stmt *hnext;               /* bucket chain (cached only) */
    struct qb_stmt *lru_prev, *lru_next; /* cached only */
    sqlite3_stmt *stmt;
    uint64_t hash;
    size_t len;
    int in_use;
    int cached;
    char sql[];                          /* cached only: the key */
} qb_stmt;

typedef struct qb_db qb_db;

struct qb_db {
    qb_conn base;                        /* first: a qb_conn * is a qb_db * */
    sqlite3 *db;
    /* statement cache */
    qb_stmt **buckets;
    size_t nbuckets;                     /* power of two */
    size_t ncached, cap;
    qb_stmt *lru_head, *lru_tail;
    qb_cache_stats st;
};

struct qb_cursor {
    qb_db *db;
    const qb_query *q;
    qb_stmt *e;            /* NULL once finished */
    int state;             /* CUR_* or a sticky error */
    qbi_obs obs;
};

enum { CUR_OPEN = 1, CUR_ROW = 2, CUR_DONE = 3 };
enum { TX_NONE = 0, TX_BEGIN, TX_SAVEPOINT };

/* ---- errors ------------------------------------------------------------ */

static int map_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return QB_EBUSY;
    case SQLITE_INTERRUPT:
        return QB_EINTERRUPT;
    case SQLITE_CONSTRAINT:
        return QB_ECONSTRAINT;
    case SQLITE_NOMEM:
        return QB_ENOMEM;
    default:
        return QB_ESQL;
    }
}

__attribute__((format(printf, 4, 5)))
static int db_fail(qb_db *db, int rc, int sqlite_rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = qbi_vfail(&db->base, rc, sqlite_rc, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

/* Record the error SQLite just returned (src) and map it.  The handle's
 * message matches src only if nothing ran since; otherwise use the
 * generic text for the code. */
static int db_sqlite_fail(qb_db *db, int src)
{
    const char *m;
    if (sqlite3_extended_errcode(db->db) == src)
        m = sqlite3_errmsg(db->db);
    else
        m = sqlite3_errstr(src);
    return db_fail(db, map_sqlite(src), src, "%s", m);
}

/* ---- statement cache --------------------------------------------------- */

/* FNV-1a over 8-byte words (then the tail bytes): SQL keys are short and
 * trusted, so speed matters more than resistance to crafted collisions; a
 * collision only costs a memcmp. */
static uint64_t sql_hash(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL, w;
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        memcpy(&w, s + i, 8);
        h ^= w;
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 32);
}

static void lru_unlink(qb_db *db, qb_stmt *e)
{
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e->lru_next;
    else
        db->lru_head = e->lru_next;
    if (e->lru_next != NULL)
        e->lru_next->lru_prev = e->lru_prev;
    else
        db->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(qb_db *db, qb_stmt *e)
{
    e->lru_prev = NULL;
    e->lru_next = db->lru_head;
    if (db->lru_head != NULL)
        db->lru_head->lru_prev = e;
    db->lru_head = e;
    if (db->lru_tail == NULL)
        db->lru_tail = e;
}

static void bucket_unlink(qb_db *db, qb_stmt *e)
{
    qb_stmt **pp = &db->buckets[e->hash & (db->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* Finalize the least recently used idle entry; 0 if every entry is busy. */
static int cache_evict_one(qb_db *db)
{
    qb_stmt *e = db->lru_tail;
    while (e != NULL && e->in_use)
        e = e->lru_prev;
    if (e == NULL)
        return 0;
    lru_unlink(db, e);
    bucket_unlink(db, e);
    sqlite3_finalize(e->stmt);
    free(e);
    db->ncached--;
    db->st.evictions++;
    return 1;
}

/* True if s holds only whitespace and semicolons. */
static int tail_blank(const char *s, const char *end)
{
    for (; s < end && *s != '\0'; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' &&
            *s != '\f' && *s != '\v' && *s != ';')
            return 0;
    return 1;
}

/* Prepare exactly one statement from sql[0..len) (sql is NUL-terminated
 * at len).  Text after it may only be blanks or comments. */
static int prepare_one(qb_db *db, const char *sql, size_t len, int persistent,
                       sqlite3_stmt **out)
{
    sqlite3_stmt *st = NULL, *extra = NULL;
    const char *tail = NULL;
    int rc;

    *out = NULL;
    if (len >= (size_t)INT_MAX)
        return db_fail(db, QB_EINVAL, SQLITE_TOOBIG, "SQL text too long");
    /* len + 1 includes the NUL: SQLite then need not copy the text. */
    rc = sqlite3_prepare_v3(db->db, sql, (int)len + 1,
                            persistent ? SQLITE_PREPARE_PERSISTENT : 0,
                            &st, &tail);
    if (rc != SQLITE_OK)
        return db_sqlite_fail(db, rc);
    if (st == NULL)
        return db_fail(db, QB_EINVAL, 0, "empty SQL statement");
    if (tail != NULL && !tail_blank(tail, sql + len)) {
        /* Comments only are fine; a second statement is not. */
        const char *end = sql + len;
        rc = sqlite3_prepare_v2(db->db, tail, (int)(end - tail), &extra, NULL);
        sqlite3_finalize(extra);
        if (rc != SQLITE_OK || extra != NULL) {
            sqlite3_finalize(st);
            return db_fail(db, QB_EINVAL, rc,
                           "more than one SQL statement in one query");
        }
    }
    *out = st;
    return QB_OK;
}

static int cache_acquire(qb_db *db, const char *sql, size_t len, qb_stmt **out)
{
    uint64_t h;
    size_t b;
    qb_stmt *e = db->lru_head;
    int cache_it, rc;
    sqlite3_stmt *st;

    /* Fast path: the statement used last again (a loop of one insert). */
    if (e != NULL && e->len == len && !e->in_use &&
        memcmp(e->sql, sql, len) == 0) {
        db->st.hits++;
        e->in_use = 1;
        *out = e;
        return QB_OK;
    }
    h = sql_hash(sql, len);
    b = (size_t)h & (db->nbuckets - 1);
    for (e = db->buckets[b]; e != NULL; e = e->hnext)
        if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0)
            break;
    if (e != NULL && !e->in_use) {
        db->st.hits++;
        if (db->lru_head != e) {
            lru_unlink(db, e);
            lru_push_front(db, e);
        }
        e->in_use = 1;
        *out = e;
        return QB_OK;
    }
    cache_it = e == NULL && (db->ncached < db->cap || cache_evict_one(db));
    rc = prepare_one(db, sql, len, cache_it, &st);
    if (rc != QB_OK)
        return rc;
    e = malloc(sizeof *e + (cache_it ? len + 1 : 0));
    if (e == NULL) {
        sqlite3_finalize(st);
        return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    }
    memset(e, 0, sizeof *e);
    e->stmt = st;
    e->hash = h;
    e->len = len;
    e->in_use = 1;
    e->cached = cache_it;
    if (cache_it) {
        memcpy(e->sql, sql, len);
        e->sql[len] = '\0';
        e->hnext = db->buckets[b];
        db->buckets[b] = e;
        lru_push_front(db, e);
        db->ncached++;
        db->st.misses++;
    } else {
        db->st.transient++;
    }
    *out = e;
    return QB_OK;
}

static void cache_release(qb_db *db, qb_stmt *e)
{
    (void)db;
    if (e == NULL)
        return;
    if (!e->cached) {
        sqlite3_finalize(e->stmt);
        free(e);
        return;
    }
    sqlite3_reset(e->stmt);
    sqlite3_clear_bindings(e->stmt);
    e->in_use = 0;
}

static void cache_destroy(qb_db *db)
{
    qb_stmt *e = db->lru_head;
    while (e != NULL) {
        qb_stmt *n = e->lru_next;
        sqlite3_finalize(e->stmt);
        free(e);
        e = n;
    }
    db->lru_head = db->lru_tail = NULL;
    free(db->buckets);
    db->buckets = NULL;
    db->ncached = 0;
}

/* Run internal SQL text (no params, rows discarded) through the cache.
 * quiet: keep the handle's current error (used on cleanup paths). */
static int sql_run(qb_db *db, const char *sql, int quiet)
{
    char saved[QB_ERRMSG_MAX];
    int saved_code = db->base.errcode, rc = QB_OK, s;
    qb_stmt *e;

    if (quiet)
        memcpy(saved, db->base.errmsg, sizeof saved);
    rc = cache_acquire(db, sql, strlen(sql), &e);
    if (rc == QB_OK) {
        while ((s = sqlite3_step(e->stmt)) == SQLITE_ROW)
            ;
        if (s != SQLITE_DONE)
            rc = db_sqlite_fail(db, s);
        cache_release(db, e);
    }
    if (quiet) {
        memcpy(db->base.errmsg, saved, sizeof saved);
        db->base.errcode = saved_code;
    }
    return rc;
}

/* ---- binding ----------------------------------------------------------- */

/* One text for a placeholder count that does not match the values, which
 * qb_exec and migrations both report (placeholders, values). */
#define COUNT_MISMATCH "parameter count mismatch: the statement has %d " \
                       "placeholder(s), the query has %zu value(s)"

static int bind_params(qb_db *db, sqlite3_stmt *st, const qb_value *p,
                       size_t n)
{
    int want = sqlite3_bind_parameter_count(st);
    int rc = SQLITE_OK;

    if (want < 0 || (size_t)want != n)
        return db_fail(db, QB_EINVAL, SQLITE_RANGE, COUNT_MISMATCH, want, n);
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        int idx = (int)i + 1;
        switch (p[i].type) {
        case QB_V_NULL:
            rc = sqlite3_bind_null(st, idx);
            break;
        case QB_V_INT:
            rc = sqlite3_bind_int64(st, idx, p[i].u.i);
            break;
        case QB_V_BOOL:
            rc = sqlite3_bind_int64(st, idx, p[i].u.i != 0);
            break;
        case QB_V_REAL:
            rc = sqlite3_bind_double(st, idx, p[i].u.d);
            break;
        case QB_V_TEXT:
            /* A NULL pointer would bind NULL: empty text must stay text. */
            rc = sqlite3_bind_text64(st, idx,
                                     p[i].u.b.p ? p[i].u.b.p : "",
                                     p[i].u.b.n, SQLITE_STATIC, SQLITE_UTF8);
            break;
        case QB_V_BLOB:
            if (p[i].u.b.n == 0 || p[i].u.b.p == NULL)
                rc = sqlite3_bind_zeroblob(st, idx, 0);
            else
                rc = sqlite3_bind_blob64(st, idx, p[i].u.b.p, p[i].u.b.n,
                                         SQLITE_STATIC);
            break;
        default:
            return db_fail(db, QB_EINVAL, 0,
                           "parameter %zu has a type that cannot be bound "
                           "(raw SQL or subquery)", i + 1);
        }
    }
    if (rc != SQLITE_OK)
        return db_sqlite_fail(db, rc);
    return QB_OK;
}

/* ---- results ----------------------------------------------------------- */

static const char *col_name(const void *st, size_t i)
{
    return sqlite3_column_name((sqlite3_stmt *)st, (int)i);
}

static int result_set_columns(qb_db *db, qb_result *r, sqlite3_stmt *st)
{
    int nc = sqlite3_column_count(st);

    /* sqlite3_column_name returns NULL only when out of memory. */
    for (int i = 0; i < nc; i++)
        if (sqlite3_column_name(st, i) == NULL)
            return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    if (qbi_result_set_columns(r, nc > 0 ? (size_t)nc : 0, col_name, st) !=
        QB_OK)
        return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    return QB_OK;
}

static int result_append_row(qb_db *db, qb_result *r, sqlite3_stmt *st)
{
    qbi_cell *row;

    if ((size_t)sqlite3_column_count(st) != r->ncols)
        return db_fail(db, QB_ESQL, 0,
                       "statements of one chain return different columns");
    if (r->ncols == 0)
        return QB_OK;
    row = qbi_result_add_row(r);
    if (row == NULL)
        return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    for (size_t c = 0; c < r->ncols; c++) {
        int ci = (int)c;
        qbi_cell *cell = &row[c];
        const void *p;
        qb_vtype t;
        size_t n;
        switch (sqlite3_column_type(st, ci)) {
        case SQLITE_INTEGER:
            cell->type = QB_V_INT;
            cell->u.i = sqlite3_column_int64(st, ci);
            continue;
        case SQLITE_FLOAT:
            cell->type = QB_V_REAL;
            cell->u.d = sqlite3_column_double(st, ci);
            continue;
        case SQLITE_TEXT:
            t = QB_V_TEXT;
            p = sqlite3_column_text(st, ci);
            break;
        case SQLITE_BLOB:
            t = QB_V_BLOB;
            p = sqlite3_column_blob(st, ci);
            break;
        default:
            continue;
        }
        n = (size_t)sqlite3_column_bytes(st, ci);
        if ((p == NULL && n > 0) ||
            qbi_cell_set_bytes(r, cell, t, p, n) != QB_OK)
            return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    }
    return QB_OK;
}

/* ---- execution --------------------------------------------------------- */

static int check_link(qb_db *db, const qb_query *q)
{
    if (q->sql == NULL)
        return db_fail(db, QB_EINVAL, 0, "query has no SQL text");
    if (q->dialect != QB_DIALECT_SQLITE)
        return db_fail(db, QB_EDIALECT, 0,
                       "query was rendered for another SQL dialect");
    if (q->nparams > 0 && q->params == NULL)
        return db_fail(db, QB_EINVAL, 0, "query has no parameter array");
    return QB_OK;
}

static size_t sql_len(const qb_query *q)
{
    return q->sql_len ? q->sql_len : strlen(q->sql);
}

/* Run one statement of q; rows go to r per fetch (r may be NULL). */
static int run_link(qb_db *db, const qb_query *q, qb_fetch fetch, qb_result *r)
{
    qb_stmt *e;
    sqlite3_stmt *st;
    int rc, s, stop_early;
    int64_t total0 = 0;

    rc = check_link(db, q);
    if (rc != QB_OK)
        return rc;
    rc = cache_acquire(db, q->sql, sql_len(q), &e);
    if (rc != QB_OK)
        return rc;
    st = e->stmt;
    rc = bind_params(db, st, q->params, q->nparams);
    if (rc == QB_OK && r != NULL) {
        if (r->names == NULL)
            rc = result_set_columns(db, r, st);
        total0 = sqlite3_total_changes64(db->db);
    }
    /* A reader fetched ONE has nothing left to do after its first row; a
     * writer (e.g. INSERT ... RETURNING) must still run to completion. */
    stop_early = fetch == QB_FETCH_ONE && sqlite3_stmt_readonly(st);
    while (rc == QB_OK) {
        s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            rc = db_sqlite_fail(db, s);
            break;
        }
        if (r != NULL && (fetch == QB_FETCH_ALL ||
                          (fetch == QB_FETCH_ONE && r->nrows == 0)))
            rc = result_append_row(db, r, st);
        if (stop_early)
            break;
    }
    if (rc == QB_OK && r != NULL) {
        /* sqlite3_changes64 keeps the last DML's count across SELECTs and
         * DDL; the total-changes delta says whether this statement
         * changed anything at all. */
        if (sqlite3_total_changes64(db->db) != total0)
            r->changes += sqlite3_changes64(db->db);
        r->last_rowid = sqlite3_last_insert_rowid(db->db);
    }
    cache_release(db, e);
    return rc;
}

/* Open our own transaction scope: BEGIN IMMEDIATE in autocommit mode,
 * else a savepoint named sp. */
static int tx_open(qb_db *db, const char *sp, int *mode)
{
    char buf[QB_IDENT_MAX + 16];
    int rc;
    if (sqlite3_get_autocommit(db->db)) {
        rc = sql_run(db, "BEGIN IMMEDIATE", 0);
        *mode = rc == QB_OK ? TX_BEGIN : TX_NONE;
        return rc;
    }
    snprintf(buf, sizeof buf, "SAVEPOINT %s", sp);
    rc = sql_run(db, buf, 0);
    *mode = rc == QB_OK ? TX_SAVEPOINT : TX_NONE;
    return rc;
}

/* Close the scope tx_open made: commit/release if rc is QB_OK, else roll
 * back.  Returns the final status (a failed COMMIT is rolled back). */
static int tx_close(qb_db *db, int mode, const char *sp, int rc)
{
    char buf[QB_IDENT_MAX + 24];

    if (mode == TX_NONE)
        return rc;
    if (rc == QB_OK) {
        if (mode == TX_BEGIN) {
            rc = sql_run(db, "COMMIT", 0);
        } else {
            snprintf(buf, sizeof buf, "RELEASE %s", sp);
            rc = sql_run(db, buf, 0);
        }
        if (rc == QB_OK)
            return QB_OK;
    }
    if (mode == TX_BEGIN) {
        if (!sqlite3_get_autocommit(db->db))
            sql_run(db, "ROLLBACK", 1);
    } else if (!sqlite3_get_autocommit(db->db)) {
        snprintf(buf, sizeof buf, "ROLLBACK TO %s", sp);
        sql_run(db, buf, 1);
        snprintf(buf, sizeof buf, "RELEASE %s", sp);
        sql_run(db, buf, 1);
    }
    return rc;
}

/* q and its chain; *out (if out) receives a result on success only. */
static int run_query(qb_db *db, const qb_query *q, qb_result **out)
{
    qb_result *r = NULL;
    int rc, mode;

    if (out != NULL) {
        r = qbi_result_new();
        if (r == NULL)
            return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    }
    if (q->next == NULL) {
        rc = run_link(db, q, q->fetch, r);
    } else {
        rc = tx_open(db, "qb_chain", &mode);
        for (const qb_query *l = q; rc == QB_OK && l != NULL; l = l->next)
            rc = run_link(db, l, q->fetch, r);
        rc = tx_close(db, mode, "qb_chain", rc);
    }
    if (rc != QB_OK) {
        qb_result_free(r);
        r = NULL;
    }
    if (out != NULL)
        *out = r;
    return rc;
}

/* One observed execution: hooks, logger, run. */
static int exec_observed(qb_db *db, const qb_query *q, qb_result **out)
{
    qbi_obs o;
    qb_result *r = NULL;
    int rc = qbi_obs_begin(&db->base, q, &o);
    if (rc == QB_OK)
        rc = run_query(db, q, out ? &r : NULL);
    qbi_obs_end(&db->base, q, &o, rc, r);
    if (out != NULL)
        *out = r;
    return rc;
}

static int sq_exec(qb_conn *c_, const qb_query *q, qb_result **out)
{
    qb_db *db = (qb_db *)c_;
    if (out != NULL)
        *out = NULL;
    if (db == NULL)
        return QB_EINVAL;
    if (q == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL query");
    return exec_observed(db, q, out);
}

static int sq_explain(qb_conn *c_, const qb_query *q, qb_result **out)
{
    qb_db *db = (qb_db *)c_;
    struct qb_query v;
    if (out != NULL)
        *out = NULL;
    if (db == NULL)
        return QB_EINVAL;
    if (q == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL query");
    v = *q;
    v.fetch = QB_FETCH_ALL;
    return exec_observed(db, &v, out);
}

/* A view of q that runs its count statement. */
static int count_view(qb_db *db, const qb_query *q, struct qb_query *v)
{
    if (q->count_sql == NULL)
        return db_fail(db, QB_EINVAL, 0, "query has no count statement");
    *v = *q;
    v->sql = q->count_sql;
    v->sql_len = strlen(q->count_sql);
    v->count_sql = NULL;
    v->next = NULL;
    v->fetch = QB_FETCH_ONE;
    v->kind = QB_KIND_SELECT;
    return QB_OK;
}

static int count_run(qb_db *db, const qb_query *v, int64_t *total)
{
    qb_result *r = NULL;
    int rc = exec_observed(db, v, &r);
    if (rc == QB_OK)
        *total = qb_result_int(r, 0, 0);
    qb_result_free(r);
    return rc;
}

static int sq_count(qb_conn *c_, const qb_query *q, int64_t *total)
{
    qb_db *db = (qb_db *)c_;
    struct qb_query v;
    int rc;
    if (total != NULL)
        *total = 0;
    if (db == NULL)
        return QB_EINVAL;
    if (q == NULL || total == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL query or output");
    rc = count_view(db, q, &v);
    if (rc != QB_OK)
        return rc;
    return count_run(db, &v, total);
}

static int sq_paginate(qb_conn *c_, const qb_query *q, int64_t page,
                       int64_t per_page, qb_result **out,
                       qb_pagination *info)
{
    qb_db *db = (qb_db *)c_;
    struct qb_query cv, dv;
    int64_t total = 0;
    int rc, mode = TX_NONE;

    if (out != NULL)
        *out = NULL;
    if (info != NULL)
        memset(info, 0, sizeof *info);
    if (db == NULL)
        return QB_EINVAL;
    if (q == NULL || out == NULL || info == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL query or output");
    if (page < 1)
        return db_fail(db, QB_ECONFIG, 0, "Invalid page value: %lld. Page "
                       "must be an integer >= 1.", (long long)page);
    if (per_page < 1)
        return db_fail(db, QB_ECONFIG, 0, "Invalid perPage value: %lld. "
                       "perPage must be an integer >= 1.",
                       (long long)per_page);
    rc = count_view(db, q, &cv);
    if (rc != QB_OK)
        return rc;
    dv = *q;
    dv.fetch = QB_FETCH_ALL;

    /* A deferred savepoint: count and rows read one snapshot. */
    rc = sql_run(db, "SAVEPOINT qb_paginate", 0);
    if (rc == QB_OK)
        mode = TX_SAVEPOINT;
    if (rc == QB_OK)
        rc = count_run(db, &cv, &total);
    if (rc == QB_OK)
        rc = exec_observed(db, &dv, out);
    rc = tx_close(db, mode, "qb_paginate", rc);
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

/* ---- batches ----------------------------------------------------------- */

static int sq_batch(qb_conn *c_, const qb_query *const *qs, size_t n,
                    qb_result **results, size_t *failed_at)
{
    qb_db *db = (qb_db *)c_;
    size_t i, failed = n;
    int rc, mode;

    if (failed_at != NULL)
        *failed_at = n;
    if (results != NULL)
        for (i = 0; i < n; i++)
            results[i] = NULL;
    if (db == NULL)
        return QB_EINVAL;
    if (n == 0)
        return QB_OK;
    if (qs == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL query array");
    for (i = 0; i < n; i++)
        if (qs[i] == NULL) {
            if (failed_at != NULL)
                *failed_at = i;
            return db_fail(db, QB_EINVAL, 0, "batch query %zu is NULL", i);
        }

    rc = tx_open(db, "qb_batch", &mode);
    if (rc != QB_OK) {
        failed = 0;
        qbi_prefix(&db->base, "batch: cannot open a transaction");
    }
    for (i = 0; rc == QB_OK && i < n; i++) {
        rc = exec_observed(db, qs[i], results ? &results[i] : NULL);
        if (rc != QB_OK) {
            failed = i;
            qbi_prefix(&db->base, "batch query %zu", i);
        }
    }
    rc = tx_close(db, mode, "qb_batch", rc);
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

/* ---- cursor ------------------------------------------------------------ */

/* Finish once: give the statement back, then log. */
static void cursor_finish(qb_cursor *c, int rc)
{
    cache_release(c->db, c->e);
    c->e = NULL;
    c->state = rc == QB_OK ? CUR_DONE : rc;
    qbi_obs_end(&c->db->base, c->q, &c->obs, rc, NULL);
}

static int sq_cursor_open(qb_conn *c_, const qb_query *q, qb_cursor **out)
{
    qb_db *db = (qb_db *)c_;
    qb_cursor *c = NULL;
    qb_stmt *e = NULL;
    qbi_obs o;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (db == NULL)
        return QB_EINVAL;
    if (q == NULL || out == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL query or output");
    rc = qbi_obs_begin(&db->base, q, &o);
    if (rc == QB_OK && q->next != NULL)
        rc = db_fail(db, QB_EINVAL, 0, "a cursor cannot run a chain");
    if (rc == QB_OK)
        rc = check_link(db, q);
    if (rc == QB_OK)
        rc = cache_acquire(db, q->sql, sql_len(q), &e);
    if (rc == QB_OK)
        rc = bind_params(db, e->stmt, q->params, q->nparams);
    if (rc == QB_OK && (c = calloc(1, sizeof *c)) == NULL)
        rc = db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    if (rc != QB_OK) {
        cache_release(db, e);
        qbi_obs_end(&db->base, q, &o, rc, NULL);
        return rc;
    }
    c->db = db;
    c->q = q;
    c->e = e;
    c->state = CUR_OPEN;
    c->obs = o;
    *out = c;
    return QB_OK;
}

QB_API int qb_cursor_next(qb_cursor *c)
{
    int s;
    if (c == NULL)
        return QB_EINVAL;
    if (c->state == CUR_DONE)
        return QB_EDONE;
    if (c->state < 0)
        return c->state;
    s = sqlite3_step(c->e->stmt);
    if (s == SQLITE_ROW) {
        c->state = CUR_ROW;
        return QB_OK;
    }
    if (s == SQLITE_DONE) {
        cursor_finish(c, QB_OK);
        return QB_EDONE;
    }
    cursor_finish(c, db_sqlite_fail(c->db, s));
    return c->state;
}

QB_API void qb_cursor_close(qb_cursor *c)
{
    if (c == NULL)
        return;
    if (c->e != NULL)
        cursor_finish(c, QB_OK);
    free(c);
}

static sqlite3_stmt *cur_row(const qb_cursor *c, size_t col)
{
    if (c == NULL || c->state != CUR_ROW ||
        col >= (size_t)sqlite3_column_count(c->e->stmt))
        return NULL;
    return c->e->stmt;
}

QB_API size_t qb_cursor_cols(const qb_cursor *c)
{
    if (c == NULL || c->e == NULL)
        return 0;
    return (size_t)sqlite3_column_count(c->e->stmt);
}

QB_API const char *qb_cursor_colname(const qb_cursor *c, size_t col)
{
    if (col >= qb_cursor_cols(c))
        return NULL;
    return sqlite3_column_name(c->e->stmt, (int)col);
}

QB_API int qb_cursor_colindex(const qb_cursor *c, const char *name)
{
    size_t n = qb_cursor_cols(c);
    if (name == NULL)
        return QB_EINVAL;
    for (size_t i = 0; i < n && i < (size_t)INT_MAX; i++) {
        const char *cn = sqlite3_column_name(c->e->stmt, (int)i);
        if (cn != NULL && strcmp(cn, name) == 0)
            return (int)i;
    }
    return QB_EINVAL;
}

QB_API qb_vtype qb_cursor_type(const qb_cursor *c, size_t col)
{
    sqlite3_stmt *st = cur_row(c, col);
    if (st == NULL)
        return QB_V_NULL;
    switch (sqlite3_column_type(st, (int)col)) {
    case SQLITE_INTEGER: return QB_V_INT;
    case SQLITE_FLOAT: return QB_V_REAL;
    case SQLITE_TEXT: return QB_V_TEXT;
    case SQLITE_BLOB: return QB_V_BLOB;
    default: return QB_V_NULL;
    }
}

QB_API int qb_cursor_is_null(const qb_cursor *c, size_t col)
{
    return qb_cursor_type(c, col) == QB_V_NULL;
}

QB_API int64_t qb_cursor_int(const qb_cursor *c, size_t col)
{
    sqlite3_stmt *st = cur_row(c, col);
    return st ? sqlite3_column_int64(st, (int)col) : 0;
}

QB_API double qb_cursor_real(const qb_cursor *c, size_t col)
{
    sqlite3_stmt *st = cur_row(c, col);
    return st ? sqlite3_column_double(st, (int)col) : 0.0;
}

QB_API const char *qb_cursor_text(const qb_cursor *c, size_t col, size_t *len)
{
    sqlite3_stmt *st = cur_row(c, col);
    const char *p = NULL;
    if (st != NULL && sqlite3_column_type(st, (int)col) != SQLITE_NULL)
        p = (const char *)sqlite3_column_text(st, (int)col);
    if (len != NULL)
        *len = p ? (size_t)sqlite3_column_bytes(st, (int)col) : 0;
    return p;
}

QB_API const void *qb_cursor_blob(const qb_cursor *c, size_t col, size_t *len)
{
    static const char empty[1];
    sqlite3_stmt *st = cur_row(c, col);
    const void *p = NULL;
    size_t n = 0;
    if (st != NULL && sqlite3_column_type(st, (int)col) != SQLITE_NULL) {
        p = sqlite3_column_blob(st, (int)col);
        n = (size_t)sqlite3_column_bytes(st, (int)col);
        if (p == NULL)   /* empty blob: non-NULL, as for results */
            p = empty;
    }
    if (len != NULL)
        *len = n;
    return p;
}

/* ---- migrations -------------------------------------------------------- */

static void qview(struct qb_query *v, const char *sql, const qb_value *params,
                  size_t n, qb_fetch fetch, qb_kind kind)
{
    memset(v, 0, sizeof *v);
    v->sql = (char *)sql;            /* views never write through these */
    v->sql_len = strlen(sql);
    v->params = (qb_value *)params;
    v->nparams = n;
    v->fetch = fetch;
    v->kind = kind;
    v->dialect = QB_DIALECT_SQLITE;
}

static int mig_table(qb_db *db, const char **table)
{
    if (*table == NULL)
        *table = "migrations";
    if (!qb_ident_valid(*table) || strlen(*table) > QB_IDENT_MAX)
        return db_fail(db, QB_EINVAL, 0, "invalid migrations table name");
    return QB_OK;
}

static int mig_init(qb_db *db, const char *table)
{
    char sql[QB_IDENT_MAX + 160];
    struct qb_query v;
    snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s ( id INTEGER "
             "PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, applied_at "
             "TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)", table);
    qview(&v, sql, NULL, 0, QB_FETCH_NONE, QB_KIND_RAW);
    return exec_observed(db, &v, NULL);
}

static int mig_applied(qb_db *db, const char *table, qb_result **out)
{
    char sql[QB_IDENT_MAX + 48];
    struct qb_query v;
    int rc = mig_init(db, table);
    if (rc != QB_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY id", table);
    qview(&v, sql, NULL, 0, QB_FETCH_ALL, QB_KIND_SELECT);
    return exec_observed(db, &v, out);
}

static int sq_migrations_applied(qb_conn *c_, const char *table,
                                 qb_result **out)
{
    qb_db *db = (qb_db *)c_;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (db == NULL)
        return QB_EINVAL;
    if (out == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL output");
    rc = mig_table(db, &table);
    if (rc != QB_OK)
        return rc;
    return mig_applied(db, table, out);
}

static int mig_unapplied(qb_db *db, const char *table,
                         const qb_migration *list, size_t n, size_t *idx,
                         size_t *nidx)
{
    qb_result *done = NULL;
    int rc, col;
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (list[i].name == NULL || list[i].sql == NULL)
            return db_fail(db, QB_EINVAL, 0,
                           "migration %zu has no name or no SQL", i);
    rc = mig_applied(db, table, &done);
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

static int sq_migrations_unapplied(qb_conn *c_, const char *table,
                                   const qb_migration *list, size_t n,
                                   size_t *idx, size_t *nidx)
{
    qb_db *db = (qb_db *)c_;
    int rc;
    if (nidx != NULL)
        *nidx = 0;
    if (db == NULL)
        return QB_EINVAL;
    if (nidx == NULL || (n > 0 && (list == NULL || idx == NULL)))
        return db_fail(db, QB_EINVAL, 0, "NULL migration list or output");
    rc = mig_table(db, &table);
    if (rc != QB_OK)
        return rc;
    return mig_unapplied(db, table, list, n, idx, nidx);
}

/* Run a script statement by statement (uncached: it runs once).  Nothing
 * is bound, so a statement with a placeholder (?, ?N, :x, @x, $x) would
 * run with NULL in it: it is refused as qb_exec refuses a count mismatch
 * (bind_params: QB_EINVAL, the same message), naming the statement. */
static int run_script(qb_db *db, const char *sql)
{
    const char *p = sql, *end = sql + strlen(sql), *tail;
    sqlite3_stmt *st;
    int s, rc = QB_OK, np;
    size_t k = 0;

    while (rc == QB_OK && p < end) {
        if (end - p >= INT_MAX)
            return db_fail(db, QB_EINVAL, SQLITE_TOOBIG, "SQL text too long");
        st = NULL;
        tail = NULL;
        s = sqlite3_prepare_v2(db->db, p, (int)(end - p), &st, &tail);
        if (s != SQLITE_OK)
            return db_sqlite_fail(db, s);
        if (st != NULL) {
            k++;
            np = sqlite3_bind_parameter_count(st);
            if (np > 0) {
                char where[QBI_EXCERPT_MAX + 64];
                size_t n = (size_t)(end - sql);
                size_t at = qbi_sql_skip_blank(sql, n, (size_t)(p - sql),
                                               QB_DIALECT_SQLITE);
                size_t to = tail != NULL && tail > p ? (size_t)(tail - sql)
                                                     : n;
                qbi_sql_stmt_where(where, sizeof where, sql, at, to, k);
                sqlite3_finalize(st);
                return db_fail(db, QB_EINVAL, SQLITE_RANGE,
                               "%s: " COUNT_MISMATCH, where, np, (size_t)0);
            }
            while ((s = sqlite3_step(st)) == SQLITE_ROW)
                ;
            if (s != SQLITE_DONE)
                rc = db_sqlite_fail(db, s);
            sqlite3_finalize(st);
        }
        if (tail == NULL || tail <= p)
            break;
        p = tail;
    }
    return rc;
}

/* Bind name to a cached "<...> ?" statement and step it; *row tells
 * whether it returned a row. */
static int run_named(qb_db *db, const char *sql, const char *name, int *row)
{
    qb_value v;
    qb_stmt *e;
    int rc, s;

    memset(&v, 0, sizeof v);
    v.type = QB_V_TEXT;
    v.u.b.p = name;
    v.u.b.n = strlen(name);
    rc = cache_acquire(db, sql, strlen(sql), &e);
    if (rc != QB_OK)
        return rc;
    rc = bind_params(db, e->stmt, &v, 1);
    if (rc == QB_OK) {
        s = sqlite3_step(e->stmt);
        if (row != NULL)
            *row = s == SQLITE_ROW;
        if (s == SQLITE_ROW)
            s = SQLITE_DONE;    /* one row is all we ask for */
        if (s != SQLITE_DONE)
            rc = db_sqlite_fail(db, s);
    }
    cache_release(db, e);
    return rc;
}

/* One migration in its own transaction.  *did: committed by us. */
static int mig_one(qb_db *db, const char *table, const qb_migration *m,
                   int *did)
{
    char sel[QB_IDENT_MAX + 48], ins[QB_IDENT_MAX + 48];
    int rc, applied = 0;

    *did = 0;
    snprintf(sel, sizeof sel, "SELECT 1 FROM %s WHERE name = ?", table);
    snprintf(ins, sizeof ins, "INSERT INTO %s (name) VALUES (?)", table);
    rc = sql_run(db, "BEGIN IMMEDIATE", 0);
    if (rc != QB_OK)
        return rc;
    /* Re-check under the write lock: another process may have won. */
    rc = run_named(db, sel, m->name, &applied);
    if (rc == QB_OK && !applied) {
        rc = run_script(db, m->sql);
        /* A script that ends our transaction would record its name outside
         * it (and may have committed half of itself): refuse it. */
        if (rc == QB_OK && sqlite3_get_autocommit(db->db))
            return db_fail(db, QB_EINVAL, 0, "migration SQL must not end "
                           "the transaction (COMMIT/ROLLBACK/END)");
        if (rc == QB_OK)
            rc = run_named(db, ins, m->name, NULL);
    }
    if (rc == QB_OK) {
        rc = sql_run(db, "COMMIT", 0);
        if (rc == QB_OK) {
            *did = !applied;
            return QB_OK;
        }
    }
    if (!sqlite3_get_autocommit(db->db))
        sql_run(db, "ROLLBACK", 1);
    return rc;
}

static int sq_migrations_apply(qb_conn *c_, const char *table,
                               const qb_migration *list, size_t n,
                               size_t *applied, size_t *failed_at)
{
    qb_db *db = (qb_db *)c_;
    size_t *idx = NULL, k = 0, count = 0;
    int rc;

    if (applied != NULL)
        *applied = 0;
    if (failed_at != NULL)
        *failed_at = n;
    if (db == NULL)
        return QB_EINVAL;
    if (n > 0 && list == NULL)
        return db_fail(db, QB_EINVAL, 0, "NULL migration list");
    rc = mig_table(db, &table);
    if (rc != QB_OK)
        return rc;
    if (!sqlite3_get_autocommit(db->db))
        return db_fail(db, QB_EMISUSE, 0,
                       "migrations cannot run inside an open transaction");
    if (n == 0)
        return QB_OK;
    if (n > SIZE_MAX / sizeof *idx)
        return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    idx = malloc(n * sizeof *idx);
    if (idx == NULL)
        return db_fail(db, QB_ENOMEM, SQLITE_NOMEM, "out of memory");
    rc = mig_unapplied(db, table, list, n, idx, &k);
    for (size_t j = 0; rc == QB_OK && j < k; j++) {
        const qb_migration *m = &list[idx[j]];
        struct qb_query v;
        qb_value name;
        qbi_obs o;
        int did = 0;

        memset(&name, 0, sizeof name);
        name.type = QB_V_TEXT;
        name.flags = QB_VF_BORROWED;
        name.u.b.p = m->name;
        name.u.b.n = strlen(m->name);
        qview(&v, m->sql, &name, 1, QB_FETCH_NONE, QB_KIND_RAW);
        rc = qbi_obs_begin(&db->base, &v, &o);
        if (rc == QB_OK)
            rc = mig_one(db, table, m, &did);
        if (rc != QB_OK) {
            qbi_prefix(&db->base, "migration '%s'", m->name);
            if (failed_at != NULL)
                *failed_at = idx[j];
        }
        qbi_obs_end(&db->base, &v, &o, rc, NULL);
        count += (size_t)did;
    }
    free(idx);
    if (applied != NULL)
        *applied = count;
    return rc;
}

/* ---- transactions ------------------------------------------------------ */

static int sq_begin(qb_conn *c_)
{
    qb_db *db = (qb_db *)c_;
    return db ? sql_run(db, "BEGIN IMMEDIATE", 0) : QB_EINVAL;
}

static int sq_commit(qb_conn *c_)
{
    qb_db *db = (qb_db *)c_;
    return db ? sql_run(db, "COMMIT", 0) : QB_EINVAL;
}

static int sq_rollback(qb_conn *c_)
{
    qb_db *db = (qb_db *)c_;
    return db ? sql_run(db, "ROLLBACK", 0) : QB_EINVAL;
}

/* Savepoint names are pasted into SQL: plain identifiers only. */
static int sp_sql(qb_db *db, char *buf, size_t len, const char *verb,
                  const char *name)
{
    if (name == NULL || !qb_ident_valid(name) || strchr(name, '.') != NULL ||
        strlen(name) > QB_IDENT_MAX)
        return db_fail(db, QB_EINVAL, 0, "invalid savepoint name");
    snprintf(buf, len, "%s %s", verb, name);
    return QB_OK;
}

static int sq_savepoint(qb_conn *c_, const char *name)
{
    qb_db *db = (qb_db *)c_;
    char buf[QB_IDENT_MAX + 24];
    int rc;
    if (db == NULL)
        return QB_EINVAL;
    rc = sp_sql(db, buf, sizeof buf, "SAVEPOINT", name);
    return rc == QB_OK ? sql_run(db, buf, 0) : rc;
}

static int sq_release(qb_conn *c_, const char *name)
{
    qb_db *db = (qb_db *)c_;
    char buf[QB_IDENT_MAX + 24];
    int rc;
    if (db == NULL)
        return QB_EINVAL;
    rc = sp_sql(db, buf, sizeof buf, "RELEASE", name);
    return rc == QB_OK ? sql_run(db, buf, 0) : rc;
}

static int sq_rollback_to(qb_conn *c_, const char *name)
{
    qb_db *db = (qb_db *)c_;
    char buf[QB_IDENT_MAX + 24];
    int rc;
    if (db == NULL)
        return QB_EINVAL;
    rc = sp_sql(db, buf, sizeof buf, "ROLLBACK TO", name);
    if (rc == QB_OK)
        rc = sql_run(db, buf, 0);
    /* ROLLBACK TO keeps the savepoint open; the contract also releases. */
    if (rc == QB_OK) {
        snprintf(buf, sizeof buf, "RELEASE %s", name);
        rc = sql_run(db, buf, 0);
    }
    return rc;
}

static int64_t sq_changes(const qb_conn *c_)
{
    const qb_db *db = (const qb_db *)c_;
    return db ? sqlite3_changes64(db->db) : 0;
}

static int64_t sq_last_insert_rowid(const qb_conn *c_)
{
    const qb_db *db = (const qb_db *)c_;
    return db ? sqlite3_last_insert_rowid(db->db) : 0;
}

/* ---- open / close ------------------------------------------------------ */

static void *sq_handle(qb_conn *c_)
{
    qb_db *db = (qb_db *)c_;
    return db ? db->db : NULL;
}

static void sq_db_cache_stats(const qb_conn *c_, qb_cache_stats *out)
{
    const qb_db *db = (const qb_db *)c_;
    if (db == NULL || out == NULL)
        return;
    *out = db->st;
    out->size = db->ncached;
    out->capacity = db->cap;
}

static int word_in(const char *w, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcasecmp(w, *set) == 0)
            return 1;
    return 0;
}

/* Run a pragma; copy its first result column into got (if given). */
static int pragma(qb_db *db, const char *sql, char *got, size_t gotlen)
{
    sqlite3_stmt *st = NULL;
    int s = sqlite3_prepare_v2(db->db, sql, -1, &st, NULL);
    if (s != SQLITE_OK)
        return db_sqlite_fail(db, s);
    s = sqlite3_step(st);
    if (s == SQLITE_ROW && got != NULL) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(got, gotlen, "%s", t ? (const char *)t : "");
    }
    while (s == SQLITE_ROW)
        s = sqlite3_step(st);
    if (s != SQLITE_DONE) {
        int rc = db_sqlite_fail(db, s);
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    return QB_OK;
}

static int db_setup(qb_db *db, const char *jm, const char *sync, int busy,
                    int ro)
{
    char sql[64], got[32];
    const char *file;
    int rc;

    sqlite3_extended_result_codes(db->db, 1);
    if (busy > 0 && sqlite3_busy_timeout(db->db, busy) != SQLITE_OK)
        return db_sqlite_fail(db, sqlite3_extended_errcode(db->db));
    if (!ro) {
        snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", jm);
        rc = pragma(db, sql, got, sizeof got);
        if (rc != QB_OK)
            return rc;
        /* In-memory and temp databases only do MEMORY (or OFF). */
        file = sqlite3_db_filename(db->db, "main");
        if (strcasecmp(got, jm) != 0 && file != NULL && *file != '\0')
            return db_fail(db, QB_ESQL, 0, "journal_mode %s not applied "
                           "(database reports %s)", jm, got);
    }
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", sync);
    rc = pragma(db, sql, NULL, 0);
    if (rc == QB_OK)
        rc = pragma(db, "PRAGMA foreign_keys=ON", NULL, 0);
    return rc;
}

static void sq_db_close(qb_conn *c_);

static int sq_open(qb_conn **out, const char *path,
                   const qb_conn_config *cfg, char *errbuf, size_t errbuf_len)
{
    static const char *const journal_modes[] = {
        "DELETE", "TRUNCATE", "PERSIST", "MEMORY", "WAL", "OFF", NULL };
    static const char *const sync_modes[] = {
        "OFF", "NORMAL", "FULL", "EXTRA", NULL };
    const char *jm = "WAL", *sync = "NORMAL";
    int busy = 5000, ro = 0, rc, flags;
    size_t cap = QB_CACHE_DEFAULT, nb;
    qb_db *db;

    if (errbuf != NULL && errbuf_len > 0)
        errbuf[0] = '\0';
    if (out != NULL)
        *out = NULL;
#define OPEN_FAIL(code, ...) do {                                        \
        if (errbuf != NULL && errbuf_len > 0)                            \
            snprintf(errbuf, errbuf_len, __VA_ARGS__);                   \
        return (code);                                                   \
    } while (0)
    if (out == NULL || path == NULL)
        OPEN_FAIL(QB_EINVAL, "NULL output or path");
    if (cfg != NULL) {
        if (cfg->journal_mode != NULL)
            jm = cfg->journal_mode;
        if (cfg->synchronous != NULL)
            sync = cfg->synchronous;
        busy = cfg->busy_timeout_ms;
        ro = cfg->readonly != 0;
        if (cfg->stmt_cache_size != 0)
            cap = cfg->stmt_cache_size;
    }
    if (!word_in(jm, journal_modes))
        OPEN_FAIL(QB_EINVAL, "invalid journal_mode '%s'", jm);
    if (!word_in(sync, sync_modes))
        OPEN_FAIL(QB_EINVAL, "invalid synchronous '%s'", sync);
    if (busy < 0)
        OPEN_FAIL(QB_EINVAL, "busy_timeout_ms must be >= 0");
    if (cap > QB_CACHE_MAX)
        OPEN_FAIL(QB_EINVAL, "stmt_cache_size must be <= %d", QB_CACHE_MAX);

    db = calloc(1, sizeof *db);
    if (db == NULL)
        OPEN_FAIL(QB_ENOMEM, "out of memory");
    for (nb = 16; nb < cap * 2; nb *= 2)
        ;
    db->buckets = calloc(nb, sizeof *db->buckets);
    if (db->buckets == NULL) {
        free(db);
        OPEN_FAIL(QB_ENOMEM, "out of memory");
    }
    qbi_conn_init(&db->base, &qbi_sqlite_driver);
    db->nbuckets = nb;
    db->cap = cap;
    snprintf(db->base.errmsg, sizeof db->base.errmsg, "not an error");

    flags = (ro ? SQLITE_OPEN_READONLY
                : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
            SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    rc = sqlite3_open_v2(path, &db->db, flags, NULL);
    if (rc != SQLITE_OK) {
        const char *m = db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc);
        if (errbuf != NULL && errbuf_len > 0)
            snprintf(errbuf, errbuf_len, "cannot open %s: %s", path, m);
        rc = map_sqlite(rc) == QB_ENOMEM ? QB_ENOMEM : QB_ESQL;
        sq_db_close(&db->base);
        return rc;
    }
    rc = db_setup(db, jm, sync, busy, ro);
    if (rc != QB_OK) {
        if (errbuf != NULL && errbuf_len > 0)
            snprintf(errbuf, errbuf_len, "%s: %s", path, db->base.errmsg);
        sq_db_close(&db->base);
        return rc;
    }
#undef OPEN_FAIL
    *out = &db->base;
    return QB_OK;
}

static void sq_db_close(qb_conn *c_)
{
    qb_db *db = (qb_db *)c_;
    if (db == NULL)
        return;
    cache_destroy(db);
    /* _v2: a statement the caller leaked (open cursor) cannot make the
     * close fail; the connection goes away with it. */
    sqlite3_close_v2(db->db);
    free(db);
}

static int sq_in_transaction(const qb_conn *c_)
{
    return !sqlite3_get_autocommit(((const qb_db *)c_)->db);
}

static int sq_tx(qb_conn *c, qbi_tx_op op, const char *name)
{
    switch (op) {
    case QBI_TX_BEGIN:
        return sq_begin(c);
    case QBI_TX_COMMIT:
        return sq_commit(c);
    case QBI_TX_ROLLBACK:
        return sq_rollback(c);
    case QBI_TX_SAVEPOINT:
        return sq_savepoint(c, name);
    case QBI_TX_RELEASE:
        return sq_release(c, name);
    case QBI_TX_ROLLBACK_TO:
        return sq_rollback_to(c, name);
    }
    return QB_EINVAL;
}

const qbi_driver qbi_sqlite_driver = {
    .name = "SQLite",
    .engine = QB_ENGINE_SQLITE,
    .dialect = QB_DIALECT_SQLITE,
    .open = sq_open,
    .close = sq_db_close,
    .handle = sq_handle,
    .in_transaction = sq_in_transaction,
    .exec = sq_exec,
    .count = sq_count,
    .paginate = sq_paginate,
    .explain = sq_explain,
    .batch = sq_batch,
    .tx = sq_tx,
    .changes = sq_changes,
    .last_rowid = sq_last_insert_rowid,
    .cache_stats = sq_db_cache_stats,
    .cursor_open = sq_cursor_open,
    .mig_applied = sq_migrations_applied,
    .mig_unapplied = sq_migrations_unapplied,
    .mig_apply = sq_migrations_apply,
};
