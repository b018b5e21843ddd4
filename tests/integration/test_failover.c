/* SPDX-License-Identifier: MIT */
/*
 * Several instances on one PostgreSQL database (docs/internals/store_pg.md,
 * "Several instances"), real server processes against a throwaway PostgreSQL
 * this test starts itself (tests/pg/pg.sh; skipped without the binaries):
 *
 *   - the second instance is a standby: alive, not ready, cca_standby 1 in
 *     /metrics, every other request 503 with Retry-After and acted on by nobody;
 *   - SIGKILL of the active instance in the middle of turns: the standby takes
 *     over by itself, and serves every acknowledged message in order, the
 *     operator's open dialog and the queue as they were, an Idempotency-Key
 *     answered by the dead instance (no duplicate), and assignment from the
 *     queue exactly once within max_dialogs, announced on the operator's event
 *     stream it now holds (resumed with the dead instance's Last-Event-ID: a
 *     resync first, then live events);
 *   - the killed instance, restarted, is the new standby; a clean stop of the
 *     active one hands over too;
 *   - an active instance cut off from the database while the standby takes
 *     over is fenced: its changes fail and it exits 1.
 */
#include "cca_test.h"

#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "cca/common.h"
#include "cca/store_pg.h"
#include "harness.h"
#include "../pg/pg_test.h"

#define CLIENTS 4
#define MAX_MSG 2000
#define SECRET  "failover-secret"

static char url[256];
static char url_env[300];
static const char *const env[] = {"STORE=postgres", url_env, "OPERATOR_SECRET=" SECRET,
                                  NULL};

static bool log_has(const struct proc *p, const char *needle)
{
    char *text = h_read_text(p->log);
    bool yes = strstr(text, needle) != NULL;

    free(text);
    return yes;
}

/* Poll readiness of @port until 200; the milliseconds it took (fails after 30 s). */
static long wait_ready(unsigned port)
{
    int64_t t0 = cca_time_mono_ms();

    while (h_call(port, "GET", "/api/v1/health/ready", NULL, NULL, NULL) != 200) {
        if (cca_time_mono_ms() - t0 > 30000)
            fail_msg("port %u not ready within 30 s", port);
        (void)usleep(20 * 1000);
    }
    return (long)(cca_time_mono_ms() - t0);
}

static json_t *expect(unsigned port, const char *method, const char *path,
                      const char *auth, const char *body, long want)
{
    json_t *j = NULL;
    long st = h_call(port, method, path, auth, body, &j);

    if (st != want) {
        char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

        fail_msg("%s %s: %ld (want %ld) %s", method, path, st, want, s ? s : "");
    }
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));

    return s != NULL ? s : "";
}

/* The standby's answers: live, not ready, everything else 503 + Retry-After. */
static void check_standby(const struct proc *sb)
{
    struct h_req req = {
        .method = "POST", .path = "/api/v1/dialogue/create", .body = "{}"};
    struct h_resp resp = {0};
    char retry[16];
    json_t *j;

    assert_true(log_has(sb, "role=standby"));
    j = expect(sb->port, "GET", "/api/v1/health/live", NULL, NULL, 200);
    assert_string_equal(jstr(j, "role"), "standby");
    json_decref(j);
    j = expect(sb->port, "GET", "/api/v1/health/ready", NULL, NULL, 503);
    json_decref(j);
    assert_int_equal(h_request(sb->port, &req, &resp), 503);
    assert_true(h_resp_header(&resp, "Retry-After", retry, sizeof(retry)));
    assert_string_equal(retry, "1");
    assert_string_equal(jstr(resp.json, "code"), "standby");
    h_resp_free(&resp);
    assert_true(h_metric(sb->port, "cca_standby") == 1.0);
}

/* A started first (active), then B on the same database: its standby. */
static void start_pair(struct proc *a, struct proc *b, char da[64], char db[64])
{
    h_tmpdir(da);
    h_tmpdir(db);
    h_server_start(a, da, env);
    h_server_start(b, db, env);
    check_standby(b);
}

/* ---- SIGKILL of the active instance ------------------------------------------------ */

struct client {
    unsigned port;
    int k;
    char id[37];
    int acked; /* messages 0..acked-1 answered 2xx */
    int sent;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    char path[128], body[128];

    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", c->id);
    for (int n = 0; n < MAX_MSG; n++) {
        (void)snprintf(body, sizeof(body), "{\"message\":\"client %d message %d ёж\"}",
                       c->k, n);
        long st;

        c->sent = n + 1;
        st = h_call(c->port, "POST", path, NULL, body, NULL);
        if (st != 200 && st != 202) /* 202: the dialog went to the queue, stored */
            break;                  /* the instance is gone */
        c->acked = n + 1;
    }
    return NULL;
}

/* The texts of @id's messages of @role as @port serves them (new array). */
static json_t *texts(unsigned port, const char *id, const char *role)
{
    char path[128];
    json_t *doc, *out = json_array(), *m;
    size_t i;

    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s", id);
    doc = expect(port, "GET", path, NULL, NULL, 200);
    json_array_foreach (json_object_get(doc, "messages"), i, m) {
        if (strcmp(jstr(m, "role"), role) == 0)
            (void)json_array_append(out, json_object_get(m, "content"));
    }
    json_decref(doc);
    return out;
}

/* A message that asks for a person: 202, the dialog now with @want_owner. */
static void escalate(unsigned port, const char *id, const char *text,
                     const char *want_owner)
{
    char path[128], body[256];
    json_t *j;

    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    (void)snprintf(body, sizeof(body), "{\"message\":\"%s\"}", text);
    j = expect(port, "POST", path, NULL, body, 202);
    assert_string_equal(jstr(j, "owner"), want_owner);
    json_decref(j);
}

static void test_takeover(void **state)
{
    static struct client clients[CLIENTS];
    pthread_t t[CLIENTS];
    struct proc a = {0}, b = {0};
    char da[64], db[64], path[160], d1[37], d2[37], d3[37], token[128], msg_id[64];
    const char *const idem[] = {"Idempotency-Key: failover-k1", NULL};
    struct h_req req = {
        .method = "POST", .body = "{\"message\":\"once only, please\"}", .headers = idem};
    struct h_resp resp = {0};
    struct h_sse *events;
    char last_id[64];
    json_t *j;
    json_int_t queued;
    int acked = 0;
    long took;

    (void)state;
    start_pair(&a, &b, da, db);

    /* On A: an operator (one dialog at most), one dialog assigned, one queued. */
    j = expect(a.port, "POST", "/api/v1/operators/register", NULL,
               "{\"secret\":\"" SECRET "\",\"name\":\"Анна\",\"max_dialogs\":1}", 201);
    (void)snprintf(token, sizeof(token), "%s", jstr(j, "token"));
    json_decref(j);
    events = h_sse_open(a.port, "/api/v1/operators/me/events", token, NULL);
    assert_int_equal(h_sse_status(events, NULL), 200);
    json_decref(expect(a.port, "PUT", "/api/v1/operators/me/status", token,
                       "{\"status\":\"available\"}", 200));
    j = h_sse_wait(events, "status", NULL, 10000);
    assert_non_null(j);
    (void)snprintf(last_id, sizeof(last_id), "%s", jstr(j, "id"));
    json_decref(j);
    h_sse_close(events);
    h_create(a.port, NULL, d1);
    h_create(a.port, NULL, d2);
    h_create(a.port, NULL, d3);
    escalate(a.port, d1, "Позовите оператора, пожалуйста", "operator");
    escalate(a.port, d2, "I want to talk to a human, please", "queue");
    /* A message with an Idempotency-Key, acknowledged by A. */
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", d3);
    req.path = path;
    assert_int_equal(h_request(a.port, &req, &resp), 200);
    (void)snprintf(msg_id, sizeof(msg_id), "%s", jstr(resp.json, "message_id"));
    assert_true(msg_id[0] != '\0');
    h_resp_free(&resp);

    /* Turns in flight on A; SIGKILL; B takes over by itself. */
    for (int k = 0; k < CLIENTS; k++) {
        clients[k].port = a.port;
        clients[k].k = k;
        h_create(a.port, NULL, clients[k].id);
        pthread_create(&t[k], NULL, client_main, &clients[k]);
    }
    (void)usleep(1000 * 1000);
    h_kill(&a);
    took = wait_ready(b.port);
    printf("# the standby served %ld ms after the SIGKILL of the active instance\n",
           took);
    for (int k = 0; k < CLIENTS; k++)
        pthread_join(t[k], NULL);
    assert_true(log_has(&b, "event=promoted"));
    assert_true(h_metric(b.port, "cca_standby") == 0.0);

    /* Every acknowledged message, in order (at most the one in flight beyond). */
    for (int k = 0; k < CLIENTS; k++) {
        json_t *got = texts(b.port, clients[k].id, "customer");
        size_t n = json_array_size(got);

        assert_true(n >= (size_t)clients[k].acked);
        assert_true(n <= (size_t)clients[k].sent);
        for (size_t i = 0; i < n; i++) {
            char want[128];

            (void)snprintf(want, sizeof(want), "client %d message %zu ёж", k, i);
            assert_string_equal(json_string_value(json_array_get(got, i)), want);
        }
        acked += clients[k].acked;
        json_decref(got);
    }
    printf(
        "# %d messages acknowledged by the killed instance, all served by the new one\n",
        acked);
    assert_true(acked > 0);

    /* The Idempotency-Key holds across instances: the same answer, no second turn. */
    assert_int_equal(h_request(b.port, &req, &resp), 200);
    assert_string_equal(jstr(resp.json, "message_id"), msg_id);
    h_resp_free(&resp);
    j = texts(b.port, d3, "customer");
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);

    /* The operator's dialog and the queue, as A left them. */
    j = expect(b.port, "GET", "/api/v1/operators/me", token, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "open_dialogs")), 1);
    json_decref(j);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/queue", d2);
    j = expect(b.port, "GET", path, NULL, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "position")), 1);
    json_decref(j);
    j = expect(b.port, "GET", "/api/v1/queue", token, NULL, 200);
    queued = json_integer_value(json_object_get(j, "length")); /* d2 and clients' */
    assert_true(queued >= 1);
    json_decref(j);

    /*
     * The operator's console reconnects to B with the Last-Event-ID A gave it:
     * B cannot serve A's ids (another epoch), so it says resync (reload over
     * REST) and then streams live. Closing the operator's dialog on B assigns
     * the queued one, once, announced on that stream.
     */
    events = h_sse_open(b.port, "/api/v1/operators/me/events", token, last_id);
    assert_int_equal(h_sse_status(events, NULL), 200);
    j = h_sse_wait(events, "resync", NULL, 10000);
    assert_non_null(j);
    json_decref(j);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/close", d1);
    json_decref(expect(b.port, "POST", path, token, "{}", 200));
    j = h_sse_wait(events, "assigned", d2, 10000);
    assert_non_null(j);
    json_decref(j);
    j = expect(b.port, "GET", "/api/v1/operators/me", token, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "open_dialogs")), 1);
    json_decref(j);
    j = expect(b.port, "GET", "/api/v1/queue", token, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "length")), queued - 1);
    json_decref(j);
    assert_int_equal(h_sse_count(events, "assigned", d2), 1);
    h_sse_close(events);

    /* A again: now the standby. A clean stop of B hands the database back to A. */
    h_server_start(&a, da, env);
    check_standby(&a);
    assert_int_equal(h_stop(&b), 0);
    took = wait_ready(a.port);
    printf("# the standby served %ld ms after a clean stop of the active instance\n",
           took);
    j = expect(a.port, "GET", "/api/v1/operators/me", token, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(j, "open_dialogs")), 1);
    json_decref(j);
    assert_int_equal(h_stop(&a), 0);
}

/* ---- fencing ---------------------------------------------------------------------- */

static void test_fenced(void **state)
{
    struct proc a = {0}, b = {0};
    char da[64], db[64], id[37], path[128], sql[320];
    PGconn *c;
    PGresult *r;
    long st = 200;
    int64_t t0;

    (void)state;
    start_pair(&a, &b, da, db);
    h_create(a.port, "before the cut", id);

    /* A's writer session ends (as when the database drops it); B takes the lock. */
    c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    (void)snprintf(sql, sizeof(sql),
                   "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE "
                   "locktype = 'advisory' AND granted AND objsubid = 1 AND objid = "
                   "(%lld & 4294967295)::oid",
                   (long long)CCA_STORE_PG_INSTANCE_KEY);
    r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    PQfinish(c);
    (void)wait_ready(b.port);

    /* A can no longer write, and stops with 1 (its supervisor restarts it: a standby). */
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    t0 = cca_time_mono_ms();
    while (cca_time_mono_ms() - t0 < 15000) {
        st = h_call(a.port, "POST", path, NULL, "{\"message\":\"to the fenced one\"}",
                    NULL);
        assert_true(st != 200);
        if (st == 0) /* gone */
            break;
        (void)usleep(100 * 1000);
    }
    assert_int_equal(h_wait_exit(a.pid, 15000), 1);
    a.pid = 0;
    assert_true(log_has(&a, "event=fenced"));
    {
        json_t *got = texts(b.port, id, "customer");

        assert_int_equal(json_array_size(got), 1); /* "before the cut" only */
        json_decref(got);
    }
    assert_int_equal(h_stop(&b), 0);
}

static void set_url_env(const char *u)
{
    (void)snprintf(url_env, sizeof(url_env), "DATABASE_URL=%s", u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_takeover, h_kill_all),
        cmocka_unit_test_teardown(test_fenced, h_kill_all),
    };

    return pg_test_main("/tmp/cca-pgf-XXXXXX", tests, CCA_ARRAY_SIZE(tests), url,
                        sizeof(url), set_url_env, h_remove_tmpdirs);
}
