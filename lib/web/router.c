/*
 * router.c -- method + path pattern routing (see web.h for the rules).
 *
 * DESIGN
 *   Patterns are split into segments once, at web_router_add; a match
 *   splits the path once into at most WEB_MAX_SEGMENTS + 1 segments and
 *   tries every route (route tables are tens of entries; a linear scan
 *   over pre-split segments costs less than building a tree, and keeps
 *   the precedence rule readable).  The rule is a total order, so the
 *   result never depends on how routes happen to be stored:
 *     class (exact 3 > named 2 > prefix 1), then for named routes the
 *     number of literal segments, for prefix routes the number of
 *     segments before the star, then the earlier declaration.
 *   A path with more segments than any pattern can hold can still match a
 *   prefix route, which only looks at its first segments.
 *   The router is read-only after it is built, so matching is thread-safe.
 */
#include "web_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEG_LIT = 0, SEG_NAMED };
enum { CLS_PREFIX = 1, CLS_NAMED = 2, CLS_EXACT = 3 };

typedef struct seg {
    const char *s;   /* into route.pattern (name without ':' if NAMED) */
    size_t n;
    int kind;
} seg;

typedef struct route {
    unsigned methods;
    char *pattern;
    void *data;
    seg segs[WEB_MAX_SEGMENTS];
    size_t nsegs;
    size_t nlit;
    int cls;
} route;

struct web_router {
    route *routes;
    size_t n, cap;
};

static int fail(char *err, size_t errlen, const char *msg, const char *pat)
{
    if (errlen > 0)
        snprintf(err, errlen, "%s in path \"%s\"", msg, pat);
    return WEB_EINVAL;
}

/* Split pattern (already copied into r->pattern) into r->segs. */
static int parse_pattern(route *r, char *err, size_t errlen)
{
    const char *p = r->pattern;
    size_t i = 1, len = strlen(p), ncap = 0;
    if (len == 0 || p[0] != '/')
        return fail(err, errlen, "expected '/' at the start", p);
    r->nsegs = r->nlit = 0;
    r->cls = CLS_EXACT;
    if (len == 1)
        return WEB_OK;
    while (i <= len) {
        const char *slash = memchr(p + i, '/', len - i);
        size_t end = slash ? (size_t)(slash - p) : len;
        size_t n = end - i;
        const char *s = p + i;
        int last = end == len;
        if (n == 0 && !last)
            return fail(err, errlen, "empty segment", p);
        if (n == 1 && s[0] == '*') {
            if (!last)
                return fail(err, errlen, "'*' must be the last segment", p);
            r->cls = CLS_PREFIX;
            return WEB_OK;
        }
        if (memchr(s, '*', n) != NULL)
            return fail(err, errlen, "'*' must be a whole segment", p);
        if (r->nsegs == WEB_MAX_SEGMENTS)
            return fail(err, errlen, "too many segments", p);
        if (n > 0 && s[0] == ':') {
            size_t k;
            if (!web__ident_valid(s + 1, n - 1))
                return fail(err, errlen, "invalid segment name", p);
            if (ncap == WEB_MAX_CAPTURES)
                return fail(err, errlen, "too many named segments", p);
            for (k = 0; k < r->nsegs; k++)
                if (r->segs[k].kind == SEG_NAMED && r->segs[k].n == n - 1 &&
                    memcmp(r->segs[k].s, s + 1, n - 1) == 0)
                    return fail(err, errlen, "duplicate segment name", p);
            r->segs[r->nsegs].kind = SEG_NAMED;
            r->segs[r->nsegs].s = s + 1;
            r->segs[r->nsegs].n = n - 1;
            ncap++;
            if (r->cls == CLS_EXACT)
                r->cls = CLS_NAMED;
        } else {
            r->segs[r->nsegs].kind = SEG_LIT;
            r->segs[r->nsegs].s = s;
            r->segs[r->nsegs].n = n;
            r->nlit++;
        }
        r->nsegs++;
        i = end + 1;
    }
    return WEB_OK;
}

int web_pattern_check(const char *pattern, char *err, size_t errlen)
{
    route r;
    if (errlen > 0)
        err[0] = '\0';
    if (pattern == NULL)
        return WEB_EINVAL;
    r.pattern = (char *)pattern; /* parse_pattern only reads it */
    return parse_pattern(&r, err, errlen);
}

web_router *web_router_create(void)
{
    return calloc(1, sizeof(web_router));
}

void web_router_free(web_router *r)
{
    size_t i;
    if (r == NULL)
        return;
    for (i = 0; i < r->n; i++)
        free(r->routes[i].pattern);
    free(r->routes);
    free(r);
}

int web_router_add(web_router *r, unsigned methods, const char *pattern,
                   void *data)
{
    route *rt;
    int rc;
    if (r == NULL || pattern == NULL || (methods & WEB_M_ANY) == 0)
        return WEB_EINVAL;
    if (r->n == WEB_MAX_ROUTES)
        return WEB_EFULL;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        route *nr = realloc(r->routes, ncap * sizeof(*nr));
        if (nr == NULL)
            return WEB_ENOMEM;
        r->routes = nr;
        r->cap = ncap;
    }
    rt = &r->routes[r->n];
    memset(rt, 0, sizeof(*rt));
    rt->pattern = strdup(pattern);
    if (rt->pattern == NULL)
        return WEB_ENOMEM;
    rc = parse_pattern(rt, NULL, 0);
    if (rc != WEB_OK) {
        free(rt->pattern);
        return rc;
    }
    rt->methods = methods & WEB_M_ANY;
    rt->data = data;
    r->n++;
    return WEB_OK;
}

typedef struct pseg {
    size_t start, n;
} pseg;

/* Does route rt match the split path?  Fills captures/tail into m if m. */
static int route_matches(const route *rt, const char *path, size_t path_len,
                         const pseg *ps, size_t nps, int more,
                         web_match *m)
{
    size_t k;
    if (rt->cls == CLS_PREFIX) {
        /* Needs at least one segment (possibly empty) after the prefix. */
        if (nps <= rt->nsegs && !more)
            return 0;
    } else if (more || nps != rt->nsegs) {
        return 0;
    }
    for (k = 0; k < rt->nsegs; k++) {
        const seg *s = &rt->segs[k];
        if (s->kind == SEG_LIT) {
            if (ps[k].n != s->n || memcmp(path + ps[k].start, s->s, s->n) != 0)
                return 0;
        } else if (ps[k].n == 0) {
            return 0;
        }
    }
    if (m != NULL) {
        m->ncaptures = 0;
        for (k = 0; k < rt->nsegs; k++) {
            const seg *s = &rt->segs[k];
            if (s->kind != SEG_NAMED)
                continue;
            m->captures[m->ncaptures].name = s->s;
            m->captures[m->ncaptures].name_len = s->n;
            m->captures[m->ncaptures].value = path + ps[k].start;
            m->captures[m->ncaptures].value_len = ps[k].n;
            m->ncaptures++;
        }
        if (rt->cls == CLS_PREFIX) {
            m->tail = path + ps[rt->nsegs].start;
            m->tail_len = path_len - ps[rt->nsegs].start;
        }
    }
    return 1;
}

static int admits(unsigned methods, unsigned bit)
{
    if (methods & bit)
        return 1;
    return bit == WEB_M_HEAD && (methods & WEB_M_GET);
}

/* Rank key: higher is better. */
static size_t rank_of(const route *rt)
{
    size_t sub = rt->cls == CLS_PREFIX ? rt->nsegs
               : rt->cls == CLS_NAMED ? rt->nlit : 0;
    return (size_t)rt->cls * 1000 + sub;
}

int web_router_match(const web_router *r, const char *method,
                     const char *path, size_t path_len, web_match *m)
{
    pseg ps[WEB_MAX_SEGMENTS + 1];
    size_t nps = 0, i = 1, best = SIZE_MAX, best_rank = 0;
    unsigned bit, allow = 0;
    int more = 0, any_path = 0;
    if (m == NULL)
        return WEB_EINVAL;
    memset(m, 0, sizeof(*m));
    if (r == NULL || method == NULL || path == NULL)
        return WEB_EINVAL;
    if (path_len == 0 || path[0] != '/')
        return WEB_ENOTFOUND;
    bit = web_method_bit(method);
    if (bit == 0)
        return WEB_EINVAL;
    /* Split: "/" has no segments, "/a/" has "a" and "". */
    if (path_len > 1) {
        while (i <= path_len) {
            const char *slash = memchr(path + i, '/', path_len - i);
            size_t end = slash ? (size_t)(slash - path) : path_len;
            if (nps == WEB_MAX_SEGMENTS + 1) {
                more = 1;
                break;
            }
            ps[nps].start = i;
            ps[nps].n = end - i;
            nps++;
            i = end + 1;
        }
    }
    for (i = 0; i < r->n; i++) {
        const route *rt = &r->routes[i];
        size_t rk;
        if (!route_matches(rt, path, path_len, ps, nps, more, NULL))
            continue;
        any_path = 1;
        allow |= rt->methods;
        if (!admits(rt->methods, bit))
            continue;
        rk = rank_of(rt);
        if (best == SIZE_MAX || rk > best_rank) {
            best = i;
            best_rank = rk;
        }
    }
    if (best != SIZE_MAX) {
        const route *rt = &r->routes[best];
        route_matches(rt, path, path_len, ps, nps, more, m);
        m->data = rt->data;
        m->route = best;
        m->pattern = rt->pattern;
        return WEB_OK;
    }
    if (!any_path)
        return WEB_ENOTFOUND;
    if (allow & WEB_M_GET)
        allow |= WEB_M_HEAD;
    m->allow = allow;
    web_methods_format(allow, m->allow_str, sizeof m->allow_str);
    return WEB_EMETHOD;
}

const char *web_match_param(const web_match *m, const char *name, size_t *len)
{
    size_t i, nl;
    if (len != NULL)
        *len = 0;
    if (m == NULL || name == NULL)
        return NULL;
    nl = strlen(name);
    for (i = 0; i < m->ncaptures; i++)
        if (m->captures[i].name_len == nl &&
            memcmp(m->captures[i].name, name, nl) == 0) {
            if (len != NULL)
                *len = m->captures[i].value_len;
            return m->captures[i].value;
        }
    return NULL;
}
