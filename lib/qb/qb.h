/*
 * qb.h -- waituntil's query builder: SQL text plus bound values.
 *
 * A C port of workers-qb 1.14.0 (see README "Query builder").  This header
 * is the whole builder API; execution lives in qb_conn.h (one connection
 * API, a SQLite and a PostgreSQL driver), so building a statement needs
 * no database at all.
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
 *   - Names: the API is qb_ / QB_ and marked QB_API (qb.h, qb_conn.h);
 *     lib/qb's private names start with qbi_ (qb_int.h, qb_priv.h,
 *     qb_drv.h) and are hidden (-fvisibility=hidden): never exported
 *     from libwaituntil-qb.
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
    QB_EMISUSE = -13,   /* API used out of order */
    QB_ECONN = -14      /* connection lost (PostgreSQL): qb_reset, retry */
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
QB_API qb_dialect qb_query_dialect(const qb_query *q); /* NULL: SQLITE */
QB_API const qb_query *qb_query_next(const qb_query *q); /* chain, or NULL */

/* SQL with values rendered as literals (workers-qb toDebugSQL rules).
 * For logs and debugging only; NEVER execute it.  Caller frees with free().
 * NULL on allocation failure. */
QB_API char *qb_query_debug_sql(const qb_query *q);

/* Deep copy (values copied, borrowed ones stay borrowed).  NULL on ENOMEM. */
QB_API qb_query *qb_query_dup(const qb_query *q);

/* The same statement with other values: tpl's SQL (and count SQL, kind,
 * fetch, dialect) copied verbatim, nargs values copied by the qb_value
 * rules.  For a statement built once and run many times (a route's
 * deferred insert): no rendering, no whitespace pass.  QB_EINVAL when tpl
 * is a chain, nargs differs from tpl's parameter count, or a value is RAW
 * or SELECT; QB_ENOMEM.  On error *out is NULL. */
QB_API int qb_query_rebind(const qb_query *tpl, size_t nargs,
                           const qb_value *args, qb_query **out);

QB_API void qb_query_free(qb_query *q);

/* Identifier check used for names that come from configuration: a plain
 * SQL name [A-Za-z_][A-Za-z0-9_]*, optionally one "schema." prefix, at most
 * 128 bytes.  Returns 1 if valid, 0 otherwise. */
QB_API int qb_ident_valid(const char *name);

/* ==== builder API (select / insert / update / delete / DDL) ============= */
/*
 * Builders are opaque handles made by *_new(table) and released by
 * *_free() (NULL is a no-op).  *_new returns NULL only when out of memory;
 * a bad table name is recorded as the builder's sticky error instead, so
 * building code reads as a straight line.
 *
 * Appender calls return nothing.  The first error (bad name, placeholder
 * count, unterminated quote in a fragment...) is kept with a workers-qb
 * style message (*_errmsg) and returned by *_build; later calls are
 * ignored.  Errors only a build can see (empty INSERT/UPDATE data, rows
 * with different columns, SQLite-only syntax on PostgreSQL) are recorded
 * the same way.  Appenders on a NULL handle do nothing; build returns
 * QB_EINVAL.  On any error a build sets *out to NULL.
 *
 * Strings passed to appenders are COPIED; values follow the qb_value rules
 * (copied unless *_ref); a QB_V_SELECT value and every qb_select argument
 * are deep-copied at the call, so the caller may free or change the
 * argument right after.  Build does not consume the builder: it can be
 * built again, and a built qb_query is independent of it (it owns copies
 * of the values, except borrowed ones).
 *
 * Fragments vs names.  fields, conditions, ON, GROUP BY, HAVING, ORDER BY
 * expressions, RETURNING and Raw values are trusted SQL fragments, exactly
 * like workers-qb: never build them from user input.  They are checked for
 * closed quotes/comments, no ';', no named parameters.  Table names,
 * aliases, CTE names and the columns of insert/update/upsert data and of
 * whereIn/whereNull/... are NAMES and must satisfy qb_ident_valid()
 * (insert/update columns, aliases and CTE names: no dot).  Values are
 * always bound.
 *
 * Placeholders in a condition: `?` takes the call's next value; `?N` is a
 * label local to the call: the first `?N` takes the next value, a repeated
 * `?N` reuses it.  A `?` inside a quoted literal is not a placeholder.  The
 * builder renders `?`/`?N` (SQLite) or `$N` (PostgreSQL) so that
 * params[i] binds to index i+1.  A QB_V_SELECT value is inlined as
 * (SELECT ...) with its values spliced at that position; QB_V_RAW is
 * inlined as SQL text.  On PostgreSQL every `?` outside literals is a
 * placeholder (write the JSONB operators ? ?| ?& as functions).
 *
 * Fixes over workers-qb 1.14.0: numbering stays right with mixed ?/?N,
 * after subqueries and in the fluent form; OFFSET without LIMIT renders
 * LIMIT -1 OFFSET n on SQLite; quoted literals keep their bytes; bulk rows
 * are matched to columns by name; empty insert data is QB_EMISSING;
 * "INNER" and "INNER JOIN" are the same join type; DELETE ... RETURNING
 * comes before ORDER BY/LIMIT on SQLite (SQLite's grammar).
 *
 * Thread-safety: one thread per builder at a time.
 */

typedef struct qb_select qb_select;
typedef struct qb_insert qb_insert;
typedef struct qb_update qb_update;
typedef struct qb_delete qb_delete;

/* `how` flags of the where helpers. */
#define QB_AND 0x0u /* AND with what is there (default) */
#define QB_OR  0x1u /* (what is there) OR (this) -- workers-qb orWhere */
#define QB_NOT 0x2u /* NOT IN / IS NOT NULL / NOT BETWEEN / NOT LIKE */

typedef enum qb_order {
    QB_ORDER_NONE = 0, /* expression as written */
    QB_ORDER_ASC,
    QB_ORDER_DESC
} qb_order;

typedef enum qb_setop {
    QB_UNION = 0, QB_UNION_ALL, QB_INTERSECT, QB_INTERSECT_ALL,
    QB_EXCEPT, QB_EXCEPT_ALL
} qb_setop;

typedef enum qb_conflict {
    QB_CONFLICT_NONE = 0, QB_CONFLICT_ROLLBACK, QB_CONFLICT_ABORT,
    QB_CONFLICT_FAIL, QB_CONFLICT_IGNORE, QB_CONFLICT_REPLACE
} qb_conflict;

/* ---- every builder: lifetime, errors, dialect ---------------------------- */

/* The same five functions for each builder type qb_T (select, insert,
 * update, delete):
 *   qb_T_new      a new builder on table (a name).  NULL only on ENOMEM;
 *                 a bad name is the sticky error.
 *   qb_T_free     frees it (NULL is a no-op).
 *   qb_T_error    QB_OK or the sticky error;
 *   qb_T_errmsg   its message (never NULL).
 *   qb_T_dialect  placeholder rendering (default QB_DIALECT_SQLITE).  A
 *                 subquery is rendered in the dialect of the statement
 *                 it is part of. */
QB_API qb_select *qb_select_new(const char *table);
QB_API qb_insert *qb_insert_new(const char *table);
QB_API qb_update *qb_update_new(const char *table);
QB_API qb_delete *qb_delete_new(const char *table);
QB_API void qb_select_free(qb_select *s);
QB_API void qb_insert_free(qb_insert *ins);
QB_API void qb_update_free(qb_update *u);
QB_API void qb_delete_free(qb_delete *d);
QB_API int qb_select_error(const qb_select *s);
QB_API int qb_insert_error(const qb_insert *ins);
QB_API int qb_update_error(const qb_update *u);
QB_API int qb_delete_error(const qb_delete *d);
QB_API const char *qb_select_errmsg(const qb_select *s);
QB_API const char *qb_insert_errmsg(const qb_insert *ins);
QB_API const char *qb_update_errmsg(const qb_update *u);
QB_API const char *qb_delete_errmsg(const qb_delete *d);
QB_API void qb_select_dialect(qb_select *s, qb_dialect d);
QB_API void qb_insert_dialect(qb_insert *ins, qb_dialect d);
QB_API void qb_update_dialect(qb_update *u, qb_dialect d);
QB_API void qb_delete_dialect(qb_delete *b, qb_dialect d);

/* ---- SELECT -------------------------------------------------------------- */

/* Deep copy (sticky error included); NULL on ENOMEM or NULL s. */
QB_API qb_select *qb_select_dup(const qb_select *s);
QB_API void qb_select_table(qb_select *s, const char *table); /* replaces */
/* Select-list fragment(s), accumulated; none means "*". */
QB_API void qb_select_fields(qb_select *s, const char *fields);

/* WHERE: conditions ANDed; values shared by the call's conditions. */
QB_API void qb_select_where(qb_select *s, const char *cond, size_t n,
                            const qb_value *vals);
/* workers-qb orWhere: (what is there) OR (cond); alone it is a where. */
QB_API void qb_select_or_where(qb_select *s, const char *cond, size_t n,
                               const qb_value *vals);
/* Several conditions in one call: how = QB_AND or QB_OR. */
QB_API void qb_select_where_list(qb_select *s, unsigned how, size_t ncond,
                                 const char *const *conds, size_t n,
                                 const qb_value *vals);
/* (col) [NOT] IN (VALUES (?), ...); n == 0 is a no-op (workers-qb). */
QB_API void qb_select_where_in(qb_select *s, unsigned how, const char *col,
                               size_t n, const qb_value *vals);
/* (c1, c2) [NOT] IN (VALUES (?, ?), ...); vals row-major, nrows*ncols. */
QB_API void qb_select_where_in_cols(qb_select *s, unsigned how, size_t ncols,
                                    const char *const *cols, size_t nrows,
                                    const qb_value *vals);
/* col IS [NOT] NULL / col [NOT] BETWEEN ? AND ? / col [NOT] LIKE ?; col is
 * a name; how: QB_OR, QB_NOT.  Values are bound. */
QB_API void qb_select_where_null(qb_select *s, unsigned how,
                                 const char *col);
QB_API void qb_select_where_between(qb_select *s, unsigned how,
                                    const char *col, qb_value lo,
                                    qb_value hi);
QB_API void qb_select_where_like(qb_select *s, unsigned how, const char *col,
                                 qb_value pattern);
/* workers-qb when(cond, then, otherwise): calls then(s, arg) if cond is
 * non-zero, else otherwise(s, arg); either callback may be NULL. */
QB_API void qb_select_when(qb_select *s, int cond,
                           void (*then)(qb_select *, void *),
                           void (*otherwise)(qb_select *, void *),
                           void *arg);

/* JOIN.  type: NULL/"" for a plain JOIN, or words from INNER LEFT RIGHT
 * FULL OUTER CROSS NATURAL, optionally ending in JOIN ("INNER" and
 * "INNER JOIN" are the same).  alias and on may be NULL; ON is left out
 * for NATURAL joins. */
QB_API void qb_select_join(qb_select *s, const char *type, const char *table,
                           const char *alias, const char *on);
/* JOIN (subquery) AS alias ON ...: sub is deep-copied. */
QB_API void qb_select_join_sub(qb_select *s, const char *type,
                               const qb_select *sub, const char *alias,
                               const char *on);
/* workers-qb innerJoin/leftJoin/rightJoin/fullJoin/crossJoin/naturalJoin:
 * qb_select_join with that type (FULL JOIN, not FULL OUTER JOIN). */
QB_API void qb_select_inner_join(qb_select *s, const char *table,
                                 const char *alias, const char *on);
QB_API void qb_select_left_join(qb_select *s, const char *table,
                                const char *alias, const char *on);
QB_API void qb_select_right_join(qb_select *s, const char *table,
                                 const char *alias, const char *on);
QB_API void qb_select_full_join(qb_select *s, const char *table,
                                const char *alias, const char *on);
QB_API void qb_select_cross_join(qb_select *s, const char *table,
                                 const char *alias); /* no ON */
QB_API void qb_select_natural_join(qb_select *s, const char *table);

/* GROUP BY / HAVING / ORDER BY items accumulate.  expr and cond are
 * fragments; HAVING takes values like WHERE (clause "HAVING" in errors).
 * o appends ASC or DESC to expr. */
QB_API void qb_select_group_by(qb_select *s, const char *expr);
QB_API void qb_select_having(qb_select *s, const char *cond, size_t n,
                             const qb_value *vals);
QB_API void qb_select_having_list(qb_select *s, size_t ncond,
                                  const char *const *conds, size_t n,
                                  const qb_value *vals);
QB_API void qb_select_order_by(qb_select *s, const char *expr, qb_order o);
/* LIMIT / OFFSET (0 allowed; negative is QB_EINVAL).  OFFSET without LIMIT
 * renders LIMIT -1 OFFSET n on SQLite. */
QB_API void qb_select_limit(qb_select *s, int64_t n);
QB_API void qb_select_offset(qb_select *s, int64_t n);
/* workers-qb paginate(): LIMIT per_page OFFSET (page-1)*per_page.
 * page, per_page >= 1, else the sticky error QB_ECONFIG with workers-qb's
 * message ("Invalid page value: 0. Page must be an integer >= 1." + hint).
 * Build with QB_FETCH_ALL; the query's count_sql gives the total. */
QB_API void qb_select_paginate(qb_select *s, int64_t page, int64_t per_page);
/* SELECT DISTINCT. */
QB_API void qb_select_distinct(qb_select *s);
/* DISTINCT ON (expr, ...): PostgreSQL syntax, rendered as asked. */
QB_API void qb_select_distinct_on(qb_select *s, const char *expr);
/* WITH name[(cols)] AS (q): q deep-copied; cols may be NULL. */
QB_API void qb_select_with(qb_select *s, const char *name, const qb_select *q,
                           size_t ncols, const char *const *cols);
/* <this> UNION/INTERSECT/EXCEPT [ALL] <q>, q deep-copied; ORDER BY and
 * LIMIT of this builder apply to the combined result. */
QB_API void qb_select_set_op(qb_select *s, qb_setop op, const qb_select *q);

/* Build.  QB_FETCH_ALL / QB_FETCH_NONE: as configured; QB_FETCH_ONE adds
 * LIMIT 1 (keeping OFFSET), like fetchOne.  The query's count_sql is the
 * workers-qb count() statement (same params).  Returns QB_OK or the sticky
 * error; *out is NULL on error.  Caller frees *out. */
QB_API int qb_select_build(const qb_select *s, qb_fetch fetch,
                           qb_query **out);
/* The count() statement as its own query (fetch ONE). */
QB_API int qb_select_build_count(const qb_select *s, qb_query **out);
/* EXPLAIN QUERY PLAN <select>, fetch ALL.  SQLite only: on PostgreSQL it
 * returns QB_EDIALECT without touching the builder's sticky error. */
QB_API int qb_select_build_explain(const qb_select *s, qb_query **out);

/* ---- INSERT -------------------------------------------------------------- */

/* Set a column of the current row (QB_V_RAW inlines trusted SQL). */
QB_API void qb_insert_set(qb_insert *ins, const char *col, qb_value v);
/* Start the next row (bulk insert).  Every row must have the same set of
 * columns as the first (in any order: values are matched by name). */
QB_API void qb_insert_next_row(qb_insert *ins);
/* RETURNING items (fragments), accumulated. */
QB_API void qb_insert_returning(qb_insert *ins, const char *expr);
/* INSERT OR <conflict> (SQLite only). */
QB_API void qb_insert_or(qb_insert *ins, qb_conflict c);
/* Upsert: ON CONFLICT (cols) DO UPDATE SET <set...> [WHERE ...]; with no
 * _set calls, DO NOTHING. */
QB_API void qb_insert_on_conflict(qb_insert *ins, size_t ncols,
                                  const char *const *cols);
/* DO UPDATE SET col = v (v bound; QB_V_RAW for excluded.col) and its
 * WHERE (values bound before the SET values, as in workers-qb). */
QB_API void qb_insert_on_conflict_set(qb_insert *ins, const char *col,
                                      qb_value v);
QB_API void qb_insert_on_conflict_where(qb_insert *ins, size_t ncond,
                                        const char *const *conds, size_t n,
                                        const qb_value *vals);
/* Largest parameter count of one statement (default 32766); a bulk insert
 * needing more is split into a chain (qb_query_next). */
QB_API void qb_insert_max_params(qb_insert *ins, size_t max);
/* fetch ONE for one row, ALL for several (workers-qb). */
QB_API int qb_insert_build(const qb_insert *ins, qb_query **out);

/* ---- UPDATE and DELETE --------------------------------------------------- */

/* WHERE and RETURNING, the same for both: _where and _where_list take
 * conditions like qb_select_where; _returning items accumulate. */
QB_API void qb_update_where(qb_update *u, const char *cond, size_t n,
                            const qb_value *vals);
QB_API void qb_delete_where(qb_delete *d, const char *cond, size_t n,
                            const qb_value *vals);
QB_API void qb_update_where_list(qb_update *u, size_t ncond,
                                 const char *const *conds, size_t n,
                                 const qb_value *vals);
QB_API void qb_delete_where_list(qb_delete *d, size_t ncond,
                                 const char *const *conds, size_t n,
                                 const qb_value *vals);
QB_API void qb_update_returning(qb_update *u, const char *expr);
QB_API void qb_delete_returning(qb_delete *d, const char *expr);

/* UPDATE: _set takes a plain column name and a value (QB_V_RAW inlined);
 * _or renders UPDATE OR <conflict> (SQLite only). */
QB_API void qb_update_set(qb_update *u, const char *col, qb_value v);
QB_API void qb_update_or(qb_update *u, qb_conflict c);
/* Where values bind first (?1..), then SET values; fetch ALL. */
QB_API int qb_update_build(const qb_update *u, qb_query **out);

/* DELETE: order_by/limit/offset as for SELECT.  ORDER BY, LIMIT and
 * OFFSET are SQLite's (PostgreSQL's DELETE has none of them): a build in
 * QB_DIALECT_POSTGRES with any of them fails with QB_EDIALECT, a sticky
 * error naming the clause, whichever order the calls came in. */
QB_API void qb_delete_order_by(qb_delete *d, const char *expr, qb_order o);
QB_API void qb_delete_limit(qb_delete *d, int64_t n);
QB_API void qb_delete_offset(qb_delete *d, int64_t n);
/* fetch ALL. */
QB_API int qb_delete_build(const qb_delete *d, qb_query **out);

/* ---- raw in a dialect, DDL ---------------------------------------------- */

/* Like qb_query_raw, but `?`/`?N` outside literals and comments are
 * rendered for the dialect (PostgreSQL: `?N` -> `$N`, bare `?` -> one more
 * than the largest index so far, SQLite's rule).  Literals, quoted names
 * and comments follow the dialect's lexical rules and keep their bytes
 * (whitespace is collapsed outside them only): on PostgreSQL '..', E'..'
 * with backslash escapes, "..", $$..$$ and $tag$..$tag$, -- and nested
 * block comments ('..' without backslash escapes, as with the default
 * standard_conforming_strings = on); on SQLite what qb_query_raw knows:
 * '..', "..", `..`, [..] and flat comments.  A `$N` already in the text
 * is left as written.  QB_EINVAL for an unknown dialect. */
QB_API int qb_query_raw_dialect(qb_query **out, qb_dialect d, const char *sql,
                                size_t nargs, const qb_value *args,
                                qb_fetch fetch);

/* q (and its chain) rendered for dialect d, as a new query (*out; the
 * caller frees it): the same statements, values copied.  Builders and
 * qb_query_raw render for SQLite unless told otherwise; such a query that
 * uses nothing PostgreSQL lacks converts to QB_DIALECT_POSTGRES by having
 * its placeholders re-rendered (the rules of qb_query_raw_dialect).  What
 * does not convert is QB_EDIALECT: SQLite-only text the builder wrote
 * (INSERT/UPDATE OR ..., DELETE with ORDER BY/LIMIT/OFFSET, OFFSET without
 * LIMIT, EXPLAIN QUERY PLAN) and any PostgreSQL query to SQLite.  Raw SQL
 * is only re-rendered, not checked: SQL PostgreSQL lacks fails there.  q
 * already of d: a copy.  QB_EINVAL, QB_ENOMEM; *out NULL on error.
 * qb_exec and the other qb_conn.h calls do this by themselves for a query
 * of the other dialect. */
QB_API int qb_query_convert(const qb_query *q, qb_dialect d, qb_query **out);
/* CREATE TABLE [IF NOT EXISTS] name ( schema ): schema is trusted SQL. */
QB_API int qb_create_table(qb_query **out, qb_dialect d, const char *table,
                           const char *schema, int if_not_exists);
/* DROP TABLE [IF EXISTS] name.  Both DDL calls: kind RAW, no params,
 * fetch NONE; QB_EINVAL on a bad name or fragment; *out NULL on error. */
QB_API int qb_drop_table(qb_query **out, qb_dialect d, const char *table,
                         int if_exists);

/* ---- convenience macros ------------------------------------------------- */
/* Values as a variadic list: QB_WHERE(s, "a = ? AND b = ?", qb_int(1),
 * qb_text("x")); zero values work too: QB_WHERE(s, "a IS NULL"). */
#define QB__PAD {QB_V_NULL, 0u, {0}}
#define QB_VALS(...) ((const qb_value[]){QB__PAD, __VA_ARGS__} + 1)
#define QB_NVALS(...) \
    (sizeof((qb_value[]){QB__PAD, __VA_ARGS__}) / sizeof(qb_value) - 1u)
#define QB_WHERE(s, cond, ...) \
    qb_select_where((s), (cond), QB_NVALS(__VA_ARGS__), QB_VALS(__VA_ARGS__))
#define QB_OR_WHERE(s, cond, ...) \
    qb_select_or_where((s), (cond), QB_NVALS(__VA_ARGS__), \
                       QB_VALS(__VA_ARGS__))
#define QB_HAVING(s, cond, ...) \
    qb_select_having((s), (cond), QB_NVALS(__VA_ARGS__), QB_VALS(__VA_ARGS__))
#define QB_WHERE_IN(s, col, ...) \
    qb_select_where_in((s), QB_AND, (col), QB_NVALS(__VA_ARGS__), \
                       QB_VALS(__VA_ARGS__))
#define QB_UPDATE_WHERE(u, cond, ...) \
    qb_update_where((u), (cond), QB_NVALS(__VA_ARGS__), QB_VALS(__VA_ARGS__))
#define QB_DELETE_WHERE(d, cond, ...) \
    qb_delete_where((d), (cond), QB_NVALS(__VA_ARGS__), QB_VALS(__VA_ARGS__))
#define QB_RAW(out, sql, fetch, ...) \
    qb_query_raw((out), (sql), QB_NVALS(__VA_ARGS__), QB_VALS(__VA_ARGS__), \
                 (fetch))

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_QB_H */
