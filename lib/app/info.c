/*
 * info.c -- what the program says about itself: `-V` (version, build
 * options, the libraries it runs with) and `-T` (the configuration as the
 * start would use it, like `nginx -T`).
 */
#define _GNU_SOURCE
#include "config.h" /* HAVE_LIBPQ, before the includes it selects */

#include "app_int.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif

void app_version_print(FILE *f)
{
    fprintf(f, "waituntil %s\n", PACKAGE_VERSION);
    fprintf(f, "configure arguments:%s%s\n",
            WU_CONFIGURE_ARGS[0] != '\0' ? " " : " (none)",
            WU_CONFIGURE_ARGS);
    fprintf(f, "default conf: %s (prefix %s)\n", WU_DEFAULT_CONF,
            WU_DEFAULT_PREFIX);
    /* The libraries found at run time, which may differ from the headers
     * the program was built with. */
    fprintf(f, "libsqlite3 %s (built with %s)\n", sqlite3_libversion(),
            SQLITE_VERSION);
    fprintf(f, "libjansson %s (built with %s)\n", jansson_version_str(),
            JANSSON_VERSION);
#ifdef HAVE_LIBPQ
    {
        int v = PQlibVersion();
        /* 10 and later: major * 10000 + minor. */
        fprintf(f, "libpq %d.%d\n", v / 10000, v % 10000);
    }
#else
    fprintf(f, "libpq: not built (configure --without-postgresql or no "
               "libpq-dev)\n");
#endif
    fprintf(f, "libfcgi: (it reports no version)\n");
}

/* Copy the file at path to f; 0, or -1 if it cannot be read. */
static int copy_file(FILE *f, const char *path)
{
    FILE *in = fopen(path, "rb");
    char buf[8192];
    size_t r, last = 0;
    if (in == NULL)
        return -1;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0) {
        fwrite(buf, 1, r, f);
        last = r;
    }
    if (last > 0 && buf[last - 1] != '\n')
        fputc('\n', f);
    r = (size_t)ferror(in);
    fclose(in);
    return r ? -1 : 0;
}

int app_conf_dump(FILE *f, const web_conf *conf, const app_paths *p)
{
    int bad = 0;
    char red[512];

    fprintf(f,
            "# waituntil -T: the configuration the start would use\n"
            "# prefix:     %s\n"
            "# conf:       %s\n"
            "# listen:     %s\n"
            "# database:   %s (%s)\n"
            "# migrations: %s\n"
            "# log:        %s\n"
            "# access log: %s\n",
            p->prefix[0] != '\0' ? p->prefix : "/", p->conf,
            p->listen != NULL ? p->listen : "-",
            web_db_path_redact(p->db, red, sizeof red),
            web_db_engine_name(web_db_engine_of(p->db)),
            p->migrations != NULL ? p->migrations : "-",
            p->log != NULL ? p->log : "stderr",
            p->access_log != NULL ? p->access_log : "off");
    for (size_t i = 0; i < conf->nfiles; i++) {
        fprintf(f, "\n# configuration file %s:\n", conf->files[i]);
        if (copy_file(f, conf->files[i]) != 0) {
            fprintf(f, "# (cannot be read again)\n");
            bad = 1;
        }
    }
    fflush(f);
    return bad || ferror(f) ? -1 : 0;
}
