/*
 * qb_drv.h -- an engine behind qb_conn: the driver table and what every
 * driver shares (the connection's common head, errors, observers).
 * Not installed; not API.  Hidden symbols (prefix qbi_).
 *
 * A driver's connection struct starts with a qb_conn (its `base`), so a
 * qb_conn * is the driver's struct *: conn.c dispatches every call of
 * qb_conn.h through c->drv, and a driver casts back.  conn.c checks the
 * NULL connection and NULL query arguments once, so entries may assume
 * c != NULL.
 *
 * What is the same on every engine lives in conn.c once: chains, counts,
 * pages, batches, our own transaction scopes, the transaction verbs,
 * savepoint names, migrations, observers.  A driver supplies primitives
 * (run one statement, run internal SQL, run a script, say where the
 * session stands) and data (the SQL words that differ); an entry left
 * NULL is a feature the engine lacks: the call fails with QB_EDIALECT and
 * says so.
 */
#ifndef WAITUNTIL_QB_DRV_H
#define WAITUNTIL_QB_DRV_H

#include <stdarg.h>
#include <stdint.h>

#include "qb_int.h"

#define QBI_ERRMSG_MAX 1024
#define QBI_IDENT_MAX 128  /* savepoint and migrations table names */

/* Where a session stands (tx_state). */
enum {
    QBI_TX_IDLE = 0,   /* no transaction open */
    QBI_TX_OPEN,       /* in one (PostgreSQL: also an aborted one) */
    QBI_TX_UNUSABLE    /* lost or busy: cannot say (PostgreSQL) */
};

typedef struct qbi_driver qbi_driver;

/* A statement cache's LRU list: circular with the connection's node as
 * sentinel, head (next) = most recently used.  An entry's node is its
 * first member, so a node that is not the sentinel is the entry. */
typedef struct qbi_lru {
    struct qbi_lru *prev, *next;
} qbi_lru;

static inline void qbi_lru_unlink(qbi_lru *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline void qbi_lru_push_front(qbi_lru *list, qbi_lru *n)
{
    n->prev = list;
    n->next = list->next;
    list->next->prev = n;
    list->next = n;
}

struct qb_conn {
    const qbi_driver *drv;
    /* observers (qb_set_logger, qb_set_hooks) */
    qb_logger_fn logger;
    void *logger_ud;
    qb_before_fn before;
    qb_after_fn after;
    void *hook_ud;
    /* last error */
    int errcode;            /* SQLite extended result code, else 0 */
    char sqlstate[6];       /* PostgreSQL SQLSTATE, else "" */
    char errmsg[QBI_ERRMSG_MAX];
    /* the driver's statement cache: its counters, size and capacity
     * (qb_conn_cache_stats), its entries */
    qb_cache_stats cache;
    qbi_lru lru;
};

struct qbi_driver {
    const char *name;
    qb_engine engine;
    qb_dialect dialect;
    int nomem_code;         /* errcode recorded with QB_ENOMEM */
    int explain;            /* qb_explain works (its syntax is SQLite's) */
    /* A SAVEPOINT outside a transaction opens one (SQLite): qb_paginate
     * reads the count and the rows in one snapshot so.  0: no
     * qb_paginate. */
    int snapshot_sp;
    /* SQL words that differ: qb_begin and our own scopes; the verbs of
     * qb_release and qb_rollback_to (followed by the name). */
    const char *begin_sql;
    const char *release_sql;
    const char *rollback_to_sql;
    /* Migrations: the tracking table's id column; what follows
     * "LOCK TABLE <table> " first in each migration's transaction (NULL:
     * nothing, the BEGIN already serialises appliers). */
    const char *mig_id;
    const char *mig_lock;

    int (*open)(qb_conn **out, const char *target, const qb_conn_config *cfg,
                char *errbuf, size_t errbuf_len);
    void (*close)(qb_conn *c);
    void *(*handle)(qb_conn *c);
    int (*socket)(qb_conn *c);
    int (*reset_until)(qb_conn *c, int timeout_ms, int (*stop)(void *),
                       void *arg);
    int (*connected)(const qb_conn *c);
    int (*tx_state)(const qb_conn *c);     /* QBI_TX_* */
    /* Run one statement of a query (one link of a chain: its checks,
     * binding, rows); rows go to r per fetch (r may be NULL), changes are
     * added to r.  Not observed. */
    int (*run_link)(qb_conn *c, const qb_query *q, qb_fetch fetch,
                    qb_result *r);
    /* Internal SQL text (no params, rows discarded): transaction verbs
     * and the migrations table; PostgreSQL turns a COMMIT that rolled
     * back into an error. */
    int (*run_sql)(qb_conn *c, const char *sql);
    /* A migration's script: maybe several statements, nothing bound, a
     * placeholder left in it refused as a count mismatch. */
    int (*run_script)(qb_conn *c, const char *sql);
    int (*pipeline)(qb_conn *c, const qb_query *const *qs, size_t n,
                    size_t *failed_at);
    int64_t (*changes)(const qb_conn *c);
    int64_t (*last_rowid)(const qb_conn *c);
    int (*cursor_open)(qb_conn *c, const qb_query *q, qb_cursor **out);
};

extern const qbi_driver qbi_sqlite_driver;
#ifdef HAVE_LIBPQ
extern const qbi_driver qbi_pg_driver;
#endif

/* Set up the common head of a new connection. */
void qbi_conn_init(qb_conn *c, const qbi_driver *drv);

/* Record an error on c: the message from fmt, the engine's code (SQLite
 * result code or 0) and SQLSTATE (NULL = none); returns rc. */
__attribute__((format(printf, 5, 0)))
int qbi_vfail(qb_conn *c, int rc, int code, const char *state,
              const char *fmt, va_list ap);
__attribute__((format(printf, 5, 6)))
int qbi_fail(qb_conn *c, int rc, int code, const char *state,
             const char *fmt, ...);
/* QB_ENOMEM, "out of memory" (with the engine's code for it). */
int qbi_nomem(qb_conn *c);
/* Put "prefix: " in front of c's message (context for batches and
 * migrations). */
__attribute__((format(printf, 2, 3)))
void qbi_prefix(qb_conn *c, const char *fmt, ...);

/* Observers: qbi_obs_begin runs the before hook (a veto is QB_EINVAL,
 * recorded on c) and reads the clock only when an observer is set;
 * qbi_obs_end runs the logger then the after hook, exactly once per
 * observed call, on every path. */
typedef struct qbi_obs {
    int on;
    int64_t t0;
} qbi_obs;
int qbi_obs_begin(qb_conn *c, const qb_query *q, qbi_obs *o);
void qbi_obs_end(qb_conn *c, const qb_query *q, const qbi_obs *o, int rc,
                 const qb_result *res);
/* One observed execution of q and its chain (hooks, logger, run_link
 * inside a scope of our own for a chain); *out (if out) receives the
 * result on success, else NULL. */
int qbi_exec(qb_conn *c, const qb_query *q, qb_result **out);

/* The checks every engine makes on a query (one link of a chain) before
 * running it: SQL text, dialect, parameter array.  QB_OK or an error
 * recorded on c. */
int qbi_check_link(qb_conn *c, const qb_query *q);

/* Start a row of r for a statement returning ncols columns: *row is the
 * new row of NULL cells, or NULL when there is nothing to fill (no
 * columns, or an error: QB_ESQL when the statements of a chain return
 * different columns, QB_ENOMEM; recorded on c). */
int qbi_row_begin(qb_conn *c, qb_result *r, size_t ncols, qbi_cell **row);

int64_t qbi_now_ns(void);

#endif /* WAITUNTIL_QB_DRV_H */
