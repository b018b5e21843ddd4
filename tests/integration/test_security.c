/* SPDX-License-Identifier: MIT */
/*
 * Black-box tests of access control: API keys (401/403), rate limits (429),
 * CORS, the early 413 of a chunked body, and the HTTP request metrics. The
 * real server binary on a loopback port picked by the kernel, offline mode.
 */
#include "cca_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cca/common.h"

#include "harness.h"

#define CLIENT_KEY  "ck-7f3a9b2e-client-one"
#define CLIENT_KEY2 "ck-51c0d8aa-client-two"
#define ADMIN_KEY   "ak-c4e1f0b9-admin-root"
#define FILE_KEY    "fk-0d9e8c7b-from-file"
#define WRONG_KEY   "wk-deadbeef-not-a-key"
#define OPEN_WARN   "API_KEYS is not set: the API is open to anyone who can reach it"

#define BEARER(k) "Authorization: Bearer " k
#define XKEY(k)   "X-API-Key: " k

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* One request with optional extra headers (NULL-terminated list or NULL). */
static long req(unsigned port, const char *method, const char *path, const char *body,
                const char *const *headers, struct h_resp *resp)
{
    struct h_req rq = {.method = method, .path = path, .body = body, .headers = headers};

    return h_request(port, &rq, resp);
}

/* Status only. */
static long st(unsigned port, const char *method, const char *path, const char *body,
               const char *const *headers)
{
    struct h_resp resp;
    long s = req(port, method, path, body, headers, &resp);

    h_resp_free(&resp);
    return s;
}

static const char *code_of(const struct h_resp *r)
{
    const char *s = json_string_value(json_object_get(r->json, "code"));

    return s != NULL ? s : "(none)";
}

static bool has_header(const struct h_resp *r, const char *name)
{
    char v[512];

    return h_resp_header(r, name, v, sizeof(v));
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 4 << 20);
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, (4 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Stop the server; on a non-zero exit show the end of its log, then fail. */
static void stop_ok(struct proc *srv)
{
    int rc = h_stop(srv);

    if (rc != 0) {
        char *text = read_file(srv->log);
        size_t n = strlen(text);

        fprintf(stderr, "server exit %d, log tail:\n%s\n", rc,
                text + (n > 4000 ? n - 4000 : 0));
        free(text);
    }
    assert_int_equal(rc, 0);
}

/* Create a dialog with @headers; returns its id in @id. */
static void create(unsigned port, const char *const *headers, char id[37])
{
    struct h_resp r;

    assert_int_equal(req(port, "POST", "/api/v1/dialogue/create",
                         "{\"customer_info\":{\"name\":\"Test\"}}", headers, &r),
                     201);
    (void)snprintf(id, 37, "%s", json_string_value(json_object_get(r.json, "dialog_id")));
    h_resp_free(&r);
}

static const char *dpath(const char *id, const char *suffix)
{
    static _Thread_local char buf[512];

    (void)snprintf(buf, sizeof(buf), "/api/v1/dialogue/%s%s", id, suffix);
    return buf;
}

/* The value of the sample "@series " in /metrics text, or -1 when absent. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

static char *get_metrics(unsigned port)
{
    struct h_resp r;
    char *text;

    assert_int_equal(req(port, "GET", "/metrics", NULL, NULL, &r), 200);
    text = r.raw;
    r.raw = NULL;
    h_resp_free(&r);
    return text;
}

/*
 * /metrics text once @series is at least @min (requests are counted when they
 * complete, just after their response went out), or after ~5 s. New.
 */
static char *wait_metric(unsigned port, const char *series, double min)
{
    char *text = NULL;

    for (int i = 0; i < 250; i++) {
        free(text);
        text = get_metrics(port);
        if (metric(text, series) >= min)
            break;
        sleep_ms(20);
    }
    return text;
}

/*
 * Raw HTTP on a socket from source address @src (NULL: any): send @out, then
 * wait up to @wait_ms for the response and read until the peer closes or
 * 300 ms pass without data. Returns the text received (new, maybe empty).
 */
static char *raw_exchange(unsigned port, const char *src, const char *out, size_t out_len,
                          int wait_ms, int *ret_fd)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char *buf = calloc(1, 65536);
    size_t have = 0;
    int timeout = wait_ms;

    assert_true(fd >= 0);
    if (src != NULL) {
        struct sockaddr_in me = {.sin_family = AF_INET};

        assert_int_equal(inet_pton(AF_INET, src, &me.sin_addr), 1);
        assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
    }
    assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(send(fd, out, out_len, MSG_NOSIGNAL), (ssize_t)out_len);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t k;

        if (poll(&p, 1, timeout) <= 0)
            break;
        k = recv(fd, buf + have, 65535 - have, 0);
        if (k <= 0)
            break;
        have += (size_t)k;
        timeout = 300;
    }
    buf[have] = '\0';
    if (ret_fd != NULL)
        *ret_fd = fd;
    else
        close(fd);
    return buf;
}

/* ---- API keys ------------------------------------------------------------------------
 */

static void test_api_keys(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"API_KEYS=" CLIENT_KEY "," CLIENT_KEY2,
                         "ADMIN_API_KEYS=" ADMIN_KEY, NULL};
    const char *bearer[] = {BEARER(CLIENT_KEY), NULL};
    const char *bearer_lc[] = {"authorization: bearer " CLIENT_KEY2, NULL};
    const char *xkey[] = {XKEY(CLIENT_KEY), NULL};
    const char *wrong[] = {BEARER(WRONG_KEY), NULL};
    const char *wrong_x[] = {XKEY(WRONG_KEY), NULL};
    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    const char *admin[] = {BEARER(ADMIN_KEY), NULL};
    const char *admin_x[] = {XKEY(ADMIN_KEY), NULL};
    const char *public_paths[] = {"/api/v1/health",      "/api/v1/health/ready",
                                  "/api/v1/health/live", "/",
                                  "/openapi.yaml",       "/metrics"};
    const char *keys[] = {CLIENT_KEY, CLIENT_KEY2, ADMIN_KEY, WRONG_KEY};
    struct h_resp r;
    char v[512];
    char id[37];
    char *text;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);

    /* no key: 401 with the challenge, no error attribute (RFC 6750 section 3) */
    assert_int_equal(req(srv.port, "GET", "/api/v1/dialogues", NULL, NULL, &r), 401);
    assert_string_equal(code_of(&r), "unauthorized");
    assert_true(h_resp_header(&r, "WWW-Authenticate", v, sizeof(v)));
    assert_string_equal(v, "Bearer realm=\"call-center-agents\"");
    h_resp_free(&r);
    assert_int_equal(st(srv.port, "POST", "/api/v1/dialogue/create", "{}", NULL), 401);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, basic), 401);

    /* a wrong key: invalid_token, and the key is not echoed */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            req(srv.port, "GET", "/api/v1/dialogues", NULL, i ? wrong_x : wrong, &r),
            401);
        assert_string_equal(code_of(&r), "unauthorized");
        assert_true(h_resp_header(&r, "WWW-Authenticate", v, sizeof(v)));
        assert_string_equal(v, "Bearer realm=\"call-center-agents\", "
                               "error=\"invalid_token\"");
        assert_null(strstr(r.raw, WRONG_KEY));
        assert_null(strstr(r.headers, WRONG_KEY));
        h_resp_free(&r);
    }

    /* Bearer (any case) and X-API-Key accepted */
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, bearer), 200);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, bearer_lc), 200);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, xkey), 200);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, admin), 200);

    /* public routes need no key; unknown paths are 404 before any key check */
    for (size_t i = 0; i < sizeof(public_paths) / sizeof(public_paths[0]); i++)
        assert_int_equal(st(srv.port, "GET", public_paths[i], NULL, NULL), 200);
    assert_int_equal(st(srv.port, "GET", "/api/v1/nothing", NULL, NULL), 404);

    /* DELETE and cleanups: an ordinary key gets 403, an admin key passes */
    create(srv.port, bearer, id);
    assert_int_equal(req(srv.port, "DELETE", dpath(id, ""), NULL, bearer, &r), 403);
    assert_string_equal(code_of(&r), "forbidden");
    assert_false(has_header(&r, "WWW-Authenticate"));
    h_resp_free(&r);
    assert_int_equal(st(srv.port, "DELETE", "/api/v1/dialogue/cleanup", NULL, xkey), 403);
    assert_int_equal(
        st(srv.port, "DELETE", "/api/v1/dialogue/cleanup/closed", NULL, bearer), 403);
    assert_int_equal(st(srv.port, "DELETE", dpath(id, ""), NULL, NULL), 401);
    assert_int_equal(st(srv.port, "POST", dpath(id, "/close"), "{}", bearer), 200);
    assert_int_equal(st(srv.port, "DELETE", dpath(id, ""), NULL, admin), 200);
    assert_int_equal(st(srv.port, "DELETE", "/api/v1/dialogue/cleanup", NULL, admin_x),
                     200);
    assert_int_equal(
        st(srv.port, "DELETE", "/api/v1/dialogue/cleanup/closed", NULL, admin), 200);
    /* the dialog is really gone */
    assert_int_equal(st(srv.port, "GET", dpath(id, ""), NULL, bearer), 404);

    /* keys never appear in /metrics or health; rejections are counted */
    text = get_metrics(srv.port);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_null(strstr(text, keys[i]));
    assert_true(metric(text, "cca_http_rejected_total{reason=\"unauthorized\"}") >= 6);
    assert_true(metric(text, "cca_http_rejected_total{reason=\"forbidden\"}") >= 3);
    free(text);
    assert_int_equal(req(srv.port, "GET", "/api/v1/health/detailed", NULL, admin, &r),
                     200);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_null(strstr(r.raw, keys[i]));
    h_resp_free(&r);

    stop_ok(&srv);
    /* ... nor in the log; and no "open API" warning when keys are set */
    text = read_file(srv.log);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_null(strstr(text, keys[i]));
    assert_int_equal(count(text, "API_KEYS is not set"), 0);
    free(text);
}

static void test_keys_file_and_admin_only(void **state)
{
    char dir[64];
    char file[128];
    char envfile[192];
    struct proc srv = {0};
    const char *filekey[] = {BEARER(FILE_KEY), NULL};
    const char *client[] = {BEARER(CLIENT_KEY), NULL};
    const char *admin[] = {XKEY(ADMIN_KEY), NULL};
    FILE *f;
    char *text;

    (void)state;
    h_tmpdir(dir);
    (void)snprintf(file, sizeof(file), "%s/keys.txt", dir);
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("# issued 2025-01-15\n\n   " FILE_KEY "  \n# " CLIENT_KEY "\n", f);
    fclose(f);
    (void)snprintf(envfile, sizeof(envfile), "API_KEYS_FILE=%s", file);
    {
        const char *env[] = {envfile, NULL};

        h_server_start(&srv, dir, env);
    }
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, filekey), 200);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, client), 401);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, NULL), 401);
    stop_ok(&srv);
    text = read_file(srv.log);
    assert_null(strstr(text, FILE_KEY));
    assert_int_equal(count(text, "API_KEYS is not set"), 0);
    free(text);

    /* only ADMIN_API_KEYS: auth is still on, the admin key works everywhere */
    {
        const char *env[] = {"ADMIN_API_KEYS=" ADMIN_KEY, NULL};

        h_server_start(&srv, dir, env);
    }
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, NULL), 401);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, admin), 200);
    assert_int_equal(st(srv.port, "DELETE", "/api/v1/dialogue/cleanup", NULL, admin),
                     200);
    stop_ok(&srv);
}

/* Run the server expecting a start-up failure; returns its log (new). */
static char *start_fails(const char *dir, const char *setting)
{
    char storage[128];
    char datadir[512];
    char log[128];
    char *envp[] = {(char *)"PORT=0", (char *)"HOST=127.0.0.1", storage,
                    datadir,          (char *)setting,          NULL};
    char *argv[] = {(char *)"call-center-agents", NULL};
    int status = 0;
    pid_t pid;
    int i;

    (void)snprintf(storage, sizeof(storage), "DIALOGS_STORAGE_PATH=%s/dialogs", dir);
    (void)snprintf(datadir, sizeof(datadir), "DATA_DIR=%s", getenv("CCA_DATA_DIR"));
    (void)snprintf(log, sizeof(log), "%s/fail.log", dir);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd < 0 || chdir(dir) != 0)
            _exit(99);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execve(getenv("CCA_SERVER"), argv, envp);
        _exit(99);
    }
    for (i = 0; i < 3000 && waitpid(pid, &status, WNOHANG) != pid; i++)
        sleep_ms(10);
    if (i == 3000) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("the server did not exit with %s", setting);
    }
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    assert_int_not_equal(WEXITSTATUS(status), 99);
    return read_file(log);
}

static void test_startup_errors(void **state)
{
    char dir[64];
    char *text;

    (void)state;
    h_tmpdir(dir);
    text = start_fails(dir, "API_KEYS_FILE=/nonexistent/cca-keys.txt");
    assert_non_null(strstr(text, "API_KEYS_FILE"));
    assert_null(strstr(text, "event=listening"));
    free(text);
    text = start_fails(dir, "API_KEYS=" CLIENT_KEY ",bad key " CLIENT_KEY2);
    assert_non_null(strstr(text, "API_KEYS: key 2"));
    assert_null(strstr(text, CLIENT_KEY));
    assert_null(strstr(text, CLIENT_KEY2));
    free(text);
    text = start_fails(dir, "CORS_ORIGINS=app.example.com");
    assert_non_null(strstr(text, "CORS_ORIGINS"));
    free(text);
}

/* ---- no keys: open, one warning; CORS off; metrics --------------------------------- */

static void test_open_api_and_metrics(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *origin[] = {"Origin: https://app.example", NULL};
    const char *preflight[] = {"Origin: https://app.example",
                               "Access-Control-Request-Method: POST", NULL};
    const char *health = "cca_http_requests_total{method=\"GET\",route=\"/api/v1/"
                         "health\",status=\"200\"}";
    const char *unmatched =
        "cca_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}";
    const char *options = "cca_http_requests_total{method=\"OPTIONS\",route=\"/api/v1/"
                          "dialogues\",status=\"405\"}";
    const char *created = "cca_http_requests_total{method=\"POST\",route=\"/api/v1/"
                          "dialogue/create\",status=\"201\"}";
    struct h_resp r;
    char *text;
    double before;
    double after;
    char id[37];

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, NULL);
    text = read_file(srv.log);
    assert_int_equal(count(text, OPEN_WARN), 1);
    free(text);

    /* open: no key needed anywhere */
    h_create(srv.port, NULL, id);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, NULL), 200);
    assert_int_equal(st(srv.port, "DELETE", "/api/v1/dialogue/cleanup", NULL, NULL), 200);

    /* CORS off: no CORS headers, OPTIONS stays 405 */
    assert_int_equal(req(srv.port, "GET", "/api/v1/health", NULL, origin, &r), 200);
    assert_false(has_header(&r, "Access-Control-Allow-Origin"));
    h_resp_free(&r);
    assert_int_equal(req(srv.port, "OPTIONS", "/api/v1/dialogues", NULL, preflight, &r),
                     405);
    assert_false(has_header(&r, "Access-Control-Allow-Origin"));
    h_resp_free(&r);

    /* cca_http_requests_total moves for a route */
    text = wait_metric(srv.port, health, 1); /* the one GET above, settled */
    before = metric(text, health);
    free(text);
    assert_true(before == 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(st(srv.port, "GET", "/api/v1/health", NULL, NULL), 200);
    assert_int_equal(st(srv.port, "GET", "/no/such/thing", NULL, NULL), 404);
    /*
     * A request is counted when it completes, just after its response went out:
     * poll until the counts settle (bounded), then check them.
     */
    for (int i = 0; i < 250; i++) {
        text = get_metrics(srv.port);
        after = metric(text, health);
        if (after >= before + 3 && metric(text, unmatched) >= 1 &&
            metric(text, created) >= 1 && metric(text, options) >= 1)
            break;
        free(text);
        text = NULL;
        sleep_ms(20);
    }
    assert_non_null(text);
    assert_true(after == before + 3);
    assert_true(metric(text, unmatched) == 1);
    assert_true(metric(text, created) == 1);
    assert_true(metric(text, options) == 1);
    assert_true(metric(text, "cca_http_request_duration_seconds_count{route=\"/api/v1/"
                             "health\"}") >= 3);
    assert_non_null(strstr(text, "# TYPE cca_http_request_duration_seconds histogram"));
    assert_true(metric(text, "cca_http_open_requests") >= 1); /* this request */
    assert_true(metric(text, "cca_http_rejected_total{reason=\"rate_limited\"}") == 0);
    assert_null(strstr(text, id)); /* no label carries an id */
    free(text);
    stop_ok(&srv);
    text = read_file(srv.log);
    assert_int_equal(count(text, OPEN_WARN), 1);
    free(text);
}

/* ---- rate limits ------------------------------------------------------------------- */

/*
 * Send @n requests with @headers until one is 429; returns how many passed
 * before it (n when none was refused) and the refused response in @r.
 */
static int until_429(unsigned port, const char *path, const char *body,
                     const char *const *headers, int n, struct h_resp *r)
{
    for (int i = 0; i < n; i++) {
        long s = req(port, body ? "POST" : "GET", path, body, headers, r);

        if (s == 429)
            return i;
        assert_true(s >= 200 && s < 300);
        h_resp_free(r);
    }
    return n;
}

static unsigned retry_after(const struct h_resp *r)
{
    char v[64];

    assert_true(h_resp_header(r, "Retry-After", v, sizeof(v)));
    return (unsigned)atoi(v);
}

static void test_rate_limit_per_key(void **state)
{
    char dir[64];
    struct proc srv = {0};
    /* 0.5 tokens/s: a token every 2 s, so a slow machine adds at most a few */
    const char *env[] = {"API_KEYS=" CLIENT_KEY "," CLIENT_KEY2, "RATE_LIMIT_RPS=0.5",
                         "RATE_LIMIT_BURST=4", NULL};
    const char *k1[] = {BEARER(CLIENT_KEY), NULL};
    const char *k2[] = {XKEY(CLIENT_KEY2), NULL};
    struct h_resp r;
    int passed;
    unsigned wait;
    char *text;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    passed = until_429(srv.port, "/api/v1/dialogues", NULL, k1, 40, &r);
    assert_true(passed >= 4 && passed < 40);
    assert_string_equal(code_of(&r), "rate_limited");
    wait = retry_after(&r);
    assert_true(wait >= 1 && wait <= 2);
    assert_non_null(
        strstr(json_string_value(json_object_get(r.json, "detail")), "per API key"));
    h_resp_free(&r);
    /* the same key through X-API-Key shares the bucket */
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL,
                        (const char *const[]){XKEY(CLIENT_KEY), NULL}),
                     429);
    /* another key has its own bucket; health is never limited */
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, k2), 200);
    for (int i = 0; i < 10; i++)
        assert_int_equal(st(srv.port, "GET", "/api/v1/health", NULL, NULL), 200);
    /* auth comes first: no key is 401, not 429 */
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, NULL), 401);
    /* recovers after Retry-After */
    sleep_ms((long)wait * 1000 + 100);
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, k1), 200);
    text = get_metrics(srv.port);
    assert_true(metric(text, "cca_http_rejected_total{reason=\"rate_limited\"}") >= 2);
    assert_true(metric(text, "cca_http_requests_total{method=\"GET\",route=\"/api/v1/"
                             "dialogues\",status=\"429\"}") >= 2);
    free(text);
    stop_ok(&srv);
}

static void test_rate_limit_per_ip(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"RATE_LIMIT_RPS=0.5", "RATE_LIMIT_BURST=3", NULL};
    const char *any_key[] = {XKEY("whatever"), NULL};
    const char *get = "GET /api/v1/dialogues HTTP/1.1\r\nHost: x\r\nConnection: close"
                      "\r\n\r\n";
    struct h_resp r;
    int passed;
    char *text;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    passed = until_429(srv.port, "/api/v1/dialogues", NULL, NULL, 40, &r);
    assert_true(passed >= 3 && passed < 40);
    assert_true(retry_after(&r) >= 1);
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "detail")),
                           "per client address"));
    h_resp_free(&r);
    /* without keys configured, a key header changes nothing: same address */
    assert_int_equal(st(srv.port, "GET", "/api/v1/dialogues", NULL, any_key), 429);
    assert_int_equal(st(srv.port, "GET", "/api/v1/health", NULL, NULL), 200);
    /* another client address (127.0.0.2) has its own bucket */
    text = raw_exchange(srv.port, "127.0.0.2", get, strlen(get), 10000, NULL);
    assert_non_null(strstr(text, "HTTP/1.1 200"));
    free(text);
    stop_ok(&srv);
}

static void test_dialog_rate_limit(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"DIALOG_RATE_LIMIT_PER_MIN=2", NULL};
    const char *msg = "{\"message\":\"Hello, my internet is down\"}";
    struct h_resp r;
    char a[37];
    char b[37];
    unsigned wait;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    h_create(srv.port, NULL, a);
    h_create(srv.port, NULL, b);
    assert_int_equal(st(srv.port, "POST", dpath(a, "/message"), msg, NULL), 200);
    assert_int_equal(st(srv.port, "POST", dpath(a, "/message"), msg, NULL), 200);
    assert_int_equal(req(srv.port, "POST", dpath(a, "/message"), msg, NULL, &r), 429);
    assert_string_equal(code_of(&r), "rate_limited");
    assert_non_null(strstr(json_string_value(json_object_get(r.json, "detail")),
                           "DIALOG_RATE_LIMIT_PER_MIN"));
    wait = retry_after(&r);
    assert_true(wait >= 1 && wait <= 30);
    h_resp_free(&r);
    /* the same dialog spelled in upper case is the same bucket */
    for (char *p = a; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    assert_int_equal(st(srv.port, "POST", dpath(a, "/message"), msg, NULL), 429);
    /* other dialogs and other routes of the dialog are unaffected */
    assert_int_equal(st(srv.port, "POST", dpath(b, "/message"), msg, NULL), 200);
    assert_int_equal(st(srv.port, "GET", dpath(a, ""), NULL, NULL), 200);
    /* an invalid id skips the limit and gets its 404 */
    assert_int_equal(st(srv.port, "POST", dpath("not-a-uuid", "/message"), msg, NULL),
                     404);
    stop_ok(&srv);
}

/* ---- CORS -------------------------------------------------------------------------- */

static void test_cors(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"CORS_ORIGINS=https://app.example, http://localhost:3000",
                         "API_KEYS=" CLIENT_KEY, NULL};
    const char *good[] = {"Origin: https://app.example", BEARER(CLIENT_KEY), NULL};
    const char *good_nokey[] = {"Origin: http://localhost:3000", NULL};
    const char *bad[] = {"Origin: https://evil.example", BEARER(CLIENT_KEY), NULL};
    const char *pre_good[] = {
        "Origin: https://app.example", "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: authorization, content-type", NULL};
    const char *pre_bad[] = {"Origin: https://evil.example",
                             "Access-Control-Request-Method: POST", NULL};
    const char *not_pre[] = {"Origin: https://app.example", NULL};
    struct h_resp r;
    char v[512];
    char id[37];

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);

    /* allowed origin: the CORS headers on an ordinary response */
    assert_int_equal(req(srv.port, "GET", "/api/v1/dialogues", NULL, good, &r), 200);
    assert_true(h_resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)));
    assert_string_equal(v, "https://app.example");
    assert_true(h_resp_header(&r, "Vary", v, sizeof(v)));
    assert_non_null(strstr(v, "Origin"));
    assert_true(h_resp_header(&r, "Access-Control-Expose-Headers", v, sizeof(v)));
    assert_non_null(strstr(v, "X-Request-Id"));
    assert_non_null(strstr(v, "Retry-After"));
    assert_non_null(strstr(v, "WWW-Authenticate"));
    h_resp_free(&r);
    /* ... and on errors, so the browser can read the 401 */
    assert_int_equal(req(srv.port, "GET", "/api/v1/dialogues", NULL, good_nokey, &r),
                     401);
    assert_true(h_resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)));
    assert_string_equal(v, "http://localhost:3000");
    h_resp_free(&r);

    /* disallowed origin: no CORS headers at all */
    assert_int_equal(req(srv.port, "GET", "/api/v1/dialogues", NULL, bad, &r), 200);
    assert_false(has_header(&r, "Access-Control-Allow-Origin"));
    assert_false(has_header(&r, "Access-Control-Expose-Headers"));
    h_resp_free(&r);

    /* preflight: 204 without a key, the path's methods */
    create(srv.port, (const char *const[]){BEARER(CLIENT_KEY), NULL}, id);
    assert_int_equal(req(srv.port, "OPTIONS", dpath(id, "/message"), NULL, pre_good, &r),
                     204);
    assert_true(h_resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)));
    assert_string_equal(v, "https://app.example");
    assert_true(h_resp_header(&r, "Access-Control-Allow-Methods", v, sizeof(v)));
    assert_string_equal(v, "POST");
    assert_true(h_resp_header(&r, "Access-Control-Allow-Headers", v, sizeof(v)));
    assert_non_null(strstr(v, "Authorization"));
    assert_non_null(strstr(v, "Content-Type"));
    assert_non_null(strstr(v, "X-API-Key"));
    assert_non_null(strstr(v, "Idempotency-Key"));
    assert_true(h_resp_header(&r, "Access-Control-Max-Age", v, sizeof(v)));
    assert_string_equal(v, "600");
    assert_int_equal(r.raw_len, 0);
    h_resp_free(&r);
    assert_int_equal(req(srv.port, "OPTIONS", dpath(id, ""), NULL, pre_good, &r), 204);
    assert_true(h_resp_header(&r, "Access-Control-Allow-Methods", v, sizeof(v)));
    assert_non_null(strstr(v, "GET"));
    assert_non_null(strstr(v, "DELETE"));
    assert_null(strstr(v, "POST"));
    h_resp_free(&r);
    assert_int_equal(req(srv.port, "OPTIONS", "/api/v1/health", NULL, pre_good, &r), 204);
    assert_true(h_resp_header(&r, "Access-Control-Allow-Methods", v, sizeof(v)));
    assert_string_equal(v, "GET");
    h_resp_free(&r);

    /* preflight from a disallowed origin: 403, no CORS headers */
    assert_int_equal(req(srv.port, "OPTIONS", dpath(id, "/message"), NULL, pre_bad, &r),
                     403);
    assert_string_equal(code_of(&r), "cors_forbidden");
    assert_false(has_header(&r, "Access-Control-Allow-Origin"));
    h_resp_free(&r);

    /* not a preflight (no Access-Control-Request-Method): 405; unknown path: 404 */
    assert_int_equal(req(srv.port, "OPTIONS", "/api/v1/dialogues", NULL, not_pre, &r),
                     405);
    assert_true(h_resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)));
    h_resp_free(&r);
    assert_int_equal(st(srv.port, "OPTIONS", "/api/v1/nothing", NULL, pre_good), 404);
    stop_ok(&srv);

    /* "*": any origin, answered with "*" */
    {
        const char *env2[] = {"CORS_ORIGINS=*", NULL};

        h_server_start(&srv, dir, env2);
    }
    assert_int_equal(req(srv.port, "GET", "/api/v1/health", NULL, bad, &r), 200);
    assert_true(h_resp_header(&r, "Access-Control-Allow-Origin", v, sizeof(v)));
    assert_string_equal(v, "*");
    h_resp_free(&r);
    assert_int_equal(st(srv.port, "OPTIONS", "/api/v1/dialogue/create", NULL, pre_bad),
                     204);
    stop_ok(&srv);
}

/* ---- a chunked body over the cap --------------------------------------------------- */

static void test_chunked_413_early(void **state)
{
    char dir[64];
    struct proc srv = {0};
    const char *env[] = {"MAX_BODY_BYTES=1024", "API_KEYS=" CLIENT_KEY, NULL};
    char out[8192];
    char chunk[700];
    size_t n;
    char *text;
    int fd = -1;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    memset(chunk, ' ', sizeof(chunk));
    /* headers, then two 700-byte chunks and no terminating "0" chunk */
    n = (size_t)snprintf(out, sizeof(out),
                         "POST /api/v1/dialogue/create HTTP/1.1\r\nHost: x\r\n"
                         "Authorization: Bearer " CLIENT_KEY "\r\n"
                         "Content-Type: application/json\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 2; i++) {
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%zx\r\n", sizeof(chunk));
        memcpy(out + n, chunk, sizeof(chunk));
        n += sizeof(chunk);
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    /* the 413 arrives although the body never ends; the connection is closed */
    text = raw_exchange(srv.port, NULL, out, n, 20000, &fd);
    assert_non_null(strstr(text, "HTTP/1.1 413"));
    assert_non_null(strstr(text, "body_too_large"));
    assert_true(strstr(text, "Connection: close") != NULL ||
                strstr(text, "connection: close") != NULL);
    assert_non_null(strstr(text, "X-Request-Id: "));
    free(text);
    {
        char c;
        struct pollfd p = {.fd = fd, .events = POLLIN};

        assert_int_equal(poll(&p, 1, 10000), 1);
        assert_true(recv(fd, &c, 1, 0) <= 0); /* EOF or reset: closed */
    }
    close(fd);

    /* without a key the same upload is refused with 401, also early */
    n = (size_t)snprintf(out, sizeof(out),
                         "POST /api/v1/dialogue/create HTTP/1.1\r\nHost: x\r\n"
                         "Content-Type: application/json\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 2; i++) {
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%zx\r\n", sizeof(chunk));
        memcpy(out + n, chunk, sizeof(chunk));
        n += sizeof(chunk);
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    text = raw_exchange(srv.port, NULL, out, n, 20000, NULL);
    assert_non_null(strstr(text, "HTTP/1.1 401"));
    free(text);

    /* the server is fine afterwards, and counted the 413 */
    assert_int_equal(st(srv.port, "GET", "/api/v1/health", NULL, NULL), 200);
    text = wait_metric(srv.port,
                       "cca_http_requests_total{method=\"POST\",route=\"/api/v1/"
                       "dialogue/create\",status=\"413\"}",
                       1);
    assert_true(metric(text, "cca_http_requests_total{method=\"POST\",route=\"/api/v1/"
                             "dialogue/create\",status=\"413\"}") == 1);
    free(text);
    stop_ok(&srv);
    text = read_file(srv.log);
    assert_non_null(strstr(text, "status=413"));
    assert_null(strstr(text, "Application reported internal error"));
    assert_null(strstr(text, CLIENT_KEY));
    free(text);
}

static int teardown(void **state)
{
    h_kill_all(state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_api_keys, teardown),
        cmocka_unit_test_teardown(test_keys_file_and_admin_only, teardown),
        cmocka_unit_test_teardown(test_startup_errors, teardown),
        cmocka_unit_test_teardown(test_open_api_and_metrics, teardown),
        cmocka_unit_test_teardown(test_rate_limit_per_key, teardown),
        cmocka_unit_test_teardown(test_rate_limit_per_ip, teardown),
        cmocka_unit_test_teardown(test_dialog_rate_limit, teardown),
        cmocka_unit_test_teardown(test_cors, teardown),
        cmocka_unit_test_teardown(test_chunked_413_early, teardown),
    };

    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    h_remove_tmpdirs();
    return rc;
}
