/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous OpenAI Chat Completions client (contract: include/cca/llm.h).
 *
 * Only the OpenAI protocol lives here: the request body
 * (CreateChatCompletionRequest), the parsing of a 2xx answer
 * (CreateChatCompletionResponse), the reading of an error answer, the
 * classification of every failure as the OpenAI API defines it, the health
 * snapshot and the cca_llm_* metrics. The transport (its thread and event loop,
 * the easy-handle pool, retries with backoff and Retry-After, deadlines) is the
 * generic HTTP client of src/fetch.c, on which every call runs in this client's
 * own lane ("llm").
 *
 * Life of a call (struct call):
 *   cca_llm_submit (any thread) serialises the request body and hands it to
 *   cca_fetch_start as one POST {base_url}/chat/completions;
 *   after every attempt, classify() (on the fetch thread) observes its duration
 *   and HTTP status and applies the retry policy below;
 *   when the request ends, on_fetch_done() turns the fetch result into a
 *   struct cca_llm_result (rc, content, tokens, a short reason), counts it and
 *   calls the caller's callback.
 *
 * Retry policy (docs/internals/llm.md should mirror this; the mechanics of
 * waiting are fetch.c's):
 *   - 408, 429, 5xx, connect/DNS/reset errors and attempt timeouts are retried
 *     (cca_fetch_classify_default), at most max_retries times, after
 *     Retry-After / retry-after-ms or a full-jitter backoff from backoff_base_ms;
 *   - a retry that could not start before the deadline is not scheduled:
 *     the call ends with CCA_ERR_TIMEOUT ("...; deadline reached");
 *   - retries exhausted: CCA_ERR_UPSTREAM with the last reason;
 *   - an attempt cut by the deadline itself: CCA_ERR_TIMEOUT;
 *   - malformed JSON, a non-object, no choices or no string content in a 2xx
 *     body is CCA_ERR_UPSTREAM and is NOT retried (a deterministic upstream
 *     answer; a truncated transfer shows up as a curl error and is retried);
 *   - a body over max_response_bytes is CCA_ERR_UPSTREAM, not retried.
 *
 * Metrics (struct cca_llm_metrics): call_end() counts every call once by its
 * outcome (the cause of its last failed attempt, see outcome_of), its retries
 * and, on success, its tokens; classify() observes the duration of every
 * attempt that got an HTTP response. Relaxed atomics: readers only need each
 * counter to be monotonic.
 *
 * The body parsers are pure functions (cca_llm_parse_response,
 * cca_llm_error_reason, cca_llm_parse_retry_after) so they can be unit-tested
 * and fuzzed without a network.
 *
 * Nothing here logs. Error strings are short, never contain the request or
 * response body, and are scrubbed of the API key as a last line of defence.
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/fetch.h"
#include "cca/llm.h"
#include "cca/mem.h"

/*
 * Settings of a client's own fetch thread (see src/fetch.c for the figures):
 * at most 64 idle easy handles pooled and 64 idle connections kept beyond
 * those in use.
 */
#define LLM_POOL_HANDLES    64
#define LLM_IDLE_CONNS      64
#define LLM_USER_AGENT      "cca/0.1"
#define LLM_SHUTDOWN_REASON "LLM client shutting down"

/* one submitted call: what on_fetch_done needs to report it */
struct call {
    struct cca_llm *llm;
    cca_llm_done_fn done;
    void *ctx;
};

struct cca_llm {
    /* immutable after cca_llm_new */
    char *url;
    char *model;
    char *api_key;
    size_t api_key_len;
    struct cca_fetch_headers *headers;
    long connect_timeout_ms;
    unsigned max_retries;
    size_t max_response_bytes;
    long backoff_base_ms;
    struct cca_fetch *fetch;
    bool own_fetch; /* started by cca_llm_new, stopped by cca_llm_free */
    struct cca_fetch_lane *lane;

    /* guarded by lock */
    pthread_mutex_t lock;
    bool lock_ok;
    struct cca_llm_status status;

    /* atomics, written on the fetch thread */
    struct cca_llm_metrics metrics;
};

/* ---------------------------------------------------------------- helpers */

/* Overwrite every occurrence of the API key in @s with '*'. */
static void redact(const struct cca_llm *llm, char *s)
{
    char *p;

    if (llm->api_key_len == 0)
        return;
    while ((p = strstr(s, llm->api_key)) != NULL)
        memset(p, '*', llm->api_key_len);
}

static void set_error(const struct cca_llm *llm, struct cca_llm_result *r,
                      const char *fmt, ...) CCA_PRINTF(3, 4);

static void set_error(const struct cca_llm *llm, struct cca_llm_result *r,
                      const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
    redact(llm, r->error);
}

/* Write a printf message into @out (@size bytes, truncated, NUL-terminated). */
static void format(char *out, size_t size, const char *fmt, ...) CCA_PRINTF(3, 4);

static void format(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ the parsers */

int64_t cca_llm_parse_retry_after(const char *value, const char *ms_value, int64_t now)
{
    return cca_fetch_parse_retry_after(value, ms_value, now);
}

/* Is @s a short identifier ([A-Za-z0-9_.-], 1..40 bytes)? */
static bool safe_ident(const char *s)
{
    size_t i, n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > 40)
        return false;
    for (i = 0; i < n; i++) {
        char ch = s[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

void cca_llm_error_reason(long status, const char *body, size_t len, char *out,
                          size_t size)
{
    json_t *root = NULL;
    const char *code = NULL;

    if (out == NULL || size == 0)
        return;
    if (body != NULL && len > 0)
        root = json_loadb(body, len, 0, NULL);
    if (json_is_object(root)) {
        json_t *err = json_object_get(root, "error");

        /* "code" is often null (e.g. for 5xx): then "type" says what happened */
        code = json_string_value(json_object_get(err, "code"));
        if (!safe_ident(code))
            code = json_string_value(json_object_get(err, "type"));
        if (!safe_ident(code))
            code = NULL;
    }
    if (code != NULL)
        snprintf(out, size, "HTTP %ld (%s)", status, code);
    else
        snprintf(out, size, "HTTP %ld", status);
    json_decref(root);
}

/* A "usage" count: a non-negative number, clamped to 0..LONG_MAX; 0 otherwise. */
static long usage_count(json_t *usage, const char *name)
{
    json_t *v = json_object_get(usage, name);
    double d;

    if (!json_is_number(v))
        return 0;
    d = json_number_value(v);
    if (!(d > 0)) /* negative or NaN */
        return 0;
    if (d >= (double)LONG_MAX)
        return LONG_MAX;
    return (long)d;
}

cca_rc cca_llm_parse_response(const char *body, size_t len, struct cca_llm_result *ret)
{
    json_t *root = NULL, *choice, *msg, *content, *usage;
    const char *why = NULL;
    size_t n;

    ret->content = NULL;
    ret->prompt_tokens = ret->completion_tokens = ret->total_tokens = 0;
    /*
     * Integers as reals: a usage count beyond 2^63 must not make a good answer
     * "malformed" (jansson rejects such integers otherwise).
     */
    root = json_loadb(body != NULL ? body : "", body != NULL ? len : 0,
                      JSON_DECODE_INT_AS_REAL, NULL);
    if (root == NULL) {
        why = "malformed JSON in response";
        goto out;
    }
    if (!json_is_object(root)) {
        why = "response is not a JSON object";
        goto out;
    }
    choice = json_array_get(json_object_get(root, "choices"), 0);
    if (!json_is_object(choice)) {
        why = "no choices in response";
        goto out;
    }
    msg = json_object_get(choice, "message");
    content = json_object_get(msg, "content");
    n = json_string_length(content);
    if (!json_is_string(content) || n == 0) {
        if (json_is_string(json_object_get(msg, "refusal")))
            why = "model refused, no content in response";
        else
            why = "no content in response";
        goto out;
    }
    ret->content = cca_xmalloc(n + 1);
    memcpy(ret->content, json_string_value(content), n + 1);

    usage = json_object_get(root, "usage");
    ret->prompt_tokens = usage_count(usage, "prompt_tokens");
    ret->completion_tokens = usage_count(usage, "completion_tokens");
    ret->total_tokens = usage_count(usage, "total_tokens");

out:
    json_decref(root);
    snprintf(ret->error, sizeof(ret->error), "%s", why != NULL ? why : "");
    return why != NULL ? CCA_ERR_UPSTREAM : CCA_OK;
}

/* ------------------------------------------------- OpenAI classification */

/* The metric label of an HTTP error @status (not 2xx). */
static enum cca_llm_outcome status_outcome(long status)
{
    if (status == 401 || status == 403)
        return CCA_LLM_AUTH_ERROR;
    if (status == 429)
        return CCA_LLM_RATE_LIMITED;
    if (status >= 500)
        return CCA_LLM_SERVER_ERROR;
    return CCA_LLM_CLIENT_ERROR;
}

static bool is_2xx(long status)
{
    return status >= 200 && status < 300;
}

/*
 * classify - after every attempt (fetch thread): observe its duration when it
 * got an HTTP response, remember its status for /health, and decide. What is
 * retried is exactly the default policy: 408, 429, 5xx and transient transfer
 * failures; a 2xx is final even when its body turns out unusable.
 */
static enum cca_fetch_verdict classify(void *ctx, const struct cca_fetch_attempt *a)
{
    struct cca_llm *llm = ctx;

    if (a->status != 0)
        cca_hist_observe_us(&llm->metrics.upstream_seconds, a->duration_us);
    pthread_mutex_lock(&llm->lock);
    llm->status.last_http_status = a->status;
    if (a->status != 0)
        llm->status.auth_failed = a->status == 401 || a->status == 403;
    pthread_mutex_unlock(&llm->lock);
    return cca_fetch_classify_default(NULL, a);
}

/*
 * The metric label of a failed call, from the cause of its last failed attempt
 * (see enum cca_llm_outcome): when the deadline stopped a retry after a 429,
 * that is "rate_limited"; "timeout" when the deadline cut an attempt in flight
 * or came before the first one.
 */
static enum cca_llm_outcome outcome_of(const struct cca_fetch_result *fr)
{
    if (fr->attempts == 0)
        return CCA_LLM_TIMEOUT;
    switch (fr->error) {
        case CCA_FETCH_E_NONE:
            /* a 2xx here was unusable (bad_response, see on_fetch_done) */
            return is_2xx(fr->status) ? CCA_LLM_BAD_RESPONSE : status_outcome(fr->status);
        case CCA_FETCH_E_TOO_LARGE:
            return CCA_LLM_BAD_RESPONSE;
        case CCA_FETCH_E_DEADLINE:
            return CCA_LLM_TIMEOUT;
        default:
            /* an attempt timeout short of the deadline is the connect timeout */
            return CCA_LLM_CONNECT_ERROR;
    }
}

/* The short reason of the last attempt into @out (160 bytes, key redacted). */
static void attempt_reason(const struct cca_llm *llm, const struct cca_fetch_result *fr,
                           char *out, size_t size)
{
    switch (fr->error) {
        case CCA_FETCH_E_NONE:
            cca_llm_error_reason(fr->status, fr->body, fr->body_len, out, size);
            break;
        case CCA_FETCH_E_TOO_LARGE:
            format(out, size, "response larger than %zu bytes", llm->max_response_bytes);
            break;
        case CCA_FETCH_E_CONNECT:
            format(out, size, "connect failed: %s", fr->error_text);
            break;
        case CCA_FETCH_E_TIMEOUT:
            format(out, size, "timeout");
            break;
        case CCA_FETCH_E_DEADLINE:
            format(out, size, "deadline reached after %u attempts", fr->attempts);
            break;
        default:
            format(out, size, "%s", fr->error_text);
            break;
    }
    redact(llm, out);
}

/*
 * call_end - count the call that ended with @rc (error text already in
 * r->error unless @rc is CCA_OK) by @outcome, update the status, call the
 * callback. Fetch thread.
 */
static void call_end(struct cca_llm *llm, const struct call *call,
                     struct cca_llm_result *r, enum cca_llm_outcome outcome,
                     int64_t latency_ms)
{
    struct cca_llm_metrics *m = &llm->metrics;

    if (r->rc == CCA_OK)
        r->error[0] = '\0';
    else if (r->error[0] == '\0')
        set_error(llm, r, "%s", cca_strerror(r->rc));

    atomic_fetch_add_explicit(&m->calls[outcome], 1, memory_order_relaxed);
    if (r->attempts > 1)
        atomic_fetch_add_explicit(&m->retries, r->attempts - 1, memory_order_relaxed);
    if (r->rc == CCA_OK) {
        atomic_fetch_add_explicit(&m->prompt_tokens, (uint64_t)r->prompt_tokens,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&m->completion_tokens, (uint64_t)r->completion_tokens,
                                  memory_order_relaxed);
    }

    pthread_mutex_lock(&llm->lock);
    llm->status.calls++;
    if (r->rc == CCA_OK) {
        llm->status.last_latency_ms = latency_ms;
    } else {
        llm->status.failures++;
        memcpy(llm->status.last_error, r->error, sizeof(llm->status.last_error));
    }
    pthread_mutex_unlock(&llm->lock);

    call->done(call->ctx, r);
}

/* on_fetch_done - the request of @ctx (a struct call) ended: report the call. */
static void on_fetch_done(void *ctx, struct cca_fetch_result *fr)
{
    struct call *call = ctx;
    struct cca_llm *llm = call->llm;
    struct cca_llm_result r;
    enum cca_llm_outcome outcome = CCA_LLM_TIMEOUT;
    char reason[sizeof(r.error)];
    int64_t latency_ms = 0;

    memset(&r, 0, sizeof(r));
    r.http_status = fr->status;
    r.attempts = fr->attempts;
    r.upstream_ms = fr->upstream_ms;

    switch (fr->end) {
        case CCA_FETCH_END_FINAL:
            if (fr->error == CCA_FETCH_E_NONE && is_2xx(fr->status)) {
                r.rc = cca_llm_parse_response(fr->body, fr->body_len, &r);
                if (r.rc == CCA_OK) {
                    outcome = CCA_LLM_OK;
                    latency_ms = fr->last_ms;
                } else {
                    redact(llm, r.error);
                    outcome = CCA_LLM_BAD_RESPONSE;
                }
            } else if (fr->error == CCA_FETCH_E_LOCAL) {
                /* setting up the attempt failed here: never retried */
                set_error(llm, &r, "%s", fr->error_text);
                outcome = CCA_LLM_CONNECT_ERROR;
                r.rc = CCA_ERR_UPSTREAM;
            } else {
                attempt_reason(llm, fr, r.error, sizeof(r.error));
                outcome = outcome_of(fr);
                r.rc = CCA_ERR_UPSTREAM;
            }
            break;
        case CCA_FETCH_END_EXHAUSTED:
            attempt_reason(llm, fr, reason, sizeof(reason));
            set_error(llm, &r, "%s after %u attempts", reason, fr->attempts);
            outcome = outcome_of(fr);
            r.rc = CCA_ERR_UPSTREAM;
            break;
        case CCA_FETCH_END_NO_TIME:
            attempt_reason(llm, fr, reason, sizeof(reason));
            set_error(llm, &r, "%s; deadline reached after %u attempts", reason,
                      fr->attempts);
            outcome = outcome_of(fr);
            r.rc = CCA_ERR_TIMEOUT;
            break;
        case CCA_FETCH_END_DEADLINE:
            set_error(llm, &r, "deadline reached after %u attempts", fr->attempts);
            outcome = CCA_LLM_TIMEOUT;
            r.rc = CCA_ERR_TIMEOUT;
            break;
        case CCA_FETCH_END_LATE:
            /* before the first attempt, or a retry whose wait ended too late */
            if (fr->attempts == 0)
                set_error(llm, &r, "deadline already passed");
            else
                attempt_reason(llm, fr, r.error, sizeof(r.error));
            outcome = outcome_of(fr);
            r.rc = CCA_ERR_TIMEOUT;
            break;
        case CCA_FETCH_END_CANCELLED:
        default:
            set_error(llm, &r, LLM_SHUTDOWN_REASON);
            outcome = CCA_LLM_CANCELLED;
            r.rc = CCA_ERR_UNAVAILABLE;
            break;
    }
    call_end(llm, call, &r, outcome, latency_ms);
    cca_llm_result_cleanup(&r);
    free(call);
}

/* ------------------------------------------------------------- the API */

static void llm_destroy(struct cca_llm *llm)
{
    if (llm == NULL)
        return;
    /*
     * Ends every call still pending (its callback runs on the fetch thread and
     * still uses the status and metrics) before the rest is freed.
     */
    if (llm->own_fetch)
        cca_fetch_free(llm->fetch);
    else
        cca_fetch_lane_free(llm->lane);
    cca_fetch_headers_free(llm->headers);
    if (llm->api_key != NULL)
        explicit_bzero(llm->api_key, llm->api_key_len);
    free(llm->api_key);
    free(llm->model);
    free(llm->url);
    if (llm->lock_ok)
        pthread_mutex_destroy(&llm->lock);
    free(llm);
}

static cca_rc check_params(const struct cca_llm_params *p, struct cca_error *reterr)
{
    if (p == NULL)
        return cca_error_set(reterr, CCA_ERR_INVALID, "llm: no parameters");
    if (p->base_url == NULL || (strncmp(p->base_url, "http://", 7) != 0 &&
                                strncmp(p->base_url, "https://", 8) != 0))
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "llm: base_url must start with http:// or https://");
    if (strpbrk(p->base_url, " \t\r\n") != NULL)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "llm: base_url contains whitespace");
    if (p->api_key == NULL || p->api_key[0] == '\0')
        return cca_error_set(reterr, CCA_ERR_INVALID, "llm: api_key is empty");
    if (strpbrk(p->api_key, "\r\n") != NULL)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "llm: api_key contains a line break");
    if (p->model == NULL || p->model[0] == '\0')
        return cca_error_set(reterr, CCA_ERR_INVALID, "llm: model is empty");
    if (p->connect_timeout_ms <= 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "llm: connect_timeout_ms must be > 0");
    if (p->max_retries > CCA_FETCH_MAX_RETRIES)
        return cca_error_set(reterr, CCA_ERR_INVALID, "llm: max_retries must be <= %d",
                             CCA_FETCH_MAX_RETRIES);
    if (p->max_response_bytes == 0 || p->max_response_bytes > (size_t)INT32_MAX)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "llm: max_response_bytes must be in 1..2^31-1");
    if (p->backoff_base_ms < 0)
        return cca_error_set(reterr, CCA_ERR_INVALID,
                             "llm: backoff_base_ms must be >= 0");
    return CCA_OK;
}

cca_rc cca_llm_new(const struct cca_llm_params *params, struct cca_llm **ret_llm,
                   struct cca_error *reterr)
{
    static const char suffix[] = "/chat/completions";
    static const struct cca_fetch_params fetch_params = {
        .user_agent = LLM_USER_AGENT,
        .idle_connections = LLM_IDLE_CONNS,
        .pool_handles = LLM_POOL_HANDLES,
    };
    static const struct cca_fetch_lane_params lane_params = {.name = "llm"};
    struct cca_llm *llm = NULL;
    const char *lines[5];
    char *auth = NULL;
    size_t base_len, auth_len = 0;
    cca_rc rc;
    int err;

    rc = check_params(params, reterr);
    if (rc != CCA_OK)
        goto out;

    llm = cca_xcalloc(1, sizeof(*llm));
    base_len = strlen(params->base_url);
    while (base_len > 0 && params->base_url[base_len - 1] == '/')
        base_len--;
    llm->url = cca_xmalloc(base_len + sizeof(suffix));
    memcpy(llm->url, params->base_url, base_len);
    memcpy(llm->url + base_len, suffix, sizeof(suffix));
    llm->model = cca_xstrdup(params->model);
    llm->api_key = cca_xstrdup(params->api_key);
    llm->api_key_len = strlen(llm->api_key);
    llm->connect_timeout_ms = params->connect_timeout_ms;
    llm->max_retries = params->max_retries;
    llm->max_response_bytes = params->max_response_bytes;
    llm->backoff_base_ms = params->backoff_base_ms;
    cca_hist_init(&llm->metrics.upstream_seconds, cca_hist_seconds_bounds,
                  cca_hist_seconds_n);

    err = pthread_mutex_init(&llm->lock, NULL);
    if (err != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: mutex: %s", strerror(err));
        goto out;
    }
    llm->lock_ok = true;

    auth_len = strlen("Authorization: Bearer ") + llm->api_key_len + 1;
    auth = cca_xmalloc(auth_len);
    snprintf(auth, auth_len, "Authorization: Bearer %s", llm->api_key);
    lines[0] = "Content-Type: application/json";
    lines[1] = "Accept: application/json";
    lines[2] = "Expect:"; /* no "Expect: 100-continue" round trip for large prompts */
    lines[3] = auth;
    lines[4] = NULL;
    rc = cca_fetch_headers_new(lines, &llm->headers, NULL);
    if (rc != CCA_OK) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: request headers refused");
        goto out;
    }

    if (params->fetch != NULL) {
        llm->fetch = params->fetch;
    } else {
        rc = cca_fetch_new(&fetch_params, &llm->fetch, reterr);
        if (rc != CCA_OK)
            goto out;
        llm->own_fetch = true;
    }
    rc = cca_fetch_lane_new(llm->fetch, &lane_params, &llm->lane);
    if (rc != CCA_OK) {
        rc = cca_error_set(reterr, rc, "llm: no lane on the HTTP client: %s",
                           cca_strerror(rc));
        goto out;
    }

    *ret_llm = llm;
    llm = NULL;
    rc = CCA_OK;

out:
    if (auth != NULL) {
        explicit_bzero(auth, auth_len);
        free(auth);
    }
    llm_destroy(llm);
    return rc;
}

void cca_llm_free(struct cca_llm *llm)
{
    /* pending calls end with CCA_ERR_UNAVAILABLE inside, before this returns */
    llm_destroy(llm);
}

cca_rc cca_llm_submit(struct cca_llm *llm, struct cca_llm_request *req,
                      cca_llm_done_fn done, void *ctx)
{
    json_t *messages = req != NULL ? req->messages : NULL;
    json_t *body = NULL;
    struct call *call = NULL;
    struct cca_fetch_request fr;
    char *s = NULL;
    cca_rc rc;

    if (req != NULL)
        req->messages = NULL; /* stolen whatever happens */
    if (llm == NULL || req == NULL || done == NULL || !json_is_array(messages) ||
        req->max_tokens <= 0 || !isfinite(req->temperature) || req->temperature < 0 ||
        req->temperature > 2) {
        rc = CCA_ERR_INVALID;
        goto out;
    }

    body = json_object();
    json_object_set_new(body, "model", json_string(llm->model));
    json_object_set_new(body, "messages", messages);
    messages = NULL;
    json_object_set_new(body, "temperature", json_real(req->temperature));
    json_object_set_new(body, "max_tokens", json_integer(req->max_tokens));
    if (req->json_mode)
        json_object_set_new(body, "response_format",
                            json_pack("{s:s}", "type", "json_object"));
    s = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (s == NULL) {
        /* e.g. a message string that is not valid UTF-8 was forced in */
        rc = CCA_ERR_INVALID;
        goto out;
    }

    call = cca_xcalloc(1, sizeof(*call));
    call->llm = llm;
    call->done = done;
    call->ctx = ctx;
    fr = (struct cca_fetch_request){
        .method = "POST",
        .url = llm->url,
        .headers = llm->headers,
        .body = s,
        .body_len = strlen(s),
        .lane = llm->lane,
        .connect_timeout_ms = llm->connect_timeout_ms,
        .deadline_ms = req->deadline_ms,
        .max_retries = llm->max_retries,
        .backoff_base_ms = llm->backoff_base_ms,
        .max_response_bytes = llm->max_response_bytes,
        .classify = classify,
        .classify_ctx = llm,
    };
    s = NULL; /* stolen by cca_fetch_start */
    rc = cca_fetch_start(llm->fetch, &fr, on_fetch_done, call, NULL);
    if (rc != CCA_OK)
        goto out;
    call = NULL;

out:
    free(call);
    free(s);
    json_decref(body);
    json_decref(messages);
    return rc;
}

void cca_llm_get_status(struct cca_llm *llm, struct cca_llm_status *ret)
{
    pthread_mutex_lock(&llm->lock);
    *ret = llm->status;
    pthread_mutex_unlock(&llm->lock);
}

const char *cca_llm_outcome_name(enum cca_llm_outcome outcome)
{
    static const char *const names[CCA_LLM_OUTCOME_COUNT] = {
        [CCA_LLM_OK] = "ok",
        [CCA_LLM_TIMEOUT] = "timeout",
        [CCA_LLM_RATE_LIMITED] = "rate_limited",
        [CCA_LLM_SERVER_ERROR] = "server_error",
        [CCA_LLM_CLIENT_ERROR] = "client_error",
        [CCA_LLM_AUTH_ERROR] = "auth_error",
        [CCA_LLM_BAD_RESPONSE] = "bad_response",
        [CCA_LLM_CONNECT_ERROR] = "connect_error",
        [CCA_LLM_CANCELLED] = "cancelled",
    };

    if ((unsigned)outcome >= CCA_LLM_OUTCOME_COUNT)
        return "unknown";
    return names[outcome];
}

const struct cca_llm_metrics *cca_llm_get_metrics(const struct cca_llm *llm)
{
    return &llm->metrics;
}

void cca_llm_result_cleanup(struct cca_llm_result *result)
{
    if (result == NULL)
        return;
    free(result->content);
    result->content = NULL;
}
