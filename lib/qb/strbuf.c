/*
 * strbuf.c -- growable strings and the small SQL lexer of lib/qb.
 *
 * DESIGN
 *   The builder never interprets SQL beyond what it must: where a quoted
 *   literal, quoted identifier or comment starts and ends.  That is enough
 *   to (a) tell a placeholder `?` from a `?` inside '...', (b) collapse
 *   whitespace like workers-qb's trimQuery without touching literal bytes,
 *   and (c) refuse a fragment that leaves a quote or comment open (which
 *   would swallow the SQL the builder appends after it).
 *
 *   The string builder follows sqlite3_str: every append may fail, the
 *   first failure is sticky, and the caller checks once at the end.  Sizes
 *   are capped at QBI_SQL_MAX and checked by subtraction before growing.
 */
#include "qb_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qbi_sb_init(qbi_sb *sb)
{
    sb->p = NULL;
    sb->len = 0;
    sb->cap = 0;
    sb->err = QB_OK;
}

void qbi_sb_free(qbi_sb *sb)
{
    free(sb->p);
    qbi_sb_init(sb);
}

void qbi_sb_reset(qbi_sb *sb)
{
    sb->len = 0;
    if (sb->p != NULL)
        sb->p[0] = '\0';
}

/* Make room for n more bytes plus the terminator. */
static int sb_reserve(qbi_sb *sb, size_t n)
{
    size_t want, ncap;
    char *np;

    if (sb->err != QB_OK)
        return sb->err;
    if (n > QBI_SQL_MAX - sb->len) {
        sb->err = QB_EINVAL;
        return sb->err;
    }
    want = sb->len + n + 1;
    if (want <= sb->cap)
        return QB_OK;
    ncap = sb->cap ? sb->cap : 64;
    while (ncap < want)
        ncap *= 2; /* want <= QBI_SQL_MAX + 1, so this cannot overflow */
    np = realloc(sb->p, ncap);
    if (np == NULL) {
        sb->err = QB_ENOMEM;
        return sb->err;
    }
    sb->p = np;
    sb->cap = ncap;
    return QB_OK;
}

void qbi_sb_add(qbi_sb *sb, const char *s, size_t n)
{
    if (sb_reserve(sb, n) != QB_OK)
        return;
    if (n > 0)
        memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
}

void qbi_sb_adds(qbi_sb *sb, const char *s)
{
    qbi_sb_add(sb, s, strlen(s));
}

void qbi_sb_addc(qbi_sb *sb, char c)
{
    qbi_sb_add(sb, &c, 1);
}

void qbi_sb_addf(qbi_sb *sb, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (sb->err == QB_OK)
            sb->err = QB_EINVAL;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        qbi_sb_add(sb, tmp, (size_t)n);
        return;
    }
    if (sb_reserve(sb, (size_t)n) != QB_OK)
        return;
    va_start(ap, fmt);
    vsnprintf(sb->p + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

char *qbi_sb_take(qbi_sb *sb, size_t *len_out)
{
    char *p;

    if (sb->err == QB_OK && sb->p == NULL)
        sb_reserve(sb, 0);
    if (sb->err != QB_OK) {
        qbi_sb_free(sb);
        if (len_out != NULL)
            *len_out = 0;
        return NULL;
    }
    p = sb->p;
    if (len_out != NULL)
        *len_out = sb->len;
    qbi_sb_init(sb);
    return p;
}

/* ---- lexer ------------------------------------------------------------- */

size_t qbi_sql_skip(const char *s, size_t n, size_t i, int brackets,
                    int *closed)
{
    char c, endc;
    size_t j;

    *closed = 1;
    if (i >= n)
        return i;
    c = s[i];
    if (c == '\'' || c == '"' || c == '`' || (brackets && c == '[')) {
        endc = c == '[' ? ']' : c;
        for (j = i + 1; j < n; j++) {
            if (s[j] != endc)
                continue;
            /* A doubled quote is an escaped quote; brackets do not nest
             * and have no escape. */
            if (endc != ']' && j + 1 < n && s[j + 1] == endc) {
                j++;
                continue;
            }
            return j + 1;
        }
        *closed = 0;
        return n;
    }
    if (c == '-' && i + 1 < n && s[i + 1] == '-') {
        for (j = i + 2; j < n; j++)
            if (s[j] == '\n')
                return j; /* the newline is not part of the comment */
        *closed = 0;
        return n;
    }
    if (c == '/' && i + 1 < n && s[i + 1] == '*') {
        for (j = i + 2; j + 1 < n; j++)
            if (s[j] == '*' && s[j + 1] == '/')
                return j + 2;
        *closed = 0;
        return n;
    }
    return i;
}

static int is_space(char c)
{
    /* JavaScript's \s for the ASCII range, which is what trimQuery used. */
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

void qbi_sql_collapse(qbi_sb *out, const char *s, size_t n)
{
    size_t i = 0, j, run;
    int closed, after_line_comment = 0;

    while (i < n) {
        j = qbi_sql_skip(s, n, i, 1, &closed);
        if (j != i) {
            after_line_comment = s[i] == '-';
            qbi_sb_add(out, s + i, j - i);
            i = j;
            continue;
        }
        if (!is_space(s[i])) {
            qbi_sb_addc(out, s[i]);
            after_line_comment = 0;
            i++;
            continue;
        }
        for (run = 0; i + run < n && is_space(s[i + run]); run++)
            ;
        if (after_line_comment)
            qbi_sb_addc(out, '\n');
        else if (run >= 2)
            qbi_sb_addc(out, ' ');
        else
            qbi_sb_addc(out, s[i]);
        after_line_comment = 0;
        i += run;
    }
}
