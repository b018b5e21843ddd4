/* SPDX-License-Identifier: MIT */
/*
 * The desk (include/cca/desk.h): operators, the queue and the dialogs humans
 * own, under one mutex. Operators are few (hundreds): a flat array, scanned.
 * Human-owned dialogs are many (QUEUE_MAX + seats): a hash table by id, the
 * queue a doubly linked list kept in cca_queue_compare order.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cca/desk.h"
#include "cca/mem.h"
#include "cca/text.h"

struct desk_operator {
    char id[37];
    char name[128];
    char token_hex[65];
    enum cca_operator_status status;
    unsigned max_dialogs;
    unsigned open;
    uint32_t languages;
    uint32_t skills;
    int64_t last_seen_ms;
    int64_t last_closed_ms;
    unsigned long csat[5];
};

struct desk_dialog {
    struct desk_dialog *hnext;
    struct desk_dialog *qprev; /* the queue, when owner is the queue */
    struct desk_dialog *qnext;
    char id[37];
    enum cca_owner owner;     /* QUEUE or OPERATOR */
    struct desk_operator *op; /* when OPERATOR; cleared if the operator is removed */
    struct cca_desk_need need;
    struct cca_queue_key key;
    int64_t assigned_ms;
    bool replied;
};

struct cca_desk {
    pthread_mutex_t lock;
    struct cca_desk_params p;
    struct desk_operator **ops;
    size_t nops;
    size_t capops;
    struct desk_dialog **buckets;
    size_t nbuckets;
    size_t ndialogs;
    struct desk_dialog *qhead;
    struct desk_dialog *qtail;
    size_t queued;
    uint64_t seq;
    uint64_t rng;
    struct cca_assign_mean handle;
};

void cca_desk_moves_cleanup(struct cca_desk_moves *m)
{
    free(m->v);
    memset(m, 0, sizeof(*m));
}

static struct cca_desk_move *move_add(struct cca_desk_moves *m)
{
    struct cca_desk_move *mv;

    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->v = cca_xrealloc(m->v, m->cap * sizeof(*m->v));
    }
    mv = &m->v[m->n++];
    memset(mv, 0, sizeof(*mv));
    mv->eta_s = -1;
    return mv;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    (void)snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* The record's operator_id (validated records have one). */
static const char *doc_id(json_t *doc)
{
    return json_string_value(json_object_get(doc, "operator_id"));
}

struct cca_desk *cca_desk_new(const struct cca_desk_params *params)
{
    struct cca_desk *d = cca_xcalloc(1, sizeof(*d));

    pthread_mutex_init(&d->lock, NULL);
    d->p = *params;
    d->rng = params->seed ? params->seed : 0x9e3779b97f4a7c15ULL;
    d->nbuckets = 1024;
    d->buckets = cca_xcalloc(d->nbuckets, sizeof(*d->buckets));
    return d;
}

void cca_desk_free(struct cca_desk *d)
{
    if (d == NULL)
        return;
    for (size_t b = 0; b < d->nbuckets; b++) {
        struct desk_dialog *it = d->buckets[b];

        while (it != NULL) {
            struct desk_dialog *next = it->hnext;

            free(it);
            it = next;
        }
    }
    for (size_t i = 0; i < d->nops; i++) {
        OPENSSL_cleanse(d->ops[i]->token_hex, sizeof(d->ops[i]->token_hex));
        free(d->ops[i]);
    }
    free(d->ops);
    free(d->buckets);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

/* ---- lookups (lock held) ----------------------------------------------------- */

static struct desk_operator *op_find(struct cca_desk *d, const char *id)
{
    for (size_t i = 0; id != NULL && i < d->nops; i++) {
        if (strcmp(d->ops[i]->id, id) == 0)
            return d->ops[i];
    }
    return NULL;
}

static struct desk_dialog *dlg_find(struct cca_desk *d, const char *id)
{
    struct desk_dialog *it = d->buckets[cca_hash_str(id) & (d->nbuckets - 1)];

    while (it != NULL && strcmp(it->id, id) != 0)
        it = it->hnext;
    return it;
}

static void dlg_insert(struct cca_desk *d, struct desk_dialog *x)
{
    size_t b;

    if (d->ndialogs + 1 > d->nbuckets) {
        size_t n = d->nbuckets * 2;
        struct desk_dialog **nb = cca_xcalloc(n, sizeof(*nb));

        for (size_t i = 0; i < d->nbuckets; i++) {
            struct desk_dialog *it = d->buckets[i];

            while (it != NULL) {
                struct desk_dialog *next = it->hnext;
                size_t j = cca_hash_str(it->id) & (n - 1);

                it->hnext = nb[j];
                nb[j] = it;
                it = next;
            }
        }
        free(d->buckets);
        d->buckets = nb;
        d->nbuckets = n;
    }
    b = cca_hash_str(x->id) & (d->nbuckets - 1);
    x->hnext = d->buckets[b];
    d->buckets[b] = x;
    d->ndialogs++;
}

static void dlg_remove(struct cca_desk *d, struct desk_dialog *x)
{
    struct desk_dialog **pp = &d->buckets[cca_hash_str(x->id) & (d->nbuckets - 1)];

    while (*pp != NULL && *pp != x)
        pp = &(*pp)->hnext;
    if (*pp == x) {
        *pp = x->hnext;
        d->ndialogs--;
    }
    free(x);
}

/* ---- the queue (lock held) ----------------------------------------------------- */

static void queue_unlink(struct cca_desk *d, struct desk_dialog *x)
{
    if (x->qprev != NULL)
        x->qprev->qnext = x->qnext;
    else
        d->qhead = x->qnext;
    if (x->qnext != NULL)
        x->qnext->qprev = x->qprev;
    else
        d->qtail = x->qprev;
    x->qprev = x->qnext = NULL;
    d->queued--;
}

/*
 * Insert @x in cca_queue_compare order. New arrivals belong near the tail and
 * requeued ones near the head of their priority, so search from that end.
 */
static void queue_insert(struct cca_desk *d, struct desk_dialog *x)
{
    struct desk_dialog *after = NULL;

    if (!x->key.requeued) {
        after = d->qtail;
        while (after != NULL && cca_queue_compare(&x->key, &after->key) < 0)
            after = after->qprev;
    } else {
        struct desk_dialog *before = d->qhead;

        while (before != NULL && cca_queue_compare(&before->key, &x->key) < 0)
            before = before->qnext;
        after = before != NULL ? before->qprev : d->qtail;
    }
    x->qprev = after;
    x->qnext = after != NULL ? after->qnext : d->qhead;
    if (x->qnext != NULL)
        x->qnext->qprev = x;
    else
        d->qtail = x;
    if (after != NULL)
        after->qnext = x;
    else
        d->qhead = x;
    d->queued++;
}

/*
 * 1-based position of queued @x: walked from both ends at once, so it costs
 * the distance to the nearer end (a new arrival sits near the tail, the next
 * to be served near the head), not the queue's length.
 */
static size_t queue_position(struct cca_desk *d, const struct desk_dialog *x)
{
    const struct desk_dialog *front = d->qhead;
    const struct desk_dialog *back = d->qtail;
    size_t ahead = 0;
    size_t behind = 0;

    while (front != NULL && back != NULL) {
        if (front == x)
            return ahead + 1;
        if (back == x)
            return d->queued - behind;
        front = front->qnext;
        back = back->qprev;
        ahead++;
        behind++;
    }
    return d->queued; /* not reached for a queued @x */
}

/* Seats of every operator on shift (not offline): the estimate's service rate. */
static unsigned seats_on_shift(struct cca_desk *d)
{
    unsigned n = 0;

    for (size_t i = 0; i < d->nops; i++) {
        if (d->ops[i]->status != CCA_OPERATOR_OFFLINE)
            n += d->ops[i]->max_dialogs;
    }
    return n;
}

static double eta_of(struct cca_desk *d, size_t position)
{
    return cca_assign_eta_s(position, seats_on_shift(d), d->handle.mean,
                            d->p.default_handle_s);
}

/* ---- decisions (lock held) --------------------------------------------------- */

static struct cca_assign_candidate candidate_of(const struct desk_operator *o)
{
    return (struct cca_assign_candidate){.status = o->status,
                                         .max_dialogs = o->max_dialogs,
                                         .open_dialogs = o->open,
                                         .languages = o->languages,
                                         .skills = o->skills,
                                         .last_seen_ms = o->last_seen_ms,
                                         .last_closed_ms = o->last_closed_ms};
}

/* The best eligible operator for @need (cca_assign_pick), or NULL. */
static struct desk_operator *pick(struct cca_desk *d, const struct cca_desk_need *need,
                                  int64_t now_ms)
{
    struct cca_assign_candidate *c = cca_xcalloc(d->nops + 1, sizeof(*c));
    struct cca_assign_need n = {.language = need->language, .skill = need->skill};
    long i;

    for (size_t k = 0; k < d->nops; k++)
        c[k] = candidate_of(d->ops[k]);
    i = cca_assign_pick(c, d->nops, &n, now_ms, &d->rng);
    free(c);
    return i >= 0 ? d->ops[i] : NULL;
}

static bool any_free_seat(struct cca_desk *d)
{
    for (size_t i = 0; i < d->nops; i++) {
        const struct desk_operator *o = d->ops[i];

        if (o->status == CCA_OPERATOR_AVAILABLE && o->open < o->max_dialogs)
            return true;
    }
    return false;
}

static void fill_move(struct cca_desk *d, struct cca_desk_move *mv,
                      const struct desk_dialog *x, enum cca_owner_event ev,
                      enum cca_owner from, const char *reason, const char *actor,
                      int64_t now_ms)
{
    copy_str(mv->dialog_id, sizeof(mv->dialog_id), x->id);
    mv->event = ev;
    mv->from = from;
    (void)cca_owner_next(from, ev, &mv->to);
    mv->reason = reason;
    copy_str(mv->actor, sizeof(mv->actor), actor);
    mv->at_ms = now_ms;
    mv->queue_length = d->queued;
    mv->queue_seq = x->key.seq;
    mv->waiting_since_ms = x->key.since_ms;
}

/* @x (queued, or new: owner AGENT) goes to operator @o. */
static void assign_to(struct cca_desk *d, struct desk_dialog *x, struct desk_operator *o,
                      enum cca_owner from, const char *reason, const char *actor,
                      int64_t now_ms, struct cca_desk_moves *moves)
{
    struct cca_desk_move *mv = move_add(moves);

    if (x->owner == CCA_OWNER_QUEUE && from == CCA_OWNER_QUEUE)
        queue_unlink(d, x);
    x->owner = CCA_OWNER_OPERATOR;
    x->op = o;
    x->assigned_ms = now_ms;
    x->replied = false;
    o->open++;
    fill_move(d, mv, x, CCA_OWNER_EV_ASSIGN, from, reason, actor, now_ms);
    copy_str(mv->operator_id, sizeof(mv->operator_id), o->id);
    copy_str(mv->operator_name, sizeof(mv->operator_name), o->name);
}

/*
 * The backlog sweep: queued dialogs, in order, to eligible operators with a
 * free seat, until no available operator has one (Chatwoot #10685).
 */
static void sweep(struct cca_desk *d, int64_t now_ms, struct cca_desk_moves *moves)
{
    struct desk_dialog *x = d->qhead;

    while (x != NULL && any_free_seat(d)) {
        struct desk_dialog *next = x->qnext;
        struct desk_operator *o = pick(d, &x->need, now_ms);

        if (o != NULL)
            assign_to(d, x, o, CCA_OWNER_QUEUE, "backlog", "system", now_ms, moves);
        x = next;
    }
}

/* @x, owned by an operator, back to the head of its priority in the queue. */
static void requeue(struct cca_desk *d, struct desk_dialog *x, const char *reason,
                    const char *actor, int64_t now_ms, struct cca_desk_moves *moves)
{
    struct cca_desk_move *mv = move_add(moves);
    struct desk_operator *o = x->op;

    fill_move(d, mv, x, CCA_OWNER_EV_REQUEUE, CCA_OWNER_OPERATOR, reason, actor, now_ms);
    if (o != NULL) {
        copy_str(mv->prev_operator_id, sizeof(mv->prev_operator_id), o->id);
        o->open--;
    }
    x->owner = CCA_OWNER_QUEUE;
    x->op = NULL;
    x->key.requeued = true;
    queue_insert(d, x);
    mv->queue_length = d->queued;
    mv->requeued = true;
    mv->position = queue_position(d, x);
    mv->eta_s = eta_of(d, mv->position);
}

/* Every dialog of @o back to the queue (they left or were revoked). */
static void requeue_all_of(struct cca_desk *d, struct desk_operator *o,
                           const char *reason, const char *actor, int64_t now_ms,
                           struct cca_desk_moves *moves)
{
    for (size_t b = 0; b < d->nbuckets && o->open > 0; b++) {
        for (struct desk_dialog *x = d->buckets[b]; x != NULL; x = x->hnext) {
            if (x->owner == CCA_OWNER_OPERATOR && x->op == o)
                requeue(d, x, reason, actor, now_ms, moves);
        }
    }
}

/* ---- start-up -----------------------------------------------------------------------
 */

static void op_from_doc(struct desk_operator *o, json_t *doc)
{
    copy_str(o->id, sizeof(o->id), doc_id(doc));
    copy_str(o->name, sizeof(o->name), cca_operator_get_name(doc));
    copy_str(o->token_hex, sizeof(o->token_hex), cca_operator_get_token_hash(doc));
    o->status = cca_operator_get_status(doc);
    o->max_dialogs = cca_operator_get_max(doc);
    o->languages = cca_operator_get_langs(doc);
    o->skills = cca_operator_get_skills(doc);
    if (o->last_seen_ms == 0)
        o->last_seen_ms = cca_operator_get_time(doc, "last_seen_at");
    if (o->last_closed_ms == 0)
        o->last_closed_ms = cca_operator_get_time(doc, "last_dialog_closed_at");
}

static struct desk_operator *op_add(struct cca_desk *d, json_t *doc)
{
    struct desk_operator *o = cca_xcalloc(1, sizeof(*o));

    op_from_doc(o, doc);
    if (d->nops == d->capops) {
        d->capops = d->capops ? d->capops * 2 : 16;
        d->ops = cca_xrealloc(d->ops, d->capops * sizeof(*d->ops));
    }
    d->ops[d->nops++] = o;
    return o;
}

void cca_desk_load_operator(struct cca_desk *d, json_t *doc)
{
    pthread_mutex_lock(&d->lock);
    if (op_find(d, doc_id(doc)) == NULL)
        (void)op_add(d, doc);
    pthread_mutex_unlock(&d->lock);
}

void cca_desk_load_dialog(struct cca_desk *d, const char *dialog_id,
                          const struct cca_desk_need *need, const char *owner_id,
                          bool requeued, int64_t since_ms, uint64_t seq,
                          int64_t assigned_ms, bool replied, struct cca_desk_moves *moves)
{
    struct desk_dialog *x;
    struct desk_operator *o;

    pthread_mutex_lock(&d->lock);
    if (dlg_find(d, dialog_id) != NULL)
        goto out;
    x = cca_xcalloc(1, sizeof(*x));
    copy_str(x->id, sizeof(x->id), dialog_id);
    x->need = *need;
    if (seq > d->seq)
        d->seq = seq; /* new arrivals continue after the recorded ones */
    x->key = (struct cca_queue_key){.priority = need->priority,
                                    .requeued = requeued,
                                    .since_ms = since_ms,
                                    .seq = seq > 0 ? seq : ++d->seq};
    dlg_insert(d, x);
    o = owner_id != NULL ? op_find(d, owner_id) : NULL;
    if (owner_id == NULL) {
        x->owner = CCA_OWNER_QUEUE;
        queue_insert(d, x);
        goto out;
    }
    x->owner = CCA_OWNER_OPERATOR;
    x->op = o;
    x->assigned_ms = assigned_ms;
    x->replied = replied;
    if (o != NULL && o->status != CCA_OPERATOR_OFFLINE && o->open < o->max_dialogs) {
        o->open++;
        goto out;
    }
    x->op = NULL;
    requeue(d, x, o == NULL ? "operator_revoked" : "operator_offline", "system",
            cca_time_wall_ms(), moves);
    copy_str(moves->v[moves->n - 1].prev_operator_id,
             sizeof(moves->v[moves->n - 1].prev_operator_id), owner_id);
out:
    pthread_mutex_unlock(&d->lock);
}

void cca_desk_start(struct cca_desk *d, int64_t now_ms, struct cca_desk_moves *moves)
{
    pthread_mutex_lock(&d->lock);
    sweep(d, now_ms, moves);
    pthread_mutex_unlock(&d->lock);
}

/* ---- operators ------------------------------------------------------------------------
 */

cca_rc cca_desk_add_operator(struct cca_desk *d, json_t *doc, int64_t now_ms,
                             struct cca_desk_moves *moves)
{
    cca_rc rc = CCA_OK;

    pthread_mutex_lock(&d->lock);
    if (op_find(d, doc_id(doc)) != NULL) {
        rc = CCA_ERR_CONFLICT;
    } else {
        op_add(d, doc)->last_seen_ms = now_ms;
        sweep(d, now_ms, moves);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

cca_rc cca_desk_update_operator(struct cca_desk *d, json_t *doc, const char *actor,
                                int64_t now_ms, struct cca_desk_moves *moves)
{
    struct desk_operator *o;
    enum cca_operator_status was;

    pthread_mutex_lock(&d->lock);
    o = op_find(d, doc_id(doc));
    if (o == NULL) {
        pthread_mutex_unlock(&d->lock);
        return CCA_ERR_NOT_FOUND;
    }
    was = o->status;
    op_from_doc(o, doc);
    if (o->status == CCA_OPERATOR_OFFLINE && was != CCA_OPERATOR_OFFLINE)
        requeue_all_of(d, o, "operator_offline", actor, now_ms, moves);
    sweep(d, now_ms, moves);
    pthread_mutex_unlock(&d->lock);
    return CCA_OK;
}

cca_rc cca_desk_remove_operator(struct cca_desk *d, const char *operator_id,
                                const char *actor, int64_t now_ms,
                                struct cca_desk_moves *moves)
{
    struct desk_operator *o;
    size_t i;

    pthread_mutex_lock(&d->lock);
    o = op_find(d, operator_id);
    if (o == NULL) {
        pthread_mutex_unlock(&d->lock);
        return CCA_ERR_NOT_FOUND;
    }
    requeue_all_of(d, o, "operator_revoked", actor, now_ms, moves);
    for (i = 0; d->ops[i] != o; i++)
        ;
    d->ops[i] = d->ops[--d->nops];
    OPENSSL_cleanse(o->token_hex, sizeof(o->token_hex));
    free(o);
    sweep(d, now_ms, moves);
    pthread_mutex_unlock(&d->lock);
    return CCA_OK;
}

bool cca_desk_authenticate(struct cca_desk *d, const char *token_hex, int64_t now_ms,
                           char ret_id[37])
{
    struct desk_operator *found = NULL;

    if (strlen(token_hex) != 64)
        return false;
    pthread_mutex_lock(&d->lock);
    /* Every record compared, no early exit: the time does not tell which matched. */
    for (size_t i = 0; i < d->nops; i++) {
        if (CRYPTO_memcmp(d->ops[i]->token_hex, token_hex, 64) == 0)
            found = d->ops[i];
    }
    if (found != NULL) {
        found->last_seen_ms = now_ms;
        memcpy(ret_id, found->id, 37);
    }
    pthread_mutex_unlock(&d->lock);
    return found != NULL;
}

void cca_desk_rated(struct cca_desk *d, const char *operator_id, int score)
{
    struct desk_operator *o;

    if (score < 1 || score > 5)
        return;
    pthread_mutex_lock(&d->lock);
    o = op_find(d, operator_id);
    if (o != NULL)
        o->csat[score - 1]++;
    pthread_mutex_unlock(&d->lock);
}

bool cca_desk_has_skill(struct cca_desk *d, uint32_t skill)
{
    bool found = false;

    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->nops && !found; i++)
        found = d->ops[i]->skills == 0 || (d->ops[i]->skills & skill) != 0;
    pthread_mutex_unlock(&d->lock);
    return found;
}

void cca_desk_touch(struct cca_desk *d, const char *operator_id, int64_t now_ms)
{
    struct desk_operator *o;

    pthread_mutex_lock(&d->lock);
    o = op_find(d, operator_id);
    if (o != NULL)
        o->last_seen_ms = now_ms;
    pthread_mutex_unlock(&d->lock);
}

bool cca_desk_operator(struct cca_desk *d, const char *operator_id,
                       struct cca_desk_operator_info *ret)
{
    struct desk_operator *o;

    pthread_mutex_lock(&d->lock);
    o = op_find(d, operator_id);
    if (o != NULL) {
        memcpy(ret->id, o->id, sizeof(ret->id));
        memcpy(ret->name, o->name, sizeof(ret->name));
        ret->status = o->status;
        ret->max_dialogs = o->max_dialogs;
        ret->open_dialogs = o->open;
        ret->last_seen_ms = o->last_seen_ms;
        ret->last_closed_ms = o->last_closed_ms;
        memcpy(ret->csat, o->csat, sizeof(ret->csat));
    }
    pthread_mutex_unlock(&d->lock);
    return o != NULL;
}

static int by_assigned(const void *a, const void *b)
{
    const struct desk_dialog *x = *(const struct desk_dialog *const *)a;
    const struct desk_dialog *y = *(const struct desk_dialog *const *)b;

    if (x->assigned_ms != y->assigned_ms)
        return x->assigned_ms < y->assigned_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

json_t *cca_desk_operator_dialogs(struct cca_desk *d, const char *operator_id)
{
    json_t *out = json_array();
    struct desk_dialog **v;
    struct desk_operator *o;
    size_t n = 0;

    pthread_mutex_lock(&d->lock);
    o = op_find(d, operator_id);
    v = cca_xcalloc((o != NULL ? o->open : 0) + 1, sizeof(*v));
    for (size_t b = 0; o != NULL && b < d->nbuckets && n < o->open; b++) {
        for (struct desk_dialog *x = d->buckets[b]; x != NULL; x = x->hnext) {
            if (x->owner == CCA_OWNER_OPERATOR && x->op == o && n < o->open)
                v[n++] = x;
        }
    }
    qsort(v, n, sizeof(*v), by_assigned);
    for (size_t i = 0; i < n; i++)
        (void)json_array_append_new(out, json_string(v[i]->id));
    pthread_mutex_unlock(&d->lock);
    free(v);
    return out;
}

/* ---- dialogs
 * ------------------------------------------------------------------------------ */

enum cca_desk_escalation cca_desk_escalate(struct cca_desk *d, const char *dialog_id,
                                           const struct cca_desk_need *need,
                                           const char *reason, const char *actor,
                                           int64_t now_ms, struct cca_desk_moves *moves)
{
    enum cca_desk_escalation res;
    struct desk_operator *o;
    struct desk_dialog *x;
    struct cca_desk_move *mv;

    pthread_mutex_lock(&d->lock);
    if (dlg_find(d, dialog_id) != NULL) {
        res = CCA_DESK_ALREADY;
        goto out;
    }
    o = pick(d, need, now_ms);
    if (o == NULL && d->queued >= d->p.queue_max) {
        res = CCA_DESK_FULL;
        goto out;
    }
    x = cca_xcalloc(1, sizeof(*x));
    copy_str(x->id, sizeof(x->id), dialog_id);
    x->need = *need;
    x->key = (struct cca_queue_key){
        .priority = need->priority, .since_ms = now_ms, .seq = ++d->seq};
    dlg_insert(d, x);
    if (o != NULL) {
        x->owner = CCA_OWNER_AGENT;
        assign_to(d, x, o, CCA_OWNER_AGENT, reason, actor, now_ms, moves);
        res = CCA_DESK_ASSIGNED;
        goto out;
    }
    x->owner = CCA_OWNER_QUEUE;
    queue_insert(d, x);
    mv = move_add(moves);
    fill_move(d, mv, x, CCA_OWNER_EV_ENQUEUE, CCA_OWNER_AGENT, reason, actor, now_ms);
    mv->position = queue_position(d, x);
    mv->eta_s = eta_of(d, mv->position);
    res = CCA_DESK_QUEUED;
out:
    pthread_mutex_unlock(&d->lock);
    return res;
}

enum cca_owner cca_desk_owner(struct cca_desk *d, const char *dialog_id,
                              char ret_operator_id[37])
{
    enum cca_owner owner = CCA_OWNER_AGENT;
    struct desk_dialog *x;

    pthread_mutex_lock(&d->lock);
    x = dlg_find(d, dialog_id);
    if (x != NULL) {
        owner = x->owner;
        if (ret_operator_id != NULL)
            copy_str(ret_operator_id, 37, x->op != NULL ? x->op->id : "");
    }
    pthread_mutex_unlock(&d->lock);
    return owner;
}

bool cca_desk_position(struct cca_desk *d, const char *dialog_id, size_t *ret_position,
                       double *ret_eta_s)
{
    struct desk_dialog *x;
    bool queued;

    pthread_mutex_lock(&d->lock);
    x = dlg_find(d, dialog_id);
    queued = x != NULL && x->owner == CCA_OWNER_QUEUE;
    if (queued) {
        *ret_position = queue_position(d, x);
        *ret_eta_s = eta_of(d, *ret_position);
    }
    pthread_mutex_unlock(&d->lock);
    return queued;
}

bool cca_desk_replied(struct cca_desk *d, const char *dialog_id, int64_t now_ms,
                      double *ret_wait_s)
{
    struct desk_dialog *x;
    bool first = false;

    pthread_mutex_lock(&d->lock);
    x = dlg_find(d, dialog_id);
    if (x != NULL && x->owner == CCA_OWNER_OPERATOR && !x->replied) {
        x->replied = true;
        first = true;
        *ret_wait_s = (double)(now_ms - x->key.since_ms) / 1000.0;
    }
    pthread_mutex_unlock(&d->lock);
    return first;
}

static bool eligible_ignoring_status(const struct desk_operator *o,
                                     const struct cca_desk_need *need)
{
    struct cca_assign_candidate c = candidate_of(o);
    struct cca_assign_need n = {.language = need->language, .skill = need->skill};

    c.status = CCA_OPERATOR_AVAILABLE;
    return cca_assign_eligible(&c, &n);
}

cca_rc cca_desk_take(struct cca_desk *d, const char *operator_id, const char *dialog_id,
                     int64_t now_ms, char ret_dialog_id[37], struct cca_desk_moves *moves)
{
    struct desk_operator *o;
    struct desk_dialog *x = NULL;
    char actor[48];
    cca_rc rc = CCA_OK;

    pthread_mutex_lock(&d->lock);
    o = op_find(d, operator_id);
    if (o == NULL) {
        rc = CCA_ERR_NOT_FOUND;
        goto out;
    }
    if (o->open >= o->max_dialogs) {
        rc = CCA_ERR_LIMIT;
        goto out;
    }
    if (dialog_id != NULL) {
        x = dlg_find(d, dialog_id);
        if (x == NULL || x->owner != CCA_OWNER_QUEUE) {
            rc = CCA_ERR_CONFLICT;
            goto out;
        }
    } else {
        for (x = d->qhead; x != NULL && !eligible_ignoring_status(o, &x->need);
             x = x->qnext)
            ;
        if (x == NULL) {
            rc = CCA_ERR_NOT_FOUND;
            goto out;
        }
    }
    (void)snprintf(actor, sizeof(actor), "operator:%s", o->id);
    assign_to(d, x, o, CCA_OWNER_QUEUE, "operator_take", actor, now_ms, moves);
    memcpy(ret_dialog_id, x->id, 37);
out:
    pthread_mutex_unlock(&d->lock);
    return rc;
}

cca_rc cca_desk_transfer(struct cca_desk *d, const char *dialog_id,
                         const char *to_operator_id, const char *actor, int64_t now_ms,
                         struct cca_desk_moves *moves)
{
    struct desk_operator *to;
    struct desk_dialog *x;
    struct cca_desk_move *mv;
    cca_rc rc = CCA_OK;

    pthread_mutex_lock(&d->lock);
    to = op_find(d, to_operator_id);
    x = dlg_find(d, dialog_id);
    if (to == NULL) {
        rc = CCA_ERR_NOT_FOUND;
    } else if (x == NULL || x->owner != CCA_OWNER_OPERATOR || x->op == to) {
        rc = CCA_ERR_CONFLICT;
    } else if (to->status == CCA_OPERATOR_OFFLINE || to->open >= to->max_dialogs) {
        rc = CCA_ERR_LIMIT;
    } else {
        mv = move_add(moves);
        fill_move(d, mv, x, CCA_OWNER_EV_TRANSFER, CCA_OWNER_OPERATOR, "transfer", actor,
                  now_ms);
        if (x->op != NULL) {
            copy_str(mv->prev_operator_id, sizeof(mv->prev_operator_id), x->op->id);
            x->op->open--;
        }
        copy_str(mv->operator_id, sizeof(mv->operator_id), to->id);
        copy_str(mv->operator_name, sizeof(mv->operator_name), to->name);
        x->op = to;
        to->open++;
        x->assigned_ms = now_ms;
        x->replied = false;
        sweep(d, now_ms, moves);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

bool cca_desk_release(struct cca_desk *d, const char *dialog_id, bool handback,
                      const char *reason, const char *actor, int64_t now_ms,
                      struct cca_desk_moves *moves)
{
    struct desk_dialog *x;
    struct desk_operator *o = NULL;
    enum cca_owner from;

    pthread_mutex_lock(&d->lock);
    x = dlg_find(d, dialog_id);
    if (x == NULL) {
        pthread_mutex_unlock(&d->lock);
        return false;
    }
    from = x->owner;
    if (from == CCA_OWNER_QUEUE) {
        queue_unlink(d, x);
    } else if (x->op != NULL) {
        o = x->op;
        o->open--;
        if (!handback) {
            o->last_closed_ms = now_ms;
            cca_assign_mean_add(&d->handle, (double)(now_ms - x->assigned_ms) / 1000.0);
        }
    }
    if (handback) {
        struct cca_desk_move *mv = move_add(moves);

        fill_move(d, mv, x, CCA_OWNER_EV_HANDBACK, from, reason, actor, now_ms);
        if (o != NULL)
            copy_str(mv->prev_operator_id, sizeof(mv->prev_operator_id), o->id);
    }
    dlg_remove(d, x);
    sweep(d, now_ms, moves);
    pthread_mutex_unlock(&d->lock);
    return true;
}

void cca_desk_timeouts(struct cca_desk *d, int64_t now_ms, int64_t timeout_ms,
                       struct cca_desk_moves *moves, json_t *ret_busy)
{
    bool any = false;

    pthread_mutex_lock(&d->lock);
    for (size_t b = 0; b < d->nbuckets; b++) {
        for (struct desk_dialog *x = d->buckets[b]; x != NULL; x = x->hnext) {
            struct desk_operator *o = x->op;

            if (x->owner != CCA_OWNER_OPERATOR || x->replied ||
                now_ms - x->assigned_ms < timeout_ms)
                continue;
            if (o != NULL && o->status == CCA_OPERATOR_AVAILABLE) {
                o->status = CCA_OPERATOR_BUSY;
                (void)json_array_append_new(ret_busy, json_string(o->id));
            }
            requeue(d, x, "reply_timeout", "system", now_ms, moves);
            any = true;
        }
    }
    if (any)
        sweep(d, now_ms, moves);
    pthread_mutex_unlock(&d->lock);
}

bool cca_desk_visible(struct cca_desk *d, const char *dialog_id, const char *operator_id)
{
    struct desk_dialog *x;
    bool ok;

    pthread_mutex_lock(&d->lock);
    x = dlg_find(d, dialog_id);
    ok = x != NULL && (x->owner == CCA_OWNER_QUEUE ||
                       (x->op != NULL && strcmp(x->op->id, operator_id) == 0));
    pthread_mutex_unlock(&d->lock);
    return ok;
}

static const char *lang_of(uint32_t bit)
{
    for (int l = 0; l < CCA_LANG__COUNT; l++) {
        if (bit == CCA_OPERATOR_LANG_BIT(l))
            return cca_lang_code((enum cca_lang)l);
    }
    return NULL;
}

static const char *skill_of(uint32_t bit)
{
    for (int a = 0; a < CCA_AGENT__COUNT; a++) {
        if (bit == CCA_OPERATOR_SKILL_BIT(a))
            return cca_agent_name((enum cca_agent)a);
    }
    return NULL;
}

json_t *cca_desk_queue_view(struct cca_desk *d, int64_t now_ms, size_t limit)
{
    json_t *out = json_object();
    json_t *items = json_array();
    size_t pos = 0;

    pthread_mutex_lock(&d->lock);
    for (struct desk_dialog *x = d->qhead; x != NULL && pos < limit; x = x->qnext) {
        json_t *it = json_object();
        const char *lang = lang_of(x->need.language);
        const char *skill = skill_of(x->need.skill);

        pos++;
        (void)json_object_set_new(it, "dialog_id", json_string(x->id));
        (void)json_object_set_new(it, "position", json_integer((json_int_t)pos));
        (void)json_object_set_new(it, "waiting_s",
                                  json_integer((now_ms - x->key.since_ms) / 1000));
        (void)json_object_set_new(it, "priority",
                                  json_string(cca_priority_name(x->key.priority)));
        (void)json_object_set_new(it, "language", lang ? json_string(lang) : json_null());
        (void)json_object_set_new(it, "skill", skill ? json_string(skill) : json_null());
        (void)json_object_set_new(it, "requeued", json_boolean(x->key.requeued));
        (void)json_array_append_new(items, it);
    }
    (void)json_object_set_new(out, "length", json_integer((json_int_t)d->queued));
    pthread_mutex_unlock(&d->lock);
    (void)json_object_set_new(out, "items", items);
    return out;
}

void cca_desk_positions(struct cca_desk *d,
                        void (*fn)(void *ctx, const char *dialog_id, size_t position,
                                   double eta_s),
                        void *ctx)
{
    size_t pos = 0;
    unsigned seats;

    pthread_mutex_lock(&d->lock);
    seats = seats_on_shift(d);
    for (struct desk_dialog *x = d->qhead; x != NULL; x = x->qnext) {
        pos++;
        fn(ctx, x->id, pos,
           cca_assign_eta_s(pos, seats, d->handle.mean, d->p.default_handle_s));
    }
    pthread_mutex_unlock(&d->lock);
}

void cca_desk_get_stats(struct cca_desk *d, struct cca_desk_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    pthread_mutex_lock(&d->lock);
    ret->queued = d->queued;
    ret->assigned = d->ndialogs - d->queued;
    for (size_t i = 0; i < d->nops; i++) {
        const struct desk_operator *o = d->ops[i];

        ret->operators[o->status]++;
        if (o->status == CCA_OPERATOR_AVAILABLE && o->open < o->max_dialogs)
            ret->seats_free += o->max_dialogs - o->open;
    }
    ret->mean_handle_s = d->handle.n > 0 ? d->handle.mean : d->p.default_handle_s;
    pthread_mutex_unlock(&d->lock);
}
