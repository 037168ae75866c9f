/*
 * defer_log.c -- folding repeated log lines, so that a failure that hits
 * every task (disk full, a lost database) costs one line a second, not
 * one per task.
 *
 * DESIGN
 *
 * A line's key is its event, rc and detail: what went wrong, not which
 * task it happened to (label, SQL, request id and values are left out,
 * or a route's every task would be a new key).  The first line of a key
 * is written whole, request id and values included, and opens a
 * one-second window; lines of that key inside the window are counted and
 * not written; the last of them is kept, in the form the caller gives
 * for it (defer_run.c: without request_id and values, since a summary
 * stands for N tasks and naming one of them would mislead).  When the
 * window is over (checked by the next line of the key, and by the pool's
 * monitor thread every half second) and lines were folded, the kept line
 * is written with " repeated=N" appended, and a new window opens; a
 * window that folded nothing closes the key.  So a failure repeating all
 * the time gives its first line (with its request) and then one summary
 * a second (with a count), and the written lines plus their repeated=
 * counts add up to the events.
 *
 * Keys live in a small table (RL_SLOTS); when every slot holds an open
 * window, a line of a new key is written unfolded (never dropped).
 * Shutdown's reports (task_left, task_hung, shutdown, drain_deadline)
 * are always written: they are bounded by the queue and each names what
 * was lost.  So are the journal's journal_sync_failed/_ok: said once
 * per episode already, and a folded one would come out later than the
 * other, saying the opposite of the state.  After defer_pool_shutdown's
 * last flush, folding is off.
 *
 * LOCK ORDER: rl->mu is a leaf.  Nothing is written under it: a summary
 * is copied out and written after the unlock.
 */
#define _GNU_SOURCE
#include "defer_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_SLOTS 16
#define RL_KEY_MAX 320
#define RL_LINE_MAX 4000 /* defer_run.c's LOG_LINE_MAX */
#define RL_WINDOW_NS INT64_C(1000000000)

typedef struct rl_slot {
    int used;
    uint64_t hash;
    char key[RL_KEY_MAX];
    int64_t window_end;
    uint64_t folded;           /* lines folded in this window */
    int level;                 /* of the kept line */
    char line[RL_LINE_MAX];    /* the last folded line */
} rl_slot;

struct defer_rl {
    pthread_mutex_t mu;
    int off;
    rl_slot slot[RL_SLOTS];
    atomic_uint_least64_t repeated; /* lines folded, ever */
};

static void rl_lock(defer_rl *rl)
{
    defer__mutex_lock(&rl->mu);
}

static void rl_unlock(defer_rl *rl)
{
    defer__mutex_unlock(&rl->mu);
}

int defer__rl_init(defer_pool *p)
{
    defer_rl *rl;
    atomic_init(&p->log_dropped, 0);
    rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return DEFER_ENOMEM;
    if (pthread_mutex_init(&rl->mu, NULL) != 0) {
        free(rl);
        return DEFER_ENOMEM;
    }
    atomic_init(&rl->repeated, 0);
    p->rl = rl;
    return DEFER_OK;
}

void defer__rl_fini(defer_pool *p)
{
    if (p->rl == NULL)
        return;
    (void)pthread_mutex_destroy(&p->rl->mu);
    free(p->rl);
    p->rl = NULL;
}

/* Lines that are never folded: shutdown's account of what was lost. */
static int always_written(const char *event)
{
    return strcmp(event, "task_left") == 0 ||
           strcmp(event, "task_hung") == 0 ||
           strcmp(event, "shutdown") == 0 ||
           strcmp(event, "drain_deadline") == 0 ||
           /* once per episode already, and their order is the state:
            * a folded one would come out later, out of order */
           strcmp(event, "journal_sync_failed") == 0 ||
           strcmp(event, "journal_sync_ok") == 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = UINT64_C(1469598103934665603);
    while (*s != '\0') {
        h ^= (unsigned char)*s++;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* slot's summary into sum (the kept line plus repeated=N); resets the
 * count and opens the next window. */
static void summarize(rl_slot *sl, int64_t now, char *sum, size_t len,
                      int *level)
{
    snprintf(sum, len, "%s repeated=%llu", sl->line,
             (unsigned long long)sl->folded);
    *level = sl->level;
    sl->folded = 0;
    sl->window_end = now + RL_WINDOW_NS;
}

int defer__rl_pass(defer_pool *p, int level, const char *event, int rc,
                   const char *detail, const char *keep,
                   char *sum, size_t sum_len, int *sum_level)
{
    defer_rl *rl = p->rl;
    char key[RL_KEY_MAX];
    uint64_t h;
    int64_t now;
    rl_slot *hit = NULL, *free_sl = NULL;
    int i, pass = 1;

    sum[0] = '\0';
    if (rl == NULL || always_written(event))
        return 1;
    snprintf(key, sizeof key, "%s\x1f%d\x1f%s", event, rc,
             detail != NULL ? detail : "");
    h = fnv1a(key);
    now = defer__now_ns();
    rl_lock(rl);
    if (rl->off) {
        rl_unlock(rl);
        return 1;
    }
    for (i = 0; i < RL_SLOTS; i++) {
        rl_slot *sl = &rl->slot[i];
        if (sl->used && sl->hash == h && strcmp(sl->key, key) == 0) {
            hit = sl;
            break;
        }
        /* A closed window that folded nothing can be reused. */
        if (free_sl == NULL &&
            (!sl->used || (sl->folded == 0 && now >= sl->window_end)))
            free_sl = sl;
    }
    if (hit != NULL) {
        if (now >= hit->window_end) {
            if (hit->folded > 0) {
                /* The second is over: its summary now, and this line
                 * opens the next second's count. */
                summarize(hit, now, sum, sum_len, sum_level);
                hit->folded = 1;
                hit->level = level;
                snprintf(hit->line, sizeof hit->line, "%s", keep);
                atomic_fetch_add(&rl->repeated, 1);
                pass = 0;
            } else {
                hit->window_end = now + RL_WINDOW_NS; /* a new first */
            }
        } else {
            hit->folded++;
            hit->level = level;
            snprintf(hit->line, sizeof hit->line, "%s", keep);
            atomic_fetch_add(&rl->repeated, 1);
            pass = 0;
        }
    } else if (free_sl != NULL) {
        free_sl->used = 1;
        free_sl->hash = h;
        snprintf(free_sl->key, sizeof free_sl->key, "%s", key);
        free_sl->window_end = now + RL_WINDOW_NS;
        free_sl->folded = 0;
    }
    rl_unlock(rl);
    return pass;
}

void defer__rl_flush(defer_pool *p, int force)
{
    defer_rl *rl = p->rl;
    char sum[RL_LINE_MAX + 32];
    int level = DEFER_LOG_ERROR;

    if (rl == NULL)
        return;
    for (;;) {
        int64_t now = defer__now_ns();
        int i;
        sum[0] = '\0';
        rl_lock(rl);
        for (i = 0; i < RL_SLOTS && sum[0] == '\0'; i++) {
            rl_slot *sl = &rl->slot[i];
            if (!sl->used || (!force && now < sl->window_end))
                continue;
            if (sl->folded > 0)
                summarize(sl, now, sum, sizeof sum, &level);
            else
                sl->used = 0; /* a quiet second: the key is closed */
            if (force)
                sl->used = 0;
        }
        if (force && sum[0] == '\0')
            rl->off = 1;
        rl_unlock(rl);
        if (sum[0] == '\0')
            break;
        defer__log_write(p, level, sum);
    }
}

void defer__rl_stats(defer_pool *p, defer_stats *out)
{
    out->log_repeated = p->rl != NULL ? atomic_load(&p->rl->repeated) : 0;
    out->log_dropped = atomic_load(&p->log_dropped);
}
