/* SPDX-License-Identifier: MIT */
#ifndef CCA_FETCH_H
#define CCA_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cca/common.h"

/*
 * Generic asynchronous HTTP client (HTTP/1.1 and HTTP/2 over libcurl; HTTP
 * semantics: RFC 9110, message syntax: RFC 9112). One thread owns a curl multi
 * handle, an epoll set, a timer heap and a pool of easy handles, and drives every
 * request with the curl socket interface (curl_multi_socket_action,
 * https://curl.se/libcurl/c/curl_multi_socket_action.html): the work per wakeup
 * grows with the sockets that are ready, not with the requests in flight. Callers
 * never block on the network: cca_fetch_start queues, a callback reports the end.
 *
 * The client serves several independent users (the LLM client, a long poll) at
 * once. Each user submits on its own lane (struct cca_fetch_lane): a lane may cap
 * its transfers in flight and queues the rest itself, so one user's backlog never
 * waits in front of another's requests; nothing is capped across lanes (no global
 * or per-host connection limit a long-held request could occupy). How the loop
 * keeps one user from starving another: docs/internals/fetch.md.
 *
 * Per request: an absolute deadline (retries and lane queueing included), an
 * optional per-attempt timeout, retries with full-jitter exponential backoff or
 * the wait the server asks for (Retry-After, RFC 9110 section 10.2.3), a cap on
 * the response body, and a classifier that decides which attempts are retried.
 */

struct cca_fetch;
struct cca_fetch_lane;
struct cca_fetch_headers;

/* deadline_ms value meaning "no deadline" (then attempt_timeout_ms must be > 0) */
#define CCA_FETCH_NO_DEADLINE INT64_MAX
/* upper bound of cca_fetch_request.max_retries */
#define CCA_FETCH_MAX_RETRIES 100
/* bytes kept of a non-2xx response body (its head; the rest is read and dropped) */
#define CCA_FETCH_ERRBODY_KEEP 4096
/* sizes of the header values and error text in results, NUL included */
#define CCA_FETCH_RETRY_AFTER_LEN    64
#define CCA_FETCH_RETRY_AFTER_MS_LEN 32
#define CCA_FETCH_ERROR_LEN          256

/*
 * struct cca_fetch_params - settings of one client; zero fields take the default.
 * @user_agent:       "User-Agent" of every request, copied; NULL: "cca/0.1".
 * @idle_connections: upstream connections kept open while idle, beyond those in
 *                    use (the cache follows the load, see fetch.md); 0: 64.
 * @pool_handles:     idle easy handles kept for reuse; 0: 64.
 */
struct cca_fetch_params {
    const char *user_agent;
    unsigned idle_connections;
    unsigned pool_handles;
};

/*
 * struct cca_fetch_lane_params - one user of a client.
 * @name:          for metrics and debugging, copied, at most 31 bytes kept; NULL: "".
 * @max_in_flight: transfers of this lane running at once; more wait in the lane's
 *                 own FIFO (their deadline still counts). 0: no cap.
 */
struct cca_fetch_lane_params {
    const char *name;
    unsigned max_in_flight;
};

/*
 * enum cca_fetch_error - how one attempt's transfer ended.
 * NONE:      a whole HTTP response arrived, whatever its status.
 * CONNECT:   connection refused, host or proxy name not resolved.
 * TIMEOUT:   the connect timeout or the attempt timeout, short of the deadline.
 * DEADLINE:  the request's deadline cut the transfer (never retried).
 * TRANSFER:  a transient failure after connecting: send or receive error, reset,
 *            a body cut short, nothing received, an HTTP/2 stream error, a TLS
 *            handshake failure.
 * TOO_LARGE: a 2xx body longer than max_response_bytes (never retried).
 * OTHER:     any other curl failure (bad URL, TLS certificate, ...).
 * LOCAL:     the attempt could not be started here (curl setup failed); such an
 *            attempt is not shown to the classifier and never retried.
 */
enum cca_fetch_error {
    CCA_FETCH_E_NONE,
    CCA_FETCH_E_CONNECT,
    CCA_FETCH_E_TIMEOUT,
    CCA_FETCH_E_DEADLINE,
    CCA_FETCH_E_TRANSFER,
    CCA_FETCH_E_TOO_LARGE,
    CCA_FETCH_E_OTHER,
    CCA_FETCH_E_LOCAL,
    CCA_FETCH_E__COUNT
};

/*
 * enum cca_fetch_end - why a request ended (cca_fetch_result.end), with its rc.
 * FINAL:     the last attempt was final (the classifier said so, or it could not
 *            be retried): CCA_OK when it got a whole response (any status; the
 *            caller judges the status), else CCA_ERR_UPSTREAM.
 * EXHAUSTED: the last attempt was to be retried, but max_retries were used:
 *            CCA_ERR_UPSTREAM.
 * NO_TIME:   the last attempt was to be retried, but the wait before the retry
 *            would reach the deadline: CCA_ERR_TIMEOUT (at once, not at the deadline).
 * DEADLINE:  the deadline cut the running attempt: CCA_ERR_TIMEOUT.
 * LATE:      the deadline passed before an attempt could start (attempts == 0:
 *            before the first; else before a retry), or while the request waited
 *            in its lane's queue: CCA_ERR_TIMEOUT.
 * CANCELLED: cca_fetch_cancel, cca_fetch_lane_free or cca_fetch_free:
 *            CCA_ERR_UNAVAILABLE.
 */
enum cca_fetch_end {
    CCA_FETCH_END_FINAL,
    CCA_FETCH_END_EXHAUSTED,
    CCA_FETCH_END_NO_TIME,
    CCA_FETCH_END_DEADLINE,
    CCA_FETCH_END_LATE,
    CCA_FETCH_END_CANCELLED,
    CCA_FETCH_END__COUNT
};

/*
 * struct cca_fetch_attempt - one attempt, as the classifier sees it. Every pointer
 * is borrowed for the call; strings are NUL-terminated, "" when absent.
 * @number:         1 for the first attempt.
 * @error:          how the transfer ended (never CCA_FETCH_E_LOCAL here).
 * @status:         HTTP status of the response, 0 if no status line arrived.
 * @body, @body_len: a 2xx body (at most max_response_bytes) or the first
 *                  CCA_FETCH_ERRBODY_KEEP bytes of any other; NUL-terminated.
 * @retry_after:    the "Retry-After" header value (RFC 9110 section 10.2.3).
 * @retry_after_ms: the "retry-after-ms" header value (OpenAI's, in ms).
 * @error_text:     curl's error message when @error is not NONE; may name the
 *                  host, never the request body.
 * @duration_ms, @duration_us: wall time of the transfer (monotonic clock).
 */
struct cca_fetch_attempt {
    unsigned number;
    enum cca_fetch_error error;
    long status;
    const char *body;
    size_t body_len;
    const char *retry_after;
    const char *retry_after_ms;
    const char *error_text;
    int64_t duration_ms;
    int64_t duration_us;
};

/*
 * enum cca_fetch_verdict - the classifier's answer for one attempt.
 * FINAL: end the request with this attempt.
 * RETRY: try again, after Retry-After / retry-after-ms when the response carries
 *        one, else after a full-jitter backoff; within max_retries and the deadline.
 */
enum cca_fetch_verdict {
    CCA_FETCH_FINAL,
    CCA_FETCH_RETRY,
};

/*
 * cca_fetch_classify_fn - called on the fetch thread after every attempt whose
 * transfer ran, before the request goes on: the place to judge a response and to
 * count attempts. Its verdict is ignored (final) for DEADLINE and TOO_LARGE.
 * Must not block for long: it delays every request of every lane. May call
 * cca_fetch_start and cca_fetch_cancel, nothing that waits (no *_free).
 */
typedef enum cca_fetch_verdict (*cca_fetch_classify_fn)(
    void *ctx, const struct cca_fetch_attempt *attempt);

/*
 * cca_fetch_classify_default - the usual policy: RETRY for CONNECT, TIMEOUT and
 * TRANSFER failures and for the statuses 408 (RFC 9110 section 15.5.9), 429
 * (RFC 6585 section 4) and 5xx (RFC 9110 section 15.6); FINAL for everything else
 * (2xx, 3xx, other 4xx, OTHER failures). Ignores @ctx. Pure, thread-safe.
 */
enum cca_fetch_verdict
cca_fetch_classify_default(void *ctx, const struct cca_fetch_attempt *attempt);

/*
 * struct cca_fetch_result - how a request ended, with its last attempt.
 * @rc, @end:        see enum cca_fetch_end.
 * @attempts:        attempts made (0 when the deadline or a cancel came first).
 * @upstream_ms:     wall time spent in transfers, summed over attempts (backoff and
 *                   queueing excluded).
 * @status, @error, @error_text, @retry_after, @retry_after_ms: of the last attempt
 *                   (0, CCA_FETCH_E_NONE and "" when there was none). For LOCAL,
 *                   @error_text says what failed ("curl setup failed: ...").
 * @body, @body_len: the last attempt's body as in struct cca_fetch_attempt, owned
 *                   by the client: move it out (set @body to NULL) to keep it,
 *                   then free() it. NULL when no attempt ran.
 * @last_ms, @last_us: duration of the last attempt's transfer.
 */
struct cca_fetch_result {
    cca_rc rc;
    enum cca_fetch_end end;
    unsigned attempts;
    int64_t upstream_ms;
    long status;
    enum cca_fetch_error error;
    char error_text[CCA_FETCH_ERROR_LEN];
    char retry_after[CCA_FETCH_RETRY_AFTER_LEN];
    char retry_after_ms[CCA_FETCH_RETRY_AFTER_MS_LEN];
    char *body;
    size_t body_len;
    int64_t last_ms;
    int64_t last_us;
};

/*
 * cca_fetch_done_fn - called exactly once per request that cca_fetch_start
 * accepted, always on the fetch thread, never inside cca_fetch_start. @result is
 * borrowed for the call (take ->body as described above). Must not block for long
 * (see cca_fetch_classify_fn); may call cca_fetch_start and cca_fetch_cancel, not
 * cca_fetch_lane_free or cca_fetch_free.
 */
typedef void (*cca_fetch_done_fn)(void *ctx, struct cca_fetch_result *result);

/*
 * struct cca_fetch_request - one request; read by cca_fetch_start.
 * @method:       "GET", "POST", ... (1..15 upper-case letters), copied; NULL: POST
 *                when there is a body, else GET. GET and HEAD take no body.
 * @url:          absolute http:// or https:// URL without whitespace, copied.
 * @headers:      extra request header lines, borrowed: must stay valid until @done
 *                has returned; NULL: none.
 * @body:         request body, STOLEN by cca_fetch_start whatever it returns (it is
 *                set to NULL and later freed with free()); NULL: no body.
 * @body_len:     bytes of @body.
 * @lane:         borrowed; NULL: the client's default lane (no cap).
 * @connect_timeout_ms: per attempt, > 0; 0: curl's default (300 s). Never past
 *                the deadline.
 * @attempt_timeout_ms: whole transfer of one attempt, > 0; 0: only the deadline
 *                bounds it.
 * @deadline_ms:  cca_time_mono_ms() instant after which no attempt, backoff or
 *                queueing may run; the request ends by then (plus the fetch
 *                thread's latency). CCA_FETCH_NO_DEADLINE: none.
 * @max_retries:  retries after the first attempt, 0..CCA_FETCH_MAX_RETRIES.
 * @backoff_base_ms: first backoff, >= 0; the n-th retry waits a uniform random
 *                time in [0, min(60 s, base * 2^(n-1))] ("full jitter").
 * @max_response_bytes: cap of a 2xx body, 1..2^31-1; a longer one ends the
 *                request (CCA_FETCH_E_TOO_LARGE).
 * @classify:     which attempts are retried; NULL: cca_fetch_classify_default.
 * @classify_ctx: passed to @classify.
 */
struct cca_fetch_request {
    const char *method;
    const char *url;
    const struct cca_fetch_headers *headers;
    char *body;
    size_t body_len;
    struct cca_fetch_lane *lane;
    long connect_timeout_ms;
    long attempt_timeout_ms;
    int64_t deadline_ms;
    unsigned max_retries;
    long backoff_base_ms;
    size_t max_response_bytes;
    cca_fetch_classify_fn classify;
    void *classify_ctx;
};

/*
 * struct cca_fetch_lane_metrics - counters of one lane since it was made,
 * written on the fetch thread with relaxed atomics (each one is monotonic or a
 * gauge; read them with atomic loads).
 * @ended:    finished requests by enum cca_fetch_end.
 * @attempts: transfers started (every attempt that reached curl).
 * @retries:  attempts after the first, over all requests.
 * @running:  transfers running now (gauge).
 * @waiting:  requests waiting for a slot of the lane (gauge).
 */
struct cca_fetch_lane_metrics {
    _Atomic uint64_t ended[CCA_FETCH_END__COUNT];
    _Atomic uint64_t attempts;
    _Atomic uint64_t retries;
    _Atomic int64_t running;
    _Atomic int64_t waiting;
};

/*
 * cca_fetch_new - copy @params (NULL: all defaults) and start the fetch thread,
 * which takes no signals. curl_global_init must have been called.
 * Returns CCA_OK and a new client in *ret_fetch, or CCA_ERR_INTERNAL (curl,
 * epoll, eventfd or thread start failed), detail in @reterr (may be NULL).
 * Thread-safe.
 */
cca_rc cca_fetch_new(const struct cca_fetch_params *params, struct cca_fetch **ret_fetch,
                     struct cca_error *reterr) CCA_WUR;

/*
 * cca_fetch_free - stop the thread; requests still pending (running, waiting to
 * retry, queued) end with CANCELLED, their @done called before this returns.
 * Frees the lanes not freed yet (their pointers die with it). Accepts NULL. Any
 * thread but a callback of @fetch, once, after every other call on @fetch and
 * its lanes has returned.
 */
void cca_fetch_free(struct cca_fetch *fetch);

/*
 * cca_fetch_lane_new - add a lane (a user) to @fetch.
 * Returns CCA_OK and the lane in *ret_lane: owned by @fetch, valid until
 * cca_fetch_lane_free or cca_fetch_free; CCA_ERR_INVALID when @fetch or @params is
 * NULL; CCA_ERR_UNAVAILABLE when @fetch is stopping. Thread-safe.
 */
cca_rc cca_fetch_lane_new(struct cca_fetch *fetch,
                          const struct cca_fetch_lane_params *params,
                          struct cca_fetch_lane **ret_lane) CCA_WUR;

/*
 * cca_fetch_lane_free - close @lane: new requests on it are refused
 * (CCA_ERR_UNAVAILABLE), its pending ones end with CANCELLED, and this returns
 * once all their @done callbacks have returned; then frees it. Other lanes go on
 * undisturbed. Accepts NULL. Thread-safe, but not from a callback of its client
 * (it waits for that thread).
 */
void cca_fetch_lane_free(struct cca_fetch_lane *lane);

/*
 * cca_fetch_lane_get_metrics - live counters of @lane. Borrowed, valid until the
 * lane is freed. Thread-safe.
 */
const struct cca_fetch_lane_metrics *
cca_fetch_lane_get_metrics(const struct cca_fetch_lane *lane);

/*
 * cca_fetch_headers_new - an immutable set of request header lines ("Name: value";
 * "Name:" removes a header curl would add, e.g. "Expect:"), copied from the
 * NULL-terminated array @lines. Shared by any number of requests at once.
 * Returns CCA_OK and a new set in *ret_headers (free with cca_fetch_headers_free),
 * or CCA_ERR_INVALID when a line has no ':' before its value, starts with one, or
 * holds a CR or LF (header injection), detail in @reterr without the line's value.
 * Thread-safe.
 */
cca_rc cca_fetch_headers_new(const char *const *lines,
                             struct cca_fetch_headers **ret_headers,
                             struct cca_error *reterr) CCA_WUR;

/*
 * cca_fetch_headers_free - wipe (the lines may hold secrets) and free @headers.
 * Accepts NULL. Any thread, once no request uses it any more (every @done of a
 * request that borrowed it has returned).
 */
void cca_fetch_headers_free(struct cca_fetch_headers *headers);

/*
 * cca_fetch_start - queue @req on its lane; @req->body is stolen whatever happens
 * (set to NULL). @done is called later, on the fetch thread, with the result.
 * Thread-safe, also from a callback.
 * Returns CCA_OK and the request's id (> 0, unique per client) in *ret_id when
 * @ret_id is not NULL; CCA_ERR_INVALID when @fetch, @req, @done or @req->url is
 * NULL or a field breaks its rule above, or the request would be unbounded (no
 * deadline and no attempt timeout); CCA_ERR_UNAVAILABLE when the client or the
 * lane is shutting down. On any error @done is NOT called. A deadline already
 * past is not an error: the request ends with LATE and attempts == 0.
 */
cca_rc cca_fetch_start(struct cca_fetch *fetch, struct cca_fetch_request *req,
                       cca_fetch_done_fn done, void *ctx, uint64_t *ret_id) CCA_WUR;

/*
 * cca_fetch_cancel - end request @id with CANCELLED as soon as the fetch thread
 * gets to it, unless it ends first; @done is still called exactly once either
 * way, so its context must live until then. An id that already ended, or was
 * never given, is ignored. Thread-safe, also from a callback.
 */
void cca_fetch_cancel(struct cca_fetch *fetch, uint64_t id);

/*
 * cca_fetch_parse_retry_after - the wait a response asks for, in ms: the
 * "retry-after-ms" header value @ms_value (OpenAI's extension, may be NULL or "")
 * wins, else "Retry-After" @value as delta-seconds or an HTTP-date (RFC 9110
 * section 10.2.3, IMF-fixdate and the obsolete RFC 850 and asctime forms)
 * relative to @now (unix seconds). Capped at 1 day; a date in the past is 0.
 * Returns -1 when both are absent or malformed. Pure, thread-safe.
 */
int64_t cca_fetch_parse_retry_after(const char *value, const char *ms_value, int64_t now);

/*
 * cca_fetch_end_name - "final", "exhausted", "no_time", "deadline", "late",
 * "cancelled": a static string; "unknown" for a bad value. Thread-safe.
 */
const char *cca_fetch_end_name(enum cca_fetch_end end);

/*
 * cca_fetch_result_cleanup - free ->body (when the caller took the result's body
 * buffer into a copy of the struct) and zero it. Accepts NULL.
 */
void cca_fetch_result_cleanup(struct cca_fetch_result *result);

#endif
