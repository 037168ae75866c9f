/*
 * strbuf.c -- growable strings and the small SQL lexer of lib/qb.
 *
 * DESIGN
 *   The builder never interprets SQL beyond what it must: where a quoted
 *   literal, quoted identifier or comment starts and ends.  That is enough
 *   to (a) tell a placeholder `?` (or `$N`) from one inside '...', (b)
 *   collapse whitespace like workers-qb's trimQuery without touching
 *   literal bytes, and (c) refuse a fragment that leaves a quote or
 *   comment open (which would swallow the SQL the builder appends after
 *   it).
 *
 *   One lexer serves both dialects, because they share most rules ('..'
 *   with '', ".." with "", -- and block comments); a dialect switch adds
 *   SQLite's `..` and [..] quoting, or PostgreSQL's E'..' (backslash
 *   escapes), $$..$$ / $tag$..$tag$ and nested block comments.  On
 *   PostgreSQL a name or a number is one token too (a$1 and x$$ are
 *   names, E'..' is the name E then a quote), so a scan from the start
 *   of the text only ever looks at a '$' or quote where the server's
 *   lexer would start a token: no look-back.  The PostgreSQL executor
 *   counts $N with it (qbi_pg_max_param), so the text
 *   qb_query_raw_dialect renders and the count the executor checks come
 *   from the same rules.
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
#include <strings.h>

void *qbi_grow(void *v, size_t *cap, size_t n, size_t elem, size_t first,
               const void *inl)
{
    size_t ncap;
    void *nv;

    if (n < *cap)
        return v;
    ncap = *cap ? *cap * 2 : first;
    if (ncap < *cap || ncap > SIZE_MAX / elem)
        return NULL;
    if (v != NULL && v == inl) {
        nv = malloc(ncap * elem);
        if (nv != NULL && n > 0)
            memcpy(nv, v, n * elem);
    } else {
        nv = realloc(v, ncap * elem);
    }
    if (nv != NULL)
        *cap = ncap;
    return nv;
}

int qbi_array_new(void **v, size_t *cap, size_t n, size_t elem)
{
    *v = NULL;
    *cap = 0;
    if (n == 0)
        return QB_OK;
    if ((*v = calloc(n, elem)) == NULL)
        return QB_ENOMEM;
    *cap = n;
    return QB_OK;
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

/* Index just past a quoted run that starts at s[i] == q and ends at the
 * next lone q (a doubled q stays inside); esc: a backslash escapes the
 * byte after it (PostgreSQL's E'..').  n and *closed = 0 if unterminated. */
static size_t skip_quoted(const char *s, size_t n, size_t i, char q, int esc,
                          int *closed)
{
    size_t j;

    for (j = i + 1; j < n; j++) {
        if (esc && s[j] == '\\') {
            j++;                 /* whatever follows is data, even q */
            continue;
        }
        if (s[j] != q)
            continue;
        if (j + 1 < n && s[j + 1] == q) {
            j++;
            continue;
        }
        return j + 1;
    }
    *closed = 0;
    return n;
}

/* s[i] == '$' at a token start on PostgreSQL, not a $N: the end of the
 * $tag$...$tag$ string it opens, or i when it opens none.  A tag is
 * identifier characters that do not start with a digit and contain no
 * '$'. */
static size_t skip_dollar(const char *s, size_t n, size_t i, int *closed)
{
    size_t k = i + 1, dl, j;

    if (k < n && s[k] >= '0' && s[k] <= '9')
        return i;                /* a parameter */
    while (k < n && s[k] != '$' && qbi_pg_idchar((unsigned char)s[k]))
        k++;
    if (k >= n || s[k] != '$')
        return i;
    dl = k + 1 - i;              /* delimiter length, both '$' included */
    for (j = k + 1; j < n && n - j >= dl; j++)
        if (s[j] == '$' && memcmp(s + j, s + i, dl) == 0)
            return j + dl;
    *closed = 0;
    return n;
}

/* s[i..] == "/ *": the end of the block comment (PostgreSQL nests them,
 * SQLite does not). */
static size_t skip_block(const char *s, size_t n, size_t i, int nest,
                         int *closed)
{
    size_t j, depth = 1;

    for (j = i + 2; j + 1 < n; j++) {
        if (s[j] == '*' && s[j + 1] == '/') {
            if (--depth == 0)
                return j + 2;
            j++;
        } else if (nest && s[j] == '/' && s[j + 1] == '*') {
            depth++;
            j++;
        }
    }
    *closed = 0;
    return n;
}

/* PostgreSQL: the end of the name (a letter, '_' or a byte >= 0x80, then
 * those, digits and '$') or the number (digits, with '_' or '.' between
 * digits) that starts
 * at s[i]; i if neither does.  A name is one token, so a '$' or quote
 * inside it is never looked at on its own (a$1 and x$$ are names); a '$'
 * right after a number or a parameter starts a token, and letters right
 * after a number start a name, as in the server's lexer (1$2 is 1 then
 * $2, 6E'..' is 6 then an escape string). */
static size_t pg_word_end(const char *s, size_t n, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    size_t k;

    if (c >= '0' && c <= '9') {
        for (k = i + 1; k < n; k++) {
            c = (unsigned char)s[k];
            if ((c == '_' || c == '.') && k + 1 < n && s[k + 1] >= '0' &&
                s[k + 1] <= '9')
                continue;        /* 1_000, 1.5 */
            if (!(c >= '0' && c <= '9'))
                break;
        }
        return k;
    }
    if (!qbi_pg_idchar(c) || c == '$')
        return i;
    for (k = i + 1; k < n && qbi_pg_idchar((unsigned char)s[k]); k++)
        ;
    return k;
}

size_t qbi_sql_skip(const char *s, size_t n, size_t i, qb_dialect d,
                    int *closed)
{
    int pg = d == QB_DIALECT_POSTGRES;
    size_t j, v;
    char c;

    *closed = 1;
    if (i >= n)
        return i;
    c = s[i];
    switch (c) {
    case '\'':
    case '"':
        return skip_quoted(s, n, i, c, 0, closed);
    case '`':
        return pg ? i : skip_quoted(s, n, i, c, 0, closed);
    case '[':
        if (pg)
            return i;            /* an array subscript there */
        /* brackets do not nest and have no escape */
        for (j = i + 1; j < n; j++)
            if (s[j] == ']')
                return j + 1;
        *closed = 0;
        return n;
    case '$':
        if (!pg)
            return i;
        j = qbi_pg_param(s, n, i, &v);      /* $N is a token of its own */
        return j != i ? j : skip_dollar(s, n, i, closed);
    case '?':
        if (!pg)
            return i;
        /* so is ?N: the digits are its label, never a number */
        for (j = i + 1; j < n && s[j] >= '0' && s[j] <= '9'; j++)
            ;
        return j;
    case '-':
        if (i + 1 >= n || s[i + 1] != '-')
            return i;
        for (j = i + 2; j < n; j++)
            if (s[j] == '\n')
                return j; /* the newline is not part of the comment */
        *closed = 0;
        return n;
    case '/':
        if (i + 1 >= n || s[i + 1] != '*')
            return i;
        return skip_block(s, n, i, pg, closed);
    default:
        if (!pg)
            return i;
        j = pg_word_end(s, n, i);
        /* E'..': a name that is just E, right before a quote */
        if (j == i + 1 && (c == 'E' || c == 'e') && j < n && s[j] == '\'')
            return skip_quoted(s, n, j, '\'', 1, closed);
        return j;
    }
}

size_t qbi_pg_param(const char *s, size_t n, size_t i, size_t *num)
{
    size_t j, v = 0;

    *num = 0;
    if (i >= n || s[i] != '$')
        return i;
    for (j = i + 1; j < n && s[j] >= '0' && s[j] <= '9'; j++)
        if (v <= QBI_PARAM_CAP)
            v = v * 10 + (size_t)(s[j] - '0');
    if (j == i + 1)
        return i;
    *num = v > QBI_PARAM_CAP ? QBI_PARAM_CAP + 1 : v;
    return j;
}

size_t qbi_sqlite_param(const char *s, size_t i, size_t j, size_t *maxidx)
{
    size_t k, idx = 0;

    for (k = i + 1; k < j; k++)
        if (idx < 1000000)
            idx = idx * 10 + (size_t)(s[k] - '0');
    if (j == i + 1)
        idx = *maxidx + 1;
    if (idx > *maxidx)
        *maxidx = idx;
    return idx;
}

size_t qbi_pg_max_param(const char *s, size_t n)
{
    size_t i = 0, j, v, max = 0;
    int closed;

    while (i < n) {
        j = qbi_sql_skip(s, n, i, QB_DIALECT_POSTGRES, &closed);
        if (j == i) {
            i++;
            continue;
        }
        if (qbi_pg_param(s, n, i, &v) == j && v > max)
            max = v;
        i = j;
    }
    return max;
}

size_t qbi_sql_skip_blank(const char *s, size_t n, size_t i, qb_dialect d)
{
    size_t j;
    int closed;

    while (i < n) {
        if (qbi_is_space(s[i])) {
            i++;
            continue;
        }
        if (s[i] != '-' && s[i] != '/')
            break;
        j = qbi_sql_skip(s, n, i, d, &closed);
        if (j == i)
            break;
        i = j;
    }
    return i;
}

static int word_is(const char *w, size_t len, const char *kw)
{
    return strlen(kw) == len && strncasecmp(w, kw, len) == 0;
}

/* One name of a statement (its words-th): follow the statement's head,
 * 0: nothing yet, 1: CREATE, 2: CREATE OR, 3: CREATE OR REPLACE, 4: a
 * routine (CREATE [OR REPLACE] FUNCTION|PROCEDURE), 5: anything else;
 * in a routine's definition, outside parentheses, BEGIN opens a block,
 * CASE inside one opens another, END closes one (psql's rule for
 * SQL-standard bodies, BEGIN ATOMIC ... END). */
static void stmt_word(const char *w, size_t len, size_t words, int *head,
                      size_t *body, size_t paren)
{
    if (*head < 4) {
        int routine = word_is(w, len, "function") ||
                      word_is(w, len, "procedure");
        if (words == 1 && word_is(w, len, "create"))
            *head = 1;
        else if (*head == 1 && word_is(w, len, "or"))
            *head = 2;
        else if (*head == 2 && word_is(w, len, "replace"))
            *head = 3;
        else if ((*head == 1 || *head == 3) && routine)
            *head = 4;
        else
            *head = 5;
    } else if (*head == 4 && paren == 0) {
        if (word_is(w, len, "begin") ||
            (*body > 0 && word_is(w, len, "case")))
            (*body)++;
        else if (*body > 0 && word_is(w, len, "end"))
            (*body)--;
    }
}

size_t qbi_pg_stmt_end(const char *s, size_t n, size_t i)
{
    size_t paren = 0, body = 0, words = 0, j;
    int head = 0, closed;

    while (i < n) {
        j = qbi_sql_skip(s, n, i, QB_DIALECT_POSTGRES, &closed);
        if (j != i) {
            /* a name (not a number, literal or comment): a keyword? */
            unsigned char c = (unsigned char)s[i];
            if (qbi_pg_idchar(c) && !(c >= '0' && c <= '9') && c != '$' &&
                qbi_pg_idchar((unsigned char)s[j - 1]))
                stmt_word(s + i, j - i, ++words, &head, &body, paren);
            i = j;
            continue;
        }
        switch (s[i]) {
        case ';':
            if (paren == 0 && body == 0)
                return i;
            break;
        case '(':
            paren++;
            break;
        case ')':
            if (paren > 0)
                paren--;
            break;
        }
        i++;
    }
    return n;
}

void qbi_sql_stmt_where(char *buf, size_t cap, const char *s, size_t start,
                        size_t end, size_t k)
{
    size_t line = 1, i, w, len, keep;
    char ex[QBI_EXCERPT_MAX + 4];

    for (i = 0; i < start; i++)
        line += s[i] == '\n';
    /* the statement on one line: whitespace runs as one space, no
     * trailing ';' */
    while (end > start && (qbi_is_space(s[end - 1]) || s[end - 1] == ';'))
        end--;
    for (i = start, w = 0; i < end && w < QBI_EXCERPT_MAX + 1; i++) {
        if (!qbi_is_space(s[i]))
            ex[w++] = s[i];
        else if (w > 0 && ex[w - 1] != ' ')
            ex[w++] = ' ';
    }
    len = w;
    if (i < end || len > QBI_EXCERPT_MAX) {
        /* cut on a character boundary and say so */
        keep = len < QBI_EXCERPT_MAX ? len : QBI_EXCERPT_MAX;
        while (keep > 0 && ((unsigned char)ex[keep] & 0xC0) == 0x80)
            keep--;
        memcpy(ex + keep, "...", 3);
        len = keep + 3;
    }
    ex[len] = '\0';
    snprintf(buf, cap, "statement %zu at line %zu (%s)", k, line, ex);
}

void qbi_sql_collapse(qbi_sb *out, const char *s, size_t n, qb_dialect d)
{
    size_t at = out->len;

    qbi_sb_add(out, s, n);
    if (n == 0 || out->err != QB_OK)
        return;
    out->len = at + qbi_sql_collapse_inplace(out->p + at, n, d);
}

size_t qbi_sql_collapse_inplace(char *s, size_t n, qb_dialect d)
{
    size_t i = 0, w = 0, j, run;
    int closed, after_line_comment = 0;
    char c;

    /* w <= i throughout: every step writes at most what it consumed. */
    while (i < n) {
        c = s[i];
        j = qbi_sql_skip(s, n, i, d, &closed);
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
