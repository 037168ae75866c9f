/*
 * clause.c -- conditions (WHERE / HAVING / ON CONFLICT ... WHERE), their
 * values, and placeholder rendering shared by every statement builder.
 *
 * DESIGN
 *   A condition is a trusted SQL fragment written with `?` and `?N`
 *   placeholders, plus the values of the call that added it.  Within one
 *   call (one where()/having() invocation, possibly with several condition
 *   strings) workers-qb's object-API rule holds: a bare `?` takes the next
 *   value, a `?N` takes the next value the first time label N is seen and
 *   reuses it afterwards.  Labels are local to the call, so numbering can
 *   never be corrupted by what came before (subqueries, earlier `?`), and
 *   reuse works for every form.
 *
 *   Rendering walks the statement in text order with one qbi_rctx.  Each
 *   value gets the next global index g (params[g-1]); the placeholder is
 *   written as `$g` (PostgreSQL), or `?g`, or a bare `?` when the source
 *   was bare, the statement allows it, and SQLite would give that `?` the
 *   index g anyway (g is one more than any index written so far).  So the
 *   SQL matches workers-qb wherever workers-qb was right, and the binding
 *   contract params[i] <-> index i+1 holds everywhere.
 *
 *   A subquery value is rendered in place, in parentheses, continuing the
 *   same numbering, so its values land at the right position.  Reusing a
 *   subquery's label replays it with explicit numbers and no new values.
 *
 *   Fragments are checked when added: quotes and comments must close
 *   inside the fragment, no ';', no named parameters ($x @x :x #x, read
 *   the way SQLite's tokenizer reads them, since SQLite would number them
 *   itself and shift every binding), and a `?` inside a literal is not a
 *   placeholder.  Errors are sticky (qbi_err).
 */
#include "qb_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sticky errors ----------------------------------------------------- */

void qbi_seterr(qbi_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    int n;

    if (e->code != QB_OK)
        return;
    e->code = code;
    e->msg = NULL;
    if (fmt == NULL)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    msg = malloc((size_t)n + 1);
    if (msg == NULL)
        return; /* the code alone still reports the error */
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    e->msg = msg;
}

void qbi_err_free(qbi_err *e)
{
    free(e->msg);
    e->msg = NULL;
    e->code = QB_OK;
}

int qbi_err_copy(qbi_err *dst, const qbi_err *src)
{
    dst->code = src->code;
    dst->msg = NULL;
    if (src->msg != NULL) {
        dst->msg = strdup(src->msg);
        if (dst->msg == NULL)
            return QB_ENOMEM;
    }
    return QB_OK;
}

const char *qbi_errmsg(const qbi_err *e)
{
    return e->msg != NULL ? e->msg : qb_strerror(e->code);
}

/* ---- string lists ------------------------------------------------------ */

int qbi_strlist_add(qbi_strlist *l, const char *s)
{
    char *c;

    char **nv;

    if (l->n >= QBI_MAX_ITEMS)
        return QB_EINVAL;
    if ((nv = qbi_grow(l->v, &l->cap, l->n, sizeof *nv, 4, NULL)) == NULL)
        return QB_ENOMEM;
    l->v = nv;
    c = strdup(s);
    if (c == NULL)
        return QB_ENOMEM;
    l->v[l->n++] = c;
    return QB_OK;
}

void qbi_strlist_free(qbi_strlist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int qbi_strlist_copy(qbi_strlist *dst, const qbi_strlist *src)
{
    size_t i;
    memset(dst, 0, sizeof *dst);
    for (i = 0; i < src->n; i++) {
        int rc = qbi_strlist_add(dst, src->v[i]);
        if (rc != QB_OK) {
            qbi_strlist_free(dst);
            return rc;
        }
    }
    return QB_OK;
}

void qbi_strlist_join(qbi_sb *sb, const qbi_strlist *l, const char *sep)
{
    size_t i;
    for (i = 0; i < l->n; i++) {
        if (i > 0)
            qbi_sb_adds(sb, sep);
        qbi_sb_addu(sb, l->v[i], strlen(l->v[i]));
    }
}

/* ---- fragments and names ---------------------------------------------- */

/* SQLite's IdChar(): what may continue a name or a parameter name. */
static int sqlite_idchar(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '$' ||
           (unsigned char)c >= 0x80;
}

/* Would SQLite's tokenizer read a named parameter ($x @x :x #x) at s[i]?
 * It takes identifier characters and "::" pairs; at least one identifier
 * character makes it a parameter. */
static int sqlite_var_at(const char *s, size_t n, size_t i)
{
    size_t j = i + 1, idc = 0;
    while (j < n) {
        if (sqlite_idchar(s[j])) {
            idc++;
            j++;
        } else if (s[j] == ':' && j + 1 < n && s[j + 1] == ':') {
            j += 2;
        } else {
            break;
        }
    }
    return idc > 0;
}

/* Labels seen in one call (distinct ?N numbers). */
typedef struct labelset {
    size_t *v;
    size_t n, cap;
} labelset;

static int labelset_find(const labelset *ls, size_t label)
{
    size_t i;
    for (i = 0; i < ls->n; i++)
        if (ls->v[i] == label)
            return 1;
    return 0;
}

static int labelset_add(labelset *ls, size_t label)
{
    size_t *nv;

    if (labelset_find(ls, label))
        return QB_OK;
    if ((nv = qbi_grow(ls->v, &ls->cap, ls->n, sizeof *nv, 8, NULL)) == NULL)
        return QB_ENOMEM;
    ls->v = nv;
    ls->v[ls->n++] = label;
    return QB_OK;
}

/* Parse a placeholder at s[i] == '?': returns the index past it and sets
 * *label (0 for a bare ?).  Labels are capped so they cannot overflow. */
static size_t parse_ph(const char *s, size_t n, size_t i, size_t *label)
{
    size_t j = i + 1, v = 0;
    while (j < n && s[j] >= '0' && s[j] <= '9') {
        if (v < 1000000)
            v = v * 10 + (size_t)(s[j] - '0');
        j++;
    }
    *label = v;
    if (j > i + 1 && v == 0)
        *label = (size_t)-1; /* ?0: never valid */
    return j;
}

/* Scan one fragment: check it and count its placeholders into (nbare, ls).
 * allow_ph = 0: any placeholder is an error. */
static int frag_scan(qbi_err *e, const char *clause, const char *frag,
                     int allow_ph, size_t *nbare, labelset *ls)
{
    size_t n = strlen(frag), i = 0, j, label;
    int closed;

    if (n >= QBI_SQL_MAX) {
        qbi_seterr(e, QB_EINVAL, "%s fragment too long", clause);
        return e->code;
    }
    while (i < n) {
        j = qbi_sql_skip(frag, n, i, QB_DIALECT_SQLITE, &closed);
        if (j != i) {
            if (!closed) {
                qbi_seterr(e, QB_EINVAL,
                           "Unterminated quote or comment in %s fragment\n"
                           "  Clause: %s\n  Query: %s", clause, clause,
                           frag);
                return e->code;
            }
            i = j;
            continue;
        }
        switch (frag[i]) {
        case ';':
            qbi_seterr(e, QB_EINVAL,
                       "A %s fragment may not contain ';'\n  Query: %s",
                       clause, frag);
            return e->code;
        case ':': case '@': case '$': case '#':
            /* SQLite reads these followed by an identifier character as a
             * named parameter and would number it itself, shifting every
             * binding.  '$' inside a name (x$) and '::' are not. */
            if (sqlite_var_at(frag, n, i) &&
                !(frag[i] == '$' && i > 0 && sqlite_idchar(frag[i - 1])) &&
                !(frag[i] == ':' && i > 0 && frag[i - 1] == ':')) {
                qbi_seterr(e, QB_EINVAL,
                           "Named parameters are not supported (use ? or "
                           "?N)\n  Clause: %s\n  Query: %s", clause, frag);
                return e->code;
            }
            i++;
            continue;
        case '?':
            if (!allow_ph) {
                qbi_seterr(e, QB_EPARAM,
                           "Parameter count mismatch\n  Clause: %s\n"
                           "  Query: %s\n  Expected: 0 parameter(s)\n"
                           "  Received: 0 parameter(s)\n  Hint: this part "
                           "of the statement takes no parameters; pass "
                           "values through where()/having()", clause, frag);
                return e->code;
            }
            j = parse_ph(frag, n, i, &label);
            if (label == (size_t)-1) {
                qbi_seterr(e, QB_EINVAL, "Invalid placeholder ?0\n"
                           "  Clause: %s\n  Query: %s", clause, frag);
                return e->code;
            }
            if (label == 0)
                (*nbare)++;
            else if (labelset_add(ls, label) != QB_OK) {
                qbi_seterr(e, QB_ENOMEM, NULL);
                return e->code;
            }
            i = j;
            continue;
        default:
            i++;
        }
    }
    return QB_OK;
}

int qbi_fragment_check(qbi_err *e, const char *clause, const char *frag)
{
    labelset ls = { NULL, 0, 0 };
    size_t nb = 0;
    int rc;

    if (frag == NULL) {
        qbi_seterr(e, QB_EINVAL, "NULL %s fragment", clause);
        return e->code;
    }
    rc = frag_scan(e, clause, frag, 0, &nb, &ls);
    free(ls.v);
    return rc;
}

int qbi_name_check(qbi_err *e, const char *what, const char *name, int mode)
{
    if (name == NULL || name[0] == '\0') {
        qbi_seterr(e, QB_EINVAL, "%s is required\n  Hint: Provide a valid "
                   "%s", what, what);
        return e->code;
    }
    if (!qb_ident_valid(name) || (mode == 0 && strchr(name, '.') != NULL)) {
        qbi_seterr(e, QB_EINVAL, "Invalid %s: %s\n  Hint: names are "
                   "[A-Za-z_][A-Za-z0-9_]*%s, at most 128 bytes", what, name,
                   mode ? " with at most one 'schema.' prefix" : "");
        return e->code;
    }
    return QB_OK;
}

/* ---- clauses ----------------------------------------------------------- */

static void node_free(qbi_node *nd);

static void nlist_free(qbi_nlist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        node_free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void node_free(qbi_node *nd)
{
    if (nd == NULL)
        return;
    free(nd->text);
    nlist_free(&nd->left);
    nlist_free(&nd->right);
    free(nd);
}

static int nlist_push(qbi_nlist *l, qbi_node *nd)
{
    qbi_node **nv = qbi_grow(l->v, &l->cap, l->n, sizeof *nv, 4, NULL);

    if (nv == NULL)
        return QB_ENOMEM;
    l->v = nv;
    l->v[l->n++] = nd;
    return QB_OK;
}

static void call_free(qbi_call *c)
{
    size_t i;
    for (i = 0; i < c->nvals; i++) {
        if (c->vals[i].type == QB_V_SELECT)
            qbi_select_free((struct qb_select *)(uintptr_t)c->vals[i].u.sel);
        else
            qbi_value_clear(&c->vals[i]);
    }
    free(c->vals);
    c->vals = NULL;
    c->nvals = 0;
}

void qbi_clause_free(qbi_clause *c)
{
    size_t i;
    nlist_free(&c->top);
    for (i = 0; i < c->ncalls; i++)
        call_free(&c->calls[i]);
    free(c->calls);
    memset(c, 0, sizeof *c);
}

/* Copy a value for keeping in a builder: subqueries are cloned. */
static int keep_value(qb_value *dst, const qb_value *src)
{
    if (src->type == QB_V_SELECT) {
        struct qb_select *cl = qbi_select_clone(src->u.sel);
        if (cl == NULL)
            return QB_ENOMEM;
        *dst = *src;
        dst->u.sel = cl;
        return QB_OK;
    }
    return qbi_value_copy(dst, src);
}

static int call_copy(qbi_call *dst, const qbi_call *src)
{
    size_t i;
    dst->vals = NULL;
    dst->nvals = 0;
    if (src->nvals == 0)
        return QB_OK;
    dst->vals = calloc(src->nvals, sizeof *dst->vals);
    if (dst->vals == NULL)
        return QB_ENOMEM;
    for (i = 0; i < src->nvals; i++) {
        if (keep_value(&dst->vals[i], &src->vals[i]) != QB_OK) {
            call_free(dst);
            return QB_ENOMEM;
        }
        dst->nvals++;
    }
    return QB_OK;
}

static qbi_node *node_copy(const qbi_node *src);

static int nlist_copy(qbi_nlist *dst, const qbi_nlist *src)
{
    size_t i;
    memset(dst, 0, sizeof *dst);
    for (i = 0; i < src->n; i++) {
        qbi_node *nd = node_copy(src->v[i]);
        if (nd == NULL || nlist_push(dst, nd) != QB_OK) {
            node_free(nd);
            nlist_free(dst);
            return QB_ENOMEM;
        }
    }
    return QB_OK;
}

static qbi_node *node_copy(const qbi_node *src)
{
    qbi_node *nd = calloc(1, sizeof *nd);
    if (nd == NULL)
        return NULL;
    nd->is_or = src->is_or;
    nd->call = src->call;
    if (src->text != NULL && (nd->text = strdup(src->text)) == NULL)
        goto fail;
    if (nlist_copy(&nd->left, &src->left) != QB_OK ||
        nlist_copy(&nd->right, &src->right) != QB_OK)
        goto fail;
    return nd;
fail:
    node_free(nd);
    return NULL;
}

int qbi_clause_copy(qbi_clause *dst, const qbi_clause *src)
{
    size_t i;

    memset(dst, 0, sizeof *dst);
    if (nlist_copy(&dst->top, &src->top) != QB_OK ||
        qbi_array_new((void **)&dst->calls, &dst->capcalls, src->ncalls,
                      sizeof *dst->calls) != QB_OK)
        goto fail;
    for (i = 0; i < src->ncalls; i++) {
        if (call_copy(&dst->calls[i], &src->calls[i]) != QB_OK)
            goto fail;
        dst->ncalls++;
    }
    dst->depth = src->depth;
    dst->nleaves = src->nleaves;
    return QB_OK;
fail:
    qbi_clause_free(dst);
    return QB_ENOMEM;
}

static void mismatch(qbi_err *e, const char *clause, size_t ncond,
                     const char *const *conds, size_t expected,
                     size_t received)
{
    qbi_sb q;
    size_t i;

    qbi_sb_init(&q);
    for (i = 0; i < ncond; i++) {
        if (i > 0)
            qbi_sb_addc(&q, ' ');
        qbi_sb_adds(&q, conds[i]);
    }
    qbi_seterr(e, QB_EPARAM,
               "Parameter count mismatch\n  Clause: %s\n  Query: %s\n"
               "  Expected: %zu parameter(s)\n  Received: %zu parameter(s)\n"
               "  Hint: %s", clause, q.p ? q.p : "", expected, received,
               received > expected
                   ? "Remove extra parameters or add more placeholders (?) "
                     "to your query"
                   : "Add missing parameters or remove extra placeholders "
                     "(?) from your query");
    qbi_sb_free(&q);
}

void qbi_clause_add(qbi_clause *c, qbi_err *e, const char *clause, int or_,
                    size_t ncond, const char *const *conds, size_t n,
                    const qb_value *vals)
{
    labelset ls = { NULL, 0, 0 };
    size_t i, nbare = 0, expected;
    qbi_call call = { NULL, 0 };
    qbi_nlist fresh = { NULL, 0, 0 };
    qbi_node *ornode = NULL;
    qbi_call *nc;

    if (e->code != QB_OK)
        return;
    if ((ncond > 0 && conds == NULL) || (n > 0 && vals == NULL)) {
        qbi_seterr(e, QB_EINVAL, "NULL %s conditions or values", clause);
        return;
    }
    for (i = 0; i < ncond; i++) {
        size_t nb = 0;
        if (conds[i] == NULL) {
            qbi_seterr(e, QB_EINVAL, "NULL %s condition", clause);
            goto out;
        }
        if (frag_scan(e, clause, conds[i], 1, &nb, &ls) != QB_OK)
            goto out;
        nbare += nb;
    }
    expected = nbare + ls.n;
    if (expected != n) {
        mismatch(e, clause, ncond, conds, expected, n);
        goto out;
    }
    if (ncond == 0)
        goto out; /* workers-qb: an empty condition list adds nothing */
    if (c->nleaves + ncond > QBI_MAX_ITEMS || c->ncalls >= QBI_MAX_ITEMS) {
        qbi_seterr(e, QB_EINVAL, "Too many %s conditions (max %u)", clause,
                   QBI_MAX_ITEMS);
        goto out;
    }
    if (or_ && c->top.n > 0 && c->depth + 1 > QBI_MAX_DEPTH) {
        qbi_seterr(e, QB_EINVAL, "orWhere nested too deeply (max %u)",
                   QBI_MAX_DEPTH);
        goto out;
    }

    /* Values: check and keep. */
    if (n > 0) {
        call.vals = calloc(n, sizeof *call.vals);
        if (call.vals == NULL)
            goto nomem;
    }
    for (i = 0; i < n; i++) {
        const qb_value *v = &vals[i];
        if (v->type == QB_V_SELECT) {
            const qbi_err *se;
            if (v->u.sel == NULL) {
                qbi_seterr(e, QB_ESUBQUERY, "Subquery value is NULL");
                goto out;
            }
            se = qbi_select_err(v->u.sel);
            if (se->code != QB_OK) {
                qbi_seterr(e, se->code, "%s", qbi_errmsg(se));
                goto out;
            }
            if (qbi_select_depth(v->u.sel) + 1 > QBI_MAX_DEPTH) {
                qbi_seterr(e, QB_ESUBQUERY, "Subqueries nested too deeply "
                           "(max %u)", QBI_MAX_DEPTH);
                goto out;
            }
        } else if (v->type == QB_V_RAW) {
            if (v->u.b.p == NULL ||
                qbi_fragment_check(e, "RAW", v->u.b.p) != QB_OK) {
                if (e->code == QB_OK)
                    qbi_seterr(e, QB_EINVAL, "NULL raw value");
                goto out;
            }
        } else if (!qbi_value_bindable(v)) {
            qbi_seterr(e, QB_EINVAL, "Invalid value #%zu in %s", i + 1,
                       clause);
            goto out;
        }
        if (keep_value(&call.vals[i], v) != QB_OK)
            goto nomem;
        call.nvals++;
    }

    /* Nodes. */
    for (i = 0; i < ncond; i++) {
        qbi_node *nd = calloc(1, sizeof *nd);
        if (nd == NULL)
            goto nomem;
        nd->call = c->ncalls;
        nd->text = strdup(conds[i]);
        if (nd->text == NULL || nlist_push(&fresh, nd) != QB_OK) {
            node_free(nd);
            goto nomem;
        }
    }
    nc = qbi_grow(c->calls, &c->capcalls, c->ncalls, sizeof *nc, 4, NULL);
    if (nc == NULL)
        goto nomem;
    c->calls = nc;
    if (or_ && c->top.n > 0) {
        /* (existing ANDed) OR (new ANDed): one term replaces them all. */
        ornode = calloc(1, sizeof *ornode);
        if (ornode == NULL)
            goto nomem;
        ornode->is_or = 1;
        ornode->left = c->top;
        ornode->right = fresh;
        memset(&c->top, 0, sizeof c->top);
        memset(&fresh, 0, sizeof fresh);
        if (nlist_push(&c->top, ornode) != QB_OK) {
            /* put things back so nothing leaks and the clause stays valid */
            c->top = ornode->left;
            memset(&ornode->left, 0, sizeof ornode->left);
            node_free(ornode);
            goto nomem;
        }
        c->depth++;
    } else {
        /* reserve first so the moves below cannot fail half-way */
        if (c->top.cap - c->top.n < fresh.n) {
            size_t ncap = c->top.n + fresh.n + 4;
            qbi_node **nv = realloc(c->top.v, ncap * sizeof *nv);
            if (nv == NULL)
                goto nomem;
            c->top.v = nv;
            c->top.cap = ncap;
        }
        for (i = 0; i < fresh.n; i++)
            c->top.v[c->top.n++] = fresh.v[i];
        free(fresh.v);
        memset(&fresh, 0, sizeof fresh);
    }
    c->calls[c->ncalls++] = call;
    memset(&call, 0, sizeof call);
    c->nleaves += ncond;
    goto out;

nomem:
    qbi_seterr(e, QB_ENOMEM, NULL);
out:
    nlist_free(&fresh);
    call_free(&call);
    free(ls.v);
}

/* ---- rendering --------------------------------------------------------- */

void qbi_rctx_init(qbi_rctx *r, qb_dialect d, int explicit_num)
{
    /* no memset: the inline arrays need no clearing */
    qbi_sb_init_buf(&r->sb, r->text_inl, sizeof r->text_inl);
    r->dialect = d;
    r->explicit_num = explicit_num;
    r->no_push = 0;
    r->sqlite_only = 0;
    r->counter = 0;
    r->maxemit = 0;
    r->params = r->params_inl;
    r->nparams = 0;
    r->cap = QBI_RCTX_PARAMS;
    r->err = QB_OK;
}

void qbi_rctx_free(qbi_rctx *r)
{
    qbi_sb_free(&r->sb);
    if (r->params != r->params_inl)
        free(r->params);
    r->params = NULL;
    r->nparams = r->cap = 0;
}

/* ?g or $g; the common small index is written straight into the text. */
static inline void put_index(qbi_sb *sb, char mark, size_t g)
{
    char *p;

    if (g >= 100 || sb->err != QB_OK || sb->cap - sb->len <= 3) {
        qbi_sb_addnum(sb, mark, (int64_t)g);
        return;
    }
    /* (mark, digits, never whitespace: no collapse bookkeeping needed) */
    p = sb->p + sb->len;
    *p++ = mark;
    if (g >= 10)
        *p++ = (char)('0' + g / 10);
    *p++ = (char)('0' + g % 10);
    *p = '\0';
    sb->len = (size_t)(p - sb->p);
}

static inline void emit(qbi_rctx *r, size_t g, int bare)
{
    if (r->dialect == QB_DIALECT_POSTGRES)
        put_index(&r->sb, '$', g);
    else if (bare && !r->explicit_num && g == r->maxemit + 1)
        qbi_sb_addc(&r->sb, '?');
    else
        put_index(&r->sb, '?', g);
    if (g > r->maxemit)
        r->maxemit = g;
}

void qbi_rctx_emit_index(qbi_rctx *r, size_t g, int bare)
{
    emit(r, g, bare);
}

static int params_grow(qbi_rctx *r)
{
    qb_value *np = qbi_grow(r->params, &r->cap, r->nparams, sizeof *np,
                            QBI_RCTX_PARAMS, r->params_inl);
    if (np == NULL)
        return QB_ENOMEM;
    r->params = np;
    return QB_OK;
}

void qbi_rctx_bind(qbi_rctx *r, const qb_value *v, const void *bytes,
                   int bare)
{
    size_t g = ++r->counter;

    if (!r->no_push) {
        qb_value *d;
        if (r->nparams == r->cap && params_grow(r) != QB_OK) {
            if (r->err == QB_OK)
                r->err = QB_ENOMEM;
            return;
        }
        d = &r->params[r->nparams++];
        *d = *v; /* bytes borrowed until finish */
        if (bytes != NULL)
            d->u.b.p = bytes;
    }
    emit(r, g, bare);
}

/* Per-call render state: label -> (value index, first global index).
 * Calls with few values use the inline arrays. */
#define CS_INLINE 8
typedef struct callstate {
    const qbi_call *call;
    size_t next;        /* next value of the call to take */
    size_t *label;      /* label of value k (0 = taken by a bare ?) */
    size_t *gidx;       /* global index (or subquery base) of value k */
    size_t cap;         /* room in label / gidx */
    size_t label_inl[CS_INLINE], gidx_inl[CS_INLINE];
} callstate;

static void render_value(qbi_rctx *r, const qb_value *v, int bare,
                         size_t *gidx)
{
    if (v->type == QB_V_RAW) {
        qbi_sb_addu(&r->sb, v->u.b.p, v->u.b.n);
        *gidx = 0;
    } else if (v->type == QB_V_SELECT) {
        *gidx = r->counter; /* base for a replay */
        qbi_sb_addc(&r->sb, '(');
        qbi_select_render(r, v->u.sel);
        qbi_sb_addc(&r->sb, ')');
    } else {
        qbi_rctx_bind(r, v, NULL, bare);
        *gidx = r->counter;
    }
}

static void replay_value(qbi_rctx *r, const qb_value *v, size_t gidx)
{
    if (v->type == QB_V_RAW) {
        qbi_sb_addu(&r->sb, v->u.b.p, v->u.b.n);
    } else if (v->type == QB_V_SELECT) {
        size_t saved = r->counter;
        int sx = r->explicit_num, sp = r->no_push;
        r->counter = gidx;
        r->explicit_num = 1;
        r->no_push = 1;
        qbi_sb_addc(&r->sb, '(');
        qbi_select_render(r, v->u.sel);
        qbi_sb_addc(&r->sb, ')');
        r->counter = saved;
        r->explicit_num = sx;
        r->no_push = sp;
    } else {
        qbi_rctx_emit_index(r, gidx, 0);
    }
}

static void render_leaf(qbi_rctx *r, callstate *cs, const char *text)
{
    size_t n = strlen(text), i = 0, span = 0, j, label, k;
    int closed;
    const qbi_call *call = cs->call;

    /* Text between placeholders goes out in one piece; the fragment was
     * checked when added, so only quotes and comments need skipping. */
    while (i < n) {
        char c = text[i];
        if (c != '?' && c != '\'' && c != '"' && c != '`' && c != '[' &&
            c != '-' && c != '/') {
            i++;
            continue;
        }
        j = qbi_sql_skip(text, n, i, QB_DIALECT_SQLITE, &closed);
        if (j != i) {
            i = j;
            continue;
        }
        if (c != '?') {
            i++;
            continue;
        }
        qbi_sb_addu(&r->sb, text + span, i - span);
        j = parse_ph(text, n, i, &label);
        i = span = j;
        if (label != 0) {
            for (k = 0; k < cs->next; k++)
                if (cs->label[k] == label)
                    break;
            if (k < cs->next) {
                replay_value(r, &call->vals[k], cs->gidx[k]);
                continue;
            }
        }
        if (cs->next >= call->nvals) {
            /* checked when added; only reachable on internal misuse */
            if (r->err == QB_OK)
                r->err = QB_EPARAM;
            return;
        }
        k = cs->next++;
        cs->label[k] = label;
        render_value(r, &call->vals[k], label == 0, &cs->gidx[k]);
    }
    qbi_sb_addu(&r->sb, text + span, n - span);
}

static void render_list(qbi_rctx *r, const qbi_clause *c, const qbi_nlist *l,
                        callstate *cs);

/* Make room for a call's value bookkeeping. */
static int cs_reserve(callstate *cs, size_t nvals)
{
    size_t *nl, *ng;

    if (nvals <= cs->cap)
        return QB_OK;
    /* value counts are bounded by QBI_MAX_ITEMS-sized checks */
    nl = malloc(nvals * sizeof *nl);
    ng = malloc(nvals * sizeof *ng);
    if (nl == NULL || ng == NULL) {
        free(nl);
        free(ng);
        return QB_ENOMEM;
    }
    if (cs->label != cs->label_inl) {
        free(cs->label);
        free(cs->gidx);
    }
    cs->label = nl;
    cs->gidx = ng;
    cs->cap = nvals;
    return QB_OK;
}

static void render_node(qbi_rctx *r, const qbi_clause *c, const qbi_node *nd,
                        callstate *cs)
{
    if (nd->is_or) {
        qbi_sb_addc(&r->sb, '(');
        render_list(r, c, &nd->left, cs);
        qbi_sb_adds(&r->sb, ") OR (");
        render_list(r, c, &nd->right, cs);
        qbi_sb_addc(&r->sb, ')');
        return;
    }
    if (cs->call != &c->calls[nd->call]) {
        const qbi_call *call = &c->calls[nd->call];
        /* a call's conditions are consecutive leaves, so its state is
         * only ever needed until the next call starts */
        if (cs_reserve(cs, call->nvals) != QB_OK) {
            r->err = QB_ENOMEM;
            return;
        }
        cs->call = call;
        cs->next = 0;
    }
    render_leaf(r, cs, nd->text);
}

static void render_list(qbi_rctx *r, const qbi_clause *c, const qbi_nlist *l,
                        callstate *cs)
{
    size_t i;

    if (l->n == 1) {
        render_node(r, c, l->v[0], cs);
        return;
    }
    for (i = 0; i < l->n; i++) {
        if (i > 0)
            qbi_sb_adds(&r->sb, " AND ");
        qbi_sb_addc(&r->sb, '(');
        render_node(r, c, l->v[i], cs);
        qbi_sb_addc(&r->sb, ')');
    }
}

void qbi_clause_render(qbi_rctx *r, const qbi_clause *c)
{
    callstate cs;

    cs.call = NULL;
    cs.next = 0;
    cs.label = cs.label_inl;
    cs.gidx = cs.gidx_inl;
    cs.cap = CS_INLINE;
    render_list(r, c, &c->top, &cs);
    if (cs.label != cs.label_inl) {
        free(cs.label);
        free(cs.gidx);
    }
}

/* Collapse whitespace where the text may need it (see qbi_sb.ws). */
static int rctx_text(qbi_rctx *r)
{
    if (r->err != QB_OK)
        return r->err;
    if (r->sb.err != QB_OK)
        return r->sb.err;
    if (r->sb.p == NULL) /* nothing rendered; cannot happen with init_buf */
        return QB_EINVAL;
    if (r->sb.ws)
        r->sb.len = qbi_sql_collapse_inplace(r->sb.p, r->sb.len, r->dialect);
    return QB_OK;
}

int qbi_rctx_finish(qbi_rctx *r, qb_kind kind, qb_fetch fetch,
                    qbi_rctx *count, qb_query **out)
{
    int rc;

    *out = NULL;
    rc = rctx_text(r);
    if (rc == QB_OK && count != NULL)
        rc = rctx_text(count);
    if (rc != QB_OK)
        return rc;
    rc = qbi_query_make(kind, fetch, r->dialect, r->sb.p, r->sb.len,
                        count != NULL ? count->sb.p : NULL,
                        count != NULL ? count->sb.len : 0, r->params,
                        r->nparams, out);
    if (rc == QB_OK)
        (*out)->portable = r->dialect == QB_DIALECT_SQLITE &&
                           !r->sqlite_only &&
                           (count == NULL || !count->sqlite_only);
    return rc;
}
