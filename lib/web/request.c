/*
 * request.c -- copy a FastCGI request out of libfcgi's memory into a
 * per-request arena, and parse its path, query string and body.
 *
 * DESIGN
 *   Everything here reads untrusted bytes.  Rules kept throughout:
 *   - every length is known before a copy (strnlen with a bound on the
 *     NUL-terminated envp strings, explicit lengths elsewhere), and
 *     compared by subtraction against what is left;
 *   - counts are checked BEFORE anything is allocated for them (the number
 *     of '&'-separated pairs is counted, then refused or allocated at
 *     once), so 10,000 query args cost one scan, not 10,000 allocations;
 *   - decoded bytes only shrink (%XX -> 1 byte), so one buffer of the
 *     input's length always suffices;
 *   - every value that can reach SQLite TEXT (path, args, form fields) is
 *     checked for UTF-8 and NUL here; header values are checked when a
 *     conf source reads them (web_source_eval), because most headers are
 *     never used and some clients send Latin-1.
 *   After web_request_init returns, nothing points into envp or the body
 *   buffer: libfcgi frees both in FCGX_Finish_r.
 *
 *   Body: copied out as bytes, parsed only when something reads a field
 *   (web_request_parse_body, called by the body accessors), once, and
 *   bounded: the server reads the body after routing, so a route that
 *   reads no $body_ field (and a 404) never reaches a parser.  A JSON body
 *   reaches jansson through json_load_callback in 1 KiB chunks; the feeder
 *   counts depth and elements in each chunk before handing it over and
 *   stops the parse (returns an error to jansson) at the first chunk past
 *   a bound, so jansson never builds more than max_json_elements values
 *   nor recurses deeper than max_json_depth, and a 1 MB "[0,0,...]" costs
 *   a scan of the first ~20 kB, not a 27 MB tree.  The counting happens
 *   on the raw text, strings skipped with their escapes; jansson still
 *   validates every byte it is given.
 *
 *   Path: DOCUMENT_URI (nginx $uri) is preferred because it is what nginx
 *   matched its location against, after its own decoding, merging and
 *   internal rewrites; decoding it again would decode twice ("%2525").  It
 *   is still normalised here, so a different front end cannot smuggle
 *   ".." through.  Without it, REQUEST_URI's path is decoded first and
 *   normalised after, so "%2e%2e" cannot bypass the ".." check.
 */
#define _GNU_SOURCE
#include "web_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct param {
    const char *name;
    size_t name_len;
    const char *val;
    size_t val_len;
} param;

enum { BODY_OTHER = 0, BODY_FORM, BODY_JSON };

/* What the lazy body parse leaves behind.  Reached through a pointer so
 * that accessors taking a const web_request can fill it once. */
struct body_parse {
    int done;          /* the parse ran (or there was nothing to parse) */
    int rc;            /* its result, returned again on every call */
    int kind;          /* BODY_* */
    unsigned parses;   /* times a parser ran: 0 or 1 */
    web_kv *form;
    size_t nform;
    json_t *json;
    char why[112];     /* reason for the client when rc != WEB_OK */
};

struct web_request {
    web_arena *arena;
    const char *method;
    unsigned mbit;
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
    const char *ctype;
    int64_t clen;
    const char *body;
    size_t body_len;
    const char *remote_addr;
    const char *id;
    struct timespec time;
    param *params;
    size_t nparams;
    size_t *hdr;       /* indices of HTTP_* params */
    size_t nheaders;
    web_kv *args;
    size_t nargs;
    int body_set;      /* web_request_set_body ran */
    web_limits lim;    /* bounds for the lazy parse */
    struct body_parse *bp;
};

void web_limits_default(web_limits *lim)
{
    lim->max_params = 1000;
    lim->max_param_len = 65536;
    lim->max_query_args = 1000;
    lim->max_body = 1024 * 1024;
    lim->max_json_depth = 32;
    lim->max_json_elements = 10000;
}

/* ---- urlencoded -------------------------------------------------------- */

/* Decode s[0..n) into out (room for n + 1 bytes): WEB_OK, or
 * WEB_EBADQUERY on a bad or truncated escape, %00 or a raw NUL. */
static int url_decode(const char *s, size_t n, int plus, char *out,
                      size_t *out_len)
{
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (n - i < 3)
                return WEB_EBADQUERY;
            hi = web__hexval((unsigned char)s[i + 1]);
            lo = web__hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return WEB_EBADQUERY;
            out[o++] = (char)(hi * 16 + lo);
            i += 3;
        } else {
            if (c == '\0')
                return WEB_EBADQUERY;
            out[o++] = (plus && c == '+') ? ' ' : (char)c;
            i++;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return WEB_OK;
}

/* Decode one component into the arena; WEB_EBADQUERY if invalid. */
static int decode_part(web_arena *a, const char *s, size_t n,
                       const char **out, size_t *out_len)
{
    char *buf;
    if (n == SIZE_MAX)
        return WEB_ETOOBIG;
    buf = web_arena_alloc_aligned(a, n + 1, 1);
    if (buf == NULL)
        return WEB_ETOOBIG;
    if (url_decode(s, n, 1, buf, out_len) != WEB_OK ||
        !web_utf8_valid(buf, *out_len))
        return WEB_EBADQUERY;
    *out = buf;
    return WEB_OK;
}

int web_urlencoded_parse(web_arena *a, const char *s, size_t n,
                         size_t max_args, web_kv **out, size_t *count)
{
    size_t i, npairs = 0, k = 0;
    web_kv *kv;
    if (out == NULL || count == NULL)
        return WEB_EINVAL;
    *out = NULL;
    *count = 0;
    if (a == NULL || (s == NULL && n > 0))
        return WEB_EINVAL;
    /* Count non-empty pairs first: refuse before allocating anything. */
    for (i = 0; i < n; i++) {
        if (s[i] != '&' && (i == 0 || s[i - 1] == '&')) {
            if (npairs == max_args)
                return WEB_ETOOMANY;
            npairs++;
        }
    }
    if (npairs == 0)
        return WEB_OK;
    if (npairs > SIZE_MAX / sizeof(*kv))
        return WEB_ETOOBIG;
    kv = web_arena_alloc(a, npairs * sizeof(*kv));
    if (kv == NULL)
        return WEB_ETOOBIG;
    i = 0;
    while (i < n) {
        size_t start = i, end, eq;
        const char *amp = memchr(s + i, '&', n - i);
        int rc;
        end = amp ? (size_t)(amp - s) : n;
        i = end < n ? end + 1 : n;
        if (end == start)
            continue;
        {
            const char *e = memchr(s + start, '=', end - start);
            eq = e ? (size_t)(e - s) : end;
        }
        rc = decode_part(a, s + start, eq - start, &kv[k].key, &kv[k].key_len);
        if (rc != WEB_OK)
            return rc;
        kv[k].has_eq = eq < end;
        if (eq < end)
            rc = decode_part(a, s + eq + 1, end - eq - 1, &kv[k].val,
                             &kv[k].val_len);
        else
            rc = decode_part(a, "", 0, &kv[k].val, &kv[k].val_len);
        if (rc != WEB_OK)
            return rc;
        k++;
    }
    *out = kv;
    *count = k;
    return WEB_OK;
}

/* ---- path -------------------------------------------------------------- */

int web_path_normalize(web_arena *a, const char *s, size_t n, int decode,
                       char **out, size_t *out_len)
{
    char *tmp, *res;
    size_t tlen, i, o = 0;
    int trailing = 0;
    if (out == NULL || out_len == NULL)
        return WEB_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (a == NULL || s == NULL || n == SIZE_MAX)
        return WEB_EINVAL;
    tmp = web_arena_alloc_aligned(a, n + 1, 1);
    if (tmp == NULL)
        return WEB_ETOOBIG;
    if (decode) {
        if (url_decode(s, n, 0, tmp, &tlen) != WEB_OK)
            return WEB_EBADPATH;
    } else {
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        tlen = n;
    }
    if (tlen == 0 || tmp[0] != '/')
        return WEB_EBADPATH;
    for (i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)tmp[i];
        if (c < 0x20 || c == 0x7f)
            return WEB_EBADPATH;
    }
    if (!web_utf8_valid(tmp, tlen))
        return WEB_EBADPATH;
    res = web_arena_alloc_aligned(a, tlen + 2, 1);
    if (res == NULL)
        return WEB_ETOOBIG;
    i = 0;
    while (i < tlen) {
        size_t start, slen;
        while (i < tlen && tmp[i] == '/')
            i++;
        if (i == tlen) {
            trailing = 1;
            break;
        }
        start = i;
        while (i < tlen && tmp[i] != '/')
            i++;
        slen = i - start;
        if (slen == 1 && tmp[start] == '.') {
            trailing = 1;
        } else if (slen == 2 && tmp[start] == '.' && tmp[start + 1] == '.') {
            if (o == 0)
                return WEB_EBADPATH;
            while (o > 0 && res[o - 1] != '/')
                o--;
            o--; /* the '/' itself */
            trailing = 1;
        } else {
            res[o++] = '/';
            memcpy(res + o, tmp + start, slen);
            o += slen;
            trailing = 0;
        }
    }
    if (o == 0 || trailing)
        res[o++] = '/';
    res[o] = '\0';
    *out = res;
    *out_len = o;
    return WEB_OK;
}

/* ---- JSON -------------------------------------------------------------- */

enum { FEED_OK = 0, FEED_DEEP, FEED_MANY };

/* json_load_callback's source: hands the body to jansson in chunks and
 * counts, before each chunk is handed over, the nesting depth and the
 * elements (array elements and object members: every ',' outside
 * strings, plus one for a container that is not empty).  State carries
 * across chunks (inside a string, after a backslash, just after '[' or
 * '{'). */
struct json_feed {
    const char *s;
    size_t n, off;
    size_t depth, max_depth;
    size_t elems, max_elems;
    int in_str, esc, opened;
    int over;          /* FEED_*: which bound stopped the parse */
};

static size_t json_feed_chunk(void *buf, size_t buflen, void *data)
{
    struct json_feed *f = data;
    size_t n = f->n - f->off, i;
    const char *p = f->s + f->off;
    if (f->over != FEED_OK)
        return (size_t)-1;
    if (n > buflen)
        n = buflen;
    for (i = 0; i < n; i++) {
        char c = p[i];
        if (f->in_str) {
            if (f->esc)
                f->esc = 0;
            else if (c == '\\')
                f->esc = 1;
            else if (c == '"')
                f->in_str = 0;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        if (f->opened) {
            f->opened = 0;
            if (c != ']' && c != '}')
                f->elems++;
        }
        if (c == '"') {
            f->in_str = 1;
        } else if (c == '[' || c == '{') {
            f->opened = 1;
            if (++f->depth > f->max_depth)
                f->over = FEED_DEEP;
        } else if (c == ']' || c == '}') {
            if (f->depth > 0)
                f->depth--;
        } else if (c == ',') {
            f->elems++;
        }
        if (f->elems > f->max_elems && f->over == FEED_OK)
            f->over = FEED_MANY;
        if (f->over != FEED_OK)
            return (size_t)-1; /* jansson stops: "read error" (EOF) */
    }
    memcpy(buf, p, n);
    f->off += n;
    return n;
}

/* A short reason for a jansson error, without quoting the input. */
static const char *json_why(const json_error_t *e)
{
    switch (json_error_code(e)) {
    case json_error_invalid_utf8: return "invalid UTF-8";
    case json_error_premature_end_of_input: return "unexpected end";
    case json_error_end_of_input_expected: return "data after the value";
    case json_error_null_character: return "\\u0000 in a string";
    case json_error_null_byte_in_key: return "\\u0000 in a key";
    case json_error_duplicate_key: return "duplicate object key";
    case json_error_numeric_overflow: return "number out of range";
    case json_error_stack_overflow: return "nested too deeply";
    default: return "syntax error";
    }
}

static void json_dispose(void *p)
{
    json_decref((json_t *)p);
}

static int parse_json(const web_request *r, struct body_parse *bp)
{
    struct json_feed f;
    json_error_t err;
    json_t *j;
    int rc;

    memset(&f, 0, sizeof f);
    f.s = r->body;
    f.n = r->body_len;
    f.max_depth = r->lim.max_json_depth;
    f.max_elems = r->lim.max_json_elements;
    j = json_load_callback(json_feed_chunk, &f,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (j == NULL) {
        if (f.over == FEED_DEEP)
            snprintf(bp->why, sizeof bp->why,
                     "JSON body nested deeper than %zu levels", f.max_depth);
        else if (f.over == FEED_MANY)
            snprintf(bp->why, sizeof bp->why,
                     "JSON body has more than %zu elements", f.max_elems);
        else if (json_error_code(&err) == json_error_out_of_memory)
            return WEB_ENOMEM;
        else
            snprintf(bp->why, sizeof bp->why,
                     "invalid JSON body: %s at line %d, column %d",
                     json_why(&err), err.line, err.column);
        return WEB_EBADJSON;
    }
    if (f.over != FEED_OK) {
        /* A complete value before the chunk that went past a bound: the
         * rest was never checked, so the body is refused all the same. */
        json_decref(j);
        snprintf(bp->why, sizeof bp->why, "%s",
                 f.over == FEED_DEEP ? "JSON body nested too deeply"
                                     : "JSON body has too many elements");
        return WEB_EBADJSON;
    }
    rc = web_arena_on_reset(r->arena, json_dispose, j);
    if (rc != WEB_OK) {
        json_decref(j);
        return rc;
    }
    bp->json = j;
    bp->kind = BODY_JSON;
    return WEB_OK;
}

/* ---- helpers ----------------------------------------------------------- */

int web_media_type_is(const char *ct, const char *want)
{
    size_t wl, i = 0;
    if (ct == NULL || want == NULL)
        return 0;
    wl = strlen(want);
    while (ct[i] == ' ' || ct[i] == '\t')
        i++;
    if (strncasecmp(ct + i, want, wl) != 0)
        return 0;
    i += wl;
    while (ct[i] == ' ' || ct[i] == '\t')
        i++;
    return ct[i] == '\0' || ct[i] == ';';
}

/* Strict decimal: digits only, no sign, fits int64. -1 if invalid. */
static int64_t parse_length(const char *s, size_t n)
{
    int64_t v = 0;
    size_t i;
    if (n == 0 || n > 18)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int id_valid(const char *s, size_t n)
{
    size_t i;
    if (n == 0 || n > 64)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int make_id(web_request *r)
{
    unsigned char rnd[16];
    char *id = web_arena_alloc_aligned(r->arena, 33, 1);
    size_t i;
    if (id == NULL)
        return WEB_ETOOBIG;
    if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        /* No entropy yet (early boot): an id only has to be unique enough
         * to correlate log lines, so time and addresses do. */
        uint64_t a = (uint64_t)r->time.tv_sec * 1000000000u +
                     (uint64_t)r->time.tv_nsec;
        uint64_t b = (uint64_t)(uintptr_t)r ^ (a << 17);
        memcpy(rnd, &a, 8);
        memcpy(rnd + 8, &b, 8);
    }
    for (i = 0; i < sizeof rnd; i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    r->id = id;
    return WEB_OK;
}

static const param *find_param(const web_request *r, const char *name)
{
    size_t i, nl = strlen(name);
    for (i = 0; i < r->nparams; i++)
        if (r->params[i].name_len == nl &&
            memcmp(r->params[i].name, name, nl) == 0)
            return &r->params[i];
    return NULL;
}

/* ---- copy-out ---------------------------------------------------------- */

static int copy_params(web_request *r, char *const *envp,
                       const web_limits *lim)
{
    size_t n = 0, i, k = 0, nh = 0;
    if (envp == NULL)
        return WEB_OK;
    while (envp[n] != NULL) {
        if (n == lim->max_params)
            return WEB_ETOOMANY;
        n++;
    }
    if (n == 0)
        return WEB_OK;
    r->params = web_arena_alloc(r->arena, n * sizeof(*r->params));
    r->hdr = web_arena_alloc(r->arena, n * sizeof(*r->hdr));
    if (r->params == NULL || r->hdr == NULL)
        return WEB_ETOOBIG;
    for (i = 0; i < n; i++) {
        size_t len = strnlen(envp[i], lim->max_param_len + 1);
        const char *eq;
        char *copy;
        if (len > lim->max_param_len)
            return WEB_EHEADER;
        eq = memchr(envp[i], '=', len);
        if (eq == NULL || eq == envp[i])
            continue; /* not NAME=value: nothing a handler could ask for */
        copy = web_arena_strndup(r->arena, envp[i], len);
        if (copy == NULL)
            return WEB_ETOOBIG;
        r->params[k].name = copy;
        r->params[k].name_len = (size_t)(eq - envp[i]);
        copy[r->params[k].name_len] = '\0';
        r->params[k].val = copy + r->params[k].name_len + 1;
        r->params[k].val_len = len - r->params[k].name_len - 1;
        if (r->params[k].name_len > 5 && memcmp(copy, "HTTP_", 5) == 0)
            r->hdr[nh++] = k;
        k++;
    }
    r->nparams = k;
    r->nheaders = nh;
    return WEB_OK;
}

/* The parse itself (web_request_parse_body runs it once). */
static int parse_body(const web_request *r, struct body_parse *bp)
{
    int rc;
    if (r->ctype == NULL || r->body == NULL || r->body_len == 0)
        return WEB_OK;
    if (web_media_type_is(r->ctype, "application/x-www-form-urlencoded")) {
        bp->parses++;
        rc = web_urlencoded_parse(r->arena, r->body, r->body_len,
                                  r->lim.max_query_args, &bp->form,
                                  &bp->nform);
        if (rc == WEB_ETOOMANY)
            snprintf(bp->why, sizeof bp->why,
                     "form body has more than %zu fields",
                     r->lim.max_query_args);
        else if (rc == WEB_EBADQUERY)
            snprintf(bp->why, sizeof bp->why,
                     "invalid form body (bad escape, NUL or invalid UTF-8)");
        if (rc == WEB_OK)
            bp->kind = BODY_FORM;
        return rc;
    }
    if (web_media_type_is(r->ctype, "application/json")) {
        bp->parses++;
        return parse_json(r, bp);
    }
    return WEB_OK;
}

int web_request_parse_body(const web_request *r)
{
    struct body_parse *bp;
    if (r == NULL || r->bp == NULL)
        return WEB_EINVAL;
    bp = r->bp;
    if (!bp->done) {
        bp->rc = parse_body(r, bp);
        bp->done = 1;
    }
    return bp->rc;
}

unsigned web_request_body_parses(const web_request *r)
{
    return (r != NULL && r->bp != NULL) ? r->bp->parses : 0;
}

int web_request_body_result(const web_request *r, const char **why)
{
    int rc = (r != NULL && r->bp != NULL && r->bp->done) ? r->bp->rc
                                                           : WEB_OK;
    if (why != NULL)
        *why = rc != WEB_OK && r->bp->why[0] != '\0' ? r->bp->why : NULL;
    return rc;
}

int web_request_begin(web_request **out, web_arena *a, char *const *envp,
                      const web_limits *lim)
{
    web_request *r;
    const param *p;
    int rc;
    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    if (a == NULL)
        return WEB_EINVAL;
    r = web_arena_alloc(a, sizeof(*r));
    if (r == NULL)
        return WEB_ETOOBIG;
    memset(r, 0, sizeof(*r));
    r->arena = a;
    r->clen = -1;
    if (lim != NULL)
        r->lim = *lim;
    else
        web_limits_default(&r->lim);
    lim = &r->lim;
    r->bp = web_arena_alloc(a, sizeof(*r->bp));
    if (r->bp == NULL)
        return WEB_ETOOBIG;
    memset(r->bp, 0, sizeof(*r->bp));
    clock_gettime(CLOCK_REALTIME, &r->time);

    rc = copy_params(r, envp, lim);
    if (rc != WEB_OK)
        return rc;

    p = find_param(r, "REQUEST_METHOD");
    if (p == NULL || p->val_len == 0)
        return WEB_EBADREQ;
    r->method = p->val;
    r->mbit = web_method_bit(p->val);

    p = find_param(r, "CONTENT_LENGTH");
    if (p != NULL && p->val_len > 0) {
        r->clen = parse_length(p->val, p->val_len);
        if (r->clen < 0)
            return WEB_EBADREQ;
        if ((uint64_t)r->clen > lim->max_body)
            return WEB_ETOOBIG;
    }
    p = find_param(r, "CONTENT_TYPE");
    if (p != NULL && p->val_len > 0)
        r->ctype = p->val;
    p = find_param(r, "REMOTE_ADDR");
    if (p != NULL && p->val_len > 0)
        r->remote_addr = p->val;

    p = find_param(r, "DOCUMENT_URI");
    if (p != NULL && p->val_len > 0) {
        char *path;
        rc = web_path_normalize(a, p->val, p->val_len, 0, &path, &r->path_len);
        r->path = path;
    } else {
        const param *ru = find_param(r, "REQUEST_URI");
        const char *q;
        size_t plen;
        char *path;
        if (ru == NULL || ru->val_len == 0)
            return WEB_EBADPATH;
        q = memchr(ru->val, '?', ru->val_len);
        plen = q ? (size_t)(q - ru->val) : ru->val_len;
        rc = web_path_normalize(a, ru->val, plen, 1, &path, &r->path_len);
        r->path = path;
    }
    if (rc != WEB_OK)
        return rc;

    p = find_param(r, "QUERY_STRING");
    if (p != NULL) {
        r->query = p->val;
        r->query_len = p->val_len;
    } else {
        const param *ru = find_param(r, "REQUEST_URI");
        const char *q = ru ? memchr(ru->val, '?', ru->val_len) : NULL;
        if (q != NULL) {
            r->query = q + 1;
            r->query_len = ru->val_len - (size_t)(q + 1 - ru->val);
        }
    }
    if (r->query != NULL) {
        rc = web_urlencoded_parse(a, r->query, r->query_len,
                                  lim->max_query_args, &r->args, &r->nargs);
        if (rc != WEB_OK)
            return rc;
    }

    p = find_param(r, "REQUEST_ID");
    if (p != NULL && id_valid(p->val, p->val_len))
        r->id = p->val;
    else if ((rc = make_id(r)) != WEB_OK)
        return rc;
    *out = r;
    return WEB_OK;
}

int web_request_set_body(web_request *r, const void *body, size_t body_len,
                         size_t max_body)
{
    if (r == NULL || r->body_set)
        return WEB_EINVAL;
    r->body_set = 1;
    if (max_body > r->lim.max_body)
        max_body = r->lim.max_body;
    if (body_len > max_body ||
        (r->clen >= 0 && (uint64_t)r->clen > max_body))
        return WEB_ETOOBIG;
    if (r->clen >= 0 && (uint64_t)r->clen != body_len)
        return WEB_EBADREQ;
    if (body != NULL && body_len > 0) {
        char *b = web_arena_alloc_aligned(r->arena, body_len + 1, 1);
        if (b == NULL)
            return WEB_ETOOBIG;
        memcpy(b, body, body_len);
        b[body_len] = '\0';
        r->body = b;
        r->body_len = body_len;
    }
    return WEB_OK;
}

int web_request_init(web_request **out, web_arena *a, char *const *envp,
                     const void *body, size_t body_len, const web_limits *lim)
{
    web_limits defl;
    web_request *r;
    int rc;
    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    if (a == NULL || (body == NULL && body_len > 0))
        return WEB_EINVAL;
    if (lim == NULL) {
        web_limits_default(&defl);
        lim = &defl;
    }
    if (body_len > lim->max_body)
        return WEB_ETOOBIG;
    rc = web_request_begin(&r, a, envp, lim);
    if (rc == WEB_OK)
        rc = web_request_set_body(r, body, body_len, lim->max_body);
    if (rc == WEB_OK)
        rc = web_request_parse_body(r);
    if (rc != WEB_OK)
        return rc;
    *out = r;
    return WEB_OK;
}

/* ---- accessors --------------------------------------------------------- */

web_arena *web_request_arena(const web_request *r)
{
    return r ? r->arena : NULL;
}

const char *web_request_method(const web_request *r)
{
    return r ? r->method : NULL;
}

unsigned web_request_method_bit(const web_request *r)
{
    return r ? r->mbit : 0;
}

static const char *with_len(const char *s, size_t n, size_t *len)
{
    if (len != NULL)
        *len = s ? n : 0;
    return s;
}

const char *web_request_path(const web_request *r, size_t *len)
{
    return r ? with_len(r->path, r->path_len, len) : with_len(NULL, 0, len);
}

const char *web_request_query(const web_request *r, size_t *len)
{
    return r ? with_len(r->query, r->query_len, len) : with_len(NULL, 0, len);
}

const char *web_request_content_type(const web_request *r)
{
    return r ? r->ctype : NULL;
}

int64_t web_request_content_length(const web_request *r)
{
    return r ? r->clen : -1;
}

const void *web_request_body(const web_request *r, size_t *len)
{
    return r ? with_len(r->body, r->body_len, len) : with_len(NULL, 0, len);
}

const char *web_request_remote_addr(const web_request *r)
{
    return r ? r->remote_addr : NULL;
}

const char *web_request_id(const web_request *r)
{
    return r ? r->id : NULL;
}

struct timespec web_request_time(const web_request *r)
{
    struct timespec zero = {0, 0};
    return r ? r->time : zero;
}

void web_request_set_time(web_request *r, struct timespec ts)
{
    if (r != NULL)
        r->time = ts;
}

const char *web_request_param(const web_request *r, const char *name,
                              size_t *len)
{
    const param *p = (r && name) ? find_param(r, name) : NULL;
    return p ? with_len(p->val, p->val_len, len) : with_len(NULL, 0, len);
}

const char *web_request_header(const web_request *r, const char *name,
                               size_t *len)
{
    size_t i, nl;
    if (r == NULL || name == NULL)
        return with_len(NULL, 0, len);
    nl = strlen(name);
    for (i = 0; i < r->nheaders; i++) {
        const param *p = &r->params[r->hdr[i]];
        if (web__header_name_eq(p->name + 5, p->name_len - 5, name, nl))
            return with_len(p->val, p->val_len, len);
    }
    return with_len(NULL, 0, len);
}

size_t web_request_header_count(const web_request *r)
{
    return r ? r->nheaders : 0;
}

int web_request_header_at(const web_request *r, size_t i, const char **name,
                          const char **value, size_t *value_len)
{
    const param *p;
    if (r == NULL || i >= r->nheaders)
        return WEB_EINVAL;
    p = &r->params[r->hdr[i]];
    if (name)
        *name = p->name + 5;
    if (value)
        *value = p->val;
    if (value_len)
        *value_len = p->val_len;
    return WEB_OK;
}

static const web_kv *kv_find(const web_kv *kv, size_t n, const char *key)
{
    size_t i, kl = strlen(key);
    for (i = 0; i < n; i++)
        if (kv[i].key_len == kl && memcmp(kv[i].key, key, kl) == 0)
            return &kv[i];
    return NULL;
}

const char *web_request_arg(const web_request *r, const char *key,
                            size_t *len)
{
    const web_kv *kv = (r && key) ? kv_find(r->args, r->nargs, key) : NULL;
    return kv ? with_len(kv->val, kv->val_len, len) : with_len(NULL, 0, len);
}

size_t web_request_arg_count(const web_request *r)
{
    return r ? r->nargs : 0;
}

const web_kv *web_request_arg_at(const web_request *r, size_t i)
{
    return (r && i < r->nargs) ? &r->args[i] : NULL;
}

size_t web_request_form_count(const web_request *r)
{
    if (r == NULL || web_request_parse_body(r) != WEB_OK)
        return 0;
    return r->bp->nform;
}

const web_kv *web_request_form_at(const web_request *r, size_t i)
{
    if (r == NULL || web_request_parse_body(r) != WEB_OK)
        return NULL;
    return i < r->bp->nform ? &r->bp->form[i] : NULL;
}

/* The member at a dotted path; a literal key with dots wins. */
static json_t *json_path(json_t *root, const char *key)
{
    json_t *v;
    const char *p = key;
    if (!json_is_object(root))
        return NULL;
    v = json_object_get(root, key);
    if (v != NULL || strchr(key, '.') == NULL)
        return v;
    v = root;
    while (*p != '\0') {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (!json_is_object(v))
            return NULL;
        v = json_object_getn(v, p, n);
        if (v == NULL)
            return NULL;
        p += n;
        if (*p == '.')
            p++;
    }
    return v;
}

int web_request_body_field(const web_request *r, const char *key,
                           web_value *out)
{
    json_t *v;
    int rc;
    if (out == NULL)
        return WEB_EINVAL;
    memset(out, 0, sizeof(*out));
    if (r == NULL || key == NULL)
        return WEB_EINVAL;
    rc = web_request_parse_body(r);
    if (rc != WEB_OK)
        return rc;
    if (r->bp->kind == BODY_FORM) {
        const web_kv *kv = kv_find(r->bp->form, r->bp->nform, key);
        if (kv != NULL) {
            out->type = WEB_V_TEXT;
            out->s = kv->val;
            out->len = kv->val_len;
        }
        return WEB_OK;
    }
    if (r->bp->kind != BODY_JSON)
        return WEB_OK;
    v = json_path(r->bp->json, key);
    if (v == NULL)
        return WEB_OK;
    switch (json_typeof(v)) {
    case JSON_STRING:
        out->type = WEB_V_TEXT;
        out->s = json_string_value(v);
        out->len = json_string_length(v);
        break;
    case JSON_INTEGER:
        out->type = WEB_V_INT;
        out->i = (int64_t)json_integer_value(v);
        break;
    case JSON_REAL:
        out->type = WEB_V_REAL;
        out->d = json_real_value(v);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        out->type = WEB_V_BOOL;
        out->i = json_is_true(v);
        break;
    case JSON_NULL:
        out->type = WEB_V_NULL;
        break;
    default: {
        char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        char *copy;
        if (txt == NULL)
            return WEB_ENOMEM;
        copy = web_arena_strdup(r->arena, txt);
        free(txt);
        if (copy == NULL)
            return WEB_ETOOBIG;
        out->type = WEB_V_TEXT;
        out->s = copy;
        out->len = strlen(copy);
        break;
    }
    }
    return WEB_OK;
}
