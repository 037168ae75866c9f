/*
 * value.c -- qb_value constructors, copies, status strings, identifiers.
 */
#include "qb_priv.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

QB_API const char *qb_strerror(int rc)
{
    switch (rc) {
    case QB_OK: return "not an error";
    case QB_ENOMEM: return "out of memory";
    case QB_EINVAL: return "invalid argument";
    case QB_EPARAM: return "parameter count mismatch";
    case QB_EMISSING: return "required data missing";
    case QB_ECONFIG: return "invalid configuration";
    case QB_ESUBQUERY: return "invalid subquery";
    case QB_EDIALECT: return "not supported by this SQL dialect";
    case QB_ESQL: return "SQL error";
    case QB_EBUSY: return "database busy";
    case QB_EINTERRUPT: return "interrupted";
    case QB_ECONSTRAINT: return "constraint violation";
    case QB_EDONE: return "no more rows";
    case QB_EMISUSE: return "API misuse";
    case QB_ECONN: return "connection to the database lost: reset and retry";
    default: return "unknown error";
    }
}

/* Every constructor writes the returned object once, straight, as its
 * first 16 bytes and then the last 8, the way callers copy a qb_value:
 * building it in a zeroed temporary and patching fields made each copy
 * load across several partial stores, a store-forwarding stall per value
 * (bench_qb, issue #14).  lo and hi are the union's two words (a bytes
 * value: pointer and length); the bytes past the member set are zero, as
 * they always were. */
#if defined(__GNUC__) && UINTPTR_MAX == UINT64_MAX && SIZE_MAX == UINT64_MAX
typedef uint64_t qbi_u64x2 __attribute__((vector_size(16)));

static inline qb_value mkval(qb_vtype type, unsigned flags, uint64_t lo,
                             uint64_t hi)
{
    qb_value v;
    uint32_t head[2] = { (uint32_t)type, flags };
    uint64_t h;
    qbi_u64x2 w;

    _Static_assert(sizeof v == 24 && offsetof(qb_value, u) == 8,
                   "qb_value layout");
    memcpy(&h, head, sizeof h);
    w = (qbi_u64x2){ h, lo };
    memcpy(&v, &w, sizeof w);
    memcpy((char *)&v + sizeof w, &hi, sizeof hi);
    return v;
}
#else
static inline qb_value mkval(qb_vtype type, unsigned flags, uint64_t lo,
                             uint64_t hi)
{
    qb_value v;
    memset(&v, 0, sizeof v);
    v.type = type;
    v.flags = flags;
    if (type == QB_V_TEXT || type == QB_V_BLOB || type == QB_V_RAW) {
        v.u.b.p = (const void *)(uintptr_t)lo;
        v.u.b.n = (size_t)hi;
    } else if (type == QB_V_SELECT) {
        v.u.sel = (const struct qb_select *)(uintptr_t)lo;
    } else if (type == QB_V_REAL) {
        memcpy(&v.u.d, &lo, sizeof v.u.d);
    } else {
        v.u.i = (int64_t)lo;
    }
    return v;
}
#endif

QB_API qb_value qb_null(void)
{
    return mkval(QB_V_NULL, 0, 0, 0);
}

QB_API qb_value qb_int(int64_t i)
{
    return mkval(QB_V_INT, 0, (uint64_t)i, 0);
}

QB_API qb_value qb_real(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return mkval(QB_V_REAL, 0, bits, 0);
}

QB_API qb_value qb_bool(int b)
{
    return mkval(QB_V_BOOL, 0, b != 0, 0);
}

static qb_value bytes_value(qb_vtype type, const void *p, size_t n,
                            unsigned flags)
{
    if (p == NULL && (type != QB_V_BLOB || n != 0))
        return qb_null();
    return mkval(type, flags, (uint64_t)(uintptr_t)p, n);
}

QB_API qb_value qb_text(const char *s)
{
    return bytes_value(QB_V_TEXT, s, s ? strlen(s) : 0, 0);
}

QB_API qb_value qb_textn(const char *s, size_t n)
{
    return bytes_value(QB_V_TEXT, s, n, 0);
}

QB_API qb_value qb_text_ref(const char *s)
{
    return bytes_value(QB_V_TEXT, s, s ? strlen(s) : 0, QB_VF_BORROWED);
}

QB_API qb_value qb_blob(const void *p, size_t n)
{
    return bytes_value(QB_V_BLOB, p, n, 0);
}

QB_API qb_value qb_blob_ref(const void *p, size_t n)
{
    return bytes_value(QB_V_BLOB, p, n, QB_VF_BORROWED);
}

QB_API qb_value qb_raw(const char *sql)
{
    return bytes_value(QB_V_RAW, sql, sql ? strlen(sql) : 0, 0);
}

QB_API qb_value qb_subquery(const struct qb_select *sel)
{
    return mkval(QB_V_SELECT, 0, (uint64_t)(uintptr_t)sel, 0);
}

int qbi_value_bindable(const qb_value *v)
{
    switch (v->type) {
    case QB_V_NULL: case QB_V_INT: case QB_V_REAL: case QB_V_BOOL:
        return 1;
    case QB_V_TEXT: case QB_V_BLOB:
        return v->u.b.p != NULL || v->u.b.n == 0;
    default:
        return 0;
    }
}

int qbi_value_copy(qb_value *dst, const qb_value *src)
{
    char *p;

    *dst = *src;
    if ((src->type != QB_V_TEXT && src->type != QB_V_BLOB &&
         src->type != QB_V_RAW) || (src->flags & QB_VF_BORROWED))
        return QB_OK;
    if (src->u.b.n >= QBI_SQL_MAX) {
        *dst = qb_null();
        return QB_EINVAL;
    }
    /* Always allocate (n + 1): a NUL for text, and a non-NULL pointer for
     * an empty blob, which SQLite would otherwise bind as NULL. */
    p = malloc(src->u.b.n + 1);
    if (p == NULL) {
        *dst = qb_null();
        return QB_ENOMEM;
    }
    if (src->u.b.n > 0)
        memcpy(p, src->u.b.p, src->u.b.n);
    p[src->u.b.n] = '\0';
    dst->u.b.p = p;
    return QB_OK;
}

void qbi_value_clear(qb_value *v)
{
    if ((v->type == QB_V_TEXT || v->type == QB_V_BLOB ||
         v->type == QB_V_RAW) && !(v->flags & QB_VF_BORROWED))
        free((void *)(uintptr_t)v->u.b.p);
    *v = qb_null();
}

static int ident_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int ident_char(char c)
{
    return ident_start(c) || (c >= '0' && c <= '9');
}

QB_API int qb_ident_valid(const char *name)
{
    size_t i, n;
    int dots = 0;

    if (name == NULL)
        return 0;
    n = strnlen(name, 129);
    if (n == 0 || n > 128)
        return 0;
    for (i = 0; i < n; i++) {
        if (name[i] == '.') {
            /* one "schema." prefix: a dot between two non-empty names */
            if (++dots > 1 || i == 0 || i + 1 == n)
                return 0;
            continue;
        }
        if (i == 0 || name[i - 1] == '.') {
            if (!ident_start(name[i]))
                return 0;
        } else if (!ident_char(name[i])) {
            return 0;
        }
    }
    return 1;
}
