/*
 * test.c -- the test kit (test.h): the application's server without a
 * socket, on a private SQLite database.
 *
 * DESIGN
 * A kit holds what waituntil_main would build -- conf, log, pool,
 * server -- with two differences: the server never listens
 * (WEB_LISTEN_NONE) and the database is a fresh file in a temporary
 * folder, migrated and checked by the start's own step (app_migrate).
 * A request is the server's own path (web__srv_call: route, body,
 * "require", handler or action, admission with its 503 answers) on the
 * kit's arena and defer_ctx, run on the calling thread; just before
 * admission its tasks are copied for the response (defer_ctx_task: the
 * query as it will run).  Admitted tasks are submitted as a request
 * thread does, and the call waits until the pool's ok + failed + left
 * counters have moved by that many and nothing is queued or running:
 * one request at a time per kit, so the counters' deltas are this
 * request's.  The wait polls the counters (1 ms steps, 60 s bound):
 * the pool has no "done" notification, and a kit is test code.  A wait
 * that gives up leaves tasks in the pool whose results would be counted
 * for the next request: the kit refuses every request after it.
 *
 * The log is a file in the kit's folder: the server's and the pool's
 * lines land there, and waituntil_test_log reads it back from the
 * offset of the last clear.
 */
#define _GNU_SOURCE
#include "app_int.h"
#include "test.h"
#include "web_srv_int.h"

_Static_assert(WAITUNTIL_TEST_MAX_HEADERS >= WEB__SRV_MAX_HEADERS,
               "the kit keeps every header the server can send");

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAIT_LIMIT_MS 60000

struct waituntil_test {
    web_conf *conf;
    char *dir;              /* the temporary folder */
    char *db_path, *log_path;
    web_log *log;
    defer_pool *pool;
    web_server *srv;
    web_handler_def *handlers;
    web_arena *arena;
    defer_ctx *dctx;
    qb_conn *req_db;        /* the "request thread's" (web_call_db) */
    qb_conn *db;            /* the test's own (waituntil_test_db) */
    defer_config pc;
    /* the last response */
    waituntil_test_response resp;
    waituntil_test_write *writes;
    qb_query **queries;     /* copies of the writes' queries */
    char **debug;
    char **labels;
    size_t nwrites;
    char *body;
    char *logbuf;
    off_t log_from;
    int broken;             /* a wait gave up: counts no longer exact */
    int record_rc;          /* record_writes' result in the hook */
    defer_stats before;     /* pool counters just before admission */
    char err[512];
};

static void set_err(waituntil_test *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(waituntil_test *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof t->err, fmt, ap);
    va_end(ap);
}

/* The last non-empty line of the kit's log, into buf (for messages). */
static const char *last_log_line(waituntil_test *t, char *buf, size_t len)
{
    FILE *f = t->log_path ? fopen(t->log_path, "r") : NULL;
    char line[1024];
    snprintf(buf, len, "(no log line)");
    if (f == NULL)
        return buf;
    while (fgets(line, sizeof line, f) != NULL) {
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n > 0) { /* cut to fit */
            if (n >= len)
                n = len - 1;
            memcpy(buf, line, n);
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static void clear_response(waituntil_test *t)
{
    for (size_t i = 0; i < t->nwrites; i++) {
        qb_query_free(t->queries[i]);
        free(t->debug[i]);
        free(t->labels[i]);
    }
    free(t->writes);
    free(t->queries);
    free(t->debug);
    free(t->labels);
    t->labels = NULL;
    free(t->body);
    t->writes = NULL;
    t->queries = NULL;
    t->debug = NULL;
    t->body = NULL;
    t->nwrites = 0;
    memset(&t->resp, 0, sizeof t->resp);
}

static void rm_dir(const char *dir)
{
    static const char *const names[] = {"test.db", "test.db-wal",
                                        "test.db-shm", "test.db-journal",
                                        "test.log"};
    char path[PATH_MAX];
    if (dir == NULL)
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        (void)unlink(path);
    }
    (void)rmdir(dir);
}

WAITUNTIL_API void waituntil_test_close(waituntil_test *t)
{
    if (t == NULL)
        return;
    clear_response(t);
    web_server_free(t->srv);
    defer_ctx_free(t->dctx);
    if (t->pool != NULL)
        (void)defer_pool_shutdown(t->pool, 10000);
    defer_pool_destroy(t->pool);
    qb_close(t->req_db);
    qb_close(t->db);
    web_arena_free(t->arena);
    web_log_close(t->log);
    web_conf_free(t->conf);
    free(t->handlers);
    rm_dir(t->dir);
    free(t->dir);
    free(t->db_path);
    free(t->log_path);
    free(t->logbuf);
    free(t);
}

static int fail_open(waituntil_test *t, int rc, char *eb, size_t el)
{
    if (eb != NULL && el > 0)
        snprintf(eb, el, "%s", t->err);
    waituntil_test_close(t);
    return rc;
}

WAITUNTIL_API int waituntil_test_open(waituntil_test **out,
                                      const char *conf_path,
                                      const char *prefix,
                                      const web_handler_def *handlers,
                                      size_t nhandlers, char *eb, size_t el)
{
    waituntil_test *t;
    const char *tmp = getenv("TMPDIR");
    char *mig = NULL, *mig_dir = NULL, line[600];
    size_t nall = 0;
    int rc;

    if (out == NULL || conf_path == NULL)
        return WEB_EINVAL;
    *out = NULL;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return WEB_ENOMEM;
    rc = web_conf_load(conf_path, &t->conf, t->err, sizeof t->err);
    if (rc != WEB_OK)
        return fail_open(t, rc, eb, el);
    if (asprintf(&t->dir, "%s/waituntil-test-XXXXXX",
                 tmp != NULL && *tmp != '\0' ? tmp : "/tmp") < 0) {
        t->dir = NULL;
        return fail_open(t, WEB_ENOMEM, eb, el);
    }
    if (mkdtemp(t->dir) == NULL) {
        set_err(t, "mkdtemp %s: %s", t->dir, strerror(errno));
        free(t->dir);
        t->dir = NULL;
        return fail_open(t, WEB_EIO, eb, el);
    }
    if (asprintf(&t->db_path, "%s/test.db", t->dir) < 0 ||
        asprintf(&t->log_path, "%s/test.log", t->dir) < 0) {
        set_err(t, "out of memory");
        return fail_open(t, WEB_ENOMEM, eb, el);
    }
    rc = web_log_open(&t->log, t->log_path, t->conf->server.log_level,
                      t->err, sizeof t->err);
    if (rc != WEB_OK)
        return fail_open(t, rc, eb, el);

    /* The start's migration step, on the kit's database. */
    mig = app_resolve(prefix != NULL ? prefix : ".",
                      t->conf->database.migrations);
    mig_dir = mig != NULL ? app_migrations_dir(mig, WEB_DB_SQLITE) : NULL;
    free(mig);
    if (mig_dir == NULL) {
        set_err(t, "out of memory");
        return fail_open(t, WEB_ENOMEM, eb, el);
    }
    rc = app_migrate(t->conf, WEB_DB_SQLITE, t->db_path, mig_dir, t->log);
    free(mig_dir);
    if (rc != WEB_OK) {
        set_err(t, "%s", last_log_line(t, line, sizeof line));
        return fail_open(t, WEB_ECONF, eb, el);
    }

    app_pool_config(t->conf, WEB_DB_SQLITE, t->db_path, t->log, &t->pc);
    t->pc.name = "waituntil-test";
    t->pc.journal = DEFER_JOURNAL_OFF;
    rc = defer_pool_create(&t->pool, &t->pc, t->err, sizeof t->err);
    if (rc != DEFER_OK)
        return fail_open(t, rc == DEFER_ENOMEM ? WEB_ENOMEM : WEB_EIO, eb,
                         el);
    rc = app_handlers_merge(handlers, nhandlers, &t->handlers, &nall);
    if (rc != WEB_OK) {
        set_err(t, "%s", rc == WEB_ENOMEM ? "out of memory"
                                          : "a handler without a name or "
                                            "function");
        return fail_open(t, rc, eb, el);
    }
    {
        web_server_config sc = {
            .conf = t->conf,
            .pool = t->pool,
            .handlers = t->handlers,
            .nhandlers = nall,
            .log = t->log,
            .listen = WEB_LISTEN_NONE,
            .db_path = t->db_path,
            .db_cfg = &t->pc.db,
        };
        rc = web_server_create(&t->srv, &sc, t->err, sizeof t->err);
        if (rc != WEB_OK)
            return fail_open(t, rc, eb, el);
    }
    t->arena = web_arena_create(0, t->conf->server.max_body * 3 + (4u << 20));
    if (t->arena == NULL || defer_ctx_create(t->pool, &t->dctx) != DEFER_OK) {
        set_err(t, "out of memory");
        return fail_open(t, WEB_ENOMEM, eb, el);
    }
    if (qb_open(&t->db, t->db_path, &t->pc.db, t->err, sizeof t->err) !=
        QB_OK)
        return fail_open(t, WEB_EIO, eb, el);
    *out = t;
    return WEB_OK;
}

/* "Content-Type: x" -> CONTENT_TYPE=x; "X-Foo: y" -> HTTP_X_FOO=y. */
static char *header_param(const char *h)
{
    const char *colon = strchr(h, ':');
    const char *v;
    char *p, *o;
    size_t nlen;
    if (colon == NULL || colon == h)
        return NULL;
    nlen = (size_t)(colon - h);
    for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
        ;
    p = malloc(5 + nlen + 1 + strlen(v) + 1);
    if (p == NULL)
        return NULL;
    o = p;
    if (!(nlen == 12 && strncasecmp(h, "Content-Type", 12) == 0)) {
        memcpy(o, "HTTP_", 5);
        o += 5;
    }
    for (size_t i = 0; i < nlen; i++) {
        char c = h[i];
        *o++ = c == '-' ? '_'
               : (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A')
                                        : c;
    }
    *o++ = '=';
    strcpy(o, v);
    return p;
}

static void free_envp(char **envp)
{
    if (envp == NULL)
        return;
    for (char **e = envp; *e != NULL; e++)
        free(*e);
    free(envp);
}

/* The params nginx's fastcgi_params would send for this request. */
static char **make_envp(const char *method, const char *uri,
                        const char *const *headers, size_t len)
{
    size_t nh = 0, k = 0;
    char **envp;
    while (headers != NULL && headers[nh] != NULL)
        nh++;
    envp = calloc(nh + 7, sizeof *envp);
    if (envp == NULL)
        return NULL;
    if (asprintf(&envp[k++], "REQUEST_METHOD=%s", method) < 0 ||
        asprintf(&envp[k++], "REQUEST_URI=%s", uri) < 0 ||
        asprintf(&envp[k++], "SERVER_PROTOCOL=HTTP/1.1") < 0 ||
        asprintf(&envp[k++], "REMOTE_ADDR=127.0.0.1") < 0 ||
        asprintf(&envp[k++], "QUERY_STRING=%s",
                 strchr(uri, '?') ? strchr(uri, '?') + 1 : "") < 0 ||
        (len > 0 && asprintf(&envp[k++], "CONTENT_LENGTH=%zu", len) < 0)) {
        envp[k - 1] = NULL;
        free_envp(envp);
        return NULL;
    }
    for (size_t i = 0; i < nh; i++) {
        char *p;
        if (strncasecmp(headers[i], "Content-Length:", 15) == 0)
            continue; /* the kit's own, from len */
        p = header_param(headers[i]);
        if (p == NULL) {
            free_envp(envp);
            return NULL;
        }
        envp[k++] = p;
    }
    envp[k] = NULL;
    return envp;
}

/* Copy the tasks registered on the kit's ctx into the response. */
static int record_writes(waituntil_test *t, size_t n)
{
    t->writes = calloc(n, sizeof *t->writes);
    t->queries = calloc(n, sizeof *t->queries);
    t->debug = calloc(n, sizeof *t->debug);
    t->labels = calloc(n, sizeof *t->labels);
    if (t->writes == NULL || t->queries == NULL || t->debug == NULL ||
        t->labels == NULL)
        return WEB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const qb_query *q = NULL;
        const char *label = NULL;
        if (defer_ctx_task(t->dctx, i, &q, &label) != DEFER_OK)
            return WEB_EINVAL;
        t->nwrites = i + 1;
        t->labels[i] = strdup(label); /* the task's goes at admission */
        if (t->labels[i] == NULL)
            return WEB_ENOMEM;
        t->writes[i].label = t->labels[i];
        if (q != NULL) {
            t->queries[i] = qb_query_dup(q);
            t->debug[i] = qb_query_debug_sql(q);
            if (t->queries[i] == NULL || t->debug[i] == NULL)
                return WEB_ENOMEM;
            t->writes[i].sql = qb_query_sql(t->queries[i]);
            t->writes[i].nparams = qb_query_nparams(t->queries[i]);
            t->writes[i].params = qb_query_params(t->queries[i]);
            t->writes[i].debug_sql = t->debug[i];
        }
    }
    return WEB_OK;
}

/* web__srv_call's hook: the tasks as they will run, and the counters
 * before their admission. */
static void before_admit(void *ud, defer_ctx *dctx)
{
    waituntil_test *t = ud;
    (void)dctx; /* t->dctx */
    t->record_rc = record_writes(t, defer_ctx_count(t->dctx));
    defer_pool_stats(t->pool, &t->before);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until the pool finished `want` more tasks than before and holds
 * none (queued, running or reserved). */
static int wait_done(waituntil_test *t, size_t want, defer_stats *after)
{
    const defer_stats *b = &t->before;
    struct timespec step = {0, 1000000L};
    int64_t end = now_ms() + WAIT_LIMIT_MS;
    for (;;) {
        defer_pool_stats(t->pool, after);
        if ((after->ok + after->failed + after->left) -
                    (b->ok + b->failed + b->left) >=
                want &&
            after->depth == 0)
            return WEB_OK;
        if (now_ms() >= end)
            break;
        nanosleep(&step, NULL);
    }
    t->broken = 1;
    set_err(t, "the request's %zu writes did not finish within %d ms", want,
            WAIT_LIMIT_MS);
    return WEB_EIO;
}

WAITUNTIL_API const waituntil_test_response *
waituntil_test_request(waituntil_test *t, const char *method, const char *uri,
                       const char *const *headers, const void *body,
                       size_t len)
{
    web__srv_answer ans;
    char **envp;
    int rc;

    if (t == NULL)
        return NULL;
    t->err[0] = '\0';
    if (method == NULL || uri == NULL || (body == NULL && len > 0)) {
        set_err(t, "a request needs a method and a uri");
        return NULL;
    }
    if (t->broken) {
        set_err(t, "an earlier request's writes never finished: the kit's "
                   "counts are no longer exact");
        return NULL;
    }
    clear_response(t);
    web_arena_reset(t->arena);
    envp = make_envp(method, uri, headers, len);
    if (envp == NULL) {
        set_err(t, "out of memory, or a header without \"Name: value\"");
        return NULL;
    }
    t->record_rc = WEB_OK;
    rc = web__srv_call(t->srv, envp, body, len, t->arena, t->dctx,
                       &t->req_db, before_admit, t, &ans);
    free_envp(envp);
    if (rc != WEB_OK) {
        set_err(t, "web__srv_call: %s", web_strerror(rc));
        return NULL;
    }
    if (ans.admitted) {
        /* Promised: submitted whatever happens next. */
        defer_stats after;
        defer_submit(t->pool, t->dctx);
        if (wait_done(t, ans.nwrites, &after) != WEB_OK)
            return NULL;
        t->resp.writes_ok = (size_t)(after.ok - t->before.ok);
        t->resp.writes_failed = (size_t)(after.failed - t->before.failed);
    } else if (ans.ninline > 0) {
        defer_stats after;
        defer_pool_stats(t->pool, &after);
        t->resp.writes_failed =
            (size_t)(after.inline_failed - t->before.inline_failed);
        t->resp.writes_ok = ans.ninline - t->resp.writes_failed;
    }
    if (t->record_rc != WEB_OK) {
        set_err(t, "recording the writes: %s", web_strerror(t->record_rc));
        return NULL;
    }
    t->resp.status = ans.status;
    t->resp.content_type = ans.ctype;
    t->body = malloc(ans.body_len + 1);
    if (t->body == NULL) {
        set_err(t, "out of memory");
        return NULL;
    }
    if (ans.body_len > 0)
        memcpy(t->body, ans.body, ans.body_len);
    t->body[ans.body_len] = '\0';
    t->resp.body = t->body;
    t->resp.body_len = ans.body_len;
    t->resp.nheaders = ans.nhdrs < WAITUNTIL_TEST_MAX_HEADERS
                           ? ans.nhdrs
                           : WAITUNTIL_TEST_MAX_HEADERS;
    for (size_t i = 0; i < t->resp.nheaders; i++) {
        t->resp.header_name[i] = ans.hdr_name[i];
        t->resp.header_value[i] = ans.hdr_value[i];
    }
    /* Refused (503) or none: nothing was promised.  t->nwrites stays
     * for clear_response. */
    if (ans.admitted || ans.ninline > 0) {
        t->resp.nwrites = t->nwrites;
        t->resp.writes = t->writes;
    }
    return &t->resp;

}

WAITUNTIL_API const waituntil_test_response *
waituntil_test_get(waituntil_test *t, const char *uri)
{
    return waituntil_test_request(t, "GET", uri, NULL, NULL, 0);
}

WAITUNTIL_API const waituntil_test_response *
waituntil_test_post(waituntil_test *t, const char *uri,
                    const char *content_type, const char *body)
{
    char ct[300];
    const char *hdrs[2] = {NULL, NULL};
    if (content_type != NULL) {
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        hdrs[0] = ct;
    }
    return waituntil_test_request(t, "POST", uri, hdrs, body,
                                  body != NULL ? strlen(body) : 0);
}

WAITUNTIL_API const char *
waituntil_test_header(const waituntil_test_response *r, const char *name)
{
    if (r == NULL || name == NULL)
        return NULL;
    if (strcasecmp(name, "Content-Type") == 0)
        return r->content_type;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->header_name[i], name) == 0)
            return r->header_value[i];
    return NULL;
}

WAITUNTIL_API qb_conn *waituntil_test_db(waituntil_test *t)
{
    return t != NULL ? t->db : NULL;
}

WAITUNTIL_API int64_t waituntil_test_int(waituntil_test *t, const char *sql)
{
    qb_query *q = NULL;
    qb_result *res = NULL;
    int64_t v = INT64_MIN;
    if (t == NULL || sql == NULL)
        return INT64_MIN;
    t->err[0] = '\0';
    if (qb_query_raw(&q, sql, 0, NULL, QB_FETCH_ONE) != QB_OK) {
        set_err(t, "cannot make a query of \"%s\"", sql);
        return INT64_MIN;
    }
    if (qb_exec(t->db, q, &res) != QB_OK)
        set_err(t, "%s", qb_errmsg(t->db));
    else if (qb_result_rows(res) == 0)
        set_err(t, "no row: %s", sql);
    else
        v = qb_result_int(res, 0, 0);
    qb_result_free(res);
    qb_query_free(q);
    return v;
}

WAITUNTIL_API const char *waituntil_test_log(waituntil_test *t)
{
    int fd;
    struct stat st;
    size_t n = 0;
    if (t == NULL)
        return "";
    free(t->logbuf);
    t->logbuf = NULL;
    fd = open(t->log_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= t->log_from) {
        size_t want = (size_t)(st.st_size - t->log_from);
        t->logbuf = malloc(want + 1);
        while (t->logbuf != NULL && n < want) {
            ssize_t got = pread(fd, t->logbuf + n, want - n,
                                t->log_from + (off_t)n);
            if (got <= 0)
                break;
            n += (size_t)got;
        }
    }
    if (fd >= 0)
        close(fd);
    if (t->logbuf == NULL)
        return "";
    t->logbuf[n] = '\0';
    return t->logbuf;
}

WAITUNTIL_API void waituntil_test_log_clear(waituntil_test *t)
{
    struct stat st;
    if (t != NULL && stat(t->log_path, &st) == 0)
        t->log_from = st.st_size;
}

WAITUNTIL_API const char *waituntil_test_error(const waituntil_test *t)
{
    return t != NULL ? t->err : "no kit";
}
