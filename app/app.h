/* app.h -- the waituntil program's parts: handlers and the -t check. */
#ifndef WAITUNTIL_APP_H
#define WAITUNTIL_APP_H

#include <stddef.h>

#include "defer.h"
#include "qb.h"
#include "qb_sqlite.h"
#include "web.h"
#include "web_server.h"

/* The C handlers a conf can name with `handler NAME;`. */
extern const web_handler_def app_handlers[];
extern const size_t app_nhandlers;

/* Where log_sync opens its per-thread connections (set before start). */
void app_set_sync_db(const char *path, const qb_db_config *cfg);

/* Load the .sql files of dir in name order into a list of migrations (malloc'd).
 * 0 or -1 with a message in errbuf. */
int app_migrations_load(const char *dir, qb_migration **out, size_t *n,
                        char *errbuf, size_t errlen);
void app_migrations_free(qb_migration *list, size_t n);

/* `waituntil -t`: conf already parsed; check the migrations apply to a
 * fresh database, every deferred statement prepares against that schema,
 * no route has more defer blocks than tasks_per_request, and the database
 * file (if it exists) opens; report how many migrations it still needs.
 * Prints nginx -t style lines; returns 0 if all is well, -1 if not. */
int app_check(const web_conf *conf, const char *conf_path,
              const char *db_path, const char *mig_dir);

#endif
