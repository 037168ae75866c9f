/*
 * qb_int.h -- lib/qb internals shared by the builder and the executors.
 * Not installed; not API.
 */
#ifndef WAITUNTIL_QB_INT_H
#define WAITUNTIL_QB_INT_H

#include "qb.h"

struct qb_query {
    char *sql;            /* NUL-terminated, owned, rendered for dialect */
    size_t sql_len;
    qb_value *params;     /* owned array; TEXT/BLOB bytes owned unless
                             flags & QB_VF_BORROWED; never RAW/SELECT */
    size_t nparams;
    qb_fetch fetch;
    qb_kind kind;
    qb_dialect dialect;
    char *count_sql;      /* SELECT only: the count() statement, or NULL;
                             binds the same params */
    struct qb_query *next; /* chained statement (bulk insert split) */
    /* The builder allocates a query as one block [blk_lo, blk_hi) holding
     * this struct, params, their bytes and the SQL; a part that points
     * into it is not freed on its own.  Both NULL: every part is its own
     * allocation. */
    const char *blk_lo, *blk_hi;
};

#endif /* WAITUNTIL_QB_INT_H */
