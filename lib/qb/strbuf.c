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
 *   Like sqlite3_str's zBase, a builder may start in caller storage (a
 *   stack array), so short statements are rendered without the heap.
 *
 *   Collapse is needed only where the text holds a run of two or more
 *   whitespace bytes: a single byte is always kept as it is (even the
 *   newline that ends a line comment).  So the builder notes such a run
 *   as it goes, cheaply: text the caller supplied (fragments, raw values)
 *   is looked at once when appended (qbi_sb_addu), and every append checks
 *   whether it puts a space right after a space.  Generated SQL (keywords,
 *   checked names, placeholders) has no run of its own, so the common
 *   statement is never collapsed at all, and when it is, the result is
 *   byte for byte what collapsing everything gave.
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
    sb->fixed = 0;
    sb->ws = 0;
}

void qbi_sb_init_buf(qbi_sb *sb, char *buf, size_t cap)
{
    qbi_sb_init(sb);
    sb->p = buf;
    sb->cap = cap;
    sb->fixed = 1;
    buf[0] = '\0';
}

void qbi_sb_free(qbi_sb *sb)
{
    if (!sb->fixed)
        free(sb->p);
    qbi_sb_init(sb);
}

void qbi_sb_reset(qbi_sb *sb)
{
    sb->len = 0;
    if (sb->p != NULL)
        sb->p[0] = '\0';
}

/* Make room for n more bytes plus the terminator.  The capacity never
 * exceeds QBI_SQL_MAX + 1, so the inline fast path of qbi_sb_add (which
 * checks only the capacity) cannot pass the cap either. */
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
    if (ncap > QBI_SQL_MAX + 1)
        ncap = QBI_SQL_MAX + 1;
    if (sb->fixed) {
        np = malloc(ncap);
        if (np != NULL && sb->len > 0)
            memcpy(np, sb->p, sb->len);
    } else {
        np = realloc(sb->p, ncap);
    }
    if (np == NULL) {
        sb->err = QB_ENOMEM;
        return sb->err;
    }
    sb->p = np;
    sb->cap = ncap;
    sb->fixed = 0;
    sb->p[sb->len] = '\0';
    return QB_OK;
}

void qbi_sb_add_slow(qbi_sb *sb, const char *s, size_t n)
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

void qbi_sb_addu(qbi_sb *sb, const char *s, size_t n)
{
    size_t i;

    /* Only a run of two or more whitespace bytes can make collapse change
     * anything (a single byte, even the newline ending a line comment,
     * is kept as it is), so one look for such a pair decides. */
    for (i = 0; !sb->ws && i + 1 < n; i++)
        if (qbi_is_space(s[i]) && qbi_is_space(s[i + 1]))
            sb->ws = 1;
    qbi_sb_add(sb, s, n);
}

void qbi_sb_addnum(qbi_sb *sb, char mark, int64_t v)
{
    char buf[24], *e = buf + sizeof buf, *p = e;
    /* magnitude as unsigned: INT64_MIN has no positive int64 */
    uint64_t u = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    if (mark != '\0')
        *--p = mark;
    qbi_sb_add(sb, p, (size_t)(e - p));
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

    /* A builder that never grew owns no heap buffer: make one, and write
     * its terminator (an empty text is still a C string). */
    if (sb->err == QB_OK && (sb->p == NULL || sb->fixed)) {
        p = malloc(sb->len + 1);
        if (p == NULL) {
            sb->err = QB_ENOMEM;
        } else {
            if (sb->len > 0)
                memcpy(p, sb->p, sb->len);
            p[sb->len] = '\0';
            if (!sb->fixed)
                free(sb->p);
            sb->p = p;
            sb->fixed = 0;
            sb->cap = sb->len + 1;
        }
    }
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

void qbi_sql_collapse(qbi_sb *out, const char *s, size_t n)
{
    size_t at = out->len;

    qbi_sb_add(out, s, n);
    if (n == 0 || out->err != QB_OK)
        return;
    out->len = at + qbi_sql_collapse_inplace(out->p + at, n);
}

size_t qbi_sql_collapse_inplace(char *s, size_t n)
{
    size_t i = 0, w = 0, j, run;
    int closed, after_line_comment = 0;
    char c;

    /* w <= i throughout: every step writes at most what it consumed. */
    while (i < n) {
        c = s[i];
        j = qbi_sql_skip(s, n, i, 1, &closed);
        if (j != i) {
            after_line_comment = c == '-';
            if (w != i)
                memmove(s + w, s + i, j - i);
            w += j - i;
            i = j;
            continue;
        }
        if (!qbi_is_space(c)) {
            s[w++] = c;
            after_line_comment = 0;
            i++;
            continue;
        }
        for (run = 0; i + run < n && qbi_is_space(s[i + run]); run++)
            ;
        /* after a line comment a newline must stay, or the comment would
         * swallow what follows */
        if (after_line_comment)
            s[w++] = '\n';
        else
            s[w++] = run >= 2 ? ' ' : c;
        after_line_comment = 0;
        i += run;
    }
    s[w] = '\0';
    return w;
}
