/*
 * select.c -- the SELECT builder (workers-qb fetchAll/fetchOne/select()).
 *
 * DESIGN
 *   A qb_select records the parts of the statement (owned copies); nothing
 *   is rendered until build.  Rendering follows workers-qb's template:
 *
 *     [WITH c[(cols)] AS (sel), ... ] SELECT [DISTINCT [ON (..)] ]fields
 *     FROM table [joins] [WHERE ..] [GROUP BY ..] [HAVING ..]
 *     [UNION|INTERSECT|EXCEPT [ALL] sel]* [ORDER BY ..] [LIMIT n] [OFFSET n]
 *
 *   in text order, so values are numbered in the order they appear (CTE
 *   bodies, join subqueries, WHERE, HAVING, set operations).  The count()
 *   statement is the same walk with `count(*) as total` as the field list,
 *   no GROUP BY and LIMIT 1 (workers-qb's rules), so it binds the same
 *   values.  Subqueries are deep copies held by the builder; nesting is
 *   bounded (QBI_MAX_DEPTH) because rendering recurses.
 */
#include "qb_priv.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct sel_join {
    char *type;        /* normalised words without JOIN, or NULL */
    char *table;       /* or NULL when sub is set */
    qb_select *sub;
    char *alias;
    char *on;
} sel_join;

typedef struct sel_cte {
    char *name;
    qb_select *sub;
    qbi_strlist cols;
} sel_cte;

typedef struct sel_setop {
    qb_setop op;
    qb_select *sub;
} sel_setop;

struct qb_select {
    qbi_err err;
    qb_dialect dialect;
    char *table;
    qbi_strlist fields;
    int distinct;
    qbi_strlist distinct_on;
    sel_join *joins;
    size_t njoins, capjoins;
    sel_cte *ctes;
    size_t nctes, capctes;
    sel_setop *setops;
    size_t nsetops, capsetops;
    qbi_clause where, having;
    qbi_strlist group_by, order_by;
    int has_limit, has_offset;
    int64_t limit, offset;
    size_t depth; /* deepest subquery nesting below this builder */
};

/* Rendering mode of the top-level statement. */
typedef struct sel_mode {
    int count;          /* count() statement */
    int one;            /* fetchOne: LIMIT 1 */
} sel_mode;

const qbi_err *qbi_select_err(const qb_select *s) { return &s->err; }
size_t qbi_select_depth(const qb_select *s) { return s->depth; }

static void setnomem(qb_select *s)
{
    qbi_seterr(&s->err, QB_ENOMEM, NULL);
}

/* Can s accept another call? */
#define ok(s) QBI_USABLE(s)

static int grow(void **v, size_t *cap, size_t n, size_t elsz)
{
    void *nv;

    if (n >= QBI_MAX_ITEMS)
        return QB_EINVAL;
    if ((nv = qbi_grow(*v, cap, n, elsz, 4, NULL)) == NULL)
        return QB_ENOMEM;
    *v = nv;
    return QB_OK;
}

static void list_add(qb_select *s, qbi_strlist *l, const char *what,
                     const char *frag)
{
    int rc;

    if (!ok(s))
        return;
    if (qbi_fragment_check(&s->err, what, frag) !=
        QB_OK)
        return;
    rc = qbi_strlist_add(l, frag);
    if (rc == QB_EINVAL)
        qbi_seterr(&s->err, rc, "Too many %s items (max %u)", what,
                   QBI_MAX_ITEMS);
    else if (rc != QB_OK)
        setnomem(s);
}

static void note_depth(qb_select *s, const qb_select *sub)
{
    if (sub->depth + 1 > s->depth)
        s->depth = sub->depth + 1;
}

/* Check and clone a subquery argument, or record the error. */
static qb_select *take_sub(qb_select *s, const qb_select *sub)
{
    qb_select *c;

    if (sub == NULL) {
        qbi_seterr(&s->err, QB_ESUBQUERY, "Subquery is NULL");
        return NULL;
    }
    if (sub->err.code != QB_OK) {
        qbi_seterr(&s->err, sub->err.code, "%s", qbi_errmsg(&sub->err));
        return NULL;
    }
    if (sub->depth + 1 > QBI_MAX_DEPTH) {
        qbi_seterr(&s->err, QB_ESUBQUERY,
                   "Subqueries nested too deeply (max %u)", QBI_MAX_DEPTH);
        return NULL;
    }
    c = qbi_select_clone(sub);
    if (c == NULL)
        setnomem(s);
    return c;
}

/* ---- lifetime ---------------------------------------------------------- */

QB_API qb_select *qb_select_new(const char *table)
{
    qb_select *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if (qbi_name_check(&s->err, "tableName", table, 1) == QB_OK) {
        s->table = strdup(table);
        if (s->table == NULL)
            setnomem(s);
    }
    return s;
}

void qbi_select_free(qb_select *s)
{
    size_t i;

    if (s == NULL)
        return;
    qbi_err_free(&s->err);
    free(s->table);
    qbi_strlist_free(&s->fields);
    qbi_strlist_free(&s->distinct_on);
    for (i = 0; i < s->njoins; i++) {
        free(s->joins[i].type);
        free(s->joins[i].table);
        qbi_select_free(s->joins[i].sub);
        free(s->joins[i].alias);
        free(s->joins[i].on);
    }
    free(s->joins);
    for (i = 0; i < s->nctes; i++) {
        free(s->ctes[i].name);
        qbi_select_free(s->ctes[i].sub);
        qbi_strlist_free(&s->ctes[i].cols);
    }
    free(s->ctes);
    for (i = 0; i < s->nsetops; i++)
        qbi_select_free(s->setops[i].sub);
    free(s->setops);
    qbi_clause_free(&s->where);
    qbi_clause_free(&s->having);
    qbi_strlist_free(&s->group_by);
    qbi_strlist_free(&s->order_by);
    free(s);
}

QB_API void qb_select_free(qb_select *s)
{
    qbi_select_free(s);
}

static int dupstr(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return QB_OK;
    *dst = strdup(src);
    return *dst ? QB_OK : QB_ENOMEM;
}

qb_select *qbi_select_clone(const qb_select *s)
{
    qb_select *c;
    size_t i;

    if (s == NULL)
        return NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->dialect = s->dialect;
    c->distinct = s->distinct;
    c->has_limit = s->has_limit;
    c->has_offset = s->has_offset;
    c->limit = s->limit;
    c->offset = s->offset;
    c->depth = s->depth;
    if (qbi_err_copy(&c->err, &s->err) != QB_OK ||
        dupstr(&c->table, s->table) != QB_OK ||
        qbi_strlist_copy(&c->fields, &s->fields) != QB_OK ||
        qbi_strlist_copy(&c->distinct_on, &s->distinct_on) != QB_OK ||
        qbi_strlist_copy(&c->group_by, &s->group_by) != QB_OK ||
        qbi_strlist_copy(&c->order_by, &s->order_by) != QB_OK ||
        qbi_clause_copy(&c->where, &s->where) != QB_OK ||
        qbi_clause_copy(&c->having, &s->having) != QB_OK ||
        qbi_array_new((void **)&c->joins, &c->capjoins, s->njoins,
                      sizeof *c->joins) != QB_OK ||
        qbi_array_new((void **)&c->ctes, &c->capctes, s->nctes,
                      sizeof *c->ctes) != QB_OK ||
        qbi_array_new((void **)&c->setops, &c->capsetops, s->nsetops,
                      sizeof *c->setops) != QB_OK)
        goto fail;
    for (i = 0; i < s->njoins; i++) {
        sel_join *d = &c->joins[i];
        const sel_join *o = &s->joins[i];
        c->njoins++;
        if (dupstr(&d->type, o->type) != QB_OK ||
            dupstr(&d->table, o->table) != QB_OK ||
            dupstr(&d->alias, o->alias) != QB_OK ||
            dupstr(&d->on, o->on) != QB_OK)
            goto fail;
        if (o->sub != NULL && (d->sub = qbi_select_clone(o->sub)) == NULL)
            goto fail;
    }
    for (i = 0; i < s->nctes; i++) {
        sel_cte *d = &c->ctes[i];
        c->nctes++;
        if (dupstr(&d->name, s->ctes[i].name) != QB_OK ||
            qbi_strlist_copy(&d->cols, &s->ctes[i].cols) != QB_OK ||
            (d->sub = qbi_select_clone(s->ctes[i].sub)) == NULL)
            goto fail;
    }
    for (i = 0; i < s->nsetops; i++) {
        c->nsetops++;
        c->setops[i].op = s->setops[i].op;
        c->setops[i].sub = qbi_select_clone(s->setops[i].sub);
        if (c->setops[i].sub == NULL)
            goto fail;
    }
    return c;
fail:
    qbi_select_free(c);
    return NULL;
}

QB_API qb_select *qb_select_dup(const qb_select *s)
{
    return qbi_select_clone(s);
}

QBI_DEFINE_ERR_DIALECT(select, ok)

/* ---- settings ---------------------------------------------------------- */

QB_API void qb_select_table(qb_select *s, const char *table)
{
    char *t;

    if (!ok(s) || qbi_name_check(&s->err, "tableName", table, 1) != QB_OK)
        return;
    t = strdup(table);
    if (t == NULL) {
        setnomem(s);
        return;
    }
    free(s->table);
    s->table = t;
}

QB_API void qb_select_fields(qb_select *s, const char *fields)
{
    list_add(s, s ? &s->fields : NULL, "SELECT", fields);
}

QB_API void qb_select_group_by(qb_select *s, const char *expr)
{
    list_add(s, s ? &s->group_by : NULL, "GROUP BY", expr);
}

QB_API void qb_select_distinct(qb_select *s)
{
    if (ok(s))
        s->distinct = 1;
}

QB_API void qb_select_distinct_on(qb_select *s, const char *expr)
{
    if (!ok(s))
        return;
    s->distinct = 1;
    list_add(s, &s->distinct_on, "DISTINCT ON", expr);
}

void qbi_order_add(qbi_strlist *l, qbi_err *e, const char *expr,
                   qb_order o)
{
    qbi_sb sb;
    char *t;
    int rc;

    if (o != QB_ORDER_NONE && o != QB_ORDER_ASC && o != QB_ORDER_DESC) {
        qbi_seterr(e, QB_EINVAL, "Invalid ORDER BY direction %d", (int)o);
        return;
    }
    if (qbi_fragment_check(e, "ORDER BY", expr) !=
        QB_OK)
        return;
    qbi_sb_init(&sb);
    qbi_sb_adds(&sb, expr);
    if (o != QB_ORDER_NONE)
        qbi_sb_adds(&sb, o == QB_ORDER_ASC ? " ASC" : " DESC");
    t = qbi_sb_take(&sb, NULL);
    if (t == NULL) {
        qbi_seterr(e, QB_ENOMEM, NULL);
        return;
    }
    rc = qbi_strlist_add(l, t);
    free(t);
    if (rc != QB_OK)
        qbi_seterr(e, rc, rc == QB_EINVAL ? "Too many ORDER BY items" : NULL);
}

void qbi_count_set(qbi_err *e, const char *what, int64_t n, int *has,
                   int64_t *val)
{
    if (n < 0) {
        qbi_seterr(e, QB_EINVAL, "Invalid %s value: %lld", what,
                   (long long)n);
        return;
    }
    *has = 1;
    *val = n;
}

int qbi_build_begin(qb_query **out, const qbi_err *e)
{
    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    return e != NULL ? e->code : QB_EINVAL;
}

int qbi_dialect_ok(qbi_err *e, qb_dialect d)
{
    if (d != QB_DIALECT_SQLITE && d != QB_DIALECT_POSTGRES) {
        qbi_seterr(e, QB_EINVAL, "Unknown dialect %d", (int)d);
        return 0;
    }
    return 1;
}

QBI_DEFINE_ORDER_LIMIT(select, ok)

/* ---- where / having ---------------------------------------------------- */

/* Add conditions; subquery values count towards this builder's nesting
 * depth, which bounds rendering recursion when it is nested in turn. */
static void add_cond(qb_select *s, qbi_clause *c, const char *clause,
                     int or_, size_t ncond, const char *const *conds,
                     size_t n, const qb_value *vals)
{
    size_t i;

    if (!ok(s))
        return;
    qbi_clause_add(c, &s->err, clause, or_, ncond, conds, n, vals);
    if (s->err.code != QB_OK)
        return;
    for (i = 0; i < n; i++)
        if (vals[i].type == QB_V_SELECT)
            note_depth(s, vals[i].u.sel);
}

QB_API void qb_select_where(qb_select *s, const char *cond, size_t n,
                            const qb_value *vals)
{
    if (ok(s))
        add_cond(s, &s->where, "WHERE", 0, 1, &cond, n, vals);
}

QB_API void qb_select_or_where(qb_select *s, const char *cond, size_t n,
                               const qb_value *vals)
{
    if (ok(s))
        add_cond(s, &s->where, "WHERE", 1, 1, &cond, n, vals);
}

QB_API void qb_select_where_list(qb_select *s, unsigned how, size_t ncond,
                                 const char *const *conds, size_t n,
                                 const qb_value *vals)
{
    if (ok(s))
        add_cond(s, &s->where, "WHERE", (how & QB_OR) != 0, ncond, conds, n,
                 vals);
}

QB_API void qb_select_having(qb_select *s, const char *cond, size_t n,
                             const qb_value *vals)
{
    if (ok(s))
        add_cond(s, &s->having, "HAVING", 0, 1, &cond, n, vals);
}

QB_API void qb_select_having_list(qb_select *s, size_t ncond,
                                  const char *const *conds, size_t n,
                                  const qb_value *vals)
{
    if (ok(s))
        add_cond(s, &s->having, "HAVING", 0, ncond, conds, n, vals);
}

/* Add a generated condition (its text built from checked names only). */
static void add_generated(qb_select *s, unsigned how, qbi_sb *sb, size_t n,
                          const qb_value *vals)
{
    char *text = qbi_sb_take(sb, NULL);
    const char *c = text;

    if (text == NULL) {
        setnomem(s);
        return;
    }
    add_cond(s, &s->where, "WHERE", (how & QB_OR) != 0, 1, &c, n, vals);
    free(text);
}

QB_API void qb_select_where_in_cols(qb_select *s, unsigned how, size_t ncols,
                                    const char *const *cols, size_t nrows,
                                    const qb_value *vals)
{
    qbi_sb sb;
    size_t i, r;

    if (!ok(s))
        return;
    if (ncols == 0 || cols == NULL || (nrows > 0 && vals == NULL)) {
        qbi_seterr(&s->err, QB_EINVAL, "whereIn needs columns and values");
        return;
    }
    for (i = 0; i < ncols; i++)
        if (qbi_name_check(&s->err, "whereIn column", cols[i], 1) != QB_OK)
            return;
    if (nrows == 0)
        return; /* workers-qb: empty list is a no-op */
    if (nrows > QBI_DEFAULT_MAX_PARAMS / ncols) {
        qbi_seterr(&s->err, QB_EINVAL, "whereIn list too long");
        return;
    }
    qbi_sb_init(&sb);
    qbi_sb_addc(&sb, '(');
    for (i = 0; i < ncols; i++) {
        if (i > 0)
            qbi_sb_adds(&sb, ", ");
        qbi_sb_adds(&sb, cols[i]);
    }
    qbi_sb_adds(&sb, (how & QB_NOT) ? ") NOT IN (VALUES " : ") IN (VALUES ");
    for (r = 0; r < nrows; r++) {
        if (r > 0)
            qbi_sb_adds(&sb, ", ");
        qbi_sb_addc(&sb, '(');
        for (i = 0; i < ncols; i++)
            qbi_sb_adds(&sb, i > 0 ? ", ?" : "?");
        qbi_sb_addc(&sb, ')');
    }
    qbi_sb_addc(&sb, ')');
    add_generated(s, how, &sb, nrows * ncols, vals);
}

QB_API void qb_select_where_in(qb_select *s, unsigned how, const char *col,
                               size_t n, const qb_value *vals)
{
    qb_select_where_in_cols(s, how, 1, &col, n, vals);
}

/* WHERE col <op> (<not_op> with QB_NOT), binding nv values. */
static void where_col(qb_select *s, unsigned how, const char *col,
                      const char *op, const char *not_op, size_t nv,
                      const qb_value *v)
{
    qbi_sb sb;

    if (!ok(s) || qbi_name_check(&s->err, "column", col, 1) != QB_OK)
        return;
    qbi_sb_init(&sb);
    qbi_sb_adds(&sb, col);
    qbi_sb_adds(&sb, (how & QB_NOT) ? not_op : op);
    add_generated(s, how, &sb, nv, v);
}

QB_API void qb_select_where_null(qb_select *s, unsigned how, const char *col)
{
    where_col(s, how, col, " IS NULL", " IS NOT NULL", 0, NULL);
}

QB_API void qb_select_where_between(qb_select *s, unsigned how,
                                    const char *col, qb_value lo, qb_value hi)
{
    qb_value v[2];

    v[0] = lo;
    v[1] = hi;
    where_col(s, how, col, " BETWEEN ? AND ?", " NOT BETWEEN ? AND ?", 2, v);
}

QB_API void qb_select_where_like(qb_select *s, unsigned how, const char *col,
                                 qb_value pattern)
{
    where_col(s, how, col, " LIKE ?", " NOT LIKE ?", 1, &pattern);
}

QB_API void qb_select_when(qb_select *s, int cond,
                           void (*then)(qb_select *, void *),
                           void (*otherwise)(qb_select *, void *), void *arg)
{
    if (!ok(s))
        return;
    if (cond && then != NULL)
        then(s, arg);
    else if (!cond && otherwise != NULL)
        otherwise(s, arg);
}

/* ---- joins ------------------------------------------------------------- */

/* Normalise a join type: upper-case words from a fixed set, a trailing
 * JOIN dropped (so "INNER" and "INNER JOIN" agree).  NULL on bad input. */
static char *join_type(const char *type, int *natural)
{
    static const char *const words[] = { "INNER", "LEFT", "RIGHT", "FULL",
                                         "OUTER", "CROSS", "NATURAL", "JOIN" };
    qbi_sb sb;
    const char *p = type;
    size_t nw = 0, k;
    int saw_join = 0;

    *natural = 0;
    qbi_sb_init(&sb);
    while (*p != '\0') {
        const char *w;
        size_t len;
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (*p == '\0')
            break;
        w = p;
        while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n')
            p++;
        len = (size_t)(p - w);
        for (k = 0; k < sizeof words / sizeof words[0]; k++)
            if (strlen(words[k]) == len && strncasecmp(w, words[k], len) == 0)
                break;
        if (k == sizeof words / sizeof words[0] || saw_join || ++nw > 3)
            goto bad;
        if (k == 7) { /* JOIN: must be last */
            saw_join = 1;
            continue;
        }
        if (k == 6)
            *natural = 1;
        if (sb.len > 0)
            qbi_sb_addc(&sb, ' ');
        qbi_sb_adds(&sb, words[k]);
    }
    if (sb.len == 0 && !saw_join)
        goto bad;
    return qbi_sb_take(&sb, NULL);
bad:
    qbi_sb_free(&sb);
    return NULL;
}

static void add_join(qb_select *s, const char *type, const char *table,
                     const qb_select *sub, const char *alias, const char *on,
                     int force_no_on)
{
    sel_join j;
    int natural = 0, rc;

    if (!ok(s))
        return;
    memset(&j, 0, sizeof j);
    if (type != NULL && type[0] != '\0') {
        j.type = join_type(type, &natural);
        if (j.type == NULL) {
            qbi_seterr(&s->err, QB_EINVAL, "Invalid join type: %s\n  Hint: "
                       "use INNER, LEFT, RIGHT, FULL, CROSS, NATURAL "
                       "(optionally with OUTER / JOIN)", type);
            return;
        }
        if (j.type[0] == '\0') { /* just "JOIN" */
            free(j.type);
            j.type = NULL;
        }
    }
    if (sub == NULL && qbi_name_check(&s->err, "join table", table, 1) !=
        QB_OK)
        goto fail;
    if (alias != NULL && qbi_name_check(&s->err, "join alias", alias, 0) !=
        QB_OK)
        goto fail;
    if (force_no_on || natural || (on != NULL && on[0] == '\0'))
        on = NULL;
    if (on != NULL &&
        qbi_fragment_check(&s->err, "JOIN", on) !=
            QB_OK)
        goto fail;
    rc = grow((void **)&s->joins, &s->capjoins, s->njoins, sizeof *s->joins);
    if (rc != QB_OK) {
        qbi_seterr(&s->err, rc, rc == QB_EINVAL ? "Too many joins" : NULL);
        goto fail;
    }
    if (sub != NULL) {
        j.sub = take_sub(s, sub);
        if (j.sub == NULL)
            goto fail;
    } else if (dupstr(&j.table, table) != QB_OK) {
        goto nomem;
    }
    if (dupstr(&j.alias, alias) != QB_OK || dupstr(&j.on, on) != QB_OK)
        goto nomem;
    if (j.sub != NULL)
        note_depth(s, j.sub);
    s->joins[s->njoins++] = j;
    return;
nomem:
    setnomem(s);
fail:
    free(j.type);
    free(j.table);
    qbi_select_free(j.sub);
    free(j.alias);
    free(j.on);
}

QB_API void qb_select_join(qb_select *s, const char *type, const char *table,
                           const char *alias, const char *on)
{
    add_join(s, type, table, NULL, alias, on, 0);
}

QB_API void qb_select_join_sub(qb_select *s, const char *type,
                               const qb_select *sub, const char *alias,
                               const char *on)
{
    if (ok(s) && sub == NULL) {
        qbi_seterr(&s->err, QB_ESUBQUERY, "Subquery is NULL");
        return;
    }
    add_join(s, type, NULL, sub, alias, on, 0);
}

/* qb_select_T_join(s, table, alias, on): qb_select_join of type TYPE. */
#define SELECT_DEFINE_JOIN(T, TYPE)                                          \
    QB_API void qb_select_##T##_join(qb_select *s, const char *table,        \
                                     const char *alias, const char *on)      \
    {                                                                        \
        add_join(s, TYPE, table, NULL, alias, on, 0);                        \
    }

SELECT_DEFINE_JOIN(inner, "INNER")
SELECT_DEFINE_JOIN(left, "LEFT")
SELECT_DEFINE_JOIN(right, "RIGHT")
SELECT_DEFINE_JOIN(full, "FULL")

QB_API void qb_select_cross_join(qb_select *s, const char *table,
                                 const char *alias)
{
    add_join(s, "CROSS", table, NULL, alias, NULL, 1);
}

QB_API void qb_select_natural_join(qb_select *s, const char *table)
{
    add_join(s, "NATURAL", table, NULL, NULL, NULL, 1);
}

/* ---- CTEs and set operations ------------------------------------------ */

QB_API void qb_select_with(qb_select *s, const char *name, const qb_select *q,
                           size_t ncols, const char *const *cols)
{
    sel_cte c;
    size_t i;
    int rc;

    if (!ok(s) || qbi_name_check(&s->err, "CTE name", name, 0) != QB_OK)
        return;
    if (ncols > 0 && cols == NULL) {
        qbi_seterr(&s->err, QB_EINVAL, "NULL CTE column list");
        return;
    }
    for (i = 0; i < ncols; i++)
        if (qbi_name_check(&s->err, "CTE column", cols[i], 0) != QB_OK)
            return;
    rc = grow((void **)&s->ctes, &s->capctes, s->nctes, sizeof *s->ctes);
    if (rc != QB_OK) {
        qbi_seterr(&s->err, rc, rc == QB_EINVAL ? "Too many CTEs" : NULL);
        return;
    }
    memset(&c, 0, sizeof c);
    c.sub = take_sub(s, q);
    if (c.sub == NULL)
        return;
    if (dupstr(&c.name, name) != QB_OK)
        goto nomem;
    for (i = 0; i < ncols; i++)
        if (qbi_strlist_add(&c.cols, cols[i]) != QB_OK)
            goto nomem;
    note_depth(s, c.sub);
    s->ctes[s->nctes++] = c;
    return;
nomem:
    setnomem(s);
    free(c.name);
    qbi_strlist_free(&c.cols);
    qbi_select_free(c.sub);
}

QB_API void qb_select_set_op(qb_select *s, qb_setop op, const qb_select *q)
{
    qb_select *c;
    int rc;

    if (!ok(s))
        return;
    if (op < QB_UNION || op > QB_EXCEPT_ALL) {
        qbi_seterr(&s->err, QB_EINVAL, "Invalid set operation %d", (int)op);
        return;
    }
    rc = grow((void **)&s->setops, &s->capsetops, s->nsetops,
              sizeof *s->setops);
    if (rc != QB_OK) {
        qbi_seterr(&s->err, rc, rc == QB_EINVAL ? "Too many set operations"
                                                : NULL);
        return;
    }
    c = take_sub(s, q);
    if (c == NULL)
        return;
    note_depth(s, c);
    s->setops[s->nsetops].op = op;
    s->setops[s->nsetops].sub = c;
    s->nsetops++;
}

/* ---- rendering --------------------------------------------------------- */

static const char *setop_sql(qb_setop op)
{
    switch (op) {
    case QB_UNION: return "UNION";
    case QB_UNION_ALL: return "UNION ALL";
    case QB_INTERSECT: return "INTERSECT";
    case QB_INTERSECT_ALL: return "INTERSECT ALL";
    case QB_EXCEPT: return "EXCEPT";
    default: return "EXCEPT ALL";
    }
}

static void render(qbi_rctx *r, const qb_select *s, const sel_mode *m)
{
    qbi_sb *sb = &r->sb;
    size_t i;
    int has_lim, has_off;
    int64_t lim, off;

    if (s->nctes > 0) {
        qbi_sb_adds(sb, "WITH ");
        for (i = 0; i < s->nctes; i++) {
            if (i > 0)
                qbi_sb_adds(sb, ", ");
            qbi_sb_adds(sb, s->ctes[i].name);
            if (s->ctes[i].cols.n > 0) {
                qbi_sb_addc(sb, '(');
                qbi_strlist_join(sb, &s->ctes[i].cols, ", ");
                qbi_sb_addc(sb, ')');
            }
            qbi_sb_adds(sb, " AS (");
            render(r, s->ctes[i].sub, NULL);
            qbi_sb_addc(sb, ')');
        }
        qbi_sb_addc(sb, ' ');
    }
    qbi_sb_adds(sb, "SELECT ");
    if (s->distinct) {
        qbi_sb_adds(sb, "DISTINCT ");
        if (s->distinct_on.n > 0) {
            qbi_sb_adds(sb, "ON (");
            qbi_strlist_join(sb, &s->distinct_on, ", ");
            qbi_sb_adds(sb, ") ");
        }
    }
    if (m != NULL && m->count)
        qbi_sb_adds(sb, "count(*) as total");
    else if (s->fields.n > 0)
        qbi_strlist_join(sb, &s->fields, ", ");
    else
        qbi_sb_addc(sb, '*');
    qbi_sb_adds(sb, " FROM ");
    qbi_sb_adds(sb, s->table);
    for (i = 0; i < s->njoins; i++) {
        const sel_join *j = &s->joins[i];
        qbi_sb_addc(sb, ' ');
        if (j->type != NULL) {
            qbi_sb_adds(sb, j->type);
            qbi_sb_addc(sb, ' ');
        }
        qbi_sb_adds(sb, "JOIN ");
        if (j->sub != NULL) {
            qbi_sb_addc(sb, '(');
            render(r, j->sub, NULL);
            qbi_sb_addc(sb, ')');
        } else {
            qbi_sb_adds(sb, j->table);
        }
        if (j->alias != NULL) {
            qbi_sb_adds(sb, " AS ");
            qbi_sb_adds(sb, j->alias);
        }
        if (j->on != NULL) {
            qbi_sb_adds(sb, " ON ");
            qbi_sb_addu(sb, j->on, strlen(j->on));
        }
    }
    if (s->where.top.n > 0) {
        qbi_sb_adds(sb, " WHERE ");
        qbi_clause_render(r, &s->where);
    }
    if (s->group_by.n > 0 && !(m != NULL && m->count)) {
        qbi_sb_adds(sb, " GROUP BY ");
        qbi_strlist_join(sb, &s->group_by, ", ");
    }
    if (s->having.top.n > 0) {
        qbi_sb_adds(sb, " HAVING ");
        qbi_clause_render(r, &s->having);
    }
    for (i = 0; i < s->nsetops; i++) {
        qbi_sb_addc(sb, ' ');
        qbi_sb_adds(sb, setop_sql(s->setops[i].op));
        qbi_sb_addc(sb, ' ');
        render(r, s->setops[i].sub, NULL);
    }
    /* count(): workers-qb keeps ORDER BY, which SQLite ignores; on
     * PostgreSQL an ORDER BY column outside the aggregate is an error
     * (42803), and the order cannot change a count. */
    if (s->order_by.n > 0 &&
        !(m != NULL && m->count && r->dialect == QB_DIALECT_POSTGRES)) {
        qbi_sb_adds(sb, " ORDER BY ");
        qbi_strlist_join(sb, &s->order_by, ", ");
    }

    has_lim = s->has_limit;
    lim = s->limit;
    has_off = s->has_offset;
    off = s->offset;
    if (m != NULL) {
        if (m->count) {
            has_lim = 1;
            lim = 1;
            has_off = 0;
        } else if (m->one) {
            has_lim = 1;
            lim = 1;
        }
    }
    if (has_lim) {
        qbi_sb_adds(sb, " LIMIT ");
        qbi_sb_addnum(sb, 0, lim);
    }
    else if (has_off && r->dialect == QB_DIALECT_SQLITE) {
        qbi_sb_adds(sb, " LIMIT -1"); /* SQLite needs LIMIT before OFFSET */
        r->sqlite_only = 1;
    }
    if (has_off) {
        qbi_sb_adds(sb, " OFFSET ");
        qbi_sb_addnum(sb, 0, off);
    }
}

void qbi_select_render(qbi_rctx *r, const qb_select *s)
{
    render(r, s, NULL);
}

static int build_mode(const qb_select *s, const sel_mode *m, qb_fetch fetch,
                      const char *prefix, qb_query **out)
{
    qbi_rctx r;
    qb_query *q = NULL;
    int rc;

    if ((rc = QBI_BUILD_BEGIN(s, out)) != QB_OK)
        return rc;
    if (fetch != QB_FETCH_NONE && fetch != QB_FETCH_ONE &&
        fetch != QB_FETCH_ALL)
        return QB_EINVAL;

    qbi_rctx_init(&r, s->dialect, 0);
    if (prefix != NULL) {
        qbi_sb_adds(&r.sb, prefix);
        r.sqlite_only = 1; /* EXPLAIN QUERY PLAN */
    }
    render(&r, s, m);
    if (r.err == QB_OK && r.nparams > QBI_DEFAULT_MAX_PARAMS)
        r.err = QB_EINVAL;
    if (m == NULL || !m->count) {
        /* count(): same walk, so the same values in the same order */
        sel_mode cm;
        qbi_rctx cr;
        memset(&cm, 0, sizeof cm);
        cm.count = 1;
        qbi_rctx_init(&cr, s->dialect, 0);
        render(&cr, s, &cm);
        rc = qbi_rctx_finish(&r, QB_KIND_SELECT, fetch, &cr, &q);
        qbi_rctx_free(&cr);
    } else {
        rc = qbi_rctx_finish(&r, QB_KIND_SELECT, fetch, NULL, &q);
    }
    qbi_rctx_free(&r);
    if (rc != QB_OK)
        return rc;
    *out = q;
    return QB_OK;
}

QB_API int qb_select_build(const qb_select *s, qb_fetch fetch, qb_query **out)
{
    sel_mode m;
    memset(&m, 0, sizeof m);
    m.one = fetch == QB_FETCH_ONE;
    return build_mode(s, &m, fetch, NULL, out);
}

QB_API int qb_select_build_count(const qb_select *s, qb_query **out)
{
    sel_mode m;
    memset(&m, 0, sizeof m);
    m.count = 1;
    return build_mode(s, &m, QB_FETCH_ONE, NULL, out);
}

QB_API void qb_select_paginate(qb_select *s, int64_t page,
                               int64_t per_page)
{
    if (!ok(s))
        return;
    if (page < 1) {
        qbi_seterr(&s->err, QB_ECONFIG, "Invalid page value: %lld. Page must "
                   "be an integer >= 1.\n  Hint: Pass a positive integer for "
                   "the page option, e.g. paginate(page 1, perPage 20)",
                   (long long)page);
        return;
    }
    if (per_page < 1) {
        qbi_seterr(&s->err, QB_ECONFIG, "Invalid perPage value: %lld. "
                   "perPage must be an integer >= 1.\n  Hint: Pass a "
                   "positive integer for the perPage option, e.g. "
                   "paginate(page 1, perPage 20)", (long long)per_page);
        return;
    }
    if (page - 1 > INT64_MAX / per_page) {
        qbi_seterr(&s->err, QB_ECONFIG, "Invalid page value: %lld. The "
                   "offset (page - 1) * perPage overflows.\n  Hint: Pass a "
                   "smaller page", (long long)page);
        return;
    }
    s->has_limit = 1;
    s->limit = per_page;
    s->has_offset = 1;
    s->offset = (page - 1) * per_page;
}

QB_API int qb_select_build_explain(const qb_select *s, qb_query **out)
{
    sel_mode m;

    if (s != NULL && s->err.code == QB_OK &&
        s->dialect != QB_DIALECT_SQLITE) {
        if (out != NULL)
            *out = NULL;
        return QB_EDIALECT;
    }
    memset(&m, 0, sizeof m);
    return build_mode(s, &m, QB_FETCH_ALL, "EXPLAIN QUERY PLAN ", out);
}
