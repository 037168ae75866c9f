/*
 * qb_drv.h -- an engine behind qb_conn: the driver table and what every
 * driver shares (the connection's common head, errors, observers).
 * Not installed; not API.  Hidden symbols (prefix qbi_).
 *
 * A driver's connection struct starts with a qb_conn (its `base`), so a
 * qb_conn * is the driver's struct *: conn.c dispatches every call of
 * qb_conn.h through c->drv, and a driver casts back.  conn.c checks the
 * NULL connection and NULL query arguments once, so entries may assume
 * c != NULL.  An entry left NULL is a feature the engine lacks: the call
 * fails with QB_EDIALECT and says so.
 */
#ifndef WAITUNTIL_QB_DRV_H
#define WAITUNTIL_QB_DRV_H

#include <stdarg.h>
#include <stdint.h>

#include "qb_int.h"

#define QBI_ERRMSG_MAX 1024

typedef enum qbi_tx_op {
    QBI_TX_BEGIN, QBI_TX_COMMIT, QBI_TX_ROLLBACK,
    QBI_TX_SAVEPOINT, QBI_TX_RELEASE, QBI_TX_ROLLBACK_TO
} qbi_tx_op;

typedef struct qbi_driver qbi_driver;

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
};

struct qbi_driver {
    const char *name;
    qb_engine engine;
    qb_dialect dialect;
    int (*open)(qb_conn **out, const char *target, const qb_conn_config *cfg,
                char *errbuf, size_t errbuf_len);
    void (*close)(qb_conn *c);
    void *(*handle)(qb_conn *c);
    int (*socket)(qb_conn *c);
    int (*reset_until)(qb_conn *c, int timeout_ms, int (*stop)(void *),
                       void *arg);
    int (*connected)(const qb_conn *c);
    int (*in_transaction)(const qb_conn *c);
    int (*exec)(qb_conn *c, const qb_query *q, qb_result **out);
    int (*count)(qb_conn *c, const qb_query *q, int64_t *total);
    int (*paginate)(qb_conn *c, const qb_query *q, int64_t page,
                    int64_t per_page, qb_result **out, qb_pagination *info);
    int (*explain)(qb_conn *c, const qb_query *q, qb_result **out);
    int (*batch)(qb_conn *c, const qb_query *const *qs, size_t n,
                 qb_result **results, size_t *failed_at);
    int (*pipeline)(qb_conn *c, const qb_query *const *qs, size_t n,
                    size_t *failed_at);
    int (*tx)(qb_conn *c, qbi_tx_op op, const char *name);
    int64_t (*changes)(const qb_conn *c);
    int64_t (*last_rowid)(const qb_conn *c);
    void (*cache_stats)(const qb_conn *c, qb_cache_stats *out);
    int (*cursor_open)(qb_conn *c, const qb_query *q, qb_cursor **out);
    int (*mig_applied)(qb_conn *c, const char *table, qb_result **out);
    int (*mig_unapplied)(qb_conn *c, const char *table,
                         const qb_migration *list, size_t n, size_t *idx,
                         size_t *nidx);
    int (*mig_apply)(qb_conn *c, const char *table, const qb_migration *list,
                     size_t n, size_t *applied, size_t *failed_at);
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

int64_t qbi_now_ns(void);

#endif /* WAITUNTIL_QB_DRV_H */
