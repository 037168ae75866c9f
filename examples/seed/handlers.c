/* handlers.c -- the seed's three writes as C handlers: each answers at
 * once and leaves its write to the pool (ctx.waitUntil in workers-qb). */
#include "seed.h"

static int h_log(web_call *call, void *ud) /* any /log/... */
{
    const web_request *r = web_call_request(call);
    int rc = waituntil_defer_sql(call, "INSERT INTO logs (method, path, "
                                 "timestamp) VALUES (?, ?, CURRENT_TIMESTAMP)",
                                 qb_text(web_request_method(r)),
                                 qb_text(web_request_path(r, NULL)));
    (void)ud;
    return rc != WEB_OK ? rc : web_respond(call, 200, NULL, "logged\n", 7);
}

static int h_seen(web_call *call, void *ud) /* POST /users/:id/seen */
{
    int rc = waituntil_defer_sql(call, "UPDATE users SET last_seen = "
                                 "CURRENT_TIMESTAMP WHERE id = ?",
                                 qb_text(waituntil_param(call, "id")));
    (void)ud;
    return rc != WEB_OK ? rc : web_respond(call, 202, NULL, "seen\n", 5);
}

static int h_logout(web_call *call, void *ud) /* POST /logout */
{
    const char *sid = web_request_header(web_call_request(call),
                                         "X-Session-Id", NULL);
    int rc = sid == NULL ? WEB_EBADREQ
                         : waituntil_defer_sql(call, "DELETE FROM sessions "
                                               "WHERE id = ?", qb_text(sid));
    (void)ud;
    return rc != WEB_OK ? rc : web_respond(call, 200, NULL, "bye\n", 4);
}

const web_handler_def seed_handlers[] = {
    {"log", h_log, NULL}, {"seen", h_seen, NULL}, {"logout", h_logout, NULL},
};
const size_t seed_nhandlers = sizeof seed_handlers / sizeof seed_handlers[0];
