/*
 * write.c -- INSERT (bulk, upsert), UPDATE, DELETE, DDL and raw-in-dialect.
 *
 * DESIGN
 *   INSERT and UPDATE number every placeholder explicitly (?N / $N), as
 *   workers-qb does, because their values are bound in a different order
 *   from the text: UPDATE binds the WHERE values first and then SET;
 *   INSERT binds the upsert WHERE, then the upsert SET, then the rows.
 *   Each part is rendered in binding order into its own string and the
 *   statement is assembled afterwards.
 *
 *   Bulk insert matches every row's values to the first row's columns by
 *   name (workers-qb took them positionally: its bug #8) and refuses rows
 *   with a different column set.  When a statement would bind more than
 *   max_params values, the rows are split over a chain of statements
 *   (qb_query.next) that the executor runs in one transaction; each link
 *   repeats the upsert clause with its own values.
 *
 *   DELETE keeps `?` bare where SQLite would number it the same (workers-qb
 *   leaves DELETE placeholders as written).  On SQLite its RETURNING comes
 *   before ORDER BY / LIMIT, as SQLite's grammar requires.
 */
#include "qb_priv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rows of column = value ------------------------------------------- */

typedef struct qrow {
    char **cols;
    qb_value *vals;
    size_t n, cap;
} qrow;

static void row_free(qrow *r)
{
    size_t i;
    for (i = 0; i < r->n; i++) {
        free(r->cols[i]);
        qbi_value_clear(&r->vals[i]);
    }
    free(r->cols);
    free(r->vals);
    memset(r, 0, sizeof *r);
}

static const qb_value *row_get(const qrow *r, const char *col)
{
    size_t i;
    for (i = 0; i < r->n; i++)
        if (strcmp(r->cols[i], col) == 0)
            return &r->vals[i];
    return NULL;
}

/* Check and append col = v to r, recording errors in e. */
static void row_set(qrow *r, qbi_err *e, const char *what, const char *col,
                    const qb_value *v)
{
    char *c;

    if (qbi_name_check(e, what, col, 0) != QB_OK)
        return;
    if (row_get(r, col) != NULL) {
        qbi_seterr(e, QB_EINVAL, "Column %s given twice", col);
        return;
    }
    if (v->type == QB_V_RAW) {
        if (v->u.b.p == NULL) {
            qbi_seterr(e, QB_EINVAL, "NULL raw value for %s", col);
            return;
        }
        if (qbi_fragment_check(e, "RAW", v->u.b.p) !=
            QB_OK)
            return;
    } else if (!qbi_value_bindable(v)) {
        qbi_seterr(e, QB_EINVAL, "Invalid value for column %s (subqueries "
                   "are only supported in conditions)", col);
        return;
    }
    if (r->n >= QBI_MAX_ITEMS) {
        qbi_seterr(e, QB_EINVAL, "Too many columns (max %u)", QBI_MAX_ITEMS);
        return;
    }
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 4;
        char **nc = realloc(r->cols, ncap * sizeof *nc);
        qb_value *nv;
        if (nc == NULL)
            goto nomem;
        r->cols = nc;
        nv = realloc(r->vals, ncap * sizeof *nv);
        if (nv == NULL)
            goto nomem;
        r->vals = nv;
        r->cap = ncap;
    }
    c = strdup(col);
    if (c == NULL)
        goto nomem;
    if (qbi_value_copy(&r->vals[r->n], v) != QB_OK) {
        free(c);
        goto nomem;
    }
    r->cols[r->n++] = c;
    return;
nomem:
    qbi_seterr(e, QB_ENOMEM, NULL);
}

/* Render "a = ?N, b = raw" with values in column order. */
static void render_set(qbi_rctx *r, const qrow *row)
{
    size_t i;
    for (i = 0; i < row->n; i++) {
        if (i > 0)
            qbi_sb_adds(&r->sb, ", ");
        qbi_sb_adds(&r->sb, row->cols[i]);
        qbi_sb_adds(&r->sb, " = ");
        if (row->vals[i].type == QB_V_RAW)
            qbi_sb_add(&r->sb, row->vals[i].u.b.p, row->vals[i].u.b.n);
        else
            qbi_rctx_bind(r, &row->vals[i], 0);
    }
}

/* Move what r->sb holds into a new string (numbering state is kept). */
static char *take_part(qbi_rctx *r)
{
    char *p;
    if (r->sb.err != QB_OK)
        return NULL;
    p = strdup(r->sb.p ? r->sb.p : "");
    qbi_sb_reset(&r->sb);
    return p;
}

static const char *conflict_sql(qb_conflict c)
{
    switch (c) {
    case QB_CONFLICT_ROLLBACK: return "ROLLBACK";
    case QB_CONFLICT_ABORT: return "ABORT";
    case QB_CONFLICT_FAIL: return "FAIL";
    case QB_CONFLICT_IGNORE: return "IGNORE";
    case QB_CONFLICT_REPLACE: return "REPLACE";
    default: return NULL;
    }
}

static int conflict_ok(qbi_err *e, qb_conflict c)
{
    if (c < QB_CONFLICT_NONE || c > QB_CONFLICT_REPLACE) {
        qbi_seterr(e, QB_EINVAL, "Invalid conflict type %d", (int)c);
        return 0;
    }
    return 1;
}

static int dialect_ok(qbi_err *e, qb_dialect d)
{
    if (d != QB_DIALECT_SQLITE && d != QB_DIALECT_POSTGRES) {
        qbi_seterr(e, QB_EINVAL, "Unknown dialect %d", (int)d);
        return 0;
    }
    return 1;
}

static void returning_add(qbi_err *e, qbi_strlist *l, const char *expr)
{
    int rc;
    if (qbi_fragment_check(e, "RETURNING", expr) !=
        QB_OK)
        return;
    rc = qbi_strlist_add(l, expr);
    if (rc != QB_OK)
        qbi_seterr(e, rc, rc == QB_EINVAL ? "Too many RETURNING items" : NULL);
}

/* A build-time error becomes the builder's sticky error too, so *_errmsg
 * explains it.  Builders are always heap objects made by *_new, never
 * const-defined, and used by one thread at a time, so writing through the
 * const build argument is well defined. */
static int build_fail(const qbi_err *ce, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int build_fail(const qbi_err *ce, int code, const char *fmt, ...)
{
    qbi_err *e = (qbi_err *)(uintptr_t)ce;
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    qbi_seterr(e, code, "%s", buf);
    return code;
}

/* ---- INSERT ------------------------------------------------------------ */

struct qb_insert {
    qbi_err err;
    qb_dialect dialect;
    char *table;
    qrow *rows;
    size_t nrows, caprows;
    int row_open;          /* rows[nrows-1] takes qb_insert_set */
    qbi_strlist returning;
    qb_conflict orc;
    int upsert;
    qbi_strlist conflict_cols;
    qrow conflict_set;
    qbi_clause conflict_where;
    size_t max_params;
};

static int iok(const qb_insert *ins)
{
    return ins != NULL && ins->err.code == QB_OK;
}

QB_API qb_insert *qb_insert_new(const char *table)
{
    qb_insert *ins = calloc(1, sizeof *ins);
    if (ins == NULL)
        return NULL;
    ins->max_params = QBI_DEFAULT_MAX_PARAMS;
    if (qbi_name_check(&ins->err, "tableName", table, 1) == QB_OK) {
        ins->table = strdup(table);
        if (ins->table == NULL)
            qbi_seterr(&ins->err, QB_ENOMEM, NULL);
    }
    return ins;
}

QB_API void qb_insert_free(qb_insert *ins)
{
    size_t i;
    if (ins == NULL)
        return;
    qbi_err_free(&ins->err);
    free(ins->table);
    for (i = 0; i < ins->nrows; i++)
        row_free(&ins->rows[i]);
    free(ins->rows);
    qbi_strlist_free(&ins->returning);
    qbi_strlist_free(&ins->conflict_cols);
    row_free(&ins->conflict_set);
    qbi_clause_free(&ins->conflict_where);
    free(ins);
}

QB_API int qb_insert_error(const qb_insert *ins)
{
    return ins ? ins->err.code : QB_EINVAL;
}

QB_API const char *qb_insert_errmsg(const qb_insert *ins)
{
    return ins ? qbi_errmsg(&ins->err) : qb_strerror(QB_EINVAL);
}

QB_API void qb_insert_dialect(qb_insert *ins, qb_dialect d)
{
    if (iok(ins) && dialect_ok(&ins->err, d))
        ins->dialect = d;
}

QB_API void qb_insert_set(qb_insert *ins, const char *col, qb_value v)
{
    if (!iok(ins))
        return;
    if (!ins->row_open) {
        if (ins->nrows >= QBI_MAX_ROWS) {
            qbi_seterr(&ins->err, QB_EINVAL, "Too many rows (max %u)",
                       QBI_MAX_ROWS);
            return;
        }
        if (ins->nrows == ins->caprows) {
            size_t ncap = ins->caprows ? ins->caprows * 2 : 4;
            qrow *nr = realloc(ins->rows, ncap * sizeof *nr);
            if (nr == NULL) {
                qbi_seterr(&ins->err, QB_ENOMEM, NULL);
                return;
            }
            ins->rows = nr;
            ins->caprows = ncap;
        }
        memset(&ins->rows[ins->nrows++], 0, sizeof(qrow));
        ins->row_open = 1;
    }
    row_set(&ins->rows[ins->nrows - 1], &ins->err, "column", col, &v);
}

QB_API void qb_insert_next_row(qb_insert *ins)
{
    /* The next set() opens a row; calling this twice adds no empty row. */
    if (iok(ins))
        ins->row_open = 0;
}

QB_API void qb_insert_returning(qb_insert *ins, const char *expr)
{
    if (iok(ins))
        returning_add(&ins->err, &ins->returning, expr);
}

QB_API void qb_insert_or(qb_insert *ins, qb_conflict c)
{
    if (iok(ins) && conflict_ok(&ins->err, c))
        ins->orc = c;
}

QB_API void qb_insert_on_conflict(qb_insert *ins, size_t ncols,
                                  const char *const *cols)
{
    size_t i;

    if (!iok(ins))
        return;
    if (ncols == 0 || cols == NULL) {
        qbi_seterr(&ins->err, QB_EMISSING, "column is required for "
                   "onConflict operation\n  Hint: Provide a valid column "
                   "parameter");
        return;
    }
    for (i = 0; i < ncols; i++)
        if (qbi_name_check(&ins->err, "onConflict column", cols[i], 0) !=
            QB_OK)
            return;
    qbi_strlist_free(&ins->conflict_cols);
    for (i = 0; i < ncols; i++)
        if (qbi_strlist_add(&ins->conflict_cols, cols[i]) != QB_OK) {
            qbi_seterr(&ins->err, QB_ENOMEM, NULL);
            return;
        }
    ins->upsert = 1;
}

QB_API void qb_insert_on_conflict_set(qb_insert *ins, const char *col,
                                      qb_value v)
{
    if (iok(ins))
        row_set(&ins->conflict_set, &ins->err, "onConflict column", col, &v);
}

QB_API void qb_insert_on_conflict_where(qb_insert *ins, size_t ncond,
                                        const char *const *conds, size_t n,
                                        const qb_value *vals)
{
    if (iok(ins))
        qbi_clause_add(&ins->conflict_where, &ins->err, "WHERE", 0, ncond,
                       conds, n, vals);
}

QB_API void qb_insert_max_params(qb_insert *ins, size_t max)
{
    if (!iok(ins))
        return;
    if (max == 0 || max > QBI_MAX_PARAMS_LIMIT) {
        qbi_seterr(&ins->err, QB_EINVAL, "Invalid max_params %zu (1..%u)",
                   max, QBI_MAX_PARAMS_LIMIT);
        return;
    }
    ins->max_params = max;
}

static size_t row_nbind(const qrow *r)
{
    size_t i, k = 0;
    for (i = 0; i < r->n; i++)
        k += r->vals[i].type != QB_V_RAW;
    return k;
}

/* Render one link: rows [from, to).  Explicit numbering throughout. */
static int insert_link(const qb_insert *ins, size_t from, size_t to,
                       qb_fetch fetch, qb_query **out)
{
    qbi_rctx r;
    char *where = NULL, *set = NULL;
    const qrow *r0 = &ins->rows[0];
    size_t i, k;
    int rc;

    qbi_rctx_init(&r, ins->dialect, 1);
    if (ins->upsert) {
        if (ins->conflict_where.top.n > 0) {
            qbi_clause_render(&r, &ins->conflict_where);
            where = take_part(&r);
            if (where == NULL)
                goto nomem;
        }
        render_set(&r, &ins->conflict_set);
        set = take_part(&r);
        if (set == NULL)
            goto nomem;
    }
    /* The statement proper; rows continue the numbering. */
    qbi_sb_adds(&r.sb, "INSERT ");
    if (ins->orc != QB_CONFLICT_NONE) {
        qbi_sb_adds(&r.sb, "OR ");
        qbi_sb_adds(&r.sb, conflict_sql(ins->orc));
        qbi_sb_addc(&r.sb, ' ');
    }
    qbi_sb_adds(&r.sb, "INTO ");
    qbi_sb_adds(&r.sb, ins->table);
    qbi_sb_adds(&r.sb, " (");
    for (k = 0; k < r0->n; k++) {
        if (k > 0)
            qbi_sb_adds(&r.sb, ", ");
        qbi_sb_adds(&r.sb, r0->cols[k]);
    }
    qbi_sb_adds(&r.sb, ") VALUES ");
    for (i = from; i < to; i++) {
        const qrow *row = &ins->rows[i];
        if (i > from)
            qbi_sb_adds(&r.sb, ", ");
        qbi_sb_addc(&r.sb, '(');
        for (k = 0; k < r0->n; k++) {
            /* by name: rows may list their columns in any order */
            const qb_value *v = row_get(row, r0->cols[k]);
            if (k > 0)
                qbi_sb_adds(&r.sb, ", ");
            if (v->type == QB_V_RAW)
                qbi_sb_add(&r.sb, v->u.b.p, v->u.b.n);
            else
                qbi_rctx_bind(&r, v, 0);
        }
        qbi_sb_addc(&r.sb, ')');
    }
    if (ins->upsert) {
        qbi_sb_adds(&r.sb, " ON CONFLICT (");
        qbi_strlist_join(&r.sb, &ins->conflict_cols, ", ");
        qbi_sb_addc(&r.sb, ')');
        if (ins->conflict_set.n == 0) {
            qbi_sb_adds(&r.sb, " DO NOTHING");
        } else {
            qbi_sb_adds(&r.sb, " DO UPDATE SET ");
            qbi_sb_adds(&r.sb, set);
            if (where != NULL) {
                qbi_sb_adds(&r.sb, " WHERE ");
                qbi_sb_adds(&r.sb, where);
            }
        }
    }
    if (ins->returning.n > 0) {
        qbi_sb_adds(&r.sb, " RETURNING ");
        qbi_strlist_join(&r.sb, &ins->returning, ", ");
    }
    rc = qbi_rctx_finish(&r, QB_KIND_INSERT, fetch, out);
    goto done;
nomem:
    rc = r.sb.err != QB_OK ? r.sb.err : QB_ENOMEM;
done:
    free(where);
    free(set);
    qbi_rctx_free(&r);
    return rc;
}

QB_API int qb_insert_build(const qb_insert *ins, qb_query **out)
{
    size_t nrows, i, k, fixed, from, sum;
    qb_query *head = NULL, **tail = &head;
    qb_fetch fetch;
    int rc;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (ins == NULL)
        return QB_EINVAL;
    if (ins->err.code != QB_OK)
        return ins->err.code;
    nrows = ins->nrows;
    if (nrows > 0 && ins->rows[nrows - 1].n == 0)
        nrows--;
    if (nrows == 0 || ins->rows[0].n == 0)
        return build_fail(&ins->err, QB_EMISSING, "data is required for "
                          "INSERT operation\n  Hint: Provide a valid data "
                          "parameter");
    if (ins->dialect == QB_DIALECT_POSTGRES && ins->orc != QB_CONFLICT_NONE)
        return build_fail(&ins->err, QB_EDIALECT, "INSERT OR %s is SQLite "
                          "only\n  Hint: use onConflict (upsert) instead",
                          conflict_sql(ins->orc));
    if (ins->upsert && ins->conflict_set.n == 0 &&
        ins->conflict_where.top.n > 0)
        return build_fail(&ins->err, QB_EINVAL, "onConflict where needs "
                          "onConflict data (DO UPDATE SET); DO NOTHING "
                          "takes no WHERE\n  Hint: add "
                          "qb_insert_on_conflict_set() or drop the where");
    for (i = 1; i < nrows; i++) {
        const qrow *row = &ins->rows[i];
        int same = row->n == ins->rows[0].n;
        for (k = 0; same && k < ins->rows[0].n; k++)
            same = row_get(row, ins->rows[0].cols[k]) != NULL;
        if (!same)
            return build_fail(&ins->err, QB_EINVAL, "Row %zu of the INSERT "
                              "data does not have the same columns as row "
                              "1\n  Hint: give every row the same keys",
                              i + 1);
    }
    /* Values every link repeats: upsert WHERE and SET. */
    fixed = row_nbind(&ins->conflict_set);
    for (i = 0; i < ins->conflict_where.ncalls; i++)
        fixed += ins->conflict_where.calls[i].nvals;
    fetch = nrows > 1 ? QB_FETCH_ALL : QB_FETCH_ONE;

    from = 0;
    while (from < nrows) {
        size_t to = from;
        sum = fixed;
        while (to < nrows) {
            size_t nb = row_nbind(&ins->rows[to]);
            if (nb > ins->max_params - sum)
                break;
            sum += nb;
            to++;
        }
        if (to == from) {
            qb_query_free(head);
            return build_fail(&ins->err, QB_EINVAL, "Row %zu needs %zu "
                              "parameters with the upsert clause, more than "
                              "max_params %zu", from + 1,
                              fixed + row_nbind(&ins->rows[from]),
                              ins->max_params);
        }
        rc = insert_link(ins, from, to, fetch, tail);
        if (rc != QB_OK) {
            qb_query_free(head);
            return rc;
        }
        tail = &(*tail)->next;
        from = to;
    }
    *out = head;
    return QB_OK;
}

/* ---- UPDATE ------------------------------------------------------------ */

struct qb_update {
    qbi_err err;
    qb_dialect dialect;
    char *table;
    qrow set;
    qbi_clause where;
    qbi_strlist returning;
    qb_conflict orc;
};

static int uok(const qb_update *u)
{
    return u != NULL && u->err.code == QB_OK;
}

QB_API qb_update *qb_update_new(const char *table)
{
    qb_update *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    if (qbi_name_check(&u->err, "tableName", table, 1) == QB_OK) {
        u->table = strdup(table);
        if (u->table == NULL)
            qbi_seterr(&u->err, QB_ENOMEM, NULL);
    }
    return u;
}

QB_API void qb_update_free(qb_update *u)
{
    if (u == NULL)
        return;
    qbi_err_free(&u->err);
    free(u->table);
    row_free(&u->set);
    qbi_clause_free(&u->where);
    qbi_strlist_free(&u->returning);
    free(u);
}

QB_API int qb_update_error(const qb_update *u)
{
    return u ? u->err.code : QB_EINVAL;
}

QB_API const char *qb_update_errmsg(const qb_update *u)
{
    return u ? qbi_errmsg(&u->err) : qb_strerror(QB_EINVAL);
}

QB_API void qb_update_dialect(qb_update *u, qb_dialect d)
{
    if (uok(u) && dialect_ok(&u->err, d))
        u->dialect = d;
}

QB_API void qb_update_set(qb_update *u, const char *col, qb_value v)
{
    if (uok(u))
        row_set(&u->set, &u->err, "column", col, &v);
}

QB_API void qb_update_where(qb_update *u, const char *cond, size_t n,
                            const qb_value *vals)
{
    if (uok(u))
        qbi_clause_add(&u->where, &u->err, "WHERE", 0, 1, &cond, n, vals);
}

QB_API void qb_update_where_list(qb_update *u, size_t ncond,
                                 const char *const *conds, size_t n,
                                 const qb_value *vals)
{
    if (uok(u))
        qbi_clause_add(&u->where, &u->err, "WHERE", 0, ncond, conds, n, vals);
}

QB_API void qb_update_returning(qb_update *u, const char *expr)
{
    if (uok(u))
        returning_add(&u->err, &u->returning, expr);
}

QB_API void qb_update_or(qb_update *u, qb_conflict c)
{
    if (uok(u) && conflict_ok(&u->err, c))
        u->orc = c;
}

QB_API int qb_update_build(const qb_update *u, qb_query **out)
{
    qbi_rctx r;
    char *where = NULL, *set = NULL;
    int rc;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (u == NULL)
        return QB_EINVAL;
    if (u->err.code != QB_OK)
        return u->err.code;
    if (u->set.n == 0)
        return build_fail(&u->err, QB_EMISSING, "data is required for "
                          "UPDATE operation\n  Hint: Provide a valid data "
                          "parameter");
    if (u->dialect == QB_DIALECT_POSTGRES && u->orc != QB_CONFLICT_NONE)
        return build_fail(&u->err, QB_EDIALECT, "UPDATE OR %s is SQLite "
                          "only", conflict_sql(u->orc));

    qbi_rctx_init(&r, u->dialect, 1);
    if (u->where.top.n > 0) {
        qbi_clause_render(&r, &u->where);
        if ((where = take_part(&r)) == NULL)
            goto nomem;
    }
    render_set(&r, &u->set);
    if ((set = take_part(&r)) == NULL)
        goto nomem;
    qbi_sb_adds(&r.sb, "UPDATE ");
    if (u->orc != QB_CONFLICT_NONE) {
        qbi_sb_adds(&r.sb, "OR ");
        qbi_sb_adds(&r.sb, conflict_sql(u->orc));
        qbi_sb_addc(&r.sb, ' ');
    }
    qbi_sb_adds(&r.sb, u->table);
    qbi_sb_adds(&r.sb, " SET ");
    qbi_sb_adds(&r.sb, set);
    if (where != NULL) {
        qbi_sb_adds(&r.sb, " WHERE ");
        qbi_sb_adds(&r.sb, where);
    }
    if (u->returning.n > 0) {
        qbi_sb_adds(&r.sb, " RETURNING ");
        qbi_strlist_join(&r.sb, &u->returning, ", ");
    }
    if (r.err == QB_OK && r.nparams > QBI_DEFAULT_MAX_PARAMS)
        r.err = QB_EINVAL;
    rc = qbi_rctx_finish(&r, QB_KIND_UPDATE, QB_FETCH_ALL, out);
    goto done;
nomem:
    rc = r.sb.err != QB_OK ? r.sb.err : QB_ENOMEM;
done:
    free(where);
    free(set);
    qbi_rctx_free(&r);
    return rc;
}

/* ---- DELETE ------------------------------------------------------------ */

struct qb_delete {
    qbi_err err;
    qb_dialect dialect;
    char *table;
    qbi_clause where;
    qbi_strlist returning, order_by;
    int has_limit, has_offset;
    int64_t limit, offset;
};

static int dok(const qb_delete *d)
{
    return d != NULL && d->err.code == QB_OK;
}

QB_API qb_delete *qb_delete_new(const char *table)
{
    qb_delete *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    if (qbi_name_check(&d->err, "tableName", table, 1) == QB_OK) {
        d->table = strdup(table);
        if (d->table == NULL)
            qbi_seterr(&d->err, QB_ENOMEM, NULL);
    }
    return d;
}

QB_API void qb_delete_free(qb_delete *d)
{
    if (d == NULL)
        return;
    qbi_err_free(&d->err);
    free(d->table);
    qbi_clause_free(&d->where);
    qbi_strlist_free(&d->returning);
    qbi_strlist_free(&d->order_by);
    free(d);
}

QB_API int qb_delete_error(const qb_delete *d)
{
    return d ? d->err.code : QB_EINVAL;
}

QB_API const char *qb_delete_errmsg(const qb_delete *d)
{
    return d ? qbi_errmsg(&d->err) : qb_strerror(QB_EINVAL);
}

QB_API void qb_delete_dialect(qb_delete *d, qb_dialect dl)
{
    if (dok(d) && dialect_ok(&d->err, dl))
        d->dialect = dl;
}

QB_API void qb_delete_where(qb_delete *d, const char *cond, size_t n,
                            const qb_value *vals)
{
    if (dok(d))
        qbi_clause_add(&d->where, &d->err, "WHERE", 0, 1, &cond, n, vals);
}

QB_API void qb_delete_where_list(qb_delete *d, size_t ncond,
                                 const char *const *conds, size_t n,
                                 const qb_value *vals)
{
    if (dok(d))
        qbi_clause_add(&d->where, &d->err, "WHERE", 0, ncond, conds, n, vals);
}

QB_API void qb_delete_returning(qb_delete *d, const char *expr)
{
    if (dok(d))
        returning_add(&d->err, &d->returning, expr);
}

QB_API void qb_delete_order_by(qb_delete *d, const char *expr, qb_order o)
{
    if (dok(d))
        qbi_order_add(&d->order_by, &d->err, expr, o);
}

QB_API void qb_delete_limit(qb_delete *d, int64_t n)
{
    if (!dok(d))
        return;
    if (n < 0) {
        qbi_seterr(&d->err, QB_EINVAL, "Invalid limit value: %lld",
                   (long long)n);
        return;
    }
    d->has_limit = 1;
    d->limit = n;
}

QB_API void qb_delete_offset(qb_delete *d, int64_t n)
{
    if (!dok(d))
        return;
    if (n < 0) {
        qbi_seterr(&d->err, QB_EINVAL, "Invalid offset value: %lld",
                   (long long)n);
        return;
    }
    d->has_offset = 1;
    d->offset = n;
}

QB_API int qb_delete_build(const qb_delete *d, qb_query **out)
{
    qbi_rctx r;
    int rc;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (d == NULL)
        return QB_EINVAL;
    if (d->err.code != QB_OK)
        return d->err.code;
    qbi_rctx_init(&r, d->dialect, 0);
    qbi_sb_adds(&r.sb, "DELETE FROM ");
    qbi_sb_adds(&r.sb, d->table);
    if (d->where.top.n > 0) {
        qbi_sb_adds(&r.sb, " WHERE ");
        qbi_clause_render(&r, &d->where);
    }
    /* SQLite's grammar puts RETURNING before ORDER BY / LIMIT; workers-qb
     * 1.14.0 (#157) moved it last, which SQLite rejects with a syntax
     * error.  PostgreSQL has no DELETE ... LIMIT; RETURNING stays last. */
    if (d->returning.n > 0 && d->dialect == QB_DIALECT_SQLITE) {
        qbi_sb_adds(&r.sb, " RETURNING ");
        qbi_strlist_join(&r.sb, &d->returning, ", ");
    }
    if (d->order_by.n > 0) {
        qbi_sb_adds(&r.sb, " ORDER BY ");
        qbi_strlist_join(&r.sb, &d->order_by, ", ");
    }
    if (d->has_limit)
        qbi_sb_addf(&r.sb, " LIMIT %lld", (long long)d->limit);
    else if (d->has_offset && d->dialect == QB_DIALECT_SQLITE)
        qbi_sb_adds(&r.sb, " LIMIT -1");
    if (d->has_offset)
        qbi_sb_addf(&r.sb, " OFFSET %lld", (long long)d->offset);
    if (d->returning.n > 0 && d->dialect != QB_DIALECT_SQLITE) {
        qbi_sb_adds(&r.sb, " RETURNING ");
        qbi_strlist_join(&r.sb, &d->returning, ", ");
    }
    if (r.err == QB_OK && r.nparams > QBI_DEFAULT_MAX_PARAMS)
        r.err = QB_EINVAL;
    rc = qbi_rctx_finish(&r, QB_KIND_DELETE, QB_FETCH_ALL, out);
    qbi_rctx_free(&r);
    return rc;
}

/* ---- raw in a dialect, DDL --------------------------------------------- */

QB_API int qb_query_raw_dialect(qb_query **out, qb_dialect d, const char *sql,
                                size_t nargs, const qb_value *args,
                                qb_fetch fetch)
{
    qb_query *q;
    qbi_sb sb;
    size_t n, i, j, idx, maxidx = 0;
    int rc, closed;
    char *np;

    if (d == QB_DIALECT_SQLITE || out == NULL || sql == NULL)
        return qb_query_raw(out, sql, nargs, args, fetch);
    if (d != QB_DIALECT_POSTGRES) {
        *out = NULL;
        return QB_EINVAL;
    }
    rc = qb_query_raw(&q, sql, nargs, args, fetch);
    *out = NULL;
    if (rc != QB_OK)
        return rc;
    /* SQLite's numbering rule (?N is N; a bare ? is one more than the
     * largest so far) decides which value each placeholder binds. */
    qbi_sb_init(&sb);
    n = q->sql_len;
    for (i = 0; i < n;) {
        j = qbi_sql_skip(q->sql, n, i, 0, &closed);
        if (j != i) {
            qbi_sb_add(&sb, q->sql + i, j - i);
            i = j;
            continue;
        }
        if (q->sql[i] != '?') {
            qbi_sb_addc(&sb, q->sql[i++]);
            continue;
        }
        idx = 0;
        for (j = i + 1; j < n && q->sql[j] >= '0' && q->sql[j] <= '9'; j++)
            if (idx < 1000000)
                idx = idx * 10 + (size_t)(q->sql[j] - '0');
        if (j == i + 1)
            idx = maxidx + 1;
        if (idx > maxidx)
            maxidx = idx;
        qbi_sb_addf(&sb, "$%zu", idx);
        i = j;
    }
    rc = sb.err;
    np = qbi_sb_take(&sb, &n);
    if (np == NULL) {
        qb_query_free(q);
        return rc != QB_OK ? rc : QB_ENOMEM;
    }
    free(q->sql);
    q->sql = np;
    q->sql_len = n;
    q->dialect = QB_DIALECT_POSTGRES;
    *out = q;
    return QB_OK;
}

static int ddl_finish(qbi_sb *sb, qb_dialect d, qb_query **out)
{
    qbi_rctx r;
    int rc;

    qbi_rctx_init(&r, d, 1);
    qbi_sb_free(&r.sb);
    r.sb = *sb;
    qbi_sb_init(sb);
    rc = qbi_rctx_finish(&r, QB_KIND_RAW, QB_FETCH_NONE, out);
    qbi_rctx_free(&r);
    return rc;
}

QB_API int qb_create_table(qb_query **out, qb_dialect d, const char *table,
                           const char *schema, int if_not_exists)
{
    qbi_err e = { QB_OK, NULL };
    qbi_sb sb;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (!dialect_ok(&e, d) ||
        qbi_name_check(&e, "tableName", table, 1) != QB_OK ||
        qbi_fragment_check(&e, "CREATE TABLE", schema) != QB_OK) {
        int rc = e.code;
        qbi_err_free(&e);
        return rc;
    }
    qbi_sb_init(&sb);
    qbi_sb_adds(&sb, "CREATE TABLE ");
    if (if_not_exists)
        qbi_sb_adds(&sb, "IF NOT EXISTS");
    qbi_sb_addc(&sb, ' ');
    qbi_sb_adds(&sb, table);
    qbi_sb_adds(&sb, " ( ");
    qbi_sb_adds(&sb, schema);
    qbi_sb_addc(&sb, ')');
    return ddl_finish(&sb, d, out);
}

QB_API int qb_drop_table(qb_query **out, qb_dialect d, const char *table,
                         int if_exists)
{
    qbi_err e = { QB_OK, NULL };
    qbi_sb sb;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (!dialect_ok(&e, d) ||
        qbi_name_check(&e, "tableName", table, 1) != QB_OK) {
        int rc = e.code;
        qbi_err_free(&e);
        return rc;
    }
    qbi_sb_init(&sb);
    qbi_sb_adds(&sb, "DROP TABLE ");
    if (if_exists)
        qbi_sb_adds(&sb, "IF EXISTS");
    qbi_sb_addc(&sb, ' ');
    qbi_sb_adds(&sb, table);
    return ddl_finish(&sb, d, out);
}
