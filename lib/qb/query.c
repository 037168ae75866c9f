/*
 * query.c -- built queries: raw construction, accessors, copy, debug SQL.
 *
 * DESIGN
 *   A qb_query is immutable once built and owns everything it points to
 *   (except borrowed value bytes).  params[i] binds to placeholder index
 *   i+1; the builder renders placeholders so that this holds.  It is one
 *   allocation (qbi_query_make): the struct, then params at an offset
 *   rounded up to qb_value's alignment, then only char data (SQL texts,
 *   value bytes), so no non-char object ever sits at an unaligned offset.
 *
 *   qb_query_debug_sql() parses the SQL the way SQLite numbers parameters
 *   (`?N` is index N; a bare `?` is one more than the largest index seen so
 *   far; `$N` for the PostgreSQL dialect), skipping quoted literals,
 *   quoted identifiers and comments by the query's dialect's rules
 *   (qbi_sql_skip), and renders each value with
 *   workers-qb's toDebugSQL format.  Unlike workers-qb's two regex passes
 *   it cannot disagree with the engine on mixed `?N` / `?`.
 */
#include "qb_priv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of a value that a query owns a copy of (0: none). */
static int owns_bytes(const qb_value *v)
{
    return (v->type == QB_V_TEXT || v->type == QB_V_BLOB ||
            v->type == QB_V_RAW) && !(v->flags & QB_VF_BORROWED);
}

int qbi_query_alloc(qb_kind kind, qb_fetch fetch, qb_dialect dialect,
                    size_t sql_len, size_t count_len, size_t nparams,
                    size_t bytes, char **data, qb_query **out)
{
    /* Layout: the struct, params (aligned for qb_value), then char data:
     * sql, count_sql, value bytes.  Every size is checked by subtraction
     * against what is left of SIZE_MAX. */
    const size_t al = _Alignof(qb_value);
    size_t poff = (sizeof(qb_query) + al - 1) / al * al;
    size_t total;
    qb_query *q;
    char *at, *apart = NULL;
    /* A raw query keeps its SQL in an allocation of its own: holders of
     * raw queries may swap the text (the executor's tests do). */
    int sql_apart = kind == QB_KIND_RAW;
    int has_count = count_len != SIZE_MAX;

    *out = NULL;
    if (sql_len >= QBI_SQL_MAX || (has_count && count_len >= QBI_SQL_MAX) ||
        nparams > (SIZE_MAX - poff) / sizeof(qb_value))
        return QB_EINVAL;
    total = poff + nparams * sizeof(qb_value);
    if (!sql_apart) {
        if (sql_len + 1 > SIZE_MAX - total)
            return QB_EINVAL;
        total += sql_len + 1;
    }
    if (has_count) {
        if (count_len + 1 > SIZE_MAX - total)
            return QB_EINVAL;
        total += count_len + 1;
    }
    if (bytes > SIZE_MAX - total)
        return QB_EINVAL;
    total += bytes;
    if (sql_apart && (apart = malloc(sql_len + 1)) == NULL)
        return QB_ENOMEM;
    q = malloc(total);
    if (q == NULL) {
        free(apart);
        return QB_ENOMEM;
    }
    q->kind = kind;
    q->fetch = fetch;
    q->dialect = dialect;
    q->portable = 0;
    q->next = NULL;
    q->nparams = nparams;
    q->params = nparams > 0 ? (qb_value *)(void *)((char *)q + poff) : NULL;
    at = (char *)q + poff + nparams * sizeof(qb_value);
    q->sql = sql_apart ? apart : at;
    q->sql_len = sql_len;
    q->sql[sql_len] = '\0';
    if (!sql_apart)
        at += sql_len + 1;
    q->count_sql = NULL;
    if (has_count) {
        q->count_sql = at;
        at[count_len] = '\0';
        at += count_len + 1;
    }
    q->blk_lo = (const char *)q;
    q->blk_hi = (const char *)q + total;
    *data = at;
    *out = q;
    return QB_OK;
}

char *qbi_query_put_value(qb_value *d, const qb_value *v, const void *bytes,
                          char *at)
{
    size_t n;

    if (!owns_bytes(v)) {
        *d = *v;
        return at;
    }
    /* field by field: v may have been written that way, and a
     * whole-struct load across those stores would stall */
    d->type = v->type;
    d->flags = v->flags;
    n = d->u.b.n = v->u.b.n;
    if (n > 0)
        memcpy(at, bytes != NULL ? bytes : v->u.b.p, n);
    at[n] = '\0';
    d->u.b.p = at;
    return at + n + 1;
}

int qbi_query_make(qb_kind kind, qb_fetch fetch, qb_dialect dialect,
                   const char *sql, size_t sql_len, const char *count_sql,
                   size_t count_len, const qb_value *params, size_t nparams,
                   qb_query **out)
{
    size_t bytes = 0, i, n;
    char *at;
    int rc;

    *out = NULL;
    for (i = 0; i < nparams; i++) {
        if (!owns_bytes(&params[i]))
            continue;
        n = params[i].u.b.n;
        /* (n + 1 always: a NUL for text and a non-NULL pointer for an
         * empty blob, which SQLite would otherwise bind as NULL) */
        if (n >= QBI_SQL_MAX || n + 1 > SIZE_MAX - bytes)
            return QB_EINVAL;
        bytes += n + 1;
    }
    rc = qbi_query_alloc(kind, fetch, dialect, sql_len,
                         count_sql != NULL ? count_len : SIZE_MAX, nparams,
                         bytes, &at, out);
    if (rc != QB_OK)
        return rc;
    if (sql_len > 0)
        memcpy((*out)->sql, sql, sql_len);
    if (count_sql != NULL && count_len > 0)
        memcpy((*out)->count_sql, count_sql, count_len);
    for (i = 0; i < nparams; i++)
        at = qbi_query_put_value(&(*out)->params[i], &params[i], NULL, at);
    return QB_OK;
}

static int in_block(const qb_query *q, const void *p)
{
    uintptr_t u = (uintptr_t)p;
    return u >= (uintptr_t)q->blk_lo && u < (uintptr_t)q->blk_hi;
}

QB_API void qb_query_free(qb_query *q)
{
    while (q != NULL) {
        qb_query *next = q->next;
        size_t i;

        for (i = 0; i < q->nparams; i++)
            if (owns_bytes(&q->params[i]) && !in_block(q, q->params[i].u.b.p))
                free((void *)(uintptr_t)q->params[i].u.b.p);
        if (!in_block(q, q->params))
            free(q->params);
        if (!in_block(q, q->sql))
            free(q->sql);
        if (!in_block(q, q->count_sql))
            free(q->count_sql);
        free(q);
        q = next;
    }
}

int qbi_query_raw(qb_query **out, qb_dialect d, const char *sql,
                  size_t nargs, const qb_value *args, qb_fetch fetch)
{
    char buf[512];
    qbi_sb sb;
    size_t i;
    int rc;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (sql == NULL || (nargs > 0 && args == NULL) ||
        (fetch != QB_FETCH_NONE && fetch != QB_FETCH_ONE &&
         fetch != QB_FETCH_ALL) ||
        (d != QB_DIALECT_SQLITE && d != QB_DIALECT_POSTGRES))
        return QB_EINVAL;
    /* SQLite's hard ceiling on parameters; more cannot be bound anyway. */
    if (nargs > 32766)
        return QB_EINVAL;
    for (i = 0; i < nargs; i++)
        if (!qbi_value_bindable(&args[i]))
            return QB_EINVAL;

    qbi_sb_init_buf(&sb, buf, sizeof buf);
    qbi_sql_collapse(&sb, sql, strlen(sql), d);
    rc = sb.err;
    if (rc == QB_OK)
        rc = qbi_query_make(QB_KIND_RAW, fetch, d, sb.p, sb.len, NULL, 0,
                            args, nargs, out);
    /* Raw SQLite text converts the way qb_query_raw_dialect would. */
    if (rc == QB_OK)
        (*out)->portable = d == QB_DIALECT_SQLITE;
    qbi_sb_free(&sb);
    return rc;
}

QB_API int qb_query_raw(qb_query **out, const char *sql, size_t nargs,
                        const qb_value *args, qb_fetch fetch)
{
    return qbi_query_raw(out, QB_DIALECT_SQLITE, sql, nargs, args, fetch);
}

QB_API int qb_query_rebind(const qb_query *tpl, size_t nargs,
                           const qb_value *args, qb_query **out)
{
    size_t i;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (tpl == NULL || tpl->next != NULL || nargs != tpl->nparams ||
        (nargs > 0 && args == NULL))
        return QB_EINVAL;
    for (i = 0; i < nargs; i++)
        if (!qbi_value_bindable(&args[i]))
            return QB_EINVAL;
    if (qbi_query_make(tpl->kind, tpl->fetch, tpl->dialect, tpl->sql,
                       tpl->sql_len, tpl->count_sql,
                       tpl->count_sql ? strlen(tpl->count_sql) : 0, args,
                       nargs, out) != QB_OK)
        return QB_ENOMEM;
    (*out)->portable = tpl->portable;
    return QB_OK;
}

QB_API const char *qb_query_sql(const qb_query *q)
{
    return q ? q->sql : NULL;
}

QB_API size_t qb_query_nparams(const qb_query *q)
{
    return q ? q->nparams : 0;
}

QB_API const qb_value *qb_query_params(const qb_query *q)
{
    return q ? q->params : NULL;
}

QB_API qb_fetch qb_query_fetch(const qb_query *q)
{
    return q ? q->fetch : QB_FETCH_NONE;
}

QB_API qb_kind qb_query_kind(const qb_query *q)
{
    return q ? q->kind : QB_KIND_RAW;
}

QB_API qb_dialect qb_query_dialect(const qb_query *q)
{
    return q ? q->dialect : QB_DIALECT_SQLITE;
}

QB_API const qb_query *qb_query_next(const qb_query *q)
{
    return q ? q->next : NULL;
}

static qb_query *dup_one(const qb_query *q)
{
    qb_query *c = NULL;
    const char *sql = q->sql != NULL ? q->sql : "";

    /* (a query is never built without SQL; "" only guards hand-made ones) */
    if (qbi_query_make(q->kind, q->fetch, q->dialect, sql,
                       q->sql != NULL ? q->sql_len : 0, q->count_sql,
                       q->count_sql != NULL ? strlen(q->count_sql) : 0,
                       q->params, q->nparams, &c) != QB_OK)
        return NULL;
    return c;
}

QB_API qb_query *qb_query_dup(const qb_query *q)
{
    qb_query *head = NULL, **tail = &head;

    if (q == NULL)
        return NULL;
    for (; q != NULL; q = q->next) {
        *tail = dup_one(q);
        if (*tail == NULL) {
            qb_query_free(head);
            return NULL;
        }
        tail = &(*tail)->next;
    }
    return head;
}

/* ---- debug SQL --------------------------------------------------------- */

static void debug_real(qbi_sb *sb, double d)
{
    char buf[40];
    int prec;

    /* JavaScript's String(number): shortest text that reads back equal. */
    if (isnan(d)) {
        qbi_sb_adds(sb, "NaN");
        return;
    }
    if (isinf(d)) {
        qbi_sb_adds(sb, d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    qbi_sb_adds(sb, buf);
}

static void debug_text(qbi_sb *sb, const char *p, size_t n)
{
    size_t i;
    int open = 0;

    /* Quotes doubled; a NUL byte cannot live in a C string, so it is shown
     * as SQL that would produce it. */
    for (i = 0; i < n; i++) {
        if (p[i] == '\0') {
            if (open)
                qbi_sb_adds(sb, "' || ");
            else if (i > 0)
                qbi_sb_adds(sb, " || ");
            qbi_sb_adds(sb, "char(0)");
            open = 0;
            continue;
        }
        if (!open) {
            if (i > 0)
                qbi_sb_adds(sb, " || ");
            qbi_sb_addc(sb, '\'');
            open = 1;
        }
        if (p[i] == '\'')
            qbi_sb_addc(sb, '\'');
        qbi_sb_addc(sb, p[i]);
    }
    if (n == 0)
        qbi_sb_adds(sb, "''");
    else if (open)
        qbi_sb_addc(sb, '\'');
}

static void debug_value(qbi_sb *sb, const qb_value *v)
{
    switch (v->type) {
    case QB_V_NULL: qbi_sb_adds(sb, "NULL"); break;
    case QB_V_INT: qbi_sb_addf(sb, "%lld", (long long)v->u.i); break;
    case QB_V_BOOL: qbi_sb_adds(sb, v->u.i ? "1" : "0"); break;
    case QB_V_REAL: debug_real(sb, v->u.d); break;
    case QB_V_TEXT: debug_text(sb, v->u.b.p, v->u.b.n); break;
    case QB_V_BLOB: qbi_sb_adds(sb, "'[ArrayBuffer]'"); break;
    default: qbi_sb_adds(sb, "?"); break;
    }
}

static void debug_one(qbi_sb *sb, const qb_query *q)
{
    const char *s = q->sql;
    size_t n = q->sql_len, i = 0, j, idx, maxidx = 0;
    int closed, pg = q->dialect == QB_DIALECT_POSTGRES;

    while (i < n) {
        j = qbi_sql_skip(s, n, i, q->dialect, &closed);
        if (pg && j != i && qbi_pg_param(s, n, i, &idx) == j) {
            /* $N: a token of the lexer's own */
        } else if (j != i) {
            qbi_sb_add(sb, s + i, j - i);
            i = j;
            continue;
        } else if (!pg && s[i] == '?') {
            for (j = i + 1; j < n && s[j] >= '0' && s[j] <= '9'; j++)
                ;
            idx = qbi_sqlite_param(s, i, j, &maxidx);
        } else {
            qbi_sb_addc(sb, s[i++]);
            continue;
        }
        if (idx >= 1 && idx <= q->nparams)
            debug_value(sb, &q->params[idx - 1]);
        else
            qbi_sb_add(sb, s + i, j - i); /* unbound: leave as written */
        i = j;
    }
}

QB_API char *qb_query_debug_sql(const qb_query *q)
{
    qbi_sb sb;

    if (q == NULL || q->sql == NULL)
        return NULL;
    qbi_sb_init(&sb);
    for (; q != NULL; q = q->next) {
        if (sb.len > 0)
            qbi_sb_adds(&sb, "; ");
        if (q->sql != NULL)
            debug_one(&sb, q);
    }
    return qbi_sb_take(&sb, NULL);
}
