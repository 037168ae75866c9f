/*
 * qb_sqlite.h -- run qb queries on SQLite.
 *
 * A qb_db wraps one sqlite3 connection plus a prepared-statement cache keyed
 * by SQL text, the logger and the before/after hooks.
 *
 * Thread-safety: a qb_db is used by one thread at a time (SQLite's
 * "multi-thread" mode); use one qb_db per thread.  Results and cursors
 * belong to the qb_db they came from and must be freed before it closes.
 */
#ifndef WAITUNTIL_QB_SQLITE_H
#define WAITUNTIL_QB_SQLITE_H

#include "qb.h"
#include "qb_conn.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sqlite3;

typedef struct qb_db qb_db;

typedef struct qb_db_config {
    const char *journal_mode;  /* "WAL" (default, also for NULL), "DELETE",
                                  "TRUNCATE", "PERSIST", "MEMORY", "OFF" */
    const char *synchronous;   /* "NORMAL" (default, also for NULL), "FULL",
                                  "EXTRA", "OFF" */
    int busy_timeout_ms;       /* default 5000 (cfg NULL); 0 = none */
    int readonly;              /* open read-only (journal mode untouched) */
    size_t stmt_cache_size;    /* prepared statements kept; 0 = default 64;
                                  at most 65536 */
} qb_db_config;

/* Open (creating if needed) the database at path (":memory:" works) and
 * apply cfg (NULL = defaults).  Every connection also gets extended result
 * codes and PRAGMA foreign_keys=ON; a file database that does not accept
 * the journal mode asked for (e.g. WAL on a network filesystem) fails.
 * Mode names are checked against the lists above (case-insensitive).
 * On failure *out is NULL and the return is QB_ESQL/QB_ENOMEM/QB_EINVAL;
 * a message is written to errbuf if given.  Thread-safe (no shared state). */
QB_API int qb_db_open(qb_db **out, const char *path, const qb_db_config *cfg,
                      char *errbuf, size_t errbuf_len);

/* Finalize cached statements and close. NULL is a no-op. */
QB_API void qb_db_close(qb_db *db);

/* The underlying connection (for progress handlers, interrupts, pragmas).
 * Owned by db. */
QB_API struct sqlite3 *qb_db_sqlite(qb_db *db);

/* Message and SQLite extended result code of the last failed call on db. */
QB_API const char *qb_db_errmsg(const qb_db *db);
QB_API int qb_db_errcode(const qb_db *db);

/*
 * Execute q (every link of a chain, inside one transaction unless one is
 * already open: then a savepoint).  If out is non-NULL, on success *out
 * receives a qb_result (free with qb_result_free): the rows per q's fetch
 * type (ALL: every row, ONE: at most the first, NONE: none; rows of a
 * chain are concatenated) plus the changes count; on error *out is NULL.
 * With out NULL rows are discarded and nothing is allocated.
 * A statement is always run to completion, except a read-only statement
 * fetched with ONE, which stops after its first row.
 * params[i] binds to ?i+1; a statement whose highest placeholder index is
 * not q's nparams is refused (QB_EINVAL), as is SQL holding more than one
 * statement (use qb_batch, or migrations for scripts).
 * Returns QB_OK, QB_EBUSY (SQLITE_BUSY/LOCKED: nothing was committed by this
 * call), QB_EINTERRUPT, QB_ECONSTRAINT, QB_ESQL, QB_ENOMEM, QB_EINVAL,
 * QB_EDIALECT (q rendered for another dialect).  After any error the
 * connection is usable: the statement is reset and a transaction this call
 * opened is rolled back (one the caller opened stays open, unless SQLite
 * itself ended it, as it does on interrupt).
 * The logger and hooks run once per call (a chain is one execution), on
 * every path, errors included.
 */
QB_API int qb_exec(qb_db *db, const qb_query *q, qb_result **out);

/* Transactions.  qb_begin uses BEGIN IMMEDIATE.  Savepoint names must be
 * plain identifiers.  All return QB_OK / QB_EBUSY / QB_ESQL / QB_EINVAL.
 * A COMMIT that returns QB_EBUSY leaves the transaction open: retry it or
 * qb_rollback.  These are not queries: the logger and hooks do not run. */
QB_API int qb_begin(qb_db *db);
QB_API int qb_commit(qb_db *db);
QB_API int qb_rollback(qb_db *db);
QB_API int qb_savepoint(qb_db *db, const char *name);
QB_API int qb_release(qb_db *db, const char *name);
QB_API int qb_rollback_to(qb_db *db, const char *name); /* and release */

/* Rows changed by the last INSERT/UPDATE/DELETE, and the last rowid. */
QB_API int64_t qb_changes(const qb_db *db);
QB_API int64_t qb_last_insert_rowid(const qb_db *db);

/* ==== results, cursor, batches, migrations, logger, hooks ============== */

/* ---- statement cache ---------------------------------------------------- */

typedef struct qb_cache_stats {
    uint64_t hits;       /* statement found idle in the cache */
    uint64_t misses;     /* had to prepare (then cached) */
    uint64_t evictions;  /* least recently used idle statement finalized */
    uint64_t transient;  /* prepared outside the cache: same SQL already in
                            use (open cursor) or every slot busy */
    size_t size;         /* statements cached now */
    size_t capacity;
} qb_cache_stats;

/* Counters of db's prepared-statement cache.  NULL arguments are ignored. */
QB_API void qb_db_cache_stats(const qb_db *db, qb_cache_stats *out);

/* Results (qb_result and its accessors) are declared in qb_conn.h. */

/* ---- cursor ----------------------------------------------------------------
 * Step a single statement (not a chain) row by row without materialising.
 * The cursor holds one statement of db's cache: the same SQL run again
 * while the cursor is open gets its own, uncached statement.  Other calls
 * on db may run between rows (SQLite allows several active statements per
 * connection); a write made meanwhile to the table being read may or may
 * not be seen by the cursor (SQLite's rule for a single connection).
 * Column accessors read the current row with SQLite's own conversions; the
 * pointers they return stay valid until the next qb_cursor_next/close.
 * The logger, the before hook (at open) and the after hook run once per
 * cursor: when it reaches QB_EDONE or an error, or at close if abandoned. */
typedef struct qb_cursor qb_cursor;

/* Prepare q and bind its params.  The cursor reads q's values in place:
 * q must stay alive and unchanged until qb_cursor_close.  Returns QB_OK, QB_EINVAL (NULL argument,
 * chain, wrong param count, vetoed), QB_ESQL, QB_EBUSY, QB_ENOMEM; on error
 * *out is NULL. */
QB_API int qb_cursor_open(qb_db *db, const qb_query *q, qb_cursor **out);
/* Advance: QB_OK (a row is current), QB_EDONE (finished; sticky), or an
 * error code as for qb_exec (also sticky, message on the qb_db). */
QB_API int qb_cursor_next(qb_cursor *c);
QB_API size_t qb_cursor_cols(const qb_cursor *c);
QB_API const char *qb_cursor_colname(const qb_cursor *c, size_t col);
QB_API int qb_cursor_colindex(const qb_cursor *c, const char *name);
/* Accessors return NULL-cell values when no row is current. */
QB_API qb_vtype qb_cursor_type(const qb_cursor *c, size_t col);
QB_API int qb_cursor_is_null(const qb_cursor *c, size_t col);
QB_API int64_t qb_cursor_int(const qb_cursor *c, size_t col);
QB_API double qb_cursor_real(const qb_cursor *c, size_t col);
QB_API const char *qb_cursor_text(const qb_cursor *c, size_t col,
                                  size_t *len);
QB_API const void *qb_cursor_blob(const qb_cursor *c, size_t col,
                                  size_t *len);
/* Return the statement to the cache.  NULL is a no-op. */
QB_API void qb_cursor_close(qb_cursor *c);

/* ---- count, paginate, explain ------------------------------------------- */

/* Run q's count statement (q->count_sql, built by the builder for SELECTs)
 * with q's params; *total receives its first column.  QB_EINVAL if q has no
 * count statement; otherwise errors as qb_exec.  Logged once. */
QB_API int qb_count(qb_db *db, const qb_query *q, int64_t *total);

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
 * rows inside one savepoint, so both see the same snapshot.  *out receives
 * the rows (FETCH_ALL whatever q says) and *info the numbers; on error
 * *out is NULL.  Two executions: logged twice (count, then data). */
QB_API int qb_paginate(qb_db *db, const qb_query *q, int64_t page,
                       int64_t per_page, qb_result **out,
                       qb_pagination *info);

/* Run q (the builder's explain(): "EXPLAIN QUERY PLAN ...") and return
 * every row whatever q's fetch type says.  Errors as qb_exec. */
QB_API int qb_explain(qb_db *db, const qb_query *q, qb_result **out);

/* ---- batches -------------------------------------------------------------
 * Run qs[0..n) in order, all or nothing: inside BEGIN IMMEDIATE/COMMIT, or
 * a savepoint when a transaction is already open.  If results is non-NULL
 * it has n slots, each receiving that query's rows per its fetch type (as
 * qb_exec with out != NULL).  On error every slot is NULL, nothing of the
 * batch remains, *failed_at (if non-NULL) is the index of the failing query
 * (n if the COMMIT failed) and the message names it.  The logger and hooks
 * run once per query executed (queries after a failure are not run).
 * n == 0 is QB_OK.  NULL qs or a NULL element: QB_EINVAL before running. */
QB_API int qb_batch(qb_db *db, const qb_query *const *qs, size_t n,
                    qb_result **results, size_t *failed_at);

/* ---- migrations ----------------------------------------------------------
 * workers-qb's migrations, made transactional.  table is the tracking
 * table (NULL = "migrations"; else a plain identifier, qb_ident_valid),
 * created on first use with workers-qb's SQLite schema:
 *   id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE,
 *   applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL.
 * A migration's sql may hold several statements; it is run statement by
 * statement; it must not COMMIT/ROLLBACK itself (QB_EINVAL, and whatever
 * it committed stays).  Nothing is bound to it: a statement with a
 * placeholder (?, ?N, :x, @x, $x) is refused as qb_exec refuses a count
 * mismatch, before it runs: QB_EINVAL, "migration '<name>': statement K at
 * line L (<statement>): parameter count mismatch: the statement has N
 * placeholder(s), the query has 0 value(s)", and the migration is rolled
 * back.  Migrations must not be run inside an open transaction
 * (QB_EMISUSE). */
/* qb_migration is declared in qb_conn.h. */

/* Applied migrations as rows (id, name, applied_at) ordered by id. */
QB_API int qb_migrations_applied(qb_db *db, const char *table,
                                 qb_result **out);

/* Indices (into list) of the migrations not applied yet, in list order.
 * idx must have room for n entries; *nidx receives how many. */
QB_API int qb_migrations_unapplied(qb_db *db, const char *table,
                                   const qb_migration *list, size_t n,
                                   size_t *idx, size_t *nidx);

/* Apply every unapplied migration in list order, each in its own
 * BEGIN IMMEDIATE transaction that also records its name (bound, never
 * pasted).  On the first failure that migration is rolled back, nothing
 * after it runs, *failed_at (if non-NULL) is its list index and the
 * message is "migration '<name>': <SQLite message>".  *applied (if
 * non-NULL) counts the migrations committed by this call, failure
 * included.  A migration that another connection applied meanwhile is
 * skipped.  Logged once per migration attempted (the query passed to the
 * logger is the migration's sql with its name as the one param), plus the
 * table setup and listing statements. */
QB_API int qb_migrations_apply(qb_db *db, const char *table,
                               const qb_migration *list, size_t n,
                               size_t *applied, size_t *failed_at);

/* ---- logger and hooks ------------------------------------------------------
 * The callback types and their rules are in qb_conn.h. */

/* Install (or, with NULL, remove) the callbacks.  No-op on a NULL db. */
QB_API void qb_db_set_logger(qb_db *db, qb_logger_fn fn, void *ud);
QB_API void qb_db_set_hooks(qb_db *db, qb_before_fn before,
                            qb_after_fn after, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_QB_SQLITE_H */
