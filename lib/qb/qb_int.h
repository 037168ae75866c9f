/*
 * qb_int.h -- lib/qb internals shared by the builder and the executors.
 * Not installed; not API.
 */
#ifndef WAITUNTIL_QB_INT_H
#define WAITUNTIL_QB_INT_H

#include <string.h>

#include "qb.h"
#include "qb_conn.h"

struct qb_query {
    char *sql;            /* NUL-terminated, owned, rendered for dialect */
    size_t sql_len;
    qb_value *params;     /* owned array; TEXT/BLOB bytes owned unless
                             flags & QB_VF_BORROWED; never RAW/SELECT */
    size_t nparams;
    qb_fetch fetch;
    qb_kind kind;
    qb_dialect dialect;
    unsigned char portable; /* SQLite text using nothing PostgreSQL lacks:
                               qb_query_convert may re-render it */
    char *count_sql;      /* SELECT only: the count() statement, or NULL;
                             binds the same params */
    struct qb_query *next; /* chained statement (bulk insert split) */
    /* The builder allocates a query as one block [blk_lo, blk_hi) holding
     * this struct, params, their bytes and the SQL; a part that points
     * into it is not freed on its own.  Both NULL: every part is its own
     * allocation. */
    const char *blk_lo, *blk_hi;
};

/* q's SQL length (sql_len 0: not known, count it). */
static inline size_t qbi_sql_len(const qb_query *q)
{
    return q->sql_len ? q->sql_len : strlen(q->sql);
}

/* ---- results (result.c), shared by both executors ------------------------
 * A qb_result under construction: columns first, then rows appended one
 * at a time and their cells filled.  TEXT/BLOB bytes live in the result's
 * arena (offsets: it moves when it grows), each followed by a NUL.  The
 * functions return QB_OK or QB_ENOMEM and record no message: the executor
 * that calls them does. */
typedef struct qbi_cell {
    qb_vtype type;
    union {
        int64_t i;
        double d;
        struct { size_t off, n; } b;
    } u;
} qbi_cell;

struct qb_result {
    int cols_set;          /* the first statement's columns were taken */
    size_t ncols;
    char **names;          /* ncols pointers, then the strings: one block */
    unsigned *types;       /* ncols engine type ids (PostgreSQL OIDs; 0) */
    size_t nrows, rowcap;
    qbi_cell *cells;       /* nrows * ncols */
    char *bytes;
    size_t nbytes, bytecap;
    int64_t changes, last_rowid;
};

qb_result *qbi_result_new(void);
/* Take n column names (name(src, i), NULL read as "") and zero types. */
int qbi_result_set_columns(qb_result *r, size_t n,
                           const char *(*name)(const void *src, size_t i),
                           const void *src);
/* A new row of NULL cells at the end; NULL on ENOMEM (nothing added). */
qbi_cell *qbi_result_add_row(qb_result *r);
/* Copy n bytes (p may be NULL when n is 0) into cell as type (TEXT or
 * BLOB). */
int qbi_cell_set_bytes(qb_result *r, qbi_cell *cell, qb_vtype type,
                       const void *p, size_t n);

#endif /* WAITUNTIL_QB_INT_H */
