/*
 * check.c -- `waituntil -t`: check a conf like `nginx -t` does, plus the
 * database schema its deferred queries need.
 *
 * SQLite: the migrations run on a fresh in-memory database and every
 * deferred statement is prepared against that schema.  PostgreSQL: there
 * is no scratch database to build, so the statements are built in the
 * PostgreSQL dialect (which refuses SQLite-only constructs) and, when the
 * server answers and its schema is current, checked with EXPLAIN (parsed
 * and planned, never run) in a read-only session.  -t never writes to the
 * configured database and never applies a migration.
 */
#define _GNU_SOURCE
#include "app.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static const char *kind_name(web_defer_kind k)
{
    switch (k) {
    case WEB_DEFER_INSERT: return "insert into";
    case WEB_DEFER_UPDATE: return "update";
    case WEB_DEFER_DELETE: return "delete from";
    case WEB_DEFER_UPSERT: return "upsert into";
    }
    return "?";
}

/* Handlers exist, defer blocks fit tasks_per_request.  1 if not. */
static int check_routes(const web_conf *conf, const char *conf_path,
                        web_db_engine engine)
{
    int bad = 0;
    for (size_t r = 0; r < conf->nroutes; r++) {
        const web_route_conf *rc = &conf->routes[r];
        if (rc->handler != NULL) {
            size_t h;
            for (h = 0; h < app_nhandlers; h++)
                if (strcmp(app_handlers[h].name, rc->handler) == 0)
                    break;
            if (h == app_nhandlers) {
                fprintf(stderr, "waituntil: %s:%d: unknown handler \"%s\"\n",
                        conf_path, rc->line, rc->handler);
                bad = 1;
            } else if (engine == WEB_DB_POSTGRESQL &&
                       strcmp(rc->handler, "log_sync") == 0) {
                /* Allowed, but say it: it is the SQLite baseline. */
                fprintf(stderr,
                        "waituntil: warning: %s:%d: handler \"log_sync\" "
                        "answers 501 on PostgreSQL (SQLite only)\n",
                        conf_path, rc->line);
            }
        }
        if (rc->ndefers > conf->pool.tasks_per_request) {
            fprintf(stderr,
                    "waituntil: %s:%d: route has %zu defer blocks, more than "
                    "pool tasks_per_request (%zu)\n",
                    conf_path, rc->line, rc->ndefers,
                    conf->pool.tasks_per_request);
            bad = 1;
        }
    }
    return bad;
}

/* Checks one built statement against a database: 0, or 1 after writing
 * the reason into eb. */
typedef int (*stmt_check_fn)(void *ud, const web_defer_tpl *t, char *eb,
                             size_t el);

/* Build every defer block's statement in dialect -- the same template
 * the server builds -- and hand it to fn (if any).  1 if one failed. */
static int check_templates(const web_conf *conf, const char *conf_path,
                           qb_dialect dialect, stmt_check_fn fn, void *ud,
                           const char *against)
{
    int bad = 0;
    for (size_t r = 0; r < conf->nroutes; r++) {
        const web_route_conf *rc = &conf->routes[r];
        for (size_t k = 0; k < rc->ndefers; k++) {
            const web_defer *d = &rc->defers[k];
            web_defer_tpl *t = NULL;
            char eb[512];

            if (web_defer_tpl_create(d, dialect, &t, eb, sizeof eb) !=
                QB_OK) {
                fprintf(stderr, "waituntil: %s:%d: %s %s: %s\n", conf_path,
                        d->line, kind_name(d->kind), d->table, eb);
                bad = 1;
                continue;
            }
            if (fn != NULL && fn(ud, t, eb, sizeof eb) != 0) {
                fprintf(stderr, "waituntil: %s:%d: %s %s: %s (%s)\n",
                        conf_path, d->line, kind_name(d->kind), d->table, eb,
                        against);
                bad = 1;
            }
            web_defer_tpl_free(t);
        }
    }
    return bad;
}

/* ---- SQLite --------------------------------------------------------------- */

static int sqlite_prepare(void *ud, const web_defer_tpl *t, char *eb,
                          size_t el)
{
    sqlite3 *db = qb_db_sqlite(ud);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, web_defer_tpl_sql(t), -1, &st, NULL);
    if (rc != SQLITE_OK)
        snprintf(eb, el, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : 1;
}

static int check_sqlite(const web_conf *conf, const char *conf_path,
                        const char *db_path, const char *mig_dir)
{
    qb_migration *list = NULL;
    size_t n = 0, applied = 0, failed_at = 0;
    qb_db *mem = NULL;
    web_db_dir_state dst = WEB_DB_DIR_READY;
    char eb[1024], dir[PATH_MAX];
    int bad = 0, rc;

    /* The start makes a missing folder (one level) or fails: say which,
     * with the start's own words, and create nothing. */
    rc = web_db_dir_prepare(db_path, WEB_DB_DIR_CHECK, &dst, dir, sizeof dir,
                            eb, sizeof eb);
    if (rc != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n",
                rc == WEB_ENOMEM ? "out of memory" : eb);
        bad = 1;
    } else if (dst == WEB_DB_DIR_MISSING) {
        fprintf(stderr,
                "waituntil: database folder %s does not exist: the start "
                "creates it (mode %04o)\n",
                dir, (unsigned)WEB_DB_DIR_MODE);
    }
    if (app_migrations_load(mig_dir, &list, &n, eb, sizeof eb) != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n", eb);
        return 1;
    }
    if (qb_db_open(&mem, ":memory:", NULL, eb, sizeof eb) != QB_OK) {
        fprintf(stderr, "waituntil: %s\n", eb);
        bad = 1;
        goto out;
    }
    if (qb_migrations_apply(mem, NULL, list, n, &applied, &failed_at) !=
        QB_OK) {
        fprintf(stderr, "waituntil: %s/%s: %s\n", mig_dir,
                failed_at < n ? list[failed_at].name : "?",
                qb_db_errmsg(mem));
        bad = 1;
        goto out;
    }
    bad |= check_templates(conf, conf_path, QB_DIALECT_SQLITE, sqlite_prepare,
                           mem, "schema from the migrations");
    if (access(db_path, F_OK) == 0) {
        qb_db *db = NULL;
        qb_db_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.readonly = 1;
        if (qb_db_open(&db, db_path, &cfg, eb, sizeof eb) != QB_OK) {
            fprintf(stderr, "waituntil: database %s: %s\n", db_path, eb);
            bad = 1;
        } else {
            size_t idx_n = 0, *idx = calloc(n ? n : 1, sizeof *idx);
            if (idx != NULL &&
                qb_migrations_unapplied(db, NULL, list, n, idx, &idx_n) ==
                    QB_OK)
                fprintf(stderr,
                        "waituntil: database %s: %zu migration(s) to apply at "
                        "start\n",
                        db_path, idx_n);
            free(idx);
            qb_db_close(db);
        }
    }
out:
    qb_db_close(mem);
    app_migrations_free(list, n);
    return bad;
}

/* ---- PostgreSQL ----------------------------------------------------------- */

#ifdef HAVE_LIBPQ
/* Run one statement built in the PostgreSQL dialect, rows discarded. */
static int pg_run(qb_pg *db, const char *sql, size_t nargs,
                  const qb_value *args, qb_pg_result **out)
{
    qb_query *q = NULL;
    int rc = qb_query_raw_dialect(&q, QB_DIALECT_POSTGRES, sql, nargs, args,
                                  out != NULL ? QB_FETCH_ALL : QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_pg_exec(db, q, out);
    qb_query_free(q);
    return rc;
}

/* EXPLAIN the statement with every parameter NULL (untyped, so the server
 * infers each type from its column): parse analysis and planning check
 * tables, columns, functions and types; nothing is executed. */
static int pg_explain(void *ud, const web_defer_tpl *t, char *eb, size_t el)
{
    qb_pg *db = ud;
    const char *sql = web_defer_tpl_sql(t);
    size_t np = qb_query_nparams(web_defer_tpl_query(t));
    qb_value *nulls = calloc(np ? np : 1, sizeof *nulls);
    char *text = NULL;
    int rc = QB_ENOMEM;

    if (nulls != NULL && asprintf(&text, "EXPLAIN %s", sql) >= 0) {
        for (size_t i = 0; i < np; i++)
            nulls[i] = qb_null();
        rc = pg_run(db, text, np, nulls, NULL);
        free(text);
    }
    free(nulls);
    if (rc == QB_OK)
        return 0;
    snprintf(eb, el, "%s", rc == QB_ENOMEM ? "out of memory"
                                           : qb_pg_errmsg(db));
    eb[strcspn(eb, "\n")] = '\0';
    return 1;
}

/* How many of list are not recorded in the migrations table, read
 * without qb_pg_migrations_unapplied (which creates the table: a write).
 * The table name is qb_pg's default, the one main.c applies with. */
static int pg_pending(qb_pg *db, const qb_pg_migration *list, size_t n,
                      size_t *pending)
{
    qb_pg_result *res = NULL;
    int rc = pg_run(db, "SELECT name FROM migrations", 0, NULL, &res);

    *pending = n;
    if (rc != QB_OK)
        /* 42P01 undefined_table: nothing was ever applied. */
        return strcmp(qb_pg_sqlstate(db), "42P01") == 0 ? QB_OK : rc;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < qb_pg_result_rows(res); j++) {
            const char *nm = qb_pg_result_text(res, j, 0, NULL);
            if (nm != NULL && strcmp(nm, list[i].name) == 0) {
                (*pending)--;
                break;
            }
        }
    qb_pg_result_free(res);
    return QB_OK;
}

static int check_pg(const web_conf *conf, const char *conf_path,
                    const char *uri, const char *mig_dir)
{
    qb_migration *list = NULL;
    qb_pg_migration *pl = NULL;
    qb_pg_config cfg;
    qb_pg *db = NULL;
    size_t n = 0, pending = 0;
    char eb[512], red[512];
    int bad;

    web_db_path_redact(uri, red, sizeof red);
    if (app_migrations_load(mig_dir, &list, &n, eb, sizeof eb) != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n", eb);
        return 1;
    }
    /* Statements in the PostgreSQL dialect: no server needed. */
    bad = check_templates(conf, conf_path, QB_DIALECT_POSTGRES, NULL, NULL,
                          NULL);
    pl = calloc(n ? n : 1, sizeof *pl);
    if (pl == NULL) {
        fprintf(stderr, "waituntil: out of memory\n");
        bad = 1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        pl[i].name = list[i].name;
        pl[i].sql = list[i].sql;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.connect_timeout_s = 5;
    cfg.application_name = "waituntil -t";
    if (qb_pg_open(&db, uri, &cfg, eb, sizeof eb) != QB_OK) {
        eb[strcspn(eb, "\n")] = '\0';
        /* Down, unreachable from here, or refusing us: the conf itself
         * may still be right (the server may be up at start). */
        fprintf(stderr,
                "waituntil: warning: cannot connect to database %s (%s): "
                "the schema was not checked\n",
                red, eb);
        goto out;
    }
    /* Every transaction of this session is read-only: -t cannot write. */
    if (pg_run(db, "SET default_transaction_read_only = on", 0, NULL,
               NULL) != QB_OK ||
        pg_pending(db, pl, n, &pending) != QB_OK) {
        snprintf(eb, sizeof eb, "%s", qb_pg_errmsg(db));
        eb[strcspn(eb, "\n")] = '\0';
        fprintf(stderr, "waituntil: database %s: %s\n", red, eb);
        bad = 1;
        goto out;
    }
    fprintf(stderr,
            "waituntil: database %s: %zu migration(s) to apply at start\n",
            red, pending);
    if (bad)
        goto out;
    if (pending > 0)
        fprintf(stderr,
                "waituntil: warning: database %s: statements not checked "
                "against its schema until the migrations are applied\n",
                red);
    else
        bad = check_templates(conf, conf_path, QB_DIALECT_POSTGRES,
                              pg_explain, db, "schema of the database");
out:
    qb_pg_close(db);
    free(pl);
    app_migrations_free(list, n);
    return bad;
}
#else
static int check_pg(const web_conf *conf, const char *conf_path,
                    const char *uri, const char *mig_dir)
{
    char red[512];
    (void)mig_dir;
    fprintf(stderr, "waituntil: database %s: %s\n",
            web_db_path_redact(uri, red, sizeof red), APP_NO_PG);
    /* The statements can still be built: report their errors too. */
    check_templates(conf, conf_path, QB_DIALECT_POSTGRES, NULL, NULL, NULL);
    return 1;
}
#endif

int app_check(const web_conf *conf, const char *conf_path, const char *db_path,
              const char *mig_dir)
{
    web_db_engine engine = web_db_engine_of(db_path);
    char *dir = app_migrations_dir(mig_dir, engine);
    int bad;

    fprintf(stderr, "waituntil: the configuration file %s syntax is ok\n",
            conf_path);
    bad = check_routes(conf, conf_path, engine);
    if (dir == NULL) {
        fprintf(stderr, "waituntil: out of memory\n");
        bad = 1;
    } else if (engine == WEB_DB_POSTGRESQL) {
        bad |= check_pg(conf, conf_path, db_path, dir);
    } else {
        bad |= check_sqlite(conf, conf_path, db_path, dir);
    }
    free(dir);
    fprintf(stderr, "waituntil: configuration file %s test %s\n", conf_path,
            bad ? "failed" : "is successful");
    return bad ? -1 : 0;
}
