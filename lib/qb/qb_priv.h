/*
 * qb_priv.h -- private helpers of the lib/qb builder: a growable string
 * with a sticky error, the SQL lexer used for placeholders, whitespace
 * collapse and fragment checks, and value copy/free.
 * Not installed; not API.  Hidden symbols (prefix qbi_).
 */
#ifndef WAITUNTIL_QB_PRIV_H
#define WAITUNTIL_QB_PRIV_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qb.h"
#include "qb_int.h"

/* Longest SQL text we produce: SQLite's default SQLITE_MAX_SQL_LENGTH. */
#define QBI_SQL_MAX 1000000000u

/* ---- string builder ---------------------------------------------------- */

typedef struct qbi_sb {
    char *p;      /* NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    int err;      /* sticky: QB_OK, QB_ENOMEM, or QB_EINVAL (too long) */
    unsigned char fixed; /* p is the caller's storage: grow by copying */
    unsigned char ws;    /* may hold a run of 2+ whitespace bytes, so the
                            SQL needs qbi_sql_collapse_inplace (sticky) */
} qbi_sb;

/* init, init_buf, free and addc are inline (below): every builder calls
 * them several times per statement. */
static inline void qbi_sb_init(qbi_sb *sb);
/* Start in caller storage buf[cap] (cap >= 1), e.g. a stack array: small
 * texts never touch the heap.  The buffer must outlive the builder. */
static inline void qbi_sb_init_buf(qbi_sb *sb, char *buf, size_t cap);
static inline void qbi_sb_free(qbi_sb *sb);
void qbi_sb_reset(qbi_sb *sb);            /* len = 0, keeps memory, err, ws */
void qbi_sb_add_slow(qbi_sb *sb, const char *s, size_t n);
void qbi_sb_adds(qbi_sb *sb, const char *s);
static inline void qbi_sb_addc(qbi_sb *sb, char c);
void qbi_sb_addf(qbi_sb *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Trusted SQL text from a caller (fragment, raw value): like qbi_sb_add,
 * and notes whether it holds a whitespace run that collapse would change. */
void qbi_sb_addu(qbi_sb *sb, const char *s, size_t n);
/* mark (may be 0) followed by the decimal digits of v. */
void qbi_sb_addnum(qbi_sb *sb, char mark, int64_t v);
/* Hand over the buffer (never NULL on success; "" when empty).  On a sticky
 * error returns NULL and frees.  The builder is reset either way. */
char *qbi_sb_take(qbi_sb *sb, size_t *len_out);

/* Room for one more element in array v (n in use, *cap allocated, elem
 * bytes each): when full, twice the capacity (first if it was 0).  inl,
 * if not NULL, is inline storage v may still be: it is copied out, never
 * reallocated or freed.  Returns the array (moved or not), or NULL on
 * ENOMEM with v and *cap unchanged. */
void *qbi_grow(void *v, size_t *cap, size_t n, size_t elem, size_t first,
               const void *inl);
/* The array of a copy: *v = n zeroed elements of elem bytes, *cap = n
 * (for n 0, *v NULL and *cap 0).  QB_OK, or QB_ENOMEM with *v NULL. */
int qbi_array_new(void **v, size_t *cap, size_t n, size_t elem);

/* JavaScript's \s for the ASCII range, which is what trimQuery used. */
static inline int qbi_is_space(char c)
{
    return c == ' ' || (unsigned char)(c - '\t') <= (unsigned char)('\r' - '\t');
}

/* Append n bytes.  The fast path (room, no error) is inline because the
 * builders append many short pieces.  A whitespace byte appended right
 * after one marks the buffer for collapse (see qbi_sb.ws). */
static inline void qbi_sb_add(qbi_sb *sb, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (qbi_is_space(s[0]) && sb->len > 0 && qbi_is_space(sb->p[sb->len - 1]))
        sb->ws = 1;
    if (sb->err == QB_OK && n < sb->cap - sb->len) {
        memcpy(sb->p + sb->len, s, n);
        sb->len += n;
        sb->p[sb->len] = '\0';
        return;
    }
    qbi_sb_add_slow(sb, s, n);
}

static inline void qbi_sb_addc(qbi_sb *sb, char c)
{
    qbi_sb_add(sb, &c, 1);
}

static inline void qbi_sb_init(qbi_sb *sb)
{
    *sb = (qbi_sb){ .p = NULL, .err = QB_OK };
}

static inline void qbi_sb_init_buf(qbi_sb *sb, char *buf, size_t cap)
{
    qbi_sb_init(sb);
    sb->p = buf;
    sb->cap = cap;
    sb->fixed = 1;
    buf[0] = '\0';
}

static inline void qbi_sb_free(qbi_sb *sb)
{
    if (!sb->fixed)
        free(sb->p);
    qbi_sb_init(sb);
}

/* ---- SQL lexing -------------------------------------------------------- */

/* A byte that may continue a PostgreSQL name.  Bytes >= 0x80 are letters
 * there. */
static inline int qbi_pg_idchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '$' || c >= 0x80;
}

/* The end of the token at s[i] if it is a literal, quoted name or
 * comment (and on PostgreSQL one of the tokens below), in dialect d; i
 * otherwise.  *closed is set to whether its end was found (an
 * unterminated one runs to n).
 *   both:       '..' and ".." (a doubled quote stays inside), -- to the
 *               end of the line (the newline is not part of it), block
 *               comments;
 *   SQLite:     `..` and [..] too; block comments do not nest; no
 *               backslash escapes, no dollar quoting;
 *   PostgreSQL: E'..' (e too) where a backslash escapes the next byte (''
 *               still works); $$..$$ and $tag$..$tag$ (tag: [A-Za-z0-9_]
 *               and bytes >= 0x80, not starting with a digit); block
 *               comments nest; `..` and [..] are not quotes; and, whole,
 *               a parameter $N (qbi_pg_param tells it), a placeholder
 *               ?/?N (s[i] == '?' tells it), a name ([A-Za-z_] or a byte
 *               >= 0x80, then those, digits and '$') and a number
 *               (digits, '_' or '.' between digits), so a '$' or quote
 *               inside a name is never taken for a token start (a$1 and
 *               x$$ are names).
 *               '..' has no backslash escapes (standard_conforming_strings
 *               = on, the default since 9.1).
 * Scan from the start of the text, stepping over what this returns (one
 * byte when it returns i): i must be a token start, which keeps the rules
 * free of look-back. */
size_t qbi_sql_skip(const char *s, size_t n, size_t i, qb_dialect d,
                    int *closed);

/* Parameter numbers above this are reported as QBI_PARAM_CAP + 1. */
#define QBI_PARAM_CAP 1000000u
/* If s[i] starts a PostgreSQL parameter $N, return the index past it and
 * set *num to N (capped); otherwise return i and set *num to 0. */
size_t qbi_pg_param(const char *s, size_t n, size_t i, size_t *num);
/* The index SQLite gives the placeholder token s[i..j) (`?` or `?N`, j
 * past its digits): N, or for a bare `?` one more than *maxidx, which is
 * raised to it.  N is capped just past 10^6. */
size_t qbi_sqlite_param(const char *s, size_t i, size_t j, size_t *maxidx);
/* Highest $N in s[0..n) outside literals and comments (0 if none). */
size_t qbi_pg_max_param(const char *s, size_t n);

/* First index >= i of s[0..n) that is neither whitespace nor in a
 * comment (dialect d); n if there is none. */
size_t qbi_sql_skip_blank(const char *s, size_t n, size_t i, qb_dialect d);
/* The index of the ';' that ends the PostgreSQL statement starting at
 * s[i], or n: literals and comments skipped, a ';' inside parentheses or
 * inside a routine's BEGIN ... END body (CREATE [OR REPLACE] FUNCTION |
 * PROCEDURE ... BEGIN ATOMIC ... END, with CASE ... END inside) does not
 * end it -- the way psql splits a script.  For messages only: the server
 * parses the script itself. */
size_t qbi_pg_stmt_end(const char *s, size_t n, size_t i);
/* For error messages about script s: the statement s[start..end) as
 * "statement K at line L (<its text on one line, at most QBI_EXCERPT_MAX
 * bytes, '...' if cut>)" in buf[cap].  start is where the statement's
 * first token is (qbi_sql_skip_blank); L counts from 1. */
#define QBI_EXCERPT_MAX 60u
void qbi_sql_stmt_where(char *buf, size_t cap, const char *s, size_t start,
                        size_t end, size_t k);

/* Copy n bytes of SQL collapsing each run of two or more whitespace bytes
 * outside quoted regions (dialect d's rules) into one space (workers-qb's
 * trimQuery, fixed so literals keep their bytes).  A run that ends a line
 * comment keeps a newline so the comment cannot swallow what follows. */
void qbi_sql_collapse(qbi_sb *out, const char *s, size_t n, qb_dialect d);
/* The same collapse done in place on s[0..n); returns the new length w and
 * writes a NUL at s[w] (s[n] must be writable).  w <= n. */
size_t qbi_sql_collapse_inplace(char *s, size_t n, qb_dialect d);

/* ---- values ------------------------------------------------------------ */

/* Copy src into dst: TEXT/BLOB/RAW bytes are duplicated (NUL-terminated)
 * unless src is borrowed.  QB_V_SELECT is copied as the pointer.  On
 * QB_ENOMEM dst is a NULL value. */
int qbi_value_copy(qb_value *dst, const qb_value *src);
/* Release what qbi_value_copy allocated; dst becomes NULL. */
void qbi_value_clear(qb_value *v);
/* 1 if the value type is a plain bindable one (not RAW/SELECT/unknown). */
int qbi_value_bindable(const qb_value *v);

/* ---- queries ----------------------------------------------------------- */

/* Make a query as ONE allocation holding the struct, a copy of params
 * (bytes of non-borrowed TEXT/BLOB copied too, NUL-terminated), sql and
 * count_sql (may be NULL).  params must be bindable values.  Returns QB_OK,
 * QB_ENOMEM or QB_EINVAL (too large); *out is NULL on error.
 * Exception: a QB_KIND_RAW query keeps its SQL in an allocation of its
 * own, so a holder may swap q->sql (the executor's tests do).
 * qb_query_free releases it; parts replaced later by separately allocated
 * ones are still freed one by one. */
int qbi_query_make(qb_kind kind, qb_fetch fetch, qb_dialect dialect,
                   const char *sql, size_t sql_len, const char *count_sql,
                   size_t count_len, const qb_value *params, size_t nparams,
                   qb_query **out);

/* The block qbi_query_make fills, for a builder that writes into it:
 * header set, room for the SQL at q->sql (sql_len bytes, NUL already at
 * the end), for count SQL at q->count_sql unless count_len is SIZE_MAX
 * (likewise), nparams values (unset) and bytes bytes of value data at
 * *data.  QB_OK, QB_ENOMEM or QB_EINVAL (too large). */
int qbi_query_alloc(qb_kind kind, qb_fetch fetch, qb_dialect dialect,
                    size_t sql_len, size_t count_len, size_t nparams,
                    size_t bytes, char **data, qb_query **out);
/* Set *d to v, copying its bytes (from bytes if not NULL, else v's own)
 * to at when v owns them (n + 1 bytes, NUL-terminated); returns where
 * the next value's bytes go. */
char *qbi_query_put_value(qb_value *d, const qb_value *v, const void *bytes,
                          char *at);

/* qb_query_raw in dialect d: the same checks, whitespace collapsed by d's
 * lexical rules; placeholders are left as written. */
int qbi_query_raw(qb_query **out, qb_dialect d, const char *sql,
                  size_t nargs, const qb_value *args, qb_fetch fetch);

/* ---- builder internals (clause.c) -------------------------------------- */

/* Bounds on what one builder may hold: items per list, subquery nesting
 * and orWhere nesting (rendering recurses over both). */
#define QBI_MAX_ITEMS 10000u
#define QBI_MAX_DEPTH 32u
#define QBI_DEFAULT_MAX_PARAMS 32766u
#define QBI_MAX_PARAMS_LIMIT 250000u /* Debian's SQLITE_MAX_VARIABLE_NUMBER */
#define QBI_MAX_ROWS 1000000u

/* Sticky error: first one wins. */
typedef struct qbi_err {
    int code;
    char *msg; /* owned; NULL means qb_strerror(code) */
} qbi_err;

void qbi_seterr(qbi_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qbi_err_free(qbi_err *e);
int qbi_err_copy(qbi_err *dst, const qbi_err *src);
const char *qbi_errmsg(const qbi_err *e);

typedef struct qbi_strlist {
    char **v;
    size_t n, cap;
} qbi_strlist;

int qbi_strlist_add(qbi_strlist *l, const char *s);
void qbi_strlist_free(qbi_strlist *l);
int qbi_strlist_copy(qbi_strlist *dst, const qbi_strlist *src);
void qbi_strlist_join(qbi_sb *sb, const qbi_strlist *l, const char *sep);

/* Check a trusted SQL fragment: quotes and comments closed, no ';', no
 * named parameters, and no placeholder at all.  Returns QB_OK or records
 * the error in e (clause names the place in messages). */
int qbi_fragment_check(qbi_err *e, const char *clause, const char *frag);

/* Validate a name: mode 0 plain identifier, 1 qb_ident_valid (one dot). */
int qbi_name_check(qbi_err *e, const char *what, const char *name, int mode);

/* One where/having call: its condition texts share its values. */
typedef struct qbi_call {
    qb_value *vals;   /* owned copies; QB_V_SELECT points to an owned clone */
    size_t nvals;
} qbi_call;

typedef struct qbi_node qbi_node;
typedef struct qbi_nlist {
    qbi_node **v;
    size_t n, cap;
} qbi_nlist;
struct qbi_node {
    int is_or;
    char *text;     /* leaf */
    size_t call;    /* leaf: index into clause calls */
    qbi_nlist left, right; /* OR node */
};

typedef struct qbi_clause {
    qbi_nlist top;     /* ANDed */
    qbi_call *calls;
    size_t ncalls, capcalls;
    size_t depth;      /* OR nesting */
    size_t nleaves;
} qbi_clause;

void qbi_clause_free(qbi_clause *c);
int qbi_clause_copy(qbi_clause *dst, const qbi_clause *src);
/* Append ncond conditions sharing n values (AND, or OR with what is there).
 * Values are copied (subqueries cloned).  Errors are recorded in e. */
void qbi_clause_add(qbi_clause *c, qbi_err *e, const char *clause, int or_,
                    size_t ncond, const char *const *conds, size_t n,
                    const qb_value *vals);

/* Rendering context: one per statement being built, on the stack.  The
 * text and the parameter list start in inline arrays, so a typical
 * statement renders without touching the heap. */
#define QBI_RCTX_TEXT 512
#define QBI_RCTX_PARAMS 16
typedef struct qbi_rctx {
    qbi_sb sb;
    qb_dialect dialect;
    int explicit_num;  /* always render ?N */
    int no_push;       /* replaying a subquery: numbers only */
    int sqlite_only;   /* rendered something PostgreSQL lacks */
    size_t counter;    /* parameters assigned so far */
    size_t maxemit;    /* largest index written so far */
    qb_value *params;  /* borrowed pointers into builders' values */
    size_t nparams, cap;
    int err;           /* first failure while rendering (QB_E*) */
    qb_value params_inl[QBI_RCTX_PARAMS];
    char text_inl[QBI_RCTX_TEXT];
} qbi_rctx;

void qbi_rctx_init(qbi_rctx *r, qb_dialect d, int explicit_num);
void qbi_rctx_free(qbi_rctx *r);
/* Bind one value: assign the next index, remember the value (copied by
 * value; its bytes stay borrowed until finish copies them), write the
 * placeholder (bare ? only when allowed and it is what SQLite would pick).
 * bytes, if not NULL, replaces the value's bytes pointer (a builder that
 * keeps them at an offset in a pool that may move). */
void qbi_rctx_bind(qbi_rctx *r, const qb_value *v, const void *bytes,
                   int bare);
void qbi_rctx_emit_index(qbi_rctx *r, size_t g, int bare);
void qbi_clause_render(qbi_rctx *r, const qbi_clause *c);
/* Finish: collapse whitespace (only if the text may need it), copy params,
 * make the query (one allocation).  count (may be NULL) is rendered too and
 * becomes the query's count_sql; it must bind the same params. */
int qbi_rctx_finish(qbi_rctx *r, qb_kind kind, qb_fetch fetch,
                    qbi_rctx *count, qb_query **out);

/* ORDER BY item (shared by select and delete). */
void qbi_order_add(qbi_strlist *l, qbi_err *e, const char *expr,
                   qb_order o);
/* LIMIT or OFFSET n (what: "limit" or "offset", for the message): n must
 * not be negative; sets *has and *val. */
void qbi_count_set(qbi_err *e, const char *what, int64_t n, int *has,
                   int64_t *val);
/* 1 if d is a known dialect, else 0 with the error recorded in e. */
int qbi_dialect_ok(qbi_err *e, qb_dialect d);

/* How every build starts: QB_EINVAL without out (else *out = NULL from
 * here on) or without a builder b, then b's sticky error or QB_OK. */
#define QBI_BUILD_BEGIN(b, out) \
    qbi_build_begin((out), (b) != NULL ? &(b)->err : NULL)
int qbi_build_begin(qb_query **out, const qbi_err *e);

/* A builder that may take a call: not NULL, no sticky error yet. */
#define QBI_USABLE(b) ((b) != NULL && (b)->err.code == QB_OK)

/* ---- accessors the builders share ------------------------------------
 * Builders name their common fields alike (err, dialect, order_by,
 * has_limit/limit, has_offset/offset), so the public accessors that only
 * pass them on are written once, here, and defined per builder type T
 * (qb_T_error, ...).  okf(b) is the builder's "may take a call" test. */

/* qb_T_error, qb_T_errmsg and qb_T_dialect. */
#define QBI_DEFINE_ERR_DIALECT(T, okf)                                       \
    QB_API int qb_##T##_error(const qb_##T *b)                               \
    {                                                                        \
        return b ? b->err.code : QB_EINVAL;                                  \
    }                                                                        \
    QB_API const char *qb_##T##_errmsg(const qb_##T *b)                      \
    {                                                                        \
        return b ? qbi_errmsg(&b->err) : qb_strerror(QB_EINVAL);             \
    }                                                                        \
    QB_API void qb_##T##_dialect(qb_##T *b, qb_dialect d)                    \
    {                                                                        \
        if (okf(b) && qbi_dialect_ok(&b->err, d))                            \
            b->dialect = d;                                                  \
    }

/* qb_T_order_by, qb_T_limit and qb_T_offset (SELECT and DELETE). */
#define QBI_DEFINE_ORDER_LIMIT(T, okf)                                       \
    QB_API void qb_##T##_order_by(qb_##T *b, const char *expr, qb_order o)   \
    {                                                                        \
        if (okf(b))                                                          \
            qbi_order_add(&b->order_by, &b->err, expr, o);                   \
    }                                                                        \
    QB_API void qb_##T##_limit(qb_##T *b, int64_t n)                         \
    {                                                                        \
        if (okf(b))                                                          \
            qbi_count_set(&b->err, "limit", n, &b->has_limit, &b->limit);    \
    }                                                                        \
    QB_API void qb_##T##_offset(qb_##T *b, int64_t n)                        \
    {                                                                        \
        if (okf(b))                                                          \
            qbi_count_set(&b->err, "offset", n, &b->has_offset,              \
                          &b->offset);                                       \
    }

/* select.c hooks used by clause.c */
struct qb_select *qbi_select_clone(const struct qb_select *s);
void qbi_select_free(struct qb_select *s);
void qbi_select_render(qbi_rctx *r, const struct qb_select *s);
const qbi_err *qbi_select_err(const struct qb_select *s);
size_t qbi_select_depth(const struct qb_select *s);

#endif /* WAITUNTIL_QB_PRIV_H */
