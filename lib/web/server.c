/*
 * server.c -- the FastCGI accept loop, request threads and response writer.
 *
 * DESIGN
 * N request threads each run FCGX_Accept_r on the shared listening socket
 * without a mutex (libfcgi compiles its accept lock only on IRIX/SunOS/
 * SVR4; on Linux the kernel serialises accept(), and a mutex would make a
 * thread blocked on a kept connection stall the others).  Each thread owns
 * one FCGX_Request, one arena, one body buffer and one defer_ctx, reused
 * for every request it serves: nothing is shared between request threads
 * but the conf generations (immutable, refcounted: below), the pool
 * (thread-safe) and the atomic counters.
 *
 * Per request:
 *   1. copy the params into the arena (web_request_begin) and route;
 *   2. read the body to its end (not trusting CONTENT_LENGTH) up to the
 *      route's max_body (the server's for a 404/405); past it the answer
 *      is 413.  Only a route that can read body fields (a $body_ value,
 *      or a C handler) keeps it (web_request_set_body copies it into the
 *      arena); any other body is read into a scratch buffer and dropped,
 *      never parsed: a 1 MB JSON body posted to a 404 costs a read, not a
 *      jansson tree.  The body is always read to its end, so nginx is
 *      never answered while it is still sending.  From here on nothing
 *      points into libfcgi's memory;
 *   3. check the route's "require" values (a missing one is answered 400
 *      here, before anything is registered); run the C handler or the
 *      declarative action, which buffers the
 *      response in the arena and registers deferred work; the first read
 *      of a body field parses the body, once, within max_json_depth and
 *      max_json_elements;
 *   4. defer_admit: a full queue, or a database that is failing or lost
 *      (DEFER_EUNAVAIL: its writes would fail), turns the answer into
 *      503 + Retry-After while the client can still be told (DESIGN.md
 *      "admission before the response is final");
 *   5. write the response, FCGX_Finish_r, then defer_submit (cannot fail),
 *      then reset the arena.  A failed write (client gone) is counted and
 *      logged but does not cancel the deferred work (waitUntil semantics).
 *      With an access log, its line is formatted before FCGX_Finish_r
 *      (libfcgi's params are still there for a request web_request_begin
 *      refused) and written after defer_submit, with no lock: one
 *      write(2) on an O_APPEND descriptor (access.c).
 *
 * Request ids.  Right after step 1 the request's id (nginx's $request_id,
 * or the one web_request_begin made) is given to the thread's defer_ctx,
 * which copies it into every task the route registers: a failed or left
 * write's log line names the request.  Set for every request (NULL when
 * there is no parsed request), so a reused ctx never lends an id.
 *
 * Generations (reload).  Everything a request reads from the conf -- the
 * routes, the router, the defer templates, the request limits -- lives in
 * one immutable, reference-counted `struct gen`.  The server holds one
 * reference to the current generation (s->gen, under gen_lock).  A request
 * thread takes a reference right after FCGX_Accept_r returns (lock, read
 * s->gen, refs++, unlock) and drops it when the request is finished and
 * its tasks submitted; nothing it reads from the conf is read through
 * anything else.  web_server_reload builds and checks a new generation
 * outside the lock, swaps s->gen under it and drops the server's
 * reference to the old one: requests already accepted finish on the
 * generation they took, new ones get the new one, and the old generation
 * is freed by whichever thread drops its last reference (refs reaches 0
 * exactly once: the server's own reference is dropped only after the swap,
 * so no thread can find it in s->gen with refs 0).  Deferred tasks never
 * point into a generation: a task's query is a copy (qb_query_rebind) and
 * its label is copied by the pool.  gen_lock is a leaf: nothing else is
 * taken under it, and it is held for a pointer read and an increment.
 *
 * Accepting.  The listening socket is non-blocking.  A thread calls
 * FCGX_Accept_r; when there is nothing to accept (-EAGAIN: empty backlog,
 * or another thread or process took the connection) it polls the socket
 * and the server's wake eventfd, then tries again.  The socket may be
 * shared with another process (a successor started by a binary upgrade,
 * which accepts on the same socket; or systemd, which keeps it between
 * starts): both then take connections from the one backlog, each
 * answering what it accepted.
 *
 * Shutdown: web_server_stop shuts the socket down (shutdown(SHUT_RDWR):
 * new connects are refused, so nginx moves on), then sets `stopping` to
 * STOP_DRAIN and wakes the pollers; the threads go on answering the
 * connections still in the backlog (accept() returns them until it is
 * empty, then EAGAIN or EINVAL: empty for good, as nothing new can queue)
 * and a thread in the middle of a request finishes it.  When the socket
 * is shared (web_server_set_shared), shutting it down would stop the
 * other process too: `stopping` becomes STOP_LEAVE instead and the
 * threads stop accepting at once, leaving the backlog to the other
 * process; the socket file is never unlinked then.  Then the threads are
 * joined.  Lock order: none held across calls here; the pool and the log
 * have their own leaf locks.
 */
#define _GNU_SOURCE
#include "web_server.h"
#include "web_srv_int.h"
#include "web_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcgiapp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define LISTEN_BACKLOG 1024
#define MAX_RESP_HEADERS WEB__SRV_MAX_HEADERS

/* What a request reads from the conf (see DESIGN): immutable once
 * published, freed when the last reference is dropped. */
typedef struct gen {
    atomic_uint refs;
    uint64_t id;            /* 1 at create, +1 per reload */
    const web_conf *conf;
    web_conf *owned;        /* conf to free with the generation (reloads) */
    web_router *router;
    web_defer_tpl **tpls;   /* every route's defer blocks, in order */
    size_t *tpl_off;        /* route i's first template: tpls[tpl_off[i]] */
    size_t ntpls;
    web_limits limits;
} gen;

enum { STOP_NONE = 0, STOP_DRAIN, STOP_LEAVE };

struct web_server {
    const web_conf *conf;   /* the first conf: settings fixed at start */
    defer_pool *pool;
    web_log *log;
    web_access_log *access_log; /* borrowed; NULL: off */
    int redact_query;       /* server.log_values redact (fixed at start) */
    web_handler_def *handlers;
    size_t nhandlers;
    size_t max_body;        /* server.max_body at start (arenas are sized
                               from it): a reload cannot raise it */
    char *db_path;          /* web_call_db's database; NULL: none */
    qb_conn_config db_cfg;  /* its strings borrowed (web_server_config) */
    int has_db_cfg;         /* 0: qb_open's defaults */
    /* request_db_failed folding (db_failed), under dbfail_mu (a leaf,
     * held across the line's write so that lines keep their order):
     * the window's end (CLOCK_MONOTONIC ns; 0: none yet), the failures
     * folded in it and the last one's reason. */
    pthread_mutex_t dbfail_mu;
    int64_t dbfail_end;
    uint64_t dbfail_folded;
    char dbfail_last[256];

    pthread_mutex_t gen_lock; /* leaf: guards `gen` (the pointer) */
    gen *gen;                 /* current; the server holds one reference */
    uint64_t gen_next;        /* main thread only (create/reload) */
    atomic_uint gens_live;    /* generations not yet freed */

    int listen_fd;
    int wake_fd;            /* eventfd: written once at stop */
    int shared;             /* the socket is shared: never shut down or
                               unlinked (main thread only) */
    char listen_name[128];
    char *unix_path;      /* set when we created a unix socket */
    dev_t unix_dev;
    ino_t unix_ino;

    pthread_t threads[MAX_THREADS];
    unsigned nthreads;      /* main thread only (start/stop) */
    atomic_uint running;    /* request threads inside their loop */
    unsigned stuck;         /* threads a bounded stop gave up on */
    atomic_int stop_once;
    atomic_int stopping;    /* STOP_* */
    int started;
    time_t started_at;

    atomic_uint_fast64_t accepted, finished, s2xx, s3xx, s4xx, s5xx,
        rejected_503, unavail_503, journal_503, client_gone, accept_errors,
        bodies_parsed, bodies_refused, missing_required;
};

struct resp_header {
    const char *name;
    const char *value;
};

struct web_call {
    web_server *srv;
    const gen *gen;          /* the generation this request took */
    web_arena *arena;
    const web_request *req;
    web_match match;
    const web_route_conf *route;
    defer_ctx *dctx;
    qb_conn **db;            /* the thread's own connection (web_call_db) */
    const char *label;
    int json_errors;         /* the request's Content-Type is JSON: the
                                server's own error answers are JSON */
    int status;              /* 0 until web_respond */
    const char *ctype;
    const char *body;
    size_t body_len;
    struct resp_header hdrs[MAX_RESP_HEADERS];
    size_t nhdrs;
};

/* ---- handler API ---------------------------------------------------------- */

const web_request *web_call_request(const web_call *c) { return c ? c->req : NULL; }
const web_match *web_call_match(const web_call *c) { return c ? &c->match : NULL; }
const web_route_conf *web_call_route(const web_call *c) { return c ? c->route : NULL; }
web_arena *web_call_arena(web_call *c) { return c ? c->arena : NULL; }
defer_ctx *web_call_defer(web_call *c) { return c ? c->dctx : NULL; }
const char *web_call_label(const web_call *c) { return c ? c->label : "-"; }
web_server *web_call_server(web_call *c) { return c ? c->srv : NULL; }
web_log *web_call_log(web_call *c) { return c ? c->srv->log : NULL; }
qb_dialect web_call_dialect(const web_call *c)
{
    return c ? defer_pool_dialect(c->srv->pool) : QB_DIALECT_SQLITE;
}

/* A mutex that cannot be locked or unlocked is a corrupted server: there
 * is no way to serve on without it. */
static void must_lock(web_server *s, pthread_mutex_t *mu)
{
    int rc = pthread_mutex_lock(mu);
    if (rc != 0) {
        web_logf(s->log, WEB_LOG_ERROR, "mutex_failed", "op=lock rc=%d", rc);
        abort();
    }
}

static void must_unlock(web_server *s, pthread_mutex_t *mu)
{
    int rc = pthread_mutex_unlock(mu);
    if (rc != 0) {
        web_logf(s->log, WEB_LOG_ERROR, "mutex_failed", "op=unlock rc=%d", rc);
        abort();
    }
}

/* Log a failed open or reconnect of web_call_db.  A database that is
 * down fails every request that asks for it, so the lines are folded,
 * as the pool folds its own (lib/defer/defer_log.c): the first failure
 * is written whole and opens a one-second window; failures inside it
 * are counted, and the last one's reason kept.  The first failure after
 * the window writes that window's summary (the kept reason and
 * repeated=N); if it comes right after the window, it is the first
 * failure counted in the next one (a database that stays down gives one
 * summary a second), else, a new burst, it is written whole too.  A
 * burst's last count is written by the next failure or at the server's
 * stop (db_failed_flush).  The written lines plus their repeated= counts
 * add up to the failures.  Any request thread; the failure path only. */
#define DBFAIL_WINDOW_NS INT64_C(1000000000)

static void dbfail_write(web_server *s, const char *why, uint64_t repeated)
{
    char qe[300];
    (void)web_log_q(qe, sizeof qe, why);
    if (repeated > 0)
        web_logf(s->log, WEB_LOG_ERROR, "request_db_failed",
                 "error=%s repeated=%llu", qe, (unsigned long long)repeated);
    else
        web_logf(s->log, WEB_LOG_ERROR, "request_db_failed", "error=%s", qe);
}

static void db_failed(web_server *s, const char *why)
{
    struct timespec ts;
    int64_t now = 0;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
        now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    must_lock(s, &s->dbfail_mu);
    if (s->dbfail_end != 0 && now < s->dbfail_end) {
        s->dbfail_folded++;
        snprintf(s->dbfail_last, sizeof s->dbfail_last, "%s", why);
    } else if (s->dbfail_folded > 0 &&
               now < s->dbfail_end + DBFAIL_WINDOW_NS) {
        dbfail_write(s, s->dbfail_last, s->dbfail_folded);
        s->dbfail_folded = 1;
        snprintf(s->dbfail_last, sizeof s->dbfail_last, "%s", why);
        s->dbfail_end = now + DBFAIL_WINDOW_NS;
    } else {
        if (s->dbfail_folded > 0)
            dbfail_write(s, s->dbfail_last, s->dbfail_folded);
        s->dbfail_folded = 0;
        dbfail_write(s, why, 0);
        s->dbfail_end = now + DBFAIL_WINDOW_NS;
    }
    must_unlock(s, &s->dbfail_mu);
}

/* At the stop: the last burst's count.  Under the mutex: a request
 * thread the stop gave up on may still fail in db_failed. */
static void db_failed_flush(web_server *s)
{
    must_lock(s, &s->dbfail_mu);
    if (s->dbfail_folded > 0)
        dbfail_write(s, s->dbfail_last, s->dbfail_folded);
    s->dbfail_folded = 0;
    must_unlock(s, &s->dbfail_mu);
}

qb_conn *web_call_db(web_call *c)
{
    char eb[256];
    if (c == NULL || c->db == NULL || c->srv->db_path == NULL)
        return NULL;
    if (*c->db != NULL) {
        /* A PostgreSQL session learns of its loss when a call fails
         * (QB_ECONN): reconnect here, once per handler call at most,
         * bounded by the connect timeout. */
        if (qb_connected(*c->db))
            return *c->db;
        if (qb_reset(*c->db) == QB_OK)
            return *c->db;
        db_failed(c->srv, qb_errmsg(*c->db));
        return NULL;
    }
    if (qb_open(c->db, c->srv->db_path,
                c->srv->has_db_cfg ? &c->srv->db_cfg : NULL, eb, sizeof eb) !=
        QB_OK) {
        *c->db = NULL;
        db_failed(c->srv, eb);
        return NULL;
    }
    return *c->db;
}

const web_defer_tpl *web_call_defer_tpl(const web_call *c, size_t k)
{
    size_t ri;
    if (c == NULL || c->route == NULL || c->gen == NULL ||
        c->gen->tpl_off == NULL)
        return NULL;
    ri = (size_t)(c->route - c->gen->conf->routes);
    if (ri >= c->gen->conf->nroutes || k >= c->route->ndefers)
        return NULL;
    return c->gen->tpls[c->gen->tpl_off[ri] + k];
}

int web_respond(web_call *c, int status, const char *ctype, const void *body,
                size_t len)
{
    char *copy = NULL;
    if (c == NULL || status < 100 || status > 599 || (body == NULL && len > 0))
        return WEB_EINVAL;
    if (len > 0) {
        copy = web_arena_alloc(c->arena, len);
        if (copy == NULL)
            return WEB_ETOOBIG;
        memcpy(copy, body, len);
    }
    if (ctype != NULL) {
        for (const char *p = ctype; *p; p++)
            if ((unsigned char)*p < 32 || *p == 127)
                return WEB_EINVAL; /* no header injection via CR/LF */
        ctype = web_arena_strdup(c->arena, ctype);
        if (ctype == NULL)
            return WEB_ETOOBIG;
    }
    c->status = status;
    c->ctype = ctype;
    c->body = copy;
    c->body_len = len;
    return WEB_OK;
}

static int is_token(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s; s++)
        if (!(*s > 32 && *s < 127) || strchr("()<>@,;:\\\"/[]?={}", *s))
            return 0;
    return 1;
}

int web_add_header(web_call *c, const char *name, const char *value)
{
    const char *p;
    if (c == NULL || !is_token(name) || value == NULL)
        return WEB_EINVAL;
    /* The server writes these itself; a second copy makes nginx answer
     * 502 ("duplicate header line"). */
    if (strcasecmp(name, "Status") == 0 ||
        strcasecmp(name, "Content-Type") == 0 ||
        strcasecmp(name, "Content-Length") == 0)
        return WEB_EINVAL;
    for (p = value; *p; p++)
        if (((unsigned char)*p < 32 && *p != '\t') || *p == 127)
            return WEB_EINVAL;
    if (c->nhdrs == MAX_RESP_HEADERS)
        return WEB_EFULL;
    name = web_arena_strdup(c->arena, name);
    value = web_arena_strdup(c->arena, value);
    if (name == NULL || value == NULL)
        return WEB_ETOOBIG;
    c->hdrs[c->nhdrs].name = name;
    c->hdrs[c->nhdrs].value = value;
    c->nhdrs++;
    return WEB_OK;
}

/* ---- response writing ----------------------------------------------------- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error"
                                                        : "Server Error";
    }
}

static void count_status(web_server *s, int status)
{
    if (status < 300)
        atomic_fetch_add(&s->s2xx, 1);
    else if (status < 400)
        atomic_fetch_add(&s->s3xx, 1);
    else if (status < 500)
        atomic_fetch_add(&s->s4xx, 1);
    else
        atomic_fetch_add(&s->s5xx, 1);
}

/* What an answer really is on the wire (header_block). */
typedef struct final_resp {
    int status;
    const char *ctype; /* as sent in Content-Type (unused for 204/304) */
    const char *body;
    size_t body_len;
    size_t nhdrs;      /* the call's extra headers sent (0 after a 500) */
} final_resp;

/* The FastCGI header block of c's answer into hdr[0..cap), final
 * CRLF included, and the answer it stands for in *f.  A block that does
 * not fit is never cut (the body would be read as headers): the answer
 * becomes a bare 500.  Returns the block's length. */
static size_t header_block(const web_call *c, char *hdr, size_t cap,
                           final_resp *f)
{
    size_t n = 0;
    int k;

    f->status = c->status ? c->status : 204;
    f->ctype = c->ctype ? c->ctype : "text/plain; charset=utf-8";
    f->body = c->body;
    f->body_len = c->body_len;
    f->nhdrs = c->nhdrs;
    for (;;) {
        int fits = 1;
        k = snprintf(hdr, cap, "Status: %d %s\r\n", f->status,
                     reason(f->status));
        n = (size_t)k;
        if (f->status != 204 && f->status != 304) {
            k = snprintf(hdr + n, cap - n,
                         "Content-Type: %s\r\nContent-Length: %zu\r\n",
                         f->ctype, f->body_len);
            fits = k >= 0 && (size_t)k < cap - n;
            n += fits ? (size_t)k : 0;
        }
        for (size_t i = 0; fits && i < f->nhdrs; i++) {
            k = snprintf(hdr + n, cap - n, "%s: %s\r\n", c->hdrs[i].name,
                         c->hdrs[i].value);
            fits = k >= 0 && (size_t)k < cap - n;
            n += fits ? (size_t)k : 0;
        }
        if (fits && cap - n >= 3)
            break;
        f->status = 500;
        f->ctype = "text/plain; charset=utf-8";
        f->body = "500 response headers too large\n";
        f->body_len = strlen(f->body);
        f->nhdrs = 0;
    }
    memcpy(hdr + n, "\r\n", 2);
    return n + 2;
}

/* Write status line, headers and (unless HEAD) the body.  Returns 0 or the
 * stream's error (EPIPE when nginx/the client went away).  *sent_bytes:
 * the body bytes handed to libfcgi. */
static int write_response(FCGX_Request *rq, const web_call *c, int head,
                          int *sent_status, uint64_t *sent_bytes)
{
    char hdr[4096];
    final_resp f;
    size_t n = header_block(c, hdr, sizeof hdr, &f);
    int status = f.status;
    const char *body = f.body;
    size_t body_len = f.body_len;

    *sent_status = status;
    *sent_bytes = 0;
    FCGX_PutStr(hdr, (int)n, rq->out);
    if (!head && body_len > 0 && status != 204 && status != 304) {
        /* FCGX_PutStr takes an int length: write in bounded pieces. */
        size_t off = 0;
        while (off < body_len) {
            size_t piece = body_len - off;
            if (piece > (1u << 20))
                piece = 1u << 20;
            if (FCGX_PutStr(body + off, (int)piece, rq->out) < 0)
                break;
            off += piece;
        }
        *sent_bytes = off;
    }
    /* Flushing before FCGX_Finish_r costs a write, but it is how a write
     * error (the client or nginx went away) becomes visible to count and
     * log it: FCGX_Finish_r itself reports nothing. */
    FCGX_FFlush(rq->out);
    return FCGX_GetError(rq->out);
}

/* Append s to buf (capacity cap, *o used) as the inside of a JSON
 * string: escaped, valid UTF-8 (a string that is not has its bytes over
 * 0x7f written as '?'), cut with "..." at a character boundary when it
 * does not fit in cap - reserve bytes. */
static void json_put(char *buf, size_t cap, size_t *o, size_t reserve,
                     const char *s)
{
    int utf8 = web_utf8_valid(s, strlen(s));
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        size_t n, need;
        if (ch == '"' || ch == '\\')
            n = (size_t)snprintf(esc, sizeof esc, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", ch);
        else if (ch >= 0x80 && !utf8)
            n = (size_t)snprintf(esc, sizeof esc, "?");
        else
            n = (size_t)snprintf(esc, sizeof esc, "%c", ch);
        /* Room for this piece, a later "..." and the reserve; at a
         * UTF-8 lead byte, for the whole character, so that a cut never
         * falls inside one. */
        need = n + 3 + reserve + (utf8 && ch >= 0xc0 ? 3 : 0);
        if (cap - *o < need) {
            memcpy(buf + *o, "...", 3);
            *o += 3;
            return;
        }
        memcpy(buf + *o, esc, n);
        *o += n;
    }
}

/* An error answer built without the handler (404, 413, 503...): text
 * ("400 Bad Request: TEXT"), or for a JSON request
 * {"status":400,"error":"TEXT"[,"field":"FIELD"]}.  text NULL: the
 * status's reason alone; field: the name of a missing value. */
static void set_error_field(web_call *c, int status, const char *text,
                            const char *field)
{
    char body[512];
    size_t n = 0;
    const char *ctype = "text/plain; charset=utf-8";
    if (c->json_errors) {
        /* the reserve keeps room for what follows each string */
        n = (size_t)snprintf(body, sizeof body, "{\"status\":%d,\"error\":\"",
                             status);
        json_put(body, sizeof body, &n, 200,
                 text != NULL ? text : reason(status));
        body[n++] = '"';
        if (field != NULL) {
            memcpy(body + n, ",\"field\":\"", 10);
            n += 10;
            json_put(body, sizeof body, &n, 8, field);
            body[n++] = '"';
        }
        memcpy(body + n, "}\n", 2);
        n += 2;
        ctype = "application/json";
    } else {
        int k = snprintf(body, sizeof body, "%d %s%s%s\n", status,
                         reason(status), text ? ": " : "", text ? text : "");
        n = k < 0 ? 0 : (size_t)k < sizeof body ? (size_t)k : sizeof body - 1;
    }
    c->nhdrs = 0;
    if (web_respond(c, status, ctype, body, n) != WEB_OK) {
        /* Arena full: answer the status with an empty body. */
        c->status = status;
        c->ctype = NULL;
        c->body = NULL;
        c->body_len = 0;
    }
}

static void set_error(web_call *c, int status, const char *text)
{
    set_error_field(c, status, text, NULL);
}

/* 400 naming the value a route's "require" found missing. */
static void set_missing(web_call *c, const web_source *missing)
{
    char name[128], text[192];
    const char *what = "value";
    web_source_client_name(missing, &what, name, sizeof name);
    snprintf(text, sizeof text, "missing %s \"%s\"", what, name);
    set_error_field(c, 400, text, name);
}

/* ---- generations ------------------------------------------------------------ */

static void gen_free(gen *g)
{
    if (g == NULL)
        return;
    web_router_free(g->router);
    for (size_t i = 0; g->tpls != NULL && i < g->ntpls; i++)
        web_defer_tpl_free(g->tpls[i]);
    free(g->tpls);
    free(g->tpl_off);
    web_conf_free(g->owned);
    free(g);
}

/* The current generation, with a reference the caller drops with
 * gen_release. */
static gen *gen_acquire(web_server *s)
{
    gen *g;
    must_lock(s, &s->gen_lock);
    g = s->gen;
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    must_unlock(s, &s->gen_lock);
    return g;
}

/* Drop a reference; the last one frees the generation.  acq_rel: every
 * read of g by a thread that dropped its reference happens before the
 * free. */
static void gen_release(web_server *s, gen *g)
{
    if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
        return;
    atomic_fetch_sub(&s->gens_live, 1);
    if (g->id > 1)
        web_logf(s->log, WEB_LOG_INFO, "generation_freed", "generation=%llu",
                 (unsigned long long)g->id);
    gen_free(g);
}

/* ---- one request ------------------------------------------------------------ */

struct thread_state {
    web_server *srv;
    unsigned index;
    FCGX_Request rq;
    web_arena *arena;
    defer_ctx *dctx;
    qb_conn *db;             /* web_call_db: opened on first use */
    char *body;
    size_t body_cap;
};

#define BODY_TOO_BIG ((size_t)-1)
#define BODY_BROKEN ((size_t)-2)
#define DRAIN_CHUNK 16384

/* Read the whole body, into t->body when keep (else into a scratch
 * buffer and dropped: a route that never reads it, or no route at all).
 * Returns its length, BODY_TOO_BIG past max (or when the buffer cannot
 * grow), BODY_BROKEN when the stream failed midway (a truncated body
 * must not feed deferred writes). */
static size_t read_body(struct thread_state *t, size_t max, int keep)
{
    char scratch[DRAIN_CHUNK];
    size_t len = 0;
    for (;;) {
        char *dst = scratch;
        int want = (int)sizeof scratch, got;
        if (keep) {
            if (t->body_cap - len < 4096) {
                size_t ncap = t->body_cap ? t->body_cap * 2 : 16384;
                char *nb;
                if (ncap > max + 4096 + 1)
                    ncap = max + 4096 + 1;
                if (ncap <= t->body_cap)
                    return BODY_TOO_BIG; /* at the bound and still more */
                nb = realloc(t->body, ncap);
                if (nb == NULL)
                    return BODY_TOO_BIG;
                t->body = nb;
                t->body_cap = ncap;
            }
            dst = t->body + len;
            want = (int)((t->body_cap - len) > (1u << 20) ? (1u << 20)
                                                           : t->body_cap - len);
        }
        got = FCGX_GetStr(dst, want, t->rq.in);
        if (got <= 0)
            break;
        len += (size_t)got;
        if (len > max)
            return BODY_TOO_BIG;
    }
    return FCGX_GetError(t->rq.in) != 0 ? BODY_BROKEN : len;
}

static const web_handler_def *find_handler(const web_server *s,
                                           const char *name)
{
    for (size_t i = 0; i < s->nhandlers; i++)
        if (strcmp(s->handlers[i].name, name) == 0)
            return &s->handlers[i];
    return NULL;
}

/* Where a request's body comes from: libfcgi's stream on a request
 * thread, or a caller's buffer (web__srv_call). */
typedef struct body_src {
    struct thread_state *t; /* NULL: buf[0..len) */
    const char *buf;
    size_t len;
} body_src;

/* The whole body (read_body's results), *out pointing at it when kept. */
static size_t body_take(body_src *b, size_t max, int keep, const char **out)
{
    size_t n;
    if (b->t == NULL) {
        *out = b->buf;
        return b->len > max ? BODY_TOO_BIG : b->len;
    }
    n = read_body(b->t, max, keep);
    *out = b->t->body; /* after: reading may move the buffer */
    return n;
}

/* Steps 1 and 2: params, route, body.  Returns WEB_OK when the route
 * is to run; otherwise the answer is already set on the call. */
static int take_request(web_call *call, char **envp, body_src *src,
                        int *head)
{
    const gen *g = call->gen;
    web_request *req = NULL;
    const char *path, *body = NULL;
    size_t path_len = 0, limit = g->limits.max_body, body_len;
    int rc, mrc = WEB_ENOTFOUND, keep = 0;

    rc = web_request_begin(&req, call->arena, envp, &g->limits);
    if (rc == WEB_ETOOBIG) {
        /* CONTENT_LENGTH over max_body: answered without reading. */
        set_error(call, 413, "body larger than max_body");
        return rc;
    }
    if (rc == WEB_OK) {
        call->req = req;
        *head = web_request_method_bit(req) == WEB_M_HEAD;
        path = web_request_path(req, &path_len);
        mrc = web_router_match(g->router, web_request_method(req), path,
                               path_len, &call->match);
        if (mrc == WEB_OK) {
            call->route = call->match.data;
            call->label = call->match.pattern;
            if (call->route->max_body > 0)
                limit = call->route->max_body;
            keep = call->route->handler != NULL || call->route->reads_body;
        }
        if (web_request_content_length(req) > (int64_t)limit) {
            set_error(call, 413, "body larger than max_body");
            return WEB_ETOOBIG;
        }
    }
    body_len = body_take(src, limit, keep, &body);
    if (body_len == BODY_TOO_BIG) {
        set_error(call, 413, "body larger than max_body");
        return WEB_ETOOBIG;
    }
    if (body_len == BODY_BROKEN) {
        set_error(call, 400, "request body cut short");
        return WEB_EBADREQ;
    }
    if (rc != WEB_OK) {
        set_error(call, web_http_status(rc), web_strerror(rc));
        return rc;
    }
    if (mrc == WEB_EMETHOD) {
        set_error(call, 405, NULL);
        web_add_header(call, "Allow", call->match.allow_str);
        return mrc;
    }
    if (mrc != WEB_OK) {
        set_error(call, mrc == WEB_ENOTFOUND ? 404 : 500, NULL);
        return mrc;
    }
    rc = web_request_set_body(req, keep ? body : NULL, body_len, limit);
    if (rc != WEB_OK) {
        set_error(call, web_http_status(rc), web_strerror(rc));
        return rc;
    }
    return WEB_OK;
}

/* The answer to a route that failed with rc: a body the parser refused
 * gets the parser's reason, anything else web_strerror's text. */
static void set_route_error(web_call *c, int rc)
{
    const char *why = NULL;
    int brc = web_request_body_result(c->req, &why);
    set_error(c, web_http_status(rc),
              brc == rc && why != NULL ? why : web_strerror(rc));
}

/* The request's access log line (web_server.h), made before
 * FCGX_Finish_r while libfcgi's params are still there for a request
 * that web_request_begin refused; written after it. */
static size_t access_line(struct thread_state *t, const web_call *c,
                          int status, uint64_t bytes,
                          const struct timespec *t0, size_t writes,
                          size_t writes_inline, char *buf, size_t len)
{
    web_access_rec r;
    struct timespec t1;
    char **envp = t->rq.envp;

    memset(&r, 0, sizeof r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    clock_gettime(CLOCK_REALTIME, &r.time);
    r.duration_ns = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000000000 +
                    (t1.tv_nsec - t0->tv_nsec);
    if (c->req != NULL) {
        size_t plen = 0;
        r.method = web_request_method(c->req);
        r.uri = web_request_param(c->req, "REQUEST_URI", NULL);
        if (r.uri == NULL)
            r.uri = web_request_path(c->req, &plen);
        r.request_id = web_request_id(c->req);
    } else {
        r.method = FCGX_GetParam("REQUEST_METHOD", envp);
        r.uri = FCGX_GetParam("REQUEST_URI", envp);
        r.request_id = FCGX_GetParam("REQUEST_ID", envp);
    }
    r.status = status;
    r.bytes = bytes;
    r.writes = writes;
    r.writes_inline = writes_inline;
    return web_access_format(buf, len, &r, t->srv->redact_query);
}

/* Step 3: "require", then the handler or the declarative action.
 * Returns 1 when the route ran and its tasks (if any) wait for
 * admission; 0 when the answer is final (an error answer is set, the
 * registered work discarded). */
static int run_route(web_call *call)
{
    web_server *s = call->srv;
    const web_source *missing = NULL;
    char qbuf[256];
    int rc;

    /* "require" first: a missing value is the client's error, answered
     * before the handler runs or any write is registered. */
    rc = web_route_check_required(call->route, call->req, &call->match,
                                  &missing);
    if (rc == WEB_OK && call->route->handler != NULL) {
        const web_handler_def *h = find_handler(s, call->route->handler);
        rc = h ? h->fn(call, h->ud) : WEB_EINVAL; /* checked at create */
    } else if (rc == WEB_OK) {
        rc = web_respond(call, call->route->status, call->route->content_type,
                         call->route->body, call->route->body_len);
        if (rc == WEB_OK)
            rc = web_call_register_defers(call, call->route);
    }
    if (web_request_body_parses(call->req) > 0) {
        atomic_fetch_add(&s->bodies_parsed, 1);
        if (web_request_body_result(call->req, NULL) != WEB_OK)
            atomic_fetch_add(&s->bodies_refused, 1);
    }
    if (rc == WEB_EREQUIRED && missing != NULL) {
        defer_ctx_discard(call->dctx);
        atomic_fetch_add(&s->missing_required, 1);
        set_missing(call, missing);
        return 0;
    }
    if (rc != WEB_OK) {
        int st = web_http_status(rc);
        defer_ctx_discard(call->dctx);
        if (st >= 500)
            web_logf(s->log, WEB_LOG_ERROR, "handler_failed",
                     "route=%s rc=%d", web_log_q(qbuf, sizeof qbuf, call->label),
                     rc);
        set_route_error(call, rc);
        return 0;
    }
    return 1;
}

/* Step 4: admission of the call's tasks before the answer is final.
 * Returns 1 when they were admitted (submit them after the answer);
 * 0 otherwise, with *ninline the tasks that ran in this thread, or a 503
 * (500) answer set. */
static int admit_call(web_call *call, size_t *nwrites, size_t *ninline)
{
    web_server *s = call->srv;
    size_t ntasks = defer_ctx_count(call->dctx);
    char qbuf[256];
    /* A request without deferred work has nothing to reserve: skip the
     * pool's lock. */
    int rc = ntasks == 0 ? DEFER_INLINE : defer_admit(s->pool, call->dctx);

    switch (rc) {
    case DEFER_OK:
        *nwrites = ntasks;
        return 1;
    case DEFER_INLINE:
        *ninline = ntasks;
        return 0; /* the work already ran in this thread, or there was none */
    case DEFER_EFULL:
    case DEFER_ESHUTDOWN:
        atomic_fetch_add(&s->rejected_503, 1);
        set_error(call, 503, rc == DEFER_EFULL ? "deferred-work queue full"
                                               : "shutting down");
        web_add_header(call, "Retry-After", "1");
        return 0;
    case DEFER_EJOURNAL: /* disk full under the journal: nothing promised */
        atomic_fetch_add(&s->journal_503, 1);
        set_error(call, 503, "journal unavailable");
        web_add_header(call, "Retry-After", "1");
        return 0;
    case DEFER_EUNAVAIL:
        /* The pool probes the database once a second. */
        atomic_fetch_add(&s->unavail_503, 1);
        set_error(call, 503, "database unavailable");
        web_add_header(call, "Retry-After", "1");
        return 0;
    default:
        defer_ctx_discard(call->dctx);
        web_logf(s->log, WEB_LOG_ERROR, "admit_failed", "route=%s rc=%d",
                 web_log_q(qbuf, sizeof qbuf, call->label), rc);
        set_error(call, 500, NULL);
        return 0;
    }
}

/* A call on arena and dctx of generation g, before anything is read. */
static void call_init(web_call *call, web_server *s, const gen *g,
                      web_arena *arena, defer_ctx *dctx, qb_conn **db,
                      char **envp)
{
    memset(call, 0, sizeof *call);
    call->srv = s;
    call->gen = g;
    call->arena = arena;
    call->dctx = dctx;
    call->db = db;
    call->label = "-";
    /* The rule for the server's own error answers: JSON to a client that
     * sent JSON, text to anyone else (read before anything can fail). */
    call->json_errors = web_media_type_is(FCGX_GetParam("CONTENT_TYPE", envp),
                                          "application/json");
}

/* Steps 1-3 of one request (take_request, then run_route).  Returns 1
 * when the route ran and its tasks wait for admission. */
static int call_run(web_call *call, char **envp, body_src *src, int *head)
{
    int rc = take_request(call, envp, src, head);
    /* Every task the route registers is logged with this request's id
     * (the pool copies it into each task; a failed write's line names
     * it).  Set for every request, so a reused ctx never keeps the last
     * one's. */
    defer_ctx_set_request_id(call->dctx, call->req != NULL
                                             ? web_request_id(call->req)
                                             : NULL);
    return rc == WEB_OK && run_route(call);
}

static void serve_one(struct thread_state *t, const gen *g)
{
    web_server *s = t->srv;
    web_call call;
    body_src src = {t, NULL, 0};
    int rc, head = 0, admitted = 0, sent = 0;
    size_t nwrites = 0, ninline = 0, alen = 0;
    uint64_t sent_bytes = 0;
    struct timespec t0 = {0, 0};
    char qbuf[256];
    char aline[WEB_ACCESS_LINE_MAX];

    call_init(&call, s, g, t->arena, t->dctx, &t->db, t->rq.envp);
    if (s->access_log != NULL)
        clock_gettime(CLOCK_MONOTONIC, &t0);
    if (call_run(&call, t->rq.envp, &src, &head))
        admitted = admit_call(&call, &nwrites, &ninline);

    rc = write_response(&t->rq, &call, head, &sent, &sent_bytes);
    count_status(s, sent); /* the status actually sent (500 if cut) */
    if (s->access_log != NULL)
        alen = access_line(t, &call, sent, sent_bytes, &t0, nwrites, ninline,
                           aline, sizeof aline);
    FCGX_Finish_r(&t->rq);
    /* From here on nothing of libfcgi's (envp, streams) is touched. */
    if (admitted)
        defer_submit(s->pool, t->dctx);
    atomic_fetch_add(&s->finished, 1);
    if (rc != 0) {
        atomic_fetch_add(&s->client_gone, 1);
        web_logf(s->log, WEB_LOG_INFO, "client_gone",
                 "route=%s errno=%d deferred_kept=%d",
                 web_log_q(qbuf, sizeof qbuf, call.label), rc, admitted);
    }
    /* After the answer and the submit: the client never waits for it.
     * No lock: one write(2) per line (access.c). */
    if (alen > 0)
        web_access_log_line(s->access_log, aline, alen);
    web_arena_reset(t->arena);
}

int web__srv_call(web_server *s, char **envp, const void *body, size_t len,
                  web_arena *arena, defer_ctx *dctx, qb_conn **db,
                  web__srv_hook before_admit, void *ud,
                  web__srv_answer *out)
{
    web_call call;
    body_src src = {NULL, body, len};
    final_resp f;
    char hdr[4096];
    gen *g;
    int head = 0;

    if (s == NULL || envp == NULL || arena == NULL || dctx == NULL ||
        out == NULL || (body == NULL && len > 0))
        return WEB_EINVAL;
    memset(out, 0, sizeof *out);
    g = gen_acquire(s);
    atomic_fetch_add(&s->accepted, 1);
    call_init(&call, s, g, arena, dctx, db, envp);
    if (call_run(&call, envp, &src, &head)) {
        if (before_admit != NULL && defer_ctx_count(dctx) > 0)
            before_admit(ud, dctx);
        out->admitted = admit_call(&call, &out->nwrites, &out->ninline);
    }
    (void)header_block(&call, hdr, sizeof hdr, &f);
    out->status = f.status;
    out->ctype = f.status == 204 || f.status == 304 ? NULL : f.ctype;
    if (!head && f.status != 204 && f.status != 304) {
        out->body = f.body;
        out->body_len = f.body_len;
    }
    out->nhdrs = f.nhdrs;
    for (size_t i = 0; i < f.nhdrs; i++) {
        out->hdr_name[i] = call.hdrs[i].name;
        out->hdr_value[i] = call.hdrs[i].value;
    }
    count_status(s, f.status);
    atomic_fetch_add(&s->finished, 1);
    gen_release(s, g);
    return WEB_OK;
}

/* Until the listening socket has a connection for us or the server is
 * stopping (the wake eventfd).  Signals are blocked in request threads,
 * so EINTR is rare; any wake-up only means "try accept again". */
static void wait_listen(web_server *s)
{
    struct pollfd p[2];
    p[0].fd = s->listen_fd;
    p[0].events = POLLIN;
    p[0].revents = 0;
    p[1].fd = s->wake_fd;
    p[1].events = POLLIN;
    p[1].revents = 0;
    if (poll(p, 2, -1) < 0 && errno != EINTR) {
        /* Cannot poll (ENOMEM): do not spin on accept. */
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *request_thread(void *arg)
{
    struct thread_state *t = arg;
    web_server *s = t->srv;
    unsigned backoff_ms = 10, last_logged = 0;
    char name[16];

    snprintf(name, sizeof name, "web-r%u", t->index);
    /* A name only helps debuggers (top -H, gdb): failing is harmless. */
    if (pthread_setname_np(pthread_self(), name) != 0)
        web_logf(s->log, WEB_LOG_DEBUG, "thread_name_failed", "thread=%u",
                 t->index);
    atomic_fetch_add(&s->running, 1);
    for (;;) {
        /* Read before accept: STOP_DRAIN is stored only after the socket
         * was shut down, so an empty backlog seen after it is empty for
         * good (nothing new can queue). */
        int st = atomic_load(&s->stopping), rc;
        if (st == STOP_LEAVE)
            break; /* the backlog is the other process's now */
        rc = FCGX_Accept_r(&t->rq);
        if (rc >= 0) {
            gen *g = gen_acquire(s);
            backoff_ms = 10;
            last_logged = 0;
            /* While stopping (STOP_DRAIN) accept() still hands out the
             * connections already in the backlog; nginx has sent those
             * requests and never re-sends a POST: answer every one. */
            atomic_fetch_add(&s->accepted, 1);
            serve_one(t, g);
            gen_release(s, g);
            continue;
        }
        if (rc == -EAGAIN || rc == -EWOULDBLOCK) {
            if (st != STOP_NONE)
                break;
            wait_listen(s);
            continue;
        }
        if (st != STOP_NONE)
            break; /* EINVAL after shutdown(): the backlog is empty */
        {
            /* EMFILE/ENFILE/ENOMEM come back as -errno: a transient
             * shortage must not kill the thread.  Back off and retry. */
            struct timespec ts = {(time_t)(backoff_ms / 1000),
                                  (long)(backoff_ms % 1000) * 1000000L};
            atomic_fetch_add(&s->accept_errors, 1);
            /* One line per backoff step, not per failure: a lasting
             * EMFILE must not flood the log. */
            if (backoff_ms != last_logged) {
                web_logf(s->log, WEB_LOG_WARN, "accept_failed",
                         "rc=%d backoff_ms=%u", rc, backoff_ms);
                last_logged = backoff_ms;
            }
            nanosleep(&ts, NULL);
            backoff_ms = backoff_ms >= 500 ? 1000 : backoff_ms * 2;
        }
    }
    FCGX_Free(&t->rq, 1);
    atomic_fetch_sub(&s->running, 1);
    return NULL;
}

/* ---- listening socket ------------------------------------------------------- */

static int open_unix(web_server *s, const char *path, unsigned mode,
                     char *eb, size_t el)
{
    struct sockaddr_un sa;
    struct stat st;
    mode_t old_umask;
    int fd;

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return web__err(eb, el, WEB_ECONF, "socket path too long (max %zu): %s",
                        sizeof sa.sun_path - 1, path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        int probe;
        if (!S_ISSOCK(st.st_mode))
            return web__err(eb, el, WEB_EIO, "%s exists and is not a socket",
                            path);
        /* A live socket belongs to a running instance: never steal it.
         * Only "connection refused" proves nobody listens; a full backlog
         * (EAGAIN, non-blocking probe) or a permission error means a
         * process we must not replace. */
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (probe < 0)
            return web__err(eb, el, WEB_EIO, "socket: %s", strerror(errno));
        int e = connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0
                                                                        : errno;
        if (e != ECONNREFUSED) {
            close(probe);
            return web__err(eb, el, WEB_EIO,
                            "%s is in use by a running process%s%s", path,
                            e ? ": " : "", e ? strerror(e) : "");
        }
        close(probe);
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return web__err(eb, el, WEB_EIO, "socket: %s", strerror(errno));
    /* Create the file with the final mode: no window where it is wider.
     * umask is process-wide, and this runs before any thread starts. */
    old_umask = umask((mode_t)(~mode & 0777));
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        umask(old_umask);
        close(fd);
        return web__err(eb, el, WEB_EIO, "bind %s: %s", path, strerror(e));
    }
    umask(old_umask);
    if (chmod(path, mode) != 0 || listen(fd, LISTEN_BACKLOG) != 0 ||
        stat(path, &st) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return web__err(eb, el, WEB_EIO, "listen %s: %s", path, strerror(e));
    }
    s->unix_path = strdup(path);
    if (s->unix_path == NULL) {
        close(fd);
        unlink(path);
        return WEB_ENOMEM;
    }
    s->unix_dev = st.st_dev;
    s->unix_ino = st.st_ino;
    s->listen_fd = fd;
    snprintf(s->listen_name, sizeof s->listen_name, "unix:%s", path);
    return WEB_OK;
}

static int open_tcp(web_server *s, const char *spec, char *eb, size_t el)
{
    char host[64];
    const char *colon, *port;
    struct addrinfo hints, *ai = NULL;
    int fd, one = 1, rc;
    size_t hl;

    if (spec[0] == '[') { /* [::1]:9000 */
        const char *close_br = strchr(spec, ']');
        if (close_br == NULL || close_br[1] != ':')
            return web__err(eb, el, WEB_ECONF, "bad listen address %s", spec);
        hl = (size_t)(close_br - spec - 1);
        if (hl >= sizeof host)
            return web__err(eb, el, WEB_ECONF, "bad listen address %s", spec);
        memcpy(host, spec + 1, hl);
        port = close_br + 2;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
            return web__err(eb, el, WEB_ECONF, "bad listen address %s", spec);
        hl = (size_t)(colon - spec);
        memcpy(host, spec, hl);
        port = colon + 1;
    }
    host[hl] = '\0';
    if (hl == 0) /* ":9000" would listen on every address */
        return web__err(eb, el, WEB_ECONF,
                        "listen %s: name the address (127.0.0.1:PORT)", spec);
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0 || ai == NULL)
        return web__err(eb, el, WEB_ECONF,
                        "listen %s: need a numeric address and port (%s)", spec,
                        gai_strerror(rc));
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return web__err(eb, el, WEB_EIO, "listen %s: %s", spec, strerror(e));
    }
    freeaddrinfo(ai);
    s->listen_fd = fd;
    snprintf(s->listen_name, sizeof s->listen_name, "%s", spec);
    return WEB_OK;
}

/* "fd:N": a listening socket this process inherited (a binary upgrade's
 * WAITUNTIL_LISTEN_FD, systemd's LISTEN_FDS).  Named after its address;
 * a unix socket's file is remembered like one we made, so that the last
 * process to use it unlinks it (unless web_server_set_shared). */
static int open_inherited(web_server *s, const char *spec, char *eb,
                          size_t el)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char *end = NULL;
    long fd;
    int acc = 0;
    socklen_t len = sizeof acc;

    errno = 0;
    fd = strtol(spec, &end, 10);
    if (errno != 0 || end == spec || *end != '\0' || fd < 0 || fd > 1 << 20)
        return web__err(eb, el, WEB_ECONF,
                        "listen fd:%s: not a descriptor number", spec);
    if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 ||
        !acc)
        return web__err(eb, el, WEB_ECONF,
                        "listen fd:%ld: not a listening socket", fd);
    memset(&ss, 0, sizeof ss);
    if (getsockname((int)fd, (struct sockaddr *)&ss, &sl) != 0)
        return web__err(eb, el, WEB_EIO, "listen fd:%ld: getsockname: %s", fd,
                        strerror(errno));
    s->listen_fd = (int)fd;
    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *su = (const struct sockaddr_un *)&ss;
        struct stat st;
        size_t n = sl > offsetof(struct sockaddr_un, sun_path)
                       ? sl - offsetof(struct sockaddr_un, sun_path)
                       : 0;
        char path[sizeof su->sun_path + 1];
        if (n > sizeof su->sun_path)
            n = sizeof su->sun_path;
        memcpy(path, su->sun_path, n);
        path[n] = '\0';
        if (path[0] != '\0' && stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
            s->unix_path = strdup(path);
            if (s->unix_path == NULL)
                return WEB_ENOMEM;
            s->unix_dev = st.st_dev;
            s->unix_ino = st.st_ino;
        }
        snprintf(s->listen_name, sizeof s->listen_name, "unix:%s",
                 path[0] != '\0' ? path : "(unnamed)");
    } else {
        char host[INET6_ADDRSTRLEN + 2], port[16];
        if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port,
                        sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            snprintf(s->listen_name, sizeof s->listen_name, "fd:%ld", fd);
        else
            snprintf(s->listen_name, sizeof s->listen_name,
                     ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
                     port);
    }
    /* Not for the handlers' children; the upgrade clears it in the one
     * child that must have it. */
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0)
        return web__err(eb, el, WEB_EIO, "listen fd:%ld: %s", fd,
                        strerror(errno));
    return WEB_OK;
}

static int open_listener(web_server *s, const char *spec, char *eb, size_t el)
{
    int rc, fl;
    if (spec == NULL || *spec == '\0')
        return web__err(eb, el, WEB_ECONF, "no listen address");
    if (strncmp(spec, "unix:", 5) == 0) {
        rc = open_unix(s, spec + 5, s->conf->server.socket_mode, eb, el);
    } else if (strncmp(spec, "fd:", 3) == 0) {
        rc = open_inherited(s, spec + 3, eb, el);
    } else if (strcmp(spec, "stdin") == 0) {
        int acc = 0;
        socklen_t len = sizeof acc;
        if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc)
            return web__err(eb, el, WEB_ECONF,
                            "listen stdin: fd 0 is not a listening socket");
        s->listen_fd = 0;
        snprintf(s->listen_name, sizeof s->listen_name, "stdin");
        rc = WEB_OK;
    } else {
        rc = open_tcp(s, spec, eb, el);
    }
    if (rc != WEB_OK)
        return rc;
    /* Non-blocking (see DESIGN: accept, poll on EAGAIN).  accept()ed
     * connections do not inherit it on Linux: libfcgi reads them
     * blocking as before. */
    fl = fcntl(s->listen_fd, F_GETFL);
    if (fl < 0 || fcntl(s->listen_fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return web__err(eb, el, WEB_EIO,
                        "listen %s: cannot make it non-blocking: "
                        "%s",
                        s->listen_name, strerror(errno));
    return WEB_OK;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The file a route or defer block is in: its own (include), else the
 * conf's, else "conf". */
static const char *conf_file(const web_conf *c, const char *own)
{
    return own != NULL ? own : c->file ? c->file : "conf";
}

/*
 * Build a generation from conf (borrowed; `owned` is freed with the
 * generation, on failure too): every route's handler must be registered,
 * no route may have more defer blocks than the pool takes per request
 * (tasks_per_request of the first conf: the pool is not rebuilt), no
 * route's max_body may pass the server's (of the first conf: the request
 * arenas are sized from it), and every defer block's statement is built
 * once (see action.c) in the pool's dialect, which refuses queries
 * rendered for another one.
 */
static int gen_build(web_server *s, const web_conf *conf, web_conf *owned,
                     gen **out, char *eb, size_t el)
{
    qb_dialect dialect = defer_pool_dialect(s->pool);
    size_t n = 0, k = 0, per_request = s->conf->pool.tasks_per_request;
    gen *g;
    int rc = WEB_OK;

    *out = NULL;
    g = calloc(1, sizeof *g);
    if (g == NULL) {
        web_conf_free(owned);
        return WEB_ENOMEM;
    }
    g->conf = conf;
    g->owned = owned;
    atomic_init(&g->refs, 1);
    web_limits_default(&g->limits);
    g->limits.max_body = s->max_body;
    g->limits.max_params = conf->server.max_params;
    g->limits.max_query_args = conf->server.max_query_args;
    g->limits.max_json_depth = conf->server.max_json_depth;
    g->limits.max_json_elements = conf->server.max_json_elements;
    for (size_t i = 0; i < conf->nroutes; i++) {
        const web_route_conf *r = &conf->routes[i];
        size_t j;
        n += r->ndefers;
        if (r->handler != NULL) {
            for (j = 0; j < s->nhandlers; j++)
                if (strcmp(s->handlers[j].name, r->handler) == 0)
                    break;
            if (j == s->nhandlers) {
                rc =
                    web__err(eb, el, WEB_ECONF, "%s:%d: unknown handler \"%s\"",
                             conf_file(conf, r->file), r->line, r->handler);
                goto fail;
            }
        }
        if (r->ndefers > per_request) {
            rc = web__err(eb, el, WEB_ECONF,
                          "%s:%d: route has %zu defer blocks, more than pool "
                          "tasks_per_request (%zu)",
                          conf_file(conf, r->file), r->line, r->ndefers,
                          per_request);
            goto fail;
        }
        if (r->max_body > s->max_body) {
            rc = web__err(eb, el, WEB_ECONF,
                          "%s:%d: route max_body %zu is above the running "
                          "server's max_body %zu (server max_body changes need "
                          "a restart)",
                          conf_file(conf, r->file), r->line, r->max_body,
                          s->max_body);
            goto fail;
        }
    }
    g->tpl_off = calloc(conf->nroutes ? conf->nroutes : 1, sizeof *g->tpl_off);
    g->tpls = calloc(n ? n : 1, sizeof *g->tpls);
    if (g->tpl_off == NULL || g->tpls == NULL) {
        rc = WEB_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < conf->nroutes; i++) {
        g->tpl_off[i] = k;
        for (size_t j = 0; j < conf->routes[i].ndefers; j++, k++) {
            const web_defer *d = &conf->routes[i].defers[j];
            char why[400];
            int qrc = web_defer_tpl_create(d, dialect, &g->tpls[k], why,
                                           sizeof why);
            g->ntpls = k + 1;
            if (qrc == QB_ENOMEM) {
                rc = WEB_ENOMEM;
                goto fail;
            }
            if (qrc != QB_OK) {
                rc = web__err(eb, el, WEB_ECONF, "%s:%d: defer on %s: %s",
                              conf_file(conf, d->file), d->line, d->table, why);
                goto fail;
            }
        }
    }
    rc = web_conf_router(conf, &g->router);
    if (rc != WEB_OK) {
        rc = web__err(eb, el, rc, "cannot build the router: %s",
                      web_strerror(rc));
        goto fail;
    }
    g->id = ++s->gen_next;
    atomic_fetch_add(&s->gens_live, 1);
    *out = g;
    return WEB_OK;
fail:
    gen_free(g);
    return rc;
}

int web_server_create(web_server **out, const web_server_config *cfg,
                      char *eb, size_t el)
{
    web_server *s;
    int rc;

    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    if (cfg == NULL || cfg->conf == NULL || cfg->pool == NULL)
        return web__err(eb, el, WEB_EINVAL, "server needs a conf and a pool");
    if (cfg->conf->server.threads == 0 ||
        cfg->conf->server.threads > MAX_THREADS)
        return web__err(eb, el, WEB_ECONF, "threads must be 1..%d",
                        MAX_THREADS);

    s = calloc(1, sizeof *s);
    if (s == NULL)
        return WEB_ENOMEM;
    s->listen_fd = -1;
    s->wake_fd = -1;
    s->conf = cfg->conf;
    s->pool = cfg->pool;
    s->log = cfg->log;
    s->access_log = cfg->access_log;
    s->redact_query = cfg->conf->server.log_values == WEB_LOG_VALUES_REDACT;
    s->max_body = cfg->conf->server.max_body;
    s->dbfail_mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    rc = pthread_mutex_init(&s->gen_lock, NULL);
    if (rc != 0) {
        free(s);
        return web__err(eb, el, WEB_EIO, "pthread_mutex_init: %s",
                        strerror(rc));
    }
    if (cfg->nhandlers > 0) {
        s->handlers = calloc(cfg->nhandlers, sizeof *s->handlers);
        if (s->handlers == NULL) {
            web_server_free(s);
            return WEB_ENOMEM;
        }
        memcpy(s->handlers, cfg->handlers, cfg->nhandlers * sizeof *s->handlers);
        s->nhandlers = cfg->nhandlers;
    }
    rc = gen_build(s, cfg->conf, NULL, &s->gen, eb, el);
    if (rc != WEB_OK) {
        web_server_free(s);
        return rc;
    }
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) {
        rc = web__err(eb, el, WEB_EIO, "eventfd: %s", strerror(errno));
        web_server_free(s);
        return rc;
    }
    if (cfg->db_path != NULL) {
        s->db_path = strdup(cfg->db_path);
        if (s->db_path == NULL) {
            web_server_free(s);
            return WEB_ENOMEM;
        }
        s->has_db_cfg = cfg->db_cfg != NULL;
        if (cfg->db_cfg != NULL)
            s->db_cfg = *cfg->db_cfg;
    }
    if (FCGX_Init() != 0) {
        web_server_free(s);
        return web__err(eb, el, WEB_EIO, "FCGX_Init failed");
    }
    if (cfg->listen != NULL && strcmp(cfg->listen, WEB_LISTEN_NONE) == 0) {
        snprintf(s->listen_name, sizeof s->listen_name, "none");
        rc = WEB_OK;
    } else {
        rc = open_listener(s,
                           cfg->listen ? cfg->listen : cfg->conf->server.listen,
                           eb, el);
    }
    if (rc != WEB_OK) {
        web_server_free(s);
        return rc;
    }
    s->started_at = time(NULL);
    *out = s;
    return WEB_OK;
}

int web_server_reload(web_server *s, web_conf *conf, uint64_t *generation,
                      char *eb, size_t el)
{
    gen *g = NULL, *old;
    int rc;

    if (s == NULL || conf == NULL) {
        web_conf_free(conf);
        return web__err(eb, el, WEB_EINVAL, "reload needs a server and a conf");
    }
    rc = gen_build(s, conf, conf, &g, eb, el); /* takes conf */
    if (rc != WEB_OK)
        return rc;
    must_lock(s, &s->gen_lock);
    old = s->gen;
    s->gen = g;
    must_unlock(s, &s->gen_lock);
    if (generation != NULL)
        *generation = g->id;
    /* The server's reference: the old generation is freed here, or by
     * the request that finishes on it last. */
    gen_release(s, old);
    return WEB_OK;
}

void web_server_set_shared(web_server *s, int shared)
{
    if (s != NULL)
        s->shared = shared != 0;
}

int web_server_listen_fd(const web_server *s)
{
    return s ? s->listen_fd : -1;
}

static void free_thread_state(struct thread_state *t)
{
    if (t == NULL)
        return;
    defer_ctx_free(t->dctx);
    qb_close(t->db);
    web_arena_free(t->arena);
    free(t->body);
    free(t);
}

static void *thread_main(void *arg)
{
    request_thread(arg);
    free_thread_state(arg);
    return NULL;
}

int web_server_start(web_server *s)
{
    sigset_t all, old;
    int rc = WEB_OK;

    if (s == NULL || s->started || s->listen_fd < 0)
        return WEB_EINVAL;
    /* Threads inherit the mask: block every signal so only main's sigwait
     * sees them. */
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &old) != 0)
        return WEB_EIO;
    for (unsigned i = 0; i < s->conf->server.threads; i++) {
        struct thread_state *t = calloc(1, sizeof *t);
        size_t arena_max = s->max_body * 3 + (4u << 20);
        if (t == NULL) {
            rc = WEB_ENOMEM;
            break;
        }
        t->srv = s;
        t->index = i;
        t->arena = web_arena_create(0, arena_max);
        if (t->arena == NULL || defer_ctx_create(s->pool, &t->dctx) != DEFER_OK ||
            FCGX_InitRequest(&t->rq, s->listen_fd, 0) != 0) {
            free_thread_state(t);
            rc = WEB_ENOMEM;
            break;
        }
        if (pthread_create(&s->threads[i], NULL, thread_main, t) != 0) {
            free_thread_state(t);
            rc = WEB_EIO;
            break;
        }
        s->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    s->started = 1;
    if (rc != WEB_OK)
        web_server_stop(s);
    return rc;
}

unsigned web_server_stop_within(web_server *s, unsigned timeout_ms)
{
    struct timespec end;
    uint64_t one = 1;
    if (s == NULL || !s->started || atomic_exchange(&s->stop_once, 1))
        return s ? s->stuck : 0;
    /* Not shared: shut the socket down first (new connects are refused,
     * accept() hands out the backlog, then reports it empty), and only
     * then say STOP_DRAIN, so that a thread that reads it knows the
     * backlog can only shrink.  Shared: the other process keeps
     * accepting on it; leave at once.  No FCGX_ShutdownPending(): it
     * sets a process-wide libfcgi flag that no call clears, so a second
     * server in the same process (tests without fork) could never accept
     * again. */
    if (!s->shared && s->listen_fd >= 0)
        shutdown(s->listen_fd, SHUT_RDWR);
    atomic_store(&s->stopping, s->shared ? STOP_LEAVE : STOP_DRAIN);
    /* Wake every poller; the counter stays non-zero, so it wakes any
     * later poll too. */
    if (write(s->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
        web_logf(s->log, WEB_LOG_ERROR, "wake_failed", "errno=%d", errno);
    /* pthread_timedjoin_np measures against CLOCK_REALTIME. */
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += (time_t)(timeout_ms / 1000);
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    for (unsigned i = 0; i < s->nthreads; i++) {
        int rc = timeout_ms == WEB_WAIT_FOREVER
                     ? pthread_join(s->threads[i], NULL)
                     : pthread_timedjoin_np(s->threads[i], NULL, &end);
        if (rc == ETIMEDOUT) {
            /* libfcgi reads a request inside FCGX_Accept_r without a
             * timeout: a peer that stalls mid-record holds the thread.
             * Leave it; the drain must not wait for it. */
            s->stuck++;
            rc = pthread_detach(s->threads[i]);
            if (rc != 0)
                web_logf(s->log, WEB_LOG_ERROR, "detach_failed",
                         "thread=%u rc=%d", i, rc);
        } else if (rc != 0) {
            web_logf(s->log, WEB_LOG_ERROR, "join_failed", "thread=%u rc=%d",
                     i, rc);
        }
    }
    if (s->stuck > 0)
        web_logf(s->log, WEB_LOG_ERROR, "request_threads_stuck",
                 "threads=%u timeout_ms=%u", s->stuck, timeout_ms);
    s->nthreads = 0;
    return s->stuck;
}

void web_server_stop(web_server *s)
{
    web_server_stop_within(s, WEB_WAIT_FOREVER);
}

void web_server_free(web_server *s)
{
    if (s == NULL)
        return;
    web_server_stop(s);
    db_failed_flush(s);
    if (s->stuck > 0)
        return; /* a stuck thread still uses s: leak it, the process ends */
    if (s->listen_fd > 0)
        close(s->listen_fd);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    if (s->unix_path != NULL) {
        /* Unlink only our own socket, not a successor's at the same path,
         * and not one another process still accepts on. */
        struct stat st;
        if (!s->shared && stat(s->unix_path, &st) == 0 &&
            st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
            unlink(s->unix_path);
        free(s->unix_path);
    }
    /* Every request thread was joined: the server's is the last
     * reference. */
    if (s->gen != NULL)
        gen_release(s, s->gen);
    pthread_mutex_destroy(&s->gen_lock);
    pthread_mutex_destroy(&s->dbfail_mu);
    free(s->handlers);
    free(s->db_path);
    free(s);
}

void web_server_stats_get(web_server *s, web_server_stats *o)
{
    if (s == NULL || o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->accepted = atomic_load(&s->accepted);
    o->finished = atomic_load(&s->finished);
    o->status_2xx = atomic_load(&s->s2xx);
    o->status_3xx = atomic_load(&s->s3xx);
    o->status_4xx = atomic_load(&s->s4xx);
    o->status_5xx = atomic_load(&s->s5xx);
    o->rejected_503 = atomic_load(&s->rejected_503);
    o->unavail_503 = atomic_load(&s->unavail_503);
    o->journal_503 = atomic_load(&s->journal_503);
    o->client_gone = atomic_load(&s->client_gone);
    o->accept_errors = atomic_load(&s->accept_errors);
    o->bodies_parsed = atomic_load(&s->bodies_parsed);
    o->bodies_refused = atomic_load(&s->bodies_refused);
    o->missing_required = atomic_load(&s->missing_required);
    o->access_lines = web_access_log_written(s->access_log);
    o->access_dropped = web_access_log_dropped(s->access_log);
    o->threads = atomic_load(&s->running);
    o->started_unix = (int64_t)s->started_at;
    must_lock(s, &s->gen_lock);
    o->generation = s->gen->id;
    must_unlock(s, &s->gen_lock);
    o->generations_live = atomic_load(&s->gens_live);
}

const char *web_server_listen_name(const web_server *s)
{
    return s ? s->listen_name : "";
}

/* Used by status.c. */
defer_pool *web__srv_pool(const web_server *s) { return s->pool; }
