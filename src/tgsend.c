/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cca/mem.h"
#include "cca/tgsend.h"

/*
 * Layout. Every chat the scheduler knows has one record, found by chat id in an
 * open-addressing hash table (linear probing, backward-shift deletion). A
 * record is in exactly one of these states:
 *
 *   waiting: items queued, none in flight; in the min-heap keyed by
 *            (ready_at, seq), ready_at being the earliest time the chat may
 *            send and seq the order of entry, so among ready chats the one
 *            ready longest goes first (round-robin);
 *   flying:  its head item is in flight; in no heap or list;
 *   idle:    nothing queued, but its last send is younger than the per-chat
 *            interval, so the record keeps the spacing; on the idle list in
 *            the order the chats went idle, freed lazily once the spacing
 *            has passed.
 *
 * A record with nothing queued, nothing in flight and no spacing left is freed.
 * The global limit is a sliding window: the start times of the last `burst`
 * sends in a ring; a send may start when fewer than `burst` sends started in
 * the last window_ms = burst / rate seconds.
 *
 * Costs: push O(1) amortised (+ O(log chats) when the chat enters the heap),
 * next and done O(log chats), drop_chat O(items of the chat + log chats); the
 * idle sweep frees each record once (amortised O(1)).
 */

#define DEF_PER_S           30.0
#define DEF_BURST           30.0
#define DEF_INTERVAL_MS     1000
#define DEF_BACKOFF_BASE_MS 500
#define DEF_MAX_BACKOFF_MS  60000
#define DEF_MAX_ITEMS       100000
#define DEF_SEED            0x853c49e6748fea9bULL
#define MAX_BURST           100000 /* bounds the ring of the global window */
#define MIN_SLOTS           16     /* hash table: a power of two */
#define MIN_ITEMS           2      /* per-chat ring: a power of two */
#define NOT_IN_HEAP         SIZE_MAX

struct chat {
    int64_t id;
    void **items; /* ring of @cap (power of two) slots */
    size_t cap;
    size_t head;
    size_t count;
    bool in_flight; /* items[head] is in flight */
    bool has_sent;
    bool idle; /* on the idle list */
    int64_t last_start;
    unsigned attempts; /* retryable failures of the head item */
    int64_t ready_at;  /* heap key */
    uint64_t seq;      /* heap tie-break: order of entry */
    size_t heap_idx;
    struct chat *idle_prev;
    struct chat *idle_next;
};

struct cca_tgsend {
    struct cca_tgsend_params p;
    int64_t window_ms;
    /* chats by id */
    struct chat **slots;
    size_t nslots;
    size_t nchats;
    /* waiting chats */
    struct chat **heap;
    size_t nheap;
    size_t heap_cap;
    /* idle chats, oldest first */
    struct chat *idle_head;
    struct chat *idle_tail;
    /* the global window */
    int64_t *ring;
    size_t ring_len;
    size_t ring_used;
    size_t ring_pos; /* next slot written; the oldest when the ring is full */
    int64_t global_until;
    int64_t clock; /* the latest time seen */
    uint64_t seq;
    uint64_t rng;
    size_t queued;
    size_t active;
    size_t in_flight;
    uint64_t sent, retried, throttled, failed, dropped;
};

/* ---- small helpers ------------------------------------------------------------ */

static int64_t add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* splitmix64: the jitter's generator and the hash's finaliser. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t next_random(struct cca_tgsend *q)
{
    q->rng += 0x9e3779b97f4a7c15ULL;
    return mix64(q->rng);
}

/* When the chat's spacing ends: INT64_MIN when it never sent. */
static int64_t spacing_end(const struct cca_tgsend *q, const struct chat *c)
{
    return c->has_sent ? add_sat(c->last_start, q->p.per_chat_interval_ms) : INT64_MIN;
}

/* ---- the hash table ------------------------------------------------------------ */

static size_t slot_of(const struct cca_tgsend *q, int64_t id)
{
    return (size_t)mix64((uint64_t)id) & (q->nslots - 1);
}

static struct chat *find(const struct cca_tgsend *q, int64_t id)
{
    for (size_t i = slot_of(q, id);; i = (i + 1) & (q->nslots - 1)) {
        if (q->slots[i] == NULL)
            return NULL;
        if (q->slots[i]->id == id)
            return q->slots[i];
    }
}

static void place(struct cca_tgsend *q, struct chat *c)
{
    size_t i = slot_of(q, c->id);

    while (q->slots[i] != NULL)
        i = (i + 1) & (q->nslots - 1);
    q->slots[i] = c;
}

static void rehash(struct cca_tgsend *q, size_t nslots)
{
    struct chat **old = q->slots;
    size_t n = q->nslots;

    q->slots = cca_xcalloc(nslots, sizeof(q->slots[0]));
    q->nslots = nslots;
    for (size_t i = 0; i < n; i++) {
        if (old[i] != NULL)
            place(q, old[i]);
    }
    free(old);
}

static void table_add(struct cca_tgsend *q, struct chat *c)
{
    if ((q->nchats + 1) * 2 > q->nslots)
        rehash(q, q->nslots * 2);
    place(q, c);
    q->nchats++;
}

/* Remove @c (present) with backward-shift deletion: no tombstones. */
static void table_remove(struct cca_tgsend *q, const struct chat *c)
{
    size_t mask = q->nslots - 1;
    size_t i = slot_of(q, c->id);

    while (q->slots[i] != c)
        i = (i + 1) & mask;
    q->slots[i] = NULL;
    for (size_t j = (i + 1) & mask; q->slots[j] != NULL; j = (j + 1) & mask) {
        size_t k = slot_of(q, q->slots[j]->id);

        /* The entry at j stays when its home k lies cyclically in (i, j]. */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        q->slots[i] = q->slots[j];
        q->slots[j] = NULL;
        i = j;
    }
    q->nchats--;
    if (q->nslots > MIN_SLOTS && q->nchats * 8 < q->nslots)
        rehash(q, q->nslots / 2);
}

/* ---- the heap of waiting chats ---------------------------------------------------- */

static bool before(const struct chat *a, const struct chat *b)
{
    return a->ready_at < b->ready_at || (a->ready_at == b->ready_at && a->seq < b->seq);
}

static void heap_set(struct cca_tgsend *q, size_t i, struct chat *c)
{
    q->heap[i] = c;
    c->heap_idx = i;
}

static void sift_up(struct cca_tgsend *q, size_t i)
{
    struct chat *c = q->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (!before(c, q->heap[parent]))
            break;
        heap_set(q, i, q->heap[parent]);
        i = parent;
    }
    heap_set(q, i, c);
}

static void sift_down(struct cca_tgsend *q, size_t i)
{
    struct chat *c = q->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= q->nheap)
            break;
        if (child + 1 < q->nheap && before(q->heap[child + 1], q->heap[child]))
            child++;
        if (!before(q->heap[child], c))
            break;
        heap_set(q, i, q->heap[child]);
        i = child;
    }
    heap_set(q, i, c);
}

/* Queue @c to send at @ready_at, behind the chats already ready by then. */
static void heap_push(struct cca_tgsend *q, struct chat *c, int64_t ready_at)
{
    if (q->nheap == q->heap_cap) {
        q->heap_cap = q->heap_cap != 0 ? q->heap_cap * 2 : 16;
        q->heap = cca_xrealloc(q->heap, q->heap_cap * sizeof(q->heap[0]));
    }
    c->ready_at = ready_at;
    c->seq = q->seq++;
    heap_set(q, q->nheap++, c);
    sift_up(q, c->heap_idx);
}

static void heap_remove(struct cca_tgsend *q, struct chat *c)
{
    size_t i = c->heap_idx;
    struct chat *last = q->heap[--q->nheap];

    c->heap_idx = NOT_IN_HEAP;
    if (last == c)
        return;
    heap_set(q, i, last);
    sift_up(q, i);
    sift_down(q, last->heap_idx);
}

/* ---- the idle list -------------------------------------------------------------- */

static void idle_append(struct cca_tgsend *q, struct chat *c)
{
    c->idle = true;
    c->idle_next = NULL;
    c->idle_prev = q->idle_tail;
    if (q->idle_tail != NULL)
        q->idle_tail->idle_next = c;
    else
        q->idle_head = c;
    q->idle_tail = c;
}

static void idle_unlink(struct cca_tgsend *q, struct chat *c)
{
    if (c->idle_prev != NULL)
        c->idle_prev->idle_next = c->idle_next;
    else
        q->idle_head = c->idle_next;
    if (c->idle_next != NULL)
        c->idle_next->idle_prev = c->idle_prev;
    else
        q->idle_tail = c->idle_prev;
    c->idle = false;
    c->idle_prev = NULL;
    c->idle_next = NULL;
}

/* ---- chat records --------------------------------------------------------------- */

static void chat_free(struct cca_tgsend *q, struct chat *c)
{
    table_remove(q, c);
    free(c->items);
    free(c);
}

/* A chat that just emptied (nothing queued, nothing in flight): idle or freed. */
static void chat_emptied(struct cca_tgsend *q, struct chat *c, int64_t now_ms)
{
    if (c->has_sent && spacing_end(q, c) > now_ms)
        idle_append(q, c);
    else
        chat_free(q, c);
}

/* Free the idle records whose spacing has passed. The list is in the order the
 * chats went idle, each at most one interval before its spacing ends, so
 * stopping at the first live one delays a record by at most one interval. */
static void sweep(struct cca_tgsend *q, int64_t now_ms)
{
    while (q->idle_head != NULL && spacing_end(q, q->idle_head) <= now_ms) {
        struct chat *c = q->idle_head;

        idle_unlink(q, c);
        chat_free(q, c);
    }
}

/* Resize @c's ring to @cap (>= count), moving the items to the front. */
static void items_resize(struct chat *c, size_t cap)
{
    void **v = cca_xmalloc(cap * sizeof(v[0]));

    for (size_t i = 0; i < c->count; i++)
        v[i] = c->items[(c->head + i) & (c->cap - 1)];
    free(c->items);
    c->items = v;
    c->cap = cap;
    c->head = 0;
}

static void *items_pop(struct chat *c)
{
    void *item = c->items[c->head];

    c->head = (c->head + 1) & (c->cap - 1);
    c->count--;
    if (c->cap > 16 && c->count * 4 <= c->cap)
        items_resize(c, c->cap / 2);
    return item;
}

/* ---- the public functions ---------------------------------------------------------- */

struct cca_tgsend *cca_tgsend_new(const struct cca_tgsend_params *p)
{
    struct cca_tgsend *q = cca_xcalloc(1, sizeof(*q));
    double burst;
    double window;

    if (p != NULL)
        q->p = *p;
    if (!(q->p.global_per_s > 0) || !isfinite(q->p.global_per_s))
        q->p.global_per_s = DEF_PER_S;
    if (!(q->p.global_burst > 0) || !isfinite(q->p.global_burst))
        q->p.global_burst = DEF_BURST;
    if (q->p.per_chat_interval_ms <= 0)
        q->p.per_chat_interval_ms = DEF_INTERVAL_MS;
    if (q->p.backoff_base_ms <= 0)
        q->p.backoff_base_ms = DEF_BACKOFF_BASE_MS;
    if (q->p.max_backoff_ms <= 0)
        q->p.max_backoff_ms = DEF_MAX_BACKOFF_MS;
    if (q->p.max_items == 0)
        q->p.max_items = DEF_MAX_ITEMS;
    burst = floor(q->p.global_burst);
    burst = burst < 1 ? 1 : burst > MAX_BURST ? MAX_BURST : burst;
    /* Rounded up: the window never admits more than the rate. */
    window = ceil(burst * 1000.0 / q->p.global_per_s);
    q->window_ms = window < 1 ? 1 : window > 1e15 ? (int64_t)1e15 : (int64_t)window;
    q->ring_len = (size_t)burst;
    q->ring = cca_xcalloc(q->ring_len, sizeof(q->ring[0]));
    q->rng = q->p.seed != 0 ? q->p.seed : DEF_SEED;
    q->nslots = MIN_SLOTS;
    q->slots = cca_xcalloc(q->nslots, sizeof(q->slots[0]));
    q->global_until = INT64_MIN;
    q->clock = INT64_MIN;
    return q;
}

void cca_tgsend_free(struct cca_tgsend *q, void (*drop)(void *ctx, void *item), void *ctx)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < q->nslots; i++) {
        struct chat *c = q->slots[i];

        if (c == NULL)
            continue;
        for (size_t k = 0; drop != NULL && k < c->count; k++)
            drop(ctx, c->items[(c->head + k) & (c->cap - 1)]);
        free(c->items);
        free(c);
    }
    free(q->slots);
    free(q->heap);
    free(q->ring);
    free(q);
}

cca_rc cca_tgsend_push(struct cca_tgsend *q, int64_t chat_id, void *item)
{
    struct chat *c;

    if (item == NULL)
        return CCA_ERR_INVALID;
    if (q->queued >= q->p.max_items)
        return CCA_ERR_LIMIT;
    c = find(q, chat_id);
    if (c == NULL) {
        c = cca_xcalloc(1, sizeof(*c));
        c->id = chat_id;
        c->heap_idx = NOT_IN_HEAP;
        table_add(q, c);
    }
    if (c->count == c->cap)
        items_resize(c, c->cap != 0 ? c->cap * 2 : MIN_ITEMS);
    c->items[(c->head + c->count) & (c->cap - 1)] = item;
    c->count++;
    q->queued++;
    if (c->count == 1) {
        q->active++;
        if (c->idle)
            idle_unlink(q, c);
        /* Ready behind every chat already ready at the latest time seen. */
        heap_push(q, c, max64(spacing_end(q, c), q->clock));
    }
    return CCA_OK;
}

void *cca_tgsend_next(struct cca_tgsend *q, int64_t now_ms, int64_t *ret_chat_id,
                      int64_t *ret_wait_ms)
{
    struct chat *c;
    int64_t at;
    void *item;

    q->clock = max64(q->clock, now_ms);
    sweep(q, now_ms);
    if (q->nheap == 0) {
        if (ret_wait_ms != NULL)
            *ret_wait_ms = -1;
        return NULL;
    }
    /* The earliest ready chat; the global limits hold back every chat alike. */
    c = q->heap[0];
    at = max64(c->ready_at, q->global_until);
    if (q->ring_used == q->ring_len)
        at = max64(at, add_sat(q->ring[q->ring_pos], q->window_ms));
    if (at > now_ms) {
        if (ret_wait_ms != NULL)
            *ret_wait_ms = at - now_ms;
        return NULL;
    }
    heap_remove(q, c);
    c->in_flight = true;
    c->has_sent = true;
    c->last_start = now_ms;
    q->in_flight++;
    q->ring[q->ring_pos] = now_ms;
    q->ring_pos = (q->ring_pos + 1) % q->ring_len;
    if (q->ring_used < q->ring_len)
        q->ring_used++;
    item = c->items[c->head];
    if (ret_chat_id != NULL)
        *ret_chat_id = c->id;
    if (ret_wait_ms != NULL)
        *ret_wait_ms = 0;
    return item;
}

/* The backoff before retry @attempt (1, 2, ...): base * 2^(attempt-1), capped. */
static int64_t backoff_ms(const struct cca_tgsend *q, unsigned attempt)
{
    int64_t b = q->p.backoff_base_ms;

    for (unsigned i = 1; i < attempt && b < q->p.max_backoff_ms; i++)
        b = b > INT64_MAX / 2 ? INT64_MAX : b * 2;
    return b < q->p.max_backoff_ms ? b : q->p.max_backoff_ms;
}

void *cca_tgsend_done(struct cca_tgsend *q, int64_t chat_id,
                      enum cca_tgsend_result result, int64_t retry_after_ms, bool global,
                      int64_t now_ms)
{
    struct chat *c = find(q, chat_id);
    int64_t ready;
    void *item;

    if (c == NULL || !c->in_flight)
        return NULL;
    q->clock = max64(q->clock, now_ms);
    c->in_flight = false;
    q->in_flight--;
    ready = max64(spacing_end(q, c), now_ms);
    switch (result) {
        case CCA_TGSEND_SENT:
        case CCA_TGSEND_FAILED:
            if (result == CCA_TGSEND_SENT)
                q->sent++;
            else
                q->failed++;
            item = items_pop(c);
            c->attempts = 0;
            q->queued--;
            if (c->count > 0) {
                heap_push(q, c, ready);
            } else {
                q->active--;
                chat_emptied(q, c, now_ms);
            }
            return item;
        case CCA_TGSEND_RETRY_AFTER: {
            int64_t until = add_sat(now_ms, retry_after_ms > 0 ? retry_after_ms : 0);

            q->throttled++;
            if (global)
                q->global_until = max64(q->global_until, until);
            heap_push(q, c, max64(ready, until));
            return NULL;
        }
        case CCA_TGSEND_RETRY:
        default: { /* an unknown result keeps the item: nothing is lost */
            int64_t cap;

            q->retried++;
            if (c->attempts < UINT_MAX)
                c->attempts++;
            cap = backoff_ms(q, c->attempts);
            /* Full jitter: uniform in [0, cap]. */
            ready = max64(
                ready, add_sat(now_ms, (int64_t)(next_random(q) % ((uint64_t)cap + 1))));
            heap_push(q, c, ready);
            return NULL;
        }
    }
}

size_t cca_tgsend_drop_chat(struct cca_tgsend *q, int64_t chat_id,
                            void (*drop)(void *ctx, void *item), void *ctx)
{
    struct chat *c = find(q, chat_id);
    void **items;
    size_t n;
    size_t head;
    size_t mask;

    if (c == NULL || c->count == 0)
        return 0;
    /* Detach the items first, so @drop sees a consistent scheduler. */
    items = c->items;
    n = c->count;
    head = c->head;
    mask = c->cap - 1;
    c->items = NULL;
    c->cap = 0;
    c->head = 0;
    c->count = 0;
    c->attempts = 0;
    if (c->in_flight) {
        c->in_flight = false;
        q->in_flight--;
    }
    if (c->heap_idx != NOT_IN_HEAP)
        heap_remove(q, c);
    q->queued -= n;
    q->active--;
    q->dropped += n;
    /* Keep only the spacing (swept lazily); without a send, nothing to keep. */
    if (c->has_sent)
        idle_append(q, c);
    else
        chat_free(q, c);
    for (size_t k = 0; drop != NULL && k < n; k++)
        drop(ctx, items[(head + k) & mask]);
    free(items);
    return n;
}

void cca_tgsend_get_stats(const struct cca_tgsend *q, struct cca_tgsend_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->queued = q->queued;
    ret->chats = q->active;
    ret->in_flight = q->in_flight;
    ret->sent = q->sent;
    ret->retried = q->retried;
    ret->throttled = q->throttled;
    ret->failed = q->failed;
    ret->dropped = q->dropped;
}
