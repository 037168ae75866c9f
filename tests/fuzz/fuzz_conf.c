/*
 * fuzz_conf.c -- libFuzzer harness for the conf parser (web_conf_parse).
 *
 * Feeds the input as conf text.  Checks, beyond "no crash, no leak":
 *   - failure leaves *out NULL and a message "NAME:LINE: ..." in errbuf;
 *   - success gives a tree whose tables and columns are plain identifiers,
 *     whose paths are valid patterns, and which builds a router;
 *   - every source of every deferred query evaluates against a fixed
 *     request without error other than the documented ones.
 * Includes: the input is named FUZZ_CONF_DIR/f.conf, so a relative
 * "include" reads the fixtures of tests/fuzz/conf/include/ (a few small
 * files, one including itself); a failed parse must then name some file
 * and line ("PATH:LINE: ...").
 * Build and run: see tests/fuzz/conf/README.md.
 */
#define _GNU_SOURCE /* memmem */
#include "web.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef FUZZ_CONF_DIR
#define FUZZ_CONF_DIR "tests/fuzz/conf/include"
#endif
#define FUZZ_NAME FUZZ_CONF_DIR "/f.conf"

/* "PATH:LINE: " at the start of err. */
static int has_position(const char *err)
{
    const char *p = strstr(err, ":");
    if (p == NULL || p == err || p[1] < '0' || p[1] > '9')
        return 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
        ;
    return p[0] == ':' && p[1] == ' ';
}

static void check_ident(const char *s)
{
    size_t i, n = strlen(s);
    if (n == 0 || n > 128 || (s[0] >= '0' && s[0] <= '9'))
        abort();
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_'))
            abort();
    }
}

static void check_cols(const web_column *c, size_t n, const web_request *r,
                       const web_match *m)
{
    size_t i;
    for (i = 0; i < n; i++) {
        web_value v;
        int rc;
        check_ident(c[i].column);
        rc = web_source_eval(&c[i].src, r, m, &v);
        if (rc != WEB_OK && rc != WEB_EUTF8)
            abort();
        if (v.type == WEB_V_TEXT && !web_utf8_valid(v.s, v.len))
            abort();
        if (v.type == WEB_V_RAW && c[i].src.kind != WEB_SRC_RAW)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const env[] = {
        "REQUEST_METHOD=POST", "DOCUMENT_URI=/u/42/x",
        "QUERY_STRING=a=1&b=%C3%A9", "HTTP_X_USER_ID=u1",
        "HTTP_X_BAD=\xff", "CONTENT_TYPE=application/json",
        "CONTENT_LENGTH=20", "REMOTE_ADDR=::1", NULL};
    static const char body[] = "{\"n\":1,\"o\":{\"k\":[]}}"; /* 20 */
    web_conf *c = NULL;
    char err[512];
    int rc = web_conf_parse((const char *)data, size, FUZZ_NAME, &c, err,
                            sizeof err);
    if (rc != WEB_OK) {
        /* Without an include every message is about the input itself. */
        if (c != NULL || (rc == WEB_ECONF && !has_position(err)) ||
            (memmem(data, size, "include", 7) == NULL &&
             strncmp(err, FUZZ_NAME ":", strlen(FUZZ_NAME ":")) != 0))
            abort();
        return 0;
    }
    {
        web_arena *a = web_arena_create(0, 1u << 20);
        web_request *r = NULL;
        web_router *router = NULL;
        size_t i, j;
        if (a == NULL)
            abort();
        if (web_request_init(&r, a, (char *const *)env, body, strlen(body),
                             NULL) != WEB_OK)
            abort();
        if (web_conf_router(c, &router) != WEB_OK)
            abort();
        for (i = 0; i < c->nroutes; i++) {
            const web_route_conf *rt = &c->routes[i];
            web_match m;
            memset(&m, 0, sizeof m);
            if (rt->npaths == 0 || (rt->handler == NULL) == (rt->status == 0))
                abort();
            if (rt->max_body > c->server.max_body)
                abort();
            for (j = 0; j < rt->nrequires; j++) {
                web_value v;
                if (rt->requires[j].kind == WEB_SRC_LITERAL ||
                    rt->requires[j].kind == WEB_SRC_RAW)
                    abort();
                if (rt->requires[j].kind == WEB_SRC_BODY && !rt->reads_body)
                    abort();
                (void)web_source_eval(&rt->requires[j], r, &m, &v);
            }
            {
                /* the fixed request's body is valid JSON: only a missing
                 * value or a header that is not UTF-8 may be reported */
                int rc2 = web_route_check_required(rt, r, &m, NULL);
                if (rc2 != WEB_OK && rc2 != WEB_EREQUIRED &&
                    rc2 != WEB_EUTF8)
                    abort();
            }
            for (j = 0; j < rt->npaths; j++)
                if (web_pattern_check(rt->paths[j], NULL, 0) != WEB_OK)
                    abort();
            for (j = 0; j < rt->ndefers; j++) {
                const web_defer *d = &rt->defers[j];
                size_t k;
                check_ident(d->table);
                check_cols(d->cols, d->ncols, r, &m);
                check_cols(d->sets, d->nsets, r, &m);
                check_cols(d->wheres, d->nwheres, r, &m);
                for (k = 0; k < d->nconflict; k++)
                    check_ident(d->conflict[k]);
                for (k = 0; k < d->nconds; k++) {
                    web_value v;
                    (void)web_source_eval(&d->conds[k], r, &m, &v);
                    (void)web_value_present(&v);
                }
            }
        }
        web_router_free(router);
        web_arena_free(a);
    }
    web_conf_free(c);
    return 0;
}
