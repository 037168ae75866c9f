/*
 * qb_pg.h -- run qb queries on PostgreSQL (libpq).
 *
 * The same shape as qb_sqlite.h with the prefix qb_pg_, so a caller switches
 * engines by switching names: open/close, exec (chains in one transaction),
 * count, batch, transactions and savepoints, migrations, logger and hooks,
 * materialised results read by index or by column name.
 *
 * Queries must be built for QB_DIALECT_POSTGRES (builders' *_dialect(),
 * qb_query_raw_dialect, qb_create_table/qb_drop_table with that dialect);
 * anything else is refused with QB_EDIALECT before it reaches the server.
 * Values always travel as protocol parameters (PQexecParams), never in the
 * SQL text.
 *
 * Thread-safety: a qb_pg is one libpq connection, used by one thread at a
 * time; use one qb_pg per thread.  Results own their bytes and may outlive
 * further calls (free them before qb_pg_close by convention).
 *
 * Errors.  Every failing call records a message and, when the server sent
 * one, the SQLSTATE (qb_pg_errmsg, qb_pg_sqlstate).  Codes:
 *   QB_EBUSY        40001 serialization_failure, 40P01 deadlock_detected,
 *                   55P03 lock_not_available: retry the transaction on the
 *                   same connection.
 *   QB_PG_ECONN     the connection is gone (server restart, network, 08xxx,
 *                   57P01-57P03): call qb_pg_reset, then retry.  Whatever
 *                   the lost transaction did is rolled back by the server.
 *   QB_ECONSTRAINT  class 23 (23505 unique_violation, 23503, 23502, 23514).
 *   QB_EINTERRUPT   57014 query_canceled (statement_timeout).
 *   QB_ENOMEM       allocation failure here, or 53200 out_of_memory.
 *   QB_ESQL         any other server error (syntax 42601, undefined table
 *                   42P01, ...), including SQL holding several statements.
 *   QB_EINVAL       bad argument, $N placeholders not matching the query's
 *                   parameter count, text holding a NUL byte, hook veto.
 *   QB_EDIALECT     the query was rendered for another dialect.
 *
 * Differences from the SQLite executor, all PostgreSQL's own semantics:
 *   - there is no last insert rowid: use RETURNING;
 *   - a statement that fails inside a transaction the CALLER opened leaves
 *     that transaction aborted (PQTRANS_INERROR): roll it back, or roll
 *     back to a savepoint.  Work this executor wraps itself (chains,
 *     batches, migrations) is rolled back to its own savepoint instead, so
 *     the caller's transaction stays usable;
 *   - a COMMIT that fails ends the transaction (PostgreSQL rolls it back);
 *     a COMMIT of an aborted transaction is reported as QB_ESQL (25P02),
 *     not as success.
 */
#ifndef WAITUNTIL_QB_PG_H
#define WAITUNTIL_QB_PG_H

#include "qb.h"
#include "qb_conn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Connection lost: reset (qb_pg_reset) and retry.  Outside qb.h's range
 * so it cannot collide; qb_pg_strerror knows it. */
#define QB_PG_ECONN (-64)

struct pg_conn; /* libpq's PGconn */

typedef struct qb_pg qb_pg;

typedef struct qb_pg_config {
    int connect_timeout_s;        /* 0 = default 10; at most 3600.  Also
                                     the session's tcp_user_timeout. */
    const char *application_name; /* NULL = "waituntil" */
    size_t stmt_cache_size;       /* server-side prepared statements kept,
                                     keyed by SQL text and parameter types;
                                     0 (default) = none: every call is
                                     parsed (PQexecParams).  At most 4096.
                                     Off by default because transaction-
                                     pooling proxies (PgBouncer) break
                                     named prepared statements. */
} qb_pg_config;

typedef struct qb_pg_cache_info {
    uint64_t hits;       /* statement found prepared */
    uint64_t misses;     /* prepared (then cached) */
    uint64_t evictions;  /* least recently used one deallocated */
    uint64_t replans;    /* re-prepared after the server refused a stale
                            one (0A000 after ALTER TABLE, 26000) */
    size_t size, capacity;
} qb_pg_cache_info;

/* qb_strerror plus QB_PG_ECONN.  Static text, never NULL; thread-safe. */
QB_API const char *qb_pg_strerror(int rc);

/* Connect with a libpq connection string or URI (conninfo; "" uses libpq's
 * environment defaults).  The session always uses client_encoding UTF8.
 * Server notices are discarded.  Unless conninfo sets them, a TCP session
 * gets keepalives (idle 10 s, then every 3 s, 3 probes) and
 * tcp_user_timeout = connect_timeout_s, so a server host that vanishes
 * mid-statement is noticed in seconds rather than the kernel's minutes
 * (libpq's PQcancel uses the same settings).  The connect timeout is
 * connect_timeout in conninfo if given, else connect_timeout_s.  On
 * failure *out is NULL, the return is QB_PG_ECONN (could not connect), QB_ENOMEM or QB_EINVAL, and libpq's
 * message is written to errbuf if given.  Thread-safe (no shared state;
 * libpq is thread-safe on Debian). */
QB_API int qb_pg_open(qb_pg **out, const char *conninfo,
                      const qb_pg_config *cfg, char *errbuf,
                      size_t errbuf_len);

/* Close the connection.  NULL is a no-op. */
QB_API void qb_pg_close(qb_pg *db);

/* Reconnect with the same parameters (after QB_PG_ECONN, or any time:
 * an open transaction is lost; the statement cache is emptied, since
 * prepared statements die with the session).  QB_OK or QB_PG_ECONN
 * (server still unreachable: call again later); QB_EINVAL on NULL.
 * Waits at most the connect timeout (see qb_pg_reset_until). */
QB_API int qb_pg_reset(qb_pg *db);

/* qb_pg_reset bounded by the caller: the connection is made without
 * blocking (PQresetStart/PQresetPoll) and given up, QB_PG_ECONN with
 * "timed out" or "stopped" in qb_pg_errmsg, once timeout_ms (> 0) or the
 * connect timeout (qb_pg_open), whichever is shorter, has passed, or
 * when stop(arg) returns non-zero; stop (may be NULL) is polled at
 * least every 100 ms from the calling thread.  The bound covers every
 * host of a multi-host conninfo together.  Host name lookup is libpq's
 * and blocking: give hostaddr where that matters.  After a failure the
 * connection stays down until the next reset. */
QB_API int qb_pg_reset_until(qb_pg *db, int timeout_ms,
                             int (*stop)(void *arg), void *arg);

/* 1 if the connection is up as far as libpq knows (it learns of a loss
 * only when a call fails), 0 otherwise or for NULL. */
QB_API int qb_pg_connected(const qb_pg *db);

/* 1 while a transaction is open on db (also when it is aborted), else 0. */
QB_API int qb_pg_in_transaction(const qb_pg *db);

/* The libpq connection, owned by db (for PQcancel, settings...). */
QB_API struct pg_conn *qb_pg_conn(qb_pg *db);

/* Counters of db's prepared-statement cache.  NULL arguments ignored. */
QB_API void qb_pg_cache_stats(const qb_pg *db, qb_pg_cache_info *out);

/* Message and SQLSTATE of the last failed call on db.  The SQLSTATE is
 * the five characters the server sent, or "" when the error did not come
 * from the server (argument checks, lost connection without a report). */
QB_API const char *qb_pg_errmsg(const qb_pg *db);
QB_API const char *qb_pg_sqlstate(const qb_pg *db);

/*
 * Execute q (every link of a chain in order, inside one transaction: BEGIN
 * ... COMMIT when none is open, else a savepoint).  If out is non-NULL, on
 * success *out receives a qb_result (free with qb_result_free): rows
 * per q's fetch type (ALL: every row, ONE: the first, NONE: none; rows of
 * a chain are concatenated) plus the changes count; on error *out is NULL.
 * params[i] binds to $i+1; the highest $N in the SQL (outside literals,
 * quoted identifiers, comments and dollar quotes) must equal q's nparams,
 * else QB_EINVAL before anything is sent.  One statement per link: the
 * server refuses several (QB_ESQL, 42601).
 * Parameter types: INT is sent as int8, REAL as float8, BOOL as bool, BLOB
 * as bytea (binary), TEXT and NULL untyped, so the server infers the type
 * from the context (a TEXT value can feed an integer, jsonb, timestamp...
 * column).  Bind a boolean to an integer column with qb_int, not qb_bool.
 * Returns QB_OK or a code from the list atop this header.  The logger and
 * hooks run once per call, on every path.
 */
QB_API int qb_pg_exec(qb_pg *db, const qb_query *q, qb_result **out);

/* Run q's count statement (q->count_sql, built for SELECTs) with q's
 * params; *total receives its first column.  QB_EINVAL if q has none.
 * Logged once (the query logged is a view of q with the count SQL). */
QB_API int qb_pg_count(qb_pg *db, const qb_query *q, int64_t *total);

/* Run qs[0..n) in order, all or nothing (BEGIN/COMMIT, or a savepoint when
 * a transaction is open).  results (if non-NULL) has n slots filled as by
 * qb_pg_exec.  On error every slot is NULL, nothing of the batch remains,
 * *failed_at (if non-NULL) is the failing index (n if COMMIT failed) and
 * the message names it.  Logger/hooks once per query run.  n == 0 is
 * QB_OK; NULL qs or element: QB_EINVAL before running. */
QB_API int qb_pg_batch(qb_pg *db, const qb_query *const *qs, size_t n,
                       qb_result **results, size_t *failed_at);

/* Run qs[0..n) in order inside the transaction the caller opened, with
 * libpq's pipeline mode: the statements go out together and are answered
 * together (one round trip per 64 statements instead of one each), rows
 * discarded.  Chains are run link by link.  Returns QB_OK, or the first
 * failure: *failed_at (if non-NULL) is that query's index, the message
 * names it, the queries after it were not run, and the transaction is
 * aborted (roll it back, or back to a savepoint taken before).  QB_EBUSY
 * also when a cached prepared statement went stale (schema change): it is
 * forgotten, retry the transaction.  QB_EMISUSE outside a transaction.
 * Logger/hooks once per query run (before hooks all run first; a veto
 * stops everything before it is sent).  Without pipeline support in
 * libpq (< 14) the queries run one by one with the same contract. */
QB_API int qb_pg_pipeline(qb_pg *db, const qb_query *const *qs, size_t n,
                          size_t *failed_at);

/* Transactions.  qb_pg_begin is a plain BEGIN (READ COMMITTED unless the
 * session says otherwise).  Savepoint names must be plain identifiers
 * (no dot).  Return QB_OK or an error code as for qb_pg_exec.  These are
 * not queries: the logger and hooks do not run. */
QB_API int qb_pg_begin(qb_pg *db);
QB_API int qb_pg_commit(qb_pg *db);
QB_API int qb_pg_rollback(qb_pg *db);
QB_API int qb_pg_savepoint(qb_pg *db, const char *name);
QB_API int qb_pg_release(qb_pg *db, const char *name);
QB_API int qb_pg_rollback_to(qb_pg *db, const char *name); /* and release */

/* Results (qb_result and its accessors, qb_result_coltype for the type
 * OIDs) are declared in qb_conn.h. */

/* ---- migrations ------------------------------------------------------------
 * workers-qb PGQB's migrations, made safe.  table: NULL = "migrations",
 * else a qb_ident_valid name.  Created on first use with PGQB's schema:
 *   id SERIAL PRIMARY KEY, name TEXT UNIQUE,
 *   applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL.
 * Each unapplied migration runs in its own BEGIN ... COMMIT: the table is
 * locked (SHARE ROW EXCLUSIVE, so concurrent appliers queue), the name is
 * checked again, the sql runs as one simple-protocol message (several
 * statements allowed, no parameters), then INSERT INTO <table> (name)
 * VALUES ($1) records it (bound).  A failure rolls the whole migration
 * back (PostgreSQL DDL is transactional).  The sql must not end the
 * transaction itself (QB_EINVAL; whatever it committed stays).  A $N
 * with no value (the server's 42P02) is refused as qb_pg_exec refuses a
 * count mismatch: QB_EINVAL, "migration '<name>': statement K at line L
 * (<statement>): parameter count mismatch: the statement's highest
 * placeholder is $N, the query has 0 value(s)" (SQLSTATE 42P02 kept); a
 * $N that belongs to the SQL (a routine's RETURN or BEGIN ATOMIC body,
 * PREPARE) runs, and `?` is PostgreSQL's operator there, not a
 * placeholder.  Not inside an open transaction (QB_EMISUSE).  The list is
 * of qb_migration (qb_conn.h); name and sql must both be non-NULL. */

/* Applied migrations as rows (id, name, applied_at) ordered by id. */
QB_API int qb_pg_migrations_applied(qb_pg *db, const char *table,
                                    qb_result **out);
/* Indices (into list) not applied yet, in list order; idx has room for n;
 * *nidx receives how many. */
QB_API int qb_pg_migrations_unapplied(qb_pg *db, const char *table,
                                      const qb_migration *list, size_t n,
                                      size_t *idx, size_t *nidx);
/* Apply the unapplied ones in list order.  On the first failure nothing
 * after it runs, *failed_at (if non-NULL) is its index and the message is
 * "migration '<name>': <server message>" (SQLSTATE kept).  *applied (if
 * non-NULL) counts migrations committed by this call.  Logged once per
 * migration attempted (the query logged is its sql with its name as the
 * one param), plus the setup and listing statements. */
QB_API int qb_pg_migrations_apply(qb_pg *db, const char *table,
                                  const qb_migration *list, size_t n,
                                  size_t *applied, size_t *failed_at);

/* ---- logger and hooks ------------------------------------------------------
 * The callback types and their rules are in qb_conn.h. */

/* Install (or, with NULL, remove) the callbacks.  No-op on a NULL db. */
QB_API void qb_pg_set_logger(qb_pg *db, qb_logger_fn fn, void *ud);
QB_API void qb_pg_set_hooks(qb_pg *db, qb_before_fn before,
                            qb_after_fn after, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_QB_PG_H */
