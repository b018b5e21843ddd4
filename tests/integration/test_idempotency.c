/* SPDX-License-Identifier: MIT */
/*
 * Idempotent retries (Idempotency-Key on create and message): a repeat with
 * the same key and body gets the first response without a second turn or LLM
 * call, also after a restart and when the repeats arrive at once; the same key
 * with another body is a 422.
 */
#include "cca_test.h"

#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"

#define MSG_BODY "{\"message\": \"Какие у вас тарифы?\"}"
#define CREATE_BODY                                                                      \
    "{\"customer_info\": {\"name\": \"Ann\"}, \"initial_message\": \"Hello\"}"

static char base_url[128];
static const char *list_auth; /* PostgreSQL mode: the API key that lists dialogs */

static void start_pair(struct proc *fake, struct proc *srv, char dir[64],
                       unsigned latency)
{
    const char *env[] = {"OPENAI_API_KEY=sk-test", base_url, NULL};

    h_tmpdir(dir);
    h_fake_start(fake, dir, latency);
    (void)snprintf(base_url, sizeof(base_url), "OPENAI_BASE_URL=http://127.0.0.1:%u/v1",
                   fake->port);
    h_server_start(srv, dir, env);
}

static void restart(struct proc *srv, const char *dir)
{
    const char *env[] = {"OPENAI_API_KEY=sk-test", base_url, NULL};

    assert_int_equal(h_stop(srv), 0);
    h_server_start(srv, dir, env);
}

/* POST @body to @path with "Idempotency-Key: @key"; the raw body in *ret_raw (new). */
static long post_key(unsigned port, const char *path, const char *key, const char *body,
                     char **ret_raw)
{
    char hdr[512];
    const char *headers[] = {hdr, NULL};
    struct h_req req = {.method = "POST", .path = path, .body = body, .headers = headers};
    struct h_resp resp;
    long st;

    (void)snprintf(hdr, sizeof(hdr), "Idempotency-Key: %s", key);
    st = h_request(port, &req, &resp);
    if (ret_raw != NULL) {
        *ret_raw = resp.raw;
        resp.raw = NULL;
    }
    h_resp_free(&resp);
    return st;
}

static long fake_requests(const struct proc *fake)
{
    json_t *stats = h_fake_get(fake, "/_fake/stats");
    long n = (long)json_integer_value(json_object_get(stats, "requests"));

    json_decref(stats);
    return n;
}

static size_t message_count(unsigned port, const char *id)
{
    char path[128];
    json_t *doc = NULL;
    size_t n;

    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s", id);
    assert_int_equal(h_http(port, "GET", path, NULL, NULL, &doc, NULL, NULL, 0), 200);
    n = json_array_size(json_object_get(doc, "messages"));
    json_decref(doc);
    return n;
}

static size_t count_dialog_files(const char *dir)
{
    char path[128];
    size_t n = 0;
    struct dirent *e;
    DIR *d;

    (void)snprintf(path, sizeof(path), "%s/dialogs", dir);
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".json") != NULL && e->d_name[0] != '.';
    closedir(d);
    return n;
}

/*
 * The dialog files once the checkpointer has written the acknowledged
 * dialogs (within STORAGE_CHECKPOINT_MS): @want, or what there is after 3 s.
 * PostgreSQL mode: the number of dialogs @srv lists.
 * A file too many shows at once; one missing would show after the wait.
 */
static size_t dialog_files_settled(const struct proc *srv, const char *dir, size_t want)
{
    size_t n;

    if (h_store_pg()) /* no files: the dialogs the server lists */
        return (size_t)h_dialogs_listed(srv->port, list_auth);
    n = count_dialog_files(dir);

    for (int i = 0; i < 300 && n < want; i++) {
        usleep(10000);
        n = count_dialog_files(dir);
    }
    return n;
}

static void test_message_repeat_and_restart(void **state)
{
    struct proc fake = {0}, srv = {0};
    char dir[64];
    char id[37];
    char path[128];
    char *first = NULL, *again = NULL, *other = NULL, *after = NULL;
    json_t *err;
    long calls;

    (void)state;
    start_pair(&fake, &srv, dir, 0);
    h_create(srv.port, NULL, id);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    assert_int_equal(post_key(srv.port, path, "msg-1", MSG_BODY, &first), 200);
    calls = fake_requests(&fake);
    assert_true(calls >= 1);

    /* Same key, same request (other whitespace, quoted key): same bytes back. */
    assert_int_equal(post_key(srv.port, path, "\"msg-1\"",
                              "{\"message\":\"Какие у вас тарифы?\"}", &again),
                     200);
    assert_string_equal(first, again);
    assert_int_equal(fake_requests(&fake), calls);
    assert_int_equal(message_count(srv.port, id), 2);

    /* Same key, another body: 422 and nothing runs. */
    assert_int_equal(
        post_key(srv.port, path, "msg-1", "{\"message\": \"other\"}", &other), 422);
    err = json_loads(other, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(err, "code")),
                        "idempotency_key_reused");
    json_decref(err);
    assert_int_equal(message_count(srv.port, id), 2);

    /* The record is on disk: after a restart the repeat still replays. */
    restart(&srv, dir);
    assert_int_equal(post_key(srv.port, path, "msg-1", MSG_BODY, &after), 200);
    assert_string_equal(first, after);
    assert_int_equal(fake_requests(&fake), calls);
    assert_int_equal(message_count(srv.port, id), 2);

    /* A closed dialog still answers a repeat with the first response. */
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/close", id);
    assert_int_equal(h_http(srv.port, "POST", path, NULL, NULL, NULL, NULL, NULL, 0),
                     200);
    free(after);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    assert_int_equal(post_key(srv.port, path, "msg-1", MSG_BODY, &after), 200);
    assert_string_equal(first, after);

    free(first);
    free(again);
    free(other);
    free(after);
    assert_int_equal(h_stop(&srv), 0);
    assert_int_equal(h_stop(&fake), 0);
}

static void test_create_repeat_and_restart(void **state)
{
    struct proc fake = {0}, srv = {0};
    char dir[64];
    char *first = NULL, *again = NULL, *other = NULL, *after = NULL;
    const char *path = "/api/v1/dialogue/create";
    long calls;

    (void)state;
    start_pair(&fake, &srv, dir, 0);
    assert_int_equal(post_key(srv.port, path, "create-1", CREATE_BODY, &first), 201);
    calls = fake_requests(&fake);
    assert_int_equal(post_key(srv.port, path, "create-1", CREATE_BODY, &again), 201);
    assert_string_equal(first, again);
    assert_int_equal(fake_requests(&fake), calls);
    assert_int_equal(dialog_files_settled(&srv, dir, 1), 1);
    free(again);
    /* Keys in another order are the same request. */
    assert_int_equal(
        post_key(srv.port, path, "create-1",
                 "{\"initial_message\":\"Hello\",\"customer_info\":{\"name\":\"Ann\"}}",
                 &again),
        201);
    assert_string_equal(first, again);
    assert_int_equal(post_key(srv.port, path, "create-1", "{}", &other), 422);
    assert_non_null(strstr(other, "idempotency_key_reused"));

    /* Another key is another dialog. */
    assert_int_equal(post_key(srv.port, path, "create-2", CREATE_BODY, NULL), 201);
    assert_int_equal(dialog_files_settled(&srv, dir, 2), 2);

    restart(&srv, dir);
    assert_int_equal(post_key(srv.port, path, "create-1", CREATE_BODY, &after), 201);
    assert_string_equal(first, after);
    assert_int_equal(dialog_files_settled(&srv, dir, 2), 2);
    assert_int_equal(fake_requests(&fake), calls * 2);

    free(first);
    free(again);
    free(other);
    free(after);
    assert_int_equal(h_stop(&srv), 0);
    assert_int_equal(h_stop(&fake), 0);
}

struct dup {
    unsigned port;
    const char *path;
    const char *key;
    const char *body;
    long status;
    char *raw;
};

static void *dup_thread(void *arg)
{
    struct dup *d = arg;

    d->status = post_key(d->port, d->path, d->key, d->body, &d->raw);
    return NULL;
}

/* N identical requests at once while the LLM takes 300 ms: one turn, one answer. */
static void run_concurrent(unsigned port, const char *path, const char *key,
                           const char *body, long want)
{
    enum { N = 8 };
    struct dup d[N];
    pthread_t th[N];

    for (int i = 0; i < N; i++) {
        d[i] = (struct dup){.port = port, .path = path, .key = key, .body = body};
        assert_int_equal(pthread_create(&th[i], NULL, dup_thread, &d[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(d[i].status, want);
        assert_string_equal(d[i].raw, d[0].raw);
    }
    for (int i = 0; i < N; i++)
        free(d[i].raw);
}

static void test_concurrent_duplicates(void **state)
{
    struct proc fake = {0}, srv = {0};
    char dir[64];
    char id[37];
    char path[128];
    long before;

    (void)state;
    start_pair(&fake, &srv, dir, 300);
    h_create(srv.port, NULL, id);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    before = fake_requests(&fake);
    run_concurrent(srv.port, path, "same-turn", MSG_BODY, 200);
    assert_int_equal(message_count(srv.port, id), 2);
    /* One turn: at most a classification and a reply, never eight. */
    assert_true(fake_requests(&fake) - before <= 2);

    before = fake_requests(&fake);
    run_concurrent(srv.port, "/api/v1/dialogue/create", "same-create", CREATE_BODY, 201);
    assert_int_equal(dialog_files_settled(&srv, dir, 2), 2);
    assert_true(fake_requests(&fake) - before <= 2);
    assert_int_equal(h_stop(&srv), 0);
    assert_int_equal(h_stop(&fake), 0);
}

static void test_bad_keys(void **state)
{
    static const char *const bad[] = {"\"\"", "has space", "k\"q", "\"open"};
    struct proc srv = {0};
    char dir[64];
    char key[300];
    char *raw = NULL;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(
            post_key(srv.port, "/api/v1/dialogue/create", bad[i], "{}", &raw), 400);
        assert_non_null(strstr(raw, "invalid_idempotency_key"));
        free(raw);
    }
    memset(key, 'k', 256);
    key[256] = '\0';
    assert_int_equal(post_key(srv.port, "/api/v1/dialogue/create", key, "{}", NULL), 400);
    key[255] = '\0';
    assert_int_equal(post_key(srv.port, "/api/v1/dialogue/create", key, "{}", NULL), 201);
    assert_int_equal(dialog_files_settled(&srv, dir, 1), 1);
    assert_int_equal(h_stop(&srv), 0);
}

/* With API keys, the same Idempotency-Key from two clients makes two dialogs. */
static void test_keys_are_per_client(void **state)
{
    const char *env[] = {"API_KEYS=client-key-a,client-key-b", NULL};
    const char *ha[] = {"Authorization: Bearer client-key-a", "Idempotency-Key: shared",
                        NULL};
    const char *hb[] = {"X-API-Key: client-key-b", "Idempotency-Key: shared", NULL};
    struct h_req ra = {
        .method = "POST", .path = "/api/v1/dialogue/create", .body = "{}", .headers = ha};
    struct h_req rb = ra;
    struct h_resp a1, a2, b1;
    struct proc srv = {0};
    char dir[64];

    (void)state;
    rb.headers = hb;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    assert_int_equal(h_request(srv.port, &ra, &a1), 201);
    assert_int_equal(h_request(srv.port, &rb, &b1), 201);
    assert_int_equal(h_request(srv.port, &ra, &a2), 201);
    assert_string_equal(a1.raw, a2.raw);
    assert_string_not_equal(json_string_value(json_object_get(a1.json, "dialog_id")),
                            json_string_value(json_object_get(b1.json, "dialog_id")));
    list_auth = "client-key-a";
    assert_int_equal(dialog_files_settled(&srv, dir, 2), 2);
    list_auth = NULL;
    h_resp_free(&a1);
    h_resp_free(&a2);
    h_resp_free(&b1);
    assert_int_equal(h_stop(&srv), 0);
}

/*
 * An expired create key whose repeats queued behind the busy dialog: the
 * first repeat creates a new dialog and the others replay it (one new dialog,
 * not one per repeat).
 */
static void test_expired_key_with_queued_repeats(void **state)
{
    const char *env[] = {"OPENAI_API_KEY=sk-test", base_url, "IDEMPOTENCY_TTL_S=1", NULL};
    struct proc fake = {0}, srv = {0};
    char dir[64];
    char path[128];
    char *first = NULL;
    json_t *j;
    struct dup d[4];
    pthread_t th[4];
    pthread_t msg;
    struct dup m;

    (void)state;
    h_tmpdir(dir);
    h_fake_start(&fake, dir, 0);
    (void)snprintf(base_url, sizeof(base_url), "OPENAI_BASE_URL=http://127.0.0.1:%u/v1",
                   fake.port);
    h_server_start(&srv, dir, env);
    assert_int_equal(post_key(srv.port, "/api/v1/dialogue/create", "old", "{}", &first),
                     201);
    j = json_loads(first, 0, NULL);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message",
                   json_string_value(json_object_get(j, "dialog_id")));
    usleep(1500000); /* the key expires */
    /* Keep the first dialog busy with a slow turn while the repeats arrive. */
    assert_int_equal(h_fake_post(&fake, "/_fake/default", "{\"delay_ms\": 1500}"), 200);
    m = (struct dup){.port = srv.port, .path = path, .key = "turn", .body = MSG_BODY};
    assert_int_equal(pthread_create(&msg, NULL, dup_thread, &m), 0);
    usleep(300000);
    for (int i = 0; i < 4; i++) {
        d[i] = (struct dup){.port = srv.port,
                            .path = "/api/v1/dialogue/create",
                            .key = "old",
                            .body = "{}"};
        assert_int_equal(pthread_create(&th[i], NULL, dup_thread, &d[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(d[i].status, 201);
        assert_string_equal(d[i].raw, d[0].raw);
    }
    pthread_join(msg, NULL);
    assert_int_equal(m.status, 200);
    assert_string_not_equal(d[0].raw, first);
    assert_int_equal(dialog_files_settled(&srv, dir, 2), 2);
    for (int i = 0; i < 4; i++)
        free(d[i].raw);
    free(m.raw);
    free(first);
    json_decref(j);
    assert_int_equal(h_stop(&srv), 0);
    assert_int_equal(h_stop(&fake), 0);
}

/*
 * IDEMPOTENCY_MAX_KEYS bounds the create keys kept in memory: the oldest is
 * forgotten first (a repeat of it makes a new dialog), the newest still
 * answer from their record, and the gauge and the eviction counter say so,
 * also after a restart (the keys are reloaded under the same bound).
 */
static void test_create_keys_bounded(void **state)
{
    static const char *const env[] = {"IDEMPOTENCY_MAX_KEYS=2", NULL};
    static const char body[] = "{\"customer_info\":{\"name\":\"Bound\"}}";
    static const char *const keys[] = {"bound-key-a", "bound-key-b", "bound-key-c"};
    struct proc srv = {0};
    char dir[64];
    char *first[3];
    char *again = NULL;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, env);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(
            post_key(srv.port, "/api/v1/dialogue/create", keys[i], body, &first[i]), 201);
    assert_true(h_metric(srv.port, "cca_idempotency_keys") == 2);
    assert_true(h_metric(srv.port, "cca_idempotency_keys_evicted_total") == 1);
    /* The newest two repeat their answer byte for byte. */
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(
            post_key(srv.port, "/api/v1/dialogue/create", keys[i], body, &again), 201);
        assert_string_equal(again, first[i]);
        free(again);
    }
    assert_int_equal(dialog_files_settled(&srv, dir, 3), 3);
    /* The oldest was forgotten: its repeat is a new create. */
    assert_int_equal(post_key(srv.port, "/api/v1/dialogue/create", keys[0], body, &again),
                     201);
    assert_string_not_equal(again, first[0]);
    free(again);
    assert_int_equal(dialog_files_settled(&srv, dir, 4), 4);
    /* Reloaded under the same bound after a restart. */
    assert_int_equal(h_stop(&srv), 0);
    h_server_start(&srv, dir, env);
    assert_true(h_metric(srv.port, "cca_idempotency_keys") == 2);
    assert_int_equal(h_stop(&srv), 0);
    for (size_t i = 0; i < 3; i++)
        free(first[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_message_repeat_and_restart, h_kill_all),
        cmocka_unit_test_teardown(test_create_repeat_and_restart, h_kill_all),
        cmocka_unit_test_teardown(test_concurrent_duplicates, h_kill_all),
        cmocka_unit_test_teardown(test_bad_keys, h_kill_all),
        cmocka_unit_test_teardown(test_keys_are_per_client, h_kill_all),
        cmocka_unit_test_teardown(test_expired_key_with_queued_repeats, h_kill_all),
        cmocka_unit_test_teardown(test_create_keys_bounded, h_kill_all),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    h_remove_tmpdirs();
    return rc;
}
