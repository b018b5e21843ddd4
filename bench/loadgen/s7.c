/* SPDX-License-Identifier: MIT */
/*
 * s7 - scenario S7 of docs/BENCHMARKS.md (issue 11, human operators): N
 * operators with open event streams, dialogs escalating to them.
 *
 *   s7 --url BASE --secret S [--pid PID] [--operators N] [--max-dialogs M]
 *      [--dialogs D] [--paced P] [--rate R] [--conns C] [--storm-conns C]
 *      [--queue-gets Q] [--timeout S]
 *
 * Against a running server (OPERATOR_SECRET=S, QUEUE_MAX >= D,
 * OPERATOR_REGISTER_PER_MIN >= N), in this order:
 *  1. registers N operators (POST /api/v1/operators/register, max_dialogs M);
 *  2. opens one event stream per operator (GET /api/v1/operators/me/events,
 *     Bearer token) on one curl multi handle in a second thread, which records
 *     the receive time of every "assigned" event (data.dialog_id); the
 *     server's VmRSS and Threads (/proc/PID/status) are read 1 s after the
 *     registrations and 1 s after every stream has its 200 header:
 *     RSS per open stream = the difference / N;
 *  3. sets every operator available (PUT /api/v1/operators/me/status);
 *  4. creates D dialogs (POST /api/v1/dialogue/create, C connections), then
 *     waits until the store has written them (cca_store_dirty_documents of
 *     /metrics back to 0), so their file writes are not the escalations';
 *  5. "paced": the first P dialogs escalate (POST /api/v1/dialogue/{id}/handoff
 *     {"to":"human"}) in an open loop at R/s (at most 256 in flight); for
 *     each answered "escalation": "assigned" (the first N x M), the latency
 *     from sending the request to receiving the operator's "assigned" event;
 *  6. "max": the other D - P escalate in a closed loop on C connections, as
 *     fast as the server answers: escalations/s (they all queue);
 *  7. "queue": Q x GET /api/v1/queue (an operator's token, default limit),
 *     one at a time, with D - N x M dialogs queued: p50/p99;
 *  8. "storm": every assigned dialog is closed by its operator (POST
 *     /api/v1/dialogue/{id}/close, their token, on up to --storm-conns
 *     connections), and every dialog an "assigned" event then brings is
 *     closed in turn, until the queue is drained: assignments/s = "assigned"
 *     events received in the storm / the time from its first close to the
 *     last of them.
 * Every phase ends after --timeout seconds at most (what is still in flight
 * then counts as errors).
 *
 * Prints one JSON object on stdout (figures in microseconds, bytes, per
 * second); see main(). Exit 0 when the run completed (whatever the answers),
 * 1 when it could not go on (the JSON then has "fatal"), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS  256
#define LINE_MAX_B 16384

/* ---------------------------------------------------------------- settings */

static const char *base;
static const char *secret;
static long server_pid;
static int nops = 200, max_dialogs = 3;
static long ndlg = 10600, npaced = 3000, queue_gets = 200;
static double rate = 1000, phase_timeout = 120;
static int conns = 32, storm_conns = 64;
static char first_error[512];

/* ---------------------------------------------------------------- state */

struct op {
    int index;
    char id[64];
    char token[160];
    struct curl_slist *hdr;     /* JSON + Bearer */
    struct curl_slist *sse_hdr; /* Accept + Bearer */
    CURL *sse;
    long http_code;
    bool open;
    char line[LINE_MAX_B];
    size_t line_len;
    bool line_overflow;
    char type[32];
    bool assigned; /* the current event is an "assigned" one */
    char *data;
    size_t data_len, data_cap;
    /* counted by the stream thread */
    long ev_total, ev_unassigned, ev_queue, ev_status, ev_resync, ev_other;
    long long bytes;
};

enum esc { ESC_NONE, ESC_ASSIGNED, ESC_QUEUED, ESC_OTHER };

struct dlg {
    char id[48];
    double t_sent, t_done; /* the handoff */
    enum esc esc;
    int op_resp; /* the handoff answer's operator, -1 */
    /* written by the stream thread, under mu */
    double t_event; /* first "assigned" event */
    int op_event;   /* the stream that got it, -1 */
    int n_assigned;
    bool closed;
};

static struct op *ops;
static struct dlg *dlgs;
static struct curl_slist *json_hdr;

/* dialog id -> index: open addressing, built before the streams matter */
static long *hmap;
static size_t hmap_mask;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static void hmap_put(long i)
{
    size_t k = hash_str(dlgs[i].id) & hmap_mask;
    while (hmap[k] >= 0)
        k = (k + 1) & hmap_mask;
    hmap[k] = i;
}

static long hmap_get(const char *id)
{
    size_t k = hash_str(id) & hmap_mask;
    while (hmap[k] >= 0) {
        if (strcmp(dlgs[hmap[k]].id, id) == 0)
            return hmap[k];
        k = (k + 1) & hmap_mask;
    }
    return -1;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* under mu: event counters and the storm's feed */
static long ev_assigned, ev_assigned_unknown, ev_assigned_again;
static bool storm_on;
static long storm_assigned;
static double storm_last_assigned;
static long *feed;
static size_t feed_head, feed_tail, feed_cap;

static atomic_int streams_open, streams_ended;
static atomic_bool sse_stop;
static CURLM *req_multi; /* woken by the stream thread in the storm */

/* sampled by the stream thread every 50 ms */
static atomic_long max_threads, max_rss_kb;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "s7: out of memory\n");
        exit(3);
    }
    return q;
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
    va_list ap;

    if (first_error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(first_error, sizeof(first_error), fmt, ap);
    va_end(ap);
    for (char *p = first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
}

/* VmRSS (KiB) and Threads of the server; false without --pid */
static bool proc_status(long *rss_kb, long *threads)
{
    char path[64], line[256];
    FILE *f;

    *rss_kb = *threads = 0;
    if (server_pid <= 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%ld/status", server_pid);
    f = fopen(path, "r");
    if (!f)
        return false;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, "VmRSS:", 6))
            *rss_kb = atol(line + 6);
        else if (!strncmp(line, "Threads:", 8))
            *threads = atol(line + 8);
    }
    fclose(f);
    return true;
}

static void sample_proc(void)
{
    long rss, th;

    if (!proc_status(&rss, &th))
        return;
    if (th > atomic_load(&max_threads))
        atomic_store(&max_threads, th);
    if (rss > atomic_load(&max_rss_kb))
        atomic_store(&max_rss_kb, rss);
}

/* ---------------------------------------------------------------- samples */

struct samples {
    double *v;
    size_t n, cap;
};

static void sample_add(struct samples *s, double us)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const struct samples *s, double p)
{
    size_t k;

    if (!s->n)
        return 0;
    k = (size_t)ceil(p / 100.0 * (double)s->n);
    if (k < 1)
        k = 1;
    return s->v[k - 1];
}

/* "p50_us": .., "p90_us": .., "p99_us": .., "max_us": .., "mean_us": .. */
static void print_pcts(struct samples *s)
{
    double sum = 0;

    qsort(s->v, s->n, sizeof(*s->v), cmp_double);
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    printf("\"samples\": %zu, \"p50_us\": %.0f, \"p90_us\": %.0f, \"p99_us\": %.0f, "
           "\"max_us\": %.0f, \"mean_us\": %.0f",
           s->n, pct(s, 50), pct(s, 90), pct(s, 99), s->n ? s->v[s->n - 1] : 0.0,
           s->n ? sum / (double)s->n : 0.0);
}

/* ---------------------------------------------------------------- event streams */

/* one complete event of stream @o (type o->type, data o->data), received at @t.
 * Only "assigned" events are parsed; the others are counted, per stream and
 * without a lock (the stream thread alone touches them until it is joined). */
static void sse_dispatch(struct op *o, double t)
{
    json_t *root, *data, *did;
    long d;
    bool wake;

    o->ev_total++;
    if (!o->assigned) {
        if (!strcmp(o->type, "queue"))
            o->ev_queue++;
        else if (!strcmp(o->type, "status"))
            o->ev_status++;
        else if (!strcmp(o->type, "unassigned"))
            o->ev_unassigned++;
        else if (!strcmp(o->type, "resync"))
            o->ev_resync++;
        else
            o->ev_other++;
        return;
    }
    root = json_loadb(o->data ? o->data : "", o->data_len, 0, NULL);
    data = json_object_get(root, "data");
    did = json_object_get(data, "dialog_id");
    pthread_mutex_lock(&mu);
    d = json_is_string(did) && hmap ? hmap_get(json_string_value(did)) : -1;
    wake = d >= 0 && storm_on;
    ev_assigned++;
    if (d < 0) {
        ev_assigned_unknown++;
    } else {
        struct dlg *g = &dlgs[d];
        if (g->n_assigned++ == 0)
            g->t_event = t;
        else
            ev_assigned_again++;
        g->op_event = o->index;
        if (storm_on) {
            storm_assigned++;
            storm_last_assigned = t;
            if (feed_tail == feed_cap) {
                feed_cap = feed_cap ? feed_cap * 2 : 4096;
                feed = xrealloc(feed, feed_cap * sizeof(*feed));
            }
            feed[feed_tail++] = d;
        }
    }
    pthread_mutex_unlock(&mu);
    json_decref(root);
    if (wake)
        curl_multi_wakeup(req_multi);
}

/* one line of stream @o, without its '\n' (not NUL-terminated) */
static void sse_line(struct op *o, const char *line, size_t len, double t)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (len == 0) { /* end of an event */
        if (o->type[0] || o->data_len)
            sse_dispatch(o, t);
        o->type[0] = '\0';
        o->assigned = false;
        o->data_len = 0;
        return;
    }
    if (line[0] == ':')
        return;
    if (len >= 6 && !memcmp(line, "event:", 6)) {
        size_t skip = 6 + (len > 6 && line[6] == ' ');
        snprintf(o->type, sizeof(o->type), "%.*s", (int)(len - skip), line + skip);
        o->assigned = !strcmp(o->type, "assigned");
    } else if (len >= 5 && !memcmp(line, "data:", 5) && (o->assigned || !o->type[0])) {
        /* the server writes "event:" before "data:": only "assigned" data is kept */
        size_t skip = 5 + (len > 5 && line[5] == ' ');
        size_t n = len - skip;
        if (o->data_len + n + 2 > o->data_cap) {
            o->data_cap = (o->data_len + n + 2) * 2;
            o->data = xrealloc(o->data, o->data_cap);
        }
        if (o->data_len)
            o->data[o->data_len++] = '\n';
        memcpy(o->data + o->data_len, line + skip, n);
        o->data_len += n;
        o->data[o->data_len] = '\0';
    }
}

static size_t sse_write(char *buf, size_t size, size_t nmemb, void *userp)
{
    struct op *o = userp;
    size_t n = size * nmemb;
    const char *p = buf, *end = buf + n;
    double t = now_s();

    o->bytes += (long long)n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);

        if (nl && o->line_len == 0) { /* a whole line in this chunk: no copy */
            sse_line(o, p, len, t);
            p = nl + 1;
            continue;
        }
        if (o->line_len + len <= sizeof(o->line))
            memcpy(o->line + o->line_len, p, len);
        else
            o->line_overflow = true;
        o->line_len += len;
        if (!nl)
            break;
        if (!o->line_overflow)
            sse_line(o, o->line, o->line_len, t);
        o->line_len = 0;
        o->line_overflow = false;
        p = nl + 1;
    }
    return n;
}

static size_t sse_header(char *buf, size_t size, size_t nitems, void *userp)
{
    struct op *o = userp;
    size_t n = size * nitems;

    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        const char *sp = memchr(buf, ' ', n);
        o->http_code = sp ? atol(sp + 1) : 0;
    } else if ((n == 2 && buf[0] == '\r') || (n == 1 && buf[0] == '\n')) {
        if (o->http_code == 200 && !o->open) {
            o->open = true;
            atomic_fetch_add(&streams_open, 1);
        }
    }
    return n;
}

static void *sse_thread(void *arg)
{
    CURLM *m = curl_multi_init();
    double last_sample = 0;
    int running = 0;
    char url[1024];

    (void)arg;
    snprintf(url, sizeof(url), "%s/api/v1/operators/me/events", base);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)nops + 4);
    for (int i = 0; i < nops; i++) {
        struct op *o = &ops[i];
        CURL *e = curl_easy_init();
        o->sse = e;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->sse_hdr);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sse_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, o);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sse_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, o);
        curl_easy_setopt(e, CURLOPT_PRIVATE, o);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        curl_multi_add_handle(m, e);
    }
    while (!atomic_load(&sse_stop)) {
        CURLMsg *msg;
        int left;
        double t;

        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left))) {
            struct op *o;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&o);
            atomic_fetch_add(&streams_ended, 1);
            if (o->open)
                atomic_fetch_sub(&streams_open, 1);
            o->open = false;
            note_error("event stream of operator %d ended: %s (HTTP %ld)", o->index,
                       curl_easy_strerror(msg->data.result), o->http_code);
            curl_multi_remove_handle(m, msg->easy_handle);
        }
        t = now_s();
        if (t - last_sample >= 0.05) {
            sample_proc();
            last_sample = t;
        }
        curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    for (int i = 0; i < nops; i++) {
        curl_multi_remove_handle(m, ops[i].sse);
        curl_easy_cleanup(ops[i].sse);
    }
    curl_multi_cleanup(m);
    return NULL;
}

/* ---------------------------------------------------------------- requests */

enum kind { K_REGISTER, K_STATUS, K_CREATE, K_HANDOFF, K_QUEUE, K_CLOSE };

struct slot {
    CURL *easy;
    bool busy;
    long idx;
    int op;
    double t_due, t_sent;
    char url[1024];
    char body[512];
    char *resp;
    size_t resp_len, resp_cap;
};

struct phase {
    const char *name;
    enum kind kind;
    long total; /* static phases: jobs 0..total-1; the storm pulls from the feed */
    double rate;
    int conns;
    double t0, t_end;
    long next, started, ok, non2xx, errors, inflight;
    double t_last_done, t_last_sent;
    bool timed_out;
    struct samples lat, lag;
    long last_code;
    long queue_length; /* K_QUEUE: the last "length" */
    long resp_bytes;   /* K_QUEUE: the last answer's size */
    long storm_expect; /* K_CLOSE: assignments that drain the queue */
};

static struct slot slots[MAX_SLOTS];
static struct slot *free_slots[MAX_SLOTS];
static int free_n;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct slot *sl = userp;
    size_t n = size * nmemb;

    if (sl->resp_len + n + 1 > sl->resp_cap) {
        sl->resp_cap = (sl->resp_len + n + 1) * 2;
        sl->resp = xrealloc(sl->resp, sl->resp_cap);
    }
    memcpy(sl->resp + sl->resp_len, data, n);
    sl->resp_len += n;
    sl->resp[sl->resp_len] = '\0';
    return n;
}

static void slots_init(void)
{
    for (int i = 0; i < MAX_SLOTS; i++) {
        struct slot *sl = &slots[i];
        sl->easy = curl_easy_init();
        if (!sl->easy)
            exit(3);
        curl_easy_setopt(sl->easy, CURLOPT_PRIVATE, sl);
        curl_easy_setopt(sl->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(sl->easy, CURLOPT_WRITEDATA, sl);
        curl_easy_setopt(sl->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(sl->easy, CURLOPT_TIMEOUT_MS, (long)(phase_timeout * 1000));
        curl_easy_setopt(sl->easy, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
        curl_easy_setopt(sl->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(sl->easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
        free_slots[free_n++] = sl;
    }
}

/* the request of job @idx (for operator @op) of phase @p, on @sl */
static void prepare(struct phase *p, struct slot *sl)
{
    CURL *e = sl->easy;
    const char *method = "POST";
    struct curl_slist *hdr = json_hdr;

    sl->body[0] = '\0';
    switch (p->kind) {
        case K_REGISTER:
            snprintf(sl->url, sizeof(sl->url), "%s/api/v1/operators/register", base);
            snprintf(
                sl->body, sizeof(sl->body),
                "{\"secret\":\"%s\",\"name\":\"Bench operator %d\",\"max_dialogs\":%d}",
                secret, sl->op, max_dialogs);
            break;
        case K_STATUS:
            method = "PUT";
            snprintf(sl->url, sizeof(sl->url), "%s/api/v1/operators/me/status", base);
            snprintf(sl->body, sizeof(sl->body), "{\"status\":\"available\"}");
            hdr = ops[sl->op].hdr;
            break;
        case K_CREATE:
            snprintf(sl->url, sizeof(sl->url), "%s/api/v1/dialogue/create", base);
            snprintf(sl->body, sizeof(sl->body), "{\"customer_id\":\"s7-%ld\"}", sl->idx);
            break;
        case K_HANDOFF:
            snprintf(sl->url, sizeof(sl->url), "%s/api/v1/dialogue/%s/handoff", base,
                     dlgs[sl->idx].id);
            snprintf(sl->body, sizeof(sl->body),
                     "{\"to\":\"human\",\"reason\":\"bench\"}");
            break;
        case K_QUEUE:
            method = "GET";
            snprintf(sl->url, sizeof(sl->url), "%s/api/v1/queue", base);
            hdr = ops[sl->op].hdr;
            break;
        case K_CLOSE:
            snprintf(sl->url, sizeof(sl->url), "%s/api/v1/dialogue/%s/close", base,
                     dlgs[sl->idx].id);
            snprintf(sl->body, sizeof(sl->body), "{\"reason\":\"bench\"}");
            hdr = ops[sl->op].hdr;
            break;
    }
    curl_easy_setopt(e, CURLOPT_URL, sl->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
    if (!strcmp(method, "GET")) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, sl->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(sl->body));
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                         strcmp(method, "POST") ? method : NULL);
    }
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int op_by_id(const char *id)
{
    if (!id)
        return -1;
    for (int i = 0; i < nops; i++)
        if (!strcmp(ops[i].id, id))
            return i;
    return -1;
}

/* the answer to @sl's request: @code 0 when the transfer failed */
static void answered(struct phase *p, struct slot *sl, long code, CURLcode res, double t)
{
    bool ok = res == CURLE_OK && code >= 200 && code < 300;
    json_t *root = NULL;

    p->inflight--;
    p->t_last_done = t;
    p->last_code = code;
    if (res != CURLE_OK) {
        p->errors++;
        note_error("%s: %s", p->name, curl_easy_strerror(res));
    } else if (!ok) {
        p->non2xx++;
        note_error("%s: HTTP %ld %s %.200s", p->name, code, sl->url,
                   sl->resp ? sl->resp : "");
    } else {
        p->ok++;
        sample_add(&p->lat, (t - sl->t_sent) * 1e6);
    }
    if (ok && p->kind != K_CLOSE && p->kind != K_STATUS)
        root = json_loadb(sl->resp ? sl->resp : "", sl->resp_len, 0, NULL);
    switch (p->kind) {
        case K_REGISTER:
            if (ok) {
                const char *id = jstr(root, "operator_id"), *tok = jstr(root, "token");
                if (id && tok) {
                    snprintf(ops[sl->op].id, sizeof(ops[sl->op].id), "%s", id);
                    snprintf(ops[sl->op].token, sizeof(ops[sl->op].token), "%s", tok);
                } else
                    note_error("register: no operator_id/token in %.200s", sl->resp);
            }
            break;
        case K_CREATE:
            if (ok) {
                const char *id = jstr(root, "dialog_id");
                if (id)
                    snprintf(dlgs[sl->idx].id, sizeof(dlgs[sl->idx].id), "%s", id);
                else
                    note_error("create: no dialog_id in %.200s", sl->resp);
            }
            break;
        case K_HANDOFF: {
            struct dlg *g = &dlgs[sl->idx];
            g->t_sent = sl->t_sent;
            g->t_done = t;
            if (ok) {
                const char *e = jstr(root, "escalation");
                g->esc = !e                       ? ESC_OTHER
                         : !strcmp(e, "assigned") ? ESC_ASSIGNED
                         : !strcmp(e, "queued")   ? ESC_QUEUED
                                                  : ESC_OTHER;
                if (g->esc == ESC_ASSIGNED)
                    g->op_resp = op_by_id(jstr(root, "operator_id"));
                if (g->esc == ESC_OTHER)
                    note_error("handoff: escalation %s in %.200s", e ? e : "null",
                               sl->resp);
            }
            break;
        }
        case K_QUEUE:
            if (ok) {
                json_t *len = json_object_get(root, "length");
                p->queue_length =
                    json_is_integer(len) ? (long)json_integer_value(len) : -1;
                p->resp_bytes = (long)sl->resp_len;
            }
            break;
        case K_CLOSE:
            if (ok) {
                pthread_mutex_lock(&mu);
                dlgs[sl->idx].closed = true;
                pthread_mutex_unlock(&mu);
            }
            break;
        case K_STATUS:
            break;
    }
    json_decref(root);
    sl->busy = false;
    free_slots[free_n++] = sl;
}

enum job_state { JOB, WAIT, DONE };

/* the next job of @p at @t: JOB (sl->idx, sl->op, sl->t_due set), WAIT (*wake
 * set when known) or DONE */
static enum job_state next_job(struct phase *p, struct slot *sl, double t, double *wake)
{
    if (p->kind == K_CLOSE) {
        enum job_state st = WAIT;
        pthread_mutex_lock(&mu);
        if (feed_head < feed_tail) {
            sl->idx = feed[feed_head++];
            sl->op = dlgs[sl->idx].op_event;
            sl->t_due = t;
            st = JOB;
        } else if (storm_assigned >= p->storm_expect) {
            st = DONE;
        }
        pthread_mutex_unlock(&mu);
        return st;
    }
    if (p->next >= p->total)
        return DONE;
    sl->t_due = p->rate > 0 ? p->t0 + (double)p->next / p->rate : t;
    if (sl->t_due > t) {
        *wake = sl->t_due;
        return WAIT;
    }
    sl->idx = p->next;
    switch (p->kind) {
        case K_REGISTER:
        case K_STATUS:
            sl->op = (int)p->next;
            break;
        case K_QUEUE:
            sl->op = 0;
            break;
        default:
            sl->op = -1;
    }
    p->next++;
    return JOB;
}

static void drain(struct phase *p)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(req_multi, &left))) {
        struct slot *sl;
        long code = 0;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
        if (msg->data.result == CURLE_OK)
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(req_multi, msg->easy_handle);
        answered(p, sl, code, msg->data.result, now_s());
    }
}

static void run_phase(struct phase *p)
{
    int running = 0;

    if (p->conns > MAX_SLOTS)
        p->conns = MAX_SLOTS;
    p->t0 = now_s();
    for (;;) {
        double t = now_s(), wake = t + 0.1;
        bool done = false;
        int added = 0;
        long wait_ms;

        while (p->inflight < p->conns && free_n > 0) {
            struct slot *sl = free_slots[free_n - 1];
            enum job_state st = next_job(p, sl, t, &wake);
            if (st == DONE)
                done = true;
            if (st != JOB)
                break;
            free_n--;
            sl->busy = true;
            sl->resp_len = 0;
            prepare(p, sl);
            sl->t_sent = now_s();
            p->t_last_sent = sl->t_sent;
            sample_add(&p->lag, (sl->t_sent - sl->t_due) * 1e6);
            p->started++;
            p->inflight++;
            curl_multi_add_handle(req_multi, sl->easy);
            added++;
        }
        if (done && p->inflight == 0)
            break;
        if (t - p->t0 > phase_timeout) {
            p->timed_out = true;
            note_error("%s: timed out after %.0f s", p->name, phase_timeout);
            for (int i = 0; i < MAX_SLOTS; i++)
                if (slots[i].busy) {
                    curl_multi_remove_handle(req_multi, slots[i].easy);
                    answered(p, &slots[i], 0, CURLE_OPERATION_TIMEDOUT, now_s());
                }
            break;
        }
        if (added)
            curl_multi_perform(req_multi, &running);
        drain(p);
        t = now_s();
        wait_ms = wake > t ? (long)ceil((wake - t) * 1000.0) : 0;
        if (p->inflight < p->conns && wake <= t)
            wait_ms = 0;
        if (wait_ms > 100)
            wait_ms = 100;
        curl_multi_poll(req_multi, NULL, 0, (int)wait_ms, NULL);
        curl_multi_perform(req_multi, &running);
        drain(p);
    }
    p->t_end = now_s();
}

static void phase_init(struct phase *p, const char *name, enum kind k, long total, int c,
                       double r)
{
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->kind = k;
    p->total = total;
    p->conns = c;
    p->rate = r;
}

/* "NAME": {"requests", "ok", "non2xx", "errors", "duration_s", "rps", ... pcts} */
static void print_phase(struct phase *p, bool lag)
{
    double span = p->t_last_done > p->t0 ? p->t_last_done - p->t0 : 0;
    /* offered: requests sent / the time they took to send (+ one interval) */
    double sspan = p->t_last_sent - p->t0 + (p->rate > 0 ? 1.0 / p->rate : 0.0);

    printf("\"%s\": {\"requests\": %ld, \"ok\": %ld, \"non2xx\": %ld, \"errors\": %ld, "
           "\"timed_out\": %s, \"conns\": %d, \"rate\": %.1f, \"duration_s\": %.3f, "
           "\"rps\": %.1f, \"offered_rps\": %.1f, ",
           p->name, p->started, p->ok, p->non2xx, p->errors,
           p->timed_out ? "true" : "false", p->conns, p->rate, span,
           span > 0 ? (double)p->ok / span : 0.0,
           sspan > 0 ? (double)p->started / sspan : 0.0);
    print_pcts(&p->lat);
    if (lag) {
        qsort(p->lag.v, p->lag.n, sizeof(double), cmp_double);
        printf(", \"send_lag_p99_us\": %.0f, \"send_lag_max_us\": %.0f", pct(&p->lag, 99),
               p->lag.n ? p->lag.v[p->lag.n - 1] : 0.0);
    }
    printf("}");
}

static void fatal_exit(const char *what)
{
    printf("{\"fatal\": \"%s\", \"first_error\": \"%s\"}\n", what, first_error);
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: s7 --url BASE --secret S [--pid PID] [--operators N] "
                    "[--max-dialogs M] [--dialogs D] [--paced P] [--rate R] [--conns C] "
                    "[--storm-conns C] [--queue-gets Q] [--timeout S]\n");
    exit(2);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* waits until every assigned handoff of [from, to) has its event, at most @limit s */
static void wait_events(long from, long to, double limit)
{
    double end = now_s() + limit;

    for (;;) {
        long missing = 0;
        pthread_mutex_lock(&mu);
        for (long i = from; i < to; i++)
            if (dlgs[i].esc == ESC_ASSIGNED && dlgs[i].n_assigned == 0)
                missing++;
        pthread_mutex_unlock(&mu);
        if (!missing || now_s() > end)
            return;
        sleep_s(0.01);
    }
}

/* waits (at most @limit s) until the store has written every change to its
 * files: cca_store_dirty_documents of /metrics is 0 (at once without it), so
 * the file writes of the creates do not land in the escalation phases */
static double settle_store(double limit)
{
    double t0 = now_s();
    struct slot sl = {0};
    char url[1024];

    snprintf(url, sizeof(url), "%s/metrics", base);
    sl.easy = curl_easy_init();
    curl_easy_setopt(sl.easy, CURLOPT_URL, url);
    curl_easy_setopt(sl.easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(sl.easy, CURLOPT_WRITEDATA, &sl);
    curl_easy_setopt(sl.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(sl.easy, CURLOPT_TIMEOUT_MS, 10000L);
    while (now_s() - t0 < limit) {
        const char *m;
        sl.resp_len = 0;
        if (curl_easy_perform(sl.easy) != CURLE_OK || !sl.resp)
            break;
        m = strstr(sl.resp, "\ncca_store_dirty_documents ");
        if (!m || atof(m + 28) == 0)
            break;
        sleep_s(0.05);
    }
    curl_easy_cleanup(sl.easy);
    free(sl.resp);
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    struct phase reg, status, create, paced, maxp, queue, storm;
    pthread_t th;
    long rss0 = 0, th0 = 0, rss1 = 0, th1 = 0, rss_end = 0, th_end = 0;
    long seats, paced_assigned = 0, paced_missing = 0, paced_queued = 0, max_assigned = 0,
                max_queued = 0, op_mismatch = 0, closed = 0;
    struct samples ev_lat = {0};
    double t_streams, streams_open_s;
    double storm_span, settle_s;
    struct rlimit rl;
    struct rusage ru;
    double cpu;
    long ev_total = 0, ev_unassigned = 0, ev_queue = 0, ev_status = 0, ev_resync = 0,
         ev_other = 0;
    long long ev_bytes = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--url"))
            base = v;
        else if (!strcmp(a, "--secret"))
            secret = v;
        else if (!strcmp(a, "--pid"))
            server_pid = atol(v);
        else if (!strcmp(a, "--operators"))
            nops = atoi(v);
        else if (!strcmp(a, "--max-dialogs"))
            max_dialogs = atoi(v);
        else if (!strcmp(a, "--dialogs"))
            ndlg = atol(v);
        else if (!strcmp(a, "--paced"))
            npaced = atol(v);
        else if (!strcmp(a, "--rate"))
            rate = atof(v);
        else if (!strcmp(a, "--conns"))
            conns = atoi(v);
        else if (!strcmp(a, "--storm-conns"))
            storm_conns = atoi(v);
        else if (!strcmp(a, "--queue-gets"))
            queue_gets = atol(v);
        else if (!strcmp(a, "--timeout"))
            phase_timeout = atof(v);
        else
            usage();
    }
    if (!base || !secret || nops < 1 || max_dialogs < 1 || ndlg < 1 || npaced < 0 ||
        rate <= 0 || conns < 1 || storm_conns < 1 || queue_gets < 1 || phase_timeout <= 0)
        usage();
    if (npaced > ndlg)
        npaced = ndlg;
    seats = (long)nops * max_dialogs;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ops = calloc((size_t)nops, sizeof(*ops));
    dlgs = calloc((size_t)ndlg, sizeof(*dlgs));
    if (!ops || !dlgs)
        return 3;
    for (long i = 0; i < ndlg; i++)
        dlgs[i].op_resp = dlgs[i].op_event = -1;
    json_hdr = curl_slist_append(NULL, "Expect:");
    json_hdr = curl_slist_append(json_hdr, "Content-Type: application/json");
    req_multi = curl_multi_init();
    curl_multi_setopt(req_multi, CURLMOPT_MAXCONNECTS, (long)MAX_SLOTS + 4);
    slots_init();

    /* 1. operators */
    phase_init(&reg, "register", K_REGISTER, nops, 8, 0);
    for (int i = 0; i < nops; i++)
        ops[i].index = i;
    run_phase(&reg);
    if (reg.ok != nops)
        fatal_exit("operator registration failed");
    for (int i = 0; i < nops; i++) {
        char auth[256];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", ops[i].token);
        ops[i].hdr = curl_slist_append(NULL, "Expect:");
        ops[i].hdr = curl_slist_append(ops[i].hdr, "Content-Type: application/json");
        ops[i].hdr = curl_slist_append(ops[i].hdr, auth);
        ops[i].sse_hdr = curl_slist_append(NULL, "Accept: text/event-stream");
        ops[i].sse_hdr = curl_slist_append(ops[i].sse_hdr, auth);
    }

    /* 2. event streams, and the server's RSS around them */
    sleep_s(1.0);
    proc_status(&rss0, &th0);
    t_streams = now_s();
    if (pthread_create(&th, NULL, sse_thread, NULL) != 0)
        return 3;
    while (atomic_load(&streams_open) < nops && now_s() - t_streams < 30 &&
           atomic_load(&streams_ended) == 0)
        sleep_s(0.005);
    streams_open_s = now_s() - t_streams;
    if (atomic_load(&streams_open) < nops) {
        atomic_store(&sse_stop, true);
        pthread_join(th, NULL);
        fatal_exit("event streams did not open");
    }
    sleep_s(1.0);
    proc_status(&rss1, &th1);

    /* 3. available */
    phase_init(&status, "status", K_STATUS, nops, 8, 0);
    run_phase(&status);
    if (status.ok != nops)
        fatal_exit("setting operators available failed");

    /* 4. dialogs */
    phase_init(&create, "create", K_CREATE, ndlg, conns, 0);
    run_phase(&create);
    if (create.ok != ndlg)
        fatal_exit("creating dialogs failed");
    {
        size_t cap = 1;
        while (cap < (size_t)ndlg * 2)
            cap <<= 1;
        hmap = malloc(cap * sizeof(*hmap));
        if (!hmap)
            return 3;
        memset(hmap, 0xff, cap * sizeof(*hmap));
        hmap_mask = cap - 1;
        pthread_mutex_lock(&mu);
        for (long i = 0; i < ndlg; i++)
            hmap_put(i);
        pthread_mutex_unlock(&mu);
    }

    settle_s = settle_store(60);

    /* 5. escalations at a constant rate */
    phase_init(&paced, "paced", K_HANDOFF, npaced, MAX_SLOTS, rate);
    run_phase(&paced);
    wait_events(0, npaced, 5.0);

    /* 6. escalations as fast as they are answered */
    phase_init(&maxp, "max", K_HANDOFF, ndlg, conns, 0);
    maxp.next = npaced; /* jobs npaced..ndlg-1 */
    run_phase(&maxp);
    wait_events(npaced, ndlg, 5.0);

    pthread_mutex_lock(&mu);
    for (long i = 0; i < ndlg; i++) {
        struct dlg *g = &dlgs[i];
        bool in_paced = i < npaced;
        if (g->esc == ESC_ASSIGNED) {
            if (in_paced)
                paced_assigned++;
            else
                max_assigned++;
            if (g->n_assigned == 0) {
                if (in_paced)
                    paced_missing++;
            } else if (in_paced)
                sample_add(&ev_lat, (g->t_event - g->t_sent) * 1e6);
            if (g->n_assigned && g->op_resp != g->op_event)
                op_mismatch++;
        } else if (g->esc == ESC_QUEUED) {
            if (in_paced)
                paced_queued++;
            else
                max_queued++;
        }
    }
    pthread_mutex_unlock(&mu);

    /* 7. the queue, one request at a time */
    phase_init(&queue, "queue", K_QUEUE, queue_gets, 1, 0);
    run_phase(&queue);

    /* 8. the close storm: every owned dialog closed, every new assignment too */
    phase_init(&storm, "storm", K_CLOSE, 0, storm_conns, 0);
    storm.storm_expect = queue.queue_length > 0 ? queue.queue_length : 0;
    pthread_mutex_lock(&mu);
    for (long i = 0; i < ndlg; i++)
        if (dlgs[i].n_assigned > 0 && !dlgs[i].closed && dlgs[i].op_event >= 0) {
            if (feed_tail == feed_cap) {
                feed_cap = feed_cap ? feed_cap * 2 : 4096;
                feed = xrealloc(feed, feed_cap * sizeof(*feed));
            }
            feed[feed_tail++] = i;
        }
    storm_on = true;
    pthread_mutex_unlock(&mu);
    run_phase(&storm);
    pthread_mutex_lock(&mu);
    storm_on = false;
    storm_span = storm_last_assigned > storm.t0 ? storm_last_assigned - storm.t0 : 0;
    for (long i = 0; i < ndlg; i++)
        closed += dlgs[i].closed;
    pthread_mutex_unlock(&mu);

    sleep_s(0.2);
    proc_status(&rss_end, &th_end);
    sample_proc();
    atomic_store(&sse_stop, true);
    pthread_join(th, NULL);

    getrusage(RUSAGE_SELF, &ru);
    cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

    printf("{\"operators\": %d, \"max_dialogs\": %d, \"seats\": %ld, \"dialogs\": %ld, "
           "\"paced_dialogs\": %ld, \"settle_s\": %.3f, ",
           nops, max_dialogs, seats, ndlg, npaced, settle_s);
    printf("\"streams\": {\"open\": %d, \"ended\": %d, \"open_s\": %.3f, "
           "\"rss_before_kb\": %ld, \"rss_after_kb\": %ld, \"threads_before\": %ld, "
           "\"threads_after\": %ld, \"rss_per_stream_kb\": %.2f}, ",
           atomic_load(&streams_open), atomic_load(&streams_ended), streams_open_s, rss0,
           rss1, th0, th1, nops ? (double)(rss1 - rss0) / nops : 0.0);
    print_phase(&reg, false);
    printf(", ");
    print_phase(&status, false);
    printf(", ");
    print_phase(&create, false);
    printf(", ");
    print_phase(&paced, true);
    printf(", ");
    print_phase(&maxp, false);
    printf(", ");
    print_phase(&queue, false);
    printf(", ");
    print_phase(&storm, false);
    printf(", \"escalation\": {\"paced_assigned\": %ld, \"paced_queued\": %ld, "
           "\"paced_missing_events\": %ld, \"max_assigned\": %ld, \"max_queued\": %ld, "
           "\"operator_mismatch\": %ld, \"event\": {",
           paced_assigned, paced_queued, paced_missing, max_assigned, max_queued,
           op_mismatch);
    print_pcts(&ev_lat);
    printf("}}, \"queue_length\": %ld, \"queue_bytes\": %ld, ", queue.queue_length,
           queue.resp_bytes);
    printf("\"storm_summary\": {\"expected\": %ld, \"assigned\": %ld, \"span_s\": %.3f, "
           "\"assignments_per_s\": %.1f, \"closed_total\": %ld}, ",
           storm.storm_expect, storm_assigned, storm_span,
           storm_span > 0 ? (double)storm_assigned / storm_span : 0.0, closed);
    for (int i = 0; i < nops; i++) {
        ev_total += ops[i].ev_total;
        ev_unassigned += ops[i].ev_unassigned;
        ev_queue += ops[i].ev_queue;
        ev_status += ops[i].ev_status;
        ev_resync += ops[i].ev_resync;
        ev_other += ops[i].ev_other;
        ev_bytes += ops[i].bytes;
    }
    printf("\"events\": {\"total\": %ld, \"assigned\": %ld, \"unassigned\": %ld, "
           "\"queue\": %ld, \"status\": %ld, \"resync\": %ld, \"other\": %ld, "
           "\"assigned_unknown\": %ld, \"assigned_again\": %ld, \"bytes\": %lld}, ",
           ev_total, ev_assigned, ev_unassigned, ev_queue, ev_status, ev_resync, ev_other,
           ev_assigned_unknown, ev_assigned_again, ev_bytes);
    printf("\"server\": {\"max_threads\": %ld, \"max_rss_kb\": %ld, \"rss_end_kb\": %ld, "
           "\"threads_end\": %ld}, ",
           atomic_load(&max_threads), atomic_load(&max_rss_kb), rss_end, th_end);
    printf("\"first_error\": \"%s\", \"loadgen_cpu_s\": %.3f}\n", first_error, cpu);

    for (int i = 0; i < MAX_SLOTS; i++) {
        curl_easy_cleanup(slots[i].easy);
        free(slots[i].resp);
    }
    curl_multi_cleanup(req_multi);
    for (int i = 0; i < nops; i++) {
        curl_slist_free_all(ops[i].hdr);
        curl_slist_free_all(ops[i].sse_hdr);
        free(ops[i].data);
    }
    curl_slist_free_all(json_hdr);
    free(ops);
    free(dlgs);
    free(hmap);
    free(feed);
    curl_global_cleanup();
    return 0;
}
