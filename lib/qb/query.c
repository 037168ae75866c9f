/*
 * query.c -- built queries: raw construction, accessors, copy, debug SQL.
 *
 * DESIGN
 *   A qb_query is immutable once built and owns everything it points to
 *   (except borrowed value bytes).  params[i] binds to placeholder index
 *   i+1; the builder renders placeholders so that this holds.
 *
 *   qb_query_debug_sql() parses the SQL the way SQLite numbers parameters
 *   (`?N` is index N; a bare `?` is one more than the largest index seen so
 *   far; `$N` for the PostgreSQL dialect), skipping quoted literals,
 *   quoted identifiers and comments, and renders each value with
 *   workers-qb's toDebugSQL format.  Unlike workers-qb's two regex passes
 *   it cannot disagree with the engine on mixed `?N` / `?`.
 */
#include "qb_priv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

qb_query *qbi_query_new(qb_kind kind, qb_fetch fetch, qb_dialect dialect)
{
    qb_query *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->kind = kind;
    q->fetch = fetch;
    q->dialect = dialect;
    return q;
}

QB_API void qb_query_free(qb_query *q)
{
    while (q != NULL) {
        qb_query *next = q->next;
        size_t i;

        for (i = 0; i < q->nparams; i++)
            qbi_value_clear(&q->params[i]);
        free(q->params);
        free(q->sql);
        free(q->count_sql);
        free(q);
        q = next;
    }
}

QB_API int qb_query_raw(qb_query **out, const char *sql, size_t nargs,
                        const qb_value *args, qb_fetch fetch)
{
    qb_query *q;
    qbi_sb sb;
    size_t i;
    int rc;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (sql == NULL || (nargs > 0 && args == NULL) ||
        (fetch != QB_FETCH_NONE && fetch != QB_FETCH_ONE &&
         fetch != QB_FETCH_ALL))
        return QB_EINVAL;
    /* SQLite's hard ceiling on parameters; more cannot be bound anyway. */
    if (nargs > 32766)
        return QB_EINVAL;
    for (i = 0; i < nargs; i++)
        if (!qbi_value_bindable(&args[i]))
            return QB_EINVAL;

    q = qbi_query_new(QB_KIND_RAW, fetch, QB_DIALECT_SQLITE);
    if (q == NULL)
        return QB_ENOMEM;
    qbi_sb_init(&sb);
    qbi_sql_collapse(&sb, sql, strlen(sql));
    rc = sb.err;
    q->sql = qbi_sb_take(&sb, &q->sql_len);
    if (q->sql == NULL)
        goto fail;
    if (nargs > 0) {
        q->params = calloc(nargs, sizeof *q->params);
        if (q->params == NULL) {
            rc = QB_ENOMEM;
            goto fail;
        }
        for (i = 0; i < nargs; i++) {
            rc = qbi_value_copy(&q->params[i], &args[i]);
            if (rc != QB_OK)
                goto fail;
            q->nparams++;
        }
    }
    *out = q;
    return QB_OK;

fail:
    qb_query_free(q);
    return rc != QB_OK ? rc : QB_ENOMEM;
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

QB_API const qb_query *qb_query_next(const qb_query *q)
{
    return q ? q->next : NULL;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static qb_query *dup_one(const qb_query *q)
{
    qb_query *c = qbi_query_new(q->kind, q->fetch, q->dialect);
    size_t i;

    if (c == NULL)
        return NULL;
    if (q->sql != NULL) {
        c->sql = dup_bytes(q->sql, q->sql_len);
        if (c->sql == NULL)
            goto fail;
        c->sql_len = q->sql_len;
    }
    if (q->count_sql != NULL) {
        c->count_sql = dup_bytes(q->count_sql, strlen(q->count_sql));
        if (c->count_sql == NULL)
            goto fail;
    }
    if (q->nparams > 0) {
        c->params = calloc(q->nparams, sizeof *c->params);
        if (c->params == NULL)
            goto fail;
        for (i = 0; i < q->nparams; i++) {
            if (qbi_value_copy(&c->params[i], &q->params[i]) != QB_OK)
                goto fail;
            c->nparams++;
        }
    }
    return c;
fail:
    qb_query_free(c);
    return NULL;
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
    char mark = pg ? '$' : '?';

    while (i < n) {
        j = qbi_sql_skip(s, n, i, !pg, &closed);
        if (j != i) {
            qbi_sb_add(sb, s + i, j - i);
            i = j;
            continue;
        }
        if (s[i] != mark || (pg && !(i + 1 < n && s[i + 1] >= '0' &&
                                     s[i + 1] <= '9'))) {
            qbi_sb_addc(sb, s[i++]);
            continue;
        }
        j = i + 1;
        idx = 0;
        while (j < n && s[j] >= '0' && s[j] <= '9') {
            if (idx < 1000000)
                idx = idx * 10 + (size_t)(s[j] - '0');
            j++;
        }
        if (j == i + 1)
            idx = maxidx + 1;
        if (idx > maxidx)
            maxidx = idx;
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
