/*
 * fuzz_qb.c -- libFuzzer harness for the lib/qb builder.
 *
 * DESIGN
 *   The input is a little program: each byte picks a builder call, the
 *   following bytes its arguments.  Fragments and names come from fixed
 *   tables that are valid for the schema below (plus, when the input asks,
 *   "tainted" text cut from the input itself); values come from the input
 *   and may hold quotes, '?', NUL, SQL keywords and high bytes.
 *
 *   The program runs twice: once with the fuzzed values and once with
 *   every value replaced by the integer 0.  Invariants checked for every
 *   successful build:
 *     1. Values never reach SQL text: both runs give byte-identical SQL
 *        (and count SQL, chain shape), and no 4-byte window of a value that
 *        holds a value-only byte (>= 0x80, '~', '#', NUL) occurs in the SQL.
 *        Fragments and names never contain those bytes.
 *     2. The SQL prepares on an in-memory SQLite with the fixed schema,
 *        unless the program used something known to be invalid there
 *        (tainted text, DISTINCT ON, PostgreSQL dialect, shapes SQLite
 *        rejects such as mismatched compound selects); then a failed
 *        prepare is allowed but a crash or leak is not.
 *     3. When prepared: sqlite3_bind_parameter_count() equals the number
 *        of values, every value binds, and the statement steps to DONE or
 *        a constraint error.
 *   Both runs must agree on the return code.  Builders are freed on every
 *   path so LeakSanitizer sees leaks.
 *
 * Build and run: see tests/fuzz/qb/README.md.
 */
#define _GNU_SOURCE /* memmem */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qb.h"
#include "qb_int.h"

#define MAX_OPS 48
#define MAX_VALS 16

typedef struct reader {
    const uint8_t *p;
    size_t n, i;
} reader;

static unsigned rd(reader *r)
{
    return r->i < r->n ? r->p[r->i++] : 0;
}

static const char *pick(reader *r, const char *const *tab, size_t n)
{
    return tab[rd(r) % n];
}

#define PICK(r, tab) pick((r), (tab), sizeof(tab) / sizeof((tab)[0]))

/* Fragments valid against the schema; none holds a value-only byte. */
static const char *const where_frags[] = {
    "t.a = ?", "t.b > ?", "name LIKE ?", "t.a = ?1 OR t.b = ?1",
    "x IS NOT ?", "name = 'it''s ?'", "t.a = ? AND name <> '?'",
    "t.b BETWEEN ? AND ?", "t.a = ? OR t.b = ?1", "1 = 1",
    "name = \"name\"", "t.x IN (?, ?2, ?)", "/* ? */ t.a <> ?",
    "-- ?\n t.b = ?", "name = 'a   b'",
};
static const char *const sub_frags[] = { "t.a IN ?", "EXISTS ?",
                                         "t.b = ?" };
static const char *const having_frags[] = { "count(*) > ?", "sum(t.a) < ?1",
                                            "max(t.b) IS NOT NULL" };
static const char *const cols[] = { "a", "b", "name", "x" };
static const char *const qcols[] = { "t.a", "t.b", "name", "x", "t.id" };
static const char *const join_types[] = { NULL, "LEFT", "INNER",
                                          "INNER JOIN", "LEFT OUTER",
                                          "CROSS" };
static const char *const fields[] = { "t.a", "t.b, name", "count(*) AS n",
                                      "*", "t.id AS id" };
static const char *const raws[] = { "CURRENT_TIMESTAMP", "1 + 1", "NULL",
                                    "'raw?'" };
static const char *const keywords[] = { "SELECT", "DROP TABLE t", "'", "\"",
                                        "?", "?1", "--", "/*", ";", "$1",
                                        ":n", "\\", "UNION", "OR 1=1" };

typedef struct prog {
    int neutral;          /* second run: every value is 0 */
    int prepare_may_fail; /* something SQLite may reject was used */
    /* value texts of this run, for the window check */
    char *vtext[MAX_OPS * MAX_VALS];
    size_t vlen[MAX_OPS * MAX_VALS];
    size_t nv;
    char tainted[MAX_OPS][24];
    size_t ntainted;
} prog;

/* A value from the input: kinds, with bytes that may be hostile. */
static qb_value make_value(reader *r, prog *pg, char *buf, size_t cap)
{
    unsigned kind = rd(r) % 8, len, k;
    qb_value v;

    /* Both runs consume the same bytes; the neutral one then binds 0. */
    switch (kind) {
    case 0: v = qb_null(); break;
    case 1: case 2: {
        uint32_t x = 0;
        for (k = 0; k < 4; k++)
            x = (x << 8) | rd(r);
        v = kind == 1 ? qb_int((int32_t)x) : qb_real((double)x / 7.0);
        break;
    }
    case 3: v = qb_bool((int)(rd(r) & 1)); break;
    case 4: v = qb_text(""); break;
    default:
        len = rd(r) % (unsigned)(cap - 12);
        for (k = 0; k < len; k++)
            buf[k] = (char)rd(r);
        if (kind == 7) {
            /* splice a keyword-ish piece after the bytes */
            const char *kw = PICK(r, keywords);
            size_t kl = strlen(kw);
            memcpy(buf + len, kw, kl);
            len += (unsigned)kl;
        }
        if (!pg->neutral &&
            pg->nv < sizeof pg->vtext / sizeof pg->vtext[0]) {
            pg->vtext[pg->nv] = malloc(len ? len : 1);
            if (pg->vtext[pg->nv] != NULL) {
                memcpy(pg->vtext[pg->nv], buf, len);
                pg->vlen[pg->nv++] = len;
            }
        }
        v = kind == 6 ? qb_blob(buf, len) : qb_textn(buf, len);
    }
    return pg->neutral ? qb_int(0) : v;
}

/* Text cut from the input, printable ASCII without value-only bytes. */
static const char *tainted(reader *r, prog *pg)
{
    char *t = pg->tainted[pg->ntainted % MAX_OPS];
    unsigned len = rd(r) % 20, k;
    for (k = 0; k < len; k++) {
        char c = (char)(32 + rd(r) % 95);
        t[k] = (c == '~' || c == '#') ? ' ' : c;
    }
    t[len] = '\0';
    pg->ntainted++;
    pg->prepare_may_fail = 1;
    return t;
}

/* n values for a condition, stored in vals (bufs hold their bytes). */
static size_t fill_values(reader *r, prog *pg, size_t n, qb_value *vals,
                          char bufs[][40])
{
    size_t i;
    for (i = 0; i < n && i < MAX_VALS; i++)
        vals[i] = make_value(r, pg, bufs[i], sizeof bufs[i]);
    return i;
}

/* How many values a fixed fragment needs (what the builder expects). */
static size_t need(const char *frag)
{
    size_t n = 0, labels[8], nl = 0, i, k;
    int inq = 0;
    for (i = 0; frag[i]; i++) {
        if (frag[i] == '\'' || frag[i] == '"') {
            inq = !inq;
            continue;
        }
        if ((frag[i] == '/' && frag[i + 1] == '*') ||
            (frag[i] == '-' && frag[i + 1] == '-'))
            return frag[i] == '/' ? 1 : 1; /* the fragments above: one */
        if (inq || frag[i] != '?')
            continue;
        if (frag[i + 1] >= '1' && frag[i + 1] <= '9') {
            size_t lab = (size_t)(frag[i + 1] - '0');
            for (k = 0; k < nl; k++)
                if (labels[k] == lab)
                    break;
            if (k == nl && nl < 8) {
                labels[nl++] = lab;
                n++;
            }
        } else {
            n++;
        }
    }
    return n;
}

static qb_select *small_sub(reader *r, prog *pg, const char *table,
                            const char *field)
{
    qb_select *s = qb_select_new(table);
    qb_value v[MAX_VALS];
    char bufs[MAX_VALS][40];
    unsigned k = rd(r) % 3;

    qb_select_fields(s, field);
    if (k >= 1) {
        fill_values(r, pg, 1, v, bufs);
        qb_select_where(s, strcmp(table, "o") == 0 ? "s = ?" : "t.a > ?", 1,
                        v);
    }
    if (k == 2)
        qb_select_limit(s, rd(r) % 5);
    return s;
}

static void when_cb(qb_select *s, void *arg)
{
    (void)arg;
    qb_select_where_null(s, QB_AND, "x");
}

/* Run the select program; returns the build rc and the query. */
static int run_select(reader *r, prog *pg, qb_query **out)
{
    qb_select *s = qb_select_new("t");
    unsigned nops = rd(r) % MAX_OPS, op, f;
    int has_setop = 0, has_fields = 0, joined = 0, subjoined = 0, rc;
    int has_having = 0, has_group = 0;
    qb_fetch fetch;

    for (op = 0; op < nops && r->i < r->n; op++) {
        qb_value v[MAX_VALS];
        char bufs[MAX_VALS][40];
        const char *frag;
        size_t n;

        switch (rd(r) % 22) {
        case 0: case 1: case 2:
            frag = PICK(r, where_frags);
            n = fill_values(r, pg, need(frag), v, bufs);
            if (rd(r) & 1)
                qb_select_where(s, frag, n, v);
            else
                qb_select_or_where(s, frag, n, v);
            break;
        case 3: {
            const char *l[2];
            l[0] = PICK(r, where_frags);
            l[1] = PICK(r, where_frags);
            /* one call: labels are shared across both conditions */
            n = fill_values(r, pg, need(l[0]) + need(l[1]), v, bufs);
            qb_select_where_list(s, rd(r) & 1, 2, l, n, v);
            break;
        }
        case 4: {
            qb_select *sub = small_sub(r, pg, "o", "tid");
            qb_value sv[3];
            sv[0] = qb_subquery(sub);
            qb_select_where(s, PICK(r, sub_frags), 1, sv);
            qb_select_free(sub);
            break;
        }
        case 5:
            n = fill_values(r, pg, rd(r) % 6, v, bufs);
            qb_select_where_in(s, rd(r) % 4, PICK(r, qcols), n, v);
            break;
        case 6:
            qb_select_where_null(s, rd(r) % 4, PICK(r, qcols));
            break;
        case 7:
            fill_values(r, pg, 2, v, bufs);
            qb_select_where_between(s, rd(r) % 4, PICK(r, qcols), v[0], v[1]);
            break;
        case 8:
            fill_values(r, pg, 1, v, bufs);
            qb_select_where_like(s, rd(r) % 4, "name", v[0]);
            break;
        case 9:
            if (joined++)
                break;
            f = rd(r);
            qb_select_join(s, join_types[f % 6], "o", NULL,
                           (f % 6) == 5 ? NULL : "o.tid = t.id");
            break;
        case 10: {
            qb_select *sub;
            if (subjoined++)
                break;
            sub = small_sub(r, pg, "o", "tid");
            qb_select_join_sub(s, PICK(r, join_types), sub, "oc",
                               "oc.tid = t.id");
            qb_select_free(sub);
            break;
        }
        case 11:
            if (has_setop)
                break;
            has_fields = 1;
            qb_select_fields(s, PICK(r, fields));
            break;
        case 12:
            qb_select_group_by(s, PICK(r, qcols));
            has_group = 1;
            break;
        case 13:
            has_having = 1;
            frag = PICK(r, having_frags);
            n = fill_values(r, pg, need(frag), v, bufs);
            qb_select_having(s, frag, n, v);
            break;
        case 14:
            qb_select_order_by(s, has_setop ? "a" : PICK(r, qcols),
                               (qb_order)(rd(r) % 3));
            break;
        case 15:
            qb_select_limit(s, rd(r) % 50);
            break;
        case 16:
            qb_select_offset(s, rd(r) % 50);
            break;
        case 17:
            if (rd(r) % 4 == 0) {
                qb_select_distinct_on(s, "t.a");
                pg->prepare_may_fail = 1;
            } else {
                qb_select_distinct(s);
            }
            break;
        case 18: {
            qb_select *c = small_sub(r, pg, "o", "tid");
            const char *nm = (rd(r) & 1) ? "c1" : "c2";
            qb_select_with(s, nm, c, 0, NULL);
            qb_select_free(c);
            pg->prepare_may_fail = 1; /* duplicate CTE names */
            break;
        }
        case 19: {
            qb_select *c = qb_select_new("t");
            fill_values(r, pg, 1, v, bufs);
            qb_select_where(c, "t.b < ?", 1, v);
            qb_select_set_op(s, (qb_setop)(rd(r) % 6), c);
            qb_select_free(c);
            has_setop = 1;
            if (has_fields)
                pg->prepare_may_fail = 1;
            break;
        }
        case 20:
            qb_select_when(s, (int)(rd(r) & 1), when_cb, NULL, NULL);
            break;
        default:
            /* tainted fragment or name: prepare may fail */
            switch (rd(r) % 4) {
            case 0: qb_select_where(s, tainted(r, pg), 0, NULL); break;
            case 1: qb_select_fields(s, tainted(r, pg)); break;
            case 2: qb_select_order_by(s, tainted(r, pg), QB_ORDER_NONE);
                    break;
            default: qb_select_join(s, NULL, tainted(r, pg), NULL, "1");
            }
        }
    }
    if (has_setop || (has_having && !has_group))
        pg->prepare_may_fail = 1; /* shapes SQLite rejects: compound
                                     ORDER BY terms, HAVING on a
                                     non-aggregate query */
    if (rd(r) % 8 == 0) {
        qb_select_dialect(s, QB_DIALECT_POSTGRES);
        pg->prepare_may_fail = 1;
    }
    fetch = (qb_fetch)(rd(r) % 3);
    if (rd(r) % 6 == 0)
        rc = qb_select_build_explain(s, out);
    else
        rc = qb_select_build(s, fetch, out);
    (void)qb_select_errmsg(s);
    qb_select_free(s);
    return rc;
}

static int run_insert(reader *r, prog *pg, qb_query **out)
{
    qb_insert *ins = qb_insert_new("t");
    unsigned rows = 1 + rd(r) % 6, ncols = 1 + rd(r) % 4, i, c;
    char bufs[MAX_VALS][40];
    qb_value v[MAX_VALS];
    int rc;

    for (i = 0; i < rows; i++) {
        for (c = 0; c < ncols; c++) {
            /* occasionally a different column set: EINVAL expected */
            unsigned col = (c + (rd(r) % 16 == 0)) % 4;
            if (rd(r) % 8 == 0)
                v[0] = qb_raw(raws[rd(r) % 4]);
            else
                fill_values(r, pg, 1, v, bufs);
            qb_insert_set(ins, cols[col], v[0]);
        }
        qb_insert_next_row(ins);
    }
    if (rd(r) & 1)
        qb_insert_returning(ins, "id");
    if (rd(r) % 3 == 0)
        qb_insert_or(ins, (qb_conflict)(rd(r) % 6));
    if (rd(r) % 3 == 0) {
        const char *cc[1] = { "id" };
        qb_insert_on_conflict(ins, 1, cc);
        if (rd(r) & 1) {
            fill_values(r, pg, 1, v, bufs);
            qb_insert_on_conflict_set(ins, "name", v[0]);
        }
        if (rd(r) & 1) {
            const char *w[1] = { "t.a <> ? OR t.b = ?1" };
            fill_values(r, pg, 2, v, bufs);
            qb_insert_on_conflict_where(ins, 1, w, 2, v);
        }
    }
    qb_insert_max_params(ins, 1 + rd(r) % 12);
    if (rd(r) % 8 == 0) {
        qb_insert_dialect(ins, QB_DIALECT_POSTGRES);
        pg->prepare_may_fail = 1;
    }
    rc = qb_insert_build(ins, out);
    (void)qb_insert_errmsg(ins);
    qb_insert_free(ins);
    return rc;
}

static int run_update(reader *r, prog *pg, qb_query **out)
{
    qb_update *u = qb_update_new("t");
    unsigned n = rd(r) % 4, i;
    char bufs[MAX_VALS][40];
    qb_value v[MAX_VALS];
    const char *frag;
    size_t nv;
    int rc;

    for (i = 0; i < n; i++) {
        if (rd(r) % 6 == 0)
            v[0] = qb_raw(raws[rd(r) % 4]);
        else
            fill_values(r, pg, 1, v, bufs);
        qb_update_set(u, cols[rd(r) % 4], v[0]);
    }
    for (i = rd(r) % 3; i > 0; i--) {
        frag = PICK(r, where_frags);
        nv = fill_values(r, pg, need(frag), v, bufs);
        qb_update_where(u, frag, nv, v);
    }
    if (rd(r) & 1)
        qb_update_returning(u, "id, name");
    if (rd(r) % 4 == 0)
        qb_update_or(u, (qb_conflict)(rd(r) % 6));
    rc = qb_update_build(u, out);
    qb_update_free(u);
    return rc;
}

static int run_delete(reader *r, prog *pg, qb_query **out)
{
    qb_delete *d = qb_delete_new("t");
    char bufs[MAX_VALS][40];
    qb_value v[MAX_VALS];
    const char *frag;
    size_t nv;
    unsigned i;
    int rc;

    for (i = rd(r) % 3; i > 0; i--) {
        frag = PICK(r, where_frags);
        nv = fill_values(r, pg, need(frag), v, bufs);
        qb_delete_where(d, frag, nv, v);
    }
    int ordered = 0, bounded = 0;

    if (rd(r) & 1) {
        qb_delete_order_by(d, PICK(r, qcols), (qb_order)(rd(r) % 3));
        ordered = 1;
    }
    if (rd(r) & 1) {
        qb_delete_limit(d, rd(r) % 5);
        bounded = 1;
    }
    if (rd(r) & 1) {
        qb_delete_offset(d, rd(r) % 5);
        bounded = 1;
    }
    if (ordered && !bounded)
        pg->prepare_may_fail = 1; /* SQLite: ORDER BY needs LIMIT here,
                                     workers-qb emits it anyway */
    if (rd(r) & 1)
        qb_delete_returning(d, "id");
    rc = qb_delete_build(d, out);
    qb_delete_free(d);
    return rc;
}

static int run_prog(const uint8_t *data, size_t size, prog *pg,
                    qb_query **out)
{
    reader r = { data, size, 0 };
    *out = NULL;
    switch (rd(&r) % 4) {
    case 0: return run_select(&r, pg, out);
    case 1: return run_insert(&r, pg, out);
    case 2: return run_update(&r, pg, out);
    default: return run_delete(&r, pg, out);
    }
}

static sqlite3 *g_db;

static void db_init(void)
{
    if (g_db != NULL)
        return;
    if (sqlite3_open(":memory:", &g_db) != SQLITE_OK ||
        sqlite3_exec(g_db,
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b, "
                     "name TEXT, x);"
                     "CREATE TABLE o(id INTEGER PRIMARY KEY, tid, s);"
                     "INSERT INTO t VALUES (1, 1, 2, 'n', 3);"
                     "INSERT INTO o VALUES (1, 1, 'x');",
                     NULL, NULL, NULL) != SQLITE_OK)
        abort();
}

static void check_prepare(const char *sql, const qb_query *q, int may_fail)
{
    sqlite3_stmt *st = NULL;
    size_t i;
    int rc, steps = 0;

    if (sql == NULL)
        return;
    rc = sqlite3_prepare_v2(g_db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        if (!may_fail) {
            fprintf(stderr, "prepare failed: %s\n  %s\n",
                    sqlite3_errmsg(g_db), sql);
            abort();
        }
        return;
    }
    if (q->dialect == QB_DIALECT_SQLITE &&
        (size_t)sqlite3_bind_parameter_count(st) != q->nparams) {
        fprintf(stderr, "bind count %d != %zu\n  %s\n",
                sqlite3_bind_parameter_count(st), q->nparams, sql);
        abort();
    }
    for (i = 0; i < q->nparams; i++) {
        const qb_value *v = &q->params[i];
        int k = (int)i + 1;
        switch (v->type) {
        case QB_V_NULL: rc = sqlite3_bind_null(st, k); break;
        case QB_V_INT: case QB_V_BOOL:
            rc = sqlite3_bind_int64(st, k, v->u.i);
            break;
        case QB_V_REAL: rc = sqlite3_bind_double(st, k, v->u.d); break;
        case QB_V_TEXT:
            rc = sqlite3_bind_text(st, k, v->u.b.p, (int)v->u.b.n,
                                   SQLITE_STATIC);
            break;
        case QB_V_BLOB:
            rc = sqlite3_bind_blob(st, k, v->u.b.p, (int)v->u.b.n,
                                   SQLITE_STATIC);
            break;
        default:
            abort(); /* RAW/SELECT never reach params */
        }
        if (rc != SQLITE_OK && q->dialect == QB_DIALECT_SQLITE)
            abort();
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && ++steps < 100)
        ;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW && !may_fail &&
        (rc & 0xff) != SQLITE_CONSTRAINT && (rc & 0xff) != SQLITE_ERROR &&
        (rc & 0xff) != SQLITE_MISMATCH) {
        fprintf(stderr, "step rc %d: %s\n  %s\n", rc, sqlite3_errmsg(g_db),
                sql);
        abort();
    }
    sqlite3_finalize(st);
}

static int value_only_byte(unsigned char c)
{
    return c >= 0x80 || c == '~' || c == '#' || c == '\0';
}

static void check_no_value_bytes(const prog *pg, const char *sql)
{
    size_t v, i, k, sl;
    if (sql == NULL)
        return;
    sl = strlen(sql);
    for (v = 0; v < pg->nv; v++) {
        const char *t = pg->vtext[v];
        for (i = 0; i + 4 <= pg->vlen[v]; i++) {
            int marked = 0;
            for (k = 0; k < 4; k++)
                marked |= value_only_byte((unsigned char)t[i + k]);
            if (!marked || t[i] == '\0' || t[i + 1] == '\0' ||
                t[i + 2] == '\0' || t[i + 3] == '\0')
                continue; /* a NUL cannot sit inside a C string */
            if (memmem(sql, sl, t + i, 4) != NULL) {
                fprintf(stderr, "value bytes leaked into SQL: %s\n", sql);
                abort();
            }
        }
    }
}

static int same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    prog fz, nt;
    qb_query *q1 = NULL, *q2 = NULL;
    const qb_query *a, *b;
    int rc1, rc2;
    size_t i;

    if (size > 4096)
        return 0;
    db_init();
    memset(&fz, 0, sizeof fz);
    memset(&nt, 0, sizeof nt);
    nt.neutral = 1;
    rc1 = run_prog(data, size, &fz, &q1);
    rc2 = run_prog(data, size, &nt, &q2);

    if (rc1 != rc2) {
        fprintf(stderr, "rc depends on values: %d vs %d\n", rc1, rc2);
        abort();
    }
    if (rc1 == QB_OK) {
        char *dbg;
        qb_query *dup;
        if (sqlite3_exec(g_db, "SAVEPOINT f", NULL, NULL, NULL) != SQLITE_OK)
            abort();
        for (a = q1, b = q2; a != NULL || b != NULL;
             a = a ? a->next : NULL, b = b ? b->next : NULL) {
            if (a == NULL || b == NULL || !same(a->sql, b->sql) ||
                !same(a->count_sql, b->count_sql) ||
                a->nparams != b->nparams || strlen(a->sql) != a->sql_len) {
                fprintf(stderr, "SQL depends on values:\n  %s\n  %s\n",
                        a ? a->sql : "(none)", b ? b->sql : "(none)");
                abort();
            }
            check_no_value_bytes(&fz, a->sql);
            check_prepare(a->sql, a, fz.prepare_may_fail);
            check_prepare(a->count_sql, a, 1); /* workers-qb's count keeps
                                                  HAVING etc.; may fail */
        }
        if (sqlite3_exec(g_db, "ROLLBACK TO f; RELEASE f", NULL, NULL,
                         NULL) != SQLITE_OK)
            abort();
        dbg = qb_query_debug_sql(q1);
        free(dbg);
        dup = qb_query_dup(q1);
        qb_query_free(dup);
    } else if (q1 != NULL || q2 != NULL) {
        abort(); /* *out must be NULL on error */
    }
    qb_query_free(q1);
    qb_query_free(q2);
    for (i = 0; i < fz.nv; i++)
        free(fz.vtext[i]);
    return 0;
}
