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
 *   Cost: building a small INSERT is two allocations, the builder (its
 *   first cells, names and value bytes live inside it) and the query
 *   (struct, params, value bytes and SQL in one block).  Names are checked
 *   once, when set; rows after the first are matched to row 0's columns
 *   then too, so rendering never compares names.  An INSERT without
 *   upsert, RETURNING or raw values (the hot one) is written straight into
 *   the query's block (insert_link_plain): its length is known up front,
 *   so it needs no render buffer, parameter list or second copy.
 *
 *   DELETE keeps `?` bare where SQLite would number it the same (workers-qb
 *   leaves DELETE placeholders as written).  On SQLite its RETURNING comes
 *   before ORDER BY / LIMIT, as SQLite's grammar requires; PostgreSQL has
 *   no DELETE ... ORDER BY / LIMIT / OFFSET, so that dialect refuses them
 *   (QB_EDIALECT) rather than build SQL the server rejects.
 */
#include "qb_priv.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- column = value sets --------------------------------------------- */

/* A kvset holds the column = value pairs of an UPDATE, an upsert SET or all
 * rows of an INSERT, as one array of cells.  Names (checked plain names,
 * at most 128 bytes) and copies of small value bytes live in two string
 * pools; the first cells and pool bytes live in storage inside the builder,
 * so a small statement's builder is a single allocation.  A copied value
 * keeps its bytes at an offset (pools move when they grow) and gets its
 * pointer back when rendered; a large one gets its own allocation. */

#define KV_NO_OFF SIZE_MAX
#define KV_NO_COL UINT32_MAX
#define KV_POOL_VALUE_MAX 256u         /* larger values: own allocation */
#define KV_POOL_MAX (64u * 1024u * 1024u) /* then everything: own allocation */

typedef struct kcell {
    qb_value v;      /* owned bytes: at off in bytes, or own heap copy */
    size_t off;      /* KV_NO_OFF: v.u.b.p is the pointer to use */
    uint32_t name;   /* offset of the NUL-terminated name in names */
    uint32_t namelen;
    uint32_t col;    /* INSERT: index of the row-0 cell with this name */
} kcell;

typedef struct kvset {
    kcell *c;
    size_t n, cap;
    kcell *c_inl;    /* builder storage for the first cells, or NULL */
    qbi_sb names;
    qbi_sb bytes;
} kvset;

/* Storage inside a builder for its first cells, names and value bytes:
 * a statement of up to KV_INL_CELLS columns with short names and values
 * needs no allocation besides the builder, which stays within malloc's
 * small-size caches (glibc: <= 1032 bytes). */
#define KV_INL_CELLS 6
typedef struct kv_inl {
    kcell c[KV_INL_CELLS];
    char names[48];
    char bytes[96];
} kv_inl;

/* Start empty, in st if given (else on the heap from the first cell). */
static void kv_init(kvset *kv, kv_inl *st)
{
    kv->c = kv->c_inl = st != NULL ? st->c : NULL;
    kv->n = 0;
    kv->cap = st != NULL ? KV_INL_CELLS : 0;
    if (st != NULL) {
        qbi_sb_init_buf(&kv->names, st->names, sizeof st->names);
        qbi_sb_init_buf(&kv->bytes, st->bytes, sizeof st->bytes);
    } else {
        qbi_sb_init(&kv->names);
        qbi_sb_init(&kv->bytes);
    }
}

static int owns_heap_bytes(const kcell *c)
{
    return (c->v.type == QB_V_TEXT || c->v.type == QB_V_BLOB ||
            c->v.type == QB_V_RAW) && !(c->v.flags & QB_VF_BORROWED) &&
           c->off == KV_NO_OFF;
}

static void kv_free(kvset *kv)
{
    size_t i;
    for (i = 0; i < kv->n; i++)
        if (owns_heap_bytes(&kv->c[i]))
            free((void *)(uintptr_t)kv->c[i].v.u.b.p);
    if (kv->c != kv->c_inl)
        free(kv->c);
    if (!kv->names.fixed)
        free(kv->names.p);
    if (!kv->bytes.fixed)
        free(kv->bytes.p);
    qbi_sb_init(&kv->names);
    qbi_sb_init(&kv->bytes);
    kv->c = kv->c_inl = NULL;
    kv->n = kv->cap = 0;
}

static const char *kv_name(const kvset *kv, const kcell *c)
{
    return kv->names.p + c->name;
}

/* The cell's bytes (valid until the pool grows), for any bytes value. */
static const char *kv_bytes(const kvset *kv, const kcell *c)
{
    return c->off != KV_NO_OFF ? kv->bytes.p + c->off
                               : (const char *)c->v.u.b.p;
}

/* Index of the cell named name[len] in cells [from, to), or to.  Names
 * are short: a plain loop beats a memcmp call. */
static size_t kv_find(const kvset *kv, size_t from, size_t to,
                      const char *name, size_t len)
{
    size_t i, k;
    const char *a;

    for (i = from; i < to; i++) {
        if (kv->c[i].namelen != len)
            continue;
        a = kv->names.p + kv->c[i].name;
        for (k = 0; k < len && a[k] == name[k]; k++)
            ;
        if (k == len)
            return i;
    }
    return to;
}

/* Length of a name that qbi_name_check(..., dot_ok) accepts (1..128 bytes
 * of [A-Za-z_][A-Za-z0-9_]*, with dot_ok one "schema." prefix), else 0.
 * Checked once, here; the length is kept so nothing measures it again. */
static size_t ident_len(const char *s, int dot_ok)
{
    size_t i;
    int start = 1, dots = 0;
    char c;

    if (s == NULL)
        return 0;
    for (i = 0; i <= 128; i++) {
        c = s[i];
        if (c == '\0')
            return start ? 0 : i; /* empty, or ends with the dot */
        if (c == '.') {
            if (!dot_ok || start || dots++ > 0)
                return 0;
            start = 1;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '_') {
            start = 0;
        } else if (start || c < '0' || c > '9') {
            return 0;
        }
    }
    return 0; /* longer than 128 bytes */
}

static int kv_grow(kvset *kv)
{
    kcell *nc = qbi_grow(kv->c, &kv->cap, kv->n, sizeof *nc, 4, kv->c_inl);
    if (nc == NULL)
        return QB_ENOMEM;
    kv->c = nc;
    return QB_OK;
}

/* Check and append col = v to the row that starts at cell `from`,
 * recording errors in e.  row0 is the number of cells of row 0 of an
 * INSERT to match the name against (SIZE_MAX: this is row 0). */
static void kv_set(kvset *kv, size_t from, size_t row0, qbi_err *e,
                   const char *what, const char *col, const qb_value *v)
{
    size_t len = ident_len(col, 0), k;
    kcell *c;

    if (len == 0) {
        /* not a plain name: the full check explains why */
        if (qbi_name_check(e, what, col, 0) == QB_OK)
            qbi_seterr(e, QB_EINVAL, "Invalid %s: %s", what, col);
        return;
    }
    if (kv->n > from && kv_find(kv, from, kv->n, col, len) != kv->n) {
        qbi_seterr(e, QB_EINVAL, "Column %s given twice", col);
        return;
    }
    if (v->type == QB_V_RAW) {
        if (v->u.b.p == NULL) {
            qbi_seterr(e, QB_EINVAL, "NULL raw value for %s", col);
            return;
        }
        if (qbi_fragment_check(e, "RAW", v->u.b.p) != QB_OK)
            return;
    } else if ((unsigned)v->type > (unsigned)QB_V_BOOL ||
               ((v->type == QB_V_TEXT || v->type == QB_V_BLOB) &&
                v->u.b.p == NULL && v->u.b.n != 0)) {
        /* (qbi_value_bindable, inline: this runs for every cell) */
        qbi_seterr(e, QB_EINVAL, "Invalid value for column %s (subqueries "
                   "are only supported in conditions)", col);
        return;
    }
    if (kv->n - from >= QBI_MAX_ITEMS) {
        qbi_seterr(e, QB_EINVAL, "Too many columns (max %u)", QBI_MAX_ITEMS);
        return;
    }
    if (kv->n == kv->cap && kv_grow(kv) != QB_OK)
        goto nomem;
    c = &kv->c[kv->n];
    c->name = (uint32_t)kv->names.len; /* names.len <= QBI_SQL_MAX */
    c->namelen = (uint32_t)len;
    qbi_sb_add(&kv->names, col, len + 1); /* with its NUL */
    if (kv->names.err != QB_OK) {
        qbi_seterr(e, kv->names.err, kv->names.err == QB_EINVAL ?
                   "Too many column names" : NULL);
        return;
    }
    c->v = *v;
    c->off = KV_NO_OFF;
    if ((v->type == QB_V_TEXT || v->type == QB_V_BLOB ||
         v->type == QB_V_RAW) && !(v->flags & QB_VF_BORROWED)) {
        size_t n = v->u.b.n;
        if (n >= QBI_SQL_MAX)
            goto nomem; /* (reported as before this storage existed) */
        if (n <= KV_POOL_VALUE_MAX && kv->bytes.len <= KV_POOL_MAX) {
            size_t off = kv->bytes.len;
            /* (n + 1: a NUL for text, and a non-NULL pointer for an empty
             * blob, which SQLite would otherwise bind as NULL) */
            qbi_sb_add(&kv->bytes, v->u.b.p, n);
            qbi_sb_add(&kv->bytes, "", 1);
            if (kv->bytes.err != QB_OK)
                goto nomem;
            c->off = off;
        } else if (qbi_value_copy(&c->v, v) != QB_OK) {
            goto nomem;
        }
    }
    if (row0 == SIZE_MAX) {
        c->col = (uint32_t)(kv->n - from);
    } else {
        k = kv_find(kv, 0, row0, col, len);
        c->col = k < row0 ? (uint32_t)k : KV_NO_COL;
    }
    kv->n++;
    return;
nomem:
    qbi_seterr(e, QB_ENOMEM, NULL);
}

static size_t kv_nbind(const kvset *kv, size_t from, size_t to)
{
    size_t i, k = 0;
    for (i = from; i < to; i++)
        k += kv->c[i].v.type != QB_V_RAW;
    return k;
}

/* One cell's value: RAW inlined, anything else bound. */
static void render_cell(qbi_rctx *r, const kvset *kv, const kcell *c)
{
    /* (no copy of the value with its pointer patched: binding straight
     * from the cell saves a store-forwarding stall per value) */
    if (c->v.type == QB_V_RAW)
        qbi_sb_addu(&r->sb, kv_bytes(kv, c), c->v.u.b.n);
    else
        qbi_rctx_bind(r, &c->v, c->off != KV_NO_OFF ? kv_bytes(kv, c)
                                                    : NULL, 0);
}

/* Render "a = ?N, b = raw" with values in column order. */
static void render_set(qbi_rctx *r, const kvset *kv)
{
    size_t i;
    for (i = 0; i < kv->n; i++) {
        if (i > 0)
            qbi_sb_add(&r->sb, ", ", 2);
        qbi_sb_add(&r->sb, kv_name(kv, &kv->c[i]), kv->c[i].namelen);
        qbi_sb_add(&r->sb, " = ", 3);
        render_cell(r, kv, &kv->c[i]);
    }
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

/* Statements whose binding order differs from their text order render a
 * part into its own text first (numbering state is shared). */
typedef struct part {
    qbi_sb sb, saved;
    char buf[256];
} part;

static void part_begin(qbi_rctx *r, part *pt)
{
    pt->saved = r->sb;
    qbi_sb_init_buf(&r->sb, pt->buf, sizeof pt->buf);
}

static void part_end(qbi_rctx *r, part *pt)
{
    pt->sb = r->sb;
    r->sb = pt->saved;
}

/* Append a finished part; its sticky state carries over. */
static void part_add(qbi_rctx *r, const part *pt)
{
    if (pt->sb.err != QB_OK && r->err == QB_OK)
        r->err = pt->sb.err;
    if (pt->sb.ws)
        r->sb.ws = 1;
    qbi_sb_add(&r->sb, pt->sb.p, pt->sb.len);
}

static void part_free(part *pt)
{
    qbi_sb_free(&pt->sb);
}

/* "SET a = ?N ... [WHERE ...]" of an UPDATE or an upsert, whose WHERE
 * values bind first, then the SET values, then whatever follows. */
typedef struct set_where {
    part where, set;
    int has_where;
} set_where;

/* Render both parts (in binding order) ahead of the statement's text. */
static void sw_render(qbi_rctx *r, set_where *sw, const kvset *set,
                      const qbi_clause *where)
{
    sw->has_where = where->top.n > 0;
    qbi_sb_init(&sw->where.sb);
    if (sw->has_where) {
        part_begin(r, &sw->where);
        qbi_clause_render(r, where);
        part_end(r, &sw->where);
    }
    part_begin(r, &sw->set);
    render_set(r, set);
    part_end(r, &sw->set);
}

/* Append kw (" SET " or " DO UPDATE SET "), the SET part, the WHERE. */
static void sw_add(qbi_rctx *r, const set_where *sw, const char *kw)
{
    qbi_sb_adds(&r->sb, kw);
    part_add(r, &sw->set);
    if (sw->has_where) {
        qbi_sb_add(&r->sb, " WHERE ", 7);
        part_add(r, &sw->where);
    }
}

static void sw_free(set_where *sw)
{
    part_free(&sw->where);
    part_free(&sw->set);
}

/* "INSERT " or "UPDATE ", with "OR <conflict> " (SQLite's) if set. */
static void verb_add(qbi_rctx *r, const char *verb, qb_conflict orc)
{
    qbi_sb_adds(&r->sb, verb);
    if (orc != QB_CONFLICT_NONE) {
        r->sqlite_only = 1;
        qbi_sb_add(&r->sb, "OR ", 3);
        qbi_sb_adds(&r->sb, conflict_sql(orc));
        qbi_sb_addc(&r->sb, ' ');
    }
}

static void returning_render(qbi_rctx *r, const qbi_strlist *l)
{
    if (l->n > 0) {
        qbi_sb_adds(&r->sb, " RETURNING ");
        qbi_strlist_join(&r->sb, l, ", ");
    }
}

/* Check a table name (schema. prefix allowed) and copy it into dst[129];
 * returns its length, or 0 with the error recorded in e. */
static size_t table_copy(qbi_err *e, char *dst, const char *table)
{
    size_t n = ident_len(table, 1);

    dst[0] = '\0';
    if (n == 0) {
        /* the full check explains why */
        if (qbi_name_check(e, "tableName", table, 1) == QB_OK)
            qbi_seterr(e, QB_EINVAL, "Invalid tableName: %s", table);
        return 0;
    }
    memcpy(dst, table, n + 1);
    return n;
}

static int conflict_ok(qbi_err *e, qb_conflict c)
{
    if (c < QB_CONFLICT_NONE || c > QB_CONFLICT_REPLACE) {
        qbi_seterr(e, QB_EINVAL, "Invalid conflict type %d", (int)c);
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

/* The accessors the write builders share (see QBI_DEFINE_ERR_DIALECT):
 * qb_T_returning (fields err, returning) for all three ... */
#define WRITE_DEFINE_RETURNING(T, okf)                                       \
    QB_API void qb_##T##_returning(qb_##T *b, const char *expr)              \
    {                                                                        \
        if (okf(b))                                                          \
            returning_add(&b->err, &b->returning, expr);                     \
    }

/* ... and qb_T_where, qb_T_where_list (field where) for UPDATE and DELETE. */
#define WRITE_DEFINE_WHERE(T, okf)                                           \
    QB_API void qb_##T##_where(qb_##T *b, const char *cond, size_t n,        \
                               const qb_value *vals)                         \
    {                                                                        \
        if (okf(b))                                                          \
            qbi_clause_add(&b->where, &b->err, "WHERE", 0, 1, &cond, n,      \
                           vals);                                            \
    }                                                                        \
    QB_API void qb_##T##_where_list(qb_##T *b, size_t ncond,                 \
                                    const char *const *conds, size_t n,      \
                                    const qb_value *vals)                    \
    {                                                                        \
        if (okf(b))                                                          \
            qbi_clause_add(&b->where, &b->err, "WHERE", 0, ncond, conds, n,  \
                           vals);                                            \
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

#define INS_ROWS 2 /* rows whose start the builder holds inline */

/* Upsert parts, allocated on first use (most inserts have none). */
typedef struct ins_upsert {
    qbi_strlist cols;
    kvset set;
    qbi_clause where;
} ins_upsert;

struct qb_insert {
    qbi_err err;
    qb_dialect dialect;
    int row_open;          /* the last row takes qb_insert_set */
    int upsert;
    qb_conflict orc;
    kvset cells;           /* every row's cells, row after row */
    size_t *rows;          /* first cell of each row */
    size_t nrows, caprows;
    qbi_strlist returning;
    ins_upsert *up;
    size_t max_params;
    size_t table_len;
    char table[129];       /* a checked name: at most 128 bytes */
    size_t rows_inl[INS_ROWS];
    kv_inl inl;
};

QB_API qb_insert *qb_insert_new(const char *table)
{
    /* malloc, not calloc: the inline storage needs no clearing */
    qb_insert *ins = malloc(sizeof *ins);
    if (ins == NULL)
        return NULL;
    ins->err.code = QB_OK;
    ins->err.msg = NULL;
    ins->dialect = QB_DIALECT_SQLITE;
    ins->row_open = 0;
    ins->upsert = 0;
    ins->orc = QB_CONFLICT_NONE;
    kv_init(&ins->cells, &ins->inl);
    ins->rows = ins->rows_inl;
    ins->nrows = 0;
    ins->caprows = INS_ROWS;
    memset(&ins->returning, 0, sizeof ins->returning);
    ins->up = NULL;
    ins->max_params = QBI_DEFAULT_MAX_PARAMS;
    ins->table_len = table_copy(&ins->err, ins->table, table);
    return ins;
}

static void upsert_free(ins_upsert *up)
{
    if (up == NULL)
        return;
    qbi_strlist_free(&up->cols);
    kv_free(&up->set);
    qbi_clause_free(&up->where);
    free(up);
}

QB_API void qb_insert_free(qb_insert *ins)
{
    if (ins == NULL)
        return;
    free(ins->err.msg);
    kv_free(&ins->cells);
    if (ins->rows != ins->rows_inl)
        free(ins->rows);
    if (ins->returning.v != NULL)
        qbi_strlist_free(&ins->returning);
    upsert_free(ins->up);
    free(ins);
}

/* The upsert parts, made on first use; NULL (error recorded) on ENOMEM. */
static ins_upsert *ins_up(qb_insert *ins)
{
    if (ins->up == NULL) {
        ins->up = calloc(1, sizeof *ins->up);
        if (ins->up == NULL) {
            qbi_seterr(&ins->err, QB_ENOMEM, NULL);
            return NULL;
        }
        kv_init(&ins->up->set, NULL);
    }
    return ins->up;
}

QBI_DEFINE_ERR_DIALECT(insert, QBI_USABLE)

/* Cells [*from, *to) of row i. */
static void ins_row(const qb_insert *ins, size_t i, size_t *from, size_t *to)
{
    *from = ins->rows[i];
    *to = i + 1 < ins->nrows ? ins->rows[i + 1] : ins->cells.n;
}

QB_API void qb_insert_set(qb_insert *ins, const char *col, qb_value v)
{
    size_t row0, *nr;

    if (!QBI_USABLE(ins))
        return;
    if (!ins->row_open) {
        if (ins->nrows >= QBI_MAX_ROWS) {
            qbi_seterr(&ins->err, QB_EINVAL, "Too many rows (max %u)",
                       QBI_MAX_ROWS);
            return;
        }
        nr = qbi_grow(ins->rows, &ins->caprows, ins->nrows, sizeof *nr,
                      INS_ROWS, ins->rows_inl);
        if (nr == NULL) {
            qbi_seterr(&ins->err, QB_ENOMEM, NULL);
            return;
        }
        ins->rows = nr;
        ins->rows[ins->nrows++] = ins->cells.n;
        ins->row_open = 1;
    }
    /* rows after the first match their names against row 0 now */
    row0 = ins->nrows > 1 ? ins->rows[1] : SIZE_MAX;
    kv_set(&ins->cells, ins->rows[ins->nrows - 1], row0, &ins->err, "column",
           col, &v);
}

QB_API void qb_insert_next_row(qb_insert *ins)
{
    /* The next set() opens a row; calling this twice adds no empty row. */
    if (QBI_USABLE(ins))
        ins->row_open = 0;
}

WRITE_DEFINE_RETURNING(insert, QBI_USABLE)

QB_API void qb_insert_or(qb_insert *ins, qb_conflict c)
{
    if (QBI_USABLE(ins) && conflict_ok(&ins->err, c))
        ins->orc = c;
}

QB_API void qb_insert_on_conflict(qb_insert *ins, size_t ncols,
                                  const char *const *cols)
{
    ins_upsert *up;
    size_t i;

    if (!QBI_USABLE(ins))
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
    if ((up = ins_up(ins)) == NULL)
        return;
    qbi_strlist_free(&up->cols);
    for (i = 0; i < ncols; i++)
        if (qbi_strlist_add(&up->cols, cols[i]) != QB_OK) {
            qbi_seterr(&ins->err, QB_ENOMEM, NULL);
            return;
        }
    ins->upsert = 1;
}

QB_API void qb_insert_on_conflict_set(qb_insert *ins, const char *col,
                                      qb_value v)
{
    ins_upsert *up;

    if (QBI_USABLE(ins) && (up = ins_up(ins)) != NULL)
        kv_set(&up->set, 0, SIZE_MAX, &ins->err, "onConflict column", col,
               &v);
}

QB_API void qb_insert_on_conflict_where(qb_insert *ins, size_t ncond,
                                        const char *const *conds, size_t n,
                                        const qb_value *vals)
{
    ins_upsert *up;

    if (QBI_USABLE(ins) && (up = ins_up(ins)) != NULL)
        qbi_clause_add(&up->where, &ins->err, "WHERE", 0, ncond, conds, n,
                       vals);
}

QB_API void qb_insert_max_params(qb_insert *ins, size_t max)
{
    if (!QBI_USABLE(ins))
        return;
    if (max == 0 || max > QBI_MAX_PARAMS_LIMIT) {
        qbi_seterr(&ins->err, QB_EINVAL, "Invalid max_params %zu (1..%u)",
                   max, QBI_MAX_PARAMS_LIMIT);
        return;
    }
    ins->max_params = max;
}

static size_t ins_row_nbind(const qb_insert *ins, size_t i)
{
    size_t from, to;
    ins_row(ins, i, &from, &to);
    return kv_nbind(&ins->cells, from, to);
}

/* Decimal digits of 1, 2, ..., n together. */
static size_t digits_upto(size_t n)
{
    size_t sum = 0, lo = 1, d = 1;

    while (lo <= n) {
        size_t hi = lo <= SIZE_MAX / 10 ? lo * 10 - 1 : SIZE_MAX;
        sum += ((hi < n ? hi : n) - lo + 1) * d;
        if (hi == SIZE_MAX)
            break;
        lo *= 10;
        d++;
    }
    return sum;
}

/* The cell of row [rf, rt) for row-0 column k (matched by name when set:
 * rows may list their columns in any order; the same order is usual). */
static const kcell *row_cell(const kvset *kv, size_t rf, size_t rt, size_t k)
{
    size_t j = rf + k;
    if (j >= rt || kv->c[j].col != k)
        for (j = rf; j < rt && kv->c[j].col != k; j++)
            ;
    return &kv->c[j];
}

/* Rows [from, to) of an INSERT with no upsert, no RETURNING and no raw
 * value, written straight into the query's block: the text's length is
 * known up front (names, numbered placeholders), so there is no render
 * buffer, no parameter list and no second copy.  Same text as
 * insert_link; returns 1 (nothing done) when the rows do not qualify. */
static int insert_link_plain(const qb_insert *ins, size_t from, size_t to,
                             qb_fetch fetch, qb_query **out)
{
    const kvset *kv = &ins->cells;
    size_t n0 = ins->nrows > 1 ? ins->rows[1] : kv->n; /* row 0's columns */
    size_t i, k, rf, rt, len, np = (to - from) * n0, bytes = 0, g = 0;
    const char *orc = conflict_sql(ins->orc);
    char mark = ins->dialect == QB_DIALECT_POSTGRES ? '$' : '?', *p, *at;
    qb_query *q;
    int rc;

    if (ins->upsert || ins->returning.n > 0)
        return 1;
    ins_row(ins, from, &rf, &rt);
    rt = to < ins->nrows ? ins->rows[to] : kv->n; /* the links' cells */
    for (i = rf; i < rt; i++) {
        const qb_value *v = &kv->c[i].v;
        if (v->type == QB_V_RAW)
            return 1;
        if ((v->type == QB_V_TEXT || v->type == QB_V_BLOB) &&
            !(v->flags & QB_VF_BORROWED)) {
            if (v->u.b.n + 1 > SIZE_MAX - bytes)
                return QB_EINVAL;
            bytes += v->u.b.n + 1;
        }
    }
    /* "INSERT [OR x ]INTO t (names) VALUES (?1, ...), (...)": every size
     * is bounded (names <= 128 bytes, QBI_MAX_ITEMS columns, max_params
     * placeholders), far from overflow */
    len = 7 + (orc != NULL ? 4 + strlen(orc) : 0) + 5 + ins->table_len + 2;
    for (k = 0; k < n0; k++)
        len += kv->c[k].namelen + (k > 0 ? 2 : 0);
    len += 9 + (to - from) * (2 + 2 * (n0 - 1)) + 2 * (to - from - 1) +
           np + digits_upto(np);
    rc = qbi_query_alloc(QB_KIND_INSERT, fetch, ins->dialect, len, SIZE_MAX,
                         np, bytes, &at, &q);
    if (rc != QB_OK)
        return rc;
    q->portable = ins->dialect == QB_DIALECT_SQLITE && orc == NULL;
    p = q->sql;
    memcpy(p, "INSERT ", 7), p += 7;
    if (orc != NULL) {
        memcpy(p, "OR ", 3), p += 3;
        memcpy(p, orc, strlen(orc)), p += strlen(orc);
        *p++ = ' ';
    }
    memcpy(p, "INTO ", 5), p += 5;
    memcpy(p, ins->table, ins->table_len), p += ins->table_len;
    memcpy(p, " (", 2), p += 2;
    for (k = 0; k < n0; k++) {
        if (k > 0)
            memcpy(p, ", ", 2), p += 2;
        memcpy(p, kv_name(kv, &kv->c[k]), kv->c[k].namelen);
        p += kv->c[k].namelen;
    }
    memcpy(p, ") VALUES ", 9), p += 9;
    for (i = from; i < to; i++) {
        ins_row(ins, i, &rf, &rt);
        if (i > from)
            memcpy(p, ", ", 2), p += 2;
        *p++ = '(';
        for (k = 0; k < n0; k++) {
            const kcell *c = row_cell(kv, rf, rt, k);
            char dig[24], *e = dig + sizeof dig, *d = e;
            size_t u = ++g;
            if (k > 0)
                memcpy(p, ", ", 2), p += 2;
            do {
                *--d = (char)('0' + u % 10);
                u /= 10;
            } while (u != 0);
            *p++ = mark;
            memcpy(p, d, (size_t)(e - d)), p += e - d;
            at = qbi_query_put_value(&q->params[g - 1], &c->v,
                                     c->off != KV_NO_OFF ? kv_bytes(kv, c)
                                                         : NULL, at);
        }
        *p++ = ')';
    }
    assert((size_t)(p - q->sql) == len);
    *out = q;
    return QB_OK;
}

/* Render one link: rows [from, to).  Explicit numbering throughout. */
static int insert_link(const qb_insert *ins, size_t from, size_t to,
                       qb_fetch fetch, qb_query **out)
{
    const kvset *kv = &ins->cells;
    const ins_upsert *up = ins->upsert ? ins->up : NULL;
    size_t n0 = ins->nrows > 1 ? ins->rows[1] : kv->n; /* row 0's columns */
    size_t i, k, rf, rt;
    set_where sw;
    qbi_rctx r;
    int rc;

    qbi_rctx_init(&r, ins->dialect, 1);
    /* binding order: upsert WHERE, upsert SET, then the rows */
    if (up != NULL)
        sw_render(&r, &sw, &up->set, &up->where);
    /* The statement proper; rows continue the numbering. */
    verb_add(&r, "INSERT ", ins->orc);
    qbi_sb_add(&r.sb, "INTO ", 5);
    qbi_sb_add(&r.sb, ins->table, ins->table_len);
    qbi_sb_add(&r.sb, " (", 2);
    for (k = 0; k < n0; k++) {
        if (k > 0)
            qbi_sb_add(&r.sb, ", ", 2);
        qbi_sb_add(&r.sb, kv_name(kv, &kv->c[k]), kv->c[k].namelen);
    }
    qbi_sb_add(&r.sb, ") VALUES ", 9);
    for (i = from; i < to; i++) {
        ins_row(ins, i, &rf, &rt);
        if (i > from)
            qbi_sb_add(&r.sb, ", ", 2);
        qbi_sb_addc(&r.sb, '(');
        for (k = 0; k < n0; k++) {
            if (k > 0)
                qbi_sb_add(&r.sb, ", ", 2);
            render_cell(&r, kv, row_cell(kv, rf, rt, k));
        }
        qbi_sb_addc(&r.sb, ')');
    }
    if (up != NULL) {
        qbi_sb_adds(&r.sb, " ON CONFLICT (");
        qbi_strlist_join(&r.sb, &up->cols, ", ");
        qbi_sb_addc(&r.sb, ')');
        if (up->set.n == 0)
            qbi_sb_adds(&r.sb, " DO NOTHING");
        else
            sw_add(&r, &sw, " DO UPDATE SET ");
    }
    returning_render(&r, &ins->returning);
    rc = qbi_rctx_finish(&r, QB_KIND_INSERT, fetch, NULL, out);
    if (up != NULL)
        sw_free(&sw);
    qbi_rctx_free(&r);
    return rc;
}

QB_API int qb_insert_build(const qb_insert *ins, qb_query **out)
{
    size_t nrows, i, k, fixed, from, sum, n0, rf, rt;
    qb_query *head = NULL, **tail = &head;
    qb_fetch fetch;
    int rc;

    if ((rc = QBI_BUILD_BEGIN(ins, out)) != QB_OK)
        return rc;
    nrows = ins->nrows;
    if (nrows > 0 && ins->rows[nrows - 1] == ins->cells.n)
        nrows--; /* an opened row that got nothing */
    n0 = ins->nrows > 1 ? ins->rows[1] : ins->cells.n;
    if (nrows == 0 || n0 == 0)
        return build_fail(&ins->err, QB_EMISSING, "data is required for "
                          "INSERT operation\n  Hint: Provide a valid data "
                          "parameter");
    if (ins->dialect == QB_DIALECT_POSTGRES && ins->orc != QB_CONFLICT_NONE)
        return build_fail(&ins->err, QB_EDIALECT, "INSERT OR %s is SQLite "
                          "only\n  Hint: use onConflict (upsert) instead",
                          conflict_sql(ins->orc));
    if (ins->upsert && ins->up->set.n == 0 && ins->up->where.top.n > 0)
        return build_fail(&ins->err, QB_EINVAL, "onConflict where needs "
                          "onConflict data (DO UPDATE SET); DO NOTHING "
                          "takes no WHERE\n  Hint: add "
                          "qb_insert_on_conflict_set() or drop the where");
    for (i = 1; i < nrows; i++) {
        /* names are unique within a row, so n0 cells that all name a
         * row-0 column are exactly row 0's columns */
        int same;
        ins_row(ins, i, &rf, &rt);
        same = rt - rf == n0;
        for (k = rf; same && k < rt; k++)
            same = ins->cells.c[k].col != KV_NO_COL;
        if (!same)
            return build_fail(&ins->err, QB_EINVAL, "Row %zu of the INSERT "
                              "data does not have the same columns as row "
                              "1\n  Hint: give every row the same keys",
                              i + 1);
    }
    /* Values every link repeats: upsert WHERE and SET. */
    fixed = 0;
    if (ins->up != NULL) {
        fixed = kv_nbind(&ins->up->set, 0, ins->up->set.n);
        for (i = 0; i < ins->up->where.ncalls; i++)
            fixed += ins->up->where.calls[i].nvals;
    }
    fetch = nrows > 1 ? QB_FETCH_ALL : QB_FETCH_ONE;

    from = 0;
    while (from < nrows) {
        size_t to = from;
        sum = fixed;
        while (to < nrows) {
            size_t nb = ins_row_nbind(ins, to);
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
                              fixed + ins_row_nbind(ins, from),
                              ins->max_params);
        }
        rc = insert_link_plain(ins, from, to, fetch, tail);
        if (rc == 1)
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
    qb_conflict orc;
    kvset set;
    qbi_clause where;
    qbi_strlist returning;
    size_t table_len;
    char table[129];
    kv_inl inl;
};

QB_API qb_update *qb_update_new(const char *table)
{
    /* (zeroed: no error, SQLite, no conflict clause, empty lists) */
    qb_update *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    kv_init(&u->set, &u->inl);
    u->table_len = table_copy(&u->err, u->table, table);
    return u;
}

QB_API void qb_update_free(qb_update *u)
{
    if (u == NULL)
        return;
    qbi_err_free(&u->err);
    kv_free(&u->set);
    qbi_clause_free(&u->where);
    qbi_strlist_free(&u->returning);
    free(u);
}

QBI_DEFINE_ERR_DIALECT(update, QBI_USABLE)

QB_API void qb_update_set(qb_update *u, const char *col, qb_value v)
{
    if (QBI_USABLE(u))
        kv_set(&u->set, 0, SIZE_MAX, &u->err, "column", col, &v);
}

WRITE_DEFINE_WHERE(update, QBI_USABLE)
WRITE_DEFINE_RETURNING(update, QBI_USABLE)

QB_API void qb_update_or(qb_update *u, qb_conflict c)
{
    if (QBI_USABLE(u) && conflict_ok(&u->err, c))
        u->orc = c;
}

QB_API int qb_update_build(const qb_update *u, qb_query **out)
{
    qbi_rctx r;
    set_where sw;
    int rc;

    if ((rc = QBI_BUILD_BEGIN(u, out)) != QB_OK)
        return rc;
    if (u->set.n == 0)
        return build_fail(&u->err, QB_EMISSING, "data is required for "
                          "UPDATE operation\n  Hint: Provide a valid data "
                          "parameter");
    if (u->dialect == QB_DIALECT_POSTGRES && u->orc != QB_CONFLICT_NONE)
        return build_fail(&u->err, QB_EDIALECT, "UPDATE OR %s is SQLite "
                          "only", conflict_sql(u->orc));

    /* binding order: WHERE values first, then SET */
    qbi_rctx_init(&r, u->dialect, 1);
    sw_render(&r, &sw, &u->set, &u->where);
    verb_add(&r, "UPDATE ", u->orc);
    qbi_sb_add(&r.sb, u->table, u->table_len);
    sw_add(&r, &sw, " SET ");
    returning_render(&r, &u->returning);
    if (r.err == QB_OK && r.nparams > QBI_DEFAULT_MAX_PARAMS)
        r.err = QB_EINVAL;
    rc = qbi_rctx_finish(&r, QB_KIND_UPDATE, QB_FETCH_ALL, NULL, out);
    sw_free(&sw);
    qbi_rctx_free(&r);
    return rc;
}

/* ---- DELETE ------------------------------------------------------------ */

struct qb_delete {
    qbi_err err;
    qb_dialect dialect;
    qbi_clause where;
    qbi_strlist returning, order_by;
    int has_limit, has_offset;
    int64_t limit, offset;
    char table[129];
};

QB_API qb_delete *qb_delete_new(const char *table)
{
    qb_delete *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    table_copy(&d->err, d->table, table);
    return d;
}

QB_API void qb_delete_free(qb_delete *d)
{
    if (d == NULL)
        return;
    qbi_err_free(&d->err);
    qbi_clause_free(&d->where);
    qbi_strlist_free(&d->returning);
    qbi_strlist_free(&d->order_by);
    free(d);
}

QBI_DEFINE_ERR_DIALECT(delete, QBI_USABLE)
WRITE_DEFINE_WHERE(delete, QBI_USABLE)
WRITE_DEFINE_RETURNING(delete, QBI_USABLE)
QBI_DEFINE_ORDER_LIMIT(delete, QBI_USABLE)

QB_API int qb_delete_build(const qb_delete *d, qb_query **out)
{
    qbi_rctx r;
    int rc;

    if ((rc = QBI_BUILD_BEGIN(d, out)) != QB_OK)
        return rc;
    /* PostgreSQL's DELETE has no ORDER BY / LIMIT / OFFSET (a syntax error
     * there); the dialect may be set after them, so only build can tell. */
    if (d->dialect == QB_DIALECT_POSTGRES &&
        (d->order_by.n > 0 || d->has_limit || d->has_offset))
        return build_fail(&d->err, QB_EDIALECT, "DELETE ... %s is SQLite "
                          "only\n  Hint: on PostgreSQL delete WHERE id IN "
                          "(SELECT id FROM ... ORDER BY ... LIMIT n)",
                          d->order_by.n > 0 ? "ORDER BY"
                          : d->has_limit ? "LIMIT" : "OFFSET");
    qbi_rctx_init(&r, d->dialect, 0);
    qbi_sb_adds(&r.sb, "DELETE FROM ");
    qbi_sb_adds(&r.sb, d->table);
    if (d->where.top.n > 0) {
        qbi_sb_adds(&r.sb, " WHERE ");
        qbi_clause_render(&r, &d->where);
    }
    /* SQLite's grammar puts RETURNING before ORDER BY / LIMIT; workers-qb
     * 1.14.0 (#157) moved it last, which SQLite rejects with a syntax
     * error.  (PostgreSQL has no DELETE ... LIMIT: refused above.) */
    if (d->dialect == QB_DIALECT_SQLITE)
        returning_render(&r, &d->returning);
    /* (PostgreSQL has no DELETE ... ORDER BY / LIMIT / OFFSET) */
    if (d->order_by.n > 0 || d->has_limit || d->has_offset)
        r.sqlite_only = 1;
    if (d->order_by.n > 0) {
        qbi_sb_adds(&r.sb, " ORDER BY ");
        qbi_strlist_join(&r.sb, &d->order_by, ", ");
    }
    if (d->has_limit) {
        qbi_sb_adds(&r.sb, " LIMIT ");
        qbi_sb_addnum(&r.sb, 0, d->limit);
    }
    else if (d->has_offset)
        qbi_sb_adds(&r.sb, " LIMIT -1");
    if (d->has_offset) {
        qbi_sb_adds(&r.sb, " OFFSET ");
        qbi_sb_addnum(&r.sb, 0, d->offset);
    }
    if (d->dialect != QB_DIALECT_SQLITE)
        returning_render(&r, &d->returning);
    if (r.err == QB_OK && r.nparams > QBI_DEFAULT_MAX_PARAMS)
        r.err = QB_EINVAL;
    rc = qbi_rctx_finish(&r, QB_KIND_DELETE, QB_FETCH_ALL, NULL, out);
    qbi_rctx_free(&r);
    return rc;
}

/* ---- raw in a dialect, DDL --------------------------------------------- */

/* Append sql[0..n) to sb with SQLite's placeholders (`?N` is N, a bare
 * `?` one more than the largest so far) rendered as PostgreSQL's `$N`;
 * a `?` inside a PostgreSQL literal or comment is not a placeholder. */
static void pg_placeholders(qbi_sb *sb, const char *sql, size_t n)
{
    size_t i, j, idx, maxidx = 0;
    int closed;

    for (i = 0; i < n;) {
        j = qbi_sql_skip(sql, n, i, QB_DIALECT_POSTGRES, &closed);
        if (j == i) {
            qbi_sb_addc(sb, sql[i++]);
            continue;
        }
        if (sql[i] != '?') {
            qbi_sb_add(sb, sql + i, j - i);
            i = j;
            continue;
        }
        /* a placeholder token, ? or ?N */
        idx = qbi_sqlite_param(sql, i, j, &maxidx);
        /* keep the parameter a token of its own, as `?` was: a$1 is a
         * name, and PostgreSQL 16 refuses $1abc ("trailing junk") */
        if (sb->len > 0 && qbi_pg_idchar((unsigned char)sb->p[sb->len - 1]))
            qbi_sb_addc(sb, ' ');
        qbi_sb_addnum(sb, '$', (int64_t)idx);
        if (j < n && qbi_pg_idchar((unsigned char)sql[j]))
            qbi_sb_addc(sb, ' ');
        i = j;
    }
}

QB_API int qb_query_raw_dialect(qb_query **out, qb_dialect d, const char *sql,
                                size_t nargs, const qb_value *args,
                                qb_fetch fetch)
{
    qb_query *q, *pq = NULL;
    char buf[512];
    qbi_sb sb;
    int rc;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (d == QB_DIALECT_SQLITE)
        return qb_query_raw(out, sql, nargs, args, fetch);
    if (d != QB_DIALECT_POSTGRES)
        return QB_EINVAL;
    rc = qbi_query_raw(&q, d, sql, nargs, args, fetch);
    if (rc != QB_OK)
        return rc;
    qbi_sb_init_buf(&sb, buf, sizeof buf);
    pg_placeholders(&sb, q->sql, q->sql_len);
    rc = sb.err;
    if (rc == QB_OK)
        rc = qbi_query_make(QB_KIND_RAW, fetch, QB_DIALECT_POSTGRES, sb.p,
                            sb.len, NULL, 0, q->params, q->nparams, &pq);
    qbi_sb_free(&sb);
    qb_query_free(q);
    if (rc != QB_OK)
        return rc;
    *out = pq;
    return QB_OK;
}

/* One link of qb_query_convert: its SQL and count SQL re-rendered, the
 * values copied. */
static int convert_one(const qb_query *q, qb_query **out)
{
    char buf[512], cbuf[256];
    qbi_sb sb, cb;
    int rc;

    qbi_sb_init_buf(&sb, buf, sizeof buf);
    qbi_sb_init_buf(&cb, cbuf, sizeof cbuf);
    pg_placeholders(&sb, q->sql, qbi_sql_len(q));
    if (q->count_sql != NULL)
        pg_placeholders(&cb, q->count_sql, strlen(q->count_sql));
    rc = sb.err != QB_OK ? sb.err : cb.err;
    if (rc == QB_OK)
        rc = qbi_query_make(q->kind, q->fetch, QB_DIALECT_POSTGRES, sb.p,
                            sb.len, q->count_sql != NULL ? cb.p : NULL,
                            cb.len, q->params, q->nparams, out);
    qbi_sb_free(&sb);
    qbi_sb_free(&cb);
    return rc;
}

QB_API int qb_query_convert(const qb_query *q, qb_dialect d, qb_query **out)
{
    qb_query *head = NULL, **tail = &head;
    const qb_query *l;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (q == NULL || (d != QB_DIALECT_SQLITE && d != QB_DIALECT_POSTGRES))
        return QB_EINVAL;
    if (q->dialect == d) {
        *out = qb_query_dup(q);
        return *out != NULL ? QB_OK : QB_ENOMEM;
    }
    for (l = q; l != NULL; l = l->next)
        if (d != QB_DIALECT_POSTGRES || !l->portable || l->sql == NULL)
            return QB_EDIALECT;
    for (l = q; l != NULL; l = l->next) {
        int rc = convert_one(l, tail);
        if (rc != QB_OK) {
            qb_query_free(head);
            return rc;
        }
        tail = &(*tail)->next;
    }
    *out = head;
    return QB_OK;
}

/* CREATE TABLE [IF NOT EXISTS] table ( schema ) when create, else DROP
 * TABLE [IF EXISTS] table. */
static int table_ddl(qb_query **out, qb_dialect d, const char *table,
                     int create, const char *schema, int if_)
{
    qbi_err e = { QB_OK, NULL };
    qbi_rctx r;
    int rc;

    if (out == NULL)
        return QB_EINVAL;
    *out = NULL;
    if (!qbi_dialect_ok(&e, d) ||
        qbi_name_check(&e, "tableName", table, 1) != QB_OK ||
        (create && qbi_fragment_check(&e, "CREATE TABLE", schema) != QB_OK)) {
        rc = e.code;
        qbi_err_free(&e);
        return rc;
    }
    qbi_rctx_init(&r, d, 1);
    qbi_sb_adds(&r.sb, create ? "CREATE TABLE " : "DROP TABLE ");
    if (if_)
        qbi_sb_adds(&r.sb, create ? "IF NOT EXISTS" : "IF EXISTS");
    qbi_sb_addc(&r.sb, ' ');
    qbi_sb_adds(&r.sb, table);
    if (create) {
        qbi_sb_adds(&r.sb, " ( ");
        qbi_sb_addu(&r.sb, schema, strlen(schema));
        qbi_sb_addc(&r.sb, ')');
    }
    rc = qbi_rctx_finish(&r, QB_KIND_RAW, QB_FETCH_NONE, NULL, out);
    qbi_rctx_free(&r);
    return rc;
}

QB_API int qb_create_table(qb_query **out, qb_dialect d, const char *table,
                           const char *schema, int if_not_exists)
{
    return table_ddl(out, d, table, 1, schema, if_not_exists);
}

QB_API int qb_drop_table(qb_query **out, qb_dialect d, const char *table,
                         int if_exists)
{
    return table_ddl(out, d, table, 0, NULL, if_exists);
}
