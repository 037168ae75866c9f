/*
 * result.c -- qb_result, the materialised rows of a query, built by both
 * executors (sqlite.c, pg.c) and read through qb_conn.h's accessors.
 */
#include "qb_int.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

qb_result *qbi_result_new(void)
{
    return calloc(1, sizeof(qb_result));
}

QB_API void qb_result_free(qb_result *r)
{
    if (r == NULL)
        return;
    free(r->names);
    free(r->types);
    free(r->cells);
    free(r->bytes);
    free(r);
}

int qbi_result_set_columns(qb_result *r, size_t n,
                           const char *(*name)(const void *src, size_t i),
                           const void *src)
{
    size_t total = 0, i;
    char *s;

    r->cols_set = 1;
    if (n == 0)
        return QB_OK;
    for (i = 0; i < n; i++) {
        const char *nm = name(src, i);
        total += strlen(nm ? nm : "") + 1;
    }
    r->names = malloc(n * sizeof(char *) + total);
    r->types = calloc(n, sizeof(unsigned));
    if (r->names == NULL || r->types == NULL)
        return QB_ENOMEM;
    s = (char *)(r->names + n);
    for (i = 0; i < n; i++) {
        const char *nm = name(src, i);
        size_t l = strlen(nm ? nm : "") + 1;
        memcpy(s, nm ? nm : "", l);
        r->names[i] = s;
        s += l;
    }
    r->ncols = n;
    return QB_OK;
}

qbi_cell *qbi_result_add_row(qb_result *r)
{
    qbi_cell *row;

    if (r->ncols == 0)
        return NULL;
    if (r->nrows == r->rowcap) {
        size_t cap = r->rowcap ? r->rowcap * 2 : 8;
        qbi_cell *nc;
        if (cap > SIZE_MAX / sizeof(qbi_cell) / r->ncols)
            return NULL;
        nc = realloc(r->cells, cap * r->ncols * sizeof(qbi_cell));
        if (nc == NULL)
            return NULL;
        r->cells = nc;
        r->rowcap = cap;
    }
    row = r->cells + r->nrows * r->ncols;
    for (size_t c = 0; c < r->ncols; c++)
        row[c].type = QB_V_NULL;
    r->nrows++;
    return row;
}

int qbi_cell_set_bytes(qb_result *r, qbi_cell *cell, qb_vtype type,
                       const void *p, size_t n)
{
    if (n > SIZE_MAX - 1 - r->nbytes)
        return QB_ENOMEM;
    if (r->bytecap - r->nbytes < n + 1) {
        size_t cap = r->bytecap ? r->bytecap : 256;
        char *nb;
        while (cap - r->nbytes < n + 1) {
            if (cap > SIZE_MAX / 2)
                return QB_ENOMEM;
            cap *= 2;
        }
        nb = realloc(r->bytes, cap);
        if (nb == NULL)
            return QB_ENOMEM;
        r->bytes = nb;
        r->bytecap = cap;
    }
    if (n > 0)
        memcpy(r->bytes + r->nbytes, p, n);
    r->bytes[r->nbytes + n] = '\0';
    cell->type = type;
    cell->u.b.off = r->nbytes;
    cell->u.b.n = n;
    r->nbytes += n + 1;
    return QB_OK;
}

/* ---- accessors ----------------------------------------------------------- */

static const qbi_cell *cell_at(const qb_result *r, size_t row, size_t col)
{
    if (r == NULL || row >= r->nrows || col >= r->ncols)
        return NULL;
    return &r->cells[row * r->ncols + col];
}

QB_API size_t qb_result_rows(const qb_result *r) { return r ? r->nrows : 0; }
QB_API size_t qb_result_cols(const qb_result *r) { return r ? r->ncols : 0; }

QB_API const char *qb_result_colname(const qb_result *r, size_t col)
{
    if (r == NULL || col >= r->ncols)
        return NULL;
    return r->names[col];
}

QB_API int qb_result_colindex(const qb_result *r, const char *name)
{
    if (r == NULL || name == NULL)
        return QB_EINVAL;
    for (size_t i = 0; i < r->ncols && i < (size_t)INT_MAX; i++)
        if (strcmp(r->names[i], name) == 0)
            return (int)i;
    return QB_EINVAL;
}

QB_API unsigned qb_result_coltype(const qb_result *r, size_t col)
{
    if (r == NULL || col >= r->ncols)
        return 0;
    return r->types[col];
}

QB_API int64_t qb_result_changes(const qb_result *r)
{
    return r ? r->changes : 0;
}

QB_API int64_t qb_result_last_insert_rowid(const qb_result *r)
{
    return r ? r->last_rowid : 0;
}

QB_API qb_vtype qb_result_type(const qb_result *r, size_t row, size_t col)
{
    const qbi_cell *c = cell_at(r, row, col);
    return c ? c->type : QB_V_NULL;
}

QB_API int qb_result_is_null(const qb_result *r, size_t row, size_t col)
{
    return qb_result_type(r, row, col) == QB_V_NULL;
}

QB_API int64_t qb_result_int(const qb_result *r, size_t row, size_t col)
{
    const qbi_cell *c = cell_at(r, row, col);
    if (c == NULL)
        return 0;
    switch (c->type) {
    case QB_V_INT:
    case QB_V_BOOL:
        return c->u.i;
    case QB_V_REAL:
        /* Clamp like SQLite does instead of overflowing (UB). */
        if (c->u.d != c->u.d)
            return 0;
        if (c->u.d >= 9223372036854775807.0)
            return INT64_MAX;
        if (c->u.d <= -9223372036854775808.0)
            return INT64_MIN;
        return (int64_t)c->u.d;
    case QB_V_TEXT:
        return strtoll(r->bytes + c->u.b.off, NULL, 10);
    default:
        return 0;
    }
}

QB_API double qb_result_real(const qb_result *r, size_t row, size_t col)
{
    const qbi_cell *c = cell_at(r, row, col);
    if (c == NULL)
        return 0.0;
    switch (c->type) {
    case QB_V_INT:
    case QB_V_BOOL:
        return (double)c->u.i;
    case QB_V_REAL:
        return c->u.d;
    case QB_V_TEXT:
        return strtod(r->bytes + c->u.b.off, NULL);
    default:
        return 0.0;
    }
}

static const void *cell_bytes(const qb_result *r, size_t row, size_t col,
                              size_t *len)
{
    const qbi_cell *c = cell_at(r, row, col);
    if (c == NULL || (c->type != QB_V_TEXT && c->type != QB_V_BLOB)) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = c->u.b.n;
    return r->bytes + c->u.b.off;
}

QB_API const char *qb_result_text(const qb_result *r, size_t row, size_t col,
                                  size_t *len)
{
    return cell_bytes(r, row, col, len);
}

QB_API const void *qb_result_blob(const qb_result *r, size_t row, size_t col,
                                  size_t *len)
{
    return cell_bytes(r, row, col, len);
}

/* By name: an unknown name maps to an index past the end (a NULL cell). */
static size_t col_of(const qb_result *r, const char *name)
{
    int i = qb_result_colindex(r, name);
    return i < 0 ? SIZE_MAX : (size_t)i;
}

/* qb_result_<what>_by(r, row, name [, len]): qb_result_<what> at the
 * column named name. */
#define RESULT_BY(R, what)                                                   \
    QB_API R qb_result_##what##_by(const qb_result *r, size_t row,           \
                                   const char *name)                         \
    {                                                                        \
        return qb_result_##what(r, row, col_of(r, name));                    \
    }
#define RESULT_BY_LEN(R, what)                                               \
    QB_API R qb_result_##what##_by(const qb_result *r, size_t row,           \
                                   const char *name, size_t *len)            \
    {                                                                        \
        return qb_result_##what(r, row, col_of(r, name), len);               \
    }

RESULT_BY(qb_vtype, type)
RESULT_BY(int, is_null)
RESULT_BY(int64_t, int)
RESULT_BY(double, real)
RESULT_BY_LEN(const char *, text)
RESULT_BY_LEN(const void *, blob)
