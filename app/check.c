/*
 * check.c -- `waituntil -t`: check a conf like `nginx -t` does, plus the
 * database schema its deferred queries need.
 */
#define _GNU_SOURCE
#include "app.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int check_defers(const web_conf *conf, const char *conf_path,
                        qb_db *db)
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
        for (size_t k = 0; k < rc->ndefers; k++) {
            const web_defer *d = &rc->defers[k];
            web_defer_tpl *t = NULL;
            sqlite3_stmt *st = NULL;
            char eb[512];

            /* The statement the server will run: the same template. */
            if (web_defer_tpl_create(d, &t, eb, sizeof eb) != QB_OK) {
                fprintf(stderr, "waituntil: %s:%d: %s %s: %s\n", conf_path,
                        d->line, kind_name(d->kind), d->table, eb);
                bad = 1;
                continue;
            }
            if (sqlite3_prepare_v2(qb_db_sqlite(db), web_defer_tpl_sql(t), -1,
                                   &st, NULL) != SQLITE_OK) {
                fprintf(stderr, "waituntil: %s:%d: %s %s: %s (schema from "
                                "the migrations)\n",
                        conf_path, d->line, kind_name(d->kind), d->table,
                        sqlite3_errmsg(qb_db_sqlite(db)));
                bad = 1;
            }
            sqlite3_finalize(st);
            web_defer_tpl_free(t);
        }
    }
    return bad;
}

int app_check(const web_conf *conf, const char *conf_path, const char *db_path,
              const char *mig_dir)
{
    qb_migration *list = NULL;
    size_t n = 0, applied = 0, failed_at = 0;
    qb_db *mem = NULL;
    char eb[512];
    int bad = 0;

    fprintf(stderr, "waituntil: the configuration file %s syntax is ok\n",
            conf_path);
    if (app_migrations_load(mig_dir, &list, &n, eb, sizeof eb) != WEB_OK) {
        fprintf(stderr, "waituntil: %s\n", eb);
        bad = 1;
        goto out;
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
    bad |= check_defers(conf, conf_path, mem);
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
    fprintf(stderr, "waituntil: configuration file %s test %s\n", conf_path,
            bad ? "failed" : "is successful");
    return bad ? -1 : 0;
}
