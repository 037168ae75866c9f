/*
 * source.c -- evaluate a conf value source ($http_x_user_id, "text",
 * raw:CURRENT_TIMESTAMP...) against one request.
 *
 * The result is a typed value for the caller to bind; nothing here builds
 * SQL.  Only RAW carries SQL text, and RAW text always comes from the conf
 * file, never from the request.  Text that comes from the request is
 * checked for UTF-8 here when the copy-out did not already do it (headers,
 * remote address, content type, raw query string), because it will be
 * bound as SQLite TEXT.
 */
#include "web_int.h"

#include <stdio.h>
#include <string.h>

static int text(web_value *out, const char *s, size_t n, int check)
{
    if (s == NULL)
        return WEB_OK; /* stays ABSENT */
    if (check && !web_utf8_valid(s, n))
        return WEB_EUTF8;
    out->type = WEB_V_TEXT;
    out->s = s;
    out->len = n;
    return WEB_OK;
}

int web_source_eval(const web_source *src, const web_request *r,
                    const web_match *m, web_value *out)
{
    size_t n = 0;
    const char *s;
    if (out == NULL)
        return WEB_EINVAL;
    memset(out, 0, sizeof(*out));
    if (src == NULL)
        return WEB_EINVAL;
    switch (src->kind) {
    case WEB_SRC_LITERAL:
        return text(out, src->text, src->len, 0);
    case WEB_SRC_RAW:
        out->type = WEB_V_RAW;
        out->s = src->text;
        out->len = src->len;
        return WEB_OK;
    default:
        break;
    }
    if (r == NULL)
        return WEB_EINVAL;
    switch (src->kind) {
    case WEB_SRC_METHOD:
        s = web_request_method(r);
        return text(out, s, s ? strlen(s) : 0, 1);
    case WEB_SRC_PATH:
        s = web_request_path(r, &n);
        return text(out, s, n, 0);
    case WEB_SRC_QUERY:
        s = web_request_query(r, &n);
        return text(out, s, n, 1);
    case WEB_SRC_SEG:
        s = web_match_param(m, src->text, &n);
        return text(out, s, n, 0);
    case WEB_SRC_ARG:
        s = web_request_arg(r, src->text, &n);
        return text(out, s, n, 0);
    case WEB_SRC_HTTP:
        s = web_request_header(r, src->text, &n);
        return text(out, s, n, 1);
    case WEB_SRC_BODY:
        return web_request_body_field(r, src->text, out);
    case WEB_SRC_REMOTE_ADDR:
        s = web_request_remote_addr(r);
        return text(out, s, s ? strlen(s) : 0, 1);
    case WEB_SRC_REQUEST_ID:
        s = web_request_id(r);
        return text(out, s, s ? strlen(s) : 0, 1);
    case WEB_SRC_CONTENT_TYPE:
        s = web_request_content_type(r);
        return text(out, s, s ? strlen(s) : 0, 1);
    case WEB_SRC_TIME_ISO: {
        struct timespec ts = web_request_time(r);
        char buf[25], *copy;
        int rc = web_time_iso(&ts, buf);
        if (rc != WEB_OK)
            return rc;
        copy = web_arena_strndup(web_request_arena(r), buf, 24);
        if (copy == NULL)
            return WEB_ETOOBIG;
        return text(out, copy, 24, 0);
    }
    case WEB_SRC_TIME_UNIX:
        out->type = WEB_V_INT;
        out->i = (int64_t)web_request_time(r).tv_sec;
        return WEB_OK;
    default:
        return WEB_EINVAL;
    }
}

int web_value_present(const web_value *v)
{
    if (v == NULL || v->type == WEB_V_ABSENT || v->type == WEB_V_NULL)
        return 0;
    return !(v->type == WEB_V_TEXT && v->len == 0);
}

int web_route_check_required(const web_route_conf *route,
                             const web_request *r, const web_match *m,
                             const web_source **missing)
{
    if (missing != NULL)
        *missing = NULL;
    if (route == NULL)
        return WEB_EINVAL;
    for (size_t i = 0; i < route->nrequires; i++) {
        web_value v;
        int rc = web_source_eval(&route->requires[i], r, m, &v);
        if (rc != WEB_OK)
            return rc;
        if (!web_value_present(&v)) {
            if (missing != NULL)
                *missing = &route->requires[i];
            return WEB_EREQUIRED;
        }
    }
    return WEB_OK;
}

const char *web_source_client_name(const web_source *s, const char **what,
                                   char *buf, size_t buflen)
{
    const char *w = "value";
    size_t n, i;
    if (buf == NULL || buflen == 0)
        return buf;
    if (s == NULL) {
        snprintf(buf, buflen, "-");
        if (what != NULL)
            *what = w;
        return buf;
    }
    switch (s->kind) {
    case WEB_SRC_BODY: w = "body field"; break;
    case WEB_SRC_HTTP: w = "header"; break;
    case WEB_SRC_ARG: w = "query argument"; break;
    case WEB_SRC_SEG: w = "path segment"; break;
    default:
        if (what != NULL)
            *what = w;
        return web_source_name(s, buf, buflen);
    }
    if (what != NULL)
        *what = w;
    n = s->len < buflen - 1 ? s->len : buflen - 1;
    memcpy(buf, s->text, n);
    buf[n] = '\0';
    if (s->kind == WEB_SRC_HTTP)
        for (i = 0; i < n; i++)
            buf[i] = buf[i] == '_' ? '-'
                     : (buf[i] >= 'A' && buf[i] <= 'Z') ? (char)(buf[i] + 32)
                                                        : buf[i];
    return buf;
}

const char *web_source_name(const web_source *s, char *buf, size_t buflen)
{
    static const char *const fixed[] = {
        [WEB_SRC_METHOD] = "$request_method",
        [WEB_SRC_PATH] = "$uri",
        [WEB_SRC_QUERY] = "$query_string",
        [WEB_SRC_REMOTE_ADDR] = "$remote_addr",
        [WEB_SRC_REQUEST_ID] = "$request_id",
        [WEB_SRC_TIME_ISO] = "$time_iso",
        [WEB_SRC_TIME_UNIX] = "$time_unix",
        [WEB_SRC_CONTENT_TYPE] = "$content_type",
    };
    const char *pre = NULL;
    if (buf == NULL || buflen == 0)
        return buf;
    if (s == NULL) {
        snprintf(buf, buflen, "(null)");
        return buf;
    }
    switch (s->kind) {
    case WEB_SRC_LITERAL:
        snprintf(buf, buflen, "\"%.*s\"", (int)(s->len > 200 ? 200 : s->len),
                 s->text);
        return buf;
    case WEB_SRC_RAW: pre = "raw:"; break;
    case WEB_SRC_SEG: pre = "$seg_"; break;
    case WEB_SRC_ARG: pre = "$arg_"; break;
    case WEB_SRC_HTTP: pre = "$http_"; break;
    case WEB_SRC_BODY: pre = "$body_"; break;
    default:
        if ((size_t)s->kind < sizeof fixed / sizeof fixed[0] &&
            fixed[s->kind] != NULL)
            snprintf(buf, buflen, "%s", fixed[s->kind]);
        else
            snprintf(buf, buflen, "(unknown)");
        return buf;
    }
    snprintf(buf, buflen, "%s%.*s", pre, (int)(s->len > 200 ? 200 : s->len),
             s->text);
    return buf;
}
