/*
 * pg.c -- the qb executor on PostgreSQL (the driver behind qb_conn.h).
 *
 * DESIGN
 *
 * One qb_pg is one libpq connection used by one thread at a time: nothing
 * here locks.  Every call is synchronous (PQexec / PQexecParams): the
 * deferred-write workers that will use this already run off the request
 * path, so an event-loop style asynchronous API would buy nothing.
 *
 * Values.  User statements go through PQexecParams, so values never enter
 * the SQL text.  Numbers and booleans are formatted as text with an
 * explicit type OID (int8, float8, bool) because untyped numbers resolve to
 * text in places like IN (VALUES ($1), ($2)) that the builder renders; TEXT
 * stays untyped so the server can coerce it to the column's type (jsonb,
 * timestamp, integer...), which is what drivers such as node-postgres do.
 * bytea goes in binary form: no escaping at all.  All text parameters are
 * copied into one scratch block per call with their NUL terminators, since
 * a borrowed qb value is not guaranteed to be terminated.
 *
 * Placeholders.  The server answers a $N count that does not match the
 * bind message with a protocol-violation error (08P01), which looks like a
 * broken connection.  We therefore count $N ourselves first, with the
 * builder's lexer in its PostgreSQL mode (qbi_sql_skip: '..' and E'..'
 * escapes, "..", -- and nested block comments, $tag$..$tag$, and names
 * that contain '$': a$1 is a name, not a parameter), the same rules that
 * qb_query_raw_dialect numbers `?` by.
 *
 * Statement cache (optional, qb_conn_config.stmt_cache_size).  Prepared
 * statements named qb<N>, keyed by the SQL bytes AND the parameter type
 * OIDs (a type is fixed at PREPARE; the same SQL bound with an int one time
 * and a NULL the next needs two statements).  FNV-1a picks a bucket, an LRU
 * list picks the victim, which is DEALLOCATEd unless the session is in an
 * aborted transaction (then it lingers until the session ends: bounded by
 * evictions in that state).  A cached statement the server no longer
 * accepts -- 0A000 "cached plan must not change result type" after ALTER
 * TABLE, 26000 after a DEALLOCATE ALL behind our back -- is dropped and,
 * outside a transaction, prepared again once.  Prepared statements die
 * with the session, so qb_reset empties the cache.
 *
 * Transactions.  Work spanning statements (a chain, a batch, a migration)
 * opens BEGIN when the session is idle, else SAVEPOINT qb_pg_tx, and on
 * error rolls back exactly that scope.  PostgreSQL specifics handled here:
 * a COMMIT of an aborted transaction "succeeds" with the command tag
 * ROLLBACK, which we turn into an error; a failed COMMIT has already ended
 * the transaction, so we only ROLLBACK when the session is still in one.
 *
 * Errors.  The first error of a call is recorded (message + SQLSTATE);
 * cleanup statements run "quiet" so they cannot overwrite it.  A lost
 * connection is recognised from libpq's status (CONNECTION_BAD) as well as
 * from SQLSTATE classes 08 and 57P01..03 (the FATAL a restarting server
 * sends to idle sessions).  Every return path of an observed call passes
 * through obs_end, which calls the logger and the after hook exactly once.
 */
#include "config.h"
#include "qb_drv.h"
#include "qb_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <poll.h>

#include <libpq-fe.h>

#define PG_ERRMSG_MAX 1024
#define PG_IDENT_MAX 128
#define PG_MAX_PARAMS 65535u          /* protocol limit: int16 count */
#define PG_TX_SP "qb_pg_tx"
#define PG_CACHE_MAX 4096u

/* Type OIDs (pg_type.h is a server header; these are fixed forever). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701

/* ---- handles ----------------------------------------------------------- */

typedef struct pg_stmt {
    struct pg_stmt *hnext;               /* bucket chain */
    struct pg_stmt *prev, *next;         /* LRU, head = most recent */
    uint64_t hash;
    size_t len, n;                       /* SQL bytes, parameter count */
    const Oid *types;                    /* n OIDs, in this block */
    const char *sql;                     /* len bytes + NUL, in this block */
    char name[24];
} pg_stmt;

typedef struct qb_pg qb_pg;

struct qb_pg {
    qb_conn base;          /* first: a qb_conn * is a qb_pg * */
    PGconn *conn;
    /* statement cache (cap 0: off) */
    pg_stmt **buckets;
    size_t nbuckets, ncached, cap;
    pg_stmt *lru_head, *lru_tail;
    uint64_t next_id;
    qb_cache_stats st;
    int connect_timeout_ms; /* bound of qb_reset */
};

enum { TX_NONE = 0, TX_BEGIN, TX_SAVEPOINT };

/* ---- errors ------------------------------------------------------------ */

static int conn_bad(const qb_pg *db)
{
    return db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK;
}

static int map_state(const char *st, int bad)
{
    if (bad)
        return QB_ECONN;
    if (st == NULL || strlen(st) != 5)
        return QB_ESQL;
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 ||
        strcmp(st, "55P03") == 0)
        return QB_EBUSY;
    if (strncmp(st, "23", 2) == 0)
        return QB_ECONSTRAINT;
    if (strcmp(st, "57014") == 0)
        return QB_EINTERRUPT;
    if (strcmp(st, "53200") == 0)
        return QB_ENOMEM;
    /* 08P01 is also what a client bug (bad bind message) produces: the
     * session survives it, so it is not a lost connection. */
    if ((strncmp(st, "08", 2) == 0 && strcmp(st, "08P01") != 0) ||
        strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
        strcmp(st, "57P03") == 0)
        return QB_ECONN;
    return QB_ESQL;
}

/* Copy msg without its trailing newlines (libpq ends messages with one). */
static void set_msg(qb_pg *db, const char *msg)
{
    size_t n;
    if (msg == NULL || *msg == '\0')
        msg = "unknown error";
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        n--;
    if (n >= sizeof db->base.errmsg)
        n = sizeof db->base.errmsg - 1;
    memcpy(db->base.errmsg, msg, n);
    db->base.errmsg[n] = '\0';
}

__attribute__((format(printf, 4, 5)))
static int db_fail(qb_pg *db, int rc, const char *state, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = qbi_vfail(&db->base, rc, 0, state, fmt, ap);
    va_end(ap);
    return rc;
}

/* Record the error of res (NULL: the connection's message) and map it. */
static int db_pg_fail(qb_pg *db, const PGresult *res)
{
    const char *st = NULL, *msg = NULL;
    if (res != NULL) {
        st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        if (msg == NULL)
            msg = PQresultErrorMessage(res);
    }
    if ((msg == NULL || *msg == '\0') && db->conn != NULL)
        msg = PQerrorMessage(db->conn);
    set_msg(db, msg);
    snprintf(db->base.sqlstate, sizeof db->base.sqlstate, "%s",
             st != NULL && strlen(st) == 5 ? st : "");
    return map_state(st, conn_bad(db));
}

/* ---- placeholder scan -------------------------------------------------- */

/* One text for a placeholder count that does not match the values, which
 * qb_exec and migrations both report (highest $N, values). */
#define COUNT_MISMATCH "parameter count mismatch: the statement's highest " \
                       "placeholder is $%zu, the query has %zu value(s)"

/* Highest $N of s[0..n) outside quotes and comments (0 if none), by the
 * builder's PostgreSQL lexer (qbi_sql_skip).  Numbers past PG_MAX_PARAMS
 * are reported as PG_MAX_PARAMS + 1. */
static size_t max_placeholder(const char *s, size_t n)
{
    size_t max = qbi_pg_max_param(s, n);
    return max > PG_MAX_PARAMS ? PG_MAX_PARAMS + 1 : max;
}

/* ---- binding ----------------------------------------------------------- */

typedef struct pg_params {
    const char **vals;
    int *lens;
    int *fmts;
    Oid *types;
    void *block;           /* one allocation holding all of the above */
} pg_params;

/* Build libpq's parameter arrays for p[0..n).  Returns QB_OK or an error
 * recorded on db; pp->block is freed by the caller (also on error). */
static int params_make(qb_pg *db, const qb_value *p, size_t n, pg_params *pp)
{
    size_t scratch = 0, head, off;
    char *buf;

    memset(pp, 0, sizeof *pp);
    if (n == 0)
        return QB_OK;
    if (n > PG_MAX_PARAMS)
        return db_fail(db, QB_EINVAL, NULL, "%zu parameters: PostgreSQL "
                       "allows at most %u per statement", n, PG_MAX_PARAMS);
    for (size_t i = 0; i < n; i++) {
        switch (p[i].type) {
        case QB_V_NULL:
        case QB_V_BLOB:
            break;
        case QB_V_INT:
            scratch += 24;
            break;
        case QB_V_REAL:
            scratch += 32;
            break;
        case QB_V_BOOL:
            scratch += 2;
            break;
        case QB_V_TEXT:
            if (p[i].u.b.n > 0 && memchr(p[i].u.b.p, '\0', p[i].u.b.n))
                return db_fail(db, QB_EINVAL, NULL, "parameter %zu: "
                               "PostgreSQL text cannot hold a NUL byte "
                               "(bind it as a blob)", i + 1);
            if (p[i].u.b.n > INT_MAX - 1 ||
                p[i].u.b.n + 1 > SIZE_MAX - scratch)
                return db_fail(db, QB_EINVAL, NULL,
                               "parameter %zu: text too long", i + 1);
            scratch += p[i].u.b.n + 1;
            break;
        default:
            return db_fail(db, QB_EINVAL, NULL,
                           "parameter %zu has a type that cannot be bound "
                           "(raw SQL or subquery)", i + 1);
        }
    }
    head = n * (sizeof(char *) + 2 * sizeof(int) + sizeof(Oid));
    if (scratch > SIZE_MAX - head)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    pp->block = malloc(head + scratch);
    if (pp->block == NULL)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    /* Pointers first: the strictest alignment leads the block. */
    pp->vals = (const char **)pp->block;
    pp->lens = (int *)(pp->vals + n);
    pp->fmts = pp->lens + n;
    pp->types = (Oid *)(pp->fmts + n);
    buf = (char *)(pp->types + n);
    off = 0;
    for (size_t i = 0; i < n; i++) {
        const qb_value *v = &p[i];
        char *dst = buf + off;
        pp->lens[i] = 0;
        pp->fmts[i] = 0;
        pp->types[i] = 0;
        switch (v->type) {
        case QB_V_NULL:
            pp->vals[i] = NULL;
            continue;
        case QB_V_INT:
            off += (size_t)snprintf(dst, 24, "%" PRId64, v->u.i) + 1;
            pp->types[i] = OID_INT8;
            break;
        case QB_V_REAL:
            if (isnan(v->u.d))
                memcpy(dst, "NaN", 4);
            else if (isinf(v->u.d))
                memcpy(dst, v->u.d > 0 ? "Infinity" : "-Infinity",
                       v->u.d > 0 ? 9 : 10);
            else
                snprintf(dst, 32, "%.17g", v->u.d);
            off += strlen(dst) + 1;
            pp->types[i] = OID_FLOAT8;
            break;
        case QB_V_BOOL:
            dst[0] = v->u.i ? 't' : 'f';
            dst[1] = '\0';
            off += 2;
            pp->types[i] = OID_BOOL;
            break;
        case QB_V_TEXT:
            if (v->u.b.n > 0)
                memcpy(dst, v->u.b.p, v->u.b.n);
            dst[v->u.b.n] = '\0';
            off += v->u.b.n + 1;
            break;
        default: /* QB_V_BLOB; others were refused above */
            if (v->u.b.n > INT_MAX)
                return db_fail(db, QB_EINVAL, NULL,
                               "parameter %zu: blob too long", i + 1);
            /* A NULL value pointer would mean SQL NULL. */
            pp->vals[i] = v->u.b.n > 0 && v->u.b.p ? v->u.b.p : "";
            pp->lens[i] = (int)v->u.b.n;
            pp->fmts[i] = 1;
            pp->types[i] = OID_BYTEA;
            continue;
        }
        pp->vals[i] = dst;
    }
    return QB_OK;
}

/* ---- results ----------------------------------------------------------- */

static const char *field_name(const void *res, size_t i)
{
    return PQfname((const PGresult *)res, (int)i);
}

static int result_set_columns(qb_pg *db, qb_result *r, const PGresult *res)
{
    int nf = PQnfields(res);

    if (qbi_result_set_columns(r, nf > 0 ? (size_t)nf : 0, field_name, res) !=
        QB_OK)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    for (size_t i = 0; i < r->ncols; i++)
        r->types[i] = (unsigned)PQftype(res, (int)i);
    return QB_OK;
}

/* Decode one text-format value of type oid into cell. */
static int cell_fill(qb_result *r, qbi_cell *cell, Oid oid, const char *v,
                     size_t len)
{
    unsigned char *bin;
    size_t bl;
    int rc;

    switch (oid) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        cell->type = QB_V_INT;
        cell->u.i = strtoll(v, NULL, 10);
        return QB_OK;
    case OID_FLOAT4:
    case OID_FLOAT8:
        /* glibc's strtod reads NaN, Infinity and -Infinity too. */
        cell->type = QB_V_REAL;
        cell->u.d = strtod(v, NULL);
        return QB_OK;
    case OID_BOOL:
        cell->type = QB_V_BOOL;
        cell->u.i = v[0] == 't';
        return QB_OK;
    case OID_BYTEA:
        /* Handles both bytea_output settings (hex and escape). */
        bin = PQunescapeBytea((const unsigned char *)v, &bl);
        if (bin == NULL)
            return QB_ENOMEM;
        rc = qbi_cell_set_bytes(r, cell, QB_V_BLOB, bin, bl);
        PQfreemem(bin);
        return rc;
    default:
        return qbi_cell_set_bytes(r, cell, QB_V_TEXT, v, len);
    }
}

static int result_append_row(qb_pg *db, qb_result *r, const PGresult *res,
                             int row)
{
    qbi_cell *cells;

    if ((size_t)PQnfields(res) != r->ncols)
        return db_fail(db, QB_ESQL, NULL,
                       "statements of one chain return different columns");
    if (r->ncols == 0)
        return QB_OK;
    cells = qbi_result_add_row(r);
    if (cells == NULL)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    for (size_t c = 0; c < r->ncols; c++) {
        int ci = (int)c;
        if (PQgetisnull(res, row, ci))
            continue;
        if (cell_fill(r, &cells[c], PQftype(res, ci),
                      PQgetvalue(res, row, ci),
                      (size_t)PQgetlength(res, row, ci)) != QB_OK)
            return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    }
    return QB_OK;
}

/* ---- running statements ------------------------------------------------ */

/* Internal SQL (no params, simple protocol; may hold several statements).
 * quiet: keep the recorded error (cleanup paths). */
static int sql_run(qb_pg *db, const char *sql, int quiet)
{
    char saved[PG_ERRMSG_MAX], saved_st[6];
    PGresult *res;
    int rc = QB_OK;
    ExecStatusType s;

    if (quiet) {
        memcpy(saved, db->base.errmsg, sizeof saved);
        memcpy(saved_st, db->base.sqlstate, sizeof saved_st);
    }
    res = PQexec(db->conn, sql);
    s = PQresultStatus(res);
    if (res == NULL || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK &&
                        s != PGRES_EMPTY_QUERY))
        rc = db_pg_fail(db, res);
    else if (strcmp(sql, "COMMIT") == 0 &&
             strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
        rc = db_fail(db, QB_ESQL, "25P02", "the transaction was aborted by "
                     "an earlier error: COMMIT rolled it back");
    PQclear(res);
    if (quiet) {
        memcpy(db->base.errmsg, saved, sizeof saved);
        memcpy(db->base.sqlstate, saved_st, sizeof saved_st);
    }
    return rc;
}

/* ---- statement cache --------------------------------------------------- */

static uint64_t key_hash(const char *sql, size_t len, const Oid *types,
                         size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    const unsigned char *t = (const unsigned char *)types;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)sql[i];
        h *= 1099511628211ULL;
    }
    for (size_t i = 0; i < n * sizeof(Oid); i++) {
        h ^= t[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 32);
}

static void lru_unlink(qb_pg *db, pg_stmt *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        db->lru_head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        db->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(qb_pg *db, pg_stmt *e)
{
    e->prev = NULL;
    e->next = db->lru_head;
    if (db->lru_head != NULL)
        db->lru_head->prev = e;
    db->lru_head = e;
    if (db->lru_tail == NULL)
        db->lru_tail = e;
}

/* Remove e from the cache; DEALLOCATE it on the server when asked and the
 * session can still run commands. */
static void cache_drop(qb_pg *db, pg_stmt *e, int dealloc)
{
    pg_stmt **pp = &db->buckets[e->hash & (db->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(db, e);
    db->ncached--;
    if (dealloc && !conn_bad(db) &&
        PQtransactionStatus(db->conn) != PQTRANS_INERROR) {
        char sql[48];
        snprintf(sql, sizeof sql, "DEALLOCATE %s", e->name);
        PQclear(PQexec(db->conn, sql));
    }
    free(e);
}

/* Forget every entry without telling the server (its session is gone). */
static void cache_forget_all(qb_pg *db)
{
    pg_stmt *e = db->lru_head;
    while (e != NULL) {
        pg_stmt *nx = e->next;
        free(e);
        e = nx;
    }
    db->lru_head = db->lru_tail = NULL;
    if (db->buckets != NULL)
        memset(db->buckets, 0, db->nbuckets * sizeof *db->buckets);
    db->ncached = 0;
}

/* The prepared statement for (sql, types), preparing it on a miss. */
static int cache_get(qb_pg *db, const char *sql, size_t len, size_t n,
                     const Oid *types, pg_stmt **out)
{
    uint64_t h = key_hash(sql, len, types, n);
    size_t b = (size_t)h & (db->nbuckets - 1), tsz = n * sizeof(Oid);
    pg_stmt *e = NULL;
    PGresult *res;
    char *p;

    for (e = db->buckets[b]; e != NULL; e = e->hnext)
        if (e->hash == h && e->len == len && e->n == n &&
            memcmp(e->sql, sql, len) == 0 &&
            (n == 0 || memcmp(e->types, types, tsz) == 0))
            break;
    if (e != NULL) {
        db->st.hits++;
        if (db->lru_head != e) {
            lru_unlink(db, e);
            lru_push_front(db, e);
        }
        *out = e;
        return QB_OK;
    }
    if (len > SIZE_MAX - sizeof *e - tsz - 1)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    e = malloc(sizeof *e + tsz + len + 1);
    if (e == NULL)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    memset(e, 0, sizeof *e);
    p = (char *)(e + 1);
    if (tsz > 0)
        memcpy(p, types, tsz);
    e->types = (const Oid *)p;
    memcpy(p + tsz, sql, len);
    p[tsz + len] = '\0';
    e->sql = p + tsz;
    e->hash = h;
    e->len = len;
    e->n = n;
    snprintf(e->name, sizeof e->name, "qb%" PRIu64, ++db->next_id);
    res = PQprepare(db->conn, e->name, e->sql, (int)n, n ? types : NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        int rc = db_pg_fail(db, res);
        PQclear(res);
        free(e);
        return rc;
    }
    PQclear(res);
    /* Evict only now: a statement that fails to prepare costs nothing. */
    if (db->ncached >= db->cap && db->lru_tail != NULL) {
        cache_drop(db, db->lru_tail, 1);
        db->st.evictions++;
    }
    e->hnext = db->buckets[b];
    db->buckets[b] = e;
    lru_push_front(db, e);
    db->ncached++;
    db->st.misses++;
    *out = e;
    return QB_OK;
}

/* Send q's statement with pp: unnamed (PQexecParams) without a cache,
 * else through a prepared statement.  *res is what libpq returned. */
static int send_stmt(qb_pg *db, const qb_query *q, size_t len,
                     const pg_params *pp, PGresult **res)
{
    pg_stmt *e = NULL;
    int rc;

    *res = NULL;
    if (db->cap == 0) {
        *res = PQexecParams(db->conn, q->sql, (int)q->nparams, pp->types,
                            pp->vals, pp->lens, pp->fmts, 0);
        return QB_OK;
    }
    for (int attempt = 0;; attempt++) {
        const char *st;
        rc = cache_get(db, q->sql, len, q->nparams, pp->types, &e);
        if (rc != QB_OK)
            return rc;
        *res = PQexecPrepared(db->conn, e->name, (int)q->nparams, pp->vals,
                              pp->lens, pp->fmts, 0);
        st = PQresultErrorField(*res, PG_DIAG_SQLSTATE);
        if (attempt > 0 || st == NULL ||
            (strcmp(st, "0A000") != 0 && strcmp(st, "26000") != 0))
            return QB_OK;
        /* Stale: the server refuses this prepared statement now. */
        db->st.replans++;
        cache_drop(db, e, strcmp(st, "26000") != 0);
        if (PQtransactionStatus(db->conn) != PQTRANS_IDLE)
            return QB_OK;          /* the error aborted the transaction */
        PQclear(*res);
        *res = NULL;
    }
}

static void pd_cache_stats(const qb_conn *c_, qb_cache_stats *out)
{
    const qb_pg *db = (const qb_pg *)c_;
    if (db == NULL || out == NULL)
        return;
    *out = db->st;
    out->size = db->ncached;
    out->capacity = db->cap;
}

static int check_link(qb_pg *db, const qb_query *q)
{
    size_t len, maxp;
    if (q->sql == NULL)
        return db_fail(db, QB_EINVAL, NULL, "query has no SQL text");
    if (q->dialect != QB_DIALECT_POSTGRES)
        return db_fail(db, QB_EDIALECT, NULL, "query was rendered for "
                       "another SQL dialect (build it with "
                       "QB_DIALECT_POSTGRES)");
    if (q->nparams > 0 && q->params == NULL)
        return db_fail(db, QB_EINVAL, NULL, "query has no parameter array");
    len = q->sql_len ? q->sql_len : strlen(q->sql);
    if (memchr(q->sql, '\0', len) != NULL)
        return db_fail(db, QB_EINVAL, NULL, "SQL text holds a NUL byte");
    maxp = max_placeholder(q->sql, len);
    if (maxp != q->nparams)
        return db_fail(db, QB_EINVAL, NULL, COUNT_MISMATCH, maxp,
                       q->nparams);
    return QB_OK;
}

static int is_dml_tag(const char *tag)
{
    return strncmp(tag, "INSERT ", 7) == 0 || strncmp(tag, "UPDATE ", 7) == 0 ||
           strncmp(tag, "DELETE ", 7) == 0 || strncmp(tag, "MERGE ", 6) == 0;
}

/* Run one statement of q; rows go to r per fetch (r may be NULL). */
static int run_link(qb_pg *db, const qb_query *q, qb_fetch fetch,
                    qb_result *r)
{
    pg_params pp;
    PGresult *res;
    ExecStatusType s;
    int rc;

    rc = check_link(db, q);
    if (rc != QB_OK)
        return rc;
    rc = params_make(db, q->params, q->nparams, &pp);
    if (rc != QB_OK) {
        free(pp.block);
        return rc;
    }
    rc = send_stmt(db, q, q->sql_len ? q->sql_len : strlen(q->sql), &pp,
                   &res);
    free(pp.block);
    if (rc != QB_OK)
        return rc;
    s = PQresultStatus(res);
    if (res == NULL) {
        rc = db_pg_fail(db, NULL);
    } else if (s == PGRES_EMPTY_QUERY) {
        rc = db_fail(db, QB_EINVAL, NULL, "empty SQL statement");
    } else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        rc = db_pg_fail(db, res);
    } else if (r != NULL) {
        int nt = PQntuples(res);
        if (!r->cols_set)
            rc = result_set_columns(db, r, res);
        for (int i = 0; rc == QB_OK && i < nt; i++) {
            if (fetch == QB_FETCH_NONE ||
                (fetch == QB_FETCH_ONE && r->nrows > 0))
                break;
            rc = result_append_row(db, r, res, i);
        }
        if (rc == QB_OK && is_dml_tag(PQcmdStatus(res)))
            r->changes += strtoll(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
    return rc;
}

/* Open our own scope: BEGIN when idle, else a savepoint. */
static int tx_open(qb_pg *db, int *mode)
{
    int rc;
    *mode = TX_NONE;
    switch (PQtransactionStatus(db->conn)) {
    case PQTRANS_IDLE:
        rc = sql_run(db, "BEGIN", 0);
        if (rc == QB_OK)
            *mode = TX_BEGIN;
        return rc;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR: /* the SAVEPOINT fails with the server's 25P02 */
        rc = sql_run(db, "SAVEPOINT " PG_TX_SP, 0);
        if (rc == QB_OK)
            *mode = TX_SAVEPOINT;
        return rc;
    default:
        return db_fail(db, QB_ECONN, NULL, "connection not usable (%s)",
                       conn_bad(db) ? "lost" : "busy");
    }
}

/* Close what tx_open opened: commit/release on success, else roll back.
 * Returns the final status. */
static int tx_close(qb_pg *db, int mode, int rc)
{
    if (mode == TX_NONE)
        return rc;
    if (rc == QB_OK) {
        rc = sql_run(db, mode == TX_BEGIN ? "COMMIT"
                                          : "RELEASE SAVEPOINT " PG_TX_SP, 0);
        if (rc == QB_OK)
            return QB_OK;
    }
    if (conn_bad(db))
        return rc;   /* the server rolled back whatever was open */
    if (mode == TX_BEGIN) {
        if (PQtransactionStatus(db->conn) != PQTRANS_IDLE)
            sql_run(db, "ROLLBACK", 1);
    } else {
        sql_run(db, "ROLLBACK TO SAVEPOINT " PG_TX_SP "; RELEASE SAVEPOINT "
                PG_TX_SP, 1);
    }
    return rc;
}

/* q and its chain; *out (if out) receives a result on success only. */
static int run_query(qb_pg *db, const qb_query *q, qb_result **out)
{
    qb_result *r = NULL;
    int rc, mode;

    if (out != NULL) {
        r = qbi_result_new();
        if (r == NULL)
            return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    }
    if (q->next == NULL) {
        rc = run_link(db, q, q->fetch, r);
    } else {
        rc = tx_open(db, &mode);
        for (const qb_query *l = q; rc == QB_OK && l != NULL; l = l->next)
            rc = run_link(db, l, q->fetch, r);
        rc = tx_close(db, mode, rc);
    }
    if (rc != QB_OK) {
        qb_result_free(r);
        r = NULL;
    }
    if (out != NULL)
        *out = r;
    return rc;
}

static int exec_observed(qb_pg *db, const qb_query *q, qb_result **out)
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

static int pd_exec(qb_conn *c_, const qb_query *q, qb_result **out)
{
    qb_pg *db = (qb_pg *)c_;
    if (out != NULL)
        *out = NULL;
    if (db == NULL)
        return QB_EINVAL;
    if (q == NULL)
        return db_fail(db, QB_EINVAL, NULL, "NULL query");
    return exec_observed(db, q, out);
}

static int pd_count(qb_conn *c_, const qb_query *q, int64_t *total)
{
    qb_pg *db = (qb_pg *)c_;
    struct qb_query v;
    qb_result *r = NULL;
    int rc;

    if (total != NULL)
        *total = 0;
    if (db == NULL)
        return QB_EINVAL;
    if (q == NULL || total == NULL)
        return db_fail(db, QB_EINVAL, NULL, "NULL query or output");
    if (q->count_sql == NULL)
        return db_fail(db, QB_EINVAL, NULL, "query has no count statement");
    v = *q;
    v.sql = q->count_sql;
    v.sql_len = strlen(q->count_sql);
    v.count_sql = NULL;
    v.next = NULL;
    v.fetch = QB_FETCH_ONE;
    v.kind = QB_KIND_SELECT;
    rc = exec_observed(db, &v, &r);
    if (rc == QB_OK)
        *total = qb_result_int(r, 0, 0);
    qb_result_free(r);
    return rc;
}

static int pd_batch(qb_conn *c_, const qb_query *const *qs, size_t n,
                       qb_result **results, size_t *failed_at)
{
    qb_pg *db = (qb_pg *)c_;
    int rc, mode;
    size_t i;

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
        return db_fail(db, QB_EINVAL, NULL, "NULL query list");
    for (i = 0; i < n; i++)
        if (qs[i] == NULL) {
            /* the index of the NULL element, as SQLite's driver says */
            if (failed_at != NULL)
                *failed_at = i;
            return db_fail(db, QB_EINVAL, NULL, "batch query %zu is NULL", i);
        }
    rc = tx_open(db, &mode);
    for (i = 0; rc == QB_OK && i < n; i++) {
        rc = exec_observed(db, qs[i], results ? &results[i] : NULL);
        if (rc != QB_OK) {
            qbi_prefix(&db->base, "batch query %zu", i);
            if (failed_at != NULL)
                *failed_at = i;
        }
    }
    rc = tx_close(db, mode, rc);
    if (rc != QB_OK && results != NULL)
        for (i = 0; i < n; i++) {
            qb_result_free(results[i]);
            results[i] = NULL;
        }
    return rc;
}

/* ---- pipeline ---------------------------------------------------------- */

#define PIPE_CHUNK 64 /* statements per Sync: their answers are small, so
                         a blocking send cannot fill both socket buffers */

typedef struct pipe_link {
    const qb_query *q;   /* the query (for observers) */
    const qb_query *l;   /* the link sent */
    size_t qi;           /* index of q in qs */
    pg_stmt *e;          /* prepared statement, or NULL: unnamed */
} pipe_link;

/* Stop the pipeline after a failure (the connection may be gone). */
static void pipe_exit(qb_pg *db)
{
    if (PQpipelineStatus(db->conn) == PQ_PIPELINE_OFF)
        return;
    if (!conn_bad(db)) {
        /* Drain what is left up to and including the Sync. */
        for (int guard = 0; guard < 4 * PIPE_CHUNK + 8; guard++) {
            PGresult *res = PQgetResult(db->conn);
            ExecStatusType st;
            if (res == NULL) {
                if (PQexitPipelineMode(db->conn) == 1 || conn_bad(db))
                    return;
                continue;
            }
            st = PQresultStatus(res);
            PQclear(res);
            if (st == PGRES_PIPELINE_SYNC &&
                PQexitPipelineMode(db->conn) == 1)
                return;
        }
    }
    (void)PQexitPipelineMode(db->conn);
}

/* Send links [a, b) and a Sync, then read their answers.  Returns QB_OK
 * or the first failure (recorded on db; *bad = its link index). */
static int pipe_chunk(qb_pg *db, pipe_link *lk, size_t a, size_t b,
                      size_t *bad)
{
    int rc = QB_OK;
    size_t i;

    for (i = a; i < b; i++) {
        const qb_query *l = lk[i].l;
        pg_params pp;
        int ok;
        rc = params_make(db, l->params, l->nparams, &pp);
        if (rc != QB_OK) {
            free(pp.block);
            *bad = i;
            break;
        }
        if (lk[i].e != NULL)
            ok = PQsendQueryPrepared(db->conn, lk[i].e->name,
                                     (int)l->nparams, pp.vals, pp.lens,
                                     pp.fmts, 0);
        else
            ok = PQsendQueryParams(db->conn, l->sql, (int)l->nparams,
                                   pp.types, pp.vals, pp.lens, pp.fmts, 0);
        free(pp.block);
        if (!ok) {
            rc = db_pg_fail(db, NULL);
            *bad = i;
            break;
        }
    }
    if (PQpipelineSync(db->conn) != 1 && rc == QB_OK) {
        rc = db_pg_fail(db, NULL);
        *bad = a;
    }
    if (rc != QB_OK)
        return rc;
    for (i = a; i < b; i++) {
        PGresult *res = PQgetResult(db->conn);
        ExecStatusType st = PQresultStatus(res);
        if (res == NULL) {
            rc = db_pg_fail(db, NULL);
        } else if (st == PGRES_PIPELINE_ABORTED) {
            rc = db_fail(db, QB_ESQL, "25P02", "not run: an earlier "
                         "statement of the pipeline failed");
        } else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            rc = db_pg_fail(db, res);
            if (lk[i].e != NULL && state != NULL &&
                (strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0)) {
                /* A cached plan went stale (schema change): forget it and
                 * let the caller retry the transaction. */
                db->st.replans++;
                for (size_t j = i + 1; j < b; j++)
                    if (lk[j].e == lk[i].e)
                        lk[j].e = NULL;
                cache_drop(db, lk[i].e, 0);
                lk[i].e = NULL;
                rc = QB_EBUSY;
            }
        }
        PQclear(res);
        if (rc != QB_OK) {
            *bad = i;
            return rc;
        }
        res = PQgetResult(db->conn); /* NULL ends each statement's answers */
        if (res != NULL) {
            PQclear(res);
            *bad = i;
            return db_fail(db, QB_ESQL, NULL, "pipeline: unexpected extra "
                           "result");
        }
    }
    {
        PGresult *res = PQgetResult(db->conn);
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st != PGRES_PIPELINE_SYNC) {
            *bad = b - 1;
            return conn_bad(db) ? db_pg_fail(db, NULL)
                                : db_fail(db, QB_ESQL, NULL,
                                          "pipeline: Sync not answered");
        }
    }
    return QB_OK;
}

static int pd_pipeline(qb_conn *c_, const qb_query *const *qs, size_t n,
                          size_t *failed_at)
{
    qb_pg *db = (qb_pg *)c_;
    pipe_link *lk = NULL;
    qbi_obs *obs = NULL;
    size_t nl = 0, i, bad = 0, nobs = 0;
    uint64_t evictions;
    int rc = QB_OK;

    if (failed_at != NULL)
        *failed_at = n;
    if (db == NULL)
        return QB_EINVAL;
    if (n == 0)
        return QB_OK;
    if (qs == NULL)
        return db_fail(db, QB_EINVAL, NULL, "NULL query list");
    if (PQtransactionStatus(db->conn) != PQTRANS_INTRANS)
        return db_fail(db, conn_bad(db) ? QB_ECONN : QB_EMISUSE, NULL,
                       "a pipeline runs inside an open transaction");
    for (i = 0; i < n; i++) {
        if (qs[i] == NULL) {
            if (failed_at != NULL)
                *failed_at = i;
            return db_fail(db, QB_EINVAL, NULL, "pipeline query %zu is NULL",
                           i);
        }
        for (const qb_query *l = qs[i]; l != NULL; l = l->next)
            nl++;
    }
#ifndef LIBPQ_HAS_PIPELINING
    for (i = 0; i < n; i++) {
        rc = exec_observed(db, qs[i], NULL);
        if (rc != QB_OK) {
            qbi_prefix(&db->base, "pipeline query %zu", i);
            if (failed_at != NULL)
                *failed_at = i;
            return rc;
        }
    }
    return QB_OK;
#else
    lk = calloc(nl, sizeof *lk);
    obs = calloc(n, sizeof *obs);
    if (lk == NULL || obs == NULL) {
        free(lk);
        free(obs);
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    }
    /* Check every link and find its prepared statement first (a miss
     * prepares it now, outside the pipeline).  Should the cache evict
     * meanwhile, an entry picked earlier may be gone: send all unnamed. */
    evictions = db->st.evictions;
    nl = 0;
    for (i = 0; rc == QB_OK && i < n; i++) {
        for (const qb_query *l = qs[i]; rc == QB_OK && l != NULL;
             l = l->next) {
            rc = check_link(db, l);
            if (rc == QB_OK && db->cap > 0) {
                pg_params pp;
                rc = params_make(db, l->params, l->nparams, &pp);
                if (rc == QB_OK)
                    rc = cache_get(db, l->sql,
                                   l->sql_len ? l->sql_len : strlen(l->sql),
                                   l->nparams, pp.types, &lk[nl].e);
                free(pp.block);
            }
            lk[nl].q = qs[i];
            lk[nl].l = l;
            lk[nl].qi = i;
            nl++;
        }
        if (rc != QB_OK)
            bad = i;
    }
    if (rc == QB_OK && db->st.evictions != evictions)
        for (i = 0; i < nl; i++)
            lk[i].e = NULL;
    /* Observers: the before hooks in order (a veto stops the pipeline
     * there); each query's logger/after hook once it is answered. */
    for (i = 0; rc == QB_OK && i < n; i++, nobs++) {
        rc = qbi_obs_begin(&db->base, qs[i], &obs[i]);
        if (rc != QB_OK)
            bad = i;
    }
    if (rc != QB_OK) {
        /* Nothing was sent: report the failing query, skip the rest. */
        if (nobs > bad)
            qbi_obs_end(&db->base, qs[bad], &obs[bad], rc, NULL);
        qbi_prefix(&db->base, "pipeline query %zu", bad);
        if (failed_at != NULL)
            *failed_at = bad;
        free(lk);
        free(obs);
        return rc;
    }
    if (PQenterPipelineMode(db->conn) != 1) {
        rc = db_pg_fail(db, NULL);
        bad = 0;
    }
    for (i = 0; rc == QB_OK && i < nl; i += PIPE_CHUNK) {
        size_t b = i + PIPE_CHUNK < nl ? i + PIPE_CHUNK : nl, lb = 0;
        rc = pipe_chunk(db, lk, i, b, &lb);
        if (rc != QB_OK)
            bad = lk[lb].qi;
    }
    if (rc != QB_OK)
        pipe_exit(db);
    else if (PQexitPipelineMode(db->conn) != 1)
        rc = db_pg_fail(db, NULL);
    /* Queries before the failure succeeded, the failing one failed, the
     * rest were not run (their observers hear nothing: not executed). */
    for (i = 0; i < n; i++) {
        if (rc != QB_OK && i > bad)
            break;
        qbi_obs_end(&db->base, qs[i], &obs[i], rc != QB_OK && i == bad ? rc : QB_OK,
                NULL);
    }
    if (rc != QB_OK) {
        qbi_prefix(&db->base, "pipeline query %zu", bad);
        if (failed_at != NULL)
            *failed_at = bad;
    }
    free(lk);
    free(obs);
    return rc;
#endif
}

/* ---- transactions ------------------------------------------------------ */

static int pd_begin(qb_conn *c_)
{
    qb_pg *db = (qb_pg *)c_;
    return db ? sql_run(db, "BEGIN", 0) : QB_EINVAL;
}

static int pd_commit(qb_conn *c_)
{
    qb_pg *db = (qb_pg *)c_;
    return db ? sql_run(db, "COMMIT", 0) : QB_EINVAL;
}

static int pd_rollback(qb_conn *c_)
{
    qb_pg *db = (qb_pg *)c_;
    return db ? sql_run(db, "ROLLBACK", 0) : QB_EINVAL;
}

/* "<verb> <name>" for a savepoint command; names are plain identifiers
 * because they are pasted (savepoints take no parameters). */
static int sp_run(qb_pg *db, const char *verb, const char *name)
{
    char buf[PG_IDENT_MAX + 40];
    if (db == NULL)
        return QB_EINVAL;
    if (name == NULL || !qb_ident_valid(name) || strchr(name, '.') != NULL ||
        strlen(name) > PG_IDENT_MAX)
        return db_fail(db, QB_EINVAL, NULL, "invalid savepoint name");
    snprintf(buf, sizeof buf, "%s %s", verb, name);
    return sql_run(db, buf, 0);
}

static int pd_savepoint(qb_conn *c_, const char *name)
{
    qb_pg *db = (qb_pg *)c_;
    return sp_run(db, "SAVEPOINT", name);
}

static int pd_release(qb_conn *c_, const char *name)
{
    qb_pg *db = (qb_pg *)c_;
    return sp_run(db, "RELEASE SAVEPOINT", name);
}

static int pd_rollback_to(qb_conn *c_, const char *name)
{
    qb_pg *db = (qb_pg *)c_;
    int rc = sp_run(db, "ROLLBACK TO SAVEPOINT", name);
    if (rc == QB_OK)
        rc = sp_run(db, "RELEASE SAVEPOINT", name);
    return rc;
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
    v->dialect = QB_DIALECT_POSTGRES;
}

static int mig_table(qb_pg *db, const char **table)
{
    if (*table == NULL)
        *table = "migrations";
    if (!qb_ident_valid(*table) || strlen(*table) > PG_IDENT_MAX)
        return db_fail(db, QB_EINVAL, NULL, "invalid migrations table name");
    return QB_OK;
}

static int mig_init(qb_pg *db, const char *table)
{
    char sql[PG_IDENT_MAX + 160];
    struct qb_query v;
    snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s ( id SERIAL "
             "PRIMARY KEY, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT "
             "CURRENT_TIMESTAMP NOT NULL)", table);
    qview(&v, sql, NULL, 0, QB_FETCH_NONE, QB_KIND_RAW);
    return exec_observed(db, &v, NULL);
}

static int mig_applied(qb_pg *db, const char *table, qb_result **out)
{
    char sql[PG_IDENT_MAX + 48];
    struct qb_query v;
    int rc = mig_init(db, table);
    if (rc != QB_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY id", table);
    qview(&v, sql, NULL, 0, QB_FETCH_ALL, QB_KIND_SELECT);
    return exec_observed(db, &v, out);
}

static int pd_migrations_applied(qb_conn *c_, const char *table,
                                    qb_result **out)
{
    qb_pg *db = (qb_pg *)c_;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (db == NULL)
        return QB_EINVAL;
    if (out == NULL)
        return db_fail(db, QB_EINVAL, NULL, "NULL output");
    rc = mig_table(db, &table);
    if (rc != QB_OK)
        return rc;
    return mig_applied(db, table, out);
}

static int mig_unapplied(qb_pg *db, const char *table,
                         const qb_migration *list, size_t n, size_t *idx,
                         size_t *nidx)
{
    qb_result *done = NULL;
    int rc, col;
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (list[i].name == NULL || list[i].sql == NULL)
            return db_fail(db, QB_EINVAL, NULL,
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

static int pd_migrations_unapplied(qb_conn *c_, const char *table,
                                      const qb_migration *list, size_t n,
                                      size_t *idx, size_t *nidx)
{
    qb_pg *db = (qb_pg *)c_;
    int rc;
    if (nidx != NULL)
        *nidx = 0;
    if (db == NULL)
        return QB_EINVAL;
    if (nidx == NULL || (n > 0 && (list == NULL || idx == NULL)))
        return db_fail(db, QB_EINVAL, NULL, "NULL migration list or output");
    rc = mig_table(db, &table);
    if (rc != QB_OK)
        return rc;
    return mig_unapplied(db, table, list, n, idx, nidx);
}

/* Run "<sql> $1" with name bound; *row tells whether a row came back. */
static int run_named(qb_pg *db, const char *sql, const char *name, int *row)
{
    const char *vals[1] = { name };
    PGresult *res = PQexecParams(db->conn, sql, 1, NULL, vals, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(res);
    int rc = QB_OK;
    if (res == NULL || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK))
        rc = db_pg_fail(db, res);
    else if (row != NULL)
        *row = PQntuples(res) > 0;
    PQclear(res);
    return rc;
}

/* Byte offset of the 1-based character position pos (an error field) in
 * s[0..n), in the session's client encoding; n if it is not in s. */
static size_t char_offset(qb_pg *db, const char *s, size_t n,
                          const char *pos)
{
    int enc = PQclientEncoding(db->conn);
    size_t off = 0;
    long left;
    char *endp;

    if (pos == NULL)
        return n;
    errno = 0;
    left = strtol(pos, &endp, 10);
    if (errno != 0 || endp == pos || left < 1)
        return n;
    while (--left > 0 && off < n) {
        int len = PQmblen(s + off, enc);
        off += len > 0 ? (size_t)len : 1;
    }
    return off < n ? off : n;
}

/* The server found a $N with no value in migration script s (42P02;
 * errpos: where, or NULL).  Report it the way qb_exec reports a count
 * mismatch (check_link), naming the statement.  When no statement with a
 * $N is found there, the server's error stays as it is (QB_ESQL). */
static int mig_stray_param(qb_pg *db, const char *s, const char *errpos)
{
    size_t n = strlen(s), off = char_offset(db, s, n, errpos);
    size_t i = 0, at, end, k = 0, maxp;
    char where[QBI_EXCERPT_MAX + 64];
    int here;

    for (;;) {
        at = qbi_sql_skip_blank(s, n, i, QB_DIALECT_POSTGRES);
        if (at >= n)
            return QB_ESQL;
        end = qbi_pg_stmt_end(s, n, at);
        if (end > at) {
            k++;
            /* the statement the server points at (without a position:
             * the first one holding a $N) */
            here = off < n ? off >= at && off < end : 1;
            maxp = max_placeholder(s + at, end - at);
            if (maxp > 0 && here)
                break;
        }
        if (end >= n)
            return QB_ESQL;
        i = end + 1;
    }
    qbi_sql_stmt_where(where, sizeof where, s, at, end, k);
    return db_fail(db, QB_EINVAL, "42P02", "%s: " COUNT_MISMATCH, where,
                   maxp, (size_t)0);
}

/* A migration's script as one simple-protocol message (several
 * statements, no parameters).  A $N that is the SQL's own (a routine's
 * body, PREPARE) is the server's business; one with no value is refused
 * like qb_exec refuses it: only the server can tell which is which,
 * so it is its 42P02 that is translated, inside the migration's
 * transaction, which the caller rolls back. */
static int mig_script(qb_pg *db, const char *sql)
{
    PGresult *res = PQexec(db->conn, sql);
    ExecStatusType s = PQresultStatus(res);
    int rc = QB_OK;

    if (res == NULL || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK &&
                        s != PGRES_EMPTY_QUERY)) {
        rc = db_pg_fail(db, res);
        if (rc == QB_ESQL && strcmp(db->base.sqlstate, "42P02") == 0)
            rc = mig_stray_param(db, sql, PQresultErrorField(res,
                                     PG_DIAG_STATEMENT_POSITION));
    }
    PQclear(res);
    return rc;
}

/* One migration in its own transaction.  *did: committed by us. */
static int mig_one(qb_pg *db, const char *table, const qb_migration *m,
                   int *did)
{
    char lock[PG_IDENT_MAX + 64], sel[PG_IDENT_MAX + 48];
    char ins[PG_IDENT_MAX + 48];
    int rc, applied = 0;

    *did = 0;
    snprintf(lock, sizeof lock, "LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE",
             table);
    snprintf(sel, sizeof sel, "SELECT 1 FROM %s WHERE name = $1", table);
    snprintf(ins, sizeof ins, "INSERT INTO %s (name) VALUES ($1)", table);
    rc = sql_run(db, "BEGIN", 0);
    if (rc != QB_OK)
        return rc;
    /* The lock queues concurrent appliers; then look again: another
     * process may have applied this one while we were listing. */
    rc = sql_run(db, lock, 0);
    if (rc == QB_OK)
        rc = run_named(db, sel, m->name, &applied);
    if (rc == QB_OK && !applied) {
        rc = mig_script(db, m->sql);
        /* A script that ends our transaction would record its name outside
         * it (and may have committed half of itself): refuse it. */
        if (rc == QB_OK && PQtransactionStatus(db->conn) != PQTRANS_INTRANS)
            rc = db_fail(db, QB_EINVAL, NULL, "migration SQL must not end "
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
    if (!conn_bad(db) && PQtransactionStatus(db->conn) != PQTRANS_IDLE)
        sql_run(db, "ROLLBACK", 1);
    return rc;
}

static int pd_migrations_apply(qb_conn *c_, const char *table,
                                  const qb_migration *list, size_t n,
                                  size_t *applied, size_t *failed_at)
{
    qb_pg *db = (qb_pg *)c_;
    size_t *idx = NULL, k = 0, count = 0;
    int rc;

    if (applied != NULL)
        *applied = 0;
    if (failed_at != NULL)
        *failed_at = n;
    if (db == NULL)
        return QB_EINVAL;
    if (n > 0 && list == NULL)
        return db_fail(db, QB_EINVAL, NULL, "NULL migration list");
    rc = mig_table(db, &table);
    if (rc != QB_OK)
        return rc;
    if (PQtransactionStatus(db->conn) != PQTRANS_IDLE)
        return db_fail(db, conn_bad(db) ? QB_ECONN : QB_EMISUSE, NULL,
                       "migrations cannot run inside an open transaction");
    if (n == 0)
        return QB_OK;
    if (n > SIZE_MAX / sizeof *idx)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
    idx = malloc(n * sizeof *idx);
    if (idx == NULL)
        return db_fail(db, QB_ENOMEM, NULL, "out of memory");
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

/* ---- connection -------------------------------------------------------- */

/* Notices (e.g. "relation already exists, skipping") would go to stderr
 * from a library: drop them. */
static void notice_drop(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void errbuf_put(char *errbuf, size_t len, const char *msg)
{
    size_t n;
    if (errbuf == NULL || len == 0)
        return;
    n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        n--;
    if (n >= len)
        n = len - 1;
    memcpy(errbuf, msg, n);
    errbuf[n] = '\0';
}

/* The connect_timeout in effect (the connection string may have set
 * it), in ms; dflt if libpq does not say.  Like libpq, values below 2 s
 * count as 2 s. */
static int conninfo_timeout_ms(PGconn *conn, int dflt)
{
    PQconninfoOption *opts = PQconninfo(conn);
    int ms = dflt;
    if (opts == NULL)
        return dflt;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL &&
            *o->val != '\0') {
            long v = strtol(o->val, NULL, 10);
            if (v > 0 && v <= 3600)
                ms = (int)(v < 2 ? 2000 : v * 1000);
        }
    }
    PQconninfoFree(opts);
    return ms;
}

static int pd_open(qb_conn **out, const char *conninfo,
                   const qb_conn_config *cfg, char *errbuf, size_t errbuf_len)
{
    /* application_name, connect_timeout and the TCP settings come before
     * dbname so the connection string may override them; client_encoding
     * comes after because the executor relies on UTF-8. */
    const char *keys[9], *vals[9];
    char tmo[16], user_tmo[16];
    int timeout = 10;
    qb_pg *db;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || conninfo == NULL) {
        errbuf_put(errbuf, errbuf_len, "NULL argument");
        return QB_EINVAL;
    }
    if (cfg != NULL && cfg->connect_timeout_s != 0) {
        if (cfg->connect_timeout_s < 0 || cfg->connect_timeout_s > 3600) {
            errbuf_put(errbuf, errbuf_len, "connect_timeout_s out of range");
            return QB_EINVAL;
        }
        timeout = cfg->connect_timeout_s;
    }
    if (cfg != NULL && cfg->stmt_cache_size > PG_CACHE_MAX) {
        errbuf_put(errbuf, errbuf_len, "stmt_cache_size out of range");
        return QB_EINVAL;
    }
    snprintf(tmo, sizeof tmo, "%d", timeout);
    snprintf(user_tmo, sizeof user_tmo, "%d", timeout * 1000);
    keys[0] = "application_name";
    vals[0] = cfg && cfg->application_name ? cfg->application_name
                                           : "waituntil";
    keys[1] = "connect_timeout";
    vals[1] = tmo;
    keys[2] = "keepalives_idle";
    vals[2] = "10";
    keys[3] = "keepalives_interval";
    vals[3] = "3";
    keys[4] = "keepalives_count";
    vals[4] = "3";
    keys[5] = "tcp_user_timeout";
    vals[5] = user_tmo;
    keys[6] = "dbname";
    vals[6] = conninfo;
    keys[7] = "client_encoding";
    vals[7] = "UTF8";
    keys[8] = NULL;
    vals[8] = NULL;

    db = calloc(1, sizeof *db);
    if (db == NULL) {
        errbuf_put(errbuf, errbuf_len, "out of memory");
        return QB_ENOMEM;
    }
    qbi_conn_init(&db->base, &qbi_pg_driver);
    if (cfg != NULL && cfg->stmt_cache_size > 0) {
        db->cap = cfg->stmt_cache_size;
        db->nbuckets = 1;
        while (db->nbuckets < db->cap * 2)
            db->nbuckets <<= 1;
        db->buckets = calloc(db->nbuckets, sizeof *db->buckets);
        if (db->buckets == NULL) {
            free(db);
            errbuf_put(errbuf, errbuf_len, "out of memory");
            return QB_ENOMEM;
        }
    }
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (db->conn == NULL) {
        free(db->buckets);
        free(db);
        errbuf_put(errbuf, errbuf_len, "out of memory");
        return QB_ENOMEM;
    }
    if (PQstatus(db->conn) != CONNECTION_OK) {
        errbuf_put(errbuf, errbuf_len, PQerrorMessage(db->conn));
        PQfinish(db->conn);
        free(db->buckets);
        free(db);
        return QB_ECONN;
    }
    db->connect_timeout_ms = conninfo_timeout_ms(db->conn, timeout * 1000);
    PQsetNoticeProcessor(db->conn, notice_drop, NULL);
    *out = &db->base;
    return QB_OK;
}

static void pd_close(qb_conn *c_)
{
    qb_pg *db = (qb_pg *)c_;
    if (db == NULL)
        return;
    cache_forget_all(db);   /* the session's end frees them server-side */
    free(db->buckets);
    PQfinish(db->conn);
    free(db);
}

/* libpq's documented non-blocking connection loop: wait for the socket
 * in the direction the last poll asked for (writable at first), in steps
 * of at most 100 ms so that stop and the deadline are seen in time.  The
 * socket may change between polls (another address, another host), so it
 * is fetched every time.  connect_timeout does not apply here: the
 * deadline replaces it. */
static int pd_reset_until(qb_conn *c_, int timeout_ms,
                          int (*stop)(void *arg), void *arg)
{
    qb_pg *db = (qb_pg *)c_;
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    int64_t t0, end;
    const char *why = NULL;

    if (db == NULL || timeout_ms < 0)
        return QB_EINVAL;
    if (timeout_ms == 0 || timeout_ms > db->connect_timeout_ms)
        timeout_ms = db->connect_timeout_ms;
    cache_forget_all(db);
    db->base.sqlstate[0] = '\0';
    t0 = qbi_now_ns();
    end = t0 + (int64_t)timeout_ms * 1000000;
    if (!PQresetStart(db->conn))
        ps = PGRES_POLLING_FAILED;
    while (ps != PGRES_POLLING_OK && ps != PGRES_POLLING_FAILED) {
        struct pollfd pfd;
        int64_t left = end - qbi_now_ns();
        int n;
        if (left <= 0) {
            why = "timed out";
            break;
        }
        if (stop != NULL && stop(arg)) {
            why = "stopped";
            break;
        }
        pfd.fd = PQsocket(db->conn);
        pfd.events = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        pfd.revents = 0;
        if (pfd.fd < 0) {
            ps = PGRES_POLLING_FAILED;
            break;
        }
        n = poll(&pfd, 1, left > 100000000 ? 100 : (int)(left / 1000000) + 1);
        if (n < 0 && errno != EINTR) {
            why = "failed (poll)";
            break;
        }
        if (n > 0)
            ps = PQresetPoll(db->conn);
    }
    if (ps == PGRES_POLLING_OK && PQstatus(db->conn) == CONNECTION_OK) {
        db->base.errmsg[0] = '\0';
        return QB_OK;
    }
    if (why != NULL) {
        char m[96];
        snprintf(m, sizeof m, "connection attempt %s after %lld ms", why,
                 (long long)((qbi_now_ns() - t0) / 1000000));
        set_msg(db, m);
    } else {
        set_msg(db, PQerrorMessage(db->conn));
    }
    return QB_ECONN;
}

static int pd_connected(const qb_conn *c_)
{
    const qb_pg *db = (const qb_pg *)c_;
    return db != NULL && !conn_bad(db);
}

static int pd_in_transaction(const qb_conn *c_)
{
    const qb_pg *db = (const qb_pg *)c_;
    PGTransactionStatusType s;
    if (db == NULL)
        return 0;
    s = PQtransactionStatus(db->conn);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
}

static void *pd_handle(qb_conn *c_)
{
    qb_pg *db = (qb_pg *)c_;
    return db ? db->conn : NULL;
}

static int pd_socket(qb_conn *c_)
{
    qb_pg *db = (qb_pg *)c_;
    return db->conn != NULL ? PQsocket(db->conn) : -1;
}

static int pd_tx(qb_conn *c, qbi_tx_op op, const char *name)
{
    switch (op) {
    case QBI_TX_BEGIN:
        return pd_begin(c);
    case QBI_TX_COMMIT:
        return pd_commit(c);
    case QBI_TX_ROLLBACK:
        return pd_rollback(c);
    case QBI_TX_SAVEPOINT:
        return pd_savepoint(c, name);
    case QBI_TX_RELEASE:
        return pd_release(c, name);
    case QBI_TX_ROLLBACK_TO:
        return pd_rollback_to(c, name);
    }
    return QB_EINVAL;
}

const qbi_driver qbi_pg_driver = {
    .name = "PostgreSQL",
    .engine = QB_ENGINE_POSTGRES,
    .dialect = QB_DIALECT_POSTGRES,
    .open = pd_open,
    .close = pd_close,
    .handle = pd_handle,
    .socket = pd_socket,
    .reset_until = pd_reset_until,
    .connected = pd_connected,
    .in_transaction = pd_in_transaction,
    .exec = pd_exec,
    .count = pd_count,
    .batch = pd_batch,
    .pipeline = pd_pipeline,
    .tx = pd_tx,
    .cache_stats = pd_cache_stats,
    .mig_applied = pd_migrations_applied,
    .mig_unapplied = pd_migrations_unapplied,
    .mig_apply = pd_migrations_apply,
};
