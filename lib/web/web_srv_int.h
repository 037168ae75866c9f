/* web_srv_int.h -- lib/web server internals shared by server.c and
 * status.c.  Not installed; not API. */
#ifndef WAITUNTIL_WEB_SRV_INT_H
#define WAITUNTIL_WEB_SRV_INT_H

#include "web_server.h"

defer_pool *web__srv_pool(const web_server *s);

/* One request's answer as it would be written (web__srv_call). */
#define WEB__SRV_MAX_HEADERS 16
typedef struct web__srv_answer {
    int status;                 /* 204 when the handler set none */
    const char *ctype;          /* NULL for 204 and 304 */
    const char *body;           /* NULL for HEAD, 204, 304 */
    size_t body_len;
    size_t nhdrs;
    const char *hdr_name[WEB__SRV_MAX_HEADERS];
    const char *hdr_value[WEB__SRV_MAX_HEADERS];
    int ran;                    /* the route ran: its tasks are on dctx,
                                   not admitted */
} web__srv_answer;

/* Run one request through the server without FastCGI: envp as libfcgi
 * gives the params (NULL-terminated "NAME=value"), body[0..len).  Steps
 * 1-3 of the DESIGN (route, body, "require", handler or declarative
 * action) on arena and dctx (of s's pool); db is the slot web_call_db
 * opens into (NULL: no database).  The tasks the route registered are
 * left on dctx, NOT admitted: admit and submit them (or discard).  out's
 * strings live in arena (reset it after).  Counted in the server's
 * counters like a request.  One thread per arena/dctx; any number of
 * calls may run at once.  WEB_OK, or WEB_EINVAL. */
int web__srv_call(web_server *s, char **envp, const void *body, size_t len,
                 web_arena *arena, defer_ctx *dctx, qb_conn **db,
                 web__srv_answer *out);

#endif
