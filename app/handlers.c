/*
 * handlers.c -- the waituntil program's own C handlers, which a conf
 * names with `handler NAME;` (besides the built-in "status"):
 *
 *   touch     the application API by example: answer 202 at once, upsert
 *             users(id, last_seen) after the response
 *   slow      for tests: a deferred callback that sleeps ?ms= (<= 10 s)
 *             and then inserts a logs row; shows that the answer does not
 *             wait for it
 *   log_defer for benchmarks: /log's insert written as a C handler
 *             (waituntil_defer_sql), to compare with the declarative route
 *   log_sync  for benchmarks: the same insert as /log, but done before the
 *             answer on the request thread's own connection
 *             (web_call_db: the synchronous baseline)
 *
 * Queries are built in the default (SQLite) dialect: the pool converts
 * them to its own (waituntil_defer_query, defer_wait_until_query).
 */
#define _GNU_SOURCE
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ---- touch: respond now, upsert later ---------------------------------- */

static int h_touch(web_call *call, void *ud)
{
    size_t id_len = 0;
    const char *id = web_match_param(web_call_match(call), "id", &id_len);
    const char *const conflict[] = {"id"};
    qb_insert *ins;
    qb_query *q = NULL;
    int rc;
    (void)ud;

    if (id == NULL || id_len == 0)
        return WEB_EBADREQ;
    ins = qb_insert_new("users");
    if (ins == NULL)
        return WEB_ENOMEM;
    qb_insert_set(ins, "id", qb_textn(id, id_len)); /* copied: arena dies */
    qb_insert_set(ins, "last_seen", qb_raw("CURRENT_TIMESTAMP"));
    qb_insert_on_conflict(ins, 1, conflict);
    qb_insert_on_conflict_set(ins, "last_seen", qb_raw("CURRENT_TIMESTAMP"));
    rc = qb_insert_build(ins, &q);
    qb_insert_free(ins);
    if (rc != QB_OK)
        return rc == QB_ENOMEM ? WEB_ENOMEM : WEB_EINVAL;
    /* Takes q on every path.  Admission happens after we return. */
    rc = waituntil_defer_query(call, q);
    if (rc != WEB_OK)
        return rc;
    return web_respond(call, 202, "application/json", "{\"queued\":true}\n",
                       16);
}

/* ---- slow: a deferred callback that takes its time --------------------- */

struct slow_arg {
    unsigned ms;
    char method[16];
    char path[256];
    char time[25];
};

/* Run q on the task's connection, whichever engine the pool has. */
static int env_exec(defer_env *env, const qb_query *q)
{
    qb_conn *db = defer_env_db(env);
    int rc = qb_exec(db, q, NULL);
    if (rc != QB_OK)
        defer_env_set_error(env, qb_errmsg(db));
    return rc;
}

static int slow_run(defer_env *env, void *p)
{
    struct slow_arg *a = p;
    struct timespec step = {0, 10 * 1000000L};
    qb_insert *ins;
    qb_query *q = NULL;
    int rc;

    for (unsigned waited = 0; waited < a->ms && !defer_env_expired(env);
         waited += 10)
        nanosleep(&step, NULL);
    ins = qb_insert_new("logs");
    if (ins == NULL)
        return -1;
    qb_insert_dialect(ins, qb_conn_dialect(defer_env_db(env)));
    qb_insert_set(ins, "method", qb_text(a->method));
    qb_insert_set(ins, "path", qb_text(a->path));
    qb_insert_set(ins, "timestamp", qb_text(a->time));
    rc = qb_insert_build(ins, &q);
    if (rc != QB_OK)
        defer_env_set_error(env, qb_insert_errmsg(ins));
    qb_insert_free(ins);
    if (rc == QB_OK)
        rc = env_exec(env, q);
    qb_query_free(q);
    return rc == QB_OK ? 0 : -1;
}

static int h_slow(web_call *call, void *ud)
{
    const web_request *r = web_call_request(call);
    const char *ms = web_request_arg(r, "ms", NULL);
    struct timespec ts = web_request_time(r);
    struct slow_arg *a = calloc(1, sizeof *a);
    long v = ms ? strtol(ms, NULL, 10) : 500;
    int rc;
    (void)ud;

    if (a == NULL)
        return WEB_ENOMEM;
    a->ms = v < 0 ? 0 : v > 10000 ? 10000 : (unsigned)v;
    snprintf(a->method, sizeof a->method, "%s", web_request_method(r));
    snprintf(a->path, sizeof a->path, "%s", web_request_path(r, NULL));
    web_time_iso(&ts, a->time);
    rc = defer_wait_until(web_call_defer(call), slow_run, a, free,
                          web_call_label(call));
    if (rc != DEFER_OK)
        return rc == DEFER_ETOOMANY ? WEB_ETOOMANY : WEB_ENOMEM;
    return web_respond(call, 200, NULL, "slow write queued\n", 18);
}

/* ---- log_defer: /log's insert as a C handler --------------------------- */

/* What the declarative /log does (conf/waituntil.conf), written as an
 * application would: for `make bench` (a handler costs no more than a
 * declarative route). */
static int h_log_defer(web_call *call, void *ud)
{
    const web_request *r = web_call_request(call);
    struct timespec ts = web_request_time(r);
    size_t plen = 0;
    const char *path = web_request_path(r, &plen);
    char iso[25];
    int rc;
    (void)ud;
    web_time_iso(&ts, iso);
    rc = waituntil_defer_sql(call, "INSERT INTO logs (method, path, "
                                   "timestamp) VALUES (?1, ?2, ?3)",
                             qb_text(web_request_method(r)),
                             qb_textn(path, plen), qb_text(iso));
    if (rc != WEB_OK)
        return rc;
    return web_respond(call, 200, "text/plain",
                       "Request logged in the background!", 33);
}

/* ---- log_sync: the synchronous baseline -------------------------------- */

static int h_log_sync(web_call *call, void *ud)
{
    const web_request *r = web_call_request(call);
    struct timespec ts = web_request_time(r);
    char iso[25];
    qb_conn *db = web_call_db(call); /* this request thread's own */
    qb_insert *ins;
    qb_query *q = NULL;
    size_t plen = 0;
    const char *path = web_request_path(r, &plen);
    int rc;
    (void)ud;

    if (db == NULL)
        return WEB_EIO;
    web_time_iso(&ts, iso);
    ins = qb_insert_new("logs");
    if (ins == NULL)
        return WEB_ENOMEM;
    qb_insert_set(ins, "method", qb_text_ref(web_request_method(r)));
    qb_insert_set(ins, "path", qb_textn(path, plen));
    qb_insert_set(ins, "timestamp", qb_text(iso));
    rc = qb_insert_build(ins, &q);
    qb_insert_free(ins);
    if (rc == QB_OK)
        rc = qb_exec(db, q, NULL); /* converted to db's dialect */
    qb_query_free(q);
    if (rc != QB_OK)
        return WEB_EIO;
    return web_respond(call, 200, NULL, "Request logged before answering.\n",
                       33);
}

const web_handler_def app_handlers[] = {
    {"touch", h_touch, NULL},
    {"slow", h_slow, NULL},
    {"log_sync", h_log_sync, NULL},
    {"log_defer", h_log_defer, NULL},
};
const size_t app_nhandlers = sizeof app_handlers / sizeof app_handlers[0];
