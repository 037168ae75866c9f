/*
 * conf.c -- the waituntil.conf parser.
 *
 * DESIGN
 *   Syntax (nginx's, so nginx users can read it without a manual):
 *       # comment to end of line
 *       name arg arg;                 a directive
 *       name arg { ... }              a block
 *   A word is a run of bytes other than whitespace and ; { } ; quoted
 *   pieces ("..." or '...', escapes \" \' \\ \n \t \r) may be glued to it
 *   as in a shell, so raw:"datetime('now', 'utc')" is one word.  A word
 *   whose first piece is quoted is a string literal when used as a value
 *   source, never a $variable; variables are not expanded inside strings.
 *
 *   Why a hand-written tokenizer (as nginx's own ngx_conf_file.c) and not
 *   libconfuse or inih: inih is INI, which has no nested blocks or one-line
 *   "name args;" statements; libconfuse has blocks but its own syntax
 *   (name = value, titles in the section header) and error texts we could
 *   not make say "expected ';' after ..." with the line of the missing
 *   semicolon.  The whole grammar is four token kinds and a recursive
 *   block, about 200 lines, and it is fuzzed (tests/fuzz/fuzz_conf.c).
 *
 *   Two passes.  Pass 1 turns the text into a tree of statements
 *   (name, args, optional block), checking only the shape.  Pass 2 walks
 *   the tree per block kind and fills a web_conf, checking arity, values,
 *   identifiers and cross-references ($seg_NAME must name a path segment
 *   of every path of its route).  The first error wins and stops the
 *   parse; its message is "FILE:LINE: what was expected".
 *
 *   Every byte of the result lives in one web_arena owned by the
 *   web_conf, so web_conf_free is one call and a failed parse leaks
 *   nothing.  Bounds: text 1 MiB, word 64 KiB, 64 args per statement,
 *   block depth 8, WEB_MAX_ROUTES routes, 64 columns / conditions per
 *   deferred query, 32 deferred queries per route, 16 paths per route,
 *   64 required values per route.
 *
 *   include FILE;  and  include PATTERN;  (a glob in the file name only,
 *   "conf.d/" followed by "*.conf") read other files in pass 1: their statements take the
 *   place of the include, at any depth, as if pasted there, so pass 2
 *   never sees an include.  A relative FILE is taken from the folder of
 *   the file that includes it (of NAME for web_conf_parse).  A pattern
 *   matching nothing includes nothing (nginx's rule); a plain FILE that
 *   cannot be read is an error.  Only regular files are read.  Bounds:
 *   include nesting 8 deep, 64 files in all (the main one counted),
 *   4 MiB of text in all; a file that includes itself, directly or
 *   through others, is an error (files are told apart by device and
 *   inode, so a symlink or "./" changes nothing).
 *
 *   Positions.  Every token carries a location: the file's index in
 *   pctx.files shifted left by LOC_BITS, plus the line.  Index 0 is the
 *   main file, so without includes a location is just the line.  perr
 *   decodes it, so an error inside an included file names that file and
 *   its line; the public structs get the plain line and the file's name.
 *
 *   The result is immutable after parsing: read it from any thread.
 */
#define _GNU_SOURCE
#include "web_int.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_MAX_TEXT (1024u * 1024u)
#define CONF_MAX_WORD 65536u
#define CONF_MAX_ARGS 64u
#define CONF_MAX_DEPTH 8
#define CONF_MAX_COLS 64u
#define CONF_MAX_DEFERS 32u
#define CONF_MAX_PATHS 16u
#define CONF_MAX_FILES 64u             /* main file + included files */
#define CONF_MAX_INCLUDE_DEPTH 8       /* include inside include ... */
#define CONF_MAX_TOTAL (4u * 1024u * 1024u) /* text of all files */

/* A location: file index << LOC_BITS | line.  A file holds at most
 * CONF_MAX_TEXT bytes, so a line number fits in LOC_BITS bits, and
 * CONF_MAX_FILES << LOC_BITS fits in an int. */
#define LOC_BITS 21
#define LOC(file, line) ((int)(((unsigned)(file) << LOC_BITS) | (unsigned)(line)))
#define LOC_FILE(loc) ((unsigned)(loc) >> LOC_BITS)
#define LOC_LINE(loc) ((int)((unsigned)(loc) & ((1u << LOC_BITS) - 1u)))

enum { T_EOF = 0, T_WORD, T_SEMI, T_LBRACE, T_RBRACE };

typedef struct tok {
    int type;
    int line;
    int quoted;   /* first piece was quoted */
    char *s;      /* T_WORD: decoded, NUL-terminated */
    size_t n;
} tok;

typedef struct node {
    tok name;
    tok *args;
    size_t nargs;
    int block;             /* 1 if followed by { ... } */
    struct node *kids;
    size_t nkids;
} node;

typedef struct pctx {
    const char *text;
    size_t n, i;
    int line;             /* a location: LOC(file index, line) */
    const char *file;     /* the main file's name */
    const char **files;   /* names of the files read; [0] = file */
    size_t nfiles, files_cap;
    size_t total;         /* bytes of text read, all files */
    struct {
        dev_t dev;
        ino_t ino;          /* 0: text given to web_conf_parse */
        size_t idx;         /* in files */
    } open[CONF_MAX_INCLUDE_DEPTH + 1]; /* files being read, outermost first */
    size_t nopen;
    web_arena *a;
    web_conf *conf;
    char *err;
    size_t errlen;
    int failed;
} pctx;

static int perr(pctx *c, int loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr_at(pctx *c, const char *file, int line, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static int vperr_at(pctx *c, const char *file, int line, const char *fmt,
                    va_list ap) __attribute__((format(printf, 4, 0)));

static int vperr_at(pctx *c, const char *file, int line, const char *fmt,
                    va_list ap)
{
    if (!c->failed && c->errlen > 0) {
        int w = snprintf(c->err, c->errlen, "%s:%d: ", file, line);
        if (w >= 0 && (size_t)w < c->errlen)
            vsnprintf(c->err + w, c->errlen - (size_t)w, fmt, ap);
    }
    c->failed = 1;
    return WEB_ECONF;
}

/* The name of the file a location is in. */
static const char *loc_file(const pctx *c, int loc)
{
    unsigned f = LOC_FILE(loc);
    return f < c->nfiles ? c->files[f] : c->file;
}

/* "FILE:LINE: message" for a location (a token's line field). */
static int perr(pctx *c, int loc, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = vperr_at(c, loc_file(c, loc), LOC_LINE(loc), fmt, ap);
    va_end(ap);
    return rc;
}

/* The same for a position already decoded (a route's file and line). */
static int perr_at(pctx *c, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = vperr_at(c, file, line, fmt, ap);
    va_end(ap);
    return rc;
}

static int oom(pctx *c)
{
    if (!c->failed && c->errlen > 0)
        snprintf(c->err, c->errlen, "%s: out of memory", c->file);
    c->failed = 1;
    return WEB_ENOMEM;
}

/* Grow an arena array of elem-sized items to hold one more. */
static void *grow(pctx *c, void *arr, size_t n, size_t *cap, size_t elem)
{
    void *na;
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 4;
    na = web_arena_alloc(c->a, *cap * elem);
    if (na == NULL)
        return NULL;
    if (n > 0)
        memcpy(na, arr, n * elem);
    return na;
}

/* ==== pass 1: tokens and statements ===================================== */

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static int is_special(char ch)
{
    return ch == ';' || ch == '{' || ch == '}';
}

static int lex(pctx *c, tok *t)
{
    size_t j, o = 0;
    char *buf;
    memset(t, 0, sizeof(*t));
    for (;;) {
        if (c->i == c->n) {
            t->type = T_EOF;
            t->line = c->line;
            return WEB_OK;
        }
        if (c->text[c->i] == '\n') {
            c->line++;
            c->i++;
        } else if (is_space(c->text[c->i])) {
            c->i++;
        } else if (c->text[c->i] == '#') {
            while (c->i < c->n && c->text[c->i] != '\n')
                c->i++;
        } else {
            break;
        }
    }
    t->line = c->line;
    switch (c->text[c->i]) {
    case ';': t->type = T_SEMI; c->i++; return WEB_OK;
    case '{': t->type = T_LBRACE; c->i++; return WEB_OK;
    case '}': t->type = T_RBRACE; c->i++; return WEB_OK;
    default: break;
    }
    /* Find the end of the word first: the decoded word is never longer. */
    j = c->i;
    t->quoted = c->text[j] == '"' || c->text[j] == '\'';
    while (j < c->n && !is_space(c->text[j]) && !is_special(c->text[j])) {
        char q = c->text[j];
        if (q == '"' || q == '\'') {
            int start_line = c->line;
            j++;
            while (j < c->n && c->text[j] != q) {
                if (c->text[j] == '\\' && j + 1 < c->n)
                    j++;
                j++;
            }
            if (j >= c->n)
                return perr(c, start_line, "unterminated string");
        } else if ((unsigned char)q < 0x20 || q == 0x7f) {
            return perr(c, c->line, "unexpected control character 0x%02x",
                        (unsigned char)q);
        }
        j++;
    }
    if (j - c->i > CONF_MAX_WORD)
        return perr(c, c->line, "word too long (more than %u bytes)",
                    CONF_MAX_WORD);
    buf = web_arena_alloc_aligned(c->a, j - c->i + 1, 1);
    if (buf == NULL)
        return oom(c);
    while (c->i < j) {
        char q = c->text[c->i];
        if (q != '"' && q != '\'') {
            buf[o++] = q;
            c->i++;
            continue;
        }
        c->i++;
        while (c->text[c->i] != q) {
            char ch = c->text[c->i];
            if (ch == '\0')
                return perr(c, c->line, "NUL byte in string");
            if (ch == '\n')
                c->line++;
            if (ch == '\\') {
                char e = c->text[c->i + 1];
                switch (e) {
                case '"': case '\'': case '\\': ch = e; break;
                case 'n': ch = '\n'; break;
                case 't': ch = '\t'; break;
                case 'r': ch = '\r'; break;
                default:
                    if ((unsigned char)e < 0x20 || (unsigned char)e >= 0x7f)
                        return perr(c, c->line, "invalid escape in string");
                    return perr(c, c->line, "invalid escape \"\\%c\"", e);
                }
                c->i++;
            }
            buf[o++] = ch;
            c->i++;
        }
        c->i++; /* closing quote */
    }
    buf[o] = '\0';
    t->type = T_WORD;
    t->s = buf;
    t->n = o;
    return WEB_OK;
}

/* "name a b" for messages, shortened to fit. */
static const char *stmt_text(const node *d, size_t upto, char *buf,
                             size_t len)
{
    size_t k, o;
    snprintf(buf, len, "%s", d->name.s);
    for (k = 0; k < upto && k < d->nargs; k++) {
        o = strlen(buf);
        if (o + 1 >= len)
            break;
        snprintf(buf + o, len - o, " %s", d->args[k].s);
    }
    if (strlen(buf) > 60) {
        buf[57] = buf[58] = buf[59] = '.';
        buf[60] = '\0';
    }
    return buf;
}

static const char *tok_desc(const tok *t)
{
    switch (t->type) {
    case T_EOF: return "end of file";
    case T_SEMI: return "\";\"";
    case T_LBRACE: return "\"{\"";
    case T_RBRACE: return "\"}\"";
    default: return "word";
    }
}

static int do_include(pctx *c, const node *d, node **kids, size_t *nkids,
                      size_t *cap, int depth);

/* Append d to the statement list kids. */
static int add_node(pctx *c, node **kids, size_t *nkids, size_t *cap,
                    const node *d)
{
    node *nk = grow(c, *kids, *nkids, cap, sizeof(node));
    if (nk == NULL)
        return oom(c);
    *kids = nk;
    (*kids)[(*nkids)++] = *d;
    return WEB_OK;
}

/* Statements up to the "}" closing a block opened on open_line (a
 * location), or up to the end of the file when top (the top of a file:
 * the main one, or an included one whose statements land at depth). */
static int parse_block(pctx *c, node **kids, size_t *nkids, int depth,
                       int open_line, int top)
{
    size_t cap = 0;
    *kids = NULL;
    *nkids = 0;
    for (;;) {
        tok t;
        node d;
        size_t acap = 0;
        int rc = lex(c, &t);
        if (rc != WEB_OK)
            return rc;
        if (t.type == T_EOF) {
            if (!top)
                return perr(c, t.line,
                            "unexpected end of file, expected \"}\" to close "
                            "the block opened on line %d",
                            LOC_LINE(open_line));
            return WEB_OK;
        }
        if (t.type == T_RBRACE) {
            if (top)
                return perr(c, t.line, "unexpected \"}\"");
            return WEB_OK;
        }
        if (t.type != T_WORD)
            return perr(c, t.line, "unexpected %s, expected a directive",
                        tok_desc(&t));
        memset(&d, 0, sizeof d);
        d.name = t;
        for (;;) {
            tok *na;
            rc = lex(c, &t);
            if (rc != WEB_OK)
                return rc;
            if (t.type != T_WORD)
                break;
            if (d.nargs == CONF_MAX_ARGS)
                return perr(c, t.line, "too many arguments for \"%s\"",
                            d.name.s);
            na = grow(c, d.args, d.nargs, &acap, sizeof(tok));
            if (na == NULL)
                return oom(c);
            d.args = na;
            d.args[d.nargs++] = t;
        }
        if (t.type == T_LBRACE) {
            if (depth + 1 >= CONF_MAX_DEPTH)
                return perr(c, t.line, "blocks nested too deeply");
            d.block = 1;
            rc = parse_block(c, &d.kids, &d.nkids, depth + 1, t.line, 0);
            if (rc != WEB_OK)
                return rc;
        } else if (t.type != T_SEMI) {
            char sb[96];
            int line = d.nargs ? d.args[d.nargs - 1].line : d.name.line;
            return perr(c, line, "expected ';' after \"%s\"",
                        stmt_text(&d, d.nargs, sb, sizeof sb));
        }
        rc = strcmp(d.name.s, "include") == 0
                 ? do_include(c, &d, kids, nkids, &cap, depth)
                 : add_node(c, kids, nkids, &cap, &d);
        if (rc != WEB_OK)
            return rc;
    }
}

/* ---- include ---------------------------------------------------------------
 * Read one file (path, shown as path in messages) and append its
 * statements to kids.  loc is the include directive's location. */
static int include_file(pctx *c, int loc, const char *path, node **kids,
                        size_t *nkids, size_t *cap, int depth)
{
    char eb[128], *buf = NULL;
    const char *saved_text = c->text;
    size_t saved_n = c->n, saved_i = c->i, got = 0, nk = 0;
    int saved_line = c->line, fd, rc;
    struct stat st;
    node *ikids = NULL;
    const char **nf;

    if (c->nfiles >= CONF_MAX_FILES)
        return perr(c, loc, "too many files included (at most %u in all)",
                    CONF_MAX_FILES - 1);
    /* O_NONBLOCK: a FIFO must not hang the parse; it is refused below. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return perr(c, loc, "include \"%s\": cannot open: %s", path,
                    strerror_r(errno, eb, sizeof eb));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return perr(c, loc, "include \"%s\": not a regular file", path);
    }
    for (size_t k = 0; k < c->nopen; k++)
        if (c->open[k].ino != 0 && c->open[k].dev == st.st_dev &&
            c->open[k].ino == st.st_ino) {
            close(fd);
            return perr(c, loc, "include \"%s\": include cycle (%s is "
                        "being read already)", path,
                        c->files[c->open[k].idx]);
        }
    if (c->nopen > CONF_MAX_INCLUDE_DEPTH) {
        close(fd);
        return perr(c, loc, "include \"%s\": includes nested too deeply "
                    "(at most %d)", path, CONF_MAX_INCLUDE_DEPTH);
    }
    buf = malloc(CONF_MAX_TEXT + 1);
    if (buf == NULL) {
        close(fd);
        return oom(c);
    }
    for (;;) {
        ssize_t r = read(fd, buf + got, CONF_MAX_TEXT + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = perr(c, loc, "include \"%s\": read error: %s", path,
                      strerror_r(errno, eb, sizeof eb));
            goto out;
        }
        if (r == 0 || (got += (size_t)r) > CONF_MAX_TEXT)
            break;
    }
    if (got > CONF_MAX_TEXT) {
        rc = perr(c, loc, "include \"%s\": file too large (more than %u "
                  "bytes)", path, CONF_MAX_TEXT);
        goto out;
    }
    if (got > CONF_MAX_TOTAL - c->total) {
        rc = perr(c, loc, "include \"%s\": the files add up to more than "
                  "%u bytes", path, CONF_MAX_TOTAL);
        goto out;
    }
    c->total += got;
    nf = grow(c, c->files, c->nfiles, &c->files_cap, sizeof *c->files);
    if (nf == NULL || (nf[c->nfiles] = web_arena_strdup(c->a, path)) == NULL) {
        rc = oom(c);
        goto out;
    }
    c->files = nf;
    c->open[c->nopen].dev = st.st_dev;
    c->open[c->nopen].ino = st.st_ino;
    c->open[c->nopen].idx = c->nfiles;
    c->nopen++;
    c->text = buf;
    c->n = got;
    c->i = 0;
    c->line = LOC(c->nfiles, 1);
    c->nfiles++;
    rc = parse_block(c, &ikids, &nk, depth, loc, 1);
    c->nopen--;
    c->text = saved_text;
    c->n = saved_n;
    c->i = saved_i;
    c->line = saved_line;
    for (size_t k = 0; rc == WEB_OK && k < nk; k++)
        rc = add_node(c, kids, nkids, cap, &ikids[k]);
out:
    close(fd);
    free(buf);
    return rc;
}

/* Write s into out (of len) with glob's special bytes escaped, so that a
 * folder named "a*b" is taken literally. */
static int glob_escape(const char *s, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        if (strchr("*?[]\\", s[k]) != NULL) {
            if (o + 1 >= len)
                return -1;
            out[o++] = '\\';
        }
        if (o + 1 >= len)
            return -1;
        out[o++] = s[k];
    }
    out[o] = '\0';
    return 0;
}

/* "include FILE;" or "include PATTERN;" (d): the statements of each file,
 * in name order, appended to kids. */
static int do_include(pctx *c, const node *d, node **kids, size_t *nkids,
                      size_t *cap, int depth)
{
    const char *arg, *from, *slash;
    char path[4096];
    size_t dirlen = 0;
    int rc = WEB_OK, magic;
    glob_t g;

    if (d->block)
        return perr(c, d->name.line, "\"include\" takes no block");
    if (d->nargs != 1)
        return perr(c, d->name.line, "\"include\" needs one FILE or "
                    "PATTERN, e.g. include conf.d/*.conf;");
    arg = d->args[0].s;
    if (arg[0] == '\0' || strlen(arg) != d->args[0].n)
        return perr(c, d->args[0].line, "invalid include \"%s\"", arg);
    slash = strrchr(arg, '/');
    magic = strpbrk(arg, "*?[") != NULL;
    if (magic && slash != NULL && strpbrk(arg, "*?[") < slash)
        return perr(c, d->args[0].line, "include \"%s\": a pattern may "
                    "only be in the file name, not in a folder", arg);
    /* Relative to the including file's folder. */
    from = loc_file(c, d->name.line);
    if (arg[0] != '/' && (slash = strrchr(from, '/')) != NULL)
        dirlen = (size_t)(slash - from) + 1;
    if (!magic) {
        if (dirlen + strlen(arg) >= sizeof path)
            return perr(c, d->args[0].line, "include path too long");
        memcpy(path, from, dirlen);
        strcpy(path + dirlen, arg);
        return include_file(c, d->name.line, path, kids, nkids, cap, depth);
    }
    if (glob_escape(from, dirlen, path, sizeof path) != 0 ||
        strlen(path) + strlen(arg) >= sizeof path)
        return perr(c, d->args[0].line, "include path too long");
    strcat(path, arg);
    switch (glob(path, 0, NULL, &g)) {
    case 0:
        break;
    case GLOB_NOMATCH:
        return WEB_OK; /* nothing to include (nginx's rule) */
    case GLOB_NOSPACE:
        return oom(c);
    default:
        return perr(c, d->args[0].line, "include \"%s\": cannot read the "
                    "folder", arg);
    }
    for (size_t k = 0; rc == WEB_OK && k < g.gl_pathc; k++)
        rc = include_file(c, d->name.line, g.gl_pathv[k], kids, nkids, cap,
                          depth);
    globfree(&g);
    return rc;
}

/* ==== pass 2: meaning ==================================================== */

static int arity(pctx *c, const node *d, size_t min, size_t max)
{
    char sb[96];
    if (d->nargs > max) {
        int line = max ? d->args[max - 1].line : d->name.line;
        return perr(c, line, "expected ';' after \"%s\"",
                    stmt_text(d, max, sb, sizeof sb));
    }
    if (d->nargs < min)
        return perr(c, d->name.line,
                    "invalid number of arguments in \"%s\"", d->name.s);
    return WEB_OK;
}

static int no_block(pctx *c, const node *d)
{
    if (d->block)
        return perr(c, d->name.line, "\"%s\" takes no block", d->name.s);
    return WEB_OK;
}

static int need_block(pctx *c, const node *d)
{
    if (!d->block)
        return perr(c, d->name.line, "\"%s\" needs a block { ... }",
                    d->name.s);
    return WEB_OK;
}

/* Once-only directives: seen[] holds names already met in this block. */
typedef struct seen_set {
    const char *names[32];
    size_t n;
} seen_set;

static int once(pctx *c, seen_set *s, const node *d)
{
    size_t k;
    for (k = 0; k < s->n; k++)
        if (strcmp(s->names[k], d->name.s) == 0)
            return perr(c, d->name.line, "duplicate directive \"%s\"",
                        d->name.s);
    if (s->n < sizeof s->names / sizeof s->names[0])
        s->names[s->n++] = d->name.s;
    return WEB_OK;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t k;
    if (n == 0 || n > 19)
        return WEB_EINVAL;
    for (k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return WEB_EINVAL;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    *out = v;
    return WEB_OK;
}

static int get_num(pctx *c, const node *d, size_t k, uint64_t min,
                   uint64_t max, uint64_t *out)
{
    const tok *t = &d->args[k];
    if (parse_u64(t->s, t->n, out) != WEB_OK)
        return perr(c, t->line, "invalid number \"%s\" for \"%s\"", t->s,
                    d->name.s);
    if (*out < min || *out > max)
        return perr(c, t->line,
                    "\"%s\" must be between %llu and %llu, not %s", d->name.s,
                    (unsigned long long)min, (unsigned long long)max, t->s);
    return WEB_OK;
}

/* Sizes: N, Nk, Nm, Ng (binary multiples, as nginx). */
static int get_size(pctx *c, const node *d, size_t k, uint64_t max,
                    uint64_t *out)
{
    const tok *t = &d->args[k];
    size_t n = t->n;
    uint64_t mul = 1, v;
    if (n > 0) {
        switch (t->s[n - 1]) {
        case 'k': case 'K': mul = 1024u; n--; break;
        case 'm': case 'M': mul = 1024u * 1024u; n--; break;
        case 'g': case 'G': mul = 1024u * 1024u * 1024u; n--; break;
        default: break;
        }
    }
    if (parse_u64(t->s, n, &v) != WEB_OK || v > UINT64_MAX / mul)
        return perr(c, t->line, "invalid size \"%s\" for \"%s\"", t->s,
                    d->name.s);
    v *= mul;
    if (v > max)
        return perr(c, t->line, "\"%s\" must be at most %llu bytes, not %s",
                    d->name.s, (unsigned long long)max, t->s);
    *out = v;
    return WEB_OK;
}

/* Times: N (seconds), Nms, Ns, Nm, Nh, Nd -> milliseconds. */
static int get_time(pctx *c, const node *d, size_t k, int64_t *out)
{
    const tok *t = &d->args[k];
    size_t n = t->n;
    uint64_t mul = 1000, v;
    if (n > 2 && strcmp(t->s + n - 2, "ms") == 0) {
        mul = 1;
        n -= 2;
    } else if (n > 0) {
        switch (t->s[n - 1]) {
        case 's': mul = 1000; n--; break;
        case 'm': mul = 60000; n--; break;
        case 'h': mul = 3600000; n--; break;
        case 'd': mul = 86400000; n--; break;
        default: break;
        }
    }
    /* At most one day: the pool and SQLite take times as 32-bit ms. */
    if (parse_u64(t->s, n, &v) != WEB_OK || v > (uint64_t)INT64_MAX / mul ||
        v * mul > 86400000ull)
        return perr(c, t->line,
                    "invalid time \"%s\" for \"%s\" (e.g. 500ms, 30s, 5m; "
                    "at most 1d)",
                    t->s, d->name.s);
    *out = (int64_t)(v * mul);
    return WEB_OK;
}

static int get_choice(pctx *c, const node *d, size_t k,
                      const char *const *choices, int *out)
{
    const tok *t = &d->args[k];
    char list[160] = "";
    int i;
    for (i = 0; choices[i] != NULL; i++) {
        if (strcmp(t->s, choices[i]) == 0) {
            *out = i;
            return WEB_OK;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                 i ? ", " : "", choices[i]);
    }
    return perr(c, t->line, "invalid value \"%s\" for \"%s\", expected one "
                "of: %s", t->s, d->name.s, list);
}

static int get_str(pctx *c, const node *d, size_t k, const char **out)
{
    const tok *t = &d->args[k];
    if (t->n == 0)
        return perr(c, t->line, "empty value for \"%s\"", d->name.s);
    *out = t->s;
    return WEB_OK;
}

static int check_listen(pctx *c, const node *d)
{
    const tok *t = &d->args[0];
    const char *colon;
    uint64_t port;
    if (strcmp(t->s, "stdin") == 0)
        return WEB_OK;
    if (strncmp(t->s, "unix:", 5) == 0) {
        /* sun_path is 108 bytes with its NUL; libfcgi exit()s past that */
        if (t->n > 5 && t->n - 5 < 108)
            return WEB_OK;
        return perr(c, t->line, "invalid unix socket path in \"%s\" "
                    "(1 to 107 bytes)", t->s);
    }
    colon = strrchr(t->s, ':');
    if (colon != NULL && colon != t->s &&
        parse_u64(colon + 1, strlen(colon + 1), &port) == WEB_OK && port > 0 &&
        port <= 65535)
        return WEB_OK;
    return perr(c, t->line, "invalid listen \"%s\", expected unix:PATH, "
                "HOST:PORT or stdin", t->s);
}


/* A path declared again with a method it already had could never be
 * reached (the router keeps the first): refuse it with both lines. */
static int no_duplicate(pctx *c, const web_route_conf *routes, size_t last)
{
    const web_route_conf *r = &routes[last];
    for (size_t i = 0; i < last; i++) {
        if ((routes[i].methods & r->methods) == 0)
            continue;
        for (size_t a = 0; a < r->npaths; a++)
            for (size_t b = 0; b < routes[i].npaths; b++)
                if (strcmp(r->paths[a], routes[i].paths[b]) != 0)
                    continue;
                else if (strcmp(r->file, routes[i].file) == 0)
                    return perr_at(c, r->file, r->line,
                                   "duplicate route for \"%s\" (first on "
                                   "line %d)",
                                   r->paths[a], routes[i].line);
                else
                    return perr_at(c, r->file, r->line,
                                   "duplicate route for \"%s\" (first on "
                                   "%s:%d)",
                                   r->paths[a], routes[i].file,
                                   routes[i].line);
    }
    return WEB_OK;
}

/* ---- the server, database and pool blocks ---------------------------------
 * Most of their directives set one field of the web_conf from one
 * argument: a table per block names them, with the field, its kind and
 * bounds, and set_field reads any of them.  The others (an address, a
 * mode, a choice, a policy) are the block's own code (one_*), which also
 * refuses an unknown name. */

typedef enum field_kind {
    F_UINT,  /* unsigned: a number in [min, max] */
    F_SIZE,  /* size_t: a number in [min, max] */
    F_BYTES, /* size_t: a size (get_size) up to max */
    F_TIME,  /* int64_t: a time in milliseconds (get_time) */
    F_STR    /* const char *: a non-empty string */
} field_kind;

typedef struct field {
    const char *name;
    field_kind kind;
    uint64_t min, max;
    size_t off; /* of the field in web_conf */
} field;

#define F_NUM(kind, name, min, max, member) \
    {name, kind, min, max, offsetof(web_conf, member)}
#define F_OF(kind, name, member) {name, kind, 0, 0, offsetof(web_conf, member)}

static const field server_fields[] = {
    F_NUM(F_UINT, "threads", 1, 256, server.threads), /* server.c's bound */
    F_NUM(F_BYTES, "max_body", 0, 1024u * 1024u * 1024u, server.max_body),
    F_NUM(F_SIZE, "max_params", 1, 100000, server.max_params),
    F_NUM(F_SIZE, "max_args", 1, 100000, server.max_query_args),
    /* jansson's own bound is JSON_PARSER_MAX_DEPTH (2048) */
    F_NUM(F_SIZE, "max_json_depth", 1, 1024, server.max_json_depth),
    F_NUM(F_SIZE, "max_json_elements", 1, 10000000, server.max_json_elements),
    F_OF(F_STR, "log", server.log),
    F_OF(F_STR, "pid", server.pid),
    {NULL, F_STR, 0, 0, 0},
};

static const field database_fields[] = {
    F_OF(F_TIME, "reconnect", database.reconnect_ms),
    /* qb_conn's PostgreSQL bound */
    F_NUM(F_UINT, "statement_cache", 0, 4096, database.statement_cache),
    F_OF(F_TIME, "busy_timeout", database.busy_timeout_ms),
    F_OF(F_STR, "migrations", database.migrations),
    {NULL, F_STR, 0, 0, 0},
};

static const field pool_fields[] = {
    F_NUM(F_UINT, "workers", 1, 256, pool.workers), /* the pool's bound */
    F_NUM(F_SIZE, "queue", 1, 16u * 1024u * 1024u, pool.queue),
    F_NUM(F_SIZE, "tasks_per_request", 1, 65536, pool.tasks_per_request),
    F_NUM(F_SIZE, "batch", 1, 65536, pool.batch),
    F_NUM(F_UINT, "busy_retries", 0, 1000, pool.busy_retries),
    F_OF(F_TIME, "task_timeout", pool.task_timeout_ms),
    F_OF(F_TIME, "drain_timeout", pool.drain_timeout_ms),
    F_OF(F_STR, "journal_path", pool.journal_path),
    {NULL, F_STR, 0, 0, 0},
};

/* d (one argument) into f's field of c->conf. */
static int set_field(pctx *c, const node *d, const field *f)
{
    char *at = (char *)c->conf + f->off;
    uint64_t v = 0;
    int rc = arity(c, d, 1, 1);

    if (rc != WEB_OK)
        return rc;
    switch (f->kind) {
    case F_TIME:
        return get_time(c, d, 0, (int64_t *)(void *)at);
    case F_STR:
        return get_str(c, d, 0, (const char **)(void *)at);
    case F_BYTES:
        rc = get_size(c, d, 0, f->max, &v);
        break;
    case F_UINT:
    case F_SIZE:
        rc = get_num(c, d, 0, f->min, f->max, &v);
        break;
    }
    if (rc != WEB_OK)
        return rc;
    if (f->kind == F_UINT)
        *(unsigned *)(void *)at = (unsigned)v;
    else
        *(size_t *)(void *)at = (size_t)v;
    return WEB_OK;
}

static int unknown_in(pctx *c, const node *d, const char *block)
{
    return perr(c, d->name.line, "unknown directive \"%s\" in \"%s\"",
                d->name.s, block);
}

/* A server directive that is not in server_fields. */
static int one_server(pctx *c, const node *d)
{
    static const char *const levels[] = {"debug", "info", "notice", "warn",
                                         "error", NULL};
    /* web_log_values order */
    static const char *const values[] = {"on", "redact", "off", NULL};
    const char *nm = d->name.s;
    int rc, ch;

    if (strcmp(nm, "listen") == 0) {
        if ((rc = arity(c, d, 1, 1)) || (rc = check_listen(c, d)))
            return rc;
        c->conf->server.listen = d->args[0].s;
    } else if (strcmp(nm, "socket_mode") == 0) {
        const tok *t;
        uint64_t v = 0;
        size_t i;
        if ((rc = arity(c, d, 1, 1)))
            return rc;
        t = &d->args[0];
        for (i = 0; i < t->n && i < 5; i++) {
            if (t->s[i] < '0' || t->s[i] > '7')
                break;
            v = v * 8 + (uint64_t)(t->s[i] - '0');
        }
        if (t->n == 0 || i != t->n || v > 0777)
            return perr(c, t->line, "invalid socket_mode \"%s\", "
                        "expected an octal mode such as 0660", t->s);
        c->conf->server.socket_mode = (unsigned)v;
    } else if (strcmp(nm, "log_level") == 0) {
        if ((rc = arity(c, d, 1, 1)) ||
            (rc = get_choice(c, d, 0, levels, &ch)))
            return rc;
        c->conf->server.log_level = (web_log_level)ch;
    } else if (strcmp(nm, "log_values") == 0) {
        if ((rc = arity(c, d, 1, 1)) ||
            (rc = get_choice(c, d, 0, values, &ch)))
            return rc;
        c->conf->server.log_values = (web_log_values)ch;
    } else if (strcmp(nm, "access_log") == 0) {
        const char *a = NULL;
        if ((rc = arity(c, d, 1, 1)) || (rc = get_str(c, d, 0, &a)))
            return rc;
        c->conf->server.access_log = strcmp(a, "off") == 0 ? NULL : a;
    } else {
        return unknown_in(c, d, "server");
    }
    return WEB_OK;
}

/* A database directive that is not in database_fields. */
static int one_database(pctx *c, const node *d)
{
    static const char *const journal[] = {"delete", "truncate", "persist",
                                          "memory", "wal", "off", NULL};
    static const char *const sync[] = {"off", "normal", "full", "extra",
                                       NULL};
    const char *nm = d->name.s;
    int rc = arity(c, d, 1, 1), ch;

    if (rc != WEB_OK)
        return rc;
    if (strcmp(nm, "path") == 0) {
        char why[160];
        rc = get_str(c, d, 0, &c->conf->database.path);
        if (rc == WEB_OK &&
            web_db_path_check(d->args[0].s, why, sizeof why) != WEB_OK)
            return perr(c, d->args[0].line, "invalid \"path\": %s", why);
        c->conf->database.engine = web_db_engine_of(d->args[0].s);
    } else if (strcmp(nm, "journal_mode") == 0) {
        rc = get_choice(c, d, 0, journal, &ch);
        if (rc == WEB_OK)
            c->conf->database.journal_mode = journal[ch];
    } else if (strcmp(nm, "synchronous") == 0) {
        rc = get_choice(c, d, 0, sync, &ch);
        if (rc == WEB_OK)
            c->conf->database.synchronous = sync[ch];
    } else {
        return unknown_in(c, d, "database");
    }
    return rc;
}

/* A pool directive that is not in pool_fields. */
static int one_pool(pctx *c, const node *d)
{
    const char *nm = d->name.s;
    const tok *t;
    int rc;

    if (strcmp(nm, "admission") == 0) {
        if ((rc = arity(c, d, 1, 2)))
            return rc;
        t = &d->args[0];
        if (strcmp(t->s, "wait") == 0) {
            c->conf->pool.admission = WEB_ADMIT_WAIT;
            if (d->nargs == 2)
                return get_time(c, d, 1, &c->conf->pool.admission_wait_ms);
            return WEB_OK;
        }
        if (strcmp(t->s, "reject") == 0)
            c->conf->pool.admission = WEB_ADMIT_REJECT;
        else if (strcmp(t->s, "inline") == 0)
            c->conf->pool.admission = WEB_ADMIT_INLINE;
        else
            return perr(c, t->line, "invalid value \"%s\" for "
                        "\"admission\", expected one of: wait TIME, "
                        "reject, inline", t->s);
        return arity(c, d, 1, 1);
    }
    if (strcmp(nm, "journal") == 0) {
        if ((rc = arity(c, d, 1, 2)))
            return rc;
        t = &d->args[0];
        c->conf->pool.journal_sync_ms = 100;
        if (strcmp(t->s, "off") == 0)
            c->conf->pool.journal = 0;
        else if (strcmp(t->s, "write") == 0)
            c->conf->pool.journal = 1;
        else if (strcmp(t->s, "fsync") == 0)
            c->conf->pool.journal = 2;
        else if (strcmp(t->s, "fsync-interval") == 0)
            c->conf->pool.journal = 3;
        else
            return perr(c, t->line, "invalid value \"%s\" for "
                        "\"journal\", expected one of: off, write, "
                        "fsync, fsync-interval [TIME]", t->s);
        if (d->nargs == 2) {
            if (c->conf->pool.journal != 3)
                return perr(c, d->args[1].line, "only \"journal "
                            "fsync-interval\" takes a time");
            rc = get_time(c, d, 1, &c->conf->pool.journal_sync_ms);
            if (rc == WEB_OK && (c->conf->pool.journal_sync_ms < 1 ||
                                 c->conf->pool.journal_sync_ms > 60000))
                return perr(c, d->args[1].line, "\"journal fsync-interval"
                            "\" must be between 1ms and 60s");
            return rc;
        }
        return WEB_OK;
    }
    if ((rc = arity(c, d, 1, 1)))
        return rc;
    t = &d->args[0];
    if (strcmp(nm, "batch_delay") == 0 ||
        strcmp(nm, "batch_delay_max") == 0) {
        int64_t *ms = strcmp(nm, "batch_delay") == 0
                          ? &c->conf->pool.batch_delay_ms
                          : &c->conf->pool.batch_delay_max_ms;
        rc = get_time(c, d, 0, ms);
        if (rc == WEB_OK && *ms > 1000)
            return perr(c, d->name.line, "\"%s\" must be at most 1s", nm);
        return rc;
    }
    return unknown_in(c, d, "pool");
}

/* A server, database or pool block: each directive once, no blocks,
 * the table's fields by set_field, the rest by one. */
static int do_block(pctx *c, const node *blk, const field *fields,
                    int (*one)(pctx *c, const node *d))
{
    seen_set seen = {{0}, 0};
    size_t k;
    for (k = 0; k < blk->nkids; k++) {
        const node *d = &blk->kids[k];
        const field *f = fields;
        int rc = no_block(c, d);
        if (rc == WEB_OK)
            rc = once(c, &seen, d);
        if (rc != WEB_OK)
            return rc;
        while (f->name != NULL && strcmp(f->name, d->name.s) != 0)
            f++;
        rc = f->name != NULL ? set_field(c, d, f) : one(c, d);
        if (rc != WEB_OK)
            return rc;
    }
    return WEB_OK;
}

/* ---- database paths --------------------------------------------------------
 * libpq takes a URI only with these schemes, spelt in lower case
 * (fe-connect.c's uri_prefix_length); anything else is a SQLite path. */

static size_t pg_scheme_len(const char *path)
{
    static const char *const schemes[] = {"postgresql://", "postgres://"};
    for (size_t k = 0; path != NULL && k < 2; k++)
        if (strncmp(path, schemes[k], strlen(schemes[k])) == 0)
            return strlen(schemes[k]);
    return 0;
}

web_db_engine web_db_engine_of(const char *path)
{
    return pg_scheme_len(path) > 0 ? WEB_DB_POSTGRESQL : WEB_DB_SQLITE;
}

const char *web_db_engine_name(web_db_engine e)
{
    switch (e) {
    case WEB_DB_SQLITE: return "sqlite";
    case WEB_DB_POSTGRESQL: return "postgresql";
    }
    return "?";
}

int web_db_path_check(const char *path, char *err, size_t errlen)
{
    const char *why = NULL;
    if (path == NULL || path[0] == '\0') {
        why = "empty database path";
    } else if (web_db_engine_of(path) == WEB_DB_POSTGRESQL) {
        /* A space or control byte ends a libpq URI early or is taken
         * literally; either way not what was meant.  Percent-encode. */
        for (const unsigned char *p = (const unsigned char *)path; *p; p++)
            if (*p <= 0x20 || *p == 0x7f) {
                why = "a PostgreSQL URI must not contain whitespace or "
                      "control characters (percent-encode them)";
                break;
            }
    }
    if (why == NULL)
        return WEB_OK;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", why);
    return WEB_EINVAL;
}

int web_db_path_resolve(const char *prefix, const char *path, char **out)
{
    int n;
    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    if (path == NULL)
        return WEB_EINVAL;
    if (prefix == NULL || path[0] == '/' || strcmp(path, ":memory:") == 0 ||
        web_db_engine_of(path) == WEB_DB_POSTGRESQL) {
        *out = strdup(path);
        return *out != NULL ? WEB_OK : WEB_ENOMEM;
    }
    n = asprintf(out, "%s/%s", prefix, path);
    if (n < 0) {
        *out = NULL;
        return WEB_ENOMEM;
    }
    return WEB_OK;
}

/* ---- the folder of a SQLite database -------------------------------------
 * One function answers for the start (CREATE) and for -t (CHECK): every
 * test before the mkdir is the same, so the two cannot disagree about a
 * folder, and a failure reads the same in both. */

/* What precedes the last '/' of path, trailing '/'s dropped ("/" stays);
 * "." without a '/'.  malloc'd; NULL when out of memory. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n;
    char *out;

    if (slash == NULL)
        return strdup(".");
    n = (size_t)(slash - path);
    while (n > 0 && path[n - 1] == '/')
        n--;
    if (n == 0)
        return strdup("/");
    out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, path, n);
        out[n] = '\0';
    }
    return out;
}

/* 0 if the calling process (effective ids, as mkdir and open use) may
 * create entries in the folder d, else -1 with errno set. */
static int can_create_in(const char *d)
{
    return faccessat(AT_FDCWD, d, W_OK | X_OK, AT_EACCESS);
}

int web_db_dir_prepare(const char *db_path, web_db_dir_op op,
                       web_db_dir_state *state, char *dir, size_t dirlen,
                       char *err, size_t errlen)
{
    struct stat st;
    char *d = NULL, *parent = NULL;
    int rc = WEB_OK;

    if (dir != NULL && dirlen > 0)
        dir[0] = '\0';
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (state != NULL)
        *state = WEB_DB_DIR_READY;
    if (db_path == NULL || state == NULL)
        return WEB_EINVAL;
    /* No folder of ours to make: a server, a memory database, or a URI
     * whose file name SQLite parses itself (Debian's SQLite is built
     * with SQLITE_USE_URI). */
    if (db_path[0] == '\0' || strcmp(db_path, ":memory:") == 0 ||
        strncmp(db_path, "file:", 5) == 0 ||
        web_db_engine_of(db_path) == WEB_DB_POSTGRESQL)
        return WEB_OK;
    d = folder_of(db_path);
    if (d == NULL)
        return WEB_ENOMEM;
    if (dir != NULL && dirlen > 0)
        snprintf(dir, dirlen, "%s", d);

    if (stat(d, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            rc = web__err(err, errlen, WEB_EIO, "database folder %s: %s", d,
                          strerror(ENOTDIR));
        else if (stat(db_path, &st) != 0 && errno == ENOENT &&
                 can_create_in(d) != 0)
            rc = web__err(err, errlen, WEB_EIO,
                          "cannot create database %s in its folder: %s",
                          db_path, strerror(errno));
        goto out;
    }
    if (errno != ENOENT) {
        rc = web__err(err, errlen, WEB_EIO, "database folder %s: %s", d,
                      strerror(errno));
        goto out;
    }
    parent = folder_of(d);
    if (parent == NULL) {
        rc = WEB_ENOMEM;
    } else if (stat(parent, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            rc = web__err(err, errlen, WEB_EIO,
                          "cannot create database folder %s: %s (%s is "
                          "missing too; only the last level is created)",
                          d, strerror(e), parent);
        else
            rc = web__err(err, errlen, WEB_EIO,
                          "cannot create database folder %s: %s", d,
                          strerror(e));
    } else if (!S_ISDIR(st.st_mode)) {
        rc = web__err(err, errlen, WEB_EIO,
                      "cannot create database folder %s: %s", d,
                      strerror(ENOTDIR));
    } else if (can_create_in(parent) != 0) {
        rc = web__err(err, errlen, WEB_EIO,
                      "cannot create database folder %s: %s", d,
                      strerror(errno));
    } else if (op == WEB_DB_DIR_CHECK) {
        *state = WEB_DB_DIR_MISSING;
    } else if (mkdir(d, WEB_DB_DIR_MODE) == 0) {
        *state = WEB_DB_DIR_MADE;
    } else if (errno == EEXIST && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* Another instance starting at the same time made it. */
        *state = WEB_DB_DIR_READY;
    } else {
        rc = web__err(err, errlen, WEB_EIO,
                      "cannot create database folder %s: %s", d,
                      strerror(errno));
    }
out:
    free(parent);
    free(d);
    return rc;
}

/* Append s[0..n) to buf at *o, cut to fit (buf keeps its NUL). */
static void put(char *buf, size_t len, size_t *o, const char *s, size_t n)
{
    if (*o + 1 >= len)
        return;
    if (n > len - 1 - *o)
        n = len - 1 - *o;
    memcpy(buf + *o, s, n);
    *o += n;
    buf[*o] = '\0';
}

const char *web_db_path_redact(const char *path, char *buf, size_t len)
{
    size_t o = 0, i, auth, end, at = 0, q;
    if (buf == NULL || len == 0)
        return buf;
    buf[0] = '\0';
    if (path == NULL) {
        put(buf, len, &o, "-", 1);
        return buf;
    }
    auth = pg_scheme_len(path);
    if (auth == 0) {
        put(buf, len, &o, path, strlen(path));
        return buf;
    }
    /* scheme://[user[:password]@]hosts[/db][?params].  The user info ends
     * at the last '@' before the parameters, not at the first '/': a
     * password with an unencoded '/' or '@' stays hidden as well (a
     * database name holding '@' gets over-redacted, which is harmless). */
    q = strcspn(path, "?");
    for (i = auth; i < q; i++)
        if (path[i] == '@')
            at = i;
    end = at > 0 ? at + strcspn(path + at, "/?")
                 : auth + strcspn(path + auth, "/?");
    put(buf, len, &o, path, auth);
    if (at > 0) {
        size_t colon = auth + strcspn(path + auth, ":@");
        if (colon < at) {
            put(buf, len, &o, path + auth, colon + 1 - auth);
            put(buf, len, &o, "***", 3);
            put(buf, len, &o, path + at, end - at);
        } else {
            put(buf, len, &o, path + auth, end - auth);
        }
    } else {
        put(buf, len, &o, path + auth, end - auth);
    }
    /* Path and parameters: hide the value of every password=. */
    put(buf, len, &o, path + end, q - end);
    i = q;
    while (path[i] != '\0') {
        size_t seg = 1 + strcspn(path + i + 1, "&"); /* '?'/'&' + pair */
        if (strncasecmp(path + i + 1, "password=", 9) == 0) {
            put(buf, len, &o, path + i, 10);
            put(buf, len, &o, "***", 3);
        } else {
            put(buf, len, &o, path + i, seg);
        }
        i += seg;
    }
    return buf;
}

/* ---- routes ------------------------------------------------------------- */

/* Does pattern have a ":name" segment? */
static int path_has_seg(const char *pat, const char *name, size_t n)
{
    const char *p = pat;
    while ((p = strstr(p, "/:")) != NULL) {
        p += 2;
        if (strncmp(p, name, n) == 0 && (p[n] == '/' || p[n] == '\0'))
            return 1;
    }
    return 0;
}

static int get_source(pctx *c, const web_route_conf *route, const tok *t,
                      web_source *src)
{
    /* $name, or $prefixNAME for the sources that take a name (no name
     * below starts with a prefix, so the order does not matter). */
    static const struct {
        const char *name;
        web_source_kind kind;
        int prefix;
    } vars[] = {
        {"request_method", WEB_SRC_METHOD, 0}, {"uri", WEB_SRC_PATH, 0},
        {"path", WEB_SRC_PATH, 0}, {"query_string", WEB_SRC_QUERY, 0},
        {"args", WEB_SRC_QUERY, 0}, {"remote_addr", WEB_SRC_REMOTE_ADDR, 0},
        {"request_id", WEB_SRC_REQUEST_ID, 0},
        {"time_iso", WEB_SRC_TIME_ISO, 0}, {"time_unix", WEB_SRC_TIME_UNIX, 0},
        {"content_type", WEB_SRC_CONTENT_TYPE, 0},
        {"seg_", WEB_SRC_SEG, 1}, {"arg_", WEB_SRC_ARG, 1},
        {"http_", WEB_SRC_HTTP, 1}, {"body_", WEB_SRC_BODY, 1},
    };
    size_t k;
    memset(src, 0, sizeof(*src));
    if (t->quoted) {
        src->kind = WEB_SRC_LITERAL;
        src->text = t->s;
        src->len = t->n;
        if (!web_utf8_valid(t->s, t->n))
            return perr(c, t->line, "string is not valid UTF-8");
        return WEB_OK;
    }
    if (strncmp(t->s, "raw:", 4) == 0) {
        if (t->n == 4)
            return perr(c, t->line, "empty SQL after \"raw:\"");
        if (memchr(t->s, ';', t->n) != NULL)
            return perr(c, t->line, "\";\" is not allowed in raw SQL \"%s\"",
                        t->s + 4);
        src->kind = WEB_SRC_RAW;
        src->text = t->s + 4;
        src->len = t->n - 4;
        return WEB_OK;
    }
    if (t->s[0] != '$')
        return perr(c, t->line, "invalid value \"%s\", expected a "
                    "$variable, a \"quoted string\" or raw:SQL", t->s);
    for (k = 0; k < sizeof vars / sizeof vars[0]; k++) {
        size_t pl = strlen(vars[k].name), nl;
        const char *name;
        if (!vars[k].prefix) {
            if (strcmp(t->s + 1, vars[k].name) != 0)
                continue;
            src->kind = vars[k].kind;
            return WEB_OK;
        }
        if (strncmp(t->s + 1, vars[k].name, pl) != 0)
            continue;
        name = t->s + 1 + pl;
        nl = t->n - 1 - pl;
        if (nl == 0)
            return perr(c, t->line, "missing name after \"$%s\"",
                        vars[k].name);
        src->kind = vars[k].kind;
        src->text = name;
        src->len = nl;
        if (vars[k].kind == WEB_SRC_SEG) {
            size_t p;
            for (p = 0; p < route->npaths; p++)
                if (!path_has_seg(route->paths[p], name, nl))
                    return perr(c, t->line, "variable \"%s\": path \"%s\" "
                                "has no segment \":%s\"", t->s,
                                route->paths[p], name);
        }
        if (vars[k].kind == WEB_SRC_HTTP) {
            size_t i;
            for (i = 0; i < nl; i++) {
                char ch = name[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
                    return perr(c, t->line, "invalid header name in \"%s\"",
                                t->s);
            }
        }
        return WEB_OK;
    }
    return perr(c, t->line, "unknown variable \"%s\"", t->s);
}

static int get_ident(pctx *c, const tok *t, const char *what,
                     const char **out)
{
    if (!web__ident_valid(t->s, t->n))
        return perr(c, t->line, "invalid identifier \"%s\" for %s", t->s,
                    what);
    *out = t->s;
    return WEB_OK;
}

typedef struct colvec {
    web_column *v;
    size_t n, cap;
} colvec;

static int add_col(pctx *c, const web_route_conf *route, colvec *cv,
                   const tok *col, const tok *val)
{
    web_column *nv;
    size_t k;
    const char *name = NULL;
    int rc = get_ident(c, col, "column", &name);
    if (rc != WEB_OK)
        return rc;
    for (k = 0; k < cv->n; k++)
        if (strcmp(cv->v[k].column, name) == 0)
            return perr(c, col->line, "duplicate column \"%s\"", name);
    if (cv->n == CONF_MAX_COLS)
        return perr(c, col->line, "too many columns (at most %u)",
                    CONF_MAX_COLS);
    nv = grow(c, cv->v, cv->n, &cv->cap, sizeof(web_column));
    if (nv == NULL)
        return oom(c);
    cv->v = nv;
    cv->v[cv->n].column = name;
    cv->v[cv->n].line = LOC_LINE(col->line);
    rc = get_source(c, route, val, &cv->v[cv->n].src);
    if (rc != WEB_OK)
        return rc;
    cv->n++;
    return WEB_OK;
}

static int do_defer(pctx *c, const web_route_conf *route, const node *d,
                    web_defer *df)
{
    static const char *const kinds[] = {"insert", "update", "delete",
                                        "upsert", NULL};
    colvec cols = {0}, sets = {0}, wheres = {0};
    web_source *conds = NULL;
    const char **conflict = NULL;
    size_t ccap = 0, k;
    int kind, rc;
    char what[32];
    if ((rc = need_block(c, d)) || (rc = arity(c, d, 2, 2)) ||
        (rc = get_choice(c, d, 0, kinds, &kind)) ||
        (rc = get_ident(c, &d->args[1], "table", &df->table)))
        return rc;
    df->kind = (web_defer_kind)kind;
    df->line = LOC_LINE(d->name.line);
    df->file = loc_file(c, d->name.line);
    snprintf(what, sizeof what, "defer %s", kinds[kind]);
    for (k = 0; k < d->nkids; k++) {
        const node *s = &d->kids[k];
        const char *nm = s->name.s;
        int keyword = !s->name.quoted;
        if ((rc = no_block(c, s)))
            return rc;
        if (keyword && strcmp(nm, "require") == 0) {
            /* A column named "require" can still be written quoted; an
             * unquoted one is almost surely a require in the wrong
             * block, which would silently become a column. */
            return perr(c, s->name.line, "\"require\" belongs to the "
                        "route, not to \"%s\" (quote it for a column named "
                        "require)", what);
        }
        if (keyword && strcmp(nm, "if") == 0) {
            web_source *nc;
            if ((rc = arity(c, s, 1, 1)))
                return rc;
            if (df->nconds == CONF_MAX_COLS)
                return perr(c, s->name.line, "too many \"if\"");
            nc = grow(c, conds, df->nconds, &ccap, sizeof(web_source));
            if (nc == NULL)
                return oom(c);
            conds = nc;
            rc = get_source(c, route, &s->args[0], &conds[df->nconds]);
            if (rc != WEB_OK)
                return rc;
            if (conds[df->nconds].kind == WEB_SRC_LITERAL ||
                conds[df->nconds].kind == WEB_SRC_RAW)
                return perr(c, s->args[0].line, "\"if\" needs a $variable");
            df->nconds++;
        } else if (keyword && strcmp(nm, "set") == 0 &&
                   (kind == WEB_DEFER_UPDATE || kind == WEB_DEFER_UPSERT)) {
            if ((rc = arity(c, s, 2, 2)) ||
                (rc = add_col(c, route, &sets, &s->args[0], &s->args[1])))
                return rc;
        } else if (keyword && strcmp(nm, "where") == 0 &&
                   (kind == WEB_DEFER_UPDATE || kind == WEB_DEFER_DELETE)) {
            if ((rc = arity(c, s, 2, 2)) ||
                (rc = add_col(c, route, &wheres, &s->args[0], &s->args[1])))
                return rc;
        } else if (keyword && strcmp(nm, "conflict") == 0 &&
                   kind == WEB_DEFER_UPSERT) {
            size_t a;
            if ((rc = arity(c, s, 1, CONF_MAX_COLS)))
                return rc;
            if (df->nconflict > 0)
                return perr(c, s->name.line, "duplicate directive "
                            "\"conflict\"");
            conflict = web_arena_alloc(c->a, s->nargs * sizeof(char *));
            if (conflict == NULL)
                return oom(c);
            for (a = 0; a < s->nargs; a++)
                if ((rc = get_ident(c, &s->args[a], "column", &conflict[a])))
                    return rc;
            df->nconflict = s->nargs;
        } else if (kind == WEB_DEFER_INSERT || kind == WEB_DEFER_UPSERT) {
            if (s->nargs == 0)
                return perr(c, s->name.line, "expected a value after "
                            "column \"%s\"", nm);
            if ((rc = arity(c, s, 1, 1)) ||
                (rc = add_col(c, route, &cols, &s->name, &s->args[0])))
                return rc;
        } else {
            return perr(c, s->name.line, "unknown directive \"%s\" in \"%s\""
                        "%s", nm, what, kind == WEB_DEFER_DELETE
                        ? " (expected if or where)"
                        : " (expected if, set or where)");
        }
    }
    df->conds = conds;
    df->cols = cols.v;
    df->ncols = cols.n;
    df->sets = sets.v;
    df->nsets = sets.n;
    df->wheres = wheres.v;
    df->nwheres = wheres.n;
    df->conflict = conflict;
    /* What each kind cannot do without, checked in this order.  An
     * UPDATE or DELETE without WHERE would touch the whole table on every
     * request: refuse it rather than let a typo do that. */
    const struct {
        int missing;
        const char *needs;
    } parts[] = {
        {(kind == WEB_DEFER_INSERT || kind == WEB_DEFER_UPSERT) &&
             df->ncols == 0,
         "at least one column"},
        {kind == WEB_DEFER_UPDATE && df->nsets == 0, "at least one \"set\""},
        {(kind == WEB_DEFER_UPDATE || kind == WEB_DEFER_DELETE) &&
             df->nwheres == 0,
         "at least one \"where\""},
        {kind == WEB_DEFER_UPSERT && df->nconflict == 0,
         "\"conflict COLUMN...\""},
    };
    for (k = 0; k < sizeof parts / sizeof parts[0]; k++)
        if (parts[k].missing)
            return perr(c, d->name.line, "\"%s\" needs %s", what,
                        parts[k].needs);
    return WEB_OK;
}

static int parse_methods(pctx *c, const tok *t, unsigned *out)
{
    const char *p = t->s;
    *out = 0;
    if (strcasecmp(p, "any") == 0) {
        *out = WEB_M_ANY;
        return WEB_OK;
    }
    while (*p != '\0') {
        size_t n = strcspn(p, ",|");
        char m[16];
        unsigned bit;
        size_t i;
        if (n == 0 || n >= sizeof m)
            return perr(c, t->line, "invalid method list \"%s\", expected "
                        "e.g. GET, GET|POST or any", t->s);
        for (i = 0; i < n; i++)
            m[i] = (p[i] >= 'a' && p[i] <= 'z') ? (char)(p[i] - 32) : p[i];
        m[n] = '\0';
        bit = web_method_bit(m);
        if (bit == WEB_M_OTHER || bit == 0)
            return perr(c, t->line, "unknown method \"%s\"", m);
        *out |= bit;
        p += n;
        if (*p != '\0') {
            p++;
            if (*p == '\0')
                return perr(c, t->line, "invalid method list \"%s\"", t->s);
        }
    }
    return WEB_OK;
}

static int valid_ctype(const char *s)
{
    const char *slash = strchr(s, '/');
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return slash != NULL;
}

static int any_body_src(const web_source *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].kind == WEB_SRC_BODY)
            return 1;
    return 0;
}

static int any_body_col(const web_column *cols, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cols[i].src.kind == WEB_SRC_BODY)
            return 1;
    return 0;
}

/* Does any value of the route read a body field?  Only such a route gets
 * its body kept and (lazily) parsed. */
static int route_reads_body(const web_route_conf *r)
{
    if (any_body_src(r->requires, r->nrequires))
        return 1;
    for (size_t k = 0; k < r->ndefers; k++) {
        const web_defer *d = &r->defers[k];
        if (any_body_src(d->conds, d->nconds) ||
            any_body_col(d->cols, d->ncols) ||
            any_body_col(d->sets, d->nsets) ||
            any_body_col(d->wheres, d->nwheres))
            return 1;
    }
    return 0;
}

/* "require $VAR ...;": appended to the route's list (the directive may be
 * repeated).  Only request values make sense: a literal or raw: is always
 * present. */
static int add_requires(pctx *c, web_route_conf *r, const node *s,
                        web_source **reqs, size_t *cap)
{
    int rc = arity(c, s, 1, CONF_MAX_ARGS);
    if (rc != WEB_OK)
        return rc;
    for (size_t a = 0; a < s->nargs; a++) {
        web_source *nr;
        if (r->nrequires == CONF_MAX_COLS)
            return perr(c, s->args[a].line, "too many required values (at "
                        "most %u)", CONF_MAX_COLS);
        nr = grow(c, *reqs, r->nrequires, cap, sizeof(web_source));
        if (nr == NULL)
            return oom(c);
        *reqs = nr;
        rc = get_source(c, r, &s->args[a], &nr[r->nrequires]);
        if (rc != WEB_OK)
            return rc;
        if (nr[r->nrequires].kind == WEB_SRC_LITERAL ||
            nr[r->nrequires].kind == WEB_SRC_RAW)
            return perr(c, s->args[a].line, "\"require\" needs a "
                        "$variable, not \"%s\"", s->args[a].s);
        r->nrequires++;
        r->requires = *reqs;
    }
    return WEB_OK;
}

static int do_route(pctx *c, const node *d, web_route_conf *r)
{
    size_t k, dcap = 0, rcap = 0;
    web_source *reqs = NULL;
    web_defer *defers = NULL;
    const char **paths;
    int rc, have_respond = 0;
    seen_set seen = {{0}, 0};
    if ((rc = need_block(c, d)))
        return rc;
    if (d->nargs < 2)
        return perr(c, d->name.line, "\"route\" needs METHODS and at least "
                    "one PATH, e.g. route GET /hello { ... }");
    if (d->nargs - 1 > CONF_MAX_PATHS)
        return perr(c, d->args[CONF_MAX_PATHS + 1].line,
                    "too many paths (at most %u)", CONF_MAX_PATHS);
    r->line = LOC_LINE(d->name.line);
    r->file = loc_file(c, d->name.line);
    if ((rc = parse_methods(c, &d->args[0], &r->methods)))
        return rc;
    paths = web_arena_alloc(c->a, (d->nargs - 1) * sizeof(char *));
    if (paths == NULL)
        return oom(c);
    for (k = 1; k < d->nargs; k++) {
        char why[128];
        if (web_pattern_check(d->args[k].s, why, sizeof why) != WEB_OK)
            return perr(c, d->args[k].line, "invalid path: %s", why);
        paths[k - 1] = d->args[k].s;
    }
    r->paths = paths;
    r->npaths = d->nargs - 1;
    r->content_type = "text/plain";
    r->body = "";
    for (k = 0; k < d->nkids; k++) {
        const node *s = &d->kids[k];
        const char *nm = s->name.s;
        if (strcmp(nm, "defer") == 0) {
            web_defer *nd;
            if (r->ndefers == CONF_MAX_DEFERS)
                return perr(c, s->name.line, "too many \"defer\" (at most "
                            "%u)", CONF_MAX_DEFERS);
            nd = grow(c, defers, r->ndefers, &dcap, sizeof(web_defer));
            if (nd == NULL)
                return oom(c);
            defers = nd;
            memset(&defers[r->ndefers], 0, sizeof(web_defer));
            rc = do_defer(c, r, s, &defers[r->ndefers]);
            if (rc != WEB_OK)
                return rc;
            r->ndefers++;
            continue;
        }
        if (strcmp(nm, "require") == 0) {
            if ((rc = no_block(c, s)) ||
                (rc = add_requires(c, r, s, &reqs, &rcap)))
                return rc;
            continue;
        }
        if ((rc = no_block(c, s)) || (rc = once(c, &seen, s)))
            return rc;
        if (strcmp(nm, "handler") == 0) {
            if ((rc = arity(c, s, 1, 1)) ||
                (rc = get_ident(c, &s->args[0], "handler", &r->handler)))
                return rc;
        } else if (strcmp(nm, "max_body") == 0) {
            uint64_t v;
            if ((rc = arity(c, s, 1, 1)) ||
                (rc = get_size(c, s, 0, 1024u * 1024u * 1024u, &v)))
                return rc;
            if (v == 0)
                return perr(c, s->args[0].line, "\"max_body\" must be at "
                            "least 1 byte in a route (leave it out to use "
                            "the server's)");
            r->max_body = (size_t)v;
        } else if (strcmp(nm, "respond") == 0) {
            uint64_t st;
            size_t bi;
            if ((rc = arity(c, s, 1, 3)) ||
                (rc = get_num(c, s, 0, 100, 599, &st)))
                return rc;
            r->status = (int)st;
            have_respond = 1;
            if (s->nargs == 3) {
                if (!valid_ctype(s->args[1].s))
                    return perr(c, s->args[1].line, "invalid content type "
                                "\"%s\"", s->args[1].s);
                r->content_type = s->args[1].s;
            }
            if (s->nargs >= 2) {
                bi = s->nargs - 1;
                r->body = s->args[bi].s;
                r->body_len = s->args[bi].n;
            }
        } else {
            return perr(c, s->name.line, "unknown directive \"%s\" in "
                        "\"route\" (expected handler, respond, require, "
                        "max_body or defer)", nm);
        }
    }
    r->defers = defers;
    r->reads_body = route_reads_body(r);
    if (r->handler != NULL && have_respond)
        return perr(c, d->name.line, "route has both \"handler\" and "
                    "\"respond\"; use one");
    if (r->handler == NULL && !have_respond)
        return perr(c, d->name.line, "route needs \"handler NAME;\" or "
                    "\"respond STATUS ...;\"");
    return WEB_OK;
}

static int do_top(pctx *c, const node *kids, size_t nkids)
{
    size_t k, cap = 0;
    web_route_conf *routes = NULL;
    seen_set seen = {{0}, 0};
    for (k = 0; k < nkids; k++) {
        const node *d = &kids[k];
        const char *nm = d->name.s;
        int rc;
        if (strcmp(nm, "route") == 0) {
            web_route_conf *nr;
            if (c->conf->nroutes == WEB_MAX_ROUTES)
                return perr(c, d->name.line, "too many routes");
            nr = grow(c, routes, c->conf->nroutes, &cap,
                      sizeof(web_route_conf));
            if (nr == NULL)
                return oom(c);
            routes = nr;
            memset(&routes[c->conf->nroutes], 0, sizeof(web_route_conf));
            rc = do_route(c, d, &routes[c->conf->nroutes]);
            if (rc != WEB_OK)
                return rc;
            rc = no_duplicate(c, routes, c->conf->nroutes);
            if (rc != WEB_OK)
                return rc;
            c->conf->nroutes++;
            c->conf->routes = routes;
            continue;
        }
        if (strcmp(nm, "server") != 0 && strcmp(nm, "database") != 0 &&
            strcmp(nm, "pool") != 0)
            return perr(c, d->name.line, "unknown directive \"%s\"", nm);
        if ((rc = need_block(c, d)))
            return rc;
        if (d->nargs > 0)
            return perr(c, d->args[0].line, "\"%s\" takes no arguments",
                        nm);
        if ((rc = once(c, &seen, d)))
            return rc;
        if (strcmp(nm, "server") == 0)
            rc = do_block(c, d, server_fields, one_server);
        else if (strcmp(nm, "database") == 0)
            rc = do_block(c, d, database_fields, one_database);
        else
            rc = do_block(c, d, pool_fields, one_pool);
        if (rc != WEB_OK)
            return rc;
    }
    return WEB_OK;
}

/* A route's max_body may only lower the server's: the server sizes its
 * buffers and arenas for its own max_body.  Checked once every block is
 * read, since "server" may come after the routes. */
static int check_route_bounds(pctx *c)
{
    const web_conf *cf = c->conf;
    for (size_t i = 0; i < cf->nroutes; i++)
        if (cf->routes[i].max_body > cf->server.max_body)
            return perr_at(c, cf->routes[i].file, cf->routes[i].line,
                           "route max_body %zu is larger than the server's "
                           "max_body %zu", cf->routes[i].max_body,
                           cf->server.max_body);
    return WEB_OK;
}

/* ==== entry points ======================================================== */

static web_conf *conf_new(const char *name)
{
    web_arena *a = web_arena_create(16384, 256u * 1024u * 1024u);
    web_conf *c;
    if (a == NULL)
        return NULL;
    c = web_arena_alloc(a, sizeof(*c));
    if (c == NULL || (c->file = web_arena_strdup(a, name)) == NULL) {
        web_arena_free(a);
        return NULL;
    }
    c->mem_ = a;
    c->server.listen = "unix:var/waituntil.sock";
    c->server.socket_mode = 0660;
    c->server.threads = 4;
    c->server.max_body = 1024 * 1024;
    c->server.max_params = 1000;
    c->server.max_query_args = 1000;
    c->server.max_json_depth = 32;
    c->server.max_json_elements = 10000;
    c->server.log = "stderr";
    c->server.pid = NULL;
    c->server.log_level = WEB_LOG_INFO;
    c->server.log_values = WEB_LOG_VALUES_ON;
    c->server.access_log = NULL;
    c->database.path = "var/waituntil.db";
    c->database.journal_mode = "wal";
    c->database.synchronous = "normal";
    c->database.busy_timeout_ms = 5000;
    c->database.engine = WEB_DB_SQLITE;
    c->database.reconnect_ms = 10000;
    c->database.statement_cache = 64;
    c->database.migrations = "conf/migrations";
    c->pool.workers = 2;
    c->pool.queue = 65536;
    c->pool.tasks_per_request = 16;
    c->pool.batch = 256;
    c->pool.task_timeout_ms = 5000;
    c->pool.admission = WEB_ADMIT_WAIT;
    c->pool.admission_wait_ms = 100;
    c->pool.drain_timeout_ms = 30000;
    c->pool.busy_retries = 5;
    c->pool.batch_delay_ms = 2;
    c->pool.batch_delay_max_ms = 20;
    c->pool.journal = 1;
    c->pool.journal_sync_ms = 100;
    c->pool.journal_path = NULL;
    c->routes = NULL;
    c->nroutes = 0;
    return c;
}

web_conf *web_conf_default(void)
{
    return conf_new("(defaults)");
}

void web_conf_free(web_conf *c)
{
    if (c != NULL)
        web_arena_free(c->mem_);
}

/* Parse text named name; st: the main file's identity when it was read
 * from a file (so that including it again is a cycle), else NULL. */
static int conf_parse(const char *text, size_t n, const char *name,
                      const struct stat *st, web_conf **out, char *errbuf,
                      size_t errlen)
{
    pctx c;
    node *kids;
    size_t nkids;
    int rc;
    if (errlen > 0 && errbuf != NULL)
        errbuf[0] = '\0';
    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    if (text == NULL && n > 0)
        return WEB_EINVAL;
    if (name == NULL)
        name = "(string)";
    memset(&c, 0, sizeof c);
    c.file = name;
    c.err = errbuf;
    c.errlen = errbuf ? errlen : 0;
    c.text = text;
    c.n = n;
    c.line = LOC(0, 1);
    if (n > CONF_MAX_TEXT)
        return perr(&c, 1, "file too large (more than %u bytes)",
                    CONF_MAX_TEXT);
    c.conf = conf_new(name);
    if (c.conf == NULL)
        return oom(&c);
    c.a = c.conf->mem_;
    c.total = n;
    c.files = grow(&c, NULL, 0, &c.files_cap, sizeof *c.files);
    if (c.files == NULL) {
        web_conf_free(c.conf);
        return oom(&c);
    }
    c.files[0] = c.conf->file;
    c.nfiles = 1;
    c.open[0].dev = st != NULL ? st->st_dev : 0;
    c.open[0].ino = st != NULL ? st->st_ino : 0;
    c.open[0].idx = 0;
    c.nopen = 1;
    rc = parse_block(&c, &kids, &nkids, 0, 0, 1);
    if (rc == WEB_OK)
        rc = do_top(&c, kids, nkids);
    if (rc == WEB_OK)
        rc = check_route_bounds(&c);
    if (rc != WEB_OK) {
        web_conf_free(c.conf);
        return rc;
    }
    c.conf->files = c.files;
    c.conf->nfiles = c.nfiles;
    *out = c.conf;
    return WEB_OK;
}

int web_conf_parse(const char *text, size_t n, const char *name,
                   web_conf **out, char *errbuf, size_t errlen)
{
    return conf_parse(text, n, name, NULL, out, errbuf, errlen);
}

int web_conf_load(const char *path, web_conf **out, char *errbuf,
                  size_t errlen)
{
    FILE *f;
    char *buf;
    size_t n;
    struct stat st;
    int rc;
    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    if (path == NULL)
        return WEB_EINVAL;
    f = fopen(path, "rb");
    if (f == NULL) {
        char eb[128];
        if (errlen > 0 && errbuf)
            snprintf(errbuf, errlen, "%s: cannot open: %s", path,
                     strerror_r(errno, eb, sizeof eb));
        return WEB_EIO;
    }
    if (fstat(fileno(f), &st) != 0)
        memset(&st, 0, sizeof st);
    buf = malloc(CONF_MAX_TEXT + 1);
    if (buf == NULL) {
        fclose(f);
        return WEB_ENOMEM;
    }
    n = fread(buf, 1, CONF_MAX_TEXT + 1, f);
    if (ferror(f)) {
        if (errlen > 0 && errbuf)
            snprintf(errbuf, errlen, "%s: read error", path);
        fclose(f);
        free(buf);
        return WEB_EIO;
    }
    fclose(f);
    rc = conf_parse(buf, n, path, &st, out, errbuf, errlen);
    free(buf);
    return rc;
}

int web_conf_router(const web_conf *c, web_router **out)
{
    web_router *r;
    size_t i, p;
    if (out == NULL)
        return WEB_EINVAL;
    *out = NULL;
    if (c == NULL)
        return WEB_EINVAL;
    r = web_router_create();
    if (r == NULL)
        return WEB_ENOMEM;
    for (i = 0; i < c->nroutes; i++) {
        const web_route_conf *rt = &c->routes[i];
        for (p = 0; p < rt->npaths; p++) {
            int rc = web_router_add(r, rt->methods, rt->paths[p],
                                    (void *)rt);
            if (rc != WEB_OK) {
                web_router_free(r);
                return rc;
            }
        }
    }
    *out = r;
    return WEB_OK;
}
