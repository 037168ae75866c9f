/*
 * check_web_server.c -- lib/web's server side: the log, declarative
 * queries, the listening socket, and whole requests sent straight to the
 * app over FastCGI (no nginx in between, so nothing is filtered).
 */
#define _GNU_SOURCE
#include <check.h>
#include <jansson.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sched.h>
#include <unistd.h>

#include "fcgi_client.h"
#include "testutil.h"
#include "web_server.h"

/* ---- web_log_q ----------------------------------------------------------- */

static const struct {
    const char *in;
    const char *out;
} q_cases[] = {
    {"plain", "plain"},
    {"", "\"\""},
    {"two words", "\"two words\""},
    {"a=b", "\"a=b\""},
    {"say \"hi\"", "\"say \\\"hi\\\"\""},
    {"back\\slash", "\"back\\\\slash\""},
    {"line\nbreak", "\"line\\x0abreak\""},
    {NULL, "-"},
};

START_TEST(log_quote)
{
    char buf[64];
    ck_assert_str_eq(web_log_q(buf, sizeof buf, q_cases[_i].in),
                     q_cases[_i].out);
}
END_TEST

START_TEST(log_quote_truncates)
{
    char buf[16];
    char in[100];
    memset(in, 'x', sizeof in - 1);
    in[sizeof in - 1] = ' ';
    in[sizeof in - 2] = '\0';
    web_log_q(buf, sizeof buf, in);
    ck_assert_uint_lt(strlen(buf), sizeof buf);
    ck_assert_str_eq(buf + strlen(buf) - 3, "...");
}
END_TEST

START_TEST(log_file_levels_and_reopen)
{
    char *dir = tu_mkdtemp("wu-log");
    char path[512], moved[512], eb[256];
    web_log *log = NULL;
    char *text;

    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/app.log", dir);
    snprintf(moved, sizeof moved, "%s/app.log.1", dir);
    ck_assert_int_eq(web_log_open(&log, path, WEB_LOG_INFO, eb, sizeof eb),
                     WEB_OK);
    web_logf(log, WEB_LOG_DEBUG, "hidden", "x=1");
    web_logf(log, WEB_LOG_WARN, "shown", "x=%d", 2);
    ck_assert_int_eq(rename(path, moved), 0);
    ck_assert_int_eq(web_log_reopen(log), WEB_OK);
    web_logf(log, WEB_LOG_INFO, "after", "y=3");
    web_log_close(log);

    text = tu_read_file(moved, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_null(strstr(text, "hidden"));
    ck_assert_ptr_nonnull(strstr(text, "level=warn event=shown x=2\n"));
    ck_assert_ptr_nonnull(strstr(text, "ts=20"));
    free(text);
    text = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "level=info event=after y=3\n"));
    free(text);
    ck_assert_int_eq(web_log_open(&log, "/nonexistent-dir/x.log", WEB_LOG_INFO,
                                  eb, sizeof eb),
                     WEB_EIO);
    ck_assert_ptr_nonnull(strstr(eb, "/nonexistent-dir/x.log"));
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A log whose writes fail (disk full) counts every line it could not
 * write, and says how many as soon as writing works again. */
START_TEST(log_dropped_counted_then_said)
{
    char *dir = tu_mkdtemp("wu-logdrop");
    char path[512], eb[256];
    web_log *log = NULL;
    char *text;
    int full, saved, file;

    ck_assert_ptr_nonnull(dir);
    full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (full < 0) { /* nothing here to fail writes with */
        tu_rmtree(dir);
        free(dir);
        return;
    }
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(file, 0);
    ck_assert_int_eq(web_log_open(&log, "stderr", WEB_LOG_INFO, eb, sizeof eb),
                     WEB_OK);
    saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_eq(dup2(full, STDERR_FILENO), STDERR_FILENO);
    web_logf(log, WEB_LOG_ERROR, "lost", "n=%d", 1);
    web_logf(log, WEB_LOG_ERROR, "lost", "n=%d", 2);
    web_logf(log, WEB_LOG_ERROR, "lost", "n=%d", 3);
    ck_assert_uint_eq(web_log_dropped(log), 3);
    ck_assert_int_eq(dup2(file, STDERR_FILENO), STDERR_FILENO);
    web_logf(log, WEB_LOG_INFO, "back", "n=%d", 4);
    ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    close(file);
    close(full);
    ck_assert_uint_eq(web_log_dropped(log), 3);
    web_log_close(log);
    text = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "level=warn event=log_dropped count=3\nts=") !=
                      NULL, "%s", text);
    ck_assert_ptr_nonnull(strstr(text, "level=info event=back n=4\n"));
    ck_assert_ptr_null(strstr(text, "n=1"));
    free(text);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- declarative queries -------------------------------------------------- */

static const char *defer_conf =
    "route POST /a {\n"
    "  respond 200 \"ok\";\n"
    "  defer insert logs { method $request_method; path $uri; ts raw:CURRENT_TIMESTAMP; }\n"
    "  defer update users { if $http_x_user_id; set last_seen raw:CURRENT_TIMESTAMP;"
    " set name $arg_name; where id $http_x_user_id; }\n"
    "  defer delete sessions { where id $http_x_session_id; where user_id $arg_u; }\n"
    "  defer upsert users { id $arg_id; name $arg_name; conflict id; set name $arg_name; }\n"
    "}\n";

static const char *defer_sql[] = {
    "INSERT INTO logs (method, path, ts) VALUES (?1, ?2, CURRENT_TIMESTAMP)",
    "UPDATE users SET last_seen = CURRENT_TIMESTAMP, name = ?2 WHERE id = ?1",
    "DELETE FROM sessions WHERE (id = ?) AND (user_id = ?)",
    "INSERT INTO users (id, name) VALUES (?2, ?3) ON CONFLICT (id) DO UPDATE SET name = ?1",
};

static void text_values(const web_column *c, size_t n, web_value *v)
{
    for (size_t i = 0; i < n; i++) {
        memset(&v[i], 0, sizeof v[i]);
        if (c[i].src.kind == WEB_SRC_RAW) {
            v[i].type = WEB_V_RAW;
            v[i].s = c[i].src.text;
        } else {
            v[i].type = WEB_V_TEXT;
            v[i].s = c[i].column;
            v[i].len = strlen(c[i].column);
        }
    }
}

START_TEST(defer_build_kinds)
{
    web_conf *conf = NULL;
    char eb[256];
    const web_defer *d;
    web_value cols[8], sets[8], wheres[8];
    qb_query *q = NULL;

    ck_assert_int_eq(web_conf_parse(defer_conf, strlen(defer_conf), "t.conf",
                                    &conf, eb, sizeof eb),
                     WEB_OK);
    d = &conf->routes[0].defers[_i];
    text_values(d->cols, d->ncols, cols);
    text_values(d->sets, d->nsets, sets);
    text_values(d->wheres, d->nwheres, wheres);
    ck_assert_int_eq(web_defer_build(d, QB_DIALECT_SQLITE, cols, sets, wheres,
                                     &q, eb, sizeof eb),
                     QB_OK);
    ck_assert_str_eq(qb_query_sql(q), defer_sql[_i]);
    /* Every request value is a bound parameter, raw: sources none. */
    for (size_t i = 0; i < qb_query_nparams(q); i++)
        ck_assert_int_eq(qb_query_params(q)[i].type, QB_V_TEXT);
    qb_query_free(q);
    web_conf_free(conf);
}
END_TEST

/* A template is the same statement, built once. */
START_TEST(defer_template_kinds)
{
    web_conf *conf = NULL;
    web_defer_tpl *t = NULL;
    char eb[256];

    ck_assert_int_eq(web_conf_parse(defer_conf, strlen(defer_conf), "t.conf",
                                    &conf, eb, sizeof eb),
                     WEB_OK);
    ck_assert_int_eq(web_defer_tpl_create(&conf->routes[0].defers[_i],
                                          QB_DIALECT_SQLITE, &t, eb, sizeof eb),
                     QB_OK);
    ck_assert_str_eq(web_defer_tpl_sql(t), defer_sql[_i]);
    ck_assert_int_eq(qb_query_dialect(web_defer_tpl_query(t)),
                     QB_DIALECT_SQLITE);
    web_defer_tpl_free(t);
    web_conf_free(conf);
}
END_TEST

/* The same blocks for a PostgreSQL pool: $N placeholders, numbered as the
 * SQLite ones (so the marker map is the same), raw: text as written. */
static const char *defer_sql_pg[] = {
    "INSERT INTO logs (method, path, ts) VALUES ($1, $2, CURRENT_TIMESTAMP)",
    "UPDATE users SET last_seen = CURRENT_TIMESTAMP, name = $2 WHERE id = $1",
    "DELETE FROM sessions WHERE (id = $1) AND (user_id = $2)",
    "INSERT INTO users (id, name) VALUES ($2, $3) ON CONFLICT (id) DO UPDATE SET name = $1",
};

START_TEST(defer_template_kinds_pg)
{
    web_conf *conf = NULL;
    web_defer_tpl *t = NULL, *ts = NULL;
    const web_defer *d;
    char eb[256];
    qb_value vals[8];
    qb_query *q = NULL;
    size_t np;

    ck_assert_int_eq(web_conf_parse(defer_conf, strlen(defer_conf), "t.conf",
                                    &conf, eb, sizeof eb),
                     WEB_OK);
    d = &conf->routes[0].defers[_i];
    ck_assert_int_eq(web_defer_tpl_create(d, QB_DIALECT_POSTGRES, &t, eb,
                                          sizeof eb),
                     QB_OK);
    ck_assert_str_eq(web_defer_tpl_sql(t), defer_sql_pg[_i]);
    ck_assert_ptr_null(strchr(web_defer_tpl_sql(t), '?'));
    ck_assert_int_eq(qb_query_dialect(web_defer_tpl_query(t)),
                     QB_DIALECT_POSTGRES);
    /* Same parameters, in the same order, as the SQLite template. */
    ck_assert_int_eq(web_defer_tpl_create(d, QB_DIALECT_SQLITE, &ts, eb,
                                          sizeof eb),
                     QB_OK);
    np = qb_query_nparams(web_defer_tpl_query(t));
    ck_assert_uint_eq(np, qb_query_nparams(web_defer_tpl_query(ts)));
    ck_assert_uint_le(np, 8);
    for (size_t j = 0; j < np; j++) {
        ck_assert_int_eq(qb_query_params(web_defer_tpl_query(t))[j].u.i,
                         qb_query_params(web_defer_tpl_query(ts))[j].u.i);
        vals[j] = qb_text("v");
    }
    /* What a request makes of it (qb_query_rebind, as action.c does)
     * stays in the pool's dialect. */
    ck_assert_int_eq(qb_query_rebind(web_defer_tpl_query(t), np, vals, &q),
                     QB_OK);
    ck_assert_int_eq(qb_query_dialect(q), QB_DIALECT_POSTGRES);
    ck_assert_str_eq(qb_query_sql(q), defer_sql_pg[_i]);
    qb_query_free(q);
    web_defer_tpl_free(ts);
    web_defer_tpl_free(t);
    web_conf_free(conf);
}
END_TEST

/* Every defer block of the shipped conf builds for PostgreSQL; a dialect
 * the builder does not know is refused, not silently taken as SQLite. */
START_TEST(defer_template_shipped_pg)
{
    web_conf *conf = NULL;
    char eb[512];
    size_t built = 0;

    ck_assert_int_eq(web_conf_load(tu_data_path("../conf/waituntil.conf"),
                                   &conf, eb, sizeof eb),
                     WEB_OK);
    for (size_t r = 0; r < conf->nroutes; r++)
        for (size_t k = 0; k < conf->routes[r].ndefers; k++) {
            web_defer_tpl *t = NULL;
            ck_assert_msg(web_defer_tpl_create(&conf->routes[r].defers[k],
                                               QB_DIALECT_POSTGRES, &t, eb,
                                               sizeof eb) == QB_OK,
                          "%s", eb);
            ck_assert_ptr_null(strchr(web_defer_tpl_sql(t), '?'));
            web_defer_tpl_free(t);
            built++;
        }
    ck_assert_uint_ge(built, 3);
    {
        web_defer_tpl *t = (web_defer_tpl *)1;
        ck_assert_int_ne(web_defer_tpl_create(&conf->routes[0].defers[0],
                                              (qb_dialect)7, &t, eb,
                                              sizeof eb),
                         QB_OK);
        ck_assert_ptr_null(t);
    }
    web_conf_free(conf);
}
END_TEST


/* ---- the access log ------------------------------------------------------ */

static web_access_rec arec(const char *method, const char *uri,
                           const char *rid)
{
    web_access_rec r;
    memset(&r, 0, sizeof r);
    r.time.tv_sec = 1764840600; /* 2025-12-04T09:30:00Z */
    r.time.tv_nsec = 123000000;
    r.method = method;
    r.uri = uri;
    r.request_id = rid;
    r.status = 204;
    r.bytes = 12;
    r.duration_ns = 1234567;
    r.writes = 2;
    return r;
}

static const struct {
    const char *uri;
    int redact;
    const char *want; /* the uri= value */
} acc_cases[] = {
    {"/log?page=%2Fhome", 0, "\"/log?page=%2Fhome\""}, /* '=': quoted */
    {"/users/u1/touch", 0, "/users/u1/touch"},
    {"/a b", 0, "\"/a b\""},
    {"/x?q=\"1\"", 0, "\"/x?q=\\\"1\\\"\""},
    {"/nl\nstatus=500 request_id=fake", 0,
     "\"/nl\\x0astatus=500 request_id=fake\""},
    {"/bs\\\x7f\xc3\xa9", 0, "\"/bs\\\\\\x7f\\xc3\\xa9\""},
    {"/log?email=ann%40example.org", 1, "\"/log?(redacted len=23)\""},
    {"/log", 1, "/log"},
    {NULL, 0, "-"},
};

START_TEST(access_format_escapes)
{
    char line[WEB_ACCESS_LINE_MAX], want[512];
    web_access_rec r = arec("POST", acc_cases[_i].uri, "abc123");
    size_t n = web_access_format(line, sizeof line, &r, acc_cases[_i].redact);

    snprintf(want, sizeof want,
             "ts=2025-12-04T09:30:00.123Z event=access method=POST uri=%s "
             "status=204 bytes=12 duration_ms=1.235 writes=2 "
             "request_id=abc123\n",
             acc_cases[_i].want);
    ck_assert_str_eq(line, want);
    ck_assert_uint_eq(n, strlen(want));
    /* one line, whatever the uri held */
    ck_assert_ptr_eq(strchr(line, '\n'), line + n - 1);
}
END_TEST

START_TEST(access_format_bounds)
{
    char line[WEB_ACCESS_LINE_MAX], small[100];
    char *uri = malloc(10000);
    web_access_rec r;
    size_t n;

    ck_assert_ptr_nonnull(uri);
    memset(uri, '"', 9999); /* each byte escapes to two */
    uri[0] = '/';
    uri[9999] = '\0';
    r = arec(NULL, uri, NULL);
    r.writes = 0;
    r.writes_inline = 3;
    n = web_access_format(line, sizeof line, &r, 0);
    ck_assert_uint_lt(n, sizeof line);
    ck_assert_ptr_eq(strchr(line, '\n'), line + n - 1);
    ck_assert_ptr_nonnull(strstr(line, "method=- uri=\"/\\\""));
    ck_assert_ptr_nonnull(strstr(line, "...\" status=204"));
    ck_assert_ptr_nonnull(strstr(line, " writes=0 writes_inline=3 "
                                       "request_id=-\n"));
    /* too small a buffer: nothing, never a cut line */
    ck_assert_uint_eq(web_access_format(small, sizeof small, &r, 0), 0);
    ck_assert_str_eq(small, "");
    free(uri);
}
END_TEST

/* Writers never wait for a reopen and no line is lost or torn across
 * it: every line lands whole in the old file or the new one.  Each writer
 * goes on until it has seen the reopen done, then writes 10 more (which
 * must be in the new file). */
enum { ACC_THREADS = 4, ACC_AFTER = 10, ACC_CAP = 200000 };

static atomic_int acc_rotated;

struct acc_writer {
    web_access_log *al;
    int id;
};

static void *acc_write_main(void *arg)
{
    struct acc_writer *w = arg;
    char rid[32];
    int i, after = -1;
    for (i = 0; i < ACC_CAP && after < ACC_AFTER; i++) {
        web_access_rec r;
        snprintf(rid, sizeof rid, "w%d-%d", w->id, i);
        r = arec("GET", "/x", rid);
        web_access_log_write(w->al, &r, 0);
        if (after >= 0)
            after++;
        else if (atomic_load(&acc_rotated))
            after = 0;
    }
    return NULL;
}

static int count_whole_lines(const char *text)
{
    int n = 0;
    const char *p = text;
    while (p != NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert_msg(strncmp(p, "ts=", 3) == 0, "torn line: %.80s", p);
        ck_assert_msg(memmem(p, (size_t)(nl - p), " request_id=w", 13) !=
                          NULL, "torn line: %.80s", p);
        n++;
        p = nl + 1;
    }
    return n;
}

START_TEST(access_log_reopen_under_writers)
{
    char *dir = tu_mkdtemp("wu-acc");
    char path[512], moved[512], eb[256];
    web_access_log *al = NULL;
    pthread_t th[ACC_THREADS];
    struct acc_writer w[ACC_THREADS];
    char *a, *b;
    int i, total;

    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/access.log", dir);
    snprintf(moved, sizeof moved, "%s/access.log.1", dir);
    ck_assert_int_eq(web_access_log_open(&al, path, NULL, eb, sizeof eb),
                     WEB_OK);
    for (i = 0; i < ACC_THREADS; i++) {
        w[i].al = al;
        w[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, acc_write_main, &w[i]),
                         0);
    }
    /* once some lines are in, rotate under the writers */
    {
        int64_t end = tu_now_ms() + TU_WAIT_MS;
        while (web_access_log_written(al) < 100 && tu_now_ms() < end)
            sched_yield();
    }
    ck_assert_uint_ge(web_access_log_written(al), 100);
    ck_assert_int_eq(rename(path, moved), 0);
    ck_assert_int_eq(web_access_log_reopen(al), WEB_OK);
    atomic_store(&acc_rotated, 1);
    for (i = 0; i < ACC_THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_uint_eq(web_access_log_dropped(al), 0);
    a = tu_read_file(moved, NULL);
    b = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    total = count_whole_lines(a) + count_whole_lines(b);
    ck_assert_int_eq(total, (int)web_access_log_written(al));
    ck_assert_int_ge(count_whole_lines(a), 100);
    ck_assert_int_ge(count_whole_lines(b), ACC_THREADS * ACC_AFTER);
    web_access_log_close(al);
    free(a);
    free(b);
    ck_assert_int_eq(web_access_log_open(&al, "/nonexistent-dir/a.log", NULL,
                                         eb, sizeof eb), WEB_EIO);
    ck_assert_ptr_nonnull(strstr(eb, "/nonexistent-dir/a.log"));
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A failing access log (disk full) is counted and said once on the
 * main log, never retried. */
START_TEST(access_log_failures_counted)
{
    char *dir = tu_mkdtemp("wu-accfull");
    char path[512], eb[256];
    web_log *log = NULL;
    web_access_log *al = NULL;
    web_access_rec r = arec("GET", "/", "r");
    char *text;
    int i;

    ck_assert_ptr_nonnull(dir);
    if (access("/dev/full", W_OK) != 0) {
        tu_rmtree(dir);
        free(dir);
        return;
    }
    snprintf(path, sizeof path, "%s/main.log", dir);
    ck_assert_int_eq(web_log_open(&log, path, WEB_LOG_INFO, eb, sizeof eb),
                     WEB_OK);
    ck_assert_int_eq(web_access_log_open(&al, "/dev/full", log, eb, sizeof eb),
                     WEB_OK);
    for (i = 0; i < 5; i++)
        web_access_log_write(al, &r, 0);
    ck_assert_uint_eq(web_access_log_dropped(al), 5);
    ck_assert_uint_eq(web_access_log_written(al), 0);
    web_access_log_close(al);
    web_log_close(log);
    text = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "event=access_log_failed errno=28 "));
    ck_assert_ptr_null(strstr(strstr(text, "access_log_failed") + 1,
                              "access_log_failed"));
    free(text);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- a whole server, spoken to over FastCGI ------------------------------- */

struct fixture {
    char *dir;
    char sock[256];
    char db[256];
    web_conf *conf;
    defer_pool *pool;
    web_server *srv;
};

static const char *server_conf =
    "server { threads 2; max_body 4k; max_args 100; log stderr; log_level error; }\n"
    "pool { workers 1; queue 64; }\n"
    "route GET /hello { respond 200 text/plain \"hello\"; }\n"
    "route any /log { respond 200 \"logged\";\n"
    "  defer insert logs { method $request_method; path $uri; timestamp $time_iso; } }\n"
    "route GET /_status { handler status; }\n"
    "route GET /_status_bare { handler status_bare; }\n"
    "route GET /bighdr { handler bighdr; }\n";

/* What the status handler says about the program: a quote and a
 * backslash, to see them escaped in both formats. */
static web_status_info status_info = {"9.9.9-test", "3.0.0 \"q\\"};

/* Refuses framing headers, then adds more header bytes than fit. */
static int h_bighdr(web_call *call, void *ud)
{
    static char big[3001];
    (void)ud;
    if (web_add_header(call, "content-length", "1") != WEB_EINVAL ||
        web_add_header(call, "Status", "200") != WEB_EINVAL ||
        web_add_header(call, "X-Bad", "a\r\nInjected: 1") != WEB_EINVAL)
        return web_respond(call, 418, NULL, "framing header accepted", 23);
    memset(big, 'h', sizeof big - 1);
    web_add_header(call, "X-Big-1", big);
    web_add_header(call, "X-Big-2", big);
    return web_respond(call, 200, NULL, "BODYLINE: injected\r\n", 20);
}

/* Reads the body field "a" twice (the parse must happen once) and
 * answers its text; a parse error goes back to the server as it is. */
static int h_field(web_call *call, void *ud)
{
    web_value v1, v2;
    int rc;
    (void)ud;
    rc = web_request_body_field(web_call_request(call), "a", &v1);
    if (rc != WEB_OK)
        return rc;
    rc = web_request_body_field(web_call_request(call), "a", &v2);
    if (rc != WEB_OK)
        return rc;
    if (v1.type != WEB_V_TEXT || v2.type != WEB_V_TEXT || v1.s != v2.s)
        return web_respond(call, 200, NULL, "absent", 6);
    return web_respond(call, 200, NULL, v1.s, v1.len);
}

/* Never looks at the body. */
static int h_nofield(web_call *call, void *ud)
{
    (void)ud;
    return web_respond(call, 200, NULL, "nofield", 7);
}

/* web_call_db or 503. */
static int h_calldb(web_call *call, void *ud)
{
    (void)ud;
    if (web_call_db(call) == NULL)
        return web_respond(call, 503, NULL, "no db", 5);
    return web_respond(call, 200, NULL, "db", 2);
}

/* Counts its calls (the server runs in the test's process). */
static int counted_calls;
static int h_counted(web_call *call, void *ud)
{
    (void)ud;
    counted_calls++;
    return web_respond(call, 200, NULL, "counted", 7);
}

/* Set by a test before start_server: the server's access log and a
 * capture of the pool's log lines (NULL: none, the pool logs errors to
 * stderr). */
static web_access_log *g_fix_access;
typedef struct cap {
    pthread_mutex_t mu;
    char buf[65536];
    size_t len;
} cap;
static cap g_cap = {PTHREAD_MUTEX_INITIALIZER, "", 0};
static int g_fix_capture;
/* Set by a test before start_server: journal level write, the files
 * next to the database (app.db.journal.<seq>). */
static int g_fix_journal;
static char g_fix_jpath[300];
static const char *g_fix_call_db; /* web_server_config.db_path */
static web_log *g_fix_log;        /* web_server_config.log */

static void cap_line(void *ud, int level, const char *line)
{
    cap *c = ud;
    (void)level;
    pthread_mutex_lock(&c->mu);
    c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len,
                               "%s\n", line);
    if (c->len >= sizeof c->buf)
        c->len = sizeof c->buf - 1;
    pthread_mutex_unlock(&c->mu);
}

/* start_server with the database file named dbname in the test's dir. */
static void start_server_db(struct fixture *f, const char *conf_text,
                            const char *dbname)
{
    char eb[512];
    defer_config pc;
    sqlite3 *db;
    web_server_config sc;
    web_handler_def h[] = {{"status", web_handler_status, &status_info},
                           {"status_bare", web_handler_status, NULL},
                           {"bighdr", h_bighdr, NULL},
                           {"field", h_field, NULL},
                           {"nofield", h_nofield, NULL},
                           {"counted", h_counted, NULL},
                           {"calldb", h_calldb, NULL}};

    memset(f, 0, sizeof *f);
    f->dir = tu_mkdtemp("wu-srv");
    ck_assert_ptr_nonnull(f->dir);
    snprintf(f->sock, sizeof f->sock, "%s/app.sock", f->dir);
    snprintf(f->db, sizeof f->db, "%s/%s", f->dir, dbname);
    ck_assert_int_eq(sqlite3_open(f->db, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db,
                                  "CREATE TABLE logs (id INTEGER PRIMARY KEY, "
                                  "method TEXT, path TEXT, timestamp TEXT)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(web_conf_parse(conf_text, strlen(conf_text), "t.conf",
                                    &f->conf, eb, sizeof eb),
                     WEB_OK);
    defer_config_init(&pc);
    pc.workers = f->conf->pool.workers;
    pc.queue_capacity = f->conf->pool.queue;
    pc.db_path = f->db;
    pc.log_level = DEFER_LOG_ERROR;
    if (g_fix_journal) {
        snprintf(g_fix_jpath, sizeof g_fix_jpath, "%s.journal", f->db);
        pc.journal = DEFER_JOURNAL_WRITE;
        pc.journal_path = g_fix_jpath;
    }
    if (g_fix_capture) {
        pc.log = cap_line;
        pc.log_ud = &g_cap;
    }
    pc.log_values = f->conf->server.log_values == WEB_LOG_VALUES_REDACT
                        ? DEFER_VALUES_REDACT
                    : f->conf->server.log_values == WEB_LOG_VALUES_OFF
                        ? DEFER_VALUES_OFF
                        : DEFER_VALUES_ON;
    ck_assert_int_eq(defer_pool_create(&f->pool, &pc, eb, sizeof eb), DEFER_OK);
    memset(&sc, 0, sizeof sc);
    sc.conf = f->conf;
    sc.pool = f->pool;
    sc.handlers = h;
    sc.nhandlers = sizeof h / sizeof h[0];
    sc.access_log = g_fix_access;
    sc.db_path = g_fix_call_db;
    sc.log = g_fix_log;
    {
        char listen[300];
        snprintf(listen, sizeof listen, "unix:%s", f->sock);
        sc.listen = listen;
        ck_assert_int_eq(web_server_create(&f->srv, &sc, eb, sizeof eb), WEB_OK);
    }
    ck_assert_int_eq(web_server_start(f->srv), WEB_OK);
}

static void start_server(struct fixture *f, const char *conf_text)
{
    start_server_db(f, conf_text, "app.db");
}

/* Stop the server, drain the pool (everything admitted must land). */
static void stop_server(struct fixture *f)
{
    web_server_free(f->srv);
    f->srv = NULL;
    ck_assert_int_eq(defer_pool_shutdown(f->pool, TU_WAIT_MS), DEFER_OK);
    defer_pool_destroy(f->pool);
    f->pool = NULL;
    web_conf_free(f->conf);
    f->conf = NULL;
}

static void cleanup(struct fixture *f)
{
    tu_rmtree(f->dir);
    free(f->dir);
}

static int count_rows(const char *dbpath)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_open(dbpath, &db) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM logs", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

START_TEST(server_socket_mode_and_unlink)
{
    struct fixture f;
    struct stat st;
    start_server(&f, server_conf);
    ck_assert_int_eq(stat(f.sock, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_uint_eq(st.st_mode & 0777, 0660);
    web_server_free(f.srv);
    f.srv = NULL;
    ck_assert_int_ne(access(f.sock, F_OK), 0); /* unlinked: it was ours */
    stop_server(&f);
    cleanup(&f);
}
END_TEST

START_TEST(server_refuses_live_socket_and_unknown_handler)
{
    struct fixture f;
    web_server *other = NULL;
    web_server_config sc;
    char eb[512], listen[300];
    web_conf *conf = NULL;
    const char *bad = "route GET /x { handler nope; }\n";

    start_server(&f, server_conf);
    memset(&sc, 0, sizeof sc);
    sc.conf = f.conf;
    sc.pool = f.pool;
    snprintf(listen, sizeof listen, "unix:%s", f.sock);
    sc.listen = listen;
    sc.handlers = (web_handler_def[]){{"status", web_handler_status, NULL},
                                      {"status_bare", web_handler_status,
                                       NULL},
                                      {"bighdr", h_bighdr, NULL}};
    sc.nhandlers = 3;
    ck_assert_int_eq(web_server_create(&other, &sc, eb, sizeof eb), WEB_EIO);
    ck_assert_ptr_nonnull(strstr(eb, "in use"));
    ck_assert_int_eq(web_conf_parse(bad, strlen(bad), "bad.conf", &conf, eb,
                                    sizeof eb),
                     WEB_OK);
    sc.conf = conf;
    ck_assert_int_eq(web_server_create(&other, &sc, eb, sizeof eb), WEB_ECONF);
    ck_assert_str_eq(eb, "bad.conf:1: unknown handler \"nope\"");
    web_conf_free(conf);
    stop_server(&f);
    cleanup(&f);
}
END_TEST

START_TEST(server_answers_straight_fastcgi)
{
    struct fixture f;
    char *out = NULL;
    int status = 0;
    const char *hello[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/hello",
                           "QUERY_STRING=", NULL};
    const char *post_hello[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/hello",
                                NULL};
    const char *nope[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/nope", NULL};
    const char *log[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/log",
                         "CONTENT_LENGTH=3", NULL};
    const char *head[] = {"REQUEST_METHOD=HEAD", "DOCUMENT_URI=/hello", NULL};
    const char *dotdot[] = {"REQUEST_METHOD=GET",
                            "REQUEST_URI=/../../etc/passwd", NULL};
    const char *bighdr[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/bighdr", NULL};
    const char *st[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status", NULL};
    const char *st_prom[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status",
                             "QUERY_STRING=format=prometheus", NULL};

    start_server(&f, server_conf);
    ck_assert_int_eq(
        fc_request(f.sock, hello, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(out, "\r\n\r\nhello"));
    free(out);

    ck_assert_int_eq(
        fc_request(f.sock, post_hello, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 405);
    ck_assert_ptr_nonnull(strstr(out, "Allow: GET, HEAD\r\n"));
    free(out);

    ck_assert_int_eq(
        fc_request(f.sock, nope, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 404);
    free(out);

    ck_assert_int_eq(
        fc_request(f.sock, head, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(out, "Content-Length: 5\r\n"));
    ck_assert_ptr_null(strstr(out, "hello"));
    free(out);

    ck_assert_int_eq(
        fc_request(f.sock, dotdot, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 400);
    free(out);

    /* Headers that do not fit are never cut: a clean 500 instead, and
     * the body is not read as headers. */
    ck_assert_int_eq(
        fc_request(f.sock, bighdr, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 500);
    ck_assert_ptr_null(strstr(out, "X-Big-1"));
    ck_assert_ptr_null(strstr(out, "BODYLINE"));
    ck_assert_ptr_nonnull(strstr(out, "\r\n\r\n500 response headers too large"));
    free(out);

    ck_assert_int_eq(
        fc_request(f.sock, log, "abc", 3, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 200);
    free(out);

    /* The status names the version, the SQLite library (escaped) and the
     * engine, the start and uptime, and has the PostgreSQL counters
     * (zero on SQLite), in both formats. */
    ck_assert_int_eq(fc_request(f.sock, st, NULL, 0, TU_WAIT_MS, &out, &status),
                     0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(out, "Content-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strstr(
        out, "\r\n\r\n{\"version\":\"9.9.9-test\",\"sqlite_version\":"
             "\"3.0.0 \\\"q\\\\\",\"engine\":\"sqlite\",\"started_unix\":"));
    ck_assert_ptr_nonnull(strstr(out, ",\"uptime_seconds\":"));
    {
        json_error_t je;
        json_t *j = json_loads(strstr(out, "\r\n\r\n") + 4, 0, &je);
        ck_assert_msg(j != NULL, "status JSON: %s", je.text);
        ck_assert_str_eq(json_string_value(json_object_get(j, "version")),
                         "9.9.9-test");
        ck_assert_str_eq(
            json_string_value(json_object_get(j, "sqlite_version")),
            "3.0.0 \"q\\");
        ck_assert(json_is_integer(json_object_get(j, "uptime_seconds")));
        ck_assert(json_is_integer(json_object_get(j, "batch_tasks")));
        ck_assert_uint_eq(json_array_size(json_object_get(j,
                                                          "batch_size_hist")),
                          DEFER_HIST_BUCKETS);
        json_decref(j);
    }
    ck_assert_ptr_nonnull(strstr(out, ",\"conn_lost\":0,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"reconnects\":0,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"commit_unknown\":0,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"log_dropped\":0"));
    free(out);
    ck_assert_int_eq(
        fc_request(f.sock, st_prom, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(
        strstr(out, "Content-Type: text/plain; version=0.0.4; "
                    "charset=utf-8\r\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\n# TYPE waituntil_build_info gauge\n"
                    "waituntil_build_info{version=\"9.9.9-test\",sqlite=\"3.0.0 "
                    "\\\"q\\\\\",engine=\"sqlite\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\n# TYPE waituntil_start_time_seconds gauge\n"
                    "waituntil_start_time_seconds "));
    ck_assert_ptr_nonnull(
        strstr(out, "\n# TYPE waituntil_conn_lost_total counter\n"
                    "waituntil_conn_lost_total 0\n"));
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_reconnects_total 0\n"));
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_commit_unknown_total 0\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\n# TYPE waituntil_responses_total counter\n"
                    "waituntil_responses_total{code=\"2xx\"} "));
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_responses_total{code=\"5xx\"} "));
    ck_assert_ptr_nonnull(
        strstr(out, "\n# TYPE waituntil_db_unavailable_seconds_total counter\n"
                    "waituntil_db_unavailable_seconds_total 0.000\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\n# TYPE waituntil_batch_size histogram\n"
                    "waituntil_batch_size_bucket{le=\"1\"} "));
    ck_assert_ptr_nonnull(
        strstr(out, "\nwaituntil_batch_size_bucket{le=\"32767\"} "));
    ck_assert_ptr_nonnull(
        strstr(out, "\nwaituntil_batch_size_bucket{le=\"+Inf\"} "));
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_batch_size_sum "));
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_batch_size_count "));
    /* The old names are gone: no counter without _total, no ms. */
    ck_assert_ptr_null(strstr(out, "\nwaituntil_conn_lost "));
    ck_assert_ptr_null(strstr(out, "_ms"));
    ck_assert_ptr_null(strstr(out, "waituntil_database_info"));
    free(out);
    stop_server(&f); /* drains */
    ck_assert_int_eq(count_rows(f.db), 1); /* the POST /log, nothing else */
    cleanup(&f);
}
END_TEST

/* The database file removed under the server: once the pool sees it,
 * requests with deferred writes get 503 + Retry-After before their
 * answer, and the status says why. */
/* A failed write's line names the request that admitted it (the id the
 * FastCGI params carried, as nginx's $request_id) and its values; the
 * access log has a line per request with the same id. */
START_TEST(server_failed_write_names_request)
{
    static const char conf[] =
        "server { threads 2; log stderr; log_level error; }\n"
        "pool { workers 1; queue 64; }\n"
        "route POST /dup { respond 201 \"added\";\n"
        "  defer insert logs { id $arg_id; method $request_method;"
        " path $uri; timestamp \"t0\"; } }\n";
    const char *req1[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/dup",
                          "QUERY_STRING=id=7", "REQUEST_URI=/dup?id=7",
                          "REQUEST_ID=feedbeef01", NULL};
    const char *req2[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/dup",
                          "QUERY_STRING=id=8", "REQUEST_URI=/dup?id=8",
                          "REQUEST_ID=feedbeef02", NULL};
    struct fixture f;
    char path[512], eb[256], *out = NULL, *text;
    int status = 0;
    defer_stats ds;
    web_server_stats ss;
    int64_t end;

    g_cap.len = 0;
    g_cap.buf[0] = '\0';
    g_fix_capture = 1;
    {
        char *d = tu_mkdtemp("wu-acc-srv");
        ck_assert_ptr_nonnull(d);
        snprintf(path, sizeof path, "%s/access.log", d);
        ck_assert_int_eq(web_access_log_open(&g_fix_access, path, NULL, eb,
                                             sizeof eb), WEB_OK);
        free(d);
    }
    start_server(&f, conf);
    {
        /* id 7 is taken: request 1's write fails, request 2's (id 8)
         * lands, whatever order the two submits reach the pool in (each
         * is submitted after its answer has gone). */
        sqlite3 *db;
        ck_assert_int_eq(sqlite3_open(f.db, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, TU_WAIT_MS);
        ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO logs (id, method, "
                                          "path, timestamp) VALUES (7, 'x', "
                                          "'x', 'x')", NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(db);
    }
    ck_assert_int_eq(fc_request(f.sock, req1, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 201);
    free(out);
    ck_assert_int_eq(fc_request(f.sock, req2, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 201);
    free(out);
    /* Both writes ran, and both access lines are out (each is written
     * after its answer reached us). */
    end = tu_now_ms() + TU_WAIT_MS;
    do {
        defer_pool_stats(f.pool, &ds);
        web_server_stats_get(f.srv, &ss);
        if (ds.ok + ds.failed >= 2 && ss.access_lines >= 2)
            break;
        usleep(5000);
    } while (tu_now_ms() < end);
    stop_server(&f);
    g_fix_capture = 0;
    ck_assert_uint_eq(ds.ok, 1);
    ck_assert_uint_eq(ds.failed, 1);
    ck_assert_uint_eq(ss.access_lines, 2);
    ck_assert_uint_eq(ss.access_dropped, 0);
    pthread_mutex_lock(&g_cap.mu);
    ck_assert_msg(strstr(g_cap.buf, "event=task_failed worker=0 "
                                    "label=\"/dup\" kind=sql") != NULL,
                  "%s", g_cap.buf);
    ck_assert_msg(strstr(g_cap.buf, "\" request_id=feedbeef01 values=\"1:'7' "
                                    "2:'POST' 3:'/dup' 4:'t0'\"\n") != NULL,
                  "%s", g_cap.buf);
    ck_assert_ptr_null(strstr(g_cap.buf, "feedbeef02"));
    pthread_mutex_unlock(&g_cap.mu);
    web_access_log_close(g_fix_access);
    g_fix_access = NULL;
    text = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, " event=access method=POST uri=\"/dup?id=7\" "
                               "status=201 bytes=5 duration_ms=") != NULL,
                  "%s", text);
    ck_assert_ptr_nonnull(strstr(text, " uri=\"/dup?id=8\" status=201 "));
    ck_assert_ptr_nonnull(strstr(text, " writes=1 request_id=feedbeef01\n"));
    ck_assert_ptr_nonnull(strstr(text, " writes=1 request_id=feedbeef02\n"));
    free(text);
    unlink(path);
    *strrchr(path, '/') = '\0';
    tu_rmtree(path);
    cleanup(&f);
}
END_TEST

START_TEST(server_db_lost_answers_503)
{
    struct fixture f;
    char *out = NULL;
    int status = 0;
    int64_t end;
    const char *log[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/log", NULL};
    const char *hello[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/hello", NULL};
    const char *st[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status", NULL};
    const char *st_prom[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status",
                             "QUERY_STRING=format=prometheus", NULL};

    start_server(&f, server_conf);
    ck_assert_int_eq(fc_request(f.sock, log, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    free(out);
    end = tu_now_ms() + TU_WAIT_MS;
    while (count_rows(f.db) != 1 && tu_now_ms() < end)
        usleep(10000);
    ck_assert_int_eq(count_rows(f.db), 1);
    ck_assert_int_eq(unlink(f.db), 0);
    /* Until the pool sees it (at the latest ~0.5 s), a write is promised
     * and fails (counted failed); then every one is refused. */
    end = tu_now_ms() + TU_WAIT_MS;
    for (;;) {
        ck_assert_int_eq(fc_request(f.sock, log, NULL, 0, TU_WAIT_MS, &out,
                                    &status), 0);
        if (status == 503 || tu_now_ms() > end)
            break;
        ck_assert_int_eq(status, 200);
        free(out);
        out = NULL;
        usleep(10000);
    }
    ck_assert_int_eq(status, 503);
    ck_assert_ptr_nonnull(strstr(out, "Retry-After: 1\r\n"));
    ck_assert_ptr_nonnull(strstr(out, ": database unavailable\n"));
    free(out);
    /* a request without deferred work is still answered */
    ck_assert_int_eq(fc_request(f.sock, hello, NULL, 0, TU_WAIT_MS, &out,
                                &status),
                     0);
    ck_assert_int_eq(status, 200);
    free(out);
    ck_assert_int_eq(fc_request(f.sock, st, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(out, "\"db_status\":\"lost\""));
    ck_assert_ptr_nonnull(strstr(out, "\"db_reason\":\"database file "));
    ck_assert_ptr_nonnull(strstr(out, " was removed"));
    ck_assert_ptr_nonnull(strstr(out, ",\"responses_503_db_unavailable\":1,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"tasks_unavailable\":1,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"tasks_ok\":1,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"db_state\":2,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"db_lost\":1,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"log_dropped\":0"));
    free(out);
    ck_assert_int_eq(fc_request(f.sock, st_prom, NULL, 0, TU_WAIT_MS, &out,
                                &status),
                     0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_db_state 2\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\nwaituntil_db_state_info{state=\"lost\",reason=\""
                    "database file "));
    ck_assert_ptr_nonnull(
        strstr(out, "\nwaituntil_responses_503_db_unavailable_total 1\n"));
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_tasks_unavailable_total 1\n"));
    ck_assert_ptr_nonnull(strstr(out, "\nwaituntil_db_lost_total 1\n"));
    free(out);
    stop_server(&f);
    ck_assert_int_ne(access(f.db, F_OK), 0); /* nothing made at the path */
    cleanup(&f);
}
END_TEST

/* A database web_call_db cannot open fails every request that asks for
 * it: the log says so about once a second, not once a request; summary
 * lines count the failures folded (repeated=N), and the stop writes the
 * last burst's, so the lines add up to the failures. */
START_TEST(server_call_db_failures_are_folded)
{
    struct fixture f;
    char path[400], missing[400], eb[256], line[1024], *out = NULL;
    const char *req[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/calldb", NULL};
    const char *conf =
        "server { threads 2; log stderr; log_level error; }\n"
        "pool { workers 1; queue 64; }\n"
        "route GET /calldb { handler calldb; }\n";
    int status = 0, i, lines = 0, plain = 0, first_plain = 0;
    unsigned long long repeated = 0;
    int64_t t0, secs;
    FILE *fp;

    /* (the fixture's dir is made by start_server: the log goes beside
     * it, in a dir of the test's own) */
    char *dir = tu_mkdtemp("wu-calldb");
    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/server.log", dir);
    snprintf(missing, sizeof missing, "%s/no/such/folder/app.db", dir);
    ck_assert_int_eq(web_log_open(&g_fix_log, path, WEB_LOG_ERROR, eb,
                                  sizeof eb),
                     WEB_OK);
    g_fix_call_db = missing;
    start_server(&f, conf);
    g_fix_call_db = NULL;
    t0 = tu_now_ms();
    for (i = 0; i < 40; i++) {
        ck_assert_int_eq(fc_request(f.sock, req, NULL, 0, TU_WAIT_MS, &out,
                                    &status),
                         0);
        ck_assert_int_eq(status, 503);
        free(out);
        out = NULL;
    }
    secs = (tu_now_ms() - t0) / 1000;
    stop_server(&f);
    web_log_close(g_fix_log);
    g_fix_log = NULL;
    fp = fopen(path, "r");
    ck_assert_ptr_nonnull(fp);
    while (fgets(line, sizeof line, fp) != NULL) {
        const char *r;
        if (strstr(line, "event=request_db_failed") == NULL)
            continue;
        lines++;
        r = strstr(line, " repeated=");
        if (r != NULL) {
            repeated += strtoull(r + 10, NULL, 10);
        } else {
            plain++; /* a failure written whole */
            if (lines == 1)
                first_plain = 1;
        }
    }
    fclose(fp);
    /* One line a window of a second (the first, then a summary a
     * second), and the stop's summary of the last burst. */
    ck_assert_int_ge(lines, 2);
    ck_assert_msg(lines <= secs + 3, "%d lines in %lld s", lines,
                  (long long)secs);
    ck_assert_int_eq(first_plain, 1);
    /* The lines and their repeated= counts add up to the failures: the
     * stop wrote the last burst's count. */
    ck_assert_uint_eq((unsigned long long)plain + repeated, 40);
    cleanup(&f);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A journal append that fails (here: the file-size limit, as a full
 * disk) answers 503 "journal unavailable", counted on its own: it used
 * to be counted in responses_503_db_unavailable. */
START_TEST(server_journal_failure_has_its_own_503_counter)
{
    struct fixture f;
    char *out = NULL;
    int status = 0, i, rc;
    sqlite3 *lock = NULL;
    struct rlimit rl, old;
    const char *log[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/log", NULL};
    const char *st[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status", NULL};
    const char *st_prom[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status",
                             "QUERY_STRING=format=prometheus", NULL};

    g_fix_journal = 1;
    start_server(&f, server_conf);
    g_fix_journal = 0;
    /* The worker waits on the write lock: only the journal grows. */
    ck_assert_int_eq(sqlite3_open(f.db, &lock), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    rl = old;
    rl.rlim_cur = 2048; /* the journal is new: about a dozen records */
    /* No Check call until the limit is lifted: every ck_assert appends to
     * Check's own message file, which the limit would cut short, and the
     * runner then dies on the torn message ("Bad message type") without
     * naming the test. */
    rc = setrlimit(RLIMIT_FSIZE, &rl);
    for (i = 0; rc == 0 && i < 60; i++) {
        rc = fc_request(f.sock, log, NULL, 0, TU_WAIT_MS, &out, &status);
        if (rc != 0 || status != 200)
            break;
        free(out);
        out = NULL;
    }
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(status, 503);
    ck_assert_ptr_nonnull(strstr(out, ": journal unavailable\n"));
    free(out);
    ck_assert_int_eq(fc_request(f.sock, st, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(
        strstr(out, ",\"responses_503_journal_unavailable\":1,"));
    ck_assert_ptr_nonnull(strstr(out, ",\"responses_503_db_unavailable\":0,"));
    free(out);
    ck_assert_int_eq(fc_request(f.sock, st_prom, NULL, 0, TU_WAIT_MS, &out,
                                &status),
                     0);
    ck_assert_ptr_nonnull(strstr(
        out, "\nwaituntil_responses_503_journal_unavailable_total 1\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\nwaituntil_responses_503_db_unavailable_total 0\n"));
    free(out);
    ck_assert_int_eq(sqlite3_exec(lock, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lock);
    stop_server(&f);
    cleanup(&f);
}
END_TEST

/* The database's reason names its file, and a file name is any bytes: a
 * quote, a backslash, a newline, a control byte and a byte that is not
 * UTF-8 come out as valid JSON and as a valid Prometheus label value
 * (the format's three escapes; the control byte dropped, the bad byte
 * U+FFFD in both). */
START_TEST(server_status_escapes_db_reason)
{
    struct fixture f;
    char *out = NULL;
    int status = 0;
    int64_t end;
    json_error_t je;
    json_t *j;
    const char *reason;
    const char *log[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/log", NULL};
    const char *st[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status", NULL};
    const char *st_prom[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status",
                             "QUERY_STRING=format=prometheus", NULL};

    start_server_db(&f, server_conf, "q\"b\\s\nn\x01" "c\xff.db");
    ck_assert_int_eq(unlink(f.db), 0);
    /* Until the pool sees it (at the latest ~1 s): a write is promised. */
    end = tu_now_ms() + TU_WAIT_MS;
    for (;;) {
        ck_assert_int_eq(fc_request(f.sock, log, NULL, 0, TU_WAIT_MS, &out,
                                    &status), 0);
        free(out);
        out = NULL;
        if (status == 503 || tu_now_ms() > end)
            break;
        ck_assert_int_eq(status, 200);
        usleep(10000);
    }
    ck_assert_int_eq(status, 503);

    ck_assert_int_eq(fc_request(f.sock, st, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    j = json_loads(strstr(out, "\r\n\r\n") + 4, 0, &je);
    ck_assert_msg(j != NULL, "status JSON: %s", je.text);
    ck_assert_str_eq(json_string_value(json_object_get(j, "db_status")),
                     "lost");
    reason = json_string_value(json_object_get(j, "db_reason"));
    ck_assert_ptr_nonnull(reason);
    ck_assert_ptr_nonnull(strstr(reason, "/q\"b\\s\nn\x01" "c\xef\xbf\xbd.db "
                                         "was removed"));
    json_decref(j);
    free(out);

    ck_assert_int_eq(fc_request(f.sock, st_prom, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(
        strstr(out, "/q\\\"b\\\\s\\nnc\xef\xbf\xbd.db was removed\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(out, "\nwaituntil_db_state_info{state=\"lost\",reason=\""
                    "database file "));
    free(out);
    stop_server(&f);
    cleanup(&f);
}
END_TEST

/* Registered without its info (ud NULL), the handler says "unknown"
 * rather than nothing. */
START_TEST(server_status_without_info)
{
    struct fixture f;
    char *out = NULL;
    int status = 0;
    const char *st[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status_bare",
                        NULL};
    const char *st_prom[] = {"REQUEST_METHOD=GET",
                             "DOCUMENT_URI=/_status_bare",
                             "QUERY_STRING=format=prometheus", NULL};

    start_server(&f, server_conf);
    ck_assert_int_eq(fc_request(f.sock, st, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(
        strstr(out, "{\"version\":\"unknown\",\"sqlite_version\":\"unknown\","
                    "\"engine\":\"sqlite\","));
    free(out);
    ck_assert_int_eq(fc_request(f.sock, st_prom, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(
        strstr(out, "\nwaituntil_build_info{version=\"unknown\",sqlite="
                    "\"unknown\",engine=\"sqlite\"} 1\n"));
    free(out);
    stop_server(&f);
    cleanup(&f);
}
END_TEST

START_TEST(server_limits_straight_fastcgi)
{
    struct fixture f;
    char *out = NULL, *qs, *big;
    int status = 0;
    size_t i, off;
    const char *params[5] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/log", NULL,
                             NULL, NULL};

    start_server(&f, server_conf);
    /* A body over max_body (4k) that nginx would have refused: 413. */
    big = malloc(10000);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 10000);
    ck_assert_int_eq(
        fc_request(f.sock, params, big, 10000, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 413);
    free(out);
    free(big);

    /* 10,000 query params: bounded at max_args, 431, no crash. */
    qs = malloc(10000 * 8 + 32);
    ck_assert_ptr_nonnull(qs);
    off = (size_t)sprintf(qs, "QUERY_STRING=");
    for (i = 0; i < 10000; i++)
        off += (size_t)sprintf(qs + off, "a%zu=1&", i % 1000);
    params[2] = qs;
    ck_assert_int_eq(
        fc_request(f.sock, params, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 431);
    free(out);
    free(qs);

    /* The server is still serving. */
    params[2] = NULL;
    ck_assert_int_eq(
        fc_request(f.sock, params, NULL, 0, TU_WAIT_MS, &out, &status), 0);
    ck_assert_int_eq(status, 200);
    free(out);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 1);
    cleanup(&f);
}
END_TEST

/* ---- request bodies: parsed lazily, only for a route that reads them -------- */

static const char *body_conf =
    "server { threads 2; max_body 1m; log stderr; log_level error; }\n"
    "pool { workers 1; queue 64; }\n"
    "route any /log { respond 200 \"logged\";\n"
    "  defer insert logs { method $request_method; path $uri; timestamp $time_iso; } }\n"
    "route POST /json { respond 201 \"ok\";\n"
    "  defer insert logs { method $request_method; path $body_path;"
    " timestamp $body_ts; } }\n"
    "route POST /field { handler field; }\n"
    "route POST /nofield { handler nofield; }\n"
    "route GET /_status { handler status; }\n";

/* A counter from the status route's JSON, or -1 when it is not there. */
static long status_counter(const char *sock, const char *name)
{
    const char *st[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/_status", NULL};
    char *out = NULL, key[96], *p;
    int status = 0;
    long v = -1;
    ck_assert_int_eq(fc_request(sock, st, NULL, 0, TU_WAIT_MS, &out, &status),
                                0);
    ck_assert_int_eq(status, 200);
    snprintf(key, sizeof key, "\"%s\":", name);
    p = strstr(out, key);
    if (p != NULL)
        v = strtol(p + strlen(key), NULL, 10);
    free(out);
    return v;
}

/* POST body (len bytes, Content-Type: application/json) to path; returns
 * the status, *out (if not NULL) the reply. */
static int post_json(const char *sock, const char *path, const char *body,
                     size_t len, char **out)
{
    char uri[128], *o = NULL;
    const char *params[] = {"REQUEST_METHOD=POST", uri,
                            "CONTENT_TYPE=application/json", NULL};
    int status = 0;
    snprintf(uri, sizeof uri, "DOCUMENT_URI=%s", path);
    ck_assert_int_eq(fc_request(sock, params, body, len, TU_WAIT_MS, &o,
                                &status), 0);
    if (out != NULL)
        *out = o;
    else
        free(o);
    return status;
}

/* "[0,0,...,0]" with n zeros (malloc'd); *len its length. */
static char *zeros_array(size_t n, size_t *len)
{
    char *b = malloc(2 * n + 2);
    size_t o = 0;
    ck_assert_ptr_nonnull(b);
    b[o++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            b[o++] = ',';
        b[o++] = '0';
    }
    b[o++] = ']';
    *len = o;
    return b;
}

/* Item 2 of issue 13: a 404 never runs the JSON parser, whatever its body
 * (it answered 400 "malformed JSON" and parsed 1 MB before routing). */
START_TEST(body_not_parsed_for_404)
{
    struct fixture f;
    size_t len;
    char *big = zeros_array(400000, &len), *deep = malloc(5000);

    ck_assert_ptr_nonnull(deep);
    memset(deep, '[', 5000);
    start_server(&f, body_conf);
    ck_assert_int_eq(post_json(f.sock, "/nope", "{\"a\":", 5, NULL), 404);
    ck_assert_int_eq(post_json(f.sock, "/nope", deep, 5000, NULL), 404);
    ck_assert_int_eq(post_json(f.sock, "/nope", big, len, NULL), 404);
    ck_assert_int_eq(status_counter(f.sock, "bodies_parsed"), 0);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 0);
    cleanup(&f);
    free(big);
    free(deep);
}
END_TEST

/* A declarative route whose values are not $body_ fields does its work
 * whatever the body holds: it is never parsed. */
START_TEST(body_not_parsed_for_route_without_body_fields)
{
    struct fixture f;
    size_t len;
    char *big = zeros_array(400000, &len);
    start_server(&f, body_conf);
    ck_assert_int_eq(post_json(f.sock, "/log", "{\"a\":", 5, NULL), 200);
    ck_assert_int_eq(post_json(f.sock, "/log", big, len, NULL), 200);
    ck_assert_int_eq(status_counter(f.sock, "bodies_parsed"), 0);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 2);
    cleanup(&f);
    free(big);
}
END_TEST

/* A route reading two $body_ fields parses its body once. */
START_TEST(body_parsed_once_for_body_route)
{
    struct fixture f;
    const char *ok = "{\"path\":\"/p\",\"ts\":\"t\"}";
    start_server(&f, body_conf);
    ck_assert_int_eq(post_json(f.sock, "/json", ok, strlen(ok), NULL), 201);
    ck_assert_int_eq(status_counter(f.sock, "bodies_parsed"), 1);
    ck_assert_int_eq(post_json(f.sock, "/json", "{\"path\":", 8, NULL), 400);
    ck_assert_int_eq(status_counter(f.sock, "bodies_parsed"), 2);
    ck_assert_int_eq(status_counter(f.sock, "bodies_refused"), 1);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 1);
    cleanup(&f);
}
END_TEST

/* A C handler gets the same lazy parse: one that never reads a field
 * answers whatever the body; one that reads a field twice parses once
 * and sees a malformed body as 400. */
START_TEST(body_lazy_for_handlers)
{
    struct fixture f;
    char *out = NULL;
    start_server(&f, body_conf);
    ck_assert_int_eq(post_json(f.sock, "/nofield", "{\"a\":", 5, NULL), 200);
    ck_assert_int_eq(status_counter(f.sock, "bodies_parsed"), 0);
    ck_assert_int_eq(post_json(f.sock, "/field", "{\"a\":\"v\"}", 9, &out), 200);
    ck_assert_ptr_nonnull(strstr(out, "\r\n\r\nv"));
    free(out);
    ck_assert_int_eq(status_counter(f.sock, "bodies_parsed"), 1);
    ck_assert_int_eq(post_json(f.sock, "/field", "{\"a\":", 5, NULL), 400);
    ck_assert_int_eq(status_counter(f.sock, "bodies_parsed"), 2);
    stop_server(&f);
    cleanup(&f);
}
END_TEST

/* The element bound (default 10,000 array elements and object members):
 * a body of 10,001 numbers is refused with 400 and a reason, without a
 * crash; 10,000 pass. */
START_TEST(body_json_element_limit)
{
    struct fixture f;
    size_t len, n;
    char *arr = zeros_array(10001, &len), *body = malloc(len + 64), *out = NULL;

    ck_assert_ptr_nonnull(body);
    start_server(&f, body_conf);
    /* {"path":"/e","ts":"t","a":[0,...]}: 2 members + "a" + its elements */
    n = (size_t)sprintf(body, "{\"path\":\"/e\",\"ts\":\"t\",\"a\":%.*s}",
                        (int)len, arr);
    ck_assert_int_eq(post_json(f.sock, "/json", body, n, &out), 400);
    ck_assert_msg(strstr(out, "more than 10000") != NULL, "%s", out);
    free(out);
    /* 9,997 zeros + 3 members = 10,000 */
    free(arr);
    arr = zeros_array(9997, &len);
    n = (size_t)sprintf(body, "{\"path\":\"/e\",\"ts\":\"t\",\"a\":%.*s}",
                        (int)len, arr);
    ck_assert_int_eq(post_json(f.sock, "/json", body, n, NULL), 201);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 1);
    cleanup(&f);
    free(arr);
    free(body);
}
END_TEST

/* Both JSON bounds are conf directives.  Elements are array elements
 * and object members at every level: {"path":..,"x":[1,2,3]} has 5. */
START_TEST(body_json_limits_from_conf)
{
    struct fixture f;
    char *out = NULL;
    const char *conf =
        "server { threads 1; max_json_depth 3; max_json_elements 5;"
        " log stderr; log_level error; }\n"
        "route POST /json { respond 201 \"ok\";\n"
        "  defer insert logs { method $request_method; path $body_path;"
        " timestamp $time_iso; } }\n";
    const char *deep_ok = "{\"path\":\"/d\",\"x\":[[1]]}";
    const char *deep_bad = "{\"path\":\"/d\",\"x\":[[[1]]]}";
    const char *many_ok = "{\"path\":\"/m\",\"x\":[1,2,3]}";
    const char *many_bad = "{\"path\":\"/m\",\"x\":[1,2,3,4]}";
    start_server(&f, conf);
    ck_assert_int_eq(post_json(f.sock, "/json", deep_ok, strlen(deep_ok), NULL),
                     201);
    ck_assert_int_eq(post_json(f.sock, "/json", deep_bad, strlen(deep_bad),
                               &out), 400);
    ck_assert_msg(strstr(out, "deeper than 3") != NULL, "%s", out);
    free(out);
    ck_assert_int_eq(post_json(f.sock, "/json", many_ok, strlen(many_ok), NULL),
                     201);
    ck_assert_int_eq(post_json(f.sock, "/json", many_bad, strlen(many_bad),
                               &out), 400);
    ck_assert_msg(strstr(out, "more than 5") != NULL, "%s", out);
    free(out);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 2);
    cleanup(&f);
}
END_TEST

/* A route's own max_body: over it 413 (whether or not the route reads
 * the body, and from CONTENT_LENGTH alone); other routes keep the
 * server's. */
START_TEST(body_route_max_body)
{
    struct fixture f;
    char body[64];
    const char *conf =
        "server { threads 1; max_body 1k; log stderr; log_level error; }\n"
        "route POST /small { max_body 16; respond 201 \"ok\";\n"
        "  defer insert logs { method $request_method; path $body_path;"
        " timestamp $time_iso; } }\n"
        "route POST /tiny { max_body 8; respond 200 \"ok\"; }\n"
        "route POST /big { respond 200 \"ok\"; }\n";
    const char *claim[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/tiny",
                           "CONTENT_LENGTH=9", NULL};
    char *out = NULL;
    int status = 0;

    start_server(&f, conf);
    /* {"path":"/abcde"} is 17 bytes, {"path":"/abcd"} 16 */
    ck_assert_int_eq(post_json(f.sock, "/small", "{\"path\":\"/abcde\"}", 17,
                               NULL), 413);
    ck_assert_int_eq(post_json(f.sock, "/small", "{\"path\":\"/abcd\"}", 16,
                               NULL), 201);
    ck_assert_int_eq(post_json(f.sock, "/tiny", "123456789", 9, NULL), 413);
    ck_assert_int_eq(post_json(f.sock, "/tiny", "12345678", 8, NULL), 200);
    ck_assert_int_eq(fc_request(f.sock, claim, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 413);
    free(out);
    memset(body, 'x', sizeof body);
    ck_assert_int_eq(post_json(f.sock, "/big", body, sizeof body, NULL), 200);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 1);
    cleanup(&f);
}
END_TEST

/* ---- require: 400 before admission when a value is missing (item 9) ------- */

static const char *require_conf =
    "server { threads 2; log stderr; log_level error; }\n"
    "pool { workers 1; queue 64; }\n"
    "route POST /signup { require $body_email; respond 201 \"ok\";\n"
    "  defer insert logs { method $request_method; path $body_email;"
    " timestamp $time_iso; } }\n"
    "route POST /hdr { require $http_x_user_id $arg_v; respond 200 \"ok\";\n"
    "  defer insert logs { method $request_method; path $http_x_user_id;"
    " timestamp $arg_v; } }\n"
    "route POST /h { require $arg_id; handler counted; }\n"
    "route GET /_status { handler status; }\n";

/* POST to path with a Content-Type (NULL: none) and an optional extra
 * param; returns the status, *out the reply (caller frees). */
static int post_ct(const char *sock, const char *path, const char *ctype,
                   const char *extra, const char *body, char **out)
{
    char uri[128], ct[128];
    const char *params[5] = {"REQUEST_METHOD=POST", uri, NULL, NULL, NULL};
    size_t k = 2;
    int status = 0;
    snprintf(uri, sizeof uri, "DOCUMENT_URI=%s", path);
    if (ctype != NULL) {
        snprintf(ct, sizeof ct, "CONTENT_TYPE=%s", ctype);
        params[k++] = ct;
    }
    if (extra != NULL)
        params[k++] = extra;
    ck_assert_int_eq(fc_request(sock, params, body, body ? strlen(body) : 0,
                                5000, out, &status), 0);
    return status;
}

/* The reply's body (after the blank line). */
static const char *reply_body(const char *out)
{
    const char *p = strstr(out, "\r\n\r\n");
    ck_assert_ptr_nonnull(p);
    return p + 4;
}

START_TEST(require_missing_answers_400_text)
{
    struct fixture f;
    char *out = NULL;
    start_server(&f, require_conf);
    ck_assert_int_eq(post_ct(f.sock, "/signup",
                             "application/x-www-form-urlencoded", NULL,
                             "name=ann", &out), 400);
    ck_assert_ptr_nonnull(strstr(out, "Content-Type: text/plain"));
    ck_assert_str_eq(reply_body(out),
                     "400 Bad Request: missing body field \"email\"\n");
    free(out);
    /* no body at all, and an empty value, are missing too */
    ck_assert_int_eq(post_ct(f.sock, "/signup", NULL, NULL, NULL, &out), 400);
    free(out);
    ck_assert_int_eq(post_ct(f.sock, "/signup",
                             "application/x-www-form-urlencoded", NULL,
                             "email=", &out), 400);
    free(out);
    /* refused before admission: nothing was registered, nothing written */
    ck_assert_int_eq(status_counter(f.sock, "tasks_admitted"), 0);
    ck_assert_int_eq(status_counter(f.sock, "requests_missing_required"), 3);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 0);
    cleanup(&f);
}
END_TEST

START_TEST(require_missing_answers_400_json_to_json)
{
    struct fixture f;
    char *out = NULL;
    start_server(&f, require_conf);
    ck_assert_int_eq(post_ct(f.sock, "/signup", "application/json", NULL,
                             "{\"name\":\"ann\"}", &out), 400);
    ck_assert_ptr_nonnull(strstr(out, "Content-Type: application/json"));
    ck_assert_str_eq(reply_body(out),
                     "{\"status\":400,\"error\":\"missing body field "
                     "\\\"email\\\"\",\"field\":\"email\"}\n");
    free(out);
    /* JSON null is missing as well */
    ck_assert_int_eq(post_ct(f.sock, "/signup", "application/json", NULL,
                             "{\"email\":null}", &out), 400);
    free(out);
    ck_assert_int_eq(status_counter(f.sock, "tasks_admitted"), 0);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 0);
    cleanup(&f);
}
END_TEST

START_TEST(require_present_answers_2xx_and_writes)
{
    struct fixture f;
    char *out = NULL;
    start_server(&f, require_conf);
    ck_assert_int_eq(post_ct(f.sock, "/signup", "application/json", NULL,
                             "{\"email\":\"a@example.org\"}", &out), 201);
    free(out);
    ck_assert_int_eq(post_ct(f.sock, "/signup",
                             "application/x-www-form-urlencoded", NULL,
                             "email=b%40example.org", &out), 201);
    free(out);
    ck_assert_int_eq(post_ct(f.sock, "/hdr", NULL, "HTTP_X_USER_ID=u1", NULL,
                             &out), 400); /* still no ?v= */
    free(out);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 2);
    cleanup(&f);
}
END_TEST

/* Every listed value is checked, in order; the first missing one is
 * named, in the client's terms. */
START_TEST(require_names_the_first_missing_value)
{
    struct fixture f;
    char *out = NULL;
    const char *q[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/hdr",
                       "QUERY_STRING=v=1", "HTTP_X_USER_ID=u1", NULL};
    int status = 0;
    start_server(&f, require_conf);
    ck_assert_int_eq(post_ct(f.sock, "/hdr", NULL, NULL, NULL, &out), 400);
    ck_assert_str_eq(reply_body(out),
                     "400 Bad Request: missing header \"x-user-id\"\n");
    free(out);
    ck_assert_int_eq(post_ct(f.sock, "/hdr", NULL, "HTTP_X_USER_ID=", NULL,
                             &out), 400);
    ck_assert_str_eq(reply_body(out),
                     "400 Bad Request: missing header \"x-user-id\"\n");
    free(out);
    ck_assert_int_eq(post_ct(f.sock, "/hdr", NULL, "HTTP_X_USER_ID=u1", NULL,
                             &out), 400);
    ck_assert_str_eq(reply_body(out),
                     "400 Bad Request: missing query argument \"v\"\n");
    free(out);
    ck_assert_int_eq(fc_request(f.sock, q, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    free(out);
    stop_server(&f);
    ck_assert_int_eq(count_rows(f.db), 1);
    cleanup(&f);
}
END_TEST

/* A handler route's require is checked before the handler runs. */
START_TEST(require_checked_before_a_handler)
{
    struct fixture f;
    char *out = NULL;
    const char *ok[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/h",
                        "QUERY_STRING=id=7", NULL};
    int status = 0;
    counted_calls = 0;
    start_server(&f, require_conf);
    ck_assert_int_eq(post_ct(f.sock, "/h", NULL, NULL, NULL, &out), 400);
    free(out);
    ck_assert_int_eq(counted_calls, 0);
    ck_assert_int_eq(fc_request(f.sock, ok, NULL, 0, TU_WAIT_MS, &out,
                                &status), 0);
    ck_assert_int_eq(status, 200);
    free(out);
    ck_assert_int_eq(counted_calls, 1);
    stop_server(&f);
    cleanup(&f);
}
END_TEST

/* The rule for every error answer the server writes itself: JSON when
 * the request's Content-Type is application/json, text otherwise. */
START_TEST(errors_are_json_for_json_requests)
{
    struct fixture f;
    char *out = NULL;
    start_server(&f, require_conf);
    ck_assert_int_eq(post_ct(f.sock, "/nope", "application/json", NULL, "{}",
                             &out), 404);
    ck_assert_ptr_nonnull(strstr(out, "Content-Type: application/json"));
    ck_assert_str_eq(reply_body(out),
                     "{\"status\":404,\"error\":\"Not Found\"}\n");
    free(out);
    ck_assert_int_eq(post_ct(f.sock, "/nope", "text/plain", NULL, "{}", &out),
                     404);
    ck_assert_str_eq(reply_body(out), "404 Not Found\n");
    free(out);
    ck_assert_int_eq(post_ct(f.sock, "/signup", "application/json", NULL,
                             "{\"email\":", &out), 400);
    ck_assert_msg(strncmp(reply_body(out),
                          "{\"status\":400,\"error\":\"invalid JSON body: ",
                          39) == 0, "%s", out);
    free(out);
    stop_server(&f);
    cleanup(&f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("web_server");
    TCase *tc = tcase_create("log");
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_loop_test(tc, log_quote, 0, sizeof q_cases / sizeof q_cases[0]);
    tcase_add_test(tc, log_quote_truncates);
    tcase_add_test(tc, log_file_levels_and_reopen);
    tcase_add_test(tc, log_dropped_counted_then_said);
    tcase_add_loop_test(tc, access_format_escapes, 0,
                        sizeof acc_cases / sizeof acc_cases[0]);
    tcase_add_test(tc, access_format_bounds);
    tcase_add_test(tc, access_log_reopen_under_writers);
    tcase_add_test(tc, access_log_failures_counted);
    suite_add_tcase(s, tc);

    tc = tcase_create("defer_build");
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_loop_test(tc, defer_build_kinds, 0,
                        sizeof defer_sql / sizeof defer_sql[0]);
    tcase_add_loop_test(tc, defer_template_kinds, 0,
                        sizeof defer_sql / sizeof defer_sql[0]);
    tcase_add_loop_test(tc, defer_template_kinds_pg, 0,
                        sizeof defer_sql_pg / sizeof defer_sql_pg[0]);
    tcase_add_test(tc, defer_template_shipped_pg);
    suite_add_tcase(s, tc);

    tc = tcase_create("server");
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_test(tc, server_socket_mode_and_unlink);
    tcase_add_test(tc, server_refuses_live_socket_and_unknown_handler);
    tcase_add_test(tc, server_answers_straight_fastcgi);
    tcase_add_test(tc, server_limits_straight_fastcgi);
    tcase_add_test(tc, server_db_lost_answers_503);
    tcase_add_test(tc, server_journal_failure_has_its_own_503_counter);
    tcase_add_test(tc, server_call_db_failures_are_folded);
    tcase_add_test(tc, server_status_escapes_db_reason);
    tcase_add_test(tc, server_status_without_info);
    tcase_add_test(tc, server_failed_write_names_request);
    suite_add_tcase(s, tc);

    tc = tcase_create("body");
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_test(tc, body_not_parsed_for_404);
    tcase_add_test(tc, body_not_parsed_for_route_without_body_fields);
    tcase_add_test(tc, body_parsed_once_for_body_route);
    tcase_add_test(tc, body_lazy_for_handlers);
    tcase_add_test(tc, body_json_element_limit);
    tcase_add_test(tc, body_json_limits_from_conf);
    tcase_add_test(tc, body_route_max_body);
    suite_add_tcase(s, tc);

    tc = tcase_create("require");
    tcase_set_timeout(tc, TU_TCASE_TIMEOUT_S);
    tcase_add_test(tc, require_missing_answers_400_text);
    tcase_add_test(tc, require_missing_answers_400_json_to_json);
    tcase_add_test(tc, require_present_answers_2xx_and_writes);
    tcase_add_test(tc, require_names_the_first_missing_value);
    tcase_add_test(tc, require_checked_before_a_handler);
    tcase_add_test(tc, errors_are_json_for_json_requests);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
