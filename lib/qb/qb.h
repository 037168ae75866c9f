/*
 * qb.h -- waituntil's query builder: SQL text plus bound values.
 *
 * A C port of workers-qb 1.14.0 (see README "Query builder").  This header
 * is the whole builder API; execution lives in qb_sqlite.h (and, later,
 * other engines), so building a statement needs no database at all.
 *
 * Conventions (same as SQLite's):
 *   - int status codes: QB_OK (0) or a named negative QB_E*; qb_strerror().
 *   - Opaque handles with paired create/free; every *_free(NULL) is a no-op.
 *   - Builders keep a sticky error: append calls return nothing, the first
 *     error is recorded and reported once by the build call, with a message
 *     in the style of workers-qb's error classes.
 *   - Values are always bound.  No byte of a value is ever pasted into SQL
 *     text (qb_raw() is the one explicit exception: trusted SQL text).
 *   - Thread-safety: a builder or query handle is used by one thread at a
 *     time; distinct handles are independent.  No global mutable state.
 */
#ifndef WAITUNTIL_QB_H
#define WAITUNTIL_QB_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && defined(QB_BUILDING)
#define QB_API __attribute__((visibility("default")))
#else
#define QB_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */

enum {
    QB_OK = 0,
    QB_ENOMEM = -1,     /* allocation failed */
    QB_EINVAL = -2,     /* bad argument: NULL handle, empty/invalid name... */
    QB_EPARAM = -3,     /* ParameterMismatchError: placeholders vs values */
    QB_EMISSING = -4,   /* MissingDataError: required data absent */
    QB_ECONFIG = -5,    /* InvalidConfigurationError (e.g. paginate page 0) */
    QB_ESUBQUERY = -6,  /* SubqueryTokenError / bad subquery */
    QB_EDIALECT = -7,   /* feature not available in this dialect */
    QB_ESQL = -8,       /* the database reported an error (see errmsg) */
    QB_EBUSY = -9,      /* SQLITE_BUSY / SQLITE_LOCKED: retry later */
    QB_EINTERRUPT = -10, /* statement interrupted (time budget) */
    QB_ECONSTRAINT = -11, /* constraint violation */
    QB_EDONE = -12,     /* cursor exhausted (not an error for callers) */
    QB_EMISUSE = -13    /* API used out of order */
};

/* Static English text for a status code; never NULL. Thread-safe. */
QB_API const char *qb_strerror(int rc);

/* ---- values ------------------------------------------------------------ */

typedef enum qb_vtype {
    QB_V_NULL = 0,
    QB_V_INT,     /* int64_t */
    QB_V_REAL,    /* double */
    QB_V_TEXT,    /* UTF-8 text, explicit length */
    QB_V_BLOB,    /* bytes */
    QB_V_BOOL,    /* binds as integer 0/1 */
    QB_V_RAW,     /* trusted SQL text inlined verbatim (CURRENT_TIMESTAMP) */
    QB_V_SELECT   /* a subquery (const qb_select *), inlined as (SELECT ...) */
} qb_vtype;

/* Value flag: the builder keeps the pointer instead of copying the bytes.
 * The caller guarantees the bytes outlive every query built from it. */
#define QB_VF_BORROWED 0x1u

struct qb_select;

typedef struct qb_value {
    qb_vtype type;
    unsigned flags;
    union {
        int64_t i;                       /* INT, BOOL */
        double d;                        /* REAL */
        struct { const void *p; size_t n; } b; /* TEXT, BLOB, RAW */
        const struct qb_select *sel;     /* SELECT */
    } u;
} qb_value;

/* Value constructors. Text/blob/raw are COPIED by whatever they are passed
 * to (builder call, qb_query_raw) unless made with a *_ref constructor,
 * which BORROWS (QB_VF_BORROWED). A NULL text pointer makes a NULL value. */
QB_API qb_value qb_null(void);
QB_API qb_value qb_int(int64_t v);
QB_API qb_value qb_real(double v);
QB_API qb_value qb_bool(int v);
QB_API qb_value qb_text(const char *s);
QB_API qb_value qb_textn(const char *s, size_t n);
QB_API qb_value qb_text_ref(const char *s);
QB_API qb_value qb_blob(const void *p, size_t n);
QB_API qb_value qb_blob_ref(const void *p, size_t n);
QB_API qb_value qb_raw(const char *sql);
QB_API qb_value qb_subquery(const struct qb_select *sel);

/* ---- built queries ----------------------------------------------------- */

typedef enum qb_fetch {
    QB_FETCH_NONE = 0, /* just run it */
    QB_FETCH_ONE,      /* first row or none */
    QB_FETCH_ALL       /* all rows */
} qb_fetch;

typedef enum qb_kind {
    QB_KIND_SELECT = 0, QB_KIND_INSERT, QB_KIND_UPDATE, QB_KIND_DELETE,
    QB_KIND_RAW
} qb_kind;

typedef enum qb_dialect {
    QB_DIALECT_SQLITE = 0, /* ?, ?N */
    QB_DIALECT_POSTGRES    /* $N */
} qb_dialect;

/*
 * A built statement: immutable SQL text, the values to bind, a fetch type.
 * params[i] binds to placeholder index i+1 (the builder renders ?N/$N so
 * that this holds).  A query owns copies of every non-borrowed value.  A
 * query may be a chain (bulk inserts larger than the engine's parameter
 * limit): executors run every link in one transaction.
 */
typedef struct qb_query qb_query;

/* Build a raw query: sql is copied, args (nargs of them) are copied by the
 * rules above.  QB_V_RAW and QB_V_SELECT are refused (QB_EINVAL) as args.
 * On error *out is NULL. */
QB_API int qb_query_raw(qb_query **out, const char *sql, size_t nargs,
                        const qb_value *args, qb_fetch fetch);

QB_API const char *qb_query_sql(const qb_query *q);
QB_API size_t qb_query_nparams(const qb_query *q);
QB_API const qb_value *qb_query_params(const qb_query *q);
QB_API qb_fetch qb_query_fetch(const qb_query *q);
QB_API qb_kind qb_query_kind(const qb_query *q);
QB_API const qb_query *qb_query_next(const qb_query *q); /* chain, or NULL */

/* SQL with values rendered as literals (workers-qb toDebugSQL rules).
 * For logs and debugging only; NEVER execute it.  Caller frees with free().
 * NULL on allocation failure. */
QB_API char *qb_query_debug_sql(const qb_query *q);

/* Deep copy (values copied, borrowed ones stay borrowed).  NULL on ENOMEM. */
QB_API qb_query *qb_query_dup(const qb_query *q);

QB_API void qb_query_free(qb_query *q);

/* Identifier check used for names that come from configuration: a plain
 * SQL name [A-Za-z_][A-Za-z0-9_]*, optionally one "schema." prefix, at most
 * 128 bytes.  Returns 1 if valid, 0 otherwise. */
QB_API int qb_ident_valid(const char *name);

/* ==== builder API (select / insert / update / delete / DDL) ============= */
/* (declared below by lib/qb's builder; see the README for examples) */

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_QB_H */
