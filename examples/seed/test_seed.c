/* test_seed.c -- the seed's handlers and routes, tested with the kit
 * (<waituntil/test.h>): no nginx, no socket, a fresh database per test. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <waituntil/test.h>

#include "seed.h"

static waituntil_test *t;

static void setup(void)
{
    char err[512];
    ck_assert_msg(waituntil_test_open(&t, "seed.conf", ".", seed_handlers,
                                      seed_nhandlers, err, sizeof err)
                      == WEB_OK, "%s", err);
}

static void teardown(void)
{
    waituntil_test_close(t);
}

static void exec_sql(const char *sql)
{
    qb_query *q = NULL;
    ck_assert_int_eq(qb_query_raw(&q, sql, 0, NULL, QB_FETCH_NONE), QB_OK);
    ck_assert_int_eq(qb_exec(waituntil_test_db(t), q, NULL), QB_OK);
    qb_query_free(q);
}

START_TEST(log_writes_after_answer)
{
    const waituntil_test_response *r = waituntil_test_get(t, "/log/home");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(r->body, "logged\n");
    ck_assert_uint_eq(r->nwrites, 1);
    ck_assert_str_eq(r->writes[0].debug_sql,
                     "INSERT INTO logs (method, path, timestamp) VALUES "
                     "('GET', '/log/home', CURRENT_TIMESTAMP)");
    ck_assert_uint_eq(r->writes_ok, 1);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM logs "
                                           "WHERE path = '/log/home'"), 1);
}
END_TEST

START_TEST(seen_updates_last_seen)
{
    const waituntil_test_response *r;
    exec_sql("INSERT INTO users (id, name) VALUES ('42', 'Ada')");
    r = waituntil_test_post(t, "/users/42/seen", NULL, NULL);
    ck_assert_int_eq(r->status, 202);
    ck_assert_str_eq(r->writes[0].debug_sql,
                     "UPDATE users SET last_seen = CURRENT_TIMESTAMP "
                     "WHERE id = '42'");
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM users WHERE "
                                           "last_seen IS NOT NULL"), 1);
}
END_TEST

START_TEST(logout_deletes_the_session)
{
    const char *hdrs[] = {"X-Session-Id: s1", NULL};
    const waituntil_test_response *r;
    exec_sql("INSERT INTO sessions (id, user_id) VALUES ('s1', '42'), "
             "('s2', '42')");
    r = waituntil_test_request(t, "POST", "/logout", hdrs, NULL, 0);
    ck_assert_int_eq(r->status, 200);
    ck_assert_uint_eq(r->writes_ok, 1);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM sessions"),
                     1);
    /* without the header: 400, nothing written */
    r = waituntil_test_post(t, "/logout", NULL, NULL);
    ck_assert_int_eq(r->status, 400);
    ck_assert_uint_eq(r->nwrites, 0);
}
END_TEST

START_TEST(declarative_upsert)
{
    const waituntil_test_response *r;
    r = waituntil_test_post(t, "/users", "application/json",
                            "{\"id\":\"7\",\"name\":\"Grace\"}");
    ck_assert_int_eq(r->status, 202);
    r = waituntil_test_post(t, "/users", "application/json",
                            "{\"id\":\"7\",\"name\":\"Grace H.\"}");
    ck_assert_uint_eq(r->writes_ok, 1);
    ck_assert_int_eq(waituntil_test_int(t, "SELECT count(*) FROM users "
                                           "WHERE name = 'Grace H.'"), 1);
    r = waituntil_test_post(t, "/users", "application/json", "{}");
    ck_assert_int_eq(r->status, 400); /* require $body_id */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("seed");
    TCase *tc = tcase_create("handlers");
    SRunner *sr;
    int failed;
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, log_writes_after_answer);
    tcase_add_test(tc, seen_updates_last_seen);
    tcase_add_test(tc, logout_deletes_the_session);
    tcase_add_test(tc, declarative_upsert);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
