/*
 * waituntil.h -- write a waituntil application: your handlers, our
 * server.
 *
 * An application is a table of C handlers and a conf that names them
 * (`handler NAME;` in a route).  Its whole main is
 *
 *     #include <waituntil/waituntil.h>
 *
 *     static int h_seen(web_call *call, void *ud)
 *     {
 *         const char *id = waituntil_param(call, "id");
 *         int rc = waituntil_defer_sql(call,
 *             "UPDATE users SET last_seen = CURRENT_TIMESTAMP WHERE id = ?",
 *             qb_text(id));
 *         return rc != WEB_OK ? rc : web_respond(call, 202, NULL, "ok\n", 3);
 *     }
 *     static const web_handler_def handlers[] = {{"seen", h_seen, NULL}};
 *
 *     int main(int argc, char **argv)
 *     {
 *         return waituntil_main(argc, argv, handlers, 1);
 *     }
 *
 * and it is the waituntil program (every flag, signal, migration, -t,
 * reload and upgrade of waituntil(8)) with these handlers added.  Build:
 * `cc app.c $(pkg-config --cflags --libs waituntil)`.  Test it without a
 * server with <waituntil/test.h>.
 *
 * Conventions: WEB_OK / WEB_E* codes (web.h); everything here is called
 * from a request thread, on the call it was given, and is thread-safe in
 * that sense (one call, one thread).
 *
 * Private names of this module (lib/app) start with app_ and are not
 * exported from libwaituntil.
 */
#ifndef WAITUNTIL_WAITUNTIL_H
#define WAITUNTIL_WAITUNTIL_H

#include <stddef.h>

#include "defer.h"
#include "qb.h"
#include "qb_conn.h"
#include "web.h"
#include "web_server.h"

#if defined(__GNUC__) && defined(WAITUNTIL_BUILDING)
#define WAITUNTIL_API __attribute__((visibility("default")))
#else
#define WAITUNTIL_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The waituntil program with handlers[0..nhandlers) added to the built-in
 * ones ("status"): parses argv as waituntil(8) does, loads the conf,
 * applies the migrations, serves until TERM/INT/QUIT and drains.  A
 * handler of yours with a built-in's name replaces it.  handlers is
 * borrowed for the life of the call (a static table); ud pointers are
 * handed to the handlers as they are.  Call once, from main, before any
 * other thread exists (signals are blocked in every thread it starts).
 * Returns the process's exit status: 0 after a clean drain (or a -t that
 * passed), 1 otherwise.
 */
WAITUNTIL_API int waituntil_main(int argc, char **argv,
                                 const web_handler_def *handlers,
                                 size_t nhandlers);

/* The route's named capture (":id" in "/users/:id/seen") as a
 * NUL-terminated copy in the request's arena (web_match_param's value
 * points into the path and is not terminated), valid until the handler
 * returns; NULL when the route has no such capture (or out of memory). */
WAITUNTIL_API const char *waituntil_param(web_call *call, const char *name);

/*
 * Defer one SQL write from a handler: the statement runs after the
 * response, on a pool worker, in the group commit of its batch (workers-qb
 * and ctx.waitUntil, without the promise).  sql uses `?` / `?N`
 * placeholders as SQLite does and is converted to the pool's engine
 * (PostgreSQL: $N) when registered; vals[0..n) are copied (qb_text,
 * qb_int... ; a *_ref value must stay valid until this call returns).
 * The task is journaled when the pool has a journal.  The admission
 * (queue room, a 503 if there is none) happens after the handler
 * returns, before the answer is sent.
 * Returns WEB_OK; WEB_ETOOMANY (more than tasks_per_request writes:
 * answer 431... as any handler error, the server answers
 * web_http_status(rc) and drops this request's writes); WEB_ENOMEM;
 * WEB_EINVAL (NULL call or sql, a query that does not convert to the
 * pool's engine, no database).
 */
WAITUNTIL_API int waituntil_defer_sqlv(web_call *call, const char *sql,
                                       const qb_value *vals, size_t n);

/* The same with the values as arguments (at least zero: the macro works
 * without any):
 *     waituntil_defer_sql(call, "DELETE FROM sessions WHERE id = ?",
 *                         qb_text(sid)); */
#define waituntil_defer_sql(call, sql, ...) \
    waituntil_defer_sqlv((call), (sql), QB_VALS(__VA_ARGS__), \
                         QB_NVALS(__VA_ARGS__))

/* Defer a query built with the builder (qb_insert_build ...) or
 * qb_query_raw.  Takes q on every path (qb_query_free).  Rendered in
 * either dialect: converted to the pool's.  Codes as waituntil_defer_sqlv. */
WAITUNTIL_API int waituntil_defer_query(web_call *call, qb_query *q);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_WAITUNTIL_H */
