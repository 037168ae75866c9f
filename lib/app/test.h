/*
 * test.h -- the test kit: run an application's requests without nginx
 * or a socket, and check what each one answered and what it wrote.
 *
 * A kit is the application as waituntil_main would start it -- its conf
 * (routes, limits, pool), its handlers plus the built-in ones, its
 * SQLite migrations -- on a fresh SQLite database of its own in a
 * temporary folder (removed at close), whatever database the conf names.
 * A request goes the server's way (DESIGN.md): route, body, "require",
 * handler or declarative action, admission; then the writes it
 * registered run on the pool, and the request returns once they are
 * done, so a test sees the rows at once.  With Check:
 *
 *     #include <check.h>
 *     #include <waituntil/test.h>
 *
 *     START_TEST(test_seen)
 *     {
 *         char err[512];
 *         waituntil_test *t;
 *         const waituntil_test_response *r;
 *         ck_assert_msg(waituntil_test_open(&t, "seed.conf", ".", handlers,
 *                                           nhandlers, err, sizeof err)
 *                           == WEB_OK, "%s", err);
 *         r = waituntil_test_post(t, "/users/42/seen", NULL, NULL);
 *         ck_assert_int_eq(r->status, 202);
 *         ck_assert_uint_eq(r->nwrites, 1);
 *         ck_assert_str_eq(r->writes[0].sql, "UPDATE users SET ...");
 *         ck_assert_uint_eq(r->writes_ok, 1);
 *         ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM "
 *                                             "users"), 1);
 *         waituntil_test_close(t);
 *     }
 *     END_TEST
 *
 * Link: pkg-config --cflags --libs waituntil (and check).
 *
 * Threads: a kit belongs to one thread at a time (Check's forked test is
 * fine); kits are independent of each other.  Everything a response
 * points to stays valid until the next request on the kit or its close.
 */
#ifndef WAITUNTIL_TEST_H
#define WAITUNTIL_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "waituntil.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct waituntil_test waituntil_test;

/* One write a request registered, in registration order, as it ran. */
typedef struct waituntil_test_write {
    const char *label;         /* the route's pattern ("/users/:id") */
    const char *sql;           /* the statement in the pool's dialect
                                  (SQLite); NULL for a C callback task
                                  (defer_wait_until) */
    size_t nparams;
    const qb_value *params;    /* its bound values */
    const char *debug_sql;     /* sql with the values inlined (workers-qb
                                  toDebugSQL rules; for messages) */
} waituntil_test_write;

#define WAITUNTIL_TEST_MAX_HEADERS 16

typedef struct waituntil_test_response {
    int status;                /* as sent: 204 if the handler set none,
                                  503 if admission refused the writes */
    const char *content_type;  /* NULL for 204 and 304 */
    const char *body;          /* NUL-terminated ("" when none) */
    size_t body_len;
    size_t nheaders;           /* the handler's extra headers */
    const char *header_name[WAITUNTIL_TEST_MAX_HEADERS];
    const char *header_value[WAITUNTIL_TEST_MAX_HEADERS];
    size_t nwrites;            /* writes registered and admitted */
    const waituntil_test_write *writes;
    size_t writes_ok;          /* ... that ran and committed */
    size_t writes_failed;      /* ... that ran and failed (the log says
                                  why: waituntil_test_log) */
} waituntil_test_response;

/*
 * Start a kit: load conf_path (relative paths in it resolved against
 * prefix; NULL prefix: the current folder), make an empty SQLite
 * database in a new temporary folder ($TMPDIR or /tmp), apply the conf's
 * SQLite migrations to it, check every deferred statement against it
 * (as the start does), and build the server with handlers[0..nhandlers)
 * plus the built-in ones.  The journal is off.  handlers is copied.
 * WEB_OK; WEB_ECONF (conf, migrations, an unknown handler, a statement
 * the schema refuses), WEB_EIO, WEB_ENOMEM -- errbuf says why.
 */
WAITUNTIL_API int waituntil_test_open(waituntil_test **out,
                                      const char *conf_path,
                                      const char *prefix,
                                      const web_handler_def *handlers,
                                      size_t nhandlers, char *errbuf,
                                      size_t errlen);

/* Stop the pool (every write already ran), remove the database and its
 * folder, free.  NULL: no-op. */
WAITUNTIL_API void waituntil_test_close(waituntil_test *t);

/*
 * One request: method, uri (path and query string, as the client sent
 * it), headers (NULL, or a NULL-terminated array of "Name: value"),
 * body[0..len).  A Content-Type header sets CONTENT_TYPE.  Its writes
 * run before this returns.  The response, owned by t; NULL on a kit
 * failure (out of memory, a write that never finished within 60 s):
 * waituntil_test_error says why.  After a write that never finished the
 * kit's counts would be wrong: every later request returns NULL too
 * (close the kit).
 */
WAITUNTIL_API const waituntil_test_response *
waituntil_test_request(waituntil_test *t, const char *method, const char *uri,
                       const char *const *headers, const void *body,
                       size_t len);

/* GET uri. */
WAITUNTIL_API const waituntil_test_response *
waituntil_test_get(waituntil_test *t, const char *uri);

/* POST uri with body (a string; NULL: none) of content_type (NULL:
 * none; "application/json", "application/x-www-form-urlencoded"). */
WAITUNTIL_API const waituntil_test_response *
waituntil_test_post(waituntil_test *t, const char *uri,
                    const char *content_type, const char *body);

/* The value of response header name (case-insensitive; Content-Type
 * included), or NULL. */
WAITUNTIL_API const char *
waituntil_test_header(const waituntil_test_response *r, const char *name);

/* The kit's own connection to its database (this thread only; do not
 * close it): query what the writes did, or seed rows before a request. */
WAITUNTIL_API qb_conn *waituntil_test_db(waituntil_test *t);

/* The first column of the first row of sql as an integer (SELECT
 * count(*) ...); INT64_MIN if the query failed or returned no row
 * (waituntil_test_error says which). */
WAITUNTIL_API int64_t waituntil_test_int(waituntil_test *t, const char *sql);

/* The server's and the pool's log lines since the kit opened (or the
 * last waituntil_test_log_clear), NUL-terminated: a failed write's
 * reason is there ("event=task_failed").  Owned by t; valid until the
 * next call on t. */
WAITUNTIL_API const char *waituntil_test_log(waituntil_test *t);
WAITUNTIL_API void waituntil_test_log_clear(waituntil_test *t);

/* Why the last call on t failed ("" if it did not). */
WAITUNTIL_API const char *waituntil_test_error(const waituntil_test *t);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_TEST_H */
