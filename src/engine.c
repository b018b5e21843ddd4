/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/engine.h"
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
 * One dialog in the index. Its parsed document is cached: @doc is NULL when
 * the dialog was evicted to keep the cache within DIALOG_CACHE_MB (by file
 * size), and is read back from its file on use. A busy dialog is never
 * evicted, so the engine thread uses @doc freely while it holds the dialog.
 */
struct slot {
    struct slot *hnext;
    struct slot *lru_prev; /* slots with @doc, most recently used first */
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
    char *customer_id;
    size_t stored; /* bytes it takes in the store (cca_store_load_fn, _done_fn) */
    /* Engine thread only. */
    struct op *wait_head; /* operations waiting for the dialog */
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
    struct cca_turn t;         /* when @turn */
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
    bool llm_mode;       /* an LLM was configured (turn metrics) */
    bool detach_llm;     /* under @lock: drop @llm at the next wake-up */
    cca_engine_skip_fn skip;
    void *skip_ctx;

    pthread_mutex_t lock; /* index, committed state, cache, queue, counters */
    pthread_cond_t cond;  /* queue not empty */
    pthread_cond_t idle;  /* in_flight dropped to 0 */
    struct slot **buckets;
    size_t nbuckets;
    size_t count;
    struct slot *lru_head; /* the document cache, most recently used first */
    struct slot *lru_tail;
    size_t cache_bytes;
    size_t cache_budget;
    size_t cached; /* slots with a document */
    size_t by_status[CCA_DIALOG_STATUS__COUNT];
    struct op *head;
    struct op *tail;
    size_t in_flight;
    bool stop;
    bool started;
    pthread_t thread;
    void *create_keys; /* tsearch(3) root of struct create_key, engine thread only */
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
    e->by_status[en->status]++;
}

static void index_remove(struct cca_engine *e, struct slot *en)
{
    struct slot **pp = &e->buckets[cca_hash_str(en->id) & (e->nbuckets - 1)];

    while (*pp != NULL && *pp != en)
        pp = &(*pp)->hnext;
    if (*pp == en) {
        *pp = en->hnext;
        e->count--;
        e->by_status[en->status]--;
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
    e->cached--;
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

        if (!en->busy)
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
    e->cached++;
    e->cache_bytes += cost;
    lru_touch(e, en);
}

static void entry_free(struct slot *en)
{
    if (en == NULL)
        return;
    json_decref(en->doc);
    free(en->bytes);
    free(en->customer_id);
    free(en);
}

/*
 * Install a committed document (steals @doc and @bytes: its cca_dialog_dump,
 * or NULL to dump it on the first read), after en->stored was updated.
 * Caller holds the lock.
 */
static void entry_commit(struct cca_engine *e, struct slot *en, json_t *doc, char *bytes,
                         size_t len, bool indexed)
{
    const char *cid = cca_dialog_get_str(doc, "customer_id");

    if (indexed)
        e->by_status[en->status]--;
    cache_put(e, en, doc);
    en->bytes = bytes;
    en->len = len;
    en->gen++;
    en->status = cca_dialog_get_status(doc);
    en->agent = cca_dialog_get_agent(doc);
    en->created_ms = cca_dialog_get_time(doc, "created_at");
    en->updated_ms = cca_dialog_get_time(doc, "updated_at");
    if (en->customer_id == NULL && cid != NULL)
        en->customer_id = cca_xstrdup(cid);
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

static void request_cleanup(struct cca_engine_request *r)
{
    cca_dialog_create_cleanup(&r->create);
    free(r->text);
    free(r->reason);
    free(r->idempotency_key);
    r->text = NULL;
    r->reason = NULL;
    r->idempotency_key = NULL;
}

static void op_free(struct op *op)
{
    request_cleanup(&op->req);
    cca_turn_cleanup(&op->t);
    cca_llm_result_cleanup(&op->llm);
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
        if (next->req.op == CCA_OP_CREATE) {
            /* A repeated create whose first one left no dialog: start over. */
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
    return op->req.op == CCA_OP_CREATE ? "create" : "message";
}

static void persist(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;

    if (op->req.op == CCA_OP_DELETE) {
        cca_store_remove(e->store, CCA_STORE_DIALOGS, en->id, on_persisted, op);
        return;
    }
    if (op->req.idempotency_key != NULL &&
        (op->req.op == CCA_OP_CREATE || op->req.op == CCA_OP_MESSAGE)) {
        json_t *doc = cca_dialog_with_idempotency(
            op->new_doc, op->req.idempotency_key, idempotent_op_name(op),
            op->req.request_hash, op->result, cca_time_wall_ms(),
            (int64_t)e->cfg->idempotency_ttl_s * 1000,
            e->cfg->idempotency_max_per_dialog);

        json_decref(op->new_doc);
        op->new_doc = doc;
    }
    cca_store_commit(e->store, CCA_STORE_DIALOGS, en->id, op->new_entry ? NULL : en->doc,
                     op->new_doc, on_persisted, op);
}

/* The write finished: make the change visible (or drop it), answer, move on. */
static void committed(struct cca_engine *e, struct op *op)
{
    struct slot *en = op->entry;
    bool gone = false;

    if (op->rc != CCA_OK) {
        cca_rc rc = op->rc;
        bool created = op->new_entry;

        /* The store did not apply it (store.h): memory keeps the committed version. */
        op->entry = NULL;
        finish(e, op, rc); /* frees @op */
        /* A failed create leaves no dialog; repeats of its key waited on it. */
        release(e, en, created);
        return;
    }
    pthread_mutex_lock(&e->lock);
    if (op->req.op == CCA_OP_DELETE) {
        index_remove(e, en);
        gone = true;
    } else {
        /* A whole new document, or one more change of it. */
        en->stored = op->new_entry ? op->stored : en->stored + op->stored;
        entry_commit(e, en, op->new_doc, NULL, 0, !op->new_entry);
        op->new_doc = NULL;
        if (op->new_entry)
            index_insert(e, en);
    }
    pthread_mutex_unlock(&e->lock);
    op->entry = NULL;
    op->count = 1;
    finish(e, op, CCA_OK);
    release(e, en, gone);
}

/* ---- turns ------------------------------------------------------------------------ */

/* The outcome of @op for its view; @doc the dialog after it (borrowed). */
static void outcome_of(struct cca_engine *e, const struct op *op, json_t *doc,
                       struct cca_engine_outcome *ret)
{
    memset(ret, 0, sizeof(*ret));
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

/* The dialog the turn builds on: the committed one, or the new one of a create. */
static json_t *base_doc(struct op *op)
{
    return op->new_entry ? op->new_doc : op->entry->doc;
}

/* The turn is done: its messages into a new document, the result, the commit. */
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
    doc = cca_dialog_with_turn(base_doc(op), &dt);
    json_decref(op->new_doc);
    op->new_doc = doc;
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
    if (cca_turn_resume(&op->t, &env, res, op->new_entry ? NULL : op->entry->doc,
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
                       op->new_entry ? NULL : op->entry->doc, deadline, on_llm_done,
                       op) == CCA_TURN_DONE)
        finalize_turn(e, op);
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

            if (closed == closing || en->updated_ms >= limit)
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

    if (rec == NULL && op->req.op == CCA_OP_MESSAGE)
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
    if (cca_store_read(e->store, CCA_STORE_DIALOGS, en->id, &doc, &stored, err) !=
        CCA_OK) {
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
    st = en->status; /* a DELETE runs without the document (see start_op) */
    switch (op->req.op) {
        case CCA_OP_MESSAGE:
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
            start_turn(e, op);
            return;
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
            op->new_doc = cca_dialog_closed(en->doc, op->req.reason, cca_time_wall_ms());
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
    release(e, en, false);
}

/* A new dialog for a CREATE; its Idempotency-Key, if any, now leads to it. */
static void start_create(struct cca_engine *e, struct op *op)
{
    struct slot *en = cca_xcalloc(1, sizeof(*en));

    cca_uuid_new(en->id);
    en->busy = true;
    op->entry = en;
    op->new_entry = true;
    op->new_doc = cca_dialog_new_doc(en->id, &op->req.create, op->received_wall);
    if (op->req.idempotency_key != NULL)
        create_key_add(e, en, op->req.idempotency_key);
    run_op(e, op);
}

/* A newly submitted op: find its dialog and run it, or queue it behind the holder. */
static void start_op(struct cca_engine *e, struct op *op)
{
    struct slot *en = NULL;

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
            en = index_find(e, op->req.id);
            pthread_mutex_unlock(&e->lock);
            break;
    }
    if (en == NULL) {
        (void)cca_error_set(&op->err, CCA_ERR_NOT_FOUND, "dialog %s not found",
                            op->req.id);
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

    for (;;) {
        struct op *batch;

        pthread_mutex_lock(&e->lock);
        while (e->head == NULL && !e->stop && !e->detach_llm)
            pthread_cond_wait(&e->cond, &e->lock);
        if (e->detach_llm) {
            /* From here on no step of a turn touches the LLM client. */
            e->llm = NULL;
            e->detach_llm = false;
            pthread_cond_broadcast(&e->idle);
        }
        batch = e->head;
        e->head = e->tail = NULL;
        pthread_mutex_unlock(&e->lock);
        if (batch == NULL)
            break;
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

    if (coll != CCA_STORE_DIALOGS) {
        json_decref(doc);
        return;
    }
    en = cca_xcalloc(1, sizeof(*en));
    memcpy(en->id, id, sizeof(en->id));
    en->stored = stored;
    json_incref(doc); /* read below, whether or not the cache keeps it */
    entry_commit(e, en, doc, NULL, 0, false);
    index_insert(e, en);
    /* The create's Idempotency-Key, if it is still live, leads to this dialog. */
    key = cca_dialog_create_key(doc, cca_time_wall_ms(),
                                (int64_t)e->cfg->idempotency_ttl_s * 1000);
    if (key != NULL && create_key_find(e, key) == NULL)
        create_key_add(e, en, key);
    json_decref(doc);
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
    e->nbuckets = 1024;
    cca_hist_init(&e->metrics.turn_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    cca_hist_init(&e->metrics.overhead_seconds, cca_hist_seconds_bounds,
                  cca_hist_seconds_n);
    e->buckets = cca_xcalloc(e->nbuckets, sizeof(*e->buckets));
    e->cache_budget = (size_t)e->cfg->dialog_cache_mb << 20;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    pthread_cond_init(&e->idle, NULL);
    rc = cca_store_load(e->store, load_one, skip_one, e, reterr);
    if (rc != CCA_OK)
        goto out;
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
    tdestroy(e->create_keys, create_key_free);
    pthread_mutex_destroy(&e->lock);
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
        request_cleanup(req);
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
static cca_rc doc_ref(struct cca_engine *e, const char *id, json_t **ret,
                      struct cca_error *err)
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
        rc = cca_store_read(e->store, CCA_STORE_DIALOGS, id, &doc, &stored, err);
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
    if (en != NULL && en->bytes != NULL) {
        lru_touch(e, en);
        *ret_bytes = cca_xmalloc(en->len + 1);
        memcpy(*ret_bytes, en->bytes, en->len + 1);
        *ret_len = en->len;
        pthread_mutex_unlock(&e->lock);
        return CCA_OK;
    }
    pthread_mutex_unlock(&e->lock);
    rc = doc_ref(e, id, &doc, reterr);
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
    return doc_ref(e, id, ret, reterr);
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
    items = cca_xcalloc(e->count + 1, sizeof(*items));
    for (size_t b = 0; b < e->nbuckets; b++) {
        for (struct slot *en = e->buckets[b]; en != NULL; en = en->hnext) {
            if (q->status >= 0 && (int)en->status != q->status)
                continue;
            if (q->agent >= 0 && (int)en->agent != q->agent)
                continue;
            if (q->customer_id != NULL &&
                (en->customer_id == NULL || strcmp(en->customer_id, q->customer_id) != 0))
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
        if (doc_ref(e, items[i].id, &doc, &err) == CCA_OK)
            ret->docs[ret->n++] = doc;
    }
    if (end < n && end > start)
        (void)snprintf(ret->next_cursor, sizeof(ret->next_cursor), "%lld_%s",
                       (long long)items[end - 1].created_ms, items[end - 1].id);
    free(items);
    return CCA_OK;
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
    ret->total = e->count;
    ret->in_flight = e->in_flight;
    ret->cache_bytes = e->cache_bytes;
    ret->cached = e->cached;
    pthread_mutex_unlock(&e->lock);
}

void cca_engine_detach_llm(struct cca_engine *e)
{
    pthread_mutex_lock(&e->lock);
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
