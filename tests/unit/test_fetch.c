/* SPDX-License-Identifier: MIT */
/*
 * Tests for src/fetch.c against a test HTTP server in this process: a
 * libmicrohttpd daemon on 127.0.0.1, port 0, one thread per connection, so a
 * handler may sleep (a slow answer, a hanging one) without holding up the
 * others. Its paths:
 *   /ok               200 "ok"
 *   /slow?ms=N        200 "slow" after N ms
 *   /poll?ms=N        the same, counted apart (the long poll)
 *   /hang             no answer until the client leaves (at most 30 s)
 *   /big?n=N          200 with N bytes of 'x'
 *   /err?status=S&n=N status S with N bytes of JSON-ish text
 *   /echo             200 "METHOD|X-Test header|body"
 *   /seq              the next step of the script set by script() (status,
 *                     Retry-After, retry-after-ms), 200 "done" after the last
 *   /cut              announces 1000 bytes, sends 10, closes the connection
 * A handler that waits stops when its client closes the connection, so no
 * test sees the leftovers of another. Every wait is bounded, so a bug fails a
 * test instead of hanging it.
 */
#include "cca_test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>

#include "cca/common.h"
#include "cca/fetch.h"
#include "cca/mem.h"

/* ------------------------------------------------------------ the server */

struct step {
    int status;
    const char *retry_after;
    const char *retry_after_ms;
};

static struct {
    struct MHD_Daemon *d;
    char base[64]; /* http://127.0.0.1:PORT */
    atomic_bool stop;
    atomic_int requests;
    atomic_int in_flight;
    atomic_int max_in_flight;
    atomic_int slow_in_flight;
    atomic_int max_slow;
    atomic_int poll_in_flight;
    pthread_mutex_t lock;
    struct step script[8];
    size_t script_len, script_pos;
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct upload {
    char body[1024];
    size_t len;
};

/* Has the client closed its side of @c? */
static bool client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    char b;

    return ci != NULL && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Sleep @ms, less when the server stops or the client leaves. */
static void srv_sleep(struct MHD_Connection *c, long ms)
{
    int64_t end = cca_time_mono_ms() + ms;

    while (!atomic_load(&srv.stop) && cca_time_mono_ms() < end && !client_gone(c))
        usleep(2000);
}

static void track_max(atomic_int *max, int now)
{
    int m = atomic_load(max);

    while (now > m && !atomic_compare_exchange_weak(max, &m, now))
        ;
}

static long arg_long(struct MHD_Connection *c, const char *name, long dflt)
{
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);

    return v != NULL ? atol(v) : dflt;
}

static ssize_t cut_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= 10 || max < 10)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    memset(buf, 'c', 10);
    return 10;
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *body,
                              size_t len, const struct step *st)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (st != NULL && st->retry_after != NULL)
        MHD_add_response_header(r, "Retry-After", st->retry_after);
    if (st != NULL && st->retry_after_ms != NULL)
        MHD_add_response_header(r, "retry-after-ms", st->retry_after_ms);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond(struct MHD_Connection *c, const char *url,
                               const char *method, const struct upload *up)
{
    char buf[1200];
    char *big;
    enum MHD_Result ret;
    long n;

    if (strcmp(url, "/ok") == 0)
        return answer(c, 200, "ok", 2, NULL);
    if (strcmp(url, "/slow") == 0) {
        track_max(&srv.max_slow, atomic_fetch_add(&srv.slow_in_flight, 1) + 1);
        srv_sleep(c, arg_long(c, "ms", 1000));
        atomic_fetch_sub(&srv.slow_in_flight, 1);
        return answer(c, 200, "slow", 4, NULL);
    }
    if (strcmp(url, "/poll") == 0) {
        atomic_fetch_add(&srv.poll_in_flight, 1);
        srv_sleep(c, arg_long(c, "ms", 1000));
        atomic_fetch_sub(&srv.poll_in_flight, 1);
        return answer(c, 200, "poll", 4, NULL);
    }
    if (strcmp(url, "/hang") == 0) {
        srv_sleep(c, 30000);
        return MHD_NO; /* close without an answer */
    }
    if (strcmp(url, "/big") == 0 || strcmp(url, "/err") == 0) {
        n = arg_long(c, "n", 0);
        big = cca_xmalloc((size_t)n + 1);
        memset(big, 'x', (size_t)n);
        if (n > 0)
            big[0] = '{';
        ret = answer(c, (unsigned)arg_long(c, "status", 200), big, (size_t)n, NULL);
        free(big);
        return ret;
    }
    if (strcmp(url, "/echo") == 0) {
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Test");

        snprintf(buf, sizeof(buf), "%s|%s|%.*s", method, h != NULL ? h : "-",
                 (int)up->len, up->body);
        return answer(c, 200, buf, strlen(buf), NULL);
    }
    if (strcmp(url, "/seq") == 0) {
        struct step st = {.status = 200};

        pthread_mutex_lock(&srv.lock);
        if (srv.script_pos < srv.script_len)
            st = srv.script[srv.script_pos++];
        pthread_mutex_unlock(&srv.lock);
        if (st.status == 200)
            return answer(c, 200, "done", 4, NULL);
        snprintf(buf, sizeof(buf), "{\"error\":%d}", st.status);
        return answer(c, (unsigned)st.status, buf, strlen(buf), &st);
    }
    if (strcmp(url, "/cut") == 0) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(1000, 1024, cut_reader, NULL, NULL);

        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    return answer(c, 404, "no", 2, NULL);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    struct upload *up = *con_cls;
    enum MHD_Result ret;

    (void)cls;
    (void)version;
    if (up == NULL) {
        *con_cls = cca_xcalloc(1, sizeof(*up));
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t room = sizeof(up->body) - up->len;
        size_t n = *upload_data_size < room ? *upload_data_size : room;

        memcpy(up->body + up->len, upload_data, n);
        up->len += n;
        *upload_data_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&srv.requests, 1);
    track_max(&srv.max_in_flight, atomic_fetch_add(&srv.in_flight, 1) + 1);
    ret = respond(c, url, method, up);
    atomic_fetch_sub(&srv.in_flight, 1);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void script(const struct step *steps, size_t n)
{
    pthread_mutex_lock(&srv.lock);
    if (n > 0)
        memcpy(srv.script, steps, n * sizeof(*steps));
    srv.script_len = n;
    srv.script_pos = 0;
    pthread_mutex_unlock(&srv.lock);
}

static void url_of(char *buf, size_t size, const char *path)
{
    snprintf(buf, size, "%s%s", srv.base, path);
}

/* A port on 127.0.0.1 where nothing listens (bound, then closed). */
static unsigned closed_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------ result capture */

struct got {
    int tag;
    cca_rc rc;
    enum cca_fetch_end end;
    enum cca_fetch_error error;
    long status;
    unsigned attempts;
    int64_t upstream_ms;
    int64_t at_ms; /* when the callback ran */
    char *body;    /* moved out of the result */
    size_t body_len;
    char error_text[CCA_FETCH_ERROR_LEN];
};

struct waiter;

struct tagged {
    struct waiter *w;
    int tag;
};

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t got, cap;
    struct got *res;
    struct tagged *tags;
};

static void waiter_init(struct waiter *w, size_t cap)
{
    pthread_condattr_t ca;

    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->cap = cap;
    w->res = cca_xcalloc(cap, sizeof(*w->res));
    w->tags = cca_xcalloc(cap, sizeof(*w->tags));
}

static void waiter_cleanup(struct waiter *w)
{
    size_t i;

    for (i = 0; i < w->got && i < w->cap; i++)
        free(w->res[i].body);
    free(w->res);
    free(w->tags);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

static void on_done(void *ctx, struct cca_fetch_result *r)
{
    struct tagged *t = ctx;
    struct waiter *w = t->w;
    struct got *g;

    pthread_mutex_lock(&w->lock);
    if (w->got < w->cap) {
        g = &w->res[w->got];
        g->tag = t->tag;
        g->rc = r->rc;
        g->end = r->end;
        g->error = r->error;
        g->status = r->status;
        g->attempts = r->attempts;
        g->upstream_ms = r->upstream_ms;
        g->at_ms = cca_time_mono_ms();
        g->body = r->body; /* moved out */
        g->body_len = r->body_len;
        r->body = NULL;
        memcpy(g->error_text, r->error_text, sizeof(g->error_text));
    }
    w->got++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Wait until @n results arrived or @timeout_ms passed. Returns true on success. */
static bool waiter_wait(struct waiter *w, size_t n, int64_t timeout_ms)
{
    int64_t end = cca_time_mono_ms() + timeout_ms;
    struct timespec ts;
    bool ok;

    ts.tv_sec = end / 1000;
    ts.tv_nsec = (end % 1000) * 1000000L;
    pthread_mutex_lock(&w->lock);
    while (w->got < n) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &ts) == ETIMEDOUT)
            break;
    }
    ok = w->got >= n;
    pthread_mutex_unlock(&w->lock);
    return ok;
}

/* The result with @tag, or fail. */
static const struct got *got_tag(struct waiter *w, int tag)
{
    size_t i;

    for (i = 0; i < w->got && i < w->cap; i++)
        if (w->res[i].tag == tag)
            return &w->res[i];
    fail_msg("no result for tag %d", tag);
    return NULL;
}

static struct cca_fetch *make_fetch(void)
{
    struct cca_fetch *f = NULL;
    struct cca_error err = {0};

    assert_int_equal(cca_fetch_new(NULL, &f, &err), CCA_OK);
    assert_non_null(f);
    return f;
}

static struct cca_fetch_lane *make_lane(struct cca_fetch *f, const char *name,
                                        unsigned cap)
{
    struct cca_fetch_lane_params p = {.name = name, .max_in_flight = cap};
    struct cca_fetch_lane *lane = NULL;

    assert_int_equal(cca_fetch_lane_new(f, &p, &lane), CCA_OK);
    assert_non_null(lane);
    return lane;
}

/* A request for @path with the usual settings: deadline in @deadline_in_ms. */
static struct cca_fetch_request req_for(char *url, size_t url_size, const char *path,
                                        int64_t deadline_in_ms)
{
    url_of(url, url_size, path);
    return (struct cca_fetch_request){
        .url = url,
        .connect_timeout_ms = 1000,
        .deadline_ms = cca_time_mono_ms() + deadline_in_ms,
        .max_retries = 2,
        .backoff_base_ms = 20,
        .max_response_bytes = 64 * 1024,
    };
}

static uint64_t start(struct cca_fetch *f, struct waiter *w, int tag,
                      struct cca_fetch_request *req)
{
    uint64_t id = 0;

    assert_true((size_t)tag < w->cap);
    w->tags[tag] = (struct tagged){.w = w, .tag = tag};
    assert_int_equal(cca_fetch_start(f, req, on_done, &w->tags[tag], &id), CCA_OK);
    assert_true(id > 0);
    assert_null(req->body);
    return id;
}

/* Run one request to completion; its result is w->res[0]. */
static const struct got *run_one(struct cca_fetch *f, struct waiter *w,
                                 struct cca_fetch_request *req)
{
    int64_t limit = req->deadline_ms != CCA_FETCH_NO_DEADLINE
                        ? req->deadline_ms - cca_time_mono_ms() + 5000
                        : 30000;

    waiter_init(w, 1);
    (void)start(f, w, 0, req);
    assert_true(waiter_wait(w, 1, limit));
    return &w->res[0];
}

/* ------------------------------------------------------ fixtures */

static int group_setup(void **state)
{
    struct sockaddr_in a;
    const union MHD_DaemonInfo *info;

    (void)state;
    cca_mem_install_jansson();
    json_object_seed(0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv.d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
        handler, NULL, MHD_OPTION_SOCK_ADDR, &a, MHD_OPTION_NOTIFY_COMPLETED, completed,
        NULL, MHD_OPTION_CONNECTION_LIMIT, 500U, MHD_OPTION_END);
    if (srv.d == NULL)
        return -1;
    info = MHD_get_daemon_info(srv.d, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0)
        return -1;
    snprintf(srv.base, sizeof(srv.base), "http://127.0.0.1:%u", (unsigned)info->port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    atomic_store(&srv.stop, true);
    if (srv.d != NULL)
        MHD_stop_daemon(srv.d);
    curl_global_cleanup();
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    script(NULL, 0);
    atomic_store(&srv.requests, 0);
    atomic_store(&srv.max_in_flight, atomic_load(&srv.in_flight));
    atomic_store(&srv.max_slow, atomic_load(&srv.slow_in_flight));
    return 0;
}

/* ------------------------------------------------------------ tests */

static void test_get_ok(void **state)
{
    int before = count_threads();
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/ok", 5000);
    const struct got *g;
    int tries;

    (void)state;
    /* exactly one thread for the client */
    assert_int_equal(count_threads(), before + 1);
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->end, CCA_FETCH_END_FINAL);
    assert_int_equal(g->error, CCA_FETCH_E_NONE);
    assert_int_equal(g->status, 200);
    assert_int_equal(g->attempts, 1);
    assert_int_equal(g->body_len, 2);
    assert_string_equal(g->body, "ok");
    assert_string_equal(g->error_text, "");
    assert_true(g->upstream_ms >= 0);
    waiter_cleanup(&w);
    cca_fetch_free(f);
    /* the server's connection thread ends once it sees the connection closed */
    for (tries = 0; tries < 200 && count_threads() != before; tries++)
        usleep(5 * 1000);
    assert_int_equal(count_threads(), before);
}

static void test_methods_headers_body(void **state)
{
    static const char *const lines[] = {"X-Test: abc", "Expect:", NULL};
    struct cca_fetch *f = make_fetch();
    struct cca_fetch_headers *h = NULL;
    struct cca_error err = {0};
    struct waiter w;
    char url[128];
    struct cca_fetch_request req;
    const struct got *g;

    (void)state;
    assert_int_equal(cca_fetch_headers_new(lines, &h, &err), CCA_OK);

    /* a body without a method is a POST */
    req = req_for(url, sizeof(url), "/echo", 5000);
    req.headers = h;
    req.body = cca_xstrdup("{\"a\":1}");
    req.body_len = strlen(req.body);
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_string_equal(g->body, "POST|abc|{\"a\":1}");
    waiter_cleanup(&w);

    /* no body, no method: GET */
    req = req_for(url, sizeof(url), "/echo", 5000);
    g = run_one(f, &w, &req);
    assert_string_equal(g->body, "GET|-|");
    waiter_cleanup(&w);

    /* a custom method with a body */
    req = req_for(url, sizeof(url), "/echo", 5000);
    req.method = "PUT";
    req.headers = h;
    req.body = cca_xstrdup("put-body");
    req.body_len = 3; /* only the first 3 bytes are sent */
    g = run_one(f, &w, &req);
    assert_string_equal(g->body, "PUT|abc|put");
    waiter_cleanup(&w);

    req = req_for(url, sizeof(url), "/echo", 5000);
    req.method = "DELETE";
    g = run_one(f, &w, &req);
    assert_string_equal(g->body, "DELETE|-|");
    waiter_cleanup(&w);

    /* HEAD: the status, no body */
    req = req_for(url, sizeof(url), "/echo", 5000);
    req.method = "HEAD";
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->status, 200);
    assert_int_equal(g->body_len, 0);
    waiter_cleanup(&w);

    cca_fetch_free(f);
    cca_fetch_headers_free(h);
}

static void test_headers_invalid(void **state)
{
    static const char *const bad[][2] = {
        {"X-Secret: v1\r\nX-Injected: 1", NULL},
        {"no colon here", NULL},
        {": no name", NULL},
        {"Bad Name: value", NULL},
        {"X-Ok: fine\n", NULL},
    };
    struct cca_fetch_headers *h = NULL;
    struct cca_error err = {0};
    size_t i;

    (void)state;
    for (i = 0; i < CCA_ARRAY_SIZE(bad); i++) {
        assert_int_equal(cca_fetch_headers_new(bad[i], &h, &err), CCA_ERR_INVALID);
        assert_null(h);
        assert_null(strstr(err.msg, "v1")); /* the value never shows up */
    }
    assert_int_equal(cca_fetch_headers_new(NULL, &h, NULL), CCA_ERR_INVALID);
    cca_fetch_headers_free(NULL);
}

static void test_retry_after_seconds(void **state)
{
    static const struct step steps[] = {{503, "1", NULL}};
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/seq", 10000);
    int64_t t0 = cca_time_mono_ms();
    const struct got *g;

    (void)state;
    script(steps, CCA_ARRAY_SIZE(steps));
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->attempts, 2);
    assert_string_equal(g->body, "done");
    assert_true(g->at_ms - t0 >= 950);
    assert_true(g->at_ms - t0 < 5000);
    assert_int_equal(atomic_load(&srv.requests), 2);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_retry_after_ms_and_backoff(void **state)
{
    static const struct step ms[] = {{429, "30", "200"}};
    static const struct step five[] = {{500, NULL, NULL}, {502, NULL, NULL}};
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/seq", 10000);
    int64_t t0 = cca_time_mono_ms();
    const struct got *g;

    (void)state;
    /* retry-after-ms wins over Retry-After */
    script(ms, CCA_ARRAY_SIZE(ms));
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->attempts, 2);
    assert_true(g->at_ms - t0 >= 190);
    assert_true(g->at_ms - t0 < 2000);
    waiter_cleanup(&w);

    /* no Retry-After: jittered backoff from 20 ms, 2 retries */
    script(five, CCA_ARRAY_SIZE(five));
    req = req_for(url, sizeof(url), "/seq", 10000);
    t0 = cca_time_mono_ms();
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->attempts, 3);
    assert_true(g->at_ms - t0 < 1000);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_exhausted(void **state)
{
    static const struct step steps[] = {
        {500, NULL, NULL}, {500, NULL, NULL}, {500, NULL, NULL}, {500, NULL, NULL}};
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/seq", 5000);
    const struct got *g;

    (void)state;
    script(steps, CCA_ARRAY_SIZE(steps));
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_ERR_UPSTREAM);
    assert_int_equal(g->end, CCA_FETCH_END_EXHAUSTED);
    assert_int_equal(g->error, CCA_FETCH_E_NONE);
    assert_int_equal(g->attempts, 3);
    assert_int_equal(g->status, 500);
    assert_string_equal(g->body, "{\"error\":500}"); /* the last error body */
    assert_int_equal(atomic_load(&srv.requests), 3);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_no_time_for_retry(void **state)
{
    static const struct step steps[] = {{429, "30", NULL}};
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/seq", 3000);
    int64_t t0 = cca_time_mono_ms();
    const struct got *g;

    (void)state;
    script(steps, CCA_ARRAY_SIZE(steps));
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_ERR_TIMEOUT);
    assert_int_equal(g->end, CCA_FETCH_END_NO_TIME);
    assert_int_equal(g->attempts, 1);
    assert_int_equal(g->status, 429);
    assert_true(g->at_ms - t0 < 2000); /* at once, not at the deadline */
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_deadline_cuts_attempt(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/hang", 600);
    int64_t t0 = cca_time_mono_ms(), took;
    const struct got *g;

    (void)state;
    g = run_one(f, &w, &req);
    took = g->at_ms - t0;
    assert_int_equal(g->rc, CCA_ERR_TIMEOUT);
    assert_int_equal(g->end, CCA_FETCH_END_DEADLINE);
    assert_int_equal(g->error, CCA_FETCH_E_DEADLINE);
    assert_int_equal(g->attempts, 1);
    assert_true(took >= 550);
    assert_true(took < 1500);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

/* Callbacks run on the fetch thread: they record, the test thread asserts. */
static atomic_int seen_timeouts;
static atomic_bool seen_wrong_ctx;

static enum cca_fetch_verdict count_timeouts(void *ctx, const struct cca_fetch_attempt *a)
{
    if (ctx != &seen_timeouts)
        atomic_store(&seen_wrong_ctx, true);
    if (a->error == CCA_FETCH_E_TIMEOUT)
        atomic_fetch_add(&seen_timeouts, 1);
    return cca_fetch_classify_default(NULL, a);
}

static void test_attempt_timeout_retried(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/slow?ms=1500", 10000);
    int64_t t0 = cca_time_mono_ms(), took;
    const struct got *g;

    (void)state;
    atomic_store(&seen_timeouts, 0);
    req.attempt_timeout_ms = 300;
    req.max_retries = 1;
    req.classify = count_timeouts;
    req.classify_ctx = &seen_timeouts;
    g = run_one(f, &w, &req);
    took = g->at_ms - t0;
    assert_int_equal(g->rc, CCA_ERR_UPSTREAM);
    assert_int_equal(g->end, CCA_FETCH_END_EXHAUSTED);
    assert_int_equal(g->error, CCA_FETCH_E_TIMEOUT);
    assert_int_equal(g->attempts, 2);
    assert_int_equal(atomic_load(&seen_timeouts), 2);
    assert_false(atomic_load(&seen_wrong_ctx));
    assert_true(took >= 550);
    assert_true(took < 3000);
    assert_true(g->upstream_ms >= 550);
    waiter_cleanup(&w);

    /* no deadline at all: the attempt timeout alone bounds it */
    req = req_for(url, sizeof(url), "/slow?ms=1500", 0);
    req.deadline_ms = CCA_FETCH_NO_DEADLINE;
    req.attempt_timeout_ms = 200;
    req.max_retries = 0;
    g = run_one(f, &w, &req);
    assert_int_equal(g->end, CCA_FETCH_END_EXHAUSTED);
    assert_int_equal(g->error, CCA_FETCH_E_TIMEOUT);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_deadline_already_passed(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/ok", -1);
    const struct got *g;

    (void)state;
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_ERR_TIMEOUT);
    assert_int_equal(g->end, CCA_FETCH_END_LATE);
    assert_int_equal(g->attempts, 0);
    assert_null(g->body);
    assert_int_equal(atomic_load(&srv.requests), 0);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_bodies_capped(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req;
    const struct got *g;

    (void)state;
    /* exactly the cap is fine */
    req = req_for(url, sizeof(url), "/big?n=1000", 5000);
    req.max_response_bytes = 1000;
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->body_len, 1000);
    waiter_cleanup(&w);

    /* one byte more ends the request, never retried */
    req = req_for(url, sizeof(url), "/big?n=1001", 5000);
    req.max_response_bytes = 1000;
    req.max_retries = 3;
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_ERR_UPSTREAM);
    assert_int_equal(g->end, CCA_FETCH_END_FINAL);
    assert_int_equal(g->error, CCA_FETCH_E_TOO_LARGE);
    assert_int_equal(g->attempts, 1);
    waiter_cleanup(&w);

    /* an error body: its head is kept, the rest read and dropped; not retried (400) */
    req = req_for(url, sizeof(url), "/err?status=400&n=10000", 5000);
    req.max_response_bytes = 100;
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK); /* a whole response arrived; the caller judges 400 */
    assert_int_equal(g->end, CCA_FETCH_END_FINAL);
    assert_int_equal(g->status, 400);
    assert_int_equal(g->body_len, CCA_FETCH_ERRBODY_KEEP);
    assert_int_equal(g->attempts, 1);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_transport_failures(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128], closed[96];
    struct cca_fetch_request req;
    const struct got *g;

    (void)state;
    snprintf(closed, sizeof(closed), "http://127.0.0.1:%u/x", closed_port());
    req = req_for(url, sizeof(url), "/ok", 5000);
    req.url = closed;
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_ERR_UPSTREAM);
    assert_int_equal(g->end, CCA_FETCH_END_EXHAUSTED);
    assert_int_equal(g->error, CCA_FETCH_E_CONNECT);
    assert_int_equal(g->attempts, 3);
    assert_int_equal(g->status, 0);
    assert_true(g->error_text[0] != '\0');
    waiter_cleanup(&w);

    /* a body cut short is transient: retried */
    req = req_for(url, sizeof(url), "/cut", 5000);
    g = run_one(f, &w, &req);
    assert_int_equal(g->end, CCA_FETCH_END_EXHAUSTED);
    assert_int_equal(g->error, CCA_FETCH_E_TRANSFER);
    assert_int_equal(g->attempts, 3);
    waiter_cleanup(&w);

    /* not http(s) at the transport level is refused up front */
    req = req_for(url, sizeof(url), "/ok", 5000);
    req.url = "ftp://127.0.0.1/";
    assert_int_equal(cca_fetch_start(f, &req, on_done, NULL, NULL), CCA_ERR_INVALID);
    cca_fetch_free(f);
}

/*
 * A name that does not resolve is a connect failure, retried like one, and
 * leaves the client working: curl 7.88 keeps such a transfer's receive buffer,
 * so its easy handle, pooled, failed the setup of every later request
 * ("curl setup failed") until the process restarted.
 */
static void test_unresolvable_host_then_ok(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req;
    const struct got *g;
    int i;

    (void)state;
    req = req_for(url, sizeof(url), "/ok", 10000);
    req.url = "http://cca-no-such-host.invalid/x";
    g = run_one(f, &w, &req);
    print_message("# unresolvable: %s '%s'\n", cca_fetch_end_name(g->end), g->error_text);
    assert_int_equal(g->end, CCA_FETCH_END_EXHAUSTED);
    /* NXDOMAIN, or a resolver that does not answer within the connect timeout */
    assert_true(g->error == CCA_FETCH_E_CONNECT || g->error == CCA_FETCH_E_TIMEOUT);
    assert_int_equal(g->attempts, 3);
    waiter_cleanup(&w);
    for (i = 0; i < 3; i++) {
        req = req_for(url, sizeof(url), "/ok", 5000);
        g = run_one(f, &w, &req);
        assert_int_equal(g->rc, CCA_OK);
        assert_int_equal(g->error, CCA_FETCH_E_NONE);
        assert_string_equal(g->body, "ok");
        waiter_cleanup(&w);
    }
    cca_fetch_free(f);
}

static atomic_int classified;
static atomic_bool classified_wrong;

static enum cca_fetch_verdict retry_404(void *ctx, const struct cca_fetch_attempt *a)
{
    (void)ctx;
    if (a->number != (unsigned)atomic_fetch_add(&classified, 1) + 1 ||
        a->duration_us < 0 || a->body == NULL || a->error != CCA_FETCH_E_NONE)
        atomic_store(&classified_wrong, true);
    if (a->status == 404)
        return CCA_FETCH_RETRY;
    return a->status == 503 ? CCA_FETCH_FINAL : cca_fetch_classify_default(NULL, a);
}

static void test_classifier(void **state)
{
    static const struct step s404[] = {{404, NULL, NULL}};
    static const struct step s503[] = {{503, NULL, NULL}};
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req = req_for(url, sizeof(url), "/seq", 5000);
    const struct got *g;

    (void)state;
    atomic_store(&classified, 0);
    script(s404, 1);
    req.classify = retry_404;
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->attempts, 2);
    assert_int_equal(atomic_load(&classified), 2);
    assert_false(atomic_load(&classified_wrong));
    waiter_cleanup(&w);

    atomic_store(&classified, 0);
    script(s503, 1);
    req = req_for(url, sizeof(url), "/seq", 5000);
    req.classify = retry_404;
    g = run_one(f, &w, &req);
    assert_int_equal(g->rc, CCA_OK);
    assert_int_equal(g->end, CCA_FETCH_END_FINAL);
    assert_int_equal(g->status, 503);
    assert_int_equal(g->attempts, 1);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_classify_default_table(void **state)
{
    static const struct {
        enum cca_fetch_error error;
        long status;
        enum cca_fetch_verdict want;
    } rows[] = {
        {CCA_FETCH_E_NONE, 200, CCA_FETCH_FINAL},
        {CCA_FETCH_E_NONE, 204, CCA_FETCH_FINAL},
        {CCA_FETCH_E_NONE, 301, CCA_FETCH_FINAL},
        {CCA_FETCH_E_NONE, 400, CCA_FETCH_FINAL},
        {CCA_FETCH_E_NONE, 401, CCA_FETCH_FINAL},
        {CCA_FETCH_E_NONE, 404, CCA_FETCH_FINAL},
        {CCA_FETCH_E_NONE, 408, CCA_FETCH_RETRY},
        {CCA_FETCH_E_NONE, 429, CCA_FETCH_RETRY},
        {CCA_FETCH_E_NONE, 500, CCA_FETCH_RETRY},
        {CCA_FETCH_E_NONE, 503, CCA_FETCH_RETRY},
        {CCA_FETCH_E_NONE, 599, CCA_FETCH_RETRY},
        {CCA_FETCH_E_CONNECT, 0, CCA_FETCH_RETRY},
        {CCA_FETCH_E_TIMEOUT, 0, CCA_FETCH_RETRY},
        {CCA_FETCH_E_TRANSFER, 200, CCA_FETCH_RETRY},
        {CCA_FETCH_E_DEADLINE, 0, CCA_FETCH_FINAL},
        {CCA_FETCH_E_TOO_LARGE, 200, CCA_FETCH_FINAL},
        {CCA_FETCH_E_OTHER, 0, CCA_FETCH_FINAL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < CCA_ARRAY_SIZE(rows); i++) {
        struct cca_fetch_attempt a = {.number = 1,
                                      .error = rows[i].error,
                                      .status = rows[i].status,
                                      .retry_after = "",
                                      .retry_after_ms = "",
                                      .error_text = ""};

        assert_int_equal(cca_fetch_classify_default(NULL, &a), rows[i].want);
    }
}

static void test_cancel(void **state)
{
    static const struct step steps[] = {{503, "5", NULL}};
    struct cca_fetch *f = make_fetch();
    struct waiter w;
    char url[128];
    struct cca_fetch_request req;
    uint64_t id_run, id_backoff;
    int64_t t0;
    int tries;

    (void)state;
    waiter_init(&w, 3);
    /* one running (hangs), one waiting 5 s for its retry */
    req = req_for(url, sizeof(url), "/hang", 10000);
    id_run = start(f, &w, 0, &req);
    script(steps, 1);
    req = req_for(url, sizeof(url), "/seq", 10000);
    id_backoff = start(f, &w, 1, &req);
    for (tries = 0; tries < 200 && atomic_load(&srv.requests) < 2; tries++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&srv.requests), 2);
    usleep(50 * 1000); /* the 503 is classified and waits */
    t0 = cca_time_mono_ms();
    cca_fetch_cancel(f, id_run);
    cca_fetch_cancel(f, id_backoff);
    cca_fetch_cancel(f, id_backoff); /* twice: harmless */
    cca_fetch_cancel(f, 987654321);  /* never given: ignored */
    cca_fetch_cancel(f, 0);
    assert_true(waiter_wait(&w, 2, 2000));
    assert_true(cca_time_mono_ms() - t0 < 1000);
    assert_int_equal(got_tag(&w, 0)->rc, CCA_ERR_UNAVAILABLE);
    assert_int_equal(got_tag(&w, 0)->end, CCA_FETCH_END_CANCELLED);
    assert_int_equal(got_tag(&w, 1)->end, CCA_FETCH_END_CANCELLED);
    assert_int_equal(got_tag(&w, 1)->attempts, 1);
    assert_int_equal(got_tag(&w, 1)->status, 503);

    /* cancelling a finished request changes nothing */
    req = req_for(url, sizeof(url), "/ok", 5000);
    id_run = start(f, &w, 2, &req);
    assert_true(waiter_wait(&w, 3, 5000));
    cca_fetch_cancel(f, id_run);
    assert_int_equal(got_tag(&w, 2)->rc, CCA_OK);
    usleep(20 * 1000);
    assert_int_equal(w.got, 3);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

static void test_invalid_start(void **state)
{
    struct cca_fetch *f = make_fetch(), *other = make_fetch();
    struct cca_fetch_lane *foreign = make_lane(other, "foreign", 0);
    struct waiter w;
    char url[128];
    struct cca_fetch_request req;
    struct cca_fetch_request base = req_for(url, sizeof(url), "/ok", 5000);
    size_t i;

    (void)state;
    waiter_init(&w, 1);
    w.tags[0] = (struct tagged){.w = &w};
    for (i = 0; i < 12; i++) {
        req = base;
        req.body = cca_xstrdup("stolen anyway");
        req.body_len = 13;
        req.method = "POST";
        switch (i) {
            case 0:
                req.url = NULL;
                break;
            case 1:
                req.url = "ftp://x/";
                break;
            case 2:
                req.url = "http://a b/";
                break;
            case 3:
                req.method = "post";
                break;
            case 4:
                req.method = "GET";
                break; /* GET with a body */
            case 5:
                req.method = "";
                break;
            case 6:
                req.max_response_bytes = 0;
                break;
            case 7:
                req.max_retries = CCA_FETCH_MAX_RETRIES + 1;
                break;
            case 8:
                req.deadline_ms = CCA_FETCH_NO_DEADLINE;
                break; /* unbounded */
            case 9:
                req.lane = foreign;
                break;
            case 10:
                req.backoff_base_ms = -1;
                break;
            default:
                req.method = "TOOLONGMETHODNAME";
                break;
        }
        assert_int_equal(cca_fetch_start(f, &req, on_done, &w.tags[0], NULL),
                         CCA_ERR_INVALID);
        assert_null(req.body);
    }
    req = base;
    assert_int_equal(cca_fetch_start(f, &req, NULL, NULL, NULL), CCA_ERR_INVALID);
    assert_int_equal(cca_fetch_start(NULL, &req, on_done, NULL, NULL), CCA_ERR_INVALID);
    assert_int_equal(cca_fetch_start(f, NULL, on_done, NULL, NULL), CCA_ERR_INVALID);
    cca_fetch_free(other);
    cca_fetch_free(f);
    assert_int_equal(w.got, 0); /* done never called on an error */
    waiter_cleanup(&w);
}

/*
 * The brief's case: a long poll holds its request open for seconds (here 2.5 s
 * instead of Telegram's 50 s); 20 short requests of another user, started
 * after it, all finish long before it, each about as fast as on an idle
 * client. A second long poll of the same capped lane waits for its turn
 * without holding anyone else up.
 */
static void test_long_poll_does_not_starve(void **state)
{
    enum { FAST = 20, SLOW_MS = 2500 };
    struct cca_fetch *f = make_fetch();
    struct cca_fetch_lane *poll = make_lane(f, "poll", 1);
    struct cca_fetch_lane *llm = make_lane(f, "llm", 0);
    const struct cca_fetch_lane_metrics *pm = cca_fetch_lane_get_metrics(poll);
    const struct cca_fetch_lane_metrics *lm = cca_fetch_lane_get_metrics(llm);
    struct waiter w;
    char url[128], url2[128], fast_url[128];
    struct cca_fetch_request req;
    int64_t t0, fast_start, worst = 0;
    int i, tries;

    (void)state;
    waiter_init(&w, FAST + 2);
    t0 = cca_time_mono_ms();
    req = req_for(url, sizeof(url), "/poll?ms=2500", 10000);
    req.lane = poll;
    req.method = "GET";
    (void)start(f, &w, 0, &req);
    req = req_for(url2, sizeof(url2), "/poll?ms=10", 10000);
    req.lane = poll;
    (void)start(f, &w, 1, &req); /* waits for the first: the lane's cap is 1 */
    for (tries = 0; tries < 200 && atomic_load(&srv.poll_in_flight) < 1; tries++)
        usleep(5 * 1000);
    assert_int_equal(atomic_load(&srv.poll_in_flight), 1);
    assert_int_equal(atomic_load(&pm->running), 1);
    assert_int_equal(atomic_load(&pm->waiting), 1);

    fast_start = cca_time_mono_ms();
    for (i = 0; i < FAST; i++) {
        req = req_for(fast_url, sizeof(fast_url), "/ok", 5000);
        req.lane = llm;
        (void)start(f, &w, 2 + i, &req);
    }
    assert_true(waiter_wait(&w, FAST, 3000));
    for (i = 0; i < FAST; i++) {
        const struct got *g = got_tag(&w, 2 + i);

        assert_int_equal(g->rc, CCA_OK);
        assert_int_equal(g->attempts, 1);
        if (g->at_ms - fast_start > worst)
            worst = g->at_ms - fast_start;
    }
    print_message("# 20 short requests done %lld ms after start, the long poll open\n",
                  (long long)worst);
    assert_true(worst < 1000);
    assert_int_equal(w.got, FAST); /* neither long poll has ended */
    assert_int_equal(atomic_load(&lm->ended[CCA_FETCH_END_FINAL]), FAST);
    assert_int_equal(atomic_load(&pm->waiting), 1);

    assert_true(waiter_wait(&w, FAST + 2, 5000));
    assert_int_equal(got_tag(&w, 0)->rc, CCA_OK);
    assert_true(got_tag(&w, 0)->at_ms - t0 >= SLOW_MS - 100);
    assert_int_equal(got_tag(&w, 1)->rc, CCA_OK);
    assert_true(got_tag(&w, 1)->at_ms >= got_tag(&w, 0)->at_ms);
    assert_int_equal(atomic_load(&pm->waiting), 0);
    assert_int_equal(atomic_load(&pm->running), 0);
    waiter_cleanup(&w);
    cca_fetch_lane_free(poll);
    cca_fetch_lane_free(llm);
    cca_fetch_free(f);
}

/*
 * A lane flooded far beyond its cap keeps at most its cap in flight, drains in
 * FIFO order, and another lane's requests pass it at once.
 */
static void test_lane_cap_and_flood(void **state)
{
    enum { FLOOD = 12, CAP = 3, OTHER = 5 };
    struct cca_fetch *f = make_fetch();
    struct cca_fetch_lane *bulk = make_lane(f, "bulk", CAP);
    const struct cca_fetch_lane_metrics *bm = cca_fetch_lane_get_metrics(bulk);
    struct waiter w;
    char url[128], ok_url[128];
    struct cca_fetch_request req;
    int64_t t0;
    int i;

    (void)state;
    waiter_init(&w, FLOOD + OTHER);
    for (i = 0; i < FLOOD; i++) {
        req = req_for(url, sizeof(url), "/slow?ms=300", 10000);
        req.lane = bulk;
        (void)start(f, &w, i, &req);
    }
    usleep(50 * 1000);
    assert_int_equal(atomic_load(&bm->running), CAP);
    assert_int_equal(atomic_load(&bm->waiting), FLOOD - CAP);

    t0 = cca_time_mono_ms();
    for (i = 0; i < OTHER; i++) {
        req = req_for(ok_url, sizeof(ok_url), "/ok", 5000); /* default lane */
        (void)start(f, &w, FLOOD + i, &req);
    }
    assert_true(waiter_wait(&w, FLOOD + OTHER, 5000));
    for (i = 0; i < OTHER; i++) {
        assert_int_equal(got_tag(&w, FLOOD + i)->rc, CCA_OK);
        assert_true(got_tag(&w, FLOOD + i)->at_ms - t0 < 250);
    }
    assert_int_equal(atomic_load(&srv.max_slow), CAP);
    /* FIFO within the lane: request i never ends before request i - CAP */
    for (i = CAP; i < FLOOD; i++)
        assert_true(got_tag(&w, i)->at_ms >= got_tag(&w, i - CAP)->at_ms);
    assert_int_equal(atomic_load(&bm->ended[CCA_FETCH_END_FINAL]), FLOOD);
    assert_int_equal(atomic_load(&bm->attempts), FLOOD);
    waiter_cleanup(&w);
    cca_fetch_free(f); /* frees the lane too */
}

/* A request waiting in its lane still ends at its deadline. */
static void test_waiting_request_deadline(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct cca_fetch_lane *one = make_lane(f, "one", 1);
    const struct cca_fetch_lane_metrics *m = cca_fetch_lane_get_metrics(one);
    struct waiter w;
    char url[128], url2[128];
    struct cca_fetch_request req;
    int64_t t0;
    const struct got *g;

    (void)state;
    waiter_init(&w, 2);
    req = req_for(url, sizeof(url), "/hang", 10000);
    req.lane = one;
    (void)start(f, &w, 0, &req);
    t0 = cca_time_mono_ms();
    req = req_for(url2, sizeof(url2), "/ok", 300);
    req.lane = one;
    (void)start(f, &w, 1, &req);
    assert_true(waiter_wait(&w, 1, 3000));
    g = got_tag(&w, 1);
    assert_int_equal(g->rc, CCA_ERR_TIMEOUT);
    assert_int_equal(g->end, CCA_FETCH_END_LATE);
    assert_int_equal(g->attempts, 0);
    assert_true(g->at_ms - t0 >= 250);
    assert_true(g->at_ms - t0 < 1000);
    assert_int_equal(atomic_load(&m->ended[CCA_FETCH_END_LATE]), 1);
    assert_int_equal(atomic_load(&m->waiting), 0);
    /* the lane's close ends the hanging one */
    cca_fetch_lane_free(one);
    assert_int_equal(w.got, 2);
    assert_int_equal(got_tag(&w, 0)->end, CCA_FETCH_END_CANCELLED);
    waiter_cleanup(&w);
    cca_fetch_free(f);
}

/* Freeing a lane ends only its own requests, and refuses new ones meanwhile. */
static void test_lane_free_isolated(void **state)
{
    enum { N = 3 };
    struct cca_fetch *f = make_fetch();
    struct cca_fetch_lane *a = make_lane(f, "a", 0);
    struct cca_fetch_lane *b = make_lane(f, "b", 2);
    struct waiter w;
    char url[128], url_b[128];
    struct cca_fetch_request req;
    int i, tries;

    (void)state;
    waiter_init(&w, N + 2);
    for (i = 0; i < N; i++) {
        req = req_for(url, sizeof(url), "/hang", 10000);
        req.lane = a;
        (void)start(f, &w, i, &req);
    }
    req = req_for(url_b, sizeof(url_b), "/slow?ms=600", 10000);
    req.lane = b;
    (void)start(f, &w, N, &req);
    for (tries = 0; tries < 200 && atomic_load(&srv.requests) < N + 1; tries++)
        usleep(5 * 1000);
    cca_fetch_lane_free(a);
    /* every callback of lane a ran before cca_fetch_lane_free returned */
    assert_int_equal(w.got, N);
    for (i = 0; i < N; i++)
        assert_int_equal(got_tag(&w, i)->end, CCA_FETCH_END_CANCELLED);
    assert_true(waiter_wait(&w, N + 1, 3000));
    assert_int_equal(got_tag(&w, N)->rc, CCA_OK);
    assert_string_equal(got_tag(&w, N)->body, "slow");
    /* b goes on */
    req = req_for(url_b, sizeof(url_b), "/ok", 5000);
    req.lane = b;
    (void)start(f, &w, N + 1, &req);
    assert_true(waiter_wait(&w, N + 2, 3000));
    waiter_cleanup(&w);
    cca_fetch_lane_free(b);
    cca_fetch_free(f);
}

static void test_free_with_requests_pending(void **state)
{
    enum { HANG = 10, QUEUED = 4 };
    static const struct step steps[] = {{503, "20", NULL}};
    struct cca_fetch *f = make_fetch();
    struct cca_fetch_lane *one = make_lane(f, "one", 1);
    struct waiter w;
    char url[128];
    struct cca_fetch_request req;
    int i, tries;

    (void)state;
    waiter_init(&w, HANG + QUEUED + 1);
    for (i = 0; i < HANG; i++) {
        req = req_for(url, sizeof(url), "/hang", 30000);
        (void)start(f, &w, i, &req);
    }
    for (i = 0; i < QUEUED; i++) { /* one runs, the others wait in the lane */
        req = req_for(url, sizeof(url), "/hang", 30000);
        req.lane = one;
        (void)start(f, &w, HANG + i, &req);
    }
    script(steps, 1);
    req = req_for(url, sizeof(url), "/seq", 30000); /* will wait 20 s to retry */
    (void)start(f, &w, HANG + QUEUED, &req);
    for (tries = 0; tries < 200 && atomic_load(&srv.requests) < HANG + 2; tries++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&srv.requests), HANG + 2);
    cca_fetch_free(f);
    /* every callback ran before cca_fetch_free returned */
    assert_int_equal(w.got, HANG + QUEUED + 1);
    for (i = 0; i < HANG + QUEUED + 1; i++) {
        assert_int_equal(w.res[i].rc, CCA_ERR_UNAVAILABLE);
        assert_int_equal(w.res[i].end, CCA_FETCH_END_CANCELLED);
    }
    waiter_cleanup(&w);
}

/* A done callback may start the next request (a long poll's loop does). */
struct chain {
    struct cca_fetch *f;
    struct waiter *w;
    char url[128];
    atomic_int left;
};

static struct chain chain;

static void on_chain_done(void *ctx, struct cca_fetch_result *r)
{
    struct cca_fetch_request req = {
        .url = chain.url,
        .deadline_ms = cca_time_mono_ms() + 5000,
        .max_response_bytes = 1024,
    };

    (void)ctx;
    if (r->rc == CCA_OK && atomic_fetch_sub(&chain.left, 1) > 1) {
        if (cca_fetch_start(chain.f, &req, on_chain_done, NULL, NULL) == CCA_OK)
            return;
    }
    on_done(&chain.w->tags[0], r);
}

static void test_start_from_callback(void **state)
{
    struct cca_fetch_request req;
    struct waiter w;

    (void)state;
    waiter_init(&w, 1);
    w.tags[0] = (struct tagged){.w = &w};
    chain.f = make_fetch();
    chain.w = &w;
    atomic_store(&chain.left, 5);
    url_of(chain.url, sizeof(chain.url), "/ok");
    req = (struct cca_fetch_request){
        .url = chain.url,
        .deadline_ms = cca_time_mono_ms() + 5000,
        .max_response_bytes = 1024,
    };
    assert_int_equal(cca_fetch_start(chain.f, &req, on_chain_done, NULL, NULL), CCA_OK);
    assert_true(waiter_wait(&w, 1, 5000));
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_int_equal(atomic_load(&srv.requests), 5);
    cca_fetch_free(chain.f);
    waiter_cleanup(&w);
}

static void test_lane_new_and_names(void **state)
{
    struct cca_fetch *f = make_fetch();
    struct cca_fetch_lane_params p = {.name = NULL};
    struct cca_fetch_lane *lane = NULL;
    int i;

    (void)state;
    assert_int_equal(cca_fetch_lane_new(NULL, &p, &lane), CCA_ERR_INVALID);
    assert_int_equal(cca_fetch_lane_new(f, NULL, &lane), CCA_ERR_INVALID);
    assert_int_equal(cca_fetch_lane_new(f, &p, &lane), CCA_OK);
    cca_fetch_lane_free(lane);
    cca_fetch_lane_free(NULL);
    cca_fetch_free(NULL);
    for (i = 0; i < CCA_FETCH_END__COUNT; i++)
        assert_string_not_equal(cca_fetch_end_name((enum cca_fetch_end)i), "unknown");
    assert_string_equal(cca_fetch_end_name(CCA_FETCH_END_CANCELLED), "cancelled");
    assert_string_equal(cca_fetch_end_name(CCA_FETCH_END__COUNT), "unknown");
    cca_fetch_result_cleanup(NULL);
    cca_fetch_free(f);
}

/* 784111777 is "Sun, 06 Nov 1994 08:49:37 GMT", the RFC 9110 example date. */
#define DATE_T 784111777LL

static void test_retry_after_table(void **state)
{
    static const struct {
        const char *value, *ms;
        int64_t now;
        int64_t want;
    } rows[] = {
        {"3", NULL, 0, 3000},
        {"0", NULL, 0, 0},
        {"-1", NULL, 0, -1},
        {"1.5", NULL, 0, -1},
        {"", NULL, 0, -1},
        {NULL, NULL, 0, -1},
        {"99999999999999999999999", NULL, 0, 86400000},
        {"Sun, 06 Nov 1994 08:49:37 GMT", NULL, DATE_T - 5, 5000},
        {"Sun, 06 Nov 1994 08:49:37 GMT", NULL, DATE_T + 3600, 0},
        {"Sunday, 06-Nov-94 08:49:37 GMT", NULL, DATE_T - 7, 7000},
        {"Sun Nov  6 08:49:37 1994", NULL, DATE_T - 1, 1000},
        {"3", "250", 0, 250},
        {"3", "abc", 0, 3000},
        {NULL, "999999999999999999999999", 0, 86400000},
    };
    size_t i;

    (void)state;
    for (i = 0; i < CCA_ARRAY_SIZE(rows); i++)
        assert_int_equal(
            cca_fetch_parse_retry_after(rows[i].value, rows[i].ms, rows[i].now),
            rows[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_get_ok, test_setup),
        cmocka_unit_test_setup(test_methods_headers_body, test_setup),
        cmocka_unit_test(test_headers_invalid),
        cmocka_unit_test_setup(test_retry_after_seconds, test_setup),
        cmocka_unit_test_setup(test_retry_after_ms_and_backoff, test_setup),
        cmocka_unit_test_setup(test_exhausted, test_setup),
        cmocka_unit_test_setup(test_no_time_for_retry, test_setup),
        cmocka_unit_test_setup(test_deadline_cuts_attempt, test_setup),
        cmocka_unit_test_setup(test_attempt_timeout_retried, test_setup),
        cmocka_unit_test_setup(test_deadline_already_passed, test_setup),
        cmocka_unit_test_setup(test_bodies_capped, test_setup),
        cmocka_unit_test_setup(test_transport_failures, test_setup),
        cmocka_unit_test_setup(test_unresolvable_host_then_ok, test_setup),
        cmocka_unit_test_setup(test_classifier, test_setup),
        cmocka_unit_test(test_classify_default_table),
        cmocka_unit_test_setup(test_cancel, test_setup),
        cmocka_unit_test_setup(test_invalid_start, test_setup),
        cmocka_unit_test_setup(test_long_poll_does_not_starve, test_setup),
        cmocka_unit_test_setup(test_lane_cap_and_flood, test_setup),
        cmocka_unit_test_setup(test_waiting_request_deadline, test_setup),
        cmocka_unit_test_setup(test_lane_free_isolated, test_setup),
        cmocka_unit_test_setup(test_free_with_requests_pending, test_setup),
        cmocka_unit_test_setup(test_start_from_callback, test_setup),
        cmocka_unit_test(test_lane_new_and_names),
        cmocka_unit_test(test_retry_after_table),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
