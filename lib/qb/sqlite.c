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
 * Transactions.  conn.c opens and closes our own scopes (BEGIN IMMEDIATE
 * when idle, else a SAVEPOINT) through sq_run_sql; what is SQLite's here:
 * sqlite3_get_autocommit says whether a transaction is open (some errors
 * -- interrupt, disk full -- end it themselves), a SAVEPOINT outside a
 * transaction opens a deferred one (qb_paginate's snapshot), and a COMMIT
 * that fails with SQLITE_BUSY leaves the transaction open.
 *
 * Errors.  The first error of a call is recorded on the handle (extended
 * code + message).  A cursor passes through the observer itself
 * (qbi_obs_begin at open, qbi_obs_end once when it finishes).
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

#define QB_CACHE_DEFAULT 64
#define QB_CACHE_MAX 65536

/* ---- handle ------------------------------------------------------------ */

typedef struct qb_stmt {
    qbi_lru lru;                         /* first; cached only */
    struct qb_stmt *hnext;               /* bucket chain (cached only) */
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
    /* statement cache (its LRU list and counters: base.lru, base.cache) */
    qb_stmt **buckets;
    size_t nbuckets;                     /* power of two */
};

struct qb_cursor {
    qb_db *db;
    const qb_query *q;
    qb_stmt *e;            /* NULL once finished */
    int state;             /* CUR_* or a sticky error */
    qbi_obs obs;
};

enum { CUR_OPEN = 1, CUR_ROW = 2, CUR_DONE = 3 };

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

#define db_fail(db, rc, code, ...) \
    qbi_fail(&(db)->base, rc, code, NULL, __VA_ARGS__)

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

/* The entry of LRU node n, NULL for the list's sentinel. */
static qb_stmt *lru_entry(qb_db *db, qbi_lru *n)
{
    return n == &db->base.lru ? NULL : (qb_stmt *)n;
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
    qb_stmt *e = lru_entry(db, db->base.lru.prev);
    while (e != NULL && e->in_use)
        e = lru_entry(db, e->lru.prev);
    if (e == NULL)
        return 0;
    qbi_lru_unlink(&e->lru);
    bucket_unlink(db, e);
    sqlite3_finalize(e->stmt);
    free(e);
    db->base.cache.size--;
    db->base.cache.evictions++;
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
    qb_stmt *e = lru_entry(db, db->base.lru.next);
    int cache_it, rc;
    sqlite3_stmt *st;

    /* Fast path: the statement used last again (a loop of one insert). */
    if (e != NULL && e->len == len && !e->in_use &&
        memcmp(e->sql, sql, len) == 0) {
        db->base.cache.hits++;
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
        db->base.cache.hits++;
        qbi_lru_unlink(&e->lru);
        qbi_lru_push_front(&db->base.lru, &e->lru);
        e->in_use = 1;
        *out = e;
        return QB_OK;
    }
    cache_it = e == NULL && (db->base.cache.size < db->base.cache.capacity ||
                             cache_evict_one(db));
    rc = prepare_one(db, sql, len, cache_it, &st);
    if (rc != QB_OK)
        return rc;
    e = malloc(sizeof *e + (cache_it ? len + 1 : 0));
    if (e == NULL) {
        sqlite3_finalize(st);
        return qbi_nomem(&db->base);
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
        qbi_lru_push_front(&db->base.lru, &e->lru);
        db->base.cache.size++;
        db->base.cache.misses++;
    } else {
        db->base.cache.transient++;
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
    /* No sqlite3_clear_bindings: every use binds all parameters again
     * (bind_params refuses a count mismatch), and a stale SQLITE_STATIC
     * pointer in an idle statement is never read. */
    sqlite3_reset(e->stmt);
    e->in_use = 0;
}

static void cache_destroy(qb_db *db)
{
    qb_stmt *e = lru_entry(db, db->base.lru.next);
    while (e != NULL) {
        qb_stmt *n = lru_entry(db, e->lru.next);
        sqlite3_finalize(e->stmt);
        free(e);
        e = n;
    }
    free(db->buckets);
}

/* Run internal SQL text (no params, rows discarded) through the cache. */
static int sq_run_sql(qb_conn *c, const char *sql)
{
    qb_db *db = (qb_db *)c;
    qb_stmt *e;
    int rc, s;

    rc = cache_acquire(db, sql, strlen(sql), &e);
    if (rc != QB_OK)
        return rc;
    while ((s = sqlite3_step(e->stmt)) == SQLITE_ROW)
        ;
    if (s != SQLITE_DONE)
        rc = db_sqlite_fail(db, s);
    cache_release(db, e);
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
            return qbi_nomem(&db->base);
    if (qbi_result_set_columns(r, nc > 0 ? (size_t)nc : 0, col_name, st) !=
        QB_OK)
        return qbi_nomem(&db->base);
    return QB_OK;
}

static int result_append_row(qb_db *db, qb_result *r, sqlite3_stmt *st)
{
    qbi_cell *row;
    int rc = qbi_row_begin(&db->base, r, (size_t)sqlite3_column_count(st),
                           &row);

    if (row == NULL)
        return rc;
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
            return qbi_nomem(&db->base);
    }
    return QB_OK;
}

/* ---- execution --------------------------------------------------------- */

/* Run one statement of q; rows go to r per fetch (r may be NULL). */
static int sq_run_link(qb_conn *c, const qb_query *q, qb_fetch fetch,
                       qb_result *r)
{
    qb_db *db = (qb_db *)c;
    qb_stmt *e;
    sqlite3_stmt *st;
    int rc, s, stop_early;
    int64_t total0 = 0;

    rc = qbi_check_link(&db->base, q);
    if (rc != QB_OK)
        return rc;
    rc = cache_acquire(db, q->sql, qbi_sql_len(q), &e);
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
        rc = qbi_check_link(&db->base, q);
    if (rc == QB_OK)
        rc = cache_acquire(db, q->sql, qbi_sql_len(q), &e);
    if (rc == QB_OK)
        rc = bind_params(db, e->stmt, q->params, q->nparams);
    if (rc == QB_OK && (c = calloc(1, sizeof *c)) == NULL)
        rc = qbi_nomem(&db->base);
    if (rc != QB_OK) {
        cache_release(db, e);
        qbi_obs_end(&db->base, q, &o, rc, NULL);
        return rc;
    }
    *c = (qb_cursor){.db = db, .q = q, .e = e, .state = CUR_OPEN, .obs = o};
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

/* Run a script statement by statement (uncached: it runs once).  Nothing
 * is bound, so a statement with a placeholder (?, ?N, :x, @x, $x) would
 * run with NULL in it: it is refused as qb_exec refuses a count mismatch
 * (bind_params: QB_EINVAL, the same message), naming the statement. */
static int sq_run_script(qb_conn *c, const char *sql)
{
    qb_db *db = (qb_db *)c;
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

static int64_t sq_changes(const qb_conn *c_)
{
    return sqlite3_changes64(((const qb_db *)c_)->db);
}

static int64_t sq_last_insert_rowid(const qb_conn *c_)
{
    return sqlite3_last_insert_rowid(((const qb_db *)c_)->db);
}

/* ---- open / close ------------------------------------------------------ */

static void *sq_handle(qb_conn *c_)
{
    qb_db *db = (qb_db *)c_;
    return db ? db->db : NULL;
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
    db->base.cache.capacity = cap;
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

static int sq_tx_state(const qb_conn *c_)
{
    return sqlite3_get_autocommit(((const qb_db *)c_)->db) ? QBI_TX_IDLE
                                                           : QBI_TX_OPEN;
}

const qbi_driver qbi_sqlite_driver = {
    .name = "SQLite",
    .engine = QB_ENGINE_SQLITE,
    .dialect = QB_DIALECT_SQLITE,
    .nomem_code = SQLITE_NOMEM,
    .explain = 1,
    .snapshot_sp = 1,
    .begin_sql = "BEGIN IMMEDIATE",
    .release_sql = "RELEASE",
    .rollback_to_sql = "ROLLBACK TO",
    .mig_id = "INTEGER PRIMARY KEY AUTOINCREMENT",
    .open = sq_open,
    .close = sq_db_close,
    .handle = sq_handle,
    .tx_state = sq_tx_state,
    .run_link = sq_run_link,
    .run_sql = sq_run_sql,
    .run_script = sq_run_script,
    .changes = sq_changes,
    .last_rowid = sq_last_insert_rowid,
    .cursor_open = sq_cursor_open,
};
