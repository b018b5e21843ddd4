/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <math.h>
#include <malloc.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/engine.h"
#include "cca/handoff.h"
#include "cca/jsonpatch.h"
#include "cca/log.h"
#include "cca/mem.h"
#include "cca/text.h"

/*
 * An Idempotency-Key of a create, mapped to the dialog it created (tsearch
 * tree), and in a list from the oldest to the newest: at most
 * IDEMPOTENCY_MAX_KEYS are kept, the oldest forgotten first.
 */
struct create_key {
    char *key;
    struct slot *en;
    struct create_key *older;
    struct create_key *newer;
};

/*
 * The dialogs of one customer_id (tsearch tree, under the engine lock), so
 * that a customer's profile, history and the filters on customer_id visit
 * that customer's dialogs, not every dialog. A dialog's customer_id never
 * changes; it enters with the dialog (index_insert) and leaves with it.
 */
struct customer_ix {
    char *customer_id;
    struct slot **v;
    size_t n;
    size_t cap;
};

/*
 * One dialog in the index. Its parsed document is cached: @doc is NULL when
 * the dialog was evicted to keep the cache within DIALOG_CACHE_MB (by file
 * size), and is read back from its file on use. A busy dialog is never
 * evicted, so the engine thread uses @doc freely while it holds the dialog.
 */
struct slot {
    struct slot *hnext;
    enum cca_store_coll coll; /* a dialog, or an operator record */
    struct slot *lru_prev;    /* slots with @doc, most recently used first */
    struct slot *lru_next;
    char id[37];
    struct create_key *create_key; /* engine thread only; NULL if none */
    /* Under engine->lock. */
    json_t *doc; /* committed document, or NULL (evicted) */
    char *bytes; /* cca_dialog_dump(doc), made on the first read; NULL until then */
    size_t len;
    size_t cost;  /* what it counts in engine->cache_bytes (see cache_put) */
    uint64_t gen; /* commits so far: a file read is stale if it moved */
    bool busy;    /* an operation holds the dialog (written by the engine thread) */
    int64_t created_ms;
    int64_t updated_ms;
    enum cca_dialog_status status;
    enum cca_agent agent;
    struct cca_record rec; /* a dialog's support record (record.h), remade per commit */
    size_t stored;         /* bytes it takes in the store (cca_store_load_fn, _done_fn) */
    /* Engine thread only. */
    struct cca_desk_moves pending; /* desk moves decided for it, not yet recorded */
    struct slot *cnext;            /* the list of creates not yet committed */
    bool creating;                 /* a create in flight: not in the index yet */
    struct op *wait_head;          /* operations waiting for the dialog */
    struct op *wait_tail;
};

enum event { EV_NEW, EV_RUN, EV_LLM_DONE, EV_PERSISTED };

struct op {
    struct op *next;
    struct cca_engine *engine;
    enum event ev;
    struct cca_engine_request req;
    cca_engine_done_fn done;
    void *ctx;
    struct op *parent;      /* cleanup batch this op belongs to */
    int64_t idle_before_ms; /* CLOSE from a cleanup: skip if active since */
    int64_t received_mono;  /* ms, for deadlines */
    int64_t received_us;    /* for processing_time */
    int64_t received_wall;
    struct slot *entry;
    bool new_entry;
    bool turn;
    struct cca_turn t; /* when @turn */
    json_t *events;    /* published once the change is durable (handoff.h) */
    struct cca_engine_outcome human; /* the human side's part of the outcome */
    bool took;                       /* a TAKE decided at start (its move is pending) */
    json_t *base;              /* op_base: the document with pending moves folded in */
    size_t folded;             /* pending moves folded into @base */
    struct cca_llm_result llm; /* the last LLM call's result, until resumed */
    /* Outcome. */
    json_t *new_doc;
    size_t stored; /* what the change took in the store */
    json_t *result;
    cca_rc rc;
    struct cca_error err;
    /* Cleanup batches. */
    bool spawned;
    unsigned children;
    unsigned count;
};

struct cca_engine {
    const struct cca_config *cfg;
    struct cca_store *store;
    struct cca_router *router;
    struct cca_agents *agents;
    struct cca_llm *llm; /* engine thread; NULL once detached (shutdown) */
    struct cca_desk *desk;
    struct cca_events *events;
    unsigned triggers;                /* HUMAN_HANDOFF (handoff.h) */
    struct cca_desk_moves boot_moves; /* decided at load, recorded once running */
    json_t *boot_human;               /* human-owned dialogs found at load */
    json_t *boot_rated;               /* ratings of dialogs an operator had */
    int64_t next_tick_ms;
    struct slot *creating; /* creates in flight (engine thread): moves may target them */
    atomic_bool quiet;     /* shutting down: the timers decide nothing more */
    bool queue_moved;      /* the queue changed: positions and length go out */
    int64_t queue_events_ms; /* when they last went out (monotonic) */
    bool llm_mode;           /* an LLM was configured (turn metrics) */
    bool detach_llm;         /* under @lock: drop @llm at the next wake-up */
    cca_engine_skip_fn skip;
    void *skip_ctx;
    pthread_mutex_t observe_lock; /* held while @observe runs: set_observer waits */
    cca_engine_observe_fn observe;
    void *observe_ctx;

    pthread_mutex_t lock; /* index, committed state, cache, queue, counters */
    pthread_cond_t cond;  /* queue not empty */
    pthread_cond_t idle;  /* in_flight dropped to 0 */
    struct slot **buckets;
    size_t nbuckets;
    size_t count;                        /* slots of every collection */
    size_t ncoll[CCA_STORE_COLL__COUNT]; /* of which in each collection */
    struct slot *lru_head; /* the document cache, most recently used first */
    struct slot *lru_tail;
    size_t cache_bytes;
    size_t cache_budget;
    size_t cached; /* dialogs with a document (the cache also holds other records) */
    size_t by_status[CCA_DIALOG_STATUS__COUNT];
    struct op *head;
    struct op *tail;
    size_t in_flight;
    bool stop;
    bool started;
    pthread_t thread;
    void *create_keys; /* tsearch(3) root of struct create_key, engine thread only */
    void *customers;   /* tsearch(3) root of struct customer_ix, under @lock */
    struct create_key *oldest_key; /* the same keys, oldest first (engine thread) */
    struct create_key *newest_key;
    struct cca_engine_metrics metrics;
};

/* ---- index (caller holds the lock) ---------------------------------------- */

static void cache_drop(struct cca_engine *e, struct slot *en);

static struct slot *index_find(struct cca_engine *e, const char *id)
{
    struct slot *it = e->buckets[cca_hash_str(id) & (e->nbuckets - 1)];

    while (it != NULL && strcmp(it->id, id) != 0)
        it = it->hnext;
    return it;
}

static int customer_ix_cmp(const void *a, const void *b)
{
    return strcmp(((const struct customer_ix *)a)->customer_id,
                  ((const struct customer_ix *)b)->customer_id);
}

static void customer_ix_free(void *p)
{
    struct customer_ix *c = p;

    free(c->customer_id);
    free(c->v);
    free(c);
}

/* The dialogs of @customer_id, or NULL. */
static struct customer_ix *customer_ix_find(struct cca_engine *e, const char *customer_id)
{
    struct customer_ix probe = {.customer_id = (char *)customer_id};
    struct customer_ix **found = tfind(&probe, &e->customers, customer_ix_cmp);

    return found != NULL ? *found : NULL;
}

static void customer_ix_add(struct cca_engine *e, struct slot *en)
{
    const char *cid = en->rec.customer_id;
    struct customer_ix *c;

    if (cid == NULL)
        return;
    c = customer_ix_find(e, cid);
    if (c == NULL) {
        c = cca_xcalloc(1, sizeof(*c));
        c->customer_id = cca_xstrdup(cid);
        (void)tsearch(c, &e->customers, customer_ix_cmp);
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 4;
        c->v = cca_xrealloc(c->v, c->cap * sizeof(*c->v));
    }
    c->v[c->n++] = en;
}

static void customer_ix_remove(struct cca_engine *e, struct slot *en)
{
    struct customer_ix *c =
        en->rec.customer_id != NULL ? customer_ix_find(e, en->rec.customer_id) : NULL;

    for (size_t i = 0; c != NULL && i < c->n; i++) {
        if (c->v[i] == en) {
            c->v[i] = c->v[--c->n];
            break;
        }
    }
    if (c != NULL && c->n == 0) {
        (void)tdelete(c, &e->customers, customer_ix_cmp);
        customer_ix_free(c);
    }
}

static void index_insert(struct cca_engine *e, struct slot *en)
{
    size_t b;

    if (e->count + 1 > e->nbuckets) {
        size_t n = e->nbuckets * 2;
        struct slot **nb = cca_xcalloc(n, sizeof(*nb));

        for (size_t i = 0; i < e->nbuckets; i++) {
            struct slot *it = e->buckets[i];

            while (it != NULL) {
                struct slot *next = it->hnext;
                size_t j = cca_hash_str(it->id) & (n - 1);

                it->hnext = nb[j];
                nb[j] = it;
                it = next;
            }
        }
        free(e->buckets);
        e->buckets = nb;
        e->nbuckets = n;
    }
    b = cca_hash_str(en->id) & (e->nbuckets - 1);
    en->hnext = e->buckets[b];
    e->buckets[b] = en;
    e->count++;
    e->ncoll[en->coll]++;
    if (en->coll == CCA_STORE_DIALOGS) {
        e->by_status[en->status]++;
        customer_ix_add(e, en);
    }
}

static void index_remove(struct cca_engine *e, struct slot *en)
{
    struct slot **pp = &e->buckets[cca_hash_str(en->id) & (e->nbuckets - 1)];

    while (*pp != NULL && *pp != en)
        pp = &(*pp)->hnext;
    if (*pp == en) {
        *pp = en->hnext;
        e->count--;
        e->ncoll[en->coll]--;
        if (en->coll == CCA_STORE_DIALOGS) {
            e->by_status[en->status]--;
            customer_ix_remove(e, en);
        }
    }
    cache_drop(e, en);
}

static int create_key_cmp(const void *a, const void *b)
{
    return strcmp(((const struct create_key *)a)->key,
                  ((const struct create_key *)b)->key);
}

/* The dialog a create with Idempotency-Key @key made (or is making), or NULL. */
static struct slot *create_key_find(struct cca_engine *e, const char *key)
{
    struct create_key probe = {.key = (char *)key};
    struct create_key **found = tfind(&probe, &e->create_keys, create_key_cmp);

    return found != NULL ? (*found)->en : NULL;
}

static void create_key_free(void *p)
{
    struct create_key *k = p;

    free(k->key);
    free(k);
}

static void create_key_forget(struct cca_engine *e, struct slot *en)
{
    struct create_key *k = en->create_key;

    if (k == NULL)
        return;
    if (k->older != NULL)
        k->older->newer = k->newer;
    else
        e->oldest_key = k->newer;
    if (k->newer != NULL)
        k->newer->older = k->older;
    else
        e->newest_key = k->older;
    (void)tdelete(k, &e->create_keys, create_key_cmp);
    create_key_free(k);
    en->create_key = NULL;
    atomic_fetch_sub_explicit(&e->metrics.idempotency_keys, 1, memory_order_relaxed);
}

static void create_key_add(struct cca_engine *e, struct slot *en, const char *key)
{
    struct create_key *k;
    struct create_key **node;

    /* The bound: the oldest key makes room (its dialog stays, only the key goes). */
    while (e->oldest_key != NULL &&
           atomic_load_explicit(&e->metrics.idempotency_keys, memory_order_relaxed) >=
               e->cfg->idempotency_max_keys) {
        create_key_forget(e, e->oldest_key->en);
        atomic_fetch_add_explicit(&e->metrics.idempotency_keys_evicted, 1,
                                  memory_order_relaxed);
    }
    k = cca_xcalloc(1, sizeof(*k));
    k->key = cca_xstrdup(key);
    k->en = en;
    node = tsearch(k, &e->create_keys, create_key_cmp);
    /* NULL: out of memory (fatal, like cca_xmalloc); another node: a caller bug. */
    if (node == NULL || *node != k)
        abort();
    k->older = e->newest_key;
    if (e->newest_key != NULL)
        e->newest_key->newer = k;
    else
        e->oldest_key = k;
    e->newest_key = k;
    en->create_key = k;
    atomic_fetch_add_explicit(&e->metrics.idempotency_keys, 1, memory_order_relaxed);
}

/* ---- document cache (caller holds the lock) ------------------------------------ */

static void lru_unlink(struct cca_engine *e, struct slot *en)
{
    if (en->lru_prev != NULL)
        en->lru_prev->lru_next = en->lru_next;
    else if (e->lru_head == en)
        e->lru_head = en->lru_next;
    if (en->lru_next != NULL)
        en->lru_next->lru_prev = en->lru_prev;
    else if (e->lru_tail == en)
        e->lru_tail = en->lru_prev;
    en->lru_prev = en->lru_next = NULL;
}

/* @en (with a document) becomes the most recently used. */
static void lru_touch(struct cca_engine *e, struct slot *en)
{
    if (e->lru_head == en)
        return;
    lru_unlink(e, en);
    en->lru_next = e->lru_head;
    if (e->lru_head != NULL)
        e->lru_head->lru_prev = en;
    e->lru_head = en;
    if (e->lru_tail == NULL)
        e->lru_tail = en;
}

/* Forget @en's parsed document and bytes (the file keeps them). */
static void cache_drop(struct cca_engine *e, struct slot *en)
{
    if (en->doc == NULL)
        return;
    lru_unlink(e, en);
    e->cached -= en->coll == CCA_STORE_DIALOGS;
    e->cache_bytes -= en->cost;
    en->cost = 0;
    json_decref(en->doc);
    free(en->bytes);
    en->doc = NULL;
    en->bytes = NULL;
}

/* Evict the least recently used idle dialogs until the cache fits its budget. */
static void cache_trim(struct cca_engine *e)
{
    struct slot *en = e->lru_tail;

    while (e->cache_bytes > e->cache_budget && en != NULL) {
        struct slot *prev = en->lru_prev;

        /* Operator records stay: few, and read by every listing and trigger. */
        if (!en->busy && en->coll != CCA_STORE_OPERATORS)
            cache_drop(e, en);
        en = prev;
    }
}

/*
 * Cache @doc (stolen) as @en's document. Its cost is an estimate of its memory:
 * 4.5 times its stored size (en->stored: the file's size, plus the journal
 * records of its changes since), measured on 10,000 offline dialogs (123 MiB of RSS
 * for 27.9 MB of files). The default budget (512 MiB) holds the working set of
 * the benchmarks; at 64 MiB, S5's 2,000 active dialogs thrashed it and each
 * turn re-read its file: 467 against 233 us of CPU per turn (docs/BENCHMARKS.md).
 */
static void cache_put(struct cca_engine *e, struct slot *en, json_t *doc)
{
    size_t cost = en->stored / 2 * 9;

    cache_drop(e, en);
    en->doc = doc;
    en->cost = cost;
    e->cached += en->coll == CCA_STORE_DIALOGS; /* the count is of dialogs */
    e->cache_bytes += cost;
    lru_touch(e, en);
}

static void entry_free(struct slot *en)
{
    if (en == NULL)
        return;
    json_decref(en->doc);
    free(en->bytes);
    cca_record_cleanup(&en->rec);
    cca_desk_moves_cleanup(&en->pending);
    free(en);
}

/*
 * Install a committed document (steals @doc), after en->stored was updated.
 * A dialog's record is @rec (stolen and zeroed) when the caller made it
 * outside the lock, else it is made here. Caller holds the lock.
 */
static void entry_commit(struct cca_engine *e, struct slot *en, json_t *doc,
                         struct cca_record *rec, bool indexed)
{
    if (indexed && en->coll == CCA_STORE_DIALOGS)
        e->by_status[en->status]--;
    cache_put(e, en, doc);
    en->gen++;
    /* Every collection's documents carry created_at (exports list them in its order). */
    en->created_ms = cca_dialog_get_time(doc, "created_at");
    en->updated_ms = cca_dialog_get_time(doc, "updated_at");
    if (en->coll != CCA_STORE_DIALOGS) {
        if (en->coll != CCA_STORE_OPERATORS) /* operator records are pinned */
            cache_trim(e);
        return;
    }
    en->status = cca_dialog_get_status(doc);
    en->agent = cca_dialog_get_agent(doc);
    cca_record_cleanup(&en->rec);
    if (rec != NULL) {
        en->rec = *rec;
        memset(rec, 0, sizeof(*rec));
    } else {
        cca_record_of(doc, &en->rec);
    }
    if (indexed)
        e->by_status[en->status]++;
    cache_trim(e);
}

/* ---- queue ------------------------------------------------------------------ */

static void post(struct cca_engine *e, struct op *op, enum event ev)
{
    op->ev = ev;
    op->next = NULL;
    pthread_mutex_lock(&e->lock);
    if (e->tail != NULL)
        e->tail->next = op;
    else
        e->head = op;
    e->tail = op;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

void cca_engine_request_cleanup(struct cca_engine_request *r)
{
    cca_dialog_create_cleanup(&r->create);
    free(r->text);
    free(r->reason);
    free(r->idempotency_key);
    json_decref(r->operator_doc);
    r->operator_doc = NULL;
    cca_operator_patch_cleanup(r->patch);
    free(r->patch);
    r->patch = NULL;
    cca_customer_fields_cleanup(r->customer);
    free(r->customer);
    r->customer = NULL;
    json_decref(r->channel);
    r->channel = NULL;
    json_decref(r->doc);
    r->doc = NULL;
    r->text = NULL;
    r->reason = NULL;
    r->idempotency_key = NULL;
}

static void op_free(struct op *op)
{
    cca_engine_request_cleanup(&op->req);
    cca_turn_cleanup(&op->t);
    cca_llm_result_cleanup(&op->llm);
    json_decref(op->events);
    json_decref(op->base);
    json_decref(op->new_doc);
    json_decref(op->result);
    free(op);
}

static void run_op(struct cca_engine *e, struct op *op);
static void start_op(struct cca_engine *e, struct op *op);

/* Deliver the outcome, then free the op. */
static void finish(struct cca_engine *e, struct op *op, cca_rc rc)
{
    struct op *parent = op->parent;

    op->rc = rc;
    if (rc != CCA_OK && op->err.code == CCA_OK)
        (void)cca_error_set(&op->err, rc, "%s", cca_strerror(rc));
    if (rc == CCA_OK && op->turn) {
        int64_t took = cca_time_mono_us() - op->received_us;
        enum cca_engine_reply src = op->t.degraded ? CCA_ENGINE_REPLY_DEGRADED
                                    : !e->llm_mode ? CCA_ENGINE_REPLY_OFFLINE
                                                   : CCA_ENGINE_REPLY_LLM;

        atomic_fetch_add_explicit(&e->metrics.turns[src], 1, memory_order_relaxed);
        cca_hist_observe_us(&e->metrics.turn_seconds, took);
        cca_hist_observe_us(&e->metrics.overhead_seconds, took - op->t.llm_ms * 1000);
    }
    if (op->done != NULL) {
        json_t *result = NULL;

        if (rc == CCA_OK) {
            result = op->result; /* stolen by @done; else op_free drops it */
            op->result = NULL;
        }
        op->done(op->ctx, rc, result, &op->err);
    }
    if (parent != NULL) {
        if (rc == CCA_OK && op->count > 0)
            parent->count++;
        if (--parent->children == 0)
            run_op(e, parent);
    }
    op_free(op);
    if (parent == NULL) {
        pthread_mutex_lock(&e->lock);
        if (--e->in_flight == 0)
            pthread_cond_broadcast(&e->idle);
        pthread_mutex_unlock(&e->lock);
    }
}

/*
 * The holder of @en is done: hand the dialog to the next waiter, in arrival
 * order. @gone: the dialog no longer exists (deleted, or its create failed):
 * waiting creates (repeats of its key) start over, the others get
 * CCA_ERR_NOT_FOUND, and @en is freed.
 */
static void release(struct cca_engine *e, struct slot *en, bool gone)
{
    struct op *next;

    if (gone)
        create_key_forget(e, en);
    while ((next = en->wait_head) != NULL) {
        en->wait_head = next->next;
        if (en->wait_head == NULL)
            en->wait_tail = NULL;
        if (!gone) {
            /* Still busy: the waiter owns the dialog from here on. */
            next->entry = en;
            post(e, next, EV_RUN);
            return;
        }
        if (next->req.op == CCA_OP_CREATE || next->req.op == CCA_OP_CUSTOMER_PUT ||
            next->req.op == CCA_OP_PUT) {
            /* A repeated create (or a profile's next change) whose first one left
             * nothing: start over. */
            post(e, next, EV_NEW);
            continue;
        }
        (void)cca_error_set(&next->err, CCA_ERR_NOT_FOUND, "dialog %s not found", en->id);
        finish(e, next, CCA_ERR_NOT_FOUND);
    }
    if (gone) {
        entry_free(en);
        return;
    }
    pthread_mutex_lock(&e->lock);
    en->busy = false;
    cache_trim(e); /* it may have been kept over budget while busy */
    pthread_mutex_unlock(&e->lock);
}

/* ---- persistence -------------------------------------------------------------- */

static void publish(struct cca_engine *e, struct op *op);
static void after_commit(struct cca_engine *e, struct op *op);
static void forget_human(struct cca_engine *e, struct slot *en);

/* @en's create is done (committed or failed): off the list of creates in flight. */
static void creating_done(struct cca_engine *e, struct slot *en)
{
    struct slot **pp = &e->creating;

    if (!en->creating)
        return;
    while (*pp != NULL && *pp != en)
        pp = &(*pp)->cnext;
    if (*pp == en)
        *pp = en->cnext;
    en->cnext = NULL;
    en->creating = false;
}

/* A dialog whose create is in flight, by id, or NULL. */
static struct slot *creating_find(struct cca_engine *e, const char *id)
{
    struct slot *en = e->creating;

    while (en != NULL && strcmp(en->id, id) != 0)
        en = en->cnext;
    return en;
}

/* Store thread: hand the outcome back to the engine thread. */
static void on_persisted(void *ctx, cca_rc rc, size_t bytes, const struct cca_error *err)
{
    struct op *op = ctx;

    op->rc = rc;
    op->stored = bytes;
    if (rc != CCA_OK)
        op->err = *err;
    post(op->engine, op, EV_PERSISTED);
}

static const char *idempotent_op_name(const struct op *op)
{
    return op->req.op == CCA_OP_CREATE  ? "create"
           : op->req.op == CCA_OP_REPLY ? "reply"
                                        : "message";
}

static void persist(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;

    if (op->req.op == CCA_OP_DELETE) {
        cca_store_remove(e->store, en->coll, en->id, on_persisted, op);
        return;
    }
    if (op->req.idempotency_key != NULL &&
        (op->req.op == CCA_OP_CREATE || op->req.op == CCA_OP_MESSAGE ||
         op->req.op == CCA_OP_REPLY)) {
        json_t *doc = cca_dialog_with_idempotency(
            op->new_doc, op->req.idempotency_key, idempotent_op_name(op),
            op->req.request_hash, op->result, cca_time_wall_ms(),
            (int64_t)e->cfg->idempotency_ttl_s * 1000,
            e->cfg->idempotency_max_per_dialog);

        json_decref(op->new_doc);
        op->new_doc = doc;
    }
    if (op->req.op == CCA_OP_OPERATOR_DELETE) {
        cca_store_remove(e->store, en->coll, en->id, on_persisted, op);
        return;
    }
    cca_store_commit(e->store, en->coll, en->id, op->new_entry ? NULL : en->doc,
                     op->new_doc, on_persisted, op);
}

/* A channel's view of a committed dialog (cca_engine_set_observer). */
static void observe(struct cca_engine *e, const char *id, json_t *doc)
{
    pthread_mutex_lock(&e->observe_lock);
    if (e->observe != NULL)
        e->observe(e->observe_ctx, id, doc);
    pthread_mutex_unlock(&e->observe_lock);
}

void cca_engine_set_observer(struct cca_engine *e, cca_engine_observe_fn fn, void *ctx)
{
    pthread_mutex_lock(&e->observe_lock);
    e->observe = fn;
    e->observe_ctx = ctx;
    pthread_mutex_unlock(&e->observe_lock);
}

/* The write finished: make the change visible (or drop it), answer, move on. */
static void committed(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    struct cca_record rec = {0};
    json_t *observed = NULL;
    bool gone = false;

    if (op->new_entry)
        creating_done(e, en);
    if (op->rc != CCA_OK) {
        cca_rc rc = op->rc;
        bool created = op->new_entry;

        /* The store did not apply it (store.h): memory keeps the committed version. */
        op->entry = NULL;
        finish(e, op, rc); /* frees @op */
        /* A failed create leaves no dialog; repeats of its key waited on it. */
        if (created)
            forget_human(e, en);
        release(e, en, created);
        return;
    }
    after_commit(e, op);
    if (en->coll == CCA_STORE_DIALOGS)
        observed = json_incref(op->new_doc); /* NULL for a delete */
    /* A dialog's record is made before the lock: it reads every message. */
    if (en->coll == CCA_STORE_DIALOGS && op->new_doc != NULL)
        cca_record_of(op->new_doc, &rec);
    pthread_mutex_lock(&e->lock);
    if (op->req.op == CCA_OP_DELETE || op->req.op == CCA_OP_OPERATOR_DELETE) {
        index_remove(e, en);
        gone = true;
    } else {
        /* A whole new document, or one more change of it. */
        en->stored = op->new_entry ? op->stored : en->stored + op->stored;
        entry_commit(e, en, op->new_doc, &rec, !op->new_entry);
        op->new_doc = NULL;
        if (op->new_entry)
            index_insert(e, en);
    }
    pthread_mutex_unlock(&e->lock);
    cca_record_cleanup(&rec); /* a delete's: none */
    publish(e, op); /* after the change is visible: a reader acting on it sees it */
    if (en->coll == CCA_STORE_DIALOGS)
        observe(e, en->id, observed);
    json_decref(observed);
    op->entry = NULL;
    op->count = 1;
    finish(e, op, CCA_OK);
    release(e, en, gone);
}

/* ---- turns ------------------------------------------------------------------------ */

static void human_outcome(struct cca_engine *e, const struct op *op,
                          struct cca_engine_outcome *o);

/* The outcome of @op for its view; @doc the dialog after it (borrowed). */
static void outcome_of(struct cca_engine *e, const struct op *op, json_t *doc,
                       struct cca_engine_outcome *ret)
{
    memset(ret, 0, sizeof(*ret));
    human_outcome(e, op, ret);
    ret->op = op->req.op;
    ret->dialog_id = op->entry != NULL ? op->entry->id : NULL;
    ret->doc = doc;
    ret->count = op->count;
    ret->older_than_days = op->req.older_than_days;
    ret->inactivity_timeout_s = e->cfg->dialog_inactivity_timeout_s;
}

/* Render @op's result from @o (the request's view function; none for a cleanup's). */
static void render(struct op *op, const struct cca_engine_outcome *o)
{
    json_decref(op->result);
    op->result = op->req.render != NULL ? op->req.render(o) : NULL;
}

static json_t *move_doc(struct cca_engine *e, struct op *op, json_t *base,
                        const struct cca_desk_move *m);

/*
 * The document @op builds on (borrowed): a create's new one, or the committed
 * one with the desk's moves for it that are not recorded yet folded in, in
 * decision order, so an operation never records a change of owner out of
 * order. The moves leave the dialog's list only when @op's change commits.
 */
static json_t *op_base(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;

    if (op->new_entry)
        return op->new_doc;
    if (op->base == NULL) {
        json_t *doc = json_incref(en->doc);

        for (size_t i = 0; i < en->pending.n; i++) {
            json_t *next = move_doc(e, op, doc, &en->pending.v[i]);

            json_decref(doc);
            doc = next;
        }
        op->base = doc;
        op->folded = en->pending.n;
    }
    return op->base;
}

/* The turn is done: its messages into a new document, the result, the commit. */
static void turn_triggers(struct cca_engine *e, struct op *op);
static void turn_events(struct op *op);

static void finalize_turn(struct cca_engine *e, struct op *op)
{
    struct cca_dialog_turn dt = {0};
    struct cca_engine_outcome o;
    char customer_id[37];
    char agent_id[37];
    json_t *doc;

    cca_uuid_new(customer_id);
    cca_uuid_new(agent_id);
    cca_turn_to_dialog(&op->t, &dt);
    dt.customer_msg_id = customer_id;
    dt.agent_msg_id = agent_id;
    dt.received_ms = op->received_wall;
    dt.replied_ms = cca_time_wall_ms();
    dt.processing_s = (double)(cca_time_mono_us() - op->received_us) / 1e6;
    dt.channel = op->req.channel;
    doc = cca_dialog_with_turn(op_base(e, op), &dt);
    json_decref(op->new_doc);
    op->new_doc = cca_dialog_with_language(doc, cca_lang_code(op->t.lang));
    json_decref(doc);
    turn_events(op);
    turn_triggers(e, op);
    doc = op->new_doc;
    outcome_of(e, op, doc, &o);
    o.turn = &op->t;
    o.message_id = customer_id;
    o.processing_s = dt.processing_s;
    render(op, &o);
    persist(e, op);
}

/* LLM thread: hand the result back to the engine thread. */
static void on_llm_done(void *ctx, struct cca_llm_result *res)
{
    struct op *op = ctx;

    op->llm = *res;
    res->content = NULL; /* moved */
    post(op->engine, op, EV_LLM_DONE);
}

static struct cca_turn_env turn_env(const struct cca_engine *e)
{
    return (struct cca_turn_env){
        .cfg = e->cfg, .router = e->router, .agents = e->agents, .llm = e->llm};
}

/* The customer text of @op's turn: a message, or a create's initial message. */
static const char *turn_text(const struct op *op)
{
    return op->req.op == CCA_OP_CREATE ? op->req.create.initial_message : op->req.text;
}

static void on_llm_result(struct cca_engine *e, struct op *op)
{
    /*
     * Taken out of the op first: resuming may submit the next call, whose
     * completion writes op->llm on the LLM thread at any moment after.
     */
    struct cca_llm_result result = op->llm;
    struct cca_llm_result *res = &result;
    struct cca_turn_env env = turn_env(e);
    bool classify = op->t.stage == CCA_TURN_CLASSIFY;

    memset(&op->llm, 0, sizeof(op->llm));
    if (res->rc != CCA_OK)
        /* res->error is short and scrubbed of the key by llm.c */
        cca_log(LOG_WARNING,
                "llm call failed dialog=%s stage=%s rc=%s http_status=%ld attempts=%u "
                "upstream_ms=%lld error='%s'%s",
                op->entry->id, cca_turn_stage_name(&op->t), cca_strerror(res->rc),
                res->http_status, res->attempts, (long long)res->upstream_ms, res->error,
                classify ? " fallback=keyword" : " degraded=1");
    if (cca_turn_resume(&op->t, &env, res, op->new_entry ? NULL : op_base(e, op),
                        on_llm_done, op) == CCA_TURN_DONE) {
        cca_llm_result_cleanup(res);
        finalize_turn(e, op);
        return;
    }
    cca_llm_result_cleanup(res);
}

static void start_turn(struct cca_engine *e, struct op *op)
{
    struct cca_turn_env env = turn_env(e);
    const char *text = turn_text(op);
    int64_t deadline = op->received_mono + (int64_t)(e->cfg->llm_timeout_s * 1000.0);

    op->turn = true;
    if (cca_turn_start(&op->t, &env, text, strlen(text),
                       op->new_entry ? NULL : op_base(e, op), deadline, on_llm_done,
                       op) == CCA_TURN_DONE)
        finalize_turn(e, op);
}

/* ---- the human side (desk.h, handoff.h) -------------------------------------------- */

/* The op's events (created on first use). */
static json_t *op_events(struct op *op)
{
    if (op->events == NULL)
        op->events = json_array();
    return op->events;
}

/* After the commit: the op's events go live (the change is durable now). */
static void publish(struct cca_engine *e, struct op *op)
{
    size_t i;
    json_t *ev;

    if (e->events == NULL)
        return;
    json_array_foreach (op->events, i, ev) {
        (void)cca_events_publish(e->events,
                                 json_string_value(json_object_get(ev, "topic")),
                                 json_string_value(json_object_get(ev, "type")),
                                 json_object_get(ev, "data"), cca_time_wall_ms());
    }
}

/* An internal op (no caller): counted in flight like a submitted one. */
static struct op *internal_op(struct cca_engine *e, enum cca_engine_op kind,
                              const char *id)
{
    struct op *k = cca_xcalloc(1, sizeof(*k));

    pthread_mutex_lock(&e->lock);
    e->in_flight++;
    pthread_mutex_unlock(&e->lock);
    k->engine = e;
    k->req.op = kind;
    (void)snprintf(k->req.id, sizeof(k->req.id), "%s", id);
    k->received_mono = cca_time_mono_ms();
    k->received_us = cca_time_mono_us();
    k->received_wall = cca_time_wall_ms();
    return k;
}

static void count_move(struct cca_engine *e, const struct cca_desk_move *m)
{
    struct cca_engine_metrics *mt = &e->metrics;

    if (m->from == CCA_OWNER_QUEUE || m->to == CCA_OWNER_QUEUE)
        e->queue_moved = true;

    if (m->to == CCA_OWNER_OPERATOR && m->event == CCA_OWNER_EV_ASSIGN) {
        atomic_fetch_add_explicit(&mt->assignments, 1, memory_order_relaxed);
        if (m->from == CCA_OWNER_QUEUE && m->waiting_since_ms > 0 &&
            m->at_ms >= m->waiting_since_ms)
            cca_hist_observe_us(&mt->queue_wait_seconds,
                                (m->at_ms - m->waiting_since_ms) * 1000);
    }
    if (m->event == CCA_OWNER_EV_REQUEUE) {
        unsigned cause = strcmp(m->reason, "reply_timeout") == 0      ? 0
                         : strcmp(m->reason, "operator_offline") == 0 ? 1
                                                                      : 2;

        atomic_fetch_add_explicit(&mt->requeues[cause], 1, memory_order_relaxed);
    }
    if (m->event == CCA_OWNER_EV_ENQUEUE)
        atomic_fetch_add_explicit(&mt->escalations[1], 1, memory_order_relaxed);
}

/* Move @m recorded in @base (borrowed): a new document, the move's events in @op's. */
static json_t *move_doc(struct cca_engine *e, struct op *op, json_t *base,
                        const struct cca_desk_move *m)
{
    (void)e;
    return cca_handoff_apply(base, m, op_events(op));
}

static void apply_move(struct cca_engine *e, struct op *op, const struct cca_desk_move *m)
{
    json_t *doc = move_doc(e, op, op->new_doc != NULL ? op->new_doc : op_base(e, op), m);

    json_decref(op->new_doc);
    op->new_doc = doc;
}

/*
 * Moves a desk decision made: those of @self (the dialog the op holds, may be
 * NULL) are recorded in its new document now; every other one joins its
 * dialog's pending moves, which the next operation on that dialog folds in
 * first (op_base), and a MOVE operation is queued there to record them if no
 * other operation does. A dialog gone meanwhile (deleted) drops its moves.
 */
static void start_op(struct cca_engine *e, struct op *op);

static bool pend_move(struct cca_engine *e, const struct cca_desk_move *m)
{
    struct slot *en;
    struct cca_desk_moves *pend;

    pthread_mutex_lock(&e->lock);
    en = index_find(e, m->dialog_id);
    pthread_mutex_unlock(&e->lock);
    if (en == NULL)
        en = creating_find(e, m->dialog_id);
    if (en == NULL || en->coll != CCA_STORE_DIALOGS)
        return false;
    pend = &en->pending;
    if (pend->n == pend->cap) {
        pend->cap = pend->cap ? pend->cap * 2 : 4;
        pend->v = cca_xrealloc(pend->v, pend->cap * sizeof(*pend->v));
    }
    pend->v[pend->n++] = *m;
    return true;
}

static void dispatch_moves(struct cca_engine *e, struct op *self,
                           struct cca_desk_moves *mv)
{
    for (size_t i = 0; i < mv->n; i++) {
        const struct cca_desk_move *m = &mv->v[i];

        count_move(e, m);
        if (self != NULL && self->entry != NULL &&
            self->entry->coll == CCA_STORE_DIALOGS &&
            strcmp(m->dialog_id, self->entry->id) == 0) {
            apply_move(e, self, m);
        } else if (pend_move(e, m)) {
            start_op(e, internal_op(e, CCA_OP_MOVE, m->dialog_id));
        }
    }
    cca_desk_moves_cleanup(mv);
}

/* The operator ids the desk set busy (reply timeouts): their records follow. */
static void record_busy(struct cca_engine *e, json_t *ids)
{
    size_t i;
    json_t *v;

    json_array_foreach (ids, i, v) {
        struct op *k = internal_op(e, CCA_OP_OPERATOR_UPDATE, "");

        (void)snprintf(k->req.target, sizeof(k->req.target), "%s", json_string_value(v));
        k->req.has_status = true;
        k->req.status = CCA_OPERATOR_BUSY;
        (void)snprintf(k->req.actor, sizeof(k->req.actor), "system");
        k->req.reason = cca_xstrdup("reply_timeout");
        start_op(e, k);
    }
}

static void position_event(void *ctx, const char *dialog_id, size_t position,
                           double eta_s)
{
    struct cca_engine *e = ctx;
    char topic[64];
    json_t *d;

    (void)snprintf(topic, sizeof(topic), "dialog:%s", dialog_id);
    if (!cca_events_has_subscribers(e->events, topic))
        return;
    d = json_object();
    (void)json_object_set_new(d, "dialog_id", json_string(dialog_id));
    (void)json_object_set_new(d, "position", json_integer((json_int_t)position));
    (void)json_object_set_new(d, "estimated_wait_s",
                              eta_s >= 0 ? json_integer((json_int_t)eta_s) : json_null());
    (void)cca_events_publish(e->events, topic, "queue", d, cca_time_wall_ms());
    json_decref(d);
}

/*
 * After the queue moved, at most every QUEUE_EVENTS_MS: the current position
 * of every queued dialog whose customer has a stream open (the others poll
 * GET /dialogue/{id}/queue), and the queue's length to every operator. A
 * burst of a thousand escalations is one walk and one frame per stream, not
 * a thousand (S7, docs/BENCHMARKS.md).
 */
#define QUEUE_EVENTS_MS 250

static void publish_positions(struct cca_engine *e, int64_t now_mono)
{
    struct cca_desk_stats st;
    json_t *d;

    if (!e->queue_moved || e->desk == NULL || e->events == NULL ||
        now_mono - e->queue_events_ms < QUEUE_EVENTS_MS)
        return;
    e->queue_moved = false;
    e->queue_events_ms = now_mono;
    cca_desk_positions(e->desk, position_event, e);
    cca_desk_get_stats(e->desk, &st);
    d = json_object();
    (void)json_object_set_new(d, "length", json_integer((json_int_t)st.queued));
    (void)cca_events_publish(e->events, "operators", "queue", d, cca_time_wall_ms());
    json_decref(d);
}

/* Once a second: reply timeouts, event stream heartbeats. */
static void tick(struct cca_engine *e, int64_t now_mono)
{
    struct cca_desk_moves mv = {0};
    json_t *busy;

    publish_positions(e, now_mono); /* a change left pending by the rate limit */
    if (now_mono < e->next_tick_ms || atomic_load(&e->quiet))
        return;
    e->next_tick_ms = now_mono + 1000;
    if (e->desk != NULL) {
        busy = json_array();
        cca_desk_timeouts(e->desk, cca_time_wall_ms(),
                          (int64_t)e->cfg->operator_reply_timeout_s * 1000, &mv, busy);
        dispatch_moves(e, NULL, &mv);
        record_busy(e, busy);
        json_decref(busy);
    }
    if (e->events != NULL)
        cca_events_heartbeat(e->events, now_mono, CCA_EVENTS_HEARTBEAT_MS);
}

static const char *actor_of(const struct op *op)
{
    return op->req.actor[0] != '\0' ? op->req.actor : "client";
}

/* The desk's view of the op's dialog into the outcome (owner, queue position). */
static void human_outcome(struct cca_engine *e, const struct op *op,
                          struct cca_engine_outcome *o)
{
    o->owner = CCA_OWNER_AGENT;
    o->eta_s = -1;
    o->escalated = op->human.escalated;
    o->escalation = op->human.escalation;
    o->human_turn = op->human.human_turn;
    o->rating_repeat = op->human.rating_repeat;
    if (e->desk == NULL || op->entry == NULL || op->entry->coll != CCA_STORE_DIALOGS)
        return;
    o->owner = cca_desk_owner(e->desk, op->entry->id, o->operator_id);
    if (o->owner == CCA_OWNER_QUEUE)
        (void)cca_desk_position(e->desk, op->entry->id, &o->position, &o->eta_s);
}

/*
 * Ask the desk for a human for the dialog @op holds (its document so far is
 * op->new_doc or the committed one). FULL: the customer is told, the AI keeps it.
 */
static void escalate(struct cca_engine *e, struct op *op, const char *reason)
{
    struct cca_desk_moves mv = {0};
    json_t *base = op->new_doc != NULL ? op->new_doc : op_base(e, op);
    struct cca_desk_need need = cca_handoff_need(base);

    /* A request that found the queue full before the turn: told now, once. */
    if (!op->human.escalated) {
        op->human.escalated = true;
        op->human.escalation = cca_desk_escalate(e->desk, op->entry->id, &need, reason,
                                                 actor_of(op), cca_time_wall_ms(), &mv);
        atomic_fetch_add_explicit(&e->metrics.escalations[0], 1, memory_order_relaxed);
    }
    if (op->human.escalation == CCA_DESK_FULL) {
        json_t *doc = cca_handoff_with_system(
            base, "full", cca_handoff_notice("full", cca_handoff_dialog_lang(base)),
            cca_time_wall_ms(), op_events(op));

        json_decref(op->new_doc);
        op->new_doc = doc;
        atomic_fetch_add_explicit(&e->metrics.escalations[2], 1, memory_order_relaxed);
    }
    dispatch_moves(e, op, &mv);
}

/*
 * A queued customer's quick answer (seed 004): the knowledge-base entry that
 * matches their question confidently, if one does, as a system message after
 * the queue notice. The question is this message or, when it only asks for a
 * person, the customer's message before it; its topic (tech support or
 * sales) is the router's keyword scores'.
 */
static void queue_faq(struct cca_engine *e, struct op *op, json_t *before,
                      enum cca_lang lang, int64_t now)
{
    json_t *messages = json_object_get(before, "messages");
    const char *texts[2] = {op->req.text, NULL};
    char *answer = NULL;

    for (size_t i = json_array_size(messages); i-- > 0 && texts[1] == NULL;) {
        json_t *m = json_array_get(messages, i);

        if (strcmp(json_string_value(json_object_get(m, "role")) ?: "", "customer") == 0)
            texts[1] = json_string_value(json_object_get(m, "content"));
    }
    for (size_t i = 0; i < 2 && answer == NULL && texts[i] != NULL; i++) {
        struct cca_route route;

        enum cca_agent agent;

        /* The question's topic: tech support or sales (the supervisor's entries
         * are about complaints and call-backs, not answers). */
        cca_router_route(e->router, texts[i], strlen(texts[i]), CCA_AGENT_NONE, &route);
        agent = route.scores[CCA_AGENT_SALES] > route.scores[CCA_AGENT_TECH_SUPPORT]
                    ? CCA_AGENT_SALES
                    : CCA_AGENT_TECH_SUPPORT;
        if (route.scores[agent] > 0)
            answer =
                cca_agents_kb_answer(e->agents, agent, lang, texts[i], strlen(texts[i]));
    }
    /* An answer the AI already gave in this dialog is not repeated as the FAQ. */
    for (size_t i = 0; answer != NULL && i < json_array_size(messages); i++) {
        json_t *m = json_array_get(messages, i);

        if (strcmp(json_string_value(json_object_get(m, "role")) ?: "", "agent") == 0 &&
            strcmp(json_string_value(json_object_get(m, "content")) ?: "", answer) == 0) {
            free(answer);
            answer = NULL;
        }
    }
    if (answer != NULL) {
        json_t *doc =
            cca_handoff_with_system(op->new_doc, "faq", answer, now, op_events(op));

        json_decref(op->new_doc);
        op->new_doc = doc;
        free(answer);
    }
}

/*
 * A customer who asks for a person (HUMAN_HANDOFF=request) while the AI owns
 * the dialog: the request goes to the desk before any AI turn, so no AI
 * answer promises something else; assigned or queued, the customer gets the
 * notice (202, like any message a human will answer). True when handled;
 * false when the queue is full: the AI answers and the customer is told.
 */
static bool human_request(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    struct cca_desk_moves mv = {0};
    const char *text = op->req.text;
    enum cca_lang lang = cca_text_detect_lang(text, strlen(text));
    json_t *doc = cca_dialog_with_language(op_base(e, op), cca_lang_code(lang));
    struct cca_desk_need need = cca_handoff_need(doc);
    int64_t now = cca_time_wall_ms();
    char msg_id[37];
    struct cca_dialog_message m = {.id = msg_id,
                                   .role = "customer",
                                   .content = text,
                                   .at_ms = now,
                                   .channel = op->req.channel};
    struct cca_engine_outcome o;
    json_t *messages;

    op->human.escalated = true;
    op->human.escalation = cca_desk_escalate(e->desk, en->id, &need, "customer_request",
                                             "customer", now, &mv);
    atomic_fetch_add_explicit(&e->metrics.escalations[0], 1, memory_order_relaxed);
    if (op->human.escalation == CCA_DESK_FULL) {
        json_decref(doc);
        return false;
    }
    cca_uuid_new(msg_id);
    op->new_doc = cca_dialog_with_message(doc, &m);
    json_decref(doc);
    messages = json_object_get(op->new_doc, "messages");
    cca_handoff_message_event(op_events(op), en->id,
                              json_array_get(messages, json_array_size(messages) - 1),
                              NULL);
    dispatch_moves(e, op, &mv);
    if (op->human.escalation == CCA_DESK_QUEUED)
        queue_faq(e, op, op_base(e, op), lang, now);
    op->human.human_turn = true;
    outcome_of(e, op, op->new_doc, &o);
    o.message_id = msg_id;
    render(op, &o);
    persist(e, op);
    return true;
}

/* The customer's message and the AI's answer of a turn, for the dialog's stream. */
static void turn_events(struct op *op)
{
    json_t *messages = json_object_get(op->new_doc, "messages");
    size_t n = json_array_size(messages);

    for (size_t i = n >= 2 ? n - 2 : 0; i < n; i++)
        cca_handoff_message_event(op_events(op), op->entry->id,
                                  json_array_get(messages, i), NULL);
}

/* After an AI turn: the HUMAN_HANDOFF triggers (request, supervisor, degraded). */
static void turn_triggers(struct cca_engine *e, struct op *op)
{
    const char *text =
        op->req.op == CCA_OP_CREATE ? op->req.create.initial_message : op->req.text;

    if (e->desk == NULL || cca_dialog_get_status(op->new_doc) == CCA_DIALOG_CLOSED)
        return;
    /* A message asked before its turn (human_request; again only if the queue
     * was full, to say so); a create's initial message is asked here. */
    if ((e->triggers & CCA_HANDOFF_REQUEST) &&
        (op->req.op == CCA_OP_CREATE || op->human.escalated) &&
        cca_handoff_wants_human(text, strlen(text)))
        escalate(e, op, "customer_request");
    else if ((e->triggers & CCA_HANDOFF_SUPERVISOR) &&
             op->t.route.agent == CCA_AGENT_SUPERVISOR &&
             cca_desk_has_skill(e->desk, CCA_OPERATOR_SKILL_BIT(CCA_AGENT_SUPERVISOR)))
        escalate(e, op, "supervisor");
    else if ((e->triggers & CCA_HANDOFF_DEGRADED) && op->t.degraded)
        escalate(e, op, "degraded");
}

/*
 * A customer message while a human owns the dialog: stored and delivered to
 * the operator; the AI stays silent; a queued customer hears their position.
 */
static void human_message(struct cca_engine *e, struct op *op, enum cca_owner owner,
                          const char *operator_id)
{
    struct slot *en = op->entry;
    char msg_id[37];
    int64_t now = cca_time_wall_ms();
    struct cca_dialog_message m = {.id = msg_id,
                                   .role = "customer",
                                   .content = op->req.text,
                                   .at_ms = now,
                                   .channel = op->req.channel};
    json_t *messages;
    struct cca_engine_outcome o;

    cca_uuid_new(msg_id);
    op->new_doc = cca_dialog_with_message(op_base(e, op), &m);
    messages = json_object_get(op->new_doc, "messages");
    cca_handoff_message_event(op_events(op), en->id,
                              json_array_get(messages, json_array_size(messages) - 1),
                              owner == CCA_OWNER_OPERATOR ? operator_id : NULL);
    if (owner == CCA_OWNER_QUEUE) {
        size_t pos = 0;
        double eta = -1;
        char text[256];
        enum cca_lang lang = cca_handoff_dialog_lang(op_base(e, op));
        json_t *doc;

        (void)cca_desk_position(e->desk, en->id, &pos, &eta);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        (void)snprintf(text, sizeof(text), cca_handoff_notice("position", lang), pos);
#pragma GCC diagnostic pop
        doc = cca_handoff_with_system(op->new_doc, "queue", text, now, op_events(op));
        json_decref(op->new_doc);
        op->new_doc = doc;
    }
    op->human.human_turn = true;
    outcome_of(e, op, op->new_doc, &o);
    o.message_id = msg_id;
    render(op, &o);
    persist(e, op);
}

/* An operator's reply in the dialog @op holds (only its owner may). */
static cca_rc operator_reply(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    char owner_id[37] = "";
    char msg_id[37];
    int64_t now = cca_time_wall_ms();
    struct cca_desk_operator_info info;
    struct cca_dialog_message m = {
        .id = msg_id, .role = "operator", .at_ms = now, .channel = op->req.channel};
    struct cca_engine_outcome o;
    json_t *messages;
    json_t *doc;
    double wait_s;

    if (cca_desk_owner(e->desk, en->id, owner_id) != CCA_OWNER_OPERATOR ||
        strcmp(owner_id, op->req.actor_operator) != 0)
        return cca_error_set(&op->err, CCA_ERR_FORBIDDEN,
                             "dialog %s is not assigned to you", en->id);
    if (cca_dialog_message_count(en->doc) + 1 > e->cfg->max_dialog_messages)
        return cca_error_set(&op->err, CCA_ERR_LIMIT,
                             "dialog %s has reached MAX_DIALOG_MESSAGES (%u)", en->id,
                             e->cfg->max_dialog_messages);
    if (!cca_desk_operator(e->desk, owner_id, &info))
        info.name[0] = '\0';
    cca_uuid_new(msg_id);
    m.content = op->req.text;
    m.operator_id = owner_id;
    m.operator_name = info.name;
    doc = cca_dialog_with_message(op_base(e, op), &m);
    if (cca_desk_replied(e->desk, en->id, now, &wait_s)) {
        cca_hist_observe_us(&e->metrics.first_response_seconds, (int64_t)(wait_s * 1e6));
        op->new_doc = cca_dialog_with_replied(doc);
        json_decref(doc);
    } else {
        op->new_doc = doc;
    }
    messages = json_object_get(op->new_doc, "messages");
    cca_handoff_message_event(op_events(op), en->id,
                              json_array_get(messages, json_array_size(messages) - 1),
                              NULL);
    outcome_of(e, op, op->new_doc, &o);
    o.message_id = msg_id;
    render(op, &o);
    persist(e, op);
    return CCA_OK;
}

/* POST /dialogue/{id}/handoff: to a human, back to the AI, or to another operator. */
static cca_rc handoff(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    struct cca_desk_moves mv = {0};
    char owner_id[37] = "";
    enum cca_owner owner = cca_desk_owner(e->desk, en->id, owner_id);
    bool is_operator = op->req.actor_operator[0] != '\0';
    int64_t now = cca_time_wall_ms();
    struct cca_engine_outcome o;
    cca_rc rc = CCA_OK;

    if (en->status == CCA_DIALOG_CLOSED)
        return cca_error_set(&op->err, CCA_ERR_CONFLICT, "dialog %s is closed", en->id);
    /* An operator acts only on their own dialogs. */
    if (is_operator &&
        !(owner == CCA_OWNER_OPERATOR && strcmp(owner_id, op->req.actor_operator) == 0))
        return cca_error_set(&op->err, CCA_ERR_FORBIDDEN,
                             "dialog %s is not assigned to you", en->id);
    switch (op->req.handoff_to) {
        case CCA_OWNER_QUEUE: /* "to": "human" */
            escalate(e, op, op->req.reason != NULL ? op->req.reason : "api");
            break;
        case CCA_OWNER_AGENT:
            if (!cca_desk_release(e->desk, en->id, true,
                                  op->req.reason != NULL ? op->req.reason : "api",
                                  actor_of(op), now, &mv)) {
                rc = cca_error_set(&op->err, CCA_ERR_CONFLICT,
                                   "dialog %s is already with the AI", en->id);
                break;
            }
            dispatch_moves(e, op, &mv);
            if (op->req.agent != CCA_AGENT_NONE) {
                json_t *doc = json_copy(op->new_doc);

                (void)json_object_set_new(doc, "current_agent",
                                          json_string(cca_agent_name(op->req.agent)));
                json_decref(op->new_doc);
                op->new_doc = doc;
            }
            break;
        case CCA_OWNER_OPERATOR:
            rc = cca_desk_transfer(e->desk, en->id, op->req.target, actor_of(op), now,
                                   &mv);
            if (rc == CCA_OK)
                dispatch_moves(e, op, &mv);
            else
                (void)cca_error_set(&op->err, rc,
                                    rc == CCA_ERR_NOT_FOUND ? "no operator %s"
                                    : rc == CCA_ERR_LIMIT
                                        ? "operator %s is offline or has no free seat"
                                        : "dialog is not held by an operator, or already "
                                          "by %s",
                                    op->req.target);
            break;
        default:
            rc = cca_error_set(&op->err, CCA_ERR_INVALID, "bad handoff target");
            break;
    }
    if (rc != CCA_OK)
        return rc;
    if (op->new_doc == NULL)
        op->new_doc = json_incref(op_base(e, op)); /* nothing else changed */
    outcome_of(e, op, op->new_doc, &o);
    render(op, &o);
    persist(e, op);
    return CCA_OK;
}

/* POST /dialogue/{id}/take or /operators/me/next (decided at start: op->took). */
static cca_rc take(struct cca_engine *e, struct op *op)
{
    struct cca_desk_moves mv = {0};
    struct cca_engine_outcome o;
    char id[37];
    cca_rc rc;

    if (!op->took) {
        rc = cca_desk_take(e->desk, op->req.actor_operator, op->entry->id,
                           cca_time_wall_ms(), id, &mv);
        if (rc != CCA_OK)
            return cca_error_set(&op->err, rc,
                                 rc == CCA_ERR_LIMIT ? "you are at max_dialogs"
                                 : rc == CCA_ERR_CONFLICT
                                     ? "dialog %s is not in the queue"
                                     : "no such operator",
                                 op->entry->id);
        dispatch_moves(e, op, &mv);
    } else {
        op->new_doc = json_incref(op_base(e, op)); /* the take's move, folded in */
    }
    outcome_of(e, op, op->new_doc, &o);
    render(op, &o);
    persist(e, op);
    return CCA_OK;
}

/* CSAT: once per closed dialog; the same score again changes nothing. */
static cca_rc rate(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    json_t *rating = json_object_get(op_base(e, op), "rating");
    struct cca_engine_outcome o;

    if (en->status != CCA_DIALOG_CLOSED)
        return cca_error_set(&op->err, CCA_ERR_CONFLICT,
                             "dialog %s is open: rate it once it is closed", en->id);
    if (json_is_object(rating)) {
        if (json_integer_value(json_object_get(rating, "score")) != op->req.score)
            return cca_error_set(&op->err, CCA_ERR_CONFLICT,
                                 "dialog %s is already rated with another score", en->id);
        op->human.rating_repeat = true;
        outcome_of(e, op, op_base(e, op), &o);
        render(op, &o);
        return CCA_OK; /* answered without a change: the caller finishes */
    }
    op->new_doc = cca_dialog_with_rating(op_base(e, op), op->req.score, op->req.text,
                                         cca_time_wall_ms());
    rating = json_object_get(op->new_doc, "rating");
    if (json_is_string(json_object_get(rating, "operator_id"))) {
        /* The last operator hears of it (their console shows it on the dialog). */
        json_t *d = json_pack("{s:s, s:o}", "dialog_id", en->id, "rating",
                              json_deep_copy(rating));

        cca_handoff_events_add(op_events(op), "operator",
                               json_string_value(json_object_get(rating, "operator_id")),
                               "rated", d);
    }
    outcome_of(e, op, op->new_doc, &o);
    render(op, &o);
    persist(e, op);
    return CCA_OK;
}

/*
 * A close (or a delete) of a dialog the desk holds: the seat is freed, and a
 * closed dialog tells the customer and asks for a rating.
 */
static void release_closed(struct cca_engine *e, struct op *op, bool deleted)
{
    struct slot *en = op->entry;
    struct cca_desk_moves mv = {0};
    char owner_id[37] = "";
    enum cca_owner owner;
    int64_t now = cca_time_wall_ms();

    if (e->desk == NULL)
        return;
    owner = cca_desk_owner(e->desk, en->id, owner_id);
    if (!cca_desk_release(e->desk, en->id, false, deleted ? "deleted" : "closed",
                          actor_of(op), now, &mv))
        return;
    if (owner == CCA_OWNER_QUEUE)
        e->queue_moved = true; /* the ones behind it moved up */
    if (owner == CCA_OWNER_OPERATOR) {
        json_t *d = json_object();

        (void)json_object_set_new(d, "dialog_id", json_string(en->id));
        (void)json_object_set_new(d, "reason",
                                  json_string(deleted ? "deleted" : "closed"));
        cca_handoff_events_add(op_events(op), "operator", owner_id, "unassigned", d);
    }
    if (!deleted) {
        enum cca_lang lang = cca_handoff_dialog_lang(op->new_doc);
        json_t *doc = cca_handoff_with_system(op->new_doc, "closing",
                                              cca_handoff_notice("closing", lang), now,
                                              op_events(op));
        json_t *doc2 = cca_handoff_with_system(
            doc, "csat", cca_handoff_notice("csat", lang), now, op_events(op));

        json_decref(doc);
        json_decref(op->new_doc);
        op->new_doc = doc2;
    }
    dispatch_moves(e, op, &mv);
}

/* An operator record: create, update (patch and/or status) or revoke. */
static cca_rc operator_op(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    struct cca_desk_moves mv = {0};
    struct cca_engine_outcome o;
    int64_t now = cca_time_wall_ms();
    cca_rc rc = CCA_OK;

    switch (op->req.op) {
        case CCA_OP_OPERATOR_CREATE:
            rc = cca_desk_add_operator(e->desk, op->new_doc, now, &mv);
            break;
        case CCA_OP_OPERATOR_UPDATE: {
            json_t *doc = json_incref(en->doc);

            if (op->req.patch != NULL) {
                json_t *next = cca_operator_with_patch(doc, op->req.patch, now);

                json_decref(doc);
                doc = next;
            }
            if (op->req.has_status && op->req.status != cca_operator_get_status(doc)) {
                json_t *next = cca_operator_with_status(doc, op->req.status, now);
                json_t *d = json_object();

                json_decref(doc);
                doc = next;
                (void)json_object_set_new(d, "operator_id", json_string(en->id));
                (void)json_object_set_new(
                    d, "status", json_string(cca_operator_status_name(op->req.status)));
                (void)json_object_set_new(
                    d, "reason",
                    json_string(op->req.reason != NULL ? op->req.reason : "operator"));
                cca_handoff_events_add(op_events(op), "operator", en->id, "status", d);
            }
            {
                /* The live times (kept in memory) go to disk with this write. */
                struct cca_desk_operator_info info;

                if (cca_desk_operator(e->desk, en->id, &info)) {
                    json_t *next = cca_operator_with_times(doc, info.last_seen_ms,
                                                           info.last_closed_ms, now);

                    json_decref(doc);
                    doc = next;
                }
            }
            op->new_doc = doc;
            rc = cca_desk_update_operator(e->desk, doc, actor_of(op), now, &mv);
            break;
        }
        case CCA_OP_OPERATOR_DELETE:
            rc = cca_desk_remove_operator(e->desk, en->id, actor_of(op), now, &mv);
            break;
        default:
            rc = CCA_ERR_INTERNAL;
            break;
    }
    if (rc != CCA_OK)
        return cca_error_set(&op->err, rc, "operator %s: %s", en->id, cca_strerror(rc));
    dispatch_moves(e, op, &mv);
    outcome_of(e, op, op->new_doc, &o);
    o.operator_doc = op->new_doc != NULL ? op->new_doc : en->doc;
    render(op, &o);
    persist(e, op);
    return CCA_OK;
}

/*
 * A customer profile set by PUT or filled from a dialog; no write when nothing
 * changed. A dialog makes the profile of a new customer; of an existing one it
 * adds only a missing language: what PUT wrote or cleared stays so, and a
 * dialog that names someone else's customer_id cannot rewrite their contacts.
 */
static void customer_op(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    json_t *base = op->new_entry ? NULL : en->doc;
    json_t *doc;
    struct cca_engine_outcome o;

    if (op->req.fill_only && !op->new_entry)
        op->req.customer->set &= CCA_CUSTOMER_F_LANGUAGE;
    doc = cca_customer_merge(base, op->req.text, op->req.customer, op->req.fill_only,
                             cca_time_wall_ms());

    outcome_of(e, op, doc, &o);
    o.customer_doc = doc;
    o.created = op->new_entry;
    render(op, &o);
    if (doc == base) {
        json_decref(doc);
        op->entry = NULL;
        finish(e, op, CCA_OK);
        release(e, en, false);
        return;
    }
    op->new_doc = doc;
    persist(e, op);
}

/* CCA_OP_PUT: a channel's document replaced whole; an equal one is not written. */
static void put_op(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    struct cca_engine_outcome o;

    outcome_of(e, op, op->req.doc, &o);
    render(op, &o);
    if (!op->new_entry && json_equal(en->doc, op->req.doc)) {
        op->entry = NULL;
        finish(e, op, CCA_OK);
        release(e, en, false);
        return;
    }
    op->new_doc = op->req.doc;
    op->req.doc = NULL;
    persist(e, op);
}

/*
 * A dialog's customer gets a profile (customer_op says what a dialog may
 * change): when the dialog is created and when its language is first known
 * (its first turn). One internal operation on the profile's own queue.
 */
static void customer_fill(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    struct cca_customer_fields f;
    const char *cid;
    struct op *k;

    if (en->coll != CCA_STORE_DIALOGS || op->new_doc == NULL)
        return;
    if (!op->new_entry && (json_is_string(json_object_get(en->doc, "language")) ||
                           !json_is_string(json_object_get(op->new_doc, "language"))))
        return;
    cid = cca_dialog_get_str(op->new_doc, "customer_id");
    if (cid == NULL || !cca_customer_fields_of_dialog(op->new_doc, &f))
        return;
    k = internal_op(e, CCA_OP_CUSTOMER_PUT, "");
    k->req.text = cca_xstrdup(cid);
    cca_customer_key(cid, k->req.target);
    k->req.customer = cca_xmalloc(sizeof(*k->req.customer));
    *k->req.customer = f;
    k->req.fill_only = true;
    post(e, k, EV_NEW);
}

/* CCA_OP_MOVE: record a desk move that was decided outside this dialog's ops. */
static void record_move(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;

    /* An operation before it already recorded them: nothing left to do. */
    if (en->pending.n == 0) {
        op->entry = NULL;
        finish(e, op, CCA_OK);
        release(e, en, false);
        return;
    }
    op->new_doc = json_incref(op_base(e, op));
    persist(e, op);
}

/*
 * After a change is durable, before it is visible: the pending moves it
 * recorded leave the dialog's list; a rating is counted (not before, so a
 * failed write retried is not counted twice).
 */
static void after_commit(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;

    customer_fill(e, op);
    if (op->folded > 0 && op->folded <= en->pending.n) {
        memmove(en->pending.v, en->pending.v + op->folded,
                (en->pending.n - op->folded) * sizeof(*en->pending.v));
        en->pending.n -= op->folded;
    }
    if (op->req.op == CCA_OP_RATE && !op->human.rating_repeat && op->new_doc != NULL) {
        json_t *rating = json_object_get(op->new_doc, "rating");
        enum cca_agent a = cca_dialog_get_agent(op->new_doc);
        unsigned slot = a == CCA_AGENT_NONE ? CCA_AGENT__COUNT : (unsigned)a;
        int score = (int)json_integer_value(json_object_get(rating, "score"));

        if (score >= 1 && score <= 5)
            atomic_fetch_add_explicit(&e->metrics.csat[slot][score - 1], 1,
                                      memory_order_relaxed);
        cca_desk_rated(e->desk, json_string_value(json_object_get(rating, "operator_id")),
                       score);
    }
}

/* A create failed: the desk forgets the dialog if it had it (escalated in its turn). */
static void forget_human(struct cca_engine *e, struct slot *en)
{
    struct cca_desk_moves mv = {0};

    if (e->desk != NULL && en->coll == CCA_STORE_DIALOGS &&
        cca_desk_release(e->desk, en->id, false, "create_failed", "system",
                         cca_time_wall_ms(), &mv))
        dispatch_moves(e, NULL, &mv);
    cca_desk_moves_cleanup(&mv);
}

/* ---- operations ------------------------------------------------------------------ */

/* Answer a cleanup with the count of dialogs its children closed or deleted. */
static void cleanup_finish(struct cca_engine *e, struct op *op)
{
    struct cca_engine_outcome o;

    outcome_of(e, op, NULL, &o);
    render(op, &o);
    finish(e, op, CCA_OK);
}

/*
 * Spawn one child op per selected dialog; the last child to finish calls this
 * again (spawned set) and the parent answers.
 */
static void run_cleanup(struct cca_engine *e, struct op *op)
{
    bool closing = op->req.op == CCA_OP_CLEANUP_INACTIVE;
    int64_t now = cca_time_wall_ms();
    int64_t limit = closing ? now - (int64_t)e->cfg->dialog_inactivity_timeout_s * 1000
                            : now - (int64_t)op->req.older_than_days * 86400000;
    struct op *kids = NULL;

    if (op->spawned) {
        cleanup_finish(e, op);
        return;
    }
    pthread_mutex_lock(&e->lock);
    for (size_t b = 0; b < e->nbuckets; b++) {
        for (struct slot *en = e->buckets[b]; en != NULL; en = en->hnext) {
            bool closed = en->status == CCA_DIALOG_CLOSED;
            struct op *k;

            if (en->coll != CCA_STORE_DIALOGS || closed == closing ||
                en->updated_ms >= limit)
                continue;
            k = cca_xcalloc(1, sizeof(*k));
            k->engine = e;
            k->parent = op;
            k->req.op = closing ? CCA_OP_CLOSE : CCA_OP_DELETE;
            memcpy(k->req.id, en->id, sizeof(k->req.id));
            k->req.reason = closing ? cca_xstrdup("inactivity_timeout") : NULL;
            k->req.force = true;
            k->idle_before_ms = closing ? limit : 0;
            k->received_mono = op->received_mono;
            k->received_us = op->received_us;
            k->received_wall = now;
            k->next = kids;
            kids = k;
            op->children++;
        }
    }
    pthread_mutex_unlock(&e->lock);
    if (kids == NULL) {
        cleanup_finish(e, op);
        return;
    }
    /* Set before any child runs: children may finish synchronously. */
    op->spawned = true;
    while (kids != NULL) {
        struct op *k = kids;

        kids = k->next;
        start_op(e, k);
    }
}

/*
 * A CREATE or MESSAGE with an Idempotency-Key that holds its dialog: answer
 * from the dialog's record of that key when there is one (true). A repeated
 * create whose record expired forgets the key and creates anew (true).
 * Otherwise false: run the operation.
 */
static bool replayed(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    json_t *rec = cca_dialog_find_idempotency(en->doc, op->req.idempotency_key,
                                              idempotent_op_name(op), cca_time_wall_ms(),
                                              (int64_t)e->cfg->idempotency_ttl_s * 1000);
    const char *hash = cca_dialog_idempotency_hash(rec);

    if (rec == NULL && op->req.op != CCA_OP_CREATE)
        return false;
    op->entry = NULL;
    if (rec == NULL) {
        /* Expired: forget it; start_op finds a newer holder of the key, if any. */
        create_key_forget(e, en);
        release(e, en, false);
        start_op(e, op);
        return true;
    }
    if (hash == NULL || strcmp(hash, op->req.request_hash) != 0) {
        (void)cca_error_set(&op->err, CCA_ERR_MISMATCH,
                            "Idempotency-Key was already used with a different request");
        finish(e, op, CCA_ERR_MISMATCH);
    } else {
        op->result = json_incref(cca_dialog_idempotency_response(rec));
        atomic_fetch_add_explicit(&e->metrics.idempotent_replays, 1,
                                  memory_order_relaxed);
        finish(e, op, CCA_OK);
    }
    release(e, en, false);
    return true;
}

/*
 * Make sure busy @en has its document (read back from the file if it was
 * evicted). False with @err set when the file cannot be read.
 */
static bool load_doc(struct cca_engine *e, struct slot *en, struct cca_error *err)
{
    json_t *doc = NULL;
    size_t stored = 0;
    bool cached;

    pthread_mutex_lock(&e->lock);
    cached = en->doc != NULL;
    if (cached)
        lru_touch(e, en);
    pthread_mutex_unlock(&e->lock);
    if (cached)
        return true;
    if (cca_store_read(e->store, en->coll, en->id, &doc, &stored, err) != CCA_OK) {
        if (err->code != CCA_ERR_NOT_FOUND)
            cca_log(LOG_ERR, "dialog %s cannot be read back: %s", en->id, err->msg);
        err->code = CCA_ERR_IO; /* it is in the index: its file must be there */
        return false;
    }
    atomic_fetch_add_explicit(&e->metrics.cache_loads, 1, memory_order_relaxed);
    pthread_mutex_lock(&e->lock);
    if (en->doc == NULL) {
        en->stored = stored;
        cache_put(e, en, doc);
    } else {
        json_decref(doc); /* a reader cached it meanwhile: the same content */
    }
    pthread_mutex_unlock(&e->lock);
    return true;
}

/* Run @op, which holds its dialog (op->entry, busy). */
static void run_op(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    bool created = op->new_entry;
    struct cca_engine_outcome o;
    enum cca_dialog_status st;

    if (op->req.op == CCA_OP_CLEANUP_INACTIVE || op->req.op == CCA_OP_CLEANUP_CLOSED) {
        run_cleanup(e, op);
        return;
    }
    /*
     * The dialog's document, read back if it was evicted: also when the
     * dialog was handed over by an operation that ran without it (a delete
     * needs only the index: it must work for a dialog whose file can no longer
     * be read, and a cleanup should not read every file it is about to
     * delete).
     */
    if (!op->new_entry && op->req.op != CCA_OP_DELETE && !load_doc(e, en, &op->err)) {
        op->entry = NULL;
        finish(e, op, op->err.code);
        release(e, en, false);
        return;
    }
    if (op->req.idempotency_key != NULL && !op->new_entry && replayed(e, op))
        return;
    if (op->req.op == CCA_OP_CREATE) {
        if (op->req.create.initial_message != NULL) {
            start_turn(e, op);
        } else {
            outcome_of(e, op, op->new_doc, &o);
            render(op, &o);
            persist(e, op);
        }
        return;
    }
    if (en->coll == CCA_STORE_OPERATORS) {
        if (operator_op(e, op) != CCA_OK)
            goto out;
        return;
    }
    if (en->coll == CCA_STORE_CUSTOMERS) {
        customer_op(e, op);
        return;
    }
    if (en->coll == CCA_STORE_TELEGRAM) {
        put_op(e, op);
        return;
    }
    st = en->status; /* a DELETE runs without the document (see start_op) */
    switch (op->req.op) {
        case CCA_OP_MESSAGE: {
            char owner_id[37] = "";
            enum cca_owner owner = e->desk != NULL
                                       ? cca_desk_owner(e->desk, en->id, owner_id)
                                       : CCA_OWNER_AGENT;

            if (st == CCA_DIALOG_CLOSED) {
                (void)cca_error_set(&op->err, CCA_ERR_CONFLICT, "dialog %s is closed",
                                    en->id);
                goto out;
            }
            if (cca_dialog_message_count(en->doc) + 2 > e->cfg->max_dialog_messages) {
                (void)cca_error_set(&op->err, CCA_ERR_LIMIT,
                                    "dialog %s has reached MAX_DIALOG_MESSAGES (%u)",
                                    en->id, e->cfg->max_dialog_messages);
                goto out;
            }
            if (owner != CCA_OWNER_AGENT) {
                human_message(e, op, owner, owner_id);
                return;
            }
            if ((e->triggers & CCA_HANDOFF_REQUEST) &&
                cca_handoff_wants_human(op->req.text, strlen(op->req.text)) &&
                human_request(e, op))
                return;
            start_turn(e, op);
            return;
        }
        case CCA_OP_MOVE:
            record_move(e, op);
            return;
        case CCA_OP_REPLY:
        case CCA_OP_HANDOFF:
        case CCA_OP_TAKE:
        case CCA_OP_RATE: {
            cca_rc rc;

            if (st == CCA_DIALOG_CLOSED && op->req.op != CCA_OP_RATE) {
                (void)cca_error_set(&op->err, CCA_ERR_CONFLICT, "dialog %s is closed",
                                    en->id);
                goto out;
            }
            rc = op->req.op == CCA_OP_REPLY     ? operator_reply(e, op)
                 : op->req.op == CCA_OP_HANDOFF ? handoff(e, op)
                 : op->req.op == CCA_OP_TAKE    ? take(e, op)
                                                : rate(e, op);
            if (rc != CCA_OK)
                goto out;
            if (op->req.op == CCA_OP_RATE && op->human.rating_repeat) {
                op->entry = NULL;
                finish(e, op, CCA_OK);
                release(e, en, false);
            }
            return;
        }
        case CCA_OP_CLOSE:
            if (st == CCA_DIALOG_CLOSED ||
                (op->idle_before_ms > 0 &&
                 cca_dialog_get_time(en->doc, "updated_at") >= op->idle_before_ms)) {
                /* Closing twice answers with the stored record; a cleanup skips. */
                if (st == CCA_DIALOG_CLOSED) {
                    outcome_of(e, op, en->doc, &o);
                    o.already_closed = true;
                    render(op, &o);
                }
                op->entry = NULL;
                finish(e, op, CCA_OK);
                release(e, en, false);
                return;
            }
            if (op->req.actor_operator[0] != '\0') {
                char owner_id[37] = "";

                if (cca_desk_owner(e->desk, en->id, owner_id) != CCA_OWNER_OPERATOR ||
                    strcmp(owner_id, op->req.actor_operator) != 0) {
                    (void)cca_error_set(&op->err, CCA_ERR_FORBIDDEN,
                                        "dialog %s is not assigned to you", en->id);
                    goto out;
                }
            }
            op->new_doc =
                cca_dialog_closed(op_base(e, op), op->req.reason, cca_time_wall_ms());
            release_closed(e, op, false);
            {
                json_t *d = json_object();

                (void)json_object_set_new(d, "dialog_id", json_string(en->id));
                (void)json_object_set_new(d, "reason", json_string(op->req.reason));
                cca_handoff_events_add(op_events(op), "dialog", en->id, "closed", d);
            }
            outcome_of(e, op, op->new_doc, &o);
            render(op, &o);
            persist(e, op);
            return;
        case CCA_OP_DELETE:
            if (st != CCA_DIALOG_CLOSED && !op->req.force) {
                (void)cca_error_set(&op->err, CCA_ERR_CONFLICT,
                                    "dialog %s is %s: close it first or pass force=true",
                                    en->id, cca_dialog_status_name(st));
                goto out;
            }
            release_closed(e, op, true);
            outcome_of(e, op, NULL, &o);
            render(op, &o);
            persist(e, op);
            return;
        default:
            break;
    }
    (void)cca_error_set(&op->err, CCA_ERR_INTERNAL, "unknown operation");
out:
    op->entry = NULL;
    finish(e, op, op->err.code);
    /* A create refused before its write (an operator id taken) leaves nothing. */
    if (created)
        creating_done(e, en);
    release(e, en, created);
}

/* A new dialog for a CREATE; its Idempotency-Key, if any, now leads to it. */
static void start_create(struct cca_engine *e, struct op *op)
{
    struct slot *en = cca_xcalloc(1, sizeof(*en));

    cca_uuid_new(en->id);
    en->busy = true;
    /* Until it commits, desk moves for it (its escalation, then a sweep) queue here. */
    en->creating = true;
    en->cnext = e->creating;
    e->creating = en;
    op->entry = en;
    op->new_entry = true;
    op->new_doc = cca_dialog_new_doc(en->id, &op->req.create, op->received_wall);
    if (op->req.idempotency_key != NULL)
        create_key_add(e, en, op->req.idempotency_key);
    run_op(e, op);
}

/* A new operator record (its id and document made by the caller). */
static void start_operator_create(struct cca_engine *e, struct op *op)
{
    struct slot *en = cca_xcalloc(1, sizeof(*en));
    const char *id =
        json_string_value(json_object_get(op->req.operator_doc, "operator_id"));

    (void)snprintf(en->id, sizeof(en->id), "%s", id != NULL ? id : "");
    en->coll = CCA_STORE_OPERATORS;
    en->busy = true;
    op->entry = en;
    op->new_entry = true;
    op->new_doc = op->req.operator_doc;
    op->req.operator_doc = NULL;
    run_op(e, op);
}

/* A new customer profile (its key, cca_customer_key), or a channel's document: made by
 * its first CUSTOMER_PUT or PUT. */
static void start_customer_create(struct cca_engine *e, struct op *op,
                                  enum cca_store_coll coll)
{
    struct slot *en = cca_xcalloc(1, sizeof(*en));

    memcpy(en->id, op->req.target, sizeof(en->id));
    en->coll = coll;
    en->busy = true;
    /* Until it commits, a second change of the same profile queues behind it. */
    en->creating = true;
    en->cnext = e->creating;
    e->creating = en;
    op->entry = en;
    op->new_entry = true;
    run_op(e, op);
}

/*
 * POST /operators/me/next: the desk picks the dialog now (so two pulls never
 * get the same one); the op then queues on that dialog like any other.
 * False when it finished the op with an error.
 */
static bool start_take_next(struct cca_engine *e, struct op *op)
{
    struct cca_desk_moves mv = {0};
    cca_rc rc = cca_desk_take(e->desk, op->req.actor_operator, NULL, cca_time_wall_ms(),
                              op->req.id, &mv);

    if (rc != CCA_OK) {
        (void)cca_error_set(&op->err, rc,
                            rc == CCA_ERR_LIMIT ? "you are at max_dialogs"
                                                : "no dialog in the queue for you");
        finish(e, op, rc);
        return false;
    }
    /* Pending on its dialog like any move; this op records it when it runs. */
    op->took = true;
    for (size_t i = 0; i < mv.n; i++) {
        count_move(e, &mv.v[i]);
        (void)pend_move(e, &mv.v[i]);
    }
    cca_desk_moves_cleanup(&mv);
    return true;
}

/* A newly submitted op: find its dialog and run it, or queue it behind the holder. */
static void start_op(struct cca_engine *e, struct op *op)
{
    struct slot *en = NULL;
    enum cca_store_coll coll = CCA_STORE_DIALOGS;
    const char *id = op->req.id;

    if (e->desk == NULL && op->req.op >= CCA_OP_HANDOFF && op->req.op <= CCA_OP_MOVE) {
        (void)cca_error_set(&op->err, CCA_ERR_UNAVAILABLE,
                            "the human side is not configured");
        finish(e, op, CCA_ERR_UNAVAILABLE);
        return;
    }
    switch (op->req.op) {
        case CCA_OP_OPERATOR_CREATE:
            start_operator_create(e, op);
            return;
        case CCA_OP_OPERATOR_UPDATE:
        case CCA_OP_OPERATOR_DELETE:
            coll = CCA_STORE_OPERATORS;
            id = op->req.target;
            break;
        case CCA_OP_CUSTOMER_PUT:
            coll = CCA_STORE_CUSTOMERS;
            id = op->req.target;
            break;
        case CCA_OP_PUT:
            if (op->req.coll != CCA_STORE_TELEGRAM || op->req.doc == NULL) {
                (void)cca_error_set(&op->err, CCA_ERR_INVALID, "PUT: bad collection");
                finish(e, op, CCA_ERR_INVALID);
                return;
            }
            coll = op->req.coll;
            id = op->req.target;
            break;
        case CCA_OP_TAKE:
            if (op->req.id[0] == '\0' && !start_take_next(e, op))
                return;
            break;
        default:
            break;
    }
    switch (op->req.op) {
        case CCA_OP_CREATE:
            /* A repeated key queues behind the dialog its first request made. */
            if (op->req.idempotency_key != NULL)
                en = create_key_find(e, op->req.idempotency_key);
            if (en == NULL) {
                start_create(e, op);
                return;
            }
            break;
        case CCA_OP_CLEANUP_INACTIVE:
        case CCA_OP_CLEANUP_CLOSED:
            run_op(e, op);
            return;
        default:
            pthread_mutex_lock(&e->lock);
            en = index_find(e, id);
            if (en != NULL && en->coll != coll)
                en = NULL;
            pthread_mutex_unlock(&e->lock);
            /* A move for a dialog whose create is in flight waits behind it. */
            if (en == NULL &&
                (op->req.op == CCA_OP_MOVE || op->req.op == CCA_OP_CUSTOMER_PUT ||
                 op->req.op == CCA_OP_PUT))
                en = creating_find(e, id);
            /* A profile (or a channel's document) is made by its first change. */
            if (en == NULL &&
                (op->req.op == CCA_OP_CUSTOMER_PUT || op->req.op == CCA_OP_PUT)) {
                start_customer_create(e, op, coll);
                return;
            }
            break;
    }
    if (en == NULL) {
        (void)cca_error_set(&op->err, CCA_ERR_NOT_FOUND, "%s %s not found",
                            coll == CCA_STORE_DIALOGS     ? "dialog"
                            : coll == CCA_STORE_OPERATORS ? "operator"
                                                          : "customer",
                            id);
        finish(e, op, CCA_ERR_NOT_FOUND);
        return;
    }
    if (en->busy) {
        if (en->wait_tail != NULL)
            en->wait_tail->next = op;
        else
            en->wait_head = op;
        en->wait_tail = op;
        op->next = NULL;
        return;
    }
    pthread_mutex_lock(&e->lock);
    en->busy = true;
    /*
     * A reader's store read that overlaps this operation must not be cached:
     * the store may hold the operation's change before the engine makes it
     * visible (committed), and it would then be cached ahead of time.
     */
    en->gen++;
    pthread_mutex_unlock(&e->lock);
    op->entry = en;
    run_op(e, op);
}

static void *engine_main(void *arg)
{
    struct cca_engine *e = arg;

    (void)pthread_setname_np(pthread_self(), "cca-engine"); /* top -H, perf, gdb */

    /* What the load decided (operators gone or offline, the backlog sweep). */
    dispatch_moves(e, NULL, &e->boot_moves);
    for (;;) {
        struct op *batch;

        pthread_mutex_lock(&e->lock);
        while (e->head == NULL && !e->stop && !e->detach_llm) {
            struct timespec ts;

            /* Wake once a second for the timers (tick), sooner for queue events. */
            clock_gettime(CLOCK_REALTIME, &ts);
            if (e->queue_moved) {
                ts.tv_nsec += QUEUE_EVENTS_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
            } else {
                ts.tv_sec += 1;
            }
            if (pthread_cond_timedwait(&e->cond, &e->lock, &ts) != 0)
                break;
        }
        if (e->detach_llm) {
            /* From here on no step of a turn touches the LLM client. */
            e->llm = NULL;
            e->detach_llm = false;
            pthread_cond_broadcast(&e->idle);
        }
        batch = e->head;
        e->head = e->tail = NULL;
        if (batch == NULL && e->stop) {
            pthread_mutex_unlock(&e->lock);
            break;
        }
        pthread_mutex_unlock(&e->lock);
        tick(e, cca_time_mono_ms());
        while (batch != NULL) {
            struct op *op = batch;

            batch = op->next;
            op->next = NULL;
            switch (op->ev) {
                case EV_NEW:
                    start_op(e, op);
                    break;
                case EV_RUN:
                    run_op(e, op);
                    break;
                case EV_LLM_DONE:
                    on_llm_result(e, op);
                    break;
                case EV_PERSISTED:
                    committed(e, op);
                    break;
            }
        }
        publish_positions(e, cca_time_mono_ms());
    }
    cca_text_thread_cleanup();
    return NULL;
}

/* ---- public API ------------------------------------------------------------------ */

static void skip_one(void *ctx, const char *name, const char *why)
{
    struct cca_engine *e = ctx;

    if (e->skip != NULL)
        e->skip(e->skip_ctx, name, why);
}

static void load_one(void *ctx, enum cca_store_coll coll, const char *id, json_t *doc,
                     size_t stored)
{
    struct cca_engine *e = ctx;
    struct slot *en;
    const char *key;

    if (coll == CCA_STORE_OPERATORS) {
        struct cca_error err = {0};

        if (e->desk == NULL || cca_operator_validate(doc, id, &err) != CCA_OK) {
            skip_one(e, id, e->desk == NULL ? "no desk" : err.msg);
            json_decref(doc);
            return;
        }
        en = cca_xcalloc(1, sizeof(*en));
        memcpy(en->id, id, sizeof(en->id));
        en->coll = CCA_STORE_OPERATORS;
        en->stored = stored;
        cca_desk_load_operator(e->desk, doc);
        entry_commit(e, en, doc, NULL, false);
        index_insert(e, en);
        return;
    }
    if (coll == CCA_STORE_TELEGRAM) {
        if (!json_is_object(doc)) {
            skip_one(e, id, "not a JSON object");
            json_decref(doc);
            return;
        }
        en = cca_xcalloc(1, sizeof(*en));
        memcpy(en->id, id, sizeof(en->id));
        en->coll = coll;
        en->stored = stored;
        entry_commit(e, en, doc, NULL, false);
        index_insert(e, en);
        return;
    }
    if (coll == CCA_STORE_CUSTOMERS) {
        struct cca_error err = {0};

        if (cca_customer_validate(doc, id, &err) != CCA_OK) {
            skip_one(e, id, err.msg);
            json_decref(doc);
            return;
        }
        en = cca_xcalloc(1, sizeof(*en));
        memcpy(en->id, id, sizeof(en->id));
        en->coll = CCA_STORE_CUSTOMERS;
        en->stored = stored;
        entry_commit(e, en, doc, NULL, false);
        index_insert(e, en);
        return;
    }
    if (coll != CCA_STORE_DIALOGS) {
        json_decref(doc);
        return;
    }
    en = cca_xcalloc(1, sizeof(*en));
    memcpy(en->id, id, sizeof(en->id));
    en->stored = stored;
    /* Rated after a human had it: their CSAT is counted again after the load. */
    if (json_is_string(json_object_get(json_object_get(doc, "rating"), "operator_id")))
        (void)json_array_append(e->boot_rated, json_object_get(doc, "rating"));
    /* Owned by a human at the last commit: the desk takes it back after the load. */
    if (cca_dialog_get_owner(doc, NULL) != CCA_OWNER_AGENT &&
        cca_dialog_get_status(doc) != CCA_DIALOG_CLOSED)
        (void)json_array_append(e->boot_human, doc);
    json_incref(doc); /* read below, whether or not the cache keeps it */
    entry_commit(e, en, doc, NULL, false);
    index_insert(e, en);
    /* The create's Idempotency-Key, if it is still live, leads to this dialog. */
    key = cca_dialog_create_key(doc, cca_time_wall_ms(),
                                (int64_t)e->cfg->idempotency_ttl_s * 1000);
    if (key != NULL && create_key_find(e, key) == NULL)
        create_key_add(e, en, key);
    json_decref(doc);
}

/* Histogram bounds of human waits (seconds): a minute to an hour matters here. */
static const double human_bounds[] = {1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600};

/* A restored dialog's place in the queue: when it started waiting, then its sequence. */
static void queue_place(json_t *doc, int64_t *ret_since, uint64_t *ret_seq)
{
    *ret_since = 0;
    (void)cca_time_parse(json_string_value(cca_dialog_owner_field(doc, "waiting_since")),
                         ret_since);
    *ret_seq = (uint64_t)json_integer_value(cca_dialog_owner_field(doc, "queue_seq"));
}

static int by_waiting_since(const void *a, const void *b)
{
    int64_t x;
    int64_t y;
    uint64_t xs;
    uint64_t ys;

    queue_place(*(json_t *const *)a, &x, &xs);
    queue_place(*(json_t *const *)b, &y, &ys);
    if (x != y)
        return x < y ? -1 : 1;
    return xs < ys ? -1 : xs > ys;
}

/*
 * The desk after a restart: every human-owned dialog back to its operator or
 * to the queue, in the order the customers started waiting (the queue's
 * order is cca_queue_compare of the same keys), then the backlog sweep.
 */
static void restore_desk(struct cca_engine *e)
{
    size_t n = json_array_size(e->boot_human);
    json_t **v = cca_xcalloc(n + 1, sizeof(*v));

    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(e->boot_human, i);
    qsort(v, n, sizeof(*v), by_waiting_since);
    for (size_t i = 0; e->desk != NULL && i < n; i++) {
        json_t *doc = v[i];
        const char *op_id = NULL;
        enum cca_owner owner = cca_dialog_get_owner(doc, &op_id);
        struct cca_desk_need need = cca_handoff_need(doc);
        int64_t since;
        uint64_t seq;
        int64_t assigned = 0;

        queue_place(doc, &since, &seq);
        (void)cca_time_parse(json_string_value(cca_dialog_owner_field(doc, "since")),
                             &assigned);
        cca_desk_load_dialog(
            e->desk, cca_dialog_get_str(doc, "dialog_id"), &need,
            owner == CCA_OWNER_OPERATOR ? (op_id ? op_id : "") : NULL,
            json_is_true(cca_dialog_owner_field(doc, "requeued")), since, seq, assigned,
            json_is_true(cca_dialog_owner_field(doc, "replied")), &e->boot_moves);
    }
    free(v);
    json_decref(e->boot_human);
    e->boot_human = json_array();
    for (size_t i = 0; e->desk != NULL && i < json_array_size(e->boot_rated); i++) {
        json_t *r = json_array_get(e->boot_rated, i);

        cca_desk_rated(e->desk, json_string_value(json_object_get(r, "operator_id")),
                       (int)json_integer_value(json_object_get(r, "score")));
    }
    json_array_clear(e->boot_rated); /* done with them */
    if (e->desk != NULL)
        cca_desk_start(e->desk, cca_time_wall_ms(), &e->boot_moves);
}

cca_rc cca_engine_new(const struct cca_engine_params *p, struct cca_engine **ret_engine,
                      struct cca_error *reterr)
{
    struct cca_engine *e = cca_xcalloc(1, sizeof(*e));
    cca_rc rc;

    e->cfg = p->cfg;
    e->store = p->store;
    e->router = p->router;
    e->agents = p->agents;
    e->llm = p->llm;
    e->llm_mode = p->llm != NULL;
    e->skip = p->skip;
    e->skip_ctx = p->skip_ctx;
    e->desk = p->desk;
    e->events = p->events;
    e->boot_human = json_array();
    e->boot_rated = json_array();
    e->nbuckets = 1024;
    cca_hist_init(&e->metrics.turn_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    cca_hist_init(&e->metrics.overhead_seconds, cca_hist_seconds_bounds,
                  cca_hist_seconds_n);
    cca_hist_init(&e->metrics.queue_wait_seconds, human_bounds,
                  CCA_ARRAY_SIZE(human_bounds));
    cca_hist_init(&e->metrics.first_response_seconds, human_bounds,
                  CCA_ARRAY_SIZE(human_bounds));
    e->buckets = cca_xcalloc(e->nbuckets, sizeof(*e->buckets));
    e->cache_budget = (size_t)e->cfg->dialog_cache_mb << 20;
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->observe_lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    pthread_cond_init(&e->idle, NULL);
    rc = cca_handoff_parse_triggers(e->cfg->human_handoff, &e->triggers, reterr);
    if (rc != CCA_OK)
        goto out;
    rc = cca_store_load(e->store, load_one, skip_one, e, reterr);
    if (rc != CCA_OK)
        goto out;
    restore_desk(e);
    /*
     * The load parsed every document and the cache kept only DIALOG_CACHE_MB of
     * them; glibc keeps the freed pages between the index's small blocks (2.3 GiB
     * of RSS for 90 MB in use after 100,000 dialogs, docs/BENCHMARKS.md S8).
     * malloc_trim(3) gives them back to the kernel, after the desk is rebuilt
     * (it reads the documents of the dialogs humans had).
     */
    (void)malloc_trim(0);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "cannot start the engine thread");
        goto out;
    }
    e->started = true;
    *ret_engine = e;
    e = NULL;
out:
    cca_engine_free(e);
    return rc;
}

void cca_engine_free(struct cca_engine *e)
{
    if (e == NULL)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->lock);
        e->stop = true;
        pthread_cond_signal(&e->cond);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
    }
    for (size_t b = 0; b < e->nbuckets; b++) {
        struct slot *en = e->buckets[b];

        while (en != NULL) {
            struct slot *next = en->hnext;

            entry_free(en);
            en = next;
        }
    }
    free(e->buckets);
    json_decref(e->boot_human);
    json_decref(e->boot_rated);
    cca_desk_moves_cleanup(&e->boot_moves);
    tdestroy(e->create_keys, create_key_free);
    tdestroy(e->customers, customer_ix_free);
    pthread_mutex_destroy(&e->lock);
    pthread_mutex_destroy(&e->observe_lock);
    pthread_cond_destroy(&e->cond);
    pthread_cond_destroy(&e->idle);
    free(e);
}

cca_rc cca_engine_submit(struct cca_engine *e, struct cca_engine_request *req,
                         cca_engine_done_fn done, void *ctx)
{
    struct op *op;

    pthread_mutex_lock(&e->lock);
    if (e->stop || e->in_flight >= e->cfg->max_pending_turns) {
        pthread_mutex_unlock(&e->lock);
        cca_engine_request_cleanup(req);
        return CCA_ERR_UNAVAILABLE;
    }
    e->in_flight++;
    pthread_mutex_unlock(&e->lock);
    op = cca_xcalloc(1, sizeof(*op));
    op->engine = e;
    op->req = *req;
    memset(req, 0, sizeof(*req));
    op->done = done;
    op->ctx = ctx;
    op->received_mono = cca_time_mono_ms();
    op->received_us = cca_time_mono_us();
    op->received_wall = cca_time_wall_ms();
    post(e, op, EV_NEW);
    return CCA_OK;
}

/*
 * A new reference to the committed document of @id, read back from its file
 * if it was evicted (and cached again when nothing moved meanwhile). Any
 * thread. Returns CCA_OK, CCA_ERR_NOT_FOUND, or CCA_ERR_IO / CCA_ERR_INVALID
 * when the file cannot be read.
 */
static cca_rc doc_ref(struct cca_engine *e, enum cca_store_coll coll, const char *id,
                      json_t **ret, struct cca_error *err)
{
    for (unsigned attempt = 0;; attempt++) {
        size_t stored = 0;
        struct slot *en;
        json_t *hit = NULL;
        json_t *doc = NULL;
        uint64_t gen = 0;
        bool busy = false;
        bool stable;
        cca_rc rc;

        pthread_mutex_lock(&e->lock);
        en = index_find(e, id);
        if (en != NULL && en->coll != coll)
            en = NULL;
        if (en != NULL) {
            if (en->doc != NULL) {
                lru_touch(e, en);
                hit = json_incref(en->doc);
            }
            gen = en->gen;
            busy = en->busy;
        }
        pthread_mutex_unlock(&e->lock);
        if (en == NULL)
            return cca_error_set(err, CCA_ERR_NOT_FOUND, "dialog %s not found", id);
        if (hit != NULL) {
            *ret = hit;
            return CCA_OK;
        }
        rc = cca_store_read(e->store, coll, id, &doc, &stored, err);
        atomic_fetch_add_explicit(&e->metrics.cache_loads, 1, memory_order_relaxed);
        pthread_mutex_lock(&e->lock);
        en = index_find(e, id);
        if (en == NULL) {
            pthread_mutex_unlock(&e->lock);
            json_decref(doc);
            return cca_error_set(err, CCA_ERR_NOT_FOUND, "dialog %s not found", id);
        }
        if (en->doc != NULL) {
            *ret = json_incref(en->doc);
            pthread_mutex_unlock(&e->lock);
            json_decref(doc);
            return CCA_OK;
        }
        /*
         * The read is the committed state only if no operation held the dialog
         * and no commit happened around it (an operation may be writing the
         * file); else try again: a busy dialog soon has its document cached.
         */
        stable = !busy && !en->busy && en->gen == gen;
        if (rc == CCA_OK && stable) {
            en->stored = stored;
            cache_put(e, en, json_incref(doc));
            cache_trim(e);
            pthread_mutex_unlock(&e->lock);
            *ret = doc;
            return CCA_OK;
        }
        pthread_mutex_unlock(&e->lock);
        json_decref(doc);
        if (rc != CCA_OK && stable)
            return rc;
        if (attempt >= 1000)
            return cca_error_set(err, CCA_ERR_UNAVAILABLE, "dialog %s is busy", id);
        sched_yield();
    }
}

cca_rc cca_engine_get_document(struct cca_engine *e, const char *id, char **ret_bytes,
                               size_t *ret_len, struct cca_error *reterr)
{
    struct slot *en;
    json_t *doc = NULL;
    char *bytes;
    size_t len;
    cca_rc rc;

    pthread_mutex_lock(&e->lock);
    en = index_find(e, id);
    if (en != NULL && en->coll == CCA_STORE_DIALOGS && en->bytes != NULL) {
        lru_touch(e, en);
        *ret_bytes = cca_xmalloc(en->len + 1);
        memcpy(*ret_bytes, en->bytes, en->len + 1);
        *ret_len = en->len;
        pthread_mutex_unlock(&e->lock);
        return CCA_OK;
    }
    pthread_mutex_unlock(&e->lock);
    rc = doc_ref(e, CCA_STORE_DIALOGS, id, &doc, reterr);
    if (rc != CCA_OK)
        return rc;
    /* The first read since a change: dump outside the lock, keep it if still current. */
    bytes = cca_dialog_dump(doc, &len);
    pthread_mutex_lock(&e->lock);
    en = index_find(e, id);
    if (en != NULL && en->doc == doc && en->bytes == NULL) {
        en->bytes = cca_xmalloc(len + 1);
        memcpy(en->bytes, bytes, len + 1);
        en->len = len;
    }
    pthread_mutex_unlock(&e->lock);
    json_decref(doc);
    *ret_bytes = bytes;
    *ret_len = len;
    return CCA_OK;
}

cca_rc cca_engine_get_dialog(struct cca_engine *e, const char *id, json_t **ret,
                             struct cca_error *reterr)
{
    return doc_ref(e, CCA_STORE_DIALOGS, id, ret, reterr);
}

cca_rc cca_engine_get_operator(struct cca_engine *e, const char *id, json_t **ret,
                               struct cca_error *reterr)
{
    cca_rc rc = doc_ref(e, CCA_STORE_OPERATORS, id, ret, reterr);

    if (rc == CCA_ERR_NOT_FOUND)
        (void)cca_error_set(reterr, rc, "operator %s not found", id);
    return rc;
}

json_t *cca_engine_list_operators(struct cca_engine *e)
{
    json_t *out = json_array();

    pthread_mutex_lock(&e->lock);
    for (size_t b = 0; b < e->nbuckets; b++) {
        for (struct slot *en = e->buckets[b]; en != NULL; en = en->hnext) {
            if (en->coll == CCA_STORE_OPERATORS && en->doc != NULL)
                (void)json_array_append(out, en->doc);
        }
    }
    pthread_mutex_unlock(&e->lock);
    return out;
}

struct list_item {
    int64_t created_ms;
    char id[37];
};

static int newest_first(const void *a, const void *b)
{
    const struct list_item *x = a;
    const struct list_item *y = b;

    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? 1 : -1;
    return -strcmp(x->id, y->id);
}

/* Cursor "<created_ms>_<dialog_id>": the last item of the previous page. */
static bool parse_cursor(const char *s, int64_t *ret_ms, char ret_id[37])
{
    char *end;
    long long ms;
    char canon[37];

    ms = strtoll(s, &end, 10);
    if (end == s || *end != '_' || ms < 0 || !cca_uuid_canonical(end + 1, canon) ||
        strcmp(canon, end + 1) != 0)
        return false;
    *ret_ms = ms;
    memcpy(ret_id, canon, 37);
    return true;
}

void cca_engine_page_cleanup(struct cca_engine_page *page)
{
    for (size_t i = 0; i < page->n; i++)
        json_decref(page->docs[i]);
    free(page->docs);
    memset(page, 0, sizeof(*page));
}

cca_rc cca_engine_list(struct cca_engine *e, const struct cca_engine_query *q,
                       struct cca_engine_page *ret, struct cca_error *reterr)
{
    struct list_item *items = NULL;
    size_t n = 0;
    size_t start = 0;
    int64_t cursor_ms = 0;
    char cursor_id[37] = "";
    size_t end;

    memset(ret, 0, sizeof(*ret));
    if (q->cursor != NULL && !parse_cursor(q->cursor, &cursor_ms, cursor_id))
        return cca_error_set(reterr, CCA_ERR_INVALID, "cursor is malformed");
    /* Filter on the index alone; only the page's documents are read. */
    pthread_mutex_lock(&e->lock);
    items = cca_xcalloc(e->ncoll[CCA_STORE_DIALOGS] + 1, sizeof(*items));
    for (size_t b = 0; b < e->nbuckets; b++) {
        for (struct slot *en = e->buckets[b]; en != NULL; en = en->hnext) {
            if (en->coll != CCA_STORE_DIALOGS)
                continue;
            if (q->status >= 0 && (int)en->status != q->status)
                continue;
            if (q->agent >= 0 && (int)en->agent != q->agent)
                continue;
            if (q->customer_id != NULL &&
                (en->rec.customer_id == NULL ||
                 strcmp(en->rec.customer_id, q->customer_id) != 0))
                continue;
            items[n].created_ms = en->created_ms;
            memcpy(items[n].id, en->id, 37);
            n++;
        }
    }
    pthread_mutex_unlock(&e->lock);
    qsort(items, n, sizeof(*items), newest_first);
    if (q->cursor != NULL) {
        struct list_item key = {.created_ms = cursor_ms};

        memcpy(key.id, cursor_id, 37);
        while (start < n && newest_first(&items[start], &key) <= 0)
            start++;
    }
    end = start + q->limit < n ? start + q->limit : n;
    ret->docs = cca_xcalloc(end - start + 1, sizeof(*ret->docs));
    for (size_t i = start; i < end; i++) {
        struct cca_error err = {0};
        json_t *doc = NULL;

        /* Deleted since the scan: skipped; unreadable: skipped (logged by the load). */
        if (doc_ref(e, CCA_STORE_DIALOGS, items[i].id, &doc, &err) == CCA_OK)
            ret->docs[ret->n++] = doc;
    }
    if (end < n && end > start)
        (void)snprintf(ret->next_cursor, sizeof(ret->next_cursor), "%lld_%s",
                       (long long)items[end - 1].created_ms, items[end - 1].id);
    free(items);
    return CCA_OK;
}

/* ---- support records (record.h) ------------------------------------------------- */

/*
 * Call @visit on every slot of @coll that matches @f (dialogs; NULL: all):
 * only the customer's dialogs when @f names a customer. Caller holds the lock.
 */
static void each_match(struct cca_engine *e, enum cca_store_coll coll,
                       const struct cca_record_filter *f,
                       void (*visit)(void *ctx, struct slot *en), void *ctx)
{
    if (coll == CCA_STORE_DIALOGS && f != NULL && f->customer_id != NULL) {
        struct customer_ix *c = customer_ix_find(e, f->customer_id);

        for (size_t i = 0; c != NULL && i < c->n; i++) {
            if (cca_record_matches(&c->v[i]->rec, f))
                visit(ctx, c->v[i]);
        }
        return;
    }
    for (size_t b = 0; b < e->nbuckets; b++) {
        for (struct slot *en = e->buckets[b]; en != NULL; en = en->hnext) {
            if (en->coll == coll && (coll != CCA_STORE_DIALOGS || f == NULL ||
                                     cca_record_matches(&en->rec, f)))
                visit(ctx, en);
        }
    }
}

struct selection {
    struct list_item *items;
    size_t n;
};

static void select_one(void *ctx, struct slot *en)
{
    struct selection *sel = ctx;

    sel->items[sel->n].created_ms = en->created_ms;
    memcpy(sel->items[sel->n].id, en->id, 37);
    sel->n++;
}

char (*cca_engine_select(struct cca_engine *e, enum cca_store_coll coll,
                         const struct cca_record_filter *f, size_t *ret_n))[37]
{
    struct selection sel = {0};
    char(*ids)[37] = NULL;
    size_t n;

    pthread_mutex_lock(&e->lock);
    sel.items = cca_xcalloc(e->ncoll[coll] + 1, sizeof(*sel.items));
    each_match(e, coll, f, select_one, &sel);
    pthread_mutex_unlock(&e->lock);
    n = sel.n;
    /* Oldest first: the newest-first order of GET /dialogues, reversed. */
    qsort(sel.items, n, sizeof(*sel.items), newest_first);
    if (n > 0) {
        ids = cca_xmalloc(n * sizeof(*ids));
        for (size_t i = 0; i < n; i++)
            memcpy(ids[i], sel.items[n - 1 - i].id, 37);
    }
    free(sel.items);
    *ret_n = n;
    return ids;
}

cca_rc cca_engine_get_record(struct cca_engine *e, const char *id, struct cca_record *ret)
{
    struct slot *en;
    cca_rc rc = CCA_ERR_NOT_FOUND;

    pthread_mutex_lock(&e->lock);
    en = index_find(e, id);
    if (en != NULL && en->coll == CCA_STORE_DIALOGS) {
        cca_record_copy(&en->rec, ret);
        rc = CCA_OK;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

struct fold {
    void (*fn)(void *ctx, const struct cca_record *r);
    void *ctx;
};

static void fold_one(void *ctx, struct slot *en)
{
    struct fold *fo = ctx;

    fo->fn(fo->ctx, &en->rec);
}

void cca_engine_fold_records(struct cca_engine *e, const struct cca_record_filter *f,
                             void (*fn)(void *ctx, const struct cca_record *r), void *ctx)
{
    struct fold fo = {.fn = fn, .ctx = ctx};

    pthread_mutex_lock(&e->lock);
    each_match(e, CCA_STORE_DIALOGS, f, fold_one, &fo);
    pthread_mutex_unlock(&e->lock);
}

cca_rc cca_engine_read(struct cca_engine *e, enum cca_store_coll coll, const char *id,
                       json_t **ret, struct cca_error *reterr)
{
    struct slot *en;
    json_t *hit = NULL;
    bool known;

    pthread_mutex_lock(&e->lock);
    en = index_find(e, id);
    known = en != NULL && en->coll == coll;
    if (known && en->doc != NULL)
        hit = json_incref(en->doc); /* not touched: a bulk read is no sign of use */
    pthread_mutex_unlock(&e->lock);
    if (!known)
        return cca_error_set(reterr, CCA_ERR_NOT_FOUND, "%s %s not found",
                             cca_store_coll_name(coll), id);
    if (hit != NULL) {
        *ret = hit;
        return CCA_OK;
    }
    /* The store's newest committed version: durable, so safe to show. */
    atomic_fetch_add_explicit(&e->metrics.cache_loads, 1, memory_order_relaxed);
    return cca_store_read(e->store, coll, id, ret, NULL, reterr);
}

const char *cca_engine_reply_name(enum cca_engine_reply r)
{
    static const char *const names[CCA_ENGINE_REPLY__COUNT] = {"llm", "offline",
                                                               "degraded"};

    return (unsigned)r < CCA_ENGINE_REPLY__COUNT ? names[r] : "unknown";
}

const struct cca_engine_metrics *cca_engine_get_metrics(const struct cca_engine *e)
{
    return &e->metrics;
}

void cca_engine_get_stats(struct cca_engine *e, struct cca_engine_stats *ret)
{
    pthread_mutex_lock(&e->lock);
    memcpy(ret->dialogs, e->by_status, sizeof(ret->dialogs));
    ret->total = e->ncoll[CCA_STORE_DIALOGS];
    ret->in_flight = e->in_flight;
    ret->cache_bytes = e->cache_bytes;
    ret->cached = e->cached;
    pthread_mutex_unlock(&e->lock);
}

void cca_engine_detach_llm(struct cca_engine *e)
{
    pthread_mutex_lock(&e->lock);
    /* Shutting down: the timers make no new decisions (no operation after the drain). */
    atomic_store(&e->quiet, true);
    if (e->started && e->llm_mode) {
        e->detach_llm = true;
        pthread_cond_signal(&e->cond);
        while (e->detach_llm)
            pthread_cond_wait(&e->idle, &e->lock);
    }
    pthread_mutex_unlock(&e->lock);
}

bool cca_engine_drain(struct cca_engine *e, int64_t deadline_ms)
{
    bool drained;

    pthread_mutex_lock(&e->lock);
    while (e->in_flight > 0) {
        int64_t left = deadline_ms - cca_time_mono_ms();
        struct timespec ts;

        if (left <= 0)
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        (void)pthread_cond_timedwait(&e->idle, &e->lock, &ts);
    }
    drained = e->in_flight == 0;
    pthread_mutex_unlock(&e->lock);
    return drained;
}
