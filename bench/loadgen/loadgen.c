/* SPDX-License-Identifier: MIT */
/*
 * loadgen - a small HTTP load generator on libcurl multi, for the scenarios
 * wrk cannot express: open-loop constant rate, 10,000 concurrent connections,
 * two interleaved targets, desynchronised closed loops, and latency
 * percentiles from recorded samples.
 *
 *   loadgen --url URL [--method M] [--body S | --body-file F] [--header H]...
 *           [--ids FILE] [--id-mode sticky|cycle]
 *           [--conns C] [--duration S] [--requests N] [--rate R]
 *           [--ramp-ms MS] [--think-ms MIN-MAX] [--warmup S] [--seed N]
 *           [--alt-url URL] [--alt-body S] [--alt-header H]... [--alt-conns A]
 *           [--save-ids FILE] [--timeout S]
 *
 * "{id}" in URL or body is replaced by a line of --ids: sticky = connection i
 * always uses line i % n, cycle = request j uses line j % n.
 * Closed loop (default): C connections each send the next request when the
 * previous one is answered (after the think time, if any), until --duration
 * seconds or --requests have passed. Open loop (--rate R): a request is due
 * every 1/R s whatever the answers; latency is counted from the due time (no
 * coordinated omission); at most C requests are in flight, a due request
 * waits for a free one.
 * --ramp-ms MS: every closed-loop connection (main and alt) sends its first
 * request at a uniformly random instant of [0, MS) ms after the start, instead
 * of all at once. --think-ms MIN-MAX: after each answer, a closed-loop
 * connection waits a uniformly random time of [MIN, MAX] ms (drawn per
 * request) before its next request; latency never includes the think time.
 * --seed N: the seed of those draws (default 1), so a run is reproducible.
 * --warmup S: samples of requests started in the first S seconds are left
 * out, and the run lasts S + --duration seconds (default: the ramp).
 * --alt-*: A more closed-loop connections to a second target, at the same time;
 * their samples are reported apart ("alt"), e.g. straight to the upstream.
 * --save-ids: the "dialog_id" of every 2xx answer is appended to FILE.
 *
 * Sockets are watched with epoll through curl_multi_socket_action, so the
 * cost of an event does not grow with the number of connections.
 *
 * Prints one JSON object on stdout:
 *   {"main": {"requests","ok","non2xx","errors","warmup_excluded","window_s",
 *             "duration_s","rps","offered_rps","p50_us","p90_us","p99_us",
 *             "p999_us","max_us","mean_us"},
 *    "alt": {...} (only with --alt-url), "first_error": "...",
 *    "config": {"conns","alt_conns","rate","ramp_ms","think_ms_min",
 *               "think_ms_max","warmup_s","seed"},
 *    "loadgen_cpu_s", "loadgen_requests", "loadgen_cpu_us_per_request"}
 * requests/ok/non2xx/errors and the percentiles count the requests started
 * in the measurement window [start + warm-up, end]; rps = 2xx answers
 * completed in the window / its length (window_s); offered_rps = requests
 * started in the window / its length (for the open loop: --rate, unless the
 * in-flight cap held requests back). With --requests and no --duration, the
 * window ends at the last answer. loadgen_cpu_s is this process's user+system
 * CPU (getrusage), loadgen_requests every request it completed (warm-up and
 * alt included).
 * Exit 0 when the run completed (whatever the answers), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_HEADERS 16
#define MAX_EVENTS  512

struct samples {
    double *v;
    size_t n, cap;
    /* of the requests started in the measurement window */
    long requests, ok, non2xx, errors, started;
    /* answers of requests started in the warm-up; 2xx completed in the window */
    long excluded, ok_in_window;
};

struct target {
    const char *url;
    const char *body;
    const char *headers[MAX_HEADERS];
    int nheaders;
    struct curl_slist *hlist;
    struct samples s;
};

struct slot {
    CURL *easy;
    int kind; /* 0 main, 1 alt */
    long index;
    double t_start; /* latency origin: send time, or due time in the open loop */
    double due;     /* next send time while waiting in the heap */
    bool in_window;
    char *url;
    char *body;
    char *resp;
    size_t resp_len, resp_cap;
    bool busy;
    struct shard *shard;
};

static struct target targets[2];
static char **ids;
static size_t nids;
static bool id_cycle;
static long next_request;
static const char *method = "GET";
static FILE *save_ids;
static long timeout_ms = 60000;
static char first_error[256];

/*
 * libcurl 7.x walks every connection of a multi handle's cache on each
 * curl_multi_remove_handle() (close_connect_only), so one multi handle for C
 * connections costs O(C) per request (measured with one handle: 80 us of
 * loadgen CPU per request at 100 connections, 150 at 1,000, 384 at 5,000).
 * The slots are spread over several multi handles of at most SHARD slots
 * each, every one with its own cache, timer and epoll registrations.
 */
#define SHARD 32
struct shard {
    CURLM *multi;
    double deadline; /* absolute, from CURLMOPT_TIMERFUNCTION; < 0: none */
    bool dirty;      /* acted on since its messages were last read */
};
static struct shard *shards;
static long nshards;
static int epfd = -1;
static double t0, t_warm, t_end, t_last;
static double rate, think_min, think_max;
static long busy_main, busy_all, main_started, done_total, max_requests;
static bool stopping;
static long nslots_made;

/* closed-loop sends waiting for their time (ramp, think): a min-heap on due */
static struct slot **heap;
static long heap_n;
/* open loop: main slots with nothing in flight */
static struct slot **free_slots;
static long free_n;

static uint64_t rng_state = 1;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64: uniform in [0, 1) */
static double rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(3);
    }
    return q;
}

static void heap_push(struct slot *sl)
{
    long i = heap_n++;

    while (i > 0) {
        long parent = (i - 1) / 2;
        if (heap[parent]->due <= sl->due)
            break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = sl;
}

static struct slot *heap_pop(void)
{
    struct slot *top = heap[0], *last = heap[--heap_n];
    long i = 0;

    for (;;) {
        long c = 2 * i + 1;
        if (c >= heap_n)
            break;
        if (c + 1 < heap_n && heap[c + 1]->due < heap[c]->due)
            c++;
        if (last->due <= heap[c]->due)
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (heap_n > 0)
        heap[i] = last;
    return top;
}

static void sample_add(struct samples *s, double us)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = us;
}

/* "{id}" in tmpl replaced by id (NULL: a copy of tmpl); the result is new. */
static char *subst(const char *tmpl, const char *id)
{
    const char *p = id ? strstr(tmpl, "{id}") : NULL;
    size_t tl = strlen(tmpl), il;
    char *out;

    if (!p)
        return strdup(tmpl);
    il = strlen(id);
    out = xrealloc(NULL, tl - 4 + il + 1);
    memcpy(out, tmpl, (size_t)(p - tmpl));
    memcpy(out + (p - tmpl), id, il);
    strcpy(out + (p - tmpl) + il, p + 4);
    return out;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct slot *sl = userp;
    size_t n = size * nmemb;

    if (!save_ids)
        return n;
    if (sl->resp_len + n + 1 > sl->resp_cap) {
        sl->resp_cap = (sl->resp_len + n + 1) * 2;
        sl->resp = xrealloc(sl->resp, sl->resp_cap);
    }
    memcpy(sl->resp + sl->resp_len, data, n);
    sl->resp_len += n;
    sl->resp[sl->resp_len] = '\0';
    return n;
}

/* CURLMOPT_SOCKETFUNCTION: mirror curl's interest in a socket into epoll */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct shard *sh = userp;
    struct epoll_event ev = {0};

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (socketp) {
            (void)epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL); /* EBADF if already closed */
            curl_multi_assign(sh->multi, s, NULL);
        }
        return 0;
    }
    ev.events =
        ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    ev.data.u64 = (uint64_t)(sh - shards) << 32 | (uint32_t)s;
    if (socketp) {
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
            (void)epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
    } else {
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
            (void)epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev);
        curl_multi_assign(sh->multi, s, (void *)1);
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer per shard, absolute */
static int on_timer(CURLM *m, long ms, void *userp)
{
    struct shard *sh = userp;

    (void)m;
    sh->deadline = ms < 0 ? -1 : now_s() + (double)ms / 1000.0;
    return 0;
}

static void arm(struct slot *sl, double t_start)
{
    struct target *t = &targets[sl->kind];
    const char *id = NULL;

    free(sl->url);
    free(sl->body);
    sl->url = sl->body = NULL;
    if (nids) {
        size_t k = id_cycle ? (size_t)next_request : (size_t)sl->index;
        id = ids[k % nids];
    }
    next_request++;
    sl->url = subst(t->url, id);
    if (t->body)
        sl->body = subst(t->body, id);
    sl->resp_len = 0;
    curl_easy_setopt(sl->easy, CURLOPT_URL, sl->url);
    if (sl->body) {
        curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDS, sl->body);
        curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(sl->body));
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(sl->easy, CURLOPT_CUSTOMREQUEST, method);
    sl->t_start = t_start;
    sl->in_window = t_start >= t_warm;
    if (sl->in_window)
        t->s.started++;
    sl->busy = true;
    busy_all++;
    if (sl->kind == 0) {
        busy_main++;
        main_started++;
    }
    curl_multi_add_handle(sl->shard->multi, sl->easy);
    sl->shard->dirty = true;
}

static struct slot *slot_new(int kind, long index)
{
    struct slot *sl = calloc(1, sizeof(*sl));
    if (!sl)
        exit(3);
    sl->kind = kind;
    sl->index = index;
    sl->shard = &shards[nslots_made++ % nshards];
    sl->easy = curl_easy_init();
    if (!sl->easy)
        exit(3);
    curl_easy_setopt(sl->easy, CURLOPT_PRIVATE, sl);
    curl_easy_setopt(sl->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(sl->easy, CURLOPT_WRITEDATA, sl);
    curl_easy_setopt(sl->easy, CURLOPT_HTTPHEADER, targets[kind].hlist);
    curl_easy_setopt(sl->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(sl->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(sl->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(sl->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(sl->easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    return sl;
}

static void save_id(const char *body)
{
    const char *p = strstr(body, "\"dialog_id\"");
    const char *q;

    if (!p)
        return;
    p = strchr(p + 11, '"');
    if (!p)
        return;
    q = strchr(p + 1, '"');
    if (!q)
        return;
    fprintf(save_ids, "%.*s\n", (int)(q - p - 1), p + 1);
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

static void print_samples(const char *name, struct samples *s, double window,
                          bool by_window)
{
    double sum = 0;
    double done = by_window ? (double)s->ok_in_window : (double)s->ok;

    qsort(s->v, s->n, sizeof(*s->v), cmp_double);
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    printf("\"%s\": {\"requests\": %ld, \"ok\": %ld, \"non2xx\": %ld, \"errors\": %ld, "
           "\"warmup_excluded\": %ld, \"duration_s\": %.3f, \"rps\": %.1f, "
           "\"offered_rps\": %.1f, \"p50_us\": %.0f, \"p90_us\": %.0f, "
           "\"p99_us\": %.0f, \"p999_us\": %.0f, \"max_us\": %.0f, \"mean_us\": %.0f}",
           name, s->requests, s->ok, s->non2xx, s->errors, s->excluded, window,
           window > 0 ? done / window : 0.0,
           window > 0 ? (double)s->started / window : 0.0, pct(s, 50), pct(s, 90),
           pct(s, 99), pct(s, 99.9), s->n ? s->v[s->n - 1] : 0.0,
           s->n ? sum / (double)s->n : 0.0);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    do {
        if (cap - len < 65536) {
            cap = cap * 2 + 65536;
            buf = xrealloc(buf, cap);
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static void load_ids(const char *path)
{
    char *buf = read_file(path), *save = NULL, *line;

    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!*line)
            continue;
        ids = xrealloc(ids, (nids + 1) * sizeof(*ids));
        ids[nids++] = line;
    }
    if (!nids) {
        fprintf(stderr, "loadgen: %s: no ids\n", path);
        exit(2);
    }
}

/* an answer (or a failure): record it, then free the slot or schedule its next request */
static void on_done(CURLMsg *msg)
{
    struct slot *sl;
    struct samples *s;
    long code = 0;
    double tdone = now_s();
    bool ok = false;

    if (msg->msg != CURLMSG_DONE)
        return;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
    s = &targets[sl->kind].s;
    if (msg->data.result != CURLE_OK) {
        if (!first_error[0])
            snprintf(first_error, sizeof(first_error), "%s",
                     curl_easy_strerror(msg->data.result));
    } else {
        curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &code);
        ok = code >= 200 && code < 300;
        if (ok && save_ids && sl->resp)
            save_id(sl->resp);
        if (!ok && !first_error[0])
            snprintf(first_error, sizeof(first_error), "HTTP %ld", code);
    }
    if (sl->in_window) {
        s->requests++;
        if (msg->data.result != CURLE_OK)
            s->errors++;
        else if (ok) {
            s->ok++;
            sample_add(s, (tdone - sl->t_start) * 1e6);
        } else
            s->non2xx++;
    } else
        s->excluded++;
    if (ok && tdone >= t_warm && tdone <= t_end)
        s->ok_in_window++;
    done_total++;
    t_last = tdone;
    curl_multi_remove_handle(sl->shard->multi, sl->easy);
    sl->busy = false;
    busy_all--;
    if (sl->kind == 0)
        busy_main--;
    if (tdone >= t_end)
        stopping = true;
    if (sl->kind == 0 && rate > 0) {
        free_slots[free_n++] = sl;
    } else if (!stopping &&
               (sl->kind == 1 || !max_requests || main_started < max_requests)) {
        double think = think_min + rnd() * (think_max - think_min);
        if (think > 0) {
            sl->due = tdone + think / 1000.0;
            heap_push(sl);
        } else
            arm(sl, tdone);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --url URL [--method M] [--body S|--body-file F] "
                    "[--header H]... [--ids F] [--id-mode sticky|cycle] [--conns C] "
                    "[--duration S] [--requests N] [--rate R] [--ramp-ms MS] "
                    "[--think-ms MIN-MAX] [--warmup S] [--seed N] [--alt-url URL] "
                    "[--alt-body S] [--alt-header H]... [--alt-conns A] "
                    "[--save-ids F] [--timeout S]\n");
    exit(2);
}

/* waits for an event or until the absolute time wake (nanosecond precision) */
static int wait_events(struct epoll_event *evs, double wake)
{
    double d = wake - now_s();
    struct timespec ts;
    int n;

    if (d < 0)
        d = 0;
    ts.tv_sec = (time_t)d;
    ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
    n = epoll_pwait2(epfd, evs, MAX_EVENTS, &ts, NULL);
    if (n < 0 && errno == ENOSYS) /* kernel before 5.11: millisecond timeout */
        n = epoll_wait(epfd, evs, MAX_EVENTS, (int)ceil(d * 1000.0));
    return n;
}

int main(int argc, char **argv)
{
    long conns = 1, alt_conns = 0;
    double duration = 0, ramp_ms = 0, warmup = -1;
    unsigned long long seed = 1;
    struct slot **slots;
    long nslots = 0;
    int running = 0;
    struct rlimit rl;
    struct rusage ru;
    struct epoll_event evs[MAX_EVENTS];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--url"))
            targets[0].url = v;
        else if (!strcmp(a, "--method"))
            method = v;
        else if (!strcmp(a, "--body"))
            targets[0].body = v;
        else if (!strcmp(a, "--body-file"))
            targets[0].body = read_file(v);
        else if (!strcmp(a, "--header") && targets[0].nheaders < MAX_HEADERS)
            targets[0].headers[targets[0].nheaders++] = v;
        else if (!strcmp(a, "--ids"))
            load_ids(v);
        else if (!strcmp(a, "--id-mode"))
            id_cycle = !strcmp(v, "cycle");
        else if (!strcmp(a, "--conns"))
            conns = atol(v);
        else if (!strcmp(a, "--duration"))
            duration = atof(v);
        else if (!strcmp(a, "--requests"))
            max_requests = atol(v);
        else if (!strcmp(a, "--rate"))
            rate = atof(v);
        else if (!strcmp(a, "--ramp-ms"))
            ramp_ms = atof(v);
        else if (!strcmp(a, "--think-ms")) {
            char *end;
            think_min = strtod(v, &end);
            think_max = *end == '-' ? strtod(end + 1, &end) : think_min;
            if (*end || think_min < 0 || think_max < think_min)
                usage();
        } else if (!strcmp(a, "--warmup"))
            warmup = atof(v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--alt-url"))
            targets[1].url = v;
        else if (!strcmp(a, "--alt-body"))
            targets[1].body = v;
        else if (!strcmp(a, "--alt-header") && targets[1].nheaders < MAX_HEADERS)
            targets[1].headers[targets[1].nheaders++] = v;
        else if (!strcmp(a, "--alt-conns"))
            alt_conns = atol(v);
        else if (!strcmp(a, "--save-ids")) {
            save_ids = fopen(v, "a");
            if (!save_ids) {
                fprintf(stderr, "loadgen: %s: %s\n", v, strerror(errno));
                return 2;
            }
        } else if (!strcmp(a, "--timeout"))
            timeout_ms = (long)(atof(v) * 1000);
        else
            usage();
    }
    if (!targets[0].url || conns < 1 || (duration <= 0 && max_requests <= 0) ||
        ramp_ms < 0)
        usage();
    if (!targets[1].url)
        alt_conns = 0;
    if (warmup < 0)
        warmup = ramp_ms / 1000.0;
    rng_state = seed;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int k = 0; k < 2; k++) {
        targets[k].hlist = curl_slist_append(NULL, "Expect:");
        if (targets[k].body)
            targets[k].hlist =
                curl_slist_append(targets[k].hlist, "Content-Type: application/json");
        for (int h = 0; h < targets[k].nheaders; h++)
            targets[k].hlist = curl_slist_append(targets[k].hlist, targets[k].headers[h]);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("loadgen: epoll_create1");
        return 3;
    }
    nshards = (conns + alt_conns + SHARD - 1) / SHARD;
    shards = calloc((size_t)nshards, sizeof(*shards));
    if (!shards)
        return 3;
    for (long k = 0; k < nshards; k++) {
        CURLM *m = curl_multi_init();
        if (!m)
            return 3;
        shards[k].multi = m;
        shards[k].deadline = -1;
        curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)SHARD + 4);
        curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(m, CURLMOPT_SOCKETDATA, &shards[k]);
        curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(m, CURLMOPT_TIMERDATA, &shards[k]);
    }
    slots = calloc((size_t)(conns + alt_conns), sizeof(*slots));
    heap = calloc((size_t)(conns + alt_conns), sizeof(*heap));
    free_slots = calloc((size_t)conns, sizeof(*free_slots));
    if (!slots || !heap || !free_slots)
        return 3;

    t0 = now_s();
    t_warm = t0 + warmup;
    t_end = duration > 0 ? t_warm + duration : 1e300;
    /* closed-loop connections: all at once, or each at a random instant of the ramp */
    for (long a = 0; a < alt_conns + (rate > 0 ? 0 : conns); a++) {
        int kind = a < alt_conns ? 1 : 0;
        struct slot *sl = slot_new(kind, kind ? a : a - alt_conns);
        slots[nslots++] = sl;
        sl->due = t0 + rnd() * ramp_ms / 1000.0;
        if (ramp_ms > 0)
            heap_push(sl);
        else if (!kind && max_requests && main_started >= max_requests)
            continue;
        else
            arm(sl, now_s());
    }

    for (;;) {
        double t = now_s(), wake = t + 0.1;
        struct shard *sh;
        int n;

        if (t >= t_end)
            stopping = true;
        if (max_requests && main_started >= max_requests && (rate > 0 || !busy_main))
            stopping = true;
        /* closed loop: send what the ramp or the think time held back */
        while (!stopping && heap_n && heap[0]->due <= t) {
            struct slot *sl = heap_pop();
            if (sl->kind == 0 && max_requests && main_started >= max_requests)
                continue;
            arm(sl, t);
        }
        if (!stopping && heap_n && heap[0]->due < wake)
            wake = heap[0]->due;
        /* open loop: start every request that is due, on a free slot */
        while (rate > 0 && !stopping && (!max_requests || main_started < max_requests)) {
            double due = t0 + (double)main_started / rate;
            struct slot *sl = NULL;
            if (due > t) {
                if (due < wake)
                    wake = due;
                break;
            }
            if (free_n)
                sl = free_slots[--free_n];
            else if (nslots < conns + alt_conns) {
                sl = slot_new(0, nslots - alt_conns);
                slots[nslots++] = sl;
            } else
                break; /* all C in flight: the next answer frees one */
            arm(sl, due);
        }
        if (stopping && !busy_all)
            break;
        for (long k = 0; k < nshards; k++)
            if (shards[k].deadline >= 0 && shards[k].deadline < wake)
                wake = shards[k].deadline;

        n = wait_events(evs, wake);
        for (int i = 0; i < n; i++) {
            int f = 0;
            if (evs[i].events & EPOLLIN)
                f |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                f |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                f |= CURL_CSELECT_ERR;
            sh = &shards[evs[i].data.u64 >> 32];
            curl_multi_socket_action(sh->multi, (curl_socket_t)(uint32_t)evs[i].data.u64,
                                     f, &running);
            sh->dirty = true;
        }
        t = now_s();
        for (long k = 0; k < nshards; k++) {
            sh = &shards[k];
            if (sh->deadline >= 0 && t >= sh->deadline) {
                sh->deadline = -1;
                curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
                sh->dirty = true;
            }
        }

        for (long k = 0; k < nshards; k++) {
            struct shard *sh = &shards[k];
            CURLMsg *msg;
            int left;
            if (!sh->dirty)
                continue;
            sh->dirty = false;
            while ((msg = curl_multi_info_read(sh->multi, &left)))
                on_done(msg);
        }
    }

    {
        bool by_window = duration > 0;
        double window = by_window ? t_end - t_warm : t_last - t_warm;
        double cpu;
        if (window <= 0)
            window = now_s() - t_warm;
        getrusage(RUSAGE_SELF, &ru);
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        printf("{");
        print_samples("main", &targets[0].s, window, by_window);
        if (targets[1].url) {
            printf(", ");
            print_samples("alt", &targets[1].s, window, by_window);
        }
        printf(
            ", \"first_error\": \"%s\", \"config\": {\"conns\": %ld, \"alt_conns\": %ld, "
            "\"rate\": %.1f, \"ramp_ms\": %.0f, \"think_ms_min\": %.0f, "
            "\"think_ms_max\": %.0f, \"warmup_s\": %.3f, \"seed\": %llu}, "
            "\"loadgen_cpu_s\": %.3f, \"loadgen_requests\": %ld, "
            "\"loadgen_cpu_us_per_request\": %.1f}\n",
            first_error, conns, alt_conns, rate, ramp_ms, think_min, think_max, warmup,
            seed, cpu, done_total, done_total ? cpu / (double)done_total * 1e6 : 0.0);
    }
    for (long k = 0; k < nslots; k++) {
        if (slots[k]->busy)
            curl_multi_remove_handle(slots[k]->shard->multi, slots[k]->easy);
        curl_easy_cleanup(slots[k]->easy);
        free(slots[k]->url);
        free(slots[k]->body);
        free(slots[k]->resp);
        free(slots[k]);
    }
    free(slots);
    free(heap);
    free(free_slots);
    for (long k = 0; k < nshards; k++)
        curl_multi_cleanup(shards[k].multi);
    free(shards);
    if (save_ids)
        fclose(save_ids);
    curl_global_cleanup();
    return 0;
}
