/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous OpenAI Chat Completions client (contract: include/cca/llm.h).
 *
 * One thread ("LLM thread") owns a curl multi handle and drives every call.
 * It runs its own epoll loop with the curl socket interface
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION + curl_multi_socket_action),
 * so the work per wakeup is proportional to the sockets that are ready, not to
 * the number of transfers in flight: curl_multi_poll + curl_multi_perform walk
 * every easy handle on every call, which is O(n) per event at 10,000 calls.
 * An eventfd in the same epoll set plays the role of curl_multi_wakeup.
 *
 * Life of a call (struct call):
 *   cca_llm_submit (any thread) serialises the request body and pushes the call
 *   on a mutex-protected FIFO, then signals the eventfd;
 *   the LLM thread takes the FIFO and starts an attempt (an easy handle added
 *   to the multi handle, CURLOPT_TIMEOUT_MS = time left to the deadline);
 *   when curl reports the transfer done, the attempt is classified:
 *     2xx with a usable body        -> CCA_OK
 *     429, 408, 5xx, connect error,
 *     attempt timeout, reset, etc.  -> retry after a backoff, if allowed
 *     anything else                 -> CCA_ERR_UPSTREAM, not retried
 *   a call waiting for its backoff sits in a binary min-heap keyed on the time
 *   of its next attempt (O(log n) per insert and pop); the loop sleeps until
 *   the earliest of that heap's top and curl's own timer.
 *
 * Retry policy (docs/internals/llm.md should mirror this):
 *   - at most max_retries retries after the first attempt;
 *   - delay = Retry-After (delta-seconds or HTTP-date, RFC 9110 section
 *     10.2.3; OpenAI's non-standard retry-after-ms is honoured too) when the
 *     response carries it, otherwise "full jitter": uniform in
 *     [0, min(60 s, backoff_base_ms * 2^(retry-1))];
 *   - a retry that could not start before the deadline is not scheduled:
 *     the call ends with CCA_ERR_TIMEOUT ("deadline reached");
 *   - retries exhausted: CCA_ERR_UPSTREAM with the last reason;
 *   - an attempt cut by the deadline itself: CCA_ERR_TIMEOUT;
 *   - malformed JSON, a non-object, no choices or no string content in a 2xx
 *     body is CCA_ERR_UPSTREAM and is NOT retried (a deterministic upstream
 *     answer; a truncated transfer shows up as a curl error and is retried);
 *   - a body over max_response_bytes is CCA_ERR_UPSTREAM, not retried.
 *
 * Metrics (struct cca_llm_metrics): finish() counts every call once by its
 * outcome (the cause of its last failed attempt, see call_outcome), its
 * retries and, on success, its tokens; attempt_done() observes the duration
 * of every attempt that got an HTTP response. Relaxed atomics: readers only
 * need each counter to be monotonic.
 *
 * The body parsers are pure functions (cca_llm_parse_response,
 * cca_llm_error_reason, cca_llm_parse_retry_after) so they can be unit-tested
 * and fuzzed without a network.
 *
 * Nothing here logs. Error strings are short, never contain the request or
 * response body, and are scrubbed of the API key as a last line of defence.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cca/common.h"
#include "cca/llm.h"
#include "cca/mem.h"

#define LLM_MAX_EVENTS 256
/*
 * Idle easy handles kept for reuse. Each one keeps its receive buffer and
 * about 5 KiB of state; 512 of them were 11 MiB of RSS after a burst (bench
 * S4, heaptrack) for a saving of one calloc per call.
 */
#define LLM_POOL_MAX 64
/*
 * Receive buffer of each easy handle (CURLOPT_BUFFERSIZE; curl 7.88 allocates
 * it when a transfer starts and keeps it for the handle's life; default 16 KiB).
 * A Chat Completions answer is a few KB of headers and JSON, read in one or two
 * recv() of 4 KiB; at 2,000 calls in flight 16 KiB buffers were 31 MiB, the
 * largest single owner of the bench S4 peak (heaptrack).
 */
#define LLM_RECV_BUFFER 4096L
/*
 * Idle upstream connections kept beyond those in use (see set_max_connects).
 * curl's default cache keeps up to 4 per easy handle ever added, so a burst of
 * 9,850 calls left ~6,000 idle connections open for curl's 118 s idle age:
 * their descriptors and ~2 KiB of heap each (bench S4, heaptrack).
 */
#define LLM_IDLE_CONNS      64
#define LLM_BACKOFF_CAP_MS  60000    /* upper bound of one jittered backoff */
#define LLM_RETRY_AFTER_MAX 86400000 /* Retry-After values are capped at 1 day */
#define LLM_MAX_RETRIES     100
#define LLM_ERRBODY_KEEP    4096 /* bytes of a non-2xx body kept for "code" */
#define LLM_DEADLINE_SLACK  50   /* ms: a timeout this close to it is the deadline */

struct call {
    struct cca_llm *llm;
    struct call *next_q;              /* submit FIFO */
    struct call *prev_act, *next_act; /* in-flight list (shutdown only) */
    char *body;                       /* serialised request */
    size_t body_len;
    int64_t deadline_ms;
    cca_llm_done_fn done;
    void *ctx;
    CURL *easy; /* non-NULL while an attempt runs */
    int64_t attempt_start_ms;
    int64_t attempt_start_us;
    enum cca_llm_outcome outcome; /* cause of the last failed attempt */
    int64_t timer_at;             /* next attempt, while in the heap */
    char *resp;                   /* response body of this attempt */
    size_t resp_len, resp_cap;
    bool resp_too_large;
    char retry_after[64]; /* raw header values, "" if absent */
    char retry_after_ms[32];
    char errbuf[CURL_ERROR_SIZE];
    struct cca_llm_result result;
};

struct cca_llm {
    /* immutable after cca_llm_new */
    char *url;
    char *model;
    char *api_key;
    size_t api_key_len;
    struct curl_slist *headers;
    long connect_timeout_ms;
    unsigned max_retries;
    size_t max_response_bytes;
    long backoff_base_ms;
    bool pipewait;
    CURLM *multi;
    int epfd;
    int evfd;
    pthread_t thread;
    bool thread_started;

    /* guarded by lock */
    pthread_mutex_t lock;
    bool lock_ok;
    struct call *q_head, *q_tail;
    bool stopping;
    struct cca_llm_status status;

    /* atomics, written on the LLM thread */
    struct cca_llm_metrics metrics;

    /* LLM thread only */
    int64_t curl_timer_at; /* -1: no curl timer */
    struct call **heap;
    size_t heap_len, heap_cap;
    struct call *active;
    size_t active_len; /* calls in llm->active */
    long max_connects; /* last CURLMOPT_MAXCONNECTS set, 0: none yet */
    CURL **pool;
    size_t pool_len;
    uint64_t rng;
};

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_next(struct cca_llm *llm)
{
    /* xorshift64*: only used for backoff jitter */
    uint64_t x = llm->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    llm->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Overwrite every occurrence of the API key in @s with '*'. */
static void redact(const struct cca_llm *llm, char *s)
{
    char *p;

    if (llm->api_key_len == 0)
        return;
    while ((p = strstr(s, llm->api_key)) != NULL)
        memset(p, '*', llm->api_key_len);
}

static void set_error(const struct cca_llm *llm, struct call *c, const char *fmt, ...)
    CCA_PRINTF(3, 4);

static void set_error(const struct cca_llm *llm, struct call *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->result.error, sizeof(c->result.error), fmt, ap);
    va_end(ap);
    redact(llm, c->result.error);
}

static void call_free(struct call *c)
{
    if (c == NULL)
        return;
    free(c->body);
    free(c->resp);
    cca_llm_result_cleanup(&c->result);
    free(c);
}

/* ------------------------------------------------------------ timer heap */

static bool heap_less(const struct call *a, const struct call *b)
{
    return a->timer_at < b->timer_at;
}

static void heap_push(struct cca_llm *llm, struct call *c)
{
    size_t i;

    if (llm->heap_len == llm->heap_cap) {
        llm->heap_cap = llm->heap_cap ? llm->heap_cap * 2 : 64;
        llm->heap = cca_xrealloc(llm->heap, llm->heap_cap * sizeof(*llm->heap));
    }
    i = llm->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (!heap_less(c, llm->heap[parent]))
            break;
        llm->heap[i] = llm->heap[parent];
        i = parent;
    }
    llm->heap[i] = c;
}

static struct call *heap_pop(struct cca_llm *llm)
{
    struct call *top, *last;
    size_t i = 0;

    if (llm->heap_len == 0)
        return NULL;
    top = llm->heap[0];
    last = llm->heap[--llm->heap_len];
    if (llm->heap_len == 0)
        return top;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct call *best = last;

        if (l < llm->heap_len && heap_less(llm->heap[l], best)) {
            m = l;
            best = llm->heap[l];
        }
        if (r < llm->heap_len && heap_less(llm->heap[r], best))
            m = r;
        if (m == i)
            break;
        llm->heap[i] = llm->heap[m];
        i = m;
    }
    llm->heap[i] = last;
    return top;
}

/* ------------------------------------------------------ easy handle pool */

static CURL *pool_get(struct cca_llm *llm)
{
    if (llm->pool_len > 0)
        return llm->pool[--llm->pool_len];
    return curl_easy_init();
}

static void pool_put(struct cca_llm *llm, CURL *easy)
{
    if (easy == NULL)
        return;
    if (llm->pool_len < LLM_POOL_MAX) {
        curl_easy_reset(easy);
        llm->pool[llm->pool_len++] = easy;
        return;
    }
    curl_easy_cleanup(easy);
}

/* ------------------------------------------------------- curl callbacks */

static bool buf_append(struct call *c, const char *p, size_t n, size_t cap)
{
    if (n > cap || c->resp_len > cap - n)
        return false;
    if (c->resp_len + n + 1 > c->resp_cap) {
        size_t want = c->resp_cap ? c->resp_cap : 4096;

        while (want < c->resp_len + n + 1)
            want *= 2;
        if (want > cap + 1)
            want = cap + 1;
        c->resp = cca_xrealloc(c->resp, want);
        c->resp_cap = want;
    }
    memcpy(c->resp + c->resp_len, p, n);
    c->resp_len += n;
    c->resp[c->resp_len] = '\0';
    return true;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct call *c = userdata;
    size_t n = size * nmemb;
    long status = 0;

    (void)curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        /* a 2xx body over the cap aborts the transfer (CURLE_WRITE_ERROR) */
        if (!buf_append(c, ptr, n, c->llm->max_response_bytes)) {
            c->resp_too_large = true;
            return 0;
        }
        return n;
    }
    /* an error body is only read for its "code": keep the head, drop the rest */
    if (c->resp_len < LLM_ERRBODY_KEEP) {
        size_t room = LLM_ERRBODY_KEEP - c->resp_len;

        (void)buf_append(c, ptr, n < room ? n : room, LLM_ERRBODY_KEEP);
    }
    return n;
}

/* Copy the trimmed value of a header line into @dst. */
static void header_value(const char *v, size_t n, char *dst, size_t dstsz)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 &&
           (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    static const char ra[] = "retry-after:";
    static const char ra_ms[] = "retry-after-ms:";
    struct call *c = userdata;
    size_t n = size * nitems;

    /* a new status line (e.g. after "100 Continue") starts a new header set */
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        c->retry_after[0] = '\0';
        c->retry_after_ms[0] = '\0';
    } else if (n > sizeof(ra) - 1 && strncasecmp(buf, ra, sizeof(ra) - 1) == 0) {
        header_value(buf + sizeof(ra) - 1, n - (sizeof(ra) - 1), c->retry_after,
                     sizeof(c->retry_after));
    } else if (n > sizeof(ra_ms) - 1 && strncasecmp(buf, ra_ms, sizeof(ra_ms) - 1) == 0) {
        header_value(buf + sizeof(ra_ms) - 1, n - (sizeof(ra_ms) - 1), c->retry_after_ms,
                     sizeof(c->retry_after_ms));
    }
    return n;
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct cca_llm *llm = userp;
    struct epoll_event ev;

    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        /* the socket may already be closed, which removed it from the set */
        (void)epoll_ctl(llm->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.data.fd = s;
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(llm->epfd, EPOLL_CTL_MOD, s, &ev) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(llm->epfd, EPOLL_CTL_ADD, s, &ev) == 0)
        return 0;
    return -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cca_llm *llm = userp;

    (void)multi;
    /* only record it: curl_multi_socket_action must not be called from here */
    llm->curl_timer_at = timeout_ms < 0 ? -1 : cca_time_mono_ms() + timeout_ms;
    return 0;
}

/* ------------------------------------------------------------ call end */

/*
 * The metric label of a call that ended with @rc (see enum cca_llm_outcome).
 * A failed call is labelled by the cause of its last failed attempt, kept in
 * c->outcome: when the deadline stopped a retry after a 429, that is
 * "rate_limited"; "timeout" when the deadline cut an attempt in flight or came
 * before the first one.
 */
static enum cca_llm_outcome call_outcome(const struct call *c, cca_rc rc)
{
    if (rc == CCA_OK)
        return CCA_LLM_OK;
    if (rc == CCA_ERR_UNAVAILABLE)
        return CCA_LLM_CANCELLED;
    return c->outcome;
}

/*
 * finish - complete @c with @rc (error text already in c->result.error unless
 * @rc is CCA_OK), update the status and the metrics, call the callback and
 * free the call. LLM thread only; the call must not be in the heap, the FIFO
 * or the multi.
 */
static void finish(struct cca_llm *llm, struct call *c, cca_rc rc, int64_t latency_ms)
{
    struct cca_llm_metrics *m = &llm->metrics;
    enum cca_llm_outcome outcome;

    c->result.rc = rc;
    if (rc == CCA_OK)
        c->result.error[0] = '\0';
    else if (c->result.error[0] == '\0')
        set_error(llm, c, "%s", cca_strerror(rc));
    outcome = call_outcome(c, rc);

    atomic_fetch_add_explicit(&m->calls[outcome], 1, memory_order_relaxed);
    if (c->result.attempts > 1)
        atomic_fetch_add_explicit(&m->retries, c->result.attempts - 1,
                                  memory_order_relaxed);
    if (rc == CCA_OK) {
        atomic_fetch_add_explicit(&m->prompt_tokens, (uint64_t)c->result.prompt_tokens,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&m->completion_tokens,
                                  (uint64_t)c->result.completion_tokens,
                                  memory_order_relaxed);
    }

    pthread_mutex_lock(&llm->lock);
    llm->status.calls++;
    if (rc == CCA_OK) {
        llm->status.last_latency_ms = latency_ms;
    } else {
        llm->status.failures++;
        memcpy(llm->status.last_error, c->result.error, sizeof(llm->status.last_error));
    }
    pthread_mutex_unlock(&llm->lock);

    c->done(c->ctx, &c->result);
    call_free(c);
}

static void active_link(struct cca_llm *llm, struct call *c)
{
    c->prev_act = NULL;
    c->next_act = llm->active;
    if (llm->active != NULL)
        llm->active->prev_act = c;
    llm->active = c;
    llm->active_len++;
}

static void active_unlink(struct cca_llm *llm, struct call *c)
{
    if (c->prev_act != NULL)
        c->prev_act->next_act = c->next_act;
    else
        llm->active = c->next_act;
    if (c->next_act != NULL)
        c->next_act->prev_act = c->prev_act;
    c->prev_act = c->next_act = NULL;
    llm->active_len--;
}

/* Detach the running attempt's easy handle from @c and the multi handle. */
static void attempt_detach(struct cca_llm *llm, struct call *c)
{
    (void)curl_multi_remove_handle(llm->multi, c->easy);
    active_unlink(llm, c);
    pool_put(llm, c->easy);
    c->easy = NULL;
}

/* ------------------------------------------------------------- attempts */

#define SETOPT(h, opt, val)                                                              \
    do {                                                                                 \
        if (res == CURLE_OK)                                                             \
            res = curl_easy_setopt((h), (opt), (val));                                   \
    } while (0)

static void attempt_start(struct cca_llm *llm, struct call *c)
{
    int64_t now = cca_time_mono_ms();
    int64_t left = c->deadline_ms - now;
    CURLcode res = CURLE_OK;
    CURL *easy = NULL;

    if (left <= 0) {
        if (c->result.attempts == 0)
            set_error(llm, c, "deadline already passed");
        else if (c->result.error[0] == '\0')
            set_error(llm, c, "deadline reached after %u attempts", c->result.attempts);
        finish(llm, c, CCA_ERR_TIMEOUT, 0);
        return;
    }
    easy = pool_get(llm);
    if (easy == NULL) {
        set_error(llm, c, "curl_easy_init failed");
        c->outcome = CCA_LLM_CONNECT_ERROR;
        finish(llm, c, CCA_ERR_UPSTREAM, 0);
        return;
    }

    c->easy = easy;
    c->resp_len = 0;
    c->resp_too_large = false;
    c->retry_after[0] = '\0';
    c->retry_after_ms[0] = '\0';
    c->errbuf[0] = '\0';

    SETOPT(easy, CURLOPT_URL, llm->url);
    SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
    SETOPT(easy, CURLOPT_PRIVATE, c);
    SETOPT(easy, CURLOPT_HTTPHEADER, llm->headers);
    SETOPT(easy, CURLOPT_POST, 1L);
    SETOPT(easy, CURLOPT_POSTFIELDS, c->body);
    SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    SETOPT(easy, CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(easy, CURLOPT_WRITEDATA, c);
    SETOPT(easy, CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(easy, CURLOPT_HEADERDATA, c);
    SETOPT(easy, CURLOPT_ERRORBUFFER, c->errbuf);
    SETOPT(easy, CURLOPT_BUFFERSIZE, LLM_RECV_BUFFER);
    SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS,
           (long)(left < llm->connect_timeout_ms ? left : llm->connect_timeout_ms));
    SETOPT(easy, CURLOPT_TIMEOUT_MS, (long)(left < LONG_MAX ? left : LONG_MAX));
    SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    /*
     * Removing a transfer still resolving a name (the deadline cut it) must
     * not wait for the threaded resolver: that would stall every call on
     * this thread for as long as a slow DNS server takes.
     */
    if (res == CURLE_OK)
        (void)curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
#endif
    SETOPT(easy, CURLOPT_USERAGENT, "cca/0.1");
    if (llm->pipewait)
        SETOPT(easy, CURLOPT_PIPEWAIT, 1L);
    if (res != CURLE_OK) {
        set_error(llm, c, "curl setup failed: %s", curl_easy_strerror(res));
        pool_put(llm, easy);
        c->easy = NULL;
        c->outcome = CCA_LLM_CONNECT_ERROR;
        finish(llm, c, CCA_ERR_UPSTREAM, 0);
        return;
    }

    c->attempt_start_ms = now;
    c->attempt_start_us = cca_time_mono_us();
    c->result.attempts++;
    if (curl_multi_add_handle(llm->multi, easy) != CURLM_OK) {
        set_error(llm, c, "curl_multi_add_handle failed");
        pool_put(llm, easy);
        c->easy = NULL;
        c->outcome = CCA_LLM_CONNECT_ERROR;
        finish(llm, c, CCA_ERR_UPSTREAM, 0);
        return;
    }
    active_link(llm, c);
}

/*
 * Parse a non-negative decimal integer that fills all of @s (no sign, no
 * space). Saturates at INT64_MAX. Returns false when @s is not one.
 */
static bool parse_uint(const char *s, int64_t *ret)
{
    int64_t v = 0;

    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v > (INT64_MAX - 9) / 10)
            v = INT64_MAX;
        else
            v = v * 10 + (*s - '0');
    }
    *ret = v;
    return true;
}

int64_t cca_llm_parse_retry_after(const char *value, const char *ms_value, int64_t now)
{
    int64_t n;
    time_t t;

    if (ms_value != NULL && parse_uint(ms_value, &n))
        return n > LLM_RETRY_AFTER_MAX ? LLM_RETRY_AFTER_MAX : n;
    if (value == NULL || value[0] == '\0')
        return -1;
    if (value[0] >= '0' && value[0] <= '9') {
        /* delay-seconds = 1*DIGIT */
        if (!parse_uint(value, &n))
            return -1;
        return n > LLM_RETRY_AFTER_MAX / 1000 ? LLM_RETRY_AFTER_MAX : n * 1000;
    }
    /* HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms */
    t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    if ((int64_t)t <= now)
        return 0;
    if ((int64_t)t - now > LLM_RETRY_AFTER_MAX / 1000)
        return LLM_RETRY_AFTER_MAX;
    return ((int64_t)t - now) * 1000;
}

static int64_t backoff_ms(struct cca_llm *llm, unsigned retry)
{
    uint64_t cap = (uint64_t)llm->backoff_base_ms;
    unsigned i;

    for (i = 1; i < retry && cap < LLM_BACKOFF_CAP_MS; i++)
        cap *= 2;
    if (cap > LLM_BACKOFF_CAP_MS)
        cap = LLM_BACKOFF_CAP_MS;
    if (cap == 0)
        return 0;
    return (int64_t)(rng_next(llm) % (cap + 1));
}

/*
 * retry_or_finish - the attempt failed for a transient @reason (already in
 * c->result.error): schedule the next attempt or end the call.
 */
static void retry_or_finish(struct cca_llm *llm, struct call *c, int64_t now)
{
    char reason[sizeof(c->result.error)];
    int64_t delay;

    memcpy(reason, c->result.error, sizeof(reason));
    if (c->result.attempts > llm->max_retries) {
        set_error(llm, c, "%s after %u attempts", reason, c->result.attempts);
        finish(llm, c, CCA_ERR_UPSTREAM, 0);
        return;
    }
    delay =
        cca_llm_parse_retry_after(c->retry_after, c->retry_after_ms, (int64_t)time(NULL));
    if (delay < 0)
        delay = backoff_ms(llm, c->result.attempts);
    if (now + delay >= c->deadline_ms) {
        set_error(llm, c, "%s; deadline reached after %u attempts", reason,
                  c->result.attempts);
        finish(llm, c, CCA_ERR_TIMEOUT, 0);
        return;
    }
    c->timer_at = now + delay;
    heap_push(llm, c);
}

static bool curl_code_is_transient(CURLcode code)
{
    switch (code) {
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
            return true;
        default:
            return false;
    }
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

/* Parse a 2xx body into c->result. Returns true on success. */
static bool parse_success(struct cca_llm *llm, struct call *c)
{
    if (cca_llm_parse_response(c->resp, c->resp_len, &c->result) == CCA_OK)
        return true;
    redact(llm, c->result.error);
    return false;
}

/* "HTTP <status> (<code>)" of the last response into c->result.error. */
static void http_error_reason(struct cca_llm *llm, struct call *c, long status)
{
    cca_llm_error_reason(status, c->resp, c->resp_len, c->result.error,
                         sizeof(c->result.error));
    redact(llm, c->result.error);
}

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

/* The transfer of @c ended with @code: classify it. */
static void attempt_done(struct cca_llm *llm, struct call *c, CURLcode code)
{
    int64_t now = cca_time_mono_ms();
    int64_t took = now - c->attempt_start_ms;
    long status = 0;

    (void)curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    attempt_detach(llm, c);
    c->result.upstream_ms += took;
    c->result.http_status = status;
    if (status != 0)
        cca_hist_observe_us(&llm->metrics.upstream_seconds,
                            cca_time_mono_us() - c->attempt_start_us);

    pthread_mutex_lock(&llm->lock);
    llm->status.last_http_status = status;
    if (status != 0)
        llm->status.auth_failed = status == 401 || status == 403;
    pthread_mutex_unlock(&llm->lock);

    if (code == CURLE_OK && status >= 200 && status < 300) {
        if (parse_success(llm, c)) {
            finish(llm, c, CCA_OK, took);
        } else {
            c->outcome = CCA_LLM_BAD_RESPONSE;
            finish(llm, c, CCA_ERR_UPSTREAM, 0);
        }
        return;
    }
    if (c->resp_too_large) {
        set_error(llm, c, "response larger than %zu bytes", llm->max_response_bytes);
        c->outcome = CCA_LLM_BAD_RESPONSE;
        finish(llm, c, CCA_ERR_UPSTREAM, 0);
        return;
    }
    if (code == CURLE_OK) {
        http_error_reason(llm, c, status);
        c->outcome = status_outcome(status);
        if (status == 408 || status == 429 || status >= 500)
            retry_or_finish(llm, c, now);
        else
            finish(llm, c, CCA_ERR_UPSTREAM, 0);
        return;
    }
    if (code == CURLE_OPERATION_TIMEDOUT && now + LLM_DEADLINE_SLACK >= c->deadline_ms) {
        set_error(llm, c, "deadline reached after %u attempts", c->result.attempts);
        c->outcome = CCA_LLM_TIMEOUT;
        finish(llm, c, CCA_ERR_TIMEOUT, 0);
        return;
    }
    if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
        code == CURLE_COULDNT_RESOLVE_PROXY)
        set_error(llm, c, "connect failed: %s",
                  c->errbuf[0] ? c->errbuf : curl_easy_strerror(code));
    else if (code == CURLE_OPERATION_TIMEDOUT)
        set_error(llm, c, "timeout");
    else
        set_error(llm, c, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(code));
    /* an attempt timeout short of the deadline is the connect timeout */
    c->outcome = CCA_LLM_CONNECT_ERROR;
    if (curl_code_is_transient(code))
        retry_or_finish(llm, c, now);
    else
        finish(llm, c, CCA_ERR_UPSTREAM, 0);
}

/* ------------------------------------------------------------ the loop */

static void drain_done(struct cca_llm *llm)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(llm->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        struct call *c = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        (void)curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
        if (c != NULL)
            attempt_done(llm, c, code);
    }
}

/* Take the submit FIFO. Returns true when the client is stopping. */
static bool take_queue(struct cca_llm *llm, struct call **ret_head)
{
    bool stopping;

    pthread_mutex_lock(&llm->lock);
    *ret_head = llm->q_head;
    llm->q_head = llm->q_tail = NULL;
    stopping = llm->stopping;
    pthread_mutex_unlock(&llm->lock);
    return stopping;
}

static int next_timeout(const struct cca_llm *llm)
{
    int64_t at = llm->curl_timer_at;
    int64_t now, d;

    if (llm->heap_len > 0 && (at < 0 || llm->heap[0]->timer_at < at))
        at = llm->heap[0]->timer_at;
    if (at < 0)
        return -1;
    now = cca_time_mono_ms();
    d = at - now;
    if (d <= 0)
        return 0;
    return d > INT_MAX ? INT_MAX : (int)d;
}

static void socket_action(struct cca_llm *llm, curl_socket_t s, int mask)
{
    int running = 0;

    (void)curl_multi_socket_action(llm->multi, s, mask, &running);
}

/*
 * set_max_connects - size curl's connection cache to the transfers running
 * now plus LLM_IDLE_CONNS. The cache counts connections in use too, and curl
 * closes the oldest idle one whenever a finished transfer returns its
 * connection to a cache above the limit; called before every wait, the limit
 * follows the load, so connections stay reused under steady load and the
 * idle ones are closed as a burst winds down instead of 2 minutes later.
 */
static void set_max_connects(struct cca_llm *llm)
{
    long want = (long)llm->active_len + LLM_IDLE_CONNS;

    if (want == llm->max_connects)
        return;
    if (curl_multi_setopt(llm->multi, CURLMOPT_MAXCONNECTS, want) == CURLM_OK)
        llm->max_connects = want;
}

static void shutdown_all(struct cca_llm *llm)
{
    struct call *c, *next;

    while ((c = llm->active) != NULL) {
        attempt_detach(llm, c);
        set_error(llm, c, "LLM client shutting down");
        finish(llm, c, CCA_ERR_UNAVAILABLE, 0);
    }
    while ((c = heap_pop(llm)) != NULL) {
        set_error(llm, c, "LLM client shutting down");
        finish(llm, c, CCA_ERR_UNAVAILABLE, 0);
    }
    (void)take_queue(llm, &c);
    for (; c != NULL; c = next) {
        next = c->next_q;
        set_error(llm, c, "LLM client shutting down");
        finish(llm, c, CCA_ERR_UNAVAILABLE, 0);
    }
}

static void *thread_main(void *arg)
{
    struct cca_llm *llm = arg;
    struct epoll_event evs[LLM_MAX_EVENTS];

    for (;;) {
        struct call *c, *next;
        int i, n;

        set_max_connects(llm);
        n = epoll_wait(llm->epfd, evs, LLM_MAX_EVENTS, next_timeout(llm));
        if (n < 0 && errno != EINTR)
            break;
        for (i = 0; i < n; i++) {
            uint32_t e = evs[i].events;
            int mask = 0;

            if (evs[i].data.fd == llm->evfd) {
                uint64_t v;

                (void)!read(llm->evfd, &v, sizeof(v));
                continue;
            }
            if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
                mask |= CURL_CSELECT_IN;
            if (e & (EPOLLOUT | EPOLLERR))
                mask |= CURL_CSELECT_OUT;
            socket_action(llm, evs[i].data.fd, mask);
        }
        if (llm->curl_timer_at >= 0 && cca_time_mono_ms() >= llm->curl_timer_at) {
            llm->curl_timer_at = -1;
            socket_action(llm, CURL_SOCKET_TIMEOUT, 0);
        }
        drain_done(llm);

        if (take_queue(llm, &c)) {
            /* put them back for shutdown_all, in order */
            pthread_mutex_lock(&llm->lock);
            llm->q_head = c;
            for (llm->q_tail = c; llm->q_tail && llm->q_tail->next_q;)
                llm->q_tail = llm->q_tail->next_q;
            pthread_mutex_unlock(&llm->lock);
            break;
        }
        for (; c != NULL; c = next) {
            next = c->next_q;
            c->next_q = NULL;
            attempt_start(llm, c);
        }
        while (llm->heap_len > 0 && llm->heap[0]->timer_at <= cca_time_mono_ms())
            attempt_start(llm, heap_pop(llm));
    }

    /* refuse new submissions even if we left the loop on an epoll error */
    pthread_mutex_lock(&llm->lock);
    llm->stopping = true;
    pthread_mutex_unlock(&llm->lock);
    shutdown_all(llm);
    return NULL;
}

/* ------------------------------------------------------------- the API */

static void scrub_headers(struct curl_slist *h)
{
    for (; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
}

static void llm_destroy(struct cca_llm *llm)
{
    size_t i;

    if (llm == NULL)
        return;
    if (llm->multi != NULL)
        (void)curl_multi_cleanup(llm->multi);
    for (i = 0; i < llm->pool_len; i++)
        curl_easy_cleanup(llm->pool[i]);
    free(llm->pool);
    free(llm->heap);
    if (llm->epfd >= 0)
        close(llm->epfd);
    if (llm->evfd >= 0)
        close(llm->evfd);
    scrub_headers(llm->headers);
    curl_slist_free_all(llm->headers);
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
    if (p->max_retries > LLM_MAX_RETRIES)
        return cca_error_set(reterr, CCA_ERR_INVALID, "llm: max_retries must be <= %d",
                             LLM_MAX_RETRIES);
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
    struct cca_llm *llm = NULL;
    struct curl_slist *h;
    struct epoll_event ev;
    sigset_t all, old;
    char *auth = NULL;
    size_t base_len, auth_len = 0;
    uint64_t seed = 0;
    cca_rc rc;
    int err;

    rc = check_params(params, reterr);
    if (rc != CCA_OK)
        goto out;

    llm = cca_xcalloc(1, sizeof(*llm));
    llm->epfd = -1;
    llm->evfd = -1;
    llm->curl_timer_at = -1;

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
    /*
     * PIPEWAIT makes new transfers wait for a connection that may turn out to
     * multiplex (HTTP/2 over TLS). Over plain http there is no HTTP/2, and
     * waiting would serialise a burst behind the first HTTP/1.1 response.
     */
    llm->pipewait = strncmp(llm->url, "https://", 8) == 0;
    llm->pool = cca_xcalloc(LLM_POOL_MAX, sizeof(*llm->pool));
    cca_hist_init(&llm->metrics.upstream_seconds, cca_hist_seconds_bounds,
                  cca_hist_seconds_n);

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
        seed = (uint64_t)cca_time_wall_ms() ^ (uint64_t)(uintptr_t)llm;
    llm->rng = seed | 1;

    auth_len = strlen("Authorization: Bearer ") + llm->api_key_len + 1;
    auth = cca_xmalloc(auth_len);
    snprintf(auth, auth_len, "Authorization: Bearer %s", llm->api_key);
    h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h != NULL)
        llm->headers = h;
    if (h != NULL && (h = curl_slist_append(llm->headers, "Accept: application/json")))
        llm->headers = h;
    /* no "Expect: 100-continue" round trip for large prompts */
    if (h != NULL && (h = curl_slist_append(llm->headers, "Expect:")))
        llm->headers = h;
    if (h != NULL && (h = curl_slist_append(llm->headers, auth)))
        llm->headers = h;
    if (h == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: curl_slist_append failed");
        goto out;
    }

    llm->multi = curl_multi_init();
    if (llm->multi == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: curl_multi_init failed");
        goto out;
    }
    if (curl_multi_setopt(llm->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
        curl_multi_setopt(llm->multi, CURLMOPT_SOCKETDATA, llm) != CURLM_OK ||
        curl_multi_setopt(llm->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
        curl_multi_setopt(llm->multi, CURLMOPT_TIMERDATA, llm) != CURLM_OK ||
        curl_multi_setopt(llm->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) !=
            CURLM_OK ||
        curl_multi_setopt(llm->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L) != CURLM_OK ||
        curl_multi_setopt(llm->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L) != CURLM_OK) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: curl_multi_setopt failed");
        goto out;
    }

    llm->epfd = epoll_create1(EPOLL_CLOEXEC);
    llm->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (llm->epfd < 0 || llm->evfd < 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: epoll/eventfd: %s",
                           strerror(errno));
        goto out;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = llm->evfd;
    if (epoll_ctl(llm->epfd, EPOLL_CTL_ADD, llm->evfd, &ev) < 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: epoll_ctl: %s",
                           strerror(errno));
        goto out;
    }

    err = pthread_mutex_init(&llm->lock, NULL);
    if (err != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: mutex: %s", strerror(err));
        goto out;
    }
    llm->lock_ok = true;

    /* the LLM thread takes no signals: they belong to the main thread */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&llm->thread, NULL, thread_main, llm);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "llm: pthread_create: %s",
                           strerror(err));
        goto out;
    }
    llm->thread_started = true;

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

static void wake(struct cca_llm *llm)
{
    uint64_t one = 1;

    /* EAGAIN means the counter is already non-zero: the thread will wake */
    (void)!write(llm->evfd, &one, sizeof(one));
}

void cca_llm_free(struct cca_llm *llm)
{
    if (llm == NULL)
        return;
    if (llm->thread_started) {
        pthread_mutex_lock(&llm->lock);
        llm->stopping = true;
        pthread_mutex_unlock(&llm->lock);
        wake(llm);
        pthread_join(llm->thread, NULL);
    }
    llm_destroy(llm);
}

cca_rc cca_llm_submit(struct cca_llm *llm, struct cca_llm_request *req,
                      cca_llm_done_fn done, void *ctx)
{
    json_t *messages = req != NULL ? req->messages : NULL;
    json_t *body = NULL;
    struct call *c = NULL;
    char *s = NULL;
    bool was_empty;
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

    c = cca_xcalloc(1, sizeof(*c));
    c->llm = llm;
    c->body = s;
    c->body_len = strlen(s);
    s = NULL;
    c->deadline_ms = req->deadline_ms;
    c->outcome = CCA_LLM_TIMEOUT; /* until an attempt fails otherwise */
    c->done = done;
    c->ctx = ctx;

    pthread_mutex_lock(&llm->lock);
    if (llm->stopping) {
        pthread_mutex_unlock(&llm->lock);
        rc = CCA_ERR_UNAVAILABLE;
        goto out;
    }
    was_empty = llm->q_head == NULL;
    if (llm->q_tail != NULL)
        llm->q_tail->next_q = c;
    else
        llm->q_head = c;
    llm->q_tail = c;
    c = NULL;
    pthread_mutex_unlock(&llm->lock);
    /* the thread takes the whole FIFO, so only the empty -> non-empty edge wakes it */
    if (was_empty)
        wake(llm);
    rc = CCA_OK;

out:
    call_free(c);
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
