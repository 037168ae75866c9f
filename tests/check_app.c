/*
 * check_app.c -- lib/app: the one-call defer helpers, web_call_db and the
 * test kit (<waituntil/test.h>), which is also how the program's own
 * handlers (app/handlers.c) are tested here.  Conf: tests/app/app.conf,
 * migrations: conf/migrations (prefix: the source tree).
 */
#define _GNU_SOURCE
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../app/handlers.h"
#include "test.h"
#include "testutil.h"

/* ---- the test's own handlers ------------------------------------------- */

/* The seed's three writes, as an application writes them. */
static int h_seed(web_call *call, void *ud)
{
    const web_request *r = web_call_request(call);
    const char *id = waituntil_param(call, "id");
    const char *sid = web_request_header(r, "X-Session-Id", NULL);
    int rc;
    (void)ud;
    rc = waituntil_defer_sql(call, "INSERT INTO logs(method, path, timestamp) "
                                   "VALUES (?, ?, CURRENT_TIMESTAMP)",
                             qb_text(web_request_method(r)),
                             qb_text(web_request_path(r, NULL)));
    if (rc == WEB_OK)
        rc = waituntil_defer_sql(call,
                                 "UPDATE users SET last_seen = "
                                 "CURRENT_TIMESTAMP WHERE id = ?",
                                 qb_text(id));
    if (rc == WEB_OK && sid != NULL)
        rc = waituntil_defer_sql(call, "DELETE FROM sessions WHERE id = ?",
                                 qb_text(sid));
    return rc != WEB_OK ? rc : web_respond(call, 202, NULL, "queued\n", 7);
}

/* One write more than tasks_per_request (4). */
static int h_many(web_call *call, void *ud)
{
    (void)ud;
    for (int i = 0; i < 5; i++) {
        int rc = waituntil_defer_sql(call, "DELETE FROM sessions");
        if (rc != WEB_OK)
            return rc;
    }
    return WEB_OK;
}

/* A write the database refuses when it runs. */
static int h_broken(web_call *call, void *ud)
{
    (void)ud;
    return waituntil_defer_sql(call, "INSERT INTO logs(method) VALUES (?)",
                               qb_null());
}

/* A read before the answer on the thread's own connection. */
static int h_count(web_call *call, void *ud)
{
    qb_conn *db = web_call_db(call);
    qb_query *q = NULL;
    qb_result *res = NULL;
    char body[32];
    int n;
    (void)ud;
    if (db == NULL)
        return WEB_EIO;
    if (qb_query_raw(&q, "SELECT count(*) FROM logs", 0, NULL,
                     QB_FETCH_ONE) != QB_OK)
        return WEB_ENOMEM;
    if (qb_exec(db, q, &res) != QB_OK) {
        qb_query_free(q);
        return WEB_EIO;
    }
    n = snprintf(body, sizeof body, "%" PRId64 "\n", qb_result_int(res, 0, 0));
    qb_result_free(res);
    qb_query_free(q);
    return web_respond(call, 200, NULL, body, (size_t)n);
}

/* Headers in, headers out. */
static int h_echo(web_call *call, void *ud)
{
    const char *v = web_request_header(web_call_request(call), "X-Test",
                                       NULL);
    const char *a = web_request_arg(web_call_request(call), "a", NULL);
    char body[128];
    int n = snprintf(body, sizeof body, "%s %s", v ? v : "-", a ? a : "-");
    (void)ud;
    if (web_add_header(call, "X-Echo", v ? v : "-") != WEB_OK)
        return WEB_EINVAL;
    return web_respond(call, 200, "text/x-echo", body, (size_t)n);
}

/* More header bytes than a FastCGI header block holds (4 KiB). */
static int h_fat(web_call *call, void *ud)
{
    char name[32], value[301];
    (void)ud;
    memset(value, 'v', 300);
    value[300] = '\0';
    for (int i = 0; i < 16; i++) {
        snprintf(name, sizeof name, "X-Fat-%d", i);
        if (web_add_header(call, name, value) != WEB_OK)
            return WEB_EINVAL;
    }
    return web_respond(call, 200, NULL, "fat\n", 4);
}

static web_handler_def handlers[16];
static size_t nhandlers;

static void setup_handlers(void)
{
    static const web_handler_def mine[] = {
        {"seed", h_seed, NULL},   {"many", h_many, NULL},
        {"broken", h_broken, NULL}, {"count", h_count, NULL},
        {"echo", h_echo, NULL},   {"fat", h_fat, NULL},
    };
    nhandlers = 0;
    for (size_t i = 0; i < app_nhandlers; i++)
        handlers[nhandlers++] = app_handlers[i];
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        handlers[nhandlers++] = mine[i];
}

static waituntil_test *open_conf(const char *name)
{
    waituntil_test *t = NULL;
    char err[512];
    const char *top = getenv("TOP_SRCDIR");
    char conf[4096];
    if (top == NULL)
        top = TOP_SRCDIR_DEFAULT;
    snprintf(conf, sizeof conf, "%s/tests/app/%s", top, name);
    setup_handlers();
    ck_assert_msg(waituntil_test_open(&t, conf, top, handlers, nhandlers, err,
                                      sizeof err) == WEB_OK,
                  "open: %s", err);
    return t;
}

static waituntil_test *open_kit(void)
{
    return open_conf("app.conf");
}

/* A bound TEXT value equals s. */
static void ck_text(const qb_value *v, const char *s)
{
    ck_assert_int_eq(v->type, QB_V_TEXT);
    ck_assert_uint_eq(v->u.b.n, strlen(s));
    ck_assert_int_eq(memcmp(v->u.b.p, s, v->u.b.n), 0);
}

/* Run sql on the kit's own connection (seed rows before a request). */
static void exec_sql(waituntil_test *t, const char *sql)
{
    qb_query *q = NULL;
    ck_assert_int_eq(qb_query_raw(&q, sql, 0, NULL, QB_FETCH_NONE), QB_OK);
    ck_assert_msg(qb_exec(waituntil_test_db(t), q, NULL) == QB_OK, "%s: %s",
                  sql, qb_errmsg(waituntil_test_db(t)));
    qb_query_free(q);
}

/* ---- declarative routes ------------------------------------------------- */

START_TEST(test_declarative_insert)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r = waituntil_test_get(t, "/log?x=1");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(r->body, "logged");
    ck_assert_str_eq(r->content_type, "text/plain");
    ck_assert_uint_eq(r->nwrites, 1);
    ck_assert_str_eq(r->writes[0].label, "/log");
    ck_assert_str_eq(r->writes[0].sql,
                     "INSERT INTO logs (method, path, timestamp) VALUES "
                     "(?1, ?2, ?3)");
    ck_assert_uint_eq(r->writes[0].nparams, 3);
    ck_text(&r->writes[0].params[0], "GET");
    ck_text(&r->writes[0].params[1], "/log");
    ck_assert_uint_eq(r->writes_ok, 1);
    ck_assert_uint_eq(r->writes_failed, 0);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM logs WHERE "
                                           "method = 'GET' AND path = '/log'"),
                     1);
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_json_body_and_require)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r;
    r = waituntil_test_post(t, "/users", "application/json",
                            "{\"id\":\"u1\",\"name\":\"Ada\"}");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 202);
    ck_assert_uint_eq(r->writes_ok, 1);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM users "
                                           "WHERE id = 'u1' AND name = 'Ada'"),
                     1);
    /* require: 400 naming the field, nothing written */
    r = waituntil_test_post(t, "/users", "application/json",
                            "{\"name\":\"Bob\"}");
    ck_assert_int_eq(r->status, 400);
    ck_assert_ptr_nonnull(strstr(r->body, "\"field\":\"id\""));
    ck_assert_str_eq(waituntil_test_header(r, "content-type"),
                     "application/json");
    ck_assert_uint_eq(r->nwrites, 0);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM users"), 1);
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_not_found_and_method)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r = waituntil_test_get(t, "/nowhere");
    ck_assert_int_eq(r->status, 404);
    r = waituntil_test_get(t, "/users");
    ck_assert_int_eq(r->status, 405);
    ck_assert_str_eq(waituntil_test_header(r, "Allow"), "POST");
    r = waituntil_test_request(t, "HEAD", "/log", NULL, NULL, 0);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(r->body_len, 0); /* HEAD: no body, the write runs */
    ck_assert_uint_eq(r->writes_ok, 1);
    waituntil_test_close(t);
}
END_TEST

/* ---- the program's own handlers (app/handlers.c) ------------------------ */

START_TEST(test_touch_handler)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r =
        waituntil_test_post(t, "/users/42/touch", NULL, NULL);
    ck_assert_int_eq(r->status, 202);
    ck_assert_str_eq(r->body, "{\"queued\":true}\n");
    ck_assert_uint_eq(r->nwrites, 1);
    ck_assert_str_eq(r->writes[0].debug_sql,
                     "INSERT INTO users (id, last_seen) VALUES ('42', "
                     "CURRENT_TIMESTAMP) ON CONFLICT (id) DO UPDATE SET "
                     "last_seen = CURRENT_TIMESTAMP");
    ck_assert_uint_eq(r->writes_ok, 1);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM users WHERE "
                                           "id = '42' AND last_seen IS NOT "
                                           "NULL"),
                     1);
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_log_sync_writes_before_answer)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r = waituntil_test_get(t, "/log_sync");
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(r->nwrites, 0); /* nothing deferred */
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM logs WHERE "
                                           "path = '/log_sync'"),
                     1);
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_status_builtin)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r = waituntil_test_get(t, "/_status");
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(strstr(r->body, "\"engine\":\"sqlite\""));
    waituntil_test_close(t);
}
END_TEST

/* ---- waituntil_defer_sql ------------------------------------------------- */

START_TEST(test_defer_sql_three_writes)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r;
    const char *hdrs[] = {"X-Session-Id: s1", NULL};
    exec_sql(t, "INSERT INTO users(id) VALUES ('7')");
    exec_sql(t, "INSERT INTO sessions(id, user_id) VALUES ('s1', '7')");

    r = waituntil_test_request(t, "POST", "/seed/7/visit", hdrs, NULL, 0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 202);
    ck_assert_uint_eq(r->nwrites, 3);
    ck_assert_str_eq(r->writes[0].sql, "INSERT INTO logs(method, path, "
                                       "timestamp) VALUES (?, ?, "
                                       "CURRENT_TIMESTAMP)");
    ck_assert_uint_eq(r->writes[0].nparams, 2);
    ck_assert_str_eq(r->writes[1].debug_sql,
                     "UPDATE users SET last_seen = CURRENT_TIMESTAMP WHERE "
                     "id = '7'");
    ck_assert_str_eq(r->writes[2].debug_sql,
                     "DELETE FROM sessions WHERE id = 's1'");
    ck_assert_str_eq(r->writes[0].label, "/seed/:id/visit");
    ck_assert_uint_eq(r->writes_ok, 3);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM logs"), 1);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM users WHERE "
                                           "last_seen IS NOT NULL"),
                     1);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM sessions"), 0);
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_defer_sql_too_many_drops_all)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r = waituntil_test_post(t, "/many", NULL,
                                                           NULL);
    ck_assert_int_eq(r->status, web_http_status(WEB_ETOOMANY));
    ck_assert_uint_eq(r->nwrites, 0);
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_failed_write_is_counted_and_logged)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r;
    waituntil_test_log_clear(t);
    r = waituntil_test_post(t, "/broken", NULL, NULL);
    ck_assert_int_eq(r->status, 204);
    ck_assert_uint_eq(r->nwrites, 1);
    ck_assert_uint_eq(r->writes_ok, 0);
    ck_assert_uint_eq(r->writes_failed, 1);
    ck_assert_ptr_nonnull(strstr(waituntil_test_log(t), "task_failed"));
    ck_assert_ptr_nonnull(strstr(waituntil_test_log(t), "NOT NULL"));
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_defer_helpers_refuse_bad_arguments)
{
    qb_query *q = NULL;
    ck_assert_int_eq(waituntil_defer_sqlv(NULL, "SELECT 1", NULL, 0),
                     WEB_EINVAL);
    ck_assert_int_eq(qb_query_raw(&q, "SELECT 1", 0, NULL, QB_FETCH_NONE),
                     QB_OK);
    /* takes q even on failure (ASan/valgrind: no leak) */
    ck_assert_int_eq(waituntil_defer_query(NULL, q), WEB_EINVAL);
}
END_TEST

/* ---- web_call_db and headers ------------------------------------------- */

START_TEST(test_call_db_reads_before_answer)
{
    waituntil_test *t = open_kit();
    const waituntil_test_response *r;
    ck_assert_int_eq(waituntil_test_get(t, "/log")->writes_ok, 1);
    ck_assert_int_eq(waituntil_test_get(t, "/log")->writes_ok, 1);
    r = waituntil_test_get(t, "/count");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(r->body, "2\n");
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_headers_and_args)
{
    waituntil_test *t = open_kit();
    const char *hdrs[] = {"X-Test: hi there", NULL};
    const waituntil_test_response *r =
        waituntil_test_request(t, "GET", "/echo?a=b%20c", hdrs, NULL, 0);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(r->body, "hi there b c");
    ck_assert_str_eq(r->content_type, "text/x-echo");
    ck_assert_str_eq(waituntil_test_header(r, "x-echo"), "hi there");
    ck_assert_ptr_null(waituntil_test_header(r, "X-Missing"));
    waituntil_test_close(t);
}
END_TEST

/* ---- answers the server makes after the handler ------------------------ */

START_TEST(test_refused_writes_answer_503_like_the_server)
{
    waituntil_test *t = open_conf("refuse.conf");
    const waituntil_test_response *r;
    /* Twice: the second request reuses the kit after a refusal (and
     * ASan's leak check sees the first one's copies freed). */
    for (int i = 0; i < 2; i++) {
        r = waituntil_test_post(t, "/two", "application/json", "{}");
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(r->status, 503);
        ck_assert_str_eq(waituntil_test_header(r, "Retry-After"), "1");
        ck_assert_str_eq(r->content_type, "application/json");
        ck_assert_ptr_nonnull(strstr(r->body, "\"status\":503"));
        ck_assert_uint_eq(r->nwrites, 0); /* nothing promised */
        ck_assert_uint_eq(r->writes_ok, 0);
    }
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM logs"), 0);
    waituntil_test_close(t);
}
END_TEST

START_TEST(test_headers_too_large_answer_500_like_the_server)
{
    waituntil_test *t = open_conf("refuse.conf");
    const waituntil_test_response *r = waituntil_test_get(t, "/fat");
    ck_assert_int_eq(r->status, 500);
    ck_assert_uint_eq(r->nheaders, 0);
    ck_assert_str_eq(r->body, "500 response headers too large\n");
    waituntil_test_close(t);
}
END_TEST

/* ---- the kit's own errors ----------------------------------------------- */

START_TEST(test_open_unknown_handler)
{
    waituntil_test *t = NULL;
    char err[512];
    const char *top = getenv("TOP_SRCDIR");
    char conf[4096];
    if (top == NULL)
        top = TOP_SRCDIR_DEFAULT;
    snprintf(conf, sizeof conf, "%s/tests/app/app.conf", top);
    /* only the program's handlers: "seed" & co are unknown */
    ck_assert_int_ne(waituntil_test_open(&t, conf, top, app_handlers,
                                         app_nhandlers, err, sizeof err),
                     WEB_OK);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, "seed") != NULL, "%s", err);
}
END_TEST

START_TEST(test_open_missing_conf)
{
    waituntil_test *t = NULL;
    char err[512];
    ck_assert_int_ne(waituntil_test_open(&t, "/nonexistent/x.conf", NULL,
                                         NULL, 0, err, sizeof err),
                     WEB_OK);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, "/nonexistent/x.conf") != NULL, "%s", err);
}
END_TEST

static Suite *app_suite(void)
{
    Suite *s = suite_create("app");
    TCase *tc = tcase_create("kit");
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_test(tc, test_declarative_insert);
    tcase_add_test(tc, test_json_body_and_require);
    tcase_add_test(tc, test_not_found_and_method);
    tcase_add_test(tc, test_touch_handler);
    tcase_add_test(tc, test_log_sync_writes_before_answer);
    tcase_add_test(tc, test_status_builtin);
    tcase_add_test(tc, test_defer_sql_three_writes);
    tcase_add_test(tc, test_defer_sql_too_many_drops_all);
    tcase_add_test(tc, test_failed_write_is_counted_and_logged);
    tcase_add_test(tc, test_defer_helpers_refuse_bad_arguments);
    tcase_add_test(tc, test_call_db_reads_before_answer);
    tcase_add_test(tc, test_headers_and_args);
    tcase_add_test(tc, test_refused_writes_answer_503_like_the_server);
    tcase_add_test(tc, test_headers_too_large_answer_500_like_the_server);
    tcase_add_test(tc, test_open_unknown_handler);
    tcase_add_test(tc, test_open_missing_conf);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(app_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
