/* SPDX-License-Identifier: MIT */
/*
 * The real server on STORE=postgres, against a throwaway PostgreSQL server
 * this test starts itself (tests/pg/pg.sh; skipped without the binaries):
 *
 *   - `call-center-agents migrate` applies the schema and exits 0, twice;
 *   - clients create dialogs and send messages; the server is SIGKILLed in the
 *     middle; a new server on the same database serves every dialog with every
 *     acknowledged message, in order, with no gap or duplicate (at most the one
 *     request in flight at the kill beyond them);
 *   - the database dies under a running server: messages answer 503 and
 *     readiness says why; after the database's restart the server recovers by
 *     itself (reconnection with backoff) and the next message is stored;
 *   - `import --from-files` copies a real file store (the demo data) and the
 *     server on PostgreSQL then serves every dialog as its file holds it; a
 *     second run changes nothing;
 *   - a database whose schema is newer than the binary stops the start with a
 *     clear message.
 */
#include "cca_test.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
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

static char url[256];
static char url_env[300];

static void sql(const char *statement)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    r = PQexec(c, statement);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", statement, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static const char *const pg_env[] = {"STORE=postgres", url_env, NULL};

/* ---- migrate ------------------------------------------------------------------------
 */

static void test_migrate_command(void **state)
{
    char dir[64], log[128];
    char *text;

    (void)state;
    h_tmpdir(dir);
    (void)snprintf(log, sizeof(log), "%s/migrate.log", dir);
    for (int i = 0; i < 2; i++) {
        pid_t pid = h_server_spawn(dir, pg_env, "migrate", log);
        char want[48];

        assert_int_equal(h_wait_exit(pid, 30000), 0);
        text = h_read_text(log);
        assert_non_null(strstr(text, "event=migrated"));
        (void)snprintf(want, sizeof(want), "schema_version_before=%u",
                       i == 0 ? 0 : cca_store_pg_schema_version());
        assert_non_null(strstr(text, want));
        assert_null(strstr(text, "password"));
        free(text);
    }
}

/* ---- SIGKILL mid-load ------------------------------------------------------------- */

struct client {
    unsigned port;
    int k;
    char id[37];
    int acked; /* messages 0..acked-1 answered 200 */
    int sent;  /* requests started */
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    char path[128], body[128];

    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", c->id);
    for (int n = 0; n < MAX_MSG; n++) {
        long st;

        (void)snprintf(body, sizeof(body), "{\"message\":\"client %d message %d ёж\"}",
                       c->k, n);
        c->sent = n + 1;
        st = h_call(c->port, "POST", path, NULL, body, NULL);
        if (st != 200)
            break; /* the server is gone */
        c->acked = n + 1;
    }
    return NULL;
}

/* The customer messages of dialog @id as served by @port (new array of strings). */
static json_t *customer_texts(unsigned port, const char *id)
{
    char path[128];
    json_t *doc = NULL, *out = json_array(), *m;
    size_t i;

    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s", id);
    assert_int_equal(h_call(port, "GET", path, NULL, NULL, &doc), 200);
    json_array_foreach (json_object_get(doc, "messages"), i, m) {
        if (strcmp(json_string_value(json_object_get(m, "role")), "customer") == 0)
            (void)json_array_append(out, json_object_get(m, "content"));
    }
    json_decref(doc);
    return out;
}

static void test_sigkill_and_restart(void **state)
{
    static struct client clients[CLIENTS];
    pthread_t t[CLIENTS];
    struct proc srv;
    char dir[64];
    int acked = 0, extra = 0;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, pg_env);
    for (int k = 0; k < CLIENTS; k++) {
        clients[k].port = srv.port;
        clients[k].k = k;
        h_create(srv.port, NULL, clients[k].id);
        pthread_create(&t[k], NULL, client_main, &clients[k]);
    }
    usleep(1500 * 1000);
    h_kill(&srv); /* SIGKILL, in the middle of turns */
    for (int k = 0; k < CLIENTS; k++)
        pthread_join(t[k], NULL);

    h_server_start(&srv, dir, pg_env);
    for (int k = 0; k < CLIENTS; k++) {
        json_t *texts = customer_texts(srv.port, clients[k].id);
        size_t n = json_array_size(texts);

        /* Every acknowledged message, in order; beyond them at most the one in flight. */
        assert_true(n >= (size_t)clients[k].acked);
        assert_true(n <= (size_t)clients[k].sent);
        for (size_t i = 0; i < n; i++) {
            char want[128];

            (void)snprintf(want, sizeof(want), "client %d message %zu ёж", k, i);
            assert_string_equal(json_string_value(json_array_get(texts, i)), want);
        }
        acked += clients[k].acked;
        extra += (int)n - clients[k].acked;
        json_decref(texts);
    }
    printf("# acknowledged %d messages before the SIGKILL, all there after the restart; "
           "%d unacknowledged found stored\n",
           acked, extra);
    assert_true(acked > 0);
    assert_int_equal(h_stop(&srv), 0);
}

/* ---- the database dies under a running server -------------------------------------- */

static void test_database_restart(void **state)
{
    struct proc srv;
    char dir[64], id[37], path[128];
    json_t *body = NULL, *texts;
    int64_t t0;
    long st;

    (void)state;
    h_tmpdir(dir);
    h_server_start(&srv, dir, pg_env);
    h_create(srv.port, "first", id);
    (void)snprintf(path, sizeof(path), "/api/v1/dialogue/%s/message", id);
    assert_int_equal(pg_sh("kill", NULL, 0), 0);

    /* Refused cleanly: 503, not a hang and not a 2xx. */
    st = h_call(srv.port, "POST", path, NULL, "{\"message\":\"while down\"}", &body);
    assert_int_equal(st, 503);
    json_decref(body);
    body = NULL;
    t0 = cca_time_mono_ms();
    do {
        st = h_call(srv.port, "GET", "/api/v1/health/ready", NULL, NULL, &body);
        json_decref(body);
        body = NULL;
        usleep(100 * 1000);
    } while (st == 200 && cca_time_mono_ms() - t0 < 5000);
    assert_int_equal(st, 503);

    /* Back: the server reconnects by itself. */
    assert_int_equal(pg_sh("restart", NULL, 0), 0);
    t0 = cca_time_mono_ms();
    do {
        usleep(200 * 1000);
        st = h_call(srv.port, "POST", path, NULL, "{\"message\":\"after the restart\"}",
                    NULL);
    } while (st != 200 && cca_time_mono_ms() - t0 < 20000);
    assert_int_equal(st, 200);
    printf("# stored again %lld ms after the database restarted\n",
           (long long)(cca_time_mono_ms() - t0));
    assert_int_equal(h_call(srv.port, "GET", "/api/v1/health/ready", NULL, NULL, NULL),
                     200);
    texts = customer_texts(srv.port, id);
    assert_int_equal(json_array_size(texts), 2);
    assert_string_equal(json_string_value(json_array_get(texts, 0)), "first");
    assert_string_equal(json_string_value(json_array_get(texts, 1)), "after the restart");
    json_decref(texts);
    assert_int_equal(h_stop(&srv), 0);
}

/* ---- import --from-files -------------------------------------------------------- */

/* Run `call-center-agents import --from-files @from` from @dir, output to @log; its exit
 * status. */
static int run_import(const char *dir, const char *from, const char *log)
{
    char *argv[] = {(char *)"call-center-agents", (char *)"import",
                    (char *)"--from-files", (char *)from, NULL};
    char *envp[] = {(char *)"STORE=postgres", url_env, (char *)"LOG_LEVEL=info", NULL};

    return h_run(dir, argv, envp, log, 60000);
}

static long count_rows(const char *table_sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, table_sql);
    long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -1;

    PQclear(r);
    PQfinish(c);
    return n;
}

static void test_import_from_files(void **state)
{
    char dir[64], pgside[64], log[128], from[128];
    struct proc srv;
    struct dirent *e;
    DIR *d;
    char *text;
    int dialogs = 0;
    long operators;

    (void)state;
    h_tmpdir(dir);
    h_tmpdir(pgside);
    (void)snprintf(log, sizeof(log), "%s/demo.log", dir);
    /* A real file store: the demo data (operators, customers, 120 dialogs). */
    assert_int_equal(h_wait_exit(h_server_spawn(dir, NULL, "demo-data", log), 120000), 0);
    (void)snprintf(from, sizeof(from), "%s/dialogs", dir);
    (void)snprintf(log, sizeof(log), "%s/import.log", dir);
    assert_int_equal(run_import(dir, from, log), 0);
    text = h_read_text(log);
    assert_non_null(strstr(text, "dialogs=120 "));
    assert_non_null(strstr(text, "failed=0"));
    free(text);
    operators = count_rows("SELECT count(*) FROM operators");
    assert_true(operators > 0);
    /* Again (a re-run after a crash, say): the same rows, nothing doubled. */
    assert_int_equal(run_import(dir, from, log), 0);
    assert_int_equal(count_rows("SELECT count(*) FROM operators"), operators);

    /* The server on PostgreSQL serves each dialog as the file holds it. */
    h_server_start(&srv, pgside, pg_env);
    d = opendir(from);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char id[37], path[256], get[128];
        json_t *want, *got = NULL;
        char *bytes;

        if (strlen(e->d_name) != 41 || strcmp(e->d_name + 36, ".json") != 0)
            continue;
        memcpy(id, e->d_name, 36);
        id[36] = '\0';
        (void)snprintf(path, sizeof(path), "%s/%s", from, e->d_name);
        bytes = h_dialog_file(path, id);
        assert_non_null(bytes);
        want = json_loads(bytes, 0, NULL);
        (void)snprintf(get, sizeof(get), "/api/v1/dialogue/%s", id);
        assert_int_equal(h_call(srv.port, "GET", get, NULL, NULL, &got), 200);
        assert_true(json_equal(want, got));
        json_decref(want);
        json_decref(got);
        free(bytes);
        dialogs++;
    }
    closedir(d);
    assert_int_equal(dialogs, 120);
    printf("# imported 120 dialogs and %ld operators; a second run changed nothing; GET "
           "equals the files\n",
           operators);
    assert_int_equal(h_stop(&srv), 0);
}

/* ---- a schema from the future ------------------------------------------------------ */

static void test_newer_schema_refused(void **state)
{
    char dir[64], log[128];
    char *text;
    pid_t pid;

    (void)state;
    h_tmpdir(dir);
    (void)snprintf(log, sizeof(log), "%s/serve.log", dir);
    sql("INSERT INTO schema_version (version, description) VALUES (999, 'future')");
    pid = h_server_spawn(dir, pg_env, NULL, log);
    assert_int_equal(h_wait_exit(pid, 30000), 1);
    text = h_read_text(log);
    assert_non_null(
        strstr(text, "database schema version 999 is newer than this binary"));
    free(text);
    sql("DELETE FROM schema_version WHERE version = 999");
}

static void set_url_env(const char *u)
{
    (void)snprintf(url_env, sizeof(url_env), "DATABASE_URL=%s", u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_migrate_command, h_kill_all),
        cmocka_unit_test_teardown(test_sigkill_and_restart, h_kill_all),
        cmocka_unit_test_teardown(test_database_restart, h_kill_all),
        cmocka_unit_test_teardown(test_import_from_files, h_kill_all),
        cmocka_unit_test_teardown(test_newer_schema_refused, h_kill_all),
    };

    return pg_test_main("/tmp/cca-pge-XXXXXX", tests, CCA_ARRAY_SIZE(tests), url,
                        sizeof(url), set_url_env, h_remove_tmpdirs);
}
