/* web_srv_int.h -- lib/web server internals shared by server.c and
 * status.c.  Not installed; not API. */
#ifndef WAITUNTIL_WEB_SRV_INT_H
#define WAITUNTIL_WEB_SRV_INT_H

#include "web_server.h"

defer_pool *web__srv_pool(const web_server *s);

/* One request's answer as it is written (web__srv_call). */
#define WEB__SRV_MAX_HEADERS 16 /* a handler's extra headers, at most */
typedef struct web__srv_answer {
    int status;                 /* as sent: 204 when the handler set none,
                                   503 when admission refused the writes,
                                   500 when the headers did not fit */
    const char *ctype;          /* NULL for 204 and 304 */
    const char *body;           /* NULL for HEAD, 204, 304 */
    size_t body_len;
    size_t nhdrs;
    const char *hdr_name[WEB__SRV_MAX_HEADERS];
    const char *hdr_value[WEB__SRV_MAX_HEADERS];
    int admitted;               /* the tasks were admitted: the caller
                                   must defer_submit them (after reading
                                   the answer) */
    size_t nwrites;             /* tasks admitted */
    size_t ninline;             /* tasks run inline (policy inline) */
} web__srv_answer;

/* Called with the request's tasks on dctx, before their admission
 * (test kits copy them: defer_ctx_task). */
typedef void (*web__srv_hook)(void *ud, defer_ctx *dctx);

/* Run one request through the server without FastCGI: envp as libfcgi
 * gives the params (NULL-terminated "NAME=value"), body[0..len).  The
 * request thread's steps (DESIGN): route, body, "require", handler or
 * declarative action, then -- with before_admit(ud, dctx) called first
 * when there are tasks -- admission with the same answers (503 +
 * Retry-After, JSON errors) and counters; the answer is the one that
 * would be written (the 500 for headers too large included).  Runs on
 * arena and dctx (of s's pool); db is the slot web_call_db opens into
 * (NULL: none).  When out->admitted, the caller submits dctx's tasks
 * (defer_submit).  out's strings live in arena (reset it after).  One
 * thread per arena/dctx.  No access log line.  WEB_OK, or WEB_EINVAL. */
int web__srv_call(web_server *s, char **envp, const void *body, size_t len,
                  web_arena *arena, defer_ctx *dctx, qb_conn **db,
                  web__srv_hook before_admit, void *ud,
                  web__srv_answer *out);

#endif
