/*
 * fuzz_qb_raw.c -- libFuzzer harness for raw SQL in a dialect
 * (qb_query_raw_dialect) and the lexer under it (strbuf.c qbi_sql_skip).
 *
 * DESIGN
 *   The first byte picks the dialect (bit 0: PostgreSQL); the rest, up to
 *   a NUL, is the SQL.  Invariants checked for both dialects:
 *     1. Any text builds (QB_OK), sql_len is the text's length, and
 *        building the result again gives it back unchanged (whitespace
 *        collapse and placeholder rendering are idempotent).
 *     2. SQLite: the text is the input with whitespace collapsed only
 *        (placeholders left as written).
 *     3. PostgreSQL: no `?` is left outside literals and comments, and
 *        the executor's scanner (qbi_pg_param over qbi_sql_skip) sees
 *        exactly one parameter per `?`/`?N` of the input plus the $N
 *        the input already had: a rendered $N never lands inside a name
 *        or a literal, and collapsing whitespace never moves a literal's
 *        end.  qbi_pg_max_param agrees with that scan.
 *   Debug SQL and a copy are made for every query; ASan/UBSan/LSan
 *   watch the lexer's look-back and the in-place collapse.
 *
 * Build and run: see tests/fuzz/qb_raw/README.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qb_priv.h"

/* Placeholders of text s by dialect d's lexer: `?`/`?N` tokens (nq) and
 * PostgreSQL $N parameters (np), and the highest $N (maxp). */
static void count(const char *s, size_t n, qb_dialect d, size_t *nq,
                  size_t *np, size_t *maxp)
{
    size_t i = 0, j, v;
    int closed;

    *nq = *np = *maxp = 0;
    while (i < n) {
        j = qbi_sql_skip(s, n, i, d, &closed);
        if (j == i && s[i] == '?') {       /* SQLite: ? then its digits */
            for (j = i + 1; j < n && s[j] >= '0' && s[j] <= '9'; j++)
                ;
        }
        if (j == i) {
            i++;
            continue;
        }
        if (s[i] == '?')
            (*nq)++;
        else if (d == QB_DIALECT_POSTGRES && qbi_pg_param(s, n, i, &v) == j) {
            (*np)++;
            if (v > *maxp)
                *maxp = v;
        }
        i = j;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qb_dialect d;
    qb_query *q = NULL, *again = NULL, *dup;
    size_t n, nq_in, np_in, max_in, nq_out, np_out, max_out;
    char *sql, *flat, *dbg;
    qbi_sb sb;

    if (size < 1 || size > 4096)
        return 0;
    d = (data[0] & 1) ? QB_DIALECT_POSTGRES : QB_DIALECT_SQLITE;
    sql = malloc(size);
    if (sql == NULL)
        return 0;
    memcpy(sql, data + 1, size - 1);
    sql[size - 1] = '\0';
    n = strlen(sql);

    if (qb_query_raw_dialect(&q, d, sql, 0, NULL, QB_FETCH_ALL) != QB_OK ||
        q == NULL || strlen(q->sql) != q->sql_len ||
        qb_query_dialect(q) != d) {
        fprintf(stderr, "raw build failed: %s\n", sql);
        abort();
    }
    if (qb_query_raw_dialect(&again, d, q->sql, 0, NULL, QB_FETCH_ALL) !=
            QB_OK || strcmp(again->sql, q->sql) != 0) {
        fprintf(stderr, "not idempotent:\n  %s\n  %s\n", q->sql,
                again ? again->sql : "(none)");
        abort();
    }
    qb_query_free(again);

    if (d == QB_DIALECT_SQLITE) {
        qbi_sb_init(&sb);
        qbi_sql_collapse(&sb, sql, n, d);
        flat = qbi_sb_take(&sb, NULL);
        if (flat != NULL && strcmp(flat, q->sql) != 0) {
            fprintf(stderr, "SQLite text changed beyond whitespace:\n"
                    "  %s\n  %s\n", flat, q->sql);
            abort();
        }
        free(flat);
    } else {
        count(sql, n, d, &nq_in, &np_in, &max_in);
        count(q->sql, q->sql_len, d, &nq_out, &np_out, &max_out);
        if (nq_out != 0 || np_out != nq_in + np_in ||
            max_out != qbi_pg_max_param(q->sql, q->sql_len)) {
            fprintf(stderr, "placeholders: in ?=%zu $=%zu, out ?=%zu "
                    "$=%zu (max %zu vs %zu)\n  %s\n  %s\n", nq_in, np_in,
                    nq_out, np_out, max_out,
                    qbi_pg_max_param(q->sql, q->sql_len), sql, q->sql);
            abort();
        }
    }
    dbg = qb_query_debug_sql(q);
    free(dbg);
    dup = qb_query_dup(q);
    qb_query_free(dup);
    qb_query_free(q);
    free(sql);
    return 0;
}
