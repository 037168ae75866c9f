/*
 * handlers.c -- the C handlers a conf can name with `handler NAME;`.
 *
 *   status    server and pool counters (lib/web's status handler)
 *   touch     the lib/web API by example: answer 202 at once, upsert
 *             users(id, last_seen) after the response
 *   slow      for tests: a deferred callback that sleeps ?ms= (<= 10 s)
 *             and then inserts a logs row; shows that the answer does not
 *             wait for it
 *   log_sync  for benchmarks: the same insert as /log, but done before the
 *             answer on the request thread's own connection (the
 *             synchronous baseline; SQLite only: 501 on PostgreSQL)
 *
 * SQL for the pool is built in the pool's dialect (web_call_dialect):
 * a PostgreSQL pool refuses queries rendered for SQLite.
 */
#define _GNU_SOURCE
#include "app.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"

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
    qb_insert_dialect(ins, web_call_dialect(call));
    qb_insert_set(ins, "id", qb_textn(id, id_len)); /* copied: arena dies */
    qb_insert_set(ins, "last_seen", qb_raw("CURRENT_TIMESTAMP"));
    qb_insert_on_conflict(ins, 1, conflict);
    qb_insert_on_conflict_set(ins, "last_seen", qb_raw("CURRENT_TIMESTAMP"));
    rc = qb_insert_build(ins, &q);
    qb_insert_free(ins);
    if (rc != QB_OK)
        return rc == QB_ENOMEM ? WEB_ENOMEM : WEB_EINVAL;
    /* Takes q on every path.  Admission happens after we return. */
    rc = defer_wait_until_query(web_call_defer(call), q, web_call_label(call));
    if (rc != DEFER_OK)
        return rc == DEFER_ETOOMANY ? WEB_ETOOMANY
               : rc == DEFER_ENOMEM ? WEB_ENOMEM
                                    : WEB_EINVAL;
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

/* ---- log_sync: the synchronous baseline -------------------------------- */

/* One connection per request thread, opened on first use and closed when
 * the thread exits. */
static pthread_key_t sync_key;
static pthread_once_t sync_once = PTHREAD_ONCE_INIT;
static const char *sync_db_path;
static qb_conn_config sync_db_cfg;

static void sync_close(void *p) { qb_close(p); }
static int sync_key_rc = -1; /* pthread_key_create's result */
static void sync_init(void)
{
    sync_key_rc = pthread_key_create(&sync_key, sync_close);
}

void app_set_sync_db(const char *path, const qb_conn_config *cfg)
{
    sync_db_path = path;
    if (cfg != NULL)
        sync_db_cfg = *cfg;
}

static int h_log_sync(web_call *call, void *ud)
{
    const web_request *r = web_call_request(call);
    struct timespec ts = web_request_time(r);
    char iso[25];
    qb_conn *db;
    qb_insert *ins;
    qb_query *q = NULL;
    size_t plen = 0;
    const char *path = web_request_path(r, &plen);
    int rc;
    (void)ud;

    /* The baseline compares a write before the answer with a deferred
     * one on the same SQLite file; on PostgreSQL there is no such file. */
    if (web_call_dialect(call) != QB_DIALECT_SQLITE) {
        static const char msg[] = "log_sync is the SQLite-only benchmark "
                                  "baseline: not available on PostgreSQL\n";
        return web_respond(call, 501, NULL, msg, sizeof msg - 1);
    }
    if (sync_db_path == NULL || pthread_once(&sync_once, sync_init) != 0 ||
        sync_key_rc != 0)
        return WEB_EINVAL;
    db = pthread_getspecific(sync_key);
    if (db == NULL) {
        if (qb_open(&db, sync_db_path, &sync_db_cfg, NULL, 0) != QB_OK)
            return WEB_EIO;
        if (pthread_setspecific(sync_key, db) != 0) {
            qb_close(db); /* not kept: open again next time */
            return WEB_ENOMEM;
        }
    }
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
        rc = qb_exec(db, q, NULL);
    qb_query_free(q);
    if (rc != QB_OK)
        return WEB_EIO;
    return web_respond(call, 200, NULL, "Request logged before answering.\n",
                       33);
}

/* sqlite3_version: the library the program runs with, not the header it
 * was built with. */
static web_status_info status_info = {PACKAGE_VERSION, sqlite3_version};

const web_handler_def app_handlers[] = {
    {"status", web_handler_status, &status_info},
    {"touch", h_touch, NULL},
    {"slow", h_slow, NULL},
    {"log_sync", h_log_sync, NULL},
};
const size_t app_nhandlers = sizeof app_handlers / sizeof app_handlers[0];
