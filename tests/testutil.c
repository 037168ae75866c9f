/* testutil.c -- see testutil.h */
#define _GNU_SOURCE
#include "testutil.h"
#include <sqlite3.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t tu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tu_now_ms(void) { return tu_now_ns() / 1000000; }

const char *tu_data_path(const char *rel)
{
    static char buf[4096];
    const char *dir = getenv("TESTS_SRCDIR");
#ifdef TESTS_SRCDIR_DEFAULT
    if (dir == NULL)
        dir = TESTS_SRCDIR_DEFAULT;
#endif
    if (dir == NULL)
        dir = ".";
    snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    return buf;
}

char *tu_mkdtemp(const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    char buf[4096];
    if (tmp == NULL || *tmp == '\0')
        tmp = "/tmp";
    snprintf(buf, sizeof buf, "%s/%s.XXXXXX", tmp, prefix ? prefix : "wu");
    if (mkdtemp(buf) == NULL)
        return NULL;
    return strdup(buf);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void tu_rmtree(const char *path)
{
    if (path != NULL)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *n = realloc(buf, ncap + 1);
            if (n == NULL) { free(buf); fclose(f); return NULL; }
            buf = n; cap = ncap;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return NULL; }
    buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

int tu_sqlite_exec(const char *path, const char *sql, char *eb, size_t el)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    }
    if (rc != SQLITE_OK)
        snprintf(eb, el, "%s", err != NULL ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

int tu_sqlite_scalar(const char *path, const char *sql, int64_t *v)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open(path, &db);
    *v = -1;
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    }
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}
