/*
 * kit.c -- one call to defer a write from a handler (waituntil.h).
 *
 * A query task goes through defer_wait_until_query, which converts it to
 * the pool's dialect at registration and journals it with the request's
 * other tasks at admission: the helper adds only the SQL-to-query step
 * and the mapping of DEFER_* codes to the WEB_* codes a handler returns.
 */
#include "app_int.h"

#include <string.h>

/* A DEFER_* code of registration as the WEB_* code a handler returns. */
static int web_code(int rc)
{
    switch (rc) {
    case DEFER_OK: return WEB_OK;
    case DEFER_ETOOMANY: return WEB_ETOOMANY;
    case DEFER_ENOMEM: return WEB_ENOMEM;
    default: return WEB_EINVAL;
    }
}

WAITUNTIL_API int waituntil_defer_query(web_call *call, qb_query *q)
{
    if (call == NULL || q == NULL) {
        qb_query_free(q);
        return WEB_EINVAL;
    }
    /* Takes q on every path. */
    return web_code(defer_wait_until_query(web_call_defer(call), q,
                                           web_call_label(call)));
}

WAITUNTIL_API int waituntil_defer_sqlv(web_call *call, const char *sql,
                                       const qb_value *vals, size_t n)
{
    qb_query *q = NULL;
    int rc;

    if (call == NULL || sql == NULL || (vals == NULL && n > 0))
        return WEB_EINVAL;
    rc = qb_query_raw(&q, sql, n, vals, QB_FETCH_NONE);
    if (rc != QB_OK)
        return rc == QB_ENOMEM ? WEB_ENOMEM : WEB_EINVAL;
    return waituntil_defer_query(call, q);
}

WAITUNTIL_API const char *waituntil_param(web_call *call, const char *name)
{
    size_t len = 0;
    const char *v;
    char *copy;
    if (call == NULL || name == NULL)
        return NULL;
    v = web_match_param(web_call_match(call), name, &len);
    if (v == NULL)
        return NULL;
    copy = web_arena_alloc(web_call_arena(call), len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, v, len);
    copy[len] = '\0';
    return copy;
}
