/*
 * web.h -- waituntil's request side: per-request arena, request copy-out
 * and parsers, router, configuration file.  The FastCGI accept loop and the
 * response writer (lib/web/fcgi*.c, server*.c) build on these pieces; this
 * part never links libfcgi and knows nothing of a particular handler.
 *
 * Conventions (as in lib/qb, after SQLite):
 *   - int status codes: WEB_OK (0) or a named negative WEB_E*;
 *     web_strerror() gives the text, web_http_status() the HTTP answer.
 *   - Opaque handles with paired create/free; every *_free(NULL) is a no-op.
 *   - Everything a request needs lives in its web_arena: strings returned by
 *     the web_request_* accessors stay valid until that arena is reset or
 *     freed, and not one moment longer.  Copy them before handing work to
 *     another thread that may outlive the request.
 *   - Thread-safety: an arena, a request and a match belong to one thread
 *     at a time.  A router and a web_conf are immutable after they are
 *     built, so any number of threads may read them concurrently.
 *   - No global mutable state; nothing to initialise.
 *   - Names: what is API starts with web_ / WEB_ and is marked WEB_API;
 *     lib/web's private functions (web_int.h, web_srv_int.h) start with
 *     web__ and are hidden (-fvisibility=hidden): never exported from
 *     libwaituntil.
 *
 * Why jansson for JSON bodies (and not json-c or cJSON): it is packaged in
 * Debian (libjansson-dev 2.14), it validates UTF-8 strictly and refuses
 * "\u0000" unless asked (so every string is safe for SQLite TEXT), it can
 * refuse duplicate object keys (JSON_REJECT_DUPLICATES), it bounds nesting
 * depth, and it parses from a (pointer, length) buffer without a NUL.
 * cJSON accepts invalid UTF-8 and duplicate keys silently; json-c has no
 * duplicate-key switch and a different ownership style.  We add a lower,
 * configurable depth limit and an element bound in front of it
 * (web_limits.max_json_depth, max_json_elements), counted while jansson
 * reads the body through json_load_callback, so an over-limit body is
 * refused after at most one 1 KiB chunk past the bound: jansson never
 * holds more than max_json_elements values.
 *
 * Link: -ljansson (pkg-config jansson).  No libfcgi here.
 */
#ifndef WAITUNTIL_WEB_H
#define WAITUNTIL_WEB_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#if defined(__GNUC__) && defined(WEB_BUILDING)
#define WEB_API __attribute__((visibility("default")))
#else
#define WEB_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------ */

enum {
    WEB_OK = 0,
    WEB_ENOMEM = -1,      /* malloc failed                          -> 500 */
    WEB_EINVAL = -2,      /* bad argument from the caller (a bug)   -> 500 */
    WEB_ETOOBIG = -3,     /* body or arena bound exceeded           -> 413 */
    WEB_ETOOMANY = -4,    /* too many params / headers / args       -> 431 */
    WEB_EHEADER = -5,     /* one param / header too large           -> 431 */
    WEB_EBADREQ = -6,     /* missing method, bad Content-Length...  -> 400 */
    WEB_EBADPATH = -7,    /* bad escape, %00, '..' above root...    -> 400 */
    WEB_EBADQUERY = -8,   /* bad escape / %00 / invalid UTF-8 in
                             query string or form body              -> 400 */
    WEB_EBADJSON = -9,    /* malformed JSON body, or past its depth
                             or element bound                       -> 400 */
    WEB_EUTF8 = -10,      /* a value is not valid UTF-8             -> 400 */
    WEB_ENOTFOUND = -11,  /* no route for the path                  -> 404 */
    WEB_EMETHOD = -12,    /* path known, method not allowed         -> 405 */
    WEB_ECONF = -13,      /* configuration error (see errbuf)             */
    WEB_EIO = -14,        /* could not read a file (see errbuf)           */
    WEB_EFULL = -15,      /* a fixed table is full (routes, captures)     */
    WEB_EREQUIRED = -16   /* a route's "require" value is missing   -> 400 */
};

/* Static English text for a status code; never NULL.  Thread-safe. */
WEB_API const char *web_strerror(int rc);

/* The HTTP status a server should answer for rc (200 for WEB_OK, the
 * numbers in the table above, 500 for anything unknown).  Thread-safe. */
WEB_API int web_http_status(int rc);

/* ==== 1. per-request arena =============================================== */

/*
 * A chunked bump allocator in the manner of h2o's h2o_mem_pool_t.  Memory
 * comes from chunks of chunk_size bytes; a request larger than a quarter of
 * a chunk gets a chunk of its own.  The sum of all chunk sizes never exceeds
 * max_total: past that, allocation returns NULL and the arena stays usable.
 * web_arena_reset() runs the dispose callbacks (newest first), frees every
 * chunk but the first and rewinds it, so a request thread reuses the same
 * first chunk for every request without calling malloc.
 */
typedef struct web_arena web_arena;

#define WEB_ARENA_DEFAULT_CHUNK 8192u

/* Create an arena.  chunk_size 0 means WEB_ARENA_DEFAULT_CHUNK; max_total 0
 * means "no bound" (SIZE_MAX).  The first chunk is allocated here.  Returns
 * NULL on ENOMEM or if chunk_size > max_total. */
WEB_API web_arena *web_arena_create(size_t chunk_size, size_t max_total);

/* Run dispose callbacks, free everything.  NULL is a no-op. */
WEB_API void web_arena_free(web_arena *a);

/* Run dispose callbacks and forget every allocation; keeps the first
 * chunk.  NULL is a no-op. */
WEB_API void web_arena_reset(web_arena *a);

/* n bytes aligned for any object (alignof(max_align_t)).  NULL when the
 * bound is reached or malloc fails.  n == 0 returns a valid unique-enough
 * pointer that must not be dereferenced. */
WEB_API void *web_arena_alloc(web_arena *a, size_t n);

/* n bytes aligned to align (a power of two, at most 4096); NULL on a bad
 * align, the bound or ENOMEM. */
WEB_API void *web_arena_alloc_aligned(web_arena *a, size_t n, size_t align);

/* Copy n bytes of s and add a NUL.  s may contain NULs (copied as is).
 * NULL on bound/ENOMEM. */
WEB_API char *web_arena_strndup(web_arena *a, const char *s, size_t n);
WEB_API char *web_arena_strdup(web_arena *a, const char *s);

/* Register fn(arg) to run at the next reset/free (newest first).  Used to
 * tie foreign objects (a jansson tree) to the request's lifetime.  Returns
 * WEB_ETOOBIG/WEB_ENOMEM if the record cannot be allocated; fn is then NOT
 * called, the caller still owns arg. */
WEB_API int web_arena_on_reset(web_arena *a, void (*fn)(void *), void *arg);

/* Bytes handed out since the last reset, and bytes held in chunks. */
WEB_API size_t web_arena_used(const web_arena *a);
WEB_API size_t web_arena_reserved(const web_arena *a);

/* ==== methods ============================================================ */

enum {
    WEB_M_GET = 1u << 0,
    WEB_M_HEAD = 1u << 1,
    WEB_M_POST = 1u << 2,
    WEB_M_PUT = 1u << 3,
    WEB_M_DELETE = 1u << 4,
    WEB_M_PATCH = 1u << 5,
    WEB_M_OPTIONS = 1u << 6,
    WEB_M_OTHER = 1u << 7,  /* any other token (PROPFIND...): only "any" */
    WEB_M_ANY = 0xffu
};

/* Bit for a method (case-sensitive, as HTTP methods are); WEB_M_OTHER for
 * any other non-empty string (only "any" routes admit it); 0 for
 * NULL/empty. */
WEB_API unsigned web_method_bit(const char *method);

/* Write "GET, HEAD, POST" for a bit set into buf (NUL-terminated, truncated
 * to buflen).  GET implies HEAD.  Returns the length it needed. */
WEB_API size_t web_methods_format(unsigned bits, char *buf, size_t buflen);

/* The name of one method bit ("GET" for WEB_M_GET ... "OPTIONS"); NULL
 * for 0, WEB_M_OTHER or several bits.  Static strings. */
WEB_API const char *web_method_name(unsigned bit);

/* ==== 2. request copy-out and parsers ==================================== */

typedef struct web_limits {
    size_t max_params;      /* FastCGI params (envp entries), default 1000 */
    size_t max_param_len;   /* bytes of one "NAME=value", default 65536    */
    size_t max_query_args;  /* query args, and form fields, default 1000   */
    size_t max_body;        /* body bytes, default 1 MiB                   */
    size_t max_json_depth;  /* nesting of a JSON body, default 32          */
    size_t max_json_elements; /* array elements plus object members in
                               a JSON body, all levels, default 10000     */
} web_limits;

/* Fill *lim with the defaults above. */
WEB_API void web_limits_default(web_limits *lim);

/* 1 if the Content-Type value ct names the media type type
 * ("application/json"): compared case-insensitively, blanks around it
 * and parameters after ';' ignored.  0 for NULL.  Thread-safe. */
WEB_API int web_media_type_is(const char *ct, const char *type);

/* A typed value: a query/form/JSON field or an evaluated conf source. */
typedef enum web_vtype {
    WEB_V_ABSENT = 0, /* not there (no such field / header / arg)     */
    WEB_V_NULL,       /* JSON null                                    */
    WEB_V_TEXT,       /* s, len: valid UTF-8, no NUL inside           */
    WEB_V_INT,        /* i                                            */
    WEB_V_REAL,       /* d                                            */
    WEB_V_BOOL,       /* i is 0 or 1                                  */
    WEB_V_RAW         /* s, len: trusted SQL text from the conf file  */
} web_vtype;

typedef struct web_value {
    web_vtype type;
    const char *s;   /* TEXT, RAW: NUL-terminated as well */
    size_t len;
    int64_t i;
    double d;
} web_value;

/* One key/value pair from a query string or form body (decoded). */
typedef struct web_kv {
    const char *key;
    size_t key_len;
    const char *val;
    size_t val_len;
    int has_eq;      /* 0 for "flag" (no '='): val is "" */
} web_kv;

/*
 * Parse an application/x-www-form-urlencoded string (a query string or a
 * form body) into an array of web_kv in the arena, in input order.  '&'
 * separates pairs (empty pairs are skipped), '+' is a space, %XX is a byte.
 * Keys may be empty ("=v").  Every key and value must decode to valid UTF-8
 * without NUL: otherwise the whole input is refused (WEB_EBADQUERY), since
 * these values are bound as SQLite TEXT.  More than max_args pairs ->
 * WEB_ETOOMANY.  Bound/ENOMEM -> WEB_ETOOBIG/WEB_ENOMEM.  On error *out is
 * NULL and *count 0.
 */
WEB_API int web_urlencoded_parse(web_arena *a, const char *s, size_t n,
                                 size_t max_args, web_kv **out,
                                 size_t *count);

/*
 * Percent-decode and normalise a URL path into the arena: %XX decoded
 * (%00, bad or truncated escapes and control bytes refused), then runs of
 * '/' merged and "." / ".." segments resolved; ".." above the root, a path
 * not starting with '/', or invalid UTF-8 -> WEB_EBADPATH.  decode 0 skips
 * the %XX step (for nginx's already-decoded DOCUMENT_URI).  A trailing
 * '/' is kept.
 */
WEB_API int web_path_normalize(web_arena *a, const char *s, size_t n,
                               int decode, char **out, size_t *out_len);

/* 1 if s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)
 * without NUL bytes, else 0. */
WEB_API int web_utf8_valid(const char *s, size_t n);

typedef struct web_request web_request;

/*
 * Copy a request out of a FastCGI-style environment into arena a: envp is a
 * NULL-terminated array of "NAME=value" strings (FCGX_Request.envp), body
 * the bytes the caller read from the request stream.  After this returns,
 * nothing points into envp or body, so the caller may FCGX_Finish_r.
 *
 *   method  REQUEST_METHOD (required, else WEB_EBADREQ).
 *   path    DOCUMENT_URI if present (nginx's $uri: already decoded, so it
 *           is only normalised), else the path part of REQUEST_URI,
 *           percent-decoded and normalised (web_path_normalize).
 *   query   QUERY_STRING, else the part of REQUEST_URI after '?'; parsed
 *           into args (web_urlencoded_parse, limits.max_query_args).
 *   headers HTTP_* params; looked up case-insensitively with '-' == '_'.
 *   body    Content-Length (CONTENT_LENGTH) must be digits, <= max_body
 *           and equal body_len when present; a body over max_body ->
 *           WEB_ETOOBIG.  A form body (application/x-www-form-urlencoded)
 *           is parsed like a query; a JSON body (application/json) is
 *           parsed with jansson (duplicate keys, depth > max_json_depth
 *           and more than max_json_elements elements refused) ->
 *           WEB_EBADJSON.  Other types are kept as bytes.
 *   id      REQUEST_ID (nginx $request_id) if it is 1..64 bytes of
 *           [A-Za-z0-9._-]; else 32 random hex digits are generated.
 *   time    arrival time, CLOCK_REALTIME, taken here.
 * Duplicate params: the first one wins, as with FCGX_GetParam.  Params
 * without '=' are ignored.  Limits: more than max_params entries ->
 * WEB_ETOOMANY; one entry longer than max_param_len -> WEB_EHEADER.
 *
 * This is web_request_begin + web_request_set_body + web_request_parse_body
 * in one call: the body is parsed here, at once.  A server should use the
 * three steps instead, so that only a route that reads body fields pays
 * for parsing (see below).
 *
 * lim may be NULL (defaults).  On success *out lives in the arena; on error
 * *out is NULL and whatever was allocated is left in the arena (reset it).
 */
WEB_API int web_request_init(web_request **out, web_arena *a,
                             char *const *envp, const void *body,
                             size_t body_len, const web_limits *lim);

/*
 * The same request in steps, for a server that routes before it reads
 * the body (DESIGN: a body is parsed only when something reads a field):
 *
 * web_request_begin copies everything but the body, as web_request_init
 * does (method, path, query and its args, headers, id, time; the same
 * errors), and checks CONTENT_LENGTH's syntax and that it is at most
 * lim->max_body (WEB_ETOOBIG).  lim is copied (NULL: defaults); its JSON
 * and form bounds apply to the later parse.
 *
 * web_request_set_body attaches the body once the caller has read it:
 * body_len must be <= max_body (the route's bound, at most the one given
 * to begin; else WEB_ETOOBIG, as is a CONTENT_LENGTH over it) and equal
 * CONTENT_LENGTH when that was given (else WEB_EBADREQ).  The bytes are
 * copied into the arena; nothing is parsed.  body NULL with body_len > 0
 * means the caller read the body and dropped it (a route that never reads
 * it): the length is checked, no byte is kept, and the request behaves as
 * one without a body.  A second call -> WEB_EINVAL.
 *
 * web_request_parse_body parses the body (form or JSON, as
 * web_request_init describes) the first time it is called and returns the
 * same result on every later call without parsing again.  The body
 * accessors below (web_request_body_field, web_request_form_*) call it
 * themselves, so a handler that reads a field gets the same lazy, bounded
 * parse.  Errors: WEB_EBADJSON (malformed, too deep, too many elements),
 * WEB_EBADQUERY (bad form body), WEB_ETOOMANY (more form fields than
 * max_query_args), WEB_ETOOBIG/WEB_ENOMEM.  The request is logically
 * const: the parse result is cached in it, so, as for every accessor, one
 * thread at a time.
 */
WEB_API int web_request_begin(web_request **out, web_arena *a,
                              char *const *envp, const web_limits *lim);
WEB_API int web_request_set_body(web_request *r, const void *body,
                                 size_t body_len, size_t max_body);
WEB_API int web_request_parse_body(const web_request *r);

/* How many times a body parser (form or JSON) ran on r: 0 until a body
 * field is first read (or web_request_parse_body is called) on a form or
 * JSON body, then 1 for good.  For tests and counters; never parses. */
WEB_API unsigned web_request_body_parses(const web_request *r);

/* The result of the body parse if it ran and failed: its error code, and
 * in *why (if not NULL) a short English reason for the client ("JSON body
 * nested deeper than 32 levels", "invalid JSON body: duplicate object key
 * at line 1, column 12"); the reason never quotes the body.  WEB_OK (and
 * *why NULL) when the parse succeeded or has not run.  Never parses. */
WEB_API int web_request_body_result(const web_request *r, const char **why);

/* Accessors.  Strings are NUL-terminated arena copies; *len (if not NULL)
 * gets their length.  "Absent" is NULL (len 0).  Not thread-safe against a
 * concurrent reset of the arena, obviously. */
WEB_API web_arena *web_request_arena(const web_request *r);
WEB_API const char *web_request_method(const web_request *r);
WEB_API unsigned web_request_method_bit(const web_request *r);
WEB_API const char *web_request_path(const web_request *r, size_t *len);
WEB_API const char *web_request_query(const web_request *r, size_t *len);
WEB_API const char *web_request_content_type(const web_request *r);
/* -1 when CONTENT_LENGTH was absent. */
WEB_API int64_t web_request_content_length(const web_request *r);
WEB_API const void *web_request_body(const web_request *r, size_t *len);
WEB_API const char *web_request_remote_addr(const web_request *r);
WEB_API const char *web_request_id(const web_request *r);
WEB_API struct timespec web_request_time(const web_request *r);
/* Override the arrival time (tests, replay). */
WEB_API void web_request_set_time(web_request *r, struct timespec ts);

/* Any FastCGI param by exact name ("SERVER_PROTOCOL"). */
WEB_API const char *web_request_param(const web_request *r, const char *name,
                                      size_t *len);
/* A header by name: "X-User-ID", "x-user-id" and "x_user_id" are equal. */
WEB_API const char *web_request_header(const web_request *r, const char *name,
                                       size_t *len);
WEB_API size_t web_request_header_count(const web_request *r);
/* i-th header: *name is the part after HTTP_ ("X_USER_ID").  Returns
 * WEB_EINVAL when i is out of range. */
WEB_API int web_request_header_at(const web_request *r, size_t i,
                                  const char **name, const char **value,
                                  size_t *value_len);

/* Query args: first value for a key (NULL if absent); all pairs in order. */
WEB_API const char *web_request_arg(const web_request *r, const char *key,
                                    size_t *len);
WEB_API size_t web_request_arg_count(const web_request *r);
WEB_API const web_kv *web_request_arg_at(const web_request *r, size_t i);

/* Form fields (application/x-www-form-urlencoded bodies): same rules.
 * The first call parses the body (web_request_parse_body); when that
 * fails the count is 0. */
WEB_API size_t web_request_form_count(const web_request *r);
WEB_API const web_kv *web_request_form_at(const web_request *r, size_t i);

/*
 * A body field: for a form body the first value of key (WEB_V_TEXT); for a
 * JSON body whose top level is an object, the member at key, where "a.b"
 * descends into objects (a literal key containing '.' is tried first).
 * Strings -> TEXT, integers -> INT, reals -> REAL, true/false -> BOOL,
 * null -> NULL, objects/arrays -> TEXT holding compact JSON.  Anything
 * else (no such key, no body, other content type) -> ABSENT.  The first
 * call parses the body (web_request_parse_body) and returns its error if
 * it fails (WEB_EBADJSON...: the request is bad, answer 400).  Returns
 * WEB_OK, or WEB_ENOMEM/WEB_ETOOBIG when compact JSON cannot be stored.
 */
WEB_API int web_request_body_field(const web_request *r, const char *key,
                                   web_value *out);

/* ISO-8601 UTC with milliseconds, as JavaScript's toISOString():
 * "2026-11-28T01:02:03.456Z" (24 bytes + NUL).  buf must hold 25 bytes.
 * Returns WEB_EINVAL for years outside 0..9999. */
WEB_API int web_time_iso(const struct timespec *ts, char buf[25]);

/* ==== 3. router ========================================================== */

// Patterns (segments separated by '/'; written with line comments because
// the prefix form contains a slash-star):
//   /hello            exact
//   /users/:id        named segment: binds "id" to one non-empty segment
//   /log/*            prefix: matches /log/ and /log/anything/deeper but
//                     NOT /log (declare /log as well if you want it); the
//                     rest after "/log/" is the match's tail
//   /users/:id/*      both
// Precedence, whatever the declaration order: exact > named > prefix; among
// named routes more literal segments win; among prefix routes the longer
// prefix wins; ties go to the route declared first.  Only routes whose
// method set admits the request's method compete; if the path matches some
// route but none admits the method -> WEB_EMETHOD with the union of their
// methods in match->allow.  A route that admits GET also admits HEAD.
// Bounds: WEB_MAX_SEGMENTS segments per pattern, WEB_MAX_CAPTURES named
// segments, WEB_MAX_ROUTES routes.
#define WEB_MAX_SEGMENTS 32
#define WEB_MAX_CAPTURES 8
#define WEB_MAX_ROUTES 1024

typedef struct web_router web_router;

typedef struct web_capture {
    const char *name;   /* points into the router's pattern copy */
    size_t name_len;
    const char *value;  /* points into the path given to match */
    size_t value_len;
} web_capture;

typedef struct web_match {
    void *data;           /* what was given to web_router_add */
    size_t route;         /* index of the route, in declaration order */
    const char *pattern;  /* the route's pattern */
    size_t ncaptures;
    web_capture captures[WEB_MAX_CAPTURES];
    const char *tail;     /* prefix routes: the rest of the path, else NULL */
    size_t tail_len;
    unsigned allow;       /* WEB_EMETHOD: allowed methods (GET adds HEAD) */
    char allow_str[80];   /* ... formatted: "GET, HEAD, POST" */
} web_match;

/* Check a pattern; on error writes why into err (if errlen > 0) and returns
 * WEB_EINVAL. */
WEB_API int web_pattern_check(const char *pattern, char *err, size_t errlen);

/* Create/free.  NULL on ENOMEM. */
WEB_API web_router *web_router_create(void);
WEB_API void web_router_free(web_router *r);

/* Add a route; the pattern is copied, data is borrowed (never freed).
 * methods is a WEB_M_* set (0 is refused).  WEB_EINVAL on a bad pattern,
 * WEB_EFULL past WEB_MAX_ROUTES, WEB_ENOMEM.  Not thread-safe: build the
 * router before sharing it. */
WEB_API int web_router_add(web_router *r, unsigned methods,
                           const char *pattern, void *data);

/* Match method + path (path_len bytes, need not be NUL-terminated).
 * WEB_OK fills *m; WEB_ENOTFOUND; WEB_EMETHOD fills m->allow/allow_str.
 * Captures point into path and into the router.  Thread-safe. */
WEB_API int web_router_match(const web_router *r, const char *method,
                             const char *path, size_t path_len, web_match *m);

/* Value of a named capture, or NULL. */
WEB_API const char *web_match_param(const web_match *m, const char *name,
                                    size_t *len);

/* ==== 4. configuration =================================================== */

typedef enum web_source_kind {
    WEB_SRC_LITERAL = 0,  /* "quoted string": text = the string           */
    WEB_SRC_RAW,          /* raw:SQL: text = the SQL (trusted conf text)    */
    WEB_SRC_METHOD,       /* $request_method                               */
    WEB_SRC_PATH,         /* $uri, $path (normalised, decoded)             */
    WEB_SRC_QUERY,        /* $query_string, $args (raw)                    */
    WEB_SRC_SEG,          /* $seg_NAME: named path segment NAME            */
    WEB_SRC_ARG,          /* $arg_NAME: query arg NAME                     */
    WEB_SRC_HTTP,         /* $http_NAME: header (x_user_id = X-User-ID)    */
    WEB_SRC_BODY,         /* $body_NAME: form or JSON field (a.b allowed)  */
    WEB_SRC_REMOTE_ADDR,  /* $remote_addr                                  */
    WEB_SRC_REQUEST_ID,   /* $request_id                                   */
    WEB_SRC_TIME_ISO,     /* $time_iso: 2026-11-28T01:02:03.456Z           */
    WEB_SRC_TIME_UNIX,    /* $time_unix: integer seconds                   */
    WEB_SRC_CONTENT_TYPE  /* $content_type                                 */
} web_source_kind;

typedef struct web_source {
    web_source_kind kind;
    const char *text;  /* LITERAL/RAW text, or the NAME of SEG/ARG/HTTP/BODY */
    size_t len;
} web_source;

typedef struct web_column {
    const char *column;   /* validated identifier */
    web_source src;
    int line;
} web_column;

typedef enum web_defer_kind {
    WEB_DEFER_INSERT = 0, /* INSERT INTO t (cols) VALUES (...)          */
    WEB_DEFER_UPDATE,     /* UPDATE t SET sets WHERE wheres (AND)       */
    WEB_DEFER_DELETE,     /* DELETE FROM t WHERE wheres (AND)           */
    WEB_DEFER_UPSERT      /* INSERT ... ON CONFLICT (conflict) DO UPDATE
                             SET sets  (or DO NOTHING when nsets == 0) */
} web_defer_kind;

typedef struct web_defer {
    web_defer_kind kind;
    const char *table;      /* validated identifier */
    int line;
    const char *file;       /* the conf file the block is in (include) */
    const web_source *conds;   /* "if": run only when all are present */
    size_t nconds;
    const web_column *cols;    /* INSERT/UPSERT column values */
    size_t ncols;
    const web_column *sets;    /* UPDATE SET / UPSERT DO UPDATE SET */
    size_t nsets;
    const web_column *wheres;  /* UPDATE/DELETE: column = value, ANDed */
    size_t nwheres;
    const char *const *conflict; /* UPSERT conflict target columns */
    size_t nconflict;
} web_defer;

typedef struct web_route_conf {
    int line;
    const char *file;          /* the conf file the route is in: the main
                                  file's name or an included file's path */
    unsigned methods;          /* WEB_M_* */
    const char *const *paths;  /* validated patterns */
    size_t npaths;
    const char *handler;       /* "handler NAME;" or NULL */
    int status;                /* "respond": 100..599, 0 with a handler */
    const char *content_type;  /* respond: default "text/plain" */
    const char *body;          /* respond: may be "" */
    size_t body_len;
    const web_defer *defers;   /* run after the response, in order */
    size_t ndefers;
    const web_source *requires; /* "require $VAR ...;": every one must be
                                  present (web_value_present), else 400
                                  before the handler or any defer runs */
    size_t nrequires;
    size_t max_body;           /* "max_body SIZE;": body bound of this
                                  route, at most the server's; 0 = the
                                  server's */
    int reads_body;            /* a value of this route (a require, an if,
                                  a column) is a $body_ field:
                                  its body is kept and parsed (lazily).  A
                                  handler route keeps its body too; any
                                  other route's body is read and dropped */
} web_route_conf;

typedef enum web_admission {
    WEB_ADMIT_WAIT = 0,  /* wait up to admission_wait_ms, then 503 */
    WEB_ADMIT_REJECT,    /* 503 at once */
    WEB_ADMIT_INLINE     /* run the work in the request thread */
} web_admission;

typedef enum web_log_level {
    WEB_LOG_DEBUG = 0, WEB_LOG_INFO, WEB_LOG_NOTICE, WEB_LOG_WARN,
    WEB_LOG_ERROR
} web_log_level;

/* server.log_values: what a failed or left write's log line shows of
 * the values bound to its statement (defer.h, LOG LINES). */
typedef enum web_log_values {
    WEB_LOG_VALUES_ON = 0,  /* the values, bounded and escaped */
    WEB_LOG_VALUES_REDACT,  /* types and lengths only; the access log's
                               query string is redacted too */
    WEB_LOG_VALUES_OFF      /* nothing of them */
} web_log_values;

/* ---- the database a conf names -------------------------------------------
 * database.path is either a SQLite file (relative paths are resolved
 * against the program's -p prefix) or a libpq URI, which selects
 * PostgreSQL and is passed to libpq as it is (never resolved). */
typedef enum web_db_engine {
    WEB_DB_SQLITE = 0,   /* a file path, or ":memory:" */
    WEB_DB_POSTGRESQL    /* "postgresql://..." or "postgres://..." */
} web_db_engine;

/* The engine a database path names: WEB_DB_POSTGRESQL when path starts
 * with "postgresql://" or "postgres://" (libpq's URI schemes, lower case
 * as libpq requires), else WEB_DB_SQLITE (also for NULL).  Thread-safe. */
WEB_API web_db_engine web_db_engine_of(const char *path);

/* "sqlite" or "postgresql" (static; "?" for an unknown value). */
WEB_API const char *web_db_engine_name(web_db_engine e);

/* Check a database path as the conf parser does: WEB_OK, or WEB_EINVAL
 * with the reason in err (if errlen > 0) for NULL or "", or a
 * PostgreSQL URI holding whitespace or control bytes.  The reason never
 * quotes the URI (it may hold a password). */
WEB_API int web_db_path_check(const char *path, char *err, size_t errlen);

/* The path to open: a PostgreSQL URI, an absolute path and ":memory:"
 * unchanged, any other path as PREFIX/path when prefix is non-NULL.
 * *out is malloc'd (free it).  WEB_OK, WEB_EINVAL (NULL path or out),
 * WEB_ENOMEM (*out NULL). */
WEB_API int web_db_path_resolve(const char *prefix, const char *path,
                                char **out);

/* The path fit for logs: a PostgreSQL URI with its password replaced by
 * "***" (the one in user:password@ and any password= parameter); other
 * paths unchanged.  Written into buf (NUL-terminated, cut short to
 * fit buflen: a cut never uncovers a password); returns buf.  NULL path gives "-". */
WEB_API const char *web_db_path_redact(const char *path, char *buf,
                                       size_t buflen);

/* ---- the folder of a SQLite database -------------------------------------
 * sqlite3_open creates a database file, never its folder.  The server
 * creates a missing folder at start when the folder above it is an
 * existing, writable directory: one level only (nginx does the same for
 * its temp paths), so a mistyped -p prefix fails with the path it names
 * instead of growing a tree and an empty database there.  The mode is
 * WEB_DB_DIR_MODE less the umask: group r-x lets nginx's group reach a
 * socket kept in the same folder (the shipped var/).
 * `waituntil -t` asks the same question without creating anything, so
 * both give the same verdict with the same message. */
#define WEB_DB_DIR_MODE 0750

typedef enum web_db_dir_op {
    WEB_DB_DIR_CHECK = 0,  /* say what the start would do; create nothing */
    WEB_DB_DIR_CREATE      /* create the folder if it is missing */
} web_db_dir_op;

typedef enum web_db_dir_state {
    WEB_DB_DIR_READY = 0,  /* nothing to do: the folder exists, or the
                              path is a PostgreSQL URI, ":memory:", a
                              "file:" URI or has no folder part */
    WEB_DB_DIR_MISSING,    /* CHECK: missing; CREATE would make it */
    WEB_DB_DIR_MADE        /* CREATE: made it (mode WEB_DB_DIR_MODE) */
} web_db_dir_state;

/*
 * Make the folder of the SQLite database db_path ready (op CREATE) or say
 * whether the start could (op CHECK), as the calling process (effective
 * ids: root passes every mode bit).  The folder is what precedes the last
 * '/' of db_path.  When the database file does not exist yet, its folder
 * must also be writable (sqlite3 creates the file there).
 * Returns WEB_OK with *state set (and the folder's path in dir, if
 * dirlen > 0, cut to fit), or WEB_EIO with one line in err, the same for
 * both ops:
 *   database folder DIR: Not a directory          (exists, not a folder)
 *   database folder DIR: <strerror>               (cannot be looked up)
 *   cannot create database folder DIR: <strerror> (parent missing,
 *       not a folder, not writable, or mkdir failed; a missing parent
 *       adds "(PARENT is missing too; only the last level is created)")
 *   cannot create database DB in its folder: <strerror>
 * WEB_EINVAL for a NULL db_path or state, WEB_ENOMEM.  Thread-safe (no
 * shared state; CREATE changes the file system, of course).
 */
WEB_API int web_db_dir_prepare(const char *db_path, web_db_dir_op op,
                               web_db_dir_state *state, char *dir,
                               size_t dirlen, char *err, size_t errlen);

typedef struct web_conf {
    const char *file;            /* name used in messages */
    struct {
        const char *listen;      /* "unix:PATH", "HOST:PORT" or "stdin" */
        unsigned socket_mode;    /* default 0660 */
        unsigned threads;        /* default 4 */
        size_t max_body;         /* default 1 MiB */
        size_t max_params;       /* default 1000 */
        size_t max_query_args;   /* default 1000 */
        size_t max_json_depth;   /* default 32 */
        size_t max_json_elements; /* default 10000 */
        const char *log;         /* "stderr" or a file path */
        const char *pid;         /* pid file; NULL: the program's default
                                    (waituntil: waituntil.pid next to a
                                    unix socket, else var/waituntil.pid) */
        web_log_level log_level; /* default info */
        web_log_values log_values; /* default on */
        const char *access_log;  /* "stderr" or a file path; NULL: off
                                    (the default) */
    } server;
    struct {
        const char *path;          /* default "var/waituntil.db"; a
                                      postgresql:// or postgres:// URI
                                      selects PostgreSQL */
        web_db_engine engine;      /* web_db_engine_of(path) */
        const char *journal_mode;  /* SQLite only; default "wal" */
        const char *synchronous;   /* SQLite only; default "normal" */
        int64_t busy_timeout_ms;   /* one lock wait (SQLite busy wait,
                                      PostgreSQL lock_timeout); 5000 */
        int64_t reconnect_ms;      /* PostgreSQL only: how long a batch
                                      whose connection was lost keeps
                                      reconnecting; default 10000 */
        unsigned statement_cache;  /* PostgreSQL only: prepared
                                      statements kept per connection,
                                      0..4096; default 64 */
        const char *migrations;    /* default "conf/migrations": the
                                      .sql files of that folder (SQLite)
                                      or of its postgresql subfolder */
    } database;
    struct {
        unsigned workers;          /* default 2 */
        size_t queue;              /* default 65536 */
        size_t tasks_per_request;  /* default 16 */
        size_t batch;              /* default 256 */
        int64_t task_timeout_ms;   /* default 5000 */
        web_admission admission;   /* default wait */
        int64_t admission_wait_ms; /* default 100 */
        int64_t drain_timeout_ms;  /* default 30000 */
        unsigned busy_retries;     /* default 5 */
        int64_t batch_delay_ms;    /* group-commit window, default 2 */
        int64_t batch_delay_max_ms; /* the most it grows to when commits
                                      are slow (defer_config's
                                      batch_delay_max_us), default 20 */
        unsigned journal;          /* 0 off, 1 write (default), 2 fsync,
                                      3 fsync-interval: defer_journal_level */
        int64_t journal_sync_ms;   /* fsync-interval's TIME; default 100 */
        const char *journal_path;  /* NULL: the program's default
                                      (waituntil: DB.journal for SQLite,
                                      var/waituntil.journal else) */
    } pool;
    const web_route_conf *routes;
    size_t nroutes;
    const char *const *files;  /* every file read, in reading order:
                                  [0] is file, then each included one
                                  (as named in messages) */
    size_t nfiles;
    web_arena *mem_;  /* private: owns every byte of the tree */
} web_conf;

/*
 * Parse configuration text (n bytes; need not be NUL-terminated; at most
 * 1 MiB).  name is used in messages ("conf/waituntil.conf").  An
 * "include FILE;" or "include PATTERN;" (a glob in the file name, as
 * conf.d/[*].conf without the brackets) reads files from the file system,
 * relative to the folder of the including file (of name for the
 * text itself): each file's statements take the include's place.  A
 * pattern matching nothing includes nothing; a named FILE must exist.
 * At most 8 nested, 64 files and 4 MiB in all; a cycle is an error;
 * messages name the included file and its line.  On success
 * *out is a tree owned by the caller (web_conf_free).  On failure *out is
 * NULL, the return is WEB_ECONF (or WEB_ENOMEM), and errbuf receives one
 * line "NAME:LINE: what was expected", e.g.
 *   conf/waituntil.conf:12: expected ';' after "threads 4"
 * Thread-safe (no shared state).
 */
WEB_API int web_conf_parse(const char *text, size_t n, const char *name,
                           web_conf **out, char *errbuf, size_t errlen);

/* Read and parse a file.  WEB_EIO if it cannot be read (errbuf says why). */
WEB_API int web_conf_load(const char *path, web_conf **out, char *errbuf,
                          size_t errlen);

/* A tree with every default and no routes.  NULL on ENOMEM. */
WEB_API web_conf *web_conf_default(void);

WEB_API void web_conf_free(web_conf *c);

/* Build a router with every path of every route; match->data is the
 * const web_route_conf *.  The router borrows nothing from c. */
WEB_API int web_conf_router(const web_conf *c, web_router **out);

/* Name of a source for messages ("$http_x_user_id", "raw:...", ...):
 * writes into buf, returns buf. */
WEB_API const char *web_source_name(const web_source *s, char *buf,
                                    size_t buflen);

/*
 * Evaluate a source against a request (and its route match, for $seg_;
 * m may be NULL).  *out is ABSENT when the value is missing (no header,
 * no arg...), TEXT (valid UTF-8, in the request's arena or in the conf),
 * INT ($time_unix, JSON integers), REAL, BOOL, NULL (JSON null), or RAW
 * (trusted SQL text from the conf; never a request byte).  Errors:
 * WEB_EUTF8 when a header value is not valid UTF-8 (answer 400),
 * WEB_ENOMEM/WEB_ETOOBIG when the arena is full, WEB_EINVAL for NULL args.
 */
WEB_API int web_source_eval(const web_source *src, const web_request *r,
                            const web_match *m, web_value *out);

/* "Present" in the sense of a conf "if": not ABSENT, not JSON null, and
 * not empty text (an empty X-User-ID header counts as missing, as an empty
 * string is falsy in the JavaScript original). */
WEB_API int web_value_present(const web_value *v);

/*
 * Check a route's "require" list against a request (m: its match, for
 * $seg_): every source must evaluate to a present value.  WEB_OK;
 * WEB_EREQUIRED with *missing (if not NULL) the first source that is
 * absent, JSON null or empty; or the error of evaluating one (WEB_EUTF8,
 * or the body's parse error such as WEB_EBADJSON: reading a $body_ value
 * parses the body).  *missing is NULL unless WEB_EREQUIRED.  A route
 * without "require" is WEB_OK at once and reads nothing.
 */
WEB_API int web_route_check_required(const web_route_conf *route,
                                     const web_request *r, const web_match *m,
                                     const web_source **missing);

/*
 * How a client would name a source, for an answer that says what is
 * missing: *what (if not NULL) gets "body field", "header", "query
 * argument", "path segment" or "value"; buf gets the name: the field
 * ("user.email"), the header in lower case with '-' ("x-user-id"), the
 * argument or segment name, or the conf variable ("$content_type") for
 * the others.  Returns buf (NUL-terminated, cut to buflen).  Thread-safe.
 */
WEB_API const char *web_source_client_name(const web_source *s,
                                           const char **what, char *buf,
                                           size_t buflen);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_WEB_H */
