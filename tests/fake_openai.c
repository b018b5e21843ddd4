/* SPDX-License-Identifier: MIT */
/*
 * fake_openai - a scriptable stand-in for the OpenAI Chat Completions API, for
 * integration tests and benchmarks. Binds 127.0.0.1 only.
 *
 *   fake_openai [--port N] [--latency-ms N] [--key KEY] [--port-file PATH]
 *
 * The expected API key is KEY, else $FAKE_OPENAI_KEY, else "sk-test".
 * Prints "port=N" on stdout once listening (and writes N to PATH), runs until
 * SIGTERM or SIGINT, exits 0.
 *
 * Endpoints:
 *   POST /v1/chat/completions, POST /chat/completions  validated like OpenAI
 *   POST /_fake/script   JSON array of actions, appended to a FIFO; each
 *                        completion request consumes one (else the default)
 *   POST /_fake/default  one action object: the new default action
 *   POST /_fake/reset    clear script, default, stats, request log; release
 *                        "hang" requests (their connections are closed)
 *   GET  /_fake/stats    {"requests","in_flight","max_in_flight","bad_requests",
 *                         "last_request","last_auth_ok"}
 *   GET  /_fake/requests {"requests": [last 100 valid request bodies]}
 *
 * Action fields (all optional): status, delay_ms, retry_after, content, body,
 * no_choices, pad_bytes, hang, trickle_ms, usage; their semantics are in
 * handle_completion() and build_answer(). Also:
 *   retry_after_in_s  N: a "Retry-After" HTTP-date (IMF-fixdate) N s from now
 *   cut_after         N: announce the whole body's Content-Length but close the
 *                        connection after its first N bytes (a reset mid-body)
 *
 * Threads: MHD runs a small epoll thread pool with suspend/resume; one timer
 * thread resumes suspended connections when their delay expires (a binary
 * heap under one mutex), so 10,000 delayed requests need no extra threads.
 * Lock order: timer lock (T) before state lock (S); never the reverse.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "cca/common.h"
#include "cca/mem.h"

#define FAKE_MAX_BODY     (4u * 1024 * 1024)
#define FAKE_LOG_LEN      100
#define FAKE_SCRIPT_MAX   100000
#define FAKE_HANG_CAP_MS  120000
#define FAKE_MAX_DELAY_MS 600000
#define FAKE_MAX_PAD      (64 * 1024 * 1024)
#define FAKE_MAX_TRICKLE  10000
#define FAKE_CONN_LIMIT   20000u
#define FAKE_THREADS      2u

enum route {
    ROUTE_NONE = 0,
    ROUTE_COMPLETIONS,
    ROUTE_SCRIPT,
    ROUTE_DEFAULT,
    ROUTE_RESET,
    ROUTE_STATS,
    ROUTE_REQUESTS,
    ROUTE_BAD_METHOD,
};

enum phase {
    PHASE_BODY = 0, /* reading the request */
    PHASE_WAITING,  /* suspended until the timer fires */
    PHASE_READY,    /* timer fired: queue r->resp */
    PHASE_DROP,     /* timer released a "hang" (or shutdown): close */
    PHASE_ANSWERED, /* response queued */
};

struct req {
    struct MHD_Connection *conn;
    enum route route;
    char *body;
    size_t len, cap;
    bool too_large;
    enum phase phase; /* guarded by T while suspended */
    bool counted;     /* counts in in_flight; guarded by S */
    bool hang;
    struct MHD_Response *resp; /* prepared answer while waiting */
    unsigned status;
    int64_t when; /* timer heap key */
    /* trickle */
    bool trickling;
    int trickle_ms;
    char *tbody;
    size_t tlen;
    atomic_bool tready;
    bool tdrop;
    /* cut_after: bytes of tbody sent before the connection is closed, -1: all */
    int64_t tcut;
};

static struct {
    struct MHD_Daemon *daemon;
    const char *key;
    long latency_ms;

    /* S: state */
    pthread_mutex_t lock;
    json_t *script;         /* array of action objects */
    json_t *default_action; /* object or NULL */
    uint64_t requests, bad_requests, replies;
    long in_flight, max_in_flight;
    json_t *last_request;
    bool last_auth_ok;
    json_t *log[FAKE_LOG_LEN];
    size_t log_start, log_len;

    /* T: timer */
    pthread_mutex_t tlock;
    pthread_cond_t tcond;
    struct req **heap;
    size_t heap_len, heap_cap;
    bool tstop;
    pthread_t tthread;
} g;

/* ------------------------------------------------------------ utilities */

static int64_t now_ms(void)
{
    return cca_time_mono_ms();
}

static struct MHD_Response *json_response(json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    struct MHD_Response *resp;

    json_decref(doc);
    if (s == NULL)
        s = cca_xstrdup("{}");
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(s), s, free);
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return resp;
}

static json_t *error_doc(unsigned status, const char *message, const char *param,
                         const char *code)
{
    const char *type = "invalid_request_error";

    if (status == 429)
        type = "requests";
    else if (status >= 500)
        type = "server_error";
    if (code == NULL && status == 429)
        code = "rate_limit_exceeded";
    return json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", message, "type", type,
                     "param", param ? json_string(param) : json_null(), "code",
                     code ? json_string(code) : json_null());
}

static enum MHD_Result queue(struct req *r, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);

    MHD_destroy_response(resp);
    r->phase = PHASE_ANSWERED;
    return ret;
}

static enum MHD_Result queue_error(struct req *r, unsigned status, const char *message,
                                   const char *param, const char *code)
{
    return queue(r, status, json_response(error_doc(status, message, param, code)));
}

/* ---------------------------------------------------------- timer thread */

static bool heap_less(const struct req *a, const struct req *b)
{
    return a->when < b->when;
}

static void heap_sift_down(size_t i)
{
    struct req *x = g.heap[i];

    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct req *best = x;

        if (l < g.heap_len && heap_less(g.heap[l], best)) {
            m = l;
            best = g.heap[l];
        }
        if (r < g.heap_len && heap_less(g.heap[r], best))
            m = r;
        if (m == i)
            break;
        g.heap[i] = g.heap[m];
        i = m;
    }
    g.heap[i] = x;
}

/* T held */
static void heap_push(struct req *r)
{
    size_t i;

    if (g.heap_len == g.heap_cap) {
        g.heap_cap = g.heap_cap ? g.heap_cap * 2 : 1024;
        g.heap = cca_xrealloc(g.heap, g.heap_cap * sizeof(*g.heap));
    }
    i = g.heap_len++;
    while (i > 0 && heap_less(r, g.heap[(i - 1) / 2])) {
        g.heap[i] = g.heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    g.heap[i] = r;
    if (i == 0)
        pthread_cond_signal(&g.tcond);
}

/* T held */
static struct req *heap_pop(void)
{
    struct req *top;

    if (g.heap_len == 0)
        return NULL;
    top = g.heap[0];
    g.heap[0] = g.heap[--g.heap_len];
    if (g.heap_len > 0)
        heap_sift_down(0);
    return top;
}

/* T held: wake @r's connection; @drop closes it instead of answering. */
static void fire(struct req *r, bool drop)
{
    if (r->phase == PHASE_WAITING) {
        /* suspended by the access handler: answer (or close) now */
        r->phase = drop || r->hang ? PHASE_DROP : PHASE_READY;
    } else {
        /* suspended by trickle_reader between two bytes */
        if (drop)
            r->tdrop = true;
        atomic_store(&r->tready, true);
    }
    MHD_resume_connection(r->conn);
}

/*
 * T held: suspend @r's connection until @delay_ms from now. Returns false when
 * the fake is shutting down (then nothing was suspended).
 */
static bool suspend_for(struct req *r, int64_t delay_ms)
{
    if (g.tstop)
        return false;
    MHD_suspend_connection(r->conn);
    r->when = now_ms() + delay_ms;
    heap_push(r);
    return true;
}

static void *timer_main(void *arg)
{
    struct req *r;

    (void)arg;
    pthread_mutex_lock(&g.tlock);
    for (;;) {
        int64_t now;

        if (g.tstop)
            break;
        if (g.heap_len == 0) {
            pthread_cond_wait(&g.tcond, &g.tlock);
            continue;
        }
        now = now_ms();
        if (g.heap[0]->when > now) {
            struct timespec ts;
            int64_t at = g.heap[0]->when;

            ts.tv_sec = at / 1000;
            ts.tv_nsec = (at % 1000) * 1000000L;
            (void)pthread_cond_timedwait(&g.tcond, &g.tlock, &ts);
            continue;
        }
        while (g.heap_len > 0 && g.heap[0]->when <= now) {
            r = heap_pop();
            fire(r, false);
        }
    }
    /* shutdown: everything suspended is resumed before MHD_stop_daemon */
    while ((r = heap_pop()) != NULL)
        fire(r, true);
    pthread_mutex_unlock(&g.tlock);
    return NULL;
}

/* --------------------------------------------------------------- stats */

/* S held */
static void inflight_add(struct req *r)
{
    r->counted = true;
    g.in_flight++;
    if (g.in_flight > g.max_in_flight)
        g.max_in_flight = g.in_flight;
}

/* S held */
static void inflight_del(struct req *r)
{
    if (!r->counted)
        return;
    r->counted = false;
    g.in_flight--;
}

/* S held: steals @body */
static void log_request(json_t *body)
{
    json_decref(g.last_request);
    g.last_request = json_incref(body);
    if (g.log_len == FAKE_LOG_LEN) {
        json_decref(g.log[g.log_start]);
        g.log[g.log_start] = body;
        g.log_start = (g.log_start + 1) % FAKE_LOG_LEN;
    } else {
        g.log[(g.log_start + g.log_len) % FAKE_LOG_LEN] = body;
        g.log_len++;
    }
}

/* ------------------------------------------------------------ actions */

static bool int_field(json_t *a, const char *name, json_int_t lo, json_int_t hi,
                      json_int_t *ret)
{
    json_t *v = json_object_get(a, name);

    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return false;
    if (ret != NULL)
        *ret = json_integer_value(v);
    return true;
}

static bool opt_type(json_t *a, const char *name, json_type type)
{
    json_t *v = json_object_get(a, name);

    return v == NULL || json_is_null(v) || json_typeof(v) == type ||
           (type == JSON_TRUE && json_is_boolean(v));
}

/* Returns NULL if @a is a valid action, else a reason. */
static const char *action_check(json_t *a)
{
    const char *ra;

    if (!json_is_object(a))
        return "an action must be a JSON object";
    if (!int_field(a, "status", 100, 599, NULL))
        return "'status' must be an integer 100..599";
    if (!int_field(a, "delay_ms", 0, FAKE_MAX_DELAY_MS, NULL))
        return "'delay_ms' must be an integer 0..600000";
    if (!int_field(a, "pad_bytes", 0, FAKE_MAX_PAD, NULL))
        return "'pad_bytes' must be an integer 0..67108864";
    if (!int_field(a, "trickle_ms", 0, FAKE_MAX_TRICKLE, NULL))
        return "'trickle_ms' must be an integer 0..10000";
    if (!int_field(a, "retry_after_in_s", 0, FAKE_MAX_DELAY_MS / 1000, NULL))
        return "'retry_after_in_s' must be an integer 0..600";
    if (!int_field(a, "cut_after", 0, FAKE_MAX_PAD, NULL))
        return "'cut_after' must be an integer 0..67108864";
    if (!opt_type(a, "retry_after", JSON_STRING) ||
        !opt_type(a, "content", JSON_STRING) || !opt_type(a, "body", JSON_STRING))
        return "'retry_after', 'content' and 'body' must be strings";
    if (!opt_type(a, "no_choices", JSON_TRUE) || !opt_type(a, "hang", JSON_TRUE))
        return "'no_choices' and 'hang' must be booleans";
    if (!opt_type(a, "usage", JSON_OBJECT))
        return "'usage' must be an object";
    ra = json_string_value(json_object_get(a, "retry_after"));
    if (ra != NULL && (strlen(ra) > 200 || strpbrk(ra, "\r\n") != NULL))
        return "'retry_after' must be one line of at most 200 bytes";
    return NULL;
}

/* ------------------------------------------------------ completion logic */

static size_t count_words(const char *s)
{
    size_t n = 0;
    bool in = false;

    for (; *s; s++) {
        bool sp = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' ||
                  *s == '\v';

        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

static bool has_any(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcasestr(s, *words) != NULL)
            return true;
    return false;
}

/*
 * Validate a completion request body like OpenAI does (the subset we send).
 * Returns NULL and the parsed object in *ret_doc, or an error message and the
 * offending parameter in *ret_param.
 */
static const char *validate(const char *body, size_t len, json_t **ret_doc,
                            const char **ret_param, char *msgbuf, size_t msgsz)
{
    static const char *const roles[] = {"system", "developer", "user", "assistant",
                                        "tool"};
    json_t *doc, *v, *msgs, *m;
    size_t i, k;

    *ret_param = NULL;
    doc = json_loadb(body ? body : "", len, 0, NULL);
    if (doc == NULL)
        return "We could not parse the JSON body of your request. (HINT: This likely "
               "means you aren't using your HTTP library correctly. The OpenAI API "
               "expects a JSON payload.)";
    if (!json_is_object(doc)) {
        json_decref(doc);
        return "The request body must be a JSON object.";
    }
    v = json_object_get(doc, "model");
    if (v == NULL) {
        *ret_param = "model";
        json_decref(doc);
        return "you must provide a model parameter";
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        *ret_param = "model";
        json_decref(doc);
        return "Invalid type for 'model': expected a non-empty string.";
    }
    msgs = json_object_get(doc, "messages");
    if (msgs == NULL) {
        *ret_param = "messages";
        json_decref(doc);
        return "Missing required parameter: 'messages'.";
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        *ret_param = "messages";
        json_decref(doc);
        return "Invalid 'messages': expected a non-empty array.";
    }
    json_array_foreach (msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        bool ok = false;

        for (k = 0; role != NULL && k < CCA_ARRAY_SIZE(roles); k++)
            ok = ok || strcmp(role, roles[k]) == 0;
        if (!json_is_object(m) || !ok) {
            snprintf(msgbuf, msgsz,
                     "Invalid value for 'messages[%zu].role': expected one "
                     "of system, developer, user, assistant, tool.",
                     i);
            *ret_param = "messages";
            json_decref(doc);
            return msgbuf;
        }
        if (!json_is_string(json_object_get(m, "content"))) {
            snprintf(msgbuf, msgsz,
                     "Invalid type for 'messages[%zu].content': expected a string.", i);
            *ret_param = "messages";
            json_decref(doc);
            return msgbuf;
        }
    }
    v = json_object_get(doc, "temperature");
    if (v != NULL &&
        (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 2)) {
        *ret_param = "temperature";
        json_decref(doc);
        return "Invalid 'temperature': expected a number between 0 and 2.";
    }
    v = json_object_get(doc, "max_tokens");
    if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1)) {
        *ret_param = "max_tokens";
        json_decref(doc);
        return "Invalid 'max_tokens': expected an integer >= 1.";
    }
    v = json_object_get(doc, "response_format");
    if (v != NULL &&
        (!json_is_object(v) || !json_is_string(json_object_get(v, "type")))) {
        *ret_param = "response_format";
        json_decref(doc);
        return "Invalid 'response_format': expected an object with a string 'type'.";
    }
    *ret_doc = doc;
    return NULL;
}

static const char *last_user_content(json_t *msgs)
{
    size_t i = json_array_size(msgs);

    while (i-- > 0) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));

        if (role != NULL && strcmp(role, "user") == 0)
            return json_string_value(json_object_get(m, "content"));
    }
    return "";
}

/* Build the default content for @doc: classifier JSON or an echo. New string. */
static char *default_content(json_t *doc, uint64_t n)
{
    static const char *const refund[] = {"refund", "возврат", "Возврат", "верн",
                                         "Верн",   "ВЕРН",    NULL};
    static const char *const sales[] = {"price", "тариф", "Тариф", "цен", "Цен", NULL};
    const char *last = last_user_content(json_object_get(doc, "messages"));
    const char *mode = json_string_value(
        json_object_get(json_object_get(doc, "response_format"), "type"));
    size_t cut;
    char *out;

    if (mode != NULL && strcmp(mode, "json_object") == 0) {
        const char *agent = "tech_support";
        size_t sz = 128;

        if (has_any(last, refund))
            agent = "supervisor";
        else if (has_any(last, sales))
            agent = "sales";
        out = cca_xmalloc(sz);
        snprintf(out, sz,
                 "{\"agent\":\"%s\",\"confidence\":0.9,\"reason\":\"fake classifier\"}",
                 agent);
        return out;
    }
    cut = strlen(last);
    if (cut > 200) {
        cut = 200;
        /* do not split a UTF-8 sequence */
        while (cut > 0 && ((unsigned char)last[cut] & 0xC0) == 0x80)
            cut--;
    }
    out = cca_xmalloc(cut + 64);
    snprintf(out, cut + 64, "Fake reply #%" PRIu64 " to: %.*s", n, (int)cut, last);
    return out;
}

/*
 * Build the answer for a valid request @doc under action @a (may be NULL).
 * Sets *ret_status, returns the response body (new string).
 */
static char *build_answer(json_t *doc, json_t *a, uint64_t n, unsigned *ret_status)
{
    json_int_t status = 200, pad = 0;
    const char *raw = json_string_value(json_object_get(a, "body"));
    const char *content_override = json_string_value(json_object_get(a, "content"));
    json_t *usage = json_object_get(a, "usage");
    json_t *msgs = json_object_get(doc, "messages"), *m, *resp, *choices;
    char *content, *s, idbuf[48];
    size_t i, words = 0, clen;

    (void)int_field(a, "status", 100, 599, &status);
    (void)int_field(a, "pad_bytes", 0, FAKE_MAX_PAD, &pad);
    *ret_status = (unsigned)status;
    if (raw != NULL)
        return cca_xstrdup(raw);
    if (status != 200) {
        char msg[96];

        snprintf(msg, sizeof(msg), "fake error %u", (unsigned)status);
        resp = error_doc((unsigned)status, msg, NULL,
                         status == 401 ? "invalid_api_key" : NULL);
        s = json_dumps(resp, JSON_COMPACT);
        json_decref(resp);
        return s;
    }

    content = content_override ? cca_xstrdup(content_override) : default_content(doc, n);
    clen = strlen(content);
    if ((size_t)pad > clen) {
        content = cca_xrealloc(content, (size_t)pad + 1);
        memset(content + clen, ' ', (size_t)pad - clen);
        content[pad] = '\0';
    }
    json_array_foreach (msgs, i, m) {
        words += count_words(json_string_value(json_object_get(m, "content")));
    }
    snprintf(idbuf, sizeof(idbuf), "chatcmpl-fake-%" PRIu64, n);
    if (json_is_true(json_object_get(a, "no_choices"))) {
        choices = json_array();
    } else {
        json_t *text = json_string(content);

        if (text == NULL) /* content from a script that is not UTF-8 */
            text = json_string("");
        choices = json_pack("[{s:i,s:{s:s,s:o,s:n},s:n,s:s}]", "index", 0, "message",
                            "role", "assistant", "content", text, "refusal", "logprobs",
                            "finish_reason", "stop");
    }
    resp = json_pack("{s:s,s:s,s:I,s:O,s:o}", "id", idbuf, "object", "chat.completion",
                     "created", (json_int_t)time(NULL), "model",
                     json_object_get(doc, "model"), "choices", choices);
    if (json_is_object(usage)) {
        json_object_set_new(resp, "usage", json_deep_copy(usage));
    } else {
        json_int_t p = (json_int_t)words, c = (json_int_t)count_words(content);

        json_object_set_new(resp, "usage",
                            json_pack("{s:I,s:I,s:I}", "prompt_tokens", p,
                                      "completion_tokens", c, "total_tokens", p + c));
    }
    s = json_dumps(resp, JSON_COMPACT);
    json_decref(resp);
    free(content);
    return s;
}

static ssize_t trickle_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct req *r = cls;
    bool suspended;

    if (pos >= r->tlen)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (r->tdrop || (r->tcut >= 0 && pos >= (uint64_t)r->tcut))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (r->trickle_ms == 0) {
        /* cut_after without trickle: everything up to the cut at once */
        size_t n = (size_t)((uint64_t)r->tcut - pos);

        if (n > max)
            n = max;
        memcpy(buf, r->tbody + pos, n);
        return (ssize_t)n;
    }
    if (atomic_exchange(&r->tready, false)) {
        buf[0] = r->tbody[pos];
        (void)max;
        return 1;
    }
    pthread_mutex_lock(&g.tlock);
    suspended = suspend_for(r, r->trickle_ms);
    pthread_mutex_unlock(&g.tlock);
    return suspended ? 0 : MHD_CONTENT_READER_END_WITH_ERROR;
}

static bool content_type_is_json(struct MHD_Connection *conn)
{
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t n = strlen("application/json");

    if (ct == NULL || strncasecmp(ct, "application/json", n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

static bool auth_ok(struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);

    return h != NULL && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, g.key) == 0;
}

static enum MHD_Result handle_completion(struct req *r)
{
    const char *err, *param = NULL;
    char msgbuf[160];
    json_t *doc = NULL, *a = NULL;
    json_int_t delay = -1, trickle = 0, ra_in = -1, cut = -1;
    unsigned status;
    uint64_t n;
    bool auth, suspended;
    char *body;
    struct MHD_Response *resp;
    const char *ra;

    auth = auth_ok(r->conn);
    pthread_mutex_lock(&g.lock);
    g.requests++;
    g.last_auth_ok = auth;
    pthread_mutex_unlock(&g.lock);

    if (r->too_large) {
        status = 413;
        err = "Request body too large (limit 4 MiB).";
    } else if (!auth) {
        status = 401;
        err = "Incorrect API key provided. You can find your API key at "
              "https://platform.openai.com/account/api-keys.";
    } else if (!content_type_is_json(r->conn)) {
        status = 415;
        err = "Unsupported content type: expected 'application/json'.";
    } else {
        status = 400;
        err = validate(r->body, r->len, &doc, &param, msgbuf, sizeof(msgbuf));
    }
    if (err != NULL) {
        pthread_mutex_lock(&g.lock);
        g.bad_requests++;
        pthread_mutex_unlock(&g.lock);
        return queue_error(r, status, err, param,
                           status == 401 ? "invalid_api_key" : NULL);
    }

    pthread_mutex_lock(&g.lock);
    n = ++g.replies;
    log_request(json_incref(doc));
    if (json_array_size(g.script) > 0) {
        a = json_incref(json_array_get(g.script, 0));
        json_array_remove(g.script, 0);
    } else {
        a = json_incref(g.default_action);
    }
    (void)int_field(g.default_action, "delay_ms", 0, FAKE_MAX_DELAY_MS, &delay);
    inflight_add(r);
    pthread_mutex_unlock(&g.lock);

    if (delay < 0)
        delay = g.latency_ms;
    (void)int_field(a, "delay_ms", 0, FAKE_MAX_DELAY_MS, &delay);
    (void)int_field(a, "trickle_ms", 0, FAKE_MAX_TRICKLE, &trickle);
    (void)int_field(a, "retry_after_in_s", 0, FAKE_MAX_DELAY_MS / 1000, &ra_in);
    (void)int_field(a, "cut_after", 0, FAKE_MAX_PAD, &cut);
    r->hang = json_is_true(json_object_get(a, "hang"));

    body = build_answer(doc, a, n, &status);
    if (body == NULL)
        body = cca_xstrdup("{}");
    r->status = status;
    r->tcut = -1;
    if (trickle > 0 || (cut >= 0 && (size_t)cut < strlen(body))) {
        r->trickling = true;
        r->trickle_ms = (int)trickle;
        r->tbody = body;
        r->tlen = strlen(body);
        r->tcut = cut >= 0 && (size_t)cut < r->tlen ? cut : -1;
        atomic_store(&r->tready, true);
        resp = MHD_create_response_from_callback(r->tlen, 1, trickle_reader, r, NULL);
    } else {
        resp =
            MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
    }
    (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ra = json_string_value(json_object_get(a, "retry_after"));
    if (ra != NULL)
        (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    if (ra_in >= 0) {
        /* an HTTP-date N s from now, IMF-fixdate (RFC 9110 section 5.6.7) */
        char date[64];
        time_t when = time(NULL) + (time_t)ra_in;
        struct tm tm;

        gmtime_r(&when, &tm);
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, date);
    }
    json_decref(a);
    json_decref(doc);

    if (r->hang || delay > 0) {
        r->resp = resp;
        r->phase = PHASE_WAITING;
        pthread_mutex_lock(&g.tlock);
        suspended = suspend_for(r, r->hang ? FAKE_HANG_CAP_MS : delay);
        pthread_mutex_unlock(&g.tlock);
        if (suspended)
            return MHD_YES;
        /* shutting down: answer right away */
        r->resp = NULL;
        MHD_destroy_response(resp);
        return queue_error(r, 503, "fake is shutting down", NULL, NULL);
    }
    return queue(r, status, resp);
}

/* ----------------------------------------------------------- admin */

static enum MHD_Result handle_script(struct req *r, bool set_default)
{
    json_t *doc = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
    json_t *a;
    const char *why = NULL;
    size_t i;

    if (r->too_large || doc == NULL) {
        json_decref(doc);
        return queue_error(r, r->too_large ? 413 : 400, "body must be JSON", NULL, NULL);
    }
    if (set_default) {
        why = action_check(doc);
    } else if (!json_is_array(doc)) {
        why = "body must be a JSON array of actions";
    } else {
        json_array_foreach (doc, i, a) {
            if (why == NULL)
                why = action_check(a);
        }
    }
    if (why != NULL) {
        json_decref(doc);
        return queue_error(r, 400, why, NULL, NULL);
    }
    pthread_mutex_lock(&g.lock);
    if (set_default) {
        json_decref(g.default_action);
        g.default_action = doc;
        doc = NULL;
    } else if (json_array_size(g.script) + json_array_size(doc) > FAKE_SCRIPT_MAX) {
        why = "script too long";
    } else {
        json_array_extend(g.script, doc);
    }
    pthread_mutex_unlock(&g.lock);
    json_decref(doc);
    if (why != NULL)
        return queue_error(r, 400, why, NULL, NULL);
    return queue(r, 200, json_response(json_pack("{s:b}", "ok", 1)));
}

static enum MHD_Result handle_reset(struct req *r)
{
    size_t i;

    /* T then S: release "hang" requests now, so in_flight drops at once */
    pthread_mutex_lock(&g.tlock);
    pthread_mutex_lock(&g.lock);
    for (i = 0; i < g.heap_len; i++) {
        struct req *h = g.heap[i];

        if (h->hang) {
            h->when = 0;
            inflight_del(h);
        }
    }
    for (i = g.heap_len / 2; i-- > 0;)
        heap_sift_down(i);
    if (g.heap_len > 0)
        pthread_cond_signal(&g.tcond);

    json_array_clear(g.script);
    json_decref(g.default_action);
    g.default_action = NULL;
    g.requests = 0;
    g.bad_requests = 0;
    g.max_in_flight = g.in_flight;
    json_decref(g.last_request);
    g.last_request = NULL;
    g.last_auth_ok = false;
    for (i = 0; i < g.log_len; i++)
        json_decref(g.log[(g.log_start + i) % FAKE_LOG_LEN]);
    g.log_start = 0;
    g.log_len = 0;
    pthread_mutex_unlock(&g.lock);
    pthread_mutex_unlock(&g.tlock);
    return queue(r, 200, json_response(json_pack("{s:b}", "ok", 1)));
}

static enum MHD_Result handle_stats(struct req *r)
{
    struct MHD_Response *resp;
    json_t *doc;

    pthread_mutex_lock(&g.lock);
    doc =
        json_pack("{s:I,s:I,s:I,s:I,s:O,s:b}", "requests", (json_int_t)g.requests,
                  "in_flight", (json_int_t)g.in_flight, "max_in_flight",
                  (json_int_t)g.max_in_flight, "bad_requests", (json_int_t)g.bad_requests,
                  "last_request", g.last_request ? g.last_request : json_null(),
                  "last_auth_ok", (int)g.last_auth_ok);
    /* serialise under S: the logged documents are shared */
    resp = json_response(doc);
    pthread_mutex_unlock(&g.lock);
    return queue(r, 200, resp);
}

static enum MHD_Result handle_requests(struct req *r)
{
    json_t *arr = json_array();
    struct MHD_Response *resp;
    size_t i;

    pthread_mutex_lock(&g.lock);
    for (i = 0; i < g.log_len; i++)
        json_array_append(arr, g.log[(g.log_start + i) % FAKE_LOG_LEN]);
    resp = json_response(json_pack("{s:o}", "requests", arr));
    pthread_mutex_unlock(&g.lock);
    return queue(r, 200, resp);
}

/* ----------------------------------------------------------- MHD glue */

static enum route route_of(const char *method, const char *url)
{
    static const struct {
        const char *method, *path;
        enum route route;
    } routes[] = {
        {"POST", "/v1/chat/completions", ROUTE_COMPLETIONS},
        {"POST", "/chat/completions", ROUTE_COMPLETIONS},
        {"POST", "/_fake/script", ROUTE_SCRIPT},
        {"POST", "/_fake/default", ROUTE_DEFAULT},
        {"POST", "/_fake/reset", ROUTE_RESET},
        {"GET", "/_fake/stats", ROUTE_STATS},
        {"GET", "/_fake/requests", ROUTE_REQUESTS},
    };
    enum route found = ROUTE_NONE;
    size_t i;

    for (i = 0; i < CCA_ARRAY_SIZE(routes); i++) {
        if (strcmp(url, routes[i].path) != 0)
            continue;
        if (strcmp(method, routes[i].method) == 0)
            return routes[i].route;
        found = ROUTE_BAD_METHOD;
    }
    return found;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct req *r = *req_cls;
    enum MHD_Result ret;

    (void)cls;
    (void)version;
    if (r == NULL) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);

        r = cca_xcalloc(1, sizeof(*r));
        r->conn = conn;
        r->route = route_of(method, url);
        if (cl != NULL && strtoull(cl, NULL, 10) > FAKE_MAX_BODY)
            r->too_large = true;
        *req_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        if (r->too_large || r->phase != PHASE_BODY)
            return MHD_YES;
        if (n > FAKE_MAX_BODY - r->len) {
            r->too_large = true;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            r->cap = (r->len + n + 1) * 2;
            if (r->cap > FAKE_MAX_BODY + 1)
                r->cap = FAKE_MAX_BODY + 1;
            r->body = cca_xrealloc(r->body, r->cap);
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }

    switch (r->phase) {
        case PHASE_BODY:
            break;
        case PHASE_WAITING: /* spurious call while suspended: nothing to do */
            return MHD_YES;
        case PHASE_READY: {
            struct MHD_Response *resp = r->resp;

            r->resp = NULL;
            return queue(r, r->status, resp);
        }
        case PHASE_DROP:
            return MHD_NO;
        case PHASE_ANSWERED:
            return MHD_YES;
    }

    switch (r->route) {
        case ROUTE_COMPLETIONS:
            ret = handle_completion(r);
            break;
        case ROUTE_SCRIPT:
            ret = handle_script(r, false);
            break;
        case ROUTE_DEFAULT:
            ret = handle_script(r, true);
            break;
        case ROUTE_RESET:
            ret = handle_reset(r);
            break;
        case ROUTE_STATS:
            ret = handle_stats(r);
            break;
        case ROUTE_REQUESTS:
            ret = handle_requests(r);
            break;
        case ROUTE_BAD_METHOD:
            ret = queue_error(r, 405, "Method not allowed.", NULL, NULL);
            break;
        case ROUTE_NONE:
        default:
            ret = queue_error(r, 404, "Unknown request URL.", NULL, "unknown_url");
            break;
    }
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *r = *req_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (r == NULL)
        return;
    pthread_mutex_lock(&g.lock);
    inflight_del(r);
    pthread_mutex_unlock(&g.lock);
    if (r->resp != NULL)
        MHD_destroy_response(r->resp);
    free(r->tbody);
    free(r->body);
    free(r);
    *req_cls = NULL;
}

/* ---------------------------------------------------------------- main */

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    static const char closing[] = "Application reported internal error";
    char line[512];

    (void)cls;
    /* MHD passes most messages as "%s\n": format first, then filter */
    vsnprintf(line, sizeof(line), fmt, ap);
    /* closing a released "hang" request is deliberate: not worth a line */
    if (strncmp(line, closing, sizeof(closing) - 1) == 0)
        return;
    fprintf(stderr, "fake_openai: mhd: %s", line);
}

static int print_usage(void)
{
    fprintf(stderr, "usage: fake_openai [--port N] [--latency-ms N] [--key KEY] "
                    "[--port-file PATH]\n");
    return 2;
}

static bool parse_long(const char *s, long lo, long hi, long *ret)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *ret = v;
    return true;
}

static bool write_port_file(const char *path, unsigned port)
{
    size_t n = strlen(path) + 8;
    char *tmp = cca_xmalloc(n);
    FILE *f;
    bool ok;

    /* write then rename, so a reader never sees a partial number */
    snprintf(tmp, n, "%s.tmp", path);
    f = fopen(tmp, "w");
    ok = f != NULL && fprintf(f, "%u\n", port) > 0;
    if (f != NULL && fclose(f) != 0)
        ok = false;
    ok = ok && rename(tmp, path) == 0;
    if (!ok)
        (void)unlink(tmp);
    free(tmp);
    return ok;
}

int main(int argc, char **argv)
{
    long port = 0;
    const char *port_file = NULL;
    struct sockaddr_in addr;
    struct rlimit rl;
    sigset_t sigs;
    unsigned conn_limit = FAKE_CONN_LIMIT;
    const union MHD_DaemonInfo *info;
    int i, sig = 0, rc = EXIT_FAILURE;
    bool timer_started = false;
    size_t k;

    g.key = getenv("FAKE_OPENAI_KEY");
    if (g.key == NULL || g.key[0] == '\0')
        g.key = "sk-test";
    for (i = 1; i < argc; i++) {
        bool has_arg = i + 1 < argc;

        if (strcmp(argv[i], "--port") == 0 && has_arg) {
            if (!parse_long(argv[++i], 0, 65535, &port)) {
                rc = print_usage();
                goto out;
            }
        } else if (strcmp(argv[i], "--latency-ms") == 0 && has_arg) {
            if (!parse_long(argv[++i], 0, FAKE_MAX_DELAY_MS, &g.latency_ms)) {
                rc = print_usage();
                goto out;
            }
        } else if (strcmp(argv[i], "--key") == 0 && has_arg) {
            g.key = argv[++i];
        } else if (strcmp(argv[i], "--port-file") == 0 && has_arg) {
            port_file = argv[++i];
        } else {
            rc = print_usage();
            goto out;
        }
    }

    cca_mem_install_jansson();
    json_object_seed(0);
    signal(SIGPIPE, SIG_IGN);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)conn_limit + 64)
            conn_limit = rl.rlim_cur > 128 ? (unsigned)rl.rlim_cur - 64 : 64;
    }

    /* every thread started from here on inherits the blocked set */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    pthread_mutex_init(&g.lock, NULL);
    pthread_mutex_init(&g.tlock, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&g.tcond, &ca);
        pthread_condattr_destroy(&ca);
    }
    g.script = json_array();
    if (pthread_create(&g.tthread, NULL, timer_main, NULL) != 0) {
        fprintf(stderr, "fake_openai: cannot start the timer thread\n");
        goto out;
    }
    timer_started = true;

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g.daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, NULL,
        /* the logger must come first to catch every message */
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, FAKE_THREADS,
        MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_CONNECTION_TIMEOUT, 120u,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        NULL, MHD_OPTION_END);
    if (g.daemon == NULL) {
        fprintf(stderr, "fake_openai: cannot listen on 127.0.0.1:%ld\n", port);
        goto out;
    }
    info = MHD_get_daemon_info(g.daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        fprintf(stderr, "fake_openai: cannot read the bound port\n");
        goto out;
    }
    if (port_file != NULL && !write_port_file(port_file, info->port)) {
        fprintf(stderr, "fake_openai: cannot write %s: %s\n", port_file, strerror(errno));
        goto out;
    }
    printf("port=%u\n", (unsigned)info->port);
    fflush(stdout);

    while (sigwait(&sigs, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
        ;
    rc = EXIT_SUCCESS;

out:
    if (timer_started) {
        pthread_mutex_lock(&g.tlock);
        g.tstop = true;
        pthread_cond_signal(&g.tcond);
        pthread_mutex_unlock(&g.tlock);
        pthread_join(g.tthread, NULL);
    }
    if (g.daemon != NULL)
        MHD_stop_daemon(g.daemon);
    json_decref(g.script);
    json_decref(g.default_action);
    json_decref(g.last_request);
    for (k = 0; k < g.log_len; k++)
        json_decref(g.log[(g.log_start + k) % FAKE_LOG_LEN]);
    free(g.heap);
    return rc;
}
