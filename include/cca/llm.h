/* SPDX-License-Identifier: MIT */
#ifndef CCA_LLM_H
#define CCA_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/metrics.h"

/*
 * Asynchronous LLM client for the OpenAI Chat Completions API
 * (POST {base_url}/chat/completions,
 * https://platform.openai.com/docs/api-reference/chat/create; schema: OpenAI's
 * published OpenAPI document, CreateChatCompletionRequest/Response). Calls run on
 * the generic asynchronous HTTP client (cca/fetch.h: one thread, curl multi on
 * epoll, retries, deadlines); callers never block on the network. This module
 * builds the requests, parses the answers, classifies failures the way the OpenAI
 * API defines them and keeps the cca_llm_* metrics. Retry policy: see src/llm.c.
 */

struct cca_fetch;

/*
 * struct cca_llm_params - settings of one client.
 * @fetch: the HTTP client to run the calls on, borrowed (it must outlive the LLM
 *         client), where they get a lane of their own. NULL: cca_llm_new starts
 *         a private one (one thread) and cca_llm_free stops it.
 */
struct cca_llm_params {
    const char *base_url;      /* e.g. "https://api.openai.com/v1"; copied */
    const char *api_key;       /* sent as "Authorization: Bearer"; copied; never logged */
    const char *model;         /* e.g. "gpt-4o-mini"; copied */
    long connect_timeout_ms;   /* per attempt, > 0 */
    unsigned max_retries;      /* retries after the first attempt (429, 5xx, timeouts) */
    size_t max_response_bytes; /* a larger body fails the attempt (CCA_ERR_UPSTREAM) */
    long backoff_base_ms;      /* first backoff; doubles per retry, full jitter */
    struct cca_fetch *fetch;   /* see above; NULL: a private one */
};

/*
 * struct cca_llm_request - one chat completion call.
 * @messages:    JSON array of {"role","content"} objects. Stolen by cca_llm_submit.
 * @temperature: 0..2.
 * @max_tokens:  > 0, sent as "max_tokens".
 * @json_mode:   true adds "response_format": {"type": "json_object"}.
 * @deadline_ms: cca_time_mono_ms() value after which no attempt or backoff may
 *               run; the whole call, retries included, ends by then.
 */
struct cca_llm_request {
    json_t *messages;
    double temperature;
    long max_tokens;
    bool json_mode;
    int64_t deadline_ms;
};

/*
 * struct cca_llm_result - outcome of one call (all attempts).
 * @rc:          CCA_OK, CCA_ERR_TIMEOUT (deadline), CCA_ERR_UPSTREAM (HTTP
 *               error, malformed body, no choices, too large, connect failure),
 *               CCA_ERR_UNAVAILABLE (client shutting down).
 * @content:     choices[0].message.content on success (new, caller frees via
 *               cca_llm_result_cleanup), NULL otherwise.
 * @prompt_tokens, @completion_tokens, @total_tokens: from "usage" (0 if absent).
 * @http_status: status of the last attempt (0 if none got a response).
 * @attempts:    attempts made (>= 1 unless the deadline had already passed).
 * @upstream_ms: wall time spent in attempts (excluding backoff waits).
 * @error:       short reason on failure, no secrets ("" on success).
 */
struct cca_llm_result {
    cca_rc rc;
    char *content;
    long prompt_tokens;
    long completion_tokens;
    long total_tokens;
    long http_status;
    unsigned attempts;
    int64_t upstream_ms;
    char error[160];
};

/*
 * cca_llm_done_fn - completion callback, called exactly once per request that
 * cca_llm_submit accepted (returned CCA_OK), always on the fetch thread, never
 * on the submitting thread. @result is borrowed for the call: move ->content
 * out (set it to NULL) to keep it. Must not block for long. It may call
 * cca_llm_submit and cca_llm_get_status, but not cca_llm_free.
 */
typedef void (*cca_llm_done_fn)(void *ctx, struct cca_llm_result *result);

/*
 * struct cca_llm_status - health snapshot.
 * @calls, @failures: finished calls, and those with rc != CCA_OK, since start.
 * @last_http_status: of the last finished attempt (0: no HTTP response).
 * @auth_failed:      the last attempt that got an HTTP response got 401 or 403.
 * @last_latency_ms:  upstream time of the last successful attempt.
 * @last_error:       reason of the last failed call, "" if none; no secrets.
 */
struct cca_llm_status {
    uint64_t calls;
    uint64_t failures;
    long last_http_status;
    bool auth_failed;
    int64_t last_latency_ms;
    char last_error[160];
};

struct cca_llm;

/*
 * cca_llm_new - copy @params and start the client: a private fetch thread when
 * @params->fetch is NULL, else a lane on that client.
 * Returns CCA_OK and a new client in *ret_llm, or CCA_ERR_INVALID (bad params),
 * CCA_ERR_INTERNAL (curl or thread start failed), CCA_ERR_UNAVAILABLE (the shared
 * fetch client is stopping), detail in @reterr. curl_global_init must have been
 * called.
 */
cca_rc cca_llm_new(const struct cca_llm_params *params, struct cca_llm **ret_llm,
                   struct cca_error *reterr) CCA_WUR;

/*
 * cca_llm_free - stop the client (its private fetch thread, or its lane on a
 * shared one, which other users keep); calls still pending complete with
 * CCA_ERR_UNAVAILABLE before it returns. Accepts NULL. Not to be called from a
 * completion callback.
 */
void cca_llm_free(struct cca_llm *llm);

/*
 * cca_llm_submit - queue @req; @req->messages is stolen whatever happens (it
 * is set to NULL). The request body is serialised here, on the caller's thread.
 * @done is called later with the result. Thread-safe.
 * Returns CCA_OK; CCA_ERR_INVALID when @llm or @done is NULL, @req->messages is
 * not an array, @req->max_tokens <= 0 or @req->temperature is outside 0..2;
 * CCA_ERR_UNAVAILABLE when the client is shutting down. On any error @done is
 * NOT called. A deadline already past is not an error: the call completes
 * with CCA_ERR_TIMEOUT and attempts == 0.
 */
cca_rc cca_llm_submit(struct cca_llm *llm, struct cca_llm_request *req,
                      cca_llm_done_fn done, void *ctx) CCA_WUR;

/* cca_llm_get_status - copy the health snapshot into *ret. Thread-safe. */
void cca_llm_get_status(struct cca_llm *llm, struct cca_llm_status *ret);

/*
 * enum cca_llm_outcome - how a call (all its attempts) ended, for metrics:
 * ok; timeout (the turn's deadline); rate_limited (last attempt 429);
 * server_error (5xx); client_error (other 4xx, never retried); auth_error
 * (401/403, never retried); bad_response (malformed JSON, no choices or
 * content, larger than max_response_bytes); connect_error (refused,
 * unresolvable host, TLS, reset); cancelled (client shutting down).
 */
enum cca_llm_outcome {
    CCA_LLM_OK,
    CCA_LLM_TIMEOUT,
    CCA_LLM_RATE_LIMITED,
    CCA_LLM_SERVER_ERROR,
    CCA_LLM_CLIENT_ERROR,
    CCA_LLM_AUTH_ERROR,
    CCA_LLM_BAD_RESPONSE,
    CCA_LLM_CONNECT_ERROR,
    CCA_LLM_CANCELLED,
    CCA_LLM_OUTCOME_COUNT
};

/* cca_llm_outcome_name - "ok", "timeout", ... (the metric label). Static string. */
const char *cca_llm_outcome_name(enum cca_llm_outcome outcome);

/*
 * struct cca_llm_metrics - counters since start, updated on the fetch thread.
 * @calls:             finished calls by final outcome.
 * @retries:           attempts after the first, over all calls.
 * @prompt_tokens, @completion_tokens: summed "usage" of successful calls.
 * @upstream_seconds:  duration of every attempt that got an HTTP response.
 */
struct cca_llm_metrics {
    _Atomic uint64_t calls[CCA_LLM_OUTCOME_COUNT];
    _Atomic uint64_t retries;
    _Atomic uint64_t prompt_tokens;
    _Atomic uint64_t completion_tokens;
    struct cca_hist upstream_seconds;
};

/*
 * cca_llm_get_metrics - the live counters of @llm. Borrowed, valid until
 * cca_llm_free; read them with atomic loads. Thread-safe.
 */
const struct cca_llm_metrics *cca_llm_get_metrics(const struct cca_llm *llm);

/*
 * cca_llm_parse_response - parse the body of a 2xx chat completion response
 * (CreateChatCompletionResponse in the OpenAI API reference): take
 * choices[0].message.content and the "usage" token counts. @body need not be
 * NUL-terminated; @len bytes. Returns CCA_OK with ret->content (new) and the
 * token fields set, or CCA_ERR_UPSTREAM with a short reason in ret->error
 * (malformed JSON, not an object, no choices, no content, model refusal).
 * Pure function, thread-safe; never logs.
 */
cca_rc cca_llm_parse_response(const char *body, size_t len, struct cca_llm_result *ret);

/*
 * cca_llm_error_reason - "HTTP <status>" plus " (<code>)" when an OpenAI error
 * body ({"error": {"code" or "type"}}) carries a short identifier ([A-Za-z0-9_.-],
 * at most 40 bytes); nothing else from the body is copied, so no echoed secret
 * can leak. Writes at most @size bytes to @out (NUL-terminated). Thread-safe.
 */
void cca_llm_error_reason(long status, const char *body, size_t len, char *out,
                          size_t size);

/*
 * cca_llm_parse_retry_after - the wait a response asks for, in ms: the
 * "retry-after-ms" header value @ms_value (OpenAI's, may be NULL or "") wins,
 * else "Retry-After" @value as delta-seconds or an HTTP-date (RFC 9110
 * section 10.2.3) relative to @now (unix seconds). Capped at 1 day; a date in
 * the past is 0. Returns -1 when both are absent or malformed. Thread-safe.
 * The same function as cca_fetch_parse_retry_after, which every retry applies.
 */
int64_t cca_llm_parse_retry_after(const char *value, const char *ms_value, int64_t now);

/* cca_llm_result_cleanup - free ->content and zero it. Accepts NULL. */
void cca_llm_result_cleanup(struct cca_llm_result *result);

#endif
