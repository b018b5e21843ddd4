/* SPDX-License-Identifier: MIT */
/*
 * The Telegram channel (telegram.h, docs/TELEGRAM.md).
 *
 * One thread owns every piece of state here; the fetch thread (Bot API
 * answers), the engine thread (operation results, committed dialogs) and
 * the caller of cca_telegram_stop only post events to its inbox.
 *
 * Documents of the "telegram" collection (ids: UUID v5 of a name in the
 * namespace below, so they never meet a dialog's id in the engine's index):
 *   "state"            {kind: "state", offset}
 *   "chat:<chat_id>"   {kind: "chat", chat_id, lang, name, stage ("name" while
 *                       the bot waits for the customer's name), operator_id (a
 *                       linked operator), focus, clients {"<n>": dialog id},
 *                       next, blocked}
 *   "dialog:<id>"      {kind: "delivery", dialog_id, m, t, csat}: the messages
 *                       (m) and owner transitions (t) of the dialog whose sends
 *                       the Bot API confirmed, and whether the rating question
 *                       went out.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "cca/engine.h"
#include "cca/export.h"
#include "cca/log.h"
#include "cca/mem.h"
#include "cca/metrics.h"
#include "cca/operator.h"
#include "cca/record.h"
#include "cca/telegram.h"
#include "cca/text.h"
#include "cca/tgapi.h"
#include "cca/tgbot.h"
#include "cca/tgsend.h"

/* Namespace of the channel's document ids: 3b1e7f52-9c4d-5a8e-b0f1-7e2d4c6a9b10. */
static const unsigned char tg_ns[16] = {0x3b, 0x1e, 0x7f, 0x52, 0x9c, 0x4d, 0x5a, 0x8e,
                                        0xb0, 0xf1, 0x7e, 0x2d, 0x4c, 0x6a, 0x9b, 0x10};

#define POLL_RESPONSE_MAX ((size_t)16 << 20) /* bytes of a getUpdates answer */
#define SEND_RESPONSE_MAX ((size_t)1 << 20)
#define SEND_TIMEOUT_MS   30000
#define POLL_BACKOFF_MAX  30000 /* ms between failed polls, at most */
#define SEND_MAX_ATTEMPTS 50    /* transient failures of one send before it is dropped */
#define WRONG_MAX         5     /* wrong secrets or PINs of a chat ... */
#define WRONG_WINDOW_MS   (10 * 60 * 1000) /* ... within this window lock it ... */
#define WRONG_LOCK_MS     (10 * 60 * 1000) /* ... this long */
#define FLUSH_MS          500 /* delivery cursors and the offset are written this often */
#define BATCH_TRIES       5   /* a failed batch is asked for again at most this often */
#define HISTORY_DEFAULT   20
#define HISTORY_MAX       1000
#define CARD_LINES        5
#define NUMBER_MAX        9999
#define NAME_MAX_CP       100 /* code points of a customer's name, as customer_info.name */

/* ---- a string-keyed table (chats by "c:<chat_id>" and "o:<operator>", deliveries) -- */

struct node {
    struct node *next;
    char key[48];
    void *val;
};

struct table {
    struct node **b;
    size_t nb, n;
};

static void *table_get(const struct table *t, const char *key)
{
    if (t->nb == 0)
        return NULL;
    for (struct node *x = t->b[cca_hash_str(key) & (t->nb - 1)]; x != NULL; x = x->next)
        if (strcmp(x->key, key) == 0)
            return x->val;
    return NULL;
}

static void table_put(struct table *t, const char *key, void *val)
{
    struct node *x;
    size_t h;

    if (t->n + 1 > t->nb) {
        size_t nb = t->nb ? t->nb * 2 : 64;
        struct node **b = cca_xcalloc(nb, sizeof(*b));

        for (size_t i = 0; i < t->nb; i++)
            while ((x = t->b[i]) != NULL) {
                t->b[i] = x->next;
                h = cca_hash_str(x->key) & (nb - 1);
                x->next = b[h];
                b[h] = x;
            }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    h = cca_hash_str(key) & (t->nb - 1);
    for (x = t->b[h]; x != NULL; x = x->next)
        if (strcmp(x->key, key) == 0) {
            x->val = val;
            return;
        }
    x = cca_xcalloc(1, sizeof(*x));
    (void)snprintf(x->key, sizeof(x->key), "%s", key);
    x->val = val;
    x->next = t->b[h];
    t->b[h] = x;
    t->n++;
}

static void table_free(struct table *t, void (*fn)(void *val))
{
    for (size_t i = 0; i < t->nb; i++)
        while (t->b[i] != NULL) {
            struct node *x = t->b[i];

            t->b[i] = x->next;
            if (fn != NULL)
                fn(x->val);
            free(x);
        }
    free(t->b);
    memset(t, 0, sizeof(*t));
}

/* ---- state ---------------------------------------------------------------------- */

struct task;

/* A private chat: a customer, or an operator linked to it. */
struct chat {
    int64_t chat_id;
    char key[37];
    json_t *doc; /* the thread's own copy; what was last stored or is being stored */
    bool writing, dirty;
    struct task *head, *tail; /* its updates of the batch, in order */
    bool busy;
    struct answer *answers; /* webhook answers waiting for the chat's write */
    int wrong;
    int64_t wrong_since, locked_until; /* monotonic ms */
};

/* What a dialog's sends reached. Index arrays: 0 messages, 1 transitions. */
struct deliv {
    char dialog_id[37];
    char key[37];
    int64_t acked[2]; /* stored: confirmed below this */
    int64_t scan[2];  /* queued below this */
    bool csat_asked, csat_acked;
    int64_t *out[2]; /* indexes with a send outstanding (a multiset) */
    size_t nout[2], cap[2];
    bool writing, dirty;
    bool queued; /* in the channel's list of cursors to write */
};

/* One message to send. */
struct item {
    struct cca_telegram *tg;
    int64_t chat_id; /* 0: a direct call (no chat's limits: getMe, answers, edits) */
    char method[24];
    char *body;
    size_t len;
    char boundary[40]; /* multipart (sendDocument) when not "" */
    struct deliv *d;   /* NULL: not part of a dialog's outbox */
    int arr;           /* 0 message, 1 transition, 2 the rating question */
    int64_t idx;
    bool to_operator;
    int64_t t0_us; /* when it was queued (monotonic us) */
    unsigned attempts;
    struct cca_fetch_headers *headers; /* a multipart request's, until it ends */
};

/* A webhook's answer held until its chat's document is written. */
struct answer {
    struct answer *next;
    cca_engine_done_fn done;
    void *ctx;
};

/* One update of the batch. */
struct task {
    struct task *next;
    struct cca_tg_update u;
    struct chat *c;
    int64_t t0_us;
    /* A webhook's update: told when it is done (telegram.h cca_telegram_webhook). */
    cca_engine_done_fn done;
    void *done_ctx;
    bool failed; /* a transient failure: Telegram should deliver it again */
};

struct cca_telegram;

/* An engine operation of ours in flight and what to do with its result. */
struct call {
    struct cca_telegram *tg;
    void (*then)(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                 const struct cca_error *err);
    struct task *task; /* the update it serves, or NULL */
    struct chat *c;
    struct deliv *d;
    bool batch; /* counts toward the batch (its offset waits for it) */
    char id[37];
    unsigned number;
    int score;
    int64_t chat_id;
    json_t *doc; /* what the continuation needs to say */
    int what;    /* op_done: 'n' take, 'e' end, 's' status, 'a' hand back, 'r' reply */
};

enum ev_kind { EV_POLLED, EV_SENT, EV_DONE, EV_OBSERVED, EV_DIRECT, EV_WEBHOOK };

struct ev {
    struct ev *next;
    enum ev_kind kind;
    struct cca_fetch_result res;
    struct item *item;
    struct call *call;
    struct task *task; /* EV_WEBHOOK */
    cca_rc rc;
    json_t *json;
    struct cca_error err;
    char id[37];
};

struct metrics {
    _Atomic uint64_t updates[4]; /* by enum cca_tg_kind */
    _Atomic uint64_t replays;    /* updates seen again and skipped */
    _Atomic uint64_t sends[6];   /* by enum cca_tg_verdict */
    _Atomic uint64_t polls_failed;
    _Atomic uint64_t outbox;
    struct cca_hist send_seconds; /* queued to confirmed */
};

struct cca_telegram {
    const struct cca_config *cfg;
    struct cca_engine *engine;
    struct cca_fetch *fetch;
    struct cca_fetch_lane *lane;
    struct cca_fetch_headers *json_headers;
    char base[512];
    char token[256];
    bool webhook;            /* TELEGRAM_WEBHOOK_URL: no polling */
    char webhook_secret[65]; /* setWebhook's secret_token, derived from the token */
    int64_t bot_id;
    char username[CCA_TG_NAME_MAX + 1];
    pthread_t thread;
    bool started;

    pthread_mutex_t lock; /* the inbox */
    pthread_cond_t cond;
    struct ev *in_head, *in_tail;
    bool stop;
    int64_t stop_deadline;
    bool stopping; /* the thread's copy of @stop: no new work is started */

    /* the thread's own */
    struct table chats, delivs;
    struct cca_tgsend *sendq;
    int64_t offset;
    char state_key[37];
    json_t *state_doc;
    bool polling;
    uint64_t poll_id;
    int64_t poll_at; /* monotonic ms of the next poll; 0 none pending */
    int64_t poll_backoff;
    int64_t getme_at;     /* monotonic ms of the next getMe; 0 none */
    struct deliv **dirty; /* cursors to write at the next flush */
    size_t ndirty, capdirty;
    bool state_dirty;  /* the offset moved since it was written */
    int64_t flush_at;  /* monotonic ms of the next flush */
    int64_t batch_max; /* the largest update_id of the batch */
    int64_t *done_ids; /* updates of the batch handled in this run (a retry skips them) */
    size_t ndone, capdone;
    unsigned batch_tries; /* times the batch was asked for again */
    size_t tasks_left, batch_calls;
    bool batch_failed;
    size_t calls; /* engine operations in flight */
    size_t sends; /* Bot API requests in flight */
    uint64_t rnd;
    struct metrics m;
};

/* ---- the inbox -------------------------------------------------------------------- */

static void post(struct cca_telegram *tg, struct ev *ev)
{
    pthread_mutex_lock(&tg->lock);
    if (tg->in_tail != NULL)
        tg->in_tail->next = ev;
    else
        tg->in_head = ev;
    tg->in_tail = ev;
    pthread_cond_signal(&tg->cond);
    pthread_mutex_unlock(&tg->lock);
}

static void on_observed(void *ctx, const char *dialog_id, json_t *doc)
{
    struct cca_telegram *tg = ctx;
    struct ev *ev;

    (void)doc; /* read back on the thread: the newest version serves */
    ev = cca_xcalloc(1, sizeof(*ev));
    ev->kind = EV_OBSERVED;
    (void)snprintf(ev->id, sizeof(ev->id), "%s", dialog_id);
    post(tg, ev);
}

/* ---- documents -------------------------------------------------------------------- */

static void doc_key(const char *name, char ret[37])
{
    cca_uuid_v5(tg_ns, name, strlen(name), ret);
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_int_t jint(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static json_t *render_min(const struct cca_engine_outcome *o)
{
    json_t *r = json_object();

    if (o->dialog_id != NULL)
        (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    return r;
}

static void on_engine_done(void *ctx, cca_rc rc, json_t *result,
                           const struct cca_error *err)
{
    struct call *k = ctx;
    struct ev *ev = cca_xcalloc(1, sizeof(*ev));

    ev->kind = EV_DONE;
    ev->call = k;
    ev->rc = rc;
    ev->json = result;
    if (err != NULL)
        ev->err = *err;
    post(k->tg, ev);
}

static void put_done(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                     const struct cca_error *err);

/* Submit @req for @k; false (and @k freed, @req released) when the engine refuses. */
static bool submit(struct cca_telegram *tg, struct cca_engine_request *req,
                   struct call *k)
{
    k->tg = tg;
    if (tg->stopping && k->then != put_done) { /* stopping: nothing new is started */
        cca_engine_request_cleanup(req);
        json_decref(k->doc);
        free(k);
        return false;
    }
    if (req->render == NULL)
        req->render = render_min;
    if (cca_engine_submit(tg->engine, req, on_engine_done, k) != CCA_OK) {
        json_decref(k->doc);
        free(k);
        return false;
    }
    tg->calls++;
    if (k->batch)
        tg->batch_calls++;
    return true;
}

static struct call *call_new(void (*then)(struct cca_telegram *, struct call *, cca_rc,
                                          json_t *, const struct cca_error *),
                             struct task *t)
{
    struct call *k = cca_xcalloc(1, sizeof(*k));

    k->then = then;
    k->task = t;
    if (t != NULL) {
        k->c = t->c;
        k->batch = true;
    }
    return k;
}

static void answers_flush(struct chat *c, bool failed);
static void deliv_save(struct cca_telegram *tg, struct deliv *d);

/* Store @doc (borrowed; a deep copy goes) as document @key; @batch: the offset waits. */
static void put_doc(struct cca_telegram *tg, const char *key, json_t *doc, struct chat *c,
                    struct deliv *d, bool batch)
{
    struct cca_engine_request req = {.op = CCA_OP_PUT, .coll = CCA_STORE_TELEGRAM};
    struct call *k = call_new(put_done, NULL);

    (void)snprintf(req.target, sizeof(req.target), "%s", key);
    (void)snprintf(req.actor, sizeof(req.actor), "system");
    req.doc = json_deep_copy(doc);
    k->c = c;
    k->d = d;
    k->batch = batch;
    if (!submit(tg, &req, k)) {
        /* The next change writes the whole document again. */
        cca_log(LOG_WARNING, "telegram: the engine refused a write; retried later");
        if (batch)
            tg->batch_failed = true;
        if (c != NULL) {
            c->writing = false;
            c->dirty = true;
        }
        if (d != NULL) {
            d->writing = false;
            deliv_save(tg, d);
        }
    }
}

static void chat_save(struct cca_telegram *tg, struct chat *c, bool batch)
{
    if (c->writing && !batch) {
        c->dirty = true;
        return;
    }
    c->writing = true;
    c->dirty = false;
    put_doc(tg, c->key, c->doc, c, NULL, batch);
}

static json_t *deliv_doc(const struct deliv *d)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:b}", "kind", "delivery", "dialog_id",
                     d->dialog_id, "m", (json_int_t)d->acked[0], "t",
                     (json_int_t)d->acked[1], "csat", d->csat_acked);
}

/*
 * A delivery cursor moved: it is written with the others at the next flush
 * (FLUSH_MS), not at once. A cursor is only the lower bound of what to send
 * again after a crash, so writing it later costs at most FLUSH_MS of repeated
 * sends and saves a durable write per message sent.
 */
static void deliv_save(struct cca_telegram *tg, struct deliv *d)
{
    d->dirty = true;
    if (d->queued)
        return;
    d->queued = true;
    if (tg->ndirty == tg->capdirty) {
        tg->capdirty = tg->capdirty ? tg->capdirty * 2 : 64;
        tg->dirty = cca_xrealloc(tg->dirty, tg->capdirty * sizeof(*tg->dirty));
    }
    tg->dirty[tg->ndirty++] = d;
}

/* Write the cursors that moved and the offset, if it did. */
static void flush(struct cca_telegram *tg)
{
    size_t keep = 0;

    for (size_t i = 0; i < tg->ndirty; i++) {
        struct deliv *d = tg->dirty[i];
        json_t *doc;

        if (d->writing) { /* the next flush, after this write */
            tg->dirty[keep++] = d;
            continue;
        }
        d->queued = false;
        d->writing = true;
        d->dirty = false;
        doc = deliv_doc(d);
        put_doc(tg, d->key, doc, NULL, d, false);
        json_decref(doc);
    }
    tg->ndirty = keep;
    if (tg->state_dirty) {
        tg->state_dirty = false;
        put_doc(tg, tg->state_key, tg->state_doc, NULL, NULL, false);
    }
}

static void put_done(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                     const struct cca_error *err)
{
    (void)result;
    if (rc != CCA_OK) {
        cca_log(LOG_WARNING, "telegram: a write failed: %s", err->msg);
        if (k->batch)
            tg->batch_failed = true;
    }
    /* A failed write is not retried at once (a full disk would spin): the next
     * change writes the whole document again, and a batch's is asked for again. */
    if (k->c != NULL) {
        k->c->writing = false;
        if (k->c->dirty && rc == CCA_OK)
            chat_save(tg, k->c, false);
        if (!k->c->writing)
            answers_flush(k->c, rc != CCA_OK);
    }
    if (k->d != NULL)
        k->d->writing = false; /* moved again meanwhile: still in the flush list */
}

/* ---- chats ------------------------------------------------------------------------ */

static struct chat *chat_find(struct cca_telegram *tg, int64_t chat_id)
{
    char key[32];

    (void)snprintf(key, sizeof(key), "c:%" PRId64, chat_id);
    return table_get(&tg->chats, key);
}

static struct chat *chat_add(struct cca_telegram *tg, int64_t chat_id, json_t *doc)
{
    struct chat *c = cca_xcalloc(1, sizeof(*c));
    char key[32];
    const char *op;

    c->chat_id = chat_id;
    (void)snprintf(key, sizeof(key), "chat:%" PRId64, chat_id);
    doc_key(key, c->key);
    c->doc = doc != NULL ? doc
                         : json_pack("{s:s, s:I, s:s}", "kind", "chat", "chat_id",
                                     (json_int_t)chat_id, "lang", "en");
    (void)snprintf(key, sizeof(key), "c:%" PRId64, chat_id);
    table_put(&tg->chats, key, c);
    op = jstr(c->doc, "operator_id");
    if (op != NULL) {
        char okey[48];

        (void)snprintf(okey, sizeof(okey), "o:%s", op);
        table_put(&tg->chats, okey, c);
    }
    return c;
}

static struct chat *chat_get(struct cca_telegram *tg, int64_t chat_id)
{
    struct chat *c = chat_find(tg, chat_id);

    return c != NULL ? c : chat_add(tg, chat_id, NULL);
}

static struct chat *chat_of_operator(struct cca_telegram *tg, const char *operator_id)
{
    char key[48];

    if (operator_id == NULL)
        return NULL;
    (void)snprintf(key, sizeof(key), "o:%s", operator_id);
    return table_get(&tg->chats, key);
}

static void chat_free(void *val)
{
    struct chat *c = val;

    /* "o:" entries point at the same chat: freed through its "c:" entry only. */
    if (c == NULL)
        return;
    while (c->head != NULL) { /* updates left at the stop: asked for again */
        struct task *t = c->head;

        c->head = t->next;
        cca_tg_update_cleanup(&t->u);
        free(t);
    }
    json_decref(c->doc);
    free(c);
}

static const char *chat_operator(const struct chat *c)
{
    return jstr(c->doc, "operator_id");
}

static enum cca_lang chat_lang(const struct chat *c)
{
    const char *l = jstr(c->doc, "lang");

    return l != NULL && strcmp(l, "ru") == 0 ? CCA_LANG_RU : CCA_LANG_EN;
}

/* A name we store as it is: 1..@max code points, not blank, no control character. */
static bool name_ok(const char *s, ssize_t max)
{
    size_t len = s != NULL ? strlen(s) : 0;
    ssize_t cp = s != NULL ? cca_text_codepoints(s, len) : -1;

    return cp >= 1 && cp <= max && !cca_text_is_blank(s, len) &&
           !cca_text_has_control(s, len);
}

/* The customer id of a Telegram user: "tg:<user id>" (a private chat's id is the user's).
 */
static void customer_id_of(int64_t user_id, char buf[32])
{
    (void)snprintf(buf, 32, "tg:%" PRId64, user_id);
}

/* The chat of a dialog whose customer came over Telegram, or 0. */
static int64_t customer_chat_of(json_t *doc)
{
    const char *src = jstr(doc, "source");
    const char *cid = jstr(doc, "customer_id");
    char *end = NULL;
    long long v;

    if (src == NULL || strcmp(src, "telegram") != 0 || cid == NULL ||
        strncmp(cid, "tg:", 3) != 0)
        return 0;
    v = strtoll(cid + 3, &end, 10);
    return end != NULL && *end == '\0' && v != 0 ? (int64_t)v : 0;
}

/* The short number of @dialog_id for operator chat @c, made when @make. 0: none. */
static unsigned number_of(struct cca_telegram *tg, struct chat *c, const char *dialog_id,
                          bool make)
{
    json_t *clients = json_object_get(c->doc, "clients");
    const char *k;
    json_t *v;
    unsigned n;

    json_object_foreach (clients, k, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), dialog_id) == 0)
            return (unsigned)strtoul(k, NULL, 10);
    }
    if (!make)
        return 0;
    if (clients == NULL) {
        clients = json_object();
        (void)json_object_set_new(c->doc, "clients", clients);
    }
    n = (unsigned)jint(c->doc, "next");
    for (unsigned tries = 0; tries < NUMBER_MAX; tries++) {
        char key[16];

        n = n % NUMBER_MAX + 1;
        (void)snprintf(key, sizeof(key), "%u", n);
        if (json_object_get(clients, key) == NULL) {
            (void)json_object_set_new(clients, key, json_string(dialog_id));
            (void)json_object_set_new(c->doc, "next", json_integer(n));
            chat_save(tg, c, false);
            return n;
        }
    }
    return 0;
}

/* The dialog left operator chat @c: its short number is free again. */
static void forget_number(struct cca_telegram *tg, struct chat *c, const char *dialog_id)
{
    unsigned n = number_of(tg, c, dialog_id, false);
    char key[16];

    if (n == 0)
        return;
    (void)snprintf(key, sizeof(key), "%u", n);
    (void)json_object_del(json_object_get(c->doc, "clients"), key);
    if (jint(c->doc, "focus") == (json_int_t)n)
        (void)json_object_del(c->doc, "focus");
    chat_save(tg, c, false);
}

static const char *dialog_of_number(struct chat *c, unsigned n)
{
    char key[16];

    (void)snprintf(key, sizeof(key), "%u", n);
    return jstr(json_object_get(c->doc, "clients"), key);
}

/* ---- sending ---------------------------------------------------------------------- */

static void item_free(struct item *it)
{
    if (it == NULL)
        return;
    free(it->body);
    cca_fetch_headers_free(it->headers);
    free(it);
}

static void deliv_ack(struct cca_telegram *tg, struct deliv *d, int arr, int64_t idx)
{
    int64_t acked;

    if (arr == 2) {
        if (!d->csat_acked) {
            d->csat_acked = true;
            deliv_save(tg, d);
        }
        return;
    }
    for (size_t i = 0; i < d->nout[arr]; i++)
        if (d->out[arr][i] == idx) {
            d->out[arr][i] = d->out[arr][--d->nout[arr]];
            break;
        }
    acked = d->scan[arr];
    for (size_t i = 0; i < d->nout[arr]; i++)
        if (d->out[arr][i] < acked)
            acked = d->out[arr][i];
    if (acked > d->acked[arr]) {
        d->acked[arr] = acked;
        deliv_save(tg, d);
    }
}

/* @it left the outbox (sent, refused for good, or its chat is gone). */
static void item_finish(struct cca_telegram *tg, struct item *it)
{
    atomic_fetch_sub_explicit(&tg->m.outbox, 1, memory_order_relaxed);
    if (it->d != NULL)
        deliv_ack(tg, it->d, it->arr, it->idx);
    item_free(it);
}

static void drop_item(void *ctx, void *item)
{
    item_finish(ctx, item);
}

static enum cca_fetch_verdict final_always(void *ctx, const struct cca_fetch_attempt *a)
{
    (void)ctx;
    (void)a;
    return CCA_FETCH_FINAL; /* retries are the scheduler's (tgsend.h) */
}

static void on_fetched(void *ctx, struct cca_fetch_result *res)
{
    struct item *it = ctx;
    struct ev *ev = cca_xcalloc(1, sizeof(*ev));

    ev->kind = strcmp(it->method, "getUpdates") == 0 ? EV_POLLED
               : it->chat_id == 0                    ? EV_DIRECT
                                                     : EV_SENT;
    ev->item = it;
    ev->res = *res;
    res->body = NULL; /* moved into the event */
    post(it->tg, ev);
}

/* Start the request of @it on the lane; false when it cannot start. */
static bool start_fetch(struct cca_telegram *tg, struct item *it, long timeout_ms,
                        size_t max_response, uint64_t *ret_id)
{
    struct cca_fetch_request req = {0};
    struct cca_fetch_headers *mh = NULL;
    char url[1024];
    bool ok;

    if (cca_tg_method_url(tg->base, tg->token, it->method, url, sizeof(url)) != CCA_OK)
        return false;
    if (it->boundary[0]) {
        char line[96];
        const char *lines[] = {line, "Expect:", NULL};

        (void)snprintf(line, sizeof(line),
                       "Content-Type: multipart/form-data; boundary=%s", it->boundary);
        if (cca_fetch_headers_new(lines, &mh, NULL) != CCA_OK)
            return false;
    }
    req.method = "POST";
    req.url = url;
    req.headers = mh != NULL ? mh : tg->json_headers;
    req.body = cca_xmalloc(it->len + 1);
    memcpy(req.body, it->body, it->len);
    req.body_len = it->len;
    req.lane = tg->lane;
    req.connect_timeout_ms = 10000;
    req.attempt_timeout_ms = timeout_ms;
    req.deadline_ms = CCA_FETCH_NO_DEADLINE;
    req.max_retries = 0;
    req.max_response_bytes = max_response;
    req.classify = final_always;
    ok = cca_fetch_start(tg->fetch, &req, on_fetched, it, ret_id) == CCA_OK;
    /* The headers must outlive the request: a multipart set is kept until it ends. */
    if (mh != NULL) {
        if (ok)
            it->headers = mh;
        else
            cca_fetch_headers_free(mh);
    }
    if (ok)
        tg->sends++;
    return ok;
}

/* A call outside any chat's limits (getMe, setMyCommands, answers, deletions). */
static void direct(struct cca_telegram *tg, const char *method, json_t *body)
{
    struct item *it = cca_xcalloc(1, sizeof(*it));

    it->tg = tg;
    (void)snprintf(it->method, sizeof(it->method), "%s", method);
    it->body = json_dumps(body, JSON_COMPACT);
    it->len = strlen(it->body);
    json_decref(body);
    if (!start_fetch(tg, it, SEND_TIMEOUT_MS, SEND_RESPONSE_MAX, NULL))
        item_free(it);
}

/* Queue @it for its chat; an item for a chat that blocked the bot leaves at once. */
static void enqueue(struct cca_telegram *tg, struct item *it)
{
    struct chat *c = chat_find(tg, it->chat_id);

    atomic_fetch_add_explicit(&tg->m.outbox, 1, memory_order_relaxed);
    it->tg = tg;
    it->t0_us = cca_time_mono_us();
    if (it->d != NULL && it->arr < 2) {
        struct deliv *d = it->d;

        if (d->nout[it->arr] == d->cap[it->arr]) {
            d->cap[it->arr] = d->cap[it->arr] ? d->cap[it->arr] * 2 : 4;
            d->out[it->arr] =
                cca_xrealloc(d->out[it->arr], d->cap[it->arr] * sizeof(int64_t));
        }
        d->out[it->arr][d->nout[it->arr]++] = it->idx;
    }
    if (c != NULL && json_is_true(json_object_get(c->doc, "blocked"))) {
        item_finish(tg, it); /* dropped on purpose: the cursor moves past it */
    } else if (cca_tgsend_push(tg->sendq, it->chat_id, it) != CCA_OK) {
        /* The outbox is full: the index stays outstanding, so the cursor stops
         * before it and the next run sends it. */
        cca_log(LOG_WARNING,
                "telegram: outbox full, %s to chat %" PRId64 " left for later",
                it->method, it->chat_id);
        atomic_fetch_sub_explicit(&tg->m.outbox, 1, memory_order_relaxed);
        item_free(it);
    }
}

static struct item *item_new(int64_t chat_id, const char *method, json_t *body,
                             struct deliv *d, int arr, int64_t idx)
{
    struct item *it = cca_xcalloc(1, sizeof(*it));

    it->chat_id = chat_id;
    (void)snprintf(it->method, sizeof(it->method), "%s", method);
    it->body = json_dumps(body, JSON_COMPACT);
    it->len = strlen(it->body);
    json_decref(body);
    it->d = d;
    it->arr = arr;
    it->idx = idx;
    return it;
}

/* sendMessage @text (split to the Bot API's length) to @chat_id; @markup stolen, on
 * the last piece. Part of dialog @d's outbox when @d is not NULL. */
static void say_to(struct cca_telegram *tg, int64_t chat_id, const char *text,
                   bool protect, json_t *markup, struct deliv *d, int arr, int64_t idx)
{
    size_t len = strlen(text);
    size_t offs[16], lens[16];
    size_t n = cca_tg_split(text, len, CCA_TG_TEXT_MAX, offs, lens, 16);

    if (n > 16)
        n = 16; /* 64 K characters: the rest of a runaway text is not sent */
    if (n == 0) {
        json_decref(markup);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char *piece = cca_xstrndup(text + offs[i], lens[i]);
        struct item *it = item_new(
            chat_id, "sendMessage",
            cca_tg_send_message(chat_id, piece, protect, i + 1 == n ? markup : NULL), d,
            arr, idx);

        it->to_operator = protect;
        free(piece);
        enqueue(tg, it);
    }
    json_decref(markup);
}

static void say(struct cca_telegram *tg, struct chat *c, const char *text)
{
    say_to(tg, c->chat_id, text, chat_operator(c) != NULL, NULL, NULL, 0, 0);
}

/* say() a phrase of tgbot.h with its arguments, in the chat's language. */
#define SAYF(tg, c, ...)                                                                 \
    do {                                                                                 \
        char *s_ = cca_tgbot_format(chat_lang(c), __VA_ARGS__);                          \
        say(tg, c, s_);                                                                  \
        free(s_);                                                                        \
    } while (0)

/* A customer left (blocked the bot) or an operator did: stop sending to them. */
static void blocked(struct cca_telegram *tg, int64_t chat_id)
{
    struct chat *c = chat_get(tg, chat_id);
    const char *op = chat_operator(c);
    size_t n = cca_tgsend_drop_chat(tg->sendq, chat_id, drop_item, tg);

    cca_log(LOG_NOTICE,
            "telegram: chat %" PRId64 " blocked the bot (%s); %zu sends dropped", chat_id,
            op != NULL ? "an operator" : "a customer", n);
    (void)json_object_set_new(c->doc, "blocked", json_true());
    chat_save(tg, c, false);
    if (op != NULL) {
        struct cca_engine_request req = {.op = CCA_OP_OPERATOR_UPDATE,
                                         .has_status = true,
                                         .status = CCA_OPERATOR_OFFLINE};
        struct call *k = call_new(put_done, NULL);

        (void)snprintf(req.target, sizeof(req.target), "%s", op);
        (void)snprintf(req.actor, sizeof(req.actor), "system");
        req.reason = cca_xstrdup("telegram_blocked");
        (void)submit(tg, &req, k);
    }
}

static void sent(struct cca_telegram *tg, struct ev *ev)
{
    struct item *it = ev->item;
    struct cca_tg_response r = {0};
    enum cca_tg_verdict v = CCA_TG_RETRY;
    int64_t now = cca_time_mono_ms();
    struct item *x = NULL;

    tg->sends--;
    if (ev->res.status != 0) {
        cca_tg_response_parse(ev->res.body, ev->res.body_len, ev->res.status, &r);
        v = cca_tg_classify(&r);
    }
    atomic_fetch_add_explicit(&tg->m.sends[v], 1, memory_order_relaxed);
    switch (v) {
        case CCA_TG_DONE:
            cca_hist_observe_us(&tg->m.send_seconds, cca_time_mono_us() - it->t0_us);
            x = cca_tgsend_done(tg->sendq, it->chat_id, CCA_TGSEND_SENT, 0, false, now);
            break;
        case CCA_TG_RETRY_AFTER:
            (void)cca_tgsend_done(tg->sendq, it->chat_id, CCA_TGSEND_RETRY_AFTER,
                                  r.retry_after_s * 1000, false, now);
            break;
        case CCA_TG_RETRY:
            if (++it->attempts < SEND_MAX_ATTEMPTS) {
                (void)cca_tgsend_done(tg->sendq, it->chat_id, CCA_TGSEND_RETRY, 0, false,
                                      now);
                break;
            }
            cca_log(LOG_WARNING,
                    "telegram: %s to chat %" PRId64 " dropped after %u attempts",
                    it->method, it->chat_id, it->attempts);
            x = cca_tgsend_done(tg->sendq, it->chat_id, CCA_TGSEND_FAILED, 0, false, now);
            break;
        case CCA_TG_BLOCKED:
            blocked(tg, it->chat_id); /* drops @it with the rest */
            break;
        case CCA_TG_MIGRATED:
        case CCA_TG_REJECTED:
            cca_log(LOG_WARNING, "telegram: %s to chat %" PRId64 " refused: %ld %s",
                    it->method, it->chat_id, r.error_code, r.description);
            x = cca_tgsend_done(tg->sendq, it->chat_id, CCA_TGSEND_FAILED, 0, false, now);
            break;
    }
    if (x != NULL)
        item_finish(tg, x);
    cca_tg_response_cleanup(&r);
}

/* ---- the outbox: what a committed dialog holds beyond its cursors ---------------- */

static struct deliv *deliv_find(struct cca_telegram *tg, const char *dialog_id)
{
    return table_get(&tg->delivs, dialog_id);
}

static struct deliv *deliv_add(struct cca_telegram *tg, const char *dialog_id,
                               json_t *doc)
{
    struct deliv *d = cca_xcalloc(1, sizeof(*d));
    char name[64];

    (void)snprintf(d->dialog_id, sizeof(d->dialog_id), "%s", dialog_id);
    (void)snprintf(name, sizeof(name), "dialog:%s", dialog_id);
    doc_key(name, d->key);
    if (doc != NULL) {
        d->acked[0] = d->scan[0] = jint(doc, "m");
        d->acked[1] = d->scan[1] = jint(doc, "t");
        d->csat_asked = d->csat_acked = json_is_true(json_object_get(doc, "csat"));
    }
    table_put(&tg->delivs, d->dialog_id, d);
    return d;
}

static void deliv_free(void *val)
{
    struct deliv *d = val;

    free(d->out[0]);
    free(d->out[1]);
    free(d);
}

/* The customer's name in a dialog, or "". */
static const char *customer_name(json_t *doc)
{
    const char *n = jstr(json_object_get(doc, "customer_info"), "name");

    return n != NULL ? n : "";
}

static enum cca_lang dialog_lang(json_t *doc, struct chat *c)
{
    const char *l = jstr(doc, "language");

    if (l != NULL)
        return strcmp(l, "ru") == 0 ? CCA_LANG_RU : CCA_LANG_EN;
    return c != NULL ? chat_lang(c) : CCA_LANG_EN;
}

/*
 * Why a dialog came to a human, for its card: the transfer's reason, or the
 * escalation's (the last move away from the AI: "customer_request",
 * "supervisor", ...), then the AI's routing of the last routed turn (agent,
 * method and the words that decided it).
 */
static void card_reason(json_t *doc, json_t *transfer, char *buf, size_t size)
{
    json_t *trs = json_object_get(json_object_get(doc, "metadata"), "transitions");
    json_t *messages = json_object_get(doc, "messages");
    const char *why = jstr(transfer, "reason");
    json_t *route = NULL;
    size_t len;

    for (size_t i = json_array_size(trs); why == NULL && i-- > 0;) {
        const char *from = jstr(json_array_get(trs, i), "from");

        if (from != NULL && strcmp(from, "agent") == 0)
            why = jstr(json_array_get(trs, i), "reason");
    }
    for (size_t i = json_array_size(messages); route == NULL && i-- > 0;)
        route = json_object_get(json_array_get(messages, i), "route");
    len = (size_t)snprintf(buf, size, "%s", why != NULL ? why : "");
    if (jstr(route, "agent") != NULL && len < size) {
        json_t *matched = json_object_get(route, "matched");

        len += (size_t)snprintf(buf + len, size - len, "%sAI: %s (%s", len ? "; " : "",
                                jstr(route, "agent"),
                                jstr(route, "method") ? jstr(route, "method") : "?");
        for (size_t i = 0; i < json_array_size(matched) && i < 3 && len < size; i++)
            len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : ": ",
                                    json_string_value(json_array_get(matched, i)) ?: "");
        if (len < size)
            (void)snprintf(buf + len, size - len, ")");
    }
}

/* The card of dialog @doc for operator chat @oc (a new assignment or transfer). */
static void send_card(struct cca_telegram *tg, struct chat *oc, json_t *doc,
                      struct deliv *d, int64_t idx, bool transfer, json_t *tr)
{
    json_t *messages = json_object_get(doc, "messages");
    size_t n = json_array_size(messages);
    size_t first = n > CARD_LINES ? n - CARD_LINES : 0;
    struct cca_tgbot_line lines[CARD_LINES];
    struct cca_tgbot_card card = {0};
    char reason[256];
    char *text;

    for (size_t i = first; i < n; i++) {
        json_t *m = json_array_get(messages, i);

        lines[i - first].role = jstr(m, "role");
        lines[i - first].text = jstr(m, "content");
    }
    card_reason(doc, transfer ? tr : NULL, reason, sizeof(reason));
    card.number = number_of(tg, oc, jstr(doc, "dialog_id"), true);
    card.name = customer_name(doc);
    card.lang = jstr(doc, "language");
    card.channel = jstr(doc, "source");
    card.reason = reason;
    card.waited_s = -1;
    card.lines = lines;
    card.nlines = n - first;
    card.transfer = transfer;
    text = cca_tgbot_card_text(&card, chat_lang(oc));
    say_to(tg, oc->chat_id, text, true,
           cca_tgbot_card_keyboard(card.number, chat_lang(oc)), d, 1, idx);
    free(text);
}

/* Message @m (index @i) of @doc to customer chat @chat_id. */
static void to_customer(struct cca_telegram *tg, int64_t chat_id, json_t *m,
                        struct deliv *d, int64_t i)
{
    json_t *ch = json_object_get(m, "channel");
    const char *content = jstr(m, "content");

    if (jstr(ch, "media") != NULL && jint(ch, "chat_id") != 0 &&
        jint(ch, "message_id") > 0) {
        /* An operator's photo, document...: the very message (seed 002, copy_message). */
        enqueue(tg,
                item_new(chat_id, "copyMessage",
                         cca_tg_copy_message(chat_id, jint(ch, "chat_id"),
                                             jint(ch, "message_id"), NULL, false, NULL),
                         d, 0, i));
        return;
    }
    if (content != NULL && content[0] != '\0')
        say_to(tg, chat_id, content, false, NULL, d, 0, i);
}

/* Customer message @m (index @i) of @doc to the owning operator's chat @oc. */
static void to_operator(struct cca_telegram *tg, struct chat *oc, json_t *doc, json_t *m,
                        struct deliv *d, int64_t i)
{
    json_t *ch = json_object_get(m, "channel");
    unsigned number = number_of(tg, oc, jstr(doc, "dialog_id"), true);
    const char *media = jstr(ch, "media");
    char *text;

    if (media != NULL && jint(ch, "chat_id") != 0 && jint(ch, "message_id") > 0) {
        text =
            cca_tgbot_relay_text(customer_name(doc), number, media, jstr(ch, "caption"));
        if (cca_tg_utf16_len(text, strlen(text)) > CCA_TG_CAPTION_MAX)
            text[0] = '\0'; /* a caption too long for a copy: the name alone */
        if (text[0] == '\0') {
            free(text);
            text = cca_tgbot_relay_text(customer_name(doc), number, media, NULL);
        }
        enqueue(tg,
                item_new(oc->chat_id, "copyMessage",
                         cca_tg_copy_message(oc->chat_id, jint(ch, "chat_id"),
                                             jint(ch, "message_id"), text, true, NULL),
                         d, 0, i));
        free(text);
        return;
    }
    text = cca_tgbot_relay_text(customer_name(doc), number, NULL, jstr(m, "content"));
    say_to(tg, oc->chat_id, text, true, NULL, d, 0, i);
    free(text);
}

/* The transitions beyond the cursor: cards to new Telegram owners, notices to old ones.
 * Returns the chat of the operator whose card covers the messages so far, or NULL. */
static struct chat *scan_transitions(struct cca_telegram *tg, json_t *doc,
                                     struct deliv *d)
{
    json_t *trs = json_object_get(json_object_get(doc, "metadata"), "transitions");
    size_t n = json_array_size(trs);
    struct chat *covered = NULL;

    for (size_t i = (size_t)d->scan[1]; i < n; i++) {
        json_t *tr = json_array_get(trs, i);
        const char *to = jstr(tr, "to");
        const char *op = jstr(tr, "operator_id");
        const char *prev = jstr(tr, "prev_operator_id");
        struct chat *oc =
            to != NULL && strcmp(to, "operator") == 0 ? chat_of_operator(tg, op) : NULL;
        struct chat *pc = chat_of_operator(tg, prev);

        d->scan[1] = (int64_t)i + 1;
        if (pc != NULL && pc != oc) {
            unsigned number = number_of(tg, pc, d->dialog_id, false);
            char *s = cca_tgbot_format(chat_lang(pc),
                                       to != NULL && strcmp(to, "agent") == 0
                                           ? CCA_TGBOT_HANDED_BACK
                                           : CCA_TGBOT_TRANSFERRED,
                                       number, customer_name(doc));

            say_to(tg, pc->chat_id, s, true, NULL, d, 1, (int64_t)i);
            free(s);
            forget_number(tg, pc, d->dialog_id);
        }
        if (oc != NULL && oc != pc) {
            send_card(tg, oc, doc, d, (int64_t)i, prev != NULL, tr);
            covered = oc;
        }
    }
    return covered;
}

/* Everything @doc (dialog @id) holds that its cursors have not queued yet. */
static void scan(struct cca_telegram *tg, const char *id, json_t *doc)
{
    struct deliv *d = deliv_find(tg, id);
    int64_t cchat = customer_chat_of(doc);
    const char *owner_op = NULL;
    enum cca_owner owner = cca_dialog_get_owner(doc, &owner_op);
    struct chat *oc = owner == CCA_OWNER_OPERATOR ? chat_of_operator(tg, owner_op) : NULL;
    json_t *messages = json_object_get(doc, "messages");
    size_t n = json_array_size(messages);
    struct chat *covered;
    json_t *trs = json_object_get(json_object_get(doc, "metadata"), "transitions");
    bool relevant = cchat != 0 || oc != NULL;

    if (d == NULL) {
        /* A dialog of none of ours, and none of ours ever owned it: nothing to do. */
        for (size_t i = 0; !relevant && i < json_array_size(trs); i++) {
            json_t *tr = json_array_get(trs, i);

            relevant = chat_of_operator(tg, jstr(tr, "operator_id")) != NULL ||
                       chat_of_operator(tg, jstr(tr, "prev_operator_id")) != NULL;
        }
        if (!relevant)
            return;
        d = deliv_add(tg, id, NULL);
    }
    covered = scan_transitions(tg, doc, d);
    for (size_t i = (size_t)d->scan[0]; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        const char *role = jstr(m, "role");

        d->scan[0] = (int64_t)i + 1;
        if (role == NULL)
            continue;
        if (strcmp(role, "customer") == 0) {
            /* A new owner's card showed it already. */
            if (oc != NULL && oc != covered)
                to_operator(tg, oc, doc, m, d, (int64_t)i);
        } else if (cchat != 0 && jstr(m, "kind") != NULL &&
                   strcmp(jstr(m, "kind"), "csat") == 0 &&
                   json_object_get(doc, "rating") == NULL) {
            /* The closing question of the dialog (handoff.c) gets the 1..5 buttons. */
            d->csat_asked = true;
            say_to(tg, cchat, jstr(m, "content"), false, cca_tgbot_rate_keyboard(id), d,
                   0, (int64_t)i);
        } else if (cchat != 0) {
            to_customer(tg, cchat, m, d, (int64_t)i);
        }
    }
    /* The dialog's own rating question (kind "csat", handoff.c) is the one asked,
     * also when an earlier run sent it (its cursor passed it). */
    for (size_t i = 0; !d->csat_asked && i < n; i++) {
        const char *kind = jstr(json_array_get(messages, i), "kind");

        d->csat_asked = kind != NULL && strcmp(kind, "csat") == 0;
    }
    if (cca_dialog_get_status(doc) == CCA_DIALOG_CLOSED && oc != NULL)
        forget_number(tg, oc, id); /* the operator's numbers are for open dialogs */
    if (cchat != 0 && !d->csat_asked && cca_dialog_get_status(doc) == CCA_DIALOG_CLOSED &&
        json_object_get(doc, "rating") == NULL) {
        struct chat *c = chat_get(tg, cchat);

        d->csat_asked = true;
        say_to(tg, cchat, cca_tgbot_text(CCA_TGBOT_RATE_ASK, dialog_lang(doc, c)), false,
               cca_tgbot_rate_keyboard(id), d, 2, 0);
    }
    /* Nothing was outstanding: the cursors move now (a dialog of nothing to send). */
    deliv_ack(tg, d, 0, -1);
    deliv_ack(tg, d, 1, -1);
}

static void observe(struct cca_telegram *tg, const char *id)
{
    json_t *doc = NULL;

    if (cca_engine_get_dialog(tg->engine, id, &doc, NULL) != CCA_OK)
        return; /* deleted */
    scan(tg, id, doc);
    json_decref(doc);
}

/*
 * setMyCommands: with @c NULL the default list (every private chat) in @lang (NULL:
 * any language): the customers' commands; with @c an operator's chat, every command
 * in their language, scoped to that chat (BotCommandScopeChat).
 */
static void commands(struct cca_telegram *tg, struct chat *c, const char *lang)
{
    json_t *all =
        cca_tgbot_commands(c != NULL                                 ? chat_lang(c)
                           : lang != NULL && strcmp(lang, "ru") == 0 ? CCA_LANG_RU
                                                                     : CCA_LANG_EN);
    json_t *list = json_array();
    json_t *body;
    size_t i;
    json_t *cmd;

    json_array_foreach (all, i, cmd) {
        enum cca_tgbot_cmd k = cca_tgbot_cmd_parse(jstr(cmd, "command"));

        if (c != NULL || k == CCA_TGBOT_CMD_START || k == CCA_TGBOT_CMD_HELP)
            (void)json_array_append(list, cmd);
    }
    body = cca_tg_set_commands(list, lang);
    if (c != NULL)
        (void)json_object_set_new(
            body, "scope",
            json_pack("{s:s, s:I}", "type", "chat", "chat_id", (json_int_t)c->chat_id));
    direct(tg, "setMyCommands", body);
    json_decref(list);
    json_decref(all);
}

/* ---- updates: the poll and the batch ------------------------------------------------
 */

static void run_task(struct cca_telegram *tg, struct task *t);

static void poll_start(struct cca_telegram *tg)
{
    struct item *it = cca_xcalloc(1, sizeof(*it));
    json_t *body = cca_tg_get_updates(tg->offset, CCA_TG_UPDATES_LIMIT,
                                      (int)tg->cfg->telegram_poll_timeout_s);

    it->tg = tg;
    (void)snprintf(it->method, sizeof(it->method), "getUpdates");
    it->body = json_dumps(body, JSON_COMPACT);
    it->len = strlen(it->body);
    json_decref(body);
    tg->poll_at = 0;
    if (!start_fetch(tg, it, (long)(tg->cfg->telegram_poll_timeout_s + 15) * 1000,
                     POLL_RESPONSE_MAX, &tg->poll_id)) {
        item_free(it);
        tg->poll_at = cca_time_mono_ms() + 1000;
        return;
    }
    tg->polling = true;
}

/* The batch is done when its updates and their writes are: store the offset, poll. */
static void check_batch(struct cca_telegram *tg)
{
    if (tg->webhook || tg->polling || tg->poll_at != 0 || tg->tasks_left > 0 ||
        tg->batch_calls > 0 || tg->stopping)
        return;
    if (tg->batch_failed && ++tg->batch_tries <= BATCH_TRIES) {
        /* Ask for the same updates again: those handled are skipped, and the keys
         * make any repeat a replay. */
        tg->batch_failed = false;
        tg->poll_at = cca_time_mono_ms() + 1000 * tg->batch_tries;
        return;
    }
    if (tg->batch_failed)
        cca_log(LOG_ERR, "telegram: updates up to %" PRId64 " failed %u times; given up",
                tg->batch_max, BATCH_TRIES + 1);
    tg->batch_failed = false;
    tg->batch_tries = 0;
    tg->ndone = 0;
    if (tg->batch_max >= tg->offset) {
        tg->offset = tg->batch_max + 1;
        (void)json_object_set_new(tg->state_doc, "offset", json_integer(tg->offset));
        tg->state_dirty = true; /* written at the next flush (FLUSH_MS) */
    }
    poll_start(tg);
}

/* Tell a webhook's caller how its update ended (a transient failure: again). */
static void answer_now(cca_engine_done_fn done, void *ctx, bool failed)
{
    struct cca_error err = {0};

    if (failed)
        (void)cca_error_set(&err, CCA_ERR_UNAVAILABLE, "the update could not be stored");
    done(ctx, failed ? CCA_ERR_UNAVAILABLE : CCA_OK, failed ? NULL : json_object(), &err);
}

/* The answers held for @c's write: now, failed or not. */
static void answers_flush(struct chat *c, bool failed)
{
    while (c->answers != NULL) {
        struct answer *a = c->answers;

        c->answers = a->next;
        answer_now(a->done, a->ctx, failed);
        free(a);
    }
}

/*
 * A webhook's update is answered once its change is durable: the engine's
 * operation was, and the chat's own document (a name, an operator link) is
 * when no write of it is in flight; else the answer waits for that write.
 */
static void webhook_answer(struct task *t, bool failed)
{
    if (t->done == NULL)
        return;
    if (t->c != NULL && t->c->writing && !failed) {
        struct answer *a = cca_xcalloc(1, sizeof(*a));

        a->done = t->done;
        a->ctx = t->done_ctx;
        a->next = t->c->answers;
        t->c->answers = a;
    } else {
        answer_now(t->done, t->done_ctx, failed);
    }
    t->done = NULL;
}

static void task_done(struct cca_telegram *tg, struct task *t)
{
    struct chat *c = t->c;

    webhook_answer(t, t->failed);
    if (!t->failed && t->done_ctx == NULL) {
        if (tg->ndone == tg->capdone) {
            tg->capdone = tg->capdone ? tg->capdone * 2 : 128;
            tg->done_ids = cca_xrealloc(tg->done_ids, tg->capdone * sizeof(int64_t));
        }
        tg->done_ids[tg->ndone++] = t->u.update_id;
    }
    c->head = t->next;
    if (c->head == NULL)
        c->tail = NULL;
    c->busy = false;
    cca_tg_update_cleanup(&t->u);
    free(t);
    tg->tasks_left--;
    if (c->head != NULL)
        run_task(tg, c->head);
}

/* Queue @t behind its chat's earlier updates; true when it is the chat's first. */
static bool task_queue(struct cca_telegram *tg, struct task *t)
{
    t->t0_us = cca_time_mono_us();
    t->c = chat_get(tg, t->u.chat_id);
    tg->tasks_left++;
    if (t->c->tail != NULL) {
        t->c->tail->next = t;
        t->c->tail = t;
        return false;
    }
    t->c->head = t->c->tail = t;
    return true;
}

/* An update is served: a private chat's message, edit or button from a person. */
static bool served(const struct cca_tg_update *u)
{
    return u->kind != CCA_TG_OTHER && u->chat_id != 0 && u->chat_private && !u->is_bot;
}

static void polled(struct cca_telegram *tg, struct ev *ev)
{
    struct cca_tg_response r = {0};
    struct chat **first; /* the chats of the batch, in order of their first update */
    size_t n, nfirst = 0;

    tg->sends--;
    tg->polling = false;
    item_free(ev->item);
    if (tg->stopping)
        return;
    if (ev->res.status != 0)
        cca_tg_response_parse(ev->res.body, ev->res.body_len, ev->res.status, &r);
    if (!r.ok || !json_is_array(r.result)) {
        atomic_fetch_add_explicit(&tg->m.polls_failed, 1, memory_order_relaxed);
        tg->poll_backoff = tg->poll_backoff == 0 ? 500 : tg->poll_backoff * 2;
        if (tg->poll_backoff > POLL_BACKOFF_MAX)
            tg->poll_backoff = POLL_BACKOFF_MAX;
        if (r.retry_after_s > 0)
            tg->poll_backoff = r.retry_after_s * 1000;
        cca_log(
            LOG_WARNING, "telegram: getUpdates failed (%ld %s); again in %" PRId64 " ms",
            ev->res.status != 0 ? r.error_code : 0L,
            ev->res.status != 0 ? r.description : ev->res.error_text, tg->poll_backoff);
        tg->poll_at = cca_time_mono_ms() + tg->poll_backoff;
        cca_tg_response_cleanup(&r);
        return;
    }
    tg->poll_backoff = 0;
    n = json_array_size(r.result);
    first = cca_xcalloc(n + 1, sizeof(*first));
    tg->batch_max = tg->offset - 1;
    for (size_t i = 0; i < n; i++) {
        struct task *t = cca_xcalloc(1, sizeof(*t));
        struct cca_error err = {0};
        bool dup = false;

        if (cca_tg_update_parse(json_array_get(r.result, i), &t->u, &err) != CCA_OK ||
            t->u.update_id < tg->offset) {
            cca_tg_update_cleanup(&t->u);
            free(t);
            continue;
        }
        if (t->u.update_id > tg->batch_max)
            tg->batch_max = t->u.update_id;
        /* The same update twice in one answer, or one handled before a retry. */
        for (size_t j = 0; j < i && !dup; j++)
            dup = jint(json_array_get(r.result, j), "update_id") == t->u.update_id;
        for (size_t j = 0; j < tg->ndone && !dup; j++)
            dup = tg->done_ids[j] == t->u.update_id;
        if (dup) {
            atomic_fetch_add_explicit(&tg->m.replays, 1, memory_order_relaxed);
            cca_tg_update_cleanup(&t->u);
            free(t);
            continue;
        }
        atomic_fetch_add_explicit(&tg->m.updates[t->u.kind], 1, memory_order_relaxed);
        if (!served(&t->u)) {
            cca_tg_update_cleanup(&t->u); /* groups and channels are not served */
            free(t);
            continue;
        }
        if (task_queue(tg, t))
            first[nfirst++] = t->c;
    }
    cca_tg_response_cleanup(&r);
    /* Start each chat's first update (chats in parallel, each chat in order). */
    for (size_t i = 0; i < nfirst; i++)
        if (!first[i]->busy && first[i]->head != NULL)
            run_task(tg, first[i]->head);
    free(first);
    check_batch(tg);
}

/* ---- updates: customers --------------------------------------------------------------
 */

static bool transient(cca_rc rc)
{
    return rc == CCA_ERR_UNAVAILABLE || rc == CCA_ERR_IO || rc == CCA_ERR_NO_SPACE ||
           rc == CCA_ERR_TIMEOUT || rc == CCA_ERR_INTERNAL;
}

/* The result of a task's last operation: a transient failure asks for the batch again. */
static void task_end(struct cca_telegram *tg, struct task *t, cca_rc rc,
                     const struct cca_error *err)
{
    if (rc != CCA_OK && transient(rc)) {
        cca_log(LOG_WARNING, "telegram: update %" PRId64 " will be retried: %s",
                t->u.update_id, err != NULL ? err->msg : "");
        tg->batch_failed = true;
        t->failed = true;
    }
    task_done(tg, t);
}

/* The "tg:<update_id>" key of @t's operation and its fingerprint. */
static void keyed(const struct task *t, struct cca_engine_request *req)
{
    char key[40];

    (void)snprintf(key, sizeof(key), "tg:%" PRId64, t->u.update_id);
    req->idempotency_key = cca_xstrdup(key);
    cca_uuid_v5(tg_ns, key, strlen(key), req->request_hash);
}

/* What a customer's or an operator's Telegram message is stored with. */
static json_t *channel_of(const struct cca_tg_update *u)
{
    json_t *ch =
        json_pack("{s:s, s:I, s:I}", "name", "telegram", "chat_id",
                  (json_int_t)u->chat_id, "message_id", (json_int_t)u->message_id);

    if (u->media != CCA_TG_MEDIA_NONE) {
        (void)json_object_set_new(ch, "media", json_string(cca_tg_media_name(u->media)));
        if (u->file_id != NULL)
            (void)json_object_set_new(ch, "file_id", json_string(u->file_id));
        if (u->caption != NULL)
            (void)json_object_set_new(ch, "caption", json_string(u->caption));
    }
    if (u->kind == CCA_TG_EDITED)
        (void)json_object_set_new(ch, "edit", json_true());
    return ch;
}

/* The text a message stands for: its text, or "[photo] caption" for media (the
 * agents' prompts say such a marker is a file they cannot see). */
static char *text_of(const struct cca_tg_update *u)
{
    char *s;

    if (u->media == CCA_TG_MEDIA_NONE)
        return cca_xstrdup(u->text != NULL ? u->text : "");
    if (asprintf(&s, "[%s]%s%s", cca_tg_media_name(u->media), u->caption ? " " : "",
                 u->caption ? u->caption : "") < 0)
        abort();
    return s;
}

/* The newest of a customer's dialogs @ids[0..n) (oldest first) that is not closed, into
 * @ret; false when none. */
static bool open_dialog(struct cca_telegram *tg, char (*ids)[37], size_t n, char ret[37])
{
    bool found = false;

    for (size_t i = n; i-- > 0 && !found;) {
        struct cca_record rec = {0};

        if (cca_engine_get_record(tg->engine, ids[i], &rec) == CCA_OK &&
            rec.status != CCA_DIALOG_CLOSED) {
            memcpy(ret, ids[i], 37);
            found = true;
        }
        cca_record_cleanup(&rec);
    }
    return found;
}

static void turn_done(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                      const struct cca_error *err);

static void create_dialog(struct cca_telegram *tg, struct task *t)
{
    struct cca_engine_request req = {.op = CCA_OP_CREATE};
    struct call *k = call_new(turn_done, t);
    const char *name = jstr(t->c->doc, "name");
    char cid[32];

    customer_id_of(t->u.user_id, cid);
    req.create.customer_id = cca_xstrdup(cid);
    if (name == NULL)
        name = t->u.first_name;
    if (name_ok(name, NAME_MAX_CP))
        req.create.name = cca_xstrdup(name);
    req.create.source = cca_xstrdup("telegram");
    req.create.priority = cca_xstrdup("normal");
    req.create.initial_message = text_of(&t->u);
    req.channel = channel_of(&t->u);
    (void)snprintf(req.actor, sizeof(req.actor), "customer");
    keyed(t, &req);
    k->number = 1; /* a create: no second try */
    if (!submit(tg, &req, k))
        task_end(tg, t, CCA_ERR_UNAVAILABLE, NULL);
}

static void turn_done(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                      const struct cca_error *err)
{
    (void)result;
    /* The dialog closed in between: the message opens the customer's next one. */
    if (rc == CCA_ERR_CONFLICT && k->number == 0) {
        create_dialog(tg, k->task);
        return;
    }
    if (rc != CCA_OK && !transient(rc))
        cca_log(LOG_NOTICE, "telegram: update %" PRId64 " not taken: %s",
                k->task->u.update_id, err->msg);
    task_end(tg, k->task, rc, err);
}

/* A customer's message: a turn of their open dialog, or their next dialog. */
/*
 * Was update @t handled before (a batch asked for again after a crash or a
 * failure)? Its key is in the newest two of the customer's dialogs @ids[0..n)
 * (oldest first): as the create that made one, or as a message, also when
 * that dialog closed in between.
 */
static bool handled_before(struct cca_telegram *tg, struct task *t, char (*ids)[37],
                           size_t n)
{
    char key[40];
    int64_t now = cca_time_wall_ms();
    int64_t ttl = (int64_t)tg->cfg->idempotency_ttl_s * 1000;
    bool seen = false;

    (void)snprintf(key, sizeof(key), "tg:%" PRId64, t->u.update_id);
    for (size_t i = n; i-- > 0 && i + 2 >= n && !seen;) {
        json_t *doc = NULL;
        const char *made_by;

        if (cca_engine_get_dialog(tg->engine, ids[i], &doc, NULL) != CCA_OK)
            continue;
        made_by = cca_dialog_create_key(doc, now, ttl);
        seen = (made_by != NULL && strcmp(made_by, key) == 0) ||
               cca_dialog_find_idempotency(doc, key, "message", now, ttl) != NULL;
        json_decref(doc);
    }
    if (seen)
        atomic_fetch_add_explicit(&tg->m.replays, 1, memory_order_relaxed);
    return seen;
}

/* A customer's message: a turn of their open dialog, or their next dialog. */
static void customer_turn(struct cca_telegram *tg, struct task *t)
{
    struct cca_engine_request req = {.op = CCA_OP_MESSAGE};
    struct cca_record_filter f;
    char(*ids)[37];
    size_t n = 0;
    char cid[32];
    char id[37];
    bool seen, open;
    struct call *k;

    /* The customer's dialogs, selected once for both questions below. */
    customer_id_of(t->u.user_id, cid);
    cca_record_filter_init(&f);
    f.customer_id = cid;
    ids = cca_engine_select(tg->engine, CCA_STORE_DIALOGS, &f, &n);
    seen = handled_before(tg, t, ids, n);
    open = !seen && open_dialog(tg, ids, n, id);
    free(ids);
    if (seen) {
        task_done(tg, t);
        return;
    }
    if (!open) {
        create_dialog(tg, t);
        return;
    }
    k = call_new(turn_done, t);
    memcpy(req.id, id, sizeof(req.id));
    req.text = text_of(&t->u);
    req.channel = channel_of(&t->u);
    (void)snprintf(req.actor, sizeof(req.actor), "customer");
    keyed(t, &req);
    if (!submit(tg, &req, k))
        task_end(tg, t, CCA_ERR_UNAVAILABLE, NULL);
}

static void name_done(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                      const struct cca_error *err)
{
    struct chat *c = k->c;

    (void)result;
    if (rc == CCA_OK) {
        (void)json_object_set(c->doc, "name", k->doc);
        (void)json_object_del(c->doc, "stage");
        chat_save(tg, c, true);
        SAYF(tg, c, CCA_TGBOT_NAME_SAVED, jstr(c->doc, "name"));
    }
    task_end(tg, k->task, rc, err);
}

/* The customer answered "what is your name?" (seed 001): into their profile. */
static void take_name(struct cca_telegram *tg, struct task *t)
{
    struct cca_engine_request req = {.op = CCA_OP_CUSTOMER_PUT};
    const char *text = t->u.text;
    struct call *k;
    char cid[32];

    if (!name_ok(text, NAME_MAX_CP)) {
        SAYF(tg, t->c, CCA_TGBOT_BAD_NAME);
        task_done(tg, t);
        return;
    }
    customer_id_of(t->u.user_id, cid);
    req.text = cca_xstrdup(cid);
    cca_customer_key(cid, req.target);
    req.customer = cca_xcalloc(1, sizeof(*req.customer));
    req.customer->set = CCA_CUSTOMER_F_FULL_NAME | CCA_CUSTOMER_F_LANGUAGE;
    req.customer->full_name = cca_xstrdup(text);
    req.customer->language = cca_xstrdup(cca_lang_code(chat_lang(t->c)));
    (void)snprintf(req.actor, sizeof(req.actor), "customer");
    k = call_new(name_done, t);
    k->doc = json_string(text); /* the chat's document takes it once it is stored */
    if (!submit(tg, &req, k))
        task_end(tg, t, CCA_ERR_UNAVAILABLE, NULL);
}

static void rate_done(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                      const struct cca_error *err)
{
    struct chat *c = k->c;

    (void)result;
    if (rc == CCA_OK) {
        direct(tg, "editMessageReplyMarkup",
               cca_tg_edit_markup(c->chat_id, k->task->u.message_id, NULL));
        SAYF(tg, c, CCA_TGBOT_RATE_THANKS, k->score);
    }
    task_end(tg, k->task, rc, err);
}

/* A rating button (seed 000's CSAT): only the dialog's own customer may press it. */
static void rate(struct cca_telegram *tg, struct task *t, int score,
                 const char *dialog_id)
{
    struct cca_engine_request req = {.op = CCA_OP_RATE, .score = score};
    json_t *doc = NULL;
    char cid[32];
    bool mine = false;
    struct call *k;

    customer_id_of(t->u.user_id, cid);
    if (cca_engine_get_dialog(tg->engine, dialog_id, &doc, NULL) == CCA_OK) {
        const char *owner = jstr(doc, "customer_id");

        mine = owner != NULL && strcmp(owner, cid) == 0;
        json_decref(doc);
    }
    if (!mine) {
        task_done(tg, t);
        return;
    }
    memcpy(req.id, dialog_id, 37);
    (void)snprintf(req.actor, sizeof(req.actor), "customer");
    k = call_new(rate_done, t);
    k->score = score;
    if (!submit(tg, &req, k))
        task_end(tg, t, CCA_ERR_UNAVAILABLE, NULL);
}

/* ---- updates: operators ------------------------------------------------------------ */

/* Is dialog @id owned by operator @op now? *ret_doc (may be NULL) gets a reference. */
static bool owned_by(struct cca_telegram *tg, const char *id, const char *op,
                     json_t **ret_doc)
{
    json_t *doc = NULL;
    const char *owner = NULL;
    bool mine;

    if (cca_engine_get_dialog(tg->engine, id, &doc, NULL) != CCA_OK)
        return false;
    mine = cca_dialog_get_owner(doc, &owner) == CCA_OWNER_OPERATOR && owner != NULL &&
           strcmp(owner, op) == 0;
    if (mine && ret_doc != NULL)
        *ret_doc = doc;
    else
        json_decref(doc);
    return mine;
}

/*
 * The client an operator names in @args (a short number or a dialog id), into @id;
 * *ret_rest after it. With @args empty: the focused client, else the only one.
 * False (and the operator told) when it names none of theirs.
 */
static bool client_of(struct cca_telegram *tg, struct chat *c, const char *args,
                      bool need_own, char id[37], const char **ret_rest)
{
    const char *op = chat_operator(c);
    unsigned number = 0;
    const char *d = NULL;

    *ret_rest = args;
    if (args[0] == '\0') {
        json_t *clients = json_object_get(c->doc, "clients");
        const char *k;
        json_t *v;
        unsigned own = 0;

        number = (unsigned)jint(c->doc, "focus");
        d = number != 0 ? dialog_of_number(c, number) : NULL;
        if (d == NULL || !owned_by(tg, d, op, NULL)) {
            d = NULL;
            json_object_foreach (clients, k, v) {
                if (json_is_string(v) && owned_by(tg, json_string_value(v), op, NULL)) {
                    own++;
                    d = json_string_value(v);
                }
            }
            if (own != 1)
                d = NULL;
        }
        if (d == NULL) {
            SAYF(tg, c, CCA_TGBOT_NEED_FOCUS);
            return false;
        }
        memcpy(id, d, 37);
        return true;
    }
    if (!cca_tgbot_parse_client(args, &number, id, ret_rest) ||
        (number != 0 && (d = dialog_of_number(c, number)) == NULL)) {
        char word[64];

        (void)sscanf(args, "%63s", word);
        SAYF(tg, c, CCA_TGBOT_UNKNOWN_CLIENT, word);
        return false;
    }
    if (d != NULL)
        (void)snprintf(id, 37, "%s", d);
    if (need_own && !owned_by(tg, id, op, NULL)) {
        char word[64];

        (void)sscanf(args, "%63s", word);
        SAYF(tg, c, CCA_TGBOT_UNKNOWN_CLIENT, word);
        return false;
    }
    return true;
}

static void as_operator(struct chat *c, struct cca_engine_request *req)
{
    const char *op = chat_operator(c);

    (void)snprintf(req->actor, sizeof(req->actor), "operator:%s", op);
    (void)snprintf(req->actor_operator, sizeof(req->actor_operator), "%s", op);
}

static void op_done(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                    const struct cca_error *err)
{
    struct chat *c = k->c;
    const char *id = jstr(result, "dialog_id");

    if (rc == CCA_OK && k->what == 'n' && id != NULL) {
        /* /next, /use: the dialog taken is the one plain messages go to. */
        unsigned n = number_of(tg, c, id, true);

        (void)json_object_set_new(c->doc, "focus", json_integer(n));
        chat_save(tg, c, true);
    } else if (rc == CCA_OK && k->what == 'e') {
        json_t *doc = NULL;

        if (cca_engine_get_dialog(tg->engine, k->id, &doc, NULL) == CCA_OK) {
            SAYF(tg, c, CCA_TGBOT_ENDED, k->number, customer_name(doc));
            json_decref(doc);
        }
    } else if (rc == CCA_OK && k->what == 's') {
        SAYF(tg, c, CCA_TGBOT_STATUS_SET,
             cca_tgbot_status_name(jstr(k->doc, "status"), chat_lang(c)));
    } else if (rc == CCA_ERR_NOT_FOUND && k->what == 'n') {
        SAYF(tg, c, CCA_TGBOT_QUEUE_EMPTY);
    } else if (rc != CCA_OK && !transient(rc)) {
        SAYF(tg, c, CCA_TGBOT_FAILED, err->msg);
    }
    task_end(tg, k->task, rc, err);
}

/* Submit an operator's @req for @t: @what says what op_done tells them after. */
static void op_submit(struct cca_telegram *tg, struct task *t,
                      struct cca_engine_request *req, int what, const char *id,
                      unsigned number)
{
    struct call *k = call_new(op_done, t);

    as_operator(t->c, req);
    k->what = what;
    k->number = number;
    if (id != NULL)
        (void)snprintf(k->id, sizeof(k->id), "%s", id);
    if (what == 's')
        k->doc = json_pack("{s:s}", "status", cca_operator_status_name(req->status));
    if (!submit(tg, req, k))
        task_end(tg, t, CCA_ERR_UNAVAILABLE, NULL);
}

/* An operator's words (or file) to a client of theirs: the REPLY operation. */
static void reply(struct cca_telegram *tg, struct task *t, const char *id,
                  const char *text, bool with_media)
{
    struct cca_engine_request req = {.op = CCA_OP_REPLY};

    memcpy(req.id, id, 37);
    if (with_media) {
        req.text = text_of(&t->u);
        req.channel = channel_of(&t->u);
    } else {
        req.text = cca_xstrdup(text);
        req.channel = channel_of(&t->u);
    }
    keyed(t, &req);
    op_submit(tg, t, &req, 'r', id, 0);
}

static void set_status(struct cca_telegram *tg, struct task *t,
                       enum cca_operator_status st)
{
    struct cca_engine_request req = {
        .op = CCA_OP_OPERATOR_UPDATE, .has_status = true, .status = st};

    (void)snprintf(req.target, sizeof(req.target), "%s", chat_operator(t->c));
    op_submit(tg, t, &req, 's', NULL, 0);
}

/* /clients and /status: the operator's dialogs now (numbers of dialogs gone are freed).
 */
static void list_clients(struct cca_telegram *tg, struct task *t, bool with_status)
{
    struct chat *c = t->c;
    const char *op = chat_operator(c);
    json_t *clients = json_object_get(c->doc, "clients");
    struct cca_tgbot_client list[64];
    json_t *docs[64];
    size_t n = 0;
    unsigned focus = (unsigned)jint(c->doc, "focus");
    const char *k;
    json_t *v;
    void *tmp;
    json_t *opdoc = NULL;
    char *text;
    bool pruned = false;

    json_object_foreach_safe (clients, tmp, k, v) {
        json_t *doc = NULL;

        if (!json_is_string(v) || !owned_by(tg, json_string_value(v), op, &doc)) {
            (void)json_object_del(clients, k);
            pruned = true;
            continue;
        }
        if (n == 64) {
            json_decref(doc);
            continue;
        }
        docs[n] = doc;
        list[n].number = (unsigned)strtoul(k, NULL, 10);
        list[n].name = customer_name(doc);
        list[n].status = jstr(doc, "status");
        list[n].waiting_s = -1;
        list[n].focused = list[n].number == focus;
        n++;
    }
    if (pruned)
        chat_save(tg, c, true);
    if (with_status && cca_engine_get_operator(tg->engine, op, &opdoc, NULL) != CCA_OK)
        opdoc = NULL;
    text = cca_tgbot_clients_text(with_status ? jstr(opdoc, "status") : NULL, list, n,
                                  chat_lang(c));
    say(tg, c, text);
    free(text);
    json_decref(opdoc);
    for (size_t i = 0; i < n; i++)
        json_decref(docs[i]);
    task_done(tg, t);
}

/* /history <client> [limit]: the customer's dialogs as a text file (seed 001). */
static void history(struct cca_telegram *tg, struct task *t, const char *id,
                    const char *rest)
{
    struct chat *c = t->c;
    struct cca_export_buf b = {0};
    struct cca_record_filter f;
    json_t *doc = NULL;
    char(*ids)[37] = NULL;
    size_t n = 0, first;
    long limit = HISTORY_DEFAULT;
    char *cid = NULL;
    char boundary[40];
    char filename[96];
    uint64_t r[2];
    struct item *it;

    if (rest[0] != '\0') {
        char *end;

        limit = strtol(rest, &end, 10);
        if (limit < 1 || limit > HISTORY_MAX) {
            SAYF(tg, c, CCA_TGBOT_USAGE,
                 cca_tgbot_usage(CCA_TGBOT_CMD_HISTORY, chat_lang(c)));
            task_done(tg, t);
            return;
        }
    }
    if (cca_engine_get_dialog(tg->engine, id, &doc, NULL) != CCA_OK ||
        jstr(doc, "customer_id") == NULL) {
        json_decref(doc);
        task_done(tg, t);
        return;
    }
    cid = cca_xstrdup(jstr(doc, "customer_id"));
    cca_export_history_open(&b, CCA_EXPORT_TXT, cid, customer_name(doc));
    json_decref(doc);
    cca_record_filter_init(&f);
    f.customer_id = cid;
    ids = cca_engine_select(tg->engine, CCA_STORE_DIALOGS, &f, &n);
    first = n > (size_t)limit ? n - (size_t)limit : 0;
    for (size_t i = first; i < n; i++) {
        json_t *d = NULL;

        if (cca_engine_read(tg->engine, CCA_STORE_DIALOGS, ids[i], &d, NULL) == CCA_OK)
            cca_export_history_dialog(&b, CCA_EXPORT_TXT, d, i - first);
        json_decref(d);
    }
    cca_export_history_close(&b, CCA_EXPORT_TXT);
    free(ids);
    if (getrandom(r, sizeof(r), 0) !=
        (ssize_t)sizeof(r)) { /* the boundary needs no secrecy */
        r[0] = (uint64_t)cca_time_mono_us();
        r[1] = (uint64_t)cca_time_wall_ms();
    }
    (void)snprintf(boundary, sizeof(boundary), "cca-%016" PRIx64 "%016" PRIx64, r[0],
                   r[1]);
    (void)snprintf(filename, sizeof(filename), "history-%.60s.txt", cid);
    it = cca_xcalloc(1, sizeof(*it));
    it->chat_id = c->chat_id;
    (void)snprintf(it->method, sizeof(it->method), "sendDocument");
    (void)snprintf(it->boundary, sizeof(it->boundary), "%s", boundary);
    it->body = cca_tg_document_body(c->chat_id, filename, "text/plain; charset=utf-8",
                                    b.data != NULL ? b.data : "", b.len, NULL, true,
                                    boundary, &it->len);
    it->to_operator = true;
    if (it->body != NULL)
        enqueue(tg, it);
    else
        item_free(it);
    cca_export_buf_cleanup(&b);
    free(cid);
    task_done(tg, t);
}

struct stats_fold {
    struct cca_stats *s;
};

static void fold_one(void *ctx, const struct cca_record *r)
{
    cca_stats_add(((struct stats_fold *)ctx)->s, r);
}

static void stats(struct cca_telegram *tg, struct task *t)
{
    struct chat *c = t->c;
    struct cca_record_filter f;
    struct stats_fold sf = {cca_stats_new(chat_operator(c))};
    json_t *j;
    char *text;

    cca_record_filter_init(&f);
    f.operator_id = chat_operator(c);
    cca_engine_fold_records(tg->engine, &f, fold_one, &sf);
    j = cca_stats_operator_json(sf.s);
    text = cca_tgbot_stats_text(j, chat_lang(c));
    say(tg, c, text);
    free(text);
    json_decref(j);
    cca_stats_free(sf.s);
    task_done(tg, t);
}

static void linked(struct cca_telegram *tg, struct call *k, cca_rc rc, json_t *result,
                   const struct cca_error *err)
{
    struct chat *c = k->c;
    char okey[48];

    (void)result;
    if (rc == CCA_OK) {
        (void)json_object_set_new(c->doc, "operator_id", json_string(k->id));
        (void)json_object_del(c->doc, "stage");
        (void)snprintf(okey, sizeof(okey), "o:%s", k->id);
        table_put(&tg->chats, okey, c);
        chat_save(tg, c, true);
        cca_log(LOG_INFO, "telegram: chat %" PRId64 " linked to operator %s", c->chat_id,
                k->id);
        SAYF(tg, c, CCA_TGBOT_REGISTERED, jstr(k->doc, "name"));
        commands(tg, c, NULL);
    }
    task_end(tg, k->task, rc, err);
}

/* /register <secret> (seeds 001, 002) and /operator <PIN> (seed 004). */
static void do_register(struct cca_telegram *tg, struct task *t, bool pin,
                        const char *arg)
{
    const struct cca_config *cfg = tg->cfg;
    struct chat *c = t->c;
    struct cca_operator_reg reg = {0};
    struct cca_engine_request req = {.op = CCA_OP_OPERATOR_CREATE};
    char token[CCA_OPERATOR_TOKEN_LEN + 1];
    char hash[65];
    char name[512];
    int64_t now = cca_time_mono_ms();
    size_t len = strlen(arg);
    bool ok;
    struct call *k;

    /* The secret must not stay in the chat's history (when Telegram lets us). */
    direct(tg, "deleteMessage", cca_tg_delete_message(c->chat_id, t->u.message_id));
    if (chat_operator(c) != NULL) {
        SAYF(tg, c, CCA_TGBOT_ALREADY);
        task_done(tg, t);
        return;
    }
    if (!cfg->operator_secret[0] && !cfg->operator_pins[0]) {
        SAYF(tg, c, CCA_TGBOT_REG_CLOSED);
        task_done(tg, t);
        return;
    }
    if (c->locked_until > now) {
        SAYF(tg, c, CCA_TGBOT_TOO_MANY, (int)((c->locked_until - now + 999) / 1000));
        task_done(tg, t);
        return;
    }
    ok = len > 0 && (pin ? cca_operator_pin_allowed(arg, len, cfg->operator_pins)
                         : cfg->operator_secret[0] &&
                               cca_operator_secret_equal(arg, len, cfg->operator_secret,
                                                         strlen(cfg->operator_secret)));
    if (!ok) {
        if (now - c->wrong_since > WRONG_WINDOW_MS) {
            c->wrong = 0;
            c->wrong_since = now;
        }
        if (++c->wrong >= WRONG_MAX)
            c->locked_until = now + WRONG_LOCK_MS;
        cca_log(LOG_NOTICE, "telegram: chat %" PRId64 " gave a wrong operator %s (%d)",
                c->chat_id, pin ? "PIN" : "secret", c->wrong);
        SAYF(tg, c, CCA_TGBOT_BAD_SECRET);
        task_done(tg, t);
        return;
    }
    c->wrong = 0;
    (void)snprintf(name, sizeof(name), "%s%s%s", t->u.first_name ? t->u.first_name : "",
                   t->u.last_name ? " " : "", t->u.last_name ? t->u.last_name : "");
    if (!name_ok(name, CCA_OPERATOR_NAME_MAX))
        (void)snprintf(name, sizeof(name), "Telegram %" PRId64, t->u.user_id);
    reg.name = name;
    reg.languages =
        CCA_OPERATOR_LANG_BIT(CCA_LANG_RU) | CCA_OPERATOR_LANG_BIT(CCA_LANG_EN);
    reg.max_dialogs = cfg->operator_max_dialogs;
    if (cca_operator_token_new(token, hash) != CCA_OK) {
        SAYF(tg, c, CCA_TGBOT_FAILED, "token");
        task_done(tg, t);
        return;
    }
    /* The token is not shown: this operator works from Telegram (docs/TELEGRAM.md). */
    explicit_bzero(token, sizeof(token));
    k = call_new(linked, t);
    cca_uuid_new(k->id);
    req.operator_doc = cca_operator_new_doc(k->id, &reg, hash, cca_time_wall_ms());
    k->doc = json_pack("{s:s}", "name", name);
    (void)snprintf(req.target, sizeof(req.target), "%s", k->id);
    (void)snprintf(req.actor, sizeof(req.actor), "operator:%s", k->id);
    if (!submit(tg, &req, k))
        task_end(tg, t, CCA_ERR_UNAVAILABLE, NULL);
}

/* An operator's command or button (@cmd with @args). */
static void operator_command(struct cca_telegram *tg, struct task *t,
                             enum cca_tgbot_cmd cmd, const char *args)
{
    struct chat *c = t->c;
    const char *op = chat_operator(c);
    const char *rest = "";
    char id[37];
    unsigned number;

    switch (cmd) {
        case CCA_TGBOT_CMD_AVAILABLE:
            set_status(tg, t, CCA_OPERATOR_AVAILABLE);
            return;
        case CCA_TGBOT_CMD_BUSY:
            set_status(tg, t, CCA_OPERATOR_BUSY);
            return;
        case CCA_TGBOT_CMD_OFFLINE:
            set_status(tg, t, CCA_OPERATOR_OFFLINE);
            return;
        case CCA_TGBOT_CMD_STATUS:
        case CCA_TGBOT_CMD_CLIENTS:
            list_clients(tg, t, cmd == CCA_TGBOT_CMD_STATUS);
            return;
        case CCA_TGBOT_CMD_STATS:
            stats(tg, t);
            return;
        case CCA_TGBOT_CMD_NEXT: {
            struct cca_engine_request req = {.op = CCA_OP_TAKE};

            op_submit(tg, t, &req, 'n', NULL, 0);
            return;
        }
        default:
            break;
    }
    if (cmd == CCA_TGBOT_CMD_FOCUS || cmd == CCA_TGBOT_CMD_REPLY ||
        cmd == CCA_TGBOT_CMD_HISTORY || cmd == CCA_TGBOT_CMD_USE) {
        if (args[0] == '\0') {
            SAYF(tg, c, CCA_TGBOT_USAGE, cca_tgbot_usage(cmd, chat_lang(c)));
            task_done(tg, t);
            return;
        }
    }
    if (!client_of(tg, c, args, cmd != CCA_TGBOT_CMD_USE, id, &rest)) {
        task_done(tg, t);
        return;
    }
    number = number_of(tg, c, id, cmd != CCA_TGBOT_CMD_USE || owned_by(tg, id, op, NULL));
    switch (cmd) {
        case CCA_TGBOT_CMD_FOCUS: {
            json_t *doc = NULL;

            (void)json_object_set_new(c->doc, "focus", json_integer(number));
            chat_save(tg, c, true);
            if (cca_engine_get_dialog(tg->engine, id, &doc, NULL) != CCA_OK)
                doc = NULL;
            SAYF(tg, c, CCA_TGBOT_FOCUS_SET, number, customer_name(doc));
            json_decref(doc);
            task_done(tg, t);
            return;
        }
        case CCA_TGBOT_CMD_USE:
            if (number != 0 && owned_by(tg, id, op, NULL)) {
                operator_command(tg, t, CCA_TGBOT_CMD_FOCUS, args);
                return;
            } else {
                struct cca_engine_request req = {.op = CCA_OP_TAKE};

                memcpy(req.id, id, 37);
                op_submit(tg, t, &req, 'n', id, 0);
            }
            return;
        case CCA_TGBOT_CMD_REPLY:
            if (rest[0] == '\0') {
                SAYF(tg, c, CCA_TGBOT_USAGE, cca_tgbot_usage(cmd, chat_lang(c)));
                task_done(tg, t);
                return;
            }
            reply(tg, t, id, rest, false);
            return;
        case CCA_TGBOT_CMD_END: {
            struct cca_engine_request req = {.op = CCA_OP_CLOSE};

            memcpy(req.id, id, 37);
            req.reason = cca_xstrdup("resolved");
            op_submit(tg, t, &req, 'e', id, number);
            return;
        }
        case CCA_TGBOT_CMD_AI: {
            struct cca_engine_request req = {.op = CCA_OP_HANDOFF,
                                             .handoff_to = CCA_OWNER_AGENT,
                                             .agent = CCA_AGENT_NONE};

            memcpy(req.id, id, 37);
            req.reason = cca_xstrdup("operator_handback");
            op_submit(tg, t, &req, 'a', id, number);
            return;
        }
        case CCA_TGBOT_CMD_HISTORY:
            history(tg, t, id, rest);
            return;
        default:
            task_done(tg, t);
            return;
    }
}

/* A button under a card or a rating question. */
static void callback(struct cca_telegram *tg, struct task *t)
{
    struct chat *c = t->c;
    unsigned number = 0;
    int score = 0;
    char id[37] = "";
    char args[16];
    enum cca_tgbot_action a =
        cca_tgbot_parse_callback(t->u.callback_data, &number, &score, id);

    if (t->u.callback_id != NULL)
        direct(tg, "answerCallbackQuery", cca_tg_answer_callback(t->u.callback_id, NULL));
    if (a == CCA_TGBOT_ACT_RATE) {
        rate(tg, t, score, id);
        return;
    }
    if (a == CCA_TGBOT_ACT_NONE || chat_operator(c) == NULL) {
        task_done(tg, t);
        return;
    }
    (void)snprintf(args, sizeof(args), "%u", number);
    operator_command(tg, t,
                     a == CCA_TGBOT_ACT_FOCUS ? CCA_TGBOT_CMD_FOCUS
                     : a == CCA_TGBOT_ACT_END ? CCA_TGBOT_CMD_END
                                              : CCA_TGBOT_CMD_AI,
                     args);
}

/* The user's language: the client's setting, else the script of what they wrote. */
static void learn_lang(struct cca_telegram *tg, struct task *t)
{
    struct chat *c = t->c;
    const char *code;

    if (t->u.language_code[0] == '\0' && t->u.text == NULL)
        return;
    code = cca_lang_code(cca_tgbot_lang(t->u.language_code, t->u.text));
    if (jstr(c->doc, "lang") == NULL || strcmp(jstr(c->doc, "lang"), code) != 0) {
        (void)json_object_set_new(c->doc, "lang", json_string(code));
        chat_save(tg, c, true);
    }
}

static void run_task(struct cca_telegram *tg, struct task *t)
{
    struct chat *c = t->c;
    struct cca_tg_update *u = &t->u;
    char name[CCA_TG_COMMAND_MAX + 1];
    const char *args = "";
    enum cca_tgbot_cmd cmd = CCA_TGBOT_CMD_NONE;
    bool is_cmd;

    c->busy = true;
    if (json_is_true(json_object_get(c->doc, "blocked"))) {
        /* They write again: they unblocked the bot. */
        (void)json_object_del(c->doc, "blocked");
        chat_save(tg, c, true);
    }
    if (u->kind == CCA_TG_CALLBACK) {
        callback(tg, t);
        return;
    }
    if (chat_operator(c) == NULL)
        learn_lang(tg, t);
    /*
     * In a private chat every command is ours, whatever "@bot" it names. An edit
     * into a command is dropped: it would store (and show the AI) a secret.
     */
    is_cmd = u->text != NULL && cca_tg_command(u->text, NULL, name, &args);
    if (is_cmd && u->kind == CCA_TG_EDITED) {
        task_done(tg, t);
        return;
    }
    if (is_cmd)
        cmd = cca_tgbot_cmd_parse(name);
    if (is_cmd && cmd == CCA_TGBOT_CMD_NONE) {
        SAYF(tg, c, CCA_TGBOT_UNKNOWN_COMMAND);
        task_done(tg, t);
        return;
    }
    if (cmd == CCA_TGBOT_CMD_REGISTER || cmd == CCA_TGBOT_CMD_OPERATOR) {
        do_register(tg, t, cmd == CCA_TGBOT_CMD_OPERATOR, args);
        return;
    }
    if (cmd == CCA_TGBOT_CMD_HELP) {
        SAYF(tg, c,
             chat_operator(c) != NULL ? CCA_TGBOT_HELP_OPERATOR
                                      : CCA_TGBOT_HELP_CUSTOMER);
        task_done(tg, t);
        return;
    }
    if (chat_operator(c) != NULL) {
        char id[37];
        const char *rest;

        if (cmd == CCA_TGBOT_CMD_START) {
            SAYF(tg, c, CCA_TGBOT_HELP_OPERATOR);
            task_done(tg, t);
        } else if (cmd != CCA_TGBOT_CMD_NONE) {
            operator_command(tg, t, cmd, args);
        } else if (u->kind == CCA_TG_EDITED) {
            task_done(tg, t); /* an operator's edit does not reach the customer again */
        } else if (client_of(tg, c, "", true, id, &rest)) {
            reply(tg, t, id, u->text, u->media != CCA_TG_MEDIA_NONE);
        } else {
            task_done(tg, t);
        }
        return;
    }
    if (cca_tgbot_cmd_operator(cmd)) {
        SAYF(tg, c, CCA_TGBOT_NOT_OPERATOR);
        task_done(tg, t);
        return;
    }
    if (cmd == CCA_TGBOT_CMD_START) {
        const char *known = jstr(c->doc, "name");

        if (known != NULL) {
            SAYF(tg, c, CCA_TGBOT_WELCOME_BACK, known);
        } else {
            (void)json_object_set_new(c->doc, "stage", json_string("name"));
            chat_save(tg, c, true);
            SAYF(tg, c, CCA_TGBOT_GREETING);
        }
        task_done(tg, t);
        return;
    }
    if (is_cmd) {
        SAYF(tg, c, CCA_TGBOT_UNKNOWN_COMMAND);
        task_done(tg, t);
        return;
    }
    if (u->kind == CCA_TG_MESSAGE && u->media == CCA_TG_MEDIA_NONE &&
        jstr(c->doc, "stage") != NULL && strcmp(jstr(c->doc, "stage"), "name") == 0) {
        take_name(tg, t);
        return;
    }
    customer_turn(tg, t);
}

/* ---- the thread ----------------------------------------------------------------------
 */

static void getme_done(struct cca_telegram *tg, struct cca_tg_response *r)
{
    const char *u = jstr(r->result, "username");

    if (u != NULL)
        (void)snprintf(tg->username, sizeof(tg->username), "%s", u);
    cca_log(LOG_INFO, "telegram: bot id=%" PRId64 " username=%s", tg->bot_id,
            tg->username[0] ? tg->username : "?");
}

static void direct_done(struct cca_telegram *tg, struct ev *ev)
{
    struct item *it = ev->item;
    struct cca_tg_response r = {0};

    tg->sends--;
    cca_tg_response_parse(ev->res.body, ev->res.body_len, ev->res.status, &r);
    if (r.ok && strcmp(it->method, "getMe") == 0)
        getme_done(tg, &r);
    else if (strcmp(it->method, "getMe") == 0)
        tg->getme_at = cca_time_mono_ms() + 5000; /* asked again (telegram.h) */
    if (!r.ok)
        cca_log(LOG_INFO, "telegram: %s failed: %ld %s", it->method, r.error_code,
                r.description);
    cca_tg_response_cleanup(&r);
    item_free(it);
}

static void handle(struct cca_telegram *tg, struct ev *ev)
{
    switch (ev->kind) {
        case EV_POLLED:
            polled(tg, ev);
            break;
        case EV_SENT:
            sent(tg, ev);
            break;
        case EV_DIRECT:
            direct_done(tg, ev);
            break;
        case EV_DONE: {
            struct call *k = ev->call;

            tg->calls--;
            if (k->batch)
                tg->batch_calls--;
            k->then(tg, k, ev->rc, ev->json, &ev->err);
            json_decref(k->doc);
            free(k);
            check_batch(tg);
            break;
        }
        case EV_OBSERVED:
            observe(tg, ev->id);
            break;
        case EV_WEBHOOK:
            atomic_fetch_add_explicit(&tg->m.updates[ev->task->u.kind], 1,
                                      memory_order_relaxed);
            if (!served(&ev->task->u)) {
                webhook_answer(ev->task, false);
                cca_tg_update_cleanup(&ev->task->u);
                free(ev->task);
            } else if (task_queue(tg, ev->task)) {
                run_task(tg, ev->task);
            }
            break;
    }
    json_decref(ev->json);
    free(ev->res.body);
    free(ev);
}

/* What the store holds of the channel: the offset, the chats, the cursors. */
static void load(struct cca_telegram *tg)
{
    size_t n = 0;
    char(*ids)[37] = cca_engine_select(tg->engine, CCA_STORE_TELEGRAM, NULL, &n);

    doc_key("state", tg->state_key);
    for (size_t i = 0; i < n; i++) {
        json_t *doc = NULL;
        const char *kind;

        if (cca_engine_read(tg->engine, CCA_STORE_TELEGRAM, ids[i], &doc, NULL) != CCA_OK)
            continue;
        kind = jstr(doc, "kind");
        if (kind != NULL && strcmp(kind, "state") == 0 && tg->state_doc == NULL) {
            tg->state_doc = json_deep_copy(doc);
            tg->offset = jint(doc, "offset");
        } else if (kind != NULL && strcmp(kind, "chat") == 0 &&
                   jint(doc, "chat_id") != 0 &&
                   chat_find(tg, jint(doc, "chat_id")) == NULL) {
            (void)chat_add(tg, jint(doc, "chat_id"), json_deep_copy(doc));
        } else if (kind != NULL && strcmp(kind, "delivery") == 0 &&
                   jstr(doc, "dialog_id") != NULL &&
                   deliv_find(tg, jstr(doc, "dialog_id")) == NULL) {
            (void)deliv_add(tg, jstr(doc, "dialog_id"), doc);
        }
        json_decref(doc);
    }
    free(ids);
    if (tg->state_doc == NULL)
        tg->state_doc = json_pack("{s:s, s:I}", "kind", "state", "offset", (json_int_t)0);
}

/* The dialogs of @f that no cursor covers yet: their sends are made again. */
static void recover_selected(struct cca_telegram *tg, const struct cca_record_filter *f)
{
    size_t n = 0;
    char(*ids)[37] = cca_engine_select(tg->engine, CCA_STORE_DIALOGS, f, &n);

    for (size_t i = 0; i < n; i++)
        if (deliv_find(tg, ids[i]) == NULL)
            observe(tg, ids[i]);
    free(ids);
}

/* Resume what a previous run left: every cursor behind its dialog, every dialog of a
 * Telegram customer or operator that has none. */
static void recover(struct cca_telegram *tg)
{
    char(*dids)[37] = cca_xcalloc(tg->delivs.n + 1, sizeof(*dids));
    int64_t *chats = cca_xcalloc(tg->chats.n + 1, sizeof(*chats));
    size_t nd = 0, nc = 0;

    for (size_t i = 0; i < tg->delivs.nb; i++)
        for (struct node *x = tg->delivs.b[i]; x != NULL; x = x->next)
            memcpy(dids[nd++], x->key, 37);
    for (size_t i = 0; i < tg->chats.nb; i++)
        for (struct node *x = tg->chats.b[i]; x != NULL; x = x->next)
            if (x->key[0] == 'c')
                chats[nc++] = ((struct chat *)x->val)->chat_id;
    for (size_t i = 0; i < nd; i++) {
        struct cca_record rec = {0};
        struct deliv *d = deliv_find(tg, dids[i]);
        bool done = false;

        /* A closed dialog whose every message was confirmed needs no read. */
        if (cca_engine_get_record(tg->engine, dids[i], &rec) == CCA_OK)
            done = rec.status == CCA_DIALOG_CLOSED && rec.messages <= d->acked[0];
        cca_record_cleanup(&rec);
        if (!done)
            observe(tg, dids[i]);
    }
    for (size_t i = 0; i < nc; i++) {
        struct chat *c = chat_find(tg, chats[i]);
        struct cca_record_filter f;
        char cid[32];

        cca_record_filter_init(&f);
        if (chat_operator(c) != NULL) {
            f.operator_id = chat_operator(c);
        } else {
            customer_id_of(chats[i], cid);
            f.customer_id = cid;
        }
        recover_selected(tg, &f);
    }
    free(dids);
    free(chats);
}

static void startup(struct cca_telegram *tg)
{
    load(tg);
    direct(tg, "getMe", json_object());
    if (tg->webhook)
        direct(tg, "setWebhook",
               cca_tg_set_webhook(tg->cfg->telegram_webhook_url, tg->webhook_secret));
    else
        direct(tg, "deleteWebhook", cca_tg_delete_webhook());
    /* Customers see /start and /help; each operator's chat, every command. */
    commands(tg, NULL, NULL);
    commands(tg, NULL, "en");
    commands(tg, NULL, "ru");
    for (size_t i = 0; i < tg->chats.nb; i++)
        for (struct node *x = tg->chats.b[i]; x != NULL; x = x->next)
            if (x->key[0] == 'o')
                commands(tg, x->val, NULL);
    cca_engine_set_observer(tg->engine, on_observed, tg);
    recover(tg);
    cca_log(LOG_INFO,
            "telegram: started bot id=%" PRId64 " offset=%" PRId64
            " chats=%zu dialogs=%zu",
            tg->bot_id, tg->offset, tg->chats.n, tg->delivs.n);
    if (!tg->webhook)
        poll_start(tg);
}

static void *tg_main(void *arg)
{
    struct cca_telegram *tg = arg;

    (void)pthread_setname_np(pthread_self(), "cca-telegram");
    startup(tg);
    for (;;) {
        struct ev *list;
        int64_t now = cca_time_mono_ms();
        int64_t wait = -1;
        int64_t chat;
        struct item *it;
        bool stop;

        while (!tg->stopping &&
               (it = cca_tgsend_next(tg->sendq, now, &chat, &wait)) != NULL)
            if (!start_fetch(tg, it, SEND_TIMEOUT_MS, SEND_RESPONSE_MAX, NULL)) {
                (void)cca_tgsend_done(tg->sendq, chat, CCA_TGSEND_RETRY, 0, false, now);
                wait = 1000;
                break;
            }
        if (tg->poll_at != 0 && (wait < 0 || tg->poll_at - now < wait))
            wait = tg->poll_at - now < 0 ? 0 : tg->poll_at - now;
        pthread_mutex_lock(&tg->lock);
        if (tg->in_head == NULL && !(tg->stop && tg->calls == 0 && tg->sends == 0)) {
            struct timespec ts;

            if (wait < 0 || wait > 1000)
                wait = 1000;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&tg->cond, &tg->lock, &ts);
        }
        list = tg->in_head;
        tg->in_head = tg->in_tail = NULL;
        stop = tg->stop;
        pthread_mutex_unlock(&tg->lock);
        /* The poll in flight would hold the stop for up to its timeout. */
        if (stop && !tg->stopping && tg->polling)
            cca_fetch_cancel(tg->fetch, tg->poll_id);
        tg->stopping = stop;
        while (list != NULL) {
            struct ev *next = list->next;

            handle(tg, list);
            list = next;
        }
        now = cca_time_mono_ms();
        if (!stop && tg->poll_at != 0 && now >= tg->poll_at && !tg->polling)
            poll_start(tg);
        /* Stopping, the cursors of the last confirmed sends are written at once. */
        if (stop || now >= tg->flush_at) {
            flush(tg);
            tg->flush_at = now + FLUSH_MS;
        }
        if (!stop && tg->getme_at != 0 && now >= tg->getme_at) {
            tg->getme_at = 0;
            direct(tg, "getMe", json_object());
        }
        /* At the deadline whatever is in flight is left: its results land in the
         * inbox, which cca_telegram_free empties (after the engine is drained). */
        if (stop && ((tg->calls == 0 && tg->sends == 0) || now >= tg->stop_deadline))
            break;
    }
    return NULL;
}

/* ---- the contract ------------------------------------------------------------------ */

/*
 * The secret_token of setWebhook: 64 hex digits of SHA-256 over a label and the
 * bot token (the Bot API allows 1-256 of [A-Za-z0-9_-]): as secret as the token,
 * stable across restarts, nothing more to configure.
 */
static void webhook_secret(const char *token, char ret[65])
{
    char *label = NULL;

    if (asprintf(&label, "cca-telegram-webhook:%s", token) < 0)
        abort();
    cca_operator_token_hash(label, strlen(label), ret);
    explicit_bzero(label, strlen(label));
    free(label);
}

cca_rc cca_telegram_webhook(struct cca_telegram *tg, const char *secret, const char *body,
                            size_t len, cca_engine_done_fn done, void *ctx,
                            struct cca_error *reterr)
{
    struct task *t;
    struct ev *ev;
    json_error_t jerr;
    json_t *u;
    cca_rc rc;

    if (tg == NULL || !tg->webhook)
        return cca_error_set(reterr, CCA_ERR_NOT_FOUND,
                             "the Telegram channel is not in webhook mode");
    if (!tg->webhook_secret[0] ||
        !cca_operator_secret_equal(secret, secret != NULL ? strlen(secret) : 0,
                                   tg->webhook_secret, strlen(tg->webhook_secret)))
        return cca_error_set(reterr, CCA_ERR_FORBIDDEN,
                             "X-Telegram-Bot-Api-Secret-Token does not match");
    u = json_loadb(body != NULL ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (u == NULL)
        return cca_error_set(reterr, CCA_ERR_PARSE, "not JSON: %s", jerr.text);
    t = cca_xcalloc(1, sizeof(*t));
    rc = cca_tg_update_parse(u, &t->u, reterr);
    json_decref(u);
    if (rc != CCA_OK) {
        cca_tg_update_cleanup(&t->u);
        free(t);
        return rc;
    }
    t->done = done;
    t->done_ctx = ctx;
    ev = cca_xcalloc(1, sizeof(*ev));
    ev->kind = EV_WEBHOOK;
    ev->task = t;
    pthread_mutex_lock(&tg->lock);
    if (tg->stop) {
        pthread_mutex_unlock(&tg->lock);
        cca_tg_update_cleanup(&t->u);
        free(t);
        free(ev);
        return cca_error_set(reterr, CCA_ERR_UNAVAILABLE, "shutting down");
    }
    if (tg->in_tail != NULL)
        tg->in_tail->next = ev;
    else
        tg->in_head = ev;
    tg->in_tail = ev;
    pthread_cond_signal(&tg->cond);
    pthread_mutex_unlock(&tg->lock);
    return CCA_OK;
}

cca_rc cca_telegram_new(const struct cca_telegram_params *params,
                        struct cca_telegram **ret, struct cca_error *reterr)
{
    const struct cca_config *cfg = params->cfg;
    struct cca_telegram *tg;
    /* A few connections serve 30 sends/s (and a local Bot API's thousands): a cap
     * keeps a burst from opening one (a TLS handshake) per send. */
    struct cca_fetch_lane_params lp = {.name = "telegram", .max_in_flight = 16};
    struct cca_tgsend_params sp = {0};
    const char *const lines[] = {"Content-Type: application/json", "Expect:", NULL};
    size_t n;

    *ret = NULL;
    if (!cfg->telegram_bot_token[0])
        return CCA_OK;
    if (cca_tg_bot_id(cfg->telegram_bot_token) == 0 ||
        strpbrk(cfg->telegram_bot_token, " \t\r\n/") != NULL)
        return cca_error_set(
            reterr, CCA_ERR_INVALID,
            "TELEGRAM_BOT_TOKEN is malformed: expected <bot id>:<secret> "
            "as @BotFather gives it");
    if (strncmp(cfg->telegram_api_base_url, "http://", 7) != 0 &&
        strncmp(cfg->telegram_api_base_url, "https://", 8) != 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "TELEGRAM_API_BASE_URL must start with http:// or https://");
    tg = cca_xcalloc(1, sizeof(*tg));
    tg->cfg = cfg;
    tg->engine = params->engine;
    tg->fetch = params->fetch;
    (void)snprintf(tg->token, sizeof(tg->token), "%s", cfg->telegram_bot_token);
    (void)snprintf(tg->base, sizeof(tg->base), "%s", cfg->telegram_api_base_url);
    n = strlen(tg->base);
    while (n > 0 && tg->base[n - 1] == '/')
        tg->base[--n] = '\0';
    tg->bot_id = cca_tg_bot_id(tg->token);
    tg->webhook = cfg->telegram_webhook_url[0] != '\0';
    webhook_secret(tg->token, tg->webhook_secret);
    pthread_mutex_init(&tg->lock, NULL);
    pthread_cond_init(&tg->cond, NULL);
    cca_hist_init(&tg->m.send_seconds, cca_hist_seconds_bounds, cca_hist_seconds_n);
    /* Evenly spaced (a burst of one): a burst of 30 at once arrives bunched with the
     * next second's at the Bot API, which counts them in its own windows. */
    sp.global_per_s = cfg->telegram_send_rate;
    sp.global_burst = 1;
    sp.per_chat_interval_ms = cfg->telegram_chat_interval_ms;
    tg->sendq = cca_tgsend_new(&sp);
    if (cca_fetch_headers_new(lines, &tg->json_headers, reterr) != CCA_OK ||
        cca_fetch_lane_new(tg->fetch, &lp, &tg->lane) != CCA_OK) {
        (void)cca_error_set(reterr, CCA_ERR_INTERNAL, "cannot open the Telegram lane");
        goto fail;
    }
    if (pthread_create(&tg->thread, NULL, tg_main, tg) != 0) {
        (void)cca_error_set(reterr, CCA_ERR_INTERNAL, "cannot start the Telegram thread");
        goto fail;
    }
    tg->started = true;
    *ret = tg;
    return CCA_OK;
fail:
    cca_telegram_free(tg);
    return reterr != NULL ? reterr->code : CCA_ERR_INTERNAL;
}

void cca_telegram_stop(struct cca_telegram *tg, int64_t deadline_ms)
{
    if (tg == NULL || !tg->started)
        return;
    cca_engine_set_observer(tg->engine, NULL, NULL);
    pthread_mutex_lock(&tg->lock);
    tg->stop = true;
    tg->stop_deadline = deadline_ms;
    pthread_cond_signal(&tg->cond);
    pthread_mutex_unlock(&tg->lock);
    (void)pthread_join(tg->thread, NULL);
    tg->started = false;
    /* Webhook updates not handled yet: Telegram delivers them again (503). */
    for (size_t i = 0; i < tg->chats.nb; i++)
        for (struct node *x = tg->chats.b[i]; x != NULL; x = x->next)
            if (x->key[0] == 'c') {
                for (struct task *t = ((struct chat *)x->val)->head; t != NULL;
                     t = t->next)
                    webhook_answer(t, true);
                answers_flush(x->val, true);
            }
}

static void free_item(void *ctx, void *item)
{
    (void)ctx;
    item_free(item);
}

void cca_telegram_free(struct cca_telegram *tg)
{
    struct ev *ev;

    if (tg == NULL)
        return;
    cca_telegram_stop(tg, cca_time_mono_ms());
    cca_fetch_lane_free(tg->lane); /* the sends left end (cancelled): events below */
    while ((ev = tg->in_head) != NULL) {
        tg->in_head = ev->next;
        if (ev->item != NULL) {
            /* A send's item leaves the scheduler here; a direct call's was never in it.
             */
            void *x = ev->kind == EV_SENT
                          ? cca_tgsend_done(tg->sendq, ev->item->chat_id,
                                            CCA_TGSEND_FAILED, 0, false, 0)
                          : NULL;

            item_free(x != NULL ? x : ev->item);
        }
        if (ev->call != NULL) {
            json_decref(ev->call->doc);
            free(ev->call);
        }
        if (ev->task != NULL) {
            webhook_answer(ev->task, true);
            cca_tg_update_cleanup(&ev->task->u);
            free(ev->task);
        }
        json_decref(ev->json);
        free(ev->res.body);
        free(ev);
    }
    cca_tgsend_free(tg->sendq, free_item, NULL);
    cca_fetch_headers_free(tg->json_headers);
    /* "o:" entries share the chats of the "c:" entries: drop them first. */
    for (size_t i = 0; i < tg->chats.nb; i++)
        for (struct node *x = tg->chats.b[i]; x != NULL; x = x->next)
            if (x->key[0] == 'o')
                x->val = NULL;
    table_free(&tg->chats, chat_free);
    table_free(&tg->delivs, deliv_free);
    json_decref(tg->state_doc);
    free(tg->done_ids);
    free(tg->dirty);
    explicit_bzero(tg->token, sizeof(tg->token));
    pthread_cond_destroy(&tg->cond);
    pthread_mutex_destroy(&tg->lock);
    free(tg);
}

void cca_telegram_render_metrics(struct cca_telegram *tg, FILE *out)
{
    static const char *const kinds[] = {"message", "edited_message", "callback_query",
                                        "other"};
    char labels[64];

    if (tg == NULL)
        return;
    cca_metrics_family(out, "cca_telegram_updates_total", "counter",
                       "Telegram updates received, by kind");
    for (size_t i = 0; i < 4; i++) {
        (void)snprintf(labels, sizeof(labels), "kind=\"%s\"", kinds[i]);
        cca_metrics_sample(out, "cca_telegram_updates_total", labels,
                           (double)atomic_load(&tg->m.updates[i]));
    }
    cca_metrics_single(out, "cca_telegram_replays_total", "counter",
                       "Telegram updates seen again and not handled twice",
                       (double)atomic_load(&tg->m.replays));
    cca_metrics_family(out, "cca_telegram_sends_total", "counter",
                       "Bot API send answers, by verdict");
    for (int v = CCA_TG_DONE; v <= CCA_TG_REJECTED; v++) {
        (void)snprintf(labels, sizeof(labels), "verdict=\"%s\"", cca_tg_verdict_name(v));
        cca_metrics_sample(out, "cca_telegram_sends_total", labels,
                           (double)atomic_load(&tg->m.sends[v]));
    }
    cca_metrics_single(out, "cca_telegram_polls_failed_total", "counter",
                       "getUpdates calls that failed",
                       (double)atomic_load(&tg->m.polls_failed));
    cca_metrics_single(out, "cca_telegram_outbox", "gauge",
                       "Messages waiting to be sent or in flight",
                       (double)atomic_load(&tg->m.outbox));
    cca_metrics_hist_family(out, "cca_telegram_send_seconds",
                            "Time from queued to confirmed by the Bot API",
                            &tg->m.send_seconds);
}
