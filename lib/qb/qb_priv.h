/*
 * qb_priv.h -- private helpers of the lib/qb builder: a growable string
 * with a sticky error, the SQL lexer used for placeholders, whitespace
 * collapse and fragment checks, and value copy/free.
 * Not installed; not API.  Hidden symbols (prefix qbi_).
 */
#ifndef WAITUNTIL_QB_PRIV_H
#define WAITUNTIL_QB_PRIV_H

#include <stdarg.h>
#include <stddef.h>

#include "qb.h"
#include "qb_int.h"

/* Longest SQL text we produce: SQLite's default SQLITE_MAX_SQL_LENGTH. */
#define QBI_SQL_MAX 1000000000u

/* ---- string builder ---------------------------------------------------- */

typedef struct qbi_sb {
    char *p;      /* NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    int err;      /* sticky: QB_OK, QB_ENOMEM, or QB_EINVAL (too long) */
} qbi_sb;

void qbi_sb_init(qbi_sb *sb);
void qbi_sb_free(qbi_sb *sb);
void qbi_sb_reset(qbi_sb *sb);            /* len = 0, keeps memory and err */
void qbi_sb_add(qbi_sb *sb, const char *s, size_t n);
void qbi_sb_adds(qbi_sb *sb, const char *s);
void qbi_sb_addc(qbi_sb *sb, char c);
void qbi_sb_addf(qbi_sb *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hand over the buffer (never NULL on success; "" when empty).  On a sticky
 * error returns NULL and frees.  The builder is reset either way. */
char *qbi_sb_take(qbi_sb *sb, size_t *len_out);

/* ---- SQL lexing -------------------------------------------------------- */

/* If s[i] opens a quoted literal/identifier ('..', "..", `..`, and [..]
 * when brackets is set) or a comment (-- to end of line, C-style block),
 * return the index just past its end and set *closed to whether the end
 * was found; otherwise return i.  Doubled quote characters stay inside. */
size_t qbi_sql_skip(const char *s, size_t n, size_t i, int brackets,
                    int *closed);

/* Copy n bytes of SQL collapsing each run of two or more whitespace bytes
 * outside quoted regions into one space (workers-qb's trimQuery, fixed so
 * literals keep their bytes).  A run that ends a line comment keeps a
 * newline so the comment cannot swallow what follows. */
void qbi_sql_collapse(qbi_sb *out, const char *s, size_t n);

/* ---- values ------------------------------------------------------------ */

/* Copy src into dst: TEXT/BLOB/RAW bytes are duplicated (NUL-terminated)
 * unless src is borrowed.  QB_V_SELECT is copied as the pointer.  On
 * QB_ENOMEM dst is a NULL value. */
int qbi_value_copy(qb_value *dst, const qb_value *src);
/* Release what qbi_value_copy allocated; dst becomes NULL. */
void qbi_value_clear(qb_value *v);
/* 1 if the value type is a plain bindable one (not RAW/SELECT/unknown). */
int qbi_value_bindable(const qb_value *v);

/* ---- queries ----------------------------------------------------------- */

/* A zeroed query (fetch/kind/dialect set); NULL on ENOMEM. */
qb_query *qbi_query_new(qb_kind kind, qb_fetch fetch, qb_dialect dialect);

#endif /* WAITUNTIL_QB_PRIV_H */
