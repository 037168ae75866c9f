/*
 * check_web.c -- lib/web request side: arena, request copy-out, query /
 * form / JSON parsing, router, conf parser, source evaluation.
 *
 * Build by hand (until the autotools build lands):
 *   gcc -std=gnu11 -Wall -Wextra -Werror -g -O1 -DWEB_BUILDING \
 *       -Ilib/web -Itests tests/check_web.c tests/testutil.c \
 *       lib/web/{arena,util,request,router,conf,source}.c \
 *       $(pkg-config --cflags --libs check jansson) -pthread \
 *       -o /tmp/check_web
 *   TESTS_SRCDIR=tests /tmp/check_web
 */
#include "web.h"
#include "testutil.h"

#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ==== arena ============================================================== */

static const size_t aligns[] = {1, 2, 4, 8, 16, 32, 64, 256, 4096};

START_TEST(arena_alignment)
{
    web_arena *a = web_arena_create(1024, 0);
    size_t align = aligns[_i], k;
    ck_assert_ptr_nonnull(a);
    for (k = 0; k < 50; k++) {
        /* odd sizes in between, so the next one starts misaligned */
        unsigned char *odd = web_arena_alloc_aligned(a, 1 + k % 7, 1);
        unsigned char *p = web_arena_alloc_aligned(a, 3 + k * 5, align);
        ck_assert_ptr_nonnull(odd);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % align, 0);
        memset(p, 0xab, 3 + k * 5);
    }
    ck_assert_uint_eq((uintptr_t)web_arena_alloc(a, 24) %
                      _Alignof(max_align_t), 0);
    web_arena_free(a);
}
END_TEST

START_TEST(arena_bad_align)
{
    web_arena *a = web_arena_create(0, 0);
    ck_assert_ptr_null(web_arena_alloc_aligned(a, 8, 3));
    ck_assert_ptr_null(web_arena_alloc_aligned(a, 8, 0));
    ck_assert_ptr_null(web_arena_alloc_aligned(a, 8, 8192));
    ck_assert_ptr_null(web_arena_alloc(a, SIZE_MAX));
    ck_assert_ptr_null(web_arena_alloc(a, SIZE_MAX - 10));
    ck_assert_ptr_nonnull(web_arena_alloc(a, 8)); /* still usable */
    web_arena_free(a);
}
END_TEST

START_TEST(arena_bound)
{
    web_arena *a = web_arena_create(4096, 16384);
    size_t got = 0;
    void *big;
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_null(web_arena_create(8192, 4096));
    /* A single request larger than what is left fails cleanly. */
    ck_assert_ptr_null(web_arena_alloc(a, 20000));
    while (web_arena_alloc(a, 100) != NULL) {
        got += 100;
        ck_assert_uint_le(got, 16384);
    }
    ck_assert_uint_ge(got, 12000);
    ck_assert_uint_le(web_arena_reserved(a), 16384);
    /* After a reset the whole budget is available again. */
    web_arena_reset(a);
    big = web_arena_alloc(a, 12000);
    ck_assert_ptr_nonnull(big);
    memset(big, 1, 12000);
    web_arena_free(a);
}
END_TEST

START_TEST(arena_reset_reuses_first_chunk)
{
    web_arena *a = web_arena_create(2048, 0);
    void *first, *again;
    int round;
    ck_assert_ptr_nonnull(a);
    first = web_arena_alloc(a, 64);
    for (round = 0; round < 20; round++) {
        size_t k;
        for (k = 0; k < 40; k++)
            ck_assert_ptr_nonnull(web_arena_alloc(a, 100));
        ck_assert_ptr_nonnull(web_arena_alloc(a, 100000)); /* own chunk */
        ck_assert_uint_gt(web_arena_reserved(a), 2048);
        web_arena_reset(a);
        ck_assert_uint_eq(web_arena_reserved(a), 2048);
        ck_assert_uint_eq(web_arena_used(a), 0);
        again = web_arena_alloc(a, 64);
        ck_assert_ptr_eq(again, first);
    }
    web_arena_reset(NULL);
    web_arena_free(NULL);
    web_arena_free(a);
}
END_TEST

START_TEST(arena_large_keeps_current_tail)
{
    web_arena *a = web_arena_create(4096, 0);
    char *s1 = web_arena_alloc_aligned(a, 10, 1);
    char *big = web_arena_alloc_aligned(a, 4090, 1); /* > what is left */
    char *s2 = web_arena_alloc_aligned(a, 10, 1);
    ck_assert_ptr_nonnull(s1);
    ck_assert_ptr_nonnull(big);
    /* the small allocation after a big one still comes from chunk 1 */
    ck_assert_ptr_eq(s2, s1 + 10);
    web_arena_free(a);
}
END_TEST

START_TEST(arena_strndup)
{
    web_arena *a = web_arena_create(0, 0);
    char *s = web_arena_strndup(a, "ab\0cd", 5);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(memcmp(s, "ab\0cd", 6), 0);
    s = web_arena_strdup(a, "hello");
    ck_assert_str_eq(s, "hello");
    ck_assert_ptr_null(web_arena_strdup(a, NULL));
    s = web_arena_strndup(a, "xyz", 0);
    ck_assert_str_eq(s, "");
    web_arena_free(a);
}
END_TEST

static char dispose_log[16];
static void note(void *arg)
{
    size_t n = strlen(dispose_log);
    dispose_log[n] = *(const char *)arg;
    dispose_log[n + 1] = '\0';
}

START_TEST(arena_dispose_order)
{
    web_arena *a = web_arena_create(0, 0);
    dispose_log[0] = '\0';
    ck_assert_int_eq(web_arena_on_reset(a, note, "1"), WEB_OK);
    ck_assert_int_eq(web_arena_on_reset(a, note, "2"), WEB_OK);
    ck_assert_int_eq(web_arena_on_reset(a, note, "3"), WEB_OK);
    web_arena_reset(a);
    ck_assert_str_eq(dispose_log, "321");
    web_arena_reset(a); /* ran once, not again */
    ck_assert_str_eq(dispose_log, "321");
    ck_assert_int_eq(web_arena_on_reset(a, note, "4"), WEB_OK);
    web_arena_free(a);
    ck_assert_str_eq(dispose_log, "3214");
    ck_assert_int_eq(web_arena_on_reset(NULL, note, "x"), WEB_EINVAL);
}
END_TEST

/* ==== request copy-out =================================================== */

#define MAXENV 16

struct req_case {
    const char *env[MAXENV];
    const char *body;
    int rc;
    const char *path;   /* expected path when rc == WEB_OK */
    const char *query;  /* expected raw query, NULL = absent */
};

static const struct req_case req_cases[] = {
    /* 0 normal nginx request */
    {{"REQUEST_METHOD=GET", "DOCUMENT_URI=/hello", "REQUEST_URI=/hello?a=1",
      "QUERY_STRING=a=1", "CONTENT_LENGTH=", "CONTENT_TYPE=",
      "HTTP_HOST=example.com", "REMOTE_ADDR=127.0.0.1", NULL},
     NULL, WEB_OK, "/hello", "a=1"},
    /* 1 no method */
    {{"DOCUMENT_URI=/hello", NULL}, NULL, WEB_EBADREQ, NULL, NULL},
    /* 2 empty method */
    {{"REQUEST_METHOD=", "DOCUMENT_URI=/x", NULL}, NULL, WEB_EBADREQ, NULL,
     NULL},
    /* 3 no path at all */
    {{"REQUEST_METHOD=GET", NULL}, NULL, WEB_EBADPATH, NULL, NULL},
    /* 4 REQUEST_URI only: path and query from it, decoded */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a%20b/c?x=%41", NULL}, NULL,
     WEB_OK, "/a b/c", "x=%41"},
    /* 5 percent-encoded NUL */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a%00b", NULL}, NULL, WEB_EBADPATH,
     NULL, NULL},
    /* 6 dot segments resolved */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a/b/../c/./d", NULL}, NULL, WEB_OK,
     "/a/c/d", NULL},
    /* 7 '..' above the root */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a/../../etc/passwd", NULL}, NULL,
     WEB_EBADPATH, NULL, NULL},
    /* 8 encoded '..' is decoded before the check */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/%2e%2e/etc", NULL}, NULL,
     WEB_EBADPATH, NULL, NULL},
    /* 9 bad escape */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a%zz", NULL}, NULL, WEB_EBADPATH,
     NULL, NULL},
    /* 10 truncated escape */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a%4", NULL}, NULL, WEB_EBADPATH,
     NULL, NULL},
    /* 11 invalid UTF-8 in path */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/%ff", NULL}, NULL, WEB_EBADPATH,
     NULL, NULL},
    /* 12 invalid UTF-8 in query */
    {{"REQUEST_METHOD=GET", "DOCUMENT_URI=/x", "QUERY_STRING=a=%ff", NULL},
     NULL, WEB_EBADQUERY, NULL, NULL},
    /* 13 %00 in query */
    {{"REQUEST_METHOD=GET", "DOCUMENT_URI=/x", "QUERY_STRING=a=%00", NULL},
     NULL, WEB_EBADQUERY, NULL, NULL},
    /* 14 Content-Length does not match the body */
    {{"REQUEST_METHOD=POST", "DOCUMENT_URI=/x", "CONTENT_LENGTH=5", NULL},
     "abc", WEB_EBADREQ, NULL, NULL},
    /* 15 Content-Length not a number */
    {{"REQUEST_METHOD=POST", "DOCUMENT_URI=/x", "CONTENT_LENGTH=-3", NULL},
     "abc", WEB_EBADREQ, NULL, NULL},
    /* 16 malformed JSON body */
    {{"REQUEST_METHOD=POST", "DOCUMENT_URI=/x", "CONTENT_LENGTH=5",
      "CONTENT_TYPE=application/json", NULL},
     "{\"a\":", WEB_EBADJSON, NULL, NULL},
    /* 17 DOCUMENT_URI is already decoded: not decoded twice */
    {{"REQUEST_METHOD=GET", "DOCUMENT_URI=/a%41", NULL}, NULL, WEB_OK,
     "/a%41", NULL},
    /* 18 DOCUMENT_URI is still normalised */
    {{"REQUEST_METHOD=GET", "DOCUMENT_URI=/../x", NULL}, NULL, WEB_EBADPATH,
     NULL, NULL},
    /* 19 merged slashes, trailing slash kept */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=//log///x/", NULL}, NULL, WEB_OK,
     "/log/x/", NULL},
    /* 20 path must be absolute */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=log", NULL}, NULL, WEB_EBADPATH,
     NULL, NULL},
    /* 21 control byte in path (log injection) */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a%0d%0ab", NULL}, NULL,
     WEB_EBADPATH, NULL, NULL},
    /* 22 params without '=' are ignored */
    {{"REQUEST_METHOD=GET", "GARBAGE", "=x", "DOCUMENT_URI=/ok", NULL}, NULL,
     WEB_OK, "/ok", NULL},
    /* 23 valid JSON body with charset parameter */
    {{"REQUEST_METHOD=POST", "DOCUMENT_URI=/x", "CONTENT_LENGTH=7",
      "CONTENT_TYPE=Application/JSON; charset=utf-8", NULL},
     "{\"a\":1}", WEB_OK, "/x", NULL},
    /* 24 '..' down to the root is fine */
    {{"REQUEST_METHOD=GET", "REQUEST_URI=/a/..", NULL}, NULL, WEB_OK, "/",
     NULL},
};

START_TEST(request_table)
{
    const struct req_case *tc = &req_cases[_i];
    web_arena *a = web_arena_create(0, 1u << 20);
    web_request *r = (web_request *)1;
    size_t blen = tc->body ? strlen(tc->body) : 0;
    int rc = web_request_init(&r, a, (char *const *)tc->env, tc->body, blen,
                              NULL);
    ck_assert_msg(rc == tc->rc, "case %d: rc %d (%s), want %d", _i, rc,
                  web_strerror(rc), tc->rc);
    if (rc == WEB_OK) {
        size_t n;
        const char *q;
        ck_assert_str_eq(web_request_path(r, &n), tc->path);
        ck_assert_uint_eq(n, strlen(tc->path));
        q = web_request_query(r, NULL);
        if (tc->query == NULL)
            ck_assert_ptr_null(q);
        else
            ck_assert_str_eq(q, tc->query);
    } else {
        ck_assert_ptr_null(r);
    }
    web_arena_free(a);
}
END_TEST

static web_request *mkreq(web_arena *a, const char *const *env,
                          const char *body, const char *ctype)
{
    const char *full[64];
    char cl[48], ct[128];
    size_t k = 0, i;
    web_request *r;
    int rc;
    for (i = 0; env[i] != NULL && k < 60; i++)
        full[k++] = env[i];
    if (body != NULL) {
        snprintf(cl, sizeof cl, "CONTENT_LENGTH=%zu", strlen(body));
        full[k++] = cl;
    }
    if (ctype != NULL) {
        snprintf(ct, sizeof ct, "CONTENT_TYPE=%s", ctype);
        full[k++] = ct;
    }
    full[k] = NULL;
    rc = web_request_init(&r, a, (char *const *)full, body,
                          body ? strlen(body) : 0, NULL);
    ck_assert_msg(rc == WEB_OK, "mkreq: %s", web_strerror(rc));
    return r;
}

START_TEST(request_accessors)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/u/7",
                         "QUERY_STRING=a=1&b=2&a=3", "REMOTE_ADDR=10.0.0.9",
                         "HTTP_X_USER_ID=alice", "HTTP_HOST=h",
                         "REQUEST_ID=0123456789abcdef0123456789abcdef",
                         "SERVER_PROTOCOL=HTTP/1.1", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r = mkreq(a, env, "x=1", "text/plain");
    size_t n;
    const void *body;
    ck_assert_str_eq(web_request_method(r), "POST");
    ck_assert_uint_eq(web_request_method_bit(r), WEB_M_POST);
    ck_assert_str_eq(web_request_remote_addr(r), "10.0.0.9");
    ck_assert_str_eq(web_request_id(r), "0123456789abcdef0123456789abcdef");
    ck_assert_str_eq(web_request_content_type(r), "text/plain");
    ck_assert_int_eq(web_request_content_length(r), 3);
    body = web_request_body(r, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(memcmp(body, "x=1", 3), 0);
    ck_assert_str_eq(web_request_param(r, "SERVER_PROTOCOL", NULL),
                     "HTTP/1.1");
    ck_assert_ptr_null(web_request_param(r, "NOPE", &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(web_request_header_count(r), 2);
    /* duplicate query keys: first wins, all retrievable in order */
    ck_assert_str_eq(web_request_arg(r, "a", NULL), "1");
    ck_assert_uint_eq(web_request_arg_count(r), 3);
    ck_assert_str_eq(web_request_arg_at(r, 2)->val, "3");
    ck_assert_ptr_null(web_request_arg_at(r, 3));
    ck_assert_ptr_null(web_request_arg(r, "zz", NULL));
    /* text/plain bodies are kept, not parsed */
    ck_assert_uint_eq(web_request_form_count(r), 0);
    {
        struct timespec ts = web_request_time(r);
        ck_assert_int_gt(ts.tv_sec, 1700000000);
    }
    web_arena_free(a);
}
END_TEST

static const char *const hdr_names[] = {"X-User-ID", "x-user-id",
                                        "X_USER_ID", "x_user_id",
                                        "X-uSeR-Id"};

START_TEST(request_header_case)
{
    const char *env[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/",
                         "HTTP_X_USER_ID=alice", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r = mkreq(a, env, NULL, NULL);
    size_t n;
    const char *name, *val;
    ck_assert_str_eq(web_request_header(r, hdr_names[_i], &n), "alice");
    ck_assert_uint_eq(n, 5);
    ck_assert_ptr_null(web_request_header(r, "X-User", NULL));
    ck_assert_ptr_null(web_request_header(r, "X-User-IDs", NULL));
    ck_assert_int_eq(web_request_header_at(r, 0, &name, &val, &n), WEB_OK);
    ck_assert_str_eq(name, "X_USER_ID");
    ck_assert_int_eq(web_request_header_at(r, 1, &name, &val, &n),
                     WEB_EINVAL);
    web_arena_free(a);
}
END_TEST

START_TEST(request_duplicate_params)
{
    const char *env[] = {"REQUEST_METHOD=GET", "REQUEST_METHOD=POST",
                         "DOCUMENT_URI=/first", "DOCUMENT_URI=/second",
                         "HTTP_X_A=one", "HTTP_X_A=two", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r = mkreq(a, env, NULL, NULL);
    ck_assert_str_eq(web_request_method(r), "GET");
    ck_assert_str_eq(web_request_path(r, NULL), "/first");
    ck_assert_str_eq(web_request_header(r, "x-a", NULL), "one");
    ck_assert_uint_eq(web_request_header_count(r), 2);
    web_arena_free(a);
}
END_TEST

/* 1000 args pass at the default limit; 1001 and 10,000 are refused with
 * one count, before anything is decoded. */
static const struct {
    size_t nargs;
    int rc;
} many_cases[] = {{1000, WEB_OK}, {1001, WEB_ETOOMANY},
                  {10000, WEB_ETOOMANY}};

START_TEST(request_many_query_args)
{
    size_t nargs = many_cases[_i].nargs, k, o = 0;
    char *qs = malloc(nargs * 8 + 32);
    const char *env[4] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/x", NULL,
                          NULL};
    web_arena *a = web_arena_create(0, 8u << 20);
    web_request *r;
    web_limits lim;
    int rc;
    ck_assert_ptr_nonnull(qs);
    o = (size_t)sprintf(qs, "QUERY_STRING=");
    for (k = 0; k < nargs; k++)
        o += (size_t)sprintf(qs + o, "%sa%zu=1", k ? "&" : "", k % 1000);
    env[2] = qs;
    web_limits_default(&lim);
    lim.max_param_len = 1u << 20; /* test the arg count, not the length */
    rc = web_request_init(&r, a, (char *const *)env, NULL, 0, &lim);
    ck_assert_int_eq(rc, many_cases[_i].rc);
    if (rc == WEB_OK)
        ck_assert_uint_eq(web_request_arg_count(r), nargs);
    ck_assert_int_eq(web_http_status(WEB_ETOOMANY), 431);
    web_arena_free(a);
    free(qs);
}
END_TEST

START_TEST(request_too_many_params)
{
    web_limits lim;
    const char **env = calloc(2002, sizeof(char *));
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    size_t k;
    ck_assert_ptr_nonnull(env);
    env[0] = "REQUEST_METHOD=GET";
    env[1] = "DOCUMENT_URI=/x";
    for (k = 2; k < 2001; k++)
        env[k] = "HTTP_X=1";
    web_limits_default(&lim);
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, NULL, 0,
                                      &lim), WEB_ETOOMANY);
    lim.max_params = 3000;
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, NULL, 0,
                                      &lim), WEB_OK);
    web_arena_free(a);
    free(env);
}
END_TEST

START_TEST(request_huge_header)
{
    size_t big = 200000;
    char *h = malloc(big + 16);
    const char *env[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/x", NULL,
                         NULL};
    web_arena *a = web_arena_create(0, 1u << 20);
    web_request *r;
    ck_assert_ptr_nonnull(h);
    memcpy(h, "HTTP_X_BIG=", 11);
    memset(h + 11, 'v', big);
    h[11 + big] = '\0';
    env[2] = h;
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, NULL, 0,
                                      NULL), WEB_EHEADER);
    ck_assert_int_eq(web_http_status(WEB_EHEADER), 431);
    web_arena_free(a);
    free(h);
}
END_TEST

START_TEST(request_body_limits)
{
    web_limits lim;
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/x", NULL,
                         NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    web_limits_default(&lim);
    lim.max_body = 4;
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, "12345", 5,
                                      &lim), WEB_ETOOBIG);
    env[2] = "CONTENT_LENGTH=99";
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, "1234", 4,
                                      &lim), WEB_ETOOBIG);
    ck_assert_int_eq(web_http_status(WEB_ETOOBIG), 413);
    /* the arena bound stops a body the limits would let through */
    web_arena_free(a);
    a = web_arena_create(1024, 4096);
    lim.max_body = 1u << 20;
    {
        char *body = calloc(1, 10000);
        env[2] = NULL;
        ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, body,
                                          10000, &lim), WEB_ETOOBIG);
        free(body);
    }
    web_arena_free(a);
}
END_TEST

START_TEST(request_copies_everything)
{
    char m[] = "REQUEST_METHOD=GET", u[] = "DOCUMENT_URI=/abc",
         h[] = "HTTP_X_USER_ID=bob", q[] = "QUERY_STRING=k=v";
    char body[] = "k2=v2";
    char ct[] = "CONTENT_TYPE=application/x-www-form-urlencoded";
    char *env[] = {m, u, h, q, ct, NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    web_value v;
    ck_assert_int_eq(web_request_init(&r, a, env, body, 5, NULL), WEB_OK);
    /* libfcgi frees these at FCGX_Finish_r: scribble over them */
    memset(m, 'X', sizeof m - 1);
    memset(u, 'X', sizeof u - 1);
    memset(h, 'X', sizeof h - 1);
    memset(q, 'X', sizeof q - 1);
    memset(body, 'X', sizeof body - 1);
    env[0] = env[1] = NULL;
    ck_assert_str_eq(web_request_method(r), "GET");
    ck_assert_str_eq(web_request_path(r, NULL), "/abc");
    ck_assert_str_eq(web_request_header(r, "X-User-ID", NULL), "bob");
    ck_assert_str_eq(web_request_arg(r, "k", NULL), "v");
    ck_assert_int_eq(web_request_body_field(r, "k2", &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_TEXT);
    ck_assert_str_eq(v.s, "v2");
    web_arena_free(a);
}
END_TEST

static const struct {
    const char *param;  /* REQUEST_ID=..., or NULL */
    int kept;
} id_cases[] = {
    {"REQUEST_ID=4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e", 1},
    {"REQUEST_ID=abc-DEF_1.2", 1},
    {NULL, 0},
    {"REQUEST_ID=", 0},
    {"REQUEST_ID=has space", 0},
    {"REQUEST_ID=0123456789012345678901234567890123456789012345678901234567890123456789",
     0},
};

START_TEST(request_id)
{
    const char *env[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/", NULL, NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    const char *id;
    size_t k;
    env[2] = id_cases[_i].param;
    r = mkreq(a, env, NULL, NULL);
    id = web_request_id(r);
    ck_assert_ptr_nonnull(id);
    if (id_cases[_i].kept) {
        ck_assert_str_eq(id, id_cases[_i].param + 11);
    } else {
        ck_assert_uint_eq(strlen(id), 32);
        for (k = 0; k < 32; k++)
            ck_assert(strchr("0123456789abcdef", id[k]) != NULL);
    }
    web_arena_free(a);
}
END_TEST

/* ==== query / form parsing =============================================== */

static const struct {
    const char *in;
    int rc;
    const char *want; /* pairs as k=v|k|... ('=' only if has_eq) */
} qs_cases[] = {
    {"a=1&b=2", WEB_OK, "a=1|b=2"},
    {"a=1&a=2", WEB_OK, "a=1|a=2"},
    {"a+b=c+d", WEB_OK, "a b=c d"},
    {"%41%42=%7e%2B", WEB_OK, "AB=~+"},
    {"flag", WEB_OK, "flag"},
    {"flag&x=", WEB_OK, "flag|x="},
    {"=v", WEB_OK, "=v"},
    {"&&a=1&&", WEB_OK, "a=1"},
    {"", WEB_OK, ""},
    {"a=b=c", WEB_OK, "a=b=c"},
    {"k=%c3%a9", WEB_OK, "k=\xc3\xa9"},
    {"k=\xe2\x82\xac", WEB_OK, "k=\xe2\x82\xac"},
    {"a=%", WEB_EBADQUERY, NULL},
    {"a=%4", WEB_EBADQUERY, NULL},
    {"a=%zz", WEB_EBADQUERY, NULL},
    {"a=%00", WEB_EBADQUERY, NULL},
    {"a=%ff", WEB_EBADQUERY, NULL},
    {"%ff=a", WEB_EBADQUERY, NULL},
    {"a=%ed%a0%80", WEB_EBADQUERY, NULL},  /* surrogate */
    {"a=%c0%af", WEB_EBADQUERY, NULL},     /* overlong '/' */
    {"a=%f4%90%80%80", WEB_EBADQUERY, NULL}, /* > U+10FFFF */
    {"a=\xc3", WEB_EBADQUERY, NULL},       /* truncated sequence */
};

START_TEST(query_table)
{
    web_arena *a = web_arena_create(0, 0);
    web_kv *kv;
    size_t n, k;
    char got[256] = "";
    const char *in = qs_cases[_i].in;
    int rc = web_urlencoded_parse(a, in, strlen(in), 100, &kv, &n);
    ck_assert_msg(rc == qs_cases[_i].rc, "case %d: rc %d", _i, rc);
    if (rc != WEB_OK) {
        ck_assert_ptr_null(kv);
        ck_assert_uint_eq(n, 0);
        web_arena_free(a);
        return;
    }
    for (k = 0; k < n; k++) {
        size_t o = strlen(got);
        snprintf(got + o, sizeof got - o, "%s%s%s%s", k ? "|" : "",
                 kv[k].key, kv[k].has_eq ? "=" : "", kv[k].val);
        ck_assert_uint_eq(strlen(kv[k].key), kv[k].key_len);
        ck_assert_uint_eq(strlen(kv[k].val), kv[k].val_len);
    }
    ck_assert_str_eq(got, qs_cases[_i].want);
    web_arena_free(a);
}
END_TEST

START_TEST(query_limit_counts_pairs)
{
    web_arena *a = web_arena_create(0, 0);
    web_kv *kv;
    size_t n;
    ck_assert_int_eq(web_urlencoded_parse(a, "a&b&c", 5, 3, &kv, &n), WEB_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(web_urlencoded_parse(a, "a&b&c&d", 7, 3, &kv, &n),
                     WEB_ETOOMANY);
    /* empty pairs do not count */
    ck_assert_int_eq(web_urlencoded_parse(a, "a&&&&b&&c&&", 11, 3, &kv, &n),
                     WEB_OK);
    web_arena_free(a);
}
END_TEST

START_TEST(form_body)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/f", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r = mkreq(a, env, "name=J%C3%BCrgen+M&x=1&x=2&empty=",
                           "application/x-www-form-urlencoded; charset=UTF-8");
    web_value v;
    ck_assert_uint_eq(web_request_form_count(r), 4);
    ck_assert_int_eq(web_request_body_field(r, "name", &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_TEXT);
    ck_assert_str_eq(v.s, "J\xc3\xbcrgen M");
    ck_assert_int_eq(web_request_body_field(r, "x", &v), WEB_OK);
    ck_assert_str_eq(v.s, "1");
    ck_assert_str_eq(web_request_form_at(r, 2)->val, "2");
    ck_assert_int_eq(web_request_body_field(r, "empty", &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_TEXT);
    ck_assert_uint_eq(v.len, 0);
    ck_assert_int_eq(web_request_body_field(r, "nope", &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_ABSENT);
    web_arena_free(a);
}
END_TEST

START_TEST(form_body_invalid)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/f",
                         "CONTENT_TYPE=application/x-www-form-urlencoded",
                         NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, "a=%fe", 5,
                                      NULL), WEB_EBADQUERY);
    web_arena_free(a);
}
END_TEST

/* ==== JSON =============================================================== */

static const struct {
    const char *body;
    int rc;
    const char *key;
    web_vtype type;
    const char *s;
    int64_t i;
} json_cases[] = {
    {"{\"a\":\"x\"}", WEB_OK, "a", WEB_V_TEXT, "x", 0},
    {"{\"n\":42}", WEB_OK, "n", WEB_V_INT, NULL, 42},
    {"{\"n\":-9007199254740993}", WEB_OK, "n", WEB_V_INT, NULL,
     -9007199254740993LL},
    {"{\"r\":1.5}", WEB_OK, "r", WEB_V_REAL, NULL, 0},
    {"{\"t\":true}", WEB_OK, "t", WEB_V_BOOL, NULL, 1},
    {"{\"f\":false}", WEB_OK, "f", WEB_V_BOOL, NULL, 0},
    {"{\"z\":null}", WEB_OK, "z", WEB_V_NULL, NULL, 0},
    {"{\"o\":{\"p\":\"q\"}}", WEB_OK, "o.p", WEB_V_TEXT, "q", 0},
    {"{\"o\":{\"p\":[1, 2]}}", WEB_OK, "o", WEB_V_TEXT, "{\"p\":[1,2]}", 0},
    {"{\"a.b\":1,\"a\":{\"b\":2}}", WEB_OK, "a.b", WEB_V_INT, NULL, 1},
    {"{\"a\":{\"b\":2}}", WEB_OK, "a.c", WEB_V_ABSENT, NULL, 0},
    {"{\"a\":1}", WEB_OK, "a.b", WEB_V_ABSENT, NULL, 0},
    {"{\"u\":\"\\u00e9\"}", WEB_OK, "u", WEB_V_TEXT, "\xc3\xa9", 0},
    {"[1,2]", WEB_OK, "0", WEB_V_ABSENT, NULL, 0},
    {"\"str\"", WEB_OK, "a", WEB_V_ABSENT, NULL, 0},
    {"{\"s\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}", WEB_OK, "s",
     WEB_V_TEXT, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 0},
    {"{\"a\":", WEB_EBADJSON, NULL, WEB_V_ABSENT, NULL, 0},
    {"{a:1}", WEB_EBADJSON, NULL, WEB_V_ABSENT, NULL, 0},
    {"{\"a\":1} x", WEB_EBADJSON, NULL, WEB_V_ABSENT, NULL, 0},
    {"{\"a\":\"\xff\"}", WEB_EBADJSON, NULL, WEB_V_ABSENT, NULL, 0},
    {"{\"a\":\"\\ud800\"}", WEB_EBADJSON, NULL, WEB_V_ABSENT, NULL, 0},
    {"{\"a\":\"\\u0000\"}", WEB_EBADJSON, NULL, WEB_V_ABSENT, NULL, 0},
    {"{\"a\":1,\"a\":2}", WEB_EBADJSON, NULL, WEB_V_ABSENT, NULL, 0},
};

START_TEST(json_table)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j", NULL,
                         NULL, NULL};
    char cl[48];
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    web_value v;
    const char *body = json_cases[_i].body;
    int rc;
    snprintf(cl, sizeof cl, "CONTENT_LENGTH=%zu", strlen(body));
    env[2] = cl;
    env[3] = "CONTENT_TYPE=application/json";
    rc = web_request_init(&r, a, (char *const *)env, body, strlen(body),
                          NULL);
    ck_assert_msg(rc == json_cases[_i].rc, "case %d: rc %d", _i, rc);
    if (rc == WEB_OK) {
        ck_assert_int_eq(web_request_body_field(r, json_cases[_i].key, &v),
                         WEB_OK);
        ck_assert_int_eq(v.type, json_cases[_i].type);
        if (v.type == WEB_V_TEXT) {
            ck_assert_str_eq(v.s, json_cases[_i].s);
            ck_assert_uint_eq(v.len, strlen(json_cases[_i].s));
        }
        if (v.type == WEB_V_INT || v.type == WEB_V_BOOL)
            ck_assert_int_eq(v.i, json_cases[_i].i);
        if (v.type == WEB_V_REAL)
            ck_assert_double_eq(v.d, 1.5);
    }
    ck_assert_int_eq(web_http_status(WEB_EBADJSON), 400);
    web_arena_free(a); /* drops the jansson tree too (valgrind checks) */
}
END_TEST

static const struct {
    size_t depth;
    int rc;
} depth_cases[] = {{1, WEB_OK}, {32, WEB_OK}, {33, WEB_EBADJSON},
                   {5000, WEB_EBADJSON}};

START_TEST(json_depth)
{
    size_t d = depth_cases[_i].depth, k, o = 0;
    char *body = malloc(d * 6 + 16);
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j",
                         "CONTENT_TYPE=application/json", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    ck_assert_ptr_nonnull(body);
    for (k = 0; k < d; k++)
        o += (size_t)sprintf(body + o, k % 2 ? "[" : "{\"a\":");
    body[o++] = '1';
    for (k = d; k-- > 0;)
        body[o++] = k % 2 ? ']' : '}';
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, body, o,
                                      NULL), depth_cases[_i].rc);
    web_arena_free(a);
    free(body);
}
END_TEST

START_TEST(json_empty_body_is_no_json)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j",
                         "CONTENT_TYPE=application/json", "CONTENT_LENGTH=0",
                         NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    web_value v;
    ck_assert_int_eq(web_request_init(&r, a, (char *const *)env, NULL, 0,
                                      NULL), WEB_OK);
    ck_assert_int_eq(web_request_body_field(r, "a", &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_ABSENT);
    web_arena_free(a);
}
END_TEST

/* ---- lazy, bounded body parsing (issue 13, item 2) ---------------------- */

/* A JSON request in steps: params, then the body (not parsed). */
static web_request *begin_json(web_arena *a, const char *body,
                               const web_limits *lim)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j",
                         "CONTENT_TYPE=application/json", NULL};
    web_request *r = NULL;
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, lim),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, body, strlen(body),
                                          lim ? lim->max_body : 1u << 20),
                     WEB_OK);
    return r;
}

START_TEST(body_not_parsed_until_a_field_is_read)
{
    web_arena *a = web_arena_create(0, 0);
    web_request *r = begin_json(a, "{\"a\":", NULL);
    web_value v;
    const char *why = "x";
    size_t n;
    /* a malformed body is accepted as bytes; nothing ran yet */
    ck_assert_uint_eq(web_request_body_parses(r), 0);
    ck_assert_int_eq(web_request_body_result(r, &why), WEB_OK);
    ck_assert_ptr_null(why);
    ck_assert_ptr_nonnull(web_request_body(r, &n));
    ck_assert_uint_eq(n, 5);
    /* the first field read parses, and fails */
    ck_assert_int_eq(web_request_body_field(r, "a", &v), WEB_EBADJSON);
    ck_assert_uint_eq(web_request_body_parses(r), 1);
    ck_assert_int_eq(web_request_body_result(r, &why), WEB_EBADJSON);
    ck_assert_ptr_nonnull(why);
    web_arena_free(a);
}
END_TEST

START_TEST(body_parsed_once)
{
    web_arena *a = web_arena_create(0, 0);
    web_request *r = begin_json(a, "{\"a\":\"x\",\"b\":2}", NULL);
    web_value v;
    ck_assert_int_eq(web_request_body_field(r, "a", &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_TEXT);
    ck_assert_int_eq(web_request_body_field(r, "b", &v), WEB_OK);
    ck_assert_int_eq(v.i, 2);
    ck_assert_int_eq(web_request_parse_body(r), WEB_OK);
    ck_assert_uint_eq(web_request_body_parses(r), 1);
    web_arena_free(a);

    /* a failed parse is not retried either */
    a = web_arena_create(0, 0);
    r = begin_json(a, "[1,", NULL);
    ck_assert_int_eq(web_request_parse_body(r), WEB_EBADJSON);
    ck_assert_int_eq(web_request_body_field(r, "a", &v), WEB_EBADJSON);
    ck_assert_uint_eq(web_request_body_parses(r), 1);
    web_arena_free(a);
}
END_TEST

START_TEST(body_form_parsed_lazily)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/f",
                         "CONTENT_TYPE=application/x-www-form-urlencoded",
                         NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, NULL),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, "a=1&b=2", 7, 100), WEB_OK);
    ck_assert_uint_eq(web_request_body_parses(r), 0);
    ck_assert_uint_eq(web_request_form_count(r), 2);
    ck_assert_str_eq(web_request_form_at(r, 1)->val, "2");
    ck_assert_uint_eq(web_request_body_parses(r), 1);
    web_arena_free(a);
}
END_TEST

/* web_request_init keeps its contract: everything at once. */
START_TEST(body_init_parses_at_once)
{
    web_arena *a = web_arena_create(0, 0);
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j", NULL};
    web_request *r = mkreq(a, env, "{\"a\":1}", "application/json");
    ck_assert_uint_eq(web_request_body_parses(r), 1);
    web_arena_free(a);
}
END_TEST

/* Nothing is parsed for a body that is not form or JSON, or dropped. */
START_TEST(body_other_or_dropped_never_parsed)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j",
                         "CONTENT_TYPE=application/json",
                         "CONTENT_LENGTH=5", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    web_value v;
    size_t n = 9;
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, NULL),
                     WEB_OK);
    /* read and dropped: the length is still checked against
     * CONTENT_LENGTH, no byte is kept, nothing is parsed */
    ck_assert_int_eq(web_request_set_body(r, NULL, 5, 100), WEB_OK);
    ck_assert_ptr_null(web_request_body(r, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(web_request_body_field(r, "a", &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_ABSENT);
    ck_assert_uint_eq(web_request_body_parses(r), 0);
    ck_assert_int_eq(web_request_set_body(r, NULL, 5, 100), WEB_EINVAL);
    web_arena_reset(a);
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, NULL),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, NULL, 4, 100), WEB_EBADREQ);
    web_arena_reset(a);
    env[2] = "CONTENT_TYPE=text/plain";
    env[3] = NULL;
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, NULL),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, "[[[", 3, 100), WEB_OK);
    ck_assert_int_eq(web_request_parse_body(r), WEB_OK);
    ck_assert_uint_eq(web_request_body_parses(r), 0);
    web_arena_free(a);
}
END_TEST

/* The route's max_body (given to set_body) bounds the body and a
 * CONTENT_LENGTH over it; it cannot raise the bound given to begin. */
START_TEST(body_route_max_body_unit)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j", NULL,
                         NULL};
    web_limits lim;
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    web_limits_default(&lim);
    lim.max_body = 8;
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, &lim),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, "12345", 5, 4), WEB_ETOOBIG);
    web_arena_reset(a);
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, &lim),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, "123456789", 9, 100),
                     WEB_ETOOBIG);
    web_arena_reset(a);
    env[2] = "CONTENT_LENGTH=5";
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, &lim),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, NULL, 0, 4), WEB_ETOOBIG);
    web_arena_reset(a);
    env[2] = "CONTENT_LENGTH=9";
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, &lim),
                     WEB_ETOOBIG);
    web_arena_free(a);
}
END_TEST

static const struct {
    const char *body;
    int rc;
} elem_cases[] = {
    /* max_json_elements 3 */
    {"[1,2,3]", WEB_OK},
    {"[1,2,3,4]", WEB_EBADJSON},
    {"{\"a\":1,\"b\":2,\"c\":3}", WEB_OK},
    {"{\"a\":1,\"b\":2,\"c\":3,\"d\":4}", WEB_EBADJSON},
    {"{\"a\":[1],\"b\":2}", WEB_OK},
    {"[[1],[2]]", WEB_EBADJSON},
    {"[[],{},[]]", WEB_OK},
    {"[ [ ] , { } , [ ] ]", WEB_OK},
    {"[\"a,b,c,d\"]", WEB_OK},
    {"[\"a\\\",b,c,d\",1,2]", WEB_OK},
    {"[\"a\\\\\",1,2,3]", WEB_EBADJSON},
    {"\"x,y,z,w,v\"", WEB_OK},
    {"7", WEB_OK},
};

START_TEST(body_json_element_bound)
{
    web_limits lim;
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    const char *why = NULL;
    web_limits_default(&lim);
    lim.max_json_elements = 3;
    r = begin_json(a, elem_cases[_i].body, &lim);
    ck_assert_msg(web_request_parse_body(r) == elem_cases[_i].rc,
                  "case %d (%s)", _i, elem_cases[_i].body);
    if (elem_cases[_i].rc != WEB_OK) {
        ck_assert_int_eq(web_request_body_result(r, &why), WEB_EBADJSON);
        ck_assert_str_eq(why, "JSON body has more than 3 elements");
    }
    web_arena_free(a);
}
END_TEST

static const struct {
    size_t depth;
    int rc;
} cdepth_cases[] = {{3, WEB_OK}, {4, WEB_OK}, {5, WEB_EBADJSON}};

START_TEST(body_json_depth_configurable)
{
    web_limits lim;
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    char body[64];
    size_t d = cdepth_cases[_i].depth, k, o = 0;
    const char *why = NULL;
    for (k = 0; k < d; k++)
        body[o++] = '[';
    for (k = 0; k < d; k++)
        body[o++] = ']';
    body[o] = '\0';
    web_limits_default(&lim);
    lim.max_json_depth = 4;
    r = begin_json(a, body, &lim);
    ck_assert_int_eq(web_request_parse_body(r), cdepth_cases[_i].rc);
    if (cdepth_cases[_i].rc != WEB_OK) {
        web_request_body_result(r, &why);
        ck_assert_str_eq(why, "JSON body nested deeper than 4 levels");
    }
    web_arena_free(a);
}
END_TEST

/* Counting jansson's allocations shows the work is bounded: a 1 MB
 * "[0,0,...]" (524,288 elements) refused at max_json_elements 100 makes
 * jansson build at most about 100 values, not half a million. */
static size_t jansson_mallocs;
static void *count_malloc(size_t n)
{
    jansson_mallocs++;
    return malloc(n);
}

START_TEST(body_json_bound_stops_jansson_early)
{
    web_limits lim;
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    size_t n = 1u << 20, k;
    char *big = malloc(n + 1);
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/j",
                         "CONTENT_TYPE=application/json", NULL};
    ck_assert_ptr_nonnull(big);
    big[0] = '[';
    for (k = 1; k < n - 1; k += 2) {
        big[k] = '0';
        big[k + 1] = ',';
    }
    big[n - 2] = ' '; /* "...,0 ]" */
    big[n - 1] = ']';
    big[n] = '\0';
    web_limits_default(&lim);
    lim.max_json_elements = 100;
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, &lim),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, big, n, n), WEB_OK);
    json_set_alloc_funcs(count_malloc, free);
    ck_assert_int_eq(web_request_parse_body(r), WEB_EBADJSON);
    json_set_alloc_funcs(malloc, free);
    ck_assert_msg(jansson_mallocs < 1000, "jansson made %zu allocations",
                  jansson_mallocs);
    web_arena_free(a);
    free(big);
}
END_TEST

/* A malformed body's reason says where, never what. */
START_TEST(body_json_reason_does_not_echo_the_body)
{
    web_arena *a = web_arena_create(0, 0);
    web_request *r = begin_json(a, "{\"a\":\"secret\",\"a\":1}", NULL);
    const char *why = NULL;
    ck_assert_int_eq(web_request_parse_body(r), WEB_EBADJSON);
    web_request_body_result(r, &why);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_null(strstr(why, "secret"));
    {
        const char *want = "invalid JSON body: duplicate object key at "
                           "line 1, column ";
        ck_assert_msg(strncmp(why, want, strlen(want)) == 0, "%s", why);
    }
    web_arena_free(a);
}
END_TEST

START_TEST(media_type_matching)
{
    ck_assert(web_media_type_is("application/json", "application/json"));
    ck_assert(web_media_type_is(" Application/JSON ; charset=utf-8",
                                "application/json"));
    ck_assert(!web_media_type_is("application/jsonx", "application/json"));
    ck_assert(!web_media_type_is(NULL, "application/json"));
}
END_TEST

/* ---- require, checked against a request ---------------------------------- */

static const web_route_conf *require_route(web_conf **c, const char *text)
{
    char err[256];
    ck_assert_msg(web_conf_parse(text, strlen(text), "q.conf", c, err,
                                 sizeof err) == WEB_OK, "%s", err);
    return &(*c)->routes[0];
}

START_TEST(require_all_present)
{
    web_conf *c;
    const web_route_conf *rt = require_route(
        &c, "route POST /x { require $body_a $http_x_k $arg_q; respond 200; }");
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/x",
                         "QUERY_STRING=q=1", "HTTP_X_K=v", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r = mkreq(a, env, "{\"a\":0}", "application/json");
    const web_source *missing = (const web_source *)1;
    /* 0 is present: only absent, null and "" are missing */
    ck_assert_int_eq(web_route_check_required(rt, r, NULL, &missing), WEB_OK);
    ck_assert_ptr_null(missing);
    web_arena_free(a);
    web_conf_free(c);
}
END_TEST

static const struct {
    const char *body;
    const char *header;  /* HTTP_X_K=... or NULL */
    int rc;
    size_t missing;      /* index in the require list */
} req_missing_cases[] = {
    {"{\"b\":1}", "HTTP_X_K=v", WEB_EREQUIRED, 0},
    {"{\"a\":null}", "HTTP_X_K=v", WEB_EREQUIRED, 0},
    {"{\"a\":\"\"}", "HTTP_X_K=v", WEB_EREQUIRED, 0},
    {"{\"a\":false}", NULL, WEB_EREQUIRED, 1},
    {"{\"a\":1}", "HTTP_X_K=", WEB_EREQUIRED, 1},
    {"{\"a\":", "HTTP_X_K=v", WEB_EBADJSON, 0},
    {"{\"a\":1}", "HTTP_X_K=\xff", WEB_EUTF8, 0},
};

START_TEST(require_reports_the_first_missing)
{
    web_conf *c;
    const web_route_conf *rt = require_route(
        &c, "route POST /x { require $body_a $http_x_k; respond 200; }");
    /* a NULL header ends the list early: no X-K at all */
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/x",
                         "CONTENT_TYPE=application/json",
                         req_missing_cases[_i].header, NULL};
    const char *body = req_missing_cases[_i].body;
    web_arena *a = web_arena_create(0, 0);
    web_request *r;
    const web_source *missing = NULL;
    ck_assert_int_eq(web_request_begin(&r, a, (char *const *)env, NULL),
                     WEB_OK);
    ck_assert_int_eq(web_request_set_body(r, body, strlen(body), 1024),
                     WEB_OK);
    ck_assert_int_eq(web_route_check_required(rt, r, NULL, &missing),
                     req_missing_cases[_i].rc);
    if (req_missing_cases[_i].rc == WEB_EREQUIRED)
        ck_assert_ptr_eq(missing,
                         &rt->requires[req_missing_cases[_i].missing]);
    else
        ck_assert_ptr_null(missing);
    web_arena_free(a);
    web_conf_free(c);
}
END_TEST

/* A route without require reads nothing: its body is not parsed. */
START_TEST(require_none_reads_nothing)
{
    web_conf *c;
    const web_route_conf *rt = require_route(
        &c, "route POST /x { respond 200; }");
    web_arena *a = web_arena_create(0, 0);
    web_request *r = begin_json(a, "{\"a\":", NULL);
    ck_assert_int_eq(web_route_check_required(rt, r, NULL, NULL), WEB_OK);
    ck_assert_uint_eq(web_request_body_parses(r), 0);
    web_arena_free(a);
    web_conf_free(c);
}
END_TEST

static const struct {
    web_source_kind kind;
    const char *text;
    const char *what;
    const char *name;
} client_names[] = {
    {WEB_SRC_BODY, "user.email", "body field", "user.email"},
    {WEB_SRC_HTTP, "X_User_ID", "header", "x-user-id"},
    {WEB_SRC_ARG, "page", "query argument", "page"},
    {WEB_SRC_SEG, "id", "path segment", "id"},
    {WEB_SRC_CONTENT_TYPE, NULL, "value", "$content_type"},
};

START_TEST(source_client_names)
{
    web_source src;
    char buf[64];
    const char *what = NULL;
    memset(&src, 0, sizeof src);
    src.kind = client_names[_i].kind;
    src.text = client_names[_i].text;
    src.len = src.text ? strlen(src.text) : 0;
    ck_assert_str_eq(web_source_client_name(&src, &what, buf, sizeof buf),
                     client_names[_i].name);
    ck_assert_str_eq(what, client_names[_i].what);
    /* cut to the buffer, never past it */
    ck_assert_uint_le(strlen(web_source_client_name(&src, NULL, buf, 4)), 3);
}
END_TEST

/* ==== router ============================================================= */

static const struct {
    unsigned methods;
    const char *pattern;
} routes[] = {
    /* 0 */ {WEB_M_GET, "/hello"},
    /* 1 */ {WEB_M_ANY, "/log"},
    /* 2 */ {WEB_M_ANY, "/log/*"},
    /* 3 */ {WEB_M_GET | WEB_M_POST, "/users/:id"},
    /* 4 */ {WEB_M_GET, "/users/me"},
    /* 5 */ {WEB_M_DELETE, "/users/:id"},
    /* 6 */ {WEB_M_GET, "/users/:id/posts/:post"},
    /* 7 */ {WEB_M_GET, "/files/*"},
    /* 8 */ {WEB_M_GET, "/files/static/*"},
    /* 9 */ {WEB_M_POST, "/a/:x/c"},
    /* 10 */ {WEB_M_POST, "/a/b/:y"},
    /* 11 */ {WEB_M_PUT, "/"},
    /* 12 */ {WEB_M_GET, "/dir/"},
};

static const struct {
    const char *method, *path;
    int rc;
    size_t route;
    const char *cap1;  /* "name=value" of first capture, or NULL */
    const char *tail;  /* or the allow list for WEB_EMETHOD */
} match_cases[] = {
    {"GET", "/hello", WEB_OK, 0, NULL, NULL},
    {"HEAD", "/hello", WEB_OK, 0, NULL, NULL},
    {"POST", "/hello", WEB_EMETHOD, 0, NULL, "GET, HEAD"},
    {"GET", "/nope", WEB_ENOTFOUND, 0, NULL, NULL},
    {"GET", "/hello/", WEB_ENOTFOUND, 0, NULL, NULL},
    {"GET", "/log", WEB_OK, 1, NULL, NULL},
    {"POST", "/log/x/y", WEB_OK, 2, NULL, "x/y"},
    {"GET", "/log/", WEB_OK, 2, NULL, ""},
    {"GET", "/logx", WEB_ENOTFOUND, 0, NULL, NULL},
    {"PROPFIND", "/log", WEB_OK, 1, NULL, NULL},
    {"GET", "/users/me", WEB_OK, 4, NULL, NULL},
    {"POST", "/users/me", WEB_OK, 3, "id=me", NULL},
    {"GET", "/users/42", WEB_OK, 3, "id=42", NULL},
    {"DELETE", "/users/42", WEB_OK, 5, "id=42", NULL},
    {"PUT", "/users/42", WEB_EMETHOD, 0, NULL, "GET, HEAD, POST, DELETE"},
    {"GET", "/users/42/posts/7", WEB_OK, 6, "id=42", NULL},
    {"GET", "/users/", WEB_ENOTFOUND, 0, NULL, NULL},
    {"GET", "/files/static/x.css", WEB_OK, 8, NULL, "x.css"},
    {"GET", "/files/x/y", WEB_OK, 7, NULL, "x/y"},
    {"POST", "/a/b/c", WEB_OK, 9, "x=b", NULL},
    {"POST", "/a/z/c", WEB_OK, 9, "x=z", NULL},
    {"POST", "/a/b/z", WEB_OK, 10, "y=z", NULL},
    {"PUT", "/", WEB_OK, 11, NULL, NULL},
    {"GET", "/", WEB_EMETHOD, 0, NULL, "PUT"},
    {"GET", "/dir/", WEB_OK, 12, NULL, NULL},
    {"GET", "/dir", WEB_ENOTFOUND, 0, NULL, NULL},
    {"GET", "relative", WEB_ENOTFOUND, 0, NULL, NULL},
};

static web_router *build_router(int reverse)
{
    web_router *r = web_router_create();
    size_t k;
    ck_assert_ptr_nonnull(r);
    for (k = 0; k < NELEM(routes); k++) {
        size_t i = reverse ? NELEM(routes) - 1 - k : k;
        ck_assert_int_eq(web_router_add(r, routes[i].methods,
                                        routes[i].pattern, (void *)&routes[i]),
                         WEB_OK);
    }
    return r;
}

static void check_match(web_router *r, int i)
{
    web_match m;
    const char *path = match_cases[i].path;
    int rc = web_router_match(r, match_cases[i].method, path, strlen(path),
                              &m);
    ck_assert_msg(rc == match_cases[i].rc, "case %d (%s %s): rc %d", i,
                  match_cases[i].method, path, rc);
    if (rc == WEB_OK) {
        ck_assert_msg(m.data == &routes[match_cases[i].route],
                      "case %d: got route %s", i, m.pattern);
        if (match_cases[i].cap1 != NULL) {
            char got[64];
            ck_assert_uint_ge(m.ncaptures, 1);
            snprintf(got, sizeof got, "%.*s=%.*s",
                     (int)m.captures[0].name_len, m.captures[0].name,
                     (int)m.captures[0].value_len, m.captures[0].value);
            ck_assert_str_eq(got, match_cases[i].cap1);
        }
        if (match_cases[i].tail != NULL) {
            ck_assert_ptr_nonnull(m.tail);
            ck_assert_uint_eq(m.tail_len, strlen(match_cases[i].tail));
            ck_assert_int_eq(memcmp(m.tail, match_cases[i].tail, m.tail_len),
                             0);
        } else {
            ck_assert_ptr_null(m.tail);
        }
    } else if (rc == WEB_EMETHOD) {
        ck_assert_str_eq(m.allow_str, match_cases[i].tail);
    }
}

START_TEST(router_table)
{
    web_router *r = build_router(0);
    check_match(r, _i);
    web_router_free(r);
}
END_TEST

/* Precedence is by class and length, not declaration order, except for the
 * one tie in the table (/a/:x/c vs /a/b/:y), which goes to the first. */
START_TEST(router_table_reversed)
{
    web_router *r = build_router(1);
    if (match_cases[_i].route == 9 || match_cases[_i].route == 10) {
        web_match m;
        ck_assert_int_eq(web_router_match(r, "POST", "/a/b/c", 6, &m), WEB_OK);
        ck_assert_ptr_eq(m.data, &routes[10]);
    } else {
        check_match(r, _i);
    }
    web_router_free(r);
}
END_TEST

START_TEST(router_params)
{
    web_router *r = build_router(0);
    web_match m;
    size_t n;
    const char *p = "/users/42/posts/7?ignored", *v;
    ck_assert_int_eq(web_router_match(r, "GET", p, 17, &m), WEB_OK);
    ck_assert_uint_eq(m.ncaptures, 2);
    v = web_match_param(&m, "post", &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(memcmp(v, "7", n), 0);
    v = web_match_param(&m, "id", &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(memcmp(v, "42", n), 0);
    ck_assert_ptr_null(web_match_param(&m, "nope", &n));
    ck_assert_str_eq(m.pattern, "/users/:id/posts/:post");
    web_router_free(r);
    web_router_free(NULL);
}
END_TEST

/* A built router is read-only: several threads match at once (run this
 * under -fsanitize=thread).  Threads only count; the test's own thread
 * asserts after joining. */
struct reader {
    web_router *r;
    size_t bad;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    size_t round, i;
    for (round = 0; round < 200; round++) {
        for (i = 0; i < NELEM(match_cases); i++) {
            web_match m;
            const char *p = match_cases[i].path;
            int rc = web_router_match(rd->r, match_cases[i].method, p,
                                      strlen(p), &m);
            if (rc != match_cases[i].rc ||
                (rc == WEB_OK && m.data != &routes[match_cases[i].route]))
                rd->bad++;
        }
    }
    return NULL;
}

START_TEST(router_concurrent_readers)
{
    web_router *r = build_router(0);
    pthread_t th[4];
    struct reader rd[4];
    size_t k;
    for (k = 0; k < 4; k++) {
        rd[k].r = r;
        rd[k].bad = 0;
        ck_assert_int_eq(pthread_create(&th[k], NULL, reader_main, &rd[k]),
                         0);
    }
    for (k = 0; k < 4; k++) {
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        ck_assert_uint_eq(rd[k].bad, 0);
    }
    web_router_free(r);
}
END_TEST

static const char *const bad_patterns[] = {
    "", "hello", "/a//b", "/a/*/b", "/a*", "/*x", "/:", "/:1a", "/:a-b",
    "/:id/:id", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/1/2/3/4/5/6/7",
    "/:a/:b/:c/:d/:e/:f/:g/:h/:i",
};

START_TEST(router_bad_patterns)
{
    web_router *r = web_router_create();
    char err[128];
    ck_assert_int_eq(web_pattern_check(bad_patterns[_i], err, sizeof err),
                     WEB_EINVAL);
    ck_assert_uint_gt(strlen(err), 0);
    ck_assert_int_eq(web_router_add(r, WEB_M_GET, bad_patterns[_i], NULL),
                     WEB_EINVAL);
    ck_assert_int_eq(web_router_add(r, 0, "/ok", NULL), WEB_EINVAL);
    ck_assert_int_eq(web_pattern_check("/ok/:a/*", err, sizeof err), WEB_OK);
    web_router_free(r);
}
END_TEST

START_TEST(router_bounded)
{
    web_router *r = web_router_create();
    web_match m;
    char path[8192];
    size_t k, o = 0;
    for (k = 0; k < WEB_MAX_ROUTES; k++)
        ck_assert_int_eq(web_router_add(r, WEB_M_GET, "/x/*", NULL), WEB_OK);
    ck_assert_int_eq(web_router_add(r, WEB_M_GET, "/y", NULL), WEB_EFULL);
    /* a path with far more segments than any pattern still matches a
     * prefix route, and costs one bounded split */
    o += (size_t)sprintf(path, "/x");
    for (k = 0; k < 1000; k++)
        o += (size_t)sprintf(path + o, "/s");
    ck_assert_int_eq(web_router_match(r, "GET", path, o, &m), WEB_OK);
    ck_assert_uint_eq(m.tail_len, o - 3);
    web_router_free(r);
}
END_TEST

START_TEST(methods_format)
{
    char buf[80];
    ck_assert_uint_eq(web_methods_format(WEB_M_GET | WEB_M_POST, buf,
                                         sizeof buf), strlen(buf));
    ck_assert_str_eq(buf, "GET, HEAD, POST");
    web_methods_format(WEB_M_ANY, buf, sizeof buf);
    ck_assert_str_eq(buf, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");
    web_methods_format(WEB_M_GET, buf, 5);
    ck_assert_str_eq(buf, "GET,");
    ck_assert_uint_eq(web_method_bit("get"), WEB_M_OTHER);
    ck_assert_uint_eq(web_method_bit(""), 0);
    ck_assert_uint_eq(web_method_bit("PATCH"), WEB_M_PATCH);
}
END_TEST

START_TEST(method_names)
{
    ck_assert_str_eq(web_method_name(WEB_M_GET), "GET");
    ck_assert_str_eq(web_method_name(WEB_M_OPTIONS), "OPTIONS");
    for (unsigned b = 1; b < WEB_M_OTHER; b <<= 1)
        ck_assert_uint_eq(web_method_bit(web_method_name(b)), b);
    ck_assert_ptr_null(web_method_name(0));
    ck_assert_ptr_null(web_method_name(WEB_M_OTHER));
    ck_assert_ptr_null(web_method_name(WEB_M_GET | WEB_M_POST));
}
END_TEST

/* ==== conf =============================================================== */

static const char *col_src(const web_column *c, char *buf, size_t n)
{
    char tmp[128];
    snprintf(buf, n, "%s=%s", c->column, web_source_name(&c->src, tmp,
                                                          sizeof tmp));
    return buf;
}

START_TEST(conf_shipped)
{
    web_conf *c;
    char err[256], b[160];
    const web_route_conf *rt;
    const web_defer *d;
    web_router *router;
    web_match m;
    int rc = web_conf_load(tu_data_path("../conf/waituntil.conf"), &c, err,
                           sizeof err);
    ck_assert_msg(rc == WEB_OK, "%s", err);
    ck_assert_str_eq(c->server.listen, "unix:var/waituntil.sock");
    ck_assert_uint_eq(c->server.socket_mode, 0660);
    ck_assert_uint_eq(c->server.threads, 4);
    ck_assert_uint_eq(c->server.max_body, 1048576);
    ck_assert_uint_eq(c->server.max_params, 1000);
    ck_assert_str_eq(c->server.log, "stderr");
    ck_assert_int_eq(c->server.log_level, WEB_LOG_INFO);
    ck_assert_int_eq(c->server.log_values, WEB_LOG_VALUES_ON);
    ck_assert_ptr_null(c->server.access_log);
    ck_assert_str_eq(c->database.path, "var/waituntil.db");
    ck_assert_str_eq(c->database.journal_mode, "wal");
    ck_assert_int_eq(c->database.busy_timeout_ms, 5000);
    ck_assert_int_eq(c->database.engine, WEB_DB_SQLITE);
    ck_assert_int_eq(c->database.reconnect_ms, 10000);
    ck_assert_uint_eq(c->database.statement_cache, 64);
    ck_assert_str_eq(c->database.migrations, "conf/migrations");
    ck_assert_uint_eq(c->pool.workers, 2);
    ck_assert_uint_eq(c->pool.queue, 65536);
    ck_assert_int_eq(c->pool.admission, WEB_ADMIT_WAIT);
    ck_assert_int_eq(c->pool.admission_wait_ms, 100);
    ck_assert_int_eq(c->pool.drain_timeout_ms, 30000);
    ck_assert_uint_eq(c->nroutes, 7);
    ck_assert_uint_eq(c->server.max_json_depth, 32);
    ck_assert_uint_eq(c->server.max_json_elements, 10000);

    rt = &c->routes[0];
    ck_assert_uint_eq(rt->methods, WEB_M_ANY);
    ck_assert_uint_eq(rt->npaths, 2);
    ck_assert_str_eq(rt->paths[0], "/log");
    ck_assert_str_eq(rt->paths[1], "/log/*");
    ck_assert_int_eq(rt->status, 200);
    ck_assert_str_eq(rt->content_type, "text/plain");
    ck_assert_str_eq(rt->body, "Request logged in the background!");
    ck_assert_uint_eq(rt->ndefers, 1);
    d = &rt->defers[0];
    ck_assert_int_eq(d->kind, WEB_DEFER_INSERT);
    ck_assert_str_eq(d->table, "logs");
    ck_assert_uint_eq(d->ncols, 3);
    ck_assert_str_eq(col_src(&d->cols[0], b, sizeof b),
                     "method=$request_method");
    ck_assert_str_eq(col_src(&d->cols[1], b, sizeof b), "path=$uri");
    ck_assert_str_eq(col_src(&d->cols[2], b, sizeof b),
                     "timestamp=$time_iso");
    ck_assert_uint_eq(d->nconds, 0);

    rt = &c->routes[1];
    ck_assert_uint_eq(rt->methods, WEB_M_POST);
    ck_assert_str_eq(rt->paths[0], "/seen");
    ck_assert_str_eq(rt->body, "User activity updated in the background.");
    d = &rt->defers[0];
    ck_assert_int_eq(d->kind, WEB_DEFER_UPDATE);
    ck_assert_str_eq(d->table, "users");
    ck_assert_uint_eq(d->nconds, 1);
    ck_assert_str_eq(web_source_name(&d->conds[0], b, sizeof b),
                     "$http_x_user_id");
    ck_assert_uint_eq(d->nsets, 1);
    ck_assert_str_eq(col_src(&d->sets[0], b, sizeof b),
                     "last_seen=raw:CURRENT_TIMESTAMP");
    ck_assert_int_eq(d->sets[0].src.kind, WEB_SRC_RAW);
    ck_assert_uint_eq(d->nwheres, 1);
    ck_assert_str_eq(col_src(&d->wheres[0], b, sizeof b),
                     "id=$http_x_user_id");

    rt = &c->routes[2];
    ck_assert_str_eq(rt->paths[0], "/logout");
    ck_assert_str_eq(rt->body, "Session invalidated in the background.");
    d = &rt->defers[0];
    ck_assert_int_eq(d->kind, WEB_DEFER_DELETE);
    ck_assert_str_eq(d->table, "sessions");
    ck_assert_str_eq(web_source_name(&d->conds[0], b, sizeof b),
                     "$http_x_session_id");
    ck_assert_str_eq(col_src(&d->wheres[0], b, sizeof b),
                     "id=$http_x_session_id");

    rt = &c->routes[3];
    ck_assert_uint_eq(rt->methods, WEB_M_POST);
    ck_assert_str_eq(rt->paths[0], "/users/:id/touch");
    ck_assert_str_eq(rt->handler, "touch");

    rt = &c->routes[4];
    ck_assert_uint_eq(rt->methods, WEB_M_GET);
    ck_assert_str_eq(rt->paths[0], "/hello");
    ck_assert_str_eq(rt->body, "hello");
    ck_assert_uint_eq(rt->ndefers, 0);

    rt = &c->routes[5];
    ck_assert_str_eq(rt->paths[0], "/_status");
    ck_assert_str_eq(rt->handler, "status");
    ck_assert_int_eq(rt->status, 0);

    /* POST /users: require and a route max_body, documented by example */
    rt = &c->routes[6];
    ck_assert_uint_eq(rt->methods, WEB_M_POST);
    ck_assert_str_eq(rt->paths[0], "/users");
    ck_assert_uint_eq(rt->max_body, 4096);
    ck_assert_uint_eq(rt->nrequires, 2);
    ck_assert_str_eq(web_source_name(&rt->requires[0], b, sizeof b),
                     "$body_id");
    ck_assert_str_eq(web_source_name(&rt->requires[1], b, sizeof b),
                     "$body_name");
    ck_assert_int_eq(rt->reads_body, 1);
    ck_assert_int_eq(rt->status, 202);
    d = &rt->defers[0];
    ck_assert_int_eq(d->kind, WEB_DEFER_UPSERT);
    ck_assert_str_eq(d->table, "users");
    /* /seen and /logout keep "if": a missing header is not an error */
    ck_assert_uint_eq(c->routes[1].nrequires, 0);
    ck_assert_uint_eq(c->routes[2].nrequires, 0);

    ck_assert_int_eq(web_conf_router(c, &router), WEB_OK);
    ck_assert_int_eq(web_router_match(router, "DELETE", "/log/a/b", 8, &m),
                     WEB_OK);
    ck_assert_ptr_eq(m.data, &c->routes[0]);
    ck_assert_int_eq(web_router_match(router, "GET", "/log", 4, &m), WEB_OK);
    ck_assert_ptr_eq(m.data, &c->routes[0]);
    ck_assert_int_eq(web_router_match(router, "GET", "/seen", 5, &m),
                     WEB_EMETHOD);
    ck_assert_str_eq(m.allow_str, "POST");
    ck_assert_int_eq(web_router_match(router, "HEAD", "/hello", 6, &m),
                     WEB_OK);
    web_router_free(router);
    web_conf_free(c);
}
END_TEST

static const struct {
    const char *text;
    const char *msg;
} conf_errors[] = {
    {"server {\n    threads 4\n}\n",
     "t.conf:2: expected ';' after \"threads 4\""},
    {"server {\n    threads 4\n    workers 2;\n}\n",
     "t.conf:2: expected ';' after \"threads 4\""},
    {"server {\n    thread 4;\n}\n",
     "t.conf:2: unknown directive \"thread\" in \"server\""},
    {"thread 4;\n", "t.conf:1: unknown directive \"thread\""},
    {"route GET /x {\n  respond 200;\n  defer insert \"logs;drop\" {\n"
     "    a $uri;\n  }\n}\n",
     "t.conf:3: invalid identifier \"logs;drop\" for table"},
    {"route GET /x {\n  respond 200;\n  defer insert logs {\n"
     "    \"a b\" $uri;\n  }\n}\n",
     "t.conf:4: invalid identifier \"a b\" for column"},
    {"server {\n threads 4;\n threads 5;\n}\n",
     "t.conf:3: duplicate directive \"threads\""},
    {"server {\n threads 0;\n}\n",
     "t.conf:2: \"threads\" must be between 1 and 256, not 0"},
    {"server {\n threads 4x;\n}\n",
     "t.conf:2: invalid number \"4x\" for \"threads\""},
    {"database {\n busy_timeout 5x;\n}\n",
     "t.conf:2: invalid time \"5x\" for \"busy_timeout\" (e.g. 500ms, 30s, "
     "5m; at most 1d)"},
    {"server {\n max_body 2g;\n}\n",
     "t.conf:2: \"max_body\" must be at most 1073741824 bytes, not 2g"},
    {"pool {\n batch_delay 2s;\n}\n",
     "t.conf:2: \"batch_delay\" must be at most 1s"},
    {"pool {\n batch_delay_max 1001ms;\n}\n",
     "t.conf:2: \"batch_delay_max\" must be at most 1s"},
    {"server {\n", "t.conf:2: unexpected end of file, expected \"}\" to "
     "close the block opened on line 1"},
    {"}\n", "t.conf:1: unexpected \"}\""},
    {";\n", "t.conf:1: unexpected \";\", expected a directive"},
    {"route GET /x {\n respond 200 \"oops;\n}\n",
     "t.conf:2: unterminated string"},
    {"route GET /x {\n respond 200 \"a\\qb\";\n}\n",
     "t.conf:2: invalid escape \"\\q\""},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a $nope;\n }\n}\n",
     "t.conf:4: unknown variable \"$nope\""},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a $seg_id;\n }\n}\n",
     "t.conf:4: variable \"$seg_id\": path \"/x\" has no segment \":id\""},
    {"route GET /u/:id /v {\n respond 200;\n defer insert t {\n"
     "  a $seg_id;\n }\n}\n",
     "t.conf:4: variable \"$seg_id\": path \"/v\" has no segment \":id\""},
    {"route GET /x {\n respond 200;\n defer update t {\n  set a $uri;\n }\n}\n",
     "t.conf:3: \"defer update\" needs at least one \"where\""},
    {"route GET /x {\n respond 200;\n defer delete t {\n  if $arg_x;\n }\n}\n",
     "t.conf:3: \"defer delete\" needs at least one \"where\""},
    {"route GET /x {\n respond 200;\n defer delete t {\n  set a $uri;\n"
     "  where id $arg_id;\n }\n}\n",
     "t.conf:4: unknown directive \"set\" in \"defer delete\" (expected if "
     "or where)"},
    {"route GET /x {\n respond 200;\n defer upsert t {\n  a $uri;\n }\n}\n",
     "t.conf:3: \"defer upsert\" needs \"conflict COLUMN...\""},
    {"route GET /x {\n respond 200;\n defer insert t {\n }\n}\n",
     "t.conf:3: \"defer insert\" needs at least one column"},
    {"route GET /x {\n respond 200;\n defer merge t {\n  a $uri;\n }\n}\n",
     "t.conf:3: invalid value \"merge\" for \"defer\", expected one of: "
     "insert, update, delete, upsert"},
    {"route GET /x {\n respond 200;\n defer insert t {\n  if \"x\";\n"
     "  a $uri;\n }\n}\n",
     "t.conf:4: \"if\" needs a $variable"},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a foo;\n }\n}\n",
     "t.conf:4: invalid value \"foo\", expected a $variable, a \"quoted "
     "string\" or raw:SQL"},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a raw:\"x;y\";\n"
     " }\n}\n",
     "t.conf:4: \";\" is not allowed in raw SQL \"x;y\""},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a $uri;\n"
     "  a $uri;\n }\n}\n",
     "t.conf:5: duplicate column \"a\""},
    {"route GET /x {\n}\n",
     "t.conf:1: route needs \"handler NAME;\" or \"respond STATUS ...;\""},
    {"route GET /x {\n handler h;\n respond 200;\n}\n",
     "t.conf:1: route has both \"handler\" and \"respond\"; use one"},
    {"route GOT /x {\n respond 200;\n}\n", "t.conf:1: unknown method \"GOT\""},
    {"route GET /a/*/b {\n respond 200;\n}\n",
     "t.conf:1: invalid path: '*' must be the last segment in path "
     "\"/a/*/b\""},
    {"route GET {\n respond 200;\n}\n",
     "t.conf:1: \"route\" needs METHODS and at least one PATH, e.g. route "
     "GET /hello { ... }"},
    {"route GET /x;\n", "t.conf:1: \"route\" needs a block { ... }"},
    {"route GET /x {\n respond 99;\n}\n",
     "t.conf:2: \"respond\" must be between 100 and 599, not 99"},
    {"route GET /x {\n respond 200 \"bad\ntype\" \"b\";\n}\n",
     "t.conf:2: invalid content type \"bad\ntype\""},
    {"server {\n listen :0;\n}\n",
     "t.conf:2: invalid listen \":0\", expected unix:PATH, HOST:PORT or "
     "stdin"},
    {"server {\n listen 127.0.0.1:70000;\n}\n",
     "t.conf:2: invalid listen \"127.0.0.1:70000\", expected unix:PATH, "
     "HOST:PORT or stdin"},
    {"server {\n socket_mode 0999;\n}\n",
     "t.conf:2: invalid socket_mode \"0999\", expected an octal mode such as "
     "0660"},
    {"database {\n journal_mode walx;\n}\n",
     "t.conf:2: invalid value \"walx\" for \"journal_mode\", expected one "
     "of: delete, truncate, persist, memory, wal, off"},
    {"pool {\n admission maybe;\n}\n",
     "t.conf:2: invalid value \"maybe\" for \"admission\", expected one of: "
     "wait TIME, reject, inline"},
    {"pool {\n admission reject 5s;\n}\n",
     "t.conf:2: expected ';' after \"admission reject\""},
    {"pool {\n journal sometimes;\n}\n",
     "t.conf:2: invalid value \"sometimes\" for \"journal\", expected one "
     "of: off, write, fsync, fsync-interval [TIME]"},
    {"pool {\n journal fsync 5ms;\n}\n",
     "t.conf:2: only \"journal fsync-interval\" takes a time"},
    {"pool {\n journal fsync-interval 2m;\n}\n",
     "t.conf:2: \"journal fsync-interval\" must be between 1ms and 60s"},
    {"pool {\n journal fsync-interval 1s 2s;\n}\n",
     "t.conf:2: expected ';' after \"journal fsync-interval 1s\""},
    {"server x {\n}\n", "t.conf:1: \"server\" takes no arguments"},
    {"server {\n}\nserver {\n}\n", "t.conf:3: duplicate directive \"server\""},
    {"server;\n", "t.conf:1: \"server\" needs a block { ... }"},
    {"server {\n threads { }\n}\n",
     "t.conf:2: \"threads\" takes no block"},
    {"server {\n threads;\n}\n",
     "t.conf:2: invalid number of arguments in \"threads\""},
    {"\n\n\n\n\n\n\n\n\n\n\nserver {\n    threads 4 }\n",
     "t.conf:13: expected ';' after \"threads 4\""},
    {"a{b{c{d{e{f{g{h{i{}}}}}}}}}\n", "t.conf:1: blocks nested too deeply"},
    {"server {\n log_level loud;\n}\n",
     "t.conf:2: invalid value \"loud\" for \"log_level\", expected one of: "
     "debug, info, notice, warn, error"},
    {"server {\n log_values maybe;\n}\n",
     "t.conf:2: invalid value \"maybe\" for \"log_values\", expected one of: "
     "on, redact, off"},
    {"server {\n access_log;\n}\n",
     "t.conf:2: invalid number of arguments in \"access_log\""},
    {"server {\n access_log a.log;\n access_log b.log;\n}\n",
     "t.conf:3: duplicate directive \"access_log\""},
    {"server {\n threads\x01 4;\n}\n",
     "t.conf:2: unexpected control character 0x01"},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a $http_a.b;\n"
     " }\n}\n",
     "t.conf:4: invalid header name in \"$http_a.b\""},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a $arg_;\n }\n}\n",
     "t.conf:4: missing name after \"$arg_\""},
    {"route GET /x {\n respond 200;\n defer insert t {\n  a;\n }\n}\n",
     "t.conf:4: expected a value after column \"a\""},
    {"database {\n reconnect 2d;\n}\n",
     "t.conf:2: invalid time \"2d\" for \"reconnect\" (e.g. 500ms, 30s, "
     "5m; at most 1d)"},
    {"database {\n reconnect soon;\n}\n",
     "t.conf:2: invalid time \"soon\" for \"reconnect\" (e.g. 500ms, 30s, "
     "5m; at most 1d)"},
    {"database {\n reconnect -1s;\n}\n",
     "t.conf:2: invalid time \"-1s\" for \"reconnect\" (e.g. 500ms, 30s, "
     "5m; at most 1d)"},
    {"database {\n reconnect 1s 2s;\n}\n",
     "t.conf:2: expected ';' after \"reconnect 1s\""},
    {"database {\n statement_cache 4097;\n}\n",
     "t.conf:2: \"statement_cache\" must be between 0 and 4096, not 4097"},
    {"database {\n statement_cache many;\n}\n",
     "t.conf:2: invalid number \"many\" for \"statement_cache\""},
    {"database {\n reconnect;\n}\n",
     "t.conf:2: invalid number of arguments in \"reconnect\""},
    {"database {\n reconnect 1s;\n reconnect 2s;\n}\n",
     "t.conf:3: duplicate directive \"reconnect\""},
    /* A bad URI is refused without being echoed (it may hold a password). */
    {"database {\n path \"postgresql://wu:secret@db/my app\";\n}\n",
     "t.conf:2: invalid \"path\": a PostgreSQL URI must not contain "
     "whitespace or control characters (percent-encode them)"},
    {"database {\n\n path 'postgres://db/app\\t';\n}\n",
     "t.conf:3: invalid \"path\": a PostgreSQL URI must not contain "
     "whitespace or control characters (percent-encode them)"},
    {"database {\n path \"\";\n}\n", "t.conf:2: empty value for \"path\""},
    /* body bounds (issue 13, item 2) */
    {"server { max_body 1k; }\nroute POST /x {\n respond 200;\n"
     " max_body 2k;\n}\n",
     "t.conf:2: route max_body 2048 is larger than the server's max_body "
     "1024"},
    {"route POST /x {\n respond 200;\n max_body 2m;\n}\nserver {\n"
     " max_body 1m;\n}\n",
     "t.conf:1: route max_body 2097152 is larger than the server's max_body "
     "1048576"},
    {"route POST /x {\n respond 200;\n max_body 0;\n}\n",
     "t.conf:3: \"max_body\" must be at least 1 byte in a route (leave it "
     "out to use the server's)"},
    {"route POST /x {\n respond 200;\n max_body 1k;\n max_body 2k;\n}\n",
     "t.conf:4: duplicate directive \"max_body\""},
    {"route POST /x {\n respond 200;\n max_body lots;\n}\n",
     "t.conf:3: invalid size \"lots\" for \"max_body\""},
    {"server {\n max_json_depth 0;\n}\n",
     "t.conf:2: \"max_json_depth\" must be between 1 and 1024, not 0"},
    {"server {\n max_json_depth 2048;\n}\n",
     "t.conf:2: \"max_json_depth\" must be between 1 and 1024, not 2048"},
    {"server {\n max_json_elements 0;\n}\n",
     "t.conf:2: \"max_json_elements\" must be between 1 and 10000000, not 0"},
    {"route POST /x {\n respond 200;\n maxbody 1k;\n}\n",
     "t.conf:3: unknown directive \"maxbody\" in \"route\" (expected "
     "handler, respond, require, max_body or defer)"},
    /* require (issue 13, item 9) */
    {"route POST /x {\n respond 200;\n require;\n}\n",
     "t.conf:3: invalid number of arguments in \"require\""},
    {"route POST /x {\n respond 200;\n require $arg_a \"lit\";\n}\n",
     "t.conf:3: \"require\" needs a $variable, not \"lit\""},
    {"route POST /x {\n respond 200;\n require raw:1;\n}\n",
     "t.conf:3: \"require\" needs a $variable, not \"raw:1\""},
    {"route POST /x {\n respond 200;\n require\n   $body_a\n   $nope;\n}\n",
     "t.conf:5: unknown variable \"$nope\""},
    {"route POST /x {\n respond 200;\n require $seg_id;\n}\n",
     "t.conf:3: variable \"$seg_id\": path \"/x\" has no segment \":id\""},
    {"route POST /x {\n respond 200;\n require { }\n}\n",
     "t.conf:3: \"require\" takes no block"},
    {"route POST /x {\n respond 200;\n defer insert t {\n  require $body_a;\n"
     "  a $body_a;\n }\n}\n",
     "t.conf:4: \"require\" belongs to the route, not to \"defer insert\" "
     "(quote it for a column named require)"},
    {"require $arg_a;\n", "t.conf:1: unknown directive \"require\""},
};

START_TEST(conf_error_table)
{
    web_conf *c = (web_conf *)1;
    char err[256];
    const char *t = conf_errors[_i].text;
    int rc = web_conf_parse(t, strlen(t), "t.conf", &c, err, sizeof err);
    ck_assert_int_eq(rc, WEB_ECONF);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(err, conf_errors[_i].msg);
}
END_TEST

/* The body bounds: defaults, server directives, a route's max_body, and
 * which routes read their body. */
START_TEST(conf_body_bounds)
{
    static const char *text =
        "server { max_body 64k; max_json_depth 8; max_json_elements 500; }\n"
        "route POST /a { max_body 1k; respond 200;\n"
        "  defer insert t { v $body_v; } }\n"
        "route POST /b { respond 200; defer insert t { v $arg_v; } }\n"
        "route POST /c { respond 200;\n"
        "  defer delete t { if $body_ok; where id $arg_id; } }\n"
        "route POST /d { respond 200;\n"
        "  defer update t { set v $uri; where id $body_user.id; } }\n"
        "route POST /e { handler h; }\n";
    web_conf *c;
    char err[256];
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "b.conf", &c, err,
                                    sizeof err), WEB_OK);
    ck_assert_uint_eq(c->server.max_json_depth, 8);
    ck_assert_uint_eq(c->server.max_json_elements, 500);
    ck_assert_uint_eq(c->routes[0].max_body, 1024);
    ck_assert_int_eq(c->routes[0].reads_body, 1);
    ck_assert_uint_eq(c->routes[1].max_body, 0);
    ck_assert_int_eq(c->routes[1].reads_body, 0);
    ck_assert_int_eq(c->routes[2].reads_body, 1); /* an "if" counts */
    ck_assert_int_eq(c->routes[3].reads_body, 1); /* a "where" too */
    ck_assert_int_eq(c->routes[4].reads_body, 0); /* handler: own rule */
    web_conf_free(c);
    c = web_conf_default();
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->server.max_json_depth, 32);
    ck_assert_uint_eq(c->server.max_json_elements, 10000);
    web_conf_free(c);
}
END_TEST

/* "require $VAR ...;" may be repeated; its values make the route read
 * its body when one is a $body_ field; a column named require is still
 * possible, quoted. */
START_TEST(conf_require)
{
    static const char *text =
        "route POST /a/:id {\n"
        "  require $body_email $http_x_user_id;\n"
        "  require $seg_id;\n"
        "  respond 201;\n"
        "}\n"
        "route POST /b { require $arg_v; handler h; }\n"
        "route POST /c { respond 200;\n"
        "  defer insert t { \"require\" $arg_v; } }\n";
    web_conf *c;
    char err[256], b[64];
    const web_route_conf *rt;
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "r.conf", &c, err,
                                    sizeof err), WEB_OK);
    rt = &c->routes[0];
    ck_assert_uint_eq(rt->nrequires, 3);
    ck_assert_str_eq(web_source_name(&rt->requires[0], b, sizeof b),
                     "$body_email");
    ck_assert_str_eq(web_source_name(&rt->requires[1], b, sizeof b),
                     "$http_x_user_id");
    ck_assert_str_eq(web_source_name(&rt->requires[2], b, sizeof b),
                     "$seg_id");
    ck_assert_int_eq(rt->reads_body, 1); /* through the require alone */
    ck_assert_uint_eq(c->routes[1].nrequires, 1);
    ck_assert_int_eq(c->routes[1].reads_body, 0);
    ck_assert_uint_eq(c->routes[2].nrequires, 0);
    ck_assert_str_eq(c->routes[2].defers[0].cols[0].column, "require");
    web_conf_free(c);
}
END_TEST

static const char *const bad_idents[] = {
    "1abc", "a-b", "a.b", "\"\"", "\xc3\xa4x", "\"a b\"", "\"logs;drop\"",
    "\"x\\\"y\"",
    /* 129 bytes: one past the identifier limit */
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
};

START_TEST(conf_identifiers_refused)
{
    char text[512], err[256];
    web_conf *c;
    int rc;
    /* as a table */
    snprintf(text, sizeof text,
             "route POST /x {\n respond 200;\n defer insert %s {\n"
             "  a $uri;\n }\n}\n", bad_idents[_i]);
    rc = web_conf_parse(text, strlen(text), "i.conf", &c, err, sizeof err);
    ck_assert_int_eq(rc, WEB_ECONF);
    ck_assert_msg(strstr(err, "i.conf:3: invalid identifier") == err &&
                  strstr(err, "for table") != NULL, "%s", err);
    /* as a column */
    snprintf(text, sizeof text,
             "route POST /x {\n respond 200;\n defer update t {\n"
             "  set %s $uri;\n  where id $arg_id;\n }\n}\n", bad_idents[_i]);
    rc = web_conf_parse(text, strlen(text), "i.conf", &c, err, sizeof err);
    ck_assert_int_eq(rc, WEB_ECONF);
    ck_assert_msg(strstr(err, "i.conf:4: invalid identifier") == err &&
                  strstr(err, "for column") != NULL, "%s", err);
    /* as a conflict target */
    snprintf(text, sizeof text,
             "route POST /x {\n respond 200;\n defer upsert t {\n"
             "  a $uri;\n  conflict a %s;\n }\n}\n", bad_idents[_i]);
    rc = web_conf_parse(text, strlen(text), "i.conf", &c, err, sizeof err);
    ck_assert_int_eq(rc, WEB_ECONF);
    ck_assert_msg(strstr(err, "i.conf:5: invalid identifier") == err, "%s",
                  err);
}
END_TEST

static const char full_conf[] =
    "# everything at once\n"
    "server { listen 127.0.0.1:9000; threads 8; max_body 64k; "
    "max_params 50; max_args 20; log 'var/log file.log'; log_level debug; "
    "socket_mode 600; log_values redact; access_log var/access.log; }\n"
    "database { path \"/tmp/x.db\"; journal_mode delete; synchronous full; "
    "busy_timeout 250ms; migrations m; reconnect 3s; statement_cache 0; }\n"
    "pool { workers 3; queue 10; tasks_per_request 4; batch 7; "
    "task_timeout 2m; admission inline; drain_timeout 1h; busy_retries 0; "
    "journal fsync-interval 250ms; batch_delay 5ms; batch_delay_max 1s; }\n"
    "route get|post,PUT /users/:id /people/:id/* {\n"
    "  respond 201 application/json '{\"ok\":true}';\n"
    "  defer upsert users {\n"
    "    if $seg_id;\n"
    "    if $body_user.name;\n"
    "    id $seg_id;\n"
    "    name $body_user.name;\n"
    "    seen raw:\"datetime('now', 'utc')\";\n"
    "    note \"it's \\\"quoted\\\"\\n\";\n"
    "    \"if\" $arg_if;\n"
    "    conflict id;\n"
    "    set seen raw:excluded.seen;\n"
    "  }\n"
    "  defer insert audit { ip $remote_addr; rid $request_id; t $time_unix;"
    " ct $content_type; q $query_string; ua $http_user-agent; }\n"
    "}\n"
    "route any /plain { respond 204; }\n"
    "route GET /body { respond 200 \"just a body\"; }\n";

START_TEST(conf_full_grammar)
{
    web_conf *c;
    char err[256], b[160];
    const web_route_conf *rt;
    const web_defer *d;
    int rc = web_conf_parse(full_conf, strlen(full_conf), "full.conf", &c,
                            err, sizeof err);
    ck_assert_msg(rc == WEB_OK, "%s", err);
    ck_assert_str_eq(c->file, "full.conf");
    ck_assert_str_eq(c->server.listen, "127.0.0.1:9000");
    ck_assert_uint_eq(c->server.threads, 8);
    ck_assert_uint_eq(c->server.max_body, 65536);
    ck_assert_uint_eq(c->server.max_params, 50);
    ck_assert_uint_eq(c->server.max_query_args, 20);
    ck_assert_str_eq(c->server.log, "var/log file.log");
    ck_assert_int_eq(c->server.log_level, WEB_LOG_DEBUG);
    ck_assert_int_eq(c->server.log_values, WEB_LOG_VALUES_REDACT);
    ck_assert_str_eq(c->server.access_log, "var/access.log");
    ck_assert_uint_eq(c->server.socket_mode, 0600);
    ck_assert_str_eq(c->database.path, "/tmp/x.db");
    ck_assert_str_eq(c->database.journal_mode, "delete");
    ck_assert_str_eq(c->database.synchronous, "full");
    ck_assert_int_eq(c->database.busy_timeout_ms, 250);
    ck_assert_int_eq(c->database.reconnect_ms, 3000);
    ck_assert_uint_eq(c->database.statement_cache, 0);
    ck_assert_int_eq(c->database.engine, WEB_DB_SQLITE);
    ck_assert_str_eq(c->database.migrations, "m");
    ck_assert_uint_eq(c->pool.workers, 3);
    ck_assert_uint_eq(c->pool.queue, 10);
    ck_assert_uint_eq(c->pool.tasks_per_request, 4);
    ck_assert_uint_eq(c->pool.batch, 7);
    ck_assert_int_eq(c->pool.task_timeout_ms, 120000);
    ck_assert_int_eq(c->pool.admission, WEB_ADMIT_INLINE);
    ck_assert_int_eq(c->pool.drain_timeout_ms, 3600000);
    ck_assert_uint_eq(c->pool.busy_retries, 0);
    ck_assert_uint_eq(c->pool.journal, 3);
    ck_assert_int_eq(c->pool.journal_sync_ms, 250);
    ck_assert_int_eq(c->pool.batch_delay_ms, 5);
    ck_assert_int_eq(c->pool.batch_delay_max_ms, 1000);
    ck_assert_uint_eq(c->nroutes, 3);
    rt = &c->routes[0];
    ck_assert_uint_eq(rt->methods, WEB_M_GET | WEB_M_POST | WEB_M_PUT);
    ck_assert_uint_eq(rt->npaths, 2);
    ck_assert_int_eq(rt->status, 201);
    ck_assert_str_eq(rt->content_type, "application/json");
    ck_assert_str_eq(rt->body, "{\"ok\":true}");
    ck_assert_uint_eq(rt->ndefers, 2);
    d = &rt->defers[0];
    ck_assert_int_eq(d->kind, WEB_DEFER_UPSERT);
    ck_assert_uint_eq(d->nconds, 2);
    ck_assert_uint_eq(d->ncols, 5);
    ck_assert_str_eq(col_src(&d->cols[0], b, sizeof b), "id=$seg_id");
    ck_assert_str_eq(col_src(&d->cols[1], b, sizeof b),
                     "name=$body_user.name");
    ck_assert_str_eq(col_src(&d->cols[2], b, sizeof b),
                     "seen=raw:datetime('now', 'utc')");
    ck_assert_str_eq(col_src(&d->cols[3], b, sizeof b),
                     "note=\"it's \"quoted\"\n\"");
    ck_assert_int_eq(d->cols[3].src.kind, WEB_SRC_LITERAL);
    ck_assert_str_eq(col_src(&d->cols[4], b, sizeof b), "if=$arg_if");
    ck_assert_uint_eq(d->nconflict, 1);
    ck_assert_str_eq(d->conflict[0], "id");
    ck_assert_uint_eq(d->nsets, 1);
    ck_assert_str_eq(col_src(&d->sets[0], b, sizeof b),
                     "seen=raw:excluded.seen");
    d = &rt->defers[1];
    ck_assert_uint_eq(d->ncols, 6);
    ck_assert_int_eq(d->cols[0].src.kind, WEB_SRC_REMOTE_ADDR);
    ck_assert_int_eq(d->cols[1].src.kind, WEB_SRC_REQUEST_ID);
    ck_assert_int_eq(d->cols[2].src.kind, WEB_SRC_TIME_UNIX);
    ck_assert_int_eq(d->cols[3].src.kind, WEB_SRC_CONTENT_TYPE);
    ck_assert_int_eq(d->cols[4].src.kind, WEB_SRC_QUERY);
    ck_assert_int_eq(d->cols[5].src.kind, WEB_SRC_HTTP);
    ck_assert_int_eq(d->cols[5].line, 18);
    rt = &c->routes[1];
    ck_assert_uint_eq(rt->methods, WEB_M_ANY);
    ck_assert_int_eq(rt->status, 204);
    ck_assert_str_eq(rt->body, "");
    rt = &c->routes[2];
    ck_assert_str_eq(rt->content_type, "text/plain");
    ck_assert_str_eq(rt->body, "just a body");
    web_conf_free(c);
    web_conf_free(NULL);
}
END_TEST

static const struct {
    const char *text;
    uint64_t bytes;
} size_cases[] = {{"0", 0}, {"100", 100}, {"1k", 1024}, {"1K", 1024},
                  {"1m", 1048576}, {"2M", 2097152}, {"1g", 1073741824}};

static const struct {
    const char *text;
    int64_t ms;
} time_cases[] = {{"0", 0}, {"7", 7000}, {"500ms", 500}, {"30s", 30000},
                  {"5m", 300000}, {"2h", 7200000}, {"1d", 86400000}};

START_TEST(conf_access_log_off)
{
    web_conf *c;
    char err[256];
    const char *text = "server { access_log off; log_values off; }\n";
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "a.conf", &c, err,
                                    sizeof err), WEB_OK);
    ck_assert_ptr_null(c->server.access_log);
    ck_assert_int_eq(c->server.log_values, WEB_LOG_VALUES_OFF);
    web_conf_free(c);
    text = "server { access_log stderr; }\n";
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "a.conf", &c, err,
                                    sizeof err), WEB_OK);
    ck_assert_str_eq(c->server.access_log, "stderr");
    web_conf_free(c);
}
END_TEST

START_TEST(conf_suffixes)
{
    char text[128], err[256];
    web_conf *c;
    snprintf(text, sizeof text, "server { max_body %s; }",
             size_cases[_i % NELEM(size_cases)].text);
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "s", &c, err,
                                    sizeof err), WEB_OK);
    ck_assert_uint_eq(c->server.max_body,
                      size_cases[_i % NELEM(size_cases)].bytes);
    web_conf_free(c);
    snprintf(text, sizeof text, "pool { task_timeout %s; }",
             time_cases[_i % NELEM(time_cases)].text);
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "s", &c, err,
                                    sizeof err), WEB_OK);
    ck_assert_int_eq(c->pool.task_timeout_ms,
                     time_cases[_i % NELEM(time_cases)].ms);
    web_conf_free(c);
    snprintf(text, sizeof text, "database { reconnect %s; }",
             time_cases[_i % NELEM(time_cases)].text);
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "s", &c, err,
                                    sizeof err), WEB_OK);
    ck_assert_int_eq(c->database.reconnect_ms,
                     time_cases[_i % NELEM(time_cases)].ms);
    web_conf_free(c);
}
END_TEST

START_TEST(conf_defaults_and_io)
{
    web_conf *c = web_conf_default();
    char err[256];
    int rc;
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->server.threads, 4);
    ck_assert_uint_eq(c->pool.batch, 256);
    ck_assert_uint_eq(c->pool.tasks_per_request, 16);
    ck_assert_uint_eq(c->pool.busy_retries, 5);
    ck_assert_int_eq(c->pool.batch_delay_ms, 2);
    ck_assert_int_eq(c->pool.batch_delay_max_ms, 20);
    ck_assert_int_eq(c->database.engine, WEB_DB_SQLITE);
    ck_assert_int_eq(c->database.reconnect_ms, 10000);
    ck_assert_uint_eq(c->nroutes, 0);
    web_conf_free(c);
    rc = web_conf_parse("", 0, "empty", &c, err, sizeof err);
    ck_assert_int_eq(rc, WEB_OK);
    ck_assert_str_eq(c->database.synchronous, "normal");
    web_conf_free(c);
    rc = web_conf_load("/nonexistent/w.conf", &c, err, sizeof err);
    ck_assert_int_eq(rc, WEB_EIO);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(err, "/nonexistent/w.conf: cannot open: No such file "
                          "or directory");
    /* errbuf may be omitted */
    ck_assert_int_eq(web_conf_parse("x;", 2, NULL, &c, NULL, 0), WEB_ECONF);
}
END_TEST

START_TEST(conf_too_large)
{
    size_t n = 1024 * 1024 + 1;
    char *t = malloc(n);
    char err[128];
    web_conf *c;
    ck_assert_ptr_nonnull(t);
    memset(t, '#', n);
    ck_assert_int_eq(web_conf_parse(t, n, "big", &c, err, sizeof err),
                     WEB_ECONF);
    ck_assert_str_eq(err, "big:1: file too large (more than 1048576 bytes)");
    free(t);
}
END_TEST


/* ---- include ---------------------------------------------------------------- */

/* Write text into DIR/name. */
static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Load DIR/main.conf: the rc, the message in err. */
static int load_main(const char *dir, web_conf **c, char *err, size_t el)
{
    char path[512];
    snprintf(path, sizeof path, "%s/main.conf", dir);
    return web_conf_load(path, c, err, el);
}

/* A pattern takes the matching files in name order, relative to the
 * including file's folder; a file included inside a block lands in it. */
START_TEST(conf_include_order_and_place)
{
    char *dir = tu_mkdtemp("wu-inc");
    char sub[512], err[512], want[600];
    web_conf *c = NULL;
    snprintf(sub, sizeof sub, "%s/conf.d", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    put_file(dir, "main.conf",
             "include conf.d/*.conf;\n"
             "route GET /a {\n    include body.inc;\n}\n"
             "include conf.d/none-*.conf;\n");
    put_file(dir, "body.inc", "respond 201 \"from body.inc\";\n");
    put_file(sub, "20-b.conf", "route GET /b { respond 200 \"b\"; }\n");
    put_file(sub, "10-s.conf", "server { threads 3; }\n# comment\n"
                               "include ../pool.inc;\n");
    put_file(dir, "pool.inc", "pool { workers 1; }\n");
    ck_assert_int_eq(load_main(dir, &c, err, sizeof err), WEB_OK);
    ck_assert_uint_eq(c->server.threads, 3);
    ck_assert_uint_eq(c->pool.workers, 1);
    ck_assert_uint_eq(c->nroutes, 2);
    ck_assert_str_eq(c->routes[0].paths[0], "/b");
    ck_assert_int_eq(c->routes[0].line, 1);
    snprintf(want, sizeof want, "%s/conf.d/20-b.conf", dir);
    ck_assert_str_eq(c->routes[0].file, want);
    ck_assert_str_eq(c->routes[1].paths[0], "/a");
    ck_assert_int_eq(c->routes[1].status, 201);
    ck_assert_int_eq(c->routes[1].line, 2);
    snprintf(want, sizeof want, "%s/main.conf", dir);
    ck_assert_str_eq(c->routes[1].file, want);
    /* main, 10-s, ../pool.inc, 20-b, body.inc: in reading order */
    ck_assert_uint_eq(c->nfiles, 5);
    ck_assert_str_eq(c->files[0], want);
    snprintf(want, sizeof want, "%s/conf.d/../pool.inc", dir);
    ck_assert_str_eq(c->files[2], want);
    web_conf_free(c);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* An error inside an included file names that file and its line; an
 * include that fails names the including file and the include's line. */
START_TEST(conf_include_errors)
{
    static const struct {
        const char *main, *inc, *want; /* want: after "DIR/" */
    } cases[] = {
        {"server { threads 2; }\ninclude a.inc;\n",
         "\nroute GET /x { respond 200 \"x\" }\n",
         "a.inc:2: expected ';' after \"respond 200 x\""},
        {"\n\ninclude missing.conf;\n", "",
         "main.conf:3: include \"DIR/missing.conf\": cannot open: No such "
         "file or directory"},
        {"include a.inc;\n", "\ninclude main.conf;\n",
         "a.inc:2: include \"DIR/main.conf\": include cycle (DIR/main.conf "
         "is being read already)"},
        {"include a.inc;\n", "include a.inc;\n",
         "a.inc:1: include \"DIR/a.inc\": include cycle (DIR/a.inc is being "
         "read already)"},
        {"include x*/a.conf;\n", "",
         "main.conf:1: include \"x*/a.conf\": a pattern may only be in the "
         "file name, not in a folder"},
        {"include a.inc b.inc;\n", "",
         "main.conf:1: \"include\" needs one FILE or PATTERN, e.g. include "
         "conf.d/*.conf;"},
        {"include a.inc { }\n", "",
         "main.conf:1: \"include\" takes no block"},
        {"route GET /x { respond 200 \"x\"; }\ninclude a.inc;\n",
         "route GET /x { respond 200 \"y\"; }\n",
         "a.inc:1: duplicate route for \"/x\" (first on DIR/main.conf:1)"},
        {"include .;\n", "", "main.conf:1: include \"DIR/.\": not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = tu_mkdtemp("wu-inc");
        char err[512], want[1024], *o = want;
        const char *w = cases[i].want;
        web_conf *c = NULL;
        put_file(dir, "main.conf", cases[i].main);
        put_file(dir, "a.inc", cases[i].inc);
        o += sprintf(o, "%s/", dir);
        for (; *w; w++) /* DIR stands for the folder */
            if (strncmp(w, "DIR", 3) == 0) {
                o += sprintf(o, "%s", dir);
                w += 2;
            } else {
                *o++ = *w;
            }
        *o = '\0';
        ck_assert_int_eq(load_main(dir, &c, err, sizeof err), WEB_ECONF);
        ck_assert_ptr_null(c);
        ck_assert_str_eq(err, want);
        tu_rmtree(dir);
        free(dir);
    }
}
END_TEST

/* Nesting is bounded: a chain of 9 includes is refused at the 9th. */
START_TEST(conf_include_depth)
{
    char *dir = tu_mkdtemp("wu-inc");
    char err[512], name[32], text[64];
    web_conf *c = NULL;
    put_file(dir, "main.conf", "include i1.inc;\n");
    for (int k = 1; k <= 9; k++) {
        snprintf(name, sizeof name, "i%d.inc", k);
        snprintf(text, sizeof text, "include i%d.inc;\n", k + 1);
        put_file(dir, name, text);
    }
    put_file(dir, "i10.inc", "server { threads 2; }\n");
    ck_assert_int_eq(load_main(dir, &c, err, sizeof err), WEB_ECONF);
    ck_assert_msg(strstr(err, "i8.inc:1: include") != NULL &&
                      strstr(err, "includes nested too deeply (at most 8)") !=
                          NULL,
                  "%s", err);
    /* 8 deep is fine */
    put_file(dir, "i8.inc", "server { threads 2; }\n");
    ck_assert_int_eq(load_main(dir, &c, err, sizeof err), WEB_OK);
    ck_assert_uint_eq(c->server.threads, 2);
    web_conf_free(c);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- the database a conf names ------------------------------------------- */

static const struct {
    const char *path;
    web_db_engine engine;
} engine_cases[] = {
    {"var/waituntil.db", WEB_DB_SQLITE},
    {"/srv/app/data.db", WEB_DB_SQLITE},
    {":memory:", WEB_DB_SQLITE},
    {"postgresql://wu@db.example:5432/app", WEB_DB_POSTGRESQL},
    {"postgres://db/app", WEB_DB_POSTGRESQL},
    {"postgresql://", WEB_DB_POSTGRESQL},
    {"postgresql:///app?host=/run/postgresql", WEB_DB_POSTGRESQL},
    /* libpq takes only these lower-case schemes; the rest are files. */
    {"POSTGRESQL://db/app", WEB_DB_SQLITE},
    {"postgresql:/db/app", WEB_DB_SQLITE},
    {"postgresql", WEB_DB_SQLITE},
    {"pg://db/app", WEB_DB_SQLITE},
    {"mysql://db/app", WEB_DB_SQLITE},
    {"host=/run/postgresql dbname=app", WEB_DB_SQLITE},
    {"var/postgresql://x", WEB_DB_SQLITE},
};

START_TEST(db_engine_of_path)
{
    char text[256], err[256];
    web_conf *c = NULL;
    ck_assert_int_eq(web_db_engine_of(engine_cases[_i].path),
                     engine_cases[_i].engine);
    /* The conf keeps the path as written and records its engine. */
    snprintf(text, sizeof text, "database { path \"%s\"; }\n",
             engine_cases[_i].path);
    ck_assert_int_eq(web_conf_parse(text, strlen(text), "e.conf", &c, err,
                                    sizeof err),
                     WEB_OK);
    ck_assert_str_eq(c->database.path, engine_cases[_i].path);
    ck_assert_int_eq(c->database.engine, engine_cases[_i].engine);
    web_conf_free(c);
}
END_TEST

START_TEST(db_engine_names_and_checks)
{
    char err[256];
    ck_assert_int_eq(web_db_engine_of(NULL), WEB_DB_SQLITE);
    ck_assert_str_eq(web_db_engine_name(WEB_DB_SQLITE), "sqlite");
    ck_assert_str_eq(web_db_engine_name(WEB_DB_POSTGRESQL), "postgresql");
    ck_assert_str_eq(web_db_engine_name((web_db_engine)42), "?");
    /* -d goes through the same check as the conf. */
    ck_assert_int_eq(web_db_path_check("var/my data.db", err, sizeof err),
                     WEB_OK);
    ck_assert_int_eq(web_db_path_check("postgresql://wu:s%20x@db/app", err,
                                       sizeof err),
                     WEB_OK);
    ck_assert_int_eq(web_db_path_check("postgresql://wu:secret@db/a b", err,
                                       sizeof err),
                     WEB_EINVAL);
    ck_assert_ptr_null(strstr(err, "secret"));
    ck_assert_int_eq(web_db_path_check("postgres://db/app\x7f", err,
                                       sizeof err),
                     WEB_EINVAL);
    ck_assert_int_eq(web_db_path_check("postgres://db/app\n", NULL, 0),
                     WEB_EINVAL);
    ck_assert_int_eq(web_db_path_check("", err, sizeof err), WEB_EINVAL);
    ck_assert_str_eq(err, "empty database path");
    ck_assert_int_eq(web_db_path_check(NULL, err, sizeof err), WEB_EINVAL);
}
END_TEST

static const struct {
    const char *prefix;
    const char *path;
    const char *want;
} resolve_cases[] = {
    {"/srv/app", "var/waituntil.db", "/srv/app/var/waituntil.db"},
    {"/srv/app", "/data/w.db", "/data/w.db"},
    {"/srv/app", ":memory:", ":memory:"},
    {NULL, "var/waituntil.db", "var/waituntil.db"},
    /* A URI is never a file under the prefix, however it looks. */
    {"/srv/app", "postgresql://wu@db/app", "postgresql://wu@db/app"},
    {"/srv/app", "postgres://wu@/app?host=var/run",
     "postgres://wu@/app?host=var/run"},
    {"/srv/app", "postgresql://", "postgresql://"},
    {"/srv/app", "POSTGRESQL://db", "/srv/app/POSTGRESQL://db"},
};

START_TEST(db_path_resolve_prefix)
{
    char *out = (char *)1;
    ck_assert_int_eq(web_db_path_resolve(resolve_cases[_i].prefix,
                                         resolve_cases[_i].path, &out),
                     WEB_OK);
    ck_assert_str_eq(out, resolve_cases[_i].want);
    free(out);
    out = (char *)1;
    ck_assert_int_eq(web_db_path_resolve("/p", NULL, &out), WEB_EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(web_db_path_resolve("/p", "x", NULL), WEB_EINVAL);
}
END_TEST

static const struct {
    const char *in;
    const char *out;
} redact_cases[] = {
    {"postgresql://wu:secret@db.example:5432/app",
     "postgresql://wu:***@db.example:5432/app"},
    {"postgres://wu@/app?host=/run/postgresql",
     "postgres://wu@/app?host=/run/postgresql"},
    {"postgresql://wu:p%40ss@db/app?sslmode=require&password=other",
     "postgresql://wu:***@db/app?sslmode=require&password=***"},
    {"postgresql:///app?password=x&user=wu",
     "postgresql:///app?password=***&user=wu"},
    {"postgresql://:pw@db", "postgresql://:***@db"},
    {"postgresql://db:5432/app", "postgresql://db:5432/app"},
    /* Unencoded '@' or '/' in a password: still hidden. */
    {"postgresql://wu:a@b@db/app", "postgresql://wu:***@db/app"},
    {"postgresql://wu:a/b@db/app", "postgresql://wu:***@db/app"},
    {"postgresql://wu:pw@db1:5432,db2:5433/app?target_session_attrs=any",
     "postgresql://wu:***@db1:5432,db2:5433/app?target_session_attrs=any"},
    {"var/waituntil.db", "var/waituntil.db"},
    {"var/user:pw@x.db", "var/user:pw@x.db"},
    {NULL, "-"},
};

START_TEST(db_path_redact)
{
    char buf[256];
    ck_assert_str_eq(web_db_path_redact(redact_cases[_i].in, buf, sizeof buf),
                     redact_cases[_i].out);
}
END_TEST

START_TEST(db_path_redact_short_buffer)
{
    char small[20], one[1];
    const char *uri = "postgresql://wu:secret@db/app?password=secret";
    for (size_t n = 1; n <= sizeof small; n++) {
        web_db_path_redact(uri, small, n);
        ck_assert_uint_lt(strlen(small), n);
        ck_assert_ptr_null(strstr(small, "sec"));
    }
    ck_assert_str_eq(web_db_path_redact(uri, small, sizeof small),
                     "postgresql://wu:***");
    ck_assert_str_eq(web_db_path_redact(uri, one, sizeof one), "");
    ck_assert_ptr_null(web_db_path_redact(uri, NULL, 0));
}
END_TEST

/* The folder of a SQLite database: CHECK and CREATE test the same, CHECK
 * creates nothing, CREATE makes one level with WEB_DB_DIR_MODE. */
START_TEST(db_dir_missing_check_then_create)
{
    char *tmp = tu_mkdtemp("wu-dbdir");
    char db[512], want[512], dir[512], err[512];
    web_db_dir_state st = WEB_DB_DIR_MADE;
    struct stat sb;
    mode_t old = umask(022);

    ck_assert_ptr_nonnull(tmp);
    snprintf(db, sizeof db, "%s/var//waituntil.db", tmp);
    snprintf(want, sizeof want, "%s/var", tmp);
    ck_assert_int_eq(web_db_dir_prepare(db, WEB_DB_DIR_CHECK, &st, dir,
                                        sizeof dir, err, sizeof err),
                     WEB_OK);
    ck_assert_int_eq(st, WEB_DB_DIR_MISSING);
    ck_assert_str_eq(dir, want);
    ck_assert_int_ne(stat(want, &sb), 0); /* CHECK made nothing */
    ck_assert_int_eq(web_db_dir_prepare(db, WEB_DB_DIR_CREATE, &st, dir,
                                        sizeof dir, err, sizeof err),
                     WEB_OK);
    ck_assert_int_eq(st, WEB_DB_DIR_MADE);
    ck_assert_int_eq(stat(want, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    ck_assert_uint_eq(sb.st_mode & 07777, WEB_DB_DIR_MODE);
    /* Now there: both say so, nothing else happens. */
    ck_assert_int_eq(web_db_dir_prepare(db, WEB_DB_DIR_CHECK, &st, NULL, 0,
                                        NULL, 0),
                     WEB_OK);
    ck_assert_int_eq(st, WEB_DB_DIR_READY);
    ck_assert_int_eq(web_db_dir_prepare(db, WEB_DB_DIR_CREATE, &st, NULL, 0,
                                        NULL, 0),
                     WEB_OK);
    ck_assert_int_eq(st, WEB_DB_DIR_READY);
    umask(old);
    tu_rmtree(tmp);
    free(tmp);
}
END_TEST

/* Each refusal reads the same from CHECK and CREATE, and names the path
 * and the system's reason. */
START_TEST(db_dir_refusals_agree)
{
    char *tmp = tu_mkdtemp("wu-dbdir");
    char db[512], file[512], want[768], err[2][768];
    web_db_dir_state st;
    FILE *f;

    ck_assert_ptr_nonnull(tmp);
    /* The parent is missing too: only one level is made. */
    snprintf(db, sizeof db, "%s/a/b/x.db", tmp);
    snprintf(want, sizeof want,
             "cannot create database folder %s/a/b: No such file or "
             "directory (%s/a is missing too; only the last level is "
             "created)",
             tmp, tmp);
    for (int op = 0; op < 2; op++) {
        ck_assert_int_eq(web_db_dir_prepare(db, (web_db_dir_op)op, &st, NULL,
                                            0, err[op], sizeof err[op]),
                         WEB_EIO);
        ck_assert_str_eq(err[op], want);
    }
    snprintf(file, sizeof file, "%s/a", tmp);
    ck_assert_int_ne(access(file, F_OK), 0);
    /* A regular file where the folder should be. */
    f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(db, sizeof db, "%s/a/x.db", tmp);
    snprintf(want, sizeof want, "database folder %s/a: Not a directory", tmp);
    for (int op = 0; op < 2; op++) {
        ck_assert_int_eq(web_db_dir_prepare(db, (web_db_dir_op)op, &st, NULL,
                                            0, err[op], sizeof err[op]),
                         WEB_EIO);
        ck_assert_str_eq(err[op], want);
    }
    /* ... or above it. */
    snprintf(db, sizeof db, "%s/a/b/x.db", tmp);
    snprintf(want, sizeof want, "database folder %s/a/b: Not a directory",
             tmp);
    for (int op = 0; op < 2; op++) {
        ck_assert_int_eq(web_db_dir_prepare(db, (web_db_dir_op)op, &st, NULL,
                                            0, err[op], sizeof err[op]),
                         WEB_EIO);
        ck_assert_str_eq(err[op], want);
    }
    tu_rmtree(tmp);
    free(tmp);
}
END_TEST

START_TEST(db_dir_nothing_to_do)
{
    static const char *const paths[] = {
        ":memory:", "file:var/x.db?mode=rwc", "postgresql://wu@db/app",
        "postgres://wu@/app?host=/nonexistent"};
    web_db_dir_state st = WEB_DB_DIR_MADE;
    char dir[8];

    for (size_t i = 0; i < NELEM(paths); i++) {
        ck_assert_int_eq(web_db_dir_prepare(paths[i], WEB_DB_DIR_CHECK, &st,
                                            dir, sizeof dir, NULL, 0),
                         WEB_OK);
        ck_assert_int_eq(st, WEB_DB_DIR_READY);
        ck_assert_str_eq(dir, "");
    }
    ck_assert_int_eq(web_db_dir_prepare(NULL, WEB_DB_DIR_CHECK, &st, NULL, 0,
                                        NULL, 0),
                     WEB_EINVAL);
    ck_assert_int_eq(web_db_dir_prepare("x.db", WEB_DB_DIR_CHECK, NULL, NULL,
                                        0, NULL, 0),
                     WEB_EINVAL);
}
END_TEST

/* ==== source evaluation ================================================== */

static const char src_conf[] =
    "route POST /u/:id {\n respond 200;\n"
    " defer insert t {\n"
    "  a $request_method; b $uri; c $seg_id; d $arg_q; e $http_x_user_id;\n"
    "  f $body_n; g $remote_addr; h $request_id; i $time_iso; j $time_unix;\n"
    "  k \"lit\"; l raw:CURRENT_TIMESTAMP; m $arg_missing; n $http_x_empty;\n"
    "  o $query_string; p $content_type; q $body_o.k; r $path;\n"
    " }\n}\n";

static const struct {
    const char *col;
    web_vtype type;
    const char *s;
    int64_t i;
} src_cases[] = {
    {"a", WEB_V_TEXT, "POST", 0},
    {"b", WEB_V_TEXT, "/u/42", 0},
    {"c", WEB_V_TEXT, "42", 0},
    {"d", WEB_V_TEXT, "hello world", 0},
    {"e", WEB_V_TEXT, "alice", 0},
    {"f", WEB_V_INT, NULL, 7},
    {"g", WEB_V_TEXT, "192.0.2.1", 0},
    {"h", WEB_V_TEXT, "rid-1", 0},
    {"i", WEB_V_TEXT, "2026-11-28T01:02:03.456Z", 0},
    {"j", WEB_V_INT, NULL, 1795827723},
    {"k", WEB_V_TEXT, "lit", 0},
    {"l", WEB_V_RAW, "CURRENT_TIMESTAMP", 0},
    {"m", WEB_V_ABSENT, NULL, 0},
    {"n", WEB_V_TEXT, "", 0},
    {"o", WEB_V_TEXT, "q=hello+world", 0},
    {"p", WEB_V_TEXT, "application/json", 0},
    {"q", WEB_V_BOOL, NULL, 1},
    {"r", WEB_V_TEXT, "/u/42", 0},
};

START_TEST(source_eval)
{
    const char *env[] = {"REQUEST_METHOD=POST", "DOCUMENT_URI=/u/42",
                         "QUERY_STRING=q=hello+world",
                         "HTTP_X_USER_ID=alice", "HTTP_X_EMPTY=",
                         "REMOTE_ADDR=192.0.2.1", "REQUEST_ID=rid-1", NULL};
    const char *body = "{\"n\":7,\"o\":{\"k\":true}}";
    web_arena *a = web_arena_create(0, 0);
    web_request *r = mkreq(a, env, body, "application/json");
    web_conf *c;
    web_router *router;
    web_match m;
    web_value v;
    char err[256];
    const web_defer *d;
    const web_column *col = NULL;
    size_t k;
    struct timespec ts = {1795827723, 456789000};
    ck_assert_int_eq(web_conf_parse(src_conf, strlen(src_conf), "src", &c,
                                    err, sizeof err), WEB_OK);
    ck_assert_int_eq(web_conf_router(c, &router), WEB_OK);
    ck_assert_int_eq(web_router_match(router, "POST", "/u/42", 5, &m),
                     WEB_OK);
    web_request_set_time(r, ts);
    d = &c->routes[0].defers[0];
    for (k = 0; k < d->ncols; k++)
        if (strcmp(d->cols[k].column, src_cases[_i].col) == 0)
            col = &d->cols[k];
    ck_assert_ptr_nonnull(col);
    ck_assert_int_eq(web_source_eval(&col->src, r, &m, &v), WEB_OK);
    ck_assert_int_eq(v.type, src_cases[_i].type);
    if (v.type == WEB_V_TEXT || v.type == WEB_V_RAW) {
        ck_assert_str_eq(v.s, src_cases[_i].s);
        ck_assert_uint_eq(v.len, strlen(src_cases[_i].s));
    }
    if (v.type == WEB_V_INT || v.type == WEB_V_BOOL)
        ck_assert_int_eq(v.i, src_cases[_i].i);
    /* "present" for "if": empty text and absent are not */
    ck_assert_int_eq(web_value_present(&v),
                     src_cases[_i].type != WEB_V_ABSENT &&
                     !(src_cases[_i].type == WEB_V_TEXT &&
                       src_cases[_i].s[0] == '\0'));
    web_router_free(router);
    web_conf_free(c);
    web_arena_free(a);
}
END_TEST

START_TEST(source_eval_errors)
{
    const char *env[] = {"REQUEST_METHOD=GET", "DOCUMENT_URI=/x",
                         "HTTP_X_LATIN=caf\xe9", NULL};
    web_arena *a = web_arena_create(0, 0);
    web_request *r = mkreq(a, env, NULL, NULL);
    web_source s = {WEB_SRC_HTTP, "x_latin", 7};
    web_value v;
    ck_assert_int_eq(web_source_eval(&s, r, NULL, &v), WEB_EUTF8);
    ck_assert_int_eq(web_http_status(WEB_EUTF8), 400);
    s.kind = WEB_SRC_SEG;
    s.text = "id";
    ck_assert_int_eq(web_source_eval(&s, r, NULL, &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_ABSENT);
    s.kind = WEB_SRC_BODY;
    ck_assert_int_eq(web_source_eval(&s, r, NULL, &v), WEB_OK);
    ck_assert_int_eq(v.type, WEB_V_ABSENT);
    ck_assert_int_eq(web_source_eval(NULL, r, NULL, &v), WEB_EINVAL);
    ck_assert_int_eq(web_source_eval(&s, NULL, NULL, &v), WEB_EINVAL);
    ck_assert_int_eq(web_value_present(NULL), 0);
    web_arena_free(a);
}
END_TEST

static const struct {
    time_t sec;
    long nsec;
    const char *want;
} iso_cases[] = {
    {0, 0, "1970-01-01T00:00:00.000Z"},
    {1795827723, 456789000, "2026-11-28T01:02:03.456Z"},
    {1795827723, 999999999, "2026-11-28T01:02:03.999Z"},
    {951782400, 1000000, "2000-02-29T00:00:00.001Z"},
    {253402300799, 0, "9999-12-31T23:59:59.000Z"},
};

START_TEST(time_iso_format)
{
    struct timespec ts = {iso_cases[_i].sec, iso_cases[_i].nsec};
    char buf[25];
    ck_assert_int_eq(web_time_iso(&ts, buf), WEB_OK);
    ck_assert_str_eq(buf, iso_cases[_i].want);
    ck_assert_uint_eq(strlen(buf), 24);
    ts.tv_sec = 253402300800; /* year 10000 */
    ck_assert_int_eq(web_time_iso(&ts, buf), WEB_EINVAL);
    ts.tv_sec = 0;
    ts.tv_nsec = 1000000000;
    ck_assert_int_eq(web_time_iso(&ts, buf), WEB_EINVAL);
}
END_TEST

START_TEST(strerror_all)
{
    int rc;
    for (rc = WEB_OK; rc >= WEB_EREQUIRED; rc--) {
        ck_assert_str_ne(web_strerror(rc), "unknown error");
        ck_assert_int_ge(web_http_status(rc), 200);
    }
    ck_assert_str_eq(web_strerror(-1000), "unknown error");
    ck_assert_int_eq(web_http_status(-1000), 500);
    ck_assert_int_eq(web_http_status(WEB_ENOTFOUND), 404);
    ck_assert_int_eq(web_http_status(WEB_EMETHOD), 405);
    ck_assert_int_eq(web_http_status(WEB_EREQUIRED), 400);
}
END_TEST

/* ==== runner ============================================================= */

static TCase *tc(const char *name)
{
    TCase *t = tcase_create(name);
    tcase_set_timeout(t, TU_TCASE_TIMEOUT_S);
    return t;
}

static Suite *web_suite(void)
{
    Suite *s = suite_create("web");
    TCase *t;

    t = tc("arena");
    tcase_add_loop_test(t, arena_alignment, 0, NELEM(aligns));
    tcase_add_test(t, arena_bad_align);
    tcase_add_test(t, arena_bound);
    tcase_add_test(t, arena_reset_reuses_first_chunk);
    tcase_add_test(t, arena_large_keeps_current_tail);
    tcase_add_test(t, arena_strndup);
    tcase_add_test(t, arena_dispose_order);
    suite_add_tcase(s, t);

    t = tc("request");
    tcase_add_loop_test(t, request_table, 0, NELEM(req_cases));
    tcase_add_test(t, request_accessors);
    tcase_add_loop_test(t, request_header_case, 0, NELEM(hdr_names));
    tcase_add_test(t, request_duplicate_params);
    tcase_add_loop_test(t, request_many_query_args, 0, NELEM(many_cases));
    tcase_add_test(t, request_too_many_params);
    tcase_add_test(t, request_huge_header);
    tcase_add_test(t, request_body_limits);
    tcase_add_test(t, request_copies_everything);
    tcase_add_loop_test(t, request_id, 0, NELEM(id_cases));
    suite_add_tcase(s, t);

    t = tc("query_form");
    tcase_add_loop_test(t, query_table, 0, NELEM(qs_cases));
    tcase_add_test(t, query_limit_counts_pairs);
    tcase_add_test(t, form_body);
    tcase_add_test(t, form_body_invalid);
    suite_add_tcase(s, t);

    t = tc("json");
    tcase_add_loop_test(t, json_table, 0, NELEM(json_cases));
    tcase_add_loop_test(t, json_depth, 0, NELEM(depth_cases));
    tcase_add_test(t, json_empty_body_is_no_json);
    suite_add_tcase(s, t);

    t = tc("body");
    tcase_add_test(t, body_not_parsed_until_a_field_is_read);
    tcase_add_test(t, body_parsed_once);
    tcase_add_test(t, body_form_parsed_lazily);
    tcase_add_test(t, body_init_parses_at_once);
    tcase_add_test(t, body_other_or_dropped_never_parsed);
    tcase_add_test(t, body_route_max_body_unit);
    tcase_add_loop_test(t, body_json_element_bound, 0, NELEM(elem_cases));
    tcase_add_loop_test(t, body_json_depth_configurable, 0,
                        NELEM(cdepth_cases));
    tcase_add_test(t, body_json_bound_stops_jansson_early);
    tcase_add_test(t, body_json_reason_does_not_echo_the_body);
    tcase_add_test(t, media_type_matching);
    suite_add_tcase(s, t);

    t = tc("require");
    tcase_add_test(t, require_all_present);
    tcase_add_loop_test(t, require_reports_the_first_missing, 0,
                        NELEM(req_missing_cases));
    tcase_add_test(t, require_none_reads_nothing);
    tcase_add_loop_test(t, source_client_names, 0, NELEM(client_names));
    suite_add_tcase(s, t);

    t = tc("router");
    tcase_add_loop_test(t, router_table, 0, NELEM(match_cases));
    tcase_add_loop_test(t, router_table_reversed, 0, NELEM(match_cases));
    tcase_add_test(t, router_params);
    tcase_add_loop_test(t, router_bad_patterns, 0, NELEM(bad_patterns));
    tcase_add_test(t, router_bounded);
    tcase_add_test(t, router_concurrent_readers);
    tcase_add_test(t, methods_format);
    tcase_add_test(t, method_names);
    suite_add_tcase(s, t);

    t = tc("conf");
    tcase_add_test(t, conf_shipped);
    tcase_add_loop_test(t, conf_error_table, 0, NELEM(conf_errors));
    tcase_add_test(t, conf_body_bounds);
    tcase_add_test(t, conf_require);
    tcase_add_loop_test(t, conf_identifiers_refused, 0, NELEM(bad_idents));
    tcase_add_test(t, conf_full_grammar);
    tcase_add_test(t, conf_access_log_off);
    tcase_add_loop_test(t, conf_suffixes, 0, NELEM(size_cases));
    tcase_add_test(t, conf_defaults_and_io);
    tcase_add_test(t, conf_too_large);
    tcase_add_test(t, conf_include_order_and_place);
    tcase_add_test(t, conf_include_errors);
    tcase_add_test(t, conf_include_depth);
    suite_add_tcase(s, t);

    t = tc("database");
    tcase_add_loop_test(t, db_engine_of_path, 0, NELEM(engine_cases));
    tcase_add_test(t, db_engine_names_and_checks);
    tcase_add_loop_test(t, db_path_resolve_prefix, 0, NELEM(resolve_cases));
    tcase_add_loop_test(t, db_path_redact, 0, NELEM(redact_cases));
    tcase_add_test(t, db_path_redact_short_buffer);
    tcase_add_test(t, db_dir_missing_check_then_create);
    tcase_add_test(t, db_dir_refusals_agree);
    tcase_add_test(t, db_dir_nothing_to_do);
    suite_add_tcase(s, t);

    t = tc("source");
    tcase_add_loop_test(t, source_eval, 0, NELEM(src_cases));
    tcase_add_test(t, source_eval_errors);
    tcase_add_loop_test(t, time_iso_format, 0, NELEM(iso_cases));
    tcase_add_test(t, strerror_all);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(web_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
