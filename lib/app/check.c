/*
 * check.c -- `waituntil -t`: check a conf like `nginx -t` does, plus the
 * database schema its deferred queries need.
 *
 * The aim is the start's verdict, given before the start: the deferred
 * statements are checked by app_check_defers, the function the start
 * runs after its migrations, against the schema the start will have.
 * SQLite: the database's folder is judged by web_db_dir_prepare, as at
 * start; then, without a database file, the migrations run on a fresh
 * in-memory database; with one and nothing pending, the file itself is
 * used (read-only); with N migrations pending, a memory copy of its
 * schema gets them first, so a table dropped from the live database is
 * found and a table a pending migration makes is not missed.
 * PostgreSQL: there is no scratch database to build, so the statements
 * are built in the PostgreSQL dialect (which refuses SQLite-only
 * constructs) and, when the server answers and its schema is current,
 * checked with EXPLAIN (parsed and planned, never run) in a read-only
 * session.  -t never writes to the configured database, never applies a
 * migration and creates nothing.
 */
#define _GNU_SOURCE
#include "app_int.h"

#include <limits.h>
#include <stdarg.h>
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
static int check_routes(const web_conf *conf,
                        const web_handler_def *handlers, size_t nhandlers)
{
    int bad = 0;
    for (size_t r = 0; r < conf->nroutes; r++) {
        const web_route_conf *rc = &conf->routes[r];
        if (rc->handler != NULL) {
            size_t h;
            for (h = 0; h < nhandlers; h++)
                if (strcmp(handlers[h].name, rc->handler) == 0)
                    break;
            if (h == nhandlers) {
                fprintf(stderr, "waituntil: %s:%d: unknown handler \"%s\"\n",
                        rc->file, rc->line, rc->handler);
                bad = 1;
            }
        }
        if (rc->ndefers > conf->pool.tasks_per_request) {
            fprintf(stderr,
                    "waituntil: %s:%d: route has %zu defer blocks, more than "
                    "pool tasks_per_request (%zu)\n",
                    rc->file, rc->line, rc->ndefers,
                    conf->pool.tasks_per_request);
            bad = 1;
        }
    }
    return bad;
}

/* ---- the deferred statements against a schema ----------------------------
 * One function for -t and for the start, so that they cannot disagree:
 * app_check_defers builds each defer block's statement as the server
 * does and has the engine compile it against the connection's schema.
 * Both engines EXPLAIN it with every parameter NULL: SQLite compiles it
 * (resolving every table, column and function) and lists its bytecode;
 * PostgreSQL runs parse analysis and planning.  Nothing is executed. */

/* Run one statement in db's dialect; rows into *out if out is non-NULL. */
static int conn_run(qb_conn *db, const char *sql, size_t nargs,
                    const qb_value *args, qb_result **out)
{
    qb_query *q = NULL;
    int rc = qb_query_raw_dialect(&q, qb_conn_dialect(db), sql, nargs, args,
                                  out != NULL ? QB_FETCH_ALL : QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_exec(db, q, out);
    qb_query_free(q);
    return rc;
}

/* QB_OK if the connection compiles t's statement, else QB_ESQL (or
 * QB_ENOMEM) with the engine's message (first line) in eb.  The NULLs are
 * untyped, so PostgreSQL infers each type from its column. */
static int stmt_compiles(qb_conn *db, const web_defer_tpl *t, char *eb,
                         size_t el)
{
    const char *sql = web_defer_tpl_sql(t);
    size_t np = qb_query_nparams(web_defer_tpl_query(t));
    qb_value *nulls = calloc(np ? np : 1, sizeof *nulls);
    char *text = NULL;
    int rc = QB_ENOMEM;

    if (nulls != NULL && asprintf(&text, "EXPLAIN %s", sql) >= 0) {
        for (size_t i = 0; i < np; i++)
            nulls[i] = qb_null();
        rc = conn_run(db, text, np, nulls, NULL);
        free(text);
    }
    free(nulls);
    if (rc == QB_OK)
        return QB_OK;
    snprintf(eb, el, "%s", rc == QB_ENOMEM ? "out of memory" : qb_errmsg(db));
    eb[strcspn(eb, "\n")] = '\0';
    return rc;
}

/* "GET|POST /a /b/:id" or "any /log": the route as the conf wrote it. */
static void route_name(const web_route_conf *rc, char *buf, size_t len)
{
    size_t o = 0;
    int w;

    buf[0] = '\0';
    if (rc->methods == WEB_M_ANY) {
        w = snprintf(buf, len, "any");
        o = w > 0 ? (size_t)w : 0;
    } else {
        for (unsigned b = 1; b != 0 && b < WEB_M_OTHER; b <<= 1) {
            const char *nm = (rc->methods & b) ? web_method_name(b) : NULL;
            if (nm == NULL || o >= len)
                continue;
            w = snprintf(buf + o, len - o, "%s%s", o > 0 ? "|" : "", nm);
            o += w > 0 ? (size_t)w : 0;
        }
    }
    for (size_t p = 0; p < rc->npaths && o < len; p++) {
        w = snprintf(buf + o, len - o, " %s", rc->paths[p]);
        o += w > 0 ? (size_t)w : 0;
    }
}

int app_check_defers(const web_conf *conf, qb_dialect dialect,
                     qb_conn *db, const char *against,
                     app_report_fn report, void *ud, size_t *nbad)
{
    size_t bad = 0;

    if (nbad != NULL)
        *nbad = 0;
    if (conf == NULL || report == NULL ||
        (db != NULL && qb_conn_dialect(db) != dialect))
        return WEB_EINVAL;
    for (size_t r = 0; r < conf->nroutes; r++) {
        const web_route_conf *rc = &conf->routes[r];
        char rname[1024];

        if (rc->ndefers > 0)
            route_name(rc, rname, sizeof rname);
        for (size_t k = 0; k < rc->ndefers; k++) {
            const web_defer *d = &rc->defers[k];
            web_defer_tpl *t = NULL;
            char eb[512], line[2048];
            int built = web_defer_tpl_create(d, dialect, &t, eb, sizeof eb) ==
                        QB_OK;

            if (!built || (db != NULL && stmt_compiles(db, t, eb,
                                                       sizeof eb) != QB_OK)) {
                /* The engine's message is one line (libpq may add a
                 * DETAIL or HINT line; the first says it). */
                eb[strcspn(eb, "\n")] = '\0';
                snprintf(line, sizeof line,
                         "%s:%d: route %s: defer %zu: %s %s: %s%s%s%s",
                         d->file, d->line, rname, k + 1,
                         kind_name(d->kind), d->table, eb,
                         built && against != NULL ? " (" : "",
                         built && against != NULL ? against : "",
                         built && against != NULL ? ")" : "");
                report(ud, line);
                bad++;
            }
            web_defer_tpl_free(t);
        }
    }
    if (nbad != NULL)
        *nbad = bad;
    return bad > 0 ? WEB_ECONF : WEB_OK;
}

/* -t's reporter: one line on stderr. */
static void print_line(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "waituntil: %s\n", line);
}

/* -t's line about a database: "waituntil: database DB: " and fmt's text. */
static void say_db(const char *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say_db(const char *db, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "waituntil: database %s: ", db);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- SQLite --------------------------------------------------------------- */

/* Whether db has a table named name (*has: 1 or 0).  QB_OK, or QB_ESQL
 * with the message in db's handle. */
static int sqlite_has_table(sqlite3 *db, const char *name, int *has)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT 1 FROM sqlite_master WHERE type = "
                                "'table' AND name = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    sqlite3_finalize(st);
    *has = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? QB_OK : QB_ESQL;
}

/* How many of list the live database has not recorded in its migrations
 * table (qb's default, the one main.c applies with), read without
 * qb_migrations_unapplied, which creates the table: a write.  QB_OK, or
 * QB_ESQL with SQLite's message in eb. */
static int sqlite_pending(sqlite3 *live, const qb_migration *list, size_t n,
                          size_t *pending, char *eb, size_t el)
{
    sqlite3_stmt *st = NULL;
    int has = 0, rc;

    *pending = n;
    if (sqlite_has_table(live, "migrations", &has) != QB_OK) {
        snprintf(eb, el, "%s", sqlite3_errmsg(live));
        return QB_ESQL;
    }
    if (!has)
        return QB_OK; /* nothing was ever applied */
    rc = sqlite3_prepare_v2(live, "SELECT 1 FROM migrations WHERE name = ?1",
                            -1, &st, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        rc = sqlite3_bind_text(st, 1, list[i].name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            (*pending)--;
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        return QB_OK;
    snprintf(eb, el, "%s", sqlite3_errmsg(live));
    return QB_ESQL;
}

/*
 * Copy the live database's schema (tables, indexes, views, triggers; no
 * rows) into the empty mem, and the names its migrations table records,
 * so that the pending migrations can be applied to the copy as the start
 * will apply them to the database.  Objects are made in the order they
 * were (rowid order of sqlite_master); SQLite's own (sqlite_*) are made
 * by SQLite; a table that already exists when its turn comes is the
 * shadow table of a virtual table made before it.  QB_OK, or QB_ESQL
 * with the object and SQLite's message in eb.
 */
static int sqlite_copy_schema(sqlite3 *live, sqlite3 *mem, char *eb,
                              size_t el)
{
    sqlite3_stmt *st = NULL, *ins = NULL;
    int has = 0, rc = sqlite3_prepare_v2(
        live,
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
        -1, &st, NULL);

    if (rc != SQLITE_OK) {
        snprintf(eb, el, "cannot read its schema: %s", sqlite3_errmsg(live));
        return QB_ESQL;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *sql = (const char *)sqlite3_column_text(st, 2);
        if (type == NULL || name == NULL || sql == NULL)
            continue;
        if (strcmp(type, "table") == 0 &&
            sqlite_has_table(mem, name, &has) == QB_OK && has)
            continue; /* a shadow table, made with its virtual table */
        if (sqlite3_exec(mem, sql, NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(eb, el, "cannot copy its schema: %s %s: %s", type, name,
                     sqlite3_errmsg(mem));
            sqlite3_finalize(st);
            return QB_ESQL;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        snprintf(eb, el, "cannot read its schema: %s", sqlite3_errmsg(live));
        return QB_ESQL;
    }
    if (sqlite_has_table(live, "migrations", &has) != QB_OK) {
        snprintf(eb, el, "cannot read its schema: %s", sqlite3_errmsg(live));
        return QB_ESQL;
    }
    if (!has)
        return QB_OK;
    rc = sqlite3_prepare_v2(live, "SELECT name FROM migrations", -1, &st,
                            NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(mem, "INSERT INTO migrations (name) VALUES (?1)",
                                -1, &ins, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = sqlite3_bind_value(ins, 1, sqlite3_column_value(st, 0));
        if (rc == SQLITE_OK && (rc = sqlite3_step(ins)) == SQLITE_DONE)
            rc = sqlite3_reset(ins);
    }
    if (rc != SQLITE_DONE)
        snprintf(eb, el, "cannot copy its migrations table: %s",
                 ins != NULL && sqlite3_errcode(mem) != SQLITE_OK
                     ? sqlite3_errmsg(mem)
                     : sqlite3_errmsg(live));
    sqlite3_finalize(ins);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? QB_OK : QB_ESQL;
}

/*
 * The verdict the start would give on a SQLite database: its folder
 * (web_db_dir_prepare, nothing created), then the schema the start will
 * check the statements against, built without writing to the database:
 *   no database yet  -> the migrations applied to an empty memory database
 *   nothing pending  -> the database itself, opened read-only
 *   N pending        -> a memory copy of its schema with the N applied
 */
static int check_sqlite(const web_conf *conf, const char *db_path,
                        const char *mig_dir)
{
    qb_migration *list = NULL;
    size_t n = 0, applied = 0, failed_at = 0, pending = 0;
    qb_conn *mem = NULL, *live = NULL, *target = NULL;
    qb_conn_config cfg;
    web_db_dir_state dst = WEB_DB_DIR_READY;
    const char *against = "schema from the migrations";
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
    if (strcmp(db_path, ":memory:") != 0 && access(db_path, F_OK) == 0) {
        memset(&cfg, 0, sizeof cfg);
        cfg.engine = QB_ENGINE_SQLITE;
        cfg.readonly = 1;
        if (qb_open(&live, db_path, &cfg, eb, sizeof eb) != QB_OK ||
            sqlite_pending(qb_conn_sqlite(live), list, n, &pending, eb,
                           sizeof eb) != QB_OK) {
            say_db(db_path, "%s", eb);
            bad = 1;
            goto out;
        }
        say_db(db_path, "%zu migration(s) to apply at start", pending);
        against = pending > 0
                      ? "schema of the database after its pending migrations"
                      : "schema of the database";
        target = live;
    }
    if (live == NULL || pending > 0) {
        if (qb_open(&mem, ":memory:", NULL, eb, sizeof eb) != QB_OK ||
            (live != NULL && sqlite_copy_schema(qb_conn_sqlite(live),
                                                qb_conn_sqlite(mem), eb,
                                                sizeof eb) != QB_OK)) {
            say_db(live != NULL ? db_path : ":memory:", "%s", eb);
            bad = 1;
            goto out;
        }
        if (qb_migrations_apply(mem, NULL, list, n, &applied, &failed_at) !=
            QB_OK) {
            const char *nm = failed_at < n ? list[failed_at].name : "?";
            if (live != NULL)
                say_db(db_path, "pending migration %s/%s fails: %s", mig_dir,
                       nm, qb_errmsg(mem));
            else
                fprintf(stderr, "waituntil: %s/%s: %s\n", mig_dir, nm,
                        qb_errmsg(mem));
            bad = 1;
            goto out;
        }
        target = mem;
    }
    if (app_check_defers(conf, QB_DIALECT_SQLITE, target, against, print_line,
                         NULL, NULL) != WEB_OK)
        bad = 1;
out:
    qb_close(live);
    qb_close(mem);
    app_migrations_free(list, n);
    return bad;
}

/* ---- PostgreSQL ----------------------------------------------------------- */

/* How many of list are not recorded in the migrations table, read
 * without qb_migrations_unapplied (which creates the table: a write).
 * The table name is qb's default, the one main.c applies with. */
static int pg_pending(qb_conn *db, const qb_migration *list, size_t n,
                      size_t *pending)
{
    qb_result *res = NULL;
    int rc = conn_run(db, "SELECT name FROM migrations", 0, NULL, &res);

    *pending = n;
    if (rc != QB_OK)
        /* 42P01 undefined_table: nothing was ever applied. */
        return strcmp(qb_sqlstate(db), "42P01") == 0 ? QB_OK : rc;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < qb_result_rows(res); j++) {
            const char *nm = qb_result_text(res, j, 0, NULL);
            if (nm != NULL && strcmp(nm, list[i].name) == 0) {
                (*pending)--;
                break;
            }
        }
    qb_result_free(res);
    return QB_OK;
}

static int check_pg(const web_conf *conf, const char *uri,
                    const char *mig_dir)
{
    qb_migration *list = NULL;
    qb_conn_config cfg;
    qb_conn *db = NULL;
    size_t n = 0, pending = 0;
    char eb[512], red[512];
    int bad;

    web_db_path_redact(uri, red, sizeof red);
    if (!qb_engine_available(QB_ENGINE_POSTGRES)) {
        say_db(red, "%s", APP_NO_PG);
        /* The statements can still be built: report their errors too. */
        app_check_defers(conf, QB_DIALECT_POSTGRES, NULL, NULL, print_line,
                         NULL, NULL);
        return 1;
    }
    if (app_migrations_load(mig_dir, &list, &n, eb, sizeof eb) != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n", eb);
        return 1;
    }
    /* Statements in the PostgreSQL dialect: no server needed. */
    bad = app_check_defers(conf, QB_DIALECT_POSTGRES, NULL, NULL, print_line,
                           NULL, NULL) != WEB_OK;
    memset(&cfg, 0, sizeof cfg);
    cfg.engine = QB_ENGINE_POSTGRES;
    cfg.connect_timeout_s = 5;
    cfg.application_name = "waituntil -t";
    if (qb_open(&db, uri, &cfg, eb, sizeof eb) != QB_OK) {
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
    if (conn_run(db, "SET default_transaction_read_only = on", 0, NULL,
                 NULL) != QB_OK ||
        pg_pending(db, list, n, &pending) != QB_OK) {
        snprintf(eb, sizeof eb, "%s", qb_errmsg(db));
        eb[strcspn(eb, "\n")] = '\0';
        say_db(red, "%s", eb);
        bad = 1;
        goto out;
    }
    say_db(red, "%zu migration(s) to apply at start", pending);
    if (bad)
        goto out;
    if (pending > 0)
        fprintf(stderr,
                "waituntil: warning: database %s: statements not checked "
                "against its schema until the migrations are applied\n",
                red);
    else
        bad = app_check_defers(conf, QB_DIALECT_POSTGRES, db,
                               "schema of the database", print_line, NULL,
                               NULL) != WEB_OK;
out:
    qb_close(db);
    app_migrations_free(list, n);
    return bad;
}

/* ---- a reload's check: the running database, read-only ---------------- */

int app_check_live(const web_conf *conf, const char *db_path,
                   app_report_fn report, void *ud, size_t *nbad, char *eb,
                   size_t el)
{
    int pg = web_db_engine_of(db_path) == WEB_DB_POSTGRESQL;
    qb_conn_config cfg;
    qb_conn *db = NULL;
    int rc;

    if (nbad != NULL)
        *nbad = 0;
    if (pg && !qb_engine_available(QB_ENGINE_POSTGRES)) {
        snprintf(eb, el, "%s", APP_NO_PG);
        return WEB_EINVAL;
    }
    if (!pg && strcmp(db_path, ":memory:") == 0) {
        /* No schema another connection could see: build them only. */
        return app_check_defers(conf, QB_DIALECT_SQLITE, NULL, NULL, report,
                                ud, nbad);
    }
    memset(&cfg, 0, sizeof cfg);
    if (pg) {
        cfg.engine = QB_ENGINE_POSTGRES;
        cfg.connect_timeout_s = 5;
        cfg.application_name = "waituntil reload";
    } else {
        cfg.engine = QB_ENGINE_SQLITE;
        cfg.readonly = 1;
        cfg.busy_timeout_ms = 5000;
    }
    if (qb_open(&db, db_path, &cfg, eb, el) != QB_OK) {
        eb[strcspn(eb, "\n")] = '\0';
        return WEB_EIO;
    }
    /* Like -t: a PostgreSQL session that cannot write. */
    if (pg && conn_run(db, "SET default_transaction_read_only = on", 0, NULL,
                       NULL) != QB_OK) {
        snprintf(eb, el, "%s", qb_errmsg(db));
        eb[strcspn(eb, "\n")] = '\0';
        qb_close(db);
        return WEB_EIO;
    }
    rc = app_check_defers(conf, qb_conn_dialect(db), db,
                          "schema of the database", report, ud, nbad);
    qb_close(db);
    return rc;
}

int app_check(const web_conf *conf, const char *conf_path, const char *db_path,
              const char *mig_dir, const web_handler_def *handlers,
              size_t nhandlers)
{
    web_db_engine engine = web_db_engine_of(db_path);
    char *dir = app_migrations_dir(mig_dir, engine);
    int bad;

    fprintf(stderr, "waituntil: the configuration file %s syntax is ok\n",
            conf_path);
    bad = check_routes(conf, handlers, nhandlers);
    if (dir == NULL) {
        fprintf(stderr, "waituntil: out of memory\n");
        bad = 1;
    } else if (engine == WEB_DB_POSTGRESQL) {
        bad |= check_pg(conf, db_path, dir);
    } else {
        bad |= check_sqlite(conf, db_path, dir);
    }
    free(dir);
    fprintf(stderr, "waituntil: configuration file %s test %s\n", conf_path,
            bad ? "failed" : "is successful");
    return bad ? -1 : 0;
}
