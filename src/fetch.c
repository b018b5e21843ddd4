/* SPDX-License-Identifier: MIT */
/*
 * Generic asynchronous HTTP client (contract: include/cca/fetch.h; the design
 * and its performance numbers: docs/internals/fetch.md).
 *
 * One thread ("fetch thread") owns a curl multi handle and drives every request.
 * It runs its own epoll loop with the curl socket interface
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION + curl_multi_socket_action),
 * so the work per wakeup is proportional to the sockets that are ready, not to
 * the number of transfers in flight: curl_multi_poll + curl_multi_perform walk
 * every easy handle on every call, which is O(n) per event at 10,000 requests.
 * An eventfd in the same epoll set plays the role of curl_multi_wakeup.
 *
 * Life of a request (struct job):
 *   cca_fetch_start (any thread) copies the request and pushes the job on a
 *   mutex-protected FIFO, then signals the eventfd;
 *   the fetch thread takes the FIFO and admits each job to its lane: with a free
 *   slot (or no cap) it starts an attempt (an easy handle added to the multi
 *   handle), else the job waits in the lane's own FIFO;
 *   when curl reports the transfer done, the attempt is classified (the
 *   caller's classifier, cca_fetch_classify_default by default): final, or a
 *   retry after a backoff while retries and time are left;
 *   a job waiting for its backoff, or waiting in a lane with a deadline, sits in
 *   a binary min-heap keyed on the time it must be looked at again (O(log n) per
 *   insert and removal; each job knows its index, so a cancel removes it in
 *   place); the loop sleeps until the earliest of that heap's top and curl's own
 *   timer.
 *
 * Retry policy (docs/internals/fetch.md mirrors this):
 *   - at most max_retries retries after the first attempt;
 *   - delay = Retry-After (delta-seconds or HTTP-date, RFC 9110 section
 *     10.2.3; OpenAI's non-standard retry-after-ms is honoured too) when the
 *     response carries it, otherwise "full jitter": uniform in
 *     [0, min(60 s, backoff_base_ms * 2^(retry-1))];
 *   - a retry that could not start before the deadline is not scheduled: the
 *     request ends at once with NO_TIME;
 *   - an attempt cut by the deadline itself ends with DEADLINE, never retried;
 *   - a 2xx body over max_response_bytes ends with TOO_LARGE, never retried.
 *
 * Lanes keep users apart. A lane's max_in_flight counts its running transfers
 * (a job waiting for its backoff holds no slot); a job that finds no slot waits
 * in the lane's FIFO, so a lane's backlog only ever waits behind its own jobs.
 * Nothing is capped across lanes: the multi handle has no total or per-host
 * connection limit, which a long poll could otherwise hold for its 50 s.
 *
 * Counters (struct cca_fetch_lane_metrics) are relaxed atomics written here:
 * readers only need each one to be monotonic, or a recent gauge.
 *
 * Nothing here logs. The client knows no secrets: callers redact what they
 * put in headers or URLs from the error texts they pass on.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
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

#include "cca/common.h"
#include "cca/fetch.h"
#include "cca/mem.h"

#define FETCH_MAX_EVENTS 256
/*
 * Idle easy handles kept for reuse (default of pool_handles). Each one keeps
 * its receive buffer and about 5 KiB of state; 512 of them were 11 MiB of RSS
 * after a burst (bench S4, heaptrack) for a saving of one calloc per request.
 */
#define FETCH_POOL_DEFAULT 64
/*
 * Receive buffer of each easy handle (CURLOPT_BUFFERSIZE; curl 7.88 allocates
 * it when a transfer starts and keeps it for the handle's life; default 16 KiB).
 * A Chat Completions answer is a few KB of headers and JSON, read in one or two
 * recv() of 4 KiB; at 2,000 calls in flight 16 KiB buffers were 31 MiB, the
 * largest single owner of the bench S4 peak (heaptrack).
 */
#define FETCH_RECV_BUFFER 4096L
/*
 * Idle upstream connections kept beyond those in use (default of
 * idle_connections; see set_max_connects). curl's default cache keeps up to 4
 * per easy handle ever added, so a burst of 9,850 calls left ~6,000 idle
 * connections open for curl's 118 s idle age: their descriptors and ~2 KiB of
 * heap each (bench S4, heaptrack).
 */
#define FETCH_IDLE_DEFAULT    64
#define FETCH_BACKOFF_CAP_MS  60000    /* upper bound of one jittered backoff */
#define FETCH_RETRY_AFTER_MAX 86400000 /* Retry-After values are capped at 1 day */
#define FETCH_DEADLINE_SLACK  50 /* ms: a timeout this close to it is the deadline */
#define FETCH_USER_AGENT      "cca/0.1"
#define FETCH_HEAP_NONE       SIZE_MAX
#define FETCH_IDS_MIN_BUCKETS 64

_Static_assert(CCA_FETCH_ERROR_LEN >= CURL_ERROR_SIZE,
               "curl writes CURL_ERROR_SIZE bytes into error_text");

enum job_state {
    JOB_QUEUED,  /* in the submit FIFO, not seen by the fetch thread yet */
    JOB_WAITING, /* in its lane's FIFO, waiting for a slot */
    JOB_RUNNING, /* an attempt's transfer is in the multi handle */
    JOB_BACKOFF, /* in the heap until its next attempt */
};

struct job {
    struct cca_fetch_lane *lane;
    uint64_t id;
    enum job_state state;
    bool linked;        /* in the id table and the live list */
    struct job *next_q; /* submit FIFO */
    struct job *prev_live, *next_live;
    struct job *prev_w, *next_w; /* lane FIFO while JOB_WAITING */
    struct job *next_id;         /* id table chain */
    size_t heap_idx;             /* FETCH_HEAP_NONE when not in the heap */
    int64_t timer_at;            /* while in the heap */

    /* the request, immutable after cca_fetch_start */
    char method[16];
    char *url;
    struct curl_slist *headers; /* borrowed from struct cca_fetch_headers */
    char *body;
    size_t body_len;
    long connect_timeout_ms;
    long attempt_timeout_ms;
    int64_t deadline_ms;
    unsigned max_retries;
    long backoff_base_ms;
    size_t max_response_bytes;
    cca_fetch_classify_fn classify;
    void *classify_ctx;
    cca_fetch_done_fn done;
    void *ctx;

    /* the running attempt */
    CURL *easy;
    int64_t attempt_start_ms;
    int64_t attempt_start_us;
    size_t resp_cap; /* of result.body */
    bool resp_too_large;

    /* result.body is the response buffer; result.error_text curl's error buffer */
    struct cca_fetch_result result;
};

struct cca_fetch_headers {
    struct curl_slist *list;
};

struct cca_fetch_lane {
    struct cca_fetch *fetch;
    char name[32];
    unsigned max_in_flight;

    /* guarded by fetch->lock */
    struct cca_fetch_lane *prev, *next; /* fetch->lanes */
    struct cca_fetch_lane *next_close;  /* fetch->close_q */
    bool closing;                       /* cca_fetch_lane_free was called */
    bool close_done;                    /* the fetch thread cancelled its jobs */
    size_t pending;                     /* accepted, done not yet returned */

    /* fetch thread only (the lane lives while one of its jobs is pending) */
    bool closing_seen;
    unsigned running;
    struct job *wait_head, *wait_tail;

    struct cca_fetch_lane_metrics metrics;
};

struct cca_fetch {
    /* immutable after cca_fetch_new */
    char *user_agent;
    long idle_connections;
    size_t pool_max;
    CURLM *multi;
    int epfd;
    int evfd;
    pthread_t thread;
    bool thread_started;
    struct cca_fetch_lane *default_lane;

    /* guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* pending counts, close_done and dead changed */
    bool lock_ok, cond_ok;
    struct job *q_head, *q_tail;
    uint64_t *cancel_ids;
    size_t cancel_len, cancel_cap;
    struct cca_fetch_lane *lanes;
    struct cca_fetch_lane *close_q;
    uint64_t last_id;
    bool stopping;
    bool dead; /* the thread has ended every job and left */

    /* fetch thread only */
    int64_t curl_timer_at; /* -1: no curl timer */
    struct job **heap;
    size_t heap_len, heap_cap;
    struct job *live; /* every job the thread holds */
    struct job **ids; /* id -> job, chained, power-of-two buckets */
    size_t ids_len, ids_cap;
    size_t running;    /* transfers in the multi handle */
    long max_connects; /* last CURLMOPT_MAXCONNECTS set, 0: none yet */
    CURL **pool;
    size_t pool_len;
    uint64_t rng;
};

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_next(struct cca_fetch *f)
{
    /* xorshift64*: only used for backoff jitter */
    uint64_t x = f->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    f->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void job_free(struct job *j)
{
    if (j == NULL)
        return;
    free(j->url);
    free(j->body);
    free(j->result.body);
    free(j);
}

static void gauge_add(_Atomic int64_t *g, int64_t d)
{
    atomic_fetch_add_explicit(g, d, memory_order_relaxed);
}

static void count(_Atomic uint64_t *c, uint64_t d)
{
    atomic_fetch_add_explicit(c, d, memory_order_relaxed);
}

/* ------------------------------------------------------------ timer heap */

static void heap_set(struct cca_fetch *f, size_t i, struct job *j)
{
    f->heap[i] = j;
    j->heap_idx = i;
}

static void heap_up(struct cca_fetch *f, size_t i)
{
    struct job *j = f->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (f->heap[parent]->timer_at <= j->timer_at)
            break;
        heap_set(f, i, f->heap[parent]);
        i = parent;
    }
    heap_set(f, i, j);
}

static void heap_down(struct cca_fetch *f, size_t i)
{
    struct job *j = f->heap[i];

    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t best = j->timer_at;

        if (l < f->heap_len && f->heap[l]->timer_at < best) {
            m = l;
            best = f->heap[l]->timer_at;
        }
        if (r < f->heap_len && f->heap[r]->timer_at < best)
            m = r;
        if (m == i)
            break;
        heap_set(f, i, f->heap[m]);
        i = m;
    }
    heap_set(f, i, j);
}

static void heap_push(struct cca_fetch *f, struct job *j)
{
    if (f->heap_len == f->heap_cap) {
        f->heap_cap = f->heap_cap ? f->heap_cap * 2 : 64;
        f->heap = cca_xrealloc(f->heap, f->heap_cap * sizeof(*f->heap));
    }
    f->heap[f->heap_len++] = j;
    heap_up(f, f->heap_len - 1);
}

static void heap_remove(struct cca_fetch *f, struct job *j)
{
    size_t i = j->heap_idx;
    struct job *last;

    if (i == FETCH_HEAP_NONE)
        return;
    j->heap_idx = FETCH_HEAP_NONE;
    last = f->heap[--f->heap_len];
    if (i == f->heap_len)
        return;
    heap_set(f, i, last);
    heap_up(f, i);
    heap_down(f, last->heap_idx);
}

/* ------------------------------------------------------- id table, lists */

static size_t id_bucket(const struct cca_fetch *f, uint64_t id)
{
    return (size_t)(id & (uint64_t)(f->ids_cap - 1));
}

static void ids_insert(struct cca_fetch *f, struct job *j)
{
    size_t b;

    if (f->ids_len >= f->ids_cap) {
        size_t old_cap = f->ids_cap, i;
        struct job **old = f->ids;

        f->ids_cap = old_cap ? old_cap * 2 : FETCH_IDS_MIN_BUCKETS;
        f->ids = cca_xcalloc(f->ids_cap, sizeof(*f->ids));
        for (i = 0; i < old_cap; i++) {
            struct job *c, *next;

            for (c = old[i]; c != NULL; c = next) {
                next = c->next_id;
                b = id_bucket(f, c->id);
                c->next_id = f->ids[b];
                f->ids[b] = c;
            }
        }
        free(old);
    }
    b = id_bucket(f, j->id);
    j->next_id = f->ids[b];
    f->ids[b] = j;
    f->ids_len++;
}

static struct job *ids_find(const struct cca_fetch *f, uint64_t id)
{
    struct job *j;

    if (f->ids_cap == 0)
        return NULL;
    for (j = f->ids[id_bucket(f, id)]; j != NULL; j = j->next_id)
        if (j->id == id)
            return j;
    return NULL;
}

static void ids_remove(struct cca_fetch *f, struct job *j)
{
    struct job **p = &f->ids[id_bucket(f, j->id)];

    while (*p != NULL && *p != j)
        p = &(*p)->next_id;
    if (*p == j) {
        *p = j->next_id;
        f->ids_len--;
    }
}

/* Make @j known to the thread: the id table (cancel) and the live list (shutdown). */
static void job_link(struct cca_fetch *f, struct job *j)
{
    ids_insert(f, j);
    j->prev_live = NULL;
    j->next_live = f->live;
    if (f->live != NULL)
        f->live->prev_live = j;
    f->live = j;
    j->linked = true;
}

static void job_unlink(struct cca_fetch *f, struct job *j)
{
    if (!j->linked)
        return;
    ids_remove(f, j);
    if (j->prev_live != NULL)
        j->prev_live->next_live = j->next_live;
    else
        f->live = j->next_live;
    if (j->next_live != NULL)
        j->next_live->prev_live = j->prev_live;
    j->linked = false;
}

static void wait_push(struct cca_fetch_lane *lane, struct job *j)
{
    j->next_w = NULL;
    j->prev_w = lane->wait_tail;
    if (lane->wait_tail != NULL)
        lane->wait_tail->next_w = j;
    else
        lane->wait_head = j;
    lane->wait_tail = j;
    j->state = JOB_WAITING;
    gauge_add(&lane->metrics.waiting, 1);
}

static void wait_unlink(struct cca_fetch_lane *lane, struct job *j)
{
    if (j->prev_w != NULL)
        j->prev_w->next_w = j->next_w;
    else
        lane->wait_head = j->next_w;
    if (j->next_w != NULL)
        j->next_w->prev_w = j->prev_w;
    else
        lane->wait_tail = j->prev_w;
    j->prev_w = j->next_w = NULL;
    gauge_add(&lane->metrics.waiting, -1);
}

/* ------------------------------------------------------ easy handle pool */

static CURL *pool_get(struct cca_fetch *f)
{
    if (f->pool_len > 0)
        return f->pool[--f->pool_len];
    return curl_easy_init();
}

static void pool_put(struct cca_fetch *f, CURL *easy)
{
    if (easy == NULL)
        return;
    if (f->pool_len < f->pool_max) {
        curl_easy_reset(easy);
        f->pool[f->pool_len++] = easy;
        return;
    }
    curl_easy_cleanup(easy);
}

/* ------------------------------------------------------- curl callbacks */

static bool buf_append(struct job *j, const char *p, size_t n, size_t cap)
{
    struct cca_fetch_result *r = &j->result;

    if (n > cap || r->body_len > cap - n)
        return false;
    if (r->body_len + n + 1 > j->resp_cap) {
        size_t want = j->resp_cap ? j->resp_cap : 4096;

        while (want < r->body_len + n + 1)
            want *= 2;
        if (want > cap + 1)
            want = cap + 1;
        r->body = cca_xrealloc(r->body, want);
        j->resp_cap = want;
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return true;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct job *j = userdata;
    size_t n = size * nmemb;
    long status = 0;

    (void)curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        /* a 2xx body over the cap aborts the transfer (CURLE_WRITE_ERROR) */
        if (!buf_append(j, ptr, n, j->max_response_bytes)) {
            j->resp_too_large = true;
            return 0;
        }
        return n;
    }
    /* an error body is only read for a short reason: keep the head, drop the rest */
    if (j->result.body_len < CCA_FETCH_ERRBODY_KEEP) {
        size_t room = CCA_FETCH_ERRBODY_KEEP - j->result.body_len;

        (void)buf_append(j, ptr, n < room ? n : room, CCA_FETCH_ERRBODY_KEEP);
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
    struct job *j = userdata;
    size_t n = size * nitems;

    /* a new status line (e.g. after "100 Continue") starts a new header set */
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        j->result.retry_after[0] = '\0';
        j->result.retry_after_ms[0] = '\0';
    } else if (n > sizeof(ra) - 1 && strncasecmp(buf, ra, sizeof(ra) - 1) == 0) {
        header_value(buf + sizeof(ra) - 1, n - (sizeof(ra) - 1), j->result.retry_after,
                     sizeof(j->result.retry_after));
    } else if (n > sizeof(ra_ms) - 1 && strncasecmp(buf, ra_ms, sizeof(ra_ms) - 1) == 0) {
        header_value(buf + sizeof(ra_ms) - 1, n - (sizeof(ra_ms) - 1),
                     j->result.retry_after_ms, sizeof(j->result.retry_after_ms));
    }
    return n;
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct cca_fetch *f = userp;
    struct epoll_event ev;

    (void)easy;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        /* the socket may already be closed, which removed it from the set */
        (void)epoll_ctl(f->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.data.fd = s;
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(f->epfd, EPOLL_CTL_MOD, s, &ev) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(f->epfd, EPOLL_CTL_ADD, s, &ev) == 0)
        return 0;
    return -1;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cca_fetch *f = userp;

    (void)multi;
    /* only record it: curl_multi_socket_action must not be called from here */
    f->curl_timer_at = timeout_ms < 0 ? -1 : cca_time_mono_ms() + timeout_ms;
    return 0;
}

/* ------------------------------------------------------------ job end */

static cca_rc end_rc(enum cca_fetch_end end, enum cca_fetch_error error)
{
    switch (end) {
        case CCA_FETCH_END_FINAL:
            return error == CCA_FETCH_E_NONE ? CCA_OK : CCA_ERR_UPSTREAM;
        case CCA_FETCH_END_EXHAUSTED:
            return CCA_ERR_UPSTREAM;
        case CCA_FETCH_END_NO_TIME:
        case CCA_FETCH_END_DEADLINE:
        case CCA_FETCH_END_LATE:
            return CCA_ERR_TIMEOUT;
        case CCA_FETCH_END_CANCELLED:
        case CCA_FETCH_END__COUNT:
        default:
            return CCA_ERR_UNAVAILABLE;
    }
}

/*
 * finish - end @j with @end: count it, call its callback and free it. Fetch
 * thread only; the job must not be in the heap, a lane FIFO or the multi handle.
 * The lane may be freed by cca_fetch_lane_free as soon as the lock is released
 * here, so nothing touches it afterwards.
 */
static void finish(struct cca_fetch *f, struct job *j, enum cca_fetch_end end)
{
    struct cca_fetch_lane *lane = j->lane;

    j->result.end = end;
    j->result.rc = end_rc(end, j->result.error);
    count(&lane->metrics.ended[end], 1);
    if (j->result.attempts > 1)
        count(&lane->metrics.retries, j->result.attempts - 1);
    job_unlink(f, j);

    j->done(j->ctx, &j->result);

    pthread_mutex_lock(&f->lock);
    lane->pending--;
    if (lane->closing && lane->pending == 0)
        pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    job_free(j);
}

/*
 * attempt_detach - take the running transfer of @j out of the multi handle and
 * free its slot. Its easy handle goes back to the pool only when @reuse (the
 * transfer ended with CURLE_OK); any other is cleaned up. curl 7.88 keeps the
 * receive buffer of a transfer that failed before connecting (a name that did
 * not resolve) across curl_easy_reset, and then refuses CURLOPT_BUFFERSIZE on
 * that handle (CURLE_BAD_FUNCTION_ARGUMENT): pooled, it failed the setup of
 * every later request that took it.
 */
static void attempt_detach(struct cca_fetch *f, struct job *j, bool reuse)
{
    (void)curl_multi_remove_handle(f->multi, j->easy);
    if (reuse)
        pool_put(f, j->easy);
    else
        curl_easy_cleanup(j->easy);
    j->easy = NULL;
    f->running--;
    j->lane->running--;
    gauge_add(&j->lane->metrics.running, -1);
}

/* ------------------------------------------------------------- attempts */

#define SETOPT(h, opt, val)                                                              \
    do {                                                                                 \
        if (res == CURLE_OK)                                                             \
            res = curl_easy_setopt((h), (opt), (val));                                   \
    } while (0)

/* The attempt could not be started: end @j with a LOCAL error (@fmt: its text). */
static void local_failure(struct cca_fetch *f, struct job *j, const char *fmt, ...)
    CCA_PRINTF(3, 4);

static void local_failure(struct cca_fetch *f, struct job *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(j->result.error_text, sizeof(j->result.error_text), fmt, ap);
    va_end(ap);
    j->result.error = CCA_FETCH_E_LOCAL;
    finish(f, j, CCA_FETCH_END_FINAL);
}

/* Method and body of one attempt (RFC 9110 section 9.3). */
static CURLcode set_method(struct job *j, CURL *easy)
{
    CURLcode res = CURLE_OK;
    const char *body = j->body != NULL ? j->body : "";

    if (strcmp(j->method, "POST") == 0) {
        SETOPT(easy, CURLOPT_POST, 1L);
        SETOPT(easy, CURLOPT_POSTFIELDS, body);
        SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
    } else if (strcmp(j->method, "GET") == 0) {
        SETOPT(easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(j->method, "HEAD") == 0) {
        SETOPT(easy, CURLOPT_NOBODY, 1L);
    } else {
        SETOPT(easy, CURLOPT_CUSTOMREQUEST, j->method);
        if (j->body != NULL) {
            SETOPT(easy, CURLOPT_POSTFIELDS, body);
            SETOPT(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
        }
    }
    return res;
}

/* The smaller of the timeouts @a (0: none) and @b (> 0), in ms, as a long. */
static long min_timeout(long a, int64_t b)
{
    if (b > LONG_MAX)
        b = LONG_MAX;
    if (a <= 0 || (int64_t)a > b)
        return (long)b;
    return a;
}

/* Every option of one attempt on @easy; @left: ms to the deadline. */
static CURLcode attempt_setup(struct cca_fetch *f, struct job *j, CURL *easy,
                              int64_t left)
{
    CURLcode res = CURLE_OK;

    SETOPT(easy, CURLOPT_URL, j->url);
    SETOPT(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(easy, CURLOPT_NOSIGNAL, 1L);
    SETOPT(easy, CURLOPT_PRIVATE, j);
    if (j->headers != NULL)
        SETOPT(easy, CURLOPT_HTTPHEADER, j->headers);
    if (res == CURLE_OK)
        res = set_method(j, easy);
    SETOPT(easy, CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(easy, CURLOPT_WRITEDATA, j);
    SETOPT(easy, CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(easy, CURLOPT_HEADERDATA, j);
    SETOPT(easy, CURLOPT_ERRORBUFFER, j->result.error_text);
    SETOPT(easy, CURLOPT_BUFFERSIZE, FETCH_RECV_BUFFER);
    if (j->connect_timeout_ms > 0)
        SETOPT(easy, CURLOPT_CONNECTTIMEOUT_MS, min_timeout(j->connect_timeout_ms, left));
    /* at least one of the two is set: cca_fetch_start refuses unbounded requests */
    SETOPT(easy, CURLOPT_TIMEOUT_MS, min_timeout(j->attempt_timeout_ms, left));
    SETOPT(easy, CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    /*
     * Removing a transfer still resolving a name (the deadline cut it) must
     * not wait for the threaded resolver: that would stall every request on
     * this thread for as long as a slow DNS server takes.
     */
    if (res == CURLE_OK)
        (void)curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
#endif
    SETOPT(easy, CURLOPT_USERAGENT, f->user_agent);
    /*
     * PIPEWAIT makes new transfers wait for a connection that may turn out to
     * multiplex (HTTP/2 over TLS). Over plain http there is no HTTP/2, and
     * waiting would serialise a burst behind the first HTTP/1.1 response.
     */
    if (strncmp(j->url, "https://", 8) == 0)
        SETOPT(easy, CURLOPT_PIPEWAIT, 1L);
    return res;
}

static void attempt_start(struct cca_fetch *f, struct job *j)
{
    struct cca_fetch_result *r = &j->result;
    int64_t now = cca_time_mono_ms();
    bool bounded = j->deadline_ms != CCA_FETCH_NO_DEADLINE;
    int64_t left = bounded ? j->deadline_ms - now : INT64_MAX;
    CURLcode res;
    CURL *easy;
    bool pooled;

    if (left <= 0) {
        finish(f, j, CCA_FETCH_END_LATE);
        return;
    }
    r->body_len = 0;
    if (r->body != NULL)
        r->body[0] = '\0';
    j->resp_too_large = false;
    r->retry_after[0] = '\0';
    r->retry_after_ms[0] = '\0';
    r->error_text[0] = '\0';

    /*
     * A handle from the pool that refuses its setup is dropped and a fresh one
     * tried, never put back: a bad handle on top of the LIFO pool would fail
     * every later request (see attempt_detach).
     */
    for (;;) {
        pooled = f->pool_len > 0;
        easy = pool_get(f);
        if (easy == NULL) {
            local_failure(f, j, "curl_easy_init failed");
            return;
        }
        j->easy = easy;
        res = attempt_setup(f, j, easy, left);
        if (res == CURLE_OK)
            break;
        curl_easy_cleanup(easy);
        j->easy = NULL;
        if (!pooled) {
            local_failure(f, j, "curl setup failed: %s", curl_easy_strerror(res));
            return;
        }
    }

    j->attempt_start_ms = now;
    j->attempt_start_us = cca_time_mono_us();
    r->attempts++;
    if (curl_multi_add_handle(f->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        j->easy = NULL;
        local_failure(f, j, "curl_multi_add_handle failed");
        return;
    }
    j->state = JOB_RUNNING;
    f->running++;
    j->lane->running++;
    gauge_add(&j->lane->metrics.running, 1);
    count(&j->lane->metrics.attempts, 1);
}

static bool lane_has_slot(const struct cca_fetch_lane *lane)
{
    return lane->max_in_flight == 0 || lane->running < lane->max_in_flight;
}

/*
 * admit - @j wants an attempt now: start it when its lane has a free slot, else
 * queue it behind the lane's other waiting jobs; while it waits, its deadline
 * sits in the heap so it ends on time even if no slot frees up.
 */
static void admit(struct cca_fetch *f, struct job *j)
{
    struct cca_fetch_lane *lane = j->lane;

    if (lane_has_slot(lane) && lane->wait_head == NULL) {
        attempt_start(f, j);
        return;
    }
    wait_push(lane, j);
    if (j->deadline_ms != CCA_FETCH_NO_DEADLINE) {
        j->timer_at = j->deadline_ms;
        heap_push(f, j);
    }
}

/*
 * lane_pump - start waiting jobs of @lane while it has free slots. The caller
 * holds a pending job of the lane, so the lane outlives this call.
 */
static void lane_pump(struct cca_fetch *f, struct cca_fetch_lane *lane)
{
    struct job *j;

    if (lane->closing_seen)
        return; /* its jobs are being cancelled: start none */
    while (lane->wait_head != NULL && lane_has_slot(lane)) {
        j = lane->wait_head;
        wait_unlink(lane, j);
        heap_remove(f, j);
        attempt_start(f, j);
    }
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

int64_t cca_fetch_parse_retry_after(const char *value, const char *ms_value, int64_t now)
{
    int64_t n;
    time_t t;

    if (ms_value != NULL && parse_uint(ms_value, &n))
        return n > FETCH_RETRY_AFTER_MAX ? FETCH_RETRY_AFTER_MAX : n;
    if (value == NULL || value[0] == '\0')
        return -1;
    if (value[0] >= '0' && value[0] <= '9') {
        /* delay-seconds = 1*DIGIT */
        if (!parse_uint(value, &n))
            return -1;
        return n > FETCH_RETRY_AFTER_MAX / 1000 ? FETCH_RETRY_AFTER_MAX : n * 1000;
    }
    /* HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms */
    t = curl_getdate(value, NULL);
    if (t == (time_t)-1)
        return -1;
    if ((int64_t)t <= now)
        return 0;
    if ((int64_t)t - now > FETCH_RETRY_AFTER_MAX / 1000)
        return FETCH_RETRY_AFTER_MAX;
    return ((int64_t)t - now) * 1000;
}

static int64_t backoff_ms(struct cca_fetch *f, long base_ms, unsigned retry)
{
    uint64_t cap = (uint64_t)base_ms;
    unsigned i;

    for (i = 1; i < retry && cap < FETCH_BACKOFF_CAP_MS; i++)
        cap *= 2;
    if (cap > FETCH_BACKOFF_CAP_MS)
        cap = FETCH_BACKOFF_CAP_MS;
    if (cap == 0)
        return 0;
    return (int64_t)(rng_next(f) % (cap + 1));
}

/*
 * retry_or_finish - the classifier wants another attempt: schedule it after
 * the wait the response asked for or a backoff, or end the job when no retry
 * or no time is left.
 */
static void retry_or_finish(struct cca_fetch *f, struct job *j, int64_t now)
{
    int64_t delay;

    if (j->result.attempts > j->max_retries) {
        finish(f, j, CCA_FETCH_END_EXHAUSTED);
        return;
    }
    delay = cca_fetch_parse_retry_after(j->result.retry_after, j->result.retry_after_ms,
                                        (int64_t)time(NULL));
    if (delay < 0)
        delay = backoff_ms(f, j->backoff_base_ms, j->result.attempts);
    if (j->deadline_ms != CCA_FETCH_NO_DEADLINE && now + delay >= j->deadline_ms) {
        finish(f, j, CCA_FETCH_END_NO_TIME);
        return;
    }
    j->state = JOB_BACKOFF;
    j->timer_at = now + delay;
    heap_push(f, j);
}

static enum cca_fetch_error curl_error_kind(CURLcode code)
{
    switch (code) {
        case CURLE_OK:
            return CCA_FETCH_E_NONE;
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
            return CCA_FETCH_E_CONNECT;
        case CURLE_OPERATION_TIMEDOUT:
            return CCA_FETCH_E_TIMEOUT;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
            return CCA_FETCH_E_TRANSFER;
        default:
            return CCA_FETCH_E_OTHER;
    }
}

enum cca_fetch_verdict cca_fetch_classify_default(void *ctx,
                                                  const struct cca_fetch_attempt *attempt)
{
    long status = attempt->status;

    (void)ctx;
    switch (attempt->error) {
        case CCA_FETCH_E_NONE:
            return status == 408 || status == 429 || status >= 500 ? CCA_FETCH_RETRY
                                                                   : CCA_FETCH_FINAL;
        case CCA_FETCH_E_CONNECT:
        case CCA_FETCH_E_TIMEOUT:
        case CCA_FETCH_E_TRANSFER:
            return CCA_FETCH_RETRY;
        default:
            return CCA_FETCH_FINAL;
    }
}

/* The transfer of @j ended with @code: classify it, then end, retry or wait. */
static void attempt_done(struct cca_fetch *f, struct job *j, CURLcode code)
{
    struct cca_fetch_result *r = &j->result;
    struct cca_fetch_lane *lane = j->lane;
    struct cca_fetch_attempt a;
    int64_t now = cca_time_mono_ms();
    enum cca_fetch_verdict verdict;
    long status = 0;

    (void)curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    attempt_detach(f, j, code == CURLE_OK);
    r->status = status;
    r->last_ms = now - j->attempt_start_ms;
    r->last_us = cca_time_mono_us() - j->attempt_start_us;
    r->upstream_ms += r->last_ms;

    if (code == CURLE_OK)
        r->error = CCA_FETCH_E_NONE;
    else if (j->resp_too_large)
        r->error = CCA_FETCH_E_TOO_LARGE;
    else if (code == CURLE_OPERATION_TIMEDOUT &&
             j->deadline_ms != CCA_FETCH_NO_DEADLINE &&
             now + FETCH_DEADLINE_SLACK >= j->deadline_ms)
        r->error = CCA_FETCH_E_DEADLINE;
    else
        r->error = curl_error_kind(code);
    if (r->error == CCA_FETCH_E_NONE)
        r->error_text[0] = '\0';
    else if (r->error_text[0] == '\0')
        snprintf(r->error_text, sizeof(r->error_text), "%s", curl_easy_strerror(code));

    a = (struct cca_fetch_attempt){
        .number = r->attempts,
        .error = r->error,
        .status = status,
        .body = r->body,
        .body_len = r->body_len,
        .retry_after = r->retry_after,
        .retry_after_ms = r->retry_after_ms,
        .error_text = r->error_text,
        .duration_ms = r->last_ms,
        .duration_us = r->last_us,
    };
    verdict = (j->classify != NULL ? j->classify
                                   : cca_fetch_classify_default)(j->classify_ctx, &a);

    /* the freed slot goes to the next waiting job before this one goes on */
    lane_pump(f, lane);

    if (r->error == CCA_FETCH_E_DEADLINE)
        finish(f, j, CCA_FETCH_END_DEADLINE);
    else if (r->error == CCA_FETCH_E_TOO_LARGE || verdict != CCA_FETCH_RETRY)
        finish(f, j, CCA_FETCH_END_FINAL);
    else
        retry_or_finish(f, j, now);
}

/*
 * cancel_job - end @j with CANCELLED wherever it is. @pump: give a freed slot
 * to the lane's next waiting job (not while the client stops).
 */
static void cancel_job(struct cca_fetch *f, struct job *j, bool pump)
{
    struct cca_fetch_lane *lane = j->lane;

    switch (j->state) {
        case JOB_RUNNING:
            attempt_detach(f, j, false);
            if (pump)
                lane_pump(f, lane);
            break;
        case JOB_WAITING:
            wait_unlink(lane, j);
            heap_remove(f, j);
            break;
        case JOB_BACKOFF:
            heap_remove(f, j);
            break;
        case JOB_QUEUED:
        default:
            break;
    }
    finish(f, j, CCA_FETCH_END_CANCELLED);
}

/* ------------------------------------------------------------ the loop */

static void drain_done(struct cca_fetch *f)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        struct job *j = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        (void)curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
        if (j != NULL)
            attempt_done(f, j, code);
    }
}

/* What the other threads handed over since the last look. */
struct inbox {
    struct job *jobs;
    uint64_t *cancel_ids;
    size_t cancel_len;
    struct cca_fetch_lane *close_q;
    bool stopping;
};

static void take_inbox(struct cca_fetch *f, struct inbox *in)
{
    pthread_mutex_lock(&f->lock);
    in->jobs = f->q_head;
    f->q_head = f->q_tail = NULL;
    in->cancel_ids = f->cancel_ids;
    in->cancel_len = f->cancel_len;
    f->cancel_ids = NULL;
    f->cancel_len = f->cancel_cap = 0;
    in->close_q = f->close_q;
    f->close_q = NULL;
    in->stopping = f->stopping;
    pthread_mutex_unlock(&f->lock);
}

/* Cancel every job of each closing lane in @close_q, then tell cca_fetch_lane_free. */
static void close_lanes(struct cca_fetch *f, struct cca_fetch_lane *close_q)
{
    struct cca_fetch_lane *lane;
    struct job *j, *next;

    for (lane = close_q; lane != NULL; lane = lane->next_close)
        lane->closing_seen = true; /* no pump may start one of them meanwhile */
    for (j = f->live; j != NULL; j = next) {
        next = j->next_live;
        if (j->lane->closing_seen)
            cancel_job(f, j, false);
    }
    pthread_mutex_lock(&f->lock);
    for (lane = close_q; lane != NULL; lane = lane->next_close)
        lane->close_done = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static int next_timeout(const struct cca_fetch *f)
{
    int64_t at = f->curl_timer_at;
    int64_t now, d;

    if (f->heap_len > 0 && (at < 0 || f->heap[0]->timer_at < at))
        at = f->heap[0]->timer_at;
    if (at < 0)
        return -1;
    now = cca_time_mono_ms();
    d = at - now;
    if (d <= 0)
        return 0;
    return d > INT_MAX ? INT_MAX : (int)d;
}

static void socket_action(struct cca_fetch *f, curl_socket_t s, int mask)
{
    int running = 0;

    (void)curl_multi_socket_action(f->multi, s, mask, &running);
}

/*
 * set_max_connects - size curl's connection cache to the transfers running
 * now plus idle_connections. The cache counts connections in use too, and curl
 * closes the oldest idle one whenever a finished transfer returns its
 * connection to a cache above the limit; called before every wait, the limit
 * follows the load, so connections stay reused under steady load and the
 * idle ones are closed as a burst winds down instead of 2 minutes later. A
 * long-held transfer counts as running, so it never takes an idle one's place.
 */
static void set_max_connects(struct cca_fetch *f)
{
    long want = (long)f->running + f->idle_connections;

    if (want == f->max_connects)
        return;
    if (curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, want) == CURLM_OK)
        f->max_connects = want;
}

static void shutdown_all(struct cca_fetch *f, struct job *queued)
{
    struct job *j, *next;

    while ((j = f->live) != NULL)
        cancel_job(f, j, false);
    for (j = queued; j != NULL; j = next) {
        next = j->next_q;
        finish(f, j, CCA_FETCH_END_CANCELLED);
    }
}

static void *thread_main(void *arg)
{
    struct cca_fetch *f = arg;
    struct epoll_event evs[FETCH_MAX_EVENTS];
    struct inbox in;
    struct job *j, *next;
    size_t i;

    (void)pthread_setname_np(pthread_self(), "cca-fetch"); /* top -H, perf, gdb */

    for (;;) {
        int k, n;

        set_max_connects(f);
        n = epoll_wait(f->epfd, evs, FETCH_MAX_EVENTS, next_timeout(f));
        if (n < 0 && errno != EINTR)
            break;
        for (k = 0; k < n; k++) {
            uint32_t e = evs[k].events;
            int mask = 0;

            if (evs[k].data.fd == f->evfd) {
                uint64_t v;

                (void)!read(f->evfd, &v, sizeof(v));
                continue;
            }
            if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
                mask |= CURL_CSELECT_IN;
            if (e & (EPOLLOUT | EPOLLERR))
                mask |= CURL_CSELECT_OUT;
            socket_action(f, evs[k].data.fd, mask);
        }
        if (f->curl_timer_at >= 0 && cca_time_mono_ms() >= f->curl_timer_at) {
            f->curl_timer_at = -1;
            socket_action(f, CURL_SOCKET_TIMEOUT, 0);
        }
        drain_done(f);

        take_inbox(f, &in);
        if (in.stopping) {
            free(in.cancel_ids);
            shutdown_all(f, in.jobs);
            goto out;
        }
        for (j = in.jobs; j != NULL; j = next) {
            next = j->next_q;
            j->next_q = NULL;
            job_link(f, j);
            admit(f, j);
        }
        for (i = 0; i < in.cancel_len; i++) {
            j = ids_find(f, in.cancel_ids[i]);
            if (j != NULL)
                cancel_job(f, j, true);
        }
        free(in.cancel_ids);
        if (in.close_q != NULL)
            close_lanes(f, in.close_q);
        while (f->heap_len > 0 && f->heap[0]->timer_at <= cca_time_mono_ms()) {
            j = f->heap[0];
            heap_remove(f, j);
            if (j->state == JOB_WAITING) {
                /* its deadline came while it waited for a slot */
                wait_unlink(j->lane, j);
                finish(f, j, CCA_FETCH_END_LATE);
            } else {
                admit(f, j);
            }
        }
    }
    /* left on an epoll error: end everything as if stopping */
    take_inbox(f, &in);
    free(in.cancel_ids);
    shutdown_all(f, in.jobs);

out:
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    f->dead = true;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ------------------------------------------------------------- the API */

static void lane_destroy(struct cca_fetch_lane *lane)
{
    free(lane);
}

static void fetch_destroy(struct cca_fetch *f)
{
    struct cca_fetch_lane *lane, *next;
    size_t i;

    if (f == NULL)
        return;
    if (f->multi != NULL)
        (void)curl_multi_cleanup(f->multi);
    for (i = 0; i < f->pool_len; i++)
        curl_easy_cleanup(f->pool[i]);
    free(f->pool);
    free(f->heap);
    free(f->ids);
    free(f->cancel_ids);
    for (lane = f->lanes; lane != NULL; lane = next) {
        next = lane->next;
        lane_destroy(lane);
    }
    if (f->epfd >= 0)
        close(f->epfd);
    if (f->evfd >= 0)
        close(f->evfd);
    if (f->cond_ok)
        pthread_cond_destroy(&f->cond);
    if (f->lock_ok)
        pthread_mutex_destroy(&f->lock);
    free(f->user_agent);
    free(f);
}

static struct cca_fetch_lane *lane_make(struct cca_fetch *f,
                                        const struct cca_fetch_lane_params *p)
{
    struct cca_fetch_lane *lane = cca_xcalloc(1, sizeof(*lane));

    lane->fetch = f;
    snprintf(lane->name, sizeof(lane->name), "%s", p->name != NULL ? p->name : "");
    lane->max_in_flight = p->max_in_flight;
    return lane;
}

/* Link @lane into f->lanes. Caller holds f->lock. */
static void lane_link(struct cca_fetch *f, struct cca_fetch_lane *lane)
{
    lane->prev = NULL;
    lane->next = f->lanes;
    if (f->lanes != NULL)
        f->lanes->prev = lane;
    f->lanes = lane;
}

cca_rc cca_fetch_new(const struct cca_fetch_params *params, struct cca_fetch **ret_fetch,
                     struct cca_error *reterr)
{
    static const struct cca_fetch_lane_params default_lane = {.name = "default"};
    struct cca_fetch_params none = {0};
    struct cca_fetch *f = NULL;
    struct epoll_event ev;
    sigset_t all, old;
    uint64_t seed = 0;
    cca_rc rc;
    int err;

    if (ret_fetch == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "fetch: no result pointer");
        goto out;
    }
    if (params == NULL)
        params = &none;
    f = cca_xcalloc(1, sizeof(*f));
    f->epfd = -1;
    f->evfd = -1;
    f->curl_timer_at = -1;
    f->user_agent =
        cca_xstrdup(params->user_agent != NULL ? params->user_agent : FETCH_USER_AGENT);
    f->idle_connections =
        params->idle_connections ? (long)params->idle_connections : FETCH_IDLE_DEFAULT;
    f->pool_max = params->pool_handles ? params->pool_handles : FETCH_POOL_DEFAULT;
    f->pool = cca_xcalloc(f->pool_max, sizeof(*f->pool));

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
        seed = (uint64_t)cca_time_wall_ms() ^ (uint64_t)(uintptr_t)f;
    f->rng = seed | 1;

    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "fetch: curl_multi_init failed");
        goto out;
    }
    if (curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) !=
            CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L) != CURLM_OK ||
        curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L) != CURLM_OK) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "fetch: curl_multi_setopt failed");
        goto out;
    }

    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    f->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (f->epfd < 0 || f->evfd < 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "fetch: epoll/eventfd: %s",
                           strerror(errno));
        goto out;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = f->evfd;
    if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, f->evfd, &ev) < 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "fetch: epoll_ctl: %s",
                           strerror(errno));
        goto out;
    }

    err = pthread_mutex_init(&f->lock, NULL);
    if (err != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "fetch: mutex: %s", strerror(err));
        goto out;
    }
    f->lock_ok = true;
    err = pthread_cond_init(&f->cond, NULL);
    if (err != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "fetch: cond: %s", strerror(err));
        goto out;
    }
    f->cond_ok = true;
    f->default_lane = lane_make(f, &default_lane);
    lane_link(f, f->default_lane);

    /* the fetch thread takes no signals: they belong to the main thread */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&f->thread, NULL, thread_main, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        rc = cca_error_set(reterr, CCA_ERR_INTERNAL, "fetch: pthread_create: %s",
                           strerror(err));
        goto out;
    }
    f->thread_started = true;

    *ret_fetch = f;
    f = NULL;
    rc = CCA_OK;

out:
    fetch_destroy(f);
    return rc;
}

static void wake(struct cca_fetch *f)
{
    uint64_t one = 1;

    /* EAGAIN means the counter is already non-zero: the thread will wake */
    (void)!write(f->evfd, &one, sizeof(one));
}

void cca_fetch_free(struct cca_fetch *fetch)
{
    if (fetch == NULL)
        return;
    if (fetch->thread_started) {
        assert(!pthread_equal(pthread_self(), fetch->thread));
        pthread_mutex_lock(&fetch->lock);
        fetch->stopping = true;
        pthread_mutex_unlock(&fetch->lock);
        wake(fetch);
        pthread_join(fetch->thread, NULL);
    }
    fetch_destroy(fetch);
}

cca_rc cca_fetch_lane_new(struct cca_fetch *fetch,
                          const struct cca_fetch_lane_params *params,
                          struct cca_fetch_lane **ret_lane)
{
    struct cca_fetch_lane *lane = NULL;
    cca_rc rc;

    if (fetch == NULL || params == NULL || ret_lane == NULL) {
        rc = CCA_ERR_INVALID;
        goto out;
    }
    lane = lane_make(fetch, params);
    pthread_mutex_lock(&fetch->lock);
    if (fetch->stopping) {
        pthread_mutex_unlock(&fetch->lock);
        rc = CCA_ERR_UNAVAILABLE;
        goto out;
    }
    lane_link(fetch, lane);
    pthread_mutex_unlock(&fetch->lock);
    *ret_lane = lane;
    lane = NULL;
    rc = CCA_OK;

out:
    lane_destroy(lane);
    return rc;
}

void cca_fetch_lane_free(struct cca_fetch_lane *lane)
{
    struct cca_fetch *f;

    if (lane == NULL)
        return;
    f = lane->fetch;
    assert(lane != f->default_lane);
    assert(!pthread_equal(pthread_self(), f->thread));
    pthread_mutex_lock(&f->lock);
    lane->closing = true;
    if (!f->dead) {
        lane->next_close = f->close_q;
        f->close_q = lane;
    }
    pthread_mutex_unlock(&f->lock);
    wake(f);

    pthread_mutex_lock(&f->lock);
    while (!(lane->pending == 0 && (lane->close_done || f->dead)))
        pthread_cond_wait(&f->cond, &f->lock);
    if (lane->prev != NULL)
        lane->prev->next = lane->next;
    else
        f->lanes = lane->next;
    if (lane->next != NULL)
        lane->next->prev = lane->prev;
    pthread_mutex_unlock(&f->lock);
    lane_destroy(lane);
}

const struct cca_fetch_lane_metrics *
cca_fetch_lane_get_metrics(const struct cca_fetch_lane *lane)
{
    return &lane->metrics;
}

cca_rc cca_fetch_headers_new(const char *const *lines,
                             struct cca_fetch_headers **ret_headers,
                             struct cca_error *reterr)
{
    struct cca_fetch_headers *h = NULL;
    struct curl_slist *list;
    size_t i;
    cca_rc rc;

    if (lines == NULL || ret_headers == NULL) {
        rc = cca_error_set(reterr, CCA_ERR_INVALID, "fetch: no header lines");
        goto out;
    }
    h = cca_xcalloc(1, sizeof(*h));
    for (i = 0; lines[i] != NULL; i++) {
        const char *colon = strchr(lines[i], ':');

        /* the value may hold a secret: the message names the line by number only */
        if (colon == NULL || colon == lines[i] || strpbrk(lines[i], "\r\n") != NULL ||
            memchr(lines[i], ' ', (size_t)(colon - lines[i])) != NULL) {
            rc = cca_error_set(reterr, CCA_ERR_INVALID,
                               "fetch: header line %zu is not 'Name: value'", i + 1);
            goto out;
        }
        list = curl_slist_append(h->list, lines[i]);
        if (list == NULL) {
            rc = cca_error_set(reterr, CCA_ERR_INTERNAL,
                               "fetch: curl_slist_append failed");
            goto out;
        }
        h->list = list;
    }
    *ret_headers = h;
    h = NULL;
    rc = CCA_OK;

out:
    cca_fetch_headers_free(h);
    return rc;
}

void cca_fetch_headers_free(struct cca_fetch_headers *headers)
{
    struct curl_slist *l;

    if (headers == NULL)
        return;
    for (l = headers->list; l != NULL; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(headers->list);
    free(headers);
}

/* Is @m a method token we accept: 1..15 upper-case ASCII letters? */
static bool method_ok(const char *m)
{
    size_t i;

    for (i = 0; m[i] != '\0'; i++)
        if (m[i] < 'A' || m[i] > 'Z' || i >= 15)
            return false;
    return i > 0;
}

static bool request_ok(const struct cca_fetch *fetch, const struct cca_fetch_request *req,
                       const char *body)
{
    const char *m = req->method;

    if (req->url == NULL ||
        (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0) ||
        strpbrk(req->url, " \t\r\n") != NULL)
        return false;
    if (m != NULL && !method_ok(m))
        return false;
    if (m != NULL && body != NULL && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0))
        return false;
    if (req->lane != NULL && req->lane->fetch != fetch)
        return false;
    if (req->connect_timeout_ms < 0 || req->attempt_timeout_ms < 0 ||
        req->backoff_base_ms < 0 || req->max_retries > CCA_FETCH_MAX_RETRIES)
        return false;
    if (req->max_response_bytes == 0 || req->max_response_bytes > (size_t)INT32_MAX)
        return false;
    /* every request is bounded in time */
    if (req->deadline_ms == CCA_FETCH_NO_DEADLINE && req->attempt_timeout_ms == 0)
        return false;
    return true;
}

cca_rc cca_fetch_start(struct cca_fetch *fetch, struct cca_fetch_request *req,
                       cca_fetch_done_fn done, void *ctx, uint64_t *ret_id)
{
    char *body = req != NULL ? req->body : NULL;
    struct cca_fetch_lane *lane;
    struct job *j = NULL;
    bool was_empty;
    uint64_t id;
    cca_rc rc;

    if (req != NULL)
        req->body = NULL; /* stolen whatever happens */
    if (fetch == NULL || req == NULL || done == NULL || !request_ok(fetch, req, body)) {
        rc = CCA_ERR_INVALID;
        goto out;
    }
    lane = req->lane != NULL ? req->lane : fetch->default_lane;

    j = cca_xcalloc(1, sizeof(*j));
    j->lane = lane;
    j->heap_idx = FETCH_HEAP_NONE;
    j->state = JOB_QUEUED;
    snprintf(j->method, sizeof(j->method), "%s",
             req->method != NULL ? req->method
             : body != NULL      ? "POST"
                                 : "GET");
    j->url = cca_xstrdup(req->url);
    j->headers = req->headers != NULL ? req->headers->list : NULL;
    j->body = body;
    j->body_len = body != NULL ? req->body_len : 0;
    body = NULL;
    j->connect_timeout_ms = req->connect_timeout_ms;
    j->attempt_timeout_ms = req->attempt_timeout_ms;
    j->deadline_ms = req->deadline_ms;
    j->max_retries = req->max_retries;
    j->backoff_base_ms = req->backoff_base_ms;
    j->max_response_bytes = req->max_response_bytes;
    j->classify = req->classify;
    j->classify_ctx = req->classify_ctx;
    j->done = done;
    j->ctx = ctx;

    pthread_mutex_lock(&fetch->lock);
    if (fetch->stopping || lane->closing) {
        pthread_mutex_unlock(&fetch->lock);
        rc = CCA_ERR_UNAVAILABLE;
        goto out;
    }
    id = ++fetch->last_id;
    j->id = id;
    lane->pending++;
    was_empty = fetch->q_head == NULL;
    if (fetch->q_tail != NULL)
        fetch->q_tail->next_q = j;
    else
        fetch->q_head = j;
    fetch->q_tail = j;
    j = NULL;
    pthread_mutex_unlock(&fetch->lock);
    /* the thread takes the whole FIFO, so only the empty -> non-empty edge wakes it */
    if (was_empty)
        wake(fetch);
    if (ret_id != NULL)
        *ret_id = id;
    rc = CCA_OK;

out:
    job_free(j);
    free(body);
    return rc;
}

void cca_fetch_cancel(struct cca_fetch *fetch, uint64_t id)
{
    if (fetch == NULL || id == 0)
        return;
    pthread_mutex_lock(&fetch->lock);
    if (!fetch->stopping) {
        if (fetch->cancel_len == fetch->cancel_cap) {
            fetch->cancel_cap = fetch->cancel_cap ? fetch->cancel_cap * 2 : 16;
            fetch->cancel_ids = cca_xrealloc(
                fetch->cancel_ids, fetch->cancel_cap * sizeof(*fetch->cancel_ids));
        }
        fetch->cancel_ids[fetch->cancel_len++] = id;
    }
    pthread_mutex_unlock(&fetch->lock);
    wake(fetch);
}

const char *cca_fetch_end_name(enum cca_fetch_end end)
{
    static const char *const names[CCA_FETCH_END__COUNT] = {
        [CCA_FETCH_END_FINAL] = "final",     [CCA_FETCH_END_EXHAUSTED] = "exhausted",
        [CCA_FETCH_END_NO_TIME] = "no_time", [CCA_FETCH_END_DEADLINE] = "deadline",
        [CCA_FETCH_END_LATE] = "late",       [CCA_FETCH_END_CANCELLED] = "cancelled",
    };

    if ((unsigned)end >= CCA_FETCH_END__COUNT)
        return "unknown";
    return names[end];
}

void cca_fetch_result_cleanup(struct cca_fetch_result *result)
{
    if (result == NULL)
        return;
    free(result->body);
    result->body = NULL;
    result->body_len = 0;
}
