/* SPDX-License-Identifier: MIT */
/*
 * Human operators (issue 11) against the real server binary, black box, over
 * REST and Server-Sent Events (the contract: docs/OPERATORS.md, openapi.yaml).
 * Offline mode (no LLM), loopback ports picked by the kernel, temp dirs.
 *
 * test_flow: two operators register (secret and PIN); A goes available with
 *   max_dialogs 1; three customers ask for a human (Russian, English,
 *   Russian): the first is assigned to A (A's "assigned" event), the other two
 *   are queued at positions 1 and 2 and told so; A replies (the customer sees
 *   it by polling ?after= and on the dialog's event stream); the AI stays
 *   silent on the customer's next message (202, response null; A's "message"
 *   event); operator B cannot read, reply to, hand back or close A's dialog
 *   (403) but reads a queued one; A closes (closing message, CSAT prompt,
 *   "closed" event) and the queue head is assigned to A at once, the last one
 *   moves up to position 1 (its "queue" event); the customer rates 5 (201,
 *   again 200, another score 409, an open dialog 409); hand-back to the AI
 *   (the AI answers again, the next in queue is assigned at once; a second
 *   hand-back 409); transfer A -> B; B going offline requeues to the head;
 *   revoking B (DELETE) fails B's token at once and requeues B's dialog, which
 *   A gets at once; Last-Event-ID resume and a stale id (resync); then
 *   SIGKILL and restart: operators (ids, status, limits, tokens), queue order
 *   (with a high-priority dialog ahead), ownership and messages intact, and the
 *   restarted desk still assigns the queue head when A frees a seat.
 * test_reply_timeout: OPERATOR_REPLY_TIMEOUT_S=5: an operator who does not
 *   reply loses the dialog to the head of the queue and is set busy (events
 *   "unassigned" reply_timeout and "status"); one who replied keeps theirs.
 * test_register_auth: wrong secret / wrong PIN / no credential: the same 401;
 *   past OPERATOR_REGISTER_PER_MIN: 429 (even with the right secret); no secret,
 *   PIN or token in the log; tokens: none, a made-up one, a client key on an
 *   operator route; without OPERATOR_SECRET/PINS registration is closed (403)
 *   while an admin creates operators; bad bodies 400/422; PATCH /operators/me
 *   may not raise max_dialogs (403).
 */
#include "cca_test.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"

#define CLIENT "ck-ops-client-3f9a61"
#define ADMIN  "ak-ops-admin-77c1d0"
#define SECRET "ops-secret-5b2e91c4"
#define PIN    "4321"
#define PIN2   "87654321"

/* ---- small helpers ------------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Every JSON answer a test kept: freed at the end of the test (pool_free). */
static json_t *g_pool;

static json_t *keep(json_t *j)
{
    if (g_pool == NULL)
        g_pool = json_array();
    if (j != NULL)
        (void)json_array_append_new(g_pool, j);
    return j;
}

static int g_soft_failures; /* checks that failed without stopping the test */

static int pool_free(void **state)
{
    json_decref(g_pool);
    g_pool = NULL;
    return h_kill_all(state);
}

/* "/api/v1/dialogue/<id><suffix>" in one of 8 rotating buffers. */
static const char *dpath(const char *id, const char *suffix)
{
    static char buf[8][256];
    static unsigned n;
    char *b = buf[n++ % 8];

    (void)snprintf(b, 256, "/api/v1/dialogue/%s%s", id, suffix);
    return b;
}

static const char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static const char *fmt(const char *f, ...)
{
    static char buf[8][4096];
    static unsigned n;
    char *b = buf[n++ % 8];
    va_list ap;

    va_start(ap, f);
    (void)vsnprintf(b, 4096, f, ap);
    va_end(ap);
    return b;
}

/* @o at a dotted path ("owner.kind", "items.0.dialog_id"); NULL when absent. */
static json_t *jget(json_t *o, const char *path)
{
    char key[128];

    while (o != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");

        (void)snprintf(key, sizeof(key), "%.*s", (int)n, path);
        if (json_is_array(o))
            o = json_array_get(o, (size_t)atoi(key));
        else
            o = json_object_get(o, key);
        path += n + (path[n] == '.');
    }
    return o;
}

static const char *js(json_t *o, const char *path)
{
    const char *s = json_string_value(jget(o, path));

    return s != NULL ? s : "(none)";
}

static long long ji(json_t *o, const char *path)
{
    json_t *v = jget(o, path);

    return json_is_integer(v) ? (long long)json_integer_value(v)
                              : (json_is_real(v) ? (long long)json_real_value(v) : -1);
}

static void dump(const char *what, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    printf("# %s: %.3000s\n", what, s != NULL ? s : "(no JSON)");
    free(s);
}

/*
 * One request; fails the test unless the status is @want (and, when
 * @want_code is not NULL, the error code is @want_code). Returns the body
 * (borrowed from the pool; may be NULL).
 */
static json_t *expect_(int line, unsigned port, const char *method, const char *path,
                       const char *auth, const char *body, long want,
                       const char *want_code)
{
    json_t *j = NULL;
    long st = h_call(port, method, path, auth, body, &j);

    keep(j);
    if (st != want || (want_code != NULL && strcmp(js(j, "code"), want_code) != 0)) {
        printf("# line %d: %s %s body=%.500s\n#   -> %ld (want %ld %s)\n", line, method,
               path, body ? body : "", st, want, want_code ? want_code : "");
        dump("response", j);
        fail_msg("line %d: %s %s: status %ld, want %ld %s", line, method, path, st, want,
                 want_code ? want_code : "");
    }
    return j;
}

#define EXPECT(port, m, path, auth, body, want)                                          \
    expect_(__LINE__, port, m, path, auth, body, want, NULL)
#define EXPECT_CODE(port, m, path, auth, body, want, code)                               \
    expect_(__LINE__, port, m, path, auth, body, want, code)

/* The status must be @a or @b. */
static void expect_either_(int line, unsigned port, const char *method, const char *path,
                           const char *auth, const char *body, long a, long b)
{
    json_t *j = NULL;
    long st = h_call(port, method, path, auth, body, &j);

    keep(j);
    if (st != a && st != b) {
        dump("response", j);
        fail_msg("line %d: %s %s %.200s: status %ld, want %ld or %ld", line, method, path,
                 body ? body : "", st, a, b);
    }
}

#define EXPECT_EITHER(port, m, path, auth, body, a, b)                                   \
    expect_either_(__LINE__, port, m, path, auth, body, a, b)

/* Assert a string field of a JSON answer. */
#define ASSERT_JS(j, path, want)                                                         \
    do {                                                                                 \
        if (strcmp(js(j, path), want) != 0) {                                            \
            dump("object", j);                                                           \
            fail_msg("line %d: %s is '%s', want '%s'", __LINE__, path, js(j, path),      \
                     want);                                                              \
        }                                                                                \
    } while (0)

#define ASSERT_JI(j, path, want)                                                         \
    do {                                                                                 \
        if (ji(j, path) != (long long)(want)) {                                          \
            dump("object", j);                                                           \
            fail_msg("line %d: %s is %lld, want %lld", __LINE__, path, ji(j, path),      \
                     (long long)(want));                                                 \
        }                                                                                \
    } while (0)

struct op {
    char id[37];
    char token[128];
    char name[64];
};

static void op_from(json_t *j, struct op *o)
{
    (void)snprintf(o->id, sizeof(o->id), "%s", js(j, "operator_id"));
    (void)snprintf(o->token, sizeof(o->token), "%s", js(j, "token"));
    /* the token format of the contract: cco_ and 43 base64url characters */
    assert_int_equal(strlen(o->token), 4 + 43);
    assert_memory_equal(o->token, "cco_", 4);
    assert_int_equal(strspn(o->token + 4,
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                            "vwxyz0123456789-_"),
                     43);
    assert_string_equal(js(j, "operator.operator_id"), o->id);
    assert_null(jget(j, "operator.token")); /* the public record has no token */
}

/* PUT /operators/me/status; returns the view. */
static json_t *set_status(unsigned port, const struct op *o, const char *status)
{
    json_t *v = EXPECT(port, "PUT", "/api/v1/operators/me/status", o->token,
                       fmt("{\"status\":\"%s\"}", status), 200);

    ASSERT_JS(v, "status", status);
    ASSERT_JS(v, "operator_id", o->id);
    return v;
}

/* A new dialog (client @key, may be NULL) without an initial message. */
static void create_dialog(unsigned port, const char *key, const char *name,
                          const char *priority, char id[37])
{
    json_t *j = EXPECT(port, "POST", "/api/v1/dialogue/create", key,
                       fmt("{\"customer_info\":{\"name\":\"%s\"}%s%s%s}", name,
                           priority ? ",\"priority\":\"" : "", priority ? priority : "",
                           priority ? "\"" : ""),
                       201);

    (void)snprintf(id, 37, "%s", js(j, "dialog_id"));
    assert_int_equal(strlen(id), 36);
}

/* The customer writes @text; the status must be 200 or 202. Returns the body. */
static json_t *say(unsigned port, const char *key, const char *id, const char *text)
{
    json_t *j = NULL;
    long st = h_call(port, "POST", dpath(id, "/message"), key,
                     fmt("{\"message\":\"%s\"}", text), &j);

    keep(j);
    if (st != 200 && st != 202) {
        dump("message response", j);
        fail_msg("POST message '%s' to %s: %ld", text, id, st);
    }
    return j;
}

/*
 * GET the dialog (as @auth) until owner.kind is @kind and, when @op_id is not
 * NULL, owner.operator_id is @op_id (the document may lag the desk by the
 * operations queued before it), at most 5 s. Returns the document.
 */
static json_t *wait_owner(unsigned port, const char *auth, const char *id,
                          const char *kind, const char *op_id)
{
    json_t *j = NULL;

    for (int i = 0; i < 250; i++) {
        json_decref(j);
        j = NULL;
        if (h_call(port, "GET", dpath(id, ""), auth, NULL, &j) == 200 &&
            strcmp(js(j, "owner.kind"), kind) == 0 &&
            (op_id == NULL || strcmp(js(j, "owner.operator_id"), op_id) == 0))
            return keep(j);
        sleep_ms(20);
    }
    dump("dialog", j);
    fail_msg("dialog %s: owner is %s/%s, want %s/%s", id, js(j, "owner.kind"),
             js(j, "owner.operator_id"), kind, op_id ? op_id : "-");
    return NULL;
}

/* Messages of @doc's "messages" (or a messages answer's "items") with @role
 * and, when not NULL, @content (exact) or system @kind. */
static int count_msgs(json_t *msgs, const char *role, const char *content,
                      const char *kind)
{
    json_t *m;
    size_t i;
    int n = 0;

    json_array_foreach (msgs, i, m) {
        if (strcmp(js(m, "role"), role) != 0)
            continue;
        if (content != NULL && strcmp(js(m, "content"), content) != 0)
            continue;
        if (kind != NULL && strcmp(js(m, "kind"), kind) != 0)
            continue;
        n++;
    }
    return n;
}

/* The last system message of @kind in @msgs (NULL if none). */
static json_t *last_system(json_t *msgs, const char *kind)
{
    json_t *found = NULL;
    json_t *m;
    size_t i;

    json_array_foreach (msgs, i, m) {
        if (strcmp(js(m, "role"), "system") == 0 && strcmp(js(m, "kind"), kind) == 0)
            found = m;
    }
    return found;
}

/*
 * The next event @type about @dialog_id (NULL: any) on @s whose data field
 * @key (NULL: any) is @val; earlier frames of that type and dialog are passed
 * over. Fails after @timeout_ms, listing what the stream received.
 */

static json_t *sse_expect_(int line, struct h_sse *s, const char *who, const char *type,
                           const char *dialog_id, const char *key, const char *val,
                           long timeout_ms, bool soft)
{
    struct timespec t0;
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long left;
        json_t *f;

        clock_gettime(CLOCK_MONOTONIC, &t1);
        left = timeout_ms -
               ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        f = left > 0 ? h_sse_wait(s, type, dialog_id, left) : NULL;
        if (f == NULL)
            break;
        keep(f);
        if (key == NULL || strcmp(js(f, fmt("data.data.%s", key)), val) == 0) {
            /* the envelope: id, type, topic, at, data; the frame id is its id */
            if (strcmp(js(f, "data.id"), js(f, "id")) != 0 ||
                strcmp(js(f, "data.type"), type) != 0 ||
                strchr(js(f, "id"), '-') == NULL || jget(f, "data.at") == NULL ||
                jget(f, "data.topic") == NULL) {
                dump("frame", f);
                fail_msg("line %d: %s: malformed %s event", line, who, type);
            }
            return f;
        }
    }
    printf("# line %d: %s: no '%s' event for %s with %s=%s within %ld ms; received:\n",
           line, who, type, dialog_id ? dialog_id : "-", key ? key : "-", val ? val : "-",
           timeout_ms);
    {
        json_t *all = h_sse_frames(s);
        json_t *f;
        size_t i;

        json_array_foreach (all, i, f) {
            char *t = json_dumps(f, JSON_COMPACT);

            printf("#   %.400s\n", t);
            free(t);
        }
        json_decref(all);
    }
    if (soft) {
        printf("# FAILED (going on): line %d: %s: event %s missing\n", line, who, type);
        g_soft_failures++;
        return NULL;
    }
    fail_msg("line %d: %s: event %s missing", line, who, type);
    return NULL;
}

/* A string field that later steps do not depend on: reported and counted. */
static void soft_js(int line, json_t *j, const char *path, const char *want)
{
    if (strcmp(js(j, path), want) != 0) {
        dump("object", j);
        printf("# FAILED (going on): line %d: %s is '%s', want '%s'\n", line, path,
               js(j, path), want);
        g_soft_failures++;
    }
}

#define SSE_EXPECT(s, who, type, did, key, val)                                          \
    sse_expect_(__LINE__, s, who, type, did, key, val, 5000, false)
/* A missing event that later steps do not depend on: reported, counted, the test
 * goes on and fails at its end. */
#define SSE_SOFT(s, who, type, did, key, val)                                            \
    sse_expect_(__LINE__, s, who, type, did, key, val, 5000, true)

static struct h_sse *sse_open_ok(unsigned port, const char *path, const char *auth)
{
    struct h_sse *s = h_sse_open(port, path, auth, NULL);
    char ctype[128];
    long st = h_sse_status(s, ctype);

    if (st != 200 || strncmp(ctype, "text/event-stream", 17) != 0)
        fail_msg("GET %s: status %ld, Content-Type '%s'", path, st, ctype);
    return s;
}

/* Queue items' dialog ids in order, comma-joined, into @out. */
static void queue_order(json_t *q, char *out, size_t size)
{
    json_t *it;
    size_t i;

    out[0] = '\0';
    json_array_foreach (json_object_get(q, "items"), i, it) {
        size_t n = strlen(out);

        (void)snprintf(out + n, size - n, "%s%s", n ? "," : "", js(it, "dialog_id"));
        if (ji(it, "position") != (long long)i + 1) {
            dump("queue", q);
            fail_msg("queue item %zu has position %lld", i, ji(it, "position"));
        }
    }
}

static char *read_log(const char *path)
{
    return h_read_text(path);
}

/* ---- the whole flow ------------------------------------------------------------ */

struct snapshot {
    json_t *operators; /* id -> {name,status,max_dialogs,open_dialogs,languages,skills} */
    char queue[1024];
    json_t
        *dialogs; /* id -> {status, owner_kind, owner_op, messages:[{id,role,content}]} */
};

static json_t *op_summary(json_t *v)
{
    return json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "name",
                     json_object_get(v, "name"), "status", json_object_get(v, "status"),
                     "max_dialogs", json_object_get(v, "max_dialogs"), "open_dialogs",
                     json_object_get(v, "open_dialogs"), "languages",
                     json_object_get(v, "languages"), "skills",
                     json_object_get(v, "skills"));
}

static json_t *dialog_summary(json_t *d)
{
    json_t *msgs = json_array();
    json_t *m;
    size_t i;

    json_array_foreach (json_object_get(d, "messages"), i, m)
        (void)json_array_append_new(
            msgs, json_pack("{s:O?, s:O?, s:O?, s:O?}", "id", json_object_get(m, "id"),
                            "role", json_object_get(m, "role"), "content",
                            json_object_get(m, "content"), "operator_id",
                            json_object_get(m, "operator_id")));
    return json_pack("{s:O?, s:O?, s:O?, s:O?, s:o}", "status",
                     json_object_get(d, "status"), "owner_kind", jget(d, "owner.kind"),
                     "owner_op", jget(d, "owner.operator_id"), "rating",
                     json_object_get(d, "rating"), "messages", msgs);
}

static void take_snapshot(unsigned port, char ids[][37], size_t n, struct snapshot *s)
{
    json_t *ops = EXPECT(port, "GET", "/api/v1/operators", ADMIN, NULL, 200);
    json_t *q = EXPECT(port, "GET", "/api/v1/queue", ADMIN, NULL, 200);
    json_t *v;
    size_t i;

    s->operators = json_object();
    json_array_foreach (json_object_get(ops, "items"), i, v)
        (void)json_object_set_new(s->operators, js(v, "operator_id"), op_summary(v));
    queue_order(q, s->queue, sizeof(s->queue));
    s->dialogs = json_object();
    for (i = 0; i < n; i++) {
        json_t *d = EXPECT(port, "GET", dpath(ids[i], ""), ADMIN, NULL, 200);

        (void)json_object_set_new(s->dialogs, ids[i], dialog_summary(d));
    }
}

static void snapshot_free(struct snapshot *s)
{
    json_decref(s->operators);
    json_decref(s->dialogs);
}

static void compare_json(const char *what, json_t *a, json_t *b)
{
    if (!json_equal(a, b)) {
        dump(fmt("%s before the kill", what), a);
        dump(fmt("%s after the restart", what), b);
        fail_msg("%s differ after SIGKILL and restart", what);
    }
}

static void test_flow(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"API_KEYS=" CLIENT, "ADMIN_API_KEYS=" ADMIN,
                         "OPERATOR_SECRET=" SECRET, "OPERATOR_PINS=" PIN "," PIN2, NULL};
    struct op a = {.name = "Анна Петрова"};
    struct op b = {.name = "Bob Stone"};
    struct op d = {.name = "Дмитрий"};
    char c[8][37]; /* c[1..7]: the customers' dialogs */
    struct h_sse *sa;
    struct h_sse *sb;
    struct h_sse *s1;
    struct h_sse *s2;
    struct h_sse *s3;
    json_t *j;
    json_t *v;
    char order[1024];
    char esc1_msg[64];
    char last_id[64];
    const char *reply1 = "Здравствуйте! Меня зовут Анна. Чем могу помочь?";
    const char *after1 = "Спасибо. У меня не работает интернет дома";
    const char *reply2 = "Hello, this is Anna. How can I help?";
    struct snapshot before;
    struct snapshot after;
    char *log;

    (void)state;
    memset(c, 0, sizeof(c));
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);

    /* ---- two operators register: A with the secret, B with a PIN ---- */
    j = EXPECT(srv.port, "POST", "/api/v1/operators/register", NULL,
               "{\"secret\":\"" SECRET "\",\"name\":\"Анна Петрова\","
               "\"languages\":[\"ru\",\"en\"],\"max_dialogs\":1,\"profile\":{"
               "\"full_name\":\"Анна Сергеевна Петрова\",\"city\":\"Казань\","
               "\"position\":\"старший оператор\",\"experience\":\"3 года\"}}",
               201);
    op_from(j, &a);
    ASSERT_JS(j, "operator.name", "Анна Петрова");
    ASSERT_JI(j, "operator.max_dialogs", 1);
    ASSERT_JS(j, "operator.profile.city", "Казань");
    j = EXPECT(srv.port, "POST", "/api/v1/operators/register", NULL,
               "{\"pin\":\"" PIN
               "\",\"name\":\"Bob Stone\",\"languages\":[\"en\",\"ru\"]}",
               201);
    op_from(j, &b);
    ASSERT_JI(j, "operator.max_dialogs", 3); /* OPERATOR_MAX_DIALOGS default */
    assert_string_not_equal(a.id, b.id);
    assert_string_not_equal(a.token, b.token);
    /* a wrong secret and a wrong PIN: 401 */
    EXPECT_CODE(srv.port, "POST", "/api/v1/operators/register", NULL,
                "{\"secret\":\"not-the-secret\",\"name\":\"Eve\"}", 401, "unauthorized");
    EXPECT_CODE(srv.port, "POST", "/api/v1/operators/register", NULL,
                "{\"pin\":\"0000\",\"name\":\"Eve\"}", 401, "unauthorized");

    /* who am I; B is kept from taking work until the transfer */
    v = EXPECT(srv.port, "GET", "/api/v1/operators/me", a.token, NULL, 200);
    ASSERT_JS(v, "operator_id", a.id);
    ASSERT_JI(v, "open_dialogs", 0);
    printf("# a new operator's status: %s\n", js(v, "status"));
    set_status(srv.port, &b, "offline");
    /* an operator may not raise their own limit */
    EXPECT_CODE(srv.port, "PATCH", "/api/v1/operators/me", a.token, "{\"max_dialogs\":5}",
                403, "forbidden");
    v = EXPECT(srv.port, "PATCH", "/api/v1/operators/me", a.token,
               "{\"profile\":{\"city\":\"Москва\"}}", 200);
    ASSERT_JS(v, "profile.city", "Москва");
    ASSERT_JI(v, "max_dialogs", 1);

    /* event streams: A's, B's */
    sa = sse_open_ok(srv.port, "/api/v1/operators/me/events", a.token);
    sb = sse_open_ok(srv.port, "/api/v1/operators/me/events", b.token);

    /* A goes available */
    set_status(srv.port, &a, "available");
    SSE_EXPECT(sa, "A", "status", NULL, "status", "available");

    /* ---- three customers ask for a human: ru, en, ru ---- */
    create_dialog(srv.port, CLIENT, "Иван", NULL, c[1]);
    create_dialog(srv.port, CLIENT, "John", NULL, c[2]);
    create_dialog(srv.port, CLIENT, "Мария", NULL, c[3]);
    s1 = sse_open_ok(srv.port, dpath(c[1], "/events"), CLIENT);
    s3 = sse_open_ok(srv.port, dpath(c[3], "/events"), CLIENT);

    j = say(srv.port, CLIENT, c[1], "Позовите оператора, пожалуйста");
    ASSERT_JS(j, "owner", "operator");
    (void)snprintf(esc1_msg, sizeof(esc1_msg), "%s", js(j, "message_id"));
    SSE_EXPECT(sa, "A", "assigned", c[1], NULL, NULL);
    SSE_EXPECT(s1, "customer 1", "owner", c[1], "owner", "operator");
    SSE_SOFT(s1, "customer 1", "message", c[1], "role", "customer"); /* their own */
    v = wait_owner(srv.port, CLIENT, c[1], "operator", a.id);
    ASSERT_JS(v, "status", "assigned");
    ASSERT_JS(v, "owner.operator_name", "Анна Петрова");
    ASSERT_JS(v, "language", "ru");
    /* the customer is told an operator joined */
    if (last_system(json_object_get(v, "messages"), "assigned") == NULL) {
        dump("dialog 1", v);
        fail_msg("no 'assigned' system message in dialog 1");
    }

    j = say(srv.port, CLIENT, c[2], "I want to talk to a human, please");
    ASSERT_JS(j, "owner", "queue");
    if (jget(j, "queue") != NULL && !json_is_null(jget(j, "queue")))
        ASSERT_JI(j, "queue.position", 1);
    j = say(srv.port, CLIENT, c[3], "Мне нужен живой человек");
    ASSERT_JS(j, "owner", "queue");
    if (jget(j, "queue") != NULL && !json_is_null(jget(j, "queue")))
        ASSERT_JI(j, "queue.position", 2);
    SSE_EXPECT(s3, "customer 3", "owner", c[3], "owner", "queue");

    /* queued at positions 1 and 2, and told so */
    for (int i = 2; i <= 3; i++) {
        j = EXPECT(srv.port, "GET", dpath(c[i], "/queue"), CLIENT, NULL, 200);
        ASSERT_JS(j, "dialog_id", c[i]);
        ASSERT_JI(j, "position", i - 1);
        assert_non_null(jget(j, "estimated_wait_s"));
        v = wait_owner(srv.port, CLIENT, c[i], "queue", NULL);
        ASSERT_JS(v, "status", "queued");
        ASSERT_JS(v, "language", i == 2 ? "en" : "ru");
        j = last_system(json_object_get(v, "messages"), "queue");
        if (j == NULL || strstr(js(j, "content"), i == 2 ? "1" : "2") == NULL) {
            dump("dialog", v);
            fail_msg("dialog %d: no queue notice with its position", i);
        }
    }
    /* every operator's stream gets the queue length (topic "operators") */
    j = SSE_SOFT(sa, "A", "queue", NULL, NULL, NULL);
    if (j != NULL) {
        soft_js(__LINE__, j, "data.topic", "operators");
        if (!json_is_integer(jget(j, "data.data.length"))) {
            dump("queue event", j);
            printf("# FAILED (going on): line %d: a queue event without length\n",
                   __LINE__);
            g_soft_failures++;
        }
    }
    j = EXPECT(srv.port, "GET", "/api/v1/queue", a.token, NULL, 200);
    ASSERT_JI(j, "length", 2);
    queue_order(j, order, sizeof(order));
    assert_string_equal(order, fmt("%s,%s", c[2], c[3]));
    ASSERT_JS(j, "items.0.language", "en");
    EXPECT_CODE(srv.port, "GET", dpath(c[1], "/queue"), CLIENT, NULL, 409, "not_queued");
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me/dialogs", a.token, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    ASSERT_JS(j, "items.0.dialog_id", c[1]);
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me", a.token, NULL, 200);
    ASSERT_JI(j, "open_dialogs", 1);
    /* at the limit: no pull */
    EXPECT_CODE(srv.port, "POST", "/api/v1/operators/me/next", a.token, NULL, 409,
                "limit_reached");
    EXPECT_CODE(srv.port, "POST", dpath(c[2], "/take"), a.token, NULL, 409,
                "limit_reached");

    /* ---- A replies: the customer sees it by polling and on the stream ---- */
    j = EXPECT(srv.port, "POST", dpath(c[1], "/reply"), a.token,
               fmt("{\"message\":\"%s\"}", reply1), 200);
    ASSERT_JS(j, "dialog_id", c[1]);
    (void)snprintf(last_id, sizeof(last_id), "%s", js(j, "message_id"));
    assert_true(strlen(last_id) > 0);
    j = EXPECT(srv.port, "GET", fmt("%s?after=%s", dpath(c[1], "/messages"), esc1_msg),
               CLIENT, NULL, 200);
    ASSERT_JS(j, "dialog_id", c[1]);
    assert_int_equal(count_msgs(json_object_get(j, "items"), "operator", reply1, NULL),
                     1);
    assert_int_equal(count_msgs(json_object_get(j, "items"), "customer", NULL, NULL), 0);
    ASSERT_JS(j, "last_message_id", last_id);
    {
        json_t *m = json_array_get(json_object_get(j, "items"),
                                   json_array_size(json_object_get(j, "items")) - 1);

        ASSERT_JS(m, "operator_id", a.id);
        ASSERT_JS(m, "operator_name", "Анна Петрова");
    }
    j = EXPECT(srv.port, "GET", fmt("%s?after=%s", dpath(c[1], "/messages"), last_id),
               CLIENT, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
    EXPECT_CODE(srv.port, "GET",
                fmt("%s?after=%s", dpath(c[1], "/messages"),
                    "00000000-0000-4000-8000-000000000000"),
                CLIENT, NULL, 404, "message_not_found");
    j = SSE_EXPECT(s1, "customer 1", "message", c[1], "role", "operator");
    ASSERT_JS(j, "data.data.content", reply1);
    ASSERT_JS(j, "data.topic", fmt("dialog:%s", c[1]));

    /* ---- the AI stays silent while the operator owns the dialog ---- */
    {
        json_t *r = NULL;
        long st = h_call(srv.port, "POST", dpath(c[1], "/message"), CLIENT,
                         fmt("{\"message\":\"%s\"}", after1), &r);

        keep(r);
        if (st != 202 || !json_is_null(json_object_get(r, "response"))) {
            dump("message response", r);
            fail_msg("a message to an operator's dialog: %ld, want 202 response null",
                     st);
        }
        ASSERT_JS(r, "owner", "operator");
        (void)snprintf(last_id, sizeof(last_id), "%s", js(r, "message_id"));
    }
    j = SSE_EXPECT(sa, "A", "message", c[1], "content", after1);
    ASSERT_JS(j, "data.topic", fmt("operator:%s", a.id));
    SSE_SOFT(s1, "customer 1", "message", c[1], "content", after1); /* their own */
    sleep_ms(300);
    v = EXPECT(srv.port, "GET", dpath(c[1], ""), CLIENT, NULL, 200);
    {
        json_t *msgs = json_object_get(v, "messages");
        json_t *lastm = json_array_get(msgs, json_array_size(msgs) - 1);

        ASSERT_JS(lastm, "content", after1);
        ASSERT_JS(lastm, "role", "customer");
        /* the AI answered the first message (escalating turn) at most */
        assert_true(count_msgs(msgs, "agent", NULL, NULL) <= 1);
    }
    j = EXPECT(srv.port, "GET", fmt("%s?after=%s", dpath(c[1], "/messages"), last_id),
               CLIENT, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);

    /* ---- B may not read, reply to, hand back or close A's dialog ---- */
    EXPECT_CODE(srv.port, "GET", dpath(c[1], ""), b.token, NULL, 403, "forbidden");
    EXPECT_CODE(srv.port, "GET", dpath(c[1], "/history"), b.token, NULL, 403,
                "forbidden");
    EXPECT_CODE(srv.port, "GET", dpath(c[1], "/messages"), b.token, NULL, 403,
                "forbidden");
    EXPECT_CODE(srv.port, "POST", dpath(c[1], "/reply"), b.token,
                "{\"message\":\"I am not the owner\"}", 403, "forbidden");
    EXPECT_CODE(srv.port, "POST", dpath(c[1], "/close"), b.token, "{}", 403, "forbidden");
    EXPECT_CODE(srv.port, "POST", dpath(c[1], "/handoff"), b.token, "{\"to\":\"ai\"}",
                403, "forbidden");
    EXPECT_CODE(srv.port, "POST", dpath(c[1], "/handoff"), b.token,
                fmt("{\"to\":\"operator\",\"operator_id\":\"%s\"}", b.id), 403,
                "forbidden");
    /* ... nor reply to a queued one; but B reads queued dialogs */
    EXPECT_CODE(srv.port, "POST", dpath(c[2], "/reply"), b.token,
                "{\"message\":\"not mine\"}", 403, "forbidden");
    j = EXPECT(srv.port, "GET", dpath(c[2], ""), b.token, NULL, 200);
    ASSERT_JS(j, "dialog_id", c[2]);
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me/dialogs", b.token, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 0);
    /* the operator's own view of the document */
    j = EXPECT(srv.port, "GET", dpath(c[1], ""), a.token, NULL, 200);
    ASSERT_JS(j, "owner.operator_id", a.id);
    /* an operator token is not a client key (customer routes) */
    assert_true(h_call(srv.port, "POST", dpath(c[1], "/message"), a.token,
                       "{\"message\":\"x\"}", NULL) /
                    100 ==
                4);
    /* metadata.transitions: enqueue/assign recorded with time, actor, reason */
    {
        json_t *tr = jget(j, "metadata.transitions");

        if (!json_is_array(tr) || json_array_size(tr) < 1) {
            dump("dialog 1", j);
            fail_msg("dialog 1: no metadata.transitions");
        }
        assert_non_null(jget(json_array_get(tr, json_array_size(tr) - 1), "at"));
        assert_non_null(jget(json_array_get(tr, json_array_size(tr) - 1), "actor"));
        ASSERT_JS(json_array_get(tr, json_array_size(tr) - 1), "to", "operator");
    }

    /* ---- A closes: closing message and CSAT prompt; the queue head comes at once ----
     */
    EXPECT(srv.port, "POST", dpath(c[1], "/close"), a.token, "{}", 200);
    SSE_EXPECT(s1, "customer 1", "closed", c[1], NULL, NULL);
    SSE_EXPECT(sa, "A", "unassigned", c[1], "reason", "closed");
    SSE_EXPECT(sa, "A", "assigned", c[2], NULL, NULL);
    v = EXPECT(srv.port, "GET", dpath(c[1], ""), CLIENT, NULL, 200);
    ASSERT_JS(v, "status", "closed");
    if (last_system(json_object_get(v, "messages"), "closing") == NULL ||
        last_system(json_object_get(v, "messages"), "csat") == NULL) {
        dump("dialog 1", v);
        fail_msg("dialog 1: no closing message or CSAT prompt");
    }
    v = wait_owner(srv.port, CLIENT, c[2], "operator", a.id);
    ASSERT_JS(v, "status", "assigned");
    j = EXPECT(srv.port, "GET", "/api/v1/queue", ADMIN, NULL, 200);
    ASSERT_JI(j, "length", 1);
    ASSERT_JS(j, "items.0.dialog_id", c[3]);
    j = EXPECT(srv.port, "GET", dpath(c[3], "/queue"), CLIENT, NULL, 200);
    ASSERT_JI(j, "position", 1);
    /* moved up: a "queue" event with the new position */
    do
        j = SSE_SOFT(s3, "customer 3", "queue", c[3], NULL, NULL);
    while (j != NULL && ji(j, "data.data.position") != 1);
    /* A (closed dialog, no longer theirs) is refused */
    EXPECT_CODE(srv.port, "POST", dpath(c[1], "/reply"), a.token,
                "{\"message\":\"too late\"}", 409, "dialog_closed");

    /* ---- CSAT ---- */
    EXPECT_CODE(srv.port, "POST", dpath(c[3], "/rating"), CLIENT, "{\"score\":5}", 409,
                "dialog_open");
    j = EXPECT(srv.port, "POST", dpath(c[1], "/rating"), CLIENT,
               "{\"score\":5,\"comment\":\"Спасибо, всё решили\"}", 201);
    ASSERT_JS(j, "dialog_id", c[1]);
    ASSERT_JI(j, "rating.score", 5);
    ASSERT_JS(j, "rating.operator_id", a.id);
    ASSERT_JS(j, "rating.comment", "Спасибо, всё решили");
    /* the last operator hears of it on their stream */
    j = SSE_EXPECT(sa, "A", "rated", c[1], NULL, NULL);
    ASSERT_JI(j, "data.data.rating.score", 5);
    ASSERT_JS(j, "data.data.rating.operator_id", a.id);
    j = EXPECT(srv.port, "POST", dpath(c[1], "/rating"), CLIENT,
               "{\"score\":5,\"comment\":\"Спасибо, всё решили\"}", 200);
    ASSERT_JI(j, "rating.score", 5);
    EXPECT_CODE(srv.port, "POST", dpath(c[1], "/rating"), CLIENT, "{\"score\":3}", 409,
                "rating_exists");
    EXPECT_EITHER(srv.port, "POST", dpath(c[1], "/rating"), CLIENT, "{\"score\":6}", 400,
                  422);
    v = EXPECT(srv.port, "GET", dpath(c[1], ""), CLIENT, NULL, 200);
    ASSERT_JI(v, "rating.score", 5);

    /* ---- hand-back to the AI ---- */
    j = EXPECT(srv.port, "POST", dpath(c[2], "/reply"), a.token,
               fmt("{\"message\":\"%s\"}", reply2), 200);
    j = EXPECT(srv.port, "POST", dpath(c[2], "/handoff"), a.token,
               "{\"to\":\"ai\",\"reason\":\"answered, the assistant can go on\"}", 200);
    ASSERT_JS(j, "dialog_id", c[2]);
    ASSERT_JS(j, "owner", "agent");
    assert_true(json_is_null(json_object_get(j, "operator_id")));
    j = SSE_EXPECT(sa, "A", "unassigned", c[2], NULL, NULL);
    soft_js(__LINE__, j, "data.data.reason", "handback");
    SSE_EXPECT(sa, "A", "assigned", c[3], NULL, NULL); /* the seat is used at once */
    wait_owner(srv.port, CLIENT, c[3], "operator", a.id);
    v = wait_owner(srv.port, CLIENT, c[2], "agent", NULL);
    if (last_system(json_object_get(v, "messages"), "handed_back") == NULL) {
        dump("dialog 2", v);
        fail_msg("dialog 2: no handed_back system message");
    }
    {
        json_t *tr = jget(v, "metadata.transitions");
        json_t *t = json_array_get(tr, json_array_size(tr) - 1);

        ASSERT_JS(t, "event", "handback");
        ASSERT_JS(t, "from", "operator");
        ASSERT_JS(t, "to", "agent");
        ASSERT_JS(t, "prev_operator_id", a.id); /* operator_id: the owner after */
        ASSERT_JS(t, "actor", fmt("operator:%s", a.id));
    }
    s2 = sse_open_ok(srv.port, dpath(c[2], "/events"), CLIENT);
    j = say(srv.port, CLIENT, c[2], "How do I reset my router password?");
    if (!json_is_string(json_object_get(j, "response")) ||
        strlen(js(j, "response")) == 0) {
        dump("message response", j);
        fail_msg("the AI does not answer after the hand-back");
    }
    ASSERT_JS(j, "owner", "agent");
    /* the AI's answer and the customer's own message reach the customer's stream */
    SSE_SOFT(s2, "customer 2", "message", c[2], "content",
             "How do I reset my router password?");
    SSE_SOFT(s2, "customer 2", "message", c[2], "role", "agent"); /* after it */
    h_sse_close(s2);
    EXPECT_CODE(srv.port, "POST", dpath(c[2], "/handoff"), CLIENT, "{\"to\":\"ai\"}", 409,
                "handoff_refused");
    EXPECT_CODE(srv.port, "GET", dpath(c[2], ""), a.token, NULL, 403, "forbidden");

    /* ---- transfer A -> B ---- */
    set_status(srv.port, &b, "available");
    j = EXPECT(srv.port, "POST", dpath(c[3], "/reply"), a.token,
               "{\"message\":\"Здравствуйте, передаю коллеге\"}", 200);
    j = EXPECT(srv.port, "POST", dpath(c[3], "/handoff"), a.token,
               fmt("{\"to\":\"operator\",\"operator_id\":\"%s\"}", b.id), 200);
    ASSERT_JS(j, "owner", "operator");
    ASSERT_JS(j, "operator_id", b.id);
    SSE_EXPECT(sb, "B", "assigned", c[3], NULL, NULL);
    SSE_EXPECT(sa, "A", "unassigned", c[3], "reason", "transfer");
    SSE_EXPECT(s3, "customer 3", "owner", c[3], "operator_id", b.id);
    v = wait_owner(srv.port, CLIENT, c[3], "operator", b.id);
    if (last_system(json_object_get(v, "messages"), "transferred") == NULL) {
        dump("dialog 3", v);
        fail_msg("dialog 3: no transferred system message");
    }
    EXPECT(srv.port, "GET", dpath(c[3], ""), b.token, NULL, 200);
    EXPECT_CODE(srv.port, "GET", dpath(c[3], ""), a.token, NULL, 403, "forbidden");
    EXPECT_CODE(srv.port, "POST", dpath(c[3], "/reply"), a.token, "{\"message\":\"x\"}",
                403, "forbidden");
    EXPECT(srv.port, "POST", dpath(c[3], "/reply"), b.token,
           "{\"message\":\"Hi, Bob here\"}", 200);

    /* ---- B goes offline: B's dialog goes back to the head of the queue ---- */
    set_status(srv.port, &a, "busy");
    set_status(srv.port, &b, "offline");
    SSE_EXPECT(sb, "B", "unassigned", c[3], "reason", "operator_offline");
    v = wait_owner(srv.port, CLIENT, c[3], "queue", NULL);
    assert_true(json_is_true(jget(v, "owner.requeued")));
    if (last_system(json_object_get(v, "messages"), "requeued") == NULL) {
        dump("dialog 3", v);
        fail_msg("dialog 3: no requeued system message");
    }
    SSE_EXPECT(s3, "customer 3", "owner", c[3], "owner", "queue");
    j = EXPECT(srv.port, "GET", "/api/v1/queue", a.token, NULL, 200);
    ASSERT_JI(j, "length", 1);
    ASSERT_JS(j, "items.0.dialog_id", c[3]);
    assert_true(json_is_true(jget(j, "items.0.requeued")));
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me", b.token, NULL, 200);
    ASSERT_JI(j, "open_dialogs", 0);
    /* A becomes available: the backlog is assigned at once */
    set_status(srv.port, &a, "available");
    SSE_EXPECT(sa, "A", "assigned", c[3], NULL, NULL);
    wait_owner(srv.port, CLIENT, c[3], "operator", a.id);

    /* ---- revoke B while B holds a dialog: the token fails at once ---- */
    set_status(srv.port, &b, "available");
    EXPECT(srv.port, "POST", dpath(c[3], "/handoff"), a.token,
           fmt("{\"to\":\"operator\",\"operator_id\":\"%s\"}", b.id), 200);
    wait_owner(srv.port, CLIENT, c[3], "operator", b.id);
    /* ---- colleagues: what an operator sees of the others, for transfers ---- */
    j = EXPECT(srv.port, "GET", "/api/v1/operators/team", a.token, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(json_object_get(j, "items"), i);

        assert_int_equal(json_object_size(m), 7); /* no profile, times or ratings */
        assert_null(json_object_get(m, "profile"));
        if (strcmp(js(m, "operator_id"), b.id) == 0) {
            ASSERT_JS(m, "status", "available");
            assert_int_equal(json_integer_value(json_object_get(m, "open_dialogs")), 1);
        }
    }
    EXPECT(srv.port, "GET", "/api/v1/operators/team", CLIENT, NULL, 401);
    h_sse_close(sb);
    j = EXPECT(srv.port, "DELETE", fmt("/api/v1/operators/%s", b.id), ADMIN, NULL, 200);
    assert_true(json_is_true(json_object_get(j, "success")));
    ASSERT_JS(j, "operator_id", b.id);
    EXPECT(srv.port, "GET", "/api/v1/operators/me", b.token, NULL, 401);
    EXPECT(srv.port, "POST", dpath(c[3], "/reply"), b.token, "{\"message\":\"x\"}", 401);
    EXPECT(srv.port, "GET", fmt("/api/v1/operators/%s", b.id), ADMIN, NULL, 404);
    SSE_EXPECT(sa, "A", "assigned", c[3], NULL, NULL); /* requeued, A has a free seat */
    wait_owner(srv.port, CLIENT, c[3], "operator", a.id);
    j = EXPECT(srv.port, "GET", "/api/v1/operators", ADMIN, NULL, 200);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 1);
    /* a client key is not an admin key */
    EXPECT(srv.port, "GET", "/api/v1/operators", CLIENT, NULL, 403);

    /* ---- Last-Event-ID: resume without a gap; a stale id asks to resync ---- */
    {
        json_t *frames = h_sse_frames(s3);
        json_t *lastf = json_array_get(frames, json_array_size(frames) - 1);
        char resume[64];
        struct h_sse *r;
        json_t *f;

        (void)snprintf(resume, sizeof(resume), "%s", js(lastf, "id"));
        json_decref(frames);
        h_sse_close(s3);
        EXPECT(srv.port, "POST", dpath(c[3], "/reply"), a.token,
               "{\"message\":\"Пока вы были не на связи\"}", 200);
        r = h_sse_open(srv.port, dpath(c[3], "/events"), CLIENT, resume);
        assert_int_equal(h_sse_status(r, NULL), 200);
        f = SSE_EXPECT(r, "customer 3 resumed", "message", c[3], "content",
                       "Пока вы были не на связи");
        assert_int_equal(h_sse_count(r, "resync", NULL), 0);
        (void)f;
        h_sse_close(r);
        r = h_sse_open(srv.port, dpath(c[3], "/events"), CLIENT, "1-1");
        assert_int_equal(h_sse_status(r, NULL), 200);
        f = h_sse_wait(r, "resync", NULL, 5000);
        if (f == NULL)
            fail_msg("a stale Last-Event-ID got no resync frame");
        json_decref(f);
        h_sse_close(r);
    }

    /* ---- state for the kill: a queue with a high-priority dialog, D busy ---- */
    j = EXPECT(srv.port, "POST", "/api/v1/operators", ADMIN,
               "{\"name\":\"Дмитрий\",\"languages\":[\"ru\"],\"max_dialogs\":2}", 201);
    op_from(j, &d);
    set_status(srv.port, &d, "busy");
    create_dialog(srv.port, CLIENT, "Пётр", NULL, c[4]);
    create_dialog(srv.port, CLIENT, "Jane", NULL, c[5]);
    create_dialog(srv.port, CLIENT, "Ольга", NULL, c[6]);
    create_dialog(srv.port, CLIENT, "VIP", "high", c[7]);
    say(srv.port, CLIENT, c[4], "Соедините с оператором");
    say(srv.port, CLIENT, c[5], "real person please");
    say(srv.port, CLIENT, c[6], "позовите оператора");
    say(srv.port, CLIENT, c[7], "Позовите оператора срочно");
    j = say(srv.port, CLIENT, c[4], "Я всё ещё жду");
    ASSERT_JS(j, "owner", "queue");
    assert_true(json_is_null(json_object_get(j, "response")));
    j = EXPECT(srv.port, "GET", "/api/v1/queue", ADMIN, NULL, 200);
    queue_order(j, order, sizeof(order));
    assert_string_equal(order, fmt("%s,%s,%s,%s", c[7], c[4], c[5], c[6]));
    ASSERT_JS(j, "items.0.priority", "high");
    EXPECT(srv.port, "POST", dpath(c[3], "/reply"), a.token,
           "{\"message\":\"Сейчас проверю\"}", 200);
    h_sse_close(sa);
    h_sse_close(s1);
    take_snapshot(srv.port, c + 1, 7, &before);

    /* ---- SIGKILL and restart ---- */
    h_kill(&srv);
    h_server_start(&srv, dir, env);
    take_snapshot(srv.port, c + 1, 7, &after);
    compare_json("operators", before.operators, after.operators);
    assert_string_equal(before.queue, after.queue);
    compare_json("dialogs", before.dialogs, after.dialogs);
    snapshot_free(&before);
    snapshot_free(&after);
    /* tokens survive; a revoked one stays revoked */
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me", a.token, NULL, 200);
    ASSERT_JS(j, "status", "available");
    ASSERT_JI(j, "open_dialogs", 1);
    EXPECT(srv.port, "GET", "/api/v1/operators/me", d.token, NULL, 200);
    EXPECT(srv.port, "GET", "/api/v1/operators/me", b.token, NULL, 401);
    /* the restarted desk: A closes, the head (the high-priority one) comes at once */
    sa = sse_open_ok(srv.port, "/api/v1/operators/me/events", a.token);
    EXPECT(srv.port, "POST", dpath(c[3], "/close"), a.token, "{}", 200);
    SSE_EXPECT(sa, "A", "assigned", c[7], NULL, NULL);
    wait_owner(srv.port, CLIENT, c[7], "operator", a.id);
    j = EXPECT(srv.port, "GET", dpath(c[4], "/queue"), CLIENT, NULL, 200);
    ASSERT_JI(j, "position", 1);
    /* D (ru only) pulls the first Russian one */
    j = EXPECT(srv.port, "POST", "/api/v1/operators/me/next", d.token, NULL, 200);
    ASSERT_JS(j, "dialog_id", c[4]);
    ASSERT_JS(j, "owner.operator_id", d.id);
    h_sse_close(sa);

    assert_int_equal(h_stop(&srv), 0);
    /* no secret, PIN or token in the log */
    log = read_log(srv.log);
    assert_null(strstr(log, SECRET));
    assert_null(strstr(log, a.token + 4));
    assert_null(strstr(log, d.token + 4));
    assert_null(strstr(log, "\"" PIN "\""));
    free(log);
    h_remove_tmpdirs();
    if (g_soft_failures > 0)
        fail_msg("%d check(s) failed on the way (FAILED lines above)", g_soft_failures);
}

/* ---- reply timeout ---------------------------------------------------------------- */

static void test_reply_timeout(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"OPERATOR_REPLY_TIMEOUT_S=5", NULL};
    struct op x = {.name = "X"};
    struct op y = {.name = "Y"};
    char c1[37];
    char c2[37];
    char c3[37];
    struct h_sse *sx;
    json_t *j;
    char order[256];

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env); /* no keys: the admin routes are open */
    j = EXPECT(srv.port, "POST", "/api/v1/operators", NULL,
               "{\"name\":\"X\",\"languages\":[\"ru\",\"en\"],\"max_dialogs\":1}", 201);
    op_from(j, &x);
    j = EXPECT(srv.port, "POST", "/api/v1/operators", NULL,
               "{\"name\":\"Y\",\"languages\":[\"ru\",\"en\"],\"max_dialogs\":1}", 201);
    op_from(j, &y);
    set_status(srv.port, &x, "offline");
    set_status(srv.port, &y, "available");
    sx = sse_open_ok(srv.port, "/api/v1/operators/me/events", x.token);

    create_dialog(srv.port, NULL, "Один", NULL, c1);
    create_dialog(srv.port, NULL, "Two", NULL, c2);
    create_dialog(srv.port, NULL, "Три", NULL, c3);
    say(srv.port, NULL, c1, "Позовите оператора");
    wait_owner(srv.port, NULL, c1, "operator", y.id);
    EXPECT(srv.port, "POST", dpath(c1, "/reply"), y.token, "{\"message\":\"Слушаю\"}",
           200);
    set_status(srv.port, &x, "available");
    say(srv.port, NULL, c2, "talk to a human");
    SSE_EXPECT(sx, "X", "assigned", c2, NULL, NULL);
    wait_owner(srv.port, NULL, c2, "operator", x.id);
    say(srv.port, NULL, c3, "живой человек");
    wait_owner(srv.port, NULL, c3, "queue", NULL);

    /* X never replies: within the timeout (5 s) plus slack, c2 goes back first */
    j = sse_expect_(__LINE__, sx, "X", "unassigned", c2, "reason", "reply_timeout", 15000,
                    false);
    SSE_EXPECT(sx, "X", "status", NULL, "status", "busy");
    j = wait_owner(srv.port, NULL, c2, "queue", NULL);
    assert_true(json_is_true(jget(j, "owner.requeued")));
    j = EXPECT(srv.port, "GET", "/api/v1/queue", NULL, NULL, 200);
    queue_order(j, order, sizeof(order));
    assert_string_equal(order, fmt("%s,%s", c2, c3));
    assert_true(json_is_true(jget(j, "items.0.requeued")));
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me", x.token, NULL, 200);
    ASSERT_JS(j, "status", "busy");
    ASSERT_JI(j, "open_dialogs", 0);
    /* Y replied: still Y's */
    wait_owner(srv.port, NULL, c1, "operator", y.id);
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me", y.token, NULL, 200);
    ASSERT_JS(j, "status", "available");
    /* X back: the head (the requeued one) comes to X at once */
    set_status(srv.port, &x, "available");
    SSE_EXPECT(sx, "X", "assigned", c2, NULL, NULL);
    wait_owner(srv.port, NULL, c2, "operator", x.id);
    EXPECT(srv.port, "POST", dpath(c2, "/reply"), x.token, "{\"message\":\"Sorry!\"}",
           200);
    h_sse_close(sx);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/* ---- registration, tokens, the rate limit ---------------------------------------- */

static void test_register_auth(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {
        "API_KEYS=" CLIENT,    "ADMIN_API_KEYS=" ADMIN,       "OPERATOR_SECRET=" SECRET,
        "OPERATOR_PINS=" PIN2, "OPERATOR_REGISTER_PER_MIN=3", NULL};
    const char *env_closed[] = {NULL};
    json_t *j1;
    json_t *j2;
    json_t *j3;
    json_t *j;
    struct op o = {.name = "Admin-made"};
    char *log;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    j1 = EXPECT_CODE(srv.port, "POST", "/api/v1/operators/register", NULL,
                     "{\"secret\":\"wrong-secret-zz91\",\"name\":\"Eve\"}", 401,
                     "unauthorized");
    j2 = EXPECT_CODE(srv.port, "POST", "/api/v1/operators/register", NULL,
                     "{\"pin\":\"13579\",\"name\":\"Eve\"}", 401, "unauthorized");
    j3 = EXPECT_CODE(srv.port, "POST", "/api/v1/operators/register", NULL,
                     "{\"name\":\"Eve\"}", 401, "unauthorized");
    /* the same answer: never says which credential was wrong */
    assert_string_equal(js(j1, "detail"), js(j2, "detail"));
    assert_string_equal(js(j1, "detail"), js(j3, "detail"));
    /* past the limit: 429, the right secret included */
    EXPECT_CODE(srv.port, "POST", "/api/v1/operators/register", NULL,
                "{\"secret\":\"wrong-secret-zz92\",\"name\":\"Eve\"}", 429, NULL);
    EXPECT(srv.port, "POST", "/api/v1/operators/register", NULL,
           "{\"secret\":\"" SECRET "\",\"name\":\"Late\"}", 429);
    /* an admin still creates operators */
    j = EXPECT(srv.port, "POST", "/api/v1/operators", ADMIN,
               "{\"name\":\"Admin-made\",\"max_dialogs\":2}", 201);
    op_from(j, &o);
    EXPECT(srv.port, "POST", "/api/v1/operators", CLIENT, "{\"name\":\"Client-made\"}",
           403);
    EXPECT(srv.port, "POST", "/api/v1/operators", NULL, "{\"name\":\"Nobody\"}", 401);
    /* tokens */
    EXPECT(srv.port, "GET", "/api/v1/operators/me", o.token, NULL, 200);
    EXPECT(srv.port, "GET", "/api/v1/operators/me", NULL, NULL, 401);
    EXPECT(srv.port, "GET", "/api/v1/operators/me",
           "cco_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, 401);
    assert_true(
        h_call(srv.port, "GET", "/api/v1/operators/me", CLIENT, NULL, NULL) / 100 == 4);
    assert_true(h_call(srv.port, "GET", "/api/v1/operators/me", CLIENT, NULL, NULL) !=
                200);
    assert_true(
        h_call(srv.port, "GET", "/api/v1/operators/me/events", CLIENT, NULL, NULL) /
            100 ==
        4);
    /* an operator token is not an admin key */
    EXPECT_EITHER(srv.port, "GET", "/api/v1/operators", o.token, NULL, 401, 403);
    EXPECT_EITHER(srv.port, "PUT", "/api/v1/operators/me/status", o.token,
                  "{\"status\":\"sleeping\"}", 400, 422);
    EXPECT(srv.port, "PATCH", "/api/v1/operators/me", o.token, "{\"max_dialogs\":7}",
           403);
    /* an admin may change the limit */
    j = EXPECT(srv.port, "PATCH", fmt("/api/v1/operators/%s", o.id), ADMIN,
               "{\"max_dialogs\":7}", 200);
    ASSERT_JI(j, "max_dialogs", 7);
    assert_int_equal(h_stop(&srv), 0);
    log = read_log(srv.log);
    assert_null(strstr(log, SECRET));
    assert_null(strstr(log, "wrong-secret-zz9"));
    assert_null(strstr(log, "13579"));
    assert_null(strstr(log, o.token + 4));
    free(log);

    /* no OPERATOR_SECRET nor OPERATOR_PINS: registration is closed */
    h_server_start(&srv, dir, env_closed);
    EXPECT_CODE(srv.port, "POST", "/api/v1/operators/register", NULL,
                "{\"secret\":\"anything\",\"name\":\"Eve\"}", 403, "registration_closed");
    /* bad bodies (admin route: open API, no keys) */
    {
        static const char *const bad[] = {
            "{}",
            "{\"name\":\"\"}",
            "{\"name\":\"X\",\"languages\":[\"fr\"]}",
            "{\"name\":\"X\",\"languages\":[]}",
            "{\"name\":\"X\",\"skills\":[\"cooking\"]}",
            "{\"name\":\"X\",\"max_dialogs\":0}",
            "{\"name\":\"X\",\"max_dialogs\":51}",
            "{\"name\":\"X\",\"max_dialogs\":\"3\"}",
            "{\"name\":42}",
            "[\"name\"]",
            "{\"name\":\"X\",\"profile\":\"text\"}",
            "not json",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            long st = h_call(srv.port, "POST", "/api/v1/operators", NULL, bad[i], NULL);

            if (st != 400 && st != 422)
                fail_msg("POST /operators %s: %ld, want 400 or 422", bad[i], st);
        }
    }
    j = EXPECT(srv.port, "POST", "/api/v1/operators", NULL,
               "{\"name\":\"Ok\",\"languages\":[\"en\"],\"skills\":[\"sales\"]}", 201);
    ASSERT_JS(j, "operator.languages.0", "en");
    ASSERT_JS(j, "operator.skills.0", "sales");
    /* operator routes need an operator token even on an open API */
    EXPECT(srv.port, "GET", "/api/v1/operators/me", NULL, NULL, 401);
    assert_int_equal(h_stop(&srv), 0);
    h_remove_tmpdirs();
}

/*
 * A queued customer gets the knowledge base's confident answer to their
 * question besides their position (seed 004); an operator's CSAT is in their
 * view and is counted again from the stored ratings after a restart.
 */
static void test_faq_and_csat(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"API_KEYS=" CLIENT, "ADMIN_API_KEYS=" ADMIN,
                         "OPERATOR_SECRET=" SECRET, NULL};
    char c1[37];
    char c2[37];
    struct op a = {.name = "Olga"};
    json_t *j;
    json_t *d;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    j = EXPECT(srv.port, "POST", "/api/v1/operators/register", NULL,
               "{\"secret\":\"" SECRET "\",\"name\":\"Olga\",\"max_dialogs\":2}", 201);
    op_from(j, &a);
    /* nobody on shift: queued, with the FAQ answer to the question */
    create_dialog(srv.port, CLIENT, "Пётр", NULL, c1);
    j = say(srv.port, CLIENT, c1,
            "Не могу войти в аккаунт, забыл пароль. Позовите оператора");
    ASSERT_JS(j, "owner", "queue");
    assert_true(json_is_null(jget(j, "response")));
    d = wait_owner(srv.port, CLIENT, c1, "queue", NULL);
    assert_non_null(last_system(jget(d, "messages"), "queue"));
    if (last_system(jget(d, "messages"), "faq") == NULL) {
        dump("dialog", d);
        fail_msg("a queued customer with a known question got no faq notice");
    }
    /* a bare request: no question, no faq */
    create_dialog(srv.port, CLIENT, "Анна", NULL, c2);
    (void)say(srv.port, CLIENT, c2, "Позовите оператора");
    d = wait_owner(srv.port, CLIENT, c2, "queue", NULL);
    assert_null(last_system(jget(d, "messages"), "faq"));
    /* Olga takes both, closes both; the customers rate 4 and 2 */
    (void)set_status(srv.port, &a, "available");
    (void)wait_owner(srv.port, CLIENT, c1, "operator", a.id);
    (void)wait_owner(srv.port, CLIENT, c2, "operator", a.id);
    EXPECT(srv.port, "POST", dpath(c1, "/close"), a.token, "{\"reason\":\"resolved\"}",
           200);
    EXPECT(srv.port, "POST", dpath(c2, "/close"), a.token, "{\"reason\":\"resolved\"}",
           200);
    EXPECT(srv.port, "POST", dpath(c1, "/rating"), CLIENT, "{\"score\":4}", 201);
    EXPECT(srv.port, "POST", dpath(c2, "/rating"), CLIENT, "{\"score\":2}", 201);
    j = EXPECT(srv.port, "GET", "/api/v1/operators/me", a.token, NULL, 200);
    assert_int_equal(ji(j, "csat.ratings"), 2);
    assert_int_equal(json_integer_value(json_array_get(jget(j, "csat.by_score"), 1)), 1);
    assert_int_equal(json_integer_value(json_array_get(jget(j, "csat.by_score"), 3)), 1);
    assert_true(json_real_value(jget(j, "csat.mean")) > 2.99 &&
                json_real_value(jget(j, "csat.mean")) < 3.01);
    /* after a restart the same, from the stored ratings */
    assert_int_equal(h_stop(&srv), 0);
    h_server_start(&srv, dir, env);
    j = EXPECT(srv.port, "GET", fmt("/api/v1/operators/%s", a.id), ADMIN, NULL, 200);
    assert_int_equal(ji(j, "csat.ratings"), 2);
    assert_int_equal(json_integer_value(json_array_get(jget(j, "csat.by_score"), 3)), 1);
    assert_int_equal(h_stop(&srv), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_flow, pool_free),
        cmocka_unit_test_teardown(test_reply_timeout, pool_free),
        cmocka_unit_test_teardown(test_register_auth, pool_free),
        cmocka_unit_test_teardown(test_faq_and_csat, pool_free),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    h_remove_tmpdirs(); /* test_faq_and_csat's (and, in postgres mode, its database) */
    return rc;
}
