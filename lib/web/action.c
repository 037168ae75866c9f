/*
 * action.c -- declarative routes: turn a route's `defer` blocks into qb
 * queries with values taken from the request, and register them.
 *
 * Values are always bound: every request value becomes a qb_value (copied
 * by the builder, since the request's arena dies before the query runs);
 * only `raw:` sources, which are conf text, are inlined.  Table and column
 * names were validated as plain identifiers when the conf was loaded.
 * Statements are rendered in the dialect of the pool that runs them
 * (?N for SQLite, $N for PostgreSQL); raw: text is passed through as
 * written, so it must be valid SQL for that engine.
 */
#define _GNU_SOURCE
#include "web_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 64

static qb_value to_qb(const web_value *v)
{
    switch (v->type) {
    case WEB_V_TEXT: return qb_textn(v->s, v->len);
    case WEB_V_INT: return qb_int(v->i);
    case WEB_V_REAL: return qb_real(v->d);
    case WEB_V_BOOL: return qb_bool((int)v->i);
    case WEB_V_RAW: return qb_raw(v->s);
    case WEB_V_ABSENT:
    case WEB_V_NULL:
    default: return qb_null();
    }
}

/* "col = ?" for a where column (identifiers are validated at load). */
static int eq_cond(char *buf, size_t len, const char *col)
{
    int n = snprintf(buf, len, "%s = ?", col);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* rc, with its reason in eb (every failure of web_defer_build says one). */
static int build_fail(int rc, char *eb, size_t el, const char *what)
{
    if (eb != NULL)
        snprintf(eb, el, "%s", rc == QB_ENOMEM ? "out of memory" : what);
    return rc;
}

int web_defer_build(const web_defer *d, qb_dialect dialect,
                    const web_value *cols, const web_value *sets,
                    const web_value *wheres, qb_query **out, char *eb,
                    size_t el)
{
    char cond[160];
    int rc = QB_EINVAL;
    const char *msg = "unknown defer kind";
    size_t i;

    *out = NULL;
    switch (d->kind) {
    case WEB_DEFER_INSERT:
    case WEB_DEFER_UPSERT: {
        qb_insert *ins = qb_insert_new(d->table);
        if (ins == NULL)
            return build_fail(QB_ENOMEM, eb, el, NULL);
        qb_insert_dialect(ins, dialect);
        for (i = 0; i < d->ncols; i++)
            qb_insert_set(ins, d->cols[i].column, to_qb(&cols[i]));
        if (d->kind == WEB_DEFER_UPSERT) {
            qb_insert_on_conflict(ins, d->nconflict, d->conflict);
            for (i = 0; i < d->nsets; i++)
                qb_insert_on_conflict_set(ins, d->sets[i].column,
                                          to_qb(&sets[i]));
        }
        rc = qb_insert_build(ins, out);
        msg = qb_insert_errmsg(ins);
        if (rc != QB_OK && eb != NULL)
            snprintf(eb, el, "%s", msg);
        qb_insert_free(ins);
        return rc;
    }
    case WEB_DEFER_UPDATE: {
        qb_update *u = qb_update_new(d->table);
        if (u == NULL)
            return build_fail(QB_ENOMEM, eb, el, NULL);
        qb_update_dialect(u, dialect);
        for (i = 0; i < d->nsets; i++)
            qb_update_set(u, d->sets[i].column, to_qb(&sets[i]));
        for (i = 0; i < d->nwheres; i++) {
            qb_value v = to_qb(&wheres[i]);
            if (eq_cond(cond, sizeof cond, d->wheres[i].column) != 0) {
                qb_update_free(u); /* never drop a WHERE silently */
                return build_fail(QB_EINVAL, eb, el,
                                  "where column name too long");
            }
            qb_update_where(u, cond, 1, &v);
        }
        rc = qb_update_build(u, out);
        if (rc != QB_OK && eb != NULL)
            snprintf(eb, el, "%s", qb_update_errmsg(u));
        qb_update_free(u);
        return rc;
    }
    case WEB_DEFER_DELETE: {
        qb_delete *del = qb_delete_new(d->table);
        if (del == NULL)
            return build_fail(QB_ENOMEM, eb, el, NULL);
        qb_delete_dialect(del, dialect);
        for (i = 0; i < d->nwheres; i++) {
            qb_value v = to_qb(&wheres[i]);
            if (eq_cond(cond, sizeof cond, d->wheres[i].column) != 0) {
                qb_delete_free(del); /* never drop a WHERE silently */
                return build_fail(QB_EINVAL, eb, el,
                                  "where column name too long");
            }
            qb_delete_where(del, cond, 1, &v);
        }
        rc = qb_delete_build(del, out);
        if (rc != QB_OK && eb != NULL)
            snprintf(eb, el, "%s", qb_delete_errmsg(del));
        qb_delete_free(del);
        return rc;
    }
    }
    if (eb != NULL)
        snprintf(eb, el, "%s", msg);
    return rc;
}

static int eval_all(const web_column *c, size_t n, const web_request *r,
                    const web_match *m, web_value *out)
{
    for (size_t i = 0; i < n; i++) {
        int rc = web_source_eval(&c[i].src, r, m, &out[i]);
        if (rc != WEB_OK)
            return rc;
    }
    return WEB_OK;
}

/* ---- templates -------------------------------------------------------------
 * A defer block's SQL text depends on the conf alone (validated names,
 * raw: text); only the bound values change per request.  So the builder
 * runs once per block, with marker values: the k-th source of the block
 * (cols, then sets, then wheres) is bound as the integer k.  The built
 * query's params then say which source feeds each placeholder, in the
 * builder's own order (an UPDATE binds its WHERE values first, an upsert
 * its DO UPDATE values first).  Per request: evaluate, map, bind. */

struct web_defer_tpl {
    qb_query *q;     /* built with marker values; rebound per request */
    size_t nparams;
    size_t *map;     /* params[j] comes from source map[j] */
};

static void mark(const web_column *c, size_t n, size_t base, web_value *v)
{
    for (size_t i = 0; i < n; i++) {
        memset(&v[i], 0, sizeof v[i]);
        if (c[i].src.kind == WEB_SRC_RAW) {
            v[i].type = WEB_V_RAW;
            v[i].s = c[i].src.text;
            v[i].len = c[i].src.len;
        } else {
            v[i].type = WEB_V_INT;
            v[i].i = (int64_t)(base + i);
        }
    }
}

int web_defer_tpl_create(const web_defer *d, qb_dialect dialect,
                         web_defer_tpl **out, char *eb, size_t el)
{
    web_value cols[MAX_COLS], sets[MAX_COLS], wheres[MAX_COLS];
    web_defer_tpl *t;
    qb_query *q = NULL;
    int rc;

    *out = NULL;
    if (d->ncols > MAX_COLS || d->nsets > MAX_COLS || d->nwheres > MAX_COLS) {
        if (eb != NULL)
            snprintf(eb, el, "too many columns (at most %d)", MAX_COLS);
        return QB_EINVAL;
    }
    mark(d->cols, d->ncols, 0, cols);
    mark(d->sets, d->nsets, d->ncols, sets);
    mark(d->wheres, d->nwheres, d->ncols + d->nsets, wheres);
    rc = web_defer_build(d, dialect, cols, sets, wheres, &q, eb, el);
    if (rc != QB_OK)
        return rc;
    if (qb_query_next(q) != NULL) {
        qb_query_free(q);
        if (eb != NULL)
            snprintf(eb, el, "cannot template this statement (it builds "
                             "more than one statement)");
        return QB_EINVAL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        qb_query_free(q);
        if (eb != NULL)
            snprintf(eb, el, "out of memory");
        return QB_ENOMEM;
    }
    t->q = q;
    t->nparams = qb_query_nparams(q);
    t->map = calloc(t->nparams ? t->nparams : 1, sizeof *t->map);
    if (t->map == NULL) {
        web_defer_tpl_free(t);
        if (eb != NULL)
            snprintf(eb, el, "out of memory");
        return QB_ENOMEM;
    }
    for (size_t j = 0; j < t->nparams; j++)
        t->map[j] = (size_t)qb_query_params(q)[j].u.i;
    *out = t;
    return QB_OK;
}

void web_defer_tpl_free(web_defer_tpl *t)
{
    if (t == NULL)
        return;
    qb_query_free(t->q);
    free(t->map);
    free(t);
}

const char *web_defer_tpl_sql(const web_defer_tpl *t)
{
    return t ? qb_query_sql(t->q) : NULL;
}

const qb_query *web_defer_tpl_query(const web_defer_tpl *t)
{
    return t ? t->q : NULL;
}

int web_call_register_defers(web_call *call, const web_route_conf *route)
{
    const web_request *r = web_call_request(call);
    const web_match *m = web_call_match(call);

    if (call == NULL || route == NULL)
        return WEB_EINVAL;
    for (size_t k = 0; k < route->ndefers; k++) {
        const web_defer *d = &route->defers[k];
        const web_defer_tpl *tpl = web_call_defer_tpl(call, k);
        web_value vals[3 * MAX_COLS];
        qb_value params[3 * MAX_COLS];
        qb_query *q = NULL;
        int rc, skip = 0;

        /* The server built every block's template at start (and refused
         * to start if one failed), so none is missing here. */
        if (tpl == NULL || d->ncols > MAX_COLS || d->nsets > MAX_COLS ||
            d->nwheres > MAX_COLS)
            return WEB_EINVAL;
        /* `if SOURCE;`: the query runs only when every one is present and
         * not empty (an empty X-User-ID must not update id = ''). */
        for (size_t i = 0; i < d->nconds && !skip; i++) {
            web_value v;
            rc = web_source_eval(&d->conds[i], r, m, &v);
            if (rc != WEB_OK)
                return rc;
            if (!web_value_present(&v))
                skip = 1;
        }
        if (skip)
            continue;
        /* Sources in template order: cols, then sets, then wheres. */
        if ((rc = eval_all(d->cols, d->ncols, r, m, vals)) != WEB_OK ||
            (rc = eval_all(d->sets, d->nsets, r, m, vals + d->ncols)) !=
                WEB_OK ||
            (rc = eval_all(d->wheres, d->nwheres, r, m,
                           vals + d->ncols + d->nsets)) != WEB_OK)
            return rc;
        for (size_t j = 0; j < tpl->nparams; j++)
            params[j] = to_qb(&vals[tpl->map[j]]);
        rc = qb_query_rebind(tpl->q, tpl->nparams, params, &q);
        if (rc != QB_OK) {
            web_logf(web_call_log(call), WEB_LOG_ERROR, "defer_build_failed",
                     "route=%s line=%d rc=%d", web_call_label(call), d->line,
                     rc);
            return rc == QB_ENOMEM ? WEB_ENOMEM : WEB_EINVAL;
        }
        rc = defer_wait_until_query(web_call_defer(call), q,
                                    web_call_label(call));
        if (rc == DEFER_ETOOMANY)
            return WEB_ETOOMANY;
        if (rc == DEFER_ENOMEM)
            return WEB_ENOMEM;
        if (rc != DEFER_OK)
            return WEB_EINVAL;
    }
    return WEB_OK;
}
