/*
 * fuzz_request.c -- libFuzzer harness for the request side: envp copy-out,
 * path normalisation, query/form/JSON parsing, router.
 *
 * The same input also goes through the server's steps (web_request_begin,
 * web_request_set_body, the lazy parse) with JSON bounds of depth 4 and 16
 * elements: the parse runs at most once and a refusal has a reason.
 *
 * Input layout: lines up to the first empty line are FastCGI params
 * ("NAME=value", at most 64); the rest is the body.  The whole input is
 * also given, raw, to web_urlencoded_parse, web_path_normalize (both
 * modes) and web_router_match.  Checks, beyond "no crash, no leak":
 *   - decoded args/form fields are valid UTF-8 without NUL, lengths agree;
 *   - a normalised path starts with '/', has no "//", no "." or ".."
 *     segment, and is valid UTF-8;
 *   - a match's captures and tail lie inside the matched path.
 * Build and run: see tests/fuzz/request/README.md.
 */
#include "web.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static web_router *router;

static void build_router(void)
{
    static const struct {
        unsigned m;
        const char *p;
    } rt[] = {
        {WEB_M_GET, "/hello"},          {WEB_M_ANY, "/log"},
        {WEB_M_ANY, "/log/*"},          {WEB_M_GET | WEB_M_POST, "/users/:id"},
        {WEB_M_GET, "/users/me"},       {WEB_M_GET, "/u/:a/p/:b/*"},
        {WEB_M_PUT, "/"},               {WEB_M_DELETE, "/x/"},
    };
    size_t i;
    router = web_router_create();
    if (router == NULL)
        abort();
    for (i = 0; i < sizeof rt / sizeof rt[0]; i++)
        if (web_router_add(router, rt[i].m, rt[i].p, NULL) != WEB_OK)
            abort();
}

static void check_kv(const web_kv *kv, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strlen(kv[i].key) != kv[i].key_len ||
            strlen(kv[i].val) != kv[i].val_len ||
            !web_utf8_valid(kv[i].key, kv[i].key_len) ||
            !web_utf8_valid(kv[i].val, kv[i].val_len))
            abort();
    }
}

static void check_path(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || strlen(p) != n || !web_utf8_valid(p, n) ||
        strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../"))
        abort();
    if ((n >= 2 && strcmp(p + n - 2, "/.") == 0) ||
        (n >= 3 && strcmp(p + n - 3, "/..") == 0))
        abort();
}

static void check_match(const char *path, size_t n, const web_match *m)
{
    size_t i;
    for (i = 0; i < m->ncaptures; i++)
        if (m->captures[i].value < path ||
            m->captures[i].value_len > n ||
            (size_t)(m->captures[i].value - path) >
                n - m->captures[i].value_len)
            abort();
    if (m->tail != NULL &&
        (m->tail < path || (size_t)(m->tail - path) > n - m->tail_len))
        abort();
}

static void try_route(const char *method, const char *path, size_t n)
{
    web_match m;
    int rc = web_router_match(router, method, path, n, &m);
    if (rc == WEB_OK)
        check_match(path, n, &m);
    else if (rc == WEB_EMETHOD && m.allow == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    web_arena *a;
    char *copy, *envp[65], *p, *end;
    size_t ne = 0, body_len = 0, n, i;
    const char *body = NULL;
    web_kv *kv;
    char *out;
    web_request *r;
    web_limits lim;

    if (router == NULL)
        build_router();
    if (size > 1u << 20)
        return 0;
    a = web_arena_create(4096, 8u << 20);
    if (a == NULL)
        abort();

    /* raw parsers on the whole input */
    if (web_urlencoded_parse(a, (const char *)data, size, 1000, &kv, &n) ==
        WEB_OK)
        check_kv(kv, n);
    if (web_path_normalize(a, (const char *)data, size, 1, &out, &n) ==
        WEB_OK)
        check_path(out, n);
    if (web_path_normalize(a, (const char *)data, size, 0, &out, &n) ==
        WEB_OK) {
        check_path(out, n);
        try_route("GET", out, n);
        try_route("POST", out, n);
    }
    try_route("DELETE", (const char *)data, size);
    web_arena_reset(a);

    /* params + body */
    copy = malloc(size + 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    copy[size] = '\0';
    p = copy;
    end = copy + size;
    while (p < end && ne < 64) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if (nl == p) { /* empty line: body follows */
            p++;
            break;
        }
        *nl = '\0';
        envp[ne++] = p;
        p = nl < end ? nl + 1 : end;
    }
    envp[ne] = NULL;
    if (p < end) {
        body = p;
        body_len = (size_t)(end - p);
    }
    web_limits_default(&lim);
    lim.max_params = 32;
    lim.max_query_args = 100;
    lim.max_body = 65536;
    if (web_request_init(&r, a, envp, body, body_len, &lim) == WEB_OK) {
        const char *path = web_request_path(r, &n);
        web_value v;
        check_path(path, n);
        for (i = 0; i < web_request_arg_count(r); i++)
            check_kv(web_request_arg_at(r, i), 1);
        for (i = 0; i < web_request_form_count(r); i++)
            check_kv(web_request_form_at(r, i), 1);
        try_route(web_request_method(r), path, n);
        if (web_request_body_field(r, "a", &v) == WEB_OK &&
            v.type == WEB_V_TEXT && !web_utf8_valid(v.s, v.len))
            abort();
        (void)web_request_body_field(r, "a.b", &v);
        (void)web_request_header(r, "x-user-id", NULL);
        if (strlen(web_request_id(r)) == 0)
            abort();
    }
    web_arena_reset(a);

    /* the same request in the server's steps, with small JSON bounds so
     * that the feeder's early stop is reached: the parse runs at most
     * once, and a refusal always has a reason */
    lim.max_json_depth = 4;
    lim.max_json_elements = 16;
    if (web_request_begin(&r, a, envp, &lim) == WEB_OK &&
        web_request_set_body(r, body, body_len, 4096) == WEB_OK) {
        web_value v;
        const char *why = NULL;
        int rc1 = web_request_body_field(r, "a", &v);
        int rc2 = web_request_parse_body(r);
        if (rc1 != rc2 || web_request_body_parses(r) > 1)
            abort();
        if (web_request_body_result(r, &why) != rc2 ||
            (rc2 == WEB_EBADJSON && why == NULL))
            abort();
        if (rc2 == WEB_OK && v.type == WEB_V_TEXT &&
            !web_utf8_valid(v.s, v.len))
            abort();
    }
    /* the request pointers die here; the arena is reused, as in a server */
    web_arena_reset(a);
    web_arena_free(a);
    free(copy);
    return 0;
}
