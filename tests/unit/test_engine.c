/* SPDX-License-Identifier: MIT */
/*
 * The engine on its own (include/cca/engine.h), over the in-memory store of
 * store_memory.c, with the shipped router and agents and no LLM: per-dialog
 * queues (arrival order, one change per dialog in the store, other dialogs not
 * blocked), failed commits, the index (stats, list filters, cursors), the
 * document cache (budget, reads going to the store, a busy dialog kept),
 * idempotent creates and messages and the key bound, both cleanups, the
 * pending limit and shutdown.
 */
#include "cca_test.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cca/agent.h"
#include "cca/config.h"
#include "cca/desk.h"
#include "cca/dialog.h"
#include "cca/engine.h"
#include "cca/events.h"
#include "cca/operator.h"
#include "cca/mem.h"
#include "cca/router.h"
#include "cca/store.h"
#include "cca/text.h"
#include "store_memory.h"

#define DATA_DIR CCA_SOURCE_ROOT "/data"
#define LEXICON  CCA_SOURCE_ROOT "/data/routing/lexicon.json"

/* Messages the shipped lexicon routes clearly (checked with `route`). */
#define TEXT_TECH  "Не работает приложение, не могу войти в аккаунт"
#define TEXT_SALES "How much does the Premium plan cost?"
#define TEXT_SUPER "I want to speak to a manager, I demand a refund"

#define WAIT_S 30 /* the longest any operation of these tests may take */

static struct cca_router *router;
static struct cca_agents *agents;
static struct cca_config base_cfg;

static int group_setup(void **state)
{
    struct cca_router_params rp = {.default_agent = CCA_AGENT_TECH_SUPPORT};
    struct cca_error err = {0};

    (void)state;
    if (cca_config_load(&base_cfg, NULL, NULL, NULL, &err) != CCA_OK) {
        fprintf(stderr, "config: %s\n", err.msg);
        return -1;
    }
    rp.min_score = base_cfg.router_min_score;
    rp.min_margin = base_cfg.router_min_margin;
    if (cca_router_new(LEXICON, &rp, &router, &err) != CCA_OK) {
        fprintf(stderr, "lexicon: %s\n", err.msg);
        return -1;
    }
    if (cca_agents_new(DATA_DIR, &agents, &err) != CCA_OK) {
        fprintf(stderr, "agents: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cca_agents_free(agents);
    cca_router_free(router);
    cca_text_thread_cleanup();
    return 0;
}

/* ---- calls and their outcomes -------------------------------------------- */

static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t calls_cond = PTHREAD_COND_INITIALIZER;
static unsigned completions; /* outcomes delivered so far, all tests */

/* One submitted request: its outcome once @done. */
struct call {
    bool done;
    unsigned seq; /* completion order (completions at the time) */
    cca_rc rc;
    json_t *result;
    struct cca_error err;
};

static void on_done(void *ctx, cca_rc rc, json_t *result, const struct cca_error *err)
{
    struct call *c = ctx;

    pthread_mutex_lock(&calls_lock);
    if (c->done)
        abort(); /* called twice: engine.h says exactly once */
    c->rc = rc;
    c->result = result;
    if (err != NULL)
        c->err = *err;
    c->seq = ++completions;
    c->done = true;
    pthread_cond_broadcast(&calls_cond);
    pthread_mutex_unlock(&calls_lock);
}

static void wait_call(struct call *c)
{
    struct timespec ts;
    bool done;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    pthread_mutex_lock(&calls_lock);
    while (!c->done && pthread_cond_timedwait(&calls_cond, &calls_lock, &ts) == 0)
        ;
    done = c->done;
    pthread_mutex_unlock(&calls_lock);
    if (!done)
        fail_msg("no outcome within %d s", WAIT_S);
}

static bool call_done(struct call *c)
{
    bool done;

    pthread_mutex_lock(&calls_lock);
    done = c->done;
    pthread_mutex_unlock(&calls_lock);
    return done;
}

static void call_cleanup(struct call *c)
{
    json_decref(c->result);
    memset(c, 0, sizeof(*c));
}

static const char *op_name(enum cca_engine_op op)
{
    static const char *const names[] = {"create", "message",          "close",
                                        "delete", "cleanup_inactive", "cleanup_closed"};

    return (unsigned)op < CCA_ARRAY_SIZE(names) ? names[op] : "unknown";
}

/*
 * The view of these tests: {op, dialog_id, messages, status, agent,
 * previous, message_id, already_closed, count}, from what the outcome has.
 */
static json_t *render(const struct cca_engine_outcome *o)
{
    json_t *r = json_object();

    (void)json_object_set_new(r, "op", json_string(op_name(o->op)));
    if (o->dialog_id != NULL)
        (void)json_object_set_new(r, "dialog_id", json_string(o->dialog_id));
    if (o->doc != NULL) {
        (void)json_object_set_new(
            r, "messages", json_integer((json_int_t)cca_dialog_message_count(o->doc)));
        (void)json_object_set_new(
            r, "status",
            json_string(cca_dialog_status_name(cca_dialog_get_status(o->doc))));
    }
    if (o->turn != NULL) {
        (void)json_object_set_new(r, "agent",
                                  json_string(cca_agent_name(o->turn->route.agent)));
        if (o->turn->previous != CCA_AGENT_NONE)
            (void)json_object_set_new(r, "previous",
                                      json_string(cca_agent_name(o->turn->previous)));
        (void)json_object_set_new(r, "message_id", json_string(o->message_id));
    }
    (void)json_object_set_new(r, "already_closed", json_boolean(o->already_closed));
    (void)json_object_set_new(r, "count", json_integer(o->count));
    return r;
}

static json_int_t result_int(const struct call *c, const char *key)
{
    assert_non_null(c->result);
    return json_integer_value(json_object_get(c->result, key));
}

static const char *result_str(const struct call *c, const char *key)
{
    const char *s;

    assert_non_null(c->result);
    s = json_string_value(json_object_get(c->result, key));
    assert_non_null(s);
    return s;
}

/* ---- an engine over a memory store --------------------------------------- */

struct fx {
    struct cca_config cfg; /* base_cfg, adjusted by the test before fx_start */
    struct cca_store *store;
    struct store_memory *mem;
    struct cca_engine *engine;
    struct cca_desk *desk; /* fx_start_human: the human side */
    struct cca_events *events;
};

static struct fx *fx_new(void)
{
    struct fx *f = cca_xcalloc(1, sizeof(*f));

    f->cfg = base_cfg;
    store_memory_new(&f->store, &f->mem);
    return f;
}

static void fx_start(struct fx *f)
{
    struct cca_engine_params p = {
        .cfg = &f->cfg, .store = f->store, .router = router, .agents = agents};
    struct cca_error err = {0};

    assert_int_equal(cca_engine_new(&p, &f->engine, &err), CCA_OK);
}

/* fx_start with a desk and an event log (the human side). */
static void fx_start_human(struct fx *f)
{
    struct cca_desk_params dp = {.queue_max = 100, .default_handle_s = 300, .seed = 1};
    struct cca_engine_params p = {
        .cfg = &f->cfg, .store = f->store, .router = router, .agents = agents};
    struct cca_error err = {0};

    f->desk = cca_desk_new(&dp);
    f->events = cca_events_new(1000, 1 << 20);
    p.desk = f->desk;
    p.events = f->events;
    assert_int_equal(cca_engine_new(&p, &f->engine, &err), CCA_OK);
}

static void fx_free(struct fx *f)
{
    if (f->engine != NULL) {
        assert_true(cca_engine_drain(f->engine, cca_time_mono_ms() + WAIT_S * 1000));
        cca_engine_free(f->engine);
    }
    cca_events_free(f->events);
    cca_desk_free(f->desk);
    cca_store_free(f->store);
    free(f);
}

static void submit(struct fx *f, struct cca_engine_request *req, struct call *c)
{
    memset(c, 0, sizeof(*c));
    req->render = render;
    assert_int_equal(cca_engine_submit(f->engine, req, on_done, c), CCA_OK);
}

static void fill_create(struct cca_dialog_create *c, const char *customer,
                        const char *text)
{
    c->customer_id = cca_xstrdup(customer);
    c->initial_message = text != NULL ? cca_xstrdup(text) : NULL;
    c->source = cca_xstrdup("api");
    c->priority = cca_xstrdup("normal");
}

/* A create; @key and @hash may be NULL (no Idempotency-Key). */
static void submit_create(struct fx *f, struct call *c, const char *customer,
                          const char *text, const char *key, const char *hash)
{
    struct cca_engine_request req = {.op = CCA_OP_CREATE};

    fill_create(&req.create, customer, text);
    if (key != NULL) {
        req.idempotency_key = cca_xstrdup(key);
        (void)snprintf(req.request_hash, sizeof(req.request_hash), "%s", hash);
    }
    submit(f, &req, c);
}

static void submit_message(struct fx *f, struct call *c, const char *id, const char *text,
                           const char *key, const char *hash)
{
    struct cca_engine_request req = {.op = CCA_OP_MESSAGE};

    (void)snprintf(req.id, sizeof(req.id), "%s", id);
    req.text = cca_xstrdup(text);
    if (key != NULL) {
        req.idempotency_key = cca_xstrdup(key);
        (void)snprintf(req.request_hash, sizeof(req.request_hash), "%s", hash);
    }
    submit(f, &req, c);
}

static void submit_close(struct fx *f, struct call *c, const char *id)
{
    struct cca_engine_request req = {.op = CCA_OP_CLOSE};

    (void)snprintf(req.id, sizeof(req.id), "%s", id);
    req.reason = cca_xstrdup("resolved");
    submit(f, &req, c);
}

static void submit_delete(struct fx *f, struct call *c, const char *id, bool force)
{
    struct cca_engine_request req = {.op = CCA_OP_DELETE, .force = force};

    (void)snprintf(req.id, sizeof(req.id), "%s", id);
    submit(f, &req, c);
}

static void submit_cleanup(struct fx *f, struct call *c, enum cca_engine_op op,
                           unsigned older_than_days)
{
    struct cca_engine_request req = {.op = op, .older_than_days = older_than_days};

    submit(f, &req, c);
}

/* Wait for @c, expect @rc, forget the outcome. */
static void expect_rc(struct call *c, cca_rc rc)
{
    wait_call(c);
    if (c->rc != rc)
        fail_msg("rc %s, expected %s (%s)", cca_strerror(c->rc), cca_strerror(rc),
                 c->err.msg);
    if (rc == CCA_OK)
        assert_non_null(c->result);
    else
        assert_null(c->result);
    call_cleanup(c);
}

/* Create a dialog and wait for it; its id into @id. */
static void create_dialog(struct fx *f, const char *customer, const char *text,
                          char id[37])
{
    struct call c;

    submit_create(f, &c, customer, text, NULL, NULL);
    wait_call(&c);
    if (c.rc != CCA_OK)
        fail_msg("create: %s", c.err.msg);
    (void)snprintf(id, 37, "%s", result_str(&c, "dialog_id"));
    call_cleanup(&c);
    /* The customer's profile is filled after the create (an operation of its own):
     * let it commit, so that a test's next store fault hits what the test means. */
    assert_true(cca_engine_drain(f->engine, cca_time_mono_ms() + 10000));
}

static void message_ok(struct fx *f, const char *id, const char *text)
{
    struct call c;

    submit_message(f, &c, id, text, NULL, NULL);
    expect_rc(&c, CCA_OK);
}

/*
 * Wait until the engine thread finished what it was doing when an outcome
 * came (it answers first, then hands the dialog on): one more request through
 * its queue, a delete of no dialog.
 */
static void barrier(struct fx *f)
{
    struct call c;
    char id[37];

    cca_uuid_new(id);
    submit_delete(f, &c, id, true);
    expect_rc(&c, CCA_ERR_NOT_FOUND);
}

/* The committed document of @id (a new reference); fails the test if absent. */
static json_t *get_doc(struct fx *f, const char *id)
{
    struct cca_error err = {0};
    json_t *doc = NULL;

    if (cca_engine_get_dialog(f->engine, id, &doc, &err) != CCA_OK)
        fail_msg("get_dialog %s: %s", id, err.msg);
    assert_string_equal(cca_dialog_get_str(doc, "dialog_id"), id);
    return doc;
}

static size_t messages_of(struct fx *f, const char *id)
{
    json_t *doc = get_doc(f, id);
    size_t n = cca_dialog_message_count(doc);

    json_decref(doc);
    return n;
}

static enum cca_dialog_status status_of(struct fx *f, const char *id)
{
    json_t *doc = get_doc(f, id);
    enum cca_dialog_status st = cca_dialog_get_status(doc);

    json_decref(doc);
    return st;
}

static struct cca_engine_stats stats_of(struct fx *f)
{
    struct cca_engine_stats st;

    cca_engine_get_stats(f->engine, &st);
    return st;
}

static void expect_counts(struct fx *f, size_t active, size_t escalated, size_t closed)
{
    struct cca_engine_stats st = stats_of(f);

    assert_int_equal(st.dialogs[CCA_DIALOG_ACTIVE], active);
    assert_int_equal(st.dialogs[CCA_DIALOG_ESCALATED], escalated);
    assert_int_equal(st.dialogs[CCA_DIALOG_CLOSED], closed);
    assert_int_equal(st.total, active + escalated + closed);
}

/* Sleep until @pred(@f, @arg) holds; fails after WAIT_S. */
static void poll_until(bool (*pred)(struct fx *, const char *), struct fx *f,
                       const char *arg)
{
    int64_t deadline = cca_time_mono_ms() + WAIT_S * 1000;

    while (!pred(f, arg)) {
        if (cca_time_mono_ms() > deadline)
            fail_msg("condition not reached within %d s", WAIT_S);
        usleep(1000);
    }
}

static bool change_in_store(struct fx *f, const char *id)
{
    return store_memory_in_flight(f->mem, id) > 0;
}

/* ---- the backend itself -------------------------------------------------- */

static void test_memory_backend(void **state)
{
    struct cca_store *store;
    struct store_memory *mem;
    struct cca_store_health h;
    struct cca_error err = {0};
    json_t *doc = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    (void)state;
    store_memory_new(&store, &mem);
    assert_string_equal(cca_store_backend(store), "memory");
    assert_int_equal(cca_store_read(store, CCA_STORE_DIALOGS,
                                    "00000000-0000-4000-8000-000000000000", &doc, NULL,
                                    &err),
                     CCA_ERR_NOT_FOUND);
    cca_store_get_health(store, &h);
    assert_true(h.writable);
    assert_string_equal(h.last_error, "");
    store_memory_fail_next(mem, 2, CCA_ERR_NO_SPACE);
    cca_store_get_health(store, &h);
    assert_false(h.writable);
    assert_non_null(strstr(h.last_error, "dialog storage"));
    out = open_memstream(&text, &len);
    assert_non_null(out);
    cca_store_render_metrics(store, out);
    assert_int_equal(fclose(out), 0);
    assert_non_null(strstr(text, "cca_store_memory_reads_total 1\n"));
    free(text);
    assert_int_equal(store_memory_reads(mem), 1);
    cca_store_free(store);
}

/* ---- queues -------------------------------------------------------------- */

#define QUEUED 12

/*
 * Messages sent at once to one dialog, while every commit takes a while, are
 * applied one at a time in arrival order; a message to another dialog sent
 * after them all is answered long before the last of them.
 */
static void test_queue_order(void **state)
{
    struct fx *f = fx_new();
    struct call a[QUEUED];
    struct call b;
    char ida[37];
    char idb[37];
    char texts[QUEUED][32];
    json_t *doc;
    json_t *msgs;
    json_t *m;
    size_t i;
    size_t k = 0;

    (void)state;
    fx_start(f);
    create_dialog(f, "queue-a", NULL, ida);
    create_dialog(f, "queue-b", NULL, idb);
    store_memory_set_delay(f->mem, 20);
    for (i = 0; i < QUEUED; i++) {
        (void)snprintf(texts[i], sizeof(texts[i]), "вопрос номер %zu", i + 1);
        submit_message(f, &a[i], ida, texts[i], NULL, NULL);
    }
    submit_message(f, &b, idb, TEXT_SALES, NULL, NULL);
    /* Readers never wait on the queue: they see a committed version. */
    assert_int_equal(messages_of(f, ida) % 2, 0);
    for (i = 0; i < QUEUED; i++) {
        wait_call(&a[i]);
        assert_int_equal(a[i].rc, CCA_OK);
        /* The i-th message saw the i-1 before it. */
        assert_int_equal(result_int(&a[i], "messages"), 2 * (i + 1));
        if (i > 0)
            assert_true(a[i].seq > a[i - 1].seq);
    }
    wait_call(&b);
    assert_int_equal(b.rc, CCA_OK);
    assert_string_equal(result_str(&b, "agent"), "sales");
    /* Not behind dialog a's queue (20 ms per commit there). */
    if (b.seq > a[QUEUED / 2].seq)
        fail_msg("dialog b answered after %u of dialog a's messages",
                 b.seq - a[0].seq + 1);

    doc = get_doc(f, ida);
    msgs = json_object_get(doc, "messages");
    assert_int_equal(json_array_size(msgs), 2 * QUEUED);
    json_array_foreach (msgs, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "role")), "customer") != 0)
            continue;
        assert_true(k < QUEUED);
        assert_string_equal(json_string_value(json_object_get(m, "content")), texts[k]);
        k++;
    }
    assert_int_equal(k, QUEUED);
    json_decref(doc);

    /* The store saw the versions in order, one change per dialog at a time. */
    assert_int_equal(store_memory_versions(f->mem, ida), QUEUED + 1);
    for (i = 0; i <= QUEUED; i++) {
        json_t *v = store_memory_version(f->mem, ida, i);

        assert_int_equal(cca_dialog_message_count(v), 2 * i);
        json_decref(v);
    }
    assert_int_equal(store_memory_max_in_flight(f->mem), 1);
    assert_int_equal(store_memory_bad_calls(f->mem), 0);
    for (i = 0; i < QUEUED; i++)
        call_cleanup(&a[i]);
    call_cleanup(&b);
    fx_free(f);
}

/*
 * MAX_PENDING_TURNS: a request beyond it is refused (and its done never
 * called); once the others are answered, requests are taken again.
 */
static void test_pending_limit(void **state)
{
    struct fx *f = fx_new();
    struct cca_engine_request req = {.op = CCA_OP_MESSAGE, .render = render};
    struct call c[2];
    struct call extra = {0};
    char id[37];

    (void)state;
    f->cfg.max_pending_turns = 2;
    fx_start(f);
    create_dialog(f, "pending", NULL, id);
    /* The create is answered before it stops counting as in flight. */
    assert_true(cca_engine_drain(f->engine, cca_time_mono_ms() + WAIT_S * 1000));
    store_memory_hold(f->mem, true);
    submit_message(f, &c[0], id, "первое", NULL, NULL);
    submit_message(f, &c[1], id, "второе", NULL, NULL);
    assert_int_equal(stats_of(f).in_flight, 2);
    (void)snprintf(req.id, sizeof(req.id), "%s", id);
    req.text = cca_xstrdup("третье");
    assert_int_equal(cca_engine_submit(f->engine, &req, on_done, &extra),
                     CCA_ERR_UNAVAILABLE);
    assert_null(req.text); /* stolen also on failure */
    store_memory_hold(f->mem, false);
    expect_rc(&c[0], CCA_OK);
    expect_rc(&c[1], CCA_OK);
    assert_false(call_done(&extra));
    message_ok(f, id, "четвёртое");
    assert_int_equal(messages_of(f, id), 6);
    fx_free(f);
}

/* MAX_DIALOG_MESSAGES: a turn that would pass it is refused, nothing changes. */
static void test_message_limit(void **state)
{
    struct fx *f = fx_new();
    struct call c;
    char id[37];

    (void)state;
    f->cfg.max_dialog_messages = 4;
    fx_start(f);
    create_dialog(f, "limit", TEXT_TECH, id);
    message_ok(f, id, TEXT_SALES);
    submit_message(f, &c, id, TEXT_SUPER, NULL, NULL);
    expect_rc(&c, CCA_ERR_LIMIT);
    assert_int_equal(messages_of(f, id), 4);
    expect_counts(f, 1, 0, 0);
    /* Closing still works. */
    submit_close(f, &c, id);
    expect_rc(&c, CCA_OK);
    expect_counts(f, 0, 0, 1);
    fx_free(f);
}

/* ---- failed commits ------------------------------------------------------ */

/*
 * A change the store fails is reported with the store's rc and leaves the
 * committed document as it was; the next change succeeds on top of it.
 */
static void test_commit_failure(void **state)
{
    struct fx *f = fx_new();
    struct call c;
    char id[37];
    char other[37];
    json_t *before;
    json_t *after;

    (void)state;
    fx_start(f);
    create_dialog(f, "fail", TEXT_TECH, id);
    before = get_doc(f, id);
    assert_int_equal(cca_dialog_message_count(before), 2);

    store_memory_fail_next(f->mem, 1, CCA_ERR_IO);
    submit_message(f, &c, id, TEXT_SALES, NULL, NULL);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_ERR_IO);
    assert_int_equal(c.err.code, CCA_ERR_IO);
    assert_null(c.result);
    call_cleanup(&c);
    after = get_doc(f, id);
    assert_true(json_equal(before, after));
    json_decref(after);

    store_memory_fail_next(f->mem, 1, CCA_ERR_NO_SPACE);
    submit_close(f, &c, id);
    expect_rc(&c, CCA_ERR_NO_SPACE);
    after = get_doc(f, id);
    assert_true(json_equal(before, after));
    json_decref(after);
    expect_counts(f, 1, 0, 0);

    store_memory_fail_next(f->mem, 1, CCA_ERR_IO);
    submit_delete(f, &c, id, true);
    expect_rc(&c, CCA_ERR_IO);
    after = get_doc(f, id);
    assert_true(json_equal(before, after));
    json_decref(after);
    expect_counts(f, 1, 0, 0);

    /* A failed create leaves no dialog. */
    store_memory_fail_next(f->mem, 1, CCA_ERR_NO_SPACE);
    submit_create(f, &c, "fail", TEXT_TECH, NULL, NULL);
    expect_rc(&c, CCA_ERR_NO_SPACE);
    expect_counts(f, 1, 0, 0);

    /* The next change goes through, on top of the committed version. */
    submit_message(f, &c, id, TEXT_SALES, NULL, NULL);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    assert_int_equal(result_int(&c, "messages"), 4);
    assert_string_equal(result_str(&c, "agent"), "sales");
    assert_string_equal(result_str(&c, "previous"), "tech_support");
    call_cleanup(&c);
    assert_int_equal(messages_of(f, id), 4);
    assert_int_equal(store_memory_versions(f->mem, id), 2);
    create_dialog(f, "fail", NULL, other);
    expect_counts(f, 2, 0, 0);
    assert_int_equal(store_memory_bad_calls(f->mem), 0);
    json_decref(before);
    fx_free(f);
}

/* ---- the index: stats and lists ------------------------------------------ */

/* Every page of @q (limit set by the caller); the ids into @ids, their count returned. */
static size_t list_all(struct fx *f, struct cca_engine_query q, char ids[][37],
                       size_t max)
{
    char cursor[64] = "";
    size_t n = 0;

    for (unsigned pages = 0;; pages++) {
        struct cca_engine_page page = {0};
        struct cca_error err = {0};

        assert_true(pages < 100);
        q.cursor = cursor[0] != '\0' ? cursor : NULL;
        assert_int_equal(cca_engine_list(f->engine, &q, &page, &err), CCA_OK);
        assert_true(page.n <= q.limit);
        for (size_t i = 0; i < page.n; i++) {
            assert_true(n < max);
            (void)snprintf(ids[n++], 37, "%s",
                           cca_dialog_get_str(page.docs[i], "dialog_id"));
        }
        /* A full page that is not the last names the next one. */
        if (page.next_cursor[0] != '\0')
            assert_int_equal(page.n, q.limit);
        (void)snprintf(cursor, sizeof(cursor), "%s", page.next_cursor);
        cca_engine_page_cleanup(&page);
        if (cursor[0] == '\0')
            break;
    }
    return n;
}

static bool listed(char ids[][37], size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ids[i], id) == 0)
            return true;
    }
    return false;
}

/* Newest first: created_at, then dialog_id, both descending. */
static void assert_newest_first(struct fx *f, char ids[][37], size_t n)
{
    for (size_t i = 1; i < n; i++) {
        json_t *a = get_doc(f, ids[i - 1]);
        json_t *b = get_doc(f, ids[i]);
        int c = strcmp(cca_dialog_get_str(a, "created_at"),
                       cca_dialog_get_str(b, "created_at"));

        assert_true(c > 0 || (c == 0 && strcmp(ids[i - 1], ids[i]) > 0));
        json_decref(a);
        json_decref(b);
    }
}

static void test_index_and_list(void **state)
{
    struct fx *f = fx_new();
    struct cca_engine_query q = {.status = -1, .agent = -1, .limit = 2};
    struct cca_engine_page page = {0};
    struct cca_error err = {0};
    char d[5][37];
    char ids[16][37];
    struct call c;
    size_t n;

    (void)state;
    fx_start(f);
    expect_counts(f, 0, 0, 0);
    create_dialog(f, "c1", TEXT_TECH, d[0]);
    create_dialog(f, "c1", TEXT_SALES, d[1]);
    create_dialog(f, "c1", NULL, d[2]);
    create_dialog(f, "c2", TEXT_SUPER, d[3]);
    create_dialog(f, "c2", "My internet is not working, the router keeps rebooting",
                  d[4]);
    expect_counts(f, 4, 1, 0);

    submit_close(f, &c, d[0]);
    expect_rc(&c, CCA_OK);
    expect_counts(f, 3, 1, 1);
    /* A second close answers with the stored record and changes nothing. */
    submit_close(f, &c, d[0]);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    assert_true(json_is_true(json_object_get(c.result, "already_closed")));
    call_cleanup(&c);
    expect_counts(f, 3, 1, 1);
    submit_message(f, &c, d[0], TEXT_SALES, NULL, NULL);
    expect_rc(&c, CCA_ERR_CONFLICT);

    /* All dialogs, two per page. */
    n = list_all(f, q, ids, 16);
    assert_int_equal(n, 5);
    for (int i = 0; i < 5; i++)
        assert_true(listed(ids, n, d[i]));
    assert_newest_first(f, ids, n);
    /* Filters: status, customer, agent, and together. */
    q.status = CCA_DIALOG_CLOSED;
    n = list_all(f, q, ids, 16);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], d[0]);
    q.status = -1;
    q.customer_id = "c1";
    n = list_all(f, q, ids, 16);
    assert_int_equal(n, 3);
    assert_true(listed(ids, n, d[0]) && listed(ids, n, d[1]) && listed(ids, n, d[2]));
    assert_newest_first(f, ids, n);
    q.customer_id = "c2";
    q.status = CCA_DIALOG_ESCALATED;
    n = list_all(f, q, ids, 16);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], d[3]);
    q.customer_id = NULL;
    q.status = -1;
    q.agent = CCA_AGENT_SALES;
    n = list_all(f, q, ids, 16);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], d[1]);
    q.agent = -1;
    q.customer_id = "nobody";
    assert_int_equal(list_all(f, q, ids, 16), 0);
    q.customer_id = NULL;
    /* Malformed cursors. */
    q.cursor = "garbage";
    assert_int_equal(cca_engine_list(f->engine, &q, &page, &err), CCA_ERR_INVALID);
    cca_engine_page_cleanup(&page);
    q.cursor = "123_not-a-uuid";
    assert_int_equal(cca_engine_list(f->engine, &q, &page, &err), CCA_ERR_INVALID);
    cca_engine_page_cleanup(&page);
    q.cursor = NULL;

    /* Deletes: an open dialog needs force; a closed one does not. */
    submit_delete(f, &c, d[4], false);
    expect_rc(&c, CCA_ERR_CONFLICT);
    expect_counts(f, 3, 1, 1);
    submit_delete(f, &c, d[0], false);
    expect_rc(&c, CCA_OK);
    expect_counts(f, 3, 1, 0);
    assert_false(store_memory_has(f->mem, d[0]));
    {
        json_t *gone = NULL;

        assert_int_equal(cca_engine_get_dialog(f->engine, d[0], &gone, &err),
                         CCA_ERR_NOT_FOUND);
    }
    submit_message(f, &c, d[0], TEXT_SALES, NULL, NULL);
    expect_rc(&c, CCA_ERR_NOT_FOUND);
    submit_delete(f, &c, d[4], true);
    expect_rc(&c, CCA_OK);
    expect_counts(f, 2, 1, 0);
    q.customer_id = "c1";
    n = list_all(f, q, ids, 16);
    assert_int_equal(n, 2);
    assert_false(listed(ids, n, d[0]));
    q.customer_id = NULL;
    q.limit = 100;
    assert_int_equal(list_all(f, q, ids, 16), 3);
    fx_free(f);
}

/* ---- the document cache -------------------------------------------------- */

static void assert_cache_within(struct fx *f)
{
    struct cca_engine_stats st = stats_of(f);

    if (st.cache_bytes > (size_t)f->cfg.dialog_cache_mb << 20)
        fail_msg("cache %zu bytes over its %u MiB budget", st.cache_bytes,
                 f->cfg.dialog_cache_mb);
}

/*
 * DIALOG_CACHE_MB = 1 and dialogs enough to overflow it: the cache stays
 * within its budget, every dialog stays readable (misses are store reads,
 * counted as cache loads), and a dialog whose operation is still in the store
 * keeps its document while the rest of the cache turns over.
 */
static void test_cache_eviction(void **state)
{
    struct fx *f = fx_new();
    const struct cca_engine_metrics *met;
    size_t cap = 4096;
    char(*ids)[37] = cca_xcalloc(cap, sizeof(*ids));
    size_t n = 0;
    size_t reads0;
    uint64_t loads0;
    size_t busy_reads;
    struct cca_engine_stats st;
    struct call c;
    json_t *doc;

    (void)state;
    f->cfg.dialog_cache_mb = 1;
    fx_start(f);
    met = cca_engine_get_metrics(f->engine);
    /* Until at least 20 documents were evicted. */
    do {
        assert_true(n < cap);
        create_dialog(f, "cache", n % 2 ? TEXT_TECH : TEXT_SALES, ids[n]);
        n++;
        assert_cache_within(f);
        st = stats_of(f);
    } while (st.total - st.cached < 20);
    assert_int_equal(st.total, n);
    assert_true(st.cached > 0);

    reads0 = store_memory_reads(f->mem);
    loads0 = atomic_load(&met->cache_loads);
    for (size_t i = 0; i < n; i++) {
        char *bytes = NULL;
        size_t len = 0;

        assert_int_equal(messages_of(f, ids[i]), 2);
        assert_int_equal(cca_engine_get_document(f->engine, ids[i], &bytes, &len, NULL),
                         CCA_OK);
        assert_int_equal(strlen(bytes), len);
        assert_non_null(strstr(bytes, ids[i]));
        free(bytes);
        assert_cache_within(f);
    }
    /* The evicted ones (the oldest first) were read back from the store. */
    assert_true(store_memory_reads(f->mem) >= reads0 + 20);
    assert_int_equal(atomic_load(&met->cache_loads) - loads0,
                     store_memory_reads(f->mem) - reads0);
    assert_int_equal(stats_of(f).total, n);

    /* ids[0] is busy: its message's commit stays in the store. */
    store_memory_hold(f->mem, true);
    submit_message(f, &c, ids[0], TEXT_SUPER, NULL, NULL);
    poll_until(change_in_store, f, ids[0]);
    busy_reads = store_memory_reads_of(f->mem, ids[0]);
    reads0 = store_memory_reads(f->mem);
    /* Twice round the others: ids[0] becomes the least recently used. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 1; i < n; i++) {
            assert_int_equal(messages_of(f, ids[i]), 2);
            assert_cache_within(f);
        }
    }
    assert_true(store_memory_reads(f->mem) > reads0); /* the cache turned over */
    /* Still cached: its committed version, without a store read. */
    assert_int_equal(messages_of(f, ids[0]), 2);
    assert_int_equal(store_memory_reads_of(f->mem, ids[0]), busy_reads);
    assert_false(call_done(&c));
    store_memory_hold(f->mem, false);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    assert_int_equal(result_int(&c, "messages"), 4);
    call_cleanup(&c);
    doc = get_doc(f, ids[0]);
    assert_int_equal(cca_dialog_message_count(doc), 4);
    assert_int_equal(cca_dialog_get_status(doc), CCA_DIALOG_ESCALATED);
    json_decref(doc);
    /* The control: idle, the same two rounds evict it, and a read goes to the store. */
    barrier(f);
    busy_reads = store_memory_reads_of(f->mem, ids[0]);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 1; i < n; i++)
            assert_int_equal(messages_of(f, ids[i]), 2);
    }
    assert_int_equal(messages_of(f, ids[0]), 4);
    assert_int_equal(store_memory_reads_of(f->mem, ids[0]), busy_reads + 1);
    assert_cache_within(f);
    assert_int_equal(store_memory_bad_calls(f->mem), 0);
    free(ids);
    fx_free(f);
}

/* ---- an operation queued behind a failed delete -------------------------- */

/*
 * Create dialogs until DIALOG_CACHE_MB (1 here) overflowed: the dialogs made
 * before are evicted (the least recently used go first).
 */
static void overflow_cache(struct fx *f)
{
    struct cca_engine_stats st;
    char other[37];

    do {
        create_dialog(f, "filler", TEXT_SALES, other);
        st = stats_of(f);
    } while (st.total - st.cached < 5);
}

/*
 * A forced delete of an evicted dialog fails in the store (nothing changed,
 * engine.h); a message that waited behind it must then run on the committed
 * document: answered, with the earlier turn in the dialog.
 */
static void test_message_after_failed_delete(void **state)
{
    struct fx *f = fx_new();
    char id[37];
    struct call del;
    struct call msg;

    (void)state;
    f->cfg.dialog_cache_mb = 1;
    fx_start(f);
    create_dialog(f, "evicted", TEXT_TECH, id);
    overflow_cache(f);
    store_memory_hold(f->mem, true);
    store_memory_fail_next(f->mem, 1, CCA_ERR_IO);
    submit_delete(f, &del, id, true);
    poll_until(change_in_store, f, id);
    submit_message(f, &msg, id, TEXT_SALES, NULL, NULL);
    store_memory_hold(f->mem, false);
    expect_rc(&del, CCA_ERR_IO);
    wait_call(&msg);
    if (msg.rc != CCA_OK)
        fail_msg("the message queued behind the failed delete: %s (%s); the store got "
                 "%zu commits breaking its contract (a NULL document)",
                 cca_strerror(msg.rc), msg.err.msg, store_memory_bad_calls(f->mem));
    assert_int_equal(result_int(&msg, "messages"), 4);
    call_cleanup(&msg);
    assert_int_equal(messages_of(f, id), 4);
    assert_int_equal(store_memory_bad_calls(f->mem), 0);
    fx_free(f);
}

/* The same with a close of a closed dialog: answered from the stored record. */
static void test_close_after_failed_delete(void **state)
{
    struct fx *f = fx_new();
    char id[37];
    struct call del;
    struct call cl;
    struct call c;

    (void)state;
    f->cfg.dialog_cache_mb = 1;
    fx_start(f);
    create_dialog(f, "evicted", TEXT_TECH, id);
    submit_close(f, &c, id);
    expect_rc(&c, CCA_OK);
    overflow_cache(f);
    store_memory_hold(f->mem, true);
    store_memory_fail_next(f->mem, 1, CCA_ERR_IO);
    submit_delete(f, &del, id, false);
    poll_until(change_in_store, f, id);
    submit_close(f, &cl, id);
    store_memory_hold(f->mem, false);
    expect_rc(&del, CCA_ERR_IO);
    wait_call(&cl);
    assert_int_equal(cl.rc, CCA_OK);
    assert_true(json_is_true(json_object_get(cl.result, "already_closed")));
    /* The outcome has the dialog (the view answers with its close record). */
    if (json_object_get(cl.result, "status") == NULL)
        fail_msg("the close queued behind the failed delete was rendered without its "
                 "dialog (outcome.doc NULL)");
    assert_string_equal(result_str(&cl, "status"), "closed");
    call_cleanup(&cl);
    assert_int_equal(status_of(f, id), CCA_DIALOG_CLOSED);
    fx_free(f);
}

/* ---- idempotency --------------------------------------------------------- */

static const struct cca_engine_metrics *metrics_of(struct fx *f)
{
    return cca_engine_get_metrics(f->engine);
}

/* A create with @key/@hash; its result into *ret (a new reference). */
static cca_rc keyed_create(struct fx *f, const char *key, const char *hash, json_t **ret)
{
    struct call c;
    cca_rc rc;

    submit_create(f, &c, "idem", TEXT_SALES, key, hash);
    wait_call(&c);
    rc = c.rc;
    *ret = json_incref(c.result);
    call_cleanup(&c);
    return rc;
}

static void test_idempotency(void **state)
{
    struct fx *f = fx_new();
    json_t *r1;
    json_t *r;
    struct call same[3];
    struct call c;
    struct call m1;
    char id1[37];

    (void)state;
    f->cfg.idempotency_max_keys = 3;
    fx_start(f);

    /* A repeat gets the first result, without running again. */
    assert_int_equal(keyed_create(f, "k1", "hash-1", &r1), CCA_OK);
    (void)snprintf(id1, sizeof(id1), "%s",
                   json_string_value(json_object_get(r1, "dialog_id")));
    assert_int_equal(keyed_create(f, "k1", "hash-1", &r), CCA_OK);
    assert_true(json_equal(r, r1));
    json_decref(r);
    expect_counts(f, 1, 0, 0);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotent_replays), 1);
    /* The same key with another request. */
    assert_int_equal(keyed_create(f, "k1", "hash-other", &r), CCA_ERR_MISMATCH);
    assert_null(r);

    /* Repeats sent together while the first is in the store: one dialog. */
    store_memory_set_delay(f->mem, 30);
    for (int i = 0; i < 3; i++)
        submit_create(f, &same[i], "idem", TEXT_TECH, "k2", "hash-2");
    for (int i = 0; i < 3; i++) {
        wait_call(&same[i]);
        assert_int_equal(same[i].rc, CCA_OK);
        assert_true(json_equal(same[i].result, same[0].result));
    }
    assert_int_equal(store_memory_versions(f->mem, result_str(&same[0], "dialog_id")), 1);
    for (int i = 0; i < 3; i++)
        call_cleanup(&same[i]);
    store_memory_set_delay(f->mem, 0);
    expect_counts(f, 2, 0, 0);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotent_replays), 3);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys), 2);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys_evicted), 0);

    /* IDEMPOTENCY_MAX_KEYS = 3: a fourth key makes the oldest (k1) forgotten. */
    assert_int_equal(keyed_create(f, "k3", "hash-3", &r), CCA_OK);
    json_decref(r);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys), 3);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys_evicted), 0);
    assert_int_equal(keyed_create(f, "k4", "hash-4", &r), CCA_OK);
    json_decref(r);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys), 3);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys_evicted), 1);
    expect_counts(f, 4, 0, 0);
    /* k1 again: a new dialog now (and k2 goes); k3 is still remembered. */
    assert_int_equal(keyed_create(f, "k1", "hash-1", &r), CCA_OK);
    assert_string_not_equal(json_string_value(json_object_get(r, "dialog_id")), id1);
    json_decref(r);
    expect_counts(f, 5, 0, 0);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys), 3);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys_evicted), 2);
    assert_int_equal(keyed_create(f, "k3", "hash-3", &r), CCA_OK);
    json_decref(r);
    expect_counts(f, 5, 0, 0);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotent_replays), 4);

    /* A message with a key: the repeat is answered from the record. */
    submit_message(f, &m1, id1, TEXT_TECH, "m1", "hash-m1");
    wait_call(&m1);
    assert_int_equal(m1.rc, CCA_OK);
    submit_message(f, &c, id1, TEXT_TECH, "m1", "hash-m1");
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    assert_true(json_equal(c.result, m1.result));
    call_cleanup(&c);
    submit_message(f, &c, id1, TEXT_TECH, "m1", "hash-m2");
    expect_rc(&c, CCA_ERR_MISMATCH);
    assert_int_equal(messages_of(f, id1), 4);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotent_replays), 5);

    /* The first create of a key fails in the store: its repeats start over, one creates.
     */
    store_memory_set_delay(f->mem, 30);
    store_memory_fail_next(f->mem, 1, CCA_ERR_IO);
    for (int i = 0; i < 3; i++)
        submit_create(f, &same[i], "idem", TEXT_TECH, "k5", "hash-5");
    wait_call(&same[0]);
    assert_int_equal(same[0].rc, CCA_ERR_IO);
    for (int i = 1; i < 3; i++) {
        wait_call(&same[i]);
        assert_int_equal(same[i].rc, CCA_OK);
        assert_true(json_equal(same[i].result, same[1].result));
    }
    for (int i = 0; i < 3; i++)
        call_cleanup(&same[i]);
    expect_counts(f, 6, 0, 0);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotent_replays), 6);
    assert_int_equal(atomic_load(&metrics_of(f)->idempotency_keys), 3);
    call_cleanup(&m1);
    json_decref(r1);
    fx_free(f);
}

/* ---- cleanups ------------------------------------------------------------ */

/* A dialog document of an earlier run: created at @created_ms, closed at @closed_ms. */
static void preset(struct fx *f, char id[37], int64_t created_ms, int64_t closed_ms)
{
    struct cca_dialog_create c = {0};
    json_t *doc;

    cca_uuid_new(id);
    fill_create(&c, "cleanup", NULL);
    doc = cca_dialog_new_doc(id, &c, created_ms);
    if (closed_ms > 0) {
        json_t *closed = cca_dialog_closed(doc, "resolved", closed_ms);

        json_decref(doc);
        doc = closed;
    }
    store_memory_preset(f->mem, id, doc);
    json_decref(doc);
    cca_dialog_create_cleanup(&c);
}

static void test_cleanup(void **state)
{
    struct fx *f = fx_new();
    int64_t now = cca_time_wall_ms();
    int64_t hour = 3600 * 1000;
    char idle1[37];
    char idle2[37];
    char fresh[37];
    char old_closed[37];
    char new_closed[37];
    struct call msg;
    struct call c;
    json_t *doc;

    (void)state;
    f->cfg.dialog_inactivity_timeout_s = 60;
    preset(f, idle1, now - 2 * hour, 0);
    preset(f, idle2, now - 3 * hour, 0);
    preset(f, fresh, now, 0);
    preset(f, old_closed, now - 11 * 24 * hour, now - 10 * 24 * hour);
    preset(f, new_closed, now - 2 * 24 * hour, now - 24 * hour);
    fx_start(f);
    expect_counts(f, 3, 0, 2);

    /*
     * idle2 gets a message whose commit is held: the cleanup selects it (idle
     * when it looks), but its close waits behind the message and is skipped.
     */
    store_memory_hold(f->mem, true);
    submit_message(f, &msg, idle2, TEXT_TECH, NULL, NULL);
    poll_until(change_in_store, f, idle2);
    submit_cleanup(f, &c, CCA_OP_CLEANUP_INACTIVE, 0);
    store_memory_hold(f->mem, false);
    expect_rc(&msg, CCA_OK);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    assert_int_equal(result_int(&c, "count"), 1);
    call_cleanup(&c);
    expect_counts(f, 2, 0, 3);
    doc = get_doc(f, idle1);
    assert_int_equal(cca_dialog_get_status(doc), CCA_DIALOG_CLOSED);
    assert_string_equal(cca_dialog_get_str(doc, "close_reason"), "inactivity_timeout");
    json_decref(doc);
    assert_int_equal(status_of(f, idle2), CCA_DIALOG_ACTIVE);
    assert_int_equal(messages_of(f, idle2), 2);
    assert_int_equal(status_of(f, fresh), CCA_DIALOG_ACTIVE);
    /* Nothing idle is left. */
    submit_cleanup(f, &c, CCA_OP_CLEANUP_INACTIVE, 0);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    assert_int_equal(result_int(&c, "count"), 0);
    call_cleanup(&c);

    /* Closed more than 7 days ago: only old_closed. */
    submit_cleanup(f, &c, CCA_OP_CLEANUP_CLOSED, 7);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    assert_int_equal(result_int(&c, "count"), 1);
    call_cleanup(&c);
    expect_counts(f, 2, 0, 2);
    assert_false(store_memory_has(f->mem, old_closed));
    assert_true(store_memory_has(f->mem, new_closed));
    {
        json_t *gone = NULL;

        assert_int_equal(cca_engine_get_dialog(f->engine, old_closed, &gone, NULL),
                         CCA_ERR_NOT_FOUND);
    }
    assert_int_equal(status_of(f, new_closed), CCA_DIALOG_CLOSED);
    assert_int_equal(store_memory_bad_calls(f->mem), 0);
    fx_free(f);
}

/* ---- shutdown ------------------------------------------------------------ */

static void test_shutdown(void **state)
{
    struct fx *f = fx_new();
    const struct cca_engine_metrics *met;
    struct call c[6];
    char a[37];
    char b[37];

    (void)state;
    fx_start(f);
    met = cca_engine_get_metrics(f->engine);
    create_dialog(f, "shutdown", NULL, a);
    create_dialog(f, "shutdown", NULL, b);
    store_memory_set_delay(f->mem, 30);
    for (int i = 0; i < 5; i++)
        submit_message(f, &c[i], a, TEXT_TECH, NULL, NULL);
    submit_message(f, &c[5], b, TEXT_SALES, NULL, NULL);
    /* Five commits in a row on one dialog: not done at once. */
    assert_true(stats_of(f).in_flight > 0);
    assert_false(cca_engine_drain(f->engine, cca_time_mono_ms()));
    assert_true(cca_engine_drain(f->engine, cca_time_mono_ms() + WAIT_S * 1000));
    assert_int_equal(stats_of(f).in_flight, 0);
    for (int i = 0; i < 6; i++) {
        assert_true(call_done(&c[i]));
        expect_rc(&c[i], CCA_OK);
    }
    /* No LLM: detaching is a no-op, turns still answer offline. */
    cca_engine_detach_llm(f->engine);
    store_memory_set_delay(f->mem, 0);
    message_ok(f, b, TEXT_TECH);
    assert_int_equal(atomic_load(&met->turns[CCA_ENGINE_REPLY_OFFLINE]), 7);
    assert_int_equal(atomic_load(&met->turns[CCA_ENGINE_REPLY_LLM]), 0);
    assert_int_equal(atomic_load(&met->turns[CCA_ENGINE_REPLY_DEGRADED]), 0);
    assert_true(cca_engine_drain(f->engine, cca_time_mono_ms() + WAIT_S * 1000));
    cca_engine_free(f->engine);
    f->engine = NULL;
    cca_engine_free(NULL);
    /* Every version the engine committed is in the store. */
    assert_int_equal(store_memory_versions(f->mem, a), 6);
    assert_int_equal(store_memory_versions(f->mem, b), 3);
    fx_free(f);
}

/* ---- the human side ------------------------------------------------------------- */

/* Register an operator (offline, max_dialogs 3) through the engine; its id in @ret_id. */
static void human_operator(struct fx *f, char ret_id[37])
{
    char token[CCA_OPERATOR_TOKEN_LEN + 1];
    char hash[65];
    struct cca_operator_reg reg = {.name = (char *)"Anna", .max_dialogs = 3};
    struct cca_engine_request q = {.op = CCA_OP_OPERATOR_CREATE, .render = render};
    struct call c = {0};

    assert_int_equal(cca_operator_token_new(token, hash), CCA_OK);
    cca_uuid_new(ret_id);
    q.operator_doc = cca_operator_new_doc(ret_id, &reg, hash, cca_time_wall_ms());
    assert_int_equal(cca_engine_submit(f->engine, &q, on_done, &c), CCA_OK);
    wait_call(&c);
    assert_int_equal(c.rc, CCA_OK);
    call_cleanup(&c);
}

static void human_status(struct fx *f, const char *op_id, enum cca_operator_status st,
                         struct call *c)
{
    struct cca_engine_request q = {
        .op = CCA_OP_OPERATOR_UPDATE, .render = render, .has_status = true, .status = st};

    (void)snprintf(q.target, sizeof(q.target), "%s", op_id);
    assert_int_equal(cca_engine_submit(f->engine, &q, on_done, c), CCA_OK);
}

/* The document's owner kind equals the desk's, and (when not NULL) is @want. */
static void human_agree(struct fx *f, const char *id, const char *want)
{
    json_t *doc = NULL;
    struct cca_error err = {0};
    enum cca_owner desk;
    const char *kind;

    /* Recording may trail the decision by the operations queued before it. */
    for (int i = 0; i < 200; i++) {
        assert_int_equal(cca_engine_get_dialog(f->engine, id, &doc, &err), CCA_OK);
        desk = cca_desk_owner(f->desk, id, NULL);
        kind = json_string_value(json_object_get(json_object_get(doc, "owner"), "kind"));
        if (kind != NULL && strcmp(kind, cca_owner_name(desk)) == 0)
            break;
        json_decref(doc);
        doc = NULL;
        usleep(10000);
    }
    assert_non_null(doc);
    assert_string_equal(kind, cca_owner_name(desk));
    if (want != NULL)
        assert_string_equal(kind, want);
    json_decref(doc);
}

/*
 * A create that asks for a person is queued; while its write is still out,
 * an operator becomes available and the sweep assigns it: the assignment
 * waits for the create and is recorded (not dropped as "no such dialog").
 */
static void test_human_move_during_create(void **state)
{
    struct fx *f = fx_new();
    struct cca_engine_request cq = {.op = CCA_OP_CREATE, .render = render};
    struct call c1 = {0};
    struct call c2 = {0};
    char op_id[37];

    (void)state;
    fx_start_human(f);
    human_operator(f, op_id);
    store_memory_hold(f->mem, true);
    cq.create.initial_message = cca_xstrdup("Позовите оператора, пожалуйста");
    assert_int_equal(cca_engine_submit(f->engine, &cq, on_done, &c1), CCA_OK);
    usleep(100000);
    human_status(f, op_id, CCA_OPERATOR_AVAILABLE, &c2);
    usleep(100000);
    store_memory_hold(f->mem, false);
    wait_call(&c1);
    wait_call(&c2);
    assert_int_equal(c1.rc, CCA_OK);
    assert_int_equal(cca_desk_owner(f->desk, result_str(&c1, "dialog_id"), NULL),
                     CCA_OWNER_OPERATOR);
    human_agree(f, result_str(&c1, "dialog_id"), "operator");
    call_cleanup(&c1);
    call_cleanup(&c2);
    fx_free(f);
}

/*
 * Moves are recorded in the order the desk decided them: D is assigned; a
 * message holds D (write held), a hand-back waits behind it, and meanwhile the
 * operator goes offline (requeue decided first). The document ends with the
 * AI owning it, as the desk says, not back in the queue.
 */
static void test_human_moves_in_order(void **state)
{
    struct fx *f = fx_new();
    struct cca_engine_request cq = {.op = CCA_OP_CREATE, .render = render};
    struct cca_engine_request mq = {.op = CCA_OP_MESSAGE, .render = render};
    struct cca_engine_request m2 = {.op = CCA_OP_MESSAGE, .render = render};
    struct cca_engine_request hq = {.op = CCA_OP_HANDOFF,
                                    .render = render,
                                    .handoff_to = CCA_OWNER_AGENT,
                                    .agent = CCA_AGENT_NONE};
    struct call c[6] = {0};
    char op_id[37];
    char id[37];

    (void)state;
    fx_start_human(f);
    human_operator(f, op_id);
    human_status(f, op_id, CCA_OPERATOR_AVAILABLE, &c[0]);
    wait_call(&c[0]);
    assert_int_equal(cca_engine_submit(f->engine, &cq, on_done, &c[1]), CCA_OK);
    wait_call(&c[1]);
    (void)snprintf(id, sizeof(id), "%s", result_str(&c[1], "dialog_id"));
    memcpy(mq.id, id, 37);
    mq.text = cca_xstrdup("Позовите оператора");
    assert_int_equal(cca_engine_submit(f->engine, &mq, on_done, &c[2]), CCA_OK);
    wait_call(&c[2]);
    human_agree(f, id, "operator");
    store_memory_hold(f->mem, true);
    memcpy(m2.id, id, 37);
    m2.text = cca_xstrdup("hello?");
    assert_int_equal(cca_engine_submit(f->engine, &m2, on_done, &c[3]), CCA_OK);
    usleep(50000);
    memcpy(hq.id, id, 37);
    assert_int_equal(cca_engine_submit(f->engine, &hq, on_done, &c[4]), CCA_OK);
    usleep(50000);
    human_status(f, op_id, CCA_OPERATOR_OFFLINE, &c[5]);
    usleep(50000);
    store_memory_hold(f->mem, false);
    for (int i = 3; i < 6; i++) {
        wait_call(&c[i]);
        assert_int_equal(c[i].rc, CCA_OK);
    }
    assert_int_equal(cca_desk_owner(f->desk, id, NULL), CCA_OWNER_AGENT);
    human_agree(f, id, "agent");
    for (int i = 0; i < 6; i++)
        call_cleanup(&c[i]);
    fx_free(f);
}

/* Operator records are never evicted from the cache: listing them needs them. */
static void count_rec(void *ctx, const struct cca_record *r)
{
    (void)r;
    (*(size_t *)ctx)++;
}

/* A PUT of @customer_id's profile setting its city to @city. */
static void submit_customer_put(struct fx *f, struct call *c, const char *customer_id,
                                const char *city)
{
    struct cca_engine_request req = {.op = CCA_OP_CUSTOMER_PUT};

    req.text = cca_xstrdup(customer_id);
    cca_customer_key(customer_id, req.target);
    req.customer = cca_xcalloc(1, sizeof(*req.customer));
    req.customer->set = CCA_CUSTOMER_F_CITY;
    req.customer->city = cca_xstrdup(city);
    submit(f, &req, c);
}

/* The stored profile's @field of @customer_id, or NULL when there is none. */
static const char *profile_field(struct fx *f, const char *customer_id, const char *field,
                                 json_t **keep)
{
    char key[37];

    cca_customer_key(customer_id, key);
    json_decref(*keep);
    *keep = NULL;
    if (cca_engine_read(f->engine, CCA_STORE_CUSTOMERS, key, keep, NULL) != CCA_OK)
        return NULL;
    return json_string_value(json_object_get(*keep, field));
}

/*
 * Support records: the dialogs of a customer (select and fold visit only
 * theirs, oldest first), the profile a dialog makes and a PUT changes, and a
 * profile whose first write failed: the change queued behind it starts over.
 */
static void test_customer_records(void **state)
{
    struct fx *f = fx_new();
    struct cca_record_filter flt;
    struct cca_record rec = {0};
    char x1[37];
    char x2[37];
    char y1[37];
    char(*ids)[37];
    size_t n = 0;
    struct call a;
    struct call b;
    json_t *doc = NULL;

    (void)state;
    fx_start(f);
    create_dialog(f, "cust-x", TEXT_TECH, x1);
    create_dialog(f, "cust-y", TEXT_SALES, y1);
    create_dialog(f, "cust-x", TEXT_SALES, x2);
    cca_record_filter_init(&flt);
    flt.customer_id = "cust-x";
    ids = cca_engine_select(f->engine, CCA_STORE_DIALOGS, &flt, &n);
    assert_int_equal(n, 2);
    /* oldest first; two creates in the same millisecond are ordered by id */
    assert_true((strcmp(ids[0], x1) == 0 && strcmp(ids[1], x2) == 0) ||
                (strcmp(ids[0], x2) == 0 && strcmp(ids[1], x1) == 0));
    free(ids);
    n = 0;
    cca_engine_fold_records(f->engine, &flt, count_rec, &n);
    assert_int_equal(n, 2);
    flt.customer_id = "nobody";
    n = 0;
    cca_engine_fold_records(f->engine, &flt, count_rec, &n);
    assert_int_equal(n, 0);
    assert_int_equal(cca_engine_get_record(f->engine, y1, &rec), CCA_OK);
    assert_string_equal(rec.customer_id, "cust-y");
    assert_int_equal(rec.messages, 2);
    cca_record_cleanup(&rec);

    /* the first dialog made the profile (its language from the first turn) */
    assert_non_null(profile_field(f, "cust-x", "customer_id", &doc));
    assert_string_equal(profile_field(f, "cust-x", "language", &doc), "ru");
    /* PUT sets a field */
    submit_customer_put(f, &a, "cust-x", "Казань");
    expect_rc(&a, CCA_OK);
    assert_string_equal(profile_field(f, "cust-x", "city", &doc), "Казань");

    /* a deleted dialog leaves its customer's list */
    submit_delete(f, &a, x1, true);
    expect_rc(&a, CCA_OK);
    flt.customer_id = "cust-x";
    ids = cca_engine_select(f->engine, CCA_STORE_DIALOGS, &flt, &n);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], x2);
    free(ids);

    /* a new profile whose write fails: the PUT behind it starts over and makes it */
    store_memory_fail_next(f->mem, 1, CCA_ERR_IO);
    store_memory_hold(f->mem, true);
    submit_customer_put(f, &a, "cust-new", "Омск");
    submit_customer_put(f, &b, "cust-new", "Тверь");
    barrier(f); /* both started: b waits behind a's create */
    store_memory_hold(f->mem, false);
    expect_rc(&a, CCA_ERR_IO);
    expect_rc(&b, CCA_OK);
    assert_string_equal(profile_field(f, "cust-new", "city", &doc), "Тверь");
    json_decref(doc);
    fx_free(f);
}

static void test_human_operators_stay_cached(void **state)
{
    struct fx *f = fx_new();
    char op_id[37];
    json_t *list;

    (void)state;
    f->cfg.dialog_cache_mb = 0; /* every idle dialog is evicted at once */
    fx_start_human(f);
    human_operator(f, op_id);
    for (int i = 0; i < 5; i++) {
        struct cca_engine_request q = {.op = CCA_OP_CREATE, .render = render};
        struct call c = {0};

        assert_int_equal(cca_engine_submit(f->engine, &q, on_done, &c), CCA_OK);
        wait_call(&c);
        call_cleanup(&c);
    }
    list = cca_engine_list_operators(f->engine);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_backend),
        cmocka_unit_test(test_queue_order),
        cmocka_unit_test(test_pending_limit),
        cmocka_unit_test(test_message_limit),
        cmocka_unit_test(test_commit_failure),
        cmocka_unit_test(test_index_and_list),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_cleanup),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_message_after_failed_delete),
        cmocka_unit_test(test_close_after_failed_delete),
        cmocka_unit_test(test_human_move_during_create),
        cmocka_unit_test(test_human_moves_in_order),
        cmocka_unit_test(test_human_operators_stay_cached),
        cmocka_unit_test(test_customer_records),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
