/* SPDX-License-Identifier: MIT */
/*
 * Tests for src/llm.c against tests/fake_openai.c, started as a subprocess.
 * The fake's path comes from $FAKE_OPENAI or argv[1].
 * Every wait is bounded, so a bug fails a test instead of hanging it.
 */
#include "cca_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cca/common.h"
#include "cca/fetch.h"
#include "cca/llm.h"
#include "cca/mem.h"

#define KEY       "sk-test-SECRET-c0ffee-42"
#define WRONG_KEY "sk-wrong-SECRET-beef-17"
#define MODEL     "gpt-test-mini"

extern char **environ;

static char *fake_path;
static pid_t fake_pid = -1;
static char fake_dir[64];
static char fake_base[96]; /* http://127.0.0.1:PORT */
static char llm_base[96];  /* http://127.0.0.1:PORT/v1 */

/* ------------------------------------------------------------ helpers */

static size_t sink(char *p, size_t size, size_t n, void *ud)
{
    json_t **out = ud;
    size_t len = size * n;
    json_error_t e;

    /* the admin answers are small: one write is enough; else keep the last */
    json_decref(*out);
    *out = json_loadb(p, len, 0, &e);
    return len;
}

/* One synchronous request to the fake's admin API. Returns the JSON answer (new). */
static json_t *fake_call(const char *path, const char *body)
{
    CURL *h = curl_easy_init();
    char url[160];
    json_t *out = NULL;
    CURLcode rc;

    assert_non_null(h);
    snprintf(url, sizeof(url), "%s%s", fake_base, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &out);
    if (body != NULL)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    assert_int_equal(rc, CURLE_OK);
    assert_non_null(out);
    return out;
}

static void fake_post(const char *path, const char *body)
{
    json_decref(fake_call(path, body));
}

static json_int_t fake_stat(const char *name)
{
    json_t *st = fake_call("/_fake/stats", NULL);
    json_int_t v = json_integer_value(json_object_get(st, name));

    json_decref(st);
    return v;
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

/*
 * The thread count once it reaches @want, or after 2 s: a joined thread's
 * /proc/self/task entry can outlive pthread_join by a moment (the kernel
 * wakes the joiner before it removes the task), so a count taken at once
 * after a free may still see it.
 */
static int threads_settle(int want)
{
    int n = count_threads();

    for (int i = 0; i < 200 && n != want; i++) {
        usleep(10 * 1000);
        n = count_threads();
    }
    return n;
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

/* ------------------------------------------------------ result capture */

struct got {
    cca_rc rc;
    char *content;
    long prompt_tokens, completion_tokens, total_tokens, http_status;
    unsigned attempts;
    int64_t upstream_ms;
    int64_t at_ms; /* when the callback ran */
    char error[160];
};

struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t got, cap;
    struct got *res;
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
}

static void waiter_cleanup(struct waiter *w)
{
    size_t i;

    for (i = 0; i < w->got; i++)
        free(w->res[i].content);
    free(w->res);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

static void on_done(void *ctx, struct cca_llm_result *r)
{
    struct waiter *w = ctx;
    struct got *g;

    pthread_mutex_lock(&w->lock);
    if (w->got < w->cap) {
        g = &w->res[w->got];
        g->rc = r->rc;
        g->content = r->content; /* moved out */
        r->content = NULL;
        g->prompt_tokens = r->prompt_tokens;
        g->completion_tokens = r->completion_tokens;
        g->total_tokens = r->total_tokens;
        g->http_status = r->http_status;
        g->attempts = r->attempts;
        g->upstream_ms = r->upstream_ms;
        g->at_ms = cca_time_mono_ms();
        memcpy(g->error, r->error, sizeof(g->error));
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

static struct cca_llm *make_llm_at(const char *base, const char *key, unsigned retries,
                                   size_t max_bytes)
{
    struct cca_llm_params p = {
        .base_url = base,
        .api_key = key,
        .model = MODEL,
        .connect_timeout_ms = 1000,
        .max_retries = retries,
        .max_response_bytes = max_bytes,
        .backoff_base_ms = 20,
    };
    struct cca_llm *llm = NULL;
    struct cca_error err = {0};

    assert_int_equal(cca_llm_new(&p, &llm, &err), CCA_OK);
    assert_non_null(llm);
    return llm;
}

static struct cca_llm *make_llm(unsigned retries)
{
    return make_llm_at(llm_base, KEY, retries, 64 * 1024);
}

static json_t *messages_for(const char *user_text)
{
    return json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content",
                     "You are a helpful support agent.", "role", "user", "content",
                     user_text);
}

static void submit(struct cca_llm *llm, struct waiter *w, const char *text,
                   bool json_mode, int64_t deadline_in_ms)
{
    struct cca_llm_request req = {
        .messages = messages_for(text),
        .temperature = 0.2,
        .max_tokens = 64,
        .json_mode = json_mode,
        .deadline_ms = cca_time_mono_ms() + deadline_in_ms,
    };

    assert_int_equal(cca_llm_submit(llm, &req, on_done, w), CCA_OK);
    assert_null(req.messages);
}

/* The API keys never leak into an error string or the status. */
static void assert_no_secret(struct cca_llm *llm, const struct waiter *w)
{
    struct cca_llm_status st;
    size_t i;

    for (i = 0; i < w->got && i < w->cap; i++) {
        assert_null(strstr(w->res[i].error, KEY));
        assert_null(strstr(w->res[i].error, WRONG_KEY));
        assert_null(strstr(w->res[i].error, "SECRET"));
    }
    if (llm != NULL) {
        cca_llm_get_status(llm, &st);
        assert_null(strstr(st.last_error, "SECRET"));
    }
}

/* Run one call to completion with @retries and @deadline_in_ms; returns its result. */
static void run_one(struct cca_llm *llm, struct waiter *w, const char *text,
                    bool json_mode, int64_t deadline_in_ms)
{
    waiter_init(w, 1);
    submit(llm, w, text, json_mode, deadline_in_ms);
    assert_true(waiter_wait(w, 1, deadline_in_ms + 5000));
    assert_no_secret(llm, w);
}

/* ------------------------------------------------------ fixtures */

static int group_setup(void **state)
{
    char port_file[96], buf[32];
    /* posix_spawn takes char *const argv[]: give it writable copies */
    char a_port[] = "--port", a_zero[] = "0", a_file[] = "--port-file";
    char a_key[] = "--key", a_keyval[] = KEY;
    char *argv[] = {NULL, a_port, a_zero, a_file, port_file, a_key, a_keyval, NULL};
    posix_spawn_file_actions_t fa;
    FILE *f;
    int i, port = 0;

    (void)state;
    if (fake_path == NULL) {
        fprintf(stderr, "test_llm: set FAKE_OPENAI or pass the fake's path\n");
        return -1;
    }
    cca_mem_install_jansson();
    json_object_seed(0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    snprintf(fake_dir, sizeof(fake_dir), "/tmp/test_llm.XXXXXX");
    if (mkdtemp(fake_dir) == NULL)
        return -1;
    snprintf(port_file, sizeof(port_file), "%s/port", fake_dir);
    argv[0] = fake_path;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&fake_pid, fake_path, &fa, NULL, argv, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        fake_pid = -1;
        return -1;
    }
    posix_spawn_file_actions_destroy(&fa);

    for (i = 0; i < 200 && port == 0; i++) {
        f = fopen(port_file, "r");
        if (f != NULL) {
            if (fgets(buf, sizeof(buf), f) != NULL)
                port = atoi(buf);
            fclose(f);
        }
        if (port == 0)
            usleep(50 * 1000);
    }
    if (port <= 0)
        return -1;
    snprintf(fake_base, sizeof(fake_base), "http://127.0.0.1:%d", port);
    snprintf(llm_base, sizeof(llm_base), "http://127.0.0.1:%d/v1", port);
    return 0;
}

static int group_teardown(void **state)
{
    char port_file[96];
    int status = -1, i;
    pid_t r = 0;

    (void)state;
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        for (i = 0; i < 200; i++) {
            r = waitpid(fake_pid, &status, WNOHANG);
            if (r != 0)
                break;
            usleep(50 * 1000);
        }
        if (r == 0) {
            kill(fake_pid, SIGKILL);
            waitpid(fake_pid, &status, 0);
        }
    }
    snprintf(port_file, sizeof(port_file), "%s/port", fake_dir);
    unlink(port_file);
    rmdir(fake_dir);
    curl_global_cleanup();
    /* the fake must exit 0 on SIGTERM, even with connections left hanging */
    if (r == 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "test_llm: fake_openai did not exit cleanly (status %d)\n",
                status);
        return -1;
    }
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    fake_post("/_fake/reset", "");
    return 0;
}

/* ------------------------------------------------------------ tests */

static void test_success(void **state)
{
    struct cca_llm *llm = make_llm(2);
    struct cca_llm_status st;
    struct waiter w;
    json_t *stats, *last, *expect;
    int before = count_threads();

    (void)state;
    run_one(llm, &w, "my router does not boot", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_non_null(w.res[0].content);
    assert_non_null(strstr(w.res[0].content, "Fake reply #"));
    assert_non_null(strstr(w.res[0].content, "my router does not boot"));
    assert_string_equal(w.res[0].error, "");
    assert_int_equal(w.res[0].attempts, 1);
    assert_int_equal(w.res[0].http_status, 200);
    /* 6 + 5 words sent; "Fake reply #N to: my router does not boot" = 9 words */
    assert_int_equal(w.res[0].prompt_tokens, 11);
    assert_int_equal(w.res[0].completion_tokens, 9);
    assert_int_equal(w.res[0].total_tokens, 20);
    assert_true(w.res[0].upstream_ms >= 0);

    stats = fake_call("/_fake/stats", NULL);
    assert_true(json_is_true(json_object_get(stats, "last_auth_ok")));
    assert_int_equal(json_integer_value(json_object_get(stats, "requests")), 1);
    last = json_object_get(stats, "last_request");
    assert_string_equal(json_string_value(json_object_get(last, "model")), MODEL);
    expect = messages_for("my router does not boot");
    assert_true(json_equal(json_object_get(last, "messages"), expect));
    json_decref(expect);
    assert_true(json_real_value(json_object_get(last, "temperature")) > 0.19 &&
                json_real_value(json_object_get(last, "temperature")) < 0.21);
    assert_int_equal(json_integer_value(json_object_get(last, "max_tokens")), 64);
    assert_null(json_object_get(last, "response_format"));
    json_decref(stats);

    cca_llm_get_status(llm, &st);
    assert_int_equal(st.calls, 1);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.last_http_status, 200);
    assert_false(st.auth_failed);
    assert_string_equal(st.last_error, "");
    /* exactly one thread for the client, nothing more after a call */
    assert_int_equal(count_threads(), before);

    waiter_cleanup(&w);
    cca_llm_free(llm);
    assert_int_equal(threads_settle(before - 1), before - 1);
}

static void test_json_mode(void **state)
{
    struct cca_llm *llm = make_llm(2);
    struct waiter w;
    json_t *stats, *rf, *content;

    (void)state;
    run_one(llm, &w, "I want a refund for last month", true, 5000);
    assert_int_equal(w.res[0].rc, CCA_OK);
    content = json_loads(w.res[0].content, 0, NULL);
    assert_non_null(content);
    assert_string_equal(json_string_value(json_object_get(content, "agent")),
                        "supervisor");
    json_decref(content);

    stats = fake_call("/_fake/stats", NULL);
    rf = json_object_get(json_object_get(stats, "last_request"), "response_format");
    assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_object");
    json_decref(stats);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_retry_after_429(void **state)
{
    struct cca_llm *llm = make_llm(2);
    struct waiter w;
    int64_t t0 = cca_time_mono_ms(), took;

    (void)state;
    fake_post("/_fake/script", "[{\"status\":429,\"retry_after\":\"1\"}]");
    run_one(llm, &w, "hello", false, 10000);
    took = w.res[0].at_ms - t0;
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_int_equal(w.res[0].attempts, 2);
    assert_true(took >= 950);
    assert_true(took < 5000);
    assert_int_equal(fake_stat("requests"), 2);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_retry_after_http_date(void **state)
{
    struct cca_llm *llm = make_llm(2);
    struct waiter w;
    char script[160], date[64];
    time_t when = time(NULL) + 2;
    struct tm tm;
    int64_t t0 = cca_time_mono_ms(), took;

    (void)state;
    gmtime_r(&when, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(script, sizeof(script), "[{\"status\":503,\"retry_after\":\"%s\"}]", date);
    fake_post("/_fake/script", script);
    run_one(llm, &w, "hello", false, 10000);
    took = w.res[0].at_ms - t0;
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_int_equal(w.res[0].attempts, 2);
    assert_true(took >= 900); /* HTTP-date has 1 s resolution */
    assert_true(took < 5000);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_retry_after_beyond_deadline(void **state)
{
    struct cca_llm *llm = make_llm(2);
    struct waiter w;
    int64_t t0 = cca_time_mono_ms();

    (void)state;
    /* the next attempt could not start before the deadline: give up now */
    fake_post("/_fake/script", "[{\"status\":429,\"retry_after\":\"30\"}]");
    run_one(llm, &w, "hello", false, 3000);
    assert_int_equal(w.res[0].rc, CCA_ERR_TIMEOUT);
    assert_int_equal(w.res[0].attempts, 1);
    assert_int_equal(w.res[0].http_status, 429);
    assert_non_null(strstr(w.res[0].error, "HTTP 429"));
    assert_true(w.res[0].at_ms - t0 < 2000);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_5xx_then_success(void **state)
{
    struct cca_llm *llm = make_llm(2);
    struct waiter w;

    (void)state;
    fake_post("/_fake/script", "[{\"status\":503},{\"status\":502}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_int_equal(w.res[0].attempts, 3);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_500_exhausts_retries(void **state)
{
    struct cca_llm *llm = make_llm(2);
    struct cca_llm_status st;
    struct waiter w;

    (void)state;
    fake_post("/_fake/script", "[{\"status\":500},{\"status\":500},{\"status\":500},"
                               "{\"status\":500},{\"status\":500}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_int_equal(w.res[0].attempts, 3);
    assert_int_equal(w.res[0].http_status, 500);
    assert_null(w.res[0].content);
    assert_non_null(strstr(w.res[0].error, "HTTP 500"));
    assert_int_equal(fake_stat("requests"), 3);
    cca_llm_get_status(llm, &st);
    assert_int_equal(st.failures, 1);
    assert_string_equal(st.last_error, w.res[0].error);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_401_not_retried(void **state)
{
    struct cca_llm *llm = make_llm_at(llm_base, WRONG_KEY, 3, 64 * 1024);
    struct cca_llm_status st;
    struct waiter w;
    json_t *stats;

    (void)state;
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_int_equal(w.res[0].attempts, 1);
    assert_int_equal(w.res[0].http_status, 401);
    assert_non_null(strstr(w.res[0].error, "401"));
    cca_llm_get_status(llm, &st);
    assert_true(st.auth_failed);
    assert_int_equal(st.last_http_status, 401);
    stats = fake_call("/_fake/stats", NULL);
    assert_false(json_is_true(json_object_get(stats, "last_auth_ok")));
    assert_int_equal(json_integer_value(json_object_get(stats, "requests")), 1);
    json_decref(stats);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_400_not_retried(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct cca_llm_status st;
    struct waiter w;

    (void)state;
    fake_post("/_fake/script", "[{\"status\":400},{\"status\":400}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_int_equal(w.res[0].attempts, 1);
    assert_int_equal(w.res[0].http_status, 400);
    cca_llm_get_status(llm, &st);
    assert_false(st.auth_failed);
    assert_int_equal(fake_stat("requests"), 1);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_malformed_body(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct waiter w;

    (void)state;
    fake_post("/_fake/script", "[{\"body\":\"{\\\"choices\\\": [tru\"}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_int_equal(w.res[0].attempts, 1);
    assert_non_null(strstr(w.res[0].error, "malformed JSON"));
    /* the body never shows up in the reason */
    assert_null(strstr(w.res[0].error, "choices"));
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_no_choices(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct waiter w;

    (void)state;
    fake_post("/_fake/script", "[{\"no_choices\":true}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_int_equal(w.res[0].attempts, 1);
    assert_non_null(strstr(w.res[0].error, "no choices"));
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_null_content(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct waiter w;

    (void)state;
    fake_post(
        "/_fake/script",
        "[{\"body\":\"{\\\"choices\\\":[{\\\"message\\\":{\\\"content\\\":null}}]}\"}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_non_null(strstr(w.res[0].error, "no content"));
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_oversize(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct waiter w;

    (void)state;
    fake_post("/_fake/script", "[{\"pad_bytes\":200000}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_int_equal(w.res[0].attempts, 1);
    assert_null(w.res[0].content);
    assert_non_null(strstr(w.res[0].error, "larger than 65536 bytes"));
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_usage_passthrough_and_trickle(void **state)
{
    struct cca_llm *llm = make_llm(0);
    struct waiter w;

    (void)state;
    /* ~300 bytes sent one byte every 2 ms still make a valid answer */
    fake_post("/_fake/script", "[{\"trickle_ms\":2,\"content\":\"slow\","
                               "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,"
                               "\"total_tokens\":10}}]");
    run_one(llm, &w, "hello", false, 10000);
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_string_equal(w.res[0].content, "slow");
    assert_int_equal(w.res[0].prompt_tokens, 7);
    assert_int_equal(w.res[0].completion_tokens, 3);
    assert_int_equal(w.res[0].total_tokens, 10);
    assert_true(w.res[0].upstream_ms >= 200);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_hang_deadline(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct waiter w;
    int64_t t0 = cca_time_mono_ms(), took;

    (void)state;
    fake_post("/_fake/script", "[{\"hang\":true}]");
    run_one(llm, &w, "hello", false, 1500);
    took = w.res[0].at_ms - t0;
    assert_int_equal(w.res[0].rc, CCA_ERR_TIMEOUT);
    assert_int_equal(w.res[0].attempts, 1);
    assert_true(took >= 1400);
    assert_true(took <= 2500);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_connection_refused(void **state)
{
    char base[96];
    struct cca_llm *llm;
    struct waiter w;
    int64_t t0 = cca_time_mono_ms();

    (void)state;
    snprintf(base, sizeof(base), "http://127.0.0.1:%u/v1", closed_port());
    llm = make_llm_at(base, KEY, 2, 64 * 1024);
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    assert_int_equal(w.res[0].attempts, 3);
    assert_int_equal(w.res[0].http_status, 0);
    assert_non_null(strstr(w.res[0].error, "connect failed"));
    assert_true(w.res[0].at_ms - t0 < 3000);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_deadline_already_passed(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct waiter w;

    (void)state;
    run_one(llm, &w, "hello", false, -1);
    assert_int_equal(w.res[0].rc, CCA_ERR_TIMEOUT);
    assert_int_equal(w.res[0].attempts, 0);
    assert_int_equal(fake_stat("requests"), 0);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_invalid_submit(void **state)
{
    struct cca_llm *llm = make_llm(3);
    struct cca_llm_request req = {
        .messages = json_object(), /* not an array */
        .temperature = 0.2,
        .max_tokens = 10,
        .deadline_ms = cca_time_mono_ms() + 1000,
    };
    struct waiter w;

    (void)state;
    waiter_init(&w, 1);
    assert_int_equal(cca_llm_submit(llm, &req, on_done, &w), CCA_ERR_INVALID);
    assert_null(req.messages); /* stolen anyway */
    req.messages = messages_for("x");
    req.max_tokens = 0;
    assert_int_equal(cca_llm_submit(llm, &req, on_done, &w), CCA_ERR_INVALID);
    cca_llm_free(llm);
    assert_int_equal(w.got, 0);
    waiter_cleanup(&w);
}

static void test_bad_params(void **state)
{
    struct cca_llm_params p = {
        .base_url = "ftp://example.com",
        .api_key = KEY,
        .model = MODEL,
        .connect_timeout_ms = 1000,
        .max_retries = 1,
        .max_response_bytes = 1024,
        .backoff_base_ms = 10,
    };
    struct cca_llm *llm = NULL;
    struct cca_error err = {0};

    (void)state;
    assert_int_equal(cca_llm_new(&p, &llm, &err), CCA_ERR_INVALID);
    assert_null(llm);
    assert_int_equal(err.code, CCA_ERR_INVALID);
    p.base_url = llm_base;
    p.api_key = "";
    assert_int_equal(cca_llm_new(&p, &llm, &err), CCA_ERR_INVALID);
    p.api_key = "sk-SECRET\r\nX-Injected: 1";
    assert_int_equal(cca_llm_new(&p, &llm, &err), CCA_ERR_INVALID);
    assert_null(strstr(err.msg, "SECRET"));
    assert_null(llm);
}

static void test_concurrent_50(void **state)
{
    enum { N = 50 };
    struct cca_llm *llm;
    struct waiter w;
    int before = count_threads();
    size_t i;

    (void)state;
    fake_post("/_fake/default", "{\"delay_ms\":500}");
    llm = make_llm(2);
    waiter_init(&w, N);
    for (i = 0; i < N; i++)
        submit(llm, &w, "concurrent hello", false, 10000);
    /* all 50 in flight on the one LLM thread */
    assert_int_equal(count_threads(), before + 1);
    assert_true(waiter_wait(&w, N, 15000));
    for (i = 0; i < N; i++) {
        assert_int_equal(w.res[i].rc, CCA_OK);
        assert_int_equal(w.res[i].attempts, 1);
        assert_non_null(strstr(w.res[i].content, "concurrent hello"));
    }
    assert_int_equal(fake_stat("max_in_flight"), N);
    assert_int_equal(fake_stat("requests"), N);
    assert_no_secret(llm, &w);
    waiter_cleanup(&w);
    cca_llm_free(llm);
}

static void test_free_with_calls_in_flight(void **state)
{
    enum { N = 20, M = 5 };
    struct cca_llm *llm;
    struct waiter w;
    size_t i;
    int tries;

    (void)state;
    fake_post("/_fake/default", "{\"hang\":true}");
    llm = make_llm(2);
    waiter_init(&w, N + M);
    for (i = 0; i < N; i++)
        submit(llm, &w, "never answered", false, 30000);
    for (tries = 0; tries < 100 && fake_stat("in_flight") < N; tries++)
        usleep(50 * 1000);
    assert_int_equal(fake_stat("in_flight"), N);
    /* a few more, probably still queued when the client stops */
    for (i = 0; i < M; i++)
        submit(llm, &w, "queued", false, 30000);
    cca_llm_free(llm);
    /* every callback ran before cca_llm_free returned: no waiting here */
    assert_int_equal(w.got, N + M);
    for (i = 0; i < N + M; i++) {
        assert_int_equal(w.res[i].rc, CCA_ERR_UNAVAILABLE);
        assert_null(w.res[i].content);
    }
    assert_no_secret(NULL, &w);
    waiter_cleanup(&w);
}

/*
 * Two LLM clients on one shared fetch client (cca_llm_params.fetch): no thread
 * of their own, each on its own lane; freeing one cancels only its calls.
 */
static void test_shared_fetch(void **state)
{
    struct cca_llm_params p = {
        .base_url = llm_base,
        .api_key = KEY,
        .model = MODEL,
        .connect_timeout_ms = 1000,
        .max_retries = 1,
        .max_response_bytes = 64 * 1024,
        .backoff_base_ms = 20,
    };
    struct cca_fetch *fetch = NULL;
    struct cca_llm *a = NULL, *b = NULL;
    struct cca_error err = {0};
    struct waiter w;
    int before = count_threads(), tries;

    (void)state;
    assert_int_equal(cca_fetch_new(NULL, &fetch, &err), CCA_OK);
    p.fetch = fetch;
    assert_int_equal(cca_llm_new(&p, &a, &err), CCA_OK);
    assert_int_equal(cca_llm_new(&p, &b, &err), CCA_OK);
    assert_int_equal(count_threads(), before + 1); /* the fetch thread only */

    run_one(a, &w, "hello from a", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_non_null(strstr(w.res[0].content, "hello from a"));
    waiter_cleanup(&w);

    /* a's call hangs; freeing a ends it, b goes on */
    fake_post("/_fake/script", "[{\"hang\":true}]");
    waiter_init(&w, 1);
    submit(a, &w, "never answered", false, 30000);
    for (tries = 0; tries < 100 && fake_stat("in_flight") < 1; tries++)
        usleep(20 * 1000);
    cca_llm_free(a);
    assert_int_equal(w.got, 1);
    assert_int_equal(w.res[0].rc, CCA_ERR_UNAVAILABLE);
    assert_string_equal(w.res[0].error, "LLM client shutting down");
    waiter_cleanup(&w);

    run_one(b, &w, "hello from b", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_OK);
    assert_non_null(strstr(w.res[0].content, "hello from b"));
    waiter_cleanup(&w);
    cca_llm_free(b);
    cca_fetch_free(fetch);
    assert_int_equal(threads_settle(before), before);
}

/* ------------------------------------------------- pure parsers (no fake) */

/* 784111777 is "Sun, 06 Nov 1994 08:49:37 GMT", the RFC 9110 example date. */
#define DATE_T 784111777LL

static void test_parse_response_table(void **state)
{
    static const struct {
        const char *name;
        const char *body; /* NULL: a NULL body of length 0 */
        cca_rc rc;
        const char *content; /* expected content, or the error substring */
        long prompt, completion, total;
    } rows[] = {
        {"valid",
         "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"}}],"
         "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}",
         CCA_OK, "Hi", 5, 2, 7},
        {"valid, no usage", "{\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", CCA_OK,
         "Hi", 0, 0, 0},
        {"valid, UTF-8 and escapes",
         "{\"choices\":[{\"message\":{\"content\":"
         "\"\\u041f\\u0440\\u0438\\u0432\\u0435\\u0442\\n\"}}]}",
         CCA_OK, "Привет\n", 0, 0, 0},
        {"second choice ignored",
         "{\"choices\":[{\"message\":{\"content\":\"A\"}},{\"message\":{\"content\":"
         "\"B\"}}]}",
         CCA_OK, "A", 0, 0, 0},
        {"huge usage numbers",
         "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":"
         "{\"prompt_tokens\":123456789012345678901234567890,"
         "\"completion_tokens\":1e300,\"total_tokens\":-5}}",
         CCA_OK, "x", LONG_MAX, LONG_MAX, 0},
        {"usage of the wrong type",
         "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":"
         "{\"prompt_tokens\":\"5\",\"completion_tokens\":null,"
         "\"total_tokens\":3.0}}",
         CCA_OK, "x", 0, 0, 3},
        {"usage not an object",
         "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":7}", CCA_OK, "x", 0,
         0, 0},
        {"no choices", "{\"choices\":[]}", CCA_ERR_UPSTREAM, "no choices", 0, 0, 0},
        {"choices missing", "{\"id\":\"x\"}", CCA_ERR_UPSTREAM, "no choices", 0, 0, 0},
        {"choices not an array", "{\"choices\":{\"message\":{\"content\":\"x\"}}}",
         CCA_ERR_UPSTREAM, "no choices", 0, 0, 0},
        {"choice not an object", "{\"choices\":[\"x\"]}", CCA_ERR_UPSTREAM, "no choices",
         0, 0, 0},
        {"null content", "{\"choices\":[{\"message\":{\"content\":null}}]}",
         CCA_ERR_UPSTREAM, "no content", 0, 0, 0},
        {"empty content", "{\"choices\":[{\"message\":{\"content\":\"\"}}]}",
         CCA_ERR_UPSTREAM, "no content", 0, 0, 0},
        {"content not a string", "{\"choices\":[{\"message\":{\"content\":[1]}}]}",
         CCA_ERR_UPSTREAM, "no content", 0, 0, 0},
        {"no message", "{\"choices\":[{\"index\":0}]}", CCA_ERR_UPSTREAM, "no content", 0,
         0, 0},
        {"refusal",
         "{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"I can't\"}}]}",
         CCA_ERR_UPSTREAM, "model refused", 0, 0, 0},
        {"bad JSON", "{\"choices\": [tru", CCA_ERR_UPSTREAM, "malformed JSON", 0, 0, 0},
        {"trailing garbage", "{\"choices\":[]} x", CCA_ERR_UPSTREAM, "malformed JSON", 0,
         0, 0},
        {"empty body", "", CCA_ERR_UPSTREAM, "malformed JSON", 0, 0, 0},
        {"NULL body", NULL, CCA_ERR_UPSTREAM, "malformed JSON", 0, 0, 0},
        {"NUL inside a string",
         "{\"choices\":[{\"message\":{\"content\":\"a\\u0000b\"}}]}", CCA_ERR_UPSTREAM,
         "malformed JSON", 0, 0, 0},
        {"not an object", "[1,2]", CCA_ERR_UPSTREAM, "not a JSON object", 0, 0, 0},
        {"a bare string (top level must be an object or array)", "\"hello\"",
         CCA_ERR_UPSTREAM, "malformed JSON", 0, 0, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < CCA_ARRAY_SIZE(rows); i++) {
        struct cca_llm_result r;
        size_t len = rows[i].body != NULL ? strlen(rows[i].body) : 0;
        cca_rc rc;

        memset(&r, 0x5a, sizeof(r)); /* garbage in: every output field must be set */
        r.content = NULL;
        rc = cca_llm_parse_response(rows[i].body, len, &r);
        print_message("# parse_response: %s -> %s '%s'\n", rows[i].name, cca_strerror(rc),
                      r.error);
        assert_int_equal(rc, rows[i].rc);
        if (rc == CCA_OK) {
            assert_non_null(r.content);
            assert_string_equal(r.content, rows[i].content);
            assert_string_equal(r.error, "");
            assert_int_equal(r.prompt_tokens, rows[i].prompt);
            assert_int_equal(r.completion_tokens, rows[i].completion);
            assert_int_equal(r.total_tokens, rows[i].total);
        } else {
            assert_null(r.content);
            assert_non_null(strstr(r.error, rows[i].content));
        }
        cca_llm_result_cleanup(&r);
        assert_null(r.content);
    }
}

/* The body need not be NUL-terminated: only @len bytes are read. */
static void test_parse_response_not_terminated(void **state)
{
    static const char text[] = "{\"choices\":[{\"message\":{\"content\":\"ok\"}}]}";
    char *buf = cca_xmalloc(sizeof(text) - 1); /* exactly the bytes, no NUL */
    struct cca_llm_result r = {0};

    (void)state;
    memcpy(buf, text, sizeof(text) - 1);
    assert_int_equal(cca_llm_parse_response(buf, sizeof(text) - 1, &r), CCA_OK);
    assert_string_equal(r.content, "ok");
    cca_llm_result_cleanup(&r);
    /* a prefix is malformed */
    assert_int_equal(cca_llm_parse_response(buf, 10, &r), CCA_ERR_UPSTREAM);
    assert_null(r.content);
    free(buf);
}

static void test_error_reason_table(void **state)
{
    static const struct {
        long status;
        const char *body;
        const char *want;
    } rows[] = {
        {401,
         "{\"error\":{\"message\":\"Incorrect API key provided: sk-test-SECRET\","
         "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
         "HTTP 401 (invalid_api_key)"},
        {500,
         "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"code\":null}}",
         "HTTP 500 (server_error)"},
        {429, "{\"error\":{\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}",
         "HTTP 429 (rate_limit_exceeded)"},
        /* an unsafe code falls back to a safe type, else to nothing */
        {400,
         "{\"error\":{\"code\":\"bad code with "
         "spaces\",\"type\":\"invalid_request_error\"}}",
         "HTTP 400 (invalid_request_error)"},
        {400, "{\"error\":{\"code\":\"sk-test-SECRET\\nInjected: 1\"}}", "HTTP 400"},
        {400, "{\"error\":{\"code\":\"<script>\",\"type\":\"a/b\"}}", "HTTP 400"},
        {400, "{\"error\":{\"code\":\"a123456789012345678901234567890123456789X\"}}",
         "HTTP 400"}, /* 41 bytes */
        {400, "{\"error\":{\"code\":\"a12345678901234567890123456789012345678X\"}}",
         "HTTP 400 (a12345678901234567890123456789012345678X)"}, /* 40 bytes */
        {400, "{\"error\":{\"code\":\"\"}}", "HTTP 400"},
        {400, "{\"error\":{\"code\":42}}", "HTTP 400"},
        {400, "{\"error\":\"just a string\"}", "HTTP 400"},
        {502, "<html>Bad Gateway</html>", "HTTP 502"},
        {503, "", "HTTP 503"},
        {503, NULL, "HTTP 503"},
        {404, "[\"error\"]", "HTTP 404"},
    };
    char out[160];
    char tiny[8];
    size_t i;

    (void)state;
    for (i = 0; i < CCA_ARRAY_SIZE(rows); i++) {
        size_t len = rows[i].body != NULL ? strlen(rows[i].body) : 0;

        memset(out, 'x', sizeof(out));
        cca_llm_error_reason(rows[i].status, rows[i].body, len, out, sizeof(out));
        assert_string_equal(out, rows[i].want);
        assert_null(strstr(out, "SECRET"));
    }
    /* truncated to the buffer, always terminated */
    cca_llm_error_reason(401, rows[0].body, strlen(rows[0].body), tiny, sizeof(tiny));
    assert_string_equal(tiny, "HTTP 40");
}

static void test_retry_after_table(void **state)
{
    static const struct {
        const char *value, *ms;
        int64_t now;
        int64_t want;
    } rows[] = {
        {"3", NULL, 0, 3000},
        {"0", NULL, 0, 0},
        {"120", "", 0, 120000},
        {"-1", NULL, 0, -1},
        {"+3", NULL, 0, -1},
        {"abc", NULL, 0, -1},
        {"3abc", NULL, 0, -1},
        {"1.5", NULL, 0, -1},
        {"", NULL, 0, -1},
        {NULL, NULL, 0, -1},
        {NULL, "", 0, -1},
        {"99999999999999999999999", NULL, 0, 86400000}, /* capped at 1 day */
        {"86401", NULL, 0, 86400000},
        /* HTTP-date relative to @now */
        {"Sun, 06 Nov 1994 08:49:37 GMT", NULL, DATE_T - 5, 5000},
        {"Sun, 06 Nov 1994 08:49:37 GMT", NULL, DATE_T, 0},
        {"Sun, 06 Nov 1994 08:49:37 GMT", NULL, DATE_T + 3600, 0}, /* past */
        {"Sun, 06 Nov 1994 08:49:37 GMT", NULL, DATE_T - 2 * 86400, 86400000},
        {"Sunday, 06-Nov-94 08:49:37 GMT", NULL, DATE_T - 7, 7000}, /* RFC 850 */
        {"Sun Nov  6 08:49:37 1994", NULL, DATE_T - 1, 1000},       /* asctime */
        /* retry-after-ms wins over Retry-After, malformed falls back */
        {"3", "250", 0, 250},
        {"Sun, 06 Nov 1994 08:49:37 GMT", "10", DATE_T - 5, 10},
        {NULL, "0", 0, 0},
        {"3", "-5", 0, 3000},
        {"3", "1.5", 0, 3000},
        {"3", "abc", 0, 3000},
        {NULL, "abc", 0, -1},
        {NULL, "999999999999999999999999", 0, 86400000},
    };
    size_t i;

    (void)state;
    for (i = 0; i < CCA_ARRAY_SIZE(rows); i++) {
        int64_t got = cca_llm_parse_retry_after(rows[i].value, rows[i].ms, rows[i].now);

        print_message("# retry_after('%s', '%s') = %lld\n",
                      rows[i].value ? rows[i].value : "(null)",
                      rows[i].ms ? rows[i].ms : "(null)", (long long)got);
        assert_int_equal(got, rows[i].want);
    }
}

static void test_outcome_names(void **state)
{
    static const char *const want[] = {"ok",           "timeout",       "rate_limited",
                                       "server_error", "client_error",  "auth_error",
                                       "bad_response", "connect_error", "cancelled"};
    int i;

    (void)state;
    assert_int_equal(CCA_ARRAY_SIZE(want), CCA_LLM_OUTCOME_COUNT);
    for (i = 0; i < CCA_LLM_OUTCOME_COUNT; i++)
        assert_string_equal(cca_llm_outcome_name((enum cca_llm_outcome)i), want[i]);
    assert_string_equal(cca_llm_outcome_name(CCA_LLM_OUTCOME_COUNT), "unknown");
}

static uint64_t mcalls(const struct cca_llm_metrics *m, enum cca_llm_outcome o)
{
    return atomic_load(&m->calls[o]);
}

/* Every finished call counts once, by outcome; retries, tokens and attempts too. */
static void test_metrics(void **state)
{
    struct cca_llm *llm = make_llm(2);
    const struct cca_llm_metrics *m = cca_llm_get_metrics(llm);
    struct waiter w;
    uint64_t total = 0;
    int i;

    (void)state;
    for (i = 0; i < CCA_LLM_OUTCOME_COUNT; i++)
        assert_int_equal(mcalls(m, (enum cca_llm_outcome)i), 0);
    assert_int_equal(cca_hist_count(&m->upstream_seconds), 0);
    assert_true(m->upstream_seconds.n == cca_hist_seconds_n);

    /* 503 then 200 with usage: ok, one retry, tokens, two observed attempts */
    fake_post("/_fake/script", "[{\"status\":503},{\"usage\":{\"prompt_tokens\":11,"
                               "\"completion_tokens\":4,\"total_tokens\":15}}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_OK);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_OK), 1);
    assert_int_equal(atomic_load(&m->retries), 1);
    assert_int_equal(atomic_load(&m->prompt_tokens), 11);
    assert_int_equal(atomic_load(&m->completion_tokens), 4);
    assert_int_equal(cca_hist_count(&m->upstream_seconds), 2);

    /* 429 x3: rate_limited, two more retries */
    fake_post("/_fake/script", "[{\"status\":429,\"retry_after\":\"0\"},"
                               "{\"status\":429,\"retry_after\":\"0\"},"
                               "{\"status\":429,\"retry_after\":\"0\"}]");
    run_one(llm, &w, "hello", false, 5000);
    assert_int_equal(w.res[0].rc, CCA_ERR_UPSTREAM);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_RATE_LIMITED), 1);
    assert_int_equal(atomic_load(&m->retries), 3);
    assert_int_equal(cca_hist_count(&m->upstream_seconds), 5);

    /* 429 whose Retry-After lies beyond the deadline: still rate_limited */
    fake_post("/_fake/script", "[{\"status\":429,\"retry_after\":\"60\"}]");
    run_one(llm, &w, "hello", false, 2000);
    assert_int_equal(w.res[0].rc, CCA_ERR_TIMEOUT);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_RATE_LIMITED), 2);

    fake_post("/_fake/script", "[{\"status\":401}]");
    run_one(llm, &w, "hello", false, 5000);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_AUTH_ERROR), 1);

    fake_post("/_fake/script", "[{\"status\":400}]");
    run_one(llm, &w, "hello", false, 5000);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_CLIENT_ERROR), 1);

    fake_post("/_fake/script", "[{\"status\":500},{\"status\":502},{\"status\":503}]");
    run_one(llm, &w, "hello", false, 5000);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_SERVER_ERROR), 1);

    fake_post("/_fake/script", "[{\"no_choices\":true}]");
    run_one(llm, &w, "hello", false, 5000);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_BAD_RESPONSE), 1);

    fake_post("/_fake/script", "[{\"pad_bytes\":200000}]");
    run_one(llm, &w, "hello", false, 5000);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_BAD_RESPONSE), 2);

    fake_post("/_fake/script", "[{\"hang\":true}]");
    run_one(llm, &w, "hello", false, 800);
    assert_int_equal(w.res[0].rc, CCA_ERR_TIMEOUT);
    waiter_cleanup(&w);
    assert_int_equal(mcalls(m, CCA_LLM_TIMEOUT), 1);

    /* a deadline already past: timeout, no attempt, nothing observed */
    {
        uint64_t seen = cca_hist_count(&m->upstream_seconds);

        run_one(llm, &w, "hello", false, -1);
        waiter_cleanup(&w);
        assert_int_equal(mcalls(m, CCA_LLM_TIMEOUT), 2);
        assert_int_equal(cca_hist_count(&m->upstream_seconds), seen);
    }
    for (i = 0; i < CCA_LLM_OUTCOME_COUNT; i++)
        total += mcalls(m, (enum cca_llm_outcome)i);
    assert_int_equal(total, 10);
    cca_llm_free(llm);

    /* connection refused: connect_error, nothing observed (no HTTP response) */
    {
        char base[96];

        snprintf(base, sizeof(base), "http://127.0.0.1:%u/v1", closed_port());
        llm = make_llm_at(base, KEY, 1, 64 * 1024);
        m = cca_llm_get_metrics(llm);
        run_one(llm, &w, "hello", false, 5000);
        waiter_cleanup(&w);
        assert_int_equal(mcalls(m, CCA_LLM_CONNECT_ERROR), 1);
        assert_int_equal(atomic_load(&m->retries), 1);
        assert_int_equal(cca_hist_count(&m->upstream_seconds), 0);
        cca_llm_free(llm);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_success, test_setup),
        cmocka_unit_test_setup(test_json_mode, test_setup),
        cmocka_unit_test_setup(test_retry_after_429, test_setup),
        cmocka_unit_test_setup(test_retry_after_http_date, test_setup),
        cmocka_unit_test_setup(test_retry_after_beyond_deadline, test_setup),
        cmocka_unit_test_setup(test_5xx_then_success, test_setup),
        cmocka_unit_test_setup(test_500_exhausts_retries, test_setup),
        cmocka_unit_test_setup(test_401_not_retried, test_setup),
        cmocka_unit_test_setup(test_400_not_retried, test_setup),
        cmocka_unit_test_setup(test_malformed_body, test_setup),
        cmocka_unit_test_setup(test_no_choices, test_setup),
        cmocka_unit_test_setup(test_null_content, test_setup),
        cmocka_unit_test_setup(test_oversize, test_setup),
        cmocka_unit_test_setup(test_usage_passthrough_and_trickle, test_setup),
        cmocka_unit_test_setup(test_hang_deadline, test_setup),
        cmocka_unit_test_setup(test_connection_refused, test_setup),
        cmocka_unit_test_setup(test_deadline_already_passed, test_setup),
        cmocka_unit_test_setup(test_invalid_submit, test_setup),
        cmocka_unit_test_setup(test_bad_params, test_setup),
        cmocka_unit_test_setup(test_concurrent_50, test_setup),
        cmocka_unit_test_setup(test_free_with_calls_in_flight, test_setup),
        cmocka_unit_test_setup(test_shared_fetch, test_setup),
        cmocka_unit_test(test_parse_response_table),
        cmocka_unit_test(test_parse_response_not_terminated),
        cmocka_unit_test(test_error_reason_table),
        cmocka_unit_test(test_retry_after_table),
        cmocka_unit_test(test_outcome_names),
        cmocka_unit_test_setup(test_metrics, test_setup),
    };

    fake_path = getenv("FAKE_OPENAI");
    if (argc > 1)
        fake_path = argv[1];
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
