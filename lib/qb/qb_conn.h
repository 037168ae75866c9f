/*
 * qb_conn.h -- what both executors share: the materialised result of a
 * query, a migration, and the logger/hook callback types.
 *
 * Results are one type whichever engine produced them (qb_sqlite.h's
 * qb_exec and qb_pg.h's qb_pg_exec both hand out a qb_result).
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

/* A migration: workers-qb's {name, sql}.  The executors' migration calls
 * (qb_migrations_apply, qb_pg_migrations_apply) say how it is run. */
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

#ifdef __cplusplus
}
#endif
#endif /* WAITUNTIL_QB_CONN_H */
