/*
 * web_server.h -- the FastCGI side of lib/web: the log, the accept loop
 * with its request threads, the handler API, declarative routes and the
 * status route.  Builds on web.h (request, router, conf) and lib/defer.
 *
 * A request's way through (DESIGN.md):
 *   FCGX_Accept_r -> params copied (web_request_begin, into the thread's
 *   arena) -> route -> body read to its end, bounded by the route's
 *   max_body, kept only if the route can read body fields -> the route's
 *   "require" values (400 if one is missing) -> handler or
 *   declarative action (the response is buffered, deferred work
 *   registered; a body field read parses the body, once) -> defer_admit
 *   (503 if the queue is full or the database failing) -> response
 *   written -> FCGX_Finish_r -> defer_submit -> arena reset.  Nothing owned by libfcgi is touched
 *   after FCGX_Finish_r.
 *
 * Conventions as in web.h: WEB_OK / WEB_E* codes, create/free pairs.
 */
#ifndef WAITUNTIL_WEB_SERVER_H
#define WAITUNTIL_WEB_SERVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "defer.h"
#include "web.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== the log ============================================================ */

/*
 * One line per event: "ts=2026-11-28T01:02:03.456Z level=info event=NAME
 * key=value ...".  Values with spaces, quotes, '=' or control bytes are
 * quoted by web_log_q.  Lines are written with a single write(2) (atomic
 * for pipes and O_APPEND files up to PIPE_BUF), so any thread may log.
 */
typedef struct web_log web_log;

/* Open a log on "stderr" or a file path (O_APPEND, created 0640).  Lines
 * below level are dropped.  WEB_OK, WEB_EIO (errbuf says why), WEB_ENOMEM. */
WEB_API int web_log_open(web_log **out, const char *target,
                         web_log_level level, char *errbuf, size_t errlen);
/* Close (never closes stderr).  NULL: no-op. */
WEB_API void web_log_close(web_log *log);
/* Reopen the file (after rotation; SIGHUP).  Thread-safe.  On failure the
 * old descriptor stays in use and WEB_EIO is returned. */
WEB_API int web_log_reopen(web_log *log);
WEB_API int web_log_enabled(const web_log *log, web_log_level level);
/* Log event with printf-style key=value text after it.  NULL log: stderr;
 * NULL event: no event key (the text brings its own). */
WEB_API void web_logf(web_log *log, web_log_level level, const char *event,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Quote s for a key=value line into buf (truncated with "..." to fit);
 * returns buf.  s NULL gives "-". */
WEB_API const char *web_log_q(char *buf, size_t buflen, const char *s);
/* Lines that could not be written (the write failed or was cut short:
 * disk full, EIO) since the log was opened.  When writing works again,
 * a line "event=log_dropped count=N" first says how many were lost.
 * Thread-safe; NULL: the count of lines meant for stderr without a log. */
WEB_API uint64_t web_log_dropped(const web_log *log);
/* A defer_log_fn that writes the pool's lines to the web_log in ud. */
WEB_API void web_log_defer_sink(void *ud, int level, const char *line);

/* ==== the access log ===================================================== */

/*
 * One logfmt line per request (conf: server { access_log PATH|stderr; }):
 *   ts=2026-12-04T09:30:00.123Z event=access method=POST
 *   uri="/log?page=%2Fhome" status=204 bytes=0 duration_ms=0.412 writes=1
 *   request_id=0c2f...
 * ts: when the line was made (the response had been written); uri:
 * REQUEST_URI as nginx sent it (quoted and escaped when it holds a space,
 * '"', '=', '\\' or a byte outside printable ASCII, each such byte as
 * \xNN; cut with "..." past WEB_ACCESS_URI_MAX bytes); status: the status
 * actually sent; bytes: response body bytes (0 for HEAD, 204, 304);
 * duration_ms: milliseconds (3 decimals) from accepting the request to
 * its response flushed to nginx, FCGX_Finish_r excluded; writes: the
 * request's deferred tasks admitted to the pool (0 when refused: 503),
 * and writes_inline=N when the policy ran them in the request thread;
 * request_id: nginx's $request_id (or the id web_request made), "-" for
 * a request too broken to have one.  With redact_query the query string
 * is replaced by "?(redacted len=N)".
 *
 * Threads: any request thread writes without a lock (one write(2) per
 * line, O_APPEND); reopen from one thread at a time, concurrently with
 * the writers.  A write that fails is counted, never retried or waited
 * for (DESIGN in access.c).
 */
typedef struct web_access_log web_access_log;

#define WEB_ACCESS_LINE_MAX 4096  /* one line, newline included */
#define WEB_ACCESS_URI_MAX 2048   /* the uri value's bytes, escaped */

typedef struct web_access_rec {
    struct timespec time;        /* the line's ts (CLOCK_REALTIME) */
    const char *method;          /* NULL: "-" */
    const char *uri;             /* NULL: "-" */
    const char *request_id;      /* NULL or "": "-" */
    int status;
    uint64_t bytes;
    int64_t duration_ns;
    size_t writes;               /* admitted */
    size_t writes_inline;        /* run inline (policy inline) */
} web_access_rec;

/* Open target ("stderr" or a file path, O_APPEND, created 0640); log
 * (borrowed, may be NULL) gets one line when writing starts failing and
 * one when it works again.  WEB_OK, WEB_EIO (errbuf says why),
 * WEB_ENOMEM, WEB_EINVAL. */
WEB_API int web_access_log_open(web_access_log **out, const char *target,
                                web_log *log, char *errbuf, size_t errlen);
/* NULL: no-op.  No writer may be running. */
WEB_API void web_access_log_close(web_access_log *al);
/* Open the path again and put it in place of the old file without
 * disturbing writers (after logrotate; SIGHUP/SIGUSR1).  WEB_OK (also
 * for stderr), or WEB_EIO with the old file still in use. */
WEB_API int web_access_log_reopen(web_access_log *al);
/* Format r as one line, newline included, into buf (len at least
 * WEB_ACCESS_LINE_MAX; else "" and 0).  Returns the length. */
WEB_API size_t web_access_format(char *buf, size_t len,
                                 const web_access_rec *r, int redact_query);
/* Write a line (web_access_format's) / format and write r.  NULL al:
 * nothing.  Never blocks on a lock; failures are counted. */
WEB_API void web_access_log_line(web_access_log *al, const char *line,
                                 size_t len);
WEB_API void web_access_log_write(web_access_log *al,
                                  const web_access_rec *r, int redact_query);
/* Lines written whole / lines lost (write failed or cut short). */
WEB_API uint64_t web_access_log_written(const web_access_log *al);
WEB_API uint64_t web_access_log_dropped(const web_access_log *al);

/* ==== handlers =========================================================== */

typedef struct web_server web_server;
typedef struct web_call web_call;

/*
 * A C handler: called on a request thread with the request copied out.
 * It sets the response with web_respond() (default: 204 with no body if it
 * never does) and may register deferred work on web_call_defer().  Return
 * WEB_OK, or an error code: the server then answers web_http_status(rc)
 * and discards the registered work.  Must not block for long: it holds one
 * of the server's request threads.
 */
typedef int (*web_handler_fn)(web_call *call, void *ud);

typedef struct web_handler_def {
    const char *name;   /* what `handler NAME;` in the conf refers to */
    web_handler_fn fn;
    void *ud;
} web_handler_def;

WEB_API const web_request *web_call_request(const web_call *call);
WEB_API const web_match *web_call_match(const web_call *call);
WEB_API const web_route_conf *web_call_route(const web_call *call);
WEB_API web_arena *web_call_arena(web_call *call);
/* The request's deferred-work context (register with defer_wait_until*).
 * Label tasks with web_call_label(). */
WEB_API defer_ctx *web_call_defer(web_call *call);
WEB_API const char *web_call_label(const web_call *call);
WEB_API web_server *web_call_server(web_call *call);
/* The server's log (for handlers that want to log). */
WEB_API web_log *web_call_log(web_call *call);
/* The dialect SQL tasks registered on this call must be built in: the
 * pool's (defer_pool_dialect), QB_DIALECT_POSTGRES on a PostgreSQL pool.
 * Build queries with qb_*_dialect(..., web_call_dialect(call)).  A NULL
 * call gives QB_DIALECT_SQLITE. */
WEB_API qb_dialect web_call_dialect(const web_call *call);

/*
 * The request thread's own connection to the server's database
 * (web_server_config.db_path), for what a handler must do before it
 * answers: a read (SELECT the user the route names), or a write the
 * client must wait for.  Writes that can wait belong in the pool
 * (waituntil_defer_sql, defer_wait_until_query): they are group-committed
 * and never hold the request thread.  Opened on the thread's first call,
 * kept for the thread's life (one per request thread: at most
 * server.threads), closed when the thread ends; a PostgreSQL session
 * that was lost (a call on it returned QB_ECONN) is reconnected by the
 * next web_call_db.  Returns NULL when the server has no database or
 * the open or reconnect failed (logged as request_db_failed, folded to
 * about one line a second: a summary line says repeated=N, the last
 * burst's at the next failure or at the server's stop; the next call
 * tries again): answer WEB_EIO.  Use
 * it from this call only, never from a deferred task, and leave no
 * transaction open when the handler returns.  Unlike the pool's
 * connections it is not watched for a lost database file.
 */
WEB_API qb_conn *web_call_db(web_call *call);

/* Set the response.  content_type NULL = "text/plain; charset=utf-8".
 * body is copied into the request's arena.  WEB_OK, WEB_EINVAL (status
 * outside 100..599), WEB_ETOOBIG/WEB_ENOMEM. */
WEB_API int web_respond(web_call *call, int status, const char *content_type,
                        const void *body, size_t len);
/* Add a response header (copied; name must be a token, value printable,
 * no CR/LF).  At most 16.  WEB_OK, WEB_EINVAL, WEB_EFULL. */
WEB_API int web_add_header(web_call *call, const char *name,
                           const char *value);

/*
 * Register the declarative deferred queries of a route (its `defer`
 * blocks) on the call's defer context: each query runs only when its
 * `if` sources are present; values come from web_source_eval and are
 * always bound.  Returns WEB_OK, WEB_EUTF8 (answer 400), WEB_ENOMEM,
 * WEB_EINVAL (builder refused: a bug in conf validation), or
 * WEB_ETOOMANY (the per-request task bound).
 */
WEB_API int web_call_register_defers(web_call *call,
                                     const web_route_conf *route);

/*
 * Build the qb query of one `defer` block from evaluated values: cols[i]
 * for d->cols[i], sets[i] for d->sets[i], wheres[i] for d->wheres[i]
 * (ABSENT and NULL bind as NULL; RAW is inlined conf text), rendered in
 * dialect (the pool's: defer_pool_dialect).  The templates below are
 * built with it; requests and `waituntil -t` use the templates.  Returns
 * a QB_* code (QB_EDIALECT for a construct the dialect lacks); *out
 * owned by the caller (qb_query_free); errbuf gets the builder's message
 * on error.
 */
WEB_API int web_defer_build(const web_defer *d, qb_dialect dialect,
                            const web_value *cols, const web_value *sets,
                            const web_value *wheres, qb_query **out,
                            char *errbuf, size_t errlen);

/*
 * A defer block's statement built once (web_defer_build with marker
 * values), so that a request only evaluates and binds its values; the
 * queries made from it keep its dialect.  The server makes one per defer
 * block at create time, in its pool's dialect.  QB_* codes.
 */
typedef struct web_defer_tpl web_defer_tpl;
WEB_API int web_defer_tpl_create(const web_defer *d, qb_dialect dialect,
                                 web_defer_tpl **out, char *errbuf,
                                 size_t errlen);
WEB_API void web_defer_tpl_free(web_defer_tpl *t);
WEB_API const char *web_defer_tpl_sql(const web_defer_tpl *t);
/* The template's query (marker values bound; its dialect and parameter
 * count are those of every query made from it).  Owned by t. */
WEB_API const qb_query *web_defer_tpl_query(const web_defer_tpl *t);
/* The template of the k-th defer block of the call's route, or NULL. */
WEB_API const web_defer_tpl *web_call_defer_tpl(const web_call *call,
                                                size_t k);

/* ==== the server ========================================================= */

typedef struct web_server_config {
    const web_conf *conf;        /* borrowed; outlives the server */
    defer_pool *pool;            /* borrowed; outlives the server */
    const web_handler_def *handlers; /* copied */
    size_t nhandlers;
    web_log *log;                /* borrowed; NULL = stderr */
    const char *listen;          /* overrides conf->server.listen if set */
    web_access_log *access_log;  /* borrowed; NULL: no access log */
    /* The database web_call_db opens for handlers (NULL: none): a path or
     * a postgresql:// URI (copied) and its settings (copied; the strings
     * in it borrowed, outliving the server; NULL: qb_open's defaults). */
    const char *db_path;
    const qb_conn_config *db_cfg;
} web_server_config;

typedef struct web_server_stats {
    uint64_t accepted;       /* requests accepted from nginx */
    uint64_t finished;       /* ... answered and finished */
    uint64_t status_2xx, status_3xx, status_4xx, status_5xx;
    uint64_t rejected_503;   /* answered 503 because the queue was full
                                (DEFER_EFULL) or the pool was stopping
                                (DEFER_ESHUTDOWN) */
    uint64_t unavail_503;    /* answered 503 because the database was
                                failing or lost (DEFER_EUNAVAIL) */
    uint64_t journal_503;    /* answered 503 because the journal append
                                failed (DEFER_EJOURNAL: disk full, I/O) */
    uint64_t client_gone;    /* the write to nginx failed (client left) */
    uint64_t accept_errors;  /* FCGX_Accept_r failures (EMFILE...) */
    uint64_t bodies_parsed;  /* form/JSON bodies parsed (only routes that
                                read a body field ever parse one) */
    uint64_t bodies_refused; /* ... refused by the parser or its bounds */
    uint64_t missing_required; /* 400: a "require" value was missing */
    uint64_t access_lines;   /* access log lines written whole */
    uint64_t access_dropped; /* ... lost (write failed or cut short) */
    unsigned threads;        /* request threads running */
    int64_t started_unix;    /* when the server started */
    uint64_t generation;     /* the conf generation new requests get: 1
                                at start, +1 per successful reload */
    unsigned generations_live; /* generations not freed yet: the current
                                one, plus older ones that requests
                                accepted before a reload still use */
} web_server_stats;

/*
 * Validate the routes against the handlers (every `handler NAME` must be
 * registered), build the router and open the listen socket:
 *   unix:PATH   a unix socket with conf mode (default 0660); a stale
 *               socket file is replaced, a live one (another instance
 *               answering) is an error;
 *   HOST:PORT   TCP on a numeric address (127.0.0.1:9000, [::1]:9000);
 *   stdin       the listening socket inherited on fd 0 (spawn-fcgi);
 *   fd:N        a listening socket inherited on descriptor N (a binary
 *               upgrade's WAITUNTIL_LISTEN_FD, systemd's LISTEN_FDS):
 *               named after its address; a unix socket's file is
 *               unlinked at free like one the server made, unless
 *               web_server_set_shared.
 * The socket is made non-blocking (threads poll it).
 * Calls FCGX_Init (process-wide, idempotent): create servers before
 * starting any thread.  WEB_OK, WEB_ECONF / WEB_EIO (errbuf says why),
 * WEB_ENOMEM.
 */
WEB_API int web_server_create(web_server **out, const web_server_config *cfg,
                              char *errbuf, size_t errlen);

/* listen value for a server that never listens (WEB_LISTEN_NONE): it
 * only answers requests handed to it in memory (the test kit,
 * <waituntil/test.h>); web_server_start refuses it. */
#define WEB_LISTEN_NONE "none"

/* Start conf->server.threads request threads (all signals blocked in
 * them).  WEB_OK or WEB_EIO (pthread_create failed; started threads are
 * stopped again). */
WEB_API int web_server_start(web_server *srv);

/* Stop accepting, let in-flight requests finish, join the threads.  Safe
 * to call from any thread but a request thread; idempotent. */
WEB_API void web_server_stop(web_server *srv);

/* The same, but wait at most timeout_ms for the threads (WEB_WAIT_FOREVER:
 * no bound).  A thread still busy then (a peer stalled mid-request inside
 * libfcgi) is detached and logged; returns how many.  If any, the server
 * is left allocated by web_server_free (the thread may still use it). */
#define WEB_WAIT_FOREVER 0xffffffffu
WEB_API unsigned web_server_stop_within(web_server *srv, unsigned timeout_ms);

/* Stop if running, close the socket (unlinking a unix socket only if it is
 * still the one we created), free.  NULL: no-op. */
WEB_API void web_server_free(web_server *srv);

/* Counters snapshot.  Thread-safe. */
WEB_API void web_server_stats_get(web_server *srv, web_server_stats *out);

/* Where the server listens ("unix:/path", "127.0.0.1:9000", "stdin"). */
WEB_API const char *web_server_listen_name(const web_server *srv);

/* The listening socket (to hand it to a successor process), or -1. */
WEB_API int web_server_listen_fd(const web_server *srv);

/*
 * Reload: new requests get conf's routes, templates and request limits
 * (a new "generation"); requests already accepted finish on the
 * generation they started with, which is freed when the last of them
 * ends.  Takes conf on every path (freed with its generation, or at
 * once on failure).  conf is checked the way web_server_create checks
 * the first one: every `handler` registered, defer blocks within the
 * running pool's tasks_per_request, every route's max_body within the
 * running server's, every deferred statement built in the pool's
 * dialect; on failure the running generation stays and errbuf says why
 * ("FILE:LINE: ...").  Settings fixed at create (listen, socket_mode,
 * threads, server.max_body, everything of the pool and the database)
 * are not read from conf: compare them yourself to tell the operator.
 * *generation (if not NULL) gets the new generation's number.  Call
 * from one thread at a time, not from a request thread.  WEB_OK,
 * WEB_ECONF, WEB_ENOMEM, WEB_EINVAL.
 */
WEB_API int web_server_reload(web_server *srv, web_conf *conf,
                              uint64_t *generation, char *errbuf,
                              size_t errlen);

/*
 * Say that the listening socket is shared with another process that goes
 * on accepting on it (the successor of a binary upgrade; systemd, which
 * keeps a socket it passed between starts).  A stop then neither shuts
 * the socket down (that would stop the other process too) nor answers
 * the connections still queued on it (the other process will), and
 * web_server_free never unlinks its file.  Call before the stop, from
 * the thread that stops the server.
 */
WEB_API void web_server_set_shared(web_server *srv, int shared);

/* What the status handler says about the program (its ud).  Both
 * strings are borrowed (static, or outliving the server); NULL fields
 * and a NULL ud read "unknown". */
typedef struct web_status_info {
    const char *version; /* the program's version (PACKAGE_VERSION) */
    const char *sqlite;  /* the SQLite library run with (sqlite3_version) */
} web_status_info;

/*
 * The status handler (register it as "status", ud a const
 * web_status_info * or NULL): the server's and the pool's counters as
 * JSON, or in Prometheus text format (0.0.4) with ?format=prometheus.
 * Both give the version, the SQLite library, the database engine
 * ("engine":"sqlite" or "postgresql"; waituntil_build_info{version=...,
 * sqlite=...,engine=...} 1), the start time and every counter; README.md
 * ("Status and metrics") lists each JSON key with its Prometheus name.
 * WEB_ENOMEM if the text does not fit its 32 KiB buffer.
 */
WEB_API int web_handler_status(web_call *call, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_WEB_SERVER_H */
