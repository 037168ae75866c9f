/*
 * qb_conn_test.h -- shared by the three files of the executor's Check
 * program (tests/check_qb_conn): check_qb_conn.c (main, the helpers below
 * and the engine-neutral suite), qb_conn_sqlite.c (SQLite-only cases) and
 * qb_conn_pg.c (PostgreSQL-only cases, built only with libpq:
 * QB_TEST_PG).
 *
 * The engine is chosen at run time: SQLite by default, PostgreSQL when
 * WU_PG_DSN names a server (tests/pg/check_qb_conn_pg.sh starts a private
 * one).  On PostgreSQL every fixture starts from an empty "public" schema.
 */
#ifndef WAITUNTIL_TESTS_QB_CONN_TEST_H
#define WAITUNTIL_TESTS_QB_CONN_TEST_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>

#include "qb.h"
#include "qb_int.h"
#include "qb_conn.h"
#include "testutil.h"

/* ---- the engine under test (set once by main) ---------------------------- */

extern int g_pg;              /* 1: PostgreSQL (WU_PG_DSN), 0: SQLite */
extern const char *g_dsn;     /* WU_PG_DSN, NULL on SQLite */
extern const char *g_restart; /* WU_PG_RESTART or NULL */
extern size_t g_cache;        /* PostgreSQL: stmt_cache_size of this pass
                                 (main runs the suites with 0, then 4) */
/* Variants of a loop test: SQLite runs each on ":memory:" (0) and on a
 * WAL file in a fresh temp directory (1); PostgreSQL has one database. */
#define NVAR (g_pg ? 1 : 2)
#define DIALECT (g_pg ? QB_DIALECT_POSTGRES : QB_DIALECT_SQLITE)

/* ---- fixtures -------------------------------------------------------------- */

typedef struct fx {
    qb_conn *db;
    char *dir;      /* SQLite file variant only */
    char path[512]; /* the SQLite file or ":memory:"; PostgreSQL: the DSN */
} fx;

/* Open the engine's database for a test.  variant as NVAR above (ignored
 * on PostgreSQL, which empties the public schema).  cfg may be NULL; on
 * PostgreSQL its engine is forced and a zero stmt_cache_size takes the
 * pass's g_cache. */
void fx_open_cfg(fx *f, int variant, const qb_conn_config *cfg);
void fx_open(fx *f, int variant);
void fx_close(fx *f);

/* A connection on an empty database (SQLite: ":memory:"), plus trusted
 * setup SQL schema (several statements allowed; may be NULL); close it
 * with qb_close. */
qb_conn *fresh(const char *schema);
/* Run trusted setup SQL (several statements allowed) through the
 * engine's own library: nothing logged, nothing cached. */
void script(qb_conn *db, const char *sql);
/* Builders in the engine's dialect. */
qb_select *sel_new(const char *table);
qb_insert *ins_new(const char *table);

/* A raw query in the engine's dialect (`?`, `?N` become `$N` on
 * PostgreSQL). */
qb_query *mkq(const char *sql, size_t n, const qb_value *a, qb_fetch f);
/* Run sql (no params) and return the status. */
int run(qb_conn *db, const char *sql);
/* Execute q, expect QB_OK, return the result (caller frees). */
qb_result *run_ok(qb_conn *db, const qb_query *q);
/* First column of the first row of sql, as int64. */
int64_t scalar(qb_conn *db, const char *sql);
/* First-column values of every row joined with ',' (NULL as "-"); the
 * buffer is static, valid until the next call. */
const char *ids(const qb_result *r);
/* The same for the rows of sql. */
const char *query_ids(qb_conn *db, const char *sql);
/* t(id, name UNIQUE, score) with rows (1,'a',10) (2,'b',20) (3,'c',30);
 * id is the rowid on SQLite, serial on PostgreSQL. */
void seed(qb_conn *db);
/* Three linked inserts into seed()'s t of names n0..n2, each RETURNING
 * id: a chain as the builder splits a bulk insert. */
qb_query *chain3(const char *n0, const char *n1, const char *n2,
                 qb_fetch fetch);
/* The number of tables (and indexes, sequences...) of the schema named in
 * the comma-separated quoted list, e.g. "'a', 'b'". */
int64_t relations(qb_conn *db, const char *quoted_names);

/* ---- logger / hook recorders ------------------------------------------------ */

typedef struct rec {
    int calls;
    int errors;      /* calls with rc != QB_OK */
    int last_rc;
    int64_t last_dur;
    int neg_dur;
    int msg_ok;      /* errmsg NULL exactly when rc == QB_OK, every call */
    const qb_query *last_q;
    char last_sql[256];
    char sql[8][256]; /* the first 8 calls' SQL */
    int befores, afters, veto;
    const qb_result *after_res;
    int after_rc;
} rec;

void rec_init(rec *r);
void rec_logger(void *ud, const qb_query *q, int64_t d, int rc,
                const char *msg);
int rec_before(void *ud, const qb_query *q);
void rec_after(void *ud, const qb_query *q, int rc, const qb_result *res,
               int64_t d);

/* A TCase with the program's timeout, added to s. */
TCase *tc(Suite *s, const char *name);

/* ---- the suites --------------------------------------------------------------- */

Suite *qb_conn_shared_suite(void);
Suite *qb_conn_sqlite_suite(void);
#ifdef QB_TEST_PG
Suite *qb_conn_pg_suite(void);
/* Load what the PostgreSQL suite reads (qb/cases.json); 0 or -1. */
int qb_conn_pg_init(void);
void qb_conn_pg_fini(void);
/* Empty the public schema through libpq (nothing logged or cached). */
void pg_reset_schema(qb_conn *db);
/* Statements of that SQL text in pg_prepared_statements. */
int pg_prepared(qb_conn *db, const char *sql);
/* script() on PostgreSQL. */
void pg_script(qb_conn *db, const char *sql);
#endif

#endif
