/*
 * arena.c -- per-request bump allocator (see web.h, "per-request arena").
 *
 * DESIGN
 *   An arena is a list of chunks, newest first, plus a list of dispose
 *   records.  Small allocations bump an offset in the current chunk; when
 *   it is full a new chunk of chunk_size bytes becomes current.  A request
 *   bigger than a quarter of chunk_size gets a dedicated chunk that is
 *   linked in *behind* the current one, so the remaining space of the
 *   current chunk is not thrown away by one large body copy (h2o does the
 *   same with its "directs" list).
 *
 *   The bound is on reserved bytes (sum of chunk capacities), not on bytes
 *   handed out, because reserved bytes are what the process really holds.
 *   It is checked by subtraction (need > max_total - reserved), so no sum
 *   can overflow.
 *
 *   reset keeps the first chunk, which is what makes reuse cheap: a
 *   request that fits in one chunk never calls malloc after the first.
 *
 *   Not thread-safe: one arena belongs to one request thread at a time.
 */
#include "web.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
    struct chunk *next;
    size_t size;   /* capacity of data[] */
    size_t off;    /* bytes used in data[] */
    alignas(max_align_t) unsigned char data[];
} chunk;

typedef struct dispose {
    struct dispose *next;
    void (*fn)(void *);
    void *arg;
} dispose;

struct web_arena {
    chunk *head;        /* all chunks, newest first; the last is "first" */
    chunk *cur;         /* the chunk small allocations bump in */
    chunk *first;       /* kept across reset */
    dispose *disposers; /* newest first */
    size_t chunk_size;
    size_t max_total;
    size_t reserved;    /* sum of chunk sizes */
    size_t used;        /* bytes handed out (with padding) since reset */
};

#define MAX_ALIGN 4096u

static chunk *chunk_new(web_arena *a, size_t size)
{
    chunk *c;
    if (size > a->max_total - a->reserved)
        return NULL;
    if (size > SIZE_MAX - sizeof(chunk))
        return NULL;
    c = malloc(sizeof(chunk) + size);
    if (c == NULL)
        return NULL;
    c->size = size;
    c->off = 0;
    c->next = NULL;
    a->reserved += size;
    return c;
}

web_arena *web_arena_create(size_t chunk_size, size_t max_total)
{
    web_arena *a;
    if (chunk_size == 0)
        chunk_size = WEB_ARENA_DEFAULT_CHUNK;
    if (max_total == 0)
        max_total = SIZE_MAX;
    if (chunk_size > max_total)
        return NULL;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->chunk_size = chunk_size;
    a->max_total = max_total;
    a->first = chunk_new(a, chunk_size);
    if (a->first == NULL) {
        free(a);
        return NULL;
    }
    a->head = a->cur = a->first;
    return a;
}

static void run_disposers(web_arena *a)
{
    /* A disposer may not allocate from the arena it is being run by; the
     * list is detached first so a misbehaving one cannot loop forever. */
    dispose *d = a->disposers;
    a->disposers = NULL;
    for (; d != NULL; d = d->next)
        d->fn(d->arg);
}

void web_arena_reset(web_arena *a)
{
    chunk *c, *next;
    if (a == NULL)
        return;
    run_disposers(a);
    for (c = a->head; c != NULL; c = next) {
        next = c->next;
        if (c != a->first) {
            a->reserved -= c->size;
            free(c);
        }
    }
    a->first->off = 0;
    a->first->next = NULL;
    a->head = a->cur = a->first;
    a->used = 0;
}

void web_arena_free(web_arena *a)
{
    if (a == NULL)
        return;
    web_arena_reset(a);
    free(a->first);
    free(a);
}

/* Padding needed to align the next byte of c to align. */
static size_t pad_for(const chunk *c, size_t align)
{
    uintptr_t p = (uintptr_t)(c->data + c->off);
    return (size_t)((align - (p & (align - 1))) & (align - 1));
}

void *web_arena_alloc_aligned(web_arena *a, size_t n, size_t align)
{
    chunk *c;
    size_t pad;
    void *p;
    if (a == NULL || align == 0 || (align & (align - 1)) != 0 ||
        align > MAX_ALIGN)
        return NULL;
    if (n == 0)
        n = 1;
    c = a->cur;
    pad = pad_for(c, align);
    if (pad <= c->size - c->off && n <= c->size - c->off - pad)
        goto take;
    if (n > SIZE_MAX - MAX_ALIGN - sizeof(chunk))
        return NULL;
    /* chunk_size >= align - 1 is not guaranteed (a 1 KiB chunk and a 4 KiB
     * alignment), so the test below is written to not underflow. */
    if (n > a->chunk_size / 4 || align - 1 > a->chunk_size ||
        n > a->chunk_size - (align - 1)) {
        /* Dedicated chunk, linked behind cur so cur keeps its free tail. */
        c = chunk_new(a, n + align - 1);
        if (c == NULL)
            return NULL;
        c->next = a->cur->next;
        a->cur->next = c;  /* cur is always head, so c stays reachable */
    } else {
        c = chunk_new(a, a->chunk_size);
        if (c == NULL)
            return NULL;
        c->next = a->head;
        a->head = a->cur = c;
    }
    pad = pad_for(c, align);
take:
    p = c->data + c->off + pad;
    c->off += pad + n;
    a->used += pad + n;
    return p;
}

void *web_arena_alloc(web_arena *a, size_t n)
{
    return web_arena_alloc_aligned(a, n, alignof(max_align_t));
}

char *web_arena_strndup(web_arena *a, const char *s, size_t n)
{
    char *p;
    if (s == NULL || n == SIZE_MAX)
        return NULL;
    p = web_arena_alloc_aligned(a, n + 1, 1);
    if (p == NULL)
        return NULL;
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *web_arena_strdup(web_arena *a, const char *s)
{
    if (s == NULL)
        return NULL;
    return web_arena_strndup(a, s, strlen(s));
}

int web_arena_on_reset(web_arena *a, void (*fn)(void *), void *arg)
{
    dispose *d;
    if (a == NULL || fn == NULL)
        return WEB_EINVAL;
    d = web_arena_alloc(a, sizeof(*d));
    if (d == NULL)
        return WEB_ETOOBIG;
    d->fn = fn;
    d->arg = arg;
    d->next = a->disposers;
    a->disposers = d;
    return WEB_OK;
}

size_t web_arena_used(const web_arena *a)
{
    return a == NULL ? 0 : a->used;
}

size_t web_arena_reserved(const web_arena *a)
{
    return a == NULL ? 0 : a->reserved;
}
