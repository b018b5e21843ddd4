/* SPDX-License-Identifier: MIT */
/*
 * Human operators under concurrency (issue 11), black box: the real server,
 * offline mode, OPERATOR_REPLY_TIMEOUT_S=5, loopback, a temp dir.
 *
 * 50 operators (admin-created) with random max_dialogs (1..4), languages
 * (ru, en or both) and skills (every skill, tech_support, or sales+supervisor).
 * 8 customer threads make 1,000 escalations (a request phrase in Russian or
 * English, or POST /handoff {"to":"human"}), some after an AI turn that gives
 * the dialog a skill, and write follow-ups, close dialogs and re-escalate
 * handed-back ones. 8 operator threads flip statuses (available / busy /
 * offline), reply, close, hand back, transfer, pull (/me/next) and take queued
 * dialogs; one operator in five never replies (nor closes) and loses its
 * dialogs to the reply timeout (set busy, it goes available again). A
 * monitor samples GET /operators all along (never over capacity).
 *
 * Then the operators answer every unanswered dialog until nothing changes (no
 * reply timeout can fire), the state is read twice, a second apart, over the
 * API, must be the same both times, and is checked:
 * - every operator: open_dialogs <= max_dialogs and equals the length of their
 *   GET /operators/me/dialogs;
 * - no dialog in two operators' lists; a dialog in an operator's list has
 *   owner {kind operator, operator_id them} and status "assigned"; a dialog
 *   with such an owner is in their list;
 * - queued dialogs (owner kind queue, status "queued") are exactly GET /queue's
 *   items;
 * - the queue is empty or no available operator with a free seat matches the
 *   language and skill of any queued dialog;
 * - every customer message acknowledged (2xx) is in its dialog exactly once, and
 *   one refused (4xx) is not in it; the same for operator replies;
 * - no 5xx, no request without a response, and the server stops cleanly.
 *
 * test_kill_midflight: the same work with 12 operators, SIGKILL after 1.5 s
 * with requests in flight, restart on the same storage: operators, tokens and
 * limits back, the invariants hold, acknowledged messages exactly once (those
 * without a response at most once), and the restarted desk still assigns.
 *
 * Bounded: the run phase lasts 12 s at least (timeouts happen) and 60 s at
 * most; CCA_OPS_STRESS_SEED=<n> replays the random choices (not the
 * interleaving).
 */
#include "cca_test.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cca/mem.h"

#include "harness.h"

#define N_OPS          50
#define N_ESCALATIONS  1000
#define N_CUST_THREADS 8
#define N_OP_THREADS   8
#define RUN_MIN_MS     12000
#define RUN_MAX_MS     60000
#define MAX_DIALOGS    1400
#define MAX_DIAG       20
#define BURST          80 /* escalations after the run, before the checks */

static uint64_t g_seed;

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned below(uint64_t *s, unsigned n)
{
    return (unsigned)(rnd(s) % n);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *js(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

/* ---- shared state ------------------------------------------------------------------ */

struct text {
    char *text;
    bool acked;   /* 2xx: must be there exactly once; else: must not be there */
    bool unknown; /* no response (the server was killed): there at most once */
    bool operator_reply;
};

struct dlg {
    char id[37];
    bool en;
    struct text *texts;
    size_t n;
    size_t cap;
};

struct op {
    char id[37];
    char token[64];
    unsigned max;
    bool ru;
    bool en;
    unsigned skills; /* 0 every; 1 tech_support; 2 sales+supervisor */
    bool silent;     /* never replies during the run: loses dialogs to the timeout */
};

static struct {
    unsigned port;
    pthread_mutex_t mu;
    struct dlg *dlgs[MAX_DIALOGS];
    size_t ndlgs;
    struct op ops[N_OPS];
    atomic_uint escalations;
    atomic_uint seq;
    atomic_bool stop;
    atomic_bool killing; /* a SIGKILL is coming: no response is not an error */
    atomic_ulong requests;
    atomic_ulong errors; /* 5xx or no response */
    atomic_ulong over_capacity;
    atomic_ulong samples;
    atomic_ulong replies_ok;
    atomic_ulong replies_refused;
    atomic_ulong closes;
    atomic_ulong handbacks;
    atomic_ulong transfers;
    atomic_ulong pulls;
    atomic_ulong takes;
    atomic_ulong flips;
    atomic_ulong queued_answers; /* 202 while a human owns the dialog */
    atomic_uint diag;
} G;

/* A problem line (at most MAX_DIAG); none about missing responses while killing. */
#define DIAG(...)                                                                        \
    do {                                                                                 \
        if (!atomic_load(&G.killing) && atomic_fetch_add(&G.diag, 1) < MAX_DIAG) {       \
            printf("# ");                                                                \
            printf(__VA_ARGS__);                                                         \
            printf("\n");                                                                \
            fflush(stdout);                                                              \
        }                                                                                \
    } while (0)

/* One request; counts it, and any 5xx or missing response as an error. */
static long call(const char *method, const char *path, const char *auth, const char *body,
                 json_t **ret)
{
    json_t *j = NULL;
    long st = h_call(G.port, method, path, auth, body, &j);

    atomic_fetch_add(&G.requests, 1);
    if ((st == 0 && !atomic_load(&G.killing)) || st >= 500) {
        char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;

        atomic_fetch_add(&G.errors, 1);
        DIAG("%s %s %.200s -> %ld %.300s", method, path, body ? body : "", st,
             t ? t : "");
        free(t);
    }
    if (ret != NULL)
        *ret = j;
    else
        json_decref(j);
    return st;
}

static void text_add(struct dlg *d, const char *text, long status, bool op_reply)
{
    bool acked = status / 100 == 2;

    pthread_mutex_lock(&G.mu);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->texts = cca_xrealloc(d->texts, d->cap * sizeof(*d->texts));
    }
    d->texts[d->n].text = cca_xstrdup(text);
    d->texts[d->n].acked = acked;
    d->texts[d->n].unknown = status == 0;
    d->texts[d->n].operator_reply = op_reply;
    d->n++;
    pthread_mutex_unlock(&G.mu);
}

static struct dlg *find_dlg(const char *id)
{
    struct dlg *d = NULL;

    pthread_mutex_lock(&G.mu);
    for (size_t i = 0; i < G.ndlgs; i++) {
        if (strcmp(G.dlgs[i]->id, id) == 0) {
            d = G.dlgs[i];
            break;
        }
    }
    pthread_mutex_unlock(&G.mu);
    return d;
}

static const char *dpath(char *buf, const char *id, const char *suffix)
{
    (void)snprintf(buf, 256, "/api/v1/dialogue/%s%s", id, suffix);
    return buf;
}

/* ---- customers ----------------------------------------------------------------------
 */

static const char *const ASK_RU[] = {"Позовите оператора", "Нужен живой человек",
                                     "Соедините с оператором"};
static const char *const ASK_EN[] = {"talk to a human", "I need a real person",
                                     "operator please"};

/* The customer writes; returns the status. A 2xx message is recorded as acked. */
static long customer_say(struct dlg *d, const char *text, json_t **ret)
{
    char body[512];
    char path[256];
    long st;

    (void)snprintf(body, sizeof(body), "{\"message\":\"%s\"}", text);
    st = call("POST", dpath(path, d->id, "/message"), NULL, body, ret);
    if (st == 202)
        atomic_fetch_add(&G.queued_answers, 1);
    text_add(d, text, st, false);
    return st;
}

/* Ask for a human (a phrase or the API); counts an escalation when it took. */
static void escalate(struct dlg *d, uint64_t *rng)
{
    char text[256];
    char path[256];
    json_t *j = NULL;
    unsigned n = atomic_fetch_add(&G.seq, 1);
    long st;

    if (below(rng, 2) == 0) {
        if (d->en)
            (void)snprintf(text, sizeof(text), "%s, ticket %u", ASK_EN[below(rng, 3)], n);
        else
            (void)snprintf(text, sizeof(text), "%s, заявка %u", ASK_RU[below(rng, 3)], n);
        st = customer_say(d, text, &j);
        if ((st == 200 || st == 202) && strcmp(js(j, "owner"), "agent") != 0)
            atomic_fetch_add(&G.escalations, 1);
        else if (st == 200 && strcmp(js(j, "owner"), "agent") == 0)
            DIAG("a request for a human stayed with the AI: %s '%s'", d->id, text);
    } else {
        st = call("POST", dpath(path, d->id, "/handoff"), NULL,
                  "{\"to\":\"human\",\"reason\":\"stress\"}", &j);
        if (st == 200) {
            const char *e = js(j, "escalation");

            if (strcmp(e, "assigned") == 0 || strcmp(e, "queued") == 0)
                atomic_fetch_add(&G.escalations, 1);
        } else if (st != 409) {
            DIAG("handoff to human %s -> %ld", d->id, st);
        }
    }
    json_decref(j);
}

static void *customer_thread(void *arg)
{
    uint64_t rng = g_seed ^ (uint64_t)(uintptr_t)arg * 7919u;

    while (!atomic_load(&G.stop) && atomic_load(&G.escalations) < N_ESCALATIONS) {
        unsigned r = below(&rng, 100);
        char text[256];
        char path[256];

        if (r < 60) { /* a new customer */
            struct dlg *d = calloc(1, sizeof(*d));
            json_t *j = NULL;
            bool added;
            long st;

            d->en = below(&rng, 2) == 0;
            st = call("POST", "/api/v1/dialogue/create", NULL,
                      d->en ? "{\"customer_info\":{\"name\":\"John\"}}"
                            : "{\"customer_info\":{\"name\":\"Иван\"}}",
                      &j);
            if (st != 201) {
                json_decref(j);
                free(d);
                continue;
            }
            (void)snprintf(d->id, sizeof(d->id), "%s", js(j, "dialog_id"));
            json_decref(j);
            pthread_mutex_lock(&G.mu);
            added = G.ndlgs < MAX_DIALOGS;
            if (added)
                G.dlgs[G.ndlgs++] = d;
            pthread_mutex_unlock(&G.mu);
            if (!added) {
                free(d);
                break;
            }
            if (below(&rng, 2) == 0) { /* an AI turn first: the dialog gets a skill */
                unsigned n = atomic_fetch_add(&G.seq, 1);

                if (d->en)
                    (void)snprintf(text, sizeof(text),
                                   "How much does the premium plan cost? (%u)", n);
                else
                    (void)snprintf(text, sizeof(text),
                                   "У меня не работает интернет, обращение %u", n);
                customer_say(d, text, NULL);
            }
            escalate(d, &rng);
        } else { /* an existing one: a follow-up, a close or a new escalation */
            struct dlg *d;

            pthread_mutex_lock(&G.mu);
            d = G.ndlgs ? G.dlgs[below(&rng, (unsigned)G.ndlgs)] : NULL;
            pthread_mutex_unlock(&G.mu);
            if (d == NULL)
                continue;
            if (r < 85) {
                unsigned n = atomic_fetch_add(&G.seq, 1);

                (void)snprintf(
                    text, sizeof(text),
                    d->en ? "Still waiting, message %u" : "Жду ответа, сообщение %u", n);
                customer_say(d, text, NULL);
            } else if (r < 90) {
                if (call("POST", dpath(path, d->id, "/close"), NULL, "{}", NULL) == 200)
                    atomic_fetch_add(&G.closes, 1);
            } else {
                escalate(d, &rng);
            }
        }
    }
    return NULL;
}

/* ---- operators ----------------------------------------------------------------------
 */

static json_t *my_dialogs(struct op *o)
{
    json_t *j = NULL;

    if (call("GET", "/api/v1/operators/me/dialogs", o->token, NULL, &j) != 200) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static void operator_reply(struct op *o, const char *dialog_id)
{
    char body[256];
    char text[128];
    char path[256];
    struct dlg *d = find_dlg(dialog_id);
    long st;

    (void)snprintf(text, sizeof(text), "Ответ оператора %u", atomic_fetch_add(&G.seq, 1));
    (void)snprintf(body, sizeof(body), "{\"message\":\"%s\"}", text);
    st = call("POST", dpath(path, dialog_id, "/reply"), o->token, body, NULL);
    if (st == 200)
        atomic_fetch_add(&G.replies_ok, 1);
    else if (st == 403 || st == 409)
        atomic_fetch_add(&G.replies_refused, 1);
    else if (st != 0 || !atomic_load(&G.killing))
        DIAG("reply %s by %s -> %ld", dialog_id, o->id, st);
    if (d != NULL)
        text_add(d, text, st, true);
}

static void operator_step(struct op *o, uint64_t *rng)
{
    static const char *const statuses[] = {"available", "available", "available",
                                           "available", "available", "busy",
                                           "busy",      "offline"};
    unsigned r = below(rng, 100);
    char path[256];
    char body[256];
    json_t *mine;
    json_t *items;
    json_t *pick = NULL;

    if (o->silent) { /* holds what it gets; back to available after a timeout */
        if (r < 2)
            (void)call("PUT", "/api/v1/operators/me/status", o->token,
                       "{\"status\":\"available\"}", NULL);
        return;
    }
    if (r < 5) {
        (void)snprintf(body, sizeof(body), "{\"status\":\"%s\"}",
                       statuses[below(rng, 8)]);
        if (call("PUT", "/api/v1/operators/me/status", o->token, body, NULL) == 200)
            atomic_fetch_add(&G.flips, 1);
        return;
    }
    if (r < 30) {
        json_t *j = NULL;
        long st = call("POST", "/api/v1/operators/me/next", o->token, NULL, &j);

        if (st == 200)
            atomic_fetch_add(&G.pulls, 1);
        else if (st != 404 && st != 409)
            DIAG("next by %s -> %ld", o->id, st);
        json_decref(j);
        return;
    }
    if (r < 38) {
        json_t *q = NULL;

        if (call("GET", "/api/v1/queue?limit=5", o->token, NULL, &q) == 200) {
            json_t *items_q = json_object_get(q, "items");

            if (json_array_size(items_q) > 0) {
                json_t *it = json_array_get(
                    items_q, below(rng, (unsigned)json_array_size(items_q)));
                long st = call("POST", dpath(path, js(it, "dialog_id"), "/take"),
                               o->token, NULL, NULL);

                if (st == 200)
                    atomic_fetch_add(&G.takes, 1);
                else if (st != 409 && st != 404 && st != 403)
                    DIAG("take by %s -> %ld", o->id, st);
            }
        }
        json_decref(q);
        return;
    }
    mine = my_dialogs(o);
    items = json_object_get(mine, "items");
    if (json_array_size(items) > o->max) {
        atomic_fetch_add(&G.over_capacity, 1);
        DIAG("operator %s holds %zu dialogs, max_dialogs %u", o->id,
             json_array_size(items), o->max);
    }
    if (json_array_size(items) > 0)
        pick = json_array_get(items, below(rng, (unsigned)json_array_size(items)));
    if (pick != NULL) {
        const char *id = js(pick, "dialog_id");

        if (r < 75) {
            if (!o->silent)
                operator_reply(o, id);
        } else if (r < 87) {
            if (call("POST", dpath(path, id, "/close"), o->token, "{}", NULL) == 200)
                atomic_fetch_add(&G.closes, 1);
        } else if (r < 94) {
            if (call("POST", dpath(path, id, "/handoff"), o->token, "{\"to\":\"ai\"}",
                     NULL) == 200)
                atomic_fetch_add(&G.handbacks, 1);
        } else {
            struct op *to = &G.ops[below(rng, N_OPS)];

            (void)snprintf(body, sizeof(body),
                           "{\"to\":\"operator\",\"operator_id\":\"%s\"}", to->id);
            if (call("POST", dpath(path, id, "/handoff"), o->token, body, NULL) == 200)
                atomic_fetch_add(&G.transfers, 1);
        }
    }
    json_decref(mine);
}

static void *operator_thread(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    uint64_t rng = g_seed ^ (0xABCDull + t * 104729u);

    while (!atomic_load(&G.stop)) {
        unsigned i = t + N_OP_THREADS * below(&rng, N_OPS / N_OP_THREADS + 1);

        if (i >= N_OPS)
            continue;
        operator_step(&G.ops[i], &rng);
        if (below(&rng, 4) == 0)
            sleep_ms(1 + below(&rng, 5));
    }
    return NULL;
}

/* Samples GET /operators: nobody over capacity, ever. */
static void *monitor_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&G.stop)) {
        json_t *j = NULL;

        if (call("GET", "/api/v1/operators", NULL, NULL, &j) == 200) {
            json_t *v;
            size_t i;

            json_array_foreach (json_object_get(j, "items"), i, v) {
                json_int_t open = json_integer_value(json_object_get(v, "open_dialogs"));
                json_int_t max = json_integer_value(json_object_get(v, "max_dialogs"));

                if (open > max || open < 0) {
                    atomic_fetch_add(&G.over_capacity, 1);
                    DIAG("GET /operators: %s open_dialogs %lld > max_dialogs %lld",
                         js(v, "operator_id"), (long long)open, (long long)max);
                }
            }
            atomic_fetch_add(&G.samples, 1);
        }
        json_decref(j);
        sleep_ms(100);
    }
    return NULL;
}

/* ---- the checks ------------------------------------------------------------------- */

/* The operators answer every dialog they have not answered, until a pass finds
 * none (then no reply timeout can fire). Returns the passes made. */
static int settle(void)
{
    int pass;

    for (pass = 1; pass <= 15; pass++) {
        unsigned answered = 0;

        for (int i = 0; i < N_OPS; i++) {
            json_t *mine = my_dialogs(&G.ops[i]);
            json_t *it;
            size_t k;

            json_array_foreach (json_object_get(mine, "items"), k, it) {
                json_t *replied =
                    json_object_get(json_object_get(it, "owner"), "replied");

                if (!json_is_true(replied)) {
                    operator_reply(&G.ops[i], js(it, "dialog_id"));
                    answered++;
                }
            }
            json_decref(mine);
        }
        if (answered == 0)
            break;
        sleep_ms(200);
    }
    return pass;
}

/*
 * The state over the API: {"operators": {id: view}, "lists": {id: [dialog ids]},
 * "queue": [items], "owners": {dialog id: {kind, operator_id, status}}}.
 */
static json_t *read_state(void)
{
    json_t *st = json_object();
    json_t *ops = NULL;
    json_t *q = NULL;
    json_t *lists = json_object();
    json_t *owners = json_object();
    json_t *byid = json_object();
    json_t *v;
    size_t i;

    assert_int_equal(call("GET", "/api/v1/operators", NULL, NULL, &ops), 200);
    json_array_foreach (json_object_get(ops, "items"), i, v) {
        json_t *slim = json_pack(
            "{s:O?, s:O?, s:O?, s:O?, s:O?}", "status", json_object_get(v, "status"),
            "open_dialogs", json_object_get(v, "open_dialogs"), "max_dialogs",
            json_object_get(v, "max_dialogs"), "languages",
            json_object_get(v, "languages"), "skills", json_object_get(v, "skills"));

        (void)json_object_set_new(byid, js(v, "operator_id"), slim);
    }
    json_decref(ops);
    for (int k = 0; k < N_OPS; k++) {
        json_t *mine = my_dialogs(&G.ops[k]);
        json_t *ids = json_array();
        json_t *it;
        size_t n;

        assert_non_null(mine);
        json_array_foreach (json_object_get(mine, "items"), n, it)
            (void)json_array_append_new(ids, json_string(js(it, "dialog_id")));
        (void)json_object_set_new(lists, G.ops[k].id, ids);
        json_decref(mine);
    }
    assert_int_equal(call("GET", "/api/v1/queue?limit=1000", NULL, NULL, &q), 200);
    for (size_t k = 0; k < G.ndlgs; k++) {
        char path[256];
        json_t *d = NULL;
        json_t *owner;

        assert_int_equal(call("GET", dpath(path, G.dlgs[k]->id, ""), NULL, NULL, &d),
                         200);
        owner = json_object_get(d, "owner");
        (void)json_object_set_new(owners, G.dlgs[k]->id,
                                  json_pack("{s:s, s:s, s:s}", "kind", js(owner, "kind"),
                                            "operator_id", js(owner, "operator_id"),
                                            "status", js(d, "status")));
        json_decref(d);
    }
    (void)json_object_set_new(st, "operators", byid);
    (void)json_object_set_new(st, "lists", lists);
    {
        json_t *items = json_deep_copy(json_object_get(q, "items"));
        json_t *it;
        size_t n;

        json_array_foreach (items, n, it) /* grows by itself */
            (void)json_object_del(it, "waiting_s");
        (void)json_object_set_new(st, "queue", items);
    }
    (void)json_object_set_new(st, "queue_length",
                              json_deep_copy(json_object_get(q, "length")));
    (void)json_object_set_new(st, "owners", owners);
    json_decref(q);
    return st;
}

/* Does operator view @v serve @lang / @skill (NULL or "" = any)? */
static bool has(json_t *arr, const char *s)
{
    json_t *x;
    size_t i;

    json_array_foreach (arr, i, x) {
        if (strcmp(json_string_value(x) ?: "", s) == 0)
            return true;
    }
    return false;
}

static bool eligible(json_t *v, const char *lang, const char *skill)
{
    json_t *skills = json_object_get(v, "skills");

    if (strcmp(js(v, "status"), "available") != 0)
        return false;
    if (json_integer_value(json_object_get(v, "open_dialogs")) >=
        json_integer_value(json_object_get(v, "max_dialogs")))
        return false;
    if (lang != NULL && lang[0] != '\0' && !has(json_object_get(v, "languages"), lang))
        return false;
    if (skill != NULL && skill[0] != '\0' && json_array_size(skills) > 0 &&
        !has(skills, skill))
        return false;
    return true;
}

/* Returns the number of violations found in @st (@nops distinct operators). */
static unsigned check_state_n(json_t *st, int nops)
{
    json_t *ops = json_object_get(st, "operators");
    json_t *lists = json_object_get(st, "lists");
    json_t *owners = json_object_get(st, "owners");
    json_t *queue = json_object_get(st, "queue");
    json_t *holder = json_object(); /* dialog id -> operator id */
    json_t *queued = json_object(); /* dialog id -> true */
    unsigned bad = 0;
    const char *oid;
    json_t *v;
    size_t i;

#define BAD(...)                                                                         \
    do {                                                                                 \
        bad++;                                                                           \
        if (bad <= MAX_DIAG) {                                                           \
            printf("# invariant: ");                                                     \
            printf(__VA_ARGS__);                                                         \
            printf("\n");                                                                \
        }                                                                                \
    } while (0)

    if ((int)json_object_size(ops) != nops)
        BAD("GET /operators lists %zu operators, want %d", json_object_size(ops), nops);
    json_object_foreach (ops, oid, v) {
        json_int_t open = json_integer_value(json_object_get(v, "open_dialogs"));
        json_int_t max = json_integer_value(json_object_get(v, "max_dialogs"));
        json_t *list = json_object_get(lists, oid);

        if (open > max)
            BAD("operator %s: open_dialogs %lld > max_dialogs %lld", oid, (long long)open,
                (long long)max);
        if (list == NULL) {
            BAD("operator %s of GET /operators is not one of ours", oid);
            continue;
        }
        if ((json_int_t)json_array_size(list) != open)
            BAD("operator %s: open_dialogs %lld, /me/dialogs lists %zu", oid,
                (long long)open, json_array_size(list));
        if ((json_int_t)json_array_size(list) > max)
            BAD("operator %s: /me/dialogs lists %zu > max_dialogs %lld", oid,
                json_array_size(list), (long long)max);
    }
    json_object_foreach (lists, oid, v) {
        json_t *x;

        json_array_foreach (v, i, x) {
            const char *did = json_string_value(x);
            const char *other = json_string_value(json_object_get(holder, did));
            json_t *ow = json_object_get(owners, did);

            if (other != NULL)
                BAD("dialog %s is in the lists of %s and %s", did, other, oid);
            (void)json_object_set_new(holder, did, json_string(oid));
            if (ow == NULL) {
                BAD("dialog %s of %s's list is not one of ours", did, oid);
                continue;
            }
            if (strcmp(js(ow, "kind"), "operator") != 0 ||
                strcmp(js(ow, "operator_id"), oid) != 0)
                BAD("dialog %s in %s's list: owner %s/%s", did, oid, js(ow, "kind"),
                    js(ow, "operator_id"));
            if (strcmp(js(ow, "status"), "assigned") != 0)
                BAD("dialog %s in %s's list has status %s", did, oid, js(ow, "status"));
        }
    }
    json_array_foreach (queue, i, v) {
        const char *did = js(v, "dialog_id");
        json_t *ow = json_object_get(owners, did);

        if (json_object_get(queued, did) != NULL)
            BAD("dialog %s twice in the queue", did);
        (void)json_object_set_new(queued, did, json_true());
        if (json_object_get(holder, did) != NULL)
            BAD("dialog %s is queued and in %s's list", did,
                json_string_value(json_object_get(holder, did)));
        if (ow == NULL || strcmp(js(ow, "kind"), "queue") != 0 ||
            strcmp(js(ow, "status"), "queued") != 0)
            BAD("dialog %s in GET /queue: owner %s, status %s", did,
                ow ? js(ow, "kind") : "?", ow ? js(ow, "status") : "?");
        if (json_integer_value(json_object_get(v, "position")) != (json_int_t)i + 1)
            BAD("queue item %zu has position %lld", i,
                (long long)json_integer_value(json_object_get(v, "position")));
    }
    if (json_integer_value(json_object_get(st, "queue_length")) !=
        (json_int_t)json_array_size(queue))
        BAD("GET /queue length %lld, %zu items",
            (long long)json_integer_value(json_object_get(st, "queue_length")),
            json_array_size(queue));
    json_object_foreach (owners, oid, v) {
        const char *kind = js(v, "kind");

        if (strcmp(js(v, "status"), "closed") == 0) {
            /* a closed dialog keeps its last owner as a record; it is in no list
             * (checked above: listed dialogs are "assigned") and not queued */
            if (json_object_get(queued, oid) != NULL)
                BAD("closed dialog %s is in GET /queue", oid);
        } else if (strcmp(kind, "operator") == 0) {
            const char *h = json_string_value(json_object_get(holder, oid));

            if (h == NULL || strcmp(h, js(v, "operator_id")) != 0)
                BAD("dialog %s: owner operator %s, status %s, but in the list of %s", oid,
                    js(v, "operator_id"), js(v, "status"), h ? h : "nobody");
        } else if (strcmp(kind, "queue") == 0) {
            if (json_object_get(queued, oid) == NULL)
                BAD("dialog %s: owner queue, not in GET /queue", oid);
        } else if (strcmp(kind, "agent") != 0 && kind[0] != '\0') {
            /* no "owner" at all: a dialog the AI has always had */
            BAD("dialog %s: owner kind '%s'", oid, kind);
        }
    }
    /* nothing queued while an eligible operator has a free seat */
    json_array_foreach (queue, i, v) {
        const char *lang = json_string_value(json_object_get(v, "language"));
        const char *skill = json_string_value(json_object_get(v, "skill"));
        json_t *ov;

        json_object_foreach (ops, oid, ov) {
            if (eligible(ov, lang, skill)) {
                BAD("dialog %s (language %s, skill %s) queued while %s (%s, %lld/%lld) "
                    "could take it",
                    js(v, "dialog_id"), lang ? lang : "-", skill ? skill : "-", oid,
                    js(ov, "status"),
                    (long long)json_integer_value(json_object_get(ov, "open_dialogs")),
                    (long long)json_integer_value(json_object_get(ov, "max_dialogs")));
                break;
            }
        }
    }
    json_decref(holder);
    json_decref(queued);
    return bad;
}

static unsigned check_state(json_t *st)
{
    return check_state_n(st, N_OPS);
}

/* Every acknowledged text exactly once in its dialog; a refused one never. */
static unsigned check_messages(unsigned long *ret_checked)
{
    unsigned bad = 0;
    unsigned long checked = 0;

    for (size_t k = 0; k < G.ndlgs; k++) {
        struct dlg *d = G.dlgs[k];
        char path[256];
        json_t *doc = NULL;
        json_t *msgs;

        assert_int_equal(call("GET", dpath(path, d->id, ""), NULL, NULL, &doc), 200);
        msgs = json_object_get(doc, "messages");
        for (size_t t = 0; t < d->n; t++) {
            const char *role = d->texts[t].operator_reply ? "operator" : "customer";
            unsigned n = 0;
            json_t *m;
            size_t i;

            json_array_foreach (msgs, i, m) {
                if (strcmp(js(m, "content"), d->texts[t].text) == 0 &&
                    strcmp(js(m, "role"), role) == 0)
                    n++;
            }
            checked++;
            if (d->texts[t].unknown) {
                if (n > 1)
                    BAD("dialog %s: %s message '%s' (no response) found %u times", d->id,
                        role, d->texts[t].text, n);
            } else if (d->texts[t].acked && n != 1)
                BAD("dialog %s: %s message '%s' (acknowledged) found %u times", d->id,
                    role, d->texts[t].text, n);
            else if (!d->texts[t].acked && n != 0)
                BAD("dialog %s: %s message '%s' (refused) found %u times", d->id, role,
                    d->texts[t].text, n);
        }
        json_decref(doc);
    }
    *ret_checked = checked;
    return bad;
}

/* ---- the test -----------------------------------------------------------------------
 */

static void test_stress(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"OPERATOR_REPLY_TIMEOUT_S=5", NULL};
    pthread_t cust[N_CUST_THREADS];
    pthread_t opt[N_OP_THREADS];
    pthread_t mon;
    uint64_t rng;
    int64_t t0;
    int64_t t_run;
    json_t *s1;
    json_t *s2;
    unsigned bad;
    unsigned long checked = 0;
    int passes;
    double timeouts;
    const char *seed_env = getenv("CCA_OPS_STRESS_SEED");

    (void)state;
    g_seed = seed_env != NULL ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL);
    printf("# seed %" PRIu64 " (CCA_OPS_STRESS_SEED)\n", g_seed);
    rng = g_seed;
    pthread_mutex_init(&G.mu, NULL);
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    G.port = srv.port;
    t0 = now_ms();

    /* 50 operators, admin-created (open API) */
    for (int i = 0; i < N_OPS; i++) {
        struct op *o = &G.ops[i];
        static const char *const langs[] = {"[\"ru\"]", "[\"en\"]", "[\"ru\",\"en\"]"};
        static const char *const skills[] = {"[]", "[\"tech_support\"]",
                                             "[\"sales\",\"supervisor\"]"};
        unsigned l = below(&rng, 3);
        unsigned s = below(&rng, 10) < 7 ? 0 : 1 + below(&rng, 2);
        char body[256];
        json_t *j = NULL;

        o->max = 1 + below(&rng, 4);
        o->silent = i % 5 == 0;
        o->ru = l != 1;
        o->en = l != 0;
        o->skills = s;
        (void)snprintf(body, sizeof(body),
                       "{\"name\":\"Operator %d\",\"languages\":%s,\"skills\":%s,"
                       "\"max_dialogs\":%u}",
                       i, langs[l], skills[s], o->max);
        assert_int_equal(call("POST", "/api/v1/operators", NULL, body, &j), 201);
        (void)snprintf(o->id, sizeof(o->id), "%s", js(j, "operator_id"));
        (void)snprintf(o->token, sizeof(o->token), "%s", js(j, "token"));
        json_decref(j);
        assert_int_equal(
            call("PUT", "/api/v1/operators/me/status", o->token,
                 below(&rng, 3) ? "{\"status\":\"available\"}" : "{\"status\":\"busy\"}",
                 NULL),
            200);
    }

    /* the run */
    for (uintptr_t i = 0; i < N_CUST_THREADS; i++)
        assert_int_equal(pthread_create(&cust[i], NULL, customer_thread, (void *)i), 0);
    for (uintptr_t i = 0; i < N_OP_THREADS; i++)
        assert_int_equal(pthread_create(&opt[i], NULL, operator_thread, (void *)i), 0);
    assert_int_equal(pthread_create(&mon, NULL, monitor_thread, NULL), 0);
    while ((atomic_load(&G.escalations) < N_ESCALATIONS || now_ms() - t0 < RUN_MIN_MS) &&
           now_ms() - t0 < RUN_MAX_MS)
        sleep_ms(50);
    atomic_store(&G.stop, true);
    for (int i = 0; i < N_CUST_THREADS; i++)
        pthread_join(cust[i], NULL);
    for (int i = 0; i < N_OP_THREADS; i++)
        pthread_join(opt[i], NULL);
    pthread_join(mon, NULL);
    t_run = now_ms() - t0;

    /* a last burst of escalations with the statuses as the run left them, so the
     * queue is likely not empty when the sweep's invariant is checked */
    {
        uint64_t r2 = g_seed ^ 0x5EEDull;

        for (int i = 0; i < BURST; i++) {
            struct dlg *d = calloc(1, sizeof(*d));
            json_t *j = NULL;
            char path[256];

            d->en = below(&r2, 2) == 0;
            assert_int_equal(call("POST", "/api/v1/dialogue/create", NULL,
                                  "{\"customer_info\":{\"name\":\"Last\"}}", &j),
                             201);
            (void)snprintf(d->id, sizeof(d->id), "%s", js(j, "dialog_id"));
            json_decref(j);
            assert_true(G.ndlgs < MAX_DIALOGS);
            G.dlgs[G.ndlgs++] = d;
            customer_say(
                d, d->en ? "Hello, my internet is down" : "Здравствуйте, нет интернета",
                NULL);
            assert_int_equal(call("POST", dpath(path, d->id, "/handoff"), NULL,
                                  "{\"to\":\"human\"}", NULL),
                             200);
        }
    }

    /* no reply timeout pending, then the same state twice */
    passes = settle();
    s1 = read_state();
    sleep_ms(1000);
    s2 = read_state();
    printf("# run %.1f s: dialogs %zu, escalations %u, requests %lu, replies %lu "
           "(refused %lu), closes %lu, hand-backs %lu, transfers %lu, pulls %lu, takes "
           "%lu, status flips %lu, 202s %lu, capacity samples %lu; settle passes %d; "
           "queued at the end %zu\n",
           t_run / 1000.0, G.ndlgs, atomic_load(&G.escalations), atomic_load(&G.requests),
           atomic_load(&G.replies_ok), atomic_load(&G.replies_refused),
           atomic_load(&G.closes), atomic_load(&G.handbacks), atomic_load(&G.transfers),
           atomic_load(&G.pulls), atomic_load(&G.takes), atomic_load(&G.flips),
           atomic_load(&G.queued_answers), atomic_load(&G.samples), passes,
           json_array_size(json_object_get(s2, "queue")));
    /* requeues by cause, as the server counts them: the silent operators lost
     * dialogs to the reply timeout */
    timeouts = h_metric(srv.port, "cca_requeues_total{cause=\"reply_timeout\"}");
    printf("# cca_requeues_total: reply_timeout %g, operator_offline %g\n", timeouts,
           h_metric(srv.port, "cca_requeues_total{cause=\"operator_offline\"}"));
    if (!json_equal(s1, s2)) {
        const char *part;
        json_t *v1;

        printf("# the state changed with nothing going on:\n");
        json_object_foreach (s1, part, v1) {
            json_t *v2 = json_object_get(s2, part);

            if (json_is_object(v1)) {
                const char *k;
                json_t *x;

                json_object_foreach (v1, k, x) {
                    if (!json_equal(x, json_object_get(v2, k))) {
                        char *a = json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY);
                        char *b = json_dumps(json_object_get(v2, k),
                                             JSON_COMPACT | JSON_ENCODE_ANY);

                        printf("#   %s.%s: %.300s -> %.300s\n", part, k, a, b ? b : "-");
                        free(a);
                        free(b);
                    }
                }
            } else if (!json_equal(v1, v2)) {
                char *a = json_dumps(v1, JSON_COMPACT | JSON_ENCODE_ANY);
                char *b = json_dumps(v2, JSON_COMPACT | JSON_ENCODE_ANY);

                printf("#   %s: %.1000s -> %.1000s\n", part, a, b ? b : "-");
                free(a);
                free(b);
            }
        }
    }
    bad = check_state(s2);
    bad += check_messages(&checked);
    printf("# messages checked: %lu; invariant violations: %u; over capacity samples: "
           "%lu; 5xx or no response: %lu\n",
           checked, bad, atomic_load(&G.over_capacity), atomic_load(&G.errors));
    assert_true(json_equal(s1, s2));
    assert_int_equal(bad, 0);
    assert_int_equal(atomic_load(&G.over_capacity), 0);
    assert_int_equal(atomic_load(&G.errors), 0);
    assert_true(atomic_load(&G.escalations) >= N_ESCALATIONS);
    assert_true(timeouts > 0);
    json_decref(s1);
    json_decref(s2);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/* Forget the dialogs and counters of a previous test. */
static void reset(void)
{
    for (size_t k = 0; k < G.ndlgs; k++) {
        for (size_t t = 0; t < G.dlgs[k]->n; t++)
            free(G.dlgs[k]->texts[t].text);
        free(G.dlgs[k]->texts);
        free(G.dlgs[k]);
    }
    pthread_mutex_destroy(&G.mu);
    memset(&G, 0, sizeof(G));
    pthread_mutex_init(&G.mu, NULL);
}

/*
 * SIGKILL in the middle of it all: 12 operators and 4 customer threads at work
 * for 1.5 s, then the server is killed with requests in flight and restarted
 * on the same storage. Every operator is back (same ids, tokens working, the
 * same max_dialogs); after the operators answer what is theirs, the same
 * invariants as above hold; every acknowledged message is there exactly once,
 * a refused one never, one without a response at most once; and the restarted
 * server goes on assigning (a new escalation is taken by an available operator
 * with a free seat, or queued when none).
 */
static void test_kill_midflight(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"OPERATOR_REPLY_TIMEOUT_S=300", NULL};
    pthread_t cust[4];
    pthread_t opt[4];
    uint64_t rng;
    json_t *st1;
    json_t *ops = NULL;
    unsigned bad;
    unsigned long checked = 0;
    const int nops = 12;

    (void)state;
    reset();
    g_seed = g_seed * 31 + 7;
    rng = g_seed;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    G.port = srv.port;
    for (int i = 0; i < N_OPS; i++) {
        struct op *o = &G.ops[i];
        char body[256];
        json_t *j = NULL;

        if (i >= nops) { /* the checks read N_OPS operators: the rest are copies */
            *o = G.ops[i % nops];
            continue;
        }
        o->max = 1 + below(&rng, 3);
        (void)snprintf(
            body, sizeof(body),
            "{\"name\":\"K%d\",\"languages\":[\"ru\",\"en\"],\"max_dialogs\":%u}", i,
            o->max);
        assert_int_equal(call("POST", "/api/v1/operators", NULL, body, &j), 201);
        (void)snprintf(o->id, sizeof(o->id), "%s", js(j, "operator_id"));
        (void)snprintf(o->token, sizeof(o->token), "%s", js(j, "token"));
        json_decref(j);
        assert_int_equal(call("PUT", "/api/v1/operators/me/status", o->token,
                              "{\"status\":\"available\"}", NULL),
                         200);
    }
    for (uintptr_t i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&cust[i], NULL, customer_thread, (void *)i), 0);
        assert_int_equal(pthread_create(&opt[i], NULL, operator_thread, (void *)i), 0);
    }
    sleep_ms(1500);
    atomic_store(&G.killing, true);
    h_kill(&srv);
    atomic_store(&G.stop, true);
    for (int i = 0; i < 4; i++) {
        pthread_join(cust[i], NULL);
        pthread_join(opt[i], NULL);
    }
    atomic_store(&G.killing, false);
    printf("# before the kill: dialogs %zu, escalations %u, requests %lu, replies %lu, "
           "closes %lu, hand-backs %lu, transfers %lu\n",
           G.ndlgs, atomic_load(&G.escalations), atomic_load(&G.requests),
           atomic_load(&G.replies_ok), atomic_load(&G.closes), atomic_load(&G.handbacks),
           atomic_load(&G.transfers));

    h_server_start(&srv, dir, env);
    G.port = srv.port;
    /* the operators: all back, tokens working */
    assert_int_equal(call("GET", "/api/v1/operators", NULL, NULL, &ops), 200);
    assert_int_equal(json_array_size(json_object_get(ops, "items")), nops);
    json_decref(ops);
    for (int i = 0; i < nops; i++) {
        json_t *me = NULL;

        assert_int_equal(call("GET", "/api/v1/operators/me", G.ops[i].token, NULL, &me),
                         200);
        assert_string_equal(js(me, "operator_id"), G.ops[i].id);
        assert_int_equal(json_integer_value(json_object_get(me, "max_dialogs")),
                         G.ops[i].max);
        json_decref(me);
    }
    (void)settle();
    st1 = read_state();
    /* the operators are listed N_OPS / nops times over: drop the repeats */
    bad = check_state_n(st1, nops);
    bad += check_messages(&checked);
    printf("# after the restart: messages checked %lu, invariant violations %u, "
           "queued %zu\n",
           checked, bad, json_array_size(json_object_get(st1, "queue")));
    json_decref(st1);
    assert_int_equal(bad, 0);
    assert_int_equal(atomic_load(&G.errors), 0);

    /* the restarted desk assigns: everyone available, a new escalation */
    {
        json_t *j = NULL;
        char id[37];
        char path[256];

        for (int i = 0; i < nops; i++)
            assert_int_equal(call("PUT", "/api/v1/operators/me/status", G.ops[i].token,
                                  "{\"status\":\"available\"}", NULL),
                             200);
        assert_int_equal(call("POST", "/api/v1/dialogue/create", NULL,
                              "{\"customer_info\":{\"name\":\"After\"}}", &j),
                         201);
        (void)snprintf(id, sizeof(id), "%s", js(j, "dialog_id"));
        json_decref(j);
        j = NULL;
        assert_true(G.ndlgs < MAX_DIALOGS);
        G.dlgs[G.ndlgs] = calloc(1, sizeof(struct dlg));
        (void)snprintf(G.dlgs[G.ndlgs++]->id, 37, "%s", id);
        assert_int_equal(
            call("POST", dpath(path, id, "/handoff"), NULL, "{\"to\":\"human\"}", &j),
            200);
        printf("# a new escalation after the restart: %s\n", js(j, "escalation"));
        assert_true(strcmp(js(j, "escalation"), "assigned") == 0 ||
                    strcmp(js(j, "escalation"), "queued") == 0);
        json_decref(j);
        st1 = read_state();
        bad = check_state_n(st1, nops);
        json_decref(st1);
        assert_int_equal(bad, 0);
    }
    assert_int_equal(h_stop(&srv), 0);
    reset();
    h_remove_tmpdirs();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_stress, h_kill_all),
        cmocka_unit_test_teardown(test_kill_midflight, h_kill_all),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
