/* SPDX-License-Identifier: MIT */
/*
 * loadgen - a small HTTP load generator on libcurl multi, for the scenarios
 * wrk cannot express: open-loop constant rate, 10,000 concurrent connections,
 * two interleaved targets, and latency percentiles from recorded samples.
 *
 *   loadgen --url URL [--method M] [--body S | --body-file F] [--header H]...
 *           [--ids FILE] [--id-mode sticky|cycle]
 *           [--conns C] [--duration S] [--requests N] [--rate R]
 *           [--alt-url URL] [--alt-body S] [--alt-header H]... [--alt-conns A]
 *           [--save-ids FILE] [--timeout S]
 *
 * "{id}" in URL or body is replaced by a line of --ids: sticky = connection i
 * always uses line i % n, cycle = request j uses line j % n.
 * Closed loop (default): C connections each send the next request as soon as
 * the previous one is answered, until --duration seconds or --requests have
 * passed. Open loop (--rate R): a request is due every 1/R s whatever the
 * answers; latency is counted from the due time (no coordinated omission);
 * at most C requests are in flight, a due request waits for a free one.
 * --alt-*: A more closed-loop connections to a second target, at the same time;
 * their samples are reported apart ("alt"), e.g. straight to the upstream.
 * --save-ids: the "dialog_id" of every 2xx answer is appended to FILE.
 *
 * Prints one JSON object on stdout:
 *   {"main": {"requests","ok","non2xx","errors","duration_s","rps",
 *             "p50_us","p90_us","p99_us","p999_us","max_us","mean_us"},
 *    "alt": {...} (only with --alt-url), "first_error": "..."}
 * Exit 0 when the run completed (whatever the answers), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define MAX_HEADERS 16

struct samples {
    double *v;
    size_t n, cap;
    long requests, ok, non2xx, errors;
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
    double t_start;
    char *url;
    char *body;
    char *resp;
    size_t resp_len, resp_cap;
    bool busy;
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
        fprintf(stderr, "loadgen: out of memory\n");
        exit(3);
    }
    return q;
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

static void arm(CURLM *multi, struct slot *sl, double t_start)
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
    sl->busy = true;
    curl_multi_add_handle(multi, sl->easy);
}

static struct slot *slot_new(int kind, long index)
{
    struct slot *sl = calloc(1, sizeof(*sl));
    if (!sl)
        exit(3);
    sl->kind = kind;
    sl->index = index;
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

static void print_samples(const char *name, struct samples *s, double dur)
{
    double sum = 0;

    qsort(s->v, s->n, sizeof(*s->v), cmp_double);
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    printf("\"%s\": {\"requests\": %ld, \"ok\": %ld, \"non2xx\": %ld, \"errors\": %ld, "
           "\"duration_s\": %.3f, \"rps\": %.1f, \"p50_us\": %.0f, \"p90_us\": %.0f, "
           "\"p99_us\": %.0f, \"p999_us\": %.0f, \"max_us\": %.0f, \"mean_us\": %.0f}",
           name, s->requests, s->ok, s->non2xx, s->errors, dur,
           dur > 0 ? (double)s->ok / dur : 0.0, pct(s, 50), pct(s, 90), pct(s, 99),
           pct(s, 99.9), s->n ? s->v[s->n - 1] : 0.0, s->n ? sum / (double)s->n : 0.0);
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

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --url URL [--method M] [--body S|--body-file F] "
                    "[--header H]... [--ids F] [--id-mode sticky|cycle] [--conns C] "
                    "[--duration S] [--requests N] [--rate R] [--alt-url URL] "
                    "[--alt-body S] [--alt-header H]... [--alt-conns A] "
                    "[--save-ids F] [--timeout S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long conns = 1, alt_conns = 0, max_requests = 0;
    double duration = 0, rate = 0;
    struct slot **slots;
    long nslots = 0, started = 0;
    CURLM *multi;
    double t0, t_end, t_last = 0;
    bool stopping = false;
    int running = 0;
    struct rlimit rl;

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
    if (!targets[0].url || conns < 1 || (duration <= 0 && max_requests <= 0))
        usage();
    if (!targets[1].url)
        alt_conns = 0;

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
    multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conns + alt_conns + 16);
    slots = calloc((size_t)(conns + alt_conns), sizeof(*slots));
    if (!slots)
        return 3;

    t0 = now_s();
    t_end = duration > 0 ? t0 + duration : 1e300;
    for (long a = 0; a < alt_conns; a++) {
        slots[nslots] = slot_new(1, a);
        arm(multi, slots[nslots++], now_s());
    }
    if (rate <= 0) {
        for (long c = 0; c < conns && (!max_requests || started < max_requests); c++) {
            slots[nslots] = slot_new(0, c);
            arm(multi, slots[nslots++], now_s());
            started++;
        }
    }

    for (;;) {
        double t = now_s();
        int timeout = 100, left;
        CURLMsg *msg;

        if (t >= t_end)
            stopping = true;
        /* open loop: start every request that is due, on a free slot */
        while (rate > 0 && !stopping && (!max_requests || started < max_requests)) {
            double due = t0 + (double)started / rate;
            struct slot *free_slot = NULL;
            if (due > t) {
                double ms = (due - t) * 1000.0;
                timeout = ms < 1 ? 1 : (int)ms;
                break;
            }
            for (long k = alt_conns; k < nslots; k++)
                if (!slots[k]->busy) {
                    free_slot = slots[k];
                    break;
                }
            if (!free_slot && nslots < conns + alt_conns) {
                slots[nslots] = slot_new(0, nslots - alt_conns);
                free_slot = slots[nslots++];
            }
            if (!free_slot) {
                timeout = 1;
                break;
            }
            arm(multi, free_slot, due);
            started++;
        }
        if (max_requests && started >= max_requests && rate > 0)
            stopping = true;

        curl_multi_perform(multi, &running);
        while ((msg = curl_multi_info_read(multi, &left))) {
            struct slot *sl;
            struct samples *s;
            long code = 0;
            double tdone = now_s();

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
            s = &targets[sl->kind].s;
            s->requests++;
            if (msg->data.result != CURLE_OK) {
                s->errors++;
                if (!first_error[0])
                    snprintf(first_error, sizeof(first_error), "%s",
                             curl_easy_strerror(msg->data.result));
            } else {
                curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &code);
                if (code >= 200 && code < 300) {
                    s->ok++;
                    sample_add(s, (tdone - sl->t_start) * 1e6);
                    if (save_ids && sl->resp)
                        save_id(sl->resp);
                } else {
                    s->non2xx++;
                    if (!first_error[0])
                        snprintf(first_error, sizeof(first_error), "HTTP %ld", code);
                }
            }
            t_last = tdone;
            curl_multi_remove_handle(multi, sl->easy);
            sl->busy = false;
            if (tdone >= t_end)
                stopping = true;
            if (sl->kind == 1) {
                if (!stopping)
                    arm(multi, sl, tdone);
            } else if (rate <= 0 && !stopping &&
                       (!max_requests || started < max_requests)) {
                arm(multi, sl, tdone);
                started++;
            }
        }
        {
            bool main_busy = false;
            for (long k = alt_conns; k < nslots; k++)
                main_busy |= slots[k]->busy;
            if (!main_busy && (stopping || (max_requests && started >= max_requests)))
                stopping = true;
            /* done when nothing of the main target is due or in flight */
            if (stopping && !main_busy) {
                bool any = false;
                for (long k = 0; k < nslots; k++)
                    any |= slots[k]->busy;
                if (!any)
                    break;
            }
        }
        curl_multi_poll(multi, NULL, 0, timeout, NULL);
    }

    {
        double dur = t_last - t0;
        if (dur <= 0)
            dur = now_s() - t0;
        printf("{");
        print_samples("main", &targets[0].s, dur);
        if (targets[1].url) {
            printf(", ");
            print_samples("alt", &targets[1].s, dur);
        }
        printf(", \"first_error\": \"%s\"}\n", first_error);
    }
    for (long k = 0; k < nslots; k++) {
        curl_easy_cleanup(slots[k]->easy);
        free(slots[k]->url);
        free(slots[k]->body);
        free(slots[k]->resp);
        free(slots[k]);
    }
    free(slots);
    curl_multi_cleanup(multi);
    if (save_ids)
        fclose(save_ids);
    curl_global_cleanup();
    return 0;
}
