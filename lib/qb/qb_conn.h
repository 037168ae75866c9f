/*
 * qb_conn.h -- run qb queries: one connection type, two engines.
 *
 * A qb_conn is a connection to SQLite (a file path, or ":memory:") or to
 * PostgreSQL (a postgresql:// URI, or any libpq conninfo with
 * cfg.engine = QB_ENGINE_POSTGRES).  Every call below works on both; the
 * engine's own rules are noted where they differ (no last rowid and no
 * cursor on PostgreSQL; a COMMIT that fails ends a PostgreSQL
 * transaction).  Each engine is a driver behind a table of functions
 * (lib/qb/qb_drv.h); nothing here names an engine's library.
 *
 * Dialect: the dialect follows the connection.  A query rendered for the
 * other engine is converted for each call (qb_query_convert: builders'
 * default SQLite rendering runs on PostgreSQL as it is); one that does not
 * convert (SQLite-only text, or PostgreSQL's on SQLite) is refused with
 * QB_EDIALECT before anything runs.  Building with qb_conn_dialect(c)
 * (qb_select_dialect and friends) saves the conversion.
 *
 * Thread-safety: a qb_conn is used by one thread at a time; use one per
 * thread.  Results are independent of the connection (see below); a
 * cursor belongs to its connection and must be closed before it.
 *
 * Errors: every call returns a qb status (qb.h); QB_ECONN means the
 * connection is gone (PostgreSQL: server restart, network): qb_reset,
 * then retry.  qb_errmsg says what happened, qb_errcode gives SQLite's
 * extended result code and qb_sqlstate PostgreSQL's SQLSTATE of the last
 * failed call.
 *
 * Results are one type whichever engine produced them.
 *
 * A qb_result is a copy of the rows a statement returned: it owns every
 * byte and does not reference the connection, so it may outlive further
 * calls on it (free it before the connection closes by convention).
 * Thread-safety: a result is immutable once handed out; several threads
 * may read one concurrently.
 *
 * Cell types: SQLite's storage classes (QB_V_NULL, QB_V_INT, QB_V_REAL,
 * QB_V_TEXT, QB_V_BLOB); PostgreSQL's values are decoded by column type:
 * int2/int4/int8/oid -> INT, float4/float8 -> REAL, bool -> BOOL, bytea ->
 * BLOB (decoded), anything else (text, numeric, timestamp, json, uuid...)
 * -> TEXT, PostgreSQL's text form (numeric stays text so no digit is
 * lost; NaN and Infinity are kept in REAL).
 * Out-of-range rows/columns and unknown names read as NULL cells (type
 * QB_V_NULL, 0, 0.0, NULL pointer with *len = 0) -- never a crash.
 * Conversions: _int on REAL truncates (clamped to int64, NaN -> 0), on
 * BOOL gives 0/1, on TEXT parses a leading integer; _real likewise;
 * _text/_blob return the bytes of a TEXT or BLOB cell (TEXT is
 * NUL-terminated, BLOB pointers are non-NULL even when empty) and NULL for
 * any other type.
 */
#ifndef WAITUNTIL_QB_CONN_H
#define WAITUNTIL_QB_CONN_H

#include "qb.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sqlite3;  /* SQLite's connection */
struct pg_conn;  /* libpq's PGconn */

typedef struct qb_result qb_result;

QB_API size_t qb_result_rows(const qb_result *r);
QB_API size_t qb_result_cols(const qb_result *r);
/* Column name (as the engine reports it), NULL if col is out of range. */
QB_API const char *qb_result_colname(const qb_result *r, size_t col);
/* Index of the first column named name (exact match), or QB_EINVAL. */
QB_API int qb_result_colindex(const qb_result *r, const char *name);
/* PostgreSQL type OID of a column; 0 on SQLite or out of range. */
QB_API unsigned qb_result_coltype(const qb_result *r, size_t col);
/* Rows changed by the statement(s) (summed over a chain); 0 for plain
 * SELECTs.  The last rowid after it ran: SQLite only (0 on PostgreSQL:
 * use RETURNING). */
QB_API int64_t qb_result_changes(const qb_result *r);
QB_API int64_t qb_result_last_insert_rowid(const qb_result *r);

QB_API qb_vtype qb_result_type(const qb_result *r, size_t row, size_t col);
QB_API int qb_result_is_null(const qb_result *r, size_t row, size_t col);
QB_API int64_t qb_result_int(const qb_result *r, size_t row, size_t col);
QB_API double qb_result_real(const qb_result *r, size_t row, size_t col);
QB_API const char *qb_result_text(const qb_result *r, size_t row, size_t col,
                                  size_t *len);
QB_API const void *qb_result_blob(const qb_result *r, size_t row, size_t col,
                                  size_t *len);

/* The same accessors by column name (first column of that name). */
QB_API qb_vtype qb_result_type_by(const qb_result *r, size_t row,
                                  const char *name);
QB_API int qb_result_is_null_by(const qb_result *r, size_t row,
                                const char *name);
QB_API int64_t qb_result_int_by(const qb_result *r, size_t row,
                                const char *name);
QB_API double qb_result_real_by(const qb_result *r, size_t row,
                                const char *name);
QB_API const char *qb_result_text_by(const qb_result *r, size_t row,
                                     const char *name, size_t *len);
QB_API const void *qb_result_blob_by(const qb_result *r, size_t row,
                                     const char *name, size_t *len);

/* NULL is a no-op. */
QB_API void qb_result_free(qb_result *r);

/* A migration: workers-qb's {name, sql}; see qb_migrations_apply. */
typedef struct qb_migration {
    const char *name;
    const char *sql;
} qb_migration;

/* ---- logger and hooks ------------------------------------------------------
 * Called on the thread that runs the call, synchronously; they must not
 * call back into the connection.  The query passed is the one being
 * executed (for a count: a view of q whose sql is the count statement); it
 * is only valid during the callback.  Calls with a NULL connection or NULL
 * query are not observed.  When no callback is set the executor does not
 * even read the clock. */

/* Once per execution, success or error: duration_ns >= 0; rc is the
 * status the call returns; errmsg is the connection's message on error,
 * else NULL. */
typedef void (*qb_logger_fn)(void *ud, const qb_query *q, int64_t duration_ns,
                             int rc, const char *errmsg);

/* Before each execution.  Return 0 to proceed; any other value vetoes it:
 * nothing runs and the call returns QB_EINVAL ("vetoed by before hook"),
 * which is logged and passed to the after hook. */
typedef int (*qb_before_fn)(void *ud, const qb_query *q);

/* After each execution (after the logger): res is the result handed to the
 * caller (NULL if none or on error), valid only during the call. */
typedef void (*qb_after_fn)(void *ud, const qb_query *q, int rc,
                            const qb_result *res, int64_t duration_ns);

/* ==== connections ========================================================= */

typedef struct qb_conn qb_conn;

typedef enum qb_engine {
    QB_ENGINE_AUTO = 0,    /* from the target: postgresql:// or postgres://
                              is PostgreSQL, anything else a SQLite path */
    QB_ENGINE_SQLITE,
    QB_ENGINE_POSTGRES
} qb_engine;

typedef struct qb_conn_config {
    qb_engine engine;
    /* SQLite */
    const char *journal_mode;  /* "WAL" (default, also for NULL), "DELETE",
                                  "TRUNCATE", "PERSIST", "MEMORY", "OFF" */
    const char *synchronous;   /* "NORMAL" (default, also for NULL), "FULL",
                                  "EXTRA", "OFF" */
    int busy_timeout_ms;       /* default 5000 (cfg NULL); 0 = none */
    int readonly;              /* open read-only (journal mode untouched) */
    /* PostgreSQL */
    int connect_timeout_s;        /* 0 = default 10; at most 3600.  Also
                                     the session's tcp_user_timeout. */
    const char *application_name; /* NULL = "waituntil" */
    /* Both: prepared statements kept, keyed by SQL text (PostgreSQL: and
     * parameter types).  SQLite: 0 = default 64, at most 65536.
     * PostgreSQL: 0 (default) = none, every call is parsed, because
     * transaction-pooling proxies (PgBouncer) break named prepared
     * statements; at most 4096. */
    size_t stmt_cache_size;
} qb_conn_config;

/* Open a connection to target with cfg (NULL = defaults).
 * SQLite: the file is created if needed (":memory:" works); every
 * connection gets extended result codes and PRAGMA foreign_keys=ON; a
 * file database that does not accept the journal mode asked for (WAL on a
 * network filesystem) fails; mode names are checked (case-insensitive).
 * PostgreSQL: a libpq URI or conninfo ("" = libpq's environment); the
 * session uses client_encoding UTF8, notices are discarded, and unless
 * the conninfo sets them a TCP session gets keepalives (idle 10 s, every
 * 3 s, 3 probes) and tcp_user_timeout = connect_timeout_s, so a host that
 * vanishes is noticed in seconds.
 * On failure *out is NULL and the return is QB_ECONN (could not connect),
 * QB_ESQL, QB_ENOMEM or QB_EINVAL (also: an engine this build lacks); a
 * message is written to errbuf if given.  Thread-safe. */
QB_API int qb_open(qb_conn **out, const char *target,
                   const qb_conn_config *cfg, char *errbuf,
                   size_t errbuf_len);

/* 1 if this build has a driver for e (PostgreSQL: configure found libpq),
 * else 0.  Thread-safe. */
QB_API int qb_engine_available(qb_engine e);

/* Close (finalizing cached statements).  NULL is a no-op. */
QB_API void qb_close(qb_conn *c);

QB_API qb_engine qb_conn_engine(const qb_conn *c);
/* The dialect queries for c must be rendered in (QB_DIALECT_SQLITE for
 * NULL). */
QB_API qb_dialect qb_conn_dialect(const qb_conn *c);

/* The engine's own handle, owned by c: a sqlite3 * (progress handlers,
 * interrupts, pragmas) or a libpq PGconn * (PQcancel, settings); NULL
 * when c is of the other engine. */
QB_API struct sqlite3 *qb_conn_sqlite(qb_conn *c);
QB_API struct pg_conn *qb_conn_pg(qb_conn *c);
/* The socket of a client/server connection (PostgreSQL), -1 for SQLite or
 * while disconnected.  It stays libpq's: duplicate it (F_DUPFD_CLOEXEC)
 * to shutdown(2) a session from another thread. */
QB_API int qb_conn_socket(qb_conn *c);

/* The last failed call on c: message ("" if none), SQLite extended
 * result code (0 on PostgreSQL), SQLSTATE ("" on SQLite or when the
 * server sent none).  c == NULL: a non-empty message, 0, "". */
QB_API const char *qb_errmsg(const qb_conn *c);
QB_API int qb_errcode(const qb_conn *c);
QB_API const char *qb_sqlstate(const qb_conn *c);

/* Reconnect (PostgreSQL, after QB_ECONN or any time: an open transaction
 * is lost, the statement cache emptied).  qb_reset_until bounds it:
 * given up (QB_ECONN, "timed out" or "stopped" in qb_errmsg) once
 * timeout_ms (> 0) or the connect timeout has passed, or when stop(arg)
 * (may be NULL; polled at least every 100 ms) returns non-zero.  Host
 * name lookup is libpq's and blocking: give hostaddr where that matters.
 * SQLite: nothing to do, QB_OK.  QB_EINVAL on NULL. */
QB_API int qb_reset(qb_conn *c);
QB_API int qb_reset_until(qb_conn *c, int timeout_ms,
                          int (*stop)(void *arg), void *arg);
/* 1 if the connection is up as far as the engine knows (PostgreSQL learns
 * of a loss only when a call fails; SQLite is always up), else 0. */
QB_API int qb_connected(const qb_conn *c);
/* 1 while a transaction is open on c (also an aborted one), else 0. */
QB_API int qb_in_transaction(const qb_conn *c);

/* ---- running queries -------------------------------------------------------
 * qb_exec runs q (every link of a chain, inside one transaction unless one
 * is already open: then a savepoint).  If out is non-NULL, on success *out
 * receives the rows per q's fetch type (ALL: every row, ONE: at most the
 * first, NONE: none; a chain's rows are concatenated) and the changes
 * count; on error *out is NULL.  params[i] binds to ?i+1 ($i+1); a
 * statement whose highest placeholder is not q's nparams is refused
 * (QB_EINVAL), as is SQL holding more than one statement (use qb_batch or
 * migrations).  Returns QB_OK, QB_EBUSY (SQLITE_BUSY/LOCKED; PostgreSQL
 * 40001, 40P01, 55P03: nothing was committed by this call, retry),
 * QB_EINTERRUPT (time budget, 57014), QB_ECONSTRAINT (class 23),
 * QB_ECONN, QB_ESQL, QB_ENOMEM, QB_EINVAL.  After an error the connection
 * is usable: a transaction this call opened is rolled back; one the
 * caller opened stays open (on PostgreSQL it is then aborted: roll it
 * back, or back to a savepoint).  The logger and hooks run once per call,
 * errors included. */
QB_API int qb_exec(qb_conn *c, const qb_query *q, qb_result **out);

/* Run q's count statement (q->count_sql, built for SELECTs) with q's
 * params; *total receives its first column.  QB_EINVAL if q has none;
 * otherwise as qb_exec.  Logged once. */
QB_API int qb_count(qb_conn *c, const qb_query *q, int64_t *total);

typedef struct qb_pagination {
    int64_t page, per_page;
    int64_t total;        /* rows matching, from the count statement */
    int64_t total_pages;  /* ceil(total / per_page) */
    int has_next;         /* page < total_pages */
    int has_prev;         /* page > 1 */
} qb_pagination;

/* q is the data statement of a page (the builder renders LIMIT per_page
 * OFFSET (page-1)*per_page and its count statement); page and per_page
 * must be >= 1 (else QB_ECONFIG, nothing runs).  Runs the count then the
 * rows inside one savepoint (SQLite), so both see the same snapshot.
 * *out receives the rows (FETCH_ALL whatever q says) and *info the
 * numbers; on error *out is NULL.  Logged twice.  SQLite only for now
 * (QB_EDIALECT on PostgreSQL). */
QB_API int qb_paginate(qb_conn *c, const qb_query *q, int64_t page,
                       int64_t per_page, qb_result **out,
                       qb_pagination *info);

/* Run q (the builder's explain(): "EXPLAIN QUERY PLAN ...", SQLite's
 * syntax) and return every row whatever q's fetch type says.  SQLite
 * only (QB_EDIALECT on PostgreSQL). */
QB_API int qb_explain(qb_conn *c, const qb_query *q, qb_result **out);

/* Run qs[0..n) in order, all or nothing: BEGIN/COMMIT (SQLite: BEGIN
 * IMMEDIATE), or a savepoint when a transaction is already open.  If
 * results is non-NULL it has n slots, each receiving that query's rows as
 * qb_exec would.  On error every slot is NULL, nothing of the batch
 * remains, *failed_at (if non-NULL) is the failing index (n if the COMMIT
 * failed) and the message names it.  Logged once per query executed.
 * n == 0 is QB_OK; NULL qs or element: QB_EINVAL before running. */
QB_API int qb_batch(qb_conn *c, const qb_query *const *qs, size_t n,
                    qb_result **results, size_t *failed_at);

/* Run qs[0..n) in order inside the transaction the caller opened, rows
 * discarded.  PostgreSQL sends them as one pipeline (one round trip) and
 * stops at the first error, which leaves the transaction aborted; SQLite
 * runs them one by one.  *failed_at (if non-NULL) is the failing index.
 * Outside a transaction: QB_EMISUSE.  Logged once per query. */
QB_API int qb_pipeline(qb_conn *c, const qb_query *const *qs, size_t n,
                       size_t *failed_at);

/* Transactions.  qb_begin is BEGIN IMMEDIATE on SQLite, a plain BEGIN on
 * PostgreSQL.  Savepoint names must be plain identifiers.  QB_OK /
 * QB_EBUSY / QB_ECONN / QB_ESQL / QB_EINVAL.  A COMMIT that returns
 * QB_EBUSY on SQLite leaves the transaction open (retry or roll back); a
 * failed COMMIT on PostgreSQL has ended it, and a COMMIT of an aborted
 * one is QB_ESQL (25P02).  Not queries: the logger and hooks do not run. */
QB_API int qb_begin(qb_conn *c);
QB_API int qb_commit(qb_conn *c);
QB_API int qb_rollback(qb_conn *c);
QB_API int qb_savepoint(qb_conn *c, const char *name);
QB_API int qb_release(qb_conn *c, const char *name);
QB_API int qb_rollback_to(qb_conn *c, const char *name); /* and release */

/* Rows changed by the last INSERT/UPDATE/DELETE and the last rowid
 * (SQLite; 0 on PostgreSQL: use qb_result_changes and RETURNING). */
QB_API int64_t qb_changes(const qb_conn *c);
QB_API int64_t qb_last_insert_rowid(const qb_conn *c);

/* ---- statement cache ---------------------------------------------------- */

typedef struct qb_cache_stats {
    uint64_t hits;       /* statement found ready in the cache */
    uint64_t misses;     /* had to prepare (then cached) */
    uint64_t evictions;  /* least recently used idle statement dropped */
    uint64_t transient;  /* SQLite: prepared outside the cache (same SQL in
                            use by a cursor, or every slot busy) */
    uint64_t replans;    /* PostgreSQL: prepared again after the server
                            refused a stale one (0A000, 26000) */
    size_t size;         /* statements cached now */
    size_t capacity;
} qb_cache_stats;

/* Counters of c's statement cache.  NULL arguments are ignored. */
QB_API void qb_conn_cache_stats(const qb_conn *c, qb_cache_stats *out);

/* ---- cursor (SQLite) -------------------------------------------------------
 * Step a single statement (not a chain) row by row without materialising.
 * The cursor holds one statement of c's cache: the same SQL run again while
 * it is open gets its own, uncached statement.  Other calls on c may run
 * between rows; a write made meanwhile to the table being read may or may
 * not be seen (SQLite's rule for a single connection).  Column accessors
 * read the current row with SQLite's conversions; the pointers they return
 * stay valid until the next qb_cursor_next/close.  The logger, the before
 * hook (at open) and the after hook run once per cursor: when it reaches
 * QB_EDONE or an error, or at close if abandoned.  On PostgreSQL
 * qb_cursor_open is QB_EDIALECT (use LIMIT/OFFSET or keyset pages). */
typedef struct qb_cursor qb_cursor;

/* Prepare q and bind its params; q must stay alive and unchanged until
 * qb_cursor_close.  QB_OK, QB_EINVAL (NULL argument, chain, wrong param
 * count, vetoed), QB_ESQL, QB_EBUSY, QB_ENOMEM, QB_EDIALECT; on error
 * *out is NULL. */
QB_API int qb_cursor_open(qb_conn *c, const qb_query *q, qb_cursor **out);
/* Advance: QB_OK (a row is current), QB_EDONE (finished; sticky), or an
 * error code as for qb_exec (also sticky, message on the connection). */
QB_API int qb_cursor_next(qb_cursor *cur);
QB_API size_t qb_cursor_cols(const qb_cursor *cur);
QB_API const char *qb_cursor_colname(const qb_cursor *cur, size_t col);
QB_API int qb_cursor_colindex(const qb_cursor *cur, const char *name);
/* Accessors return NULL-cell values when no row is current. */
QB_API qb_vtype qb_cursor_type(const qb_cursor *cur, size_t col);
QB_API int qb_cursor_is_null(const qb_cursor *cur, size_t col);
QB_API int64_t qb_cursor_int(const qb_cursor *cur, size_t col);
QB_API double qb_cursor_real(const qb_cursor *cur, size_t col);
QB_API const char *qb_cursor_text(const qb_cursor *cur, size_t col,
                                  size_t *len);
QB_API const void *qb_cursor_blob(const qb_cursor *cur, size_t col,
                                  size_t *len);
/* Return the statement to the cache.  NULL is a no-op. */
QB_API void qb_cursor_close(qb_cursor *cur);

/* ---- migrations ------------------------------------------------------------
 * workers-qb's migrations, made transactional.  table is the tracking
 * table (NULL = "migrations"; else a plain identifier), created on first
 * use with workers-qb's schema for the engine (id INTEGER PRIMARY KEY
 * AUTOINCREMENT / SERIAL PRIMARY KEY, name TEXT UNIQUE, applied_at
 * TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL).  Each unapplied migration
 * runs in its own transaction that also records its name (bound); on
 * PostgreSQL the table is locked first so concurrent appliers queue.  A
 * migration's sql may hold several statements; it must not end the
 * transaction itself (QB_EINVAL; whatever it committed stays).  Nothing is
 * bound to it: a placeholder left in it (SQLite: ?, ?N, :x, @x, $x;
 * PostgreSQL: a $N the server finds unbound, 42P02) is refused as
 * qb_exec refuses a count mismatch, "migration '<name>': statement K at
 * line L (<statement>): parameter count mismatch: ...", and the migration
 * is rolled back.  Not inside an open transaction (QB_EMISUSE). */

/* Applied migrations as rows (id, name, applied_at) ordered by id. */
QB_API int qb_migrations_applied(qb_conn *c, const char *table,
                                 qb_result **out);
/* Indices (into list) of the migrations not applied yet, in list order.
 * idx must have room for n entries; *nidx receives how many. */
QB_API int qb_migrations_unapplied(qb_conn *c, const char *table,
                                   const qb_migration *list, size_t n,
                                   size_t *idx, size_t *nidx);
/* Apply every unapplied migration in list order.  On the first failure
 * that migration is rolled back, nothing after it runs, *failed_at (if
 * non-NULL) is its index and the message is "migration '<name>': <the
 * engine's message>".  *applied (if non-NULL) counts the migrations
 * committed by this call.  One applied meanwhile by another connection is
 * skipped.  Logged once per migration attempted (the query logged is its
 * sql with its name as the one param), plus the setup and listing. */
QB_API int qb_migrations_apply(qb_conn *c, const char *table,
                               const qb_migration *list, size_t n,
                               size_t *applied, size_t *failed_at);

/* Install (or, with NULL, remove) the callbacks below.  No-op on NULL c. */
QB_API void qb_set_logger(qb_conn *c, qb_logger_fn fn, void *ud);
QB_API void qb_set_hooks(qb_conn *c, qb_before_fn before, qb_after_fn after,
                         void *ud);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_QB_CONN_H */
